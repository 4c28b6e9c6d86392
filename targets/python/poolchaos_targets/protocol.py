"""The owner side of the poolchaos target protocol (docs/targets.md).

The harness starts an *owner* process in a sandbox; the owner reads one JSON
plan line from stdin, starts its pool, runs the plan's tasks, and writes one
JSON event per line to stdout. The workers write `start`/`done` lines to the
trace pipe themselves (see `work.py`). This module is what any Python owner
needs, whatever pool it drives (the bundled targets in `targets.py`, or your
own: see `examples/my_pool.py`):

- `StdinLines` and `read_plan`: the plan line, checked (and later `go`);
- `Emitter`: events, one `os.write` per line, safe from any thread (held
  back while a benchmark's call is timed);
- `ok_or_wrong` / `error`: outcome records (`ok` is decided here, by comparing
  the result with `work.expected_output`);
- `prepare_owner`: the environment the workers need (owner pid, trace pipe
  identity) and the at-fork hook that sets every forked worker up;
- `ExitWatcher`: learns how workers ended without reaping anyone (it reads
  the `returncode` the pool's own reaper recorded, and the exit status of
  zombies in `/proc`), and reports each as a `worker-exit` event.
"""

import json
import os
import signal
import threading

from . import work

STYLES = ("map", "apply", "apply-async", "map-async")
WORKLOADS = ("echo", "spin", "sleep", "alloc", "large")
FAULT_KINDS = (
    "sigkill",
    "sigsegv",
    "abort",
    "hang",
    "sigstop",
    "error",
    "panic",
    "sys-exit",
    "unpicklable",
    "base-exception",
    "memory-error",
    "ignore-sigterm",
    "return-exception",
)
#: In pipeline order, spelled as in scenario files (harness/src/protocol.rs FAULT_POINTS).
FAULT_POINTS = (
    "encode",
    "transport",
    "init",
    "decode",
    "mid-task",
    "encode-result",
    "transport-result",
    "decode-result",
    "after-result",
    "callback",
    "close",
    "terminate",
    "join",
    "recycle",
    "spawn",
)
ERROR_KINDS = ("task", "worker-lost", "timed-out", "pool-broken", "terminated", "spawn-failed", "cancelled")
# What an owner may write on stdout, and the callbacks it reports. The Rust
# side (harness/src/protocol.rs) spells the same names; a test compares them.
EVENTS = (
    "ready",
    "warmed-up",
    "outcome",
    "duplicate",
    "callback",
    "worker-exit",
    "timed",
    "finished",
    "skipped",
    "not-applicable",
    "owner-error",
    "join-timed-out",
)
CALLBACKS = ("result", "error")


class PlanError(ValueError):
    """The plan line is not a plan."""


class StdinLines:
    """Lines from an fd (stdin) read with os.read, holding no Python lock.

    Not `sys.stdin`: a fork-based pool forks workers from its own threads at
    any time (to replace a dead one), and a child forked while the main
    thread sits in `sys.stdin.readline()` inherits the stream's lock held;
    multiprocessing's child then closes `sys.stdin` and waits for that lock
    forever. (Seen here: after the idle-worker kill, the replacement worker
    hung in `_close_stdin` while the owner waited for `go`.)"""

    def __init__(self, fd=0):
        self.fd = fd
        self.buffer = b""

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def read_plan(stream):
    """Reads and checks the plan: the first line of `stream` (anything with
    `readline()`: a `StdinLines`, or a file). Returns it as a dict."""
    line = stream.readline()
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    if not line.strip():
        raise PlanError("no plan on stdin (expected one JSON line)")
    try:
        plan = json.loads(line)
    except ValueError as e:
        raise PlanError(f"the plan is not JSON: {e}") from None
    return check_plan(plan)


