//! What the pools' own tests say, said in the scenario language
//! (`scenarios/features/`): one test per feature, through the real runner,
//! on Python targets and our pools. Each scenario's `[expect]` says what
//! every pool must reach (`not-applicable` where the pool lacks the
//! feature); the tests below also check, from the event logs, what the
//! verdict alone does not show.
//!
//! The Python targets need `targets/python/setup.sh` (a skipped run is not
//! as expected, so a missing package fails here, saying so).

mod common;

use std::path::{Path, PathBuf};

use harness::judge::verdict::{RunRecord, Verdict};
use harness::protocol::{ErrorKind, ErrorName, Event, OutcomeRecord};
use harness::run::events::Logged;
use harness::target::Target;
use harness::{scenario, suite};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `scenarios/features/NAME.toml` against every pool it names; each
/// run must be as expected. Returns the records with their event logs.
fn run(name: &str) -> Vec<(RunRecord, Vec<Logged>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ctx = common::ctx();
    ctx.events_dir = Some(dir.path().to_owned());
    let scenarios =
        scenario::load_all(&[root().join(format!("scenarios/features/{name}.toml"))]).expect("the scenario loads");
    let report = suite::run(&scenarios, &suite::Selection::default(), 1, &ctx, 3, 1, &|_| {}).expect("runs");
    assert_eq!(report.runs.len(), scenarios[0].expect.len());
    let mut out = Vec::new();
    for run in report.runs {
        assert!(run.as_expected(), "{name} x {}: {} ({:?})", run.pool, run.verdict, run.diagnosis);
        let file = run.events.as_deref().and_then(|e| Path::new(e).file_name()).expect("an event log");
        let text = std::fs::read_to_string(find(dir.path(), file).expect("the event log is there")).expect("read");
        let events = text.lines().map(|l| serde_json::from_str(l).expect("an event")).collect();
        out.push((run, events));
    }
    out
}

