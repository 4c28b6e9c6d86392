//! `poolchaos speed` (one no-fault map per pool, timed) and `poolchaos
//! bench` (throughput under failures and the floor beside it, from the
//! `benches` crate; the external targets' rows run in sandboxes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use harness::bench::{Bench, ExternalRow, ROWS};
use harness::target::glob;
use pools::{PoolKind, WorkerProgram};

use super::{bad_input, run_context};

pub fn speed(pools: Vec<PoolKind>, tasks: u64, workers: usize, repeat: usize) -> anyhow::Result<ExitCode> {
    let pools = if pools.is_empty() { PoolKind::ALL.to_vec() } else { pools };
    let program = WorkerProgram::beside_current_exe().context("finding the worker binary")?;
    println!("one map of {tasks} echo tasks on {workers} workers, best of {repeat}:");
    for kind in pools {
        let best = harness::speed::time_map(&program, kind, tasks, workers, repeat)?;
        println!(
            "{:<14} {:>9.1} ms  {:>10.0} tasks/s",
            kind.to_string(),
            best.as_secs_f64() * 1e3,
            tasks as f64 / best.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The names a pattern may match an external row by: its label and its target's.
fn names(row: &ExternalRow) -> [String; 2] {
    [row.label.to_string(), row.target.name()]
}

/// Whether `pattern` matches one of `names`.
fn matches(pattern: &str, names: &[&str]) -> bool {
    names.iter().any(|n| glob(pattern, n))
}

pub fn bench(smoke: bool, out: Option<PathBuf>, patterns: &[String]) -> anyhow::Result<ExitCode> {
    let program = benches::worker()?;
    let mode = if smoke { benches::Mode::Smoke } else { benches::Mode::Quick };
    // A row is wanted if a pattern matches its pool's name, its target's or its label.
    let all: Vec<String> = PoolKind::ALL.iter().map(|k| k.to_string()).chain(ROWS.iter().flat_map(names)).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    if let Some(bad) = patterns.iter().find(|p| !matches(p, &all)) {
        return Ok(bad_input(format_args!(
            "--pools: {bad:?} names no pool or target of the bench (see `poolchaos pools`)"
        )));
    }
    let wanted = |names: &[&str]| patterns.is_empty() || patterns.iter().any(|p| matches(p, names));
    let pools: Vec<PoolKind> = PoolKind::ALL.into_iter().filter(|k| wanted(&[&k.to_string()])).collect();
    // The external rows run in sandboxes, as `poolchaos run` does.
    let ctx = run_context(None)?;
    let rows: Vec<Bench> = ROWS
        .iter()
        .filter(|row| wanted(&names(row).each_ref().map(String::as_str)))
        .map(|row| Bench::new(row, &ctx))
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
    match out.or_else(|| (!smoke).then(|| PathBuf::from("reports/bench"))) {
        Some(dir) => {
            benches::write(&summary, &dir)?;
            println!("wrote {0}/summary.md and {0}/throughput.svg", dir.display());
        }
        None => print!("{}", summary.markdown()),
    }
    Ok(ExitCode::SUCCESS)
}
