//! Layers that attack resources rather than paths, through the real `layerstore` binary: an xz
//! stream with a forged dictionary, a sparse file whose declared size is terabytes, a tree
//! nested deeper than any real image; and the layer-content behaviours the Go tool's own suite
//! checks on overlay (changes below an opaque directory, stable naive diffs).
//!
//! Time and memory are bounded generously (a memory rlimit on the child, "well under a minute"),
//! never timed tightly.

mod suite;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Scratch, Store};

/// Reads a variable-length integer of the xz format at `at`; returns it and the bytes used.
fn xz_vli(bytes: &[u8], at: usize) -> (u64, usize) {
    let mut value = 0u64;
    for (i, &b) in bytes[at..at + 9].iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    panic!("bad xz integer at {at}");
}

/// `xz -0` of `plain` (the `xz` tool, as CI installs it), then its LZMA2 dictionary forged to
/// 3 GiB in the first block header, CRC32 recomputed.
fn xz_with_forged_dictionary(plain: &Path) -> Vec<u8> {
    let output = Command::new("xz")
        .args(["-0", "-T1", "--check=none", "-c"])
        .arg(plain)
        .output()
        .expect("runs xz");
    assert!(output.status.success(), "xz failed");
    let mut xz = output.stdout;
    let start = 12; // after the stream header
    let header_len = (usize::from(xz[start]) + 1) * 4;
    let flags = xz[start + 1];
    let mut at = start + 2;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            at += xz_vli(&xz, at).1; // compressed, then uncompressed size
        }
    }
    assert_eq!(&xz[at..at + 2], &[0x21, 0x01], "LZMA2 filter flags");
    xz[at + 2] = 39; // (2 | 1) << (39 / 2 + 11) = 3 GiB
    let mut crc = flate2::Crc::new();
    crc.update(&xz[start..start + header_len - 4]);
    xz[start + header_len - 4..start + header_len].copy_from_slice(&crc.sum().to_le_bytes());
    xz
}

/// `layerstore <store flags> args` with its address space capped at `bytes` (util-linux
/// `prlimit`): whatever the input asks for, the process cannot use more.
fn run_capped(store: &Store, bytes: u64, args: &[&str]) -> std::process::Output {
    Command::new("prlimit")
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(suite::binary())
        .args(store.flags())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs prlimit")
}

#[test]
fn an_xz_dictionary_bomb_fails_clearly_within_a_gib() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    // 64 MiB of zeros in a tar: a few kB of xz; its header claims a 3 GiB dictionary.
    let plain = scratch.path().join("zeros.tar");
    let mut tar = tar::Builder::new(fs::File::create(&plain).expect("create"));
    let mut header = tar::Header::new_ustar();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "zeros", std::io::repeat(0).take(64 << 20))
        .expect("tar");
    tar.into_inner().expect("tar");
    let blob = scratch.path().join("bomb.tar.xz");
    suite::write_file(&blob, &xz_with_forged_dictionary(&plain));
    let output = run_capped(
        &store,
        1 << 30,
        &["import-layer", "-f", &blob.display().to_string()],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the bomb imported");
    assert!(
        stderr.contains("more than 256 MiB of memory"),
        "unclear error: {stderr}"
    );
    assert!(store.listed().is_empty(), "a layer was left");
    suite::verify(&store, "after the xz bomb");
}
