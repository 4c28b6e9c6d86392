//! The runner: one (scenario, pool) run, from sandbox to verdict.
//!
//! ```text
//!  runner thread                                  sandbox (own process group, own cgroups)
//!  ─────────────                                  ─────────────────────────────────────────
//!  spawn `poolchaos owner` (fork+exec) ─────────▶ owner ──spawns──▶ workers (oom_score_adj 1000)
//!  enter(owner) into the cgroups, then: plan ───▶ stdin                  │
//!  poll(owner stdout, trace, owner stderr, ◀──── stdout: events          │ trace: "start tag attempt pid"
//!       owner pidfd; timeout = next deadline) ◀───────────────────────────┘
//!  nemesis: picks its victims from the events, freezes one, reads the trace, signals it by pid if mid-task
//!  deadline ⇒ kill the whole sandbox (cgroup.kill or freezer), hung
//!  owner exited ⇒ grace, then whatever is still in the sandbox is a leak
//!  after: temp files and the named semaphores the run's processes held are leaks too (then removed)
//!  checker: events + ending ⇒ RunRecord
//! ```
//!
//! A run goes through [`Phase`]s, each with its own deadline: *starting*
//! (the owner starts its pool; the plan's deadline), *warmed up* (the owner
//! ran its warm-up task and waits: the nemesis strikes the idle worker, then
//! `go`; a plan with a `spawn` fault has the run's `pids.max` set to 0
//! first, so the kernel refuses every fork from then on: see
//! [`pools::FaultPoint::Spawn`]), *running* (the batch; the plan's deadline, or a benchmark's own
//! deadline and stall from `go` on), *draining* (the owner exited: the rest
//! of the run has [`LEAK_GRACE`] to go), *done*. A deadline passed in any
//! phase before draining makes the run hung.
//!
//! The runner knows no pool's insides: a worker is what the events call one
//! (see [`crate::run::nemesis`]), and the run's semaphores are the `/dev/shm`
//! files its processes held, recorded while they live (every
//! [`SEMAPHORE_SCAN`], on every worker exit, before every strike and before
//! the teardown's kill; see [`crate::run::sandbox::RunSemaphores`]).
//!
//! A stop asked for (SIGINT, SIGTERM: [`crate::run::interrupt`]) ends every
//! phase but draining at once, as a deadline would, with the same teardown;
//! the run is not judged: [`run`] returns [`Interrupted`].
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

use crate::judge::checker::{self, Ending, Judgement};
use crate::judge::verdict::{Leak, RunRecord};
use crate::protocol::{Event, OwnerPlan, Signal, parse_trace};
use crate::run::events::Logged;
use crate::run::interrupt::Interrupted;
use crate::run::nemesis::{self, Frozen, Nemesis, Signals};
use crate::run::sandbox::{Mechanism, RUN_PIDS_MAX, RunSemaphores, Sandbox};
use crate::run::session::Session;
use crate::scenario::plan::Plan;

/// How long the processes of a run that ended may take to go before they are leaks.
pub const LEAK_GRACE: Duration = Duration::from_secs(1);
/// How often the run's semaphores are recorded while it runs.
pub const SEMAPHORE_SCAN: Duration = Duration::from_millis(100);
/// How often the draining phase looks for what is left of the run (its
/// deadline is [`LEAK_GRACE`]; a longer step only adds to every run's time).
const DRAIN_STEP: Duration = Duration::from_millis(2);

/// Where a run is; see the module notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The owner starts its pool, until `ready` (or `warmed-up`).
    Starting {
        deadline: Instant,
    },
    /// The owner ran its warm-up task and waits for `go`.
    WarmedUp {
        deadline: Instant,
    },
    /// The batch runs; a benchmark's is also hung when nothing moves for `stall`.
    Running {
        deadline: Instant,
        stall: Option<(Duration, Instant)>,
    },
    /// The owner exited; what is left of the run may go until `until`.
    Draining {
        until: Instant,
    },
    Done,
}

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
/// that cannot be made, an owner that cannot be spawned), not the pool's,
/// or [`Interrupted`]: a stop was asked for before or during the run.
pub fn run(plan: &Plan, ctx: &RunContext, run_id: &str) -> anyhow::Result<RunResult> {
    run_repeat(plan, ctx, run_id, None)
}

