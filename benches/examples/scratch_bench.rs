fn main() {
    let program = pools::WorkerProgram::new("target/release/poolchaos-worker");
    let pools: Vec<pools::PoolKind> =
        std::env::args().nth(1).map(|s| s.split(',').map(|p| p.parse().unwrap()).collect()).unwrap_or_default();
    let out = std::env::args().nth(2).unwrap_or("/tmp/bs".into());
    let started = std::time::Instant::now();
    let s = benches::run(&program, benches::Mode::Quick, &pools, &mut |w| {
        eprintln!("[{:.1}] {w}", started.elapsed().as_secs_f64())
    })
    .unwrap();
    benches::write(&s, std::path::Path::new(&out)).unwrap();
}
