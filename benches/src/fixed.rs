//! A run's fixed cost: what one harness run of a single echo task costs
//! (sandbox, the owner's start, the pool's start, teardown, judgement),
//! beside the floor of the processes it starts, and how many runs per
//! second a campaign gets.
//!
//! The harness does the runs ([`Harness`]: this crate cannot start one); this
//! module times them and measures the floor: one spawn-exec-wait of the
//! owner's binary plus one of the worker binary per worker, one after the
//! other, as #23 names it (supervised itself execs the owner and its fork
//! server, and forks its workers and a standby from the latter).
//! Each round is one run and then its floor, so a machine's load weighs on
//! both alike; the medians of the rounds are kept.

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
    /// Rounds of one run and its floor (the medians are kept).
    pub rounds: usize,
    /// Runs of the campaign.
    pub campaign_runs: u64,
}

impl FixedSizes {
    pub const QUICK: FixedSizes = FixedSizes { rounds: 30, campaign_runs: 60 };
    pub const SMOKE: FixedSizes = FixedSizes { rounds: 2, campaign_runs: 2 };
}

/// Campaigns run this many at once here, as `poolchaos campaign`'s default.
pub const CAMPAIGN_JOBS: usize = 2;

/// What was measured: medians over rounds of one run, then the floor's
/// spawns, back to back, so that a load that comes and goes weighs on both.
#[derive(Debug, Clone, Default)]
pub struct FixedCost {
    /// The median one-echo run, and every run's time.
    pub run: Duration,
    pub runs: Vec<Duration>,
    /// One spawn-exec-wait of the owner's binary.
    pub owner_exec: Duration,
    /// One spawn-exec-wait of the worker binary.
    pub worker_exec: Duration,
    /// The floor: the owner's exec and one worker's per worker, in a row.
    pub floor: Duration,
    /// The campaign: runs, and its wall time.
    pub campaign: (u64, Duration),
}

impl FixedCost {
    /// The median run as a multiple of the median floor.
    pub fn ratio(&self) -> f64 {
        self.run.as_secs_f64() / self.floor.as_secs_f64().max(1e-12)
    }

    /// The campaign's runs per second.
    pub fn campaign_per_s(&self) -> f64 {
        self.campaign.0 as f64 / self.campaign.1.as_secs_f64().max(1e-9)
    }
}

/// Measures a run's fixed cost beside its floor, round by round, then the campaign.
pub fn measure(harness: &dyn Harness, worker: &Path, workers: usize, sizes: FixedSizes) -> anyhow::Result<FixedCost> {
    let (owner, args) = harness.owner_exit_at_once();
    // A first round pays for cold caches; it is not counted.
    harness.one_echo_run(workers)?;
    spawn_exec_wait(owner, &args)?;
    let (mut runs, mut owners, mut worker_execs, mut floors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.rounds.max(1) {
        runs.push(harness.one_echo_run(workers)?);
        let owner_exec = spawn_exec_wait(owner, &args)?;
        let mut worker_exec = Duration::ZERO;
        for _ in 0..workers {
            worker_exec += floor::spawn_exec_wait(worker, 1)?;
        }
        owners.push(owner_exec);
        worker_execs.push(worker_exec / workers.max(1) as u32);
        floors.push(owner_exec + worker_exec);
    }
    let started = Instant::now();
    harness.campaign(sizes.campaign_runs, CAMPAIGN_JOBS)?;
    let campaign = (sizes.campaign_runs, started.elapsed());
    Ok(FixedCost {
        run: median(&runs),
        owner_exec: median(&owners),
        worker_exec: median(&worker_execs),
        floor: median(&floors),
        runs,
        campaign,
    })
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// One spawn-exec-wait of `program args`.
fn spawn_exec_wait(program: &Path, args: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).status()?;
    ensure!(status.success(), "{} exited with {status}", program.display());
    Ok(started.elapsed())
}
