//! Additional layer stores: a read-only layout as a lazy-pulling filesystem serves it (built
//! here in a plain directory), adopted with `put_additional_layer` through overlay.

use crate::common;

use std::fs;

use common::{ShutdownOnDrop, build_layout};
use layerstore_layers::{Digest, LayerOptions, LayerStore, MountOptions, StoreOptions};
use layerstore_testsupport::{Capability, require_or_skip};

#[test]
fn an_additional_layer_is_adopted_read_only_and_used_as_a_lower() {
    require_or_skip!(Capability::Overlay);
    let work = tempfile::tempdir().expect("temp dir");
    let als = work.path().join("als");
    let (digest, source) = build_layout(work.path(), &als);
    let store = ShutdownOnDrop(
        LayerStore::open(
            StoreOptions::new(
                work.path().join("graph"),
                work.path().join("run"),
                "overlay",
            )
            .driver_option(format!("overlay.additionallayerstore={}", als.display())),
        )
        .expect("open"),
    );
    let other: Digest = format!("sha256:{}", "0".repeat(64))
        .parse()
        .expect("digest");
    assert!(store.lookup_additional_layer(&other, "").is_none());
    let found = store
        .lookup_additional_layer(&digest, "example.com/app:1")
        .expect("served");
    let layer = store
        .put_additional_layer(&LayerOptions::new().id("lazy").name("lazy-name"), &found)
        .expect("adopt");
    assert!(layer.read_only);
    assert!(!layer.is_incomplete());
    assert_eq!(layer.names, ["lazy-name"]);
    assert_eq!(layer.uncompressed_digest, source.uncompressed_digest);
    assert_eq!(layer.compressed_digest, source.compressed_digest);
    assert_eq!(layer.uncompressed_size, source.uncompressed_size);
    assert_eq!((&layer.uids, &layer.gids), (&source.uids, &source.gids));
    assert!(
        als.join(digest.as_str()).join("use").is_file(),
        "the store was told"
    );
    assert_eq!(
        store
            .layers_by_compressed_digest(&digest)
            .expect("by digest")
            .len(),
        1
    );
    let reopened = store.get("lazy-name").expect("get");
    assert_eq!(reopened.uncompressed_digest, source.uncompressed_digest);
    // No tar-split records: the driver exports the store's tree.
    let changes = store.changes(None, "lazy").expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c.path == std::path::Path::new("/etc/passwd")),
        "{changes:?}"
    );

    // A child stacks on the store's tree; its writes land in its own diff.
    store
        .create(
            &LayerOptions::new()
                .id("child")
                .parent("lazy")
                .writeable(true),
        )
        .expect("child");
    let merged = store
        .mount("child", &MountOptions::default())
        .expect("mount");
    assert_eq!(
        fs::read(merged.join("etc/passwd")).expect("file of the additional layer"),
        fs::read(als.join(digest.as_str()).join("diff/etc/passwd")).expect("als file")
    );
    fs::write(merged.join("new-file"), b"child").expect("write");
    store.unmount("child", false).expect("unmount");
    assert!(
        work.path()
            .join("graph/overlay/child/diff/new-file")
            .is_file()
    );
    assert!(!als.join(digest.as_str()).join("diff/new-file").exists());

    // Deleting the layers leaves the additional store's files alone.
    store.delete("child").expect("delete child");
    store.delete("lazy").expect("delete");
    assert!(als.join(digest.as_str()).join("diff/etc/passwd").is_file());
    assert!(store.layers().expect("layers").is_empty());
}

#[test]
fn a_bad_info_file_is_an_error_that_leaves_no_layer() {
    require_or_skip!(Capability::Overlay);
    let work = tempfile::tempdir().expect("temp dir");
    let als = work.path().join("als");
    let (digest, _) = build_layout(work.path(), &als);
    let store = ShutdownOnDrop(
        LayerStore::open(
            StoreOptions::new(
                work.path().join("graph"),
                work.path().join("run"),
                "overlay",
            )
            .driver_option(format!("overlay.additionallayerstore={}", als.display())),
        )
        .expect("open"),
    );
    let info = als.join(digest.as_str()).join("info");
    fs::write(&info, b"{\"id\": 7").expect("corrupt info");
    let found = store.lookup_additional_layer(&digest, "").expect("served");
    let err = store
        .put_additional_layer(&LayerOptions::new().id("lazy"), &found)
        .expect_err("corrupt info");
    assert!(err.to_string().contains("info"), "{err}");
    assert!(store.layers().expect("layers").is_empty());
    assert!(!work.path().join("graph/overlay/lazy").exists());
    assert!(!als.join(digest.as_str()).join("use").exists());
}
