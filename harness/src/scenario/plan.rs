//! Plans: a scenario made concrete for one pool and one seed: every task with
//! its fault, every signal the nemesis will send, the deadline.
//!
//! Randomness comes from `rand_pcg::Pcg64Mcg` (a named algorithm with a fixed
//! output stream) through our own mapping of its raw `u64`s, so a seed means
//! the same plan on every machine and every version of `rand`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::protocol::{self, Cancel, Knob, OwnerPlan};
use crate::scenario::{Aim, Nemesis, Scenario, Storm, TimeBounds};
use crate::target::Target;
use pools::{CallStyle, Fault, Task, Workload};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// A fault the run injected, as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// `sigkill`, `oom`, `hang`, ... (named by `protocol`).
    pub kind: String,
    /// Where: `task 3 mid-task`, `worker of task 0 after 300 ms`, `owner`, ...
    pub at: String,
    /// A kill storm's: which of its strikes hit what is timing, not behaviour.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub storm: bool,
}

/// One run, fully decided.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: String,
    pub pool: Target,
    pub seed: u64,
    pub workers: usize,
    pub style: CallStyle,
    pub deadline: Duration,
    pub memory_limit_mib: Option<u64>,
    pub task_timeout: Option<Duration>,
    pub max_attempts: u32,
    pub tasks: Vec<Task>,
    pub nemesis: Vec<Nemesis>,
    pub storm: Option<Storm>,
    /// Run one warm-up task first, and let the nemesis act before the batch.
    pub warmup: bool,
    /// A benchmark's run (`poolchaos bench`), with `warmup`: the owner times
    /// its call and reports `timed`.
    pub bench: Option<BenchRun>,
    /// `map`'s chunksize, for the targets whose map takes one.
    pub chunksize: Option<usize>,
    /// Tasks a worker runs before the pool replaces it.
    pub max_tasks: Option<u32>,
    /// The target's own knobs (the scenario's `[target.NAME]` for this target).
    pub knobs: BTreeMap<String, Knob>,
    /// The scenario's time bounds.
    pub bounds: TimeBounds,
    /// The tasks the owner cancels after submitting them.
    pub cancel: Vec<Cancel>,
    /// The pool's `join` is bounded by this (ms); past it the run is hung.
    pub join_timeout_ms: Option<u64>,
}

/// What a benchmark's run asks beyond a scenario's: whether the workers
/// trace, and when the batch, from `go` on, is hung.
#[derive(Debug, Clone, Copy)]
pub struct BenchRun {
    /// Workers write their trace lines (which cost a fast pool a little).
    pub trace: bool,
    /// Hung if the run has not ended this long after `go` ...
    pub deadline: Duration,
    /// ... or if no outcome landed and no task started or finished for this long.
    pub stall: Option<Duration>,
}

/// A seeded source of plan decisions, stable across machines and versions.
pub struct Dice(Pcg64Mcg);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(Pcg64Mcg::seed_from_u64(seed))
    }

    /// A number in `0..n` (n > 0), by multiply-shift: no modulo bias worth naming.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.0.next_u64() as f64) < p * (u64::MAX as f64)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

impl Plan {
    /// The plan of `scenario` for `pool`. The scenario's own seed wins over `seed`.
    pub fn new(scenario: &Scenario, pool: Target, seed: u64) -> Plan {
        let seed = scenario.seed.unwrap_or(seed);
        let mut dice = Dice::new(seed);
        let mut tasks = Vec::with_capacity(scenario.task_count());
        for group in &scenario.tasks {
            for _ in 0..group.count {
                let tag = tasks.len() as u64;
                let fault = group.fault.map(|f| Fault { kind: f.kind, point: f.at, times: f.times });
                tasks.push(Task { tag, work: group.work.clone(), fault });
            }
        }
        if let Some(random) = &scenario.random {
            for task in tasks.iter_mut().filter(|t| t.fault.is_none()) {
                if dice.chance(random.rate) {
                    let kind = *dice.pick(&random.kinds);
                    let point = *dice.pick(&random.points);
                    task.fault = Some(Fault::once(kind, point));
                }
            }
        }
        let knobs = scenario.options.knobs.get(&pool.base()).cloned().unwrap_or_default();
        let mut plan = Plan {
            scenario: scenario.name.clone(),
            style: pool.style().unwrap_or(scenario.style),
            pool,
            seed,
            workers: scenario.workers,
            deadline: Duration::from_millis(scenario.deadline_ms),
            memory_limit_mib: scenario.memory_limit_mib,
            task_timeout: scenario.task_timeout_ms.map(Duration::from_millis),
            max_attempts: scenario.max_attempts,
            tasks,
            nemesis: scenario.nemesis.clone(),
            storm: scenario.storm,
            warmup: false,
            bench: None,
            chunksize: scenario.options.chunksize,
            max_tasks: scenario.options.max_tasks,
            knobs,
            bounds: scenario.options.bounds,
            cancel: scenario.options.cancel.clone(),
            join_timeout_ms: scenario.options.join_timeout_ms,
        };
        // The idle worker is struck, and forks are limited, once the pool is warm.
        plan.warmup = scenario.nemesis.iter().any(|n| n.target == Aim::IdleWorker) || plan.limits_spawns();
        plan
    }

