"""The owner's life, the same for every target: read the plan, check the
target can run here (else `skipped`), start the pool (`ready`), warm up if
asked, run the tasks (timing the call, for a benchmark's plan: `timed`),
close and join (`finished`). Anything that goes wrong
in the adapter itself is an `owner-error`, after which the owner kills its
children so nothing outlives it."""

import importlib
import os
import signal
import sys
import time
import traceback

from .protocol import (
    Emitter,
    PlanError,
    StdinLines,
    children,
    ok_or_wrong,
    prepare_owner,
    prepare_start_faults,
    read_plan,
    wait_for_go,
)
from .targets import TARGETS
from .work import WARMUP_TAG

USAGE = (
    "usage: python -m poolchaos_targets NAME [--start-method fork|forkserver|spawn]  (plan on stdin, events on stdout)\n"
    "       python -m poolchaos_targets --list\n"
    "       python -m poolchaos_targets --methods   (each target and the start methods it takes)"
)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "--list":
        for name, cls in TARGETS.items():
            needs = f" (needs {', '.join(cls.requires)})" if cls.requires else ""
            print(f"{name:24} {cls.about}{needs}; default start method {cls.default_method}")
        return 0
    if argv[0] == "--methods":
        for name, cls in TARGETS.items():
            print(name, *cls.methods)
        return 0
    name, method = argv[0], None
    emitter = Emitter()
    cls = TARGETS.get(name)
    if cls is None:
        emitter.owner_error(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
        return 2
    if argv[1:2] == ["--start-method"] and len(argv) == 3 and argv[2] in cls.methods:
        method = argv[2]
    elif argv[1:]:
        emitter.owner_error(f"{name}: bad arguments {argv[1:]!r}; {USAGE}")
        return 2
    stdin = StdinLines(0)  # not sys.stdin: see StdinLines
    try:
        plan = read_plan(stdin)
    except PlanError as e:
        emitter.owner_error(f"{name}: {e}")
        return 2
    missing = unavailable(cls)
    if missing:
        emitter.skipped(f"{name}: {missing}")
        return 0
    return run(name, cls, plan, emitter, stdin, method)


def unavailable(cls):
    """Why the target cannot run here, or None."""
    for module in cls.requires:
        try:
            importlib.import_module(module)
        except Exception as e:
            return (
                f"the Python package {module!r} is not importable by {sys.executable} "
                f"({type(e).__name__}: {e}); run targets/python/setup.sh to install the pinned pools into .venv"
            )
    return None


def run(name, cls, plan, emitter, stdin, method=None):
    prepare_owner()
    target = cls(plan, emitter, method)
    style = cls.style or plan["style"]
    missing = target.not_applicable()
    if missing:
        emitter.not_applicable(*missing)
        return 0
    prepare_start_faults(plan)
    try:
        target.start()
        emitter.ready()
        target.watcher.start()
        if plan["warmup"]:
            task = {"tag": WARMUP_TAG, "work": {"echo": list(b"warm-up")}, "fault": None}
            value = target.warmup(task)
            if ok_or_wrong(task, value)["status"] != "ok":
                raise RuntimeError(f"the warm-up task returned a wrong result: {value!r:.80}")
            emitter.emit("warmed-up")
            wait_for_go(stdin)
        if plan["bench"]:
            # The call alone is timed: from the first submission to the last
            # result in hand; the adapter's events wait until it is over.
            emitter.hold()
            try:
                started = time.perf_counter_ns()
                target.run(style)
                ended = target.returned or time.perf_counter_ns()
                emitter.emit("timed", us=(ended - started) // 1000)
            finally:
                emitter.release()
        else:
            target.run(style)
        target.close()
        target.watcher.stop()
        emitter.emit("finished")
        return 0
    except Exception as e:
        traceback.print_exc()
        emitter.owner_error(f"{name}: {type(e).__name__}: {e}")
        # Leave nothing behind: the workers go with the failed owner.
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return 2
