//! The floor: what the machine itself charges for what a pool does, measured
//! in the same run as the pools so every pool figure can be given as a ratio
//! to it.
//!
//! - **pipe round trip**: one id-tagged frame at a time to a child process
//!   that echoes it (`poolchaos-worker echo-frames single`);
//! - **pipelined, one write per frame**: two such children, 64 frames in
//!   flight each, every frame written on its own (both ways);
//! - **the pipelined limit**: the same with reads and writes batched
//!   (`echo-frames batched`): what two private pipes can move at most;
//! - **fork and wait**: a bare `fork`, `_exit(0)`, `waitpid`, done inside a
//!   small single-threaded process (`poolchaos-worker fork-wait N`), never in
//!   this multi-threaded one;
//! - **spawn-exec-wait** of the worker binary (std's `Command`, which spawns
//!   with `posix_spawn`: the cheapest way to start a binary);
//! - **kill to EOF**: a child SIGKILLed to the moment its stdout pipe reads
//!   EOF here: the floor of fault detection.
//!
//! A frame is a little-endian `u32` length (8), then the `u64` id. In every
//! echo run, each id must come back exactly once, or the run is an error.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal};

/// Frames in flight per child in the pipelined runs.
pub const IN_FLIGHT: usize = 64;
const FRAME: usize = 12;

/// Every floor figure of one run.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// Frames/s with one frame in flight to one child.
    pub round_trip_per_s: f64,
    /// Frames/s through two children, 64 in flight each, one write per frame.
    pub one_write_per_frame_per_s: f64,
    /// Frames/s through two children, 64 in flight each, batched: the pipelined limit.
    pub pipelined_limit_per_s: f64,
    /// One bare fork + `_exit` + `waitpid`.
    pub fork_wait: Duration,
    /// One spawn (posix_spawn) + exit + wait of the worker binary.
    pub spawn_exec_wait: Duration,
    /// SIGKILL of a child to EOF on its stdout pipe, median.
    pub kill_to_eof: Duration,
}

/// How much of each floor measurement to run.
#[derive(Debug, Clone, Copy)]
pub struct FloorSizes {
    pub round_trips: u64,
    pub pipelined_frames: u64,
    pub forks: u32,
    pub spawns: u32,
    pub kills: usize,
    /// Runs of each; the best is kept (the floor is what the machine can do).
    pub repeat: usize,
}

impl FloorSizes {
    pub const QUICK: FloorSizes = FloorSizes {
        round_trips: 20_000,
        pipelined_frames: 2_000_000,
        forks: 2_000,
        spawns: 200,
        kills: 30,
        repeat: 3,
    };
    pub const SMOKE: FloorSizes =
        FloorSizes { round_trips: 100, pipelined_frames: 1_000, forks: 10, spawns: 3, kills: 3, repeat: 1 };
}

/// Measures every floor figure.
pub fn measure(worker: &Path, sizes: FloorSizes) -> anyhow::Result<Floor> {
    let best = |f: &mut dyn FnMut() -> anyhow::Result<Duration>| -> anyhow::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..sizes.repeat.max(1) {
            best = best.min(f()?);
        }
        Ok(best)
    };
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let rt = best(&mut || echo(worker, 1, 1, sizes.round_trips, false))?;
    let single = best(&mut || echo(worker, 2, IN_FLIGHT, sizes.pipelined_frames / 4, false))?;
    let limit = best(&mut || echo(worker, 2, IN_FLIGHT, sizes.pipelined_frames, true))?;
    let forks = best(&mut || fork_wait(worker, sizes.forks))?;
    let spawns = best(&mut || spawn_exec_wait(worker, sizes.spawns))?;
    let mut kills = kill_to_eof(worker, sizes.kills)?;
    kills.sort();
    Ok(Floor {
        round_trip_per_s: per_s(sizes.round_trips, rt),
        one_write_per_frame_per_s: per_s(sizes.pipelined_frames / 4, single),
        pipelined_limit_per_s: per_s(sizes.pipelined_frames, limit),
        fork_wait: forks / sizes.forks.max(1),
        spawn_exec_wait: spawns / sizes.spawns.max(1),
        kill_to_eof: kills.get(kills.len() / 2).copied().unwrap_or_default(),
    })
}

struct Echoer {
    child: Child,
    to: ChildStdin,
    from: ChildStdout,
    /// Encoded frames not yet written.
    out: Vec<u8>,
    written: usize,
    /// Bytes read, not yet a whole frame.
    inbuf: Vec<u8>,
    outstanding: usize,
}

