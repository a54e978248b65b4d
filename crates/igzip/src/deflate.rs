//! gzip compression with ISA-L's level 1 deflate: one gzip member written as bytes come in.
//!
//! ISA-L's level 1 is both faster and smaller than zlib's level 1 on this project's
//! tar-split records (16.5 MB of JSON lines from rootfs.tar: 818 KB against zlib-rs's
//! 1,033 KB, in a fraction of its 18 ms).

use std::io::{self, Write};

use crate::Error;

/// Output buffered per deflate call before it goes to the writer.
const OUT: usize = 64 * 1024;

/// Compresses what is written into one gzip member (ISA-L level 1, a plain header with no
/// name or time) written to `W`. End it with [`GzEncoder::finish`]: until then ISA-L may
/// hold recent input, and [`Write::flush`] only flushes `W` (it does not end a deflate block).
/// Dropping an unfinished encoder leaves `W` with an incomplete stream.
pub struct GzEncoder<W: Write> {
    out: W,
    state: ffi::Deflate,
    buf: Box<[u8]>,
}

impl<W: Write> std::fmt::Debug for GzEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzEncoder").finish_non_exhaustive()
    }
}

impl<W: Write> GzEncoder<W> {
    /// An encoder writing to `out`. Without ISA-L in this build ([`Error::Unavailable`]), or
    /// without memory for its state, `out` comes back with the error, for another encoder.
    pub fn new(out: W) -> Result<Self, (Error, W)> {
        match ffi::Deflate::new() {
            Ok(state) => Ok(GzEncoder {
                out,
                state,
                buf: vec![0; OUT].into_boxed_slice(),
            }),
            Err(e) => Err((e, out)),
        }
    }

    /// Ends the member (the rest of the deflate data, CRC-32 and size) and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        loop {
            let (code, _, produced, finished) = self.state.deflate(&[], true, &mut self.buf);
            if code != 0 {
                return Err(Error::Deflate { code }.into());
            }
            self.out.write_all(&self.buf[..produced])?;
            if finished {
                return Ok(self.out);
            }
            if produced == 0 {
                // Nothing moved and not finished: ISA-L would loop forever.
                return Err(Error::Deflate { code: 0 }.into());
            }
        }
    }
}

impl<W: Write> Write for GzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        loop {
            let (code, consumed, produced, _) = self.state.deflate(rest, false, &mut self.buf);
            if code != 0 {
                return Err(Error::Deflate { code }.into());
            }
            self.out.write_all(&self.buf[..produced])?;
            rest = &rest[consumed..];
            // A full output buffer may mean ISA-L has more to give for this input.
            if rest.is_empty() && produced < self.buf.len() {
                return Ok(data.len());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(igzip)]
mod ffi {
    //! The shim's deflate functions, and the one owner of a deflate stream.

    use std::ffi::c_int;
    use std::ptr::NonNull;

    /// The shim's `struct layerstore_igzip_deflate`, only ever behind a pointer.
    #[repr(C)]
    struct DeflateStream {
        _opaque: [u8; 0],
    }

    unsafe extern "C" {
        fn layerstore_igzip_deflate_new() -> *mut DeflateStream;
        fn layerstore_igzip_deflate_free(stream: *mut DeflateStream);
        #[allow(clippy::too_many_arguments)]
        fn layerstore_igzip_deflate(
            stream: *mut DeflateStream,
            input: *const u8,
            in_len: u32,
            last: c_int,
            out: *mut u8,
            out_len: u32,
            consumed: *mut u32,
            produced: *mut u32,
            finished: *mut c_int,
        ) -> c_int;
    }

    /// One ISA-L deflate stream with its level-1 buffer (about 300 KiB, on the C heap).
    pub(crate) struct Deflate(NonNull<DeflateStream>);

    // SAFETY: the stream is plain memory owned by this value alone; ISA-L keeps no global or
    // thread-local reference to it.
    unsafe impl Send for Deflate {}

    impl Deflate {
        pub(crate) fn new() -> Result<Deflate, crate::Error> {
            // SAFETY: no arguments; returns a fresh stream, or null when malloc fails.
            let raw = unsafe { layerstore_igzip_deflate_new() };
            NonNull::new(raw).map(Deflate).ok_or(crate::Error::NoMemory)
        }

