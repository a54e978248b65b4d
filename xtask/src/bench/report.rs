//! Results and their Markdown rendering: medians, spread, peak RSS, ratios to the Go tool and
//! to the physical reference, the goals with ✔/✘ (on the disk only where the Go tool is
//! steadier than the gap: [`GoalRule`]), and the two-core floor of a compressed import
//! ([`Floor`]).

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
    /// The least wall time any import of this row's input can take on two cores, for
    /// information beside the bound (not a goal).
    pub floor: Option<Floor>,
    /// Goals for this row (counted as the filesystem's [`GoalRule`] says).
    pub goals: Vec<Goal>,
}

/// The baselines (keys) of a compressed import's two-core floor: the work every import of the
/// layer must do, each part timed alone in the same run. Every part is a single-threaded
/// stream (a decoder, a SHA-256), except the extraction, which can be spread over threads; on
/// two cores the import takes at least its longest stream and at least half of all the CPU:
/// floor = max(decode, blob SHA-256, tar SHA-256, (decode + blob SHA-256 + tar SHA-256 +
/// tar -x) ÷ 2), of each part's median CPU time.
#[derive(Debug, Clone)]
pub struct Floor {
    /// The decoder alone (the row's bound).
    pub decode: String,
    /// SHA-256 of the compressed blob, the hashing alone.
    pub blob_sha: String,
    /// SHA-256 of the uncompressed tar stream, the hashing alone.
    pub tar_sha: String,
    /// GNU `tar -xf` of the uncompressed tar into an empty directory on the same filesystem.
    pub extract: String,
}

/// A floor's parts (median CPU seconds) and the floor itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorSecs {
    /// The decoder alone.
    pub decode: f64,
    /// SHA-256 of the blob.
    pub blob_sha: f64,
    /// SHA-256 of the tar stream.
    pub tar_sha: f64,
    /// GNU `tar -xf` (user + system).
    pub extract: f64,
    /// max(the longest stream, the sum ÷ 2).
    pub floor: f64,
}

/// When a filesystem's goal checks count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GoalRule {
    /// Every check counts (tmpfs, which the goals are set for).
    #[default]
    Always,
    /// A row's checks count only when the comparison tool against itself (the spread of its
    /// wall times over the runs, max − min) varies by less than the gap between the two
    /// tools' medians: on a shared machine's disk a smaller gap is noise, not a result.
    GoSteadierThanGap,
}

/// The outcome of one goal check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Measured and within the goal.
    Met,
    /// Measured and outside it.
    Missed,
    /// A number it needs is missing.
    NotMeasured,
    /// Left out of the count by the [`GoalRule`]; the text says why.
    NotCounted(String),
}

impl Verdict {
    /// The mark in the tables: ✔, ✘, ?, or why the check does not count.
    pub fn mark(&self) -> String {
        match self {
            Verdict::Met => "✔".into(),
            Verdict::Missed => "✘".into(),
            Verdict::NotMeasured => "?".into(),
            Verdict::NotCounted(why) => why.clone(),
        }
    }

    /// Whether the check is part of the met/total count.
    pub fn counted(&self) -> bool {
        !matches!(self, Verdict::NotCounted(_))
    }
}

/// One goal of one row, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalCheck {
    /// `op driver input`.
    pub row: String,
    /// The goal, as text.
    pub goal: String,
    /// The measured value, as text.
    pub measured: String,
    /// The outcome.
    pub verdict: Verdict,
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
            floor: None,
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
    /// When the goal checks count here.
    pub rule: GoalRule,
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

