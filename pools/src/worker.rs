//! The worker runtime: what runs inside every worker process (the
//! `poolchaos-worker` binary), for every pool.
//!
//! Two channel modes:
//! - `private` (supervised, per-task, ...): its own stdin/stdout pipes.
//!   Reads are buffered ([`wire::Frames`]: frames are decoded straight out
//!   of the buffer); results are batched and written when the input buffer
//!   runs dry (before the worker would block), when 32 KiB are waiting,
//!   after a task that took 200 µs or more, or when the oldest waiting
//!   result is 200 µs old, as the clock says when it is read (see
//!   [`Clock`]: with no deadline, not at every task). Exits on EOF.
//! - `forkserver` (per-task, supervised): forks a child per task that runs the private
//!   loop; see [`crate::fork_server`].
//! - `echo-frames`, `fork-wait`: the floor measurements of the benches; see
//!   `floor.rs`.
//! - `shared` (naive, seed-polling, polling): CPython's design. stdin is the
//!   inqueue and stdout the outqueue, shared by every worker; a worker takes
//!   the inqueue's read lock around its read of one task and the outqueue's
//!   write lock around its write of one result. A lock is a one-byte token in
//!   a pipe: read it to take the lock, write it back to give it up. A worker
//!   that dies holding it takes the token to its grave, as a process holding
//!   a CPython `multiprocessing.Lock` does.
//!
//! In private mode with a scoreboard (supervised), the worker records on it
//! which task it runs (see [`crate::scoreboard`]).
//!
//! With a trace fd, the worker writes `start <tag> <attempt> <pid>` before
//! each task and `done ...` after it, for tests and the harness; in private
//! mode also `up 0 0 <pid>` once it got past its start (so the harness can
//! hold a pool's worker count against its plan).
//!
//! The self-placed faults are met here, as the loop reaches each point
//! [`FaultPoint`] names (a task frame's first bytes, taking it, running it,
//! encoding and writing its result), and fire in [`crate::fault`], which
//! says where each one is met. In shared mode the worker holds the
//! inqueue's read lock at `transport` (with the rest of the frame in the
//! pipe), and fires `encode-result` before it takes the outqueue's write
//! lock, as CPython pickles before it takes it.
//!
//! With `POOLCHAOS_MAX_TASKS` a worker stops after that many tasks: in
//! shared mode it exits (CPython's `maxtasksperchild`), in private mode it
//! says `Recycling` first.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::fault;
use crate::process::{LOCK_FDS_ENV, MAX_TASKS_ENV, OOM_SCORE_ADJ_ENV, RSS_CEILING_ENV, TRACE_FD_ENV};
use crate::scoreboard::{SCOREBOARD_FD_ENV, Scoreboard, TIMED_ENV};
use crate::task::{FaultPoint, Task, Workload};
use crate::wire::{self, Frames, FromWorker, TaskRef, ToWorker};

const FLUSH_BYTES: usize = 32 << 10;
/// The most a worker reads from its task pipe at once.
const READ_BYTES: usize = 64 << 10;
const FLUSH_AGE: Duration = Duration::from_micros(200);

/// Entry point of the worker binary. Returns the process exit code.
pub fn main(mode: &str) -> i32 {
    // A panicking task is reported as the task's error; keep stderr quiet.
    std::panic::set_hook(Box::new(|_| {}));
    // In a sandbox the harness asks that the OOM killer pick workers first.
    if let Ok(adj) = std::env::var(OOM_SCORE_ADJ_ENV)
        && let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.trim())
    {
        eprintln!("poolchaos-worker: cannot set oom_score_adj: {e}");
    }
    let result = match mode {
        "private" => Env::from_env().and_then(run_private),
        "shared" => Env::from_env().and_then(run_shared),
        // per-task's fork server: each child it forks runs the private loop.
        "forkserver" => crate::fork_server::serve(|| exit_code(Env::from_env().and_then(run_private))),
        "echo-frames" | "fork-wait" => crate::floor::run(mode),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unknown worker mode {mode:?}"))),
    };
    exit_code(result)
}

/// The worker's exit code for how its loop ended.
fn exit_code(result: io::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        // The pool went away mid-write (EPIPE) or sent garbage: nothing left to do.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("poolchaos-worker: {e}");
            3
        }
    }
}

