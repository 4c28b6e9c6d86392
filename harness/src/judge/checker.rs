//! The checker: a run's event log, plus what the sandbox saw at the end, in;
//! a [`Judgement`] out: the verdict, what each task got and whether a fault
//! touched it, the counts, and the safety findings. This is the one place a
//! verdict is decided; `run`, `campaign`, `bench` and the oracles read the
//! judgement.
//!
//! Safety is judged per task: exactly one outcome, and an `ok` result must be
//! the task's own (the owner checks the bytes against the task). An error
//! must name its fault (the task's own error, a lost or timed-out worker with
//! how it ended and, when the sandbox counted an OOM kill as its exit was
//! seen, the OOM mark, the pool breaking on a dead worker, or on a fault the
//! plan places in the parent, where no worker died); `Terminated` names none,
//! unless the plan ends the pool by `terminate` (a `terminate` fault).
//! A failed task must be one a fault touched (it carries a fault, allocates
//! past the memory limit, was struck from outside, its worker died under
//! it, or it got no process under the `spawn` point's limit), unless the pool fails bystanders by design ([`oracle::design`]).
//! Where the pool reports callbacks ([`oracle::design`]), an `apply_async`
//! task gets exactly one (the error callback iff it failed) and a `map_async`
//! batch exactly one in all.
//! Attempts are held against the plan's `max_attempts`: no task starts an
//! attempt past them, no error reports more. A pool that replaces every
//! dead worker (supervised) must not hang with fewer live workers than its
//! plan (the trace's `up` lines and the exits).
//! Liveness is the deadline: a run whose owner did not finish by then is hung,
//! and the diagnosis names each pending task, the worker it was on and how
//! that worker ended, and each worker that died outside a task (before a
//! `start` line: at `init`, `transport`, `decode`) and how. A run that
//! missed a bound of the scenario's own is hung too: an outcome past a time
//! bound of `[expect]`, or the pool's join past `join_timeout_ms` (the pool's
//! hang made visible by its own timeout). A `cancelled` task is the plan's
//! only where the plan cancels it.
//!
//! [`judge`] gathers the log's facts once, then applies the rules one by one
//! (each a function); [`decide`] alone turns what they came to into the
//! verdict. Several verdicts can hold at once (a hung run has tasks without
//! outcome): a run in which nothing ran is `not-applicable` or `skipped`,
//! whatever else holds; otherwise the worst that holds in [`Verdict`]'s order
//! names the run. Three rules decide what is
//! not counted: a skipped run ran nothing, and the plan killing the owner,
//! or the OOM killer taking it unplanned (`owner-oom`), takes its pending
//! tasks with it; what the deadline's teardown leaves behind is the
//! teardown's, not a leak of the pool.

use std::collections::{BTreeMap, HashMap, HashSet};

use pools::CallStyle;

use crate::judge::oracle;
use crate::judge::verdict::{ExitRecord, Leak, RunRecord, TaskCounts, Verdict};
use crate::protocol::{self, CallbackKind, ErrorKind, ErrorName, Event, OomMark, OutcomeRecord};
use crate::run::events::Logged;
use crate::run::sandbox::Mechanism;
use crate::scenario::plan::Plan;
use crate::target::Target;

/// What the runner saw besides the events.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// The deadline passed before the owner finished.
    pub deadline_passed: bool,
    /// The plan killed the owner (and it died).
    pub owner_killed_by_plan: bool,
    /// The OOM killer killed the owner (SIGKILLed, not by the nemesis, as the
    /// sandbox counted an OOM kill no worker's exit accounts for).
    pub owner_oom: bool,
    /// What outlived the run.
    pub leaks: Vec<Leak>,
    pub oom_kills: u64,
    /// The sandbox's mechanism (whether an OOM kill is the kernel's).
    pub mechanism: Option<Mechanism>,
    pub elapsed_ms: u64,
    /// The end of what the owner and its workers wrote to stderr.
    pub stderr_tail: String,
}

/// What one task of the plan got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Exactly one outcome, its correct result.
    Ok,
    /// Exactly one outcome, an error: its name in reports (`worker-lost(sigkill)`) and kind.
    Failed(ErrorName),
    /// No outcome.
    Pending,
    /// More than one outcome.
    Duplicated,
    /// A result that is not the task's.
    Wrong,
}

/// One task of the plan, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFate {
    pub fate: Fate,
    /// A fault touched it: its own, an OOM allocation, a strike, or its worker's death under it.
    pub touched: bool,
}

/// A run, judged.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Per task of the plan, in order.
    pub tasks: Vec<TaskFate>,
    pub counts: TaskCounts,
    /// Error names (`worker-lost(sigkill, oom)`, `timed-out`, ...) and how many tasks got each.
    pub errors: BTreeMap<ErrorName, usize>,
    /// The safety invariants the run broke, in words (empty: none).
    pub findings: Vec<String>,
    pub diagnosis: Vec<String>,
    pub worker_exits: Vec<ExitRecord>,
}

