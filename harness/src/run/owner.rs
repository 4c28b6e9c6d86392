//! The pool's owner: the process the harness starts (by exec, as
//! `poolchaos owner`) inside a run's sandbox. It reads its plan from stdin,
//! starts the pool, runs the tasks in the plan's call style, and reports what
//! it sees as [`Event`] lines on stdout. It knows nothing of faults from
//! outside or deadlines: the harness kills it whole when time is up.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pools::fault::StartTokens;
use pools::{CallStyle, Callbacks, FaultPoint, PoolConfig, Task, WorkerProgram};

use crate::protocol::{CallbackKind, Event, Knob, OutcomeRecord, OwnerPlan};

/// The tag of the warm-up task (outside the plan's tags).
pub const WARMUP_TAG: u64 = u64::MAX;
/// How long the owner waits, after its warm-up, for the pool to have
/// started every process it starts ahead ([`pools::Pool::is_settled`]).
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Writes events as JSON lines; shared by the pool's threads (exits, callbacks).
#[derive(Clone)]
struct Emitter(Arc<Mutex<Held>>);

/// The events kept back while a benchmark's call is timed (`None`: none are).
struct Held(Option<Vec<Event>>);

impl Emitter {
    fn emit(&self, event: &Event) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &mut held.0 {
            Some(events) => events.push(event.clone()),
            None => write(std::slice::from_ref(event)),
        }
    }

    /// Keeps events back until `release`.
    fn hold(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(Vec::new());
    }

    fn release(&self) {
        let events = self.0.lock().unwrap_or_else(|e| e.into_inner()).0.take();
        write(&events.unwrap_or_default());
    }
}

fn write(events: &[Event]) {
    let mut out = std::io::stdout().lock();
    for event in events {
        // If the harness is gone there is no one to tell; the sandbox ends us.
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = out.flush();
}

/// The first fault of the plan our pools cannot place, as (point or kind,
/// why): the Python-only kinds (`sys-exit`, `unpicklable`,
/// `base-exception`, `memory-error`, `return-exception`), and
/// `callback`, `close`, `terminate`, `join` in a call style that takes no
/// callbacks or returns only when every task is over (as in the Python
/// adapter). Our pools place every other point: their workers at
/// `transport`, `init`, `decode`, `mid-task`, `encode-result`,
/// `transport-result`, `after-result`, `recycle` (the owner hands out the
/// start tokens and, for `recycle`, sets one task per worker) and `spawn`
/// (mid-task, under the runner's limit of the run's `pids.max`); the pool
/// as it encodes a task (`encode`) and decodes a result (`decode-result`);
/// the owner's callbacks at `callback`; a worker at `close`, `terminate`,
/// `join` as the owner ends the pool.
fn not_applicable(style: CallStyle, tasks: &[Task]) -> Option<(String, String)> {
    let faults = tasks.iter().filter_map(|t| t.fault);
    faults.into_iter().find_map(|f| {
        if f.kind.python_only() {
            return Some((crate::protocol::fault_kind_name(f.kind), python_only_why(f.kind).to_string()));
        }
        let point = crate::protocol::fault_point_name(f.point).to_string();
        let asynchronous = matches!(style, CallStyle::ApplyAsync | CallStyle::MapAsync);
        match f.point {
            FaultPoint::Callback if !asynchronous => {
                Some((point, format!("a `{}` call takes no callbacks", style.name())))
            }
            FaultPoint::Close | FaultPoint::Terminate | FaultPoint::Join if !asynchronous => Some((
                point,
                format!(
                    "a `{}` call returns when every task is over: no task runs while the pool is ended",
                    style.name()
                ),
            )),
            _ => None,
        }
    })
}

/// A chunksize above 1 is not applicable: our pools send each task on its
/// own (which is what a chunksize of 1 asks).
fn no_chunks(plan: &OwnerPlan) -> Option<(String, String)> {
    let why = "our pools send and track each task on its own: a call has no chunks";
    plan.chunksize.filter(|&n| n > 1).map(|_| ("chunksize".to_string(), why.to_string()))
}

/// Cancelling a task is not applicable: our pools' [`pools::AsyncResult`]
/// has no cancel (a job, once submitted, is every pool's to run to its
/// outcome; a cancel would have each of them take a task back from its
/// queue or stop the worker running it).
fn no_cancel(plan: &OwnerPlan) -> Option<(String, String)> {
    let why = "our pools' jobs have no cancel: a submitted task runs to its outcome";
    (!plan.cancel.is_empty()).then(|| ("cancel".to_string(), why.to_string()))
}

/// A pool's own knobs (`[target.NAME]`; the scenario checked each against
/// `protocol::KNOBS` for this pool).
fn apply_knobs(config: &mut PoolConfig, knobs: &BTreeMap<String, Knob>) -> anyhow::Result<()> {
    for (name, value) in knobs {
        let Knob::Count(n) = *value else { bail!("knob {name}: a count, not {value:?}") };
        match name.as_str() {
            "window" => config.window = n as usize,
            "rss_ceiling_kib" => config.rss_ceiling_kib = Some(n),
            "poll_interval_ms" => config.poll_interval = Duration::from_millis(n),
            other => bail!("our pools have no knob {other:?}"),
        }
    }
    Ok(())
}

/// Why our pools cannot place a Python-only fault kind.
fn python_only_why(kind: pools::FaultKind) -> &'static str {
    use pools::FaultKind;
    match kind {
        FaultKind::SysExit => "sys-exit is Python's SystemExit, an exception; a Rust worker has none",
        FaultKind::Unpicklable => "our pools encode with postcard, which refuses no task and no result",
        FaultKind::BaseException => "a BaseException is Python's; a Rust task has errors and panics",
        FaultKind::MemoryError => "MemoryError is Python's; a failed Rust allocation aborts the process",
        FaultKind::ReturnException => "a Rust task's result is bytes: there is no exception object to return",
        _ => "only a Python worker places it",
    }
}

