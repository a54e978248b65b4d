//! Beyond the Go tool: `images` and `containers` as a table for people, as podman shows
//! them, when stdout is a terminal (or with `--format table`). Scripts get the Go tool's
//! format: stdout is not a terminal for them, and `--format go` or `--json` asks for it.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use layerstore::{Container, Image};
use layerstore_model::Timestamp;

/// How `images` and `containers` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// The Go tool's lines.
    Go,
    /// A table with a header.
    Table,
}

impl ListFormat {
    /// The format `--format` names (`table` or `go`); without it, a table when stdout is a
    /// terminal and Go's format otherwise.
    pub fn choose(flag: Option<&str>) -> Result<ListFormat, String> {
        match flag {
            None | Some("") => Ok(if io::stdout().is_terminal() {
                ListFormat::Table
            } else {
                ListFormat::Go
            }),
            Some("table") => Ok(ListFormat::Table),
            Some("go") => Ok(ListFormat::Go),
            Some(other) => Err(format!("unknown output format {other:?}: use table or go")),
        }
    }
}

/// `docker.io/library/alpine:3` as (`docker.io/library/alpine`, `3`); a name without a tag
/// (or with only a digest) has tag `<none>`.
fn repository_and_tag(name: &str) -> (String, String) {
    let name = name.split('@').next().unwrap_or(name);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (name[..at].to_owned(), name[at + 1..].to_owned())
        }
        None => (name.to_owned(), "<none>".to_owned()),
    }
}

/// A size as podman shows it: decimal units, three significant digits (`1.23 MB`).
pub fn human_size(bytes: i64) -> String {
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 || unit == 0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// How long ago, as podman says it (`5 minutes ago`, `2 days ago`).
fn age(created: Timestamp, now: i64) -> String {
    let seconds = (now - created.unix_seconds()).max(0);
    let (count, unit) = match seconds {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 7 * 86_400 => (s / 86_400, "day"),
        s if s < 30 * 86_400 => (s / (7 * 86_400), "week"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

/// Left-aligned columns three spaces apart, the last one unpadded.
fn write_columns(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// The images table: one row per name (one `<none>` row for an image without names).
pub fn image_table(out: &mut dyn Write, images: &[&Image], sizes: &[String]) -> io::Result<()> {
    let now = Timestamp::now().unix_seconds();
    let mut rows = vec![
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
            .map(String::from)
            .to_vec(),
    ];
    for (image, size) in images.iter().zip(sizes) {
        let names: Vec<(String, String)> = if image.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            image.names.iter().map(|n| repository_and_tag(n)).collect()
        };
        for (repository, tag) in names {
            rows.push(vec![
                repository,
                tag,
                short_id(&image.id),
                age(image.created, now),
                size.clone(),
            ]);
        }
    }
    write_columns(out, &rows)
}

/// The containers table: ID, the image's first name (else its short ID), names, age.
pub fn container_table(
    out: &mut dyn Write,
    containers: &[&Container],
    images: &[&Image],
) -> io::Result<()> {
    let now = Timestamp::now().unix_seconds();
    // The first image with an ID, as a scan of the list would find it.
    let mut by_id: HashMap<&str, &Image> = HashMap::with_capacity(images.len());
    for image in images {
        by_id.entry(image.id.as_str()).or_insert(image);
    }
    let mut rows = vec![
        ["CONTAINER ID", "IMAGE", "CREATED", "NAMES"]
            .map(String::from)
            .to_vec(),
    ];
    for container in containers {
        let image = by_id
            .get(container.image_id.as_str())
            .and_then(|i| i.names.first().cloned())
            .unwrap_or_else(|| short_id(&container.image_id));
        rows.push(vec![
            short_id(&container.id),
            image,
            age(container.created, now),
            container.names.join(","),
        ]);
    }
    write_columns(out, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_and_tag() {
        assert_eq!(
            repository_and_tag("localhost:5000/a/b:1.0"),
            ("localhost:5000/a/b".into(), "1.0".into())
        );
        assert_eq!(
            repository_and_tag("localhost:5000/a"),
            ("localhost:5000/a".into(), "<none>".into())
        );
        assert_eq!(
            repository_and_tag("x@sha256:00"),
            ("x".into(), "<none>".into())
        );
    }

    #[test]
    fn sizes_and_ages_read_like_podman() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_234_567), "1.23 MB");
        assert_eq!(human_size(98_700_000), "98.7 MB");
        let created = Timestamp::from_unix(1_000_000, 0).expect("time");
        assert_eq!(age(created, 1_000_030), "Less than a minute ago");
        assert_eq!(age(created, 1_000_000 + 120), "2 minutes ago");
        assert_eq!(age(created, 1_000_000 + 86_400), "1 day ago");
    }

    #[test]
    fn columns_line_up() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "C".into()],
            vec!["long".to_string(), "x".into(), "y".into()],
        ];
        write_columns(&mut out, &rows).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "A      BB   C\nlong   x    y\n"
        );
    }
}
