//! `pull_into_store` against real podman: a pull from each source into a scratch store gives
//! the records a `podman pull` gives; podman lists, creates and mounts what we pulled (vfs
//! and overlay); either tool's pull after the other's reuses every layer; the Go tool lists
//! the image; a damaged blob fails cleanly and leaves nothing listed.

use std::path::Path;
use std::process::Command;

use layerstore::{Store, StoreOptions};
use layerstore_model::{Image, Layer};
use layerstore_pull::sample::SampleCompression;
use layerstore_pull::{
    ImageReference, PullOptions, TransportOptions, open_source, pull_into_store,
};
use layerstore_testsupport::tree::{Root, assert_same_tree, snapshot};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;

pub(crate) fn open_store(root: &Path, driver: &str) -> Store {
    Store::open(StoreOptions::new(
        root.join("root"),
        root.join("run"),
        driver,
    ))
    .unwrap()
}

fn pull(store: &Store, reference: &str) -> layerstore_pull::Result<layerstore_pull::PullReport> {
    let source = open_source(
        &reference.parse::<ImageReference>().unwrap(),
        &TransportOptions::default(),
    )?;
    pull_into_store(store, source.as_ref(), &PullOptions::default())
}

pub(crate) fn podman(root: &Path, driver: &str) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", driver]);
    cmd
}

/// The fields of a layer record a pull decides (not `created`).
pub(crate) fn layer_fields(l: &Layer) -> String {
    format!(
        "{:?}",
        (
            l.id.clone(),
            l.parent.clone(),
            l.compressed_digest.clone(),
            l.compressed_size,
            l.uncompressed_digest.clone(),
            l.uncompressed_size,
            l.compression,
            l.uids.clone(),
            l.gids.clone(),
        )
    )
}

/// The fields of an image record a pull decides.
fn image_fields(i: &Image) -> String {
    format!(
        "{:?}",
        (
            i.id.clone(),
            i.digest.clone(),
            i.names.clone(),
            i.names_history.clone(),
            i.top_layer.clone(),
            i.metadata.clone(),
            i.big_data_names.clone(),
            i.big_data_sizes.clone(),
            i.big_data_digests.clone(),
            i.created,
        )
    )
}

pub(crate) fn sorted_layers(store: &Store) -> Vec<Layer> {
    let mut layers = store.layers().unwrap();
    layers.sort_by(|a, b| a.id.cmp(&b.id));
    layers
}

/// Pulls `reference` with us into one store and with podman into another; the records match.
fn compare_with_podman(reference: &str, driver: &str) {
    let ours_dir = scratch();
    let theirs_dir = scratch();
    let ours = open_store(ours_dir.path(), driver);
    let report = pull(&ours, reference).unwrap();
    assert!(report.layers_reused.is_empty());
    run(podman(theirs_dir.path(), driver).args(["pull", "--quiet", reference]));
    let theirs = open_store(theirs_dir.path(), driver);
    let (our_layers, their_layers) = (sorted_layers(&ours), sorted_layers(&theirs));
    assert_eq!(
        our_layers.iter().map(layer_fields).collect::<Vec<_>>(),
        their_layers.iter().map(layer_fields).collect::<Vec<_>>(),
        "{reference}: layer records"
    );
    let (our_images, their_images) = (ours.images().unwrap(), theirs.images().unwrap());
    assert_eq!(
        our_images.iter().map(image_fields).collect::<Vec<_>>(),
        their_images.iter().map(image_fields).collect::<Vec<_>>(),
        "{reference}: image records"
    );
    let image = &our_images[0];
    for key in &image.big_data_names {
        assert_eq!(
            ours.image_big_data(&image.id, key).unwrap(),
            theirs.image_big_data(&image.id, key).unwrap(),
            "{reference}: big data {key}"
        );
    }
    assert_eq!(report.image.id, image.id);
    // Each layer's diff, rebuilt from its tar-split, is the blob's uncompressed stream.
    for layer in &our_layers {
        let mut diff = Vec::new();
        ours.diff(
            None,
            &layer.id,
            &layerstore::DiffOptions {
                compression: Some(layerstore_model::Compression::None),
            },
            &mut diff,
        )
        .unwrap();
        assert_eq!(
            Some(
                format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&diff))
                    .parse()
                    .unwrap()
            ),
            layer.uncompressed_digest,
            "{reference}: diff of layer {}",
            layer.id
        );
    }
}

