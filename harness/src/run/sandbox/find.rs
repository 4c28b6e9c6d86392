//! Which cgroup the runs go below: the ways, in order, and the watchdog's
//! reason when none works. Probed once per session ([`probe`]).
//!
//! On cgroup v2 (the memory controller in the root's `cgroup.controllers`):
//!
//! 1. the cgroup `POOLCHAOS_CGROUP` names ([`CGROUP_ENV`]), if set;
//! 2. the harness's own (moving itself into a leaf of it, see [`cgroup_v2`]);
//! 3. under systemd (PID 1), a transient scope with `Delegate=yes` that
//!    systemd moves the harness into (`StartTransientUnit` on the system
//!    bus as root, the user's bus otherwise, through `busctl`): then as 2;
//! 4. as root, `/sys/fs/cgroup/poolchaos` ([`TOP_LEVEL`]), with `memory` and
//!    `pids` enabled on the way down. Every harness that needs it shares it;
//!    the session that ends last removes it (`rmdir` fails while another
//!    harness has runs in it), a harness that finds it gone makes it again,
//!    and a start that does not use it removes it if it is empty;
//! 5. the RSS watchdog, whose reason names each way tried and why it
//!    failed, then one command that gives the kernel's OOM kill.
//!
//! On v1 the same, where the harness's own memory cgroup cannot be written
//! (no systemd scope: systemd delegates no v1 controller safely). A
//! read-only `/sys/fs/cgroup` rules every way out at once.
//!
//! `POOLCHAOS_SKIP_OWN_CGROUP=1` ([`SKIP_OWN_ENV`]) passes over way 2 as if
//! it had failed: how the tests reach ways 3 to 5 on a host whose own cgroup
//! would do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cgroup_v1::{self, V1Host};
use super::cgroup_v2::{CGROUP_ENV, V2Host};
use super::procfs::{OwnCgroups, V2Place, own_cgroups};
use super::{Host, NO_CGROUP_ENV, POLL, Via};

/// The name of the harness's cgroup at the top of a hierarchy.
pub const TOP_LEVEL: &str = "poolchaos";
/// Set to `1` to pass over the harness's own cgroup (for tests).
pub const SKIP_OWN_ENV: &str = "POOLCHAOS_SKIP_OWN_CGROUP";
/// How long systemd may take to move the harness into its new scope.
const SCOPE_WAIT: Duration = Duration::from_secs(10);

