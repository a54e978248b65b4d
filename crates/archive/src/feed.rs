//! A compressed blob read and hashed in chunks by whichever thread needs the bytes or has time.
//!
//! A compressed import decompresses on one thread and extracts on the caller's. The blob has to
//! be read and hashed too (its SHA-256 is the layer's compressed digest). On a thread of its
//! own (gzip's design before) that work landed, by the scheduler's choice, on the inflating
//! thread's core while the other core idled, and the extracting thread idled whenever the
//! inflater was behind. So the blob is a [`SharedFeed`] instead: the decompressing thread takes
//! the chunks that are ready ([`FeedReader`]) and reads and hashes the next one itself when
//! none is; the extracting thread, where it would wait for decompressed bytes, reads and hashes
//! chunks ahead ([`SharedFeed::help`], through [`HelpWhileWaiting`]), at most `depth` of them.
//!
//! Chunks stay in stream order: one thread at a time holds the turn to read ([`ReadTurn`]),
//! and the chunk it read is queued before the turn is given back. A read error is kept for the
//! decompressing thread, which meets it where the bytes would have been.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::{Condvar, Mutex, PoisonError};

use layerstore_tarsplit::ChunkRead;

use crate::pipe::{CHUNK, Readiness, lock, read_through_buffer};

/// The blob `R`, read in chunks of up to [`CHUNK`] bytes by whichever thread gets to it first.
#[derive(Debug)]
pub(crate) struct SharedFeed<R> {
    /// Locked only by the thread that set [`Ready::reading`], so never waited for.
    source: Mutex<Source<R>>,
    ready: Mutex<Ready>,
    /// Signalled when a chunk is queued or a read ended without one.
    arrived: Condvar,
    depth: usize,
}

#[derive(Debug)]
struct Source<R> {
    reader: R,
    state: SourceState,
}

#[derive(Debug)]
enum SourceState {
    Open,
    Ended,
    /// The read failed; the error waits for the decompressing thread (`None` once it took it).
    Failed(Option<io::Error>),
}

/// Chunks read and not yet taken, in stream order, and emptied buffers to reuse.
#[derive(Debug, Default)]
struct Ready {
    chunks: VecDeque<(Vec<u8>, usize)>,
    free: Vec<Vec<u8>>,
    /// A thread is reading the next chunk (and alone may lock the source).
    reading: bool,
}

impl<R: Read> SharedFeed<R> {
    /// A feed of `reader` holding at most `depth` chunks read ahead.
    pub(crate) fn new(reader: R, depth: usize) -> Self {
        SharedFeed {
            source: Mutex::new(Source {
                reader,
                state: SourceState::Open,
            }),
            ready: Mutex::new(Ready::default()),
            arrived: Condvar::new(),
            depth: depth.max(1),
        }
    }

    /// Reads one chunk ahead if there is room and nobody else is reading: `true` when it did,
    /// `false` when there was nothing to do now (the queue full, another thread reading, or
    /// the blob ended). Errors are kept for the decompressing thread.
    pub(crate) fn help(&self) -> bool {
        let buf = {
            let mut ready = lock(&self.ready);
            if ready.reading || ready.chunks.len() >= self.depth {
                return false;
            }
            ready.reading = true;
            ready.free.pop()
        };
        let mut turn = ReadTurn {
            feed: self,
            queued: None,
        };
        turn.queued = self.read_next(buf);
        turn.queued.is_some()
    }

    /// Reads the next chunk into `buf` (a new one if `None`); `None` at the end or on an error
    /// (kept in the source's state). Only the thread that set [`Ready::reading`] calls it.
    fn read_next(&self, buf: Option<Vec<u8>>) -> Option<(Vec<u8>, usize)> {
        let mut source = lock(&self.source);
        if !matches!(source.state, SourceState::Open) {
            return None;
        }
        let mut buf = buf.unwrap_or_else(|| vec![0; CHUNK]);
        let read = loop {
            match source.reader.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                source.state = SourceState::Ended;
                None
            }
            Ok(n) => Some((buf, n)),
            Err(e) => {
                source.state = SourceState::Failed(Some(e));
                None
            }
        }
    }

    /// The next chunk in stream order, read here if none is ready and nobody is reading it;
    /// `None` at the end.
    fn take(&self) -> io::Result<Option<(Vec<u8>, usize)>> {
        let buf = {
            let mut ready = lock(&self.ready);
            loop {
                if let Some(chunk) = ready.chunks.pop_front() {
                    return Ok(Some(chunk));
                }
                if !ready.reading {
                    break;
                }
                // The chunk being read is the next one: wait for it rather than read past it.
                ready = self
                    .arrived
                    .wait(ready)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            ready.reading = true;
            ready.free.pop()
        };
        let turn = ReadTurn {
            feed: self,
            queued: None,
        };
        let chunk = self.read_next(buf);
        drop(turn);
        if chunk.is_some() {
            return Ok(chunk);
        }
        match &mut lock(&self.source).state {
            SourceState::Open | SourceState::Ended => Ok(None),
            SourceState::Failed(error) => Err(error
                .take()
                .unwrap_or_else(|| io::Error::other("the layer input failed"))),
        }
    }

    /// Gives an emptied buffer back for the next read.
    fn recycle(&self, buf: Vec<u8>) {
        if buf.len() == CHUNK {
            lock(&self.ready).free.push(buf);
        }
    }

    /// Runs `f` on the source reader (for its digest, once the blob is read).
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        f(&lock(&self.source).reader)
    }

    /// The reading end, for the decompressing thread.
    pub(crate) fn reader(&self) -> FeedReader<'_, R> {
        FeedReader {
            feed: self,
            current: Vec::new(),
            len: 0,
            pos: 0,
        }
    }
}

