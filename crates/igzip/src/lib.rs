//! gzip with ISA-L (`libisal`): a safe streaming reader over its inflate, and a writer over
//! its level-1 deflate ([`GzEncoder`]).
//!
//! On this project's layers ISA-L inflates about 1.4× faster than zlib-rs (rootfs.tar.gz:
//! 160 against 232 ms of CPU), and inflate is the critical path of importing or pulling a gzip
//! layer. The build script compiles a small C shim against the installed header (Debian:
//! `libisal-dev`); where there is none, the crate still builds, [`AVAILABLE`] is false and
//! [`MultiGzDecoder::new`] returns [`Error::Unavailable`], so callers keep another inflater
//! as the fallback (layerstore-archive keeps flate2 with zlib-rs).
//!
//! # Contract
//!
//! The same as flate2's `bufread::MultiGzDecoder`:
//! - members are decoded one after another until the input ends exactly after one;
//! - each member's header is parsed (FEXTRA, FNAME, FCOMMENT and FHCRC included), and its
//!   CRC-32 and size are checked against the decoded bytes;
//! - a stream that ends inside a member, bytes after a member that do not start another, a bad
//!   header, bad deflate data or a wrong check fail with an [`Error`], carried in an
//!   [`io::Error`] of kind `InvalidData` (`UnexpectedEof` when truncated) that names the
//!   member.
//!
//! ISA-L's state lives on the C side (`csrc/igzip.c`), so this crate never depends on the
//! layout of `struct inflate_state`, which changes between ISA-L releases.
//!
//! # Example
//!
//! ```
//! use std::io::Read;
//!
//! // "hi\n", as `printf 'hi\n' | gzip -n` writes it.
//! let gz: &[u8] = &[
//!     0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xcb, 0xc8, 0xe4, 2, 0, 0x7a, 0x7a, 0x6f, 0xed, 3,
//!     0, 0, 0,
//! ];
//! match layerstore_igzip::MultiGzDecoder::new(gz) {
//!     Ok(mut decoder) => {
//!         let mut text = String::new();
//!         decoder.read_to_string(&mut text)?;
//!         assert_eq!(text, "hi\n");
//!     }
//!     // Built without libisal: use another inflater.
//!     Err(layerstore_igzip::Error::Unavailable) => assert!(!layerstore_igzip::AVAILABLE),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufRead, Read};

mod deflate;
pub use deflate::GzEncoder;

/// Whether this build has ISA-L (the build script found `libisal`'s header).
pub const AVAILABLE: bool = cfg!(igzip);

/// What went wrong while inflating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This build has no ISA-L ([`AVAILABLE`] is false).
    #[error("this build has no ISA-L (libisal-dev was not installed when it was built)")]
    Unavailable,
    /// The C side could not allocate an inflate state.
    #[error("gzip: no memory for an ISA-L inflate state")]
    NoMemory,
    /// The stream is not valid gzip.
    #[error("gzip: {what} (member {member}, ISA-L code {code})")]
    Corrupt {
        /// What ISA-L found wrong.
        what: &'static str,
        /// The member it was in, from 1.
        member: u64,
        /// `isal_inflate`'s return code.
        code: i32,
    },
    /// ISA-L's deflate refused to go on (`isal_deflate`'s return code; 0 when it stopped
    /// making progress before the end).
    #[error("gzip: ISA-L deflate failed (code {code})")]
    Deflate {
        /// `isal_deflate`'s return code.
        code: i32,
    },
    /// The stream ends inside a member.
    #[error("gzip: the stream ends inside member {member} (truncated)")]
    Truncated {
        /// The member it ends in, from 1.
        member: u64,
    },
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e {
            Error::Unavailable => io::ErrorKind::Unsupported,
            Error::NoMemory => io::ErrorKind::OutOfMemory,
            Error::Corrupt { .. } => io::ErrorKind::InvalidData,
            Error::Deflate { .. } => io::ErrorKind::Other,
            Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
        };
        io::Error::new(kind, e)
    }
}

/// What `isal_inflate`'s return code `code` means (igzip_lib.h).
fn corruption(code: i32) -> &'static str {
    match code {
        -1 => "invalid deflate block",
        -2 => "invalid deflate symbol",
        -3 => "invalid back-reference distance",
        -4 => "invalid gzip header",
        -5 => "the gzip header names a compression method other than deflate",
        -6 => "CRC-32 or size in the gzip trailer does not match the data",
        6 => "the stream asks for a preset dictionary, which gzip does not have",
        _ => "ISA-L inflate failed",
    }
}

#[cfg(igzip)]
mod ffi {
    //! The shim's functions, and the one owner of an inflate state.

    use std::ffi::c_int;
    use std::ptr::NonNull;

    /// ISA-L's `struct inflate_state`, only ever behind a pointer.
    #[repr(C)]
    struct InflateState {
        _opaque: [u8; 0],
    }

