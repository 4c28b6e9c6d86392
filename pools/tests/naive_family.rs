//! The naive family (naive, seed-polling, polling) under every fault and call
//! style, plus the inqueue-lock deadlock of an idle worker's death.
//!
//! Naive and seed-polling must hang exactly where CPython's pool hangs (the
//! bounded wait of `drive` says so, then `close(); join` times out too), and
//! then `terminate` must leave nothing behind. Polling must never hang on a
//! death: every task gets an outcome, the lost ones `PoolBroken` naming the
//! dead worker and how it died.

mod common;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{HUNG, LIVE, Trace};
use pools::naive::NaivePool;
use pools::polling::PollingPool;
use pools::seed_polling::SeedPollingPool;
use pools::{
    CallStyle, Callbacks, Driven, Exit, Fault, FaultKind, FaultPoint, Pool, PoolConfig, PoolError, PoolKind, Task,
    TaskError, Workload,
};
use rustix::process::Signal;

/// The tag of the task that carries the fault in the deadly batches.
const FAULTED: u64 = 3;

/// What happens to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    NoFault,
    SigKillSelf,
    SigKillOutside,
    SigSegv,
    Abort,
    Exit0,
    Exit1,
    SigKillWritingLargeResult,
    Hang,
    SigStop,
    TaskError,
    TaskPanic,
}

impl Case {
    /// How the faulted worker ends, for the faults that kill it.
    fn exit(self) -> Option<Exit> {
        Some(match self {
            Case::SigKillSelf | Case::SigKillOutside | Case::SigKillWritingLargeResult => Exit::Signal(9),
            Case::SigSegv => Exit::Signal(11),
            Case::Abort => Exit::Signal(6),
            Case::Exit0 => Exit::Code(0),
            Case::Exit1 => Exit::Code(1),
            _ => return None,
        })
    }

    /// The task that carries the fault (tag [`FAULTED`]).
    fn faulted_task(self) -> Task {
        let mid = |kind| Some(Fault::once(kind, FaultPoint::MidTask));
        let (work, fault) = match self {
            Case::SigKillSelf => (Workload::Sleep { ms: 400 }, mid(FaultKind::SigKill)),
            Case::SigKillOutside => (Workload::Sleep { ms: 3000 }, None),
            Case::SigSegv => (Workload::Sleep { ms: 400 }, mid(FaultKind::SigSegv)),
            Case::Abort => (Workload::Sleep { ms: 400 }, mid(FaultKind::Abort)),
            Case::Exit0 => (Workload::Sleep { ms: 400 }, mid(FaultKind::Exit(0))),
            Case::Exit1 => (Workload::Sleep { ms: 400 }, mid(FaultKind::Exit(1))),
            Case::SigKillWritingLargeResult => {
                (Workload::Large { bytes: 1 << 20 }, Some(Fault::once(FaultKind::SigKill, FaultPoint::WriteResult)))
            }
            Case::Hang => (Workload::Sleep { ms: 400 }, mid(FaultKind::Hang)),
            Case::SigStop => (Workload::Sleep { ms: 400 }, mid(FaultKind::SigStop)),
            Case::NoFault | Case::TaskError | Case::TaskPanic => {
                unreachable!("{self:?} has no deadly task")
            }
        };
        Task { tag: FAULTED, work, fault }
    }
}

/// Two quick tasks, one that is still running when the fault fires (under
/// `map`), and the faulted one last (so `apply` reaches it).
fn deadly_batch(case: Case) -> Vec<Task> {
    vec![
        Task::echo(0, "zero"),
        Task::echo(1, "one"),
        Task { tag: 2, work: Workload::Sleep { ms: 600 }, fault: None },
        case.faulted_task(),
    ]
}

