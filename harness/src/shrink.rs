//! Shrinking: a failing plan made as small as it can be while it still fails
//! the same way. Greedy, in the spirit of delta debugging: drop the storm,
//! then each strike from outside, then each fault, then fault-free tasks in
//! halving chunks, then make what is left cheap. Every candidate is a real
//! run, so the number of candidates is bounded, and so is the time: past its
//! deadline a shrink keeps what it has.
//!
//! A candidate is kept only if it fails every one of [`CONFIRM`] runs: a
//! plan that fails by a race (a strike landing before or after a fault
//! fired) fails some runs and not others, and is not taken for the rule.

use std::time::{Duration, Instant};

use pools::Workload;

use crate::scenario::{Aim, Scenario};

/// Candidates one shrink may try.
const BUDGET: usize = 48;
/// Runs of a candidate that must all fail for it to be kept.
pub const CONFIRM: usize = 2;
/// The time one shrink may take by default (`--shrink-budget`).
pub const BUDGET_TIME: Duration = Duration::from_secs(90);

/// How many faults a scenario injects: self-placed faults, OOM tasks, strikes, a storm.
pub fn fault_count(s: &Scenario) -> usize {
    let oom = |w: &Workload| matches!(w, Workload::Alloc { mib, .. } if s.memory_limit_mib.is_some_and(|l| u64::from(*mib) >= l));
    let tasks = s.tasks.iter().filter(|g| g.fault.is_some() || oom(&g.work)).map(|g| g.count).sum::<usize>();
    tasks + s.nemesis.len() + usize::from(s.storm.is_some())
}

