//! The 64-byte "last writer" token stored in a lock file.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Size in bytes of a last-writer token (Go: `lastWriterIDSize`).
pub const TOKEN_LEN: usize = 64;

/// Number of random bytes at the end of a token.
pub const TOKEN_RANDOM_LEN: usize = TOKEN_LEN - 20;

/// Per-process counter, incremented for every generated token (Go: `lastWriterIDCounter`).
static TOKEN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The decoded fields of a full 64-byte last-writer token, as Go lays them out
/// (`pkg/lockfile/lastwrite.go`).
///
/// | bytes  | field |
/// |--------|-------|
/// | 0..8   | `time.Now().UnixNano()`, little-endian (stored as `u64`) |
/// | 8..16  | per-process counter, little-endian `u64` |
/// | 16..20 | process id, little-endian `u32` |
/// | 20..64 | 44 random bytes |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Nanoseconds since the Unix epoch when the token was made (Go casts `int64` to `u64`).
    pub unix_nanos: u64,
    /// Value of the writer's per-process counter.
    pub counter: u64,
    /// Process id of the writer.
    pub pid: u32,
    /// Random bytes that make the token unique across processes and hosts.
    pub random: [u8; TOKEN_RANDOM_LEN],
}

impl Token {
    /// Makes a fresh token for this process: current time, next counter value, our pid and
    /// random bytes from the kernel.
    pub(crate) fn generate() -> std::io::Result<Self> {
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // Go uses atomic.AddUint64, whose first result is 1.
        let counter = TOKEN_COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let pid = std::process::id();
        let mut random = [0u8; TOKEN_RANDOM_LEN];
        fill_random(&mut random)?;
        Ok(Token {
            unix_nanos,
            counter,
            pid,
            random,
        })
    }

    /// The 64 bytes written to the lock file.
    pub fn to_bytes(&self) -> [u8; TOKEN_LEN] {
        let mut out = [0u8; TOKEN_LEN];
        out[0..8].copy_from_slice(&self.unix_nanos.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
        out[16..20].copy_from_slice(&self.pid.to_le_bytes());
        out[20..].copy_from_slice(&self.random);
        out
    }

    /// Decodes 64 bytes read from a lock file.
    pub fn from_bytes(bytes: &[u8; TOKEN_LEN]) -> Self {
        let (time, rest) = bytes.split_at(8);
        let (counter, rest) = rest.split_at(8);
        let (pid, random) = rest.split_at(4);
        let mut random_bytes = [0u8; TOKEN_RANDOM_LEN];
        random_bytes.copy_from_slice(random);
        Token {
            unix_nanos: u64::from_le_bytes(time.try_into().unwrap_or_default()),
            counter: u64::from_le_bytes(counter.try_into().unwrap_or_default()),
            pid: u32::from_le_bytes(pid.try_into().unwrap_or_default()),
            random: random_bytes,
        }
    }

    /// When the token was made, as a [`SystemTime`].
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_nanos(self.unix_nanos)
    }
}

/// Fills `buf` from the kernel's random pool (`getrandom(2)`, like Go's `crypto/rand`).
fn fill_random(mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match rustix::rand::getrandom(&mut *buf, rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What a lock file held when it was last read or written: an opaque value to compare with
/// a later one (Go: `lockfile.LastWrite`).
///
/// Usually a full 64-byte [`Token`]; shorter (possibly empty) when the file had fewer bytes,
/// e.g. a lock file nobody has written yet. Two values are equal exactly when the bytes read
/// were equal, so an empty file compared with an empty file is "not modified", as in Go's
/// `ModifiedSince`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LastWrite {
    /// Bytes read; those past `len` are always zero, so the derived equality is byte equality.
    bytes: [u8; TOKEN_LEN],
    len: u8,
}

impl LastWrite {
    /// Wraps the `len` first bytes of `bytes`, zeroing the rest.
    pub(crate) fn from_read(mut bytes: [u8; TOKEN_LEN], len: usize) -> Self {
        let len = len.min(TOKEN_LEN);
        bytes[len..].fill(0);
        LastWrite {
            bytes,
            // TOKEN_LEN is 64, so this cannot truncate.
            len: len as u8,
        }
    }

    /// The value of a freshly written token.
    pub(crate) fn from_token(token: &Token) -> Self {
        LastWrite {
            bytes: token.to_bytes(),
            len: TOKEN_LEN as u8,
        }
    }

    /// The bytes read from (or written to) the lock file, at most 64.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether this is a full 64-byte token (a lock file that has been written once holds one).
    pub fn is_complete(&self) -> bool {
        usize::from(self.len) == TOKEN_LEN
    }

    /// The decoded token, when all 64 bytes were present.
    pub fn token(&self) -> Option<Token> {
        self.is_complete().then(|| Token::from_bytes(&self.bytes))
    }
}

impl fmt::Debug for LastWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.token() {
            Some(t) => f
                .debug_struct("LastWrite")
                .field("unix_nanos", &t.unix_nanos)
                .field("counter", &t.counter)
                .field("pid", &t.pid)
                .finish_non_exhaustive(),
            None => f
                .debug_struct("LastWrite")
                .field("short_len", &self.len)
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_go_observation() {
        // Token observed on disk from the Go tool (docs §3.1): time, counter 9, pid 0x14ad.
        let mut bytes = [0u8; TOKEN_LEN];
        bytes[..8].copy_from_slice(&[0x36, 0x1a, 0xd2, 0x0c, 0x0d, 0x01, 0xec, 0x18]);
        bytes[8] = 9;
        bytes[16] = 0xad;
        bytes[17] = 0x14;
        bytes[20..].fill(0x5a);
        let token = Token::from_bytes(&bytes);
        assert_eq!(token.counter, 9);
        assert_eq!(token.pid, 0x14ad);
        assert_eq!(token.unix_nanos, 0x18ec_010d_0cd2_1a36);
        assert_eq!(token.random, [0x5a; TOKEN_RANDOM_LEN]);
        assert_eq!(token.to_bytes(), bytes);
    }

    #[test]
    fn generated_tokens_are_ours_recent_and_counted() {
        let before = SystemTime::now();
        let a = Token::generate().expect("getrandom");
        let b = Token::generate().expect("getrandom");
        assert_eq!(a.pid, std::process::id());
        assert!(b.counter > a.counter);
        assert!(a.time() >= before - std::time::Duration::from_secs(1));
        assert!(a.time() <= SystemTime::now());
        assert_ne!(a.random, b.random);
    }

    #[test]
    fn short_reads_compare_by_bytes() {
        let empty = LastWrite::from_read([7u8; TOKEN_LEN], 0);
        assert_eq!(empty, LastWrite::from_read([0u8; TOKEN_LEN], 0));
        assert!(empty.as_bytes().is_empty());
        assert!(empty.token().is_none());
        let partial = LastWrite::from_read([7u8; TOKEN_LEN], 3);
        assert_eq!(partial.as_bytes(), &[7, 7, 7]);
        assert_ne!(partial, empty);
        let full = LastWrite::from_read([7u8; TOKEN_LEN], TOKEN_LEN);
        assert!(full.is_complete());
        assert_eq!(full.token().map(|t| t.pid), Some(0x0707_0707));
    }
}
