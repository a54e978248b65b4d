//! Layer archives for layerstore: compression detection, one-pass safe extraction with
//! tar-split recording, whiteouts, change lists and export — the hot path of every image pull.
//!
//! # Model
//!
//! A layer is a tar stream, possibly compressed (detected by magic bytes: [`Compression`], the
//! model crate's enum with Go's integer codes 0..=4). ID maps are the model crate's `IDMap`
//! (re-exported as [`IdMap`]). [`apply`] reads it **once** and, in that one pass:
//!
//! * hashes the input as read (compressed digest and size) and the decompressed stream
//!   (uncompressed digest and size), as `layerstore_model::Digest`s (SHA-256);
//! * parses the tar stream with `layerstore-tarsplit`'s `Disassembler` — the one tar parser of
//!   the workspace, so what is recorded and what is extracted can never disagree — which records
//!   the tar-split entries into the caller's [`EntrySink`];
//! * collects the UID and GID sets from the headers (container side, `.wh.*` entries excluded);
//! * creates every entry beneath the target directory.
//!
//! Up to three threads share the work. A *reader* reads, hashes and decompresses the input into
//! a bounded pipe (at most 4 MiB in flight); the decompressed stream is hashed in that pipe by
//! whichever side has time (`pipe::hashing_pipe`; a plain layer is hashed once, on the
//! reader); the caller's thread parses it and makes every filesystem call that
//! names a path, in archive order; for plain and zstd layers a *file writer* thread finishes the
//! small regular files the caller's thread created (content, owner, mode, times through the
//! open fd; at most 6 MiB and 192 files in flight). Before the caller's thread waits for input
//! it hands over what it has, so no file stays open across a stalled input. For gzip, bzip2 and
//! xz, decompression is the critical path and the writer was measured no faster.
//!
//! # Extraction rules
//!
//! * Names are cleaned like Go's `filepath.Clean`; an absolute name is taken relative to the
//!   target; a name whose `..` climbs above the target is an [`Error::Breakout`], as is a
//!   hardlink target that does; NUL bytes are refused; names of 4096 bytes or more fail with
//!   `ENAMETOOLONG`.
//! * Parent directories are resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, or
//!   with a component-by-component `O_NOFOLLOW` walk that emulates it on kernels without
//!   `openat2`: symlinks (from the archive or already in the target) are followed as if the
//!   target were `/`, so no lookup ever leaves it. Missing parents are created (0755, owned by
//!   the mapped root when there are ID maps); nothing is created through a dangling symlink.
//! * The entry's own name is never followed: an existing entry is removed first (unless both are
//!   directories, which merge), files are created `O_EXCL | O_NOFOLLOW`, hardlinks with `linkat`
//!   without `AT_SYMLINK_FOLLOW` (a link to a symlink links the symlink).
//! * All calls are dirfd-relative (`openat`, `mkdirat`, `symlinkat`, `linkat`, `mknodat`,
//!   `fchownat`, `utimensat`), with one parent lookup per run of entries sharing a directory and
//!   no per-entry canonicalisation.
//! * Metadata order: owner (mapped container → host through [`ApplyOptions::uid_map`] /
//!   [`ApplyOptions::gid_map`]), then xattrs from PAX records, then the mode (setuid, setgid and
//!   sticky survive because chmod comes after chown), then times; directory times are set after
//!   all entries; symlinks get owner and times without being followed.
//! * Device nodes follow [`DevicePolicy`]. The same path twice in one archive is refused
//!   ([`Error::DuplicatePath`]), as the Go tool does (tar-split could not give both back).
//! * PAX record, GNU long-name and sparse-map sizes are capped ([`Limits`], the Go tar CVEs),
//!   and [`ApplyOptions::max_uncompressed_size`] stops decompression bombs.
//! * No entry may lie more than [`ApplyOptions::max_depth`] directories below the target
//!   ([`DEFAULT_MAX_DEPTH`], 1,024): the depth is that of the tree as it is, so a name that goes
//!   through symlinks counts where it really lands ([`Error::TooDeep`] names the entry).
//!   Depths are kept per directory inode (one `fstat` per directory made or newly looked up:
//!   1,387 more system calls, +3%, for the 6,672 entries of the Debian rootfs layer).
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) land as the caller picks ([`WhiteoutStyle`]): naive
//! (delete from a target that holds the parent's files: vfs, btrfs) or overlay (0:0 character
//! devices and `trusted.overlay.opaque=y`, as containers/storage's overlay driver stores them).
//!
//! [`changes`] compares two trees as containers/storage's naive drivers do ([`changes_at`]
//! reads each tree's owners through its own ID mappings, [`MappedTree`]); [`overlay_changes`]
//! reads an overlay upper dir; [`export`] / [`export_to`] write the tar stream of a change list
//! over a tree (for layers without tar-split records), with headers laid out as Go's
//! `archive/tar` writes them. Every tree walk goes through [`tree`] (the one iterative walker
//! and remover of this crate and of the graph drivers): no recursion, a bounded window of
//! directory descriptors per tree whatever the depth, no symlink followed. [`encoder`] compresses a diff (parallel gzip,
//! zstd).
//!
//! # Fuzzing
//!
//! The workspace's `fuzz/` project has the target `archive_apply` (any bytes applied beneath a temporary root: an error or success, never a panic, and nothing created beside the root):
//! `cargo xtask fuzz --seconds 300 archive_apply` (needs `cargo install cargo-fuzz`).
//!
//! # Example
//!
//! ```
//! use layerstore_archive::{ApplyOptions, Compression, apply};
//!
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_path("etc/hello.txt")?;
//! header.set_size(5);
//! header.set_mode(0o644);
//! header.set_cksum();
//! builder.append(&header, &b"hello"[..])?;
//! let layer = builder.into_inner()?;
//!
//! let target = tempfile::tempdir()?;
//! // Unprivileged, chown to 0:0 fails; containers/storage has the same option for rootless use.
//! let opts = ApplyOptions { ignore_chown_errors: true, ..ApplyOptions::default() };
//! let (report, tar_split) = apply(target.path(), &layer[..], Vec::new(), &opts)?;
//! assert_eq!(std::fs::read(target.path().join("etc/hello.txt"))?, b"hello");
//! assert_eq!(report.compression, Compression::None);
//! assert_eq!(report.uncompressed_size, layer.len() as u64);
//! assert!(report.uids.contains(&0));
//! assert!(!tar_split.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Performance
//!
//! See the `apply` criterion bench (`cargo bench -p layerstore-archive --bench apply`).
//! Backends: gzip inflates with ISA-L ([`layerstore_igzip`], where the build found libisal;
//! ~1.4× faster than zlib-rs here) and deflates through flate2 with zlib-rs and its runtime CPU
//! detection (default features; without it ~30% slower), which also inflates in a build
//! without libisal ([`GZIP_INFLATE`] says which); zstd through libzstd, SHA-256 through sha2 (SHA-NI
//! picked at runtime). bzip2 (pure-Rust backend) and xz
//! (liblzma) sit behind the default features `bzip2` and `xz`; without them such layers fail
//! with [`Error::UnsupportedCompression`].
//!
//! The measurements (against GNU tar, of the reader and file-writer threads) are in
//! `docs/BENCHMARKS.md`, section "layerstore-archive: apply".
//!
//! # Limitations
//!
//! * Not transactional: on error the target holds part of the layer; the caller discards it
//!   (an error is never reported as success).
//! * Memory grows with the number of entries (the set of paths seen, for duplicate detection and
//!   naive opaque directories, and the list of directories whose times are set at the end), not
//!   with their sizes.
//! * Only regular files of at most 256 KiB without xattrs or sparse maps are finished on the
//!   file writer thread; larger ones, and every other entry, are made on the caller's thread.
//!   Creating files (`openat`, ~30% of that thread on a many-small-files layer) stays there, so
//!   that every name exists at its point of the archive order.
//! * On 2 cores the threads are CPU-bound together (they add 3–10% CPU): with no idle core (a
//!   busy build host) a layer applies no faster than on one thread.
//! * The AUFS hardlink directory (`.wh..wh.plnk`) and other `.wh..wh.*` metadata are skipped.
//! * Xattrs the filesystem does not support are skipped with a warning in
//!   [`ApplyReport::warnings`]; in overlay style, archive xattrs under `trusted.overlay.` are
//!   dropped with a warning so a layer cannot forge overlay metadata.

