//! Shared helpers: the sample images written to scratch directories in every local format.

use std::path::Path;
use std::process::Command;

use layerstore_pull::sample::{SampleCompression, SampleImage};
use layerstore_pull::{
    CopySelection, ImageSource, OciArchiveDestination, OciLayoutDestination, ResolvedImage,
    copy_image, open_blob,
};
use layerstore_testsupport::scratch::Scratch;

/// `examples/layer.tar`, the base layer of every sample image.
pub fn base_layer() -> Vec<u8> {
    std::fs::read(layerstore_testsupport::workspace_root().join("examples/layer.tar")).unwrap()
}

pub fn sample(compression: SampleCompression) -> SampleImage {
    SampleImage::new(&base_layer(), compression).unwrap()
}

pub fn multi_arch() -> SampleImage {
    SampleImage::multi_arch(&base_layer()).unwrap()
}

/// Writes `image` as an OCI layout `dir` with ref name `tag`.
pub fn write_layout(image: &SampleImage, dir: &Path, tag: &str) {
    copy_image(
        image,
        &OciLayoutDestination::create(dir, Some(tag)).unwrap(),
        &CopySelection::All,
        2,
    )
    .unwrap();
}

/// Writes `image` as an OCI archive `file` with ref name `tag`.
pub fn write_archive(image: &SampleImage, file: &Path, tag: &str) {
    copy_image(
        image,
        &OciArchiveDestination::create(file, Some(tag)).unwrap(),
        &CopySelection::All,
        2,
    )
    .unwrap();
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:FILE:NAME`, what `podman save` writes.
pub fn write_docker_archive(layout: &Path, tag: &str, file: &Path, name: &str) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker-archive:{}:{name}", file.display())));
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads every layer blob of `image` through `open_blob` (so digests are checked) and gives
/// what each measured decompressed.
pub fn measure_layers(
    source: &dyn ImageSource,
    image: &ResolvedImage,
) -> Vec<layerstore_pull::commit::LayerDigests> {
    layerstore_pull::fetch_blobs(source, &image.layers, 2, |_, reader| {
        layerstore_pull::commit::measure_layer(reader).map_err(|e| {
            layerstore_pull::Error::Invalid {
                location: source.location(),
                what: "layer".into(),
                reason: e.to_string(),
            }
        })
    })
    .unwrap()
}

/// The whole of a blob, checked.
pub fn read_whole(
    source: &dyn ImageSource,
    blob: &layerstore_pull::Blob,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut open_blob(source, blob).unwrap(), &mut out)?;
    Ok(out)
}

/// A scratch directory whose path is a valid image name (lower case), as podman needs for
/// `oci:` layouts it names after their path; dropping it detaches what podman, skopeo or the
/// Go tool left mounted beneath it.
pub fn scratch() -> Scratch {
    Scratch::with_prefix("lspull-")
}

/// `err` is a registry error of `kind` whose message names every one of `needles`.
pub fn assert_registry_error(
    err: &layerstore_pull::Error,
    kind: layerstore_pull::RegistryErrorKind,
    needles: &[&str],
) {
    let text = err.to_string();
    assert_eq!(err.registry_kind(), Some(kind), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "{text} does not name {needle:?}");
    }
}
