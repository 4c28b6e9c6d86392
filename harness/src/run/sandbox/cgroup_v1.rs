//! The cgroup v1 backend (this project's machines: hybrid, the controllers
//! on v1, the unified mount empty): three cgroups of the run's name, in
//! `memory` (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` to
//! the same value where swap is accounted), `freezer` and `pids`, each below
//! the harness's cgroup of that controller: its own, or (as root, where its
//! own cannot hold runs) `<mount>/poolchaos` at the top of each hierarchy.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::cgroup::{Cgroups, Kind, make_dir, write_file};
use super::cgroup_v2::words;
use super::{RUN_PIDS_MAX, SandboxError, TOP_LEVEL, Via};

pub(crate) const CONTROLLERS: [(&str, Kind); 3] =
    [("memory", Kind::V1Memory), ("freezer", Kind::V1Freezer), ("pids", Kind::V1Pids)];

/// Where this process's v1 runs go: a parent per controller, `memory` among them.
#[derive(Debug, Clone)]
pub(crate) struct V1Host {
    parents: BTreeMap<String, PathBuf>,
    pub via: Via,
}

impl V1Host {
    /// This process's own v1 cgroups, if the memory one can take a run's cgroup.
    pub fn own(own: &BTreeMap<String, PathBuf>) -> Result<V1Host, String> {
        let Some(memory) = own.get("memory") else {
            return Err("not in a memory cgroup below a mount this process sees".into());
        };
        if let Err(e) = rustix::fs::access(memory, rustix::fs::Access::WRITE_OK) {
            return Err(format!("cannot write {}: {}", memory.display(), words(&io::Error::from(e))));
        }
        Ok(V1Host { parents: own.clone(), via: Via::Own })
    }

    /// As root, `<mount>/poolchaos` in each hierarchy of [`CONTROLLERS`]
    /// (`mounts`: controller → mount point), made or reused.
    pub fn top_level(mounts: &BTreeMap<String, PathBuf>) -> Result<V1Host, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        if !mounts.contains_key("memory") {
            return Err("no v1 memory hierarchy is mounted".into());
        }
        let mut parents = BTreeMap::new();
        for (controller, _) in CONTROLLERS {
            let Some(mount) = mounts.get(controller) else { continue };
            let top = mount.join(TOP_LEVEL);
            match make_dir(&top) {
                Ok(()) => parents.insert(controller.to_string(), top),
                Err(e) => return Err(format!("cannot make {}: {e}", top.display())),
            };
        }
        Ok(V1Host { parents, via: Via::TopLevel })
    }

    /// The memory controller's parent.
    pub fn memory(&self) -> &Path {
        self.parents.get("memory").map_or(Path::new("/"), PathBuf::as_path)
    }

    /// The parents of [`CONTROLLERS`], by kind.
    pub fn parents(&self) -> Vec<(Kind, PathBuf)> {
        CONTROLLERS.iter().filter_map(|(c, kind)| Some((*kind, self.parents.get(*c)?.clone()))).collect()
    }

    /// Makes the run's cgroups; removes what it made if any step fails. A
    /// top-level cgroup another harness removed on its way out is made again.
    pub fn make(&self, name: &str, limit_bytes: Option<u64>) -> Result<Cgroups, SandboxError> {
        let first = self.try_make(name, limit_bytes);
        match first {
            Err(_) if self.via == Via::TopLevel && self.parents.values().any(|p| !p.exists()) => {
                self.parents
                    .values()
                    .try_for_each(|p| make_dir(p))
                    .map_err(|e| SandboxError::io("create cgroup", self.memory(), e))?;
                self.try_make(name, limit_bytes)
            }
            made => made,
        }
    }

    fn try_make(&self, name: &str, limit_bytes: Option<u64>) -> Result<Cgroups, SandboxError> {
        let mut cgroups = Cgroups::default();
        match fill(&mut cgroups, &self.parents, name, limit_bytes) {
            Ok(()) => Ok(cgroups),
            Err(e) => {
                let _ = cgroups.remove_dirs();
                Err(e)
            }
        }
    }
}

fn fill(
    cgroups: &mut Cgroups,
    parents: &BTreeMap<String, PathBuf>,
    name: &str,
    limit_bytes: Option<u64>,
) -> Result<(), SandboxError> {
    for (controller, kind) in CONTROLLERS {
        if let Some(parent) = parents.get(controller) {
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
    if let Some(dir) = cgroups.get(Kind::V1Pids) {
        write_file(&dir.join("pids.max"), &RUN_PIDS_MAX.to_string(), "set the task limit in")?;
    }
    Ok(())
}
