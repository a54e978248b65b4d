//! The options of `cargo xtask bench` and their parsing.

use std::collections::HashMap;
use std::path::PathBuf;

use super::fixtures::{self, Fixture};

pub(super) const BENCH_USAGE: &str = "\
usage: cargo xtask bench [options]
  --quick              a small subset: 3 runs, tmpfs only, the rootfs fixtures (plain, gzip, zstd),
                       the many-layer store on vfs only
  --runs N             runs per tool and row (default 5; --quick: 3)
  --sections LIST      import,diff,many,mount,child,store,pull (default: all)
  --fs LIST            tmpfs,disk (default: both; --quick: tmpfs)
  --drivers LIST       vfs,overlay (default: both)
  --fixtures LIST      rootfs.tar,rootfs.tar.gz,rootfs.tar.zst,smallfiles.tar,bigfile.tar,bigfile.tar.gz
  --disk-fixtures LIST the fixtures imported on the disk (default: those of --fixtures)
  --layers N           size of the many-layer store (default 10000)
  --chain N            depth of the overlay chain to mount (default 100)
  --images N           store section: images (and containers) in the store (default 10000)
  --image-layers N     store section: layers of the image `delete-image` removes (default 50)
  --open-layers N      store section: layers of the store `exists` opens (default 100000)
  --ours PATH          our binary (default: cargo build --release -p layerstore-cli)
  --go PATH            the Go tool (default /usr/bin/containers-storage)
  --fixtures-dir DIR   where the fixtures are kept, built if missing (default /tmp/lsbench-fixtures)
  --work DIR           scratch space for stores; a tmpfs is mounted under it, and the disk rows'
                       ext4 is made on a loop file in it (default /tmp)
  --disk DIR           run the disk rows in DIR's filesystem as it is, instead of a fresh ext4
  --out FILE           the report (default docs/BENCHMARKS.md)
  --timeout SECS       kill a command still running after SECS (default 900); it counts as failed
";

/// The benchmark sections, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Import,
    Diff,
    Many,
    Mount,
    Child,
    Store,
    Pull,
}

impl Section {
    /// Every section, in the order they run (the default of `--sections`).
    pub(super) const ALL: [Section; 7] = [
        Section::Import,
        Section::Diff,
        Section::Many,
        Section::Mount,
        Section::Child,
        Section::Store,
        Section::Pull,
    ];

