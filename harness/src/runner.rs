//! The runner: one (scenario, pool) run, from sandbox to verdict.
//!
//! ```text
//!  runner thread                                  sandbox (own process group, own cgroups)
//!  ─────────────                                  ─────────────────────────────────────────
//!  spawn `poolchaos owner` (fork+exec) ─────────▶ owner ──spawns──▶ workers (oom_score_adj 1000)
//!  enter(owner) into the cgroups, then: plan ───▶ stdin                  │
//!  poll(owner stdout, trace, owner stderr, ◀──── stdout: events          │ trace: "start tag attempt pid"
//!       owner pidfd; timeout = next deadline) ◀───────────────────────────┘
//!  nemesis: signals by pid at its times
//!  deadline ⇒ kill the whole sandbox (cgroup.kill or freezer), hung
//!  owner exited ⇒ grace, then whatever is still in the sandbox is a leak
//!  after: temp files and named semaphores the run left are leaks too (then removed)
//!  checker: events + ending ⇒ RunRecord
//! ```
//!
//! The owner is started by exec, never by a bare fork of this multi-threaded
//! process; it dies with the thread that started it (`PR_SET_PDEATHSIG`).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal as Sig};

use crate::checker::{self, Ending, Judgement};
use crate::events::Logged;
use crate::nemesis::Nemesis;
use crate::plan::Plan;
use crate::protocol::{Event, OwnerPlan, Signal, parse_trace};
use crate::sandbox::{self, Mechanism, Sandbox};
use crate::session::Session;
use crate::verdict::RunRecord;

/// How long the processes of a run that ended may take to go before they are leaks.
const LEAK_GRACE: Duration = Duration::from_secs(1);
/// How long the idle-worker kill waits for a worker to sit in its read.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// What every run shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The `poolchaos` binary, which is also the owner of our pools.
    pub exe: PathBuf,
    /// The project's files (`targets/python/`, `.venv/`), for external targets.
    pub root: PathBuf,
    /// Where event logs go (`<scenario>--<pool>.events.jsonl`), if anywhere.
    pub events_dir: Option<PathBuf>,
    /// The session every run's sandbox comes from.
    pub session: Arc<Session>,
}

/// A run's result, its event log, and how its OOMs would have been caught.
pub struct RunResult {
    /// The checker's judgement of the run ...
    pub judgement: Judgement,
    /// ... as the reports record it.
    pub record: RunRecord,
    pub events: Vec<Logged>,
    pub mechanism: Mechanism,
}

/// Runs `plan` in a fresh sandbox. Errors are the harness's own (a sandbox
/// that cannot be made, an owner that cannot be spawned), not the pool's.
pub fn run(plan: &Plan, ctx: &RunContext, run_id: &str) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    let session = &ctx.session;
    let sandbox = session.sandbox(run_id, plan.memory_limit_mib)?;
    let mechanism = sandbox.mechanism().clone();
    let tmp = session.run_temp_dir()?;
    let mut run = Run::start(plan, ctx, &sandbox, tmp.path())?;
    let (events, mut ending) = run.watch(plan, &sandbox, session, started);
    // The semaphores the run holds now, to see which it leaves.
    let semaphores = sandbox::semaphores_mapped_by(&sandbox.processes());
    // Whatever is left: kill it all, and reap what was ours.
    let _ = sandbox.kill_all();
    run.reap_owner();
    session.reap_orphans();
    let leftovers: Vec<String> = std::fs::read_dir(tmp.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().display().to_string()).collect())
        .unwrap_or_default();
    ending.leaks.extend(leftovers.into_iter().map(|f| format!("temp file {f}")));
    // Named semaphores outlive their processes: the run's leak, then removed.
    for sem in sandbox::semaphores_left(run.owner.id(), &semaphores) {
        ending.leaks.push(format!("semaphore {} (left by {})", sem.display(), plan.pool));
        let _ = std::fs::remove_file(&sem);
    }
    ending.leaks.dedup();
    ending.oom_kills = sandbox.oom_kills();
    ending.mechanism = Some(mechanism.clone());
    sandbox.remove()?;
    ending.elapsed_ms = started.elapsed().as_millis() as u64;
    let judgement = checker::judge(plan, &events, &ending);
    let mut record = judgement.record(plan, &ending);
    if let Some(dir) = &ctx.events_dir {
        record.events = Some(write_events(dir, plan, &events)?);
    }
    Ok(RunResult { judgement, record, events, mechanism })
}

