//! One run, from a plan to its event log: the [`sandbox`] (cgroup, process
//! group, shared memory), the pool's [`owner`] process, the [`nemesis`] that
//! strikes from outside, the [`runner`] that ties them together under a
//! deadline, the [`session`] that holds many runs' sandboxes, the run's
//! [`events`], and what an [`interrupt`] tears down.

pub mod events;
pub mod interrupt;
pub mod nemesis;
pub mod owner;
pub mod runner;
pub mod sandbox;
pub mod session;
