//! Applying each Go fixture tarball gives what GNU tar extracts as root, the digests of
//! `sha256sum`, and the uid/gid sets the Go tool recorded.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use layerstore_archive::{ApplyOptions, Compression, apply};
use layerstore_testsupport::{Capability, require_or_skip};

/// The uid/gid sets the Go tool recorded in layers-vfs.json for the layer named `name`.
fn go_sets(name: &str) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("layers-vfs.json")).expect("read"))
            .expect("json");
    let layer = json
        .as_array()
        .expect("array")
        .iter()
        .find(|l| {
            l["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == name))
        })
        .unwrap_or_else(|| panic!("no layer {name}"));
    let set = |key: &str| {
        layer[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().expect("u64") as u32).collect())
            .unwrap_or_default()
    };
    (set("uidset"), set("gidset"))
}

fn check_fixture(file: &str, layer_name: &str, compression: Compression) {
    let tarball = fixtures().join("tars").join(file);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = tmp.path().join("ours");
    let gnu = tmp.path().join("gnu");
    let bytes = std::fs::read(&tarball).expect("read fixture");
    for force_walk in [false, true] {
        let _ = std::fs::remove_dir_all(&ours);
        let opts = ApplyOptions {
            force_userspace_resolution: force_walk,
            ..ApplyOptions::default()
        };
        let (report, entries) = apply_bytes(&ours, &bytes, &opts)
            .unwrap_or_else(|e| panic!("{file}: apply failed: {e}"));
        assert_eq!(report.compression, compression, "{file}");
        assert_eq!(
            report.compressed_digest.as_str(),
            sha256_file(&tarball),
            "{file}"
        );
        assert_eq!(report.compressed_size, bytes.len() as u64, "{file}");
        if compression == Compression::None {
            assert_eq!(report.uncompressed_digest, report.compressed_digest);
        } else {
            let plain = fixtures().join("tars/basic.tar");
            assert_eq!(
                report.uncompressed_digest.as_str(),
                sha256_file(&plain),
                "{file}"
            );
            assert_eq!(
                report.uncompressed_size,
                std::fs::metadata(&plain).expect("stat").len()
            );
        }
        let (uids, gids) = go_sets(layer_name);
        assert_eq!(report.uids, uids, "{file} uidset");
        assert_eq!(report.gids, gids, "{file} gidset");
        assert!(!entries.is_empty(), "{file}: tar-split recorded");
        assert!(report.warnings.is_empty(), "{file}: {:?}", report.warnings);
    }
    let decompressed = tmp.path().join("plain.tar");
    let mut input = std::fs::File::open(&tarball).expect("open");
    let (_, mut reader) = layerstore_archive::decompress(&mut input).expect("decompress");
    std::io::copy(
        &mut reader,
        &mut std::fs::File::create(&decompressed).expect("create"),
    )
    .expect("copy");
    gnu_tar_extract(&decompressed, &gnu);
    assert_same_tree(&snapshot(&ours, FULL), &snapshot(&gnu, FULL), file);
}

#[test]
fn fixtures_match_gnu_tar_digests_and_go_id_sets() {
    require_or_skip!(Capability::Root, Capability::GnuTar);
    for (file, name, compression) in [
        ("basic.tar", "basic", Compression::None),
        ("basic.tar.gz", "basic.tar.gz", Compression::Gzip),
        ("basic.tar.zst", "basic.tar.zst", Compression::Zstd),
        ("pax.tar", "pax", Compression::None),
        ("gnu-long.tar", "gnu-long", Compression::None),
        ("devices.tar", "devices", Compression::None),
        ("nonutf8.tar", "nonutf8", Compression::None),
        ("sparse-pax.tar", "sparse-pax", Compression::None),
        ("trailing-zeros.tar", "trailing-zeros", Compression::None),
    ] {
        check_fixture(file, name, compression);
    }
}