impl Judgement {
    /// The report's record of the run (no expectation yet).
    pub fn record(&self, plan: &Plan, ending: &Ending) -> RunRecord {
        RunRecord {
            scenario: plan.scenario.clone(),
            pool: plan.pool.clone(),
            style: plan.style,
            verdict: self.verdict,
            expected: None,
            tasks: self.counts.clone(),
            errors: self.errors.clone(),
            faults: plan.faults(),
            worker_exits: self.worker_exits.clone(),
            oom_kills: ending.oom_kills,
            mechanism: ending.mechanism.clone(),
            leaks: ending.leaks.clone(),
            findings: self.findings.clone(),
            diagnosis: self.diagnosis.clone(),
            elapsed_ms: ending.elapsed_ms,
            events: None,
            peer: None,
            repeat: None,
        }
    }
}

/// Judges a run: gathers its facts from the log once ([`RunFacts`]), then
/// applies the rules in turn. Each rule reads the facts and returns its
/// findings (safety broken) or protocol breaks; [`Holds`] collects what they
/// came to, and [`decide`] alone turns that into the verdict.
pub fn judge(plan: &Plan, events: &[Logged], ending: &Ending) -> Judgement {
    let facts = RunFacts::gather(plan, events, ending);
    // The rules, in the order their findings are reported.
    let Tasks { fates: tasks, counts, errors, mut findings } = task_fates(&facts);
    findings.extend(misnamed_raises(plan, &facts.outcomes));
    findings.extend(unfinished(&facts, &counts));
    findings.extend(attempts_and_workers(&facts));
    let broken = protocol_breaks(&facts);
    let late = [late(plan, events), join_timed_out(plan, events)].concat();
    // What outlived a run that ended by itself (a hung run's leftovers are the teardown's).
    let leaked = !facts.ending.leaks.is_empty() && !facts.ending.deadline_passed;
    let holds = Holds::of(&facts, &counts, &findings, &broken, leaked, !late.is_empty());
    let verdict = decide(&holds);
    // The safety findings end here; the leak, if any, comes after them.
    let safety_findings = findings.len();
    if leaked {
        let leaks: Vec<String> = facts.ending.leaks.iter().map(Leak::to_string).collect();
        findings.push(format!("leaked: {}", leaks.join("; ")));
    }
    // The bounds decided the verdict only where nothing else made the run hung or worse.
    let late = if verdict == Verdict::Hung && !facts.ending.deadline_passed { late } else { Vec::new() };
    let mut diagnosis = late;
    diagnosis.extend(nothing_ran_line(&facts));
    diagnosis.extend(protocol_lines(plan, broken));
    diagnosis.extend(owner_lines(&facts));
    if matches!(verdict, Verdict::Hung | Verdict::Lost | Verdict::OwnerOom) {
        diagnosis.extend(pending(plan, events, &facts.outcomes));
        diagnosis.extend(findings[..safety_findings].iter().take(10).cloned());
    }
    diagnosis.extend(oom_line(&facts.ending));
    Judgement { verdict, tasks, counts, errors, findings, diagnosis, worker_exits: facts.worker_exits }
}

/// What the rules read: the plan, the event log gathered once (per task of
/// the plan, and per kind of event), and the runner's ending.
struct RunFacts<'a> {
    plan: &'a Plan,
    events: &'a [Logged],
    /// The runner's ending, with an owner killed by a deadly fault the plan
    /// places in the parent counted as killed by the plan.
    ending: Ending,
    /// Per task of the plan: its outcomes, and the duplicates the owner saw.
    outcomes: Vec<Vec<&'a OutcomeRecord>>,
    duplicates: Vec<usize>,
    /// Per task of the plan: a fault touched it ([`touched`]).
    touched: Vec<bool>,
    worker_exits: Vec<ExitRecord>,
    owner_error: Option<String>,
    /// How the owner ended, if it did: its signal, its exit code.
    owner_exit: Option<(Option<i32>, Option<i32>)>,
    callbacks: BTreeMap<CallbackKind, usize>,
    /// What the target did in its log that the protocol does not allow.
    log_breaks: Vec<String>,
    ready: bool,
    finished: bool,
    /// The processes the OOM killer (or the RSS watchdog) took.
    oom: HashMap<u32, OomMark>,
    /// The plan ends the pool by `terminate`.
    terminates: bool,
    design: oracle::Design,
    /// Why nothing ran (a `skipped` or a `not-applicable` event), if nothing did.
    skipped: Option<String>,
    /// The plan's fault stage the target lacks (`not applicable: ...`), if any.
    not_applicable: Option<String>,
}

impl<'a> RunFacts<'a> {
    fn gather(plan: &'a Plan, events: &'a [Logged], ending: &Ending) -> Self {
        let n = plan.tasks.len();
        let mut f = RunFacts {
            plan,
            events,
            ending: ending.clone(),
            outcomes: vec![Vec::new(); n],
            duplicates: vec![0; n],
            touched: Vec::new(),
            worker_exits: Vec::new(),
            owner_error: None,
            owner_exit: None,
            callbacks: BTreeMap::new(),
            log_breaks: Vec::new(),
            ready: false,
            finished: false,
            oom: HashMap::new(),
            terminates: plan.tasks.iter().filter_map(|t| t.fault).any(|f| f.point == pools::FaultPoint::Terminate),
            design: oracle::design(&plan.pool),
            skipped: None,
            not_applicable: None,
        };
        for logged in events {
            f.note(&logged.event);
        }
        f.touched = touched(plan, events, &f.outcomes);
        // Nothing ran: judged like a skipped run, but a verdict of its own.
        f.skipped = f.skipped.take().or(f.not_applicable.clone());
        // A deadly fault the plan places in the parent (while it encodes a task,
        // decodes a result, or runs a callback) kills the owner by plan too.
        f.ending.owner_killed_by_plan |= f.owner_died() && plan.kills_owner();
        f
    }

