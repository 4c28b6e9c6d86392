//! The nemesis: every fault from outside the pool. It watches the run's
//! events and the clock, picks whom to signal when (the worker of a task
//! some ms into it, the idle worker after the warm-up, a random worker or
//! the owner some ms after the pool is ready, a random worker every T ms
//! from then on: a storm), and sends the signals by pid, through the
//! [`Hand`] the runner lends it. The runner only tells it what happened and
//! when to look.
//!
//! **When the clock starts.** Strikes at the owner or a random worker, and
//! a storm, count from the pool's `ready`, not from the run's start: how
//! long a pool takes to start (a Python interpreter under a loaded machine
//! can take seconds) must not decide whether a strike lands before or
//! after it has a pool at all. A strike at the owner then waits until the
//! trace shows a worker mid-task, so the owner always dies with work in
//! flight.
//!
//! **What a worker is.** A process the run's own events name as a worker:
//! one the trace saw start or finish a task, until the pool reports its
//! exit or it is gone from the sandbox. Never "any process but the owner":
//! that would strike a pool's fork server, a Python resource tracker or a
//! process still starting, and the run would say something about the
//! harness's aim, not about the pool.
//!
//! **Anchored to the trace.** A strike at a worker (a task's, a random one,
//! a storm's tick) lands on a worker *mid-task*: after the trace's `start`
//! line of the task it is running and before that task's `done` line,
//! whatever the machine's speed:
//!
//! 1. The victim is a worker whose `start` the harness has read and whose
//!    `done` it has not (one at a task's worker is due `after_ms` past that
//!    task's `start`). A random strike or a storm's tick due while no worker
//!    is known to be mid-task *probes*: every [`PROBE_EVERY`] (and on every
//!    event) it freezes the run's processes one by one, never the owner, and
//!    reads the trace, as below; the first whose `start` is there and whose
//!    `done` is not is a worker mid-task by the events' own word, and is
//!    struck. Tasks shorter than the harness's reaction (a per-task pool's
//!    processes, a loaded machine) are so caught mid-task all the same.
//! 2. It is frozen (SIGSTOP, and the harness waits until `/proc` says it is
//!    stopped), so it can write no line more.
//! 3. The trace is read to its end: a `done` the worker wrote before it
//!    stopped is now known.
//! 4. Still mid-task (the same task, for a task's strike): the signal is
//!    sent to the stopped process. Not: it is thawed (SIGCONT) and the
//!    strike is not sent. A task's strike is then dropped, and the event
//!    log says why (`strike-withheld`: the task finished before the strike
//!    was due); a random strike or a storm's tick tries another process, or
//!    waits and probes again.
//!
//! So a strike never hits an idle worker, a zombie, or a worker that has
//! its result in hand: what it breaks is a task in progress, and a
//! scenario's outcome depends on the pool, not on which instant the harness
//! got the CPU. What a scenario must still make sure of is that its task
//! lasts past `after_ms` (a `sleep` lasts its wall-clock time on any
//! machine), and that a storm has tasks running when it ticks. Probing
//! stops and resumes processes that are not struck (a fork server, an idle
//! worker) for a moment: a pool that watched its children's stops
//! (`WUNTRACED`) would see it; none of the pools here does.
//! The one strike not anchored to a task is the idle worker's, which is
//! meant to land between tasks (see [`Nemesis::strike_idle`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal as Sig};

use crate::protocol::{Event, Signal};
use crate::scenario::Aim;
use crate::scenario::plan::{Dice, Plan};

/// How long the idle-worker strike waits for a worker to sit in its read.
pub const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long a victim may take to stop before the strike is not sent.
pub const FREEZE_WAIT: Duration = Duration::from_secs(1);
/// How often, while a random strike is due and no worker is known to be
/// mid-task, the run's processes are probed for one.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

/// A signal sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strike {
    pub signal: Signal,
    pub pid: u32,
    /// Whom, in words, for the event log.
    pub target: String,
}

