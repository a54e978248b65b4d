//! Free page reporting held off while the bench runs.
//!
//! In a VM whose balloon driver reports free pages to the host (`page_reporting`), a
//! reporting pass hands freed memory back to the host, and the guest's next touch of it faults
//! on the host. On the bench's machine (2026-12-05), writing the 1 GiB file into tmpfs took
//! 0.37–0.50 s, or 1.0–2.7 s at random in 12 of 28 writes, the slow ones with a reporting pass
//! during them; with reporting held off, 0.37–0.48 s in 13 of 14 (the first still touched
//! memory reported before). That noise is the host's, not the tools', and it swamped the
//! big-file rows' ratios: ours against the bound timed right after it read 2884/415 ms, then
//! 432/2165 ms; held off, 398–418 against 373–394 ms in six pairs out of six.
//!
//! [`HeldOff::hold`] raises `page_reporting_order` above the largest order the buddy allocator
//! has (so no free block qualifies), and its `Drop` puts the old value back. Where the module
//! is absent or the kernel refuses the value, nothing changes and the report says so.

use std::fs;
use std::path::Path;

/// What [`HeldOff::warm_up`] leaves of the free memory untouched.
const WARM_UP_MARGIN: u64 = 1 << 30;

/// The blocks [`HeldOff::warm_up`] touches memory in.
const WARM_UP_BLOCK: usize = 64 << 20;

const ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// What the bench did about free page reporting; restores the old order when dropped.
#[derive(Debug)]
pub(super) struct HeldOff {
    /// The order to put back, when this changed it.
    restore: Option<String>,
    /// One line for the report's machine table.
    pub(super) fact: String,
}

impl HeldOff {
    /// Holds free page reporting off if this machine has it (see the module docs).
    pub(super) fn hold() -> HeldOff {
        Self::hold_at(
            Path::new(ORDER),
            &fs::read_to_string("/proc/buddyinfo").unwrap_or_default(),
        )
    }

    fn hold_at(order_file: &Path, buddyinfo: &str) -> HeldOff {
        let Ok(previous) = fs::read_to_string(order_file) else {
            return HeldOff {
                restore: None,
                fact: "none (no page_reporting module)".into(),
            };
        };
        let previous = previous.trim().to_owned();
        let Some(above) = orders(buddyinfo) else {
            return HeldOff {
                restore: None,
                fact: format!("on (page_reporting_order {previous}; /proc/buddyinfo unreadable)"),
            };
        };
        match fs::write(order_file, above.to_string()) {
            Ok(()) => {
                eprintln!(
                    "bench: free page reporting held off for the run (page_reporting_order {previous} -> {above}); \
                     if the bench is killed, restore it with: echo {previous} > {}",
                    order_file.display()
                );
                HeldOff {
                    fact: format!(
                        "held off during the run (page_reporting_order {previous} → {above}, above the largest free block; restored after)"
                    ),
                    restore: Some(previous),
                }
            }
            Err(e) => HeldOff {
                restore: None,
                fact: format!(
                    "on: could not hold it off (page_reporting_order {previous} → {above}: {e}); big writes are noisy"
                ),
            },
        }
    }

    /// Where reporting is now held off: touches all of `MemFree` but [`WARM_UP_MARGIN`] once
    /// (no more than this process's memory cgroup has room for: /proc/meminfo does not know
    /// its limit, and the kernel would kill the bench rather than reclaim for it),
    /// in anonymous blocks held together and then freed (untimed), so that memory reported
    /// before the bench began is faulted back in here rather than in a timed run; held off,
    /// it stays backed for the run. Returns the bytes touched.
    ///
    /// Every page the run allocates, first from the free lists and then by reclaiming cache,
    /// is then one the host backs. Warming only 4 GiB (a tmpfs file) left the disk rows,
    /// whose ext4 loop file caches each write twice, to fault in the rest: the first diff of
    /// the 1 GiB layer took 1.0–2.1 s against 0.33 s for the same diff afterwards.
    pub(super) fn warm_up(&self) -> u64 {
        if self.restore.is_none() {
            return 0;
        }
        let free = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| meminfo_bytes(&info, "MemFree:"))
            .unwrap_or(0);
        let room = fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|cgroup| cgroup_room(&cgroup, |path| fs::read_to_string(path).ok()))
            .unwrap_or(u64::MAX);
        let mut left = free.min(room).saturating_sub(WARM_UP_MARGIN);
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let page = 4096;
        while left >= WARM_UP_BLOCK as u64 {
            // Zeroed memory comes untouched from mmap: writing one byte per page faults it in.
            let mut block = vec![0u8; WARM_UP_BLOCK];
            for byte in block.iter_mut().step_by(page) {
                *byte = 0x5a;
            }
            blocks.push(std::hint::black_box(block));
            left -= WARM_UP_BLOCK as u64;
        }
        (blocks.len() * WARM_UP_BLOCK) as u64
    }

    fn restore_at(&mut self, order_file: &Path) {
        if let Some(previous) = self.restore.take()
            && let Err(e) = fs::write(order_file, &previous)
        {
            eprintln!(
                "bench: WARNING: could not restore page_reporting_order {previous} ({e}); run: echo {previous} > {}",
                order_file.display()
            );
        }
    }
}