fn start(kind: PoolKind, config: &PoolConfig) -> Box<dyn Pool> {
    match kind {
        PoolKind::Naive => Box::new(NaivePool::new(config).expect("start naive")),
        PoolKind::SeedPolling => Box::new(SeedPollingPool::new(config).expect("start seed-polling")),
        PoolKind::Polling => Box::new(PollingPool::new(config).expect("start polling")),
        other => panic!("{other} is not in the naive family"),
    }
}

fn is_async(style: CallStyle) -> bool {
    matches!(style, CallStyle::ApplyAsync | CallStyle::MapAsync)
}

/// Who knows the pid of the faulted task's worker.
enum Culprit {
    /// A thread that waits for the task to start, SIGKILLs its worker from
    /// outside and returns its pid.
    Outside(JoinHandle<u32>),
    /// The task kills its own worker; the trace says which.
    Inside(Trace),
}

impl Culprit {
    fn new(case: Case, mut trace: Trace) -> Culprit {
        if case != Case::SigKillOutside {
            return Culprit::Inside(trace);
        }
        Culprit::Outside(std::thread::spawn(move || {
            let pid = trace.wait_start(FAULTED, LIVE);
            std::thread::sleep(Duration::from_millis(100));
            common::kill(pid, Signal::KILL);
            pid
        }))
    }

    fn pid(self) -> u32 {
        match self {
            Culprit::Outside(killer) => killer.join().expect("killer thread"),
            Culprit::Inside(mut trace) => trace.wait_start(FAULTED, LIVE),
        }
    }
}

fn run_case(kind: PoolKind, case: Case, style: CallStyle) {
    common::clean_run(|| {
        let (config, trace) = common::config(2);
        let pool = start(kind, &config);
        match case {
            Case::NoFault => no_fault(&*pool, style),
            Case::TaskError | Case::TaskPanic => task_fails(&*pool, case, style),
            Case::Hang | Case::SigStop => stalls(&*pool, case, style),
            _ if kind == PoolKind::Polling => breaks_loudly(&*pool, case, style, trace),
            _ => hangs(&*pool, case, style, trace),
        }
    });
}

fn drive(pool: &dyn Pool, style: CallStyle, tasks: Vec<Task>, deadline: Duration) -> Driven {
    pools::drive(pool, style, tasks, deadline).expect("drive")
}

fn no_fault(pool: &dyn Pool, style: CallStyle) {
    let tasks = common::echoes(6);
    let driven = drive(pool, style, tasks.clone(), LIVE);
    common::assert_all_ok(&tasks, driven.outcomes.as_deref().expect("no fault, no hang"));
    let expected_callbacks = match style {
        CallStyle::ApplyAsync => (6, 0),
        CallStyle::MapAsync => (1, 0),
        _ => (0, 0),
    };
    assert_eq!((driven.result_callbacks, driven.error_callbacks), expected_callbacks);
    pool.close();
    assert!(matches!(pool.submit(common::echoes(1), Callbacks::default()), Err(PoolError::NotRunning)));
    pool.join_timeout(Some(LIVE)).expect("a clean pool joins");
    assert_eq!(pool.worker_pids(), Vec::<u32>::new(), "every worker exits after close and join");
}

fn task_fails(pool: &dyn Pool, case: Case, style: CallStyle) {
    let (kind, message) = match case {
        Case::TaskError => (FaultKind::Error, "injected task error"),
        _ => (FaultKind::Panic, "panic: injected panic"),
    };
    let faulted =
        Task { tag: 2, work: Workload::Sleep { ms: 50 }, fault: Some(Fault::once(kind, FaultPoint::MidTask)) };
    let tasks = vec![Task::echo(0, "zero"), Task::echo(1, "one"), faulted, Task::echo(3, "three")];
    let driven = drive(pool, style, tasks.clone(), LIVE);
    let outcomes = driven.outcomes.expect("a task error is no hang");
    assert_eq!(outcomes[2], Err(TaskError::Task { message: message.to_string() }));
    let others = [0, 1, 3];
    common::assert_all_ok(&others.map(|i| tasks[i].clone()), &others.map(|i| outcomes[i].clone()));
    let expected_callbacks = match style {
        CallStyle::ApplyAsync => (3, 1),
        CallStyle::MapAsync => (0, 1),
        _ => (0, 0),
    };
    assert_eq!((driven.result_callbacks, driven.error_callbacks), expected_callbacks);
    let again = common::echoes(4);
    let outcomes = pool.map_timeout(again.clone(), Some(LIVE)).expect("the pool stays usable");
    common::assert_all_ok(&again, &outcomes);
    pool.close();
    pool.join_timeout(Some(LIVE)).expect("joins after a task error");
}

