//! `poolchaos export FILE --python`: a scenario (a campaign's shrunk
//! reproducer, typically) against a Python target, as the smallest Python
//! script that shows what the pool does: what to attach to the pool's bug
//! tracker. It uses the pool's public API only (`multiprocessing.Pool`,
//! `ProcessPoolExecutor`, loky, pebble, billiard, as the target calls it) and
//! places each fault by the smallest code: `os.kill` in the task, a
//! `__reduce__` that fires while the task or its result is pickled or
//! unpickled, a result written half-way (the channel's `_send` torn), a
//! destructor. A strike from outside at a task's worker becomes the same
//! signal sent by the task to itself, as far into it: the pool sees the same
//! death.
//!
//! The script exits 0 only if every task got its correct result, 1 if one
//! did not (each task's outcome printed as it comes); a pool that hangs
//! hangs it, so it is run as `timeout 60 python3 repro.py` (124). On SIGTERM
//! it kills the pool's workers and exits.
//!
//! What has no such small form (a start or recycle fault, a lifecycle stage,
//! a callback, strikes at random workers, storms, the run's memory limit, a
//! cancel, a join timeout) is
//! refused, naming it; `--bundled` ([`bundled`]) writes the adapter-carrying
//! script, which places every self-placed fault.

pub mod bundled;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::bail;
use pools::{CallStyle, FaultKind, FaultPoint, Workload};

use crate::protocol::{fault_kind_name, fault_point_name};
use crate::scenario::plan::Plan;
use crate::scenario::{Aim, Scenario};
use crate::target::Target;

/// One task's fault, as the script places it: where, what, and how far into
/// the work (a fraction: 0.5 for a self-placed `mid-task`).
struct Placed {
    point: FaultPoint,
    kind: FaultKind,
    at: f64,
}

/// How a target's pool is made and called: Python expressions (`{w}`: the
/// workers, `{m}`: the start method, `{t}`: `, timeout=T` where it takes one).
struct Api {
    import: &'static str,
    make: &'static str,
    /// One task submitted (`a`: its argument); `.{wait}()` is its outcome.
    submit: &'static str,
    wait: &'static str,
    /// The whole batch (`args`), as something to iterate.
    map: &'static str,
    close: &'static str,
    /// The live worker processes, for the SIGTERM handler.
    children: &'static str,
}

const MP: Api = Api {
    import: "",
    make: r#"multiprocessing.get_context("{m}").Pool({w})"#,
    submit: "pool.apply_async(work, (a,))",
    wait: "get",
    map: "pool.map(work, args)",
    close: "pool.close()\n    pool.join()",
    children: "multiprocessing.active_children()",
};

fn api(target: &str) -> Option<Api> {
    let executor = Api {
        import: "import concurrent.futures",
        make: r#"concurrent.futures.ProcessPoolExecutor({w}, mp_context=multiprocessing.get_context("{m}"))"#,
        submit: "pool.submit(work, a)",
        wait: "result",
        map: "pool.map(work, args)",
        close: "pool.shutdown()",
        ..MP
    };
    Some(match target {
        "py-pool-map" | "py-pool-apply" | "py-pool-apply-async" | "py-pool-map-async" => MP,
        "py-ppe" => executor,
        "py-loky" => Api {
            import: "import loky",
            make: r#"loky.get_reusable_executor(max_workers={w}, context=loky.backend.get_context({m}))"#,
            ..executor
        },
        "py-pebble" => Api {
            import: "import pebble",
            make: r#"pebble.ProcessPool(max_workers={w}, context=multiprocessing.get_context("{m}"))"#,
            submit: "pool.schedule(work, args=(a,){t})",
            map: "pool.map(work, args{t}).result()",
            close: MP.close,
            ..executor
        },
        "py-billiard" => Api {
            import: "import billiard, billiard.connection",
            make: r#"billiard.get_context("{m}").Pool({w}{t})"#,
            children: "billiard.active_children()",
            ..MP
        },
        _ => return None,
    })
}