    /// Takes one event of the log into the facts.
    fn note(&mut self, event: &'a Event) {
        let n = self.outcomes.len();
        match event {
            Event::Outcome { index, result } if *index < n => self.outcomes[*index].push(result),
            Event::Duplicate { index } if *index < n => self.duplicates[*index] += 1,
            Event::Outcome { index, .. } | Event::Duplicate { index } => {
                self.log_breaks.push(format!("it reported an outcome for task {index}; the plan's tasks are 0..{n}"));
            }
            Event::Malformed { line, error } => {
                self.log_breaks.push(format!("it wrote a line that is not an event ({error}): {line:?}"));
            }
            Event::Ready { .. } => self.ready = true,
            Event::Finished => self.finished = true,
            Event::WorkerExit { pid, signal, code } => {
                self.worker_exits.push(ExitRecord { pid: *pid, signal: *signal, code: *code });
            }
            Event::Callback { kind } => *self.callbacks.entry(*kind).or_default() += 1,
            Event::OwnerError { message } => self.owner_error = Some(message.clone()),
            Event::OomKill { pid, simulated } => {
                self.oom.insert(*pid, if *simulated { OomMark::Simulated } else { OomMark::Kernel });
            }
            Event::Skipped { reason } if self.skipped.is_none() => self.skipped = Some(reason.clone()),
            Event::NotApplicable { point, reason } if self.not_applicable.is_none() => {
                self.not_applicable = Some(format!("not applicable: `{point}`: {reason}"));
            }
            Event::OwnerExit { signal, code } if self.owner_exit.is_none() => self.owner_exit = Some((*signal, *code)),
            _ => {}
        }
    }

    /// The owner died: by a signal or a non-zero exit code.
    fn owner_died(&self) -> bool {
        matches!(self.owner_exit, Some((Some(_), _)) | Some((None, Some(1..))))
    }

    /// The owner died, and not by the plan.
    fn owner_crashed(&self) -> bool {
        self.owner_died() && !self.ending.owner_killed_by_plan
    }

    /// The plan (or the OOM killer, unplanned) took the owner, and its pending tasks with it.
    fn owner_taken(&self) -> bool {
        self.ending.owner_killed_by_plan || self.ending.owner_oom
    }
}

/// What [`task_fates`] found: each task's fate, the counts, the error names
/// and the safety findings.
struct Tasks {
    fates: Vec<TaskFate>,
    counts: TaskCounts,
    errors: BTreeMap<ErrorName, usize>,
    findings: Vec<String>,
}

/// Rule: each task gets exactly one outcome, its own result or an error
/// ([`failure_findings`]).
fn task_fates(f: &RunFacts) -> Tasks {
    let n = f.plan.tasks.len();
    let mut t = Tasks {
        fates: Vec::with_capacity(n),
        counts: TaskCounts { total: n, ..TaskCounts::default() },
        errors: BTreeMap::new(),
        findings: Vec::new(),
    };
    for (index, (got, &extra)) in f.outcomes.iter().zip(&f.duplicates).enumerate() {
        let fate = match got.as_slice() {
            _ if extra > 0 => Fate::Duplicated,
            [] => Fate::Pending,
            [OutcomeRecord::Ok] => Fate::Ok,
            [OutcomeRecord::Wrong] => Fate::Wrong,
            [OutcomeRecord::Error { kind, pid, signal, code, .. }] => {
                let oom = pid.and_then(|pid| f.oom.get(&pid).copied());
                Fate::Failed(ErrorName::new(*kind, *signal, *code, oom))
            }
            _ => Fate::Duplicated,
        };
        match &fate {
            Fate::Ok => t.counts.ok += 1,
            Fate::Pending => t.counts.lost += 1,
            Fate::Wrong => {
                t.counts.wrong += 1;
                t.findings.push(format!("task {index} got a result that is not its own"));
            }
            Fate::Duplicated => {
                t.counts.duplicated += 1;
                t.findings.push(format!("task {index} got {} outcomes", got.len().max(1) + extra));
            }
            Fate::Failed(name) => {
                t.counts.failed += 1;
                *t.errors.entry(*name).or_default() += 1;
                t.findings.extend(failure_findings(f, index, name, &mut t.counts));
            }
        }
        t.fates.push(TaskFate { fate, touched: f.touched[index] });
    }
    t
}

