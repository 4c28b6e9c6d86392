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
