//! What the kernel says about POSIX locks (`/proc/locks`): who holds or waits for a lock on a
//! file, and waiting until a process does.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::go::GO_TIMEOUT;

/// The mode of a POSIX lock as `/proc/locks` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelMode {
    /// A read (shared) lock.
    Read,
    /// A write (exclusive) lock.
    Write,
}

/// One POSIX lock (held or waited for) on a file, from `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLock {
    /// The process holding or waiting.
    pub pid: u32,
    /// Read or write.
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

/// Whether the kernel shows `pid` waiting for a lock on `path`.
pub fn waits_for_lock(path: &Path, pid: u32) -> bool {
    posix_locks_on(path)
        .iter()
        .any(|l| l.pid == pid && l.blocked)
}

/// Polls `/proc/locks` until `pid` holds (or waits for, if `blocked`) a write lock on `path`;
/// fails the test after [`GO_TIMEOUT`].
pub fn wait_for_kernel_lock(path: &Path, pid: u32, blocked: bool) {
    let deadline = Instant::now() + GO_TIMEOUT;
    while !posix_locks_on(path)
        .iter()
        .any(|l| l.pid == pid && l.blocked == blocked && l.mode == KernelMode::Write)
    {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never {} a write lock on {path:?}: {:?}",
            if blocked { "waited for" } else { "held" },
            posix_locks_on(path)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_parsed_for_one_file() {
        let table = "1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n\
                     1: -> POSIX  ADVISORY  READ 4343 08:01:1234 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 11 08:01:1234 0 EOF\n\
                     3: POSIX  ADVISORY  READ 12 08:01:99 0 EOF\n";
        assert_eq!(
            parse_locks(table, "08:01:1234"),
            [
                KernelLock {
                    pid: 4242,
                    mode: KernelMode::Write,
                    blocked: false
                },
                KernelLock {
                    pid: 4343,
                    mode: KernelMode::Read,
                    blocked: true
                }
            ]
        );
    }
}
