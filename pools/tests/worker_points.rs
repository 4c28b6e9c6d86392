//! The worker-side fault points (`transport`, `encode-result`,
//! `after-result`, `init`, `recycle`) on all five pools: per point, a table
//! of the exact outcome of every task, the faulted one and its bystanders.
//!
//! Four tasks on two workers, each submitted alone (as `apply_async`), in
//! order: 0 and 1 sleep 50 ms, 2 sleeps 600 ms (still running when the
//! fault fires on the other worker), 3 carries the fault. Where the table
//! says a task stays pending, the pool is watched for [`HUNG`] and must not
//! have answered it; then it is terminated, and every test runs under
//! `clean_run` (no process or fd left).

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{HUNG, LIVE, clean_run};
use pools::fault::StartTokens;
use pools::{Callbacks, Exit, Fault, FaultKind, FaultPoint, Outcome, Pool, PoolKind, Task, TaskError, Workload};

/// What a task must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its correct result.
    Done,
    /// No outcome while the pool is watched: hung.
    Pending,
    /// Its own error (`TaskError::Task`).
    Raised,
    /// `WorkerLost` after one attempt, the worker ended so.
    Lost(Exit),
    /// `PoolBroken`, the dead worker ended so.
    Broken(Exit),
    /// Its result, or `PoolBroken` if the pool broke before the result was
    /// read (polling: a race between its result handler and its poll).
    OkOrBroken(Exit),
    /// Its result or `PoolBroken`, and of the tasks marked so exactly one
    /// gets its result: one clean worker is left to run one of them, and
    /// which one it is, is a race of windows.
    OneOf(Exit),
}

const KILLED: Exit = Exit::Signal(libc::SIGKILL);

/// The pools, and supervised without retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Naive,
    SeedPolling,
    Polling,
    PerTask,
    Supervised,
    SupervisedOnce,
}

/// A fault at a point, as the tests place it.
#[derive(Debug, Clone, Copy)]
struct Case {
    point: FaultPoint,
    kind: FaultKind,
    times: u32,
}

/// The four tasks; task 3 carries `case`'s fault.
fn tasks(case: Case) -> Vec<Task> {
    let sleep = |tag, ms| Task { tag, work: Workload::Sleep { ms }, fault: None };
    let work = match case.point {
        // Larger than a pipe: the worker dies with the rest still being written.
        FaultPoint::Transport => Workload::Echo(vec![7; 1 << 20]),
        _ => Workload::Sleep { ms: 50 },
    };
    let fault = Fault { kind: case.kind, point: case.point, times: case.times };
    vec![sleep(0, 50), sleep(1, 50), sleep(2, 600), Task { tag: 3, work, fault: Some(fault) }]
}

fn start(variant: Variant, case: Case) -> Box<dyn Pool> {
    let mut config = pools::PoolConfig::new(2, common::program());
    // What the owner does for a plan with a start fault (harness/src/run/owner.rs).
    if matches!(case.point, FaultPoint::Init | FaultPoint::Recycle) {
        let clean = if case.point == FaultPoint::Recycle { config.workers } else { 0 };
        let tokens = StartTokens::new(clean, case.times, case.kind).expect("start tokens");
        config.program.start_tokens = Some(Arc::new(tokens));
    }
    if case.point == FaultPoint::Recycle {
        config.max_tasks_per_worker = Some(1);
    }
    config.max_attempts = if variant == Variant::SupervisedOnce { 1 } else { 3 };
    let kind = match variant {
        Variant::Naive => PoolKind::Naive,
        Variant::SeedPolling => PoolKind::SeedPolling,
        Variant::Polling => PoolKind::Polling,
        Variant::PerTask => PoolKind::PerTask,
        Variant::Supervised | Variant::SupervisedOnce => PoolKind::Supervised,
    };
    pools::build(kind, &config).expect("start pool")
}