/// Ends the pool at a plan's lifecycle stage (`close()` then `join()`, or
/// `terminate()` then `join()`), naming the stage (in this thread's name)
/// for the worker that dies in it just before the call that enters it, as
/// `end_by` in the Python adapter's `targets.py`.
fn end_pool(pool: &dyn pools::Pool, stage: pools::FaultPoint) -> Result<(), pools::PoolError> {
    use pools::FaultPoint;
    if stage == FaultPoint::Terminate {
        pools::set_stage(stage);
        pool.terminate();
    } else {
        if stage == FaultPoint::Close {
            pools::set_stage(stage);
        }
        pool.close();
        pools::set_stage(stage);
    }
    pool.join()
}

/// `poolchaos owner`: runs one plan. Returns the exit code.
pub fn main() -> i32 {
    let emitter = Emitter(Arc::new(Mutex::new(Held(None))));
    match run(&emitter) {
        Ok(()) => 0,
        Err(e) => {
            emitter.release();
            emitter.emit(&Event::OwnerError { message: format!("{e:#}") });
            2
        }
    }
}

/// The owner's life, phase by phase: the plan, the pool, the warm-up, the
/// call, the pool's end, and what the jobs refused.
fn run(emitter: &Emitter) -> anyhow::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).context("reading the plan")?;
    let plan: OwnerPlan = serde_json::from_str(&line).context("parsing the plan")?;
    let crate::target::Target::Pool(kind) = plan.pool else {
        anyhow::bail!("{} is not one of our pools: `poolchaos owner` runs only those", plan.pool)
    };
    let missing = not_applicable(plan.style, &plan.tasks).or_else(|| no_chunks(&plan)).or_else(|| no_cancel(&plan));
    if let Some((point, reason)) = missing {
        emitter.emit(&Event::NotApplicable { point, reason });
        return Ok(());
    }
    let pool = start_pool(kind, &plan, emitter)?;
    if plan.warmup {
        warm_up(&*pool, emitter, &mut stdin)?;
    }
    if plan.bench {
        emitter.hold();
    }
    let mut call = Call::new(&*pool, &plan, emitter);
    let took = call.run(&plan.tasks)?;
    if plan.bench {
        emitter.emit(&Event::Timed { us: took.as_micros() as u64 });
        emitter.release();
    }
    if !call.ended {
        close_and_join(&*pool, plan.join_timeout_ms, emitter)?;
    }
    // A second outcome for a task is refused by its job, and reported here.
    for (first, job) in &call.jobs {
        for slot in job.job().duplicate_slots() {
            emitter.emit(&Event::Duplicate { index: first + slot });
        }
    }
    emitter.emit(&Event::Finished);
    Ok(())
}

