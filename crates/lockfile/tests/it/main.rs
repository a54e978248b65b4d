//! Integration tests of layerstore-lockfile: locks within one process, across processes (this
//! binary re-run as a helper), against the Go tool, and properties. One test binary, one module
//! per concern.

mod cross_process;
mod go_interop;
mod in_process;
mod properties;
