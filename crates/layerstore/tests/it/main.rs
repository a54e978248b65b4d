//! Integration tests of the Store: Go's semantics and error texts against the Go tool on a
//! twin store, interop both ways on one store (the Go tool, podman, buildah, skopeo), the
//! in-use rules, crash trials, concurrency, additional image stores and ID-mapped copies,
//! on vfs and overlay. One test binary, one module per concern.

mod additional;
mod check;
mod concurrency;
mod crash;
mod idmaps;
mod in_use;
mod interop;
mod semantics;
mod staged;
mod support;
