//! Helpers shared by the integration tests: what the kernel says about POSIX locks.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The mode of a POSIX lock as `/proc/locks` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelMode {
    Read,
    Write,
}

/// One POSIX lock (held or waited for) on a file, from `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLock {
    pub pid: u32,
    pub mode: KernelMode,
    /// `true` for a waiter (`->` lines), `false` for a holder.
    pub blocked: bool,
}

/// The POSIX locks the kernel knows on `path`'s inode, holders and waiters.
pub fn posix_locks_on(path: &Path) -> Vec<KernelLock> {
    let meta = std::fs::metadata(path).expect("stat lock file");
    let dev = meta.dev();
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    // /proc/locks is a seq_file over a list other processes change while we read it: an entry
    // can shift past the read position and be missed. Three reads, merged, make a miss
    // vanishingly unlikely; one process's locks on one file are one record, so merging by
    // (pid, mode, blocked) loses nothing.
    let mut found: Vec<KernelLock> = Vec::new();
    for _ in 0..3 {
        let table = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        for lock in parse_locks(&table, &wanted) {
            if !found.contains(&lock) {
                found.push(lock);
            }
        }
    }
    found
}

fn parse_locks(table: &str, wanted: &str) -> Vec<KernelLock> {
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1).peekable();
            let blocked = fields.next_if_eq(&"->").is_some();
            let class = fields.next()?;
            let _advisory = fields.next()?;
            let mode = match fields.next()? {
                "READ" => KernelMode::Read,
                "WRITE" => KernelMode::Write,
                _ => return None,
            };
            let pid = fields.next()?.parse().ok()?;
            let file = fields.next()?;
            (class == "POSIX" && file == wanted).then_some(KernelLock { pid, mode, blocked })
        })
        .collect()
}

/// The mode this process holds (not waits for) on `path`, if any.
pub fn held_by_us(path: &Path) -> Option<KernelMode> {
    let me = std::process::id();
    posix_locks_on(path)
        .into_iter()
        .find(|l| l.pid == me && !l.blocked)
        .map(|l| l.mode)
}
