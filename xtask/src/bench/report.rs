//! Results and their Markdown rendering: medians, spread, peak RSS, ratios to the Go tool and
//! to the physical reference, and the goals with ✔/✘.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::exec::Sample;

/// The two implementations timed side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Our `layerstore` binary.
    Ours,
    /// The Go `containers-storage` tool.
    Go,
}

impl Tool {
    /// Index into per-tool arrays.
    pub fn index(self) -> usize {
        match self {
            Tool::Ours => 0,
            Tool::Go => 1,
        }
    }

    /// Both tools, the one run first in run `run` first (alternating).
    pub fn order(run: usize) -> [Tool; 2] {
        if run.is_multiple_of(2) {
            [Tool::Ours, Tool::Go]
        } else {
            [Tool::Go, Tool::Ours]
        }
    }
}

/// What a row times ours against: the tool in the [`Tool::Go`] slot of its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versus {
    /// The Go `containers-storage` tool (every row but the pulls).
    GoTool,
    /// `podman pull` (pulls from a registry).
    Podman,
    /// `skopeo copy` into `containers-storage:` (pulls from an OCI layout).
    Skopeo,
}

impl Versus {
    /// The tool's name in tables, goals and the chart.
    pub fn name(self) -> &'static str {
        match self {
            Versus::GoTool => "Go",
            Versus::Podman => "podman",
            Versus::Skopeo => "skopeo",
        }
    }
}

/// A target for a row, from the issue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Our median ÷ the comparison tool's median (the Go tool unless the row's
    /// [`Row::versus`] says otherwise) at most this.
    VsGo(f64),
    /// Our median ÷ the physical reference at most this.
    VsReference(f64),
    /// Our largest peak RSS at most this many MiB.
    PeakRssMib(f64),
    /// Our median ÷ the library bound (one library's work alone) at most this.
    VsBound(f64),
    /// Our median at most this many seconds (an absolute target: a re-pull).
    MaxSecs(f64),
}

/// One benchmark row: the same operation timed with both tools.
#[derive(Debug, Clone)]
pub struct Row {
    /// Section heading (`import`, `diff`, ...).
    pub section: &'static str,
    /// The operation (`applydiff`, `diff -u`, `layers`, ...).
    pub op: String,
    /// Storage driver.
    pub driver: String,
    /// Input (fixture name, store size, ...).
    pub input: String,
    /// Samples per tool, indexed by [`Tool::index`].
    pub samples: [Vec<Sample>; 2],
    /// The tool whose samples are in the [`Tool::Go`] slot.
    pub versus: Versus,
    /// Baseline keys whose medians add up to the physical reference, and how to show it.
    pub reference: Option<(String, Vec<String>)>,
    /// Another baseline shown beside the reference, for information: (label, key).
    pub also: Option<(String, String)>,
    /// The library this row is bound by, timed alone: (label, baseline key).
    pub bound: Option<(String, String)>,
    /// Goals for this row (evaluated on tmpfs only).
    pub goals: Vec<Goal>,
}

impl Row {
    /// An empty row.
    pub fn new(section: &'static str, op: &str, driver: &str, input: &str) -> Row {
        Row {
            section,
            op: op.to_owned(),
            driver: driver.to_owned(),
            input: input.to_owned(),
            samples: [Vec::new(), Vec::new()],
            versus: Versus::GoTool,
            reference: None,
            also: None,
            bound: None,
            goals: Vec::new(),
        }
    }
}

/// Everything measured on one filesystem.
#[derive(Debug, Default)]
pub struct FsResults {
    /// `tmpfs` or `disk`.
    pub name: String,
    /// What and where it is (fs type, device, path).
    pub description: String,
    /// Whether the goals apply here.
    pub goals_apply: bool,
    /// The rows, in the order measured.
    pub rows: Vec<Row>,
    /// Physical baselines by key (`tar-x/rootfs.tar`, `zstd-dc/rootfs.tar.zst`, ...).
    pub baselines: BTreeMap<String, Vec<Sample>>,
    /// Per section: (section, 1-min load before, after).
    pub load: Vec<(String, String, String)>,
    /// Checks and skips worth reading (diff identity, failures).
    pub notes: Vec<String>,
}

