//! What the harness's end-to-end tests share: a run context for the built
//! `poolchaos` binary, in a test process that reaps the runs' orphans.

use harness::runner::RunContext;

/// Makes this test process a child subreaper (orphaned workers come back to
/// it to be reaped) and returns the context runs need.
pub fn ctx() -> RunContext {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");
    RunContext {
        exe: env!("CARGO_BIN_EXE_poolchaos").into(),
        root: concat!(env!("CARGO_MANIFEST_DIR"), "/..").into(),
        events_dir: None,
    }
}
