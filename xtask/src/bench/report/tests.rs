//! The report's rules: goal checks, the disk rule, the two-core floor, rows done.

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
            .any(|c| c.goal == "ours ÷ skopeo ≤ 0.3" && c.measured == "0.40"),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.goal == "ours ≤ 100.0 ms" && c.measured == "60.0 ms"),
        "{checks:?}"
    );
    // A table of the Go tool's rows keeps its header.
    let go_only = [Row::new("import", "applydiff", "vfs", "a.tar")];
    assert_eq!(versus_heading(go_only.iter()), "Go");
}

fn walls(ms: &[u64]) -> Vec<Sample> {
    ms.iter().map(|&ms| sample(ms, 10)).collect()
}

/// A row ours runs in `ours` ms and Go in `go` ms, with a ÷Go ≤ 0.5 and an RSS goal.
fn timed_row(input: &str, ours: &[u64], go: &[u64]) -> Row {
    let mut row = Row::new("import", "applydiff", "vfs", input);
    row.samples[Tool::Ours.index()] = walls(ours);
    row.samples[Tool::Go.index()] = walls(go);
    row.goals = vec![Goal::VsGo(0.5), Goal::PeakRssMib(64.0)];
    row
}

/// Rows for the disk rule: Go's spread (max − min) against |Go median − ours median|.
fn noisy_and_clear_rows() -> Vec<Row> {
    vec![
        // Go varies by 600 ms, the gap is 500 ms: noise.
        timed_row("noisy.tar", &[500, 510, 490], &[700, 1000, 1300]),
        // Go varies by 100 ms against a gap of 500 ms: a result (met).
        timed_row("clear.tar", &[500, 510, 490], &[950, 1000, 1050]),
        // Go varies by 20 ms against a gap of 100 ms: a result (missed: 0.83 > 0.5).
        timed_row("slow.tar", &[500, 500, 500], &[590, 600, 610]),
        // A spread equal to the gap is not less than it.
        timed_row("tie.tar", &[100, 100, 100], &[150, 200, 250]),
        // One Go run tells nothing of how Go varies.
        timed_row("once.tar", &[100], &[1000]),
        // Ours failed on every run: counted, as not measured (a failure is no noise).
        timed_row("failed.tar", &[], &[1000, 1000]),
    ]
}

#[test]
fn on_the_disk_a_row_counts_only_where_go_varies_less_than_the_gap() {
    let disk = FsResults {
        name: "disk".into(),
        rule: GoalRule::GoSteadierThanGap,
        rows: noisy_and_clear_rows(),
        ..FsResults::default()
    };
    let verdicts: Vec<(String, Verdict)> = disk
        .goal_checks()
        .into_iter()
        .filter(|c| c.goal.starts_with("ours ÷ Go"))
        .map(|c| (c.row, c.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            (
                "applydiff vfs noisy.tar".into(),
                Verdict::NotCounted(
                    "not counted: Go varies by 600.0 ms against a gap of 500.0 ms".into()
                )
            ),
            ("applydiff vfs clear.tar".into(), Verdict::Met),
            ("applydiff vfs slow.tar".into(), Verdict::Missed),
            (
                "applydiff vfs tie.tar".into(),
                Verdict::NotCounted(
                    "not counted: Go varies by 100.0 ms against a gap of 100.0 ms".into()
                )
            ),
            (
                "applydiff vfs once.tar".into(),
                Verdict::NotCounted(
                    "not counted: Go ran 1 time(s), too few to know how much it varies".into()
                )
            ),
            ("applydiff vfs failed.tar".into(), Verdict::NotMeasured),
        ]
    );
    // The whole row is out, its RSS check too; the count is over the counted rows only.
    assert!(
        disk.goal_summary()
            .starts_with("3 of 6 goal checks met on disk; 1 of 3 rows meet their goals (÷ Go or the tool compared, reference, memory), or ≤ 1.1 × their named bound. 6 more not counted"),
        "{}",
        disk.goal_summary()
    );
    assert_eq!(
        disk.missed_goals(),
        [
            "disk: applydiff vfs slow.tar: ours ÷ Go ≤ 0.5, measured 0.83",
            "disk: applydiff vfs failed.tar: ours ÷ Go ≤ 0.5, measured not measured",
            "disk: applydiff vfs failed.tar: peak RSS ≤ 64 MiB, measured not measured",
        ]
    );
    let md = disk.markdown();
    assert!(
        md.contains(
            "| ÷Go ≤ 0.5, RSS ≤ 64 MiB (not counted: Go varies by 600.0 ms against a gap of 500.0 ms) |"
        ),
        "{md}"
    );
    assert!(md.contains("| ÷Go ≤ 0.5 ✔, RSS ≤ 64 MiB ✔ |"), "{md}");
    assert!(md.contains("| ÷Go ≤ 0.5 ✘, RSS ≤ 64 MiB ✔ |"), "{md}");
    assert!(md.contains("varies by less than the gap"), "{md}");
}

