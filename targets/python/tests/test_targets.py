"""End-to-end tests of the Python targets, driven as the harness drives them
(see driver.py): a plan on stdin, a trace pipe, events on stdout, the whole
process group killed at the end and checked for leftovers.

Runs are independent processes, so each test starts its runs at once and
judges them when they are over; the suite takes about 20 s, most of it
billiard's 10 s lost-worker timeout. Targets whose package is not importable
by the adapter's Python (the project's .venv when it exists) are skipped.

    python3 -m unittest discover -s targets/python/tests
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import driver
from driver import fault, plan, task

sys.path.insert(0, driver.PACKAGE_DIR)
from poolchaos_targets import protocol, work  # noqa: E402
from poolchaos_targets.targets import START_METHODS  # noqa: E402
from poolchaos_targets.targets import TARGETS as TARGET_CLASSES  # noqa: E402

ALL = [
    "py-pool-map",
    "py-pool-apply",
    "py-pool-apply-async",
    "py-pool-map-async",
    "py-seed-polling",
    "py-seed-polling-async",
    "py-process-per-task",
    "py-ppe",
    "py-loky",
    "py-pebble",
    "py-billiard",
]
NEEDS = {"py-loky": "loky", "py-pebble": "pebble", "py-billiard": "billiard"}
# Targets that follow the plan's call style (the others fix their own).
STYLE_FOLLOWERS = ["py-process-per-task", "py-ppe", "py-loky", "py-pebble"]
# A map that raises gives the caller no result at all: every task gets the error.
ALL_OR_NOTHING = ["py-pool-map", "py-pool-map-async", "py-seed-polling", "py-seed-polling-async"]

_available = {}


def available(target):
    module = NEEDS.get(target)
    if module is None:
        return True
    if module not in _available:
        probe = subprocess.run([driver.python(), "-c", f"import {module}"], capture_output=True)
        _available[module] = probe.returncode == 0
    return _available[module]


def setUpModule():
    driver.become_subreaper()


def tearDownModule():
    # Each run removes its own at kill(); this catches a run that was never killed.
    left = driver.remove_semaphores(driver.RUN_INODES)
    if left:
        print(f"\nremoved POSIX semaphores left in /dev/shm by runs never killed: {left}", file=sys.stderr)


def mixed_tasks():
    return [
        task(0, {"echo": [120] * 32}),
        task(1, {"spin": {"us": 2000}}),
        task(2, {"sleep": {"ms": 20}}),
        task(3, {"alloc": {"mib": 8, "hold": False}}),
        task(4, {"large": {"bytes": 300_000}}),  # more than a pipe buffer
        task(5, {"echo": []}),
    ]


class Checks:
    """Collects problems per run from threads; `assert_clean` reports them."""

    def __init__(self, test, at_once=None):
        """`at_once`: how many runs at a time (default: all)."""
        self.test = test
        self.results = {}  # label -> list of problems
        self.threads = []
        self.slots = threading.BoundedSemaphore(at_once) if at_once else None

    def run(self, label, fn):
        def body():
            if self.slots:
                self.slots.acquire()
            try:
                problems = fn()
            except Exception as e:  # a bug in the check itself
                problems = [f"check raised {type(e).__name__}: {e}"]
            finally:
                if self.slots:
                    self.slots.release()
            self.results[label] = problems

        t = threading.Thread(target=body, name=label)
        t.start()
        self.threads.append(t)

    def assert_clean(self):
        for t in self.threads:
            t.join()
        for label, problems in sorted(self.results.items()):
            with self.test.subTest(label):
                self.test.assertEqual(problems, [], "\n".join(problems))


def teardown(run, problems, expect_temp_clean=True):
    """Kills the run's process group; every leftover is a problem."""
    left, semaphores, temp = run.kill()
    if left:
        problems.append(f"processes left after killing the group: {left}")
    if expect_temp_clean and temp:
        problems.append(f"temp files left in the run's TMPDIR: {temp}")
    if problems:
        problems.append(run.describe())
    return problems


def ran_to_finish(run, problems, timeout=30):
    # Liveness only: generous, as a loaded 2-core machine can take 10 s to start a pool.
    code = run.finish(timeout)
    if code != 0:
        problems.append(f"did not finish with exit 0 within {timeout} s (exit {code})")
        return False
    return True


def one_outcome_each(run, n, problems):
    got = run.outcomes()
    for i in range(n):
        if len(got.get(i, [])) != 1:
            problems.append(f"task {i}: {len(got.get(i, []))} outcomes")
    extra = set(got) - set(range(n))
    if extra:
        problems.append(f"outcomes for unknown indices {sorted(extra)}")
    return got