/// The minimal script of `scenario` against its Python target (the first
/// one its `[expect]` names). `file` names the scenario in the script.
pub fn python_script(scenario: &Scenario, file: &str) -> anyhow::Result<String> {
    let python = |(t, v): &(Target, crate::judge::verdict::Verdict)| match t {
        Target::Python(py) => Some((*py, *v)),
        _ => None,
    };
    let Some((py, verdict)) = scenario.expect.iter().find_map(python) else {
        bail!("{file}: [expect] names no Python target (py-...): only those can be exported as a Python script");
    };
    let target = Target::Python(py);
    let Some(api) = api(py.name) else {
        bail!(
            "{file}: {} has no minimal form (it is not a pool's public API); `--bundled` writes the full script",
            py.name
        );
    };
    let plan = Plan::new(scenario, target.clone(), scenario.seed.unwrap_or(1));
    let faults = placed(&plan).map_err(|why| {
        anyhow::anyhow!("{file}: not in the minimal form: {why}; `--bundled` writes the adapter-carrying script")
    })?;
    let method = match (py.method, py.name) {
        (Some(m), "py-loky") => format!("\"{}\"", m.as_str()),
        (None, "py-loky") => "None".into(),
        (Some(m), _) => m.as_str().into(),
        (None, _) => "fork".into(),
    };
    let timeout = match (plan.task_timeout, py.name) {
        (Some(t), "py-pebble" | "py-billiard") => format!(", timeout={}", t.as_secs_f64()),
        _ => String::new(),
    };
    let fill = |s: &str| s.replace("{w}", &plan.workers.to_string()).replace("{m}", &method).replace("{t}", &timeout);
    let mut out = header(scenario, &plan, file, &verdict.to_string(), &faults);
    out += &imports(&api, &faults, py.name);
    out += &tasks(&plan, &faults);
    out += &fault_code(&faults);
    out += &work(&plan, &faults, py.name);
    let armed = faults.iter().any(|(_, f)| matches!(f.point, FaultPoint::Encode | FaultPoint::Decode));
    out += &main(&api, plan.style, armed, &fill);
    Ok(out)
}

/// Each task's fault (self-placed, or a strike from outside at its worker),
/// or why the plan has one the minimal form cannot place.
fn placed(plan: &Plan) -> Result<Vec<(usize, Placed)>, String> {
    use FaultPoint::*;
    let mut faults = Vec::new();
    for (i, task) in plan.tasks.iter().enumerate() {
        if plan.is_oom(task) {
            return Err(format!("task {i} is killed by the run's memory limit"));
        }
        if let Some(f) = task.fault {
            if !matches!(f.point, MidTask | Encode | Decode | EncodeResult | WriteResult | DecodeResult | AfterResult) {
                return Err(format!("task {i}'s fault at `{}`", fault_point_name(f.point)));
            }
            if f.kind == FaultKind::ReturnException {
                return Err(format!("task {i} returns an exception object"));
            }
            faults.push((i, Placed { point: f.point, kind: f.kind, at: 0.5 }));
        }
    }
    for n in &plan.nemesis {
        let i = match n.target {
            Aim::Task(i) => i,
            Aim::IdleWorker => return Err("a strike from outside at the idle worker".into()),
            Aim::RandomWorker => return Err("a strike from outside at a random worker".into()),
            Aim::Owner => return Err("a strike from outside at the pool's owner".into()),
        };
        let length = match plan.tasks.get(i).map(|t| &t.work) {
            Some(Workload::Sleep { ms }) => *ms,
            Some(Workload::Spin { us }) => us / 1000,
            _ => 0,
        };
        if n.after_ms >= length || faults.iter().any(|(j, _)| *j == i) {
            return Err(format!("the strike at task {i}'s worker ({} ms into a {length} ms task)", n.after_ms));
        }
        let kind = match n.signal {
            crate::protocol::Signal::Sigkill => FaultKind::SigKill,
            crate::protocol::Signal::Sigstop => FaultKind::SigStop,
        };
        faults.push((i, Placed { point: MidTask, kind, at: n.after_ms as f64 / length as f64 }));
    }
    if plan.storm.is_some() {
        return Err("a kill storm from outside".into());
    }
    if plan.chunksize.is_some_and(|c| c > 1) || plan.max_tasks.is_some() || !plan.knobs.is_empty() {
        return Err("the pool's options (chunksize, max_tasks, [target.NAME] knobs)".into());
    }
    if !plan.cancel.is_empty() || plan.join_timeout_ms.is_some() {
        return Err("a cancel or a join timeout".into());
    }
    faults.sort_by_key(|(i, _)| *i);
    Ok(faults)
}

