//! A run's judgement: the [`checker`] holds the event log against the plan's
//! rules and gives a [`verdict`]; the [`oracle`] says which verdicts a pool's
//! documented behaviour allows for a plan; [`stability`] counts a cell's
//! repeats.

pub mod checker;
pub mod oracle;
pub mod stability;
pub mod verdict;