impl Drop for HeldOff {
    fn drop(&mut self) {
        self.restore_at(Path::new(ORDER));
    }
}

/// What the memory cgroup named in `cgroup` (/proc/self/cgroup) can still take, in bytes:
/// limit less usage, read through `read` (v2: `memory.max`, `memory.current`; v1:
/// `memory.limit_in_bytes`, `memory.usage_in_bytes`). `None` when there is no limit or it
/// cannot be read.
fn cgroup_room(cgroup: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let number = |path: String| read(&path)?.trim().parse::<u64>().ok();
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let (limit, usage) = if controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
            (format!("{dir}/memory.max"), format!("{dir}/memory.current"))
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{}", path.trim_end_matches('/'));
            (
                format!("{dir}/memory.limit_in_bytes"),
                format!("{dir}/memory.usage_in_bytes"),
            )
        } else {
            continue;
        };
        // v2 writes "max" when unlimited, which does not parse: no limit.
        if let (Some(limit), Some(usage)) = (number(limit), number(usage)) {
            return Some(limit.saturating_sub(usage));
        }
    }
    None
}

/// The field `key` (`MemFree:`, …) of /proc/meminfo, in bytes.
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// How many block orders the buddy allocator has (its largest order + 1), from the count
/// columns of /proc/buddyinfo's lines (`Node 0, zone Normal 12 3 …`).
fn orders(buddyinfo: &str) -> Option<usize> {
    buddyinfo
        .lines()
        .filter_map(|line| {
            let counts = line.split_once("zone")?.1.split_whitespace().skip(1);
            let n = counts.take_while(|c| c.parse::<u64>().is_ok()).count();
            (n > 0).then_some(n)
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDDYINFO: &str = "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      2 \n\
Node 0, zone    DMA32      4      3      5      4      4      5      4      4      5      4    672 \n";

    #[test]
    fn the_order_above_the_largest_is_the_count_of_buddyinfo_columns() {
        assert_eq!(orders(BUDDYINFO), Some(11));
        assert_eq!(orders("Node 0, zone Normal 1 2 3\n"), Some(3));
        assert_eq!(orders(""), None);
        assert_eq!(orders("garbage\n"), None);
    }

    #[test]
    fn the_cgroups_room_is_its_limit_less_its_usage() {
        let files = |path: &str| {
            Some(
                match path {
                    "/sys/fs/cgroup/memory/job/memory.limit_in_bytes" => "3000\n",
                    "/sys/fs/cgroup/memory/job/memory.usage_in_bytes" => "1000\n",
                    "/sys/fs/cgroup/box/memory.max" => "5000\n",
                    "/sys/fs/cgroup/box/memory.current" => "4000\n",
                    "/sys/fs/cgroup/memory.max" => "max\n",
                    "/sys/fs/cgroup/memory.current" => "1\n",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        assert_eq!(cgroup_room("4:memory:/job\n0::/\n", files), Some(2000));
        assert_eq!(cgroup_room("2:cpu:/\n0::/box\n", files), Some(1000));
        assert_eq!(cgroup_room("0::/\n", files), None, "unlimited");
        assert_eq!(cgroup_room("4:memory:/gone\n", files), None, "unreadable");
    }

    #[test]
    fn meminfo_fields_read_in_bytes() {
        let info = "MemTotal:       24000000 kB\nMemFree:    2097152 kB\n";
        assert_eq!(meminfo_bytes(info, "MemFree:"), Some(2 << 30));
        assert_eq!(meminfo_bytes("MemTotal: 1 kB\n", "MemFree:"), None);
    }

    #[test]
    fn holding_off_writes_the_order_above_and_dropping_restores_the_old_one() {
        let dir = std::env::temp_dir().join(format!("xtask-reporting-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("page_reporting_order");
        fs::write(&file, "9\n").expect("write");
        let mut held = HeldOff::hold_at(&file, BUDDYINFO);
        assert_eq!(fs::read_to_string(&file).expect("read"), "11");
        assert!(held.fact.contains("9 → 11"), "{}", held.fact);
        held.restore_at(&file);
        assert_eq!(fs::read_to_string(&file).expect("read"), "9");
        // Nothing held any more: no memory touched.
        assert_eq!(held.warm_up(), 0);
        // Restored once: the Drop (pointing at the real file) has nothing left to do.
        assert!(held.restore.is_none());
        drop(held);
        // No module: nothing written, and the report says so.
        let absent = HeldOff::hold_at(&dir.join("absent"), BUDDYINFO);
        assert!(absent.fact.starts_with("none"), "{}", absent.fact);
        assert!(!dir.join("absent").exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
