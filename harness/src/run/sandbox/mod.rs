//! The sandbox every (scenario, pool) run happens in: what holds the run's
//! processes, sets its memory limit and counts its OOM kills, and the one
//! call that tears the whole run down.
//!
//! # Design notes
//!
//! **Three backends, one facade.** [`Sandbox`] is the same to the runner
//! whatever the host offers; the [`Mechanism`] says which backend holds the
//! run and, where it is the fallback, why:
//!
//! | backend | memory limit and OOM | teardown | file |
//! |---|---|---|---|
//! | `cgroup-v2` | `memory.max`, `memory.swap.max` 0: the kernel's OOM killer; `memory.events` `oom_kill` | `cgroup.kill` (Linux 5.14), else `cgroup.freeze` + SIGKILL each + thaw | [`cgroup_v2`] |
//! | `cgroup-v1` | `memory.limit_in_bytes` (+ `memsw`): the kernel's; `memory.oom_control` `oom_kill` | `freezer.state` FROZEN, SIGKILL each in `cgroup.procs`, THAWED | [`cgroup_v1`] |
//! | `rss-watchdog` | a harness thread SIGKILLs a process over the limit: a **simulated** OOM | `killpg` + SIGKILL each member, until none | [`process_group`] |
//!
//! The host is probed once per [`Session`](crate::run::session::Session)
//! ([`Host::probe`], see [`find`]): cgroup v2 with the memory controller
//! first, else v1 `memory`. The runs go below a cgroup found in this order:
//! the one `POOLCHAOS_CGROUP` names, the harness's own (on v2 it moves
//! itself into a leaf and enables `memory` and `pids` for the runs'
//! subtree, see [`cgroup_v2`]), a systemd scope with `Delegate=yes` made
//! for it, or, as root, `/sys/fs/cgroup/poolchaos` ([`TOP_LEVEL`]). The
//! [`Mechanism`] names the way ([`Via`]) and the cgroup. Where none works,
//! the watchdog, with every way's reason and one command that gives the
//! kernel's OOM kill (`/sys/fs/cgroup is read-only`, not root,
//! `POOLCHAOS_NO_CGROUP=1`, ...). A run whose cgroup cannot be made falls
//! back to the watchdog with that error as its reason. Each run's cgroups
//! are named `poolchaos-<harness pid>-s<session>-<run id>`, so two sessions
//! of one process never collide and a later harness can tell whose they are
//! ([`stale`]).
//!
//! **Why a freezer or `cgroup.kill`.** While frozen nothing can fork and
//! nothing can exit, so the list is complete and no pid in it can be recycled
//! before its signal; a frozen task keeps its SIGKILL pending until the thaw,
//! then dies before it runs another user instruction. `cgroup.kill` does the
//! same in the kernel, atomically against forks. Each run also gets
//! `pids.max` ([`RUN_PIDS_MAX`]), a net against fork storms on a shared
//! machine; the `spawn` fault point lowers it to 0 once the pool is warm
//! ([`Sandbox::limit_pids`], from the runner), so the kernel refuses the
//! run's every fork.
//!
//! **Zombies.** (Checked on Linux 6.18, v1.) A process that has exited but
//! is not reaped is *not* listed in `cgroup.procs`, the pids controller still
//! counts it, and it does not stop `rmdir`. So "no process left" is
//! "`cgroup.procs` is empty" (and, on v2, `cgroup.events` `populated 0`) and
//! does not wait for anyone to reap. Reaping is the runner's (its owner) and
//! the session's (orphaned workers that come back to the harness, a child
//! subreaper: [`Session::reap_orphans`](crate::run::session::Session::reap_orphans),
//! which reaps only members of its live runs' process groups, never a child
//! someone else waits for).
//!
//! **Teardown.** [`Sandbox::remove`] kills everything, then removes every
//! cgroup of the run (bottom-up, in case the pool made sub-cgroups); dropping
//! a `Sandbox` does the same, ignoring errors, so a panicking runner leaves
//! nothing. A harness killed outright leaves its cgroups: the next session's
//! stale cleanup finds them by name. Every wait has a deadline: freezing
//! [`FREEZE_WAIT`], killing [`KILL_WAIT`], `rmdir` [`RMDIR_WAIT`].

