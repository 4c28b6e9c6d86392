//! A pool's owner as its own process, for tests of what happens to the
//! workers when the owner is SIGKILLed:
//! `poolchaos-owner POOL WORKERS` starts the pool, gives every worker a
//! minute-long task, prints `workers PID...` once each has started, and
//! sleeps until it is killed.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use pools::{PoolConfig, PoolKind, Task, WorkerProgram, Workload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind: PoolKind = args.next().ok_or("usage: poolchaos-owner POOL WORKERS")?.parse()?;
    let workers: usize = args.next().ok_or("usage: poolchaos-owner POOL WORKERS")?.parse()?;
    let (trace_r, trace_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut program = WorkerProgram::beside_current_exe()?;
    program.trace = Some(Arc::new(trace_w));
    let pool = pools::build(kind, &PoolConfig::new(workers, program))?;
    let tasks = (0..workers as u64).map(|tag| Task { tag, work: Workload::Sleep { ms: 60_000 }, fault: None });
    let _pending = pool.submit(tasks.collect(), pools::Callbacks::default())?;
    let mut trace = std::fs::File::from(trace_r);
    let (mut text, mut buf) = (String::new(), [0u8; 512]);
    // The `start` lines only (a worker also writes `up` as it starts).
    let starts = |text: &str| text.lines().filter(|l| l.starts_with("start ")).count();
    while starts(&text) < workers {
        let n = trace.read(&mut buf)?;
        if n == 0 {
            return Err("trace closed".into());
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pids: Vec<&str> =
        text.lines().filter(|l| l.starts_with("start ")).filter_map(|l| l.split_whitespace().nth(3)).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "workers {}", pids.join(" "))?;
    out.flush()?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}
