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
//!                               pidfd readable ⇒ blame, hand its window to the standby,
//!                               ask the fork server for a new standby
//! ```
//!
//! - **Speed.** Each worker has a window of tasks in flight (64 until their
//!   cost is known, then as many as fill 2 ms of work, up to
//!   `PoolConfig::window`: 1024 by default, a handful for slow tasks so the
//!   tail stays short), sent in one write and answered in batches, so a
//!   round trip (two wake-ups) is paid per window, not per task. Every task
//!   is still tracked alone: the worker runs them in order and each result
//!   names its task. A read's results land as views into its one buffer
//!   ([`Frames::take_whole`]): no allocation per result on this thread.
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
//!   queue uncharged and a fresh worker takes its place. With
//!   `max_tasks_per_worker` a worker recycles the same way after that many
//!   tasks.
//! - **Deaths at start.** A worker (or the standby) that dies before its
//!   scoreboard says it is ready died as it started (the `init` and
//!   `recycle` points): it held no started task, and charges none. After
//!   [`START_DEATHS`] of them in a row with no result in between, spawning
//!   pauses, and once no worker is left to take the queue, every queued
//!   task fails as `PoolBroken`, naming the last one and how it ended: a
//!   worker that always dies at start costs failed tasks, not an endless
//!   loop of forks, and a standby that cannot start breaks nothing.
//!
//! [scoreboard]: crate::scoreboard
//! - **Spawning.** Workers are forked by the pool's
//!   [fork server](crate::fork_server) (started once by this thread with
//!   fork + exec), which reaps them and reports how each ended: a respawn
//!   after a death costs a fork of a small process, and this process never
//!   forks itself (a fork of a big multi-threaded process stalls its other
//!   threads, callers included, while the page tables are copied).
//! - **Standby.** One worker more than `workers` is forked ahead and waits,
//!   idle, with no task. When a worker dies, the standby takes its place and
//!   its share of the dead one's window (the retried culprit first, then the
//!   unstarted tasks, in order) at once; the rest go to the front of the
//!   queue for every free window, and a new standby is asked of the fork server without waiting:
//!   its answer is read by the poll loop, so no fork and no reap is ever
//!   waited for on a death (the one exception: a task failing for good as
//!   `WorkerLost` waits for its worker's exit status). A standby that dies
//!   idle is replaced and charges nothing. It costs one idle process (a fork
//!   of the server: a few hundred KiB of its own pages) and no CPU.
//! - **The parent's faults.** A task that fails to encode (its `encode`
//!   fault) fails alone with that error, and so does a result that fails to
//!   decode (`decode-result`): the frame was whole, the worker is fine. A
//!   callback that panics is caught and kept on its job (it runs on this
//!   thread), so no caller's code can end the supervisor.
//! - **A refused fork** (EAGAIN: the run's `pids.max` is reached): the pool
//!   goes on with the workers it has, and asks again every
//!   [`SPAWN_BACKOFF`] (never in a tight loop). Only when it has no worker
//!   and no standby left, and none is being forked, do the queued tasks
//!   fail, as `SpawnFailed` naming the refusal: never a hang.
//! - **Owner death.** The fork server dies with this thread
//!   (`PR_SET_PDEATHSIG(SIGKILL)`), each worker with the fork server (the
//!   same), and a worker exits on EOF of its task pipe.
//! - **Exactly once.** A task is in exactly one place: the queue or one
//!   worker's window; it leaves a window only through its result or its
//!   worker's death. Retries go to the front of the queue (or straight into
//!   the standby's window).
//! - **Planted bugs** (the `planted` module, above this one) change what
//!   happens only through the supervisor's [`Hooks`]; the correct pool is
//!   built with [`Faithful`], whose hooks are the defaults, so its code
//!   path never leaves this module.
//!
//! Known cost: a worker flushes results when its input runs dry, every
//! 32 KiB, after any task that took 200 µs or more, or 200 µs after the
//! oldest unflushed one, checked between tasks (without a deadline, at the
//! worker's clock reads: every task while tasks are slow, every up to 16th
//! while they are quick); so a quick result queued just before the first
//! long task of a run waits for that task.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::actor::{ActorPool, Entry, Lifecycle, Mailbox, deliver_all};
use crate::fault;
use crate::fork_server::{ForkServer, Forked, Note, START_PATIENCE, is_gone};
use crate::outcome::{Exit, Outcome, TaskError};
use crate::pool::{PoolConfig, PoolError, PoolKind, START_DEATHS};
use crate::process::{self, MAX_TASKS_ENV, RSS_CEILING_ENV, WorkerProgram};
use crate::scoreboard::{SCOREBOARD_FD_ENV, Scoreboard, TIMED_ENV, now_ns};
use crate::wire::{self, Frames, FromWorkerRef, Whole};

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
/// Most exits kept for workers forked and not taken yet.
const UNCLAIMED: usize = 64;
/// Most scoreboards of dead workers kept for the next ones.
const SPARE_BOARDS: usize = 4;