// One syscall wrapper (`sched`) needs `unsafe`; nothing else may.
#![deny(unsafe_code)]

mod apply;
mod changes;
mod compression;
mod digest;
mod encoder;
mod error;
mod export;
mod extract;
mod feed;
mod filewriter;
mod header;
mod idmap;
mod options;
pub mod pipe;
mod rooted;
mod sched;
pub mod tree;
pub mod whiteout;
pub mod zstd_chunked;

pub use apply::{apply, apply_at};
pub use changes::{
    Change, ChangeKind, MappedTree, OpenTree, TreeMappings, changes, changes_at, overlay_changes,
    overlay_changes_at,
};
pub use compression::{
    Compression, GZIP_INFLATE, MAGIC_LEN, XZ_MEMORY_LIMIT, decoder, decompress, detect,
    is_supported,
};
pub use encoder::{Encoder, GZIP_LEVEL, ZSTD_LEVEL, encoder};
pub use error::{Error, Result};
pub use export::{ExportReader, export, export_at, export_to, export_to_at};
pub use idmap::{IdMap, to_container, to_host};
pub use layerstore_tarsplit::{EntrySink, Limits};
pub use options::{
    ApplyOptions, ApplyReport, DEFAULT_MAX_DEPTH, DevicePolicy, InputEndHook, RootEntry,
    WhiteoutStyle,
};
