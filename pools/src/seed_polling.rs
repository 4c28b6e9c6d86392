//! The seed post's polling workaround, as written: the naive pool, joined by
//! sampling its worker list instead of calling `join`.
//!
//! The post replaces `pool.join()` with a loop over `pool._pool`: wait until
//! no worker `is_alive()`, then `terminate()` the pool if any `exitcode != 0`.
//! [`SeedPollingPool::join_timeout`] is that loop (sleeping
//! `config.poll_interval` between samples where the post spins, and bounded by
//! the timeout); every other call is the naive pool's.
//!
//! Why it does not work:
//! - In the post the loop comes after `pool.map(...)`, and `map` blocks for
//!   ever when a worker dies mid-task: the loop is never reached. The same
//!   holds for `apply` and for waiting on an `apply_async` / `map_async`
//!   handle; `error_callback` is never called.
//! - With `map_async(...); close()` the loop is reached, but it can never see
//!   the dead worker: the pool's worker handler reaps it and drops it from the
//!   list at once, then starts a replacement. The replacement never exits
//!   (the job is still cached, so the workers are never told to stop), so the
//!   loop waits for ever for every worker to be dead.
//! - It only terminates the pool when every worker is already dead, which in
//!   a live pool happens only after a clean shutdown, or after `terminate`.

use std::time::{Duration, Instant};

use crate::job::{AsyncResult, Callbacks};
use crate::outcome::Exit;
use crate::pool::{Pool, PoolConfig, PoolError, PoolKind};
use crate::shared_queue::{SharedQueue, State};
use crate::task::Task;

/// The naive pool, joined by the seed post's polling loop.
pub struct SeedPollingPool {
    core: SharedQueue,
    interval: Duration,
}

impl SeedPollingPool {
    pub fn new(config: &PoolConfig) -> Result<Self, PoolError> {
        Ok(SeedPollingPool { core: SharedQueue::new(config, None)?, interval: config.poll_interval })
    }

    /// One pass of the post's loop: `Some(any_failed)` once no listed worker
    /// is alive, `None` while one is.
    fn sample(&self) -> Option<bool> {
        let workers = self.core.workers();
        if workers.iter().any(|w| w.is_alive()) {
            return None;
        }
        Some(workers.iter().any(|w| w.exitcode() != Some(Exit::Code(0))))
    }
}

impl Pool for SeedPollingPool {
    fn kind(&self) -> PoolKind {
        PoolKind::SeedPolling
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

    /// The post's loop, in place of `join` (which, like the post's code, it
    /// expects after `close`).
    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        if self.core.state() == State::Run {
            return Err(PoolError::StillRunning);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(any_failed) = self.sample() {
                if any_failed {
                    self.core.terminate();
                }
                return Ok(());
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(PoolError::TimedOut { pending: self.core.pending() });
            }
            std::thread::sleep(left.map_or(self.interval, |left| left.min(self.interval)));
        }
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.core.worker_pids()
    }
}
