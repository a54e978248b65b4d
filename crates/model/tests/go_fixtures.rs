//! The files the Go tool wrote (tests/fixtures/go-1.43) parse, and encode back byte for byte.

use std::fs;

use layerstore_model::{
    Compression, IDMap, Layer, encode_layers_json, encode_mountpoints_json, parse_layers_json,
    parse_mountpoints_json,
};
use layerstore_testsupport::go_fixtures;

fn read(name: &str) -> Vec<u8> {
    let path = go_fixtures().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn layers_json_round_trips_byte_for_byte() {
    for driver in ["vfs", "overlay"] {
        let name = format!("layers-{driver}.json");
        let bytes = read(&name);
        let layers = parse_layers_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(layers.len(), 13, "{name}");
        let again = encode_layers_json(&layers).unwrap();
        assert_eq!(
            String::from_utf8(again).unwrap(),
            String::from_utf8(bytes).unwrap(),
            "{name}"
        );
        // Each record on its own, too.
        for layer in &layers {
            assert!(layer.extra.is_empty(), "{name}: {}", layer.id);
        }
    }
}

#[test]
fn fixture_records_have_the_expected_fields() {
    let layers = parse_layers_json(&read("layers-vfs.json")).unwrap();
    let by_name = |name: &str| -> &Layer {
        layers
            .iter()
            .find(|l| l.names.iter().any(|n| n == name))
            .unwrap_or_else(|| panic!("no layer named {name}"))
    };
    let gzip = by_name("basic.tar.gz");
    assert_eq!(gzip.compression, Compression::Gzip);
    let gz_size = fs::metadata(go_fixtures().join("tars/basic.tar.gz"))
        .unwrap()
        .len();
    assert_eq!(gzip.compressed_size, i64::try_from(gz_size).unwrap());
    assert_eq!(gzip.uncompressed_size, 112_640);
    assert_eq!(gzip.known_uncompressed_size(), Some(112_640));
    assert_eq!(
        gzip.uncompressed_digest.as_ref().unwrap().as_str(),
        format!("sha256:{}", pinned_sha256("basic.tar"))
    );
    assert_eq!(gzip.uids, [0, 1000]);
    assert_eq!(by_name("basic.tar.zst").compression, Compression::Zstd);
    let child = by_name("child");
    assert_eq!(child.names, ["child", "child-alias"]);
    assert_eq!(child.parent(), Some(by_name("basic").id.as_str()));
    assert_eq!(child.metadata, r#"{"note":"fixture"}"#);
    assert_eq!(child.big_data_names, ["sums"]);
    let mapped = by_name("mapped");
    assert_eq!(mapped.mount_label, "system_u:object_r:container_file_t:s0");
    assert_eq!(
        mapped.uid_map,
        [IDMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536
        }]
    );
    assert_eq!(mapped.gid_map[0].host_id, 200_000);
    let failed = by_name("sparse-gnu");
    assert_eq!(failed.uncompressed_digest, None);
    assert_eq!(failed.known_uncompressed_size(), None);
    assert_eq!(by_name("readonly-flag").id, "fixture-id-vfs");
    // The timestamp is written back exactly as Go wrote it.
    let raw: serde_json::Value = serde_json::from_slice(&read("layers-vfs.json")).unwrap();
    assert_eq!(
        by_name("basic").created.to_string(),
        raw[0]["created"].as_str().unwrap()
    );
}

/// The sha256 of a fixture tarball, as `tars/SHA256SUMS` pins it.
fn pinned_sha256(name: &str) -> String {
    let sums = String::from_utf8(read("tars/SHA256SUMS")).unwrap();
    sums.lines()
        .find_map(|line| line.strip_suffix(&format!("  {name}")))
        .unwrap_or_else(|| panic!("{name} is not in SHA256SUMS"))
        .to_owned()
}

#[test]
fn edited_layers_keep_every_field() {
    let bytes = read("layers-edited.json");
    let layers = parse_layers_json(&bytes).unwrap();
    let again = encode_layers_json(&layers).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let written: serde_json::Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(written, original);
    // Not promised, but true for this file: known fields (toc-digest included) are placed
    // where newer Go places them, so the bytes are identical too — except that the hand-made
    // record has a raw `<` and `&`, which Go (and we) escape.
    let expected = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("x<y&z", r"x\u003cy\u0026z");
    assert_eq!(String::from_utf8(again).unwrap(), expected);
    let pulled = layers
        .iter()
        .find(|l| l.names == ["was-being-pulled"])
        .unwrap();
    assert!(pulled.is_incomplete());
    let newer = layers
        .iter()
        .find(|l| l.names == ["from-newer-go"])
        .unwrap();
    assert_eq!(
        newer.toc_digest.as_ref().map(|d| d.as_str()),
        Some("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    );
    assert_eq!(
        newer.flags["custom"],
        serde_json::json!({"list": [1, 2], "s": "x<y&z"})
    );
}

#[test]
fn cli_json_output_parses_as_the_same_records() {
    for driver in ["vfs", "overlay"] {
        let cli = read(&format!("layers-{driver}.cli.json"));
        let file = read(&format!("layers-{driver}.json"));
        // `layers --json` is the same array, written by json.Encoder with a newline.
        let from_cli = parse_layers_json(&cli).unwrap();
        assert_eq!(from_cli, parse_layers_json(&file).unwrap());
        let mut expected = encode_layers_json(&from_cli).unwrap();
        expected.push(b'\n');
        assert_eq!(String::from_utf8(expected), String::from_utf8(cli));
    }
}

#[test]
fn mountpoints_json_round_trips_byte_for_byte() {
    for driver in ["vfs", "overlay"] {
        let name = format!("mountpoints-{driver}.json");
        let bytes = read(&name);
        let mounts = parse_mountpoints_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(mounts.len(), 1, "{name}");
        assert_eq!(mounts[0].count, 1);
        assert!(mounts[0].path.starts_with('/'), "{name}");
        assert!(mounts[0].path.contains(&mounts[0].id), "{name}");
        let again = encode_mountpoints_json(&mounts).unwrap();
        assert_eq!(String::from_utf8(again), String::from_utf8(bytes), "{name}");
    }
}