/// Rule: a failed task's error names its fault, and a fault touched the
/// task (a failed task no fault touched is a bystander, counted; a finding
/// unless the pool fails bystanders by design). A plan that ends the pool
/// by `terminate` fails what is pending as `terminated`; one that cancels a
/// task may fail it as `cancelled`.
fn failure_findings(f: &RunFacts, index: usize, name: &ErrorName, counts: &mut TaskCounts) -> Vec<String> {
    let kind = name.kind;
    let mut findings = Vec::new();
    let [OutcomeRecord::Error { signal, code, .. }] = f.outcomes[index].as_slice() else { unreachable!() };
    let no_exit = kind.names_an_exit() && signal.is_none() && code.is_none();
    // A plan that ends the pool by `terminate` fails what is pending so, and one that cancels a task, it.
    let by_plan = (kind == ErrorKind::Terminated && f.terminates) || cancelled_by_plan(f.plan, index, kind);
    if (!kind.names_a_fault() && !by_plan) || (no_exit && f.plan.parent_faults().next().is_none()) {
        findings.push(format!("task {index} failed with error {name}, which names no fault"));
    }
    if !f.touched[index] && !by_plan {
        counts.bystanders += 1;
        if !f.design.fails_bystanders {
            findings.push(format!("task {index} failed with error {name}, but no fault touched it"));
        }
    }
    findings
}

/// Rule: a run that neither hung nor lost its owner (to the plan, or to
/// the OOM killer: either takes the pending tasks with it) left no task
/// without an outcome; and where the pool reports callbacks, they match the
/// outcomes (a job a `terminate` leaves pending, CPython's, never calls back).
fn unfinished(f: &RunFacts, counts: &TaskCounts) -> Vec<String> {
    if f.ending.deadline_passed || f.owner_taken() || f.skipped.is_some() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    if counts.lost > 0 {
        findings.push(format!("{} task(s) got no outcome, and the run did not hang", counts.lost));
    }
    if f.finished && f.design.callbacks && !f.terminates {
        findings.extend(callback_findings(f.plan.style, counts, &f.callbacks));
    }
    findings
}

/// Rules: attempts within `max_attempts` ([`attempt_findings`]), and a hung
/// pool that replaces its dead workers not short of them
/// ([`short_of_workers`]); not where the plan took the owner.
fn attempts_and_workers(f: &RunFacts) -> Vec<String> {
    if f.skipped.is_some() || f.ending.owner_killed_by_plan {
        return Vec::new();
    }
    let mut findings = attempt_findings(f.plan, f.events, &f.outcomes);
    findings.extend(short_of_workers(f.plan, f.events, &f.outcomes, &f.ending));
    findings
}

/// Rule: the target kept the owner protocol: its log's lines are events for
/// the plan's tasks ([`RunFacts::note`]), and an owner that ended by itself
/// reported `ready` first and, exiting 0, `finished`.
fn protocol_breaks(f: &RunFacts) -> Vec<String> {
    let mut broken = f.log_breaks.clone();
    if let Some((signal, code)) = f.owner_exit
        && f.skipped.is_none()
        && !f.owner_taken()
    {
        let how = exit_text(signal, code);
        if !f.ready {
            broken.push(format!("it {how} before it reported `ready`: it never started its pool"));
        } else if code == Some(0) && !f.finished {
            broken.push(format!("it {how} without reporting `finished`"));
        }
    }
    broken
}

/// What the rules came to: each field is the condition of one verdict.
#[derive(Debug, Default, Clone, Copy)]
struct Holds {
    /// The target lacks the plan's fault stage (a `not-applicable` event): nothing ran.
    not_applicable: bool,
    /// The target could not run here (a `skipped` event): nothing ran.
    skipped: bool,
    /// The target broke the owner protocol ([`protocol_breaks`]).
    target_error: bool,
    /// What outlived a run that ended by itself.
    leaked: bool,
    /// The deadline passed, or an outcome missed the scenario's time bounds ([`late`]).
    hung: bool,
    /// A safety finding, the owner's own error, or a task without an outcome
    /// where the owner was not taken (by the plan or the OOM killer).
    lost: bool,
    /// The OOM killer took the owner, which the plan did not kill.
    owner_oom: bool,
    /// The plan killed the owner.
    owner_killed: bool,
    /// A task failed, and the plan did not kill the owner.
    failed_loudly: bool,
}

impl Holds {
    fn of(f: &RunFacts, counts: &TaskCounts, findings: &[String], broken: &[String], leaked: bool, late: bool) -> Self {
        let e = &f.ending;
        let by_plan = e.owner_killed_by_plan;
        Holds {
            not_applicable: f.not_applicable.is_some(),
            skipped: f.skipped.is_some(),
            target_error: !broken.is_empty(),
            leaked,
            hung: e.deadline_passed || late,
            lost: !by_plan && (!findings.is_empty() || f.owner_error.is_some() || (counts.lost > 0 && !e.owner_oom)),
            owner_oom: e.owner_oom && !by_plan,
            owner_killed: by_plan,
            failed_loudly: !by_plan && counts.failed > 0,
        }
    }
}

