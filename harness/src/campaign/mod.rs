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
//! [oracle]: crate::judge::oracle

pub mod shrink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pools::{CallStyle, FaultKind, FaultPoint, Workload};
use serde::{Deserialize, Serialize};

use crate::judge::checker::Judgement;
use crate::judge::oracle::{self, Expectation};
use crate::judge::verdict::{RunRecord, Verdict};
use crate::protocol::Signal;
use crate::run::events::Logged;
use crate::run::runner::{self, RunContext};
use crate::scenario::plan::{Dice, Plan};
use crate::scenario::{Aim, Nemesis, Scenario, SelfFault, Storm, TaskGroup};
use crate::target::Target;

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
    /// Per run: workers die as they start (`init`) or as they replace
    /// another (`recycle`), on the first 1 to 3 starts. Our pools only (the
    /// start tokens place them); drawn for every target.
    #[serde(default)]
    pub start_rate: f64,
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
            start_rate: 0.1,
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
pub fn generate(knobs: &Knobs, pool: &Target, seed: u64, index: u64) -> Scenario {
    let run_seed = run_seed(seed, index);
    let mut dice = Dice::new(run_seed);
    // Drawn for every target, so a seed is the same plan whatever the target fixes.
    let style = *dice.pick(&CallStyle::ALL);
    let style = pool.style().unwrap_or(style);
    let mut tasks = Vec::with_capacity(knobs.tasks);
    let mut nemesis = Vec::new();
    for i in 0..knobs.tasks {
        let work = match dice.below(10) {
            0..5 => Workload::Echo(vec![b'x'; 1 + dice.below(64) as usize]),
            5..8 => Workload::Spin { us: 100 + dice.below(1900) },
            _ => Workload::Sleep { ms: 1 + dice.below(20) },
        };
        let point = *dice.pick(&[FaultPoint::Decode, FaultPoint::MidTask, FaultPoint::WriteResult]);
        let mut fault = None;
        let mut work = work;
        if dice.chance(knobs.kill_rate) {
            fault = Some((FaultKind::SigKill, point));
        } else if dice.chance(knobs.crash_rate) {
            let kind = *dice.pick(&[FaultKind::SigSegv, FaultKind::Abort, FaultKind::Exit(0), FaultKind::Exit(1)]);
            fault = Some((kind, FaultPoint::MidTask));
        } else if dice.chance(knobs.oom_rate) {
            work = Workload::Alloc { mib: (2 * MEMORY_LIMIT_MIB) as u32, hold: false };
        } else if dice.chance(knobs.stall_rate) {
            let kind = *dice.pick(&[FaultKind::Hang, FaultKind::SigStop]);
            fault = Some((kind, FaultPoint::MidTask));
        } else if dice.chance(knobs.error_rate) {
            fault = Some((FaultKind::Error, FaultPoint::MidTask));
        } else if dice.chance(knobs.outside_rate) {
            // Long enough to be struck in the middle of it.
            work = Workload::Sleep { ms: 50 };
            nemesis.push(Nemesis { signal: Signal::Sigkill, target: Aim::Task(i), after_ms: 10 + dice.below(30) });
        }
        // Most faults fire on the first attempt only; some on the first two
        // or three (a retry meets the fault again; three exhaust a task of 3 attempts).
        let fault = fault.map(|(kind, at)| SelfFault { kind, at, times: later_attempts(&mut dice) });
        tasks.push(TaskGroup { count: 1, work, fault });
    }
    start_fault(knobs, pool, &mut dice, &mut tasks);
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
        expect: vec![(pool.clone(), Verdict::Completed)],
        peer: None,
        options: Default::default(),
    }
}

/// How many attempts a campaign fault fires on: 1 (70 %), 2 (20 %) or 3.
fn later_attempts(dice: &mut Dice) -> u32 {
    match dice.below(10) {
        0..7 => 1,
        7..9 => 2,
        _ => 3,
    }
}