/// A hung or stopped worker is no exit: no pool of the family notices.
fn stalls(pool: &dyn Pool, case: Case, style: CallStyle) {
    let driven = drive(pool, style, deadly_batch(case), HUNG);
    assert!(driven.outcomes.is_none(), "{case:?} must look hung, got {:?}", driven.outcomes);
    assert_eq!(driven.error_callbacks, 0);
    assert_eq!(pool.worker_pids().len(), 2, "the stalled worker is alive");
    pool.terminate();
    assert_eq!(pool.worker_pids(), Vec::<u32>::new(), "terminate kills a stalled worker too");
}

/// Naive and seed-polling: the seed's hang, in every call style.
fn hangs(pool: &dyn Pool, case: Case, style: CallStyle, trace: Trace) {
    let culprit = Culprit::new(case, trace);
    let driven = drive(pool, style, deadly_batch(case), HUNG);
    let pid = culprit.pid();
    assert!(driven.outcomes.is_none(), "{case:?} must hang, got {:?}", driven.outcomes);
    assert_eq!(driven.error_callbacks, 0, "error_callback is never called");
    // The worker handler reaps the dead worker and starts a replacement.
    wait_until("the dead worker is replaced", || {
        let live = pool.worker_pids();
        (live.len() == 2 && !live.contains(&pid)).then_some(())
    });
    pool.close();
    match pool.join_timeout(Some(HUNG)) {
        Err(PoolError::TimedOut { pending }) => {
            assert!(pending >= 1, "the lost task is still pending")
        }
        other => panic!("close(); join() must hang, got {other:?}"),
    }
    pool.terminate();
    assert_eq!(pool.worker_pids(), Vec::<u32>::new());
}

/// Polling: every task has an outcome, the lost ones name the dead worker.
fn breaks_loudly(pool: &dyn Pool, case: Case, style: CallStyle, trace: Trace) {
    let culprit = Culprit::new(case, trace);
    let tasks = deadly_batch(case);
    let driven = drive(pool, style, tasks.clone(), LIVE);
    let pid = culprit.pid();
    let outcomes = driven.outcomes.expect("polling must not hang on a dead worker");
    let broken = TaskError::PoolBroken { pid, exit: case.exit().expect("a deadly case") };
    assert_eq!(outcomes[FAULTED as usize], Err(broken.clone()));
    for (task, outcome) in tasks.iter().zip(&outcomes) {
        match outcome {
            Ok(bytes) => assert!(task.check(bytes), "task {} got a wrong result", task.tag),
            Err(e) => assert_eq!(e, &broken, "task {}", task.tag),
        }
    }
    if is_async(style) {
        assert!(driven.error_callbacks >= 1, "error_callback is called");
    }
    match pool.submit(common::echoes(1), Callbacks::default()) {
        Err(PoolError::Broken(e)) => assert_eq!(e, broken),
        Err(other) => panic!("expected Broken, got {other}"),
        Ok(_) => panic!("a broken pool takes no work"),
    }
    pool.join_timeout(Some(LIVE)).expect("a broken pool is terminated");
    assert_eq!(pool.worker_pids(), Vec::<u32>::new());
}

