//! The cgroup v1 backend (this project's machines: hybrid, the controllers
//! on v1, the unified mount empty): three cgroups of the run's name, in
//! `memory` (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` to
//! the same value where swap is accounted), `freezer` and `pids`, each below
//! this process's own cgroup of that controller.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cgroup::{Cgroups, Kind, write_file};
use super::{RUN_PIDS_MAX, SandboxError};

pub(crate) const CONTROLLERS: [(&str, Kind); 3] =
    [("memory", Kind::V1Memory), ("freezer", Kind::V1Freezer), ("pids", Kind::V1Pids)];

/// Makes the run's cgroups below `own` (this process's v1 cgroups, per
/// controller); removes what it made if any step fails.
pub(crate) fn make(
    own: &BTreeMap<String, PathBuf>,
    name: &str,
    limit_bytes: Option<u64>,
) -> Result<Cgroups, SandboxError> {
    if !own.contains_key("memory") {
        return Err(SandboxError::unavailable("cgroup v1", "no v1 memory hierarchy holds this process"));
    }
    let mut cgroups = Cgroups::default();
    match fill(&mut cgroups, own, name, limit_bytes) {
        Ok(()) => Ok(cgroups),
        Err(e) => {
            let _ = cgroups.remove_dirs();
            Err(e)
        }
    }
}

fn fill(
    cgroups: &mut Cgroups,
    own: &BTreeMap<String, PathBuf>,
    name: &str,
    limit_bytes: Option<u64>,
) -> Result<(), SandboxError> {
    for (controller, kind) in CONTROLLERS {
        if let Some(parent) = own.get(controller) {
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
