//! The Driver contract as vfs implements it: options, layout, errors, ID shifting, registry.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use layerstore_driver::{
    CreateOpts, Driver, DriverConfig, Error, IdMap, IdMappings, MountOpts, Registration, Registry,
};
use layerstore_testsupport::tree;
use layerstore_testsupport::{Capability, require_or_skip};
use layerstore_vfs::VfsDriver;

fn config(root: &Path, options: &[&str]) -> DriverConfig {
    let mut config = DriverConfig::new(root.join("graph"), root.join("run"));
    config.options = options.iter().map(|s| s.to_string()).collect();
    config
}

fn new_driver(root: &Path) -> VfsDriver {
    VfsDriver::new(&config(root, &[])).unwrap()
}

#[test]
fn options_are_checked_with_gos_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |options: &[&str]| {
        VfsDriver::new(&config(tmp.path(), options))
            .unwrap_err()
            .to_string()
    };
    assert!(err(&["vfs.mountopt=nodev"]).contains("vfs driver does not support mount options"));
    assert_eq!(
        err(&["vfs.frob=1"]),
        "vfs driver does not support vfs.frob options"
    );
    assert_eq!(
        err(&["overlay.mountopt=x"]),
        "vfs driver does not support overlay.mountopt options"
    );
    assert!(err(&["vfs.ignore_chown_errors=maybe"]).contains("vfs.ignore_chown_errors=maybe"));
    assert!(err(&["vfs.ignore_chown_errors"]).contains("expected key=value"));
    let driver = VfsDriver::new(&config(
        tmp.path(),
        &[
            "vfs.ignore_chown_errors=true",
            ".imagestore=/nonexistent/a,/nonexistent/b",
        ],
    ))
    .unwrap();
    assert_eq!(
        driver.additional_image_stores(),
        [Path::new("/nonexistent/a"), Path::new("/nonexistent/b")]
    );
    assert!(driver.status().is_empty(), "vfs has no status lines");
    let home = tmp.path().join("graph/vfs");
    assert_eq!(driver.home(), home);
    assert_eq!(
        std::fs::metadata(home.join("dir")).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
fn mount_accepts_only_ro_and_keeps_the_label() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver.create("l", None, &CreateOpts::default()).unwrap();
    let with = |options: &[&str]| MountOpts {
        options: options.iter().map(|s| s.to_string()).collect(),
        mount_label: "system_u:object_r:container_file_t:s0:c1,c2".into(),
        ..Default::default()
    };
    let path = driver.get("l", &with(&[])).unwrap();
    assert_eq!(path, tmp.path().join("graph/vfs/dir/l"));
    assert_eq!(driver.get("l", &with(&["ro"])).unwrap(), path);
    let err = driver.get("l", &with(&["ro", "nodev"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("vfs driver does not support mount options"),
        "{err}"
    );
    assert_eq!(
        driver.metadata("l").unwrap()["MountLabel"],
        "system_u:object_r:container_file_t:s0:c1,c2"
    );
    driver.put("l").unwrap();
    assert!(matches!(
        driver.get("missing", &MountOpts::default()),
        Err(Error::LayerNotFound { .. })
    ));
}

#[test]
fn layer_dirs_have_gos_modes_and_owners() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), &[]);
    let map = |host_id| IdMap {
        container_id: 0,
        host_id,
        size: 65536,
    };
    cfg.id_mappings = IdMappings::new(vec![map(100000)], vec![map(200000)]);
    let driver = VfsDriver::new(&cfg).unwrap();
    driver.create("base", None, &CreateOpts::default()).unwrap();
    let base = driver.get("base", &MountOpts::default()).unwrap();
    let st = std::fs::metadata(&base).unwrap();
    assert_eq!(
        (st.mode() & 0o7777, st.uid(), st.gid()),
        (0o555, 100000, 200000)
    );

    // Per-layer mappings win over the driver's defaults.
    let own = CreateOpts {
        id_mappings: Some(IdMappings::new(vec![map(300000)], vec![map(400000)])),
        ..Default::default()
    };
    driver.create("other", None, &own).unwrap();
    let st = std::fs::metadata(driver.get("other", &MountOpts::default()).unwrap()).unwrap();
    assert_eq!((st.uid(), st.gid()), (300000, 400000));

    // A child takes the parent directory's mode and owner.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(&base, Some(1234), Some(5678)).unwrap();
    driver
        .create_read_write("child", Some("base"), &CreateOpts::default())
        .unwrap();
    let st = std::fs::metadata(driver.get("child", &MountOpts::default()).unwrap()).unwrap();
    assert_eq!(
        (st.mode() & 0o7777, st.uid(), st.gid()),
        (0o711, 1234, 5678)
    );
}

