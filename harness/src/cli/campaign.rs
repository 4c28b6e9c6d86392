//! `poolchaos campaign` (seeded plans against one pool, judged by its
//! oracle, with progress on stderr) and `poolchaos merge` (a campaign's
//! shares joined).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use harness::campaign::{CampaignReport, CampaignRun, Settings};
use harness::target::Target;

use super::{CampaignArgs, bad_input, run_context};

pub fn campaign(args: CampaignArgs) -> anyhow::Result<ExitCode> {
    if matches!(args.pool, Target::Command(_)) {
        return Ok(bad_input("--pool: campaigns need an oracle: one of `poolchaos pools`"));
    }
    if let Some(bad) = args.knobs.refused() {
        return Ok(bad_input(bad));
    }
    let ctx = run_context(None)?;
    let settings = settings(args);
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
    let done = AtomicU64::new(0);
    let tick = |r: &CampaignRun| {
        bar.set_message(format!("run {}: {}", r.index, r.verdict));
        bar.inc(1);
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
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

/// The campaign's settings from its arguments (100 runs if neither `--runs` nor `--for`).
fn settings(args: CampaignArgs) -> Settings {
    let mut settings = Settings::new(args.pool, args.seed, args.knobs.into(), args.failures);
    settings.runs = args.runs.or(if args.for_.is_none() { Some(100) } else { None });
    settings.duration = args.for_;
    settings.partition = args.partition;
    settings.jobs = args.jobs;
    settings.shrink = !args.no_shrink;
    settings.shrink_budget = args.shrink_budget;
    settings.max_findings = args.max_findings.or(args.fail_fast.then_some(1));
    settings.out = args.out;
    settings
}

pub fn merge(paths: &[PathBuf], out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let shares = paths.iter().map(|p| load(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let merged = CampaignReport::merge(shares)?;
    if let Some(dir) = out {
        harness::campaign::write_report(dir, &merged)?;
    }
    print!("{}", merged.summary());
    Ok(if merged.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A share's `report.json` (`path` is it, or the directory holding it).
fn load(path: &Path) -> anyhow::Result<CampaignReport> {
    let file = if path.is_dir() { path.join("report.json") } else { path.to_owned() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}
