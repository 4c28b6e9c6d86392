//! The harness end to end, as its users drive it: `poolchaos run` over the
//! scenarios in `scenarios/`, bad scenario files, and a harness killed halfway.
//!
//! These need what CI has: root, and cgroups (v1 `memory`/`freezer`/`pids`,
//! or v2 with `memory` and `pids`); they assert the mechanism the host
//! offers (see `common::host_mechanism`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::run::sandbox::OomMechanism;
use harness::scenario::plan::Plan;
use harness::target::Target;
use harness::{judge::oracle, scenario, suite};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn poolchaos() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poolchaos"));
    cmd.current_dir(root());
    cmd
}

/// The canonical outcome matrix of every scenario against every pool it
/// names: a change of any pool's behaviour shows here as a snapshot diff.
#[test]
fn the_outcome_matrix_of_the_scenarios_is_as_snapshotted() {
    let ctx = common::ctx();
    let scenarios = scenario::load_all(&[root().join("scenarios")]).expect("scenarios load");
    let selection = suite::Selection { patterns: vec!["*".into()], ..Default::default() };
    let report = suite::run(&scenarios, &selection, 1, &ctx, 4, 1, &|_| {}).expect("suite runs");
    let host = common::host_mechanism();
    assert_ne!(host, OomMechanism::RssWatchdog, "these need cgroups: a real kernel OOM kill");
    assert_eq!(report.oom_mechanism, host.name(), "a real kernel OOM kill, through the run's memory cgroup");
    for pool in ["naive", "per-task", "supervised"] {
        let oom = report.runs.iter().find(|r| r.scenario == "oom-big-batch" && r.pool.name() == pool).expect("oom run");
        assert!(oom.oom_kills >= 1, "{pool}: the OOM scenario's cgroup counted an oom_kill");
        assert_eq!(oom.mechanism.as_ref().map(|m| m.kind), Some(host));
    }
    insta::with_settings!({ snapshot_path => "../../reports/snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("scenarios-matrix", report.canonical());
    });
    let mismatches: Vec<String> = report
        .runs
        .iter()
        .filter(|r| !r.as_expected())
        .map(|r| format!("{} x {}: {} ({:?})", r.scenario, r.pool, r.verdict, r.diagnosis))
        .collect();
    assert!(mismatches.is_empty(), "not as expected: {mismatches:#?}");
}

/// `supervised` with a healthy task failed beside each faulted one, run
/// under `supervised`'s expectations (the scenario files written back with
/// the planted pool in its place): `poolchaos run` marks it `✗`, exits 1, and
/// its canonical lines differ from `supervised`'s in the snapshot.
#[test]
fn a_pool_that_fails_a_bystander_is_a_mismatch_and_a_snapshot_diff() {
    use pools::PoolKind;
    use pools::pool::PlantedBug;
    let supervised = harness::target::Target::Pool(PoolKind::Supervised);
    let planted = harness::target::Target::Pool(PoolKind::Planted(PlantedBug::FailBystander));
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["error-first"];
    for name in names {
        let mut s = scenario::load(&root().join(format!("scenarios/{name}.toml"))).expect("scenario");
        let expected = s.expect.iter().find(|(t, _)| *t == supervised).expect("supervised expected").1;
        s.expect = vec![(planted.clone(), expected)];
        std::fs::write(dir.path().join(format!("{name}.toml")), s.to_toml(&[])).expect("write");
    }
    let out = poolchaos().args(["run", "--format", "json"]).arg(dir.path()).output().expect("run poolchaos");
    assert_eq!(out.status.code(), Some(1), "a mismatch: {}", String::from_utf8_lossy(&out.stderr));
    let mut report: harness::report::Report = serde_json::from_slice(&out.stdout).expect("report json");
    for run in &mut report.runs {
        assert!(!run.as_expected(), "{} x {}: {} ({:?})", run.scenario, run.pool, run.verdict, run.diagnosis);
        assert!(run.findings.iter().any(|f| f.contains("no fault touched it")), "{:?}", run.findings);
        run.pool = supervised.clone();
    }
    let snapshot = std::fs::read_to_string(root().join("reports/snapshots/scenarios-matrix.snap")).expect("snapshot");
    for line in report.canonical().lines().skip(1) {
        let (key, _) = line.split_once(": ").expect("a canonical line");
        let ours = snapshot.lines().find(|l| l.starts_with(&format!("{key}: "))).expect("supervised's line");
        assert_ne!(line, ours, "the snapshot shows the bystander");
    }
}