    /// A plan of `tasks` alone, made in code rather than from a scenario (the
    /// bench's runs): no nemesis, no options, our pools' attempts.
    pub fn of_tasks(name: String, pool: Target, workers: usize, style: CallStyle, tasks: Vec<Task>) -> Plan {
        Plan {
            scenario: name,
            pool,
            seed: 0,
            workers,
            style,
            deadline: Duration::from_secs(30),
            memory_limit_mib: None,
            task_timeout: None,
            max_attempts: pools::PoolConfig::ATTEMPTS,
            tasks,
            nemesis: Vec::new(),
            storm: None,
            warmup: false,
            bench: None,
            chunksize: None,
            max_tasks: None,
            knobs: BTreeMap::new(),
            bounds: TimeBounds::default(),
            cancel: Vec::new(),
            join_timeout_ms: None,
        }
    }

    /// Whether a task's fault is at `spawn`: then the runner holds the
    /// run's `pids.max` below its count from the warm-up on, so the kernel
    /// refuses every fork (see [`pools::FaultPoint::Spawn`]).
    pub fn limits_spawns(&self) -> bool {
        self.tasks.iter().filter_map(|t| t.fault).any(|f| f.point == pools::FaultPoint::Spawn)
    }

    /// Whether `task` allocates past the run's memory limit: an OOM kill, a fault like any other.
    pub fn is_oom(&self, task: &Task) -> bool {
        matches!(task.work, Workload::Alloc { mib, .. } if self.memory_limit_mib.is_some_and(|l| u64::from(mib) >= l))
    }

    /// Whether a task's fault kills the pool's owner: a deadly kind at a
    /// point in the parent (encoding a task, decoding a result, a callback).
    pub fn kills_owner(&self) -> bool {
        self.parent_faults().any(|f| f.kind.kills_worker())
    }

    /// The faults the plan places in the parent (the pool's owner): while it
    /// encodes a task, decodes a result, or runs a callback. A pool that
    /// breaks on one names no worker's death, and need not.
    pub fn parent_faults(&self) -> impl Iterator<Item = Fault> + '_ {
        use pools::FaultPoint::{Callback, DecodeResult, Encode};
        self.tasks.iter().filter_map(|t| t.fault).filter(|f| matches!(f.point, Encode | DecodeResult | Callback))
    }

    /// Every fault the plan injects, in words.
    pub fn faults(&self) -> Vec<FaultRecord> {
        let mut faults: Vec<FaultRecord> = self
            .tasks
            .iter()
            .filter_map(|t| {
                let f = t.fault?;
                let times = match f.times {
                    1 => String::new(),
                    u32::MAX => ", every attempt".into(),
                    n => format!(", first {n} attempts"),
                };
                Some(FaultRecord {
                    kind: protocol::fault_kind_name(f.kind),
                    at: format!("task {} {}{times}", t.tag, protocol::fault_point_name(f.point)),
                    storm: false,
                })
            })
            .collect();
        for t in self.tasks.iter().filter(|t| self.is_oom(t)) {
            if let (Workload::Alloc { mib, .. }, Some(limit)) = (&t.work, self.memory_limit_mib) {
                faults.push(FaultRecord {
                    kind: protocol::OOM_FAULT.into(),
                    at: format!("task {} allocates {mib} MiB, over the run's {limit} MiB limit", t.tag),
                    storm: false,
                });
            }
        }
        for n in &self.nemesis {
            let at = match n.target {
                Aim::Task(task) => format!("worker of task {task}, {} ms into it", n.after_ms),
                Aim::IdleWorker => "idle worker (inqueue lock holder), after a warm-up task".into(),
                Aim::RandomWorker => format!("a random worker, {} ms into the run", n.after_ms),
                Aim::Owner => format!("the pool's owner, {} ms into the run", n.after_ms),
            };
            faults.push(FaultRecord { kind: n.signal.name().into(), at: format!("{at} (from outside)"), storm: false });
        }
        if let Some(storm) = &self.storm {
            faults.push(FaultRecord {
                kind: storm.signal.name().into(),
                at: format!("a random worker every {} ms (storm, from outside)", storm.every_ms),
                storm: true,
            });
        }
        faults
    }
}

