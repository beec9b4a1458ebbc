//! Logging on UART0 of the MPS2 (an ARM CMSDK APB UART at 0x4000_4000): QEMU connects it to
//! `-serial`, so the board's log is the host's standard output or a file.
//!
//! Transmit only, polled: the log is a handful of lines per connection, and a blocked log must
//! never be a reason for the broker to allocate.

use core::fmt;
use core::ptr::{read_volatile, write_volatile};

const BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1;
const CTRL_TX_ENABLE: u32 = 1;

fn write_reg(offset: usize, value: u32) {
    // SAFETY: a CMSDK UART register of the AN385 memory map; only this module touches UART0.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

fn read_reg(offset: usize) -> u32 {
    // SAFETY: as in `write_reg`.
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

/// Enables the transmitter. The divisor is irrelevant to QEMU but must be at least 16.
pub(crate) fn init() {
    write_reg(BAUDDIV, 16);
    write_reg(CTRL, CTRL_TX_ENABLE);
}

/// The UART as a `fmt::Write` sink.
pub(crate) struct Uart;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            while read_reg(STATE) & STATE_TX_FULL != 0 {}
            write_reg(DATA, u32::from(byte));
        }
        Ok(())
    }
}

/// `println!` to UART0.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::uart::Uart, $($arg)*);
    }};
}
