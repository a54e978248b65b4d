//! Helpers shared by the vfs integration tests: exact tree snapshots and GNU tar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(unused_imports)] // each test file uses its own subset
pub use layerstore_testsupport::tree::{Node, fixture_tar, gnu_extract, snapshot, whole_seconds};

/// Runs GNU tar with `args`, panicking with its stderr on failure.
pub fn gnu_tar(args: &[&std::ffi::OsStr]) {
    let out = Command::new("tar").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies a layer tarball onto `dir` by hand, the way the layer semantics say: whiteouts
/// (`.wh.X` deletes X, `.wh..wh..opq` empties the directory of lower content) first, then
/// GNU tar extracts every other entry.
pub fn apply_by_hand(tarball: &Path, dir: &Path) {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(tarball)
        .output()
        .unwrap();
    assert!(out.status.success());
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let path = Path::new(line);
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            for entry in std::fs::read_dir(&parent).unwrap() {
                let p = entry.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        } else if let Some(victim) = name.strip_prefix(".wh.") {
            let p = parent.join(victim);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
                Ok(_) => std::fs::remove_file(&p).unwrap(),
                Err(_) => {}
            }
        }
    }
    gnu_tar(&[
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--numeric-owner".as_ref(),
        "--same-owner".as_ref(),
        "--exclude=.wh.*".as_ref(),
        "-xpf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        dir.as_os_str(),
    ]);
}

/// Unpacks the Go tool's vfs store into `into`; returns the graph root (`into/root-vfs`).
pub fn unpack_go_store(into: &Path) -> PathBuf {
    let tarball = layerstore_testsupport::go_fixtures().join("store-vfs.tar.gz");
    std::fs::create_dir_all(into).unwrap();
    gnu_tar(&[
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--numeric-owner".as_ref(),
        "-xzpf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        into.as_os_str(),
    ]);
    into.join("root-vfs")
}

/// `layers-vfs.txt`: tarball name → layer ID, for the lines `<name> <id> ok`/`<id> parent …`.
pub fn go_layer_ids() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(layerstore_testsupport::go_fixtures().join("layers-vfs.txt"))
            .unwrap();
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let id = words.next()?;
            (id.len() == 64 || id.starts_with("fixture-id-"))
                .then(|| (name.to_string(), id.to_string()))
        })
        .collect()
}