/// The verdict, decided here and nowhere else. A run in which nothing ran is
/// `not-applicable` (the target lacks the plan's fault stage) or else
/// `skipped`, whatever else holds. Otherwise the run gets the worst verdict
/// that holds in [`Verdict`]'s order: `target-error` > `leaked` > `hung` >
/// `lost` > `owner-oom` > `owner-killed` > `failed-loudly` > `completed`.
fn decide(h: &Holds) -> Verdict {
    if h.not_applicable {
        return Verdict::NotApplicable;
    }
    if h.skipped {
        return Verdict::Skipped;
    }
    let candidates = [
        (h.target_error, Verdict::TargetError),
        (h.leaked, Verdict::Leaked),
        (h.hung, Verdict::Hung),
        (h.lost, Verdict::Lost),
        (h.owner_oom, Verdict::OwnerOom),
        (h.owner_killed, Verdict::OwnerKilled),
        (h.failed_loudly, Verdict::FailedLoudly),
    ];
    candidates.into_iter().filter(|(holds, _)| *holds).map(|(_, v)| v).max().unwrap_or(Verdict::Completed)
}

/// Why nothing ran, if nothing did.
fn nothing_ran_line(f: &RunFacts) -> Option<String> {
    match (&f.not_applicable, &f.skipped) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(reason)) => Some(format!("skipped: {reason}")),
        (None, None) => None,
    }
}

/// The protocol breaks (the first five), each naming the target.
fn protocol_lines(plan: &Plan, mut broken: Vec<String>) -> Vec<String> {
    broken.truncate(5);
    let target = match &plan.pool {
        Target::Command(words) => format!("`{}`", words.join(" ")),
        other => other.name(),
    };
    broken.into_iter().map(|b| format!("target {target} broke the owner protocol: {b}")).collect()
}

/// How the owner failed, if not by the plan: its own error, the OOM killer,
/// or an early death; then the end of its stderr.
fn owner_lines(f: &RunFacts) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(message) = &f.owner_error {
        lines.push(format!("the owner failed: {message}"));
    } else if f.ending.owner_oom && !f.ending.owner_killed_by_plan {
        lines.push(owner_oom_text(f.plan, f.events, &f.ending));
    } else if f.owner_crashed()
        && let Some((signal, code)) = f.owner_exit
    {
        lines.push(format!("the owner ended early: it {}", exit_text(signal, code)));
    }
    if (f.owner_error.is_some() || f.owner_crashed()) && !f.ending.stderr_tail.is_empty() {
        lines.push(format!("its stderr ended with: {}", f.ending.stderr_tail));
    }
    lines
}

/// The OOM kills the run counted, and whose they were.
fn oom_line(ending: &Ending) -> Option<String> {
    match &ending.mechanism {
        _ if ending.oom_kills == 0 => None,
        Some(m) if m.simulated_oom() => Some(format!(
            "the RSS watchdog SIGKILLed {} process(es) over the memory limit: a simulated OOM, not the kernel's ({m})",
            ending.oom_kills
        )),
        _ => Some(format!("the run's memory cgroup counted {} OOM kill(s)", ending.oom_kills)),
    }
}

/// The tasks a fault touched: those that carry one or allocate past the
/// memory limit, those aimed at from outside, those that ran on a worker that
/// was struck or died abnormally (from the trace; the order in which the
/// harness read the trace and the strikes is not trusted), and those whose
/// error names a worker that was struck or died by a signal or an exit code
/// (a storm that kills a fork server kills its children unseen), if the task
/// ran on that worker or never ran at all. A copy of another task's error
/// names a worker the task never ran on: it does not count. Under the
/// `spawn` point's limit, a task that got no process (`spawn-failed`) was
/// touched by it.
fn touched(plan: &Plan, events: &[Logged], outcomes: &[Vec<&OutcomeRecord>]) -> Vec<bool> {
    let mut touched: Vec<bool> = plan.tasks.iter().map(|t| t.fault.is_some() || plan.is_oom(t)).collect();
    for n in &plan.nemesis {
        if let crate::scenario::Aim::Task(i) = n.target
            && i < touched.len()
        {
            touched[i] = true;
        }
    }
    let mut hit: HashSet<u32> = HashSet::new();
    let mut ran_on: HashMap<u64, HashSet<u32>> = HashMap::new();
    for logged in events {
        match logged.event {
            Event::TaskStarted { tag, pid, .. } => {
                ran_on.entry(tag).or_default().insert(pid);
            }
            Event::Nemesis { pid, .. } => {
                hit.insert(pid);
            }
            Event::WorkerExit { pid, signal, code } if signal.is_some() || code.is_some_and(|c| c != 0) => {
                hit.insert(pid);
            }
            _ => {}
        }
    }
    let limited = plan.limits_spawns();
    for (i, task) in plan.tasks.iter().enumerate() {
        // The `spawn` point's limit touches every task that could get no process.
        touched[i] |= limited
            && outcomes[i].iter().any(|o| matches!(o, OutcomeRecord::Error { kind: ErrorKind::SpawnFailed, .. }));
        let ran = ran_on.get(&task.tag);
        let error_pid = outcomes[i].iter().find_map(|o| match o {
            OutcomeRecord::Error { pid: Some(pid), signal, code, .. } => {
                Some((*pid, signal.is_some() || code.is_some_and(|c| c != 0)))
            }
            _ => None,
        });
        touched[i] |= ran.is_some_and(|pids| pids.iter().any(|p| hit.contains(p)))
            || error_pid
                .is_some_and(|(p, died)| (died || hit.contains(&p)) && ran.is_none_or(|pids| pids.contains(&p)));
    }
    touched
}

