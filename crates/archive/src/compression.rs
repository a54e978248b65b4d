//! Compression detection by magic bytes and streaming decompression.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::error::{Error, Result};

pub use layerstore_model::Compression;

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

/// The gzip level of compressed diffs: the zlib level whose output size and speed match the
/// Go tool's (pgzip at klauspost/compress's default level 5).
pub const GZIP_LEVEL: u32 = 5;

/// The zstd level of compressed diffs (klauspost/compress's `SpeedDefault` in the Go tool).
pub const ZSTD_LEVEL: i32 = 3;

/// Bytes of input per gzip block compressed on its own thread, as pgzip's default.
const GZIP_BLOCK: usize = 1 << 20;

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
/// blocks deflated in parallel by gzp (each block primed with the previous 32 KiB, as pigz
/// does), on as many threads as there are CPUs, at [`GZIP_LEVEL`]; a block whose bytes are
/// nearly random (already compressed files) is stored instead, as the Go tool's encoder also
/// gives up on such data, since deflating it would cost 10 times as long to save nothing.
/// zstd is one frame at [`ZSTD_LEVEL`]. bzip2 and xz cannot be produced
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

/// gzp's parallel gzip, with its output brought back to the caller's thread: gzp's own writer
/// thread needs a `Send` sink, the caller's output need not be one. Compressed blocks come
/// back through a channel and are written to `out` during the next `write` and at `finish`.
/// What waits in the channel is bounded by gzp's own queues (two blocks per thread), since
/// the caller drains it on every write.
struct ParallelGzip<'w> {
    gz: Option<gzp::par::compress::ParCompress<'static, AdaptiveGzip, BlockSender>>,
    blocks: std::sync::mpsc::Receiver<Vec<u8>>,
    out: &'w mut dyn Write,
}

/// The sink of gzp's writer thread.
struct BlockSender(std::sync::mpsc::Sender<Vec<u8>>);

impl Write for BlockSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> ParallelGzip<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        let (tx, blocks) = std::sync::mpsc::channel();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let gz = gzp::par::compress::ParCompressBuilder::<AdaptiveGzip>::new()
            .num_threads(threads)
            .and_then(|b| b.buffer_size(GZIP_BLOCK))
            .expect("1 MiB blocks and at least one thread are valid")
            .compression_level(flate2::Compression::new(GZIP_LEVEL))
            .from_writer(BlockSender(tx));
        ParallelGzip {
            gz: Some(gz),
            blocks,
            out,
        }
    }

    /// Writes the blocks compressed so far.
    fn drain(&mut self) -> io::Result<()> {
        while let Ok(block) = self.blocks.try_recv() {
            self.out.write_all(&block)?;
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.drain()?;
        let gz = self.gz.as_mut().expect("present until finish");
        gz.write(buf)
    }

    fn finish(mut self) -> io::Result<()> {
        use gzp::ZWriter;
        let mut gz = self.gz.take().expect("present until finish");
        gz.finish().map_err(gzp_error)?;
        drop(gz);
        // gzp's threads are joined: every block is in the channel.
        while let Ok(block) = self.blocks.recv() {
            self.out.write_all(&block)?;
        }
        self.out.flush()
    }
}

impl Drop for ParallelGzip<'_> {
    fn drop(&mut self) {
        // Dropped unfinished (the diff failed): stop gzp's threads. Its own drop would finish
        // and panic on an error; the stream is abandoned anyway.
        if let Some(mut gz) = self.gz.take() {
            use gzp::ZWriter;
            let _ = gz.finish();
        }
    }
}

/// gzp's gzip format (header, footer, CRC-32 combined across blocks) with our choice per
/// block: deflate it, or store it when it looks incompressible.
#[derive(Debug, Clone, Copy)]
struct AdaptiveGzip;

/// Bits of entropy per byte (of the byte histogram) above which a block is stored: random and
/// already-compressed data measure 7.99+, text 4–5, executables 5–6.5.
const STORE_ENTROPY: f64 = 7.95;

