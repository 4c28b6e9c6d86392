//! `supervised`: ours. Persistent workers, each with a private pair of
//! pipes, driven by one supervisor thread that owns every worker and every
//! task, so a death is noticed at once and costs no task.
//!
//! ```text
//!  callers                     supervisor thread                         workers
//!  ───────                     ─────────────────                         ───────
//!  submit ──Mailbox + eventfd──▶ poll(eventfd, per worker: results pipe,
//!                                      pidfd, task pipe when writable)
//!                               queue ──window of frames, one write──▶ stdin ─▶ worker 1
//!  Job::set ◀── match by id ◀── results, many frames a read ◀─────────── stdout ◀─┘
//!                               pidfd readable / EOF ⇒ reap, blame, respawn
//! ```
//!
//! - **Speed.** Each worker has a window of tasks in flight (64 until their
//!   cost is known, then as many as fill 2 ms of work, up to
//!   `PoolConfig::window`: 1024 by default, a handful for slow tasks so the
//!   tail stays short), sent in one write and answered in batches, so a
//!   round trip (two wake-ups) is paid per window, not per task. Every task
//!   is still tracked alone: the worker runs them in order and each result
//!   names its task.
//! - **Death.** A worker's death shows as EOF on its results pipe and as its
//!   pidfd turning readable; no poll interval. Its in-flight tasks are not
//!   lost, and no bystander is blamed: the worker's [scoreboard] says which
//!   task it was running. That one is charged an attempt and retried, or
//!   failed as `WorkerLost` when out of attempts (so a poison task fails
//!   after `max_attempts`); the others, finished (their results died in the
//!   worker's buffer) or never started, go back to the queue uncharged.
//! - **Deadlines.** The scoreboard says when the running task started (or,
//!   between tasks, when the last one finished). Past `task_timeout` the
//!   worker is SIGKILLed (a stopped worker too) and the running task handled
//!   as a death, failing as `TimedOut` when out of attempts; a worker stopped
//!   between tasks is killed too, blaming no task.
//! - **Memory.** With `rss_ceiling_kib`, a worker over the ceiling after a
//!   task says `Recycling` and exits; its unstarted tasks go back to the
//!   queue uncharged and a fresh worker takes its place.
//!
//! [scoreboard]: crate::scoreboard
//! - **Spawning.** Workers are forked by the pool's
//!   [fork server](crate::fork_server) (started once by this thread with
//!   fork + exec), which reaps them and reports how each ended: a respawn
//!   after a death costs a fork of a small process, and this process never
//!   forks itself (a fork of a big multi-threaded process stalls its other
//!   threads, callers included, while the page tables are copied).
//! - **Owner death.** The fork server dies with this thread
//!   (`PR_SET_PDEATHSIG(SIGKILL)`), each worker with the fork server (the
//!   same), and a worker exits on EOF of its task pipe.
//! - **Exactly once.** A task is in exactly one place: the queue, the
//!   suspects, or one worker's window; it leaves a window only through its
//!   result or its worker's death.
//!
//! Known cost: a worker flushes results when its input runs dry, every
//! 32 KiB, after any task that took 200 µs or more, or 200 µs after the
//! oldest unflushed one, checked between tasks; so a quick result queued
//! just before the first long task of a run waits for that task.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::actor::{ActorPool, Entry, Lifecycle, Mailbox};
use crate::fork_server::{ForkServer, Forked};
use crate::outcome::{Exit, Outcome, TaskError};
use crate::process::{self, RSS_CEILING_ENV, WorkerProgram};
use crate::scoreboard::{SCOREBOARD_FD_ENV, Scoreboard, now_ns};
use crate::wire::{self, FromWorker, ToWorkerRef};
use crate::{PoolConfig, PoolError, PoolKind};

