//! The wire between a pool and its workers: length-prefixed frames of
//! `postcard`-encoded messages.
//!
//! A frame is a little-endian `u32` length, then that many bytes. Every pool
//! speaks the same messages; what differs is the channel (a private pipe per
//! worker, or CPython-style queues shared by all workers behind locks).

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::task::Task;

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

/// Worker to pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// The task's result, or the error the task itself raised.
    Done { id: TaskRef, result: Result<Vec<u8>, String> },
    /// The worker went over its memory ceiling and exits after this frame;
    /// every task sent after `id` was not started.
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

pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one frame's payload. `Ok(None)` on a clean end of stream between
/// frames; an end of stream inside a frame is an error.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read(&mut len[..1])? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut len[1..])?,
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// Splits complete frames off the front of `buf`: returns the payload ranges
/// found and how many bytes they span; a partial frame at the end stays.
pub fn split_frames(buf: &[u8]) -> io::Result<(Vec<std::ops::Range<usize>>, usize)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
        }
        if buf.len() - at - 4 < len {
            break;
        }
        frames.push(at + 4..at + 4 + len);
        at += 4 + len;
    }
    Ok((frames, at))
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
    fn frames_round_trip_and_a_partial_frame_stays() {
        let mut buf = Vec::new();
        let id = TaskRef { job: 3, index: 4 };
        encode_into(&FromWorker::Done { id, result: Ok(vec![9; 10]) }, &mut buf);
        encode_into(&FromWorker::Sentinel, &mut buf);
        let whole = buf.len();
        buf.extend_from_slice(&[200, 0]);
        let (frames, used) = split_frames(&buf).unwrap();
        assert_eq!((frames.len(), used), (2, whole));
        match decode(&buf[frames[0].clone()]).unwrap() {
            FromWorker::Done { id: got, result } => assert_eq!((got, result), (id, Ok(vec![9; 10]))),
            other => panic!("{other:?}"),
        }
        let mut reader = &buf[..];
        assert!(read_frame(&mut reader).unwrap().is_some());
        assert!(read_frame(&mut reader).unwrap().is_some());
        assert!(read_frame(&mut reader).is_err(), "a torn frame is an error, not an end");
    }
}
