//! Making a filesystem ready for a timed run that creates many files.
//!
//! Every timed run starts after `sync(2)`, so the previous run's writes do not land in its
//! time. ext4 without a journal needs more: it will not hand out an inode that was freed less
//! than 60 s ago (360 s while its inode-table block is dirty) as long as that block is still
//! in the buffer cache (fs/ext4/ialloc.c, `recently_deleted`), and it looks every candidate up
//! again for each new inode. A run that follows the deletion of the previous run's 10,000
//! files in the same block groups therefore spends seconds of system time scanning: measured
//! here, an import of rootfs.tar took 3.6 s (3.9 s of system CPU) right after `delete-layer`,
//! 0.39 s once the cache had let go of the freed inodes' blocks, and the Go tool 4.5 s against
//! 1.3 s. That cost is the benchmark's own delete-and-recreate cadence, not the tools', so on
//! such a filesystem the page cache is dropped after the sync, and the files the command
//! reads (its program, its file arguments, the given inputs) are read back in so that it
//! does not start colder than on any other run.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What happens before a timed run that creates many files (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    /// `sync(2)` only.
    Sync,
    /// `sync(2)`, the page cache dropped, the command's files read back in: ext4 without a
    /// journal.
    SyncAndForgetFreedInodes,
}

impl Settle {
    /// The settling `fs_root`'s filesystem needs.
    pub(super) fn for_fs(fs_root: &Path) -> Settle {
        if is_ext4_without_journal(fs_root) {
            Settle::SyncAndForgetFreedInodes
        } else {
            Settle::Sync
        }
    }

    /// A line for the report's notes, where this is more than a sync.
    pub(super) fn note(self) -> Option<&'static str> {
        match self {
            Settle::Sync => None,
            Settle::SyncAndForgetFreedInodes => Some(
                "ext4 without a journal: before each timed run that creates many files (imports, \
                 tar -x, the vfs child, pulls) the page cache is dropped after the sync and the \
                 command's program and input files are read back in; otherwise ext4 refuses to \
                 reuse the inodes the previous run's delete freed (fs/ext4/ialloc.c, \
                 recently_deleted) and both tools pay seconds of system time for the bench's \
                 own delete-and-recreate cadence",
            ),
        }
    }

    /// Settles before `cmd` runs: syncs, and on ext4 without a journal also drops the page
    /// cache and reads back in `cmd`'s program, the files and trees its absolute arguments
    /// name, and `inputs`.
    pub(super) fn before(self, cmd: &Command, inputs: &[&Path]) -> Result<(), String> {
        rustix::fs::sync();
        if self == Settle::Sync {
            return Ok(());
        }
        // "1": the page cache only (it holds the block device's buffers, so the freed inodes'
        // table blocks go); dentries and inodes stay.
        fs::write("/proc/sys/vm/drop_caches", "1")
            .map_err(|e| format!("dropping the page cache (/proc/sys/vm/drop_caches): {e}"))?;
        let mut files: Vec<PathBuf> = Vec::new();
        files.extend(program_path(cmd));
        files.extend(
            cmd.get_args()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute() && p.exists()),
        );
        files.extend(inputs.iter().map(|p| p.to_path_buf()));
        for file in &files {
            read_through(file).map_err(|e| format!("reading {} back in: {e}", file.display()))?;
        }
        Ok(())
    }
}

/// `cmd`'s program as a path: itself if it names one, else the first match on `PATH`.
fn program_path(cmd: &Command) -> Option<PathBuf> {
    let program = Path::new(cmd.get_program());
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    crate::tools::find_on_path(program.to_str()?)
}

/// Reads `path` to its end, so its pages are cached; a directory: every regular file
/// beneath it ([`crate::tools::regular_files`]: symbolic links are not followed).
fn read_through(path: &Path) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let meta = fs::symlink_metadata(path)?;
    let files = if meta.is_dir() {
        crate::tools::regular_files(path)?
    } else if meta.is_file() {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    for file in files {
        let mut f = File::open(&file)?;
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// Whether `path` is on ext4 mounted without a journal: its device's
/// `/sys/fs/ext4/<dev>/journal_task` reads `<none>`.
fn is_ext4_without_journal(path: &Path) -> bool {
    const EXT4_SUPER_MAGIC: u64 = 0xEF53;
    let Ok(st) = rustix::fs::statfs(path) else {
        return false;
    };
    if st.f_type as u64 != EXT4_SUPER_MAGIC {
        return false;
    }
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let dev = meta.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    // /sys/dev/block/M:m links to the block device's directory, named as the kernel names it.
    let Ok(target) = fs::read_link(format!("/sys/dev/block/{major}:{minor}")) else {
        return false;
    };
    let Some(name) = target.file_name() else {
        return false;
    };
    fs::read_to_string(Path::new("/sys/fs/ext4").join(name).join("journal_task"))
        .is_ok_and(|task| task.trim() == "<none>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_or_a_missing_path_needs_only_a_sync() {
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(Settle::for_fs(Path::new("/dev/shm")), Settle::Sync);
        }
        assert_eq!(
            Settle::for_fs(Path::new("/nonexistent/lsbench")),
            Settle::Sync
        );
        assert_eq!(Settle::Sync.note(), None);
        assert!(Settle::SyncAndForgetFreedInodes.note().is_some());
    }

    #[test]
    fn the_programs_path_and_its_file_arguments_are_what_is_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input.tar");
        fs::write(&input, b"bytes").expect("write");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("true").arg(&input);
        let program = program_path(&cmd).expect("sh is on PATH");
        assert!(
            program.is_absolute() && program.ends_with("sh"),
            "{program:?}"
        );
        assert!(read_through(&input).is_ok());
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        fs::write(dir.path().join("a/b/deep"), b"deep").expect("write");
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("a/dangling")).expect("ln");
        assert!(
            read_through(dir.path()).is_ok(),
            "a tree, a dangling link not followed"
        );
        assert!(read_through(&dir.path().join("missing")).is_err());
        // Settling with a sync only never touches the page cache.
        Settle::Sync.before(&cmd, &[&input]).expect("sync");
    }
}
