//! Integration tests of the Store.
