//! The record of one (scenario, pool) run that every report is made from,
//! and what it holds. [`Verdict`] is the protocol's (scenario files name
//! verdicts) and [`FaultRecord`] the plan's: both are re-exported here, and
//! live below `scenario` so that it does not import this module.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use pools::CallStyle;

pub use crate::protocol::Verdict;
use crate::protocol::{ErrorKind, ErrorName};
pub use crate::scenario::plan::FaultRecord;
use crate::target::Target;

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
    /// Written by its name (`supervised`, `py-pool-map@3.13/spawn`, `custom`).
    #[serde(with = "crate::protocol::target_name")]
    pub pool: Target,
    #[serde(with = "crate::protocol::style_name")]
    pub style: CallStyle,
    pub verdict: Verdict,
    pub expected: Option<Verdict>,
    pub tasks: TaskCounts,
    /// Errors by name (`worker-lost(sigkill)`, `timed-out`, ...) and how many tasks got each.
    pub errors: BTreeMap<ErrorName, usize>,
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
        let error_met = peer.error.is_none_or(|kind| run.errors.keys().any(|name| name.kind == kind));
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
