//! The fork server: a single-threaded helper process that forks the
//! workers of `per-task` (one child per task) and of `supervised` (its
//! workers, and their replacements after a death), so a pool's process never
//! forks itself after its start, and a new worker costs a `fork` of a small
//! process, not a fork of the pool's (big, multi-threaded) process plus an
//! exec and a dynamic link.
//!
//! ```text
//!  pool's supervisor thread                   fork server (poolchaos-worker forkserver)
//!  ────────────────────────                   ──────────────────────────────────────────
//!  makes the worker's pipes ─▶ SPAWN + [its stdin, its stdout, extra fds]
//!                                            fork ─▶ child: fds 0/1 = those pipes,
//!                                                    PDEATHSIG, runs the `private` loop
//!  Forked { pid, pidfd } ◀─ SPAWNED pid + [pidfd]   (pidfd opened before any reap)
//!  results pipe ◀───────────────────────────────────── the child's results, EOF at its exit
//!  exit status ◀─ EXITED pid, how ◀─ pidfd readable ⇒ waitid (the server is the parent)
//! ```
//!
//! - **Started once** by fork + exec (as every worker used to be), by the
//!   pool's supervisor thread, with `PR_SET_PDEATHSIG(SIGKILL)`: it dies with
//!   that thread, and each child it forks sets the same signal, so the
//!   children die with it. It also exits on EOF of its control socket,
//!   killing and reaping its children first.
//! - **Why forking without exec is safe here:** the server is the
//!   `poolchaos-worker` binary, which starts no thread; a child runs the same
//!   code a `private` worker runs after its exec, and builds its environment
//!   from the same variables (so its trace lines carry its own pid). The
//!   server's environment (trace fd, RSS ceiling, oom_score_adj) is what the
//!   pool gave it at its start; per-child fds (a scoreboard) come with the
//!   request, named by the variable the child finds them under.
//! - **Exit statuses:** the server is each child's parent, so it reaps them
//!   (it polls a pidfd per child) and reports `EXITED pid exit`: a pool still
//!   names the real signal or exit code in `WorkerLost`. The pidfd it hands
//!   back lets the pool see the exit at once and signal the child (deadlines,
//!   terminate) without racing a recycled pid.
//! - **Losing the server:** if it dies, its children die too (PDEATHSIG); the
//!   pool sees their pidfds turn readable, takes SIGKILL as how they ended
//!   (nobody can tell it otherwise, and no exit sink hears of them), and
//!   starts a new server, at once if a spawn finds the old one gone.
//!
//! The control socket is a `SOCK_SEQPACKET` pair, so every message arrives
//! whole. Messages (little-endian):
//!
//! | from | message | bytes | fds |
//! |---|---|---|---|
//! | server | `READY` | `0` | |
//! | pool | `SPAWN` | `1`, then one NUL-terminated variable name per extra fd | stdin, stdout (made blocking in the child), extra fds |
//! | server | `SPAWNED` | `1`, pid `u32` | the child's pidfd |
//! | server | `FAILED` | `2`, errno `i32` | |
//! | server | `EXITED` | `3`, pid `u32`, `0` code / `1` signal, value `i32` | |
//!
//! Replies to `SPAWN` come in request order; an `EXITED` always comes after
//! its child's `SPAWNED`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::outcome::Exit;
use crate::process::{self, Child, ExitSink, Spawn, WorkerProgram};

const READY: u8 = 0;
const SPAWN: u8 = 1;
const SPAWNED: u8 = 1;
const FAILED: u8 = 2;
const EXITED: u8 = 3;

/// Most extra fds a child can be given.
const MAX_EXTRA: usize = 4;
/// How long the pool waits for the server to start or to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing pool waits for the server to reap its children and exit.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Numbers the servers a process starts, so a child knows whose it is.
static SERVERS: AtomicU64 = AtomicU64::new(0);

