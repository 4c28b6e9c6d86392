//! The wire between a pool and its workers: length-prefixed frames of
//! `postcard`-encoded messages.
//!
//! A frame is a little-endian `u32` length, then that many bytes. Every pool
//! speaks the same messages; what differs is the channel (a private pipe per
//! worker, or CPython-style queues shared by all workers behind locks).

use std::io::{self, Read};
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

use crate::task::{Fault, FaultKind, Task};

/// Frames larger than this are a protocol error, not an allocation.
pub const MAX_FRAME: usize = 256 << 20;

/// Identifies one dispatch of one task: which job, which slot in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    pub job: u64,
    pub index: u32,
}

/// Pool to worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run this task; `attempt` counts from 0 (faults look at it).
    Run { id: TaskRef, attempt: u32, task: Task },
    /// Exit cleanly (CPython's `None` sentinel).
    Stop,
}

/// The borrowing twin of [`ToWorker::Run`]: the same bytes on the wire,
/// encoded without cloning the task.
#[derive(Debug, Serialize)]
pub enum ToWorkerRef<'a> {
    Run { id: TaskRef, attempt: u32, task: &'a Task },
}

/// The head of a [`ToWorker::Run`] frame: what a worker can decode from
/// its first bytes, before the workload (a task's `fault` precedes its
/// `work` on the wire). Variant 0, as `Run` is.
#[derive(Debug, Deserialize)]
pub enum RunHead {
    Run { id: TaskRef, attempt: u32, task: TaskHead },
}

/// The fields of a [`Task`] before its workload.
#[derive(Debug, Deserialize)]
pub struct TaskHead {
    pub tag: u64,
    pub fault: Option<Fault>,
}

impl RunHead {
    /// The head of a frame's payload, from its first bytes; `None` if they
    /// are too few, or not a `Run`.
    pub fn peek(payload: &[u8]) -> Option<(u32, TaskHead)> {
        match postcard::take_from_bytes::<RunHead>(payload) {
            Ok((RunHead::Run { attempt, task, .. }, _)) => Some((attempt, task)),
            Err(_) => None,
        }
    }
}

/// Worker to pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// The task's result, or the error the task itself raised.
    Done { id: TaskRef, result: Result<Vec<u8>, String> },
    /// A task's result armed with its `decode-result` fault: the pool fires
    /// `kind` as it decodes the frame ([`crate::fault::decode_result`]), as Python's
    /// parent does unpickling a result that raises (`AtUnpickle`).
    Armed { id: TaskRef, result: Result<Vec<u8>, String>, kind: FaultKind },
    /// The worker went over its memory ceiling, or ran its most tasks, and
    /// exits after this frame; every task sent after its last result was
    /// not started.
    Recycling { rss_kib: u64 },
    /// Tells the result handler to stop (written by the pool itself).
    Sentinel,
}

/// Appends one frame holding `msg` to `buf`.
pub fn encode_into<T: Serialize>(msg: &T, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    // Serializing our own plain types into a Vec cannot fail.
    let mut buf_taken = std::mem::take(buf);
    buf_taken = postcard::to_extend(msg, buf_taken).unwrap_or_else(|_| unreachable!());
    *buf = buf_taken;
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// One frame holding `msg`.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_into(msg, &mut buf);
    buf
}

/// Appends one frame holding `msg` to `out`: the same bytes as
/// [`encode_into`], but a small message is serialized into a stack
/// buffer (postcard's slice flavor) and copied in once, not extended a
/// byte at a time. Used by the worker and by `supervised`.
pub(crate) fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    let mut scratch = [0u8; 256];
    match postcard::to_slice(msg, &mut scratch) {
        Ok(bytes) => {
            out.reserve(4 + bytes.len());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Err(_) => encode_into(msg, out),
    }
}

pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The length a frame header announces; an error past [`MAX_FRAME`].
fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    Ok(len)
}

/// Reads exactly one frame's payload, and not a byte more (for channels
/// shared by several readers). `Ok(None)` on a clean end of stream between
/// frames; an end of stream inside a frame is an error.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    read_frame_peeking(reader, usize::MAX, |_| {})
}

/// [`read_frame`], showing `peek` the payload's first `first` bytes before
/// it reads the rest, if the payload is longer: what a reader learns of a
/// frame still being written.
pub fn read_frame_peeking(
    reader: &mut impl Read,
    first: usize,
    peek: impl FnOnce(&[u8]),
) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match reader.read(&mut header[..1])? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut header[1..])?,
    }
    let mut payload = vec![0; frame_len(header)?];
    let first = first.min(payload.len());
    reader.read_exact(&mut payload[..first])?;
    if first < payload.len() {
        peek(&payload[..first]);
    }
    reader.read_exact(&mut payload[first..])?;
    Ok(Some(payload))
}