fn find(dir: &Path, name: &std::ffi::OsStr) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name() == Some(name) {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// Task `index`'s one outcome.
fn outcome(events: &[Logged], index: usize) -> &OutcomeRecord {
    let mut got = events.iter().filter_map(|l| match &l.event {
        Event::Outcome { index: i, result } if *i == index => Some(result),
        _ => None,
    });
    let one = got.next().expect("an outcome");
    assert!(got.next().is_none(), "one outcome");
    one
}

fn message(record: &OutcomeRecord) -> &str {
    match record {
        OutcomeRecord::Error { kind: ErrorKind::Task, message, .. } => message,
        other => panic!("expected a task error, got {other:?}"),
    }
}

/// Task 0 failed with a task error whose message contains `name`; tasks 1..4 got their results.
fn only_task_0_raised(runs: &[(RunRecord, Vec<Logged>)], names: &[&str]) {
    for (run, events) in runs.iter().filter(|(r, _)| r.verdict != Verdict::NotApplicable) {
        let text = message(outcome(events, 0));
        assert!(names.iter().any(|n| text.contains(n)), "{}: task 0's error names {names:?}: {text}", run.pool);
        assert!(!text.contains("unexpected"), "{}: {text}", run.pool);
        for i in 1..4 {
            assert_eq!(outcome(events, i), &OutcomeRecord::Ok, "{}: task {i}", run.pool);
        }
    }
}

#[test]
fn an_argument_pickle_refuses_reaches_the_caller_as_pickles_own_error() {
    only_task_0_raised(&run("unpicklable-argument"), &harness::protocol::PICKLE_REFUSALS);
}

#[test]
fn a_result_pickle_refuses_reaches_the_caller_as_pickles_own_error() {
    only_task_0_raised(&run("unpicklable-result"), &harness::protocol::PICKLE_REFUSALS);
}

#[test]
fn a_memory_error_is_the_tasks_own_error() {
    only_task_0_raised(&run("memory-error"), &["MemoryError"]);
}

/// multiprocessing.Pool's worker dies of a BaseException (exit code 1) and
/// its task is never answered; ProcessPoolExecutor returns it as the task's error.
#[test]
fn a_base_exception_kills_a_pool_worker_and_is_an_executors_task_error() {
    let runs = run("base-exception");
    for (run, events) in &runs {
        match run.pool.name().as_str() {
            "py-pool-apply-async" => {
                assert!(!events.iter().any(|l| matches!(l.event, Event::Outcome { index: 0, .. })));
                assert!(run.diagnosis[0].contains("exited with code 1"), "{:?}", run.diagnosis);
            }
            "py-ppe" => only_task_0_raised(std::slice::from_ref(&(run.clone(), events.clone())), &["BaseException"]),
            _ => assert_eq!(run.verdict, Verdict::NotApplicable),
        }
    }
}

/// The returned exception comes back as the task's value: the owner checks
/// it is the very object (`ok`); a pool that raised it would give `wrong`.
#[test]
fn a_returned_exception_comes_back_as_the_tasks_value() {
    for (run, events) in run("return-exception") {
        if run.verdict == Verdict::NotApplicable {
            assert!(run.diagnosis[0].contains("return-exception"), "{:?}", run.diagnosis);
            continue;
        }
        assert_eq!((run.tasks.ok, run.tasks.total), (4, 4), "{}", run.pool);
        assert_eq!(outcome(&events, 0), &OutcomeRecord::Ok);
    }
}

#[test]
fn a_worker_that_ignores_sigterm_is_still_ended() {
    for (run, _) in run("ignore-sigterm") {
        assert_eq!(run.tasks.ok, 4, "{}", run.pool);
    }
}

#[test]
fn chunksize_reaches_the_maps_that_take_one() {
    for (run, _) in run("chunksize") {
        if run.verdict == Verdict::NotApplicable {
            assert!(run.diagnosis[0].starts_with("not applicable: `chunksize`"), "{:?}", run.diagnosis);
        }
    }
}

/// One worker, at most 2 tasks each, 6 tasks: exactly 3 workers ran them.
#[test]
fn max_tasks_replaces_a_worker_after_its_tasks() {
    for (run, events) in run("max-tasks") {
        if run.verdict == Verdict::NotApplicable {
            assert!(run.diagnosis[0].starts_with("not applicable: `max_tasks`"), "{:?}", run.diagnosis);
            continue;
        }
        let pids: std::collections::BTreeSet<u32> = events
            .iter()
            .filter_map(|l| match l.event {
                Event::TaskStarted { pid, .. } => Some(pid),
                _ => None,
            })
            .collect();
        assert_eq!(pids.len(), 3, "{}: the workers that ran tasks: {pids:?}", run.pool);
    }
}

/// billiard's lost-worker timeout of 1 s makes the lost task's error come
/// within `errors_by_ms` (its own default, 10 s, would not).
#[test]
fn a_pools_own_knobs_reach_it() {
    for (run, events) in run("knobs") {
        if run.pool == Target::python("py-billiard") {
            let OutcomeRecord::Error { kind, .. } = outcome(&events, 0) else { panic!("task 0 failed") };
            assert_eq!(*kind, ErrorKind::WorkerLost);
        }
    }
}

#[test]
fn a_run_past_its_own_time_bound_is_hung() {
    for (run, _) in run("time-bounds") {
        assert_eq!(run.tasks.ok, 4, "{}: every task got its result, late", run.pool);
        assert!(run.diagnosis.iter().any(|d| d.contains("past call_ms = 500")), "{:?}", run.diagnosis);
    }
}

/// 256 KiB arguments (the limit was 64 KiB): each comes back whole.
#[test]
fn an_argument_larger_than_a_pipe_comes_back_whole() {
    for (run, _) in run("large-argument") {
        assert_eq!(run.tasks.ok, 6, "{}", run.pool);
    }
}

fn cancelled(events: &[Logged], index: usize) -> bool {
    matches!(outcome(events, index), OutcomeRecord::Error { kind: ErrorKind::Cancelled, .. })
}

/// One worker: task 4, still queued, is cancelled at once, and task 0,
/// asleep for 2 s, 500 ms later. pebble stops the running task 0 too (its
/// worker killed, a new one runs the rest). A concurrent.futures future is
/// running, and cannot be cancelled, once its executor queued it to a worker,
/// which it does as it is submitted: task 0 gets its result, unless (the
/// race) the executor's thread had not yet queued it 500 ms on.
#[test]
fn a_task_is_cancelled_where_the_pool_can_cancel_it_and_the_pool_carries_on() {
    for (run, events) in run("cancel") {
        if run.verdict == Verdict::NotApplicable {
            assert!(run.diagnosis[0].starts_with("not applicable: `cancel`"), "{:?}", run.diagnosis);
            continue;
        }
        assert!(cancelled(&events, 4), "{}: task 4 was queued: {:?}", run.pool, outcome(&events, 4));
        for i in 1..4 {
            assert_eq!(outcome(&events, i), &OutcomeRecord::Ok, "{}: task {i}", run.pool);
        }
        match run.pool.name().as_str() {
            "py-pebble" => assert!(cancelled(&events, 0), "pebble stops a running task: {:?}", outcome(&events, 0)),
            pool => assert!(
                cancelled(&events, 0) || outcome(&events, 0) == &OutcomeRecord::Ok,
                "{pool}: task 0 ran or was cancelled: {:?}",
                outcome(&events, 0)
            ),
        }
    }
}

/// The checker takes `cancelled` exactly for the tasks the plan cancels:
/// the same outcomes, judged against a plan that cancels only task 4, make
/// task 0's `cancelled` a finding (`lost`).
#[test]
fn the_checker_takes_cancelled_only_for_the_tasks_the_plan_cancels() {
    use harness::judge::checker::{Ending, judge};
    let path = root().join("scenarios/features/cancel.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let cancelled = |n: usize| OutcomeRecord::Error {
        kind: ErrorKind::Cancelled,
        pid: None,
        signal: None,
        code: None,
        attempts: None,
        message: format!("CancelledError ({n})"),
    };
    let mut events = vec![Logged { t_ms: 0, event: Event::Ready { pid: 1 } }];
    for (index, result) in [(0, cancelled(0)), (1, OutcomeRecord::Ok), (2, OutcomeRecord::Ok)] {
        events.push(Logged { t_ms: 1, event: Event::Outcome { index, result } });
    }
    events.push(Logged { t_ms: 1, event: Event::Outcome { index: 3, result: OutcomeRecord::Ok } });
    events.push(Logged { t_ms: 1, event: Event::Outcome { index: 4, result: cancelled(4) } });
    events.push(Logged { t_ms: 2, event: Event::Finished });
    let judged = |text: &str| {
        let scenario = scenario::parse(&path, text).expect("parses");
        let plan = harness::scenario::plan::Plan::new(&scenario, "py-ppe".parse().expect("a target"), 1);
        judge(&plan, &events, &Ending::default())
    };
    let both = judged(&text);
    let cancelled = ErrorName::new(ErrorKind::Cancelled, None, None, None);
    assert_eq!((both.verdict, both.findings.len(), both.errors.get(&cancelled)), (Verdict::FailedLoudly, 0, Some(&2)));
    let one = judged(&text.replacen("[[cancel]]\ntask = 0\nafter_ms = 500\n", "", 1));
    assert_eq!(one.verdict, Verdict::Lost);
    assert_eq!(one.findings, ["task 0 failed with error cancelled, which names no fault"]);
}

/// The join, bounded by 300 ms, times out with task 0 asleep: `hung`, by
/// the pool's own timeout and not the deadline (the owner joined again
/// without a bound, and every task got its result).
#[test]
fn a_join_past_its_timeout_is_hung_and_within_it_completes() {
    for (run, events) in run("join-timeout") {
        if run.verdict == Verdict::NotApplicable {
            assert!(run.diagnosis[0].starts_with("not applicable: `join_timeout_ms`"), "{:?}", run.diagnosis);
            continue;
        }
        assert!(events.iter().any(|l| l.event == Event::JoinTimedOut { timeout_ms: 300 }), "{}", run.pool);
        assert!(!events.iter().any(|l| l.event == Event::Deadline), "{}", run.pool);
        assert!(events.iter().any(|l| l.event == Event::Finished), "{}", run.pool);
        assert_eq!(run.tasks.ok, 4, "{}", run.pool);
        assert!(run.diagnosis[0].contains("past join_timeout_ms = 300"), "{:?}", run.diagnosis);
    }
    for (run, events) in run("join-in-time") {
        assert!(!events.iter().any(|l| matches!(l.event, Event::JoinTimedOut { .. })), "{}", run.pool);
    }
}
