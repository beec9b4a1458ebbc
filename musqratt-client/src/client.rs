//! [`Client`]: an async MQTT 3.1.1 / 5.0 client on tokio.
//!
//! A background task owns the connection. It answers the server (PUBACK, PUBREC, PUBCOMP, the
//! PUBREL of outgoing QoS 2), sends PINGREQ when the connection has been idle for the keep alive
//! interval, allocates packet identifiers and routes acknowledgements to the waiting calls.
//! Incoming messages queue without bound until [`Client::next_message`] takes them, so an
//! application that waits for its own PUBACK is never blocked by messages it has not read yet.

use core::num::NonZeroU32;
use core::time::Duration;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use musqratt_proto::mqtt::{
    ConnAck, Connect, ConnectProperties, Disconnect, Packet, PubResponse, Publish, ReasonCode,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use musqratt_proto::topic::{validate_topic_filter, validate_topic_name};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::raw::{MAX_PACKET_SIZE, RawConnection};
use crate::url::ServerAddr;
use crate::{ClientError, ConnectOptions};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;
type BuildPacket = Box<dyn FnOnce(PacketId) -> Packet + Send>;

enum Command {
    /// Send a packet that needs a packet identifier and an acknowledgement.
    Request { build: BuildPacket, reply: Reply<Packet> },
    /// Send a packet without acknowledgement (a QoS 0 PUBLISH).
    Send { packet: Box<Packet>, reply: Reply<()> },
    /// Send DISCONNECT and close.
    Disconnect { packet: Disconnect, reply: Reply<()> },
}

/// A connected MQTT client. Dropping it closes the connection without DISCONNECT (so the server
/// publishes the Will); call [`Client::disconnect`] for a normal end.
#[derive(Debug)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    messages: mpsc::UnboundedReceiver<Publish>,
    version: ProtocolVersion,
    client_id: String,
    timeout: Duration,
    closed: Arc<Mutex<Option<ClientError>>>,
    task: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Request { .. } => "Request",
            Self::Send { .. } => "Send",
            Self::Disconnect { .. } => "Disconnect",
        })
    }
}

fn invalid_topic(topic: &str, error: impl core::fmt::Display) -> ClientError {
    ClientError::InvalidTopic { topic: topic.to_owned(), reason: error.to_string() }
}

fn refused(operation: &'static str, reason: ReasonCode, text: Option<&str>) -> ClientError {
    ClientError::Refused { operation, reason, reason_string: text.map(str::to_owned) }
}

