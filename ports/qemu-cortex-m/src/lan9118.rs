//! A polled driver for the SMSC LAN9118 (the MPS2 board's LAN9220 is register compatible), as
//! smoltcp's [`phy::Device`].
//!
//! No maintained crate drives this chip, and the part of it a broker needs is small: soft reset,
//! read the MAC address the EEPROM loaded, enable receive and transmit, and move whole frames
//! through the RX and TX data FIFOs by 32-bit words. The chip's own documentation (SMSC LAN9118
//! datasheet) and QEMU's model of it (hw/net/lan9118.c) are the references; QEMU transmits a
//! frame as soon as its last word is written and never reports TX errors, so the driver needs
//! no TX completion handling beyond draining the TX status FIFO.
//!
//! Interrupts: the chip raises its line (IRQ 13 on the AN385) when the RX status FIFO holds a
//! frame; the handler in `main.rs` only acknowledges it ([`Lan9118::ack_interrupts`]), to wake the
//! core from `wfi`. Frames are read by the main loop, never in the handler.

use core::ptr::{read_volatile, write_volatile};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

// Register offsets (datasheet §5, "System Control and Status Registers").
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_DP_CTRL: usize = 0x78;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// MAC control and status registers, reached through MAC_CSR_CMD/DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;

const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;

const HW_CFG_SRST: u32 = 1;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// IRQ_CFG: output enabled, active high, push-pull (anything else reads as "asserted" when idle
/// to a level-sensitive NVIC input).
const IRQ_CFG_ENABLED_HIGH: u32 = (1 << 8) | (1 << 4) | 1;
/// INT_STS/INT_EN: RX status FIFO level (a frame is waiting).
const INT_RSFL: u32 = 1 << 3;
/// RX_DP_CTRL: discard the rest of the current frame.
const RX_FFWD: u32 = 1 << 31;
/// TX command A: first and last segment of the frame.
const TX_CMD_A_FIRST_LAST: u32 = (1 << 13) | (1 << 12);
/// The value BYTE_TEST always reads as: proves the chip is there and the bus order is right.
const BYTE_TEST_VALUE: u32 = 0x8765_4321;

/// The largest Ethernet frame handled (1500-byte MTU, 14-byte header; no VLAN tags).
pub(crate) const MAX_FRAME: usize = 1514;
/// The receive buffer: the largest frame, its 4-byte FCS, rounded up to whole FIFO words (the
/// FIFO is read 32 bits at a time).
const RX_BUFFER: usize = (MAX_FRAME + 4).next_multiple_of(4);

/// Why the chip could not be brought up.
pub(crate) enum InitError {
    /// BYTE_TEST did not read back its fixed pattern: no LAN9118 at this address.
    NoChip(u32),
    /// The soft reset did not complete.
    ResetTimeout,
}

/// The register block: a base address, copied freely (the chip has one owner, [`Lan9118`]).
#[derive(Clone, Copy)]
struct Regs {
    base: usize,
}

impl Regs {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract: `base + offset` is one of the chip's 32-bit
        // registers, and only this driver uses them.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn mac_wait(self) {
        // QEMU completes MAC CSR accesses at once; real silicon takes a few cycles.
        while self.read(MAC_CSR_CMD) & MAC_CSR_BUSY != 0 {}
    }

    fn mac_read(self, reg: u32) -> u32 {
        self.mac_wait();
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | reg);
        self.mac_wait();
        self.read(MAC_CSR_DATA)
    }

    fn mac_write(self, reg: u32, value: u32) {
        self.mac_wait();
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | reg);
        self.mac_wait();
    }

    fn rx_pending(self) -> bool {
        (self.read(RX_FIFO_INF) >> 16) & 0xff != 0
    }

    /// Whether the TX data FIFO has room for a whole frame and its two command words.
    fn tx_room(self) -> bool {
        // Drain the TX status FIFO: QEMU reports every frame there and stops at 512.
        while (self.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            self.read(TX_STATUS_FIFO);
        }
        (self.read(TX_FIFO_INF) & 0xffff) as usize >= MAX_FRAME + 8
    }

    /// Writes one frame as a single segment: command A (first and last segment, buffer size),
    /// command B (tag, frame length), then the bytes as little-endian words.
    fn transmit_frame(self, frame: &[u8]) {
        let len = frame.len() as u32;
        self.write(TX_DATA_FIFO, TX_CMD_A_FIRST_LAST | len);
        self.write(TX_DATA_FIFO, len);
        let mut chunks = frame.chunks_exact(4);
        for chunk in &mut chunks {
            self.write(TX_DATA_FIFO, u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 4];
            last[..rest.len()].copy_from_slice(rest);
            self.write(TX_DATA_FIFO, u32::from_le_bytes(last));
        }
    }

    fn discard(self, words: usize) {
        if words >= 4 {
            self.write(RX_DP_CTRL, RX_FFWD);
        } else {
            // The datasheet asks for plain reads below four words.
            for _ in 0..words {
                self.read(RX_DATA_FIFO);
            }
        }
    }
}

