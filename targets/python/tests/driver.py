"""A small stand-in for the harness, to test the adapter end to end: it starts
`python -m poolchaos_targets NAME` as the runner does (own process group, a
temp dir as cwd and TMPDIR, an inherited trace pipe, `POOLCHAOS_OOM_SCORE_ADJ`),
writes the plan, and follows the events and the trace. `kill()` tears the
whole process group down and checks nothing is left, as the harness's leak
check does; the named POSIX semaphores the run's processes held (recorded
by inode while they live, as the harness does: see
harness/src/run/sandbox/shm.rs) and left in /dev/shm are removed and reported.

Also runnable by hand: `python3 targets/python/tests/driver.py NAME PLAN_JSON`
prints every event and trace line with its time, until `finished` or 10 s.
"""

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)  # targets/python
REPO = os.path.dirname(os.path.dirname(PACKAGE_DIR))
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def python():
    """The Python the harness would use: the project's venv if there is one
    (`POOLCHAOS_TEST_PYTHON` overrides it)."""
    if os.environ.get("POOLCHAOS_TEST_PYTHON"):
        return os.environ["POOLCHAOS_TEST_PYTHON"]
    return VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable


def become_subreaper():
    """Orphaned workers of a killed adapter come back to us to be reaped."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reap_orphans():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def group_members(pgid):
    """Pids of live (non-zombie) processes in process group `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def children_of(pid):
    """Pids of the children of every thread of `pid`."""
    found = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def syscall_of(pid):
    """The syscall number `pid` is blocked in (from /proc/<pid>/syscall), or None."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()
    except OSError:
        return None
    return int(first[0]) if first and first[0].lstrip("-").isdigit() else None


SEM = "/dev/shm/sem."
#: Every semaphore inode a run of this process held (for tearDownModule).
RUN_INODES = set()


def held_semaphores(pids):
    """Inodes of the /dev/shm/sem.* files `pids` map or hold open now. By
    inode, not name: sem_open makes a semaphore as a temporary sem.XXXXXX,
    maps it, links it to its name and unlinks the temporary, so its creator
    maps it as "sem.XXXXXX (deleted)", never under its name."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if SEM in line:
                        found.add(int(line.split()[4]))
        except (OSError, ValueError, IndexError):
            pass
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if os.readlink(path).startswith(SEM):
                    found.add(os.stat(path).st_ino)
            except OSError:
                pass
    return found


def remove_semaphores(inodes):
    """Removes the /dev/shm/sem.* files whose inode is in `inodes`; returns their names."""
    removed = []
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith("sem.")]
    except OSError:
        return removed
    for name in names:
        path = os.path.join("/dev/shm", name)
        try:
            if os.stat(path).st_ino in inodes:
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return sorted(removed)


def task(tag, work, fault=None):
    return {"tag": tag, "work": work, "fault": fault}


def fault(kind, point="mid-task", times=1):
    return {"kind": kind, "point": point, "times": times}


def plan(tasks, workers=2, style="map", timeout_ms=None, warmup=False, pool="test"):
    return {
        "pool": pool,
        "workers": workers,
        "style": style,
        "task_timeout_ms": timeout_ms,
        "max_attempts": 1,
        "warmup": warmup,
        "tasks": tasks,
    }


class Run:
    """One adapter process, driven as the harness drives it."""

    def __init__(self, target, plan, python_cmd=None, extra_env=None, command=None, method=None):
        """Starts `python -m poolchaos_targets TARGET` (with `--start-method
        METHOD` if given), or `command` (a list) for a bring-your-own-pool
        program, and writes `plan` (a dict, or a raw line to test bad input)
        to its stdin."""
        self.target = target
        self.plan = plan
        self.started = time.monotonic()
        self.events = []  # (t, event dict), in arrival order
        self.trace = []  # (t, what, tag, attempt, pid)
        self.trace_closed = False
        self.stderr = b""
        self.lines = queue.Queue()
        self.eof = False
        self.tmp = tempfile.mkdtemp(prefix="poolchaos-pytest-")
        self.semaphores = set()  # inodes its processes held
        self._done = threading.Event()
        trace_r, trace_w = os.pipe()
        env = dict(os.environ)
        env.update(
            {
                "POOLCHAOS_TRACE_FD": str(trace_w),
                "POOLCHAOS_OOM_SCORE_ADJ": "1000",
                "PYTHONPATH": PACKAGE_DIR,
                "TMPDIR": self.tmp,
            }
        )
        env.update(extra_env or {})
        argv = command or (python_cmd or [python()]) + ["-m", "poolchaos_targets", target]
        if method is not None:
            argv += ["--start-method", method]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.tmp,
            env=env,
            pass_fds=(trace_w,),
            process_group=0,
        )
        os.close(trace_w)
        self.pgid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_trace, args=(trace_r,), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._record_semaphores, daemon=True),
        ]
        for t in self._threads:
            t.start()
        line = plan if isinstance(plan, str) else json.dumps(plan)
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def now(self):
        return time.monotonic() - self.started

    def record_semaphores(self):
        """Records the semaphores the run's processes hold now."""
        found = held_semaphores(group_members(self.pgid))
        self.semaphores |= found
        RUN_INODES.update(found)

    def _record_semaphores(self):
        while not self._done.wait(0.1):
            self.record_semaphores()

    def _read_events(self):
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                event = {"event": "garbage", "line": raw.decode("utf-8", "replace")}
            if isinstance(event, dict) and event.get("event") == "worker-exit":
                self.record_semaphores()
            self.lines.put(("event", self.now(), event))
        self.lines.put(("eof", self.now(), None))

    def _read_trace(self, fd):
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                what, tag, attempt, pid = raw.split()
                self.lines.put(("trace", self.now(), (what.decode(), int(tag), int(attempt), int(pid))))
        self.lines.put(("trace-eof", self.now(), None))

    def _read_stderr(self):
        self.stderr = self.proc.stderr.read()

    def _take(self, timeout):
        if self.eof:  # the adapter closed stdout: only what is queued is left
            timeout = min(timeout, 0.05)
        try:
            kind, t, item = self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if kind == "eof":
            self.eof = True
            return None
        self._keep(kind, t, item)
        return kind, t, item

    def _keep(self, kind, t, item):
        if kind == "event":
            self.events.append((t, item))
        elif kind == "trace":
            self.trace.append((t,) + item)
        elif kind == "trace-eof":
            self.trace_closed = True

    def drain_trace(self, timeout=5.0):
        """Takes what is queued until the trace pipe closes (the owner and
        every worker gone), or `timeout` passes: events and trace come on two
        pipes, read by two threads, so `finished` may overtake trace lines."""
        end = time.monotonic() + timeout
        while not self.trace_closed:
            try:
                kind, t, item = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            if kind == "eof":
                self.eof = True
            self._keep(kind, t, item)

    def wait_for(self, predicate, timeout):
        """Follows events and trace until predicate(kind, item) holds, or
        `timeout` seconds pass; returns (t, item) or None."""
        end = time.monotonic() + timeout
        while True:
            got = self._take(end - time.monotonic())
            if got is None:
                return None
            kind, t, item = got
            if predicate(kind, item):
                return t, item

    def wait_event(self, name, timeout):
        return self.wait_for(lambda k, e: k == "event" and e.get("event") == name, timeout)

    def wait_start(self, tag, timeout):
        """Waits for the `start` trace line of `tag`; returns the worker's pid."""
        got = self.wait_for(lambda k, x: k == "trace" and x[0] == "start" and x[1] == tag, timeout)
        return got[1][3] if got else None

    def finish(self, timeout):
        """Follows until `finished` (or an end event); then waits for the
        adapter to exit. Returns the exit code, or None if it did not finish."""
        got = self.wait_for(
            lambda k, e: k == "event" and e.get("event") in ("finished", "skipped", "not-applicable", "owner-error"), timeout
        )
        if got is None:
            return None
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def settle(self, seconds):
        """Follows for `seconds`, whatever comes."""
        end = time.monotonic() + seconds
        while self._take(end - time.monotonic()) is not None:
            pass

    # -- what was seen
    def named(self, name):
        return [e for _, e in self.events if e.get("event") == name]

    def outcomes(self):
        """{index: [result, ...]}"""
        got = {}
        for e in self.named("outcome"):
            got.setdefault(e["index"], []).append(e["result"])
        return got

    def started_pids(self, tag):
        return [x[4] for x in self.trace if x[1] == "start" and x[2] == tag]

    def describe(self):
        lines = [f"{self.target}: events:"]
        lines += [f"  {t:.3f}s {json.dumps(e)[:300]}" for t, e in self.events]
        lines += [f"  {t:.3f}s trace {w} {tag} {a} {pid}" for t, w, tag, a, pid in self.trace]
        lines.append("  stderr: " + self.stderr.decode("utf-8", "replace")[-1500:])
        return "\n".join(lines)

    # -- teardown
    def kill(self):
        """SIGKILLs the process group, reaps, and checks nothing is left.
        Returns (pids still alive, semaphores removed from /dev/shm, temp files left)."""
        self.record_semaphores()
        self._done.set()
        for _ in range(3):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # A stopped member gets SIGKILL too; nothing more to do for it.
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            end = time.monotonic() + 5
            while group_members(self.pgid) and time.monotonic() < end:
                reap_orphans()
                time.sleep(0.01)
            if not group_members(self.pgid):
                break
        reap_orphans()
        left = group_members(self.pgid)
        for t in self._threads:
            t.join(timeout=5)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        # Named semaphores outlive their processes (multiprocessing's under
        # spawn and forkserver, loky's, glibc's sem.XXXXXX of a sem_open killed
        # inside the call): those the run held are its own.
        removed = remove_semaphores(self.semaphores)
        temp_left = os.listdir(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left, removed, temp_left


if __name__ == "__main__":
    become_subreaper()
    run = Run(sys.argv[1], json.loads(sys.argv[2]))
    code = run.finish(10)
    print(run.describe())
    print("exit:", code, "left, semaphores, temp files:", run.kill())
