//! Worker processes: spawned fork-safely (fork + immediate exec of the worker
//! binary), watched through a pidfd, signalled through it, reaped exactly once.
//!
//! The pools are multi-threaded, so nothing here forks without exec: std's
//! `Command` forks and the child runs only async-signal-safe calls (`prctl`,
//! `fcntl`, `getppid`) before `exec`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitIdOptions};

use crate::fault::{OWNER_PID_ENV, StartTokens};
use crate::outcome::Exit;

/// Environment variable naming the fd a worker writes trace lines to.
pub const TRACE_FD_ENV: &str = "POOLCHAOS_TRACE_FD";
/// Environment variable naming the lock fds of the shared queues (naive).
pub const LOCK_FDS_ENV: &str = "POOLCHAOS_LOCK_FDS";
/// Environment variable a worker copies into its `/proc/self/oom_score_adj`.
pub const OOM_SCORE_ADJ_ENV: &str = "POOLCHAOS_OOM_SCORE_ADJ";
/// Environment variable with the RSS ceiling (KiB) above which a worker recycles itself.
pub const RSS_CEILING_ENV: &str = "POOLCHAOS_RSS_CEILING_KIB";
/// Environment variable with the most tasks a worker runs before it exits
/// (shared mode, CPython's `maxtasksperchild`) or recycles (supervised).
pub const MAX_TASKS_ENV: &str = "POOLCHAOS_MAX_TASKS";

/// Told of every worker exit, by whichever pool reaps the worker: its pid
/// and how it ended.
pub type ExitSink = Arc<dyn Fn(u32, Exit) + Send + Sync>;

/// How to start a worker process, and who watches it.
#[derive(Clone)]
pub struct WorkerProgram {
    pub path: PathBuf,
    /// A pipe's write end that every worker writes a line to when it starts a
    /// task (`start <tag> <attempt> <pid>`): how a test or the harness learns
    /// which process runs which task, without asking the pool.
    pub trace: Option<Arc<OwnedFd>>,
    /// Called once for every worker reaped, whatever the pool.
    pub exits: Option<ExitSink>,
    /// The start tokens every worker takes one of as it starts, if a fault
    /// is placed there.
    pub start_tokens: Option<Arc<StartTokens>>,
}

impl std::fmt::Debug for WorkerProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProgram")
            .field("path", &self.path)
            .field("trace", &self.trace)
            .field("exits", &self.exits.as_ref().map(|_| "sink"))
            .field("start_tokens", &self.start_tokens)
            .finish()
    }
}

impl WorkerProgram {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        WorkerProgram { path: path.into(), trace: None, exits: None, start_tokens: None }
    }

    /// The worker binary installed next to the current executable, or the
    /// one `POOLCHAOS_WORKER` names.
    pub fn beside_current_exe() -> io::Result<Self> {
        if let Some(path) = std::env::var_os("POOLCHAOS_WORKER") {
            return Ok(Self::new(path));
        }
        let exe = std::env::current_exe()?;
        let dir = exe.parent().ok_or_else(|| io::Error::other("executable has no directory"))?;
        // Test and bench binaries live one level down, in deps/.
        for candidate in [dir.join("poolchaos-worker"), dir.join("../poolchaos-worker")] {
            if candidate.exists() {
                return Ok(Self::new(candidate));
            }
        }
        Err(io::Error::new(io::ErrorKind::NotFound, "poolchaos-worker not found beside the executable"))
    }
}

/// What one spawn needs beyond the program.
pub(crate) struct Spawn<'a> {
    pub mode: &'a str,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    /// Extra fds the worker inherits, named to it through an environment variable.
    pub inherit: Vec<(BorrowedFd<'a>, &'static str)>,
    pub env: Vec<(&'static str, OsString)>,
    /// Kill the worker when the spawning thread exits (PR_SET_PDEATHSIG).
    pub die_with_parent: bool,
}

impl<'a> Spawn<'a> {
    /// A `private`-mode worker on these pipes that dies with the spawning thread.
    pub fn private(stdin: OwnedFd, stdout: OwnedFd) -> Self {
        Spawn { mode: "private", stdin, stdout, inherit: Vec::new(), env: Vec::new(), die_with_parent: true }
    }
}

