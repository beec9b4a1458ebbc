//! A shard: one [`Engine`] and its connections, behind a lock held for one step at a time.
//! The thread that has an input for it (a connection's reader or writer, another shard's
//! stepping thread) runs the step itself when the lock is free; its engine thread fires the
//! timers and takes the inputs that found the shard busy (see `inbox.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use musqratt_engine::{Action, ConnectionId, Engine, Input, ShardId};

use crate::conn::{ConnHandle, ReadCredit};
use crate::inbox::{Counters, ForwardCredit, Inboxes};
use musqratt_kit::Stack;

/// What a shard is given. The mailbox of a shard is FIFO and taken out before any input handled
/// in person, so the order in which one thread hands inputs over is the order in which the shard
/// sees them, which keeps MQTT's ordering on connections and on the links between shards.
#[derive(Debug)]
pub(crate) enum ShardInput {
    /// An input for the engine as it is (`Written`, `Closed`, `Datagram`).
    Engine(Input),
    /// Bytes a reader read, for `Input::Data` (through the connection's layers first when
    /// `layered`); the credit goes back to the reader when the message is dropped, after the
    /// engine took the bytes.
    Read { conn: ConnectionId, bytes: BytesMut, credit: ReadCredit, layered: bool },
    /// Bytes of a layered connection's queue its writer thread wrote, for `Input::Written`
    /// once mapped back to the engine's bytes by its stack.
    LayeredWritten { conn: ConnectionId, bytes: usize },
    /// `Input::FromShard` from another shard; the credit goes back to that shard when the
    /// message is dropped, after the engine took it.
    Forwarded { input: Input, credit: ForwardCredit },
    /// A connection accepted by a listener and given to this shard.
    Accepted { conn: ConnectionId, handle: ConnHandle },
    /// A connection another shard handed over (`Action::Handoff`), with the bytes to feed as
    /// `Input::Adopted`, and whether its reader had already reported it closed.
    Adopt { conn: ConnectionId, handle: ConnHandle, bytes: BytesMut, closed: bool },
    /// The authenticator answered after `Action::Authenticate` was handled: its answers wait in
    /// the shard's `Decisions`.
    Decided,
    /// The `$SYS` tree to publish as the broker (`crate::sys`; shard 0 only).
    Sys(Vec<(String, String)>),
}

pub(crate) use musqratt_kit::Clock;
use musqratt_kit::{Auth, Decisions, EventLog};

/// How many times a step takes the mail that came while it ran, before it leaves the rest to the
/// engine thread (woken for it).
const MAX_ROUNDS: u32 = 8;

/// Who is running a step: the shard's engine thread, a connection thread with an input for it,
/// or the thread of another shard's step delivering a message in person (which mails what that
/// step sends further, instead of stepping a third shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stepper {
    EngineThread,
    Connection,
    Peer,
}

/// One shard's state: its engine and the connections it owns. Only the thread holding the
/// shard's lock touches it (the engine's single-owner rule, kept by a lock held for one step).
pub(crate) struct Shard {
    id: ShardId,
    engine: Engine,
    conns: HashMap<ConnectionId, ConnHandle>,
    /// Inputs taken out of the mailbox (or given in person) and not handled yet: a handoff
    /// looks through them for the bytes of the connection it moves.
    pending: VecDeque<ShardInput>,
    /// MQTT-SN sockets, when the broker listens on UDP.
    udp: Option<Arc<crate::udp::Udp>>,
    /// Shut down: further inputs are dropped.
    stopped: bool,
    /// Who may connect, and where its late answers wait (see `ShardInput::Decided`).
    auth: Auth,
    decisions: Decisions,
    /// Engine events to the log.
    events: EventLog,
    /// The engine's actions, a batch's `Action::Store` records written (with `[persistence]`)
    /// before any other action of the batch is carried out (ADR 17).
    steps: crate::store::Steps,
    /// Joins consecutive sends to a layered connection (`musqratt_kit::SendJoiner`).
    joiner: musqratt_kit::SendJoiner,
}

