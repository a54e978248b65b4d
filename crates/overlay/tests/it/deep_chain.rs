//! Long chains: mount data naming every directory through `/proc/self/fd` (under a page), and
//! beyond Go, chains too long for any option string, mounted through `fsopen`/`fsconfig` with
//! `lowerdir+`.

use crate::common;

use common::Scratch;
use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_overlay::{MountMethod, OverlayDriver};
use layerstore_testsupport::{Capability, require_or_skip};

/// Creates `layer-0` … `layer-<n-1>`, each child of the previous, each with its own file
/// `file-<i>` (written straight into `diff/`) and an overwrite of `top` (last layer wins).
fn build(driver: &OverlayDriver, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("layer-{i}");
        let parent = ids.last().map(String::as_str);
        driver.create(&id, parent, &CreateOpts::default()).unwrap();
        let diff = driver.home().join(&id).join("diff");
        std::fs::write(diff.join(format!("file-{i}")), i.to_string()).unwrap();
        std::fs::write(diff.join("top"), i.to_string()).unwrap();
        ids.push(id);
    }
    ids
}

fn check_view(merged: &std::path::Path, n: usize) {
    for i in 0..n {
        let got = std::fs::read_to_string(merged.join(format!("file-{i}")))
            .unwrap_or_else(|e| panic!("file-{i} of layer {i} is not visible: {e}"));
        assert_eq!(got, i.to_string());
    }
    assert_eq!(
        std::fs::read_to_string(merged.join("top")).unwrap(),
        (n - 1).to_string()
    );
}

#[test]
fn a_120_layer_chain_mounts_with_descriptor_paths() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    let ids = build(&overlay, 120);
    let top = ids.last().unwrap();
    let merged = overlay.get(top, &MountOpts::default()).unwrap();
    assert_eq!(overlay.mount_method(top), Some(MountMethod::Descriptors));
    // No path of the store is in the mount data: every directory was opened by the driver
    // (without following symlinks) and is named by its descriptor.
    let line = common::mountinfo_line(&merged).unwrap();
    assert!(line.contains("lowerdir=/proc/self/fd/"), "{line}");
    assert!(line.contains("upperdir=/proc/self/fd/"), "{line}");
    assert!(!line.contains("/l/"), "{line}");
    check_view(&merged, 120);
    overlay.put(top).unwrap();
    assert!(common::mountinfo_line(&merged).is_none());
}

#[test]
fn a_600_layer_chain_mounts_through_the_new_mount_api() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    // Linux before 6.8: no lowerdir+; Go cannot mount such a chain either.
    if !layerstore_testsupport::satisfied(
        overlay.has_new_mount_api(),
        "the kernel has no fsconfig lowerdir+ (Linux 6.8+ needed)",
    ) {
        return;
    }
    let ids = build(&overlay, 600);
    let top = ids.last().unwrap();

    let merged = overlay.get(top, &MountOpts::default()).unwrap();
    assert_eq!(overlay.mount_method(top), Some(MountMethod::NewApi));
    // The kernel takes at most 500 lower dirs (OVL_MAX_STACK): the deepest layers are a
    // read-only overlay of their own, used as one lower dir.
    let mounts = common::mounts_below(&overlay.home().join(top));
    assert!(
        mounts.contains(&overlay.home().join(top).join("lower-stack")),
        "{mounts:?}"
    );
    check_view(&merged, 600);
    // Writes land in the top layer only.
    std::fs::write(merged.join("written"), b"x").unwrap();
    assert!(overlay.home().join(top).join("diff/written").is_file());
    overlay.put(top).unwrap();
    assert!(common::mounts_below(&overlay.home().join(top)).is_empty());
    assert!(!merged.exists());

    // Read-only, one layer below the top.
    let below = &ids[598];
    let ro = MountOpts {
        options: vec!["ro".into()],
        ..Default::default()
    };
    let merged = overlay.get(below, &ro).unwrap();
    check_view(&merged, 599);
    overlay.put(below).unwrap();
    assert!(common::mounts_below(&overlay.home().join(below)).is_empty());
}
