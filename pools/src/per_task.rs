//! `per-task`: one process per task, at most `workers` at a time, as in the
//! seed post's last program (a `multiprocessing.Process` per message).
//!
//! The supervisor thread starts a process for a task, writes it the task and
//! closes its task pipe, so the process exits after its one result. It knows
//! how each one ended: a process that dies without a result fails that task
//! alone with `WorkerLost` naming its signal or exit code; the other tasks
//! are untouched. With `task_timeout`, a process past its deadline is
//! SIGKILLed (through its pidfd) and its task fails as `TimedOut`. No retry:
//! the task's error is the answer. Processes die with the pool's owner. A
//! task that fails to encode, or whose result fails to decode (the
//! `encode`, `decode-result` faults), fails alone with that error; a
//! panicking callback is caught and kept on its job.
//!
//! How a task's process starts ([`Launch`]):
//! - **fork server** (the default): the supervisor thread starts one
//!   [fork server](crate::fork_server) (fork + exec of the worker binary,
//!   PDEATHSIG), which forks a child per task that runs the `private` worker
//!   loop. A task pays a fork of a small single-threaded process instead of
//!   an exec and a dynamic link, and not even that on its critical path:
//!   each slot has a **spare** child forked ahead, waiting on its empty task
//!   pipe; a task goes to a spare, and the next spare is asked of the server
//!   without waiting (its answer is read by the poll loop). A spare that
//!   died idle is dropped before it gets a task; one that died before it
//!   took the task it was given (the task still in its pipe) puts the task
//!   back: neither is charged. The server is each child's parent: it reaps
//!   them and reports every exit status back, and hands over a pidfd per
//!   child for signals. Children die with the server, and the server with
//!   this thread (PDEATHSIG on both) or on EOF of its control socket. If the
//!   server dies, its children's tasks fail as `WorkerLost` (SIGKILL, their
//!   PDEATHSIG) and a new server is started for the next task.
//! - **A refused fork** (the server's fork fails: EAGAIN when the run's
//!   `pids.max` is reached): no spare comes, and a task that has a free
//!   slot and finds no spare and none being forked fails at once as
//!   `SpawnFailed`, naming the refusal; the tasks still behind busy slots
//!   wait. The next spare is asked [`SPAWN_BACKOFF`] later (never in a
//!   tight loop); one that comes ends the refusal. Under spawn-exec a task
//!   whose own fork is refused fails the same way.
//! - **deaths at start**: a spare that died before it took its task (the
//!   `init` and `recycle` points fire as a process starts) charges nothing,
//!   its task (if it had one) going back to the queue; after
//!   [`START_DEATHS`] of them in a row
//!   with no task settled in between, no process can start: every queued
//!   task fails as `PoolBroken` naming the last one and how it ended, and
//!   starts pause, so a worker that always dies at start is no endless
//!   loop of forks.
//! - **spawn-exec**: a fork + exec of the worker binary per task (the seed's
//!   design, and the comparison for the benches); the supervisor reaps each
//!   child through its pidfd.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::actor::{ActorPool, Entry, Lifecycle, Mailbox};
use crate::fault;
use crate::fork_server::{ForkServer, Forked, Note};
use crate::outcome::{Exit, Outcome, TaskError};
use crate::pool::{PoolConfig, PoolError, PoolKind, START_DEATHS};
use crate::process::{self, Child, Spawn, WorkerProgram};
use crate::wire::{self, Frames, FromWorkerRef, ToWorkerRef};

const SPAWN_BACKOFF: Duration = Duration::from_millis(100);
/// How long a shutdown waits for the fork server to report killed children.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How per-task starts each task's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Launch {
    /// Forked by the pool's fork server (the default).
    #[default]
    ForkServer,
    /// A fork + exec of the worker binary per task.
    SpawnExec,
}

/// Starts a per-task pool with its fork server. Fails if the worker program
/// cannot be started.
pub fn start(config: &PoolConfig) -> Result<ActorPool, PoolError> {
    start_with(config, Launch::default())
}

