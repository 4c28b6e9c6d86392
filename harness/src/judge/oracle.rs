//! Oracles: the verdict each pool must reach for a plan, from what is known
//! of its design, and from what the nemesis actually hit (the event log says
//! which strikes landed on a worker in the middle of a task).
//!
//! | pool | must be |
//! |---|---|
//! | naive, seed-polling | hung iff a worker died or stalled mid-task (a deadly, stalling or OOM fault, or a strike from outside) |
//! | polling | failed-loudly iff a worker died with results pending; hung iff a task stalled and none died |
//! | per-task | failed-loudly iff a task faulted or was struck mid-task (deadline set), or raised |
//! | supervised | completed, unless a task is poison or out of attempts, or raised: failed-loudly |
//!
//! At the points in the parent, for our pools: a deadly fault there kills
//! the owner (`owner-killed`), a stalling one stalls the thread that encodes,
//! decodes or calls back (`hung`); a result that fails to decode, or a
//! raising callback, kills the naive family's result handler thread, as
//! CPython's (`hung`), while per-task and supervised fail that task alone
//! (`decode-result`) or catch the callback's panic (the outcomes stand); a
//! task that fails to encode fails alone everywhere. `close`, `join` are a
//! worker dying mid-task; `terminate` fails what is pending as terminated.
//! At `spawn` (the kernel refuses every fork once the pool is warm) a
//! death is never made good by a new process: per-task runs only its
//! spares (one per slot), so a plan of more tasks than workers fails
//! loudly (`spawn-failed`); supervised runs on with what it has, and fails
//! loudly once its workers and its standby are all dead.
//! Faults that fire outside a task's own run in our pools (`init`,
//! `recycle`, `after-result`) are judged apart first (`outside`).
//!
//! Where the pool's documented behaviour races (naive, when the nemesis
//! struck a worker between tasks: it may have held the inqueue lock, or
//! merely waited for it; a death while a result is half-written), the
//! oracle gives the set of verdicts the race allows ([`Expectation::OneOf`]).
//! So it does where no one can order a strike against the task it hit (see
//! [`Strike`]): every reading is judged and the union taken. A finding is
//! a verdict outside the set; `Undetermined` is left for what the plan
//! cannot tell at all (a command's design, a plan that kills the owner).

use std::fmt;

use pools::{Fault, FaultKind, FaultPoint, PoolKind};

use crate::judge::verdict::Verdict;
use crate::protocol::{Event, Signal};
use crate::run::events::Logged;
use crate::scenario::plan::Plan;
use crate::target::Target;

/// What a pool does by design beyond its verdict: facts the checker holds
/// it to, declared here per pool, not guessed from a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Design {
    /// A fault may fail tasks it did not touch: `polling` and the executors
    /// break whole (`PoolBroken` for every pending task), and
    /// `multiprocessing.Pool.map` raises one error for the whole call. A
    /// command's design is not known, so it is not held to per-task failures.
    pub fails_bystanders: bool,
    /// The owner reports callbacks (`apply_async`: one per task; `map_async`:
    /// one per batch). The executors' adapters call back per future and a
    /// refused submit gets none; `py-process-per-task` has no callbacks.
    pub callbacks: bool,
}

/// What `target` does by design.
pub fn design(target: &Target) -> Design {
    match target {
        Target::Pool(kind) => Design { fails_bystanders: *kind == PoolKind::Polling, callbacks: true },
        Target::Python(py) => Design {
            fails_bystanders: matches!(
                py.name,
                "py-pool-map"
                    | "py-pool-map-async"
                    | "py-seed-polling"
                    | "py-seed-polling-async"
                    | "py-ppe"
                    | "py-loky"
            ),
            callbacks: matches!(py.name, "py-pool-apply-async" | "py-pool-map-async" | "py-billiard"),
        },
        Target::Command(_) => Design { fails_bystanders: true, callbacks: false },
    }
}

/// What a pool must do with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    Verdict(Verdict, String),
    /// Any of these verdicts (at least two, in [`Verdict`]'s order): a race
    /// the pool's documented behaviour allows either way; the reason names it.
    OneOf(Vec<Verdict>, String),
    /// The plan does not decide it; the reason says why.
    Undetermined(String),
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Verdict(v, why) => write!(f, "{v} ({why})"),
            Expectation::OneOf(vs, why) => write!(f, "{} ({why})", one_of(vs)),
            Expectation::Undetermined(why) => write!(f, "undetermined ({why})"),
        }
    }
}

/// `completed or failed-loudly`.
pub fn one_of(verdicts: &[Verdict]) -> String {
    verdicts.iter().map(Verdict::to_string).collect::<Vec<_>>().join(" or ")
}

impl Expectation {
    /// The verdicts allowed (empty: undetermined).
    pub fn verdicts(&self) -> Vec<Verdict> {
        match self {
            Expectation::Verdict(v, _) => vec![*v],
            Expectation::OneOf(vs, _) => vs.clone(),
            Expectation::Undetermined(_) => Vec::new(),
        }
    }

    /// Whether `verdict` is allowed; `None` when the plan does not decide.
    pub fn allows(&self, verdict: Verdict) -> Option<bool> {
        match self {
            Expectation::Undetermined(_) => None,
            e => Some(e.verdicts().contains(&verdict)),
        }
    }

    /// Either expectation's verdicts: the set of both (undetermined if either is).
    fn or(self, other: Expectation) -> Expectation {
        let (mine, theirs) = (self.verdicts(), other.verdicts());
        match (self, other) {
            (u @ Expectation::Undetermined(_), _) | (_, u @ Expectation::Undetermined(_)) => u,
            (a, _) if theirs.iter().all(|v| mine.contains(v)) => a,
            (a, b) => {
                let mut all: Vec<Verdict> = mine.into_iter().chain(theirs).collect();
                all.sort();
                all.dedup();
                Expectation::OneOf(all, format!("{}; or {}", a.why(), b.why()))
            }
        }
    }