/// How much work (in time) a worker's window holds once task costs are known.
const WINDOW_WORK: Duration = Duration::from_millis(2);
/// A worker's window while its tasks' cost is still unknown.
const FIRST_WINDOW: usize = 64;
/// How long a worker whose results pipe closed gets to finish dying.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long a closing pool waits for a worker to exit on EOF.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed spawn before the next try.
const SPAWN_BACKOFF: Duration = Duration::from_millis(100);

/// Starts a supervised pool. Fails if the first workers cannot be spawned.
pub fn start(config: &PoolConfig) -> Result<ActorPool, PoolError> {
    start_with(config, None)
}

/// Bugs planted on purpose, to prove that the harness's checker catches
/// them. Not for use: `poolchaos` runs them only when asked by name
/// (`supervised-bug-...`), in its own tests and campaigns.
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
    /// Each task that fails by a fault (its own error, or `WorkerLost` out of
    /// attempts) takes a healthy task of its job down with it: the next
    /// result of that job is replaced by a copy of the error.
    FailBystander,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 5] = [
        PlantedBug::DropRetriedResult,
        PlantedBug::DuplicateRetriedResult,
        PlantedBug::IgnoreDeath,
        PlantedBug::NoDeadline,
        PlantedBug::FailBystander,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::DropRetriedResult => "supervised-bug-drop-retried",
            PlantedBug::DuplicateRetriedResult => "supervised-bug-duplicate-retried",
            PlantedBug::IgnoreDeath => "supervised-bug-ignore-death",
            PlantedBug::NoDeadline => "supervised-bug-no-deadline",
            PlantedBug::FailBystander => "supervised-bug-fail-bystander",
        }
    }
}

/// A supervised pool, with a planted bug if `bug` says so.
pub fn start_with(config: &PoolConfig, bug: Option<PlantedBug>) -> Result<ActorPool, PoolError> {
    let mut settings = Settings::from(config);
    settings.bug = bug;
    let (ready_tx, ready_rx) = mpsc::channel();
    let pool = ActorPool::start(bug.map_or(PoolKind::Supervised, PoolKind::Planted), move |mailbox| {
        let mut supervisor = Supervisor::new(settings, mailbox);
        let ready = supervisor.fill_workers();
        let failed = ready.is_err();
        let _ = ready_tx.send(ready);
        if !failed {
            supervisor.run();
        }
        supervisor.shutdown();
    })?;
    ready_rx.recv().map_err(|_| PoolError::Spawn(io::Error::other("supervisor thread died")))??;
    Ok(pool)
}

struct Settings {
    workers: usize,
    program: WorkerProgram,
    task_timeout: Option<Duration>,
    max_attempts: u32,
    rss_ceiling_kib: Option<u64>,
    window: usize,
    bug: Option<PlantedBug>,
    /// `FailBystander`'s errors owed to a healthy task of their job.
    owed: Owed,
}

/// The errors `PlantedBug::FailBystander` still owes, by job id.
#[derive(Clone, Default)]
struct Owed(Arc<std::sync::Mutex<Vec<(u64, TaskError)>>>);

impl Owed {
    /// A fault failed a task of `job`: a healthy one of the same job will pay too.
    fn owe(&self, job: u64, error: &TaskError) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((job, error.clone()));
    }

    /// A result about to land: a healthy one of a job that is owed an error gets it instead.
    fn swap(&self, job: u64, outcome: Outcome) -> Outcome {
        let Err(error) = &outcome else {
            let mut owed = self.0.lock().unwrap_or_else(|e| e.into_inner());
            return match owed.iter().position(|(j, _)| *j == job) {
                Some(at) => Err(owed.remove(at).1),
                None => outcome,
            };
        };
        self.owe(job, error);
        outcome
    }
}

impl From<&PoolConfig> for Settings {
    fn from(c: &PoolConfig) -> Self {
        Settings {
            workers: c.workers.max(1),
            program: c.program.clone(),
            task_timeout: c.task_timeout,
            max_attempts: c.max_attempts.max(1),
            rss_ceiling_kib: c.rss_ceiling_kib,
            window: c.window.max(1),
            bug: None,
            owed: Owed::default(),
        }
    }
}

