//! `poolchaos export FILE --python --bundled`: a scenario (a campaign's shrunk
//! reproducer, typically) against a Python target, as one standalone Python
//! script, the thing to attach to the pool's bug tracker. It needs no
//! poolchaos: it carries the adapter (`targets/python/poolchaos_targets`,
//! standard library only) and the plan, runs the target's owner as a child,
//! and prints what each task got. A pool that hangs hangs the script too (run
//! it under `timeout`; on SIGTERM it kills the pool's process group).
//!
//! What the harness does from outside is not in the script: strikes by the
//! nemesis and the run's memory cgroup (an OOM task allocates unbounded).
//! The script lists them in its docstring when the plan has them.

use anyhow::{Context, bail};

use crate::protocol::OwnerPlan;
use crate::scenario::Scenario;
use crate::scenario::plan::Plan;
use crate::target::Target;

/// The driver: writes the adapter to a temp dir, runs the owner, prints the outcomes.
const DRIVER: &str = r#"
def main():
    tmp = tempfile.mkdtemp(prefix="poolchaos-repro-")
    child = None

    def stop(signum, _frame):
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        package = os.path.join(tmp, "poolchaos_targets")
        os.mkdir(package)
        for name, text in SOURCES.items():
            with open(os.path.join(package, name), "w") as f:
                f.write(text)
        env = dict(os.environ, PYTHONPATH=tmp)
        child = subprocess.Popen(
            [sys.executable, "-m", "poolchaos_targets", TARGET],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=tmp, start_new_session=True,
        )
        child.stdin.write((json.dumps(PLAN) + "\n").encode())
        child.stdin.flush()
        got = {}
        finished = False
        for line in child.stdout:
            event = json.loads(line)
            kind = event.get("event")
            if kind == "warmed-up":
                child.stdin.write(b"go\n")
                child.stdin.flush()
            elif kind == "outcome":
                result = event["result"]
                if result["status"] == "error":
                    how = result["kind"]
                    sig = result.get("signal")
                    if sig is not None:
                        # Spelled as poolchaos spells it: worker-lost(sigkill).
                        known = sig in {s.value for s in signal.Signals}
                        how += f"({signal.Signals(sig).name.lower() if known else f'signal {sig}'})"
                    elif result.get("code") is not None:
                        how += f"(exit {result['code']})"
                    text = f"error {how}: {result.get('message', '')}"
                else:
                    text = result["status"]
                got[event["index"]] = text
                print(f"task {event['index']}: {text}", flush=True)
            elif kind in ("skipped", "owner-error"):
                print(f"{kind}: {event}", flush=True)
            elif kind == "finished":
                finished = True
                break
        child.stdin.close()
        child.wait()
        missing = [i for i in range(len(PLAN["tasks"])) if i not in got]
        failed = sorted(i for i, text in got.items() if text != "ok")
        print(f"{len(got) - len(failed)} ok, {len(failed)} failed {failed}, {len(missing)} without outcome {missing[:20]}"
              + ("" if finished else "; the owner did not finish"))
        return 0 if finished and not failed and not missing else 1
    finally:
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
"#;

/// The standalone script of `scenario` against its Python target (the first
/// one its `[expect]` names). `file` names the scenario in the script.
pub fn script(scenario: &Scenario, file: &str) -> anyhow::Result<String> {
    let Some((target, verdict)) = scenario.expect.iter().find(|(t, _)| matches!(t, Target::Python(_))) else {
        bail!("{file}: [expect] names no Python target (py-...): only those can be exported as a Python script");
    };
    let plan = Plan::new(scenario, target.clone(), scenario.seed.unwrap_or(1));
    let owner_plan = serde_json::to_string(&OwnerPlan::from(&plan)).context("the plan as JSON")?;
    let mut not_here = Vec::new();
    if plan.tasks.iter().any(|t| plan.is_oom(t)) {
        not_here.push("    - the run's memory limit: an OOM task allocates unbounded here".to_string());
    }
    if !plan.nemesis.is_empty() || plan.storm.is_some() {
        not_here.push("    - the strikes from outside (the harness's nemesis)".to_string());
    }
    let faults: Vec<String> = plan.faults().iter().map(|f| format!("    - {}: {}", f.kind, f.at)).collect();
    let mut out = String::from("#!/usr/bin/env python3\n");
    out += &format!(
        "\"\"\"{target}: {}\n\n\
         A standalone reproducer made by `poolchaos export {file} --python`; it needs only\n\
         python3 and the pool's own package. `poolchaos run {file}` expects `{verdict}` of\n\
         this pool; the finding is what it does instead. Run it under a timeout:\n\n    \
         timeout 60 python3 THIS_FILE\n\n\
         It prints each task's outcome and a summary, and exits 0 if every task got\n\
         its result, 1 otherwise; a pool that hangs hangs it (timeout exits 124).\n\n\
         {} task(s) on {} worker(s), call style {}; faults:\n{}\n{}\"\"\"\n\n",
        scenario.description.replace('"', "'"),
        plan.tasks.len(),
        plan.workers,
        plan.style.name(),
        faults.join("\n"),
        if not_here.is_empty() { String::new() } else { format!("\nNot in this script:\n{}\n", not_here.join("\n")) },
    );
    out += "import json\nimport os\nimport shutil\nimport signal\nimport subprocess\nimport sys\nimport tempfile\n\n";
    out += &format!("TARGET = {}\n", serde_json::to_string(&target.name())?);
    out += &format!("PLAN = json.loads({})\n", serde_json::to_string(&owner_plan)?);
    out += "SOURCES = {\n";
    for (name, text) in crate::install::ADAPTER {
        out += &format!("    {}: {},\n", serde_json::to_string(name)?, serde_json::to_string(text)?);
    }
    out += "}\n";
    out += DRIVER;
    Ok(out)
}
