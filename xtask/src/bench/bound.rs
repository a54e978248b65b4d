//! `cargo xtask bench-bound KIND FILE`: one library's work alone, as a process the bench times
//! beside the rows it bounds. KIND is `gunzip` (the archive crate's inflate: ISA-L where the
//! build has it, else flate2 with zlib-rs; [`GUNZIP_LABEL`] names it), `unzstd` (the zstd crate) or `sha256` (sha2, reading FILE included); the output is
//! discarded. `write-alone FILE OUT` writes FILE's length into OUT (see [`write_alone`]: the
//! writing half of diffing a layer of big files); `copy-alone threads|range DIR OUT` copies a
//! layer's files into OUT one of two ways (the `copy` module: the bench takes the faster as
//! the bound of that diff). `sha256-hash-only` hashes FILE too but times only the hashing, itself, and prints
//! that time ([`HashOnly`]): an import hashes bytes it already holds (the blob it read for the
//! decoder, the tar stream the decoder wrote), so the read is not part of that work. The
//! dependencies are built optimised even in the dev profile (the workspace's
//! `[profile.dev.package."*"]`), so the debug xtask binary runs them at release speed.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::time::{Duration, Instant};

use sha2::Digest as _;

mod copy;

/// What the `gunzip` bound runs: the inflate layerstore-archive uses in this build.
pub const GUNZIP_LABEL: &str = if layerstore_igzip::AVAILABLE {
    "ISA-L inflate alone"
} else {
    "zlib-rs inflate alone"
};

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

/// What `sha256-hash-only` measured of its own hashing: the reads between chunks left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashOnly {
    /// Wall time spent inside the hasher.
    pub(crate) wall: Duration,
    /// CPU time of the hashing thread spent inside the hasher.
    pub(crate) cpu: Duration,
}

impl HashOnly {
    const PREFIX: &'static str = "sha256-hash-only";

    /// The line the bound prints on stdout for the bench to read back.
    fn line(self) -> String {
        format!(
            "{} wall_ns={} cpu_ns={}",
            Self::PREFIX,
            self.wall.as_nanos(),
            self.cpu.as_nanos()
        )
    }

    /// Reads back what [`HashOnly::line`] printed (the bound's whole stdout).
    pub(crate) fn parse(stdout: &str) -> Option<HashOnly> {
        let line = stdout.lines().find(|l| l.starts_with(Self::PREFIX))?;
        let field = |name: &str| -> Option<Duration> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))?
                .parse::<u64>()
                .ok()
                .map(Duration::from_nanos)
        };
        Some(HashOnly {
            wall: field("wall_ns")?,
            cpu: field("cpu_ns")?,
        })
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// SHA-256 of `input`, timing only the hasher's calls (each chunk is hashed right after its
/// read, still in the cache, as the import hashes a chunk it has just read or decoded).
fn sha256_hash_only(input: impl Read) -> io::Result<HashOnly> {
    let mut hasher = sha2::Sha256::new();
    let mut spent = HashOnly {
        wall: Duration::ZERO,
        cpu: Duration::ZERO,
    };
    drain(input, |chunk| {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        hasher.update(chunk);
        spent.cpu += thread_cpu().saturating_sub(cpu);
        spent.wall += wall.elapsed();
    })?;
    std::hint::black_box(hasher.finalize());
    Ok(spent)
}

/// `write-alone FILE OUT`: writes as many bytes as FILE holds into a new file OUT, from one
/// 1 MiB buffer (FILE's first MiB), in [`CHUNK`]s, without reading the rest of FILE. That is
/// the kernel's part of a diff's output alone: page allocation and the copy into the page
/// cache, which no user-space work can take off the thread that writes. OUT is left for the
/// caller to remove (untimed).
fn write_alone(input: &str, out: &str) -> Result<(), String> {
    let mut file = File::open(input).map_err(|e| format!("open {input}: {e}"))?;
    let mut remaining = file
        .metadata()
        .map_err(|e| format!("stat {input}: {e}"))?
        .len();
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(format!("read {input}: {e}")),
        }
    }
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("create {out}: {e}"))?;
    while remaining > 0 {
        let n = usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK));
        io::Write::write_all(&mut output, &buf[..n]).map_err(|e| format!("write {out}: {e}"))?;
        remaining -= n as u64;
    }
    Ok(())
}

