//! `poolchaos`: the harness's command line.
//!
//! - `run [FILES|DIRS]`: every scenario against its pools, each run in a
//!   sandbox (each cell `--repeat N` times); a table, and with `--out` the
//!   report files. Exit 0 when every verdict met its expectation, 1 when one
//!   did not (under `--repeat`: a cell came to one wrong verdict), 2 on bad
//!   input (no scenario found included), 4 when a cell came to more than one
//!   verdict across its repeats and none was wrong, 3 when runs were skipped
//!   and nothing else failed (unless `--allow-skipped`).
//! - `run`, `campaign`, `bench` stopped by SIGINT or SIGTERM: what finished
//!   is reported (marked interrupted), everything live torn down; exit 130
//!   or 143. A second signal exits at once.
//! - `list`, `explain SCENARIO`: what the scenarios are.
//! - `speed`: one no-fault map of N echo tasks per pool, timed.
//! - `bench`: throughput under failures, the floor beside it, detection
//!   latency; writes `summary.md` and `throughput.svg` (the `benches` crate).
//! - `owner`: the pool's owner inside a run (started by `run`, not by people).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use harness::run::runner::RunContext;
use harness::run::session::Session;
use harness::{scenario, scenario::plan, speed, suite};
use pools::{PoolKind, WorkerProgram};

/// The exit status of a `run` whose only fault is that runs were skipped.
const SKIPPED: u8 = 3;
/// The exit status of a `run` with an unstable cell (more than one verdict across its repeats) and no wrong one.
const UNSTABLE: u8 = 4;

/// Fault-injection test harness and benchmark suite for process pools.
#[derive(Parser)]
#[command(name = "poolchaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Markdown,
    Json,
    Junit,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against the pools they name; print the outcome table.
    Run {
        /// Scenario files or directories.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Only these pools or targets: names or patterns, comma-separated (`naive,py-*`).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<String>,
        /// Drive this command instead (a program speaking the owner protocol, docs/targets.md).
        #[arg(long, conflicts_with = "pools")]
        target: Option<String>,
        /// Seed for the random parts of plans (a scenario's own seed wins).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write report.md, report.json, junit.xml and runs/ here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// What to print on stdout.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Runs at once, each in its own sandbox (they mostly wait).
        #[arg(short = 'j', long, default_value_t = 6)]
        jobs: usize,
        /// Run each Python target by each of these Python versions, from `.venvs/3.N`
        /// (made by `targets/python/setup.sh 3.N`): `3.11,3.12,3.13`. Default: `.venv`'s.
        #[arg(long, value_delimiter = ',')]
        python: Vec<harness::target::PyVersion>,
        /// And with each of these start methods (default: the target's own, fork for most).
        #[arg(long, value_delimiter = ',', value_enum)]
        start_method: Vec<harness::target::StartMethod>,
        /// Exit 0 even when runs were skipped (a target's package missing); otherwise that is exit 3.
        #[arg(long)]
        allow_skipped: bool,
        /// Run each cell (scenario × target) N times and report each cell's distribution of
        /// verdicts; a cell with more than one verdict is unstable (exit 4).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: u32,
    },
    /// A randomized campaign: many seeded plans against one pool, each judged
    /// by its oracle; failures shrunk to a scenario file under reports/failures/.
    Campaign {
        /// One of our pools (planted bugs included) or a Python target (`py-pebble`, ...).
        #[arg(long)]
        pool: harness::target::Target,
        /// How many runs (of this share).
        #[arg(long, conflicts_with = "for_")]
        runs: Option<u64>,
        /// Or for how long: `90s`, `10m`, `1h`.
        #[arg(long = "for", value_parser = parse_duration)]
        for_: Option<Duration>,
        /// The campaign's seed: the same seed gives the same plans.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run share K of N of the same seeded plan list (`1/2`, `2/2`).
        #[arg(long, value_parser = parse_partition)]
        partition: Option<(u64, u64)>,
        /// Runs at once, each in its own sandbox.
        #[arg(short = 'j', long, default_value_t = default_jobs())]
        jobs: usize,
        /// Write report.json here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where shrunk reproducers go.
        #[arg(long, default_value = "reports/failures")]
        failures: PathBuf,
        /// Do not shrink findings.
        #[arg(long)]
        no_shrink: bool,
        /// How long one shrink may take: `90s`, `5m`.
        #[arg(long, value_parser = parse_duration, default_value = "90s")]
        shrink_budget: Duration,
        /// Start no new run once this many distinct findings are in.
        #[arg(long)]
        max_findings: Option<usize>,
        /// Stop at the first finding (`--max-findings 1`).
        #[arg(long, conflicts_with = "max_findings")]
        fail_fast: bool,
        #[command(flatten)]
        knobs: KnobArgs,
    },
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

