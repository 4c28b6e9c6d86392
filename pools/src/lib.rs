//! The process pools under test, and the worker runtime they share.
//!
//! Every pool runs tasks in real OS worker processes (the `poolchaos-worker`
//! binary, started by fork + exec) and implements one trait, [`Pool`], whose
//! calls mirror CPython's `multiprocessing.Pool`: `map`, `apply`,
//! `apply_async` and `map_async` with a result and an error callback,
//! `close`, `terminate`, `join`. Every blocking call has a form with a
//! timeout, so a caller can give up on a hung pool.
//!
//! The five pools, from most fragile to most robust:
//!
//! | pool | design | a worker dies mid-task |
//! |---|---|---|
//! | [`naive`] | CPython's: shared inqueue/outqueue behind cross-process locks, a job cache, three handler threads, repopulation | hangs forever |
//! | [`seed_polling`] | naive, joined by sampling the worker list (the seed post's workaround as written) | hangs: the call blocks first, and the handler replaces the dead worker before anyone samples it |
//! | [`polling`] | naive, told of every exit by its reaper | fails every pending task, naming the worker and its signal |
//! | [`per_task`] | one process per task, at most N at once | fails that task only |
//! | [`supervised`] | private channels, windows of tasks tracked by id, pidfds, retries, deadlines | retries it; fails it as `WorkerLost` when out of attempts |
//!
//! A task ([`task::Task`]) is data: a deterministic workload and an optional
//! fault it places on itself, so every result can be checked exactly and a
//! test can place a SIGKILL exactly where it wants one.

mod actor;
pub mod fault;
pub mod job;
pub mod naive;
pub mod outcome;
pub mod per_task;
pub mod polling;
pub mod pool;
pub mod process;
pub mod registry;
pub mod scoreboard;
pub mod seed_polling;
pub mod supervised;
pub mod task;
pub mod wire;
pub mod worker;

mod floor;
mod fork_server;
mod planted;
mod shared_queue;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use actor::ActorPool;
pub use bytes::Bytes;
pub use fault::set_stage;
pub use job::{AsyncResult, Callbacks};
pub use outcome::{Exit, Outcome, TaskError};
pub use pool::{Pool, PoolConfig, PoolError, PoolKind};
pub use process::WorkerProgram;
pub use registry::build;
pub use task::{Fault, FaultKind, FaultPoint, Task, Workload};

/// The caller-side call styles of the seed post, for driving any pool the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStyle {
    Map,
    Apply,
    ApplyAsync,
    MapAsync,
}

impl CallStyle {
    pub const ALL: [CallStyle; 4] = [CallStyle::Map, CallStyle::Apply, CallStyle::ApplyAsync, CallStyle::MapAsync];

    pub fn name(self) -> &'static str {
        match self {
            CallStyle::Map => "map",
            CallStyle::Apply => "apply",
            CallStyle::ApplyAsync => "apply-async",
            CallStyle::MapAsync => "map-async",
        }
    }
}

/// What [`drive`] saw.
#[derive(Debug)]
pub struct Driven {
    /// Every task's outcome, or `None` if the deadline passed first (hung).
    pub outcomes: Option<Vec<Outcome>>,
    /// Calls of the result callbacks and error callbacks (async styles).
    pub result_callbacks: usize,
    pub error_callbacks: usize,
}

/// Runs `tasks` on `pool` in `style`, giving up when `deadline` has passed.
/// `apply` runs the tasks one after another; the async styles submit them all
/// (one `apply_async` per task, or one `map_async`) and wait for the handles.
pub fn drive(pool: &dyn Pool, style: CallStyle, tasks: Vec<Task>, deadline: Duration) -> Result<Driven, PoolError> {
    let until = Instant::now() + deadline;
    let left = || Some(until.saturating_duration_since(Instant::now()));
    let calls = Arc::new(Mutex::new((0usize, 0usize)));
    let callbacks = || {
        let (ok, err) = (calls.clone(), calls.clone());
        Callbacks {
            on_result: Some(Box::new(move |_| ok.lock().unwrap_or_else(|e| e.into_inner()).0 += 1)),
            on_error: Some(Box::new(move |_| err.lock().unwrap_or_else(|e| e.into_inner()).1 += 1)),
        }
    };
    // A call that timed out is hung; a call refused because the pool broke
    // (polling, after a worker died) fails each of its tasks with that error.
    let settle = |n: usize, result: Result<Vec<Outcome>, PoolError>| match result {
        Ok(outcomes) => Ok(Some(outcomes)),
        Err(PoolError::TimedOut { .. }) => Ok(None),
        Err(PoolError::Broken(e)) => Ok(Some(vec![Err(e); n])),
        Err(e) => Err(e),
    };
    let wait = |handle: Result<AsyncResult, PoolError>, n: usize| {
        let outcomes = handle.and_then(|h| h.wait(left()).ok_or(PoolError::TimedOut { pending: h.job().pending() }));
        settle(n, outcomes)
    };
    let outcomes = match style {
        CallStyle::Map => settle(tasks.len(), pool.map_timeout(tasks, left()))?,
        CallStyle::Apply => {
            let mut outcomes = Vec::new();
            for task in tasks {
                match settle(1, pool.map_timeout(vec![task], left()))? {
                    Some(one) => outcomes.extend(one),
                    None => return Ok(Driven { outcomes: None, result_callbacks: 0, error_callbacks: 0 }),
                }
            }
            Some(outcomes)
        }
        CallStyle::ApplyAsync => {
            let n = tasks.len();
            let handles: Vec<_> = tasks.into_iter().map(|t| pool.submit(vec![t], callbacks())).collect();
            let mut outcomes = Vec::with_capacity(n);
            for handle in handles {
                match wait(handle, 1)? {
                    Some(one) => outcomes.extend(one),
                    None => break,
                }
            }
            (outcomes.len() == n).then_some(outcomes)
        }
        CallStyle::MapAsync => {
            let n = tasks.len();
            wait(pool.submit(tasks, callbacks()), n)?
        }
    };
    let (result_callbacks, error_callbacks) = *calls.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Driven { outcomes, result_callbacks, error_callbacks })
}
