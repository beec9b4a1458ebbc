//! The workspace's raw MQTT test client: a [`RawConnection`] (musqratt-client's TCP framing
//! through musqratt-proto's codec), nothing more. It does what a case tells it, including what
//! the specification forbids, and reports exactly what the broker answers. The conformance
//! cases, the runtimes' shared cases (musqratt-testkit) and the `musqratt` crate's socket tests
//! all drive brokers with it, so that there is one raw client to trust and to fix.

use core::time::Duration;
use std::collections::VecDeque;

use bytes::BytesMut;
use musqratt_client::ClientError;
use musqratt_client::raw::{MAX_PACKET_SIZE, RawConnection};
use musqratt_proto::mqtt::{
    Disconnect, Packet, PubResponse, Publish, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::{Instant, timeout_at};

use crate::{RECV_TIMEOUT, SILENCE};

/// What reading from the broker gave.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived, matched at once; boxing would hurt the tests' patterns"
)]
#[derive(Debug)]
pub enum Event {
    /// A whole packet.
    Packet(Packet),
    /// Nothing within the time given.
    Timeout,
    /// The broker closed the connection (end of stream or reset).
    Closed,
    /// The broker sent bytes that do not decode.
    Malformed(String),
}

/// A raw MQTT connection to the broker under test.
#[derive(Debug)]
pub struct Client {
    /// `None` once the client closed its side ([`Client::drop_connection`] and the like).
    conn: Option<RawConnection>,
    version: ProtocolVersion,
    /// How long [`Client::recv`] and [`Client::wait_for`] wait ([`RECV_TIMEOUT`] unless set).
    wait: Duration,
    /// Packets read while waiting for another one (an acknowledgement), returned first later.
    pending: VecDeque<Packet>,
    next_id: u16,
    closed: bool,
}

impl Client {
    /// Opens a TCP connection that will speak `version`; sends nothing.
    ///
    /// # Panics
    /// When the connection cannot be made within [`RECV_TIMEOUT`].
    pub async fn open(
        addr: impl ToSocketAddrs + core::fmt::Debug + Copy,
        version: ProtocolVersion,
    ) -> Self {
        let stream = tokio::time::timeout(RECV_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("timed out connecting to {addr:?}"))
            .unwrap_or_else(|e| panic!("cannot connect to {addr:?}: {e}"));
        stream.set_nodelay(true).ok();
        Self {
            conn: Some(RawConnection::from_stream(stream, version, MAX_PACKET_SIZE)),
            version,
            wait: RECV_TIMEOUT,
            pending: VecDeque::new(),
            next_id: 0,
            closed: false,
        }
    }

    /// Sets how long [`Client::recv`] and [`Client::wait_for`] wait for a packet: the runtimes'
    /// shared cases wait longer than the conformance suite, as they run on loaded CI machines
    /// next to other brokers' shard threads.
    pub fn set_recv_timeout(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// The protocol version of this connection.
    #[must_use]
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// A fresh packet identifier (1, 2, ...).
    pub fn next_pid(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        PacketId::new(self.next_id).expect("non-zero")
    }

    /// Encodes `packet` in this connection's version and writes it.
    ///
    /// # Panics
    /// When the packet cannot be encoded or written.
    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encodable packet");
        self.write_now(&out, true);
    }

