"""The Python targets: real pools driven through the plan, each as its users
call it. One class per design; `TARGETS` maps the names the harness knows
(`py-pool-map`, ...) to them.

Every target does the same five things: `start` (the pool exists: `ready`),
`warmup` (one echo task, when the plan asks), `run` (the tasks, in its call
style, emitting one `outcome` per task as the call delivers it), `close`
(close and join, or shutdown), and `classify` (an exception the call raised,
as an error record). None of them is told about deadlines: a target that
hangs waits forever, as its users' programs do, until the harness kills the
sandbox.

A `map` call is all-or-nothing in most of these APIs: when it raises, the
caller gets no result at all, so every task of the call gets that error
(with the message saying so). Iterator-style maps (ProcessPoolExecutor,
loky) deliver results in order until the first error; the tasks after it
get the error that stopped the iteration.
"""

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import multiprocessing.connection
import multiprocessing.pool
import re
import signal
import time

from .protocol import FAULT_POINTS, ExitWatcher, describe_exit, error, exit_fields, missing_stage
from .work import (
    InjectedBaseException,
    InjectedError,
    InjectedPanic,
    ReturnedError,
    armed,
    fire,
    run_task,
    set_stage,
    worker_init,
)

#: What a call may raise that the adapter reports: every exception, the
#: SystemExit of a task that called sys.exit (the `sys-exit` fault), and the
#: `base-exception` fault's BaseException.
CAUGHT = (Exception, SystemExit, InjectedBaseException)
#: The exceptions the plan's faults raise in a task, by name.
RAISED = (InjectedError, InjectedPanic, InjectedBaseException, MemoryError, SystemExit)
#: The points at which the task's worker dies while the owner ends the pool.
LIFECYCLE = ("close", "terminate", "join")

#: The start methods a target can be asked for (`--start-method`); without
#: one, each target uses its own default (`default_method`).
START_METHODS = ("fork", "forkserver", "spawn")


def _text(e):
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def expected_raise(name, text):
    """Whether an exception (its class name and text) is one the plan's
    faults raise: theirs, or pickle's own refusal of an `unpicklable` value
    (PicklingError, or the TypeError "cannot pickle ...")."""
    if name in {cls.__name__ for cls in RAISED} | {"PicklingError"}:
        return True
    return name == "TypeError" and "pickle" in text


