//! The server's half: the loop of `poolchaos-worker forkserver`, a
//! single-threaded process that forks, reaps and reports its children.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::{EXITED, FAILED, MAX_EXTRA, READY, SPAWN, SPAWNED};
use crate::process;

/// The fork server's loop. The control socket is its stdin (and stdout);
/// `child` runs in each forked child once its fds 0 and 1 are the task's
/// pipes, and returns the child's exit code.
pub(crate) fn serve(child: impl Fn() -> i32) -> io::Result<()> {
    // Our children: pid and a pidfd we poll for their exit.
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    let served = serve_until_eof(&mut children, child);
    // However we leave (EOF, or the pool gone mid-message), our children go too.
    for (_, pidfd) in &children {
        let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
    }
    for (_, pidfd) in &children {
        let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
    }
    match served {
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => Ok(()),
        other => other,
    }
}

fn serve_until_eof(children: &mut Vec<(u32, OwnedFd)>, child: impl Fn() -> i32) -> io::Result<()> {
    let control = rustix::stdio::stdin();
    let me = rustix::process::getpid();
    send(control, &[READY], None)?;
    loop {
        let (request, exited) = wait(control, children)?;
        reap(control, children, &exited)?;
        if !request {
            continue;
        }
        let mut bytes = [0u8; 256];
        let Some((got, fds)) = receive(control, &mut bytes)? else { continue };
        if got == 0 {
            // The pool closed its end (or died): our children go with us.
            return Ok(());
        }
        let request = &bytes[..got.min(bytes.len())];
        let names: Vec<&[u8]> = match request[1..].split_last() {
            Some((0, names)) => names.split(|&b| b == 0).collect(),
            _ => Vec::new(),
        };
        if request[0] != SPAWN || fds.len() != 2 + names.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed SPAWN"));
        }
        spawn(control, children, me, fds, &names, &child)?;
    }
}

/// Waits for a request on the control socket or a child's exit: whether a
/// request is there, and the indexes of the children that exited.
fn wait(control: BorrowedFd<'_>, children: &[(u32, OwnedFd)]) -> io::Result<(bool, Vec<usize>)> {
    let mut fds = Vec::with_capacity(1 + children.len());
    fds.push(PollFd::new(&control, PollFlags::IN));
    for (_, pidfd) in children {
        fds.push(PollFd::new(pidfd, PollFlags::IN));
    }
    process::poll(&mut fds, None)?;
    let exited: Vec<usize> = (0..children.len()).filter(|&i| !fds[1 + i].revents().is_empty()).collect();
    Ok((!fds[0].revents().is_empty(), exited))
}

