//! The runner and the nemesis from outside, with owners written for the
//! case (`--target SCRIPT`): the nemesis strikes only what the events name
//! as a worker, and a run's named semaphores, and only its, are its leaks
//! and removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A scenario with one task, `deadline_ms`, and `extra` TOML.
fn scenario(dir: &Path, name: &str, deadline_ms: u64, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "description = \"{name}\"\nworkers = 1\ndeadline_ms = {deadline_ms}\n\n[[tasks]]\ncount = 1\nwork = {{ echo = 4 }}\n{extra}\n[expect]\nsupervised = \"completed\"\n"
    );
    std::fs::write(&path, text).expect("write the scenario");
    path
}

/// An executable `body` (with its `#!` line) in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `poolchaos run SCENARIO --target SCRIPT --out DIR`: the run's record in
/// report.json and its events.
fn run(dir: &Path, scenario: &Path, target: &Path) -> (Value, Vec<Value>) {
    let out = dir.join(format!("out-{}", scenario.file_stem().and_then(|s| s.to_str()).unwrap_or("x")));
    let done = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("run")
        .arg(scenario)
        .arg("--target")
        .arg(target)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run poolchaos");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json")).expect("json");
    let record = report["runs"][0].clone();
    let events_file = out.join(record["events"].as_str().expect("an event log"));
    let events = std::fs::read_to_string(events_file)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    assert!(done.status.code().is_some(), "poolchaos ended by a signal");
    (record, events)
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// An owner with a helper process beside its worker, as a fork server or a
/// resource tracker is: started first, never named by the trace. The worker
/// says it started task 0 after 300 ms, then sleeps.
const HELPER_AND_WORKER: &str = r#"#!/bin/sh
read plan
sleep 30 &
echo "{\"event\":\"ready\",\"pid\":$$}"
sleep 0.3
sh -c 'eval "echo start 0 0 \$\$ >&$POOLCHAOS_TRACE_FD"; exec sleep 30' &
sleep 30
"#;

#[test]
fn the_nemesis_strikes_only_the_workers_the_events_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let owner = script(dir.path(), "owner.sh", HELPER_AND_WORKER);
    let cases = [
        // Due at 50 ms, before any worker is known: it waits for one.
        ("random-worker", "[[nemesis]]\nsignal = \"sigkill\"\ntarget = \"random-worker\"\nafter_ms = 50\n"),
        // A storm every 50 ms from before the worker starts until the deadline.
        ("storm", "[storm]\nsignal = \"sigkill\"\nevery_ms = 50\n"),
    ];
    for (name, extra) in cases {
        let (record, events) = run(dir.path(), &scenario(dir.path(), name, 1500, extra), &owner);
        let started = of_kind(&events, "task-started");
        assert_eq!(started.len(), 1, "{name}: one worker started\n{events:#?}");
        let worker = &started[0]["pid"];
        let strikes = of_kind(&events, "nemesis");
        // One strike: the worker dies of it, and no other process is a worker.
        assert_eq!(strikes.len(), 1, "{name}: one strike, at the worker\n{events:#?}");
        assert_eq!(&strikes[0]["pid"], worker, "{name}\n{events:#?}");
        assert!(strikes[0]["t_ms"].as_u64() >= started[0]["t_ms"].as_u64(), "{name}: not before the worker started");
        // The helper lived on to the deadline: the run hung, nothing left.
        assert_eq!(record["verdict"], "hung", "{name}\n{record:#}");
        assert_eq!(record["leaks"], Value::Array(Vec::new()), "{name}\n{record:#}");
    }
}

/// An owner whose Python makes a named semaphore as multiprocessing does
/// under spawn and forkserver (`sem_open`, the name kept, no resource
/// tracker to unlink it), then `after`.
fn semaphore_owner(sem: &str, after: &str) -> String {
    format!(
        "#!/usr/bin/env python3\nimport _multiprocessing, json, os, sys, time\nsys.stdin.readline()\n\
         lock = _multiprocessing.SemLock(1, 1, 1, '/{sem}', False)\n\
         print(json.dumps({{'event': 'ready', 'pid': os.getpid()}}), flush=True)\n{after}\n"
    )
}

