//! `apply`: one pass over a (compressed) layer tarball.
//!
//! For a compressed layer two threads share the work, joined by a bounded pipe (at most
//! 4 × 1 MiB in flight; 1 MiB chunks keep thread hand-offs rare, which matters on a busy host):
//!
//! 1. the *reader* reads the input, hashes it (compressed digest and size) and decompresses
//!    into the pipe;
//! 2. the caller's thread hashes the decompressed bytes (uncompressed digest and size), parses
//!    them with the tar-split [`Disassembler`] (which records the tar-split entries into the
//!    caller's sink) and creates every entry beneath the target.
//!
//! Inflate (~320 MB/s for gzip) and the filesystem syscalls are the two costs that matter; they
//! overlap. SHA-256 (>1 GB/s with SHA-NI) and tar parsing stay inline. An uncompressed layer is
//! applied on the caller's thread alone (see [`apply_uncompressed`]).

use std::io::{self, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use layerstore_tarsplit::{Disassembler, EntrySink};

use crate::Compression;
use crate::compression::{decoder, detect, peek};
use crate::digest::HashingReader;
use crate::error::{Error, Result};
use crate::extract::{Extractor, Stats};
use crate::header::Header;
use crate::options::{ApplyOptions, ApplyReport};
use crate::pipe::pipe;
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
    // Detect here, so the caller's stage knows whether it must hash: for an uncompressed layer
    // both digests are of the same bytes, and SHA-256 runs once.
    let mut buffered = BufReader::with_capacity(128 * 1024, HashingReader::new(input));
    let compression = detect(peek(&mut buffered).map_err(Error::Input)?);
    if compression == Compression::None {
        return apply_uncompressed(root, buffered, sink, opts);
    }
    let (mut writer, reader) = pipe(4);
    std::thread::scope(|scope| {
        let raw_thread = scope.spawn(move || -> Result<RawSummary> {
            let outcome = decoder(&mut buffered, compression).and_then(|mut decompressed| {
                while writer.fill_from(&mut decompressed).map_err(Error::Input)? > 0 {}
                Ok(())
            });
            if let Err(e) = outcome {
                writer.fail(io::Error::other("the layer input failed"));
                return Err(e);
            }
            drop(writer);
            // Bytes after the compressed stream's end still belong to the blob's digest
            // (whatever the BufReader holds was hashed when it was read).
            let mut raw = buffered.into_inner();
            raw.drain().map_err(Error::Input)?;
            let (digest, size) = raw.finish();
            Ok(RawSummary { digest, size })
        });

        let mut uncompressed = HashingReader::with_limit(reader, opts.max_uncompressed_size);
        let extracted = extract_stream(root, &mut uncompressed, sink, opts);
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
        let (stats, sink, uncompressed_digest, uncompressed_size) = extracted;
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

/// An uncompressed layer: nothing to overlap with the filesystem calls but hashing, and on a
/// loaded machine the thread hand-offs cost more than they save, so one thread does it all and
/// SHA-256 runs once (both digests are of the same bytes).
fn apply_uncompressed<R: Read, S: EntrySink>(
    root: Root,
    mut buffered: BufReader<HashingReader<R>>,
    sink: S,
    opts: &ApplyOptions,
) -> Result<(ApplyReport, S)> {
    let mut counted = HashingReader::with_limit(&mut buffered, opts.max_uncompressed_size);
    counted.count_only();
    let extracted = extract_stream(root, &mut counted, sink, opts);
    if let Some(limit) = opts.max_uncompressed_size
        && counted.digest().1 > limit
    {
        return Err(Error::TooLarge { limit });
    }
    let (stats, sink, _, size) = extracted?;
    let (digest, raw_size) = buffered.into_inner().finish();
    debug_assert_eq!(size, raw_size, "an uncompressed stream is its input");
    let raw = RawSummary {
        digest: digest.clone(),
        size: raw_size,
    };
    Ok((report(Compression::None, raw, digest, size, stats), sink))
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
        warnings: stats.warnings,
    }
}

/// The caller-thread stage: parse + record + extract, then read the stream to its end.
fn extract_stream<R: Read, S: EntrySink>(
    root: Root,
    uncompressed: &mut HashingReader<R>,
    sink: S,
    opts: &ApplyOptions,
) -> Result<(Stats, S, Digest, u64)> {
    let mut disassembler = Disassembler::with_limits(&mut *uncompressed, sink, opts.limits);
    let mut extractor = Extractor::new(root, opts);
    while let Some(tar_header) = disassembler.next_header()? {
        let header = Header::from(tar_header);
        extractor.entry(&header, &mut Content(&mut disassembler))?;
    }
    let (_, sink) = disassembler.finish()?;
    let stats = extractor.finish()?;
    uncompressed.drain().map_err(Error::Input)?;
    let (digest, size) = uncompressed.digest();
    Ok((stats, sink, digest, size))
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
