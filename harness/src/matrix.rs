//! The fault matrix: every pool, under every self-placed fault, in every
//! call style, with a bounded wait, reduced to one verdict per cell.
//!
//! This is the first, in-process form of the harness's main job: the pools
//! run inside this process (their workers are real processes), each run
//! gets a deadline, and a pool that misses it is torn down and called hung.
//! Scenario files, the sandbox and the nemesis come with the harness proper.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pools::{
    CallStyle, Fault, FaultKind, FaultPoint, Outcome, PoolConfig, PoolKind, Task, TaskError, WorkerProgram, Workload,
};

use crate::session::Session;

/// One fault of the matrix: a name and the task that carries it.
pub struct FaultCase {
    pub name: &'static str,
    fault: Option<(Workload, FaultKind, FaultPoint)>,
}

pub fn faults() -> Vec<FaultCase> {
    let mid = |kind| Some((Workload::Sleep { ms: 50 }, kind, FaultPoint::MidTask));
    vec![
        FaultCase { name: "none", fault: None },
        FaultCase { name: "sigkill", fault: mid(FaultKind::SigKill) },
        FaultCase { name: "sigsegv", fault: mid(FaultKind::SigSegv) },
        FaultCase { name: "abort", fault: mid(FaultKind::Abort) },
        FaultCase { name: "exit0", fault: mid(FaultKind::Exit(0)) },
        FaultCase { name: "exit1", fault: mid(FaultKind::Exit(1)) },
        FaultCase {
            name: "kill-writing",
            fault: Some((Workload::Large { bytes: 1 << 20 }, FaultKind::SigKill, FaultPoint::WriteResult)),
        },
        FaultCase { name: "hang", fault: mid(FaultKind::Hang) },
        FaultCase { name: "sigstop", fault: mid(FaultKind::SigStop) },
        FaultCase { name: "error", fault: mid(FaultKind::Error) },
        FaultCase { name: "panic", fault: mid(FaultKind::Panic) },
    ]
}

/// What one run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every task has its correct result.
    Completed,
    /// Every task has exactly one outcome; the errors are named.
    FailedLoudly(Vec<String>),
    /// The deadline passed with tasks pending.
    Hung,
    /// A result was wrong.
    Lost,
    /// The pool could not even start.
    Broken(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Completed => f.write_str("completed"),
            Verdict::FailedLoudly(errors) => write!(f, "failed({})", errors.join("+")),
            Verdict::Hung => f.write_str("HUNG"),
            Verdict::Lost => f.write_str("LOST"),
            Verdict::Broken(e) => write!(f, "broken: {e}"),
        }
    }
}

pub struct Cell {
    pub pool: PoolKind,
    pub style: CallStyle,
    pub fault: &'static str,
    pub verdict: Verdict,
}

/// Short name of an error, with the signal or exit code it names.
fn error_name(e: &TaskError) -> String {
    match e {
        TaskError::Task { .. } => "task-error".into(),
        TaskError::WorkerLost { exit, .. } => format!("lost:{}", exit_name(*exit)),
        TaskError::TimedOut { .. } => "timeout".into(),
        TaskError::PoolBroken { exit, .. } => format!("broken:{}", exit_name(*exit)),
        TaskError::Terminated => "terminated".into(),
    }
}

fn exit_name(exit: pools::Exit) -> String {
    match exit {
        pools::Exit::Signal(sig) => pools::outcome::signal_name(sig).to_string(),
        pools::Exit::Code(code) => format!("exit{code}"),
    }
}

fn judge(tasks: &[Task], outcomes: Option<Vec<Outcome>>) -> Verdict {
    let Some(outcomes) = outcomes else { return Verdict::Hung };
    let mut errors: Vec<String> = Vec::new();
    for (task, outcome) in tasks.iter().zip(&outcomes) {
        match outcome {
            Ok(bytes) if task.check(bytes) => {}
            Ok(_) => return Verdict::Lost,
            Err(e) => {
                let name = error_name(e);
                if !errors.contains(&name) {
                    errors.push(name);
                }
            }
        }
    }
    if outcomes.len() != tasks.len() {
        Verdict::Lost
    } else if errors.is_empty() {
        Verdict::Completed
    } else {
        Verdict::FailedLoudly(errors)
    }
}

