//! The shortcuts of the copy, each against the plain way: two threads (the walker and the
//! file worker) against one — same tree, hardlinks split across threads still hardlinks,
//! directory times set after their contents, the first error reported with its path; no hole
//! search in dense files (sparse files stay sparse); files created with their final mode and
//! owner when nothing would change them (set-ID bits, capabilities, a set-group-ID
//! destination).

use crate::common;

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::copy::{CopyOptions, CopyStats, copy_tree};

const THREADED: CopyOptions = CopyOptions {
    ignore_chown_errors: false,
    no_reflink: true,
    single_thread: false,
};
const SINGLE: CopyOptions = CopyOptions {
    single_thread: true,
    ..THREADED
};

fn set_times(path: &Path, secs: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 123_456_789,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

const DIRS: usize = 12;
const FILES: usize = 30;

/// `DIRS` directories of `FILES` files each (more than the worker's queue holds, so both threads
/// copy files), every 7th file also linked into the next directory and the first into the
/// top one, modes the umask would spoil or `chown` would clear, `user.*` attributes, symlinks,
/// and directory times set last.
fn wide_tree(root: &Path) {
    let modes = [
        0o644, 0o755, 0o666, 0o777, 0o600, 0o444, 0o440, 0o4755, 0o2755, 0o1755,
    ];
    std::fs::create_dir(root).unwrap();
    let mut dirs = Vec::new();
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES {
            let path = dir.join(format!("f{f:02}"));
            std::fs::write(&path, format!("{d}/{f}").repeat(f + 1)).unwrap();
            if f % 11 == 0 {
                layerstore_driver::xattr::set_at(
                    layerstore_driver::tree::open_dir(&dir).unwrap(),
                    &std::ffi::CString::new(format!("f{f:02}")).unwrap(),
                    c"user.n",
                    format!("{d}.{f}").as_bytes(),
                )
                .unwrap();
            }
            let mode = modes[(d + f) % modes.len()];
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            if f % 7 == 0 {
                let next = root.join(format!("d{:02}", (d + 1) % DIRS));
                std::fs::create_dir_all(&next).unwrap();
                std::fs::hard_link(&path, next.join(format!("link-{d}-{f}"))).unwrap();
            }
            if f == 0 {
                std::fs::hard_link(&path, root.join(format!("top-{d}"))).unwrap();
            }
            set_times(&path, 1_000_000 + (d * FILES + f) as i64);
        }
        std::os::unix::fs::symlink(format!("f{d:02}"), dir.join("link")).unwrap();
        set_times(&dir.join("link"), 42);
        dirs.push(dir);
    }
    for (i, dir) in dirs.iter().enumerate() {
        set_times(dir, 2_000_000 + i as i64);
    }
    std::fs::set_permissions(&dirs[3], std::fs::Permissions::from_mode(0o555)).unwrap();
    set_times(root, 3_000_000);
}

fn copy_fresh(src: &Path, dst: &Path, options: CopyOptions) -> CopyStats {
    std::fs::create_dir(dst).unwrap();
    copy_tree(src, dst, options).unwrap_or_else(|e| panic!("copy {options:?}: {e:?}"))
}

#[test]
fn two_threads_copy_exactly_what_one_thread_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    wide_tree(&src);
    let want = common::snapshot(&src);
    let single = copy_fresh(&src, &tmp.path().join("single"), SINGLE);
    assert_eq!(single.directories, DIRS as u64 + 1);
    assert_eq!(single.specials, DIRS as u64);
    // ⌈FILES/7⌉ links into the next directory and one into the top one per directory.
    assert_eq!(single.hardlinks, (DIRS * (FILES.div_ceil(7) + 1)) as u64);
    assert_eq!(single.copied, (DIRS * FILES) as u64);
    tree::assert_same_tree(
        "single thread",
        &want,
        &common::snapshot(&tmp.path().join("single")),
        tree::Root::Compare,
    );
    // Which thread copies which file varies from run to run: try a few.
    for run in 0..2 {
        let dst = tmp.path().join(format!("threaded{run}"));
        let threaded = copy_fresh(&src, &dst, THREADED);
        assert_eq!(threaded, single, "run {run}");
        tree::assert_same_tree(
            "two threads",
            &want,
            &common::snapshot(&dst),
            tree::Root::Compare,
        );
        let first = std::fs::metadata(dst.join("d00/f00")).unwrap();
        assert_eq!(first.nlink(), 3, "run {run}");
        for other in ["d01/link-0-0", "top-0"] {
            assert_eq!(
                std::fs::metadata(dst.join(other)).unwrap().ino(),
                first.ino()
            );
        }
    }
}

