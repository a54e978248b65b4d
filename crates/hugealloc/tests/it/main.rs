//! Integration tests of layerstore-hugealloc, with it as this test binary's global allocator
//! (the harness, proptest and the tests all allocate through it). One test binary.

#[global_allocator]
static ALLOCATOR: layerstore_hugealloc::HugePageAlloc = layerstore_hugealloc::HugePageAlloc;

mod blocks;
mod threads;