/// The fault mix of a campaign (rates are per task).
#[derive(clap::Args)]
struct KnobArgs {
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
    fn refused(&self) -> Option<String> {
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

fn load_campaign(path: &std::path::Path) -> anyhow::Result<harness::campaign::CampaignReport> {
    let file = if path.is_dir() { path.join("report.json") } else { path.to_owned() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
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

/// The command line, parsed; `help scenario` gets the scenario reference as
/// its long help (built from the checks' own limits, so not a doc comment).
fn cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_subcommand("scenario", |c| c.long_about(harness::scenario::help::reference()));
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    // Started as `poolchaos-worker` (installed alone, see `harness::install`): the worker.
    if let Some(code) = harness::install::as_worker() {
        std::process::exit(code);
    }
    // SAFETY: no thread has been started yet.
    if let Err(e) = unsafe { harness::install::prepare_worker() } {
        eprintln!("poolchaos: {e:#}");
        return ExitCode::from(2);
    }
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("poolchaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match cli().command {
        Command::Run { paths, pools, target, seed, out, format, jobs, python, start_method, allow_skipped, repeat } => {
            let scenarios = match scenario::load_all(&paths) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("poolchaos: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let ctx = RunContext {
                exe: std::env::current_exe()?,
                root: harness::target::project_root(),
                events_dir: out.as_ref().map(|o| o.join("runs")),
                session: start_session()?,
            };
            if let Some(missing) = python.iter().find(|v| !v.venv(&ctx.root).join("bin/python").exists()) {
                eprintln!(
                    "poolchaos: --python {missing}: no venv at {} (make it with `targets/python/setup.sh {missing}`)",
                    missing.venv(&ctx.root).display()
                );
                return Ok(ExitCode::from(2));
            }
            // The owner runs in a temp dir: relative paths in the command are the caller's (the
            // program only when it has a `/`, as a shell looks a bare name up in PATH).
            let cwd = std::env::current_dir()?;
            let absolute = |(i, word): (usize, String)| {
                let path = cwd.join(&word);
                if !word.starts_with('/') && (i > 0 || word.contains('/')) && path.exists() {
                    path.display().to_string()
                } else {
                    word
                }
            };
            let target = match target.map(|t| shlex::split(&t).ok_or(t)).transpose() {
                Ok(words) => words.map(|w| w.into_iter().enumerate().map(absolute).collect::<Vec<_>>()),
                Err(t) => {
                    eprintln!("poolchaos: --target {t:?}: unbalanced quotes");
                    return Ok(ExitCode::from(2));
                }
            };
            let selection = suite::Selection {
                patterns: pools,
                command: target.map(harness::target::Target::Command),
                pythons: python,
                methods: start_method,
            };
            if let Some(bad) =
                selection.patterns.iter().find(|p| !harness::target::Target::all().iter().any(|t| t.matches(p)))
            {
                eprintln!("poolchaos: --pools: {bad:?} names no pool or target (see `poolchaos pools`)");
                return Ok(ExitCode::from(2));
            }
            let total = suite::pairs(&scenarios, &selection).len() as u64 * u64::from(repeat);
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let tick = |r: &harness::judge::verdict::RunRecord| {
                bar.set_message(format!("{} / {}: {}", r.scenario, r.pool, r.verdict));
                bar.inc(1);
            };
            let report = suite::run(&scenarios, &selection, seed, &ctx, jobs, repeat, &tick)?;
            bar.finish_and_clear();
            if let Some(dir) = &out {
                report.write_all(dir).with_context(|| format!("writing the report to {}", dir.display()))?;
            }
            match format {
                Format::Table => report.write_table(&mut anstream::stdout())?,
                Format::Markdown => print!("{}", report.markdown()),
                Format::Json => println!("{}", report.json()),
                Format::Junit => print!("{}", report.junit()),
            }
            let skipped = report.skipped();
            if let Some(interrupted) = &report.interrupted {
                eprintln!("poolchaos: {interrupted}");
                Ok(ExitCode::from(interrupted.signal.exit_status()))
            } else if report.wrong() > 0 {
                Ok(ExitCode::from(1))
            } else if report.unstable() > 0 {
                eprintln!("poolchaos: {} cell(s) unstable across {repeat} repeats", report.unstable());
                Ok(ExitCode::from(UNSTABLE))
            } else if skipped > 0 && !allow_skipped {
                eprintln!("poolchaos: {skipped} run(s) skipped, which is not a pass (--allow-skipped to accept)");
                Ok(ExitCode::from(SKIPPED))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Campaign {
            pool,
            runs,
            for_,
            seed,
            partition,
            jobs,
            out,
            failures,
            no_shrink,
            shrink_budget,
            max_findings,
            fail_fast,
            knobs,
        } => {
            if matches!(pool, harness::target::Target::Command(_)) {
                eprintln!("poolchaos: --pool: campaigns need an oracle: one of `poolchaos pools`");
                return Ok(ExitCode::from(2));
            }
            if let Some(bad) = knobs.refused() {
                eprintln!("poolchaos: {bad}");
                return Ok(ExitCode::from(2));
            }
            let ctx = RunContext {
                exe: std::env::current_exe()?,
                root: harness::target::project_root(),
                events_dir: None,
                session: start_session()?,
            };
            let mut settings = harness::campaign::Settings::new(pool, seed, knobs.into(), failures);
            settings.runs = runs.or(if for_.is_none() { Some(100) } else { None });
            settings.duration = for_;
            settings.partition = partition;
            settings.jobs = jobs;
            settings.shrink = !no_shrink;
            settings.shrink_budget = shrink_budget;
            settings.max_findings = max_findings.or(fail_fast.then_some(1));
            settings.out = out;
            // A bar on a terminal; progress lines on stderr otherwise (CI logs, a file).
            let terminal = std::io::stderr().is_terminal();
            let bar = match (terminal, settings.runs) {
                (false, _) => indicatif::ProgressBar::hidden(),
                (true, Some(n)) => indicatif::ProgressBar::new(n),
                (true, None) => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos} runs {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let started = Instant::now();
            let done = std::sync::atomic::AtomicU64::new(0);
            let tick = |r: &harness::campaign::CampaignRun| {
                bar.set_message(format!("run {}: {}", r.index, r.verdict));
                bar.inc(1);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if !terminal && (n.is_multiple_of(25) || r.record.expected.is_some_and(|e| e != r.verdict)) {
                    eprintln!(
                        "[{:>6.1} s] {n} runs; run {}: {} (oracle: {})",
                        started.elapsed().as_secs_f64(),
                        r.index,
                        r.verdict,
                        r.expected
                    );
                }
            };
            let report = harness::campaign::run(&settings, &ctx, &tick)?;
            bar.finish_and_clear();
            print!("{}", report.summary());
            Ok(match &report.interrupted {
                Some(interrupted) => ExitCode::from(interrupted.signal.exit_status()),
                None if report.findings.is_empty() => ExitCode::SUCCESS,
                None => ExitCode::from(1),
            })
        }
        Command::Merge { paths, out } => {
            let shares = paths.iter().map(|p| load_campaign(p)).collect::<anyhow::Result<Vec<_>>>()?;
            let merged = harness::campaign::CampaignReport::merge(shares)?;
            if let Some(dir) = &out {
                harness::campaign::write_report(dir, &merged)?;
            }
            print!("{}", merged.summary());
            Ok(if merged.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::List { paths } => {
            let scenarios = match scenario::load_all(&paths) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("poolchaos: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in &scenarios {
                let pools: Vec<String> = s.expect.iter().map(|(p, v)| format!("{p}={v}")).collect();
                println!("{:<width$}  {}\n{:<width$}  [{}]", s.name, s.description, "", pools.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { scenario: path, seed, timeline } => {
            let s = match path.as_deref().map(scenario::load).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("poolchaos: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            match (timeline, s) {
                (Some(events), s) => {
                    let svg = harness::report::timeline::write_beside(&events, s.as_ref(), seed)?;
                    println!("wrote {svg}");
                }
                (None, Some(s)) => print!("{}", plan::explain(&s, seed)),
                (None, None) => {
                    eprintln!("poolchaos: explain: name a scenario, or a run's event log with --timeline");
                    return Ok(ExitCode::from(2));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Speed { pools, tasks, workers, repeat } => {
            let pools = if pools.is_empty() { PoolKind::ALL.to_vec() } else { pools };
            let program = WorkerProgram::beside_current_exe().context("finding the worker binary")?;
            println!("one map of {tasks} echo tasks on {workers} workers, best of {repeat}:");
            for kind in pools {
                let best = speed::time_map(&program, kind, tasks, workers, repeat)?;
                println!(
                    "{:<14} {:>9.1} ms  {:>10.0} tasks/s",
                    kind.to_string(),
                    best.as_secs_f64() * 1e3,
                    tasks as f64 / best.as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { smoke, out, pools: patterns } => {
            let program = benches::worker()?;
            let mode = if smoke { benches::Mode::Smoke } else { benches::Mode::Quick };
            // A row is wanted if a pattern matches its pool's name, its target's or its label.
            let matches = |p: &str, names: &[&str]| names.iter().any(|n| harness::target::glob(p, n));
            let names = |row: &harness::bench::ExternalRow| [row.label.to_string(), row.target.name()];
            let all: Vec<String> = PoolKind::ALL
                .iter()
                .map(|k| k.to_string())
                .chain(harness::bench::ROWS.iter().flat_map(names))
                .collect();
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            if let Some(bad) = patterns.iter().find(|p| !matches(p, &all)) {
                eprintln!("poolchaos: --pools: {bad:?} names no pool or target of the bench (see `poolchaos pools`)");
                return Ok(ExitCode::from(2));
            }
            let wanted = |names: &[&str]| patterns.is_empty() || patterns.iter().any(|p| matches(p, names));
            let pools: Vec<PoolKind> = PoolKind::ALL.into_iter().filter(|k| wanted(&[&k.to_string()])).collect();
            // The external rows run in sandboxes, as `poolchaos run` does.
            let ctx = RunContext {
                exe: std::env::current_exe()?,
                root: harness::target::project_root(),
                events_dir: None,
                session: start_session()?,
            };
            let rows: Vec<harness::bench::Bench> = harness::bench::ROWS
                .iter()
                .filter(|row| wanted(&names(row).each_ref().map(String::as_str)))
                .map(|row| harness::bench::Bench::new(row, &ctx))
                .collect();
            let externals: Vec<&dyn benches::load::External> = rows.iter().map(|r| r as _).collect();
            let started = Instant::now();
            let stop = ctx.session.stop();
            // A run's fixed cost is supervised's, measured with it.
            let fixed = harness::bench::Fixed::new(&ctx);
            let fixed = pools.contains(&PoolKind::Supervised).then_some(&fixed as &dyn benches::fixed::Harness);
            let summary = benches::run(&program, mode, &pools, &externals, fixed, &mut |what| {
                stop.check()?;
                eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
                Ok(())
            });
            // A stop ends the bench between measurements (a batch in a sandbox at once): no summary, as it
            // would be partial. Whatever the error then (a Ctrl-C also reaches the in-process pools'
            // workers, in this process group), the stop is the cause.
            let summary = match summary {
                Err(_) if let Some(signal) = stop.requested() => {
                    eprintln!(
                        "poolchaos: bench interrupted by {signal} after {:.1} s: nothing written (a partial summary would mislead)",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(ExitCode::from(signal.exit_status()));
                }
                summary => summary?,
            };
            let out = out.or_else(|| (!smoke).then(|| PathBuf::from("reports/bench")));
            match &out {
                Some(dir) => {
                    benches::write(&summary, dir)?;
                    println!("wrote {0}/summary.md and {0}/throughput.svg", dir.display());
                }
                None => print!("{}", summary.markdown()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { scenario: path, python: _, bundled, out } => {
            let s = match scenario::load(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("poolchaos: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let write =
                if bundled { harness::report::export::bundled::script } else { harness::report::export::python_script };
            let script = match write(&s, &path.display().to_string()) {
                Ok(script) => script,
                Err(e) => {
                    eprintln!("poolchaos: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            match &out {
                Some(file) => std::fs::write(file, script).with_context(|| format!("writing {}", file.display()))?,
                None => print!("{script}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::OwnerPlan { scenario: path, pool, seed } => match scenario::load(&path) {
            Ok(s) => {
                let plan = plan::Plan::new(&s, pool, seed);
                println!("{}", serde_json::to_string(&harness::protocol::OwnerPlan::from(&plan))?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("poolchaos: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Scenario => {
            print!("{}", harness::scenario::help::reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Pools => {
            for target in harness::target::Target::all() {
                println!("{target}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Owner => Ok(ExitCode::from(harness::run::owner::main() as u8)),
    }
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