/// [`run`], as repeat `repeat` (from 1) of its cell: its event log's name says which.
pub fn run_repeat(plan: &Plan, ctx: &RunContext, run_id: &str, repeat: Option<u32>) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    let session = &ctx.session;
    session.stop().check()?;
    let sandbox = session.sandbox(run_id, plan.memory_limit_mib)?;
    let mechanism = sandbox.mechanism().clone();
    // The `spawn` point is the kernel's refusal, or nothing: without a pids cgroup the run is skipped.
    let unlimited = plan.limits_spawns().then(|| sandbox.limit_pids(RUN_PIDS_MAX).err()).flatten();
    let (events, mut ending, interrupted) = match unlimited {
        Some(e) => {
            let reason = format!("the `spawn` point needs the run's pids cgroup to refuse forks: {e} ({mechanism})");
            (vec![Logged { t_ms: 0, event: Event::Skipped { reason } }], Ending::default(), None)
        }
        None => sandboxed(plan, ctx, &sandbox, started)?,
    };
    ending.mechanism = Some(mechanism.clone());
    sandbox.remove()?;
    if let Some(interrupted) = interrupted {
        return Err(interrupted.into());
    }
    ending.elapsed_ms = started.elapsed().as_millis() as u64;
    let judgement = checker::judge(plan, &events, &ending);
    let mut record = judgement.record(plan, &ending);
    record.repeat = repeat;
    if let Some(dir) = &ctx.events_dir {
        record.events = Some(write_events(dir, plan, repeat, &events)?);
    }
    Ok(RunResult { judgement, record, events, mechanism })
}

/// Runs the owner in `sandbox` and follows it to its end (or a stop); kills
/// what is left, and records the leaks and OOM kills.
fn sandboxed(
    plan: &Plan,
    ctx: &RunContext,
    sandbox: &Sandbox,
    started: Instant,
) -> anyhow::Result<(Vec<Logged>, Ending, Option<Interrupted>)> {
    let session = &ctx.session;
    let tmp = session.run_temp_dir()?;
    let mut run = Run::start(plan, ctx, sandbox, tmp.path())?;
    let (events, mut ending) = run.watch(plan, sandbox, session, started);
    // What the run holds just before the kill, then kill it all, and reap what was ours.
    run.semaphores.record(&sandbox.processes());
    let _ = sandbox.kill_all();
    run.reap_owner();
    session.reap_orphans();
    let leftovers = std::fs::read_dir(tmp.path()).into_iter().flatten().flatten();
    ending.leaks.extend(leftovers.map(|e| Leak::TempFile { path: e.path().display().to_string() }));
    // Named semaphores outlive their processes: the run's leak, then removed.
    for sem in run.semaphores.left() {
        ending.leaks.push(Leak::Semaphore { path: sem.display().to_string() });
        let _ = std::fs::remove_file(&sem);
    }
    ending.oom_kills = sandbox.oom_kills();
    Ok((events, ending, run.interrupted))
}

