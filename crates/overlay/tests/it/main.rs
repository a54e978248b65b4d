//! Integration tests of layerstore-overlay on the real kernel: chains (deep ones through the new
//! mount API), fuse-overlayfs, options, hostile layouts (injection), and the Go tool on the same
//! store. One test binary, one module per concern.

mod chain;
mod common;
mod deep_chain;
mod fuse;
mod go_interop;
mod injection;
mod options;
