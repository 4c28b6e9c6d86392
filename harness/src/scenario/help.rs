//! The scenario format's reference: every field of a scenario file with what
//! it takes and its range, built from the same constants and name tables
//! that [`crate::scenario`] checks against, so the two cannot drift apart.
//! `poolchaos help scenario` (and `poolchaos scenario`) print it.

use crate::protocol::Verdict;
use crate::protocol::{FAULT_KINDS, FAULT_POINTS};
use crate::protocol::{KNOBS, KnobUnit};
use crate::scenario::{MAX_ECHO_BYTES, MAX_ECHO_TOTAL, MAX_MS, MAX_RESULT_BYTES, MAX_TASKS, MAX_WORKERS};
use crate::target::Target;

/// A row of the reference: the field, its type, what it takes.
type Row = (&'static str, &'static str, String);

/// The reference, as `poolchaos help scenario` prints it.
pub fn reference() -> String {
    let rows: Vec<Row> = run_rows().into_iter().chain(table_rows()).collect();
    let width = rows.iter().map(|(f, ..)| f.len()).max().unwrap_or(0);
    let mut out = String::from(
        "A scenario is a TOML file (scenarios/*.toml; README.md, \"Writing a scenario\", has an example).\n\
         Every field, what it takes and its range; a mistake stops everything, naming file, line and field:\n\n",
    );
    for (field, ty, what) in rows {
        out += &format!("  {field:<width$}  {ty:<7}  {what}\n");
    }
    out += "\n  [target.NAME]: a target's own knobs (NAME in [expect]), each optional:\n";
    for (target, knob, unit, what) in KNOBS {
        let unit = match unit {
            KnobUnit::Seconds => "seconds, more than 0",
            KnobUnit::Count => "at least 1",
        };
        out += &format!("    [target.{target}].{knob} ({unit}): {what}\n");
    }
    out
}

/// The run's own fields and its tasks'.
fn run_rows() -> Vec<Row> {
    let names = |t: &[(&str, _)]| t.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" | ");
    let kinds = names(&FAULT_KINDS.map(|(n, _)| (n, ())));
    let points = names(&FAULT_POINTS.map(|(n, _)| (n, ())));
    let day = MAX_MS;
    vec![
        ("description", "string", "what the scenario does, in a sentence (required)".to_string()),
        ("workers", "integer", format!("the pool's worker count, 1 to {MAX_WORKERS} (required)")),
        ("style", "string", "map | apply | apply-async | map-async (default map)".into()),
        ("deadline_ms", "integer", format!("past this the run is hung and torn down: 1 to {day} (required)")),
        ("memory_limit_mib", "integer", "the run's memory cgroup, at least 16 (optional: none)".into()),
        ("task_timeout_ms", "integer", format!("a per-task deadline, for pools that have one: 1 to {day} (optional)")),
        ("max_attempts", "integer", "supervised's attempts per task, at least 1 (optional: 3)".into()),
        ("seed", "integer", "the plan's seed, over --seed (optional)".into()),
        ("chunksize", "integer", "map's chunksize, at least 1, where the target's map takes one (optional)".into()),
        ("max_tasks", "integer", "tasks a worker runs before it is replaced, at least 1 (optional: no limit)".into()),
        (
            "join_timeout_ms",
            "integer",
            format!("end the pool by close and a join bounded by this, 1 to {day}; past it the run is hung (optional)"),
        ),
        ("[[tasks]]", "table", format!("a group of tasks, tagged in file order; {MAX_TASKS} tasks at most in all")),
        ("tasks.count", "integer", "how many tasks of this group (default 1)".into()),
        (
            "tasks.work",
            "table",
            format!(
                "one of echo = BYTES (0 to {MAX_ECHO_BYTES}; {MAX_ECHO_TOTAL} in all), spin_us, sleep_ms (0 to 2^64-1), \
                 alloc_mib (0 to 2^32-1), large_bytes (0 to {MAX_RESULT_BYTES})"
            ),
        ),
        ("tasks.fault.kind", "string", format!("{kinds} (a fault the task places itself; optional)")),
        ("tasks.fault.at", "string", format!("{points} (default mid-task)")),
        ("tasks.fault.times", "integer", "attempts (or worker starts) it fires on, at least 1, or \"always\"".into()),
    ]
}

