//! The graph drivers against hostile stores and hostile layers, through the `layerstore`
//! binary, compared with the Go tool (`containers-storage` 1.43) where it has an answer.
//!
//! * Issue 15: hard links under ID-mapped copies (each inode shifted once), and the layer
//!   root's mode, owner and times after a tarball with a `./` entry, per driver as Go.
//! * Issue 16: trees 10,000 directories deep (copied, walked, removed with a soft limit of
//!   1,024 open files); `vfs/dir/<id>` swapped for a symlink in a loop during `applydiff` and
//!   `diff`; overlay's layer directory, `diff`, `merged`, `l/` links, `link` and `lower` files
//!   forged (each of the seven observations of the issue), btrfs's `subvolumes/<id>` as a
//!   symlink; mount options injected through link and lower files; IDs that are the drivers'
//!   own names.
//!
//! Every test that replaces a store file with a symlink points it at an "outside" directory
//! holding a secret and checks afterwards that nothing there was read (the secret never shows
//! in any output), written (no new file), or unmounted.

use crate::suite;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use layerstore_testsupport::{BtrfsLoop, Capability, helper, require_or_skip};
use suite::{Scratch, Store, describe, mount_tmpfs, mounts_under};

/// The soft limit on open files the deep-tree tests run with (the common default).
const NOFILE: u64 = 1024;

/// In the test binary's process: runs the calling test in a process of its own and answers
/// `false` (the test returns). In that process: lowers its soft `RLIMIT_NOFILE` to [`NOFILE`],
/// which the binaries it starts inherit, and answers `true`. Every test of this file runs so;
/// the other tests of the binary keep the limit they had.
fn limit_open_files() -> bool {
    if !helper::in_own_process() {
        return false;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.map_or(NOFILE, |current| current.min(NOFILE));
    let new = rustix::process::Rlimit {
        current: Some(soft),
        maximum: limit.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, new).expect("setrlimit");
    true
}

/// A store of `driver` below `root` (graph `root/graph`, run `root/run`).
fn store_in(root: &Path, driver: &str) -> Store {
    Store::new(root.join("graph"), root.join("run"), driver)
}

/// Runs our tool and returns the first line of its output (a layer ID).
fn new_layer(store: &Store, args: &[&str]) -> String {
    store
        .run_ok(args)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Where a layer's own tree is, per driver.
fn layer_root(store: &Store, id: &str) -> PathBuf {
    match store.driver.as_str() {
        "vfs" => store.graph.join("vfs/dir").join(id),
        "overlay" => store.graph.join("overlay").join(id).join("diff"),
        "btrfs" => store.graph.join("btrfs/subvolumes").join(id),
        other => panic!("no such driver {other}"),
    }
}

/// Writes `bytes` to a new file in `dir` and returns its path.
fn file_in(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    suite::write_file(&path, bytes);
    path
}

/// A tar entry header with the given type, mode, owner and mtime.
fn header(kind: tar::EntryType, mode: u32, owner: u64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header
}

/// A tarball: `./` (0755, root), a root-owned file `f` and `g`, a hard link to it.
fn hard_linked_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut root = header(tar::EntryType::Directory, 0o755, 0, 0);
    builder.append_data(&mut root, "./", &[][..]).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, 0, 3);
    builder.append_data(&mut file, "./f", &b"hi\n"[..]).unwrap();
    let mut link = header(tar::EntryType::Link, 0o644, 0, 0);
    builder.append_link(&mut link, "./g", "./f").unwrap();
    builder.into_inner().unwrap()
}

/// What the ID-mapped child shows: owners of `f` and `g`, whether they are one inode (two
/// links), and the owner of its top directory.
#[derive(Debug, PartialEq, Eq)]
struct MappedView {
    f: (u32, u32),
    g: (u32, u32),
    linked: bool,
    root: (u32, u32),
}