/// Attempts against the plan's `max_attempts`: no task starts an attempt
/// past them (the trace's attempt numbers count from 0), and no error
/// reports more.
fn attempt_findings(plan: &Plan, events: &[Logged], outcomes: &[Vec<&OutcomeRecord>]) -> Vec<String> {
    let max = plan.max_attempts;
    let index: HashMap<u64, usize> = plan.tasks.iter().enumerate().map(|(i, t)| (t.tag, i)).collect();
    let mut past: BTreeMap<usize, u32> = BTreeMap::new();
    for l in events {
        if let Event::TaskStarted { tag, attempt, .. } = l.event
            && attempt >= max
            && let Some(&i) = index.get(&tag)
        {
            let most = past.entry(i).or_default();
            *most = (*most).max(attempt + 1);
        }
    }
    let mut out: Vec<String> = past
        .into_iter()
        .map(|(i, n)| format!("task {i} ran attempt {n}, where the plan allows {max} (max_attempts)"))
        .collect();
    for (i, got) in outcomes.iter().enumerate() {
        for o in got {
            if let OutcomeRecord::Error { attempts: Some(n), .. } = o
                && *n > max
            {
                out.push(format!("task {i} failed after {n} attempts, where the plan allows {max} (max_attempts)"));
            }
        }
    }
    out
}

/// The pool's worker count against its plan, for the pools that replace
/// every dead worker (supervised keeps `workers` and a standby): a run that
/// hung with tasks pending must not have hung with fewer live workers than
/// its plan (started, from the trace's `up` lines, and not exited). Under
/// the `spawn` point's limit no death is replaced, by design. Checked at the
/// deadline only: a replacement is forked while the pool runs on, so a
/// count taken mid-run races with it.
fn short_of_workers(
    plan: &Plan,
    events: &[Logged],
    outcomes: &[Vec<&OutcomeRecord>],
    ending: &Ending,
) -> Option<String> {
    let replaces = matches!(plan.pool, Target::Pool(pools::PoolKind::Supervised | pools::PoolKind::Planted(_)));
    if !replaces || !ending.deadline_passed || plan.limits_spawns() || outcomes.iter().all(|o| !o.is_empty()) {
        return None;
    }
    let mut live: HashSet<u32> = HashSet::new();
    let mut exited = 0;
    for l in events.iter().take_while(|l| !matches!(l.event, Event::Deadline)) {
        match l.event {
            Event::WorkerUp { pid } => {
                live.insert(pid);
            }
            Event::WorkerExit { pid, .. } => exited += usize::from(live.remove(&pid)),
            _ => {}
        }
    }
    (live.len() < plan.workers).then(|| {
        format!(
            "the pool hung with tasks pending and {} live worker(s) of its {} ({exited} exited): \
             dead workers were not replaced",
            live.len(),
            plan.workers
        )
    })
}

/// Callbacks against outcomes: in `apply_async` one per task, the error
/// callback for each failed one; in `map_async` one for the batch, the error
/// callback iff a task failed.
fn callback_findings(style: CallStyle, counts: &TaskCounts, callbacks: &BTreeMap<CallbackKind, usize>) -> Vec<String> {
    let got = |kind| callbacks.get(&kind).copied().unwrap_or(0);
    let (errors, results) = (got(CallbackKind::Error), got(CallbackKind::Result));
    let want = match style {
        CallStyle::ApplyAsync => (counts.failed, counts.ok),
        CallStyle::MapAsync if counts.failed > 0 => (1, 0),
        CallStyle::MapAsync => (0, 1),
        CallStyle::Map | CallStyle::Apply => return Vec::new(),
    };
    if (errors, results) == want {
        return Vec::new();
    }
    vec![format!(
        "callbacks: the error callback ran {errors} time(s) and the result callback {results}, \
         where {} and {} were due",
        want.0, want.1
    )]
}