/// The tables': strikes, cancels, random faults, storms, expectations, the peer.
fn table_rows() -> Vec<Row> {
    let verdicts = Verdict::ALL.map(|v| v.name()).join(" | ");
    let targets = Target::all().iter().map(Target::name).collect::<Vec<_>>().join(" ");
    let day = MAX_MS;
    vec![
        ("[[nemesis]].signal", "string", "sigkill | sigstop (a strike from outside)".into()),
        (
            "[[nemesis]].target",
            "string",
            "task (with task = N, an existing task) | idle-worker | random-worker | owner".into(),
        ),
        (
            "[[nemesis]].after_ms",
            "integer",
            format!("0 to {day}: into the task, or after the pool is ready (default 0)"),
        ),
        (
            "[[cancel]].task",
            "integer",
            "a task (N, an existing one, once) cancelled through its handle: style = \"apply-async\" only".into(),
        ),
        ("[[cancel]].after_ms", "integer", format!("0 to {day}: after the last task is submitted (default 0)")),
        ("[random].rate", "float", "0 to 1: each task's chance of a self-placed fault".into()),
        ("[random].kinds", "strings", "fault kinds, at least one (as tasks.fault.kind)".into()),
        ("[random].points", "strings", "fault points (as tasks.fault.at; default [\"mid-task\"])".into()),
        ("[storm].signal", "string", "sigkill | sigstop: a random worker, from outside ...".into()),
        ("[storm].every_ms", "integer", "... every this many ms from the pool's ready, at least 1".into()),
        ("[expect].POOL", "string", format!("{verdicts}; POOL at least one of: {targets} custom (--target)")),
        (
            "[expect].call_ms",
            "integer",
            format!("every outcome within this of the pool's ready: 1 to {day} (optional)"),
        ),
        (
            "[expect].errors_by_ms",
            "integer",
            format!("every error within this of the pool's ready: 1 to {day} (optional)"),
        ),
        ("[peer].test", "string", "the peer's own test this reproduces (optional table)".into()),
        ("[peer].target", "string", "the peer's pool, one of [expect]".into()),
        ("[peer].raises", "string", "what the peer's test expects, in its words".into()),
        ("[peer].verdict", "string", "that as our verdict".into()),
        ("[peer].error", "string", "and error kind (optional)".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the reference is one the parser takes: a file with
    /// each of them loads (the parser refuses unknown fields).
    #[test]
    fn every_field_named_is_one_the_parser_takes() {
        let text = reference();
        let file = r#"
description = "all the fields"
workers = 2
style = "apply-async"
deadline_ms = 1000
memory_limit_mib = 64
task_timeout_ms = 100
max_attempts = 2
seed = 3
chunksize = 2
max_tasks = 2
join_timeout_ms = 500
[[tasks]]
count = 2
work = { sleep_ms = 1 }
fault = { kind = "sigkill", at = "mid-task", times = 1 }
[[nemesis]]
signal = "sigkill"
target = "task"
task = 0
after_ms = 0
[[cancel]]
task = 1
after_ms = 10
[random]
rate = 0.5
kinds = ["error"]
points = ["mid-task"]
[storm]
signal = "sigkill"
every_ms = 10
[expect]
supervised = "completed"
py-ppe = "failed-loudly"
call_ms = 5000
errors_by_ms = 5000
[target.supervised]
window = 4
[peer]
test = "t"
target = "py-ppe"
raises = "BrokenProcessPool"
verdict = "failed-loudly"
error = "pool-broken"
"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.toml");
        std::fs::write(&path, file).unwrap();
        crate::scenario::load(&path).unwrap();
        // Every key of that file (but the pools of [expect]) is in the reference.
        fn keys(table: &toml::Table, out: &mut Vec<String>) {
            for (key, value) in table {
                out.push(key.clone());
                match value {
                    toml::Value::Table(t) if key != "expect" && key != "target" => keys(t, out),
                    toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_table).for_each(|t| keys(t, out)),
                    _ => {}
                }
            }
        }
        let mut all = Vec::new();
        keys(&file.parse::<toml::Table>().unwrap(), &mut all);
        for key in all {
            assert!(text.contains(&key), "{key} is not in the reference:\n{text}");
        }
        assert!(text.contains(&format!("1 to {MAX_WORKERS}")), "{text}");
        for (point, _) in FAULT_POINTS {
            assert!(text.contains(point), "{point} is not in the reference");
        }
        for key in ["call_ms", "errors_by_ms"] {
            assert!(text.contains(&format!("[expect].{key}")), "{key} is not in the reference");
        }
        for (target, knob, ..) in KNOBS {
            assert!(text.contains(&format!("[target.{target}].{knob}")), "{target}'s {knob} is not in the reference");
        }
    }
}
