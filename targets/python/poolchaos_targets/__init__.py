"""poolchaos_targets: real Python process pools, driven by the poolchaos
harness through its owner protocol (docs/targets.md).

`python -m poolchaos_targets NAME` is a pool's *owner*: it reads a plan (one
JSON line) on stdin, runs the plan's tasks on the pool NAME names, in that
pool's call style, and reports what the caller sees as JSON events on stdout.
Its workers write `start`/`done` trace lines to the harness's trace pipe. The
harness does the rest (sandbox, nemesis, deadline, verdict, report).

Modules, in the order a reader wants them:

- `protocol`: the owner side of the protocol, reusable by any Python owner
  (plan, events, outcome records, the exit watcher);
- `work`: what runs in a worker: the deterministic workloads, the
  self-placed faults, the trace lines (`run_task` is the function every pool
  is given);
- `targets`: the pools (`TARGETS`), each called as its users call it;
- `owner`: the life of an owner process, the same for every target.

The core needs only the standard library; loky, pebble and billiard are
optional (a target whose package is missing reports `skipped`).
"""

from .protocol import Emitter, ExitWatcher, error, ok_or_wrong, prepare_owner, read_plan
from .work import expected_output, run_task

__all__ = [
    "Emitter",
    "ExitWatcher",
    "error",
    "expected_output",
    "ok_or_wrong",
    "prepare_owner",
    "read_plan",
    "run_task",
]