/// Starts a per-task pool whose task processes start as `launch` says.
pub fn start_with(config: &PoolConfig, launch: Launch) -> Result<ActorPool, PoolError> {
    let limit = config.workers.max(1);
    let program = config.program.clone();
    let timeout = config.task_timeout;
    let (ready_tx, ready_rx) = mpsc::channel();
    let pool = ActorPool::start(PoolKind::PerTask, move |mailbox| {
        // Started on this thread, so it dies with it (PDEATHSIG). With
        // spawn-exec, one process up front, so a missing binary is an error now.
        let server = match launch {
            Launch::ForkServer => ForkServer::start(&program, Vec::new()).map(Some),
            Launch::SpawnExec => probe(&program).map(|()| None),
        };
        let (server, ready) = match server {
            Ok(server) => (server, Ok(())),
            Err(e) => (None, Err(e)),
        };
        let failed = ready.is_err();
        let _ = ready_tx.send(ready);
        let mut supervisor = Supervisor {
            mailbox,
            program,
            launch,
            server,
            limit,
            timeout,
            queue: VecDeque::new(),
            running: Vec::new(),
            spares: VecDeque::new(),
            forking: VecDeque::new(),
            refused: None,
            dying: Vec::new(),
            start_deaths: 0,
            start_paused: false,
        };
        if !failed {
            supervisor.run();
        }
        supervisor.shutdown();
    })?;
    ready_rx.recv().map_err(|_| PoolError::Spawn(io::Error::other("supervisor thread died")))??;
    Ok(pool)
}

/// Spawns a worker with no task and waits for it to exit cleanly.
fn probe(program: &WorkerProgram) -> io::Result<()> {
    let (task_r, task_w) = process::pipe()?;
    let (_result_r, result_w) = process::pipe()?;
    let spawn = Spawn::private(task_r, result_w);
    let mut child = Child::spawn(program, spawn)?;
    drop(task_w);
    match child.wait_timeout(Duration::from_secs(10))? {
        Some(Exit::Code(0)) => Ok(()),
        other => {
            let _ = child.kill_and_reap();
            Err(io::Error::other(format!("worker program did not start cleanly: {other:?}")))
        }
    }
}

/// A task's process, as started.
enum Proc {
    /// Our child: reaped through its pidfd.
    Exec(Child),
    /// The fork server's child: its exit comes from the server.
    Forked(Forked),
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Exec(child) => child.pid(),
            Proc::Forked(forked) => forked.pid,
        }
    }

    fn kill(&self) {
        let _ = match self {
            Proc::Exec(child) => child.signal(Signal::KILL),
            // Through its pidfd: never another process that got its pid.
            Proc::Forked(forked) => forked.signal(Signal::KILL),
        };
    }
}

/// One task's process.
struct Run {
    entry: Entry,
    proc: Proc,
    /// The task frame, until written whole; then the pipe is closed.
    to: Option<OwnedFd>,
    frame: Vec<u8>,
    written: usize,
    from: OwnedFd,
    results: Frames,
    /// A spare's task pipe, read end (see [`Spare`]).
    unread: Option<OwnedFd>,
    /// Its answer, once read: its result (or its own error), if it left one.
    answer: Option<Option<Result<Bytes, String>>>,
    /// The results pipe reached EOF: all it will ever say is in `results`.
    eof: bool,
    started: Instant,
    /// How long it had run when we killed it at its deadline
    /// ([`Run::enforce_deadline`]).
    timed_out: Option<Duration>,
    life: Life,
}

/// Where a task's process is in its life, as this thread knows it. Each
/// change is one method of [`Run`]: [`Run::exited`], [`Run::orphan`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    /// Alive, as far as we know.
    Running,
    /// A forked process whose server died: nobody will say how it ends
    /// (its PDEATHSIG kills it); its pidfd says when.
    Orphaned,
    /// It has exited (its pidfd turned readable); its server has not said
    /// how yet.
    Exited,
    /// It has exited, and we know how.
    Ended(Exit),
}

/// Our ends of a task process's pipes, both non-blocking.
struct Pipes {
    to: OwnedFd,
    from: OwnedFd,
}

