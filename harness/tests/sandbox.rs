//! The sandbox against real processes and the real kernel, with the
//! mechanism this host offers: cgroup v1 (this project's machines are
//! hybrid, as root), cgroup v2 (the VM of `just test-cgroup-v2`, and CI
//! runners), and the fallback without cgroups. Each test asserts the
//! mechanism it expects (`POOLCHAOS_EXPECT_MECHANISM` says it where the
//! layout alone cannot: the VM); a test that needs cgroups fails, loudly,
//! on a host without them. None skips.
//!
//! Every test cleans up after itself even when it fails: sandboxes remove
//! their cgroups on drop, [`Proc`] kills its process group and reaps on
//! drop, and [`CgGuard`] empties and removes hand-made cgroups.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::run::sandbox::{self, OomMechanism, Sandbox, SandboxOptions};
use harness::run::session::Session;

mod common;
use common::host_mechanism;

/// Liveness only: generous, for loaded machines and the emulated VM.
const WAIT: Duration = Duration::from_secs(60);

/// `sh -c script` as its own process group leader, stdin and stdout piped.
/// The scripts start with `read x`, so they do nothing before the test has
/// entered them into a sandbox and said "go".
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(script: &str) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Proc::spawn_cmd(cmd)
    }

    fn spawn_cmd(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, stdin, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("write go");
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line from the child in time")
    }

    fn pid_line(&self) -> u32 {
        let line = self.line();
        line.trim().parse().unwrap_or_else(|_| panic!("a pid, got {line:?}"))
    }

    fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < until, "pid {} did not exit in time", self.pid());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Not reaped yet, so the group id is still this one's.
        if let Ok(None) = self.child.try_wait() {
            if let Some(pgid) = rustix::process::Pid::from_raw(self.pid() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Cgroups made by hand (what a crashed harness would leave); emptied and
/// removed on drop if still there.
struct CgGuard {
    dirs: Vec<PathBuf>,
}

impl CgGuard {
    fn make(parents: &[PathBuf], name: &str) -> CgGuard {
        let guard = CgGuard { dirs: parents.iter().map(|p| p.join(name)).collect() };
        for dir in &guard.dirs {
            std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            // As a harness does at once (kernfs dates a directory from its first lookup).
            let _ = std::fs::metadata(dir);
        }
        guard
    }

    fn enter(&self, pid: u32) {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("write cgroup.procs");
        }
    }
}

impl Drop for CgGuard {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
        }
        for dir in &self.dirs {
            let until = Instant::now() + Duration::from_secs(5);
            while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?.trim_start().chars().next()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn session() -> Session {
    Session::start().expect("session")
}

/// A sandbox with the host's cgroups; fails (never skips) where there are none.
fn cgroup_sandbox(session: &Session, run_id: &str, limit_mib: Option<u64>) -> Sandbox {
    let expected = host_mechanism();
    assert_ne!(expected, OomMechanism::RssWatchdog, "this test needs cgroups; this host offers none");
    let sb = session.sandbox(run_id, limit_mib).expect("create sandbox");
    assert_eq!(sb.mechanism().kind, expected, "the host's cgroups ({})", sb.mechanism());
    sb
}

/// The run's cgroup that has `file` (v1: the controller's; v2: the one).
fn dir_with(sb: &Sandbox, file: &str) -> PathBuf {
    sb.cgroup_dirs()
        .into_iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {:?}", sb.cgroup_dirs()))
}

/// Where a session's runs' cgroups go: the parents of a probe's.
fn run_parents(session: &Session) -> Vec<PathBuf> {
    let probe = cgroup_sandbox(session, "t-probe", None);
    let parents = probe.cgroup_dirs().iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
    probe.remove().expect("remove probe");
    parents
}

#[test]
fn the_session_uses_the_mechanism_the_host_offers() {
    let session = session();
    let mechanism = session.mechanism();
    eprintln!("mechanism: {mechanism}");
    assert_eq!(mechanism.kind, host_mechanism(), "{mechanism}");
    assert_eq!(mechanism.reason.is_some(), mechanism.simulated_oom(), "a reason exactly for the watchdog: {mechanism}");
    assert_eq!(mechanism.place.is_some(), !mechanism.simulated_oom(), "a place exactly for cgroups: {mechanism}");
    let sb = session.sandbox("t-host", Some(64)).expect("sandbox");
    assert_eq!(sb.mechanism(), &mechanism);
    sb.remove().expect("remove");
}

#[test]
fn two_sessions_in_one_process_do_not_collide() {
    let (a, b) = (session(), session());
    let sa = a.sandbox("c0", Some(64)).expect("a's c0");
    let sb = b.sandbox("c0", Some(64)).expect("b's c0, beside a's");
    assert_ne!(sa.name(), sb.name());
    assert!(a.sandbox("c0", None).is_err(), "one run id once at a time per session");
    let mut owner_a = Proc::spawn("read x; exit 4");
    let mut owner_b = Proc::spawn("read x; exit 5");
    sa.enter(owner_a.pid()).expect("enter a");
    sb.enter(owner_b.pid()).expect("enter b");
    owner_a.go();
    owner_b.go();
    wait_until("both owners exit", || state(owner_a.pid()) == Some('Z') && state(owner_b.pid()) == Some('Z'));
    // Neither session reaps the other's owner (nor its own: the runner does).
    assert!(a.reap_orphans().is_empty() && b.reap_orphans().is_empty());
    assert_eq!(owner_a.wait().code(), Some(4));
    assert_eq!(owner_b.wait().code(), Some(5));
    sa.remove().expect("remove a");
    sb.remove().expect("remove b");
}

#[test]
fn cgroup_sandbox_holds_kills_and_removes_a_run() {
    let session = session();
    let sb = cgroup_sandbox(&session, "t-basic", Some(128));
    let dirs = sb.cgroup_dirs();
    let v2 = sb.mechanism().kind == OomMechanism::CgroupV2;
    assert_eq!(dirs.len(), if v2 { 1 } else { 3 }, "v1: memory, freezer, pids; v2: one: {dirs:?}");
    for d in &dirs {
        assert!(d.is_dir(), "{}", d.display());
        assert_eq!(d.file_name().and_then(|n| n.to_str()), Some(sb.name()));
    }
    let read = |file: &str| std::fs::read_to_string(dir_with(&sb, file).join(file)).expect(file).trim().to_string();
    let (limit, pids) = if v2 { ("memory.max", "pids.max") } else { ("memory.limit_in_bytes", "pids.max") };
    assert_eq!(read(limit), (128u64 << 20).to_string());
    assert_eq!(read(pids), sandbox::RUN_PIDS_MAX.to_string());
    if v2 {
        assert_eq!(read("memory.swap.max"), "0", "the limit means an OOM kill, not swapping");
        assert!(dirs[0].join("cgroup.kill").exists(), "torn down by cgroup.kill");
        assert!(read("cgroup.events").contains("populated 0"));
    }

    // The owner forks after entering: a sleeping child and a stopped one.
    let mut owner = Proc::spawn("read x; sleep 1000 & echo $!; sleep 1000 & kill -STOP $!; echo $!; wait");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    let (sleeper, stopped) = (owner.pid_line(), owner.pid_line());
    wait_until("the run has three processes", || {
        sb.processes() == {
            let mut v = vec![owner.pid(), sleeper, stopped];
            v.sort();
            v
        }
    });
    wait_until("the stopped child is stopped", || state(stopped) == Some('T'));
    if v2 {
        assert!(read("cgroup.events").contains("populated 1"));
    }

    let killed = sb.kill_all().expect("kill_all");
    for pid in [owner.pid(), sleeper, stopped] {
        assert!(killed.contains(&pid), "{pid} not in {killed:?}");
    }
    assert!(sb.processes().is_empty());
    assert_eq!(owner.wait().signal(), Some(9));
    wait_until("the grandchildren are gone", || !alive(sleeper) && !alive(stopped));

    if v2 {
        assert!(read("cgroup.events").contains("populated 0"), "the leak check's view: empty");
    }
    sb.remove().expect("remove");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn zombies_are_not_in_cgroup_procs_but_count_as_pids() {
    let session = session();
    let sb = cgroup_sandbox(&session, "t-zombie", None);
    // The owner forks a child that exits at once and is never reaped.
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import os, sys, time\nsys.stdin.readline()\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nprint(pid, flush=True)\ntime.sleep(1000)",
    ]);
    let mut owner = Proc::spawn_cmd(cmd);
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    let zombie = owner.pid_line();
    wait_until("the child is a zombie", || state(zombie) == Some('Z'));
    assert_eq!(sb.processes(), vec![owner.pid()], "the zombie is not listed");
    let current = std::fs::read_to_string(dir_with(&sb, "pids.current").join("pids.current")).expect("pids.current");
    assert_eq!(current.trim(), "2", "the pids controller still counts the zombie");

    let killed = sb.kill_all().expect("kill_all");
    assert_eq!(killed, vec![owner.pid()]);
    assert_eq!(owner.wait().signal(), Some(9));
    let dirs = sb.cgroup_dirs();
    sb.remove().expect("remove");
    assert!(dirs.iter().all(|d| !d.exists()));
}

#[test]
fn real_oom_kill_is_a_sigkill_and_is_counted() {
    let session = session();
    let sb = cgroup_sandbox(&session, "t-oom", Some(64));
    assert_eq!(sb.oom_kills(), 0);
    let mut owner = Proc::spawn("read x; exec python3 -c \"b = b'x' * (256 << 20)\"");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    let status = owner.wait();
    assert_eq!(status.signal(), Some(9), "killed by the kernel's OOM killer: {status:?}");
    assert!(sb.oom_kills() >= 1, "oom_kill = {}", sb.oom_kills());
    sb.remove().expect("remove");
}

#[test]
fn real_oom_kill_hits_the_allocator_not_its_parent() {
    let session = session();
    let sb = cgroup_sandbox(&session, "t-oom-parent", Some(64));
    let mut owner = Proc::spawn("read x; python3 -c \"b = b'x' * (256 << 20)\"; echo \"rc=$?\"; exec sleep 1000");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    assert_eq!(owner.line(), "rc=137", "the worker died by SIGKILL");
    assert!(sb.oom_kills() >= 1);
    assert!(owner.running(), "the owner survives the OOM");
    assert_eq!(sb.processes(), vec![owner.pid()]);
    sb.remove().expect("remove");
    assert_eq!(owner.wait().signal(), Some(9));
}

#[test]
fn kill_all_takes_a_forking_run_whole() {
    let session = session();
    let sb = cgroup_sandbox(&session, "t-forks", None);
    // A safety net for the shared machine: the storm is capped, and keeps
    // trying to fork while it is being killed.
    sb.limit_pids(1000).expect("pids.max");
    let mut owner = Proc::spawn("read x; while :; do sleep 30 & (sleep 30 & sleep 30 & wait) & done");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    wait_until("the storm has 100 processes", || sb.processes().len() >= 100);

    let started = Instant::now();
    let killed = sb.kill_all().expect("kill_all");
    let took = started.elapsed();
    assert!(killed.len() >= 100, "killed {}", killed.len());
    assert!(killed.contains(&owner.pid()));
    assert!(sb.processes().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert!(sb.processes().is_empty(), "something forked its way out: {:?}", sb.processes());
    assert_eq!(owner.wait().signal(), Some(9));
    wait_until("every killed process is gone", || killed.iter().all(|&p| !alive(p)));
    eprintln!("killed {} processes in {took:?}", killed.len());
    sb.remove().expect("remove");
}

#[test]
fn clean_stale_removes_what_a_dead_harness_left_and_only_that() {
    let session = session();
    let parents = run_parents(&session);

    // A process stands for the harness that made the stale cgroup: alive
    // while the cgroup is filled (so no other session's start takes it
    // early), then gone.
    let maker = Proc::spawn("exec sleep 1000");
    let stale = CgGuard::make(&parents, &format!("poolchaos-{}-t-stale", maker.pid()));
    let kept = CgGuard::make(&parents, &format!("poolchaos-{}-t-stale-alive", std::process::id()));
    let mut stale_inmate = Proc::spawn("exec sleep 1000");
    stale.enter(stale_inmate.pid());
    let mut kept_inmate = Proc::spawn("exec sleep 1000");
    kept.enter(kept_inmate.pid());
    drop(maker);

    let removed = session.clean_stale().cgroups;
    for d in &stale.dirs {
        assert!(!d.exists(), "{} is left", d.display());
        // Another harness on this machine may have cleaned it first.
        if !removed.contains(d) {
            eprintln!("{} was removed by someone else", d.display());
        }
    }
    assert_eq!(stale_inmate.wait().signal(), Some(9), "the stale run's process is killed");
    for d in &kept.dirs {
        assert!(d.is_dir(), "{} of a live harness was removed", d.display());
        assert!(!removed.contains(d));
    }
    assert!(kept_inmate.running(), "a live harness's process was killed");
}

#[test]
fn clean_stale_treats_a_recycled_pid_as_dead() {
    let session = session();
    let parent = run_parents(&session).pop().expect("a parent");

    // Dated before the process whose pid it carries started: that process
    // cannot be the harness that made it. (kernfs takes a set mtime; v2
    // refuses renames, so the date is set rather than the name changed.)
    let mut late = Proc::spawn("exec sleep 1000");
    let old = CgGuard::make(std::slice::from_ref(&parent), &format!("poolchaos-{}-t-recycled", late.pid()));
    let dir = &old.dirs[0];
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(dir).and_then(|d| d.set_modified(an_hour_ago)).expect("date the cgroup an hour back");

    let removed = session.clean_stale().cgroups;
    assert!(!dir.exists(), "the cgroup of a recycled pid is stale");
    if !removed.contains(dir) {
        eprintln!("{} was removed by someone else", dir.display());
    }
    assert!(late.running(), "the process with the recycled pid is not touched");
}

#[test]
fn fallback_finds_the_run_by_process_group_and_kills_it() {
    let session = session();
    let sb = watchdog_sandbox(&session, "t-fallback", None);
    assert!(sb.cgroup_dirs().is_empty());
    assert!(sb.mechanism().reason.is_some());

    // Not a group leader: refused.
    let mut follower = Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn().expect("spawn");
    assert!(sb.enter(follower.id()).is_err());
    let _ = follower.kill();
    let _ = follower.wait();

    let mut bystander = Proc::spawn("exec sleep 1000");
    let mut owner = Proc::spawn("read x; sleep 1000 & echo $!; sh -c 'sleep 1000 & wait' & wait");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    let sleeper = owner.pid_line();
    wait_until("the run has four processes", || sb.processes().len() == 4);
    let procs = sb.processes();
    assert!(procs.contains(&owner.pid()) && procs.contains(&sleeper));
    assert!(!procs.contains(&bystander.pid()));

    let killed = sb.kill_all().expect("kill_all");
    assert_eq!(killed, procs);
    assert!(sb.processes().is_empty());
    assert_eq!(owner.wait().signal(), Some(9));
    assert!(bystander.running(), "a process of another group was killed");
    assert_eq!(sb.oom_kills(), 0);
    sb.remove().expect("remove");
}

#[test]
fn watchdog_kills_a_process_over_its_rss_limit() {
    let session = session();
    let sb = watchdog_sandbox(&session, "t-watchdog", Some(64));
    assert!(sb.mechanism().simulated_oom());
    let mut owner = Proc::spawn(
        "read x; python3 -c \"import time; b = b'x' * (256 << 20); time.sleep(30)\"; echo \"rc=$?\"; exec sleep 1000",
    );
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    assert_eq!(owner.line(), "rc=137", "the allocator died by SIGKILL");
    assert_eq!(sb.oom_kills(), 1);
    assert!(owner.running(), "the owner, under the limit, is left alone");
    sb.remove().expect("remove");
    assert_eq!(owner.wait().signal(), Some(9));
}

fn watchdog_sandbox(session: &Session, run_id: &str, limit_mib: Option<u64>) -> Sandbox {
    let options = SandboxOptions { memory_limit_mib: limit_mib, mechanism: Some(OomMechanism::RssWatchdog) };
    let sb = session.sandbox_with(run_id, &options).expect("create");
    assert_eq!(sb.mechanism().kind, OomMechanism::RssWatchdog);
    sb
}

/// Run by [`no_cgroup_env_forces_the_fallback`] in a child process, where
/// the environment is set before any thread starts.
#[test]
fn no_cgroup_env_child() {
    if std::env::var_os("POOLCHAOS_SANDBOX_TEST_CHILD").is_none() {
        return;
    }
    let sb = session().sandbox("t-env", Some(64)).expect("create");
    println!("mechanism={}", sb.mechanism());
}

#[test]
fn no_cgroup_env_forces_the_fallback() {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--exact", "no_cgroup_env_child", "--nocapture", "--test-threads=1"])
        .env("POOLCHAOS_SANDBOX_TEST_CHILD", "1")
        .env(sandbox::NO_CGROUP_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("mechanism=rss-watchdog: asked for (POOLCHAOS_NO_CGROUP=1)"), "{stdout}");
}

/// v2's `cgroup.kill` takes a forking run whole: on a v2 host, the runs'
/// own cgroups; on a hybrid host (v1), a cgroup on the unified mount, which
/// has no controllers but has `cgroup.kill` and `cgroup.procs`.
#[test]
fn v2_cgroup_kill_takes_a_forking_run_whole() {
    let session = session();
    let sb = match host_mechanism() {
        OomMechanism::CgroupV2 => cgroup_sandbox(&session, "t-v2", None),
        OomMechanism::CgroupV1 => {
            let options = SandboxOptions { memory_limit_mib: None, mechanism: Some(OomMechanism::CgroupV2) };
            let sb = session.sandbox_with("t-v2", &options).expect("a v2 cgroup on the unified mount");
            // With a limit but no memory controller: refused, not silently unlimited.
            let limited = SandboxOptions { memory_limit_mib: Some(64), mechanism: Some(OomMechanism::CgroupV2) };
            assert!(session.sandbox_with("t-v2-limited", &limited).is_err());
            sb
        }
        OomMechanism::RssWatchdog => panic!("this test needs cgroup v2; this host offers no cgroups"),
    };
    assert_eq!(sb.mechanism().kind, OomMechanism::CgroupV2);
    let dirs = sb.cgroup_dirs();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].join("cgroup.kill").exists());

    let mut owner = Proc::spawn("read x; while :; do sleep 30 & done");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    wait_until("the v2 run has 20 processes", || sb.processes().len() >= 20);
    let killed = sb.kill_all().expect("kill_all");
    assert!(killed.contains(&owner.pid()));
    assert!(sb.processes().is_empty());
    assert_eq!(owner.wait().signal(), Some(9));
    sb.remove().expect("remove");
    assert!(!dirs[0].exists());
}

