//! Interruption: SIGINT or SIGTERM asks the harness to stop.
//!
//! [`Stop`] is the session's flag. `main` installs the handlers
//! ([`Stop::install`], signal-hook: the handler only stores to atomics, so
//! nothing runs in signal context but that). The first SIGINT or SIGTERM sets
//! the flag: the executor starts no new run, every live run tears its sandbox
//! down as at a deadline and ends with [`Interrupted`] (it is not judged), and
//! `run`, `campaign` and `bench` report what finished, then exit 128 + the
//! signal's number (130, 143). A second one exits at once (`_exit`, status
//! 128 + its number); the next start removes what it left (see
//! [`crate::run::sandbox::stale`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// A signal that stops the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopSignal {
    Sigint,
    Sigterm,
}

impl StopSignal {
    const ALL: [StopSignal; 2] = [StopSignal::Sigint, StopSignal::Sigterm];

    pub fn number(self) -> i32 {
        match self {
            StopSignal::Sigint => libc::SIGINT,
            StopSignal::Sigterm => libc::SIGTERM,
        }
    }

    /// The exit status of a harness it stopped: 128 + its number (130, 143).
    pub fn exit_status(self) -> u8 {
        (128 + self.number()) as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Sigint => "SIGINT",
            StopSignal::Sigterm => "SIGTERM",
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of a run that a stop cut short (or that did not start for one):
/// no verdict, the sandbox torn down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub StopSignal);

impl Interrupted {
    /// The interruption somewhere in `error`'s chain, if it is one.
    pub fn of(error: &anyhow::Error) -> Option<Interrupted> {
        error.chain().find_map(|e| e.downcast_ref::<Interrupted>()).copied()
    }
}

/// The session's stop flag; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Set by the first signal; a signal that finds it set exits at once.
    asked: Arc<AtomicBool>,
    /// The first signal's number (0: none yet).
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// Installs the SIGINT and SIGTERM handlers for this flag (once per
    /// process: `main` does it). The order matters: the exit is registered
    /// first, so it sees the flag as the previous signal left it.
    pub fn install(&self) -> std::io::Result<()> {
        for signal in StopSignal::ALL {
            let number = signal.number();
            signal_hook::flag::register_conditional_shutdown(number, 128 + number, Arc::clone(&self.asked))?;
            signal_hook::flag::register_usize(number, Arc::clone(&self.signal), number as usize)?;
            signal_hook::flag::register(number, Arc::clone(&self.asked))?;
        }
        Ok(())
    }

    /// Asks for a stop as `signal` would (tests; a handler does it in `main`).
    pub fn request(&self, signal: StopSignal) {
        let _ = self.signal.compare_exchange(0, signal.number() as usize, Ordering::SeqCst, Ordering::SeqCst);
        self.asked.store(true, Ordering::SeqCst);
    }

    /// The signal that asked for a stop, if one did.
    pub fn requested(&self) -> Option<StopSignal> {
        if !self.asked.load(Ordering::SeqCst) {
            return None;
        }
        let number = self.signal.load(Ordering::SeqCst) as i32;
        Some(StopSignal::ALL.into_iter().find(|s| s.number() == number).unwrap_or(StopSignal::Sigint))
    }

    /// `Err(Interrupted)` once a stop is asked for.
    pub fn check(&self) -> Result<(), Interrupted> {
        self.requested().map_or(Ok(()), |s| Err(Interrupted(s)))
    }
}

/// What a stop cut short, as the reports list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    pub signal: StopSignal,
    /// The runs it cut short (torn down, not judged): `scenario × pool`, or a campaign's run index.
    pub runs: Vec<String>,
    /// Runs that never started.
    pub not_started: usize,
}

impl fmt::Display for Interruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {} run(s) cut short", self.signal, self.runs.len())?;
        if !self.runs.is_empty() {
            write!(f, " ({})", self.runs.join(", "))?;
        }
        write!(f, ", {} not started; the verdicts are of the runs that finished", self.not_started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_names_the_stop_and_its_exit_status() {
        let stop = Stop::default();
        assert_eq!(stop.requested(), None);
        assert!(stop.check().is_ok());
        stop.clone().request(StopSignal::Sigterm);
        stop.request(StopSignal::Sigint);
        assert_eq!(stop.requested(), Some(StopSignal::Sigterm), "a clone shares the flag; the first signal names it");
        let error = anyhow::Error::from(stop.check().unwrap_err()).context("running a scenario");
        assert_eq!(Interrupted::of(&error).map(|i| i.0), Some(StopSignal::Sigterm));
        assert_eq!((StopSignal::Sigint.exit_status(), StopSignal::Sigterm.exit_status()), (130, 143));
    }
}
