//! Where every self-placed fault fires: the one module that turns a task's
//! [`Fault`] into a death, a stall or an error, at the points
//! [`FaultPoint`] names.
//!
//! - **In a worker** (called by [`crate::worker`] as it reaches each point):
//!   - `init`, `recycle`: as the worker starts, before it reads anything,
//!     if its start token says so ([`StartTokens`], [`take_start_token`]);
//!   - `transport`: as soon as the first bytes of a task frame still being
//!     written show its fault ([`transport`]); a frame that arrives whole
//!     fires as the worker takes it ([`fire_at`]);
//!   - `decode`, `mid-task`, and the lifecycle points (`close`,
//!     `terminate`, `join`: mid-task, once the owner is in that stage, see
//!     [`set_stage`]): [`fire_at`];
//!   - `encode-result`: [`encoding`];
//!   - `write-result`: half-way through writing the result frame
//!     ([`die_writing`]), or its `error`/`panic` as the result is made
//!     ([`fire_making_result`]);
//!   - `after-result`: [`after_result`];
//!   - `decode-result`: armed here ([`armed`]) and fired in the pool's
//!     process as it decodes the frame ([`decode_result`]).
//! - **In the pool's process**: `encode` ([`fire_encode`]), `decode-result`
//!   ([`decode_result`]); the harness's owner fires the callback points
//!   through [`fire_fault`].
//! - **The RSS reading** a worker recycles on ([`over_ceiling`]).
//!
//! How a kind fires is [`fire`]: the deadly ones do not return, `sigstop`
//! returns once continued, `error` and `panic` become the task's error.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::task::{Fault, FaultKind, FaultPoint, Task};
use crate::wire::{self, FromWorker, FromWorkerRef, RunHead, TaskRef};

// ---- How a fault fires ----

/// Fires a fault where it is placed in the pool's process (encoding a task,
/// decoding a result, a callback): the deadly and stalling kinds do not
/// return, `sigstop` once continued; `error` is its message, and `panic`
/// unwinds and is caught here, as its message.
pub fn fire_fault(kind: FaultKind) -> Result<(), String> {
    caught(|| fail_or_fire(kind))
}

/// Fires a fault: the deadly ones do not return; `Error` and `Panic` fail the task.
fn fail_or_fire(kind: FaultKind) -> Result<(), String> {
    match kind {
        FaultKind::Error => Err("injected task error".to_string()),
        FaultKind::Panic => panic!("injected panic"),
        _ => {
            fire(kind);
            Ok(())
        }
    }
}

/// Fires a deadly or stalling kind in this process (`error` and `panic`
/// do nothing here: [`fire_fault`] makes them the task's error).
pub(crate) fn fire(kind: FaultKind) {
    let me = rustix::process::getpid();
    match kind {
        FaultKind::SigKill => {
            let _ = rustix::process::kill_process(me, Signal::KILL);
        }
        FaultKind::SigSegv => {
            // A real invalid access, not a raised signal. Rust's handler sees
            // it is no stack overflow, restores the default and re-faults.
            // SAFETY: deliberately unsound: this is the fault being injected.
            unsafe { std::ptr::read_volatile(16 as *const u8) };
        }
        FaultKind::Abort => std::process::abort(),
        // SAFETY: _exit ends the process at once, as a crashing C extension would.
        FaultKind::Exit(code) => unsafe { libc::_exit(code) },
        // Nothing in a Rust worker catches an exit: it is a process exit.
        // SAFETY: as for `Exit`.
        FaultKind::SysExit => unsafe { libc::_exit(1) },
        FaultKind::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        FaultKind::SigStop => {
            // Stopped until continued; then the task goes on as if nothing happened.
            let _ = rustix::process::kill_process(me, Signal::STOP);
            return;
        }
        FaultKind::IgnoreSigterm => {
            // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            return;
        }
        // Python's own (the owner reports them not applicable; no Rust worker gets one).
        FaultKind::Unpicklable | FaultKind::BaseException | FaultKind::MemoryError | FaultKind::ReturnException => {
            return;
        }
        FaultKind::Error | FaultKind::Panic => return,
    }
    // A deadly signal is delivered before kill() returns; if not, wait for it.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs `f`, a panic in it coming back as `Err("panic: <message>")`.
pub(crate) fn caught<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(panic_message(panic)))
}

