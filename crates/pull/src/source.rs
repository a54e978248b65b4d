//! [`ImageSource`]: what every transport serves (manifests and blobs), and what is built on it
//! for all of them: [`resolve`] (the image for a platform), [`open_blob`] (a blob whose digest
//! and size are checked while it streams), [`read_blob_range`], [`fetch_blobs`] (several at
//! once).

use std::io::{self, Read};
use std::sync::Mutex;

use layerstore_model::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{Blob, MAX_MANIFEST_SIZE, RawManifest, digest_of};
use crate::platform::Platform;

/// A blob's bytes as a source serves them.
pub type BlobStream = Box<dyn Read + Send>;

/// Where an image's manifests and blobs come from. Implementations serve bytes; checking
/// them is [`open_blob`]'s and [`resolve`]'s job, the same for every transport.
pub trait ImageSource: Send + Sync {
    /// The source in transport form (`oci:/dir:ref`, `docker://host/repo:tag`), for messages.
    fn location(&self) -> String;

    /// The manifest or index the reference names, exactly as stored or served.
    fn top_manifest(&self) -> Result<RawManifest>;

    /// The manifest with this digest (an entry of the top-level index).
    fn manifest(&self, digest: &Digest) -> Result<RawManifest>;

    /// The blob's bytes from `offset` on, unchecked.
    fn blob_from(&self, blob: &Blob, offset: u64) -> Result<BlobStream>;

    /// The blob's bytes `offset..offset + len`, unchecked. The default reads from `offset`
    /// and stops after `len` bytes; registries send a range request.
    fn blob_range(&self, blob: &Blob, offset: u64, len: u64) -> Result<BlobStream> {
        Ok(Box::new(self.blob_from(blob, offset)?.take(len)))
    }

    /// Whether [`ImageSource::blob_range`] has sent only the bytes asked for so far (a
    /// registry may answer with the whole blob, which the read skips through: right, but no
    /// cheaper than a full read). Partial pulls ask after their first range.
    fn serves_ranges(&self) -> bool {
        true
    }

    /// The names podman 4.3 records for the image pulled from here (`top` is what
    /// [`ImageSource::top_manifest`] gave); empty when podman records none.
    fn image_names(&self, top: &RawManifest) -> Result<Vec<String>>;
}

/// An image resolved to one platform: its manifest (and the index it was chosen from), its
/// config and layer blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The index or manifest list the manifest was chosen from, when the reference named one.
    pub index: Option<RawManifest>,
    /// The image manifest.
    pub manifest: RawManifest,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, base first.
    pub layers: Vec<Blob>,
}

impl ResolvedImage {
    /// The manifest the reference named: the index when there is one, else the manifest.
    pub fn top(&self) -> &RawManifest {
        self.index.as_ref().unwrap_or(&self.manifest)
    }
}

/// The image `source` names, for `platform` when it names an index; every manifest's digest
/// checked (and the reference's digest, for sources that have one).
pub fn resolve(source: &dyn ImageSource, platform: &Platform) -> Result<ResolvedImage> {
    let location = source.location();
    let top = source.top_manifest()?;
    let (index, manifest) = if top.is_index() {
        let entry = top.choose(&location, platform)?;
        let manifest = source.manifest(&entry.digest)?;
        if manifest.digest != entry.digest {
            return Err(Error::DigestMismatch {
                location,
                expected: entry.digest.to_string(),
                actual: manifest.digest.to_string(),
            });
        }
        if manifest.is_index() {
            return Err(Error::Unsupported {
                location,
                what: format!("index {} nested in index {}", manifest.digest, top.digest),
            });
        }
        (Some(top), manifest)
    } else {
        (None, top)
    };
    let (config, layers) = manifest.image(&location)?;
    Ok(ResolvedImage {
        index,
        manifest,
        config,
        layers,
    })
}

/// Opens `blob` of `source`: the bytes are hashed and counted as they stream, and the
/// reader's last `read` fails (an [`Error::DigestMismatch`] or [`Error::SizeMismatch`] inside
/// the `io::Error`, see [`Error::from_io`]) unless they are exactly the blob.
pub fn open_blob(source: &dyn ImageSource, blob: &Blob) -> Result<VerifyingReader<BlobStream>> {
    Ok(VerifyingReader::new(
        source.blob_from(blob, 0)?,
        blob.clone(),
        source.location(),
    ))
}