impl core::fmt::Debug for Shard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).field("conns", &self.conns.len()).finish()
    }
}

impl Shard {
    pub(crate) fn new(engine: Engine) -> Self {
        let id = engine.config().shard;
        Self {
            id,
            engine,
            conns: HashMap::new(),
            pending: VecDeque::new(),
            udp: None,
            stopped: false,
            // Answers at once: no late answer to be woken for.
            auth: Auth::default(),
            decisions: Decisions::new(|| {}),
            events: EventLog::new(id),
            #[allow(clippy::default_constructed_unit_structs)] // a unit struct without `persistence`
            steps: crate::store::Steps::default(),
            joiner: musqratt_kit::SendJoiner::new(),
        }
    }

    /// Writes the engine's records to a store (`[persistence]`).
    pub(crate) fn with_steps(mut self, steps: crate::store::Steps) -> Self {
        self.steps = steps;
        self
    }

    /// Carries out what the engine asked before the first input: a restored session's
    /// subscriptions announced to the other shards, before any client can publish.
    pub(crate) fn announce(&mut self, shards: &Arc<Inboxes>) {
        self.dispatch(shards, Stepper::EngineThread);
    }

    /// Asks `auth` about connections; `decisions` must wake the shard with
    /// `ShardInput::Decided`.
    pub(crate) fn with_auth(mut self, auth: Auth, decisions: Decisions) -> Self {
        self.auth = auth;
        self.decisions = decisions;
        self
    }

    /// Serves MQTT-SN on these sockets too.
    pub(crate) fn with_udp(mut self, udp: Option<Arc<crate::udp::Udp>>) -> Self {
        self.udp = udp;
        self
    }