#[test]
fn on_tmpfs_every_row_counts_however_go_varies() {
    let tmpfs = FsResults {
        name: "tmpfs".into(),
        rows: noisy_and_clear_rows(),
        ..FsResults::default()
    };
    assert_eq!(tmpfs.rule, GoalRule::Always);
    let checks = tmpfs.goal_checks();
    assert_eq!(checks.len(), 12);
    assert!(checks.iter().all(|c| c.verdict.counted()), "{checks:?}");
    let noisy = checks
        .iter()
        .find(|c| c.row.ends_with("noisy.tar") && c.goal.starts_with("ours ÷ Go"))
        .expect("noisy row");
    assert_eq!(
        (noisy.measured.as_str(), &noisy.verdict),
        ("0.50", &Verdict::Met)
    );
    assert_eq!(
        tmpfs.goal_summary(),
        "9 of 12 goal checks met on tmpfs; 4 of 6 rows meet their goals (÷ Go or the tool compared, reference, memory), or ≤ 1.1 × their named bound."
    );
    let md = tmpfs.markdown();
    assert!(!md.contains("not counted"), "{md}");
}

#[test]
fn the_two_core_floor_is_the_longest_stream_or_half_of_all_the_cpu() {
    // sample(ms, _) has a CPU time of ms / 2.
    let mut fs = FsResults {
        name: "tmpfs".into(),
        ..FsResults::default()
    };
    for (key, ms) in [
        ("bound-unzstd/a.tar.zst", 200),
        ("hash/a.tar.zst", 60),
        ("hash/a.tar", 180),
        ("tar-x/a.tar", 340),
    ] {
        fs.baselines
            .insert(key.into(), walls(&[ms, ms + 2, ms - 2]));
    }
    let mut row = timed_row("a.tar.zst", &[250, 260, 240], &[2000, 2100, 1900]);
    row.bound = Some(("zstd decode alone".into(), "bound-unzstd/a.tar.zst".into()));
    row.goals.push(Goal::VsBound(1.1));
    row.floor = Some(Floor {
        decode: "bound-unzstd/a.tar.zst".into(),
        blob_sha: "hash/a.tar.zst".into(),
        tar_sha: "hash/a.tar".into(),
        extract: "tar-x/a.tar".into(),
    });
    // CPU: decode 100, blob 30, tar 90, tar -x 170 ms: half of all (195) beats decode.
    let floor = fs.floor_secs(&row).expect("every part measured");
    assert!((floor.floor - 0.195).abs() < 1e-9, "{floor:?}");
    // A slow enough decoder is the floor by itself: 400 ms of CPU against half of all,
    // (400 + 30 + 90 + 170) ÷ 2 = 345 ms.
    fs.baselines
        .insert("bound-unzstd/a.tar.zst".into(), walls(&[800, 800, 800]));
    let floor = fs.floor_secs(&row).expect("every part measured");
    assert!((floor.floor - 0.4).abs() < 1e-9, "{floor:?}");
    fs.baselines
        .insert("bound-unzstd/a.tar.zst".into(), walls(&[200, 202, 198]));
    fs.rows.push(row.clone());
    let md = fs.markdown();
    assert!(
        md.contains(
            "zstd decode alone: 200.0 ms (ours ÷ it 1.25); the bound, two-core floor of CPU: max(decode 100.0 ms, blob SHA-256 30.0 ms, tar SHA-256 90.0 ms, (those + tar -x 170.0 ms) ÷ 2) = 195.0 ms, ours ÷ floor 1.28"
        ),
        "{md}"
    );
    // The floor is the row's bound: the check divides by it and names the library.
    let bound = fs
        .goal_checks()
        .into_iter()
        .find(|c| c.goal.starts_with("ours ÷ bound"))
        .expect("the bound check");
    assert_eq!(
        bound.goal,
        "ours ÷ bound (two-core floor: zstd decode alone, both SHA-256s, tar -x's CPU) ≤ 1.1"
    );
    assert_eq!(
        bound.measured,
        "1.28 (floor = 1.95 × zstd decode alone's CPU; ours ÷ zstd decode alone 1.25)"
    );
    assert_eq!(bound.verdict, Verdict::Missed);
    assert_eq!(fs.goal_checks().len(), 3);
    // ÷ Go (0.125 ≤ 0.5) and peak RSS met: done although ours is 1.28 × the floor, since
    // the bound is the other way to be done, not one more goal.
    assert_eq!(fs.row_done(&row), Some(true));
    // Missing ÷ Go as well: not done.
    let mut slow = row.clone();
    slow.goals[0] = Goal::VsGo(0.1);
    assert_eq!(fs.row_done(&slow), Some(false));
    // Ours within 1.1 × the floor: the bound check is met, and so is the row although
    // it misses nothing else here either.
    let mut near = row.clone();
    near.samples[Tool::Ours.index()] = walls(&[210, 212, 208]);
    fs.rows = vec![near.clone()];
    assert_eq!(fs.goal_met(&near, Goal::VsBound(1.1)), Some(true));
    assert_eq!(fs.row_done(&near), Some(true));
    // A part missing: no floor, so no bound to check against (not the library alone).
    fs.baselines.remove("hash/a.tar");
    assert_eq!(fs.floor_secs(&row), None);
    assert_eq!(fs.row_bound_secs(&row), None);
    assert!(!fs.markdown().contains("two-core floor"));
}

#[test]
fn alternation_swaps_the_first_tool_every_run() {
    assert_eq!(Tool::order(0), [Tool::Ours, Tool::Go]);
    assert_eq!(Tool::order(1), [Tool::Go, Tool::Ours]);
    assert_eq!(fmt_secs(1.5), "1.500 s");
    assert_eq!(fmt_secs(0.0123), "12.3 ms");
}
