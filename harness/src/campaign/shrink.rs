//! Shrinking: a failing plan made as small as it can be while it still fails
//! the same way. Greedy, in the spirit of delta debugging: keep each fault
//! alone (storm, strike from outside, self-placed fault, OOM task), then drop
//! the faults in halves down to one at a time, then fault-free tasks in
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
    let attempts = Attempts { left: std::cell::Cell::new(BUDGET), deadline, still_fails };
    drop_faults(&mut best, &attempts);
    drop_bystanders(&mut best, &attempts);
    // Cheaper work where nobody needs the time.
    for i in 0..best.tasks.len() {
        let targeted = best.nemesis.iter().any(|n| n.target == Aim::Task(i));
        if !targeted && matches!(best.tasks[i].work, Workload::Spin { .. } | Workload::Sleep { .. }) {
            let mut c = best.clone();
            c.tasks[i].work = Workload::Echo(vec![b'x']);
            attempts.attempt(c, &mut best);
        }
    }
    best
}

/// The shrinker's tries of candidates, within its budget of runs and time.
struct Attempts<'a> {
    /// Candidates left to try ([`BUDGET`] at first).
    left: std::cell::Cell<usize>,
    deadline: Instant,
    still_fails: &'a dyn Fn(&Scenario) -> bool,
}

impl Attempts<'_> {
    /// Tries `candidate`: it becomes `best` if it fails in each of [`CONFIRM`] runs.
    fn attempt(&self, candidate: Scenario, best: &mut Scenario) -> bool {
        if self.spent() || Instant::now() >= self.deadline {
            self.left.set(0);
            return false;
        }
        self.left.set(self.left.get() - 1);
        let ok = (0..CONFIRM).all(|_| (self.still_fails)(&candidate));
        if ok {
            *best = candidate;
        }
        ok
    }

    fn spent(&self) -> bool {
        self.left.get() == 0
    }
}

/// Drops the faults (storm, strikes, self-placed faults, OOM tasks). A
/// candidate that still fails costs its runs in full (a hang: its deadline,
/// twice), one that does not is usually quick, so the boldest cuts go first:
/// each fault alone, then halves dropped, down to one at a time.
fn drop_faults(best: &mut Scenario, attempts: &Attempts) {
    let all = units(best);
    if all.len() > 1 {
        for keep in 0..all.len() {
            let drop: Vec<Unit> = all.iter().enumerate().filter(|&(i, _)| i != keep).map(|(_, u)| *u).collect();
            if attempts.attempt(without_units(best, &drop), best) {
                break;
            }
        }
    }
    let mut chunk = units(best).len().div_ceil(2).max(1);
    loop {
        let all = units(best);
        let mut removed_any = false;
        for piece in all.chunks(chunk) {
            if attempts.attempt(without_units(best, piece), best) {
                removed_any = true;
                break;
            }
        }
        if attempts.spent() || (!removed_any && chunk == 1) {
            break;
        }
        if !removed_any {
            chunk = chunk.div_ceil(2);
        }
    }
}

