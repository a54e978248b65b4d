//! Scratch space: a tmpfs mounted for the run, and what an interrupted run left removed.

use std::fs;
use std::path::{Path, PathBuf};

use super::store;

/// A tmpfs mounted for the run; unmounted (with everything under it) and removed on drop.
pub(super) struct ScratchRoot {
    pub(super) base: PathBuf,
    pub(super) tmpfs: PathBuf,
}

/// Removes what an interrupted earlier run left in `parent`: `<prefix><pid>` whose pid is gone
/// (unmounting what is mounted under it).
pub(super) fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!(
                "bench: removing {} left by an interrupted run",
                entry.path().display()
            );
            if let Err(e) = store::remove_tree(&entry.path()) {
                eprintln!("bench: {e}");
            }
        }
    }
}

/// Mounts a fresh tmpfs with `options` (`size=...,mode=...`) on the directory `dir`.
pub(super) fn mount_tmpfs(dir: &Path, options: &std::ffi::CStr) -> Result<(), String> {
    rustix::mount::mount(
        "lsbench",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(options),
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
}

impl ScratchRoot {
    pub(super) fn create(work: &Path) -> Result<ScratchRoot, String> {
        remove_stale(work, "lsbench-xtask-");
        let base = work.join(format!("lsbench-xtask-{}", std::process::id()));
        let tmpfs = base.join("tmpfs");
        fs::create_dir_all(&tmpfs).map_err(|e| format!("mkdir {}: {e}", tmpfs.display()))?;
        let root = ScratchRoot { base, tmpfs };
        mount_tmpfs(&root.tmpfs, c"size=16g,mode=0755")?;
        Ok(root)
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        store::unmount_under(&self.base, false);
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("bench: cannot remove {}: {e}", self.base.display());
        }
    }
}
