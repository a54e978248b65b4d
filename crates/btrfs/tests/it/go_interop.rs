//! One btrfs store shared with the Go tool (`containers-storage` 1.43): its layers open and
//! mount with our driver, ours (recorded in `layers.json` with layerstore-model) are listed,
//! diffed and deleted by it, and both sides' diffs give back the original tarballs.

use crate::common;

use std::path::Path;
use std::process::Command;

use layerstore_btrfs::BtrfsDriver;
use layerstore_driver::{ApplyDiffOpts, CreateOpts, Driver, MountOpts};
use layerstore_model::Layer;
use layerstore_tarsplit::{EntrySink, gzip_packer, read_tar_split_gz};
use layerstore_testsupport::go::go_command;
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};

struct Go<'a> {
    graph_root: &'a Path,
    run_root: &'a Path,
}

impl Go<'_> {
    fn command(&self, args: &[&str]) -> Command {
        go_command(self.graph_root, self.run_root, "btrfs", args)
    }

    fn run(&self, args: &[&str]) -> String {
        common::run(&mut self.command(args))
    }

    fn run_with_input(&self, args: &[&str], input: &Path) -> String {
        common::run(
            self.command(args)
                .stdin(std::fs::File::open(input).unwrap()),
        )
    }

    /// `create-layer [parent]`: the new layer's ID (last line of the output).
    fn create_layer(&self, parent: Option<&str>) -> String {
        let mut args = vec!["create-layer"];
        args.extend(parent);
        let out = self.run(&args);
        out.lines().last().unwrap().trim().to_string()
    }

    fn diff(&self, id: &str) -> Vec<u8> {
        let out = self.command(&["diff", id]).output().unwrap();
        assert!(
            out.status.success(),
            "diff {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// Applies `tarball` into our layer `id`, writes its tar-split file where Go looks for it and
/// returns its `layers.json` record.
fn apply_and_record(
    driver: &BtrfsDriver,
    graph_root: &Path,
    id: &str,
    parent: Option<&str>,
    tarball: &[u8],
) -> Layer {
    let path = graph_root
        .join("btrfs-layers")
        .join(format!("{id}.tar-split.gz"));
    let mut packer = gzip_packer(std::fs::File::create(&path).unwrap());
    let mut input = tarball;
    let mut opts = ApplyDiffOpts::new(&mut input);
    let sink: &mut dyn EntrySink = &mut packer;
    opts.tar_split = Some(sink);
    let report = driver.apply_diff(id, parent, opts).unwrap();
    packer.finish().unwrap().sync_all().unwrap();
    let mut layer = Layer::new(id);
    layer.parent = parent.unwrap_or_default().to_string();
    layer.compressed_digest = Some(report.compressed_digest);
    layer.compressed_size = report.compressed_size as i64;
    layer.uncompressed_digest = Some(report.uncompressed_digest);
    layer.uncompressed_size = report.uncompressed_size as i64;
    layer.uids = report.uids.into_iter().collect();
    layer.gids = report.gids.into_iter().collect();
    layer
}

#[test]
fn go_and_our_btrfs_driver_share_one_store() {
    require_or_skip!(Capability::GoTool, Capability::Btrfs);
    let scratch = common::Scratch::new(512);
    let driver = &scratch.driver;
    let go = Go {
        graph_root: &scratch.graph_root,
        run_root: &scratch.run_root,
    };
    let basic = common::fixture_tar("basic.tar");
    let child_tar = common::fixture_tar("child-whiteouts.tar");

    // --- The Go tool's layers, opened with our driver. ---
    let go_base = go.create_layer(None);
    go.run_with_input(&["applydiff", &go_base], &basic);
    let go_child = go.create_layer(Some(&go_base));
    go.run_with_input(&["applydiff", &go_child], &child_tar);
    let go_mount = go.run(&["mount", &go_child]).trim().to_string();

    // A fresh driver instance on the same graph root, as a second process would open it.
    let ours = BtrfsDriver::new(&scratch.config()).unwrap();
    assert!(ours.exists(&go_base) && ours.exists(&go_child));
    let got = ours.get(&go_child, &MountOpts::default()).unwrap();
    assert_eq!(got, Path::new(&go_mount));
    let go_child_tree = common::snapshot(Path::new(&go_mount));
    tree::assert_same_tree(
        "Go's child layer through our driver",
        &go_child_tree,
        &common::snapshot(&got),
        tree::Root::Compare,
    );
    go.run(&["unmount", &go_child]);
    // Go's layers are a chain of snapshots too.
    let lines = common::list_subvolumes(scratch.fs.path());
    assert_eq!(
        common::subvolume_of(&lines, &go_child).parent_uuid.as_ref(),
        Some(&common::subvolume_of(&lines, &go_base).uuid)
    );
    // Go's tar-split files + our file getter give back the original tarballs.
    for (id, tarball) in [(&go_base, &basic), (&go_child, &child_tar)] {
        let tar_split = std::fs::read(
            scratch
                .graph_root
                .join("btrfs-layers")
                .join(format!("{id}.tar-split.gz")),
        )
        .unwrap();
        let getter = ours.diff_getter(id).unwrap().unwrap();
        let mut rebuilt = Vec::new();
        layerstore_tarsplit::assemble(read_tar_split_gz(&tar_split[..]), &*getter, &mut rebuilt)
            .unwrap();
        assert!(
            rebuilt == std::fs::read(tarball).unwrap(),
            "Go layer {id}: our reassembly differs from {tarball:?}"
        );
    }

    // --- Our layers, used by the Go tool. ---
    let our_base = layerstore_model::generate_id().unwrap();
    let our_child = layerstore_model::generate_id().unwrap();
    driver
        .create(&our_base, None, &CreateOpts::default())
        .unwrap();
    let base_record = apply_and_record(
        driver,
        &scratch.graph_root,
        &our_base,
        None,
        &std::fs::read(&basic).unwrap(),
    );
    driver
        .create(&our_child, Some(&our_base), &CreateOpts::default())
        .unwrap();
    let child_record = apply_and_record(
        driver,
        &scratch.graph_root,
        &our_child,
        Some(&our_base),
        &std::fs::read(&child_tar).unwrap(),
    );
    // Our child's tree is Go's child's tree.
    tree::assert_same_tree(
        "our child layer vs Go's",
        &go_child_tree,
        &common::snapshot(&driver.get(&our_child, &MountOpts::default()).unwrap()),
        tree::Root::IgnoreTimes,
    );
    let layers_json = scratch.graph_root.join("btrfs-layers/layers.json");
    let mut records =
        layerstore_model::parse_layers_json(&std::fs::read(&layers_json).unwrap()).unwrap();
    assert_eq!(records.len(), 2);
    records.extend([base_record, child_record]);
    std::fs::write(
        &layers_json,
        layerstore_model::encode_layers_json(&records).unwrap(),
    )
    .unwrap();

    let listed = go.run(&["layers"]);
    for id in [&our_base, &our_child] {
        assert!(listed.contains(id.as_str()), "{id} not in:\n{listed}");
    }
    // Both sides' diffs give back the original tarballs byte for byte.
    for (id, tarball) in [
        (&our_base, &basic),
        (&our_child, &child_tar),
        (&go_base, &basic),
        (&go_child, &child_tar),
    ] {
        assert!(
            go.diff(id) == std::fs::read(tarball).unwrap(),
            "Go's diff of {id} differs from {tarball:?}"
        );
    }
    // Go mounts our layer at our path and deletes it (nested subvolumes and all).
    let mount = go.run(&["mount", &our_child]);
    assert_eq!(
        Path::new(mount.trim()),
        driver.get(&our_child, &MountOpts::default()).unwrap()
    );
    go.run(&["unmount", &our_child]);
    go.run(&["delete-layer", &our_child]);
    assert!(!driver.exists(&our_child));
    // And we remove one of Go's (driver level).
    driver.remove(&go_child).unwrap();
    let lines = common::list_subvolumes(scratch.fs.path());
    assert_eq!(lines.len(), 2, "{lines:#?}");

    // The Go tool's `shutdown` undoes the home's bind mount (ours and its are the same one).
    go.run(&["shutdown"]);
    ours.cleanup().unwrap();
}
