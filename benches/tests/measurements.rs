//! The measurements run and check what they count, on a handful of tasks
//! and frames. Nothing here looks at a time: only at ids, outcomes and counts.
//! (They need the worker binary beside the test binary: `cargo nextest run
//! --workspace` builds it.)

use std::time::Duration;

use benches::floor;
use benches::load::{self, Cost, Rate, Settled};
use pools::{FaultKind, PoolKind};

fn worker() -> pools::WorkerProgram {
    benches::worker().expect("the worker binary (build the workspace)")
}

#[test]
fn every_echo_mode_brings_every_id_back_once() {
    let path = worker().path;
    floor::echo(&path, 1, 1, 200, false).expect("round trips");
    floor::echo(&path, 2, floor::IN_FLIGHT, 5_000, false).expect("one write per frame");
    floor::echo(&path, 2, floor::IN_FLIGHT, 50_000, true).expect("batched");
}

#[test]
fn the_process_floors_run() {
    let path = worker().path;
    floor::fork_wait(&path, 5).expect("fork-wait");
    floor::spawn_exec_wait(&path, 2).expect("spawn-exec-wait");
    assert_eq!(floor::kill_to_eof(&path, 2).expect("kills").len(), 2);
}

#[test]
fn failure_rates_are_exact_and_placed_by_the_tasks() {
    for (rate, every) in [(Rate::Zero, None), (Rate::One, Some(100)), (Rate::Five, Some(20))] {
        let tasks = load::tasks(Cost::Us100, rate, 400, 1000);
        let faulted: Vec<u64> = tasks.iter().filter(|t| t.fault.is_some()).map(|t| t.tag - 1000).collect();
        let expected: Vec<u64> = every.map_or(Vec::new(), |e| (1..=400 / e).map(|k| k * e - 1).collect());
        assert_eq!(faulted, expected, "{rate:?}");
        assert!(tasks.iter().filter_map(|t| t.fault).all(|f| f.kind == FaultKind::SigKill && f.times == 1));
    }
}

/// What each pool makes of 100 no-op tasks, 5 of which SIGKILL their worker.
#[test]
fn each_pool_settles_a_batch_with_kills_as_its_design_says() {
    let program = worker();
    let stall = Duration::from_millis(500);
    for kind in [PoolKind::Supervised, PoolKind::PerTask, PoolKind::Polling, PoolKind::Naive] {
        let pool = pools::build(kind, &load::config(&program, 2)).expect("start");
        let batch = load::run_batch(&*pool, load::tasks(Cost::NoOp, Rate::Five, 100, 0), stall).expect("batch");
        pool.terminate();
        match (kind, batch.settled) {
            (PoolKind::Supervised, Some(s)) => assert_eq!(s, Settled { completed: 100, lost: 0, broken: 0 }),
            (PoolKind::PerTask, Some(s)) => assert_eq!(s, Settled { completed: 95, lost: 5, broken: 0 }),
            (PoolKind::Polling, Some(s)) => assert!(s.broken > 0 && s.completed + s.lost + s.broken == 100, "{s:?}"),
            (PoolKind::Naive, None) => {}
            (kind, other) => panic!("{kind}: {other:?}"),
        }
    }
}
