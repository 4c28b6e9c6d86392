//! `poolchaos`: the harness's command line.
//!
//! - `run [FILES|DIRS]`: every scenario against its pools, each run in a
//!   sandbox; a table, and with `--out` the report files. Exit 0 when every
//!   verdict met its expectation, 1 when one did not, 2 on bad input.
//! - `list`, `explain SCENARIO`: what the scenarios are.
//! - `matrix`: the quick in-process fault matrix (every pool x self-placed
//!   fault x call style).
//! - `speed`: one no-fault map of N echo tasks per pool, timed.
//! - `owner`: the pool's owner inside a run (started by `run`, not by people).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use harness::runner::RunContext;
use harness::{matrix, plan, scenario, suite};
use pools::{PoolKind, WorkerProgram};

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
        /// Only these pools (comma-separated).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<PoolKind>,
        /// Seed for the random parts of plans (a scenario's own seed wins).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write report.md, report.json, junit.xml and runs/ here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// What to print on stdout.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Runs at once, each in its own sandbox.
        #[arg(short = 'j', long, default_value_t = 4)]
        jobs: usize,
    },
    /// List the scenarios.
    List {
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Say what a scenario does, in words.
    Explain {
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run every pool under every self-placed fault in every call style, in this process.
    Matrix {
        /// Pools to run (default: all).
        #[arg(long, value_delimiter = ',')]
        pools: Vec<PoolKind>,
        /// How long a run may take before it is called hung, in ms.
        #[arg(long, default_value_t = 2000)]
        deadline_ms: u64,
        /// Runs at once (they mostly wait).
        #[arg(short = 'j', long, default_value_t = 8)]
        jobs: usize,
    },
    /// Time one no-fault `map` of N echo tasks on each pool.
    Speed {
        #[arg(long, value_delimiter = ',')]
        pools: Vec<PoolKind>,
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Maps per pool; the best is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// List the pools under test.
    Pools,
    /// The pool's owner inside a sandboxed run (internal).
    #[command(hide = true)]
    Owner,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("poolchaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run { paths, pools, seed, out, format, jobs } => {
            let scenarios = match scenario::load_all(&paths) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("poolchaos: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            // Orphaned workers of a run come to us, to be seen and reaped.
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
            harness::sandbox::clean_stale();
            let ctx = RunContext { exe: std::env::current_exe()?, events_dir: out.as_ref().map(|o| o.join("runs")) };
            let total = suite::pairs(&scenarios, &pools).len() as u64;
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let tick = |r: &harness::verdict::RunRecord| {
                bar.set_message(format!("{} / {}: {}", r.scenario, r.pool, r.verdict));
                bar.inc(1);
            };
            let report = suite::run(&scenarios, &pools, seed, &ctx, jobs, &tick)?;
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
            Ok(if report.all_as_expected() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
        Command::Explain { scenario: path, seed } => match scenario::load(&path) {
            Ok(s) => {
                print!("{}", plan::explain(&s, seed));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("poolchaos: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Matrix { pools, deadline_ms, jobs } => {
            let pools = if pools.is_empty() { PoolKind::ALL.to_vec() } else { pools };
            let program = WorkerProgram::beside_current_exe().context("finding the worker binary")?;
            let started = Instant::now();
            let cells = matrix::run(&program, &pools, Duration::from_millis(deadline_ms), jobs);
            print!("{}", matrix::table(&cells));
            println!(
                "\n{} runs in {:.1} s; a run is HUNG when its tasks are not all settled {deadline_ms} ms after submission.",
                cells.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Speed { pools, tasks, workers, repeat } => {
            let pools = if pools.is_empty() { PoolKind::ALL.to_vec() } else { pools };
            let program = WorkerProgram::beside_current_exe().context("finding the worker binary")?;
            println!("one map of {tasks} echo tasks on {workers} workers, best of {repeat}:");
            for kind in pools {
                let best = matrix::time_map(&program, kind, tasks, workers, repeat)?;
                println!(
                    "{:<14} {:>9.1} ms  {:>10.0} tasks/s",
                    kind.to_string(),
                    best.as_secs_f64() * 1e3,
                    tasks as f64 / best.as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pools => {
            for kind in PoolKind::ALL {
                println!("{kind}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Owner => Ok(ExitCode::from(harness::owner::main() as u8)),
    }
}
