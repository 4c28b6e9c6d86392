//! The sandbox every (scenario, pool) run happens in: the cgroups that hold
//! the run's processes, set its memory limit and count its OOM kills, and
//! the one call that tears the whole run down.
//!
//! # Design notes
//!
//! **Where the cgroups go.** A run's cgroups are made *below this process's
//! own cgroups* (read from `/proc/self/cgroup`, located through
//! `/proc/self/mountinfo`), never at a hierarchy's root: that is the part of
//! the tree a delegated harness may write, and it keeps each session's runs
//! apart. Each is named `poolchaos-<harness pid>-<run id>`, so a later
//! harness can tell whose it is and whether its maker is still alive (see
//! [`clean_stale`]).
//!
//! **cgroup v2** (a v2 hierarchy whose `cgroup.controllers` has `memory`):
//! one cgroup, `memory.max` set to the limit and `memory.swap.max` to 0 (so
//! the limit means an OOM kill, not swapping). The parent must delegate
//! `memory` (`cgroup.subtree_control`); the sandbox enables it if it can, but
//! v2's "no internal processes" rule forbids that in a non-root cgroup that
//! holds processes (this one), so the harness has to run in a delegated
//! subtree; otherwise it falls back (below) and says why
//! ([`Sandbox::fallback_reason`]). `memory.oom.group` is left off: the
//! kernel kills the biggest process (the worker that allocates), not the
//! pool's owner, which is what the faults want to show. OOM kills are read
//! from `memory.events` (`oom_kill`); the whole run is killed through
//! `cgroup.kill` (Linux 5.14), which the kernel makes atomic against forks,
//! or, on older kernels, `cgroup.freeze` + SIGKILL each + thaw.
//!
//! **cgroup v1** (this project's CI machines: hybrid, the controllers on v1,
//! the unified mount empty): three cgroups of the same name, in `memory`
//! (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` to the same
//! value where swap accounting exists), `freezer` and `pids`. OOM kills are
//! the `oom_kill` line of `memory.oom_control`. v1 has no `cgroup.kill`, so
//! the run is killed by the freezer: write `FROZEN` to `freezer.state`, wait
//! (bounded) until it reads `FROZEN`, SIGKILL every pid in `cgroup.procs`,
//! write `THAWED`. While frozen nothing can fork and nothing can exit, so the
//! list is complete and no pid in it can be recycled before its signal; a
//! frozen task keeps its SIGKILL pending until the thaw, then dies before it
//! runs another user instruction. `freezer` and `pids` are used where they
//! are mounted; without a freezer the kill is a loop of "list, SIGKILL
//! each" until the list stays empty. The `pids` cgroup carries no limit
//! unless asked ([`Sandbox::limit_pids`]): it is a safety net against fork
//! storms on a shared machine, not part of any fault.
//!
//! **Without cgroups** (not root, no memory controller, `POOLCHAOS_NO_CGROUP=1`,
//! or [`Sandbox::create_without_cgroup`]): the run is the *process group* of
//! the owner, which the runner spawns with `process_group(0)`. The processes
//! are found by scanning `/proc` for that pgid; the kill is `killpg` plus a
//! SIGKILL to every member found, repeated until none is left. An RSS
//! watchdog thread polls the members every [`WATCHDOG_TICK`] and SIGKILLs
//! (through a pidfd, after checking it is still the same process) any whose
//! RSS passes the limit; [`Sandbox::oom_kills`] is its kill count. This is
//! weaker, and the report says which mechanism ran: a process that calls
//! `setsid`/`setpgid` escapes; the limit is per process, not for the run's
//! sum; an allocation spike shorter than a tick can slip through; and the
//! "OOM" is a SIGKILL sent by the harness, not by the kernel. A process
//! group id is a pid: once every member is gone it may be recycled, so
//! before using it the sandbox checks that the pid is either unused or still
//! its leader (same start time); a recycled one means the run is over.
//!
//! **Zombies.** (Checked on Linux 6.18, v1.) A process that has exited but
//! is not reaped is *not* listed in `cgroup.procs` (the kernel skips tasks
//! whose threads have all exited), the pids controller still counts it in
//! `pids.current`, and it does not stop `rmdir` of the cgroup. So "no
//! process left" is "`cgroup.procs` is empty" and does not wait for anyone to
//! reap; the fallback likewise ignores `/proc` entries in state `Z`. Reaping
//! is the runner's: it reaps the owner (its child), and the harness is a
//! child subreaper, so orphaned workers end up as its children too:
//! [`reap_orphans`] reaps those, but never a pid that someone waits for by
//! pid (the owner of a live sandbox, or one registered with [`keep_child`]),
//! since reaping that would make the other waiter fail with `ECHILD`.
//!
//! **Teardown.** [`Sandbox::remove`] kills everything, then removes every
//! cgroup of the run (bottom-up, in case the pool made sub-cgroups);
//! dropping a `Sandbox` does the same, ignoring errors, so a panicking
//! runner leaves nothing. A harness killed outright leaves its cgroups: the
//! next harness's [`clean_stale`] finds them by name. Every wait has a
//! deadline: freezing [`FREEZE_WAIT`], killing [`KILL_WAIT`], `rmdir`
//! [`RMDIR_WAIT`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use serde::{Deserialize, Serialize};

