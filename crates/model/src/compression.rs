//! [`Compression`]: how a layer's diff was compressed when it was applied.

use std::fmt;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

use crate::error::Error;

/// The compression of the blob a layer was applied from: Go's `archive.Compression`, written to
/// `layers.json` as its integer (`compression`, omitted when [`Compression::None`]).
///
/// Integers Go 1.43 does not define are kept as [`Compression::Unknown`] so they survive a
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// 0, Go's `Uncompressed`.
    #[default]
    None,
    /// 1, bzip2.
    Bzip2,
    /// 2, gzip.
    Gzip,
    /// 3, xz.
    Xz,
    /// 4, zstd.
    Zstd,
    /// Any other integer, kept as read.
    Unknown(i64),
}

impl Compression {
    /// The value from Go's integer.
    pub fn from_go_int(value: i64) -> Compression {
        match value {
            0 => Compression::None,
            1 => Compression::Bzip2,
            2 => Compression::Gzip,
            3 => Compression::Xz,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// Go's integer for the value.
    pub fn go_int(self) -> i64 {
        match self {
            Compression::None => 0,
            Compression::Bzip2 => 1,
            Compression::Gzip => 2,
            Compression::Xz => 3,
            Compression::Zstd => 4,
            Compression::Unknown(other) => other,
        }
    }

    /// A short name: `none`, `bzip2`, `gzip`, `xz`, `zstd`, or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Unknown(_) => "unknown",
        }
    }

    /// Go's `Compression.Extension()`: `tar`, `tar.bz2`, `tar.gz`, `tar.xz`, `tar.zst`; `None`
    /// for an unknown value (Go returns "").
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Compression::None => Some("tar"),
            Compression::Bzip2 => Some("tar.bz2"),
            Compression::Gzip => Some("tar.gz"),
            Compression::Xz => Some("tar.xz"),
            Compression::Zstd => Some("tar.zst"),
            Compression::Unknown(_) => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Unknown(value) => write!(f, "unknown compression {value}"),
            known => f.write_str(known.name()),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// Parses a [`Compression::name`]; `uncompressed` is accepted for [`Compression::None`].
    fn from_str(name: &str) -> Result<Compression, Error> {
        match name {
            "none" | "uncompressed" => Ok(Compression::None),
            "bzip2" => Ok(Compression::Bzip2),
            "gzip" => Ok(Compression::Gzip),
            "xz" => Ok(Compression::Xz),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::UnknownCompression(other.to_owned())),
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.go_int())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Compression, D::Error> {
        i64::deserialize(deserializer).map(Compression::from_go_int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_names_and_extensions() {
        let table = [
            (Compression::None, 0, "none", Some("tar")),
            (Compression::Bzip2, 1, "bzip2", Some("tar.bz2")),
            (Compression::Gzip, 2, "gzip", Some("tar.gz")),
            (Compression::Xz, 3, "xz", Some("tar.xz")),
            (Compression::Zstd, 4, "zstd", Some("tar.zst")),
        ];
        for (compression, int, name, extension) in table {
            assert_eq!(compression.go_int(), int);
            assert_eq!(Compression::from_go_int(int), compression);
            assert_eq!(compression.name(), name);
            assert_eq!(compression.to_string(), name);
            assert_eq!(name.parse::<Compression>().unwrap(), compression);
            assert_eq!(compression.extension(), extension);
            assert_eq!(
                serde_json::to_string(&compression).unwrap(),
                int.to_string()
            );
        }
        assert_eq!(
            "uncompressed".parse::<Compression>().unwrap(),
            Compression::None
        );
        let err = "lz4".parse::<Compression>().unwrap_err();
        assert!(err.to_string().contains("\"lz4\""), "{err}");
    }

    #[test]
    fn unknown_integers_survive() {
        for value in [5, -1, i64::MAX] {
            let compression: Compression = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(compression, Compression::Unknown(value));
            assert_eq!(
                serde_json::to_string(&compression).unwrap(),
                value.to_string()
            );
            assert_eq!(compression.extension(), None);
        }
        assert!(serde_json::from_str::<Compression>("2.5").is_err());
        assert!(serde_json::from_str::<Compression>("\"gzip\"").is_err());
    }
}
