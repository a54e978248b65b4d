//! Pushes to an OCI layout, an OCI archive and a registry; skopeo reads back the same image.

use layerstore_pull::sample::SampleCompression;
use layerstore_pull::{
    CopySelection, ImageDestination, ImageSource, Platform, PushImage, RegistryDestination,
    RegistryReference, copy_image, open_blob, push_image, read_config, resolve,
};
use layerstore_testsupport::registry::{Registry, RegistryAuth};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;
use crate::registry::options;

fn skopeo_inspect(reference: &str, raw: bool) -> Vec<u8> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    run(cmd.arg(reference)).into_bytes()
}

#[test]
fn a_push_to_an_oci_layout_and_archive_is_what_skopeo_reads() {
    require_or_skip!(Capability::Registry); // skopeo
    let dir = scratch();
    let image = sample(SampleCompression::Zstd);
    let resolved = resolve(&image, &"linux/amd64".parse::<Platform>().unwrap()).unwrap();
    let config = read_config(&image, &resolved).unwrap();
    let open_layer =
        |b: &layerstore_pull::Blob| -> layerstore_pull::Result<layerstore_pull::BlobStream> {
            Ok(Box::new(open_blob(&image, b)?))
        };
    let push = PushImage {
        manifest: resolved.manifest.clone(),
        config,
        open_layer: &open_layer,
    };
    let layout = dir.path().join("layout");
    let report = push_image(
        &layerstore_pull::OciLayoutDestination::create(&layout, Some("pushed")).unwrap(),
        &push,
        2,
    )
    .unwrap();
    assert_eq!((report.blobs_sent, report.blobs_skipped), (3, 0));
    // Again: every blob is there already.
    let report = push_image(
        &layerstore_pull::OciLayoutDestination::create(&layout, Some("again")).unwrap(),
        &push,
        2,
    )
    .unwrap();
    assert_eq!((report.blobs_sent, report.blobs_skipped), (0, 3));
    let archive = dir.path().join("pushed.tar");
    push_image(
        &layerstore_pull::OciArchiveDestination::create(&archive, Some("pushed")).unwrap(),
        &push,
        2,
    )
    .unwrap();

    for reference in [
        format!("oci:{}:pushed", layout.display()),
        format!("oci:{}:again", layout.display()),
        format!("oci-archive:{}:pushed", archive.display()),
    ] {
        assert_eq!(
            skopeo_inspect(&reference, true),
            resolved.manifest.bytes,
            "{reference}"
        );
        let info: serde_json::Value =
            serde_json::from_slice(&skopeo_inspect(&reference, false)).unwrap();
        let layers: Vec<String> = resolved
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        assert_eq!(info["Layers"], serde_json::json!(layers), "{reference}");
        assert_eq!(info["Digest"], resolved.manifest.digest.to_string());
    }
}

#[test]
fn a_failed_blob_leaves_no_archive_and_no_blob_file() {
    let dir = scratch();
    let image = sample(SampleCompression::Gzip);
    let resolved = resolve(&image, &"linux/amd64".parse::<Platform>().unwrap()).unwrap();
    let config = read_config(&image, &resolved).unwrap();
    // Every layer stream gives the wrong bytes.
    let open_layer =
        |_: &layerstore_pull::Blob| -> layerstore_pull::Result<layerstore_pull::BlobStream> {
            Ok(Box::new(std::io::Cursor::new(vec![0u8; 412])))
        };
    let push = PushImage {
        manifest: resolved.manifest.clone(),
        config,
        open_layer: &open_layer,
    };
    let archive = dir.path().join("broken.tar");
    let err = push_image(
        &layerstore_pull::OciArchiveDestination::create(&archive, None).unwrap(),
        &push,
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("blob sha256:"), "{err}");
    let layout = dir.path().join("layout");
    let dest = layerstore_pull::OciLayoutDestination::create(&layout, None).unwrap();
    assert!(push_image(&dest, &push, 1).is_err());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["layout"],
        "nothing but the layout directory is left"
    );
    let blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        blobs,
        [resolved.config.digest.hex().to_owned()],
        "only the config, which was right"
    );
    assert!(!layout.join("index.json").exists());
}

#[test]
fn a_push_to_the_registry_is_what_skopeo_reads_and_mounts_reuse_blobs() {
    require_or_skip!(Capability::Registry);
    for auth in [
        RegistryAuth::Anonymous,
        RegistryAuth::Basic {
            user: "u".into(),
            password: "p".into(),
        },
        RegistryAuth::Token {
            user: "u".into(),
            password: "p".into(),
        },
    ] {
        let registry = Registry::start(auth.clone()).unwrap();
        let creds = registry.creds();
        let opts = options(creds.as_deref());
        let image = multi_arch();
        let target =
            RegistryReference::parse(&format!("{}/pushed/multi:v1", registry.host())).unwrap();
        let dest = RegistryDestination::open(&target, &opts).unwrap();
        let report = copy_image(&image, &dest, &CopySelection::All, 2).unwrap();
        assert_eq!(
            report.blobs_sent, 4,
            "{auth:?}: two configs, two layers both platforms share"
        );
        let raw = registry.skopeo_inspect("pushed/multi:v1", true).unwrap();
        assert_eq!(raw, image.top_manifest().unwrap().bytes, "{auth:?}");

        // One platform to another repository: its blobs are mounted, not uploaded (with
        // token auth the token names only the target repository, so the registry declines
        // the mount and the blobs are uploaded).
        let other = RegistryReference::parse(&format!("{}/other:v2", registry.host())).unwrap();
        let dest = RegistryDestination::open(&other, &opts)
            .unwrap()
            .mount_from(target.clone());
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let report = copy_image(&image, &dest, &CopySelection::One(amd64.clone()), 2).unwrap();
        let mounted = if matches!(auth, RegistryAuth::Token { .. }) {
            0
        } else {
            3
        };
        assert_eq!(
            (report.blobs_sent, report.blobs_skipped),
            (3 - mounted, mounted),
            "{auth:?}"
        );
        let info: serde_json::Value =
            serde_json::from_slice(&registry.skopeo_inspect("other:v2", false).unwrap()).unwrap();
        let resolved = resolve(&image, &amd64).unwrap();
        assert_eq!(info["Digest"], resolved.manifest.digest.to_string());
        assert_eq!(info["Architecture"], "amd64");
        assert!(dest.has_blob(&resolved.layers[1]).unwrap());
    }
}