#[test]
fn gnu_sparse_fixture_matches_gnu_tar() {
    // The Go tool refuses type 'S'; GNU tar and we extract it.
    require_or_skip!(Capability::Root, Capability::GnuTar);
    let tarball = fixtures().join("tars/sparse-gnu.tar");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (report, _) = apply_bytes(
        &tmp.path().join("ours"),
        &std::fs::read(&tarball).expect("read"),
        &ApplyOptions::default(),
    )
    .expect("apply");
    assert_eq!(report.uncompressed_digest.as_str(), sha256_file(&tarball));
    gnu_tar_extract(&tarball, &tmp.path().join("gnu"));
    assert_same_tree(
        &snapshot(&tmp.path().join("ours"), FULL),
        &snapshot(&tmp.path().join("gnu"), FULL),
        "sparse-gnu.tar",
    );
}

#[test]
fn tar_split_records_equal_the_go_tools() {
    // What we record while extracting is what Go's tar-split wrote for the same tarball.
    for name in [
        "basic",
        "pax",
        "gnu-long",
        "devices",
        "nonutf8",
        "trailing-zeros",
    ] {
        let tarball = fixtures().join("tars").join(format!("{name}.tar"));
        let go_file = fixtures()
            .join("tar-split")
            .join(format!("{name}.tar-split.gz"));
        let go: Vec<_> =
            layerstore_tarsplit::read_tar_split_gz(std::fs::File::open(&go_file).expect("open"))
                .collect::<Result<_, _>>()
                .expect("go tar-split");
        let tmp = tempfile::tempdir().expect("tempdir");
        let opts = ApplyOptions {
            devices: layerstore_archive::DevicePolicy::CreateOrSkip,
            ..ApplyOptions::default()
        };
        let (_, ours) = apply(
            tmp.path(),
            std::fs::File::open(&tarball).expect("open"),
            Vec::new(),
            &opts,
        )
        .expect("apply");
        assert_eq!(ours, go, "{name}");
    }
}

#[test]
fn empty_input_gives_empty_digests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (report, _) =
        apply(tmp.path(), &b""[..], Vec::new(), &ApplyOptions::default()).expect("apply");
    let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(report.compressed_digest.as_str(), empty);
    assert_eq!(report.uncompressed_digest.as_str(), empty);
    assert_eq!((report.compressed_size, report.uncompressed_size), (0, 0));
    assert!(
        std::fs::read_dir(tmp.path())
            .expect("readdir")
            .next()
            .is_none()
    );
}

#[test]
fn junk_input_fails_in_every_compression() {
    let junk = b"this is not a tar archive at all, just some words that go on".repeat(20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &junk).expect("gzip");
    let inputs = [
        junk.clone(),
        gz.finish().expect("gzip"),
        zstd::encode_all(&junk[..], 1).expect("zstd"),
    ];
    for input in inputs {
        let err = apply(tmp.path(), &input[..], Vec::new(), &ApplyOptions::default())
            .expect_err("junk must fail");
        let msg = err.to_string();
        assert!(!msg.is_empty());
    }
    let _ = Path::new("");
}

#[test]
fn apply_at_an_open_directory_fd() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("tempdir");
    let fd = rustix::fs::open(
        tmp.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open");
    let input = std::fs::File::open(fixtures().join("tars/basic.tar.zst")).expect("open");
    let (report, _) = layerstore_archive::apply_at(fd, input, Vec::new(), &ApplyOptions::default())
        .expect("apply_at");
    assert_eq!(report.compression, Compression::Zstd);
    assert_eq!(
        std::fs::read(tmp.path().join("etc/passwd"))
            .expect("read")
            .len(),
        30
    );
}

#[test]
fn directory_modes_are_exactly_the_headers_even_under_a_setgid_parent() {
    // Like Go (and unlike GNU tar, which keeps an inherited S_ISGID), the header's mode wins.
    require_or_skip!(Capability::Root);
    let archive = RawTar::new()
        .raw(header(b"sg/", b'5', 0, b"", 0o2755), b"")
        .raw(header(b"sg/child/", b'5', 0, b"", 0o700), b"")
        .finish();
    let tmp = tempfile::tempdir().expect("tempdir");
    apply_bytes(tmp.path(), &archive, &ApplyOptions::default()).expect("apply");
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tmp.path().join(p))
                .expect("stat")
                .permissions(),
        ) & 0o7777
    };
    assert_eq!(mode("sg"), 0o2755);
    assert_eq!(mode("sg/child"), 0o700);
}
