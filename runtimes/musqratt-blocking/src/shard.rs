//! A shard's engine thread: owns one [`Engine`], waits on its channel until the engine's next
//! deadline, feeds inputs in and carries actions out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use bytes::BytesMut;
use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{Action, AuthDecision, ConnectionId, Engine, Event, Input, Instant, ShardId};

use crate::conn::{ConnHandle, ReadCredit, WriterMsg};
use crate::inbox::{ForwardCredit, Inboxes};

/// What an engine thread receives. One channel per shard, FIFO: the order in which one thread
/// sends is the order in which the shard sees its messages, which keeps MQTT's ordering on the
/// links between shards.
#[derive(Debug)]
pub(crate) enum ShardInput {
    /// An input for the engine as it is (`Written`, `Closed`, `FromShard`).
    Engine(Input),
    /// Bytes a reader read, for `Input::Data`; the credit goes back to the reader when the
    /// message is dropped, after the engine took the bytes.
    Read { conn: ConnectionId, bytes: BytesMut, credit: ReadCredit },
    /// `Input::FromShard` from another shard; the credit goes back to that shard when the
    /// message is dropped, after the engine took it.
    Forwarded { input: Input, credit: ForwardCredit },
    /// A connection accepted by a listener and given to this shard.
    Accepted { conn: ConnectionId, handle: ConnHandle },
    /// A connection another shard handed over (`Action::Handoff`), with the bytes to feed as
    /// `Input::Adopted`, and whether its reader had already reported it closed.
    Adopt { conn: ConnectionId, handle: ConnHandle, bytes: BytesMut, closed: bool },
    /// Close every connection and stop.
    Shutdown,
}

/// The broker's clock: microseconds since it started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(std::time::Instant);

impl Clock {
    pub(crate) fn new() -> Self {
        Self(std::time::Instant::now())
    }

