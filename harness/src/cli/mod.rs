//! The command line of `poolchaos`: its arguments (clap), and a function
//! per subcommand, by what it works on: [`run`] (scenarios against pools),
//! [`scenarios`] (list, explain, export, owner-plan), [`campaign`]
//! (campaign, merge), [`bench`] (bench, speed). `main` only dispatches.

pub mod bench;
pub mod campaign;
pub mod run;
pub mod scenarios;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use harness::run::runner::RunContext;
use harness::run::session::Session;
use pools::PoolKind;

/// The exit status of a `run` whose only fault is that runs were skipped.
pub const SKIPPED: u8 = 3;
/// The exit status of a `run` with an unstable cell (more than one verdict across its repeats) and no wrong one.
pub const UNSTABLE: u8 = 4;

/// Fault-injection test harness and benchmark suite for process pools.
#[derive(Parser)]
#[command(name = "poolchaos", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `run` prints on stdout.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Junit,
}

/// The subcommands; `main` hands each to its function.
#[derive(Subcommand)]
pub enum Command {
    /// Run scenarios against the pools they name; print the outcome table.
    Run(RunArgs),
    /// A randomized campaign: many seeded plans against one pool, each judged
    /// by its oracle; failures shrunk to a scenario file under reports/failures/.
    Campaign(CampaignArgs),
    /// Join the report.json files of a campaign's shares into one.
    Merge {
        /// report.json files, or directories holding one.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write the merged report.json here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the scenarios.
    List {
        /// Scenario files or directories.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Say what a scenario does, in words; or draw a run's timeline (`--timeline`).
    Explain {
        /// The scenario file (with `--timeline`: the run's scenario, for its faults and deadline).
        #[arg(required_unless_present = "timeline")]
        scenario: Option<PathBuf>,
        /// The seed its plan is made with.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A run's event log (`runs/NAME.events.jsonl`): write its timeline beside it, `NAME.timeline.svg`.
        #[arg(long, value_name = "EVENTS")]
        timeline: Option<PathBuf>,
    },
    /// Time one no-fault `map` of N echo tasks on each pool.
    Speed {
        /// Only these of our pools, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<PoolKind>,
        /// Echo tasks per map.
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// Workers per pool.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Maps per pool; the best is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Throughput under failures, with the floor measured beside it: writes
    /// summary.md and throughput.svg (under 3 minutes).
    Bench {
        /// A handful of tasks per measurement: checks that each one runs, times nothing (CI).
        #[arg(long)]
        smoke: bool,
        /// Where to write summary.md and throughput.svg (default: reports/bench; none with --smoke).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only these rows: pools, targets or `*` patterns, comma-separated (`supervised,py-*`; default: all).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<String>,
    },
    /// A scenario against its Python target as a standalone Python script (no
    /// poolchaos needed): what to attach to the pool's bug tracker.
    Export {
        /// The scenario file (a campaign's reproducer, typically); its first Python target is used.
        scenario: PathBuf,
        /// Write a Python script (the one language there is): the pool's public API and the faults, nothing else.
        #[arg(long, required = true)]
        python: bool,
        /// The bundled form instead: the whole Python adapter embedded, every self-placed fault placeable.
        #[arg(long)]
        bundled: bool,
        /// Write it here instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Print the plan a pool's owner (or an external target) gets on its stdin.
    OwnerPlan {
        /// The scenario file.
        scenario: PathBuf,
        /// The pool or target the plan is for.
        #[arg(long)]
        pool: harness::target::Target,
        /// The seed the plan is made with.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the pools under test and the external targets.
    Pools,
    /// Every field of a scenario file, with what it takes and its range
    /// (`poolchaos help scenario` says the same).
    Scenario,
    /// The pool's owner inside a sandboxed run (internal).
    #[command(hide = true)]
    Owner,
}

// `run`'s arguments (its help is the `Run` command's doc).
#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    /// Only these pools or targets: names or patterns, comma-separated (`naive,py-*`).
    #[arg(long, value_delimiter = ',')]
    pub pools: Vec<String>,
    /// Drive this command instead (a program speaking the owner protocol, docs/targets.md).
    #[arg(long, conflicts_with = "pools")]
    pub target: Option<String>,
    /// Seed for the random parts of plans (a scenario's own seed wins).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write report.md, report.json, junit.xml and runs/ here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Runs at once, each in its own sandbox (they mostly wait).
    #[arg(short = 'j', long, default_value_t = 6)]
    pub jobs: usize,
    /// Run each Python target by each of these Python versions, from `.venvs/3.N`
    /// (made by `targets/python/setup.sh 3.N`): `3.11,3.12,3.13`. Default: `.venv`'s.
    #[arg(long, value_delimiter = ',')]
    pub python: Vec<harness::target::PyVersion>,
    /// And with each of these start methods (default: the target's own, fork for most).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub start_method: Vec<harness::target::StartMethod>,
    /// Exit 0 even when runs were skipped (a target's package missing); otherwise that is exit 3.
    #[arg(long)]
    pub allow_skipped: bool,
    /// Run each cell (scenario × target) N times and report each cell's distribution of
    /// verdicts; a cell with more than one verdict is unstable (exit 4).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
}

// `campaign`'s arguments (its help is the `Campaign` command's doc).
#[derive(clap::Args)]
pub struct CampaignArgs {
    /// One of our pools (planted bugs included) or a Python target (`py-pebble`, ...).
    #[arg(long)]
    pub pool: harness::target::Target,
    /// How many runs (of this share).
    #[arg(long, conflicts_with = "for_")]
    pub runs: Option<u64>,
    /// Or for how long: `90s`, `10m`, `1h`.
    #[arg(long = "for", value_parser = parse_duration)]
    pub for_: Option<Duration>,
    /// The campaign's seed: the same seed gives the same plans.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run share K of N of the same seeded plan list (`1/2`, `2/2`).
    #[arg(long, value_parser = parse_partition)]
    pub partition: Option<(u64, u64)>,
    /// Runs at once, each in its own sandbox.
    #[arg(short = 'j', long, default_value_t = default_jobs())]
    pub jobs: usize,
    /// Write report.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where shrunk reproducers go.
    #[arg(long, default_value = "reports/failures")]
    pub failures: PathBuf,
    /// Do not shrink findings.
    #[arg(long)]
    pub no_shrink: bool,
    /// How long one shrink may take: `90s`, `5m`.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    pub shrink_budget: Duration,
    /// Start no new run once this many distinct findings are in.
    #[arg(long)]
    pub max_findings: Option<usize>,
    /// Stop at the first finding (`--max-findings 1`).
    #[arg(long, conflicts_with = "max_findings")]
    pub fail_fast: bool,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

/// The fault mix of a campaign (rates are per task).
#[derive(clap::Args)]
pub struct KnobArgs {
    /// Tasks per run.
    #[arg(long, default_value_t = 40)]
    tasks: usize,
    /// The pool's workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Self-placed SIGKILL at a random point.
    #[arg(long, default_value_t = 0.03)]
    kill_rate: f64,
    /// SIGSEGV, abort, exit(0) or exit(1) mid-task.
    #[arg(long, default_value_t = 0.01)]
    crash_rate: f64,
    /// Allocation past the run's memory limit: a real OOM kill.
    #[arg(long, default_value_t = 0.005)]
    oom_rate: f64,
    /// Hang or SIGSTOP.
    #[arg(long, default_value_t = 0.005)]
    stall_rate: f64,
    /// SIGKILL from outside, mid-task.
    #[arg(long, default_value_t = 0.01)]
    outside_rate: f64,
    /// The task raises.
    #[arg(long, default_value_t = 0.01)]
    error_rate: f64,
    /// A kill storm every N ms (0: none).
    #[arg(long, default_value_t = 0)]
    storm_ms: u64,
    /// Per run: workers die as they start (`init`) or replace one (`recycle`), on 1 to 3 starts.
    #[arg(long, default_value_t = 0.1)]
    start_rate: f64,
    /// Attempts per task, for pools that retry (supervised).
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// A task's own deadline, for pools that have one (ms).
    #[arg(long, default_value_t = 1000)]
    task_timeout_ms: u64,
    /// Past this a run is hung and torn down (ms).
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u64,
}

impl KnobArgs {
    /// What is out of bounds, as a scenario file's same fields would be.
    pub fn refused(&self) -> Option<String> {
        use harness::scenario::{MAX_MS, MAX_TASKS, MAX_WORKERS};
        if !(1..=MAX_TASKS).contains(&self.tasks) {
            Some(format!("--tasks: must be 1 to {MAX_TASKS}"))
        } else if !(1..=MAX_WORKERS).contains(&self.workers) {
            Some(format!("--workers: must be 1 to {MAX_WORKERS}"))
        } else if !(1..=MAX_MS).contains(&self.deadline_ms) || !(1..=MAX_MS).contains(&self.task_timeout_ms) {
            Some(format!("--deadline-ms, --task-timeout-ms: must be 1 to {MAX_MS}"))
        } else if self.max_attempts == 0 {
            Some("--max-attempts: must be at least 1".into())
        } else {
            None
        }
    }
}

impl From<KnobArgs> for harness::campaign::Knobs {
    fn from(k: KnobArgs) -> Self {
        harness::campaign::Knobs {
            tasks: k.tasks,
            workers: k.workers,
            kill_rate: k.kill_rate,
            crash_rate: k.crash_rate,
            oom_rate: k.oom_rate,
            stall_rate: k.stall_rate,
            outside_rate: k.outside_rate,
            error_rate: k.error_rate,
            storm_ms: k.storm_ms,
            start_rate: k.start_rate,
            max_attempts: k.max_attempts,
            task_timeout_ms: k.task_timeout_ms,
            deadline_ms: k.deadline_ms,
        }
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 1h"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: the unit is s, m or h")),
    }
}

fn parse_partition(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("{s:?} is not a share like 1/2 (K/N with 1 <= K <= N)");
    let (k, n) = s.split_once('/').ok_or_else(err)?;
    let (k, n): (u64, u64) = (k.parse().map_err(|_| err())?, n.parse().map_err(|_| err())?);
    if n == 0 || k == 0 || k > n {
        return Err(err());
    }
    Ok((k, n))
}

/// The session of this invocation: subreaper, the host's sandbox, stale
/// cleanup (said on stderr), and a word on stderr when OOM is simulated.
fn start_session() -> anyhow::Result<Arc<Session>> {
    // Outside a checkout, the Python adapter comes from the binary itself.
    harness::install::unpack_adapter(&harness::target::project_root()).context("unpacking the Python adapter")?;
    let session = Session::start().context("starting the harness's session")?;
    session.stop().install().context("installing the SIGINT and SIGTERM handlers")?;
    for line in session.leftovers().lines() {
        eprintln!("poolchaos: {line}");
    }
    let mechanism = session.mechanism();
    if mechanism.simulated_oom() {
        eprintln!("poolchaos: no cgroup: OOM kills will be simulated by the RSS watchdog ({mechanism})");
    }
    Ok(Arc::new(session))
}

/// What the runs of one invocation share; the event logs go to `events_dir`.
fn run_context(events_dir: Option<PathBuf>) -> anyhow::Result<RunContext> {
    Ok(RunContext {
        exe: std::env::current_exe()?,
        root: harness::target::project_root(),
        events_dir,
        session: start_session()?,
    })
}

/// Bad input: said on stderr, exit 2.
fn bad_input(what: impl Display) -> ExitCode {
    eprintln!("poolchaos: {what}");
    ExitCode::from(2)
}

/// The command line, parsed; `help scenario` gets the scenario reference as
/// its long help (built from the checks' own limits, so not a doc comment).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_subcommand("scenario", |c| c.long_about(harness::scenario::help::reference()));
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument and subcommand under `command`, by path, that has no help line.
    fn without_help(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                out.push(path.clone());
            }
            without_help(sub, &path, out);
        }
    }

    #[test]
    fn every_option_of_every_subcommand_has_a_help_line() {
        let mut command = super::Cli::command();
        command.build();
        let mut missing = Vec::new();
        without_help(&command, "poolchaos", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }
}
