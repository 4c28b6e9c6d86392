//! Named POSIX semaphores (`/dev/shm/sem.*`) and whose they are.
//!
//! A named semaphore outlives every process that uses it, until someone
//! unlinks its name. A run's are found **by inode, while its processes
//! live**: the `/dev/shm/sem.*` files its processes map (`/proc/PID/maps`)
//! or hold open (`/proc/PID/fd`, glibc's `sem_open` between creating its
//! temporary file and mapping it). Never by name or by time: glibc's
//! `sem_open` makes a semaphore as a temporary `sem.XXXXXX`, maps it, links
//! it to its name and unlinks the temporary, so its creator maps it under
//! `sem.XXXXXX (deleted)`, never under its name; only the inode says it is
//! `sem.mp-…`. And two runs torn down at once make their semaphores at the
//! same times.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Where named POSIX semaphores live.
pub(crate) const SHM: &str = "/dev/shm";
const SEM: &str = "/dev/shm/sem.";

/// The inodes of the `/dev/shm/sem.*` files that `pids` map or hold open now.
pub(crate) fn held_by(pids: &[u32]) -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    for pid in pids {
        if let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) {
            for line in maps.lines().filter(|l| l.contains(SEM)) {
                // start-end perms offset dev inode path
                if let Some(ino) = line.split_whitespace().nth(4).and_then(|i| i.parse().ok()) {
                    found.insert(ino);
                }
            }
        }
        for fd in fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with(SEM))
                && let Ok(meta) = fs::metadata(fd.path())
            {
                found.insert(meta.ino());
            }
        }
    }
    found
}

/// The inodes every process on the machine maps or holds open.
pub(crate) fn held_by_anyone() -> BTreeSet<u64> {
    let all: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    held_by(&all)
}

/// The `/dev/shm/sem.*` files there now, with their inodes.
pub(crate) fn semaphores() -> Vec<(PathBuf, u64)> {
    fs::read_dir(SHM)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sem."))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.ino())))
        .collect()
}

/// Whether `name` is glibc's temporary name for a semaphore being made
/// (`sem.XXXXXX`), left when its maker died inside `sem_open`.
pub(crate) fn glibc_temporary(name: &str) -> bool {
    name.strip_prefix("sem.").is_some_and(|x| x.len() == 6 && x.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The semaphores one run's processes held, recorded while they live.
#[derive(Debug, Default)]
pub struct RunSemaphores {
    seen: BTreeSet<u64>,
}

impl RunSemaphores {
    /// Records what `pids` (the run's live processes) hold now.
    pub fn record(&mut self, pids: &[u32]) {
        self.seen.extend(held_by(pids));
    }

    /// The `/dev/shm/sem.*` files still there that the run held.
    pub fn left(&self) -> Vec<PathBuf> {
        semaphores().into_iter().filter(|(_, ino)| self.seen.contains(ino)).map(|(p, _)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_glibc_temporaries() {
        assert!(glibc_temporary("sem.XihtXL"));
        assert!(!glibc_temporary("sem.mp-018hr47q"));
        assert!(!glibc_temporary("sem.loky-1-ab"));
        assert!(!glibc_temporary("XihtXLab"));
    }
}
