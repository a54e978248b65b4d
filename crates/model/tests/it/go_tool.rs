//! Cross-check with the real Go tool (containers-storage 1.43): a `layers.json` (an
//! `images.json`, a `containers.json`) we write with random, escape-heavy records is loaded by
//! Go, which changes one record's metadata and saves the whole file again. Go's bytes must
//! equal ours after the same change — so Go reads every record as we meant it, and we write
//! exactly what Go writes.

use crate::common;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use layerstore_model::{
    Container, Image, Layer, encode_containers_json, encode_images_json, encode_layers_json,
    is_manifest_key, parse_containers_json, parse_images_json, parse_layers_json,
};
use layerstore_testsupport::go::run_go_ok;
use layerstore_testsupport::{Capability, require_or_skip};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

/// Records Go 1.43 keeps as they are on load: unique IDs, and names unique across the store
/// (Go takes a repeated name away from the earlier layer and rewrites the file).
fn go_store_layers(runner: &mut TestRunner, count: usize) -> Vec<Layer> {
    let strategy = proptest::collection::vec(common::go_layer(), count);
    let mut layers = strategy
        .new_tree(runner)
        .expect("strategy generates a value")
        .current();
    for (i, layer) in layers.iter_mut().enumerate() {
        layer.id = format!("{:064x}", i + 1);
        for (j, name) in layer.names.iter_mut().enumerate() {
            *name = format!("{i}.{j}-{name}");
        }
    }
    layers
}

fn first_difference(ours: &str, go: &str) -> String {
    let at = ours
        .bytes()
        .zip(go.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(go.len()));
    let window = |s: &str| {
        let bytes = s.as_bytes();
        let end = (at + 120).min(bytes.len());
        String::from_utf8_lossy(&bytes[at.saturating_sub(120).min(end)..end]).into_owned()
    };
    format!(
        "first difference at byte {at}\n ours: {}\n   go: {}",
        window(ours),
        window(go)
    )
}

fn run_go(graph: &Path, run: &Path, args: &[&str]) {
    run_go_ok(graph, run, "vfs", args);
}

#[test]
fn go_rewrites_our_layers_json_byte_for_byte() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let mut runner = TestRunner::default();
    for batch in 0..3 {
        let scratch = tempfile::tempdir().unwrap();
        let graph = scratch.path().join("graph");
        let run = scratch.path().join("run");
        let layers_dir = graph.join("vfs-layers");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&layers_dir)
            .unwrap();
        let mut layers = go_store_layers(&mut runner, 25);
        let path = layers_dir.join("layers.json");
        fs::write(&path, encode_layers_json(&layers).unwrap()).unwrap();

        let metadata = "set by Go: <&> \u{2028} é \u{1}";
        let target = layers[batch].id.clone();
        run_go(&graph, &run, &["set-metadata", "-m", metadata, &target]);

        layers[batch].metadata = metadata.to_owned();
        let ours = String::from_utf8(encode_layers_json(&layers).unwrap()).unwrap();
        let go_bytes = fs::read(&path).unwrap();
        let go = String::from_utf8(go_bytes.clone()).expect("Go wrote UTF-8");
        assert!(
            ours == go,
            "batch {batch}: {}",
            first_difference(&ours, &go)
        );
        assert_eq!(parse_layers_json(&go_bytes).unwrap(), layers);
    }
}

#[test]
fn go_reads_our_records_field_by_field() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = tempfile::tempdir().unwrap();
    let graph = scratch.path().join("graph");
    let run = scratch.path().join("run");
    let layers_dir = graph.join("vfs-layers");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&layers_dir)
        .unwrap();
    let mut runner = TestRunner::default();
    let layers = go_store_layers(&mut runner, 5);
    fs::write(
        layers_dir.join("layers.json"),
        encode_layers_json(&layers).unwrap(),
    )
    .unwrap();
    // `layers --json` prints the records Go decoded, encoded again by Go.
    let output = run_go_ok(&graph, &run, "vfs", &["layers", "--json"]);
    assert_eq!(parse_layers_json(&output).unwrap(), layers);
}