/// The frame decoder every private channel uses (a worker's input, a
/// supervisor's results pipe, per-task's, the shared outqueue's result
/// handler): bytes read from a channel in big reads, straight into the
/// buffer's spare room, and whole frames taken off its front in place.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Bytes before this were taken as frames.
    start: usize,
}

impl Frames {
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Whether nothing is buffered, not even part of a frame.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// One read of up to `room` bytes (or more) from `fd`; the count, 0 at
    /// the end of the stream. Errors as the read gives them (`AGAIN` on a
    /// non-blocking fd with nothing to read, `INTR`).
    pub fn read_from(&mut self, fd: impl AsFd, room: usize) -> rustix::io::Result<usize> {
        // What was taken goes first: a memmove of a partial frame at most.
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.reserve(room);
        rustix::io::read(fd, rustix::buffer::spare_capacity(&mut self.buf))
    }

    /// The first bytes of a frame still arriving (its header read, its
    /// payload not all there yet), if one is.
    pub fn partial(&self) -> Option<&[u8]> {
        let unread = &self.buf[self.start..];
        let header = unread.first_chunk::<4>()?;
        let payload = &unread[4..];
        (payload.len() < u32::from_le_bytes(*header) as usize).then_some(payload)
    }

    /// The next whole frame's payload, if one is buffered; an error for a
    /// header past [`MAX_FRAME`] (the channel is not ours to trust then).
    pub fn next_frame(&mut self) -> io::Result<Option<&[u8]>> {
        let unread = &self.buf[self.start..];
        let Some(header) = unread.first_chunk::<4>() else { return Ok(None) };
        let len = frame_len(*header)?;
        if unread.len() - 4 < len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + len;
        Ok(Some(&self.buf[at..at + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowing_run_encodes_like_the_owning_one() {
        let task = Task::echo(1, b"x".to_vec());
        let id = TaskRef { job: 1, index: 2 };
        assert_eq!(
            encode(&ToWorkerRef::Run { id, attempt: 3, task: &task }),
            encode(&ToWorker::Run { id, attempt: 3, task: task.clone() })
        );
    }

    #[test]
    fn a_run_frame_shows_its_fault_in_its_first_bytes() {
        use crate::task::{FaultKind, FaultPoint, Workload};
        let fault = Fault::once(FaultKind::SigKill, FaultPoint::Transport);
        let task = Task { tag: 7, work: Workload::Echo(vec![1; 1 << 20]), fault: Some(fault) };
        let frame = encode(&ToWorkerRef::Run { id: TaskRef { job: 1, index: 2 }, attempt: 3, task: &task });
        let (attempt, head) = RunHead::peek(&frame[4..64]).expect("the head is in the first 60 bytes");
        assert_eq!((attempt, head.tag, head.fault), (3, 7, Some(fault)));
        assert!(RunHead::peek(&encode(&ToWorker::Stop)[4..]).is_none());
    }

    #[test]
    fn a_frame_torn_across_reads_is_taken_once_it_is_whole() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let id = TaskRef { job: 1, index: 2 };
        let torn = encode(&FromWorker::Done { id, result: Err("x".repeat(100)) });
        let mut frames = Frames::new();
        rustix::io::write(&w, &torn[..torn.len() / 2]).unwrap();
        frames.read_from(&r, 4096).unwrap();
        assert_eq!(frames.next_frame().unwrap(), None, "half a frame is not a frame");
        rustix::io::write(&w, &torn[torn.len() / 2..]).unwrap();
        frames.read_from(&r, 4096).unwrap();
        assert_eq!(frames.next_frame().unwrap(), Some(&torn[4..]));
        assert!(frames.is_empty());
    }

    #[test]
    fn frames_round_trip_and_a_partial_frame_stays() {
        let mut buf = Vec::new();
        let id = TaskRef { job: 3, index: 4 };
        encode_into(&FromWorker::Done { id, result: Ok(vec![9; 10]) }, &mut buf);
        encode_into(&FromWorker::Sentinel, &mut buf);
        let whole = buf.len();
        buf.extend_from_slice(&[200, 0]);
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&w, &buf).unwrap();
        let mut frames = Frames::new();
        assert_eq!(frames.read_from(&r, 4096).unwrap(), buf.len());
        match decode(frames.next_frame().unwrap().unwrap()).unwrap() {
            FromWorker::Done { id: got, result } => assert_eq!((got, result), (id, Ok(vec![9; 10]))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(frames.next_frame().unwrap().unwrap()).unwrap(), FromWorker::Sentinel));
        assert_eq!(frames.next_frame().unwrap(), None, "a partial frame stays");
        assert!(!frames.is_empty());
        drop(w);
        assert_eq!(frames.read_from(&r, 16).unwrap(), 0, "the end of the stream");
        assert_eq!(buf.len() - whole, 2);
        let mut reader = &buf[..];
        assert!(read_frame(&mut reader).unwrap().is_some());
        assert!(read_frame(&mut reader).unwrap().is_some());
        assert!(read_frame(&mut reader).is_err(), "a torn frame is an error, not an end");
    }
}