/// With `start_rate`, a deadly fault as workers start: `init` (the first
/// starts) or `recycle` (the replacements), on 1 to 3 starts, carried by a
/// fault-free task (a plan places one start fault). Drawn for every target,
/// placed for our pools only: the Python targets start their workers their
/// own way.
fn start_fault(knobs: &Knobs, pool: &Target, dice: &mut Dice, tasks: &mut [TaskGroup]) {
    if !dice.chance(knobs.start_rate) {
        return;
    }
    let at = *dice.pick(&[FaultPoint::Init, FaultPoint::Recycle]);
    let kind = *dice.pick(&[FaultKind::SigKill, FaultKind::Exit(1)]);
    let times = 1 + dice.below(3) as u32;
    let carrier = dice.below(tasks.len().max(1) as u64) as usize;
    let n = tasks.len();
    let free = |t: &TaskGroup| t.fault.is_none() && !matches!(t.work, Workload::Alloc { .. });
    if let Target::Pool(_) = pool
        && let Some(i) = (0..n).map(|k| (carrier + k) % n).find(|&i| free(&tasks[i]))
    {
        tasks[i].fault = Some(SelfFault { kind, at, times });
    }
}

/// Why a run is a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingKind {
    /// The verdict is none of those the oracle allows (in [`Verdict`]'s order).
    Oracle { verdict: Verdict, allowed: Vec<Verdict> },
    /// A safety invariant broke (the checker's findings): a task lost,
    /// duplicated, wrong, failed untouched; something leaked.
    Safety { verdict: Verdict, what: String },
}

impl FindingKind {
    pub fn verdict(&self) -> Verdict {
        match self {
            FindingKind::Oracle { verdict, .. } | FindingKind::Safety { verdict, .. } => *verdict,
        }
    }

    /// What makes two findings the same failure: the verdict and the
    /// oracle's, or the verdict and what broke, with the numbers left out.
    /// Only the first finding of a signature is shrunk.
    pub fn signature(&self) -> String {
        match self {
            FindingKind::Oracle { verdict, allowed } => format!("{verdict}, oracle allows {}", oracle::one_of(allowed)),
            FindingKind::Safety { verdict, .. } => format!("{verdict}: {}", self.breaks().join("; ")),
        }
    }