impl Pipes {
    /// The pipes, and the process's ends of them (to hand to its start).
    fn new(launch: Launch) -> io::Result<(Pipes, OwnedFd, OwnedFd)> {
        if launch == Launch::ForkServer {
            // All four ends non-blocking, in two calls: a forked worker
            // makes its own ends blocking again.
            let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
            let (task_r, task_w) = rustix::pipe::pipe_with(flags)?;
            let (result_r, result_w) = rustix::pipe::pipe_with(flags)?;
            return Ok((Pipes { to: task_w, from: result_r }, task_r, result_w));
        }
        let (task_r, task_w) = process::pipe()?;
        let (result_r, result_w) = process::pipe()?;
        process::set_nonblocking(task_w.as_fd())?;
        process::set_nonblocking(result_r.as_fd())?;
        Ok((Pipes { to: task_w, from: result_r }, task_r, result_w))
    }
}

/// A child forked ahead, waiting on its empty task pipe.
struct Spare {
    proc: Forked,
    pipes: Pipes,
    /// Our copy of its task pipe's read end: once it is dead, whether its
    /// task is still in there says whether it ever took it.
    task_r: OwnedFd,
}

impl Run {
    /// Gives `entry` to a process: the spare if there is one, else one
    /// started now by spawn-exec.
    fn start(program: &WorkerProgram, spare: Option<Spare>, entry: Entry) -> Result<Run, (Entry, io::Error)> {
        let (proc, pipes, unread) = match spare {
            Some(Spare { proc, pipes, task_r }) => (Proc::Forked(proc), pipes, Some(task_r)),
            None => {
                let started = Pipes::new(Launch::SpawnExec).and_then(|(pipes, task_r, result_w)| {
                    Ok((Proc::Exec(Child::spawn(program, Spawn::private(task_r, result_w))?), pipes, None))
                });
                match started {
                    Ok(started) => started,
                    Err(e) => return Err((entry, e)),
                }
            }
        };
        let frame = wire::encode(&ToWorkerRef::Run { id: entry.id(), attempt: 0, task: &entry.task });
        let mut run = Run {
            entry,
            proc,
            to: Some(pipes.to),
            unread,
            frame,
            written: 0,
            from: pipes.from,
            results: Frames::new(),
            answer: None,
            eof: false,
            started: Instant::now(),
            timed_out: None,
            life: Life::Running,
        };
        run.write_task();
        Ok(run)
    }

    /// Writes what it can of the task; closes the pipe once it is all written.
    fn write_task(&mut self) {
        write_some(&mut self.to, &self.frame, &mut self.written);
    }

