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
//! Several verdicts can hold at once (a hung run has tasks without outcome);
//! the worst in [`Verdict`]'s order names the run. Three rules decide what is
//! not counted: a skipped run ran nothing, and the plan killing the owner,
//! or the OOM killer taking it unplanned (`owner-oom`), takes its pending
//! tasks with it; what the deadline's teardown leaves behind is the
//! teardown's, not a leak of the pool.

use std::collections::{BTreeMap, HashMap, HashSet};

use pools::CallStyle;

use crate::judge::oracle;
use crate::judge::verdict::{ExitRecord, Leak, RunRecord, TaskCounts, Verdict};
use crate::protocol::{self, CallbackKind, ErrorKind, Event, OomMark, OutcomeRecord};
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
    /// Exactly one outcome, an error: its kind and its name in reports (`worker-lost(sigkill)`).
    Failed(ErrorKind, String),
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
    pub errors: BTreeMap<String, usize>,
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
            pool: plan.pool.to_string(),
            style: plan.style.name().to_string(),
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

pub fn judge(plan: &Plan, events: &[Logged], ending: &Ending) -> Judgement {
    let n = plan.tasks.len();
    let mut outcomes: Vec<Vec<&OutcomeRecord>> = vec![Vec::new(); n];
    let mut duplicates = vec![0usize; n];
    let mut worker_exits = Vec::new();
    let mut owner_error = None;
    let mut callbacks: BTreeMap<CallbackKind, usize> = BTreeMap::new();
    // What the target did that the protocol does not allow.
    let mut broken = Vec::new();
    let (mut ready, mut finished) = (false, false);
    for logged in events {
        match &logged.event {
            Event::Outcome { index, result } if *index < n => outcomes[*index].push(result),
            Event::Duplicate { index } if *index < n => duplicates[*index] += 1,
            Event::Outcome { index, .. } | Event::Duplicate { index } => {
                broken.push(format!("it reported an outcome for task {index}; the plan's tasks are 0..{n}"));
            }
            Event::Malformed { line, error } => {
                broken.push(format!("it wrote a line that is not an event ({error}): {line:?}"));
            }
            Event::Ready { .. } => ready = true,
            Event::Finished => finished = true,
            Event::WorkerExit { pid, signal, code } => {
                worker_exits.push(ExitRecord { pid: *pid, signal: *signal, code: *code });
            }
            Event::Callback { kind } => *callbacks.entry(*kind).or_default() += 1,
            Event::OwnerError { message } => owner_error = Some(message.clone()),
            _ => {}
        }
    }
    let oom: HashMap<u32, OomMark> = events
        .iter()
        .filter_map(|l| match l.event {
            Event::OomKill { pid, simulated } => {
                Some((pid, if simulated { OomMark::Simulated } else { OomMark::Kernel }))
            }
            _ => None,
        })
        .collect();
    let touched = touched(plan, events, &outcomes);
    let terminates = plan.tasks.iter().filter_map(|t| t.fault).any(|f| f.point == pools::FaultPoint::Terminate);
    let design = oracle::design(&plan.pool);
    let mut tasks = Vec::with_capacity(n);
    let mut counts = TaskCounts { total: n, ..TaskCounts::default() };
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut findings = Vec::new();
    for (index, (got, &extra)) in outcomes.iter().zip(&duplicates).enumerate() {
        let fate = match got.as_slice() {
            _ if extra > 0 => Fate::Duplicated,
            [] => Fate::Pending,
            [OutcomeRecord::Ok] => Fate::Ok,
            [OutcomeRecord::Wrong] => Fate::Wrong,
            [error @ OutcomeRecord::Error { kind, .. }] => {
                let oom = error.pid().and_then(|pid| oom.get(&pid).copied());
                Fate::Failed(*kind, error.error_name(oom).unwrap_or_default())
            }
            _ => Fate::Duplicated,
        };
        match &fate {
            Fate::Ok => counts.ok += 1,
            Fate::Pending => counts.lost += 1,
            Fate::Wrong => {
                counts.wrong += 1;
                findings.push(format!("task {index} got a result that is not its own"));
            }
            Fate::Duplicated => {
                counts.duplicated += 1;
                findings.push(format!("task {index} got {} outcomes", got.len().max(1) + extra));
            }
            Fate::Failed(kind, name) => {
                counts.failed += 1;
                *errors.entry(name.clone()).or_default() += 1;
                let [OutcomeRecord::Error { signal, code, .. }] = got.as_slice() else { unreachable!() };
                let no_exit = kind.names_an_exit() && signal.is_none() && code.is_none();
                // A plan that ends the pool by `terminate` fails what is pending so, and one that cancels a task, it.
                let by_plan = (*kind == ErrorKind::Terminated && terminates) || cancelled_by_plan(plan, index, *kind);
                if (!kind.names_a_fault() && !by_plan) || (no_exit && plan.parent_faults().next().is_none()) {
                    findings.push(format!("task {index} failed with error {name}, which names no fault"));
                }
                if !touched[index] && !by_plan {
                    counts.bystanders += 1;
                    if !design.fails_bystanders {
                        findings.push(format!("task {index} failed with error {name}, but no fault touched it"));
                    }
                }
            }
        }
        tasks.push(TaskFate { fate, touched: touched[index] });
    }
    findings.extend(misnamed_raises(plan, &outcomes));
    let skipped = events.iter().find_map(|l| match &l.event {
        Event::Skipped { reason } => Some(reason.clone()),
        _ => None,
    });
    let not_applicable = events.iter().find_map(|l| match &l.event {
        Event::NotApplicable { point, reason } => Some(format!("not applicable: `{point}`: {reason}")),
        _ => None,
    });
    // Nothing ran: judged like a skipped run, but a verdict of its own.
    let skipped = skipped.or(not_applicable.clone());
    let owner_exit = events.iter().find_map(|l| match l.event {
        Event::OwnerExit { signal, code } => Some((signal, code)),
        _ => None,
    });
    // A deadly fault the plan places in the parent (while it encodes a task,
    // decodes a result, or runs a callback) kills the owner by plan too.
    let died = matches!(owner_exit, Some((Some(_), _)) | Some((None, Some(1..))));
    let ending =
        &Ending { owner_killed_by_plan: ending.owner_killed_by_plan || (died && plan.kills_owner()), ..ending.clone() };
    if let Some((signal, code)) = owner_exit
        && skipped.is_none()
        && !ending.owner_killed_by_plan
        && !ending.owner_oom
    {
        let how = exit_text(signal, code);
        if !ready {
            broken.push(format!("it {how} before it reported `ready`: it never started its pool"));
        } else if code == Some(0) && !finished {
            broken.push(format!("it {how} without reporting `finished`"));
        }
    }
    // An owner the OOM killer took, took its pending tasks with it: `owner-oom`, not lost tasks.
    if !ending.deadline_passed && !ending.owner_killed_by_plan && !ending.owner_oom && skipped.is_none() {
        if counts.lost > 0 {
            findings.push(format!("{} task(s) got no outcome, and the run did not hang", counts.lost));
        }
        // A job a `terminate` leaves pending (CPython's) never calls back.
        if finished && design.callbacks && !terminates {
            findings.extend(callback_findings(plan.style, &counts, &callbacks));
        }
    }
    if skipped.is_none() && !ending.owner_killed_by_plan {
        findings.extend(attempt_findings(plan, events, &outcomes));
        findings.extend(short_of_workers(plan, events, &outcomes, ending));
    }
    // What outlived a run that ended by itself (a hung run's leftovers are the teardown's).
    let leaked = !ending.leaks.is_empty() && !ending.deadline_passed;
    let mut verdict = verdict(&counts, &findings, leaked, &broken, skipped.is_some(), owner_error.is_some(), ending);
    if leaked {
        let leaks: Vec<String> = ending.leaks.iter().map(Leak::to_string).collect();
        findings.push(format!("leaked: {}", leaks.join("; ")));
    }
    let mut diagnosis = Vec::new();
    let late = [late(plan, events), join_timed_out(plan, events)].concat();
    if !late.is_empty() && (Verdict::Completed..Verdict::Hung).contains(&verdict) {
        verdict = Verdict::Hung;
        diagnosis.extend(late);
    }
    if let Some(reason) = not_applicable {
        verdict = Verdict::NotApplicable;
        diagnosis.push(reason);
    } else if let Some(reason) = skipped {
        diagnosis.push(format!("skipped: {reason}"));
    }
    broken.truncate(5);
    let target = match &plan.pool {
        Target::Command(words) => format!("`{}`", words.join(" ")),
        other => other.name(),
    };
    diagnosis.extend(broken.into_iter().map(|b| format!("target {target} broke the owner protocol: {b}")));
    let crashed = matches!(owner_exit, Some((Some(_), _)) | Some((None, Some(1..)))) && !ending.owner_killed_by_plan;
    if let Some(message) = &owner_error {
        diagnosis.push(format!("the owner failed: {message}"));
    } else if ending.owner_oom && !ending.owner_killed_by_plan {
        diagnosis.push(owner_oom_text(plan, events, ending));
    } else if crashed && let Some((signal, code)) = owner_exit {
        diagnosis.push(format!("the owner ended early: it {}", exit_text(signal, code)));
    }
    if (owner_error.is_some() || crashed) && !ending.stderr_tail.is_empty() {
        diagnosis.push(format!("its stderr ended with: {}", ending.stderr_tail));
    }
    if matches!(verdict, Verdict::Hung | Verdict::Lost | Verdict::OwnerOom) {
        diagnosis.extend(pending(plan, events, &outcomes));
        diagnosis.extend(findings.iter().take(findings.len() - usize::from(leaked)).take(10).cloned());
    }
    match &ending.mechanism {
        _ if ending.oom_kills == 0 => {}
        Some(m) if m.simulated_oom() => diagnosis.push(format!(
            "the RSS watchdog SIGKILLed {} process(es) over the memory limit: a simulated OOM, not the kernel's ({m})",
            ending.oom_kills
        )),
        _ => diagnosis.push(format!("the run's memory cgroup counted {} OOM kill(s)", ending.oom_kills)),
    }
    Judgement { verdict, tasks, counts, errors, findings, diagnosis, worker_exits }
}

