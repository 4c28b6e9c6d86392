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
//! style = "map"                 # map | apply | apply_async | map_async
//! deadline_ms = 3000            # past this the run is hung and torn down
//! memory_limit_mib = 256        # the run's memory cgroup (optional)
//! task_timeout_ms = 1000        # per-task deadline, for pools that have one (optional)
//! max_attempts = 3              # supervised's attempts per task (optional)
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
//! [storm]                       # a random worker every_ms, from outside
//! signal = "sigkill"
//! every_ms = 50
//!
//! [expect]                      # the pools to run, and what each must reach
//! naive = "hung"
//! supervised = "completed"
//! ```
//!
//! Every mistake is reported with the file, line and column, and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pools::{CallStyle, FaultKind, FaultPoint, Workload};
use serde::Deserialize;
use toml::Spanned;

use crate::target::Target;
use crate::verdict::Verdict;

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

/// Signals the nemesis sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    Sigkill,
    Sigstop,
}

/// Whom the nemesis signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// The worker running task N, `after_ms` into it.
    Task(usize),
    /// After a warm-up task, the idle worker blocked in its read of the task
    /// channel (in `naive`, the holder of the inqueue lock); then the batch runs.
    IdleWorker,
    /// A random live worker, `after_ms` into the run.
    RandomWorker,
    /// The pool's owner, `after_ms` into the run.
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

/// A random live worker signalled every `every_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storm {
    pub signal: Signal,
    pub every_ms: u64,
}

/// A bad scenario file: where, which field, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {field}: {message}")]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The field's path in the file, e.g. `tasks[1].fault.kind`.
    pub field: String,
    pub message: String,
}

impl Scenario {
    /// How many tasks the scenario runs.
    pub fn task_count(&self) -> usize {
        self.tasks.iter().map(|g| g.count).sum()
    }

    /// The scenario as a file that reads back to the same scenario (how
    /// campaigns save a reproducer). `header` lines become comments on top.
    pub fn to_toml(&self, header: &[String]) -> String {
        let mut out = String::new();
        for line in header {
            out += &format!("# {line}\n");
        }
        out += &format!("description = {:?}\n", self.description);
        out += &format!(
            "workers = {}\nstyle = {:?}\ndeadline_ms = {}\n",
            self.workers,
            self.style.name(),
            self.deadline_ms
        );
        if let Some(mib) = self.memory_limit_mib {
            out += &format!("memory_limit_mib = {mib}\n");
        }
        if let Some(ms) = self.task_timeout_ms {
            out += &format!("task_timeout_ms = {ms}\n");
        }
        out += &format!("max_attempts = {}\n", self.max_attempts);
        if let Some(seed) = self.seed {
            out += &format!("seed = {seed}\n");
        }
        for group in &self.tasks {
            let work = match &group.work {
                Workload::Echo(bytes) => format!("echo = {}", bytes.len()),
                Workload::Spin { us } => format!("spin_us = {us}"),
                Workload::Sleep { ms } => format!("sleep_ms = {ms}"),
                Workload::Alloc { mib, .. } => format!("alloc_mib = {mib}"),
                Workload::Large { bytes } => format!("large_bytes = {bytes}"),
            };
            out += &format!("\n[[tasks]]\ncount = {}\nwork = {{ {work} }}\n", group.count);
            if let Some(f) = group.fault {
                let times = if f.times == u32::MAX { "\"always\"".to_string() } else { f.times.to_string() };
                out += &format!(
                    "fault = {{ kind = {:?}, at = {:?}, times = {times} }}\n",
                    fault_kind_name(f.kind),
                    fault_point_name(f.at)
                );
            }
        }
        for n in &self.nemesis {
            let signal = match n.signal {
                Signal::Sigkill => "sigkill",
                Signal::Sigstop => "sigstop",
            };
            let target = match n.target {
                Aim::Task(task) => format!("\"task\"\ntask = {task}"),
                Aim::IdleWorker => "\"idle-worker\"".into(),
                Aim::RandomWorker => "\"random-worker\"".into(),
                Aim::Owner => "\"owner\"".into(),
            };
            out += &format!("\n[[nemesis]]\nsignal = {signal:?}\ntarget = {target}\nafter_ms = {}\n", n.after_ms);
        }
        if let Some(r) = &self.random {
            let kinds: Vec<String> = r.kinds.iter().map(|k| format!("{:?}", fault_kind_name(*k))).collect();
            let points: Vec<String> = r.points.iter().map(|p| format!("{:?}", fault_point_name(*p))).collect();
            out += &format!(
                "\n[random]\nrate = {}\nkinds = [{}]\npoints = [{}]\n",
                r.rate,
                kinds.join(", "),
                points.join(", ")
            );
        }
        if let Some(storm) = &self.storm {
            let signal = if storm.signal == Signal::Sigkill { "sigkill" } else { "sigstop" };
            out += &format!("\n[storm]\nsignal = {signal:?}\nevery_ms = {}\n", storm.every_ms);
        }
        out += "\n[expect]\n";
        for (pool, verdict) in &self.expect {
            out += &format!("{pool} = {:?}\n", verdict.name());
        }
        out
    }
}

