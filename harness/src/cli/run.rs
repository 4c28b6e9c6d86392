//! `poolchaos run`: every scenario against its pools, each run in a
//! sandbox; the table (or another format) on stdout, the report files with
//! `--out`, and the exit status the verdicts come to.

use std::process::ExitCode;

use anyhow::Context;
use harness::report::Report;
use harness::target::Target;
use harness::{scenario, suite};

use super::{Format, RunArgs, SKIPPED, UNSTABLE, bad_input, run_context};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs { paths, pools, target, seed, out, format, jobs, python, start_method, allow_skipped, repeat } = args;
    let scenarios = match scenario::load_all(&paths) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(e)),
    };
    let ctx = run_context(out.as_ref().map(|o| o.join("runs")))?;
    if let Some(missing) = python.iter().find(|v| !v.venv(&ctx.root).join("bin/python").exists()) {
        return Ok(bad_input(format_args!(
            "--python {missing}: no venv at {} (make it with `targets/python/setup.sh {missing}`)",
            missing.venv(&ctx.root).display()
        )));
    }
    let command = match target.map(|t| command_words(&t)).transpose() {
        Ok(words) => words,
        Err(e) => return Ok(bad_input(e)),
    };
    let selection = suite::Selection {
        patterns: pools,
        command: command.map(Target::Command),
        pythons: python,
        methods: start_method,
    };
    if let Some(bad) = selection.patterns.iter().find(|p| !Target::all().iter().any(|t| t.matches(p))) {
        return Ok(bad_input(format_args!("--pools: {bad:?} names no pool or target (see `poolchaos pools`)")));
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
    Ok(exit_status(&report, repeat, allow_skipped))
}

/// `--target`'s command split into words as a shell would. The owner runs in
/// a temp dir: relative paths in the command are the caller's (the program
/// only when it has a `/`, as a shell looks a bare name up in PATH).
fn command_words(target: &str) -> anyhow::Result<Vec<String>> {
    let words = shlex::split(target).with_context(|| format!("--target {target:?}: unbalanced quotes"))?;
    let cwd = std::env::current_dir()?;
    let absolute = |(i, word): (usize, String)| {
        let path = cwd.join(&word);
        if !word.starts_with('/') && (i > 0 || word.contains('/')) && path.exists() {
            path.display().to_string()
        } else {
            word
        }
    };
    Ok(words.into_iter().enumerate().map(absolute).collect())
}

/// What the run comes to: interrupted (130, 143), a wrong verdict (1), an
/// unstable cell (4), skipped runs not allowed (3), or success.
fn exit_status(report: &Report, repeat: u32, allow_skipped: bool) -> ExitCode {
    let skipped = report.skipped();
    if let Some(interrupted) = &report.interrupted {
        eprintln!("poolchaos: {interrupted}");
        ExitCode::from(interrupted.signal.exit_status())
    } else if report.wrong() > 0 {
        ExitCode::from(1)
    } else if report.unstable() > 0 {
        eprintln!("poolchaos: {} cell(s) unstable across {repeat} repeats", report.unstable());
        ExitCode::from(UNSTABLE)
    } else if skipped > 0 && !allow_skipped {
        eprintln!("poolchaos: {skipped} run(s) skipped, which is not a pass (--allow-skipped to accept)");
        ExitCode::from(SKIPPED)
    } else {
        ExitCode::SUCCESS
    }
}