def check_plan(plan):
    if not isinstance(plan, dict):
        raise PlanError("the plan must be a JSON object")
    for key in ("workers", "style", "tasks"):
        if key not in plan:
            raise PlanError(f"the plan has no {key!r}")
    if not isinstance(plan["workers"], int) or plan["workers"] < 1:
        raise PlanError(f"workers must be a positive integer, not {plan['workers']!r}")
    if plan["style"] not in STYLES:
        raise PlanError(f"unknown call style {plan['style']!r} (known: {', '.join(STYLES)})")
    if not isinstance(plan["tasks"], list):
        raise PlanError("tasks must be a list")
    for i, task in enumerate(plan["tasks"]):
        check_task(task, f"tasks[{i}]")
    plan.setdefault("task_timeout_ms", None)
    plan.setdefault("max_attempts", 1)
    plan.setdefault("warmup", False)
    plan.setdefault("bench", False)
    for key in ("chunksize", "max_tasks"):
        value = plan.setdefault(key, None)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise PlanError(f"{key} must be a positive integer, not {value!r}")
    knobs = plan.setdefault("knobs", {})
    if not isinstance(knobs, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in knobs.values()):
        raise PlanError(f"knobs must map names to positive numbers, not {knobs!r}")
    check_cancel(plan)
    timeout = plan.setdefault("join_timeout_ms", None)
    if timeout is not None and (not isinstance(timeout, int) or timeout < 1):
        raise PlanError(f"join_timeout_ms must be a positive integer, not {timeout!r}")
    if plan["bench"] and not plan["warmup"]:
        raise PlanError("a bench plan needs warmup: its call is timed on a started, warmed-up pool")
    return plan


def check_cancel(plan):
    """`cancel`: the tasks to cancel after submission, each `{"task": index, "after_ms": n}`."""
    cancel = plan.setdefault("cancel", [])
    n = len(plan["tasks"])
    for c in cancel if isinstance(cancel, list) else [cancel]:
        if not (
            isinstance(c, dict)
            and isinstance(c.get("task"), int)
            and 0 <= c["task"] < n
            and isinstance(c.get("after_ms"), int)
            and c["after_ms"] >= 0
        ):
            raise PlanError(f"cancel: each is {{task: 0..{n}, after_ms: ms}}, not {c!r}")


def check_task(task, where):
    if not isinstance(task, dict) or not isinstance(task.get("tag"), int):
        raise PlanError(f"{where}: a task is an object with an integer tag")
    work_ = task.get("work")
    if not isinstance(work_, dict) or len(work_) != 1 or next(iter(work_)) not in WORKLOADS:
        raise PlanError(f"{where}: work must be one of {', '.join(WORKLOADS)}, not {work_!r}")
    fault = task.get("fault")
    if fault is None:
        return
    kind = fault.get("kind") if isinstance(fault, dict) else None
    exit_kind = isinstance(kind, dict) and list(kind) == ["exit"] and isinstance(kind["exit"], int)
    if not (kind in FAULT_KINDS or exit_kind):
        raise PlanError(f"{where}: unknown fault kind {kind!r}")
    if fault.get("point") not in FAULT_POINTS:
        raise PlanError(f"{where}: unknown fault point {fault.get('point')!r}")


# ---------------------------------------------------------------- events


class Emitter:
    """Writes events as JSON lines to an fd (stdout), one `os.write` per line
    (looping on a short write), under a lock: safe from the pool's threads
    (callbacks, the exit watcher). Nothing is buffered in Python, so a forked
    worker never inherits half an event."""

    def __init__(self, fd=1):
        self.fd = fd
        self.lock = threading.Lock()
        # While timing a benchmark's call: events kept here, written by `release`.
        self.held = None

    def emit(self, event, **fields):
        self._send(lambda: _line(event, fields))

    def _send(self, line):
        with self.lock:
            if self.held is not None:
                self.held.append(line)
            else:
                self._write(line())

    def _write(self, data):
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # the harness is gone: no one to tell; the sandbox ends us

    def hold(self):
        """From now on keep events (no JSON, no write, results unchecked)
        until `release`: while a benchmark's call is timed, so the adapter's
        own reporting is not timed with the pool."""
        with self.lock:
            self.held = []

    def release(self):
        """Writes the held events, in order, and stops holding."""
        with self.lock:
            held, self.held = self.held or [], None
            for i in range(0, len(held), 512):
                self._write(b"".join(line() for line in held[i : i + 512]))

    def ready(self):
        self.emit("ready", pid=os.getpid())

    def outcome(self, index, result):
        self.emit("outcome", index=index, result=result)

    def result(self, index, task, value):
        """The outcome of a task that returned `value`: `ok` or `wrong`
        (checked at `release` while events are held, as the call is timed)."""
        self._send(lambda: _line("outcome", {"index": index, "result": ok_or_wrong(task, value)}))

    def callback(self, kind):
        if kind not in CALLBACKS:
            raise ValueError(f"not a callback kind: {kind!r}")
        self.emit("callback", kind=kind)

    def skipped(self, reason):
        self.emit("skipped", reason=reason)

    def not_applicable(self, point, reason):
        """The plan places a fault at a stage this target does not have: nothing runs."""
        self.emit("not-applicable", point=point, reason=reason)

    def join_timed_out(self, timeout_ms):
        self.emit("join-timed-out", timeout_ms=timeout_ms)

    def owner_error(self, message):
        self.emit("owner-error", message=message)


