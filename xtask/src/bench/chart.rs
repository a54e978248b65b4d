//! The SVG chart of a run: one group of bars per row, every bar a median wall time divided by
//! the comparison tool's median of the same row (the Go tool; podman or skopeo for the pulls),
//! so rows of milliseconds and of seconds share one axis, with the row's ÷Go (÷podman,
//! ÷skopeo) goal drawn as a tick. Hand-written SVG: a few rectangles and
//! labels do not need a plotting library.

use std::fmt::Write as _;

use super::report::{FsResults, Goal, Tool, Versus, fmt_secs, median_secs};

/// Height of one row's group of bars, in pixels.
const ROW_HEIGHT: f64 = 34.0;
/// Width of the label column.
const LABEL_WIDTH: f64 = 330.0;
/// Width of the bar area.
const PLOT_WIDTH: f64 = 520.0;
/// Space above the first row (title, legend) and below the last (axis).
const TOP: f64 = 56.0;
const BOTTOM: f64 = 34.0;

/// One bar series: what it is and its colour.
struct Series {
    label: &'static str,
    colour: &'static str,
}

const OURS: Series = Series {
    label: "ours (layerstore)",
    colour: "#1f77b4",
};
const GO: Series = Series {
    label: "Go containers-storage",
    colour: "#ff7f0e",
};
const PODMAN: Series = Series {
    label: "podman pull",
    colour: "#2ca02c",
};
const SKOPEO: Series = Series {
    label: "skopeo copy",
    colour: "#9467bd",
};
const BOUND: Series = Series {
    label: "bound (library alone or two-core floor, else physical reference)",
    colour: "#7f7f7f",
};

/// The series of a row's comparison tool.
fn versus_series(versus: Versus) -> &'static Series {
    match versus {
        Versus::GoTool => &GO,
        Versus::Podman => &PODMAN,
        Versus::Skopeo => &SKOPEO,
    }
}

