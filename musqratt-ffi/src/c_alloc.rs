//! `c-allocator`: Rust's allocations go to the host's C library (`malloc`, `realloc`, `free`),
//! for `no_std` hosts that have one and no Rust allocator — a C firmware, a CompositeOS
//! component linking musl. The engine's allocations are small (connections, sessions, queued
//! messages) and every one is bounded by its configuration.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// What `malloc` guarantees on every target this runs on (8 on 32-bit ARM, 16 on 64-bit);
/// 8 is what C requires for `max_align_t` on the smallest of them.
const MALLOC_ALIGN: usize = 8;

/// The host's C allocator. Alignments beyond [`MALLOC_ALIGN`] (rare in the engine) take a
/// larger block and keep the pointer `malloc` gave just before the aligned one.
struct CAllocator;

// SAFETY: every block comes from malloc and returns to free; over-aligned blocks store the
// original pointer in the word before the aligned address, inside the same block.
unsafe impl GlobalAlloc for CAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain malloc; NULL is Rust's allocation failure too.
            return unsafe { malloc(layout.size()) }.cast();
        }
        let word = core::mem::size_of::<usize>();
        let Some(total) = layout.size().checked_add(layout.align() + word) else {
            return core::ptr::null_mut();
        };
        // SAFETY: plain malloc.
        let raw: *mut u8 = unsafe { malloc(total) }.cast();
        if raw.is_null() {
            return raw;
        }
        let start = raw as usize + word;
        let aligned = (start + layout.align() - 1) & !(layout.align() - 1);
        let offset = aligned - raw as usize;
        // SAFETY: `offset` ≥ `word` and `offset + size` ≤ `total`, so the aligned block and the
        // word before it lie in the malloc'd one; the word is usize-aligned as `aligned` is.
        unsafe {
            let user = raw.add(offset);
            user.cast::<usize>().sub(1).write(raw as usize);
            user
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from malloc in `alloc` (or realloc).
            unsafe { free(ptr.cast()) };
        } else {
            // SAFETY: `alloc` stored malloc's pointer in the word before `ptr`.
            unsafe { free(ptr.cast::<usize>().sub(1).read() as *mut c_void) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from malloc/realloc with this alignment.
            return unsafe { realloc(ptr.cast(), new_size) }.cast();
        }
        // SAFETY: the layout is valid (the caller's contract) with the new size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block, the old contents copied, the old block freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: CAllocator = CAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    /// The over-aligned path (not taken by the engine's own types, so not by the other tests):
    /// aligned, writable, and kept across a reallocation.
    #[test]
    fn over_aligned_blocks_are_aligned_and_survive_realloc() {
        let layout = Layout::from_size_align(100, 64).expect("a layout");
        // SAFETY: a non-zero layout; the block is written within its size, reallocated with the
        // same alignment and freed with the layout it has.
        unsafe {
            let block = CAllocator.alloc(layout);
            assert!(!block.is_null());
            assert_eq!(block as usize % 64, 0);
            block.write_bytes(0xA5, 100);
            let grown = CAllocator.realloc(block, layout, 1000);
            assert_eq!(grown as usize % 64, 0);
            assert!((0..100).all(|i| grown.add(i).read() == 0xA5), "contents kept");
            CAllocator.dealloc(grown, Layout::from_size_align(1000, 64).expect("a layout"));
        }
    }
}