/// Starts the plan's pool with its worker program (the trace pipe, the
/// exits reported as events, the start faults' tokens) and its settings,
/// and reports `ready`.
fn start_pool(kind: pools::PoolKind, plan: &OwnerPlan, emitter: &Emitter) -> anyhow::Result<Box<dyn pools::Pool>> {
    let mut program = WorkerProgram::beside_current_exe().context("finding the worker binary")?;
    if let Ok(fd) = std::env::var(pools::process::TRACE_FD_ENV) {
        let fd: i32 = fd.parse().context("bad trace fd")?;
        // SAFETY: the harness passed us this fd for exactly this use; we own it from here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        program.trace = Some(Arc::new(fd));
    }
    let exits = emitter.clone();
    program.exits = Some(Arc::new(move |pid, exit| {
        exits.emit(&Event::WorkerExit { pid, signal: exit.signal(), code: exit.code() });
    }));
    // A fault placed as workers start (`init`, `recycle`): the start tokens,
    // as the Python adapter's `prepare_start_faults` fills them.
    let start =
        plan.tasks.iter().filter_map(|t| t.fault).find(|f| matches!(f.point, FaultPoint::Init | FaultPoint::Recycle));
    let recycle = start.is_some_and(|f| f.point == FaultPoint::Recycle);
    if let Some(f) = start {
        let clean = if recycle { plan.workers } else { 0 };
        program.start_tokens = Some(Arc::new(StartTokens::new(clean, f.times, f.kind).context("start tokens")?));
    }
    let mut config = PoolConfig::new(plan.workers, program);
    // `recycle` is the start of a worker that replaces one recycled after its one task.
    config.max_tasks_per_worker = plan.max_tasks.or(recycle.then_some(1));
    config.task_timeout = plan.task_timeout_ms.map(Duration::from_millis);
    config.max_attempts = plan.max_attempts;
    apply_knobs(&mut config, &plan.knobs)?;
    let pool = pools::build(kind, &config).context("starting the pool")?;
    emitter.emit(&Event::Ready { pid: std::process::id() });
    Ok(pool)
}

/// Runs the warm-up task, waits for the pool to be whole, reports
/// `warmed-up` and waits for the harness's `go`.
fn warm_up(pool: &dyn pools::Pool, emitter: &Emitter, stdin: &mut impl BufRead) -> anyhow::Result<()> {
    let warm = Task::echo(WARMUP_TAG, b"warm-up".to_vec());
    match pool.apply(warm.clone())? {
        Ok(bytes) if warm.check(&bytes) => {}
        other => bail!("warm-up task failed: {other:?}"),
    }
    // Whole (spares, standby) before the harness may limit the run's forks.
    let settling = Instant::now() + SETTLE_WAIT;
    while !pool.is_settled() && Instant::now() < settling {
        std::thread::sleep(Duration::from_millis(1));
    }
    emitter.emit(&Event::WarmedUp);
    let mut line = String::new();
    stdin.read_line(&mut line).context("waiting for go")?;
    Ok(())
}

/// Ends the pool by `close()` and `join()`; with a timeout, a join bounded
/// by it first: past it, `join-timed-out`, then a join without a bound
/// (the run's deadline is the harness's).
fn close_and_join(pool: &dyn pools::Pool, timeout_ms: Option<u64>, emitter: &Emitter) -> anyhow::Result<()> {
    pool.close();
    if let Some(ms) = timeout_ms {
        match pool.join_timeout(Some(Duration::from_millis(ms))) {
            Err(pools::PoolError::TimedOut { .. }) => emitter.emit(&Event::JoinTimedOut { timeout_ms: ms }),
            other => return Ok(other?),
        }
    }
    Ok(pool.join()?)
}

/// The plan's call, in its style: the pool, where the events go, how the
/// pool is ended early (a lifecycle stage, or a bounded join), and every
/// job with the index of its first task, to look for duplicates at the end.
struct Call<'a> {
    pool: &'a dyn pools::Pool,
    emitter: &'a Emitter,
    style: CallStyle,
    /// The stage at which the owner ends the pool under a dying worker, if any.
    stage: Option<FaultPoint>,
    join_timeout_ms: Option<u64>,
    /// The pool was ended before the results were collected.
    ended: bool,
    jobs: Vec<(usize, pools::AsyncResult)>,
}

impl<'a> Call<'a> {
    fn new(pool: &'a dyn pools::Pool, plan: &OwnerPlan, emitter: &'a Emitter) -> Self {
        let stage = plan
            .tasks
            .iter()
            .filter_map(|t| t.fault)
            .map(|f| f.point)
            .find(|p| matches!(p, FaultPoint::Close | FaultPoint::Terminate | FaultPoint::Join));
        let (style, join_timeout_ms) = (plan.style, plan.join_timeout_ms);
        Call { pool, emitter, style, stage, join_timeout_ms, ended: false, jobs: Vec::new() }
    }

