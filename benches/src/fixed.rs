//! A run's fixed cost: what one harness run of a single echo task costs
//! (sandbox, the owner's start, the pool's start, teardown, judgement),
//! beside the floor of the processes it starts, and how many runs per
//! second a campaign gets.
//!
//! The harness does the runs ([`Harness`]: this crate cannot start one); this
//! module times them and measures the floor: one spawn-exec-wait of the
//! owner's binary plus one of the worker binary per worker, one after the
//! other (the fork server and the standby, which supervised forks, cost less
//! than an exec: leaving them out keeps the floor low, so the ratio honest).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::floor;

/// What the harness does for this module.
pub trait Harness {
    /// The owner's binary and the arguments that make it exit at once
    /// (its start alone: exec, dynamic link, argument parsing).
    fn owner_exit_at_once(&self) -> (&Path, Vec<String>);
    /// One sandboxed run of a single echo task on `workers` workers of
    /// supervised, from the sandbox's making to the judged record; an error
    /// if its verdict is not `completed`. Returns its wall time.
    fn one_echo_run(&self, workers: usize) -> anyhow::Result<Duration>;
    /// A campaign of `runs` runs against supervised (seed 7, the command
    /// line's knobs, `jobs` at once, no shrinking). Returns its wall time.
    fn campaign(&self, runs: u64, jobs: usize) -> anyhow::Result<Duration>;
}

/// How much of each to run.
#[derive(Debug, Clone, Copy)]
pub struct FixedSizes {
    /// One-echo runs (the median is kept).
    pub runs: usize,
    /// Spawn-exec-waits of each binary per floor round (best of 3 rounds kept).
    pub spawns: u32,
    /// Runs of the campaign.
    pub campaign_runs: u64,
}

impl FixedSizes {
    pub const QUICK: FixedSizes = FixedSizes { runs: 30, spawns: 50, campaign_runs: 60 };
    pub const SMOKE: FixedSizes = FixedSizes { runs: 2, spawns: 2, campaign_runs: 2 };
}

/// Campaigns run this many at once here, as `poolchaos campaign`'s default.
pub const CAMPAIGN_JOBS: usize = 2;

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct FixedCost {
    /// The median one-echo run, and every run's time.
    pub run: Duration,
    pub runs: Vec<Duration>,
    /// One spawn-exec-wait of the owner's binary.
    pub owner_exec: Duration,
    /// One spawn-exec-wait of the worker binary.
    pub worker_exec: Duration,
    /// The floor: the owner's exec and one worker's per worker.
    pub floor: Duration,
    /// The campaign: runs, and its wall time.
    pub campaign: (u64, Duration),
}

impl FixedCost {
    /// The median run as a multiple of the floor.
    pub fn ratio(&self) -> f64 {
        self.run.as_secs_f64() / self.floor.as_secs_f64().max(1e-12)
    }

    /// The campaign's runs per second.
    pub fn campaign_per_s(&self) -> f64 {
        self.campaign.0 as f64 / self.campaign.1.as_secs_f64().max(1e-9)
    }
}

/// Measures a run's fixed cost and its floor, then the campaign.
pub fn measure(harness: &dyn Harness, worker: &Path, workers: usize, sizes: FixedSizes) -> anyhow::Result<FixedCost> {
    let (owner, args) = harness.owner_exit_at_once();
    let (mut owner_exec, mut worker_exec) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        owner_exec = owner_exec.min(spawn_exec_wait(owner, &args, sizes.spawns)?);
        worker_exec = worker_exec.min(floor::spawn_exec_wait(worker, sizes.spawns)? / sizes.spawns.max(1));
    }
    // A first run pays for cold caches; it is not counted.
    harness.one_echo_run(workers)?;
    let mut runs = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs.max(1) {
        runs.push(harness.one_echo_run(workers)?);
    }
    let mut sorted = runs.clone();
    sorted.sort();
    let started = Instant::now();
    harness.campaign(sizes.campaign_runs, CAMPAIGN_JOBS)?;
    let campaign = (sizes.campaign_runs, started.elapsed());
    Ok(FixedCost {
        run: sorted[sorted.len() / 2],
        runs,
        owner_exec,
        worker_exec,
        floor: owner_exec + worker_exec * workers as u32,
        campaign,
    })
}

/// One spawn-exec-wait of `program args`: the mean of `n` in a row.
fn spawn_exec_wait(program: &Path, args: &[String], n: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..n.max(1) {
        let status = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).status()?;
        ensure!(status.success(), "{} exited with {status}", program.display());
    }
    Ok(started.elapsed() / n.max(1))
}
