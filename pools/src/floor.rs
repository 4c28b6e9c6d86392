//! The worker's side of the floor measurements (what `poolchaos bench` and
//! the criterion benches compare every pool against):
//!
//! - `poolchaos-worker echo-frames batched|single`: echoes length-prefixed
//!   frames from stdin to stdout, byte for byte, until EOF. `batched` writes
//!   back every whole frame of one read in one write; `single` writes each
//!   frame on its own. The benches put id-tagged frames through it, so it is
//!   the pipe and the scheduler and nothing of a pool.
//! - `poolchaos-worker fork-wait N`: forks N children one after another, each
//!   `_exit(0)`ing at once, and waits for each; prints the total in ns. This
//!   process is single-threaded, so forking without exec is safe here (and
//!   it is the same binary, the same size, as per-task's fork server).

use std::io::{self, Write};
use std::time::Instant;

/// Runs one of the floor modes; `mode` is the worker's first argument.
pub(crate) fn run(mode: &str) -> io::Result<()> {
    let arg = std::env::args().nth(2).unwrap_or_default();
    match mode {
        "echo-frames" => echo_frames(arg == "single"),
        "fork-wait" => {
            let n: u32 = arg.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "fork-wait N"))?;
            let ns = fork_wait(n)?;
            let mut out = io::stdout().lock();
            writeln!(out, "{ns}")?;
            out.flush()
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unknown floor mode {mode:?}"))),
    }
}

fn echo_frames(single: bool) -> io::Result<()> {
    let stdin = rustix::stdio::stdin();
    let stdout = rustix::stdio::stdout();
    let mut buf = vec![0u8; 256 << 10];
    let mut have = 0;
    loop {
        let n = match rustix::io::read(stdin, &mut buf[have..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return if have == 0 { Ok(()) } else { Err(io::Error::other("torn frame at end of input")) };
        }
        have += n;
        let mut at = 0;
        while have - at >= 4 {
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            if 4 + len > buf.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
            }
            if have - at - 4 < len {
                break;
            }
            if single {
                write_all(stdout, &buf[at..at + 4 + len])?;
            }
            at += 4 + len;
        }
        if !single {
            write_all(stdout, &buf[..at])?;
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
}

fn write_all(fd: rustix::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Forks and reaps `n` children that exit at once; the total time in ns.
fn fork_wait(n: u32) -> io::Result<u128> {
    let started = Instant::now();
    for _ in 0..n {
        // SAFETY: this process is single-threaded (the worker binary starts
        // no thread), and the child only calls _exit.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => unsafe { libc::_exit(0) },
            -1 => return Err(io::Error::last_os_error()),
            _ => {
                let mut status = 0;
                // SAFETY: waits for the child we just forked.
                while unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(started.elapsed().as_nanos())
}