    fn read_results(&mut self) {
        loop {
            match self.results.read_from(&self.from, 16 << 10) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Learns whether it has exited (reaping it if it is ours); never blocks.
    fn check_exit(&mut self) {
        if self.has_exited() {
            return;
        }
        match &mut self.proc {
            Proc::Exec(child) => {
                if let Some(exit) = child.try_wait().ok().flatten() {
                    self.exited(Some(exit));
                }
            }
            // A pidfd turns readable when its process exits, whoever its parent is.
            Proc::Forked(forked) => {
                if forked.has_exited() {
                    self.exited(None);
                }
            }
        }
    }

    /// It has exited, ending as `how` if we know.
    fn exited(&mut self, how: Option<Exit>) {
        self.life = match (self.life, how) {
            (_, Some(exit)) => Life::Ended(exit),
            // Its server died first, and its PDEATHSIG is what killed it.
            (Life::Orphaned, None) => Life::Ended(Exit::Signal(libc::SIGKILL)),
            (Life::Ended(exit), None) => Life::Ended(exit),
            (Life::Running | Life::Exited, None) => Life::Exited,
        };
    }

    /// Its fork server died: a forked process nobody has said the end of
    /// will never be told of.
    fn orphan(&mut self) {
        if !matches!(self.proc, Proc::Forked(_)) {
            return;
        }
        self.life = match self.life {
            Life::Running => Life::Orphaned,
            Life::Exited => Life::Ended(Exit::Signal(libc::SIGKILL)),
            known => known,
        };
    }

    /// Kills it if it is still running at `now`, past its deadline.
    fn enforce_deadline(&mut self, timeout: Option<Duration>, now: Instant) {
        if let Some(deadline) = timeout.map(|t| self.started + t)
            && self.timed_out.is_none()
            && !self.has_exited()
            && now >= deadline
        {
            self.timed_out = Some(now - self.started);
            self.proc.kill();
        }
    }

    fn has_exited(&self) -> bool {
        matches!(self.life, Life::Exited | Life::Ended(_))
    }

    /// How it ended, if it has and we know.
    fn exit(&self) -> Option<Exit> {
        match self.life {
            Life::Ended(exit) => Some(exit),
            _ => None,
        }
    }

    /// The pidfd to poll until it has exited.
    fn watched_pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.proc {
            _ if self.has_exited() => None,
            Proc::Exec(child) => Some(child.pidfd()),
            Proc::Forked(forked) => Some(forked.pidfd.as_fd()),
        }
    }

    /// The task's outcome, once it is settled: the process has exited (so
    /// all it wrote is in the pipe) and it left its result, or ran past its
    /// deadline, or we know how it ended. A forked process that left no
    /// result waits for its server to say how it ended.
    fn settled(&mut self) -> Option<Settled> {
        if !self.has_exited() {
            return None;
        }
        if !self.eof {
            self.read_results();
        }
        let pid = self.proc.pid();
        // Its first frame is its answer, if it is this task's result.
        let answer = self.answer.get_or_insert_with(|| {
            let first = self.results.next_frame().ok().flatten()?;
            // A result that fires its fault as it is decoded fails its task alone.
            match fault::decode_result(first) {
                Ok(FromWorkerRef::Done { id, result }) if id == self.entry.id() => {
                    Some(result.map(Bytes::copy_from_slice).map_err(str::to_owned))
                }
                Err(fault::DecodeError::Fired { id, message }) if id == self.entry.id() => Some(Err(message)),
                _ => None,
            }
        });
        let outcome = match (answer.take(), self.timed_out, self.exit()) {
            (Some(result), _, _) => result.map_err(|message| TaskError::Task { message }),
            // A spare that died before it took its task (killed idle, or
            // with its server): the task never ran, and goes back.
            (None, None, _) if self.unread.as_ref().is_some_and(|r| task_untaken(r, self.written)) => {
                return Some(Settled::Untaken);
            }
            (None, Some(after), _) => Err(TaskError::TimedOut { pid, after, attempts: 1 }),
            (None, None, Some(exit)) => Err(TaskError::WorkerLost { pid, exit, attempts: 1 }),
            (None, None, None) => return None,
        };
        Some(Settled::Outcome(outcome))
    }
}

/// How a run ended.
enum Settled {
    Outcome(Outcome),
    /// Its process died before it took its task.
    Untaken,
}

/// Whether a dead process's task pipe still holds every byte of its task
/// that was `written`: then it never took any of it. (One that read the
/// first part of a large task, as the `transport` point fires, took it.)
fn task_untaken(task_r: &OwnedFd, written: usize) -> bool {
    written > 0 && rustix::io::ioctl_fionread(task_r).is_ok_and(|n| n as usize == written)
}

/// Writes what it can of `frame` to a non-blocking pipe; closes the pipe
/// once the frame is all written, or if the reader is gone.
fn write_some(to: &mut Option<OwnedFd>, frame: &[u8], written: &mut usize) {
    let Some(fd) = to else { return };
    while *written < frame.len() {
        match rustix::io::write(&*fd, &frame[*written..]) {
            Ok(n) => *written += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return,
            // It died before reading its task; how it ended comes later.
            Err(_) => break,
        }
    }
    *to = None;
}

struct Supervisor {
    mailbox: Arc<Mailbox>,
    program: WorkerProgram,
    launch: Launch,
    /// The fork server, while one runs (fork-server launch only).
    server: Option<ForkServer>,
    /// Children forked ahead, idle, each waiting for a task (fork-server launch only).
    spares: VecDeque<Spare>,
    /// Spares asked of the server and not forked yet, in request order.
    forking: VecDeque<(Pipes, OwnedFd)>,
    /// The server's last fork was refused (and when to ask again), until a spare comes.
    refused: Option<(io::Error, Instant)>,
    limit: usize,
    timeout: Option<Duration>,
    queue: VecDeque<Entry>,
    running: Vec<Run>,
    /// Spares dead before they took a task, until their server says how they ended.
    dying: Vec<Forked>,
    /// Spares dead as they started since a task last settled.
    start_deaths: u32,
    /// The queue was failed for deaths at start: pause the starts.
    start_paused: bool,
}

impl Supervisor {
    fn run(&mut self) {
        let mut paused_until: Option<Instant> = None;
        loop {
            let (batches, lifecycle) = self.mailbox.take();
            for batch in batches {
                self.queue.extend(batch.into_entries());
            }
            match lifecycle {
                Lifecycle::Terminating => return,
                Lifecycle::Closing if self.queue.is_empty() && self.running.is_empty() => return,
                _ => {}
            }
            if paused_until.is_none_or(|t| Instant::now() >= t) {
                paused_until = None;
                if let Err(e) = self.start_tasks() {
                    eprintln!("per-task: cannot start a task's process ({e}); retrying");
                    paused_until = Some(Instant::now() + SPAWN_BACKOFF);
                }
                self.publish_pids();
            }
            if let Err(e) = self.wait_and_handle(paused_until) {
                eprintln!("per-task: poll failed: {e}");
                std::thread::sleep(SPAWN_BACKOFF);
            }
            if std::mem::take(&mut self.start_paused) {
                paused_until = Some(Instant::now() + SPAWN_BACKOFF);
            }
        }
    }