fn mapped_view(dir: &Path) -> MappedView {
    let meta = |name: &str| fs::symlink_metadata(dir.join(name)).expect("stat");
    let (f, g, root) = (meta("f"), meta("g"), meta(""));
    MappedView {
        f: (f.uid(), f.gid()),
        g: (g.uid(), g.gid()),
        linked: f.ino() == g.ino() && f.nlink() == 2,
        root: (root.uid(), root.gid()),
    }
}

const MAPPED: u32 = 100_000;
const UIDMAP: &str = "0:100000:6";

/// Issue 15 item 2 on one driver: creates a child with `--uidmap 0:R:6 --gidmap 0:R:6` on a
/// parent holding two hard links to one root-owned file; returns what the child shows, and
/// its ID.
fn mapped_child(store: &Store, tar: &Path, go: bool) -> (MappedView, String) {
    let create = |args: &[&str]| {
        if go {
            store.go_id(args)
        } else {
            new_layer(store, args)
        }
    };
    let parent = create(&["create-layer"]);
    let apply = ["applydiff", "-f", tar.to_str().unwrap(), &parent];
    if go {
        store.go_ok(&apply);
    } else {
        store.run_ok(&apply);
    }
    let child = create(&[
        "create-layer",
        "--uidmap",
        UIDMAP,
        "--gidmap",
        UIDMAP,
        &parent,
    ]);
    let mount = |args: &[&str]| {
        if go {
            let output = store.go(args);
            assert!(output.status.success(), "{}", describe(&output));
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        } else {
            store.run_ok(args).trim().to_string()
        }
    };
    let merged = PathBuf::from(mount(&["mount", &child]));
    let view = mapped_view(&merged);
    mount(&["unmount", &child]);
    (view, child)
}

#[test]
fn hard_links_are_shifted_once_under_id_mappings_on_every_driver_as_go_does() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let tar = file_in(scratch.path(), "hl.tar", &hard_linked_tar());
    let disk = BtrfsLoop::new(512).expect("btrfs loop");
    let mut go_views = Vec::new();
    for (driver, root) in [
        ("vfs", scratch.path().to_path_buf()),
        ("btrfs", disk.path().to_path_buf()),
    ] {
        let (ours, _) = mapped_child(&store_in(&root.join("ours"), driver), &tar, false);
        let go_store = store_in(&root.join("go"), driver);
        let (go, _) = mapped_child(&go_store, &tar, true);
        let _ = go_store.go(&["shutdown"]);
        assert_eq!(ours, go, "{driver}: ours vs the Go tool");
        go_views.push(go);
    }
    // What Go gives on vfs and btrfs: both links shifted, still one inode, the top directory
    // left to its parent's owner.
    let expected = MappedView {
        f: (MAPPED, MAPPED),
        g: (MAPPED, MAPPED),
        linked: true,
        root: (0, 0),
    };
    assert_eq!(go_views[0], expected);
    // Overlay chowns through a mount, whose copy-up splits the links: they are joined again.
    // (Go 1.43 shifts at mount time where the kernel has idmapped lowers; made to chown, it
    // leaves `f` unshifted and the links split, measured with idmapped-lower-dir-false.)
    // Its upper dir is owned by the mapped root, as Go recreates it.
    let overlay = store_in(&scratch.path().join("overlay"), "overlay");
    let (view, child) = mapped_child(&overlay, &tar, false);
    assert_eq!(
        (view.f, view.g, view.linked),
        (expected.f, expected.g, true)
    );
    let upper = fs::metadata(layer_root(&overlay, &child)).unwrap();
    assert_eq!((upper.uid(), upper.gid()), (MAPPED, MAPPED));
    let _ = overlay.run(&["shutdown"]);
}

/// A tarball whose `./` is 0711, owned by 1234:4321, mtime 2001-09-09, with one file.
fn odd_root_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut root = header(tar::EntryType::Directory, 0o711, 0, 0);
    root.set_uid(1234);
    root.set_gid(4321);
    root.set_mtime(1_000_000_000);
    builder.append_data(&mut root, "./", &[][..]).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o644, 0, 3);
    builder
        .append_data(&mut file, "./odd", &b"odd"[..])
        .unwrap();
    builder.into_inner().unwrap()
}