/// `panic: <message>`, for a caught panic's payload.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("panic: {message}")
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing of ours needs flushing.
    unsafe { libc::_exit(code) }
}

// ---- The worker's points ----

/// `task`'s fault if it is placed at `point` and fires on `attempt`.
pub(crate) fn placed(task: &Task, attempt: u32, point: FaultPoint) -> Option<Fault> {
    task.fault.filter(|f| f.point == point && f.fires(attempt))
}

/// The points met as a task is taken and run: `fault` (the task's, if it
/// fires on this attempt) fires if it is placed at `point`. A `spawn`
/// fault's worker dies mid-task (the refused fork is the harness's limit);
/// a lifecycle fault (`close`, `terminate`, `join`) fires mid-task once the
/// owner is in its stage.
pub(crate) fn fire_at(fault: Option<Fault>, point: FaultPoint) -> Result<(), String> {
    match fault {
        Some(f) if f.point == point || (point == FaultPoint::MidTask && f.point == FaultPoint::Spawn) => {
            fail_or_fire(f.kind)
        }
        Some(f)
            if point == FaultPoint::MidTask
                && matches!(f.point, FaultPoint::Close | FaultPoint::Terminate | FaultPoint::Join) =>
        {
            // SIGTERM is ignored ahead of the stage whose signal it must find ignored.
            if f.kind == FaultKind::IgnoreSigterm {
                fire(f.kind);
            }
            wait_for_stage(f.point);
            fail_or_fire(f.kind)
        }
        _ => Ok(()),
    }
}

/// The `write-result` point's `error` and `panic`, as the result is made
/// (its deadly kinds fire mid-write: [`die_writing`]).
pub(crate) fn fire_making_result(fault: Option<Fault>) -> Result<(), String> {
    match fault {
        Some(f) if f.point == FaultPoint::WriteResult && matches!(f.kind, FaultKind::Error | FaultKind::Panic) => {
            fail_or_fire(f.kind)
        }
        _ => Ok(()),
    }
}

/// The `transport` fault to fire now, from the first bytes of a task frame
/// still being written: one that ends the worker or never returns (the
/// others fire once the task is taken, in [`fire_at`]).
pub(crate) fn transport(first: &[u8]) -> Option<FaultKind> {
    let (attempt, head) = RunHead::peek(first)?;
    let fault = head.fault.filter(|f| f.point == FaultPoint::Transport && f.fires(attempt))?;
    (fault.kind.kills_worker() || fault.kind == FaultKind::Hang).then_some(fault.kind)
}

/// The `encode-result` point, as the result is encoded: a deadly fault
/// ends the worker with the result unsent; `error` and `panic` give the
/// task an error in place of its result (CPython's `MaybeEncodingError`).
pub(crate) fn encoding(task: &Task, attempt: u32, result: Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    match placed(task, attempt, FaultPoint::EncodeResult) {
        Some(f) => caught(|| fail_or_fire(f.kind)).and(result),
        None => result,
    }
}

/// The message carrying a task's result: armed with its `decode-result`
/// fault when it fires on this attempt (the pool fires it as it decodes,
/// in [`decode_result`]).
pub(crate) fn armed(id: TaskRef, task: &Task, attempt: u32, result: Result<Vec<u8>, String>) -> FromWorker {
    match placed(task, attempt, FaultPoint::DecodeResult) {
        Some(f) => FromWorker::Armed { id, result, kind: f.kind },
        None => FromWorker::Done { id, result },
    }
}