/// For each task without an outcome: the one a dead or stuck worker was
/// running, or one that never started; tasks that ran to the end but whose
/// call never returned are counted, not listed.
fn pending(plan: &Plan, events: &[Logged], outcomes: &[Vec<&OutcomeRecord>]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut finished = 0;
    // Without the trace (a benchmark's choice) every worker would look dead before its first task.
    let early = if plan.bench.is_some_and(|b| !b.trace) { Vec::new() } else { deaths_between_tasks(events) };
    let never_started = match early.len() {
        0 => "never started".to_string(),
        n => format!("never started; {n} worker(s) died outside a task (below)"),
    };
    for index in (0..outcomes.len()).filter(|&i| outcomes[i].is_empty()) {
        let tag = plan.tasks[index].tag;
        let started = events.iter().enumerate().rev().find_map(|(at, l)| match l.event {
            Event::TaskStarted { tag: t, attempt, pid } if t == tag => Some((at, pid, attempt, l.t_ms)),
            _ => None,
        });
        let Some((at, pid, attempt, t_ms)) = started else {
            lines.push(format!("task {index} pending: {never_started}"));
            continue;
        };
        let fate = events.iter().find_map(|l| match &l.event {
            Event::WorkerExit { pid: p, signal: Some(sig), .. } if *p == pid => {
                Some(format!("died by {} at {} ms", protocol::signal_name(*sig), l.t_ms))
            }
            Event::WorkerExit { pid: p, code: Some(code), .. } if *p == pid => {
                Some(format!("exited with code {code} at {} ms", l.t_ms))
            }
            _ => None,
        });
        // Its worker got its result: the task ran to its end.
        let done = events[at + 1..]
            .iter()
            .any(|l| matches!(l.event, Event::TaskDone { tag: t, pid: p, .. } if t == tag && p == pid));
        let moved_on =
            events[at + 1..].iter().any(|l| matches!(l.event, Event::TaskStarted { pid: p, .. } if p == pid));
        if done {
            match fate.as_ref().filter(|_| !moved_on) {
                // Its worker died with the result in hand: while sending it.
                Some(fate) => lines.push(format!("task {index} pending: worker {pid} had its result, then {fate}")),
                None => finished += 1,
            }
            continue;
        }
        let fate = fate.map(|f| format!("which {f}"));
        let struck = events.iter().find_map(|l| match &l.event {
            Event::Nemesis { signal, pid: p, .. } if *p == pid => {
                Some(format!("{signal} from the nemesis at {} ms", l.t_ms))
            }
            _ => None,
        });
        let fate = match (fate, struck) {
            (Some(f), Some(k)) => format!("{f} ({k})"),
            (Some(f), None) => f,
            (None, Some(k)) => format!("which got {k}"),
            (None, None) => "which never finished it".to_string(),
        };
        lines
            .push(format!("task {index} pending: running on worker {pid} (attempt {attempt}) since {t_ms} ms, {fate}"));
    }
    if lines.len() > 10 {
        let more = lines.len() - 10;
        lines.truncate(10);
        lines.push(format!("... and {more} more like these"));
    }
    if finished > 0 {
        lines.push(format!("{finished} more task(s) ran to their end, but their outcome never reached the caller"));
    }
    let more = early.len().saturating_sub(5);
    lines.extend(early.into_iter().take(5));
    if more > 0 {
        lines.push(format!("... and {more} more worker(s) that died outside a task"));
    }
    for l in events {
        if let Event::Nemesis { signal, pid, target } = &l.event {
            lines.push(format!("the nemesis sent {signal} to {pid} ({target}) at {} ms", l.t_ms));
        }
    }
    lines
}

/// What the OOM killer did to the owner, in words.
fn owner_oom_text(plan: &Plan, events: &[Logged], ending: &Ending) -> String {
    let (pid, t_ms, simulated) = events
        .iter()
        .rev()
        .find_map(|l| match l.event {
            Event::OomKill { pid, simulated } => Some((pid, l.t_ms, simulated)),
            _ => None,
        })
        .unwrap_or_default();
    let by = if simulated { "the RSS watchdog (a simulated OOM)" } else { "the kernel's OOM killer" };
    let limit = plan.memory_limit_mib.map_or_else(String::new, |m| format!(" of {m} MiB"));
    format!(
        "the owner (pid {pid}) was killed by {by} at {t_ms} ms, unplanned: it held more than the run's \
         memory limit{limit}, and its pending tasks went with it ({} OOM kill(s) in the run)",
        ending.oom_kills
    )
}

/// The workers the pool reported dead by a signal or an exit code while
/// running no task (after their last `done` line, or before their first
/// `start`: a death at `init`, `transport` or `decode`), each with how it ended.
fn deaths_between_tasks(events: &[Logged]) -> Vec<String> {
    let mut mid_task: HashMap<u32, bool> = HashMap::new();
    let mut lines = Vec::new();
    for l in events {
        match l.event {
            Event::TaskStarted { pid, .. } => {
                mid_task.insert(pid, true);
            }
            Event::TaskDone { pid, .. } => {
                mid_task.insert(pid, false);
            }
            Event::WorkerExit { pid, signal, code } if !mid_task.get(&pid).copied().unwrap_or(false) => {
                let how = match (signal, code) {
                    (Some(sig), _) => format!("died by {}", protocol::signal_name(sig)),
                    (None, Some(code @ 1..)) => format!("exited with code {code}"),
                    _ => continue,
                };
                let when = if mid_task.contains_key(&pid) { "after its last task's `done`" } else { "before any task" };
                lines.push(format!(
                    "worker {pid} {how} at {} ms outside a task, {when} (while taking or starting one: \
                     `transport`, `decode`, `init`)",
                    l.t_ms
                ));
            }
            _ => {}
        }
    }
    lines
}

/// A Python-only raising fault (`unpicklable`, `memory-error`,
/// `base-exception`) whose `task` error does not name the exception it
/// raises (pickle's own `PicklingError` or `TypeError` for `unpicklable`):
/// the error does not name its fault.
fn misnamed_raises(plan: &Plan, outcomes: &[Vec<&OutcomeRecord>]) -> Vec<String> {
    let mut findings = Vec::new();
    for (index, (task, got)) in plan.tasks.iter().zip(outcomes).enumerate() {
        let Some(names) = task.fault.and_then(|f| protocol::raised_as(f.kind)) else { continue };
        for outcome in got {
            if let OutcomeRecord::Error { kind: ErrorKind::Task, message, .. } = outcome
                && !names.iter().any(|n| message.contains(n))
            {
                findings.push(format!(
                    "task {index} failed with error task ({message:?}), which does not name {}",
                    names.join(" or ")
                ));
            }
        }
    }
    findings
}

