//! The report formats, on a synthetic report: snapshots of each format (in
//! `reports/snapshots/`), and checks that the JUnit XML parses, that the
//! canonical matrix ignores what changes between runs, and that `write_all`
//! writes its three files.

use std::collections::BTreeMap;

use harness::judge::verdict::{ExitRecord, FaultRecord, Leak, RunRecord, TaskCounts, Verdict};
use harness::report::Report;

/// Snapshot settings: the files go to `reports/snapshots/`, named without the module.
macro_rules! in_reports {
    ($body:block) => {
        insta::with_settings!({
            snapshot_path => "../../reports/snapshots",
            prepend_module_to_snapshot => false,
        }, $body)
    };
}

fn tasks(total: usize, ok: usize, failed: usize, lost: usize) -> TaskCounts {
    TaskCounts { total, ok, failed, lost, duplicated: 0, wrong: 0, bystanders: 0 }
}

fn fault(kind: &str, at: &str) -> Vec<FaultRecord> {
    vec![FaultRecord { kind: kind.into(), at: at.into(), storm: false }]
}

fn exit(pid: u32, signal: Option<i32>, code: Option<i32>) -> ExitRecord {
    ExitRecord { pid, signal, code }
}

fn run(scenario: &str, pool: &str, style: &str, verdict: Verdict, expected: Option<Verdict>) -> RunRecord {
    RunRecord {
        scenario: scenario.into(),
        pool: pool.parse().unwrap(),
        style: harness::protocol::call_style(style).unwrap(),
        verdict,
        expected,
        tasks: tasks(4, 4, 0, 0),
        errors: BTreeMap::new(),
        faults: Vec::new(),
        worker_exits: Vec::new(),
        oom_kills: 0,
        mechanism: None,
        leaks: Vec::new(),
        findings: Vec::new(),
        diagnosis: Vec::new(),
        elapsed_ms: 120,
        events: Some(format!("runs/{scenario}--{pool}.events.jsonl")),
        peer: None,
        repeat: None,
    }
}

