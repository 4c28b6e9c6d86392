//! The `spawn` point through the real runner and sandbox: once the pool is
//! warm the run's `pids.max` is 0, so the kernel refuses every fork, and
//! the faulted task's worker dies mid-task. Each of our pools, and two
//! Python targets, with the exact outcome of every task. Without a pids
//! cgroup the run is skipped, saying why.
//!
//! These need what CI has: root and cgroups (v1 `pids`, or v2 with `pids`).

mod common;

use std::path::Path;
use std::process::Command;

use harness::judge::checker::Fate;
use harness::judge::verdict::Verdict;
use harness::protocol::{ErrorKind, Event};
use harness::run::events::Logged;
use harness::run::runner::{self, RunResult};
use harness::scenario;
use harness::scenario::plan::Plan;
use harness::target::Target;
use pools::PoolKind;

/// A scenario on `workers` workers (`map`): task 0 sleeps 1 s and SIGKILLs
/// itself halfway on its first `times` attempts, at `spawn`; then `healthy`
/// echo tasks.
fn scenario_text(workers: usize, times: u32, healthy: usize, deadline_ms: u64) -> String {
    format!(
        "description = \"spawn\"\nworkers = {workers}\nstyle = \"map\"\ndeadline_ms = {deadline_ms}\n\n\
         [[tasks]]\ncount = 1\nwork = {{ sleep_ms = 1000 }}\nfault = {{ kind = \"sigkill\", at = \"spawn\", times = {times} }}\n\n\
         [[tasks]]\ncount = {healthy}\nwork = {{ echo = 8 }}\n\n[expect]\nsupervised = \"completed\"\n"
    )
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spawn.toml");
    std::fs::write(&path, text).expect("write the scenario");
    path
}

/// Runs the scenario against `target` through the runner, in a sandbox of this host.
fn run(target: Target, text: &str) -> RunResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenarios = scenario::load_all(&[write(dir.path(), text)]).expect("the scenario loads");
    let plan = Plan::new(&scenarios[0], target, 1);
    assert!(plan.warmup && plan.limits_spawns());
    let result = runner::run(&plan, &common::ctx(), "spawn").expect("the run");
    assert!(result.record.leaks.is_empty(), "nothing outlives the run: {:?}", result.record.leaks);
    result
}