    /// What broke, each kind once, numbers left out (`task # failed with Task, ...`).
    fn breaks(&self) -> Vec<String> {
        let FindingKind::Safety { what, .. } = self else { return Vec::new() };
        let mut kinds: Vec<String> = what
            .split("; ")
            .map(|w| {
                let mut out = String::new();
                for c in w.chars() {
                    match (c.is_ascii_digit(), out.ends_with('#')) {
                        (true, true) => {}
                        (true, false) => out.push('#'),
                        (false, _) => out.push(c),
                    }
                }
                out
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Whether `other` still shows this failure (for shrinking and replays):
    /// the same rule broken. For the oracle, the same verdict outside the set
    /// the oracle allows of *that* run (a storm's hits, and so the set, vary
    /// from run to run); for the checker, one of the same things broken,
    /// whatever the verdict (a task lost in one run may hang the next).
    pub fn shown_by(&self, other: &FindingKind) -> bool {
        match (self, other) {
            (FindingKind::Oracle { verdict: a, .. }, FindingKind::Oracle { verdict: b, .. }) => a == b,
            (FindingKind::Safety { .. }, FindingKind::Safety { .. }) => {
                let theirs = other.breaks();
                self.breaks().iter().any(|k| theirs.contains(k))
            }
            _ => false,
        }
    }
}

/// A run that broke the oracle or an invariant, with its reproducer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub run: u64,
    pub seed: u64,
    pub kind: FindingKind,
    /// See [`FindingKind::signature`].
    #[serde(default)]
    pub signature: String,
    /// The earlier finding of the same signature, if this one is a repeat (not shrunk).
    #[serde(default)]
    pub same_as: Option<u64>,
    pub faults_before: usize,
    pub faults_after: usize,
    /// How many replays of the shrunk reproducer failed the same way, of how many.
    #[serde(default)]
    pub replays_failed: Option<(usize, usize)>,
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
    /// The campaign stopped before its runs were done (`--max-findings`), or this is a report written as it ran.
    #[serde(default)]
    pub partial: bool,
    /// What a SIGINT or SIGTERM cut short, if one did (`runs` holds what finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<crate::run::interrupt::Interruption>,
}

impl CampaignReport {
    pub fn verdict_counts(&self) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.verdict).or_default() += 1;
        }
        counts
    }

    /// The share of runs the oracle could not decide (0 to 1).
    pub fn undetermined_share(&self) -> f64 {
        self.undetermined as f64 / self.runs.len().max(1) as f64
    }

    /// The findings of distinct signatures.
    pub fn distinct(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.same_as.is_none())
    }

    pub fn summary(&self) -> String {
        let counts: Vec<String> = self.verdict_counts().iter().map(|(v, n)| format!("{v} {n}")).collect();
        let mut out = format!(
            "campaign: {} runs of {} (seed {}{}), {:.1} s{}\n  verdicts: {}\n  findings: {} ({} distinct); oracle undetermined: {} ({:.1} % of runs)\n",
            self.runs.len(),
            self.pool,
            self.seed,
            self.partition.as_ref().map(|p| format!(", share {p}")).unwrap_or_default(),
            self.elapsed_ms as f64 / 1000.0,
            if self.partial { " (stopped early)" } else { "" },
            counts.join(", "),
            self.findings.len(),
            self.distinct().count(),
            self.undetermined,
            self.undetermined_share() * 100.0,
        );
        if let Some(interrupted) = &self.interrupted {
            out += &format!("  {interrupted}\n");
        }
        for f in self.distinct() {
            let repeats: Vec<String> =
                self.findings.iter().filter(|o| o.same_as == Some(f.run)).map(|o| o.run.to_string()).collect();
            let replays = f
                .replays_failed
                .map(|(n, of)| match n {
                    0 => format!(
                        "; unconfirmed: the reproducer fails 0 of {of} replays (a race or the load, not a rule)"
                    ),
                    n => format!("; the reproducer fails {n} of {of} replays"),
                })
                .unwrap_or_default();
            let again =
                if repeats.is_empty() { String::new() } else { format!("; again in runs {}", repeats.join(", ")) };
            out += &format!(
                "  finding: run {} (seed {}): {}; {} fault(s) shrunk to {}{replays}{again}; replay: poolchaos run {}\n",
                f.run,
                f.seed,
                f.signature,
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
            merged.partial |= share.partial;
            merged.interrupted = merged.interrupted.or(share.interrupted);
        }
        merged.runs.sort_by_key(|r| r.index);
        merged.findings.sort_by_key(|f| f.run);
        // A signature found in two shares: every repeat counts against the
        // earliest first finding (the one shrunk in its share).
        let mut first: BTreeMap<String, u64> = BTreeMap::new();
        for f in merged.findings.iter().filter(|f| f.same_as.is_none()) {
            first.entry(f.signature.clone()).or_insert(f.run);
        }
        for f in &mut merged.findings {
            let run = *first.entry(f.signature.clone()).or_insert(f.run);
            f.same_as = (run != f.run).then_some(run);
        }
        merged.partition = None;
        Ok(merged)
    }
}

/// Where and how a campaign runs.
pub struct Settings {
    pub pool: Target,
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
    /// How long one shrink may take, replays of the reproducer included.
    pub shrink_budget: Duration,
    /// Start no new run once this many findings of distinct signatures are in.
    pub max_findings: Option<usize>,
    /// Write `report.json` here as runs finish (and at the end).
    pub out: Option<PathBuf>,
}

impl Settings {
    /// Settings with the defaults of the command line.
    pub fn new(pool: Target, seed: u64, knobs: Knobs, failures_dir: PathBuf) -> Settings {
        Settings {
            pool,
            seed,
            knobs,
            runs: Some(100),
            duration: None,
            partition: None,
            jobs: 2,
            failures_dir,
            shrink: true,
            shrink_budget: shrink::BUDGET_TIME,
            max_findings: None,
            out: None,
        }
    }
}

/// Judges one run: the oracle's expectation, and a finding if any: the
/// checker's safety findings first, then a verdict that is not the oracle's.
pub fn judge(
    pool: &Target,
    plan: &Plan,
    events: &[Logged],
    judgement: &Judgement,
) -> (Expectation, Option<FindingKind>) {
    let expectation = oracle::expect(pool, plan, events);
    let finding = match expectation.allows(judgement.verdict) {
        _ if !judgement.findings.is_empty() => {
            Some(FindingKind::Safety { verdict: judgement.verdict, what: judgement.findings.join("; ") })
        }
        Some(false) => Some(FindingKind::Oracle { verdict: judgement.verdict, allowed: expectation.verdicts() }),
        _ => None,
    };
    (expectation, finding)
}

