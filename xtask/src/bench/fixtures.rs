//! The layer tarballs the benchmarks import: made once by `shared/bench/make-fixtures.sh`
//! (a Debian rootfs from debootstrap, an npm tree, a 1 GiB file), or, for the two synthetic
//! ones, here when the script cannot run.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One fixture: a tarball, maybe compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixture {
    /// File name in the fixtures directory.
    pub name: &'static str,
}

/// Every fixture the import section knows, in report order.
pub const ALL: &[Fixture] = &[
    Fixture { name: "rootfs.tar" },
    Fixture {
        name: "rootfs.tar.gz",
    },
    Fixture {
        name: "rootfs.tar.zst",
    },
    Fixture {
        name: "smallfiles.tar",
    },
    Fixture {
        name: "bigfile.tar",
    },
    Fixture {
        name: "bigfile.tar.gz",
    },
    Fixture {
        name: "compressible.tar",
    },
    Fixture {
        name: "incompressible.tar",
    },
];

/// The fixtures whose diff is also timed gzip-compressed (`diff -c`).
pub const COMPRESSED_DIFF: &[&str] = &["compressible.tar", "incompressible.tar"];

/// The child layer of rootfs.tar (whiteouts, opaque dir), applied on the vfs child.
pub const CHILD_LAYER: &str = "layer2.tar";

impl Fixture {
    /// The fixture called `name`, if it is one of [`ALL`].
    pub fn named(name: &str) -> Option<Fixture> {
        ALL.iter().copied().find(|f| f.name == name)
    }

    /// The uncompressed tarball with the same content (itself if not compressed).
    pub fn plain(self) -> &'static str {
        self.name
            .strip_suffix(".gz")
            .or_else(|| self.name.strip_suffix(".zst"))
            .unwrap_or(self.name)
    }

    /// The decompressor command line that writes the plain tar on stdout, if compressed.
    pub fn decompressor(self) -> Option<&'static [&'static str]> {
        if self.name.ends_with(".gz") {
            Some(&["gzip", "-dc"])
        } else if self.name.ends_with(".zst") {
            Some(&["zstd", "-dcq"])
        } else {
            None
        }
    }
}

/// The shared folder (bench scripts, docs): `$LAYERSTORE_SHARED`, else the repo's sibling.
pub fn shared_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("LAYERSTORE_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => workspace.parent().unwrap_or(workspace).join("shared"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Makes sure the fixtures in `wanted` exist in `dir` (and their plain versions, for the
/// physical reference); returns the reasons for those that could not be made.
pub fn ensure(dir: &Path, shared: &Path, wanted: &[Fixture]) -> Vec<(Fixture, String)> {
    let missing = |f: &Fixture| !dir.join(f.name).is_file() || !dir.join(f.plain()).is_file();
    let mut script_note = String::new();
    if wanted.iter().any(missing) || !dir.join(CHILD_LAYER).is_file() {
        let script = shared.join("bench/make-fixtures.sh");
        if !script.is_file() {
            script_note = format!("{} not found", script.display());
        } else if !on_path("debootstrap") {
            // Without debootstrap the script copies this machine's /usr (~5 GB) instead.
            script_note = "debootstrap is not installed (apt-get install debootstrap)".into();
        } else {
            eprintln!(
                "bench: building fixtures with {} {} (~5 min; needs the Debian mirror and npm)",
                script.display(),
                dir.display()
            );
            match Command::new(&script).arg(dir).status() {
                Ok(s) if s.success() => {}
                Ok(s) => script_note = format!("make-fixtures.sh failed ({s})"),
                Err(e) => script_note = format!("cannot run make-fixtures.sh: {e}"),
            }
        }
    }
    let mut unavailable = Vec::new();
    for f in wanted {
        if !missing(f) {
            continue;
        }
        let made = match f.name {
            "smallfiles.tar" => make_synthetic(dir, f.name, write_small_files),
            "bigfile.tar" => make_synthetic(dir, f.name, write_big_file),
            "compressible.tar" => make_synthetic(dir, f.name, write_compressible),
            "incompressible.tar" => make_synthetic(dir, f.name, write_incompressible),
            _ => Err(if script_note.is_empty() {
                "make-fixtures.sh did not make it".to_owned()
            } else {
                script_note.clone()
            }),
        };
        if let Err(reason) = made {
            unavailable.push((*f, reason));
        }
    }
    unavailable
}

/// Where a fixture came from (make-fixtures.sh writes `<stem>.source`).
pub fn source(dir: &Path, fixture: &str) -> String {
    let stem = fixture.split('.').next().unwrap_or(fixture);
    fs::read_to_string(dir.join(format!("{stem}.source")))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| match stem {
            "bigfile" => "make-fixtures.sh: 1 GiB of AES-CTR keystream (incompressible)".to_owned(),
            "layer2" => "make-fixtures.sh: a child of rootfs.tar with whiteouts and an opaque dir"
                .to_owned(),
            _ => "make-fixtures.sh".to_owned(),
        })
}

fn make_synthetic(
    dir: &Path,
    name: &str,
    write: fn(&mut tar::Builder<BufWriter<File>>) -> io::Result<String>,
) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    eprintln!("bench: generating synthetic {name}");
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| -> io::Result<String> {
        let mut builder = tar::Builder::new(BufWriter::new(File::create(&tmp)?));
        let what = write(&mut builder)?;
        builder.into_inner()?.flush()?;
        fs::rename(&tmp, dir.join(name))?;
        Ok(what)
    })();
    match result {
        Ok(what) => {
            let stem = name.split('.').next().unwrap_or(name);
            fs::write(dir.join(format!("{stem}.source")), what)
                .map_err(|e| format!("{}: {e}", dir.display()))
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(format!("generating {name}: {e}"))
        }
    }
}

