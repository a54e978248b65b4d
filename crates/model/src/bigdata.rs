//! Big-data items of layers, images and containers: the file name Go stores an item under,
//! and which keys cannot be stored safely under that name.

use std::fmt;

use crate::error::{Error, Result};

/// Prefix of temp files the stores write beside a big-data file before renaming them over it
/// (`.tmp-<file name><digits>`, as Go's `AtomicWriteFile`).
const TEMP_PREFIX: &str = ".tmp-";

/// The directory next to a container's big-data files (Go's `ContainerDirectory`).
pub const CONTAINER_USERDATA_DIR: &str = "userdata";

/// The kind of record a big-data item belongs to: its items live in
/// `<graphroot>/<driver>-{layers,images,containers}/<id>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BigDataOwner {
    /// A layer's item.
    Layer,
    /// An image's item (manifests, configuration, signatures).
    Image,
    /// A container's item; its directory also holds [`CONTAINER_USERDATA_DIR`].
    Container,
}

impl fmt::Display for BigDataOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BigDataOwner::Layer => "layer",
            BigDataOwner::Image => "image",
            BigDataOwner::Container => "container",
        })
    }
}

/// The file name Go 1.43 (`makeBigDataBaseName`) stores the item `key` under: the key itself,
/// or `=` and the standard base64 (padded) of its bytes when it needs encoding.
///
/// Go scans the key one character at a time and stops at the first one that is not `.`,
/// `0-9` or `a-z` (multi-byte characters included); the key is encoded only if anything comes
/// *after* that character. So a key whose only other character is its last one is kept as it
/// is — `abC`, `é`, `ab `, `manifest-`, and `ab/` (which the system reads as the file `ab`).
/// Stores written by Go hold such files; reading them needs the same rule.
/// [`check_big_data_key`] says which keys this makes unsafe.
///
/// ```
/// use layerstore_model::big_data_file_name;
/// assert_eq!(big_data_file_name("config.json"), "config.json");
/// assert_eq!(big_data_file_name("Manifest"), "=TWFuaWZlc3Q=");
/// assert_eq!(big_data_file_name("abC"), "abC");
/// ```
pub fn big_data_file_name(key: &str) -> String {
    let mut chars = key.char_indices();
    let stop = chars.find(|&(_, c)| !matches!(c, '.' | '0'..='9' | 'a'..='z'));
    match stop {
        Some((at, c)) if at + c.len_utf8() < key.len() => {
            let mut name = String::with_capacity(1 + key.len().div_ceil(3) * 4);
            name.push('=');
            data_encoding::BASE64.encode_append(key.as_bytes(), &mut name);
            name
        }
        _ => key.to_owned(),
    }
}

/// Checks that the item `key` of a record of kind `owner` can be stored under
/// [`big_data_file_name`] without clashing with another item or with what else the record's
/// directory holds. Go 1.43 stores these keys anyway, and fails or mixes items up.
///
/// Refused ([`Error::InvalidBigDataKey`]): the empty key; keys whose file name is `.` or `..`
/// (the directory or its parent), holds a `/` (`ab/` is the file of `ab`) or NUL, or starts
/// with `.tmp-` (the stores' temp files); for containers, `userdata` (their user data
/// directory).
///
/// ```
/// use layerstore_model::{BigDataOwner, check_big_data_key};
/// assert!(check_big_data_key(BigDataOwner::Image, "manifest-sha256:abcd").is_ok());
/// assert!(check_big_data_key(BigDataOwner::Image, "ab/").is_err());
/// assert!(check_big_data_key(BigDataOwner::Container, "userdata").is_err());
/// assert!(check_big_data_key(BigDataOwner::Image, "userdata").is_ok());
/// ```
pub fn check_big_data_key(owner: BigDataOwner, key: &str) -> Result<()> {
    let name = big_data_file_name(key);
    let reason = if key.is_empty() {
        "an empty key names no file".to_owned()
    } else if name == "." || name == ".." {
        format!("its file name {name:?} is the item directory or its parent")
    } else if name.contains('/') {
        format!("its file name {name:?} holds '/' and would name another file")
    } else if name.contains('\0') {
        "its file name would hold NUL".to_owned()
    } else if name.starts_with(TEMP_PREFIX) {
        format!("its file name {name:?} looks like a temp file of an unfinished write")
    } else if owner == BigDataOwner::Container && name == CONTAINER_USERDATA_DIR {
        format!("its file name {name:?} is the container's user data directory")
    } else {
        return Ok(());
    };
    Err(Error::InvalidBigDataKey {
        owner,
        key: key.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_go_1_43() {
        // What Go 1.43 wrote for these keys (store doc §1.4, tests/fixtures/go-1.43).
        for (key, name) in [
            ("manifest", "manifest"),
            ("config.json", "config.json"),
            ("k", "k"),
            ("", ""),
            ("...", "..."),
            (".", "."),
            ("..", ".."),
            ("big-item-1", "=YmlnLWl0ZW0tMQ=="),
            ("Manifest", "=TWFuaWZlc3Q="),
            ("manifest-sha256:abcd", "=bWFuaWZlc3Qtc2hhMjU2OmFiY2Q="),
            ("a/b", "=YS9i"),
            ("Abc", "=QWJj"),
            ("Key", "=S2V5"),
            ("a b", "=YSBi"),
            ("key/2", "=a2V5LzI="),
            // The trailing-character quirk: a single offending last character is kept.
            ("abC", "abC"),
            ("é", "é"),
            ("ab ", "ab "),
            ("manifest-", "manifest-"),
            ("ab/", "ab/"),
            ("abé", "abé"),
            // A multi-byte character stops the scan too; anything after it encodes.
            ("éa", "=w6lh"),
        ] {
            assert_eq!(big_data_file_name(key), name, "{key:?}");
        }
    }

    #[test]
    fn unsafe_keys_are_named_with_the_reason() {
        for (owner, key, needle) in [
            (BigDataOwner::Image, "", "empty"),
            (BigDataOwner::Layer, ".", "\".\""),
            (BigDataOwner::Layer, "..", "\"..\""),
            (BigDataOwner::Image, "ab/", "'/'"),
            (BigDataOwner::Image, "/", "'/'"),
            (BigDataOwner::Container, "ab\0", "NUL"),
            (BigDataOwner::Image, ".tmp-", "temp file"),
            (BigDataOwner::Container, "userdata", "user data"),
        ] {
            let err = check_big_data_key(owner, key).expect_err(key).to_string();
            assert!(err.contains(needle), "{key:?}: {err}");
            assert!(
                err.contains(&format!("{owner} big-data key {key:?}")),
                "{err}"
            );
        }
        for (owner, key) in [
            (BigDataOwner::Layer, "userdata"),
            (BigDataOwner::Image, "userdata"),
            (BigDataOwner::Container, "Userdata"),
            (BigDataOwner::Container, "userdata/x"),
            (BigDataOwner::Image, "..."),
            (BigDataOwner::Image, ".tmp"),
            (BigDataOwner::Image, ".tmp-x"),
            (BigDataOwner::Image, "a/b"),
            (BigDataOwner::Image, "abC"),
        ] {
            assert!(check_big_data_key(owner, key).is_ok(), "{owner} {key:?}");
        }
    }
}