mod cgroup;
pub(crate) mod cgroup_v1;
pub(crate) mod cgroup_v2;
pub(crate) mod find;
pub(crate) mod process_group;
pub(crate) mod procfs;
pub(crate) mod shm;
pub(crate) mod stale;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use cgroup::Kind;
use cgroup::{Cgroups, write_file};
use cgroup_v1::V1Host;
pub use cgroup_v2::CGROUP_ENV;
use cgroup_v2::V2Host;
pub use find::{SKIP_OWN_ENV, TOP_LEVEL};
use process_group::{Fallback, Group};
use procfs::{V2Place, parse_stat};
pub use shm::RunSemaphores;
pub use stale::{Leftovers, TEMP_PREFIX};

/// Every cgroup a harness makes starts with this, then `<pid>-`.
pub const PREFIX: &str = "poolchaos-";
/// Set to `1` to run without cgroups (the RSS watchdog), even as root.
pub const NO_CGROUP_ENV: &str = "POOLCHAOS_NO_CGROUP";
/// How long a kill waits for the freezer to report `FROZEN` before it kills anyway.
pub const FREEZE_WAIT: Duration = Duration::from_secs(1);
/// How long a kill waits for the last process of the run to go (a storm of
/// hundreds of killed processes takes seconds to exit in an emulated VM).
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `rmdir` of a cgroup is retried while the kernel still calls it busy.
pub const RMDIR_WAIT: Duration = Duration::from_secs(2);
/// How often the RSS watchdog looks.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(20);
/// Every run's `pids.max`: far above what a pool needs, a net against fork storms.
pub const RUN_PIDS_MAX: u64 = 4096;
/// Polling step of the bounded waits.
const POLL: Duration = Duration::from_millis(2);

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

/// How the harness came by the cgroup its runs go below (see [`find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The one `POOLCHAOS_CGROUP` names ([`CGROUP_ENV`]).
    Named,
    /// The cgroup the harness was started in (on v2, the parent of its leaf).
    Own,
    /// A transient scope with `Delegate=yes` that systemd made for the harness.
    SystemdScope,
    /// The harness's own at the top of the hierarchy, `<mount>/poolchaos`, as root.
    TopLevel,
}

impl Via {
    pub fn words(self) -> &'static str {
        match self {
            Via::Named => CGROUP_ENV,
            Via::Own => "own cgroup",
            Via::SystemdScope => "systemd scope",
            Via::TopLevel => "top-level cgroup",
        }
    }
}

/// The cgroup a run's cgroup is made in, and how the harness came by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    pub via: Via,
    /// The runs' parent (on v1, the memory controller's).
    pub cgroup: PathBuf,
}

/// The mechanism a run had: for cgroups, where; for the watchdog, why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mechanism {
    pub kind: OomMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
}

impl Mechanism {
    fn cgroup(kind: OomMechanism, via: Via, cgroup: PathBuf) -> Mechanism {
        Mechanism { kind, reason: None, place: Some(Place { via, cgroup }) }
    }

    fn watchdog(reason: impl Into<String>) -> Mechanism {
        Mechanism { kind: OomMechanism::RssWatchdog, reason: Some(reason.into()), place: None }
    }

    /// Whether an OOM kill in this run is the harness's SIGKILL, not the kernel's.
    pub fn simulated_oom(&self) -> bool {
        self.kind == OomMechanism::RssWatchdog
    }
}

/// `cgroup-v2`, `cgroup-v2 (top-level cgroup /sys/fs/cgroup/poolchaos)` (any
/// place but the harness's own is named), or `rss-watchdog: /sys/fs/cgroup
/// is read-only`.
impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(place) = self.place.as_ref().filter(|p| p.via != Via::Own) {
            write!(f, " ({} {})", place.via.words(), place.cgroup.display())?;
        }
        match &self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
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

/// What the host offers, probed once per session ([`find::probe`]).
#[derive(Debug, Clone)]
pub(crate) enum Host {
    V2(V2Host),
    V1(V1Host),
    /// No cgroup can be made: why (every way tried), and what to do.
    Watchdog(String),
}

impl Host {
    pub fn probe() -> (Host, Option<V2Place>) {
        find::probe()
    }

    pub fn mechanism(&self) -> Mechanism {
        match self {
            Host::V2(v2) => Mechanism::cgroup(OomMechanism::CgroupV2, v2.via, v2.parent.clone()),
            Host::V1(v1) => Mechanism::cgroup(OomMechanism::CgroupV1, v1.via, v1.memory().to_path_buf()),
            Host::Watchdog(reason) => Mechanism::watchdog(reason.clone()),
        }
    }

    /// The cgroups the runs go below (for stale cleanup).
    pub fn run_parents(&self) -> Vec<(Kind, PathBuf)> {
        match self {
            Host::V2(v2) => vec![(Kind::V2, v2.parent.clone())],
            Host::V1(v1) => v1.parents(),
            Host::Watchdog(_) => Vec::new(),
        }
    }

