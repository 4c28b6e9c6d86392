//! `per-task`: one process per task, at most `workers` at a time, as in the
//! seed post's last program (a `multiprocessing.Process` per message).
//!
//! The supervisor thread spawns a worker for a task, writes it the task and
//! closes its task pipe, so the worker exits after its one result. It reaps
//! every child through its pidfd and knows how each ended: a child that dies
//! without a result fails that task alone with `WorkerLost` naming its signal
//! or exit code; the other tasks are untouched. With `task_timeout`, a child
//! past its deadline is SIGKILLed and its task fails as `TimedOut`. No retry:
//! the task's error is the answer. Workers die with the pool's owner
//! (`PR_SET_PDEATHSIG`). Robust, and it pays a process start per task.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::actor::{ActorPool, Entry, Lifecycle, Mailbox};
use crate::outcome::{Exit, TaskError};
use crate::process::{self, Child, Spawn, WorkerProgram};
use crate::wire::{self, FromWorker, ToWorkerRef};
use crate::{PoolConfig, PoolError, PoolKind};

const SPAWN_BACKOFF: Duration = Duration::from_millis(100);

/// Starts a per-task pool. Fails if the worker program cannot be started.
pub fn start(config: &PoolConfig) -> Result<ActorPool, PoolError> {
    let limit = config.workers.max(1);
    let program = config.program.clone();
    let timeout = config.task_timeout;
    // Start one process up front, so a missing worker binary is an error now.
    let (ready_tx, ready_rx) = mpsc::channel();
    let pool = ActorPool::start(PoolKind::PerTask, move |mailbox| {
        let probe = probe(&program);
        let failed = probe.is_err();
        let _ = ready_tx.send(probe);
        let mut supervisor =
            Supervisor { mailbox, program, limit, timeout, queue: VecDeque::new(), running: Vec::new() };
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
    let spawn = Spawn {
        mode: "private",
        stdin: task_r,
        stdout: result_w,
        inherit: Vec::new(),
        env: Vec::new(),
        die_with_parent: true,
    };
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

/// One task's process.
struct Run {
    entry: Entry,
    child: Child,
    /// The task frame, until written whole; then the pipe is closed.
    to: Option<OwnedFd>,
    frame: Vec<u8>,
    written: usize,
    from: OwnedFd,
    inbuf: Vec<u8>,
    started: Instant,
    timed_out: Option<Duration>,
    exited: bool,
}

impl Run {
    fn spawn(program: &WorkerProgram, entry: Entry) -> Result<Run, (Entry, io::Error)> {
        let spawned = (|| {
            let (task_r, task_w) = process::pipe()?;
            let (result_r, result_w) = process::pipe()?;
            let spawn = Spawn {
                mode: "private",
                stdin: task_r,
                stdout: result_w,
                inherit: Vec::new(),
                env: Vec::new(),
                die_with_parent: true,
            };
            let child = Child::spawn(program, spawn)?;
            process::set_nonblocking(task_w.as_fd())?;
            process::set_nonblocking(result_r.as_fd())?;
            Ok((child, task_w, result_r))
        })();
        match spawned {
            Ok((child, to, from)) => {
                let frame = wire::encode(&ToWorkerRef::Run { id: entry.id(), attempt: 0, task: &entry.task });
                let mut run = Run {
                    entry,
                    child,
                    to: Some(to),
                    frame,
                    written: 0,
                    from,
                    inbuf: Vec::new(),
                    started: Instant::now(),
                    timed_out: None,
                    exited: false,
                };
                run.write_task();
                Ok(run)
            }
            Err(e) => Err((entry, e)),
        }
    }

    /// Writes what it can of the task; closes the pipe once it is all written.
    fn write_task(&mut self) {
        let Some(to) = &self.to else { return };
        while self.written < self.frame.len() {
            match rustix::io::write(to, &self.frame[self.written..]) {
                Ok(n) => self.written += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => return,
                // It died before reading its task; its pidfd will say how.
                Err(_) => break,
            }
        }
        self.to = None;
    }

    fn read_results(&mut self) {
        let mut buf = [0u8; 64 << 10];
        loop {
            match rustix::io::read(&self.from, &mut buf) {
                Ok(0) => return,
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Reaps the child and lands the task's outcome.
    fn finish(mut self) {
        let exit = match self.child.wait_timeout(Duration::from_secs(1)) {
            Ok(Some(exit)) => exit,
            _ => self.child.kill_and_reap().unwrap_or(Exit::Signal(libc::SIGKILL)),
        };
        self.read_results();
        let pid = self.child.pid();
        let result = wire::split_frames(&self.inbuf).ok().and_then(|(frames, _)| {
            let first = frames.into_iter().next()?;
            match wire::decode::<FromWorker>(&self.inbuf[first]).ok()? {
                FromWorker::Done { id, result } if id == self.entry.id() => Some(result),
                _ => None,
            }
        });
        let outcome = match (result, self.timed_out) {
            (Some(result), _) => result.map_err(|message| TaskError::Task { message }),
            (None, Some(after)) => Err(TaskError::TimedOut { pid, after, attempts: 1 }),
            (None, None) => Err(TaskError::WorkerLost { pid, exit, attempts: 1 }),
        };
        self.entry.deliver(outcome);
    }
}

struct Supervisor {
    mailbox: Arc<Mailbox>,
    program: WorkerProgram,
    limit: usize,
    timeout: Option<Duration>,
    queue: VecDeque<Entry>,
    running: Vec<Run>,
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
                while self.running.len() < self.limit {
                    let Some(entry) = self.queue.pop_front() else { break };
                    match Run::spawn(&self.program, entry) {
                        Ok(run) => self.running.push(run),
                        Err((entry, e)) => {
                            eprintln!("per-task: cannot spawn a worker ({e}); retrying");
                            self.queue.push_front(entry);
                            paused_until = Some(Instant::now() + SPAWN_BACKOFF);
                            break;
                        }
                    }
                }
                self.mailbox.set_pids(self.running.iter().map(|r| r.child.pid()).collect());
            }
            if let Err(e) = self.wait_and_handle(paused_until) {
                eprintln!("per-task: poll failed: {e}");
                std::thread::sleep(SPAWN_BACKOFF);
            }
        }
    }

    fn wait_and_handle(&mut self, paused_until: Option<Instant>) -> io::Result<()> {
        let now = Instant::now();
        let deadlines =
            self.running.iter().filter(|r| r.timed_out.is_none()).filter_map(|r| Some(r.started + self.timeout?));
        let timeout = deadlines.chain(paused_until).min().map(|d| d.saturating_duration_since(now));
        let exited: Vec<bool> = {
            let wake = self.mailbox.wake_fd();
            let pidfds: Vec<_> = self.running.iter().map(|r| r.child.pidfd()).collect();
            let mut fds = vec![PollFd::new(&wake, PollFlags::IN)];
            for (run, pidfd) in self.running.iter().zip(&pidfds) {
                fds.push(PollFd::new(&run.from, PollFlags::IN));
                fds.push(PollFd::new(pidfd, PollFlags::IN));
            }
            let writers: Vec<_> = self.running.iter().filter_map(|r| r.to.as_ref()).collect();
            for to in &writers {
                fds.push(PollFd::new(*to, PollFlags::OUT));
            }
            process::poll(&mut fds, timeout)?;
            (0..self.running.len()).map(|i| !fds[2 + 2 * i].revents().is_empty()).collect()
        };
        for (run, exited) in self.running.iter_mut().zip(exited) {
            run.exited = exited;
        }
        let now = Instant::now();
        for run in &mut self.running {
            run.write_task();
            run.read_results();
            if let Some(deadline) = self.timeout.map(|t| run.started + t)
                && run.timed_out.is_none()
                && now >= deadline
            {
                run.timed_out = Some(now - run.started);
                let _ = run.child.signal(Signal::KILL);
            }
        }
        for i in (0..self.running.len()).rev() {
            if self.running[i].exited {
                self.running.swap_remove(i).finish();
            }
        }
        self.mailbox.set_pids(self.running.iter().map(|r| r.child.pid()).collect());
        Ok(())
    }

    /// Kills what still runs (nothing, after a clean close) and fails what is left.
    fn shutdown(&mut self) {
        let error = TaskError::Terminated;
        for mut run in self.running.drain(..) {
            let _ = run.child.kill_and_reap();
            run.entry.deliver(Err(error.clone()));
        }
        for entry in self.queue.drain(..) {
            entry.deliver(Err(error.clone()));
        }
        for batch in self.mailbox.finish() {
            batch.job.fail_pending(&error);
        }
    }
}
