//! Gzipping tar-split records on a thread of their own.
//!
//! During an import the packer runs on the extracting thread, the busiest of the import's
//! threads; the gzip of its JSON lines (zlib-rs at level "fast", before ISA-L's level 1) was
//! ≈ 8% of that thread's samples for a layer of many small files. [`GzipThread`] takes the lines in 256 KiB buffers and
//! compresses them on a second thread, so the extracting thread only encodes and copies.
//! Bounded: at most [`DEPTH`] buffers wait, plus one being filled and one being compressed.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::entry::{JsonLinesPacker, tar_split_gzip};
use crate::error::Error;

/// Bytes of JSON lines handed over at once.
const BUFFER: usize = 256 * 1024;
/// Buffers queued for the gzip thread.
const DEPTH: usize = 4;

/// A writer whose bytes are gzipped (as [`crate::gzip_packer`] does) into `W` on a
/// background thread. End it with [`GzipThread::finish`]; dropping it discards the stream's
/// end (the thread is joined either way).
#[derive(Debug)]
pub struct GzipThread<W: Write + Send + 'static> {
    buffer: Vec<u8>,
    /// `None` once finished or failed.
    channel: Option<Channel>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

#[derive(Debug)]
struct Channel {
    full: SyncSender<Vec<u8>>,
    /// Emptied buffers coming back to be filled again.
    empty: Receiver<Vec<u8>>,
}

impl<W: Write + Send + 'static> GzipThread<W> {
    /// Starts the gzip thread writing to `out`.
    pub fn new(out: W) -> Self {
        let (full, full_rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let thread = std::thread::spawn(move || -> io::Result<W> {
            let mut gz = tar_split_gzip(out);
            for mut buffer in full_rx {
                gz.write_all(&buffer)?;
                buffer.clear();
                // The filling side may have enough buffers already.
                let _ = empty_tx.try_send(buffer);
            }
            gz.finish()
        });
        GzipThread {
            buffer: Vec::with_capacity(BUFFER),
            channel: Some(Channel { full, empty }),
            thread: Some(thread),
        }
    }

    /// Hands the filled buffer to the thread; an error is the thread's (it stopped).
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(channel) = &self.channel else {
            return Err(io::Error::other("the tar-split gzip thread has stopped"));
        };
        let next = channel
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER));
        let full = std::mem::replace(&mut self.buffer, next);
        if channel.full.send(full).is_err() {
            // The thread only hangs up after a write error: report that.
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => io::Error::other("the tar-split gzip thread has stopped"),
            });
        }
        Ok(())
    }

    /// Closes the channel and waits for the thread: the end of the stream, or its error.
    fn join(&mut self) -> io::Result<W> {
        self.channel = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("the tar-split gzip thread panicked"))?,
            None => Err(io::Error::other("the tar-split gzip thread has stopped")),
        }
    }

    /// Compresses what is left, ends the gzip stream and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for GzipThread<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= BUFFER {
            self.send()?;
        }
        Ok(())
    }

    /// Hands over what is buffered (the thread compresses it in its own time).
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl<W: Write + Send + 'static> Drop for GzipThread<W> {
    fn drop(&mut self) {
        // Never leave the thread behind.
        let _ = self.join();
    }
}

impl<W: Write + Send + 'static> JsonLinesPacker<GzipThread<W>> {
    /// Ends the gzip stream (after the thread compressed everything) and returns the
    /// underlying writer.
    pub fn finish(self) -> Result<W, Error> {
        self.into_out()
            .finish()
            .map_err(|e| Error::io("finishing the tar-split gzip stream", e))
    }
}

/// A packer like [`crate::gzip_packer`] (the same JSON lines) whose gzip runs on a thread of its
/// own. End it with [`JsonLinesPacker::finish`].
pub fn gzip_packer_on_thread<W: Write + Send + 'static>(w: W) -> JsonLinesPacker<GzipThread<W>> {
    JsonLinesPacker::new(GzipThread::new(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, EntryKind, EntrySink};

    fn entries(count: usize) -> Vec<Entry> {
        (0..count)
            .map(|i| Entry {
                kind: if i % 2 == 0 {
                    EntryKind::Segment
                } else {
                    EntryKind::File
                },
                name: (i % 2 == 1).then(|| format!("dir{}/file{i}", i % 7).into_bytes()),
                size: i as u64,
                payload: Some(vec![(i % 251) as u8; 512 + i % 300]),
                position: 0,
                sparse: None,
            })
            .collect()
    }

    #[test]
    fn the_thread_writes_the_same_lines_as_the_inline_packer() {
        // More than a few buffers' worth of lines, so the channel and recycling are used.
        let entries = entries(5000);
        let mut inline = crate::gzip_packer(Vec::new());
        let mut threaded = gzip_packer_on_thread(Vec::new());
        for entry in &entries {
            inline.put(entry.clone()).expect("inline");
            threaded.put(entry.clone()).expect("threaded");
        }
        let inline = gunzip(&inline.finish().expect("finish inline"));
        let threaded = gunzip(&threaded.finish().expect("finish threaded"));
        assert!(inline.len() > 4 * BUFFER, "{}", inline.len());
        // The same JSON lines (the compressed bytes may differ: deflate's output depends on
        // how its input arrives, and the thread takes it in bigger pieces).
        assert_eq!(inline, threaded);
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).expect("gunzip");
        out
    }

    #[test]
    fn a_write_error_of_the_thread_is_reported() {
        #[derive(Debug)]
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut packer = gzip_packer_on_thread(Failing);
        let mut failed = None;
        for entry in entries(20_000) {
            if let Err(e) = packer.put(entry) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => packer.finish().expect_err("the writer fails"),
        };
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"), "{err}");
    }
}
