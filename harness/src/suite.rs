//! A suite: many scenarios, each against its pools, run a few at a time, each
//! in its own sandbox, gathered into one [`Report`].

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;

use crate::plan::Plan;
use crate::report::Report;
use crate::runner::{self, RunContext};
use crate::scenario::Scenario;
use crate::target::{PyVersion, StartMethod, Target};
use crate::verdict::{PeerCheck, RunRecord, Verdict};

/// Which targets a suite runs.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep only targets matching one of these names or `*` patterns (`py-*`).
    pub patterns: Vec<String>,
    /// Run every scenario against this target instead (`--target CMD`), with no expectation.
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
        for target in s.expect.iter().flat_map(|(target, _)| selection.variants(target)) {
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
    let find = |t: &Target| scenario.expect.iter().find(|(p, _)| p == t).map(|(_, v)| *v);
    find(target).or_else(|| find(&target.base()))
}

/// Runs every pair, `jobs` at a time; `tick` is called after each run.
pub fn run(
    scenarios: &[Scenario],
    selection: &Selection,
    seed: u64,
    ctx: &RunContext,
    jobs: usize,
    tick: &(dyn Fn(&RunRecord) + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let work = pairs(scenarios, selection);
    let mut queue = work.iter().enumerate();
    let done: Mutex<Vec<(usize, RunRecord)>> = Mutex::new(Vec::new());
    ctx.session.execute(
        jobs,
        || queue.next(),
        |(i, (scenario, pool))| {
            let plan = Plan::new(scenario, pool.clone(), seed);
            let result = runner::run(&plan, ctx, &i.to_string())
                .map_err(|e| e.context(format!("running {} on {pool}", scenario.name)))?;
            let mut record = result.record;
            record.expected = expected(scenario, pool);
            if let Some(peer) = scenario.peer.as_ref().filter(|p| p.target == pool.base()) {
                record.peer = Some(PeerCheck::of(peer, &record));
            }
            // A run not as expected gets its timeline beside its event log.
            if let (false, Some(events), Some(dir)) = (record.as_expected(), &record.events, &ctx.events_dir) {
                let name = crate::timeline::path_for(events);
                let path = dir.join(Path::new(&name).file_name().unwrap_or_default());
                let svg = crate::timeline::svg(&result.events, &crate::timeline::Context::of(&plan))?;
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
    Ok(Report {
        seed,
        oom_mechanism: mechanisms(&runs),
        versions: crate::report::versions(&ctx.root),
        runs,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
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