class ProtocolUnits(unittest.TestCase):
    def test_expected_output_matches_the_rust_side(self):
        # pools/src/task.rs: Task::echo(7, "hi") is [7, 0 x 7, 'h', 'i'].
        self.assertEqual(work.expected_output(task(7, {"echo": list(b"hi")})), bytes([7, 0, 0, 0, 0, 0, 0, 0]) + b"hi")
        self.assertEqual(work.expected_output(task(1, {"spin": {"us": 5}}))[8:], (5).to_bytes(8, "little"))
        self.assertEqual(work.expected_output(task(1, {"sleep": {"ms": 300}}))[8:], (300).to_bytes(8, "little"))
        self.assertEqual(work.expected_output(task(1, {"alloc": {"mib": 3, "hold": True}}))[8:], (3).to_bytes(4, "little"))
        # Large: byte i = ((i mod 256) * 31 mod 256) XOR (tag mod 256).
        self.assertEqual(work.expected_output(task(3, {"large": {"bytes": 5}}))[8:], bytes([3, 28, 61, 94, 127]))
        big = work.expected_output(task(258, {"large": {"bytes": 1000}}))[8:]
        self.assertEqual(big, bytes((((i % 256) * 31) % 256) ^ (258 % 256) for i in range(1000)))
        self.assertEqual(work.WARMUP_TAG, 18446744073709551615)

    def test_a_result_is_ok_only_if_it_is_the_tasks_own(self):
        t = task(4, {"echo": [1, 2]})
        self.assertEqual(protocol.ok_or_wrong(t, work.expected_output(t)), {"status": "ok"})
        self.assertEqual(protocol.ok_or_wrong(t, work.expected_output(task(5, {"echo": [1, 2]}))), {"status": "wrong"})
        self.assertEqual(protocol.ok_or_wrong(t, None), {"status": "wrong"})
        # A `return-exception` task's result is the exception object it returned, nothing else.
        r = task(6, {"echo": []}, fault("return-exception"))
        self.assertEqual(protocol.ok_or_wrong(r, work.ReturnedError(6)), {"status": "ok"})
        self.assertEqual(protocol.ok_or_wrong(r, work.ReturnedError(7)), {"status": "wrong"})
        self.assertEqual(protocol.ok_or_wrong(r, work.expected_output(r)), {"status": "wrong"})

    def test_pickles_own_refusal_and_the_faults_raises_are_expected_others_not(self):
        import pickle

        from poolchaos_targets.targets import Target, expected_raise

        with self.assertRaises(TypeError) as refused:
            pickle.dumps(work.Unpicklable())
        self.assertTrue(expected_raise("TypeError", str(refused.exception)))
        for name in ("PicklingError", "MemoryError", "InjectedBaseException", "InjectedError", "SystemExit"):
            self.assertTrue(expected_raise(name, ""), name)
        self.assertFalse(expected_raise("TypeError", "unsupported operand"))
        self.assertFalse(expected_raise("ValueError", "pickle"))
        # A raised ReturnedError is not the task's value: `wrong`.
        self.assertEqual(Target.classify(None, work.ReturnedError(1)), {"status": "wrong"})

    def test_bad_plans_are_refused_with_the_field_named(self):
        good = plan([task(0, {"echo": []}, fault({"exit": 1}, "decode"))])
        self.assertEqual(protocol.check_plan(json.loads(json.dumps(good)))["workers"], 2)
        for broken, words in [
            (dict(good, style="imap"), "call style"),
            (dict(good, style="apply_async"), "call style"),
            (dict(good, workers=0), "workers"),
            (dict(good, tasks=[task(0, {"Nap": 1})]), "work"),
            (dict(good, tasks=[task(0, {"echo": []}, fault("Explode"))]), "fault kind"),
            (dict(good, tasks=[task(0, {"echo": []}, fault("sigkill", "Later"))]), "fault point"),
            (dict(good, chunksize=0), "chunksize"),
            (dict(good, max_tasks=0), "max_tasks"),
            (dict(good, knobs={"timeout": -1}), "knobs"),
            (dict(good, cancel=[{"task": 1, "after_ms": 0}]), "cancel"),
            (dict(good, cancel=[{"task": 0, "after_ms": -1}]), "cancel"),
            (dict(good, join_timeout_ms=0), "join_timeout_ms"),
            (dict(good, bench=True), "warmup"),
            ([], "object"),
        ]:
            with self.assertRaises(protocol.PlanError) as e:
                protocol.check_plan(broken)
            self.assertIn(words, str(e.exception))

    def test_held_events_wait_for_release_and_keep_their_order(self):
        r, w = os.pipe()
        emitter = protocol.Emitter(w)
        emitter.emit("ready", pid=1)
        emitter.hold()
        t = task(3, {"echo": [1]})
        emitter.result(0, t, work.expected_output(t))
        emitter.result(1, t, b"not it")
        emitter.emit("timed", us=5)
        os.set_blocking(r, False)
        self.assertEqual([json.loads(x)["event"] for x in os.read(r, 65536).splitlines()], ["ready"])
        emitter.release()
        os.close(w)
        got = [json.loads(x) for x in os.read(r, 65536).splitlines()]
        os.close(r)
        self.assertEqual(
            got,
            [
                {"event": "outcome", "index": 0, "result": {"status": "ok"}},
                {"event": "outcome", "index": 1, "result": {"status": "wrong"}},
                {"event": "timed", "us": 5},
            ],
        )

    def test_exit_codes_read_as_signal_or_code(self):
        self.assertEqual(protocol.exit_fields(-9), (9, None))
        self.assertEqual(protocol.exit_fields(3), (None, 3))
        self.assertEqual(protocol.describe_exit(-9), "signal 9 (SIGKILL)")
        # A zombie's exit status is read from /proc without reaping it.
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        deadline = time.monotonic() + 5
        while protocol.zombie_exitcode(pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(protocol.zombie_exitcode(pid), 7)
        self.assertEqual(os.waitpid(pid, 0)[1] >> 8, 7)


class EndToEnd(unittest.TestCase):
    def targets(self, names):
        return [t for t in names if available(t)]

    def test_the_third_party_pools_are_here(self):
        """Says so when loky, pebble or billiard cannot be tested: a skip on a
        developer's machine, a failure in CI (`CI=true`), where setup.sh ran
        and a missing package means the pinned versions did not install."""
        missing = [NEEDS[t] for t in NEEDS if not available(t)]
        if missing:
            message = f"{', '.join(missing)} not importable by {driver.python()}: run targets/python/setup.sh"
            if os.environ.get("CI") == "true":
                self.fail(f"in CI every pinned package must be there: {message}")
            self.skipTest(message)

    def test_no_fault_every_target_every_task_ok(self):
        checks = Checks(self)
        runs = [(t, None) for t in ALL if t not in STYLE_FOLLOWERS]
        runs += [(t, s) for t in STYLE_FOLLOWERS for s in ("map", "apply-async")]
        for target, style in runs:
            if not available(target):
                continue

            def check(target=target, style=style):
                tasks = mixed_tasks()
                run = driver.Run(target, plan(tasks, style=style or "map"))
                problems = []
                if ran_to_finish(run, problems):
                    names = [e["event"] for _, e in run.events]
                    if names[0] != "ready" or names[-1] != "finished":
                        problems.append(f"events out of order: {names}")
                    got = one_outcome_each(run, len(tasks), problems)
                    bad = {i: r for i, r in got.items() if r != [{"status": "ok"}]}
                    if bad:
                        problems.append(f"not ok: {bad}")
                    owner = run.named("ready")[0]["pid"]
                    run.drain_trace()
                    for t in tasks:
                        starts = [x for x in run.trace if x[1] == "start" and x[2] == t["tag"]]
                        dones = [x for x in run.trace if x[1] == "done" and x[2] == t["tag"]]
                        if len(starts) != 1 or len(dones) != 1 or starts[0][3] != 0:
                            problems.append(f"task {t['tag']}: trace {starts} {dones}")
                        elif starts[0][4] == owner:
                            problems.append(f"task {t['tag']} traced by the owner itself")
                    kinds = {e["kind"] for e in run.named("callback")}
                    if kinds - {"result"}:
                        problems.append(f"callbacks of kind {kinds}")
                return teardown(run, problems)

            checks.run(f"{target} {style or ''}".strip(), check)
        checks.assert_clean()

    def test_a_bench_plan_times_the_call_and_reports_after_it(self):
        """With `bench`, after `go`: the outcomes and `timed` (µs, the call
        alone) come after the call; chunksize reaches multiprocessing's map."""
        checks = Checks(self)
        for target, extra in [("py-pool-map", {"chunksize": 1}), ("py-pool-map", {"chunksize": 3}), ("py-ppe", {})]:
            if not available(target):
                continue

            def check(target=target, extra=extra):
                tasks = [task(i, {"spin": {"us": 2000}}) for i in range(10)]
                run = driver.Run(target, dict(plan(tasks, warmup=True, style="apply-async"), bench=True, **extra))
                if run.wait_event("warmed-up", 10) is None:
                    return teardown(run, ["no warmed-up event"])
                run.proc.stdin.write(b"go\n")
                run.proc.stdin.flush()
                problems = []
                if ran_to_finish(run, problems):
                    got = one_outcome_each(run, len(tasks), problems)
                    if any(r != [{"status": "ok"}] for r in got.values()):
                        problems.append(f"not ok: {got}")
                    timed = run.named("timed")
                    # 10 tasks of 2 ms on 2 workers: at least 10 ms of work.
                    if len(timed) != 1 or not 10_000 <= timed[0]["us"] < 10_000_000:
                        problems.append(f"timed: {timed}")
                    names = [e["event"] for _, e in run.events]
                    if "timed" in names and "outcome" in names[names.index("timed") :]:
                        problems.append(f"an outcome after `timed`: {names}")
                    if extra.get("chunksize") == 3:
                        # A chunk runs whole on one worker: tags 0-2, 3-5, 6-8, 9.
                        run.drain_trace()
                        pid = {x[2]: x[4] for x in run.trace if x[1] == "start"}
                        chunks = [{pid.get(t) for t in range(c, min(c + 3, 10))} for c in range(0, 10, 3)]
                        if any(len(c) != 1 or None in c for c in chunks):
                            problems.append(f"not run in chunks of 3: {pid}")
                return teardown(run, problems)

            checks.run(f"{target} {extra}", check)
        checks.assert_clean()

    def test_workers_take_the_oom_killers_attention_and_the_owner_does_not(self):
        checks = Checks(self)
        for target in self.targets(["py-pool-map", "py-process-per-task", "py-loky"]):

            def check(target=target):
                run = driver.Run(target, plan([task(0, {"sleep": {"ms": 600}})], workers=1))
                problems = []
                pid = run.wait_start(0, 10)
                if pid is None:
                    problems.append("task 0 never started")
                else:
                    with open(f"/proc/{pid}/oom_score_adj") as f:
                        if f.read().strip() != "1000":
                            problems.append("the worker's oom_score_adj is not 1000")
                    with open(f"/proc/{run.proc.pid}/oom_score_adj") as f:
                        if f.read().strip() == "1000":
                            problems.append("the owner set its own oom_score_adj to 1000")
                # (events and trace come on two pipes: their order is not kept)
                if not run.named("ready") and run.wait_event("ready", 5) is None:
                    problems.append("no ready event")
                ran_to_finish(run, problems)
                return teardown(run, problems)

            checks.run(target, check)
        checks.assert_clean()

    def test_a_task_error_comes_back_as_the_tasks_own_error(self):
        checks = Checks(self)
        for target in self.targets(ALL):

            def check(target=target):
                tasks = [
                    task(0, {"echo": [1]}),
                    task(1, {"spin": {"us": 100}}, fault("error", "mid-task")),
                    task(2, {"echo": [2]}, fault("panic", "mid-task")),
                    task(3, {"echo": [3]}),
                ]
                run = driver.Run(target, plan(tasks, style="apply-async"))
                problems = []
                if ran_to_finish(run, problems):
                    got = one_outcome_each(run, len(tasks), problems)
                    for i in (1, 2):
                        r = got.get(i, [{}])[0]
                        if r.get("kind") != "task" or "injected" not in r.get("message", ""):
                            problems.append(f"task {i}: {r}")
                    for i in (0, 3):
                        r = got.get(i, [{}])[0]
                        want = "task" if target in ALL_OR_NOTHING else None
                        if (r.get("kind") if r.get("status") == "error" else None) != want:
                            problems.append(f"task {i}: {r} (want {want or 'ok'})")
                return teardown(run, problems)

            checks.run(target, check)
        checks.assert_clean()

    def test_a_worker_sigkilled_mid_task(self):
        """2 workers, 4 tasks of 600 ms, task 0 SIGKILLs its worker at 300 ms."""
        tasks = [task(0, {"sleep": {"ms": 600}}, fault("sigkill"))] + [task(i, {"sleep": {"ms": 600}}) for i in (1, 2, 3)]
        checks = Checks(self)

        def hangs(target):
            def check():
                run = driver.Run(target, plan(tasks))
                problems = []
                victim = run.wait_start(0, 10)
                run.settle(2.0)  # every healthy task is long done by now
                if run.named("outcome") or run.named("finished"):
                    problems.append(f"expected a hang, got {run.named('outcome')}")
                if any(e["kind"] == "error" for e in run.named("callback")):
                    problems.append("an error callback ran")
                exits = [e for e in run.named("worker-exit") if e["pid"] == victim]
                if not exits or exits[0]["signal"] != 9:
                    problems.append(f"no worker-exit with SIGKILL for the victim {victim}: {run.named('worker-exit')}")
                return teardown(run, problems)

            return check

        for target in ["py-pool-map", "py-pool-apply-async", "py-seed-polling"]:
            checks.run(target, hangs(target))

        def only_that_task(target, wait):
            def check():
                run = driver.Run(target, plan(tasks, style="apply-async"))
                problems = []
                victim = run.wait_start(0, 10)
                if ran_to_finish(run, problems, wait):
                    got = one_outcome_each(run, 4, problems)
                    lost = got.get(0, [{}])[0]
                    if (lost.get("kind"), lost.get("signal")) != ("worker-lost", 9) or lost.get("pid") != victim:
                        problems.append(f"task 0: {lost} (victim {victim})")
                    for i in (1, 2, 3):
                        if got.get(i) != [{"status": "ok"}]:
                            problems.append(f"task {i}: {got.get(i)}")
                return teardown(run, problems)

            return check

        checks.run("py-process-per-task", only_that_task("py-process-per-task", 10))
        if available("py-pebble"):
            checks.run("py-pebble", only_that_task("py-pebble", 10))
        if available("py-billiard"):
            # billiard reports a lost worker after its 10 s lost-worker timeout.
            checks.run("py-billiard", only_that_task("py-billiard", 20))

        def all_broken(target):
            def check():
                run = driver.Run(target, plan(tasks, style="apply-async"))
                problems = []
                run.wait_start(0, 10)
                if ran_to_finish(run, problems, 5):
                    got = one_outcome_each(run, 4, problems)
                    kinds = {r[0].get("kind") for r in got.values()}
                    if kinds != {"pool-broken"}:
                        problems.append(f"kinds {kinds}")
                    if got.get(0, [{}])[0].get("signal") != 9:
                        problems.append(f"task 0 does not name SIGKILL: {got.get(0)}")
                    times = [t for t, e in run.events if e["event"] == "outcome"]
                    if times and max(times) - min(times) > 0.5:
                        problems.append(f"outcomes spread over {max(times) - min(times):.3f} s")
                return teardown(run, problems)

            return check

        for target in self.targets(["py-ppe", "py-loky"]):
            checks.run(target, all_broken(target))
        checks.assert_clean()

    def test_every_start_method_runs_every_pool_with_its_trace(self):
        """forkserver and spawn (fork, the default, is every other test's):
        every task ok, each traced by a worker (workers not forked from the
        owner reopen the trace through its /proc). One target per pool class:
        the `py-pool-*` styles share `MpPool`'s context."""
        checks = Checks(self, at_once=4)  # a dozen pools of spawned interpreters at once would starve 2 cores
        pools = ["py-pool-map", "py-process-per-task", "py-ppe", "py-loky", "py-pebble", "py-billiard"]
        for target in self.targets(pools):
            for method in set(TARGET_CLASSES[target].methods) - {"fork"}:

                def check(target=target, method=method):
                    tasks = mixed_tasks()
                    run = driver.Run(target, plan(tasks, style="apply-async"), method=method)
                    problems = []
                    if ran_to_finish(run, problems, 30):
                        got = one_outcome_each(run, len(tasks), problems)
                        bad = {i: r for i, r in got.items() if r != [{"status": "ok"}]}
                        if bad:
                            problems.append(f"not ok: {bad}")
                        owner = run.named("ready")[0]["pid"]
                        run.drain_trace()
                        traced = {x[2] for x in run.trace if x[1] == "start" and x[4] != owner}
                        if traced != {t["tag"] for t in tasks}:
                            problems.append(f"traced by workers: {sorted(traced)}")
                    return teardown(run, problems)

                checks.run(f"{target} {method}", check)
        checks.assert_clean()

    def test_the_seeds_hang_under_every_start_method(self):
        """multiprocessing.Pool.map with a worker SIGKILLed mid-task hangs
        whatever starts its workers; ProcessPoolExecutor breaks."""
        tasks = [task(0, {"sleep": {"ms": 600}}, fault("sigkill"))] + [task(i, {"sleep": {"ms": 100}}) for i in (1, 2, 3)]
        checks = Checks(self)
        for method in START_METHODS:

            def hangs(method=method):
                run = driver.Run("py-pool-map", plan(tasks), method=method)
                problems = []
                victim = run.wait_start(0, 20)
                run.settle(3.0)
                if run.named("outcome") or run.named("finished"):
                    problems.append(f"expected a hang, got {run.named('outcome')}")
                exits = [e for e in run.named("worker-exit") if e["pid"] == victim]
                if not exits or exits[0]["signal"] != 9:
                    problems.append(f"no worker-exit with SIGKILL for the victim {victim}: {run.named('worker-exit')}")
                # A forkserver removes its socket's directory (pymp-*) at exit;
                # SIGKILLed with the hung pool, it leaves it (the harness lists it).
                return teardown(run, problems, expect_temp_clean=method != "forkserver")

            def breaks(method=method):
                run = driver.Run("py-ppe", plan(tasks, style="apply-async"), method=method)
                problems = []
                run.wait_start(0, 20)
                if ran_to_finish(run, problems, 20):
                    got = one_outcome_each(run, 4, problems)
                    if got.get(0, [{}])[0].get("kind") != "pool-broken":
                        problems.append(f"task 0: {got.get(0)}")
                return teardown(run, problems)

            checks.run(f"py-pool-map {method}", hangs)
            checks.run(f"py-ppe {method}", breaks)
        checks.assert_clean()

    def test_a_bad_start_method_is_an_owner_error(self):
        run = driver.Run("py-pool-map", plan([task(0, {"echo": []})]), method="vfork")
        problems = []
        code = run.finish(10)
        errors = run.named("owner-error")
        if code != 2 or len(errors) != 1 or "bad arguments" not in errors[0]["message"]:
            problems.append(f"exit {code}, owner-error {errors}")
        self.assertEqual(teardown(run, problems), [])

    def test_a_worker_sigkilled_from_outside_by_its_trace_pid(self):
        """The seed's situation: 1 worker, 1 task of 1 s; the nemesis reads the
        task's trace line and SIGKILLs that pid 300 ms in."""
        checks = Checks(self)

        def strike(target, style, expect):
            def check():
                run = driver.Run(target, plan([task(0, {"sleep": {"ms": 1000}})], workers=1, style=style))
                problems = []
                pid = run.wait_start(0, 10)
                if pid is None:
                    return teardown(run, ["task 0 never started"])
                run.settle(0.3)
                os.kill(pid, signal.SIGKILL)
                run.settle(1.5)
                outcomes = run.named("outcome")
                problems += expect(run, pid, outcomes)
                return teardown(run, problems)

            return check

        def hung(run, pid, outcomes):
            problems = []
            if outcomes or run.named("finished"):
                problems.append(f"expected a hang, got {outcomes}")
            if run.named("callback"):
                problems.append(f"a callback ran: {run.named('callback')}")
            if not any(e["pid"] == pid and e["signal"] == 9 for e in run.named("worker-exit")):
                problems.append("the victim's SIGKILL was not reported as a worker-exit")
            return problems

        def lost_by_signal(kind):
            def expect(run, pid, outcomes):
                if len(outcomes) != 1 or outcomes[0]["result"].get("kind") != kind or outcomes[0]["result"].get("signal") != 9:
                    return [f"expected one {kind}(SIGKILL), got {outcomes}"]
                if kind == "worker-lost" and outcomes[0]["result"]["pid"] != pid:
                    return [f"the error names pid {outcomes[0]['result']['pid']}, not {pid}"]
                return []

            return expect

        def hung_or_terminated(run, pid, outcomes):
            # The seed's map_async polling loop races the pool's worker handler:
            # it hangs, or sees the dead worker first and terminates the pool.
            if not outcomes:
                return []
            kinds = {o["result"].get("kind") for o in outcomes}
            return [] if kinds == {"terminated"} else [f"expected a hang or Terminated, got {outcomes}"]

        for target, style in [("py-pool-map", "map"), ("py-pool-apply-async", "apply-async"), ("py-pool-map-async", "map-async"), ("py-seed-polling", "map")]:
            checks.run(target, strike(target, style, hung))
        checks.run("py-seed-polling-async", strike("py-seed-polling-async", "map-async", hung_or_terminated))
        checks.run("py-process-per-task", strike("py-process-per-task", "map", lost_by_signal("worker-lost")))
        checks.run("py-ppe", strike("py-ppe", "map", lost_by_signal("pool-broken")))
        checks.assert_clean()

    def test_warmup_then_an_idle_worker_killed(self):
        """With warmup: the owner runs the warm-up task, says warmed-up, and
        waits for `go`; meanwhile an idle worker is SIGKILLed. In
        multiprocessing.Pool the idle worker blocked in read(2) holds the
        task queue's lock (the others wait in a futex): killing it hangs the
        next batch; killing a waiter does nothing visible."""
        checks = Checks(self)

        def idle_kill(target, workers, victim_in, expect):
            def check():
                run = driver.Run(target, plan([task(i, {"echo": [i]}) for i in range(4)], workers=workers, warmup=True))
                problems = []
                if run.wait_event("warmed-up", 10) is None:
                    return teardown(run, ["no warmed-up event"])
                if victim_in is not None:
                    victim = None
                    deadline = time.monotonic() + 5
                    while victim is None and time.monotonic() < deadline:
                        kids = driver.children_of(run.proc.pid)
                        states = {k: driver.syscall_of(k) for k in kids}
                        found = [k for k in kids if (states[k] == 0) == (victim_in == "read")]
                        # Every worker settled: one reads, the others wait.
                        if len(kids) == workers and any(s == 0 for s in states.values()) and found:
                            victim = found[0]
                        time.sleep(0.01)
                    if victim is None:
                        return teardown(run, [f"no idle worker blocked in {victim_in}"])
                    os.kill(victim, signal.SIGKILL)
                    time.sleep(0.2)
                run.proc.stdin.write(b"go\n")
                run.proc.stdin.flush()
                problems += expect(run)
                return teardown(run, problems)

            return check

        def completed(run):
            problems = []
            if ran_to_finish(run, problems, 5):
                got = one_outcome_each(run, 4, problems)
                if any(r != [{"status": "ok"}] for r in got.values()):
                    problems.append(f"not ok: {got}")
            return problems

        def hung(run):
            run.settle(1.5)
            return [f"expected a hang, got {run.named('outcome')}"] if run.named("outcome") else []

        def broken(run):
            problems = []
            if ran_to_finish(run, problems, 5):
                kinds = {r[0].get("kind") for r in one_outcome_each(run, 4, problems).values()}
                if kinds != {"pool-broken"}:
                    problems.append(f"kinds {kinds}")
            return problems

        checks.run("py-pool-map no kill", idle_kill("py-pool-map", 2, None, completed))
        checks.run("py-pool-map 1 worker, the reader", idle_kill("py-pool-map", 1, "read", hung))
        checks.run("py-pool-apply-async, the reader", idle_kill("py-pool-apply-async", 2, "read", hung))
        checks.run("py-pool-map, a waiter", idle_kill("py-pool-map", 2, "futex", completed))
        checks.run("py-ppe, a waiter", idle_kill("py-ppe", 2, "futex", broken))
        checks.assert_clean()

    def test_a_missing_package_is_skipped_not_passed(self):
        # -S: no site-packages, so no loky, whatever is installed.
        run = driver.Run("py-loky", plan([task(0, {"echo": []})]), python_cmd=[driver.python(), "-S"])
        code = run.finish(10)
        problems = []
        names = [e["event"] for _, e in run.events]
        if code != 0 or names != ["skipped"]:
            problems.append(f"exit {code}, events {names}")
        elif "loky" not in run.named("skipped")[0]["reason"]:
            problems.append(f"the reason does not name loky: {run.named('skipped')}")
        self.assertEqual(teardown(run, problems), [])

    def test_bad_input_is_an_owner_error_naming_the_target(self):
        for target, line in [("py-ppe", "this is not json"), ("py-ppe", '{"workers": 2}'), ("py-nope", json.dumps(plan([])))]:
            with self.subTest(target=target, line=line):
                run = driver.Run(target, line)
                code = run.finish(10)
                errors = run.named("owner-error")
                problems = []
                if code != 2 or len(errors) != 1 or target not in errors[0]["message"]:
                    problems.append(f"exit {code}, owner-error {errors}")
                self.assertEqual(teardown(run, problems), [])

    def test_bring_your_own_pool_example(self):
        """examples/my_pool.py: a ProcessPoolExecutor started over when it
        breaks; a worker SIGKILLed once is survived by resubmitting."""
        tasks = [task(0, {"sleep": {"ms": 300}}, fault("sigkill")), task(1, {"sleep": {"ms": 300}}), task(2, {"echo": [1]})]
        the_plan = dict(plan(tasks), max_attempts=3)
        example = os.path.join(driver.PACKAGE_DIR, "examples", "my_pool.py")
        run = driver.Run("my_pool", the_plan, command=[driver.python(), example])
        problems = []
        if ran_to_finish(run, problems):
            got = one_outcome_each(run, 3, problems)
            if any(r != [{"status": "ok"}] for r in got.values()):
                problems.append(f"not ok: {got}")
            if not [x for x in run.trace if x[1] == "start" and x[2] == 0 and x[3] == 1]:
                problems.append("task 0 was not retried as attempt 1")
        self.assertEqual(teardown(run, problems), [])


if __name__ == "__main__":
    unittest.main()


# ---------------------------------------------------------------- fault points


def short(record):
    """An outcome in a word: `ok`, `task`, `pool-broken(9)`, `worker-lost(code 1)`."""
    if record.get("status") != "error":
        return record.get("status")
    if record.get("signal") is not None:
        return f"{record['kind']}({record['signal']})"
    if record.get("code") is not None:
        return f"{record['kind']}(code {record['code']})"
    return record["kind"]


class FaultPointTest(unittest.TestCase):
    """Every fault point, on the targets that have the stage, with the exact
    outcome of each task; and on one that lacks it, the typed
    `not-applicable` event (the plan not run). Task 0 carries the fault
    (600 ms of sleep), tasks 1-3 are healthy (100 ms each), on 2 workers."""

    def cases(self, point, cases, work=None, workers=2):
        """`cases`: (target, style, kind, expected) where expected is a list
        of `short` outcomes per task, or ("na", words) for not-applicable,
        or ("hung", n): no outcome for task 0 while n healthy tasks are ok."""
        checks = Checks(self)
        for target, style, kind, expected in cases:
            if not available(target):
                continue

            def check(target=target, style=style, kind=kind, expected=expected):
                tasks = [task(0, work or {"sleep": {"ms": 600}}, fault(kind, point))]
                tasks += [task(i, {"sleep": {"ms": 100}}) for i in (1, 2, 3)]
                run = driver.Run(target, plan(tasks, workers=workers, style=style))
                problems = []
                if expected[0] == "na":
                    run.finish(30)
                    na = run.named("not-applicable")
                    if len(na) != 1 or expected[1] not in na[0]["reason"] or run.named("ready"):
                        problems.append(f"expected not-applicable ({expected[1]}), got {run.named('not-applicable')}")
                    elif na[0]["point"] != point:
                        problems.append(f"not-applicable names {na[0]['point']}")
                elif expected[0] == "hung":
                    run.wait_for(lambda k, e: k == "event" and e.get("event") == "ready", 30)
                    run.settle(4.0)
                    # apply_async's results are taken in order, so the healthy
                    # tasks behind task 0 show by their result callbacks.
                    got = run.outcomes()
                    ok = [c for c in run.named("callback") if c["kind"] == "result"]
                    if 0 in got or run.named("finished") or len(ok) != expected[1]:
                        problems.append(f"expected task 0 pending and {expected[1]} results, got {got}, {len(ok)}")
                elif ran_to_finish(run, problems):
                    got = one_outcome_each(run, 4, problems)
                    words = [short(got[i][0]) if len(got.get(i, [])) == 1 else None for i in range(4)]
                    if words != expected:
                        problems.append(f"outcomes {words}, expected {expected}")
                return teardown(run, problems)

            checks.run(f"{target} {kind} at {point}", check)
        checks.assert_clean()

    def test_encode_fires_as_the_parent_pickles_the_task(self):
        self.cases("encode", [
            ("py-pool-apply-async", "apply-async", "error", ["task", "ok", "ok", "ok"]),
            ("py-ppe", "apply-async", "error", ["task", "ok", "ok", "ok"]),
            ("py-process-per-task", "apply-async", "error", ("na", "nothing is pickled")),
        ])

    def test_transport_fires_as_the_worker_reads_a_task_larger_than_a_pipe(self):
        self.cases("transport", [
            ("py-ppe", "apply-async", "sigkill", ["pool-broken(9)"] * 4),
            ("py-process-per-task", "apply-async", "sigkill", ("na", "no channel carries tasks")),
        ])

    def test_init_fires_in_the_first_workers_initializer(self):
        self.cases("init", [
            # multiprocessing.Pool replaces the worker whose initializer raised; the next starts clean.
            ("py-pool-apply-async", "apply-async", "error", ["ok"] * 4),
            ("py-ppe", "apply-async", "sigkill", ["pool-broken(9)"] * 4),
        ])

    def test_decode_fires_as_the_worker_unpickles_the_task(self):
        # One worker: it takes task 0 first, so no healthy task can finish
        # before the executor sees it die (with two, a loaded machine let
        # one through).
        self.cases("decode", [
            ("py-ppe", "apply-async", "error", ["pool-broken(code 1)"] * 4),
            # The worker's loop dies of the error with the task taken: the pool never knows.
            ("py-pool-apply-async", "apply-async", "error", ("hung", 3)),
            ("py-process-per-task", "apply-async", "error", ("na", "nothing is pickled")),
        ], workers=1)

    def test_encode_result_fires_as_the_worker_pickles_the_result(self):
        self.cases("encode-result", [
            ("py-pool-apply-async", "apply-async", "error", ["task", "ok", "ok", "ok"]),
            ("py-ppe", "apply-async", "sys-exit", ["task", "ok", "ok", "ok"]),
        ])

    def test_transport_result_dies_half_way_through_writing_the_result(self):
        self.cases("transport-result", [
            ("py-process-per-task", "apply-async", "sigkill", ["worker-lost(9)", "ok", "ok", "ok"]),
            # The result handler waits for the rest of a torn frame and never sees the death.
            ("py-ppe", "apply-async", "sigkill", ("hung", 3)),
        ])

    def test_decode_result_fires_as_the_parent_unpickles_the_result(self):
        self.cases("decode-result", [
            ("py-ppe", "apply-async", "error", ["pool-broken", "ok", "ok", "ok"]),
            # The result handler thread dies of the error: nothing more is delivered.
            ("py-pool-apply-async", "apply-async", "error", ("hung", 3)),
        ])

    def test_after_result_fires_once_the_result_is_sent(self):
        self.cases("after-result", [
            # The dead worker held no task: replaced, nothing lost.
            ("py-pool-apply-async", "apply-async", "sigkill", ["ok"] * 4),
            ("py-process-per-task", "apply-async", "sigkill", ["ok"] * 4),
        ], workers=1)

    def test_callback_fires_in_the_owners_callback(self):
        self.cases("callback", [
            # concurrent.futures logs a done-callback's error and goes on.
            ("py-ppe", "apply-async", "error", ["ok"] * 4),
            # The result handler thread dies of it (every callback has run, task
            # 0's last): task 0's result is never marked ready.
            ("py-pool-apply-async", "apply-async", "error", ("hung", 4)),
            ("py-pool-map", "map", "error", ("na", "takes no callbacks")),
        ])

    def test_close_terminate_and_join_fire_as_the_owner_ends_the_pool(self):
        for point, cases in [
            ("close", [("py-pool-apply-async", "apply-async", "error", ["task", "ok", "ok", "ok"])]),
            ("join", [("py-pool-apply-async", "apply-async", "error", ["task", "ok", "ok", "ok"])]),
            ("terminate", [
                ("py-pool-apply-async", "apply-async", "sigkill", ["terminated"] * 4),
                ("py-ppe", "apply-async", "sigkill", ("na", "no way to terminate")),
            ]),
        ]:
            with self.subTest(point):
                self.cases(point, cases + [("py-pool-map", "map", "error", ("na", "returns when every task is over"))])

    def test_recycle_fires_in_the_replacement_of_a_recycled_worker(self):
        self.cases("recycle", [
            ("py-pool-apply-async", "apply-async", "error", ["ok"] * 4),
            ("py-ppe", "apply-async", "error", ("na", "max_tasks_per_child")),
            ("py-loky", "apply-async", "error", ("na", "no limit of tasks per worker")),
        ])

    def test_spawn_fires_mid_task_and_the_refused_fork_is_the_harness_s(self):
        # Run bare (no harness, no limit on forks): the task's own fault fires
        # mid-task; the kernel's refusal is the harness's (harness/tests/spawn.rs).
        self.cases("spawn", [
            ("py-ppe", "apply-async", "error", ["task", "ok", "ok", "ok"]),
            ("py-process-per-task", "apply-async", "sigkill", ["worker-lost(9)", "ok", "ok", "ok"]),
        ])
