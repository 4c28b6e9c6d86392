//! CPython 3.11's `multiprocessing.Pool` machinery, modelled closely enough to
//! hang exactly where it hangs. [`crate::naive`], [`crate::seed_polling`] and
//! [`crate::polling`] are built on it.
//!
//! ```text
//!  submit ──▶ taskqueue ──task handler──▶ inqueue pipe ──(rlock)──▶ worker ┐
//!  (cache[job] = Job)      (mpsc)                       shared by all     │ runs
//!  Job::set ◀──result handler── outqueue pipe ◀──(wlock)── worker ◀───────┘
//!  worker handler: poll(pidfds) → reap, drop from the list, repopulate to N
//! ```
//!
//! | CPython (`multiprocessing/pool.py`)       | here |
//! |-------------------------------------------|------|
//! | `_taskqueue` (`queue.SimpleQueue`)        | `std::sync::mpsc` channel of batches |
//! | `_inqueue` / `_outqueue` (`SimpleQueue`)   | one pipe each, every worker's stdin / stdout |
//! | `_inqueue._rlock`, `_outqueue._wlock`     | lock pipes holding one token byte each |
//! | `_cache` (`_PoolCache`)                   | `HashMap<u64, Arc<Job>>`, notifying when it empties |
//! | `_pool`                                   | the worker list: [`Worker`] entries |
//! | `_handle_workers` / `_handle_tasks` / `_handle_results` | the three handler threads |
//! | `_change_notifier`                        | a self-pipe the worker handler polls |
//!
//! Why it hangs: the parent keeps the worker-side ends of both queues open (it
//! hands them to every replacement worker, as CPython does), so a worker's
//! death is never an end-of-file anywhere. The worker handler sees the death
//! (it polls the pidfds, as CPython waits on process sentinels), but only to
//! reap and replace the worker: nobody records which task the dead worker had
//! taken off the shared inqueue, so its job stays in the cache for ever, and
//! with it `map`, `get`, `close(); join()`. A worker that dies holding a lock
//! takes the token with it: killed idle, it held the rlock (it sits in its
//! locked `read()` of the inqueue) and no worker ever takes a task again;
//! killed mid-write of a large result, it leaves a torn frame in the outqueue
//! and the wlock gone.
//!
//! At the worker-side fault points it does what CPython does: a worker
//! that dies as it starts (`init`, `recycle`: CPython's initializer runs
//! before the worker's loop) holds no lock and no task, and is replaced
//! (one that always dies is replaced for ever, as in CPython); one that
//! dies with a task frame half read (`transport`) holds the inqueue's read
//! lock (`SimpleQueue.get` reads under `_rlock`): no worker takes a task
//! again; one that dies encoding its result (`encode-result`) holds no lock
//! (`SimpleQueue.put` pickles before it takes `_wlock`) but loses its task;
//! one that dies after its result is written (`after-result`) held nothing
//! and lost nothing. With `max_tasks_per_worker` (`maxtasksperchild`) a
//! worker exits after that many tasks and the worker handler replaces it.
//!
//! Where it deliberately differs from CPython: no thread of the pool may block
//! for ever once the pool is terminated or dropped. Every blocking read or
//! write of a handler polls together with a stop pipe, on the parent's own
//! `O_NONBLOCK` descriptions of the pipe ends; `terminate` SIGKILLs the
//! workers (CPython sends SIGTERM) and never takes a lock. CPython's
//! `terminate` takes the inqueue's rlock (`_help_stuff_finish`) and the
//! outqueue's wlock (`outqueue.put(None)`), so it can itself hang on a lock a
//! dead worker holds.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::fault;
use crate::job::{AsyncResult, Callbacks, Guard, Job};
use crate::outcome::{Exit, TaskError};
use crate::pool::{PoolConfig, PoolError};
use crate::process::{self, Child, LOCK_FDS_ENV, MAX_TASKS_ENV, Spawn, WorkerProgram};
use crate::task::Task;
use crate::wire::{self, Frames, FromWorker, TaskRef, ToWorker};

/// The three handler threads, as in CPython.
const HANDLERS: usize = 3;
/// How long the worker handler waits after a failed poll.
const RESPAWN_BACKOFF: Duration = Duration::from_millis(100);
/// How much the result handler reads at a time.
const READ_CHUNK: usize = 64 << 10;