    fn why(&self) -> &str {
        match self {
            Expectation::Verdict(_, why) | Expectation::OneOf(_, why) | Expectation::Undetermined(why) => why,
        }
    }
}

/// `verdict`, or whatever `rest` allows: the race `why` names decides which.
fn or_else(verdict: Verdict, why: &str, rest: Expectation) -> Expectation {
    v(verdict, why).or(rest)
}

/// What happened to the tasks of a plan, as far as an oracle cares.
#[derive(Debug, Default, Clone)]
struct Facts {
    /// Tasks whose own fault kills their worker, on how many attempts (OOM: every one).
    deadly: Vec<(usize, u32)>,
    /// Tasks whose own fault stalls their worker (hang, SIGSTOP).
    stalls: Vec<(usize, u32)>,
    /// Tasks that raise or panic, on how many attempts.
    raises: Vec<(usize, u32)>,
    /// Where the deadly self-placed faults fire.
    deadly_points: Vec<FaultPoint>,
    /// A task's own fault is a SIGSTOP.
    stalls_stop: bool,
    /// A task's own fault is `exit(0)`.
    exits_zero: bool,
    /// SIGKILLs from outside that landed on a worker mid-task, and on which task.
    struck: Vec<u64>,
    /// SIGSTOPs from outside that landed mid-task.
    stopped: Vec<u64>,
    /// Every strike that landed mid-task: the task and its attempt (as the trace numbers them).
    struck_attempts: Vec<(u64, u32)>,
    /// Strikes that landed on a worker between tasks.
    idle_strikes: usize,
    /// A task's fault is at `spawn`: the run's forks are refused once the pool is warm.
    limited: bool,
    /// Tasks whose fault fires outside their own run in our pools: as
    /// workers start (`init`, `recycle`: the task only carries it) or after
    /// the task's result is sent (`after-result`). Counted above as for the
    /// Python targets; [`ours`] takes them out and judges them apart.
    outside: Vec<usize>,
    /// The plan's fault placed as workers start (`init`, `recycle`).
    start: Option<Fault>,
    /// Tasks whose worker dies (a deadly kind), or stalls, once their result is sent.
    after_result_deaths: usize,
    after_result_stalls: usize,
}

impl Facts {
    /// A task's own fault kills its worker, or a SIGKILL from outside landed mid-task.
    fn died(&self) -> bool {
        !self.deadly.is_empty() || !self.struck.is_empty()
    }

    /// A task's own fault stalls its worker, or a SIGSTOP from outside landed mid-task.
    fn stalled(&self) -> bool {
        !self.stalls.is_empty() || !self.stopped.is_empty()
    }
}

fn facts(plan: &Plan) -> Facts {
    let mut f = Facts { limited: plan.limits_spawns(), ..Facts::default() };
    for (i, task) in plan.tasks.iter().enumerate() {
        if plan.is_oom(task) {
            f.deadly.push((i, u32::MAX));
        }
        let Some(fault) = task.fault else { continue };
        match fault.point {
            FaultPoint::Init | FaultPoint::Recycle => {
                f.start.get_or_insert(fault);
                f.outside.push(i);
            }
            FaultPoint::AfterResult => {
                f.after_result_deaths += usize::from(fault.kind.kills_worker());
                f.after_result_stalls += usize::from(matches!(fault.kind, FaultKind::Hang | FaultKind::SigStop));
                f.outside.push(i);
            }
            _ => {}
        }
        f.stalls_stop |= fault.kind == FaultKind::SigStop;
        f.exits_zero |= fault.kind == FaultKind::Exit(0);
        match fault.kind {
            FaultKind::Error | FaultKind::Panic => f.raises.push((i, fault.times)),
            FaultKind::Hang | FaultKind::SigStop => f.stalls.push((i, fault.times)),
            kind if kind.kills_worker() => {
                f.deadly.push((i, fault.times));
                f.deadly_points.push(fault.point);
            }
            _ => {}
        }
    }
    f
}

/// A strike from outside, and the tasks it may have hit (`None`: its
/// worker was between tasks). The trace is read from a pipe while the
/// nemesis logs its strikes as it sends them, so a worker's `start` line
/// may be logged after the strike that killed it: the task a struck worker
/// ran last, wherever its line is, is the one it was running. Where that
/// task's `done` line is logged after the strike, or not before it, the
/// strike may have come as the task ended: its result, or its error, sent
/// or half-written or still in the worker's buffer. No one can order
/// those, so both readings stand.
#[derive(Debug, Clone)]
struct Strike {
    signal: Signal,
    /// The task and its attempt, or none.
    hits: Vec<Option<(u64, u32)>>,
}

fn strikes(events: &[Logged]) -> Vec<Strike> {
    let mut out = Vec::new();
    for (at, logged) in events.iter().enumerate() {
        let Event::Nemesis { signal, pid, .. } = &logged.event else { continue };
        // A struck worker starts nothing after the strike: its last `start` line is the task it ran last.
        let last = events.iter().enumerate().rev().find_map(|(i, l)| match l.event {
            Event::TaskStarted { tag, attempt, pid: p } if p == *pid => Some((i, tag, attempt)),
            _ => None,
        });
        let hits = match last {
            None => vec![None],
            Some((started, tag, attempt)) => {
                let done = events.iter().enumerate().skip(started).find_map(|(i, l)| match l.event {
                    Event::TaskDone { tag: t, attempt: a, pid: p } if p == *pid && t == tag && a == attempt => Some(i),
                    _ => None,
                });
                match done {
                    // Done before the strike was sent: the worker was between tasks.
                    Some(done) if done < at => vec![None],
                    // Done after: as it ended (its line in the pipe, its result in flight).
                    Some(_) => vec![Some((tag, attempt)), None],
                    // Never done: mid-task.
                    None => vec![Some((tag, attempt))],
                }
            }
        };
        out.push(Strike { signal: *signal, hits });
    }
    out
}

