//! The external rows of `poolchaos bench`: the Python targets, measured in
//! the same run and the same matrix as our pools.
//!
//! Each batch is one sandboxed run through the [runner](crate::run::runner): the
//! target's owner starts its pool and runs a warm-up task; the harness says
//! `go`; the owner times its call itself (a plan with `bench`: from the first
//! submission to the last result in hand, its own reports held back until
//! the call is over) and reports `timed` and then the outcomes. A batch with
//! faults has its workers trace, and is hung when no task starts or finishes
//! for the stall our pools get; the sandbox is then torn down as in any run.
//!
//! One row is our `supervised` pool driven the same way (`poolchaos owner`):
//! beside its in-process row it shows what this way of measuring does to a
//! figure.
//!
//! [`Fixed`] gives the benches a run's fixed cost: runs of one echo task
//! through the same runner, and a campaign's runs per second.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::bail;
use benches::load::{Batch, Cost, External, ExternalBatch, Fate, Rate, Settled};
use pools::{CallStyle, PoolKind, Task};

use crate::campaign;
use crate::judge::checker;
use crate::judge::verdict::Verdict;
use crate::protocol::{ErrorKind, Event};
use crate::run::runner::{self, RunContext};
use crate::scenario::plan::{BenchRun, Plan};
use crate::target::Target;

/// How long an owner may take to start its pool and run the warm-up task.
const START_UP: Duration = Duration::from_secs(60);
/// How long a batch may take from `go`: a cap for batches with faults,
/// which are watched for stalls; the limit for those without (their workers
/// do not trace, and a live pool returns them in well under a second).
const BATCH_DEADLINE: Duration = Duration::from_secs(60);
const QUIET_BATCH_DEADLINE: Duration = Duration::from_secs(10);

/// One external row: which target, called how, measured where.
pub struct ExternalRow {
    pub label: &'static str,
    pub target: Target,
    /// The call style, for targets that do not fix their own.
    pub style: CallStyle,
    pub chunksize: Option<usize>,
    /// Tasks per batch at 0 %: no-op, 1 ms.
    pub tasks: [u64; 2],
    /// Measured at 1 % and 5 % SIGKILL too, with batches of these sizes.
    pub failures: Option<[u64; 2]>,
    pub note: Option<&'static str>,
}

