#!/usr/bin/env python3
"""Bring your own pool to poolchaos.

    poolchaos run --target 'python3 targets/python/examples/my_pool.py' scenarios/seed-map-sigkill.toml

This program is a poolchaos *owner* (see docs/targets.md) for a pool of your
own. Here the pool is what many services write after meeting
`BrokenProcessPool` for the first time: a `ProcessPoolExecutor` that is
started over when it breaks, with the tasks it lost submitted again, up to
the plan's `max_attempts`. Put your pool in place of `MyPool` and your
function in place of `my_function`; keep the marked steps, and the harness
does the rest (sandbox, faults, deadline, verdict, report).

What an owner must do, in order:
  1. read the plan (one JSON line on stdin);
  2. call `prepare_owner()` before starting the pool, so that every worker
     writes its trace lines and takes the OOM killer's attention;
  3. say `ready`, run the tasks, say each task's `outcome`, then `finished`.
Workers must run each task through `run_task(task, attempt)`: it does the
task's workload and its fault, and writes the trace lines the harness's
nemesis and diagnosis rely on.

Every fault point (docs/targets.md, "Fault points") reaches your pool with
three more steps: hand your pool `armed(task)` in place of the task (it
fires while pickled or unpickled: `encode`, `decode`, `transport`), give it
`worker_init` as its initializer after `prepare_start_faults(plan)` (`init`,
`recycle`, and the channel hook of `transport`), and say which stages your
pool lacks with `missing_stage` (reported `not-applicable`, nothing run).
The result-side points (`encode-result`, `transport-result`,
`decode-result`, `after-result`) need nothing: `run_task` returns what fires.

This pool does not handle hangs (no per-task deadline): a hung task hangs
it, and the harness reports `hung`. The call style of the plan is ignored.
"""

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import sys

# Runs from a clone, without installing anything.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from poolchaos_targets.protocol import (  # noqa: E402
    Emitter,
    ExitWatcher,
    StdinLines,
    error,
    missing_stage,
    ok_or_wrong,
    prepare_owner,
    prepare_start_faults,
    read_plan,
    wait_for_go,
)
from poolchaos_targets.work import WARMUP_TAG, armed, run_task, worker_init  # noqa: E402

#: The stages this pool does not have, and why: a plan with a fault at one
#: of them is reported `not-applicable`, and nothing runs.
MISSING = {
    "callback": "MyPool takes no callbacks",
    "close": "MyPool is shut down only after every task is over",
    "terminate": "MyPool has no terminate",
    "join": "MyPool is shut down only after every task is over",
    "recycle": "MyPool has no limit of tasks per worker",
}

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool


def my_function(task, attempt):
    """Your function, as your pool calls it in a worker. Under poolchaos it
    runs the plan's task: `run_task` does the work, the fault and the trace.
    (Your own setup, imports and wrappers go around it, as in production.)"""
    return run_task(task, attempt)


class MyPool:
    """A ProcessPoolExecutor that starts over when it breaks, and submits the
    tasks it lost again, up to `max_attempts` attempts per task."""

    def __init__(self, workers, max_attempts):
        self.workers = workers
        self.max_attempts = max(1, max_attempts)
        self.executor = self._new()

    def _new(self):
        # worker_init: the `init`, `recycle` and `transport` points (harmless without them).
        return concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("fork"), initializer=worker_init
        )

    def restart(self):
        self.executor.shutdown(wait=True)
        self.executor = self._new()

    def run_all(self, tasks, on_outcome):
        """Runs every task; calls on_outcome(index, record) once for each."""
        attempts = {i: 0 for i in range(len(tasks))}  # the tasks still to do, and their attempt
        while attempts:
            try:
                # armed(): the task, with what fires while it is pickled or unpickled.
                futures = {self.executor.submit(my_function, armed(tasks[i], a), a): i for i, a in attempts.items()}
            except BrokenProcessPool:  # it broke while idle: start over
                self.restart()
                continue
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                try:
                    value = future.result()
                except BrokenProcessPool as e:
                    if attempts[i] + 1 < self.max_attempts:
                        attempts[i] += 1  # lost with the pool: try again on a new one
                        continue
                    tries = attempts[i] + 1
                    on_outcome(i, error("pool-broken", f"gave up after {tries} attempts: {e}", attempts=tries))
                except (Exception, SystemExit) as e:  # SystemExit: a task that called sys.exit
                    on_outcome(i, error("task", f"{type(e).__name__}: {e}"))
                else:
                    on_outcome(i, ok_or_wrong(tasks[i], value))
                del attempts[i]
            if attempts:
                self.restart()

    def close(self):
        self.executor.shutdown(wait=True)


def main():
    emitter = Emitter()
    stdin = StdinLines()  # not sys.stdin: a pool that forks from its threads can deadlock on its lock
    plan = read_plan(stdin)  # 1. the plan
    missing = missing_stage(plan, MISSING)
    if missing:
        emitter.emit("not-applicable", point=missing[0], reason=missing[1])
        return
    prepare_owner()  # 2. before any worker starts
    prepare_start_faults(plan)
    pool = MyPool(plan["workers"], plan.get("max_attempts", 1))
    emitter.ready()  # 3. ready, outcomes, finished
    watcher = ExitWatcher(emitter).start()  # optional: worker-exit events, for the diagnosis
    if plan.get("warmup"):
        warm = {"tag": WARMUP_TAG, "work": {"echo": list(b"warm-up")}, "fault": None}
        pool.run_all([warm], lambda i, record: None)
        emitter.emit("warmed-up")
        wait_for_go(stdin)  # the harness may kill an idle worker now
    pool.run_all(plan["tasks"], emitter.outcome)
    pool.close()
    watcher.stop()
    emitter.emit("finished")


if __name__ == "__main__":
    main()
