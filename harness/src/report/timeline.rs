//! A run's timeline as an SVG, from its event log: what to look at when a
//! run hung or lost a task (as Jepsen's timeline pages show a history).
//!
//! - a lane per worker process (the order the events first name them), with
//!   its pid and how it ended (`sigkill`, `exit 0`, `oom-kill`, or `alive`
//!   when the run ended with it), and a lane for the pool's owner on top;
//! - a bar per attempt of a task, from the worker's `start` to its outcome
//!   (or its `done`, or the worker's end), coloured by the task's outcome
//!   (an attempt that was retried: the retried colour; no outcome: grey);
//! - marks: a black cross for a strike from outside, a purple triangle for an
//!   OOM kill, an orange diamond where a self-placed fault fired (when the
//!   plan is known: the end of each attempt the fault fires on);
//! - the deadline (a red line) and the moment the run was judged (black).
//!
//! Drawn with plotters' SVG backend and no font support, like
//! `throughput.svg`: the same events give the same file on every machine.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::protocol::{ErrorKind, Event, OutcomeRecord};
use crate::run::events::Logged;
use crate::run::owner::WARMUP_TAG;

const WIDTH: u32 = 1000;
const LEFT: i32 = 190;
const RIGHT: i32 = 30;
const TOP: i32 = 56;
const LANE: i32 = 26;
/// The axis and the legend under the lanes.
const BOTTOM: i32 = 70;

const OK: RGBColor = RGBColor(44, 160, 44);
const WRONG: RGBColor = RGBColor(148, 103, 189);
const TASK_ERROR: RGBColor = RGBColor(255, 187, 120);
const ERROR: RGBColor = RGBColor(214, 39, 40);
const RETRIED: RGBColor = RGBColor(140, 86, 75);
const PENDING: RGBColor = RGBColor(170, 170, 170);
const FAULT: RGBColor = RGBColor(255, 127, 14);
const OOM: RGBColor = RGBColor(117, 40, 160);

/// What the timeline shows beside the events: the run's name, its deadline,
/// and the plan's self-placed faults (task tag, the attempts it fires on).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub title: String,
    pub deadline_ms: Option<u64>,
    pub faults: Vec<(u64, u32)>,
}

/// One attempt of a task on a worker.
struct Attempt {
    tag: u64,
    attempt: u32,
    pid: u32,
    start: u64,
    done: Option<u64>,
}

/// A worker's lane: when the events first named it, and how it ended.
struct Lane {
    pid: u32,
    first: u64,
    end: Option<(u64, String)>,
}

/// The events, read into what is drawn.
struct History {
    owner: Option<u32>,
    lanes: Vec<Lane>,
    attempts: Vec<Attempt>,
    outcomes: BTreeMap<u64, (u64, RGBColor)>,
    strikes: Vec<(u64, u32)>,
    ooms: Vec<(u64, u32)>,
    deadline: Option<u64>,
    judged: u64,
}

fn outcome_colour(result: &OutcomeRecord) -> RGBColor {
    match result {
        OutcomeRecord::Ok => OK,
        OutcomeRecord::Wrong => WRONG,
        OutcomeRecord::Error { kind: ErrorKind::Task, .. } => TASK_ERROR,
        OutcomeRecord::Error { .. } => ERROR,
    }
}