/// The `write-result` point: writes the first part of a result frame (more
/// than a pipe buffer when the result is large), then dies by `fault`.
pub(crate) fn die_writing(output: &mut File, frame: &[u8], fault: Fault) -> io::Result<()> {
    output.write_all(&frame[..frame.len() / 2])?;
    fire(fault.kind);
    // Faults that do not kill (error, panic) at this point: finish the write.
    output.write_all(&frame[frame.len() / 2..])
}

/// The `after-result` point, once the result is sent: a crash in a
/// destructor. An `error` or a `panic` there is dropped, as Python ignores
/// an exception raised in `__del__`.
pub(crate) fn after_result(kind: FaultKind) {
    let _ = caught(|| fail_or_fire(kind));
}

// ---- The pool's points ----

/// Fires `task`'s `encode` fault, if it has one for `attempt`, as the pool
/// encodes the task for a worker (in the pool's process, as Python's
/// parent pickles a task that raises: `AtPickle`). `Err` is what the task
/// fails with (`error`, `panic`); the deadly and stalling kinds do not
/// return.
pub fn fire_encode(task: &Task, attempt: u32) -> Result<(), String> {
    match placed(task, attempt, FaultPoint::Encode) {
        Some(f) => fire_fault(f.kind).map_err(|e| format!("encoding the task: {e}")),
        None => Ok(()),
    }
}

/// Why a frame from a worker decoded to no message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a message of ours.
    #[error("garbled frame: {0}")]
    Garbled(#[from] io::Error),
    /// Task `id`'s result fired its `decode-result` fault (`error` or
    /// `panic`) as it was decoded; the frame itself was whole.
    #[error("task {id:?}: {message}")]
    Fired { id: TaskRef, message: String },
}

impl From<DecodeError> for io::Error {
    fn from(e: DecodeError) -> io::Error {
        match e {
            DecodeError::Garbled(e) => e,
            fired => io::Error::new(io::ErrorKind::InvalidData, fired.to_string()),
        }
    }
}

/// Decodes a worker's message as the pool does, firing an armed result's
/// fault here, in the pool's process: a deadly or stalling kind does not
/// return (it kills or stalls the pool's owner), `sigstop` returns once the
/// owner is continued, `error` and `panic` are [`DecodeError::Fired`]. An
/// armed result that survives is the plain `Done`.
pub fn decode_result(payload: &[u8]) -> Result<FromWorkerRef<'_>, DecodeError> {
    if let Some(done) = wire::done_ok(payload) {
        return Ok(done);
    }
    match wire::decode(payload)? {
        FromWorkerRef::Armed { id, result, kind } => match fire_fault(kind) {
            Ok(()) => Ok(FromWorkerRef::Done { id, result }),
            Err(message) => Err(DecodeError::Fired { id, message: format!("decoding the result: {message}") }),
        },
        other => Ok(other),
    }
}

// ---- Start tokens: `init`, `recycle` ----

/// Environment variable naming the pipe of start tokens a worker takes one
/// of as it starts (the `init` and `recycle` points; see [`StartTokens`]).
const TOKENS_FD_ENV: &str = "POOLCHAOS_TOKENS_FD";
/// Environment variable with the fault kind a start token fires (postcard, in hex).
const TOKEN_KIND_ENV: &str = "POOLCHAOS_TOKEN_KIND";
/// Set (to `1`) when every start fires once the pipe is empty (a fault of
/// [`Fault::ALWAYS`] times).
const TOKENS_ALWAYS_ENV: &str = "POOLCHAOS_TOKENS_ALWAYS";

/// The start tokens of a fault placed as workers start (`init`, `recycle`),
/// as the Python adapter's `prepare_start_faults` makes them: a pipe holding
/// one byte per worker start, `s` (start clean) for the first `clean`
/// starts, then `f` (fire the fault) for the next `times`. Every worker
/// process, whoever starts it (a pool, a fork server, per-task's spares),
/// takes one byte as it starts; with the pipe empty it starts clean, or
/// fires if the fault fires always.
#[derive(Debug)]
pub struct StartTokens {
    read: OwnedFd,
    kind: FaultKind,
    always: bool,
}

