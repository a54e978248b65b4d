//! Files are created with their final mode when the umask leaves it whole (no `fchmod`):
//! under a strict umask every mode must still come out exact. In a process of its own
//! (`testsupport::helper::in_own_process`), as the umask belongs to the whole process.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use layerstore_testsupport::helper;
use layerstore_testsupport::tree;
use layerstore_vfs::copy::{CopyOptions, copy_tree};

#[test]
fn a_strict_umask_changes_no_mode() {
    if !helper::in_own_process() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    let modes = [
        0o644, 0o755, 0o666, 0o777, 0o700, 0o600, 0o620, 0o444, 0o4755,
    ];
    for mode in modes {
        for parent in [src.as_path(), &src.join("dir")] {
            let path = parent.join(format!("m{mode:o}"));
            std::fs::write(&path, "x").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    std::fs::set_permissions(src.join("dir"), std::fs::Permissions::from_mode(0o775)).unwrap();
    let want = common::snapshot(&src);
    for umask in [0o077, 0o022, 0o000] {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
        for single_thread in [false, true] {
            let dst = tmp.path().join(format!("dst-{umask:o}-{single_thread}"));
            std::fs::create_dir(&dst).unwrap();
            let options = CopyOptions {
                single_thread,
                ..Default::default()
            };
            copy_tree(&src, &dst, options).unwrap();
            let got = common::snapshot(&dst);
            tree::assert_same_tree(
                &format!("umask {umask:o}"),
                &want,
                &got,
                tree::Root::Compare,
            );
            assert_eq!(got[Path::new("dir/m666")].mode, 0o666);
        }
    }
}