/// Every cgroup a harness makes starts with this, then `<pid>-<run id>`.
pub const PREFIX: &str = "poolchaos-";
/// Set to `1` to run without cgroups (the RSS watchdog), even as root.
pub const NO_CGROUP_ENV: &str = "POOLCHAOS_NO_CGROUP";
/// How long a kill waits for the freezer to report `FROZEN` before it kills anyway.
pub const FREEZE_WAIT: Duration = Duration::from_secs(1);
/// How long a kill waits for the last process of the run to go.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long `rmdir` of a cgroup is retried while the kernel still calls it busy.
pub const RMDIR_WAIT: Duration = Duration::from_secs(2);
/// How often the RSS watchdog looks.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(20);
/// Polling step of the bounded waits.
const POLL: Duration = Duration::from_millis(2);
/// A harness pid whose process started this long after its cgroup was made
/// is a recycled pid, not the maker (process start times are only known to
/// about a second, through `btime`).
const REUSE_SLACK: Duration = Duration::from_secs(2);

/// How a run's memory limit is enforced, and so how its OOM kills are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OomMechanism {
    /// A v2 cgroup with `memory.max`: the kernel's OOM killer.
    #[serde(rename = "cgroup-v2")]
    CgroupV2,
    /// A v1 memory cgroup with `memory.limit_in_bytes`: the kernel's OOM killer.
    #[serde(rename = "cgroup-v1")]
    CgroupV1,
    /// No cgroup: a harness thread SIGKILLs a process whose RSS passes the limit.
    #[serde(rename = "rss-watchdog")]
    RssWatchdog,
}

impl OomMechanism {
    pub fn name(self) -> &'static str {
        match self {
            OomMechanism::CgroupV2 => "cgroup-v2",
            OomMechanism::CgroupV1 => "cgroup-v1",
            OomMechanism::RssWatchdog => "rss-watchdog",
        }
    }
}

impl fmt::Display for OomMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong with a sandbox; each names the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("run id {run_id:?}: {reason}")]
    InvalidRunId { run_id: String, reason: &'static str },
    #[error("memory limit of {mib} MiB: must be at least 1 and fit in bytes")]
    InvalidLimit { mib: u64 },
    #[error("{what} is not available: {reason}")]
    Unavailable { what: String, reason: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter pid {pid}: {reason}")]
    Enter { pid: u32, reason: String },
    #[error("starting the RSS watchdog thread: {0}")]
    Thread(#[source] io::Error),
    #[error(
        "{} process(es) of {name} still alive after {waited:?} of killing: {pids:?}{}",
        pids.len(),
        cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Survivors { name: String, pids: Vec<u32>, waited: Duration, cause: Option<Box<SandboxError>> },
}

impl SandboxError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> SandboxError {
        SandboxError::Io { op, path: path.into(), source }
    }

    fn unavailable(what: &str, reason: impl Into<String>) -> SandboxError {
        SandboxError::Unavailable { what: what.to_string(), reason: reason.into() }
    }
}

/// How to make a sandbox; [`Sandbox::create`] is `create_with` of the default
/// mechanism choice.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The run's memory limit, if any.
    pub memory_limit_mib: Option<u64>,
    /// `None`: the best there is (v2 with memory, else v1 memory, else the
    /// watchdog), or the watchdog when `POOLCHAOS_NO_CGROUP=1`. `Some(m)`:
    /// exactly `m`, or an error. `Some(CgroupV2)` without a limit is allowed
    /// in a v2 hierarchy without the memory controller (for `cgroup.kill`
    /// and `cgroup.procs` alone).
    pub mechanism: Option<OomMechanism>,
}

/// The cgroups (or, without them, the process group) of one run.
pub struct Sandbox {
    name: String,
    limit_bytes: Option<u64>,
    backend: Backend,
    fallback_reason: Option<String>,
    /// Pids given to `enter`, kept from [`reap_orphans`] until teardown.
    entered: Mutex<Vec<u32>>,
    torn_down: bool,
    /// Last: unregisters the name after `Drop::drop` has torn down.
    _live: LiveName,
}

enum Backend {
    Cgroups(Cgroups),
    Group(Fallback),
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism())
            .field("limit_bytes", &self.limit_bytes)
            .field("cgroups", &self.cgroup_dirs())
            .field("fallback_reason", &self.fallback_reason)
            .finish()
    }
}

impl Sandbox {
    /// Creates the run's cgroups under this process's own cgroups (memory
    /// with the limit, plus freezer and pids on v1; one v2 cgroup where the v2
    /// hierarchy has the memory controller), named
    /// `poolchaos-<harness pid>-<run_id>`. Where no cgroup can be made (not
    /// root, no controller; also when `POOLCHAOS_NO_CGROUP=1`), falls back to
    /// the RSS watchdog.
    pub fn create(run_id: &str, memory_limit_mib: Option<u64>) -> Result<Sandbox, SandboxError> {
        Sandbox::create_with(run_id, SandboxOptions { memory_limit_mib, mechanism: None })
    }

    /// The fallback, whatever the machine offers: the run's process group and
    /// the RSS watchdog. For tests, and for harnesses told not to use cgroups.
    pub fn create_without_cgroup(run_id: &str, memory_limit_mib: Option<u64>) -> Result<Sandbox, SandboxError> {
        Sandbox::create_with(run_id, SandboxOptions { memory_limit_mib, mechanism: Some(OomMechanism::RssWatchdog) })
    }