/// A layer root's mode, owner, atime and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RootMeta {
    mode: u32,
    owner: (u32, u32),
    atime: i64,
    mtime: i64,
}

fn root_meta(path: &Path) -> RootMeta {
    let meta = fs::symlink_metadata(path).expect("stat layer root");
    RootMeta {
        mode: meta.mode() & 0o7777,
        owner: (meta.uid(), meta.gid()),
        atime: meta.atime(),
        mtime: meta.mtime(),
    }
}

/// Issue 15 item 4 on one store: a base layer from `basic.tar` (create + applydiff), one from
/// `import-layer` of the odd tarball, a child of the first given the odd tarball; their roots,
/// each read right after its layer was applied (a later copy reads it, and moves its atime).
fn layer_roots(store: &Store, basic: &Path, odd: &Path, go: bool) -> [RootMeta; 3] {
    let (basic, odd) = (basic.to_str().unwrap(), odd.to_str().unwrap());
    let create = |args: &[&str]| {
        if go {
            store.go_id(args)
        } else {
            new_layer(store, args)
        }
    };
    let run = |args: &[&str]| {
        if go {
            store.go_ok(args);
        } else {
            store.run_ok(args);
        }
    };
    let base = create(&["create-layer"]);
    run(&["applydiff", "-f", basic, &base]);
    let base_root = root_meta(&layer_root(store, &base));
    let imported = create(&["import-layer", "-f", odd]);
    let imported_root = root_meta(&layer_root(store, &imported));
    let child = create(&["create-layer", &base]);
    run(&["applydiff", "-f", odd, &child]);
    let child_root = root_meta(&layer_root(store, &child));
    let _ = if go {
        store.go(&["shutdown"])
    } else {
        store.run(&["shutdown"])
    };
    [base_root, imported_root, child_root]
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[test]
fn a_layer_root_ends_with_the_mode_owner_and_times_go_leaves_per_driver() {
    require_or_skip!(Capability::Root, Capability::GoTool, Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let basic = layerstore_testsupport::go_fixtures().join("tars/basic.tar");
    let odd = file_in(scratch.path(), "odd.tar", &odd_root_tar());
    let disk = BtrfsLoop::new(512).expect("btrfs loop");
    for (driver, root) in [
        ("vfs", scratch.path().to_path_buf()),
        ("overlay", scratch.path().to_path_buf()),
        ("btrfs", disk.path().to_path_buf()),
    ] {
        let start = now();
        let go = layer_roots(
            &store_in(&root.join(format!("go-{driver}")), driver),
            &basic,
            &odd,
            true,
        );
        let ours = layer_roots(
            &store_in(&root.join(format!("ours-{driver}")), driver),
            &basic,
            &odd,
            false,
        );
        for (which, (ours, go)) in ["base", "imported base", "child"]
            .iter()
            .zip(ours.iter().zip(go.iter()))
        {
            let what = format!("{driver}, {which}: ours {ours:?}, Go {go:?}");
            assert_eq!((ours.mode, ours.owner), (go.mode, go.owner), "{what}");
            // Never the tarball's times: the modification time is when the apply happened.
            assert!(ours.mtime >= start && go.mtime >= start, "{what}");
            if driver == "overlay" {
                assert!(ours.atime >= start && go.atime >= start, "{what}");
            } else {
                // The access time of `./` as recorded: none, so the epoch.
                assert_eq!(ours.atime, go.atime, "{what}");
            }
        }
        // The rule, spelled out (basic.tar's `./` is 0755 root, the odd one 0711 1234:4321).
        let expected = match driver {
            "overlay" => [(0o555, (0, 0)), (0o555, (0, 0)), (0o555, (0, 0))],
            _ => [
                (0o755, (0, 0)),
                (0o711, (1234, 4321)),
                (0o711, (1234, 4321)),
            ],
        };
        let got = ours.map(|m| (m.mode, m.owner));
        assert_eq!(got, expected, "{driver}");
    }
}

/// How deep the deep layers go: far beyond the 1,024 open files the tests allow, and beyond
/// what an import accepts (imports refuse entries more than 1,024 directories deep), so the
/// tree is made the way a container would make it: through the mounted layer, one `mkdirat`
/// at a time.
const LEVELS: usize = 10_000;

/// Makes `levels` directories `d` nested below `dir`, each from the descriptor of the one
/// above (no path is ever longer than one name), with a file at the bottom.
fn make_deep_tree(dir: &Path, levels: usize) {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(dir, flags, Mode::empty()).expect("open");
    for _ in 0..levels {
        rustix::fs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = rustix::fs::openat(&fd, c"d", flags, Mode::empty()).expect("openat");
    }
    let file = rustix::fs::openat(
        &fd,
        c"bottom",
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .expect("create");
    drop(file);
}

/// A new layer of `store` holding a tree [`LEVELS`] deep, made through its mount point.
fn deep_layer(store: &Store) -> String {
    let id = new_layer(store, &["create-layer"]);
    let mounted = store.run_ok(&["mount", &id]);
    make_deep_tree(Path::new(mounted.trim()), LEVELS);
    store.run_ok(&["unmount", &id]);
    id
}

/// How many directories `d` are nested below `dir` (opened one at a time, the test's own
/// bounded walk).
fn depth_below(dir: &Path) -> usize {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(dir, flags, Mode::empty()).expect("open");
    let mut depth = 0;
    while let Ok(next) = rustix::fs::openat(&fd, c"d", flags, Mode::empty()) {
        fd = next;
        depth += 1;
    }
    depth
}

#[test]
fn trees_ten_thousand_levels_deep_are_copied_walked_and_removed_with_1024_open_files() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    // A tmpfs: deep directories are slow to make and remove on a disk.
    let tmp = scratch.path().join("tmpfs");
    mount_tmpfs(&tmp, 1024);
    let levels = LEVELS;

    let vfs = store_in(&tmp.join("vfs"), "vfs");
    let deep = deep_layer(&vfs);
    assert!(depth_below(&layer_root(&vfs, &deep)) >= levels);
    // A copy on top (vfs create-layer), and a copy whose owners are shifted (a walk).
    let copy = new_layer(&vfs, &["create-layer", &deep]);
    assert!(depth_below(&layer_root(&vfs, &copy)) >= levels);
    let mapped = new_layer(
        &vfs,
        &[
            "create-layer",
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
            &deep,
        ],
    );
    let bottom = layer_root(&vfs, &mapped);
    assert_eq!(
        fs::symlink_metadata(bottom.join("d")).unwrap().uid(),
        100_000
    );
    for id in [&mapped, &copy, &deep] {
        vfs.run_ok(&["delete-layer", id]);
    }
    assert_eq!(vfs.run_ok(&["layers"]), "", "the store opens and is empty");
    assert_eq!(fs::read_dir(vfs.graph.join("vfs/dir")).unwrap().count(), 0);

    let overlay = store_in(&tmp.join("overlay"), "overlay");
    let deep = deep_layer(&overlay);
    assert!(depth_below(&layer_root(&overlay, &deep)) >= levels);
    overlay.run_ok(&["delete-layer", &deep]);
    assert_eq!(overlay.run_ok(&["layers"]), "");
    let _ = overlay.run(&["shutdown"]);

    let disk = BtrfsLoop::new(1024).expect("btrfs loop");
    let btrfs = store_in(disk.path(), "btrfs");
    let deep = deep_layer(&btrfs);
    let copy = new_layer(&btrfs, &["create-layer", &deep]);
    for id in [&copy, &deep] {
        btrfs.run_ok(&["delete-layer", id]);
    }
    assert_eq!(btrfs.run_ok(&["layers"]), "");
    let _ = btrfs.run(&["shutdown"]);
}

/// The secret every "outside" directory holds: never to be seen in any output.
const SECRET: &[u8] = b"HOST-SECRET-0123";

/// An "outside" directory: `etc/passwd` holding [`SECRET`] (mode 0600, the same size as the
/// layer's file of that name) and a `diff/` holding the same, for symlinks to `<layer>/diff`.
fn outside_dir(root: &Path) -> PathBuf {
    let outside = root.join("outside");
    for dir in [outside.join("etc"), outside.join("diff/etc")] {
        fs::create_dir_all(&dir).unwrap();
        let file = file_in(&dir, "passwd", SECRET);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    }
    outside
}

/// Every file below `dir`, with its contents (symlinks not followed).
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push((path.clone(), fs::read(&path).unwrap()));
            } else {
                out.push((path, Vec::new()));
            }
        }
    }
    out.sort();
    out
}

