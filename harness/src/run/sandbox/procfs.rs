//! What the sandbox reads from `/proc`: where this process's cgroups are
//! (`/proc/self/cgroup` through `/proc/self/mountinfo`), a process's state,
//! parent, group, start time and RSS (`/proc/<pid>/stat`), and this process's
//! children.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// This process's own cgroup directory per v1 controller, and in v2.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct OwnCgroups {
    pub v1: BTreeMap<String, PathBuf>,
    pub v2: Option<V2Place>,
    /// The mount point of each v1 controller's hierarchy (the first seen).
    pub v1_mounts: BTreeMap<String, PathBuf>,
}

/// Where this process sits in a cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct V2Place {
    /// This process's cgroup directory.
    pub dir: PathBuf,
    /// The hierarchy's mount point (the root of what this process sees).
    pub mount: PathBuf,
    /// Whether the mount is read-only.
    pub read_only: bool,
}

pub(crate) fn own_cgroups() -> io::Result<OwnCgroups> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let cgroup = fs::read_to_string("/proc/self/cgroup")?;
    Ok(parse_own_cgroups(&mountinfo, &cgroup))
}

#[derive(Debug)]
struct Mount {
    root: String,
    point: PathBuf,
    read_only: bool,
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
            let super_options: Vec<String> = right.next().unwrap_or("").split(',').map(str::to_string).collect();
            let mount_ro = left.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"));
            Some(Mount {
                root: unescape_mount(left.get(3)?),
                point: PathBuf::from(unescape_mount(left.get(4)?)),
                read_only: mount_ro || super_options.iter().any(|o| o == "ro"),
                fstype,
                super_options,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mount(s: &str) -> String {
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

pub(crate) fn parse_own_cgroups(mountinfo: &str, cgroup: &str) -> OwnCgroups {
    let mounts = parse_mountinfo(mountinfo);
    let mut own = OwnCgroups::default();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        for option in m.super_options.iter().filter(|o| !matches!(o.as_str(), "rw" | "ro") && !o.contains('=')) {
            own.v1_mounts.entry(option.clone()).or_insert_with(|| m.point.clone());
        }
    }
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            own.v2 = mounts.iter().filter(|m| m.fstype == "cgroup2").find_map(|m| {
                let dir = under_mount(m, path)?;
                Some(V2Place { dir, mount: m.point.clone(), read_only: m.read_only })
            });
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub state: u8,
    pub ppid: u32,
    pub pgrp: u32,
    /// Start time after boot, in clock ticks: with the pid, names a process uniquely.
    pub start: u64,
    pub rss_pages: u64,
}

impl ProcStat {
    /// Exited (a zombie, or on its way out).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

pub(crate) fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
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

pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub(crate) fn all_stats() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).filter_map(read_stat).collect()
}

/// This process's children: `/proc/self/task/*/children`, else a `/proc`
/// scan by parent pid.
pub(crate) fn own_children() -> Vec<u32> {
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

/// When a process started, from its start time in ticks after boot.
pub(crate) fn process_start_time(start_ticks: u64) -> Option<SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let since_boot =
        Duration::from_secs(start_ticks / ticks) + Duration::from_nanos((start_ticks % ticks) * 1_000_000_000 / ticks);
    UNIX_EPOCH.checked_add(Duration::from_secs(btime) + since_boot)
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
        let v2 = own.v2.expect("v2");
        assert_eq!(v2.dir, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!v2.read_only);
        assert_eq!(own.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory/process_api/44"));
        assert_eq!(own.v1["freezer"], PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!(own.v1["pids"], PathBuf::from("/sys/fs/cgroup/pids/x"));
        assert_eq!(own.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a"));
        assert!(!own.v1.contains_key("name=systemd"));
        assert_eq!(own.v1_mounts["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(own.v1_mounts["pids"], PathBuf::from("/sys/fs/cgroup/pids"));
        assert_eq!(own.v1_mounts["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!own.v1_mounts.contains_key("name=systemd") && !own.v1_mounts.contains_key("rw"));
    }

    #[test]
    fn finds_own_cgroup_in_a_pure_v2_layout_and_sees_read_only() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
        let own = parse_own_cgroups(mountinfo, "0::/system.slice/runner.service\n");
        let v2 = own.v2.expect("v2");
        assert_eq!(v2.dir, PathBuf::from("/sys/fs/cgroup/system.slice/runner.service"));
        assert_eq!(v2.mount, PathBuf::from("/sys/fs/cgroup"));
        assert!(v2.read_only);
        assert!(own.v1.is_empty() && own.v1_mounts.is_empty());
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
}
