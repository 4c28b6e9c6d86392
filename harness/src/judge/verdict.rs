//! Verdicts, and the record of one (scenario, pool) run that every report is
//! made from.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::protocol::ErrorKind;

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

impl FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<_> = Verdict::ALL.iter().map(|v| v.name()).collect();
            format!("unknown verdict {s:?} (known: {})", names.join(", "))
        })
    }
}

/// How the tasks of a run ended, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub total: usize,
    /// Exactly one outcome, the correct result.
    pub ok: usize,
    /// Exactly one outcome, an error.
    pub failed: usize,
    /// No outcome at all.
    pub lost: usize,
    /// More than one outcome.
    pub duplicated: usize,
    /// A result that is not the task's.
    pub wrong: usize,
    /// Failed tasks that no fault touched (counted in `failed` too): a
    /// safety finding, unless the pool fails bystanders by design.
    #[serde(default)]
    pub bystanders: usize,
}

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

/// A worker process that ended during the run, as its pool reaped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub pid: u32,
    pub signal: Option<i32>,
    pub code: Option<i32>,
}

/// Everything a report says about one (scenario, pool) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub scenario: String,
    pub pool: String,
    pub style: String,
    pub verdict: Verdict,
    pub expected: Option<Verdict>,
    pub tasks: TaskCounts,
    /// Error kinds (`worker-lost(sigkill)`, `timed-out`, ...) and how many tasks got each.
    pub errors: BTreeMap<String, usize>,
    pub faults: Vec<FaultRecord>,
    pub worker_exits: Vec<ExitRecord>,
    /// OOM kills the run's memory cgroup counted (or, under the RSS
    /// watchdog, the watchdog's kills: simulated).
    pub oom_kills: u64,
    /// The sandbox's mechanism, and why the watchdog, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<crate::run::sandbox::Mechanism>,
    /// What outlived the run: the verdict is `leaked`, unless the run hung
    /// and these are what the teardown's kill left.
    pub leaks: Vec<Leak>,
    /// The safety invariants the run broke, in words (the checker's findings).
    #[serde(default)]
    pub findings: Vec<String>,
    /// For a hung or lost run: which tasks were pending, on which workers, and how those ended.
    pub diagnosis: Vec<String>,
    pub elapsed_ms: u64,
    /// The run's event log, relative to the report directory.
    pub events: Option<String>,
    /// The peer's own expectation, where this run is of the peer's pool in a
    /// scenario that reproduces a peer's test, and whether the run met it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerCheck>,
    /// Which repeat of its cell this run is (from 1), under `run --repeat N` with N > 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

/// A run of a peer's pool held to the peer's own test's expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCheck {
    /// The peer's test.
    pub test: String,
    /// What the peer's test expects the call to raise.
    pub raises: String,
    /// That outcome as our verdict ...
    pub verdict: Verdict,
    /// ... and error kind.
    pub error: Option<ErrorKind>,
    /// Whether the run reached that verdict and, if named, a task got that error kind.
    pub matched: bool,
}

impl PeerCheck {
    /// The check of `run` against `peer`'s expectation.
    pub fn of(peer: &crate::scenario::Peer, run: &RunRecord) -> PeerCheck {
        let kind_of = |name: &String| name.split('(').next().unwrap_or_default().to_string();
        let error_met = peer.error.is_none_or(|k| run.errors.keys().any(|name| kind_of(name) == k.name()));
        PeerCheck {
            test: peer.test.clone(),
            raises: peer.raises.clone(),
            verdict: peer.verdict,
            error: peer.error,
            matched: run.verdict == peer.verdict && error_met,
        }
    }
}

impl RunRecord {
    /// Whether the verdict is the one the scenario expects (no expectation:
    /// yes). A skipped run meets no expectation and breaks none: reports
    /// count it apart. A target error breaks every one.
    pub fn as_expected(&self) -> bool {
        match self.verdict {
            Verdict::Skipped => true,
            Verdict::TargetError => false,
            verdict => self.expected.is_none_or(|e| e == verdict),
        }
    }
}

/// Something of a run that outlived it (then removed by the teardown).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Leak {
    /// A process of the run still alive a grace after its owner exited.
    Process { pid: u32, what: String },
    /// A file left in the run's temp directory (the target's cwd and `TMPDIR`).
    TempFile { path: String },
    /// A named semaphore in `/dev/shm` that the run's processes held.
    Semaphore { path: String },
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leak::Process { pid, what } => write!(f, "process {pid} ({what})"),
            Leak::TempFile { path } => write!(f, "temp file {path}"),
            Leak::Semaphore { path } => write!(f, "semaphore {path}"),
        }
    }
}
