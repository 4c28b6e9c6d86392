//! The protocol: every type and name that crosses a process boundary or a
//! file, spelled once. The owner (`owner.rs`), the harness (runner, checker,
//! oracles, reports, scenario files) and the Python adapter
//! (`targets/python/poolchaos_targets/protocol.py`, checked against these
//! names by a test) all use these; nothing else compares a name as a string.
//!
//! The protocol is language-neutral: JSON, one object per line.
//!
//! - **Harness to owner** (the owner's stdin): one line holding the
//!   [`OwnerPlan`] (pool, workers, call style, tasks
//!   with their faults); with `warmup`, later a line `go` once the nemesis
//!   has acted on the warmed-up pool.
//! - **Owner to harness** (the owner's stdout): [`Event`]s: `ready`,
//!   `warmed-up`, `outcome` (one per task, as the call style delivers them),
//!   `callback`, `worker-exit` (from whoever reaps the worker), `timed` (a
//!   benchmark's plan only), `join-timed-out` (a plan with `join_timeout_ms`),
//!   `finished`.
//! - **Workers to harness**, bypassing the owner: a trace pipe whose write end
//!   the owner passes to every worker (env `POOLCHAOS_TRACE_FD`); each task
//!   start is a line `start <tag> <attempt> <pid>`, logged as `task-started`,
//!   and each result ready to send a line `done ...`, logged as `task-done`.
//!   This is how the nemesis knows which pid runs which task, and how a hung
//!   run is diagnosed, without trusting the pool.
//!
//! The harness adds its own events (`nemesis`, `strike-withheld`, `deadline`, `owner-exit`,
//! `leak`, `malformed` for an owner's line that is not an event, `oom-kill`,
//! `pids-limited` for the `spawn` point's refused forks) and stamps
//! each with the milliseconds since the run started (`events.rs`).

use std::collections::BTreeMap;
use std::fmt;