/// 3 scenarios x 3 pools: hung runs with a diagnosis, failed-loudly runs,
/// two mismatches (a hung and a leaked run), a run without expectation.
fn synthetic() -> Report {
    use Verdict::*;
    let kill = "one-kill-mid-task";
    let oom = "oom-big-batch";
    let clean = "no-fault";
    let mut runs = Vec::new();

    // One worker killed mid-task.
    let mut r = run(kill, "naive", "map", Hung, Some(Hung));
    r.tasks = tasks(4, 3, 0, 1);
    r.faults = fault("sigkill", "task 1 mid-task");
    r.worker_exits = vec![exit(4242, Some(9), None)];
    r.diagnosis = vec![
        "task 1 pending: started on worker 4242, which died of SIGKILL (9) mid-task".into(),
        "no worker was started in its place; the caller waited until the 2000 ms deadline".into(),
    ];
    r.elapsed_ms = 2_004;
    runs.push(r);

    let mut r = run(kill, "polling", "map", FailedLoudly, Some(FailedLoudly));
    r.tasks = tasks(4, 3, 1, 0);
    r.errors = BTreeMap::from([("worker-lost(sigkill)".parse().unwrap(), 1)]);
    r.faults = fault("sigkill", "task 1 mid-task");
    r.worker_exits = vec![exit(4251, Some(9), None), exit(4250, None, Some(0)), exit(4252, None, Some(0))];
    r.elapsed_ms = 131;
    runs.push(r);

    let mut r = run(kill, "supervised", "map", Completed, Some(Completed));
    r.faults = fault("sigkill", "task 1 mid-task");
    r.worker_exits = vec![exit(4261, Some(9), None), exit(4260, None, Some(0)), exit(4262, None, Some(0))];
    r.elapsed_ms = 187;
    runs.push(r);

    // OOM on a big batch.
    let mut r = run(oom, "naive", "map-async", Hung, Some(Hung));
    r.tasks = tasks(16, 12, 0, 4);
    r.faults = fault("oom", "task 5 mid-task");
    r.worker_exits = vec![exit(5001, Some(9), None)];
    r.oom_kills = 1;
    r.diagnosis = vec!["tasks 5, 9, 13, 15 pending: all on worker 5001, which the OOM killer ended (SIGKILL)".into()];
    r.elapsed_ms = 5_010;
    runs.push(r);

    let mut r = run(oom, "polling", "map-async", FailedLoudly, Some(FailedLoudly));
    r.tasks = tasks(16, 15, 1, 0);
    r.errors = BTreeMap::from([("worker-lost(sigkill)".parse().unwrap(), 1)]);
    r.faults = fault("oom", "task 5 mid-task");
    r.worker_exits = vec![exit(5011, Some(9), None)];
    r.oom_kills = 1;
    r.elapsed_ms = 402;
    runs.push(r);

    let mut r = run(oom, "supervised", "map-async", Hung, Some(FailedLoudly));
    r.tasks = tasks(16, 14, 0, 2);
    r.faults = fault("oom", "task 5 mid-task");
    r.worker_exits = vec![exit(5021, Some(9), None), exit(5024, Some(9), None)];
    r.oom_kills = 2;
    r.diagnosis = vec![
        "task 5 pending: retried on worker 5024 after worker 5021 died of SIGKILL (9); 5024 died of SIGKILL (9) too"
            .into(),
        "task 6 pending: queued behind task 5 on worker 5024".into(),
        "the supervisor was waiting for a restart slot when the 5000 ms deadline passed".into(),
    ];
    r.elapsed_ms = 5_007;
    runs.push(r);

    // No fault at all.
    let mut r = run(clean, "naive", "apply-async", Completed, None);
    r.worker_exits = vec![exit(6000, None, Some(0)), exit(6001, None, Some(0))];
    runs.push(r);

    let mut r = run(clean, "polling", "apply-async", Completed, Some(Completed));
    r.elapsed_ms = 98;
    runs.push(r);

    let mut r = run(clean, "supervised", "apply-async", Leaked, Some(Completed));
    r.leaks = vec![Leak::Process { pid: 6021, what: "poolchaos-worker".into() }];
    r.elapsed_ms = 640;
    runs.push(r);

    Report {
        seed: 42,
        oom_mechanism: "cgroup-v2".into(),
        versions: BTreeMap::from([
            ("poolchaos".into(), "0.1.0".into()),
            ("rustc".into(), "1.95.0".into()),
            ("kernel".into(), "6.8.0-synthetic".into()),
        ]),
        runs,
        elapsed_ms: 13_870,
        repeat: 1,
        cells: Vec::new(),
        interrupted: None,
    }
}

/// `--repeat 3` over 2 scenarios × 2 pools: a stable cell, a wrong one (hung
/// 3 of 3, expected completed), an unstable one whose expected verdict came
/// up 2 of 3, and an unstable one that never met its expectation.
fn repeated() -> Report {
    use Verdict::*;
    let cells = [
        ("no-fault", "supervised", [Completed, Completed, Completed], Completed),
        ("no-fault", "naive", [Hung, Hung, Hung], Completed),
        ("kill-storm", "supervised", [FailedLoudly, Completed, FailedLoudly], FailedLoudly),
        ("kill-storm", "naive", [Hung, Lost, Hung], FailedLoudly),
    ];
    let mut runs = Vec::new();
    for repeat in 0..3 {
        for (scenario, pool, verdicts, expected) in cells {
            let mut r = run(scenario, pool, "map", verdicts[repeat], Some(expected));
            r.repeat = Some(repeat as u32 + 1);
            r.events = Some(format!("runs/{scenario}--{pool}.{}.events.jsonl", repeat + 1));
            if r.verdict == Hung {
                r.diagnosis = vec![format!("task 2 pending (repeat {})", repeat + 1)];
            }
            runs.push(r);
        }
    }
    let mut report = Report {
        seed: 7,
        oom_mechanism: "cgroup-v1".into(),
        versions: BTreeMap::from([("poolchaos".into(), "0.1.0".into())]),
        runs,
        elapsed_ms: 31_000,
        repeat: 3,
        cells: Vec::new(),
        interrupted: None,
    };
    report.cells = report.cell_stats();
    report
}