    /// The top-level cgroups this host uses (removed when the session ends, if empty).
    pub fn top_level(&self) -> Vec<PathBuf> {
        match self {
            Host::V2(v2) if v2.via == Via::TopLevel => vec![v2.parent.clone()],
            Host::V1(v1) if v1.via == Via::TopLevel => v1.parents().into_iter().map(|(_, p)| p).collect(),
            _ => Vec::new(),
        }
    }
}

/// What a session keeps about its live sandboxes.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Names of live sandboxes: never two at once.
    pub live: Mutex<BTreeSet<String>>,
    /// Process groups of live runs (their owners'): whose orphans the session reaps.
    pub groups: Mutex<Vec<u32>>,
}

/// How to make a sandbox beyond the host's default.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The run's memory limit, if any.
    pub memory_limit_mib: Option<u64>,
    /// `None`: what the host offers (see [`Host::probe`]). `Some(m)`:
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
    mechanism: Mechanism,
    registry: Arc<Registry>,
    /// Process groups given to `enter`, in the registry until teardown.
    groups: Mutex<Vec<u32>>,
    torn_down: bool,
}

enum Backend {
    Cgroups(Cgroups),
    Group(Fallback),
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("limit_bytes", &self.limit_bytes)
            .field("cgroups", &self.cgroup_dirs())
            .finish()
    }
}

impl Sandbox {
    /// Made by [`Session::sandbox`](crate::run::session::Session::sandbox): `name`
    /// is unique in the process, `host` what the session probed.
    pub(crate) fn create(
        registry: &Arc<Registry>,
        host: &Host,
        v2_place: Option<&V2Place>,
        name: String,
        run_id: &str,
        options: &SandboxOptions,
    ) -> Result<Sandbox, SandboxError> {
        check_run_id(run_id)?;
        let limit_bytes = match options.memory_limit_mib {
            None => None,
            Some(mib) => Some(
                mib.checked_mul(1 << 20)
                    .filter(|&b| b > 0 && b <= i64::MAX as u64)
                    .ok_or(SandboxError::InvalidLimit { mib })?,
            ),
        };
        if !lock(&registry.live).insert(name.clone()) {
            return Err(SandboxError::InvalidRunId {
                run_id: run_id.to_string(),
                reason: "a live sandbox of this session already has it",
            });
        }
        let made = Sandbox::backend(host, v2_place, &name, limit_bytes, options.mechanism);
        let (backend, mechanism) = match made {
            Ok(made) => made,
            Err(e) => {
                lock(&registry.live).remove(&name);
                return Err(e);
            }
        };
        Ok(Sandbox {
            name,
            limit_bytes,
            backend,
            mechanism,
            registry: Arc::clone(registry),
            groups: Mutex::new(Vec::new()),
            torn_down: false,
        })
    }

    fn backend(
        host: &Host,
        v2_place: Option<&V2Place>,
        name: &str,
        limit_bytes: Option<u64>,
        wanted: Option<OomMechanism>,
    ) -> Result<(Backend, Mechanism), SandboxError> {
        let watchdog =
            |reason: String| Ok((Backend::Group(Fallback::start(limit_bytes)?), Mechanism::watchdog(reason)));
        match (wanted, host) {
            (Some(OomMechanism::RssWatchdog), _) => watchdog("asked for (SandboxOptions)".into()),
            (None, Host::Watchdog(reason)) => watchdog(reason.clone()),
            (None | Some(OomMechanism::CgroupV2), Host::V2(v2)) => match v2.make(name, limit_bytes) {
                Ok(c) => Ok((Backend::Cgroups(c), host.mechanism())),
                Err(e) if wanted.is_none() => watchdog(e.to_string()),
                Err(e) => Err(e),
            },
            (None | Some(OomMechanism::CgroupV1), Host::V1(v1)) => match v1.make(name, limit_bytes) {
                Ok(c) => Ok((Backend::Cgroups(c), host.mechanism())),
                Err(e) if wanted.is_none() => watchdog(e.to_string()),
                Err(e) => Err(e),
            },
            (Some(OomMechanism::CgroupV2), _) => match (limit_bytes, v2_place) {
                (None, Some(place)) => Ok((
                    Backend::Cgroups(cgroup_v2::make_bare(place, name)?),
                    Mechanism::cgroup(OomMechanism::CgroupV2, Via::Own, place.dir.clone()),
                )),
                (Some(_), _) => Err(SandboxError::unavailable(
                    "cgroup v2 with a memory limit",
                    "this host's v2 has no memory controller",
                )),
                (None, None) => Err(SandboxError::unavailable("cgroup v2", "no cgroup2 hierarchy is mounted")),
            },
            (Some(OomMechanism::CgroupV1), _) => {
                Err(SandboxError::unavailable("cgroup v1", "this host's memory controller is not on v1"))
            }
        }
    }