class Target:
    """A pool under test. Subclasses set `name`, `requires` (modules that
    must import) and `style` (the call style the target fixes, or None for
    the plan's)."""

    name = ""
    requires = ()
    style = None
    #: What the target is, for `--list` and the docs.
    about = ""
    #: The start method its users get when they name none (the seed's: fork;
    #: multiprocessing's default on Linux before Python 3.14).
    default_method = "fork"
    #: The start methods it can be asked for.
    methods = START_METHODS

    def __init__(self, plan, emitter, method=None):
        self.plan = plan
        #: The start method asked for, or None for the target's default.
        self.method = method
        self.context = multiprocessing.get_context(method or "fork")
        self.emitter = emitter
        self.tasks = plan["tasks"]
        self.workers = plan["workers"]
        t = plan.get("task_timeout_ms")
        self.timeout = t / 1000 if t else None
        self.watcher = ExitWatcher(emitter, self.processes)
        self.waited_for_death = False
        self.pool = None
        #: What the pool is handed for each task: the task, armed where its
        #: fault fires while pickled or unpickled (work.armed).
        self.armed = [armed(t) for t in self.tasks]
        points = {t["fault"]["point"] for t in self.tasks if t.get("fault")}
        #: The initializer, when a fault fires as a worker starts or in its channel.
        self.needs_init = bool(points & {"init", "recycle", "transport"})
        self.recycles = "recycle" in points
        #: The stage at which the owner ends the pool under a dying worker, if any.
        self.lifecycle = next((p for p in LIFECYCLE if p in points), None)
        # perf_counter_ns() when a whole-batch call returned, before its
        # results were reported (for a benchmark's timing); None: at the end.
        self.returned = None
        #: The tasks the plan cancels whose cancel the pool accepted.
        self.cancelled = set()

    # -- fault points
    #: Whether the pool can be terminated (its workers killed) by the caller.
    can_terminate = True

    def recycle_kwargs(self, n=1):
        """The pool's arguments for `n` tasks per worker, or None if it has no such limit."""
        return None

    def missing_stage(self, point):
        """Why this target has no stage `point`, or None if it has it."""
        style = self.style or self.plan["style"]
        asynchronous = style in ("apply-async", "map-async")
        if point == "callback" and not asynchronous:
            return f"a `{style}` call takes no callbacks"
        if point in LIFECYCLE and not asynchronous:
            return f"a `{style}` call returns when every task is over: no task runs while the pool is ended"
        if point == "terminate" and not self.can_terminate:
            return f"{self.name} has no way to terminate its workers"
        if point == "recycle" and self.recycle_kwargs() is None:
            return f"{self.name} has no limit of tasks per worker"
        return None

    def not_applicable(self):
        """(point, why) for the first fault of the plan at a stage this
        target lacks, or (option, why) for an option it lacks; or None."""
        missing = {p: self.missing_stage(p) for p in FAULT_POINTS}
        found = missing_stage(self.plan, {p: why for p, why in missing.items() if why is not None})
        return found or self.missing_option()

    #: Why the target's handle of a task cannot cancel it (None: it can).
    no_cancel = "its handle of a task has no cancel"
    #: Why the target's join takes no timeout (None: it takes one).
    no_join_timeout = "its join takes no timeout"

    #: The styles whose call takes a chunksize.
    chunk_styles = ()
    #: The pool's own knobs a plan may set (harness/src/protocol.rs KNOBS).
    knobs = ()

    def missing_option(self):
        """(option, why) for the plan's first option this target lacks
        (`chunksize`, `max_tasks`, a knob), or None."""
        style = self.style or self.plan["style"]
        # A call without chunks sends each task on its own: chunksize 1 is what it does.
        if self.plan["chunksize"] not in (None, 1) and style not in self.chunk_styles:
            return "chunksize", f"{self.name} takes no chunksize in a `{style}` call"
        n = self.plan["max_tasks"]
        if n is not None and self.recycle_kwargs(n) is None:
            return "max_tasks", f"{self.name} has no limit of {n} task(s) per worker"
        for knob in self.plan["knobs"]:
            if knob not in self.knobs:
                return knob, f"{self.name} has no knob {knob!r}"
        if self.plan["cancel"] and (self.no_cancel or style != "apply-async"):
            return "cancel", f"{self.name}: {self.no_cancel or f'a `{style}` call gives no handle per task'}"
        if self.plan["join_timeout_ms"] is not None and self.no_join_timeout:
            return "join_timeout_ms", f"{self.name}: {self.no_join_timeout}"
        return None

    def cancel_planned(self, handles):
        """Cancels the plan's tasks through their handles, each `after_ms`
        after the last submit, and notes those the pool cancelled (a
        future's `cancel()` is False once it runs, or has its result)."""
        start = time.monotonic()
        for c in sorted(self.plan["cancel"], key=lambda c: c["after_ms"]):
            time.sleep(max(0.0, start + c["after_ms"] / 1000 - time.monotonic()))
            handle = handles[c["task"]]
            if not isinstance(handle, BaseException) and handle.cancel():
                self.cancelled.add(c["task"])

    def pool_kwargs(self):
        """The initializer (when the plan needs it) and the limit of tasks
        per worker (`max_tasks`, or 1 when the plan recycles)."""
        kwargs = {"initializer": worker_init} if self.needs_init else {}
        n = self.plan["max_tasks"] or (1 if self.recycles else None)
        if n is not None:
            kwargs.update(self.recycle_kwargs(n))
        return kwargs

    def end_by(self, close, terminate, join):
        """Ends the pool at the plan's lifecycle stage (`close()` then
        `join()`, or `terminate()` then `join()`), naming the stage for the
        worker that dies in it just before the call that enters it."""
        if self.lifecycle == "terminate":
            set_stage("terminate")
            terminate()
        else:
            if self.lifecycle == "close":
                set_stage("close")
            close()
            set_stage(self.lifecycle)
        join()

    def callback_fault(self, indices):
        """Fires, in the owner's callback, the `callback` fault of the first of `indices` that has one."""
        for i in indices:
            fault = self.tasks[i].get("fault") if 0 <= i < len(self.tasks) else None
            if fault and fault["point"] == "callback":
                fire(fault["kind"])
                return

    # -- hooks
    def start(self):
        raise NotImplementedError

    def processes(self):
        """The worker process objects the pool holds right now (for the watcher)."""
        return ()

    def warmup(self, task):
        raise NotImplementedError

    def run(self, style):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def classify(self, exc, handle=None):
        """The error record of an exception a call raised (`wrong` for the
        exception a `return-exception` task returned: it is its value)."""
        if isinstance(exc, ReturnedError):
            return {"status": "wrong"}
        if expected_raise(type(exc).__name__, str(exc)):
            return error("task", _text(exc))
        return error("task", f"unexpected {_text(exc)}")

    # -- shared helpers
    def ok(self, i, value):
        self.emitter.result(i, self.tasks[i], value)

    def fail(self, i, record):
        self.emitter.outcome(i, record)

    def fail_all(self, indices, exc, why):
        record = self.classify(exc)
        for i in indices:
            if record["status"] == "error":
                self.fail(i, dict(record, message=f"{why}: {record['message']}"))
            else:
                self.fail(i, record)

    def on_result(self, _value=None, indices=()):
        self.emitter.callback("result")
        self.callback_fault(indices)

    def on_error(self, _exc=None, indices=()):
        self.emitter.callback("error")
        self.callback_fault(indices)

    def callbacks(self, indices):
        """A result and an error callback for the tasks `indices`."""
        return (lambda v: self.on_result(v, indices)), (lambda e: self.on_error(e, indices))

    def pool_broken(self, exc):
        """A pool-broken record, naming the deaths the watcher knows of."""
        dead = self.watcher.abnormal()
        if not dead and not self.waited_for_death:
            # The pool saw its worker's pipes close, which happens a moment
            # before the dying process becomes a zombie: give it that moment.
            self.waited_for_death = True
            deadline = time.monotonic() + 0.2
            while not dead and time.monotonic() < deadline:
                time.sleep(0.002)
                dead = self.watcher.abnormal()
        if not dead:
            # A worker that called exit(0) mid-task: healthy workers of a pool do not exit.
            dead = [(p, c) for p, c in self.watcher.scan().items() if c != -signal.SIGTERM]
        message = _text(exc)
        if not dead:
            return error("pool-broken", message)
        pid, code = dead[0]
        sig, c = exit_fields(code)
        known = ", ".join(f"worker {p} {describe_exit(x)}" for p, x in dead)
        return error("pool-broken", f"{message} ({known})", pid=pid, signal=sig, code=c)


