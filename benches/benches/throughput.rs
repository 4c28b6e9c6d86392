//! Throughput of each pool on 2 workers, by task cost and SIGKILL rate
//! (placed by the tasks themselves, so the rate is exact). One element is
//! one task; a sample is whole batches (`LoadSizes::QUICK`). A pool that
//! hangs at a rate (naive, seed-polling), or breaks at the first death
//! (polling), is not benched there: `poolchaos bench` shows what they do.

use std::time::Duration;

use benches::load::{self, Cost, LoadSizes, Rate};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pools::PoolKind;

/// Whether `kind` finishes batches at `rate`.
fn survives(kind: PoolKind, rate: Rate) -> bool {
    rate == Rate::Zero || matches!(kind, PoolKind::PerTask | PoolKind::Supervised)
}

fn throughput(c: &mut Criterion) {
    let program = benches::worker().expect("the worker binary");
    let sizes = LoadSizes::QUICK;
    for cost in Cost::ALL {
        for rate in Rate::ALL {
            let mut group = c.benchmark_group(format!("throughput/{}/{}pct", cost.slug(), rate.percent()));
            group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(4));
            for kind in PoolKind::ALL.into_iter().filter(|&k| survives(k, rate)) {
                let n = sizes.tasks(kind, cost);
                group.throughput(Throughput::Elements(n));
                let pool = pools::build(kind, &load::config(&program, benches::WORKERS)).expect("start the pool");
                let mut first = 0;
                group.bench_function(kind.name(), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let tasks = load::tasks(cost, rate, n, first);
                            first += n;
                            let batch = load::run_batch(&*pool, tasks, Duration::from_secs(10)).expect("a batch");
                            assert!(batch.settled.is_some(), "{kind} hung at {} %", rate.percent());
                            total += batch.elapsed;
                        }
                        total
                    })
                });
                pool.terminate();
            }
            group.finish();
        }
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
