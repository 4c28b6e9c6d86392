//! Throughput under failures: batches of tasks of one cost, with SIGKILLs
//! placed by the tasks themselves at an exact rate, run on one pool.
//!
//! A batch of `n` tasks at rate 1 % has a `Fault::once(SigKill, MidTask)` on
//! every 100th task (tags 99, 199, ...), at 5 % on every 20th: the rate is
//! exact, and a retry of the task runs clean. Each batch is one `map`-style
//! submission; its time is from the submission to the last outcome.
//!
//! What a batch comes to:
//! - every task has one outcome: throughput is the correct results per
//!   second (`completed`); failed tasks (per-task's killed ones, polling's
//!   broken ones) are counted apart, never as throughput;
//! - no outcome lands for a while (`stall`, a second in the quick run) with
//!   tasks pending: the pool **hangs** at that rate. A live pool settles a
//!   task every few milliseconds at worst here (a respawn, a 1 ms task).
//!
//! An [`External`] target (a Python pool, run by the harness) is measured
//! the same way, a fresh pool per batch, with its call timed by its owner;
//! its batch hangs when no task starts, finishes or gets an outcome for
//! `stall`.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use pools::{Fault, FaultKind, FaultPoint, Pool, PoolConfig, PoolKind, Task, TaskError, WorkerProgram, Workload};

/// What each task costs its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cost {
    /// An echo of nothing: the pool's own overhead.
    NoOp,
    /// 100 µs of CPU.
    Us100,
    /// 1 ms of CPU.
    Ms1,
}

impl Cost {
    pub const ALL: [Cost; 3] = [Cost::NoOp, Cost::Us100, Cost::Ms1];

    pub fn name(self) -> &'static str {
        match self {
            Cost::NoOp => "no-op",
            Cost::Us100 => "100 µs",
            Cost::Ms1 => "1 ms",
        }
    }

    /// For ids and file names.
    pub fn slug(self) -> &'static str {
        match self {
            Cost::NoOp => "noop",
            Cost::Us100 => "100us",
            Cost::Ms1 => "1ms",
        }
    }

    pub fn workload(self) -> Workload {
        match self {
            Cost::NoOp => Workload::Echo(Vec::new()),
            Cost::Us100 => Workload::Spin { us: 100 },
            Cost::Ms1 => Workload::Spin { us: 1000 },
        }
    }

    /// The CPU time of one task, if it has one.
    pub fn work(self) -> Option<Duration> {
        match self {
            Cost::NoOp => None,
            Cost::Us100 => Some(Duration::from_micros(100)),
            Cost::Ms1 => Some(Duration::from_millis(1)),
        }
    }
}

/// The share of tasks that SIGKILL their worker mid-task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rate {
    Zero,
    One,
    Five,
}

impl Rate {
    pub const ALL: [Rate; 3] = [Rate::Zero, Rate::One, Rate::Five];

    pub fn percent(self) -> u32 {
        match self {
            Rate::Zero => 0,
            Rate::One => 1,
            Rate::Five => 5,
        }
    }

    pub fn name(self) -> String {
        format!("{} %", self.percent())
    }

    /// Every how many tasks one kills its worker.
    pub fn every(self) -> Option<u64> {
        match self {
            Rate::Zero => None,
            Rate::One => Some(100),
            Rate::Five => Some(20),
        }
    }
}

/// `n` tasks of `cost`, tagged from `first`, every `rate.every()`-th one
/// SIGKILLing its worker halfway through its first attempt.
pub fn tasks(cost: Cost, rate: Rate, n: u64, first: u64) -> Vec<Task> {
    (0..n)
        .map(|i| {
            let fault = rate
                .every()
                .filter(|every| (i + 1) % every == 0)
                .map(|_| Fault::once(FaultKind::SigKill, FaultPoint::MidTask));
            Task { tag: first + i, work: cost.workload(), fault }
        })
        .collect()
}

/// How one batch went.
#[derive(Debug, Clone)]
pub struct Batch {
    pub tasks: usize,
    pub elapsed: Duration,
    /// `None`: no outcome landed for `stall` with tasks pending (hung).
    pub settled: Option<Settled>,
}

/// The outcomes of a batch that settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Correct results.
    pub completed: usize,
    /// Tasks failed as `WorkerLost` / `TimedOut` (the pool failed that task alone).
    pub lost: usize,
    /// Tasks failed as `PoolBroken` (the pool gave up on everything pending).
    pub broken: usize,
}