# ---------------------------------------------------------------- multiprocessing.Pool


class MpPool(Target):
    """`multiprocessing.Pool(processes=workers)` with the fork start method
    (the seed's default on Linux) unless another is asked for, in one call style."""

    requires = ()

    def make_pool(self):
        return self.context.Pool(processes=self.workers, **self.pool_kwargs())

    chunk_styles = ("map", "map-async")
    no_cancel = "multiprocessing.pool.AsyncResult has no cancel"
    no_join_timeout = "multiprocessing.Pool.join() takes no timeout"

    def recycle_kwargs(self, n=1):
        return {"maxtasksperchild": n}

    def start(self):
        self.pool = self.make_pool()

    def processes(self):
        return list(self.pool._pool) if self.pool is not None else ()

    def warmup(self, task):
        return self.pool.apply(run_task, (task,))

    def chunksize(self):
        return self.plan.get("chunksize")

    def classify(self, exc, handle=None):
        # multiprocessing's (or billiard's) MaybeEncodingError: the task's
        # result could not be sent back: the task's own fault.
        if isinstance(exc, multiprocessing.pool.MaybeEncodingError) or type(exc).__name__ == "MaybeEncodingError":
            return error("task", _text(exc))
        return super().classify(exc)

    def run(self, style):
        getattr(self, "run_" + style.replace("-", "_"))()

    def run_map(self):
        try:
            results = self.pool.map(run_task, self.armed, self.chunksize())
        except CAUGHT as e:
            self.fail_all(range(len(self.tasks)), e, "pool.map raised")
            return
        self.returned = time.perf_counter_ns()
        for i, value in enumerate(results):
            self.ok(i, value)

    def run_apply(self):
        for i, task in enumerate(self.armed):
            try:
                value = self.pool.apply(run_task, (task,))
            except CAUGHT as e:
                self.fail(i, self.classify(e))
            else:
                self.ok(i, value)

    def run_apply_async(self):
        handles = []
        for i, task in enumerate(self.armed):
            on_result, on_error = self.callbacks((i,))
            handles.append(self.pool.apply_async(run_task, (task,), callback=on_result, error_callback=on_error))
        if self.lifecycle is not None:
            self.end_pool()
        for i, handle in enumerate(handles):
            if self.lifecycle == "terminate" and not handle.ready():
                self.fail(i, error("terminated", "the pool was terminated before the task's result came"))
                continue
            try:
                value = handle.get()
            except CAUGHT as e:
                self.fail(i, self.classify(e, handle))
            else:
                self.ok(i, value)

    def end_pool(self):
        self.end_by(self.pool.close, self.pool.terminate, self.pool.join)

    def run_map_async(self):
        # As the seed: map_async with an error_callback, then close() and join().
        on_result, on_error = self.callbacks(range(len(self.tasks)))
        result = self.pool.map_async(run_task, self.armed, self.chunksize(), callback=on_result, error_callback=on_error)
        if self.lifecycle is not None:
            self.end_pool()
        else:
            self.pool.close()
            self.pool.join()
        if self.lifecycle == "terminate" and not result.ready():
            for i in range(len(self.tasks)):
                self.fail(i, error("terminated", "the pool was terminated before map_async's result came"))
            return
        self.deliver(result)

    def deliver(self, result):
        try:
            values = result.get()
        except CAUGHT as e:
            self.fail_all(range(len(self.tasks)), e, "map_async's result raised")
            return
        for i, value in enumerate(values):
            self.ok(i, value)

    def close(self):
        self.pool.close()
        self.pool.join()


