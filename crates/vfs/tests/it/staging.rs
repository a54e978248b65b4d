//! Staged vfs layers: a differ fills `vfs/staging/<random>`, which is laid over the layer's
//! tree (its parent's copy) and exchanged into `dir/<id>`; the result equals `apply_diff` of
//! the same tarball.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use layerstore_archive::{ApplyOptions, apply};
use layerstore_driver::{
    ApplyDiffOpts, CreateOpts, Differ, DifferOptions, DifferOutput, Driver, DriverConfig, Error,
};
use layerstore_tarsplit::JsonLinesPacker;
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

/// Fills the staging directory from a tarball with the archive crate, as a puller would.
struct TarballDiffer(Vec<u8>);

impl Differ for TarballDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        let apply_options = ApplyOptions {
            whiteouts: options.whiteouts,
            ignore_chown_errors: options.ignore_chown_errors,
            ..Default::default()
        };
        let (report, packer) = apply(
            dest,
            &self.0[..],
            JsonLinesPacker::new(Vec::new()),
            &apply_options,
        )
        .map_err(|e| Error::archive("(staging)", e))?;
        let records = packer.into_inner().map_err(|e| Error::Differ {
            message: "tar-split records".into(),
            source: Some(Box::new(e)),
        })?;
        Ok(DifferOutput::from_report(report, Some(records)))
    }
}

/// Writes a file into the staging directory, then fails.
struct FailingDiffer;

impl Differ for FailingDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        _options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        fs::write(dest.join("half"), b"written before the failure").expect("write");
        Err(Error::Differ {
            message: "blob entry \"half\": digest mismatch".into(),
            source: None,
        })
    }
}

fn driver(root: &Path) -> VfsDriver {
    VfsDriver::new(&DriverConfig::new(root.join("graph"), root.join("run"))).expect("driver")
}

fn tarball(name: &str) -> Vec<u8> {
    fs::read(common::fixture_tar(name)).expect("fixture")
}

fn apply_tarball(driver: &VfsDriver, id: &str, parent: Option<&str>, name: &str) {
    let blob = tarball(name);
    driver
        .apply_diff(id, parent, ApplyDiffOpts::new(&mut &blob[..]))
        .expect("apply_diff");
}

/// How a staged tree moves into a layer.
type MoveIn = fn(&VfsDriver, &str, &Path) -> layerstore_driver::Result<()>;

/// Stages the tarball `blob` and moves it into layer `id` with `move_in`.
fn stage_tarball_with(
    driver: &VfsDriver,
    id: &str,
    blob: Vec<u8>,
    move_in: MoveIn,
) -> DifferOutput {
    let output = driver
        .apply_diff_with_differ(&DifferOptions::default(), &mut TarballDiffer(blob))
        .expect("stage");
    assert_eq!(
        output.target.parent(),
        Some(driver.staging().path().as_path())
    );
    move_in(driver, id, &output.target).expect("move the staged tree in");
    output
}

fn without_root(tree: &BTreeMap<PathBuf, common::Node>) -> BTreeMap<PathBuf, common::Node> {
    let mut tree = tree.clone();
    tree.remove(Path::new(""));
    tree
}