    fn now(self) -> Instant {
        Instant::from_micros(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// One shard: its engine, its connections' writers, its inbox and every shard's inbox.
pub(crate) struct Shard {
    id: ShardId,
    engine: Engine,
    clock: Clock,
    rx: Receiver<ShardInput>,
    shards: Arc<Inboxes>,
    conns: HashMap<ConnectionId, ConnHandle>,
    /// Inputs taken off the channel early (while handing a connection over), to be handled
    /// before anything still in the channel.
    pending: VecDeque<ShardInput>,
    /// MQTT-SN sockets, when the broker listens on UDP.
    udp: Option<Arc<crate::udp::Udp>>,
}

impl Shard {
    pub(crate) fn new(
        engine: Engine,
        clock: Clock,
        rx: Receiver<ShardInput>,
        shards: Arc<Inboxes>,
    ) -> Self {
        let id = engine.config().shard;
        Self {
            id,
            engine,
            clock,
            rx,
            shards,
            conns: HashMap::new(),
            pending: VecDeque::new(),
            udp: None,
        }
    }

    /// Serves MQTT-SN on these sockets too.
    pub(crate) fn with_udp(mut self, udp: Option<Arc<crate::udp::Udp>>) -> Self {
        self.udp = udp;
        self
    }

    /// The engine thread's loop, until `Shutdown` arrives.
    pub(crate) fn run(mut self) {
        tracing::debug!(shard = %self.id, "engine thread started");
        while let Some(input) = self.next_input() {
            if matches!(input, ShardInput::Shutdown) {
                break;
            }
            self.handle(input);
            self.dispatch();
        }
        self.shutdown();
        tracing::debug!(shard = %self.id, "engine thread stopped");
    }

    /// The next input, firing deadlines while waiting for one. `None` when every sender is gone.
    fn next_input(&mut self) -> Option<ShardInput> {
        loop {
            if let Some(input) = self.pending.pop_front() {
                return Some(input);
            }
            let Some(deadline) = self.engine.poll_timeout() else {
                return self.rx.recv().ok();
            };
            let now = self.clock.now();
            if deadline > now {
                // The only timed wait of the runtime: a condition variable, not a socket.
                let wait = deadline.saturating_duration_since(now);
                match self.rx.recv_timeout(wait) {
                    Ok(input) => return Some(input),
                    Err(RecvTimeoutError::Disconnected) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            self.engine.handle_timeout(self.clock.now());
            self.dispatch();
        }
    }

    fn handle(&mut self, input: ShardInput) {
        let now = self.clock.now();
        match input {
            ShardInput::Engine(input) => {
                if let Input::Closed { conn } = &input {
                    // Dropping the writer's sender ends the writer thread.
                    self.conns.remove(conn);
                }
                self.engine.handle_input(now, input);
            }
            ShardInput::Read { conn, bytes, credit } => {
                self.engine.handle_input(now, Input::Data { conn, bytes });
                drop(credit);
            }
            ShardInput::Forwarded { input, credit } => {
                self.engine.handle_input(now, input);
                drop(credit);
            }
            ShardInput::Accepted { conn, handle } => {
                self.conns.insert(conn, handle);
                self.engine.handle_input(now, Input::Accepted { conn });
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
            ShardInput::Shutdown => {}
        }
    }

    /// Carries out every action the engine has for us.
    fn dispatch(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { conn, bytes } => {
                    if let Some(handle) = self.conns.get(&conn) {
                        // A writer that is gone has shut the socket: its reader reports Closed.
                        let _ = handle.writer.send(WriterMsg::Data(bytes));
                    }
                }
                Action::Close { conn } => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        let _ = handle.writer.send(WriterMsg::Close);
                    }
                }
                Action::Handoff { conn, to, bytes } => self.handoff(conn, to, bytes),
                Action::ToShard { to, message } => {
                    let input = Input::FromShard { from: self.id, message };
                    self.shards.forward(usize::from(self.id.0), usize::from(to.0), input);
                }
                Action::Authenticate { conn, request } => {
                    // No authenticator is plugged into this runtime yet: fail closed.
                    tracing::warn!(%conn, client_id = %request.client_id,
                        "authentication requested but no authenticator configured: refusing");
                    let decision = AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED);
                    let now = self.clock.now();
                    self.engine.handle_input(now, Input::AuthDecision { conn, decision });
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
                    if let Some(tx) = self.shards.get(usize::from(to.0)) {
                        let _ = tx.send(ShardInput::Engine(Input::Datagram { peer, bytes }));
                    }
                }
                Action::ReleasePeer { peer, node } => {
                    if let Some(udp) = &self.udp {
                        udp.release(peer, &node, self.id);
                    }
                }
                // No broadcast address is configured in this runtime (docs/MQTT-SN.md).
                Action::SnBroadcast { .. } => {}
                Action::Event(event) => log_event(self.id, &event),
                other => tracing::warn!(shard = %self.id, ?other, "unknown engine action ignored"),
            }
        }
    }

    /// Moves a connection to shard `to`. Its threads stay where they are; only the route of
    /// their future messages changes. With the route locked (so the reader and writer cannot
    /// send), everything they sent here so far is taken off our channel: its bytes join the
    /// handoff, so that `to` sees them after `Adopt` and before anything the reader sends there.
    fn handoff(&mut self, conn: ConnectionId, to: ShardId, mut bytes: BytesMut) {
        let Some(handle) = self.conns.remove(&conn) else { return };
        let Some(target) = self.shards.get(usize::from(to.0)).cloned() else { return };
        tracing::debug!(shard = %self.id, %conn, to = %to, "handing connection over");
        let route = Arc::clone(&handle.route);
        let mut shard = route.lock();
        while let Ok(input) = self.rx.try_recv() {
            self.pending.push_back(input);
        }
        let mut closed = false;
        let mut drained = 0;
        self.pending.retain_mut(|input| match input {
            ShardInput::Read { conn: c, bytes: more, .. } if *c == conn => {
                bytes.extend_from_slice(more);
                drained += more.len();
                false
            }
            ShardInput::Engine(Input::Closed { conn: c }) if *c == conn => {
                closed = true;
                false
            }
            ShardInput::Engine(Input::Written { conn: c, .. }) => *c != conn,
            _ => true,
        });
        tracing::debug!(shard = %self.id, %conn, drained, closed, "connection moved");
        if target.send(ShardInput::Adopt { conn, handle, bytes, closed }).is_ok() {
            *shard = usize::from(to.0);
        }
    }

    /// Closes every connection still here: the engine tells MQTT 5.0 clients DISCONNECT 0x8B
    /// Server shutting down and closes them; the writers flush that before shutting down.
    fn shutdown(&mut self) {
        self.engine.handle_input(self.clock.now(), Input::Shutdown);
        self.dispatch();
        for (_, handle) in self.conns.drain() {
            let _ = handle.writer.send(WriterMsg::Close);
        }
        // Adoptions in flight to us are dropped with the channel; dropping their handles ends
        // their writers, which shut their sockets down.
        self.pending.clear();
    }
}

fn log_event(shard: ShardId, event: &Event) {
    match event {
        Event::Connected { conn, client_id, session_present } => {
            tracing::info!(%shard, %conn, %client_id, session_present, "client connected");
        }
        Event::Disconnected { conn, reason } => {
            tracing::info!(%shard, %conn, reason = reason.0, "client disconnected");
        }
        Event::MessageDropped { client_id, reason } => {
            tracing::debug!(%shard, %client_id, ?reason, "message dropped");
        }
        other => tracing::debug!(%shard, ?other, "event"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use musqratt_engine::Config;

    use super::*;
    use crate::conn::Route;

    /// The engine's owner shard out of 2.
    fn owner_of(client_id: &str) -> u64 {
        u64::from(musqratt_engine::owner_of(client_id, 2).0)
    }

    /// Bytes the reader sent before the handoff, still in the old shard's channel, travel with
    /// the handoff, and the route points at the new shard afterwards.
    #[test]
    fn handoff_takes_queued_bytes_along() {
        let (tx0, rx0) = mpsc::channel();
        let (tx1, rx1) = mpsc::channel();
        let senders = Inboxes::new(vec![tx0.clone(), tx1]);
        let mut config = Config::default();
        config.shard_count = 2;
        let mut shard = Shard::new(Engine::new(config), Clock::new(), rx0, Arc::clone(&senders));

        let id = (0..).map(|i| format!("c{i}")).find(|id| owner_of(id) == 1).unwrap();
        let conn = ConnectionId(1);
        let route = Arc::new(Route::new(0, Arc::clone(&senders)));
        let (writer, _writer_rx) = mpsc::channel();
        let handle = ConnHandle { writer, route: Arc::clone(&route) };
        tx0.send(ShardInput::Accepted { conn, handle }).unwrap();
        let mut connect = vec![0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 2, 0, 0];
        connect.push(0);
        connect.push(u8::try_from(id.len()).unwrap());
        connect.extend_from_slice(id.as_bytes());
        connect[1] = u8::try_from(connect.len() - 2).unwrap();
        assert!(route.send_read(conn, BytesMut::from(&connect[..])));
        assert!(route.send_read(conn, BytesMut::from(&[0xc0, 0x00][..])));
        tx0.send(ShardInput::Engine(Input::Closed { conn: ConnectionId(99) })).unwrap();

        for _ in 0..2 {
            let input = shard.next_input().unwrap();
            shard.handle(input);
            shard.dispatch();
        }
        assert_eq!(*route.lock(), 1);
        match rx1.try_recv().unwrap() {
            ShardInput::Adopt { conn: c, bytes, closed, .. } => {
                assert_eq!(c, conn);
                assert!(!closed);
                let mut expected = connect.clone();
                expected.extend_from_slice(&[0xc0, 0x00]); // PINGREQ, queued behind CONNECT
                assert_eq!(&bytes[..], &expected[..]);
            }
            other => panic!("expected Adopt, got {other:?}"),
        }
        // Other inputs stay, in order, for the old shard.
        assert!(matches!(
            shard.pending.pop_front(),
            Some(ShardInput::Engine(Input::Closed { conn: ConnectionId(99) }))
        ));
    }
}