    unsafe extern "C" {
        fn layerstore_igzip_new() -> *mut InflateState;
        fn layerstore_igzip_reset(state: *mut InflateState);
        fn layerstore_igzip_free(state: *mut InflateState);
        fn layerstore_igzip_inflate(
            state: *mut InflateState,
            input: *const u8,
            in_len: u32,
            out: *mut u8,
            out_len: u32,
            consumed: *mut u32,
            produced: *mut u32,
            member_end: *mut c_int,
        ) -> c_int;
    }

    /// One ISA-L inflate state (about 40 KiB, on the C heap), set to parse gzip members.
    pub(crate) struct State(NonNull<InflateState>);

    // SAFETY: the state is plain memory owned by this value alone; ISA-L keeps no global or
    // thread-local reference to it.
    unsafe impl Send for State {}

    impl State {
        pub(crate) fn new() -> Result<State, super::Error> {
            // SAFETY: no arguments; returns a fresh state, or null when malloc fails.
            let raw = unsafe { layerstore_igzip_new() };
            NonNull::new(raw).map(State).ok_or(super::Error::NoMemory)
        }

        /// Ready for the next member.
        pub(crate) fn reset(&mut self) {
            // SAFETY: a live state from layerstore_igzip_new, owned by self.
            unsafe { layerstore_igzip_reset(self.0.as_ptr()) }
        }

        /// One inflate call: (return code, input consumed, output produced, member ended).
        pub(crate) fn inflate(
            &mut self,
            input: &[u8],
            out: &mut [u8],
        ) -> (i32, usize, usize, bool) {
            // ISA-L counts in 32 bits; what is left over goes in the next call.
            let in_len = u32::try_from(input.len()).unwrap_or(u32::MAX);
            let out_len = u32::try_from(out.len()).unwrap_or(u32::MAX);
            let (mut consumed, mut produced, mut member_end) = (0u32, 0u32, 0 as c_int);
            // SAFETY: the state is live and owned by self; `input` is readable for in_len
            // bytes and `out` writable for out_len bytes during the call, and neither pointer
            // is kept past it (the shim sets both again on every call).
            let code = unsafe {
                layerstore_igzip_inflate(
                    self.0.as_ptr(),
                    input.as_ptr(),
                    in_len,
                    out.as_mut_ptr(),
                    out_len,
                    &mut consumed,
                    &mut produced,
                    &mut member_end,
                )
            };
            (code, consumed as usize, produced as usize, member_end != 0)
        }
    }

    impl Drop for State {
        fn drop(&mut self) {
            // SAFETY: the state came from layerstore_igzip_new and is freed once, here.
            unsafe { layerstore_igzip_free(self.0.as_ptr()) }
        }
    }
}

#[cfg(not(igzip))]
mod ffi {
    //! No ISA-L in this build: a state can never be made.

    /// Uninhabited: [`State::new`] always fails.
    pub(crate) enum State {}

    impl State {
        pub(crate) fn new() -> Result<State, super::Error> {
            Err(super::Error::Unavailable)
        }

        pub(crate) fn reset(&mut self) {
            match *self {}
        }

        pub(crate) fn inflate(&mut self, _: &[u8], _: &mut [u8]) -> (i32, usize, usize, bool) {
            match *self {}
        }
    }
}

/// Where the decoder is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Inside a member (or at the very start, where a member must follow).
    InMember,
    /// Just after a member's trailer: the input may end here, or another member starts.
    BetweenMembers,
    /// The input ended after a member.
    Done,
}

/// Decompresses a (multi-member) gzip stream read from `input`; see the [crate docs](crate).
pub struct MultiGzDecoder<R> {
    input: R,
    state: ffi::State,
    position: Position,
    /// Members finished so far, for error messages.
    members: u64,
}

impl<R: BufRead> MultiGzDecoder<R> {
    /// A decoder of the gzip stream `input`; [`Error::Unavailable`] in a build without ISA-L.
    pub fn new(input: R) -> Result<Self, Error> {
        Ok(MultiGzDecoder {
            input,
            state: ffi::State::new()?,
            position: Position::InMember,
            members: 0,
        })
    }

    /// The input, positioned just after the last member read (or wherever an error stopped).
    pub fn into_inner(self) -> R {
        self.input
    }
}

impl<R: BufRead> Read for MultiGzDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.position {
                Position::Done => return Ok(0),
                Position::BetweenMembers => {
                    if self.input.fill_buf()?.is_empty() {
                        self.position = Position::Done;
                        return Ok(0);
                    }
                    // More bytes: they must be another member (ISA-L checks its header).
                    self.state.reset();
                    self.position = Position::InMember;
                }
                Position::InMember => {}
            }
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let (code, consumed, produced, member_end) = self.state.inflate(input, out);
            self.input.consume(consumed);
            if code < 0 || code == 6 {
                return Err(Error::Corrupt {
                    what: corruption(code),
                    member: self.members + 1,
                    code,
                }
                .into());
            }
            if member_end {
                self.members += 1;
                self.position = Position::BetweenMembers;
            }
            if produced > 0 {
                return Ok(produced);
            }
            if at_end && !member_end {
                return Err(Error::Truncated {
                    member: self.members + 1,
                }
                .into());
            }
        }
    }
}

