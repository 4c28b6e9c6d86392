//! The pools by name: [`PoolKind`]'s names, parsing them, and [`build`],
//! which starts a pool of a kind. It sits above every pool module (it is
//! the only module that imports them all); the pools import only
//! [`crate::pool`].

use std::fmt;
use std::str::FromStr;

use crate::pool::{PlantedBug, Pool, PoolConfig, PoolError, PoolKind};
use crate::{naive, per_task, planted, polling, seed_polling, supervised};

impl PoolKind {
    pub const ALL: [PoolKind; 5] =
        [PoolKind::Naive, PoolKind::SeedPolling, PoolKind::Polling, PoolKind::PerTask, PoolKind::Supervised];

    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Naive => "naive",
            PoolKind::SeedPolling => "seed-polling",
            PoolKind::Polling => "polling",
            PoolKind::PerTask => "per-task",
            PoolKind::Supervised => "supervised",
            PoolKind::Planted(bug) => bug.name(),
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PoolKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let planted = PlantedBug::ALL.map(PoolKind::Planted);
        PoolKind::ALL.into_iter().chain(planted).find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = PoolKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown pool {s:?} (known: {})", names.join(", "))
        })
    }
}

/// Starts a pool of `kind`.
pub fn build(kind: PoolKind, config: &PoolConfig) -> Result<Box<dyn Pool>, PoolError> {
    Ok(match kind {
        PoolKind::Naive => Box::new(naive::NaivePool::new(config)?),
        PoolKind::SeedPolling => Box::new(seed_polling::SeedPollingPool::new(config)?),
        PoolKind::Polling => Box::new(polling::PollingPool::new(config)?),
        PoolKind::PerTask => Box::new(per_task::start(config)?),
        PoolKind::Supervised => Box::new(supervised::start(config)?),
        PoolKind::Planted(bug) => Box::new(planted::start(config, bug)?),
    })
}