fn header(scenario: &Scenario, plan: &Plan, file: &str, verdict: &str, faults: &[(usize, Placed)]) -> String {
    let mut said: Vec<String> = plan.faults().iter().map(|f| format!("{}: {}", f.kind, f.at)).collect();
    if said.is_empty() {
        said.push("none".into());
    }
    format!(
        "#!/usr/bin/env python3\n\
         \"\"\"{}: {}\n\
         From `poolchaos export {file} --python`: {} task(s) on {} worker(s), {}; faults: {}{};\n\
         poolchaos expects: {verdict}. Run `timeout 60 python3 THIS_FILE`: 0 if every task got its result, else 1 (124: hung).\"\"\"\n",
        plan.pool.name(),
        scenario.description.replace('"', "'"),
        plan.tasks.len(),
        plan.workers,
        plan.style.name(),
        said.join("; "),
        if plan.nemesis.is_empty() || faults.is_empty() { "" } else { " (the strike sent by the task itself)" },
    )
}

fn imports(api: &Api, faults: &[(usize, Placed)], target: &str) -> String {
    let mut modules =
        vec![if faults.iter().any(|(_, f)| f.point == FaultPoint::WriteResult) && target != "py-billiard" {
            "multiprocessing.connection"
        } else {
            "multiprocessing"
        }];
    if faults.iter().any(|(_, f)| f.kind == FaultKind::SigSegv) {
        modules.push("ctypes");
    }
    modules.extend(["os", "signal", "sys", "time"]);
    let pool = if api.import.is_empty() { String::new() } else { format!("{}\n", api.import) };
    format!("import {}\n{pool}", modules.join(", "))
}

/// The tasks: `WORK` (each one's workload), `FAULT` (task: point, kind,
/// how far into the work), and `expected(i)`.
fn tasks(plan: &Plan, faults: &[(usize, Placed)]) -> String {
    let work: Vec<String> = plan
        .tasks
        .iter()
        .map(|t| match &t.work {
            Workload::Echo(bytes) => format!("(\"echo\", {})", bytes.len()),
            Workload::Spin { us } => format!("(\"spin\", {us})"),
            Workload::Sleep { ms } => format!("(\"sleep\", {ms})"),
            Workload::Alloc { mib, .. } => format!("(\"alloc\", {mib})"),
            Workload::Large { bytes } => format!("(\"large\", {bytes})"),
        })
        .collect();
    let work = if work.windows(2).all(|w| w[0] == w[1]) {
        format!("[{}] * {}", work[0], work.len())
    } else {
        wrapped(&work, "[", "]")
    };
    let fault: Vec<String> = faults
        .iter()
        .map(|(i, f)| format!("{i}: (\"{}\", \"{}\", {})", fault_point_name(f.point), fault_kind_name(f.kind), f.at))
        .collect();
    format!(
        "\n{main}WORK = {work}  # per task: (workload, ms | us | MiB | bytes)\n\
         FAULT = {}  # task: (where, what, how far into the work)\n\n\
         def expected(i):\n    \
         kind, n = WORK[i]\n    \
         return b\"%d:\" % i + b\"x\" * (n if kind in (\"echo\", \"large\") else 0)\n",
        wrapped(&fault, "{", "}"),
        main = if faults.iter().any(|(_, f)| f.point == FaultPoint::AfterResult) { "MAIN = os.getpid()\n" } else { "" },
    )
}