/// A row of the chart: its label, and its bars as (series, ratio to the comparison tool,
/// median seconds).
struct Bars {
    label: String,
    bars: Vec<(&'static Series, f64, f64)>,
    goal: Option<f64>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn bars_of(results: &FsResults) -> Vec<Bars> {
    let mut out = Vec::new();
    for row in &results.rows {
        let (Some(ours), Some(go)) = (
            median_secs(&row.samples[Tool::Ours.index()]),
            median_secs(&row.samples[Tool::Go.index()]),
        ) else {
            continue;
        };
        if go <= 0.0 {
            continue;
        }
        let mut bars = vec![
            (&OURS, ours / go, ours),
            (versus_series(row.versus), 1.0, go),
        ];
        if let Some(bound) = results
            .row_bound_secs(row)
            .or_else(|| results.reference_secs(row))
        {
            bars.push((&BOUND, bound / go, bound));
        }
        let goal = row.goals.iter().find_map(|g| match g {
            Goal::VsGo(max) => Some(*max),
            _ => None,
        });
        out.push(Bars {
            label: format!("{} · {} · {}", row.op, row.driver, row.input),
            bars,
            goal,
        });
    }
    out
}

/// The chart of `results` as an SVG document; `None` when no row has both tools' numbers.
pub(super) fn svg(results: &FsResults, title: &str) -> Option<String> {
    let rows = bars_of(results);
    if rows.is_empty() {
        return None;
    }
    // The axis runs to the largest ratio, at least Go's 1.0, rounded up to a quarter.
    let largest = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.1))
        .fold(1.0_f64, f64::max);
    let axis_max = (largest * 4.0).ceil() / 4.0;
    let x = |ratio: f64| LABEL_WIDTH + ratio / axis_max * PLOT_WIDTH;
    let width = LABEL_WIDTH + PLOT_WIDTH + 150.0;
    let height = TOP + ROW_HEIGHT * rows.len() as f64 + BOTTOM;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/><text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let mut legend_x = 8.0;
    // The legend names the comparison tools that have a bar, in a fixed order.
    let shown: Vec<&Series> = [&OURS, &GO, &PODMAN, &SKOPEO, &BOUND]
        .into_iter()
        .filter(|series| {
            [OURS.label, BOUND.label].contains(&series.label)
                || rows
                    .iter()
                    .any(|r| r.bars.iter().any(|b| b.0.label == series.label))
        })
        .collect();
    for series in shown {
        let _ = writeln!(
            s,
            r#"<rect x="{legend_x}" y="30" width="12" height="10" fill="{}"/><text x="{}" y="39">{}</text>"#,
            series.colour,
            legend_x + 16.0,
            escape(series.label)
        );
        legend_x += 24.0 + 6.5 * series.label.len() as f64;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{legend_x}" y1="29" x2="{legend_x}" y2="41" stroke="red" stroke-width="2"/><text x="{}" y="39">goal (ours ÷ it)</text>"#,
        legend_x + 5.0
    );
    // Grid lines every quarter of Go's time.
    let bottom = TOP + ROW_HEIGHT * rows.len() as f64;
    let quarters = (axis_max * 4.0).round() as usize;
    for q in 0..=quarters {
        let ratio = q as f64 / 4.0;
        let gx = x(ratio);
        let stroke = if q % 4 == 0 { "#999" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{bottom}" stroke="{stroke}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{ratio:.2}</text>"#,
            bottom + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">median wall time ÷ the comparison tool's: Go, podman or skopeo (shorter is faster)</text>"#,
        x(axis_max / 2.0),
        bottom + 28.0
    );
    for (i, row) in rows.iter().enumerate() {
        let y0 = TOP + ROW_HEIGHT * i as f64;
        if i % 2 == 1 {
            let _ = writeln!(
                s,
                r##"<rect x="0" y="{y0}" width="{width}" height="{ROW_HEIGHT}" fill="#f4f4f4"/>"##
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_WIDTH - 6.0,
            y0 + ROW_HEIGHT / 2.0 + 4.0,
            escape(&row.label)
        );
        let bar_height = (ROW_HEIGHT - 4.0) / row.bars.len().max(3) as f64;
        for (j, (series, ratio, secs)) in row.bars.iter().enumerate() {
            let y = y0 + 2.0 + bar_height * j as f64;
            let w = (x(*ratio) - LABEL_WIDTH).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_WIDTH}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {} ({ratio:.2} of the comparison tool)</title></rect><text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                bar_height - 1.0,
                series.colour,
                escape(series.label),
                fmt_secs(*secs),
                LABEL_WIDTH + w + 3.0,
                y + bar_height - 2.0,
                fmt_secs(*secs)
            );
        }
        if let Some(goal) = row.goal {
            let gx = x(goal);
            let _ = writeln!(
                s,
                r#"<line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{:.1}" stroke="red" stroke-width="2"/>"#,
                y0 + 1.0,
                y0 + ROW_HEIGHT - 1.0
            );
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::exec::Sample;
    use super::super::report::Row;
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample {
            wall: Duration::from_millis(ms),
            cpu: Duration::from_millis(ms),
            max_rss_kib: 1024,
        }
    }

    #[test]
    fn bars_are_ratios_to_go_with_the_goal_and_the_bound() {
        let mut fs = FsResults::default();
        fs.baselines
            .insert("tar-x/a.tar".into(), vec![sample(50), sample(60)]);
        let mut row = Row::new("import", "applydiff", "vfs", "a&b.tar");
        row.samples[Tool::Ours.index()] = vec![sample(100), sample(120), sample(80)];
        row.samples[Tool::Go.index()] = vec![sample(400)];
        row.reference = Some(("tar -x".into(), vec!["tar-x/a.tar".into()]));
        row.goals = vec![Goal::VsGo(0.2)];
        fs.rows.push(row);
        // A row the Go tool has no number for is left out.
        let mut lone = Row::new("import", "applydiff", "vfs", "lone.tar");
        lone.samples[Tool::Ours.index()] = vec![sample(10)];
        fs.rows.push(lone);
        let svg = svg(&fs, "t").expect("one row");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("applydiff · vfs · a&amp;b.tar"), "{svg}");
        assert!(!svg.contains("lone.tar"), "{svg}");
        // ours 100 ms of Go's 400: a quarter of the 1.0 axis (520 px) = 130 px wide.
        assert!(svg.contains(r#"width="130.0""#), "{svg}");
        // The bound: the reference's median, 55 ms.
        assert!(svg.contains("55.0 ms"), "{svg}");
        // The goal tick at 0.2: 330 + 0.2 × 520 = 434.
        assert!(svg.contains(r#"x1="434.0""#), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn pull_rows_are_drawn_against_podman_and_skopeo() {
        let mut fs = FsResults::default();
        let mut pull = Row::new("pull", "pull docker://", "overlay", "image");
        pull.versus = Versus::Podman;
        pull.samples[Tool::Ours.index()] = vec![sample(1000)];
        pull.samples[Tool::Go.index()] = vec![sample(4000)];
        pull.goals = vec![Goal::VsGo(0.3)];
        fs.rows.push(pull);
        let svg = svg(&fs, "t").expect("one row");
        assert!(svg.contains("podman pull"), "{svg}");
        assert!(svg.contains("#2ca02c"), "{svg}");
        // Neither the Go tool nor skopeo has a bar, so the legend leaves them out.
        assert!(!svg.contains("Go containers-storage"), "{svg}");
        assert!(!svg.contains("skopeo copy"), "{svg}");
        // ours is a quarter of podman's time: 130 of the 520 px axis.
        assert!(svg.contains(r#"width="130.0""#), "{svg}");
        assert!(svg.contains("4.000 s"), "{svg}");
    }

    #[test]
    fn no_rows_no_chart() {
        assert!(svg(&FsResults::default(), "t").is_none());
    }
}
