//! A suite: many scenarios, each against its pools, run a few at a time, each
//! in its own sandbox, gathered into one [`Report`].

use std::sync::Mutex;
use std::time::Instant;

use crate::plan::Plan;
use crate::report::Report;
use crate::runner::{self, RunContext};
use crate::scenario::Scenario;
use crate::target::Target;
use crate::verdict::RunRecord;

/// Which targets a suite runs.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep only targets matching one of these names or `*` patterns (`py-*`).
    pub patterns: Vec<String>,
    /// Run every scenario against this target instead (`--target CMD`), with no expectation.
    pub command: Option<Target>,
}

/// The (scenario, target) pairs to run: each scenario's expected targets,
/// kept to the selection's patterns; or every scenario against `--target`.
pub fn pairs<'a>(scenarios: &'a [Scenario], selection: &Selection) -> Vec<(&'a Scenario, Target)> {
    if let Some(command) = &selection.command {
        return scenarios.iter().map(|s| (s, command.clone())).collect();
    }
    let wanted = |t: &Target| selection.patterns.is_empty() || selection.patterns.iter().any(|p| t.matches(p));
    scenarios
        .iter()
        .flat_map(|s| s.expect.iter().map(move |(target, _)| (s, target.clone())))
        .filter(|(_, target)| wanted(target))
        .collect()
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
    let queue = Mutex::new(work.iter().enumerate());
    let done: Mutex<Vec<(usize, RunRecord)>> = Mutex::new(Vec::new());
    let mechanism = Mutex::new(None);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((i, (scenario, pool))) = next else { break };
                    let plan = Plan::new(scenario, pool.clone(), seed);
                    let run_id = format!("{i}");
                    match runner::run(&plan, ctx, &run_id) {
                        Ok(result) => {
                            let mut record = result.record;
                            record.expected = scenario.expect.iter().find(|(p, _)| p == pool).map(|(_, v)| *v);
                            tick(&record);
                            *mechanism.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.mechanism);
                            done.lock().unwrap_or_else(|e| e.into_inner()).push((i, record));
                        }
                        Err(e) => {
                            let e = e.context(format!("running {} on {pool}", scenario.name));
                            failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut runs = done.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by_key(|(i, _)| *i);
    let mechanism = mechanism.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(Report {
        seed,
        oom_mechanism: mechanism.map(|m| m.to_string()).unwrap_or_else(|| "none".into()),
        versions: crate::report::versions(&ctx.root),
        runs: runs.into_iter().map(|(_, r)| r).collect(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