/// The chip at one base address, with one frame buffer each way.
pub(crate) struct Lan9118 {
    regs: Regs,
    rx: [u8; RX_BUFFER],
    tx: [u8; MAX_FRAME],
    mac: [u8; 6],
    /// Frames dropped as too long, too short or flagged in error by the MAC.
    pub(crate) dropped: u32,
}

impl Lan9118 {
    /// Takes the chip at `base`. Nothing is touched until [`Lan9118::init`].
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118's register block, and nothing else may use it
    /// (except [`ack_interrupt`] from its interrupt handler).
    pub(crate) const unsafe fn new(base: usize) -> Self {
        Self {
            regs: Regs { base },
            rx: [0; RX_BUFFER],
            tx: [0; MAX_FRAME],
            mac: [0; 6],
            dropped: 0,
        }
    }

    /// Resets the chip, reads its MAC address, enables receive, transmit and the RX interrupt.
    pub(crate) fn init(&mut self) -> Result<(), InitError> {
        let regs = self.regs;
        let test = regs.read(BYTE_TEST);
        if test != BYTE_TEST_VALUE {
            return Err(InitError::NoChip(test));
        }
        regs.write(HW_CFG, HW_CFG_SRST);
        let mut spins = 0u32;
        while regs.read(HW_CFG) & HW_CFG_SRST != 0 {
            spins += 1;
            if spins > 1_000_000 {
                return Err(InitError::ResetTimeout);
            }
        }
        // The MAC address the EEPROM loaded at reset (QEMU: the `-nic ...,mac=` one).
        let low = regs.mac_read(MAC_ADDRL).to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH).to_le_bytes();
        self.mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
        // Promiscuous mode (the reset default) is cleared: only our address and broadcast.
        regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
        regs.write(TX_CFG, TX_CFG_TX_ON);
        regs.write(INT_STS, u32::MAX);
        regs.write(INT_EN, INT_RSFL);
        regs.write(IRQ_CFG, IRQ_CFG_ENABLED_HIGH);
        Ok(())
    }

    /// The chip's ID_REV register (0x0118_0001 for a LAN9118 rev. 1).
    pub(crate) fn id_rev(&self) -> u32 {
        self.regs.read(ID_REV)
    }

    /// The station address.
    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether a received frame waits in the RX FIFO.
    pub(crate) fn rx_pending(&self) -> bool {
        self.regs.rx_pending()
    }

    /// Reads the next good frame into `self.rx`; its length without the FCS, or `None`.
    fn receive_frame(&mut self) -> Option<usize> {
        let regs = self.regs;
        while regs.rx_pending() {
            let status = regs.read(RX_STATUS_FIFO);
            // Bits 29:16: frame length including the 4-byte FCS. Bit 15: error summary.
            let len = ((status >> 16) & 0x3fff) as usize;
            let words = len.div_ceil(4);
            if status & (1 << 15) != 0 || len < 18 || words * 4 > self.rx.len() {
                self.dropped += 1;
                regs.discard(words);
                continue;
            }
            for chunk in self.rx[..words * 4].chunks_exact_mut(4) {
                chunk.copy_from_slice(&regs.read(RX_DATA_FIFO).to_le_bytes());
            }
            return Some(len - 4);
        }
        None
    }
}

/// Acknowledges the chip's RX interrupt so that its level-triggered line drops; called from the
/// interrupt handler, whose only job is to wake the core from `wfi`. The main loop reads frames.
///
/// # Safety
/// `base` must be the register block of the chip whose interrupt this is. INT_STS is
/// write-one-to-clear, so this write cannot disturb the main loop's use of the chip.
pub(crate) unsafe fn ack_interrupt(base: usize) {
    Regs { base }.write(INT_STS, INT_RSFL);
}

/// One received frame, lent to smoltcp.
pub(crate) struct RxToken<'a> {
    frame: &'a [u8],
}

/// Room for one frame to send.
pub(crate) struct TxToken<'a> {
    regs: Regs,
    buffer: &'a mut [u8; MAX_FRAME],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let result = f(&mut self.buffer[..len]);
        self.regs.transmit_frame(&self.buffer[..len]);
        result
    }
}

impl phy::Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // A reply may follow the frame: receive only when it could be sent.
        if !self.regs.tx_room() {
            return None;
        }
        let len = self.receive_frame()?;
        let Self { regs, rx, tx, .. } = self;
        Some((RxToken { frame: &rx[..len] }, TxToken { regs: *regs, buffer: tx }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if !self.regs.tx_room() {
            return None;
        }
        Some(TxToken { regs: self.regs, buffer: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        // The LAN9118 has no checksum offload (the LAN9220 has; QEMU models the 9118).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Both;
        checksum.tcp = Checksum::Both;
        caps.checksum = checksum;
        caps
    }
}