#[test]
fn create_and_remove_errors_name_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver.create("a", None, &CreateOpts::default()).unwrap();
    let err = driver
        .create("a", None, &CreateOpts::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::LayerExists { .. }) && err.to_string().contains("layer a"),
        "{err}"
    );
    let err = driver
        .create("b", Some("nope"), &CreateOpts::default())
        .unwrap_err();
    assert!(err.to_string().contains("layer nope: not found"), "{err}");
    assert!(!driver.exists("b"), "a failed create leaves nothing behind");
    let sized = CreateOpts {
        storage_opt: [("size".to_string(), "10G".to_string())].into(),
        ..Default::default()
    };
    let err = driver.create("c", None, &sized).unwrap_err();
    assert!(
        err.to_string()
            .contains("--storage-opt is not supported for vfs"),
        "{err}"
    );
    for bad in ["", "..", "../escape", "a/b"] {
        let err = driver
            .create(bad, None, &CreateOpts::default())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidId { .. }), "{bad:?}: {err}");
        assert!(!driver.exists(bad));
    }
    assert!(!tmp.path().join("graph/vfs/escape").exists());

    // Removal of a tree with read-only directories; removing again is fine.
    let dir = driver.get("a", &MountOpts::default()).unwrap();
    std::fs::create_dir(dir.join("ro")).unwrap();
    std::fs::write(dir.join("ro/f"), "x").unwrap();
    std::fs::set_permissions(dir.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    driver.remove("a").unwrap();
    assert!(!dir.exists());
    driver.remove("a").unwrap();
    assert_eq!(driver.list_layers().unwrap(), Vec::<String>::new());
}

#[test]
fn create_from_template_copies_the_template() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver
        .create("parent", None, &CreateOpts::default())
        .unwrap();
    driver
        .create("template", Some("parent"), &CreateOpts::default())
        .unwrap();
    let template = driver.get("template", &MountOpts::default()).unwrap();
    std::fs::write(template.join("added"), "t").unwrap();
    let none = IdMappings::default();
    driver
        .create_from_template(
            "copy",
            "template",
            &none,
            Some("parent"),
            &none,
            &CreateOpts::default(),
            true,
        )
        .unwrap();
    let copy = driver.get("copy", &MountOpts::default()).unwrap();
    tree::assert_same_tree(
        "template copy",
        &common::snapshot(&template),
        &common::snapshot(&copy),
        tree::Root::IgnoreTimes,
    );
}