/// Runs the four tasks on `variant` under `case` and checks each against `want`.
fn check(variant: Variant, case: Case, want: [Fate; 4]) {
    clean_run(|| {
        let pool = start(variant, case);
        let tasks = tasks(case);
        let hung = want.contains(&Fate::Pending);
        let until = Instant::now() + if hung { HUNG } else { LIVE };
        let handles: Vec<_> = tasks.iter().map(|t| pool.submit(vec![t.clone()], Callbacks::default())).collect();
        let got: Vec<Option<Outcome>> = handles
            .into_iter()
            .map(|handle| match handle {
                Ok(handle) => {
                    handle.wait(Some(until.saturating_duration_since(Instant::now()))).map(|mut o| o.remove(0))
                }
                // Polling refuses work once broken: the task's error is the pool's.
                Err(pools::PoolError::Broken(e)) => Some(Err(e)),
                Err(e) => panic!("submit: {e}"),
            })
            .collect();
        for (i, (task, (got, want))) in tasks.iter().zip(got.iter().zip(want)).enumerate() {
            let fits = match (want, got) {
                (Fate::Pending, None) => true,
                (Fate::Done | Fate::OkOrBroken(_) | Fate::OneOf(_), Some(Ok(bytes))) => task.check(bytes),
                (Fate::Raised, Some(Err(TaskError::Task { message }))) => message == "injected task error",
                (Fate::Lost(exit), Some(Err(TaskError::WorkerLost { exit: got, attempts: 1, .. }))) => *got == exit,
                (
                    Fate::Broken(exit) | Fate::OkOrBroken(exit) | Fate::OneOf(exit),
                    Some(Err(TaskError::PoolBroken { exit: got, .. })),
                ) => *got == exit,
                _ => false,
            };
            assert!(fits, "{variant:?} {case:?}: task {i} came to {got:?}, expected {want:?}");
        }
        if want.iter().any(|w| matches!(w, Fate::OneOf(_))) {
            let done = got.iter().zip(want).filter(|(g, w)| matches!(w, Fate::OneOf(_)) && matches!(g, Some(Ok(_))));
            assert_eq!(done.count(), 1, "{variant:?} {case:?}: one of the tasks marked one-of completes: {got:?}");
        }
        if hung {
            pool.close();
            let joined = pool.join_timeout(Some(HUNG));
            // Still hung: close(); join() waits for the pending task for ever. But
            // seed-polling's join is the post's loop, which returns (terminating the
            // pool, the tasks still pending) if it samples every worker dead at once,
            // as workers that always die as they start may let it.
            let sampled = variant == Variant::SeedPolling && case.times == Fault::ALWAYS;
            assert!(
                matches!(joined, Err(pools::PoolError::TimedOut { .. })) || (sampled && joined.is_ok()),
                "{variant:?} {case:?}: close(); join() must hang too, got {joined:?}"
            );
            pool.terminate();
        } else {
            pool.close();
        }
        pool.join_timeout(Some(LIVE)).expect("joins once closed or terminated");
        assert_eq!(pool.worker_pids(), Vec::<u32>::new(), "every worker is gone");
    });
}

const TRANSPORT: Case = Case { point: FaultPoint::Transport, kind: FaultKind::SigKill, times: 1 };
const ENCODE_RESULT: Case = Case { point: FaultPoint::EncodeResult, kind: FaultKind::SigKill, times: 1 };
const ENCODE_RESULT_ERROR: Case = Case { point: FaultPoint::EncodeResult, kind: FaultKind::Error, times: 1 };
const AFTER_RESULT: Case = Case { point: FaultPoint::AfterResult, kind: FaultKind::SigKill, times: 1 };
const INIT: Case = Case { point: FaultPoint::Init, kind: FaultKind::SigKill, times: 1 };
const INIT_ERROR: Case = Case { point: FaultPoint::Init, kind: FaultKind::Error, times: 1 };
const INIT_ALWAYS: Case = Case { point: FaultPoint::Init, kind: FaultKind::SigKill, times: Fault::ALWAYS };
const RECYCLE: Case = Case { point: FaultPoint::Recycle, kind: FaultKind::SigKill, times: 1 };
const RECYCLE_ALWAYS: Case = Case { point: FaultPoint::Recycle, kind: FaultKind::SigKill, times: Fault::ALWAYS };

use Fate::{Broken, Done, Lost, OkOrBroken, OneOf, Pending, Raised};

/// One `#[test]` per row: `point::pool`.
macro_rules! table {
    ($($module:ident: $case:expr => { $($variant:ident: $fates:expr;)* })*) => {
        $(mod $module {
            use super::*;
            $(
                #[test]
                #[allow(non_snake_case)]
                fn $variant() {
                    check(Variant::$variant, $case, $fates);
                }
            )*
        })*
    };
}