/// Values of `strategy` made unique as Go 1.43 keeps them on load: IDs `<base + i>` in hex,
/// names prefixed with the record's number.
fn unique<T: std::fmt::Debug>(
    runner: &mut TestRunner,
    strategy: impl Strategy<Value = T>,
    count: usize,
    base: usize,
    id_and_names: impl Fn(&mut T) -> (&mut String, &mut Vec<String>),
) -> Vec<T> {
    let mut records = proptest::collection::vec(strategy, count)
        .new_tree(runner)
        .expect("strategy generates a value")
        .current();
    for (i, record) in records.iter_mut().enumerate() {
        let (id, names) = id_and_names(record);
        *id = format!("{:064x}", base + i);
        for (j, name) in names.iter_mut().enumerate() {
            *name = format!("{i}.{j}-{name}");
        }
    }
    records
}

/// Go picks `digest` among several manifest digests in map order: leave it empty only where
/// the choice is one.
fn settle_ambiguous_digests(images: &mut [Image]) {
    for image in images {
        let mut manifests: Vec<&String> = image
            .big_data_digests
            .iter()
            .filter(|(key, _)| is_manifest_key(key))
            .map(|(_, digest)| digest)
            .collect();
        manifests.sort();
        manifests.dedup();
        if manifests.len() > 1 {
            image.recompute_digest().unwrap();
        }
    }
}

#[test]
fn go_rewrites_our_images_and_containers_json_byte_for_byte() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let mut runner = TestRunner::default();
    for batch in 0..3 {
        let scratch = tempfile::tempdir().unwrap();
        let graph = scratch.path().join("graph");
        let run = scratch.path().join("run");
        let mut images = unique(
            &mut runner,
            common::go_image(),
            12,
            0x1000,
            |image: &mut Image| (&mut image.id, &mut image.names),
        );
        settle_ambiguous_digests(&mut images);
        let mut containers = unique(
            &mut runner,
            common::go_container(),
            12,
            0x2000,
            |c: &mut Container| (&mut c.id, &mut c.names),
        );
        let images_json = graph.join("vfs-images/images.json");
        let containers_json = graph.join("vfs-containers/containers.json");
        for (path, bytes) in [
            (&images_json, encode_images_json(&images).unwrap()),
            (
                &containers_json,
                encode_containers_json(&containers).unwrap(),
            ),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path.parent().unwrap())
                .unwrap();
            fs::write(path, bytes).unwrap();
        }

        let metadata = "set by Go: <&> \u{2028} é \u{1}";
        let image = images[batch].id.clone();
        let container = containers[batch].id.clone();
        run_go(&graph, &run, &["set-metadata", "-m", metadata, &image]);
        run_go(&graph, &run, &["set-metadata", "-m", metadata, &container]);

        // Go computed each image's digest list on load and filled empty `digest`s: our rule
        // must give the same.
        for image in &mut images {
            image.recompute_digest().unwrap();
        }
        images[batch].metadata = metadata.to_owned();
        containers[batch].metadata = metadata.to_owned();
        let go_images = assert_go_wrote(&images_json, encode_images_json(&images), batch);
        assert_eq!(parse_images_json(&go_images).unwrap(), images);
        let go_containers =
            assert_go_wrote(&containers_json, encode_containers_json(&containers), batch);
        assert_eq!(parse_containers_json(&go_containers).unwrap(), containers);
    }
}

/// Go's file at `path` equals `ours`, byte for byte; its bytes.
fn assert_go_wrote(path: &Path, ours: layerstore_model::Result<Vec<u8>>, batch: usize) -> Vec<u8> {
    let ours = String::from_utf8(ours.unwrap()).unwrap();
    let go_bytes = fs::read(path).unwrap();
    let go = String::from_utf8(go_bytes.clone()).expect("Go wrote UTF-8");
    assert!(
        ours == go,
        "{}, batch {batch}: {}",
        path.display(),
        first_difference(&ours, &go)
    );
    go_bytes
}
