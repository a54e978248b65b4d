//! Every local source against the same images: same manifest, config and layer digests;
//! damaged blobs are errors naming the blob and the source.

use std::io::Read;

use layerstore_pull::sample::SampleCompression;
use layerstore_pull::{
    Error, ImageReference, ImageSource, Platform, TransportOptions, open_blob, open_source,
    read_blob_range, read_config, resolve,
};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;

fn open(reference: &str) -> Box<dyn ImageSource> {
    open_source(
        &reference.parse::<ImageReference>().unwrap(),
        &TransportOptions::default(),
    )
    .unwrap()
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

#[test]
fn oci_layout_and_archive_give_the_same_image_and_digests() {
    let dir = scratch();
    for compression in [SampleCompression::Gzip, SampleCompression::Zstd] {
        let image = sample(compression);
        let layout = dir.path().join(format!("layout-{compression:?}"));
        let archive = dir.path().join(format!("image-{compression:?}.tar"));
        write_layout(&image, &layout, "v1");
        write_archive(&image, &archive, "v1");
        let expected = resolve(&image, &amd64()).unwrap();
        let mut measured = Vec::new();
        for reference in [
            format!("oci:{}:v1", layout.display()),
            format!("oci:{}", layout.display()),
            format!("oci-archive:{}:v1", archive.display()),
        ] {
            let source = open(&reference);
            let resolved = resolve(source.as_ref(), &amd64()).unwrap();
            assert_eq!(resolved, expected, "{reference}");
            assert_eq!(
                read_config(source.as_ref(), &resolved).unwrap(),
                read_config(&image, &expected).unwrap()
            );
            measured.push(measure_layers(source.as_ref(), &resolved));
        }
        assert!(measured.windows(2).all(|w| w[0] == w[1]));
        let expected_compression = match compression {
            SampleCompression::Gzip => layerstore_model::Compression::Gzip,
            SampleCompression::Zstd => layerstore_model::Compression::Zstd,
        };
        assert!(
            measured[0]
                .iter()
                .all(|m| m.compression == expected_compression)
        );
        assert_eq!(
            measured[0][0].uncompressed_digest.hex(),
            "a663e07bbe8108ff34f5efc30caf6ca4a24695a51e2c15c2620ccc1eb78f7edb"
        );
    }
}

#[test]
fn a_docker_archive_gives_the_config_and_the_layers_uncompressed() {
    require_or_skip!(Capability::Registry); // skopeo writes the archive
    let dir = scratch();
    let image = sample(SampleCompression::Gzip);
    let layout = dir.path().join("layout");
    write_layout(&image, &layout, "v1");
    let archive = dir.path().join("saved.tar");
    write_docker_archive(&layout, "v1", &archive, "sample:v1");
    let expected = resolve(&image, &amd64()).unwrap();
    let expected_measured = measure_layers(&image, &expected);

    for reference in [
        format!("docker-archive:{}", archive.display()),
        format!("docker-archive:{}:sample:v1", archive.display()),
        format!("docker-archive:{}:@0", archive.display()),
    ] {
        let source = open(&reference);
        let resolved = resolve(source.as_ref(), &amd64()).unwrap();
        // The same config bytes (containers/image calls it a Docker config here).
        assert_eq!(
            resolved.config.digest, expected.config.digest,
            "{reference}"
        );
        assert_eq!(resolved.config.size, expected.config.size, "{reference}");
        let measured = measure_layers(source.as_ref(), &resolved);
        for ((blob, m), e) in resolved
            .layers
            .iter()
            .zip(&measured)
            .zip(&expected_measured)
        {
            assert_eq!(blob.digest, e.uncompressed_digest);
            assert_eq!(blob.size, e.uncompressed_size);
            assert_eq!(m.uncompressed_digest, e.uncompressed_digest);
            assert_eq!(m.compression, layerstore_model::Compression::None);
        }
        assert_eq!(
            source.image_names(resolved.top()).unwrap(),
            // skopeo recorded the tag as docker.io/library/sample:v1.
            ["docker.io/library/sample:v1"],
            "{reference}"
        );
    }
    let missing = format!("docker-archive:{}:other:v1", archive.display());
    let err = open_source(&missing.parse().unwrap(), &TransportOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn a_multi_arch_index_resolves_to_the_asked_platform() {
    let dir = scratch();
    let image = multi_arch();
    let layout = dir.path().join("layout");
    write_layout(&image, &layout, "multi");
    let source = open(&format!("oci:{}:multi", layout.display()));
    let amd = resolve(source.as_ref(), &amd64()).unwrap();
    let arm = resolve(source.as_ref(), &"linux/arm64".parse().unwrap()).unwrap();
    assert_eq!(amd.index, arm.index);
    assert!(amd.index.as_ref().unwrap().is_index());
    assert_ne!(amd.manifest.digest, arm.manifest.digest);
    let arch = |r: &layerstore_pull::ResolvedImage| {
        let config: serde_json::Value =
            serde_json::from_slice(&read_config(source.as_ref(), r).unwrap()).unwrap();
        config["architecture"].as_str().unwrap().to_owned()
    };
    assert_eq!(arch(&amd), "amd64");
    assert_eq!(arch(&arm), "arm64");
    let err = resolve(source.as_ref(), &"linux/s390x".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}

#[test]
fn a_damaged_or_truncated_blob_is_an_error_naming_the_blob_and_the_source() {
    let dir = scratch();
    let image = sample(SampleCompression::Gzip);
    let layout = dir.path().join("layout");
    write_layout(&image, &layout, "v1");
    let reference = format!("oci:{}:v1", layout.display());
    let resolved = resolve(&image, &amd64()).unwrap();
    let layer = &resolved.layers[1];
    let path = layout.join("blobs/sha256").join(layer.digest.hex());
    let good = std::fs::read(&path).unwrap();

    let mut bad = good.clone();
    let last = bad.len() - 9;
    bad[last] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let source = open(&reference);
    let err = read_whole(source.as_ref(), layer).unwrap_err();
    let text = Error::from_io(&err).unwrap().to_string();
    assert!(
        text.contains(layer.digest.as_str())
            && text.contains(&reference)
            && text.contains("digest mismatch"),
        "{text}"
    );

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = read_whole(source.as_ref(), layer).unwrap_err();
    let text = Error::from_io(&err).unwrap().to_string();
    assert!(
        text.contains(layer.digest.as_str())
            && text.contains(&reference)
            && text.contains("truncated"),
        "{text}"
    );

    // A consumer that stops early (as a tar reader does) still gets the check.
    std::fs::write(&path, &bad).unwrap();
    let mut reader = open_blob(source.as_ref(), layer).unwrap();
    let mut head = [0u8; 10];
    reader.read_exact(&mut head).unwrap();
    let err = reader.verify_to_end().unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    // A manifest replaced under its digest.
    std::fs::write(&path, &good).unwrap();
    let manifest_path = layout
        .join("blobs/sha256")
        .join(resolved.manifest.digest.hex());
    std::fs::write(&manifest_path, b"{\"schemaVersion\":2,\"config\":{}}").unwrap();
    let err = resolve(open(&reference).as_ref(), &amd64()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn archives_are_read_in_place_and_ranges_are_served() {
    let dir = scratch();
    let image = sample(SampleCompression::Gzip);
    let archive = dir.path().join("image.tar");
    write_archive(&image, &archive, "v1");
    let source = open(&format!("oci-archive:{}:v1", archive.display()));
    let resolved = resolve(source.as_ref(), &amd64()).unwrap();
    let layer = &resolved.layers[0];
    let whole = read_whole(source.as_ref(), layer).unwrap();
    assert_eq!(
        read_blob_range(source.as_ref(), layer, 10, 20).unwrap(),
        &whole[10..30]
    );
    assert!(read_blob_range(source.as_ref(), layer, whole.len() as u64 - 5, 10).is_err());
    // Nothing was extracted beside the archive.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn names_are_what_podman_records() {
    let dir = scratch();
    let image = sample(SampleCompression::Gzip);
    let layout = dir.path().join("layout");
    write_layout(&image, &layout, "v1");
    let archive = dir.path().join("image.tar");
    write_archive(&image, &archive, "v1");
    let resolved_dir = std::fs::canonicalize(&layout).unwrap();
    let source = open(&format!("oci:{}:v1", layout.display()));
    let top = source.top_manifest().unwrap();
    assert_eq!(
        source.image_names(&top).unwrap(),
        [format!(
            "localhost/{}:latest",
            resolved_dir.display().to_string().trim_start_matches('/')
        )]
    );
    // The archive's ref name is the whole name podman gives ("v1" → localhost/v1:latest).
    let source = open(&format!("oci-archive:{}:v1", archive.display()));
    assert_eq!(source.image_names(&top).unwrap(), ["localhost/v1:latest"]);
}