impl Client {
    /// Connects, sends CONNECT and waits for CONNACK, then starts the background task.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`], an I/O error, [`ClientError::Timeout`] when the server does
    /// not answer within `options.timeout`, [`ClientError::ConnectionRefused`] for a CONNACK with
    /// a failure code, [`ClientError::ConnectionClosed`] when the server closes instead.
    pub async fn connect(options: ConnectOptions) -> Result<(Self, ConnAck), ClientError> {
        let addr = ServerAddr::parse(&options.url)?;
        let version = options.version;
        let mut conn = RawConnection::connect(&options.url, version, options.timeout).await?;
        let mut properties = ConnectProperties::default();
        if version.is_v5() {
            properties.session_expiry_interval = options.session_expiry;
            if options.max_packet_size < MAX_PACKET_SIZE {
                properties.maximum_packet_size =
                    NonZeroU32::new(options.max_packet_size).map(NonZeroU32::get);
            }
        }
        let connect = Connect {
            protocol: version,
            clean_start: options.clean_start,
            keep_alive: options.keep_alive,
            client_id: options.client_id.as_str().into(),
            will: options.will.clone(),
            username: options.username.clone().or(addr.username).map(Into::into),
            password: options.password.clone().or(addr.password.map(Bytes::from)),
            properties,
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        let ack = match conn.recv_timeout(options.timeout).await {
            Ok(Packet::ConnAck(ack)) => ack,
            Ok(other) => {
                let kind = other.packet_type();
                return Err(ClientError::Protocol(format!("expected CONNACK, got {kind:?}")));
            }
            Err(ClientError::Timeout { timeout, .. }) => {
                return Err(ClientError::Timeout { waiting_for: "CONNACK", timeout });
            }
            Err(error) => return Err(error),
        };
        if ack.reason_code.is_error() {
            return Err(ClientError::ConnectionRefused {
                reason: ack.reason_code,
                reason_string: ack.properties.reason_string.as_deref().map(str::to_owned),
            });
        }
        let keep_alive = ack.properties.server_keep_alive.unwrap_or(options.keep_alive);
        let client_id = ack
            .properties
            .assigned_client_identifier
            .as_deref()
            .map_or(options.client_id, str::to_owned);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(Mutex::new(None));
        let task = Task {
            conn,
            commands: commands_rx,
            messages: messages_tx,
            pending: HashMap::new(),
            next_id: PacketId::MIN,
            awaiting_rel: HashSet::new(),
            keep_alive: (keep_alive > 0).then(|| Duration::from_secs(keep_alive.into())),
            last_sent: Instant::now(),
            ping_sent: None,
            closed: Arc::clone(&closed),
        };
        let client = Self {
            commands: commands_tx,
            messages: messages_rx,
            version,
            client_id,
            timeout: options.timeout,
            closed,
            task: Some(tokio::spawn(task.run())),
        };
        Ok((client, *ack))
    }

    /// The protocol version of the connection.
    #[must_use]
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client identifier: the one asked for, or the one the server assigned (5.0).
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<ClientError> {
        self.closed.lock().ok().and_then(|reason| reason.clone())
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    fn closed_error(&self) -> ClientError {
        self.close_reason().unwrap_or(ClientError::ConnectionClosed)
    }

    async fn call<T>(
        &self,
        waiting_for: &'static str,
        command: Command,
        reply: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.commands.send(command).map_err(|_| self.closed_error())?;
        match tokio::time::timeout(self.timeout, reply).await {
            Err(_) => Err(ClientError::Timeout { waiting_for, timeout: self.timeout }),
            Ok(Err(_)) => Err(self.closed_error()),
            Ok(Ok(result)) => result,
        }
    }

    async fn request(
        &self,
        waiting_for: &'static str,
        build: impl FnOnce(PacketId) -> Packet + Send + 'static,
    ) -> Result<Packet, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.call(waiting_for, Command::Request { build: Box::new(build), reply }, rx).await
    }

    /// Subscribes to one filter; returns the QoS the server granted.
    ///
    /// # Errors
    /// [`ClientError::InvalidTopic`], [`ClientError::Refused`] when the server refuses the
    /// subscription, or the connection errors.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<QoS, ClientError> {
        let codes = self.subscribe_many(&[(filter, qos)]).await?;
        let code = codes.first().copied().unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
        QoS::from_bits(code.0).ok_or_else(|| refused("subscribe", code, None))
    }