impl StartTokens {
    /// Fills a pipe: `clean` clean starts, then `times` that fire `kind`.
    pub fn new(clean: usize, times: u32, kind: FaultKind) -> io::Result<StartTokens> {
        let always = times == Fault::ALWAYS;
        // A pipe holds 64 KiB: plenty for any count a plan may mean.
        let firing = if always { 0 } else { (times as usize).min(32 << 10) };
        let clean = clean.min(16 << 10);
        // Non-blocking, so a worker finding it empty starts at once (the
        // tokens fit the pipe, so filling it never meets a full pipe).
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)?;
        let mut tokens = vec![b's'; clean];
        tokens.resize(clean + firing, b'f');
        let mut left = &tokens[..];
        while !left.is_empty() {
            left = &left[rustix::io::write(&write, left)?..];
        }
        Ok(StartTokens { read, kind, always })
    }

    /// Tells a worker about to be spawned by `cmd` where its token is and
    /// what it fires; the fd it must inherit.
    pub(crate) fn pass_to(&self, cmd: &mut Command) -> io::Result<RawFd> {
        cmd.env(TOKENS_FD_ENV, self.read.as_raw_fd().to_string());
        cmd.env(TOKEN_KIND_ENV, self.kind_env()?);
        if self.always {
            cmd.env(TOKENS_ALWAYS_ENV, "1");
        }
        Ok(self.read.as_raw_fd())
    }

    /// The fault kind as [`TOKEN_KIND_ENV`] carries it: postcard, in hex.
    fn kind_env(&self) -> io::Result<String> {
        let bytes = postcard::to_stdvec(&self.kind).map_err(io::Error::other)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The fault kind a worker reads from [`TOKEN_KIND_ENV`].
    fn kind_from_env(value: &str) -> Option<FaultKind> {
        let bytes: Option<Vec<u8>> =
            (0..value.len()).step_by(2).map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok()).collect();
        postcard::from_bytes(&bytes?).ok()
    }
}

/// Takes this worker's start token, if its pool hands them out, and fires
/// the start fault (`init`, `recycle`) if the token says so. `error` and
/// `panic` end the worker with exit code 1 there, as an exception in a
/// CPython pool's initializer ends its worker process.
pub(crate) fn take_start_token() {
    let fires = match TAKEN_AHEAD.load(Ordering::Relaxed) {
        NOT_TAKEN => match read_start_token() {
            Some(token) => token_fires(token),
            None => return,
        },
        token => token_fires(token),
    };
    if !fires {
        return;
    }
    match std::env::var(TOKEN_KIND_ENV).ok().and_then(|value| StartTokens::kind_from_env(&value)) {
        Some(FaultKind::Error | FaultKind::Panic) => exit_now(1),
        Some(kind) => fire(kind),
        None => {
            eprintln!("poolchaos-worker: bad {TOKEN_KIND_ENV}");
            exit_now(3)
        }
    }
}

/// The start token the fork server took for the child it forks next
/// ([`take_start_token_ahead`]), inherited by that child; `NOT_TAKEN` if none.
static TAKEN_AHEAD: AtomicU8 = AtomicU8::new(NOT_TAKEN);
const NOT_TAKEN: u8 = 0;
/// The token pipe was empty.
const NO_TOKEN: u8 = 1;

/// In the fork server, just before a fork: takes the next start token for
/// the child, so tokens go to workers in the order they are forked, not in
/// the order they happen to be scheduled (a standby that ran first took a
/// worker's clean token).
pub(crate) fn take_start_token_ahead() {
    TAKEN_AHEAD.store(read_start_token().unwrap_or(NOT_TAKEN), Ordering::Relaxed);
}