struct InFlight {
    entry: Entry,
    /// Its number among the tasks sent to this worker (see the scoreboard).
    seq: u64,
    sent_ns: u64,
}

/// Why a worker takes no more tasks.
#[derive(Debug, Clone, Copy)]
enum Retiring {
    /// It said it is over its memory ceiling and will exit.
    Recycling,
    /// We killed it at a deadline.
    TimedOut { after: Duration },
}

struct Worker {
    bug: Option<PlantedBug>,
    owed: Owed,
    /// Forked by the pool's fork server: its exit status comes from there.
    child: Forked,
    board: Scoreboard,
    /// The task pipe; `None` once closed for a graceful shutdown.
    to: Option<OwnedFd>,
    from: OwnedFd,
    sent: u64,
    inflight: VecDeque<InFlight>,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    last_result_ns: u64,
    /// Moving average of one task's service time, in ns (0 = unknown yet).
    service_ns: f64,
    retiring: Option<Retiring>,
    /// The results pipe closed, or something on it was not ours: reap it.
    gone: bool,
}

impl Worker {
    fn spawn(s: &Settings, server: &mut ForkServer) -> io::Result<Worker> {
        let (task_r, task_w) = process::pipe()?;
        let (result_r, result_w) = process::pipe()?;
        let board = Scoreboard::create()?;
        let child = server.spawn(task_r, result_w, &[(board.fd(), SCOREBOARD_FD_ENV)])?;
        process::set_nonblocking(task_w.as_fd())?;
        process::set_nonblocking(result_r.as_fd())?;
        Ok(Worker {
            bug: s.bug,
            owed: s.owed.clone(),
            child,
            board,
            to: Some(task_w),
            from: result_r,
            sent: 0,
            inflight: VecDeque::new(),
            out: Vec::new(),
            written: 0,
            inbuf: Vec::new(),
            last_result_ns: now_ns(),
            service_ns: 0.0,
            retiring: None,
            gone: false,
        })
    }

    fn accepts_work(&self) -> bool {
        self.to.is_some() && self.retiring.is_none() && !self.gone
    }

    /// How many tasks it may hold: enough to cover a round trip, few enough
    /// that the slowest worker does not hold the batch's tail.
    fn window(&self, max: usize) -> usize {
        if self.service_ns <= 0.0 {
            return max.min(FIRST_WINDOW);
        }
        let fits = (WINDOW_WORK.as_nanos() as f64 / self.service_ns).ceil() as usize;
        fits.clamp(2.min(max), max)
    }

    fn send(&mut self, entry: Entry, now_ns: u64) {
        let id = entry.id();
        crate::worker::encode_frame(
            &ToWorkerRef::Run { id, attempt: entry.attempts, task: &entry.task },
            &mut self.out,
        );
        self.sent += 1;
        self.inflight.push_back(InFlight { entry, seq: self.sent, sent_ns: now_ns });
    }