use pools::{CallStyle, FaultKind, FaultPoint, Task};
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// Why a task has no result, as the wire names it (`pools::TaskError`'s kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The task raised (or panicked); its worker lived on.
    Task,
    /// Its worker died (a signal or an exit code).
    WorkerLost,
    /// It ran past its deadline and its worker was stopped.
    TimedOut,
    /// A worker's death broke the pool, failing this task with it.
    PoolBroken,
    /// The pool was terminated under it: names no fault.
    Terminated,
    /// No process could be started to run it (the kernel refused the fork).
    SpawnFailed,
    /// The caller cancelled it (a scenario's `[[cancel]]`) and the pool
    /// agreed: it never ran, or the pool stopped it mid-task.
    Cancelled,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Task,
        ErrorKind::WorkerLost,
        ErrorKind::TimedOut,
        ErrorKind::PoolBroken,
        ErrorKind::Terminated,
        ErrorKind::SpawnFailed,
        ErrorKind::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Task => "task",
            ErrorKind::WorkerLost => "worker-lost",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::PoolBroken => "pool-broken",
            ErrorKind::Terminated => "terminated",
            ErrorKind::SpawnFailed => "spawn-failed",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// Whether an error of this kind names a fault (a `Terminated` task
    /// names none, nor does a `Cancelled` one: the plan may end or cancel
    /// tasks, and the checker holds those to the plan).
    pub fn names_a_fault(self) -> bool {
        !matches!(self, ErrorKind::Terminated | ErrorKind::Cancelled)
    }

    /// Whether the error says how a worker ended (a signal or an exit code).
    pub fn names_an_exit(self) -> bool {
        matches!(self, ErrorKind::WorkerLost | ErrorKind::PoolBroken)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Signals the nemesis sends (scenario files, the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    Sigkill,
    Sigstop,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Sigkill => "sigkill",
            Signal::Sigstop => "sigstop",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The signals a worker's death is named by, and their names.
const SIGNALS: [(i32, &str); 22] = [
    (1, "sighup"),
    (2, "sigint"),
    (3, "sigquit"),
    (4, "sigill"),
    (5, "sigtrap"),
    (6, "sigabrt"),
    (7, "sigbus"),
    (8, "sigfpe"),
    (9, "sigkill"),
    (10, "sigusr1"),
    (11, "sigsegv"),
    (12, "sigusr2"),
    (13, "sigpipe"),
    (14, "sigalrm"),
    (15, "sigterm"),
    (17, "sigchld"),
    (18, "sigcont"),
    (19, "sigstop"),
    (20, "sigtstp"),
    (24, "sigxcpu"),
    (25, "sigxfsz"),
    (31, "sigsys"),
];

/// The name of a signal a process ended by, spelled as [`Signal`] spells
/// the ones the nemesis sends: `sigkill`, or `signal 42`.
pub fn signal_name(signal: i32) -> String {
    match SIGNALS.iter().find(|(n, _)| *n == signal) {
        Some((_, name)) => name.to_string(),
        None => format!("signal {signal}"),
    }
}

/// The signal [`signal_name`] names.
pub fn signal_number(name: &str) -> Option<i32> {
    match name.strip_prefix("signal ") {
        Some(number) => number.parse().ok(),
        None => SIGNALS.iter().find(|(_, n)| *n == name).map(|(signal, _)| *signal),
    }
}

/// The fault kinds of scenario files, by name.
pub const FAULT_KINDS: [(&str, FaultKind); 15] = [
    ("sigkill", FaultKind::SigKill),
    ("sigsegv", FaultKind::SigSegv),
    ("abort", FaultKind::Abort),
    ("exit0", FaultKind::Exit(0)),
    ("exit1", FaultKind::Exit(1)),
    ("hang", FaultKind::Hang),
    ("sigstop", FaultKind::SigStop),
    ("error", FaultKind::Error),
    ("panic", FaultKind::Panic),
    ("sys-exit", FaultKind::SysExit),
    ("unpicklable", FaultKind::Unpicklable),
    ("base-exception", FaultKind::BaseException),
    ("memory-error", FaultKind::MemoryError),
    ("ignore-sigterm", FaultKind::IgnoreSigterm),
    ("return-exception", FaultKind::ReturnException),
];

/// A task that allocates past the run's memory limit, as reports name the fault.
pub const OOM_FAULT: &str = "oom";

/// Where in a task's pipeline a self-placed fault fires, by name, in
/// pipeline order (`FaultPoint`'s docs say what each is).
pub const FAULT_POINTS: [(&str, FaultPoint); 15] = [
    ("encode", FaultPoint::Encode),
    ("transport", FaultPoint::Transport),
    ("init", FaultPoint::Init),
    ("decode", FaultPoint::Decode),
    ("mid-task", FaultPoint::MidTask),
    ("encode-result", FaultPoint::EncodeResult),
    ("transport-result", FaultPoint::WriteResult),
    ("decode-result", FaultPoint::DecodeResult),
    ("after-result", FaultPoint::AfterResult),
    ("callback", FaultPoint::Callback),
    ("close", FaultPoint::Close),
    ("terminate", FaultPoint::Terminate),
    ("join", FaultPoint::Join),
    ("recycle", FaultPoint::Recycle),
    ("spawn", FaultPoint::Spawn),
];

pub fn fault_kind(name: &str) -> Option<FaultKind> {
    FAULT_KINDS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

pub fn fault_kind_name(kind: FaultKind) -> String {
    match FAULT_KINDS.iter().find(|(_, k)| *k == kind) {
        Some((name, _)) => name.to_string(),
        None => match kind {
            FaultKind::Exit(code) => format!("exit{code}"),
            other => format!("{other:?}").to_lowercase(),
        },
    }
}

pub fn fault_point(name: &str) -> Option<FaultPoint> {
    FAULT_POINTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

pub fn fault_point_name(point: FaultPoint) -> &'static str {
    FAULT_POINTS.iter().find(|(_, p)| *p == point).map_or("mid-task", |(n, _)| n)
}

/// The call style of a name (`map`, `apply`, `apply-async`, `map-async`).
pub fn call_style(name: &str) -> Option<CallStyle> {
    CallStyle::ALL.into_iter().find(|s| s.name() == name)
}

/// The events an owner may write (the rest of [`Event`] are the harness's own).
pub const OWNER_EVENTS: [&str; 12] = [
    "ready",
    "warmed-up",
    "outcome",
    "duplicate",
    "callback",
    "worker-exit",
    "timed",
    "finished",
    "skipped",
    "not-applicable",
    "owner-error",
    "join-timed-out",
];

/// Serde for a [`CallStyle`] as its name.
pub(crate) mod style_name {
    use pools::CallStyle;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(style: &CallStyle, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(style.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CallStyle, D::Error> {
        let name = String::deserialize(d)?;
        super::call_style(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown call style {name:?}")))
    }
}

/// Serde for a [`Target`] as its name (`supervised`, `py-pool-map@3.13/spawn`;
/// a user's command is `custom`, and its words are not the plan's business).
pub(crate) mod target_name {
    use crate::target::Target;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(target: &Target, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&target.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "custom" => Ok(Target::Command(Vec::new())),
            _ => name.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What the harness hands the pool's owner on its stdin (one JSON object).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnerPlan {
    /// The pool or target, by name (`supervised`, `py-pebble`, ...).
    #[serde(with = "target_name")]
    pub pool: Target,
    pub workers: usize,
    #[serde(with = "style_name")]
    pub style: CallStyle,
    pub task_timeout_ms: Option<u64>,
    pub max_attempts: u32,
    pub warmup: bool,
    /// Time the call and report `timed`; hold the events until it returns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bench: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunksize: Option<usize>,
    /// Tasks a worker runs before the pool replaces it (`max_tasks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<u32>,
    /// The target's own knobs (a scenario's `[target.NAME]`), by [`KNOBS`]' names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub knobs: BTreeMap<String, Knob>,
    /// The tasks to cancel after submission (a scenario's `[[cancel]]`), by `after_ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel: Vec<Cancel>,
    /// End the pool by `close` then a `join` bounded by this; past it, `join-timed-out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_timeout_ms: Option<u64>,
    pub tasks: Vec<Task>,
}

/// A task the owner cancels through its handle (`apply_async`'s, or a
/// future's `cancel()`), `after_ms` after it submitted the last task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The task's index in the plan.
    pub task: usize,
    pub after_ms: u64,
}

/// How a knob's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobUnit {
    /// A duration in seconds, more than 0 (a fraction is allowed), as the Python pools take it.
    Seconds,
    /// A whole number, at least 1.
    Count,
}

/// A knob's value, as the plan carries it (a JSON number).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Knob {
    Count(u64),
    Seconds(f64),
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Knob::Count(n) => write!(f, "{n}"),
            Knob::Seconds(s) => write!(f, "{s} s"),
        }
    }
}

/// The knobs of a pool's own that a scenario's `[target.NAME]` table may
/// set: (target, knob, unit, what the target does with it). The Python
/// adapter's classes name the same (`Target.knobs`; a test holds both
/// sides together).
pub const KNOBS: [(&str, &str, KnobUnit, &str); 10] = [
    (
        "py-billiard",
        "lost_worker_timeout",
        KnobUnit::Seconds,
        "how long a lost worker's job waits before WorkerLostError",
    ),
    ("py-billiard", "soft_timeout", KnobUnit::Seconds, "the soft time limit: SoftTimeLimitExceeded raised in the task"),
    ("py-billiard", "timeout", KnobUnit::Seconds, "the hard time limit: the task's worker is killed"),
    (
        "py-billiard",
        "max_memory_per_child",
        KnobUnit::Count,
        "KiB of RSS past which a worker is replaced after its task",
    ),
    ("py-pebble", "timeout", KnobUnit::Seconds, "schedule's and map's timeout: the task is stopped, its worker killed"),
    ("py-loky", "timeout", KnobUnit::Seconds, "get_reusable_executor's timeout: an idle worker exits after it"),
    ("supervised", "window", KnobUnit::Count, "the most tasks in flight on one worker"),
    ("supervised", "rss_ceiling_kib", KnobUnit::Count, "a worker past this RSS is recycled between tasks"),
    ("polling", "poll_interval_ms", KnobUnit::Count, "how often the pool looks at what its reaper reported"),
    ("seed-polling", "poll_interval_ms", KnobUnit::Count, "how often the pool samples its workers"),
];

/// The exception classes by which pickle itself refuses a value: what an
/// `unpicklable` fault's error must name.
pub const PICKLE_REFUSALS: [&str; 2] = ["PicklingError", "TypeError"];

/// The exception class a Python-only raising fault's `task` error must
/// name (pickle's own for `unpicklable`), or None for any other kind.
pub fn raised_as(kind: FaultKind) -> Option<&'static [&'static str]> {
    match kind {
        FaultKind::Unpicklable => Some(&PICKLE_REFUSALS),
        FaultKind::MemoryError => Some(&["MemoryError"]),
        FaultKind::BaseException => Some(&["InjectedBaseException"]),
        _ => None,
    }
}

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
    /// A worker got past its start (from the trace pipe; our private-mode workers only).
    WorkerUp { pid: u32 },
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
    /// The plan places a fault at a stage this target does not have (or
    /// its call style lacks): which, and why. Nothing ran.
    NotApplicable { point: String, reason: String },
    /// The owner could not do what it was asked.
    OwnerError { message: String },
    /// The pool's `join`, bounded by the plan's `join_timeout_ms`, timed out
    /// (the owner then joined it without a bound).
    JoinTimedOut { timeout_ms: u64 },
    /// The owner wrote a line on stdout that is not an event (logged by the harness).
    Malformed { line: String, error: String },
    /// The nemesis sent `signal` to `pid`.
    Nemesis { signal: Signal, pid: u32, target: String },
    /// The nemesis did not send a strike that was due: its victim was no
    /// longer mid-task (`reason`: the task had finished, the worker exited).
    StrikeWithheld { signal: Signal, pid: u32, target: String, reason: String },
    /// The run's deadline passed; everything is being killed.
    Deadline,
    /// The harness set the run's `pids.max` to `max`, below its count (the
    /// `spawn` point): from here on the kernel refuses every fork in the run.
    PidsLimited { max: u64 },
    /// The owner process ended.
    OwnerExit { signal: Option<i32>, code: Option<i32> },
    /// A process outlived the run.
    Leak { pid: u32, what: String },
    /// The sandbox's OOM kill count had risen when the SIGKILLed worker
    /// `pid`'s exit was seen (and the nemesis had not struck it): the OOM
    /// killer's. `simulated`: the count is the RSS watchdog's, not the kernel's.
    OomKill { pid: u32, simulated: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// An error: its kind, what it names, and its text.
    Error {
        kind: ErrorKind,
        pid: Option<u32>,
        signal: Option<i32>,
        code: Option<i32>,
        attempts: Option<u32>,
        message: String,
    },
}

/// Parses a `start|done <tag> <attempt> <pid>` (or `up 0 0 <pid>`) trace line.
pub fn parse_trace(line: &str) -> Option<Event> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [what, tag, attempt, pid] = fields[..] else { return None };
    let (tag, attempt, pid) = (tag.parse().ok()?, attempt.parse().ok()?, pid.parse().ok()?);
    match what {
        "start" => Some(Event::TaskStarted { tag, attempt, pid }),
        "done" => Some(Event::TaskDone { tag, attempt, pid }),
        "up" => Some(Event::WorkerUp { pid }),
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
                    TaskError::Task { .. } => (ErrorKind::Task, None, None, None),
                    TaskError::WorkerLost { pid, exit, attempts } => {
                        (ErrorKind::WorkerLost, Some(*pid), Some(*exit), Some(*attempts))
                    }
                    TaskError::TimedOut { pid, attempts, .. } => {
                        (ErrorKind::TimedOut, Some(*pid), None, Some(*attempts))
                    }
                    TaskError::PoolBroken { pid, exit } => (ErrorKind::PoolBroken, Some(*pid), Some(*exit), None),
                    TaskError::Terminated => (ErrorKind::Terminated, None, None, None),
                    TaskError::SpawnFailed { .. } => (ErrorKind::SpawnFailed, None, None, None),
                };
                OutcomeRecord::Error {
                    kind,
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

/// Whose OOM kill a worker's death was ([`Event::OomKill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OomMark {
    /// The kernel's OOM killer (the run's memory cgroup counted it).
    Kernel,
    /// The RSS watchdog's SIGKILL: a simulated OOM.
    Simulated,
}

impl OomMark {
    pub fn name(self) -> &'static str {
        match self {
            OomMark::Kernel => "oom",
            OomMark::Simulated => "simulated-oom",
        }
    }
}