impl History {
    fn read(events: &[Logged]) -> History {
        let mut h = History {
            owner: None,
            lanes: Vec::new(),
            attempts: Vec::new(),
            outcomes: BTreeMap::new(),
            strikes: Vec::new(),
            ooms: Vec::new(),
            deadline: None,
            judged: events.last().map_or(0, |e| e.t_ms),
        };
        for Logged { t_ms: t, event } in events {
            let t = *t;
            match event {
                Event::Ready { pid } => h.owner = Some(*pid),
                Event::TaskStarted { tag, attempt, pid } => {
                    h.lane(*pid, t);
                    h.attempts.push(Attempt { tag: *tag, attempt: *attempt, pid: *pid, start: t, done: None });
                }
                Event::TaskDone { tag, attempt, pid } => {
                    h.lane(*pid, t);
                    let a =
                        h.attempts.iter_mut().rev().find(|a| a.tag == *tag && a.attempt == *attempt && a.pid == *pid);
                    if let Some(a) = a {
                        a.done = Some(t);
                    }
                }
                // A plan tags its tasks by their index (`Plan::new`): outcome `index` is task `tag`.
                Event::Outcome { index, result } => {
                    h.outcomes.entry(*index as u64).or_insert((t, outcome_colour(result)));
                }
                Event::WorkerExit { pid, signal, code } => {
                    let how = match (signal, code) {
                        (Some(9), _) => "sigkill".to_string(),
                        (Some(s), _) => format!("signal {s}"),
                        (None, Some(c)) => format!("exit {c}"),
                        (None, None) => "ended".to_string(),
                    };
                    h.lane(*pid, t).end = Some((t, how));
                }
                Event::OomKill { pid, .. } => {
                    h.ooms.push((t, *pid));
                    if let Some(end) = &mut h.lane(*pid, t).end {
                        end.1 = "oom-kill".into();
                    }
                }
                Event::Nemesis { pid, .. } => h.strikes.push((t, *pid)),
                Event::Deadline => h.deadline = Some(t),
                _ => {}
            }
        }
        h
    }

    /// The lane of `pid`, made at `t` if the events had not named it yet.
    fn lane(&mut self, pid: u32, t: u64) -> &mut Lane {
        let i = match self.lanes.iter().position(|l| l.pid == pid) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane { pid, first: t, end: None });
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[i]
    }

    /// The row of `pid`: 0 is the owner, 1.. the workers.
    fn row(&self, pid: u32) -> usize {
        self.lanes.iter().position(|l| l.pid == pid).map_or(0, |i| i + 1)
    }

    /// Where attempt `a` ends, and its colour.
    fn bar(&self, i: usize) -> (u64, RGBColor) {
        let a = &self.attempts[i];
        let retried = self.attempts[i + 1..].iter().any(|b| b.tag == a.tag);
        let worker_end = self.lanes.iter().find(|l| l.pid == a.pid).and_then(|l| l.end.as_ref()).map(|e| e.0);
        let outcome = self.outcomes.get(&a.tag).filter(|(t, _)| *t >= a.start && !retried);
        let end = outcome.map(|o| o.0).or(a.done).or(worker_end).unwrap_or(self.judged);
        let colour = match (retried, outcome, a.tag == WARMUP_TAG) {
            (_, _, true) => OK,
            (true, _, _) => RETRIED,
            (false, Some((_, c)), _) => *c,
            (false, None, _) => PENDING,
        };
        (end.max(a.start), colour)
    }
}

