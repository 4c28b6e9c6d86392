//! Randomized campaigns: many runs of one pool, each under a plan drawn from
//! a seeded generator, each judged by the pool's [oracle] and by the safety
//! invariants; a failing plan is shrunk to a small scenario file that replays
//! the finding.
//!
//! Run `i` of a campaign with seed `S` draws its plan from `Dice::new(mix(S, i))`,
//! so a run is the same on every machine and every share: `--partition K/N`
//! runs the indices `i` with `i % N == K - 1`, and `poolchaos merge` joins the
//! shares' `report.json` files into one.
//!
//! [oracle]: crate::oracle

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pools::{CallStyle, FaultKind, FaultPoint, PoolKind, Workload};
use serde::{Deserialize, Serialize};

use crate::checker::Judgement;
use crate::events::Logged;
use crate::oracle::{self, Expectation};
use crate::plan::{Dice, Plan};
use crate::protocol::Signal;
use crate::runner::{self, RunContext};
use crate::scenario::{Aim, Nemesis, Scenario, SelfFault, Storm, TaskGroup};
use crate::shrink;
use crate::target::Target;
use crate::verdict::{RunRecord, Verdict};

/// What a campaign's plans are made of. Rates are per task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knobs {
    pub tasks: usize,
    pub workers: usize,
    /// A task SIGKILLs itself at a random point.
    pub kill_rate: f64,
    /// A task segfaults, aborts or exits mid-task.
    pub crash_rate: f64,
    /// A task allocates past the run's memory limit (a real OOM kill).
    pub oom_rate: f64,
    /// A task hangs or SIGSTOPs itself.
    pub stall_rate: f64,
    /// The nemesis SIGKILLs a task's worker from outside, some ms into it.
    pub outside_rate: f64,
    /// A task raises an error.
    pub error_rate: f64,
    /// A kill storm every this many ms (0: none).
    pub storm_ms: u64,
    pub max_attempts: u32,
    pub task_timeout_ms: u64,
    pub deadline_ms: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            tasks: 40,
            workers: 2,
            kill_rate: 0.03,
            crash_rate: 0.01,
            oom_rate: 0.005,
            stall_rate: 0.005,
            outside_rate: 0.01,
            error_rate: 0.01,
            storm_ms: 0,
            max_attempts: 3,
            task_timeout_ms: 1000,
            deadline_ms: 5000,
        }
    }
}

/// The memory limit of a campaign run; an OOM task allocates twice as much.
const MEMORY_LIMIT_MIB: u64 = 128;

