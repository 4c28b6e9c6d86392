//! Throughput under failures: the pools' benchmarks, with the floor measured
//! beside them.
//!
//! Two front ends share this library:
//! - `poolchaos bench` ([`run`]): a quick run (under 3 minutes) of every
//!   measurement that writes `reports/bench/summary.md` and
//!   `reports/bench/throughput.svg`; `--smoke` runs each one on a handful of
//!   tasks and times nothing worth reading (CI);
//! - the criterion benches in `benches/` (`just bench-full`, which builds the
//!   worker binary and runs `cargo bench -p poolchaos-benches`): the same
//!   measurements, sampled by criterion (`-- --test` runs each once).
//!
//! The modules:
//! - [`floor`] measures what the machine charges: pipe round trips, the
//!   pipelined limit, fork-and-wait, spawn-exec-wait, kill to EOF;
//! - [`load`] runs batches of tasks of a cost with SIGKILLs placed at an
//!   exact rate, one cell of the matrix per pool x cost x rate; on our pools
//!   in this process, and on external targets (the Python pools) through an
//!   [`External`](load::External) that the harness provides;
//! - [`latency`] measures fault-detection latency and per-task's cost per task;
//! - [`fixed`] times a harness run of one echo task beside the floor of the
//!   processes it starts, and a campaign's runs per second (the harness
//!   does the runs, through a [`Harness`](fixed::Harness) it provides);
//! - [`summary`] holds the run's figures and writes `summary.md` and the targets;
//! - [`plot`] draws `throughput.svg`.
//!
//! Nothing here asserts on speed: a run fails only if a pool gets a result
//! wrong, delivers one twice, or fails a task its fault cannot explain.

pub mod fixed;
pub mod floor;
pub mod latency;
pub mod load;
pub mod plot;
pub mod summary;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use pools::{PoolKind, WorkerProgram};

pub use summary::{Mode, Summary, Target};

/// Workers per pool in every measurement.
pub const WORKERS: usize = 2;

/// Runs every measurement of `mode` on `pools` (all if empty), telling
/// `progress` what it is at (an error from it ends the run: a stop asked for).
pub fn run(
    program: &WorkerProgram,
    mode: Mode,
    pools: &[PoolKind],
    externals: &[&dyn load::External],
    harness: Option<&dyn fixed::Harness>,
    progress: &mut dyn FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let load_start = summary::load_average();
    let (floor_sizes, load_sizes, fixed_sizes, samples, per_task_n) = match mode {
        Mode::Quick => (floor::FloorSizes::QUICK, load::LoadSizes::QUICK, fixed::FixedSizes::QUICK, 30, 500),
        Mode::Smoke => (floor::FloorSizes::SMOKE, load::LoadSizes::SMOKE, fixed::FixedSizes::SMOKE, 3, 20),
    };
    progress("the floor")?;
    let floor = floor::measure(&program.path, floor_sizes).context("measuring the floor")?;
    let mut cells = Vec::new();
    for &kind in pools {
        for cost in load::Cost::ALL {
            progress(&format!("{kind}, {} tasks", cost.name()))?;
            cells.extend(
                load::measure_cost(program, kind, cost, WORKERS, &load_sizes)
                    .with_context(|| format!("{kind}, {} tasks", cost.name()))?,
            );
        }
    }
    let mut external_notes = Vec::new();
    for &target in externals {
        match load::measure_external(target, WORKERS, &load_sizes, progress).with_context(|| target.name())? {
            Ok(measured) => {
                cells.extend(measured);
                external_notes.extend(target.note().map(|note| (target.name(), note)));
            }
            Err(reason) => external_notes.push((target.name(), format!("not run: {reason}"))),
        }
    }
    let mut detection = Vec::new();
    for kind in latency::DETECTING.into_iter().filter(|k| pools.contains(k)) {
        progress(&format!("{kind}: fault detection"))?;
        detection
            .push((kind, latency::detection(program, kind, samples).with_context(|| format!("{kind}: detection"))?));
    }
    let rounds = if mode == Mode::Quick { 5 } else { 1 };
    let per_task = if pools.contains(&PoolKind::PerTask) {
        progress("per-task: cost per task, beside fork-and-wait")?;
        latency::per_task_costs(program, per_task_n, rounds)?
    } else {
        latency::PerTaskCost::default()
    };
    let fixed = match harness {
        Some(harness) => {
            progress("a run's fixed cost, beside its floor; a campaign's runs per second")?;
            Some(fixed::measure(harness, &program.path, WORKERS, fixed_sizes).context("a run's fixed cost")?)
        }
        None => None,
    };
    Ok(Summary {
        mode,
        workers: WORKERS,
        floor,
        cells,
        external_notes,
        detection,
        poll_interval: load::config(program, WORKERS).poll_interval,
        per_task,
        fixed,
        elapsed: started.elapsed(),
        load: (load_start, summary::load_average()),
    })
}

/// Writes `summary.md` and `throughput.svg` into `dir`.
pub fn write(summary: &Summary, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("summary.md"), summary.markdown())?;
    std::fs::write(dir.join("throughput.svg"), plot::svg(summary)?)?;
    Ok(())
}

/// The worker binary for benches and the harness: `POOLCHAOS_WORKER`, or
/// the one built beside the running executable.
pub fn worker() -> anyhow::Result<WorkerProgram> {
    WorkerProgram::beside_current_exe().context(
        "finding poolchaos-worker beside this executable (build it first: `cargo build --release --workspace`; \
         `just bench-full` does)",
    )
}