fn write_events(dir: &Path, plan: &Plan, events: &[Logged]) -> io::Result<String> {
    std::fs::create_dir_all(dir)?;
    // `py-pool-map@3.13/spawn`: a file name, not a directory.
    let name = format!("{}--{}.events.jsonl", plan.scenario, plan.pool.name().replace('/', "+"));
    let mut file = io::BufWriter::new(std::fs::File::create(dir.join(&name))?);
    for logged in events {
        serde_json::to_writer(&mut file, logged)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    Ok(format!("runs/{name}"))
}

/// The owner process and the pipes from it.
struct Run {
    owner: Child,
    owner_pidfd: OwnedFd,
    stdin: Option<std::process::ChildStdin>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    trace: OwnedFd,
}

impl Run {
    fn start(plan: &Plan, ctx: &RunContext, sandbox: &Sandbox, tmp: &Path) -> anyhow::Result<Run> {
        let (trace_r, trace_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let trace_fd = trace_w.as_raw_fd();
        let launch = plan.pool.launch(&ctx.exe, &ctx.root);
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .envs(launch.env)
            .current_dir(tmp)
            .env("TMPDIR", tmp)
            .env(pools::process::OOM_SCORE_ADJ_ENV, "1000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if plan.bench.is_none_or(|b| b.trace) {
            cmd.env(pools::process::TRACE_FD_ENV, trace_fd.to_string());
        }
        let parent = rustix::process::getpid();
        // SAFETY: between fork and exec: only fcntl, prctl and getppid, all async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(trace_fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                rustix::process::set_parent_process_death_signal(Some(Sig::KILL))?;
                if rustix::process::getppid() != Some(parent) {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut owner = cmd.spawn()?;
        drop(trace_w);
        let pid = Pid::from_raw(owner.id() as i32).ok_or_else(|| anyhow::anyhow!("owner pid 0"))?;
        let owner_pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())?;
        // Into the cgroups before it reads its plan, so every worker starts inside.
        if let Err(e) = sandbox.enter(owner.id()) {
            let _ = owner.kill();
            let _ = owner.wait();
            return Err(e.into());
        }
        let mut stdin = owner.stdin.take();
        let take = |fd: Option<OwnedFd>| fd.ok_or_else(|| anyhow::anyhow!("owner pipe missing"));
        let stdout = take(owner.stdout.take().map(OwnedFd::from))?;
        let stderr = take(owner.stderr.take().map(OwnedFd::from))?;
        for fd in [&stdout, &stderr, &trace_r] {
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        }
        let line = serde_json::to_string(&OwnerPlan::from(plan))?;
        if let Some(stdin) = &mut stdin {
            // A dead owner shows up in the watch loop; nothing to do here.
            let _ = writeln!(stdin, "{line}").and_then(|_| stdin.flush());
        }
        Ok(Run { owner, owner_pidfd, stdin, stdout, stderr, trace: trace_r })
    }

    /// Follows the run until the owner exits or the deadline passes.
    fn watch(&mut self, plan: &Plan, sandbox: &Sandbox, session: &Session, started: Instant) -> (Vec<Logged>, Ending) {
        let mut log = Log { started, events: Vec::new() };
        // OOM kills already put on a worker's exit.
        let mut oom_marked = 0;
        let mut ending = Ending::default();
        let mut nemesis = Nemesis::new(plan);
        let owner_pid = self.owner.id();
        let mut deadline = started + plan.deadline;
        // A benchmark's batch: hung when nothing moves for its stall, from `go` on.
        let mut stall: Option<(Duration, Instant)> = None;
        let mut lines = [LineBuf::default(), LineBuf::default()];
        let mut stderr_tail: Vec<u8> = Vec::new();
        let mut owner_exited = false;
        while !owner_exited {
            let now = Instant::now();
            if now >= deadline || stall.is_some_and(|(limit, moved)| now >= moved + limit) {
                log.push(Event::Deadline);
                ending.deadline_passed = true;
                break;
            }
            let mut wake = deadline;
            if let Some(at) = nemesis.next_at() {
                wake = wake.min(started + at);
            }
            if let Some((limit, moved)) = stall {
                wake = wake.min(moved + limit);
            }
            let timeout = wake.saturating_duration_since(now);
            let ready = {
                let mut fds = [
                    PollFd::new(&self.stdout, PollFlags::IN),
                    PollFd::new(&self.trace, PollFlags::IN),
                    PollFd::new(&self.stderr, PollFlags::IN),
                    PollFd::new(&self.owner_pidfd, PollFlags::IN),
                ];
                let ts = rustix::event::Timespec {
                    tv_sec: timeout.as_secs() as i64,
                    tv_nsec: i64::from(timeout.subsec_nanos()),
                };
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                fds.iter().map(|f| !f.revents().is_empty()).collect::<Vec<_>>()
            };
            owner_exited = ready[3];
            // Read everything there is, even after the owner exited: its last words count.
            let mut fresh = Vec::new();
            for line in lines[0].read(self.stdout.as_fd()) {
                fresh.push(serde_json::from_slice::<Event>(&line).unwrap_or_else(|e| Event::Malformed {
                    line: String::from_utf8_lossy(&line).chars().take(200).collect(),
                    error: e.to_string(),
                }));
            }
            for line in lines[1].read(self.trace.as_fd()) {
                if let Some(event) = parse_trace(&String::from_utf8_lossy(&line)) {
                    fresh.push(event);
                }
            }
            drain(self.stderr.as_fd(), &mut stderr_tail);
            for event in fresh {
                nemesis.observe(&event, started.elapsed());
                if let Some((_, moved)) = &mut stall
                    && matches!(event, Event::Outcome { .. } | Event::TaskStarted { .. } | Event::TaskDone { .. })
                {
                    *moved = Instant::now();
                }
                let warmed = event == Event::WarmedUp;
                let exited = match event {
                    Event::WorkerExit { pid, signal: Some(9), .. } => Some(pid),
                    _ => None,
                };
                log.push(event);
                if let Some(pid) = exited {
                    mark_oom(pid, sandbox, &mut oom_marked, &mut log);
                }
                if warmed {
                    self.strike_idle_worker(plan, sandbox, &mut log);
                    if let Some(bench) = plan.bench {
                        let go = Instant::now();
                        deadline = deadline.min(go + bench.deadline);
                        stall = bench.stall.map(|limit| (limit, go));
                    }
                }
            }
            let workers = workers(sandbox, owner_pid);
            for strike in nemesis.due(started.elapsed(), &workers, owner_pid) {
                if send(strike.pid, strike.signal) {
                    if strike.pid == owner_pid && strike.signal == Signal::Sigkill {
                        ending.owner_killed_by_plan = true;
                    }
                    log.push(Event::Nemesis { signal: strike.signal, pid: strike.pid, target: strike.target });
                }
            }
        }
        if owner_exited {
            let status = self.reap_owner();
            log.push(Event::OwnerExit { signal: status.and_then(|s| s.signal()), code: status.and_then(|s| s.code()) });
            // The owner is gone: whatever of the run outlives it by the grace is a leak.
            let grace_end = Instant::now() + LEAK_GRACE;
            let mut left = sandbox.processes();
            while !left.is_empty() && Instant::now() < grace_end {
                std::thread::sleep(Duration::from_millis(20));
                session.reap_orphans();
                left = sandbox.processes();
            }
            for pid in left {
                let what = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.replace('\0', " ").trim().to_string())
                    .unwrap_or_default();
                log.push(Event::Leak { pid, what: what.clone() });
                ending.leaks.push(format!("process {pid} ({what})"));
            }
        }
        let tail = String::from_utf8_lossy(&stderr_tail[stderr_tail.len().saturating_sub(2048)..]);
        ending.stderr_tail = tail.trim().to_string();
        (log.events, ending)
    }

    /// After the warm-up: waits until a worker sits in its read of the task
    /// channel (fd 0), SIGKILLs it (if the plan says so), and lets the owner go on.
    fn strike_idle_worker(&mut self, plan: &Plan, sandbox: &Sandbox, log: &mut Log) {
        let owner_pid = self.owner.id();
        for n in plan.nemesis.iter().filter(|n| n.target == crate::scenario::Aim::IdleWorker) {
            // A worker blocked in read(2) is waiting for work (in a shared-queue
            // pool, holding the inqueue's lock). A pool whose idle workers wait
            // otherwise gets its first worker struck after a while.
            let until = Instant::now() + IDLE_WAIT;
            let (victim, target) = loop {
                let workers = workers(sandbox, owner_pid);
                if let Some(&pid) = workers.iter().find(|&&p| reading(p)) {
                    break (Some(pid), "the idle worker, blocked in read(2) on its task channel");
                }
                if Instant::now() >= until {
                    break (workers.first().copied(), "an idle worker (none was blocked in read(2))");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if let Some(pid) = victim
                && send(pid, n.signal)
            {
                log.push(Event::Nemesis { signal: n.signal, pid, target: target.into() });
            }
        }
        if plan.nemesis.iter().any(|n| n.target == crate::scenario::Aim::IdleWorker) {
            // Give the pool's reaper a moment to see the death before the batch.
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "go").and_then(|_| stdin.flush());
        }
    }

    /// Reaps the owner (it has exited, or is being killed with the sandbox).
    fn reap_owner(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.owner.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = self.owner.kill();
                    return self.owner.wait().ok();
                }
            }
        }
    }
}

