//! The naive pool: CPython 3.11's `multiprocessing.Pool`, as faithfully as a
//! Rust model can be, so it fails the way the seed post's service failed.
//!
//! Design (all of it in the crate-private `shared_queue` module): a task
//! queue, one inqueue and one outqueue pipe shared by every worker, each
//! guarded by a cross-process lock (a pipe holding one token byte: a holder
//! that dies keeps it), a job cache keyed by job id, and CPython's three
//! handler threads: the task handler moves tasks to the inqueue, the result
//! handler moves results from the outqueue into the cached jobs, and the
//! worker handler reaps dead workers and starts replacements.
//!
//! Why it hangs:
//! - A worker that dies mid-task (SIGKILL from the OOM killer, a segfault, a
//!   silent `exit(0)`) never sends a result, and nothing records which task
//!   it had taken off the shared inqueue. The worker handler notices the
//!   death at once, but only reaps and replaces the worker. The job stays in
//!   the cache for ever: `map` and `apply` block for ever, `error_callback` is
//!   never called, and `close(); join()` waits for ever because the worker
//!   handler keeps running while the cache holds jobs.
//! - The parent holds the worker-side ends of both pipes open (to hand to the
//!   replacements), so a death is never an end-of-file that could wake anyone.
//! - An idle worker sits in its `read()` of the inqueue holding the read
//!   lock. Kill it and the token is gone: its replacement waits for the lock
//!   for ever, and the next batch is never picked up, although no task was
//!   lost. (Killing an idle worker that is waiting for the lock changes
//!   nothing visible.)
//! - A worker killed while writing a result larger than the pipe buffer
//!   leaves a torn frame in the outqueue and takes the write lock with it.
//! - In the parent (CPython 3.11 `pool.py`): a result that fails to decode
//!   kills the result handler thread (`_handle_results` catches only
//!   `OSError`/`EOFError` around `get()`), and so does a callback that
//!   raises (it runs there, in `ApplyResult._set`, before `_event.set()`):
//!   every later result stays in the outqueue and the pool hangs.
//!
//! A task that fails by itself (an error, a panic) is just that task's
//! [`TaskError::Task`](crate::TaskError::Task); the worker and the pool live
//! on. So is a task that fails as the task handler encodes it
//! (`_handle_tasks`: `except Exception as e: cache[job]._set(idx, (False, e))`).
//!
//! `terminate` (and dropping the pool) always works: it stops the handler
//! threads through a stop pipe, then SIGKILLs and reaps every worker. Pending
//! jobs stay pending, as in CPython.

use std::time::Duration;

use crate::job::{AsyncResult, Callbacks};
use crate::pool::{Pool, PoolConfig, PoolError, PoolKind};
use crate::shared_queue::SharedQueue;
use crate::task::Task;

/// CPython's `multiprocessing.Pool`: hangs when a worker dies mid-task.
pub struct NaivePool {
    core: SharedQueue,
}

impl NaivePool {
    /// Starts `config.workers` workers and the three handler threads.
    pub fn new(config: &PoolConfig) -> Result<Self, PoolError> {
        Ok(NaivePool { core: SharedQueue::new(config, None)? })
    }

    /// Tasks of cached jobs still owed an outcome (what `_cache` holds).
    pub fn pending(&self) -> usize {
        self.core.pending()
    }
}

impl Pool for NaivePool {
    fn kind(&self) -> PoolKind {
        PoolKind::Naive
    }

    fn submit(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError> {
        self.core.submit(tasks, callbacks)
    }

    fn close(&self) {
        self.core.close();
    }

    fn terminate(&self) {
        self.core.terminate();
    }

    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        self.core.join_timeout(timeout)
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.core.worker_pids()
    }
}