/// CPython's pool states (`RUN`, `CLOSE`, `TERMINATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Run,
    Close,
    Terminate,
}

/// A worker the pool reaped, as told to the reap hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub pid: u32,
    pub exit: Exit,
    /// The pool had asked for this exit: it sent the workers their `Stop`
    /// sentinels, or has a task limit (and the worker exited with 0), or it
    /// is terminating.
    pub expected: bool,
}

/// Told of every worker the pool reaps, exactly once per worker, on the
/// thread that reaped it. Must not block.
pub(crate) type ReapHook = Box<dyn Fn(Reaped) + Send + Sync>;

/// Why a handler's blocking step gave up.
#[derive(Debug, thiserror::Error)]
enum Halt {
    #[error("the pool was terminated")]
    Stopped,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Errno> for Halt {
    fn from(e: Errno) -> Self {
        Halt::Io(e.into())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A message on the taskqueue: a job's tasks, or the handler's stop sentinel
/// (CPython's `None`).
enum TaskMsg {
    Batch { job: u64, tasks: Vec<Task> },
    Sentinel,
}

/// A self-pipe that a handler polls; readable once signalled.
struct Wakeup {
    read: OwnedFd,
    write: OwnedFd,
}

impl Wakeup {
    fn new() -> io::Result<Wakeup> {
        let (read, write) = process::pipe()?;
        process::set_nonblocking(read.as_fd())?;
        process::set_nonblocking(write.as_fd())?;
        Ok(Wakeup { read, write })
    }

    fn signal(&self) {
        // A full pipe is already signalled.
        let _ = rustix::io::write(&self.write, &[1]);
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }
}

/// A cross-process lock: a pipe holding one token byte. Take it by reading
/// the byte, give it back by writing it. A holder that dies keeps it.
struct LockPipe {
    take: OwnedFd,
    give: OwnedFd,
}

impl LockPipe {
    fn new() -> io::Result<LockPipe> {
        let (take, give) = process::pipe()?;
        rustix::io::write(&give, &[1])?;
        Ok(LockPipe { take, give })
    }
}

/// The shared queues and their locks: every end the parent holds.
struct Queues {
    /// Every worker's stdin. Kept open for the workers still to come.
    inqueue_read: OwnedFd,
    /// The task handler's end; only the parent has it, so it is `O_NONBLOCK`.
    inqueue_write: OwnedFd,
    /// The result handler's end; only the parent has it, so it is `O_NONBLOCK`.
    outqueue_read: OwnedFd,
    /// Every worker's stdout. Kept open, as CPython keeps its queue: no
    /// worker's death is ever an end-of-file for the result handler.
    outqueue_write: OwnedFd,
    /// The parent's own non-blocking description of the outqueue's write
    /// end, for the sentinel (the workers' description must stay blocking).
    outqueue_write_nb: OwnedFd,
    rlock: LockPipe,
    wlock: LockPipe,
    /// The parent's own non-blocking description of the wlock's read end.
    wlock_take_nb: OwnedFd,
}

impl Queues {
    fn new() -> io::Result<Queues> {
        let (inqueue_read, inqueue_write) = process::pipe()?;
        let (outqueue_read, outqueue_write) = process::pipe()?;
        process::set_nonblocking(inqueue_write.as_fd())?;
        process::set_nonblocking(outqueue_read.as_fd())?;
        let outqueue_write_nb = reopen_nonblocking(outqueue_write.as_fd(), OFlags::WRONLY)?;
        let rlock = LockPipe::new()?;
        let wlock = LockPipe::new()?;
        let wlock_take_nb = reopen_nonblocking(wlock.take.as_fd(), OFlags::RDONLY)?;
        Ok(Queues {
            inqueue_read,
            inqueue_write,
            outqueue_read,
            outqueue_write,
            outqueue_write_nb,
            rlock,
            wlock,
            wlock_take_nb,
        })
    }
}

/// Opens a second, private file description of a pipe end, so the parent can
/// use it `O_NONBLOCK` without changing the one the workers share.
fn reopen_nonblocking(fd: BorrowedFd<'_>, access: OFlags) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::open(path.as_str(), access | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?)
}

/// One entry of the worker list (CPython's `Pool._pool`): a worker process
/// that can be sampled like `Process.is_alive()` and `Process.exitcode`.
pub(crate) struct Worker {
    pid: u32,
    /// A second pidfd, polled without taking the child's lock.
    watch: OwnedFd,
    child: Mutex<Child>,
    reported: AtomicBool,
}

impl Worker {
    fn new(child: Child) -> io::Result<Worker> {
        let watch = child.pidfd().try_clone_to_owned()?;
        Ok(Worker { pid: child.pid(), watch, child: Mutex::new(child), reported: AtomicBool::new(false) })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, reaping it if it has exited; never blocks
    /// (`Process.exitcode`, which reaps too).
    pub(crate) fn exitcode(&self) -> Option<Exit> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// `Process.is_alive()`.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }

    fn kill_and_reap(&self) -> io::Result<Exit> {
        lock(&self.child).kill_and_reap()
    }

    /// Waits for it to exit by itself, until `deadline`.
    fn wait_exit(&self, deadline: Option<Instant>) -> Option<Exit> {
        loop {
            match lock(&self.child).try_wait() {
                Ok(Some(exit)) => return Some(exit),
                Ok(None) => {}
                Err(_) => return None,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return None;
            }
            let _ = process::poll_one(self.watch.as_fd(), PollFlags::IN, left);
        }
    }
}

/// The pool's state and its job cache, under one lock so that a submission
/// and a state change never cross.
struct Shared {
    state: State,
    cache: HashMap<u64, Arc<Job>>,
}

/// Everything the handler threads share.
struct Inner {
    program: WorkerProgram,
    processes: usize,
    /// CPython's `maxtasksperchild`: a worker exits (code 0) after this many tasks.
    max_tasks: Option<u32>,
    queues: Queues,
    shared: Mutex<Shared>,
    workers: Mutex<Vec<Arc<Worker>>>,
    taskqueue: Sender<TaskMsg>,
    next_job: AtomicU64,
    /// Wakes the worker handler (CPython's `_change_notifier`).
    notifier: Wakeup,
    /// Readable for ever once the pool is terminated; every handler polls it.
    stop: Wakeup,
    stopped: AtomicBool,
    /// The task handler has sent the workers their `Stop` sentinels.
    stops_sent: AtomicBool,
    on_reap: Option<ReapHook>,
    /// How many handler threads have finished, for `join_timeout`.
    finished: Mutex<usize>,
    finished_cv: Condvar,
}

/// Counts a handler thread as finished when it returns or unwinds.
struct Finished<'a>(&'a Inner);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        *lock(&self.0.finished) += 1;
        self.0.finished_cv.notify_all();
    }
}

impl Inner {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn workers_snapshot(&self) -> Vec<Arc<Worker>> {
        lock(&self.workers).clone()
    }

