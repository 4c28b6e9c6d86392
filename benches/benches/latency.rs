//! Fault-detection latency (a worker SIGKILLed to the caller holding the
//! task's error) for polling, per-task and supervised; and the cost of one
//! task in per-task, with its fork server and with a spawn-exec per task.
//! One element is one kill, or one task.

use std::time::Duration;

use benches::latency;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pools::per_task::Launch;

fn detection(c: &mut Criterion) {
    let program = benches::worker().expect("the worker binary");
    let mut group = c.benchmark_group("detection");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for kind in latency::DETECTING {
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                latency::detection(&program, kind, iters as usize).expect("detection").into_iter().sum()
            })
        });
    }
    group.finish();
}

fn per_task_cost(c: &mut Criterion) {
    let program = benches::worker().expect("the worker binary");
    let mut group = c.benchmark_group("per-task-cost");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for (name, launch) in [("fork-server", Launch::ForkServer), ("spawn-exec", Launch::SpawnExec)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| latency::per_task_cost(&program, launch, iters, 1).expect("per-task") * iters as u32)
        });
    }
    group.finish();
}

criterion_group!(benches, detection, per_task_cost);
criterion_main!(benches);