    fn publish_pids(&self) {
        self.mailbox.set_pids(self.running.iter().map(|r| r.proc.pid()).collect());
        let whole = self.launch == Launch::SpawnExec || (self.spares.len() == self.limit && self.forking.is_empty());
        self.mailbox.set_settled(whole);
    }

    /// Starts queued tasks up to the limit: on spares (fork-server launch;
    /// a task waits for one if none is ready), or by spawn-exec.
    fn start_tasks(&mut self) -> io::Result<()> {
        while self.running.len() < self.limit && !self.queue.is_empty() {
            let spare = match self.launch {
                Launch::SpawnExec => None,
                Launch::ForkServer => match self.spares.pop_front() {
                    // Died idle (as it started, or killed from outside): it had no task to charge.
                    Some(spare) if spare.proc.has_exited() => {
                        self.dying.push(spare.proc);
                        continue;
                    }
                    Some(spare) => Some(spare),
                    // No process will come for it: it fails, naming the refusal.
                    None if self.forking.is_empty()
                        && let Some((refusal, _)) = &self.refused
                        && let Some(entry) = self.queue.pop_front() =>
                    {
                        entry.deliver(Err(TaskError::spawn_failed(refusal)));
                        continue;
                    }
                    None => break,
                },
            };
            let Some(entry) = self.queue.pop_front() else { break };
            // A task that fails to encode (its `encode` fault) fails alone;
            // its spare waits for the next one.
            if let Err(message) = fault::fire_encode(&entry.task, 0) {
                entry.deliver(Err(TaskError::Task { message }));
                if let Some(spare) = spare {
                    self.spares.push_front(spare);
                }
                continue;
            }
            match Run::start(&self.program, spare, entry) {
                Ok(run) => self.running.push(run),
                // Spawn-exec's fork refused (EAGAIN): the task gets no process, as on the server's path.
                Err((entry, e)) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    entry.deliver(Err(TaskError::spawn_failed(&e)));
                }
                Err((entry, e)) => {
                    self.queue.push_front(entry);
                    return Err(e);
                }
            }
        }
        self.fill_spares()
    }

    /// Asks the fork server for a spare per slot that has none, without
    /// waiting; starts a server if there is none.
    fn fill_spares(&mut self) -> io::Result<()> {
        if self.launch != Launch::ForkServer || self.refused.as_ref().is_some_and(|(_, at)| Instant::now() < *at) {
            return Ok(());
        }
        let mut retried = false;
        while self.spares.len() + self.forking.len() < self.limit {
            let server = match &mut self.server {
                Some(server) => server,
                None => self.server.insert(ForkServer::start(&self.program, Vec::new())?),
            };
            let (pipes, task_r, result_w) = Pipes::new(Launch::ForkServer)?;
            let ours = task_r.try_clone()?;
            match server.request(task_r, result_w, &[]) {
                Ok(()) => self.forking.push_back((pipes, ours)),
                Err(e) => {
                    // Takes a lost server out (its children are orphans now).
                    self.handle_notes();
                    if retried {
                        return Err(e);
                    }
                    // It died under us: once more, with a new one.
                    retried = true;
                }
            }
        }
        Ok(())
    }