/// A tarball with `etc/passwd` of [`SECRET`]'s length (not its bytes).
fn layer_tar() -> Vec<u8> {
    suite::tarball(&[("etc/passwd".into(), b"root:x:0:0:root:".to_vec())])
}

/// A tarball that writes `pwned` at the top of wherever it is applied.
fn pwned_tar() -> Vec<u8> {
    suite::tarball(&[("pwned".into(), b"written".to_vec())])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Swaps `path` for a symlink to `target` and back, until `stop`.
fn swap_in_a_loop(
    path: PathBuf,
    target: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let hidden = path.with_extension("hidden");
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            if fs::rename(&path, &hidden).is_ok() {
                let _ = symlink(&target, &path);
                std::thread::sleep(std::time::Duration::from_micros(300));
                let _ = fs::remove_file(&path);
                let _ = fs::rename(&hidden, &path);
                swaps += 1;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        swaps
    })
}

/// A layer without tar-split records holding `etc/passwd` (written through its mount):
/// `diff` exports whatever its tree holds then.
fn layer_without_tar_split(store: &Store) -> String {
    let id = new_layer(store, &["create-layer"]);
    let root = PathBuf::from(store.run_ok(&["mount", &id]).trim());
    fs::create_dir_all(root.join("etc")).unwrap();
    file_in(&root.join("etc"), "passwd", b"root:x:0:0:root:");
    store.run_ok(&["unmount", &id]);
    id
}