        /// One deflate call: (return code, input consumed, output produced, member ended).
        pub(crate) fn deflate(
            &mut self,
            input: &[u8],
            last: bool,
            out: &mut [u8],
        ) -> (i32, usize, usize, bool) {
            // ISA-L counts in 32 bits; what is left over goes in the next call (`last` only
            // when all of it fits).
            let in_len = u32::try_from(input.len()).unwrap_or(u32::MAX);
            let last = last && in_len as usize == input.len();
            let out_len = u32::try_from(out.len()).unwrap_or(u32::MAX);
            let (mut consumed, mut produced, mut finished) = (0u32, 0u32, 0 as c_int);
            // SAFETY: the stream is live and owned by self; `input` is readable for in_len
            // bytes and `out` writable for out_len bytes during the call, and neither pointer
            // is kept past it (the shim sets both again on every call).
            let code = unsafe {
                layerstore_igzip_deflate(
                    self.0.as_ptr(),
                    input.as_ptr(),
                    in_len,
                    c_int::from(last),
                    out.as_mut_ptr(),
                    out_len,
                    &mut consumed,
                    &mut produced,
                    &mut finished,
                )
            };
            (code, consumed as usize, produced as usize, finished != 0)
        }
    }

    impl Drop for Deflate {
        fn drop(&mut self) {
            // SAFETY: the stream came from layerstore_igzip_deflate_new and is freed once.
            unsafe { layerstore_igzip_deflate_free(self.0.as_ptr()) }
        }
    }
}

#[cfg(not(igzip))]
mod ffi {
    //! No ISA-L in this build: a deflate stream can never be made.

    /// Uninhabited: [`Deflate::new`] always fails.
    pub(crate) enum Deflate {}

    impl Deflate {
        pub(crate) fn new() -> Result<Deflate, crate::Error> {
            Err(crate::Error::Unavailable)
        }

        pub(crate) fn deflate(
            &mut self,
            _: &[u8],
            _: bool,
            _: &mut [u8],
        ) -> (i32, usize, usize, bool) {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("flate2 reads what ISA-L wrote");
        out
    }

    #[test]
    fn what_is_written_comes_back_from_another_inflater() {
        let started = GzEncoder::new(Vec::new());
        assert_eq!(
            started.is_ok(),
            crate::AVAILABLE,
            "ISA-L in the build starts an encoder"
        );
        let Ok(mut enc) = started else {
            return;
        };
        // Text-like records in odd-sized writes, some bigger than the output buffer.
        let mut data = Vec::new();
        for i in 0..200_000u32 {
            data.extend_from_slice(format!("{{\"type\":2,\"name\":\"usr/lib/{i}\"}}\n").as_bytes());
        }
        for piece in data.chunks(77_777) {
            enc.write_all(piece).expect("write");
        }
        let gz = enc.finish().expect("finish");
        assert!(
            gz.len() < data.len() / 4,
            "it compresses: {} of {}",
            gz.len(),
            data.len()
        );
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn an_empty_stream_is_a_valid_empty_member() {
        let Ok(enc) = GzEncoder::new(Vec::new()) else {
            return;
        };
        let gz = enc.finish().expect("finish");
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert!(gunzip(&gz).is_empty());
    }

    #[test]
    fn without_isa_l_the_writer_comes_back() {
        let started = GzEncoder::new(vec![1u8]);
        assert_eq!(started.is_ok(), crate::AVAILABLE);
        if let Err((e, out)) = started {
            assert!(matches!(e, Error::Unavailable), "{e}");
            assert_eq!(out, vec![1u8]);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_writes_round_trip(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300_000),
            split in 1usize..100_000,
        ) {
            if let Ok(mut enc) = GzEncoder::new(Vec::new()) {
                for piece in data.chunks(split) {
                    enc.write_all(piece).expect("write");
                }
                let gz = enc.finish().expect("finish");
                proptest::prop_assert_eq!(gunzip(&gz), data);
            }
        }
    }
}