    /// Which backend holds the run, and why the watchdog, if it does.
    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// `poolchaos-<harness pid>-s<session>-<run id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The memory limit in bytes, if the run has one.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.limit_bytes
    }

    /// The run's cgroup directories (empty without cgroups), for leak checks.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::Cgroups(c) => c.paths(),
            Backend::Group(_) => Vec::new(),
        }
    }

    /// Sets the run's task limit (`pids.max`; every run starts at
    /// [`RUN_PIDS_MAX`]). An error where there is no pids cgroup.
    pub fn limit_pids(&self, max: u64) -> Result<(), SandboxError> {
        let dir = match &self.backend {
            Backend::Cgroups(c) => c
                .get(Kind::V1Pids)
                .map(|d| d.to_path_buf())
                .or_else(|| c.get(Kind::V2).map(|d| d.to_path_buf()).filter(|d| d.join("pids.max").exists())),
            Backend::Group(_) => None,
        };
        let Some(dir) = dir else {
            return Err(SandboxError::unavailable("a task limit", format!("{} has no pids cgroup", self.name)));
        };
        write_file(&dir.join("pids.max"), &max.to_string(), "set the task limit in")
    }

    /// Puts `pid` (the owner, not started yet) and so its future children in
    /// the run: `cgroup.procs` on every controller. Without cgroups, `pid`
    /// must lead its own process group, which becomes the run. A group
    /// leader's group is the run's for reaping until teardown.
    pub fn enter(&self, pid: u32) -> Result<(), SandboxError> {
        if pid == 0 || pid == std::process::id() {
            return Err(SandboxError::Enter { pid, reason: "not a pid of another process".into() });
        }
        let path = PathBuf::from(format!("/proc/{pid}/stat"));
        let text = fs::read_to_string(&path).map_err(|e| SandboxError::io("read", &path, e))?;
        let stat = parse_stat(pid, &text)
            .ok_or_else(|| SandboxError::Enter { pid, reason: format!("cannot parse {}", path.display()) })?;
        match &self.backend {
            Backend::Cgroups(c) => {
                let mut done = BTreeSet::new();
                for dir in &c.dirs {
                    if done.insert(&dir.path) {
                        write_file(&dir.path.join("cgroup.procs"), &pid.to_string(), "move the process into")?;
                    }
                }
            }
            Backend::Group(f) => {
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
        if stat.pgrp == pid {
            lock(&self.registry.groups).push(pid);
            lock(&self.groups).push(pid);
        }
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
    /// `memory.events` `oom_kill`; without cgroups, the watchdog's kills
    /// (simulated: see [`Mechanism::simulated_oom`]).
    pub fn oom_kills(&self) -> u64 {
        match &self.backend {
            Backend::Cgroups(c) => c.oom_kills(),
            Backend::Group(f) => f.kill_count(),
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
                process_group::kill_group(&self.name, group)
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
        self.unregister();
        Ok(())
    }

    fn unregister(&self) {
        let mut groups = lock(&self.registry.groups);
        for pid in std::mem::take(&mut *lock(&self.groups)) {
            if let Some(i) = groups.iter().position(|&p| p == pid) {
                groups.swap_remove(i);
            }
        }
        drop(groups);
        lock(&self.registry.live).remove(&self.name);
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
        self.unregister();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let ro = Mechanism::watchdog("/sys/fs/cgroup is read-only");
        assert_eq!(ro.to_string(), "rss-watchdog: /sys/fs/cgroup is read-only");
        assert!(ro.simulated_oom());
        let own = Mechanism::cgroup(OomMechanism::CgroupV2, Via::Own, "/sys/fs/cgroup/a".into());
        assert!(!own.simulated_oom());
        assert_eq!(own.to_string(), "cgroup-v2", "the harness's own cgroup is the default, not named");
        let top = Mechanism::cgroup(OomMechanism::CgroupV1, Via::TopLevel, "/sys/fs/cgroup/memory/poolchaos".into());
        assert_eq!(top.to_string(), "cgroup-v1 (top-level cgroup /sys/fs/cgroup/memory/poolchaos)");
        let json = serde_json::to_string(&top).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"kind":"cgroup-v1","place":{"via":"top-level","cgroup":"/sys/fs/cgroup/memory/poolchaos"}}"#
        );
    }
}