    pub fn create_with(run_id: &str, options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        check_run_id(run_id)?;
        let limit_bytes = match options.memory_limit_mib {
            None => None,
            Some(mib) => Some(
                mib.checked_mul(1 << 20)
                    .filter(|&b| b > 0 && b <= i64::MAX as u64)
                    .ok_or(SandboxError::InvalidLimit { mib })?,
            ),
        };
        let name = format!("{PREFIX}{}-{run_id}", std::process::id());
        let live = LiveName::register(&name, run_id)?;
        let wanted = options.mechanism.or_else(|| no_cgroup_env().then_some(OomMechanism::RssWatchdog));
        let (backend, fallback_reason) = match wanted {
            Some(OomMechanism::RssWatchdog) => {
                let why = match options.mechanism {
                    Some(_) => "asked for (create_without_cgroup)".to_string(),
                    None => format!("asked for ({NO_CGROUP_ENV}=1)"),
                };
                (Backend::Group(Fallback::start(limit_bytes)?), Some(why))
            }
            Some(OomMechanism::CgroupV1) => (Backend::Cgroups(make_v1(&name, limit_bytes)?), None),
            Some(OomMechanism::CgroupV2) => {
                (Backend::Cgroups(make_v2(&name, limit_bytes, limit_bytes.is_some())?), None)
            }
            None => match make_v2(&name, limit_bytes, true) {
                Ok(cgroups) => (Backend::Cgroups(cgroups), None),
                Err(v2) => match make_v1(&name, limit_bytes) {
                    Ok(cgroups) => (Backend::Cgroups(cgroups), None),
                    Err(v1) => {
                        let why = format!("cgroup v2: {v2}; cgroup v1: {v1}");
                        (Backend::Group(Fallback::start(limit_bytes)?), Some(why))
                    }
                },
            },
        };
        Ok(Sandbox {
            name,
            limit_bytes,
            backend,
            fallback_reason,
            entered: Mutex::new(Vec::new()),
            torn_down: false,
            _live: live,
        })
    }

    pub fn mechanism(&self) -> OomMechanism {
        match &self.backend {
            Backend::Cgroups(c) if c.get(Kind::V2).is_some() => OomMechanism::CgroupV2,
            Backend::Cgroups(_) => OomMechanism::CgroupV1,
            Backend::Group(_) => OomMechanism::RssWatchdog,
        }
    }

    /// `poolchaos-<harness pid>-<run id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The memory limit in bytes, if the run has one.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.limit_bytes
    }

    /// Why the sandbox runs without cgroups (`None` when it has them).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The run's cgroup directories (empty without cgroups), for leak checks.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::Cgroups(c) => c.paths(),
            Backend::Group(_) => Vec::new(),
        }
    }

    /// Caps the number of tasks of the run (`pids.max`), a safety net against
    /// fork storms. An error where there is no pids cgroup.
    pub fn limit_pids(&self, max: u64) -> Result<(), SandboxError> {
        let dir = match &self.backend {
            Backend::Cgroups(c) => c
                .get(Kind::V1Pids)
                .map(Path::to_path_buf)
                .or_else(|| c.get(Kind::V2).map(Path::to_path_buf).filter(|d| d.join("pids.max").exists())),
            Backend::Group(_) => None,
        };
        let Some(dir) = dir else {
            return Err(SandboxError::unavailable("a task limit", format!("{} has no pids cgroup", self.name)));
        };
        write_file(&dir.join("pids.max"), &max.to_string(), "set the task limit in")
    }

    /// Puts `pid` (the owner, not started yet) and so its future children in
    /// the run: `cgroup.procs` on every controller. Without cgroups, `pid`
    /// must lead its own process group, which becomes the run. The pid is
    /// kept from [`reap_orphans`] until the sandbox is torn down.
    pub fn enter(&self, pid: u32) -> Result<(), SandboxError> {
        if pid == 0 || pid == std::process::id() {
            return Err(SandboxError::Enter { pid, reason: "not a pid of another process".into() });
        }
        match &self.backend {
            Backend::Cgroups(c) => {
                let mut done = HashSet::new();
                for dir in &c.dirs {
                    if done.insert(&dir.path) {
                        write_file(&dir.path.join("cgroup.procs"), &pid.to_string(), "move the process into")?;
                    }
                }
            }
            Backend::Group(f) => {
                let path = PathBuf::from(format!("/proc/{pid}/stat"));
                let text = fs::read_to_string(&path).map_err(|e| SandboxError::io("read", &path, e))?;
                let stat = parse_stat(pid, &text)
                    .ok_or_else(|| SandboxError::Enter { pid, reason: format!("cannot parse {}", path.display()) })?;
                if stat.pgrp != pid {
                    return Err(SandboxError::Enter {
                        pid,
                        reason: format!(
                            "it is in process group {}, not its own (spawn it with process_group(0))",
                            stat.pgrp
                        ),
                    });
                }
                let mut group = lock(&f.group);
                match *group {
                    Some(g) if g.pgid != pid => {
                        return Err(SandboxError::Enter {
                            pid,
                            reason: format!("the run is already process group {}", g.pgid),
                        });
                    }
                    _ => *group = Some(Group { pgid: pid, leader_start: stat.start }),
                }
            }
        }
        keep(pid);
        lock(&self.entered).push(pid);
        Ok(())
    }

    /// Every live process of the run, sorted: `cgroup.procs` (zombies are not
    /// in it); without cgroups, the non-zombie processes of the run's process
    /// group.
    pub fn processes(&self) -> Vec<u32> {
        match &self.backend {
            Backend::Cgroups(c) => c.procs(),
            Backend::Group(f) => match *lock(&f.group) {
                Some(g) => g.members().iter().map(|s| s.pid).collect(),
                None => Vec::new(),
            },
        }
    }

    /// OOM kills so far: v1 `memory.oom_control` `oom_kill`, v2
    /// `memory.events` `oom_kill`; without cgroups, the watchdog's kills.
    pub fn oom_kills(&self) -> u64 {
        match &self.backend {
            Backend::Cgroups(c) => c.oom_kills(),
            Backend::Group(f) => f.kills.load(Ordering::Relaxed),
        }
    }

    /// Kills every process of the run (see the module notes for how), then
    /// waits, at most [`KILL_WAIT`], until none is left. Returns the pids it
    /// signalled (or, with `cgroup.kill`, saw), sorted.
    pub fn kill_all(&self) -> Result<Vec<u32>, SandboxError> {
        match &self.backend {
            Backend::Cgroups(c) => c.kill_all(&self.name),
            Backend::Group(f) => {
                let group = *lock(&f.group);
                kill_group(&self.name, group)
            }
        }
    }

    /// [`Sandbox::kill_all`], then removes every cgroup of the run.
    pub fn remove(mut self) -> Result<(), SandboxError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), SandboxError> {
        let killed = self.kill_all();
        let removed = match &mut self.backend {
            Backend::Cgroups(c) => c.remove_dirs(),
            Backend::Group(f) => {
                f.stop();
                Ok(())
            }
        };
        killed?;
        removed?;
        self.torn_down = true;
        for pid in std::mem::take(&mut *lock(&self.entered)) {
            unkeep(pid);
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = self.teardown();
        }
        if let Backend::Group(f) = &mut self.backend {
            f.stop();
        }
        for pid in std::mem::take(&mut *lock(&self.entered)) {
            unkeep(pid);
        }
    }
}