fn write_events(dir: &Path, plan: &Plan, repeat: Option<u32>, events: &[Logged]) -> io::Result<String> {
    std::fs::create_dir_all(dir)?;
    // `py-pool-map@3.13/spawn`: a file name, not a directory.
    let pool = plan.pool.name().replace('/', "+");
    let repeat = repeat.map(|r| format!(".{r}")).unwrap_or_default();
    let name = format!("{}--{pool}{repeat}.events.jsonl", plan.scenario);
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
    /// The named semaphores its processes held.
    semaphores: RunSemaphores,
    /// The stop that cut the run short, if one did.
    interrupted: Option<Interrupted>,
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
        Ok(Run {
            owner,
            owner_pidfd,
            stdin,
            stdout,
            stderr,
            trace: trace_r,
            semaphores: RunSemaphores::default(),
            interrupted: None,
        })
    }

    /// Follows the run through its phases until it is done.
    fn watch(&mut self, plan: &Plan, sandbox: &Sandbox, session: &Session, started: Instant) -> (Vec<Logged>, Ending) {
        let mut w = Watch {
            log: Log { started, events: Vec::new() },
            ending: Ending::default(),
            nemesis: Nemesis::new(plan, self.owner.id()),
            io: Io::default(),
            oom_marked: 0,
        };
        let mut phase = Phase::Starting { deadline: started + plan.deadline };
        loop {
            // A stop ends the run as a deadline would, but for the draining (the owner is gone).
            if !matches!(phase, Phase::Draining { .. })
                && let Err(stop) = session.stop().check()
            {
                self.interrupted = Some(stop);
                break;
            }
            phase = match phase {
                Phase::Done => break,
                Phase::Starting { deadline } | Phase::WarmedUp { deadline } | Phase::Running { deadline, .. }
                    if Instant::now() >= deadline =>
                {
                    w.log.push(Event::Deadline);
                    w.ending.deadline_passed = true;
                    Phase::Done
                }
                Phase::Running { stall: Some((limit, moved)), .. } if Instant::now() >= moved + limit => {
                    w.log.push(Event::Deadline);
                    w.ending.deadline_passed = true;
                    Phase::Done
                }
                Phase::WarmedUp { deadline } => self.go(deadline, plan, sandbox, &mut w),
                Phase::Starting { deadline } | Phase::Running { deadline, .. } => {
                    self.step(phase, deadline, plan, sandbox, &mut w)
                }
                Phase::Draining { until } => self.drain(until, sandbox, session, &mut w),
            };
        }
        let tail = &w.io.stderr_tail[w.io.stderr_tail.len().saturating_sub(2048)..];
        w.ending.stderr_tail = String::from_utf8_lossy(tail).trim().to_string();
        (w.log.events, w.ending)
    }

    /// The warmed-up pool sits still: the nemesis strikes its idle worker,
    /// the `spawn` point's limit goes on, then the batch goes.
    fn go(&mut self, deadline: Instant, plan: &Plan, sandbox: &Sandbox, w: &mut Watch) -> Phase {
        if w.nemesis.strikes_idle() {
            self.semaphores.record(&sandbox.processes());
            for strike in w.nemesis.strike_idle(|| sandbox.processes()) {
                w.log.push(strike.event());
            }
            // Give the pool's reaper a moment to see the death before the batch.
            std::thread::sleep(Duration::from_millis(100));
        }
        // The `spawn` point: from here on the kernel refuses every fork in the run.
        if plan.limits_spawns() {
            match sandbox.limit_pids(0) {
                Ok(()) => w.log.push(Event::PidsLimited { max: 0 }),
                Err(e) => w.log.push(Event::Skipped { reason: format!("cannot limit the run's forks: {e}") }),
            }
        }
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "go").and_then(|_| stdin.flush());
        }
        match plan.bench {
            Some(bench) => {
                let go = Instant::now();
                let stall = bench.stall.map(|limit| (limit, go));
                Phase::Running { deadline: deadline.min(go + bench.deadline), stall }
            }
            None => Phase::Running { deadline, stall: None },
        }
    }

    /// The owner exited: waits for what is left of the run to go, until
    /// `until`; what is still there then is a leak.
    fn drain(&mut self, until: Instant, sandbox: &Sandbox, session: &Session, w: &mut Watch) -> Phase {
        let left = sandbox.processes();
        if left.is_empty() || Instant::now() >= until {
            for pid in left {
                let what = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.replace('\0', " ").trim().to_string())
                    .unwrap_or_default();
                w.log.push(Event::Leak { pid, what: what.clone() });
                w.ending.leaks.push(Leak::Process { pid, what });
            }
            Phase::Done
        } else {
            self.semaphores.record(&left);
            // Short steps: the last workers usually go within a few ms of the owner.
            std::thread::sleep(DRAIN_STEP.min(until.saturating_duration_since(Instant::now())));
            session.reap_orphans();
            Phase::Draining { until }
        }
    }

    /// One wait of the starting or running phase, at most until its
    /// `deadline`, the nemesis's next strike or the next semaphore scan:
    /// reads what the owner and the workers said, lets the nemesis strike,
    /// and says which phase comes next.
    fn step(&mut self, phase: Phase, deadline: Instant, plan: &Plan, sandbox: &Sandbox, w: &mut Watch) -> Phase {
        let Watch { log, ending, nemesis, io, oom_marked } = w;
        let started = log.started;
        let now = Instant::now();
        let mut wake = deadline.min(io.scanned + SEMAPHORE_SCAN);
        if let Some(at) = nemesis.next_at() {
            wake = wake.min(started + at);
        }
        if let Phase::Running { stall: Some((limit, moved)), .. } = phase {
            wake = wake.min(moved + limit);
        }
        let owner_exited = self.poll(wake.saturating_duration_since(now));
        let mut next = phase;
        // Read everything there is, even after the owner exited: its last words count.
        for event in io.read(self) {
            nemesis.observe(&event, started.elapsed());
            match (&event, &mut next) {
                (Event::WorkerExit { .. }, _) => self.semaphores.record(&sandbox.processes()),
                (Event::Ready { .. }, Phase::Starting { deadline }) if !plan.warmup => {
                    next = Phase::Running { deadline: *deadline, stall: None };
                }
                (Event::WarmedUp, Phase::Starting { deadline }) => next = Phase::WarmedUp { deadline: *deadline },
                (
                    Event::Outcome { .. } | Event::TaskStarted { .. } | Event::TaskDone { .. },
                    Phase::Running { stall: Some((_, moved)), .. },
                ) => *moved = Instant::now(),
                _ => {}
            }
            let exited = match event {
                Event::WorkerExit { pid, signal: Some(9), .. } => Some(pid),
                _ => None,
            };
            log.push(event);
            if let Some(pid) = exited {
                mark_oom(pid, sandbox, oom_marked, log);
            }
        }
        let live = sandbox.processes();
        if Instant::now() >= io.scanned + SEMAPHORE_SCAN || nemesis.due_at(started.elapsed()) {
            self.semaphores.record(&live);
            io.scanned = Instant::now();
        }
        let mut hand = TraceHand { trace: self.trace.as_fd(), buf: &mut io.trace, log, sandbox };
        for strike in nemesis.strike(started.elapsed(), &live, &mut hand) {
            if strike.pid == self.owner.id() && strike.signal == Signal::Sigkill {
                ending.owner_killed_by_plan = true;
            }
        }
        if owner_exited {
            let status = self.reap_owner();
            let signal = status.and_then(|s| s.signal());
            log.push(Event::OwnerExit { signal, code: status.and_then(|s| s.code()) });
            // SIGKILLed, not by the nemesis, with an OOM kill unaccounted for: the OOM killer's.
            if signal == Some(9) && !ending.owner_killed_by_plan && !plan.kills_owner() {
                ending.owner_oom = mark_oom(self.owner.id(), sandbox, oom_marked, log);
            }
            // The owner is gone: whatever of the run outlives it by the grace is a leak.
            return Phase::Draining { until: Instant::now() + LEAK_GRACE };
        }
        next
    }

    /// Waits at most `timeout` for the owner's pipes or its exit; whether it exited.
    fn poll(&self, timeout: Duration) -> bool {
        let mut fds = [
            PollFd::new(&self.stdout, PollFlags::IN),
            PollFd::new(&self.trace, PollFlags::IN),
            PollFd::new(&self.stderr, PollFlags::IN),
            PollFd::new(&self.owner_pidfd, PollFlags::IN),
        ];
        let ts =
            rustix::event::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        !fds[3].revents().is_empty()
    }

    /// Reaps the owner (it has exited, or is being killed with the sandbox).
    fn reap_owner(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.owner.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
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

/// What following a run gathers.
struct Watch {
    log: Log,
    ending: Ending,
    nemesis: Nemesis,
    io: Io,
    /// OOM kills already put on a worker's exit.
    oom_marked: u64,
}

/// What the owner and its workers wrote so far, and when the semaphores were last recorded.
struct Io {
    stdout: LineBuf,
    trace: LineBuf,
    stderr_tail: Vec<u8>,
    scanned: Instant,
}

impl Default for Io {
    fn default() -> Io {
        Io { stdout: LineBuf::default(), trace: LineBuf::default(), stderr_tail: Vec::new(), scanned: Instant::now() }
    }
}

impl Io {
    /// The events there are: the owner's lines, then the trace's.
    fn read(&mut self, run: &Run) -> Vec<Event> {
        let mut fresh = Vec::new();
        for line in self.stdout.read(run.stdout.as_fd()) {
            fresh.push(serde_json::from_slice::<Event>(&line).unwrap_or_else(|e| Event::Malformed {
                line: String::from_utf8_lossy(&line).chars().take(200).collect(),
                error: e.to_string(),
            }));
        }
        for line in self.trace.read(run.trace.as_fd()) {
            if let Some(event) = parse_trace(&String::from_utf8_lossy(&line)) {
                fresh.push(event);
            }
        }
        drain(run.stderr.as_fd(), &mut self.stderr_tail);
        fresh
    }
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

/// The nemesis's hand in a run: signals by pid, and the run's trace pipe
/// read to its end while a victim is frozen (see [`crate::run::nemesis`]).
struct TraceHand<'a> {
    trace: std::os::fd::BorrowedFd<'a>,
    buf: &'a mut LineBuf,
    log: &'a mut Log,
    sandbox: &'a Sandbox,
}

impl nemesis::Hand for TraceHand<'_> {
    fn freeze(&mut self, pid: u32) -> Frozen {
        Signals::freeze(pid)
    }

    fn thaw(&mut self, pid: u32) {
        Signals::thaw(pid);
    }

    fn trace(&mut self) -> Vec<Event> {
        let events: Vec<Event> =
            self.buf.read(self.trace).iter().filter_map(|l| parse_trace(&String::from_utf8_lossy(l))).collect();
        for event in &events {
            self.log.push(event.clone());
        }
        events
    }

    fn send(&mut self, pid: u32, signal: Signal) -> bool {
        Signals::send(pid, signal)
    }

    fn log(&mut self, event: Event) {
        self.log.push(event);
    }

    fn live(&mut self) -> Vec<u32> {
        self.sandbox.processes()
    }
}

/// Marks the SIGKILLed worker (or owner) `pid` as the OOM killer's if the
/// sandbox counts more OOM kills than were marked so far and the nemesis did
/// not strike it; whether it did. The kernel counts the kill before it sends the SIGKILL, so the
/// count has risen by the time the worker's exit is seen; two workers killed
/// at once are marked in the order their exits are seen.
fn mark_oom(pid: u32, sandbox: &Sandbox, marked: &mut u64, log: &mut Log) -> bool {
    let struck = log.events.iter().any(|l| matches!(l.event, Event::Nemesis { pid: p, .. } if p == pid));
    let oom = !struck && sandbox.oom_kills() > *marked;
    if oom {
        *marked += 1;
        log.push(Event::OomKill { pid, simulated: sandbox.mechanism().simulated_oom() });
    }
    oom
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