/// A child the server forked for us.
pub(crate) struct Forked {
    pub pid: u32,
    /// Which server forked it.
    server: u64,
    /// Valid until the pool drops it, whoever reaps the child.
    pub pidfd: OwnedFd,
    /// How it ended, once its server said (or SIGKILL, once it died with a lost server).
    pub exit: Option<Exit>,
}

impl Forked {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Readable once the process has exited (whoever its parent is).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Sends `signal`; after its exit this reaches nobody (the pidfd is not a pid).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match rustix::process::pidfd_send_signal(&self.pidfd, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether it has exited; never blocks.
    pub fn has_exited(&self) -> bool {
        self.exit.is_some() || process::poll_one(self.pidfd(), PollFlags::IN, Some(Duration::ZERO)).unwrap_or(true)
    }

    /// For a child whose server is gone: waits up to `timeout` for it to
    /// die (its PDEATHSIG kills it), then says it ended by SIGKILL.
    pub fn wait_orphaned(&mut self, timeout: Duration) -> io::Result<Option<Exit>> {
        if self.exit.is_none() && process::poll_one(self.pidfd(), PollFlags::IN, Some(timeout))? {
            self.exit = Some(Exit::Signal(libc::SIGKILL));
        }
        Ok(self.exit)
    }
}

/// What the server told us, besides answers to our requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Note {
    /// A child of ours exited and was reaped.
    Exited { pid: u32, exit: Exit },
    /// The server itself is gone (its socket closed): its children die with it
    /// (PDEATHSIG) and their exits will not be reported.
    ServerLost,
}

/// The pool's handle on a running fork server.
pub(crate) struct ForkServer {
    id: u64,
    process: Child,
    control: OwnedFd,
    /// Notes read but not yet taken, for [`ForkServer::notes`] and [`ForkServer::wait_exit`].
    early: VecDeque<Note>,
    lost: bool,
    /// Told of every child's exit as it is reported.
    sink: Option<ExitSink>,
}

