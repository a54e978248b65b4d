//! A bounded in-process byte pipe between two threads: at most `depth` chunks of up to
//! [`CHUNK`] bytes are in flight (bounded memory), and emptied buffers flow back to the writer
//! to be reused. The reading side can tell whether a read would find bytes waiting
//! ([`Readiness`]), so it can finish pending work before it blocks.
//!
//! A [`hashing_pipe`] also computes the SHA-256 of the stream ([`PipeReader::digest`]), on
//! whichever side has time for it: the reader hashes each chunk as it takes it, unless the
//! writer did first. The writer hashes the chunks waiting in the pipe whenever it finds the
//! pipe full (it would only sleep), and those left when it ends. An import's decompressor is
//! the faster side while a layer's small files are extracted and the slower one while big files
//! are, so neither side is the right home for the hash all along: on the decompressor
//! (measured) the import got slower, on the extracting thread the tail of small files waits for
//! it. Hashes stay in stream order: a lock holds the hasher and the number of the next chunk it
//! takes, and only that chunk may be hashed, by either side.
//!
//! Public for callers that run a stage of their own ahead of [`crate::apply`] (the pull
//! decompresses a blob on a thread of its own and hands the plain tar stream over).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};

use layerstore_model::{Digest, Sha256Hasher};
use layerstore_tarsplit::ChunkRead;

/// Bytes per chunk sent through the pipe.
pub const CHUNK: usize = 1024 * 1024;

/// A buffer in flight and how many of its bytes are data. The buffer keeps its whole
/// (initialised) length, so a recycled one is filled again without being zeroed again: a
/// source of short reads (a socket) would otherwise pay a full chunk of zeroing per read.
#[derive(Debug, Default)]
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A chunk waiting in the pipe, numbered in stream order. Shared only so the writer can hash
/// it in place; the reader takes it back whole ([`Arc::try_unwrap`]).
#[derive(Debug)]
struct Queued {
    seq: u64,
    chunk: Arc<Chunk>,
}

/// What both ends share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a chunk is queued or the stream ends.
    data: Condvar,
    /// Signalled when a chunk is taken or the reader goes away.
    space: Condvar,
    depth: usize,
    /// The stream's SHA-256, for a [`hashing_pipe`].
    hash: Option<StreamHash>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Queued>,
    /// The number the next chunk sent gets.
    next_seq: u64,
    /// The writer is gone: `Some(Ok(()))` at the stream's end, `Some(Err(_))` when it failed
    /// (taken by the reader's next read once the queue is empty).
    ended: Option<io::Result<()>>,
    reader_gone: bool,
}

/// The stream's SHA-256 and how far it got.
#[derive(Debug)]
struct StreamHash {
    /// The hasher and the number of the next chunk it takes; held while a chunk is hashed.
    order: Mutex<(Sha256Hasher, u64)>,
    /// Every chunk numbered below this is hashed; the lock-free copy of `order`'s number,
    /// stored after the hashing side let go of the chunk.
    hashed_below: AtomicU64,
}

/// Locks `mutex`, poisoned or not: the crate's threads never panic while holding one of their
/// locks with a half-made change (the pipe's, `crate::feed`'s).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the writer's turn with the hasher came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Help {
    /// No waiting chunk is left to hash (the state stayed locked since the caller's check).
    NothingToHash,
    /// It hashed the next chunk.
    Hashed,
    /// The next chunk could not be hashed now: the reader has it, or holds the hasher.
    NotNow,
}

impl Shared {
    /// The reader's hash of the chunk `seq` it just took, unless the writer hashed it first.
    /// It waits for the hasher: the chunk must be hashed before it is handed on.
    fn hash_taken(&self, seq: u64, chunk: &Chunk) {
        let Some(hash) = &self.hash else { return };
        if hash.hashed_below.load(Ordering::Acquire) > seq {
            return;
        }
        let mut order = lock(&hash.order);
        debug_assert!(order.1 >= seq, "every chunk taken before was hashed");
        if order.1 == seq {
            order.0.update(chunk.data());
            order.1 = seq + 1;
            hash.hashed_below.store(order.1, Ordering::Release);
        }
    }

