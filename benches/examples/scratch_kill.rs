use std::time::{Duration, Instant};
fn main() {
    let program = pools::WorkerProgram::new("target/release/poolchaos-worker");
    let kind: pools::PoolKind = std::env::args().nth(1).unwrap_or("supervised".into()).parse().unwrap();
    let n: u64 = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(2000);
    let pool = pools::build(kind, &pools::PoolConfig::new(2, program)).unwrap();
    for _ in 0..3 {
        let tasks = benches::load::tasks(benches::load::Cost::NoOp, benches::load::Rate::Five, n, 0);
        let t = Instant::now();
        let b = benches::load::run_batch(&*pool, tasks, Duration::from_secs(10)).unwrap();
        println!(
            "{:?} {:?} -> {:.1} us per kill",
            t.elapsed(),
            b.settled,
            t.elapsed().as_secs_f64() * 1e6 / (n as f64 / 20.0)
        );
    }
}