    fn parse(name: &str) -> Result<Section, String> {
        Ok(match name {
            "import" => Section::Import,
            "diff" => Section::Diff,
            "many" => Section::Many,
            "mount" => Section::Mount,
            "child" => Section::Child,
            "store" => Section::Store,
            "pull" => Section::Pull,
            other => return Err(format!("unknown section `{other}`")),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FsKind {
    Tmpfs,
    Disk,
}

#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) quick: bool,
    pub(super) runs: usize,
    pub(super) sections: Vec<Section>,
    pub(super) fs: Vec<FsKind>,
    pub(super) drivers: Vec<String>,
    fixtures: Vec<Fixture>,
    pub(super) disk_fixtures: Option<Vec<Fixture>>,
    pub(super) many_layers: usize,
    pub(super) chain_depth: usize,
    pub(super) store_images: usize,
    pub(super) image_layers: usize,
    pub(super) open_layers: usize,
    pub(super) ours: Option<PathBuf>,
    pub(super) go: PathBuf,
    pub(super) fixtures_dir: PathBuf,
    pub(super) work: PathBuf,
    /// `--disk`: the directory whose filesystem the disk rows use as it is.
    pub(super) disk: Option<PathBuf>,
    pub(super) out: Option<PathBuf>,
    pub(super) time_limit: std::time::Duration,
    pub(super) command_line: String,
}

fn list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn fixture_list(flag: &str, value: &str) -> Result<Vec<Fixture>, String> {
    list(value)
        .into_iter()
        .map(|f| Fixture::named(f).ok_or_else(|| format!("{flag}: unknown `{f}`")))
        .collect()
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Options, String> {
        let mut values: HashMap<&str, &str> = HashMap::new();
        let mut quick = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                flag @ ("--runs" | "--sections" | "--fs" | "--drivers" | "--fixtures"
                | "--layers" | "--chain" | "--images" | "--image-layers"
                | "--open-layers" | "--ours" | "--go" | "--fixtures-dir" | "--work"
                | "--out" | "--timeout" | "--disk-fixtures" | "--disk") => {
                    let value = it
                        .next()
                        .ok_or_else(|| format!("{flag} needs a value\n{BENCH_USAGE}"))?;
                    values.insert(flag, value);
                }
                other => return Err(format!("unknown option `{other}`\n{BENCH_USAGE}")),
            }
        }
        let number = |flag: &str, default: usize| -> Result<usize, String> {
            match values.get(flag) {
                None => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: `{v}` is not a positive number")),
            }
        };
        let sections = match values.get("--sections") {
            None => Section::ALL.to_vec(),
            Some(v) => list(v)
                .into_iter()
                .map(Section::parse)
                .collect::<Result<_, _>>()?,
        };
        let fs = match values.get("--fs") {
            None if quick => vec![FsKind::Tmpfs],
            None => vec![FsKind::Tmpfs, FsKind::Disk],
            Some(v) => list(v)
                .into_iter()
                .map(|f| match f {
                    "tmpfs" => Ok(FsKind::Tmpfs),
                    "disk" => Ok(FsKind::Disk),
                    other => Err(format!("--fs: unknown filesystem `{other}` (tmpfs, disk)")),
                })
                .collect::<Result<_, _>>()?,
        };
        let drivers = match values.get("--drivers") {
            None => vec!["vfs".to_owned(), "overlay".to_owned()],
            Some(v) => list(v)
                .into_iter()
                .map(|d| match d {
                    "vfs" | "overlay" => Ok(d.to_owned()),
                    other => Err(format!("--drivers: `{other}` is not vfs or overlay")),
                })
                .collect::<Result<_, _>>()?,
        };
        let fixtures = match values.get("--fixtures") {
            None if quick => fixtures::ALL
                .iter()
                .copied()
                .filter(|f| f.name.starts_with("rootfs."))
                .collect(),
            None => fixtures::ALL.to_vec(),
            Some(v) => fixture_list("--fixtures", v)?,
        };
        let disk_fixtures = match values.get("--disk-fixtures") {
            None => None,
            Some(v) => Some(fixture_list("--disk-fixtures", v)?),
        };
        Ok(Options {
            quick,
            runs: number("--runs", if quick { 3 } else { 5 })?,
            sections,
            fs,
            drivers,
            fixtures,
            disk_fixtures,
            many_layers: number("--layers", 10_000)?,
            chain_depth: number("--chain", 100)?,
            store_images: number("--images", 10_000)?,
            image_layers: number("--image-layers", 50)?,
            open_layers: number("--open-layers", 100_000)?,
            ours: values.get("--ours").map(PathBuf::from),
            go: PathBuf::from(
                values
                    .get("--go")
                    .copied()
                    .unwrap_or("/usr/bin/containers-storage"),
            ),
            fixtures_dir: PathBuf::from(
                values
                    .get("--fixtures-dir")
                    .copied()
                    .unwrap_or(fixtures::DEFAULT_DIR),
            ),
            work: PathBuf::from(values.get("--work").copied().unwrap_or("/tmp")),
            disk: values.get("--disk").map(PathBuf::from),
            out: values.get("--out").map(PathBuf::from),
            time_limit: std::time::Duration::from_secs(number("--timeout", 900)? as u64),
            command_line: std::iter::once("cargo xtask bench")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// The fixtures imported on filesystem `fs` (`tmpfs` or `disk`).
    pub(super) fn fixtures_on(&self, fs: &str) -> &[Fixture] {
        match (&self.disk_fixtures, fs) {
            (Some(disk), "disk") => disk,
            _ => &self.fixtures,
        }
    }

    /// Every fixture some filesystem imports.
    pub(super) fn all_fixtures(&self) -> Vec<Fixture> {
        let mut all = self.fixtures.clone();
        for f in self.disk_fixtures.iter().flatten() {
            if !all.contains(f) {
                all.push(*f);
            }
        }
        all
    }

    pub(super) fn has(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// Drivers for the many-layer store (`--quick`: vfs only).
    pub(super) fn many_drivers(&self) -> Vec<String> {
        if self.quick {
            self.drivers
                .iter()
                .filter(|d| *d == "vfs")
                .cloned()
                .collect()
        } else {
            self.drivers.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_cover_everything() {
        let o = Options::parse(&[]).expect("no options is fine");
        assert_eq!(o.runs, 5);
        assert_eq!(o.fs, vec![FsKind::Tmpfs, FsKind::Disk]);
        assert_eq!(o.sections, Section::ALL);
        assert_eq!(o.fixtures.len(), fixtures::ALL.len());
        assert_eq!(o.many_layers, 10_000);
        assert_eq!(o.chain_depth, 100);
        assert_eq!(
            (o.store_images, o.image_layers, o.open_layers),
            (10_000, 50, 100_000)
        );
        assert_eq!(
            o.many_drivers(),
            vec!["vfs".to_owned(), "overlay".to_owned()]
        );
    }

    #[test]
    fn quick_is_a_small_subset_and_flags_override_it() {
        let o = Options::parse(&args("--quick")).expect("valid");
        assert_eq!((o.runs, o.fs.clone()), (3, vec![FsKind::Tmpfs]));
        assert_eq!(
            o.fixtures.iter().map(|f| f.name).collect::<Vec<_>>(),
            ["rootfs.tar", "rootfs.tar.gz", "rootfs.tar.zst"]
        );
        assert_eq!(o.many_drivers(), vec!["vfs".to_owned()]);
        let o = Options::parse(&args(
            "--quick --runs 7 --fs disk --sections many,child --layers 500",
        ))
        .expect("valid");
        assert_eq!(o.runs, 7);
        assert_eq!(o.fs, vec![FsKind::Disk]);
        assert_eq!(o.sections, vec![Section::Many, Section::Child]);
        assert_eq!(o.many_layers, 500);
        assert!(o.command_line.ends_with("--layers 500"));
        let o = Options::parse(&args(
            "--sections store --images 100 --image-layers 5 --open-layers 1000",
        ))
        .expect("valid");
        assert_eq!(o.sections, vec![Section::Store]);
        assert_eq!(
            (o.store_images, o.image_layers, o.open_layers),
            (100, 5, 1000)
        );
        let o = Options::parse(&args("--sections pull --fs tmpfs --runs 3")).expect("valid");
        assert_eq!(o.sections, vec![Section::Pull]);
        assert!(o.has(Section::Pull) && !o.has(Section::Import));
        let o = Options::parse(&args("--disk-fixtures rootfs.tar --fixtures bigfile.tar"))
            .expect("valid");
        assert_eq!(o.fixtures_on("tmpfs")[0].name, "bigfile.tar");
        assert_eq!(o.fixtures_on("disk")[0].name, "rootfs.tar");
        assert_eq!(o.all_fixtures().len(), 2);
    }

    #[test]
    fn bad_options_are_errors_naming_the_problem() {
        for (line, want) in [
            ("--runs 0", "--runs"),
            ("--runs", "needs a value"),
            ("--images 0", "--images"),
            ("--sections import,bogus", "bogus"),
            ("--fs nfs", "nfs"),
            ("--drivers btrfs", "btrfs"),
            ("--fixtures nope.tar", "nope.tar"),
            ("--frobnicate", "--frobnicate"),
        ] {
            let err = Options::parse(&args(line)).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