/// What became of one task of a batch, as throughput counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Its correct result.
    Correct,
    /// A result that is not the task's.
    Wrong,
    /// Failed alone, as `WorkerLost` or `TimedOut`.
    Lost,
    /// Failed with everything pending, as `PoolBroken`.
    Broken,
    /// Any other failure, in its own words.
    Failed(String),
}

impl Settled {
    /// Counts the fates of `tasks`, in order. An error for a wrong result, a
    /// missing outcome, or a failure the task's own fault cannot explain.
    pub fn tally(who: &str, tasks: &[Task], fates: Vec<Fate>) -> anyhow::Result<Settled> {
        ensure!(fates.len() == tasks.len(), "{who}: {} outcomes for {} tasks", fates.len(), tasks.len());
        let mut settled = Settled::default();
        for (task, fate) in tasks.iter().zip(fates) {
            match fate {
                Fate::Correct => settled.completed += 1,
                Fate::Lost if task.fault.is_some() => settled.lost += 1,
                Fate::Broken => settled.broken += 1,
                Fate::Wrong => bail!("{who}: task {} got a wrong result", task.tag),
                Fate::Lost => bail!("{who}: task {} was lost, and it has no fault", task.tag),
                Fate::Failed(e) => bail!("{who}: task {} failed: {e}", task.tag),
            }
        }
        Ok(settled)
    }
}

/// Submits `tasks` at once and waits for every outcome, unless none lands
/// for `stall` (then the batch is hung). An error if a result is wrong, a
/// task has two outcomes, or a task fails in a way its fault cannot explain.
pub fn run_batch(pool: &dyn Pool, tasks: Vec<Task>, stall: Duration) -> anyhow::Result<Batch> {
    let n = tasks.len();
    let submitted = tasks.clone();
    let started = Instant::now();
    let handle = pool.submit(submitted, pools::Callbacks::default())?;
    let (mut pending, mut progress) = (n, started);
    let settled = loop {
        if handle.wait_settled(Some(Duration::from_millis(20))) {
            break true;
        }
        let now = handle.job().pending();
        if now != pending {
            (pending, progress) = (now, Instant::now());
        } else if progress.elapsed() >= stall {
            break false;
        }
    };
    if !settled {
        return Ok(Batch { tasks: n, elapsed: started.elapsed(), settled: None });
    }
    ensure!(handle.job().duplicates() == 0, "{}: a task got two outcomes", pool.kind());
    // Moved out of the job, not copied: a copy of each result would be timed.
    let outcomes = handle.into_outcomes(None).map_err(|_| anyhow::anyhow!("a settled job has no outcomes"))?;
    let elapsed = started.elapsed();
    let fates = tasks
        .iter()
        .zip(&outcomes)
        .map(|(task, outcome)| match outcome {
            Ok(bytes) if task.check(bytes) => Fate::Correct,
            Ok(_) => Fate::Wrong,
            Err(TaskError::WorkerLost { .. } | TaskError::TimedOut { .. }) => Fate::Lost,
            Err(TaskError::PoolBroken { .. }) => Fate::Broken,
            Err(e) => Fate::Failed(e.to_string()),
        })
        .collect();
    let settled = Settled::tally(&pool.kind().to_string(), &tasks, fates)?;
    Ok(Batch { tasks: n, elapsed, settled: Some(settled) })
}

/// What one cell (pool x cost x rate) of the matrix came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Throughput {
    /// Correct results per second (median of the runs), and the share of
    /// the batch that completed (1.0 unless the pool fails killed tasks).
    Rate { per_s: f64, completed: f64 },
    /// The pool broke at the first death and failed everything pending
    /// (polling): correct results per second until then, and their share.
    Breaks { per_s: f64, completed: f64 },
    /// The deadline passed with tasks pending.
    Hangs,
}

impl Throughput {
    /// Results per second, whatever the kind.
    pub fn per_s(&self) -> Option<f64> {
        match self {
            Throughput::Rate { per_s, .. } | Throughput::Breaks { per_s, .. } => Some(*per_s),
            Throughput::Hangs => None,
        }
    }
}