/// `f` with the strikes read as `choice` says (an index into each ambiguous strike's hits).
fn struck(mut f: Facts, strikes: &[Strike], choice: u32) -> Facts {
    let mut bit = 0;
    for strike in strikes {
        let hit = match strike.hits.as_slice() {
            [one] => *one,
            hits => {
                let pick = choice.checked_shr(bit).map_or(choice & 1, |c| c & 1);
                bit += 1;
                hits[pick as usize]
            }
        };
        match (hit, strike.signal) {
            (Some((tag, _)), Signal::Sigkill) => f.struck.push(tag),
            (Some((tag, _)), _) => f.stopped.push(tag),
            (None, _) => f.idle_strikes += 1,
        }
        f.struck_attempts.extend(hit);
    }
    f
}

/// At most this many ambiguous strikes are read every way (2^n readings);
/// past it, only the two extremes (every one a hit, none a hit).
const READINGS: usize = 8;

/// The verdicts `target` may reach on `plan`, given the run's events: the
/// union over every reading of the strikes that cannot be ordered.
pub fn expect(target: &Target, plan: &Plan, events: &[Logged]) -> Expectation {
    let base = facts(plan);
    let strikes = strikes(events);
    let ambiguous = strikes.iter().filter(|s| s.hits.len() > 1).count();
    let choices: Vec<u32> = if ambiguous <= READINGS { (0..1u32 << ambiguous).collect() } else { vec![0, u32::MAX] };
    let mut readings =
        choices.into_iter().map(|choice| expect_with(target, plan, &struck(base.clone(), &strikes, choice)));
    let first = readings.next().unwrap_or_else(|| expect_with(target, plan, &base));
    readings.fold(first, Expectation::or)
}

/// The verdict `target` must reach on `plan`, the strikes read as in `f`.
fn expect_with(target: &Target, plan: &Plan, f: &Facts) -> Expectation {
    let owner_killed =
        plan.nemesis.iter().any(|n| n.target == crate::scenario::Aim::Owner && n.signal == Signal::Sigkill);
    if owner_killed {
        return Expectation::Undetermined("the plan kills the owner".into());
    }
    let pickled = |p: FaultPoint| matches!(p, FaultPoint::Encode | FaultPoint::Decode);
    match target {
        Target::Pool(kind) => ours(*kind, plan, f),
        Target::Python(py)
            if py.name == "py-process-per-task"
                && py.method.is_none_or(|m| m.as_str() == "fork")
                && plan.tasks.iter().filter_map(|t| t.fault).any(|t| pickled(t.point)) =>
        {
            v(Verdict::NotApplicable, "under fork a task's process has its task by memory: nothing is pickled")
        }
        Target::Python(py) if f.limited && py.method.is_some_and(|m| m.as_str() != "fork") => {
            Expectation::Undetermined(format!(
                "the refused fork under {} was not observed",
                py.method.map_or("", |m| m.as_str())
            ))
        }
        Target::Python(py) => python(py.name, plan, f),
        Target::Command(_) => Expectation::Undetermined("a command's design is not known".into()),
    }
}

fn v(verdict: Verdict, why: &str) -> Expectation {
    Expectation::Verdict(verdict, why.to_string())
}

/// Any of `verdicts` (in [`Verdict`]'s order), for the race `why` names.
fn one(verdicts: &[Verdict], why: &str) -> Expectation {
    let mut all = verdicts.to_vec();
    all.sort();
    all.dedup();
    match all.as_slice() {
        [only] => v(*only, why),
        _ => Expectation::OneOf(all, why.to_string()),
    }
}

/// What is left when no worker died or stalled: the raising tasks fail, the rest complete.
fn plain(raises: usize) -> Expectation {
    if raises > 0 {
        v(Verdict::FailedLoudly, "a task raises")
    } else {
        v(Verdict::Completed, "no fault reaches a worker")
    }
}

/// Our pools at the points in the parent (`encode`, `decode-result`,
/// `callback`) and in the pool's end (`terminate`), where they differ from
/// what a worker's fault does; `None` where the plan's faults are judged
/// like a worker's (`encode` and `decode-result` raising in ours fail their
/// task; `close` and `join` are a worker dying mid-task).
fn ours_in_parent(pool: PoolKind, plan: &Plan) -> Option<Expectation> {
    use FaultPoint::{Callback, Close, DecodeResult, Join, Terminate};
    let asynchronous = matches!(plan.style, pools::CallStyle::ApplyAsync | pools::CallStyle::MapAsync);
    let points: Vec<FaultPoint> = plan.tasks.iter().filter_map(|t| t.fault).map(|f| f.point).collect();
    if !asynchronous && points.iter().any(|p| matches!(p, Callback | Close | Terminate | Join)) {
        return Some(v(Verdict::NotApplicable, "only an asynchronous call has callbacks, or runs while the pool ends"));
    }
    if plan.kills_owner() {
        return Some(v(Verdict::OwnerKilled, "a deadly fault in the parent kills the pool's owner"));
    }
    let stalls = |f: &pools::Fault| matches!(f.kind, FaultKind::Hang | FaultKind::SigStop);
    if plan.parent_faults().any(|f| stalls(&f)) {
        return Some(v(Verdict::Hung, "the parent's thread stalls where it encodes, decodes or calls back"));
    }
    let cpython = matches!(pool, PoolKind::Naive | PoolKind::SeedPolling | PoolKind::Polling);
    if cpython && plan.parent_faults().any(|f| matches!(f.point, DecodeResult | Callback)) {
        return Some(v(
            Verdict::Hung,
            "the result handler thread dies of a result that fails to decode, or a raising callback, as CPython's",
        ));
    }
    if points.contains(&Terminate) {
        return Some(v(
            Verdict::FailedLoudly,
            "the owner terminates the pool with tasks pending: they fail terminated",
        ));
    }
    None
}

