//! The home of tests that span several crates without belonging to one: none yet, so this
//! library is empty. Each crate's own integration tests are one binary,
//! `crates/<crate>/tests/it/`; the data they share, written by the Go tool, is
//! `tests/fixtures/go-1.43` (see docs/ARCHITECTURE.md).

#![forbid(unsafe_code)]