    /// The writer's turn with the hasher while the reader is behind: hashes the waiting chunk
    /// next in stream order, if there is one. `patient` waits for the hasher where the reader
    /// holds it. Returns the state locked again.
    ///
    /// Lock order: the hasher before the state. The reader never holds both.
    fn help_hash<'s>(
        &'s self,
        state: MutexGuard<'s, State>,
        patient: bool,
    ) -> (MutexGuard<'s, State>, Help) {
        let Some(hash) = &self.hash else {
            return (state, Help::NothingToHash);
        };
        // Chunks before `next` still waiting were hashed by this side already.
        let next = hash.hashed_below.load(Ordering::Acquire);
        if !state.queue.iter().any(|q| q.seq >= next) {
            return (state, Help::NothingToHash);
        }
        drop(state);
        let mut order = if patient {
            lock(&hash.order)
        } else {
            match hash.order.try_lock() {
                Ok(order) => order,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return (lock(&self.state), Help::NotNow),
            }
        };
        let state = lock(&self.state);
        let Some(waiting) = state.queue.iter().find(|q| q.seq == order.1) else {
            // The reader took it meanwhile and hashes it itself.
            return (state, Help::NotNow);
        };
        let chunk = Arc::clone(&waiting.chunk);
        drop(state);
        order.0.update(chunk.data());
        order.1 += 1;
        // The reader unwraps a chunk once it sees it hashed: let go of it first.
        drop(chunk);
        hash.hashed_below.store(order.1, Ordering::Release);
        drop(order);
        (lock(&self.state), Help::Hashed)
    }
}

/// The writing end. Dropping it ends the stream; [`PipeWriter::fail`] ends it with an error.
#[derive(Debug)]
pub struct PipeWriter {
    shared: Arc<Shared>,
    unread: Arc<AtomicUsize>,
    recycled: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// The reading end: yields the writer's bytes in order, then EOF (or the writer's error).
#[derive(Debug)]
pub struct PipeReader {
    shared: Arc<Shared>,
    unread: Arc<AtomicUsize>,
    recycle: Sender<Vec<u8>>,
    current: Chunk,
    pos: usize,
}

/// A pipe holding at most `depth` full chunks in flight.
pub fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    new_pipe(depth, None)
}

/// A [`pipe`] that also hashes the stream (SHA-256) on whichever side has time for it (see
/// the [module docs](self)); the digest is [`PipeReader::digest`].
pub fn hashing_pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let hash = StreamHash {
        order: Mutex::new((Sha256Hasher::new(), 0)),
        hashed_below: AtomicU64::new(0),
    };
    new_pipe(depth, Some(hash))
}

fn new_pipe(depth: usize, hash: Option<StreamHash>) -> (PipeWriter, PipeReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(depth),
            next_seq: 0,
            ended: None,
            reader_gone: false,
        }),
        data: Condvar::new(),
        space: Condvar::new(),
        depth: depth.max(1),
        hash,
    });
    let (recycle, recycled) = channel();
    let unread = Arc::new(AtomicUsize::new(0));
    (
        PipeWriter {
            shared: Arc::clone(&shared),
            unread: Arc::clone(&unread),
            recycled,
            buf: Vec::with_capacity(CHUNK),
        },
        PipeReader {
            shared,
            unread,
            recycle,
            current: Chunk::default(),
            pos: 0,
        },
    )
}

impl PipeWriter {
    /// Fills a chunk straight from `reader` (avoiding a copy) and sends it. Returns the bytes
    /// moved: 0 at the reader's end. With `eager`, a short read (a pipe or socket with nothing
    /// more for now) sends what the chunk holds, so the reading side is never kept waiting for
    /// bytes that arrived.
    pub fn fill_from(&mut self, reader: &mut dyn Read, eager: bool) -> io::Result<usize> {
        // A recycled buffer keeps its (initialised) length: no need to zero it again.
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        let mut filled = 0;
        while filled < CHUNK {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) if eager && filled + n < CHUNK => {
                    filled += n;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled > 0 {
            self.send(Chunk { buf, len: filled })?;
        }
        Ok(filled)
    }

    /// Ends the stream with `err` for the reader.
    pub fn fail(mut self, err: io::Error) {
        // The reader may be gone already; then nobody needs the error.
        if self.flush().is_ok() {
            self.end(Err(err));
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.clear();
        buf
    }

    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        // Whether to try hashing before the next wait: not again right after a try that had
        // to give way to the reader (it would only spin).
        let mut may_help = true;
        loop {
            if state.reader_gone {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the pipe's reader is gone",
                ));
            }
            if state.queue.len() < shared.depth {
                break;
            }
            // Full: the reader is the slower side. Lend it a hand rather than sleep.
            if may_help {
                let help;
                (state, help) = shared.help_hash(state, false);
                match help {
                    // Locked since the check above: no wakeup was missed.
                    Help::NothingToHash => {}
                    Help::Hashed => continue,
                    Help::NotNow => {
                        may_help = false;
                        continue;
                    }
                }
            }
            state = shared
                .space
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            may_help = true;
        }
        self.unread.fetch_add(chunk.len, Ordering::Relaxed);
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queue.push_back(Queued {
            seq,
            chunk: Arc::new(chunk),
        });
        drop(state);
        shared.data.notify_one();
        Ok(())
    }

    /// Ends the stream, then hashes what still waits for the reader (this side has nothing
    /// else left to do).
    fn end(&mut self, outcome: io::Result<()>) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if state.ended.is_some() {
            return;
        }
        state.ended = Some(outcome);
        shared.data.notify_one();
        while !state.reader_gone {
            let help;
            (state, help) = shared.help_hash(state, true);
            // `NotNow`: the reader took the next chunk and hashes it; trying again at once
            // could only contend with it for the hasher, so the rest is the reader's.
            if help != Help::Hashed {
                break;
            }
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.take_buffer();
        let full = std::mem::replace(&mut self.buf, next);
        let len = full.len();
        self.send(Chunk { buf: full, len })
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let _ = self.flush();
        self.end(Ok(()));
    }
}

