//! Compressing a layer's diff: gzip in parallel 1 MiB blocks (storing the incompressible
//! ones), zstd, or nothing.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::compression::Compression;
use crate::error::{Error, Result};

/// The gzip level of compressed diffs: the zlib level whose output size and speed match the
/// Go tool's (pgzip at klauspost/compress's default level 5).
pub const GZIP_LEVEL: u32 = 5;

/// The zstd level of compressed diffs (klauspost/compress's `SpeedDefault` in the Go tool).
pub const ZSTD_LEVEL: i32 = 3;

/// Most bytes a stored deflate block holds.
const STORED_MAX: usize = 65_535;

/// Bytes of a stored deflate block's header: BFINAL and BTYPE (padded to the byte), LEN, NLEN.
const STORED_HEADER: usize = 5;

/// Bytes of input per gzip block compressed on its own thread: 1 MiB as pgzip's default, less
/// 16 bytes, so that a block stored is exactly 16 stored deflate blocks.
const GZIP_BLOCK: usize = 16 * STORED_MAX;

/// Bytes of a block buffer: the history, then each piece of up to [`STORED_MAX`] bytes of data
/// after room for its stored-block header (see [`pieces`]).
const BLOCK_CAPACITY: usize = HISTORY + GZIP_BLOCK + 16 * STORED_HEADER;

/// Bytes of history each block is primed with (deflate's whole window), as pigz does.
const HISTORY: usize = 32 << 10;

/// Blocks that may be queued or compressing per worker thread: enough to keep every worker
/// busy while the calling thread writes, few enough to bound memory (about 2 MiB a block,
/// input and output).
const BLOCKS_PER_WORKER: usize = 2;

/// A writer that compresses what it is given into `out`, as a layer's diff is compressed:
/// made by [`encoder`], ended by [`Encoder::finish`].
pub struct Encoder<'w> {
    kind: EncoderKind<'w>,
}

enum EncoderKind<'w> {
    Plain(&'w mut dyn Write),
    Gzip(ParallelGzip<'w>),
    Zstd(zstd::stream::write::Encoder<'static, &'w mut dyn Write>),
}

/// An encoder of `compression` writing into `out`. gzip is one gzip member made of 1 MiB
/// blocks deflated in parallel (each block primed with the previous 32 KiB, as pigz does), on
/// as many threads as there are CPUs, at [`GZIP_LEVEL`]; a block whose bytes are nearly
/// random (already compressed files) is stored instead, as the Go tool's encoder also gives up
/// on such data, since deflating it would cost 10 times as long to save nothing. zstd is one
/// frame at [`ZSTD_LEVEL`]. bzip2 and xz cannot be produced
/// ([`Error::UnsupportedCompression`]), as in the Go tool.
pub fn encoder<'w>(out: &'w mut dyn Write, compression: Compression) -> Result<Encoder<'w>> {
    let kind = match compression {
        Compression::None => EncoderKind::Plain(out),
        Compression::Gzip => EncoderKind::Gzip(ParallelGzip::new(out)),
        Compression::Zstd => EncoderKind::Zstd(
            zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(Error::Input)?,
        ),
        other => return Err(Error::UnsupportedCompression(other)),
    };
    Ok(Encoder { kind })
}

impl Write for Encoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            EncoderKind::Plain(out) => out.write(buf),
            EncoderKind::Gzip(gz) => gz.write(buf),
            EncoderKind::Zstd(zst) => zst.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            EncoderKind::Plain(out) => out.flush(),
            // A flush would end a gzip block early; what is written is flushed by `finish`.
            EncoderKind::Gzip(_) => Ok(()),
            EncoderKind::Zstd(zst) => zst.flush(),
        }
    }
}

impl Encoder<'_> {
    /// Writes what is still buffered and the stream's end, and flushes the output.
    pub fn finish(self) -> io::Result<()> {
        match self.kind {
            EncoderKind::Plain(out) => out.flush(),
            EncoderKind::Gzip(gz) => gz.finish(),
            EncoderKind::Zstd(zst) => zst.finish()?.flush(),
        }
    }
}

