//! Layers built to exhaust memory, time or stack: a forged xz dictionary, a zstd frame asking
//! for a huge window, sparse files whose declared size dwarfs the tarball, and trees nested
//! deeper than any real image (directly and through symlinks). Each must end in a clear error
//! or a bounded cost.

use crate::common;

use std::io::Write;

use common::*;
use layerstore_archive::{ApplyOptions, Error};

fn opts() -> ApplyOptions {
    ApplyOptions {
        ignore_chown_errors: true,
        ..ApplyOptions::default()
    }
}

/// An xz stream of `plain` whose LZMA2 dictionary is then forged to 3 GiB (the block header's
/// dictionary byte and its CRC32 rewritten), as a hostile registry could serve it.
#[cfg(feature = "xz")]
fn xz_with_forged_dictionary(plain: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 0);
    enc.write_all(plain).expect("xz");
    let mut xz = enc.finish().expect("xz");
    // Stream header: 12 bytes. Block header: size byte, flags, optional sizes, then the
    // filter flags of LZMA2 (ID 0x21, one property byte: the dictionary size).
    let start = 12;
    let header_len = (usize::from(xz[start]) + 1) * 4;
    let flags = xz[start + 1];
    assert_eq!(flags & 0x03, 0, "one filter expected");
    assert_eq!(flags & 0xc0, 0, "no size fields expected from the encoder");
    assert_eq!(
        &xz[start + 2..start + 4],
        &[0x21, 0x01],
        "LZMA2 filter flags"
    );
    // Property byte 39: (2 | 1) << (39 / 2 + 11) = 3 GiB.
    xz[start + 4] = 39;
    let mut crc = flate2::Crc::new();
    crc.update(&xz[start..start + header_len - 4]);
    xz[start + header_len - 4..start + header_len].copy_from_slice(&crc.sum().to_le_bytes());
    xz
}

#[cfg(feature = "xz")]
#[test]
fn an_xz_dictionary_bomb_is_refused_by_the_memory_limit() {
    // A tar of one 8 MiB file of zeros: what the blob holds does not matter, its header does.
    let tar = RawTar::new().file(b"zeros", &vec![0u8; 8 << 20]).finish();
    let blob = xz_with_forged_dictionary(&tar);
    let target = tempfile::tempdir().expect("tempdir");
    let err = apply_bytes(&target.path().join("t"), &blob, &opts()).expect_err("refused");
    assert!(matches!(err, Error::Input(_)), "{err}");
    let message = layerstore_model::error_chain(&err);
    assert!(
        message.contains("more than 256 MiB of memory"),
        "the error names the limit: {message}"
    );
    // The same stream with its real dictionary applies.
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 0);
    enc.write_all(&tar).expect("xz");
    let good = enc.finish().expect("xz");
    apply_bytes(&target.path().join("good"), &good, &opts()).expect("a real xz layer applies");
}

#[test]
fn a_zstd_frame_asking_for_a_2_gib_window_is_refused() {
    // Frame header: magic, descriptor 0 (no content size, not single-segment), window
    // descriptor 0xa8 (2^(10 + 21) = 2 GiB); then one last raw block of 512 zero bytes.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8];
    let block_header: u32 = 1 | (512 << 3); // last block, raw, 512 bytes
    frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
    frame.extend_from_slice(&[0u8; 512]);
    let target = tempfile::tempdir().expect("tempdir");
    let err = apply_bytes(&target.path().join("t"), &frame, &opts()).expect_err("refused");
    let message = layerstore_model::error_chain(&err);
    assert!(
        message.contains("too much memory"),
        "libzstd's window limit holds: {message}"
    );
}

/// `d/d/.../d` (`depth` components).
fn nested(depth: usize) -> Vec<u8> {
    vec![&b"d"[..]; depth].join(&b'/')
}

/// A tar that nests `chains` × `depth` directories: `d^depth/f`, then `l1 -> d^depth` and
/// `l1/d^depth/f`, `l2 -> l1/d^depth` and `l2/d^depth/f`, ... Every name is at most
/// `depth + 2` components long, but the tree it makes is `chains × depth` deep. Parents are
/// never listed: extraction makes them.
fn symlink_chained_tree(depth: usize, chains: usize) -> Vec<u8> {
    let mut tar = RawTar::new();
    let mut through = Vec::new(); // the symlink the next names go through
    for chain in 0..chains {
        let mut name = through.clone();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(&nested(depth));
        let mut file = name.clone();
        file.extend_from_slice(b"/f");
        tar.pax(&[("path", &file)]).file(b"placeholder", b"x");
        let link = format!("l{}", chain + 1).into_bytes();
        tar.pax(&[("linkpath", &name)])
            .symlink(&link, b"placeholder");
        through = link;
    }
    tar.finish()
}