#[test]
fn pulls_from_each_local_source_write_what_podman_writes() {
    require_or_skip!(Capability::Root, Capability::Podman, Capability::Skopeo);
    let dir = scratch();
    let layout = dir.path().join("layout");
    write_layout(&sample(SampleCompression::Gzip), &layout, "v1");
    compare_with_podman(&format!("oci:{}:v1", layout.display()), "vfs");
    let zstd = dir.path().join("layout-zstd");
    write_layout(&sample(SampleCompression::Zstd), &zstd, "v1");
    compare_with_podman(&format!("oci:{}:v1", zstd.display()), "vfs");
    let archive = dir.path().join("oci.tar");
    write_archive(&sample(SampleCompression::Gzip), &archive, "sample");
    compare_with_podman(&format!("oci-archive:{}:sample", archive.display()), "vfs");
    let saved = dir.path().join("saved.tar");
    write_docker_archive(&layout, "v1", &saved, "quay.io/sample/image:v1");
    compare_with_podman(&format!("docker-archive:{}", saved.display()), "vfs");
}

#[test]
fn pulls_from_a_registry_write_what_podman_writes() {
    require_or_skip!(Capability::Root, Capability::Podman, Capability::Registry);
    let (registry, _dir) = crate::registry::registry_with_samples(
        layerstore_testsupport::registry::RegistryAuth::Anonymous,
    );
    for repo in ["sample:v1", "multi:v1"] {
        let name = format!("{}/{repo}", registry.host());
        let ours_dir = scratch();
        let ours = open_store(ours_dir.path(), "vfs");
        let source = open_source(
            &format!("docker://{name}")
                .parse::<ImageReference>()
                .unwrap(),
            &TransportOptions {
                registry: layerstore_pull::RegistryOptions {
                    tls_verify: false,
                    auth_files: Some(Vec::new()),
                    ..Default::default()
                },
            },
        )
        .unwrap();
        pull_into_store(&ours, source.as_ref(), &PullOptions::default()).unwrap();
        let theirs_dir = scratch();
        run(podman(theirs_dir.path(), "vfs").args([
            "pull",
            "--quiet",
            "--tls-verify=false",
            &name,
        ]));
        let theirs = open_store(theirs_dir.path(), "vfs");
        assert_eq!(
            sorted_layers(&ours)
                .iter()
                .map(layer_fields)
                .collect::<Vec<_>>(),
            sorted_layers(&theirs)
                .iter()
                .map(layer_fields)
                .collect::<Vec<_>>(),
            "{name}: layer records"
        );
        assert_eq!(
            ours.images()
                .unwrap()
                .iter()
                .map(image_fields)
                .collect::<Vec<_>>(),
            theirs
                .images()
                .unwrap()
                .iter()
                .map(image_fields)
                .collect::<Vec<_>>(),
            "{name}: image records"
        );
    }
}

