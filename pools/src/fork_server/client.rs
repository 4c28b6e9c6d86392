//! The pool's half of the fork server: starts it, asks it for children,
//! reads its answers and exit notes.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};
use rustix::process::Signal;

use super::{EXITED, FAILED, MAX_EXTRA, READY, SPAWN, SPAWNED};
use crate::outcome::Exit;
use crate::process::{self, Child, ExitSink, Spawn, WorkerProgram};

/// How long the pool waits for the server to start or to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing pool waits for the server to reap its children and exit.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long [`ForkServer::start`] (and supervised's start) keeps starting
/// new servers while each is gone before it is ready: a storm from outside
/// strikes the only process there is; a program that cannot start fails
/// each time, for that long.
pub(crate) const START_PATIENCE: Duration = Duration::from_secs(10);

/// Whether `error` says the server is gone (it died, or was lost).
pub(crate) fn is_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

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
    /// When each request whose answer has not been read yet was sent, oldest first.
    awaited: VecDeque<Instant>,
    /// Answers read and not yet taken, in request order.
    answers: VecDeque<Answer>,
    lost: bool,
    /// Told of every child's exit as it is reported.
    sink: Option<ExitSink>,
}

impl ForkServer {
    /// Starts `poolchaos-worker forkserver` with `env` added to its (and so
    /// its children's) environment, and waits until it is ready. The calling
    /// thread's death kills it (PDEATHSIG). A server that is gone before it
    /// is ready (killed from outside) is started again, for up to
    /// [`START_PATIENCE`].
    pub fn start(program: &WorkerProgram, env: Vec<(&'static str, OsString)>) -> io::Result<ForkServer> {
        let until = Instant::now() + START_PATIENCE;
        loop {
            match ForkServer::start_once(program, env.clone()) {
                // A breath between tries: a program that exits at once is not restarted in a tight loop.
                Err(e) if is_gone(&e) && Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                started => return started,
            }
        }
    }

    fn start_once(program: &WorkerProgram, env: Vec<(&'static str, OsString)>) -> io::Result<ForkServer> {
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
            awaited: VecDeque::from([Instant::now()]),
            answers: VecDeque::new(),
            lost: false,
            sink: program.exits.clone(),
        };
        match server.wait_answer()? {
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

    /// Asks for a child whose stdin and stdout are `stdin` and `stdout`, and
    /// which finds each of `extra` under the variable named with it, without
    /// waiting: its pid and pidfd come (in request order) from
    /// [`ForkServer::answered`] or [`ForkServer::wait_answered`].
    pub fn request(&mut self, stdin: OwnedFd, stdout: OwnedFd, extra: &[(BorrowedFd<'_>, &str)]) -> io::Result<()> {
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
        self.awaited.push_back(Instant::now());
        Ok(())
    }

    /// Waits for the answer to the oldest request; notes that arrive
    /// meanwhile are kept.
    pub fn wait_answered(&mut self) -> io::Result<Forked> {
        into_forked(self.wait_answer()?)
    }

    /// The answer to the oldest request, if it has come; never blocks.
    pub fn answered(&mut self) -> Option<io::Result<Forked>> {
        self.pump();
        self.answers.pop_front().map(into_forked)
    }

    /// When the oldest request not answered yet is overdue: [`ANSWER_TIMEOUT`]
    /// after it was sent.
    pub fn answer_due(&self) -> Option<Instant> {
        self.awaited.front().filter(|_| !self.lost).map(|sent| *sent + ANSWER_TIMEOUT)
    }

    /// Kills a server whose answer is overdue (stopped, or stuck), so it is
    /// lost like a dead one and its requests are asked of the next.
    pub fn give_up_if_overdue(&mut self) {
        if self.answer_due().is_some_and(|due| Instant::now() >= due) {
            self.lose();
        }
    }

    /// Whether notes or answers were read (while waiting for something
    /// else) and not taken: the socket will not turn readable for them.
    pub fn has_notes(&self) -> bool {
        !self.early.is_empty() || !self.answers.is_empty()
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

    /// Reads every message that is there into `early` and `answers`; never blocks.
    fn pump(&mut self) {
        while !self.lost {
            match self.receive() {
                Ok(Some(Message::Note(note))) => self.early.push_back(note),
                Ok(Some(Message::Answer(answer))) if !self.awaited.is_empty() => {
                    self.awaited.pop_front();
                    self.answers.push_back(answer);
                }
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

    /// Waits for the answer to the oldest request (or the READY greeting).
    fn wait_answer(&mut self) -> io::Result<Answer> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            self.pump();
            if let Some(answer) = self.answers.pop_front() {
                return Ok(answer);
            }
            if self.lost {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "fork server is gone"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.lose();
                return Err(io::Error::new(io::ErrorKind::TimedOut, "fork server does not answer"));
            }
            process::poll_one(self.control.as_fd(), PollFlags::IN, Some(left))?;
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

fn into_forked(answer: Answer) -> io::Result<Forked> {
    match answer {
        Answer::Spawned(forked) => Ok(forked),
        Answer::Failed(errno) => Err(io::Error::from_raw_os_error(errno)),
        Answer::Ready => Err(io::Error::other("fork server: unexpected READY")),
    }
}

enum Message {
    Answer(Answer),
    Note(Note),
}
