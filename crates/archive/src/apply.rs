//! `apply`: one pass over a (compressed or not) layer tarball, on up to three threads.
//!
//! 1. The *reader* reads the input and hashes it (compressed digest and size), decompresses it
//!    if needed, and sends the tar stream through a bounded pipe (at most 4 × 1 MiB in flight;
//!    1 MiB chunks keep thread hand-offs rare, which matters on a busy host). For an
//!    uncompressed layer its one SHA-256 is both digests. For a compressed one the blob's
//!    reading and hashing is shared ([`crate::feed`]): this thread reads and hashes a chunk
//!    itself only when none is ready, and the extracting thread reads chunks ahead whenever
//!    it would wait for decompressed bytes. For gzip a thread of its own for that work (the
//!    design before) was placed by the scheduler on the inflating thread's core while the
//!    other idled: rootfs.tar.gz on a tmpfs had 14–32 ms of idle core time in ~205 ms (perf
//!    sched, 3 runs); shared, 13 ms (1 run), and the median went from 209 to 200.5 ms (18
//!    alternating runs each, vfs). zstd read its own input on the decoding thread; shared,
//!    rootfs.tar.zst went from 162.5 to 160.5 ms on a tmpfs and from 187.5 to 184 ms on ext4
//!    (18 alternating runs).
//! 2. The caller's thread parses the decompressed stream with
//!    the tar-split [`Disassembler`] (which records the tar-split entries into the caller's
//!    sink) and creates every entry beneath the target, in archive order. The disassembler
//!    takes the pipe's chunks whole ([`ChunkRead`]) and a file written on this thread is
//!    written straight from them ([`Content`]'s `write_to`): two copies of those bytes less on
//!    the busiest thread (smallfiles.tar: `memmove` 64 → 47 ms of that thread's samples).
//!    A compressed layer's decompressed stream is hashed in the pipe ([`hashing_pipe`]): by
//!    this thread as it takes a chunk, unless the decompressor found the pipe full (this
//!    thread is behind) or had ended, and hashed it first. On this machine's ext4 this thread
//!    is the critical path from start to end while the decompressor idles half the time; the
//!    decompressor took 21% of the hashing and rootfs.tar.gz went from 403 to 386 ms (medians
//!    of 9 alternating runs); on a tmpfs, where both are busy, it stays 249–252 ms. Hashing
//!    all of it on the decompressor was measured slower (the inflating thread is the critical
//!    one while the big files come).
//! 3. The *file writer* (started at the first small regular file; [`crate::filewriter`])
//!    writes the content of files of at most 256 KiB that the caller's thread created, then
//!    their owner, mode and times, and closes them. Plain, zstd, and gzip where ISA-L inflates
//!    it ([`layerstore_igzip`]): with zlib-rs inflate was the critical path and the writer
//!    measured no faster (257 → 260 ms) for 3% more CPU; with ISA-L (1.4× faster) this thread
//!    is the critical one and the writer shortens it. bzip2 and xz decompress slower still.
//!    When the writer's queue is full this thread finishes the file itself rather than wait
//!    (smallfiles.tar: 705 → 607 ms).
//!
//! Why (2026-11-28, `applydiff` on a tmpfs, vfs driver, medians of 9–11 alternating runs at a
//! load of 1–2 on the 2 vCPUs; the crate docs have the table): the reader thread for a plain
//! layer took rootfs.tar from 236 to 159 ms and smallfiles.tar from 947 to 794 ms (SHA-256 and
//! reads leave the critical path); the file writer took smallfiles.tar on to 591 ms and
//! rootfs.tar.zst from 213 to 200–210 ms, at +3% CPU (rootfs.tar: 157–159 → 161–167 ms, within
//! its noise but not better). Hashing a zstd layer's decompressed stream on the reader instead
//! was measured too: 2% faster without the file writer, 10% slower with it (206 against
//! 187 ms), so the caller's thread keeps it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use layerstore_tarsplit::{Disassembler, EntrySink};

use crate::Compression;
use crate::compression::{decoder, detect, peek};
use crate::digest::HashingReader;
use crate::error::{Error, Result};
use crate::extract::{EntryContent, Extractor, Stats};
use crate::feed::{HelpWhileWaiting, SharedFeed};
use crate::header::Header;
use crate::options::{ApplyOptions, ApplyReport};
use crate::pipe::{PipeReader, PipeWriter, Readiness, hashing_pipe, pipe};
use crate::rooted::Root;
use layerstore_model::Digest;

/// Applies the layer tarball `input` (uncompressed, gzip, zstd, or bzip2/xz with their features)
/// beneath `target`, recording its tar-split entries into `sink`.
///
/// In one pass it computes both digests and sizes, records tar-split, collects the UID/GID sets
/// and extracts every entry (see the [crate docs](crate) for the rules). The target must exist.
/// On error the target may hold part of the layer: the caller discards it (nothing half-applied
/// is ever reported as success).
pub fn apply<R, S>(
    target: &Path,
    input: R,
    sink: S,
    opts: &ApplyOptions,
) -> Result<(ApplyReport, S)>
where
    R: Read + Send,
    S: EntrySink,
{
    let root =
        Root::open(target).map_err(|e| Error::path(target, "open the target directory", e))?;
    apply_root(root, input, sink, opts)
}