#[test]
fn reap_orphans_reaps_a_runs_orphans_but_no_one_elses_children() {
    let session = session();
    // A run's owner leaves an orphan (in its process group) behind: it comes
    // back to this process, a subreaper.
    let sb = session.sandbox("t-reap", None).expect("create");
    let mut owner = Proc::spawn("read x; (sleep 0.2; exit 7) & echo $!; exit 3");
    sb.enter(owner.pid()).expect("enter");
    // A child of this process outside any run, which someone waits for by pid.
    let mut waited = Command::new("true").spawn().expect("spawn");
    owner.go();
    let orphan = owner.pid_line();

    wait_until("all three are zombies", || [orphan, waited.id(), owner.pid()].iter().all(|&p| state(p) == Some('Z')));
    let reaped = session.reap_orphans();
    let orphan_status = reaped.iter().find(|(p, _)| *p == orphan).map(|(_, s)| *s);
    assert_eq!(orphan_status.and_then(|s| s.code()), Some(7), "reaped: {reaped:?}");
    assert!(reaped.iter().all(|(p, _)| *p != waited.id() && *p != owner.pid()), "{reaped:?}");
    assert!(waited.wait().expect("the other child is still ours to wait for").success());
    assert_eq!(owner.wait().code(), Some(3));
    sb.remove().expect("remove");
}

