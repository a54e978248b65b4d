//! Integration tests of layerstore-tarsplit: round trips, streaming, bad input, GNU tar's and
//! the Go tool's tar-split files. One test binary, one module per concern.

mod bad_input;
mod fixtures;
mod gnu_tar;
mod go_interop;
mod roundtrip;
mod streaming;
