//! Bugs planted on purpose in `supervised`, to prove that the harness's
//! checker catches them. Not for use: `poolchaos` runs them only when asked
//! by name (`supervised-bug-...`), in its own tests and campaigns.
//!
//! A bug is an implementation of supervised's [`Hooks`]: the supervisor
//! calls its hooks at the few points where a bug can change what it does.
//! This module wraps the supervised pool from outside (it imports
//! `supervised`, never the reverse): the correct pool is built with
//! supervised's own `Faithful` hooks and never passes through here, and
//! nothing in the supervisor asks which bug it carries.

use crate::actor::{ActorPool, Entry};
use crate::outcome::{Outcome, TaskError};
use crate::pool::{PlantedBug, PoolConfig, PoolError, PoolKind};
use crate::supervised::{self, Hooks};

/// A supervised pool with `bug` planted in it.
pub(crate) fn start(config: &PoolConfig, bug: PlantedBug) -> Result<ActorPool, PoolError> {
    supervised::start_with(config, PoolKind::Planted(bug), hooks(bug))
}

/// The hooks that plant `bug`.
fn hooks(bug: PlantedBug) -> Box<dyn Hooks> {
    match bug {
        PlantedBug::DropRetriedResult => Box::new(DropRetried),
        PlantedBug::DuplicateRetriedResult => Box::new(DuplicateRetried),
        PlantedBug::IgnoreDeath => Box::new(IgnoreDeath),
        PlantedBug::NoDeadline => Box::new(NoDeadline),
        PlantedBug::FailBystander => Box::new(FailBystander::default()),
        PlantedBug::ExtraAttempt => Box::new(ExtraAttempt),
        PlantedBug::NoStartReplacement => Box::new(NoStartReplacement),
    }
}

/// Forwards to the bug's hooks: the planted pools share one supervisor
/// build, the correct one has its own.
impl Hooks for Box<dyn Hooks> {
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        (**self).deliver(landed);
    }

    fn fail(&mut self, entry: Entry, error: TaskError) {
        (**self).fail(entry, error);
    }

    fn settles_deaths(&self) -> bool {
        (**self).settles_deaths()
    }

    fn enforces_deadlines(&self) -> bool {
        (**self).enforces_deadlines()
    }

    fn attempts(&self, max_attempts: u32) -> u32 {
        (**self).attempts(max_attempts)
    }

    fn replaces_start_deaths(&self) -> bool {
        (**self).replaces_start_deaths()
    }
}

struct DropRetried;
impl Hooks for DropRetried {
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        for (entry, outcome) in landed.drain(..) {
            if entry.attempts == 0 {
                entry.deliver(outcome);
            }
        }
    }
}

struct DuplicateRetried;
impl Hooks for DuplicateRetried {
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        for (entry, outcome) in landed.drain(..) {
            if entry.attempts > 0 {
                entry.job.set(entry.index as usize, outcome.clone());
            }
            entry.deliver(outcome);
        }
    }
}

struct IgnoreDeath;
impl Hooks for IgnoreDeath {
    fn settles_deaths(&self) -> bool {
        false
    }
}

struct NoDeadline;
impl Hooks for NoDeadline {
    fn enforces_deadlines(&self) -> bool {
        false
    }
}

struct ExtraAttempt;
impl Hooks for ExtraAttempt {
    fn attempts(&self, max_attempts: u32) -> u32 {
        max_attempts + 1
    }
}

struct NoStartReplacement;
impl Hooks for NoStartReplacement {
    fn replaces_start_deaths(&self) -> bool {
        false
    }
}

/// The errors still owed to a healthy task, with the id of their job: one
/// per task a fault failed.
#[derive(Default)]
struct FailBystander {
    owed: Vec<(u64, TaskError)>,
}

impl FailBystander {
    fn owe(&mut self, entry: &Entry, error: &TaskError) {
        self.owed.push((entry.job.id(), error.clone()));
    }
}

impl Hooks for FailBystander {
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        for (entry, outcome) in landed.drain(..) {
            let outcome = match outcome {
                Err(error) => {
                    self.owe(&entry, &error);
                    Err(error)
                }
                Ok(result) => match self.owed.iter().position(|(job, _)| *job == entry.job.id()) {
                    Some(at) => Err(self.owed.remove(at).1),
                    None => Ok(result),
                },
            };
            entry.deliver(outcome);
        }
    }

    fn fail(&mut self, entry: Entry, error: TaskError) {
        if matches!(error, TaskError::WorkerLost { .. }) {
            self.owe(&entry, &error);
        }
        entry.deliver(Err(error));
    }
}