class PoolMap(MpPool):
    name, style = "py-pool-map", "map"
    about = "multiprocessing.Pool(workers).map(f, tasks), then close() and join()"


class PoolApply(MpPool):
    name, style = "py-pool-apply", "apply"
    about = "multiprocessing.Pool(workers).apply(f, (task,)) for each task in turn"


class PoolApplyAsync(MpPool):
    name, style = "py-pool-apply-async", "apply-async"
    about = "multiprocessing.Pool(workers).apply_async(f, (task,), callback, error_callback) for every task, then get() each"


class PoolMapAsync(MpPool):
    name, style = "py-pool-map-async", "map-async"
    about = "multiprocessing.Pool(workers).map_async(f, tasks, callback, error_callback), close(), join(), then get()"


class SeedPolling(MpPool):
    """The seed post's polling program, as written: the call, `close()`, then
    a busy loop over `pool._pool` in place of `join()`: when every worker is
    dead, any non-zero exitcode terminates the pool."""

    def poll_workers(self):
        # The post's loop, as written (no sleep: it spins).
        while True:
            finish_flag = True
            for sub_p in self.pool._pool:
                if sub_p.is_alive():
                    finish_flag = False
                    break
            if finish_flag:
                error_flag = None
                for sub_p in self.pool._pool:
                    if sub_p.exitcode != 0:
                        # print('Sub-processes exit error')
                        error_flag = (sub_p.pid, sub_p.exitcode)
                        self.watcher.record(sub_p.pid, sub_p.exitcode)
                        self.pool.terminate()
                        break
                return error_flag

    def missing_stage(self, point):
        if point in LIFECYCLE:
            return "the seed's program ends its pool as written (close(), then its polling loop)"
        return super().missing_stage(point)

    def close(self):
        self.pool.join()  # the post never joins; we do, so nothing is left behind


class SeedPollingMap(SeedPolling):
    name, style = "py-seed-polling", "map"
    about = "the seed's polling program: pool.map(f, tasks), close(), then the `while True` loop over pool._pool"

    def run(self, style):
        self.run_map()  # blocks forever if a worker died mid-task: the loop is never reached
        self.pool.close()
        self.poll_workers()


class SeedPollingMapAsync(SeedPolling):
    name, style = "py-seed-polling-async", "map-async"
    about = "the seed's polling program with map_async: map_async(...), close(), then the polling loop in place of join()"

    def run(self, style):
        on_result, on_error = self.callbacks(range(len(self.tasks)))
        result = self.pool.map_async(run_task, self.armed, self.chunksize(), callback=on_result, error_callback=on_error)
        self.pool.close()
        terminated = self.poll_workers()
        if terminated is not None and not result.ready():
            pid, code = terminated
            sig, c = exit_fields(code)
            why = f"the polling loop saw worker {pid} end by {describe_exit(code)} and terminated the pool; no result came"
            for i in range(len(self.tasks)):
                self.fail(i, error("terminated", why, pid=pid, signal=sig, code=c))
            return
        self.deliver(result)


# ---------------------------------------------------------------- one Process per task


