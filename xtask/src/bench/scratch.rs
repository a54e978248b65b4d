//! Scratch space: a tmpfs mounted for the run, and what an interrupted run left removed.

use std::fs;
use std::path::{Path, PathBuf};

use super::store;

/// A tmpfs mounted for the run; unmounted (with everything under it) and removed on drop.
pub(super) struct ScratchRoot {
    pub(super) base: PathBuf,
    pub(super) tmpfs: PathBuf,
}

impl ScratchRoot {
    /// Removes what an interrupted earlier run left: `lsbench-xtask-<pid>` whose pid is gone.
    fn remove_stale(work: &Path) {
        let Ok(entries) = fs::read_dir(work) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("lsbench-xtask-"))
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

    pub(super) fn create(work: &Path) -> Result<ScratchRoot, String> {
        ScratchRoot::remove_stale(work);
        let base = work.join(format!("lsbench-xtask-{}", std::process::id()));
        let tmpfs = base.join("tmpfs");
        fs::create_dir_all(&tmpfs).map_err(|e| format!("mkdir {}: {e}", tmpfs.display()))?;
        let root = ScratchRoot { base, tmpfs };
        rustix::mount::mount(
            "lsbench",
            &root.tmpfs,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            Some(c"size=16g,mode=0755"),
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", root.tmpfs.display()))?;
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
