//! Partial pulls of zstd:chunked layers (the format `podman push --compression-format
//! zstd:chunked` and `skopeo copy --dest-compress-format zstd:chunked` write).
//!
//! # The format
//!
//! The blob is a zstd stream of the layer's tarball cut so that each regular file's content has
//! its own frames, followed by a table of contents (TOC) and a footer; the archive crate reads
//! them ([`layerstore_archive::zstd_chunked`], which describes the layout). Everything outside
//! the files' ranges, up to the TOC, decompresses to the tar headers, padding and
//! end-of-archive blocks.
//!
//! # What [`ZstdChunkedDiffer`] does
//!
//! It reads the footer and the TOC through a [`BlobReader`] (a range reader: a local file in
//! tests, HTTP range requests in a registry client) and decides, once, which contents come
//! from local files; [`ZstdChunkedDiffer::blob_ranges`] gives the blob ranges the apply will
//! then read, so a network caller fetches exactly those (layerstore-pull's `partial`
//! module does, with coalesced range requests). The apply rebuilds the layer's uncompressed
//! tarball as a stream: header ranges are read from the blob and decompressed; each file's
//! content comes from a local file with the same digest ([`LocalFiles`], built from the
//! store's layers) when there is one, verified by hashing it first, else from the blob,
//! verified against the TOC's digest as it streams. That stream goes through the archive
//! crate's one-pass apply, so the layer is extracted, its tar-split records and its
//! uncompressed digest are exactly those of a plain pull of the same blob, and `diff` gives
//! the same bytes back. Files taken from other layers are copied (never hard-linked, so
//! layers stay independent). The TOC is kept as the layer's big-data item
//! [`TOC_BIG_DATA`] (`zstd-chunked-manifest`), as Go keeps it.
//!
//! # Limitations
//!
//! * Local files are found from the TOCs of layers pulled this way, and by hashing the trees
//!   of the others ([`LocalFiles::from_store`]) or not ([`LocalFiles::from_store_tocs`], what
//!   containers/storage looks at and what pulls use), each time: there is no persistent
//!   cache as Go keeps.
//! * Reused files are copied through the stream, not reflinked: cloning onto the extracted
//!   file afterwards would make the kernel drop its setuid/setgid bits and file
//!   capabilities and change its mtime; doing it right needs the extraction itself to clone.
//! * skopeo's zstd:chunked stream drops the tarball's trailing padding, so the layer's
//!   DiffID is the blob's (as with a plain pull of it), not the original tarball's: for a
//!   tarball padded past its end-of-archive blocks (GNU tar's 10 KiB records), the config's
//!   DiffID, which skopeo 1.9 leaves as it was, is not the layer's.
//! * Only the footer of manifest type 1 with its 40-byte body (containers/storage ≤ 1.44,
//!   skopeo 1.9) is read; the later footer that also points at a tar-split in the blob is
//!   refused with a clear error.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use layerstore_archive::ApplyOptions;
pub use layerstore_archive::zstd_chunked::{BlobReader, FileBlob, MAX_TOC_SIZE};
use layerstore_archive::zstd_chunked::{
    ContentRange, Footer, parse_footer, read_toc, toc_regular_files,
};
use layerstore_driver::{Differ, DifferOptions, DifferOutput};
use layerstore_model::{Compression, Digest, Sha256Hasher};
use layerstore_tarsplit::JsonLinesPacker;

use crate::error::Result;
use crate::store::LayerStore;

/// The big-data item holding the layer's TOC (JSON), as Go names it.
pub const TOC_BIG_DATA: &str = "zstd-chunked-manifest";

/// Regular files already on this host, by the sha256 of their content.
#[derive(Debug, Default, Clone)]
pub struct LocalFiles {
    by_digest: HashMap<Digest, LocalFile>,
}

/// A file of a layer: the layer's directory and the file's path beneath it, opened with no
/// symlink followed on the way (a TOC names the file, a layer's tree may have a symlink
/// where the TOC says a directory is).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalFile {
    root: Arc<PathBuf>,
    relative: PathBuf,
}

impl LocalFile {
    fn open(&self) -> io::Result<File> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let root = rustix::fs::open(
            self.root.as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = rustix::fs::openat2(
            &root,
            &self.relative,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(File::from(file))
    }

    #[cfg(test)]
    fn path(&self) -> PathBuf {
        self.root.join(&self.relative)
    }
}

impl LocalFiles {
    /// An empty index (every file comes from the blob).
    pub fn new() -> Self {
        LocalFiles::default()
    }

