//! The pool's owner is SIGKILLed while its workers are busy: what becomes of
//! the workers? This test process makes itself a child subreaper, so orphaned
//! workers are re-parented to it and it can see (and clean up) every one.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::clean_run;
use rustix::process::{Pid, Signal, WaitOptions};

/// Starts an owner of `pool` with 2 busy workers, SIGKILLs it, and returns
/// the workers still alive one second later (reaping those that died, and
/// the idle processes that die with the owner too: supervised's standby,
/// per-task's spares, the fork server, orphaned to us as well).
fn workers_alive_after_owner_death(pool: &str) -> Vec<u32> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");
    let mut owner = Command::new(env!("CARGO_BIN_EXE_poolchaos-owner"))
        .args([pool, "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn owner");
    let mut line = String::new();
    let stdout = owner.stdout.take().expect("owner stdout");
    BufReader::new(stdout).read_line(&mut line).expect("owner reports its workers");
    let workers: Vec<u32> = line.split_whitespace().skip(1).map(|p| p.parse().expect("pid")).collect();
    assert_eq!(workers.len(), 2, "owner said {line:?}");
    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // Orphans are ours now: reap whichever have died.
        while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
        let alive: Vec<u32> =
            workers.iter().copied().filter(|&p| std::path::Path::new(&format!("/proc/{p}")).exists()).collect();
        let others = common::children().into_iter().filter(|p| !alive.contains(p)).count();
        if (alive.is_empty() && others == 0) || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_and_reap(pids: &[u32]) {
    for &pid in pids {
        let pid = Pid::from_raw(pid as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
    }
}

#[test]
fn supervised_workers_die_with_their_owner() {
    clean_run(|| assert_eq!(workers_alive_after_owner_death("supervised"), Vec::<u32>::new()));
}

#[test]
fn per_task_workers_die_with_their_owner() {
    clean_run(|| assert_eq!(workers_alive_after_owner_death("per-task"), Vec::<u32>::new()));
}

/// CPython's workers do not die with their owner: an idle one exits when its
/// inqueue reaches EOF, a busy one runs its task to the end first. Ours too:
/// both minute-long tasks' workers are still there a second after the owner died.
#[test]
fn naive_workers_outlive_their_owner_while_busy_as_cpythons_do() {
    clean_run(|| {
        let alive = workers_alive_after_owner_death("naive");
        kill_and_reap(&alive);
        assert_eq!(alive.len(), 2, "both busy naive workers outlive the owner");
    });
}

#[test]
fn polling_workers_outlive_their_owner_while_busy() {
    clean_run(|| {
        let alive = workers_alive_after_owner_death("polling");
        kill_and_reap(&alive);
        assert_eq!(alive.len(), 2, "polling's workers are naive's: they outlive the owner while busy");
    });
}
