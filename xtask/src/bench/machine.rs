//! Facts about the machine the report quotes: CPU, memory, kernel, filesystems, tool versions,
//! load average, the time.

use std::fs;
use std::path::Path;
use std::process::Command;

pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

pub(super) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

pub(super) fn first_line_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "?".into())
}

/// `ext4 on /dev/vda at /tmp/...`, from statfs and /proc/self/mountinfo.
pub(super) fn describe_fs(path: &Path) -> String {
    let kind = match rustix::fs::statfs(path) {
        Ok(st) => match st.f_type as u64 {
            0x0102_1994 => "tmpfs".to_owned(),
            0xEF53 => "ext4".to_owned(),
            0x9123_683E => "btrfs".to_owned(),
            0x5846_5342 => "xfs".to_owned(),
            0x794C_7630 => "overlay".to_owned(),
            other => format!("fs type {other:#x}"),
        },
        Err(e) => format!("statfs failed: {e}"),
    };
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The longest mount point that contains `path` is the filesystem holding it.
    let source = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let source = fields.get(dash + 2)?;
            path.starts_with(point)
                .then(|| (point.len(), source.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "?".into());
    format!("{kind} on {source} (`{}`)", path.display())
}

pub(super) fn machine_facts() -> Vec<(&'static str, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(str::trim)
        .unwrap_or("?")
        .to_owned();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let features: Vec<&str> = ["avx2", "sha_ni", "avx512f"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let uname = rustix::system::uname();
    vec![
        ("CPU", format!("{model} ({})", features.join(", "))),
        ("cores", cores.to_string()),
        (
            "memory",
            format!("{:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0)),
        ),
        (
            "kernel",
            format!(
                "{} {}",
                uname.sysname().to_string_lossy(),
                uname.release().to_string_lossy()
            ),
        ),
        ("GNU tar", first_line_of("tar", &["--version"])),
        (
            "gzip / zstd",
            format!(
                "{}; {}",
                first_line_of("gzip", &["--version"]),
                first_line_of("zstd", &["--version"])
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_description_names_the_type() {
        let d = describe_fs(Path::new("/proc"));
        assert!(d.contains("/proc"), "{d}");
    }
}