/// The scenario in words: what `poolchaos explain` prints.
pub fn explain(scenario: &Scenario, seed: u64) -> String {
    let mut out = format!("{}: {}\n", scenario.name, scenario.description);
    let Some((pool, _)) = scenario.expect.first() else { return out };
    let plan = Plan::new(scenario, pool.clone(), seed);
    let style = scenario.style.name();
    out += &format!(
        "  {} task(s) on {} worker(s), called with {style}; hung if not done in {} ms (seed {}).\n",
        plan.tasks.len(),
        plan.workers,
        scenario.deadline_ms,
        plan.seed
    );
    if let Some(mib) = plan.memory_limit_mib {
        out += &format!("  The run's memory cgroup is limited to {mib} MiB.\n");
    }
    if let Some(t) = plan.task_timeout {
        out += &format!("  Pools with per-task deadlines kill a task after {} ms.\n", t.as_millis());
    }
    out += &explain_options(&scenario.options);
    for group in &scenario.tasks {
        match &group.work {
            // An argument of up to 16 MiB: its size, not its bytes.
            Workload::Echo(bytes) => out += &format!("  {} x Echo of {} bytes\n", group.count, bytes.len()),
            work => out += &format!("  {} x {work:?}\n", group.count),
        }
    }
    let faults = plan.faults();
    if faults.is_empty() {
        out += "  No faults.\n";
    }
    for fault in faults {
        out += &format!("  fault: {} at {}\n", fault.kind, fault.at);
    }
    for (pool, verdict) in &scenario.expect {
        out += &format!("  expect {pool}: {verdict}\n");
    }
    out
}

/// The pools' own options of a scenario, a line each.
fn explain_options(options: &crate::scenario::Options) -> String {
    let mut out = String::new();
    if let Some(n) = options.chunksize {
        out += &format!("  map's chunksize is {n}, where the target's map takes one.\n");
    }
    if let Some(n) = options.max_tasks {
        out += &format!("  A worker runs at most {n} task(s) before the pool replaces it.\n");
    }
    for (target, knobs) in &options.knobs {
        let set: Vec<String> = knobs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        out += &format!("  {target}'s own knobs: {}.\n", set.join(", "));
    }
    let bounds = [("call_ms", options.bounds.call_ms), ("errors_by_ms", options.bounds.errors_by_ms)];
    for (name, ms) in bounds.iter().filter_map(|(n, ms)| Some((n, (*ms)?))) {
        out += &format!("  Time bound {name}: {ms} ms after the pool is ready, or the run is hung.\n");
    }
    for c in &options.cancel {
        out += &format!("  Task {} is cancelled {} ms after the last task is submitted.\n", c.task, c.after_ms);
    }
    if let Some(ms) = options.join_timeout_ms {
        out += &format!("  The pool is closed and joined with a timeout of {ms} ms; past it the run is hung.\n");
    }
    out
}

impl From<&Plan> for OwnerPlan {
    fn from(plan: &Plan) -> Self {
        OwnerPlan {
            pool: plan.pool.clone(),
            workers: plan.workers,
            style: plan.style,
            task_timeout_ms: plan.task_timeout.map(|t| t.as_millis() as u64),
            max_attempts: plan.max_attempts,
            warmup: plan.warmup,
            bench: plan.bench.is_some(),
            chunksize: plan.chunksize,
            max_tasks: plan.max_tasks,
            knobs: plan.knobs.clone(),
            cancel: plan.cancel.clone(),
            join_timeout_ms: plan.join_timeout_ms,
            tasks: plan.tasks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_are_the_same_for_the_same_seed_and_stay_in_range() {
        let (mut a, mut b) = (Dice::new(42), Dice::new(42));
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        assert_eq!(xs, (0..100).map(|_| b.below(10)).collect::<Vec<_>>());
        assert!(xs.iter().all(|&x| x < 10));
        // The stream itself is pinned: a change of algorithm or mapping shows here.
        let mut one = Dice::new(1);
        assert_eq!((0..4).map(|_| one.below(1_000_000)).collect::<Vec<_>>(), [856717, 137554, 470461, 726249]);
        let hits = (0..10_000).filter(|_| a.chance(0.05)).count();
        assert!((300..700).contains(&hits), "5% of 10000 is near 500: {hits}");
    }
}
