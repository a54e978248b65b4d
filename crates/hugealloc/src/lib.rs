//! A global allocator that backs large blocks with transparent huge pages, and leaves every
//! other block to the system allocator.
//!
//! # Why
//!
//! An import moves its layer through buffers of 1 MiB: the compressed blob's chunks, the
//! decompressed stream's chunks and the file writer's batches, about 16 MiB in all. glibc maps
//! each such block on its own, so every 4 KiB page of it is first touched through a page fault:
//! about 4,000 faults per import of a Debian rootfs, at 1–2 µs each on a VM (fault entry, page
//! allocation, memcg charge, zeroing). Backed by 2 MiB huge pages the same memory takes one
//! fault per 2 MiB, and the kernel clears it in one go.
//!
//! # Contract
//!
//! [`HugePageAlloc`] is a [`GlobalAlloc`]:
//! - A block smaller than [`LARGE`], or aligned to more than a 4 KiB page, comes from
//!   [`System`] unchanged.
//! - A block of [`LARGE`] up to [`SLOT`] bytes takes one *slot*: a half of a 2 MiB region
//!   aligned to 2 MiB and advised `MADV_HUGEPAGE`. A freed slot goes to a free list and is
//!   reused; slots are never unmapped, so the memory held is the most ever in use at once
//!   (a process's peak RSS, which it reached anyway). Growing or shrinking a block within a
//!   slot keeps it in place.
//! - A larger block gets a mapping of its own, rounded up to whole 2 MiB and advised likewise;
//!   it is unmapped when freed and grown with `mremap`.
//! - Where the kernel has no transparent huge pages, or none free, the same mappings are
//!   backed by small pages: only the speed differs. A failed mapping makes the allocation
//!   return null, as the contract of [`GlobalAlloc`] asks.
//!
//! The class of a block depends only on its [`Layout`], so `dealloc` and `realloc` find it
//! again from the layout they are given, which is the one it was allocated or reallocated
//! with.
//!
//! # Trade-offs
//!
//! - A huge page is cleared whole at its first touch (2 MiB), so a block of 512 KiB costs a
//!   1 MiB slot of memory, and a process that allocates one large block and touches a little
//!   of it pays more than with small pages. The blocks this is for are filled whole.
//! - Where the kernel is set to compact memory for `MADV_HUGEPAGE` mappings (the default
//!   `defrag` setting, `madvise`), a first touch on a host with fragmented memory may wait for
//!   compaction. jemalloc, tcmalloc and the JVM make the same trade where asked to.
//! - Slots are kept for reuse rather than unmapped, which suits a command's lifetime; a
//!   long-running program that once held many large blocks keeps their memory.
//!
//! Measured on imports (`docs/BENCHMARKS.md`, issue 21): a Debian rootfs's gzip layer 4%
//! faster (CPU −18 ms, faults 5,700 → 950), peak RSS 30 → 33 MiB.
//!
//! # Example
//!
//! A binary opts in with one line (the `layerstore` command does):
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: layerstore_hugealloc::HugePageAlloc = layerstore_hugealloc::HugePageAlloc;
//!
//! let chunk = vec![0u8; 1 << 20]; // a slot of a huge page
//! let small = vec![0u8; 64]; // the system allocator's
//! assert_eq!(chunk.len() + small.len(), (1 << 20) + 64);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr;
use std::sync::{Mutex, PoisonError};

use rustix::mm::{self, Advice, MapFlags, MremapFlags, ProtFlags};

/// The size of a transparent huge page (a PMD's reach with 4 KiB pages: x86-64, arm64).
pub const HUGE_PAGE: usize = 2 << 20;
/// A huge page holds two slots of this size.
pub const SLOT: usize = HUGE_PAGE / 2;
/// Blocks from this size on are served from huge pages; smaller ones by [`System`].
pub const LARGE: usize = 512 << 10;
/// Blocks aligned to more than this stay with [`System`] (mappings and slots are page-aligned
/// at least).
const PAGE: usize = 4096;
/// Marks a free slot that was never handed out (still zero), in the low bits of its address:
/// slots are 1 MiB-aligned, so those bits are otherwise zero.
const CLEAN: usize = 1;

