//! Random trees → tar (written by the `tar` crate) → apply → the same tree GNU tar extracts.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use layerstore_archive::ApplyOptions;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        content: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    /// Hardlink to the n-th file (modulo the number of files before it).
    Hardlink {
        to: usize,
    },
}

#[derive(Debug, Clone)]
struct Item {
    path: Vec<String>,
    uid: u64,
    gid: u64,
    mtime: u64,
    node: Node,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("long-name-".repeat(12)),
        Just("ünï".to_string()),
        "[a-z]{1,8}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        // No setgid directories: a directory made inside one inherits S_ISGID, which GNU tar
        // keeps while we (like Go's chmod) set exactly the header's mode.
        prop::sample::select(vec![0o755u32, 0o700, 0o1777, 0o4755])
            .prop_map(|mode| Node::Dir { mode }),
        (
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o2750, 0o000]),
            prop::collection::vec(any::<u8>(), 0..3000),
        )
            .prop_map(|(mode, content)| Node::File { mode, content }),
        prop::sample::select(vec!["../x", "/etc/passwd", "a/b", "."]).prop_map(|t| Node::Symlink {
            target: t.to_string()
        }),
        (0usize..8).prop_map(|to| Node::Hardlink { to }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    (
        prop::collection::vec(name(), 1..4),
        0u64..3000,
        0u64..3000,
        1_000_000_000u64..1_800_000_000,
        node(),
    )
        .prop_map(|(path, uid, gid, mtime, node)| Item {
            path,
            uid,
            gid,
            mtime,
            node,
        })
}

/// Writes the items as a tar stream: parents as directories first, duplicates dropped.
fn build(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut files: Vec<String> = Vec::new();
    for item in items {
        let path = item.path.join("/");
        // A path under something already used as a non-directory would be a conflict.
        let parents: Vec<String> = (1..item.path.len())
            .map(|i| item.path[..i].join("/"))
            .collect();
        if seen.contains(&path)
            || parents
                .iter()
                .any(|p| seen.contains(p) && !dirs.contains(p))
        {
            continue;
        }
        for parent in &parents {
            if dirs.insert(parent.clone()) {
                seen.insert(parent.clone());
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(item.mtime);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{parent}/"), &[][..])
                    .expect("append");
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_uid(item.uid);
        h.set_gid(item.gid);
        h.set_mtime(item.mtime);
        h.set_size(0);
        match &item.node {
            Node::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                dirs.insert(path.clone());
                builder
                    .append_data(&mut h, format!("{path}/"), &[][..])
                    .expect("append");
            }
            Node::File { mode, content } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(content.len() as u64);
                builder
                    .append_data(&mut h, &path, &content[..])
                    .expect("append");
                files.push(path.clone());
            }
            Node::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                builder.append_link(&mut h, &path, target).expect("append");
            }
            Node::Hardlink { to } => {
                if files.is_empty() {
                    continue;
                }
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                let target = files[to % files.len()].clone();
                builder.append_link(&mut h, &path, target).expect("append");
            }
        }
        seen.insert(path);
    }
    builder.into_inner().expect("finish")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_extract_like_gnu_tar(items in prop::collection::vec(item(), 1..24)) {
        if !layerstore_testsupport::require_all(
            &[layerstore_testsupport::Capability::Root, layerstore_testsupport::Capability::GnuTar],
            "random_trees_extract_like_gnu_tar",
        ) {
            return Ok(());
        }
        let bytes = build(&items);
        let tmp = tempfile::tempdir_in("/dev/shm").expect("tempdir");
        let tarball = tmp.path().join("t.tar");
        std::fs::write(&tarball, &bytes).expect("write");
        let ours = tmp.path().join("ours");
        let (report, _) = apply_bytes(&ours, &bytes, &ApplyOptions::default()).expect("apply");
        let gnu = tmp.path().join("gnu");
        gnu_tar_extract(&tarball, &gnu);
        // Directory mtimes are not compared: GNU tar restores a directory's mtime as soon as an
        // entry outside it comes, so an unsorted archive that returns to the directory leaves it
        // at "now"; we set every directory's time after all entries.
        let opts = SnapOptions { root: false, dir_mtimes: false, ..FULL };
        assert_same_tree(&snapshot(&ours, opts), &snapshot(&gnu, opts), "random tree");
        prop_assert_eq!(report.uncompressed_size, bytes.len() as u64);
    }
}
