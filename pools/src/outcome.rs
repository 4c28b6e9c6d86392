//! What a task comes back as, and how a worker process ended.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// A task's one outcome: its result bytes, or the error that names why not.
/// The bytes are a [`Bytes`]: `supervised`'s are views into the buffer of
/// the read that brought them, so a result costs its pool no allocation.
pub type Outcome = Result<Bytes, TaskError>;

/// How a worker process ended, as its reaper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal ended it (SIGKILL from the OOM killer or a nemesis, SIGSEGV, ...).
    Signal(i32),
}

impl Exit {
    pub fn signal(self) -> Option<i32> {
        match self {
            Exit::Signal(sig) => Some(sig),
            Exit::Code(_) => None,
        }
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(code) => Some(code),
            Exit::Signal(_) => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => write!(f, "signal {sig} ({})", signal_name(sig)),
        }
    }
}

/// The conventional name of a signal number, for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Why a task has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task itself failed (returned an error or panicked); its worker lived on.
    #[error("task failed: {message}")]
    Task { message: String },
    /// The worker running the task died, `attempts` times in all.
    #[error("worker {pid} lost ({exit}) after {attempts} attempt(s)")]
    WorkerLost { pid: u32, exit: Exit, attempts: u32 },
    /// The task ran past its deadline and its worker was killed.
    #[error("task timed out after {after:?} on worker {pid} ({attempts} attempt(s))")]
    TimedOut { pid: u32, after: Duration, attempts: u32 },
    /// A worker died while results were pending, and the pool gave up on all of them.
    #[error("pool broken: worker {pid} died ({exit})")]
    PoolBroken { pid: u32, exit: Exit },
    /// The pool was terminated before the task finished.
    #[error("pool terminated before the task finished")]
    Terminated,
    /// No process could be started to run the task: the kernel refused the
    /// fork (EAGAIN: the run's `pids.max` is reached), and the pool had none left.
    #[error("no worker process for the task: {reason}")]
    SpawnFailed { reason: String },
}

impl TaskError {
    /// A task that got no process because starting one failed with `error`.
    pub fn spawn_failed(error: &std::io::Error) -> TaskError {
        let why = match error.raw_os_error() {
            Some(libc::EAGAIN) => "the kernel refused the fork (EAGAIN: the run's pids.max is reached)".to_string(),
            _ => format!("starting it failed: {error}"),
        };
        TaskError::SpawnFailed { reason: why }
    }

    /// How the worker that this error blames ended, if it names one.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            TaskError::WorkerLost { exit, .. } | TaskError::PoolBroken { exit, .. } => Some(*exit),
            _ => None,
        }
    }
}
