//! A session: what one harness invocation (or one test) holds for all its
//! runs, made once by `main`.
//!
//! - the **subreaper**: orphaned workers come back to this process, and
//!   [`Session::reap_orphans`] reaps those of its own runs (never a child
//!   someone else waits for, so two sessions in one process leave each
//!   other's children alone);
//! - the **host**: which sandbox backend this machine offers, probed once
//!   (on cgroup v2 this moves the process into its own leaf, or asks
//!   systemd for a scope, or makes a top-level cgroup; see
//!   [`crate::run::sandbox::find`]);
//! - **stale cleanup**: what dead harnesses left, removed at the start
//!   ([`Session::leftovers`]); the top-level cgroup it used, if any, removed
//!   at the end (when no other harness still has runs in it);
//! - the **registry** of its live sandboxes, by name: a run id is used once
//!   at a time per session, and names carry the session's serial, so two
//!   sessions of one process never collide;
//! - the **executor** that `run`, `campaign` and `matrix` share:
//!   [`Session::execute`], a few items at a time on scoped threads;
//! - the **stop flag** ([`crate::run::interrupt::Stop`]): once a SIGINT or SIGTERM
//!   asks for a stop, the executor hands out nothing more and every live run
//!   tears its sandbox down (see [`crate::run::runner`]).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::process::WaitOptions;

use crate::run::interrupt::Stop;
use crate::run::sandbox::procfs::{V2Place, own_children, read_stat};
use crate::run::sandbox::{
    self, Host, Kind, Leftovers, Mechanism, PREFIX, Registry, Sandbox, SandboxError, SandboxOptions, lock,
};

/// Serial numbers of the sessions of this process.
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// See the module documentation.
#[derive(Debug)]
pub struct Session {
    serial: u64,
    host: Host,
    v2_place: Option<V2Place>,
    registry: Arc<Registry>,
    leftovers: Leftovers,
    stop: Stop,
}

impl Session {
    /// Becomes a child subreaper, probes the host, removes what dead
    /// harnesses left.
    pub fn start() -> anyhow::Result<Session> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        let (host, v2_place) = Host::probe();
        let mut session = Session {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            host,
            v2_place,
            registry: Arc::default(),
            leftovers: Leftovers::default(),
            stop: Stop::default(),
        };
        session.leftovers = session.clean_stale();
        Ok(session)
    }

    /// The session's stop flag (`main` installs its signal handlers).
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// What the start removed.
    pub fn leftovers(&self) -> &Leftovers {
        &self.leftovers
    }

    /// The host's mechanism: what a run's sandbox gets unless its cgroup
    /// cannot be made.
    pub fn mechanism(&self) -> Mechanism {
        self.host.mechanism()
    }

    /// Removes what dead harnesses left: their cgroups (with whatever still
    /// runs inside), their runs' temp directories, and the Python pools'
    /// semaphores no process holds. Returns what it removed. An empty
    /// top-level cgroup this session does not use goes too.
    pub fn clean_stale(&self) -> Leftovers {
        let own = sandbox::procfs::own_cgroups().unwrap_or_default();
        let mut parents = self.host.run_parents();
        for (controller, kind) in sandbox::cgroup_v1::CONTROLLERS {
            parents.extend(own.v1.get(controller).map(|d| (kind, d.clone())));
            parents.extend(own.v1_mounts.get(controller).map(|m| (kind, m.join(sandbox::TOP_LEVEL))));
        }
        if let Some(place) = &own.v2 {
            parents.push((Kind::V2, place.dir.clone()));
            parents.push((Kind::V2, place.mount.join(sandbox::TOP_LEVEL)));
        }
        let mut seen = std::collections::BTreeSet::new();
        parents.retain(|(_, dir)| seen.insert(dir.clone()));
        let mut cgroups = sandbox::stale::clean_cgroups(&parents);
        let used = self.host.top_level();
        for (_, dir) in parents.iter().filter(|(_, d)| d.ends_with(sandbox::TOP_LEVEL) && !used.contains(d)) {
            if std::fs::remove_dir(dir).is_ok() {
                cgroups.push(dir.clone());
            }
        }
        Leftovers {
            cgroups,
            temp_dirs: sandbox::stale::clean_temp_dirs(&std::env::temp_dir()),
            semaphores: sandbox::stale::clean_semaphores(crate::target::pool_semaphore),
        }
    }

    /// A sandbox for run `run_id` with the host's mechanism (the watchdog,
    /// with the error as its reason, if the run's cgroup cannot be made).
    pub fn sandbox(&self, run_id: &str, memory_limit_mib: Option<u64>) -> Result<Sandbox, SandboxError> {
        self.sandbox_with(run_id, &SandboxOptions { memory_limit_mib, mechanism: None })
    }

    pub fn sandbox_with(&self, run_id: &str, options: &SandboxOptions) -> Result<Sandbox, SandboxError> {
        let name = format!("{PREFIX}{}-s{}-{run_id}", std::process::id(), self.serial);
        Sandbox::create(&self.registry, &self.host, self.v2_place.as_ref(), name, run_id, options)
    }

    /// A temp directory for a run, named so that stale cleanup knows whose it is.
    pub fn run_temp_dir(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(&format!("{}{}-", sandbox::TEMP_PREFIX, std::process::id())).tempdir()
    }

    /// Reaps the exited children of this process that belong to this
    /// session's live runs (workers re-parented to the harness, a
    /// subreaper): members of a live run's process group other than its
    /// leader, the owner, which the runner waits for. Never blocks. Returns
    /// what it reaped.
    pub fn reap_orphans(&self) -> Vec<(u32, ExitStatus)> {
        let groups = lock(&self.registry.groups).clone();
        let mut reaped = Vec::new();
        for pid in own_children() {
            if groups.contains(&pid) || !read_stat(pid).is_some_and(|s| groups.contains(&s.pgrp)) {
                continue;
            }
            let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { continue };
            if let Ok(Some((_, status))) = rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
                reaped.push((pid, ExitStatus::from_raw(status.as_raw())));
            }
        }
        reaped
    }

    /// Runs `work` on what `next` hands out, `jobs` at a time, until `next`
    /// has nothing left, an item fails or a stop is asked for; returns the
    /// first failure.
    pub fn execute<T: Send>(
        &self,
        jobs: usize,
        next: impl FnMut() -> Option<T> + Send,
        work: impl Fn(T) -> anyhow::Result<()> + Sync,
    ) -> anyhow::Result<()> {
        let next = Mutex::new(next);
        let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| {
                    loop {
                        if lock(&failure).is_some() || self.stop.requested().is_some() {
                            break;
                        }
                        let Some(item) = (lock(&next))() else { break };
                        if let Err(e) = work(item) {
                            lock(&failure).get_or_insert(e);
                            break;
                        }
                    }
                });
            }
        });
        failure.into_inner().unwrap_or_else(|e| e.into_inner()).map_or(Ok(()), Err)
    }
}

/// The top-level cgroups this session used go when it ends, unless another
/// harness has runs in them (`rmdir` refuses a cgroup with children): the
/// last one out removes them.
impl Drop for Session {
    fn drop(&mut self) {
        for dir in self.host.top_level() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