/// CI builds with libisal-dev installed (`.ci/run`); elsewhere a build without it is allowed.
#[cfg(test)]
#[test]
fn isal_is_built_where_ci_requires_it() {
    if AVAILABLE {
        return;
    }
    let required = std::env::var_os("LAYERSTORE_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1");
    assert!(
        !required,
        "LAYERSTORE_REQUIRE_PRIVILEGED=1 but this build has no ISA-L: install libisal-dev"
    );
    eprintln!("skipped: this build has no ISA-L (install libisal-dev); gzip uses zlib-rs");
}

#[cfg(all(test, igzip))]
mod tests {
    use super::*;
    use flate2::Compression as Level;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(data: &[u8], level: u32) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Level::new(level));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn inflate_all(gz: &[u8], read_size: usize) -> io::Result<Vec<u8>> {
        let mut dec = MultiGzDecoder::new(io::BufReader::with_capacity(7919, gz))?;
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            let n = dec.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn sample(len: usize, seed: u64) -> Vec<u8> {
        // Compressible but not trivial: words from a small alphabet with some noise.
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 97 < 60 {
                    b"layerstore "[i % 11]
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn one_member_round_trips_at_every_level() {
        let data = sample(3 << 20, 7);
        for level in [0, 1, 6, 9] {
            assert_eq!(
                inflate_all(&gzip(&data, level), 1 << 20).unwrap(),
                data,
                "level {level}"
            );
        }
    }

    #[test]
    fn members_are_decoded_one_after_another() {
        let (a, b) = (sample(100_000, 1), sample(5, 2));
        let mut gz = gzip(&a, 6);
        gz.extend(gzip(b"", 6));
        gz.extend(gzip(&b, 1));
        let mut want = a.clone();
        want.extend(&b);
        assert_eq!(inflate_all(&gz, 4096).unwrap(), want);
    }

    #[test]
    fn header_fields_are_skipped() {
        // FTEXT|FHCRC|FEXTRA|FNAME|FCOMMENT, as GNU gzip and others may write them.
        let data = sample(10_000, 3);
        let plain = gzip(&data, 6);
        let mut head = vec![0x1f, 0x8b, 8, 0x1f, 0, 0, 0, 0, 0, 3];
        head.extend([4, 0, b'a', b'b', b'c', b'd']);
        head.extend(b"name\0comment\0");
        let crc = crc32(&head);
        head.extend(&(crc as u16).to_le_bytes());
        head.extend(&plain[10..]);
        assert_eq!(inflate_all(&head, 1000).unwrap(), data);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut h = flate2::Crc::new();
        h.update(data);
        h.sum()
    }

    #[test]
    fn a_wrong_crc_or_size_fails() {
        let data = sample(50_000, 4);
        for at in [8, 4] {
            let mut gz = gzip(&data, 6);
            let n = gz.len();
            gz[n - at] ^= 1;
            let err = inflate_all(&gz, 1 << 16).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("trailer"), "{err}");
        }
    }

    #[test]
    fn a_truncated_stream_fails_wherever_it_is_cut() {
        let gz = gzip(&sample(20_000, 5), 6);
        for cut in [1, 5, 10, 11, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
            let err = inflate_all(&gz[..cut], 1 << 16).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn bytes_after_a_member_must_be_another_member() {
        let mut gz = gzip(b"data", 6);
        gz.extend(b"garbage after the member");
        let err = inflate_all(&gz, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("member 2"), "{err}");
    }

    #[test]
    fn corrupt_deflate_data_fails() {
        let mut gz = gzip(&sample(20_000, 6), 6);
        for b in &mut gz[12..40] {
            *b = 0xff;
        }
        assert_eq!(
            inflate_all(&gz, 1 << 16).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn not_gzip_at_all_fails() {
        assert!(inflate_all(b"plain text, not gzip", 100).is_err());
        assert!(
            inflate_all(b"", 100).is_err(),
            "an empty stream has no member"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any split into members, any output buffer size: the same bytes as flate2.
        #[test]
        fn agrees_with_flate2(
            data in proptest::collection::vec(any::<u8>(), 0..200_000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            level in 0u32..10,
            read_size in 1usize..100_000,
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut gz = Vec::new();
            let mut start = 0;
            for end in cuts.into_iter().chain([data.len()]) {
                gz.extend(gzip(&data[start..end], level));
                start = end;
            }
            let mut want = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut want).unwrap();
            prop_assert_eq!(&want, &data);
            prop_assert_eq!(inflate_all(&gz, read_size).unwrap(), data);
        }
    }
}
