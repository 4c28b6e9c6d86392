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
owner checks. Faults fire where the task's `fault` says (docs/targets.md,
"Fault points"): in the worker, in the owner (the parent),
or in the pool's own pickling of the task or the result, by real pickling
failures (`__reduce__` that raises, exits or crashes), as the peers' own
tests do. `armed(task)` is what the owner hands its pool in place of the
plain task: the task with the objects that fire while it is pickled or
unpickled. `worker_init` is the initializer every pool gets when the plan
needs one (the `init`, `recycle` and `transport` points).
"""

import ctypes
import io
import json
import multiprocessing.connection
import os
import signal
import stat
import sys
import threading
import time

TRACE_FD_ENV = "POOLCHAOS_TRACE_FD"
TRACE_ID_ENV = "POOLCHAOS_TRACE_ID"
OWNER_PID_ENV = "POOLCHAOS_OWNER_PID"
OOM_SCORE_ADJ_ENV = "POOLCHAOS_OOM_SCORE_ADJ"
#: The pipe of start tokens the owner fills for `worker_init` (fd, and its dev:ino).
TOKENS_FD_ENV = "POOLCHAOS_TOKENS_FD"
TOKENS_ID_ENV = "POOLCHAOS_TOKENS_ID"
TOKEN_KIND_ENV = "POOLCHAOS_TOKEN_KIND"

#: A task with a `transport` fault carries this much padding: more than a pipe holds.
TRANSPORT_PAD = 1 << 20
#: What the padding starts with, so a worker reading a frame knows it early.
TRANSPORT_MARK = b"poolchaos-transport:"

#: The tag of the warm-up task (u64::MAX, outside the plan's tags).
WARMUP_TAG = 2**64 - 1


class InjectedError(Exception):
    """The `error` fault: the task's own exception."""


class InjectedPanic(RuntimeError):
    """The `panic` fault: Python has no panic; a different exception type."""


class InjectedBaseException(BaseException):
    """The `base-exception` fault: a BaseException that is no Exception (as
    KeyboardInterrupt is), which `except Exception` does not catch."""


class ReturnedError(Exception):
    """What a task with the `return-exception` fault returns (not raises):
    `ReturnedError(tag)`, which must reach the caller as that value."""

    def __eq__(self, other):
        return type(other) is ReturnedError and other.args == self.args

    __hash__ = Exception.__hash__


class Unpicklable:
    """What pickle itself refuses: it holds a lock, so pickling it raises
    pickle's own TypeError ("cannot pickle '_thread.lock' object")."""

    def __init__(self, value=None):
        self.lock = threading.Lock()
        self.value = value


def expected_output(task):
    """The one correct result of `task`: its tag as 8 little-endian bytes,
    then the workload's bytes (as pools/src/task.rs `expected_output`)."""
    tag = task["tag"]
    out = tag.to_bytes(8, "little")
    (kind, arg), = task["work"].items()
    if kind == "echo":
        return out + echo_bytes(arg)
    if kind == "spin":
        return out + arg["us"].to_bytes(8, "little")
    if kind == "sleep":
        return out + arg["ms"].to_bytes(8, "little")
    if kind == "alloc":
        return out + arg["mib"].to_bytes(4, "little")
    if kind == "large":
        return out + large_pattern(tag, arg["bytes"])
    raise ValueError(f"unknown workload {kind!r}")


def echo_bytes(arg):
    """An echo's bytes as the plan carries them: a hex string (the harness
    writes that), or a list of numbers."""
    return bytes.fromhex(arg) if isinstance(arg, str) else bytes(arg)


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
    _state = (pid, _inherited(TRACE_FD_ENV, TRACE_ID_ENV, os.O_WRONLY))
    return _state[1]


