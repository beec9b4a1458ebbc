//! Broker conformance suite for MQTT 3.1.1 and 5.0.
//!
//! The cases in `tests/` run against the broker whose address is given in the environment
//! variable `MQTT_CONFORMANCE_ADDR` (`host:port`). Without it, and with the `in-process` feature
//! (which the suite's own tests always enable), they run against a MusQraTT broker (tokio runtime,
//! two shards, default settings) started once per test binary on `127.0.0.1:0`, so that
//! `cargo test --workspace` exercises every case instead of reporting cases that did nothing as
//! passed. Without either, [`Ctx::new`] panics: a case never passes without running.
//!
//! Every case checks the specification. Where a known broker breaks it, the case is marked with
//! [`Ctx::deviation`]: when `MQTT_CONFORMANCE_PEER` names that broker the case is skipped with the
//! reason printed, otherwise it runs and checks the specification as written.
//!
//! This library also holds the workspace's one raw test client ([`wire::Client`], on
//! musqratt-client's `RawConnection`): it sends [`Packet`]s or raw bytes and reads packets with
//! [`musqratt_proto::mqtt::Decoder::with_version`], so cases can send exactly what the
//! specification forbids and see what the broker does with it. The runtimes' shared cases
//! (musqratt-testkit) and the `musqratt` crate's socket tests use it too.

pub mod wire;

use core::time::Duration;
use std::sync::OnceLock;

use bytes::Bytes;
pub use musqratt_proto::mqtt::Packet;
use musqratt_proto::mqtt::{
    ConnAck, Connect, ConnectProperties, Publish, ReasonCode, SubscriptionOptions,
};
use musqratt_proto::{ProtocolVersion, QoS};

pub use wire::{Client, Event};

/// MQTT 3.1.1.
pub const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
/// MQTT 5.0.
pub const V5: ProtocolVersion = ProtocolVersion::V5;
/// QoS 0.
pub const Q0: QoS = QoS::AtMostOnce;
/// QoS 1.
pub const Q1: QoS = QoS::AtLeastOnce;
/// QoS 2.
pub const Q2: QoS = QoS::ExactlyOnce;

/// How long a case waits for a packet it expects.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a case listens to be sure that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(500);

/// The broker address from `MQTT_CONFORMANCE_ADDR`, if set.
#[must_use]
pub fn broker_addr() -> Option<String> {
    std::env::var("MQTT_CONFORMANCE_ADDR").ok().filter(|addr| !addr.trim().is_empty())
}

/// Whether the cases run against the in-process MusQraTT broker (no `MQTT_CONFORMANCE_ADDR`).
/// Where the specification leaves a choice (a MAY), cases may then also check the one MusQraTT
/// makes and documents; against another broker they check only the specification.
#[must_use]
pub fn in_process() -> bool {
    cfg!(feature = "in-process") && broker_addr().is_none()
}

/// The address of the in-process broker, started on the first call: two shards (so that the
/// cases also cross shards), default engine settings, listening on a free port of 127.0.0.1.
/// It lives until the test process exits.
#[cfg(feature = "in-process")]
fn in_process_addr() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let mut config = musqratt_tokio::BrokerConfig::default();
        config.listeners = vec![core::net::SocketAddr::from(([127, 0, 0, 1], 0))];
        config.threads = 2;
        let broker = musqratt_tokio::Broker::start(config)
            .unwrap_or_else(|e| panic!("cannot start the in-process broker: {e}"));
        let addr = broker.local_addr().to_string();
        // Never stopped: every case of the binary uses it, and the process exit ends it.
        Box::leak(Box::new(broker));
        addr
    })
    .clone()
}

/// A short identifier of this test process, so that client ids, topics and retained messages of
/// one run never meet those of an earlier run against the same broker.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        format!("{:08x}", mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
    })
}

/// One case's context: the broker address and the case's name, from which its client ids and
/// topics are made unique.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `host:port` of the broker.
    pub addr: String,
    /// The case's name.
    pub name: &'static str,
}

