//! The wire between a pool and its workers: length-prefixed frames of
//! `postcard`-encoded messages.
//!
//! A frame is a little-endian `u32` length, then that many bytes. Every pool
//! speaks the same messages; what differs is the channel (a private pipe per
//! worker, or CPython-style queues shared by all workers behind locks).

use std::io::{self, Read};
use std::os::fd::AsFd;

use bytes::{Buf, Bytes, BytesMut};
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
    Done {
        id: TaskRef,
        #[serde(serialize_with = "result_bytes")]
        result: Result<Vec<u8>, String>,
    },
    /// A task's result armed with its `decode-result` fault: the pool fires
    /// `kind` as it decodes the frame ([`crate::fault::decode_result`]), as Python's
    /// parent does unpickling a result that raises (`AtUnpickle`).
    Armed {
        id: TaskRef,
        #[serde(serialize_with = "result_bytes")]
        result: Result<Vec<u8>, String>,
        kind: FaultKind,
    },
    /// The worker went over its memory ceiling, or ran its most tasks, and
    /// exits after this frame; every task sent after its last result was
    /// not started.
    Recycling { rss_kib: u64 },
    /// Tells the result handler to stop (written by the pool itself).
    Sentinel,
}

/// A result as serde writes a `Result`, its bytes in one piece (serde
/// writes a `Vec<u8>` a byte at a time; postcard puts the same bytes on
/// the wire either way: a length, then the bytes).
fn result_bytes<S: serde::Serializer>(result: &Result<Vec<u8>, String>, s: S) -> Result<S::Ok, S::Error> {
    struct Raw<'a>(&'a [u8]);
    impl Serialize for Raw<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    match result {
        Ok(bytes) => s.serialize_newtype_variant("Result", 0, "Ok", &Raw(bytes)),
        Err(message) => s.serialize_newtype_variant("Result", 1, "Err", message),
    }
}

/// The borrowing twin of [`FromWorker`], as a pool decodes it: the same
/// bytes on the wire (a `Vec<u8>` and a `String` go as a length and their
/// bytes), with a result's bytes and message left in the frame.
#[derive(Debug, PartialEq, Deserialize)]
pub enum FromWorkerRef<'a> {
    Done {
        id: TaskRef,
        #[serde(borrow)]
        result: Result<&'a [u8], &'a str>,
    },
    Armed {
        id: TaskRef,
        #[serde(borrow)]
        result: Result<&'a [u8], &'a str>,
        kind: FaultKind,
    },
    Recycling {
        rss_kib: u64,
    },
    Sentinel,
}

impl FromWorkerRef<'_> {
    /// The message, owning its bytes.
    pub fn into_owned(self) -> FromWorker {
        let owned = |result: Result<&[u8], &str>| result.map(<[u8]>::to_vec).map_err(str::to_owned);
        match self {
            FromWorkerRef::Done { id, result } => FromWorker::Done { id, result: owned(result) },
            FromWorkerRef::Armed { id, result, kind } => FromWorker::Armed { id, result: owned(result), kind },
            FromWorkerRef::Recycling { rss_kib } => FromWorker::Recycling { rss_kib },
            FromWorkerRef::Sentinel => FromWorker::Sentinel,
        }
    }
}

/// Appends one frame holding `msg` to `buf`.
pub fn encode_into<T: Serialize>(msg: &T, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    // Serializing our own plain types into a Vec cannot fail.
    postcard::serialize_with_flavor(msg, Appender(buf)).unwrap_or_else(|_| unreachable!());
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends the frame of a [`ToWorkerRef::Run`]: the same bytes as
/// [`encode_into`], its head (variant, ids, attempt, the task's tag)
/// written straight, varint by varint, the task's fault and workload by
/// serde (postcard writes a struct's fields in order, with nothing between).
pub fn encode_run(id: TaskRef, attempt: u32, task: &Task, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    // Variant 0: `Run`.
    buf.push(0);
    for value in [id.job, id.index.into(), attempt.into(), task.tag] {
        push_varint(buf, value);
    }
    postcard::serialize_with_flavor(&(&task.fault, &task.work), Appender(buf)).unwrap_or_else(|_| unreachable!());
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// `value` as a postcard varint: 7 bits a byte, the lowest first.
fn push_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// postcard's output appended to a `Vec`: the few bytes of a varint or a
/// short field a byte at a time (a call of `memcpy` for each cost the
/// supervisor more than the bytes), longer ones in one copy.
struct Appender<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Appender<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() <= 16 {
            self.0.reserve(bytes.len());
            bytes.iter().for_each(|&b| self.0.push(b));
        } else {
            self.0.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
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

/// The common result, a `Done` with its bytes, read straight off the
/// frame, as serde's derive reads it (a postcard varint at most 10 bytes
/// for a `u64` or a length, 5 for a `u32`, its last byte in range); `None`
/// for anything else, which is left to serde.
pub(crate) fn done_ok(payload: &[u8]) -> Option<FromWorkerRef<'_>> {
    // Variant 0 of both enums: `Done`, then `Ok`.
    let rest = payload.strip_prefix(&[0])?;
    let (job, rest) = take_varint(rest, 10, 1)?;
    let (index, rest) = take_varint(rest, 5, 15)?;
    let rest = rest.strip_prefix(&[0])?;
    let (len, rest) = take_varint(rest, 10, 1)?;
    let bytes = rest.get(..usize::try_from(len).ok()?)?;
    let id = TaskRef { job, index: u32::try_from(index).ok()? };
    Some(FromWorkerRef::Done { id, result: Ok(bytes) })
}

/// A postcard varint of at most `max` bytes, the last at most `last`, and
/// the bytes after it.
fn take_varint(input: &[u8], max: usize, last: u8) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().take(max).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (i + 1 < max || byte <= last).then(|| (value, &input[i + 1..]));
        }
    }
    None
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
/// buffer's spare room, and whole frames taken off its front in place, or
/// all at once as one shared buffer ([`Frames::take_whole`]).
#[derive(Debug, Default)]
pub struct Frames {
    buf: BytesMut,
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