#[test]
fn a_malformed_scenario_is_refused_with_file_line_and_field_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("workers = 2", "workers = \"two\"", ":2:11: workers: invalid type"),
        ("naive = \"hung\"", "fastest = \"hung\"", ":20:1: expect.fastest: unknown pool \"fastest\""),
        ("count = 1", "count = 1\nspeed = 3", ":12:1: tasks[0].speed: unknown field `speed`"),
        ("at = \"mid-task\"", "at = \"midway\"", ":17:34: tasks[1].fault.at: unknown point \"midway\""),
    ];
    let good = std::fs::read_to_string(root().join("scenarios/segfault.toml")).expect("read");
    let good = good.replace("count = 7", "count = 1");
    for (from, to, expected) in cases {
        assert_refused(&dir.path().join("bad.toml"), &good, from, to, expected);
    }
}

/// `good` with `from` replaced by `to`, written to `path`, is refused: exit
/// 2, `expected` after the path in the message, nothing run.
fn assert_refused(path: &Path, good: &str, from: &str, to: &str, expected: &str) {
    assert!(good.contains(from), "fixture has {from}");
    std::fs::write(path, good.replacen(from, to, 1)).expect("write");
    let out = poolchaos().arg("run").arg(path).output().expect("run poolchaos");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit 2 for {to}: {stderr}");
    assert!(stderr.contains(&format!("{}{expected}", path.display())), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran");
}

/// Input that names no scenario, or absurd numbers: exit 2, a message naming
/// the path (and line and field), nothing run, no abort.
#[test]
fn no_scenario_and_absurd_numbers_are_refused_with_exit_2_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    let looks_like_a_file = dir.path().join("x.toml");
    std::fs::create_dir(&empty).expect("mkdir");
    std::fs::create_dir(&looks_like_a_file).expect("mkdir");
    for path in [&empty, &looks_like_a_file] {
        let out = poolchaos().arg("run").arg(path).output().expect("run poolchaos");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{}: no scenario files", path.display())), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing ran");
    }
    let good = std::fs::read_to_string(root().join("scenarios/segfault.toml")).expect("read");
    let cases = [
        ("count = 7", "count = 100000000000", ":11:9: tasks[0].count: the scenario would run"),
        ("workers = 2", "workers = 100000", ":2:11: workers: must be 1 to 256"),
    ];
    for (from, to, expected) in cases {
        assert_refused(&dir.path().join("absurd.toml"), &good, from, to, expected);
    }
}