impl Ctx {
    /// The context of case `name`: the broker of `MQTT_CONFORMANCE_ADDR`, else the in-process
    /// broker ([`in_process`]).
    ///
    /// # Panics
    /// Neither is available (the library built without `in-process` and no address given): a
    /// case must fail rather than pass without running.
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        if let Some(addr) = broker_addr() {
            return Self { addr, name };
        }
        #[cfg(feature = "in-process")]
        return Self { addr: in_process_addr(), name };
        #[cfg(not(feature = "in-process"))]
        panic!("{name}: MQTT_CONFORMANCE_ADDR is not set and the in-process broker is not built");
    }

    /// Whether the broker under test is `peer` (from `MQTT_CONFORMANCE_PEER`) and breaks the
    /// specification in this case; if so the skip and its reason are printed and the case must
    /// return.
    #[must_use]
    pub fn deviation(&self, peer: &str, reason: &str) -> bool {
        let is_peer = std::env::var("MQTT_CONFORMANCE_PEER")
            .is_ok_and(|p| p.trim().eq_ignore_ascii_case(peer));
        if is_peer {
            eprintln!("SKIP-DEVIATION {} ({peer}): {reason}", self.name);
        }
        is_peer
    }

    /// A client identifier unique to this case and run.
    #[must_use]
    pub fn id(&self, who: &str) -> String {
        format!("cf{}-{}-{who}", run_id(), self.name)
    }

    /// A topic unique to this case and run: `cf/<run>/<case>/<leaf>`.
    #[must_use]
    pub fn topic(&self, leaf: &str) -> String {
        format!("cf/{}/{}/{leaf}", run_id(), self.name)
    }

    /// A CONNECT with Clean Start, keep alive 30 s and no will, for client `who`.
    #[must_use]
    pub fn conn(&self, version: ProtocolVersion, who: &str) -> Connect {
        connect_packet(version, &self.id(who))
    }

    /// Opens a TCP connection without sending anything.
    pub async fn open(&self, version: ProtocolVersion) -> Client {
        Client::open(&self.addr, version).await
    }

    /// Connects with `connect` and returns the client and its CONNACK, whatever its code.
    pub async fn connect_with(&self, connect: Connect) -> (Client, ConnAck) {
        let mut client = self.open(connect.protocol).await;
        client.send(&Packet::Connect(Box::new(connect)));
        let ack = match client.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (client, *ack)
    }

    /// Connects with `connect` and asserts success.
    pub async fn connect_ok(&self, connect: Connect) -> (Client, ConnAck) {
        let (client, ack) = self.connect_with(connect).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK refused: {ack:?}");
        (client, ack)
    }

    /// Connects client `who` with Clean Start and default options, asserting success.
    pub async fn client(&self, version: ProtocolVersion, who: &str) -> Client {
        self.connect_ok(self.conn(version, who)).await.0
    }

    /// Connects client `who` with Clean Start off and, for 5.0, the given Session Expiry.
    pub async fn session(
        &self,
        version: ProtocolVersion,
        who: &str,
        clean: bool,
        expiry: u32,
    ) -> (Client, ConnAck) {
        let mut c = self.conn(version, who);
        c.clean_start = clean;
        if version.is_v5() {
            c.properties.session_expiry_interval = Some(expiry);
        }
        self.connect_ok(c).await
    }
}

/// A CONNECT with Clean Start, keep alive 30 s, no will and no properties.
#[must_use]
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// A PUBLISH without packet identifier (filled in by [`Client::publish`]) or properties.
#[must_use]
pub fn msg(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    let mut p = Publish::new(topic.into(), Bytes::copy_from_slice(payload));
    p.qos = qos;
    p
}

/// Subscription options with this QoS and the 3.1.1 defaults.
#[must_use]
pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(qos)
}

/// Sleeps for `ms` milliseconds.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A Will Message without properties.
#[must_use]
pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> musqratt_proto::mqtt::LastWill {
    musqratt_proto::mqtt::LastWill {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: musqratt_proto::mqtt::WillProperties::default(),
    }
}
