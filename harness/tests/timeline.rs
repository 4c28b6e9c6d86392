//! The timeline SVG of a fixed event log (`harness/tests/data/`), held as a
//! snapshot in `reports/snapshots/`: the drawing is font-free, so the same
//! events give the same file everywhere. The log has two attempts of a task
//! (its first worker SIGKILLed by its own fault, the second struck from
//! outside), a task error, a worker OOM-killed mid-task, a task with no
//! outcome at the deadline, and the owner torn down after it.

use std::path::Path;

use harness::report::timeline::{Context, read_events, svg};

fn fixture() -> Vec<harness::run::events::Logged> {
    read_events(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/timeline.events.jsonl")).expect("the fixture")
}

#[test]
fn a_fixed_event_log_draws_the_same_timeline() {
    let context =
        Context { title: "fixture / supervised (seed 1)".into(), deadline_ms: Some(500), faults: vec![(1, 1)] };
    let drawn = svg(&fixture(), &context).expect("drawn");
    // What it must show, whatever the snapshot: a lane per worker with its
    // end, and the deadline and the judging.
    for lane in ["worker 101: oom-kill", "worker 102: sigkill", "worker 103: sigkill", "worker 104: alive", "owner 100"]
    {
        assert!(drawn.contains(lane), "no lane {lane:?}");
    }
    assert!(drawn.contains("deadline 500 ms") && drawn.contains("judged 520 ms"));
    insta::with_settings!({
        snapshot_path => "../../reports/snapshots",
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!("timeline-fixture", drawn);
    });
}

#[test]
fn the_same_events_give_the_same_svg() {
    let context = Context::default();
    assert_eq!(svg(&fixture(), &context).expect("drawn"), svg(&fixture(), &context).expect("drawn"));
}

/// A run that is not as expected, with `--out`: its timeline beside its
/// event log, linked from report.md; `explain --timeline` draws one too.
#[test]
fn a_run_not_as_expected_gets_its_timeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = dir.path().join("wrong.toml");
    // naive hangs when its worker is SIGKILLed mid-task: "completed" is wrong.
    std::fs::write(
        &scenario,
        "description = \"the seed, expected wrongly\"\nworkers = 1\nstyle = \"map\"\ndeadline_ms = 2000\n\
         [[tasks]]\ncount = 1\nwork = { sleep_ms = 1000 }\n\
         [[nemesis]]\nsignal = \"sigkill\"\ntarget = \"task\"\ntask = 0\nafter_ms = 300\n\
         [expect]\nnaive = \"completed\"\n",
    )
    .expect("write the scenario");
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run poolchaos");
    assert_eq!(status.code(), Some(1), "the run was as expected");
    let svg = std::fs::read_to_string(out.join("runs/wrong--naive.timeline.svg")).expect("the timeline");
    assert!(svg.contains("worker ") && svg.contains(": sigkill") && svg.contains("deadline 2000 ms"), "{svg}");
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("[`runs/wrong--naive.timeline.svg`](runs/wrong--naive.timeline.svg)"), "{report}");
    // explain --timeline: the same log, drawn again beside it.
    std::fs::remove_file(out.join("runs/wrong--naive.timeline.svg")).expect("remove");
    let explained = std::process::Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .args(["explain", "--timeline"])
        .arg(out.join("runs/wrong--naive.events.jsonl"))
        .arg(&scenario)
        .output()
        .expect("run poolchaos explain");
    assert!(explained.status.success(), "{}", String::from_utf8_lossy(&explained.stderr));
    assert!(out.join("runs/wrong--naive.timeline.svg").exists());
}
