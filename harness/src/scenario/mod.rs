//! Scenario files: what people write in `scenarios/*.toml`.
//!
//! A scenario says how big the pool is, which tasks to run and in which call
//! style, which faults to place (in the tasks, from outside, at random), how
//! long the run may take, and which verdict each pool is expected to reach.
//! The format, by example:
//!
//! ```toml
//! description = "The seed's program: one worker, one long task, SIGKILLed mid-task."
//! workers = 1
//! style = "map"                 # map | apply | apply-async | map-async
//! deadline_ms = 3000            # past this the run is hung and torn down
//! memory_limit_mib = 256        # the run's memory cgroup (optional)
//! task_timeout_ms = 1000        # per-task deadline, for pools that have one (optional)
//! max_attempts = 3              # supervised's attempts per task (optional)
//! chunksize = 4                 # map's chunksize, where the target's map takes one (optional)
//! max_tasks = 2                 # tasks per worker before it is replaced (optional)
//! join_timeout_ms = 2000        # close, then a join bounded by this (optional)
//!
//! [[tasks]]                     # a group of tasks, tagged in file order
//! count = 1
//! work = { sleep_ms = 1000 }    # echo | spin_us | sleep_ms | alloc_mib | large_bytes
//! fault = { kind = "sigkill", at = "mid-task" }   # self-placed, optional
//!
//! [[nemesis]]                   # faults from outside
//! signal = "sigkill"            # sigkill | sigstop
//! target = "task"               # task | idle-worker | random-worker | owner
//! task = 0
//! after_ms = 300
//!
//! [random]                      # self-placed faults at random, from the seed
//! rate = 0.03
//! kinds = ["sigkill"]
//!
//! [[cancel]]                    # a task cancelled after_ms after the last submit (apply-async)
//! task = 0
//! after_ms = 500
//!
//! [storm]                       # a random worker every_ms from ready, from outside
//! signal = "sigkill"
//! every_ms = 50
//!
//! [target.py-billiard]          # a pool's own knobs (`protocol::KNOBS`)
//! lost_worker_timeout = 2
//!
//! [expect]                      # the pools to run, and what each must reach
//! naive = "hung"
//! supervised = "completed"
//! errors_by_ms = 2000           # time bounds, from the pool's ready (optional)
//! ```
//!
//! Every mistake is reported with the file, line and column, and the field.

pub mod help;
pub mod plan;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pools::{CallStyle, FaultKind, FaultPoint, Workload};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::protocol::Verdict;
use crate::protocol::{
    self, Cancel, ErrorKind, FAULT_KINDS, FAULT_POINTS, KNOBS, Knob, KnobUnit, Signal, call_style, fault_kind,
    fault_point,
};
use crate::target::Target;

/// The most tasks a scenario may run, in all.
pub const MAX_TASKS: usize = 100_000;
/// The most workers a pool may have.
pub const MAX_WORKERS: usize = 256;
/// The longest deadline, strike delay or timeout, in ms (a day).
pub const MAX_MS: u64 = 24 * 3600 * 1000;
/// The largest echo payload (a task's argument), in bytes: 16 MiB. Each
/// task of a plan holds its own copy, and the plan reaches its owner as one
/// JSON line (an echo as hex, two characters a byte), so the scenario's
/// echoes together are held to [`MAX_ECHO_TOTAL`].
pub const MAX_ECHO_BYTES: u32 = 16 << 20;
/// The most echo bytes a scenario's tasks carry in all: 64 MiB.
pub const MAX_ECHO_TOTAL: u64 = 64 << 20;
/// The largest result a task may return, in bytes (256 MiB).
pub const MAX_RESULT_BYTES: u32 = 256 << 20;

/// A scenario, read and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file name without `.toml`.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub workers: usize,
    pub style: CallStyle,
    pub deadline_ms: u64,
    pub memory_limit_mib: Option<u64>,
    pub task_timeout_ms: Option<u64>,
    pub max_attempts: u32,
    pub seed: Option<u64>,
    pub tasks: Vec<TaskGroup>,
    pub nemesis: Vec<Nemesis>,
    pub random: Option<RandomFaults>,
    pub storm: Option<Storm>,
    /// The pools to run, in order, and the verdict each is expected to reach.
    pub expect: Vec<(Target, Verdict)>,
    /// The peer's own test this scenario reproduces, and what it expects.
    pub peer: Option<Peer>,
    /// What the pools' own tests set besides tasks and faults.
    pub options: Options,
}

/// What the pools' own tests set besides tasks and faults: the call's
/// chunksize, the tasks per worker, each target's own knobs, the time
/// bounds of `[expect]`, tasks to cancel, and a join's timeout. A target without one of these reports the run
/// `not-applicable`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `map`'s chunksize, for the targets whose map takes one.
    pub chunksize: Option<usize>,
    /// Tasks a worker runs before the pool replaces it.
    pub max_tasks: Option<u32>,
    /// `[target.NAME]`: a target's own knobs (by its base name), as [`protocol::KNOBS`] lists them.
    pub knobs: BTreeMap<Target, BTreeMap<String, Knob>>,
    pub bounds: TimeBounds,
    /// `[[cancel]]`: tasks the owner cancels after submitting them (`apply-async` only).
    pub cancel: Vec<Cancel>,
    /// The pool is ended by `close` and a `join` bounded by this; past it the run is hung.
    pub join_timeout_ms: Option<u64>,
}

/// Time bounds in `[expect]`, judged from the event log's times, counted
/// from the moment the owner's pool was ready (after its warm-up, if any).
/// A run past one is `hung`: it missed a liveness bound of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeBounds {
    /// Every task has its outcome by then (`call_ms`).
    pub call_ms: Option<u64>,
    /// Every error has arrived by then (`errors_by_ms`).
    pub errors_by_ms: Option<u64>,
}

/// A peer's test (CPython's, loky's) that a scenario reproduces: its name,
/// the target that is the peer's pool, and the peer's own outcome mapped to
/// ours (its exception type as our verdict and error kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's test, e.g. `CPython test_deadlock ExecutorDeadlockTest.test_error_at_task_pickle`.
    pub test: String,
    /// The target that is the peer's pool (`py-ppe`, `py-loky`).
    pub target: Target,
    /// What the peer's test expects the call to raise (`PicklingError`), in its words.
    pub raises: String,
    pub verdict: Verdict,
    /// The error kind the faulted task must get, if the peer's test says.
    pub error: Option<ErrorKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGroup {
    pub count: usize,
    pub work: Workload,
    pub fault: Option<SelfFault>,
}