impl PipeReader {
    /// Takes the next chunk, hashed (for a [`hashing_pipe`]); `None` at the end.
    fn take(&mut self) -> io::Result<Option<Chunk>> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        let queued = loop {
            if let Some(queued) = state.queue.pop_front() {
                break queued;
            }
            match state.ended.take() {
                Some(Err(e)) => {
                    state.ended = Some(Ok(()));
                    return Err(e);
                }
                Some(Ok(())) => {
                    state.ended = Some(Ok(()));
                    return Ok(None);
                }
                None => {
                    state = shared
                        .data
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        };
        drop(state);
        shared.space.notify_one();
        shared.hash_taken(queued.seq, &queued.chunk);
        // Hashed, so the writer holds no other reference (a copy if it ever did).
        Ok(Some(Arc::try_unwrap(queued.chunk).unwrap_or_else(
            |chunk| Chunk {
                buf: chunk.data().to_vec(),
                len: chunk.len,
            },
        )))
    }

    /// A handle telling whether bytes are waiting, usable while the reader is borrowed.
    pub fn readiness(&self) -> Readiness {
        Readiness(Arc::clone(&self.unread))
    }

    /// The SHA-256 of every chunk taken so far, which at the end of the stream is the whole
    /// stream's (bytes of the last chunk not read yet included); `None` unless the pipe is a
    /// [`hashing_pipe`].
    pub fn digest(&self) -> Option<Digest> {
        let hash = self.shared.hash.as_ref()?;
        Some(lock(&hash.order).0.clone().finish())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.reader_gone = true;
        state.queue.clear();
        drop(state);
        self.shared.space.notify_one();
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_through_buffer(self, out)
    }
}

/// `Read::read` of a reader whose [`BufRead`] buffer is where all its bytes pass: copies what
/// `fill_buf` holds (refilling it if empty) and consumes that much.
pub(crate) fn read_through_buffer(reader: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let waiting = reader.fill_buf()?;
    let n = out.len().min(waiting.len());
    out[..n].copy_from_slice(&waiting[..n]);
    reader.consume(n);
    Ok(n)
}

impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len {
            match self.take()? {
                Some(chunk) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(used.buf);
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.current.data()[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.current.len - self.pos);
        self.pos += n;
        self.unread.fetch_sub(n, Ordering::Relaxed);
    }
}

impl ChunkRead for PipeReader {
    /// Hands the next chunk over whole, its buffer exchanged for `buf` (which goes back to the
    /// writer to be filled again); the rest of a chunk partly read already is copied.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if self.pos < self.current.len {
            return self.read(buf);
        }
        match self.take()? {
            Some(chunk) => {
                self.unread.fetch_sub(chunk.len, Ordering::Relaxed);
                let given = std::mem::replace(buf, chunk.buf);
                let _ = self.recycle.send(given);
                Ok(chunk.len)
            }
            None => Ok(0),
        }
    }
}

/// Whether the pipe holds bytes not read yet (see [`PipeReader::readiness`]).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicUsize>);