/// Our pools at the faults that fire outside a task's own run (see
/// [`Facts::outside`]): `Some` when they decide the verdict, `None` when
/// the rest of the plan does (read with those faults taken out).
///
/// - As workers start (`init`, `recycle`; a start token per start, the
///   first `times` starts fire, after the first `workers` for `recycle`,
///   whose workers run one task each). A death at start holds no lock and
///   no task. Naive and seed-polling replace the worker, for ever if every
///   start dies (as CPython's pool does: hung); polling breaks on the
///   death; per-task and supervised charge nothing, and fail the queued
///   tasks after `START_DEATHS` in a row. With `recycle` the first
///   `workers` tasks run on the first workers whatever happens next.
/// - After a result is sent (`after-result`): the task has its result;
///   the dead worker held nothing. Polling breaks on the death, failing
///   what is pending then (a race with the other tasks).
fn outside(pool: PoolKind, plan: &Plan, f: &Facts) -> Option<Expectation> {
    let naive = matches!(pool, PoolKind::Naive | PoolKind::SeedPolling);
    if let Some(start) = f.start {
        let always = start.times == Fault::ALWAYS;
        let starved = match start.point {
            // The first `workers` tasks ran on the first workers.
            FaultPoint::Recycle => plan.tasks.len() > plan.workers,
            _ => true,
        };
        if matches!(start.kind, FaultKind::Hang | FaultKind::SigStop) {
            return Some(Expectation::Undetermined("a worker stalls as it starts".into()));
        }
        let few = start.times < pools::pool::START_DEATHS;
        match pool {
            PoolKind::Polling if start.point == FaultPoint::Init => {
                return Some(v(Verdict::FailedLoudly, "a worker died as it started: polling breaks the pool"));
            }
            PoolKind::Polling if always && starved => {
                return Some(v(Verdict::FailedLoudly, "every replacement dies as it starts: polling breaks the pool"));
            }
            PoolKind::Polling => {
                return Some(or_else(
                    Verdict::FailedLoudly,
                    "a replacement died as it started: polling breaks the pool if a task was pending then",
                    ours_inside(pool, plan, f),
                ));
            }
            _ if always && starved && naive => {
                return Some(v(
                    Verdict::Hung,
                    "every worker start dies: the pool replaces them for ever (as CPython's)",
                ));
            }
            _ if always && starved => {
                return Some(v(Verdict::FailedLoudly, "every worker start dies: the queued tasks fail"));
            }
            _ if !always && !few => {
                return Some(or_else(
                    Verdict::FailedLoudly,
                    "many worker starts die in a row: the queue fails unless a worker started meanwhile",
                    ours_inside(pool, plan, f),
                ));
            }
            _ => {}
        }
    }
    if f.after_result_stalls > 0 {
        return Some(match pool {
            _ if naive || pool == PoolKind::Polling => {
                v(Verdict::Hung, "a worker stalls after its result: it never takes its stop sentinel")
            }
            _ if plan.task_timeout.is_some() => return None,
            _ => Expectation::Undetermined("a worker stalls after its result, and there is no deadline".into()),
        });
    }
    if f.after_result_deaths > 0 && pool == PoolKind::Polling {
        return Some(or_else(
            Verdict::FailedLoudly,
            "a worker died after its result: polling breaks the pool if a task was pending then",
            ours_inside(pool, plan, f),
        ));
    }
    None
}

fn ours(pool: PoolKind, plan: &Plan, f: &Facts) -> Expectation {
    if let Some(expectation) = ours_in_parent(pool, plan) {
        return expectation;
    }
    if let Some(expectation) = outside(pool, plan, f) {
        return expectation;
    }
    ours_inside(pool, plan, f)
}

/// Our pools at the plan's faults that fire inside a task's own run (those
/// judged apart, [`outside`], taken out).
fn ours_inside(pool: PoolKind, plan: &Plan, f: &Facts) -> Expectation {
    let mut f = f.clone();
    let inside = |&(i, _): &(usize, u32)| !f.outside.contains(&i) || plan.is_oom(&plan.tasks[i]);
    f.deadly.retain(inside);
    f.stalls.retain(inside);
    f.raises.retain(inside);
    let f = &f;
    let raises = f.raises.iter().filter(|&&(i, _)| !in_callback(plan, i)).count();
    match pool {
        PoolKind::Naive | PoolKind::SeedPolling => {
            if f.died() || f.stalled() {
                v(Verdict::Hung, "a worker died or stalled mid-task")
            } else if f.idle_strikes > 0 {
                or_else(
                    Verdict::Hung,
                    "a worker was struck between tasks: it may have held the inqueue lock",
                    plain(raises),
                )
            } else {
                plain(raises)
            }
        }
        PoolKind::Polling => {
            if f.died() || f.idle_strikes > 0 {
                v(Verdict::FailedLoudly, "a worker died with results pending")
            } else if f.stalled() {
                v(Verdict::Hung, "a task stalled and polling has no deadline")
            } else {
                plain(raises)
            }
        }
        PoolKind::PerTask => per_task_inside(plan, f, raises),
        PoolKind::Supervised | PoolKind::Planted(_) => supervised_inside(plan, f),
    }
}

/// A raising callback in per-task and supervised is caught: its task's outcome stands.
fn in_callback(plan: &Plan, i: usize) -> bool {
    plan.tasks[i].fault.is_some_and(|f| f.point == FaultPoint::Callback)
}

/// [`ours_inside`] for per-task: `raises` is the count of raising tasks (callbacks' taken out).
fn per_task_inside(plan: &Plan, f: &Facts, raises: usize) -> Expectation {
    let stalled = f.stalled();
    if stalled && plan.task_timeout.is_none() {
        v(Verdict::Hung, "a task stalled and there is no deadline")
    } else if f.limited && plan.tasks.len() > plan.workers {
        v(Verdict::FailedLoudly, "forks are refused: the tasks past the spares get no process (spawn-failed)")
    } else if f.died() || stalled {
        v(Verdict::FailedLoudly, "a task's process died or was killed at its deadline")
    } else if f.idle_strikes > 0 {
        or_else(Verdict::FailedLoudly, "a process was struck after its task: before or after its result", plain(raises))
    } else {
        plain(raises)
    }
}