/// A fault a task places on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfFault {
    pub kind: FaultKind,
    pub at: FaultPoint,
    /// On how many attempts it fires (`u32::MAX`: every one, a poison task).
    pub times: u32,
}

/// Whom the nemesis signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// The worker running task N, `after_ms` into it.
    Task(usize),
    /// After a warm-up task, the idle worker blocked in its read of the task
    /// channel (in `naive`, the holder of the inqueue lock); then the batch runs.
    IdleWorker,
    /// A random live worker (one running a task, if any), `after_ms` after the pool is ready.
    RandomWorker,
    /// The pool's owner, `after_ms` after the pool is ready.
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nemesis {
    pub signal: Signal,
    pub target: Aim,
    pub after_ms: u64,
}

/// Self-placed faults at random: each task carries one with probability `rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFaults {
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
    pub points: Vec<FaultPoint>,
}

/// A random live worker (one running a task, if any) signalled every `every_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storm {
    pub signal: Signal,
    pub every_ms: u64,
}

/// A bad scenario file: where, which field, what is wrong. Line 0: the
/// path itself (unreadable, or no scenario in it).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The field's path in the file, e.g. `tasks[1].fault.kind`.
    pub field: String,
    pub message: String,
}

impl ScenarioError {
    fn describe(&self) -> String {
        match self.line {
            0 => format!("{}: {}", self.path.display(), self.message),
            line => format!("{}:{line}:{}: {}: {}", self.path.display(), self.column, self.field, self.message),
        }
    }
}

impl Scenario {
    /// How many tasks the scenario runs.
    pub fn task_count(&self) -> usize {
        self.tasks.iter().map(|g| g.count).sum()
    }

    /// The scenario as a file that reads back to the same scenario (how
    /// campaigns save a reproducer). `header` lines become comments on top.
    pub fn to_toml(&self, header: &[String]) -> String {
        let file = Written {
            description: &self.description,
            workers: self.workers,
            style: self.style.name(),
            deadline_ms: self.deadline_ms,
            memory_limit_mib: self.memory_limit_mib,
            task_timeout_ms: self.task_timeout_ms,
            max_attempts: self.max_attempts,
            seed: self.seed,
            tasks: self.tasks.iter().map(WrittenGroup::from).collect(),
            nemesis: self.nemesis.iter().map(WrittenNemesis::from).collect(),
            random: self.random.as_ref().map(|r| WrittenRandom {
                rate: r.rate,
                kinds: r.kinds.iter().map(|k| protocol::fault_kind_name(*k)).collect(),
                points: r.points.iter().map(|p| protocol::fault_point_name(*p)).collect(),
            }),
            storm: self.storm.map(|s| WrittenStorm { signal: s.signal, every_ms: s.every_ms }),
            expect: self.written_expect(),
            chunksize: self.options.chunksize,
            max_tasks: self.options.max_tasks,
            cancel: self.options.cancel.iter().map(|c| WrittenCancel { task: c.task, after_ms: c.after_ms }).collect(),
            join_timeout_ms: self.options.join_timeout_ms,
            target: self.options.knobs.iter().map(|(t, knobs)| (t.name(), knobs.clone())).collect(),
            peer: self.peer.as_ref().map(|p| WrittenPeer {
                test: &p.test,
                target: p.target.name(),
                raises: &p.raises,
                verdict: p.verdict.name(),
                error: p.error.map(ErrorKind::name),
            }),
        };
        let mut out: String = header.iter().map(|line| format!("# {line}\n")).collect();
        // Every knob is a number: it always serializes.
        // Every field is a string, a number, a list or a table of those: it always serializes.
        out += &toml::to_string(&file).unwrap_or_else(|e| format!("# not written: {e}\n"));
        out
    }
}

impl Scenario {
    /// `[expect]` as written back: each pool's verdict, then the time bounds.
    fn written_expect(&self) -> BTreeMap<String, WrittenExpect> {
        let mut expect: BTreeMap<String, WrittenExpect> =
            self.expect.iter().map(|(pool, verdict)| (pool.name(), WrittenExpect::Verdict(verdict.name()))).collect();
        let bounds = self.options.bounds;
        for (key, ms) in [(CALL_MS, bounds.call_ms), (ERRORS_BY_MS, bounds.errors_by_ms)] {
            if let Some(ms) = ms {
                expect.insert(key.to_string(), WrittenExpect::Ms(ms));
            }
        }
        expect
    }
}

/// The time bounds' keys in `[expect]` (beside the pools' names).
const CALL_MS: &str = "call_ms";
const ERRORS_BY_MS: &str = "errors_by_ms";

#[derive(Serialize)]
#[serde(untagged)]
enum WrittenExpect {
    Verdict(&'static str),
    Ms(u64),
}

// The file as written back (`to_toml`): the same fields as `Raw`, from a checked scenario.

#[derive(Serialize)]
struct Written<'a> {
    description: &'a str,
    workers: usize,
    style: &'static str,
    deadline_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_limit_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_timeout_ms: Option<u64>,
    max_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    tasks: Vec<WrittenGroup>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nemesis: Vec<WrittenNemesis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    random: Option<WrittenRandom>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storm: Option<WrittenStorm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunksize: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tasks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cancel: Vec<WrittenCancel>,
    expect: BTreeMap<String, WrittenExpect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<WrittenPeer<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    target: BTreeMap<String, BTreeMap<String, Knob>>,
}

#[derive(Serialize)]
struct WrittenPeer<'a> {
    test: &'a str,
    target: String,
    raises: &'a str,
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

#[derive(Serialize)]
struct WrittenGroup {
    count: usize,
    work: RawWork,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<WrittenFault>,
}

impl From<&TaskGroup> for WrittenGroup {
    fn from(g: &TaskGroup) -> Self {
        let work = match &g.work {
            Workload::Echo(bytes) => RawWork::Echo(bytes.len() as u32),
            Workload::Spin { us } => RawWork::SpinUs(*us),
            Workload::Sleep { ms } => RawWork::SleepMs(*ms),
            Workload::Alloc { mib, .. } => RawWork::AllocMib(*mib),
            Workload::Large { bytes } => RawWork::LargeBytes(*bytes),
        };
        let fault = g.fault.map(|f| WrittenFault {
            kind: protocol::fault_kind_name(f.kind),
            at: protocol::fault_point_name(f.at),
            times: if f.times == u32::MAX { Times::Always("always") } else { Times::Attempts(f.times) },
        });
        WrittenGroup { count: g.count, work, fault }
    }
}

