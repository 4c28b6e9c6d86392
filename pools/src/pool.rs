//! What every pool is, to its callers: the [`Pool`] trait, its errors, its
//! settings, and the [`PoolKind`] it names itself by. Every pool module
//! builds on this; nothing here knows a pool's insides (the names and
//! [`build`](crate::registry::build) live above the pools, in
//! [`registry`](crate::registry)).

use std::time::Duration;

use bytes::Bytes;

use crate::job::{AsyncResult, Callbacks};
use crate::outcome::{Outcome, TaskError};
use crate::process::WorkerProgram;
use crate::task::Task;

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

    /// Whether every process the pool starts ahead of work (per-task's
    /// spares, supervised's standby) has started. The harness's owner waits
    /// for it after its warm-up, so a limit put on the run from then on
    /// (the `spawn` point's) finds the pool whole, whatever the scheduler did.
    fn is_settled(&self) -> bool {
        true
    }

    /// Runs every task and returns each one's outcome, in order. (CPython's
    /// `map` raises the first error instead; the harness needs them all.)
    fn map(&self, tasks: Vec<Task>) -> Result<Vec<Outcome>, PoolError> {
        self.map_timeout(tasks, None)
    }

    fn map_timeout(&self, tasks: Vec<Task>, timeout: Option<Duration>) -> Result<Vec<Outcome>, PoolError> {
        let result = self.submit(tasks, Callbacks::default())?;
        result.into_outcomes(timeout).map_err(|result| PoolError::TimedOut { pending: result.job().pending() })
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
        on_result: impl FnOnce(Bytes) + Send + 'static,
        on_error: impl FnOnce(TaskError) + Send + 'static,
    ) -> Result<AsyncResult, PoolError>
    where
        Self: Sized,
    {
        let on_result = move |mut results: Vec<Bytes>| on_result(results.pop().unwrap_or_default());
        self.submit(vec![task], Callbacks { on_result: Some(Box::new(on_result)), on_error: Some(Box::new(on_error)) })
    }

    fn map_async(
        &self,
        tasks: Vec<Task>,
        on_result: impl FnOnce(Vec<Bytes>) + Send + 'static,
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
    Planted(PlantedBug),
}

/// A bug planted on purpose in `supervised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// The result of a task that was retried after a death is dropped.
    DropRetriedResult,
    /// The result of a task that was retried after a death is delivered twice.
    DuplicateRetriedResult,
    /// A dead worker's in-flight tasks are forgotten.
    IgnoreDeath,
    /// Per-task deadlines are not enforced.
    NoDeadline,
    /// A task that fails because of a fault (its own error, or `WorkerLost`
    /// after its attempts) takes a healthy task of its job down with it:
    /// the next result of that job to arrive is replaced by a copy of the
    /// error.
    FailBystander,
    /// A task that kills its worker gets one attempt more than `max_attempts`.
    ExtraAttempt,
    /// A worker that dies at start is never replaced: the pool runs one
    /// worker short, and hangs once every worker died so.
    NoStartReplacement,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::DropRetriedResult,
        PlantedBug::DuplicateRetriedResult,
        PlantedBug::IgnoreDeath,
        PlantedBug::NoDeadline,
        PlantedBug::FailBystander,
        PlantedBug::ExtraAttempt,
        PlantedBug::NoStartReplacement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::DropRetriedResult => "supervised-bug-drop-retried",
            PlantedBug::DuplicateRetriedResult => "supervised-bug-duplicate-retried",
            PlantedBug::IgnoreDeath => "supervised-bug-ignore-death",
            PlantedBug::NoDeadline => "supervised-bug-no-deadline",
            PlantedBug::FailBystander => "supervised-bug-fail-bystander",
            PlantedBug::ExtraAttempt => "supervised-bug-extra-attempt",
            PlantedBug::NoStartReplacement => "supervised-bug-no-start-replacement",
        }
    }
}

/// Workers dead as they started, in a row, after which a pool that forks
/// its workers (supervised, per-task) fails its queue.
pub const START_DEATHS: u32 = 5;

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
    /// Most tasks a worker runs before it is replaced: CPython's
    /// `maxtasksperchild` in the naive family (the worker exits, the worker
    /// handler starts another), a recycle in supervised (as at its RSS
    /// ceiling). Per-task runs one task per process whatever this says.
    pub max_tasks_per_worker: Option<u32>,
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
            max_tasks_per_worker: None,
        }
    }
}