/// The global allocator: see the [crate documentation](crate).
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// Where a block of a given layout lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    System,
    Slot,
    Mapping,
}

fn class(layout: Layout) -> Class {
    if layout.size() < LARGE || layout.align() > PAGE {
        Class::System
    } else if layout.size() <= SLOT {
        Class::Slot
    } else {
        Class::Mapping
    }
}

/// The free slots: the address of the first (0: none, [`CLEAN`] set: never used); each free
/// slot starts with the same kind of word for the next.
static FREE_SLOTS: Mutex<usize> = Mutex::new(0);

/// A slot, and whether it is known to hold only zeros.
fn take_slot() -> Option<(*mut u8, bool)> {
    {
        let mut head = FREE_SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
        if *head != 0 {
            let slot = (*head & !CLEAN) as *mut u8;
            let clean = *head & CLEAN != 0;
            // SAFETY: `slot` is a free slot (a live, writable mapping owned by this list);
            // `put_slot` wrote the next word at its start, and slots are 1 MiB-aligned.
            *head = unsafe { slot.cast::<usize>().read() };
            if clean {
                // The link word was the only write to a clean slot: zero it again.
                // SAFETY: as above; the slot is ours now.
                unsafe { slot.cast::<usize>().write(0) };
            }
            return Some((slot, clean));
        }
    }
    let region = map(HUGE_PAGE)?;
    // The second half of a fresh region is free, and zero.
    // SAFETY: `region` is a fresh mapping of HUGE_PAGE bytes, so `region + SLOT` is in it.
    put_slot(unsafe { region.add(SLOT) }, true);
    Some((region, true))
}

