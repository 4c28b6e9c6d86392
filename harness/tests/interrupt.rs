//! A harness interrupted as people interrupt it: SIGINT to its process group
//! (a terminal's Ctrl-C) in the middle of `poolchaos run`, SIGTERM to
//! `poolchaos campaign` (a CI job's timeout). It must exit 130 or 143 soon,
//! report what finished, marked interrupted, and leave nothing of its runs:
//! no process, cgroup, temp dir or named semaphore.
//!
//! These need what CI has: cgroups, and the project's `.venv` (py-ppe's
//! workers must be torn down too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use harness::judge::verdict::Verdict;
use harness::report::Report;
use harness::run::interrupt::StopSignal;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The harness in a process group of its own, as a shell starts a job.
/// Killed (the whole group) if the test fails before it exits.
struct Harness {
    child: Child,
    status: Option<ExitStatus>,
}

impl Harness {
    fn spawn(args: &[&str]) -> Harness {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_poolchaos"))
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn poolchaos");
        Harness { child, status: None }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the harness's process group.
    fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) with a negative pid: the group this test made.
        assert_eq!(unsafe { libc::kill(-(self.pid() as i32), signal) }, 0, "kill the group");
    }

    /// Waits at most `limit` for the exit.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: as above; the harness's own group.
            unsafe { libc::kill(-(self.pid() as i32), libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process as (pid, start time), so a reused pid is not taken for it.
fn identity(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Fields after the command: state is field 3, starttime field 22.
    let start = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((pid, start))
}

fn ppid_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((rest.next()?.parse().ok()?, state))
}

/// Every live descendant of `root` (not itself), as identities.
fn descendants(root: u32) -> BTreeSet<(u32, u64)> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, ppid_and_state(pid)?.0)))
        .collect();
    let mut found: BTreeSet<u32> = BTreeSet::from([root]);
    loop {
        let before = found.len();
        found.extend(all.iter().filter(|(_, ppid)| found.contains(ppid)).map(|(pid, _)| *pid).collect::<Vec<_>>());
        if found.len() == before {
            break;
        }
    }
    found.remove(&root);
    found.into_iter().filter_map(identity).collect()
}

/// Still alive (not a zombie: those re-parented to init are its to reap).
fn alive(&(pid, start): &(u32, u64)) -> bool {
    identity(pid) == Some((pid, start)) && ppid_and_state(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Cgroup directories under `/sys/fs/cgroup/*/` named `poolchaos-<pid>-…`, at any depth up to 6.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path.clone());
            }
            if depth > 0 {
                walk(&path, prefix, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &format!("poolchaos-{pid}-"), 6, &mut found);
    found
}