#[test]
fn update_layer_id_map_shifts_owners_and_keeps_setuid_and_capabilities() {
    require_or_skip!(Capability::Root);
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver.create("l", None, &CreateOpts::default()).unwrap();
    let dir = driver.get("l", &MountOpts::default()).unwrap();
    std::fs::write(dir.join("tool"), "x").unwrap();
    std::fs::set_permissions(dir.join("tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let status = std::process::Command::new("setfattr")
        .args([
            "-n",
            "security.capability",
            "-v",
            "0x0100000200040000000000000000000000000000",
        ])
        .arg(dir.join("tool"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.join("user-file"), "y").unwrap();
    std::os::unix::fs::chown(dir.join("user-file"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::symlink("tool", dir.join("link")).unwrap();

    let map = |host_id| IdMap {
        container_id: 0,
        host_id,
        size: 65536,
    };
    let to_host = IdMappings::new(vec![map(100000)], vec![map(200000)]);
    driver
        .update_layer_id_map("l", &IdMappings::default(), &to_host, "")
        .unwrap();
    let owner = |p: &str| {
        let st = std::fs::symlink_metadata(dir.join(p)).unwrap();
        (st.uid(), st.gid())
    };
    // The top directory is left alone, as Go's walk skips `.` (measured with the Go tool:
    // crates/cli/tests/hostile_drivers.rs compares a whole chain).
    assert_eq!(owner(""), (0, 0));
    assert_eq!(owner("tool"), (100000, 200000));
    assert_eq!(owner("user-file"), (101000, 201000));
    assert_eq!(owner("link"), (100000, 200000));
    assert_eq!(
        std::fs::metadata(dir.join("tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    let snap = common::snapshot(&dir);
    assert!(
        snap[Path::new("tool")]
            .xattrs
            .contains_key("security.capability")
    );

    // And back: host view → container view → identity.
    driver
        .update_layer_id_map("l", &to_host, &IdMappings::default(), "")
        .unwrap();
    assert_eq!(owner("user-file"), (1000, 1000));
    assert_eq!(owner(""), (0, 0));

    // An owner outside the mappings is an error naming the file.
    std::os::unix::fs::chown(dir.join("user-file"), Some(70000), Some(0)).unwrap();
    let err = driver
        .update_layer_id_map("l", &IdMappings::default(), &to_host, "")
        .unwrap_err();
    assert!(
        err.to_string().contains("user-file") && err.to_string().contains("uid 70000"),
        "{err}"
    );
}

#[test]
fn disk_usage_counts_each_inode_once() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver.create("l", None, &CreateOpts::default()).unwrap();
    let dir = driver.get("l", &MountOpts::default()).unwrap();
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/f"), vec![1u8; 1000]).unwrap();
    std::fs::hard_link(dir.join("d/f"), dir.join("g")).unwrap();
    std::os::unix::fs::symlink("d/f", dir.join("s")).unwrap();
    let dirs: u64 = [&dir, &dir.join("d")]
        .iter()
        .map(|d| std::fs::metadata(d).unwrap().len())
        .sum();
    let usage = driver.read_write_disk_usage("l").unwrap();
    // Two directories, one file under two names, one symlink of 3 bytes.
    assert_eq!(usage.inode_count, 4);
    assert_eq!(usage.size, dirs + 1000 + 3);
}

#[test]
fn diff_getter_reads_the_layers_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let driver = new_driver(tmp.path());
    driver.create("l", None, &CreateOpts::default()).unwrap();
    let dir = driver.get("l", &MountOpts::default()).unwrap();
    std::fs::create_dir(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0").unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("escape")).unwrap();
    let getter = driver
        .diff_getter("l")
        .unwrap()
        .expect("vfs has a file getter");
    let mut content = String::new();
    std::io::Read::read_to_string(&mut getter.get(b"./etc/passwd").unwrap(), &mut content).unwrap();
    assert_eq!(content, "root:x:0:0");
    assert!(
        getter.get(b"escape/hostname").is_err(),
        "symlinks are not followed"
    );
}

fn refuse(reason: &'static str) -> layerstore_driver::InitFn {
    match reason {
        "overlay" => |c| {
            Err(Error::NotSupported {
                driver: "overlay".into(),
                root: c.graph_root.clone(),
                reason: "test".into(),
            })
        },
        "btrfs" => |c| {
            Err(Error::NotSupported {
                driver: "btrfs".into(),
                root: c.graph_root.clone(),
                reason: "test".into(),
            })
        },
        _ => |c| {
            Err(Error::io(
                "broken",
                c.graph_root.clone(),
                std::io::Error::other("overlay tried"),
            ))
        },
    }
}

#[test]
fn registry_picks_drivers_as_go_does() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &[]);
    let mut registry = Registry::new();
    registry
        .register(Registration {
            name: "overlay",
            aliases: &["overlay2"],
            init: refuse("overlay"),
        })
        .register(Registration {
            name: "btrfs",
            aliases: &[],
            init: refuse("btrfs"),
        })
        .register(layerstore_vfs::registration());
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["overlay", "btrfs", "vfs"]
    );
    assert_eq!(registry.lookup("overlay2").unwrap().name, "overlay");

    // Nothing in the graph root: the first driver that works here.
    let driver = registry.open("", &cfg).unwrap();
    assert_eq!(driver.name(), "vfs");
    assert_eq!(registry.open("auto", &cfg).unwrap().name(), "vfs");
    assert_eq!(registry.open("vfs", &cfg).unwrap().name(), "vfs");
    let err = registry.open("zfs", &cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown graph driver \"zfs\" (known: overlay, btrfs, vfs)"
    );

    // A prior btrfs home wins, and its failure is reported instead of falling back.
    std::fs::create_dir_all(cfg.graph_root.join("btrfs")).unwrap();
    let err = registry.open_auto(&cfg).unwrap_err();
    assert!(
        err.to_string().starts_with("btrfs driver is not supported"),
        "{err}"
    );
    // Several prior homes: the caller must choose.
    std::fs::create_dir_all(cfg.graph_root.join("overlay")).unwrap();
    let err = registry.open_auto(&cfg).unwrap_err();
    assert!(matches!(err, Error::SeveralPriorDrivers { .. }), "{err}");
    assert!(err.to_string().contains("overlay, btrfs"), "{err}");

    // vfs state does not pin the choice (Go 1.43 ignores it): overlay is tried first.
    let other = tempfile::tempdir().unwrap();
    let cfg = config(other.path(), &[]);
    std::fs::create_dir_all(cfg.graph_root.join("vfs/dir")).unwrap();
    let mut registry = Registry::new();
    registry
        .register(Registration {
            name: "overlay",
            aliases: &[],
            init: refuse("fail"),
        })
        .register(layerstore_vfs::registration());
    assert_eq!(registry.prior_drivers(&cfg.graph_root), Vec::<&str>::new());
    let err = registry.open_auto(&cfg).unwrap_err();
    // The refusal's cause is its source, printed by the chain.
    let text = layerstore_model::error_chain(&err);
    assert!(text.contains("overlay tried"), "{text}");
}
