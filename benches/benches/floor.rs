//! The floor, sampled by criterion: pipe round trips, pipelined echo (one
//! write per frame, and batched: the pipelined limit), fork-and-wait,
//! spawn-exec-wait, kill to EOF. One element is one frame, fork, spawn or
//! kill. See `benches::floor` for what each one is.

use std::time::Duration;

use benches::floor;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

fn floor(c: &mut Criterion) {
    let worker = benches::worker().expect("the worker binary").path;
    let mut group = c.benchmark_group("floor");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("pipe-round-trip", |b| {
        b.iter_custom(|iters| floor::echo(&worker, 1, 1, iters, false).expect("round trips"))
    });
    group.bench_function("pipelined-one-write-per-frame", |b| {
        b.iter_custom(|iters| floor::echo(&worker, 2, floor::IN_FLIGHT, iters, false).expect("echo"))
    });
    group.bench_function("pipelined-limit", |b| {
        b.iter_custom(|iters| floor::echo(&worker, 2, floor::IN_FLIGHT, iters, true).expect("echo"))
    });
    group.bench_function("fork-and-wait", |b| {
        b.iter_custom(|iters| floor::fork_wait(&worker, iters as u32).expect("fork-wait"))
    });
    group.bench_function("spawn-exec-wait", |b| {
        b.iter_custom(|iters| floor::spawn_exec_wait(&worker, iters as u32).expect("spawn"))
    });
    group.bench_function("kill-to-eof", |b| {
        b.iter_custom(|iters| floor::kill_to_eof(&worker, iters as usize).expect("kills").into_iter().sum())
    });
    group.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