/// One byte off the pool's token pipe (`NO_TOKEN` if it is empty), or
/// `None` if this pool hands out no tokens.
fn read_start_token() -> Option<u8> {
    let fd = std::env::var(TOKENS_FD_ENV).ok().and_then(|s| s.trim().parse::<RawFd>().ok())?;
    // SAFETY: the pool passed us this fd (a pipe's read end) for these reads.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut token = [0u8];
    Some(match rustix::io::read(fd, &mut token) {
        Ok(1) => token[0],
        _ => NO_TOKEN,
    })
}

/// Whether a start with this token fires the start fault.
fn token_fires(token: u8) -> bool {
    match token {
        b'f' => true,
        // Empty: every start fires if the fault always does, else none.
        NO_TOKEN => std::env::var_os(TOKENS_ALWAYS_ENV).is_some(),
        _ => false,
    }
}

// ---- Lifecycle stages: `close`, `terminate`, `join` ----

/// Environment variable with the pid of the pool's owner (the process that
/// spawned the worker, or its fork server): a worker that dies at a
/// lifecycle stage (`close`, `terminate`, `join`) reads the owner's stage
/// from its threads' names (see [`set_stage`]). Spelled as the Python
/// adapter spells it (`work.py`).
pub const OWNER_PID_ENV: &str = "POOLCHAOS_OWNER_PID";
/// How long a worker waits for the owner to enter its fault's stage before
/// it fires anyway (as `_wait_for_stage` in `work.py`).
pub const STAGE_WAIT: Duration = Duration::from_secs(60);

/// The thread name that marks `point` (at most 15 bytes), as the Python
/// adapter's `set_stage` writes it.
fn stage_name(point: FaultPoint) -> &'static str {
    match point {
        FaultPoint::Close => "pc:close",
        FaultPoint::Terminate => "pc:terminate",
        FaultPoint::Join => "pc:join",
        _ => "pc:running",
    }
}

/// The owner marks the lifecycle stage it is entering (`close`,
/// `terminate`, `join`) in the calling thread's name (`PR_SET_NAME`), which
/// a worker waiting to die at that stage reads from
/// `/proc/<owner>/task/*/comm`: no file, nothing left behind.
pub fn set_stage(point: FaultPoint) {
    if let Ok(name) = std::ffi::CString::new(stage_name(point)) {
        // Only a name: a failure leaves the worker to fire at its deadline.
        let _ = rustix::thread::set_name(&name);
    }
}

/// Waits (at most [`STAGE_WAIT`]) until a thread of the owner
/// ([`OWNER_PID_ENV`]) names the stage `point`; returns at once when there
/// is no owner to read or it is gone.
fn wait_for_stage(point: FaultPoint) {
    let Some(owner) = std::env::var_os(OWNER_PID_ENV) else { return };
    let dir = PathBuf::from("/proc").join(owner).join("task");
    let want = stage_name(point);
    let deadline = Instant::now() + STAGE_WAIT;
    while Instant::now() < deadline {
        let Ok(threads) = std::fs::read_dir(&dir) else { return };
        let named = threads
            .flatten()
            .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim_end() == want));
        if named {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- The RSS reading a worker recycles on ----

/// The resident set size in KiB, if it is over `ceiling`.
pub(crate) fn over_ceiling(ceiling: Option<u64>) -> Option<u64> {
    let ceiling = ceiling?;
    rss_kib().filter(|&rss_kib| rss_kib > ceiling)
}

/// The resident set size in KiB.
pub(crate) fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * (rustix::param::page_size() as u64 / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_tokens_are_the_clean_starts_then_the_firing_ones_and_carry_their_kind() {
        let tokens = StartTokens::new(2, 3, FaultKind::Exit(7)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rustix::io::read(&tokens.read, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"ssfff");
        assert_eq!(rustix::io::read(&tokens.read, &mut buf), Ok(0), "then empty: the rest start clean");
        assert_eq!(StartTokens::kind_from_env(&tokens.kind_env().unwrap()), Some(FaultKind::Exit(7)));
        assert!(StartTokens::new(0, Fault::ALWAYS, FaultKind::SigKill).unwrap().always);
    }
}