/// Issue 16 item 4 on one driver: the layer directories of a layer being diffed (no tar-split
/// records, so its tree is exported) and of a layer being applied to are swapped for symlinks
/// to an outside directory and back, in a loop, while `diff` and `applydiff` run.
fn layer_directory_race(store: &Store, scratch: &Path) {
    let outside = outside_dir(scratch);
    let before = files_below(&outside);
    let pwned = file_in(scratch, "pwned.tar", &pwned_tar());
    let read = layer_without_tar_split(store);
    let written = new_layer(store, &["create-layer"]);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = [&read, &written]
        .map(|id| swap_in_a_loop(layer_root(store, id), outside.clone(), Arc::clone(&stop)));
    let tries = 120;
    let mut leaked = 0;
    for _ in 0..tries {
        let output = store.run(&["diff", "-u", &read]);
        if contains(&output.stdout, SECRET) || contains(&output.stderr, SECRET) {
            leaked += 1;
        }
        let _ = store.run(&["applydiff", "-f", pwned.to_str().unwrap(), &written]);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps: u64 = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    assert!(swaps > 0, "the attacker never swapped");
    let driver = &store.driver;
    assert_eq!(
        leaked, 0,
        "{driver}: diff printed the host's secret in {leaked} of {tries} runs"
    );
    assert_eq!(
        files_below(&outside),
        before,
        "{driver}: nothing written outside"
    );
    // The layers are whole again and still give back their diffs.
    store.run_ok(&["diff", "-u", &read]);
    store.run_ok(&["diff", "-u", &written]);
}

#[test]
fn a_vfs_layer_directory_swapped_for_a_symlink_in_a_loop_leaks_nothing() {
    require_or_skip!(Capability::Root);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    layer_directory_race(&store_in(scratch.path(), "vfs"), scratch.path());
}

#[test]
fn a_btrfs_subvolume_swapped_for_a_symlink_in_a_loop_leaks_nothing() {
    require_or_skip!(Capability::Btrfs);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let disk = BtrfsLoop::new(256).expect("btrfs loop");
    let store = store_in(disk.path(), "btrfs");
    layer_directory_race(&store, scratch.path());
    let _ = store.run(&["shutdown"]);
}

/// An overlay store in `root` with a base layer imported from [`layer_tar`] and an empty
/// child; returns `(store, base, child)`.
fn overlay_chain(root: &Path) -> (Store, String, String) {
    fs::create_dir_all(root).unwrap();
    let store = store_in(root, "overlay");
    let tar = file_in(root, "layer.tar", &layer_tar());
    let base = new_layer(&store, &["import-layer", "-f", tar.to_str().unwrap()]);
    let child = new_layer(&store, &["create-layer", &base]);
    (store, base, child)
}

fn overlay_dir(store: &Store, id: &str) -> PathBuf {
    store.graph.join("overlay").join(id)
}

/// Replaces `path` (a directory) with a symlink to `target`.
fn replace_with_symlink(path: &Path, target: &Path) {
    fs::remove_dir_all(path).unwrap();
    symlink(target, path).unwrap();
}

#[test]
fn overlay_applydiff_never_writes_through_a_symlinked_diff() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    let before = files_below(&outside);
    let (store, base, _) = overlay_chain(&scratch.path().join("s"));
    replace_with_symlink(
        &overlay_dir(&store, &base).join("diff"),
        &outside.join("diff"),
    );
    let pwned = file_in(scratch.path(), "pwned.tar", &pwned_tar());
    let output = store.run(&["applydiff", "-f", pwned.to_str().unwrap(), &base]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert_eq!(files_below(&outside), before);
    let _ = store.run(&["shutdown"]);
}

#[test]
fn overlay_diff_never_reads_through_a_symlinked_diff() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    // A host file with exactly the layer file's bytes (only root may read it): were it read
    // in the layer's place, `diff` would succeed, its checksum matching.
    let twin = outside.join("twin");
    fs::create_dir_all(twin.join("etc")).unwrap();
    let file = file_in(&twin.join("etc"), "passwd", b"root:x:0:0:root:");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let (store, base, _) = overlay_chain(&scratch.path().join("s"));
    // One layer with tar-split records (files read back by name), one without (its upper
    // dir exported as it is).
    let plain = layer_without_tar_split(&store);
    for (id, target) in [(&base, &twin), (&plain, &outside.join("diff"))] {
        replace_with_symlink(&overlay_dir(&store, id).join("diff"), target);
        for args in [&["diff", "-u", id][..], &["diff", id][..]] {
            let output = store.run(args);
            assert!(
                !contains(&output.stdout, SECRET),
                "{args:?}: {}",
                describe(&output)
            );
            assert!(!output.status.success(), "{args:?}: {}", describe(&output));
        }
    }
    let _ = store.run(&["shutdown"]);
}