/// What a run came to. Ordered by how bad it is: when a run shows several,
/// the worst names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The target could not run here (a package is missing); never a pass.
    Skipped,
    /// The plan places a fault at a stage the target does not have (or its
    /// call style lacks): nothing ran. As expected only where the scenario
    /// says so.
    NotApplicable,
    /// Every task has exactly one outcome, its correct result.
    Completed,
    /// Every task has exactly one outcome; the errors name the fault.
    FailedLoudly,
    /// The plan killed the pool's owner, and nothing of the run outlived it.
    OwnerKilled,
    /// The kernel's OOM killer (or the RSS watchdog, simulated) killed the
    /// pool's owner, which the plan did not kill: it held more than the
    /// run's memory limit (results gathered in the parent), and its pending
    /// tasks went with it. A failure of the pool's memory use, not a lost
    /// task; a task that got a wrong or second outcome still makes it `lost`.
    OwnerOom,
    /// The run finished, but a task has no outcome, two, or a wrong result.
    Lost,
    /// The deadline passed with tasks pending, or the run missed a liveness
    /// bound of the scenario's own (a time bound of `[expect]`, a join past
    /// `join_timeout_ms`).
    Hung,
    /// A process, cgroup or temp file of the run outlived it.
    Leaked,
    /// The target broke the owner protocol (a line that is not an event, an
    /// outcome for a task not in the plan) or did not start (it exited before
    /// `ready`, or exited 0 without `finished`): the run says nothing about
    /// the pool. Never as expected.
    TargetError,
}