/// The smallest variant of `failing` found, by `deadline`, for which
/// `still_fails` holds in each of [`CONFIRM`] runs.
pub fn shrink(failing: &Scenario, deadline: Instant, still_fails: &dyn Fn(&Scenario) -> bool) -> Scenario {
    let mut best = explode(failing);
    let budget = std::cell::Cell::new(BUDGET);
    let attempt = |candidate: Scenario, best: &mut Scenario| {
        if budget.get() == 0 || Instant::now() >= deadline {
            budget.set(0);
            return false;
        }
        budget.set(budget.get() - 1);
        let ok = (0..CONFIRM).all(|_| still_fails(&candidate));
        if ok {
            *best = candidate;
        }
        ok
    };
    if best.storm.is_some() {
        let mut c = best.clone();
        c.storm = None;
        attempt(c, &mut best);
    }
    let mut i = 0;
    while i < best.nemesis.len() {
        let mut c = best.clone();
        c.nemesis.remove(i);
        if !attempt(c, &mut best) {
            i += 1;
        }
    }
    for i in 0..best.tasks.len() {
        let faulty = best.tasks[i].fault.is_some() || matches!(best.tasks[i].work, Workload::Alloc { .. });
        if faulty {
            let mut c = best.clone();
            c.tasks[i].fault = None;
            if matches!(c.tasks[i].work, Workload::Alloc { .. }) {
                c.tasks[i].work = Workload::Echo(vec![b'x']);
            }
            attempt(c, &mut best);
        }
    }
    // Fault-free tasks nobody strikes, in halving chunks.
    let mut chunk = best.tasks.len().div_ceil(2).max(1);
    loop {
        let removable: Vec<usize> = (0..best.tasks.len()).filter(|&i| is_bystander(&best, i)).collect();
        let mut removed_any = false;
        for piece in removable.chunks(chunk).rev() {
            let c = without_tasks(&best, piece);
            if c.tasks.is_empty() {
                continue;
            }
            if attempt(c, &mut best) {
                removed_any = true;
                break;
            }
        }
        if !removed_any {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        if budget.get() == 0 {
            break;
        }
    }
    // Cheaper work where nobody needs the time.
    for i in 0..best.tasks.len() {
        let targeted = best.nemesis.iter().any(|n| n.target == Aim::Task(i));
        if !targeted && matches!(best.tasks[i].work, Workload::Spin { .. } | Workload::Sleep { .. }) {
            let mut c = best.clone();
            c.tasks[i].work = Workload::Echo(vec![b'x']);
            attempt(c, &mut best);
        }
    }
    best
}

/// One group per task, so tasks can be dropped one by one.
fn explode(s: &Scenario) -> Scenario {
    let mut out = s.clone();
    out.tasks = s
        .tasks
        .iter()
        .flat_map(|g| (0..g.count).map(|_| crate::scenario::TaskGroup { count: 1, ..g.clone() }))
        .collect();
    out
}

fn is_bystander(s: &Scenario, i: usize) -> bool {
    let t = &s.tasks[i];
    t.fault.is_none()
        && !matches!(t.work, Workload::Alloc { .. })
        && !s.nemesis.iter().any(|n| n.target == Aim::Task(i))
}

/// `s` without the tasks at `drop` (sorted), strikes re-aimed at the new indices.
fn without_tasks(s: &Scenario, drop: &[usize]) -> Scenario {
    let mut c = s.clone();
    c.tasks = s.tasks.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, t)| t.clone()).collect();
    for n in &mut c.nemesis {
        if let Aim::Task(i) = n.target {
            n.target = Aim::Task(i - drop.iter().filter(|&&d| d < i).count());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Signal;
    use crate::scenario::{Nemesis, SelfFault, TaskGroup};
    use crate::verdict::Verdict;
    use pools::{CallStyle, FaultKind, FaultPoint, PoolKind};

    fn scenario() -> Scenario {
        let echo = || TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None };
        let kill = SelfFault { kind: FaultKind::SigKill, at: FaultPoint::MidTask, times: 1 };
        let mut tasks: Vec<TaskGroup> = (0..20).map(|_| echo()).collect();
        tasks[5].fault = Some(kill);
        tasks[12].fault = Some(kill);
        tasks[15].work = Workload::Sleep { ms: 50 };
        Scenario {
            name: "t".into(),
            path: Default::default(),
            description: "t".into(),
            workers: 2,
            style: CallStyle::Map,
            deadline_ms: 1000,
            memory_limit_mib: None,
            task_timeout_ms: None,
            max_attempts: 3,
            seed: None,
            tasks,
            nemesis: vec![Nemesis { signal: Signal::Sigkill, target: Aim::Task(15), after_ms: 5 }],
            random: None,
            storm: None,
            expect: vec![(crate::target::Target::Pool(PoolKind::Supervised), Verdict::Completed)],
            peer: None,
        }
    }

    #[test]
    fn shrinks_to_the_one_fault_that_matters_and_keeps_strikes_aimed() {
        // "Fails" while the task killed at index 12 of the original is there.
        let fails = |s: &Scenario| {
            s.tasks.iter().any(|t| t.fault.is_some() && t.work == Workload::Echo(vec![1])) && s.tasks.len() >= 2
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let small = shrink(&scenario(), deadline, &|s| fails(s) && fault_count(s) >= 1);
        assert_eq!(fault_count(&small), 1, "{small:?}");
        assert!(small.tasks.len() <= 2, "{} tasks left", small.tasks.len());
        // Dropping tasks before a struck one re-aims the strike.
        let c = without_tasks(&scenario(), &[0, 1]);
        assert_eq!(c.nemesis[0].target, Aim::Task(13));
        assert_eq!(c.tasks[13].work, Workload::Sleep { ms: 50 });
    }

    #[test]
    fn a_candidate_that_fails_only_sometimes_is_not_kept_and_the_deadline_holds() {
        // Every other run of any candidate fails: a race, never confirmed.
        let runs = std::cell::Cell::new(0);
        let racy = |_: &Scenario| {
            runs.set(runs.get() + 1);
            runs.get() % 2 == 0
        };
        let small = shrink(&scenario(), Instant::now() + Duration::from_secs(60), &racy);
        assert_eq!(fault_count(&small), fault_count(&scenario()));
        // Past its deadline, a shrink tries nothing.
        runs.set(0);
        let small = shrink(&scenario(), Instant::now(), &|_| {
            runs.set(runs.get() + 1);
            true
        });
        assert_eq!((runs.get(), fault_count(&small)), (0, fault_count(&scenario())));
    }
}
