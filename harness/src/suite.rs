//! A suite: many scenarios, each against its pools, run a few at a time, each
//! in its own sandbox, gathered into one [`Report`].

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;

use crate::judge::verdict::{PeerCheck, RunRecord, Verdict};
use crate::report::Report;
use crate::run::interrupt::{Interrupted, Interruption};
use crate::run::runner::{self, RunContext};
use crate::scenario::Scenario;
use crate::scenario::plan::Plan;
use crate::target::{PyVersion, StartMethod, Target};

/// Which targets a suite runs.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep only targets matching one of these names or `*` patterns (`py-*`).
    pub patterns: Vec<String>,
    /// Run every scenario against this target instead (`--target CMD`), held to the scenario's `custom` line if it has one.
    pub command: Option<Target>,
    /// Run each Python target by each of these versions (`--python`; none: the default).
    pub pythons: Vec<PyVersion>,
    /// And with each of these start methods (`--start-method`; none: the target's own).
    pub methods: Vec<StartMethod>,
}

impl Selection {
    /// The variants a Python target the scenario names runs as: every
    /// version x start method asked for.
    fn variants(&self, target: &Target) -> Vec<Target> {
        let pythons: Vec<Option<PyVersion>> =
            if self.pythons.is_empty() { vec![None] } else { self.pythons.iter().copied().map(Some).collect() };
        let methods: Vec<Option<StartMethod>> =
            if self.methods.is_empty() { vec![None] } else { self.methods.iter().copied().map(Some).collect() };
        if !matches!(target, Target::Python(_)) || *target != target.base() {
            return vec![target.clone()]; // ours, or a variant the scenario names itself
        }
        pythons
            .iter()
            .flat_map(|&p| methods.iter().filter(|&&m| target.has_method(m)).map(move |&m| target.variant(p, m)))
            .collect()
    }
}

/// The (scenario, target) pairs to run: each scenario's expected targets (a
/// Python target as each version and start method asked for), kept to the
/// selection's patterns; or every scenario against `--target`.
pub fn pairs<'a>(scenarios: &'a [Scenario], selection: &Selection) -> Vec<(&'a Scenario, Target)> {
    if let Some(command) = &selection.command {
        return scenarios.iter().map(|s| (s, command.clone())).collect();
    }
    let wanted = |t: &Target| selection.patterns.is_empty() || selection.patterns.iter().any(|p| t.matches(p));
    let mut pairs: Vec<(&Scenario, Target)> = Vec::new();
    for s in scenarios {
        // `custom` is for `--target` runs alone.
        let named = s.expect.iter().filter(|(target, _)| !matches!(target, Target::Command(_)));
        for target in named.flat_map(|(target, _)| selection.variants(target)) {
            if wanted(&target) && !pairs.iter().any(|(other, t)| std::ptr::eq(*other, s) && *t == target) {
                pairs.push((s, target));
            }
        }
    }
    pairs
}

/// What `scenario` expects of `target`: its own line, else its base's (a
/// Python target run by another version or start method is held to the
/// same expectation unless the scenario names the variant).
pub fn expected(scenario: &Scenario, target: &Target) -> Option<Verdict> {
    let same = |p: &Target, t: &Target| p == t || matches!((p, t), (Target::Command(_), Target::Command(_)));
    let find = |t: &Target| scenario.expect.iter().find(|(p, _)| same(p, t)).map(|(_, v)| *v);
    find(target).or_else(|| find(&target.base()))
}

/// Runs every pair `repeat` times (the whole list, then again), `jobs` at a
/// time; `tick` is called after each run. A stop (SIGINT, SIGTERM) ends it
/// early: the report holds the runs that finished and names the rest.
pub fn run(
    scenarios: &[Scenario],
    selection: &Selection,
    seed: u64,
    ctx: &RunContext,
    jobs: usize,
    repeat: u32,
    tick: &(dyn Fn(&RunRecord) + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let python = crate::report::PythonProbe::start(&ctx.root);
    let repeat = repeat.max(1);
    let pairs = pairs(scenarios, selection);
    let work: Vec<(u32, &(&Scenario, Target))> = (1..=repeat).flat_map(|r| pairs.iter().map(move |p| (r, p))).collect();
    let mut queue = work.iter().enumerate();
    let done: Mutex<Vec<(usize, RunRecord)>> = Mutex::new(Vec::new());
    let cut: Mutex<Vec<String>> = Mutex::new(Vec::new());
    ctx.session.execute(
        jobs,
        || queue.next(),
        |(i, (r, (scenario, pool)))| {
            let plan = Plan::new(scenario, pool.clone(), seed);
            let result = match runner::run_repeat(&plan, ctx, &i.to_string(), (repeat > 1).then_some(*r)) {
                Err(e) if Interrupted::of(&e).is_some() => {
                    let repeat = if repeat > 1 { format!(" (repeat {r})") } else { String::new() };
                    cut.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{} × {pool}{repeat}", scenario.name));
                    return Ok(());
                }
                result => result.map_err(|e| e.context(format!("running {} on {pool}", scenario.name)))?,
            };
            let mut record = result.record;
            record.expected = expected(scenario, pool);
            if let Some(peer) = scenario.peer.as_ref().filter(|p| p.target == pool.base()) {
                record.peer = Some(PeerCheck::of(peer, &record));
            }
            // A run not as expected gets its timeline beside its event log.
            if let (false, Some(events), Some(dir)) = (record.as_expected(), &record.events, &ctx.events_dir) {
                let name = crate::report::timeline::path_for(events);
                let path = dir.join(Path::new(&name).file_name().unwrap_or_default());
                let svg = crate::report::timeline::svg(&result.events, &crate::report::timeline::Context::of(&plan))?;
                std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            }
            tick(&record);
            done.lock().unwrap_or_else(|e| e.into_inner()).push((i, record));
            Ok(())
        },
    )?;
    let mut runs = done.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by_key(|(i, _)| *i);
    let runs: Vec<RunRecord> = runs.into_iter().map(|(_, r)| r).collect();
    let interrupted = ctx.session.stop().requested().map(|signal| {
        let runs_cut = cut.into_inner().unwrap_or_else(|e| e.into_inner());
        Interruption { signal, not_started: work.len() - runs.len() - runs_cut.len(), runs: runs_cut }
    });
    let mut report = Report {
        seed,
        oom_mechanism: mechanisms(&runs),
        versions: crate::report::versions(python, interrupted.is_none()),
        runs,
        elapsed_ms: started.elapsed().as_millis() as u64,
        repeat,
        cells: Vec::new(),
        interrupted,
    };
    if repeat > 1 {
        report.cells = report.cell_stats();
    }
    Ok(report)
}

/// The runs' mechanisms, distinct ones joined by `; ` (`none` without runs).
pub fn mechanisms(runs: &[RunRecord]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for m in runs.iter().filter_map(|r| r.mechanism.as_ref()) {
        let m = m.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.is_empty() { "none".into() } else { seen.join("; ") }
}
