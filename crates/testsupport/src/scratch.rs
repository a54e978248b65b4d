//! Scratch directories that leave no mounts behind.
//!
//! podman, buildah and the Go tool bind-mount a store's `overlay` home privately and leave it
//! mounted when they exit; a driver killed mid-operation leaves its mounts too. A temporary
//! directory holding such a store can then not be removed, and the mounts pile up under the
//! temp dir. Every test scratch that those tools (or a killed process) may touch is a
//! [`Scratch`]: dropping it detaches every mount beneath it, deepest first, then removes it.
//! `cargo xtask ci` lists what is still mounted under its temp dir after the tests
//! ([`mounts_under`]) and fails naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory that, when dropped, detaches every mount beneath it
/// ([`unmount_under`]) and then removes it.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    /// A new scratch directory under the system temp dir.
    pub fn new() -> Self {
        Self::with_prefix(".tmp-")
    }

    /// A new scratch directory under the system temp dir named `<prefix><pid>-<n>-<random>`:
    /// one length for all of a process, all lower case (podman names an `oci:` layout after
    /// its path, and image names are lower case), so that what a suite left can be told apart.
    pub fn with_prefix(prefix: &str) -> Self {
        Self::with_prefix_in(&std::env::temp_dir(), prefix)
    }

    /// [`Scratch::with_prefix`] under `base` instead of the temp dir (a test that needs the
    /// backing filesystem of `/var/tmp`, say).
    pub fn with_prefix_in(base: &Path, prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static MADE: AtomicU32 = AtomicU32::new(0);
        let mut random = [0u8; 4];
        let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
        // Fixed width: two scratches of one process have paths of one length (the Go tool's
        // usage text pads its columns to the paths it shows, which differential tests compare).
        let name = format!(
            "{prefix}{}-{:06}-{:08x}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed),
            u32::from_le_bytes(random)
        );
        let dir = tempfile::Builder::new()
            .prefix(&name)
            .rand_bytes(0)
            .tempdir_in(base)
            .unwrap_or_else(|e| {
                panic!(
                    "make the scratch directory `{name}` in {}: {e}",
                    base.display()
                )
            });
        Scratch { dir: Some(dir) }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            unmount_under(dir.path());
            let _ = dir.close();
        }
    }
}

/// The mount points at or below `dir` in this process's mount namespace, deepest first
/// (empty when `findmnt` cannot say). `findmnt`'s JSON spells every path out, whatever
/// characters it holds.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("findmnt")
        .args(["--json", "--list", "--output", "TARGET"])
        .output()
    else {
        return Vec::new();
    };
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut found: Vec<PathBuf> = table["filesystems"]
        .as_array()
        .map(|mounts| {
            mounts
                .iter()
                .filter_map(|m| m["target"].as_str())
                .map(PathBuf::from)
                .filter(|target| target.starts_with(dir))
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Detaches every mount at or below `dir`, deepest first; returns how many it detached. A
/// detach can reveal a mount stacked below it: a few rounds reach them all.
pub fn unmount_under(dir: &Path) -> usize {
    let mut detached = 0;
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for mount in mounts {
            if rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH).is_ok() {
                detached += 1;
            }
        }
    }
    detached
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_scratch_takes_its_mounts_with_it() {
        crate::require_or_skip!(crate::Capability::Root);
        let scratch = Scratch::with_prefix("lsts-");
        let path = scratch.path().to_path_buf();
        let inner = path.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        // Stacked: a bind of the scratch on a directory inside it, and a tmpfs below that.
        rustix::mount::mount_bind(&path, &inner).unwrap();
        let stacked = inner.join("a");
        rustix::mount::mount(
            "tmpfs",
            &stacked,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(mounts_under(&path), vec![stacked, inner]);
        drop(scratch);
        assert_eq!(mounts_under(&path), Vec::<PathBuf>::new());
        assert!(!path.exists());
    }
}
