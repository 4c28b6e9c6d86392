//! The fork server: a single-threaded helper process that forks the
//! workers of `per-task` (one child per task) and of `supervised` (its
//! workers, and their replacements after a death), so a pool's process never
//! forks itself after its start, and a new worker costs a `fork` of a small
//! process, not a fork of the pool's (big, multi-threaded) process plus an
//! exec and a dynamic link.
//!
//! ```text
//!  pool's supervisor thread                   fork server (poolchaos-worker forkserver)
//!  ────────────────────────                   ──────────────────────────────────────────
//!  makes the worker's pipes ─▶ SPAWN + [its stdin, its stdout, extra fds]
//!                                            fork ─▶ child: fds 0/1 = those pipes,
//!                                                    PDEATHSIG, runs the `private` loop
//!  Forked { pid, pidfd } ◀─ SPAWNED pid + [pidfd]   (pidfd opened before any reap)
//!  results pipe ◀───────────────────────────────────── the child's results, EOF at its exit
//!  exit status ◀─ EXITED pid, how ◀─ pidfd readable ⇒ waitid (the server is the parent)
//! ```
//!
//! - **Started once** by fork + exec (as every worker used to be), by the
//!   pool's supervisor thread, with `PR_SET_PDEATHSIG(SIGKILL)`: it dies with
//!   that thread, and each child it forks sets the same signal, so the
//!   children die with it. It also exits on EOF of its control socket,
//!   killing and reaping its children first.
//! - **Why forking without exec is safe here:** the server is the
//!   `poolchaos-worker` binary, which starts no thread; a child runs the same
//!   code a `private` worker runs after its exec, and builds its environment
//!   from the same variables (so its trace lines carry its own pid). The
//!   server's environment (trace fd, RSS ceiling, oom_score_adj) is what the
//!   pool gave it at its start; per-child fds (a scoreboard) come with the
//!   request, named by the variable the child finds them under.
//! - **Exit statuses:** the server is each child's parent, so it reaps them
//!   (it polls a pidfd per child) and reports `EXITED pid exit`: a pool still
//!   names the real signal or exit code in `WorkerLost`. The pidfd it hands
//!   back lets the pool see the exit at once and signal the child (deadlines,
//!   terminate) without racing a recycled pid.
//! - **Losing the server:** if it dies, its children die too (PDEATHSIG); the
//!   pool sees their pidfds turn readable, takes SIGKILL as how they ended
//!   (nobody can tell it otherwise, and no exit sink hears of them), and
//!   starts a new server, at once if a spawn finds the old one gone. The
//!   requests it had not answered are dropped with it and asked of the new
//!   one (a pool that counted them as coming would wait for them forever).
//!   A server gone before it is ready (a kill from outside while the pool
//!   starts) is started again, for up to 10 s; one that leaves a request
//!   unanswered for 10 s (stopped) is killed, and lost the same way
//!   (supervised's poll loop watches for that).
//!
//! The control socket is a `SOCK_SEQPACKET` pair, so every message arrives
//! whole. Messages (little-endian):
//!
//! | from | message | bytes | fds |
//! |---|---|---|---|
//! | server | `READY` | `0` | |
//! | pool | `SPAWN` | `1`, then one NUL-terminated variable name per extra fd | stdin, stdout (made blocking in the child), extra fds |
//! | server | `SPAWNED` | `1`, pid `u32` | the child's pidfd |
//! | server | `FAILED` | `2`, errno `i32` | |
//! | server | `EXITED` | `3`, pid `u32`, `0` code / `1` signal, value `i32` | |
//!
//! Replies to `SPAWN` come in request order; an `EXITED` always comes after
//! its child's `SPAWNED`. A pool may send several `SPAWN`s before reading
//! their replies ([`ForkServer::request`]), so a fork is never waited for
//! on a pool's critical path.
//!
//! Two halves: [`client`] (the pool's handle, in the pool's process) and
//! [`server`] (the loop of `poolchaos-worker forkserver`); this module holds
//! what both speak.

mod client;
mod server;

pub(crate) use client::{ForkServer, Forked, Note, START_PATIENCE, is_gone};
pub(crate) use server::serve;

const READY: u8 = 0;
const SPAWN: u8 = 1;
const SPAWNED: u8 = 1;
const FAILED: u8 = 2;
const EXITED: u8 = 3;

/// Most extra fds a child can be given.
const MAX_EXTRA: usize = 4;