/// The gzip member header: no name, no time (as `pigz -n`), no level hint, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty, final stored deflate block: ends a stream whose last block was sync-flushed.
const FINAL_EMPTY_BLOCK: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// One gzip member compressed block by block on worker threads, written in order on the
/// caller's thread (the caller's output need not be `Send`).
///
/// The calling thread copies what it is given into the block being filled, hands each full
/// block to the workers and writes the compressed blocks as they come back, oldest first. A
/// block is deflated with a sync flush (so that blocks join on byte boundaries) or stored; the
/// CRC-32 of each is computed beside it and combined here. The data is copied in with room
/// for a stored-block header before every 65,535 bytes, so that a stored block is its own
/// buffer with the headers filled in: random data is copied once, not twice. Buffers go back
/// and forth between the threads and are reused, so a long diff allocates no more memory
/// after its first blocks.
struct ParallelGzip<'w> {
    out: &'w mut dyn Write,
    /// The block being filled: `history` bytes of the data before it, then its own data in
    /// [`pieces`]; `filled` bytes of data so far, `piece_room` more fit in the last piece.
    block: Vec<u8>,
    history: usize,
    filled: usize,
    piece_room: usize,
    /// Started with the first full block; a diff of one block is compressed here.
    workers: Option<Workers>,
    /// One per CPU (asked once: the answer costs syscalls and reads of cgroup files).
    worker_count: usize,
    /// The blocks handed out and not yet written, oldest first.
    pending: VecDeque<Receiver<io::Result<EncodedBlock>>>,
    spare_blocks: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    crc: flate2::Crc,
    header_written: bool,
}

struct Workers {
    jobs: Option<Sender<BlockJob>>,
    threads: Vec<JoinHandle<()>>,
}

/// One block to compress: the [`pieces`] of `block` after `history` bytes of history it is
/// primed with, into `output` (a spare buffer, emptied first) unless stored in place; the
/// result goes back through `done`.
struct BlockJob {
    block: Vec<u8>,
    history: usize,
    is_last: bool,
    output: Vec<u8>,
    done: SyncSender<io::Result<EncodedBlock>>,
}

/// A compressed block, with its input's CRC and both buffers for reuse: `block[history..]`
/// when `stored`, else `output`.
struct EncodedBlock {
    block: Vec<u8>,
    history: usize,
    stored: bool,
    output: Vec<u8>,
    crc: flate2::Crc,
}

