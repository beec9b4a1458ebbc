//! The board's clock: SysTick interrupts every millisecond and counts; everything else (TCP
//! retransmission, the engine's keep-alive and connect timeouts) reads [`now_ms`].
//!
//! A millisecond is the resolution the engine's timeouts need (keep alive is in seconds) and
//! smoltcp's `Instant` counts in it; the tick also bounds how long `wfi` sleeps, so deadlines
//! are met without programming a one-shot timer for each.

use core::cell::Cell;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;

/// The AN385's core clock, which SysTick counts with its processor clock source.
pub(crate) const CORE_HZ: u32 = 25_000_000;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts the 1 kHz tick.
pub(crate) fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since [`start`].
pub(crate) fn now_ms() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
    });
}
