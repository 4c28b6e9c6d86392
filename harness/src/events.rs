//! The event log of a run, and the protocol between the harness and a pool's
//! owner that most of it comes from.
//!
//! The protocol is language-neutral: JSON, one object per line.
//!
//! - **Harness to owner** (the owner's stdin): one line holding the
//!   [`OwnerPlan`](crate::plan::OwnerPlan) (pool, workers, call style, tasks
//!   with their faults); with `warmup`, later a line `go` once the nemesis
//!   has acted on the warmed-up pool.
//! - **Owner to harness** (the owner's stdout): [`Event`]s: `ready`,
//!   `warmed-up`, `outcome` (one per task, as the call style delivers them),
//!   `callback`, `worker-exit` (from whoever reaps the worker), `timed` (a
//!   benchmark's plan only), `finished`.
//! - **Workers to harness**, bypassing the owner: a trace pipe whose write end
//!   the owner passes to every worker (env `POOLCHAOS_TRACE_FD`); each task
//!   start is a line `start <tag> <attempt> <pid>`, logged as `task-started`,
//!   and each result ready to send a line `done ...`, logged as `task-done`.
//!   This is how the nemesis knows which pid runs which task, and how a hung
//!   run is diagnosed, without trusting the pool.
//!
//! The harness adds its own events (`nemesis`, `deadline`, `owner-exit`,
//! `leak`, `malformed` for an owner's line that is not an event) and stamps
//! each with the milliseconds since the run started.

use serde::{Deserialize, Serialize};

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The owner started its pool.
    Ready { pid: u32 },
    /// The owner ran its warm-up task and waits for `go`.
    WarmedUp,
    /// A worker started a task (from the trace pipe).
    TaskStarted { tag: u64, attempt: u32, pid: u32 },
    /// A worker has a task's result, about to send it (from the trace pipe).
    TaskDone { tag: u64, attempt: u32, pid: u32 },
    /// Task `index` of the plan got an outcome.
    Outcome { index: usize, result: OutcomeRecord },
    /// Task `index` got a second outcome (its job refused it).
    Duplicate { index: usize },
    /// A result callback or an error callback ran.
    Callback { kind: CallbackKind },
    /// A worker ended, as its pool reaped it.
    WorkerExit { pid: u32, signal: Option<i32>, code: Option<i32> },
    /// A benchmark's call took `us` µs, from the first submission to the
    /// last result in hand, as the owner timed it (plans with `bench`).
    Timed { us: u64 },
    /// The owner's call returned and it closed and joined its pool.
    Finished,
    /// The target cannot run here (its package is missing): the reason.
    Skipped { reason: String },
    /// The owner could not do what it was asked.
    OwnerError { message: String },
    /// The owner wrote a line on stdout that is not an event (logged by the harness).
    Malformed { line: String, error: String },
    /// The nemesis sent `signal` to `pid`.
    Nemesis { signal: String, pid: u32, target: String },
    /// The run's deadline passed; everything is being killed.
    Deadline,
    /// The owner process ended.
    OwnerExit { signal: Option<i32>, code: Option<i32> },
    /// A process outlived the run.
    Leak { pid: u32, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackKind {
    Result,
    Error,
}

/// What the owner saw of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum OutcomeRecord {
    /// Its correct result (checked by the owner against the task).
    Ok,
    /// A result that is not the task's.
    Wrong,
    /// An error: its kind (`Task`, `WorkerLost`, `TimedOut`, `PoolBroken`,
    /// `Terminated`), what it names, and its text.
    Error {
        kind: String,
        pid: Option<u32>,
        signal: Option<i32>,
        code: Option<i32>,
        attempts: Option<u32>,
        message: String,
    },
}

/// An event with the time it was logged, in ms since the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub t_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Parses a `start|done <tag> <attempt> <pid>` trace line.
pub fn parse_trace(line: &str) -> Option<Event> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [what, tag, attempt, pid] = fields[..] else { return None };
    let (tag, attempt, pid) = (tag.parse().ok()?, attempt.parse().ok()?, pid.parse().ok()?);
    match what {
        "start" => Some(Event::TaskStarted { tag, attempt, pid }),
        "done" => Some(Event::TaskDone { tag, attempt, pid }),
        _ => None,
    }
}

impl OutcomeRecord {
    pub fn from_outcome(task: &pools::Task, outcome: &pools::Outcome) -> OutcomeRecord {
        use pools::TaskError;
        match outcome {
            Ok(bytes) if task.check(bytes) => OutcomeRecord::Ok,
            Ok(_) => OutcomeRecord::Wrong,
            Err(e) => {
                let (kind, pid, exit, attempts) = match e {
                    TaskError::Task { .. } => ("Task", None, None, None),
                    TaskError::WorkerLost { pid, exit, attempts } => {
                        ("WorkerLost", Some(*pid), Some(*exit), Some(*attempts))
                    }
                    TaskError::TimedOut { pid, attempts, .. } => ("TimedOut", Some(*pid), None, Some(*attempts)),
                    TaskError::PoolBroken { pid, exit } => ("PoolBroken", Some(*pid), Some(*exit), None),
                    TaskError::Terminated => ("Terminated", None, None, None),
                };
                OutcomeRecord::Error {
                    kind: kind.to_string(),
                    pid,
                    signal: exit.and_then(|x| x.signal()),
                    code: exit.and_then(|x| x.code()),
                    attempts,
                    message: e.to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_object_with_a_tag() {
        let logged = Logged { t_ms: 5, event: Event::WorkerExit { pid: 7, signal: Some(9), code: None } };
        let line = serde_json::to_string(&logged).unwrap();
        assert_eq!(line, r#"{"t_ms":5,"event":"worker-exit","pid":7,"signal":9,"code":null}"#);
        assert_eq!(serde_json::from_str::<Logged>(&line).unwrap(), logged);
        assert_eq!(parse_trace("start 3 0 42"), Some(Event::TaskStarted { tag: 3, attempt: 0, pid: 42 }));
        assert_eq!(parse_trace("garbage"), None);
    }
}
