//! Integration tests of layerstore-vfs: the tree copy (properties, shortcuts, umask, deep trees,
//! reflinks), the Driver API, chains, staging, the naive diff, and a store the Go tool wrote. One
//! test binary, one module per concern.

mod chain;
mod common;
mod copy_property;
mod copy_shortcuts;
mod copy_tree;
mod copy_umask;
mod deep_tree;
mod driver_api;
mod go_store;
mod naive_diff;
mod reflink;
mod staging;