    fn spawn_worker(&self) -> io::Result<Worker> {
        let q = &self.queues;
        let inherit = [&q.rlock.take, &q.rlock.give, &q.wlock.take, &q.wlock.give]
            .into_iter()
            .map(|fd| (fd.as_fd(), LOCK_FDS_ENV))
            .collect();
        let child = Child::spawn(
            &self.program,
            Spawn {
                mode: "shared",
                stdin: q.inqueue_read.try_clone()?,
                stdout: q.outqueue_write.try_clone()?,
                inherit,
                env: self.max_tasks.map(|n| (MAX_TASKS_ENV, n.to_string().into())).into_iter().collect(),
                // CPython's workers do not die with their owner.
                die_with_parent: false,
            },
        )?;
        Worker::new(child)
    }

    /// Brings the worker list up to `processes` (`_repopulate_pool`).
    fn repopulate(&self) -> io::Result<()> {
        while lock(&self.workers).len() < self.processes {
            let worker = Arc::new(self.spawn_worker()?);
            lock(&self.workers).push(worker);
        }
        Ok(())
    }

    /// Reaps exited workers and drops them from the list
    /// (`_join_exited_workers`); returns whether any had exited.
    fn join_exited_workers(&self) -> bool {
        let mut exited = Vec::new();
        lock(&self.workers).retain(|worker| match worker.exitcode() {
            Some(exit) => {
                exited.push((worker.clone(), exit));
                false
            }
            None => true,
        });
        for (worker, exit) in &exited {
            self.report(worker, *exit);
        }
        !exited.is_empty()
    }