/// Without the project's `.venv` (here: a Python that sees no site
/// packages), the loky run is skipped: `poolchaos run` says how many runs
/// were skipped and exits 3, not 0; `--allow-skipped` accepts it.
#[test]
fn skipped_runs_are_counted_and_are_not_a_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(root().join("targets"), dir.path().join("targets")).expect("symlink");
    let bin = dir.path().join(".venv/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(bin.join("python"), "#!/bin/sh\nexec python3 -S \"$@\"\n").expect("write");
    std::fs::set_permissions(bin.join("python"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    // A long deadline: a skip is quick, but a loaded machine starts Python slowly.
    let scenario = dir.path().join("one-task.toml");
    std::fs::write(
        &scenario,
        "description = \"one task\"\nworkers = 1\ndeadline_ms = 120000\n\n[[tasks]]\nwork = { echo = 1 }\n\n\
         [expect]\npy-loky = \"completed\"\n",
    )
    .expect("write");
    let run = |extra: &[&str]| {
        poolchaos()
            .arg("run")
            .arg(&scenario)
            .args(extra)
            .env("POOLCHAOS_ROOT", dir.path())
            .output()
            .expect("run poolchaos")
    };
    let out = run(&[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 run: 0 as expected, 1 skipped (not a pass)"), "{stdout}");
    assert!(stderr.contains("1 run(s) skipped"), "{stderr}");
    assert_eq!(run(&["--allow-skipped"]).status.code(), Some(0));
}

/// Cgroups whose name starts with `prefix` where this process's runs go
/// (v1: below its memory, freezer and pids cgroups; v2: beside its leaf).
fn cgroups_named(parents: &[PathBuf], prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in parents {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(entry.path());
            }
        }
    }
    found
}

/// A harness SIGKILLed mid-run leaves its cgroups, and a naive worker busy
/// with a long task; the next run removes both.
#[test]
fn the_next_run_cleans_what_a_killed_harness_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = dir.path().join("long.toml");
    std::fs::write(
        &long,
        r#"description = "one long task"
workers = 1
deadline_ms = 60000
[[tasks]]
work = { sleep_ms = 30000 }
[expect]
naive = "completed"
"#,
    )
    .expect("write");
    let ctx = common::ctx();
    let probe = ctx.session.sandbox("probe", None).expect("a probe sandbox");
    let parents: Vec<PathBuf> = probe.cgroup_dirs().iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
    assert!(!parents.is_empty(), "these need cgroups ({})", probe.mechanism());
    probe.remove().expect("remove the probe");
    let mut harness =
        poolchaos().arg("run").arg(&long).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let prefix = format!("poolchaos-{}-", harness.id());
    // Wait until its run is inside its cgroup, with a worker busy.
    let deadline = Instant::now() + Duration::from_secs(20);
    let busy = loop {
        let procs: Vec<u32> = cgroups_named(&parents, &prefix)
            .iter()
            .filter(|p| p.join("memory.max").exists() || p.join("memory.limit_in_bytes").exists())
            .flat_map(|p| {
                std::fs::read_to_string(p.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        if procs.len() >= 2 {
            break procs;
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    harness.kill().expect("SIGKILL the harness");
    harness.wait().expect("reap it");
    let left_cgroups = cgroups_named(&parents, &prefix);
    let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists();
    // On a shared machine, another harness's start may clean them first
    // (their parent cgroup is everyone's); then this run shows less, but
    // the end state below must hold all the same.
    if left_cgroups.is_empty() {
        eprintln!("the killed harness's cgroups were removed by another harness first");
    } else {
        assert!(busy.iter().any(alive), "the busy naive worker outlived the harness");
    }
    // The next run, of anything, cleans up.
    let out = poolchaos().args(["run", "scenarios/task-error.toml", "--pools", "supervised"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cgroups_named(&parents, &prefix), Vec::<PathBuf>::new(), "stale cgroups removed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while busy.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Zombies re-parented to init are reaped by it; anything else alive is a leak.
    let survivors: Vec<&u32> = busy.iter().filter(|p| alive(p) && !is_zombie(**p)).collect();
    assert!(survivors.is_empty(), "processes of the killed run still alive: {survivors:?}");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

/// What our pools cannot place (`sys-exit`, Python's alone; a callback or
/// the pool's end in a call style that takes no callbacks or returns when
/// every task is over) is a run of its own verdict on each of the five
/// pools: `not-applicable`, naming the point or kind and why, with nothing
/// run; it meets an expectation of `not-applicable` and no other.
#[test]
fn what_our_pools_cannot_place_is_not_applicable_never_a_pass() {
    use harness::judge::verdict::Verdict;
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = ["naive", "seed-polling", "polling", "per-task", "supervised"];
    // (point, kind, style)
    let cases = [
        ("mid-task", "sys-exit", "apply-async"),
        ("callback", "sigkill", "map"),
        ("close", "sigkill", "map"),
        ("terminate", "sigkill", "apply"),
        ("join", "sigkill", "map"),
    ];
    for (i, (at, kind, style)) in cases.iter().enumerate() {
        let expect: String = pools.iter().map(|p| format!("{p} = \"not-applicable\"\n")).collect();
        let text = format!(
            "description = \"d\"\nworkers = 2\nstyle = \"{style}\"\ndeadline_ms = 5000\n\n[[tasks]]\n\
             work = {{ echo = 8 }}\nfault = {{ kind = \"{kind}\", at = \"{at}\" }}\n\n[expect]\n{expect}"
        );
        std::fs::write(dir.path().join(format!("p{i:02}.toml")), text).expect("write");
    }
    let scenarios = scenario::load_all(&[dir.path().to_owned()]).expect("scenarios load");
    let report = suite::run(&scenarios, &suite::Selection::default(), 1, &common::ctx(), 2, 1, &|_| {}).expect("runs");
    assert_eq!(report.runs.len(), cases.len() * pools.len());
    for run in &report.runs {
        let (at, kind, _) = cases[run.scenario[1..].parse::<usize>().expect("p<i>")];
        let named = if kind == "sys-exit" { kind } else { at };
        assert_eq!(run.verdict, Verdict::NotApplicable, "{} x {}: {:?}", run.scenario, run.pool, run.diagnosis);
        assert!(run.as_expected());
        assert_eq!(run.diagnosis.len(), 1, "{:?}", run.diagnosis);
        assert!(run.diagnosis[0].starts_with(&format!("not applicable: `{named}`: ")), "{:?}", run.diagnosis);
        assert!(run.worker_exits.is_empty() && run.leaks.is_empty(), "nothing ran: {run:?}");
        let mut other = run.clone();
        other.expected = Some(Verdict::Completed);
        assert!(!other.as_expected(), "not-applicable is never a pass");
    }
}

/// The points in the parent and the pool's lifecycle (`scenarios/stages`,
/// the files of `encode`, `decode-result`, `callback`, `close`, `terminate`,
/// `join`), through the real runner on the five pools: each run reads as
/// its scenario expects (a deadly kind in the parent kills the owner, which
/// no test process could survive in-process), with no finding and no leak,
/// and where the outcomes are decided, exactly those.
#[test]
fn the_parent_and_lifecycle_points_of_our_pools_run_as_designed() {
    let dir = root().join("scenarios/stages");
    let files: Vec<PathBuf> = [
        "callback-error-map",
        "callback-error",
        "callback-sigkill",
        "close-sigkill",
        "decode-result-abort",
        "decode-result-error",
        "encode-error",
        "encode-hang",
        "encode-sigkill",
        "join-sigkill",
        "terminate-sigkill",
    ]
    .iter()
    .map(|name| dir.join(format!("{name}.toml")))
    .collect();
    let scenarios = scenario::load_all(&files).expect("scenarios load");
    // The oracle (what a campaign holds our pools to) says what the files say.
    for scenario in &scenarios {
        for (target, verdict) in scenario.expect.iter().filter(|(t, _)| matches!(t, Target::Pool(_))) {
            let got = oracle::expect(target, &Plan::new(scenario, target.clone(), 1), &[]);
            let same = matches!(&got, oracle::Expectation::Verdict(v, _) if v == verdict);
            assert!(same, "{} x {target}: the oracle says {got}, the scenario {verdict}", scenario.name);
        }
    }
    let selection = suite::Selection {
        patterns: vec!["naive".into(), "seed-polling".into(), "polling".into(), "per-task".into(), "supervised".into()],
        ..Default::default()
    };
    let report = suite::run(&scenarios, &selection, 1, &common::ctx(), 2, 1, &|_| {}).expect("runs");
    assert_eq!(report.runs.len(), 55);
    for run in &report.runs {
        let what = format!("{} x {}: {:?} {:?}", run.scenario, run.pool, run.diagnosis, run.findings);
        assert!(run.as_expected(), "{what}: {} where {:?} was expected", run.verdict, run.expected);
        assert!(run.findings.is_empty() && run.leaks.is_empty(), "{what}");
        let t = &run.tasks;
        let names: Vec<(String, usize)> = run.errors.iter().map(|(k, &n)| (k.to_string(), n)).collect();
        let errors: Vec<(&str, usize)> = names.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let pool = run.pool.name();
        let ours = matches!(pool.as_str(), "per-task" | "supervised");
        match (run.scenario.as_str(), pool.as_str()) {
            ("encode-error", _) => assert_eq!(((t.ok, t.failed), errors), ((3, 1), vec![("task", 1)]), "{what}"),
            ("decode-result-error", _) if ours => {
                assert_eq!(((t.ok, t.failed), errors), ((3, 1), vec![("task", 1)]), "{what}")
            }
            ("callback-error", _) if ours => assert_eq!((t.ok, t.failed), (4, 0), "{what}"),
            ("close-sigkill" | "join-sigkill", "polling") => {
                assert_eq!(((t.ok, t.failed), errors), ((3, 1), vec![("pool-broken(sigkill)", 1)]), "{what}")
            }
            ("close-sigkill" | "join-sigkill", "per-task") => {
                assert_eq!(((t.ok, t.failed), errors), ((3, 1), vec![("worker-lost(sigkill)", 1)]), "{what}")
            }
            ("close-sigkill" | "join-sigkill", "supervised") => assert_eq!((t.ok, t.failed), (4, 0), "{what}"),
            // Whether the healthy tasks finished before the terminate is a race; the faulted one did not.
            ("terminate-sigkill", _) => {
                assert!(t.failed >= 1 && t.ok + t.failed == 4, "{what}");
                assert_eq!(errors, vec![("terminated", t.failed)], "{what}");
            }
            _ => {}
        }
    }
}

/// A worker the OOM killer ended is marked so: of two workers SIGKILLed one
/// after the other, the one whose allocation passed the run's memory limit
/// is `worker-lost(sigkill, oom)` (the cgroup's `oom_kill` count rose by the
/// time its exit was seen), the one that SIGKILLed itself is not. Under the
/// RSS watchdog (`POOLCHAOS_NO_CGROUP=1`) the mark says the kill was simulated.
#[test]
fn a_worker_the_oom_killer_ended_is_marked_oom_and_a_watchdog_kill_simulated() {
    let host = common::host_mechanism();
    assert_ne!(host, OomMechanism::RssWatchdog, "these need cgroups: a real kernel OOM kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("oom-then-kill.toml");
    std::fs::write(
        &file,
        r#"description = "one worker; an allocation past the limit, then a task that SIGKILLs itself"
workers = 1
style = "map"
deadline_ms = 30000
memory_limit_mib = 96

[[tasks]]
count = 1
work = { alloc_mib = 1024 }

[[tasks]]
count = 1
work = { echo = 4 }
fault = { kind = "sigkill", at = "mid-task" }

[expect]
per-task = "failed-loudly"
"#,
    )
    .expect("write");
    for (no_cgroup, mark) in [(false, "oom"), (true, "simulated-oom")] {
        let mut cmd = poolchaos();
        cmd.args(["run", "--format", "json"]).arg(&file);
        if no_cgroup {
            cmd.env(harness::run::sandbox::NO_CGROUP_ENV, "1");
        }
        let out = cmd.output().expect("run poolchaos");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: harness::report::Report = serde_json::from_slice(&out.stdout).expect("report json");
        let [run] = &report.runs[..] else { panic!("one run: {:?}", report.runs) };
        let want = std::collections::BTreeMap::from([
            (format!("worker-lost(sigkill, {mark})"), 1),
            ("worker-lost(sigkill)".to_string(), 1),
        ]);
        let got: std::collections::BTreeMap<String, usize> =
            run.errors.iter().map(|(k, &n)| (k.to_string(), n)).collect();
        assert_eq!(got, want, "{:?}", run.diagnosis);
        let mechanism = run.mechanism.as_ref().map(|m| m.kind);
        assert_eq!(mechanism, Some(if no_cgroup { OomMechanism::RssWatchdog } else { host }));
    }
}

/// An owner the kernel's OOM killer took, unplanned (it gathers 40 MiB of
/// results under a 16 MiB limit; its workers, at oom_score_adj 1000, go
/// first): `owner-oom`, never `lost`, with a diagnosis that says OOM and an
/// `oom-kill` event naming the owner, on the host's real memory cgroup.
#[test]
fn an_owner_the_oom_killer_took_is_owner_oom_not_lost() {
    let host = common::host_mechanism();
    assert_ne!(host, OomMechanism::RssWatchdog, "these need cgroups: a real kernel OOM kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = poolchaos()
        .args(["run", "--pools", "per-task,supervised", "--out"])
        .arg(dir.path())
        .arg(root().join("scenarios/owner-oom.toml"))
        .output()
        .expect("run poolchaos");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let report: harness::report::Report =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).expect("report.json")).expect("json");
    assert_eq!(report.runs.len(), 2);
    for run in &report.runs {
        assert_eq!(run.verdict, harness::judge::verdict::Verdict::OwnerOom, "{}: {:?}", run.pool, run.diagnosis);
        assert!(run.oom_kills >= 1, "{}", run.pool);
        assert!(
            run.diagnosis.iter().any(|d| d.contains("the owner") && d.contains("kernel's OOM killer")),
            "{}: {:?}",
            run.pool,
            run.diagnosis
        );
        assert!(!run.diagnosis.iter().any(|d| d.contains("ended early")), "{:?}", run.diagnosis);
        let events = std::fs::read_to_string(dir.path().join(run.events.as_deref().expect("events"))).expect("log");
        let events: Vec<serde_json::Value> = events.lines().map(|l| serde_json::from_str(l).expect("event")).collect();
        let owner = events.iter().find(|e| e["event"] == "ready").map(|e| e["pid"].clone()).expect("ready");
        let marked = events.iter().any(|e| e["event"] == "oom-kill" && e["pid"] == owner && e["simulated"] == false);
        assert!(marked, "{}: the owner's death is marked the kernel's OOM kill\n{events:#?}", run.pool);
    }
}

/// A hung run's diagnosis names the worker that died outside a task (here
/// while its next task, larger than a pipe, was still being written to it:
/// the `transport` point), with how it ended, beside the task that never started.
#[test]
fn a_worker_dead_before_its_start_line_is_named_in_the_diagnosis() {
    let out = poolchaos()
        .args(["run", "--pools", "naive", "--format", "json"])
        .arg(root().join("scenarios/stages/transport.toml"))
        .output()
        .expect("run poolchaos");
    let report: harness::report::Report = serde_json::from_slice(&out.stdout).expect("report json");
    let [run] = &report.runs[..] else { panic!("one run: {:?}", report.runs) };
    assert_eq!(run.verdict, harness::judge::verdict::Verdict::Hung, "{:?}", run.diagnosis);
    let died = run.worker_exits.iter().find(|e| e.signal == Some(9)).expect("a worker SIGKILLed");
    let named = format!("worker {} died by sigkill at ", died.pid);
    assert!(
        run.diagnosis.iter().any(|d| d.starts_with(&named) && d.contains("outside a task")),
        "{named}...: {:?}",
        run.diagnosis
    );
    assert!(run.diagnosis.iter().any(|d| d.starts_with("task 3 pending: never started; 1 worker(s) died")));
}