/// The comparison tools of a table's rows, for its header: `Go`, or `podman / skopeo`.
fn versus_heading<'a>(rows: impl Iterator<Item = &'a Row>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for row in rows {
        if !names.contains(&row.versus.name()) {
            names.push(row.versus.name());
        }
    }
    if names.is_empty() {
        Versus::GoTool.name().to_owned()
    } else {
        names.join(" / ")
    }
}

/// Median of the wall times, in seconds.
pub fn median_secs(samples: &[Sample]) -> Option<f64> {
    median(samples.iter().map(|s| s.wall).collect())
}

fn median(mut values: Vec<Duration>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let n = values.len();
    let mid = if !n.is_multiple_of(2) {
        values[n / 2].as_secs_f64()
    } else {
        (values[n / 2 - 1].as_secs_f64() + values[n / 2].as_secs_f64()) / 2.0
    };
    Some(mid)
}

/// Seconds as `1.234 s` or `12.3 ms`.
pub fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.3} s")
    } else {
        format!("{:.1} ms", secs * 1000.0)
    }
}

fn fmt_spread(samples: &[Sample]) -> String {
    let Some(median) = median_secs(samples) else {
        return "—".into();
    };
    let min = samples.iter().map(|s| s.wall).min().unwrap_or_default();
    let max = samples.iter().map(|s| s.wall).max().unwrap_or_default();
    format!(
        "{} ({}–{})",
        fmt_secs(median),
        fmt_secs(min.as_secs_f64()),
        fmt_secs(max.as_secs_f64())
    )
}

fn peak_rss_mib(samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .map(|s| s.max_rss_kib)
        .max()
        .map(|kib| kib as f64 / 1024.0)
}