/// Reads every `*.toml` under the given files and directories, sorted by
/// name. Fails on the first bad file; nothing runs then.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, ScenarioError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| io_error(path, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
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
    expect: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
}

fn default_style() -> Spanned<String> {
    Spanned::new(0..0, "map".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default = "one")]
    count: Spanned<usize>,
    work: RawWork,
    fault: Option<RawFault>,
}

fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
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
    Spanned::new(0..0, "mid-task".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNemesis {
    signal: Signal,
    target: Spanned<String>,
    task: Option<Spanned<usize>>,
    #[serde(default)]
    after_ms: u64,
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
struct RawStorm {
    signal: Signal,
    every_ms: Spanned<u64>,
}

/// Names of the fault kinds in scenario files.
pub fn fault_kind(name: &str) -> Option<FaultKind> {
    Some(match name {
        "sigkill" => FaultKind::SigKill,
        "sigsegv" => FaultKind::SigSegv,
        "abort" => FaultKind::Abort,
        "exit0" => FaultKind::Exit(0),
        "exit1" => FaultKind::Exit(1),
        "hang" => FaultKind::Hang,
        "sigstop" => FaultKind::SigStop,
        "error" => FaultKind::Error,
        "panic" => FaultKind::Panic,
        _ => return None,
    })
}

pub fn fault_kind_name(kind: FaultKind) -> String {
    match kind {
        FaultKind::SigKill => "sigkill".into(),
        FaultKind::SigSegv => "sigsegv".into(),
        FaultKind::Abort => "abort".into(),
        FaultKind::Exit(code) => format!("exit{code}"),
        FaultKind::Hang => "hang".into(),
        FaultKind::SigStop => "sigstop".into(),
        FaultKind::Error => "error".into(),
        FaultKind::Panic => "panic".into(),
    }
}

pub fn fault_point(name: &str) -> Option<FaultPoint> {
    Some(match name {
        "decode" => FaultPoint::Decode,
        "mid-task" => FaultPoint::MidTask,
        "write-result" => FaultPoint::WriteResult,
        _ => return None,
    })
}

pub fn fault_point_name(point: FaultPoint) -> &'static str {
    match point {
        FaultPoint::Decode => "decode",
        FaultPoint::MidTask => "mid-task",
        FaultPoint::WriteResult => "write-result",
    }
}

fn call_style(name: &str) -> Option<CallStyle> {
    CallStyle::ALL.into_iter().find(|s| s.name() == name)
}

const KINDS: &str = "sigkill, sigsegv, abort, exit0, exit1, hang, sigstop, error, panic";
const POINTS: &str = "decode, mid-task, write-result";

type ErrorAt<'a> = dyn Fn(Option<Range<usize>>, &str, String) -> ScenarioError + 'a;

impl Raw {
    fn check(self, name: String, path: &Path, error: &ErrorAt<'_>) -> Result<Scenario, ScenarioError> {
        let at = |s: Range<usize>| if s.is_empty() { None } else { Some(s) };
        if *self.workers.get_ref() == 0 {
            return Err(error(Some(self.workers.span()), "workers", "must be at least 1".into()));
        }
        let style = call_style(self.style.get_ref()).ok_or_else(|| {
            error(
                at(self.style.span()),
                "style",
                format!("unknown call style {:?} (known: map, apply, apply_async, map_async)", self.style.get_ref()),
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
        let tasks_span = self.tasks.span();
        let mut tasks = Vec::new();
        for (i, group) in self.tasks.into_inner().into_iter().enumerate() {
            tasks.push(group.check(i, error)?);
        }
        let total: usize = tasks.iter().map(|g: &TaskGroup| g.count).sum();
        if total == 0 {
            return Err(error(Some(tasks_span), "tasks", "a scenario needs at least one task".into()));
        }
        let mut nemesis = Vec::new();
        for (i, raw) in self.nemesis.into_iter().enumerate() {
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
            nemesis.push(Nemesis { signal: raw.signal, target, after_ms: raw.after_ms });
        }
        let random = match self.random {
            None => None,
            Some(r) => {
                if !(0.0..=1.0).contains(r.rate.get_ref()) {
                    return Err(error(Some(r.rate.span()), "random.rate", "must be between 0 and 1".into()));
                }
                let kinds = r
                    .kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        fault_kind(k.get_ref()).ok_or_else(|| {
                            error(
                                Some(k.span()),
                                &format!("random.kinds[{i}]"),
                                format!("unknown fault kind {:?} (known: {KINDS})", k.get_ref()),
                            )
                        })
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
                                format!("unknown point {:?} (known: {POINTS})", p.get_ref()),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if points.is_empty() {
                    points.push(FaultPoint::MidTask);
                }
                Some(RandomFaults { rate: *r.rate.get_ref(), kinds, points })
            }
        };
        let storm = match self.storm {
            Some(s) if *s.every_ms.get_ref() == 0 => {
                return Err(error(Some(s.every_ms.span()), "storm.every_ms", "must be more than 0".into()));
            }
            Some(s) => Some(Storm { signal: s.signal, every_ms: *s.every_ms.get_ref() }),
            None => None,
        };
        let expect_span = self.expect.span();
        let mut expect = Vec::new();
        for (pool, verdict) in self.expect.into_inner() {
            let kind: crate::target::Target = pool
                .get_ref()
                .parse()
                .map_err(|e: String| error(Some(pool.span()), &format!("expect.{}", pool.get_ref()), e))?;
            let verdict: Verdict = verdict
                .get_ref()
                .parse()
                .map_err(|e: String| error(Some(verdict.span()), &format!("expect.{}", pool.get_ref()), e))?;
            expect.push((kind, verdict));
        }
        if expect.is_empty() {
            return Err(error(Some(expect_span), "expect", "name at least one pool and its expected verdict".into()));
        }
        expect.sort_by(|a, b| a.0.cmp(&b.0));
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
        })
    }
}

impl RawGroup {
    fn check(self, i: usize, error: &ErrorAt<'_>) -> Result<TaskGroup, ScenarioError> {
        let work = match self.work {
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
                        format!("unknown fault kind {:?} (known: {KINDS})", f.kind.get_ref()),
                    )
                })?;
                let span = f.at.span();
                let at = fault_point(f.at.get_ref()).ok_or_else(|| {
                    error(
                        if span.is_empty() { None } else { Some(span) },
                        &format!("tasks[{i}].fault.at"),
                        format!("unknown point {:?} (known: {POINTS})", f.at.get_ref()),
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
                Some(SelfFault { kind, at, times })
            }
        };
        Ok(TaskGroup { count: *self.count.get_ref(), work, fault })
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
        assert_eq!(err(&GOOD.replace("workers = 2", "workers = 0")), "s.toml:3:11: workers: must be at least 1");
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
}
