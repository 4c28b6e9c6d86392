//! Fault-detection latency, and the cost of one task in `per-task`.
//!
//! **Detection latency**: a task that sleeps for a long time is submitted
//! alone; once its worker says (on the trace pipe) that it has started it,
//! this thread reads the clock and SIGKILLs that worker by pid, then waits
//! on the task's handle. The latency is from just before `kill(2)` to the
//! moment the waiting caller has the task's error in hand: `WorkerLost`
//! naming SIGKILL (supervised with `max_attempts = 1`, per-task), or
//! `PoolBroken` (polling, which looks every `poll_interval`). Both ends are
//! read on this thread's clock; nothing is stamped by the pool. Its floor is
//! the kernel's: a killed child's pipe reading EOF ([`crate::floor`]).
//!
//! **Cost of a task in per-task**: one `map` of no-op tasks on one worker, so
//! that one process runs at a time, as in a bare fork-and-wait; the time per
//! task, with the fork server and with a spawn-exec per task, in rounds
//! interleaved with fork-and-waits, so the two are measured side by side
//! (the machine's load changes over a run; a ratio of figures taken a minute
//! apart would measure that too).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use pools::per_task::Launch;
use pools::{Exit, Pool, PoolKind, Task, TaskError, WorkerProgram, Workload};
use rustix::process::{Pid, Signal};

use crate::load::{self, Cost, Rate};

/// Reads the workers' `start <tag> <attempt> <pid>` trace lines.
pub struct Trace {
    read: File,
    write: Arc<OwnedFd>,
    pending: String,
}

impl Trace {
    pub fn new() -> anyhow::Result<Trace> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Trace { read: File::from(read), write: Arc::new(write), pending: String::new() })
    }

    /// The worker program, writing its trace here.
    pub fn program(&self, program: &WorkerProgram) -> WorkerProgram {
        let mut program = program.clone();
        program.trace = Some(self.write.clone());
        program
    }

    /// Waits (up to `timeout`) for a worker to start the task tagged `tag`; its pid.
    pub fn wait_start(&mut self, tag: u64, timeout: Duration) -> anyhow::Result<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(nl) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=nl).collect();
                if let ["start", t, _, pid] = line.split_whitespace().collect::<Vec<_>>()[..]
                    && t.parse() == Ok(tag)
                {
                    return Ok(pid.parse()?);
                }
            }
            ensure!(Instant::now() < deadline, "no worker started task {tag} within {timeout:?}");
            let mut fds = [rustix::event::PollFd::new(&self.read, rustix::event::PollFlags::IN)];
            let ts = rustix::time::Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
            if matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0) {
                let mut buf = [0u8; 4096];
                let n = self.read.read(&mut buf)?;
                self.pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }
}

/// The pools whose detection latency is measured.
pub const DETECTING: [PoolKind; 3] = [PoolKind::Polling, PoolKind::PerTask, PoolKind::Supervised];

/// `samples` detection latencies of `kind` on 2 workers: SIGKILL of the
/// worker running a sleeping task to the caller holding its error.
pub fn detection(program: &WorkerProgram, kind: PoolKind, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let mut trace = Trace::new()?;
    let mut config = load::config(&trace.program(program), 2);
    config.max_attempts = 1;
    let mut pool: Option<Box<dyn Pool>> = None;
    let mut out = Vec::with_capacity(samples);
    for tag in 0..samples as u64 {
        if pool.is_none() {
            pool = Some(pools::build(kind, &config)?);
        }
        let p = pool.as_deref().context("pool")?;
        let task = Task { tag, work: Workload::Sleep { ms: 60_000 }, fault: None };
        let handle = p.submit(vec![task], pools::Callbacks::default())?;
        let pid = trace.wait_start(tag, Duration::from_secs(10))?;
        // Let it get into its sleep.
        std::thread::sleep(Duration::from_millis(2));
        let started = Instant::now();
        rustix::process::kill_process(Pid::from_raw(pid as i32).context("pid")?, Signal::KILL)?;
        let outcome = handle.wait(Some(Duration::from_secs(10)));
        let latency = started.elapsed();
        let killed = Exit::Signal(libc::SIGKILL);
        match outcome.as_deref() {
            Some([Err(TaskError::WorkerLost { pid: p, exit, .. })]) if *p == pid && *exit == killed => {}
            Some([Err(TaskError::PoolBroken { pid: p, exit })]) if *p == pid && *exit == killed => {
                // A broken pool takes no more work.
                if let Some(p) = pool.take() {
                    p.terminate();
                }
            }
            other => bail!("{kind}: the killed task came back as {other:?}"),
        }
        out.push(latency);
    }
    if let Some(p) = pool {
        p.terminate();
    }
    Ok(out)
}

/// The time per task of one `map` of `n` no-op tasks on a one-worker
/// per-task pool started as `launch` (best of `repeat`).
pub fn per_task_cost(program: &WorkerProgram, launch: Launch, n: u64, repeat: usize) -> anyhow::Result<Duration> {
    let pool = pools::per_task::start_with(&load::config(program, 1), launch)?;
    time_per_task(&pool, 10, 1 << 40)?;
    let mut best = Duration::MAX;
    for r in 0..repeat.max(1) as u64 {
        best = best.min(time_per_task(&pool, n, r * n)?);
    }
    pool.terminate();
    Ok(best)
}

fn time_per_task(pool: &dyn Pool, n: u64, first: u64) -> anyhow::Result<Duration> {
    let batch = load::run_batch(pool, load::tasks(Cost::NoOp, Rate::Zero, n, first), Duration::from_secs(60))?;
    let settled = batch.settled.context("per-task hung")?;
    ensure!(settled.completed as u64 == n, "per-task: {} of {n} completed", settled.completed);
    Ok(batch.elapsed / n as u32)
}

/// per-task's cost per task, and the floor it is judged against, measured
/// side by side.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerTaskCost {
    /// With the fork server (per-task's default).
    pub fork_server: Duration,
    /// With a spawn-exec per task.
    pub spawn_exec: Duration,
    /// One bare fork-and-wait, measured in the same rounds.
    pub fork_wait: Duration,
}

/// `rounds` rounds of: `n` fork-and-waits, `n` tasks with the fork server,
/// `n / 4` with spawn-exec; the best of each.
pub fn per_task_costs(program: &WorkerProgram, n: u64, rounds: usize) -> anyhow::Result<PerTaskCost> {
    let forked = pools::per_task::start_with(&load::config(program, 1), Launch::ForkServer)?;
    let execed = pools::per_task::start_with(&load::config(program, 1), Launch::SpawnExec)?;
    time_per_task(&forked, 10, 1 << 40)?;
    time_per_task(&execed, 10, 1 << 40)?;
    let mut best = PerTaskCost { fork_server: Duration::MAX, spawn_exec: Duration::MAX, fork_wait: Duration::MAX };
    for r in 0..rounds.max(1) as u64 {
        let forks = crate::floor::fork_wait(&program.path, n as u32)? / n as u32;
        best.fork_wait = best.fork_wait.min(forks);
        best.fork_server = best.fork_server.min(time_per_task(&forked, n, r * n)?);
        best.spawn_exec = best.spawn_exec.min(time_per_task(&execed, (n / 4).max(1), r * n)?);
    }
    forked.terminate();
    execed.terminate();
    Ok(best)
}

/// Median, 90th percentile and maximum of some durations.
pub fn spread(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    (at(0.5), at(0.9), sorted.last().copied().unwrap_or_default())
}