    fn wait_and_handle(&mut self, paused_until: Option<Instant>) -> io::Result<()> {
        let now = Instant::now();
        let deadlines =
            self.running.iter().filter(|r| r.timed_out.is_none()).filter_map(|r| Some(r.started + self.timeout?));
        // A refused fork is asked again at its time, if a task waits for it.
        let ask_again = self.refused.as_ref().filter(|_| !self.queue.is_empty()).map(|(_, at)| *at);
        let mut timeout =
            deadlines.chain(paused_until).chain(ask_again).min().map(|d| d.saturating_duration_since(now));
        // Notes read while a spawn waited for its answer: nothing will wake us
        // for them, and a run they settle must not wait for the next event.
        if self.server.as_ref().is_some_and(ForkServer::has_notes) {
            self.handle_notes();
            timeout = Some(Duration::ZERO);
        }
        // What turned ready: the server's socket, and per run its pidfd and results pipe.
        let (server_ready, ready): (bool, Vec<(bool, bool)>) = {
            let wake = self.mailbox.wake_fd();
            let mut fds = vec![PollFd::new(&wake, PollFlags::IN)];
            let server_fd = self.server.as_ref().map(|s| s.fd());
            if let Some(fd) = &server_fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let pidfds: Vec<_> = self.running.iter().map(Run::watched_pidfd).collect();
            let mut at: Vec<(Option<usize>, Option<usize>)> = Vec::with_capacity(self.running.len());
            for (run, pidfd) in self.running.iter().zip(&pidfds) {
                let pid_at = pidfd.as_ref().map(|fd| {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    fds.len() - 1
                });
                // The results pipe: a result larger than a pipe buffer must be
                // drained while its process is still writing it.
                let from_at = (!run.has_exited() && !run.eof).then(|| {
                    fds.push(PollFd::new(&run.from, PollFlags::IN));
                    fds.len() - 1
                });
                at.push((pid_at, from_at));
            }
            let writers: Vec<_> = self.running.iter().filter_map(|r| r.to.as_ref()).collect();
            for to in &writers {
                fds.push(PollFd::new(*to, PollFlags::OUT));
            }
            process::poll(&mut fds, timeout)?;
            let is_ready = |i: Option<usize>| i.is_some_and(|i| !fds[i].revents().is_empty());
            let server_ready = server_fd.is_some() && !fds[1].revents().is_empty();
            (server_ready, at.into_iter().map(|(p, f)| (is_ready(p), is_ready(f))).collect())
        };
        if server_ready {
            self.handle_notes();
        }
        let now = Instant::now();
        for (run, (pid_ready, from_ready)) in self.running.iter_mut().zip(ready) {
            run.write_task();
            if from_ready {
                run.read_results();
            }
            if pid_ready || run.life == Life::Orphaned {
                run.check_exit();
            }
            run.enforce_deadline(self.timeout, now);
        }
        self.settle();
        self.publish_pids();
        Ok(())
    }

    /// Delivers the outcome of every run that settled, and puts back the
    /// task of every process that died before it took it.
    fn settle(&mut self) {
        for i in (0..self.running.len()).rev() {
            match self.running[i].settled() {
                Some(Settled::Outcome(outcome)) => {
                    self.running.swap_remove(i).entry.deliver(outcome);
                    self.start_deaths = 0;
                }
                Some(Settled::Untaken) => {
                    let run = self.running.swap_remove(i);
                    let exit = run.exit();
                    self.queue.push_front(run.entry);
                    match (exit, run.proc) {
                        (Some(exit), Proc::Forked(forked)) => {
                            self.died_starting(TaskError::PoolBroken { pid: forked.pid, exit })
                        }
                        (None, Proc::Forked(forked)) => self.dying.push(forked),
                        (_, Proc::Exec(_)) => {}
                    }
                }
                None => {}
            }
        }
    }

