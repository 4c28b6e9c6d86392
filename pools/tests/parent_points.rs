//! The fault points on the parent's side of a pool and in its lifecycle,
//! in all five pools: `encode` (the pool encodes a task), `decode-result`
//! (it decodes a result), `callback` (a job's callback panics), and `close`,
//! `terminate`, `join` (the worker running a task dies while the caller is
//! in that call). Each point is a table over the pools with every task's
//! exact outcome; a pool that must hang is watched hung for a bounded time,
//! then terminated and joined.
//!
//! Only the kinds a test process survives are placed in the parent here
//! (`error`, `panic`); the deadly ones kill the pool's owner, and are run
//! through the real runner (`harness/tests/runner.rs`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{HUNG, LIVE, Trace, clean_run, config};
use pools::{
    AsyncResult, CallStyle, Callbacks, Exit, Fault, FaultKind, FaultPoint, Outcome, Pool, PoolError, PoolKind, Task,
    TaskError, Workload,
};

const POOLS: [PoolKind; 5] =
    [PoolKind::Naive, PoolKind::SeedPolling, PoolKind::Polling, PoolKind::PerTask, PoolKind::Supervised];

/// The tag of the task that carries the fault.
const FAULTED: u64 = 1;

fn start(kind: PoolKind, workers: usize) -> (Box<dyn Pool>, Trace) {
    let (config, trace) = config(workers);
    (pools::build(kind, &config).expect("start pool"), trace)
}

/// Four echo tasks; task 1 carries `fault`.
fn batch(fault: Fault) -> Vec<Task> {
    (0..4u64)
        .map(|i| {
            let task = Task::echo(i, format!("task {i}"));
            if i == FAULTED { task.with_fault(fault) } else { task }
        })
        .collect()
}

/// Every task's outcome: its result, or `error` for the faulted one.
fn expected(tasks: &[Task], error: TaskError) -> Vec<Outcome> {
    tasks.iter().map(|t| if t.tag == FAULTED { Err(error.clone()) } else { Ok(t.expected_output().into()) }).collect()
}

fn task_error(message: &str) -> TaskError {
    TaskError::Task { message: message.to_string() }
}

/// Closes and joins a pool that must end by itself.
fn close_and_join(pool: &dyn Pool) {
    pool.close();
    pool.join_timeout(Some(LIVE)).expect("the pool joins");
}

/// Asserts `close(); join()` hangs (a bounded wait), then terminates and joins.
fn assert_join_hangs_then_terminate(pool: &dyn Pool, what: &str) {
    pool.close();
    let joined = pool.join_timeout(Some(HUNG));
    assert!(matches!(joined, Err(PoolError::TimedOut { .. })), "{what}: join must hang, got {joined:?}");
    terminate(pool);
}

fn terminate(pool: &dyn Pool) {
    pool.terminate();
    pool.join_timeout(Some(LIVE)).expect("a terminated pool joins");
}

/// One job per task (`apply_async`), each with callbacks that count their
/// calls; the callback of the faulted task's job does what `callback` says.
fn apply_each(
    pool: &dyn Pool,
    tasks: &[Task],
    calls: &Arc<AtomicUsize>,
    callback: impl Fn() + Clone + Send + 'static,
) -> Vec<AsyncResult> {
    tasks
        .iter()
        .map(|task| {
            let (ok, err) = (calls.clone(), calls.clone());
            let (on_ok, on_err) = (callback.clone(), callback.clone());
            let faulted = task.tag == FAULTED;
            let callbacks = Callbacks {
                on_result: Some(Box::new(move |_| {
                    ok.fetch_add(1, Ordering::SeqCst);
                    if faulted {
                        on_ok();
                    }
                })),
                on_error: Some(Box::new(move |_| {
                    err.fetch_add(1, Ordering::SeqCst);
                    if faulted {
                        on_err();
                    }
                })),
            };
            pool.submit(vec![task.clone()], callbacks).expect("submit")
        })
        .collect()
}

fn one(handle: &AsyncResult, timeout: Duration) -> Option<Outcome> {
    handle.wait(Some(timeout)).map(|mut outcomes| outcomes.remove(0))
}