/// Runs a scenario once for `pool`, judged: the record, the expectation and any finding.
pub fn run_once(
    scenario: &Scenario,
    pool: &Target,
    ctx: &RunContext,
    run_id: &str,
) -> anyhow::Result<(RunRecord, Expectation, Option<FindingKind>)> {
    run_logged(scenario, pool, ctx, run_id).map(|(record, expectation, finding, _)| (record, expectation, finding))
}

/// [`run_once`], with the run's event log.
type RunLogged = (RunRecord, Expectation, Option<FindingKind>, Vec<Logged>);

fn run_logged(scenario: &Scenario, pool: &Target, ctx: &RunContext, run_id: &str) -> anyhow::Result<RunLogged> {
    let plan = Plan::new(scenario, pool.clone(), scenario.seed.unwrap_or(0));
    let result = runner::run(&plan, ctx, run_id)?;
    let (expectation, finding) = judge(pool, &plan, &result.events, &result.judgement);
    let mut record = result.record;
    // The verdict itself where the oracle allows it, else the first it allows.
    let allowed = expectation.verdicts();
    record.expected = allowed.iter().find(|&&v| v == record.verdict).or(allowed.first()).copied();
    Ok((record, expectation, finding, result.events))
}

/// What a campaign has so far, shared by its threads.
struct Progress {
    runs: Vec<CampaignRun>,
    findings: Vec<Finding>,
    undetermined: usize,
    /// When `report.json` was last written.
    written: Option<Instant>,
    /// The runs a stop cut short.
    cut: Vec<u64>,
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
    let mut taken = 0u64;
    let progress = Mutex::new(Progress {
        runs: Vec::new(),
        findings: Vec::new(),
        undetermined: 0,
        written: None,
        cut: Vec::new(),
    });
    let campaign = Campaign { settings, ctx, progress, started };
    let enough = || {
        settings
            .max_findings
            .is_some_and(|m| campaign.lock().findings.iter().filter(|f| f.same_as.is_none()).count() >= m)
    };
    let next = || -> Option<u64> {
        if enough() || limit.is_some_and(|l| taken >= l) || settings.duration.is_some_and(|d| started.elapsed() >= d) {
            return None;
        }
        taken += 1;
        indices.next()
    };
    ctx.session.execute(settings.jobs, next, |index| campaign.one_run(index, tick))?;
    let p = campaign.lock();
    let done = limit.is_none_or(|l| p.runs.len() as u64 >= l);
    let report =
        campaign.report(&p, (!done && settings.duration.is_none()) || ctx.session.stop().requested().is_some());
    if let Some(dir) = &settings.out {
        write_report(dir, &report)?;
    }
    Ok(report)
}

/// A campaign as it runs: what its runs share.
struct Campaign<'a> {
    settings: &'a Settings,
    ctx: &'a RunContext,
    progress: Mutex<Progress>,
    started: Instant,
}

