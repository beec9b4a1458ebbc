//! MusQraTT on bare metal: the sans-IO engine with smoltcp on QEMU's `mps2-an385` board
//! (Cortex-M3, 25 MHz, LAN9118 Ethernet), no operating system.
//!
//! The board takes 10.0.2.15/24 (QEMU user networking's guest address) and serves MQTT on port
//! 1883 to up to [`SOCKETS`] clients at once. One loop does everything: poll the Ethernet chip
//! through smoltcp, run the broker step (`broker.rs`), and sleep in `wfi` until the next frame
//! (the chip's interrupt) or the next millisecond tick (SysTick), whichever comes first.
//! docs/PORTING.md ("Bare metal (Cortex-M on QEMU)") says how to run it and what it costs.
#![no_std]
#![no_main]

extern crate alloc;

mod broker;
mod clock;
mod heap;
mod lan9118;
mod stack;
mod uart;

use core::panic::PanicInfo;
use core::ptr::addr_of_mut;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use musqratt_engine::{Config, Engine, Instant};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::heap::TrackingHeap;
use crate::lan9118::Lan9118;

/// TCP sockets, hence concurrent MQTT connections.
pub(crate) const SOCKETS: usize = 8;
/// Each socket's receive buffer (the TCP window it advertises).
const RX_BUFFER: usize = 2048;
/// Each socket's send buffer.
const TX_BUFFER: usize = 4096;
/// The LAN9118 of the AN385 and its interrupt line.
const ETH_BASE: usize = 0x4020_0000;
const ETH_IRQ: u16 = 13;

#[global_allocator]
static HEAP: TrackingHeap = TrackingHeap::empty();

/// Heap bytes not allocated now.
pub(crate) fn heap_free() -> usize {
    heap::HEAP_SIZE.saturating_sub(HEAP.used())
}

/// Heap bytes allocated now and at most, and the stack's deepest use, for the log.
pub(crate) fn mem_stats() -> (usize, usize, usize) {
    (HEAP.used(), HEAP.peak(), stack::peak())
}

/// The engine's limits on a board with a 64 KiB heap: every one bounds memory a client can
/// make the broker hold (a larger packet, a longer queue), where the Linux defaults assume
/// gigabytes.
fn engine_config() -> Config {
    let mut config = Config::default();
    config.max_packet_size = 4096;
    config.receive_maximum = 16;
    config.topic_alias_maximum = 8;
    config.max_queued_messages = 32;
    config.max_queued_bytes = 8 * 1024;
    config.max_unwritten_bytes = 4 * 1024;
    // Sessions outlive their connection for at most 5 minutes (3.x Clean Session 0 included).
    config.max_session_expiry = 300;
    config.v3_session_expiry = 300;
    config
}