/// [`ours_inside`] for supervised (and the planted bugs on it): deaths and
/// strikes are charged against each task's `max_attempts`.
fn supervised_inside(plan: &Plan, f: &Facts) -> Expectation {
    if f.stalled() && plan.task_timeout.is_none() {
        return v(Verdict::Hung, "a task stalled and there is no deadline");
    }
    let max = plan.max_attempts;
    let poison = f.deadly.iter().chain(&f.stalls).any(|&(_, times)| times >= max);
    // Strikes from outside are charged like deaths: an attempt its own
    // deadly or stalling fault ends anyway costs nothing more; a strike
    // on a later attempt does, and too many exhaust the task.
    let mut strikes: Vec<(u64, u32)> = f.struck_attempts.clone();
    strikes.sort_unstable();
    strikes.dedup();
    let struck_below = |tag: u64, below: u32| strikes.iter().filter(|&&(t, a)| t == tag && a < below).count();
    let exhausted = strikes.chunk_by(|a, b| a.0 == b.0).any(|run| {
        // Its own fault, unless it fires outside its run (judged apart).
        let own = plan.tasks.iter().position(|t| t.tag == run[0].0);
        let own = own.filter(|i| !f.outside.contains(i)).and_then(|i| plan.tasks[i].fault);
        let own = own.filter(|f| f.kind.kills_worker() || matches!(f.kind, FaultKind::Hang | FaultKind::SigStop));
        let times = own.map_or(0, |f| f.times);
        let later = run.iter().filter(|&&(_, attempt)| attempt >= times).count() as u32;
        times.saturating_add(later) >= max
    });
    // A raising task struck mid-task before its error fired is retried, and the
    // retry raises only if the fault fires on that attempt too: it fails
    // unless every attempt the fault fires on was struck.
    let raises = f
        .raises
        .iter()
        .filter(|&&(i, times)| !in_callback(plan, i) && (struck_below(plan.tasks[i].tag, times) as u32) < times)
        .count();
    // Under the `spawn` limit no death is replaced: N workers and the standby, then none.
    let killing = f.deadly.iter().chain(plan.task_timeout.map_or(&[][..], |_| &f.stalls[..]));
    let deaths: u64 = killing.map(|&(_, times)| u64::from(times.min(max))).sum::<u64>() + strikes.len() as u64;
    if poison || exhausted {
        v(Verdict::FailedLoudly, "a task is poison or ran out of attempts")
    } else if f.limited && deaths > plan.workers as u64 {
        v(Verdict::FailedLoudly, "forks are refused and every worker and the standby died (spawn-failed)")
    } else {
        plain(raises)
    }
}

/// The Python targets, from their documented behaviour (docs/targets.md;
/// finding numbers there). A campaign's plan has a task timeout, so pools
/// that have one use it.
fn python(name: &str, plan: &Plan, f: &Facts) -> Expectation {
    if let Some(expectation) = python_refused_fork(name, f) {
        return expectation;
    }
    let raises = f.raises.len();
    match name {
        // multiprocessing.Pool's map: chunks, each run in order until a task raises.
        "py-pool-map" | "py-pool-map-async" | "py-seed-polling" => pool_map(plan, f),
        // multiprocessing.Pool: a lost task is never failed, and there is no task timeout.
        "py-pool-apply" | "py-pool-apply-async" => {
            if f.died() || f.stalled() {
                v(Verdict::Hung, "a worker died or stalled mid-task: Pool never fails the task")
            } else if f.idle_strikes > 0 {
                or_else(
                    Verdict::Hung,
                    "a worker was struck between tasks: it may have held the inqueue lock",
                    plain(raises),
                )
            } else {
                plain(raises)
            }
        }
        "py-ppe" | "py-loky" => executor(name, f),
        "py-pebble" => pebble(plan, f),
        "py-billiard" => billiard(plan, f),
        "py-process-per-task" => {
            if f.stalled() && plan.task_timeout.is_none() {
                v(Verdict::Hung, "a task stalled and there is no deadline")
            } else if f.died() || f.stalled() {
                v(Verdict::FailedLoudly, "a task's process died or was killed at its deadline")
            } else {
                plain(raises)
            }
        }
        _ => Expectation::Undetermined(format!("no oracle for {name}")),
    }
}

/// The Python targets under the `spawn` limit (docs/targets.md, "A refused
/// fork"), where it decides; `None` where the target's own oracle does.
fn python_refused_fork(name: &str, f: &Facts) -> Option<Expectation> {
    if !f.limited {
        return None;
    }
    let died = f.died();
    Some(match name {
        "py-process-per-task" => v(Verdict::FailedLoudly, "forks are refused: no task gets a process (spawn-failed)"),
        "py-loky" if died || f.idle_strikes > 0 => v(
            Verdict::Hung,
            "a worker died and forks are refused: killing the broken executor's workers forks `pgrep`, \
             its manager thread dies of it, and the owner waits for a surviving worker at exit (docs/targets.md, \"A refused fork\")",
        ),
        "py-billiard" if died => v(
            Verdict::Leaked,
            "a worker died and forks are refused: billiard's Supervisor thread crashes on the refused \
             replacement and calls os._exit(1), leaving its temp dir (docs/targets.md, \"A refused fork\")",
        ),
        "py-pebble" if died => or_else(
            Verdict::FailedLoudly,
            "a worker died and forks are refused: pebble breaks at its next look (0.1 s), failing what is \
             pending then as pool-broken",
            plain(f.raises.len()),
        ),
        _ => return None,
    })
}

/// ProcessPoolExecutor and loky: they break whole at any death, and have no task timeout.
fn executor(name: &str, f: &Facts) -> Expectation {
    let died = f.died();
    if f.deadly_points.contains(&FaultPoint::WriteResult) {
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "a worker died writing its result: the executor waits on the torn frame (finding 12), \
             unless another death broke it first",
        )
    } else if name == "py-ppe" && died && (f.stalls_stop || !f.stopped.is_empty()) {
        // Which comes first is a race: a worker stopped before the executor breaks
        // ignores its SIGTERM and join() waits for it forever; stopped after, it fails loudly.
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "a death and a stop: stopped before the break, the worker hangs join() (finding 11)",
        )
    } else if died || f.idle_strikes > 0 {
        v(Verdict::FailedLoudly, "a worker died: the executor breaks (BrokenProcessPool for every pending task)")
    } else if f.stalled() {
        v(Verdict::Hung, "a task stalled and the executor has no task timeout")
    } else {
        plain(f.raises.len())
    }
}

