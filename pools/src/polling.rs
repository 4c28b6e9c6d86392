//! The polling pool: the seed post's idea (watch the workers' exit codes and
//! terminate the pool on a bad one) made to work.
//!
//! It is the naive pool plus a supervisor thread. The difference from the
//! post's loop is where the supervisor learns of exits: not by sampling the
//! worker list (the worker handler reaps and replaces a dead worker before
//! any sampler sees it), but from the reaper itself. The worker handler tells
//! a channel of every worker it reaps, with whether the pool had asked for
//! that exit. The supervisor wakes every `config.poll_interval` and reads the
//! channel; on any exit the pool did not ask for (a signal, or any exit code,
//! `exit(0)` mid-task included, while the workers were not told to stop) it:
//!
//! 1. marks the pool broken (later submissions fail at once with
//!    [`PoolError::Broken`]);
//! 2. terminates the pool: stops the handler threads (the result handler may
//!    be stuck inside a torn frame; the stop pipe gets it out) and SIGKILLs
//!    and reaps every worker;
//! 3. fails every pending task of every cached job with
//!    [`TaskError::PoolBroken`], naming the dead worker and its signal or
//!    exit code, so every waiter wakes and every `error_callback` runs.
//!
//! This includes an idle worker's death: killed while holding the inqueue's
//! lock, it would leave the pool unable to take any task, so any death
//! breaks the pool.
//!
//! The cost: work in flight on the healthy workers is lost (its results, and
//! results already written but not yet read, are failed with `PoolBroken`),
//! and detection waits for the next poll. A task's own error is just that
//! task's error; the pool stays usable. A hung or stopped worker is not an
//! exit: without a deadline the pool waits for it, like the naive one.
//! `terminate` (and drop) fails pending tasks as [`TaskError::Terminated`],
//! so no waiter is left hanging.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::job::{AsyncResult, Callbacks};
use crate::outcome::TaskError;
use crate::pool::{Pool, PoolConfig, PoolError, PoolKind};
use crate::shared_queue::{Reaped, SharedQueue};
use crate::task::Task;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why the pool broke, once it has.
type Broken = Arc<Mutex<Option<TaskError>>>;

/// The naive pool, broken loudly by the first worker death it did not ask for.
pub struct PollingPool {
    core: Arc<SharedQueue>,
    broken: Broken,
    /// Tells the supervisor to stop.
    stop: Sender<()>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl PollingPool {
    pub fn new(config: &PoolConfig) -> Result<Self, PoolError> {
        let (reaped_tx, reaped) = mpsc::channel();
        let hook = Box::new(move |r: Reaped| {
            let _ = reaped_tx.send(r);
        });
        let core = Arc::new(SharedQueue::new(config, Some(hook))?);
        let broken: Broken = Arc::new(Mutex::new(None));
        let (stop, stopped) = mpsc::channel();
        let supervisor = Supervisor { core: core.clone(), broken: broken.clone(), reaped, stopped };
        let interval = config.poll_interval;
        // On failure `core` is dropped, which terminates it.
        let handle = std::thread::Builder::new()
            .name("polling-supervisor".to_string())
            .spawn(move || supervisor.run(interval))?;
        Ok(PollingPool { core, broken, stop, supervisor: Mutex::new(Some(handle)) })
    }

    /// Why the pool broke, if it has.
    pub fn broken(&self) -> Option<TaskError> {
        lock(&self.broken).clone()
    }
}

/// The supervisor thread's state.
struct Supervisor {
    core: Arc<SharedQueue>,
    broken: Broken,
    reaped: Receiver<Reaped>,
    stopped: Receiver<()>,
}

impl Supervisor {
    /// Every `interval`, looks at what the reaper reported; breaks the pool
    /// on the first exit it did not ask for.
    fn run(self, interval: Duration) {
        loop {
            match self.stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            if let Some(death) = self.reaped.try_iter().find(|r| !r.expected) {
                self.break_pool(death);
                return;
            }
        }
    }

    fn break_pool(&self, death: Reaped) {
        let error = TaskError::PoolBroken { pid: death.pid, exit: death.exit };
        // Broken first: a submission racing with us fails as broken, or its
        // job is in the cache by the time we fail what the cache holds.
        *lock(&self.broken) = Some(error.clone());
        self.core.terminate();
        for job in self.core.take_cache() {
            job.fail_pending(&error);
        }
    }
}

impl Pool for PollingPool {
    fn kind(&self) -> PoolKind {
        PoolKind::Polling
    }

    fn submit(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError> {
        if let Some(error) = self.broken() {
            return Err(PoolError::Broken(error));
        }
        self.core.submit(tasks, callbacks).map_err(|e| match (e, self.broken()) {
            (PoolError::NotRunning, Some(error)) => PoolError::Broken(error),
            (e, _) => e,
        })
    }

    fn close(&self) {
        self.core.close();
    }

    fn terminate(&self) {
        self.core.terminate();
        for job in self.core.take_cache() {
            job.fail_pending(&TaskError::Terminated);
        }
    }

    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        self.core.join_timeout(timeout)
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.core.worker_pids()
    }
}

impl Drop for PollingPool {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(handle) = lock(&self.supervisor).take() {
            let _ = handle.join();
        }
        self.terminate();
    }
}
