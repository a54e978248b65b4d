//! Property: whatever the tree, the copy is indistinguishable from the original.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use layerstore_testsupport::tree;
use layerstore_vfs::copy::{CopyOptions, copy_tree};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Dir {
        mode: u32,
    },
    File {
        content: Vec<u8>,
        mode: u32,
        sparse_at: Option<u32>,
        xattr: Option<Vec<u8>>,
    },
    Symlink {
        target: String,
    },
    Hardlink {
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::sample::select(vec![0o755u32, 0o700, 0o555, 0o1777])
            .prop_map(|mode| Op::Dir { mode }),
        (
            prop::collection::vec(any::<u8>(), 0..300),
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o2711, 0o400]),
            prop::option::of(1u32..(8 << 20)),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_map(|(content, mode, sparse_at, xattr)| Op::File {
                content,
                mode,
                sparse_at,
                xattr
            }),
        "[a-z./]{1,12}".prop_map(|target| Op::Symlink { target }),
        (0usize..64).prop_map(|to| Op::Hardlink { to }),
    ]
}

fn build(root: &std::path::Path, ops: &[(usize, String, Op, i64, u32)]) {
    std::fs::create_dir(root).unwrap();
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dir_modes = Vec::new();
    let mut times = Vec::new();
    for (parent, name, op, secs, nanos) in ops {
        let path = dirs[parent % dirs.len()].join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match op {
            Op::Dir { mode } => {
                std::fs::create_dir(&path).unwrap();
                dir_modes.push((path.clone(), *mode));
                dirs.push(path.clone());
            }
            Op::File {
                content,
                mode,
                sparse_at,
                xattr,
            } => {
                let file = std::fs::File::create(&path).unwrap();
                use std::os::unix::fs::FileExt;
                file.write_all_at(content, 0).unwrap();
                if let Some(at) = sparse_at {
                    file.write_all_at(b"tail", u64::from(*at)).unwrap();
                }
                if let Some(value) = xattr {
                    let dir = layerstore_driver::tree::open_dir(path.parent().unwrap()).unwrap();
                    let name = std::ffi::CString::new(path.file_name().unwrap().as_encoded_bytes())
                        .unwrap();
                    layerstore_driver::xattr::set_at(&dir, &name, c"user.prop", value).unwrap();
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
                files.push(path.clone());
            }
            Op::Symlink { target } => std::os::unix::fs::symlink(target, &path).unwrap(),
            Op::Hardlink { to } => {
                if files.is_empty() {
                    continue;
                }
                std::fs::hard_link(&files[to % files.len()], &path).unwrap();
            }
        }
        times.push((path, *secs, *nanos));
    }
    // Times last (deepest first, so that creating entries does not disturb them), then the
    // directory modes (a 0555 directory could not have been filled by an unprivileged user).
    times.reverse();
    for (path, secs, nanos) in times {
        let ts = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: i64::from(nanos),
        };
        let stamps = rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &stamps,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    for (path, mode) in dir_modes {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn copy_equals_original(
        ops in prop::collection::vec(
            (0usize..16, "[a-z]{1,6}", op(), 0i64..2_000_000_000, 0u32..1_000_000_000),
            0..40,
        ),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        build(&src, &ops);
        let dst = tmp.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        copy_tree(&src, &dst, CopyOptions::default()).unwrap();
        tree::assert_same_tree("property copy", &common::snapshot(&src), &common::snapshot(&dst), tree::Root::Compare);
    }
}
