fn main() {
    let worker = std::path::PathBuf::from("target/release/poolchaos-worker");
    let n: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2_000_000);
    let w: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(64);
    for _ in 0..8 {
        let d = benches::floor::echo(&worker, 2, w, n, true).unwrap();
        let s = benches::floor::echo(&worker, 2, w, n / 4, false).unwrap();
        let r = benches::floor::echo(&worker, 1, 1, 20000, false).unwrap();
        println!(
            "limit {:.2} M/s  single {:.2} M/s  rt {:.0}/s",
            n as f64 / d.as_secs_f64() / 1e6,
            n as f64 / 4.0 / s.as_secs_f64() / 1e6,
            20000.0 / r.as_secs_f64()
        );
    }
}