/// Drops fault-free tasks nobody strikes, in halving chunks.
fn drop_bystanders(best: &mut Scenario, attempts: &Attempts) {
    let mut chunk = best.tasks.len().div_ceil(2).max(1);
    loop {
        let removable: Vec<usize> = (0..best.tasks.len()).filter(|&i| is_bystander(best, i)).collect();
        let mut removed_any = false;
        for piece in removable.chunks(chunk).rev() {
            let c = without_tasks(best, piece);
            if c.tasks.is_empty() {
                continue;
            }
            if attempts.attempt(c, best) {
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
        if attempts.spent() {
            break;
        }
    }
}

/// One fault of a scenario, as the shrinker drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Storm,
    Strike(usize),
    /// A task's self-placed fault, or its OOM allocation.
    Task(usize),
}

fn units(s: &Scenario) -> Vec<Unit> {
    let storm = s.storm.iter().map(|_| Unit::Storm);
    let strikes = (0..s.nemesis.len()).map(Unit::Strike);
    let tasks = (0..s.tasks.len())
        .filter(|&i| s.tasks[i].fault.is_some() || matches!(s.tasks[i].work, Workload::Alloc { .. }))
        .map(Unit::Task);
    storm.chain(strikes).chain(tasks).collect()
}

/// `s` without the faults `drop`: the tasks stay, fault-free (an allocation becomes an echo).
fn without_units(s: &Scenario, drop: &[Unit]) -> Scenario {
    let mut c = s.clone();
    if drop.contains(&Unit::Storm) {
        c.storm = None;
    }
    c.nemesis =
        s.nemesis.iter().enumerate().filter(|&(i, _)| !drop.contains(&Unit::Strike(i))).map(|(_, n)| *n).collect();
    for (i, task) in c.tasks.iter_mut().enumerate() {
        if drop.contains(&Unit::Task(i)) {
            task.fault = None;
            if matches!(task.work, Workload::Alloc { .. }) {
                task.work = Workload::Echo(vec![b'x']);
            }
        }
    }
    c
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
    use crate::judge::verdict::Verdict;
    use crate::protocol::Signal;
    use crate::scenario::{Nemesis, SelfFault, TaskGroup};
    use pools::{FaultKind, FaultPoint, PoolKind};

    fn scenario() -> Scenario {
        let echo = || TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None };
        let kill = SelfFault { kind: FaultKind::SigKill, at: FaultPoint::MidTask, times: 1 };
        let mut tasks: Vec<TaskGroup> = (0..20).map(|_| echo()).collect();
        tasks[5].fault = Some(kill);
        tasks[12].fault = Some(kill);
        tasks[15].work = Workload::Sleep { ms: 50 };
        Scenario {
            max_attempts: 3,
            nemesis: vec![Nemesis { signal: Signal::Sigkill, target: Aim::Task(15), after_ms: 5 }],
            expect: vec![(crate::target::Target::Pool(PoolKind::Supervised), Verdict::Completed)],
            ..crate::scenario::for_tests(tasks)
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
    fn the_first_candidate_kept_has_one_fault_and_two_needed_faults_both_stay() {
        // Seven faults (a storm, two strikes, four self-placed); only task 12's matters.
        let mut s = scenario();
        s.storm = Some(crate::scenario::Storm { every_ms: 50, signal: Signal::Sigkill });
        s.nemesis.push(Nemesis { signal: Signal::Sigkill, target: Aim::RandomWorker, after_ms: 5 });
        let kill = SelfFault { kind: FaultKind::SigKill, at: FaultPoint::MidTask, times: 1 };
        s.tasks[3].fault = Some(SelfFault { kind: FaultKind::Hang, ..kill });
        s.tasks[12].fault = Some(SelfFault { kind: FaultKind::Error, ..kill });
        s.tasks[17].fault = Some(kill);
        assert_eq!(fault_count(&s), 7);
        let raises = |s: &Scenario| s.tasks.iter().any(|t| t.fault.is_some_and(|f| f.kind == FaultKind::Error));
        // What each run that still failed cost: a hang costs its deadline, so these must be few.
        let kept = std::cell::RefCell::new(Vec::new());
        let small = shrink(&s, Instant::now() + Duration::from_secs(60), &|c| {
            let fails = raises(c);
            if fails {
                kept.borrow_mut().push(fault_count(c));
            }
            fails
        });
        assert_eq!(fault_count(&small), 1);
        assert_eq!(kept.borrow()[..CONFIRM], [1; CONFIRM], "the first kept candidate is the fault alone");
        // Two faults that fail only together: both stay, the other five go.
        let both = |s: &Scenario| {
            let kinds: Vec<_> = s.tasks.iter().filter_map(|t| t.fault.map(|f| f.kind)).collect();
            kinds.contains(&FaultKind::Error) && kinds.contains(&FaultKind::Hang)
        };
        let small = shrink(&s, Instant::now() + Duration::from_secs(60), &both);
        assert_eq!(fault_count(&small), 2, "{small:?}");
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
