//! `cargo xtask bench-bound KIND FILE`: one library's work alone, as a process the bench times
//! beside the rows it bounds. KIND is `gunzip` (flate2 with zlib-rs, the archive crate's
//! inflate), `unzstd` (the zstd crate) or `sha256` (sha2); the output is discarded. The
//! dependencies are built optimised even in the dev profile (the workspace's
//! `[profile.dev.package."*"]`), so the debug xtask binary runs them at release speed.

use std::fs::File;
use std::io::{self, BufReader, Read};

use sha2::Digest as _;

/// Bytes per read: what the import's reader thread uses.
const CHUNK: usize = 1 << 20;

/// Reads `input` to its end in [`CHUNK`]s, feeding each chunk to `sink`; returns the byte count.
fn drain(mut input: impl Read, mut sink: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        sink(&buf[..n]);
        total += n as u64;
    }
}

/// Runs KIND on FILE; prints nothing but errors.
pub fn run(args: &[String]) -> Result<(), String> {
    let [kind, path] = args else {
        return Err("usage: cargo xtask bench-bound gunzip|unzstd|sha256 FILE".into());
    };
    let file = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let file = BufReader::with_capacity(CHUNK, file);
    let result = match kind.as_str() {
        "gunzip" => drain(flate2::read::MultiGzDecoder::new(file), |_| {}),
        "unzstd" => {
            let decoder = zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|e| format!("{path}: {e}"))?;
            drain(decoder, |_| {})
        }
        "sha256" => {
            let mut hasher = sha2::Sha256::new();
            let n = drain(file, |chunk| hasher.update(chunk));
            std::hint::black_box(hasher.finalize());
            n
        }
        other => return Err(format!("unknown bound `{other}` (gunzip, unzstd, sha256)")),
    };
    result
        .map(|_| ())
        .map_err(|e| format!("{kind} {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn each_kind_reads_its_input_to_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let plain = dir.path().join("a.tar");
        std::fs::write(&plain, &data).expect("write");
        let gz = dir.path().join("a.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        let zst = dir.path().join("a.tar.zst");
        std::fs::write(&zst, zstd::encode_all(&data[..], 1).expect("zstd")).expect("write");
        let s = |p: &std::path::Path| p.display().to_string();
        for (kind, path) in [("gunzip", &gz), ("unzstd", &zst), ("sha256", &plain)] {
            run(&[kind.into(), s(path)]).expect(kind);
        }
        // Drained, not just opened: a corrupt stream fails.
        let err = run(&["gunzip".into(), s(&plain)]).expect_err("not gzip");
        assert!(err.contains("a.tar"), "{err}");
        assert_eq!(
            drain(&data[..], |_| {}).expect("in memory"),
            data.len() as u64
        );
        assert!(run(&["lz4".into(), s(&plain)]).is_err());
    }
}