impl Campaign<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `index`: its plan run and judged, recorded, and its finding if any;
    /// `report.json` rewritten at most once a second.
    fn one_run(&self, index: u64, tick: &(dyn Fn(&CampaignRun) + Sync)) -> anyhow::Result<()> {
        let settings = self.settings;
        let scenario = generate(&settings.knobs, &settings.pool, settings.seed, index);
        let (record, expectation, finding) = match run_once(&scenario, &settings.pool, self.ctx, &format!("c{index}")) {
            Err(e) if crate::run::interrupt::Interrupted::of(&e).is_some() => {
                self.lock().cut.push(index);
                return Ok(());
            }
            result => result?,
        };
        let run = CampaignRun { index, verdict: record.verdict, expected: expectation.to_string(), record };
        tick(&run);
        {
            let mut p = self.lock();
            p.undetermined += usize::from(matches!(expectation, Expectation::Undetermined(_)));
            p.runs.push(run);
        }
        if let Some(kind) = finding {
            self.add_finding(&scenario, index, kind);
        }
        if let Some(dir) = &settings.out {
            let mut p = self.lock();
            if p.written.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                // Best effort while running: the final write reports its error.
                let _ = write_report(dir, &self.report(&p, true));
                p.written = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// The finding of run `index`: the first of a signature is shrunk; a repeat only names it.
    fn add_finding(&self, scenario: &Scenario, index: u64, kind: FindingKind) {
        let settings = self.settings;
        let signature = kind.signature();
        let first = {
            let mut p = self.lock();
            // The first of the signature, never a repeat of it (a first one is
            // re-pushed once shrunk, after the repeats found meanwhile).
            let first = p.findings.iter().find(|f| f.signature == signature && f.same_as.is_none()).map(|f| f.run);
            if first.is_none() {
                // Claimed at once, so a concurrent repeat does not shrink it too.
                p.findings.push(Finding {
                    run: index,
                    seed: settings.seed,
                    kind: kind.clone(),
                    signature: signature.clone(),
                    same_as: None,
                    faults_before: shrink::fault_count(scenario),
                    faults_after: shrink::fault_count(scenario),
                    replays_failed: None,
                    reproducer: None,
                });
            }
            first
        };
        let finding = match first {
            Some(run) => Finding {
                run: index,
                seed: settings.seed,
                signature,
                same_as: Some(run),
                faults_before: shrink::fault_count(scenario),
                faults_after: shrink::fault_count(scenario),
                replays_failed: None,
                reproducer: None,
                kind,
            },
            None => report_finding(settings, self.ctx, scenario, index, kind),
        };
        let mut p = self.lock();
        p.findings.retain(|f| f.run != index);
        p.findings.push(finding);
    }

    /// The campaign's report from what it has so far.
    fn report(&self, p: &Progress, partial: bool) -> CampaignReport {
        let settings = self.settings;
        let mut runs = p.runs.clone();
        runs.sort_by_key(|r| r.index);
        let mut findings = p.findings.clone();
        findings.sort_by_key(|f| f.run);
        CampaignReport {
            pool: settings.pool.to_string(),
            seed: settings.seed,
            knobs: settings.knobs.clone(),
            partition: settings.partition.map(|(k, n)| format!("{k}/{n}")),
            runs,
            findings,
            undetermined: p.undetermined,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            partial,
            interrupted: self.ctx.session.stop().requested().map(|signal| crate::run::interrupt::Interruption {
                signal,
                runs: p.cut.iter().map(|i| format!("run {i}")).collect(),
                not_started: settings
                    .runs
                    .map_or(0, |l| l.saturating_sub((p.runs.len() + p.cut.len()) as u64) as usize),
            }),
        }
    }
}

/// Writes `report.json` into `dir` whole (a temp file renamed over it), so a
/// reader never sees half a report.
pub fn write_report(dir: &Path, report: &CampaignReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".report.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(report)?)?;
    std::fs::rename(&tmp, dir.join("report.json"))?;
    Ok(())
}

/// Replays of the shrunk reproducer, to say how often it fails.
const REPLAYS: usize = 3;

/// Shrinks a failing plan (within the shrink budget), replays the result,
/// and saves the reproducer, expecting what the oracle says of the *shrunk*
/// plan.
fn report_finding(
    settings: &Settings,
    ctx: &RunContext,
    scenario: &Scenario,
    index: u64,
    kind: FindingKind,
) -> Finding {
    let faults_before = shrink::fault_count(scenario);
    let start = Instant::now();
    let deadline = start + settings.shrink_budget;
    // The replays' time (each at most the run's deadline) is kept out of the shrink's.
    let replays_time = Duration::from_millis(scenario.deadline_ms).saturating_mul(REPLAYS as u32);
    let shrink_deadline = (deadline.checked_sub(replays_time)).unwrap_or(start).max(start + settings.shrink_budget / 2);
    let same = |candidate: &Scenario| match run_once(candidate, &settings.pool, ctx, &format!("s{index}")) {
        Ok((_, _, Some(k))) => kind.shown_by(&k),
        _ => false,
    };
    let small = if settings.shrink { shrink::shrink(scenario, shrink_deadline, &same) } else { scenario.clone() };
    // Replays: how often the shrunk plan breaks the same rule, what broke
    // there (its tasks by their new numbers), and what the oracle allows of it.
    let (mut failed, mut replayed) = (0, 0);
    let (mut expected, mut shrunk_kind) = (None, None);
    // The event log of the first replay that failed the same way: the reproducer's timeline.
    let mut shown = None;
    for replay in 0..REPLAYS {
        if replay > 0 && Instant::now() > deadline {
            break;
        }
        if let Ok((record, _, finding, events)) = run_logged(&small, &settings.pool, ctx, &format!("r{index}")) {
            replayed += 1;
            if let Some(k) = finding.filter(|k| kind.shown_by(k)) {
                failed += 1;
                shrunk_kind.get_or_insert(k);
                shown = shown.or(Some(events));
            }
            expected = expected.or(record.expected);
        }
    }
    let replays = if settings.shrink { (failed, replayed) } else { (0, 0) };
    let expected = expected.unwrap_or(match &kind {
        FindingKind::Oracle { allowed, .. } => allowed.first().copied().unwrap_or(Verdict::Completed),
        FindingKind::Safety { .. } => Verdict::Completed,
    });
    let shrunk = Shrunk { kind: shrunk_kind.as_ref(), expected, replays };
    let reproducer = save_reproducer(&settings.failures_dir, &small, settings, index, &kind, &shrunk).ok();
    if let (Some(path), Some(events)) = (&reproducer, shown) {
        let plan = Plan::new(&small, settings.pool.clone(), small.seed.unwrap_or(0));
        if let Ok(svg) = crate::report::timeline::svg(&events, &crate::report::timeline::Context::of(&plan)) {
            let _ = std::fs::write(path.with_extension("timeline.svg"), svg);
        }
    }
    Finding {
        run: index,
        seed: settings.seed,
        signature: kind.signature(),
        same_as: None,
        kind,
        faults_before,
        faults_after: shrink::fault_count(&small),
        replays_failed: settings.shrink.then_some(replays),
        reproducer: reproducer.map(|p| p.display().to_string()),
    }
}

/// What the replays of a shrunk plan showed.
struct Shrunk<'a> {
    /// The finding of the first replay that broke the same rule.
    kind: Option<&'a FindingKind>,
    /// What the pool should do with the shrunk plan, by its oracle.
    expected: Verdict,
    /// How many replays broke the same rule, of how many.
    replays: (usize, usize),
}