/// On one worker, the result handler died at task 1: task 0's job settled,
/// task 1's and the later ones never do (watched for a bounded time).
fn assert_only_task_0_delivered(kind: PoolKind, tasks: &[Task], handles: &[AsyncResult]) {
    assert_eq!(one(&handles[0], LIVE), Some(Ok(tasks[0].expected_output().into())), "{kind}: task 0");
    assert_eq!(one(&handles[1], HUNG), None, "{kind}: task 1 must hang");
    for (i, handle) in handles.iter().enumerate().skip(2) {
        assert_eq!(one(handle, Duration::ZERO), None, "{kind}: task {i} must hang");
    }
}

// ------------------------------------------------------------------ encode

/// `encode`: the pool's own thread fires the fault as it encodes the task
/// (naive family: the task handler; per-task, supervised: the supervisor).
/// `error` and `panic` fail that task alone with what it raised, as
/// CPython's `_handle_tasks` sets the job's slot to the pickling error; every
/// pool, every call style, and the pool lives on.
#[test]
fn encode_error_fails_the_task_alone_in_every_pool() {
    for kind in POOLS {
        for (fault_kind, message) in [
            (FaultKind::Error, "encoding the task: injected task error"),
            (FaultKind::Panic, "encoding the task: panic: injected panic"),
        ] {
            for style in [CallStyle::Map, CallStyle::ApplyAsync, CallStyle::MapAsync] {
                clean_run(|| {
                    let (pool, _trace) = start(kind, 2);
                    let tasks = batch(Fault::once(fault_kind, FaultPoint::Encode));
                    let driven = pools::drive(&*pool, style, tasks.clone(), LIVE).expect("drive");
                    let what = format!("{kind} {fault_kind:?} {}", style.name());
                    assert_eq!(driven.outcomes, Some(expected(&tasks, task_error(message))), "{what}");
                    // The pool lives on: the same task again (attempt 0 again: it fires again), and a clean one.
                    let again = pools::drive(&*pool, CallStyle::Map, tasks.clone(), LIVE).expect("drive");
                    assert_eq!(again.outcomes, Some(expected(&tasks, task_error(message))), "{what}, again");
                    close_and_join(&*pool);
                });
            }
        }
    }
}

// ----------------------------------------------------------- decode-result

/// `decode-result`: the worker sends its result armed, and the parent fires
/// the fault as it decodes it. On one worker, results come in task order.
///
/// - naive, seed-polling, polling: CPython's `_handle_results` catches only
///   `OSError`/`EOFError` around `get()`: the unpickling error kills the
///   result handler thread. Task 0's result came before: it is delivered;
///   task 1's and every later one never are, and `close(); join()` hangs
///   (the worker handler keeps the pool while jobs are cached). No worker
///   died, so polling sees nothing either.
/// - per-task, supervised: task 1 fails with what its decoding raised; the
///   rest complete.
#[test]
fn decode_result_error_hangs_the_naive_family_and_fails_the_task_alone_in_ours() {
    for kind in POOLS {
        clean_run(|| {
            let (pool, _trace) = start(kind, 1);
            let tasks = batch(Fault::once(FaultKind::Error, FaultPoint::DecodeResult));
            let calls = Arc::new(AtomicUsize::new(0));
            let handles = apply_each(&*pool, &tasks, &calls, || {});
            match kind {
                PoolKind::Naive | PoolKind::SeedPolling | PoolKind::Polling => {
                    assert_only_task_0_delivered(kind, &tasks, &handles);
                    assert_join_hangs_then_terminate(&*pool, &kind.to_string());
                }
                PoolKind::PerTask | PoolKind::Supervised => {
                    let outcomes: Vec<Outcome> = handles.iter().map(|h| one(h, LIVE).expect("no hang")).collect();
                    let error = task_error("decoding the result: injected task error");
                    assert_eq!(outcomes, expected(&tasks, error), "{kind}");
                    close_and_join(&*pool);
                    assert_eq!(calls.load(Ordering::SeqCst), 4, "{kind}: one callback per task");
                }
                PoolKind::Planted(_) => unreachable!(),
            }
        });
    }
}

