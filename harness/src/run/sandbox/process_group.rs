//! The backend without cgroups: the run is the owner's process group, found
//! by a `/proc` scan, killed by `killpg` plus a SIGKILL to each member until
//! none is left; an RSS watchdog thread stands in for the memory limit.
//!
//! The watchdog polls the members every [`WATCHDOG_TICK`] and SIGKILLs
//! (through a pidfd, after checking it is still the same process) any whose
//! RSS passes the limit. That is a *simulated* OOM: a SIGKILL sent by the
//! harness, per process rather than for the run's sum, blind to spikes
//! shorter than a tick; and a process that calls `setsid`/`setpgid` escapes
//! the group. Reports say so (see [`super::Mechanism`]).
//!
//! A process group id is a pid: once every member is gone it may be
//! recycled, so before using it the backend checks that the pid is either
//! unused or still its leader (same start time); a recycled one means the
//! run is over.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rustix::process::{PidfdFlags, Signal};

use super::cgroup::to_pid;
use super::procfs::{ProcStat, all_stats, read_stat};
use super::{KILL_WAIT, POLL, SandboxError, WATCHDOG_TICK, lock};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    pub pgid: u32,
    pub leader_start: u64,
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
    pub fn members(&self) -> Vec<ProcStat> {
        if !self.still_ours() {
            return Vec::new();
        }
        let mut members: Vec<ProcStat> =
            all_stats().into_iter().filter(|s| s.pgrp == self.pgid && !s.is_dead()).collect();
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

pub(crate) fn kill_group(name: &str, group: Option<Group>) -> Result<Vec<u32>, SandboxError> {
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

/// The run's process group (once entered) and its RSS watchdog.
pub(crate) struct Fallback {
    pub group: Arc<Mutex<Option<Group>>>,
    pub kills: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Fallback {
    pub fn start(limit_bytes: Option<u64>) -> Result<Fallback, SandboxError> {
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

    pub fn kill_count(&self) -> u64 {
        self.kills.load(Ordering::Relaxed)
    }

    pub fn stop(&mut self) {
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
