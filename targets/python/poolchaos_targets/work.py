"""The worker side: what runs inside every worker process of every target.

`run_task(task)` is the one function the pools are given. It is a top-level
function of an importable module, so every pool can pickle it by reference
(fork-based pools, loky's fork+exec workers, pebble, billiard alike). A task
is the plan's JSON object, as a dict: `{"tag": 3, "work": {...}, "fault": ...}`.

In a worker process, before its first task (from an `os.register_at_fork`
hook the owner installs, and again lazily in `run_task` for workers started
by exec, such as loky's), the worker:

- writes `POOLCHAOS_OOM_SCORE_ADJ` to `/proc/self/oom_score_adj`, so the
  kernel's OOM killer picks workers, not the owner;
- finds the harness's trace pipe: the inherited fd `POOLCHAOS_TRACE_FD` when
  it is still that pipe (the owner records the pipe's device and inode in
  `POOLCHAOS_TRACE_ID`), else the owner's copy reopened through
  `/proc/<owner pid>/fd/<n>` (a pool that starts workers by exec closes the
  fds it was not told about).

Each task then writes `start <tag> <attempt> <pid>` to the trace before it
runs and `done <tag> <attempt> <pid>` once its result is in hand (attempt is
always 0 for the bundled targets: no Python pool here retries), one
non-blocking `os.write` each.

The result is the task's deterministic bytes (`expected_output`), which the
owner checks. Faults fire where the task's `fault` says:

- `decode`: as the task starts, before any work;
- `mid-task`: halfway through the work (between the two halves of a sleep,
  a spin, an allocation; for echo and large results, right after `decode`);
- `write-result`: while the result is being pickled for the trip back. The
  task returns a `FaultyResult` whose `__reduce__` fires the fault, so the
  fault happens inside the pool's own send path (pickling happens before any
  byte is written: see docs/targets.md, "The write-result approximation").
"""

import ctypes
import os
import signal
import stat
import time

TRACE_FD_ENV = "POOLCHAOS_TRACE_FD"
TRACE_ID_ENV = "POOLCHAOS_TRACE_ID"
OWNER_PID_ENV = "POOLCHAOS_OWNER_PID"
OOM_SCORE_ADJ_ENV = "POOLCHAOS_OOM_SCORE_ADJ"

#: The tag of the warm-up task (u64::MAX, outside the plan's tags).
WARMUP_TAG = 2**64 - 1


class InjectedError(Exception):
    """The `Error` fault: the task's own exception."""


class InjectedPanic(RuntimeError):
    """The `Panic` fault: Python has no panic; a different exception type."""


def expected_output(task):
    """The one correct result of `task`: its tag as 8 little-endian bytes,
    then the workload's bytes (as pools/src/task.rs `expected_output`)."""
    tag = task["tag"]
    out = tag.to_bytes(8, "little")
    (kind, arg), = task["work"].items()
    if kind == "echo":
        return out + bytes(arg)
    if kind == "spin":
        return out + arg["us"].to_bytes(8, "little")
    if kind == "sleep":
        return out + arg["ms"].to_bytes(8, "little")
    if kind == "alloc":
        return out + arg["mib"].to_bytes(4, "little")
    if kind == "large":
        return out + large_pattern(tag, arg["bytes"])
    raise ValueError(f"unknown workload {kind!r}")


def large_pattern(tag, n):
    """Byte i is ((i mod 256) * 31 mod 256) XOR (tag mod 256)."""
    period = bytes(((i * 31) & 0xFF) ^ (tag & 0xFF) for i in range(256))
    whole, rest = divmod(n, 256)
    return period * whole + period[:rest]


# ---------------------------------------------------------------- per process

# (pid, trace fd or None) of this process, once set up.
_state = None
# Memory kept by `Alloc {hold: true}` tasks for the worker's life.
_held = []


def on_worker_start():
    """Sets this process up as a worker (idempotent per pid); returns the trace fd."""
    global _state
    pid = os.getpid()
    if _state is not None and _state[0] == pid:
        return _state[1]
    adj = os.environ.get(OOM_SCORE_ADJ_ENV)
    if adj:
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, adj.strip().encode())
            finally:
                os.close(fd)
        except OSError:
            pass
    _state = (pid, _open_trace())
    return _state[1]


