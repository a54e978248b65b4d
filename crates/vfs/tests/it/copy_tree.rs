//! The exact tree copy that makes a vfs child layer.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::copy::{CopyOptions, copy_tree};

fn copy_fresh(src: &Path, dst: &Path, options: CopyOptions) -> layerstore_vfs::copy::CopyStats {
    std::fs::create_dir(dst).unwrap();
    copy_tree(src, dst, options).unwrap()
}

#[test]
fn hardlinks_stay_hardlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/one"), "shared").unwrap();
    std::fs::hard_link(src.join("a/one"), src.join("a/b/two")).unwrap();
    std::fs::hard_link(src.join("a/one"), src.join("three")).unwrap();
    std::fs::write(src.join("single"), "alone").unwrap();
    let dst = tmp.path().join("dst");
    let stats = copy_fresh(&src, &dst, CopyOptions::default());
    assert_eq!(stats.hardlinks, 2);
    let one = std::fs::metadata(dst.join("a/one")).unwrap();
    assert_eq!(one.nlink(), 3);
    for other in ["a/b/two", "three"] {
        assert_eq!(std::fs::metadata(dst.join(other)).unwrap().ino(), one.ino());
    }
    assert_ne!(
        one.ino(),
        std::fs::metadata(src.join("a/one")).unwrap().ino()
    );
    assert_eq!(std::fs::metadata(dst.join("single")).unwrap().nlink(), 1);
    tree::assert_same_tree(
        "hardlinks",
        &common::snapshot(&src),
        &common::snapshot(&dst),
        tree::Root::Compare,
    );
}

#[test]
fn sparse_files_stay_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = std::fs::File::create(src.join("holey")).unwrap();
    // 64 MiB apparent, three 4 KiB data blocks, ending in a hole.
    use std::os::unix::fs::FileExt;
    for offset in [0u64, 20 << 20, 40 << 20] {
        file.write_all_at(&[0xa5; 4096], offset).unwrap();
    }
    file.set_len(64 << 20).unwrap();
    drop(file);
    let before = std::fs::metadata(src.join("holey")).unwrap();
    assert!(
        before.blocks() * 512 < 1 << 20,
        "the filesystem does not do holes"
    );

    let dst = tmp.path().join("dst");
    let stats = copy_fresh(
        &src,
        &dst,
        CopyOptions {
            no_reflink: true,
            ..Default::default()
        },
    );
    assert_eq!(stats.copied, 1);
    assert_eq!(
        stats.bytes_copied,
        3 * 4096,
        "only the data regions are copied"
    );
    let after = std::fs::metadata(dst.join("holey")).unwrap();
    assert_eq!(after.len(), 64 << 20);
    assert!(
        after.blocks() <= before.blocks() + 8,
        "copy allocates {} blocks, original {}",
        after.blocks(),
        before.blocks()
    );
    assert_eq!(
        std::fs::read(src.join("holey")).unwrap(),
        std::fs::read(dst.join("holey")).unwrap()
    );
}

#[test]
fn xattrs_are_copied_on_files_dirs_and_without_following_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("file"), "x").unwrap();
    std::fs::write(src.join("dir/inner"), "y").unwrap();
    std::os::unix::fs::symlink("file", src.join("link")).unwrap();
    let set = |path: &Path, name: &str, value: &str| {
        let status = std::process::Command::new("setfattr")
            .args(["-h", "-n", name, "-v", value])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "setfattr {name} on {path:?}");
    };
    set(&src.join("file"), "user.one", "1");
    set(&src.join("file"), "user.two", "0x00ff00");
    set(&src.join("dir"), "user.dir", "d");
    set(&src.join("dir/inner"), "user.inner", "i");
    // trusted.* and security.* need root: the one check says so (and fails in CI without it).
    let root = layerstore_testsupport::available(&[Capability::Root]);
    if root {
        set(&src.join("file"), "trusted.overlay.opaque", "y");
        set(&src.join("link"), "trusted.on-link", "l");
        // security.capability: cap_net_bind_service=ep (VFS_CAP_REVISION_2).
        let status = std::process::Command::new("setfattr")
            .args([
                "-n",
                "security.capability",
                "-v",
                "0x0100000200040000000000000000000000000000",
            ])
            .arg(src.join("dir/inner"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let dst = tmp.path().join("dst");
    copy_fresh(&src, &dst, CopyOptions::default());
    let (want, got) = (common::snapshot(&src), common::snapshot(&dst));
    tree::assert_same_tree("xattrs", &want, &got, tree::Root::Compare);
    assert_eq!(got[Path::new("file")].xattrs["user.two"], [0, 0xff, 0]);
    assert_eq!(got[Path::new("dir")].xattrs["user.dir"], b"d");
    if root {
        assert_eq!(got[Path::new("link")].xattrs["trusted.on-link"], b"l");
        assert!(
            !got[Path::new("file")]
                .xattrs
                .contains_key("trusted.on-link")
        );
        assert!(
            got[Path::new("dir/inner")]
                .xattrs
                .contains_key("security.capability")
        );
    }
}

#[test]
fn symlinks_in_the_source_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "do not copy").unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", src.join("file-link")).unwrap();
    std::os::unix::fs::symlink("dangling", src.join("dangling")).unwrap();
    let dst = tmp.path().join("dst");
    let stats = copy_fresh(&src, &dst, CopyOptions::default());
    assert_eq!(stats.specials, 3);
    assert_eq!(stats.copied + stats.reflinked, 0);
    for name in ["dir-link", "file-link", "dangling"] {
        assert!(
            std::fs::symlink_metadata(dst.join(name))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    assert_eq!(std::fs::read_link(dst.join("dir-link")).unwrap(), outside);
    tree::assert_same_tree(
        "symlinks",
        &common::snapshot(&src),
        &common::snapshot(&dst),
        tree::Root::Compare,
    );
    // The outside tree was not touched.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn copy_of_every_fixture_tarball_is_exact() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tmp = tempfile::tempdir().unwrap();
    for tarball in [
        "basic.tar",
        "pax.tar",
        "gnu-long.tar",
        "devices.tar",
        "nonutf8.tar",
        "sparse-gnu.tar",
        "sparse-pax.tar",
    ] {
        let src = tmp.path().join(format!("{tarball}.src"));
        common::gnu_extract(&common::fixture_tar(tarball), &src);
        let dst = tmp.path().join(format!("{tarball}.dst"));
        copy_fresh(&src, &dst, CopyOptions::default());
        let (want, got) = (common::snapshot(&src), common::snapshot(&dst));
        assert!(want.len() > 1, "{tarball}: nothing extracted");
        tree::assert_same_tree(tarball, &want, &got, tree::Root::Compare);
        if tarball == "pax.tar" {
            let with_xattr = &got[Path::new("with-xattr")];
            assert!(
                with_xattr.xattrs.contains_key("user.comment"),
                "{with_xattr:?}"
            );
        }
        if tarball == "devices.tar" {
            assert_eq!(got[Path::new("dev/null")].kind, "char");
            assert_eq!(got[Path::new("dev/null")].rdev, rustix::fs::makedev(1, 3));
        }
    }
}