/// Removes a tree too deep for recursive removal (GNU `rm` walks it with its own stack).
fn remove_deep(path: &std::path::Path) {
    let status = std::process::Command::new("rm")
        .arg("-rf")
        .arg(path)
        .status()
        .expect("runs rm");
    assert!(status.success(), "rm -rf {}", path.display());
}

#[test]
fn a_name_deeper_than_the_limit_is_refused_naming_it() {
    let target = tempfile::tempdir().expect("tempdir");
    let mut name = nested(layerstore_archive::DEFAULT_MAX_DEPTH);
    name.extend_from_slice(b"/f");
    let tar = RawTar::new()
        .pax(&[("path", &name)])
        .file(b"x", b"")
        .finish();
    let err = apply_bytes(&target.path().join("t"), &tar, &opts()).expect_err("too deep");
    assert!(
        matches!(&err, Error::TooDeep { entry, depth: 1025, limit: 1024 } if entry.ends_with("d/d/f")),
        "{err}"
    );
    // At the limit it applies.
    let mut name = nested(layerstore_archive::DEFAULT_MAX_DEPTH - 1);
    name.extend_from_slice(b"/f");
    let tar = RawTar::new()
        .pax(&[("path", &name)])
        .file(b"x", b"")
        .finish();
    apply_bytes(&target.path().join("ok"), &tar, &opts()).expect("1,024 deep applies");
    remove_deep(target.path());
}

#[test]
fn depth_reached_through_symlinks_counts_where_entries_really_land() {
    let target = tempfile::tempdir().expect("tempdir");
    // Names of at most 602 components, a tree 1,200 deep.
    let tar = symlink_chained_tree(600, 2);
    for force_walk in [false, true] {
        let opts = ApplyOptions {
            force_userspace_resolution: force_walk,
            ..opts()
        };
        let dir = target.path().join(format!("t{force_walk}"));
        let err = apply_bytes(&dir, &tar, &opts).expect_err("too deep");
        assert!(
            matches!(&err, Error::TooDeep { entry, depth: 1025, limit: 1024 } if entry.starts_with("l1/d/d/")),
            "{err}"
        );
    }
    // With a higher limit the same layer applies: the limit is what refused it.
    let opts = ApplyOptions {
        max_depth: 1300,
        ..opts()
    };
    apply_bytes(&target.path().join("allowed"), &tar, &opts).expect("under 1,300");
    remove_deep(target.path());
}

#[test]
fn changes_of_a_tree_ten_thousand_deep_do_not_abort() {
    // 2,000 directories per name, chained through symlinks to 10,000 levels: 54 KB of tar.
    let tar = symlink_chained_tree(2_000, 5);
    assert!(tar.len() < 64_000, "{} bytes", tar.len());
    let target = tempfile::tempdir().expect("tempdir");
    let layer = target.path().join("layer");
    let opts = ApplyOptions {
        max_depth: 20_000,
        ..opts()
    };
    apply_bytes(&layer, &tar, &opts).expect("applies under a raised limit");
    // A 256 KiB stack: recursion over 10,000 levels would overflow it.
    let (naive, overlay) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn_scoped(s, || {
                let naive = layerstore_archive::changes(&layer, None).expect("changes");
                let overlay = layerstore_archive::overlay_changes(&layer, &[]).expect("overlay");
                (naive, overlay)
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow")
    });
    // 10,000 directories, 5 files, 5 symlinks.
    assert_eq!(naive.len(), 10_010);
    assert_eq!(overlay.len(), 10_010);
    assert!(
        naive
            .iter()
            .all(|c| c.kind == layerstore_archive::ChangeKind::Add)
    );
    let deepest = naive
        .iter()
        .map(|c| c.path.components().count())
        .max()
        .expect("changes");
    // The tree as it is: `/`, 10,000 directories `d`, then `f`.
    assert_eq!(deepest, 10_002, "the deepest path: /d^10000/f");
    remove_deep(target.path());
}
