//! Properties over generated fault plans, each case a real sandboxed run:
//! the robust pools never hang, lose, duplicate or leak, and every pool's
//! verdict is the one its oracle predicts.
//!
//! Few cases by default, to keep CI short; `POOLCHAOS_PROPTEST_CASES=200`
//! for a longer look (`just fuzz` runs a long campaign instead).

mod common;

use harness::campaign;
use harness::judge::oracle::Expectation;
use harness::judge::verdict::Verdict;
use harness::run::runner::RunContext;
use harness::scenario::{Scenario, SelfFault, TaskGroup};
use pools::{CallStyle, FaultKind, FaultPoint, PoolKind, Workload};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("POOLCHAOS_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(6)
}

fn kind(stalls: bool) -> impl Strategy<Value = FaultKind> {
    let mut kinds = vec![
        FaultKind::SigKill,
        FaultKind::SigSegv,
        FaultKind::Abort,
        FaultKind::Exit(0),
        FaultKind::Exit(1),
        FaultKind::Error,
    ];
    if stalls {
        kinds.extend([FaultKind::Hang, FaultKind::SigStop]);
    }
    proptest::sample::select(kinds)
}

fn point() -> impl Strategy<Value = FaultPoint> {
    proptest::sample::select(vec![FaultPoint::Decode, FaultPoint::MidTask, FaultPoint::WriteResult])
}

/// 1 to 6 tasks, up to 3 of them faulted, on 2 workers, in any call style.
fn scenario(pool: PoolKind, stalls: bool) -> impl Strategy<Value = Scenario> {
    let faults = proptest::collection::vec((0usize..6, kind(stalls), point()), 0..3);
    (1usize..7, faults, proptest::sample::select(CallStyle::ALL.to_vec())).prop_map(move |(n, faults, style)| {
        let mut tasks: Vec<TaskGroup> =
            (0..n).map(|i| TaskGroup { count: 1, work: Workload::Echo(vec![i as u8; 8]), fault: None }).collect();
        for (at, kind, point) in faults {
            let at = at % n;
            tasks[at].work = Workload::Spin { us: 200 };
            tasks[at].fault = Some(SelfFault { kind, at: point, times: 1 });
        }
        Scenario {
            name: "property".into(),
            path: Default::default(),
            description: "generated".into(),
            workers: 2,
            style,
            deadline_ms: 2000,
            memory_limit_mib: None,
            task_timeout_ms: Some(300),
            max_attempts: 3,
            seed: Some(0),
            tasks,
            nemesis: Vec::new(),
            random: None,
            storm: None,
            expect: vec![(harness::target::Target::Pool(pool), Verdict::Completed)],
            peer: None,
            options: Default::default(),
        }
    })
}

/// Runs the plan; fails the case on an unsafe run or an oracle mismatch.
fn check(pool: PoolKind, s: &Scenario, ctx: &RunContext) -> Result<Verdict, TestCaseError> {
    let (record, expectation, finding) = campaign::run_once(s, &harness::target::Target::Pool(pool), ctx, "prop")
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    if let Some(finding) = finding {
        return Err(TestCaseError::fail(format!("{finding:?}: {:?}\n{}", record.diagnosis, s.to_toml(&[]))));
    }
    prop_assert!(!matches!(expectation, Expectation::Undetermined(_)), "self-placed faults are decidable");
    Ok(record.verdict)
}

fn robust(pool: PoolKind, stalls: bool) {
    let ctx = common::ctx();
    proptest!(ProptestConfig::with_cases(cases()), |(s in scenario(pool, stalls))| {
        let verdict = check(pool, &s, &ctx)?;
        prop_assert!(matches!(verdict, Verdict::Completed | Verdict::FailedLoudly), "{pool}: {verdict}");
    });
}

#[test]
fn supervised_never_hangs_loses_duplicates_or_leaks() {
    robust(PoolKind::Supervised, true);
}

#[test]
fn per_task_never_hangs_loses_duplicates_or_leaks() {
    robust(PoolKind::PerTask, true);
}

/// Polling has no deadline: it may hang on a stalled task, so no stalls here.
#[test]
fn polling_never_hangs_on_a_dead_worker_nor_loses_or_leaks() {
    robust(PoolKind::Polling, false);
}

#[test]
fn naive_does_what_its_oracle_says() {
    let ctx = common::ctx();
    proptest!(ProptestConfig::with_cases(cases()), |(s in scenario(PoolKind::Naive, true))| {
        check(PoolKind::Naive, &s, &ctx)?;
    });
}
