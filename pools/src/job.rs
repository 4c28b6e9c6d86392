//! Jobs: a batch of tasks submitted in one call, the slots their outcomes land
//! in, and the callbacks run when the last one lands.
//!
//! This is CPython's `ApplyResult`/`MapResult` in one type. Every pool
//! delivers outcomes through [`Job::set`], which refuses a second outcome for
//! a slot and counts it, so "exactly once" is checked in one place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::outcome::{Outcome, TaskError};

/// Called with every result when all tasks of a job succeeded.
pub type ResultCallback = Box<dyn FnOnce(Vec<Bytes>) + Send>;
/// Called with the first error when any task of a job failed.
pub type ErrorCallback = Box<dyn FnOnce(TaskError) + Send>;

/// The `callback` and `error_callback` of `apply_async` / `map_async`.
#[derive(Default)]
pub struct Callbacks {
    pub on_result: Option<ResultCallback>,
    pub on_error: Option<ErrorCallback>,
}

/// What a callback that panics does to the thread that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// CPython's: the panic unwinds the thread that delivered the last
    /// outcome (a raising callback kills `_handle_results`' thread before
    /// `_event.set()`), and the job never settles.
    Unwinds,
    /// Ours (supervised, per-task): the panic is caught, reported on
    /// stderr and kept ([`Job::callback_panic`]); the job settles with its
    /// outcomes, and the supervisor thread goes on.
    Caught,
}

/// A submitted batch: one outcome slot per task.
pub struct Job {
    id: u64,
    guard: Guard,
    state: Mutex<State>,
    done: Condvar,
    /// How many [`AsyncResult`] handles read this job.
    readers: AtomicUsize,
}

struct State {
    outcomes: Vec<Option<Outcome>>,
    remaining: usize,
    /// Set once the callbacks have run: waiters wake only then, as in CPython.
    settled: bool,
    /// The slots that got a second outcome, once per extra outcome.
    duplicates: Vec<usize>,
    /// The first error to arrive: what `error_callback` gets, as in CPython.
    first_error: Option<TaskError>,
    callbacks: Option<Callbacks>,
    /// What a callback's caught panic said.
    callback_panic: Option<String>,
}