/// `items` as a Python literal between `open` and `close`, wrapped at 100 columns.
fn wrapped(items: &[String], open: &str, close: &str) -> String {
    let one = format!("{open}{}{close}", items.join(", "));
    if one.len() <= 76 {
        return one;
    }
    let mut out = format!("{open}\n   ");
    let mut width = 3;
    for item in items {
        if width + item.len() + 2 > 100 {
            out += "\n   ";
            width = 3;
        }
        let _ = write!(out, " {item},");
        width += item.len() + 2;
    }
    out + "\n" + close
}

/// `fault(how)`, and what places it at a point other than in the task's work.
fn fault_code(faults: &[(usize, Placed)]) -> String {
    if faults.is_empty() {
        return String::new();
    }
    let kinds: BTreeSet<String> = faults.iter().map(|(_, f)| fault_kind_name(f.kind)).collect();
    let mut out = String::from("\ndef fault(how):\n");
    for name in &kinds {
        let kind = faults.iter().map(|(_, f)| f.kind).find(|k| fault_kind_name(*k) == *name);
        let code = match kind {
            Some(FaultKind::SigKill) => "os.kill(os.getpid(), signal.SIGKILL)".into(),
            Some(FaultKind::SigSegv) => "ctypes.string_at(0)  # a real invalid access".into(),
            Some(FaultKind::Abort) => "os.abort()".into(),
            Some(FaultKind::Exit(code)) => format!("os._exit({code})"),
            Some(FaultKind::Hang) => "time.sleep(3600)".into(),
            Some(FaultKind::SigStop) => "os.kill(os.getpid(), signal.SIGSTOP)".into(),
            Some(FaultKind::Error) => "raise RuntimeError(\"injected task error\")".into(),
            Some(FaultKind::Panic) => "raise AssertionError(\"injected panic\")".into(),
            Some(FaultKind::SysExit) | None => "sys.exit(1)".into(),
            Some(FaultKind::Unpicklable) => {
                "__import__(\"pickle\").dumps(__import__(\"threading\").Lock())  # pickle's own refusal".into()
            }
            Some(FaultKind::BaseException) => "raise BaseException(\"injected base exception\")".into(),
            Some(FaultKind::MemoryError) => "raise MemoryError(\"injected memory error\")".into(),
            Some(FaultKind::IgnoreSigterm) => "signal.signal(signal.SIGTERM, signal.SIG_IGN)".into(),
            // Refused by `placed`: a result, not a fault that fires.
            Some(FaultKind::ReturnException) => "pass".into(),
        };
        if kinds.len() == 1 {
            let _ = writeln!(out, "    {code}");
        } else {
            let _ = write!(out, "    if how == \"{name}\":\n        {code}\n");
        }
    }
    let points: std::collections::HashSet<FaultPoint> = faults.iter().map(|(_, f)| f.point).collect();
    let has = |p: &[FaultPoint]| p.iter().any(|p| points.contains(p));
    if has(&[FaultPoint::Encode, FaultPoint::EncodeResult]) {
        out += "\nclass AtPickle:  # fires while pickled, then is `value`\n    \
                def __init__(self, how, value):\n        self.how, self.value = how, value\n    \
                def __reduce__(self):\n        fault(self.how)\n        return (type(self.value), (self.value,))\n";
    }
    if has(&[FaultPoint::Decode, FaultPoint::DecodeResult]) {
        out += "\ndef fired(how, value):\n    fault(how)\n    return value\n\n\
                class AtUnpickle:  # fires while unpickled, then is `value`\n    \
                def __init__(self, how, value):\n        self.how, self.value = how, value\n    \
                def __reduce__(self):\n        return (fired, (self.how, self.value))\n";
    }
    if has(&[FaultPoint::AfterResult]) {
        out += "\nclass AtCollect:  # pickles as `value`; fires when the worker lets go of it\n    \
                def __init__(self, how, value):\n        self.how, self.value = how, value\n    \
                def __reduce__(self):\n        return (type(self.value), (self.value,))\n    \
                def __del__(self):\n        if os.getpid() != MAIN:\n            fault(self.how)\n";
    }
    out
}