struct Env {
    trace: Option<File>,
    scoreboard: Option<Scoreboard>,
    locks: Option<[RawFd; 4]>,
    rss_ceiling_kib: Option<u64>,
    /// The pool enforces deadlines: each task's times go on the scoreboard.
    timed: bool,
    /// Tasks to run before stopping (`MAX_TASKS_ENV`).
    max_tasks: Option<u64>,
    pid: u32,
}

impl Env {
    fn from_env() -> io::Result<Env> {
        let fd = |s: &str| -> io::Result<RawFd> {
            s.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad fd {s:?}")))
        };
        let trace = match std::env::var(TRACE_FD_ENV) {
            // SAFETY: the pool passed us this fd, open and ours alone in this process.
            Ok(s) => Some(File::from(unsafe { OwnedFd::from_raw_fd(fd(&s)?) })),
            Err(_) => None,
        };
        if let Some(trace) = &trace {
            // Never let a slow trace reader stall a worker.
            crate::process::set_nonblocking(std::os::fd::AsFd::as_fd(trace))?;
        }
        let locks = match std::env::var(LOCK_FDS_ENV) {
            Ok(s) => {
                let fds = s.split(',').map(fd).collect::<io::Result<Vec<_>>>()?;
                Some(<[RawFd; 4]>::try_from(fds).map_err(|_| io::Error::other("need 4 lock fds"))?)
            }
            Err(_) => None,
        };
        let rss_ceiling_kib = std::env::var(RSS_CEILING_ENV).ok().and_then(|s| s.parse().ok());
        let scoreboard = match std::env::var(SCOREBOARD_FD_ENV) {
            // SAFETY: as for the trace fd.
            Ok(s) => Some(Scoreboard::map(unsafe { OwnedFd::from_raw_fd(fd(&s)?) })?),
            Err(_) => None,
        };
        let timed = std::env::var_os(TIMED_ENV).is_some();
        let max_tasks = std::env::var(MAX_TASKS_ENV).ok().and_then(|s| s.parse().ok());
        Ok(Env { trace, scoreboard, locks, rss_ceiling_kib, timed, max_tasks, pid: std::process::id() })
    }

    /// Writes `<what> <tag> <attempt> <pid>` to the trace, if there is one:
    /// `start` before a task runs, `done` once it has its result.
    fn trace(&mut self, what: &str, task: &Task, attempt: u32) {
        if let Some(trace) = &mut self.trace {
            // One write of < PIPE_BUF bytes: atomic among the workers.
            let line = format!("{what} {} {} {}\n", task.tag, attempt, self.pid);
            let _ = trace.write(line.as_bytes());
        }
    }
}

/// Memory held by `Alloc { hold: true }` tasks, for the worker's life.
static HELD: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn run_private(mut env: Env) -> io::Result<()> {
    fault::take_start_token();
    if let Some(board) = &env.scoreboard {
        board.ready();
    }
    if let Some(trace) = &mut env.trace {
        let _ = trace.write(format!("up 0 0 {}\n", env.pid).as_bytes());
    }
    let mut input = Frames::new();
    // SAFETY: fd 1 is the results pipe the pool gave us; nothing else owns it here.
    let mut output = unsafe { File::from_raw_fd(1) };
    let mut out = Vec::with_capacity(FLUSH_BYTES * 2);
    // When the oldest result waiting in `out` was finished (as the clock last said).
    let mut oldest_unflushed: Option<Duration> = None;
    let mut n = 0u64;
    let mut clock = Clock::new(env.timed);
    loop {
        if input.is_empty() && !out.is_empty() {
            output.write_all(&out)?;
            out.clear();
            oldest_unflushed = None;
        }
        let peek = |first: &[u8]| {
            if let Some(kind) = fault::transport(first) {
                // The task being taken is the one its supervisor blames.
                clock.start(env.scoreboard.as_ref(), n + 1);
                fault::fire(kind);
            }
        };
        let Some(message) = next_message(&mut input, peek)? else { break };
        let (id, attempt, task) = match message {
            ToWorker::Run { id, attempt, task } => (id, attempt, task),
            ToWorker::Stop => break,
        };
        n += 1;
        let started = clock.start(env.scoreboard.as_ref(), n);
        env.trace("start", &task, attempt);
        let result = execute(&task, attempt);
        env.trace("done", &task, attempt);
        let result = fault::encoding(&task, attempt, result);
        let at = out.len();
        wire::encode_into(&fault::armed(id, &task, attempt, result), &mut out);
        if let Some(fault) = fault::placed(&task, attempt, FaultPoint::WriteResult) {
            let frame = out.split_off(at);
            output.write_all(&out)?;
            out.clear();
            fault::die_writing(&mut output, &frame, fault)?;
        }
        // Finished only once its result is in our hands: a result lost with
        // the buffer is re-run, a task that dies writing it is blamed.
        let finished = clock.finish(env.scoreboard.as_ref(), n, started);
        // A slow task's result goes at once (a write is nothing beside it,
        // and the next task may be as slow); quick ones go in batches.
        let due = finished.is_some_and(|(at, took)| {
            let oldest = *oldest_unflushed.get_or_insert(at);
            took >= FLUSH_AGE || at.saturating_sub(oldest) >= FLUSH_AGE
        });
        let after = fault::placed(&task, attempt, FaultPoint::AfterResult);
        if out.len() >= FLUSH_BYTES || due || after.is_some() {
            output.write_all(&out)?;
            out.clear();
            oldest_unflushed = None;
        }
        if let Some(f) = after {
            fault::after_result(f.kind);
        }
        let over = fault::over_ceiling(env.rss_ceiling_kib);
        if over.is_some() || env.max_tasks.is_some_and(|max| n >= max) {
            let rss_kib = over.or_else(fault::rss_kib).unwrap_or(0);
            wire::encode_into(&FromWorker::Recycling { rss_kib }, &mut out);
            break;
        }
    }
    output.write_all(&out)
}