    /// One read from `fd` into the buffer's spare room, made at least
    /// `room / 4` bytes (and `room` when it must grow); the count, 0 at the
    /// end of the stream. Errors as the read gives them (`AGAIN` on a
    /// non-blocking fd with nothing to read, `INTR`).
    pub fn read_from(&mut self, fd: impl AsFd, room: usize) -> rustix::io::Result<usize> {
        // What was taken goes: the buffer's front moves, nothing is copied.
        self.buf.advance(self.start);
        self.start = 0;
        if self.buf.capacity() - self.buf.len() < room.div_ceil(4) {
            // In place if the buffer is ours alone (a memmove of a partial
            // frame at most); a new one if views of taken frames hold it.
            self.buf.reserve(room);
        }
        let (read, _) = rustix::io::read(fd, self.buf.spare_capacity_mut())?;
        let n = read.len();
        // SAFETY: the read initialized the first `n` bytes of the spare room.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
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

    /// Every whole frame buffered, taken at once as one shared buffer (not
    /// copied): for a reader whose messages keep views of their frames. It
    /// stops before a header past [`MAX_FRAME`], which
    /// [`Frames::next_frame`] then reports.
    pub fn take_whole(&mut self) -> Whole {
        let mut end = self.start;
        while let Some(header) = self.buf[end..].first_chunk::<4>()
            && let Ok(len) = frame_len(*header)
            && self.buf.len() - end - 4 >= len
        {
            end += 4 + len;
        }
        if end == self.start {
            return Whole(Bytes::new());
        }
        let mut whole = self.buf.split_to(end);
        whole.advance(self.start);
        self.start = 0;
        Whole(whole.freeze())
    }
}

/// Whole frames taken off a [`Frames`] at once, in one shared buffer.
#[derive(Debug, Default)]
pub struct Whole(Bytes);

impl Whole {
    /// Each frame's payload, in order.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let (header, tail) = rest.split_first_chunk::<4>()?;
            let (payload, tail) = tail.split_at_checked(u32::from_le_bytes(*header) as usize)?;
            rest = tail;
            Some(payload)
        })
    }

    /// `part` of one of its payloads as bytes of their own, sharing the
    /// buffer (no copy: the buffer lives as long as its last view).
    pub fn share(&self, part: &[u8]) -> Bytes {
        self.0.slice_ref(part)
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

    /// What [`FromWorker`] was before its results went on the wire in one
    /// piece: serde's own derive throughout.
    #[derive(Serialize)]
    enum Plain {
        Done { id: TaskRef, result: Result<Vec<u8>, String> },
        Armed { id: TaskRef, result: Result<Vec<u8>, String>, kind: FaultKind },
    }

    #[test]
    fn a_result_goes_on_the_wire_as_serde_would_write_it_and_decodes_as_a_view() {
        let id = TaskRef { job: 300, index: 70_000 };
        let kind = FaultKind::Error;
        for result in [Ok(vec![]), Ok(vec![7; 3]), Ok(vec![9; 1000]), Err("raised".to_string())] {
            let done = encode(&FromWorker::Done { id, result: result.clone() });
            assert_eq!(done, encode(&Plain::Done { id, result: result.clone() }));
            let armed = encode(&FromWorker::Armed { id, result: result.clone(), kind });
            assert_eq!(armed, encode(&Plain::Armed { id, result: result.clone(), kind }));
            let view = result.as_deref().map_err(String::as_str);
            match decode::<FromWorkerRef>(&done[4..]) {
                Ok(FromWorkerRef::Done { id: got, result }) => assert_eq!((got, result), (id, view)),
                other => panic!("{other:?}"),
            }
            match decode::<FromWorkerRef>(&armed[4..]) {
                Ok(FromWorkerRef::Armed { id: got, result, kind: k }) => assert_eq!((got, result, k), (id, view, kind)),
                other => panic!("{other:?}"),
            }
        }
        for msg in [FromWorker::Recycling { rss_kib: 1 << 20 }, FromWorker::Sentinel] {
            let frame = encode(&msg);
            let back = decode::<FromWorkerRef>(&frame[4..]).map(FromWorkerRef::into_owned);
            assert_eq!(back.map(|m| encode(&m)).ok(), Some(frame));
        }
    }

    #[test]
    fn a_done_result_read_straight_off_its_frame_is_what_serde_reads() {
        let ids = [(0, 0), (127, 128), (u64::MAX, u32::MAX), (1 << 35, 1 << 21)];
        for ((job, index), len) in ids.into_iter().zip([0, 1, 200, 70_000]) {
            let frame = encode(&FromWorker::Done { id: TaskRef { job, index }, result: Ok(vec![3; len]) });
            let read = done_ok(&frame[4..]).expect("a done result is read straight off");
            assert_eq!(Some(read), decode::<FromWorkerRef>(&frame[4..]).ok());
        }
        // Whatever it reads, serde reads the same; the rest it leaves to serde.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut read = 0;
        for _ in 0..100_000 {
            // A result's frame with a few bytes changed, cut or added.
            let id = TaskRef { job: next() >> (next() % 64), index: (next() >> (next() % 64)) as u32 };
            let result = Ok((0..next() % 6).map(|_| next() as u8).collect());
            let mut payload = encode(&FromWorker::Done { id, result })[4..].to_vec();
            for _ in 0..next() % 3 {
                let at = (next() as usize) % payload.len();
                payload[at] = [0, 1, 0x7f, 0x80, 0xff, next() as u8][(next() % 6) as usize];
            }
            match next() % 4 {
                0 => payload.truncate((next() as usize) % payload.len()),
                1 => payload.push(next() as u8),
                _ => {}
            }
            if let Some(fast) = done_ok(&payload) {
                read += 1;
                assert_eq!(Some(fast), decode::<FromWorkerRef>(&payload).ok(), "{payload:?}");
            }
        }
        assert!(read > 1000, "only {read} read straight off");
    }

    #[test]
    fn a_run_written_straight_is_what_serde_writes() {
        use crate::task::{FaultPoint, Workload};
        let fault = Some(Fault { kind: FaultKind::SigKill, point: FaultPoint::MidTask, times: 300 });
        let works = [
            Workload::Echo(vec![]),
            Workload::Echo(vec![4; 200]),
            Workload::Spin { us: 1 << 40 },
            Workload::Sleep { ms: 3 },
            Workload::Alloc { mib: 7, hold: true },
            Workload::Large { bytes: u32::MAX },
        ];
        let ids = [(0, 0, 0, 0), (127, 128, 16_384, 1 << 35), (u64::MAX, u32::MAX, u32::MAX, u64::MAX)];
        for (work, (job, index, attempt, tag)) in works.into_iter().zip(ids.into_iter().cycle()) {
            for fault in [None, fault] {
                let task = Task { tag, fault, work: work.clone() };
                let id = TaskRef { job, index };
                let mut buf = vec![9];
                encode_run(id, attempt, &task, &mut buf);
                let mut want = vec![9];
                encode_into(&ToWorkerRef::Run { id, attempt, task: &task }, &mut want);
                assert_eq!(buf, want, "{task:?}");
            }
        }
    }

    #[test]
    fn frames_are_appended_as_postcard_writes_them() {
        let mut buf = vec![1, 2];
        for task in [Task::echo(3, vec![]), Task::echo(u64::MAX, vec![5; 17]), Task::echo(1, vec![6; 5000])] {
            let msg = ToWorker::Run { id: TaskRef { job: u64::MAX, index: 1 }, attempt: 2, task };
            let start = buf.len();
            encode_into(&msg, &mut buf);
            let payload = postcard::to_allocvec(&msg).unwrap();
            assert_eq!(buf[start..start + 4], (payload.len() as u32).to_le_bytes());
            assert_eq!(buf[start + 4..], payload[..]);
        }
    }

    #[test]
    fn whole_frames_are_taken_at_once_as_views_and_a_bad_header_stays() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut buf = Vec::new();
        for i in 0..3u8 {
            encode_into(
                &FromWorker::Done { id: TaskRef { job: 1, index: i.into() }, result: Ok(vec![i; 5]) },
                &mut buf,
            );
        }
        let torn = buf.len() - 3;
        rustix::io::write(&w, &buf[..torn]).unwrap();
        let mut frames = Frames::new();
        frames.read_from(&r, 4096).unwrap();
        let whole = frames.take_whole();
        let results: Vec<Bytes> = whole
            .payloads()
            .map(|frame| match decode::<FromWorkerRef>(frame) {
                Ok(FromWorkerRef::Done { result: Ok(bytes), .. }) => whole.share(bytes),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(results, [vec![0; 5], vec![1; 5]], "the torn third frame stays");
        assert!(frames.partial().is_some() && frames.take_whole().payloads().next().is_none());
        // Past the largest frame: not ours.
        rustix::io::write(&w, &buf[torn..]).unwrap();
        rustix::io::write(&w, &u32::MAX.to_le_bytes()).unwrap();
        frames.read_from(&r, 4096).unwrap();
        assert_eq!(frames.take_whole().payloads().count(), 1);
        assert!(frames.next_frame().is_err());
        drop(whole);
        assert_eq!(results[1], vec![1; 5], "a view outlives the frames it came in");
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
