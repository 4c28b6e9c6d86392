//! The fork server that forks per-task's and supervised's workers: what
//! becomes of the pool when the server itself dies, and per-task's other way
//! of starting a task's process (a spawn-exec per task).
//!
//! The server is the test process's only child while a pool runs (the
//! workers are its children), so it is found through `/proc`. Every case
//! runs under `clean_run`: nothing may be left, the server's children
//! included.

mod common;

use std::time::Duration;

use common::{LIVE, clean_run, config};
use pools::per_task::Launch;
use pools::{Exit, Pool, PoolKind, Task, TaskError, Workload};
use rustix::net::RecvFlags;
use rustix::process::Signal;

/// The pool's fork server: the one child of this test process.
fn server_pid() -> u32 {
    let children = common::children();
    assert_eq!(children.len(), 1, "the fork server is our only child: {children:?}");
    children[0]
}

/// Waits until `pid` (a child of ours) has died: a zombie, or reaped.
fn wait_dead(pid: u32) {
    let until = std::time::Instant::now() + LIVE;
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the command's closing parenthesis.
            Ok(stat) if !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')) => {}
            _ => return,
        }
        assert!(std::time::Instant::now() < until, "{pid} did not die");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sleeper(tag: u64) -> Task {
    Task { tag, work: Workload::Sleep { ms: 60_000 }, fault: None }
}

#[test]
fn workers_run_as_children_of_the_fork_server() {
    for kind in [PoolKind::PerTask, PoolKind::Supervised] {
        clean_run(|| {
            let (config, mut trace) = config(2);
            let pool = pools::build(kind, &config).expect("start");
            let handle = pool.submit(vec![sleeper(0)], Default::default()).expect("submit");
            let worker = trace.wait_start(0, LIVE);
            let server = server_pid();
            let status = std::fs::read_to_string(format!("/proc/{worker}/status")).expect("worker status");
            let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).expect("PPid line").trim();
            assert_eq!(ppid, server.to_string(), "{kind}: the worker's parent is the fork server");
            pool.terminate();
            assert!(handle.wait(Some(LIVE)).is_some(), "terminate settles the task");
            pool.join_timeout(Some(LIVE)).expect("join");
        });
    }
}

/// The server SIGKILLed while a task runs: its children die with it
/// (PDEATHSIG), the task in flight fails as `WorkerLost(SIGKILL)` in
/// per-task (no retry) and is retried in supervised, and a new server takes
/// the next tasks.
#[test]
fn losing_the_fork_server_loses_only_the_work_in_flight() {
    for kind in [PoolKind::PerTask, PoolKind::Supervised] {
        clean_run(|| {
            let (config, mut trace) = config(1);
            let pool = pools::build(kind, &config).expect("start");
            let handle = pool
                .submit(vec![Task { tag: 0, work: Workload::Sleep { ms: 500 }, fault: None }], Default::default())
                .expect("submit");
            let worker = trace.wait_start(0, LIVE);
            common::kill(server_pid(), Signal::KILL);
            let outcome = handle.wait(Some(LIVE)).expect("not hung").pop().expect("one outcome");
            match (kind, outcome) {
                (
                    PoolKind::PerTask,
                    Err(TaskError::WorkerLost { pid, exit: Exit::Signal(libc::SIGKILL), attempts: 1 }),
                ) => {
                    assert_eq!(pid, worker, "the error names the task's process")
                }
                (PoolKind::Supervised, Ok(bytes)) => {
                    assert!(Task { tag: 0, work: Workload::Sleep { ms: 500 }, fault: None }.check(&bytes))
                }
                (kind, other) => panic!("{kind}: {other:?}"),
            }
            let again = common::echoes(6);
            common::assert_all_ok(
                &again,
                &pool.map_timeout(again.clone(), Some(LIVE)).expect("a new server takes the work"),
            );
            pool.close();
            pool.join_timeout(Some(LIVE)).expect("join after close");
        });
    }
}

#[test]
fn per_task_can_still_spawn_exec_each_task() {
    clean_run(|| {
        let (config, mut trace) = config(2);
        let pool = pools::per_task::start_with(&config, Launch::SpawnExec).expect("start");
        let tasks = common::echoes(6);
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung"));
        // No fork server: the task's process is our own child.
        let handle = pool.submit(vec![sleeper(7)], Default::default()).expect("submit");
        let pid = trace.wait_start(7, LIVE);
        assert_eq!(common::children(), [pid], "spawn-exec: the task's process is our child");
        common::kill(pid, Signal::KILL);
        match handle.wait(Some(LIVE)).expect("not hung").pop() {
            Some(Err(TaskError::WorkerLost { pid: lost, exit: Exit::Signal(libc::SIGKILL), attempts: 1 })) => {
                assert_eq!(lost, pid)
            }
            other => panic!("{other:?}"),
        }
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join");
    });
}

