//! The worker process every pool starts: `poolchaos-worker private|shared`.
//! All of its behaviour lives in `pools::worker`.

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    std::process::exit(pools::worker::main(&mode));
}