/// [`apply`] beneath an already open directory (any fd of a directory, `O_PATH` included).
pub fn apply_at<R, S>(
    target: OwnedFd,
    input: R,
    sink: S,
    opts: &ApplyOptions,
) -> Result<(ApplyReport, S)>
where
    R: Read + Send,
    S: EntrySink,
{
    apply_root(Root::from_fd(target), input, sink, opts)
}

/// What the reader thread found out about the raw input.
struct RawSummary {
    digest: Digest,
    size: u64,
}

fn apply_root<R, S>(root: Root, input: R, sink: S, opts: &ApplyOptions) -> Result<(ApplyReport, S)>
where
    R: Read + Send,
    S: EntrySink,
{
    if opts.force_userspace_resolution {
        root.force_walk();
    }
    let mut buffered = BufReader::with_capacity(128 * 1024, HashingReader::new(input));
    let compression = detect(peek(&mut buffered).map_err(Error::Input)?);
    // The tar stream's SHA-256 of a compressed layer is taken in the pipe, on whichever side
    // has time for it (see `crate::pipe`); a plain layer's is its input's.
    let (writer, reader) = if compression == Compression::None {
        pipe(4)
    } else {
        hashing_pipe(4)
    };
    // A compressed blob is read and hashed by whichever thread needs it or has time (see
    // `crate::feed`); a plain one by the reader alone, straight into the pipe's chunks.
    let split = compression != Compression::None;
    let feed;
    let raw_input = if split {
        feed = SharedFeed::new(buffered, 4);
        RawInput::Shared(&feed)
    } else {
        RawInput::Own(buffered)
    };
    let read_ahead;
    let help: Option<&(dyn Fn() -> bool + Sync)> = match raw_input {
        RawInput::Shared(feed) => {
            read_ahead = || feed.help();
            Some(&read_ahead)
        }
        RawInput::Own(_) => None,
    };
    std::thread::scope(|scope| {
        let raw_thread = scope.spawn(move || -> Result<RawSummary> {
            match raw_input {
                RawInput::Shared(feed) => {
                    let mut raw = feed.reader();
                    decompress_into(&mut raw, compression, writer)?;
                    // Bytes after the compressed stream's end still belong to the blob's
                    // digest.
                    io::copy(&mut raw, &mut io::sink()).map_err(Error::Input)?;
                    input_ended(opts);
                    let (digest, size) = feed.with_reader(|buffered| buffered.get_ref().digest());
                    Ok(RawSummary { digest, size })
                }
                RawInput::Own(mut buffered) => {
                    // Passed on to its end (whatever the BufReader holds was hashed when it
                    // was read).
                    decompress_into(&mut buffered, compression, writer)?;
                    let mut raw = buffered.into_inner();
                    raw.drain().map_err(Error::Input)?;
                    input_ended(opts);
                    let (digest, size) = raw.finish();
                    Ok(RawSummary { digest, size })
                }
            }
        });

        let readiness = reader.readiness();
        let reader = HelpWhileWaiting::new(reader, readiness.clone(), help);
        let mut uncompressed = HashingReader::with_limit(reader, opts.max_uncompressed_size);
        // Counted (and limited) here, hashed by the pipe or by the reader.
        uncompressed.count_only();
        let extracted =
            extract_stream(root, compression, &mut uncompressed, &readiness, sink, opts);
        let overflowed = opts
            .max_uncompressed_size
            .filter(|&limit| uncompressed.digest().1 > limit);
        drop(uncompressed); // a reader thread still writing sees the pipe close
        let raw = raw_thread.join().map_err(|_| Error::WorkerPanicked)?;
        if let Some(limit) = overflowed {
            return Err(Error::TooLarge { limit });
        }
        let (raw, extracted) = match (raw, extracted) {
            (Ok(raw), Ok(extracted)) => (raw, extracted),
            // The reader stopped because extraction failed and closed the pipe.
            (Err(Error::Input(e)), Err(extract_err)) if e.kind() == io::ErrorKind::BrokenPipe => {
                return Err(extract_err);
            }
            // A failure of the input or decompression explains any parse error after it.
            (Err(raw_err), _) => return Err(raw_err),
            (Ok(_), Err(extract_err)) => return Err(extract_err),
        };
        let (stats, sink, caller_digest, uncompressed_size) = extracted;
        let uncompressed_digest = match caller_digest {
            Some(digest) => digest,
            None => {
                debug_assert_eq!(raw.size, uncompressed_size, "a plain stream is its input");
                raw.digest.clone()
            }
        };
        let report = report(
            compression,
            raw,
            uncompressed_digest,
            uncompressed_size,
            stats,
        );
        Ok((report, sink))
    })
}

/// Runs the caller's [`ApplyOptions::on_input_end`], if any.
fn input_ended(opts: &ApplyOptions) {
    if let Some(hook) = &opts.on_input_end {
        (hook.0)();
    }
}