    /// The shard has shut down.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    fn index(&self) -> usize {
        usize::from(self.id.0)
    }

    /// One step, under the shard's lock: the mail first (older than `input`), then `input`,
    /// then the timers that are due; every action is carried out before it returns. Sends are
    /// written to the sockets from here when they can be at once.
    pub(crate) fn step(&mut self, shards: &Arc<Inboxes>, input: Option<ShardInput>, by: Stepper) {
        if self.stopped {
            return;
        }
        let mailbox = &shards[self.index()].mailbox;
        self.pending.extend(mailbox.begin());
        self.pending.extend(input);
        // Mail that comes while we step is ours too (its sender found the shard busy), for a
        // few rounds; then the engine thread is woken for it, so that a connection's thread
        // does not stay on other connections' work for long.
        let mut rounds = 0;
        loop {
            while let Some(input) = self.pending.pop_front() {
                self.handle(shards, input);
                self.dispatch(shards, by);
            }
            let now = shards.clock.now();
            if self.engine.poll_timeout().is_some_and(|deadline| deadline <= now) {
                self.engine.handle_timeout(now);
                self.dispatch(shards, by);
            }
            rounds += 1;
            let engine_thread = by == Stepper::EngineThread;
            // The engine thread too goes back to its wait (which sees the mail left), where it
            // notices a shutdown.
            let more = rounds < MAX_ROUNDS;
            match mailbox.finish(self.engine.poll_timeout(), engine_thread, more) {
                Some(mail) => self.pending.extend(mail),
                None => return,
            }
        }
    }

    /// Shows a reader (`crate::sys`) the engine and its connections' peer addresses.
    pub(crate) fn visit(&self, visit: &mut dyn FnMut(&Engine, musqratt_kit::PeerOf<'_>)) {
        visit(&self.engine, &|conn| self.conns.get(&conn).and_then(|handle| handle.peer));
    }

    fn handle(&mut self, shards: &Inboxes, input: ShardInput) {
        let now = shards.clock.now();
        match input {
            ShardInput::Engine(input) => {
                if let Input::Closed { conn } = &input {
                    // Dropping the writer's sender ends the writer thread.
                    self.conns.remove(conn);
                }
                self.engine.handle_input(now, input);
            }
            ShardInput::Read { conn, bytes, credit, layered: false } => {
                self.engine.handle_input(now, Input::Data { conn, bytes });
                drop(credit);
            }
            ShardInput::Read { conn, bytes, credit, layered: true } => {
                self.read_layered(shards, conn, bytes);
                drop(credit);
            }
            ShardInput::LayeredWritten { conn, bytes } => {
                let handle = self.conns.get_mut(&conn);
                let stack = handle.and_then(|handle| handle.stack.as_mut());
                let bytes = stack.map_or(0, |stack| stack.written(bytes));
                if bytes > 0 {
                    self.engine.handle_input(now, Input::Written { conn, bytes });
                }
            }
            ShardInput::Forwarded { input, credit } => {
                self.engine.handle_input(now, input);
                drop(credit);
            }
            ShardInput::Accepted { conn, handle } => {
                self.conns.insert(conn, handle);
                self.engine.handle_input(now, Input::Accepted { conn });
            }
            ShardInput::Sys(tree) => {
                for (topic, payload) in tree {
                    self.engine.publish_broker_message(now, topic.into(), payload.into());
                }
            }
            ShardInput::Decided => {
                for (conn, decision) in self.decisions.take() {
                    self.engine.handle_input(now, Input::AuthDecision { conn, decision });
                }
            }
            ShardInput::Adopt { conn, handle, bytes, closed } => {
                tracing::debug!(shard = %self.id, %conn, "adopted connection");
                self.engine.handle_input(now, Input::Adopted { conn, bytes });
                if closed {
                    self.engine.handle_input(now, Input::Closed { conn });
                } else {
                    self.conns.insert(conn, handle);
                }
            }
        }
    }

    /// Bytes read from a layered connection: through its layers, then to the engine; what the
    /// layers answer at once (a handshake, a pong) is sent first. A layer that fails (or the
    /// peer closing it) closes the connection; its reader then reports it closed.
    fn read_layered(&mut self, shards: &Inboxes, conn: ConnectionId, bytes: BytesMut) {
        let Some(handle) = self.conns.get_mut(&conn) else { return };
        let Some(mut stack) = handle.stack.take() else { return };
        let mut socket = 0;
        let counters = &shards.counters;
        let read = stack.read(bytes, |chunk| socket += handle.send(chunk, counters));
        let written = stack.written(socket);
        handle.stack = Some(stack);
        let now = shards.clock.now();
        if written > 0 {
            self.engine.handle_input(now, Input::Written { conn, bytes: written });
        }
        // What came before an end (a DISCONNECT before a close frame) is the engine's first.
        if let Some(bytes) = read.data {
            self.engine.handle_input(now, Input::Data { conn, bytes });
        }
        if let Some(error) = read.end {
            tracing::debug!(shard = %self.id, %conn, %error, "connection closed");
            if let Some(handle) = self.conns.remove(&conn) {
                handle.close();
            }
        }
    }

    /// Carries out every action the engine has for us.
    fn dispatch(&mut self, shards: &Arc<Inboxes>, by: Stepper) {
        loop {
            let conns = &self.conns;
            let Some(action) = self.joiner.next(
                || self.steps.poll_action(&mut self.engine),
                |conn| conns.get(&conn).is_some_and(|handle| handle.stack.is_some()),
            ) else {
                break;
            };
            match action {
                Action::Send { conn, bytes } => self.send(shards, conn, bytes),
                Action::Close { conn } => {
                    if let Some(mut handle) = self.conns.remove(&conn) {
                        // The layers' last bytes (close_notify, a close frame) go out last.
                        if let Some(mut stack) = handle.stack.take() {
                            stack.close(|chunk| {
                                handle.send(chunk, &shards.counters);
                            });
                        }
                        handle.close();
                    }
                }
                Action::Handoff { conn, to, bytes } => self.handoff(shards, conn, to, bytes),
                Action::ToShard { to, message } => {
                    let input = Input::FromShard { from: self.id, message };
                    self.deliver(shards, usize::from(to.0), input, by);
                }
                Action::Authenticate { conn, request } => {
                    // A late answer comes as `ShardInput::Decided`.
                    let handle = self.conns.get(&conn);
                    let (socket, stack) = match handle {
                        Some(handle) => (handle.peer, handle.stack.as_deref()),
                        None => (None, None),
                    };
                    let decision = self.auth.ask_for(conn, socket, stack, request, &self.decisions);
                    if let Some(decision) = decision {
                        let now = shards.clock.now();
                        self.engine.handle_input(now, Input::AuthDecision { conn, decision });
                    }
                }
                Action::SendDatagram { peer, bytes } => {
                    if let Some(udp) = &self.udp {
                        udp.send(peer, &bytes);
                    }
                }
                Action::HandoffPeer { peer, to, bytes } => {
                    if let Some(udp) = &self.udp {
                        udp.route(peer, musqratt_engine::wireless_node(&bytes), to);
                    }
                    let input = ShardInput::Engine(Input::Datagram { peer, bytes });
                    shards.mail(usize::from(to.0), input);
                }
                Action::ReleasePeer { peer, node } => {
                    if let Some(udp) = &self.udp {
                        udp.release(peer, &node, self.id);
                    }
                }
                // No broadcast address is configured in this runtime (docs/MQTT-SN.md).
                Action::SnBroadcast { .. } => {}
                Action::Event(event) => self.events.log(&event),
                other => tracing::warn!(shard = %self.id, ?other, "unknown engine action ignored"),
            }
        }
    }

    /// Writes to the socket at once what it takes, reporting that to the engine; the rest goes
    /// to the connection's writer thread (see `ConnHandle::send`).
    fn send(&mut self, shards: &Inboxes, conn: ConnectionId, bytes: Bytes) {
        let Some(handle) = self.conns.get_mut(&conn) else { return };
        // A writer that is gone has shut the socket: its reader reports Closed.
        let written = match handle.stack.take() {
            None => handle.send(bytes, &shards.counters),
            Some(stack) => {
                let Some(written) = Self::send_layered(handle, stack, bytes, &shards.counters)
                else {
                    // A layer failed: close; the reader reports it closed.
                    if let Some(handle) = self.conns.remove(&conn) {
                        handle.close();
                    }
                    return;
                };
                written
            }
        };
        if written > 0 {
            self.engine.handle_input(shards.clock.now(), Input::Written { conn, bytes: written });
        }
    }

    /// A send through the connection's layers: returns the engine's bytes written at once
    /// (`None`: a layer failed). The stack goes back into the handle.
    fn send_layered(
        handle: &mut ConnHandle,
        mut stack: Box<Stack>,
        bytes: Bytes,
        counters: &Counters,
    ) -> Option<usize> {
        let mut socket = 0;
        let result = stack.write(bytes, |chunk| socket += handle.send(chunk, counters));
        let written = stack.written(socket);
        handle.stack = Some(stack);
        if let Err(error) = result {
            tracing::debug!(%error, "connection closed");
            return None;
        }
        Some(written)
    }

    /// A message for shard `to`: handled in person when that shard is idle (its lock free),
    /// after whatever mail it has (older messages from us among it), so the messages between two
    /// shards keep their order; mailed otherwise. Never waits for the other shard's lock while
    /// holding ours: `try_lock` only. A step run in person mails what it sends further, and
    /// a thread spends at most its share of time in person (`take_in_person_turn`).
    fn deliver(&mut self, shards: &Arc<Inboxes>, to: usize, input: Input, by: Stepper) {
        // Timed against this thread's share of work done in person (ADR 10): under load the
        // other shard's engine thread takes its mail and the work is shared.
        if by != Stepper::Peer
            && let Some(_turn) = musqratt_kit::take_in_person_turn()
            && let Some(mut peer) = shards.get(to).and_then(super::inbox::ShardCell::try_lock)
            && !peer.stopped
        {
            Counters::add(&shards.counters.peer_steps);
            peer.step(shards, Some(ShardInput::Engine(input)), Stepper::Peer);
            return;
        }
        shards.forward(self.index(), to, input);
    }

    /// Moves a connection to shard `to`. Its threads stay where they are; only the route of
    /// their future inputs changes. With the route locked (so the reader and writer cannot mail
    /// us more), everything they mailed here so far is taken out of our mailbox: its bytes join
    /// the handoff, so that `to` sees them after `Adopt` and before anything the reader gives it.
    /// (A reader stepping a shard in person holds that shard's lock, which we hold.)
    fn handoff(&mut self, shards: &Inboxes, conn: ConnectionId, to: ShardId, mut bytes: BytesMut) {
        let Some(mut handle) = self.conns.remove(&conn) else { return };
        let to = usize::from(to.0);
        if to >= shards.len() {
            return;
        }
        tracing::debug!(shard = %self.id, %conn, to, "handing connection over");
        let route = Arc::clone(&handle.route);
        let mut shard = route.lock();
        self.pending.extend(shards[self.index()].mailbox.take());
        let mut closed = false;
        let mut drained = 0;
        // Bytes of a layered connection, still as read: decoded below, in order.
        let mut raw = Vec::new();
        self.pending.retain_mut(|input| match input {
            ShardInput::Read { conn: c, bytes: more, layered, .. } if *c == conn => {
                drained += more.len();
                if *layered {
                    raw.push(core::mem::take(more));
                } else {
                    bytes.extend_from_slice(more);
                }
                false
            }
            ShardInput::LayeredWritten { conn: c, .. } => *c != conn,
            ShardInput::Engine(Input::Closed { conn: c }) if *c == conn => {
                closed = true;
                false
            }
            ShardInput::Engine(Input::Written { conn: c, .. }) => *c != conn,
            _ => true,
        });
        if let Some(mut stack) = handle.stack.take() {
            for more in raw {
                let counters = &shards.counters;
                let read = stack.read(more, |chunk| {
                    handle.send(chunk, counters);
                });
                bytes.extend_from_slice(read.data.as_deref().unwrap_or_default());
                closed |= read.end.is_some();
            }
            handle.stack = Some(stack);
        }
        tracing::debug!(shard = %self.id, %conn, drained, closed, "connection moved");
        if shards.mail(to, ShardInput::Adopt { conn, handle, bytes, closed }) {
            *shard = to;
        }
    }

    /// Closes every connection still here: the engine tells MQTT 5.0 clients DISCONNECT 0x8B
    /// Server shutting down and closes them; the writers flush that before shutting down.
    pub(crate) fn shutdown(&mut self, shards: &Arc<Inboxes>) {
        self.engine.handle_input(shards.clock.now(), Input::Shutdown);
        self.dispatch(shards, Stepper::EngineThread);
        for (_, handle) in self.conns.drain() {
            handle.close();
        }
        self.stopped = true;
        // Adoptions in flight to us are dropped with the mail; dropping their handles ends
        // their writers, which shut their sockets down.
        self.pending.clear();
        drop(shards[self.index()].mailbox.close());
    }
}

