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

mod cli;

use std::process::ExitCode;

use cli::Command;

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

/// Hands the subcommand to its function (`cli`'s modules).
fn real_main() -> anyhow::Result<ExitCode> {
    match cli::parse().command {
        Command::Run(args) => cli::run::run(args),
        Command::Campaign(args) => cli::campaign::campaign(args),
        Command::Merge { paths, out } => cli::campaign::merge(&paths, out.as_deref()),
        Command::List { paths } => cli::scenarios::list(&paths),
        Command::Explain { scenario, seed, timeline } => {
            cli::scenarios::explain(scenario.as_deref(), seed, timeline.as_deref())
        }
        Command::Speed { pools, tasks, workers, repeat } => cli::bench::speed(pools, tasks, workers, repeat),
        Command::Bench { smoke, out, pools } => cli::bench::bench(smoke, out, &pools),
        Command::Export { scenario, python: _, bundled, out } => {
            cli::scenarios::export(&scenario, bundled, out.as_deref())
        }
        Command::OwnerPlan { scenario, pool, seed } => cli::scenarios::owner_plan(&scenario, pool, seed),
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
