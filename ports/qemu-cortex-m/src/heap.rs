//! The heap the engine allocates from: a fixed static region with a first-fit allocator
//! (`embedded-alloc`), wrapped to keep a high-water mark so that the board can report how much
//! of it the connected clients really took.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// The heap's size. Socket buffers and smoltcp's state are static, outside it: this is the
/// engine's memory (sessions, subscriptions, queued messages, packets being read) and the
/// per-connection output queues of `broker.rs`.
pub(crate) const HEAP_SIZE: usize = 64 * 1024;

/// The allocator with its high-water mark.
pub(crate) struct TrackingHeap {
    heap: LlffHeap,
    peak: AtomicUsize,
}

impl TrackingHeap {
    /// An empty heap; [`TrackingHeap::init`] gives it memory.
    pub(crate) const fn empty() -> Self {
        Self { heap: LlffHeap::empty(), peak: AtomicUsize::new(0) }
    }

    /// Hands the static region to the allocator. Call once, before anything allocates.
    pub(crate) fn init(&self) {
        static mut REGION: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once from `main` before the first allocation; REGION is used by
        // nothing else.
        unsafe { self.heap.init(core::ptr::addr_of_mut!(REGION) as usize, HEAP_SIZE) }
    }

    /// Bytes allocated now.
    pub(crate) fn used(&self) -> usize {
        self.heap.used()
    }

    /// The most bytes ever allocated at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

// SAFETY: delegates to `LlffHeap`, a `GlobalAlloc`, and only reads its counters besides.
unsafe impl GlobalAlloc for TrackingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { self.heap.alloc(layout) };
        if !ptr.is_null() {
            self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}
