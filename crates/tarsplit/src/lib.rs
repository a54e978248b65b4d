//! The tar-split codec: disassemble a tar stream into records and reassemble it byte for byte.
//!
//! A layer store keeps only the files of a layer, yet must give back the exact tarball the
//! layer was made from (its digest is the layer's DiffID). While a tar stream is read, the
//! [`Disassembler`] records everything that is not file content (headers, padding, the
//! end-of-archive blocks and anything after them) as *segments*, and for each file its name,
//! size and CRC-64 as a *file entry*. Later [`assemble`] rebuilds the stream from those
//! [`Entry`]s and the files on disk ([`FileGetter`], e.g. [`DirFileGetter`]).
//!
//! # Format
//!
//! The records are those of `github.com/vbatts/tar-split` as containers/storage writes them
//! to `<layer-id>.tar-split.gz`: gzip of one JSON object per line,
//! `{"type":1|2,"name":..,"name_raw":..,"size":..,"payload":..,"position":..}` with `name_raw`
//! (base64) for names that are not UTF-8, `payload` base64 (raw bytes for segments, the 8-byte
//! big-endian CRC-64/GO-ISO for files, `null` for empty files) and `position` counting every
//! entry. [`JsonLinesPacker`] writes them byte for byte as Go 1.19's `encoding/json` does (the
//! Go that built containers-storage 1.43), so podman, buildah and CRI-O read our files, and
//! [`Unpacker`] reads theirs (with a real JSON parser, validating positions, base64, types,
//! duplicate paths and line length).
//!
//! The disassembler parses headers like Go's `archive/tar` fork in tar-split (see
//! [`tar`] for the rules) and records exactly what Go records, including where
//! padding goes and how bytes after the end of the archive are chunked (as Go's tool chunks an
//! uncompressed tarball read from a file). Two deliberate differences:
//!
//! * **Sparse files** (GNU `S`, PAX 0.0/0.1/1.0). Go records the *expanded* size and the CRC of
//!   the expanded data, and drops the PAX 1.0 map from its segments, so its records cannot give
//!   the tarball back (Go's own `diff` of such a layer differs; it cannot apply a GNU sparse
//!   tarball at all). We record the map blocks in the segment, the *packed* size and CRC, and
//!   an extra key Go ignores: `"sparse":{"real_size":N,"regions":[[offset,len],..]}`. Assembly
//!   reads the data regions of the expanded file at their offsets. Go, assembling our record,
//!   fails with its checksum error instead of producing a different tarball.
//! * **Header-only entries with a size field** (a hard link or directory whose header claims
//!   content): Go records that size and the CRC of nothing, a record no one can assemble; we
//!   record size 0, the content actually in the stream.
//!
//! Every other entry is identical to Go's, so Go reads and assembles all our non-sparse layers.
//!
//! # Memory and safety
//!
//! Streaming throughout: a 256 KiB input buffer, one segment at a time, 1 MiB trailing chunks,
//! a 1 MiB copy buffer for assembly ([`assemble_pipelined`]: at most six 1 MiB chunks and four
//! batches of decoded entries in flight). What may grow is capped by [`Limits`] (PAX data, long
//! names, sparse maps: 1 MiB / 65,536 regions by default, the caps of Go's CVE fixes), and at
//! most 16 extension headers may precede an entry. One header parser serves recording and
//! extraction, and the size skipped is always the size recorded (the PAX `size` wins over the
//! USTAR one, header-only kinds have no content), so no entry can be smuggled past one of them
//! (the "TARmageddon" class). The set of seen paths (for Go's duplicate check) grows with the
//! number of files, as in Go.
//!
//! # Assembly, threads and system calls
//!
//! [`assemble`] does everything on the calling thread. [`assemble_pipelined`] gives the same
//! bytes and the same errors from three threads: one pulls the entries (for a tar-split file:
//! gunzip, JSON, base64), one opens, reads and checks the files into recycled 1 MiB chunks, and
//! the calling thread writes the chunks (so the output need not be `Send`). All three threads
//! together keep both cores of a 2-core machine busy; pinned to one CPU the pipeline is slower
//! than [`assemble`], so with one CPU available it is [`assemble`] (measurements:
//! `docs/BENCHMARKS.md`, section "layerstore-tarsplit: assembly").
//!
//! Per file, [`DirFileGetter`] makes `openat`, `fstat` (it must be a regular file: a device node
//! must not be read) and the `read`s of the recorded size, then `close`; the size `fstat` gave
//! ([`FileGetter::get_with_size`]) proves the file has the recorded length, so no last `read`
//! looks for its end: one system call less per file.
//!
//! # Limitations
//!
//! * Bytes after the end-of-archive are chunked as Go chunks an uncompressed tarball read from
//!   a file; for other inputs (e.g. Go reading through gzip) Go's chunking depends on its
//!   reader and the segments may be split differently (same bytes, same assembled stream).
//! * As in Go, an archive that ends at an entry boundary without end blocks is accepted;
//!   global PAX headers (`g`) are recorded as entries of their own and their records are not
//!   applied to later headers' fields (they are listed in [`TarHeader::pax`], capped at 64 KiB).
//! * Assembling a sparse file seeks over its holes and reads only its data regions when the
//!   getter gives a seekable file ([`FileGetter::get_seekable`]: [`DirFileGetter`] and
//!   [`MemoryFileGetter`] do); through any other getter the holes are read.
//! * The CRC-64 code is inlined into this crate: an unoptimised (dev-profile) build of it
//!   checksums at a few hundred MB/s instead of ~10 GB/s.
//!
//! # Fuzzing
//!
//! The workspace's `fuzz/` cargo-fuzz project (its own workspace, not run in CI) has two
//! targets for this crate: `tar_split_read` (tar-split JSON lines and gzip: no panic, decoded
//! entries re-encode to the same entries) and `tar_split_disassemble` (any bytes: no panic, and
//! an accepted stream assembles back from its records and contents byte for byte). With
//! `cargo install cargo-fuzz`:
//!
//! ```text
//! cargo xtask fuzz --seconds 300 tar_split_disassemble tar_split_read
//! mkdir -p fuzz/corpus/tar_split_disassemble && cp tests/fixtures/go-1.43/tars/*.tar fuzz/corpus/tar_split_disassemble/
//! ```
//!
//! # Example
//!
//! ```
//! use layerstore_tarsplit::{assemble, disassemble, gzip_packer, read_tar_split_gz, MemoryFileGetter};
//!
//! // A small tarball made with the `tar` crate.
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(6);
//! header.set_cksum();
//! builder.append_data(&mut header, "dir/file", &b"hello\n"[..])?;
//! let tarball = builder.into_inner()?;
//!
//! // Record it into a .tar-split.gz ...
//! let packer = disassemble(&tarball[..], gzip_packer(Vec::new()))?;
//! let tar_split_gz = packer.finish()?;
//!
//! // ... and rebuild it from the records and the file's content.
//! let mut files = MemoryFileGetter::new();
//! files.insert(b"dir/file", b"hello\n".to_vec());
//! let mut rebuilt = Vec::new();
//! assemble(read_tar_split_gz(&tar_split_gz[..]), &files, &mut rebuilt)?;
//! assert_eq!(rebuilt, tarball);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod assemble;
mod disassemble;
pub mod entry;
mod error;
mod gzip_thread;
mod pathset;
pub mod rooted;
pub mod tar;