impl Verdict {
    pub const ALL: [Verdict; 10] = [
        Verdict::Skipped,
        Verdict::NotApplicable,
        Verdict::Completed,
        Verdict::FailedLoudly,
        Verdict::OwnerKilled,
        Verdict::OwnerOom,
        Verdict::Lost,
        Verdict::Hung,
        Verdict::Leaked,
        Verdict::TargetError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Skipped => "skipped",
            Verdict::NotApplicable => "not-applicable",
            Verdict::Completed => "completed",
            Verdict::FailedLoudly => "failed-loudly",
            Verdict::OwnerKilled => "owner-killed",
            Verdict::OwnerOom => "owner-oom",
            Verdict::Lost => "lost",
            Verdict::Hung => "hung",
            Verdict::Leaked => "leaked",
            Verdict::TargetError => "target-error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<_> = Verdict::ALL.iter().map(|v| v.name()).collect();
            format!("unknown verdict {s:?} (known: {})", names.join(", "))
        })
    }
}

/// An error as reports name it: its kind and how the worker it names ended.
/// Written `worker-lost(sigkill)`, `worker-lost(sigkill, oom)`,
/// `pool-broken(exit 0)`, `task`: so in `report.json`, which reads back.
/// Errors sort as those names do, so reports list them in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorName {
    pub kind: ErrorKind,
    /// How the worker ended, where the error says.
    pub exit: Option<WorkerEnd>,
}