def _child(task, conn):
    """The body of one process of py-process-per-task: run the task, send
    ("ok", result) or ("error", type name, text) back, exit."""
    try:
        result = run_task(task)
        conn.send(("ok", result))  # an encode-result or transport-result fault fires in here
    except CAUGHT as e:
        conn.send(("error", type(e).__name__, str(e)))
    conn.close()


class ProcessPerTask(Target):
    """The seed post's last program: one `multiprocessing.Process` per task
    (fork), at most `workers` at a time, the result sent back on a pipe; the
    parent joins each and knows its exitcode. A process that ended without a
    result is `worker-lost` with its signal or code. With a task timeout, a
    process still running at its deadline is killed (SIGKILL) and its task is
    `timed-out`. The call style does not change what it does."""

    name = "py-process-per-task"
    about = "one multiprocessing.Process per task (at most `workers` at once), joined; exitcode known"

    def start(self):
        self.running = {}  # sentinel -> [index, process, conn, started, message]
        self.pool = self  # nothing to start

    def recycle_kwargs(self, n=1):
        return {} if n == 1 else None  # one process per task: a limit of 1 is what it does, no other

    def missing_stage(self, point):
        if point in ("encode", "decode") and (self.method or "fork") == "fork":
            return "under fork a task's process has its task by memory: nothing is pickled"
        if point in ("transport", "init", "recycle"):
            return "a process per task: no channel carries tasks, no initializer, no worker is reused"
        if point in LIFECYCLE or point == "callback":
            return "the program joins each process itself: no pool to end, no callbacks"
        return super().missing_stage(point)

    def processes(self):
        return [r[1] for r in list(self.running.values())]

    def close(self):
        pass  # every process was joined as its task ended

    def spawn(self, index, task):
        reader, writer = self.context.Pipe(duplex=False)
        p = self.context.Process(target=_child, args=(task, writer))
        try:
            p.start()  # spawn and forkserver pickle the task here: an encode fault fires
        except CAUGHT as e:
            reader.close()
            writer.close()
            if isinstance(e, BlockingIOError):  # EAGAIN: the kernel refused the fork (the run's pids.max)
                self.fail(index, error("spawn-failed", f"no process for the task: {_text(e)}"))
            else:
                self.fail(index, self.classify(e))
            return
        writer.close()
        self.running[p.sentinel] = [index, p, reader, time.monotonic(), None]

    def warmup(self, task):
        outcomes = {}
        self.spawn(-1, task)
        self.drain(lambda i, rec, value: outcomes.setdefault(i, (rec, value)))
        rec, value = outcomes[-1]
        if rec is not None:
            raise RuntimeError(f"warm-up task failed: {rec['message']}")
        return value

    def run(self, style):
        def report(i, rec, value):
            if rec is None:
                self.ok(i, value)
            else:
                self.fail(i, rec)

        queue = list(enumerate(self.armed))
        queue.reverse()
        while queue or self.running:
            while queue and len(self.running) < self.workers:
                self.spawn(*queue.pop())
            if self.running:
                self.step(report)

    def drain(self, report):
        while self.running:
            self.step(report)

    def step(self, report):
        """Waits for one process's message or exit (or a deadline), and
        reports every task that is over."""
        waits = []
        for sentinel, (i, p, conn, started, message) in self.running.items():
            waits.append(sentinel)
            if message is None:
                waits.append(conn)
        timeout = None
        if self.timeout is not None:
            first = min(r[3] for r in self.running.values())
            timeout = max(0.0, first + self.timeout - time.monotonic())
        ready = multiprocessing.connection.wait(waits, timeout)
        for sentinel, r in list(self.running.items()):
            i, p, conn, started, message = r
            if message is None and (conn in ready or sentinel in ready) and conn.poll():
                try:
                    r[4] = message = conn.recv()
                except (EOFError, OSError):
                    r[4] = message = ("lost",)
            if sentinel in ready:
                self.finish(sentinel, report)
            elif self.timeout is not None and time.monotonic() - started >= self.timeout:
                p.kill()
                self.finish(sentinel, report, timed_out=True)

    def finish(self, sentinel, report, timed_out=False):
        i, p, conn, started, message = self.running.pop(sentinel)
        p.join()
        conn.close()
        code = p.exitcode
        sig, c = exit_fields(code)
        self.watcher.record(p.pid, code)
        if message is not None and message[0] == "ok":
            report(i, None, message[1])
        elif message is not None and message[0] == "error":
            kind = "task"
            text = f"{message[1]}: {message[2]}"
            if not expected_raise(message[1], message[2]):
                text = "unexpected " + text
            report(i, error(kind, text), None)
        elif timed_out:
            ms = int(self.timeout * 1000)
            report(i, error("timed-out", f"process {p.pid} still running after {ms} ms: killed", pid=p.pid, attempts=1), None)
        else:
            text = f"process {p.pid} exited without a result: {describe_exit(code)}"
            report(i, error("worker-lost", text, pid=p.pid, signal=sig, code=c, attempts=1), None)