/// The external rows, in matrix order.
pub static ROWS: [ExternalRow; 9] = [
    ExternalRow {
        label: "supervised, via the harness",
        target: Target::Pool(PoolKind::Supervised),
        style: CallStyle::Map,
        chunksize: None,
        tasks: [20_000, 1_000],
        failures: None,
        note: Some(
            "our `supervised` pool run the way the Python targets are (`poolchaos owner` in a sandbox, the call \
             timed by the owner): beside its own row, what this way of measuring does to a figure. At no-op it \
             pays for a fresh pool's first big batch (allocations, first page faults), which the in-process \
             cells, run after a warm-up batch on one pool, do not; at 1 ms that is lost in the work.",
        ),
    },
    ExternalRow {
        label: benches::summary::PY_POOL_MAP,
        target: Target::python("py-pool-map"),
        style: CallStyle::Map,
        chunksize: Some(1),
        tasks: [10_000, 400],
        failures: Some([10_000, 400]),
        note: Some(
            "`multiprocessing.Pool.map` with chunksize 1: each task sent and tracked on its own, as `supervised` tracks them.",
        ),
    },
    ExternalRow {
        label: "py-pool-map, default chunksize",
        target: Target::python("py-pool-map"),
        style: CallStyle::Map,
        chunksize: None,
        tasks: [20_000, 400],
        failures: None,
        note: Some(
            "the same call with its default chunksize, `tasks / (4 x workers)` rounded up (2,500 tasks per chunk \
             here): a chunk goes to a worker, and comes back, whole.",
        ),
    },
    ExternalRow {
        label: "py-pool-apply-async",
        target: Target::python("py-pool-apply-async"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [5_000, 400],
        failures: None,
        note: Some(
            "the seed's call, `apply_async` per task with callbacks; a death hangs it as it hangs `map` (the \
             scenarios). `py-pool-apply`, `py-pool-map-async` and the seed's polling programs call the same pool \
             and are not benched.",
        ),
    },
    ExternalRow {
        label: "py-ppe",
        target: Target::python("py-ppe"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [2_000, 400],
        failures: Some([2_000, 400]),
        note: Some("`ProcessPoolExecutor.submit` per task."),
    },
    ExternalRow {
        label: "py-loky",
        target: Target::python("py-loky"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [2_000, 400],
        failures: Some([2_000, 400]),
        note: Some("loky's reusable executor, `submit` per task."),
    },
    ExternalRow {
        label: "py-pebble",
        target: Target::python("py-pebble"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [2_000, 400],
        failures: Some([1_000, 400]),
        note: Some(
            "`pebble.ProcessPool.schedule` per task; a killed task fails alone (`ProcessExpired`). Its manager \
             thread looks for dead workers every 0.1 s: each death leaves the pool a worker short for 50 ms on \
             average.",
        ),
    },
    ExternalRow {
        label: "py-billiard",
        target: Target::python("py-billiard"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [2_000, 400],
        failures: Some([100, 100]),
        note: Some(
            "`apply_async` per task. Each death stalls the whole pool for up to 0.8 s (its supervisor thread \
             replaces dead workers every 0.8 s), and the killed task fails (`WorkerLostError`) only after the \
             lost-worker timeout, about 10 s later (scenarios/billiard-lost-worker.toml): longer than the stall \
             the bench allows, so it shows as hangs; smaller batches at 1 % and 5 % for that reason.",
        ),
    },
    ExternalRow {
        label: benches::summary::PY_PROCESS_PER_TASK,
        target: Target::python("py-process-per-task"),
        style: CallStyle::ApplyAsync,
        chunksize: None,
        tasks: [100, 100],
        failures: Some([100, 100]),
        note: Some("the seed's last program: one `multiprocessing.Process` (fork) per task, two at a time."),
    },
];

/// A row, ready to be measured by the benches.
pub struct Bench<'a> {
    row: &'a ExternalRow,
    ctx: &'a RunContext,
    runs: Cell<u64>,
}

impl<'a> Bench<'a> {
    pub fn new(row: &'a ExternalRow, ctx: &'a RunContext) -> Bench<'a> {
        Bench { row, ctx, runs: Cell::new(0) }
    }

    /// The run's plan: `tasks` as one timed batch after a warm-up. With
    /// faults, the workers trace and the batch is hung after `stall` without
    /// progress; without, they write nothing the pool does not need.
    fn plan(&self, workers: usize, tasks: Vec<Task>, stall: Duration) -> Plan {
        let faults = tasks.iter().any(|t| t.fault.is_some());
        let bench = if faults {
            BenchRun { trace: true, deadline: BATCH_DEADLINE, stall: Some(stall) }
        } else {
            BenchRun { trace: false, deadline: QUIET_BATCH_DEADLINE, stall: None }
        };
        let style = self.row.target.style().unwrap_or(self.row.style);
        // Our pools' attempts; the Python pools do not retry.
        let mut plan =
            Plan::of_tasks(format!("bench: {}", self.row.label), self.row.target.clone(), workers, style, tasks);
        plan.deadline = START_UP + bench.deadline;
        plan.warmup = true;
        plan.bench = Some(bench);
        plan.chunksize = self.row.chunksize;
        plan
    }
}

impl External for Bench<'_> {
    fn name(&self) -> String {
        self.row.label.to_string()
    }

    fn note(&self) -> Option<String> {
        self.row.note.map(str::to_string)
    }

    fn cells(&self) -> (Vec<Cost>, Vec<Rate>) {
        let rates = if self.row.failures.is_some() { Rate::ALL.to_vec() } else { vec![Rate::Zero] };
        (vec![Cost::NoOp, Cost::Ms1], rates)
    }

    fn tasks(&self, cost: Cost, rate: Rate) -> u64 {
        let sizes = if rate == Rate::Zero { self.row.tasks } else { self.row.failures.unwrap_or(self.row.tasks) };
        if cost == Cost::NoOp { sizes[0] } else { sizes[1] }
    }

    fn run_batch(&self, workers: usize, tasks: Vec<Task>, stall: Duration) -> anyhow::Result<ExternalBatch> {
        let label = self.row.label;
        let n = tasks.len();
        let plan = self.plan(workers, tasks, stall);
        self.runs.set(self.runs.get() + 1);
        let run_id = format!("bench{}", self.runs.get());
        let result = runner::run(&plan, self.ctx, &run_id)?;
        let record = &result.record;
        let why = || format!("the run was {}: {}", record.verdict, record.diagnosis.join("; "));
        let (mut warmed, mut timed, mut hung) = (false, None, false);
        for logged in &result.events {
            match &logged.event {
                Event::Skipped { reason } => return Ok(ExternalBatch::Skipped { reason: reason.clone() }),
                Event::WarmedUp => warmed = true,
                Event::Timed { us } => timed = Some(Duration::from_micros(*us)),
                Event::Deadline => hung = true,
                _ => {}
            }
        }
        if record.verdict == Verdict::TargetError || !warmed {
            bail!(
                "{label}: the pool did not start and run its warm-up task, or its owner broke the protocol; {}",
                why()
            );
        }
        if hung {
            let elapsed = Duration::from_millis(record.elapsed_ms);
            return Ok(ExternalBatch::Ran(Batch { tasks: n, elapsed, settled: None }));
        }
        let Some(elapsed) = timed else {
            bail!("{label}: the owner reported no `timed` event for its call; {}", why());
        };
        let mut fates = Vec::with_capacity(n);
        for (index, task) in result.judgement.tasks.iter().enumerate() {
            fates.push(match &task.fate {
                checker::Fate::Ok => Fate::Correct,
                checker::Fate::Wrong => Fate::Wrong,
                checker::Fate::Pending => Fate::Failed("no outcome".into()),
                checker::Fate::Duplicated => bail!("{label}: task {index} got two outcomes"),
                checker::Fate::Failed(name) => match name.kind {
                    ErrorKind::WorkerLost | ErrorKind::TimedOut => Fate::Lost,
                    ErrorKind::PoolBroken => Fate::Broken,
                    ErrorKind::Task | ErrorKind::Terminated | ErrorKind::SpawnFailed | ErrorKind::Cancelled => {
                        Fate::Failed(name.to_string())
                    }
                },
            });
        }
        let settled = Settled::tally(label, &plan.tasks, fates)?;
        Ok(ExternalBatch::Ran(Batch { tasks: n, elapsed, settled: Some(settled) }))
    }
}

/// What `poolchaos bench` needs of the harness for a run's fixed cost
/// ([`benches::fixed`]): one-echo runs and a campaign, through the same
/// runner as every run.
pub struct Fixed<'a> {
    ctx: &'a RunContext,
    runs: Cell<u64>,
}

impl<'a> Fixed<'a> {
    pub fn new(ctx: &'a RunContext) -> Fixed<'a> {
        Fixed { ctx, runs: Cell::new(0) }
    }
}

impl benches::fixed::Harness for Fixed<'_> {
    fn owner_exit_at_once(&self) -> (&std::path::Path, Vec<String>) {
        (&self.ctx.exe, vec!["--version".into()])
    }

    fn one_echo_run(&self, workers: usize) -> anyhow::Result<Duration> {
        let (name, pool) = ("bench: one echo task".to_string(), Target::Pool(PoolKind::Supervised));
        let plan = Plan::of_tasks(name, pool, workers, CallStyle::Map, vec![Task::echo(0, *b"fixed")]);
        self.runs.set(self.runs.get() + 1);
        let started = Instant::now();
        let result = runner::run(&plan, self.ctx, &format!("fixed{}", self.runs.get()))?;
        let elapsed = started.elapsed();
        let record = &result.record;
        if record.verdict != Verdict::Completed {
            bail!("a run of one echo task was {}: {}", record.verdict, record.diagnosis.join("; "));
        }
        Ok(elapsed)
    }

    fn campaign(&self, runs: u64, jobs: usize) -> anyhow::Result<Duration> {
        let failures = tempfile::tempdir()?;
        let pool = Target::Pool(PoolKind::Supervised);
        let mut settings = campaign::Settings::new(pool, 7, campaign::Knobs::default(), failures.path().into());
        settings.runs = Some(runs);
        settings.jobs = jobs;
        settings.shrink = false;
        let started = Instant::now();
        let report = campaign::run(&settings, self.ctx, &|_| {})?;
        let elapsed = started.elapsed();
        if let Some(stop) = &report.interrupted {
            bail!("the campaign was interrupted: {stop:?}");
        }
        if report.runs.len() as u64 != runs {
            bail!("the campaign ran {} runs of {runs}", report.runs.len());
        }
        Ok(elapsed)
    }
}
