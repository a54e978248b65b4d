//! The commit plan against real `podman pull`s into scratch vfs stores: layer IDs, layer
//! records, image ID, digest, names, metadata and big data must be what podman 4.3 wrote,
//! for pulls from an OCI layout, a docker-archive, a registry and a multi-arch index.

use std::path::Path;
use std::process::Command;

use layerstore_model::{Image, Layer, parse_images_json, parse_layers_json};
use layerstore_pull::commit::{ImagePlan, plan};
use layerstore_pull::sample::SampleCompression;
use layerstore_pull::{
    ImageReference, Platform, RegistryOptions, TransportOptions, open_source, read_config, resolve,
};
use layerstore_testsupport::registry::RegistryAuth;
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;

/// `podman pull` of `reference` into a new vfs store under `root`; its images and layers.
fn podman_pull(root: &Path, reference: &str) -> (Vec<Image>, Vec<Layer>) {
    run(Command::new("podman")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "pull",
            "--quiet",
            "--tls-verify=false",
        ])
        .arg(reference));
    let images =
        parse_images_json(&std::fs::read(root.join("root/vfs-images/images.json")).unwrap())
            .unwrap();
    let layers =
        parse_layers_json(&std::fs::read(root.join("root/vfs-layers/layers.json")).unwrap())
            .unwrap();
    (images, layers)
}

/// Our plan for `reference`, its layer records completed with what streaming measured.
fn our_plan(reference: &str) -> (ImagePlan, Vec<Layer>) {
    let options = TransportOptions {
        registry: RegistryOptions {
            tls_verify: false,
            auth_files: Some(Vec::new()),
            ..RegistryOptions::default()
        },
    };
    let source = open_source(&reference.parse::<ImageReference>().unwrap(), &options).unwrap();
    let image = resolve(source.as_ref(), &Platform::host()).unwrap();
    let config = read_config(source.as_ref(), &image).unwrap();
    let names = source.image_names(image.top()).unwrap();
    let planned = plan(&source.location(), &image, &config, names).unwrap();
    let measured = measure_layers(source.as_ref(), &image);
    let records = planned
        .layers
        .iter()
        .zip(&measured)
        .map(|(l, m)| l.record(&source.location(), m).unwrap())
        .collect();
    (planned, records)
}

fn compare(reference: &str, podman_reference: &str, expected_names: &[String]) {
    let dir = scratch();
    let (images, layers) = podman_pull(dir.path(), podman_reference);
    let (planned, records) = our_plan(reference);
    assert_eq!(images.len(), 1);
    let theirs = &images[0];
    let ours = &planned.image;
    assert_eq!(ours.id, theirs.id, "{reference}: image ID");
    assert_eq!(ours.digest, theirs.digest, "{reference}: digest");
    assert_eq!(ours.names, theirs.names, "{reference}: names");
    assert_eq!(ours.names, expected_names, "{reference}: names");
    assert_eq!(
        ours.names_history, theirs.names_history,
        "{reference}: names-history"
    );
    assert_eq!(ours.top_layer, theirs.top_layer, "{reference}: top layer");
    assert_eq!(ours.metadata, theirs.metadata, "{reference}: metadata");
    assert_eq!(
        ours.big_data_names, theirs.big_data_names,
        "{reference}: big-data names and order"
    );
    assert_eq!(
        ours.big_data_sizes, theirs.big_data_sizes,
        "{reference}: big-data sizes"
    );
    assert_eq!(
        ours.big_data_digests, theirs.big_data_digests,
        "{reference}: big-data digests"
    );
    assert_eq!(ours.created, theirs.created, "{reference}: created");
    for item in &planned.big_data {
        let file = dir
            .path()
            .join("root/vfs-images")
            .join(&theirs.id)
            .join(layerstore_model::big_data_file_name(&item.key));
        assert_eq!(
            std::fs::read(&file).unwrap(),
            item.bytes,
            "{reference}: big data {}",
            item.key
        );
    }
    assert_eq!(records.len(), layers.len(), "{reference}: layer count");
    for ours in &records {
        let theirs = layers
            .iter()
            .find(|l| l.id == ours.id)
            .unwrap_or_else(|| panic!("{reference}: podman has no layer {}", ours.id));
        let fields = |l: &Layer| {
            (
                l.parent.clone(),
                l.compressed_digest.clone(),
                l.compressed_size,
                l.uncompressed_digest.clone(),
                l.uncompressed_size,
                l.compression,
            )
        };
        assert_eq!(
            fields(ours),
            fields(theirs),
            "{reference}: layer {}",
            ours.id
        );
    }
}

#[test]
fn plans_match_podman_pulls_from_oci_layouts_and_archives() {
    require_or_skip!(Capability::Podman, Capability::Registry);
    let dir = scratch();
    for compression in [SampleCompression::Gzip, SampleCompression::Zstd] {
        let layout = dir.path().join(format!(
            "layout-{}",
            format!("{compression:?}").to_lowercase()
        ));
        write_layout(&sample(compression), &layout, "v1");
        let reference = format!("oci:{}:v1", layout.display());
        let resolved = std::fs::canonicalize(&layout).unwrap();
        compare(
            &reference,
            &reference,
            &[format!(
                "localhost/{}:latest",
                resolved.display().to_string().trim_start_matches('/')
            )],
        );
    }
    let layout = dir.path().join("layout-gzip");
    let saved = dir.path().join("saved.tar");
    write_docker_archive(&layout, "v1", &saved, "quay.io/sample/image:v1");
    let reference = format!("docker-archive:{}", saved.display());
    compare(
        &reference,
        &reference,
        &["quay.io/sample/image:v1".to_owned()],
    );
    let archive = dir.path().join("oci.tar");
    write_archive(&sample(SampleCompression::Gzip), &archive, "sample");
    let reference = format!("oci-archive:{}:sample", archive.display());
    compare(
        &reference,
        &reference,
        &["localhost/sample:latest".to_owned()],
    );
}

#[test]
fn plans_match_podman_pulls_from_a_registry_single_and_multi_arch() {
    require_or_skip!(Capability::Podman, Capability::Registry);
    let (registry, _dir) = crate::registry::registry_with_samples(RegistryAuth::Anonymous);
    for repo in ["sample:v1", "multi:v1"] {
        let name = format!("{}/{repo}", registry.host());
        compare(
            &format!("docker://{name}"),
            &name,
            std::slice::from_ref(&name),
        );
    }
}