    /// Tells the reap hook, once per worker.
    fn report(&self, worker: &Worker, exit: Exit) {
        if worker.reported.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(hook) = &self.on_reap {
            // With a task limit, a worker exits 0 when it has run its tasks.
            let asked_to_stop =
                (self.stops_sent.load(Ordering::SeqCst) || self.max_tasks.is_some()) && exit == Exit::Code(0);
            hook(Reaped { pid: worker.pid, exit, expected: self.stopped() || asked_to_stop });
        }
    }

    /// `_maintain_pool`: reap, then repopulate. A failed spawn is an error
    /// for the worker handler, which dies of it, as CPython's does.
    fn maintain_pool(&self) -> io::Result<()> {
        let cleaned = self.join_exited_workers();
        if cleaned || lock(&self.workers).len() < self.processes { self.repopulate() } else { Ok(()) }
    }

    /// The worker handler's loop condition: `RUN`, or `CLOSE` while the cache
    /// still holds jobs.
    fn keeps_maintaining(&self) -> bool {
        let shared = self.shared();
        match shared.state {
            State::Run => true,
            State::Close => !shared.cache.is_empty(),
            State::Terminate => false,
        }
    }

    /// `_wait_for_updates`: sleeps until a worker exits, the notifier is
    /// signalled or the pool stops.
    fn wait_for_updates(&self, timeout: Option<Duration>) {
        let workers = self.workers_snapshot();
        let mut fds: Vec<PollFd<'_>> = workers.iter().map(|w| PollFd::new(&w.watch, PollFlags::IN)).collect();
        fds.push(PollFd::new(&self.notifier.read, PollFlags::IN));
        fds.push(PollFd::new(&self.stop.read, PollFlags::IN));
        if process::poll(&mut fds, timeout).is_err() {
            thread::sleep(RESPAWN_BACKOFF);
        }
        self.notifier.drain();
    }

    /// Waits until `fd` is ready for `events`, or the pool stops.
    fn wait_ready(&self, fd: BorrowedFd<'_>, events: PollFlags) -> Result<(), Halt> {
        let mut fds = [PollFd::new(&fd, events), PollFd::new(&self.stop.read, PollFlags::IN)];
        process::poll(&mut fds, None)?;
        if self.stopped() { Err(Halt::Stopped) } else { Ok(()) }
    }

