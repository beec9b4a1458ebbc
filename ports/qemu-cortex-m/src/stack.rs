//! The stack's high-water mark: the region below the stack pointer at boot is painted with a
//! pattern, and the deepest word no longer holding it is as far as the stack has grown. This is
//! how the RAM figure in docs/PORTING.md ("Bare metal (Cortex-M on QEMU)") includes the stack, which no linker map
//! shows.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicUsize, Ordering};

/// How far below the boot stack pointer is painted: far more than the broker uses.
const PAINTED: usize = 32 * 1024;
/// Words just below the stack pointer left alone (the painting function's own frame).
const MARGIN: usize = 256;
const PATTERN: u32 = 0x5ca1_ab1e;

static BOTTOM: AtomicUsize = AtomicUsize::new(0);
static TOP: AtomicUsize = AtomicUsize::new(0);

/// Paints the stack region. Call first thing in `main`.
#[inline(never)]
pub(crate) fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = (sp - PAINTED) & !3;
    let end = (sp - MARGIN) & !3;
    for addr in (bottom..end).step_by(4) {
        // SAFETY: RAM between `bottom` and the live stack, unused (the statics end far below:
        // the AN385 has 4 MiB of data RAM and the image takes about 120 KiB of it).
        unsafe { write_volatile(addr as *mut u32, PATTERN) };
    }
    BOTTOM.store(bottom, Ordering::Relaxed);
    TOP.store(top(), Ordering::Relaxed);
}

fn top() -> usize {
    extern "C" {
        // cortex-m-rt's initial stack pointer: the top of RAM.
        static _stack_start: u32;
    }
    // Only the symbol's address is taken, never its value.
    core::ptr::addr_of!(_stack_start) as usize
}

/// The most stack used since boot, in bytes.
pub(crate) fn peak() -> usize {
    let bottom = BOTTOM.load(Ordering::Relaxed);
    let top = TOP.load(Ordering::Relaxed);
    let mut addr = bottom;
    // SAFETY: the painted region, which stays mapped RAM.
    while addr < top && unsafe { read_volatile(addr as *const u32) } == PATTERN {
        addr += 4;
    }
    top - addr
}