impl ForkServer {
    /// Starts `poolchaos-worker forkserver` with `env` added to its (and so
    /// its children's) environment, and waits until it is ready. The calling
    /// thread's death kills it (PDEATHSIG).
    pub fn start(program: &WorkerProgram, env: Vec<(&'static str, OsString)>) -> io::Result<ForkServer> {
        let (ours, theirs) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        // The server is not a worker: no exit report for it.
        let mut quiet = program.clone();
        quiet.exits = None;
        let spawn = Spawn {
            mode: "forkserver",
            stdin: theirs.try_clone()?,
            stdout: theirs,
            inherit: Vec::new(),
            env,
            die_with_parent: true,
        };
        let process = Child::spawn(&quiet, spawn)?;
        let mut server = ForkServer {
            id: SERVERS.fetch_add(1, Ordering::Relaxed),
            process,
            control: ours,
            early: VecDeque::new(),
            lost: false,
            sink: program.exits.clone(),
        };
        match server.answer()? {
            Answer::Ready => Ok(server),
            _ => Err(io::Error::other("fork server: unexpected first message")),
        }
    }

    /// Readable when the server has something to say (poll it for notes).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Whether the server is gone.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Forks a child whose stdin and stdout are `stdin` and `stdout`, and
    /// which finds each of `extra` under the variable named with it; waits
    /// for its pid and pidfd. Notes that arrive meanwhile are kept.
    pub fn spawn(&mut self, stdin: OwnedFd, stdout: OwnedFd, extra: &[(BorrowedFd<'_>, &str)]) -> io::Result<Forked> {
        if self.lost {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "fork server is gone"));
        }
        if extra.len() > MAX_EXTRA {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds for one child"));
        }
        let sent = {
            let mut fds = vec![stdin.as_fd(), stdout.as_fd()];
            let mut request = vec![SPAWN];
            for (fd, name) in extra {
                fds.push(*fd);
                request.extend_from_slice(name.as_bytes());
                request.push(0);
            }
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2 + MAX_EXTRA))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            loop {
                match rustix::net::sendmsg(&self.control, &[IoSlice::new(&request)], &mut control, SendFlags::NOSIGNAL)
                {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other,
                }
            }
        };
        // Ours are closed; the child has its own.
        drop((stdin, stdout));
        if let Err(e) = sent {
            self.lose();
            return Err(e.into());
        }
        match self.answer()? {
            Answer::Spawned(forked) => Ok(forked),
            Answer::Failed(errno) => Err(io::Error::from_raw_os_error(errno)),
            Answer::Ready => Err(io::Error::other("fork server: unexpected READY")),
        }
    }

    /// Whether notes were read (while waiting for an answer) and not taken:
    /// the socket will not turn readable for them.
    pub fn has_notes(&self) -> bool {
        !self.early.is_empty()
    }

    /// Every note that has arrived and was not taken yet; never blocks.
    pub fn notes(&mut self) -> Vec<Note> {
        self.pump();
        self.early.drain(..).collect()
    }

    /// Waits up to `timeout` to learn how `child` ended (it must be on its
    /// way out); other notes are kept for later. A child of a lost server
    /// (this one, or one before it) ended by SIGKILL, its PDEATHSIG.
    pub fn wait_exit(&mut self, child: &mut Forked, timeout: Duration) -> io::Result<Option<Exit>> {
        if child.server != self.id {
            return child.wait_orphaned(timeout);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if child.exit.is_some() {
                return Ok(child.exit);
            }
            self.pump();
            if let Some(i) = self.early.iter().position(|n| matches!(n, Note::Exited { pid, .. } if *pid == child.pid))
            {
                if let Some(Note::Exited { exit, .. }) = self.early.remove(i) {
                    child.exit = Some(exit);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.lost {
                return child.wait_orphaned(left);
            }
            if left.is_zero() {
                return Ok(None);
            }
            process::poll_one(self.control.as_fd(), PollFlags::IN, Some(left))?;
        }
    }

    /// SIGKILLs `child` and waits for how it ended (bounded by the kernel
    /// tearing it down, and the server reporting it).
    pub fn kill_and_wait(&mut self, child: &mut Forked) -> Exit {
        let _ = child.signal(Signal::KILL);
        match self.wait_exit(child, CLOSE_GRACE) {
            Ok(Some(exit)) => exit,
            _ => Exit::Signal(libc::SIGKILL),
        }
    }

    /// Reads every message that is there into `early`; never blocks.
    fn pump(&mut self) {
        while !self.lost {
            match self.receive() {
                Ok(Some(Message::Note(note))) => self.early.push_back(note),
                // An answer nobody asked for: the protocol is broken.
                Ok(Some(Message::Answer(_))) | Err(_) => self.lose(),
                Ok(None) => break,
            }
        }
    }

    fn lose(&mut self) {
        if !self.lost {
            self.lost = true;
            self.early.push_back(Note::ServerLost);
            let _ = self.process.signal(Signal::KILL);
        }
    }

    /// Waits for the answer to our last request (or the READY greeting).
    fn answer(&mut self) -> io::Result<Answer> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match self.receive() {
                Ok(Some(Message::Note(note))) => self.early.push_back(note),
                Ok(Some(Message::Answer(answer))) => return Ok(answer),
                // It died (its socket closed) or said something we cannot read.
                Ok(None) | Err(_) if self.lost => {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "fork server is gone"));
                }
                Err(_) => {
                    self.lose();
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "fork server is gone"));
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.lose();
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "fork server does not answer"));
                    }
                    process::poll_one(self.control.as_fd(), PollFlags::IN, Some(left))?;
                }
            }
        }
    }

    /// One message, if one is there; never blocks. Tells the sink of exits.
    fn receive(&mut self) -> io::Result<Option<Message>> {
        let mut bytes = [0u8; 16];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match rustix::net::recvmsg(
                &self.control,
                &mut [IoSliceMut::new(&mut bytes)],
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(got) => break got,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        let bytes = &bytes[..got.bytes.min(bytes.len())];
        let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "fork server: malformed message");
        let message = match bytes.first() {
            // End of stream: the server is gone.
            None => Message::Note(Note::ServerLost),
            Some(&READY) => Message::Answer(Answer::Ready),
            Some(&SPAWNED) => {
                let pid = u32_at(1).ok_or_else(bad)?;
                let pidfd = fds.pop().ok_or_else(bad)?;
                Message::Answer(Answer::Spawned(Forked { pid, server: self.id, pidfd, exit: None }))
            }
            Some(&FAILED) => Message::Answer(Answer::Failed(u32_at(1).ok_or_else(bad)? as i32)),
            Some(&EXITED) => {
                let pid = u32_at(1).ok_or_else(bad)?;
                let value = u32_at(6).ok_or_else(bad)? as i32;
                let exit = if bytes[5] == 0 { Exit::Code(value) } else { Exit::Signal(value) };
                if let Some(sink) = &self.sink {
                    sink(pid, exit);
                }
                Message::Note(Note::Exited { pid, exit })
            }
            Some(_) => return Err(bad()),
        };
        if let Message::Note(Note::ServerLost) = message {
            self.lose();
            return Ok(None);
        }
        Ok(Some(message))
    }

    /// Closes the control socket; the server kills and reaps what it still
    /// runs and exits. Waits for that, then kills it if it has not.
    pub fn shutdown(self) {
        let ForkServer { mut process, control, .. } = self;
        drop(control);
        if !matches!(process.wait_timeout(CLOSE_GRACE), Ok(Some(_))) {
            let _ = process.kill_and_reap();
        }
    }
}

