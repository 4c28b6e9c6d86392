//! Helpers for the pool integration tests: the worker binary, a trace reader
//! that says which worker pid started which task, and a leak check that every
//! test runs under, pass or fail.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pools::{Outcome, Pool, PoolConfig, Task, WorkerProgram};
use rustix::process::{Pid, Signal};

/// Long enough for any live pool on a loaded 2-core machine.
pub const LIVE: Duration = Duration::from_secs(30);
/// How long a pool that should be hung is watched before we call it hung.
/// Its work takes milliseconds, so no live pool gets near this.
pub const HUNG: Duration = Duration::from_secs(2);

pub fn program() -> WorkerProgram {
    WorkerProgram::new(env!("CARGO_BIN_EXE_poolchaos-worker"))
}

/// A config for `workers` workers, with a trace the test can read.
pub fn config(workers: usize) -> (PoolConfig, Trace) {
    let trace = Trace::new();
    let mut program = program();
    program.trace = Some(trace.write_end.clone());
    (PoolConfig::new(workers, program), trace)
}

/// Reads the `start <tag> <attempt> <pid>` lines workers write.
pub struct Trace {
    read: File,
    write_end: Arc<OwnedFd>,
    pending: String,
    pub starts: Vec<(u64, u32, u32)>,
}

impl Trace {
    pub fn new() -> Trace {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let flags = rustix::fs::fcntl_getfl(&read).expect("getfl");
        rustix::fs::fcntl_setfl(&read, flags | rustix::fs::OFlags::NONBLOCK).expect("setfl");
        Trace { read: File::from(read), write_end: Arc::new(write), pending: String::new(), starts: Vec::new() }
    }

    /// Waits for a worker to start the task tagged `tag`; returns its pid.
    pub fn wait_start(&mut self, tag: u64, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(&(_, _, pid)) = self.starts.iter().find(|s| s.0 == tag) {
                return pid;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no worker started task {tag} within {timeout:?}");
            let mut fds = [rustix::event::PollFd::new(&self.read, rustix::event::PollFlags::IN)];
            let ts =
                rustix::time::Timespec { tv_sec: 0, tv_nsec: left.min(Duration::from_millis(50)).as_nanos() as i64 };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
        }
    }

    /// Every start seen so far, reading what has arrived.
    pub fn drain(&mut self) -> &[(u64, u32, u32)] {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.read.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        while let Some(nl) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=nl).collect();
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["start", tag, attempt, pid] = f[..] {
                self.starts.push((tag.parse().unwrap(), attempt.parse().unwrap(), pid.parse().unwrap()));
            }
        }
        &self.starts
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: Signal) {
    rustix::process::kill_process(Pid::from_raw(pid as i32).expect("pid"), signal).expect("kill");
}

/// Pids of this process's children (every thread's), zombies included.
pub fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task").flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    pids
}

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!("{} -> {}", e.file_name().to_string_lossy(), target.display()))
        })
        .collect()
}

/// The tests of one process take turns, so that the children and fds each
/// one counts are its own: under `cargo test` they are threads of one
/// process; under nextest each has a process of its own and never waits.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test`, then checks, pass or fail, that no child process and no fd
/// it opened (pipes, pidfds) is left.
pub fn clean_run(test: impl FnOnce()) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fds_before = open_fds();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = children();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = children();
    }
    for &pid in &left {
        // Clean up what the pool left, then fail the test for it.
        let _ = rustix::process::kill_process(Pid::from_raw(pid as i32).expect("pid"), Signal::KILL);
        let _ = rustix::process::waitpid(Pid::from_raw(pid as i32), rustix::process::WaitOptions::empty());
    }
    let fds_after = open_fds();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(left.is_empty(), "child processes left behind: {left:?}");
    let leaked: Vec<_> = fds_after.difference(&fds_before).collect();
    assert!(leaked.is_empty(), "fds left open: {leaked:?}");
}

/// Asserts every outcome is its task's correct result.
pub fn assert_all_ok(tasks: &[Task], outcomes: &[Outcome]) {
    assert_eq!(tasks.len(), outcomes.len());
    for (task, outcome) in tasks.iter().zip(outcomes) {
        match outcome {
            Ok(bytes) => assert!(task.check(bytes), "task {} got a wrong result", task.tag),
            Err(e) => panic!("task {} failed: {e}", task.tag),
        }
    }
}

/// `n` echo tasks tagged 0..n.
pub fn echoes(n: u64) -> Vec<Task> {
    (0..n).map(|i| Task::echo(i, format!("task {i}"))).collect()
}

/// Waits until `pool` reports `n` live processes (supervised: its workers,
/// then its standby), and returns them.
pub fn wait_for_pids(pool: &dyn Pool, n: usize) -> Vec<u32> {
    let until = Instant::now() + LIVE;
    loop {
        let pids = pool.worker_pids();
        if pids.len() == n {
            return pids;
        }
        assert!(Instant::now() < until, "expected {n} processes, have {pids:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
