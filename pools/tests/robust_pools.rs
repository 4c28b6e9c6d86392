//! `per-task` and `supervised` under every fault and call style: real worker
//! processes, faults placed by the task itself or sent from outside by pid.
//!
//! Each case is its own test (nextest runs each in its own process), and
//! each runs under `clean_run`, which fails it if a process or fd is left.

mod common;

use std::time::Duration;

use common::{HUNG, LIVE, clean_run, config};
use pools::{
    CallStyle, Exit, Fault, FaultKind, FaultPoint, Outcome, Pool, PoolConfig, PoolKind, Task, TaskError, Workload,
};
use rustix::process::Signal;

/// The pool variants these tests drive.
#[derive(Clone, Copy)]
enum Variant {
    PerTask,
    /// Supervised with retries (3 attempts).
    Supervised,
    /// Supervised with retries off (1 attempt).
    SupervisedOnce,
}

fn start(variant: Variant, mut config: PoolConfig) -> Box<dyn Pool> {
    let kind = match variant {
        Variant::PerTask => PoolKind::PerTask,
        Variant::Supervised | Variant::SupervisedOnce => PoolKind::Supervised,
    };
    config.max_attempts = if matches!(variant, Variant::SupervisedOnce) { 1 } else { 3 };
    pools::build(kind, &config).expect("start pool")
}

/// Six tasks; task 3 is the one that meets the fault.
fn batch(faulted: Task) -> Vec<Task> {
    (0..6u64).map(|i| if i == 3 { faulted.clone() } else { Task::echo(i, format!("task {i}")) }).collect()
}

fn faulty(work: Workload, kind: FaultKind, point: FaultPoint) -> Task {
    Task { tag: 3, work, fault: Some(Fault::once(kind, point)) }
}

/// Asserts that every task but 3 is correct, and returns task 3's outcome.
fn others_ok(tasks: &[Task], outcomes: &[Outcome]) -> Outcome {
    assert_eq!(outcomes.len(), tasks.len());
    for (task, outcome) in tasks.iter().zip(outcomes).filter(|(t, _)| t.tag != 3) {
        match outcome {
            Ok(bytes) => assert!(task.check(bytes), "task {} got a wrong result", task.tag),
            Err(e) => panic!("bystander task {} failed: {e}", task.tag),
        }
    }
    outcomes[3].clone()
}

/// How a case's fault reaches the worker.
enum Kill {
    /// Placed in task 3 itself.
    Placed(Task),
    /// SIGKILL from outside, by pid, once task 3 (a long sleep) has started.
    Outside,
}

