//! The cgroup v2 backend (current distributions, CI runners, containers):
//! the harness's own place in the hierarchy, prepared once per process, and
//! one cgroup per run below it.
//!
//! v2 has one rule the layout must follow: a cgroup that holds processes
//! cannot pass controllers to its children ("no internal processes"), except
//! the root. So, once ([`V2Host::own`]):
//!
//! ```text
//!  <X>/                     the cgroup the harness was started in (or the parent of the
//!  │                        harness leaf it inherited from a parent harness)
//!  ├── cgroup.subtree_control   +memory +pids, written by the harness
//!  ├── poolchaos-<pid>-harness/ the harness itself, moved here if X is not the root
//!  └── poolchaos-<pid>-s<session>-<run>/   one per run: memory.max, memory.swap.max = 0,
//!                                          pids.max; killed through cgroup.kill
//! ```
//!
//! At the root (a VM, a host's root shell) `X` takes controllers as it is.
//! Elsewhere (a systemd service, a delegated scope, a container's private
//! cgroup namespace) the harness first moves itself into its leaf; if `X`
//! still holds other processes the controllers cannot be enabled, the
//! harness moves back and removes the leaf. Delegation (`Delegate=yes`, a
//! writable cgroup namespace) gives a non-root user the same layout: the
//! moves only need write access to `X`'s `cgroup.procs`.
//!
//! Where its own cannot (see [`super::find`] for the order), `X` is the
//! cgroup `POOLCHAOS_CGROUP` names ([`V2Host::named`]: one with no processes
//! of its own), a systemd scope made for the harness (then as above), or,
//! as root, `/sys/fs/cgroup/poolchaos` ([`V2Host::top_level`]): the harness
//! stays where it is and only its runs go there.
//!
//! The leaf stays as long as the process: a process cannot move back into
//! `X` once `X` passes controllers on. The next harness's stale cleanup
//! removes it, as it removes the runs of a killed harness.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::cgroup::{Cgroups, Kind, make_dir, write_file};
use super::procfs::V2Place;
use super::stale::harness_pid_of;
use super::{PREFIX, RUN_PIDS_MAX, SandboxError, TOP_LEVEL, Via};

/// A cgroup (a directory of the cgroup2 mount) to put the runs below instead
/// of this process's own: one with no processes of its own.
pub const CGROUP_ENV: &str = "POOLCHAOS_CGROUP";

/// The controllers a run's cgroup needs; `pids` where the kernel has it.
const CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// Where this process's v2 runs go, with `memory` (and `pids`) enabled there.
#[derive(Debug, Clone)]
pub(crate) struct V2Host {
    /// The cgroup whose children the runs are (`X` above).
    pub parent: PathBuf,
    pub via: Via,
}

/// The name of a harness's own leaf.
pub(crate) fn leaf_name(pid: u32) -> String {
    format!("{PREFIX}{pid}-harness")
}

impl V2Host {
    /// The cgroup `POOLCHAOS_CGROUP` names: one with no processes of its own.
    pub fn named(dir: &Path) -> Result<V2Host, String> {
        let wanted = controllers_of(dir)?;
        writable(dir)?;
        enable(dir, &wanted).map_err(|e| explain(dir, &e))?;
        Ok(V2Host { parent: dir.to_path_buf(), via: Via::Named })
    }

    /// Makes `place` (this process's v2 cgroup) ready for runs, or says why
    /// it cannot be, in words for the report.
    pub fn own(place: &V2Place) -> Result<V2Host, String> {
        if place.read_only {
            return Err(format!("{} is read-only", place.mount.display()));
        }
        let inherited = place
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| harness_pid_of(n).is_some() && n.ends_with("-harness") && place.dir != place.mount);
        let parent = match place.dir.parent() {
            Some(p) if inherited => p.to_path_buf(),
            _ => place.dir.clone(),
        };
        let wanted = controllers_of(&parent)?;
        writable(&parent)?;
        let host = V2Host { parent: parent.clone(), via: Via::Own };
        let first = match enable(&parent, &wanted) {
            Ok(()) => return Ok(host),
            Err(e) => e,
        };
        if first.raw_os_error() != Some(libc::EBUSY) {
            return Err(explain(&parent, &first));
        }
        // Processes live in the parent (us, at least): move into a leaf, try again.
        let leaf = parent.join(leaf_name(std::process::id()));
        match fs::create_dir(&leaf) {
            Ok(()) => drop(fs::metadata(&leaf)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make the harness's leaf {}: {}", leaf.display(), words(&e))),
        }
        let me = std::process::id().to_string();
        if let Err(e) = fs::write(leaf.join("cgroup.procs"), &me) {
            let _ = fs::remove_dir(&leaf);
            return Err(format!("cannot move the harness into its leaf {}: {}", leaf.display(), words(&e)));
        }
        match enable(&parent, &wanted) {
            Ok(()) => Ok(host),
            Err(e) => {
                let _ = fs::write(place.dir.join("cgroup.procs"), &me);
                let _ = fs::remove_dir(&leaf);
                Err(explain(&parent, &e))
            }
        }
    }