#[test]
fn repeated_snapshots() {
    let report = repeated();
    in_reports!({
        insta::assert_snapshot!("format-repeat-table", report.table());
        insta::assert_snapshot!("format-repeat-markdown", report.markdown());
        insta::assert_snapshot!("format-repeat-junit", report.junit());
        insta::with_settings!({
            filters => vec![(r#""elapsed_ms": \d+"#, r#""elapsed_ms": "[ms]""#)],
        }, {
            insta::assert_snapshot!("format-repeat-json", report.json())
        })
    });
}

/// Each cell's distribution; an unstable cell counted apart from a wrong one;
/// in JUnit a case per cell, an unstable one flaky where a repeat was as expected.
#[test]
fn a_repeated_report_counts_each_cell_and_tells_unstable_from_wrong() {
    use harness::judge::stability::Stability;
    let report = repeated();
    let stability: Vec<(String, Stability)> = report.cells.iter().map(|c| (c.distribution(), c.stability)).collect();
    assert_eq!(
        stability,
        [
            ("completed 3/3".to_string(), Stability::Stable),
            ("hung 3/3".to_string(), Stability::Wrong),
            ("failed-loudly 2/3, completed 1/3".to_string(), Stability::Unstable),
            ("hung 2/3, lost 1/3".to_string(), Stability::Unstable),
        ]
    );
    assert_eq!((report.wrong(), report.unstable()), (1, 2));
    let table = report.table();
    assert!(table.contains("unstable: failed-loudly 2/3, completed 1/3 (expected failed-loudly)"), "{table}");
    assert!(table.contains("hung 3/3 ✗ (expected completed)"), "{table}");
    assert!(table.contains("4 cells × 3 runs: 1 stable, 1 wrong ✗, 2 unstable"), "{table}");
    // One diagnosis per cell and verdict, not one per repeat.
    assert_eq!(table.matches("no-fault × naive: hung").count(), 1, "{table}");

    let parsed = quick_junit::Report::deserialize_from_str(&report.junit()).expect("junit.xml parses");
    assert_eq!(parsed.tests, 4);
    assert_eq!(parsed.failures, 2, "the wrong cell and the unstable cell that never met its expectation");
    let case = |name: &str| {
        parsed.test_suites.iter().flat_map(|s| s.test_cases.iter()).find(|c| c.name.as_str() == name).unwrap()
    };
    match &case("kill-storm::supervised").status {
        quick_junit::TestCaseStatus::Success { flaky_runs } => assert_eq!(flaky_runs.len(), 1),
        other => panic!("an unstable cell with a repeat as expected is flaky, not {other:?}"),
    }
    match &case("kill-storm::naive").status {
        quick_junit::TestCaseStatus::NonSuccess { reruns, ty, .. } => {
            assert_eq!(reruns.runs.len(), 2);
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("unstable"));
        }
        other => panic!("{other:?}"),
    }
    let back: Report = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(back, report);
}

/// An interrupted report says so, in every form, and names what was cut short.
#[test]
fn an_interrupted_report_says_so_and_names_the_runs_cut_short() {
    use harness::run::interrupt::{Interruption, StopSignal};
    let mut report = synthetic();
    report.interrupted =
        Some(Interruption { signal: StopSignal::Sigint, runs: vec!["kill-storm × py-ppe".into()], not_started: 4 });
    let line = "interrupted by SIGINT: 1 run(s) cut short (kill-storm × py-ppe), 4 not started";
    assert!(report.table().contains(line), "{}", report.table());
    assert!(report.markdown().contains(line));
    assert!(report.junit().contains(line));
    assert!(report.json().contains("\"signal\": \"sigint\""));
    assert!(!synthetic().json().contains("interrupted"), "a whole run's report.json is as before");
}

#[test]
fn table_snapshot() {
    let report = synthetic();
    in_reports!({ insta::assert_snapshot!("format-table", report.table()) });
}

#[test]
fn markdown_snapshot() {
    let report = synthetic();
    in_reports!({ insta::assert_snapshot!("format-markdown", report.markdown()) });
}

#[test]
fn junit_snapshot() {
    let report = synthetic();
    in_reports!({ insta::assert_snapshot!("format-junit", report.junit()) });
}

#[test]
fn canonical_snapshot() {
    let report = synthetic();
    in_reports!({ insta::assert_snapshot!("format-canonical", report.canonical()) });
}

#[test]
fn json_snapshot() {
    let report = synthetic();
    // The file as written, field order and all; only the timings are redacted.
    in_reports!({
        insta::with_settings!({
            filters => vec![(r#""elapsed_ms": \d+"#, r#""elapsed_ms": "[ms]""#)],
        }, {
            insta::assert_snapshot!("format-json", report.json())
        })
    });
}

#[test]
fn json_round_trips() {
    let report = synthetic();
    let back: Report = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn junit_parses_with_a_case_per_run_and_failures_for_the_mismatches() {
    let report = synthetic();
    let xml = report.junit();
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("junit.xml parses");
    assert_eq!(parsed.tests, report.runs.len());
    assert_eq!(parsed.failures, 2);
    assert_eq!(parsed.errors, 0);
    let suites: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["one-kill-mid-task", "oom-big-batch", "no-fault"]);

    let mut failing = Vec::new();
    for suite in &parsed.test_suites {
        assert_eq!(suite.test_cases.len(), 3);
        for case in &suite.test_cases {
            assert!(case.name.as_str().starts_with(&format!("{}::", suite.name.as_str())));
            if let quick_junit::TestCaseStatus::NonSuccess { kind, message, description, .. } = &case.status {
                assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
                assert!(message.as_ref().unwrap().as_str().contains("expected"));
                assert!(description.is_some());
                failing.push(case.name.as_str().to_string());
            }
        }
    }
    let mismatches: Vec<String> =
        report.runs.iter().filter(|r| !r.as_expected()).map(|r| format!("{}::{}", r.scenario, r.pool)).collect();
    assert_eq!(failing, mismatches);
    assert_eq!(failing, ["oom-big-batch::supervised", "no-fault::supervised"]);
    // The hung run's diagnosis is in its failure.
    assert!(xml.contains("waiting for a restart slot"));
    assert_eq!(xml.matches("<testcase ").count(), 9);
    assert_eq!(xml.matches("<failure ").count(), 2);
}

#[test]
fn all_as_expected_sees_the_mismatches() {
    let mut report = synthetic();
    assert!(!report.all_as_expected());
    for run in &mut report.runs {
        if !run.as_expected() {
            run.expected = Some(run.verdict);
        }
    }
    assert!(report.all_as_expected());
    assert!(!report.junit().contains("<failure"));
    assert!(report.table().contains("9 runs: 9 as expected ·"));
}

#[test]
fn canonical_ignores_timings_pids_paths_and_run_order() {
    let report = synthetic();
    let mut other = report.clone();
    other.elapsed_ms += 999;
    other.runs.reverse();
    for run in &mut other.runs {
        run.elapsed_ms *= 3;
        run.events = None;
        for exit in &mut run.worker_exits {
            exit.pid += 17;
        }
        for line in &mut run.diagnosis {
            *line = line.replace("50", "70");
        }
        for leak in &mut run.leaks {
            if let Leak::Process { pid, .. } = leak {
                *pid += 78;
            }
        }
    }
    assert_eq!(other.canonical(), report.canonical());
    assert!(!report.canonical().contains("4242"));

    // ... but not a verdict.
    other.runs[0].verdict = Verdict::Lost;
    assert_ne!(other.canonical(), report.canonical());
}

#[test]
fn the_table_is_plain_and_the_ansi_table_is_the_same_text_coloured() {
    let report = synthetic();
    let plain = report.table();
    let ansi = report.table_ansi();
    assert!(!plain.contains('\x1b'));
    assert!(ansi.contains("\x1b["));
    assert_eq!(anstream::adapter::strip_str(&ansi).to_string(), plain);

    // write_table writes the styles; an AutoStream keeps or strips them.
    let mut raw = Vec::new();
    report.write_table(&mut raw).unwrap();
    assert_eq!(String::from_utf8(raw).unwrap(), ansi);
    let mut stripped = anstream::AutoStream::never(Vec::new());
    report.write_table(&mut stripped).unwrap();
    assert_eq!(String::from_utf8(stripped.into_inner()).unwrap(), plain);
    let mut kept = anstream::AutoStream::always_ansi(Vec::new());
    report.write_table(&mut kept).unwrap();
    assert_eq!(String::from_utf8(kept.into_inner()).unwrap(), ansi);
}

#[test]
fn the_table_marks_mismatches_and_diagnoses_hung_runs() {
    let table = synthetic().table();
    assert!(table.contains("hung ✗ (expected failed-loudly)"));
    assert!(table.contains("leaked ✗ (expected completed)"));
    // Hung runs (expected or not) and mismatches get their diagnosis below the table.
    assert!(table.contains("one-kill-mid-task × naive: hung\n"));
    assert!(table.contains("oom-big-batch × naive: hung\n"));
    assert!(table.contains("no-fault × supervised: leaked ✗ (expected completed)\n  left behind: process 6021"));
    assert!(!table.contains("one-kill-mid-task × polling:"));
}

#[test]
fn write_all_writes_the_three_files() {
    let report = synthetic();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("latest");
    report.write_all(&out).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert_eq!(md, report.markdown());
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    assert_eq!(xml, report.junit());
    // Writing again over an existing directory is fine.
    report.write_all(&out).unwrap();
}

/// A run held to a peer's own expectation: the table and report.md end with
/// "matches the peer's own expectation: N of M", and name each run that does not.
#[test]
fn the_report_ends_with_how_many_runs_match_the_peers_expectation() {
    use harness::judge::verdict::PeerCheck;
    use harness::protocol::ErrorKind;
    use harness::scenario::Peer;
    use harness::target::Target;
    let peer = Peer {
        test: "ExecutorDeadlockTest.test_crash_at_task_unpickle".into(),
        target: Target::python("py-ppe"),
        raises: "BrokenProcessPool".into(),
        verdict: Verdict::FailedLoudly,
        error: Some(ErrorKind::PoolBroken),
    };
    let mut report = synthetic();
    let mut met = run("crash-at-unpickle", "py-ppe", "apply", Verdict::FailedLoudly, Some(Verdict::FailedLoudly));
    met.errors = BTreeMap::from([("pool-broken(sigsegv)".parse().unwrap(), 1)]);
    met.peer = Some(PeerCheck::of(&peer, &met));
    let mut wrong_kind = met.clone();
    wrong_kind.pool = "py-ppe@3.13/spawn".parse().unwrap();
    wrong_kind.errors = BTreeMap::from([("task".parse().unwrap(), 1)]);
    wrong_kind.peer = Some(PeerCheck::of(&peer, &wrong_kind));
    let mut hung = met.clone();
    hung.pool = "py-ppe@3.12/fork".parse().unwrap();
    hung.verdict = Verdict::Hung;
    hung.peer = Some(PeerCheck::of(&peer, &hung));
    assert_eq!([&met, &wrong_kind, &hung].map(|r| r.peer.as_ref().is_some_and(|p| p.matched)), [true, false, false]);
    report.runs.extend([met, wrong_kind, hung]);
    let table = report.table();
    let tail: Vec<&str> = table.lines().rev().take(3).collect();
    assert!(tail[2] == "matches the peer's own expectation: 1 of 3", "{table}");
    assert!(tail[1].contains("py-ppe@3.13/spawn") && tail[0].contains("py-ppe@3.12/fork"), "{tail:?}");
    assert!(report.markdown().contains("matches the peer's own expectation: 1 of 3"));
    assert!(synthetic().peer_lines().is_empty(), "no peer, no line");
}
