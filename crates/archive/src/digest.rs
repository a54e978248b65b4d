//! Streaming SHA-256 and byte counting.

use std::io::{self, Read};

use layerstore_model::{Digest, Sha256Hasher};
use layerstore_tarsplit::ChunkRead;

/// A reader that hashes (SHA-256) and counts every byte read through it.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
    count: u64,
    limit: Option<u64>,
    hashing: bool,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self::with_limit(inner, None)
    }

    /// With `limit`, reading past `limit` bytes fails with an `io::ErrorKind::FileTooLarge` error.
    pub(crate) fn with_limit(inner: R, limit: Option<u64>) -> Self {
        HashingReader {
            inner,
            hasher: Sha256Hasher::new(),
            count: 0,
            limit,
            hashing: true,
        }
    }

    /// Stops hashing: only the count (and limit) remain meaningful.
    pub(crate) fn count_only(&mut self) {
        self.hashing = false;
    }

    /// The reader read through.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads and hashes everything left in the input.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The SHA-256 digest and the byte count so far.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }

    /// Hashes and counts `bytes` just read; an error past the limit.
    fn account(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.hashing {
            self.hasher.update(bytes);
        }
        self.count += bytes.len() as u64;
        if let Some(limit) = self.limit
            && self.count > limit
        {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, TooLarge(limit)));
        }
        Ok(())
    }

    /// Like [`HashingReader::finish`], keeping the reader.
    pub(crate) fn digest(&self) -> (Digest, u64) {
        (self.hasher.clone().finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.account(&buf[..n])?;
        Ok(n)
    }
}

impl<R: ChunkRead> ChunkRead for HashingReader<R> {
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let n = self.inner.read_chunk(buf)?;
        self.account(&buf[..n])?;
        Ok(n)
    }
}

/// Marker carried inside the `io::Error` raised by a [`HashingReader`] limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooLarge(pub(crate) u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} uncompressed bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_the_well_known_digest() {
        let mut r = HashingReader::new(&b""[..]);
        r.drain().expect("drain");
        let (digest, size) = r.finish();
        assert_eq!(
            digest.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(size, 0);
    }

    #[test]
    fn limit_is_enforced() {
        let data = [0u8; 100];
        let mut r = HashingReader::with_limit(&data[..], Some(99));
        let err = r.drain().expect_err("over the limit");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        let mut ok = HashingReader::with_limit(&data[..], Some(100));
        ok.drain().expect("at the limit");
        assert_eq!(ok.finish().1, 100);
    }
}
