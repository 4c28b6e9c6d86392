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
pub mod job;
pub mod naive;
pub mod outcome;
pub mod per_task;
pub mod polling;
pub mod process;
pub mod scoreboard;
pub mod seed_polling;
pub mod supervised;
pub mod task;
pub mod wire;
pub mod worker;

mod floor;
mod fork_server;
mod shared_queue;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use actor::ActorPool;
pub use job::{AsyncResult, Callbacks};
pub use outcome::{Exit, Outcome, TaskError};
pub use process::WorkerProgram;
pub use task::{Fault, FaultKind, FaultPoint, Task, Workload};

/// Why a pool call returned without outcomes.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The wait's timeout passed first: the pool may be hung.
    #[error("timed out with {pending} task(s) pending")]
    TimedOut { pending: usize },
    /// The pool is closed or terminated and takes no more work.
    #[error("pool is not running")]
    NotRunning,
    /// `join` needs `close` or `terminate` first, as in CPython.
    #[error("pool is still running: close or terminate it before joining")]
    StillRunning,
    /// The pool broke earlier (a worker died) and takes no more work.
    #[error("pool is broken: {0}")]
    Broken(TaskError),
    #[error("cannot start worker: {0}")]
    Spawn(#[from] std::io::Error),
}

/// One process pool under test. The harness and the tests see only this.
pub trait Pool: Send + Sync {
    fn kind(&self) -> PoolKind;

    /// Submits a batch of tasks; the callbacks run once, when the last
    /// outcome lands. Every call style is built on this.
    fn submit(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError>;

    /// No more submissions; workers exit once the pending work is done.
    fn close(&self);

    /// Stop now: kill every worker.
    fn terminate(&self);

    /// Waits until the pool has shut down after `close` or `terminate`.
    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError>;

    /// The pids of the workers alive now.
    fn worker_pids(&self) -> Vec<u32>;

    /// Runs every task and returns each one's outcome, in order. (CPython's
    /// `map` raises the first error instead; the harness needs them all.)
    fn map(&self, tasks: Vec<Task>) -> Result<Vec<Outcome>, PoolError> {
        self.map_timeout(tasks, None)
    }

    fn map_timeout(&self, tasks: Vec<Task>, timeout: Option<Duration>) -> Result<Vec<Outcome>, PoolError> {
        let result = self.submit(tasks, Callbacks::default())?;
        result.wait(timeout).ok_or_else(|| PoolError::TimedOut { pending: result.job().pending() })
    }

    fn apply(&self, task: Task) -> Result<Outcome, PoolError> {
        self.apply_timeout(task, None)
    }

    fn apply_timeout(&self, task: Task, timeout: Option<Duration>) -> Result<Outcome, PoolError> {
        let mut outcomes = self.map_timeout(vec![task], timeout)?;
        Ok(outcomes.pop().unwrap_or(Err(TaskError::Terminated)))
    }

    fn apply_async(
        &self,
        task: Task,
        on_result: impl FnOnce(Vec<u8>) + Send + 'static,
        on_error: impl FnOnce(TaskError) + Send + 'static,
    ) -> Result<AsyncResult, PoolError>
    where
        Self: Sized,
    {
        let on_result = move |mut results: Vec<Vec<u8>>| on_result(results.pop().unwrap_or_default());
        self.submit(vec![task], Callbacks { on_result: Some(Box::new(on_result)), on_error: Some(Box::new(on_error)) })
    }

    fn map_async(
        &self,
        tasks: Vec<Task>,
        on_result: impl FnOnce(Vec<Vec<u8>>) + Send + 'static,
        on_error: impl FnOnce(TaskError) + Send + 'static,
    ) -> Result<AsyncResult, PoolError>
    where
        Self: Sized,
    {
        self.submit(tasks, Callbacks { on_result: Some(Box::new(on_result)), on_error: Some(Box::new(on_error)) })
    }

    fn join(&self) -> Result<(), PoolError> {
        self.join_timeout(None)
    }
}

/// The pools under test, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoolKind {
    Naive,
    SeedPolling,
    Polling,
    PerTask,
    Supervised,
    /// `supervised` with a bug planted on purpose, for testing the checker.
    #[doc(hidden)]
    Planted(supervised::PlantedBug),
}

impl PoolKind {
    pub const ALL: [PoolKind; 5] =
        [PoolKind::Naive, PoolKind::SeedPolling, PoolKind::Polling, PoolKind::PerTask, PoolKind::Supervised];

    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Naive => "naive",
            PoolKind::SeedPolling => "seed-polling",
            PoolKind::Polling => "polling",
            PoolKind::PerTask => "per-task",
            PoolKind::Supervised => "supervised",
            PoolKind::Planted(bug) => bug.name(),
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PoolKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let planted = supervised::PlantedBug::ALL.map(PoolKind::Planted);
        PoolKind::ALL.into_iter().chain(planted).find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = PoolKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown pool {s:?} (known: {})", names.join(", "))
        })
    }
}

/// Settings for any pool; each pool reads the ones that apply to it.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub program: WorkerProgram,
    /// Per-task deadline (supervised, per-task): the worker is killed and the
    /// task retried or failed as `TimedOut`.
    pub task_timeout: Option<Duration>,
    /// Attempts per task before it fails (supervised); 1 means no retry.
    pub max_attempts: u32,
    /// How often the polling pools look at what their reaper reported.
    pub poll_interval: Duration,
    /// Recycle a worker between tasks once its RSS passes this (supervised).
    pub rss_ceiling_kib: Option<u64>,
    /// Most tasks in flight on one worker (supervised): a round trip to a
    /// worker is paid once per window, so quick tasks want a big one.
    pub window: usize,
}

impl PoolConfig {
    /// Attempts per task unless told otherwise.
    pub const ATTEMPTS: u32 = 3;

    pub fn new(workers: usize, program: WorkerProgram) -> Self {
        PoolConfig {
            workers,
            program,
            task_timeout: None,
            max_attempts: PoolConfig::ATTEMPTS,
            poll_interval: Duration::from_millis(10),
            rss_ceiling_kib: None,
            window: 1024,
        }
    }
}

/// Starts a pool of `kind`.
pub fn build(kind: PoolKind, config: &PoolConfig) -> Result<Box<dyn Pool>, PoolError> {
    Ok(match kind {
        PoolKind::Naive => Box::new(naive::NaivePool::new(config)?),
        PoolKind::SeedPolling => Box::new(seed_polling::SeedPollingPool::new(config)?),
        PoolKind::Polling => Box::new(polling::PollingPool::new(config)?),
        PoolKind::PerTask => Box::new(per_task::start(config)?),
        PoolKind::Supervised => Box::new(supervised::start(config)?),
        PoolKind::Planted(bug) => Box::new(supervised::start_with(config, Some(bug))?),
    })
}

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
