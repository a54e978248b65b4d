//! [`Digest`]: a content digest such as `sha256:<64 hex>`, as go-digest writes it.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::error::{Error, Result};

/// A hash algorithm a [`Digest`] may name: the ones go-digest registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// `sha256`, 64 hex characters: what containers/storage computes.
    Sha256,
    /// `sha384`, 96 hex characters.
    Sha384,
    /// `sha512`, 128 hex characters.
    Sha512,
}

impl DigestAlgorithm {
    /// Every algorithm go-digest registers, as podman links them.
    pub const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
    ];

    /// The name written before the colon, e.g. `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hash in bytes (half the number of hex characters).
    pub fn size(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
            DigestAlgorithm::Sha512 => 64,
        }
    }

    fn from_name(name: &str) -> Option<DigestAlgorithm> {
        match name {
            "sha256" => Some(DigestAlgorithm::Sha256),
            "sha384" => Some(DigestAlgorithm::Sha384),
            "sha512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated digest `algorithm:hex`, e.g.
/// `sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`.
///
/// The hex part must be lowercase and exactly as long as the algorithm's hash. Held as the
/// full text, so [`Digest::as_str`] and serialization do not allocate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: Box<str>,
    algorithm: DigestAlgorithm,
}

impl Digest {
    /// The digest of a finished hash, e.g. the 32 bytes of a SHA-256.
    ///
    /// Errors if `hash` is not `algorithm.size()` bytes long.
    pub fn from_hash(algorithm: DigestAlgorithm, hash: &[u8]) -> Result<Digest> {
        if hash.len() != algorithm.size() {
            return Err(Error::InvalidDigest {
                digest: format!("{algorithm}:<{} bytes>", hash.len()),
                reason: format!("{algorithm} hashes are {} bytes", algorithm.size()),
            });
        }
        let mut text = String::with_capacity(algorithm.name().len() + 1 + 2 * hash.len());
        text.push_str(algorithm.name());
        text.push(':');
        crate::id::push_hex(&mut text, hash);
        Ok(Digest {
            text: text.into_boxed_str(),
            algorithm,
        })
    }

    /// The algorithm before the colon.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// The whole text, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn validate(text: &str) -> Result<DigestAlgorithm> {
        let invalid = |reason: String| Error::InvalidDigest {
            digest: text.to_owned(),
            reason,
        };
        let (name, hex) = text
            .split_once(':')
            .ok_or_else(|| invalid("expected algorithm:hex".to_owned()))?;
        let algorithm = DigestAlgorithm::from_name(name).ok_or_else(|| {
            invalid(format!(
                "unsupported digest algorithm {name:?} (supported: sha256, sha384, sha512)"
            ))
        })?;
        let expected_len = 2 * algorithm.size();
        if hex.len() != expected_len {
            return Err(invalid(format!(
                "{algorithm} needs {expected_len} hex characters, found {}",
                hex.len()
            )));
        }
        if let Some(bad) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(invalid(format!("{bad:?} is not a lowercase hex character")));
        }
        Ok(algorithm)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Digest> {
        let algorithm = Digest::validate(text)?;
        Ok(Digest {
            text: text.into(),
            algorithm,
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;

    fn try_from(text: String) -> Result<Digest> {
        let algorithm = Digest::validate(&text)?;
        Ok(Digest {
            text: text.into_boxed_str(),
            algorithm,
        })
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct DigestVisitor;
        impl Visitor<'_> for DigestVisitor {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest string such as \"sha256:<64 hex>\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Digest, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Digest, E> {
                Digest::try_from(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DigestVisitor)
    }
}

/// An incremental SHA-256 whose result is a [`Digest`]: the one way the crates hash content
/// (layer streams, big data, records, partial pulls). Also an [`io::Write`](std::io::Write)
/// sink, so `io::copy` can feed it.
#[derive(Debug, Clone, Default)]
pub struct Sha256Hasher {
    state: sha2::Sha256,
}

impl Sha256Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Sha256Hasher::default()
    }

    /// Hashes `bytes` after what came before.
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.state, bytes);
    }

    /// The digest of everything hashed so far.
    pub fn finish(self) -> Digest {
        let hash = sha2::Digest::finalize(self.state);
        Digest::from_hash(DigestAlgorithm::Sha256, &hash)
            .unwrap_or_else(|_| unreachable!("a SHA-256 hash is 32 bytes"))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn digest(bytes: &[u8]) -> Digest {
        let mut hasher = Sha256Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The SHA-256 digest of everything `input` yields.
    pub fn digest_reader(input: &mut dyn std::io::Read) -> std::io::Result<Digest> {
        let mut hasher = Sha256Hasher::new();
        std::io::copy(input, &mut hasher)?;
        Ok(hasher.finish())
    }
}

impl std::io::Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// go-digest's `Digest.Validate`, with its error texts as the reason: `algorithm:encoded`,
/// an algorithm of `linked` (the hashes the Go program links: all three in podman, only
/// sha256 in the `containers-storage` tool), the hash's length of lowercase hex. An
/// algorithm the program does not link is `unsupported digest algorithm` whatever its hex,
/// as long as the text has the digest grammar.
pub fn validate_go_digest(
    text: &str,
    linked: &[DigestAlgorithm],
) -> std::result::Result<Digest, &'static str> {
    const FORMAT: &str = "invalid checksum digest format";
    let Some((name, encoded)) = text.split_once(':') else {
        return Err(FORMAT);
    };
    if name.is_empty() || encoded.is_empty() {
        return Err(FORMAT);
    }
    let Some(algorithm) = DigestAlgorithm::from_name(name).filter(|a| linked.contains(a)) else {
        // `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`, else a format error.
        let component_ok = name.split(['.', '+', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        let encoded_ok = encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        return Err(if component_ok && encoded_ok {
            "unsupported digest algorithm"
        } else {
            FORMAT
        });
    };
    if encoded.len() != 2 * algorithm.size() {
        return Err("invalid checksum digest length");
    }
    if !encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(FORMAT);
    }
    Ok(Digest {
        text: text.into(),
        algorithm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hasher_gives_the_well_known_digests() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Sha256Hasher::new().finish().as_str(), empty);
        assert_eq!(Sha256Hasher::digest(b"").as_str(), empty);
        let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let mut pieces = Sha256Hasher::new();
        pieces.update(b"a");
        pieces.update(b"bc");
        assert_eq!(pieces.finish().as_str(), abc);
        assert_eq!(
            Sha256Hasher::digest_reader(&mut &b"abc"[..])
                .expect("reads")
                .as_str(),
            abc
        );
    }

    #[test]
    fn go_digest_validation_texts() {
        let hex = "0123456789abcdef".repeat(8);
        assert!(
            validate_go_digest(&format!("sha256:{}", &hex[..64]), &DigestAlgorithm::ALL).is_ok()
        );
        assert!(
            validate_go_digest(&format!("sha384:{}", &hex[..96]), &DigestAlgorithm::ALL).is_ok()
        );
        assert!(validate_go_digest(&format!("sha512:{hex}"), &DigestAlgorithm::ALL).is_ok());
        for (text, reason) in [
            ("bogus", "invalid checksum digest format"),
            (":abc", "invalid checksum digest format"),
            ("sha256:", "invalid checksum digest format"),
            ("sha256:abc", "invalid checksum digest length"),
            (
                &format!("sha256:{}", "A".repeat(64)),
                "invalid checksum digest format",
            ),
            ("md5:abcd", "unsupported digest algorithm"),
            ("my.algo+x:AZaz09=_-", "unsupported digest algorithm"),
            ("My:abcd", "invalid checksum digest format"),
            ("a..b:abcd", "invalid checksum digest format"),
            ("md5:ab/cd", "invalid checksum digest format"),
        ] {
            assert_eq!(
                validate_go_digest(text, &DigestAlgorithm::ALL).unwrap_err(),
                reason,
                "{text}"
            );
        }
    }

    /// The Go tool links only sha256: other algorithms are unsupported whatever their hex,
    /// as `images-by-digest` says.
    #[test]
    fn go_digest_validation_with_only_sha256_linked() {
        let only_sha256 = [DigestAlgorithm::Sha256];
        let hex = "0123456789abcdef".repeat(8);
        assert!(validate_go_digest(&format!("sha256:{}", &hex[..64]), &only_sha256).is_ok());
        for (text, reason) in [
            ("sha256:1234", "invalid checksum digest length"),
            ("foo:bar", "unsupported digest algorithm"),
            ("sha512:abc", "unsupported digest algorithm"),
            (&format!("sha512:{hex}"), "unsupported digest algorithm"),
            (
                &format!("sha384:{}", &hex[..96]),
                "unsupported digest algorithm",
            ),
            ("sha512:ab/c", "invalid checksum digest format"),
            ("not-a-digest", "invalid checksum digest format"),
        ] {
            assert_eq!(
                validate_go_digest(text, &only_sha256).unwrap_err(),
                reason,
                "{text}"
            );
        }
    }

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_valid_digests() {
        let sha512 = "a".repeat(128);
        let sha384 = "0".repeat(96);
        for (text, algorithm, hex) in [
            (
                format!("sha256:{EMPTY_SHA256}"),
                DigestAlgorithm::Sha256,
                EMPTY_SHA256,
            ),
            (
                format!("sha384:{sha384}"),
                DigestAlgorithm::Sha384,
                sha384.as_str(),
            ),
            (
                format!("sha512:{sha512}"),
                DigestAlgorithm::Sha512,
                sha512.as_str(),
            ),
        ] {
            let digest: Digest = text.parse().unwrap();
            assert_eq!(digest.algorithm(), algorithm);
            assert_eq!(digest.hex(), hex);
            assert_eq!(digest.as_str(), text);
            assert_eq!(digest.to_string(), text);
            assert_eq!(Digest::try_from(text.clone()).unwrap(), digest);
            let json = serde_json::to_string(&digest).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        }
    }

    #[test]
    fn rejects_invalid_digests_with_a_reason() {
        let table: &[(String, &str)] = &[
            (String::new(), "expected algorithm:hex"),
            (EMPTY_SHA256.to_owned(), "expected algorithm:hex"),
            (
                format!("md5:{}", "0".repeat(32)),
                "unsupported digest algorithm \"md5\"",
            ),
            (
                format!("SHA256:{EMPTY_SHA256}"),
                "unsupported digest algorithm \"SHA256\"",
            ),
            (
                format!(":{EMPTY_SHA256}"),
                "unsupported digest algorithm \"\"",
            ),
            (
                "sha256:".to_owned(),
                "sha256 needs 64 hex characters, found 0",
            ),
            (
                format!("sha256:{EMPTY_SHA256}0"),
                "needs 64 hex characters, found 65",
            ),
            (format!("sha256:{}", &EMPTY_SHA256[1..]), "found 63"),
            (
                format!("sha256:{}", EMPTY_SHA256.to_uppercase()),
                "'E' is not a lowercase hex",
            ),
            (
                format!("sha256:{}g", &EMPTY_SHA256[1..]),
                "'g' is not a lowercase hex",
            ),
            (
                format!("sha512:{EMPTY_SHA256}"),
                "sha512 needs 128 hex characters, found 64",
            ),
            (
                format!("sha256:{}é", &EMPTY_SHA256[2..]),
                "'é' is not a lowercase hex",
            ),
        ];
        for (text, reason) in table {
            let err = text.parse::<Digest>().expect_err(text).to_string();
            assert!(err.contains(&format!("{text:?}")), "{err}");
            assert!(err.contains(reason), "{err} lacks {reason}");
            let json = serde_json::to_string(text).unwrap();
            let err = serde_json::from_str::<Digest>(&json)
                .expect_err(text)
                .to_string();
            assert!(err.contains(reason), "{err} lacks {reason}");
        }
    }

    #[test]
    fn from_hash_writes_lowercase_hex() {
        let hash: Vec<u8> = (0..32).collect();
        let digest = Digest::from_hash(DigestAlgorithm::Sha256, &hash).unwrap();
        assert_eq!(
            digest.as_str(),
            "sha256:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(digest.as_str().parse::<Digest>().unwrap(), digest);
        let err = Digest::from_hash(DigestAlgorithm::Sha512, &hash).unwrap_err();
        assert!(
            err.to_string().contains("sha512 hashes are 64 bytes"),
            "{err}"
        );
    }
}