# ---------------------------------------------------------------- executors


class Executor(Target):
    """A `concurrent.futures`-style executor: `submit` per task (`map` for
    the map style). `apply` waits for each future before the next submit;
    `apply-async` and `map-async` submit every task with a done-callback,
    then wait for each future in order."""

    def warmup(self, task):
        return self.submit(task).result()

    def submit(self, task):
        return self.pool.submit(run_task, task)

    chunk_styles = ("map",)
    # concurrent.futures: Future.cancel(), which only a future not yet running accepts.
    no_cancel = None
    no_join_timeout = "shutdown(wait=True) takes no timeout"

    def map(self):
        chunks = {"chunksize": self.plan["chunksize"]} if self.plan["chunksize"] else {}
        return self.pool.map(run_task, self.armed, **chunks)

    def run(self, style):
        getattr(self, "run_" + style.replace("-", "_"))()

    def run_map(self):
        delivered = 0
        try:
            for value in self.map():
                self.ok(delivered, value)
                delivered += 1
            return
        except CAUGHT as e:
            record = self.classify(e)
        # The iterator raised for the next task; the caller sees nothing after it.
        self.fail(delivered, record)
        for j in range(delivered + 1, len(self.tasks)):
            self.fail(j, dict(record, message=f"not delivered: the map raised at task {delivered}: {record['message']}"))

    def run_apply(self):
        for i, task in enumerate(self.armed):
            try:
                value = self.submit(task).result()
            except CAUGHT as e:
                self.fail(i, self.classify(e))
            else:
                self.ok(i, value)

    def run_apply_async(self):
        futures = []
        for i, task in enumerate(self.armed):
            try:
                f = self.submit(task)
            except CAUGHT as e:  # a broken pool refuses the submit
                futures.append(e)
                continue
            f.add_done_callback(lambda f, i=i: self.done(f, i))
            futures.append(f)
        self.cancel_planned(futures)
        if self.lifecycle is not None:
            self.end_pool()
        elif self.plan["join_timeout_ms"] is not None:
            self.close()  # with the tasks in flight: the join is bounded
        for i, f in enumerate(futures):
            if isinstance(f, BaseException):
                self.fail(i, self.classify(f))
                continue
            if self.lifecycle == "terminate" and not f.done():
                self.fail(i, error("terminated", "the pool was terminated before the task's result came"))
                continue
            try:
                value = f.result()
            except concurrent.futures.CancelledError as e:
                # Cancelled by the plan, or (pebble's stop) by the pool's end.
                self.fail(i, error("cancelled", _text(e)) if i in self.cancelled else self.classify(e, f))
            except CAUGHT as e:
                self.fail(i, self.classify(e, f))
            else:
                self.ok(i, value)

    run_map_async = run_apply_async

    def end_pool(self):
        """Ends the executor at the plan's lifecycle stage, marking the stage
        for the worker that dies in it: `shutdown(wait=False)` (close),
        `shutdown(wait=True)` (join), or the executor's terminate."""
        set_stage(self.lifecycle)
        if self.lifecycle == "close":
            self.pool.shutdown(wait=False)
        elif self.lifecycle == "join":
            self.pool.shutdown(wait=True)
        else:
            self.terminate()

    def terminate(self):
        raise NotImplementedError

    def done(self, future, i):
        if future.cancelled() or future.exception() is not None:
            self.on_error(indices=(i,))
        else:
            self.on_result(indices=(i,))

    def close(self):
        self.pool.shutdown(wait=True)