#[test]
fn overlay_mount_never_lands_on_a_symlinked_merged() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    let (store, base, _) = overlay_chain(&scratch.path().join("s"));
    replace_with_symlink(&overlay_dir(&store, &base).join("merged"), &outside);
    let output = store.run(&["mount", &base]);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        mounts_under(&outside).is_empty(),
        "{:?}",
        mounts_under(&outside)
    );
    let _ = store.run(&["shutdown"]);
}

#[test]
fn overlay_unmount_never_detaches_a_mount_behind_a_symlinked_merged() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    // An unrelated mount.
    let victim = outside.join("victim");
    mount_tmpfs(&victim, 1);
    let (store, base, _) = overlay_chain(&scratch.path().join("s"));
    let merged = PathBuf::from(store.run_ok(&["mount", &base]).trim());
    // The layer's mount went away behind the store's back (it still counts one), and its
    // mount point now leads to the victim.
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH).unwrap();
    fs::remove_dir(&merged).unwrap();
    symlink(&victim, &merged).unwrap();
    let _ = store.run(&["unmount", &base]);
    let _ = store.run(&["unmount", "--force", &base]);
    assert!(
        mounts_under(&victim).contains(&victim),
        "the victim is still mounted"
    );
    let _ = store.run(&["shutdown"]);
}