#[entry]
fn main() -> ! {
    stack::paint();
    uart::init();
    HEAP.init();
    let core = cortex_m::Peripherals::take().expect("first and only take");
    log!(
        "musqratt bare-metal: mps2-an385, heap {} KiB, {} sockets",
        heap::HEAP_SIZE / 1024,
        SOCKETS
    );

    // SAFETY: the AN385 has its LAN9118 at ETH_BASE, and only this driver (and the interrupt
    // handler's write-one-to-clear acknowledgement) uses it.
    let mut eth = unsafe { Lan9118::new(ETH_BASE) };
    match eth.init() {
        Ok(()) => {}
        Err(lan9118::InitError::NoChip(read)) => {
            log!("no LAN9118 at {:#x}: BYTE_TEST read {:#010x}", ETH_BASE, read);
            halt();
        }
        Err(lan9118::InitError::ResetTimeout) => {
            log!("LAN9118 soft reset did not complete");
            halt();
        }
    }
    let mac = eth.mac();
    log!(
        "lan9118 id {:#010x}, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        eth.id_rev(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    clock::start(core.SYST);
    // SAFETY: the handler (DefaultHandler below) only acknowledges the chip's interrupt.
    unsafe { NVIC::unmask(EthIrq) };

    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    // TCP initial sequence numbers: the MAC and the boot time are all the entropy a board
    // without a hardware RNG has here; a real part would use its TRNG.
    iface_config.random_seed =
        u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x4d, 0x51])
            ^ clock::now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut iface = Interface::new(iface_config, &mut eth, SmolInstant::from_millis(0));
    iface.update_ip_addrs(|addrs| {
        addrs.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24)).expect("one address");
    });
    iface.routes_mut().add_default_ipv4_route(Ipv4Address::new(10, 0, 2, 2)).expect("one route");

    // Socket state and buffers are static: the heap is left to the engine.
    static mut STORAGE: [SocketStorage<'static>; SOCKETS] = [SocketStorage::EMPTY; SOCKETS];
    static mut RX: [[u8; RX_BUFFER]; SOCKETS] = [[0; RX_BUFFER]; SOCKETS];
    static mut TX: [[u8; TX_BUFFER]; SOCKETS] = [[0; TX_BUFFER]; SOCKETS];
    // SAFETY: `main` runs once and never returns; these statics are borrowed only here.
    let (storage, rx, tx) =
        unsafe { (&mut *addr_of_mut!(STORAGE), &mut *addr_of_mut!(RX), &mut *addr_of_mut!(TX)) };
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut rx = rx.iter_mut();
    let mut tx = tx.iter_mut();
    let handles = core::array::from_fn(|_| {
        let rx = tcp::SocketBuffer::new(&mut rx.next().expect("one per socket")[..]);
        let tx = tcp::SocketBuffer::new(&mut tx.next().expect("one per socket")[..]);
        sockets.add(tcp::Socket::new(rx, tx))
    });

    let engine = Engine::new(engine_config());
    let mut broker = broker::Broker::new(engine, handles, &mut sockets);
    log!("listening on 10.0.2.15:{}, heap used={} after start", broker::PORT, HEAP.used());

    loop {
        let ms = clock::now_ms();
        let smol_now = SmolInstant::from_millis(ms as i64);
        let now = Instant::from_micros(ms * 1000);
        iface.poll(smol_now, &mut eth, &mut sockets);
        if broker.step(now, &mut sockets) {
            // Something was read or written: let smoltcp send it before sleeping.
            continue;
        }
        // Sleep until an interrupt: the next frame or the next tick. With interrupts masked,
        // a frame that arrives between the check and `wfi` still wakes it (a pending interrupt
        // ends `wfi` even while PRIMASK is set); its handler runs once they are unmasked.
        let idle =
            iface.poll_delay(smol_now, &sockets).is_none_or(|delay| delay.total_millis() > 0);
        cortex_m::interrupt::free(|_| {
            if idle && !eth.rx_pending() {
                cortex_m::asm::wfi();
            }
        });
    }
}

/// The Ethernet interrupt's number, for the NVIC.
#[derive(Clone, Copy)]
struct EthIrqNumber;
#[allow(non_upper_case_globals)]
const EthIrq: EthIrqNumber = EthIrqNumber;

// SAFETY: 13 is the LAN9118's line on the AN385 (QEMU hw/arm/mps2.c), below the board's 32.
unsafe impl cortex_m::interrupt::InterruptNumber for EthIrqNumber {
    fn number(self) -> u16 {
        ETH_IRQ
    }
}

/// Every device interrupt lands here (the board has no peripheral-access crate to name them);
/// only the Ethernet one is unmasked. Acknowledging it is all there is to do: it exists to end
/// the main loop's `wfi`.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == ETH_IRQ as i16 {
        // SAFETY: ETH_BASE is the chip's register block; the write only clears its status bit.
        unsafe { lan9118::ack_interrupt(ETH_BASE) };
    }
}

#[exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    log!("hard fault: {:?}", frame);
    halt()
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// A panic (an allocation failure is one: the heap is full) is logged and the board stops; the
/// test harness looks for "PANIC" in the log. A deployed board would reset instead
/// (`SCB::sys_reset`), losing its sessions as a power cut would.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    log!("PANIC: {}", info);
    halt()
}