impl Job {
    pub(crate) fn new(id: u64, tasks: usize, callbacks: Callbacks, guard: Guard) -> Job {
        let job = Job {
            id,
            guard,
            state: Mutex::new(State {
                outcomes: (0..tasks).map(|_| None).collect(),
                remaining: tasks,
                settled: false,
                duplicates: Vec::new(),
                first_error: None,
                callbacks: Some(callbacks),
                callback_panic: None,
            }),
            done: Condvar::new(),
            readers: AtomicUsize::new(0),
        };
        if tasks == 0 {
            job.finish(job.lock());
        }
        job
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Delivers the outcome of task `index`. Returns false, and counts a
    /// duplicate, if that task already had one.
    pub(crate) fn set(&self, index: usize, outcome: Outcome) -> bool {
        self.set_many([(index, outcome)]) == 1
    }

    /// Delivers many outcomes under one lock, as [`Job::set`] does each;
    /// returns how many landed (the others were duplicates, counted).
    pub(crate) fn set_many(&self, outcomes: impl IntoIterator<Item = (usize, Outcome)>) -> usize {
        let mut state = self.lock();
        let mut landed = 0;
        for (index, outcome) in outcomes {
            if state.outcomes.get(index).is_none_or(|slot| slot.is_some()) {
                state.duplicates.push(index);
                continue;
            }
            if let (Err(error), None) = (&outcome, &state.first_error) {
                state.first_error = Some(error.clone());
            }
            state.outcomes[index] = Some(outcome);
            state.remaining -= 1;
            landed += 1;
        }
        // Only the call that lands the last outcome finishes the job.
        if landed > 0 && state.remaining == 0 {
            self.finish(state);
        }
        landed
    }

    /// Fails every task that has no outcome yet.
    pub(crate) fn fail_pending(&self, error: &TaskError) {
        let state = self.lock();
        let pending: Vec<usize> = (0..state.outcomes.len()).filter(|&i| state.outcomes[i].is_none()).collect();
        drop(state);
        for index in pending {
            self.set(index, Err(error.clone()));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.lock().settled
    }

    /// How many tasks have no outcome yet.
    pub fn pending(&self) -> usize {
        self.lock().remaining
    }

    /// How many outcomes arrived for a task that already had one.
    pub fn duplicates(&self) -> usize {
        self.lock().duplicates.len()
    }

    /// The slot of every outcome refused as a second one, in arrival order.
    pub fn duplicate_slots(&self) -> Vec<usize> {
        self.lock().duplicates.clone()
    }

    /// What the job's callback panicked with, if it did and the pool caught it.
    pub fn callback_panic(&self) -> Option<String> {
        self.lock().callback_panic.clone()
    }

    /// Waits until every task has its outcome, or `timeout` passes.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Vec<Outcome>> {
        Some(copies(&*self.settled(timeout)?))
    }

    /// The state once the job is settled, or `None` if `timeout` passed first.
    fn settled(&self, timeout: Option<Duration>) -> Option<MutexGuard<'_, State>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        while !state.settled {
            state = match deadline {
                None => self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        Some(state)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the callbacks, outside the lock, on the thread that delivered the
    /// last outcome, then wakes the waiters (CPython's order: callback, then
    /// the event).
    fn finish(&self, mut state: MutexGuard<'_, State>) {
        let callbacks = state.callbacks.take();
        let first_error = state.first_error.clone();
        let results = match (&callbacks, &first_error) {
            (Some(Callbacks { on_result: Some(_), .. }), None) => {
                state.outcomes.iter().filter_map(|o| o.clone()?.ok()).collect()
            }
            _ => Vec::new(),
        };
        drop(state);
        let run = move || {
            if let Some(callbacks) = callbacks {
                match (first_error, callbacks.on_result, callbacks.on_error) {
                    (None, Some(on_result), _) => on_result(results),
                    (Some(error), _, Some(on_error)) => on_error(error),
                    _ => {}
                }
            }
        };
        let panic = match self.guard {
            Guard::Unwinds => {
                run();
                None
            }
            Guard::Caught => std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).err(),
        };
        let mut state = self.lock();
        if let Some(panic) = panic {
            let message = crate::fault::panic_message(panic);
            eprintln!("poolchaos: a callback of job {} failed ({message}); its outcomes stand", self.id);
            state.callback_panic = Some(message);
        }
        state.settled = true;
        drop(state);
        self.done.notify_all();
    }
}

/// Every outcome of a settled job, copied.
fn copies(state: &State) -> Vec<Outcome> {
    state.outcomes.iter().map(|o| o.clone().unwrap_or(Err(TaskError::Terminated))).collect()
}

/// The handle `apply_async` and `map_async` return.
pub struct AsyncResult(Arc<Job>);

impl Clone for AsyncResult {
    fn clone(&self) -> Self {
        AsyncResult::new(self.0.clone())
    }
}

impl Drop for AsyncResult {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncResult {
    pub(crate) fn new(job: Arc<Job>) -> AsyncResult {
        job.readers.fetch_add(1, Ordering::AcqRel);
        AsyncResult(job)
    }

    pub fn ready(&self) -> bool {
        self.0.is_ready()
    }

    /// Every task's outcome, or `None` if `timeout` passed first.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Vec<Outcome>> {
        self.0.wait(timeout)
    }

    /// Waits until every task has its outcome (true), or `timeout` passes.
    pub fn wait_settled(&self, timeout: Option<Duration>) -> bool {
        self.0.settled(timeout).is_some()
    }