    /// As root, `<mount>/poolchaos` ([`TOP_LEVEL`]), made or reused, with
    /// `memory` and `pids` enabled on the way down: in the root's
    /// `cgroup.subtree_control` (the root may hold processes) and its own (it
    /// holds none; the harness stays where it is).
    pub fn top_level(mount: &Path) -> Result<V2Host, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        let wanted = controllers_of(mount)?;
        enable(mount, &wanted).map_err(|e| explain(mount, &e))?;
        let top = mount.join(TOP_LEVEL);
        // Another harness's start may remove it, empty, between the two
        // steps (see `Session::clean_stale`): then again, a few times.
        let mut tries = 0;
        loop {
            make_dir(&top).map_err(|e| format!("cannot make {}: {}", top.display(), words(&e)))?;
            match enable(&top, &wanted) {
                Ok(()) => return Ok(V2Host { parent: top, via: Via::TopLevel }),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
                Err(e) => return Err(explain(&top, &e)),
            }
        }
    }

    /// Makes the run's cgroup: `memory.max`, `memory.swap.max` 0 (the limit
    /// means an OOM kill, not swapping), `pids.max`.
    /// A top-level cgroup another harness removed on its way out is made again.
    pub fn make(&self, name: &str, limit_bytes: Option<u64>) -> Result<Cgroups, SandboxError> {
        match self.try_make(name, limit_bytes) {
            Err(_) if self.via == Via::TopLevel && !self.parent.exists() => {
                let mount = self.parent.parent().unwrap_or(Path::new("/"));
                V2Host::top_level(mount).map_err(|reason| SandboxError::unavailable("the top-level cgroup", reason))?;
                self.try_make(name, limit_bytes)
            }
            made => made,
        }
    }

    fn try_make(&self, name: &str, limit_bytes: Option<u64>) -> Result<Cgroups, SandboxError> {
        let mut cgroups = Cgroups::default();
        let filled = cgroups.make(Kind::V2, self.parent.join(name)).and_then(|()| {
            let Some(dir) = cgroups.get(Kind::V2) else { return Ok(()) };
            if let Some(bytes) = limit_bytes {
                write_file(&dir.join("memory.max"), &bytes.to_string(), "set the memory limit in")?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0", "forbid swap in")?;
                }
            }
            let pids = dir.join("pids.max");
            if pids.exists() {
                write_file(&pids, &RUN_PIDS_MAX.to_string(), "set the task limit in")?;
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
}

/// A cgroup in a v2 hierarchy without the memory controller (the unified
/// mount of a hybrid host): `cgroup.kill` and `cgroup.procs` alone, no limit.
pub(crate) fn make_bare(place: &V2Place, name: &str) -> Result<Cgroups, SandboxError> {
    let mut cgroups = Cgroups::default();
    cgroups.make(Kind::V2, place.dir.join(name))?;
    Ok(cgroups)
}

/// Which of [`CONTROLLERS`] `parent` has; an error without `memory`.
fn controllers_of(parent: &Path) -> Result<Vec<&'static str>, String> {
    let file = parent.join("cgroup.controllers");
    let controllers =
        fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {}", file.display(), words(&e)))?;
    let wanted: Vec<&str> =
        CONTROLLERS.into_iter().filter(|c| controllers.split_whitespace().any(|w| w == *c)).collect();
    if !wanted.contains(&"memory") {
        return Err(format!(
            "no memory controller in {} ({:?}): the parent cgroup does not pass it down",
            file.display(),
            controllers.trim()
        ));
    }
    Ok(wanted)
}

/// Whether this process may make the runs' cgroups in `parent`.
fn writable(parent: &Path) -> Result<(), String> {
    rustix::fs::access(parent, rustix::fs::Access::WRITE_OK).map_err(|e| explain(parent, &io::Error::from(e)))
}

/// `+memory +pids` in `parent`'s `cgroup.subtree_control`, unless there already.
fn enable(parent: &Path, controllers: &[&str]) -> io::Result<()> {
    let file = parent.join("cgroup.subtree_control");
    let now = fs::read_to_string(&file)?;
    let missing: Vec<String> =
        controllers.iter().filter(|c| !now.split_whitespace().any(|w| w == **c)).map(|c| format!("+{c}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&file, missing.join(" "))
}

fn explain(parent: &Path, e: &io::Error) -> String {
    let file = parent.join("cgroup.subtree_control");
    match e.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "{} holds other processes, so it cannot pass memory to a child (cgroup v2's no-internal-processes rule); \
             run the harness alone in a delegated cgroup",
            parent.display()
        ),
        Some(libc::EROFS) => format!("{} is read-only", parent.display()),
        Some(libc::EACCES | libc::EPERM) => format!(
            "cannot write in {}: permission denied (not root, and this cgroup is not delegated to the user)",
            parent.display()
        ),
        _ => format!("cannot write {}: {}", file.display(), words(e)),
    }
}

/// An I/O error without the "(os error N)" tail.
pub(crate) fn words(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_mount_is_the_reason() {
        let place = V2Place {
            dir: PathBuf::from("/sys/fs/cgroup/system.slice/x.service"),
            mount: PathBuf::from("/sys/fs/cgroup"),
            read_only: true,
        };
        assert_eq!(V2Host::own(&place).err().as_deref(), Some("/sys/fs/cgroup is read-only"));
    }

    #[test]
    fn errors_are_explained_in_words() {
        let parent = Path::new("/sys/fs/cgroup/a");
        let busy = explain(parent, &io::Error::from_raw_os_error(libc::EBUSY));
        assert!(busy.starts_with("/sys/fs/cgroup/a holds other processes"), "{busy}");
        let denied = explain(parent, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(denied.contains("permission denied (not root, and this cgroup is not delegated"), "{denied}");
        assert_eq!(explain(parent, &io::Error::from_raw_os_error(libc::EROFS)), "/sys/fs/cgroup/a is read-only");
    }
}
