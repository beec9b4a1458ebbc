//! The board host: a fixed set of smoltcp TCP sockets listening on 1883, each serving one MQTT
//! connection of one [`Engine`], and the engine's actions carried out on them.
//!
//! This is the runtime contract of `musqratt-engine` (its crate docs, "What a runtime must
//! do") kept by a single-threaded poll loop: one engine (one shard), bytes in as read, every
//! action drained after every input, `Written` reported as bytes enter a socket's send buffer,
//! `Closed` fed when the peer goes, and time passed in with every call.
//!
//! A socket goes round four states ([`Slot`]): listening, open (an engine connection), draining
//! (the engine closed it: send what is queued, then FIN) and closing (waiting for smoltcp to
//! finish the TCP close). A client that finds no listening socket is refused with RST: the
//! number of sockets is the board's connection limit.

use alloc::collections::VecDeque;

use musqratt_engine::bytes::{Bytes, BytesMut};
use musqratt_engine::{Action, ConnectionId, Engine, Event, Input, Instant};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

use crate::{heap_free, mem_stats};

/// The MQTT port the sockets listen on.
pub(crate) const PORT: u16 = 1883;
/// A new connection is accepted only with this much heap free: below it the board refuses
/// clients (RST) rather than run out of memory serving them.
const ADMIT_FREE: usize = 16 * 1024;
/// Bytes read are handed to the engine only with this much heap free besides their own
/// buffer; below it the connection they came on is closed (the client pushing memory up is
/// most likely the one sending). The engine's own limits bound memory per session, not the
/// retained store or the number of sessions: this keeps an allocation failure (a panic) away.
const INPUT_FREE: usize = 6 * 1024;
/// How long a socket may take to finish a TCP close before it is aborted.
const CLOSE_TIMEOUT_US: u64 = 10_000_000;

/// Where one socket stands.
enum Slot {
    /// Listening (or in the middle of a handshake): no engine connection yet.
    Listening,
    /// Serving an engine connection; `out` holds what the socket's send buffer could not take.
    Open { conn: ConnectionId, out: VecDeque<Bytes> },
    /// The engine closed the connection: flush `out`, then close the socket.
    Draining { out: VecDeque<Bytes> },
    /// `close()` called at `since`: waiting for the socket to reach Closed (or TimeWait).
    Closing { since: Instant },
}

/// The sockets and the engine.
pub(crate) struct Broker {
    engine: Engine,
    handles: [SocketHandle; crate::SOCKETS],
    slots: [Slot; crate::SOCKETS],
    next_conn: u64,
    /// Connections accepted since boot.
    pub accepted: u64,
}

/// What a slot's socket must be set to after `listen`: no Nagle and no delayed ACK, as a
/// broker's small packets want (the Linux runtimes set TCP_NODELAY too).
fn tune(socket: &mut tcp::Socket<'_>) {
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(None);
}

impl Broker {
    /// Takes the engine and the sockets (already in `sockets`), and starts them listening.
    pub(crate) fn new(
        engine: Engine,
        handles: [SocketHandle; crate::SOCKETS],
        sockets: &mut SocketSet<'_>,
    ) -> Self {
        for &handle in &handles {
            let socket = sockets.get_mut::<tcp::Socket<'_>>(handle);
            socket.listen(PORT).expect("port 1883 and a closed socket");
            tune(socket);
        }
        Self {
            engine,
            handles,
            slots: core::array::from_fn(|_| Slot::Listening),
            next_conn: 1,
            accepted: 0,
        }
    }

    /// Open engine connections.
    pub(crate) fn open(&self) -> usize {
        self.slots.iter().filter(|slot| matches!(slot, Slot::Open { .. })).count()
    }