/// pebble: a task fails alone (ProcessExpired, or at its timeout), but its
/// channel's lock can hang the pool (findings 3, 4 and 6).
fn pebble(plan: &Plan, f: &Facts) -> Expectation {
    let (died, stalled) = (f.died(), f.stalled());
    if f.deadly_points.contains(&FaultPoint::WriteResult) {
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "a worker died sending its result: it holds the channel's lock, which hangs the pool if \
             another result is still to be sent; if none is, its task fails alone (finding 4)",
        )
    } else if !f.stopped.is_empty() || f.stalls_stop {
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "a stopped worker stalls the pool 3 s (finding 6): within the deadline or not",
        )
    } else if stalled && plan.task_timeout.is_none() {
        v(Verdict::Hung, "a task stalled and there is no task timeout")
    } else if f.exits_zero && plan.task_timeout.is_none() {
        v(Verdict::Hung, "a worker exited 0 mid-task: pebble never fails its task (finding 3)")
    } else if died || stalled || f.exits_zero {
        v(Verdict::FailedLoudly, "a killed task fails alone (ProcessExpired), a stalled or exit(0) one at its timeout")
    } else if f.idle_strikes > 0 {
        or_else(
            Verdict::FailedLoudly,
            "a worker was struck between tasks: a task sent to it just then fails (ProcessExpired)",
            or_else(Verdict::Hung, "or it held the channel's lock (finding 4)", plain(f.raises.len())),
        )
    } else {
        plain(f.raises.len())
    }
}

/// billiard: its time limit fails a lost or stalled task, counted from the
/// task's acknowledgement (findings 2, 9 and 12).
fn billiard(plan: &Plan, f: &Facts) -> Expectation {
    let (died, stalled) = (f.died(), f.stalled());
    if f.deadly_points.contains(&FaultPoint::Decode) && plan.deadline < BILLIARD_LOST_WORKER {
        // Found by the seed 11 campaign (a `sigkill` at `decode` alone, 3 of 3 replays).
        v(
            Verdict::Hung,
            "a worker died unpickling its task, before it acknowledged it: billiard's time limit \
             counts from the acknowledgement, so nothing fails that task within the deadline",
        )
    } else if f.deadly_points.contains(&FaultPoint::WriteResult) {
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "a worker died writing its result: the result handler waits on the torn frame (finding 12), \
             unless the time limit fails the task first",
        )
    } else if f.idle_strikes > 0 {
        // Finding 2 is the idle worker blocked in its read: the lock holder. Any
        // worker struck between tasks may be that one, or merely wait for the lock.
        let rest = billiard(plan, &Facts { idle_strikes: 0, ..f.clone() });
        or_else(Verdict::Hung, "a worker was struck between tasks: it may have held the lock (finding 2)", rest)
    } else if (died || stalled) && plan.task_timeout.is_none() {
        one(
            &[Verdict::FailedLoudly, Verdict::Hung],
            "without a time limit a lost task fails after the 10 s lost-worker timeout (finding 9)",
        )
    } else if died || stalled {
        v(Verdict::FailedLoudly, "the time limit fails a lost or stalled task as timed-out (finding 9)")
    } else {
        plain(f.raises.len())
    }
}

/// billiard's lost-worker timeout and its check (docs/targets.md, finding 9):
/// before it, a task whose worker died unacknowledged is not failed.
const BILLIARD_LOST_WORKER: std::time::Duration = std::time::Duration::from_secs(12);