    /// Runs the tasks and reports each outcome. Returns how long the call
    /// took to have every result in hand (a benchmark's time).
    fn run(&mut self, tasks: &[Task]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match self.style {
            // `map` and `apply` are `submit` and a wait, as in the Pool trait.
            CallStyle::Map | CallStyle::MapAsync => {
                let cb = match self.style {
                    CallStyle::Map => Callbacks::default(),
                    _ => callbacks(self.emitter, tasks),
                };
                let handle = self.pool.submit(tasks.to_vec(), cb);
                self.end_early()?;
                let outcomes = self.settle(0, handle)?;
                let took = started.elapsed();
                for (i, task) in tasks.iter().enumerate() {
                    self.outcome(i, task, &outcomes, i);
                }
                return Ok(took);
            }
            CallStyle::Apply => {
                for (i, task) in tasks.iter().enumerate() {
                    let one = self.settle(i, self.pool.submit(vec![task.clone()], Callbacks::default()))?;
                    self.outcome(i, task, &one, 0);
                }
            }
            CallStyle::ApplyAsync => {
                let handles: Vec<_> = tasks
                    .iter()
                    .map(|t| self.pool.submit(vec![t.clone()], callbacks(self.emitter, std::slice::from_ref(t))))
                    .collect();
                self.end_early()?;
                for (i, handle) in handles.into_iter().enumerate() {
                    let one = self.settle(i, handle)?;
                    self.outcome(i, &tasks[i], &one, 0);
                }
            }
        }
        Ok(started.elapsed())
    }

    /// Ends the pool before the results are collected: at the plan's
    /// lifecycle stage, or (an asynchronous call) by close and a join
    /// bounded by the plan's `join_timeout_ms`, with the tasks in flight.
    fn end_early(&mut self) -> anyhow::Result<()> {
        if let Some(stage) = self.stage {
            end_pool(self.pool, stage)?;
            self.ended = true;
        } else if self.join_timeout_ms.is_some() && matches!(self.style, CallStyle::ApplyAsync | CallStyle::MapAsync) {
            close_and_join(self.pool, self.join_timeout_ms, self.emitter)?;
            self.ended = true;
        }
        Ok(())
    }

    /// The outcomes of a submitted job, waited for. A call refused because
    /// the pool broke (polling, after a worker died) fails every task of
    /// that call, loudly, with the error that broke it.
    fn settle(
        &mut self,
        first: usize,
        handle: Result<pools::AsyncResult, pools::PoolError>,
    ) -> anyhow::Result<Vec<pools::Outcome>> {
        Ok(match handle {
            // Terminated with its tasks pending: CPython's pool never settles
            // them (the caller would wait for ever), so they are reported so.
            Ok(handle) if self.stage == Some(FaultPoint::Terminate) && !handle.ready() => {
                vec![Err(pools::TaskError::Terminated)]
            }
            Ok(handle) => {
                let outcomes = handle.wait(None).unwrap_or_default();
                self.jobs.push((first, handle));
                outcomes
            }
            Err(pools::PoolError::Broken(error)) => vec![Err(error)],
            Err(other) => return Err(other.into()),
        })
    }

    /// Task `index`'s outcome is `outcomes[at]`, or the one error a refused call got.
    fn outcome(&self, index: usize, task: &Task, outcomes: &[pools::Outcome], at: usize) {
        if let Some(outcome) = outcomes.get(at).or(outcomes.first().filter(|o| o.is_err())) {
            self.emitter.emit(&Event::Outcome { index, result: OutcomeRecord::from_outcome(task, outcome) });
        }
    }
}

/// The callbacks of a call over `tasks`: each reports itself, then fires
/// the `callback` fault of the first of them that has one (a panic for
/// `error` and `panic`: the callback raises).
fn callbacks(emitter: &Emitter, tasks: &[Task]) -> Callbacks {
    let (ok, err) = (emitter.clone(), emitter.clone());
    let fault = tasks.iter().filter_map(|t| t.fault).find(|f| f.point == FaultPoint::Callback).map(|f| f.kind);
    let fire = move || {
        if let Some(Err(message)) = fault.map(pools::fault::fire_fault) {
            panic!("callback: {message}");
        }
    };
    Callbacks {
        on_result: Some(Box::new(move |_| {
            ok.emit(&Event::Callback { kind: CallbackKind::Result });
            fire();
        })),
        on_error: Some(Box::new(move |_| {
            err.emit(&Event::Callback { kind: CallbackKind::Error });
            fire();
        })),
    }
}