// ---------------------------------------------------------------- callback

/// `callback`: the faulted task's callback panics (as the owner's does for
/// `error`: it fires the fault, then panics with what it raised).
///
/// - naive family: the callback runs on the result handler thread,
///   unguarded, as in CPython's `ApplyResult._set` (`self._callback(...)`
///   before `self._event.set()`): the panic kills that thread, so task 1's
///   job never settles though its outcome landed, tasks 2 and 3 are never
///   delivered, and `close(); join()` hangs.
/// - per-task, supervised: the supervisor catches it, keeps it on the job
///   and goes on: every task completes.
#[test]
fn a_panicking_callback_hangs_the_naive_family_and_is_caught_by_ours() {
    for kind in POOLS {
        clean_run(|| {
            let (pool, _trace) = start(kind, 1);
            let tasks = batch(Fault::once(FaultKind::Error, FaultPoint::Callback));
            let calls = Arc::new(AtomicUsize::new(0));
            let raise = || {
                if let Err(message) = pools::fault::fire_fault(FaultKind::Error) {
                    panic!("callback: {message}");
                }
            };
            let handles = apply_each(&*pool, &tasks, &calls, raise);
            match kind {
                PoolKind::Naive | PoolKind::SeedPolling | PoolKind::Polling => {
                    assert_only_task_0_delivered(kind, &tasks, &handles);
                    assert_eq!(handles[1].job().pending(), 0, "{kind}: task 1's outcome landed, its job never settled");
                    assert_eq!(calls.load(Ordering::SeqCst), 2, "{kind}: callbacks of tasks 0 and 1 only");
                    assert_join_hangs_then_terminate(&*pool, &kind.to_string());
                }
                PoolKind::PerTask | PoolKind::Supervised => {
                    let outcomes: Vec<Outcome> = handles.iter().map(|h| one(h, LIVE).expect("no hang")).collect();
                    assert_eq!(
                        outcomes,
                        tasks.iter().map(|t| Ok(t.expected_output().into())).collect::<Vec<Outcome>>()
                    );
                    let panics: Vec<Option<String>> = handles.iter().map(|h| h.job().callback_panic()).collect();
                    let raised = Some("panic: callback: injected task error".to_string());
                    assert_eq!(panics, [None, raised, None, None], "{kind}");
                    close_and_join(&*pool);
                    assert_eq!(calls.load(Ordering::SeqCst), 4, "{kind}: every callback ran");
                }
                PoolKind::Planted(_) => unreachable!(),
            }
        });
    }
}

// ------------------------------------------------ close, terminate, join

/// Task 0, a sleep that dies at `point`.
fn faulted(point: FaultPoint, kind: FaultKind) -> Task {
    Task { tag: 0, work: Workload::Sleep { ms: 600 }, fault: Some(Fault::once(kind, point)) }
}

/// What the faulted task (task 0, on its own worker) got once the pool was
/// ended at its stage: `None` when it never settles.
fn end_at_stage(kind: PoolKind, point: FaultPoint, fault_kind: FaultKind) -> (Option<Outcome>, u32) {
    // The stage is this thread's name: the next case must not see this one's.
    let name = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
    let name = std::ffi::CString::new(name.trim_end()).expect("a name");
    let ended = ended_at_stage(kind, point, fault_kind);
    rustix::thread::set_name(&name).expect("rename");
    ended
}