/// `multiprocessing.Pool.map` and `map_async` (CPython 3.11 `pool.py`): the
/// tasks go out in chunks (`chunksize` = ⌈tasks ÷ (4 × workers)⌉ unless set),
/// and a worker runs a chunk's tasks in order until one raises (`mapstar` is
/// one list comprehension), so the tasks after it in its chunk never run and
/// their faults never fire. A chunk whose worker died or stalled never
/// returns, and `MapResult` is ready only once every chunk has returned
/// ("only consider the result ready once all jobs are done"): one lost chunk
/// hangs the call, whatever the others raised; otherwise one raise fails it.
fn pool_map(plan: &Plan, f: &Facts) -> Expectation {
    let n = plan.tasks.len();
    let chunksize = plan.chunksize.unwrap_or_else(|| n.div_ceil(4 * plan.workers.max(1))).max(1);
    let own = |list: &[(usize, u32)], i: usize| list.iter().any(|&(t, times)| t == i && times > 0);
    let (mut lost, mut raised) = (false, false);
    for chunk in (0..n).collect::<Vec<_>>().chunks(chunksize) {
        for &i in chunk {
            let tag = plan.tasks[i].tag;
            if own(&f.deadly, i) || own(&f.stalls, i) || f.struck.contains(&tag) || f.stopped.contains(&tag) {
                lost = true;
                break;
            }
            if own(&f.raises, i) {
                raised = true;
                break;
            }
        }
    }
    if lost {
        v(Verdict::Hung, "a worker died or stalled mid-chunk: Pool never fails the chunk, and map waits for every one")
    } else if f.idle_strikes > 0 {
        let rest = if raised { Verdict::FailedLoudly } else { Verdict::Completed };
        one(&[rest, Verdict::Hung], "a worker was struck between tasks: it may have held the inqueue lock")
    } else if raised {
        v(Verdict::FailedLoudly, "a task raises, and no chunk is lost")
    } else {
        v(Verdict::Completed, "no fault reaches a worker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{SelfFault, TaskGroup};
    use pools::Workload;

    /// `py-pool-map` on 2 workers over `faults` (task index, kind), with `chunksize`.
    fn expect_map(tasks: usize, faults: &[(usize, FaultKind)], chunksize: Option<usize>) -> Expectation {
        let mut groups: Vec<TaskGroup> =
            (0..tasks).map(|_| TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None }).collect();
        for &(i, kind) in faults {
            groups[i].fault = Some(SelfFault { kind, at: FaultPoint::MidTask, times: 1 });
        }
        let scenario = crate::scenario::for_tests(groups);
        let target = Target::python("py-pool-map");
        let mut plan = Plan::new(&scenario, target.clone(), 1);
        plan.chunksize = chunksize;
        expect(&target, &plan, &[])
    }

    fn verdict(e: Expectation) -> Verdict {
        match e {
            Expectation::Verdict(v, _) => v,
            other => panic!("not one verdict: {other}"),
        }
    }

    /// `tasks` echo tasks on 2 workers, task 0 with `kind` at `spawn` on its first `times` attempts.
    fn expect_spawn(target: Target, tasks: usize, kind: FaultKind, times: u32) -> Verdict {
        let mut groups: Vec<TaskGroup> =
            (0..tasks).map(|_| TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None }).collect();
        groups[0].fault = Some(SelfFault { kind, at: FaultPoint::Spawn, times });
        let mut scenario = crate::scenario::for_tests(groups);
        scenario.max_attempts = 5;
        let plan = Plan::new(&scenario, target.clone(), 1);
        assert!(plan.warmup && plan.limits_spawns(), "forks are limited once the pool is warm");
        verdict(expect(&target, &plan, &[]))
    }

    #[test]
    fn at_spawn_no_death_is_made_good() {
        use FaultKind::{Error, SigKill};
        let pool = |kind| Target::Pool(kind);
        assert_eq!(expect_spawn(pool(PoolKind::Naive), 4, SigKill, 1), Verdict::Hung);
        assert_eq!(expect_spawn(pool(PoolKind::SeedPolling), 4, SigKill, 1), Verdict::Hung);
        assert_eq!(expect_spawn(pool(PoolKind::Polling), 4, SigKill, 1), Verdict::FailedLoudly);
        // per-task runs its 2 spares: more tasks than that fail, whatever the fault.
        assert_eq!(expect_spawn(pool(PoolKind::PerTask), 4, Error, 1), Verdict::FailedLoudly);
        assert_eq!(expect_spawn(pool(PoolKind::PerTask), 2, SigKill, 1), Verdict::FailedLoudly);
        // supervised (5 attempts): 2 workers and a standby; the third death leaves none.
        assert_eq!(expect_spawn(pool(PoolKind::Supervised), 4, SigKill, 1), Verdict::Completed);
        assert_eq!(expect_spawn(pool(PoolKind::Supervised), 4, SigKill, 2), Verdict::Completed);
        assert_eq!(expect_spawn(pool(PoolKind::Supervised), 4, SigKill, 3), Verdict::FailedLoudly);
        assert_eq!(expect_spawn(pool(PoolKind::Supervised), 4, Error, 1), Verdict::FailedLoudly);
        assert_eq!(expect_spawn(Target::python("py-pool-map"), 4, SigKill, 1), Verdict::Hung);
        assert_eq!(expect_spawn(Target::python("py-ppe"), 4, SigKill, 1), Verdict::FailedLoudly);
        assert_eq!(expect_spawn(Target::python("py-loky"), 4, SigKill, 1), Verdict::Hung);
        assert_eq!(expect_spawn(Target::python("py-billiard"), 4, SigKill, 1), Verdict::Leaked);
        assert_eq!(expect_spawn(Target::python("py-process-per-task"), 1, Error, 1), Verdict::FailedLoudly);
    }

    /// Where the oracle decides our pools at the worker-side points, it says
    /// what `scenarios/stages/` expects of them; where it does not, it says
    /// why (polling's break races with the other tasks).
    #[test]
    fn the_stage_scenarios_expect_what_the_oracle_says_of_our_pools() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/stages");
        let scenarios = crate::scenario::load_all(&[dir]).expect("stage scenarios load");
        let mut decided = 0;
        for scenario in &scenarios {
            for (target, expected) in &scenario.expect {
                let Target::Pool(_) = target else { continue };
                let plan = Plan::new(scenario, target.clone(), 1);
                match expect(target, &plan, &[]) {
                    Expectation::Verdict(verdict, why) => {
                        assert_eq!(
                            verdict, *expected,
                            "{} x {target}: the oracle says {verdict} ({why})",
                            scenario.name
                        );
                        decided += 1;
                    }
                    Expectation::OneOf(verdicts, why) => {
                        assert!(
                            *target == Target::Pool(PoolKind::Polling)
                                && why.contains("if a task was pending then")
                                && verdicts.contains(expected),
                            "{} x {target}: {} ({why})",
                            scenario.name,
                            one_of(&verdicts)
                        );
                    }
                    Expectation::Undetermined(why) => panic!("{} x {target}: undetermined ({why})", scenario.name),
                }
            }
        }
        assert!(decided >= 25, "{decided} runs decided");
    }

    /// Supervised, 3 attempts, 2 echo tasks: task 0 raises on its first
    /// attempt, and a storm strikes worker 7; `trace` is the log around
    /// the strike, in the order the harness read it.
    fn error_and_strike(trace: &[&str]) -> Expectation {
        fault_and_strike(SelfFault { kind: FaultKind::Error, at: FaultPoint::MidTask, times: 1 }, 0, trace)
    }

    /// As [`error_and_strike`], task 0 with `fault`, the struck worker on its `attempt`.
    fn fault_and_strike(fault: SelfFault, attempt: u32, trace: &[&str]) -> Expectation {
        let mut groups: Vec<TaskGroup> =
            (0..2).map(|_| TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None }).collect();
        groups[0].fault = Some(fault);
        let mut scenario = crate::scenario::for_tests(groups);
        scenario.max_attempts = 3;
        scenario.task_timeout_ms = Some(1000);
        let target = Target::Pool(PoolKind::Supervised);
        let plan = Plan::new(&scenario, target.clone(), 1);
        let tag = plan.tasks[0].tag;
        let events: Vec<Logged> = trace
            .iter()
            .enumerate()
            .map(|(t, line)| {
                let event = match *line {
                    "start" => Event::TaskStarted { tag, attempt, pid: 7 },
                    "done" => Event::TaskDone { tag, attempt, pid: 7 },
                    _ => Event::Nemesis { signal: Signal::Sigkill, pid: 7, target: "storm".into() },
                };
                Logged { t_ms: t as u64, event }
            })
            .collect();
        expect(&target, &plan, &events)
    }

    /// The reported race: an `error` fault due on attempt 0 and a storm
    /// strike on that task's worker. Struck first, the retry carries no
    /// fault and the task completes; raised first, it fails loudly.
    #[test]
    fn a_strike_against_a_raising_task_allows_what_each_order_gives() {
        use Verdict::{Completed, FailedLoudly};
        // Struck mid-task (its `start` line read after the strike: a killed worker starts nothing later).
        assert_eq!(error_and_strike(&["start", "kill"]).verdicts(), vec![Completed]);
        assert_eq!(error_and_strike(&["kill", "start"]).verdicts(), vec![Completed]);
        // Its error in hand when struck, or not: no one can order them.
        assert_eq!(error_and_strike(&["start", "kill", "done"]).verdicts(), vec![Completed, FailedLoudly]);
        assert_eq!(error_and_strike(&["kill", "start", "done"]).verdicts(), vec![Completed, FailedLoudly]);
        // Done before the strike was sent: the worker was between tasks.
        assert_eq!(error_and_strike(&["start", "done", "kill"]).verdicts(), vec![FailedLoudly]);
        assert_eq!(error_and_strike(&[]).verdicts(), vec![FailedLoudly]);
        // A finding is a verdict outside the set.
        assert_eq!(error_and_strike(&["start", "kill", "done"]).allows(Verdict::Hung), Some(false));
    }

    /// billiard: a death before the task's acknowledgement (at `decode`) is
    /// never timed (the seed 11 campaign's finding, 3 of 3 replays).
    #[test]
    fn billiard_never_times_a_task_its_worker_died_unpickling() {
        let mut groups: Vec<TaskGroup> =
            (0..2).map(|_| TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None }).collect();
        groups[0].fault = Some(SelfFault { kind: FaultKind::SigKill, at: FaultPoint::Decode, times: 1 });
        let mut scenario = crate::scenario::for_tests(groups);
        scenario.task_timeout_ms = Some(1000);
        scenario.deadline_ms = 5000;
        let target = Target::python("py-billiard");
        assert_eq!(verdict(expect(&target, &Plan::new(&scenario, target.clone(), 1), &[])), Verdict::Hung);
        scenario.tasks[0].fault.as_mut().expect("a fault").at = FaultPoint::MidTask;
        assert_eq!(verdict(expect(&target, &Plan::new(&scenario, target.clone(), 1), &[])), Verdict::FailedLoudly);
    }

    /// A strike on an attempt that the task's own stall ends anyway costs
    /// nothing more (the storm kills what the deadline would have); one on
    /// a later attempt does.
    #[test]
    fn a_strike_on_a_stalled_attempt_is_not_a_death_more() {
        let hang = SelfFault { kind: FaultKind::Hang, at: FaultPoint::MidTask, times: 2 };
        assert_eq!(fault_and_strike(hang, 0, &["start", "kill"]).verdicts(), vec![Verdict::Completed]);
        assert_eq!(fault_and_strike(hang, 1, &["start", "kill"]).verdicts(), vec![Verdict::Completed]);
        assert_eq!(fault_and_strike(hang, 2, &["start", "kill"]).verdicts(), vec![Verdict::FailedLoudly]);
    }

    /// The Python targets' documented races give sets, not "undetermined".
    #[test]
    fn a_death_while_a_result_is_half_written_allows_both_ends() {
        let mut groups: Vec<TaskGroup> =
            (0..4).map(|_| TaskGroup { count: 1, work: Workload::Echo(vec![1]), fault: None }).collect();
        groups[1].fault = Some(SelfFault { kind: FaultKind::SigKill, at: FaultPoint::WriteResult, times: 1 });
        let scenario = crate::scenario::for_tests(groups);
        for name in ["py-ppe", "py-loky", "py-billiard"] {
            let target = Target::python(name);
            let plan = Plan::new(&scenario, target.clone(), 1);
            let e = expect(&target, &plan, &[]);
            assert_eq!(e.verdicts(), vec![Verdict::FailedLoudly, Verdict::Hung], "{name}: {e}");
        }
    }

    #[test]
    fn pool_map_hangs_on_a_lost_chunk_and_a_raise_ends_its_own_chunk() {
        use FaultKind::{Error, Hang, SigKill};
        // A raise before a hang in one chunk: the hang never runs, map raises.
        assert_eq!(verdict(expect_map(4, &[(0, Error), (1, Hang)], Some(4))), Verdict::FailedLoudly);
        assert_eq!(verdict(expect_map(4, &[(0, Error), (1, SigKill)], Some(4))), Verdict::FailedLoudly);
        // The hang first, or in a chunk of its own: map waits for it forever, whatever raised.
        assert_eq!(verdict(expect_map(4, &[(1, Error), (0, Hang)], Some(4))), Verdict::Hung);
        assert_eq!(verdict(expect_map(4, &[(0, Error), (1, Hang)], Some(1))), Verdict::Hung);
        // The default chunksize: 20 tasks on 2 workers go 3 at a time (0-2, 3-5, ...).
        assert_eq!(verdict(expect_map(20, &[(3, Error), (5, SigKill)], None)), Verdict::FailedLoudly);
        assert_eq!(verdict(expect_map(20, &[(3, Error), (6, SigKill)], None)), Verdict::Hung);
        assert_eq!(verdict(expect_map(20, &[(7, Error)], None)), Verdict::FailedLoudly);
        assert_eq!(verdict(expect_map(20, &[], None)), Verdict::Completed);
    }
}
