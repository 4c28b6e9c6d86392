//! Tasks: synthetic, deterministic workloads described as data, and the
//! faults a task can place on itself.
//!
//! A task's result depends only on the task, so anyone holding the task can
//! check a result exactly ([`Task::expected_output`]). The `tag` is part of
//! the result, so a result delivered to the wrong task is caught too.
//!
//! A self-placed [`Fault`] fires inside the worker at a named [`FaultPoint`]
//! on the first `times` attempts of the task (the attempt number travels with
//! the task on the wire). `times: 1` is a fault that a retry survives;
//! [`Fault::ALWAYS`] makes a poison task.

use serde::{Deserialize, Serialize};

/// One unit of work: what to compute and, optionally, how to die doing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Caller-chosen identity, echoed at the head of the result.
    pub tag: u64,
    /// Before `work` on purpose: postcard encodes fields in order, so a
    /// worker reads a task's fault from the first bytes of its frame, while
    /// a large workload is still arriving (the `transport` point; see
    /// [`crate::wire::RunHead`]).
    pub fault: Option<Fault>,
    pub work: Workload,
}

/// What a task computes. Every variant has a result that depends only on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Return these bytes (the task's argument, carried to its worker).
    Echo(#[serde(with = "echo_bytes")] Vec<u8>),
    /// Burn this many microseconds of CPU.
    Spin { us: u64 },
    /// Sleep this many milliseconds.
    Sleep { ms: u64 },
    /// Allocate and touch this many MiB; `hold` keeps it for the worker's life.
    Alloc { mib: u32, hold: bool },
    /// Return a result of this many bytes (larger than a pipe buffer if you like).
    Large { bytes: u32 },
}

/// A fault the task places on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub point: FaultPoint,
    /// The fault fires on attempts `0..times`; a later attempt runs clean.
    pub times: u32,
}

/// How the worker dies or misbehaves. Spelled as the harness's protocol
/// spells it everywhere (a signal's name is one word: `sigkill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill(getpid(), SIGKILL)`: what the OOM killer does.
    #[serde(rename = "sigkill")]
    SigKill,
    /// A real invalid memory access.
    #[serde(rename = "sigsegv")]
    SigSegv,
    /// `abort()`: SIGABRT.
    Abort,
    /// `exit(code)` in the middle of the task, without a result.
    Exit(i32),
    /// Never return.
    Hang,
    /// `kill(getpid(), SIGSTOP)`: frozen until someone continues or kills it.
    #[serde(rename = "sigstop")]
    SigStop,
    /// The task returns an error; the worker survives.
    Error,
    /// The task panics; the worker catches it and survives.
    Panic,
    /// Python's `sys.exit(1)`: an exception (`SystemExit`) where it is raised
    /// inside a pool's code that catches it, a process exit where nothing
    /// does. The peers' suites use it; Rust has no such thing (the owner of
    /// our pools reports it not applicable).
    SysExit,
    /// The value being pickled (the task's argument at `encode`, its result
    /// at `encode-result`) holds what pickle itself refuses (a lock): the
    /// pool reports pickle's own `TypeError` or `PicklingError`. Python
    /// only: our pools encode with postcard, which refuses no task.
    Unpicklable,
    /// The task raises a `BaseException` that is no `Exception` (as
    /// `KeyboardInterrupt` is). Python only.
    BaseException,
    /// The task raises `MemoryError` (as a failed allocation in Python
    /// does; the process lives on). Python only.
    MemoryError,
    /// The worker ignores SIGTERM from here on, and the task goes on to its
    /// result; at `close`, `terminate` and `join` it ignores it from the
    /// task's start, so the pool's SIGTERM at that stage finds it ignored.
    IgnoreSigterm,
    /// The task returns an exception object as its result (not raised):
    /// the caller must get that object back as a value. Python only (a
    /// Rust task's result is bytes); only at `mid-task`.
    ReturnException,
}

/// Where in a task's life (or in its pool's, around it) the fault fires.
/// Each stage of a pool's pipeline, in the order a task meets them; a pool
/// without a stage says so (the harness reports the run `not-applicable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultPoint {
    /// In the parent, while it encodes the task for a worker.
    Encode,
    /// In the worker, while a task larger than the pipe buffer is still
    /// being written to it: on the first bytes of its frame (a frame that
    /// arrives whole fires as the worker takes it).
    Transport,
    /// In the worker's initializer, as it starts, before it reads a task
    /// (the first `times` worker starts, whichever task carries the fault).
    /// `error` and `panic` there end the worker with exit code 1, as an
    /// exception in a CPython pool's initializer does.
    Init,
    /// After the worker took the task off its channel, before it runs
    /// (in Python: while the task is unpickled).
    Decode,
    /// Halfway through the workload.
    MidTask,
    /// In the worker, while it encodes the result: `error` and `panic`
    /// give the task an error in place of its result (CPython's
    /// `MaybeEncodingError`), the deadly kinds end the worker with it unsent.
    EncodeResult,
    /// After part of the result frame is written to the channel
    /// (`transport-result`, on the wire as in scenario files).
    #[serde(rename = "transport-result")]
    WriteResult,
    /// In the parent, while it decodes the result.
    DecodeResult,
    /// In the worker, after its result is sent (a crash in a destructor);
    /// `error` and `panic` there are dropped, as Python ignores an
    /// exception raised in `__del__`.
    AfterResult,
    /// In the parent, in the task's result or error callback.
    Callback,
    /// In the worker running the task, while the parent closes the pool
    /// (this and the next two fire halfway through the workload, once the
    /// owner names the stage: [`crate::fault::set_stage`]).
    Close,
    /// In the worker running the task, while the parent terminates the pool.
    Terminate,
    /// In the worker running the task, while the parent joins the pool.
    Join,
    /// In the worker that replaces one recycled after its task (N = 1 task
    /// per worker), as it starts: the first `workers` starts are clean, the
    /// next `times` fire.
    Recycle,
    /// Starting a worker fails: the run's `pids.max` is reached, so the
    /// kernel refuses the fork. The task's worker fires the fault halfway
    /// through the task (as at `mid-task`), and from the moment the pool
    /// is warmed up the harness holds the run's `pids.max` below its count
    /// (0), so whatever the pool starts after that (a replacement, a spare,
    /// a standby, a thread) is refused with EAGAIN. A cgroup limit knows no
    /// attempts: `times` is how often the task's own fault fires; the limit
    /// holds for the rest of the run. A run without a pids cgroup cannot
    /// place it, and is skipped, saying so.
    Spawn,
}

