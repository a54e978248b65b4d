//! Integration tests of layerstore-model: the files the Go tool wrote (golden), its tool on our
//! records, and JSON properties. One test binary, one module per concern.

mod common;
mod go_fixtures;
mod go_tool;
mod json_props;