#[test]
fn a_runs_semaphores_and_only_its_are_its_leaks_and_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Made during the run by someone else, mapped by no one: not the run's.
    let guard = RemovedOnDrop(PathBuf::from(format!("/dev/shm/sem.poolchaos-test-{}", std::process::id())));
    let other = &guard.0;
    // The run's, removed here only if the harness failed to: a semaphore as
    // multiprocessing names them, and glibc's temporary (sem.XXXXXX) of a
    // sem_open killed inside the call, held open, not mapped yet.
    let pid = std::process::id();
    let ours = RemovedOnDrop(PathBuf::from(format!("/dev/shm/sem.mp-poolchaos-test-{pid}")));
    let temporary = RemovedOnDrop(PathBuf::from(format!("/dev/shm/sem.T{:05}", pid % 100_000)));
    let sem = ours.0.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("sem.")).expect("a name");
    let ready = r#"echo "{\"event\":\"ready\",\"pid\":$$}""#;
    let cases = [
        // Killed at the deadline with the semaphore held.
        ("killed.py", semaphore_owner(sem, "time.sleep(30)"), "hung", &ours.0),
        // Exits on its own without cleaning up (no finalizer runs).
        ("exits.py", semaphore_owner(sem, "time.sleep(0.5)\nos._exit(0)"), "target-error", &ours.0),
        (
            "temporary.sh",
            format!("#!/bin/sh\nread plan\nexec 3>{}\n{ready}\nsleep 30\n", temporary.0.display()),
            "hung",
            &temporary.0,
        ),
    ];
    for (file, body, verdict, sem) in cases {
        let name = file.split('.').next().unwrap_or(file);
        let owner = script(dir.path(), file, &body);
        // Long enough for Python to start on a loaded machine.
        let path = scenario(dir.path(), name, 6000, "");
        let _ = std::fs::remove_file(other);
        let maker = std::thread::spawn({
            let other = other.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::write(&other, [0u8; 32]).expect("write an unrelated semaphore file");
            }
        });
        let (record, events) = run(dir.path(), &path, &owner);
        maker.join().expect("the maker thread");
        assert_eq!(of_kind(&events, "ready").len(), 1, "{name}: the semaphore was made\n{events:#?}");
        assert_eq!(record["verdict"], verdict, "{name}\n{record:#}");
        let leaks = record["leaks"].as_array().expect("leaks");
        assert_eq!(leaks.len(), 1, "{name}: the one semaphore\n{record:#}");
        assert_eq!(leaks[0]["kind"], "semaphore", "{name}\n{record:#}");
        assert_eq!(leaks[0]["path"].as_str(), sem.to_str(), "{name}: by its name in /dev/shm");
        assert!(!sem.exists(), "{name}: removed");
        assert!(other.exists(), "{name}: someone else's semaphore is left alone");
    }
}

/// A file removed when the test ends, pass or fail.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A storm over per-task (one process per task), its tasks `spin_us` long,
/// the harness run as `prefix` (`taskset -c 0`: every process on one core):
/// the run's record and events.
fn storm_over_per_task(dir: &Path, spin_us: u64, count: u64, prefix: &[&str]) -> (Value, Vec<Value>) {
    let name = format!("storm-{spin_us}us");
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "description = \"{name}\"\nworkers = 2\nstyle = \"map\"\ndeadline_ms = 30000\n\n[[tasks]]\ncount = {count}\n\
         work = {{ spin_us = {spin_us} }}\n\n[storm]\nsignal = \"sigkill\"\nevery_ms = 50\n\n[expect]\nper-task = \"failed-loudly\"\n"
    );
    std::fs::write(&path, text).expect("write the scenario");
    let out = dir.join(format!("out-{name}"));
    let exe = env!("CARGO_BIN_EXE_poolchaos");
    let (program, args) = match prefix {
        [program, args @ ..] => (*program, [args, &[exe]].concat()),
        [] => (exe, Vec::new()),
    };
    let done = Command::new(program)
        .args(args)
        .args(["run", "--pools", "per-task", "--out"])
        .arg(&out)
        .arg(&path)
        .output()
        .expect("run poolchaos");
    assert!(done.status.code().is_some(), "poolchaos ended by a signal");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json")).expect("json");
    let record = report["runs"][0].clone();
    let events = std::fs::read_to_string(out.join(record["events"].as_str().expect("an event log")))
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    (record, events)
}

/// Per-task's verdict under a storm is the pool's, not the machine's: with
/// tasks far shorter than the harness's reaction (300 µs, every process on
/// one core) as with 5 ms ones, each strike lands on a process between its
/// task's `start` and `done` lines (it never writes `done` after), so the
/// struck tasks fail and the run fails loudly.
///
/// 2000 tasks, not fewer: with 600 of 300 µs on one core (the debug build,
/// about 0.7 s), a run sometimes ended before the storm had found a process
/// mid-task at all (no strike, `completed`: 3 of about 8 runs).
#[test]
fn a_storms_verdict_over_per_task_does_not_depend_on_task_speed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(u64, u64, &[&str]); 3] = [(300, 2000, &["taskset", "-c", "0"]), (300, 2000, &[]), (5000, 100, &[])];
    for (spin_us, count, prefix) in cases {
        let (record, events) = storm_over_per_task(dir.path(), spin_us, count, prefix);
        let what = format!("{spin_us} µs tasks, {prefix:?}");
        let strikes: Vec<usize> = (0..events.len()).filter(|&i| events[i]["event"] == "nemesis").collect();
        assert!(!strikes.is_empty(), "{what}: the storm struck\n{record:#}");
        for &at in &strikes {
            let pid = &events[at]["pid"];
            let on = |kind: &str, e: &Value| e["event"] == kind && &e["pid"] == pid;
            let start = events[..at].iter().rposition(|e| on("task-started", e));
            let start = start.unwrap_or_else(|| panic!("{what}: struck {pid} before its `start`\n{events:#?}"));
            let tag = &events[start]["tag"];
            let done = events[start..].iter().any(|e| on("task-done", e) && &e["tag"] == tag);
            assert!(!done, "{what}: {pid} struck after its `done` (or wrote one after the strike)\n{events:#?}");
        }
        assert_eq!(record["verdict"], "failed-loudly", "{what}\n{record:#}");
        assert_eq!(
            record["tasks"]["failed"].as_u64(),
            Some(strikes.len() as u64),
            "{what}: each strike fails its task\n{record:#}"
        );
    }
}
