//! The poolchaos harness: runs scenarios against the pools under test, in
//! sandboxes, under faults, and judges every run.
//!
//! The folders follow the data flow:
//!
//! ```text
//! scenario ──▶ scenario::plan ──▶ run (sandbox + owner + nemesis) ──▶ run::events ──▶ judge ──▶ report
//! ```
//!
//! - [`scenario`]: the TOML files people write, read and checked, and the
//!   [`scenario::plan`] a scenario becomes for one pool and seed.
//! - [`run`]: one run: the sandbox, the pool's owner process, the nemesis,
//!   the event log; what an interrupt tears down.
//! - [`judge`]: events in, verdict out (the checker); what a pool's
//!   documented behaviour allows (the oracle); a cell's repeats counted.
//! - [`report`]: the table, Markdown, JSON and JUnit; timelines; reproducers
//!   exported as scripts.
//! - [`suite`]: many runs, a few at a time, into one report.
//! - [`campaign`]: randomized runs judged by each pool's oracle, failures
//!   shrunk to a scenario file that replays them.
//! - [`protocol`]: the one protocol the harness and every owner speak.
//! - [`target`]: what can be run: our pools, the Python targets, a user's own.
//! - [`bench`]: the Python targets' rows of `poolchaos bench`, each batch a run.
//! - [`speed`]: `poolchaos speed`, a no-fault map timed on each pool.
//! - [`install`]: what a checkout gives the harness (the worker, the Python
//!   adapter), found or made when it runs from anywhere.

pub mod bench;
pub mod campaign;
pub mod install;
pub mod judge;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scenario;
pub mod speed;
pub mod suite;
pub mod target;