/// Most tasks between two clock reads when nobody needs their times.
const MAX_STRIDE: u32 = 16;

/// The worker's clock. With a deadline (`timed`) each task's start and end
/// are read and stored on the scoreboard, which the supervisor's deadlines
/// need. Without one the scoreboard gets the task numbers only, and the
/// clock, needed only to decide when to flush, is read once every `stride`
/// tasks: every task while tasks take 100 µs or more, up to every 16th while
/// 16 of them take under 25 µs.
struct Clock {
    timed: bool,
    stride: u32,
    left: u32,
    last: Duration,
}

impl Clock {
    fn new(timed: bool) -> Clock {
        Clock { timed, stride: 1, left: 1, last: now() }
    }

    /// Task `n` starts; its start time, when read.
    fn start(&mut self, board: Option<&Scoreboard>, n: u64) -> Option<Duration> {
        match board {
            Some(board) if self.timed => {
                let at = now();
                board.start_at(n, at);
                Some(at)
            }
            Some(board) => {
                board.start(n);
                None
            }
            None => None,
        }
    }

    /// Task `n` is finished; when (if the clock was read) and how long it,
    /// or the tasks since the last read on average, took.
    fn finish(
        &mut self,
        board: Option<&Scoreboard>,
        n: u64,
        started: Option<Duration>,
    ) -> Option<(Duration, Duration)> {
        if let (Some(board), Some(started)) = (board, started) {
            let at = now();
            board.finish_at(n, at);
            self.last = at;
            return Some((at, at.saturating_sub(started)));
        }
        if let Some(board) = board {
            board.finish(n);
        }
        self.left -= 1;
        if self.left > 0 {
            return None;
        }
        let at = now();
        let elapsed = at.saturating_sub(self.last);
        let each = elapsed / self.stride;
        self.stride = if elapsed < Duration::from_micros(25) {
            (self.stride * 2).min(MAX_STRIDE)
        } else if each >= Duration::from_micros(100) {
            1
        } else {
            self.stride
        };
        (self.left, self.last) = (self.stride, at);
        Some((at, each))
    }
}

fn now() -> Duration {
    Duration::from_nanos(crate::scoreboard::now_ns())
}