/// How the worker an error names ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerEnd {
    /// By a signal; `oom`: the kill was an OOM kill (the kernel's or the RSS watchdog's).
    Signal { signal: i32, oom: Option<OomMark> },
    /// By an exit code.
    Exit(i32),
}

impl ErrorName {
    /// The name of an error of `kind` whose worker ended by `signal` or
    /// `code` (if the error says); `oom` marks a signal an OOM kill.
    pub fn new(kind: ErrorKind, signal: Option<i32>, code: Option<i32>, oom: Option<OomMark>) -> ErrorName {
        let exit = match (signal, code) {
            (Some(signal), _) => Some(WorkerEnd::Signal { signal, oom }),
            (None, Some(code)) => Some(WorkerEnd::Exit(code)),
            (None, None) => None,
        };
        ErrorName { kind, exit }
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        match self.exit {
            None => write!(f, "{kind}"),
            Some(WorkerEnd::Exit(code)) => write!(f, "{kind}(exit {code})"),
            Some(WorkerEnd::Signal { signal, oom: None }) => write!(f, "{kind}({})", signal_name(signal)),
            Some(WorkerEnd::Signal { signal, oom: Some(mark) }) => {
                write!(f, "{kind}({}, {})", signal_name(signal), mark.name())
            }
        }
    }
}

impl std::str::FromStr for ErrorName {
    type Err = String;

    /// Reads back what [`fmt::Display`] writes (a `report.json` read by `campaign merge`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an error name like worker-lost(sigkill)");
        let (kind, exit) = match s.strip_suffix(')').and_then(|s| s.split_once('(')) {
            Some((kind, exit)) => (kind, Some(exit)),
            None => (s, None),
        };
        let kind = ErrorKind::ALL.into_iter().find(|k| k.name() == kind).ok_or_else(bad)?;
        let exit = match exit {
            None => None,
            Some(exit) => Some(match exit.strip_prefix("exit ") {
                Some(code) => WorkerEnd::Exit(code.parse().map_err(|_| bad())?),
                None => {
                    let (signal, oom) = match exit.split_once(", ") {
                        Some((signal, mark)) => {
                            let mark = [OomMark::Kernel, OomMark::Simulated].into_iter().find(|m| m.name() == mark);
                            (signal, Some(mark.ok_or_else(bad)?))
                        }
                        None => (exit, None),
                    };
                    WorkerEnd::Signal { signal: signal_number(signal).ok_or_else(bad)?, oom }
                }
            }),
        };
        Ok(ErrorName { kind, exit })
    }
}

