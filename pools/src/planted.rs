//! Bugs planted on purpose in `supervised`, to prove that the harness's
//! checker catches them. Not for use: `poolchaos` runs them only when asked
//! by name (`supervised-bug-...`), in its own tests and campaigns.
//!
//! A bug is a [`Hooks`] implementation: the supervisor calls its hooks at
//! the few points where a bug can change what it does (a result lands, a
//! task fails for good, a worker dies, a deadline passes, a task is charged
//! an attempt, a worker dies at start). The correct pool
//! uses [`Faithful`], whose hooks are the defaults; nothing in the
//! supervisor itself asks which bug it carries.

use crate::actor::{Entry, deliver_all};
use crate::outcome::{Outcome, TaskError};

/// A bug planted on purpose in `supervised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// The result of a task that was retried after a death is dropped.
    DropRetriedResult,
    /// The result of a task that was retried after a death is delivered twice.
    DuplicateRetriedResult,
    /// A dead worker's in-flight tasks are forgotten.
    IgnoreDeath,
    /// Per-task deadlines are not enforced.
    NoDeadline,
    /// A task that fails because of a fault (its own error, or `WorkerLost`
    /// after its attempts) takes a healthy task of its job down with it:
    /// the next result of that job to arrive is replaced by a copy of the
    /// error.
    FailBystander,
    /// A task that kills its worker gets one attempt more than `max_attempts`.
    ExtraAttempt,
    /// A worker that dies at start is never replaced: the pool runs one
    /// worker short, and hangs once every worker died so.
    NoStartReplacement,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::DropRetriedResult,
        PlantedBug::DuplicateRetriedResult,
        PlantedBug::IgnoreDeath,
        PlantedBug::NoDeadline,
        PlantedBug::FailBystander,
        PlantedBug::ExtraAttempt,
        PlantedBug::NoStartReplacement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::DropRetriedResult => "supervised-bug-drop-retried",
            PlantedBug::DuplicateRetriedResult => "supervised-bug-duplicate-retried",
            PlantedBug::IgnoreDeath => "supervised-bug-ignore-death",
            PlantedBug::NoDeadline => "supervised-bug-no-deadline",
            PlantedBug::FailBystander => "supervised-bug-fail-bystander",
            PlantedBug::ExtraAttempt => "supervised-bug-extra-attempt",
            PlantedBug::NoStartReplacement => "supervised-bug-no-start-replacement",
        }
    }

    /// The hooks that plant it.
    pub(crate) fn hooks(self) -> Box<dyn Hooks> {
        match self {
            PlantedBug::DropRetriedResult => Box::new(DropRetried),
            PlantedBug::DuplicateRetriedResult => Box::new(DuplicateRetried),
            PlantedBug::IgnoreDeath => Box::new(IgnoreDeath),
            PlantedBug::NoDeadline => Box::new(NoDeadline),
            PlantedBug::FailBystander => Box::new(FailBystander::default()),
            PlantedBug::ExtraAttempt => Box::new(ExtraAttempt),
            PlantedBug::NoStartReplacement => Box::new(NoStartReplacement),
        }
    }
}

/// Where a planted bug changes what the supervisor does; every default is
/// the correct behaviour.
pub(crate) trait Hooks: Send {
    /// Workers returned these outcomes (results or the tasks' own errors),
    /// in order: lands them, and leaves `landed` empty.
    fn deliver(&mut self, landed: &mut Vec<(Entry, Outcome)>) {
        deliver_all(landed);
    }

    /// `entry` fails for good because of a fault: out of attempts after
    /// deaths, or past its deadline.
    fn fail(&mut self, entry: Entry, error: TaskError) {
        entry.deliver(Err(error));
    }

    /// Whether a dead worker's tasks are settled (charged, retried, requeued).
    fn settles_deaths(&self) -> bool {
        true
    }

    /// Whether per-task deadlines are enforced.
    fn enforces_deadlines(&self) -> bool {
        true
    }

    /// How many attempts a task whose worker dies under it gets, of `max_attempts`.
    fn attempts(&self, max_attempts: u32) -> u32 {
        max_attempts
    }

    /// Whether a worker that died as it started is replaced.
    fn replaces_start_deaths(&self) -> bool {
        true
    }
}

/// The correct pool.
pub(crate) struct Faithful;
impl Hooks for Faithful {}

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