/// The next message from the pool (fd 0), decoded straight out of the
/// read buffer; reads (64 KiB at a time) only when no whole frame is
/// buffered. `None` at a clean end of input. `peek` sees the first bytes
/// of a frame still arriving.
fn next_message(input: &mut Frames, mut peek: impl FnMut(&[u8])) -> io::Result<Option<ToWorker>> {
    loop {
        if let Some(frame) = input.next_frame()? {
            return wire::decode(frame).map(Some);
        }
        if let Some(first) = input.partial() {
            peek(first);
        }
        match input.read_from(rustix::stdio::stdin(), READ_BYTES) {
            Ok(0) if input.is_empty() => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input ended inside a frame")),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn run_shared(mut env: Env) -> io::Result<()> {
    let [rlock_r, rlock_w, wlock_r, wlock_w] =
        env.locks.ok_or_else(|| io::Error::other("shared mode needs the lock fds"))?;
    // SAFETY: fds 0 and 1 are the shared queues and the lock fds were
    // inherited for us; each is wrapped once and lives as long as the process.
    let (mut inqueue, mut outqueue) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let rlock = unsafe { Lock { take: File::from_raw_fd(rlock_r), give: File::from_raw_fd(rlock_w) } };
    let wlock = unsafe { Lock { take: File::from_raw_fd(wlock_r), give: File::from_raw_fd(wlock_w) } };
    fault::take_start_token();
    let mut ran = 0u64;
    // CPython's `maxtasksperchild`: the worker exits after that many tasks.
    while env.max_tasks.is_none_or(|max| ran < max) {
        ran += 1;
        // The read of one task happens under the inqueue's lock; an idle
        // worker sits here holding it.
        rlock.take()?;
        let frame = wire::read_frame_peeking(&mut inqueue, READ_BYTES, |first| {
            if let Some(kind) = fault::transport(first) {
                fault::fire(kind);
            }
        });
        rlock.give()?;
        let Some(frame) = frame? else { return Ok(()) };
        let (id, attempt, task): (TaskRef, u32, Task) = match wire::decode(&frame)? {
            ToWorker::Run { id, attempt, task } => (id, attempt, task),
            ToWorker::Stop => return Ok(()),
        };
        env.trace("start", &task, attempt);
        let result = execute(&task, attempt);
        env.trace("done", &task, attempt);
        // Encoded before the lock is taken, as CPython pickles before it
        // takes the outqueue's write lock (`SimpleQueue.put`).
        let result = fault::encoding(&task, attempt, result);
        let frame = wire::encode(&fault::armed(id, &task, attempt, result));
        wlock.take()?;
        match fault::placed(&task, attempt, FaultPoint::WriteResult) {
            Some(fault) => fault::die_writing(&mut outqueue, &frame, fault)?,
            None => outqueue.write_all(&frame)?,
        }
        wlock.give()?;
        if let Some(f) = fault::placed(&task, attempt, FaultPoint::AfterResult) {
            fault::after_result(f.kind);
        }
    }
    Ok(())
}

/// A cross-process lock that stays held if its holder dies.
struct Lock {
    take: File,
    give: File,
}

impl Lock {
    fn take(&self) -> io::Result<()> {
        let mut token = [0u8];
        match (&self.take).read(&mut token)? {
            1 => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::BrokenPipe, "lock pipe closed")),
        }
    }

    fn give(&self) -> io::Result<()> {
        (&self.give).write_all(&[1])
    }
}

/// Runs the task, firing its fault where it is placed ([`fault::fire_at`]).
/// The task's own error or panic comes back as `Err`.
fn execute(task: &Task, attempt: u32) -> Result<Vec<u8>, String> {
    let fault = task.fault.filter(|f| f.fires(attempt));
    let at = |point| fault::fire_at(fault, point);
    let run = || -> Result<Vec<u8>, String> {
        // A task that arrived whole meets its `transport` fault as it is taken.
        at(FaultPoint::Transport)?;
        at(FaultPoint::Decode)?;
        match &task.work {
            Workload::Echo(_) | Workload::Large { .. } => at(FaultPoint::MidTask)?,
            Workload::Spin { us } => {
                spin(Duration::from_micros(us / 2));
                at(FaultPoint::MidTask)?;
                spin(Duration::from_micros(us - us / 2));
            }
            Workload::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(ms / 2));
                at(FaultPoint::MidTask)?;
                std::thread::sleep(Duration::from_millis(ms - ms / 2));
            }
            Workload::Alloc { mib, hold } => {
                let total = (*mib as usize) << 20;
                let first = touched(total / 2);
                at(FaultPoint::MidTask)?;
                let second = touched(total - total / 2);
                if *hold {
                    HELD.lock().unwrap_or_else(|e| e.into_inner()).extend([first, second]);
                }
            }
        }
        // A task that fails while its result is made.
        fault::fire_making_result(fault)?;
        // The worker computes the same deterministic bytes the checker expects;
        // what the check catches is a result lost, torn, duplicated or misdelivered.
        Ok(task.expected_output())
    };
    fault::caught(run)
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// `len` bytes, every page written, so the memory is really resident.
fn touched(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&mut v);
    v
}
