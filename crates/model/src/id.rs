//! Layer IDs: generating random ones the way containers/storage does, the store's rule for
//! the IDs it accepts and builds paths from ([`validate_store_id`]), and the weaker check that
//! a string can name a file at all ([`validate_id`]).

use rustix::io::Errno;
use rustix::rand::{GetRandomFlags, getrandom};

use crate::error::{Error, Result};

/// How many random candidates [`generate_id_unused`] tries before giving up. With 256 random
/// bits a second try is already astronomically unlikely; the bound only stops a `taken` closure
/// that answers `true` for everything from looping forever.
const MAX_ID_ATTEMPTS: usize = 1000;

/// A new random layer ID: 64 lowercase hex characters from 32 bytes of the kernel's random
/// number generator (`getrandom(2)`), as Go's `stringid.GenerateRandomID`.
///
/// Like Go, it draws again when the first 12 characters (the short ID) are all decimal digits,
/// since such a short ID reads as a number (and is not a valid host name).
pub fn generate_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    loop {
        fill_random(&mut bytes)?;
        let mut id = String::with_capacity(64);
        push_hex(&mut id, &bytes);
        if !id.as_bytes()[..12].iter().all(u8::is_ascii_digit) {
            return Ok(id);
        }
    }
}

/// A new random layer ID (see [`generate_id`]) for which `taken` answers `false`.
///
/// The store passes a closure that looks the candidate up among its IDs (and names), as Go's
/// `create` does. Gives up with [`Error::NoUnusedId`] after 1000 taken candidates.
pub fn generate_id_unused(mut taken: impl FnMut(&str) -> bool) -> Result<String> {
    for _ in 0..MAX_ID_ATTEMPTS {
        let id = generate_id()?;
        if !taken(&id) {
            return Ok(id);
        }
    }
    Err(Error::NoUnusedId(MAX_ID_ATTEMPTS))
}

