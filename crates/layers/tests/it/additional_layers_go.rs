//! Does the Go tool (containers/storage 1.43) use a layer that our store adopted from an
//! additional layer store?
//!
//! Our overlay driver adopts `<als>/<digest>/` by making `<id>/diff` a symlink to the store's
//! `diff/`, writing `<id>/additionallayer` (the store's layer directory) and an `l/<link>`
//! entry, as Go's `CreateAs` does. What Go 1.43 does with that layer, as asserted below:
//!
//! * `layers` and `layer --json` list it with our record (names, digests, sizes);
//! * `diff` rebuilds the tar stream from the store's tree (there are no tar-split records) and
//!   it has the recorded DiffID;
//! * a child made by Go's `create-layer` mounts with the adopted layer as its lower (reached
//!   through `l/<link>` → `<id>/diff` → the store's `diff/`); the child's writes land in its
//!   own `diff/`, never in the additional store;
//! * mounting the adopted layer itself fails with `invalid argument`: Go 1.43 mounts a layer
//!   without lowers with its `diff/` as the overlay's upper dir, and that symlink resolves into
//!   the additional store, outside the mount of the driver home where `work/` lives, which
//!   the kernel refuses (an upper dir and a work dir must share a mount);
//! * `delete-layer` removes our layer's directory and link without touching the store's
//!   `diff/`, and removes the `use` file our adoption created (Go releases the layer).

use crate::common;

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::Output;

use common::build_layout;
use layerstore_layers::{LayerOptions, LayerStore, StoreOptions};
use layerstore_testsupport::{Capability, require_or_skip};
use sha2::{Digest as _, Sha256};

/// The Go tool on one store, with the additional layer store configured.
struct GoTool {
    graph: PathBuf,
    run: PathBuf,
    als: PathBuf,
    /// Layers Go may still have mounted, unmounted on drop.
    mounted: Vec<String>,
}

impl GoTool {
    fn run(&self, args: &[&str]) -> Output {
        let store_opt = format!("overlay.additionallayerstore={}", self.als.display());
        let args: Vec<&str> = ["--storage-opt", store_opt.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        layerstore_testsupport::go::run_go(&self.graph, &self.run, "overlay", &args)
    }

    /// Runs `args`, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "containers-storage {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for GoTool {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.mounted) {
            let _ = self.run(&["unmount", &id]);
        }
        // Nothing is mounted any more: a plain shutdown releases the driver home's mount.
        let _ = self.run(&["shutdown"]);
    }
}

#[test]
fn go_lists_diffs_and_stacks_on_a_layer_we_adopted_but_cannot_mount_it_alone() {
    require_or_skip!(Capability::Overlay, Capability::GoTool);
    let work = tempfile::tempdir().expect("temp dir");
    let als = work.path().join("als");
    let (digest, source) = build_layout(work.path(), &als);
    let layer_dir = als.join(digest.as_str());
    let graph = work.path().join("graph");
    let run = work.path().join("run");
    let open = || {
        LayerStore::open(
            StoreOptions::new(&graph, &run, "overlay")
                .driver_option(format!("overlay.additionallayerstore={}", als.display())),
        )
        .expect("open")
    };
    let lazy = "1".repeat(64);
    let child = "2".repeat(64);
    {
        let store = open();
        let found = store.lookup_additional_layer(&digest, "").expect("served");
        store
            .put_additional_layer(&LayerOptions::new().id(&lazy).name("lazy-name"), &found)
            .expect("adopt");
        store.shutdown(false).expect("our shutdown");
    }
    assert!(layer_dir.join("use").is_file());

    let mut go = GoTool {
        graph: graph.clone(),
        run: run.clone(),
        als: als.clone(),
        mounted: Vec::new(),
    };

    // Listed, with our record.
    let listed = String::from_utf8(go.ok(&["layers"])).expect("utf-8");
    assert!(
        listed.contains(&lazy) && listed.contains("lazy-name"),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&go.ok(&["layer", "--json", &lazy])).expect("layer --json");
    let record = json.get(0).unwrap_or(&json);
    assert_eq!(record["id"], lazy.as_str());
    assert_eq!(record["names"][0], "lazy-name");
    assert_eq!(record["compressed-diff-digest"], digest.as_str());
    let diff_id = source.uncompressed_digest.clone().expect("DiffID");
    assert_eq!(record["diff-digest"], diff_id.as_str());
    assert_eq!(record["diff-size"], source.uncompressed_size);

    // Its diff, rebuilt from the additional store's tree, has the recorded DiffID.
    let diff = go.ok(&["diff", &lazy]);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&diff[..])
        .read_to_end(&mut tar)
        .expect("Go's diff is gzip");
    let sum = format!("sha256:{:x}", Sha256::digest(&tar));
    assert_eq!(sum, diff_id.as_str());

    // The layer alone: Go makes its `diff` (the store's tree) the upper dir; the kernel refuses.
    let alone = go.run(&["mount", &lazy]);
    go.mounted.push(lazy.clone());
    assert!(!alone.status.success(), "mounting the adopted layer alone");
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(stderr.contains("invalid argument"), "{stderr}");
    go.ok(&["unmount", &lazy]);
    go.mounted.clear();

    // A child made by Go stacks on it.
    go.ok(&["create-layer", "--id", &child, &lazy]);
    let merged = String::from_utf8(go.ok(&["mount", &child])).expect("utf-8");
    go.mounted.push(child.clone());
    let merged = PathBuf::from(merged.trim());
    assert_eq!(
        fs::read(merged.join("etc/passwd")).expect("file of the adopted layer"),
        fs::read(layer_dir.join("diff/etc/passwd")).expect("store's file")
    );
    let link = fs::read_to_string(graph.join("overlay").join(&lazy).join("link")).expect("link");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.contains(merged.to_str().expect("utf-8")))
        .expect("the child is mounted");
    assert!(
        line.contains(&format!(
            "lowerdir={}",
            graph.join("overlay/l").join(link.trim()).display()
        )),
        "{line}"
    );
    fs::write(merged.join("new-file"), b"written by Go's mount").expect("write");
    go.ok(&["unmount", &child]);
    go.mounted.clear();
    assert!(
        graph
            .join("overlay")
            .join(&child)
            .join("diff/new-file")
            .is_file()
    );
    assert!(!layer_dir.join("diff/new-file").exists());

    // Our store sees Go's child on top of the adopted layer.
    {
        let store = open();
        let got = store.get(&child).expect("Go's child");
        assert_eq!(got.parent, lazy);
        store.shutdown(false).expect("our shutdown");
    }

    // Go deletes both: the store's tree stays, its `use` file goes.
    go.ok(&["delete-layer", &child]);
    go.ok(&["delete-layer", &lazy]);
    assert!(!graph.join("overlay").join(&lazy).exists());
    assert!(layer_dir.join("diff/etc/passwd").is_file());
    assert!(!layer_dir.join("use").exists());
    let listed = go.ok(&["layers"]);
    assert!(listed.is_empty(), "{}", String::from_utf8_lossy(&listed));
}