    /// Writes all of `buf` to a non-blocking `fd`, giving up if the pool stops.
    fn write_all(&self, fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Halt> {
        while !buf.is_empty() {
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            match rustix::io::write(fd, buf) {
                Ok(n) => buf = &buf[n..],
                Err(Errno::AGAIN) => self.wait_ready(fd, PollFlags::OUT)?,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads what a non-blocking `fd` has (waiting for something), giving up
    /// if the pool stops.
    fn read_some(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Halt> {
        loop {
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            match rustix::io::read(fd, &mut *buf) {
                Ok(n) => return Ok(n),
                Err(Errno::AGAIN) => self.wait_ready(fd, PollFlags::IN)?,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes the outqueue's write lock, as `SimpleQueue.put` does.
    fn take_wlock(&self) -> Result<(), Halt> {
        let mut token = [0u8];
        match self.read_some(self.queues.wlock_take_nb.as_fd(), &mut token)? {
            1 => Ok(()),
            _ => Err(Halt::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "lock pipe closed"))),
        }
    }

    fn give_wlock(&self) {
        // The lock pipe never holds more than its one token: this cannot block.
        let _ = rustix::io::write(&self.queues.wlock.give, &[1]);
    }

    /// The end of `_handle_tasks`: tells the result handler to finish (under
    /// the wlock, like `outqueue.put(None)`), then puts one `Stop` per worker.
    fn send_sentinels(&self) -> Result<(), Halt> {
        self.stops_sent.store(true, Ordering::SeqCst);
        self.take_wlock()?;
        let sent = self.write_all(self.queues.outqueue_write_nb.as_fd(), &wire::encode(&FromWorker::Sentinel));
        self.give_wlock();
        sent?;
        let stop = wire::encode(&ToWorker::Stop);
        for _ in 0..lock(&self.workers).len() {
            self.write_all(self.queues.inqueue_write.as_fd(), &stop)?;
        }
        Ok(())
    }

    /// Puts one job's tasks on the inqueue, in order. A task that fails to
    /// encode fails alone, with what it raised, as in `_handle_tasks`
    /// (`except Exception as e: cache[job]._set(idx, (False, e))`); a
    /// deadly or stalling fault there ends or stalls this thread's process
    /// or this thread.
    fn put_tasks(&self, job: u64, tasks: Vec<Task>) -> Result<(), Halt> {
        let mut frame = Vec::new();
        for (index, task) in tasks.into_iter().enumerate() {
            frame.clear();
            let id = TaskRef { job, index: index as u32 };
            if let Err(message) = fault::fire_encode(&task, 0) {
                self.deliver(id, Err(message));
                continue;
            }
            wire::encode_into(&ToWorker::Run { id, attempt: 0, task }, &mut frame);
            self.write_all(self.queues.inqueue_write.as_fd(), &frame)?;
        }
        Ok(())
    }

    /// `cache[job]._set(i, obj)`: delivers one result; a completed job leaves
    /// the cache, and an emptied cache wakes the worker handler.
    fn deliver(&self, id: TaskRef, result: Result<Vec<u8>, String>) {
        let Some(job) = self.shared().cache.get(&id.job).cloned() else {
            return;
        };
        job.set(id.index as usize, result.map(Bytes::from).map_err(|message| TaskError::Task { message }));
        if job.pending() > 0 {
            return;
        }
        let emptied = {
            let mut shared = self.shared();
            shared.cache.remove(&id.job);
            shared.cache.is_empty()
        };
        if emptied {
            self.notifier.signal();
        }
    }

    /// How many handler threads have finished, waiting for `count` until
    /// `deadline`.
    fn wait_handlers(&self, count: usize, deadline: Option<Instant>) -> bool {
        let mut finished = lock(&self.finished);
        while *finished < count {
            finished = match deadline {
                None => self.finished_cv.wait(finished).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.finished_cv.wait_timeout(finished, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        true
    }
}

/// `_handle_workers`: keeps N workers while `RUN`, or while `CLOSE` and jobs
/// are cached; then tells the task handler to finish.
///
/// A worker that cannot be started (the kernel refuses the fork: EAGAIN
/// once the run's `pids.max` is reached) ends this thread, as in CPython
/// 3.11: `Process.start()` raises `BlockingIOError` out of
/// `_repopulate_pool_static` (`w.start()`, pool.py line 329), through
/// `_maintain_pool` and out of `_handle_workers`, which dies (the error is
/// printed by `threading.excepthook`) without `taskqueue.put(None)`. The
/// pool goes on with the workers it has; nothing replaces a worker again,
/// the task handler never gets its sentinel, so `join` waits for ever, and
/// a lost task stays lost.
fn handle_workers(inner: &Inner) {
    while inner.keeps_maintaining() {
        if let Err(e) = inner.maintain_pool() {
            eprintln!("worker-handler: cannot start a worker ({e}); the thread ends, as CPython's does");
            return;
        }
        inner.wait_for_updates(None);
    }
    let _ = inner.taskqueue.send(TaskMsg::Sentinel);
}

/// `_handle_tasks`: moves tasks from the taskqueue to the inqueue until the
/// sentinel, then sends the sentinels on.
fn handle_tasks(inner: &Inner, taskqueue: Receiver<TaskMsg>) {
    while let Ok(TaskMsg::Batch { job, tasks }) = taskqueue.recv() {
        if inner.stopped() || inner.put_tasks(job, tasks).is_err() {
            return;
        }
    }
    if !inner.stopped() {
        let _ = inner.send_sentinels();
    }
}

/// The next message on the outqueue: out of `frames` if a whole one is
/// buffered, else after reads of up to 64 KiB (waiting while there is
/// nothing, unless the pool is stopped).
fn next_result(frames: &mut Frames, inner: &Inner) -> Result<FromWorker, Halt> {
    let fd = inner.queues.outqueue_read.as_fd();
    loop {
        if let Some(frame) = frames.next_frame()? {
            // A result that fails to decode ends the result handler, as an
            // unpickling error that is no `OSError`/`EOFError` escapes
            // `_handle_results`' `get()` and kills its thread.
            return Ok(fault::decode_result(frame).map_err(io::Error::from)?.into_owned());
        }
        if inner.stopped() {
            return Err(Halt::Stopped);
        }
        match frames.read_from(fd, READ_CHUNK) {
            // Cannot happen while the parent holds the write end.
            Ok(0) => return Err(Halt::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => inner.wait_ready(fd, PollFlags::IN)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `_handle_results`: delivers results until the sentinel, then while the
/// cache still holds jobs. A result that fails to decode ends it (see
/// [`next_result`]), and a callback that panics unwinds it: callbacks run on
/// this thread, unguarded, as in `ApplyResult._set`, so the job is never
/// marked ready nor leaves the cache, and nothing more is delivered; the
/// pool hangs, `close(); join()` too. Stuck for ever inside a torn frame, as CPython is,
/// until the pool is terminated.
fn handle_results(inner: &Inner) {
    let mut frames = Frames::new();
    let mut sentinel_seen = false;
    while !sentinel_seen || !inner.shared().cache.is_empty() {
        let Ok(msg) = next_result(&mut frames, inner) else { return };
        if inner.stopped() {
            return;
        }
        match msg {
            FromWorker::Done { id, result } | FromWorker::Armed { id, result, .. } => inner.deliver(id, result),
            FromWorker::Sentinel => sentinel_seen = true,
            FromWorker::Recycling { .. } => {}
        }
    }
}

/// A CPython-style pool: the queues, the cache, the worker list and the three
/// handler threads. Dropping it terminates it.
pub(crate) struct SharedQueue {
    inner: Arc<Inner>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl SharedQueue {
    /// Starts `config.workers` workers and the handler threads. `on_reap`
    /// hears of every worker the pool reaps.
    pub(crate) fn new(config: &PoolConfig, on_reap: Option<ReapHook>) -> Result<SharedQueue, PoolError> {
        if config.workers == 0 {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "a pool needs at least one worker");
            return Err(PoolError::Spawn(e));
        }
        let (taskqueue, tasks) = mpsc::channel();
        let inner = Arc::new(Inner {
            program: config.program.clone(),
            processes: config.workers,
            max_tasks: config.max_tasks_per_worker,
            queues: Queues::new()?,
            shared: Mutex::new(Shared { state: State::Run, cache: HashMap::new() }),
            workers: Mutex::new(Vec::new()),
            taskqueue,
            next_job: AtomicU64::new(0),
            notifier: Wakeup::new()?,
            stop: Wakeup::new()?,
            stopped: AtomicBool::new(false),
            stops_sent: AtomicBool::new(false),
            on_reap,
            finished: Mutex::new(0),
            finished_cv: Condvar::new(),
        });
        // On failure the workers started so far are killed and reaped with `inner`.
        inner.repopulate()?;
        // From here on, dropping `pool` on failure terminates what was started.
        let pool = SharedQueue { inner, handlers: Mutex::new(Vec::new()) };
        pool.start_handler("worker-handler", handle_workers)?;
        pool.start_handler("task-handler", move |inner| handle_tasks(inner, tasks))?;
        pool.start_handler("result-handler", handle_results)?;
        Ok(pool)
    }

    fn start_handler(&self, name: &str, body: impl FnOnce(&Inner) + Send + 'static) -> io::Result<()> {
        let inner = self.inner.clone();
        let handle = thread::Builder::new().name(name.to_string()).spawn(move || {
            let _finished = Finished(&inner);
            body(&inner)
        })?;
        lock(&self.handlers).push(handle);
        Ok(())
    }

    /// `apply_async` / `map_async`: caches a job and queues its tasks.
    pub(crate) fn submit(&self, tasks: Vec<Task>, callbacks: Callbacks) -> Result<AsyncResult, PoolError> {
        if tasks.is_empty() {
            // Done at once, outside any lock (its callbacks run now).
            if self.state() != State::Run {
                return Err(PoolError::NotRunning);
            }
            let id = self.inner.next_job.fetch_add(1, Ordering::SeqCst);
            return Ok(AsyncResult::new(Arc::new(Job::new(id, 0, callbacks, Guard::Unwinds))));
        }
        let mut shared = self.inner.shared();
        if shared.state != State::Run {
            return Err(PoolError::NotRunning);
        }
        let id = self.inner.next_job.fetch_add(1, Ordering::SeqCst);
        let job = Arc::new(Job::new(id, tasks.len(), callbacks, Guard::Unwinds));
        shared.cache.insert(id, job.clone());
        // The task handler holds the receiver for as long as `inner` lives.
        let _ = self.inner.taskqueue.send(TaskMsg::Batch { job: id, tasks });
        Ok(AsyncResult::new(job))
    }

    /// No more submissions; the workers are stopped once the cache is empty.
    pub(crate) fn close(&self) {
        let mut shared = self.inner.shared();
        if shared.state == State::Run {
            shared.state = State::Close;
            drop(shared);
            self.inner.notifier.signal();
        }
    }

    /// Stops every handler thread, then SIGKILLs and reaps every worker.
    /// Pending jobs stay pending, as in CPython. Idempotent.
    pub(crate) fn terminate(&self) {
        let inner = &self.inner;
        inner.shared().state = State::Terminate;
        inner.stopped.store(true, Ordering::SeqCst);
        inner.stop.signal();
        let _ = inner.taskqueue.send(TaskMsg::Sentinel);
        self.join_handlers();
        for worker in inner.workers_snapshot() {
            if let Ok(exit) = worker.kill_and_reap() {
                inner.report(&worker, exit);
            }
        }
    }

    fn join_handlers(&self) {
        let handles = std::mem::take(&mut *lock(&self.handlers));
        let me = thread::current().id();
        for handle in handles {
            // A callback running on a handler thread may terminate the pool:
            // that thread finishes by itself once it returns.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }

    /// CPython's `join`: after `close` or `terminate`, waits for the worker
    /// handler, the task handler, the result handler, then every worker.
    pub(crate) fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), PoolError> {
        if self.state() == State::Run {
            return Err(PoolError::StillRunning);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        if !self.inner.wait_handlers(HANDLERS, deadline) {
            return Err(self.timed_out());
        }
        self.join_handlers();
        // The handlers are gone: the list no longer changes, dead entries stay.
        for worker in self.inner.workers_snapshot() {
            match worker.wait_exit(deadline) {
                Some(exit) => self.inner.report(&worker, exit),
                None => return Err(self.timed_out()),
            }
        }
        Ok(())
    }

    fn timed_out(&self) -> PoolError {
        PoolError::TimedOut { pending: self.pending() }
    }

    pub(crate) fn state(&self) -> State {
        self.inner.shared().state
    }

    /// Tasks of cached jobs still owed an outcome.
    pub(crate) fn pending(&self) -> usize {
        self.inner.shared().cache.values().map(|job| job.pending()).sum()
    }

    /// Empties the cache, returning the jobs it held.
    pub(crate) fn take_cache(&self) -> Vec<Arc<Job>> {
        self.inner.shared().cache.drain().map(|(_, job)| job).collect()
    }

    /// The worker list as it is now (CPython's `pool._pool`).
    pub(crate) fn workers(&self) -> Vec<Arc<Worker>> {
        self.inner.workers_snapshot()
    }

    /// The pids of the listed workers that are alive.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.workers().iter().filter(|w| w.is_alive()).map(|w| w.pid()).collect()
    }
}

impl Drop for SharedQueue {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_pipe_end_is_nonblocking_and_leaves_the_shared_one_blocking() {
        let lock = LockPipe::new().unwrap();
        let private = reopen_nonblocking(lock.take.as_fd(), OFlags::RDONLY).unwrap();
        let shared_flags = rustix::fs::fcntl_getfl(&lock.take).unwrap();
        assert!(!shared_flags.contains(OFlags::NONBLOCK));
        let mut token = [0u8];
        assert_eq!(rustix::io::read(&private, &mut token), Ok(1), "the same pipe: it holds the token");
        assert_eq!(rustix::io::read(&private, &mut token), Err(Errno::AGAIN));
    }
}