def _line(event, fields):
    return (json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n").encode()


def ok_or_wrong(task, value):
    """The record of a result: `ok` if it is the task's exact bytes (for a
    task with the `return-exception` fault: the exception object it returned)."""
    fault = task.get("fault")
    if fault and fault["kind"] == "return-exception":
        good = value == work.ReturnedError(task["tag"])
    else:
        good = isinstance(value, (bytes, bytearray)) and bytes(value) == work.expected_output(task)
    return {"status": "ok" if good else "wrong"}


def error(kind, message, pid=None, signal=None, code=None, attempts=None):
    """The record of an error; `kind` is one of `ERROR_KINDS`."""
    assert kind in ERROR_KINDS, kind
    return {
        "status": "error",
        "kind": kind,
        "pid": pid,
        "signal": signal,
        "code": code,
        "attempts": attempts,
        "message": message,
    }


# ---------------------------------------------------------------- exits


def exit_fields(exitcode):
    """(signal, code) from a multiprocessing exitcode (negative: a signal)."""
    if exitcode is None:
        return None, None
    if exitcode < 0:
        return -exitcode, None
    return None, exitcode


def describe_exit(exitcode):
    sig, code = exit_fields(exitcode)
    if sig is not None:
        try:
            return f"signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"signal {sig}"
    return f"exit code {code}"


def zombie_exitcode(pid):
    """The exit of a child that has died but is not reaped yet (a zombie),
    read from /proc/<pid>/stat, as a multiprocessing exitcode; else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if not fields or fields[0] != b"Z" or len(fields) < 50:
        return None
    status = int(fields[49])  # field 52, exit_code: the status as waitpid(2) reports it
    if status & 0x7F:
        return -(status & 0x7F)
    return (status >> 8) & 0xFF


def children():
    """Pids of this process's children (every thread's)."""
    pids = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


class ExitWatcher:
    """Learns how workers ended, without reaping any (the pool reaps its own):
    from the `returncode` its reaper left on the process objects `sources()`
    returns, and from the exit status of any child that is a zombie. Each
    exit is emitted once as `worker-exit`. A thread scans every `interval`."""

    def __init__(self, emitter, sources=lambda: (), interval=0.01):
        self.emitter = emitter
        self.sources = sources
        self.interval = interval
        self.seen = {}  # id(process object) -> object, seen alive and not known ended
        self.exits = {}  # pid -> exitcode, in the order learned
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._loop, name="poolchaos-exit-watcher", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        self.scan()

    def _loop(self):
        while not self.stopping.wait(self.interval):
            try:
                self.scan()
            except Exception:  # a pool's insides changed under us: try again next time
                pass

    def scan(self):
        """Looks now; returns {pid: exitcode} of every exit known so far."""
        found = []
        try:
            procs = list(self.sources() or ())
        except Exception:
            procs = []
        with self.lock:
            for p in procs:
                self.seen.setdefault(id(p), p)
            for key, p in list(self.seen.items()):
                pid = getattr(p, "pid", None)
                code = getattr(getattr(p, "_popen", None), "returncode", None)
                if pid is not None and code is not None:
                    del self.seen[key]  # ended: nothing more to learn from it
                    if pid not in self.exits:
                        self.exits[pid] = code
                        found.append((pid, code))
            for pid in children():
                if pid not in self.exits:
                    code = zombie_exitcode(pid)
                    if code is not None:
                        self.exits[pid] = code
                        found.append((pid, code))
            known = dict(self.exits)
        for pid, code in found:
            sig, c = exit_fields(code)
            self.emitter.emit("worker-exit", pid=pid, signal=sig, code=c)
        return known

    def record(self, pid, exitcode):
        """An exit the owner learned itself (it reaped the process): emitted
        unless already known."""
        with self.lock:
            if pid in self.exits:
                return
            self.exits[pid] = exitcode
        sig, c = exit_fields(exitcode)
        self.emitter.emit("worker-exit", pid=pid, signal=sig, code=c)

    def abnormal(self, ignore_sigterm=True):
        """[(pid, exitcode)] of workers known to have died abnormally (a signal
        or a non-zero code), oldest first; SIGTERM is left out by default, as
        the pools send it themselves when they shut a broken pool down."""
        return [
            (pid, code)
            for pid, code in self.scan().items()
            if code != 0 and not (ignore_sigterm and code == -signal.SIGTERM)
        ]


# ---------------------------------------------------------------- the owner


def prepare_owner():
    """Call once in the owner before the pool starts: records the owner's
    pid and the trace pipe's identity in the environment the workers inherit,
    and sets every process forked from here up as a worker (oom_score_adj,
    trace) as it starts. The owner itself writes no trace lines."""
    os.environ[work.OWNER_PID_ENV] = str(os.getpid())
    raw = os.environ.get(work.TRACE_FD_ENV)
    if raw:
        try:
            st = os.fstat(int(raw))
            os.environ[work.TRACE_ID_ENV] = f"{st.st_dev}:{st.st_ino}"
        except (OSError, ValueError):
            os.environ.pop(work.TRACE_FD_ENV, None)  # not an fd: no trace
    os.register_at_fork(after_in_child=_forked)


def prepare_start_faults(plan):
    """Call once in the owner before the pool starts, when a task of the
    plan has an `init` or `recycle` fault: fills a pipe with one start token
    per worker start (`work.worker_init` takes one each): for `init`, the
    first `times` starts fire; for `recycle`, the pool's first `workers`
    starts are clean and the next `times` (the replacements) fire."""
    for task in plan["tasks"]:
        fault = task.get("fault")
        if fault and fault["point"] in ("init", "recycle"):
            break
    else:
        return
    times = min(fault.get("times", 1), 4096)
    tokens = (b"s" * plan["workers"] if fault["point"] == "recycle" else b"") + b"f" * times
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    os.write(writer, tokens)
    os.close(writer)
    st = os.fstat(reader)
    os.environ[work.TOKENS_FD_ENV] = str(reader)
    os.environ[work.TOKENS_ID_ENV] = f"{st.st_dev}:{st.st_ino}"
    os.environ[work.TOKEN_KIND_ENV] = json.dumps(fault["kind"])


def missing_stage(plan, missing):
    """(point, why) for the first fault of the plan at a stage in `missing`
    (`{point: why this pool lacks it}`), or None. An owner reports it as
    `not-applicable` and runs nothing."""
    for task in plan["tasks"]:
        fault = task.get("fault")
        if fault and fault["point"] in missing:
            return fault["point"], missing[fault["point"]]
    return None


def _forked():
    # Any fork of the owner is a worker of its pool (or a process-per-task child).
    if os.environ.get(work.OWNER_PID_ENV) == str(os.getppid()):
        work.on_worker_start()


def wait_for_go(stdin):
    """After `warmed-up`: the harness writes `go` once it has acted."""
    line = stdin.readline()
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    if line.strip() != "go":
        raise PlanError(f"expected 'go' after the warm-up, got {line.strip()!r}")