/// Runs the batch in `style` on `variant`; checks the faulted task's outcome
/// against `exit` (the way the worker died) and everything else exactly.
fn death_case(variant: Variant, style: CallStyle, kill: Kill, exit: Exit) {
    clean_run(|| {
        let (mut config, mut trace) = config(2);
        config.task_timeout = None;
        let pool = start(variant, config);
        let (tasks, outside) = match kill {
            Kill::Placed(task) => (batch(task), false),
            Kill::Outside => (batch(Task { tag: 3, work: Workload::Sleep { ms: 1500 }, fault: None }), true),
        };
        let driver = {
            let tasks = tasks.clone();
            let pool: &dyn Pool = &*pool;
            std::thread::scope(|scope| {
                let run = scope.spawn(move || pools::drive(pool, style, tasks, LIVE));
                if outside {
                    let pid = trace.wait_start(3, LIVE);
                    common::kill(pid, Signal::KILL);
                }
                run.join().expect("driver thread")
            })
        };
        let driven = driver.expect("drive");
        let outcomes = driven.outcomes.expect("a robust pool must not hang");
        let third = others_ok(&tasks, &outcomes);
        let pid_of_3 = trace.drain().iter().find(|s| s.0 == 3).map(|s| s.2).expect("task 3 started");
        match variant {
            Variant::Supervised => {
                assert!(tasks[3].check(&third.expect("retried task 3 completes")), "task 3 result");
                assert!(trace.drain().iter().filter(|s| s.0 == 3).count() >= 2, "task 3 was retried");
            }
            Variant::PerTask | Variant::SupervisedOnce => match third {
                Err(TaskError::WorkerLost { pid, exit: got, attempts: 1 }) => {
                    assert_eq!((pid, got), (pid_of_3, exit), "the error names the worker and how it died");
                }
                other => panic!("task 3: expected WorkerLost({exit}), got {other:?}"),
            },
        }
        let async_style = matches!(style, CallStyle::ApplyAsync | CallStyle::MapAsync);
        let failed = matches!(variant, Variant::PerTask | Variant::SupervisedOnce);
        if async_style {
            assert_eq!(driven.error_callbacks > 0, failed, "error_callback called iff a task failed");
        }
        // The pool is still usable, and its workers were respawned.
        let again = common::echoes(4);
        common::assert_all_ok(&again, &pool.map_timeout(again.clone(), Some(LIVE)).expect("pool still usable"));
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}

macro_rules! death_cases {
    ($($name:ident: $kill:expr, $exit:expr;)*) => {
        $(mod $name {
            use super::*;
            macro_rules! each {
                ($variant:ident, $style:ident, $test:ident) => {
                    #[test]
                    fn $test() {
                        death_case(Variant::$variant, CallStyle::$style, $kill, $exit);
                    }
                };
            }
            each!(PerTask, Map, per_task_map);
            each!(PerTask, Apply, per_task_apply);
            each!(PerTask, ApplyAsync, per_task_apply_async);
            each!(PerTask, MapAsync, per_task_map_async);
            each!(Supervised, Map, supervised_map);
            each!(Supervised, Apply, supervised_apply);
            each!(Supervised, ApplyAsync, supervised_apply_async);
            each!(Supervised, MapAsync, supervised_map_async);
            each!(SupervisedOnce, Map, supervised_no_retry_map);
            each!(SupervisedOnce, Apply, supervised_no_retry_apply);
            each!(SupervisedOnce, ApplyAsync, supervised_no_retry_apply_async);
            each!(SupervisedOnce, MapAsync, supervised_no_retry_map_async);
        })*
    };
}

fn mid(kind: FaultKind) -> Kill {
    Kill::Placed(faulty(Workload::Sleep { ms: 20 }, kind, FaultPoint::MidTask))
}

death_cases! {
    sigkill_self: mid(FaultKind::SigKill), Exit::Signal(libc::SIGKILL);
    sigkill_outside: Kill::Outside, Exit::Signal(libc::SIGKILL);
    sigsegv: mid(FaultKind::SigSegv), Exit::Signal(libc::SIGSEGV);
    abort: mid(FaultKind::Abort), Exit::Signal(libc::SIGABRT);
    exit_0: mid(FaultKind::Exit(0)), Exit::Code(0);
    exit_1: mid(FaultKind::Exit(1)), Exit::Code(1);
    sigkill_decoding: Kill::Placed(faulty(Workload::Echo(b"x".to_vec()), FaultKind::SigKill, FaultPoint::Decode)),
        Exit::Signal(libc::SIGKILL);
    sigkill_writing_large_result:
        Kill::Placed(faulty(Workload::Large { bytes: 1 << 20 }, FaultKind::SigKill, FaultPoint::WriteResult)),
        Exit::Signal(libc::SIGKILL);
}

#[test]
fn no_fault_every_pool_every_style() {
    for kind in [PoolKind::PerTask, PoolKind::Supervised] {
        for style in CallStyle::ALL {
            clean_run(|| {
                let (config, _trace) = config(2);
                let pool = pools::build(kind, &config).expect("start");
                let tasks = common::echoes(8);
                let driven = pools::drive(&*pool, style, tasks.clone(), LIVE).expect("drive");
                common::assert_all_ok(&tasks, &driven.outcomes.expect("not hung"));
                if matches!(style, CallStyle::ApplyAsync | CallStyle::MapAsync) {
                    assert_eq!(driven.error_callbacks, 0);
                    assert!(driven.result_callbacks > 0);
                }
            });
        }
    }
}

/// A task that never returns, or stops its own worker: with a deadline the
/// worker is killed and the task fails as timed out (or completes on retry).
fn stall_case(variant: Variant, kind: FaultKind) {
    clean_run(|| {
        let (mut config, _trace) = config(2);
        config.task_timeout = Some(Duration::from_millis(300));
        let pool = start(variant, config);
        let tasks = batch(faulty(Workload::Sleep { ms: 10 }, kind, FaultPoint::MidTask));
        let outcomes = pool.map_timeout(tasks.clone(), Some(LIVE)).expect("a pool with deadlines does not hang");
        match (variant, others_ok(&tasks, &outcomes)) {
            (Variant::Supervised, Ok(bytes)) => assert!(tasks[3].check(&bytes)),
            (Variant::PerTask | Variant::SupervisedOnce, Err(TaskError::TimedOut { after, attempts: 1, .. })) => {
                assert!(after >= Duration::from_millis(300), "timed out only after the deadline: {after:?}");
            }
            (_, other) => panic!("task 3: {other:?}"),
        }
    });
}

#[test]
fn hang_per_task() {
    stall_case(Variant::PerTask, FaultKind::Hang);
}
#[test]
fn hang_supervised_retried() {
    stall_case(Variant::Supervised, FaultKind::Hang);
}
#[test]
fn hang_supervised_no_retry() {
    stall_case(Variant::SupervisedOnce, FaultKind::Hang);
}
#[test]
fn sigstop_per_task() {
    stall_case(Variant::PerTask, FaultKind::SigStop);
}
#[test]
fn sigstop_supervised_retried() {
    stall_case(Variant::Supervised, FaultKind::SigStop);
}
#[test]
fn sigstop_supervised_no_retry() {
    stall_case(Variant::SupervisedOnce, FaultKind::SigStop);
}

/// Without a deadline, a hung task hangs the batch: the bounded wait sees it.
#[test]
fn hang_without_deadline_is_detected_as_hung() {
    for variant in [Variant::PerTask, Variant::Supervised] {
        clean_run(|| {
            let (config, _trace) = config(2);
            let pool = start(variant, config);
            let tasks = batch(faulty(Workload::Sleep { ms: 10 }, FaultKind::Hang, FaultPoint::MidTask));
            match pool.map_timeout(tasks, Some(HUNG)) {
                Err(pools::PoolError::TimedOut { pending }) if pending >= 1 => {}
                other => panic!("expected a hang with the hung task pending, got {other:?}"),
            }
            pool.terminate();
            pool.join_timeout(Some(LIVE)).expect("terminate ends it");
        });
    }
}

#[test]
fn task_errors_come_back_as_that_tasks_error() {
    for variant in [Variant::PerTask, Variant::Supervised] {
        for (kind, message) in [(FaultKind::Error, "injected task error"), (FaultKind::Panic, "panic: injected panic")]
        {
            clean_run(|| {
                let (config, _trace) = config(2);
                let pool = start(variant, config);
                let tasks = batch(faulty(Workload::Echo(b"e".to_vec()), kind, FaultPoint::MidTask));
                let outcomes = pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung");
                assert_eq!(others_ok(&tasks, &outcomes), Err(TaskError::Task { message: message.into() }));
                let again = common::echoes(4);
                common::assert_all_ok(&again, &pool.map_timeout(again.clone(), Some(LIVE)).expect("usable"));
            });
        }
    }
}

#[test]
fn a_poison_task_fails_after_max_attempts_and_charges_no_bystander() {
    clean_run(|| {
        let (mut config, mut trace) = config(2);
        config.max_attempts = 3;
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let poison = Task {
            tag: 3,
            work: Workload::Echo(b"p".to_vec()),
            fault: Some(Fault { kind: FaultKind::SigKill, point: FaultPoint::MidTask, times: Fault::ALWAYS }),
        };
        let mut tasks: Vec<Task> = (0..40u64).map(|i| Task::echo(i, vec![i as u8; 16])).collect();
        tasks[3] = poison;
        let outcomes = pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung");
        match others_ok(&tasks, &outcomes) {
            Err(TaskError::WorkerLost { exit: Exit::Signal(libc::SIGKILL), attempts: 3, .. }) => {}
            other => panic!("poison task: {other:?}"),
        }
        let attempts: Vec<u32> = trace.drain().iter().filter(|s| s.0 == 3).map(|s| s.1).collect();
        assert_eq!(attempts, [0, 1, 2], "each attempt of the poison task runs once");
    });
}

#[test]
fn workers_over_the_memory_ceiling_are_recycled_between_tasks() {
    clean_run(|| {
        let (mut config, mut trace) = config(1);
        config.rss_ceiling_kib = Some(48 << 10);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let tasks: Vec<Task> =
            (0..6u64).map(|i| Task { tag: i, work: Workload::Alloc { mib: 32, hold: true }, fault: None }).collect();
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung"));
        let pids: std::collections::BTreeSet<u32> = trace.drain().iter().map(|s| s.2).collect();
        // 32 MiB held, then 64 MiB: over 48 MiB after every second task.
        assert!(pids.len() >= 3, "workers recycled: {pids:?}");
    });
}

/// A worker dies mid-window (task 3 SIGKILLs itself): the standby, forked
/// before the batch, runs task 3 again and the dead worker's unstarted
/// tasks; every task completes exactly once. The tasks sleep 5 ms, so each
/// result leaves its worker before the next task starts, and only task 3
/// runs twice.
fn standby_case(style: CallStyle) {
    clean_run(|| {
        let (config, mut trace) = config(2);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let before = common::wait_for_pids(&*pool, 3);
        let standby = *before.last().expect("a standby");
        let mut tasks: Vec<Task> =
            (0..8u64).map(|i| Task { tag: i, work: Workload::Sleep { ms: 5 }, fault: None }).collect();
        tasks[3].fault = Some(Fault::once(FaultKind::SigKill, FaultPoint::MidTask));
        let driven = pools::drive(&*pool, style, tasks.clone(), LIVE).expect("drive");
        common::assert_all_ok(&tasks, &driven.outcomes.expect("not hung"));
        if matches!(style, CallStyle::ApplyAsync | CallStyle::MapAsync) {
            assert_eq!(driven.error_callbacks, 0);
        }
        let starts = trace.drain().to_vec();
        for task in &tasks {
            let runs: Vec<u32> = starts.iter().filter(|s| s.0 == task.tag).map(|s| s.1).collect();
            let expected: &[u32] = if task.tag == 3 { &[0, 1] } else { &[0] };
            assert_eq!(runs, expected, "task {}: the attempts that ran", task.tag);
        }
        let (_, _, died) = *starts.iter().find(|s| s.0 == 3 && s.1 == 0).expect("task 3 ran");
        let (_, _, retried) = *starts.iter().find(|s| s.0 == 3 && s.1 == 1).expect("task 3 ran again");
        assert_eq!(retried, standby, "the standby, forked before the death, took task 3");
        // The dead worker's unstarted tasks went to the standby too.
        let after_death: Vec<u32> = starts.iter().skip_while(|s| s.0 != 3).skip(1).map(|s| s.2).collect();
        assert!(!after_death.contains(&died), "nothing ran on the dead worker after its death");
        // A new standby is forked; the dead worker is gone.
        let now = common::wait_for_pids(&*pool, 3);
        assert!(!now.contains(&died) && now.contains(&standby), "{before:?} -> {now:?}");
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}

#[test]
fn standby_takes_a_dead_workers_window_map() {
    standby_case(CallStyle::Map);
}
#[test]
fn standby_takes_a_dead_workers_window_apply() {
    standby_case(CallStyle::Apply);
}
#[test]
fn standby_takes_a_dead_workers_window_apply_async() {
    standby_case(CallStyle::ApplyAsync);
}
#[test]
fn standby_takes_a_dead_workers_window_map_async() {
    standby_case(CallStyle::MapAsync);
}

/// The standby is SIGKILLed while idle: it is replaced, no task is charged
/// (every task runs once, at attempt 0), and nothing waits for it.
#[test]
fn a_standby_killed_while_idle_is_replaced_and_charges_no_task() {
    clean_run(|| {
        let (config, mut trace) = config(2);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let before = common::wait_for_pids(&*pool, 3);
        let standby = *before.last().expect("a standby");
        common::kill(standby, Signal::KILL);
        let until = std::time::Instant::now() + LIVE;
        let replaced = loop {
            let pids = pool.worker_pids();
            if pids.len() == 3 && !pids.contains(&standby) {
                break pids;
            }
            assert!(std::time::Instant::now() < until, "the standby was not replaced: {pids:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(replaced[..2], before[..2], "the workers are untouched");
        let tasks = common::echoes(40);
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung"));
        let starts = trace.drain().to_vec();
        for task in &tasks {
            let runs: Vec<u32> = starts.iter().filter(|s| s.0 == task.tag).map(|s| s.1).collect();
            assert_eq!(runs, [0], "task {} ran once, uncharged", task.tag);
        }
        assert!(starts.iter().all(|s| s.2 != standby), "the dead standby ran nothing");
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}

/// Twelve deaths in a row, more than the scoreboards the supervisor keeps
/// for reuse: each death is charged to its own task alone, whichever
/// worker's page it ran on. Every 5th task SIGKILLs its worker once; the
/// tasks sleep 2 ms, so each result leaves its worker before the next task
/// starts: a killed task runs twice (attempts 0 and 1), every other once.
#[test]
fn every_death_in_a_long_run_charges_its_own_task_alone() {
    clean_run(|| {
        let (config, mut trace) = config(2);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let tasks: Vec<Task> = (0..60u64)
            .map(|i| Task {
                tag: i,
                work: Workload::Sleep { ms: 2 },
                fault: (i % 5 == 4).then(|| Fault::once(FaultKind::SigKill, FaultPoint::MidTask)),
            })
            .collect();
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung"));
        let starts = trace.drain().to_vec();
        for task in &tasks {
            let runs: Vec<u32> = starts.iter().filter(|s| s.0 == task.tag).map(|s| s.1).collect();
            let expected: &[u32] = if task.fault.is_some() { &[0, 1] } else { &[0] };
            assert_eq!(runs, expected, "task {}: the attempts that ran", task.tag);
        }
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}

/// A planted bug: a task's own error takes the next result of its job
/// down with it; so does a `WorkerLost`. One worker and 5 ms tasks (each
/// result leaves the worker before the next task starts), so the order of
/// results is exact.
#[test]
fn planted_fail_bystander_fails_the_next_healthy_task_of_the_job() {
    for (kind, attempts) in [(FaultKind::Error, 3), (FaultKind::SigKill, 1)] {
        clean_run(|| {
            let (mut config, _trace) = config(1);
            config.max_attempts = attempts;
            let bug = pools::pool::PlantedBug::FailBystander;
            let pool = pools::build(PoolKind::Planted(bug), &config).expect("start");
            assert_eq!(pool.kind().name(), "supervised-bug-fail-bystander");
            let mut tasks: Vec<Task> =
                (0..6u64).map(|i| Task { tag: i, work: Workload::Sleep { ms: 5 }, fault: None }).collect();
            tasks[3].fault = Some(Fault::once(kind, FaultPoint::MidTask));
            let outcomes = pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung");
            let error = outcomes[3].clone().expect_err("task 3 fails");
            match (&error, kind) {
                (TaskError::Task { .. }, FaultKind::Error) | (TaskError::WorkerLost { attempts: 1, .. }, _) => {}
                other => panic!("task 3: {other:?}"),
            }
            assert_eq!(outcomes[4], Err(error), "the next result of the job fails with a copy");
            for i in [0, 1, 2, 5] {
                assert!(tasks[i].check(outcomes[i].as_ref().expect("healthy")), "task {i}");
            }
        });
    }
}
