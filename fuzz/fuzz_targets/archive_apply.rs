//! Fuzzes layer extraction: any bytes (tar, or gzip/zstd of one) applied beneath a temporary
//! root must succeed or fail with an error, never panic, and never create anything beside that
//! root (the root's parent must hold nothing but the root afterwards).
#![no_main]

use layerstore_archive::{ApplyOptions, DevicePolicy, apply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).expect("root dir");
    let opts = ApplyOptions {
        ignore_chown_errors: true,
        devices: DevicePolicy::Skip,
        // Bombs are the size cap's business, not the fuzzer's.
        max_uncompressed_size: Some(64 << 20),
        ..ApplyOptions::default()
    };
    let _ = apply(&root, data, Vec::new(), &opts);
    let beside: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("list scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, [std::ffi::OsString::from("root")], "an entry escaped the root");
});