impl<'w> ParallelGzip<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK_CAPACITY),
            history: 0,
            filled: 0,
            piece_room: 0,
            workers: None,
            worker_count: std::thread::available_parallelism().map_or(1, usize::from),
            pending: VecDeque::new(),
            spare_blocks: Vec::new(),
            spare_outputs: Vec::new(),
            crc: flate2::Crc::new(),
            header_written: false,
        }
    }

    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let given = buf.len();
        while !buf.is_empty() {
            if self.piece_room == 0 {
                // Room for the header of the next piece, filled in if the block is stored.
                self.block.extend_from_slice(&[0; STORED_HEADER]);
                self.piece_room = STORED_MAX;
            }
            let (now, rest) = buf.split_at(buf.len().min(self.piece_room));
            self.block.extend_from_slice(now);
            self.piece_room -= now.len();
            self.filled += now.len();
            buf = rest;
            if self.filled == GZIP_BLOCK {
                self.hand_out(false)?;
            }
        }
        Ok(given)
    }

    /// Sends the block being filled to the workers (or, for a diff of one block, compresses it
    /// here) and starts the next one with its history.
    fn hand_out(&mut self, is_last: bool) -> io::Result<()> {
        while self.pending.len() >= BLOCKS_PER_WORKER * self.worker_count {
            self.write_oldest()?;
        }
        let mut next = self
            .spare_blocks
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK_CAPACITY));
        next.clear();
        // The history of the next block: the end of the last piece (a whole one, 65,535 bytes,
        // unless this block is the last).
        let last_piece = pieces(self.block.len(), self.history)
            .last()
            .map_or(0, |(_, data)| data.len());
        let kept = last_piece.min(HISTORY);
        next.extend_from_slice(&self.block[self.block.len() - kept..]);
        let block = std::mem::replace(&mut self.block, next);
        let history = std::mem::replace(&mut self.history, kept);
        self.filled = 0;
        self.piece_room = 0;
        let output = self.spare_outputs.pop().unwrap_or_default();
        if is_last && self.workers.is_none() {
            let encoded = encode_block(&mut new_deflate(), block, history, is_last, output);
            return self.write_block(encoded);
        }
        let (done, result) = mpsc::sync_channel(1);
        let job = BlockJob {
            block,
            history,
            is_last,
            output,
            done,
        };
        let worker_count = self.worker_count;
        let sent = self
            .workers
            .get_or_insert_with(|| Workers::start(worker_count))
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(self.worker_failure());
        }
        self.pending.push_back(result);
        // Write what is done already, so that the output keeps flowing.
        while let Some(oldest) = self.pending.front() {
            match oldest.try_recv() {
                Ok(encoded) => {
                    self.pending.pop_front();
                    self.write_block(encoded)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(self.worker_failure()),
            }
        }
        Ok(())
    }

    /// Waits for the oldest block handed out and writes it.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(oldest) = self.pending.pop_front() else {
            return Ok(());
        };
        match oldest.recv() {
            Ok(encoded) => self.write_block(encoded),
            Err(_) => Err(self.worker_failure()),
        }
    }

    fn write_block(&mut self, encoded: io::Result<EncodedBlock>) -> io::Result<()> {
        let EncodedBlock {
            block,
            history,
            stored,
            output,
            crc,
        } = encoded?;
        if !self.header_written {
            self.out.write_all(&GZIP_HEADER)?;
            self.header_written = true;
        }
        self.out
            .write_all(if stored { &block[history..] } else { &output })?;
        self.crc.combine(&crc);
        self.spare_blocks.push(block);
        self.spare_outputs.push(output);
        Ok(())
    }

    /// A worker dropped its block: it panicked (the panic goes on here) or was never started.
    fn worker_failure(&mut self) -> io::Error {
        if let Some(workers) = self.workers.take() {
            workers.stop_and_resume_panics();
        }
        io::Error::other("a gzip compression thread stopped")
    }

    fn finish(mut self) -> io::Result<()> {
        // The last block: what is left, or the whole stream when no block was handed out.
        let ends_in_a_block = self.filled > 0 || self.workers.is_none();
        if ends_in_a_block {
            self.hand_out(true)?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        if !ends_in_a_block {
            // The data ended with a full block, sync-flushed: end the deflate stream.
            self.out.write_all(&FINAL_EMPTY_BLOCK)?;
        }
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        self.out.flush()
    }
}

impl Drop for ParallelGzip<'_> {
    fn drop(&mut self) {
        // Finished, or abandoned (the diff failed): let the workers end and wait for them.
        self.pending.clear();
        if let Some(mut workers) = self.workers.take() {
            workers.jobs = None;
            for thread in workers.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

impl Workers {
    fn start(count: usize) -> Workers {
        let (jobs, queue) = mpsc::channel::<BlockJob>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..count)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let mut deflate = new_deflate();
                    loop {
                        // The guard is a temporary: the lock is held only while waiting.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let encoded = encode_block(
                            &mut deflate,
                            job.block,
                            job.history,
                            job.is_last,
                            job.output,
                        );
                        // The writer may have given up (an error); then the block is dropped.
                        let _ = job.done.send(encoded);
                    }
                })
            })
            .collect();
        Workers {
            jobs: Some(jobs),
            threads,
        }
    }

    /// Ends the workers, and resumes the panic of one that panicked.
    fn stop_and_resume_panics(mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

fn new_deflate() -> flate2::Compress {
    flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false)
}

/// Where the data of a block buffer of `len` bytes lies, after `history` bytes of history:
/// pieces of [`STORED_MAX`] bytes (the last one shorter), each after [`STORED_HEADER`] bytes
/// of room for its header. Yields each piece's header offset and data range.
fn pieces(len: usize, history: usize) -> impl Iterator<Item = (usize, Range<usize>)> {
    let mut at = history;
    std::iter::from_fn(move || {
        (at < len).then(|| {
            let header = at;
            let data = at + STORED_HEADER..(at + STORED_HEADER + STORED_MAX).min(len);
            at = data.end;
            (header, data)
        })
    })
}