    /// [`AsyncResult::wait`] for a caller done with the handle: when it is
    /// the job's last handle, the outcomes are moved out, not copied (an
    /// outcome the pool delivers later counts as a duplicate, as it would
    /// anyway); the handle comes back if `timeout` passed first.
    pub fn into_outcomes(self, timeout: Option<Duration>) -> Result<Vec<Outcome>, AsyncResult> {
        let Some(mut state) = self.0.settled(timeout) else {
            return Err(self);
        };
        if self.0.readers.load(Ordering::Acquire) > 1 {
            return Ok(copies(&state));
        }
        let outcomes = std::mem::take(&mut state.outcomes);
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Err(TaskError::Terminated))).collect())
    }

    pub fn job(&self) -> &Job {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_handle_takes_the_outcomes_and_a_shared_one_copies_them() {
        let job = Arc::new(Job::new(1, 2, Callbacks::default(), Guard::Caught));
        let (handle, other) = (AsyncResult::new(job.clone()), AsyncResult::new(job.clone()));
        let handle = handle.into_outcomes(Some(Duration::ZERO)).expect_err("nothing has landed");
        assert!(job.set(0, Ok(Bytes::from(vec![1]))) && job.set(1, Err(TaskError::Terminated)));
        let want = vec![Ok(Bytes::from(vec![1])), Err(TaskError::Terminated)];
        assert_eq!(other.into_outcomes(None).ok(), Some(want.clone()), "copied: a handle still reads");
        assert_eq!(handle.into_outcomes(None).ok(), Some(want), "moved: the last handle");
        assert!(!job.set(0, Ok(Bytes::from(vec![2]))), "an outcome after they were taken is a duplicate");
        assert_eq!(job.duplicates(), 1);
    }

    #[test]
    fn a_second_outcome_for_a_task_is_refused_and_counted() {
        let job = Job::new(1, 2, Callbacks::default(), Guard::Unwinds);
        assert!(job.set(0, Ok(Bytes::from(vec![1]))));
        assert!(!job.set(0, Ok(Bytes::from(vec![2]))));
        assert!(!job.set(5, Ok(Bytes::from(vec![2]))));
        assert_eq!((job.pending(), job.duplicates()), (1, 2));
        assert!(job.set(1, Ok(Bytes::from(vec![3]))));
        assert_eq!(job.wait(Some(Duration::ZERO)), Some(vec![Ok(Bytes::from(vec![1])), Ok(Bytes::from(vec![3]))]));
    }

    #[test]
    fn outcomes_set_under_one_lock_count_duplicates_and_finish_the_job_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let on_result = move |results: Vec<Bytes>| {
            assert_eq!(results, [vec![1], vec![2], vec![3]]);
            seen.fetch_add(1, Ordering::SeqCst);
        };
        let job = Job::new(1, 3, Callbacks { on_result: Some(Box::new(on_result)), on_error: None }, Guard::Unwinds);
        assert_eq!(
            job.set_many([(0, Ok(Bytes::from(vec![1]))), (0, Ok(Bytes::from(vec![9]))), (2, Ok(Bytes::from(vec![3])))]),
            2
        );
        assert_eq!((job.pending(), job.duplicates(), job.is_ready()), (1, 1, false));
        assert_eq!(job.set_many([(1, Ok(Bytes::from(vec![2]))), (7, Ok(Bytes::from(vec![9])))]), 1);
        assert_eq!(job.set_many([(1, Ok(Bytes::from(vec![2])))]), 0);
        assert_eq!((job.pending(), job.duplicates(), calls.load(Ordering::SeqCst)), (0, 3, 1));
        assert!(job.is_ready());
    }

    #[test]
    fn the_error_callback_gets_the_first_error_and_runs_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let job = Job::new(
            1,
            2,
            Callbacks {
                on_result: Some(Box::new(|_| panic!("no result callback on error"))),
                on_error: Some(Box::new(move |e| {
                    assert_eq!(e, TaskError::Terminated);
                    seen.fetch_add(1, Ordering::SeqCst);
                })),
            },
            Guard::Unwinds,
        );
        job.set(1, Err(TaskError::Terminated));
        job.fail_pending(&TaskError::Task { message: "later".into() });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_caught_callback_panic_settles_the_job_and_is_kept() {
        let on_result: ResultCallback = Box::new(|_| panic!("injected panic"));
        let job = Job::new(1, 1, Callbacks { on_result: Some(on_result), on_error: None }, Guard::Caught);
        job.set(0, Ok(Bytes::from(vec![1])));
        assert_eq!(job.wait(Some(Duration::ZERO)), Some(vec![Ok(Bytes::from(vec![1]))]));
        assert_eq!(job.callback_panic().as_deref(), Some("panic: injected panic"));
    }

    #[test]
    fn an_unguarded_callback_panic_unwinds_the_delivering_thread_and_the_job_never_settles() {
        let on_result: ResultCallback = Box::new(|_| panic!("injected panic"));
        let job = Arc::new(Job::new(1, 1, Callbacks { on_result: Some(on_result), on_error: None }, Guard::Unwinds));
        let theirs = job.clone();
        assert!(
            std::thread::spawn(move || theirs.set(0, Ok(Bytes::from(vec![1])))).join().is_err(),
            "the thread unwound"
        );
        assert_eq!(job.wait(Some(Duration::from_millis(10))), None);
        assert_eq!((job.pending(), job.callback_panic()), (0, None));
    }

    #[test]
    fn waiting_on_a_pending_job_times_out() {
        let job = Job::new(1, 1, Callbacks::default(), Guard::Unwinds);
        assert_eq!(job.wait(Some(Duration::from_millis(10))), None);
    }
}