    /// Hashes every regular file beneath `dir` (symlinks are not followed).
    pub fn add_tree(&mut self, dir: &Path) -> io::Result<()> {
        let root = Arc::new(dir.to_path_buf());
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            for entry in fs::read_dir(dir.join(&relative))? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let relative = relative.join(entry.file_name());
                if kind.is_dir() {
                    pending.push(relative);
                } else if kind.is_file() {
                    let file = LocalFile {
                        root: Arc::clone(&root),
                        relative,
                    };
                    let digest = Sha256Hasher::digest_reader(&mut file.open()?)?;
                    self.by_digest.entry(digest).or_insert(file);
                }
            }
        }
        Ok(())
    }

    /// Indexes the regular files a zstd:chunked TOC (`toc`, JSON) lists, as found beneath
    /// `dir` (the layer's own files), without reading them: a file is hashed only when a
    /// pull wants it. Names that would leave `dir` are skipped. Returns how many were added.
    pub fn add_toc(&mut self, dir: &Path, toc: &[u8]) -> usize {
        let root = Arc::new(dir.to_path_buf());
        let mut added = 0;
        for (name, digest) in toc_regular_files(toc).unwrap_or_default() {
            let mut relative = PathBuf::new();
            let mut inside = true;
            for component in name.split('/') {
                match component {
                    "" | "." => {}
                    ".." => inside = false,
                    other => relative.push(other),
                }
            }
            if inside && !relative.as_os_str().is_empty() {
                let file = LocalFile {
                    root: Arc::clone(&root),
                    relative,
                };
                self.by_digest.entry(digest).or_insert(file);
                added += 1;
            }
        }
        added
    }

    /// Indexes the own files of every complete layer of `store` (through
    /// [`LayerStore::differ_target`]; layers of drivers without one are skipped): from the
    /// layer's TOC ([`TOC_BIG_DATA`]) when it was pulled as zstd:chunked, else by hashing
    /// its tree.
    pub fn from_store(store: &LayerStore) -> Result<LocalFiles> {
        let mut files = LocalFiles::new();
        for layer in store.layers()? {
            if layer.is_incomplete() {
                continue;
            }
            let Ok(dir) = store.differ_target(&layer.id) else {
                continue;
            };
            if layer.big_data_names.iter().any(|n| n == TOC_BIG_DATA) {
                files.add_stored_toc(store, &layer.id, &dir)?;
                continue;
            }
            files
                .add_tree(&dir)
                .map_err(|e| crate::Error::io("index files of", &dir, e))?;
        }
        Ok(files)
    }

    /// Indexes the own files of the complete layers of `store` that were pulled as
    /// zstd:chunked, from their TOCs ([`TOC_BIG_DATA`]) alone: no file is read, so the cost
    /// does not grow with the store's data (a file is hashed only when a pull wants it). This
    /// is what containers/storage's partial pulls look at; [`LocalFiles::from_store`] also
    /// hashes the trees of the other layers.
    pub fn from_store_tocs(store: &LayerStore) -> Result<LocalFiles> {
        let mut files = LocalFiles::new();
        for layer in store.layers()? {
            if layer.is_incomplete() || !layer.big_data_names.iter().any(|n| n == TOC_BIG_DATA) {
                continue;
            }
            let Ok(dir) = store.differ_target(&layer.id) else {
                continue;
            };
            files.add_stored_toc(store, &layer.id, &dir)?;
        }
        Ok(files)
    }

    /// Indexes the files of layer `id` (whose tree is `dir`) from its stored TOC.
    fn add_stored_toc(&mut self, store: &LayerStore, id: &str, dir: &Path) -> Result<()> {
        let mut toc = Vec::new();
        store
            .big_data(id, TOC_BIG_DATA)?
            .read_to_end(&mut toc)
            .map_err(|e| crate::Error::io("read the TOC of", dir, e))?;
        self.add_toc(dir, &toc);
        Ok(())
    }

    /// Number of distinct digests known.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn get(&self, digest: &Digest) -> Option<&LocalFile> {
        self.by_digest.get(digest)
    }
}

/// The differ's error for a blob whose footer or TOC the archive crate refused: the same
/// message, the I/O cause kept as the source.
fn differ_error(e: layerstore_archive::Error) -> layerstore_driver::Error {
    match e {
        layerstore_archive::Error::ZstdChunked { message, source } => {
            layerstore_driver::Error::Differ {
                message,
                source: source.map(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>),
            }
        }
        other => layerstore_driver::Error::Differ {
            message: other.to_string(),
            source: None,
        },
    }
}