impl Ord for ErrorName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for ErrorName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for ErrorName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ErrorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_hex_in_a_plan_and_raw_bytes_to_a_worker() {
        let task = Task::echo(1, vec![0, 0xab, b'x']);
        let json = serde_json::to_string(&task).unwrap();
        assert!(json.contains(r#"{"echo":"00ab78"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
        let listed = json.replace(r#""00ab78""#, "[0,171,120]");
        assert_eq!(serde_json::from_str::<Task>(&listed).unwrap(), task, "a list of numbers reads too");
        assert!(serde_json::from_str::<Task>(&json.replace("00ab78", "0xab78")).is_err());
    }

    #[test]
    fn owner_events_are_named_as_they_serialize() {
        let events = [
            Event::Ready { pid: 1 },
            Event::WarmedUp,
            Event::Outcome { index: 0, result: OutcomeRecord::Ok },
            Event::Duplicate { index: 0 },
            Event::Callback { kind: CallbackKind::Result },
            Event::WorkerExit { pid: 1, signal: None, code: Some(0) },
            Event::Timed { us: 1 },
            Event::Finished,
            Event::Skipped { reason: String::new() },
            Event::NotApplicable { point: String::new(), reason: String::new() },
            Event::OwnerError { message: String::new() },
            Event::JoinTimedOut { timeout_ms: 1 },
        ];
        let names: Vec<String> =
            events.iter().map(|e| serde_json::to_value(e).unwrap()["event"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, OWNER_EVENTS);
    }

    #[test]
    fn names_read_back() {
        for (name, kind) in FAULT_KINDS {
            assert_eq!((fault_kind(name), fault_kind_name(kind)), (Some(kind), name.to_string()));
        }
        for (name, point) in FAULT_POINTS {
            assert_eq!((fault_point(name), fault_point_name(point)), (Some(point), name));
            assert_eq!(serde_json::to_value(point).unwrap(), name, "one spelling: the wire's is the scenario's");
        }
        // One spelling: a fault kind's wire name is its scenario name (`exit` carries its code apart).
        for (name, kind) in FAULT_KINDS {
            let wire = serde_json::to_value(kind).unwrap();
            match kind {
                FaultKind::Exit(code) => {
                    assert_eq!((wire, name), (serde_json::json!({ "exit": code }), &*format!("exit{code}")))
                }
                _ => assert_eq!(wire, name),
            }
        }
        // Every point has its name, in pipeline order.
        assert_eq!(FAULT_POINTS.map(|(_, p)| p), pools::FaultPoint::ALL);
        for kind in ErrorKind::ALL {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        let name = |oom| ErrorName::new(ErrorKind::WorkerLost, Some(9), None, oom).to_string();
        assert_eq!(name(None), "worker-lost(sigkill)");
        assert_eq!(name(Some(OomMark::Kernel)), "worker-lost(sigkill, oom)");
        assert_eq!(name(Some(OomMark::Simulated)), "worker-lost(sigkill, simulated-oom)");
        assert_eq!(
            ErrorName::new(ErrorKind::PoolBroken, None, Some(0), Some(OomMark::Kernel)).to_string(),
            "pool-broken(exit 0)"
        );
    }

    #[test]
    fn error_names_read_back_and_sort_as_written() {
        let names = [
            "pool-broken(exit 0)",
            "pool-broken(sigsegv)",
            "task",
            "timed-out",
            "worker-lost(exit 1)",
            "worker-lost(sigkill)",
            "worker-lost(sigkill, oom)",
            "worker-lost(sigkill, simulated-oom)",
            "worker-lost(signal 42)",
        ];
        let parsed: Vec<ErrorName> = names.iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(parsed.iter().map(ErrorName::to_string).collect::<Vec<_>>(), names);
        let mut sorted = parsed.clone();
        sorted.sort();
        assert_eq!(sorted, parsed, "sorted as the names sort");
        assert_eq!(
            parsed[6],
            ErrorName {
                kind: ErrorKind::WorkerLost,
                exit: Some(WorkerEnd::Signal { signal: 9, oom: Some(OomMark::Kernel) })
            }
        );
        let json = serde_json::to_string(&std::collections::BTreeMap::from([(parsed[1], 2)])).unwrap();
        assert_eq!(json, r#"{"pool-broken(sigsegv)":2}"#);
        for bad in ["worker-lost(sigkil)", "lost(sigkill)", "task(exit x)", "worker-lost(sigkill, om)", "task("] {
            assert!(bad.parse::<ErrorName>().is_err(), "{bad}");
        }
    }
}
