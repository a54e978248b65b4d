//! Random sequences of allocations, growths, shrinks and frees of every class: each live block
//! keeps its own pattern, so a block handed out twice or a lost copy shows.

use std::alloc::{GlobalAlloc, Layout};

use layerstore_hugealloc::{HUGE_PAGE, HugePageAlloc, LARGE, SLOT};
use proptest::prelude::*;

/// Sizes around every class boundary.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..4096,
        (LARGE - 16)..(LARGE + 16),
        (SLOT - 16)..(SLOT + 16),
        (HUGE_PAGE - 16)..(HUGE_PAGE + 16),
        LARGE..(3 * HUGE_PAGE),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, zeroed: bool },
    Realloc { which: usize, size: usize },
    Free { which: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (size(), any::<bool>()).prop_map(|(size, zeroed)| Op::Alloc { size, zeroed }),
        (any::<usize>(), size()).prop_map(|(which, size)| Op::Realloc { which, size }),
        any::<usize>().prop_map(|which| Op::Free { which }),
    ]
}

struct Block {
    ptr: *mut u8,
    size: usize,
    tag: u8,
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("layout")
}

/// Where a block of `size` bytes carries its tag: its first and last byte and every 4 KiB
/// between.
fn marks(size: usize) -> impl Iterator<Item = usize> {
    (0..size).step_by(4096).chain([size - 1])
}

fn stamp(block: &Block) {
    for at in marks(block.size) {
        // SAFETY: `at < size`, within the live block.
        unsafe { block.ptr.add(at).write(block.tag) };
    }
}

/// Whether the marks of a block of `stamped_size` bytes that lie within `block` are intact.
fn stamped(block: &Block, stamped_size: usize) -> bool {
    marks(stamped_size)
        .filter(|&at| at < block.size)
        // SAFETY: `at < block.size`, within the live block.
        .all(|at| unsafe { block.ptr.add(at).read() } == block.tag)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn live_blocks_keep_their_contents(ops in proptest::collection::vec(op(), 1..40)) {
        let alloc = HugePageAlloc;
        let mut live: Vec<Block> = Vec::new();
        let mut next_tag = 1u8;
        for op in ops {
            match op {
                Op::Alloc { size, zeroed } => {
                    // SAFETY: a valid layout of non-zero size.
                    let ptr = unsafe {
                        if zeroed { alloc.alloc_zeroed(layout(size)) } else { alloc.alloc(layout(size)) }
                    };
                    prop_assert!(!ptr.is_null());
                    prop_assert_eq!(ptr as usize % 16, 0);
                    if zeroed {
                        // SAFETY: the fresh block is `size` bytes.
                        let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
                        prop_assert!(bytes.iter().all(|&b| b == 0));
                    }
                    let block = Block { ptr, size, tag: next_tag };
                    next_tag = next_tag.wrapping_add(1).max(1);
                    stamp(&block);
                    live.push(block);
                }
                Op::Realloc { which, size } if !live.is_empty() => {
                    let index = which % live.len();
                    let old = &live[index];
                    prop_assert!(stamped(old, old.size));
                    // SAFETY: `old` is live, allocated with `layout(old.size)`.
                    let ptr = unsafe { alloc.realloc(old.ptr, layout(old.size), size) };
                    prop_assert!(!ptr.is_null());
                    let moved = Block { ptr, size, tag: old.tag };
                    prop_assert!(stamped(&moved, old.size), "realloc kept the contents");
                    stamp(&moved);
                    live[index] = moved;
                }
                Op::Free { which } if !live.is_empty() => {
                    let block = live.swap_remove(which % live.len());
                    prop_assert!(stamped(&block, block.size));
                    // SAFETY: `block` is live, allocated with `layout(block.size)`.
                    unsafe { alloc.dealloc(block.ptr, layout(block.size)) };
                }
                _ => {}
            }
            for block in &live {
                prop_assert!(stamped(block, block.size), "no block overwrote another");
            }
        }
        for block in live {
            // SAFETY: as for Free.
            unsafe { alloc.dealloc(block.ptr, layout(block.size)) };
        }
    }
}