#[test]
fn a_run_that_panics_leaves_nothing() {
    let (tx, rx) = mpsc::channel();
    let session = std::sync::Arc::new(session());
    let theirs = std::sync::Arc::clone(&session);
    let runner = std::thread::spawn(move || {
        let sb = cgroup_sandbox(&theirs, "t-panic", Some(64));
        // A process that is not the test's Child: only the sandbox can clean it.
        let out = Command::new("sh")
            .args(["-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"])
            .stdout(Stdio::piped())
            .output()
            .expect("sh");
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("pid");
        sb.enter(pid).expect("enter");
        tx.send((pid, sb.cgroup_dirs())).expect("send");
        panic!("the runner panics with the run alive");
    });
    assert!(runner.join().is_err());
    let (pid, dirs) = rx.recv().expect("what the runner made");
    wait_until("the orphaned process is gone", || !alive(pid));
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// Runs the test `name` of this binary in a child process with `envs`
/// (set before any thread starts), as `nobody` where `as_nobody` and this
/// process is root: from a copy of this binary in a fresh 0755 directory,
/// which that user can reach wherever the checkout lives. Returns its
/// stdout; fails the test if the child fails.
fn run_child(name: &str, envs: &[(&str, &str)], as_nobody: bool) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = if as_nobody && rustix::process::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        let copy = dir.path().join("sandbox-test");
        std::fs::copy(&exe, &copy).expect("copy the test binary");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(copy);
        cmd
    } else {
        Command::new(exe)
    };
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("POOLCHAOS_SANDBOX_TEST_CHILD", "1")
        .env("TMPDIR", "/tmp")
        .env("HOME", "/tmp")
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn in_child() -> bool {
    std::env::var_os("POOLCHAOS_SANDBOX_TEST_CHILD").is_some()
}