/// Reaps the children at `exited` (indexes into `children`, in order) and
/// reports each one's pid and how it ended (`EXITED`).
fn reap(control: BorrowedFd<'_>, children: &mut Vec<(u32, OwnedFd)>, exited: &[usize]) -> io::Result<()> {
    // Reap from the back so indexes stay valid.
    for &i in exited.iter().rev() {
        let status = rustix::process::waitid(
            WaitId::PidFd(children[i].1.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        )?;
        let Some(status) = status else { continue };
        let (pid, _) = children.swap_remove(i);
        let (kind, value) = match status.terminating_signal() {
            Some(signal) => (1u8, signal),
            None => (0u8, status.exit_status().unwrap_or(0)),
        };
        let mut message = [EXITED, 0, 0, 0, 0, kind, 0, 0, 0, 0];
        message[1..5].copy_from_slice(&pid.to_le_bytes());
        message[6..10].copy_from_slice(&value.to_le_bytes());
        send(control, &message, None)?;
    }
    Ok(())
}

/// Reads one request into `bytes`, with the fds it carries: its length (0:
/// the pool closed its end) and the fds; `None` if a signal interrupted the read.
fn receive(control: BorrowedFd<'_>, bytes: &mut [u8]) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2 + MAX_EXTRA))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let got =
        match rustix::net::recvmsg(control, &mut [IoSliceMut::new(bytes)], &mut ancillary, RecvFlags::CMSG_CLOEXEC) {
            Ok(got) => got,
            Err(rustix::io::Errno::INTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    Ok(Some((got.bytes, fds)))
}

/// Serves one `SPAWN`: forks a child on the task's pipes (`fds[0]`,
/// `fds[1]`) with the extra fds under `names`, and reports it (`SPAWNED`,
/// with a pidfd) or the fork's errno (`FAILED`).
fn spawn(
    control: BorrowedFd<'_>,
    children: &mut Vec<(u32, OwnedFd)>,
    me: Pid,
    fds: Vec<OwnedFd>,
    names: &[&[u8]],
    child: &impl Fn() -> i32,
) -> io::Result<()> {
    let held: Vec<i32> = children.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    let extra: Vec<(&[u8], i32)> = names.iter().copied().zip(fds[2..].iter().map(|fd| fd.as_raw_fd())).collect();
    crate::fault::take_start_token_ahead();
    // SAFETY: this process is single-threaded (the worker binary starts
    // no thread), so the child may run any code; it never returns here.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child; these are our copies of the fds.
        unsafe { become_worker(me, fds[0].as_raw_fd(), fds[1].as_raw_fd(), &extra, &held, child) }
    }
    drop(fds);
    if pid < 0 {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN);
        return send_failed(control, errno);
    }
    let pid = pid as u32;
    // Opened before we could reap it: the pid cannot have been recycled.
    let opened = Pid::from_raw(pid as i32)
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()));
    let pidfd = match opened {
        Ok(fd) => fd,
        Err(e) => {
            let mut status = 0;
            // SAFETY: kills and reaps the child we just forked.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, &mut status, 0);
            }
            return send_failed(control, e.raw_os_error());
        }
    };
    let mut message = [SPAWNED, 0, 0, 0, 0];
    message[1..5].copy_from_slice(&pid.to_le_bytes());
    send(control, &message, Some(pidfd.as_fd()))?;
    children.push((pid, pidfd));
    Ok(())
}

/// Reports a `SPAWN` that got no child: `FAILED` and the errno.
fn send_failed(control: BorrowedFd<'_>, errno: i32) -> io::Result<()> {
    let mut message = [FAILED, 0, 0, 0, 0];
    message[1..5].copy_from_slice(&errno.to_le_bytes());
    send(control, &message, None)
}

/// In a freshly forked child: makes the given pipes fds 0 and 1, names the
/// extra fds in the environment, drops the server's fds, dies with the
/// server, runs the worker loop, exits.
///
/// # Safety
/// Only in the child of a fork of the single-threaded server.
unsafe fn become_worker(
    server: Pid,
    stdin: i32,
    stdout: i32,
    extra: &[(&[u8], i32)],
    held: &[i32],
    child: &impl Fn() -> i32,
) -> ! {
    // SAFETY: plain system calls on fds this process owns, and environment
    // changes in a process that has one thread.
    unsafe {
        if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
            || rustix::process::getppid() != Some(server)
        {
            libc::_exit(1);
        }
        // fds 0 and 1 were the control socket; now they are the worker's
        // pipes, blocking (the pool may hand them over non-blocking).
        if libc::dup2(stdin, 0) < 0
            || libc::dup2(stdout, 1) < 0
            || libc::fcntl(0, libc::F_SETFL, 0) < 0
            || libc::fcntl(1, libc::F_SETFL, 0) < 0
        {
            libc::_exit(1);
        }
        libc::close(stdin);
        libc::close(stdout);
        for &fd in held {
            libc::close(fd);
        }
        for &(name, fd) in extra {
            // Received close-on-exec; it stays ours across the fork, no exec follows.
            let name = String::from_utf8_lossy(name);
            std::env::set_var(name.as_ref(), fd.to_string());
        }
        let code = child();
        libc::_exit(code)
    }
}

/// Sends one message, with an fd if given.
fn send(control: BorrowedFd<'_>, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        ancillary.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(control, &[IoSlice::new(bytes)], &mut ancillary, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