/// The blob as the reading thread reads it: shared with the extracting thread, which reads
/// ahead while it would wait (a compressed blob), or its own (a plain one).
enum RawInput<'f, B> {
    Shared(&'f SharedFeed<B>),
    Own(B),
}

/// Decompresses `input` into `writer` to the end of the compressed stream; on failure the
/// pipe's reader sees the stream end with an error.
fn decompress_into(
    input: impl BufRead + Send,
    compression: Compression,
    mut writer: PipeWriter,
) -> Result<()> {
    let outcome = decoder(input, compression).and_then(|mut decompressed| {
        // An uncompressed input is passed on as it arrives (a pull's pipe may stall
        // between entries: the extraction then finishes what it has before it waits).
        let eager = compression == Compression::None;
        while writer
            .fill_from(&mut decompressed, eager)
            .map_err(Error::Input)?
            > 0
        {}
        Ok(())
    });
    if let Err(e) = outcome {
        writer.fail(io::Error::other("the layer input failed"));
        return Err(e);
    }
    Ok(())
}

fn report(
    compression: Compression,
    raw: RawSummary,
    uncompressed_digest: Digest,
    uncompressed_size: u64,
    stats: Stats,
) -> ApplyReport {
    ApplyReport {
        compression,
        compressed_digest: raw.digest,
        compressed_size: raw.size,
        uncompressed_digest,
        uncompressed_size,
        uids: stats.uids,
        gids: stats.gids,
        size: stats.size,
        entries: stats.entries,
        overlay_markers: stats.overlay_markers,
        warnings: stats.warnings,
    }
}

/// Whether the file writer thread shortens an import of a `compression` layer: where the
/// decompressor is faster than this thread (plain, zstd, and gzip inflated by ISA-L), this
/// thread is the critical path and the writer takes work off it; where it is slower (gzip by
/// zlib-rs, bzip2, xz), the writer only competes with it for a core.
fn file_writer_pays(compression: Compression) -> bool {
    match compression {
        Compression::None | Compression::Zstd => true,
        Compression::Gzip => layerstore_igzip::AVAILABLE,
        _ => false,
    }
}

/// The caller-thread stage: parse + record + extract, then read the stream to its end.
/// Returns the tar stream's digest where the pipe hashed it (a compressed layer).
fn extract_stream<S: EntrySink>(
    root: Root,
    compression: Compression,
    uncompressed: &mut HashingReader<HelpWhileWaiting<'_, PipeReader>>,
    readiness: &Readiness,
    sink: S,
    opts: &ApplyOptions,
) -> Result<(Stats, S, Option<Digest>, u64)> {
    let mut disassembler = Disassembler::with_chunk_input(&mut *uncompressed, sink, opts.limits);
    let mut extractor = Extractor::new(root, opts);
    if !file_writer_pays(compression) {
        extractor.finish_files_inline();
    }
    loop {
        if !readiness.bytes_waiting() && !disassembler.header_buffered() {
            // The next header may have to wait for input: no file is left open meanwhile.
            extractor.input_wait()?;
        }
        let tar_header = match disassembler.next_header() {
            Ok(Some(tar_header)) => tar_header,
            Ok(None) => break,
            Err(e) => return Err(extractor.fail(e.into())),
        };
        let header = Header::from(tar_header);
        extractor.entry(&header, &mut Content(&mut disassembler))?;
    }
    let sink = match disassembler.finish() {
        Ok((_, sink)) => sink,
        Err(e) => return Err(extractor.fail(e.into())),
    };
    let stats = extractor.finish()?;
    uncompressed.drain().map_err(Error::Input)?;
    let size = uncompressed.digest().1;
    Ok((stats, sink, uncompressed.get_ref().get_ref().digest(), size))
}

/// The current entry's content, as a reader.
struct Content<'d, R: Read, S: EntrySink>(&'d mut Disassembler<R, S>);

impl<R: Read, S: EntrySink> Read for Content<'_, R, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read_content(buf)
            .map_err(layerstore_tarsplit::Error::into_io)
    }
}

impl<R: Read, S: EntrySink> EntryContent for Content<'_, R, S> {
    /// Writes straight from the disassembler's buffer (the pipe's chunk): no copy into `_buf`.
    fn write_to(&mut self, to: &mut File, _buf: &mut [u8], limit: Option<u64>) -> io::Result<u64> {
        let into_io = layerstore_tarsplit::Error::into_io;
        let mut total = 0u64;
        loop {
            let want = match limit {
                Some(limit) => usize::try_from(limit - total).unwrap_or(usize::MAX),
                None => usize::MAX,
            };
            if want == 0 {
                break;
            }
            let piece = self.0.fill_content().map_err(into_io)?;
            if piece.is_empty() {
                if limit.is_some() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                break;
            }
            let n = piece.len().min(want);
            to.write_all(&piece[..n])?;
            self.0.consume_content(n).map_err(into_io)?;
            total += n as u64;
        }
        Ok(total)
    }
}
