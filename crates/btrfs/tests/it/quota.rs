//! `--storage-opt size=` and `btrfs.min_space`: qgroup limits that the kernel enforces,
//! recorded in `quotas/<id>` and re-applied by `get`.

use crate::common;

use std::io::Write;
use std::path::Path;

use layerstore_driver::{CreateOpts, Driver, MountOpts};
use layerstore_testsupport::{Capability, require_or_skip};

fn with_size(size: &str) -> CreateOpts {
    let mut opts = CreateOpts::default();
    opts.storage_opt.insert("size".into(), size.into());
    opts
}

/// Writes `mib` MiB to `path` and syncs; the first error, if any.
fn write_mib(path: &Path, mib: usize) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

#[test]
fn size_limits_a_layer_and_get_reapplies_the_recorded_limit() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::new(512);
    let driver = &scratch.driver;
    driver.create("limited", None, &with_size("2M")).unwrap();
    let quota_file = scratch.graph_root.join("btrfs/quotas/limited");
    assert_eq!(std::fs::read_to_string(&quota_file).unwrap(), "2097152");
    let dir = driver.get("limited", &MountOpts::default()).unwrap();
    let err = write_mib(&dir.join("too-big"), 8).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::DQUOT.raw_os_error()),
        "{err}"
    );
    std::fs::remove_file(dir.join("too-big")).unwrap();

    // A larger limit recorded in the file is applied by the next `get`.
    std::fs::write(&quota_file, "67108864").unwrap();
    let dir = driver.get("limited", &MountOpts::default()).unwrap();
    write_mib(&dir.join("fits-now"), 8).unwrap();

    // A child of a limited layer is not limited unless asked.
    driver
        .create("unlimited-child", Some("limited"), &CreateOpts::default())
        .unwrap();
    assert!(
        !scratch
            .graph_root
            .join("btrfs/quotas/unlimited-child")
            .exists()
    );

    driver.remove("limited").unwrap();
    assert!(!quota_file.exists());
    assert!(!driver.exists("limited"));
}

#[test]
fn storage_options_are_checked() {
    require_or_skip!(Capability::Btrfs);
    let scratch = common::Scratch::with_options(256, &["btrfs.min_space=4M"]);
    let driver = &scratch.driver;
    let err = driver.create("small", None, &with_size("1M")).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be less than btrfs.min_space"),
        "{err}"
    );
    let err = driver.create("zero", None, &with_size("0")).unwrap_err();
    assert!(err.to_string().contains("invalid storage size"), "{err}");
    let err = driver.create("bad", None, &with_size("lots")).unwrap_err();
    assert!(err.to_string().contains("size=lots"), "{err}");
    let mut opts = CreateOpts::default();
    opts.storage_opt.insert("inodes".into(), "10".into());
    let err = driver.create("inodes", None, &opts).unwrap_err();
    assert!(err.to_string().contains("inodes"), "{err}");
    // Nothing was left behind by the refusals.
    assert!(driver.list_layers().unwrap().is_empty());
    driver.create("ok", None, &with_size("4M")).unwrap();
    assert_eq!(
        std::fs::read_to_string(scratch.graph_root.join("btrfs/quotas/ok")).unwrap(),
        "4194304"
    );
}
