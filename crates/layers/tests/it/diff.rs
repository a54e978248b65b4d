//! put / apply_diff / diff on vfs: digests recorded, tarballs given back byte for byte.

use crate::common;

use std::fs::File;

use common::{BASE_TARS, Scratch, fixture_tar, uncompressed};
use layerstore_layers::{Compression, DiffOptions, Error, LayerOptions};
use layerstore_testsupport::{Capability, require_or_skip};
use sha2::Digest as _;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(data))
}

#[test]
fn put_records_digests_and_diff_gives_back_every_fixture() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    for name in BASE_TARS {
        let raw = std::fs::read(fixture_tar(name)).unwrap();
        let tar = uncompressed(name);
        let (layer, _) = store
            .put(
                &LayerOptions::new().name(*name),
                Some(&mut File::open(fixture_tar(name)).unwrap()),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            layer.compressed_digest.as_ref().unwrap().as_str(),
            sha256(&raw),
            "{name}"
        );
        assert_eq!(layer.compressed_size, raw.len() as i64, "{name}");
        assert_eq!(
            layer.uncompressed_digest.as_ref().unwrap().as_str(),
            sha256(&tar),
            "{name}"
        );
        assert_eq!(layer.uncompressed_size, tar.len() as i64, "{name}");
        let expected_compression = if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        };
        assert_eq!(layer.compression, expected_compression, "{name}");
        assert!(!layer.is_incomplete());
        assert!(
            scratch
                .graph()
                .join(format!("vfs-layers/{}.tar-split.gz", layer.id))
                .is_file()
        );
        assert_eq!(store.size(name).unwrap(), Some(tar.len() as i64));

        let mut out = Vec::new();
        let options = DiffOptions {
            compression: Some(Compression::None),
        };
        store.diff(None, name, &options, &mut out).unwrap();
        assert!(out == tar, "{name}: diff differs from the applied tarball");

        // Default: the compression it was applied with (as Go).
        let mut out = Vec::new();
        store
            .diff(None, name, &DiffOptions::default(), &mut out)
            .unwrap();
        let back = match expected_compression {
            Compression::Gzip => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut v)
                    .unwrap();
                v
            }
            Compression::Zstd => zstd::decode_all(&out[..]).unwrap(),
            _ => out,
        };
        assert!(back == tar, "{name}: compressed diff differs");
    }
    // Lookups by digest.
    let tar = uncompressed("basic.tar");
    let digest: layerstore_layers::Digest = sha256(&tar).parse().unwrap();
    let by_diff: Vec<String> = store
        .layers_by_uncompressed_digest(&digest)
        .unwrap()
        .into_iter()
        .flat_map(|l| l.names)
        .collect();
    assert_eq!(by_diff, ["basic.tar", "basic.tar.gz", "basic.tar.zst"]);
    let gz: layerstore_layers::Digest =
        sha256(&std::fs::read(fixture_tar("basic.tar.gz")).unwrap())
            .parse()
            .unwrap();
    assert_eq!(store.layers_by_compressed_digest(&gz).unwrap().len(), 1);
}

#[test]
fn child_layer_with_whiteouts_and_changes() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .put(
            &LayerOptions::new().id("base"),
            Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
        )
        .unwrap();
    let (child, _) = store
        .put(
            &LayerOptions::new().id("child").parent("base"),
            Some(&mut File::open(fixture_tar("child-whiteouts.tar")).unwrap()),
        )
        .unwrap();
    assert_eq!(child.parent, "base");
    let mut out = Vec::new();
    store
        .diff(None, "child", &DiffOptions::default(), &mut out)
        .unwrap();
    assert!(out == uncompressed("child-whiteouts.tar"));
    let changes = store.changes(None, "child").unwrap();
    assert!(!changes.is_empty());
    assert!(store.diff_size(None, "child").unwrap() > 0);
    // Against another layer than the parent: the driver's export (no tar-split).
    let mut out = Vec::new();
    store
        .diff(
            Some("child"),
            "child",
            &DiffOptions {
                compression: Some(Compression::None),
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(out.len(), 1024, "a diff against itself is an empty tarball");
}

#[test]
fn layers_without_tar_split_diff_through_the_driver() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("empty")).unwrap();
    let mut out = Vec::new();
    store
        .diff(None, "empty", &DiffOptions::default(), &mut out)
        .unwrap();
    assert_eq!(
        out,
        vec![0u8; 1024],
        "an empty layer exports an empty tarball, as Go"
    );
}