enum Answer {
    Ready,
    Spawned(Forked),
    Failed(i32),
}

enum Message {
    Answer(Answer),
    Note(Note),
}

// The server's side: runs in `poolchaos-worker forkserver`.

/// The fork server's loop. The control socket is its stdin (and stdout);
/// `child` runs in each forked child once its fds 0 and 1 are the task's
/// pipes, and returns the child's exit code.
pub(crate) fn serve(child: impl Fn() -> i32) -> io::Result<()> {
    // Our children: pid and a pidfd we poll for their exit.
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    let served = serve_until_eof(&mut children, child);
    // However we leave (EOF, or the pool gone mid-message), our children go too.
    for (_, pidfd) in &children {
        let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
    }
    for (_, pidfd) in &children {
        let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
    }
    match served {
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

fn serve_until_eof(children: &mut Vec<(u32, OwnedFd)>, child: impl Fn() -> i32) -> io::Result<()> {
    let control = rustix::stdio::stdin();
    let me = rustix::process::getpid();
    send(control, &[READY], None)?;
    loop {
        let (request, exited) = {
            let mut fds = Vec::with_capacity(1 + children.len());
            fds.push(PollFd::new(&control, PollFlags::IN));
            for (_, pidfd) in children.iter() {
                fds.push(PollFd::new(pidfd, PollFlags::IN));
            }
            process::poll(&mut fds, None)?;
            let exited: Vec<usize> = (0..children.len()).filter(|&i| !fds[1 + i].revents().is_empty()).collect();
            (!fds[0].revents().is_empty(), exited)
        };
        // Reap from the back so indexes stay valid.
        for &i in exited.iter().rev() {
            let status = rustix::process::waitid(
                WaitId::PidFd(children[i].1.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            )?;
            let Some(status) = status else { continue };
            let (pid, _) = children.swap_remove(i);
            let (kind, value) = match status.terminating_signal() {
                Some(signal) => (1u8, signal),
                None => (0u8, status.exit_status().unwrap_or(0)),
            };
            let mut message = [EXITED, 0, 0, 0, 0, kind, 0, 0, 0, 0];
            message[1..5].copy_from_slice(&pid.to_le_bytes());
            message[6..10].copy_from_slice(&value.to_le_bytes());
            send(control, &message, None)?;
        }
        if !request {
            continue;
        }
        let mut bytes = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2 + MAX_EXTRA))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let got = match rustix::net::recvmsg(
            control,
            &mut [IoSliceMut::new(&mut bytes)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in ancillary.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if got.bytes == 0 {
            // The pool closed its end (or died): our children go with us.
            return Ok(());
        }
        let request = &bytes[..got.bytes.min(bytes.len())];
        let names: Vec<&[u8]> = match request[1..].split_last() {
            Some((0, names)) => names.split(|&b| b == 0).collect(),
            _ => Vec::new(),
        };
        if request[0] != SPAWN || fds.len() != 2 + names.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed SPAWN"));
        }
        let held: Vec<i32> = children.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let extra: Vec<(&[u8], i32)> = names.iter().copied().zip(fds[2..].iter().map(|fd| fd.as_raw_fd())).collect();
        // SAFETY: this process is single-threaded (the worker binary starts
        // no thread), so the child may run any code; it never returns here.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child; these are our copies of the fds.
            unsafe { become_worker(me, fds[0].as_raw_fd(), fds[1].as_raw_fd(), &extra, &held, &child) }
        }
        drop(fds);
        if pid < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN);
            let mut message = [FAILED, 0, 0, 0, 0];
            message[1..5].copy_from_slice(&errno.to_le_bytes());
            send(control, &message, None)?;
            continue;
        }
        let pid = pid as u32;
        // Opened before we could reap it: the pid cannot have been recycled.
        let opened = Pid::from_raw(pid as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()));
        let pidfd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                let mut status = 0;
                // SAFETY: kills and reaps the child we just forked.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                    libc::waitpid(pid as i32, &mut status, 0);
                }
                let mut message = [FAILED, 0, 0, 0, 0];
                message[1..5].copy_from_slice(&e.raw_os_error().to_le_bytes());
                send(control, &message, None)?;
                continue;
            }
        };
        let mut message = [SPAWNED, 0, 0, 0, 0];
        message[1..5].copy_from_slice(&pid.to_le_bytes());
        send(control, &message, Some(pidfd.as_fd()))?;
        children.push((pid, pidfd));
    }
}

