//! `poolchaos run --repeat N` end to end: each cell's distribution of
//! verdicts, and a cell that came to more than one verdict reported unstable
//! (exit 4), apart from a wrong one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use harness::judge::stability::Stability;
use harness::report::Report;

const ONE_TASK: &str = r#"
description = "one echo task"
workers = 1
deadline_ms = 10000

[[tasks]]
count = 1
work = { echo = 4 }

[expect]
supervised = "completed"
"#;

const READY: &str = r#"echo '{"event":"ready","pid":1}'"#;
const OK: &str = r#"echo '{"event":"outcome","index":0,"result":{"status":"ok"}}'"#;
const FINISHED: &str = r#"echo '{"event":"finished"}'"#;

/// `poolchaos run --repeat 3 --target SCRIPT --out DIR/out`: (exit code, the report).
fn run_three_times(dir: &Path, body: &str) -> (Option<i32>, Report) {
    let script = dir.join("owner.sh");
    std::fs::write(&script, format!("#!/bin/sh\nread plan\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let scenario = dir.join("one.toml");
    std::fs::write(&scenario, ONE_TASK).expect("write the scenario");
    let out_dir = dir.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(&script)
        .args(["--repeat", "3", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run poolchaos");
    let json = std::fs::read_to_string(out_dir.join("report.json")).expect("report.json");
    (out.status.code(), serde_json::from_str(&json).expect("report.json parses"))
}

#[test]
fn a_cell_that_holds_reads_n_of_n_and_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, report) = run_three_times(dir.path(), &format!("{READY}\n{OK}\n{FINISHED}"));
    assert_eq!(code, Some(0));
    assert_eq!(report.repeat, 3);
    assert_eq!(report.runs.len(), 3);
    let cells: Vec<(String, Stability)> = report.cells.iter().map(|c| (c.distribution(), c.stability)).collect();
    assert_eq!(cells, [("completed 3/3".to_string(), Stability::Stable)]);
    let mut repeats: Vec<Option<u32>> = report.runs.iter().map(|r| r.repeat).collect();
    repeats.sort();
    assert_eq!(repeats, [Some(1), Some(2), Some(3)]);
}

/// An owner that follows the protocol on its first run only (the first to
/// make a directory), and exits before `ready` on the others.
#[test]
fn a_cell_with_two_verdicts_is_unstable_and_exits_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    let body = format!("if mkdir '{}' 2>/dev/null; then\n{READY}\n{OK}\n{FINISHED}\nelse exit 0; fi", first.display());
    let (code, report) = run_three_times(dir.path(), &body);
    assert_eq!(code, Some(4), "unstable, and no cell wrong");
    let cells: Vec<(String, Stability)> = report.cells.iter().map(|c| (c.distribution(), c.stability)).collect();
    assert_eq!(cells, [("target-error 2/3, completed 1/3".to_string(), Stability::Unstable)]);
    let md = std::fs::read_to_string(dir.path().join("out/report.md")).expect("report.md");
    assert!(md.contains("**unstable**: target-error 2/3, completed 1/3"), "{md}");
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).expect("junit.xml");
    assert_eq!(junit.matches("<flakyFailure").count(), 2, "{junit}");
}