/// Checks that a caller-given layer ID can name files and directories (`<id>.tar-split.gz`,
/// `<id>/`, the driver's `<id>` directory) without escaping them.
///
/// Go accepts any string (e.g. `layer-gzip`); this rejects only what would be a path rather
/// than a name: the empty string, `.`, `..`, and anything containing `/` or NUL.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = match id {
        "" => "an ID must not be empty",
        "." | ".." => "an ID must not be \".\" or \"..\"",
        _ if id.contains('/') => "an ID must not contain '/'",
        _ if id.contains('\0') => "an ID must not contain NUL",
        _ => return Ok(()),
    };
    Err(Error::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// The longest ID [`validate_store_id`] accepts: `.<id>.tar-split.gz.tmp`, the longest name
/// the store makes from an ID, must still fit a file name (255 bytes).
pub const MAX_ID_LEN: usize = 237;

/// Endings of the names the stores give their own files beside the ones named by IDs
/// (`layers.json`, `layers.lock`, `mountpoints.json`, `mountpoints.lock`, `images.json`,
/// `containers.lock`, `volatile-layers.json`, `<id>.tar-split.gz`, temp files): no ID may end
/// with one.
pub const RESERVED_ID_SUFFIXES: &[&str] = &[".json", ".lock", ".tar-split.gz", ".tmp"];

/// Names a store directory keeps for itself that no suffix covers (`<driver>-layers/tmp/`,
/// newer Go's staging area).
pub const RESERVED_IDS: &[&str] = &["tmp"];

/// The store's rule for IDs: what a caller may give a new layer (and, later, image or
/// container), and what an ID read from a record must satisfy before the store builds a path
/// from it.
///
/// An ID is `[A-Za-z0-9][A-Za-z0-9._-]*`, at most [`MAX_ID_LEN`] bytes, and never a name the
/// store gives its own files ([`RESERVED_ID_SUFFIXES`], [`RESERVED_IDS`]): `create-layer --id
/// layers.json` would make `<driver>-layers/layers.json` both the records and the layer's
/// big-data directory. Random IDs (64 lowercase hex characters, as podman writes them) always
/// pass. Go accepts any string; its stores may hold records this rule refuses, which the store
/// loads and lists but whose files it does not touch.
///
/// [`validate_id`] is the weaker check of what can name a file at all.
pub fn validate_store_id(id: &str) -> Result<()> {
    let reason = match id.as_bytes() {
        [] => "an ID must not be empty",
        [first, ..] if !first.is_ascii_alphanumeric() => {
            "an ID must start with a letter or a digit"
        }
        bytes
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            "an ID may hold only letters, digits, '.', '_' and '-'"
        }
        bytes if bytes.len() > MAX_ID_LEN => "an ID must be at most 237 bytes long",
        _ if RESERVED_IDS.contains(&id) || RESERVED_ID_SUFFIXES.iter().any(|s| id.ends_with(s)) => {
            "the store names its own files so"
        }
        _ => return Ok(()),
    };
    Err(Error::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// Fills `buf` from `getrandom(2)`, retrying short reads and interruptions.
fn fill_random(buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match getrandom(&mut buf[filled..], GetRandomFlags::empty()) {
            Ok(count) => filled += count,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(Error::Random(errno)),
        }
    }
    Ok(())
}

/// Appends the lowercase hex form of `bytes` to `out`.
/// Lowercase hex of `bytes`, two characters a byte: the one hex encoder of the workspace
/// (digests, IDs, random names).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_look_like_gos() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let id = generate_id().unwrap();
            assert_eq!(id.len(), 64);
            assert!(
                id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
            assert!(!id[..12].bytes().all(|b| b.is_ascii_digit()), "{id}");
            validate_id(&id).unwrap();
            assert!(seen.insert(id), "random IDs repeated");
        }
    }

    #[test]
    fn unused_ids_skip_taken_candidates() {
        let mut offered = Vec::new();
        let id = generate_id_unused(|candidate| {
            offered.push(candidate.to_owned());
            offered.len() < 3
        })
        .unwrap();
        assert_eq!(offered.len(), 3);
        assert_eq!(offered[2], id);
        assert_ne!(offered[0], offered[1]);
        let err = generate_id_unused(|_| true).unwrap_err();
        assert!(matches!(err, Error::NoUnusedId(1000)), "{err}");
    }

    #[test]
    fn validation_rejects_paths_and_names_the_id() {
        for id in [
            "layer-gzip",
            "fixture-id-vfs",
            "a",
            "...",
            "a b",
            "é",
            ".hidden",
            "a\\b",
        ] {
            validate_id(id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
        }
        for (id, reason) in [
            ("", "empty"),
            (".", "\".\" or \"..\""),
            ("..", "\".\" or \"..\""),
            ("../etc", "'/'"),
            ("a/b", "'/'"),
            ("/", "'/'"),
            ("a\0b", "NUL"),
        ] {
            let err = validate_id(id).unwrap_err().to_string();
            assert!(err.contains(&format!("{id:?}")), "{err}");
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn the_store_rule_takes_random_and_plain_ids_and_refuses_its_own_names() {
        let random = generate_id().unwrap();
        for id in [
            random.as_str(),
            "layer-gzip",
            "fixture-id-vfs",
            "a",
            "A.b_c-9",
            "0",
            "layers",
            "layers.json.x",
            "x.tar-split",
            "tmpdir",
        ] {
            validate_store_id(id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for (id, reason) in [
            ("", "empty"),
            (".hidden", "start with"),
            ("-x", "start with"),
            ("_x", "start with"),
            ("..", "start with"),
            ("a b", "only letters"),
            ("a/b", "only letters"),
            ("x,upperdir=up,workdir=wk", "only letters"),
            ("a:b", "only letters"),
            ("é", "start with"),
            ("aé", "only letters"),
            ("a\0b", "only letters"),
            (long.as_str(), "at most 237"),
            ("layers.json", "its own files"),
            ("layers.lock", "its own files"),
            ("mountpoints.json", "its own files"),
            ("mountpoints.lock", "its own files"),
            ("volatile-layers.json", "its own files"),
            ("images.json", "its own files"),
            ("abc.tar-split.gz", "its own files"),
            ("abc.tmp", "its own files"),
            ("tmp", "its own files"),
        ] {
            let err = validate_store_id(id).unwrap_err().to_string();
            assert!(err.contains(reason), "{id:?}: {err}");
        }
        assert!(validate_store_id(&"a".repeat(MAX_ID_LEN)).is_ok());
        // Everything the store rule takes can name a file.
        assert!(validate_id(&random).is_ok() && validate_id("layer-gzip").is_ok());
    }

    proptest::proptest! {
        /// Whatever the rule accepts is a file name that no store file of a layer can collide
        /// with: `<id>.tar-split.gz`, `.<id>.tar-split.gz.tmp` and `<id>/` fit in 255 bytes,
        /// and none equals a reserved name.
        #[test]
        fn accepted_ids_are_safe_file_names(id in "[A-Za-z0-9._-]{0,250}") {
            if validate_store_id(&id).is_ok() {
                proptest::prop_assert!(validate_id(&id).is_ok());
                let longest = format!(".{id}.tar-split.gz.tmp");
                proptest::prop_assert!(longest.len() <= 255, "{}", longest);
                for reserved in ["layers.json", "layers.lock", "mountpoints.json", "mountpoints.lock", "tmp"] {
                    proptest::prop_assert_ne!(id.as_str(), reserved);
                    proptest::prop_assert_ne!(format!("{id}.tar-split.gz"), reserved);
                }
            }
        }
    }

    #[test]
    fn hex_encoding() {
        let mut out = String::from("x");
        push_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "x000fa5ff");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }
}