/// Removes what earlier harness processes that died left behind: every
/// `poolchaos-<pid>-*` cgroup (all controllers, under this process's own
/// cgroups) whose `<pid>` is no longer alive, or is alive but started after
/// the cgroup was made (a recycled pid): kills the processes inside (freeze,
/// kill, thaw) and removes it. Returns what it removed. A cgroup whose
/// processes cannot all be killed is left (and not returned).
pub fn clean_stale() -> Vec<PathBuf> {
    let Ok(own) = own_cgroups() else {
        return Vec::new();
    };
    let mut parents: Vec<(Kind, PathBuf)> = Vec::new();
    for (controller, kind) in V1_CONTROLLERS {
        if let Some(dir) = own.v1.get(controller) {
            parents.push((kind, dir.clone()));
        }
    }
    if let Some(dir) = own.v2 {
        parents.push((Kind::V2, dir));
    }
    let live = lock(&LIVE).clone();
    let mut stale: BTreeMap<String, Cgroups> = BTreeMap::new();
    for (kind, parent) in parents {
        let Ok(entries) = fs::read_dir(&parent) else { continue };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let Some(pid) = harness_pid_of(name) else { continue };
            let path = entry.path();
            if live.contains(name) || !path.is_dir() || harness_alive(pid, &path) {
                continue;
            }
            stale.entry(name.to_string()).or_default().dirs.push(CgDir { kind, path });
        }
    }
    let mut removed = Vec::new();
    for (name, cgroups) in stale {
        if cgroups.kill_all(&name).is_err() {
            continue;
        }
        let deadline = Instant::now() + RMDIR_WAIT;
        for dir in &cgroups.dirs {
            if rmdir_tree(&dir.path, deadline).is_ok() && !removed.contains(&dir.path) {
                removed.push(dir.path.clone());
            }
        }
    }
    removed
}

/// Keeps `pid` from [`reap_orphans`] while the guard lives: for a child that
/// someone waits for by pid (a `std::process::Child`). Entering a sandbox
/// does this for the owner until the sandbox is torn down.
#[must_use = "the pid is kept only while the guard lives"]
#[derive(Debug)]
pub struct KeptChild {
    pid: u32,
}

pub fn keep_child(pid: u32) -> KeptChild {
    keep(pid);
    KeptChild { pid }
}

impl Drop for KeptChild {
    fn drop(&mut self) {
        unkeep(self.pid);
    }
}

/// Reaps every child of this process that has exited (orphaned workers
/// re-parented to the harness, a subreaper), except the kept ones: the
/// owners of live sandboxes and pids given to [`keep_child`]. Never blocks.
/// The runner should reap its owner itself (by pid or pidfd) and call this
/// after. Returns what it reaped.
pub fn reap_orphans() -> Vec<(u32, ExitStatus)> {
    reap_orphans_except(&[])
}

/// [`reap_orphans`], also leaving alone the pids in `exclude`.
///
/// It does not call `waitpid(-1)`, which would take whichever child exited
/// first, kept or not: it lists the children (`/proc/self/task/*/children`,
/// else a `/proc` scan by parent pid) and waits for each one that may be
/// reaped by pid, with `WNOHANG`.
pub fn reap_orphans_except(exclude: &[u32]) -> Vec<(u32, ExitStatus)> {
    let kept = lock(&KEPT).clone();
    let mut reaped = Vec::new();
    for pid in own_children() {
        if kept.contains(&pid) || exclude.contains(&pid) {
            continue;
        }
        let Some(p) = to_pid(pid) else { continue };
        if let Ok(Some((_, status))) = rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
            reaped.push((pid, ExitStatus::from_raw(status.as_raw())));
        }
    }
    reaped
}

// ---------------------------------------------------------------------------
// Process-wide registries.

/// Names of this process's live sandboxes: never "stale", never twice.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Pids [`reap_orphans`] must leave alone (a multiset).
static KEPT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn keep(pid: u32) {
    lock(&KEPT).push(pid);
}

fn unkeep(pid: u32) {
    let mut kept = lock(&KEPT);
    if let Some(i) = kept.iter().position(|&p| p == pid) {
        kept.swap_remove(i);
    }
}

struct LiveName(String);

