//! The allocator as the global one, from several threads at once: the free list of slots is
//! shared, so blocks taken and returned concurrently must never be handed out twice.

use layerstore_hugealloc::{HUGE_PAGE, SLOT};

#[test]
fn threads_sharing_the_slots_never_share_a_block() {
    let workers: Vec<_> = (0..4u8)
        .map(|id| {
            std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                for round in 0..200usize {
                    let size = [SLOT, SLOT - 1000, HUGE_PAGE + 1, 700 << 10][round % 4];
                    let tag = id.wrapping_mul(31).wrapping_add(round as u8);
                    kept.push(vec![tag; size]);
                    if kept.len() > 3 {
                        let block = kept.remove(round % kept.len());
                        let first = block[0];
                        assert!(block.iter().all(|&b| b == first), "a block was shared");
                    }
                }
                kept
            })
        })
        .collect();
    for worker in workers {
        for block in worker.join().expect("the worker ran") {
            let first = block[0];
            assert!(block.iter().all(|&b| b == first), "a block was shared");
        }
    }
}

#[test]
fn vectors_grow_through_every_class() {
    let mut bytes = Vec::new();
    for i in 0..(3 * HUGE_PAGE) {
        bytes.push((i % 253) as u8);
    }
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    bytes.truncate(1000);
    bytes.shrink_to_fit();
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
}