#[test]
fn sparse_files_stay_sparse_on_either_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // (data offsets, length): a leading hole, a hole in the middle, a trailing hole, all hole.
    let layouts: [(&[u64], u64); 4] = [
        (&[8 << 20], (8 << 20) + 4096),
        (&[0, 8 << 20], (8 << 20) + 4096),
        (&[0], 8 << 20),
        (&[], 8 << 20),
    ];
    let mut data_bytes = 0;
    for i in 0..16 {
        let (offsets, len) = layouts[i % layouts.len()];
        let file = std::fs::File::create(src.join(format!("s{i:02}"))).unwrap();
        for &offset in offsets {
            file.write_all_at(&[i as u8 + 1; 4096], offset).unwrap();
            data_bytes += 4096;
        }
        file.set_len(len).unwrap();
        // Dense neighbours, copied whole without looking for holes.
        std::fs::write(src.join(format!("d{i:02}")), vec![i as u8; 5000]).unwrap();
        data_bytes += 5000;
    }
    let probe = std::fs::metadata(src.join("s00")).unwrap();
    assert!(
        probe.blocks() * 512 < probe.len(),
        "the filesystem does not do holes"
    );
    for (what, options) in [("two threads", THREADED), ("one thread", SINGLE)] {
        let dst = tmp.path().join(what);
        let stats = copy_fresh(&src, &dst, options);
        assert_eq!(stats.copied, 32, "{what}");
        assert_eq!(
            stats.bytes_copied, data_bytes,
            "{what}: only data is copied"
        );
        for entry in std::fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            let (before, after) = (
                entry.metadata().unwrap(),
                std::fs::metadata(dst.join(entry.file_name())).unwrap(),
            );
            assert_eq!(after.len(), before.len(), "{what}: {entry:?}");
            assert!(
                after.blocks() <= before.blocks() + 8,
                "{what}: {entry:?} allocates {} blocks, original {}",
                after.blocks(),
                before.blocks()
            );
        }
        tree::assert_same_tree(
            what,
            &common::snapshot(&src),
            &common::snapshot(&dst),
            tree::Root::Compare,
        );
    }
}

#[test]
fn the_first_failure_names_its_path_on_either_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for i in 0..120 {
        std::fs::write(src.join(format!("f{i:03}")), "x").unwrap();
    }
    std::fs::write(src.join("sub/deeper/file"), "y").unwrap();
    for options in [THREADED, SINGLE] {
        // A file the worker (or the walker, when the queue is full) cannot create.
        let dst = tmp.path().join("dst-file");
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(dst.join("f100"), "in the way").unwrap();
        let err = copy_tree(&src, &dst, options).unwrap_err();
        assert_eq!((err.path.as_path(), err.op), (Path::new("f100"), "create"));
        assert_eq!(err.source.kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&dst).unwrap();

        // A directory the walker cannot make.
        let dst = tmp.path().join("dst-dir");
        std::fs::create_dir_all(dst.join("sub/deeper")).unwrap();
        let err = copy_tree(&src, &dst, options).unwrap_err();
        assert_eq!((err.path.as_path(), err.op), (Path::new("sub"), "mkdir"));
        std::fs::remove_dir_all(&dst).unwrap();
    }
}

#[test]
fn set_id_files_keep_their_bits_owner_and_capabilities() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2711), ("sticky", 0o1644)] {
        let path = src.join(name);
        std::fs::write(&path, name).unwrap();
        std::os::unix::fs::chown(&path, Some(1000), Some(1001)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // security.capability (cap_net_bind_service=ep) on a file that chown would strip it from.
    let capable = src.join("capable");
    std::fs::write(&capable, "cap").unwrap();
    std::os::unix::fs::chown(&capable, Some(1000), Some(1000)).unwrap();
    layerstore_driver::xattr::set_at(
        layerstore_driver::tree::open_dir(&src).unwrap(),
        c"capable",
        c"security.capability",
        &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    let want = common::snapshot(&src);
    for (what, options) in [("two threads", THREADED), ("one thread", SINGLE)] {
        let dst = tmp.path().join(what);
        copy_fresh(&src, &dst, options);
        let got = common::snapshot(&dst);
        tree::assert_same_tree(what, &want, &got, tree::Root::Compare);
        assert_eq!(got[Path::new("setuid")].mode, 0o4755);
        assert_eq!(got[Path::new("setgid")].mode, 0o2711);
        assert_eq!(got[Path::new("setuid")].uid, 1000);
        assert!(
            got[Path::new("capable")]
                .xattrs
                .contains_key("security.capability"),
            "{what}: {:?}",
            got[Path::new("capable")]
        );
    }
}

#[test]
fn a_set_group_id_destination_does_not_leak_its_group() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for dir in ["", "sub", "sub/deeper"] {
        for i in 0..20 {
            std::fs::write(src.join(dir).join(format!("f{i}")), "ours").unwrap();
        }
    }
    std::os::unix::fs::chown(src.join("sub/f3"), Some(0), Some(4321)).unwrap();
    std::os::unix::fs::symlink("f0", src.join("sub/deeper/link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("sub/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&src, Some(0), Some(0)).unwrap();
    let want = common::snapshot(&src);
    for (what, options) in [("two threads", THREADED), ("one thread", SINGLE)] {
        // The driver gives a child's top directory the parent's mode and owner before the
        // copy; a set-group-ID one hands its group to everything made in it (and in the
        // directories made in it, until their mode is set).
        let dst = tmp.path().join(what);
        std::fs::create_dir(&dst).unwrap();
        std::os::unix::fs::chown(&dst, Some(0), Some(1234)).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o2755)).unwrap();
        copy_tree(&src, &dst, options).unwrap();
        let got = common::snapshot(&dst);
        tree::assert_same_tree(what, &want, &got, tree::Root::Compare);
        assert_eq!(got[Path::new("sub/deeper/f0")].gid, 0);
        assert_eq!(got[Path::new("sub/f3")].gid, 4321);
        assert_eq!(got[Path::new("sub/deeper/link")].gid, 0);
        assert_eq!(got[Path::new("sub/fifo")].gid, 0);
    }
}