fn ended_at_stage(kind: PoolKind, point: FaultPoint, fault_kind: FaultKind) -> (Option<Outcome>, u32) {
    let (mut config, mut trace) = config(2);
    // One task in flight per worker (supervised): the healthy tasks must not
    // queue behind the one that waits for its stage.
    config.window = 1;
    let pool = pools::build(kind, &config).expect("start pool");
    let mut tasks = vec![faulted(point, fault_kind)];
    tasks.extend((1..4u64).map(|i| Task { tag: i, work: Workload::Sleep { ms: 50 }, fault: None }));
    let calls = Arc::new(AtomicUsize::new(0));
    let handles = apply_each(&*pool, &tasks, &calls, || {});
    // The healthy tasks first, so that what follows is the faulted one's alone.
    for (task, handle) in tasks.iter().zip(&handles).skip(1) {
        assert_eq!(one(handle, LIVE), Some(Ok(task.expected_output().into())), "{kind}: task {}", task.tag);
    }
    let pid = trace.wait_start(0, LIVE);
    let hangs = matches!(kind, PoolKind::Naive | PoolKind::SeedPolling) && fault_kind.kills_worker();
    match point {
        FaultPoint::Terminate => {
            pools::set_stage(point);
            terminate(&*pool);
        }
        _ => {
            if point == FaultPoint::Close {
                pools::set_stage(point);
            }
            pool.close();
            pools::set_stage(point);
            if hangs {
                let joined = pool.join_timeout(Some(HUNG));
                assert!(matches!(joined, Err(PoolError::TimedOut { .. })), "{kind}: join must hang: {joined:?}");
                let outcome = one(&handles[0], Duration::ZERO);
                terminate(&*pool);
                return (outcome, pid);
            }
            pool.join_timeout(Some(LIVE)).expect("the pool joins");
        }
    }
    // Polling's `join` may return a moment before its supervisor has
    // failed the pending tasks; a CPython-like pool never settles them
    // after `terminate` (watched for a bounded time).
    let wait = if matches!(kind, PoolKind::Naive | PoolKind::SeedPolling) { HUNG } else { LIVE };
    (one(&handles[0], wait), pid)
}

/// `close`, `join`: the worker running task 0 kills itself (SIGKILL) once
/// the caller is in `close()` (or `join()`), after the healthy tasks are done.
///
/// - naive, seed-polling: the task is lost and `join` waits for it for ever
///   (CPython's worker handler keeps the pool while the job is cached).
/// - polling: breaks on the death: task 0 fails `PoolBroken` naming it.
/// - per-task: task 0 fails `WorkerLost`.
/// - supervised: task 0 is retried on another worker and completes.
#[test]
fn a_worker_dying_at_close_or_join() {
    for point in [FaultPoint::Close, FaultPoint::Join] {
        for kind in POOLS {
            clean_run(|| {
                let (outcome, pid) = end_at_stage(kind, point, FaultKind::SigKill);
                let killed = Exit::Signal(libc::SIGKILL);
                let want = match kind {
                    PoolKind::Naive | PoolKind::SeedPolling => None,
                    PoolKind::Polling => Some(Err(TaskError::PoolBroken { pid, exit: killed })),
                    PoolKind::PerTask => Some(Err(TaskError::WorkerLost { pid, exit: killed, attempts: 1 })),
                    PoolKind::Supervised => Some(Ok(faulted(point, FaultKind::SigKill).expected_output().into())),
                    PoolKind::Planted(_) => unreachable!(),
                };
                assert_eq!(outcome, want, "{kind} at {point:?}");
            });
        }
    }
}

/// `terminate`: the worker running task 0 dies as the caller terminates the
/// pool. naive, seed-polling: CPython's `terminate` leaves the pending job
/// pending for ever (its caller must not wait for it); polling, per-task,
/// supervised: it fails `Terminated`.
#[test]
fn a_worker_dying_at_terminate() {
    for kind in POOLS {
        clean_run(|| {
            let (outcome, _pid) = end_at_stage(kind, FaultPoint::Terminate, FaultKind::SigKill);
            let want = match kind {
                PoolKind::Naive | PoolKind::SeedPolling => None,
                _ => Some(Err(TaskError::Terminated)),
            };
            assert_eq!(outcome, want, "{kind}");
        });
    }
}

/// An `error` at a lifecycle stage: the task fails with its own error once
/// the caller is in that call, in every pool; `close(); join()` returns.
#[test]
fn a_task_raising_at_close_or_join_fails_alone_in_every_pool() {
    for point in [FaultPoint::Close, FaultPoint::Join] {
        for kind in POOLS {
            clean_run(|| {
                let (outcome, _pid) = end_at_stage(kind, point, FaultKind::Error);
                assert_eq!(outcome, Some(Err(task_error("injected task error"))), "{kind} at {point:?}");
            });
        }
    }
}
