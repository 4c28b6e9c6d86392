//! What the harness's end-to-end tests share: a run context for the built
//! `poolchaos` binary, with its own session (subreaper, stale cleanup, the
//! host's sandbox), so tests in one process do not collide.

#![allow(dead_code)] // each test crate uses a part

use std::sync::Arc;

use harness::run::runner::RunContext;
use harness::run::sandbox::OomMechanism;
use harness::run::session::Session;

/// A fresh session and the context runs need.
pub fn ctx() -> RunContext {
    RunContext {
        exe: env!("CARGO_BIN_EXE_poolchaos").into(),
        root: concat!(env!("CARGO_MANIFEST_DIR"), "/..").into(),
        events_dir: None,
        session: Arc::new(Session::start().expect("session")),
    }
}

/// The mechanism this host should give: `POOLCHAOS_EXPECT_MECHANISM`, else
/// v1 where this process has a v1 memory cgroup, v2 where the cgroup2 mount
/// has the memory controller, the watchdog otherwise.
pub fn host_mechanism() -> OomMechanism {
    match std::env::var("POOLCHAOS_EXPECT_MECHANISM").ok().as_deref() {
        Some("cgroup-v1") => return OomMechanism::CgroupV1,
        Some("cgroup-v2") => return OomMechanism::CgroupV2,
        Some("rss-watchdog") => return OomMechanism::RssWatchdog,
        Some(other) => panic!("POOLCHAOS_EXPECT_MECHANISM={other:?}: cgroup-v1, cgroup-v2 or rss-watchdog"),
        None => {}
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if own.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory"))) {
        OomMechanism::CgroupV1
    } else if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| c.contains("memory")) {
        OomMechanism::CgroupV2
    } else {
        OomMechanism::RssWatchdog
    }
}