def _inherited(fd_env, id_env, mode):
    """An fd of the owner's that a worker needs (the trace pipe, the token
    pipe): the inherited one if it is still that pipe, else the owner's copy
    reopened through /proc (a worker started by exec has its fds closed).
    Non-blocking either way."""
    raw = os.environ.get(fd_env)
    if not raw:
        return None
    try:
        fd = int(raw)
    except ValueError:
        return None
    want = os.environ.get(id_env)

    def is_it(f):
        try:
            st = os.fstat(f)
        except OSError:
            return False
        if not stat.S_ISFIFO(st.st_mode):
            return False
        return want is None or want == f"{st.st_dev}:{st.st_ino}"

    if is_it(fd):
        try:
            os.set_blocking(fd, False)
        except OSError:
            pass
        return fd
    # Started by exec with its fds closed (loky): reopen the owner's copy.
    owner = os.environ.get(OWNER_PID_ENV)
    if owner and want:
        try:
            f = os.open(f"/proc/{owner}/fd/{fd}", mode | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        if is_it(f):
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
    """Fires a fault. The deadly kinds do not return; `error` and `panic`
    raise, and `sys-exit` raises SystemExit(1), as the peers' `sys.exit`;
    `base-exception` and `memory-error` raise theirs; `sigstop` returns
    once the worker is continued, `ignore-sigterm` at once, SIGTERM ignored
    from then on. `unpicklable` and `return-exception` are values, made
    where they are placed (`armed`, `run_task`)."""
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
    elif kind == "sys-exit":
        sys.exit(1)
    elif kind == "base-exception":
        raise InjectedBaseException("injected BaseException")
    elif kind == "memory-error":
        raise MemoryError("injected MemoryError")
    elif kind == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    elif kind in ("unpicklable", "return-exception"):
        return  # made where they are placed: `armed`, `run_task`
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    # A deadly signal is delivered before kill() returns; if not, wait for it.
    while True:
        time.sleep(3600)


def fire_unpickled(kind, value=None):
    """What an object armed to fire when unpickled unpickles as: fires, and
    (if the fault lets it go on) is `value`."""
    fire(kind)
    return value


class AtPickle:
    """Fires its fault while pickled (in the parent for a task, in the
    worker for a result); if the fault lets it go on, unpickles as `value`."""

    def __init__(self, kind, value=None):
        self.kind = kind
        self.value = value

    def __reduce__(self):
        fire(self.kind)
        return (_identity, (self.value,))


class AtUnpickle:
    """Fires its fault while unpickled (in the worker for a task, in the
    parent for a result), and is `value` after it."""

    def __init__(self, kind, value=None):
        self.kind = kind
        self.value = value

    def __reduce__(self):
        return (fire_unpickled, (self.kind, self.value))


class AtCollect:
    """A result that pickles as its bytes and fires its fault when the
    worker lets go of it, after it is sent (a crash in a destructor, as
    loky's CrashAtGCInWorker)."""

    def __init__(self, kind, value):
        self.kind = kind
        self.value = value

    def __reduce__(self):
        return (_identity, (self.value,))

    def __del__(self):
        if os.environ.get(OWNER_PID_ENV) != str(os.getpid()):
            fire(self.kind)


def _identity(value):
    return value


def armed(task, attempt=0):
    """What the owner hands its pool for `task` (on `attempt`, for a pool
    that retries): the task itself, or a copy carrying what fires at its
    pickling point (`encode`: while the parent pickles it; `decode`: while
    the worker unpickles it; `transport`: a padding larger than a pipe,
    which the worker dies reading)."""
    fault = task.get("fault")
    if fault is not None and attempt >= fault.get("times", 1):
        return task
    point = fault and fault.get("point")
    if point == "encode" and fault["kind"] == "unpicklable":
        return dict(task, bomb=Unpicklable())
    if point == "encode":
        return dict(task, bomb=AtPickle(fault["kind"]))
    if point == "decode":
        return dict(task, bomb=AtUnpickle(fault["kind"]))
    if point == "transport":
        mark = TRANSPORT_MARK + json.dumps(fault["kind"]).encode() + b";"
        return dict(task, pad=mark + b"x" * (TRANSPORT_PAD - len(mark)))
    return task


# ---------------------------------------------------------------- lifecycle


def set_stage(name):
    """The owner marks the stage it is entering (`close`, `terminate`,
    `join`) in its main thread's name, which a worker waiting to die at that
    stage reads from /proc/<owner>/comm: no file, nothing left behind."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, f"pc:{name}".encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _wait_for_stage(name, limit=60.0):
    """Waits (at most `limit` s) until the owner enters stage `name`."""
    path = f"/proc/{os.environ.get(OWNER_PID_ENV)}/comm"
    want = f"pc:{name}"[:15]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            with open(path) as f:
                if f.read().strip() == want:
                    return
        except OSError:
            return  # the owner is gone: nothing to wait for
        time.sleep(0.005)


# ---------------------------------------------------------------- worker start


def worker_init():
    """Every worker's initializer, when the plan needs one: sets the worker
    up, arms the `transport` point on the pool's own channel, and takes one
    start token from the owner's token pipe (one byte, so each worker takes
    exactly one however many read at once): `f` fires the plan's start
    fault (`init`, `recycle`), whose kind is in `TOKEN_KIND_ENV`; `s`, or
    no token left, starts clean."""
    on_worker_start()
    _arm_transport()
    fd = _inherited(TOKENS_FD_ENV, TOKENS_ID_ENV, os.O_RDONLY)
    if fd is None:
        return
    try:
        token = os.read(fd, 1)
    except OSError:  # EAGAIN: no token left
        token = b""
    finally:
        if str(fd) != os.environ.get(TOKENS_FD_ENV):
            os.close(fd)
    if token == b"f":
        fire(json.loads(os.environ[TOKEN_KIND_ENV]))


def _arm_transport():
    """Makes the pool's channel fire a `transport` fault while the task is
    still arriving: a frame larger than a pipe whose padding starts with
    `TRANSPORT_MARK` is read part way (the parent still writing the rest),
    then the fault fires."""
    for cls in _connection_classes():
        recv = cls.__dict__.get("_recv")
        if recv is None or getattr(recv, "poolchaos", False):
            continue

        def patched(self, size, *args, _recv=recv, **kwargs):
            if size < TRANSPORT_PAD:
                return _recv(self, size, *args, **kwargs)
            first = _recv(self, 1 << 16, *args, **kwargs)
            data = first.getvalue() if hasattr(first, "getvalue") else bytes(first)
            at = data.find(TRANSPORT_MARK)
            if at >= 0:
                end = data.find(b";", at)
                fire(json.loads(data[at + len(TRANSPORT_MARK) : end]))
            rest = _recv(self, size - len(data), *args, **kwargs)
            more = rest.getvalue() if hasattr(rest, "getvalue") else bytes(rest)
            return io.BytesIO(data + more)

        patched.poolchaos = True
        cls._recv = patched


def _connection_classes():
    classes = [multiprocessing.connection.Connection]
    billiard = sys.modules.get("billiard.connection")
    if billiard is not None and hasattr(billiard, "Connection"):
        classes.append(billiard.Connection)
    return classes


def _arm_torn_write(kind):
    """Makes the next result this worker sends die half-way through its
    write: the pool's own channel, holding whatever lock the pool holds
    around it (the `transport-result` point). A header
    alone (the first write of a large message) goes through whole."""
    for cls in _connection_classes():
        send = cls.__dict__.get("_send")
        if send is None:
            continue

        def patched(self, buf, *args, _send=send, _cls=cls, **kwargs):
            if len(buf) <= 8:
                return _send(self, buf, *args, **kwargs)
            _cls._send = _send
            view = memoryview(buf)
            _send(self, view[: len(view) // 2], *args, **kwargs)
            fire(kind)
            return _send(self, view[len(view) // 2 :], *args, **kwargs)

        cls._send = patched


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
    bytes, or an object that fires the result's fault where it is placed
    (`AtPickle`, `AtUnpickle`, `AtCollect`).

    `attempt` is for pools that retry (the bundled ones never do: 0): the
    fault fires on attempts `0..times`, and the trace lines carry it."""
    fd = on_worker_start()
    tag = task["tag"]
    fault = task.get("fault")
    if fault is not None and attempt >= fault.get("times", 1):
        fault = None
    point = fault["point"] if fault else None

    def mid():
        # `spawn`: the worker dies mid-task; the harness's limit on the run's
        # pids.max makes the kernel refuse whatever the pool starts after it.
        if point in ("mid-task", "spawn"):
            fire(fault["kind"])
        elif point in ("close", "terminate", "join"):
            if fault["kind"] == "ignore-sigterm":
                fire(fault["kind"])  # ahead of the stage whose SIGTERM it must find ignored
            _wait_for_stage(point)
            fire(fault["kind"])

    trace("start", tag, fd, attempt)
    (kind, arg), = task["work"].items()
    if kind in ("echo", "large"):
        mid()
    elif kind == "spin":
        us = arg["us"]
        _spin(us // 2)
        mid()
        _spin(us - us // 2)
    elif kind == "sleep":
        ms = arg["ms"]
        time.sleep(ms // 2 / 1000)
        mid()
        time.sleep((ms - ms // 2) / 1000)
    elif kind == "alloc":
        total = arg["mib"] << 20
        first = _touched(total // 2)
        mid()
        second = _touched(total - total // 2)
        if arg.get("hold"):
            _held.extend([first, second])
        del first, second
    else:
        raise ValueError(f"unknown workload {kind!r}")
    result = expected_output(task)
    trace("done", tag, fd, attempt)
    if point == "mid-task" and fault["kind"] == "return-exception":
        return ReturnedError(tag)
    if point == "encode-result" and fault["kind"] == "unpicklable":
        return Unpicklable(result)
    if point == "encode-result":
        return AtPickle(fault["kind"], result)
    if point == "transport-result":
        _arm_torn_write(fault["kind"])
    if point == "decode-result":
        return AtUnpickle(fault["kind"], result)
    if point == "after-result":
        return AtCollect(fault["kind"], result)
    return result