/// `Read` over a byte range of a blob, counting what it reads.
struct RangeRead<'a> {
    blob: &'a dyn BlobReader,
    counter: &'a AtomicU64,
    pos: u64,
    end: u64,
}

impl Read for RangeRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.blob.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One piece of the rebuilt tar stream.
enum Piece<'a> {
    /// Blob range of header frames: decompressed as is.
    Headers(u64, u64),
    /// A file's content, from the blob or a local copy.
    Content(&'a ContentRange, Option<LocalFile>),
}

/// The uncompressed tarball, rebuilt piece by piece.
struct Rebuilt<'a> {
    blob: &'a dyn BlobReader,
    counter: &'a AtomicU64,
    pieces: std::vec::IntoIter<Piece<'a>>,
    current: Option<Box<dyn Read + Send + 'a>>,
    /// The content being streamed: its range, hasher and bytes so far.
    checking: Option<(&'a ContentRange, Sha256Hasher, u64)>,
}

impl<'a> Rebuilt<'a> {
    fn blob_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + 'a>> {
        let range = RangeRead {
            blob: self.blob,
            counter: self.counter,
            pos: start,
            end,
        };
        Ok(Box::new(zstd::stream::read::Decoder::new(range)?))
    }

    fn next_piece(&mut self) -> io::Result<bool> {
        let Some(piece) = self.pieces.next() else {
            return Ok(false);
        };
        match piece {
            Piece::Headers(start, end) => {
                self.current = Some(self.blob_range(start, end)?);
            }
            Piece::Content(range, local) => {
                self.current = Some(match local {
                    Some(file) => Box::new(file.open()?.take(range.size)),
                    None => self.blob_range(range.start, range.end)?,
                });
                self.checking = Some((range, Sha256Hasher::new(), 0));
            }
        }
        Ok(true)
    }

    fn finish_piece(&mut self) -> io::Result<()> {
        self.current = None;
        if let Some((range, hasher, count)) = self.checking.take() {
            let got = hasher.finish();
            if count != range.size || got != range.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd:chunked entry {:?}: content is {count} bytes with digest {got}, \
                         the TOC says {} bytes with {}",
                        range.name, range.size, range.digest
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Rebuilt<'_> {
    /// One read of the current piece (moving to the next ones as they end); 0 at the end.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() && !self.next_piece()? {
                return Ok(0);
            }
            let Some(current) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = current.read(buf)?;
            if n == 0 {
                self.finish_piece()?;
                continue;
            }
            if let Some((range, hasher, count)) = self.checking.as_mut() {
                *count += n as u64;
                if *count > range.size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "zstd:chunked entry {:?}: content longer than its {} bytes",
                            range.name, range.size
                        ),
                    ));
                }
                hasher.update(&buf[..n]);
            }
            return Ok(n);
        }
    }
}

impl Read for Rebuilt<'_> {
    /// Fills `buf` across pieces (short only at the end): a consumer that takes a short read
    /// for "no more for now" would otherwise see one per piece, thousands per layer.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}

/// What a pull of the blob reads, decided once from its footer, its TOC and the local files.
#[derive(Debug)]
struct Plan {
    footer: Footer,
    toc: Vec<u8>,
    ranges: Vec<ContentRange>,
    /// For each of `ranges`, the verified local copy of its content, if any.
    local: Vec<Option<LocalFile>>,
}

impl Plan {
    /// The rebuilt stream's pieces, in blob order.
    fn pieces(&self) -> Vec<Piece<'_>> {
        let mut pieces = Vec::with_capacity(self.ranges.len() * 2 + 1);
        let mut pos = 0;
        for (range, local) in self.ranges.iter().zip(&self.local) {
            if range.start > pos {
                pieces.push(Piece::Headers(pos, range.start));
            }
            pieces.push(Piece::Content(range, local.clone()));
            pos = range.end;
        }
        let data_end = self.footer.data_end();
        if data_end > pos {
            pieces.push(Piece::Headers(pos, data_end));
        }
        pieces
    }

    /// The blob ranges the pieces read (headers, and contents with no local copy), in
    /// order, touching ones merged.
    fn blob_ranges(&self) -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for piece in self.pieces() {
            let (start, end) = match piece {
                Piece::Headers(start, end) => (start, end),
                Piece::Content(range, None) => (range.start, range.end),
                Piece::Content(_, Some(_)) => continue,
            };
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ if start < end => ranges.push(start..end),
                _ => {}
            }
        }
        ranges
    }
}

/// A [`Differ`] that pulls a zstd:chunked blob partially (see the [module docs](self)).
pub struct ZstdChunkedDiffer {
    blob: Box<dyn BlobReader>,
    blob_digest: Digest,
    toc_digest: Option<Digest>,
    local: LocalFiles,
    plan: Option<Plan>,
    read: AtomicU64,
    reused: u64,
}