impl LiveName {
    fn register(name: &str, run_id: &str) -> Result<LiveName, SandboxError> {
        if !lock(&LIVE).insert(name.to_string()) {
            return Err(SandboxError::InvalidRunId {
                run_id: run_id.to_string(),
                reason: "a live sandbox of this process already has it",
            });
        }
        Ok(LiveName(name.to_string()))
    }
}

impl Drop for LiveName {
    fn drop(&mut self) {
        lock(&LIVE).remove(&self.0);
    }
}

fn check_run_id(run_id: &str) -> Result<(), SandboxError> {
    let bad = |reason| Err(SandboxError::InvalidRunId { run_id: run_id.to_string(), reason });
    if run_id.is_empty() || run_id.len() > 100 {
        return bad("must be 1 to 100 characters");
    }
    if !run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || run_id.starts_with('.') {
        return bad("may hold only ASCII letters, digits, '-', '_' and '.', and not start with '.'");
    }
    Ok(())
}

fn no_cgroup_env() -> bool {
    std::env::var_os(NO_CGROUP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

// ---------------------------------------------------------------------------
// cgroups.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    V1Memory,
    V1Freezer,
    V1Pids,
    V2,
}

const V1_CONTROLLERS: [(&str, Kind); 3] =
    [("memory", Kind::V1Memory), ("freezer", Kind::V1Freezer), ("pids", Kind::V1Pids)];

#[derive(Debug, Clone)]
struct CgDir {
    kind: Kind,
    path: PathBuf,
}

/// One run's cgroups. Co-mounted v1 controllers give two entries with one
/// path; everything here copes with that.
#[derive(Debug, Default)]
struct Cgroups {
    dirs: Vec<CgDir>,
}

impl Cgroups {
    fn get(&self, kind: Kind) -> Option<&Path> {
        self.dirs.iter().find(|d| d.kind == kind).map(|d| d.path.as_path())
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for d in &self.dirs {
            if !paths.contains(&d.path) {
                paths.push(d.path.clone());
            }
        }
        paths
    }

    /// Makes `path` (clearing a stale one of the same name first) and adds it.
    fn make(&mut self, kind: Kind, path: PathBuf) -> Result<(), SandboxError> {
        if !self.dirs.iter().any(|d| d.path == path) {
            match fs::create_dir(&path) {
                // kernfs stamps a directory when its inode is first looked up,
                // not at mkdir: look it up now, for `clean_stale`'s pid check.
                Ok(()) => drop(fs::metadata(&path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Our name, but no live sandbox of ours has it: a previous
                    // process with this pid left it. Clear it and start afresh.
                    let old = Cgroups { dirs: vec![CgDir { kind, path: path.clone() }] };
                    old.kill_all(&path.display().to_string())?;
                    rmdir_tree(&path, Instant::now() + RMDIR_WAIT)?;
                    fs::create_dir(&path).map_err(|e| SandboxError::io("create cgroup", &path, e))?;
                }
                Err(e) => return Err(SandboxError::io("create cgroup", &path, e)),
            }
        }
        self.dirs.push(CgDir { kind, path });
        Ok(())
    }

    fn procs(&self) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for path in self.paths() {
            read_procs_tree(&path, &mut pids);
        }
        pids.into_iter().collect()
    }

    fn oom_kills(&self) -> u64 {
        if let Some(dir) = self.get(Kind::V1Memory) {
            return read_key(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0);
        }
        if let Some(dir) = self.get(Kind::V2) {
            return read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0);
        }
        0
    }

    fn kill_all(&self, name: &str) -> Result<Vec<u32>, SandboxError> {
        let started = Instant::now();
        let mut killed = BTreeSet::new();
        let mut cause = None;
        let v2_kill = self.get(Kind::V2).map(|d| d.join("cgroup.kill")).filter(|f| f.exists());
        if let Some(kill_file) = &v2_kill {
            killed.extend(self.procs());
            if let Err(e) = write_file(kill_file, "1", "kill the cgroup through") {
                cause = Some(e);
            }
        } else if let Some(dir) = self.get(Kind::V2) {
            let freeze = Freeze {
                file: dir.join("cgroup.freeze"),
                frozen_value: "1",
                thawed_value: "0",
                state_file: dir.join("cgroup.events"),
            };
            if let Err(e) = freeze.kill_frozen(|| self.procs(), &mut killed) {
                cause = Some(e);
            }
        } else if let Some(dir) = self.get(Kind::V1Freezer) {
            let freeze = Freeze {
                file: dir.join("freezer.state"),
                frozen_value: "FROZEN",
                thawed_value: "THAWED",
                state_file: dir.join("freezer.state"),
            };
            if let Err(e) = freeze.kill_frozen(|| self.procs(), &mut killed) {
                cause = Some(e);
            }
        }
        // Whatever is left: killed already and on its way out, or (without a
        // freezer, or if freezing failed) not yet signalled.
        let deadline = started + KILL_WAIT;
        loop {
            let left = self.procs();
            if left.is_empty() {
                return Ok(killed.into_iter().collect());
            }
            if Instant::now() >= deadline {
                return Err(SandboxError::Survivors {
                    name: name.to_string(),
                    pids: left,
                    waited: started.elapsed(),
                    cause: cause.map(Box::new),
                });
            }
            match &v2_kill {
                Some(kill_file) => {
                    let _ = write_file(kill_file, "1", "kill the cgroup through");
                }
                None => left.iter().for_each(|&p| sigkill(p)),
            }
            killed.extend(left);
            std::thread::sleep(POLL);
        }
    }

    fn remove_dirs(&self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + RMDIR_WAIT;
        let mut first = None;
        for path in self.paths() {
            if let Err(e) = rmdir_tree(&path, deadline) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A freezer: v1 `freezer.state`, or v2 `cgroup.freeze` + `cgroup.events`.
struct Freeze {
    file: PathBuf,
    frozen_value: &'static str,
    thawed_value: &'static str,
    state_file: PathBuf,
}

impl Freeze {
    fn is_frozen(&self) -> bool {
        let Ok(text) = fs::read_to_string(&self.state_file) else { return false };
        if self.frozen_value == "FROZEN" {
            text.trim() == "FROZEN"
        } else {
            text.lines().any(|l| l.trim() == "frozen 1")
        }
    }

    /// Freezes, waits (bounded) until frozen, SIGKILLs everything listed,
    /// thaws. Thaws whatever happened after the freeze was asked for.
    fn kill_frozen(&self, procs: impl Fn() -> Vec<u32>, killed: &mut BTreeSet<u32>) -> Result<(), SandboxError> {
        write_file(&self.file, self.frozen_value, "freeze the cgroup through")?;
        let until = Instant::now() + FREEZE_WAIT;
        while !self.is_frozen() && Instant::now() < until {
            std::thread::sleep(POLL);
        }
        for pid in procs() {
            sigkill(pid);
            killed.insert(pid);
        }
        // Thawing is what lets the killed go: retry it a little.
        let mut thawed = write_file(&self.file, self.thawed_value, "thaw the cgroup through");
        for _ in 0..10 {
            if thawed.is_ok() {
                break;
            }
            std::thread::sleep(POLL);
            thawed = write_file(&self.file, self.thawed_value, "thaw the cgroup through");
        }
        thawed
    }
}

fn sigkill(pid: u32) {
    if let Some(p) = to_pid(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
    }
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

fn write_file(path: &Path, value: &str, op: &'static str) -> Result<(), SandboxError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| SandboxError::io(op, path, e))
}

/// `cgroup.procs` of `dir` and every cgroup below it.
fn read_procs_tree(dir: &Path, pids: &mut BTreeSet<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                read_procs_tree(&entry.path(), pids);
            }
        }
    }
}

/// The number after `key` in a flat-keyed file (`memory.events`, `memory.oom_control`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(key)).then(|| words.next()?.parse().ok()).flatten()
    })
}