/// Runs one cell: 4 tasks on 2 workers, task 0 carrying the fault.
pub fn run_cell(
    program: &WorkerProgram,
    pool: PoolKind,
    style: CallStyle,
    fault: &FaultCase,
    deadline: Duration,
) -> Cell {
    let mut tasks: Vec<Task> = (0..4u64).map(|i| Task::echo(i, format!("task {i}"))).collect();
    if let Some((work, kind, point)) = &fault.fault {
        tasks[0] = Task { tag: 0, work: work.clone(), fault: Some(Fault::once(*kind, *point)) };
    }
    let mut config = PoolConfig::new(2, program.clone());
    config.task_timeout = Some(Duration::from_secs(1));
    let verdict = match pools::build(pool, &config) {
        Err(e) => Verdict::Broken(e.to_string()),
        Ok(p) => {
            let verdict = match pools::drive(&*p, style, tasks.clone(), deadline) {
                Ok(driven) => judge(&tasks, driven.outcomes),
                Err(e) => Verdict::Broken(e.to_string()),
            };
            p.terminate();
            verdict
        }
    };
    Cell { pool, style, fault: fault.name, verdict }
}

/// Runs every cell, `jobs` at a time (runs mostly wait, so more than the cores).
pub fn run(
    session: &Session,
    program: &WorkerProgram,
    pools: &[PoolKind],
    deadline: Duration,
    jobs: usize,
) -> anyhow::Result<Vec<Cell>> {
    let faults = faults();
    let mut work = Vec::new();
    for &pool in pools {
        for style in CallStyle::ALL {
            for fault in &faults {
                work.push((pool, style, fault));
            }
        }
    }
    let mut work = work.into_iter().enumerate();
    let cells = Mutex::new(Vec::new());
    session.execute(
        jobs,
        || work.next(),
        |(i, (pool, style, fault))| {
            let cell = run_cell(program, pool, style, fault, deadline);
            cells.lock().unwrap_or_else(|e| e.into_inner()).push((i, cell));
            Ok(())
        },
    )?;
    let mut cells = cells.into_inner().unwrap_or_else(|e| e.into_inner());
    cells.sort_by_key(|(i, _)| *i);
    Ok(cells.into_iter().map(|(_, c)| c).collect())
}

/// The matrix as a text table: a row per fault, a column per pool. A cell
/// shows the verdict of every call style, or each style's where they differ.
pub fn table(cells: &[Cell]) -> String {
    let mut pools: Vec<PoolKind> = cells.iter().map(|c| c.pool).collect();
    pools.dedup();
    let mut rows =
        vec![std::iter::once("fault".to_string()).chain(pools.iter().map(|p| p.to_string())).collect::<Vec<_>>()];
    for fault in faults() {
        let mut row = vec![fault.name.to_string()];
        for &pool in &pools {
            let mine: Vec<&Cell> = cells.iter().filter(|c| c.pool == pool && c.fault == fault.name).collect();
            let first = mine.first().map(|c| c.verdict.to_string()).unwrap_or_default();
            row.push(if mine.iter().all(|c| c.verdict.to_string() == first) {
                first
            } else {
                mine.iter().map(|c| format!("{}:{}", c.style.name(), c.verdict)).collect::<Vec<_>>().join(" ")
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The best time of `repeat` no-fault maps of `tasks` echo tasks on a fresh pool.
pub fn time_map(
    program: &WorkerProgram,
    kind: PoolKind,
    tasks: u64,
    workers: usize,
    repeat: usize,
) -> anyhow::Result<Duration> {
    let pool = pools::build(kind, &PoolConfig::new(workers, program.clone()))?;
    let batch: Vec<Task> = (0..tasks).map(|i| Task::echo(i, i.to_le_bytes())).collect();
    let mut best = Duration::MAX;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let outcomes = pool.map_timeout(batch.clone(), Some(Duration::from_secs(300)))?;
        best = best.min(started.elapsed());
        let bad = batch.iter().zip(&outcomes).filter(|(t, o)| !o.as_ref().is_ok_and(|b| t.check(b))).count();
        anyhow::ensure!(bad == 0, "{kind}: {bad} of {tasks} results wrong or missing");
    }
    pool.close();
    pool.join_timeout(Some(Duration::from_secs(30)))?;
    Ok(best)
}