impl std::fmt::Debug for ZstdChunkedDiffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdChunkedDiffer")
            .field("blob_digest", &self.blob_digest)
            .field("toc_digest", &self.toc_digest)
            .field("local_files", &self.local.len())
            .finish_non_exhaustive()
    }
}

impl ZstdChunkedDiffer {
    /// A differ for the blob `blob` whose digest (from the image manifest) is `blob_digest`,
    /// taking files from `local` where it can.
    pub fn new(blob: Box<dyn BlobReader>, blob_digest: Digest, local: LocalFiles) -> Self {
        ZstdChunkedDiffer {
            blob,
            blob_digest,
            toc_digest: None,
            local,
            plan: None,
            read: AtomicU64::new(0),
            reused: 0,
        }
    }

    /// Checks the compressed TOC against `digest` (the manifest annotation
    /// `io.containers.zstd-chunked.manifest-checksum`).
    pub fn with_toc_digest(mut self, digest: Digest) -> Self {
        self.toc_digest = Some(digest);
        self
    }

    /// Bytes read from the blob so far (footer and TOC included).
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The blob's size.
    pub fn blob_size(&self) -> u64 {
        self.blob.size()
    }

    /// Bytes of file content taken from local files in the last apply.
    pub fn bytes_reused(&self) -> u64 {
        self.reused
    }

    /// Reads the footer and the TOC and picks the local copies of contents, once (a later
    /// [`Differ::apply_diff`] uses what it decided); returns the blob ranges that apply then
    /// reads: the footer and TOC excluded, in blob order, touching ranges merged. A caller
    /// that fetches over a network fetches these (the footer and TOC first, through the
    /// same reader) and serves them to the apply.
    pub fn blob_ranges(&mut self) -> layerstore_driver::Result<Vec<Range<u64>>> {
        Ok(self.plan()?.blob_ranges())
    }

    /// The plan, made on first use.
    fn plan(&mut self) -> layerstore_driver::Result<&Plan> {
        if self.plan.is_none() {
            let blob: &dyn BlobReader = &*self.blob;
            let footer = parse_footer(blob).map_err(differ_error)?;
            self.read
                .fetch_add(footer.metadata_len(), Ordering::Relaxed);
            let (toc, ranges) =
                read_toc(blob, &footer, self.toc_digest.as_ref()).map_err(differ_error)?;
            let local: Vec<Option<LocalFile>> =
                ranges.iter().map(|range| self.local_copy(range)).collect();
            self.reused = ranges
                .iter()
                .zip(&local)
                .filter(|(_, local)| local.is_some())
                .map(|(range, _)| range.size)
                .sum();
            self.plan = Some(Plan {
                footer,
                toc,
                ranges,
                local,
            });
        }
        Ok(self.plan.as_ref().expect("made above"))
    }

    /// A local file with `range`'s content, verified by hashing it (the apply checks it
    /// again as it streams, so a file changed since fails the pull instead of corrupting it).
    fn local_copy(&self, range: &ContentRange) -> Option<LocalFile> {
        let local = self.local.get(&range.digest)?;
        let mut file = local.open().ok()?;
        if file.metadata().ok()?.len() != range.size {
            return None;
        }
        // The index may be stale (a layer changed since): use it only if it still matches.
        (Sha256Hasher::digest_reader(&mut file).ok()? == range.digest).then(|| local.clone())
    }
}