/// A row of the matrix: one of our pools, run in this process, or an
/// external target (a Python pool) that the harness runs in its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Pool(PoolKind),
    External(String),
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Pool(kind) => write!(f, "{kind}"),
            Row::External(name) => f.write_str(name),
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub row: Row,
    pub cost: Cost,
    pub rate: Rate,
    /// Tasks per batch.
    pub tasks: u64,
    pub throughput: Throughput,
    /// The median batch's time, from submission to its last outcome (`None`: hung).
    pub elapsed: Option<Duration>,
    /// Every run's time, in the order run: the `i`th run of each rate of a
    /// pool and cost was measured in the same round, back to back (empty
    /// for a cell that hung, and for the external targets, whose rates are
    /// not run by rounds).
    pub runs: Vec<Duration>,
}

impl Cell {
    /// How many tasks of a batch of this cell SIGKILL their worker.
    pub fn deaths(&self) -> u64 {
        self.rate.every().map_or(0, |every| self.tasks / every)
    }
}

/// How big and how many the batches of a cell are.
#[derive(Debug, Clone, Copy)]
pub struct LoadSizes {
    /// Tasks per batch for the persistent-worker pools, by cost.
    pub batch: [u64; 3],
    /// Tasks per batch for per-task, by cost.
    pub per_task_batch: [u64; 3],
    /// Timed batches per cell (the median is kept).
    pub repeat: usize,
    /// How long a batch may go without an outcome landing before it is hung.
    pub stall: Duration,
    /// At most this many tasks per batch of an external target.
    pub external_cap: u64,
}

impl LoadSizes {
    pub const QUICK: LoadSizes = LoadSizes {
        batch: [20_000, 4_000, 1_000],
        per_task_batch: [2_000, 2_000, 1_000],
        repeat: 5,
        stall: Duration::from_secs(1),
        external_cap: u64::MAX,
    };
    pub const SMOKE: LoadSizes = LoadSizes {
        batch: [100, 100, 100],
        per_task_batch: [100, 100, 100],
        repeat: 1,
        stall: Duration::from_millis(500),
        external_cap: 20,
    };

    pub fn tasks(&self, pool: PoolKind, cost: Cost) -> u64 {
        let i = Cost::ALL.iter().position(|&c| c == cost).unwrap_or(0);
        if pool == PoolKind::PerTask { self.per_task_batch[i] } else { self.batch[i] }
    }
}

/// The configuration every benched pool gets: 2 workers, supervised's 3 attempts.
pub fn config(program: &WorkerProgram, workers: usize) -> PoolConfig {
    PoolConfig::new(workers, program.clone())
}

/// Measures every rate of one pool at one cost: a fresh pool per rate (and
/// per run, once it broke), each warmed up first. The rates take turns,
/// run by run (0 %, 1 %, 5 %, 0 %, ...), so the runs of one round are
/// measured back to back: a load that comes and goes on a shared machine
/// moves the rates of a round together, and a death's cost is judged within
/// a round ([`Cell::runs`]).
pub fn measure_cost(
    program: &WorkerProgram,
    kind: PoolKind,
    cost: Cost,
    workers: usize,
    sizes: &LoadSizes,
) -> anyhow::Result<Vec<Cell>> {
    let n = sizes.tasks(kind, cost);
    let fresh = || -> anyhow::Result<Box<dyn Pool>> {
        let pool = pools::build(kind, &config(program, workers))?;
        run_batch(&*pool, tasks(cost, Rate::Zero, (n / 10).max(10), 1 << 40), Duration::from_secs(10))?;
        Ok(pool)
    };
    struct Turn {
        rate: Rate,
        pool: Option<Box<dyn Pool>>,
        runs: Vec<(Duration, Settled)>,
        hung: bool,
    }
    let mut turns = Vec::new();
    for rate in Rate::ALL {
        turns.push(Turn { rate, pool: Some(fresh()?), runs: Vec::new(), hung: false });
    }
    for r in 0..sizes.repeat.max(1) {
        for turn in turns.iter_mut().filter(|t| !t.hung) {
            let Some(pool) = &turn.pool else { continue };
            let batch = run_batch(&**pool, tasks(cost, turn.rate, n, r as u64 * n), sizes.stall)?;
            let Some(settled) = batch.settled else {
                turn.hung = true;
                continue;
            };
            let broke = settled.broken > 0;
            turn.runs.push((batch.elapsed, settled));
            if broke {
                // A broken pool takes no more work: a fresh one for the next run.
                if let Some(pool) = turn.pool.take() {
                    pool.terminate();
                }
                turn.pool = Some(fresh()?);
            }
        }
    }
    let mut cells = Vec::new();
    for turn in turns {
        if let Some(pool) = turn.pool {
            pool.terminate();
        }
        let runs = if turn.hung { Vec::new() } else { turn.runs.iter().map(|(elapsed, _)| *elapsed).collect() };
        let (throughput, elapsed) = throughput(turn.runs, turn.hung, n);
        cells.push(Cell { row: Row::Pool(kind), cost, rate: turn.rate, tasks: n, throughput, elapsed, runs });
    }
    Ok(cells)
}