fn save_reproducer(
    dir: &Path,
    scenario: &Scenario,
    settings: &Settings,
    index: u64,
    kind: &FindingKind,
    shrunk: &Shrunk,
) -> std::io::Result<PathBuf> {
    let (expected, (failed, replays)) = (shrunk.expected, shrunk.replays);
    let (pool, seed) = (&settings.pool, settings.seed);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{pool}-seed{seed}-run{index}.toml"));
    let mut repro = scenario.clone();
    // What the pool should do with this plan, by its oracle: replaying the file shows it does not.
    repro.expect = vec![(pool.clone(), expected)];
    repro.description =
        format!("Shrunk reproducer of campaign seed {seed}, run {index}, against {pool}: {}", kind.signature());
    let plan = Plan::new(&repro, pool.clone(), repro.seed.unwrap_or(0));
    let mut header = vec![
        format!("Found by: poolchaos campaign --pool {pool} --seed {seed} (run {index})"),
        format!("Finding: {}", kind.signature()),
    ];
    match (shrunk.kind, kind) {
        (Some(FindingKind::Safety { what, .. }), _) => header.push(format!("What broke (this plan's tasks): {what}")),
        (_, FindingKind::Safety { what, .. }) => {
            header.push(format!("What broke in the original run (its tasks' numbers): {what}"))
        }
        _ => {}
    }
    if replays > 0 {
        header.push(format!("The shrunk plan failed the same way in {failed} of {replays} replays."));
    }
    header.push(format!("Faults ({}):", shrink::fault_count(&repro)));
    header.extend(plan.faults().iter().map(|f| format!("  {}: {}", f.kind, f.at)));
    header.push(format!("Replay: poolchaos run {}", path.display()));
    std::fs::write(&path, repro.to_toml(&header))?;
    Ok(path)
}