/// Run `index`'s own seed: splitmix64 of the campaign seed and the index.
pub fn run_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The plan of run `index`, as an explicit scenario (no random parts left).
pub fn generate(knobs: &Knobs, pool: PoolKind, seed: u64, index: u64) -> Scenario {
    let run_seed = run_seed(seed, index);
    let mut dice = Dice::new(run_seed);
    let style = *dice.pick(&CallStyle::ALL);
    let mut tasks = Vec::with_capacity(knobs.tasks);
    let mut nemesis = Vec::new();
    for i in 0..knobs.tasks {
        let work = match dice.below(10) {
            0..5 => Workload::Echo(vec![b'x'; 1 + dice.below(64) as usize]),
            5..8 => Workload::Spin { us: 100 + dice.below(1900) },
            _ => Workload::Sleep { ms: 1 + dice.below(20) },
        };
        let point = *dice.pick(&[FaultPoint::Decode, FaultPoint::MidTask, FaultPoint::WriteResult]);
        let once = |kind| Some(SelfFault { kind, at: point, times: 1 });
        let mut fault = None;
        let mut work = work;
        if dice.chance(knobs.kill_rate) {
            fault = once(FaultKind::SigKill);
        } else if dice.chance(knobs.crash_rate) {
            let kind = *dice.pick(&[FaultKind::SigSegv, FaultKind::Abort, FaultKind::Exit(0), FaultKind::Exit(1)]);
            fault = Some(SelfFault { kind, at: FaultPoint::MidTask, times: 1 });
        } else if dice.chance(knobs.oom_rate) {
            work = Workload::Alloc { mib: (2 * MEMORY_LIMIT_MIB) as u32, hold: false };
        } else if dice.chance(knobs.stall_rate) {
            let kind = *dice.pick(&[FaultKind::Hang, FaultKind::SigStop]);
            fault = Some(SelfFault { kind, at: FaultPoint::MidTask, times: 1 });
        } else if dice.chance(knobs.error_rate) {
            fault = Some(SelfFault { kind: FaultKind::Error, at: FaultPoint::MidTask, times: 1 });
        } else if dice.chance(knobs.outside_rate) {
            // Long enough to be struck in the middle of it.
            work = Workload::Sleep { ms: 50 };
            nemesis.push(Nemesis { signal: Signal::Sigkill, target: Aim::Task(i), after_ms: 10 + dice.below(30) });
        }
        tasks.push(TaskGroup { count: 1, work, fault });
    }
    Scenario {
        name: format!("{pool}-seed{seed}-run{index}"),
        path: PathBuf::new(),
        description: format!("campaign run {index} of seed {seed} against {pool}"),
        workers: knobs.workers,
        style,
        deadline_ms: knobs.deadline_ms,
        memory_limit_mib: Some(MEMORY_LIMIT_MIB),
        task_timeout_ms: Some(knobs.task_timeout_ms),
        max_attempts: knobs.max_attempts,
        seed: Some(run_seed),
        tasks,
        nemesis,
        random: None,
        storm: (knobs.storm_ms > 0).then_some(Storm { signal: Signal::Sigkill, every_ms: knobs.storm_ms }),
        expect: vec![(Target::Pool(pool), Verdict::Completed)],
    }
}

/// Why a run is a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingKind {
    /// The verdict is not the oracle's.
    Oracle { verdict: Verdict, expected: Verdict },
    /// A safety invariant broke: a task lost, duplicated or wrong; something leaked.
    Safety { verdict: Verdict, what: String },
}

/// A run that broke the oracle or an invariant, with its reproducer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub run: u64,
    pub seed: u64,
    pub kind: FindingKind,
    pub faults_before: usize,
    pub faults_after: usize,
    /// The shrunk scenario file that replays the finding.
    pub reproducer: Option<String>,
}

/// One run as a campaign records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignRun {
    pub index: u64,
    pub verdict: Verdict,
    pub expected: String,
    pub record: RunRecord,
}

/// The result of a campaign (or of one share, or of a merge).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub pool: String,
    pub seed: u64,
    pub knobs: Knobs,
    /// `K/N` when this is one share.
    pub partition: Option<String>,
    pub runs: Vec<CampaignRun>,
    pub findings: Vec<Finding>,
    /// Runs where the oracle could not decide, and why.
    pub undetermined: usize,
    pub elapsed_ms: u64,
}

impl CampaignReport {
    pub fn verdict_counts(&self) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.verdict).or_default() += 1;
        }
        counts
    }

    pub fn summary(&self) -> String {
        let counts: Vec<String> = self.verdict_counts().iter().map(|(v, n)| format!("{v} {n}")).collect();
        let mut out = format!(
            "campaign: {} runs of {} (seed {}{}), {:.1} s\n  verdicts: {}\n  findings: {}; oracle undetermined: {}\n",
            self.runs.len(),
            self.pool,
            self.seed,
            self.partition.as_ref().map(|p| format!(", share {p}")).unwrap_or_default(),
            self.elapsed_ms as f64 / 1000.0,
            counts.join(", "),
            self.findings.len(),
            self.undetermined,
        );
        for f in &self.findings {
            let what = match &f.kind {
                FindingKind::Oracle { verdict, expected } => format!("{verdict}, oracle says {expected}"),
                FindingKind::Safety { verdict, what } => format!("{verdict}: {what}"),
            };
            out += &format!(
                "  finding: run {} (seed {}): {what}; {} fault(s) shrunk to {}; replay: poolchaos run {}\n",
                f.run,
                f.seed,
                f.faults_before,
                f.faults_after,
                f.reproducer.as_deref().unwrap_or("-")
            );
        }
        out
    }

    /// Joins shares of the same campaign.
    pub fn merge(mut shares: Vec<CampaignReport>) -> anyhow::Result<CampaignReport> {
        let Some(mut merged) = shares.pop() else { anyhow::bail!("nothing to merge") };
        for share in shares {
            anyhow::ensure!(
                share.pool == merged.pool && share.seed == merged.seed,
                "cannot merge campaigns of different pools or seeds ({} seed {} vs {} seed {})",
                share.pool,
                share.seed,
                merged.pool,
                merged.seed
            );
            merged.runs.extend(share.runs);
            merged.findings.extend(share.findings);
            merged.undetermined += share.undetermined;
            merged.elapsed_ms = merged.elapsed_ms.max(share.elapsed_ms);
        }
        merged.runs.sort_by_key(|r| r.index);
        merged.findings.sort_by_key(|f| f.run);
        merged.partition = None;
        Ok(merged)
    }
}