    /// Writes raw bytes, ignoring write errors (the broker may already have closed).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write_now(bytes, false);
    }

    /// Writes all of `bytes`, however long the broker takes to read them: for writes larger
    /// than the socket buffers (floods), which [`Client::send`] would give up on after
    /// [`RECV_TIMEOUT`], and while other clients of the same task read.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn write_all(&mut self, bytes: &[u8]) {
        let Some(conn) = self.conn.as_mut() else { panic!("connection dropped") };
        conn.send_bytes(bytes).await.unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    fn write_now(&mut self, bytes: &[u8], must: bool) {
        let Some(conn) = &self.conn else { panic!("connection dropped") };
        let stream = conn.stream();
        // Small writes on a fresh socket complete at once; try_write avoids making send async.
        let mut off = 0;
        let deadline = std::time::Instant::now() + RECV_TIMEOUT;
        while off < bytes.len() {
            match stream.try_write(&bytes[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The broker stopped reading (it may be closing on us): give up after the
                    // deadline, failing only when the write had to succeed.
                    if std::time::Instant::now() >= deadline {
                        assert!(!must, "write timed out");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    assert!(!must, "write failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads the next packet or event, waiting at most `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Event {
        if let Some(packet) = self.pending.pop_front() {
            return Event::Packet(packet);
        }
        if self.closed {
            return Event::Closed;
        }
        let Some(conn) = self.conn.as_mut() else { return Event::Closed };
        // `RawConnection::recv` decodes what is buffered before reading and is cancel-safe, so
        // a timeout loses no bytes.
        match timeout_at(Instant::now() + wait, conn.recv()).await {
            Err(_) => Event::Timeout,
            Ok(Ok(packet)) => Event::Packet(packet),
            Ok(Err(ClientError::Decode(e))) => Event::Malformed(format!("{e:?}")),
            // End of stream, a partial packet left unread, or a reset.
            Ok(Err(_)) => {
                self.closed = true;
                Event::Closed
            }
        }
    }

    /// The next packet.
    ///
    /// # Panics
    /// On timeout ([`RECV_TIMEOUT`] unless [`Client::set_recv_timeout`]), close or a malformed
    /// packet.
    pub async fn recv(&mut self) -> Packet {
        match self.next_event(self.wait).await {
            Event::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH; it is not acknowledged.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledged as its QoS requires (for QoS 2 up to PUBCOMP).
    pub async fn recv_msg(&mut self) -> Publish {
        let p = self.recv_publish().await;
        self.ack(&p).await;
        p
    }

    /// Acknowledges a received PUBLISH: PUBACK, or PUBREC then PUBREL/PUBCOMP.
    pub async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResponse::new(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResponse::new(id)));
                let rel =
                    self.wait_for(|p| matches!(p, Packet::PubRel(r) if r.packet_id == id)).await;
                let Packet::PubRel(_) = rel else { unreachable!() };
                self.send(&Packet::PubComp(PubResponse::new(id)));
            }
            _ => {}
        }
    }

    /// Waits for the first packet that `want` accepts; other packets are kept for later reads.
    ///
    /// # Panics
    /// On timeout, close or a malformed packet.
    pub async fn wait_for(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = Instant::now() + self.wait;
        let mut kept = VecDeque::new();
        let mut from_pending = core::mem::take(&mut self.pending);
        loop {
            let packet = if let Some(p) = from_pending.pop_front() {
                p
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.next_event(left).await {
                    Event::Packet(p) => p,
                    other => panic!("waiting for a packet, got {other:?} (kept {kept:?})"),
                }
            };
            if want(&packet) {
                kept.extend(from_pending);
                self.pending = kept;
                return packet;
            }
            kept.push_back(packet);
        }
    }

    /// Publishes `p` and completes its QoS flow; a missing packet id is allocated. Returns the
    /// broker's final acknowledgement (PUBACK for QoS 1, PUBCOMP for QoS 2) if any.
    pub async fn publish(&mut self, mut p: Publish) -> Option<PubResponse> {
        if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
            p.packet_id = Some(self.next_pid());
        }
        let id = p.packet_id;
        let qos = p.qos;
        self.send(&Packet::Publish(p));
        let id = id?;
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                match self.wait_for(|p| matches!(p, Packet::PubAck(r) if r.packet_id == id)).await {
                    Packet::PubAck(r) => Some(r),
                    _ => unreachable!(),
                }
            }
            QoS::ExactlyOnce => {
                let rec = self.wait_for(|p| matches!(p, Packet::PubRec(r) if r.packet_id == id));
                let Packet::PubRec(rec) = rec.await else { unreachable!() };
                if rec.reason_code.is_error() {
                    return Some(rec);
                }
                self.send(&Packet::PubRel(PubResponse::new(id)));
                match self.wait_for(|p| matches!(p, Packet::PubComp(r) if r.packet_id == id)).await
                {
                    Packet::PubComp(r) => Some(r),
                    _ => unreachable!(),
                }
            }
        }
    }

    /// Subscribes to filters with options and properties; returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        properties: SubscribeProperties,
    ) -> SubAck {
        let packet_id = self.next_pid();
        let filters = filters.iter().map(|(f, o)| ((*f).into(), *o)).collect();
        self.send(&Packet::Subscribe(Subscribe { packet_id, filters, properties }));
        match self.wait_for(|p| matches!(p, Packet::SubAck(a) if a.packet_id == packet_id)).await {
            Packet::SubAck(ack) => ack,
            _ => unreachable!(),
        }
    }

    /// Subscribes to one filter at `qos` and asserts it is granted that QoS.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let ack = self.subscribe_with(&[(filter, crate::opts(qos))], Default::default()).await;
        assert_eq!(ack.reason_codes, vec![ReasonCode(qos.bits())], "SUBACK for {filter}");
    }

    /// Unsubscribes from filters; returns the UNSUBACK.
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let packet_id = self.next_pid();
        let filters = filters.iter().map(|f| (*f).into()).collect();
        let properties = UnsubscribeProperties::default();
        self.send(&Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }));
        match self.wait_for(|p| matches!(p, Packet::UnsubAck(a) if a.packet_id == packet_id)).await
        {
            Packet::UnsubAck(ack) => ack,
            _ => unreachable!(),
        }
    }

    /// A PINGREQ answered by a PINGRESP: also a barrier proving earlier packets were processed.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.wait_for(|p| matches!(p, Packet::PingResp)).await;
    }

    /// Sends a normal DISCONNECT and closes the connection.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default()));
        self.shutdown().await;
    }

    /// Sends a DISCONNECT with this packet and closes the connection.
    pub async fn disconnect_with(mut self, d: Disconnect) {
        self.send(&Packet::Disconnect(d));
        self.shutdown().await;
    }

    /// Closes the TCP connection without DISCONNECT: an abnormal close for the broker.
    pub async fn drop_connection(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.shutdown().await.ok();
        }
    }

    /// Waits until the broker closes the connection and returns every packet it sent before,
    /// whatever they are (the caller asserts on them).
    ///
    /// # Panics
    /// If the connection is still open after `wait`, or the broker sends a malformed packet.
    pub async fn packets_until_closed(&mut self, wait: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + wait;
        let mut packets = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Closed => return packets,
                Event::Packet(packet) => packets.push(packet),
                other => panic!("connection not closed: {other:?} (got {packets:?})"),
            }
        }
    }

    /// Asserts that the broker closes the connection within [`RECV_TIMEOUT`], possibly after a
    /// DISCONNECT (5.0), whose reason code is returned.
    ///
    /// # Panics
    /// If any other packet arrives or the connection stays open.
    pub async fn expect_closed(&mut self) -> Option<ReasonCode> {
        self.expect_closed_within(RECV_TIMEOUT).await
    }

    /// As [`Client::expect_closed`] with a deadline.
    pub async fn expect_closed_within(&mut self, wait: Duration) -> Option<ReasonCode> {
        let deadline = Instant::now() + wait;
        let mut reason = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Closed => return reason,
                Event::Packet(Packet::Disconnect(d))
                    if self.version.is_v5() && reason.is_none() =>
                {
                    reason = Some(d.reason_code);
                }
                other => panic!("expected the broker to close the connection, got {other:?}"),
            }
        }
    }

    /// Asserts that nothing arrives for [`SILENCE`].
    pub async fn expect_silence(&mut self) {
        self.expect_silence_for(SILENCE).await;
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn expect_silence_for(&mut self, wait: Duration) {
        match self.next_event(wait).await {
            Event::Timeout => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Collects PUBLISH packets (acknowledging them) until nothing arrives for [`SILENCE`].
    pub async fn drain_msgs(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        loop {
            match self.next_event(SILENCE).await {
                Event::Packet(Packet::Publish(p)) => {
                    self.ack(&p).await;
                    out.push(p);
                }
                Event::Timeout => return out,
                other => panic!("expected PUBLISH or nothing, got {other:?}"),
            }
        }
    }

    /// Collects PUBLISH packets (acknowledging them) for exactly `wait`.
    pub async fn collect_for(&mut self, wait: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Event::Packet(Packet::Publish(p)) => {
                    self.ack(&p).await;
                    out.push(p);
                }
                Event::Timeout => return out,
                other => panic!("expected PUBLISH or nothing, got {other:?}"),
            }
        }
    }
}
