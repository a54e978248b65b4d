//! [`Platform`]: which image of a manifest list or OCI index to pull, chosen as containers/image
//! 5.23 does (`platform.WantedPlatforms` and `ChooseInstance`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An `os/arch[/variant]` triple in Go's spelling (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `GOOS`: `linux`.
    pub os: String,
    /// `GOARCH`: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, …
    pub architecture: String,
    /// The CPU variant (`v7`, `v8`), empty when none was asked for.
    pub variant: String,
}

/// What containers/image accepts for an architecture when a variant is known, best first.
const VARIANT_COMPATIBILITY: &[(&str, &[&str])] =
    &[("arm", &["v8", "v7", "v6", "v5"]), ("arm64", &["v8"])];

impl Platform {
    /// This machine's platform, as Go's `runtime.GOOS`/`GOARCH` name it; on ARM, the variant
    /// from `/proc/cpuinfo` as containers/image reads it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        let variant = if matches!(architecture, "arm" | "arm64") {
            cpu_variant_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
        } else {
            String::new()
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// The platforms an index entry may have to be chosen for this one, best first
    /// (`WantedPlatforms`): the variant and the older ones compatible with it, then no variant;
    /// with no variant, no variant first, then every known variant of the architecture.
    pub fn wanted(&self) -> Vec<Platform> {
        let known = VARIANT_COMPATIBILITY
            .iter()
            .find(|(arch, _)| *arch == self.architecture)
            .map(|(_, v)| *v);
        let mut variants: Vec<&str> = Vec::new();
        if !self.variant.is_empty() {
            match known.and_then(|k| k.iter().position(|v| *v == self.variant).map(|i| &k[i..])) {
                Some(compatible) => variants.extend(compatible),
                None => variants.push(&self.variant),
            }
            variants.push("");
        } else {
            variants.push("");
            variants.extend(known.unwrap_or_default());
        }
        variants
            .into_iter()
            .map(|variant| Platform {
                os: self.os.clone(),
                architecture: self.architecture.clone(),
                variant: variant.to_owned(),
            })
            .collect()
    }

    /// Index of the entry to pull among `entries` (each entry's platform, `None` when it has
    /// none): the first entry matching the best wanted platform; else the first entry without
    /// a platform; else `None`.
    pub fn choose(&self, entries: &[Option<Platform>]) -> Option<usize> {
        self.wanted()
            .iter()
            .find_map(|wanted| entries.iter().position(|e| e.as_ref() == Some(wanted)))
            .or_else(|| entries.iter().position(Option::is_none))
    }
}

/// The variant containers/image derives from `/proc/cpuinfo`'s `CPU architecture` line.
fn cpu_variant_from_cpuinfo(cpuinfo: &str) -> String {
    let value = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "CPU architecture").then(|| value.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    match value.as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "",
    }
    .to_owned()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// `os/arch[/variant]`, as `--platform` takes it.
    fn from_str(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts[..] {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: String::new(),
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: variant.to_owned(),
            }),
            _ => Err(Error::InvalidPlatform {
                platform: text.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn wanted_platforms_follow_containers_image() {
        let names = |pl: &Platform| {
            pl.wanted()
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&p("linux/amd64")), ["linux/amd64"]);
        assert_eq!(names(&p("linux/arm64")), ["linux/arm64", "linux/arm64/v8"]);
        assert_eq!(
            names(&p("linux/arm64/v8")),
            ["linux/arm64/v8", "linux/arm64"]
        );
        assert_eq!(
            names(&p("linux/arm/v7")),
            ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5", "linux/arm"]
        );
        assert_eq!(
            names(&p("linux/riscv64/rva23")),
            ["linux/riscv64/rva23", "linux/riscv64"]
        );
    }

    #[test]
    fn choose_takes_the_best_match_then_an_entry_without_platform() {
        let entries = vec![
            Some(p("linux/arm/v6")),
            Some(p("linux/arm64/v8")),
            Some(p("linux/amd64")),
            Some(p("linux/arm/v7")),
            None,
        ];
        assert_eq!(p("linux/amd64").choose(&entries), Some(2));
        assert_eq!(p("linux/arm64").choose(&entries), Some(1));
        assert_eq!(p("linux/arm/v7").choose(&entries), Some(3));
        assert_eq!(p("linux/arm/v6").choose(&entries), Some(0));
        assert_eq!(p("linux/s390x").choose(&entries), Some(4));
        assert_eq!(p("linux/s390x").choose(&entries[..4]), None);
    }

    #[test]
    fn host_and_cpuinfo() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
        assert_eq!(
            cpu_variant_from_cpuinfo("processor : 0\nCPU architecture: 8\n"),
            "v8"
        );
        assert_eq!(cpu_variant_from_cpuinfo("CPU architecture\t: 7\n"), "v7");
        assert_eq!(cpu_variant_from_cpuinfo("model name: x\n"), "");
    }

    #[test]
    fn bad_platforms_are_refused() {
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