    /// Writes what it can of the pending frames; never blocks.
    fn write_pending(&mut self) {
        let Some(to) = &self.to else { return };
        while self.written < self.out.len() {
            match rustix::io::write(to, &self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => continue,
                // EPIPE: it is dying; its pidfd will say so.
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
        self.out.clear();
        self.written = 0;
    }

    fn wants_write(&self) -> bool {
        self.to.is_some() && self.written < self.out.len()
    }

    /// When (CLOCK_MONOTONIC ns) it must have made progress: its running
    /// task's start, or between tasks the later of its last finish and its
    /// oldest task's dispatch, plus the timeout.
    fn deadline_ns(&self, timeout: Option<Duration>) -> Option<u64> {
        let timeout = timeout?.as_nanos() as u64;
        let front = self.inflight.front()?;
        if self.retiring.is_some() {
            return None;
        }
        let score = self.board.read();
        let since = match score.running() {
            Some(_) => score.started_at.as_nanos() as u64,
            None => front.sent_ns.max(score.finished_at.as_nanos() as u64),
        };
        Some(since + timeout)
    }

    /// Reads every result that has arrived and lands it. Marks the worker
    /// gone on EOF or on anything it should not have said.
    fn read_results(&mut self) {
        loop {
            // Straight into the buffer's spare room: nothing to zero or copy.
            self.inbuf.reserve(64 << 10);
            match rustix::io::read(&self.from, rustix::buffer::spare_capacity(&mut self.inbuf)) {
                Ok(0) => {
                    self.gone = true;
                    break;
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        let inbuf = std::mem::take(&mut self.inbuf);
        // Whole frames, in place; a partial one at the end stays.
        let mut used = 0;
        let now = now_ns();
        while let Some(header) = inbuf[used..].first_chunk::<4>() {
            let len = u32::from_le_bytes(*header) as usize;
            if len > wire::MAX_FRAME {
                self.gone = true;
                break;
            }
            if inbuf.len() - used - 4 < len {
                break;
            }
            if !self.land(&inbuf[used + 4..used + 4 + len], now) {
                self.gone = true;
                break;
            }
            used += 4 + len;
        }
        self.inbuf = inbuf;
        self.inbuf.drain(..used);
        if self.gone {
            // Kill it so its death, and what it held, are handled like any other.
            let _ = self.child.signal(Signal::KILL);
        }
    }

    /// Lands one frame; false if the frame is not what this worker owes us.
    fn land(&mut self, frame: &[u8], now: u64) -> bool {
        match wire::decode::<FromWorker>(frame) {
            Ok(FromWorker::Done { id, result }) => {
                if self.inflight.front().is_none_or(|f| f.entry.id() != id) {
                    return false;
                }
                let Some(done) = self.inflight.pop_front() else { return false };
                let service = now.saturating_sub(done.sent_ns.max(self.last_result_ns)) as f64;
                self.service_ns = if self.service_ns <= 0.0 { service } else { 0.8 * self.service_ns + 0.2 * service };
                self.last_result_ns = now;
                let mut outcome = result.map_err(|message| TaskError::Task { message });
                if self.bug == Some(PlantedBug::FailBystander) {
                    outcome = self.owed.swap(done.entry.job.id(), outcome);
                }
                match (self.bug, done.entry.attempts > 0) {
                    (Some(PlantedBug::DropRetriedResult), true) => {}
                    (Some(PlantedBug::DuplicateRetriedResult), true) => {
                        done.entry.job.set(done.entry.index as usize, outcome.clone());
                        done.entry.deliver(outcome);
                    }
                    _ => done.entry.deliver(outcome),
                }
                true
            }
            Ok(FromWorker::Recycling { .. }) => {
                self.retiring = Some(Retiring::Recycling);
                true
            }
            Ok(FromWorker::Sentinel) | Err(_) => false,
        }
    }
}

struct Supervisor {
    s: Settings,
    mailbox: Arc<Mailbox>,
    lifecycle: Lifecycle,
    queue: VecDeque<Entry>,
    workers: Vec<Worker>,
    /// Forks the workers; started with the first, replaced if it dies.
    server: Option<ForkServer>,
    spawn_paused_until: Option<Instant>,
}

impl Supervisor {
    fn new(s: Settings, mailbox: Arc<Mailbox>) -> Self {
        Supervisor {
            s,
            mailbox,
            lifecycle: Lifecycle::Running,
            queue: VecDeque::new(),
            workers: Vec::new(),
            server: None,
            spawn_paused_until: None,
        }
    }

    fn run(&mut self) {
        loop {
            let (batches, lifecycle) = self.mailbox.take();
            self.lifecycle = lifecycle;
            for batch in batches {
                self.queue.extend(batch.into_entries());
            }
            match self.lifecycle {
                Lifecycle::Terminating => return,
                Lifecycle::Closing if self.is_idle() => return,
                _ => {}
            }
            if self.spawn_paused_until.is_none_or(|t| Instant::now() >= t)
                && let Err(e) = self.fill_workers()
            {
                eprintln!("supervised: cannot spawn a worker ({e}); retrying");
                self.spawn_paused_until = Some(Instant::now() + SPAWN_BACKOFF);
            }
            self.dispatch();
            for worker in &mut self.workers {
                worker.write_pending();
            }
            if let Err(e) = self.wait_and_handle() {
                eprintln!("supervised: poll failed: {e}");
                std::thread::sleep(SPAWN_BACKOFF);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    fn fill_workers(&mut self) -> io::Result<()> {
        let mut retried = false;
        while self.workers.len() < self.s.workers {
            let server = match &mut self.server {
                Some(server) if !server.is_lost() => server,
                _ => {
                    // Its workers died with it and were buried: reap it, start anew.
                    if let Some(lost) = self.server.take() {
                        lost.shutdown();
                    }
                    // On this thread, so it dies with it (PDEATHSIG); its
                    // environment is every worker's.
                    let env: Vec<(&'static str, OsString)> = self
                        .s
                        .rss_ceiling_kib
                        .map(|kib| (RSS_CEILING_ENV, kib.to_string().into()))
                        .into_iter()
                        .collect();
                    self.server.insert(ForkServer::start(&self.s.program, env)?)
                }
            };
            match Worker::spawn(&self.s, server) {
                Ok(worker) => self.workers.push(worker),
                // The server died under us (its workers with it): once more, with a new one.
                Err(_) if server.is_lost() && !retried => retried = true,
                Err(e) => return Err(e),
            }
            self.publish_pids();
        }
        self.spawn_paused_until = None;
        Ok(())
    }

    fn publish_pids(&self) {
        self.mailbox.set_pids(self.workers.iter().map(|w| w.child.pid()).collect());
    }

    /// Hands out queued tasks one at a time to each worker in turn, until
    /// the queue is empty or every window is full.
    fn dispatch(&mut self) {
        let now = now_ns();
        let max = self.s.window;
        let mut rooms: Vec<usize> = self
            .workers
            .iter()
            .map(|w| if w.accepts_work() { w.window(max).saturating_sub(w.inflight.len()) } else { 0 })
            .collect();
        while !self.queue.is_empty() && rooms.iter().any(|&r| r > 0) {
            for (worker, room) in self.workers.iter_mut().zip(&mut rooms) {
                if *room == 0 {
                    continue;
                }
                let Some(entry) = self.queue.pop_front() else { break };
                worker.send(entry, now);
                *room -= 1;
            }
        }
    }

    /// Sleeps until mail, a result, a death or the nearest deadline; handles them.
    fn wait_and_handle(&mut self) -> io::Result<()> {
        let now = now_ns();
        let mut timeout = self
            .workers
            .iter()
            .filter_map(|w| w.deadline_ns(self.s.task_timeout))
            .min()
            .map(|d| Duration::from_nanos(d.saturating_sub(now)));
        if let Some(until) = self.spawn_paused_until {
            let wait = until.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        let ready: Vec<(bool, bool)> = {
            let wake = self.mailbox.wake_fd();
            let pidfds: Vec<_> = self.workers.iter().map(|w| w.child.pidfd()).collect();
            let mut fds = Vec::with_capacity(1 + 3 * self.workers.len());
            fds.push(PollFd::new(&wake, PollFlags::IN));
            for (w, pidfd) in self.workers.iter().zip(&pidfds) {
                fds.push(PollFd::new(&w.from, PollFlags::IN));
                fds.push(PollFd::new(pidfd, PollFlags::IN));
            }
            for to in self.workers.iter().filter(|w| w.wants_write()).filter_map(|w| w.to.as_ref()) {
                fds.push(PollFd::new(to, PollFlags::OUT));
            }
            process::poll(&mut fds, timeout)?;
            (0..self.workers.len())
                .map(|i| (!fds[1 + 2 * i].revents().is_empty(), !fds[2 + 2 * i].revents().is_empty()))
                .collect()
        };
        for (worker, &(results, _)) in self.workers.iter_mut().zip(&ready) {
            if results {
                worker.read_results();
            }
        }
        self.enforce_deadlines();
        // Reap from the back so indexes stay valid.
        for i in (0..self.workers.len()).rev() {
            if ready[i].1 || self.workers[i].gone {
                let worker = self.workers.swap_remove(i);
                self.bury(worker);
            }
        }
        Ok(())
    }

    fn enforce_deadlines(&mut self) {
        if self.s.bug == Some(PlantedBug::NoDeadline) {
            return;
        }
        let now = now_ns();
        let timeout = self.s.task_timeout;
        for worker in &mut self.workers {
            let Some(deadline) = worker.deadline_ns(timeout) else { continue };
            if now >= deadline {
                let late = Duration::from_nanos(now - deadline);
                worker.retiring = Some(Retiring::TimedOut { after: timeout.unwrap_or_default() + late });
                let _ = worker.child.signal(Signal::KILL);
            }
        }
    }

    /// Reaps a dead (or dying) worker and settles the tasks it held: the one
    /// it was running is charged; the rest go back uncharged.
    fn bury(&mut self, mut worker: Worker) {
        let exit = self.reap(&mut worker.child, EXIT_GRACE);
        self.publish_pids();
        let pid = worker.child.pid();
        let culprit = worker.board.read().running();
        if self.s.bug == Some(PlantedBug::IgnoreDeath) {
            return;
        }
        while let Some(held) = worker.inflight.pop_back() {
            let mut entry = held.entry;
            if Some(held.seq) != culprit {
                self.queue.push_front(entry);
                continue;
            }
            entry.attempts += 1;
            let attempts = entry.attempts;
            if attempts < self.s.max_attempts {
                self.queue.push_front(entry);
                continue;
            }
            let error = match worker.retiring {
                Some(Retiring::TimedOut { after }) => TaskError::TimedOut { pid, after, attempts },
                _ => TaskError::WorkerLost { pid, exit, attempts },
            };
            if self.s.bug == Some(PlantedBug::FailBystander) && matches!(error, TaskError::WorkerLost { .. }) {
                self.s.owed.owe(entry.job.id(), &error);
            }
            entry.deliver(Err(error));
        }
    }

    /// How `child` ended: waits up to `grace` for it to end by itself, then
    /// SIGKILLs it. Its server reaps it and says how it ended.
    fn reap(&mut self, child: &mut Forked, grace: Duration) -> Exit {
        let waited = match &mut self.server {
            Some(server) => server.wait_exit(child, grace),
            None => child.wait_orphaned(grace),
        };
        match (waited, &mut self.server) {
            (Ok(Some(exit)), _) => exit,
            (_, Some(server)) => server.kill_and_wait(child),
            (_, None) => {
                let _ = child.signal(Signal::KILL);
                child.wait_orphaned(EXIT_GRACE).ok().flatten().unwrap_or(Exit::Signal(libc::SIGKILL))
            }
        }
    }

    /// Stops every worker: gracefully after `close`, by SIGKILL otherwise,
    /// then fails whatever is left.
    fn shutdown(&mut self) {
        let graceful = self.lifecycle == Lifecycle::Closing && self.is_idle();
        if graceful {
            for worker in &mut self.workers {
                worker.to = None;
            }
        }
        let mut workers = std::mem::take(&mut self.workers);
        for worker in &mut workers {
            if graceful {
                self.reap(&mut worker.child, CLOSE_GRACE);
            } else {
                let _ = worker.child.signal(Signal::KILL);
            }
        }
        for mut worker in workers {
            // After a clean close, nothing is left to kill.
            self.reap(&mut worker.child, Duration::ZERO);
            self.queue.extend(worker.inflight.drain(..).map(|f| f.entry));
        }
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let error = TaskError::Terminated;
        for entry in self.queue.drain(..) {
            entry.deliver(Err(error.clone()));
        }
        for batch in self.mailbox.finish() {
            batch.job.fail_pending(&error);
        }
    }
}
