//! The external tools the fixture builders and the bench run (GNU tar, gzip, zstd, cp), finding
//! them on `PATH`, file hashes, and the regular files of a tree.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command to its end in the C locale, without the environment variables that change
/// what tar, gzip and zstd write; fails unless it exits 0, with its stderr when that was not
/// redirected.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .env("LC_ALL", "C")
        .env_remove("TAR_OPTIONS")
        .env_remove("GZIP")
        .env_remove("ZSTD_CLEVEL")
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `compressor… plain > out`, through a temp file beside `out` (`<out>.tmp`).
pub fn compress(compressor: &[&str], plain: &Path, out: &Path) -> Result<(), String> {
    let (program, args) = compressor.split_first().expect("a program");
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Err(e) = run(Command::new(program).args(args).arg(plain).stdout(file)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

/// sha256 (hex) of a file.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let digest = layerstore_model::Sha256Hasher::digest_reader(&mut file)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(digest.hex().to_string())
}

/// `program` as found on `PATH` (the first directory holding a file of that name).
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The regular files beneath `dir`, recursively (an explicit stack), sorted by path; symbolic
/// links are not followed.
pub fn regular_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn failures_name_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert!(err.contains("oops") && err.contains("\"sh\""), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        fs::write(&plain, b"hello hello hello").expect("write");
        let out = dir.path().join("plain.gz");
        compress(&["gzip", "-9", "-n", "-c"], &plain, &out).expect("gzip");
        assert_eq!(&fs::read(&out).expect("read")[..2], b"\x1f\x8b");
        assert!(compress(&["false"], &plain, &dir.path().join("x")).is_err());
        assert!(!dir.path().join("x.tmp").exists(), "temp file removed");
        // The temp file of `a.tar.gz` is not the one a tar writer uses for `a.tar`.
        compress(&["gzip", "-c"], &plain, &dir.path().join("a.tar.gz")).expect("gzip");
        assert!(dir.path().join("a.tar.gz").is_file());
    }
}
