//! What the two cgroup backends share: a run's cgroup directories, the
//! processes in them, the OOM count, the kill (`cgroup.kill`, or a freezer),
//! and removal. How the directories are made is `cgroup_v1` and `cgroup_v2`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::process::{Pid, Signal};

use super::{FREEZE_WAIT, KILL_WAIT, POLL, RMDIR_WAIT, SandboxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    V1Memory,
    V1Freezer,
    V1Pids,
    V2,
}

#[derive(Debug, Clone)]
pub(crate) struct CgDir {
    pub kind: Kind,
    pub path: PathBuf,
}

/// One run's cgroups. Co-mounted v1 controllers give two entries with one
/// path; everything here copes with that.
#[derive(Debug, Default)]
pub(crate) struct Cgroups {
    pub dirs: Vec<CgDir>,
}

impl Cgroups {
    pub fn get(&self, kind: Kind) -> Option<&Path> {
        self.dirs.iter().find(|d| d.kind == kind).map(|d| d.path.as_path())
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for d in &self.dirs {
            if !paths.contains(&d.path) {
                paths.push(d.path.clone());
            }
        }
        paths
    }

    /// Makes `path` (clearing a stale one of the same name first) and adds it.
    pub fn make(&mut self, kind: Kind, path: PathBuf) -> Result<(), SandboxError> {
        if !self.dirs.iter().any(|d| d.path == path) {
            match fs::create_dir(&path) {
                // kernfs stamps a directory when its inode is first looked up,
                // not at mkdir: look it up now, for stale cleanup's pid check.
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

    pub fn procs(&self) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for path in self.paths() {
            read_procs_tree(&path, &mut pids);
        }
        pids.into_iter().collect()
    }

    /// The kernel's OOM kills: v1 `memory.oom_control`, v2 `memory.events`.
    pub fn oom_kills(&self) -> u64 {
        if let Some(dir) = self.get(Kind::V1Memory) {
            return read_key(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0);
        }
        if let Some(dir) = self.get(Kind::V2) {
            return read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0);
        }
        0
    }

    /// Whether any process is left: v2 `cgroup.events` `populated` (which
    /// counts the cgroups below too), else `cgroup.procs`.
    pub fn populated(&self) -> bool {
        match self.get(Kind::V2).and_then(|d| read_key(&d.join("cgroup.events"), "populated")) {
            Some(n) => n != 0,
            None => !self.procs().is_empty(),
        }
    }

    pub fn kill_all(&self, name: &str) -> Result<Vec<u32>, SandboxError> {
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
            if left.is_empty() && !self.populated() {
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

    pub fn remove_dirs(&self) -> Result<(), SandboxError> {
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

pub(crate) fn sigkill(pid: u32) {
    if let Some(p) = to_pid(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
    }
}

pub(crate) fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

pub(crate) fn write_file(path: &Path, value: &str, op: &'static str) -> Result<(), SandboxError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| SandboxError::io(op, path, e))
}

/// `mkdir`, where it is not there yet (a top-level cgroup, shared).
pub(crate) fn make_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        made => made,
    }
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
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(key)).then(|| words.next()?.parse().ok()).flatten()
    })
}

/// Removes `dir` after every cgroup below it, retrying `EBUSY` until `deadline`.
pub(crate) fn rmdir_tree(dir: &Path, deadline: Instant) -> Result<(), SandboxError> {
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
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(SandboxError::io("remove cgroup", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_keyed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("memory.oom_control");
        fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(read_key(&f, "oom_kill"), Some(3));
        assert_eq!(read_key(&f, "missing"), None);
    }
}