trait StatusExt {
    fn signal(&self) -> Option<i32>;
}

impl StatusExt for std::process::ExitStatus {
    fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// The run's workers: every process in the sandbox but the owner and the
/// helpers some Python pools start beside their workers (resource trackers).
fn workers(sandbox: &Sandbox, owner: u32) -> Vec<u32> {
    let helper = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(16).any(|w| w == b"resource_tracker"))
    };
    sandbox.processes().into_iter().filter(|&p| p != owner && !helper(p)).collect()
}

fn send(pid: u32, signal: Signal) -> bool {
    let sig = match signal {
        Signal::Sigkill => Sig::KILL,
        Signal::Sigstop => Sig::STOP,
    };
    Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// Whether `pid` is blocked in `read(2)`: an idle worker waiting for its
/// next task (in a shared-queue pool, on the inqueue, holding its lock).
fn reading(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split_whitespace().next() == Some("0"))
}

struct Log {
    started: Instant,
    events: Vec<Logged>,
}

impl Log {
    fn push(&mut self, event: Event) {
        self.events.push(Logged { t_ms: self.started.elapsed().as_millis() as u64, event });
    }
}

/// Marks the SIGKILLed worker `pid` as the OOM killer's if the sandbox
/// counts more OOM kills than were marked so far and the nemesis did not
/// strike it. The kernel counts the kill before it sends the SIGKILL, so the
/// count has risen by the time the worker's exit is seen; two workers killed
/// at once are marked in the order their exits are seen.
fn mark_oom(pid: u32, sandbox: &Sandbox, marked: &mut u64, log: &mut Log) {
    let struck = log.events.iter().any(|l| matches!(l.event, Event::Nemesis { pid: p, .. } if p == pid));
    if !struck && sandbox.oom_kills() > *marked {
        *marked += 1;
        log.push(Event::OomKill { pid, simulated: sandbox.mechanism().simulated_oom() });
    }
}

/// Bytes read so far from a non-blocking fd, split into lines.
#[derive(Default)]
struct LineBuf(Vec<u8>);

impl LineBuf {
    fn read(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Vec<Vec<u8>> {
        drain(fd, &mut self.0);
        let mut lines = Vec::new();
        while let Some(nl) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=nl).collect();
            lines.push(line[..line.len() - 1].to_vec());
        }
        lines
    }
}

/// Appends whatever a non-blocking fd has to `buf`.
fn drain(fd: std::os::fd::BorrowedFd<'_>, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 << 10];
    loop {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}