/// The harness's run temp dirs (`poolchaos-run-<pid>-…` in the temp dir).
fn temp_dirs_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("poolchaos-run-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The named semaphores (`/dev/shm/sem.*`) these processes map.
fn semaphores_of(procs: &BTreeSet<(u32, u64)>) -> BTreeSet<PathBuf> {
    procs
        .iter()
        .flat_map(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| line.split_whitespace().nth(5).filter(|p| p.starts_with("/dev/shm/sem.")).map(PathBuf::from))
        .collect()
}

/// Waits at most `limit` for `done`, while the harness runs.
fn wait_for(harness: &mut Harness, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        assert!(harness.child.try_wait().expect("try_wait").is_none(), "the harness exited before {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A quick scenario (finished before the signal) and a long one (cut short
/// by it), against our pools and py-ppe.
fn scenarios(dir: &Path) {
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write scenario");
    write(
        "a-quick.toml",
        r#"description = "four echo tasks"
workers = 2
deadline_ms = 20000
[[tasks]]
count = 4
work = { echo = 1 }
[expect]
supervised = "completed"
"#,
    );
    write(
        "b-long.toml",
        r#"description = "two tasks that sleep far longer than the test waits"
workers = 2
deadline_ms = 120000
[[tasks]]
count = 2
work = { sleep_ms = 60000 }
[expect]
supervised = "completed"
naive = "completed"
py-ppe = "completed"
"#,
    );
}

/// Ctrl-C in the middle of `poolchaos run`: exit 130 within 5 s; report.json
/// holds the run that finished and names the three it cut short; nothing of
/// them is left.
#[test]
fn sigint_mid_matrix_reports_what_finished_and_leaves_nothing() {
    assert!(root().join(".venv/bin/python").exists(), "needs the project's .venv (targets/python/setup.sh)");
    let dir = tempfile::tempdir().expect("tempdir");
    scenarios(dir.path());
    let out = dir.path().join("out");
    let mut harness = Harness::spawn(&["run", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap(), "-j", "4"]);
    let pid = harness.pid();
    // The quick run is over (its event log is written as it ends) and the
    // long ones are busy: py-ppe's workers have started.
    wait_for(&mut harness, "the quick run to finish", Duration::from_secs(60), || {
        out.join("runs/a-quick--supervised.events.jsonl").exists()
    });
    wait_for(&mut harness, "the long runs' workers", Duration::from_secs(60), || {
        let cmdlines: Vec<String> = descendants(pid)
            .iter()
            .map(|(p, _)| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect();
        // An owner per long run, and more than its own process for py-ppe (its workers).
        cmdlines.iter().filter(|c| c.contains("poolchaos-worker")).count() >= 4
            && cmdlines.iter().filter(|c| c.contains("python")).count() >= 3
    });
    let procs = descendants(pid);
    let semaphores = semaphores_of(&procs);
    assert!(!cgroups_of(pid).is_empty(), "the runs have cgroups (these tests need them)");
    assert!(!temp_dirs_of(pid).is_empty(), "the runs have temp dirs");

    let sent = Instant::now();
    harness.signal_group(libc::SIGINT);
    let status = harness.wait(Duration::from_secs(5));
    assert!(status.is_some(), "no exit within 5 s of SIGINT");
    eprintln!("exited {:?} after {:?}", status, sent.elapsed());
    assert_eq!(status.and_then(|s| s.code()), Some(130));

    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json written"))
            .expect("report.json parses");
    let finished: Vec<(&str, String, Verdict)> =
        report.runs.iter().map(|r| (r.scenario.as_str(), r.pool.name(), r.verdict)).collect();
    assert_eq!(finished, [("a-quick", "supervised".into(), Verdict::Completed)], "only the finished run is judged");
    let interrupted = report.interrupted.expect("marked interrupted");
    assert_eq!(interrupted.signal, StopSignal::Sigint);
    let mut cut = interrupted.runs.clone();
    cut.sort();
    assert_eq!(cut, ["b-long × naive", "b-long × py-ppe", "b-long × supervised"]);
    assert_eq!(interrupted.not_started, 0);

    // Nothing left: processes (given a moment to be reaped by init), cgroups, temp dirs, semaphores.
    let deadline = Instant::now() + Duration::from_secs(5);
    while procs.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<&(u32, u64)> = procs.iter().filter(|p| alive(p)).collect();
    assert!(survivors.is_empty(), "processes of the interrupted runs still alive: {survivors:?}");
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new(), "cgroups left");
    assert_eq!(temp_dirs_of(pid), Vec::<PathBuf>::new(), "temp dirs left");
    let left: Vec<&PathBuf> = semaphores.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "semaphores left: {left:?}");
}

/// SIGTERM to a campaign (a CI job's timeout): exit 143, report.json marked
/// interrupted with the runs that finished, no temp dir or cgroup left.
#[test]
fn sigterm_ends_a_campaign_with_its_report_and_no_temp_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("campaign");
    let failures = dir.path().join("failures");
    let mut harness = Harness::spawn(&[
        "campaign",
        "--pool",
        "supervised",
        "--runs",
        "100000",
        "-j",
        "3",
        "--no-shrink",
        "--out",
        out.to_str().unwrap(),
        "--failures",
        failures.to_str().unwrap(),
    ]);
    let pid = harness.pid();
    wait_for(&mut harness, "a few runs", Duration::from_secs(60), || {
        std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["runs"].as_array().is_some_and(|r| r.len() >= 3))
    });
    wait_for(&mut harness, "a live run", Duration::from_secs(30), || !temp_dirs_of(pid).is_empty());
    let procs = descendants(pid);

    harness.signal_group(libc::SIGTERM);
    let status = harness.wait(Duration::from_secs(10));
    assert!(status.is_some(), "no exit within 10 s of SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(143));

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("parses");
    assert_eq!(report["interrupted"]["signal"], "sigterm", "{report:#}");
    assert_eq!(report["partial"], true);
    assert!(report["runs"].as_array().is_some_and(|r| r.len() >= 3));
    let deadline = Instant::now() + Duration::from_secs(5);
    while procs.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<&(u32, u64)> = procs.iter().filter(|p| alive(p)).collect();
    assert!(survivors.is_empty(), "processes of the campaign still alive: {survivors:?}");
    assert_eq!(temp_dirs_of(pid), Vec::<PathBuf>::new(), "temp dirs left");
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new(), "cgroups left");
}