/// Starts a supervised pool. Fails if the first workers cannot be spawned.
pub fn start(config: &PoolConfig) -> Result<ActorPool, PoolError> {
    start_with(config, PoolKind::Supervised, Faithful)
}

/// A supervised pool named `kind` whose supervisor calls `hooks` (a
/// planted bug's, or [`Faithful`]).
pub(crate) fn start_with<H: Hooks>(config: &PoolConfig, kind: PoolKind, hooks: H) -> Result<ActorPool, PoolError> {
    let settings = Settings::from(config);
    let (ready_tx, ready_rx) = mpsc::channel();
    let pool = ActorPool::start(kind, move |mailbox| {
        let mut supervisor = Supervisor::new(settings, hooks, mailbox);
        let ready = supervisor.start_workers();
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

/// Where a planted bug can change what the supervisor does (a result
/// lands, a task fails for good, a worker dies, a deadline passes, a task
/// is charged an attempt, a worker dies at start); every default is the
/// correct behaviour. The bugs implement it in `planted`, above this module.
pub(crate) trait Hooks: Send + 'static {
    /// Workers returned these outcomes (results or the tasks' own errors),
    /// in order: lands them, and leaves `landed` empty.
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        deliver_all(landed);
    }

    /// `entry` fails for good because of a fault: out of attempts after
    /// deaths, or past its deadline.
    fn fail(&mut self, entry: Entry, error: TaskError) {
        entry.deliver(Err(error));
    }

    /// Whether a dead worker's tasks are settled (charged, retried, requeued).
    fn settles_deaths(&self) -> bool {
        true
    }

    /// Whether per-task deadlines are enforced.
    fn enforces_deadlines(&self) -> bool {
        true
    }

    /// How many attempts a task whose worker dies under it gets, of `max_attempts`.
    fn attempts(&self, max_attempts: u32) -> u32 {
        max_attempts
    }

    /// Whether a worker that died as it started is replaced.
    fn replaces_start_deaths(&self) -> bool {
        true
    }
}

/// The correct pool: every hook its default.
pub(crate) struct Faithful;
impl Hooks for Faithful {}

struct Settings {
    workers: usize,
    program: WorkerProgram,
    task_timeout: Option<Duration>,
    max_attempts: u32,
    rss_ceiling_kib: Option<u64>,
    window: usize,
    max_tasks: Option<u32>,
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
            max_tasks: c.max_tasks_per_worker,
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
#[derive(Debug, Clone, Copy, PartialEq)]
enum Retiring {
    /// It said it is over its memory ceiling and will exit.
    Recycling,
    /// We killed it at a deadline.
    TimedOut { after: Duration },
}

/// Where a worker is in its life. Each change is one method of [`Worker`]:
/// [`Worker::retire`], [`Worker::lose`], [`Worker::close`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    /// Takes tasks.
    Working,
    /// Takes no more tasks; what it holds is still its own.
    Retiring(Retiring),
    /// Its results pipe closed, its task pipe broke, or it said something
    /// not ours: it has been killed, and is buried once its pidfd says it
    /// is dead. Keeps why it was retiring, if it was.
    Gone(Option<Retiring>),
    /// Its task pipe is closed (a graceful shutdown): it exits on EOF.
    Closed,
}

struct Worker {
    /// Forked by the pool's fork server: its exit status comes from there.
    child: Forked,
    board: Scoreboard,
    /// The task pipe; `None` once closed ([`Life::Closed`]).
    to: Option<OwnedFd>,
    from: OwnedFd,
    sent: u64,
    inflight: VecDeque<InFlight>,
    out: Vec<u8>,
    written: usize,
    results: Frames,
    /// Outcomes read and not yet landed (empty between reads).
    landed: Vec<(Entry, Outcome)>,
    last_result_ns: u64,
    /// Moving average of one task's service time, in ns (0 = unknown yet).
    service_ns: f64,
    life: Life,
}

/// A worker asked of the fork server and not forked yet: our ends of its
/// pipes, and its scoreboard.
struct Unborn {
    to: OwnedFd,
    from: OwnedFd,
    board: Scoreboard,
}

impl Unborn {
    /// Makes the pipes (and the scoreboard, unless a spare is given) and
    /// asks `server` for the process, without waiting for it.
    fn request(server: &mut ForkServer, spare: Option<Scoreboard>) -> io::Result<Unborn> {
        let (task_r, task_w) = process::pipe()?;
        let (result_r, result_w) = process::pipe()?;
        let board = match spare {
            Some(board) => board,
            None => Scoreboard::create()?,
        };
        server.request(task_r, result_w, &[(board.fd(), SCOREBOARD_FD_ENV)])?;
        process::set_nonblocking(task_w.as_fd())?;
        process::set_nonblocking(result_r.as_fd())?;
        Ok(Unborn { to: task_w, from: result_r, board })
    }

    fn born(self, child: Forked) -> Worker {
        Worker {
            child,
            board: self.board,
            to: Some(self.to),
            from: self.from,
            sent: 0,
            inflight: VecDeque::new(),
            out: Vec::new(),
            written: 0,
            results: Frames::new(),
            landed: Vec::new(),
            last_result_ns: now_ns(),
            service_ns: 0.0,
            life: Life::Working,
        }
    }
}

impl Worker {
    fn accepts_work(&self) -> bool {
        self.life == Life::Working
    }

    fn is_gone(&self) -> bool {
        matches!(self.life, Life::Gone(_))
    }

    /// Why it retired, if it did (gone since or not).
    fn retired(&self) -> Option<Retiring> {
        match self.life {
            Life::Retiring(why) | Life::Gone(Some(why)) => Some(why),
            _ => None,
        }
    }

    /// It takes no more tasks, for `why` (a later reason replaces an
    /// earlier one; a gone worker keeps it for its burial).
    fn retire(&mut self, why: Retiring) {
        self.life = match self.life {
            Life::Working | Life::Retiring(_) => Life::Retiring(why),
            Life::Gone(_) => Life::Gone(Some(why)),
            Life::Closed => Life::Closed,
        };
    }

    /// It is lost to us (see [`Life::Gone`]); the caller kills it.
    fn lose(&mut self) {
        self.life = match self.life {
            Life::Working | Life::Closed => Life::Gone(None),
            Life::Retiring(why) => Life::Gone(Some(why)),
            gone @ Life::Gone(_) => gone,
        };
    }

    /// Closes its task pipe, for a graceful shutdown.
    fn close(&mut self) {
        self.to = None;
        self.life = Life::Closed;
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

    /// Sends `entry`; a task that fails to encode (its `encode` fault) is
    /// handed back with its error instead, for the supervisor to fail alone.
    fn send(&mut self, entry: Entry, now_ns: u64) -> Result<(), (Entry, TaskError)> {
        if let Err(message) = fault::fire_encode(&entry.task, entry.attempts) {
            return Err((entry, TaskError::Task { message }));
        }
        let id = entry.id();
        wire::encode_run(id, entry.attempts, &entry.task, &mut self.out);
        self.sent += 1;
        self.inflight.push_back(InFlight { entry, seq: self.sent, sent_ns: now_ns });
        Ok(())
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
                    self.lose();
                    let _ = self.child.signal(Signal::KILL);
                    return;
                }
            }
        }
        self.out.clear();
        self.written = 0;
    }

    /// Frames are waiting and the worker can take them (a gone worker's
    /// task pipe reports an error at every poll).
    fn wants_write(&self) -> bool {
        matches!(self.life, Life::Working | Life::Retiring(_)) && self.written < self.out.len()
    }

    /// When (CLOCK_MONOTONIC ns) it must have made progress: its running
    /// task's start, or between tasks the later of its last finish and its
    /// oldest task's dispatch, plus the timeout.
    fn deadline_ns(&self, timeout: Option<Duration>) -> Option<u64> {
        let timeout = timeout?.as_nanos() as u64;
        let front = self.inflight.front()?;
        if self.retired().is_some() {
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
    fn read_results(&mut self, hooks: &mut impl Hooks) {
        let mut results = std::mem::take(&mut self.results);
        loop {
            match results.read_from(&self.from, 64 << 10) {
                Ok(0) => {
                    self.lose();
                    break;
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        // Whole frames, in one buffer their results are views of; a partial
        // one at the end stays.
        let whole = results.take_whole();
        let now = now_ns();
        for frame in whole.payloads() {
            // Not what it owes us.
            if !self.land(&whole, frame, now) {
                self.lose();
                break;
            }
        }
        // Not ours: a header past the largest frame.
        if results.next_frame().is_err() {
            self.lose();
        }
        self.results = results;
        // One lock of the job for what this read brought.
        hooks.deliver(&mut self.landed);
        if self.is_gone() {
            // Kill it so its death, and what it held, are handled like any other.
            let _ = self.child.signal(Signal::KILL);
        }
    }

    /// Lands one frame; false if the frame is not what this worker owes us.
    /// A result that fires its fault as it is decoded (`error`, `panic`)
    /// fails its task alone with that error: the frame was whole, the
    /// worker is fine.
    fn land(&mut self, whole: &Whole, frame: &[u8], now: u64) -> bool {
        let (id, result) = match fault::decode_result(frame) {
            Ok(FromWorkerRef::Done { id, result } | FromWorkerRef::Armed { id, result, .. }) => {
                (id, result.map(|bytes| whole.share(bytes)).map_err(str::to_owned))
            }
            Err(fault::DecodeError::Fired { id, message }) => (id, Err(message)),
            Ok(FromWorkerRef::Recycling { .. }) => {
                self.retire(Retiring::Recycling);
                return true;
            }
            Ok(FromWorkerRef::Sentinel) | Err(fault::DecodeError::Garbled(_)) => return false,
        };
        if self.inflight.front().is_none_or(|f| f.entry.id() != id) {
            return false;
        }
        let Some(done) = self.inflight.pop_front() else { return false };
        let service = now.saturating_sub(done.sent_ns.max(self.last_result_ns)) as f64;
        self.service_ns = if self.service_ns <= 0.0 { service } else { 0.8 * self.service_ns + 0.2 * service };
        self.last_result_ns = now;
        self.landed.push((done.entry, result.map_err(|message| TaskError::Task { message })));
        true
    }
}

/// What turned ready while the supervisor slept.
struct Ready {
    /// Per worker: its results pipe, its pidfd.
    workers: Vec<(bool, bool)>,
    standby_died: bool,
    server_spoke: bool,
}

struct Supervisor<H> {
    s: Settings,
    hooks: H,
    mailbox: Arc<Mailbox>,
    lifecycle: Lifecycle,
    queue: VecDeque<Entry>,
    workers: Vec<Worker>,
    /// Forked ahead, idle, with no task: takes a dead worker's place.
    standby: Option<Worker>,
    /// Workers asked of the server and not forked yet, in request order.
    forking: VecDeque<Unborn>,
    /// Forks the workers; started with the first, replaced if it dies.
    server: Option<ForkServer>,
    spawn_paused_until: Option<Instant>,
    /// The server's last fork was refused, until one succeeds.
    refused: Option<io::Error>,
    /// The mailbox's fd turned readable (or nobody has looked yet).
    woken: bool,
    /// Workers dead as they started since the last result landed.
    start_deaths: u32,
    /// Exits the fork server reported for workers not taken yet (the last [`UNCLAIMED`]).
    unclaimed: VecDeque<(u32, Exit)>,
    /// Scoreboards of buried workers, cleared, for the next ones (the last
    /// [`SPARE_BOARDS`]; see [`crate::scoreboard`]).
    spare_boards: Vec<Scoreboard>,
}

impl<H: Hooks> Supervisor<H> {
    fn new(s: Settings, hooks: H, mailbox: Arc<Mailbox>) -> Self {
        Supervisor {
            s,
            hooks,
            mailbox,
            lifecycle: Lifecycle::Running,
            queue: VecDeque::new(),
            workers: Vec::new(),
            standby: None,
            forking: VecDeque::new(),
            server: None,
            spawn_paused_until: None,
            refused: None,
            woken: true,
            start_deaths: 0,
            unclaimed: VecDeque::new(),
            spare_boards: Vec::new(),
        }
    }

    fn run(&mut self) {
        loop {
            // The mailbox (a lock and an eventfd read) only when its fd said so.
            if std::mem::take(&mut self.woken) {
                let (batches, lifecycle) = self.mailbox.take();
                self.lifecycle = lifecycle;
                for batch in batches {
                    self.queue.extend(batch.into_entries());
                }
            }
            match self.lifecycle {
                Lifecycle::Terminating => return,
                Lifecycle::Closing if self.is_idle() => return,
                _ => {}
            }
            if self.spawn_paused_until.is_none_or(|t| Instant::now() >= t)
                && let Err(e) = self.fill()
            {
                eprintln!("supervised: cannot spawn a worker ({e}); retrying");
                self.spawn_paused_until = Some(Instant::now() + SPAWN_BACKOFF);
            }
            self.fail_if_workerless();
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

    /// With no worker, no standby and none coming (the kernel refuses
    /// forks), no queued task can run: each fails, naming the refusal.
    fn fail_if_workerless(&mut self) {
        let Some(refusal) = &self.refused else { return };
        if self.workers.is_empty() && self.standby.is_none() && self.forking.is_empty() {
            let error = TaskError::spawn_failed(refusal);
            for entry in self.queue.drain(..) {
                self.hooks.fail(entry, error.clone());
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    /// Forgets a fork server that died, with the workers asked of it and
    /// not forked yet: they will never come, so [`Supervisor::fill`] asks a
    /// new server for them. (Counted as coming, they once left a pool whose
    /// server died with every missing worker asked of it waiting forever.)
    /// The workers it did fork die with it and are buried as any other.
    fn forget_lost_server(&mut self) {
        if self.server.as_ref().is_some_and(ForkServer::is_lost) {
            if let Some(lost) = self.server.take() {
                lost.shutdown();
            }
            self.forking.clear();
        }
    }

    /// The running fork server, started anew if there is none or it died.
    fn server(&mut self) -> io::Result<&mut ForkServer> {
        self.forget_lost_server();
        if self.server.is_none() {
            // On this thread, so it dies with it (PDEATHSIG); its
            // environment is every worker's.
            let mut env: Vec<(&'static str, OsString)> =
                self.s.rss_ceiling_kib.map(|kib| (RSS_CEILING_ENV, kib.to_string().into())).into_iter().collect();
            // Deadlines need each task's times on the scoreboard; without them the workers skip the clock.
            if self.s.task_timeout.is_some() {
                env.push((TIMED_ENV, "1".into()));
            }
            if let Some(n) = self.s.max_tasks {
                env.push((MAX_TASKS_ENV, n.to_string().into()));
            }
            self.server = Some(ForkServer::start(&self.s.program, env)?);
        }
        self.server.as_mut().ok_or_else(|| io::Error::other("no fork server"))
    }

    /// The first workers, forked while the pool starts (so a worker program
    /// that cannot start is an error of `start`).
    ///
    /// A server killed meanwhile is replaced, for up to [`START_PATIENCE`];
    /// the workers it forked die with it and are buried by the run loop.
    fn start_workers(&mut self) -> io::Result<()> {
        let until = Instant::now() + START_PATIENCE;
        while self.workers.len() < self.s.workers {
            let forked = self.server().and_then(|server| {
                let unborn = Unborn::request(server, None)?;
                Ok(unborn.born(server.wait_answered()?))
            });
            match forked {
                Ok(worker) => self.workers.push(worker),
                Err(e) if is_gone(&e) && Instant::now() < until => {}
                Err(e) => return Err(e),
            }
        }
        self.publish_pids();
        Ok(())
    }

    /// Asks the fork server for the workers missing, and the standby,
    /// without waiting for them.
    fn fill(&mut self) -> io::Result<()> {
        let want = self.s.workers + usize::from(self.lifecycle == Lifecycle::Running);
        let mut retried = false;
        while self.workers.len() + usize::from(self.standby.is_some()) + self.forking.len() < want {
            let spare = self.spare_boards.pop();
            let server = self.server()?;
            match Unborn::request(server, spare) {
                Ok(unborn) => self.forking.push_back(unborn),
                // The server died under us: once more, with a new one.
                Err(_) if server.is_lost() && !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
        self.spawn_paused_until = None;
        Ok(())
    }

    /// Takes the workers the server has forked: a missing worker first,
    /// else the standby.
    fn take_forked(&mut self) {
        let Some(server) = &mut self.server else { return };
        let mut took = false;
        while let Some(answer) = server.answered() {
            let Some(unborn) = self.forking.pop_front() else { break };
            let answer = answer.map(|mut child| {
                if let Some(at) = self.unclaimed.iter().position(|&(pid, _)| pid == child.pid()) {
                    child.exit = self.unclaimed.remove(at).map(|(_, exit)| exit);
                }
                child
            });
            took = true;
            match answer {
                Ok(child) if self.workers.len() < self.s.workers => {
                    self.refused = None;
                    self.workers.push(unborn.born(child));
                }
                Ok(child) if self.standby.is_none() => {
                    self.refused = None;
                    self.standby = Some(unborn.born(child));
                }
                // Not wanted any more: its task pipe closes and it exits.
                Ok(child) => drop(unborn.born(child)),
                Err(e) => {
                    if self.refused.is_none() {
                        eprintln!(
                            "supervised: the fork server cannot fork a worker ({e}); asking again every {SPAWN_BACKOFF:?}"
                        );
                    }
                    self.refused = Some(e);
                    self.spawn_paused_until = Some(Instant::now() + SPAWN_BACKOFF);
                }
            }
        }
        if took {
            self.publish_pids();
        }
    }

    /// Takes the exit statuses the server reported, for workers not buried yet.
    fn take_notes(&mut self) {
        let Some(server) = &mut self.server else { return };
        for note in server.notes() {
            let Note::Exited { pid, exit } = note else { continue };
            match self.workers.iter_mut().chain(&mut self.standby).find(|w| w.child.pid() == pid) {
                Some(worker) => worker.child.exit = Some(exit),
                // Forked, and dead (as it started) before its answer was taken.
                None => {
                    if self.unclaimed.len() == UNCLAIMED {
                        self.unclaimed.pop_front();
                    }
                    self.unclaimed.push_back((pid, exit));
                }
            }
        }
    }

    fn publish_pids(&self) {
        self.mailbox.set_pids(self.workers.iter().chain(&self.standby).map(|w| w.child.pid()).collect());
        let whole = self.workers.len() == self.s.workers && self.standby.is_some() && self.forking.is_empty();
        self.mailbox.set_settled(whole);
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
                match worker.send(entry, now) {
                    Ok(()) => *room -= 1,
                    Err((entry, error)) => self.hooks.fail(entry, error),
                }
            }
        }
    }

    /// How long the loop may sleep: until the nearest deadline, the end of
    /// a spawn pause, or the fork server's answer's due time; not at all if
    /// the server's messages are waiting, read while waiting for something else.
    fn sleep_for(&self) -> Option<Duration> {
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
        // A server that does not answer (stopped) is given up at its due time.
        if let Some(due) = self.server.as_ref().and_then(ForkServer::answer_due) {
            let wait = due.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        // Read while waiting for something else: nothing will wake us for them.
        if self.server.as_ref().is_some_and(ForkServer::has_notes) {
            timeout = Some(Duration::ZERO);
        }
        timeout
    }

    /// Sleeps until mail, a result, a death, a forked worker or `timeout`;
    /// says what turned ready.
    fn wait_ready(&mut self, timeout: Option<Duration>) -> io::Result<Ready> {
        let wake = self.mailbox.wake_fd();
        let pidfds: Vec<_> = self.workers.iter().map(|w| w.child.pidfd()).collect();
        let mut fds = Vec::with_capacity(3 + 3 * self.workers.len());
        fds.push(PollFd::new(&wake, PollFlags::IN));
        for (w, pidfd) in self.workers.iter().zip(&pidfds) {
            // A gone worker's pipe reports HUP whatever we ask of it, for
            // as long as the worker takes to finish dying (its pidfd turns
            // readable only then): polled, it would spin this loop, and
            // take a core from the dying worker. Only its pidfd matters now.
            let gone = w.is_gone();
            let results = if gone { *pidfd } else { w.from.as_fd() };
            fds.push(PollFd::from_borrowed_fd(results, if gone { PollFlags::empty() } else { PollFlags::IN }));
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let standby = self.standby.as_ref().map(|w| w.child.pidfd());
        if let Some(pidfd) = &standby {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let server = self.server.as_ref().map(ForkServer::fd);
        if let Some(fd) = &server {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        for to in self.workers.iter().filter(|w| w.wants_write()).filter_map(|w| w.to.as_ref()) {
            fds.push(PollFd::new(to, PollFlags::OUT));
        }
        process::poll(&mut fds, timeout)?;
        self.woken = !fds[0].revents().is_empty();
        let ready = (0..self.workers.len())
            .map(|i| (!fds[1 + 2 * i].revents().is_empty(), !fds[2 + 2 * i].revents().is_empty()))
            .collect();
        let at = 1 + 2 * self.workers.len();
        let standby_died = standby.is_some() && !fds[at].revents().is_empty();
        let at = at + usize::from(standby.is_some());
        Ok(Ready { workers: ready, standby_died, server_spoke: server.is_some() && !fds[at].revents().is_empty() })
    }

    /// Sleeps until mail, a result, a death, a forked worker or the nearest
    /// deadline; handles them.
    fn wait_and_handle(&mut self) -> io::Result<()> {
        let Ready { workers: ready, standby_died, server_spoke } = self.wait_ready(self.sleep_for())?;
        // The server's socket is read only when it spoke (or when messages
        // read while waiting for something else are kept): a read that finds
        // nothing is a syscall per loop, twice, for nothing.
        let kept = |s: &Self| s.server.as_ref().is_some_and(ForkServer::has_notes);
        for (worker, &(results, _)) in self.workers.iter_mut().zip(&ready) {
            if results {
                let held = worker.inflight.len();
                worker.read_results(&mut self.hooks);
                if worker.inflight.len() < held {
                    self.start_deaths = 0;
                }
            }
        }
        if server_spoke || kept(self) {
            self.take_notes();
        }
        if standby_died && let Some(mut standby) = self.standby.take() {
            // Idle: nothing to settle; a new one is asked for.
            self.publish_pids();
            let ready = standby.board.read().ready;
            self.keep_board(standby.board);
            if !ready {
                self.died_starting(&mut standby.child);
            }
        }
        self.enforce_deadlines();
        let mut dead = Vec::new();
        for i in (0..self.workers.len()).rev() {
            if ready[i].1 {
                dead.push(self.workers.swap_remove(i));
            }
        }
        for worker in dead {
            self.bury(worker);
        }
        if server_spoke || kept(self) {
            self.take_forked();
        }
        if let Some(server) = &mut self.server {
            server.give_up_if_overdue();
        }
        self.forget_lost_server();
        Ok(())
    }

    fn enforce_deadlines(&mut self) {
        if !self.hooks.enforces_deadlines() {
            return;
        }
        let now = now_ns();
        let timeout = self.s.task_timeout;
        for worker in &mut self.workers {
            let Some(deadline) = worker.deadline_ns(timeout) else { continue };
            if now >= deadline {
                let late = Duration::from_nanos(now - deadline);
                worker.retire(Retiring::TimedOut { after: timeout.unwrap_or_default() + late });
                let _ = worker.child.signal(Signal::KILL);
            }
        }
    }

    /// Settles the tasks a dead worker held: the one it was running is
    /// charged; the standby (if one is ready) takes its place and its share
    /// of the tasks (the culprit first), in order, at once; the rest go to
    /// the front of the queue.
    fn bury(&mut self, mut worker: Worker) {
        // It has exited: its scoreboard says its last word.
        let score = worker.board.read();
        let culprit = score.running();
        let retired = worker.retired();
        self.keep_board(worker.board);
        if !self.hooks.settles_deaths() {
            self.publish_pids();
            return;
        }
        let mut held: Vec<Entry> = Vec::with_capacity(worker.inflight.len());
        let mut failed = None;
        for f in worker.inflight.drain(..) {
            let mut entry = f.entry;
            if Some(f.seq) == culprit {
                entry.attempts += 1;
                if entry.attempts >= self.hooks.attempts(self.s.max_attempts) {
                    failed = Some(entry);
                    continue;
                }
            }
            held.push(entry);
        }
        // A planted bug may leave a death at start unreplaced: one worker fewer.
        let replaced = score.ready || self.hooks.replaces_start_deaths();
        if !replaced {
            self.s.workers = self.s.workers.saturating_sub(1);
        }
        if replaced && let Some(mut standby) = self.standby.take() {
            // Its window is the dead one's: same tasks, same cost.
            standby.service_ns = worker.service_ns;
            let now = now_ns();
            // Its share only: the rest go back to the queue, where the
            // other workers' free windows take them too, so one standby
            // does not run a long window alone while they idle.
            let share = held.len().div_ceil(1 + self.workers.iter().filter(|w| w.accepts_work()).count());
            let rest = held.split_off(standby.window(self.s.window).min(share));
            for entry in held.drain(..) {
                if let Err((entry, error)) = standby.send(entry, now) {
                    self.hooks.fail(entry, error);
                }
            }
            standby.write_pending();
            held = rest;
            self.workers.push(standby);
        }
        for entry in held.into_iter().rev() {
            self.queue.push_front(entry);
        }
        self.publish_pids();
        if let Some(entry) = failed {
            let (pid, attempts) = (worker.child.pid(), entry.attempts);
            let error = match retired {
                Some(Retiring::TimedOut { after }) => TaskError::TimedOut { pid, after, attempts },
                // The one wait on a death: the error names how it ended.
                _ => TaskError::WorkerLost { pid, exit: self.reap(&mut worker.child, EXIT_GRACE), attempts },
            };
            self.hooks.fail(entry, error);
        }
        if !score.ready {
            self.died_starting(&mut worker.child);
        }
    }

    /// Keeps a dead worker's scoreboard, cleared, for a next one.
    fn keep_board(&mut self, board: Scoreboard) {
        if self.spare_boards.len() < SPARE_BOARDS {
            board.clear();
            self.spare_boards.push(board);
        }
    }

    /// Counts a worker dead before it was ready; at [`START_DEATHS`] in a
    /// row, pauses spawning, and if no worker is left to take the queue,
    /// fails every queued task as `PoolBroken` naming `child`. (A standby
    /// that cannot start does not break a pool whose workers run.)
    fn died_starting(&mut self, child: &mut Forked) {
        self.start_deaths += 1;
        if self.start_deaths < START_DEATHS {
            return;
        }
        self.spawn_paused_until = Some(Instant::now() + SPAWN_BACKOFF);
        if self.workers.iter().any(Worker::accepts_work) {
            return;
        }
        self.start_deaths = 0;
        let error = TaskError::PoolBroken { pid: child.pid(), exit: self.reap(child, EXIT_GRACE) };
        eprintln!(
            "supervised: {START_DEATHS} workers in a row died as they started (the last: {error}); failing the queue"
        );
        for entry in std::mem::take(&mut self.queue) {
            self.hooks.fail(entry, error.clone());
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

    /// Stops every worker and the standby: gracefully after `close`, by
    /// SIGKILL otherwise, then fails whatever is left.
    fn shutdown(&mut self) {
        let graceful = self.lifecycle == Lifecycle::Closing && self.is_idle();
        let mut workers = std::mem::take(&mut self.workers);
        workers.extend(self.standby.take());
        for worker in &mut workers {
            if graceful {
                worker.close();
            } else {
                let _ = worker.child.signal(Signal::KILL);
            }
        }
        for mut worker in workers {
            self.reap(&mut worker.child, if graceful { CLOSE_GRACE } else { Duration::ZERO });
            self.queue.extend(worker.inflight.drain(..).map(|f| f.entry));
        }
        // Workers still being forked die with the server.
        self.forking.clear();
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
