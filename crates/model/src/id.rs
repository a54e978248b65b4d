//! Layer IDs: generating random ones the way containers/storage does, and checking that a
//! caller-given one is safe to use as a file name.

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
    fn hex_encoding() {
        let mut out = String::from("x");
        push_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "x000fa5ff");
    }
}