class Ppe(Executor):
    name = "py-ppe"
    about = "concurrent.futures.ProcessPoolExecutor(max_workers) (fork): submit per task, or map"

    # ProcessPoolExecutor has no terminate before Python 3.14 (terminate_workers).
    can_terminate = False

    def start(self):
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self.context, **self.pool_kwargs()
        )

    def recycle_kwargs(self, n=1):
        # "max_tasks_per_child is incompatible with the 'fork' start method" (3.11+).
        return None if (self.method or "fork") == "fork" else {"max_tasks_per_child": n}

    def missing_stage(self, point):
        if point == "recycle" and (self.method or "fork") == "fork":
            return "ProcessPoolExecutor refuses max_tasks_per_child with the fork start method"
        return super().missing_stage(point)

    def processes(self):
        return list((getattr(self.pool, "_processes", None) or {}).values())

    def classify(self, exc, handle=None):
        if isinstance(exc, concurrent.futures.process.BrokenProcessPool):
            return self.pool_broken(exc)
        if isinstance(exc, concurrent.futures.CancelledError):
            return error("terminated", _text(exc))
        return super().classify(exc)


class Loky(Ppe):
    name = "py-loky"
    requires = ("loky",)
    about = "loky.get_reusable_executor(max_workers) (loky's fork+exec workers): submit per task, or map"
    default_method = "loky"
    # get_reusable_executor refuses fork: "Cannot use reusable executor with the 'fork' context".
    methods = ("forkserver", "spawn")

    def start(self):
        import loky
        import loky.backend

        # loky's own contexts: `loky` (fork+exec, its default), or the method asked for.
        self.pool = loky.get_reusable_executor(
            max_workers=self.workers,
            context=loky.backend.get_context(self.method),
            **self.pool_kwargs(),
            **self.plan["knobs"],
        )

    can_terminate = True
    knobs = ("timeout",)

    def recycle_kwargs(self, n=1):
        return None

    def missing_stage(self, point):
        if point == "recycle":
            return "loky has no limit of tasks per worker"
        return Executor.missing_stage(self, point)

    def terminate(self):
        self.pool.shutdown(wait=True, kill_workers=True)

    def classify(self, exc, handle=None):
        from loky.process_executor import ShutdownExecutorError

        if isinstance(exc, ShutdownExecutorError):
            return error("terminated", _text(exc))
        # loky names the exit codes in its message: "{SIGKILL(-9)}", "{EXIT(1)}".
        if isinstance(exc, concurrent.futures.process.BrokenProcessPool):
            # The codes loky lists are those of the workers whose death it saw
            # (EXIT(0) included: a worker that called exit(0) mid-task); the
            # workers it kills itself afterwards are not among them.
            codes = [int(c) for c in re.findall(r"\((-?\d+)\)", str(exc))]
            culprit = next((c for c in codes if c != -signal.SIGTERM), None)
            if culprit is None:
                return self.pool_broken(exc)
            sig, code = exit_fields(culprit)
            return error("pool-broken", _text(exc), signal=sig, code=code)
        return super().classify(exc)


class Pebble(Executor):
    name = "py-pebble"
    requires = ("pebble",)
    about = "pebble.ProcessPool(max_workers) (fork): schedule(f, (task,), timeout) per task, or map(f, tasks, timeout)"

    def start(self):
        import pebble

        self.pool = pebble.ProcessPool(max_workers=self.workers, context=self.context, **self.pool_kwargs())
        #: Closed and joined already (with the tasks in flight, under a join timeout).
        self.ended = False
        # The `timeout` knob: schedule's and map's timeout, in place of the plan's task timeout.
        self.timeout = self.plan["knobs"].get("timeout", self.timeout)

    knobs = ("timeout",)
    # pebble: ProcessFuture.cancel() stops a running task too (its worker is killed and replaced).
    no_join_timeout = None

    def recycle_kwargs(self, n=1):
        return {"max_tasks": n}

    def end_pool(self):
        self.end_by(self.pool.close, self.pool.stop, self.pool.join)

    def processes(self):
        try:
            return list(self.pool._pool_manager.worker_manager.workers.values())
        except AttributeError:
            return ()

    def submit(self, task):
        return self.pool.schedule(run_task, args=(task,), timeout=self.timeout)

    def run_map(self):
        # pebble's map yields each task's outcome in order; an error does not stop it.
        chunks = {"chunksize": self.plan["chunksize"]} if self.plan["chunksize"] else {}
        try:
            results = self.pool.map(run_task, self.armed, timeout=self.timeout, **chunks).result()
        except CAUGHT as e:
            self.fail_all(range(len(self.tasks)), e, "pool.map raised")
            return
        for i in range(len(self.tasks)):
            try:
                value = next(results)
            except StopIteration:
                return
            except CAUGHT as e:
                self.fail(i, self.classify(e))
            else:
                self.ok(i, value)

    def classify(self, exc, handle=None):
        import pebble

        if isinstance(exc, pebble.ProcessExpired):
            sig, code = exit_fields(exc.exitcode)
            return error("worker-lost", f"{_text(exc)} (pid {exc.pid}, exitcode {exc.exitcode})", pid=exc.pid, signal=sig, code=code, attempts=1)
        if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
            return error("timed-out", _text(exc) if str(exc) else f"TimeoutError: over {self.timeout} s", attempts=1)
        if isinstance(exc, concurrent.futures.CancelledError):
            return error("terminated", _text(exc))
        if isinstance(exc, RAISED + (ReturnedError,)) or expected_raise(type(exc).__name__, str(exc)):
            return super().classify(exc)
        if isinstance(exc, (RuntimeError, concurrent.futures.process.BrokenProcessPool)):
            # "Unexpected error within the Pool": the pool broke as a whole.
            return self.pool_broken(exc)
        return super().classify(exc)

    def close(self):
        """close() and join(); with the plan's `join_timeout_ms`, a
        join(timeout) first (`join-timed-out` past it), then a join without
        a bound (the run's deadline is the harness's). Once."""
        if self.ended:
            return
        self.ended = True
        self.pool.close()
        timeout = self.plan["join_timeout_ms"]
        if timeout is not None:
            try:
                self.pool.join(timeout / 1000)
                return
            except TimeoutError:
                self.emitter.join_timed_out(timeout)
        self.pool.join()