/// The median run of a cell and its time, or `Hangs`.
fn throughput(mut runs: Vec<(Duration, Settled)>, hung: bool, n: u64) -> (Throughput, Option<Duration>) {
    if hung || runs.is_empty() {
        return (Throughput::Hangs, None);
    }
    runs.sort_by_key(|(elapsed, _)| *elapsed);
    let (elapsed, settled) = runs[runs.len() / 2].clone();
    let per_s = settled.completed as f64 / elapsed.as_secs_f64().max(1e-9);
    let completed = settled.completed as f64 / n as f64;
    let throughput = if settled.broken > 0 {
        Throughput::Breaks { per_s, completed }
    } else {
        Throughput::Rate { per_s, completed }
    };
    (throughput, Some(elapsed))
}

/// A pool this crate cannot start itself: an external target (a Python
/// pool), which the harness runs in its sandbox, one batch per run.
pub trait External {
    /// Its row in the matrix.
    fn name(&self) -> String;
    /// What a reader of the matrix should know about the row, if anything.
    fn note(&self) -> Option<String>;
    /// The costs and the failure rates it is measured at (other cells: "—").
    fn cells(&self) -> (Vec<Cost>, Vec<Rate>);
    /// Tasks per batch at `cost` and `rate` (a few hundred ms of its work
    /// at 0 %).
    fn tasks(&self, cost: Cost, rate: Rate) -> u64;
    /// Runs `tasks` as one batch on a fresh pool that has started and run a
    /// warm-up task. `elapsed` is the pool's call alone, from the first
    /// submission to the last result in hand, as the target timed it. The
    /// batch is hung if, with tasks pending, none starts, finishes or gets
    /// an outcome for `stall`.
    fn run_batch(&self, workers: usize, tasks: Vec<Task>, stall: Duration) -> anyhow::Result<ExternalBatch>;
}

/// What an external target made of a batch.
#[derive(Debug, Clone)]
pub enum ExternalBatch {
    Ran(Batch),
    /// It cannot run here (its package is not installed).
    Skipped {
        reason: String,
    },
}

/// Every cell of an external target, or why it was skipped: a fresh pool
/// (a fresh run) per batch; at 1 % and 5 %, one batch per cell (a run there
/// can take seconds).
pub fn measure_external(
    target: &dyn External,
    workers: usize,
    sizes: &LoadSizes,
    progress: &mut dyn FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Result<Vec<Cell>, String>> {
    let name = target.name();
    let (costs, rates) = target.cells();
    let mut cells = Vec::new();
    for cost in costs {
        progress(&format!("{name}, {} tasks", cost.name()))?;
        for &rate in &rates {
            let n = target.tasks(cost, rate).min(sizes.external_cap);
            let repeat = if rate == Rate::Zero { sizes.repeat } else { 1 };
            let mut runs: Vec<(Duration, Settled)> = Vec::new();
            let mut hung = false;
            for r in 0..repeat.max(1) {
                let batch = match target.run_batch(workers, tasks(cost, rate, n, r as u64 * n), sizes.stall)? {
                    ExternalBatch::Ran(batch) => batch,
                    ExternalBatch::Skipped { reason } => return Ok(Err(reason)),
                };
                let Some(settled) = batch.settled else {
                    hung = true;
                    break;
                };
                runs.push((batch.elapsed, settled));
            }
            let row = Row::External(name.clone());
            let (throughput, elapsed) = throughput(runs, hung, n);
            cells.push(Cell { row, cost, rate, tasks: n, throughput, elapsed, runs: Vec::new() });
        }
    }
    Ok(Ok(cells))
}