impl Differ for ZstdChunkedDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        self.plan()?;
        let plan = self.plan.as_ref().expect("made above");
        let blob: &dyn BlobReader = &*self.blob;
        let stream = Rebuilt {
            blob,
            counter: &self.read,
            pieces: plan.pieces().into_iter(),
            current: None,
            checking: None,
        };
        let apply_options = ApplyOptions {
            whiteouts: options.whiteouts,
            uid_map: options.id_mappings.uids.clone(),
            gid_map: options.id_mappings.gids.clone(),
            ignore_chown_errors: options.ignore_chown_errors,
            // The same bound as a plain pull: a TOC cannot make the stream endless.
            max_uncompressed_size: Some(crate::DEFAULT_MAX_LAYER_SIZE),
            ..Default::default()
        };
        let (report, packer) = layerstore_archive::apply(
            dest,
            stream,
            JsonLinesPacker::new(Vec::new()),
            &apply_options,
        )
        .map_err(|e| layerstore_driver::Error::Differ {
            message: format!("zstd:chunked blob {}", self.blob_digest),
            source: Some(Box::new(e)),
        })?;
        let records = packer
            .into_inner()
            .map_err(|e| layerstore_driver::Error::Differ {
                message: "zstd:chunked: tar-split records".into(),
                source: Some(Box::new(e)),
            })?;
        let mut output = DifferOutput::from_report(report, Some(records));
        output.compression = Compression::Zstd;
        output.compressed_digest = Some(self.blob_digest.clone());
        output.compressed_size = self.blob.size();
        output
            .big_data
            .insert(TOC_BIG_DATA.to_string(), plan.toc.clone());
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_names_index_beneath_the_layer_only() {
        let digest = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let toc = format!(
            r#"{{"version":1,"entries":[
            {{"type":"reg","name":"./etc/passwd","digest":"{a}","size":3}},
            {{"type":"reg","name":"../../etc/shadow","digest":"{b}","size":3}},
            {{"type":"dir","name":"./etc/","digest":"{c}"}},
            {{"type":"reg","name":"usr/bin/tool","digest":"{d}","size":3}},
            {{"type":"reg","name":"short","digest":"sha256:ee","size":3}}]}}"#,
            a = digest('a'),
            b = digest('b'),
            c = digest('c'),
            d = digest('d'),
        );
        let mut files = LocalFiles::new();
        assert_eq!(files.add_toc(Path::new("/layer"), toc.as_bytes()), 2);
        assert_eq!(
            files.get(&digest('a')).map(LocalFile::path),
            Some(PathBuf::from("/layer/etc/passwd"))
        );
        assert_eq!(files.get(&digest('b')), None);
        assert_eq!(
            files.get(&digest('d')).map(LocalFile::path),
            Some(PathBuf::from("/layer/usr/bin/tool"))
        );
        assert_eq!(files.add_toc(Path::new("/layer"), b"not json"), 0);
    }

    /// A blob in memory.
    struct Bytes(Vec<u8>);

    impl BlobReader for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = offset as usize;
            buf.copy_from_slice(&self.0[start..start + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn the_rebuilt_stream_fills_each_read_across_pieces() {
        let mut blob = Vec::new();
        let mut pieces = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let text = vec![b'a' + i % 26; 512];
            let start = blob.len() as u64;
            blob.extend(zstd::encode_all(&text[..], 3).unwrap());
            pieces.push(Piece::Headers(start, blob.len() as u64));
            expected.extend(text);
        }
        let blob = Bytes(blob);
        let counter = AtomicU64::new(0);
        let mut stream = Rebuilt {
            blob: &blob,
            counter: &counter,
            pieces: pieces.into_iter(),
            current: None,
            checking: None,
        };
        // One read takes all 50 pieces: a reader that takes a short read for "nothing more
        // for now" must not see one per piece.
        let mut buf = vec![0u8; 1 << 20];
        let n = stream.read(&mut buf).unwrap();
        assert_eq!(n, expected.len());
        assert!(buf[..n] == expected[..]);
        assert_eq!(stream.read(&mut buf).unwrap(), 0);
        assert_eq!(counter.load(Ordering::Relaxed), blob.size());
    }

    #[test]
    fn a_symlink_on_the_way_to_a_listed_file_is_not_followed() {
        let work = tempfile::tempdir().unwrap();
        let (layer, outside) = (work.path().join("layer"), work.path().join("outside"));
        fs::create_dir_all(layer.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        fs::write(layer.join("etc/motd"), b"motd").unwrap();
        std::os::unix::fs::symlink(&outside, layer.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), layer.join("etc/alias")).unwrap();
        let entry = |name: &str, content: &[u8]| {
            serde_json::json!({"type": "reg", "name": name,
                               "digest": Sha256Hasher::digest(content).to_string()})
        };
        let toc = serde_json::json!({"version": 1, "entries": [
            entry("link/secret", b"secret"),
            entry("etc/alias", b"secret"),
            entry("etc/motd", b"motd"),
        ]});
        let mut files = LocalFiles::new();
        files.add_toc(&layer, toc.to_string().as_bytes());
        let motd = files.get(&Sha256Hasher::digest(b"motd")).unwrap();
        let mut text = String::new();
        motd.open().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "motd");
        let secret = files.get(&Sha256Hasher::digest(b"secret")).unwrap();
        assert!(secret.open().is_err(), "{:?} opened", secret.path());
        for name in ["link/secret", "etc/alias"] {
            let other = LocalFile {
                root: Arc::new(layer.clone()),
                relative: name.into(),
            };
            assert!(other.open().is_err(), "{name} opened");
        }
    }
}