/// Where and how a campaign runs.
pub struct Settings {
    pub pool: PoolKind,
    pub seed: u64,
    pub knobs: Knobs,
    /// Stop after this many runs (of this share) ...
    pub runs: Option<u64>,
    /// ... or once this much time has passed.
    pub duration: Option<Duration>,
    /// `(k, n)`: run only the indices `i % n == k - 1`.
    pub partition: Option<(u64, u64)>,
    pub jobs: usize,
    /// Where reproducers go (`reports/failures/`).
    pub failures_dir: PathBuf,
    /// Whether to shrink findings (slow: each step is a run).
    pub shrink: bool,
    /// Start no new run once this many findings are in.
    pub max_findings: Option<usize>,
}

/// Judges one run: the oracle's expectation, and a finding if any: the
/// checker's safety findings first, then a verdict that is not the oracle's.
pub fn judge(
    pool: PoolKind,
    plan: &Plan,
    events: &[Logged],
    judgement: &Judgement,
) -> (Expectation, Option<FindingKind>) {
    let expectation = oracle::expect(pool, plan, events);
    let finding = match &expectation {
        _ if !judgement.findings.is_empty() => {
            Some(FindingKind::Safety { verdict: judgement.verdict, what: judgement.findings.join("; ") })
        }
        Expectation::Verdict(expected, _) if *expected != judgement.verdict => {
            Some(FindingKind::Oracle { verdict: judgement.verdict, expected: *expected })
        }
        _ => None,
    };
    (expectation, finding)
}

/// Runs a scenario once for `pool`, judged: the record, the expectation and any finding.
pub fn run_once(
    scenario: &Scenario,
    pool: PoolKind,
    ctx: &RunContext,
    run_id: &str,
) -> anyhow::Result<(RunRecord, Expectation, Option<FindingKind>)> {
    let plan = Plan::new(scenario, Target::Pool(pool), scenario.seed.unwrap_or(0));
    let result = runner::run(&plan, ctx, run_id)?;
    let (expectation, finding) = judge(pool, &plan, &result.events, &result.judgement);
    let mut record = result.record;
    if let Expectation::Verdict(v, _) = &expectation {
        record.expected = Some(*v);
    }
    Ok((record, expectation, finding))
}