/// The kind that copies a layer's files into a diff's output one way (see the `copy` module).
pub(crate) const COPY_ALONE: &str = "copy-alone";
/// What `copy-alone` prints where its way does not apply (`copy_file_range(2)` across two
/// filesystems).
pub(crate) const COPY_WAY_UNAVAILABLE: &str = "unavailable";
/// The ways `copy-alone` copies.
pub(crate) use copy::WAYS as COPY_WAYS;

/// Runs KIND on FILE; prints nothing but errors (`sha256-hash-only` its [`HashOnly`] line, `copy-alone` its way and bytes).
pub fn run(args: &[String]) -> Result<(), String> {
    match args {
        [kind, input, out] if kind == "write-alone" => return write_alone(input, out),
        [kind, way, dir, out] if kind == COPY_ALONE => {
            let copied =
                copy::copy_one_way(way, std::path::Path::new(dir), std::path::Path::new(out))?;
            // The bench skips the run of a way that does not apply.
            match copied {
                Some(bytes) => println!("{COPY_ALONE} {way} bytes={bytes}"),
                None => println!("{COPY_ALONE} {way} {COPY_WAY_UNAVAILABLE}"),
            }
            return Ok(());
        }
        _ => {}
    }
    let [kind, path] = args else {
        return Err(
            "usage: cargo xtask bench-bound gunzip|unzstd|sha256|sha256-hash-only FILE, write-alone FILE OUT or copy-alone threads|range DIR OUT".into(),
        );
    };
    let file = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let file = BufReader::with_capacity(CHUNK, file);
    let result = match kind.as_str() {
        "gunzip" if layerstore_igzip::AVAILABLE => {
            let decoder =
                layerstore_igzip::MultiGzDecoder::new(file).map_err(|e| format!("{path}: {e}"))?;
            drain(decoder, |_| {})
        }
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
        "sha256-hash-only" => {
            let spent = sha256_hash_only(file).map_err(|e| format!("{kind} {path}: {e}"))?;
            println!("{}", spent.line());
            return Ok(());
        }
        other => {
            return Err(format!(
                "unknown bound `{other}` (gunzip, unzstd, sha256, sha256-hash-only)"
            ));
        }
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

    #[test]
    fn write_alone_writes_as_many_bytes_as_the_input_holds_into_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.tar");
        let len = 2 * CHUNK + 5;
        std::fs::write(&input, vec![7u8; len]).expect("write");
        let out = dir.path().join("out.tar");
        let s = |p: &std::path::Path| p.display().to_string();
        run(&["write-alone".into(), s(&input), s(&out)]).expect("write-alone");
        assert_eq!(std::fs::metadata(&out).expect("out").len(), len as u64);
        // OUT must be new: an existing file is not overwritten (a stale one would hide pages).
        let err = run(&["write-alone".into(), s(&input), s(&out)]).expect_err("exists");
        assert!(err.contains("out.tar"), "{err}");
    }

    #[test]
    fn hash_only_times_the_hashing_and_its_line_reads_back() {
        let data: Vec<u8> = (0..5 * CHUNK).map(|i| (i % 253) as u8).collect();
        let spent = sha256_hash_only(&data[..]).expect("in memory");
        assert!(spent.wall > Duration::ZERO, "{spent:?}");
        let printed = format!("noise\n{}\n", spent.line());
        assert_eq!(HashOnly::parse(&printed), Some(spent));
        // Another bound's line is not this one's.
        assert_eq!(HashOnly::parse("copy-alone wall_ns=1 cpu_ns=1"), None);
        let odd = HashOnly {
            wall: Duration::from_nanos(1_234_567_891),
            cpu: Duration::from_nanos(7),
        };
        assert_eq!(HashOnly::parse(&odd.line()), Some(odd));
        assert_eq!(HashOnly::parse("sha256-hash-only wall_ns=x cpu_ns=1"), None);
        assert_eq!(HashOnly::parse(""), None);
        // Run as the bench runs it: the file's bytes are hashed, the command succeeds.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.tar");
        std::fs::write(&path, &data).expect("write");
        run(&["sha256-hash-only".into(), path.display().to_string()]).expect("hash-only");
        let err = run(&["sha256-hash-only".into(), "/nonexistent/b.tar".into()])
            .expect_err("no such file");
        assert!(err.contains("b.tar"), "{err}");
    }
}
