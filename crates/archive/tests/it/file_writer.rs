//! Small regular files are finished (content, owner, mode, times) on a second thread: later
//! entries that touch them, and errors on both threads, must give what a one-thread extraction
//! in archive order gives.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;
use layerstore_archive::{ApplyOptions, Error};
use layerstore_testsupport::{Capability, require_or_skip};

/// A regular file with its own mode and mtime (octal fields of the hand-made header).
fn file_with(tar: &mut RawTar, name: &[u8], content: &[u8], mode: u32, mtime: u64) {
    let mut h = header(name, b'0', content.len() as u64, b"", mode);
    let digits = format!("{mtime:011o}");
    h[136..147].copy_from_slice(digits.as_bytes());
    h[147] = 0;
    set_owner(&mut h, 0, 0); // recomputes the checksum
    tar.raw(h, content);
}

fn body(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(i % 50 + 1).into_bytes()
}

#[test]
fn later_entries_touching_files_being_finished_apply_in_archive_order() {
    require_or_skip!(Capability::Root);
    let mut tar = RawTar::new();
    tar.dir(b"many/");
    // More files than one batch holds, so several batches are in flight.
    for i in 0..300 {
        let name = format!("many/f{i:03}");
        file_with(&mut tar, name.as_bytes(), &body(i), 0o640, 1_000 + i as u64);
    }
    // Larger than the worker takes: written inline, between queued files.
    file_with(&mut tar, b"many/big", &vec![7u8; 300 * 1024], 0o600, 5);
    file_with(&mut tar, b"many/setuid", b"#!", 0o4755, 6);
    // A hardlink to a queued file shares its inode, so its final content and metadata.
    tar.hardlink(b"link", b"many/f000");
    // A whiteout of a queued file removes it.
    tar.file(b"many/.wh.f001", b"");
    // A queued file replaced by a directory through a symlink to its directory.
    tar.symlink(b"alias", b"many");
    tar.dir(b"alias/f002/");
    let archive = tar.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    let (report, _) = apply_bytes(&target, &archive, &ApplyOptions::default()).expect("apply");
    assert_eq!(report.entries, 1 + 300 + 2 + 4);

    for i in 3..300 {
        let path = target.join(format!("many/f{i:03}"));
        assert_eq!(std::fs::read(&path).expect("read"), body(i), "{i}");
        let md = std::fs::symlink_metadata(&path).expect("lstat");
        assert_eq!(md.permissions().mode() & 0o7777, 0o640, "{i}");
        assert_eq!(md.mtime(), 1_000 + i as i64, "{i}");
    }
    let link = std::fs::symlink_metadata(target.join("link")).expect("lstat link");
    assert_eq!(std::fs::read(target.join("link")).expect("read"), body(0));
    assert_eq!(
        (link.mtime(), link.mode() & 0o7777, link.nlink()),
        (1_000, 0o640, 2)
    );
    assert!(!target.join("many/f001").exists());
    assert!(target.join("many/f002").is_dir());
    let setuid = std::fs::metadata(target.join("many/setuid")).expect("stat");
    assert_eq!(
        setuid.mode() & 0o7777,
        0o4755,
        "chmod after chown keeps setuid"
    );
    assert_eq!(
        std::fs::read(target.join("many/big")).expect("read").len(),
        300 * 1024
    );
    // Directory times are set after every file is finished.
    let many = std::fs::metadata(target.join("many")).expect("stat");
    assert_eq!(many.mtime(), 1_700_000_000);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(size_kib: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("runs mount");
        assert!(status.success(), "mount tmpfs");
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn an_earlier_files_write_error_wins_over_a_later_entrys_error() {
    require_or_skip!(Capability::Root);
    let fs = SmallFs::new(1024);
    let mut tar = RawTar::new();
    // 20 × 200 KiB cannot fit in 1 MiB: a write on the worker fails with ENOSPC...
    for i in 0..20 {
        tar.file(format!("f{i:02}").as_bytes(), &vec![1u8; 200 * 1024]);
    }
    // ...before the extracting thread reaches an entry that fails on its own.
    tar.raw(header(b"../escape", b'0', 0, b"", 0o644), b"");
    let archive = tar.finish();
    let err = apply_bytes(&fs.path().join("t"), &archive, &ApplyOptions::default())
        .expect_err("the filesystem is full");
    match &err {
        Error::Entry { entry, op, source } => {
            assert!(entry.starts_with('f'), "{err}");
            assert_eq!(*op, "write", "{err}");
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {err}");
        }
        other => panic!("want the full filesystem's error, got {other}"),
    }
}

/// A directory entry owned by `uid:gid` with `mode` (setgid included).
fn dir_owned(tar: &mut RawTar, name: &[u8], mode: u32, uid: u64, gid: u64) {
    let mut h = header(name, b'5', 0, b"", mode);
    set_owner(&mut h, uid, gid);
    tar.raw(h, b"");
}

/// A regular file owned by `uid:gid`.
fn file_owned(tar: &mut RawTar, name: &[u8], content: &[u8], uid: u64, gid: u64) {
    let mut h = header(name, b'0', content.len() as u64, b"", 0o644);
    set_owner(&mut h, uid, gid);
    tar.raw(h, content);
}

/// The chown of a new file is skipped only when it is provably a no-op (the header's owner is
/// ours and the parent's group is ours): a file owned by us in a setgid directory of another
/// group, or beneath a root entry that just made the target setgid, still gets our group.
#[test]
fn files_get_the_headers_group_beneath_setgid_directories() {
    require_or_skip!(Capability::Root);
    let mut tar = RawTar::new();
    // The target's fd is the cached parent before the root entry changes its group.
    file_owned(&mut tar, b"before", b"x", 0, 0);
    dir_owned(&mut tar, b"./", 0o2755, 0, 4321);
    file_owned(&mut tar, b"after", b"x", 0, 0);
    dir_owned(&mut tar, b"sg/", 0o2775, 0, 4321);
    file_owned(&mut tar, b"sg/small", b"small", 0, 0);
    file_owned(&mut tar, b"sg/big", &vec![1u8; 300 * 1024], 0, 0);
    file_owned(&mut tar, b"sg/theirs", b"t", 0, 4321);
    file_owned(&mut tar, b"sg/other", b"o", 7, 8);
    dir_owned(&mut tar, b"plain/", 0o755, 0, 0);
    file_owned(&mut tar, b"plain/ours", b"o", 0, 0);
    let archive = tar.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    apply_bytes(&target, &archive, &ApplyOptions::default()).expect("apply");
    let owner = |name: &str| {
        let md = std::fs::symlink_metadata(target.join(name)).expect("lstat");
        (md.uid(), md.gid())
    };
    assert_eq!(owner("before"), (0, 0));
    assert_eq!(owner("after"), (0, 0));
    assert_eq!(owner("sg/small"), (0, 0));
    assert_eq!(owner("sg/big"), (0, 0));
    assert_eq!(owner("sg/theirs"), (0, 4321));
    assert_eq!(owner("sg/other"), (7, 8));
    assert_eq!(owner("plain/ours"), (0, 0));
    assert_eq!(owner("sg"), (0, 4321));
}

/// A directory with its own mtime (octal field of the hand-made header).
fn dir_with_mtime(tar: &mut RawTar, name: &[u8], mtime: u64) {
    let mut h = header(name, b'5', 0, b"", 0o755);
    let digits = format!("{mtime:011o}");
    h[136..147].copy_from_slice(digits.as_bytes());
    h[147] = 0;
    set_owner(&mut h, 0, 0); // recomputes the checksum
    tar.raw(h, b"");
}

#[test]
fn many_directories_get_their_times_after_every_file_whichever_thread_sets_them() {
    // More directories than one thread sets (two share them), each with files created in it
    // after its own entry and subdirectories of its own, so any time set too early is lost.
    let mut tar = RawTar::new();
    let count = 700;
    for i in 0..count {
        dir_with_mtime(&mut tar, format!("d{i:03}/").as_bytes(), 10_000 + i as u64);
        dir_with_mtime(
            &mut tar,
            format!("d{i:03}/sub/").as_bytes(),
            20_000 + i as u64,
        );
        file_with(
            &mut tar,
            format!("d{i:03}/sub/f").as_bytes(),
            &body(i),
            0o644,
            7,
        );
        file_with(
            &mut tar,
            format!("d{i:03}/f").as_bytes(),
            &body(i),
            0o644,
            7,
        );
    }
    // A later whiteout removes one directory: its time is skipped, not an error.
    tar.file(b".wh.d001", b"");
    let archive = tar.finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    apply_bytes(&target, &archive, &ApplyOptions::default()).expect("apply");
    assert!(!target.join("d001").exists());
    for i in (0..count).filter(|&i| i != 1) {
        let top = std::fs::metadata(target.join(format!("d{i:03}"))).expect("stat");
        let sub = std::fs::metadata(target.join(format!("d{i:03}/sub"))).expect("stat");
        assert_eq!(
            (top.mtime(), sub.mtime()),
            (10_000 + i as i64, 20_000 + i as i64),
            "{i}"
        );
    }
}