impl Strike {
    /// As the event log records it.
    pub fn event(&self) -> Event {
        Event::Nemesis { signal: self.signal, pid: self.pid, target: self.target.clone() }
    }
}

/// How a freeze ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frozen {
    /// The process is stopped.
    Stopped,
    /// It is gone (or a zombie): nothing to strike.
    Gone,
    /// It did not stop within [`FREEZE_WAIT`].
    Late,
}

/// What the nemesis strikes with: the runner's is [`Signals`] plus the
/// run's trace pipe and log; the unit tests script one.
pub trait Hand {
    /// Sends SIGSTOP to `pid` and waits, at most [`FREEZE_WAIT`], until it is stopped.
    fn freeze(&mut self, pid: u32) -> Frozen;
    /// Lets a frozen process go on (SIGCONT).
    fn thaw(&mut self, pid: u32);
    /// Reads the trace to its end; logs the lines read and returns them.
    fn trace(&mut self) -> Vec<Event>;
    /// Sends `signal` to `pid`; whether it was delivered.
    fn send(&mut self, pid: u32, signal: Signal) -> bool;
    /// Logs an event of the nemesis's own.
    fn log(&mut self, event: Event);
    /// The run's live processes now.
    fn live(&mut self) -> Vec<u32>;
}

/// Signals by pid, and stopped-ness from `/proc`: the real half of a [`Hand`].
pub struct Signals;