    /// Takes what the fork server reported: exits of our children, or its
    /// own death (after which its children, killed by their PDEATHSIG, are
    /// watched through their pidfds).
    fn handle_notes(&mut self) {
        let Some(server) = &mut self.server else { return };
        let mut died_starting = Vec::new();
        // Read first, then the answers taken: a spare dead as it started is
        // a spare by the time its exit is matched.
        let notes = server.notes();
        while let Some(answer) = server.answered() {
            let Some(pipes) = self.forking.pop_front() else { break };
            match answer {
                Ok(proc) => {
                    self.refused = None;
                    self.spares.push_back(Spare { proc, pipes: pipes.0, task_r: pipes.1 });
                }
                Err(e) => {
                    if self.refused.is_none() {
                        eprintln!("per-task: the fork server cannot fork ({e}); asking again every {SPAWN_BACKOFF:?}");
                    }
                    self.refused = Some((e, Instant::now() + SPAWN_BACKOFF));
                }
            }
        }
        for note in notes {
            match note {
                Note::Exited { pid, exit } => {
                    // (The server tells the program's exit sink itself.)
                    if let Some(run) = self.running.iter_mut().find(|r| r.proc.pid() == pid) {
                        run.exited(Some(exit));
                    } else if let Some(at) = self.dying.iter().position(|f| f.pid == pid) {
                        self.dying.swap_remove(at);
                        died_starting.push(TaskError::PoolBroken { pid, exit });
                    } else if let Some(at) = self.spares.iter().position(|s| s.proc.pid == pid) {
                        // A spare dead before it was given a task.
                        self.spares.remove(at);
                        died_starting.push(TaskError::PoolBroken { pid, exit });
                    }
                }
                Note::ServerLost => {}
            }
        }
        if server.is_lost() {
            // Spares and the ones asked for die with it, with no task.
            self.spares.clear();
            self.forking.clear();
            self.dying.clear();
            // Its children die with it; nobody will report their exits.
            for run in &mut self.running {
                run.orphan();
            }
            // Reap it; the next task starts a new one.
            if let Some(server) = self.server.take() {
                server.shutdown();
            }
        }
        for error in died_starting {
            self.died_starting(error);
        }
    }

    /// Counts a spare dead as it started (`error` names it); at
    /// [`START_DEATHS`] in a row, fails every queued task with `error` and
    /// pauses the starts.
    fn died_starting(&mut self, error: TaskError) {
        self.start_deaths += 1;
        if self.start_deaths < START_DEATHS {
            return;
        }
        self.start_deaths = 0;
        eprintln!(
            "per-task: {START_DEATHS} processes in a row died as they started (the last: {error}); failing the queue"
        );
        for entry in self.queue.drain(..) {
            entry.deliver(Err(error.clone()));
        }
        self.start_paused = true;
    }

    /// Kills what still runs (nothing, after a clean close) and fails what is left.
    fn shutdown(&mut self) {
        let error = TaskError::Terminated;
        for run in &self.running {
            run.proc.kill();
        }
        let deadline = Instant::now() + KILL_GRACE;
        while self
            .running
            .iter()
            .any(|r| matches!(r.proc, Proc::Forked(_)) && matches!(r.life, Life::Running | Life::Exited))
            && self.server.is_some()
            && Instant::now() < deadline
        {
            if let Some(server) = &self.server {
                let _ = process::poll_one(server.fd(), PollFlags::IN, Some(deadline - Instant::now()));
            }
            self.handle_notes();
        }
        // Spares get EOF on their task pipe, and the server kills what is left.
        self.spares.clear();
        self.forking.clear();
        for mut run in self.running.drain(..) {
            if let Proc::Exec(child) = &mut run.proc {
                let _ = child.kill_and_reap();
            }
            run.entry.deliver(Err(error.clone()));
        }
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        for entry in self.queue.drain(..) {
            entry.deliver(Err(error.clone()));
        }
        for batch in self.mailbox.finish() {
            batch.job.fail_pending(&error);
        }
    }
}