#[test]
fn apply_diff_to_an_existing_layer_and_bzip2_xz_cannot_be_produced() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store.create(&LayerOptions::new().id("l")).unwrap();
    store
        .apply_diff("l", &mut File::open(fixture_tar("pax.tar")).unwrap())
        .unwrap();
    let layer = store.get("l").unwrap();
    assert_eq!(
        layer.uncompressed_size,
        uncompressed("pax.tar").len() as i64
    );
    for (compression, ext) in [(Compression::Bzip2, "tar.bz2"), (Compression::Xz, "tar.xz")] {
        let err = store
            .diff(
                None,
                "l",
                &DiffOptions {
                    compression: Some(compression),
                },
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedCompression(e) if e == ext));
        assert_eq!(
            err.to_string(),
            format!("unsupported compression format {ext}")
        );
    }
}

#[test]
fn template_layers_copy_contents_and_tar_split() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .put(
            &LayerOptions::new().id("t"),
            Some(&mut File::open(fixture_tar("basic.tar")).unwrap()),
        )
        .unwrap();
    store.set_metadata("t", "meta").unwrap();
    let mut opts = LayerOptions::new().id("copy");
    opts.template = Some("t".into());
    let copy = store.create(&opts).unwrap();
    assert_eq!(copy.metadata, "meta");
    assert_eq!(
        copy.uncompressed_digest,
        store.get("t").unwrap().uncompressed_digest
    );
    let mut out = Vec::new();
    store
        .diff(None, "copy", &DiffOptions::default(), &mut out)
        .unwrap();
    assert!(out == uncompressed("basic.tar"));
}

#[test]
fn mount_counts_persist_across_handles() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    store
        .create(&LayerOptions::new().id("m").name("named"))
        .unwrap();
    let path = store.mount("named", &Default::default()).unwrap();
    assert_eq!(path, scratch.graph().join("vfs/dir/m"));
    store.mount("m", &Default::default()).unwrap();
    assert_eq!(store.mounted("m").unwrap(), 2);
    let json = std::fs::read_to_string(scratch.run().join("vfs-layers/mountpoints.json")).unwrap();
    assert_eq!(
        json,
        format!(
            "[{{\"id\":\"m\",\"path\":\"{}\",\"count\":2}}]",
            path.display()
        )
    );
    let other = scratch.open();
    assert_eq!(other.mounted("named").unwrap(), 2);
    assert_eq!(
        other.get("m").unwrap().mount_point.as_deref(),
        Some(path.as_path())
    );
    assert_eq!(other.unmount(path.to_str().unwrap(), false).unwrap(), 1);
    assert_eq!(
        store.mounted("m").unwrap(),
        1,
        "the first handle sees the other's unmount"
    );
    assert_eq!(store.unmount("m", false).unwrap(), 0);
    assert_eq!(
        store.unmount("m", false).unwrap(),
        0,
        "unmounting an unmounted layer is harmless"
    );
    store.mount("m", &Default::default()).unwrap();
    store.mount("m", &Default::default()).unwrap();
    assert_eq!(
        store.unmount("m", true).unwrap(),
        0,
        "force drops every mount"
    );
    assert_eq!(
        std::fs::read(scratch.run().join("vfs-layers/mountpoints.json")).unwrap(),
        b"[]"
    );
}

#[test]
fn changes_that_leave_the_mounts_alone_leave_mountpoints_json_alone() {
    use std::os::unix::fs::MetadataExt;
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let mounts_json = scratch.run().join("vfs-layers/mountpoints.json");
    let inode = || {
        std::fs::metadata(&mounts_json)
            .expect("mountpoints.json")
            .ino()
    };
    let store = scratch.open();
    store.create(&LayerOptions::new().id("m")).unwrap();
    let written = inode();
    store.create(&LayerOptions::new().id("l")).unwrap();
    store
        .apply_diff("l", &mut File::open(fixture_tar("pax.tar")).unwrap())
        .unwrap();
    assert_eq!(inode(), written, "an import left the mounts as they were");

    // Another writer's change is kept, and a change of ours is written.
    scratch.open().mount("m", &Default::default()).unwrap();
    let theirs = inode();
    assert_ne!(theirs, written);
    store.create(&LayerOptions::new().id("n")).unwrap();
    assert_eq!(
        inode(),
        theirs,
        "the other handle's file already holds these mounts"
    );
    assert_eq!(store.mounted("m").unwrap(), 1);
    assert_eq!(store.unmount("m", false).unwrap(), 0);
    assert_ne!(inode(), theirs);
    assert_eq!(std::fs::read(&mounts_json).unwrap(), b"[]");
}