/// Each task's fate in a word: `ok`, `pending`, `worker-lost(sigkill)`, `spawn-failed`, ...
fn fates(result: &RunResult) -> Vec<String> {
    result
        .judgement
        .tasks
        .iter()
        .map(|t| match &t.fate {
            Fate::Ok => "ok".to_string(),
            Fate::Pending => "pending".to_string(),
            Fate::Failed(name) => name.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The run's forks were limited after the warm-up, before the batch's first task started.
fn assert_limited_when_warm(events: &[Logged]) {
    let at = |want: fn(&Event) -> bool| events.iter().position(|l| want(&l.event));
    let warm = at(|e| matches!(e, Event::WarmedUp)).expect("warmed up");
    let limited = at(|e| matches!(e, Event::PidsLimited { max: 0 })).expect("pids.max set to 0");
    // (Where every fork is refused, no task of the batch starts at all.)
    let first = at(|e| matches!(e, Event::TaskStarted { tag, .. } if *tag != u64::MAX)).unwrap_or(usize::MAX);
    assert!(warm < limited && limited < first, "warm-up, then the limit, then the batch: {events:?}");
}

/// The run's verdict, the limit set between the warm-up and the batch, and
/// each task's fate in a word.
fn assert_outcome(result: &RunResult, verdict: Verdict, want: &[&str]) {
    assert_eq!(result.record.verdict, verdict, "{:?}", result.record.diagnosis);
    assert_limited_when_warm(&result.events);
    assert_eq!(fates(result), want, "{:?}", result.record.diagnosis);
}

/// How many workers were SIGKILLed.
fn sigkilled(result: &RunResult) -> usize {
    result.record.worker_exits.iter().filter(|e| e.signal == Some(9)).count()
}

/// Each start of task 0: (attempt, pid), from the trace.
fn starts_of_task_0(result: &RunResult) -> Vec<(u32, u32)> {
    let starts = result.events.iter().filter_map(|l| match l.event {
        Event::TaskStarted { tag: 0, attempt, pid } => Some((attempt, pid)),
        _ => None,
    });
    starts.collect()
}

fn pool(kind: PoolKind) -> Target {
    Target::Pool(kind)
}

#[test]
fn naive_and_seed_polling_hang_on_the_lost_task() {
    for kind in [PoolKind::Naive, PoolKind::SeedPolling] {
        let result = run(pool(kind), &scenario_text(2, 1, 5, 5000));
        // map never returns: no task has an outcome; task 0's worker died mid-task.
        assert_outcome(&result, Verdict::Hung, &["pending"; 6]);
        assert_eq!(sigkilled(&result), 1, "{kind}");
        assert!(
            result.record.diagnosis[0].starts_with("task 0 pending: running on worker")
                && result.record.diagnosis[0].contains("died by sigkill"),
            "{kind}: {:?}",
            result.record.diagnosis
        );
    }
}

#[test]
fn polling_fails_loudly_on_the_death() {
    let result = run(pool(PoolKind::Polling), &scenario_text(2, 1, 5, 30_000));
    // The healthy tasks were done long before task 0's worker died (500 ms in).
    assert_outcome(&result, Verdict::FailedLoudly, &["pool-broken(sigkill)", "ok", "ok", "ok", "ok", "ok"]);
}

#[test]
fn per_task_fails_the_dead_task_and_every_task_that_gets_no_process() {
    let result = run(pool(PoolKind::PerTask), &scenario_text(2, 1, 5, 30_000));
    // Tasks 0 and 1 take the two spares forked before the limit; the rest get none.
    let want = ["worker-lost(sigkill)", "ok", "spawn-failed", "spawn-failed", "spawn-failed", "spawn-failed"];
    assert_outcome(&result, Verdict::FailedLoudly, &want);
    let refused = result.events.iter().filter_map(|l| match &l.event {
        Event::Outcome { result: harness::protocol::OutcomeRecord::Error { kind, message, .. }, .. } => {
            (*kind == ErrorKind::SpawnFailed).then_some(message.clone())
        }
        _ => None,
    });
    for message in refused {
        assert!(message.contains("the kernel refused the fork (EAGAIN"), "{message}");
    }
    // A task that got no process was touched by the limit: no bystander.
    assert!(result.judgement.tasks[2..].iter().all(|t| t.touched), "each failure is the fault's");
}

#[test]
fn supervised_hands_the_task_to_its_standby_and_goes_on_without_a_new_one() {
    let result = run(pool(PoolKind::Supervised), &scenario_text(2, 1, 5, 30_000));
    assert_outcome(&result, Verdict::Completed, &["ok"; 6]);
    // Task 0 ran twice, on two processes: the second is the standby forked before the limit.
    let runs = starts_of_task_0(&result);
    assert!(matches!(runs[..], [(0, a), (1, b)] if a != b), "{runs:?}");
}

#[test]
fn supervised_fails_loudly_when_its_last_worker_dies_and_none_can_start() {
    // One worker and the standby; task 0 kills each in turn (2 of its 3 attempts).
    let text = scenario_text(1, 2, 3, 30_000).replace("deadline_ms", "max_attempts = 3\ndeadline_ms");
    let result = run(pool(PoolKind::Supervised), &text);
    assert_outcome(&result, Verdict::FailedLoudly, &["spawn-failed"; 4]);
    // It killed the worker, then the standby; no third process ever ran it.
    let runs = starts_of_task_0(&result);
    assert!(matches!(runs[..], [(0, a), (1, b)] if a != b), "{runs:?}");
}

#[test]
fn python_targets_meet_the_refused_fork_for_real() {
    // ProcessPoolExecutor breaks at the death; map raises for every task.
    let result = run(Target::python("py-ppe"), &scenario_text(2, 1, 5, 30_000));
    assert_outcome(&result, Verdict::FailedLoudly, &["pool-broken(sigkill)"; 6]);
    // One multiprocessing.Process per task: after the warm-up none can be forked.
    let result = run(Target::python("py-process-per-task"), &scenario_text(2, 1, 5, 30_000));
    assert_outcome(&result, Verdict::FailedLoudly, &["spawn-failed"; 6]);
}

#[test]
fn without_a_pids_cgroup_the_run_is_skipped_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), &scenario_text(2, 1, 1, 30_000));
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .args(["run", "--format", "json", "--pools", "supervised"])
        .arg(&file)
        .env(harness::run::sandbox::NO_CGROUP_ENV, "1")
        .output()
        .expect("run poolchaos");
    assert_eq!(out.status.code(), Some(3), "skipped is never a pass: {}", String::from_utf8_lossy(&out.stderr));
    let report: harness::report::Report = serde_json::from_slice(&out.stdout).expect("report json");
    let [run] = &report.runs[..] else { panic!("one run: {:?}", report.runs) };
    assert_eq!(run.verdict, Verdict::Skipped);
    assert!(
        run.diagnosis[0].starts_with("skipped: the `spawn` point needs the run's pids cgroup to refuse forks"),
        "{:?}",
        run.diagnosis
    );
    assert!(run.worker_exits.is_empty(), "nothing ran");
}
