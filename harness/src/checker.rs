//! The checker: a run's event log, plus what the sandbox saw at the end, in;
//! a verdict, counts and a diagnosis out. This is the one place verdicts are
//! decided.
//!
//! Safety is judged per task: exactly one outcome, and an `ok` result must be
//! the task's own (the owner checks the bytes against the task). An error
//! must name its fault (the task's own error, a lost or timed-out worker, the
//! pool breaking on a dead worker); `Terminated` names none and counts as lost.
//! Liveness is the deadline: a run whose owner did not finish by then is hung,
//! and the diagnosis names each pending task, the worker it was on and how
//! that worker ended.

use std::collections::BTreeMap;

use crate::events::{Event, Logged, OutcomeRecord};
use crate::plan::Plan;
use crate::sandbox::Mechanism;
use crate::target::Target;
use crate::verdict::{ExitRecord, RunRecord, TaskCounts, Verdict};

/// What the runner saw besides the events.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    /// The deadline passed before the owner finished.
    pub deadline_passed: bool,
    /// The plan killed the owner (and it died).
    pub owner_killed_by_plan: bool,
    /// What outlived the run.
    pub leaks: Vec<String>,
    pub oom_kills: u64,
    /// The sandbox's mechanism (whether an OOM kill is the kernel's).
    pub mechanism: Option<Mechanism>,
    pub elapsed_ms: u64,
    /// The end of what the owner and its workers wrote to stderr.
    pub stderr_tail: String,
}

pub fn judge(plan: &Plan, events: &[Logged], ending: &Ending) -> RunRecord {
    let n = plan.tasks.len();
    let mut outcomes: Vec<Vec<&OutcomeRecord>> = vec![Vec::new(); n];
    let mut duplicates = vec![0usize; n];
    let mut worker_exits = Vec::new();
    let mut owner_error = None;
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
            Event::OwnerError { message } => owner_error = Some(message.clone()),
            _ => {}
        }
    }
    let mut tasks = TaskCounts { total: n, ..TaskCounts::default() };
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut unnamed = 0;
    for (got, &extra) in outcomes.iter().zip(&duplicates) {
        if extra > 0 {
            tasks.duplicated += 1;
            continue;
        }
        match got.as_slice() {
            [] => tasks.lost += 1,
            [OutcomeRecord::Ok] => tasks.ok += 1,
            [OutcomeRecord::Wrong] => tasks.wrong += 1,
            [OutcomeRecord::Error { kind, signal, code, .. }] => {
                tasks.failed += 1;
                let named = match (signal, code) {
                    (Some(sig), _) => format!("{kind}({})", pools::outcome::signal_name(*sig)),
                    (None, Some(code)) => format!("{kind}(exit {code})"),
                    (None, None) => kind.clone(),
                };
                *errors.entry(named).or_default() += 1;
                if kind == "Terminated" {
                    unnamed += 1;
                }
            }
            _ => tasks.duplicated += 1,
        }
    }
    let skipped = events.iter().find_map(|l| match &l.event {
        Event::Skipped { reason } => Some(reason.clone()),
        _ => None,
    });
    let owner_exit = events.iter().find_map(|l| match l.event {
        Event::OwnerExit { signal, code } => Some((signal, code)),
        _ => None,
    });
    if let Some((signal, code)) = owner_exit
        && skipped.is_none()
        && !ending.owner_killed_by_plan
    {
        let how = exit_text(signal, code);
        if !ready {
            broken.push(format!("it {how} before it reported `ready`: it never started its pool"));
        } else if code == Some(0) && !finished {
            broken.push(format!("it {how} without reporting `finished`"));
        }
    }
    let verdict = if skipped.is_some() {
        Verdict::Skipped
    } else if !broken.is_empty() {
        Verdict::TargetError
    } else if ending.deadline_passed {
        Verdict::Hung
    } else if !ending.leaks.is_empty() {
        Verdict::Leaked
    } else if ending.owner_killed_by_plan {
        Verdict::OwnerKilled
    } else if tasks.lost + tasks.duplicated + tasks.wrong + unnamed > 0 || owner_error.is_some() {
        Verdict::Lost
    } else if tasks.failed > 0 {
        Verdict::FailedLoudly
    } else {
        Verdict::Completed
    };
    let mut diagnosis = Vec::new();
    if let Some(reason) = skipped {
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
    } else if crashed && let Some((signal, code)) = owner_exit {
        diagnosis.push(format!("the owner ended early: it {}", exit_text(signal, code)));
    }
    if (owner_error.is_some() || crashed) && !ending.stderr_tail.is_empty() {
        diagnosis.push(format!("its stderr ended with: {}", ending.stderr_tail));
    }
    if matches!(verdict, Verdict::Hung | Verdict::Lost) {
        diagnosis.extend(pending(plan, events, &outcomes));
        for (index, (got, &extra)) in outcomes.iter().zip(&duplicates).enumerate() {
            if extra > 0 || got.len() > 1 {
                diagnosis.push(format!("task {index} got {} outcomes", got.len().max(1) + extra));
            }
            if got.iter().any(|o| matches!(o, OutcomeRecord::Wrong)) {
                diagnosis.push(format!("task {index} got a result that is not its own"));
            }
        }
    }
    match &ending.mechanism {
        _ if ending.oom_kills == 0 => {}
        Some(m) if m.simulated_oom() => diagnosis.push(format!(
            "the RSS watchdog SIGKILLed {} process(es) over the memory limit: a simulated OOM, not the kernel's ({m})",
            ending.oom_kills
        )),
        _ => diagnosis.push(format!("the run's memory cgroup counted {} OOM kill(s)", ending.oom_kills)),
    }
    RunRecord {
        scenario: plan.scenario.clone(),
        pool: plan.pool.to_string(),
        style: plan.style.name().to_string(),
        verdict,
        expected: None,
        tasks,
        errors,
        faults: plan.faults(),
        worker_exits,
        oom_kills: ending.oom_kills,
        mechanism: ending.mechanism.clone(),
        leaks: ending.leaks.clone(),
        diagnosis,
        elapsed_ms: ending.elapsed_ms,
        events: None,
    }
}

/// For each task without an outcome: the one a dead or stuck worker was
/// running, or one that never started; tasks that ran to the end but whose
/// call never returned are counted, not listed.
fn pending(plan: &Plan, events: &[Logged], outcomes: &[Vec<&OutcomeRecord>]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut finished = 0;
    for index in (0..outcomes.len()).filter(|&i| outcomes[i].is_empty()) {
        let tag = plan.tasks[index].tag;
        let started = events.iter().enumerate().rev().find_map(|(at, l)| match l.event {
            Event::TaskStarted { tag: t, attempt, pid } if t == tag => Some((at, pid, attempt, l.t_ms)),
            _ => None,
        });
        let Some((at, pid, attempt, t_ms)) = started else {
            lines.push(format!("task {index} pending: never started"));
            continue;
        };
        let fate = events.iter().find_map(|l| match &l.event {
            Event::WorkerExit { pid: p, signal: Some(sig), .. } if *p == pid => {
                Some(format!("died by {} at {} ms", pools::outcome::signal_name(*sig), l.t_ms))
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
    for l in events {
        if let Event::Nemesis { signal, pid, target } = &l.event {
            lines.push(format!("the nemesis sent {signal} to {pid} ({target}) at {} ms", l.t_ms));
        }
    }
    lines
}

/// `exited with code 1`, `was killed by SIGKILL`.
fn exit_text(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(sig), _) => format!("was killed by {}", pools::outcome::signal_name(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended".to_string(),
    }
}