#[derive(Serialize)]
struct WrittenFault {
    kind: String,
    at: &'static str,
    times: Times,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Times {
    Attempts(u32),
    Always(&'static str),
}

#[derive(Serialize)]
struct WrittenNemesis {
    signal: Signal,
    target: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<usize>,
    after_ms: u64,
}

impl From<&Nemesis> for WrittenNemesis {
    fn from(n: &Nemesis) -> Self {
        let (target, task) = match n.target {
            Aim::Task(task) => ("task", Some(task)),
            Aim::IdleWorker => ("idle-worker", None),
            Aim::RandomWorker => ("random-worker", None),
            Aim::Owner => ("owner", None),
        };
        WrittenNemesis { signal: n.signal, target, task, after_ms: n.after_ms }
    }
}

#[derive(Serialize)]
struct WrittenCancel {
    task: usize,
    after_ms: u64,
}

#[derive(Serialize)]
struct WrittenRandom {
    rate: f64,
    kinds: Vec<String>,
    points: Vec<&'static str>,
}

#[derive(Serialize)]
struct WrittenStorm {
    signal: Signal,
    every_ms: u64,
}

/// Reads every `*.toml` under the given files and directories, sorted by
/// name (a directory with none reads those of its subdirectories: a
/// directory of sets, as `scenarios/peers`). Fails on the first bad file;
/// nothing runs then.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, ScenarioError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let listing = |dir: &Path| -> Result<Vec<PathBuf>, ScenarioError> {
                let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
                let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                paths.sort();
                Ok(paths)
            };
            let is_toml = |p: &PathBuf| p.extension().is_some_and(|x| x == "toml");
            let entries = listing(path)?;
            let mut found: Vec<PathBuf> = entries.iter().filter(|p| is_toml(p)).cloned().collect();
            // A directory of scenario sets (`scenarios/peers`): the sets' files, set by set.
            if found.is_empty() {
                for dir in entries.iter().filter(|p| p.is_dir()) {
                    found.extend(listing(dir)?.into_iter().filter(|p| is_toml(p)));
                }
            }
            if found.is_empty() {
                return Err(ScenarioError {
                    path: path.clone(),
                    line: 0,
                    column: 0,
                    field: "-".into(),
                    message: "no scenario files (*.toml) in this directory".into(),
                });
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|f| load(f)).collect()
}

fn io_error(path: &Path, e: std::io::Error) -> ScenarioError {
    ScenarioError { path: path.to_owned(), line: 0, column: 0, field: "-".into(), message: e.to_string() }
}

/// Reads and checks one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    parse(path, &text)
}

/// Parses and checks scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let error = |span: Option<Range<usize>>, field: &str, message: String| {
        let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ScenarioError { path: path.to_owned(), line, column, field: field.to_string(), message }
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| error(e.span(), "-", first_line(e.message())))?;
    let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> shows up in the path as a private field; people never wrote it.
        let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        error(inner.span(), &field, first_line(inner.message()))
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    raw.check(name, path, &error)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// 1-based line and column of byte `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

// The file as written, before the checks.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    description: String,
    workers: Spanned<usize>,
    #[serde(default = "default_style")]
    style: Spanned<String>,
    deadline_ms: Spanned<u64>,
    memory_limit_mib: Option<Spanned<u64>>,
    task_timeout_ms: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u32>>,
    seed: Option<u64>,
    tasks: Spanned<Vec<RawGroup>>,
    #[serde(default)]
    nemesis: Vec<RawNemesis>,
    random: Option<RawRandom>,
    storm: Option<RawStorm>,
    chunksize: Option<Spanned<usize>>,
    max_tasks: Option<Spanned<u32>>,
    #[serde(default)]
    cancel: Vec<RawCancel>,
    join_timeout_ms: Option<Spanned<u64>>,
    /// Pools' verdicts, and the time bounds (numbers).
    expect: Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    peer: Option<RawPeer>,
    /// `[target.NAME]`: knobs by target.
    #[serde(default)]
    target: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    test: String,
    target: Spanned<String>,
    raises: String,
    verdict: Spanned<String>,
    error: Option<Spanned<String>>,
}

fn default_style() -> Spanned<String> {
    Spanned::new(0..0, "map".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default = "one")]
    count: Spanned<usize>,
    work: Spanned<RawWork>,
    fault: Option<RawFault>,
}

fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawWork {
    Echo(u32),
    SpinUs(u64),
    SleepMs(u64),
    AllocMib(u32),
    LargeBytes(u32),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: Spanned<String>,
    #[serde(default = "mid_task")]
    at: Spanned<String>,
    /// A number, or "always" for a poison task.
    times: Option<Spanned<toml::Value>>,
}