/// The turn to read the source's next chunk, taken by setting [`Ready::reading`]. Dropping it
/// queues the chunk read (if any), gives the turn back and wakes a waiting reader; a panic
/// while reading gives it back too, so no thread waits for a chunk that never comes.
struct ReadTurn<'f, R> {
    feed: &'f SharedFeed<R>,
    queued: Option<(Vec<u8>, usize)>,
}

impl<R> Drop for ReadTurn<'_, R> {
    fn drop(&mut self) {
        let mut ready = lock(&self.feed.ready);
        ready.reading = false;
        if let Some(chunk) = self.queued.take() {
            ready.chunks.push_back(chunk);
        }
        drop(ready);
        self.feed.arrived.notify_all();
    }
}

/// Reads a [`SharedFeed`] in stream order (see the module docs).
#[derive(Debug)]
pub(crate) struct FeedReader<'f, R> {
    feed: &'f SharedFeed<R>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
}

impl<R: Read> BufRead for FeedReader<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len {
            match self.feed.take()? {
                Some((buf, len)) => {
                    let used = std::mem::replace(&mut self.current, buf);
                    self.feed.recycle(used);
                    self.len = len;
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.current[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

impl<R: Read> Read for FeedReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_through_buffer(self, out)
    }
}

/// A reader of a pipe that, where a read would wait for the pipe's writer, first runs `help`
/// until bytes arrive or `help` has nothing left to do.
pub(crate) struct HelpWhileWaiting<'h, P> {
    inner: P,
    readiness: Readiness,
    help: Option<&'h (dyn Fn() -> bool + Sync)>,
}

impl<'h, P> HelpWhileWaiting<'h, P> {
    /// `inner`, whose bytes waiting `readiness` tells; `help` runs while none are.
    pub(crate) fn new(
        inner: P,
        readiness: Readiness,
        help: Option<&'h (dyn Fn() -> bool + Sync)>,
    ) -> Self {
        HelpWhileWaiting {
            inner,
            readiness,
            help,
        }
    }

    /// The pipe read through.
    pub(crate) fn get_ref(&self) -> &P {
        &self.inner
    }

    fn help_while_waiting(&self) {
        if let Some(help) = self.help {
            while !self.readiness.bytes_waiting() && help() {}
        }
    }
}

impl<P: Read> Read for HelpWhileWaiting<'_, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.help_while_waiting();
        self.inner.read(buf)
    }
}

impl<P: ChunkRead> ChunkRead for HelpWhileWaiting<'_, P> {
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.help_while_waiting();
        self.inner.read_chunk(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes in which every chunk differs, so a chunk out of order shows.
    fn pattern(total: usize) -> Vec<u8> {
        layerstore_testsupport::incompressible(7, total)
    }

    #[test]
    fn chunks_come_out_in_order_whoever_reads_them() {
        let data = pattern(5 * CHUNK + 123);
        let feed = SharedFeed::new(&data[..], 2);
        std::thread::scope(|scope| {
            let helper = scope.spawn(|| {
                let mut helped = 0;
                for _ in 0..1000 {
                    if feed.help() {
                        helped += 1;
                    }
                    std::thread::yield_now();
                }
                helped
            });
            let mut got = Vec::new();
            feed.reader().read_to_end(&mut got).expect("read the feed");
            assert_eq!(got, data);
            helper.join().expect("the helper ran");
        });
    }

    #[test]
    fn help_stops_at_depth_and_at_the_end() {
        let data = pattern(3 * CHUNK);
        let feed = SharedFeed::new(&data[..], 2);
        assert!(feed.help());
        assert!(feed.help());
        assert!(!feed.help(), "two chunks ahead is the depth");
        let mut reader = feed.reader();
        let mut first = vec![0; CHUNK];
        reader.read_exact(&mut first).expect("the first chunk");
        assert_eq!(first, data[..CHUNK]);
        assert!(feed.help(), "room again");
        assert!(!feed.help(), "full again");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("the rest");
        assert_eq!(rest, data[CHUNK..]);
        assert!(!feed.help(), "nothing after the end");
    }

    #[test]
    fn a_helper_that_panics_gives_its_turn_back() {
        struct PanicsOnce(bool, &'static [u8]);
        impl Read for PanicsOnce {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if !self.0 {
                    self.0 = true;
                    panic!("the helper's read panics");
                }
                self.1.read(buf)
            }
        }
        let feed = SharedFeed::new(PanicsOnce(false, b"after the panic"), 2);
        let helped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| feed.help()));
        assert!(helped.is_err(), "the read panicked");
        // Without the turn given back, this read would wait for the helper's chunk forever.
        let mut got = Vec::new();
        feed.reader().read_to_end(&mut got).expect("read");
        assert_eq!(got, b"after the panic");
    }

    #[test]
    fn a_read_error_reaches_the_reader_where_the_bytes_would_be() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"));
                }
                let n = self.0.min(buf.len());
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let feed = SharedFeed::new(Failing(10), 4);
        assert!(feed.help());
        assert!(
            !feed.help(),
            "the error is kept, not returned to the helper"
        );
        let mut reader = feed.reader();
        let mut got = [0u8; 10];
        reader
            .read_exact(&mut got)
            .expect("the bytes before the error");
        let err = reader.read(&mut [0u8; 4]).expect_err("then the error");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let again = reader.read(&mut [0u8; 4]).expect_err("and it stays failed");
        assert_eq!(again.kind(), io::ErrorKind::Other);
    }
}