/// In a freshly forked child: makes the given pipes fds 0 and 1, names the
/// extra fds in the environment, drops the server's fds, dies with the
/// server, runs the worker loop, exits.
///
/// # Safety
/// Only in the child of a fork of the single-threaded server.
unsafe fn become_worker(
    server: Pid,
    stdin: i32,
    stdout: i32,
    extra: &[(&[u8], i32)],
    held: &[i32],
    child: &impl Fn() -> i32,
) -> ! {
    // SAFETY: plain system calls on fds this process owns, and environment
    // changes in a process that has one thread.
    unsafe {
        if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
            || rustix::process::getppid() != Some(server)
        {
            libc::_exit(1);
        }
        // fds 0 and 1 were the control socket; now they are the worker's
        // pipes, blocking (the pool may hand them over non-blocking).
        if libc::dup2(stdin, 0) < 0
            || libc::dup2(stdout, 1) < 0
            || libc::fcntl(0, libc::F_SETFL, 0) < 0
            || libc::fcntl(1, libc::F_SETFL, 0) < 0
        {
            libc::_exit(1);
        }
        libc::close(stdin);
        libc::close(stdout);
        for &fd in held {
            libc::close(fd);
        }
        for &(name, fd) in extra {
            // Received close-on-exec; it stays ours across the fork, no exec follows.
            let name = String::from_utf8_lossy(name);
            std::env::set_var(name.as_ref(), fd.to_string());
        }
        let code = child();
        libc::_exit(code)
    }
}

/// Sends one message, with an fd if given.
fn send(control: BorrowedFd<'_>, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        ancillary.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(control, &[IoSlice::new(bytes)], &mut ancillary, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