impl Signals {
    pub fn freeze(pid: u32) -> Frozen {
        if !send(pid, Sig::STOP) {
            return Frozen::Gone;
        }
        let until = Instant::now() + FREEZE_WAIT;
        loop {
            match state(pid) {
                Some('T' | 't') => return Frozen::Stopped,
                None | Some('Z' | 'X') => return Frozen::Gone,
                Some(_) if Instant::now() >= until => return Frozen::Late,
                Some(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    pub fn thaw(pid: u32) {
        send(pid, Sig::CONT);
    }

    pub fn send(pid: u32, signal: Signal) -> bool {
        send(
            pid,
            match signal {
                Signal::Sigkill => Sig::KILL,
                Signal::Sigstop => Sig::STOP,
            },
        )
    }
}

/// Whom a scheduled strike is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The worker `pid` while it runs task `tag`'s attempt `attempt`.
    Task {
        tag: u64,
        attempt: u32,
        pid: u32,
    },
    /// Any worker mid-task.
    RandomWorker,
    Owner,
}

struct Scheduled {
    at: Duration,
    signal: Signal,
    victim: Victim,
}

/// A storm: a random worker mid-task every `every`, from `ready` on.
#[derive(Debug, Clone, Copy)]
struct Storm {
    signal: Signal,
    every: Duration,
    /// The next tick's time; set at `ready`.
    next: Option<Duration>,
}

pub struct Nemesis {
    owner: u32,
    /// Strikes waiting for a task to start: (task tag, signal, delay).
    on_start: Vec<(u64, Signal, Duration)>,
    scheduled: Vec<Scheduled>,
    /// Strikes that count from the pool's `ready`.
    on_ready: Vec<Scheduled>,
    storm: Option<Storm>,
    /// Strikes at the idle worker, after the warm-up.
    idle: Vec<Signal>,
    /// The workers the events named, not known to be gone.
    workers: BTreeSet<u32>,
    /// Those of them mid-task: the (tag, attempt) whose `start` was read and whose `done` was not.
    busy: BTreeMap<u32, (u64, u32)>,
    /// The workers struck already: never frozen or struck again.
    struck: BTreeSet<u32>,
    /// The run time of the strike being made.
    now: Duration,
    /// When the run's processes were last probed for one mid-task.
    probed: Duration,
    dice: Dice,
}

impl Nemesis {
    pub fn new(plan: &Plan, owner: u32) -> Nemesis {
        let mut on_start = Vec::new();
        let mut on_ready = Vec::new();
        let mut idle = Vec::new();
        for n in &plan.nemesis {
            let after = Duration::from_millis(n.after_ms);
            let victim = match n.target {
                Aim::Task(index) => {
                    on_start.push((plan.tasks[index].tag, n.signal, after));
                    continue;
                }
                Aim::IdleWorker => {
                    idle.push(n.signal);
                    continue;
                }
                Aim::RandomWorker => Victim::RandomWorker,
                Aim::Owner => Victim::Owner,
            };
            on_ready.push(Scheduled { at: after, signal: n.signal, victim });
        }
        let storm =
            plan.storm.map(|s| Storm { signal: s.signal, every: Duration::from_millis(s.every_ms), next: None });
        Nemesis {
            owner,
            on_start,
            scheduled: Vec::new(),
            on_ready,
            storm,
            idle,
            workers: BTreeSet::new(),
            busy: BTreeMap::new(),
            struck: BTreeSet::new(),
            now: Duration::ZERO,
            probed: Duration::ZERO,
            // Its own stream, so the storm's choices do not shift the plan's.
            dice: Dice::new(plan.seed ^ 0x006e_656d_6573_6973),
        }
    }

    /// Whether the plan kills the owner.
    pub fn kills_owner(plan: &Plan) -> bool {
        plan.nemesis.iter().any(|n| n.target == Aim::Owner && n.signal == Signal::Sigkill)
    }

    /// Takes note of an event at run time `now`.
    pub fn observe(&mut self, event: &Event, now: Duration) {
        match *event {
            Event::Ready { .. } => {
                for mut s in self.on_ready.drain(..) {
                    s.at += now;
                    self.scheduled.push(s);
                }
                if let Some(storm) = &mut self.storm {
                    storm.next = Some(now + storm.every);
                }
            }
            Event::TaskStarted { tag, attempt, pid } => {
                self.workers.insert(pid);
                self.busy.insert(pid, (tag, attempt));
                if attempt == 0 {
                    let (hits, rest): (Vec<_>, Vec<_>) = self.on_start.drain(..).partition(|&(t, _, _)| t == tag);
                    self.on_start = rest;
                    for (_, signal, after) in hits {
                        self.scheduled.push(Scheduled {
                            at: now + after,
                            signal,
                            victim: Victim::Task { tag, attempt, pid },
                        });
                    }
                }
            }
            Event::TaskDone { pid, .. } => {
                self.workers.insert(pid);
                self.busy.remove(&pid);
            }
            Event::WorkerExit { pid, .. } => {
                self.workers.remove(&pid);
                self.busy.remove(&pid);
            }
            _ => {}
        }
    }

    /// The workers mid-task that may be struck.
    fn candidates(&self) -> Vec<u32> {
        self.busy.keys().copied().filter(|p| !self.struck.contains(p)).collect()
    }

    /// When it next wants to act, in run time. A random strike or a storm's
    /// tick that is due while no worker is known to be mid-task probes the
    /// run's processes every [`PROBE_EVERY`] (and on every event) until one is.
    pub fn next_at(&self) -> Option<Duration> {
        let mid_task = !self.candidates().is_empty();
        let at = |at: Duration, victim: Victim| match victim {
            Victim::RandomWorker if !mid_task => Some(at.max(self.probed + PROBE_EVERY)),
            Victim::Owner if !mid_task => None,
            _ => Some(at),
        };
        let scheduled = self.scheduled.iter().filter_map(|s| at(s.at, s.victim));
        let storm = self.storm.and_then(|s| s.next).and_then(|next| at(next, Victim::RandomWorker));
        scheduled.chain(storm).min()
    }

    /// Whether it will strike at `now`.
    pub fn due_at(&self, now: Duration) -> bool {
        self.next_at().is_some_and(|at| at <= now)
    }

    /// Sends the strikes due at `now` (see the module notes); `live` is
    /// every live process of the run. Logs each strike, and each strike not
    /// sent, through `hand`; returns the strikes that landed.
    pub fn strike(&mut self, now: Duration, live: &[u32], hand: &mut dyn Hand) -> Vec<Strike> {
        self.now = now;
        self.workers.retain(|p| live.contains(p));
        self.busy.retain(|p, _| live.contains(p));
        let mut landed = Vec::new();
        let (due, later): (Vec<_>, Vec<_>) = self.scheduled.drain(..).partition(|s| s.at <= now);
        self.scheduled = later;
        for s in due {
            let strike = match s.victim {
                Victim::Owner if self.candidates().is_empty() => {
                    // It waits for a worker mid-task: the owner dies with work in flight.
                    self.scheduled.push(s);
                    None
                }
                Victim::Owner => Some(Strike { signal: s.signal, pid: self.owner, target: "the owner".into() }),
                Victim::Task { tag, attempt, pid } => self.at_task(tag, attempt, pid, s.signal, hand),
                Victim::RandomWorker => {
                    let strike = self.at_random(s.signal, "a random worker", hand);
                    if strike.is_none() {
                        // No worker mid-task: it waits for one.
                        self.scheduled.push(s);
                    }
                    strike
                }
            };
            landed.extend(strike.filter(|strike| self.send(strike, hand)));
        }
        if let Some(storm) = self.storm
            && storm.next.is_some_and(|at| at <= now)
            && let Some(strike) = self.at_random(storm.signal, "a random worker (storm)", hand)
            && self.send(&strike, hand)
        {
            self.storm = Some(Storm { next: Some(now + storm.every), ..storm });
            landed.push(strike);
        }
        landed
    }

    /// The strike at task `tag`'s worker, if it is still mid-task there
    /// (frozen); else it is withheld, and logged so.
    fn at_task(&mut self, tag: u64, attempt: u32, pid: u32, signal: Signal, hand: &mut dyn Hand) -> Option<Strike> {
        let target = format!("the worker of task {tag}");
        let why = match self.freeze_mid_task(pid, Some((tag, attempt)), hand) {
            Ok(()) => return Some(Strike { signal, pid, target }),
            Err(why) => why,
        };
        hand.log(Event::StrikeWithheld { signal, pid, target, reason: why });
        None
    }

    /// A strike at a random worker mid-task (frozen), if there is one: one
    /// the trace shows mid-task, else one found by probing (see the module notes).
    fn at_random(&mut self, signal: Signal, what: &str, hand: &mut dyn Hand) -> Option<Strike> {
        let mut tried = BTreeSet::new();
        let mut probing = false;
        loop {
            let mut pool: Vec<u32> = self.candidates().into_iter().filter(|p| !tried.contains(p)).collect();
            if pool.is_empty() && (probing || self.now >= self.probed + PROBE_EVERY) {
                probing = true;
                self.probed = self.now;
                let skip = |p: &u32| *p == self.owner || self.struck.contains(p) || tried.contains(p);
                pool = hand.live().into_iter().filter(|p| !skip(p)).collect();
            }
            if pool.is_empty() {
                return None;
            }
            let pid = *self.dice.pick(&pool);
            tried.insert(pid);
            if self.freeze_mid_task(pid, None, hand).is_ok() {
                return Some(Strike { signal, pid, target: what.into() });
            }
        }
    }

    /// Freezes `pid` and reads the trace: Ok if it is still mid-task (on
    /// `task`, if named), and then it stays frozen; else it is thawed, and
    /// the error says why.
    fn freeze_mid_task(&mut self, pid: u32, task: Option<(u64, u32)>, hand: &mut dyn Hand) -> Result<(), String> {
        if self.struck.contains(&pid) {
            return Err(format!("worker {pid} was struck already"));
        }
        match hand.freeze(pid) {
            Frozen::Stopped => {}
            Frozen::Gone => {
                self.workers.remove(&pid);
                self.busy.remove(&pid);
                return Err(format!("process {pid} had exited"));
            }
            Frozen::Late => {
                hand.thaw(pid);
                return Err(format!("worker {pid} did not stop within {} ms", FREEZE_WAIT.as_millis()));
            }
        }
        for event in hand.trace() {
            self.observe(&event, self.now);
        }
        let running = self.busy.get(&pid).copied();
        match (task, running) {
            (Some(want), Some(got)) if want == got => Ok(()),
            (None, Some(_)) => Ok(()),
            (Some((tag, _)), _) => {
                hand.thaw(pid);
                Err(format!("task {tag} had finished on worker {pid} (its `done` line came first)"))
            }
            (None, None) => {
                hand.thaw(pid);
                Err(format!("process {pid} was not mid-task"))
            }
        }
    }

    /// Sends a strike (at a frozen worker, or the owner); whether it landed.
    fn send(&mut self, strike: &Strike, hand: &mut dyn Hand) -> bool {
        if strike.pid != self.owner {
            self.struck.insert(strike.pid);
            self.busy.remove(&strike.pid);
        }
        let sent = hand.send(strike.pid, strike.signal);
        if sent {
            hand.log(strike.event());
        }
        sent
    }

    /// Whether the plan strikes the idle worker after the warm-up.
    pub fn strikes_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// After the warm-up: waits, at most [`IDLE_WAIT`], until a worker sits
    /// in its read of the task channel (in a shared-queue pool, holding the
    /// inqueue's lock) and signals it; a pool whose idle workers wait
    /// otherwise gets a known worker struck. `live` lists the run's live
    /// processes. Returns the strikes that landed.
    pub fn strike_idle(&mut self, live: impl Fn() -> Vec<u32>) -> Vec<Strike> {
        let mut strikes = Vec::new();
        for signal in std::mem::take(&mut self.idle) {
            let until = Instant::now() + IDLE_WAIT;
            let (pid, target) = loop {
                let live = live();
                self.workers.retain(|p| live.contains(p));
                if let Some(&pid) = self.workers.iter().find(|&&p| reading(p)) {
                    break (Some(pid), "the idle worker, blocked in read(2) on its task channel");
                }
                if Instant::now() >= until {
                    break (self.workers.first().copied(), "an idle worker (none was blocked in read(2))");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if let Some(pid) = pid
                && Signals::send(pid, signal)
            {
                self.struck.insert(pid);
                strikes.push(Strike { signal, pid, target: target.into() });
            }
        }
        strikes
    }
}

fn send(pid: u32, sig: Sig) -> bool {
    Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// A process's state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...); None: gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis (a command may hold spaces and parentheses).
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Whether `pid` is blocked in `read(2)`: an idle worker waiting for its
/// next task (in a shared-queue pool, on the inqueue, holding its lock).
fn reading(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split_whitespace().next() == Some("0"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::target::Target;

    const OWNER: u32 = 1;

    /// A scripted hand: which trace lines a freeze of each pid reveals,
    /// which pids are gone, and what it was asked to do.
    #[derive(Default)]
    struct Script {
        /// Lines the trace holds once `pid` is frozen (written before it stopped).
        on_freeze: HashMap<u32, Vec<Event>>,
        gone: BTreeSet<u32>,
        live: Vec<u32>,
        pending: Vec<Event>,
        frozen: Vec<u32>,
        thawed: Vec<u32>,
        sent: Vec<(u32, Signal)>,
        logged: Vec<Event>,
    }

    impl Hand for Script {
        fn freeze(&mut self, pid: u32) -> Frozen {
            if self.gone.contains(&pid) {
                return Frozen::Gone;
            }
            self.frozen.push(pid);
            self.pending.extend(self.on_freeze.remove(&pid).unwrap_or_default());
            Frozen::Stopped
        }
        fn thaw(&mut self, pid: u32) {
            self.thawed.push(pid);
        }
        fn trace(&mut self) -> Vec<Event> {
            self.logged.extend(self.pending.iter().cloned());
            std::mem::take(&mut self.pending)
        }
        fn send(&mut self, pid: u32, signal: Signal) -> bool {
            self.sent.push((pid, signal));
            true
        }
        fn log(&mut self, event: Event) {
            self.logged.push(event);
        }
        fn live(&mut self) -> Vec<u32> {
            self.live.clone()
        }
    }

    fn nemesis(toml: &str) -> Nemesis {
        let head = "description = \"t\"\nworkers = 2\nstyle = \"map\"\ndeadline_ms = 5000\n\
                    [[tasks]]\ncount = 4\nwork = { sleep_ms = 1000 }\n";
        let scenario =
            crate::scenario::parse(Path::new("t.toml"), &format!("{head}{toml}\n[expect]\nper-task = \"completed\"\n"))
                .expect("scenario");
        Nemesis::new(&Plan::new(&scenario, Target::Pool(pools::PoolKind::PerTask), 1), OWNER)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn start(tag: u64, pid: u32) -> Event {
        Event::TaskStarted { tag, attempt: 0, pid }
    }

    fn done(tag: u64, pid: u32) -> Event {
        Event::TaskDone { tag, attempt: 0, pid }
    }

    const TASK_STRIKE: &str = "[[nemesis]]\nsignal = \"sigkill\"\ntarget = \"task\"\ntask = 1\nafter_ms = 300\n";
    const STORM: &str = "[storm]\nsignal = \"sigkill\"\nevery_ms = 100\n";

    #[test]
    fn a_task_strike_lands_on_its_worker_mid_task() {
        let mut n = nemesis(TASK_STRIKE);
        n.observe(&start(1, 10), ms(50));
        assert_eq!(n.next_at(), Some(ms(350)));
        let mut hand = Script::default();
        assert!(n.strike(ms(349), &[10], &mut hand).is_empty(), "not due yet");
        let landed = n.strike(ms(350), &[10], &mut hand);
        assert_eq!(landed.iter().map(|s| (s.pid, s.signal)).collect::<Vec<_>>(), [(10, Signal::Sigkill)]);
        assert_eq!((hand.frozen, hand.thawed, hand.sent), (vec![10], vec![], vec![(10, Signal::Sigkill)]));
        assert!(matches!(hand.logged[..], [Event::Nemesis { pid: 10, .. }]));
    }

    #[test]
    fn a_task_strike_is_never_sent_after_the_task_is_done() {
        // The `done` line read before the strike is due.
        let mut n = nemesis(TASK_STRIKE);
        n.observe(&start(1, 10), ms(50));
        n.observe(&done(1, 10), ms(100));
        let mut hand = Script::default();
        assert!(n.strike(ms(350), &[10], &mut hand).is_empty());
        assert!(hand.sent.is_empty());
        assert!(
            matches!(&hand.logged[..], [Event::StrikeWithheld { pid: 10, reason, .. }] if reason.contains("task 1"))
        );
        assert_eq!(n.next_at(), None, "the strike is dropped, not retried");

        // The `done` line written before the worker stopped, read only once it is frozen.
        let mut n = nemesis(TASK_STRIKE);
        n.observe(&start(1, 10), ms(50));
        let mut hand = Script { on_freeze: HashMap::from([(10, vec![done(1, 10)])]), ..Script::default() };
        assert!(n.strike(ms(350), &[10], &mut hand).is_empty());
        assert_eq!((hand.frozen, hand.thawed, hand.sent), (vec![10], vec![10], vec![]));
        assert!(matches!(hand.logged[..], [Event::TaskDone { .. }, Event::StrikeWithheld { .. }]));

        // The worker moved on to another task: still not this task's strike.
        let mut n = nemesis(TASK_STRIKE);
        n.observe(&start(1, 10), ms(50));
        n.observe(&done(1, 10), ms(60));
        n.observe(&start(2, 10), ms(61));
        let mut hand = Script::default();
        assert!(n.strike(ms(350), &[10], &mut hand).is_empty());
        assert!(hand.sent.is_empty());
    }

    #[test]
    fn a_storm_waits_for_a_worker_mid_task() {
        let mut n = nemesis(STORM);
        n.observe(&Event::Ready { pid: OWNER }, ms(0));
        // Worker 10 ran a task and is idle; 11 is a zombie of a finished one.
        n.observe(&start(0, 10), ms(10));
        n.observe(&done(0, 10), ms(20));
        n.observe(&start(1, 11), ms(10));
        n.observe(&done(1, 11), ms(20));
        let mut hand = Script { live: vec![OWNER, 10, 11], ..Script::default() };
        // Due at 100 ms; nobody is mid-task: it probes 10 and 11 (never the owner), strikes neither.
        assert!(n.strike(ms(100), &[OWNER, 10, 11], &mut hand).is_empty());
        assert!(hand.sent.is_empty());
        assert_eq!(hand.frozen.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([10, 11]));
        assert_eq!(hand.thawed.len(), 2);
        // It probes again only after PROBE_EVERY, or at once on a worker's `start`.
        assert_eq!(n.next_at(), Some(ms(100) + PROBE_EVERY));
        n.observe(&start(2, 10), ms(130));
        assert_eq!(n.next_at(), Some(ms(100)), "overdue: strikes at once");
        let landed = n.strike(ms(130), &[OWNER, 10, 11], &mut hand);
        assert_eq!(landed.iter().map(|s| s.pid).collect::<Vec<_>>(), [10]);
        // The next tick counts from the one that landed; 10 is never struck again.
        assert_eq!(n.next_at(), Some(ms(230)));
        n.observe(&start(3, 10), ms(140));
        assert!(n.candidates().is_empty());
    }

    #[test]
    fn a_storm_probes_for_a_worker_it_has_not_read_yet() {
        // Tasks shorter than the harness's reaction: 12's `start` is only read once it is frozen.
        let mut n = nemesis(STORM);
        n.observe(&Event::Ready { pid: OWNER }, ms(0));
        let mut hand =
            Script { live: vec![OWNER, 12], on_freeze: HashMap::from([(12, vec![start(5, 12)])]), ..Script::default() };
        let landed = n.strike(ms(100), &[OWNER, 12], &mut hand);
        assert_eq!(landed.iter().map(|s| s.pid).collect::<Vec<_>>(), [12]);
        assert_eq!(hand.sent, [(12, Signal::Sigkill)]);
    }

    #[test]
    fn a_storm_tick_skips_a_worker_that_finished_while_it_was_picked() {
        let mut n = nemesis(STORM);
        n.observe(&Event::Ready { pid: OWNER }, ms(0));
        n.observe(&start(0, 10), ms(90));
        // 10's `done` is in the pipe when it stops; 11 is gone.
        let mut hand = Script {
            live: vec![OWNER, 10, 11],
            on_freeze: HashMap::from([(10, vec![done(0, 10)])]),
            gone: BTreeSet::from([11]),
            ..Script::default()
        };
        assert!(n.strike(ms(100), &[OWNER, 10, 11], &mut hand).is_empty());
        assert!(hand.sent.is_empty());
        assert_eq!(hand.thawed, [10]);
    }

    #[test]
    fn a_strike_at_the_owner_waits_for_work_in_flight() {
        let mut n = nemesis("[[nemesis]]\nsignal = \"sigkill\"\ntarget = \"owner\"\nafter_ms = 100\n");
        n.observe(&Event::Ready { pid: OWNER }, ms(0));
        let mut hand = Script::default();
        assert!(n.strike(ms(100), &[OWNER], &mut hand).is_empty());
        assert_eq!(n.next_at(), None, "it waits for a worker's `start`");
        n.observe(&start(0, 10), ms(150));
        let landed = n.strike(ms(150), &[OWNER, 10], &mut hand);
        assert_eq!(landed.iter().map(|s| s.pid).collect::<Vec<_>>(), [OWNER]);
        assert!(hand.frozen.is_empty(), "the owner is struck as it is");
    }
}
