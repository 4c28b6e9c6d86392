//! `poolchaos export --python`: the minimal script of a scenario, run with
//! the project's Python (`targets/python/setup.sh` first; a target whose
//! package is missing is skipped, saying so). Each script is run in its own
//! process group under a deadline, and the group is killed after it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a script that completes may take on a loaded machine.
const COMPLETES: Duration = Duration::from_secs(60);
/// How long a script that hangs is given before it is called hung: a pool
/// that is not hung ends such a script in a few seconds.
const HANGS: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How a script ended: its exit code, or `None` if it ran past the deadline.
struct Ran {
    code: Option<i32>,
    output: String,
}

/// Whether the project's Python has `module`; if not, the test says it is skipped.
fn has(module: &str) -> bool {
    let python = harness::target::python(&root(), None);
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: {} has no {module} (run targets/python/setup.sh)", python.display());
    }
    ok
}

/// `body` as a scenario expecting `verdict` of `target`, exported; the script.
fn export(dir: &Path, body: &str, target: &str, verdict: &str) -> String {
    let file = dir.join(format!("{target}.toml"));
    std::fs::write(&file, format!("{body}\n[expect]\n{target} = \"{verdict}\"\n")).expect("write the scenario");
    export_file(&file, &dir.join("repro.py"))
}

fn export_file(scenario: &Path, script: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
        .arg("export")
        .arg(scenario)
        .args(["--python", "-o"])
        .arg(script)
        .output()
        .expect("run poolchaos export");
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(script).expect("the script")
}

/// Runs `script` with the project's Python, killing its process group at `deadline`.
fn run(script: &Path, deadline: Duration) -> Ran {
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut child = Command::new(harness::target::python(&root(), None))
        .arg(script)
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .process_group(0)
        .spawn()
        .expect("start python");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for python") {
            break Some(status.code().unwrap_or(-1));
        }
        if started.elapsed() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The script's workers, whatever it left (a hung pool's): the whole group.
    let _ =
        rustix::process::kill_process_group(rustix::process::Pid::from_child(&child), rustix::process::Signal::KILL);
    let _ = child.wait();
    Ran { code, output: std::fs::read_to_string(log.path()).unwrap_or_default() }
}

const NO_FAULT: &str = "description = \"four echo and sleep tasks, no fault\"\nworkers = 2\nstyle = \"map\"\ndeadline_ms = 5000\n\
     [[tasks]]\ncount = 2\nwork = { sleep_ms = 20 }\n[[tasks]]\ncount = 2\nwork = { echo = 100 }\n";

/// The seed's program: the worker of a long task SIGKILLed 300 ms into it
/// (from outside in the scenario; the script's task sends it to itself).
fn seed_sigkill(style: &str) -> String {
    format!(
        "description = \"the seed\"\nworkers = 1\nstyle = \"{style}\"\ndeadline_ms = 5000\n\
         [[tasks]]\ncount = 1\nwork = {{ sleep_ms = 1000 }}\n\
         [[nemesis]]\nsignal = \"sigkill\"\ntarget = \"task\"\ntask = 0\nafter_ms = 300\n"
    )
}

#[test]
fn a_fault_free_scenario_exits_0_on_every_pool() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (target, module) in [
        ("py-ppe", "concurrent.futures"),
        ("py-pool-map", "multiprocessing"),
        ("py-pool-apply-async", "multiprocessing"),
        ("py-pebble", "pebble"),
        ("py-billiard", "billiard"),
        ("py-loky", "loky"),
    ] {
        if !has(module) {
            continue;
        }
        let script = export(dir.path(), NO_FAULT, target, "completed");
        assert!(!script.contains("poolchaos_targets"), "{target}: the adapter in the script:\n{script}");
        let ran = run(&dir.path().join("repro.py"), COMPLETES);
        assert_eq!(ran.code, Some(0), "{target}:\n{script}\n{}", ran.output);
        assert!(ran.output.contains("4 of 4 tasks got their result"), "{target}: {}", ran.output);
    }
}

#[test]
fn the_seeds_sigkill_mid_task_hangs_pool_map_and_breaks_ppe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = export(dir.path(), &seed_sigkill("map"), "py-pool-map", "hung");
    assert!(script.lines().count() <= 60, "{} lines:\n{script}", script.lines().count());
    assert!(script.contains("os.kill(os.getpid(), signal.SIGKILL)"), "{script}");
    let ran = run(&dir.path().join("repro.py"), HANGS);
    assert_eq!(ran.code, None, "py-pool-map did not hang:\n{}", ran.output);

    let script = export(dir.path(), &seed_sigkill("apply-async"), "py-ppe", "failed-loudly");
    assert!(script.lines().count() <= 60, "{} lines:\n{script}", script.lines().count());
    let ran = run(&dir.path().join("repro.py"), COMPLETES);
    assert_eq!(ran.code, Some(1), "py-ppe:\n{}", ran.output);
    assert!(ran.output.contains("task 0: BrokenProcessPool"), "{}", ran.output);
}

#[test]
fn pickling_faults_fire_where_placed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A task whose result raises while the worker pickles it: that task
    // gets an error, the others their results; the pool goes on.
    let body = "description = \"a result that cannot be pickled\"\nworkers = 2\nstyle = \"apply-async\"\ndeadline_ms = 5000\n\
                [[tasks]]\ncount = 3\nwork = { echo = 8 }\n\
                [[tasks]]\ncount = 1\nwork = { echo = 8 }\nfault = { kind = \"error\", at = \"encode-result\" }\n";
    let script = export(dir.path(), body, "py-pool-apply-async", "failed-loudly");
    assert!(script.lines().count() <= 60, "{} lines:\n{script}", script.lines().count());
    assert!(script.contains("def __reduce__"), "{script}");
    let ran = run(&dir.path().join("repro.py"), COMPLETES);
    assert_eq!(ran.code, Some(1), "{}", ran.output);
    assert!(ran.output.contains("3 of 4 tasks got their result"), "{}", ran.output);
    assert!(ran.output.contains("task 3: <MaybeEncodingError"), "{}", ran.output);
}

#[test]
fn the_pebble_finding_is_a_short_script_that_hangs() {
    if !has("pebble") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let script_path = dir.path().join("repro.py");
    let script = export_file(&root().join("harness/tests/data/pebble-torn-result.toml"), &script_path);
    assert!(script.lines().count() <= 60, "{} lines:\n{script}", script.lines().count());
    assert!(script.contains("pebble.ProcessPool(") && !script.contains("poolchaos_targets"), "{script}");
    let ran = run(&script_path, HANGS);
    // Task 1's worker dies half-way through writing its result: task 0's
    // result never arrives (pebble times it out) and the pool's join hangs.
    assert_eq!(ran.code, None, "pebble did not hang:\n{}", ran.output);
    assert!(ran.output.contains("task 1: ProcessExpired"), "{}", ran.output);
}
