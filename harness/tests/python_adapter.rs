//! The Python adapter's own tests (`targets/python/tests`, standard library
//! `unittest`), run with the project's Python, so that `cargo nextest run`
//! covers both sides of the protocol. `targets/python/setup.sh` first, or
//! the loky, pebble and billiard cases are skipped (and say so).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The suite takes about 25 s alone; a loaded machine gets four times that.
const DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn the_python_adapters_own_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut child = Command::new(harness::target::python(&root, None))
        .args(["-m", "unittest", "discover", "-s", "targets/python/tests"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .process_group(0)
        .spawn()
        .expect("start python");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            // The whole group: the suite's own runs are in groups of their own and clean up after themselves.
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::KILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(status.is_some(), "the Python tests ran past {DEADLINE:?}:\n{output}");
    assert!(status.is_some_and(|s| s.success()), "the Python tests failed:\n{output}");
}

/// The start methods each Python target takes are the same on both sides:
/// the harness's table (which variants `--start-method` makes) and the
/// adapter's classes (which it accepts).
#[test]
fn both_sides_agree_on_each_targets_start_methods() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(harness::target::python(&root, None))
        .args(["-m", "poolchaos_targets", "--methods"])
        .env("PYTHONPATH", root.join("targets/python"))
        .output()
        .expect("run the adapter");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    let rust: Vec<String> = harness::target::PYTHON
        .iter()
        .map(|(name, _, methods)| {
            std::iter::once(*name).chain(methods.iter().map(|m| m.as_str())).collect::<Vec<_>>().join(" ")
        })
        .collect();
    assert_eq!(python, rust);
}

/// Both sides of the protocol spell every name alike: `protocol.py`'s tables
/// against what the Rust side writes and reads (harness/src/protocol.rs).
#[test]
fn the_python_side_spells_every_name_as_the_rust_side_does() {
    use harness::protocol::{CallbackKind, ErrorKind, FAULT_KINDS, FAULT_POINTS, OWNER_EVENTS};
    use pools::{CallStyle, Workload};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let names = "STYLES WORKLOADS FAULT_KINDS FAULT_POINTS ERROR_KINDS EVENTS CALLBACKS";
    let script = format!(
        "import json; from poolchaos_targets import protocol as p; \
         print(json.dumps({{n: list(getattr(p, n)) for n in {:?}.split()}}))",
        names
    );
    let out = Command::new(harness::target::python(&root, None))
        .args(["-c", &script])
        .env("PYTHONPATH", root.join("targets/python"))
        .output()
        .expect("start python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).expect("the tables as JSON");
    // The wire name of a value: its JSON string, or the key of its one-key object.
    let wire = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(o) => o.keys().next().cloned(),
        _ => None,
    };
    let unit = |v: serde_json::Value| v.as_str().map(str::to_string);
    let sample = [
        Workload::Echo(vec![]),
        Workload::Spin { us: 0 },
        Workload::Sleep { ms: 0 },
        Workload::Alloc { mib: 0, hold: false },
        Workload::Large { bytes: 0 },
    ];
    let rust: [(&str, Vec<String>); 7] = [
        ("STYLES", CallStyle::ALL.iter().map(|s| s.name().to_string()).collect()),
        ("WORKLOADS", sample.iter().filter_map(|w| wire(serde_json::to_value(w).unwrap())).collect()),
        // `Exit(code)` is an object on the wire, which protocol.py checks apart.
        ("FAULT_KINDS", FAULT_KINDS.iter().filter_map(|(_, k)| unit(serde_json::to_value(k).unwrap())).collect()),
        ("FAULT_POINTS", FAULT_POINTS.iter().filter_map(|(_, p)| unit(serde_json::to_value(p).unwrap())).collect()),
        ("ERROR_KINDS", ErrorKind::ALL.iter().map(|k| k.name().to_string()).collect()),
        ("EVENTS", OWNER_EVENTS.iter().map(|e| e.to_string()).collect()),
        (
            "CALLBACKS",
            [CallbackKind::Result, CallbackKind::Error]
                .iter()
                .filter_map(|k| unit(serde_json::to_value(k).unwrap()))
                .collect(),
        ),
    ];
    for (name, mut ours) in rust {
        let mut theirs = python.get(name).cloned().unwrap_or_default();
        ours.sort();
        theirs.sort();
        assert_eq!(theirs, ours, "protocol.py's {name} against the Rust side");
    }
}

/// The knobs each Python target takes are those the harness lets a
/// scenario set for it (`protocol::KNOBS`, checked before anything runs).
#[test]
fn both_sides_agree_on_each_targets_knobs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = "import json; from poolchaos_targets.targets import TARGETS as T; \
                  print(json.dumps({n: sorted(c.knobs) for n, c in T.items()}))";
    let out = Command::new(harness::target::python(&root, None))
        .args(["-c", script])
        .env("PYTHONPATH", root.join("targets/python"))
        .output()
        .expect("start python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).expect("the knobs as JSON");
    for (name, _, _) in harness::target::PYTHON {
        let mut ours: Vec<String> =
            harness::protocol::KNOBS.iter().filter(|(t, ..)| *t == name).map(|(_, k, ..)| k.to_string()).collect();
        ours.sort();
        assert_eq!(python.get(name), Some(&ours), "{name}'s knobs");
    }
}
