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
use std::io::Write;
use std::path::Path;

/// What [`HeldOff::warm_up`] writes at most: the bench's largest working set (a 1 GiB layer and
/// the 1 GiB diff of it), twice over; never more than a quarter of the memory available.
const WARM_UP_BYTES: u64 = 4 << 30;

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

    /// Where reporting is now held off: writes [`WARM_UP_BYTES`] (at most a quarter of
    /// `MemAvailable`) into a new file in `dir` and removes it (untimed), so that memory reported before the bench began is faulted back
    /// in here rather than during the first timed run that needs it (a 1 GiB `tar -c` took
    /// 2.3 s instead of 0.74 s without this).
    pub(super) fn warm_up(&self, dir: &Path) -> Result<(), String> {
        if self.restore.is_none() {
            return Ok(());
        }
        let available = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| mem_available(&info))
            .unwrap_or(0);
        let bytes = WARM_UP_BYTES.min(available / 4);
        let path = dir.join("warm-up");
        let chunk = vec![0x5a_u8; 1 << 20];
        let written = fs::File::create(&path).and_then(|mut file| {
            for _ in 0..bytes / chunk.len() as u64 {
                file.write_all(&chunk)?;
            }
            Ok(())
        });
        let removed = fs::remove_file(&path);
        written
            .and(removed)
            .map_err(|e| format!("warming memory up through {}: {e}", path.display()))
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

/// `MemAvailable` of /proc/meminfo, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
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
    fn the_warm_up_is_capped_by_the_memory_available() {
        let info = "MemTotal:       24000000 kB\nMemAvailable:    2097152 kB\n";
        assert_eq!(mem_available(info), Some(2 << 30));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
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
        // Nothing held any more: no warm-up written.
        held.warm_up(&dir).expect("nothing to do");
        assert!(!dir.join("warm-up").exists());
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