/// The timeline of `events` as SVG text.
pub fn svg(events: &[Logged], context: &Context) -> anyhow::Result<String> {
    let h = History::read(events);
    let span = h.judged.max(context.deadline_ms.unwrap_or(0)).max(h.deadline.unwrap_or(0)).max(1);
    let rows = h.lanes.len() as i32 + 1;
    let height = (TOP + rows * LANE + BOTTOM) as u32;
    let x = |t: u64| LEFT + ((t as f64 / span as f64) * f64::from(WIDTH as i32 - LEFT - RIGHT)).round() as i32;
    let y = |row: usize| TOP + row as i32 * LANE;
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the timeline: {e}");
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let text = |s: &str, at: (i32, i32), size: u32| Text::new(s.to_string(), at, ("sans-serif", size));
        root.draw(&text(&context.title, (10, 10), 15)).map_err(err)?;
        // Lanes: the owner's, then each worker's, with its pid and end.
        let owner = h.owner.map_or("owner".to_string(), |p| format!("owner {p}"));
        root.draw(&text(&owner, (10, y(0) + 7), 12)).map_err(err)?;
        for (i, lane) in h.lanes.iter().enumerate() {
            let how = lane.end.as_ref().map_or("alive", |e| e.1.as_str());
            root.draw(&text(&format!("worker {}: {how}", lane.pid), (10, y(i + 1) + 7), 12)).map_err(err)?;
            let end = lane.end.as_ref().map_or(h.judged, |e| e.0);
            let mid = y(i + 1) + LANE / 2;
            root.draw(&PathElement::new(vec![(x(lane.first), mid), (x(end), mid)], BLACK.mix(0.3))).map_err(err)?;
            if lane.end.is_some() {
                root.draw(&PathElement::new(vec![(x(end), mid - 8), (x(end), mid + 8)], BLACK.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        for (i, a) in h.attempts.iter().enumerate() {
            let (end, colour) = h.bar(i);
            let top = y(h.row(a.pid)) + 5;
            let bar =
                Rectangle::new([(x(a.start), top), (x(end).max(x(a.start) + 2), top + LANE - 10)], colour.filled());
            root.draw(&bar).map_err(err)?;
            if a.tag != WARMUP_TAG {
                root.draw(&text(&a.tag.to_string(), (x(a.start) + 2, top + 3), 10)).map_err(err)?;
            }
            if context.faults.iter().any(|(tag, times)| *tag == a.tag && a.attempt < *times) {
                let (cx, cy) = (x(end), top + (LANE - 10) / 2);
                let diamond = vec![(cx, cy - 6), (cx + 6, cy), (cx, cy + 6), (cx - 6, cy)];
                root.draw(&Polygon::new(diamond, FAULT.filled())).map_err(err)?;
            }
        }
        for (t, pid) in &h.strikes {
            root.draw(&Cross::new((x(*t), y(h.row(*pid)) + LANE / 2), 6, BLACK.stroke_width(2))).map_err(err)?;
        }
        for (t, pid) in &h.ooms {
            root.draw(&TriangleMarker::new((x(*t), y(h.row(*pid)) + LANE / 2), 7, OOM.filled())).map_err(err)?;
        }
        let bottom = y(rows as usize);
        let deadline = context.deadline_ms.or(h.deadline);
        let mut verticals = vec![(h.judged, BLACK, "judged")];
        if let Some(d) = deadline {
            verticals.push((d, ERROR, "deadline"));
        }
        for (t, colour, label) in verticals {
            root.draw(&PathElement::new(vec![(x(t), TOP - 4), (x(t), bottom)], colour.stroke_width(2))).map_err(err)?;
            let label = format!("{label} {t} ms");
            let row = if label.starts_with("deadline") { TOP - 14 } else { TOP - 26 };
            // Left of its line when near the right edge; right of it otherwise.
            let left = x(t) + 6 * label.len() as i32 > WIDTH as i32 - 5;
            let at = if left { (x(t) - 3 - 5 * label.len() as i32, row) } else { (x(t) + 3, row) };
            root.draw(&text(&label, at, 10)).map_err(err)?;
        }
        axis(&root, span, bottom, &x)?;
    }
    Ok(out)
}

/// The time axis (ms) and the legend.
fn axis(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    span: u64,
    bottom: i32,
    x: &dyn Fn(u64) -> i32,
) -> anyhow::Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the timeline: {e}");
    root.draw(&PathElement::new(vec![(x(0), bottom), (x(span), bottom)], BLACK)).map_err(err)?;
    let step = [1, 2, 5]
        .iter()
        .flat_map(|m| [1u64, 10, 100, 1000, 10_000, 100_000].map(|p| m * p))
        .filter(|s| span / s <= 10)
        .min()
        .unwrap_or(span);
    for tick in (0..=span).step_by(step as usize) {
        root.draw(&PathElement::new(vec![(x(tick), bottom), (x(tick), bottom + 4)], BLACK)).map_err(err)?;
        root.draw(&Text::new(format!("{tick}"), (x(tick) - 8, bottom + 7), ("sans-serif", 10))).map_err(err)?;
    }
    root.draw(&Text::new("ms since the run started".to_string(), (10, bottom + 7), ("sans-serif", 10))).map_err(err)?;
    let legend = [
        (OK, "ok"),
        (TASK_ERROR, "task error"),
        (ERROR, "other error"),
        (WRONG, "wrong result"),
        (RETRIED, "retried"),
        (PENDING, "no outcome"),
    ];
    let ly = bottom + 30;
    let mut lx = 10;
    for (colour, label) in legend {
        root.draw(&Rectangle::new([(lx, ly), (lx + 14, ly + 10)], colour.filled())).map_err(err)?;
        root.draw(&Text::new(label.to_string(), (lx + 18, ly), ("sans-serif", 10))).map_err(err)?;
        lx += 30 + 6 * label.len() as i32;
    }
    root.draw(&Cross::new((lx + 5, ly + 5), 5, BLACK.stroke_width(2))).map_err(err)?;
    root.draw(&Text::new("strike from outside".to_string(), (lx + 14, ly), ("sans-serif", 10))).map_err(err)?;
    lx += 130;
    root.draw(&TriangleMarker::new((lx + 5, ly + 5), 6, OOM.filled())).map_err(err)?;
    root.draw(&Text::new("OOM kill".to_string(), (lx + 14, ly), ("sans-serif", 10))).map_err(err)?;
    lx += 70;
    root.draw(&Polygon::new(vec![(lx + 5, ly), (lx + 10, ly + 5), (lx + 5, ly + 10), (lx, ly + 5)], FAULT.filled()))
        .map_err(err)?;
    root.draw(&Text::new("self-placed fault".to_string(), (lx + 14, ly), ("sans-serif", 10))).map_err(err)?;
    Ok(())
}

/// Where the timeline of the run whose event log is at `events` goes:
/// beside it, `NAME.timeline.svg` for `NAME.events.jsonl`.
pub fn path_for(events: &str) -> String {
    format!("{}.timeline.svg", events.strip_suffix(".events.jsonl").unwrap_or(events))
}

/// The event log at `path`, read back (one [`Logged`] a line).
pub fn read_events(path: &std::path::Path) -> anyhow::Result<Vec<Logged>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not an event", path.display(), i + 1)))
        .collect()
}

impl Context {
    /// The context of a run of `plan`: its name, deadline and self-placed faults.
    pub fn of(plan: &crate::scenario::plan::Plan) -> Context {
        Context {
            title: format!("{} / {} (seed {})", plan.scenario, plan.pool.name(), plan.seed),
            deadline_ms: Some(plan.deadline.as_millis() as u64),
            faults: plan.tasks.iter().filter_map(|t| t.fault.map(|f| (t.tag, f.times))).collect(),
        }
    }
}

/// Writes the timeline of the event log at `events` beside it (`poolchaos
/// explain --timeline`); with the run's scenario, its plan (for its first
/// target and `seed`) gives the deadline and the self-placed faults.
/// Returns the SVG's path.
pub fn write_beside(
    events: &std::path::Path,
    scenario: Option<&crate::scenario::Scenario>,
    seed: u64,
) -> anyhow::Result<String> {
    let logged = read_events(events)?;
    let mut context = match scenario.and_then(|s| s.expect.first().map(|(target, _)| (s, target))) {
        Some((s, target)) => Context::of(&crate::scenario::plan::Plan::new(s, target.clone(), s.seed.unwrap_or(seed))),
        None => Context::default(),
    };
    let name = events.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    context.title = name.strip_suffix(".events.jsonl").unwrap_or(&name).replace("--", " / ");
    let path = path_for(&events.display().to_string());
    std::fs::write(&path, svg(&logged, &context)?).map_err(|e| anyhow::anyhow!("writing {path}: {e}"))?;
    Ok(path)
}