/// The verdict: the worst of those that hold, in [`Verdict`]'s order.
fn verdict(
    counts: &TaskCounts,
    findings: &[String],
    leaked: bool,
    broken: &[String],
    skipped: bool,
    owner_error: bool,
    ending: &Ending,
) -> Verdict {
    if skipped {
        // Nothing ran: there is nothing else to judge.
        return Verdict::Skipped;
    }
    let unsafe_tasks = !findings.is_empty();
    let holds = [
        (!broken.is_empty(), Verdict::TargetError),
        (ending.deadline_passed, Verdict::Hung),
        (leaked, Verdict::Leaked),
        (ending.owner_killed_by_plan, Verdict::OwnerKilled),
        (ending.owner_oom && !ending.owner_killed_by_plan, Verdict::OwnerOom),
        // The plan (or the OOM killer) took the owner, and its pending tasks with it: they are not lost.
        (
            !ending.owner_killed_by_plan && (unsafe_tasks || owner_error || (counts.lost > 0 && !ending.owner_oom)),
            Verdict::Lost,
        ),
        (!ending.owner_killed_by_plan && counts.failed > 0, Verdict::FailedLoudly),
        (true, Verdict::Completed),
    ];
    holds.into_iter().filter(|(holds, _)| *holds).map(|(_, v)| v).max().unwrap_or(Verdict::Completed)
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
