//! `poolchaos speed`: the time of one no-fault `map` of many echo tasks on
//! each pool, in this process. (The in-process fault matrix that lived here
//! judged runs by its own rules; it is retired: `poolchaos run` and the
//! campaigns judge every run in the checker.)

use std::time::{Duration, Instant};

use pools::{PoolConfig, PoolKind, Task, WorkerProgram};

/// The best time of `repeat` no-fault maps of `tasks` echo tasks on a fresh pool.
pub fn time_map(
    program: &WorkerProgram,
    kind: PoolKind,
    tasks: u64,
    workers: usize,
    repeat: usize,
) -> anyhow::Result<Duration> {
    let pool = pools::build(kind, &PoolConfig::new(workers, program.clone()))?;
    let batch: Vec<Task> = (0..tasks).map(|i| Task::echo(i, i.to_le_bytes())).collect();
    let mut best = Duration::MAX;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let outcomes = pool.map_timeout(batch.clone(), Some(Duration::from_secs(300)))?;
        best = best.min(started.elapsed());
        let bad = batch.iter().zip(&outcomes).filter(|(t, o)| !o.as_ref().is_ok_and(|b| t.check(b))).count();
        anyhow::ensure!(bad == 0, "{kind}: {bad} of {tasks} results wrong or missing");
    }
    pool.close();
    pool.join_timeout(Some(Duration::from_secs(30)))?;
    Ok(best)
}