/// Run by [`top_level_cgroup_where_the_own_one_cannot_hold_runs`], with the
/// harness's own cgroup passed over (as a controller-less or shared one
/// would be): as root, runs go to `<mount>/poolchaos`, the kernel's OOM
/// kill is counted there, a dead harness's run left there is removed by the
/// next start, and the top-level cgroup goes when the session ends.
#[test]
fn top_level_child() {
    if !in_child() {
        return;
    }
    let session = session();
    let mechanism = session.mechanism();
    println!("mechanism={mechanism}");
    assert_eq!(mechanism.kind, host_mechanism(), "{mechanism}");
    let place = mechanism.place.clone().expect("a place");
    assert_eq!(place.via, sandbox::Via::TopLevel, "{mechanism}");
    // Not yet `is_dir`: a harness starting beside this one (other tests) removes an empty
    // top-level cgroup, and a session makes it again for its next sandbox.
    assert!(place.cgroup.ends_with(sandbox::TOP_LEVEL), "{mechanism}");
    assert!(mechanism.to_string().contains(&format!("(top-level cgroup {})", place.cgroup.display())));

    let sb = session.sandbox("t-top", Some(64)).expect("sandbox");
    assert_eq!(sb.mechanism(), &mechanism);
    let tops: Vec<PathBuf> = sb.cgroup_dirs().iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
    assert!(tops.iter().all(|t| t.ends_with(sandbox::TOP_LEVEL) && t.is_dir()), "{tops:?}");
    let mut owner = Proc::spawn("read x; python3 -c \"b = b'x' * (256 << 20)\"; echo \"rc=$?\"; exec sleep 1000");
    sb.enter(owner.pid()).expect("enter");
    owner.go();
    assert_eq!(owner.line(), "rc=137", "the kernel's OOM kill, in the top-level cgroup");
    assert!(sb.oom_kills() >= 1);
    // What a dead harness left in the top-level cgroup (made while the run's cgroup keeps the
    // top-level from being removed as empty): the next start removes it.
    let maker = Proc::spawn("exec sleep 1000");
    let stale = CgGuard::make(&tops, &format!("poolchaos-{}-t-top-stale", maker.pid()));
    drop(maker);
    sb.remove().expect("remove");
    assert_eq!(owner.wait().signal(), Some(9));
    let again = Session::start().expect("the next start");
    assert_eq!(again.mechanism(), mechanism, "the next start reuses the top-level cgroup");
    assert!(stale.dirs.iter().all(|d| !d.exists()), "{:?} left", stale.dirs);
    drop(again);
    drop(session);
    for top in &tops {
        assert!(!top.exists(), "{} left after the sessions ended", top.display());
    }
    println!("top-level ok: {tops:?}");
}