    /// Subscribes to several filters in one SUBSCRIBE; returns the SUBACK's reason code for each
    /// (a granted QoS 0-2, or a failure code the caller inspects).
    ///
    /// # Errors
    /// [`ClientError::InvalidTopic`], or the connection errors.
    pub async fn subscribe_many(
        &self,
        filters: &[(&str, QoS)],
    ) -> Result<Vec<ReasonCode>, ClientError> {
        let mut list = Vec::with_capacity(filters.len());
        for &(filter, qos) in filters {
            validate_topic_filter(filter).map_err(|error| invalid_topic(filter, error))?;
            list.push((filter.into(), SubscriptionOptions::with_qos(qos)));
        }
        if list.is_empty() {
            return Err(invalid_topic("", "no topic filter given"));
        }
        let packet = self
            .request("SUBACK", move |packet_id| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    filters: list,
                    properties: Default::default(),
                })
            })
            .await?;
        match packet {
            Packet::SubAck(SubAck { reason_codes, .. }) if reason_codes.len() == filters.len() => {
                Ok(reason_codes)
            }
            other => Err(ClientError::Protocol(format!("bad answer to SUBSCRIBE: {other:?}"))),
        }
    }

    /// Unsubscribes from one filter.
    ///
    /// # Errors
    /// [`ClientError::InvalidTopic`], [`ClientError::Refused`] for a 5.0 failure code, or the
    /// connection errors.
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), ClientError> {
        validate_topic_filter(filter).map_err(|error| invalid_topic(filter, error))?;
        let filters = vec![filter.into()];
        let packet = self
            .request("UNSUBACK", move |packet_id| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties: Default::default(),
                })
            })
            .await?;
        let Packet::UnsubAck(UnsubAck { reason_codes, properties, .. }) = packet else {
            return Err(ClientError::Protocol(format!("bad answer to UNSUBSCRIBE: {packet:?}")));
        };
        match reason_codes.first() {
            Some(&code) if code.is_error() => {
                Err(refused("unsubscribe", code, properties.reason_string.as_deref()))
            }
            _ => Ok(()),
        }
    }

    /// Publishes a message and, for QoS 1 and 2, waits until the server has acknowledged it
    /// (PUBACK, or the PUBREC / PUBREL / PUBCOMP exchange).
    ///
    /// # Errors
    /// [`ClientError::InvalidTopic`], [`ClientError::Refused`] for a 5.0 failure code,
    /// [`ClientError::Timeout`], or the connection errors.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), ClientError> {
        let mut message = Publish::new(topic.into(), payload.into());
        message.qos = qos;
        message.retain = retain;
        self.publish_message(message).await
    }

    /// Publishes a prepared PUBLISH (with 5.0 properties, say); its packet identifier is
    /// allocated here.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish_message(&self, mut message: Publish) -> Result<(), ClientError> {
        let alias = message.properties.topic_alias.is_some();
        if !(alias && message.topic.is_empty()) {
            validate_topic_name(&message.topic).map_err(|e| invalid_topic(&message.topic, e))?;
        }
        if message.qos == QoS::AtMostOnce {
            message.packet_id = None;
            let (reply, rx) = oneshot::channel();
            let command = Command::Send { packet: Box::new(Packet::Publish(message)), reply };
            return self.call("the PUBLISH to be sent", command, rx).await;
        }
        let waiting_for = if message.qos == QoS::AtLeastOnce { "PUBACK" } else { "PUBCOMP" };
        let packet = self
            .request(waiting_for, move |packet_id| {
                message.packet_id = Some(packet_id);
                Packet::Publish(message)
            })
            .await?;
        match packet {
            Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubComp(ack)
                if ack.reason_code.is_error() =>
            {
                Err(refused("publish", ack.reason_code, ack.properties.reason_string.as_deref()))
            }
            Packet::PubAck(_) | Packet::PubComp(_) => Ok(()),
            other => Err(ClientError::Protocol(format!("bad answer to PUBLISH: {other:?}"))),
        }
    }

    /// The next message from the server, already acknowledged; `None` once the connection has
    /// ended and every received message has been taken ([`Client::close_reason`] says why).
    /// Cancel-safe.
    pub async fn next_message(&mut self) -> Option<Publish> {
        self.messages.recv().await
    }

    /// A message that has already arrived, without waiting.
    pub fn try_next_message(&mut self) -> Option<Publish> {
        self.messages.try_recv().ok()
    }

    /// Sends DISCONNECT (Normal disconnection) and closes the connection: the server discards
    /// the Will.
    ///
    /// # Errors
    /// The connection errors, if it had already ended.
    pub async fn disconnect(self) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends this DISCONNECT (a 5.0 reason code or Session Expiry Interval) and closes.
    ///
    /// # Errors
    /// As [`Client::disconnect`].
    pub async fn disconnect_with(mut self, packet: Disconnect) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        let result = self.call("DISCONNECT to be sent", Command::Disconnect { packet, reply }, rx);
        let result = result.await;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(self.timeout, task).await;
        }
        result
    }
}

/// The background task that owns the connection.
struct Task {
    conn: RawConnection,
    commands: mpsc::UnboundedReceiver<Command>,
    messages: mpsc::UnboundedSender<Publish>,
    /// Requests waiting for their acknowledgement, by packet identifier.
    pending: HashMap<u16, Reply<Packet>>,
    next_id: PacketId,
    /// Incoming QoS 2 messages delivered and waiting for PUBREL, to suppress duplicates.
    awaiting_rel: HashSet<u16>,
    keep_alive: Option<Duration>,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    closed: Arc<Mutex<Option<ClientError>>>,
}

