//! Integration tests of layerstore-pull: every transport against the same images, a real
//! registry (Debian's docker-registry) with each auth mode, network faults through a proxy,
//! pushes checked with skopeo, and the commit plan checked against real `podman pull`s.

mod common;
mod network;
mod partial;
mod podman;
mod push;
mod registry;
mod sources;
mod store;
