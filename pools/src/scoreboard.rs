//! A worker's scoreboard: one shared-memory page where the worker records
//! which task it is running, so its supervisor knows, after a death, exactly
//! which task was on the worker, without a system call per task.
//!
//! The supervisor numbers the tasks it sends a worker 1, 2, 3, ... in order;
//! the worker numbers the frames it reads the same way. Before running task
//! `n` the worker stores the time (only if the pool has deadlines, which
//! need it: `POOLCHAOS_SCOREBOARD_TIMED`) and then `started = n`; after it,
//! the time (the same) and then `finished = n` (release stores; the
//! supervisor loads with acquire). So after a death:
//! - `started > finished`: task `started` was running: it is the culprit;
//! - every other task in flight was either finished (its result may have
//!   died unflushed in the worker's buffer) or never started: innocent.
//!
//! The page is a `memfd`, mapped shared by the supervisor and inherited by
//! the worker through exec (named by `POOLCHAOS_SCOREBOARD_FD`). Once its
//! worker is dead, the supervisor clears the page and gives it to a next
//! worker: a memfd made, mapped, unmapped and freed at every death was a
//! quarter of the supervisor's CPU when 5 % of tasks kill their worker.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::mm::{MapFlags, ProtFlags};

/// Environment variable naming the scoreboard fd in the worker.
pub const SCOREBOARD_FD_ENV: &str = "POOLCHAOS_SCOREBOARD_FD";
/// Set (to `1`) in a worker's environment when its pool enforces deadlines:
/// then it stores each task's start and finish times, else the numbers only.
pub const TIMED_ENV: &str = "POOLCHAOS_SCOREBOARD_TIMED";

const STARTED: usize = 0;
const STARTED_NS: usize = 1;
const FINISHED: usize = 2;
const FINISHED_NS: usize = 3;
const READY: usize = 4;
const SLOTS: usize = 5;
const LEN: usize = 4096;

/// What a scoreboard says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// The number of the last task started (0: none yet), and when.
    pub started: u64,
    pub started_at: Duration,
    /// The number of the last task finished, and when.
    pub finished: u64,
    pub finished_at: Duration,
    /// The worker got past its start (its start token taken, the `init`
    /// and `recycle` faults not fired): one that died before did so as it
    /// started.
    pub ready: bool,
}

impl Score {
    /// The task running now, if one is.
    pub fn running(&self) -> Option<u64> {
        (self.started > self.finished).then_some(self.started)
    }
}

/// A mapped scoreboard page.
pub struct Scoreboard {
    fd: OwnedFd,
    page: NonNull<AtomicU64>,
}

// SAFETY: the page is only accessed through atomics.
unsafe impl Send for Scoreboard {}
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// A fresh, zeroed page (for the supervisor's side).
    pub fn create() -> io::Result<Scoreboard> {
        let fd = rustix::fs::memfd_create("poolchaos-scoreboard", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, LEN as u64)?;
        Self::map(fd)
    }

    /// Maps a page created by [`Scoreboard::create`] (for the worker's side).
    pub fn map(fd: OwnedFd) -> io::Result<Scoreboard> {
        // SAFETY: a fresh shared mapping of a memfd we own, LEN bytes long;
        // it is only ever accessed through the atomics below.
        let ptr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)?
        };
        let page = NonNull::new(ptr.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Scoreboard { fd, page })
    }

    /// Zeroes the page, for a new worker: only once the last one that
    /// used it is dead.
    pub fn clear(&self) {
        for i in 0..SLOTS {
            self.slot(i).store(0, Ordering::Release);
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < SLOTS);
        // SAFETY: i < SLOTS and the page is LEN >= SLOTS * 8 bytes, aligned, mapped while self lives.
        unsafe { &*self.page.as_ptr().add(i) }
    }

    /// The worker has started and takes tasks now.
    pub fn ready(&self) {
        self.slot(READY).store(1, Ordering::Release);
    }

    /// The worker is about to run task `n` (no time: the pool has no deadline).
    pub fn start(&self, n: u64) {
        self.slot(STARTED).store(n, Ordering::Release);
    }

    /// The worker is about to run task `n`, at `at` (CLOCK_MONOTONIC).
    pub fn start_at(&self, n: u64, at: Duration) {
        self.slot(STARTED_NS).store(at.as_nanos() as u64, Ordering::Relaxed);
        self.start(n);
    }

    /// The worker has finished task `n` (no time).
    pub fn finish(&self, n: u64) {
        self.slot(FINISHED).store(n, Ordering::Release);
    }

    /// The worker has finished task `n`, at `at`.
    pub fn finish_at(&self, n: u64, at: Duration) {
        self.slot(FINISHED_NS).store(at.as_nanos() as u64, Ordering::Relaxed);
        self.finish(n);
    }

    pub fn read(&self) -> Score {
        let started = self.slot(STARTED).load(Ordering::Acquire);
        let started_at = Duration::from_nanos(self.slot(STARTED_NS).load(Ordering::Relaxed));
        let finished = self.slot(FINISHED).load(Ordering::Acquire);
        let finished_at = Duration::from_nanos(self.slot(FINISHED_NS).load(Ordering::Relaxed));
        let ready = self.slot(READY).load(Ordering::Acquire) != 0;
        Score { started, started_at, finished, finished_at, ready }
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; no reference outlives self.
        let _ = unsafe { rustix::mm::munmap(self.page.as_ptr().cast(), LEN) };
    }
}

/// CLOCK_MONOTONIC, which every process on the machine shares.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_mapping_sees_the_first_ones_stores() {
        let board = Scoreboard::create().unwrap();
        let other = Scoreboard::map(board.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(other.read().running(), None);
        board.start_at(1, Duration::from_nanos(now_ns()));
        assert_eq!(other.read().running(), Some(1));
        board.finish_at(1, Duration::from_nanos(now_ns()));
        let score = other.read();
        assert_eq!((score.running(), score.finished), (None, 1));
        assert!(score.finished_at >= score.started_at);
        other.ready();
        board.clear();
        assert_eq!(
            other.read(),
            Score { started: 0, started_at: Duration::ZERO, finished: 0, finished_at: Duration::ZERO, ready: false },
            "cleared for a next worker"
        );
    }
}