impl Task {
    async fn run(mut self) {
        let reason = match self.run_loop().await {
            Ok(()) => ClientError::ConnectionClosed,
            Err(error) => error,
        };
        if let Ok(mut closed) = self.closed.lock() {
            closed.get_or_insert_with(|| reason.clone());
        }
        self.commands.close();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(reason.clone()));
        }
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Request { reply, .. } => drop(reply.send(Err(reason.clone()))),
                Command::Send { reply, .. } | Command::Disconnect { reply, .. } => {
                    drop(reply.send(Err(reason.clone())));
                }
            }
        }
    }

    /// Runs until the client disconnects or is dropped (`Ok`) or the connection fails.
    async fn run_loop(&mut self) -> Result<(), ClientError> {
        loop {
            let deadline = self.keep_alive.map(|interval| match self.ping_sent {
                Some(sent) => sent + interval,
                None => self.last_sent + interval,
            });
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if self.command(command).await? {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                packet = self.conn.recv() => self.incoming(packet?).await?,
                () = sleep_until(deadline) => {
                    if self.ping_sent.is_some() {
                        return Err(ClientError::KeepAliveTimeout);
                    }
                    self.send(&Packet::PingReq).await?;
                    self.ping_sent = Some(Instant::now());
                }
            }
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.conn.send(packet).await?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn allocate_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            let id = self.next_id;
            self.next_id = id.next();
            if !self.pending.contains_key(&id.get()) {
                return Some(id);
            }
        }
        None
    }

    /// Handles a command; `true` once the connection is closed on purpose.
    async fn command(&mut self, command: Command) -> Result<bool, ClientError> {
        match command {
            Command::Request { build, reply } => {
                self.pending.retain(|_, reply| !reply.is_closed());
                let Some(id) = self.allocate_id() else {
                    let error = "all 65535 packet identifiers are in use".to_owned();
                    let _ = reply.send(Err(ClientError::Protocol(error)));
                    return Ok(false);
                };
                let packet = build(id);
                self.pending.insert(id.get(), reply);
                self.send(&packet).await?;
            }
            Command::Send { packet, reply } => match self.send(&packet).await {
                Ok(()) => drop(reply.send(Ok(()))),
                Err(ClientError::Encode(error)) => drop(reply.send(Err(error.into()))),
                Err(error) => {
                    let _ = reply.send(Err(error.clone()));
                    return Err(error);
                }
            },
            Command::Disconnect { packet, reply } => {
                let result = self.send(&Packet::Disconnect(packet)).await;
                let _ = self.conn.shutdown().await;
                let _ = reply.send(result);
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn answer(&mut self, id: PacketId, packet: Packet) {
        if let Some(reply) = self.pending.remove(&id.get()) {
            let _ = reply.send(Ok(packet));
        }
    }

    async fn incoming(&mut self, packet: Packet) -> Result<(), ClientError> {
        match packet {
            Packet::Publish(message) => self.incoming_publish(message).await?,
            Packet::PubAck(ref ack) | Packet::PubComp(ref ack) => {
                let id = ack.packet_id;
                self.answer(id, packet);
            }
            Packet::PubRec(ref rec) => {
                let id = rec.packet_id;
                if rec.reason_code.is_error() {
                    self.answer(id, packet);
                } else {
                    self.send(&Packet::PubRel(PubResponse::new(id))).await?;
                }
            }
            Packet::PubRel(rel) => {
                let id = rel.packet_id;
                let mut comp = PubResponse::new(id);
                if !self.awaiting_rel.remove(&id.get()) && self.conn.version().is_v5() {
                    comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.send(&Packet::PubComp(comp)).await?;
            }
            Packet::SubAck(ref ack) => self.answer(ack.packet_id, packet.clone()),
            Packet::UnsubAck(ref ack) => self.answer(ack.packet_id, packet.clone()),
            Packet::PingResp => self.ping_sent = None,
            Packet::Disconnect(disconnect) => {
                return Err(ClientError::DisconnectedByServer {
                    reason: disconnect.reason_code,
                    reason_string: disconnect.properties.reason_string.as_deref().map(Into::into),
                });
            }
            other => {
                let kind = other.packet_type();
                return Err(ClientError::Protocol(format!("unexpected {kind:?} from the server")));
            }
        }
        Ok(())
    }

    async fn incoming_publish(&mut self, message: Publish) -> Result<(), ClientError> {
        match (message.qos, message.packet_id) {
            (QoS::AtMostOnce, _) => drop(self.messages.send(message)),
            (QoS::AtLeastOnce, Some(id)) => {
                drop(self.messages.send(message));
                self.send(&Packet::PubAck(PubResponse::new(id))).await?;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // Delivered once, on its first PUBLISH; a re-sent PUBLISH before PUBREL is
                // only acknowledged again.
                if self.awaiting_rel.insert(id.get()) {
                    drop(self.messages.send(message));
                }
                self.send(&Packet::PubRec(PubResponse::new(id))).await?;
            }
            _ => return Err(ClientError::Protocol("PUBLISH without packet identifier".into())),
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => core::future::pending().await,
    }
}
