//! External targets from the harness's side: owners that break the protocol
//! are reported as such, naming the target, and the Python targets' rows of
//! `poolchaos bench` count what their pools did, exactly.
//!
//! The bench tests need the Python pools (`targets/python/setup.sh`, which
//! the README's test command runs first), root and cgroup v1, as CI has.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use benches::load::{self, Cost, External, ExternalBatch, Rate, Settled};
use harness::bench::{Bench, ExternalRow, ROWS};
use harness::target::Target;
use pools::{CallStyle, PoolKind};

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

/// `poolchaos run --target SCRIPT`, where SCRIPT is a shell owner with
/// `body` after reading its plan: (exit code, stdout).
fn run_script_target(dir: &Path, name: &str, body: &str) -> (Option<i32>, String) {
    let script = dir.join(name);
    std::fs::write(&script, format!("#!/bin/sh\nread plan\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let scenario = dir.join("one.toml");
    std::fs::write(&scenario, ONE_TASK).expect("write the scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(&script)
        .output()
        .expect("run poolchaos");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bad_adapter_output_is_a_target_error_that_names_the_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ready = r#"echo '{"event":"ready","pid":1}'"#;
    let ok = r#"echo '{"event":"outcome","index":0,"result":{"status":"ok"}}'"#;
    let finished = r#"echo '{"event":"finished"}'"#;
    let cases = [
        (
            "malformed.sh",
            format!("{ready}\necho 'this is not json'\n{ok}\n{finished}"),
            "it wrote a line that is not an event",
        ),
        (
            "unknown-task.sh",
            format!(
                "{ready}\necho '{{\"event\":\"outcome\",\"index\":7,\"result\":{{\"status\":\"ok\"}}}}'\n{ok}\n{finished}"
            ),
            "it reported an outcome for task 7; the plan's tasks are 0..1",
        ),
        ("exits-at-once.sh", "exit 0".to_string(), "it exited with code 0 before it reported `ready`"),
        ("no-finished.sh", format!("{ready}\n{ok}"), "it exited with code 0 without reporting `finished`"),
    ];
    for (name, body, says) in cases {
        let (code, stdout) = run_script_target(dir.path(), name, &body);
        assert_eq!(code, Some(1), "{name}: a target error is never as expected\n{stdout}");
        assert!(stdout.contains("target-error"), "{name}: the verdict says it\n{stdout}");
        let named = format!("target `{}` broke the owner protocol: {says}", dir.path().join(name).display());
        assert!(stdout.contains(&named), "{name}: wanted {named:?} in\n{stdout}");
    }
    // The same owner, following the protocol, is judged like any pool.
    let (code, stdout) = run_script_target(dir.path(), "good.sh", &format!("{ready}\n{ok}\n{finished}"));
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
}

/// One batch of `n` no-op tasks, every 20th one SIGKILLing its worker, on
/// a bench row for `target`.
fn batch_with_kills(target: Target, style: CallStyle, n: u64) -> ExternalBatch {
    let ctx = common::ctx();
    let row =
        ExternalRow { label: "test", target, style, chunksize: Some(1), tasks: [n, n], failures: None, note: None };
    let tasks = load::tasks(Cost::NoOp, Rate::Five, n, 0);
    Bench::new(&row, &ctx).run_batch(2, tasks, Duration::from_secs(1)).expect("the batch runs")
}

fn settled(batch: ExternalBatch) -> Option<Settled> {
    match batch {
        ExternalBatch::Ran(batch) => batch.settled,
        ExternalBatch::Skipped { reason } => panic!("skipped: {reason} (run targets/python/setup.sh)"),
    }
}

#[test]
fn bench_rows_count_what_the_python_pools_did_with_each_death() {
    // pebble fails the killed tasks alone; ProcessPoolExecutor breaks and
    // fails the rest; multiprocessing.Pool hangs (no task moves for 1 s).
    let pebble = settled(batch_with_kills(Target::python("py-pebble"), CallStyle::ApplyAsync, 40));
    assert_eq!(pebble, Some(Settled { completed: 38, lost: 2, broken: 0 }));
    let ppe = settled(batch_with_kills(Target::python("py-ppe"), CallStyle::ApplyAsync, 40)).expect("settles");
    assert!(ppe.broken > 0 && ppe.lost == 0 && ppe.completed + ppe.broken == 40, "{ppe:?}");
    let pool = settled(batch_with_kills(Target::python("py-pool-map"), CallStyle::Map, 40));
    assert_eq!(pool, None, "multiprocessing.Pool.map hangs on a death");
    // Our own pool through the same path retries the killed tasks.
    let supervised = settled(batch_with_kills(Target::Pool(PoolKind::Supervised), CallStyle::Map, 40));
    assert_eq!(supervised, Some(Settled { completed: 40, lost: 0, broken: 0 }));
}

#[test]
fn every_bench_row_runs_a_timed_batch_without_faults() {
    let ctx = common::ctx();
    for row in &ROWS {
        let bench = Bench::new(row, &ctx);
        let tasks = load::tasks(Cost::NoOp, Rate::Zero, 10, 0);
        match bench.run_batch(2, tasks, Duration::from_secs(1)).expect("the batch runs") {
            ExternalBatch::Ran(batch) => {
                assert_eq!(batch.settled, Some(Settled { completed: 10, lost: 0, broken: 0 }), "{}", row.label);
                assert!(!batch.elapsed.is_zero() && batch.elapsed < Duration::from_secs(10), "{}", row.label);
            }
            ExternalBatch::Skipped { reason } => panic!("{}: skipped: {reason}", row.label),
        }
    }
}

#[test]
fn a_runs_fixed_cost_is_measured_through_the_runner_beside_its_floor() {
    let ctx = common::ctx();
    let fixed = harness::bench::Fixed::new(&ctx);
    let worker = benches::worker().expect("the worker binary");
    let cost = benches::fixed::measure(&fixed, &worker.path, 2, benches::fixed::FixedSizes::SMOKE)
        .expect("one-echo runs complete and the campaign runs");
    assert_eq!(cost.runs.len(), 2);
    assert!(cost.runs.iter().all(|r| !r.is_zero()), "{cost:?}");
    // The floor is the owner's spawn-exec-wait and one worker's per worker.
    assert!(!cost.owner_exec.is_zero() && !cost.worker_exec.is_zero(), "{cost:?}");
    assert!(cost.floor >= cost.owner_exec && cost.ratio() > 0.0, "{cost:?}");
    assert_eq!(cost.campaign.0, 2);
    assert!(cost.campaign_per_s() > 0.0, "{cost:?}");
}

#[test]
fn bench_refuses_a_pattern_that_names_no_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .args(["bench", "--smoke", "--pools", "supervised,py-nope*"])
        .output()
        .expect("run poolchaos");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"--pools: "py-nope*" names no pool or target of the bench"#), "{stderr}");
}

#[test]
fn a_target_command_is_split_as_a_shell_would() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spaced = dir.path().join("my pools");
    std::fs::create_dir(&spaced).expect("mkdir");
    let script = spaced.join("good owner.sh");
    let body = r#"read plan
echo '{"event":"ready","pid":1}'
echo '{"event":"outcome","index":0,"result":{"status":"ok"}}'
echo '{"event":"finished"}'"#;
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    let scenario = dir.path().join("one.toml");
    std::fs::write(&scenario, ONE_TASK).expect("write the scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(format!("sh '{}'", script.display()))
        .output()
        .expect("run poolchaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("completed"), "{stdout}");
}

#[test]
fn a_python_version_without_its_venv_stops_the_run_before_it_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .args(["run", "scenarios/seed-map-sigkill.toml", "--pools", "py-pool-map", "--python", "3.99"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run poolchaos");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--python 3.99: no venv at") && stderr.contains("targets/python/setup.sh 3.99"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
}

/// A scenario's `custom` line is what a `--target` run must reach (a pool's
/// own CI holds its pool to it); the command's file, named relative to the
/// caller's directory without a `/`, is found there.
#[test]
fn a_target_run_is_held_to_the_scenario_s_custom_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = r#"read plan
echo '{"event":"ready","pid":1}'
echo '{"event":"outcome","index":0,"result":{"status":"ok"}}'
echo '{"event":"finished"}'"#;
    std::fs::write(dir.path().join("owner.sh"), format!("#!/bin/sh\n{body}\n")).expect("write the script");
    for (expected, code) in [("completed", 0), ("hung", 1)] {
        let scenario = ONE_TASK.replace("supervised = \"completed\"", &format!("custom = \"{expected}\""));
        std::fs::write(dir.path().join("one.toml"), scenario).expect("write the scenario");
        let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
            .args(["run", "one.toml", "--target", "sh owner.sh"])
            .current_dir(dir.path())
            .output()
            .expect("run poolchaos");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "custom = {expected}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("completed"), "{stdout}");
    }
}