    /// One round: accept, read, fire due timeouts, carry out actions, write. Returns whether
    /// anything moved (then smoltcp should be polled again before the board sleeps).
    pub(crate) fn step(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let mut moved = false;
        for i in 0..crate::SOCKETS {
            moved |= self.service(i, now, sockets);
        }
        if self.engine.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.engine.handle_timeout(now);
            moved = true;
        }
        // Actions, then writes; a write reported with `Written` may release queued messages
        // (more actions), so go round until both are quiet.
        loop {
            moved |= self.apply_actions();
            let mut wrote = false;
            for i in 0..crate::SOCKETS {
                wrote |= self.flush(i, now, sockets);
            }
            if !wrote {
                break;
            }
            moved = true;
        }
        moved
    }

    /// Accepts, reads and notices closes on socket `i`.
    fn service(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.handles[i]);
        match self.slots[i] {
            Slot::Listening => match socket.state() {
                State::Listen | State::SynReceived => false,
                State::Closed => {
                    // A handshake that failed (RST): listen again.
                    let _ = socket.listen(PORT);
                    tune(socket);
                    false
                }
                _ if heap_free() < ADMIT_FREE => {
                    socket.abort();
                    crate::log!("refused a client: heap free={}", heap_free());
                    true
                }
                _ => {
                    let conn = ConnectionId(self.next_conn);
                    self.next_conn += 1;
                    self.accepted += 1;
                    self.slots[i] = Slot::Open { conn, out: VecDeque::new() };
                    self.engine.handle_input(now, Input::Accepted { conn });
                    let (used, peak, stack) = mem_stats();
                    crate::log!(
                        "t={}ms accept conn={} socket={} open={} heap used={} peak={} stack={}",
                        now.as_micros() / 1000,
                        conn.0,
                        i,
                        self.open(),
                        used,
                        peak,
                        stack
                    );
                    // Its first bytes may already be here.
                    self.read(i, now, sockets);
                    true
                }
            },
            Slot::Open { .. } => self.read(i, now, sockets),
            Slot::Draining { .. } => false,
            Slot::Closing { since } => match socket.state() {
                State::Closed => {
                    let _ = socket.listen(PORT);
                    tune(socket);
                    self.slots[i] = Slot::Listening;
                    true
                }
                State::TimeWait if !self.slots.iter().any(|s| matches!(s, Slot::Listening)) => {
                    // TIME-WAIT holds a socket for 10 s after a close we started; with no
                    // other socket listening, a new client matters more than stray segments
                    // of an old connection on a point-to-point link.
                    socket.abort();
                    true
                }
                _ if now.as_micros().saturating_sub(since.as_micros()) > CLOSE_TIMEOUT_US => {
                    // A peer that never finishes the close (FIN-WAIT-2 forever, a lost final
                    // ACK) must not keep the socket from the next client.
                    socket.abort();
                    true
                }
                _ => false,
            },
        }
    }

    /// Reads what socket `i` holds into the engine; notices the peer's close.
    fn read(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Slot::Open { conn, .. } = self.slots[i] else { return false };
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.handles[i]);
        let mut moved = false;
        let mut starved = false;
        while socket.can_recv() {
            if heap_free() < INPUT_FREE + socket.recv_queue() {
                starved = true;
                break;
            }
            let bytes = socket.recv(|data| (data.len(), BytesMut::from(&data[..])));
            match bytes {
                Ok(bytes) if !bytes.is_empty() => {
                    self.engine.handle_input(now, Input::Data { conn, bytes });
                    moved = true;
                }
                _ => break,
            }
        }
        // The peer closed (FIN after all its data, or RST), or the connection died.
        let gone = starved
            || match socket.state() {
                State::Closed | State::TimeWait | State::Closing | State::LastAck => true,
                State::CloseWait => socket.recv_queue() == 0,
                _ => !socket.is_open(),
            };
        if gone {
            self.engine.handle_input(now, Input::Closed { conn });
            if starved {
                crate::log!(
                    "closed conn={}: heap free={} too low for its input",
                    conn.0,
                    heap_free()
                );
                socket.abort();
            } else if socket.state() != State::Closed {
                socket.close();
            }
            self.slots[i] = Slot::Closing { since: now };
            if !starved {
                crate::log!("closed conn={} by peer, heap used={}", conn.0, mem_stats().0);
            }
            moved = true;
        }
        moved
    }

    /// Carries out every action the engine has; whether there was any.
    fn apply_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.engine.poll_action() {
            any = true;
            match action {
                Action::Send { conn, bytes } => {
                    if let Some(Slot::Open { out, .. }) = self.slot_of(conn) {
                        out.push_back(bytes);
                    }
                }
                Action::Close { conn } => {
                    if let Some(slot) = self.slot_of(conn) {
                        let Slot::Open { out, .. } = core::mem::replace(slot, Slot::Listening)
                        else {
                            unreachable!("slot_of finds open slots only")
                        };
                        *slot = Slot::Draining { out };
                        crate::log!("close conn={} by broker", conn.0);
                    }
                }
                Action::Event(Event::MessageDropped { .. }) => {}
                // One shard, no authentication hook, no persistence, no MQTT-SN: the engine
                // emits nothing else under this configuration; events are not logged (a line
                // per message would dominate the time spent).
                _ => {}
            }
        }
        any
    }

    fn slot_of(&mut self, conn: ConnectionId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|slot| matches!(slot, Slot::Open { conn: c, .. } if *c == conn))
    }

    /// Moves queued bytes of slot `i` into its socket's send buffer and reports them written.
    fn flush(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.handles[i]);
        let (out, conn) = match &mut self.slots[i] {
            Slot::Open { conn, out } => (out, Some(*conn)),
            Slot::Draining { out } => (out, None),
            _ => return false,
        };
        let mut written = 0usize;
        while let Some(front) = out.front_mut() {
            match socket.send_slice(front) {
                Ok(n) if n == front.len() => {
                    written += n;
                    out.pop_front();
                }
                Ok(n) => {
                    written += n;
                    let _ = front.split_to(n);
                    break;
                }
                Err(_) => break,
            }
        }
        let drained = out.is_empty();
        match conn {
            Some(conn) if written > 0 => {
                self.engine.handle_input(now, Input::Written { conn, bytes: written });
            }
            None if drained || !socket.may_send() => {
                // Everything the engine sent before its Close is in the socket: FIN after it.
                socket.close();
                self.slots[i] = Slot::Closing { since: now };
            }
            _ => {}
        }
        written > 0
    }
}