impl FaultPoint {
    /// Every point, in pipeline order.
    pub const ALL: [FaultPoint; 15] = [
        FaultPoint::Encode,
        FaultPoint::Transport,
        FaultPoint::Init,
        FaultPoint::Decode,
        FaultPoint::MidTask,
        FaultPoint::EncodeResult,
        FaultPoint::WriteResult,
        FaultPoint::DecodeResult,
        FaultPoint::AfterResult,
        FaultPoint::Callback,
        FaultPoint::Close,
        FaultPoint::Terminate,
        FaultPoint::Join,
        FaultPoint::Recycle,
        FaultPoint::Spawn,
    ];
}

impl Fault {
    /// `times` for a fault that fires on every attempt: a poison task.
    pub const ALWAYS: u32 = u32::MAX;

    /// A fault that fires on the first attempt only.
    pub fn once(kind: FaultKind, point: FaultPoint) -> Self {
        Fault { kind, point, times: 1 }
    }

    /// Whether the fault fires on this attempt (0-based).
    pub fn fires(&self, attempt: u32) -> bool {
        attempt < self.times
    }
}

impl FaultKind {
    /// Whether this fault ends the worker process (as opposed to failing the task
    /// or stalling it).
    pub fn kills_worker(self) -> bool {
        matches!(self, FaultKind::SigKill | FaultKind::SigSegv | FaultKind::Abort | FaultKind::Exit(_))
    }

    /// Whether only a Python worker can place this fault (it is made of
    /// Python's own exceptions, pickling or return values).
    pub fn python_only(self) -> bool {
        matches!(
            self,
            FaultKind::SysExit
                | FaultKind::Unpicklable
                | FaultKind::BaseException
                | FaultKind::MemoryError
                | FaultKind::ReturnException
        )
    }
}

impl Task {
    /// A task that echoes `bytes`.
    pub fn echo(tag: u64, bytes: impl Into<Vec<u8>>) -> Self {
        Task { tag, work: Workload::Echo(bytes.into()), fault: None }
    }

    /// The same task with a fault placed on it.
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The one correct result of this task: its tag, then the workload's bytes.
    pub fn expected_output(&self) -> Vec<u8> {
        let mut out = self.tag.to_le_bytes().to_vec();
        match &self.work {
            Workload::Echo(bytes) => out.extend_from_slice(bytes),
            Workload::Spin { us } => out.extend_from_slice(&us.to_le_bytes()),
            Workload::Sleep { ms } => out.extend_from_slice(&ms.to_le_bytes()),
            Workload::Alloc { mib, .. } => out.extend_from_slice(&mib.to_le_bytes()),
            Workload::Large { bytes } => out.extend(large_pattern(self.tag, *bytes)),
        }
        out
    }

    /// Whether `output` is this task's correct result.
    pub fn check(&self, output: &[u8]) -> bool {
        output == self.expected_output().as_slice()
    }
}

/// An echo's bytes: as they are where a format is binary (postcard, to
/// the workers), a hex string where it is text (JSON: the plans an owner
/// reads, where a list of numbers would take four characters a byte). A
/// list of numbers reads too.
mod echo_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &Vec<u8>, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return bytes.serialize(s);
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hex: String =
            bytes.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).map(char::from).collect();
        s.serialize_str(&hex)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Hex(String),
        List(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if !d.is_human_readable() {
            return Vec::<u8>::deserialize(d);
        }
        match Text::deserialize(d)? {
            Text::List(bytes) => Ok(bytes),
            Text::Hex(hex) if hex.len() % 2 == 0 => {
                let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                hex.as_bytes()
                    .chunks(2)
                    .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| D::Error::custom("an echo's bytes: not hex"))
            }
            Text::Hex(_) => Err(D::Error::custom("an echo's bytes: an odd number of hex digits")),
        }
    }
}

/// The deterministic content of a [`Workload::Large`] result.
fn large_pattern(tag: u64, bytes: u32) -> impl Iterator<Item = u8> {
    (0..bytes).map(move |i| (i as u8).wrapping_mul(31) ^ (tag as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_output_starts_with_the_tag() {
        let task = Task::echo(7, b"hi".to_vec());
        assert_eq!(task.expected_output(), [7, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
        assert!(!Task::echo(8, b"hi".to_vec()).check(&task.expected_output()));
    }

    #[test]
    fn an_echo_goes_to_a_worker_as_a_length_and_its_bytes() {
        let wire = postcard::to_allocvec(&Workload::Echo(vec![0, 0xab, b'x'])).unwrap();
        assert_eq!(wire, [0, 3, 0, 0xab, b'x']);
    }

    #[test]
    fn a_fault_fires_only_on_its_first_attempts() {
        let once = Fault::once(FaultKind::SigKill, FaultPoint::MidTask);
        assert!(once.fires(0) && !once.fires(1));
        let poison = Fault { times: Fault::ALWAYS, ..once };
        assert!(poison.fires(1_000_000));
    }
}
