//! The nemesis: faults from outside the pool. It watches the run's events and
//! the clock, and says whom to signal when: the worker of a task some ms into
//! it, a random worker or the owner at a given time, a random worker every T
//! ms (a storm). The runner sends the signals; the idle-worker kill, which
//! needs the warmed-up pool to sit still, is the runner's too.

use std::time::Duration;

use crate::plan::{Dice, Plan};
use crate::protocol::Event;
use crate::protocol::Signal;
use crate::scenario::Aim;

/// A signal to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strike {
    pub signal: Signal,
    pub pid: u32,
    /// Whom, in words, for the event log.
    pub target: String,
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
    /// Strikes waiting for a task to start: (task tag, signal, delay).
    on_start: Vec<(u64, Signal, Duration)>,
    scheduled: Vec<Scheduled>,
    storm: Option<(Signal, Duration, Duration)>,
    dice: Dice,
}

impl Nemesis {
    pub fn new(plan: &Plan) -> Nemesis {
        let mut on_start = Vec::new();
        let mut scheduled = Vec::new();
        for n in &plan.nemesis {
            let after = Duration::from_millis(n.after_ms);
            match n.target {
                Aim::Task(index) => on_start.push((plan.tasks[index].tag, n.signal, after)),
                Aim::RandomWorker => scheduled.push(Scheduled {
                    at: after,
                    signal: n.signal,
                    victim: Victim::RandomWorker,
                    what: "a random worker".into(),
                }),
                Aim::Owner => scheduled.push(Scheduled {
                    at: after,
                    signal: n.signal,
                    victim: Victim::Owner,
                    what: "the owner".into(),
                }),
                Aim::IdleWorker => {}
            }
        }
        let storm =
            plan.storm.map(|s| (s.signal, Duration::from_millis(s.every_ms), Duration::from_millis(s.every_ms)));
        // Its own stream, so the storm's choices do not shift the plan's.
        Nemesis { on_start, scheduled, storm, dice: Dice::new(plan.seed ^ 0x006e_656d_6573_6973) }
    }

    /// Whether the plan kills the owner.
    pub fn kills_owner(plan: &Plan) -> bool {
        plan.nemesis.iter().any(|n| n.target == Aim::Owner && n.signal == Signal::Sigkill)
    }

    /// Takes note of an event at run time `now`.
    pub fn observe(&mut self, event: &Event, now: Duration) {
        if let Event::TaskStarted { tag, attempt: 0, pid } = event {
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

    /// When it next wants to act, in run time.
    pub fn next_at(&self) -> Option<Duration> {
        let scheduled = self.scheduled.iter().map(|s| s.at).min();
        let storm = self.storm.map(|(_, _, next)| next);
        scheduled.into_iter().chain(storm).min()
    }

    /// The strikes due at `now`, given the live workers and the owner.
    pub fn due(&mut self, now: Duration, workers: &[u32], owner: u32) -> Vec<Strike> {
        let mut strikes = Vec::new();
        let (due, later): (Vec<_>, Vec<_>) = self.scheduled.drain(..).partition(|s| s.at <= now);
        self.scheduled = later;
        for s in due {
            let pid = match s.victim {
                Victim::Worker(pid) => Some(pid),
                Victim::Owner => Some(owner),
                Victim::RandomWorker => (!workers.is_empty()).then(|| *self.dice.pick(workers)),
            };
            if let Some(pid) = pid {
                strikes.push(Strike { signal: s.signal, pid, target: s.what });
            }
        }
        if let Some((signal, every, next)) = &mut self.storm
            && *next <= now
        {
            *next = now + *every;
            if !workers.is_empty() {
                let pid = *self.dice.pick(workers);
                strikes.push(Strike { signal: *signal, pid, target: "a random worker (storm)".into() });
            }
        }
        strikes
    }
}