/// One `#[test]` per call style for `$kind` under `$case`.
macro_rules! styles {
    ($kind:ident, $case:ident) => {
        #[test]
        fn map() {
            crate::run_case(pools::PoolKind::$kind, crate::Case::$case, pools::CallStyle::Map)
        }
        #[test]
        fn apply() {
            crate::run_case(pools::PoolKind::$kind, crate::Case::$case, pools::CallStyle::Apply)
        }
        #[test]
        fn apply_async() {
            crate::run_case(pools::PoolKind::$kind, crate::Case::$case, pools::CallStyle::ApplyAsync)
        }
        #[test]
        fn map_async() {
            crate::run_case(pools::PoolKind::$kind, crate::Case::$case, pools::CallStyle::MapAsync)
        }
    };
}

/// A module per case, for pool `$kind`.
macro_rules! cases {
    ($kind:ident: $($module:ident => $case:ident),* $(,)?) => {
        $(mod $module {
            styles!($kind, $case);
        })*
    };
}

/// The (pool × case × call style) matrix: `naive::sigkill_self::map`, ...
macro_rules! matrix {
    ($($module:ident => $kind:ident),* $(,)?) => {
        $(mod $module {
            cases!($kind:
                no_fault => NoFault,
                sigkill_self => SigKillSelf,
                sigkill_outside => SigKillOutside,
                sigsegv => SigSegv,
                abort => Abort,
                exit0 => Exit0,
                exit1 => Exit1,
                sigkill_writing_large_result => SigKillWritingLargeResult,
                hang => Hang,
                sigstop => SigStop,
                task_error => TaskError,
                task_panic => TaskPanic,
            );
        })*
    };
}

matrix!(naive => Naive, seed_polling => SeedPolling, polling => Polling);

// ---- The idle worker's death and the inqueue's read lock ----

/// `read` on this architecture, as `/proc/<pid>/syscall` numbers it.
#[cfg(target_arch = "x86_64")]
const SYS_READ: u64 = 0;
#[cfg(target_arch = "aarch64")]
const SYS_READ: u64 = 63;

/// The fd `pid` is blocked reading, if it is blocked in `read()`.
fn blocked_read_fd(pid: u32) -> Option<u64> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let mut fields = line.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let fd = u64::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
    (nr == SYS_READ).then_some(fd)
}

fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIVE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The lock fds a worker was given: `[rlock_read, rlock_write, wlock_read, wlock_write]`.
fn lock_fds(pid: u32) -> [u64; 4] {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let var = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"POOLCHAOS_LOCK_FDS="))
        .expect("a shared-mode worker has its lock fds");
    let fds: Vec<u64> = std::str::from_utf8(var).expect("utf-8").split(',').map(|f| f.parse().expect("fd")).collect();
    fds.try_into().expect("four lock fds")
}

/// Waits until the idle workers settle: the one holding the rlock sits in
/// `read(0)` (the inqueue), the others in `read()` of the lock pipe.
/// Returns (holder, waiters).
fn idle_lock_holder(pool: &dyn Pool, workers: usize) -> (u32, Vec<u32>) {
    wait_until("the idle workers settle on the inqueue lock", || {
        let pids = pool.worker_pids();
        let fds: Vec<u64> = pids.iter().map(|&pid| blocked_read_fd(pid)).collect::<Option<_>>()?;
        let holders: Vec<u32> = pids.iter().zip(&fds).filter(|&(_, &fd)| fd == 0).map(|(&p, _)| p).collect();
        let waiters: Vec<u32> = pids.iter().zip(&fds).filter(|&(_, &fd)| fd != 0).map(|(&p, _)| p).collect();
        (pids.len() == workers && holders.len() == 1).then(|| (holders[0], waiters))
    })
}

/// Kills `pid` and waits for the worker handler to replace it; returns the
/// pids of the workers now.
fn kill_and_wait_replaced(pool: &dyn Pool, pid: u32, workers: usize) -> Vec<u32> {
    common::kill(pid, Signal::KILL);
    wait_until("the dead worker is replaced", || {
        let pids = pool.worker_pids();
        (pids.len() == workers && !pids.contains(&pid)).then_some(pids)
    })
}