/// podman lists, creates and mounts what we pulled; the mounted tree is the one podman's own
/// pull gives; a podman pull afterwards reuses every layer; the Go tool lists the image.
fn podman_uses_our_pull(driver: &str) {
    let dir = scratch();
    let layout = dir.path().join("layout");
    write_layout(&sample(SampleCompression::Gzip), &layout, "v1");
    let reference = format!("oci:{}:v1", layout.display());
    let ours_dir = scratch();
    let report = {
        let store = open_store(ours_dir.path(), driver);
        pull(&store, &reference).unwrap()
    };
    let id = report.image.id.clone();
    let images =
        run(podman(ours_dir.path(), driver).args(["images", "--no-trunc", "--format", "{{.ID}}"]));
    assert_eq!(images.trim(), format!("sha256:{id}"), "podman images");

    let mounted_tree = |root: &Path| {
        let container = run(podman(root, driver).args(["create", &id, "/usr/bin/hello"]));
        let container = container.trim().to_owned();
        let mount = run(podman(root, driver).args(["mount", &container]));
        let tree = snapshot(Path::new(mount.trim()));
        let motd = std::fs::read(Path::new(mount.trim()).join("etc/motd")).unwrap();
        assert!(
            !Path::new(mount.trim()).join("usr/bin/hi").exists(),
            "the second layer's whiteout hides usr/bin/hi"
        );
        run(podman(root, driver).args(["umount", &container]));
        run(podman(root, driver).args(["rm", &container]));
        (tree, motd)
    };
    let (our_tree, our_motd) = mounted_tree(ours_dir.path());
    assert!(!our_motd.is_empty());

    let theirs_dir = scratch();
    run(podman(theirs_dir.path(), driver).args(["pull", "--quiet", &reference]));
    let (their_tree, their_motd) = mounted_tree(theirs_dir.path());
    assert_eq!(our_motd, their_motd);
    assert_same_tree(
        &format!("{driver}: the container's tree"),
        &their_tree,
        &our_tree,
        Root::Skip,
    );

    // podman's pull into our store reuses every layer we made.
    let before = {
        let store = open_store(ours_dir.path(), driver);
        sorted_layers(&store)
    };
    run(podman(ours_dir.path(), driver).args(["pull", "--quiet", &reference]));
    let store = open_store(ours_dir.path(), driver);
    assert_eq!(
        sorted_layers(&store)
            .iter()
            .map(|l| l.id.clone())
            .collect::<Vec<_>>(),
        before.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        "podman reused our layers"
    );
    drop(store);

    let listed = layerstore_testsupport::go::run_go_ok(
        &ours_dir.path().join("root"),
        &ours_dir.path().join("run"),
        driver,
        &["images"],
    );
    assert!(
        String::from_utf8_lossy(&listed).contains(&id),
        "the Go tool lists image {id}: {}",
        String::from_utf8_lossy(&listed)
    );

    // Ours after podman's reuses every layer podman made.
    let store = open_store(theirs_dir.path(), driver);
    let before = sorted_layers(&store);
    let again = pull(&store, &reference).unwrap();
    assert!(again.layers_made.is_empty(), "{again:?}");
    assert_eq!(again.layers_reused.len(), 2);
    assert_eq!(
        sorted_layers(&store)
            .iter()
            .map(layer_fields)
            .collect::<Vec<_>>(),
        before.iter().map(layer_fields).collect::<Vec<_>>()
    );
}

#[test]
fn podman_uses_what_we_pulled_on_vfs() {
    require_or_skip!(Capability::Root, Capability::Podman, Capability::GoTool);
    podman_uses_our_pull("vfs");
}

#[test]
fn podman_uses_what_we_pulled_on_overlay() {
    require_or_skip!(
        Capability::Root,
        Capability::Overlay,
        Capability::Podman,
        Capability::GoTool
    );
    podman_uses_our_pull("overlay");
}