/// Removes `dir` after every cgroup below it, retrying `EBUSY` until `deadline`.
fn rmdir_tree(dir: &Path, deadline: Instant) -> Result<(), SandboxError> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path(), deadline)?;
            }
        }
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(POLL * 5);
            }
            Err(e) => return Err(SandboxError::io("remove cgroup", dir, e)),
        }
    }
}

fn make_v1(name: &str, limit_bytes: Option<u64>) -> Result<Cgroups, SandboxError> {
    let own = own_cgroups()
        .map_err(|e| SandboxError::unavailable("cgroup v1", format!("reading /proc/self/{{cgroup,mountinfo}}: {e}")))?;
    if !own.v1.contains_key("memory") {
        return Err(SandboxError::unavailable("cgroup v1", "no v1 memory hierarchy holds this process"));
    }
    let mut cgroups = Cgroups::default();
    match fill_v1(&mut cgroups, &own, name, limit_bytes) {
        Ok(()) => Ok(cgroups),
        Err(e) => {
            let _ = cgroups.remove_dirs();
            Err(e)
        }
    }
}

fn fill_v1(cgroups: &mut Cgroups, own: &OwnCgroups, name: &str, limit_bytes: Option<u64>) -> Result<(), SandboxError> {
    for (controller, kind) in V1_CONTROLLERS {
        if let Some(parent) = own.v1.get(controller) {
            cgroups.make(kind, parent.join(name))?;
        }
    }
    if let (Some(bytes), Some(dir)) = (limit_bytes, cgroups.get(Kind::V1Memory)) {
        write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string(), "set the memory limit in")?;
        // Memory + swap, where swap is accounted: the same, so the limit
        // means an OOM kill rather than swapping. Best effort.
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            let _ = write_file(&memsw, &bytes.to_string(), "set the memory+swap limit in");
        }
    }
    Ok(())
}

fn make_v2(name: &str, limit_bytes: Option<u64>, need_memory: bool) -> Result<Cgroups, SandboxError> {
    let own = own_cgroups()
        .map_err(|e| SandboxError::unavailable("cgroup v2", format!("reading /proc/self/{{cgroup,mountinfo}}: {e}")))?;
    let Some(parent) = own.v2 else {
        return Err(SandboxError::unavailable("cgroup v2", "no cgroup2 hierarchy is mounted"));
    };
    let controllers_file = parent.join("cgroup.controllers");
    let controllers = fs::read_to_string(&controllers_file)
        .map_err(|e| SandboxError::unavailable("cgroup v2", format!("{}: {e}", controllers_file.display())))?;
    let has = |c: &str| controllers.split_whitespace().any(|w| w == c);
    if (need_memory || limit_bytes.is_some()) && !has("memory") {
        return Err(SandboxError::unavailable(
            "cgroup v2",
            format!("no memory controller in {} ({:?})", controllers_file.display(), controllers.trim()),
        ));
    }
    if has("memory") {
        delegate(&parent, "memory").map_err(|e| {
            SandboxError::unavailable(
                "cgroup v2",
                format!(
                    "{e} (a v2 cgroup holding processes cannot pass controllers to children; \
                     run the harness in a delegated subtree)"
                ),
            )
        })?;
    }
    if has("pids") {
        let _ = delegate(&parent, "pids");
    }
    let mut cgroups = Cgroups::default();
    let filled = cgroups.make(Kind::V2, parent.join(name)).and_then(|()| {
        let (Some(bytes), Some(dir)) = (limit_bytes, cgroups.get(Kind::V2)) else { return Ok(()) };
        write_file(&dir.join("memory.max"), &bytes.to_string(), "set the memory limit in")?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            let _ = write_file(&swap, "0", "forbid swap in");
        }
        Ok(())
    });
    match filled {
        Ok(()) => Ok(cgroups),
        Err(e) => {
            let _ = cgroups.remove_dirs();
            Err(e)
        }
    }
}