/// Sends `frames` id-tagged frames through `children` echo children with up
/// to `in_flight` frames outstanding on each, and checks that every id comes
/// back exactly once. Returns the time from the first write to the last
/// frame back (the children's start is not counted).
pub fn echo(worker: &Path, children: usize, in_flight: usize, frames: u64, batched: bool) -> anyhow::Result<Duration> {
    let mode = if batched { "batched" } else { "single" };
    let mut echoers = Vec::with_capacity(children);
    for _ in 0..children.max(1) {
        let mut child = Command::new(worker)
            .args(["echo-frames", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", worker.display()))?;
        let (to, from) = (child.stdin.take().context("stdin")?, child.stdout.take().context("stdout")?);
        for fd in [to.as_fd(), from.as_fd()] {
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        }
        echoers.push(Echoer { child, to, from, out: Vec::new(), written: 0, inbuf: Vec::new(), outstanding: 0 });
    }
    let mut seen = vec![false; frames as usize];
    let (mut next, mut back) = (0u64, 0u64);
    let started = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        while back < frames {
            for e in &mut echoers {
                // Fill the window; batched: one write for all of it.
                while e.outstanding < in_flight && next < frames {
                    e.out.extend_from_slice(&8u32.to_le_bytes());
                    e.out.extend_from_slice(&next.to_le_bytes());
                    next += 1;
                    e.outstanding += 1;
                    if !batched {
                        flush(e, true)?;
                    }
                }
                flush(e, false)?;
            }
            {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 * echoers.len());
                for e in &echoers {
                    fds.push(PollFd::new(&e.from, PollFlags::IN));
                    if e.written < e.out.len() {
                        fds.push(PollFd::new(&e.to, PollFlags::OUT));
                    }
                }
                retry_poll(&mut fds)?;
            }
            for e in &mut echoers {
                back += take_frames(e, &mut seen)?;
            }
        }
        Ok(())
    })();
    let elapsed = started.elapsed();
    for e in echoers {
        let Echoer { mut child, to, .. } = e;
        drop(to);
        let _ = child.wait();
    }
    result?;
    ensure!(seen.iter().all(|&s| s), "an id never came back");
    Ok(elapsed)
}

/// Writes what it can of the pending frames; with `all`, every byte (one
/// frame, in single mode), waiting for room if it must.
fn flush(e: &mut Echoer, all: bool) -> anyhow::Result<()> {
    while e.written < e.out.len() {
        match rustix::io::write(&e.to, &e.out[e.written..]) {
            Ok(n) => e.written += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) if !all => return Ok(()),
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [PollFd::new(&e.to, PollFlags::OUT), PollFd::new(&e.from, PollFlags::IN)];
                retry_poll(&mut fds)?;
                if !fds[1].revents().is_empty() {
                    // Keep the echo moving while we wait for room.
                    return Ok(());
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    e.out.clear();
    e.written = 0;
    Ok(())
}

/// Reads what has come back and checks each id; returns how many frames.
fn take_frames(e: &mut Echoer, seen: &mut [bool]) -> anyhow::Result<u64> {
    let mut got = 0;
    loop {
        e.inbuf.reserve(64 << 10);
        match rustix::io::read(&e.from, rustix::buffer::spare_capacity(&mut e.inbuf)) {
            Ok(0) => bail!("an echo child closed its pipe early"),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(err) => return Err(err.into()),
        }
    }
    let whole = e.inbuf.len() / FRAME * FRAME;
    for frame in e.inbuf[..whole].chunks_exact(FRAME) {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        ensure!(len == 8, "a frame came back with length {len}");
        let mut id = [0u8; 8];
        id.copy_from_slice(&frame[4..]);
        let id = u64::from_le_bytes(id) as usize;
        match seen.get_mut(id) {
            Some(slot) if !*slot => *slot = true,
            Some(_) => bail!("id {id} came back twice"),
            None => bail!("id {id} was never sent"),
        }
        got += 1;
    }
    e.inbuf.drain(..whole);
    e.outstanding -= got as usize;
    Ok(got)
}

fn retry_poll(fds: &mut [PollFd<'_>]) -> io::Result<()> {
    let limit = rustix::time::Timespec { tv_sec: 30, tv_nsec: 0 };
    loop {
        match rustix::event::poll(fds, Some(&limit)) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no progress in 30 s")),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `n` bare fork-and-waits, inside the single-threaded worker binary.
pub fn fork_wait(worker: &Path, n: u32) -> anyhow::Result<Duration> {
    let out = Command::new(worker).args(["fork-wait", &n.to_string()]).stderr(Stdio::inherit()).output()?;
    ensure!(out.status.success(), "fork-wait failed: {}", out.status);
    let ns: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("fork-wait output")?;
    Ok(Duration::from_nanos(ns))
}

/// `n` spawn-exec-waits of the worker binary, which exits at once (EOF on stdin).
pub fn spawn_exec_wait(worker: &Path, n: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new(worker).arg("private").stdin(Stdio::null()).stdout(Stdio::null()).status()?;
        ensure!(status.success(), "the worker exited with {status}");
    }
    Ok(started.elapsed())
}

/// `n` times: a worker blocked on its stdin is SIGKILLed; the time until its
/// stdout pipe reads EOF here.
pub fn kill_to_eof(worker: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let mut child = Command::new(worker).arg("private").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut from = child.stdout.take().context("stdout")?;
        // Let it settle into its read of the task pipe.
        std::thread::sleep(Duration::from_millis(5));
        let pid = Pid::from_raw(child.id() as i32).context("pid")?;
        let started = Instant::now();
        rustix::process::kill_process(pid, Signal::KILL)?;
        let mut byte = [0u8; 1];
        let n = from.read(&mut byte)?;
        samples.push(started.elapsed());
        ensure!(n == 0, "a killed worker wrote something");
        child.wait()?;
    }
    Ok(samples)
}
