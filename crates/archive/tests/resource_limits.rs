//! Layers built to exhaust memory, time or stack: a forged xz dictionary, a zstd frame asking
//! for a huge window, sparse files whose declared size dwarfs the tarball, and trees nested
//! deeper than any real image (directly and through symlinks). Each must end in a clear error
//! or a bounded cost.

mod common;

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
    let message = err.to_string();
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
    let message = err.to_string();
    assert!(
        message.contains("too much memory"),
        "libzstd's window limit holds: {message}"
    );
}