/// `part` (a share of a workload), `tear` (a result written half-way) and
/// `work(i)`, the function every task runs, with its faults in place.
fn work(plan: &Plan, faults: &[(usize, Placed)], target: &str) -> String {
    let kinds: BTreeSet<&str> = plan
        .tasks
        .iter()
        .filter_map(|t| match t.work {
            Workload::Sleep { .. } => Some("sleep"),
            Workload::Spin { .. } => Some("spin"),
            Workload::Alloc { .. } => Some("alloc"),
            Workload::Echo(_) | Workload::Large { .. } => None,
        })
        .collect();
    let points: std::collections::HashSet<FaultPoint> = faults.iter().map(|(_, f)| f.point).collect();
    let (mut out, inline) = part(&kinds);
    if points.contains(&FaultPoint::WriteResult) {
        out += &tear(target);
    }
    out += "\ndef work(i):\n";
    if faults.is_empty() {
        out += "    kind, n = WORK[i]\n";
    } else {
        out += "    (kind, n), (point, how, at) = WORK[i], FAULT.get(i, (None, None, 0.5))\n";
    }
    let part = |share: &str| match inline {
        _ if kinds.is_empty() => String::new(),
        Some(code) => format!("    {}\n", code.replace("{share}", share)),
        None => format!("    part(kind, n{share}, held)\n"),
    };
    if kinds.contains("alloc") {
        out += "    held = []\n";
    }
    if points.contains(&FaultPoint::MidTask) {
        out += &part(" * at");
        out += "    if point == \"mid-task\":\n        fault(how)\n";
        out += &part(" * (1 - at)");
    } else {
        out += &part("");
    }
    let wraps = [
        (FaultPoint::WriteResult, "tear(how)"),
        (FaultPoint::EncodeResult, "return AtPickle(how, expected(i))"),
        (FaultPoint::DecodeResult, "return AtUnpickle(how, expected(i))"),
        (FaultPoint::AfterResult, "return AtCollect(how, expected(i))"),
    ];
    for (point, code) in wraps.iter().filter(|(p, _)| points.contains(p)) {
        let _ = write!(out, "    if point == \"{}\":\n        {code}\n", fault_point_name(*point));
    }
    out += "    return expected(i)\n";
    if points.contains(&FaultPoint::Encode) || points.contains(&FaultPoint::Decode) {
        out += "\ndef arg(i):  # task i as handed to the pool\n    point, how, _ = FAULT.get(i, (None, None, 0))\n";
        if points.contains(&FaultPoint::Encode) {
            out += "    if point == \"encode\":\n        return AtPickle(how, i)\n";
        }
        if points.contains(&FaultPoint::Decode) {
            out += "    if point == \"decode\":\n        return AtUnpickle(how, i)\n";
        }
        out += "    return i\n";
    }
    out
}