fn first_map_succeeds(pool: &dyn Pool) {
    let tasks = common::echoes(4);
    common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("first map"));
}

/// Kills the idle lock holder of a one-worker pool; the next batch must hang
/// with every task still pending (none was lost: the lock was).
fn idle_lock_holder_killed_hangs(kind: PoolKind, workers: usize) {
    common::clean_run(|| {
        let (config, _trace) = common::config(workers);
        let pool = start(kind, &config);
        first_map_succeeds(&*pool);
        let (holder, _) = idle_lock_holder(&*pool, workers);
        let now = kill_and_wait_replaced(&*pool, holder, workers);
        // Nobody can take the token again: every worker waits on the rlock's pipe.
        for &pid in &now {
            let rlock = lock_fds(pid)[0];
            wait_until("every worker waits for the rlock", || (blocked_read_fd(pid) == Some(rlock)).then_some(()));
        }
        let batch = pool.submit(common::echoes(3), Callbacks::default()).expect("submit");
        assert_eq!(batch.wait(Some(HUNG)), None, "the next batch must hang");
        assert_eq!(batch.job().pending(), 3, "no task was lost: all are still pending");
        pool.terminate();
    });
}

#[test]
fn naive_one_worker_idle_lock_holder_killed_hangs_the_next_map() {
    idle_lock_holder_killed_hangs(PoolKind::Naive, 1);
}

#[test]
fn naive_two_workers_idle_lock_holder_killed_hangs_the_next_map() {
    idle_lock_holder_killed_hangs(PoolKind::Naive, 2);
}

#[test]
fn seed_polling_one_worker_idle_lock_holder_killed_hangs_the_next_map() {
    idle_lock_holder_killed_hangs(PoolKind::SeedPolling, 1);
}

#[test]
fn naive_death_mid_write_tears_the_frame_and_keeps_the_wlock() {
    common::clean_run(|| {
        let (config, mut trace) = common::config(2);
        let pool = start(PoolKind::Naive, &config);
        let torn = Case::SigKillWritingLargeResult.faulted_task();
        let batch = pool.submit(vec![torn], Callbacks::default()).expect("submit");
        let dead = trace.wait_start(FAULTED, LIVE);
        assert_eq!(batch.wait(Some(HUNG)), None);
        // A healthy worker finishes a task, then waits for the wlock for ever.
        let next = pool.submit(vec![Task::echo(9, "after")], Callbacks::default()).expect("submit");
        let pid = trace.wait_start(9, LIVE);
        assert_ne!(pid, dead);
        let wlock = lock_fds(pid)[2];
        wait_until("the writer waits for the wlock", || (blocked_read_fd(pid) == Some(wlock)).then_some(()));
        assert_eq!(next.wait(Some(Duration::from_millis(200))), None);
        pool.terminate();
    });
}

#[test]
fn naive_two_workers_killing_the_lock_waiter_changes_nothing() {
    common::clean_run(|| {
        let (config, _trace) = common::config(2);
        let pool = start(PoolKind::Naive, &config);
        first_map_succeeds(&*pool);
        let (holder, waiters) = idle_lock_holder(&*pool, 2);
        let now = kill_and_wait_replaced(&*pool, waiters[0], 2);
        assert!(now.contains(&holder));
        first_map_succeeds(&*pool);
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("joins");
    });
}

