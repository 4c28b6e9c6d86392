//! The caller's side of a pool run by one supervisor thread (supervised,
//! per-task): a mailbox the callers post to, and the [`Pool`] front that
//! posts.
//!
//! The supervisor thread owns every worker and every task; callers never
//! touch that state. They post batches and lifecycle requests to the
//! [`Mailbox`] and wake the supervisor through an eventfd it polls beside its
//! workers; outcomes come back through each batch's [`Job`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, eventfd};

use crate::job::{AsyncResult, Callbacks, Guard, Job};
use crate::outcome::Outcome;
use crate::pool::{Pool, PoolError, PoolKind};
use crate::task::Task;
use crate::wire::TaskRef;

/// Where a pool is in its life. Later states only replace earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lifecycle {
    Running,
    /// `close()`: finish the queued work, then stop the workers.
    Closing,
    /// `terminate()`: kill every worker now, fail what is pending.
    Terminating,
}

/// A batch posted by a caller: the job its outcomes land in, and its tasks.
pub(crate) struct Batch {
    pub job: Arc<Job>,
    pub tasks: Vec<Task>,
}

impl Batch {
    pub fn into_entries(self) -> impl Iterator<Item = Entry> {
        let job = self.job;
        self.tasks.into_iter().enumerate().map(move |(index, task)| Entry {
            job: job.clone(),
            index: index as u32,
            task,
            attempts: 0,
        })
    }
}

/// One task of a batch, on its way through a supervisor.
pub(crate) struct Entry {
    pub job: Arc<Job>,
    pub index: u32,
    pub task: Task,
    /// Failures charged to this task so far; also the attempt number its fault sees.
    pub attempts: u32,
}

impl Entry {
    pub fn id(&self) -> TaskRef {
        TaskRef { job: self.job.id(), index: self.index }
    }

    /// Lands the task's one outcome in its job.
    pub fn deliver(self, outcome: Outcome) {
        self.job.set(self.index as usize, outcome);
    }
}

/// Lands every outcome in `landed`, in order, with one lock of a job per
/// run of outcomes for that job; leaves `landed` empty.
pub(crate) fn deliver_all(landed: &mut Vec<(Entry, Outcome)>) {
    let mut outcomes = landed.drain(..).peekable();
    while let Some((first, outcome)) = outcomes.next() {
        let job = first.job;
        // Straight from `landed` into the job's slots, not through a list of the run.
        let rest = std::iter::from_fn(|| outcomes.next_if(|(next, _)| Arc::ptr_eq(&next.job, &job)));
        let rest = rest.map(|(next, outcome)| (next.index as usize, outcome));
        job.set_many(std::iter::once((first.index as usize, outcome)).chain(rest));
    }
}

pub(crate) struct Mailbox {
    state: Mutex<State>,
    finished: Condvar,
    wake: OwnedFd,
}

struct State {
    batches: Vec<Batch>,
    lifecycle: Lifecycle,
    /// Set by the supervisor as it exits.
    finished: bool,
    pids: Vec<u32>,
    /// Every process the supervisor starts ahead of work has started.
    settled: bool,
    next_job: u64,
    /// Every job posted, to count what a timed-out join leaves pending.
    jobs: Vec<Weak<Job>>,
}

impl Mailbox {
    pub fn new() -> std::io::Result<Mailbox> {
        Ok(Mailbox {
            state: Mutex::new(State {
                batches: Vec::new(),
                lifecycle: Lifecycle::Running,
                finished: false,
                pids: Vec::new(),
                settled: false,
                next_job: 0,
                jobs: Vec::new(),
            }),
            finished: Condvar::new(),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        // Cannot fail short of a counter overflow, which a reader clears.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    // The callers' side.

    fn post(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError> {
        let mut state = self.lock();
        if state.lifecycle != Lifecycle::Running {
            return Err(PoolError::NotRunning);
        }
        state.next_job += 1;
        let job = Arc::new(Job::new(state.next_job, tasks.len(), callbacks, Guard::Caught));
        state.jobs.retain(|j| j.upgrade().is_some_and(|j| !j.is_ready()));
        state.jobs.push(Arc::downgrade(&job));
        if !tasks.is_empty() {
            state.batches.push(Batch { job: job.clone(), tasks });
            drop(state);
            self.wake();
        }
        Ok(AsyncResult::new(job))
    }

    fn advance(&self, to: Lifecycle) {
        let mut state = self.lock();
        state.lifecycle = state.lifecycle.max(to);
        drop(state);
        self.wake();
    }

    fn wait_finished(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        while !state.finished {
            state = match deadline {
                None => self.finished.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.finished.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        true
    }

    // The supervisor's side.

    /// The fd that turns readable when there is mail.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Takes the posted batches and the current lifecycle; clears the wake-up.
    pub fn take(&self) -> (Vec<Batch>, Lifecycle) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut counter);
        let mut state = self.lock();
        (std::mem::take(&mut state.batches), state.lifecycle)
    }

    pub fn set_pids(&self, pids: Vec<u32>) {
        self.lock().pids = pids;
    }

    pub fn set_settled(&self, settled: bool) {
        self.lock().settled = settled;
    }

    /// Called once by the supervisor as it exits; the returned batches (posted
    /// after its last look) are for it to fail.
    pub fn finish(&self) -> Vec<Batch> {
        let mut state = self.lock();
        state.finished = true;
        state.pids.clear();
        let late = std::mem::take(&mut state.batches);
        drop(state);
        self.finished.notify_all();
        late
    }
}

/// A pool driven by one supervisor thread through a [`Mailbox`].
pub struct ActorPool {
    kind: PoolKind,
    mailbox: Arc<Mailbox>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ActorPool {
    /// Starts the supervisor thread `run` over a fresh mailbox.
    pub(crate) fn start(
        kind: PoolKind,
        run: impl FnOnce(Arc<Mailbox>) + Send + 'static,
    ) -> Result<ActorPool, PoolError> {
        let mailbox = Arc::new(Mailbox::new()?);
        let theirs = mailbox.clone();
        let thread = std::thread::Builder::new().name(format!("{kind}-supervisor")).spawn(move || run(theirs))?;
        Ok(ActorPool { kind, mailbox, thread: Mutex::new(Some(thread)) })
    }
}

impl Pool for ActorPool {
    fn kind(&self) -> PoolKind {
        self.kind
    }

    fn submit(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError> {
        self.mailbox.post(tasks, callbacks)
    }

    fn close(&self) {
        self.mailbox.advance(Lifecycle::Closing);
    }

    fn terminate(&self) {
        self.mailbox.advance(Lifecycle::Terminating);
    }

    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        if self.mailbox.lock().lifecycle == Lifecycle::Running {
            return Err(PoolError::StillRunning);
        }
        if !self.mailbox.wait_finished(timeout) {
            let pending = self.mailbox.lock().jobs.iter().filter_map(Weak::upgrade).map(|j| j.pending()).sum();
            return Err(PoolError::TimedOut { pending });
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        Ok(())
    }

    fn worker_pids(&self) -> Vec<u32> {
        self.mailbox.lock().pids.clone()
    }

    fn is_settled(&self) -> bool {
        self.mailbox.lock().settled
    }
}

impl Drop for ActorPool {
    fn drop(&mut self) {
        self.terminate();
        // Terminating kills and reaps every worker; the supervisor then exits.
        let _ = self.join_timeout(None);
    }
}
