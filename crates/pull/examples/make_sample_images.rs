//! Writes the sample image the README's demo pulls: `OUT/image` (an OCI layout) and
//! `OUT/image-oci.tar` (the same as an OCI archive), both with the ref name `demo`, built from
//! `examples/layer.tar` by [`layerstore_pull::sample::SampleImage`].
//!
//! `cargo run -p layerstore-pull --example make_sample_images -- examples`

use std::path::PathBuf;

use layerstore_pull::sample::{SampleCompression, SampleImage};
use layerstore_pull::{CopySelection, OciArchiveDestination, OciLayoutDestination, copy_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: make_sample_images OUT_DIR")?,
    );
    let base = std::fs::read(out.join("layer.tar"))?;
    let image = SampleImage::new(&base, SampleCompression::Gzip)?;
    let all = CopySelection::All;
    let layout = out.join("image");
    if layout.exists() {
        std::fs::remove_dir_all(&layout)?;
    }
    copy_image(
        &image,
        &OciLayoutDestination::create(&layout, Some("demo"))?,
        &all,
        2,
    )?;
    copy_image(
        &image,
        &OciArchiveDestination::create(&out.join("image-oci.tar"), Some("demo"))?,
        &all,
        2,
    )?;
    println!(
        "wrote {} and {}",
        layout.display(),
        out.join("image-oci.tar").display()
    );
    Ok(())
}