/// A layout whose second layer blob is damaged by `damage`.
fn damaged_layout(dir: &Path, damage: impl Fn(&mut Vec<u8>)) -> String {
    let layout = dir.join("layout");
    let image = sample(SampleCompression::Gzip);
    write_layout(&image, &layout, "v1");
    let source = open_source(
        &format!("oci:{}:v1", layout.display())
            .parse::<ImageReference>()
            .unwrap(),
        &TransportOptions::default(),
    )
    .unwrap();
    let resolved =
        layerstore_pull::resolve(source.as_ref(), &layerstore_pull::Platform::host()).unwrap();
    let blob = &resolved.layers[1];
    let path = layout.join("blobs/sha256").join(blob.digest.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    blob.digest.to_string()
}

#[test]
fn a_damaged_blob_fails_and_leaves_nothing_listed() {
    require_or_skip!(Capability::Root);
    for (what, damage) in [
        (
            "truncated",
            (|b: &mut Vec<u8>| b.truncate(b.len() / 2)) as fn(&mut Vec<u8>),
        ),
        ("corrupt", |b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 12] ^= 0xff;
        }),
    ] {
        for driver in ["vfs", "overlay"] {
            if driver == "overlay"
                && !layerstore_testsupport::satisfied(
                    Capability::Overlay.missing_reason().is_none(),
                    "overlay is not usable here",
                )
            {
                continue;
            }
            let dir = scratch();
            let digest = damaged_layout(dir.path(), damage);
            let store = open_store(dir.path(), driver);
            let err = pull(
                &store,
                &format!("oci:{}:v1", dir.path().join("layout").display()),
            )
            .unwrap_err();
            assert!(err.to_string().contains(&digest), "{what}: {err}");
            assert!(
                store.layers().unwrap().is_empty(),
                "{what} {driver}: layers left"
            );
            assert!(
                store.images().unwrap().is_empty(),
                "{what} {driver}: image left"
            );
            let staging = dir.path().join("root").join(driver).join("staging");
            let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "{what} {driver}: staging directories left");
            let check = store.layer_store().check(&Default::default()).unwrap();
            assert!(check.problems.is_empty(), "{what} {driver}: {check:?}");
        }
    }
}

#[test]
fn an_image_pushed_from_the_store_is_the_one_pulled() {
    require_or_skip!(Capability::Root, Capability::Skopeo, Capability::Registry);
    let dir = scratch();
    let layout = dir.path().join("layout");
    write_layout(&sample(SampleCompression::Gzip), &layout, "v1");
    let store = open_store(dir.path(), "vfs");
    let pulled = pull(&store, &format!("oci:{}:v1", layout.display())).unwrap();
    let source_layers = store.layers().unwrap();

    // To an OCI layout: skopeo reads it, and pulling it back gives the same layer IDs.
    let pushed = dir.path().join("pushed");
    let dest = layerstore_pull::open_destination(
        &format!("oci:{}:back", pushed.display())
            .parse::<ImageReference>()
            .unwrap(),
        &TransportOptions::default(),
    )
    .unwrap();
    layerstore_pull::push_from_store(&store, &pulled.image.id, dest.as_ref(), 2).unwrap();
    let inspected = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:back", pushed.display())));
    let manifest: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(format!("sha256:{}", pulled.image.id).as_str())
    );
    let again_dir = scratch();
    let again = open_store(again_dir.path(), "vfs");
    let report = pull(&again, &format!("oci:{}:back", pushed.display())).unwrap();
    assert_eq!(report.image.id, pulled.image.id);
    let ids = |layers: Vec<Layer>| {
        let mut ids: Vec<_> = layers
            .into_iter()
            .map(|l| (l.id, l.uncompressed_digest))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(again.layers().unwrap()), ids(source_layers));

    // To a registry: skopeo inspects it.
    let registry = layerstore_testsupport::registry::Registry::start(
        layerstore_testsupport::registry::RegistryAuth::Anonymous,
    )
    .unwrap();
    let name = format!("{}/pushed:v1", registry.host());
    let dest = layerstore_pull::open_destination(
        &format!("docker://{name}")
            .parse::<ImageReference>()
            .unwrap(),
        &TransportOptions {
            registry: layerstore_pull::RegistryOptions {
                tls_verify: false,
                auth_files: Some(Vec::new()),
                ..Default::default()
            },
        },
    )
    .unwrap();
    layerstore_pull::push_from_store(&store, &pulled.image.id, dest.as_ref(), 2).unwrap();
    let inspected = registry.skopeo_inspect("pushed:v1", false).unwrap();
    let inspected: serde_json::Value = serde_json::from_slice(&inspected).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().map(Vec::len),
        Some(2),
        "{inspected}"
    );
}