#[test]
fn overlay_link_repair_never_writes_outside_the_home() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    let before = files_below(&outside);
    let (store, base, child) = overlay_chain(&scratch.path().join("s"));
    let home = store.graph.join("overlay");
    // The base's short link is lost (the repair runs at the next mount of its child), and a
    // forged one names a "layer" that is a symlink to a directory outside.
    let base_link = fs::read_to_string(overlay_dir(&store, &base).join("link")).unwrap();
    fs::remove_file(home.join("l").join(&base_link)).unwrap();
    symlink(&outside, home.join("evil")).unwrap();
    symlink("../evil/diff", home.join("l").join("E".repeat(26))).unwrap();
    let _ = store.run(&["mount", &child]);
    let _ = store.run(&["unmount", &child]);
    assert_eq!(files_below(&outside), before, "no `link` written outside");
    let _ = store.run(&["shutdown"]);
}

#[test]
fn overlay_lowers_never_leave_the_home() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let outside = outside_dir(scratch.path());
    let (store, base, child) = overlay_chain(&scratch.path().join("s"));
    // The base's directory is now a symlink to the outside: the child's `l/` link still reads
    // `../<base>/diff`, lexically inside the home.
    let layer = overlay_dir(&store, &base);
    fs::rename(&layer, layer.with_extension("moved")).unwrap();
    symlink(&outside, &layer).unwrap();
    let output = store.run(&["mount", &child]);
    if output.status.success() {
        let merged = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let seen = fs::read(merged.join("etc/passwd")).unwrap_or_default();
        let _ = store.run(&["unmount", &child]);
        assert!(
            !contains(&seen, SECRET),
            "the outside tree was mounted as a lower"
        );
    } else {
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("lower layer"), "{message}");
    }
    let _ = store.run(&["shutdown"]);
}

#[test]
fn check_repair_never_unmounts_another_stores_layer() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let (other, victim, _) = overlay_chain(&scratch.path().join("other"));
    let merged = PathBuf::from(other.run_ok(&["mount", &victim]).trim());
    let (store, base, _) = overlay_chain(&scratch.path().join("s"));
    // This store's layer directory now leads to the other store's mounted layer.
    let layer = overlay_dir(&store, &base);
    fs::remove_dir_all(&layer).unwrap();
    symlink(overlay_dir(&other, &victim), &layer).unwrap();
    let _ = store.run(&["check", "--repair"]);
    assert!(
        mounts_under(&merged).contains(&merged),
        "the other store's layer was unmounted"
    );
    other.run_ok(&["unmount", &victim]);
    let _ = store.run(&["shutdown"]);
    let _ = other.run(&["shutdown"]);
}

/// `mount <id>` run from `cwd` (where relative paths in mount data would lead): `Some(merged)`
/// if the mount succeeded.
fn mount_from(store: &Store, cwd: &Path, id: &str) -> (std::process::Output, Option<PathBuf>) {
    let output = store
        .command(&["mount", id])
        .current_dir(cwd)
        .output()
        .expect("runs layerstore");
    let merged = output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    (output, merged)
}