fn fmt_mib(mib: Option<f64>) -> String {
    mib.map_or("—".into(), |m| format!("{m:.0} MiB"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}"))
}

impl FsResults {
    /// The physical reference of a row: the sum of its baselines' medians (all must exist).
    pub fn reference_secs(&self, row: &Row) -> Option<f64> {
        let (_, keys) = row.reference.as_ref()?;
        keys.iter()
            .map(|k| self.baselines.get(k).and_then(|s| median_secs(s)))
            .sum()
    }

    /// The library bound of a row: its baseline's median.
    pub fn bound_secs(&self, row: &Row) -> Option<f64> {
        let (_, key) = row.bound.as_ref()?;
        self.baselines.get(key).and_then(|s| median_secs(s))
    }

    /// The measured value a goal is about (a ratio, or MiB), and its limit.
    fn goal_value(&self, row: &Row, goal: Goal) -> (Option<f64>, f64) {
        let ours = median_secs(&row.samples[Tool::Ours.index()]);
        match goal {
            Goal::VsGo(max) => (
                ratio(ours, median_secs(&row.samples[Tool::Go.index()])),
                max,
            ),
            Goal::VsReference(max) => (ratio(ours, self.reference_secs(row)), max),
            Goal::VsBound(max) => (ratio(ours, self.bound_secs(row)), max),
            Goal::PeakRssMib(max) => (peak_rss_mib(&row.samples[Tool::Ours.index()]), max),
            Goal::MaxSecs(max) => (ours, max),
        }
    }

    /// Whether `goal` holds for `row`; `None` when a number is missing.
    pub fn goal_met(&self, row: &Row, goal: Goal) -> Option<bool> {
        let (value, max) = self.goal_value(row, goal);
        value.map(|v| v <= max)
    }

    /// Every goal of every row: (row, goal text, measured text, verdict).
    pub fn goal_checks(&self) -> Vec<(String, String, String, Option<bool>)> {
        let mut out = Vec::new();
        for row in &self.rows {
            for &goal in &row.goals {
                let (value, max) = self.goal_value(row, goal);
                let (text, measured) = match goal {
                    Goal::VsGo(_) => (
                        format!("ours ÷ {} ≤ {max}", row.versus.name()),
                        value.map(|v| format!("{v:.2}")),
                    ),
                    Goal::VsReference(_) => (
                        format!("ours ÷ physical reference ≤ {max}"),
                        value.map(|v| format!("{v:.2}")),
                    ),
                    Goal::PeakRssMib(_) => (
                        format!("peak RSS ≤ {max} MiB"),
                        value.map(|v| format!("{v:.0} MiB")),
                    ),
                    Goal::VsBound(_) => (
                        format!(
                            "ours ÷ bound ({}) ≤ {max}",
                            row.bound.as_ref().map_or("—", |b| b.0.as_str())
                        ),
                        value.map(|v| format!("{v:.2}")),
                    ),
                    Goal::MaxSecs(_) => (format!("ours ≤ {}", fmt_secs(max)), value.map(fmt_secs)),
                };
                out.push((
                    format!("{} {} {}", row.op, row.driver, row.input),
                    text,
                    measured.unwrap_or_else(|| "not measured".into()),
                    self.goal_met(row, goal),
                ));
            }
        }
        out
    }

    fn goals_cell(&self, row: &Row) -> String {
        if row.goals.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = row
            .goals
            .iter()
            .map(|&g| {
                let text = match g {
                    Goal::VsGo(max) => format!("÷{} ≤ {max}", row.versus.name()),
                    Goal::VsReference(max) => format!("÷ref ≤ {max}"),
                    Goal::PeakRssMib(max) => format!("RSS ≤ {max} MiB"),
                    Goal::VsBound(max) => format!("÷bound ≤ {max}"),
                    Goal::MaxSecs(max) => format!("≤ {}", fmt_secs(max)),
                };
                if !self.goals_apply {
                    return text;
                }
                let mark = match self.goal_met(row, g) {
                    Some(true) => "✔",
                    Some(false) => "✘",
                    None => "?",
                };
                format!("{text} {mark}")
            })
            .collect();
        parts.join(", ")
    }

    /// The Markdown of this filesystem's tables.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## {}: {}\n", self.name, self.description);
        if !self.goals_apply {
            let _ = writeln!(
                md,
                "The goals are set for tmpfs; here they are listed without ✔/✘.\n"
            );
        }
        let mut sections: Vec<&'static str> = Vec::new();
        for row in &self.rows {
            if !sections.contains(&row.section) {
                sections.push(row.section);
            }
        }
        for section in sections {
            let load = self
                .load
                .iter()
                .find(|(s, _, _)| s == section)
                .map(|(_, a, b)| format!(" (1-min load {a} → {b})"))
                .unwrap_or_default();
            let _ = writeln!(md, "### {section}{load}\n");
            let other = versus_heading(self.rows.iter().filter(|r| r.section == section));
            let _ = writeln!(
                md,
                "| operation | driver | input | ours: median (min–max) | ours CPU | ours peak RSS | {other}: median (min–max) | {other} CPU | {other} peak RSS | ours ÷ {other} (CPU) | physical reference | ours ÷ ref | goals |",
            );
            md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for row in self.rows.iter().filter(|r| r.section == section) {
                let ours = &row.samples[Tool::Ours.index()];
                let go = &row.samples[Tool::Go.index()];
                let cpu = median(ours.iter().map(|s| s.cpu).collect());
                let go_cpu = median(go.iter().map(|s| s.cpu).collect());
                let reference = self.reference_secs(row);
                let mut reference_cell = match (&row.reference, reference) {
                    (Some((label, _)), Some(secs)) => format!("{label}: {}", fmt_secs(secs)),
                    (Some((label, _)), None) => format!("{label}: —"),
                    (None, _) => String::new(),
                };
                if let Some((label, key)) = &row.also
                    && let Some(secs) = self.baselines.get(key).and_then(|s| median_secs(s))
                {
                    let _ = write!(reference_cell, " ({label}: {})", fmt_secs(secs));
                }
                if let Some((label, _)) = &row.bound
                    && let Some(secs) = self.bound_secs(row)
                {
                    let _ = write!(
                        reference_cell,
                        "; bound, {label}: {} (ours ÷ bound {})",
                        fmt_secs(secs),
                        fmt_ratio(ratio(median_secs(ours), Some(secs)))
                    );
                }
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
                    match row.versus {
                        Versus::GoTool => row.op.clone(),
                        other => format!("{} (vs {})", row.op, other.name()),
                    },
                    row.driver,
                    row.input,
                    fmt_spread(ours),
                    cpu.map_or("—".into(), fmt_secs),
                    fmt_mib(peak_rss_mib(ours)),
                    fmt_spread(go),
                    go_cpu.map_or("—".into(), fmt_secs),
                    fmt_mib(peak_rss_mib(go)),
                    fmt_ratio(ratio(median_secs(ours), median_secs(go))),
                    fmt_ratio(ratio(cpu, go_cpu)),
                    reference_cell,
                    if row.reference.is_some() {
                        fmt_ratio(ratio(median_secs(ours), reference))
                    } else {
                        String::new()
                    },
                    self.goals_cell(row),
                );
            }
            md.push('\n');
        }
        if !self.baselines.is_empty() {
            md.push_str("### physical baselines\n\n");
            md.push_str("| baseline | median (min–max) | CPU | peak RSS |\n|---|---|---|---|\n");
            for (key, samples) in &self.baselines {
                let cpu = median(samples.iter().map(|s| s.cpu).collect());
                let _ = writeln!(
                    md,
                    "| `{key}` | {} | {} | {} |",
                    fmt_spread(samples),
                    cpu.map_or("—".into(), fmt_secs),
                    fmt_mib(peak_rss_mib(samples))
                );
            }
            md.push('\n');
        }
        if !self.notes.is_empty() {
            md.push_str("### checks and notes\n\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
            md.push('\n');
        }
        md
    }

    /// Goal rows that failed (for the console summary): `(row label, goal text)`.
    pub fn missed_goals(&self) -> Vec<String> {
        if !self.goals_apply {
            return Vec::new();
        }
        self.goal_checks()
            .into_iter()
            .filter(|(_, _, _, met)| *met != Some(true))
            .map(|(row, goal, measured, _)| {
                format!("{}: {row}: {goal}, measured {measured}", self.name)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, rss_mib: u64) -> Sample {
        Sample {
            wall: Duration::from_millis(ms),
            cpu: Duration::from_millis(ms / 2),
            max_rss_kib: rss_mib * 1024,
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_secs(&[]), None);
        assert_eq!(
            median_secs(&[sample(30, 1), sample(10, 1), sample(20, 1)]),
            Some(0.02)
        );
        let even = median_secs(&[sample(10, 1), sample(40, 1), sample(20, 1), sample(30, 1)]);
        assert!((even.expect("4 samples") - 0.025).abs() < 1e-9);
    }

    #[test]
    fn goals_compare_medians_and_peak_rss() {
        let mut fs = FsResults {
            name: "tmpfs".into(),
            goals_apply: true,
            ..FsResults::default()
        };
        fs.baselines
            .insert("tar-x/a.tar".into(), vec![sample(100, 3)]);
        fs.baselines
            .insert("zstd-dc/a.tar.zst".into(), vec![sample(50, 3)]);
        let mut row = Row::new("import", "applydiff", "vfs", "a.tar.zst");
        row.samples[Tool::Ours.index()] = vec![sample(200, 70), sample(210, 20), sample(190, 20)];
        row.samples[Tool::Go.index()] = vec![sample(1000, 30), sample(1200, 30), sample(900, 30)];
        row.reference = Some((
            "tar -x + zstd -dc".into(),
            vec!["tar-x/a.tar".into(), "zstd-dc/a.tar.zst".into()],
        ));
        let reference = fs.reference_secs(&row).expect("both baselines");
        assert!((reference - 0.15).abs() < 1e-9, "{reference}");
        assert_eq!(fs.goal_met(&row, Goal::VsGo(0.2)), Some(true));
        assert_eq!(fs.goal_met(&row, Goal::VsGo(0.19)), Some(false));
        assert_eq!(fs.goal_met(&row, Goal::VsReference(1.5)), Some(true));
        assert_eq!(fs.goal_met(&row, Goal::VsReference(1.2)), Some(false));
        // The worst run counts for memory.
        assert_eq!(fs.goal_met(&row, Goal::PeakRssMib(64.0)), Some(false));
        row.goals = vec![Goal::VsGo(0.2), Goal::PeakRssMib(64.0)];
        fs.rows.push(row);
        let md = fs.markdown();
        assert!(md.contains("÷Go ≤ 0.2 ✔, RSS ≤ 64 MiB ✘"), "{md}");
        assert!(md.contains("| 0.20 (0.20) |"), "{md}");
        let missed = fs.missed_goals();
        assert_eq!(missed.len(), 1);
        assert_eq!(
            missed[0],
            "tmpfs: applydiff vfs a.tar.zst: peak RSS ≤ 64 MiB, measured 70 MiB"
        );
    }

    #[test]
    fn missing_baseline_gives_no_reference_and_no_verdict() {
        let fs = FsResults {
            goals_apply: true,
            ..FsResults::default()
        };
        let mut row = Row::new("diff", "diff -u", "vfs", "a.tar");
        row.samples[Tool::Ours.index()] = vec![sample(10, 1)];
        row.reference = Some(("tar -c".into(), vec!["tar-c/a.tar".into()]));
        assert_eq!(fs.reference_secs(&row), None);
        assert_eq!(fs.goal_met(&row, Goal::VsReference(2.0)), None);
        assert_eq!(fs.goal_met(&row, Goal::VsGo(0.25)), None);
    }

    #[test]
    fn pull_rows_name_their_comparison_tool_and_absolute_goals() {
        let mut fs = FsResults {
            name: "tmpfs".into(),
            goals_apply: true,
            ..FsResults::default()
        };
        let mut pull = Row::new("pull", "pull docker://", "vfs", "image");
        pull.versus = Versus::Podman;
        pull.samples[Tool::Ours.index()] = vec![sample(1000, 90)];
        pull.samples[Tool::Go.index()] = vec![sample(5000, 200)];
        pull.goals = vec![Goal::VsGo(0.3), Goal::PeakRssMib(128.0)];
        let mut copy = Row::new("pull", "pull oci:", "vfs", "image");
        copy.versus = Versus::Skopeo;
        copy.samples[Tool::Ours.index()] = vec![sample(2000, 90)];
        copy.samples[Tool::Go.index()] = vec![sample(5000, 200)];
        copy.goals = vec![Goal::VsGo(0.3)];
        let mut again = Row::new("pull", "re-pull", "vfs", "image");
        again.versus = Versus::Podman;
        again.samples[Tool::Ours.index()] = vec![sample(40, 10), sample(60, 10), sample(500, 10)];
        again.goals = vec![Goal::MaxSecs(0.1)];
        assert_eq!(fs.goal_met(&again, Goal::MaxSecs(0.1)), Some(true));
        assert_eq!(fs.goal_met(&again, Goal::MaxSecs(0.05)), Some(false));
        fs.rows.extend([pull, copy, again]);
        let md = fs.markdown();
        assert!(md.contains("| podman / skopeo: median (min–max) |"), "{md}");
        assert!(md.contains("| pull docker:// (vs podman) | vfs |"), "{md}");
        assert!(md.contains("÷podman ≤ 0.3 ✔, RSS ≤ 128 MiB ✔"), "{md}");
        assert!(md.contains("÷skopeo ≤ 0.3 ✘"), "{md}");
        assert!(md.contains("≤ 100.0 ms ✔"), "{md}");
        let checks = fs.goal_checks();
        assert!(
            checks
                .iter()
                .any(|c| c.1 == "ours ÷ skopeo ≤ 0.3" && c.2 == "0.40"),
            "{checks:?}"
        );
        assert!(
            checks
                .iter()
                .any(|c| c.1 == "ours ≤ 100.0 ms" && c.2 == "60.0 ms"),
            "{checks:?}"
        );
        // A table of the Go tool's rows keeps its header.
        let go_only = [Row::new("import", "applydiff", "vfs", "a.tar")];
        assert_eq!(versus_heading(go_only.iter()), "Go");
    }

    #[test]
    fn alternation_swaps_the_first_tool_every_run() {
        assert_eq!(Tool::order(0), [Tool::Ours, Tool::Go]);
        assert_eq!(Tool::order(1), [Tool::Go, Tool::Ours]);
        assert_eq!(fmt_secs(1.5), "1.500 s");
        assert_eq!(fmt_secs(0.0123), "12.3 ms");
    }
}
