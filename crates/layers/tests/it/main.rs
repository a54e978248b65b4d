//! Integration tests of layerstore-layers: records, diffs, locking across processes, crash
//! points, staging and zstd:chunked pulls, additional layer stores, check and repair, bad input,
//! scale, read-only stores, the Go-written fixtures and the Go tool on the same store. One test
//! binary, one module per concern.

mod additional_layers;
mod additional_layers_go;
mod bad_input;
mod check;
mod chunked;
mod common;
mod crash;
mod diff;
mod fixtures;
mod go_interop;
mod locking;
mod model_check;
mod read_only;
mod records;
mod scale;
mod staging;
mod staging_vfs;