#[test]
fn top_level_cgroup_where_the_own_one_cannot_hold_runs() {
    let out = run_child("top_level_child", &[(sandbox::SKIP_OWN_ENV, "1")], false);
    assert!(out.contains("top-level ok"), "{out}");
}

/// Run by [`without_root_or_delegation_the_watchdog_says_why_and_what_to_run`].
#[test]
fn watchdog_reasons_child() {
    if in_child() {
        println!("mechanism={}", session().mechanism());
    }
}

/// Not root, no delegation, no systemd scope: the watchdog, whose reason
/// names every way tried and why it failed, then one command to paste.
#[test]
fn without_root_or_delegation_the_watchdog_says_why_and_what_to_run() {
    let out = run_child("watchdog_reasons_child", &[], true);
    let line = out.lines().find_map(|l| Some(l.split_once("mechanism=")?.1)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("rss-watchdog: no cgroup can hold the runs (own cgroup "), "{line}");
    for way in ["own cgroup", "systemd scope: ", "top-level cgroup ", ": not root)"] {
        assert!(line.contains(way), "{way:?} not in {line}");
    }
    let advice = line.split_once("; for the kernel's OOM kill, run: ").map(|(_, a)| a).unwrap_or_default();
    assert!(advice.starts_with("sudo /") && advice.contains(" --exact watchdog_reasons_child"), "{line}");
}