/// Reads a whole blob of at most `limit` bytes (a config), checked.
pub fn read_blob(source: &dyn ImageSource, blob: &Blob, limit: u64) -> Result<Vec<u8>> {
    let location = source.location();
    if blob.size > limit {
        return Err(Error::TooLarge {
            location,
            what: format!("blob {}", blob.digest),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(blob.size as usize);
    open_blob(source, blob)?
        .read_to_end(&mut bytes)
        .map_err(|e| blob_read_error(&location, blob, e))?;
    Ok(bytes)
}

/// Reads the image's config blob (at most 4 MiB, as containers/image allows).
pub fn read_config(source: &dyn ImageSource, image: &ResolvedImage) -> Result<Vec<u8>> {
    read_blob(source, &image.config, MAX_MANIFEST_SIZE)
}

/// Bytes `offset..offset + len` of `blob` (for partial pulls; the whole blob's digest cannot
/// be checked here). A range past the blob's size is refused; a short answer is an error.
pub fn read_blob_range(
    source: &dyn ImageSource,
    blob: &Blob,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>> {
    let location = source.location();
    if offset.checked_add(len).is_none_or(|end| end > blob.size) {
        return Err(Error::invalid(
            &location,
            format!("range {offset}+{len} of blob {}", blob.digest),
            format!("the blob has {} bytes", blob.size),
        ));
    }
    let mut bytes = Vec::with_capacity(len.min(64 << 20) as usize);
    source
        .blob_range(blob, offset, len)?
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| blob_read_error(&location, blob, e))?;
    if bytes.len() as u64 != len {
        return Err(Error::SizeMismatch {
            location,
            digest: blob.digest.to_string(),
            expected: len,
            actual: bytes.len() as u64,
            truncated: true,
        });
    }
    Ok(bytes)
}

/// The crate error inside `err`, or `err` as an [`Error::Io`] naming the blob.
pub(crate) fn blob_read_error(location: &str, blob: &Blob, err: io::Error) -> Error {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(_) => *err
            .into_inner()
            .expect("checked above")
            .downcast::<Error>()
            .expect("checked above"),
        None => Error::io(location, format!("blob {}", blob.digest), err),
    }
}

/// Runs `work` on each blob's checked stream (then reads what it left and checks the digest), up to
/// `parallel` at once (at least one), and gives the results in the order of `blobs`. When
/// `work` fails on a blob whose digest is wrong, the error is the [`Error::DigestMismatch`].
/// The first error stops the blobs not yet started and is returned.
pub fn fetch_blobs<T, F>(
    source: &dyn ImageSource,
    blobs: &[Blob],
    parallel: usize,
    work: F,
) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(&Blob, &mut VerifyingReader<BlobStream>) -> Result<T> + Sync,
{
    in_parallel(blobs.len(), parallel, |i| {
        let mut reader = open_blob(source, &blobs[i])?;
        let value = match work(&blobs[i], &mut reader) {
            Ok(value) => value,
            // Damaged bytes usually fail the consumer first (a corrupt deflate stream); the
            // blob's digest says what was really wrong.
            Err(e) => match reader.verify_to_end() {
                Err(mismatch @ Error::DigestMismatch { .. }) => return Err(mismatch),
                _ => return Err(e),
            },
        };
        reader.verify_to_end()?;
        Ok(value)
    })
}

/// Runs `task(i)` for each `i` in `0..count` on up to `parallel` threads (at least one), and
/// gives the results in order. The first error stops the tasks not yet started and is returned.
pub(crate) fn in_parallel<T, F>(count: usize, parallel: usize, task: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Sync,
{
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("not poisoned");
                        if *n >= count || failed.lock().expect("not poisoned").is_some() {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    match task(i) {
                        Ok(v) => results.lock().expect("not poisoned")[i] = Some(v),
                        Err(e) => {
                            failed.lock().expect("not poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|r| r.expect("every task ran"))
        .collect())
}

/// A reader that checks a blob's size and SHA-256 as it streams. Reading past the expected
/// size, or reaching the end before it, or a digest that differs at the end, is an error
/// naming the blob and the source.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    blob: Blob,
    location: String,
    hasher: Sha256,
    read: u64,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Checks `inner` against `blob`; errors name `location`.
    pub fn new(inner: R, blob: Blob, location: String) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            blob,
            location,
            hasher: Sha256::new(),
            read: 0,
            done: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The blob being read.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// Reads what the consumer left (a tar reader stops at the end-of-archive blocks, before
    /// the padding) and checks the whole blob. Call it when done; it is a no-op after the
    /// reader already reached the end.
    pub fn verify_to_end(&mut self) -> Result<()> {
        io::copy(self, &mut io::sink())
            .map(|_| ())
            .map_err(|e| blob_read_error(&self.location, &self.blob, e))
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.read != self.blob.size {
            return Err(Error::SizeMismatch {
                location: self.location.clone(),
                digest: self.blob.digest.to_string(),
                expected: self.blob.size,
                actual: self.read,
                truncated: self.read < self.blob.size,
            }
            .into_io());
        }
        let actual = digest_of(self.hasher.clone().finalize().as_slice());
        if actual != self.blob.digest {
            return Err(Error::DigestMismatch {
                location: self.location.clone(),
                expected: self.blob.digest.to_string(),
                actual: actual.to_string(),
            }
            .into_io());
        }
        self.done = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than the blob should have, so a longer stream shows.
        let room = (self.blob.size - self.read.min(self.blob.size)).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        self.read += n as u64;
        if self.read > self.blob.size {
            self.finish()?;
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::sha256_digest;

    fn blob_of(bytes: &[u8]) -> Blob {
        Blob {
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            media_type: String::new(),
        }
    }

    fn read_all(bytes: &[u8], blob: Blob) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        VerifyingReader::new(bytes, blob, "oci:/src".into())
            .read_to_end(&mut out)
            .map(|_| out)
    }

    #[test]
    fn a_right_blob_reads_through() {
        let data = b"hello blob".repeat(1000);
        assert_eq!(read_all(&data, blob_of(&data)).unwrap(), data);
        assert_eq!(read_all(b"", blob_of(b"")).unwrap(), b"");
    }

    #[test]
    fn wrong_digest_truncation_and_excess_name_the_blob_and_source() {
        let data = b"the real bytes".to_vec();
        let blob = blob_of(&data);
        let mut bad = data.clone();
        bad[0] ^= 1;
        let err = read_all(&bad, blob.clone()).unwrap_err();
        let inner = Error::from_io(&err).unwrap();
        assert!(matches!(inner, Error::DigestMismatch { .. }), "{inner}");
        let text = inner.to_string();
        assert!(
            text.contains("oci:/src") && text.contains(blob.digest.as_str()),
            "{text}"
        );

        let err = read_all(&data[..5], blob.clone()).unwrap_err();
        let text = Error::from_io(&err).unwrap().to_string();
        assert!(
            text.contains("truncated") && text.contains(blob.digest.as_str()),
            "{text}"
        );

        let mut longer = data.clone();
        longer.push(b'!');
        let err = read_all(&longer, blob).unwrap_err();
        assert!(matches!(
            Error::from_io(&err),
            Some(Error::SizeMismatch {
                truncated: false,
                ..
            })
        ));
    }

    /// Serves blobs of `b"blob N"`; opening one waits (up to a generous bound) until
    /// `together` blobs are open at once (`patience` at most).
    struct Rendezvous {
        together: usize,
        patience: std::time::Duration,
        open: std::sync::Mutex<usize>,
        arrived: std::sync::Condvar,
    }

    impl ImageSource for Rendezvous {
        fn location(&self) -> String {
            "rendezvous".into()
        }
        fn top_manifest(&self) -> Result<RawManifest> {
            unreachable!("not asked")
        }
        fn manifest(&self, _: &Digest) -> Result<RawManifest> {
            unreachable!("not asked")
        }
        fn blob_from(&self, blob: &Blob, _: u64) -> Result<BlobStream> {
            let mut open = self.open.lock().unwrap();
            *open += 1;
            self.arrived.notify_all();
            let (open, timeout) = self
                .arrived
                .wait_timeout_while(open, self.patience, |n| *n < self.together)
                .unwrap();
            if timeout.timed_out() {
                return Err(Error::invalid(
                    "rendezvous",
                    "blob",
                    format!("only {} open at once", *open),
                ));
            }
            let text = (0..10)
                .map(|i| format!("blob {i}"))
                .find(|t| sha256_digest(t.as_bytes()) == blob.digest)
                .expect("one of ours");
            Ok(Box::new(io::Cursor::new(text.into_bytes())))
        }
        fn image_names(&self, _: &RawManifest) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn fetch_blobs_streams_several_at_once_and_keeps_the_order() {
        let blobs: Vec<Blob> = (0..4)
            .map(|i| blob_of(format!("blob {i}").as_bytes()))
            .collect();
        let source = Rendezvous {
            together: 3,
            patience: std::time::Duration::from_secs(60),
            open: std::sync::Mutex::new(0),
            arrived: std::sync::Condvar::new(),
        };
        let texts = fetch_blobs(&source, &blobs, 3, |_, reader| {
            let mut text = String::new();
            reader
                .read_to_string(&mut text)
                .map_err(|e| blob_read_error("x", &blobs[0], e))?;
            Ok(text)
        })
        .unwrap();
        assert_eq!(texts, ["blob 0", "blob 1", "blob 2", "blob 3"]);
        // One at a time can never meet (however long it waited): the first error is returned.
        let alone = Rendezvous {
            together: 2,
            patience: std::time::Duration::from_millis(100),
            open: std::sync::Mutex::new(0),
            arrived: std::sync::Condvar::new(),
        };
        assert!(fetch_blobs(&alone, &blobs[..1], 1, |_, _| Ok(())).is_err());
    }

    proptest::proptest! {
        /// Whatever the read sizes, the right bytes pass and any change is caught.
        #[test]
        fn any_change_is_caught(data in proptest::collection::vec(0u8..=255, 0..3000), flip in 0usize..3000, chunk in 1usize..700) {
            struct Chunks<'a>(&'a [u8], usize);
            impl Read for Chunks<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.len().min(self.1).min(buf.len());
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let blob = blob_of(&data);
            let mut out = Vec::new();
            VerifyingReader::new(Chunks(&data, chunk), blob.clone(), "x".into()).read_to_end(&mut out).unwrap();
            proptest::prop_assert_eq!(&out, &data);
            if !data.is_empty() {
                let mut bad = data.clone();
                let i = flip % bad.len();
                bad[i] ^= 0x40;
                let mut out = Vec::new();
                proptest::prop_assert!(VerifyingReader::new(Chunks(&bad, chunk), blob, "x".into()).read_to_end(&mut out).is_err());
            }
        }
    }
}
