//! Integration tests of layerstore-archive: applying real and hostile layers, compressed
//! layers' reading threads, the diff encoders' output, the file writer, resource limits, the
//! Go-written fixtures, and round trips of arbitrary trees. One test binary, one module per
//! concern.

mod attacks;
mod common;
mod compressed;
mod encoder;
mod file_writer;
mod fixtures;
mod layers;
mod proptest_roundtrip;
mod resource_limits;