/// The scenario's time bounds ([`crate::scenario::TimeBounds`]) the run
/// missed, from the event log's times, counted from the pool's `ready` (or
/// its `warmed-up`): an outcome after `call_ms`, an error after
/// `errors_by_ms`.
fn late(plan: &Plan, events: &[Logged]) -> Vec<String> {
    let bounds = plan.bounds;
    let start = events.iter().rev().find_map(|l| match l.event {
        Event::WarmedUp | Event::Ready { .. } => Some(l.t_ms),
        _ => None,
    });
    let Some(start) = start else { return Vec::new() };
    let mut lines = Vec::new();
    for l in events {
        let Event::Outcome { index, result } = &l.event else { continue };
        let after = l.t_ms.saturating_sub(start);
        let error = matches!(result, OutcomeRecord::Error { .. });
        if let Some(bound) = bounds.errors_by_ms.filter(|b| error && after > *b) {
            lines.push(format!(
                "task {index}'s error came {after} ms after the pool was ready: past errors_by_ms = {bound}"
            ));
        } else if let Some(bound) = bounds.call_ms.filter(|b| after > *b) {
            lines.push(format!(
                "task {index}'s outcome came {after} ms after the pool was ready: past call_ms = {bound}"
            ));
        }
    }
    lines.truncate(10);
    lines
}

/// Whether task `index` failed as `cancelled` and the plan cancels it
/// (`[[cancel]]`). A task the plan cancels may also have its outcome: the
/// race of a cancel with the task's start is the pool's to settle (a
/// `concurrent.futures` future that has started cannot be cancelled; pebble
/// stops a running task, killing its worker). A `cancelled` task the plan
/// does not cancel names no fault.
fn cancelled_by_plan(plan: &Plan, index: usize, kind: ErrorKind) -> bool {
    kind == ErrorKind::Cancelled && plan.cancel.iter().any(|c| c.task == index)
}

/// The pool's `join`, bounded by the plan's `join_timeout_ms`, timed out: a
/// liveness bound of the scenario's own that the pool missed, which makes
/// the run `hung` as the time bounds do (the pool's hang made visible by its
/// own timeout, not the harness's deadline). Names the tasks that had
/// started and not finished when it did (from the trace).
fn join_timed_out(plan: &Plan, events: &[Logged]) -> Vec<String> {
    let Some(at) = events.iter().position(|l| matches!(l.event, Event::JoinTimedOut { .. })) else {
        return Vec::new();
    };
    let (Event::JoinTimedOut { timeout_ms }, t_ms) = (&events[at].event, events[at].t_ms) else { return Vec::new() };
    let mut running: Vec<u64> = Vec::new();
    for l in &events[..at] {
        match l.event {
            Event::TaskStarted { tag, .. } if (tag as usize) < plan.tasks.len() => running.push(tag),
            Event::TaskDone { tag, .. } => running.retain(|t| *t != tag),
            _ => {}
        }
    }
    running.sort_unstable();
    running.dedup();
    let running = match running.as_slice() {
        [] => "no task was running".to_string(),
        tags => format!("task(s) {} still running", tags.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    vec![format!(
        "the pool's join timed out {t_ms} ms into the run: past join_timeout_ms = {timeout_ms}, with {running}"
    )]
}

/// `exited with code 1`, `was killed by SIGKILL`.
fn exit_text(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(sig), _) => format!("was killed by {}", protocol::signal_name(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing ran overrides whatever else holds; otherwise the worst that
    /// holds names the run, in [`Verdict`]'s order.
    #[test]
    fn the_verdict_is_the_worst_that_holds_unless_nothing_ran() {
        let all = Holds {
            not_applicable: false,
            skipped: false,
            target_error: true,
            leaked: true,
            hung: true,
            lost: true,
            owner_oom: true,
            owner_killed: true,
            failed_loudly: true,
        };
        assert_eq!(decide(&Holds { not_applicable: true, skipped: true, ..all }), Verdict::NotApplicable);
        assert_eq!(decide(&Holds { skipped: true, ..all }), Verdict::Skipped);
        // Taking the worst away, one at a time, leaves the next worst.
        type TakeAway = fn(&mut Holds);
        let clear: [(Verdict, TakeAway); 7] = [
            (Verdict::TargetError, |h| h.target_error = false),
            (Verdict::Leaked, |h| h.leaked = false),
            (Verdict::Hung, |h| h.hung = false),
            (Verdict::Lost, |h| h.lost = false),
            (Verdict::OwnerOom, |h| h.owner_oom = false),
            (Verdict::OwnerKilled, |h| h.owner_killed = false),
            (Verdict::FailedLoudly, |h| h.failed_loudly = false),
        ];
        let mut holds = all;
        for (worst, take_away) in clear {
            assert_eq!(decide(&holds), worst);
            take_away(&mut holds);
        }
        assert_eq!(decide(&holds), Verdict::Completed);
        assert_eq!(decide(&Holds::default()), Verdict::Completed);
    }
}