fn staging_entries(driver: &VfsDriver) -> Vec<PathBuf> {
    fs::read_dir(driver.staging().path())
        .map(|dir| dir.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

/// Stages basic.tar and then child-whiteouts.tar, moves each into a new layer with
/// `move_in`, and compares the trees with what `apply_diff` makes of the same tarballs.
fn staged_tarballs_give_the_trees_apply_diff_gives(move_in: MoveIn) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let driver = driver(tmp.path());
    let opts = CreateOpts::default();

    // A base layer.
    driver.create("base", None, &opts).expect("create");
    apply_tarball(&driver, "base", None, "basic.tar");
    driver.create("staged-base", None, &opts).expect("create");
    let output = stage_tarball_with(&driver, "staged-base", tarball("basic.tar"), move_in);
    assert_eq!(output.overlay_markers, Some(0));
    let base = common::snapshot(&driver.differ_target("base").expect("target"));
    let mut staged_base = common::snapshot(&driver.differ_target("staged-base").expect("target"));
    // The top directory keeps the mode create gave it (as overlay's `diff/` does), where
    // apply_diff takes the tarball's `./` entry.
    let root = staged_base.remove(Path::new("")).expect("root");
    assert_eq!(root.mode & 0o7777, 0o555);
    tree::assert_same_tree(
        "staged base layer",
        &without_root(&base),
        &staged_base,
        tree::Root::IgnoreTimes,
    );
    assert!(output.uncompressed_digest.is_some() && output.tar_split.is_some());

    // A child with a whiteout, an opaque directory, a changed and an added file: the staged
    // tree is laid over the parent's copy.
    driver.create("child", Some("base"), &opts).expect("create");
    apply_tarball(&driver, "child", Some("base"), "child-whiteouts.tar");
    driver
        .create("staged-child", Some("base"), &opts)
        .expect("create");
    let output = stage_tarball_with(
        &driver,
        "staged-child",
        tarball("child-whiteouts.tar"),
        move_in,
    );
    assert!(output.overlay_markers.is_some_and(|n| n > 0));
    let child = without_root(&common::snapshot(
        &driver.differ_target("child").expect("target"),
    ));
    let mut staged_child = common::snapshot(&driver.differ_target("staged-child").expect("target"));
    // The top directory keeps what the parent's copy had.
    let staged_root = staged_child.remove(Path::new("")).expect("root");
    let base_root = &base[Path::new("")];
    assert_eq!(
        (staged_root.mode, staged_root.uid, staged_root.gid),
        (base_root.mode, base_root.uid, base_root.gid)
    );
    tree::assert_same_tree(
        "staged child layer",
        &child,
        &staged_child,
        tree::Root::IgnoreTimes,
    );
    assert!(
        !staged_child.contains_key(Path::new("etc/passwd-hard")),
        "the whiteout deleted its file"
    );
    assert!(
        staging_entries(&driver).is_empty(),
        "{:?}",
        staging_entries(&driver)
    );
    // The parent is untouched.
    let base_after = common::snapshot(&driver.differ_target("base").expect("target"));
    tree::assert_same_tree(
        "parent after staging",
        &base,
        &base_after,
        tree::Root::Compare,
    );
}

#[test]
fn a_staged_tarball_gives_the_tree_apply_diff_gives() {
    require_or_skip!(Capability::Root);
    staged_tarballs_give_the_trees_apply_diff_gives(Driver::apply_diff_from_staging_directory);
}

#[test]
fn moved_into_a_new_layer_the_parents_copy_is_used_up_for_the_same_tree() {
    require_or_skip!(Capability::Root);
    staged_tarballs_give_the_trees_apply_diff_gives(
        Driver::apply_diff_from_staging_directory_into_new,
    );
}

#[test]
fn a_child_without_deletions_still_gets_what_its_parent_has_below_its_directories() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("temp dir");
    let driver = driver(tmp.path());
    let opts = CreateOpts::default();
    driver.create("base", None, &opts).expect("create");
    apply_tarball(&driver, "base", None, "basic.tar");

    // No whiteouts, so the differ counts no markers and the merge walks only what has a
    // directory below: a file added two levels down, a changed file, a new nested directory.
    let src = tmp.path().join("child-src");
    fs::create_dir_all(src.join("usr/bin")).expect("mkdir");
    fs::create_dir_all(src.join("new/deeper")).expect("mkdir");
    fs::create_dir_all(src.join("etc")).expect("mkdir");
    fs::write(src.join("usr/bin/new-tool"), b"#!/bin/sh\n").expect("write");
    fs::write(src.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write");
    fs::write(src.join("new/deeper/file"), b"new").expect("write");
    let child_tar = tmp.path().join("child.tar");
    let status = std::process::Command::new("tar")
        .arg("--numeric-owner")
        .arg("-cf")
        .arg(&child_tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let blob = fs::read(&child_tar).expect("read the child tarball");

    driver.create("child", Some("base"), &opts).expect("create");
    driver
        .apply_diff("child", Some("base"), ApplyDiffOpts::new(&mut &blob[..]))
        .expect("apply_diff");
    let child = without_root(&common::snapshot(
        &driver.differ_target("child").expect("target"),
    ));
    assert!(child.contains_key(Path::new("usr/bin/tool")));
    assert!(child.contains_key(Path::new("usr/bin/new-tool")));
    let moves: [(&str, MoveIn); 2] = [
        ("copy", Driver::apply_diff_from_staging_directory),
        (
            "into-new",
            Driver::apply_diff_from_staging_directory_into_new,
        ),
    ];
    for (name, move_in) in moves {
        let id = format!("staged-{name}");
        driver.create(&id, Some("base"), &opts).expect("create");
        let output = stage_tarball_with(&driver, &id, blob.clone(), move_in);
        assert_eq!(output.overlay_markers, Some(0));
        let staged = without_root(&common::snapshot(
            &driver.differ_target(&id).expect("target"),
        ));
        tree::assert_same_tree(name, &child, &staged, tree::Root::IgnoreTimes);
    }
    assert!(staging_entries(&driver).is_empty());
}

#[test]
fn a_failed_differ_leaves_no_staging_directory() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("temp dir");
    let driver = driver(tmp.path());
    let err = driver
        .apply_diff_with_differ(&DifferOptions::default(), &mut FailingDiffer)
        .expect_err("the differ fails");
    assert!(err.to_string().contains("half"), "{err}");
    assert!(staging_entries(&driver).is_empty());
    assert!(driver.list_layers().expect("list").is_empty());
}

#[test]
fn paths_outside_the_staging_home_are_refused() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().expect("temp dir");
    let driver = driver(tmp.path());
    driver
        .create("layer", None, &CreateOpts::default())
        .expect("create");
    let layer_dir = driver.differ_target("layer").expect("target");
    fs::write(layer_dir.join("keep"), b"mine").expect("write");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("file"), b"not staged").expect("write");
    let sneaky = driver.staging().path().join("..").join("dir").join("layer");
    for path in [outside.as_path(), layer_dir.as_path(), sneaky.as_path()] {
        assert!(matches!(
            driver.apply_diff_from_staging_directory("layer", path),
            Err(Error::NotStaging { .. })
        ));
        assert!(matches!(
            driver.cleanup_staging_directory(path),
            Err(Error::NotStaging { .. })
        ));
    }
    assert!(outside.join("file").is_file());
    assert_eq!(fs::read(layer_dir.join("keep")).expect("read"), b"mine");

    // A real staging directory is removed; removing it again is fine.
    let staged = driver
        .apply_diff_with_differ(
            &DifferOptions::default(),
            &mut TarballDiffer(tarball("basic.tar")),
        )
        .expect("stage");
    driver
        .cleanup_staging_directory(&staged.target)
        .expect("cleanup");
    assert!(!staged.target.exists());
    driver
        .cleanup_staging_directory(&staged.target)
        .expect("cleanup again");
    // A staging directory cannot go into a layer that does not exist.
    let staged = driver
        .apply_diff_with_differ(
            &DifferOptions::default(),
            &mut TarballDiffer(tarball("basic.tar")),
        )
        .expect("stage");
    assert!(matches!(
        driver.apply_diff_from_staging_directory("missing", &staged.target),
        Err(Error::LayerNotFound { .. })
    ));
    assert!(staged.target.is_dir(), "kept for the caller to clean up");
}