table! {
    // The worker dies with the task frame half read. Naive family: it held the
    // inqueue's read lock (CPython's `SimpleQueue.get` reads under `_rlock`), the
    // rest of the frame stays in the pipe: nobody takes a task again.
    transport: TRANSPORT => {
        Naive: [Done, Done, Done, Pending];
        SeedPolling: [Done, Done, Done, Pending];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), Broken(KILLED)];
        PerTask: [Done, Done, Done, Lost(KILLED)];
        Supervised: [Done, Done, Done, Done];
        SupervisedOnce: [Done, Done, Done, Lost(KILLED)];
    }
    // The worker dies encoding its result: no lock held (CPython pickles before it
    // takes `_wlock`), but the task is lost.
    encode_result: ENCODE_RESULT => {
        Naive: [Done, Done, Done, Pending];
        SeedPolling: [Done, Done, Done, Pending];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), Broken(KILLED)];
        PerTask: [Done, Done, Done, Lost(KILLED)];
        Supervised: [Done, Done, Done, Done];
        SupervisedOnce: [Done, Done, Done, Lost(KILLED)];
    }
    // A result that cannot be encoded is the task's error (CPython's MaybeEncodingError).
    encode_result_error: ENCODE_RESULT_ERROR => {
        Naive: [Done, Done, Done, Raised];
        SeedPolling: [Done, Done, Done, Raised];
        Polling: [Done, Done, Done, Raised];
        PerTask: [Done, Done, Done, Raised];
        Supervised: [Done, Done, Done, Raised];
        SupervisedOnce: [Done, Done, Done, Raised];
    }
    // The worker dies once its result is sent, holding nothing: replaced, nothing
    // lost; polling breaks on the death with task 2 still running.
    after_result: AFTER_RESULT => {
        Naive: [Done, Done, Done, Done];
        SeedPolling: [Done, Done, Done, Done];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), OkOrBroken(KILLED)];
        PerTask: [Done, Done, Done, Done];
        Supervised: [Done, Done, Done, Done];
        SupervisedOnce: [Done, Done, Done, Done];
    }
    // The first worker start dies: it held no lock and no task.
    init: INIT => {
        Naive: [Done, Done, Done, Done];
        SeedPolling: [Done, Done, Done, Done];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), OkOrBroken(KILLED)];
        PerTask: [Done, Done, Done, Done];
        Supervised: [Done, Done, Done, Done];
        SupervisedOnce: [Done, Done, Done, Done];
    }
    // An initializer that raises ends its worker with exit code 1, as in CPython.
    init_error: INIT_ERROR => {
        Naive: [Done, Done, Done, Done];
        Polling: [OkOrBroken(Exit::Code(1)), OkOrBroken(Exit::Code(1)), Broken(Exit::Code(1)), OkOrBroken(Exit::Code(1))];
        Supervised: [Done, Done, Done, Done];
    }
    // Every start dies. CPython's pool replaces its workers for ever: hung.
    init_always: INIT_ALWAYS => {
        Naive: [Pending, Pending, Pending, Pending];
        SeedPolling: [Pending, Pending, Pending, Pending];
        Polling: [Broken(KILLED), Broken(KILLED), Broken(KILLED), Broken(KILLED)];
        PerTask: [Broken(KILLED), Broken(KILLED), Broken(KILLED), Broken(KILLED)];
        Supervised: [Broken(KILLED), Broken(KILLED), Broken(KILLED), Broken(KILLED)];
        SupervisedOnce: [Broken(KILLED), Broken(KILLED), Broken(KILLED), Broken(KILLED)];
    }
    // One task per worker; the first replacement dies as it starts.
    recycle: RECYCLE => {
        Naive: [Done, Done, Done, Done];
        SeedPolling: [Done, Done, Done, Done];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), OkOrBroken(KILLED)];
        PerTask: [Done, Done, Done, Done];
        Supervised: [Done, Done, Done, Done];
        SupervisedOnce: [Done, Done, Done, Done];
    }
    // Every replacement dies: the first two tasks ran on the first two workers.
    recycle_always: RECYCLE_ALWAYS => {
        Naive: [Done, Done, Pending, Pending];
        SeedPolling: [Done, Done, Pending, Pending];
        Polling: [OkOrBroken(KILLED), OkOrBroken(KILLED), Broken(KILLED), Broken(KILLED)];
        PerTask: [Done, Done, Broken(KILLED), Broken(KILLED)];
        // Two workers start clean and run one task each: task 0, and one of
        // the rest. Which one is a race: each task is its own call, and each
        // goes to the first worker with room, so tasks 1 to 3 may wait in
        // the first worker's window. When that worker recycles, the standby,
        // forked third and so dying as it starts, may take its share of
        // them, and the other clean worker runs the first it is given (seen
        // on the CI machine: task 1 broken 1 run in 8, task 2 done once).
        Supervised: [Done, OneOf(KILLED), OneOf(KILLED), OneOf(KILLED)];
        SupervisedOnce: [Done, OneOf(KILLED), OneOf(KILLED), OneOf(KILLED)];
    }
}