class Billiard(MpPool):
    """billiard.Pool as Celery drives it: apply_async per task, with a
    callback and an error_callback; with a task timeout, the pool's hard time
    limit (`Pool(timeout=...)`). The call style is always apply_async: billiard
    4.3.2's time-limit thread crashes on a pending `map` job (its accept time
    is a list), and the pool then SIGTERMs its own owner (docs/targets.md)."""

    name, style = "py-billiard", "apply-async"
    requires = ("billiard",)
    about = "billiard.Pool(workers) (Celery's fork of multiprocessing; fork): apply_async(f, (task,), callback, error_callback) per task; a task timeout becomes billiard's hard time limit"

    def make_pool(self):
        import billiard

        context = billiard.get_context(self.method or "fork")
        # The plan's task timeout is the hard time limit, unless the `timeout` knob says otherwise.
        limit = {"timeout": self.timeout} if self.timeout is not None else {}
        return context.Pool(processes=self.workers, **{**limit, **self.pool_kwargs(), **self.plan["knobs"]})

    knobs = ("lost_worker_timeout", "soft_timeout", "timeout", "max_memory_per_child")
    no_cancel = "billiard's AsyncResult has no cancel (Celery revokes a job by terminate_job(pid), killing its worker)"
    no_join_timeout = "billiard's Pool.join() takes no timeout"

    def classify(self, exc, handle=None):
        from billiard.einfo import ExceptionWithTraceback
        from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded, WorkerLostError

        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        pid = getattr(handle, "_worker_pid", None)
        if isinstance(exc, WorkerLostError):
            sig = code = None
            m = re.search(r"signal (\d+)", str(exc))
            if m:
                sig = int(m.group(1))
            m = re.search(r"exitcode (-?\d+)", str(exc))
            if m:
                code = int(m.group(1))
            return error("worker-lost", _text(exc), pid=pid, signal=sig, code=code, attempts=1)
        if isinstance(exc, TimeLimitExceeded):
            text = _text(exc)
            gone = self.watcher.scan().get(pid) if pid is not None else None
            if gone is not None:  # it was a dead worker's task: billiard's time limit came first
                text += f" (worker {pid} had already ended by {describe_exit(gone)})"
            return error("timed-out", text, pid=pid, attempts=1)
        if isinstance(exc, Terminated):
            return error("terminated", _text(exc), pid=pid)
        if isinstance(exc, SoftTimeLimitExceeded):  # raised in the task at the soft time limit
            return error("timed-out", _text(exc), pid=pid, attempts=1)
        return super().classify(exc)


TARGETS = {
    t.name: t
    for t in (
        PoolMap,
        PoolApply,
        PoolApplyAsync,
        PoolMapAsync,
        SeedPollingMap,
        SeedPollingMapAsync,
        ProcessPerTask,
        Ppe,
        Loky,
        Pebble,
        Billiard,
    )
}