/// A shard's engine thread: steps the shard when there is mail or a timer is due, and waits on
/// its mailbox otherwise, until the broker stops.
pub(crate) fn run(shards: &Arc<Inboxes>, index: usize) {
    let cell = &shards[index];
    tracing::debug!(shard = index, "engine thread started");
    loop {
        cell.lock().step(shards, None, Stepper::EngineThread);
        if cell.mailbox.wait(shards.clock) {
            break;
        }
    }
    cell.lock().shutdown(shards);
    tracing::debug!(shard = index, "engine thread stopped");
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::mpsc;

    use musqratt_engine::Config;

    use super::*;
    use crate::conn::Route;

    /// Two shards, not running: the tests step them by hand.
    pub(crate) fn two_shards() -> Arc<Inboxes> {
        let shards = (0..2u16)
            .map(|index| {
                let mut config = Config::default();
                config.shard = ShardId(index);
                config.shard_count = 2;
                Shard::new(Engine::new(config))
            })
            .collect();
        Inboxes::new(shards, Clock::new())
    }

    /// The engine's owner shard out of 2.
    fn owner_of(client_id: &str) -> u64 {
        u64::from(musqratt_engine::owner_of(client_id, 2).0)
    }

    fn connect_bytes(id: &str) -> Vec<u8> {
        let mut connect = vec![0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 2, 0, 0];
        connect.push(0);
        connect.push(u8::try_from(id.len()).unwrap());
        connect.extend_from_slice(id.as_bytes());
        connect[1] = u8::try_from(connect.len() - 2).unwrap();
        connect
    }

    /// Bytes the reader mailed while the shard was busy, still in its mailbox when the shard
    /// hands the connection over, travel with the handoff, and the route points at the new
    /// shard afterwards.
    #[test]
    fn handoff_takes_mailed_bytes_along() {
        let shards = two_shards();
        let id = (0..).map(|i| format!("c{i}")).find(|id| owner_of(id) == 1).unwrap();
        let conn = ConnectionId(1);
        let route = Arc::new(Route::new(0, Arc::clone(&shards)));
        let (writer, _writer_rx) = mpsc::channel();
        let handle = ConnHandle::queued_only(writer, Arc::clone(&route));
        let connect = connect_bytes(&id);
        {
            // Another thread is stepping shard 0: the reader's bytes are mailed.
            let mut busy = shards[0].lock();
            assert!(shards.mail(0, ShardInput::Accepted { conn, handle }));
            assert!(route.send_read(conn, BytesMut::from(&connect[..])));
            assert!(route.send_read(conn, BytesMut::from(&[0xc0, 0x00][..])));
            assert_eq!(shards.counters.direct_steps.load(core::sync::atomic::Ordering::Relaxed), 0);
            // Its step takes the mail: CONNECT hands the connection to shard 1.
            busy.step(&shards, None, Stepper::EngineThread);
        }
        assert_eq!(*route.lock(), 1);
        let mut mail = shards[1].mailbox.take();
        assert_eq!(mail.len(), 1);
        match mail.pop_front().unwrap() {
            ShardInput::Adopt { conn: c, bytes, closed, .. } => {
                assert_eq!(c, conn);
                assert!(!closed);
                let mut expected = connect.clone();
                expected.extend_from_slice(&[0xc0, 0x00]); // PINGREQ, mailed behind CONNECT
                assert_eq!(&bytes[..], &expected[..]);
            }
            other => panic!("expected Adopt, got {other:?}"),
        }
    }

    /// A reader whose shard is idle steps it itself; its CONNECT hands the connection over from
    /// within that step, and the next bytes go to the new shard, after the adoption.
    #[test]
    fn an_idle_shard_is_stepped_by_the_reader() {
        let shards = two_shards();
        let id = (0..).map(|i| format!("d{i}")).find(|id| owner_of(id) == 1).unwrap();
        let conn = ConnectionId(1);
        let route = Arc::new(Route::new(0, Arc::clone(&shards)));
        let (writer, writer_rx) = mpsc::channel();
        let handle = ConnHandle::queued_only(writer, Arc::clone(&route));
        assert!(shards.mail(0, ShardInput::Accepted { conn, handle }));
        assert!(route.send_read(conn, BytesMut::from(&connect_bytes(&id)[..])));
        assert_eq!(*route.lock(), 1, "handed over in the reader's step");
        // Shard 1 is idle too: the reader steps it, adoption first (CONNACK), then PINGREQ.
        assert!(route.send_read(conn, BytesMut::from(&[0xc0, 0x00][..])));
        let counters = &shards.counters;
        assert_eq!(counters.direct_steps.load(core::sync::atomic::Ordering::Relaxed), 2);
        let sent: Vec<u8> = writer_rx
            .try_iter()
            .flat_map(|msg| match msg {
                crate::conn::WriterMsg::Data(bytes) => bytes.to_vec(),
                crate::conn::WriterMsg::Close => panic!("closed"),
            })
            .collect();
        assert_eq!(sent, [0x20, 0x02, 0x00, 0x00, 0xd0, 0x00], "CONNACK then PINGRESP");
    }
}