/// Compresses the [`pieces`] of `block` after its `history`: stored in place (their headers
/// filled in) when they look incompressible, else deflated into `output` primed with
/// `block[..history]`, sync-flushed, or finished when `is_last`.
fn encode_block(
    deflate: &mut flate2::Compress,
    mut block: Vec<u8>,
    history: usize,
    is_last: bool,
    mut output: Vec<u8>,
) -> io::Result<EncodedBlock> {
    let mut crc = flate2::Crc::new();
    let mut data = Vec::with_capacity(GZIP_BLOCK.div_ceil(STORED_MAX));
    for (_, piece) in pieces(block.len(), history) {
        crc.update(&block[piece.clone()]);
        data.push(&block[piece]);
    }
    let data_len: usize = data.iter().map(|piece| piece.len()).sum();
    output.clear();
    let stored = looks_incompressible(&data);
    if stored {
        let mut pieces = pieces(block.len(), history).peekable();
        while let Some((header, piece)) = pieces.next() {
            let last = is_last && pieces.peek().is_none();
            let len = u16::try_from(piece.len()).expect("pieces of at most 65,535 bytes");
            // BFINAL, BTYPE 00 (stored), padding to the byte; LEN; NLEN.
            block[header] = u8::from(last);
            block[header + 1..header + 3].copy_from_slice(&len.to_le_bytes());
            block[header + 3..header + 5].copy_from_slice(&(!len).to_le_bytes());
        }
    } else {
        // Deflate output never exceeds the input by more than 5 bytes per 16 KiB plus a few.
        output.reserve(data_len + data_len / 1000 + 64);
        let flush = if is_last {
            flate2::FlushCompress::Finish
        } else {
            flate2::FlushCompress::Sync
        };
        let mut deflated = if history == 0 {
            Ok(flate2::Status::Ok)
        } else {
            deflate
                .set_dictionary(&block[..history])
                .map(|_| flate2::Status::Ok)
        };
        for piece in &data {
            deflated = deflated.and_then(|_| {
                deflate.compress_vec(piece, &mut output, flate2::FlushCompress::None)
            });
        }
        let deflated = deflated.and_then(|_| deflate.compress_vec(&[], &mut output, flush));
        let consumed = deflate.total_in();
        deflate.reset();
        deflated.map_err(io::Error::other)?;
        if consumed != data_len as u64 {
            return Err(io::Error::other("a deflate block outgrew its buffer"));
        }
    }
    Ok(EncodedBlock {
        block,
        history,
        stored,
        output,
        crc,
    })
}

/// Bits of entropy per byte (of the byte histogram) above which a block is stored: random and
/// already-compressed data measure 7.99+, text 4–5, executables 5–6.5.
const STORE_ENTROPY: f64 = 7.95;

/// The histogram is taken over this many windows spread evenly across a block ...
const SAMPLE_WINDOWS: usize = 16;

/// ... of this many bytes each (a sixteenth of a 1 MiB block): enough for the estimate of
/// random data to stay within 0.01 bits of 8, and 16 times less work than every byte.
const SAMPLE_WINDOW: usize = 4 << 10;

/// Whether `data` (a block's pieces) is not worth deflating: the byte entropy of evenly
/// spread samples of it is above [`STORE_ENTROPY`].
fn looks_incompressible(data: &[&[u8]]) -> bool {
    sampled_entropy(data) > STORE_ENTROPY
}

