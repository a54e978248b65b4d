//! Compressed layers whose blob is read and hashed by whichever of two threads has time
//! (`feed.rs`) and decompressed on one of them: digests over many pipe chunks, and which error
//! wins when a stage fails.

use std::io::{self, Read, Write};

use layerstore_archive::{ApplyOptions, Compression, apply};
use sha2::{Digest as _, Sha256};

use crate::common::RawTar;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// Bytes that gzip hardly shrinks, so the blob spans several 1 MiB pipe chunks too.
fn noise(len: usize) -> Vec<u8> {
    layerstore_testsupport::incompressible(1, len)
}

/// Yields `bytes`, then fails with "the disk went away" instead of ending.
struct FailsAtTheEnd<'b>(&'b [u8]);

impl Read for FailsAtTheEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::other("the disk went away"));
        }
        self.0.read(buf)
    }
}

#[test]
fn a_gzip_layer_of_many_chunks_gets_both_digests_and_its_files() {
    let big = noise(3 << 20);
    let tar = RawTar::new()
        .dir(b"d")
        .file(b"d/big", &big)
        .file(b"d/small", b"hello")
        .finish();
    let blob = gzip(&tar);
    assert!(blob.len() > 2 << 20, "the blob must span several chunks");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (report, _) =
        apply(tmp.path(), &blob[..], Vec::new(), &ApplyOptions::default()).expect("apply");
    assert_eq!(report.compression, Compression::Gzip);
    assert_eq!(report.compressed_digest.as_str(), sha256(&blob));
    assert_eq!(report.compressed_size, blob.len() as u64);
    assert_eq!(report.uncompressed_digest.as_str(), sha256(&tar));
    assert_eq!(report.uncompressed_size, tar.len() as u64);
    assert_eq!(std::fs::read(tmp.path().join("d/big")).expect("read"), big);
    assert_eq!(
        std::fs::read(tmp.path().join("d/small")).expect("read"),
        b"hello"
    );
}

#[test]
fn an_input_failing_under_a_gzip_layer_is_the_reported_error() {
    let tar = RawTar::new().file(b"f", &noise(3 << 20)).finish();
    let blob = gzip(&tar);
    let tmp = tempfile::tempdir().expect("tempdir");
    // Cut mid-stream: the decompressor sees its input fail, the parser a truncated tar.
    let err = apply(
        tmp.path(),
        FailsAtTheEnd(&blob[..blob.len() / 2]),
        Vec::new(),
        &ApplyOptions::default(),
    )
    .expect_err("the input fails");
    let chain = layerstore_model::error_chain(&err);
    assert!(chain.contains("the disk went away"), "{chain}");
}

#[test]
fn a_truncated_gzip_layer_fails() {
    let tar = RawTar::new().file(b"f", &noise(3 << 20)).finish();
    let blob = gzip(&tar);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cut = &blob[..blob.len() - 100];
    apply(tmp.path(), cut, Vec::new(), &ApplyOptions::default())
        .expect_err("a truncated stream must fail");
}

#[test]
fn an_extraction_failure_in_a_gzip_layer_wins_over_the_closed_pipes() {
    // The extraction stops at the first entry; both reading threads then find their pipe
    // closed while megabytes are left to read.
    let tar = RawTar::new()
        .file(b"../escape", b"x")
        .file(b"f", &noise(6 << 20))
        .finish();
    let blob = gzip(&tar);
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = apply(tmp.path(), &blob[..], Vec::new(), &ApplyOptions::default())
        .expect_err("a name climbing out is refused");
    let chain = layerstore_model::error_chain(&err);
    assert!(chain.contains("../escape"), "{chain}");
    assert!(!chain.contains("pipe"), "{chain}");
}

/// Counts its calls, for [`ApplyOptions::on_input_end`].
fn counting_hook() -> (
    layerstore_archive::InputEndHook,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let hook = layerstore_archive::InputEndHook(Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    }));
    (hook, calls)
}

#[test]
fn the_input_end_hook_runs_once_for_each_compression_and_not_for_a_failed_input() {
    use std::sync::atomic::Ordering;
    let plain = RawTar::new()
        .dir(b"d/")
        .file(b"d/big", &noise(3 << 20))
        .finish();
    let zstd = zstd::encode_all(&plain[..], 1).expect("zstd");
    for (what, layer) in [
        ("plain", plain.clone()),
        ("gzip", gzip(&plain)),
        ("zstd", zstd),
    ] {
        let (hook, calls) = counting_hook();
        let opts = ApplyOptions {
            on_input_end: Some(hook),
            ..Default::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        apply(dir.path(), &layer[..], Vec::new(), &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}");
    }
    let (hook, calls) = counting_hook();
    let opts = ApplyOptions {
        on_input_end: Some(hook),
        ..Default::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = gzip(&plain);
    apply(dir.path(), FailsAtTheEnd(&gz), Vec::new(), &opts).expect_err("the input failed");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a failed input");
}