/// Median of the CPU times, in seconds.
pub fn median_cpu_secs(samples: &[Sample]) -> Option<f64> {
    median(samples.iter().map(|s| s.cpu).collect())
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

/// The spread of the wall times, max − min, in seconds.
fn spread_secs(samples: &[Sample]) -> Option<f64> {
    let min = samples.iter().map(|s| s.wall).min()?;
    let max = samples.iter().map(|s| s.wall).max()?;
    Some((max - min).as_secs_f64())
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

    /// What a row's bound goal divides by: its two-core floor where it has one (the floor
    /// holds the library's own time, and it is the least the row can take on two cores),
    /// else the library alone.
    pub fn row_bound_secs(&self, row: &Row) -> Option<f64> {
        match self.floor_secs(row) {
            Some(floor) => Some(floor.floor),
            None if row.floor.is_some() => None,
            None => self.bound_secs(row),
        }
    }

    /// The two-core floor of a row that has one (every part measured), from median CPU times.
    pub fn floor_secs(&self, row: &Row) -> Option<FloorSecs> {
        let floor = row.floor.as_ref()?;
        let cpu = |key: &str| self.baselines.get(key).and_then(|s| median_cpu_secs(s));
        let (decode, blob_sha, tar_sha, extract) = (
            cpu(&floor.decode)?,
            cpu(&floor.blob_sha)?,
            cpu(&floor.tar_sha)?,
            cpu(&floor.extract)?,
        );
        let longest_stream = decode.max(blob_sha).max(tar_sha);
        let half_of_all = (decode + blob_sha + tar_sha + extract) / 2.0;
        Some(FloorSecs {
            decode,
            blob_sha,
            tar_sha,
            extract,
            floor: longest_stream.max(half_of_all),
        })
    }

    /// `None` when the row's checks count under this filesystem's rule, else why not.
    pub fn not_counted(&self, row: &Row) -> Option<String> {
        if self.rule == GoalRule::Always {
            return None;
        }
        let them = row.versus.name();
        let go = &row.samples[Tool::Go.index()];
        if go.len() < 2 {
            return Some(format!(
                "not counted: {them} ran {} time(s), too few to know how much it varies",
                go.len()
            ));
        }
        let spread = spread_secs(go)?;
        let gap = match (
            median_secs(&row.samples[Tool::Ours.index()]),
            median_secs(go),
        ) {
            (Some(ours), Some(go)) => (go - ours).abs(),
            // Ours failed: that counts (its checks are not measured), it is no noise.
            _ => return None,
        };
        (spread >= gap).then(|| {
            format!(
                "not counted: {them} varies by {} against a gap of {}",
                fmt_secs(spread),
                fmt_secs(gap)
            )
        })
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
            Goal::VsBound(max) => (ratio(ours, self.row_bound_secs(row)), max),
            Goal::PeakRssMib(max) => (peak_rss_mib(&row.samples[Tool::Ours.index()]), max),
            Goal::MaxSecs(max) => (ours, max),
        }
    }

    /// Whether `goal` holds for `row`; `None` when a number is missing.
    pub fn goal_met(&self, row: &Row, goal: Goal) -> Option<bool> {
        let (value, max) = self.goal_value(row, goal);
        value.map(|v| v <= max)
    }

    /// Every goal of every row, with its verdict under this filesystem's rule.
    pub fn goal_checks(&self) -> Vec<GoalCheck> {
        let mut out = Vec::new();
        for row in &self.rows {
            let not_counted = self.not_counted(row);
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
                    Goal::VsBound(_) => {
                        let library = row.bound.as_ref().map_or("—", |b| b.0.as_str());
                        if row.floor.is_some() {
                            (
                                format!(
                                    "ours ÷ bound (two-core floor: {library}, both SHA-256s, tar -x's CPU) ≤ {max}"
                                ),
                                value.map(|v| match self.floor_note(row) {
                                    Some(note) => format!("{v:.2} ({note})"),
                                    None => format!("{v:.2}"),
                                }),
                            )
                        } else {
                            (
                                format!("ours ÷ bound ({library}) ≤ {max}"),
                                value.map(|v| format!("{v:.2}")),
                            )
                        }
                    }
                    Goal::MaxSecs(_) => (format!("ours ≤ {}", fmt_secs(max)), value.map(fmt_secs)),
                };
                let verdict = match (&not_counted, self.goal_met(row, goal)) {
                    (Some(why), _) => Verdict::NotCounted(why.clone()),
                    (None, Some(true)) => Verdict::Met,
                    (None, Some(false)) => Verdict::Missed,
                    (None, None) => Verdict::NotMeasured,
                };
                out.push(GoalCheck {
                    row: format!("{} {} {}", row.op, row.driver, row.input),
                    goal: text,
                    measured: measured.unwrap_or_else(|| "not measured".into()),
                    verdict,
                });
            }
        }
        out
    }

    /// Beside the floor's ratio, the library alone: `floor = 1.95 × zstd decode alone's CPU;
    /// ours ÷ that library alone 2.50`. The floor is made of CPU times, so it is compared
    /// with the library's CPU (the same process's median), which load does not inflate as it
    /// does wall time.
    fn floor_note(&self, row: &Row) -> Option<String> {
        let floor = self.floor_secs(row)?;
        let ours = median_secs(&row.samples[Tool::Ours.index()]);
        let library = row.bound.as_ref().map_or("the library", |b| b.0.as_str());
        Some(format!(
            "floor = {} × {library}'s CPU; ours ÷ {library} {}",
            fmt_ratio(ratio(Some(floor.floor), Some(floor.decode))),
            fmt_ratio(ratio(ours, self.bound_secs(row)))
        ))
    }

    /// The two-core floor's cell text: its parts, its value and ours ÷ floor.
    fn floor_cell(&self, row: &Row) -> Option<String> {
        let f = self.floor_secs(row)?;
        let ours = median_secs(&row.samples[Tool::Ours.index()]);
        Some(format!(
            "the bound, two-core floor of CPU: max(decode {}, blob SHA-256 {}, tar SHA-256 {}, (those + tar -x {}) ÷ 2) = {}, ours ÷ floor {}",
            fmt_secs(f.decode),
            fmt_secs(f.blob_sha),
            fmt_secs(f.tar_sha),
            fmt_secs(f.extract),
            fmt_secs(f.floor),
            fmt_ratio(ratio(ours, Some(f.floor)))
        ))
    }

    /// Whether a row is done in issue 21's sense ("every row meets its goal, or meets ≤ 1.1×
    /// its measured bound"): every goal but the bound met, or the bound goal met (ours ≤ 1.1
    /// × the named bound) together with the absolute goals (peak RSS, seconds). The bound is
    /// the other way to be done, not one more goal: a row that meets ÷ Go is done even where
    /// ours is more than 1.1 × its bound. `None` for a row without goals or one the
    /// filesystem's rule does not count.
    pub fn row_done(&self, row: &Row) -> Option<bool> {
        if row.goals.is_empty() || self.not_counted(row).is_some() {
            return None;
        }
        let met = |g: Goal| self.goal_met(row, g) == Some(true);
        let every_goal = row
            .goals
            .iter()
            .filter(|g| !matches!(g, Goal::VsBound(_)))
            .all(|&g| met(g));
        let by_bound = row
            .goals
            .iter()
            .any(|&g| matches!(g, Goal::VsBound(_)) && met(g))
            && row
                .goals
                .iter()
                .filter(|g| matches!(g, Goal::PeakRssMib(_) | Goal::MaxSecs(_)))
                .all(|&g| met(g));
        Some(every_goal || by_bound)
    }

    /// `N of M goal checks met on NAME.`, how many were not counted, and how many rows are
    /// done ([`FsResults::row_done`]).
    pub fn goal_summary(&self) -> String {
        let checks = self.goal_checks();
        let counted: Vec<&GoalCheck> = checks.iter().filter(|c| c.verdict.counted()).collect();
        let met = counted.iter().filter(|c| c.verdict == Verdict::Met).count();
        let rows: Vec<bool> = self.rows.iter().filter_map(|r| self.row_done(r)).collect();
        let mut line = format!(
            "{met} of {} goal checks met on {}; {} of {} rows meet their goals (÷ Go or the tool compared, reference, memory), or ≤ 1.1 × their named bound.",
            counted.len(),
            self.name,
            rows.iter().filter(|&&done| done).count(),
            rows.len()
        );
        let left_out = checks.len() - counted.len();
        if self.rule == GoalRule::GoSteadierThanGap {
            let _ = write!(
                line,
                " {left_out} more not counted: a row counts here only where the comparison tool's spread over its runs (max − min of its wall times) is less than the gap between the two medians."
            );
        }
        line
    }

    fn goals_cell(&self, row: &Row) -> String {
        if row.goals.is_empty() {
            return String::new();
        }
        let not_counted = self.not_counted(row);
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
                if not_counted.is_some() {
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
        match not_counted {
            Some(why) => format!("{} ({why})", parts.join(", ")),
            None => parts.join(", "),
        }
    }

    /// The Markdown of this filesystem's tables.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## {}: {}\n", self.name, self.description);
        if self.rule == GoalRule::GoSteadierThanGap {
            let _ = writeln!(
                md,
                "A row's goals count here only where the comparison tool against itself (max − min of its wall times over the runs) varies by less than the gap between the two tools' medians; the other rows' goals are listed as not counted, without ✔/✘.\n"
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
                let cpu = median_cpu_secs(ours);
                let go_cpu = median_cpu_secs(go);
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
                    // With a floor, the floor is the bound and the library one of its parts.
                    let _ = write!(
                        reference_cell,
                        "; {}{label}: {} (ours ÷ it {})",
                        if row.floor.is_some() { "" } else { "bound, " },
                        fmt_secs(secs),
                        fmt_ratio(ratio(median_secs(ours), Some(secs)))
                    );
                }
                if let Some(floor) = self.floor_cell(row) {
                    let _ = write!(reference_cell, "; {floor}");
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
                let cpu = median_cpu_secs(samples);
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

    /// Counted goal checks that failed or lack a number (for the console summary).
    pub fn missed_goals(&self) -> Vec<String> {
        self.goal_checks()
            .into_iter()
            .filter(|c| matches!(c.verdict, Verdict::Missed | Verdict::NotMeasured))
            .map(|c| {
                format!(
                    "{}: {}: {}, measured {}",
                    self.name, c.row, c.goal, c.measured
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