/// Random bytes from the kernel, as a reader.
struct RandomBytes {
    left: u64,
}

impl Read for RandomBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let filled =
            rustix::rand::getrandom(&mut buf[..want], rustix::rand::GetRandomFlags::empty())?;
        self.left -= filled as u64;
        Ok(filled)
    }
}

fn header(path: &str, size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    // Paths here are short ASCII; set_path only fails on over-long or non-UTF-8 names.
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

/// ~50,000 entries: 1,000 directories of 50 files, 0–8 KiB of text each.
fn write_small_files(builder: &mut tar::Builder<BufWriter<File>>) -> io::Result<String> {
    let mut sizes = vec![0u8; 2 * 50_000];
    RandomBytes {
        left: sizes.len() as u64,
    }
    .read_exact(&mut sizes)?;
    let filler = b"export function noop() { return undefined; } // lsbench synthetic source file\n";
    let body: Vec<u8> = filler.iter().copied().cycle().take(8192).collect();
    for d in 0..1000 {
        let dir = format!("node_modules/pkg{d:04}/");
        builder.append(
            &header(&dir, 0, tar::EntryType::Directory, 0o755),
            io::empty(),
        )?;
        for f in 0..50 {
            let i = d * 50 + f;
            let size = usize::from(u16::from_le_bytes([sizes[2 * i], sizes[2 * i + 1]]) % 8192);
            let path = format!("{dir}file{f:02}.js");
            let h = header(&path, size as u64, tar::EntryType::Regular, 0o644);
            builder.append(&h, &body[..size])?;
        }
    }
    Ok("synthetic (cargo xtask bench): 1,000 dirs x 50 files of 0-8 KiB, GNU tar".into())
}

/// One 1 GiB file of random bytes.
fn write_big_file(builder: &mut tar::Builder<BufWriter<File>>) -> io::Result<String> {
    const SIZE: u64 = 1 << 30;
    builder.append(
        &header("data/", 0, tar::EntryType::Directory, 0o755),
        io::empty(),
    )?;
    let h = header("data/bigfile.bin", SIZE, tar::EntryType::Regular, 0o644);
    builder.append(&h, RandomBytes { left: SIZE })?;
    Ok("synthetic (cargo xtask bench): one 1 GiB file of getrandom bytes, GNU tar".into())
}

/// 16 files of 10 MiB of numbered text lines (160 MiB, gzip -6 keeps ~4%).
fn write_compressible(builder: &mut tar::Builder<BufWriter<File>>) -> io::Result<String> {
    let text = numbered_text(10 << 20);
    for i in 0..16 {
        let h = header(
            &format!("text/file{i:02}.txt"),
            text.len() as u64,
            tar::EntryType::Regular,
            0o644,
        );
        builder.append(&h, &text[..])?;
    }
    Ok("synthetic (cargo xtask bench): 16 x 10 MiB of numbered text lines, GNU tar".into())
}

/// 150 MiB of random bytes and 10 MiB of text (160 MiB, nearly incompressible).
fn write_incompressible(builder: &mut tar::Builder<BufWriter<File>>) -> io::Result<String> {
    const RANDOM: u64 = 150 << 20;
    let h = header("data/random.bin", RANDOM, tar::EntryType::Regular, 0o644);
    builder.append(&h, RandomBytes { left: RANDOM })?;
    let text = numbered_text(10 << 20);
    let h = header(
        "data/text.txt",
        text.len() as u64,
        tar::EntryType::Regular,
        0o644,
    );
    builder.append(&h, &text[..])?;
    Ok(
        "synthetic (cargo xtask bench): 150 MiB of getrandom bytes + 10 MiB of text, GNU tar"
            .into(),
    )
}

/// `len` bytes of lines `line N of a synthetic text layer`.
fn numbered_text(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while text.len() < len {
        text.extend_from_slice(format!("line {i} of a synthetic text layer\n").as_bytes());
        i += 1;
    }
    text.truncate(len);
    text
}

/// sha256 (hex) of a file.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_fixtures_map_to_their_plain_tar_and_decompressor() {
        let gz = Fixture::named("rootfs.tar.gz").expect("known");
        assert_eq!(gz.plain(), "rootfs.tar");
        assert_eq!(gz.decompressor(), Some(&["gzip", "-dc"][..]));
        let zst = Fixture::named("rootfs.tar.zst").expect("known");
        assert_eq!(zst.decompressor(), Some(&["zstd", "-dcq"][..]));
        let plain = Fixture::named("bigfile.tar").expect("known");
        assert_eq!(plain.plain(), "bigfile.tar");
        assert_eq!(plain.decompressor(), None);
        assert_eq!(Fixture::named("nope.tar"), None);
    }

    #[test]
    fn synthetic_small_files_tar_lists_fifty_thousand_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        make_synthetic(dir.path(), "smallfiles.tar", write_small_files).expect("made");
        let mut archive =
            tar::Archive::new(File::open(dir.path().join("smallfiles.tar")).expect("open"));
        let mut files = 0;
        let mut dirs = 0;
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            match entry.header().entry_type() {
                tar::EntryType::Regular => files += 1,
                tar::EntryType::Directory => dirs += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((files, dirs), (50_000, 1_000));
        assert!(source(dir.path(), "smallfiles.tar").starts_with("synthetic"));
    }

    #[test]
    fn random_bytes_stop_at_the_requested_size() {
        let mut bytes = Vec::new();
        RandomBytes { left: 100_003 }
            .read_to_end(&mut bytes)
            .expect("getrandom works");
        assert_eq!(bytes.len(), 100_003);
        // Incompressible data has every byte value; zeros would mean an unfilled buffer.
        let distinct: std::collections::HashSet<u8> = bytes.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn sha256_of_a_known_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
