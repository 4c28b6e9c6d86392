//! What a harness that died (SIGKILL, OOM, a crash) leaves, found and removed
//! by the next one: its runs' cgroups (`poolchaos-<pid>-…`, with whatever
//! still runs inside, and a v2 harness's own leaf), its runs' temp
//! directories (`poolchaos-run-<pid>-…`), and the named semaphores Python
//! targets leave in `/dev/shm`.
//!
//! Whose is it? A name carries the harness's pid; the harness is dead when
//! no process has that pid, or the one that has it started after the thing
//! was made (a recycled pid). A semaphore carries no harness pid, and a
//! live pool may leave one unmapped between uses (a worker opens it by name
//! later), so it is stale only when no process maps or holds it (by inode:
//! see [`super::shm`]) *and* it is older than [`SEMAPHORE_AGE`]. Which
//! names are pools' semaphores is the targets' knowledge, passed in.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::{CgDir, Cgroups, Kind, rmdir_tree};
use super::procfs::{process_start_time, read_stat};
use super::{PREFIX, RMDIR_WAIT, shm};

/// Every run's temp directory starts with this, then `<harness pid>-`.
pub const TEMP_PREFIX: &str = "poolchaos-run-";
/// An unheld semaphore younger than this may belong to a live pool (one
/// that opens it by name later) or to a run being torn down.
const SEMAPHORE_AGE: Duration = Duration::from_secs(120);
/// A harness pid whose process started this long after its cgroup was made
/// is a recycled pid, not the maker (process start times are only known to
/// about a second, through `btime`).
const REUSE_SLACK: Duration = Duration::from_secs(2);

/// What a start removed, for the user to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub cgroups: Vec<PathBuf>,
    pub temp_dirs: Vec<PathBuf>,
    pub semaphores: Vec<PathBuf>,
}

impl Leftovers {
    /// One line per kind, for stderr: `removed what a dead harness left: ...`.
    pub fn lines(&self) -> Vec<String> {
        let show = |what: &str, paths: &[PathBuf]| {
            (!paths.is_empty()).then(|| {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!("removed {} stale {what}: {}", paths.len(), list.join(", "))
            })
        };
        [
            show("cgroup(s) of a dead harness", &self.cgroups),
            show("temp dir(s) of a dead harness's runs", &self.temp_dirs),
            show("semaphore(s) no process holds", &self.semaphores),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The `<pid>` of `poolchaos-<pid>-<rest>`.
pub(crate) fn harness_pid_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, run) = rest.split_once('-')?;
    if run.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether the harness that made `path` may still be alive: its pid names a
/// live process that started before `path` was made.
pub(crate) fn harness_alive(pid: u32, path: &Path) -> bool {
    let Some(stat) = read_stat(pid) else { return false };
    if stat.is_dead() {
        return false;
    }
    // kernfs times are those of the first lookup of the directory, at or
    // after its mkdir (the harness looks it up at once): never too early,
    // so an error here can only keep a stale cgroup, never remove a live one.
    let made = fs::metadata(path).and_then(|m| m.modified()).ok();
    match (process_start_time(stat.start), made) {
        (Some(started), Some(made)) => started <= made + REUSE_SLACK,
        _ => true,
    }
}

/// Removes the cgroups of dead harnesses in `parents` (where this process's
/// runs go, its own cgroups, the top-level ones): kills what is inside
/// (`cgroup.kill`, or freeze, kill, thaw), then removes them. A cgroup whose
/// processes cannot all be killed is left (and not returned).
pub(crate) fn clean_cgroups(parents: &[(Kind, PathBuf)]) -> Vec<PathBuf> {
    let mut stale: BTreeMap<String, Cgroups> = BTreeMap::new();
    for (kind, parent) in parents {
        let Ok(entries) = fs::read_dir(parent) else { continue };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let Some(pid) = harness_pid_of(name) else { continue };
            let path = entry.path();
            if !path.is_dir() || harness_alive(pid, &path) {
                continue;
            }
            stale.entry(name.to_string()).or_default().dirs.push(CgDir { kind: *kind, path });
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

/// Removes the temp directories of dead harnesses' runs in `tmp`.
pub(crate) fn clean_temp_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else { continue };
        let Some(pid) = rest.split_once('-').and_then(|(p, _)| p.parse::<u32>().ok()) else { continue };
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && !harness_alive(pid, &path)
            && fs::remove_dir_all(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// Removes the named semaphores that no process maps or holds open and that
/// are older than [`SEMAPHORE_AGE`]: those `pool_semaphore` names (the
/// targets' pools', see [`crate::target::pool_semaphore`]) and glibc's
/// temporaries (`sem.XXXXXX`, whose maker died inside `sem_open`).
pub(crate) fn clean_semaphores(pool_semaphore: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let old = |p: &Path| {
        fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > SEMAPHORE_AGE))
    };
    let candidates: Vec<(PathBuf, u64)> = shm::semaphores()
        .into_iter()
        .filter(|(p, _)| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| pool_semaphore(n) || shm::glibc_temporary(n))
        })
        .filter(|(p, _)| old(p))
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let held = shm::held_by_anyone();
    candidates
        .into_iter()
        .filter(|(p, ino)| !held.contains(ino) && fs::remove_file(p).is_ok())
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_harness_pids_from_names() {
        assert_eq!(harness_pid_of("poolchaos-123-0"), Some(123));
        assert_eq!(harness_pid_of("poolchaos-123-a-b"), Some(123));
        assert_eq!(harness_pid_of("poolchaos-123-harness"), Some(123));
        assert_eq!(harness_pid_of("poolchaos-123-"), None);
        assert_eq!(harness_pid_of("poolchaos-x-1"), None);
        assert_eq!(harness_pid_of("other-123-1"), None);
    }

    #[test]
    fn temp_dirs_of_dead_harnesses_go_and_live_ones_stay() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dead = {
            let mut c = std::process::Command::new("true").spawn().expect("spawn true");
            c.wait().expect("wait");
            c.id()
        };
        let stale = tmp.path().join(format!("{TEMP_PREFIX}{dead}-abc"));
        let live = tmp.path().join(format!("{TEMP_PREFIX}{}-abc", std::process::id()));
        let other = tmp.path().join("poolchaos-pytest-x");
        for d in [&stale, &live, &other] {
            fs::create_dir(d).expect("mkdir");
        }
        fs::write(stale.join("left"), "x").expect("write");
        assert_eq!(clean_temp_dirs(tmp.path()), vec![stale.clone()]);
        assert!(!stale.exists() && live.is_dir() && other.is_dir());
    }
}