/// What the host offers (see the module notes), and this process's v2 place.
pub(crate) fn probe() -> (Host, Option<V2Place>) {
    if env_set(NO_CGROUP_ENV) {
        return (Host::Watchdog(format!("asked for ({NO_CGROUP_ENV}=1)")), None);
    }
    let own = match own_cgroups() {
        Ok(own) => own,
        Err(e) => return (Host::Watchdog(format!("cannot read /proc/self/{{cgroup,mountinfo}}: {e}")), None),
    };
    let v2_memory = own.v2.as_ref().filter(|p| {
        // The unified mount of a hybrid host has no controllers: that is not a v2 host.
        fs::read_to_string(p.mount.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
    });
    let host = match v2_memory {
        Some(place) => find_v2(place),
        None if own.v1_mounts.contains_key("memory") => find_v1(&own),
        None => Host::Watchdog(match &own.v2 {
            Some(place) => format!("no memory controller in {}", place.mount.join("cgroup.controllers").display()),
            None => "no cgroup hierarchy with a memory controller is mounted".to_string(),
        }),
    };
    // The systemd scope moved this process: where it is now.
    let v2 = match &host {
        Host::V2(v2) if v2.via == Via::SystemdScope => own_cgroups().ok().and_then(|o| o.v2),
        _ => own.v2,
    };
    (host, v2)
}

/// The ways tried so far, each with why it failed.
#[derive(Default)]
struct Tried(Vec<String>);

impl Tried {
    fn failed(&mut self, way: impl std::fmt::Display, why: impl std::fmt::Display) {
        self.0.push(format!("{way}: {why}"));
    }

    /// The watchdog's reason: every way and why, then what to run instead.
    fn watchdog(self) -> Host {
        Host::Watchdog(format!("no cgroup can hold the runs ({}); {}", self.0.join("; "), advice()))
    }
}

fn find_v2(place: &V2Place) -> Host {
    if place.read_only {
        return Host::Watchdog(format!(
            "{} is read-only; for the kernel's OOM kill (as root): mount -o remount,rw {}",
            place.mount.display(),
            place.mount.display()
        ));
    }
    let mut tried = Tried::default();
    if let Some(dir) = std::env::var_os(CGROUP_ENV).filter(|v| !v.is_empty()).map(PathBuf::from) {
        match V2Host::named(&dir) {
            Ok(host) => return Host::V2(host),
            Err(why) => tried.failed(format_args!("{CGROUP_ENV}={}", dir.display()), why),
        }
    }
    if env_set(SKIP_OWN_ENV) {
        tried
            .failed(format_args!("own cgroup {}", place.dir.display()), format_args!("passed over ({SKIP_OWN_ENV}=1)"));
    } else {
        match V2Host::own(place) {
            Ok(host) => return Host::V2(host),
            Err(why) => tried.failed(format_args!("own cgroup {}", place.dir.display()), why),
        }
    }
    match systemd_scope() {
        Ok(scope) => match V2Host::own(&scope) {
            Ok(host) => return Host::V2(V2Host { via: Via::SystemdScope, ..host }),
            Err(why) => tried.failed(format_args!("systemd scope {}", scope.dir.display()), why),
        },
        Err(why) => tried.failed("systemd scope", why),
    }
    let top = place.mount.join(TOP_LEVEL);
    match V2Host::top_level(&place.mount) {
        Ok(host) => return Host::V2(host),
        Err(why) => tried.failed(format_args!("top-level cgroup {}", top.display()), why),
    }
    tried.watchdog()
}

fn find_v1(own: &OwnCgroups) -> Host {
    if let Some(mount) = own.v1_mounts.get("memory").filter(|m| read_only(m)) {
        return Host::Watchdog(format!("{} is read-only", mount.display()));
    }
    let mut tried = Tried::default();
    if std::env::var_os(CGROUP_ENV).is_some_and(|v| !v.is_empty()) {
        tried.failed(CGROUP_ENV, "names a cgroup2 directory; this host's memory controller is on v1");
    }
    let own_memory =
        own.v1.get("memory").map_or_else(|| "own cgroup".to_string(), |d| format!("own cgroup {}", d.display()));
    // Its own memory cgroup, but a freezer or pids hierarchy without its
    // cgroup in it: used if no top-level cgroup can be had.
    let mut partial = None;
    if env_set(SKIP_OWN_ENV) {
        tried.failed(own_memory, format_args!("passed over ({SKIP_OWN_ENV}=1)"));
    } else {
        match V1Host::own(&own.v1) {
            Ok(host) => {
                let missing: Vec<&str> = cgroup_v1::CONTROLLERS
                    .iter()
                    .map(|(c, _)| *c)
                    .filter(|c| own.v1_mounts.contains_key(*c) && !own.v1.contains_key(*c))
                    .collect();
                if missing.is_empty() {
                    return Host::V1(host);
                }
                tried.failed(own_memory, format_args!("no {} cgroup of its own", missing.join(", ")));
                partial = Some(host);
            }
            Err(why) => tried.failed(own_memory, why),
        }
    }
    tried.failed("systemd scope", "not tried on cgroup v1");
    match V1Host::top_level(&own.v1_mounts) {
        Ok(host) => return Host::V1(host),
        Err(why) => tried.failed(format_args!("top-level cgroup {TOP_LEVEL} in each hierarchy"), why),
    }
    match partial {
        Some(host) => Host::V1(host),
        None => tried.watchdog(),
    }
}

/// Asks systemd (PID 1) for a transient scope `poolchaos-<pid>.scope` with
/// `Delegate=yes` holding this process, and waits until this process is in
/// it. Returns where it is now.
fn systemd_scope() -> Result<V2Place, String> {
    let comm = fs::read_to_string("/proc/1/comm").map_err(|e| format!("cannot read /proc/1/comm: {e}"))?;
    if comm.trim() != "systemd" {
        return Err(format!("PID 1 is {}, not systemd", comm.trim()));
    }
    let pid = std::process::id().to_string();
    let unit = format!("poolchaos-{pid}.scope");
    let bus = if rustix::process::geteuid().is_root() { "--system" } else { "--user" };
    let out = Command::new("busctl")
        .args([bus, "--timeout=10", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1"])
        .args(["org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", &unit, "fail"])
        .args(["3", "PIDs", "au", "1", &pid, "Delegate", "b", "true", "CollectMode", "s", "inactive-or-failed", "0"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run busctl: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("busctl {bus} StartTransientUnit {unit}: {} ({})", stderr.trim(), out.status));
    }
    let until = Instant::now() + SCOPE_WAIT;
    loop {
        let place = own_cgroups().ok().and_then(|o| o.v2);
        if let Some(place) = place.filter(|p| p.dir.file_name().is_some_and(|n| n == unit.as_str())) {
            return Ok(place);
        }
        if Instant::now() >= until {
            return Err(format!("systemd made {unit} but did not move this process into it in {SCOPE_WAIT:?}"));
        }
        std::thread::sleep(POLL * 5);
    }
}

/// One command to paste for the kernel's OOM kill: this one as root (which
/// gets a top-level cgroup), where this process is not root.
fn advice() -> String {
    if rustix::process::geteuid().is_root() {
        return "the kernel's OOM kill needs a cgroup with the memory controller (see README, Where it runs)".into();
    }
    let exe = std::env::current_exe().map(|e| e.display().to_string()).unwrap_or_else(|_| "poolchaos".into());
    let args: Vec<String> = std::iter::once(exe).chain(std::env::args().skip(1)).collect();
    let line = shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "));
    format!("for the kernel's OOM kill, run: sudo {line}")
}

fn read_only(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}
