//! A bounded in-process byte pipe between two threads: chunks travel through a `sync_channel`,
//! so at most `depth` chunks are in flight (bounded memory), and emptied buffers flow back to
//! the writer to be reused. The reading side can tell whether a read would find bytes waiting
//! ([`Readiness`]), so it can finish pending work before it blocks.
//!
//! Public for callers that run a stage of their own ahead of [`crate::apply`] (the pull
//! decompresses a blob on a thread of its own and hands the plain tar stream over).

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

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

/// The writing end. Dropping it ends the stream; [`PipeWriter::fail`] ends it with an error.
#[derive(Debug)]
pub struct PipeWriter {
    tx: SyncSender<io::Result<Chunk>>,
    unread: Arc<AtomicUsize>,
    recycled: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// The reading end: yields the writer's bytes in order, then EOF (or the writer's error).
#[derive(Debug)]
pub struct PipeReader {
    rx: Receiver<io::Result<Chunk>>,
    unread: Arc<AtomicUsize>,
    recycle: Sender<Vec<u8>>,
    current: Chunk,
    pos: usize,
}

/// A pipe holding at most `depth` full chunks in flight.
pub fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    let (recycle, recycled) = channel();
    let unread = Arc::new(AtomicUsize::new(0));
    (
        PipeWriter {
            tx,
            unread: Arc::clone(&unread),
            recycled,
            buf: Vec::with_capacity(CHUNK),
        },
        PipeReader {
            rx,
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
            let _ = self.tx.send(Err(err));
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.clear();
        buf
    }

    fn send(&mut self, chunk: Chunk) -> io::Result<()> {
        self.unread.fetch_add(chunk.len, Ordering::Relaxed);
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the pipe's reader is gone"))
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
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let waiting = self.fill_buf()?;
        let n = out.len().min(waiting.len());
        out[..n].copy_from_slice(&waiting[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(used.buf);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(&[]),
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
        match self.rx.recv() {
            Ok(Ok(chunk)) => {
                self.unread.fetch_sub(chunk.len, Ordering::Relaxed);
                let given = std::mem::replace(buf, chunk.buf);
                let _ = self.recycle.send(given);
                Ok(chunk.len)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(0),
        }
    }
}

impl PipeReader {
    /// A handle telling whether bytes are waiting, usable while the reader is borrowed.
    pub fn readiness(&self) -> Readiness {
        Readiness(Arc::clone(&self.unread))
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

    #[test]
    fn writer_sees_a_gone_reader() {
        let (mut w, r) = pipe(1);
        drop(r);
        assert!(w.fill_from(&mut &[1u8; 10][..], false).is_err());
    }
}