#[test]
fn polling_one_worker_idle_lock_holder_killed_fails_loudly() {
    common::clean_run(|| {
        let (config, _trace) = common::config(1);
        let pool = start(PoolKind::Polling, &config);
        first_map_succeeds(&*pool);
        let (holder, _) = idle_lock_holder(&*pool, 1);
        common::kill(holder, Signal::KILL);
        let broken = TaskError::PoolBroken { pid: holder, exit: Exit::Signal(9) };
        // Either the pool already broke, or the batch is failed when it does.
        match pool.submit(common::echoes(3), Callbacks::default()) {
            Err(PoolError::Broken(e)) => assert_eq!(e, broken),
            Err(other) => panic!("expected Broken, got {other}"),
            Ok(batch) => {
                let outcomes = batch.wait(Some(LIVE)).expect("polling must not hang");
                assert!(outcomes.iter().all(|o| o == &Err(broken.clone())), "{outcomes:?}");
            }
        }
        let next = pool.submit(common::echoes(1), Callbacks::default());
        assert!(matches!(next, Err(PoolError::Broken(e)) if e == broken));
    });
}

// ---- Lifecycle ----

#[test]
fn naive_join_needs_close_and_submit_after_close_is_refused() {
    common::clean_run(|| {
        let (config, _trace) = common::config(2);
        let pool = start(PoolKind::Naive, &config);
        assert!(matches!(pool.join_timeout(Some(HUNG)), Err(PoolError::StillRunning)));
        pool.close();
        assert!(matches!(pool.submit(common::echoes(1), Callbacks::default()), Err(PoolError::NotRunning)));
        pool.join_timeout(Some(LIVE)).expect("an idle closed pool joins");
        pool.terminate();
        pool.join_timeout(Some(LIVE)).expect("join after terminate");
    });
}

#[test]
fn naive_dropped_while_hung_leaves_nothing() {
    common::clean_run(|| {
        let (config, mut trace) = common::config(2);
        let pool = start(PoolKind::Naive, &config);
        let stopped = Task {
            tag: 7,
            work: Workload::Sleep { ms: 10 },
            fault: Some(Fault::once(FaultKind::SigStop, FaultPoint::MidTask)),
        };
        let torn = Case::SigKillWritingLargeResult.faulted_task();
        let batch = pool.submit(vec![stopped, torn], Callbacks::default()).expect("submit");
        trace.wait_start(7, LIVE);
        trace.wait_start(FAULTED, LIVE);
        assert_eq!(batch.wait(Some(HUNG)), None);
        drop(pool);
        assert_eq!(batch.job().pending(), 2, "pending jobs stay pending, as in CPython");
    });
}

#[test]
fn seed_polling_join_after_terminate_sees_the_killed_workers() {
    common::clean_run(|| {
        let (config, _trace) = common::config(2);
        let pool = start(PoolKind::SeedPolling, &config);
        first_map_succeeds(&*pool);
        pool.terminate();
        pool.join_timeout(Some(LIVE)).expect("every listed worker is dead");
    });
}

#[test]
fn polling_terminate_fails_pending_tasks() {
    common::clean_run(|| {
        let (config, mut trace) = common::config(1);
        let pool = start(PoolKind::Polling, &config);
        let task = Task {
            tag: 5,
            work: Workload::Sleep { ms: 400 },
            fault: Some(Fault::once(FaultKind::Hang, FaultPoint::MidTask)),
        };
        let batch = pool.submit(vec![task, Task::echo(6, "x")], Callbacks::default()).expect("submit");
        trace.wait_start(5, LIVE);
        pool.terminate();
        let outcomes = batch.wait(Some(LIVE)).expect("terminate wakes every waiter");
        assert_eq!(outcomes, vec![Err(TaskError::Terminated), Err(TaskError::Terminated)]);
        assert!(matches!(pool.submit(common::echoes(1), Callbacks::default()), Err(PoolError::NotRunning)));
    });
}

#[test]
fn polling_clean_close_is_not_a_breakage() {
    common::clean_run(|| {
        let (config, _trace) = common::config(2);
        let pool = PollingPool::new(&config).expect("start");
        first_map_succeeds(&pool);
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("joins");
        std::thread::sleep(config.poll_interval * 5);
        assert_eq!(pool.broken(), None, "workers told to stop exit as asked");
    });
}