def _open_trace():
    raw = os.environ.get(TRACE_FD_ENV)
    if not raw:
        return None
    try:
        fd = int(raw)
    except ValueError:
        return None
    want = os.environ.get(TRACE_ID_ENV)

    def is_trace(f):
        try:
            st = os.fstat(f)
        except OSError:
            return False
        if not stat.S_ISFIFO(st.st_mode):
            return False
        return want is None or want == f"{st.st_dev}:{st.st_ino}"

    if is_trace(fd):
        try:
            os.set_blocking(fd, False)
        except OSError:
            pass
        return fd
    # Started by exec with its fds closed (loky): reopen the owner's copy.
    owner = os.environ.get(OWNER_PID_ENV)
    if owner and want:
        try:
            f = os.open(f"/proc/{owner}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        if is_trace(f):
            return f
        os.close(f)
    return None


def trace(what, tag, fd, attempt=0):
    """One `<what> <tag> <attempt> <pid>` line: one write, < PIPE_BUF, never blocking."""
    if fd is None:
        return
    try:
        os.write(fd, f"{what} {tag} {attempt} {os.getpid()}\n".encode())
    except OSError:
        pass  # a full pipe (EAGAIN) or a gone reader: never stall a task for the trace


# ---------------------------------------------------------------- faults


def fire(kind):
    """Fires a fault. The deadly kinds do not return; `Error` and `Panic`
    raise; `sigstop` returns once the worker is continued."""
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "sigsegv":
        # A real invalid access (strlen(NULL)), not a raised signal.
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif isinstance(kind, dict) and "exit" in kind:
        os._exit(kind["exit"])
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "sigstop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    elif kind == "error":
        raise InjectedError("injected task error")
    elif kind == "panic":
        raise InjectedPanic("injected panic")
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    # A deadly signal is delivered before kill() returns; if not, wait for it.
    while True:
        time.sleep(3600)


class FaultyResult:
    """A task's result that fires its `write-result` fault while it is pickled
    to be sent back; if the fault lets it go on (sigstop), it unpickles as the
    plain result bytes."""

    def __init__(self, kind, payload):
        self.kind = kind
        self.payload = payload

    def __reduce__(self):
        fire(self.kind)
        return (bytes, (self.payload,))


# ---------------------------------------------------------------- the task


def _spin(us):
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


def _touched(n):
    buf = bytearray(n)
    # Write every page so the memory is really resident.
    buf[::4096] = b"\x01" * len(range(0, n, 4096))
    return buf


def run_task(task, attempt=0):
    """Runs one task in a worker: trace, work, faults. Returns the result
    bytes (or a `FaultyResult` that fires while being sent).

    `attempt` is for pools that retry (the bundled ones never do: 0): the
    fault fires on attempts `0..times`, and the trace lines carry it."""
    fd = on_worker_start()
    tag = task["tag"]
    fault = task.get("fault")
    if fault is not None and attempt >= fault.get("times", 1):
        fault = None
    point = fault["point"] if fault else None

    def at(p):
        if point == p:
            fire(fault["kind"])

    trace("start", tag, fd, attempt)
    at("decode")
    (kind, arg), = task["work"].items()
    if kind in ("echo", "large"):
        at("mid-task")
    elif kind == "spin":
        us = arg["us"]
        _spin(us // 2)
        at("mid-task")
        _spin(us - us // 2)
    elif kind == "sleep":
        ms = arg["ms"]
        time.sleep(ms // 2 / 1000)
        at("mid-task")
        time.sleep((ms - ms // 2) / 1000)
    elif kind == "alloc":
        total = arg["mib"] << 20
        first = _touched(total // 2)
        at("mid-task")
        second = _touched(total - total // 2)
        if arg.get("hold"):
            _held.extend([first, second])
        del first, second
    else:
        raise ValueError(f"unknown workload {kind!r}")
    result = expected_output(task)
    trace("done", tag, fd, attempt)
    if point == "write-result":
        return FaultyResult(fault["kind"], result)
    return result