#[test]
fn forged_link_and_lower_files_cannot_inject_mount_options() {
    require_or_skip!(Capability::Overlay);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let (store, base, child) = overlay_chain(&scratch.path().join("s"));
    let home = store.graph.join("overlay");
    // Where injected relative `upperdir=up,workdir=wk` would point, made ready as an attacker
    // would (a read-only mount would get a writable upper dir there: the driver-level test
    // crates/overlay/tests/injection.rs shows that one).
    let cwd = scratch.path().join("cwd");
    for dir in ["up", "wk"] {
        fs::create_dir_all(cwd.join(dir)).unwrap();
    }
    let base_link = fs::read_to_string(overlay_dir(&store, &base).join("link")).unwrap();
    let forged = format!("{base_link},upperdir=up,workdir=wk");
    symlink(format!("../{base}/diff"), home.join("l").join(&forged)).unwrap();

    // A forged `lower` file of the child.
    let lower = overlay_dir(&store, &child).join("lower");
    fs::write(&lower, format!("l/{forged}")).unwrap();
    let (output, merged) = mount_from(&store, &cwd, &child);
    if let Some(merged) = merged {
        let written = fs::write(merged.join("injected"), b"x").is_ok();
        let _ = store.run(&["unmount", &child]);
        panic!("mounted despite the forged lower file (writable: {written})");
    }
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&child) && message.contains(&lower.display().to_string()),
        "{message}"
    );

    // A forged `link` file of the base: no child is made on it (its `lower` would carry it).
    let link = overlay_dir(&store, &base).join("link");
    fs::write(&link, &forged).unwrap();
    let output = store.run(&["create-layer", &base]);
    if output.status.success() {
        let grandchild = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if let (_, Some(merged)) = mount_from(&store, &cwd, &grandchild) {
            let written = fs::write(merged.join("injected"), b"x").is_ok();
            let _ = store.run(&["unmount", &grandchild]);
            panic!("a child of the forged link mounted (writable: {written})");
        }
    } else {
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(&link.display().to_string()), "{message}");
    }
    assert!(files_below(&cwd).is_empty(), "{:?}", files_below(&cwd));
    let _ = store.run(&["shutdown"]);
}

#[test]
fn the_drivers_own_names_are_refused_as_layer_ids() {
    require_or_skip!(Capability::Overlay, Capability::Btrfs);
    if !limit_open_files() {
        return;
    }
    let scratch = Scratch::new();
    let (store, base, child) = overlay_chain(&scratch.path().join("overlay"));
    let links = store.graph.join("overlay/l");
    let before: Vec<_> = fs::read_dir(&links)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for id in ["l", "staging"] {
        let output = store.run(&["create-layer", "--id", id]);
        assert!(!output.status.success(), "{id}: {}", describe(&output));
        let _ = store.run(&["delete-layer", id]);
    }
    let after: Vec<_> = fs::read_dir(&links)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(after, before, "every short link is still there");
    // Both layers still mount (their lowers are found).
    for id in [&base, &child] {
        store.run_ok(&["mount", id]);
        store.run_ok(&["unmount", id]);
    }
    let _ = store.run(&["shutdown"]);

    let vfs = store_in(&scratch.path().join("vfs"), "vfs");
    for id in ["dir", "staging"] {
        let output = vfs.run(&["create-layer", "--id", id]);
        assert!(!output.status.success(), "vfs {id}: {}", describe(&output));
    }
    let fs_loop = BtrfsLoop::new(256).expect("btrfs loop");
    let btrfs = store_in(fs_loop.path(), "btrfs");
    for id in ["subvolumes", "quotas"] {
        let output = btrfs.run(&["create-layer", "--id", id]);
        assert!(
            !output.status.success(),
            "btrfs {id}: {}",
            describe(&output)
        );
    }
    assert!(btrfs.graph.join("btrfs/subvolumes").is_dir());
    let _ = btrfs.run(&["shutdown"]);
}
