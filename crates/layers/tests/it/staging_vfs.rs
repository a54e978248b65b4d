//! Staged layers through the vfs driver: `put_with_differ` fills `vfs/staging/<random>`, the
//! driver lays it over the new layer's copy of its parent and swaps it into `vfs/dir/<id>`;
//! the layer then gives back exactly the tarball the differ applied.

use crate::common;

use std::fs;

use common::{Scratch, TarballDiffer, fixture_tar, uncompressed};
use layerstore_layers::{DiffOptions, DifferOptions, LayerOptions, LayerStore};
use layerstore_testsupport::{Capability, require_or_skip};

fn diff_of(store: &LayerStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let options = DiffOptions {
        compression: Some(layerstore_layers::Compression::None),
    };
    store.diff(None, key, &options, &mut out).expect("diff");
    out
}

#[test]
fn put_with_differ_on_vfs_gives_back_the_tarballs() {
    // Overlay-style deletion markers in the staging directory are device nodes.
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = scratch.open();
    let base = fs::read(fixture_tar("basic.tar.gz")).expect("fixture");
    let (plain, _) = store
        .put(&LayerOptions::new().id("plain"), Some(&mut &base[..]))
        .expect("plain put");

    let (staged, output) = store
        .put_with_differ(
            &LayerOptions::new().id("staged"),
            &DifferOptions::default(),
            &mut TarballDiffer(base),
        )
        .expect("put_with_differ");
    assert!(!staged.is_incomplete());
    assert!(!output.target.exists(), "the staging directory is consumed");
    assert_eq!(staged.uncompressed_digest, plain.uncompressed_digest);
    assert_eq!(staged.uncompressed_size, plain.uncompressed_size);
    assert!(diff_of(&store, "staged") == uncompressed("basic.tar.gz"));
    assert_eq!(
        store.differ_target("staged").expect("target"),
        scratch.graph().join("vfs/dir/staged")
    );

    // A child with whiteouts and an opaque directory, staged on top of the staged base.
    let child = fs::read(fixture_tar("child-whiteouts.tar")).expect("fixture");
    let (staged_child, _) = store
        .put_with_differ(
            &LayerOptions::new().id("staged-child").parent("staged"),
            &DifferOptions::default(),
            &mut TarballDiffer(child.clone()),
        )
        .expect("put_with_differ child");
    let (plain_child, _) = store
        .put(
            &LayerOptions::new().id("plain-child").parent("plain"),
            Some(&mut &child[..]),
        )
        .expect("plain child");
    assert_eq!(
        staged_child.uncompressed_digest,
        plain_child.uncompressed_digest
    );
    assert!(diff_of(&store, "staged-child") == child);
    assert_eq!(
        store
            .changes(Some("staged"), "staged-child")
            .expect("changes"),
        store
            .changes(Some("plain"), "plain-child")
            .expect("changes")
    );
    let staging = scratch.graph().join("vfs/staging");
    let left = fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "nothing left in {}", staging.display());
    store.shutdown(false).expect("shutdown");
}
