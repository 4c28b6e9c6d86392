//! Stability across repeats (`run --repeat N`): each cell's (scenario ×
//! target) distribution of verdicts, and whether the cell held.
//!
//! A cell is **stable** when all its repeats came to one verdict, the
//! expected one; **wrong** when they came to one verdict that is not the
//! expected one (a wrong verdict, as in a single run); **unstable** when they
//! came to more than one verdict: a failure of its own kind, whichever of
//! them the scenario expects, since a verdict that depends on the run is no
//! verdict at all.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::judge::verdict::{RunRecord, Verdict};
use crate::target::Target;

/// How a cell held across its repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stability {
    /// One verdict, the expected one (or no expectation).
    Stable,
    /// One verdict, not the expected one.
    Wrong,
    /// More than one verdict.
    Unstable,
}

impl fmt::Display for Stability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stability::Stable => "stable",
            Stability::Wrong => "wrong",
            Stability::Unstable => "unstable",
        })
    }
}

/// One cell's repeats, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellStats {
    pub scenario: String,
    #[serde(with = "crate::protocol::target_name")]
    pub pool: Target,
    pub expected: Option<Verdict>,
    /// How many repeats came to each verdict.
    pub verdicts: BTreeMap<Verdict, u32>,
    pub runs: u32,
    pub stability: Stability,
}

impl CellStats {
    /// The stats of one cell's runs (all of the same scenario and pool);
    /// `None` for a cell that has none.
    pub fn of(runs: &[&RunRecord]) -> Option<CellStats> {
        let first = runs.first()?;
        let mut verdicts: BTreeMap<Verdict, u32> = BTreeMap::new();
        for run in runs {
            *verdicts.entry(run.verdict).or_default() += 1;
        }
        let stability = if verdicts.len() > 1 {
            Stability::Unstable
        } else if runs.iter().all(|r| r.as_expected()) {
            Stability::Stable
        } else {
            Stability::Wrong
        };
        Some(CellStats {
            scenario: first.scenario.clone(),
            pool: first.pool.clone(),
            expected: first.expected,
            verdicts,
            runs: runs.len() as u32,
            stability,
        })
    }

    /// `hung 5/5`; `failed-loudly 3/5, completed 2/5` (the most frequent first).
    pub fn distribution(&self) -> String {
        let mut counts: Vec<(Verdict, u32)> = self.verdicts.iter().map(|(v, n)| (*v, *n)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.iter().map(|(v, n)| format!("{v} {n}/{}", self.runs)).collect::<Vec<_>>().join(", ")
    }

    /// The cell as the table shows it: `hung 5/5`, `hung 5/5 ✗ (expected
    /// completed)`, `unstable: failed-loudly 3/5, completed 2/5 (expected failed-loudly)`.
    pub fn text(&self, mismatch: &str) -> String {
        let expected = self.expected.map(|e| format!(" (expected {e})")).unwrap_or_default();
        match self.stability {
            Stability::Stable => self.distribution(),
            Stability::Wrong => format!("{} {mismatch}{expected}", self.distribution()),
            Stability::Unstable => format!("unstable: {}{expected}", self.distribution()),
        }
    }

    /// The worst verdict any repeat came to.
    pub fn worst(&self) -> Verdict {
        self.verdicts.keys().copied().max().unwrap_or(Verdict::Skipped)
    }
}
