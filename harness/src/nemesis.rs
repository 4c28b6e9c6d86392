//! The nemesis: every fault from outside the pool. It watches the run's
//! events and the clock, picks whom to signal when (the worker of a task
//! some ms into it, the idle worker after the warm-up, a random worker or
//! the owner some ms after the pool is ready, a random worker every T ms
//! from then on: a storm), and sends the signals by pid. The runner only
//! tells it what happened and when to look.
//!
//! **When the clock starts.** Strikes at the owner or a random worker, and
//! a storm, count from the pool's `ready`, not from the run's start: how
//! long a pool takes to start (a Python interpreter under a loaded machine
//! can take seconds) must not decide whether a strike lands before or
//! after it has a pool at all.
//!
//! **What a worker is.** A process the run's own events name as a worker:
//! one the trace saw start or finish a task, until the pool reports its
//! exit or it is gone from the sandbox. Never "any process but the owner":
//! that would strike a pool's fork server, a Python resource tracker or a
//! process still starting, and the run would say something about the
//! harness's aim, not about the pool. A strike at a random worker, or a
//! storm's tick, due while no worker is known to be alive waits for the
//! next one the events name. A random victim is picked among the workers
//! running a task when there are any (the trace saw the task start, not
//! finish): a worker that has just sent its last result may already be a
//! zombie, where a signal lands and does nothing, and in a pool that runs
//! one process per task that is most of the workers the events name.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal as Sig};

use crate::plan::{Dice, Plan};
use crate::protocol::{Event, Signal};
use crate::scenario::Aim;

/// How long the idle-worker strike waits for a worker to sit in its read.
pub const IDLE_WAIT: Duration = Duration::from_millis(500);

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

enum Victim {
    Worker(u32),
    RandomWorker,
    Owner,
}

struct Scheduled {
    at: Duration,
    signal: Signal,
    victim: Victim,
    what: String,
}

pub struct Nemesis {
    owner: u32,
    /// Strikes waiting for a task to start: (task tag, signal, delay).
    on_start: Vec<(u64, Signal, Duration)>,
    scheduled: Vec<Scheduled>,
    /// Strikes that count from the pool's `ready`: (delay, signal, victim, what).
    on_ready: Vec<Scheduled>,
    /// (signal, period, next tick); the first tick is set at `ready`.
    storm: Option<(Signal, Duration, Option<Duration>)>,
    /// Strikes at the idle worker, after the warm-up.
    idle: Vec<Signal>,
    /// The workers the events named, not known to be gone.
    workers: BTreeSet<u32>,
    /// Those of them running a task.
    busy: BTreeSet<u32>,
    dice: Dice,
}

impl Nemesis {
    pub fn new(plan: &Plan, owner: u32) -> Nemesis {
        let mut on_start = Vec::new();
        let mut on_ready = Vec::new();
        let mut idle = Vec::new();
        for n in &plan.nemesis {
            let after = Duration::from_millis(n.after_ms);
            let (victim, what) = match n.target {
                Aim::Task(index) => {
                    on_start.push((plan.tasks[index].tag, n.signal, after));
                    continue;
                }
                Aim::IdleWorker => {
                    idle.push(n.signal);
                    continue;
                }
                Aim::RandomWorker => (Victim::RandomWorker, "a random worker"),
                Aim::Owner => (Victim::Owner, "the owner"),
            };
            on_ready.push(Scheduled { at: after, signal: n.signal, victim, what: what.into() });
        }
        let storm = plan.storm.map(|s| (s.signal, Duration::from_millis(s.every_ms), None));
        Nemesis {
            owner,
            on_start,
            scheduled: Vec::new(),
            on_ready,
            storm,
            idle,
            workers: BTreeSet::new(),
            busy: BTreeSet::new(),
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
        match event {
            Event::Ready { .. } => {
                for mut s in self.on_ready.drain(..) {
                    s.at += now;
                    self.scheduled.push(s);
                }
                if let Some((_, every, next)) = &mut self.storm {
                    *next = Some(now + *every);
                }
            }
            Event::TaskStarted { tag, attempt, pid } => {
                self.workers.insert(*pid);
                self.busy.insert(*pid);
                if *attempt == 0 {
                    let (hits, rest): (Vec<_>, Vec<_>) = self.on_start.drain(..).partition(|(t, _, _)| t == tag);
                    self.on_start = rest;
                    for (_, signal, after) in hits {
                        self.scheduled.push(Scheduled {
                            at: now + after,
                            signal,
                            victim: Victim::Worker(*pid),
                            what: format!("the worker of task {tag}"),
                        });
                    }
                }
            }
            Event::TaskDone { pid, .. } => {
                self.workers.insert(*pid);
                self.busy.remove(pid);
            }
            Event::WorkerExit { pid, .. } => {
                self.workers.remove(pid);
                self.busy.remove(pid);
            }
            _ => {}
        }
    }

    /// When it next wants to act, in run time (a strike at a random worker
    /// or a storm's tick, while no worker is known, waits for an event instead).
    pub fn next_at(&self) -> Option<Duration> {
        let known = !self.workers.is_empty();
        let scheduled =
            self.scheduled.iter().filter(|s| known || !matches!(s.victim, Victim::RandomWorker)).map(|s| s.at).min();
        let storm = self.storm.filter(|_| known).and_then(|(_, _, next)| next);
        scheduled.into_iter().chain(storm).min()
    }

    /// Whether it will strike at `now`.
    pub fn due_at(&self, now: Duration) -> bool {
        self.next_at().is_some_and(|at| at <= now)
    }

    /// Sends the strikes due at `now`; `live` is every live process of the
    /// run. Returns the strikes that landed (the signal was delivered).
    pub fn strike(&mut self, now: Duration, live: &[u32]) -> Vec<Strike> {
        self.workers.retain(|p| live.contains(p));
        self.busy.retain(|p| live.contains(p));
        let pool = if self.busy.is_empty() { &self.workers } else { &self.busy };
        let workers: Vec<u32> = pool.iter().copied().collect();
        let mut strikes = Vec::new();
        let (due, later): (Vec<_>, Vec<_>) = self
            .scheduled
            .drain(..)
            .partition(|s| s.at <= now && (!workers.is_empty() || !matches!(s.victim, Victim::RandomWorker)));
        self.scheduled = later;
        for s in due {
            let pid = match s.victim {
                Victim::Worker(pid) => pid,
                Victim::Owner => self.owner,
                Victim::RandomWorker => *self.dice.pick(&workers),
            };
            strikes.push(Strike { signal: s.signal, pid, target: s.what });
        }
        if let Some((signal, every, next)) = &mut self.storm
            && next.is_some_and(|at| at <= now)
            && !workers.is_empty()
        {
            *next = Some(now + *every);
            let pid = *self.dice.pick(&workers);
            strikes.push(Strike { signal: *signal, pid, target: "a random worker (storm)".into() });
        }
        strikes.retain(|s| send(s.pid, s.signal));
        strikes
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
                && send(pid, signal)
            {
                strikes.push(Strike { signal, pid, target: target.into() });
            }
        }
        strikes
    }
}

fn send(pid: u32, signal: Signal) -> bool {
    let sig = match signal {
        Signal::Sigkill => Sig::KILL,
        Signal::Sigstop => Sig::STOP,
    };
    Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// Whether `pid` is blocked in `read(2)`: an idle worker waiting for its
/// next task (in a shared-queue pool, on the inqueue, holding its lock).
fn reading(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| s.split_whitespace().next() == Some("0"))
}