/// Shannon entropy of `bytes`' byte histogram, in bits per byte.
fn byte_entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// `input` as deflate stored blocks (at most 65,535 bytes each), the last one final when
/// `is_last`. Starts and ends on a byte boundary, as a sync-flushed deflate block does.
fn stored_blocks(input: &[u8], is_last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 65_535 * 5 + 5);
    let mut chunks = input.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        // An empty block, so that even empty input ends the stream when it is the last.
        out.extend_from_slice(&[u8::from(is_last), 0, 0, 0xff, 0xff]);
        return out;
    }
    while let Some(chunk) = chunks.next() {
        let last = is_last && chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).expect("chunks of at most 65,535 bytes");
        out.push(u8::from(last)); // BFINAL, BTYPE 00 (stored), then padding to the byte
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

impl gzp::FormatSpec for AdaptiveGzip {
    type C = gzp::check::Crc32;
    type Compressor = flate2::Compress;

    const DEFAULT_BUFSIZE: usize = GZIP_BLOCK;

    fn new() -> Self {
        AdaptiveGzip
    }

    fn needs_dict(&self) -> bool {
        true
    }

    fn create_compressor(
        &self,
        level: flate2::Compression,
    ) -> Result<Self::Compressor, gzp::GzpError> {
        Ok(flate2::Compress::new(level, false))
    }

    fn encode(
        &self,
        input: &[u8],
        encoder: &mut Self::Compressor,
        _level: flate2::Compression,
        dict: Option<&bytes::Bytes>,
        is_last: bool,
    ) -> Result<Vec<u8>, gzp::GzpError> {
        if byte_entropy(input) > STORE_ENTROPY {
            return Ok(stored_blocks(input, is_last));
        }
        // Deflate output never exceeds the input by more than 5 bytes per 16 KiB plus a few.
        let mut out = Vec::with_capacity(input.len() + input.len() / 1000 + 64);
        if let Some(dict) = dict {
            encoder.set_dictionary(dict)?;
        }
        let flush = if is_last {
            flate2::FlushCompress::Finish
        } else {
            flate2::FlushCompress::Sync
        };
        encoder.compress_vec(input, &mut out, flush)?;
        if encoder.total_in() != input.len() as u64 {
            return Err(gzp::GzpError::Io(io::Error::other(
                "a deflate block outgrew its buffer",
            )));
        }
        encoder.reset();
        Ok(out)
    }

    fn header(&self, level: flate2::Compression) -> Vec<u8> {
        gzp::deflate::Gzip {}.header(level)
    }

    fn footer(&self, check: &Self::C) -> Vec<u8> {
        gzp::deflate::Gzip {}.footer(check)
    }
}

fn gzp_error(e: gzp::GzpError) -> io::Error {
    match e {
        gzp::GzpError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// Fills `reader`'s buffer (one read, as Go's detection does) and returns the buffered bytes
/// without consuming them.
pub(crate) fn peek<R: Read>(reader: &mut BufReader<R>) -> io::Result<&[u8]> {
    reader.fill_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerstore_testsupport::incompressible;
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

    fn encode(compression: Compression, plain: &[u8], write_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = encoder(&mut out, compression).expect("encoder");
        for chunk in plain.chunks(write_size.max(1)) {
            enc.write_all(chunk).expect("write");
        }
        enc.finish().expect("finish");
        out
    }

    #[test]
    fn the_parallel_gzip_encoder_makes_one_member_that_gives_back_the_input() {
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("line {i} of a layer\n").into_bytes())
            .collect();
        let mut mixed = incompressible(7, 3 << 20);
        mixed.extend_from_slice(&text);
        mixed.extend(incompressible(9, 100_000));
        for (plain, write_size) in [
            (Vec::new(), 1),
            (b"tiny".to_vec(), 1),
            (text.clone(), 4096),
            (mixed.clone(), 1 << 20),
            (mixed.clone(), 333_333),
        ] {
            let gz = encode(Compression::Gzip, &plain, write_size);
            assert_eq!(detect(&gz), Compression::Gzip);
            // One member: the single-member decoder reads it all.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .expect("gunzip");
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
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let (found, mut reader) = decompress(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3][..]).expect("decoder");
        assert_eq!(found, Compression::Gzip);
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
    }
}