/// `part(kind, n, held)`, a share of a task's work, where one is needed; or
/// the one line that does it inline, where one kind of work needs it
/// (`{share}`: the share of `n`).
fn part(kinds: &BTreeSet<&str>) -> (String, Option<&'static str>) {
    let mut out = String::new();
    let inline = match kinds.iter().collect::<Vec<_>>()[..] {
        [&"sleep"] => Some("time.sleep(n{share} / 1000 if kind == \"sleep\" else 0)"),
        [&"alloc"] => Some("held.append(b\"\\x01\" * int(n{share} * 2**20 if kind == \"alloc\" else 0))"),
        _ => None,
    };
    if inline.is_none() && !kinds.is_empty() {
        out += "\ndef part(kind, n, held):  # n ms asleep, n us of CPU, n MiB held\n";
        for kind in kinds {
            out += match *kind {
                "sleep" => "    if kind == \"sleep\":\n        time.sleep(n / 1000)\n",
                "spin" => {
                    "    if kind == \"spin\":\n        end = time.perf_counter() + n / 1e6\n        \
                           while time.perf_counter() < end:\n            pass\n"
                }
                _ => "    if kind == \"alloc\":\n        held.append(b\"\\x01\" * int(n * 2**20))\n",
            };
        }
    }
    (out, inline)
}

/// `tear(how)`: the worker's next result dies half-way through its write.
fn tear(target: &str) -> String {
    let module = if target == "py-billiard" { "billiard.connection" } else { "multiprocessing.connection" };
    format!(
        "\ndef tear(how):  # this worker's next result dies half-way through its write\n    \
             send = {module}.Connection._send\n    \
             def torn(self, buf, *rest):  # past the length header: half of it, the fault, the rest\n        \
             if len(buf) > 8:\n            \
             {module}.Connection._send = send\n            \
             send(self, buf[: len(buf) // 2], *rest)\n            \
             fault(how)\n            \
             buf = buf[len(buf) // 2 :]\n        \
             send(self, buf, *rest)\n    \
             {module}.Connection._send = torn\n"
    )
}

/// `take`, the SIGTERM handler and `main`: the pool made, called in the
/// plan's style, closed; each task's outcome printed; the exit status.
fn main(api: &Api, style: CallStyle, armed: bool, fill: &dyn Fn(&str) -> String) -> String {
    let executor = api.wait == "result";
    let call = match style {
        CallStyle::Apply => {
            format!("    good = [take(i, lambda: {}.{}()) for i, a in enumerate(args)]\n", fill(api.submit), api.wait)
        }
        CallStyle::ApplyAsync | CallStyle::MapAsync if executor || style == CallStyle::ApplyAsync => format!(
            "    handles = [{} for a in args]\n    good = [take(i, h.{}) for i, h in enumerate(handles)]\n",
            fill(api.submit),
            api.wait
        ),
        _ => {
            let map =
                if style == CallStyle::MapAsync { "pool.map_async(work, args).get()".into() } else { fill(api.map) };
            format!(
                "    try:\n        values = iter({map})\n    \
                 except Exception as e:  # the call raised: every task gets that\n        \
                 values = iter([e] * len(args))\n    \
                 good = [take(i, lambda: next(values)) for i in range(len(args))]\n"
            )
        }
    };
    format!(
        "\ndef take(i, call):  # what task i got, printed as it comes\n    \
         try:\n        value = call()\n    except Exception as e:\n        value = e\n    \
         print(f\"task {{i}}:\", \"ok\" if value == expected(i) else f\"{{value!r:.120}}\", flush=True)\n    \
         return value == expected(i)\n\n\
         def main():  # on SIGTERM (from `timeout`), the workers go too\n    \
         signal.signal(signal.SIGTERM, lambda *_: ([p.kill() for p in {children}], os._exit(143)))\n    \
         os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))\n    \
         args = {args}\n    \
         pool = {make}\n\
         {call}    \
         {close}\n    \
         print(f\"{{sum(good)}} of {{len(good)}} tasks got their result\")\n    \
         return 0 if all(good) else 1\n\n\
         if __name__ == \"__main__\":\n    sys.exit(main())\n",
        children = api.children,
        args = if armed { "[arg(i) for i in range(len(WORK))]" } else { "list(range(len(WORK)))" },
        make = fill(api.make),
        close = api.close,
    )
}