fn mid_task() -> Spanned<String> {
    Spanned::new(0..0, protocol::fault_point_name(FaultPoint::MidTask).to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNemesis {
    signal: Signal,
    target: Spanned<String>,
    task: Option<Spanned<usize>>,
    #[serde(default = "zero")]
    after_ms: Spanned<u64>,
}

fn zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRandom {
    rate: Spanned<f64>,
    kinds: Vec<Spanned<String>>,
    #[serde(default)]
    points: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCancel {
    task: Spanned<usize>,
    #[serde(default = "zero")]
    after_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorm {
    signal: Signal,
    every_ms: Spanned<u64>,
}

/// The names a field accepts, for error messages.
fn known<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

type ErrorAt<'a> = dyn Fn(Option<Range<usize>>, &str, String) -> ScenarioError + 'a;

impl Raw {
    /// The file, checked section by section, in the order its errors are reported.
    fn check(self, name: String, path: &Path, error: &ErrorAt<'_>) -> Result<Scenario, ScenarioError> {
        let (style, max_attempts) = self.check_run(error)?;
        let (tasks, total) = check_tasks(self.tasks, error)?;
        let nemesis = check_nemesis(self.nemesis, total, error)?;
        let random = self.random.map(|r| r.check(error)).transpose()?;
        let storm = match self.storm {
            Some(s) if *s.every_ms.get_ref() == 0 => {
                return Err(error(Some(s.every_ms.span()), "storm.every_ms", "must be more than 0".into()));
            }
            Some(s) => Some(Storm { signal: s.signal, every_ms: *s.every_ms.get_ref() }),
            None => None,
        };
        let (expect, bounds) = check_expect(self.expect, error)?;
        let options = Options {
            chunksize: at_least_one("chunksize", self.chunksize, error)?,
            max_tasks: at_least_one("max_tasks", self.max_tasks, error)?,
            knobs: check_knobs(self.target, &expect, error)?,
            bounds,
            cancel: check_cancels(self.cancel, total, style, error)?,
            join_timeout_ms: check_join_timeout(self.join_timeout_ms, error)?,
        };
        let peer = self.peer.map(|p| p.check(&expect, error)).transpose()?;
        Ok(Scenario {
            name,
            path: path.to_owned(),
            description: self.description,
            workers: *self.workers.get_ref(),
            style,
            deadline_ms: *self.deadline_ms.get_ref(),
            memory_limit_mib: self.memory_limit_mib.map(|m| *m.get_ref()),
            task_timeout_ms: self.task_timeout_ms.map(|t| *t.get_ref()),
            max_attempts,
            seed: self.seed,
            tasks,
            nemesis,
            random,
            storm,
            expect,
            peer,
            options,
        })
    }

    /// The run's own fields: workers, deadline, style, memory limit, task
    /// timeout; the call style and the attempts per task.
    fn check_run(&self, error: &ErrorAt<'_>) -> Result<(CallStyle, u32), ScenarioError> {
        let at = |s: Range<usize>| if s.is_empty() { None } else { Some(s) };
        if !(1..=MAX_WORKERS).contains(self.workers.get_ref()) {
            return Err(error(Some(self.workers.span()), "workers", format!("must be 1 to {MAX_WORKERS}")));
        }
        check_ms("deadline_ms", &self.deadline_ms, error)?;
        if let Some(t) = &self.task_timeout_ms {
            check_ms("task_timeout_ms", t, error)?;
        }
        let style = call_style(self.style.get_ref()).ok_or_else(|| {
            error(
                at(self.style.span()),
                "style",
                format!(
                    "unknown call style {:?} (known: {})",
                    self.style.get_ref(),
                    CallStyle::ALL.map(CallStyle::name).join(", ")
                ),
            )
        })?;
        if *self.deadline_ms.get_ref() == 0 {
            return Err(error(Some(self.deadline_ms.span()), "deadline_ms", "must be more than 0".into()));
        }
        if let Some(limit) = &self.memory_limit_mib
            && *limit.get_ref() < 16
        {
            return Err(error(
                Some(limit.span()),
                "memory_limit_mib",
                "below 16 MiB not even the owner can run".into(),
            ));
        }
        if let Some(t) = &self.task_timeout_ms
            && *t.get_ref() == 0
        {
            return Err(error(Some(t.span()), "task_timeout_ms", "must be more than 0".into()));
        }
        let max_attempts = match &self.max_attempts {
            Some(m) if *m.get_ref() == 0 => {
                return Err(error(Some(m.span()), "max_attempts", "must be at least 1".into()));
            }
            Some(m) => *m.get_ref(),
            None => 3,
        };
        Ok((style, max_attempts))
    }
}

/// A delay or timeout of at most a day.
fn check_ms(field: &str, value: &Spanned<u64>, error: &ErrorAt<'_>) -> Result<(), ScenarioError> {
    if *value.get_ref() > MAX_MS {
        return Err(error(Some(value.span()), field, format!("at most {MAX_MS} ms (a day)")));
    }
    Ok(())
}

/// `[[tasks]]`: each group checked, at most [`MAX_TASKS`] tasks and
/// [`MAX_ECHO_TOTAL`] echo bytes in all, at least one task. Returns the
/// groups and the task count.
fn check_tasks(raw: Spanned<Vec<RawGroup>>, error: &ErrorAt<'_>) -> Result<(Vec<TaskGroup>, usize), ScenarioError> {
    let tasks_span = raw.span();
    let mut tasks = Vec::new();
    let mut total: usize = 0;
    let mut echoes: u64 = 0;
    for (i, group) in raw.into_inner().into_iter().enumerate() {
        total = total.saturating_add(*group.count.get_ref());
        if total > MAX_TASKS {
            return Err(error(
                Some(group.count.span()),
                &format!("tasks[{i}].count"),
                format!("the scenario would run {total} or more tasks; at most {MAX_TASKS}"),
            ));
        }
        let span = group.work.span();
        let group = group.check(i, error)?;
        if let Workload::Echo(bytes) = &group.work {
            echoes = echoes.saturating_add(group.count as u64 * bytes.len() as u64);
            if echoes > MAX_ECHO_TOTAL {
                let message =
                    format!("the scenario's echoes would carry {echoes} bytes in all; at most {MAX_ECHO_TOTAL}");
                return Err(error(Some(span), &format!("tasks[{i}].work"), message));
            }
        }
        tasks.push(group);
    }
    if total == 0 {
        return Err(error(Some(tasks_span), "tasks", "a scenario needs at least one task".into()));
    }
    Ok((tasks, total))
}

/// `[[nemesis]]`: each strike's target (a task of the `total`) and delay.
fn check_nemesis(raw: Vec<RawNemesis>, total: usize, error: &ErrorAt<'_>) -> Result<Vec<Nemesis>, ScenarioError> {
    let mut nemesis = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let field = format!("nemesis[{i}].target");
        let target = match (raw.target.get_ref().as_str(), &raw.task) {
            ("task", Some(task)) if *task.get_ref() < total => Aim::Task(*task.get_ref()),
            ("task", Some(task)) => {
                return Err(error(
                    Some(task.span()),
                    &format!("nemesis[{i}].task"),
                    format!("task {} does not exist (the scenario has {total} tasks)", task.get_ref()),
                ));
            }
            ("task", None) => {
                return Err(error(Some(raw.target.span()), &field, "target \"task\" needs `task = N`".into()));
            }
            ("idle-worker", _) => Aim::IdleWorker,
            ("random-worker", _) => Aim::RandomWorker,
            ("owner", _) => Aim::Owner,
            (other, _) => {
                return Err(error(
                    Some(raw.target.span()),
                    &field,
                    format!("unknown target {other:?} (known: task, idle-worker, random-worker, owner)"),
                ));
            }
        };
        check_ms(&format!("nemesis[{i}].after_ms"), &raw.after_ms, error)?;
        nemesis.push(Nemesis { signal: raw.signal, target, after_ms: *raw.after_ms.get_ref() });
    }
    Ok(nemesis)
}

impl RawRandom {
    /// `[random]`: a rate in 0..=1, fault kinds that fire at more than one
    /// point, and the points (mid-task if none).
    fn check(self, error: &ErrorAt<'_>) -> Result<RandomFaults, ScenarioError> {
        let r = self;
        if !(0.0..=1.0).contains(r.rate.get_ref()) {
            return Err(error(Some(r.rate.span()), "random.rate", "must be between 0 and 1".into()));
        }
        let kinds = r
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let field = format!("random.kinds[{i}]");
                let kind = fault_kind(k.get_ref()).ok_or_else(|| {
                    let message = format!("unknown fault kind {:?} (known: {})", k.get_ref(), known(&FAULT_KINDS));
                    error(Some(k.span()), &field, message)
                })?;
                if matches!(kind, FaultKind::Unpicklable | FaultKind::ReturnException) {
                    let message = format!("{} fires at one point only: place it on a task", k.get_ref());
                    return Err(error(Some(k.span()), &field, message));
                }
                Ok(kind)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.is_empty() {
            return Err(error(Some(r.rate.span()), "random.kinds", "name at least one fault kind".into()));
        }
        let mut points = r
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                fault_point(p.get_ref()).ok_or_else(|| {
                    error(
                        Some(p.span()),
                        &format!("random.points[{i}]"),
                        format!("unknown point {:?} (known: {})", p.get_ref(), known(&FAULT_POINTS)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if points.is_empty() {
            points.push(FaultPoint::MidTask);
        }
        Ok(RandomFaults { rate: *r.rate.get_ref(), kinds, points })
    }
}

impl RawPeer {
    /// `[peer]`: its target runs (it is in `[expect]`), its verdict and error kind are ours.
    fn check(self, expect: &[(Target, Verdict)], error: &ErrorAt<'_>) -> Result<Peer, ScenarioError> {
        let p = self;
        let target: Target =
            p.target.get_ref().parse().map_err(|e: String| error(Some(p.target.span()), "peer.target", e))?;
        if !expect.iter().any(|(t, _)| *t == target) {
            return Err(error(
                Some(p.target.span()),
                "peer.target",
                format!("{target} is not in [expect]: the peer's pool must run"),
            ));
        }
        let verdict: Verdict =
            p.verdict.get_ref().parse().map_err(|e: String| error(Some(p.verdict.span()), "peer.verdict", e))?;
        let error_kind = match &p.error {
            None => None,
            Some(k) => Some(ErrorKind::ALL.into_iter().find(|e| e.name() == k.get_ref()).ok_or_else(|| {
                let known: Vec<_> = ErrorKind::ALL.iter().map(|e| e.name()).collect();
                error(
                    Some(k.span()),
                    "peer.error",
                    format!("unknown error kind {:?} (known: {})", k.get_ref(), known.join(", ")),
                )
            })?),
        };
        Ok(Peer { test: p.test, target, raises: p.raises, verdict, error: error_kind })
    }
}

/// `[[cancel]]`: each names a task of the `total` once, with a delay of at
/// most a day; a task is cancelled through its own handle, which only an
/// `apply-async` call gives.
fn check_cancels(
    raw: Vec<RawCancel>,
    total: usize,
    style: CallStyle,
    error: &ErrorAt<'_>,
) -> Result<Vec<Cancel>, ScenarioError> {
    let mut cancel: Vec<Cancel> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let (task, field) = (*c.task.get_ref(), format!("cancel[{i}].task"));
        if style != CallStyle::ApplyAsync {
            let message = format!(
                "a task is cancelled through its own handle: needs style = \"apply-async\", not {:?}",
                style.name()
            );
            return Err(error(Some(c.task.span()), &field, message));
        }
        if task >= total {
            let message = format!("task {task} does not exist (the scenario has {total} tasks)");
            return Err(error(Some(c.task.span()), &field, message));
        }
        if cancel.iter().any(|c| c.task == task) {
            return Err(error(Some(c.task.span()), &field, format!("task {task} is cancelled once already")));
        }
        check_ms(&format!("cancel[{i}].after_ms"), &c.after_ms, error)?;
        cancel.push(Cancel { task, after_ms: *c.after_ms.get_ref() });
    }
    Ok(cancel)
}

/// `join_timeout_ms`: 1 ms to a day.
fn check_join_timeout(raw: Option<Spanned<u64>>, error: &ErrorAt<'_>) -> Result<Option<u64>, ScenarioError> {
    match raw {
        Some(t) if !(1..=MAX_MS).contains(t.get_ref()) => {
            Err(error(Some(t.span()), "join_timeout_ms", format!("must be 1 to {MAX_MS} (ms)")))
        }
        t => Ok(t.map(|t| *t.get_ref())),
    }
}

/// `[expect]`: each pool's verdict (sorted by pool), and the time bounds.
fn check_expect(
    raw: Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    error: &ErrorAt<'_>,
) -> Result<(Vec<(Target, Verdict)>, TimeBounds), ScenarioError> {
    let span = raw.span();
    let mut expect = Vec::new();
    let mut bounds = TimeBounds::default();
    for (key, value) in raw.into_inner() {
        let field = format!("expect.{}", key.get_ref());
        let bound = match key.get_ref().as_str() {
            CALL_MS => Some(&mut bounds.call_ms),
            ERRORS_BY_MS => Some(&mut bounds.errors_by_ms),
            _ => None,
        };
        if let Some(bound) = bound {
            match value.get_ref() {
                toml::Value::Integer(ms) if (1..=MAX_MS as i64).contains(ms) => *bound = Some(*ms as u64),
                _ => return Err(error(Some(value.span()), &field, format!("must be 1 to {MAX_MS} (ms)"))),
            }
            continue;
        }
        // `custom`: what a `--target` command must reach (a pool's own CI holds its pool to it).
        let pool: Target = match key.get_ref().as_str() {
            "custom" => Target::Command(Vec::new()),
            name => name.parse().map_err(|e: String| error(Some(key.span()), &field, e))?,
        };
        let toml::Value::String(name) = value.get_ref() else {
            return Err(error(Some(value.span()), &field, "a pool's expected verdict is a string".into()));
        };
        let verdict: Verdict = name.parse().map_err(|e: String| error(Some(value.span()), &field, e))?;
        expect.push((pool, verdict));
    }
    if expect.is_empty() {
        return Err(error(Some(span), "expect", "name at least one pool and its expected verdict".into()));
    }
    expect.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((expect, bounds))
}

/// An optional count that must be at least 1 (`chunksize`, `max_tasks`).
fn at_least_one<T: Copy + PartialOrd + From<u8>>(
    field: &str,
    value: Option<Spanned<T>>,
    error: &ErrorAt<'_>,
) -> Result<Option<T>, ScenarioError> {
    match value {
        Some(v) if *v.get_ref() < T::from(1) => Err(error(Some(v.span()), field, "must be at least 1".into())),
        v => Ok(v.map(|v| *v.get_ref())),
    }
}

/// `[target.NAME]` tables: each names a target of `[expect]`, and each of
/// its knobs is one that target has ([`KNOBS`]), with a value in its unit.
fn check_knobs(
    raw: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    expect: &[(Target, Verdict)],
    error: &ErrorAt<'_>,
) -> Result<BTreeMap<Target, BTreeMap<String, Knob>>, ScenarioError> {
    let mut knobs = BTreeMap::new();
    for (name, table) in raw {
        let field = format!("target.{}", name.get_ref());
        let target: Target = name.get_ref().parse().map_err(|e: String| error(Some(name.span()), &field, e))?;
        if target.base() != target {
            let message = format!("name the target as {} (its knobs hold for every variant)", target.base());
            return Err(error(Some(name.span()), &field, message));
        }
        if !expect.iter().any(|(t, _)| t.base() == target) {
            return Err(error(Some(name.span()), &field, format!("{target} is not in [expect]: it never runs")));
        }
        let own: Vec<_> = KNOBS.iter().filter(|(t, ..)| *t == target.name()).collect();
        let mut set = BTreeMap::new();
        for (knob, value) in table {
            let field = format!("{field}.{}", knob.get_ref());
            let Some((_, _, unit, _)) = own.iter().find(|(_, k, ..)| k == knob.get_ref()) else {
                let known: Vec<&str> = own.iter().map(|(_, k, ..)| *k).collect();
                let known =
                    if known.is_empty() { "it has none".to_string() } else { format!("known: {}", known.join(", ")) };
                let message = format!("{target} has no knob {:?} ({known})", knob.get_ref());
                return Err(error(Some(knob.span()), &field, message));
            };
            set.insert(knob.get_ref().clone(), knob_value(*unit, &value, &field, error)?);
        }
        knobs.insert(target, set);
    }
    Ok(knobs)
}

/// A knob's value in its unit: seconds more than 0, or a count of at least 1.
fn knob_value(
    unit: KnobUnit,
    value: &Spanned<toml::Value>,
    field: &str,
    error: &ErrorAt<'_>,
) -> Result<Knob, ScenarioError> {
    let max_s = (MAX_MS / 1000) as f64;
    match (unit, value.get_ref()) {
        (KnobUnit::Count, toml::Value::Integer(n)) if *n >= 1 => Ok(Knob::Count(*n as u64)),
        (KnobUnit::Seconds, toml::Value::Integer(n)) if *n >= 1 && (*n as f64) <= max_s => Ok(Knob::Seconds(*n as f64)),
        (KnobUnit::Seconds, toml::Value::Float(x)) if *x > 0.0 && *x <= max_s => Ok(Knob::Seconds(*x)),
        (KnobUnit::Count, _) => Err(error(Some(value.span()), field, "must be a whole number, at least 1".into())),
        (KnobUnit::Seconds, _) => Err(error(
            Some(value.span()),
            field,
            format!("must be a number of seconds, more than 0 and at most {max_s}"),
        )),
    }
}

impl RawGroup {
    fn check(self, i: usize, error: &ErrorAt<'_>) -> Result<TaskGroup, ScenarioError> {
        let span = self.work.span();
        let too_big = |max: u32| error(Some(span.clone()), &format!("tasks[{i}].work"), format!("at most {max} bytes"));
        let work = match self.work.into_inner() {
            RawWork::Echo(bytes) if bytes > MAX_ECHO_BYTES => return Err(too_big(MAX_ECHO_BYTES)),
            RawWork::LargeBytes(bytes) if bytes > MAX_RESULT_BYTES => return Err(too_big(MAX_RESULT_BYTES)),
            RawWork::Echo(bytes) => Workload::Echo(vec![b'x'; bytes as usize]),
            RawWork::SpinUs(us) => Workload::Spin { us },
            RawWork::SleepMs(ms) => Workload::Sleep { ms },
            RawWork::AllocMib(mib) => Workload::Alloc { mib, hold: false },
            RawWork::LargeBytes(bytes) => Workload::Large { bytes },
        };
        let fault = match self.fault {
            None => None,
            Some(f) => {
                let kind = fault_kind(f.kind.get_ref()).ok_or_else(|| {
                    error(
                        Some(f.kind.span()),
                        &format!("tasks[{i}].fault.kind"),
                        format!("unknown fault kind {:?} (known: {})", f.kind.get_ref(), known(&FAULT_KINDS)),
                    )
                })?;
                let span = f.at.span();
                let at = fault_point(f.at.get_ref()).ok_or_else(|| {
                    error(
                        if span.is_empty() { None } else { Some(span) },
                        &format!("tasks[{i}].fault.at"),
                        format!("unknown point {:?} (known: {})", f.at.get_ref(), known(&FAULT_POINTS)),
                    )
                })?;
                let times = match &f.times {
                    None => 1,
                    Some(t) => match t.get_ref() {
                        toml::Value::Integer(n) if *n >= 1 && *n <= i64::from(u32::MAX) => *n as u32,
                        toml::Value::String(s) if s == "always" => u32::MAX,
                        _ => {
                            return Err(error(
                                Some(t.span()),
                                &format!("tasks[{i}].fault.times"),
                                "must be a number of attempts (at least 1) or \"always\"".into(),
                            ));
                        }
                    },
                };
                check_placement(kind, at, &f.kind, i, error)?;
                Some(SelfFault { kind, at, times })
            }
        };
        Ok(TaskGroup { count: *self.count.get_ref(), work, fault })
    }
}

/// Where a fault kind can fire: `unpicklable` where a pickle is made
/// (`encode`: the task's argument; `encode-result`: its result), and
/// `return-exception` as the task's result (`mid-task`).
fn check_placement(
    kind: FaultKind,
    at: FaultPoint,
    name: &Spanned<String>,
    i: usize,
    error: &ErrorAt<'_>,
) -> Result<(), ScenarioError> {
    let (fits, places) = match kind {
        FaultKind::Unpicklable => {
            (matches!(at, FaultPoint::Encode | FaultPoint::EncodeResult), "encode or encode-result")
        }
        FaultKind::ReturnException => (at == FaultPoint::MidTask, "mid-task"),
        _ => (true, ""),
    };
    if fits {
        return Ok(());
    }
    let message = format!("{} fires only at {places}, not at {}", name.get_ref(), protocol::fault_point_name(at));
    Err(error(Some(name.span()), &format!("tasks[{i}].fault.kind"), message))
}

/// A scenario for unit tests to adjust: `tasks` mapped on 2 workers, a 1 s
/// deadline, one attempt, no faults from outside, no expectations.
#[cfg(test)]
pub(crate) fn for_tests(tasks: Vec<TaskGroup>) -> Scenario {
    Scenario {
        name: "t".into(),
        path: Default::default(),
        description: "t".into(),
        workers: 2,
        style: CallStyle::Map,
        deadline_ms: 1000,
        memory_limit_mib: None,
        task_timeout_ms: None,
        max_attempts: 1,
        seed: None,
        tasks,
        nemesis: Vec::new(),
        random: None,
        storm: None,
        expect: Vec::new(),
        peer: None,
        options: Options::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pools::PoolKind;

    const GOOD: &str = r#"
description = "d"
workers = 2
deadline_ms = 1000

[[tasks]]
count = 3
work = { echo = 4 }

[[tasks]]
work = { sleep_ms = 100 }
fault = { kind = "sigkill", at = "mid-task" }

[[nemesis]]
signal = "sigstop"
target = "task"
task = 3

[expect]
supervised = "completed"
naive = "hung"
"#;

    fn err(text: &str) -> String {
        parse(Path::new("s.toml"), text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_reads_as_written() {
        let s = parse(Path::new("dir/seed.toml"), GOOD).unwrap();
        assert_eq!((s.name.as_str(), s.workers, s.task_count(), s.style), ("seed", 2, 4, CallStyle::Map));
        assert_eq!(s.tasks[1].fault, Some(SelfFault { kind: FaultKind::SigKill, at: FaultPoint::MidTask, times: 1 }));
        assert_eq!(s.nemesis[0].target, Aim::Task(3));
        let pools = |k| crate::target::Target::Pool(k);
        assert_eq!(
            s.expect,
            vec![(pools(PoolKind::Naive), Verdict::Hung), (pools(PoolKind::Supervised), Verdict::Completed)]
        );
    }

    #[test]
    fn a_scenario_written_out_reads_back_the_same() {
        let s = parse(Path::new("seed.toml"), GOOD).unwrap();
        let again = parse(Path::new("seed.toml"), &s.to_toml(&["a header".into()])).unwrap();
        assert_eq!(again.to_toml(&[]), s.to_toml(&[]));
        assert_eq!((again.tasks, again.nemesis, again.expect), (s.tasks, s.nemesis, s.expect));
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        assert_eq!(err(&GOOD.replace("workers = 2", "workers = 0")), "s.toml:3:11: workers: must be 1 to 256");
        assert_eq!(err(&GOOD.replace("workers = 2", "workers = 100000")), "s.toml:3:11: workers: must be 1 to 256");
        assert_eq!(
            err(&GOOD.replace("count = 3", "count = 100000000000")),
            "s.toml:7:9: tasks[0].count: the scenario would run 100000000000 or more tasks; at most 100000"
        );
        assert!(err(&GOOD.replace("echo = 4", "echo = 4000000000")).starts_with("s.toml:8:8: tasks[0].work: at most"));
        assert!(
            err(&GOOD.replace("deadline_ms = 1000", "deadline_ms = 18446744073709551615"))
                .starts_with("s.toml:4:15: deadline_ms: at most")
        );
        assert_eq!(
            err(&GOOD.replace("workers = 2", "workers = \"two\"")),
            "s.toml:3:11: workers: invalid type: string \"two\", expected usize"
        );
        assert_eq!(
            err(&GOOD.replace("naive = \"hung\"", "fastpool = \"hung\"")),
            "s.toml:21:1: expect.fastpool: unknown pool \"fastpool\" (known: naive, seed-polling, polling, per-task, supervised, \
             py-pool-map, py-pool-apply, py-pool-apply-async, py-pool-map-async, py-seed-polling, py-seed-polling-async, \
             py-process-per-task, py-ppe, py-loky, py-pebble, py-billiard)"
        );
        assert!(
            err(&GOOD.replace("kind = \"sigkill\"", "kind = \"sigfoo\""))
                .starts_with("s.toml:12:18: tasks[1].fault.kind: unknown fault kind")
        );
        assert!(
            err(&GOOD.replace("count = 3", "count = 3\ncolour = 1"))
                .starts_with("s.toml:8:1: tasks[0].colour: unknown field `colour`")
        );
        assert!(
            err(&GOOD.replace("task = 3", "task = 4"))
                .starts_with("s.toml:17:8: nemesis[0].task: task 4 does not exist")
        );
        assert!(err("description = ").starts_with("s.toml:1:15: -: string values must be quoted"));
    }

    const OWN: &str = r#"
description = "d"
workers = 2
deadline_ms = 1000
chunksize = 3
max_tasks = 2

[[tasks]]
work = { echo = 4 }
fault = { kind = "unpicklable", at = "encode" }

[target.py-billiard]
lost_worker_timeout = 1.5
max_memory_per_child = 4096

[expect]
supervised = "completed"
py-billiard = "failed-loudly"
errors_by_ms = 2000
call_ms = 3000
"#;

    #[test]
    fn the_pools_own_options_read_as_written_and_write_back() {
        let s = parse(Path::new("s.toml"), OWN).unwrap();
        assert_eq!(s.tasks[0].fault.map(|f| f.kind), Some(FaultKind::Unpicklable));
        assert_eq!((s.options.chunksize, s.options.max_tasks), (Some(3), Some(2)));
        assert_eq!(s.options.bounds, TimeBounds { call_ms: Some(3000), errors_by_ms: Some(2000) });
        let billiard = &s.options.knobs[&Target::python("py-billiard")];
        assert_eq!(billiard["lost_worker_timeout"], Knob::Seconds(1.5));
        assert_eq!(billiard["max_memory_per_child"], Knob::Count(4096));
        assert_eq!(s.expect.len(), 2, "the bounds are no pools");
        let again = parse(Path::new("s.toml"), &s.to_toml(&[])).unwrap();
        assert_eq!((&again.options, &again.expect), (&s.options, &s.expect));
        // The plan of billiard carries its knobs; supervised's none.
        let plan = crate::scenario::plan::Plan::new(&s, Target::python("py-billiard"), 1);
        assert_eq!(plan.knobs.len(), 2);
        let supervised = crate::scenario::plan::Plan::new(&s, Target::Pool(PoolKind::Supervised), 1);
        assert!(supervised.knobs.is_empty() && supervised.max_tasks == Some(2) && supervised.chunksize == Some(3));
    }

    #[test]
    fn bad_options_name_their_line_and_field() {
        let bad = |from: &str, to: &str| err(&OWN.replace(from, to));
        assert_eq!(
            bad("[target.py-billiard]", "[target.py-fast]"),
            "s.toml:12:9: target.py-fast: unknown pool \"py-fast\" (known: naive, seed-polling, polling, per-task, \
             supervised, py-pool-map, py-pool-apply, py-pool-apply-async, py-pool-map-async, py-seed-polling, \
             py-seed-polling-async, py-process-per-task, py-ppe, py-loky, py-pebble, py-billiard)"
        );
        assert_eq!(
            bad("lost_worker_timeout", "lost_timeout"),
            "s.toml:13:1: target.py-billiard.lost_timeout: py-billiard has no knob \"lost_timeout\" (known: \
             lost_worker_timeout, soft_timeout, timeout, max_memory_per_child)"
        );
        assert_eq!(
            bad("[target.py-billiard]", "[target.py-pool-map]"),
            "s.toml:12:9: target.py-pool-map: py-pool-map is not in [expect]: it never runs"
        );
        assert_eq!(
            bad("[target.py-billiard]", "[target.\"py-billiard/spawn\"]"),
            "s.toml:12:9: target.py-billiard/spawn: name the target as py-billiard (its knobs hold for every variant)"
        );
        assert_eq!(
            bad("= 1.5", "= -1"),
            "s.toml:13:23: target.py-billiard.lost_worker_timeout: must be a number of seconds, more than 0 and at most 86400"
        );
        assert_eq!(
            bad("= 4096", "= 1.5"),
            "s.toml:14:24: target.py-billiard.max_memory_per_child: must be a whole number, at least 1"
        );
        assert_eq!(bad("chunksize = 3", "chunksize = 0"), "s.toml:5:13: chunksize: must be at least 1");
        assert_eq!(bad("max_tasks = 2", "max_tasks = 0"), "s.toml:6:13: max_tasks: must be at least 1");
        assert_eq!(bad("= 2000", "= 0"), "s.toml:19:16: expect.errors_by_ms: must be 1 to 86400000 (ms)");
        assert_eq!(
            bad("supervised = \"completed\"", "supervised = 3"),
            "s.toml:17:14: expect.supervised: a pool's expected verdict is a string"
        );
        assert_eq!(
            bad("at = \"encode\"", "at = \"mid-task\""),
            "s.toml:10:18: tasks[0].fault.kind: unpicklable fires only at encode or encode-result, not at mid-task"
        );
        assert_eq!(
            err(&GOOD.replace("[expect]", "[random]\nrate = 0.1\nkinds = [\"return-exception\"]\n\n[expect]")),
            "s.toml:21:10: random.kinds[0]: return-exception fires at one point only: place it on a task"
        );
    }

    const CANCEL: &str = r#"description = "c"
workers = 1
style = "apply-async"
deadline_ms = 5000
join_timeout_ms = 300

[[tasks]]
count = 3
work = { sleep_ms = 10 }

[[cancel]]
task = 2

[[cancel]]
task = 0
after_ms = 50

[expect]
py-pebble = "failed-loudly"
"#;

    #[test]
    fn cancels_and_a_join_timeout_read_as_written_and_reach_the_owners_plan() {
        let s = parse(Path::new("s.toml"), CANCEL).unwrap();
        let cancel = [Cancel { task: 2, after_ms: 0 }, Cancel { task: 0, after_ms: 50 }];
        assert_eq!((s.options.cancel.as_slice(), s.options.join_timeout_ms), (&cancel[..], Some(300)));
        let again = parse(Path::new("s.toml"), &s.to_toml(&[])).unwrap();
        assert_eq!(again.options, s.options);
        let plan = crate::scenario::plan::Plan::new(&s, Target::python("py-pebble"), 1);
        let owner = serde_json::to_value(protocol::OwnerPlan::from(&plan)).unwrap();
        assert_eq!(owner["cancel"], serde_json::json!([{ "task": 2, "after_ms": 0 }, { "task": 0, "after_ms": 50 }]));
        assert_eq!(owner["join_timeout_ms"], 300);
        let bad = |from: &str, to: &str| err(&CANCEL.replace(from, to));
        assert_eq!(
            bad("style = \"apply-async\"", "style = \"map\""),
            "s.toml:12:8: cancel[0].task: a task is cancelled through its own handle: needs style = \"apply-async\", not \"map\""
        );
        assert_eq!(
            bad("task = 2", "task = 3"),
            "s.toml:12:8: cancel[0].task: task 3 does not exist (the scenario has 3 tasks)"
        );
        assert_eq!(bad("task = 0", "task = 2"), "s.toml:15:8: cancel[1].task: task 2 is cancelled once already");
        assert_eq!(
            bad("after_ms = 50", "after_ms = 99999999999"),
            "s.toml:16:12: cancel[1].after_ms: at most 86400000 ms (a day)"
        );
        assert_eq!(
            bad("join_timeout_ms = 300", "join_timeout_ms = 0"),
            "s.toml:5:19: join_timeout_ms: must be 1 to 86400000 (ms)"
        );
    }

    const PEER: &str =
        "\n[peer]\ntest = \"t\"\ntarget = \"naive\"\nraises = \"X\"\nverdict = \"hung\"\nerror = \"pool-broken\"\n";

    #[test]
    fn every_stage_is_a_fault_point_and_a_peer_expectation_reads_as_written() {
        for (name, point) in FAULT_POINTS {
            let s =
                parse(Path::new("s.toml"), &GOOD.replace("at = \"mid-task\"", &format!("at = \"{name}\""))).unwrap();
            assert_eq!(s.tasks[1].fault.map(|f| f.at), Some(point));
        }
        let s = parse(Path::new("s.toml"), &format!("{GOOD}{PEER}")).unwrap();
        let naive = crate::target::Target::Pool(PoolKind::Naive);
        let peer = Peer {
            test: "t".into(),
            target: naive,
            raises: "X".into(),
            verdict: Verdict::Hung,
            error: Some(ErrorKind::PoolBroken),
        };
        assert_eq!(s.peer.as_ref(), Some(&peer));
        let again = parse(Path::new("s.toml"), &s.to_toml(&[])).unwrap();
        assert_eq!(again.peer, s.peer);
    }

    #[test]
    fn bad_points_and_peers_name_their_line_and_field() {
        assert_eq!(
            err(&GOOD.replace("at = \"mid-task\"", "at = \"write-result\"")),
            "s.toml:12:34: tasks[1].fault.at: unknown point \"write-result\" (known: encode, transport, init, decode, \
             mid-task, encode-result, transport-result, decode-result, after-result, callback, close, terminate, join, \
             recycle, spawn)"
        );
        assert_eq!(
            err(&format!("{GOOD}{}", PEER.replace("\"naive\"", "\"polling\""))),
            "s.toml:25:10: peer.target: polling is not in [expect]: the peer's pool must run"
        );
        assert!(
            err(&format!("{GOOD}{}", PEER.replace("pool-broken", "crashed")))
                .starts_with("s.toml:28:9: peer.error: unknown error kind \"crashed\" (known: task, worker-lost")
        );
        assert!(
            err(&format!("{GOOD}{}", PEER.replace("\"hung\"", "\"stuck\"")))
                .starts_with("s.toml:27:11: peer.verdict: unknown verdict \"stuck\"")
        );
    }
}