/// Shannon entropy, in bits per byte, of the byte histogram of [`SAMPLE_WINDOWS`] windows of
/// [`SAMPLE_WINDOW`] bytes spread evenly over `data`, the pieces of one block (all of it when
/// it is shorter). A window that would straddle two pieces is taken from the end of the first.
fn sampled_entropy(data: &[&[u8]]) -> f64 {
    // Four histograms, one per byte lane, so that runs of one byte value do not make each
    // increment wait for the previous one.
    let mut lanes = [[0u32; 256]; 4];
    let mut count = |bytes: &[u8]| {
        let mut quads = bytes.chunks_exact(4);
        for quad in &mut quads {
            lanes[0][usize::from(quad[0])] += 1;
            lanes[1][usize::from(quad[1])] += 1;
            lanes[2][usize::from(quad[2])] += 1;
            lanes[3][usize::from(quad[3])] += 1;
        }
        for &b in quads.remainder() {
            lanes[0][usize::from(b)] += 1;
        }
    };
    let len: usize = data.iter().map(|piece| piece.len()).sum();
    if len <= SAMPLE_WINDOWS * SAMPLE_WINDOW {
        data.iter().for_each(|piece| count(piece));
    } else {
        let stride = (len - SAMPLE_WINDOW) / (SAMPLE_WINDOWS - 1);
        let (mut piece, mut piece_start) = (0, 0);
        for window in 0..SAMPLE_WINDOWS {
            let at = window * stride;
            while at >= piece_start + data[piece].len() {
                piece_start += data[piece].len();
                piece += 1;
            }
            let bytes = data[piece];
            let start = (at - piece_start).min(bytes.len().saturating_sub(SAMPLE_WINDOW));
            count(&bytes[start..(start + SAMPLE_WINDOW).min(bytes.len())]);
        }
    }
    let total: u32 = lanes.iter().flatten().sum();
    let total = f64::from(total);
    (0..256)
        .map(|value| lanes.iter().map(|lane| lane[value]).sum::<u32>())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::detect;
    use layerstore_testsupport::incompressible;
    use std::io::Read;

    fn text(len: usize) -> Vec<u8> {
        let mut text: Vec<u8> = (0u32..)
            .flat_map(|i| format!("line {i} of a layer, {}\n", i % 97).into_bytes())
            .take(len)
            .collect();
        text.truncate(len);
        text
    }

    /// `random` and `text` interleaved in pieces of `piece` bytes, `len` in all.
    fn interleaved(len: usize, piece: usize) -> Vec<u8> {
        let (random, text) = (incompressible(5, len), text(len));
        let mut mixed = Vec::with_capacity(len);
        for (i, (r, t)) in random.chunks(piece).zip(text.chunks(piece)).enumerate() {
            mixed.extend_from_slice(if i % 2 == 0 { r } else { t });
        }
        mixed
    }

    /// `data` as the pieces of a block.
    fn as_pieces(data: &[u8]) -> Vec<&[u8]> {
        data.chunks(STORED_MAX).collect()
    }

    fn decide(data: &[u8]) -> bool {
        looks_incompressible(&as_pieces(data))
    }

    fn sampled_entropy_of(data: &[u8]) -> f64 {
        sampled_entropy(&as_pieces(data))
    }

    /// A block buffer as the encoder fills it: `history`, then `data` in pieces, each after
    /// room for its header.
    fn block_of(history: &[u8], data: &[u8]) -> Vec<u8> {
        let mut block = history.to_vec();
        for piece in data.chunks(STORED_MAX) {
            block.extend_from_slice(&[0; STORED_HEADER]);
            block.extend_from_slice(piece);
        }
        block
    }

    /// Entropy of every byte, the measure the samples estimate.
    fn full_entropy(data: &[u8]) -> f64 {
        let mut counts = [0u64; 256];
        for &b in data {
            counts[usize::from(b)] += 1;
        }
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / data.len() as f64;
                -p * p.log2()
            })
            .sum()
    }

    /// A compressed file: gzip of `len` random lowercase letters (which it shrinks to 60%).
    fn compressed(len: usize) -> Vec<u8> {
        let letters: Vec<u8> = incompressible(11, len)
            .iter()
            .map(|b| b'a' + b % 26)
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&letters).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn random_and_compressed_blocks_are_stored_text_and_mixed_ones_deflated() {
        let random = incompressible(1, GZIP_BLOCK);
        assert!(decide(&random));
        assert!(decide(&compressed(2 * GZIP_BLOCK)));
        assert!(!decide(&text(GZIP_BLOCK)));
        // Half random, half text, in pieces smaller and larger than a sample window.
        for piece in [512, 4096, 100_000, GZIP_BLOCK / 2] {
            assert!(!decide(&interleaved(GZIP_BLOCK, piece)), "{piece}");
        }
        // Zeros, and a block of one byte value everywhere but a random tail.
        assert!(!decide(&vec![0; GZIP_BLOCK]));
        let mut tail = vec![7u8; GZIP_BLOCK];
        tail[GZIP_BLOCK - 4096..].copy_from_slice(&incompressible(2, 4096));
        assert!(!decide(&tail));
        assert!(!decide(b""));
    }

    #[test]
    fn the_sampled_entropy_is_close_to_the_entropy_of_every_byte() {
        let mut wide_text = text(GZIP_BLOCK);
        for (i, b) in wide_text.iter_mut().enumerate().step_by(3) {
            *b = b.wrapping_add(i as u8);
        }
        for (name, data) in [
            ("random", incompressible(3, GZIP_BLOCK)),
            ("text", text(GZIP_BLOCK)),
            ("wide text", wide_text),
            ("mixed", interleaved(GZIP_BLOCK, 4096)),
            ("compressed", compressed(GZIP_BLOCK)),
            ("short", incompressible(4, 10_000)),
        ] {
            let (sampled, full) = (sampled_entropy_of(&data), full_entropy(&data));
            assert!((sampled - full).abs() < 0.1, "{name}: {sampled} vs {full}");
        }
        // Small windows read whole: exactly the full entropy.
        let short = text(SAMPLE_WINDOWS * SAMPLE_WINDOW);
        assert!((sampled_entropy_of(&short) - full_entropy(&short)).abs() < 1e-9);
    }

    #[test]
    fn blocks_stored_in_place_and_deflated_ones_inflate_back() {
        let history = text(HISTORY);
        for (len, stored) in [
            (1, false),
            (STORED_MAX, true),
            (STORED_MAX + 1, true),
            (200_000, true),
            (GZIP_BLOCK, true),
        ] {
            let data = incompressible(6, len);
            for is_last in [false, true] {
                let block = block_of(&history, &data);
                let mut check = flate2::Crc::new();
                check.update(&data);
                let encoded = encode_block(&mut new_deflate(), block, HISTORY, is_last, Vec::new())
                    .expect("encode");
                assert_eq!(encoded.stored, stored, "{len}");
                assert_eq!(encoded.crc.sum(), check.sum());
                let mut raw = if encoded.stored {
                    assert_eq!(
                        encoded.block.len(),
                        HISTORY + len + 5 * len.div_ceil(STORED_MAX)
                    );
                    encoded.block[HISTORY..].to_vec()
                } else {
                    encoded.output
                };
                if !is_last {
                    raw.extend_from_slice(&FINAL_EMPTY_BLOCK);
                }
                let mut back = Vec::new();
                flate2::read::DeflateDecoder::new(&raw[..])
                    .read_to_end(&mut back)
                    .expect("inflate");
                assert_eq!(back, data, "{len} {is_last}");
            }
        }
        // Text is deflated, primed with the history: a repeat of the history's end costs far
        // less than the same text without it.
        let repeat = &history[HISTORY / 2..];
        let deflated = |history: &[u8]| {
            let encoded = encode_block(
                &mut new_deflate(),
                block_of(history, repeat),
                history.len(),
                true,
                Vec::new(),
            )
            .expect("encode");
            assert!(!encoded.stored);
            encoded.output.len()
        };
        let (primed, alone) = (deflated(&history), deflated(b""));
        assert!(primed * 10 < alone, "{primed} vs {alone}");
    }

    fn encode(compression: Compression, plain: &[u8], write_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = encoder(&mut out, compression).expect("encoder");
        for chunk in plain.chunks(write_size.max(1)) {
            enc.write_all(chunk).expect("write");
        }
        enc.finish().expect("finish");
        out
    }

    /// One gzip member (the single-member decoder reads it all) that gives back `plain`.
    fn gunzip_one_member(gz: &[u8]) -> Vec<u8> {
        assert_eq!(detect(gz), Compression::Gzip);
        let mut back = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(gz);
        decoder.read_to_end(&mut back).expect("gunzip");
        back
    }

    #[test]
    fn the_parallel_gzip_encoder_makes_one_member_that_gives_back_the_input() {
        let text = text(9 << 20);
        let mut mixed = incompressible(7, 3 << 20);
        mixed.extend_from_slice(&text[..5 << 20]);
        mixed.extend(incompressible(9, 100_000));
        let exact = interleaved(2 * GZIP_BLOCK, 300_000);
        let mut one_more = exact.clone();
        one_more.push(b'!');
        for (plain, write_size) in [
            (Vec::new(), 1),
            (b"tiny".to_vec(), 1),
            (text.clone(), 4096),
            (mixed.clone(), 1 << 20),
            (mixed.clone(), 333_333),
            (mixed.clone(), 5 << 20),
            // Full blocks only: the stream ends with an empty final block.
            (exact.clone(), 1 << 20),
            (exact.clone(), 65_536),
            (one_more, 1 << 20),
            (incompressible(8, GZIP_BLOCK), 7777),
        ] {
            let gz = encode(Compression::Gzip, &plain, write_size);
            let back = gunzip_one_member(&gz);
            assert!(back == plain, "{} bytes differ", plain.len());
        }
        // Text is deflated, noise stored: barely larger than itself.
        assert!(encode(Compression::Gzip, &text, 1 << 16).len() < text.len() / 4);
        let random = incompressible(3, 4 << 20);
        let stored = encode(Compression::Gzip, &random, 1 << 16).len();
        assert!(stored < random.len() + random.len() / 1000, "{stored}");
        // The other encoders.
        assert_eq!(encode(Compression::None, &text, 100), text);
        let zst = encode(Compression::Zstd, &text, 1000);
        assert_eq!(zstd::decode_all(&zst[..]).expect("zstd"), text);
        let mut sink = Vec::new();
        assert!(matches!(
            encoder(&mut sink, Compression::Xz),
            Err(Error::UnsupportedCompression(Compression::Xz))
        ));
    }

    #[test]
    fn deflated_blocks_compress_as_one_stream_would() {
        // Each block is primed with the one before: repeats across a block boundary still
        // compress, and the whole is within a few percent of one-thread zlib at the same level.
        let text = text(6 << 20);
        let parallel = encode(Compression::Gzip, &text, 1 << 20).len();
        let mut one =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        one.write_all(&text).expect("gzip");
        let single = one.finish().expect("gzip").len();
        assert!(parallel < single + single / 50, "{parallel} vs {single}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 24,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Whatever the data (runs of noise, text and one repeated byte, crossing blocks and
        /// pieces anywhere) and however it is cut into writes, the stream is one gzip member
        /// that gives it back.
        #[test]
        fn any_data_written_in_any_cuts_gunzips_back(
            runs in proptest::collection::vec((0u8..3, 1usize..400_000), 1..12),
            cuts in proptest::collection::vec(1usize..300_000, 1..8),
        ) {
            let mut plain = Vec::new();
            for (i, &(kind, len)) in runs.iter().enumerate() {
                match kind {
                    0 => plain.extend(incompressible(i as u64, len)),
                    1 => plain.extend(text(len)),
                    _ => plain.extend(std::iter::repeat_n(kind, len)),
                }
            }
            let mut out = Vec::new();
            let mut enc = encoder(&mut out, Compression::Gzip).expect("encoder");
            let mut rest = &plain[..];
            for &cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at(cut.min(rest.len()));
                enc.write_all(now).expect("write");
                rest = later;
            }
            enc.finish().expect("finish");
            proptest::prop_assert!(gunzip_one_member(&out) == plain);
        }
    }

    /// Fails every write after `limit` bytes.
    struct FailingWriter {
        written: usize,
        limit: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written + buf.len() > self.limit {
                return Err(io::Error::other("the disk is full"));
            }
            self.written += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_output_is_the_error_and_the_threads_end() {
        let data = incompressible(10, 12 << 20);
        let mut out = FailingWriter {
            written: 0,
            limit: 3 << 20,
        };
        let mut enc = encoder(&mut out, Compression::Gzip).expect("encoder");
        let err = data
            .chunks(1 << 20)
            .try_for_each(|chunk| enc.write_all(chunk))
            .and_then(|()| enc.finish())
            .expect_err("the output fails");
        assert_eq!(err.to_string(), "the disk is full");
        // Dropped unfinished, too: no hang, no panic.
        let mut sink = Vec::new();
        let mut enc = encoder(&mut sink, Compression::Gzip).expect("encoder");
        enc.write_all(&data[..5 << 20]).expect("write");
        drop(enc);
    }
}
