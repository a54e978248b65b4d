//! The diff encoders' output read by other programs: GNU gzip and the Go tool.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use layerstore_archive::{Compression, encoder};
use layerstore_testsupport::go::{go_id, run_go_ok};
use layerstore_testsupport::scratch::Scratch;
use layerstore_testsupport::{Capability, incompressible, require_or_skip};

use crate::common::RawTar;

/// A layer of every kind of block: random files (stored), text (deflated), a file mixing both
/// inside one block, and small files; about 7 MiB, so that it spans several 1 MiB blocks.
fn mixed_layer() -> Vec<u8> {
    let text: Vec<u8> = (0..60_000u32)
        .flat_map(|i| format!("line {i} of a text file in a layer\n").into_bytes())
        .collect();
    let mut mixed = incompressible(21, 600_000);
    mixed.extend_from_slice(&text[..700_000]);
    RawTar::new()
        .dir(b"d")
        .file(b"d/random", &incompressible(20, 3 << 20))
        .file(b"d/text", &text)
        .file(b"d/mixed", &mixed)
        .file(b"d/small", b"hello")
        .finish()
}

fn gzip_with_our_encoder(plain: &[u8], write_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut gz = encoder(&mut out, Compression::Gzip).expect("encoder");
    for chunk in plain.chunks(write_size) {
        gz.write_all(chunk).expect("write");
    }
    gz.finish().expect("finish");
    out
}

fn gunzip(path: &Path) -> Vec<u8> {
    let tested = Command::new("gzip").arg("-t").arg(path).status();
    assert!(tested.expect("runs gzip").success(), "gzip -t {path:?}");
    let output = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("runs gzip");
    assert!(output.status.success(), "gzip -dc {path:?}");
    output.stdout
}

#[test]
fn gnu_gzip_reads_every_kind_of_block_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = mixed_layer();
    // A tiny stream (one block, compressed on the calling thread), whole blocks only (ended
    // by an empty final block), and a stream ending in a partial block.
    for (name, plain) in [
        ("tiny", b"a tiny diff".to_vec()),
        // Six whole blocks of 16 stored-block pieces (65,535 bytes each).
        ("whole", layer[..6 * 16 * 65_535].to_vec()),
        ("layer", layer.clone()),
    ] {
        let path = dir.path().join(format!("{name}.gz"));
        std::fs::write(&path, gzip_with_our_encoder(&plain, 1 << 20)).expect("write");
        assert!(gunzip(&path) == plain, "{name}: gunzip gives other bytes");
    }
}

#[test]
fn the_go_tool_applies_our_gzip_diff_and_gives_the_layer_back() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let (graph, run) = (scratch.path().join("root"), scratch.path().join("run"));
    let layer = mixed_layer();
    let blob = scratch.path().join("layer.tar.gz");
    std::fs::write(&blob, gzip_with_our_encoder(&layer, 333_333)).expect("write");
    let id = go_id(&graph, &run, "vfs", &["create-layer"]);
    let blob_arg = blob.display().to_string();
    run_go_ok(
        &graph,
        &run,
        "vfs",
        &["applydiff", "--file", &blob_arg, &id],
    );
    // Go read the whole stream: its diff is the tar we compressed, byte for byte.
    let back = run_go_ok(&graph, &run, "vfs", &["diff", "-u", &id]);
    assert!(
        back == layer,
        "Go's diff differs from the layer it was given"
    );
    let size = std::fs::read(graph.join("vfs/dir").join(&id).join("d/random"))
        .expect("read the applied file")
        .len();
    assert_eq!(size, 3 << 20);
}