/// Returns `slot` to the free list; `clean` if it was never written (its link word aside,
/// which [`take_slot`] zeroes again).
fn put_slot(slot: *mut u8, clean: bool) {
    let mut head = FREE_SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: `slot` is a slot no block uses any more (freed by its owner, or never handed
    // out), writable, and aligned for a usize.
    unsafe { slot.cast::<usize>().write(*head) };
    *head = slot as usize | if clean { CLEAN } else { 0 };
}

/// The length of the mapping of a [`Class::Mapping`] block of `size` bytes.
fn mapping_len(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(HUGE_PAGE)
}

/// A fresh anonymous mapping of `len` bytes (a multiple of [`HUGE_PAGE`]), aligned to
/// [`HUGE_PAGE`] and advised `MADV_HUGEPAGE`.
fn map(len: usize) -> Option<*mut u8> {
    let anonymous = |len| {
        // SAFETY: a private anonymous mapping at an address of the kernel's choice aliases no
        // memory of this process.
        unsafe {
            mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .ok()
    };
    // Linux places anonymous mappings of whole huge pages on a huge page boundary (6.7 on);
    // elsewhere map one huge page more and cut the mapping down to an aligned part.
    let mut start = anonymous(len)?;
    if !(start as usize).is_multiple_of(HUGE_PAGE) {
        unmap(start, len);
        let wide = anonymous(len.checked_add(HUGE_PAGE)?)?;
        let head = (wide as usize).next_multiple_of(HUGE_PAGE) - wide as usize;
        // SAFETY: `head < HUGE_PAGE`, so the aligned part of `len` bytes lies in the mapping.
        start = unsafe { wide.cast::<u8>().add(head) }.cast();
        if head > 0 {
            unmap(wide, head);
        }
        // SAFETY: the mapping is `len + HUGE_PAGE` bytes long from `wide`.
        let tail = unsafe { start.cast::<u8>().add(len) };
        unmap(tail.cast(), HUGE_PAGE - head);
    }
    // Best effort: without transparent huge pages the mapping works with small pages.
    // SAFETY: madvise(2) with MADV_HUGEPAGE only changes how the kernel backs this mapping of
    // ours; it neither moves nor frees it.
    let _advised = unsafe { mm::madvise(start, len, Advice::LinuxHugepage) };
    Some(start.cast())
}

/// Unmaps a mapping (or an end of one) this crate made.
fn unmap(start: *mut c_void, len: usize) {
    // SAFETY: callers pass a range of a mapping this crate made that no block uses any more.
    // A failure (ENOMEM when splitting would exceed the map count) only leaks the range.
    let _unmapped = unsafe { mm::munmap(start, len) };
}

impl HugePageAlloc {
    fn allocate(layout: Layout, zeroed: bool) -> *mut u8 {
        match class(layout) {
            Class::System => {
                if zeroed {
                    // SAFETY: the caller's layout has a non-zero size (GlobalAlloc's contract).
                    unsafe { System.alloc_zeroed(layout) }
                } else {
                    // SAFETY: as above.
                    unsafe { System.alloc(layout) }
                }
            }
            Class::Slot => match take_slot() {
                Some((slot, clean)) => {
                    if zeroed && !clean {
                        // SAFETY: the slot is SLOT ≥ layout.size() writable bytes, now ours.
                        unsafe { slot.write_bytes(0, layout.size()) };
                    }
                    slot
                }
                None => ptr::null_mut(),
            },
            // A fresh mapping is zero already.
            Class::Mapping => mapping_len(layout.size())
                .and_then(map)
                .unwrap_or(ptr::null_mut()),
        }
    }
}

// SAFETY: blocks never overlap (slots are disjoint halves of mappings of our own, mappings are
// fresh, the rest is System's), each is at least as large and as aligned as its layout asks
// (slots are 1 MiB-aligned, mappings page-aligned, and only layouts aligned to at most a page
// come here), and each is released by the path its layout's class names.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::allocate(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::allocate(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: `ptr` came from System with this layout (the class says so).
            Class::System => unsafe { System.dealloc(ptr, layout) },
            Class::Slot => put_slot(ptr, false),
            Class::Mapping => {
                if let Some(len) = mapping_len(layout.size()) {
                    unmap(ptr.cast(), len);
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `new_size` is non-zero and, rounded up to the
        // alignment, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // SAFETY: `ptr` is System's block of `layout` (its class says so).
            (Class::System, Class::System) => unsafe { System.realloc(ptr, layout, new_size) },
            // Both sizes fit the slot.
            (Class::Slot, Class::Slot) => ptr,
            (Class::Mapping, Class::Mapping) => {
                let (Some(old_len), Some(new_len)) =
                    (mapping_len(layout.size()), mapping_len(new_size))
                else {
                    return ptr::null_mut();
                };
                if old_len == new_len {
                    return ptr;
                }
                // SAFETY: `ptr` starts our mapping of `old_len` bytes; mremap(2) moves or
                // resizes it whole (the contents are kept) and the old address is not used
                // again once it succeeded.
                unsafe { mm::mremap(ptr.cast(), old_len, new_len, MremapFlags::MAYMOVE) }
                    .map_or(ptr::null_mut(), |moved| moved.cast())
            }
            _ => {
                let new = Self::allocate(new_layout, false);
                if !new.is_null() {
                    // SAFETY: both blocks are live, ours, distinct, and at least this long.
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    }
                    // SAFETY: `ptr` is the caller's block of `layout`, not used again.
                    unsafe { self.dealloc(ptr, layout) };
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("layout")
    }

    #[test]
    fn sizes_pick_their_class() {
        assert_eq!(class(layout(LARGE - 1)), Class::System);
        assert_eq!(class(layout(LARGE)), Class::Slot);
        assert_eq!(class(layout(SLOT)), Class::Slot);
        assert_eq!(class(layout(SLOT + 1)), Class::Mapping);
        let aligned = Layout::from_size_align(SLOT, 2 * PAGE).expect("layout");
        assert_eq!(
            class(aligned),
            Class::System,
            "over-aligned blocks stay with System"
        );
    }

    #[test]
    fn mappings_are_huge_page_aligned_and_rounded_up() {
        assert_eq!(mapping_len(SLOT + 1), Some(HUGE_PAGE));
        assert_eq!(mapping_len(HUGE_PAGE + 1), Some(2 * HUGE_PAGE));
        assert_eq!(mapping_len(usize::MAX), None);
        for len in [HUGE_PAGE, 3 * HUGE_PAGE] {
            let start = map(len).expect("mapped");
            assert_eq!(start as usize % HUGE_PAGE, 0);
            // SAFETY: a fresh mapping of `len` bytes, ours.
            unsafe {
                start.write_bytes(0xa5, len);
                assert_eq!(start.add(len - 1).read(), 0xa5);
            }
            unmap(start.cast(), len);
        }
    }

    #[test]
    fn a_freed_slot_is_reused_and_zeroed_when_asked() {
        let alloc = HugePageAlloc;
        let l = layout(SLOT);
        // SAFETY: valid layouts; each block is written within its size and freed once.
        unsafe {
            let a = alloc.alloc(l);
            assert!(!a.is_null());
            assert_eq!(
                a as usize % SLOT,
                0,
                "slots are halves of aligned huge pages"
            );
            a.write_bytes(0xff, SLOT);
            alloc.dealloc(a, l);
        }
        // Other tests share the list, so look for `a` among a few slots.
        take_zeroed_slots(8);
    }

    /// Takes `count` slots through `alloc_zeroed`, checks that each is all zeros, and frees
    /// them.
    fn take_zeroed_slots(count: usize) {
        let alloc = HugePageAlloc;
        let l = layout(SLOT);
        // SAFETY: a valid layout; each block is read within its size and freed once.
        unsafe {
            let taken: Vec<*mut u8> = (0..count).map(|_| alloc.alloc_zeroed(l)).collect();
            for &b in &taken {
                assert!(!b.is_null());
                let bytes = std::slice::from_raw_parts(b, SLOT);
                assert!(bytes.iter().all(|&x| x == 0), "alloc_zeroed gives zeros");
            }
            for b in taken {
                alloc.dealloc(b, l);
            }
        }
    }

    #[test]
    fn a_clean_slot_behind_another_is_handed_out_zeroed() {
        let region = map(HUGE_PAGE).expect("mapped");
        // The second slot's link word points at the first: the one write a clean slot gets.
        put_slot(region, true);
        // SAFETY: the region is HUGE_PAGE bytes long.
        let second = unsafe { region.add(SLOT) };
        put_slot(second, true);
        take_zeroed_slots(4);
    }

    #[test]
    fn realloc_keeps_contents_across_every_pair_of_classes() {
        let alloc = HugePageAlloc;
        let sizes = [
            100,
            LARGE - 1,
            LARGE,
            SLOT,
            SLOT + 1,
            HUGE_PAGE + 4096,
            5 * HUGE_PAGE,
        ];
        for &from in &sizes {
            for &to in &sizes {
                // SAFETY: valid layouts; writes and reads stay within each block's size.
                unsafe {
                    let p = alloc.alloc(layout(from));
                    assert!(!p.is_null());
                    for i in 0..from {
                        p.add(i).write((i % 251) as u8);
                    }
                    let q = alloc.realloc(p, layout(from), to);
                    assert!(!q.is_null(), "{from} → {to}");
                    for i in 0..from.min(to) {
                        assert_eq!(q.add(i).read(), (i % 251) as u8, "{from} → {to} at {i}");
                    }
                    q.add(to - 1).write(7);
                    alloc.dealloc(q, layout(to));
                }
            }
        }
    }
}
