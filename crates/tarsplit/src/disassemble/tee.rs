//! [`TeeDisassembler`]: the pass-through form of the [`Disassembler`].

use std::io::{self, Read};

use super::{DIRECT_READ_MIN, Disassembler, State};
use crate::entry::EntrySink;
use crate::error::Error;
use crate::tar::Limits;

/// The pass-through form: reading from it yields the input's bytes unchanged, while the tar
/// stream is parsed and recorded. When it returns EOF, everything was recorded; take the sink
/// with [`into_parts`](Self::into_parts). Errors come back as [`io::Error`]s wrapping
/// [`Error`] (`err.into_inner()` and downcast to get it back).
pub struct TeeDisassembler<R: Read, S: EntrySink> {
    inner: Disassembler<R, S>,
    failed: bool,
}

impl<R: Read, S: EntrySink> TeeDisassembler<R, S> {
    /// A pass-through disassembler with default limits.
    pub fn new(input: R, sink: S) -> Self {
        Self::with_limits(input, sink, Limits::default())
    }

    /// A pass-through disassembler with explicit limits.
    pub fn with_limits(input: R, sink: S, limits: Limits) -> Self {
        let mut inner = Disassembler::with_limits(input, sink, limits);
        inner.tee = Some(Vec::new());
        TeeDisassembler {
            inner,
            failed: false,
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.inner.sink
    }

    /// Whether the whole stream was read and recorded.
    pub fn is_finished(&self) -> bool {
        self.inner.state == State::Finished
    }

    /// The input and the sink, once the whole stream was read (else [`Error::State`]).
    pub fn into_parts(self) -> Result<(R, S), Error> {
        if self.inner.state != State::Finished {
            return Err(Error::State(
                "TeeDisassembler::into_parts before the stream was read to EOF",
            ));
        }
        Ok((self.inner.input, self.inner.sink))
    }

    fn step(&mut self) -> Result<(), Error> {
        let d = &mut self.inner;
        match d.state {
            State::Content => d.skip_some(),
            State::Headers => d.next_header().map(drop),
            State::End | State::Trailing => d.finish_step().map(drop),
            State::Finished => Ok(()),
        }
    }
}

impl<R: Read, S: EntrySink> Read for TeeDisassembler<R, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.inner.tee_pending() {
                return Ok(self.inner.tee_take(out));
            }
            if self.failed {
                return Err(io::Error::other(
                    "tar-split disassembly failed earlier in this stream",
                ));
            }
            if self.inner.state == State::Finished {
                return Ok(0);
            }
            let d = &mut self.inner;
            if d.state == State::Content && d.pos == d.end && out.len() >= DIRECT_READ_MIN {
                // Large content reads go straight to the caller: no copy through the tee.
                return d.read_content_uncaptured(out).map_err(|e| {
                    self.failed = true;
                    e.into_io()
                });
            }
            if let Err(e) = self.step() {
                self.failed = true;
                return Err(e.into_io());
            }
        }
    }
}
