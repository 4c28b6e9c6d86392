//! The poolchaos harness: runs scenarios against the pools under test, in
//! sandboxes, under faults, and judges every run.
//!
//! The modules follow the data flow:
//!
//! ```text
//! scenario ──▶ plan ──▶ runner (sandbox + owner + nemesis) ──▶ events ──▶ checker ──▶ verdict ──▶ report
//! ```
//!
//! - [`scenario`]: the TOML files people write, read and checked.
//! - [`plan`]: a scenario made concrete for one pool and seed.
//! - [`runner`]: one run: the [`sandbox`], the pool's [`owner`] process, the [`nemesis`].
//! - [`events`]: the run's event log and the owner protocol.
//! - [`checker`]: events in, [`verdict`] out.
//! - [`report`]: the table, Markdown, JSON and JUnit; [`stability`]: a cell's repeats counted.
//! - [`suite`]: many runs, a few at a time, into one report.
//! - [`campaign`]: randomized runs judged by each pool's [`oracle`], failures
//!   [`shrink`]ed to a scenario file that replays them.
//! - [`matrix`]: the quick in-process fault matrix and timing.
//! - [`bench`]: the Python targets' rows of `poolchaos bench`, each batch a run.
//! - [`install`]: what a checkout gives the harness (the worker, the Python
//!   adapter), found or made when it runs from anywhere.
//! - [`interrupt`]: SIGINT and SIGTERM: stop, tear down, report what finished.

pub mod bench;
pub mod campaign;
pub mod checker;
pub mod events;
pub mod export;
pub mod install;
pub mod interrupt;
pub mod nemesis;
pub mod oracle;
pub mod owner;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod scenario;
pub mod scenario_help;
pub mod session;
pub mod shrink;
pub mod speed;
pub mod stability;
pub mod suite;
pub mod target;
pub mod timeline;
pub mod verdict;