impl Readiness {
    /// `false` when the next read of the pipe would block (or find the end).
    pub fn bytes_waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_errors_propagate() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 253) as u8).collect();
        let (mut w, mut r) = pipe(2);
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            let mut src = &sent[..];
            while w.fill_from(&mut src, false).expect("fill") > 0 {}
            w.write_all(b"tail").expect("write");
            w.fail(io::Error::other("boom"));
        });
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).expect_err("the writer failed");
        assert_eq!(err.to_string(), "boom");
        t.join().expect("thread");
        let mut want = data;
        want.extend_from_slice(b"tail");
        assert_eq!(got, want);
    }

    #[test]
    fn eager_fill_sends_short_reads_and_readiness_follows_the_bytes() {
        // A reader returning 10 bytes per call, like a pipe with little in it.
        struct Trickle(u8);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Ok(0);
                }
                self.0 -= 1;
                let n = buf.len().min(10);
                buf[..n].fill(self.0);
                Ok(n)
            }
        }
        let (mut w, mut r) = pipe(8);
        let ready = r.readiness();
        assert!(!ready.bytes_waiting());
        let mut src = Trickle(3);
        assert_eq!(w.fill_from(&mut src, true).expect("fill"), 10);
        assert!(ready.bytes_waiting());
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf).expect("read");
        assert!(ready.bytes_waiting());
        let mut rest = [0u8; 6];
        r.read_exact(&mut rest).expect("read");
        assert!(!ready.bytes_waiting(), "all sent bytes were read");
        // Without `eager` the chunk fills up to the reader's end.
        assert_eq!(w.fill_from(&mut src, false).expect("fill"), 20);
    }

    #[test]
    fn a_recycled_chunk_shows_only_its_new_bytes() {
        // A full chunk of one byte value, then short reads of another: the short chunks reuse
        // the full one's buffer (not zeroed again), and only their own bytes come out.
        struct Short(usize);
        impl Read for Short {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(7).min(self.0);
                self.0 -= n;
                buf[..n].fill(b's');
                Ok(n)
            }
        }
        let (mut w, mut r) = pipe(1);
        let mut full = io::repeat(b'f').take(CHUNK as u64);
        assert_eq!(w.fill_from(&mut full, false).expect("fill"), CHUNK);
        let mut got = vec![0u8; CHUNK];
        r.read_exact(&mut got).expect("read the full chunk");
        let mut short = Short(21);
        let mut total = 0;
        for _ in 0..3 {
            // The reader hands the full chunk's buffer back when it takes the next one.
            total += w.fill_from(&mut short, true).expect("fill");
            let mut piece = [0u8; 7];
            r.read_exact(&mut piece).expect("read a short chunk");
            assert_eq!(&piece, b"sssssss");
            assert!(!r.readiness().bytes_waiting(), "no stale byte follows");
        }
        assert_eq!(total, 21);
    }

    #[test]
    fn buffered_reads_borrow_the_chunks_in_order() {
        let (mut w, mut r) = pipe(2);
        let ready = r.readiness();
        let t = std::thread::spawn(move || {
            w.write_all(&[1u8; CHUNK]).expect("write");
            w.write_all(b"end").expect("write");
        });
        let first = r.fill_buf().expect("fill").len();
        assert_eq!(first, CHUNK, "a whole chunk, not a copy of part of it");
        r.consume(CHUNK - 1);
        assert!(ready.bytes_waiting());
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("read");
        t.join().expect("thread");
        assert_eq!(rest, b"\x01end");
        assert!(!ready.bytes_waiting());
        assert!(r.fill_buf().expect("at the end").is_empty());
    }

    #[test]
    fn whole_chunks_are_handed_over_and_their_buffers_recycled() {
        let (mut w, mut r) = pipe(4);
        let ready = r.readiness();
        let mut first = io::repeat(b'a').take(CHUNK as u64);
        w.fill_from(&mut first, false).expect("fill");
        w.write_all(b"bcd").expect("write");
        w.flush().expect("flush");
        let mut buf = vec![7u8; 10];
        assert_eq!(r.read_chunk(&mut buf).expect("chunk"), CHUNK);
        assert!(buf[..CHUNK].iter().all(|&b| b == b'a'));
        assert!(ready.bytes_waiting(), "the second chunk waits");
        // Part of the next chunk read the ordinary way: the rest is copied, not exchanged.
        let mut one = [0u8; 1];
        r.read_exact(&mut one).expect("read");
        assert_eq!(&one, b"b");
        let mut rest = vec![0u8; 16];
        assert_eq!(r.read_chunk(&mut rest).expect("rest"), 2);
        assert_eq!(&rest[..2], b"cd");
        assert!(!ready.bytes_waiting());
        drop(w);
        assert_eq!(r.read_chunk(&mut rest).expect("end"), 0);
        // The 10-byte buffer went back to the writer: it is filled again (grown to a chunk).
        let (mut w2, mut r2) = pipe(1);
        let mut small = vec![1u8; 10];
        w2.write_all(b"x").expect("write");
        w2.flush().expect("flush");
        assert_eq!(r2.read_chunk(&mut small).expect("chunk"), 1);
        assert_eq!(w2.recycled.try_recv().expect("recycled").len(), 10);
    }

    /// The SHA-256 of `data`, as the pipe reports it.
    fn sha256(data: &[u8]) -> Digest {
        Sha256Hasher::digest(data)
    }

    /// `total` bytes of a pattern that tells chunks and offsets apart.
    fn pattern(total: usize) -> Vec<u8> {
        (0..total)
            .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
            .collect()
    }

    #[test]
    fn a_hashing_pipe_hashes_the_stream_whichever_side_is_slower() {
        let data = pattern(9 * CHUNK + 4321);
        // The reader slow (the writer finds the pipe full and hashes), fast (the reader
        // hashes), and alternating; by whole chunks and by small reads.
        for (reader_pause, writer_pause, by_chunks) in [
            (2, 0, true),
            (0, 2, true),
            (2, 0, false),
            (0, 0, false),
            (1, 1, true),
        ] {
            let (mut w, mut r) = hashing_pipe(2);
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                for piece in sent.chunks(CHUNK / 2 + 3) {
                    w.write_all(piece).expect("write");
                    std::thread::sleep(std::time::Duration::from_millis(writer_pause));
                }
            });
            let mut got = Vec::new();
            let mut buf = Vec::new();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(reader_pause));
                if by_chunks {
                    let n = r.read_chunk(&mut buf).expect("chunk");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                } else {
                    let mut small = [0u8; 100_000];
                    let n = r.read(&mut small).expect("read");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&small[..n]);
                }
            }
            writer.join().expect("writer");
            assert_eq!(got, data, "bytes in order ({reader_pause}, {writer_pause})");
            assert_eq!(r.digest(), Some(sha256(&data)));
        }
        let (_, plain) = pipe(1);
        assert_eq!(plain.digest(), None, "a plain pipe does not hash");
    }

    #[test]
    fn the_writer_hashes_what_waits_when_it_ends() {
        // Depth 4, four chunks sent and the writer gone before the reader takes any: the
        // writer hashed them all, the reader only takes them.
        let data = pattern(4 * CHUNK);
        let (mut w, mut r) = hashing_pipe(4);
        w.write_all(&data).expect("write");
        drop(w);
        let hash = r.shared.hash.as_ref().expect("hashing");
        assert_eq!(hash.hashed_below.load(Ordering::Acquire), 4);
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read");
        assert_eq!(got, data);
        assert_eq!(r.digest(), Some(sha256(&data)));
    }

    #[test]
    fn a_full_pipe_is_hashed_by_its_writer_in_order() {
        // The reader takes nothing until the writer has filled the pipe and is waiting with
        // a third chunk: the two waiting are hashed by then, in order.
        let data = pattern(3 * CHUNK);
        let (mut w, mut r) = hashing_pipe(2);
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).expect("write"));
        let hash = Arc::clone(&r.shared);
        let hash = hash.hash.as_ref().expect("hashing");
        while hash.hashed_below.load(Ordering::Acquire) < 2 {
            std::thread::yield_now();
        }
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read");
        writer.join().expect("writer");
        assert_eq!(got, data);
        assert_eq!(r.digest(), Some(sha256(&data)));
    }

    #[test]
    fn a_failed_writer_ends_a_hashing_pipe_with_its_error() {
        let (mut w, mut r) = hashing_pipe(2);
        w.write_all(b"some bytes").expect("write");
        w.fail(io::Error::other("inflate failed"));
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).expect_err("the writer failed");
        assert_eq!(err.to_string(), "inflate failed");
        assert_eq!(got, b"some bytes");
        assert_eq!(r.read(&mut [0u8; 4]).expect("then the end"), 0);
    }

    #[test]
    fn writer_sees_a_gone_reader() {
        let (mut w, r) = pipe(1);
        drop(r);
        assert!(w.fill_from(&mut &[1u8; 10][..], false).is_err());
    }
}