/// Runs a campaign; `tick` is called after every run.
pub fn run(
    settings: &Settings,
    ctx: &RunContext,
    tick: &(dyn Fn(&CampaignRun) + Sync),
) -> anyhow::Result<CampaignReport> {
    let started = Instant::now();
    let (k, n) = settings.partition.unwrap_or((1, 1));
    anyhow::ensure!(n >= 1 && (1..=n).contains(&k), "--partition must be K/N with 1 <= K <= N");
    let mut indices = (0u64..).filter(move |i| i % n == k - 1);
    let limit = settings.runs;
    let taken = Mutex::new(0u64);
    let next = || -> Option<u64> {
        let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
        if limit.is_some_and(|l| *taken >= l) || settings.duration.is_some_and(|d| started.elapsed() >= d) {
            return None;
        }
        *taken += 1;
        indices.next()
    };
    let next = Mutex::new(next);
    let runs = Mutex::new(Vec::new());
    let findings: Mutex<Vec<Finding>> = Mutex::new(Vec::new());
    let enough =
        || settings.max_findings.is_some_and(|m| findings.lock().unwrap_or_else(|e| e.into_inner()).len() >= m);
    let undetermined = Mutex::new(0usize);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..settings.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    if enough() {
                        break;
                    }
                    let Some(index) = (next.lock().unwrap_or_else(|e| e.into_inner()))() else { break };
                    let scenario = generate(&settings.knobs, settings.pool, settings.seed, index);
                    let outcome = run_once(&scenario, settings.pool, ctx, &format!("c{index}"));
                    let (record, expectation, finding) = match outcome {
                        Ok(judged) => judged,
                        Err(e) => {
                            failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            break;
                        }
                    };
                    if matches!(expectation, Expectation::Undetermined(_)) {
                        *undetermined.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                    let run = CampaignRun { index, verdict: record.verdict, expected: expectation.to_string(), record };
                    tick(&run);
                    if let Some(kind) = finding.filter(|_| !enough()) {
                        let finding = report_finding(settings, ctx, &scenario, index, kind);
                        findings.lock().unwrap_or_else(|e| e.into_inner()).push(finding);
                    }
                    runs.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut runs = runs.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by_key(|r| r.index);
    let mut findings = findings.into_inner().unwrap_or_else(|e| e.into_inner());
    findings.sort_by_key(|f| f.run);
    Ok(CampaignReport {
        pool: settings.pool.to_string(),
        seed: settings.seed,
        knobs: settings.knobs.clone(),
        partition: settings.partition.map(|(k, n)| format!("{k}/{n}")),
        runs,
        findings,
        undetermined: undetermined.into_inner().unwrap_or_else(|e| e.into_inner()),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Shrinks a failing plan and saves the reproducer.
fn report_finding(
    settings: &Settings,
    ctx: &RunContext,
    scenario: &Scenario,
    index: u64,
    kind: FindingKind,
) -> Finding {
    let faults_before = shrink::fault_count(scenario);
    let mut small = scenario.clone();
    if settings.shrink {
        small = shrink::shrink(
            scenario,
            &|candidate| matches!(run_once(candidate, settings.pool, ctx, &format!("s{index}")), Ok((_, _, Some(k))) if same_kind(&k, &kind)),
        );
    }
    let reproducer = save_reproducer(&settings.failures_dir, &small, settings.pool, settings.seed, index, &kind).ok();
    Finding {
        run: index,
        seed: settings.seed,
        kind,
        faults_before,
        faults_after: shrink::fault_count(&small),
        reproducer: reproducer.map(|p| p.display().to_string()),
    }
}

/// Whether two findings are the same failure (for shrinking: keep failing the same way).
fn same_kind(a: &FindingKind, b: &FindingKind) -> bool {
    match (a, b) {
        (FindingKind::Oracle { verdict: v1, .. }, FindingKind::Oracle { verdict: v2, .. }) => v1 == v2,
        (FindingKind::Safety { verdict: v1, .. }, FindingKind::Safety { verdict: v2, .. }) => v1 == v2,
        _ => false,
    }
}

fn save_reproducer(
    dir: &Path,
    scenario: &Scenario,
    pool: PoolKind,
    seed: u64,
    index: u64,
    kind: &FindingKind,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{pool}-seed{seed}-run{index}.toml"));
    let mut repro = scenario.clone();
    // What the pool should have done: replaying the file shows it does not.
    let expected = match kind {
        FindingKind::Oracle { expected, .. } => *expected,
        FindingKind::Safety { .. } => Verdict::Completed,
    };
    repro.expect = vec![(Target::Pool(pool), expected)];
    repro.description = format!("Shrunk reproducer of campaign seed {seed}, run {index}, against {pool}: {kind:?}");
    let header = vec![
        format!("Found by: poolchaos campaign --pool {pool} --seed {seed} (run {index})"),
        format!("Finding: {kind:?}"),
        format!("Replay: poolchaos run {}", path.display()),
    ];
    std::fs::write(&path, repro.to_toml(&header))?;
    Ok(path)
}