/// Makes sure `parent`'s children get `controller` (`cgroup.subtree_control`).
fn delegate(parent: &Path, controller: &str) -> Result<(), SandboxError> {
    let file = parent.join("cgroup.subtree_control");
    let now = fs::read_to_string(&file).map_err(|e| SandboxError::io("read", &file, e))?;
    if now.split_whitespace().any(|w| w == controller) {
        return Ok(());
    }
    write_file(&file, &format!("+{controller}"), "enable the controller for children in")
}

/// This process's own cgroup directory per v1 controller, and in v2.
#[derive(Debug, Default, PartialEq)]
struct OwnCgroups {
    v1: BTreeMap<String, PathBuf>,
    v2: Option<PathBuf>,
}

fn own_cgroups() -> io::Result<OwnCgroups> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let cgroup = fs::read_to_string("/proc/self/cgroup")?;
    Ok(parse_own_cgroups(&mountinfo, &cgroup))
}

#[derive(Debug)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?.to_string();
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("").split(',').map(str::to_string).collect();
            Some(Mount {
                root: unescape_mount(left.get(3)?),
                point: PathBuf::from(unescape_mount(left.get(4)?)),
                fstype,
                super_options,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` (a cgroup path, from the hierarchy's root) below a mount of `root`.
fn under_mount(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path.trim_start_matches('/')
    } else if path == mount.root {
        ""
    } else {
        path.strip_prefix(mount.root.as_str())?.strip_prefix('/')?
    };
    Some(if rel.is_empty() { mount.point.clone() } else { mount.point.join(rel) })
}

fn parse_own_cgroups(mountinfo: &str, cgroup: &str) -> OwnCgroups {
    let mounts = parse_mountinfo(mountinfo);
    let mut own = OwnCgroups::default();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            own.v2 = mounts.iter().filter(|m| m.fstype == "cgroup2").find_map(|m| under_mount(m, path));
            continue;
        }
        let names: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty() && !c.starts_with("name=")).collect();
        if names.is_empty() {
            continue;
        }
        let dir = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && names.iter().all(|n| m.super_options.iter().any(|o| o == n)))
            .find_map(|m| under_mount(m, path));
        if let Some(dir) = dir {
            for name in names {
                own.v1.insert(name.to_string(), dir.clone());
            }
        }
    }
    own
}

/// The `<pid>` of `poolchaos-<pid>-<run id>`.
fn harness_pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, run) = rest.split_once('-')?;
    if run.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether the harness that made `dir` may still be alive: its pid names a
/// live process that started before the cgroup was made.
fn harness_alive(pid: u32, dir: &Path) -> bool {
    let Some(stat) = read_stat(pid) else { return false };
    if matches!(stat.state, b'Z' | b'X' | b'x') {
        return false;
    }
    // kernfs times are those of the first lookup of the directory, at or
    // after its mkdir (the harness looks it up at once): never too early,
    // so an error here can only keep a stale cgroup, never remove a live one.
    let made = fs::metadata(dir).and_then(|m| m.modified()).ok();
    match (process_start_time(stat.start), made) {
        (Some(started), Some(made)) => started <= made + REUSE_SLACK,
        _ => true,
    }
}

fn process_start_time(start_ticks: u64) -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let since_boot =
        Duration::from_secs(start_ticks / ticks) + Duration::from_nanos((start_ticks % ticks) * 1_000_000_000 / ticks);
    UNIX_EPOCH.checked_add(Duration::from_secs(btime) + since_boot)
}

// ---------------------------------------------------------------------------
// /proc.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    pid: u32,
    state: u8,
    ppid: u32,
    pgrp: u32,
    /// Start time after boot, in clock ticks: with the pid, names a process uniquely.
    start: u64,
    rss_pages: u64,
}

fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss ..."
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        rss_pages: fields.get(21)?.parse::<i64>().ok()?.max(0).unsigned_abs(),
    })
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn all_stats() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).filter_map(read_stat).collect()
}

fn own_children() -> Vec<u32> {
    let mut children = BTreeSet::new();
    let mut listed = false;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                listed = true;
                children.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    if !listed {
        let me = std::process::id();
        children.extend(all_stats().into_iter().filter(|s| s.ppid == me).map(|s| s.pid));
    }
    children.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Without cgroups: the process group and the RSS watchdog.

#[derive(Debug, Clone, Copy)]
struct Group {
    pgid: u32,
    leader_start: u64,
}

impl Group {
    /// Whether the pgid still names this run's group: its pid is free (the
    /// leader is reaped; members, if any, hold the number) or still the
    /// leader. Another process with that pid means the number was recycled,
    /// which can only happen after the whole group was gone.
    fn still_ours(&self) -> bool {
        read_stat(self.pgid).is_none_or(|s| s.start == self.leader_start)
    }

    /// The live (non-zombie) members.
    fn members(&self) -> Vec<ProcStat> {
        if !self.still_ours() {
            return Vec::new();
        }
        let mut members: Vec<ProcStat> =
            all_stats().into_iter().filter(|s| s.pgrp == self.pgid && !matches!(s.state, b'Z' | b'X' | b'x')).collect();
        members.sort_by_key(|s| s.pid);
        members
    }
}

/// SIGKILLs the process `stat` describes, and no other: through a pidfd,
/// after checking that the pid still names it.
fn kill_exact(stat: &ProcStat) -> bool {
    let Some(pid) = to_pid(stat.pid) else { return false };
    let Ok(fd) = rustix::process::pidfd_open(pid, PidfdFlags::empty()) else { return false };
    match read_stat(stat.pid) {
        Some(now) if now.start == stat.start && now.pgrp == stat.pgrp => {}
        _ => return false,
    }
    rustix::process::pidfd_send_signal(&fd, Signal::KILL).is_ok()
}

fn kill_group(name: &str, group: Option<Group>) -> Result<Vec<u32>, SandboxError> {
    let Some(group) = group else { return Ok(Vec::new()) };
    let started = Instant::now();
    let mut killed = BTreeSet::new();
    loop {
        let members = group.members();
        if members.is_empty() {
            return Ok(killed.into_iter().collect());
        }
        if started.elapsed() >= KILL_WAIT {
            return Err(SandboxError::Survivors {
                name: name.to_string(),
                pids: members.iter().map(|s| s.pid).collect(),
                waited: started.elapsed(),
                cause: None,
            });
        }
        // Members exist, so the pgid is still held by this run: killpg is safe.
        if let Some(pgid) = to_pid(group.pgid) {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
        for member in &members {
            kill_exact(member);
            killed.insert(member.pid);
        }
        std::thread::sleep(POLL);
    }
}

struct Fallback {
    group: Arc<Mutex<Option<Group>>>,
    kills: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Fallback {
    fn start(limit_bytes: Option<u64>) -> Result<Fallback, SandboxError> {
        let group = Arc::new(Mutex::new(None));
        let kills = Arc::new(AtomicU64::new(0));
        let (stop, thread) = match limit_bytes {
            None => (None, None),
            Some(limit) => {
                let (tx, rx) = mpsc::channel();
                let (g, k) = (Arc::clone(&group), Arc::clone(&kills));
                let thread = std::thread::Builder::new()
                    .name("poolchaos-rss-watchdog".into())
                    .spawn(move || watchdog(&g, &k, limit, &rx))
                    .map_err(SandboxError::Thread)?;
                (Some(tx), Some(thread))
            }
        };
        Ok(Fallback { group, kills, stop, thread })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watchdog(group: &Mutex<Option<Group>>, kills: &AtomicU64, limit: u64, stop: &mpsc::Receiver<()>) {
    let page = rustix::param::page_size() as u64;
    let mut killed: HashSet<(u32, u64)> = HashSet::new();
    loop {
        match stop.recv_timeout(WATCHDOG_TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(g) = *lock(group) else { continue };
        for member in g.members() {
            if member.rss_pages.saturating_mul(page) > limit
                && !killed.contains(&(member.pid, member.start))
                && kill_exact(&member)
            {
                killed.insert((member.pid, member.start));
                kills.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
35 33 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 33 0:35 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 33 0:36 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
42 33 0:37 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
43 33 0:38 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
44 33 0:39 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";

    #[test]
    fn finds_own_cgroups_in_a_hybrid_layout() {
        let cgroup =
            "9:name=systemd:/\n8:pids:/docker/abc/x\n6:freezer:/\n4:memory:/process_api/44\n2:cpu,cpuacct:/a\n0::/\n";
        let own = parse_own_cgroups(MOUNTINFO, cgroup);
        assert_eq!(own.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(own.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory/process_api/44"));
        assert_eq!(own.v1["freezer"], PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!(own.v1["pids"], PathBuf::from("/sys/fs/cgroup/pids/x"));
        assert_eq!(own.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a"));
        assert!(!own.v1.contains_key("name=systemd"));
    }

    #[test]
    fn a_path_outside_the_mount_root_is_not_found() {
        let own = parse_own_cgroups(MOUNTINFO, "8:pids:/elsewhere\n");
        assert!(!own.v1.contains_key("pids"));
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount(r"/x\\"), r"/x\\");
    }

    #[test]
    fn parses_stat_with_odd_comm() {
        let text =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 42 18446744073709551615";
        let s = parse_stat(1234, text).expect("parses");
        assert_eq!((s.state, s.ppid, s.pgrp, s.start, s.rss_pages), (b'S', 1, 1234, 98765, 42));
    }

    #[test]
    fn reads_harness_pids_from_names() {
        assert_eq!(harness_pid_of("poolchaos-123-0"), Some(123));
        assert_eq!(harness_pid_of("poolchaos-123-a-b"), Some(123));
        assert_eq!(harness_pid_of("poolchaos-123-"), None);
        assert_eq!(harness_pid_of("poolchaos-x-1"), None);
        assert_eq!(harness_pid_of("other-123-1"), None);
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(check_run_id("3").is_ok());
        assert!(check_run_id("a-b_c.d").is_ok());
        for bad in ["", "a/b", "..", ".x", "a b"] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(OomMechanism::CgroupV1.to_string(), "cgroup-v1");
        assert_eq!(serde_json::to_string(&OomMechanism::CgroupV2).ok().as_deref(), Some("\"cgroup-v2\""));
        assert_eq!(serde_json::to_string(&OomMechanism::RssWatchdog).ok().as_deref(), Some("\"rss-watchdog\""));
    }

    #[test]
    fn reads_flat_keyed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("memory.oom_control");
        fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(read_key(&f, "oom_kill"), Some(3));
        assert_eq!(read_key(&f, "missing"), None);
    }
}
