//! Integration tests of layerstore-btrfs on a real btrfs (a loop file): chains of snapshots,
//! quotas, removal, space, and the Go tool on the same store. One test binary, one module per
//! concern.

mod chain;
mod common;
mod go_interop;
mod quota;
mod remove;
mod space;
