//! Compression detection by magic bytes and streaming decompression (the encoders are in
//! `encoder`).

use std::io::{self, BufRead, BufReader, Read};

use crate::error::{Error, Result};

pub use layerstore_model::Compression;

/// The library that inflates gzip layers in this build: ISA-L's igzip where the build found
/// `libisal` (Debian: `libisal-dev`), else zlib-rs (through flate2). Both decode the same
/// streams and check the same CRC-32 and size; ISA-L is about 1.4× faster.
pub const GZIP_INFLATE: &str = if layerstore_igzip::AVAILABLE {
    "ISA-L"
} else {
    "zlib-rs"
};

/// Longest magic [`detect`] looks at; pass at least this many bytes when the input has them.
pub const MAGIC_LEN: usize = 6;

/// Whether this build can decompress `compression` (bzip2 and xz depend on cargo features).
pub fn is_supported(compression: Compression) -> bool {
    match compression {
        Compression::None | Compression::Gzip | Compression::Zstd => true,
        Compression::Bzip2 => cfg!(feature = "bzip2"),
        Compression::Xz => cfg!(feature = "xz"),
        Compression::Unknown(_) => false,
    }
}

/// Detects the compression from the first bytes of a blob, as Go's `DetectCompression` does.
/// Anything unrecognised (including too few bytes) is [`Compression::None`].
pub fn detect(head: &[u8]) -> Compression {
    const MAGICS: [(&[u8], Compression); 4] = [
        (b"BZh", Compression::Bzip2),
        (&[0x1f, 0x8b, 0x08], Compression::Gzip),
        (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], Compression::Xz),
        (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map_or(Compression::None, |&(_, c)| c)
}

/// Wraps `input` in the decoder for `compression`.
///
/// gzip accepts multi-member streams, as Go's reader does. Returns
/// [`Error::UnsupportedCompression`] for bzip2/xz when the matching feature is off.
pub fn decoder<'r, R: BufRead + Send + 'r>(
    input: R,
    compression: Compression,
) -> Result<Box<dyn Read + Send + 'r>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip if layerstore_igzip::AVAILABLE => Box::new(
            layerstore_igzip::MultiGzDecoder::new(input).map_err(|e| Error::Input(e.into()))?,
        ),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(Error::Input)?)
        }
        #[cfg(feature = "bzip2")]
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        #[cfg(feature = "xz")]
        Compression::Xz => {
            // liblzma allocates what the stream's headers ask for (a forged dictionary of up
            // to 4 GiB) unless it is given a limit; then it refuses before allocating.
            let stream = liblzma::stream::Stream::new_auto_decoder(
                XZ_MEMORY_LIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(|e| Error::Input(e.into()))?;
            Box::new(XzLimitMessage(liblzma::bufread::XzDecoder::new_stream(
                input, stream,
            )))
        }
        #[allow(unreachable_patterns)] // reachable only with a decompression feature off
        other => return Err(Error::UnsupportedCompression(other)),
    })
}

/// The most memory liblzma may use to decompress one xz layer: 256 MiB, four times what the
/// largest preset (`xz -9`, a 64 MiB dictionary) needs. A stream whose headers ask for more (a
/// forged dictionary) fails before anything is allocated.
///
/// The other decompressors are bounded by their formats or libraries: bzip2 blocks are at most
/// 900 kB (a few MiB to decode), and libzstd refuses frames whose window exceeds 128 MiB
/// (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`) unless asked otherwise, which we never do.
pub const XZ_MEMORY_LIMIT: u64 = 256 << 20;

/// Says which limit an xz stream hit, instead of liblzma's bare "memory limit reached".
#[cfg(feature = "xz")]
struct XzLimitMessage<R>(R);

#[cfg(feature = "xz")]
impl<R: Read> Read for XzLimitMessage<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let memlimit = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<liblzma::stream::Error>())
                .is_some_and(|inner| matches!(inner, liblzma::stream::Error::MemLimit));
            if memlimit {
                io::Error::other(format!(
                    "xz: decompressing this stream needs more than {} MiB of memory \
                     (its dictionary is larger than any xz preset uses)",
                    XZ_MEMORY_LIMIT >> 20
                ))
            } else {
                e
            }
        })
    }
}

/// Detects the compression of `input` (peeking, nothing is lost) and returns it with a reader of
/// the decompressed bytes.
pub fn decompress<'r, R: Read + Send + 'r>(
    input: R,
) -> Result<(Compression, Box<dyn Read + Send + 'r>)> {
    let mut buffered = BufReader::with_capacity(128 * 1024, input);
    let compression = detect(peek(&mut buffered).map_err(Error::Input)?);
    Ok((compression, decoder(buffered, compression)?))
}

/// Fills `reader`'s buffer (one read, as Go's detection does) and returns the buffered bytes
/// without consuming them.
pub(crate) fn peek<R: Read>(reader: &mut BufReader<R>) -> io::Result<&[u8]> {
    reader.fill_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_every_magic_and_defaults_to_uncompressed() {
        assert_eq!(detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 1]), Compression::Zstd);
        assert_eq!(detect(b"ustar"), Compression::None);
        assert_eq!(detect(&[0x1f, 0x8b]), Compression::None);
        assert_eq!(detect(b""), Compression::None);
        assert!(is_supported(Compression::Gzip) && is_supported(Compression::Zstd));
        assert!(!is_supported(Compression::Unknown(9)));
        assert!(matches!(
            decoder(&b""[..], Compression::Unknown(9)),
            Err(Error::UnsupportedCompression(Compression::Unknown(9)))
        ));
    }

    fn roundtrip(compression: Compression, compressed: Vec<u8>, plain: &[u8]) {
        let (found, mut reader) = decompress(&compressed[..]).expect("decoder");
        assert_eq!(found, compression);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("decompress");
        assert_eq!(out, plain);
    }

    #[test]
    fn decompresses_gzip_multimember_and_zstd() {
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = Vec::new();
        for half in plain.chunks(100_000) {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(half).expect("gzip");
            gz.extend(enc.finish().expect("gzip"));
        }
        roundtrip(Compression::Gzip, gz, &plain);
        roundtrip(
            Compression::Zstd,
            zstd::encode_all(&plain[..], 3).expect("zstd"),
            &plain,
        );
        roundtrip(Compression::None, plain.clone(), &plain);
    }

    #[cfg(feature = "bzip2")]
    #[test]
    fn decompresses_bzip2() {
        let plain = b"hello bzip2 layer".repeat(100);
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.write_all(&plain).expect("bzip2");
        roundtrip(Compression::Bzip2, enc.finish().expect("bzip2"), &plain);
    }

    #[cfg(feature = "xz")]
    #[test]
    fn decompresses_xz() {
        let plain = b"hello xz layer".repeat(100);
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(&plain).expect("xz");
        roundtrip(Compression::Xz, enc.finish().expect("xz"), &plain);
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let (found, mut reader) = decompress(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3][..]).expect("decoder");
        assert_eq!(found, Compression::Gzip);
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
    }
}