/// A worker process we spawned: its pid and a pidfd that stays valid until
/// it is reaped, so a signal never reaches a recycled pid.
pub struct Child {
    pid: u32,
    pidfd: OwnedFd,
    exit: Option<Exit>,
    sink: Option<ExitSink>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child").field("pid", &self.pid).field("exit", &self.exit).finish()
    }
}

impl Child {
    pub(crate) fn spawn(program: &WorkerProgram, spawn: Spawn<'_>) -> io::Result<Child> {
        let mut cmd = Command::new(&program.path);
        cmd.arg(spawn.mode).stdin(Stdio::from(spawn.stdin)).stdout(Stdio::from(spawn.stdout)).stderr(Stdio::inherit());
        let mut inherited: Vec<RawFd> = Vec::new();
        if let Some(trace) = &program.trace {
            cmd.env(TRACE_FD_ENV, trace.as_raw_fd().to_string());
            inherited.push(trace.as_raw_fd());
        }
        if let Some(tokens) = &program.start_tokens {
            inherited.push(tokens.pass_to(&mut cmd)?);
        }
        let mut named: Vec<(&str, Vec<String>)> = Vec::new();
        for (fd, var) in &spawn.inherit {
            inherited.push(fd.as_raw_fd());
            match named.iter_mut().find(|(v, _)| v == var) {
                Some((_, fds)) => fds.push(fd.as_raw_fd().to_string()),
                None => named.push((var, vec![fd.as_raw_fd().to_string()])),
            }
        }
        for (var, fds) in named {
            cmd.env(var, fds.join(","));
        }
        let parent = rustix::process::getpid();
        cmd.env(OWNER_PID_ENV, parent.as_raw_nonzero().to_string());
        for (var, value) in spawn.env {
            cmd.env(var, value);
        }
        let die_with_parent = spawn.die_with_parent;
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe system calls; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherited {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if die_with_parent {
                    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                    // The parent may have died before the prctl took effect.
                    if rustix::process::getppid() != Some(parent) {
                        libc::_exit(1);
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        // The child is ours to reap (std's handle is dropped without waiting),
        // so the pid stays valid until then and pidfd_open cannot race.
        drop(child);
        let raw = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("spawned pid 0"))?;
        let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd we cannot watch it: kill and reap it by pid.
                let _ = rustix::process::kill_process(raw, Signal::KILL);
                let _ = rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::empty());
                return Err(e.into());
            }
        };
        Ok(Child { pid, pidfd, exit: None, sink: program.exits.clone() })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Readable (POLLIN) once the process has exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// How it ended, once reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Sends `signal` unless it has already been reaped.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        rustix::process::pidfd_send_signal(&self.pidfd, signal).map_err(Into::into)
    }

    /// Reaps it if it has exited; never blocks.
    pub fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        if self.exit.is_none() {
            let status = rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            )?;
            if let Some(status) = status {
                self.exit = decode_status(&status);
                if let (Some(exit), Some(sink)) = (self.exit, &self.sink) {
                    sink(self.pid, exit);
                }
            }
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for it to exit by itself, then reaps it.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<Exit>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(Some(exit));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            poll_one(self.pidfd.as_fd(), PollFlags::IN, Some(left))?;
        }
    }

    /// SIGKILLs it (a stopped process dies too) and reaps it.
    pub fn kill_and_reap(&mut self) -> io::Result<Exit> {
        if let Some(exit) = self.try_wait()? {
            return Ok(exit);
        }
        self.signal(Signal::KILL)?;
        // SIGKILL cannot be blocked; the wait is bounded by the kernel tearing it down.
        loop {
            if let Some(exit) = self.wait_timeout(Duration::from_secs(10))? {
                return Ok(exit);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.kill_and_reap();
    }
}

fn decode_status(status: &rustix::process::WaitIdStatus) -> Option<Exit> {
    if status.exited() { status.exit_status().map(Exit::Code) } else { status.terminating_signal().map(Exit::Signal) }
}

/// A pipe whose both ends close on exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Polls one fd; returns whether it became ready before `timeout`.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, events: PollFlags, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, events)];
    Ok(poll(&mut fds, timeout)? > 0)
}

/// `poll(2)`, retried on EINTR, with an optional timeout.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let ts =
        timeout.map(|t| rustix::time::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    loop {
        match rustix::event::poll(fds, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}
