//! The subcommands that read a scenario file and run nothing: `list`,
//! `explain` (or a run's timeline), `export` (a standalone Python script)
//! and `owner-plan`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use harness::scenario::{self, plan};
use harness::target::Target;

use super::bad_input;

pub fn list(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let scenarios = match scenario::load_all(paths) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(e)),
    };
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &scenarios {
        let pools: Vec<String> = s.expect.iter().map(|(p, v)| format!("{p}={v}")).collect();
        println!("{:<width$}  {}\n{:<width$}  [{}]", s.name, s.description, "", pools.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn explain(path: Option<&Path>, seed: u64, timeline: Option<&Path>) -> anyhow::Result<ExitCode> {
    let s = match path.map(scenario::load).transpose() {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(e)),
    };
    match (timeline, s) {
        (Some(events), s) => {
            let svg = harness::report::timeline::write_beside(events, s.as_ref(), seed)?;
            println!("wrote {svg}");
        }
        (None, Some(s)) => print!("{}", plan::explain(&s, seed)),
        (None, None) => return Ok(bad_input("explain: name a scenario, or a run's event log with --timeline")),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(path: &Path, bundled: bool, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let s = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(e)),
    };
    let write = if bundled { harness::report::export::bundled::script } else { harness::report::export::python_script };
    let script = match write(&s, &path.display().to_string()) {
        Ok(script) => script,
        Err(e) => return Ok(bad_input(format_args!("{e:#}"))),
    };
    match out {
        Some(file) => std::fs::write(file, script).with_context(|| format!("writing {}", file.display()))?,
        None => print!("{script}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn owner_plan(path: &Path, pool: Target, seed: u64) -> anyhow::Result<ExitCode> {
    match scenario::load(path) {
        Ok(s) => {
            let plan = plan::Plan::new(&s, pool, seed);
            println!("{}", serde_json::to_string(&harness::protocol::OwnerPlan::from(&plan))?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(bad_input(e)),
    }
}