/// A deadline is kept through the fork server too: the child is SIGKILLed by
/// pidfd and its task fails as `TimedOut`.
#[test]
fn per_task_deadlines_kill_forked_children() {
    clean_run(|| {
        let (mut config, _trace) = config(1);
        config.task_timeout = Some(Duration::from_millis(200));
        let pool = pools::build(PoolKind::PerTask, &config).expect("start");
        match pool.apply_timeout(sleeper(1), Some(LIVE)).expect("not hung") {
            Err(TaskError::TimedOut { after, attempts: 1, .. }) => assert!(after >= Duration::from_millis(200)),
            other => panic!("{other:?}"),
        }
    });
}

/// The server SIGKILLed while the pool is idle: the next batch is taken by
/// a new one, whether or not the pool noticed the death first. (Idle: the
/// server is dead, a zombie, before the batch; its idle children, per-task's
/// spares and supervised's standby, die with it and charge nothing.)
#[test]
fn an_idle_pool_outlives_its_fork_server() {
    for kind in [PoolKind::PerTask, PoolKind::Supervised] {
        clean_run(|| {
            let (config, _trace) = config(2);
            let pool = pools::build(kind, &config).expect("start");
            let first = common::echoes(4);
            common::assert_all_ok(&first, &pool.map_timeout(first.clone(), Some(LIVE)).expect("not hung"));
            let server = server_pid();
            common::kill(server, Signal::KILL);
            wait_dead(server);
            let again = common::echoes(8);
            common::assert_all_ok(&again, &pool.map_timeout(again.clone(), Some(LIVE)).expect("a new server"));
            pool.close();
            pool.join_timeout(Some(LIVE)).expect("join after close");
        });
    }
}

/// Many small batches of quick tasks: a child's exit is often reported while
/// the pool waits for the server to answer the next spawn, and must still
/// settle its task (a missed wake-up here hangs the batch).
#[test]
fn quick_tasks_in_many_small_batches_all_settle() {
    clean_run(|| {
        let (config, _trace) = config(2);
        let pool = pools::build(PoolKind::PerTask, &config).expect("start");
        for round in 0..40u64 {
            let tasks: Vec<Task> = (0..6).map(|i| Task::echo(round * 10 + i, format!("t{i}"))).collect();
            let outcomes = pool.map_timeout(tasks.clone(), Some(LIVE)).expect("not hung");
            common::assert_all_ok(&tasks, &outcomes);
        }
    });
}

/// How many requests wait, unread, for `pid` (a stopped fork server) on its
/// control socket, its fd 0: the bytes queued (a `SOCK_SEQPACKET` socket
/// counts every message) over the size of the first one (peeked; the
/// server's requests are all alike).
fn requests_queued_for(pid: u32) -> u64 {
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};
    let pidfd =
        rustix::process::pidfd_open(Pid::from_raw(pid as i32).expect("pid"), PidfdFlags::empty()).expect("pidfd_open");
    let control = rustix::process::pidfd_getfd(&pidfd, 0, PidfdGetfdFlags::empty()).expect("pidfd_getfd");
    let queued = rustix::io::ioctl_fionread(&control).expect("FIONREAD");
    let mut first = [0u8; 256];
    match rustix::net::recv(&control, &mut first, RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::TRUNC) {
        Ok((_, len)) if len > 0 => queued / len as u64,
        _ => 0,
    }
}

/// Stops supervised's fork server, then SIGKILLs its two workers and its
/// standby: the pool asks that server for all three again, and the requests
/// wait, unread. Returns the server's pid.
fn stop_server_with_three_workers_asked(pool: &dyn Pool) -> u32 {
    let processes = common::wait_for_pids(pool, 3);
    let server = server_pid();
    common::kill(server, Signal::STOP);
    for pid in &processes {
        common::kill(*pid, Signal::KILL);
    }
    let until = std::time::Instant::now() + LIVE;
    while requests_queued_for(server) < 3 {
        assert!(std::time::Instant::now() < until, "the pool did not ask the stopped server for 3 workers");
        std::thread::sleep(Duration::from_millis(2));
    }
    server
}

/// The cause of a hang under kill storms, made exact: the fork server dies
/// with every missing worker asked of it (two workers and the standby).
/// Those requests will never be answered: the pool must ask a new server,
/// not count them as coming (it once waited forever, with no worker, for
/// them). Every task of the next batch completes.
#[test]
fn workers_asked_of_a_server_that_dies_are_asked_of_the_next() {
    clean_run(|| {
        let (config, _trace) = config(2);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let server = stop_server_with_three_workers_asked(&*pool);
        common::kill(server, Signal::KILL);
        wait_dead(server);
        let tasks = common::echoes(8);
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("a new server's workers"));
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}

/// The same, with the server left stopped: it never answers, so the pool
/// gives it up (kills it) 10 s after the oldest request, and a new server
/// forks the workers; every task of the batch completes.
#[test]
fn a_fork_server_that_stops_answering_is_given_up() {
    clean_run(|| {
        let (config, _trace) = config(2);
        let pool = pools::build(PoolKind::Supervised, &config).expect("start");
        let server = stop_server_with_three_workers_asked(&*pool);
        let tasks = common::echoes(8);
        common::assert_all_ok(&tasks, &pool.map_timeout(tasks.clone(), Some(LIVE)).expect("a new server's workers"));
        wait_dead(server);
        pool.close();
        pool.join_timeout(Some(LIVE)).expect("join after close");
    });
}