pub use assemble::{
    Assembler, DirFileGetter, FileGetter, MemoryFileGetter, PIPELINE_CHUNK_SIZE, ReadSeek,
    SeekableFile, assemble, assemble_pipelined,
};
pub use disassemble::{ChunkRead, Disassembler, TeeDisassembler, disassemble};
pub use entry::{
    Entry, EntryKind, EntrySink, JsonLinesPacker, TarSplitGunzip, TarSplitGzip, Unpacker,
    gzip_packer, read_tar_split_gz, write_gzipped_records,
};
pub use error::Error;
pub use gzip_thread::{GzipThread, gzip_packer_on_thread};
pub use pathset::PathSet;
pub use tar::{Limits, SparseMap, SparseRegion, TarHeader, TarKind, TarTime};

/// A running CRC-64/GO-ISO (Go's `hash/crc64` with the ISO table), the checksum tar-split
/// keeps for each file. `crc-fast` computes it with carry-less multiplication (PCLMULQDQ,
/// VPCLMULQDQ or NEON, detected at run time): about 10 GB/s here, against 1.5 GB/s for a
/// 16-way table.
#[derive(Clone)]
pub(crate) struct Crc64Digest(crc_fast::Digest);

impl Crc64Digest {
    pub(crate) fn new() -> Self {
        Crc64Digest(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso))
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finalize(&self) -> u64 {
        self.0.finalize()
    }
}

/// The CRC-64/GO-ISO of `data`, as tar-split stores it (big-endian) in a file entry's payload.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64GoIso, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_matches_go() {
        assert_eq!(super::crc64(b"hello\n"), 0x614c3eeee2d81000);
    }

    #[test]
    fn crc64_matches_the_crc_crate_on_all_lengths_and_splits() {
        let reference = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();
        for len in (0..300).chain([511, 512, 513, 4095, 4096, 4999]) {
            let want = reference.checksum(&data[..len]);
            assert_eq!(super::crc64(&data[..len]), want, "len {len}");
            let mut d = super::Crc64Digest::new();
            let (a, b) = data[..len].split_at(len / 3);
            d.update(a);
            d.update(b);
            assert_eq!(d.finalize(), want, "split len {len}");
        }
    }
}
