//! The end-to-end cases every MusQraTT runtime must pass, over real sockets on 127.0.0.1, in
//! one place, so that the tokio, io-uring (compio) and blocking runtimes are held to the same
//! behaviour: MQTT ([`mqtt`]), MQTT-SN over UDP ([`sn`]) and authentication through the runtime
//! kit's `Authenticator` ([`auth`]).
//! Tests that run the `musqratt` binary start it as a [`BrokerProcess`] ([`process`]).
//!
//! A runtime's test file is a few lines: a [`Start`] function that starts the runtime with a
//! [`BrokerConfig`] (on `127.0.0.1:0`) and wraps its handle in a [`Broker`], and the macros that
//! expand every case of a group as a `#[test]` for it:
//!
//! ```no_run
//! # mod my_runtime {
//! #     pub struct Handle(Vec<core::net::SocketAddr>);
//! #     impl Handle {
//! #         pub fn local_addrs(&self) -> &[core::net::SocketAddr] { &self.0 }
//! #         pub fn shutdown(self) {}
//! #     }
//! #     pub fn start(_: musqratt_testkit::BrokerConfig) -> std::io::Result<Handle> {
//! #         Ok(Handle(Vec::new()))
//! #     }
//! # }
//! use musqratt_testkit::{Broker, BrokerConfig};
//!
//! fn start(config: BrokerConfig) -> Broker {
//!     let handle = my_runtime::start(config).expect("the runtime starts");
//!     Broker::new(handle.local_addrs().to_vec(), vec![], move || handle.shutdown())
//! }
//!
//! // This runtime serves no MQTT-SN: not `all_cases!`.
//! musqratt_testkit::mqtt_cases!(start);
//! musqratt_testkit::auth_cases!(start);
//! # fn main() {}
//! ```
//!
//! The cases are async and drive the broker with the workspace's one raw test client,
//! [`Client`] (the conformance suite's, on musqratt-client's `RawConnection`); [`run`] gives
//! each its own current-thread tokio runtime for the clients, while the broker runs on its own
//! threads. The helpers below ([`connect`], [`publish`], [`receive_publish`], ...) check every
//! step strictly: the next packet must be the expected one.

pub mod auth;
pub mod layers;
pub mod mqtt;
pub mod pki;
pub mod process;
pub mod sn;
pub mod ws;

use core::future::Future;
use core::net::SocketAddr;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
pub use musqratt_conformance::wire::{Client, Event};
pub use musqratt_kit::BrokerConfig;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::mqtt::{
    Connect, Packet, PubResponse, Publish, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
pub use process::{
    BrokerProcess, Launch, Serial, free_port, have_program, http_get, http_get_ok,
    one_broker_process_at_a_time, scratch_dir,
};
/// The runtime the cases' clients run on ([`run`]), for runtime-specific tests that pace,
/// join or spawn clients.
pub use tokio;

/// How long a case waits for a packet before failing: longer than the conformance suite's, as
/// these cases run next to other test binaries' broker threads on small CI machines.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a runtime with this configuration (listeners on `127.0.0.1:0`, the shard count in
/// `threads`) and returns it running. Panics when it cannot start: the case fails.
pub type Start = fn(BrokerConfig) -> Broker;

/// A running broker of any runtime: its addresses and how to stop it.
pub struct Broker {
    local_addrs: Vec<SocketAddr>,
    sn_local_addrs: Vec<SocketAddr>,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addrs", &self.local_addrs)
            .field("sn_local_addrs", &self.sn_local_addrs)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker listening on `local_addrs` (MQTT over TCP) and `sn_local_addrs` (MQTT-SN over
    /// UDP), the real ports where 0 was asked for; `stop` shuts it down and waits for its
    /// threads (it must panic if the runtime reports a failure, so that the case fails).
    pub fn new(
        local_addrs: Vec<SocketAddr>,
        sn_local_addrs: Vec<SocketAddr>,
        stop: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self { local_addrs, sn_local_addrs, stop: Some(Box::new(stop)) }
    }

    /// The first MQTT listener's address.
    ///
    /// # Panics
    /// The broker has no MQTT listener.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every MQTT listener's address.
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The first MQTT-SN listener's address.
    ///
    /// # Panics
    /// The broker serves no MQTT-SN.
    #[must_use]
    pub fn sn_addr(&self) -> SocketAddr {
        self.sn_local_addrs[0]
    }

    /// Stops the broker and waits for its threads. Called on a thread of its own: a runtime's
    /// shutdown blocks, and the tokio runtime's must not run inside the case's tokio runtime.
    ///
    /// # Panics
    /// When the runtime's stop panicked.
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            std::thread::spawn(stop).join().expect("the broker stops cleanly");
        }
    }
}

impl Drop for Broker {
    /// A case that returns without [`Broker::shutdown`] still stops its broker, so that its
    /// threads do not serve on beside the next case's. After a failed case (panicking) the
    /// threads are left to the process's end instead of risking a second panic.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take().filter(|_| !std::thread::panicking()) {
            let _ = std::thread::spawn(stop).join();
        }
    }
}

/// Whether an external program a test needs (Mosquitto's tools, `prlimit`, Python with a
/// package) can be run: `probe` is a command that succeeds when it is there. When it is not,
/// the test says so and returns early — except in CI (`CI` set), where the test fails instead:
/// CI installs every tool, so a test must never pass there without running.
#[must_use]
pub fn tool_available(probe: &[&str]) -> bool {
    let ok = std::process::Command::new(probe[0])
        .args(&probe[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{}` fails but CI must have it",
            probe.join(" ")
        );
        eprintln!("SKIP: `{}` fails (not installed?)", probe.join(" "));
    }
    ok
}

/// Starts `start` with `config` on a thread of its own (a runtime may build and enter its own
/// tokio or compio runtimes while starting, which must not happen inside the case's).
///
/// # Panics
/// When the runtime cannot start.
pub fn launch(start: Start, config: BrokerConfig) -> Broker {
    std::thread::spawn(move || start(config)).join().expect("the broker starts")
}

/// The configuration the cases start from: MQTT on `127.0.0.1:0`, `shards` threads, default
/// engine settings, no MQTT-SN, anonymous clients allowed.
#[must_use]
pub fn config(shards: usize) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = shards;
    config
}

/// Runs one case to its end on a current-thread tokio runtime made for it (the clients'; the
/// broker runs on its own threads), with the broker's log written to the test's output.
///
/// # Panics
/// When the case fails.
pub fn run<F: Future>(case: F) -> F::Output {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the test clients")
        .block_on(case)
}

/// The owner shard of a client identifier (the engine's function).
///
/// # Panics
/// `shards` is beyond `u16`.
#[must_use]
pub fn owner_of(client_id: &str, shards: u64) -> u64 {
    let shards = u16::try_from(shards).expect("shard count fits u16");
    u64::from(musqratt_engine::owner_of(client_id, shards).0)
}

/// A client identifier starting with `prefix` that hashes to `shard` of `shards`, so that a
/// case can place clients on chosen shards.
#[must_use]
pub fn id_on_shard(prefix: &str, shard: u64, shards: u64) -> String {
    (0..).map(|i| format!("{prefix}-{i}")).find(|id| owner_of(id, shards) == shard).unwrap()
}

/// A CONNECT with Clean Start and this keep alive.
#[must_use]
pub fn connect_packet(client_id: &str, version: ProtocolVersion, keep_alive: u16) -> Packet {
    let mut connect = Connect::new(version, client_id);
    connect.keep_alive = keep_alive;
    Packet::Connect(Box::new(connect))
}

/// A SUBSCRIBE to one filter.
#[must_use]
pub fn subscribe_packet(filter: &str, qos: QoS, packet_id: PacketId) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![(ByteString::from(filter), SubscriptionOptions::with_qos(qos))],
        properties: SubscribeProperties::default(),
    })
}

/// `packet`'s bytes in `version`, to be written as they are (several in one write, or altered).
///
/// # Panics
/// The packet cannot be encoded in `version`.
#[must_use]
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("encodable packet");
    buf.to_vec()
}

/// Opens a TCP connection without sending anything; the client waits [`WAIT`] for packets.
pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Client {
    let mut client = Client::open(addr, version).await;
    client.set_recv_timeout(WAIT);
    client
}

/// Connects, sends CONNECT and expects a successful CONNACK.
pub async fn connect(addr: SocketAddr, client_id: &str, version: ProtocolVersion) -> Client {
    connect_with(addr, client_id, version, 0, &[]).await
}

/// Connects, sends CONNECT (with `keep_alive`) followed by `then` in the same write, and
/// expects a successful CONNACK.
///
/// # Panics
/// Anything but a successful CONNACK comes first.
pub async fn connect_with(
    addr: SocketAddr,
    client_id: &str,
    version: ProtocolVersion,
    keep_alive: u16,
    then: &[Packet],
) -> Client {
    let mut client = open(addr, version).await;
    let mut bytes = encode(&connect_packet(client_id, version, keep_alive), version);
    for packet in then {
        bytes.extend(encode(packet, version));
    }
    client.write_all(&bytes).await;
    match client.recv().await {
        Packet::ConnAck(ack) => assert!(!ack.reason_code.is_error(), "refused: {ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

/// Subscribes to `filter` with the client's next packet id; the next packet must be its SUBACK,
/// granting `qos` (every runtime's default engine grants all three).
///
/// # Panics
/// Anything else comes.
pub async fn subscribe(client: &mut Client, filter: &str, qos: QoS) {
    let packet_id = client.next_pid();
    client.send(&subscribe_packet(filter, qos, packet_id));
    match client.recv().await {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id);
            assert_eq!(ack.reason_codes, vec![ReasonCode(qos.bits())], "SUBACK for {filter}");
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes and completes the QoS flow from the publisher's side; each acknowledgement must
/// be the next packet.
///
/// # Panics
/// `id` is 0, or another packet comes.
pub async fn publish(client: &mut Client, topic: &str, payload: &'static [u8], qos: QoS, id: u16) {
    let mut publish = Publish::new(ByteString::from(topic), Bytes::from_static(payload));
    publish.qos = qos;
    if qos != QoS::AtMostOnce {
        publish.packet_id = Some(PacketId::new(id).expect("a non-zero packet id"));
    }
    publish_packet(client, publish).await;
}

/// Sends `publish` (retained or not; its packet id set for QoS 1 and 2) and completes the QoS
/// flow from the publisher's side; each acknowledgement must be the next packet.
///
/// # Panics
/// QoS 1 or 2 without a packet id, or another packet comes.
pub async fn publish_packet(client: &mut Client, publish: Publish) {
    let qos = publish.qos;
    let packet_id = publish.packet_id;
    client.send(&Packet::Publish(publish));
    match (qos, packet_id) {
        (QoS::AtMostOnce, _) => {}
        (QoS::AtLeastOnce, Some(packet_id)) => match client.recv().await {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        },
        (QoS::ExactlyOnce, Some(packet_id)) => {
            match client.recv().await {
                Packet::PubRec(rec) => assert_eq!(rec.packet_id, packet_id),
                other => panic!("expected PUBREC, got {other:?}"),
            }
            client.send(&Packet::PubRel(PubResponse::new(packet_id)));
            match client.recv().await {
                Packet::PubComp(comp) => assert_eq!(comp.packet_id, packet_id),
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
        }
        (_, None) => panic!("QoS {qos:?} needs a packet id"),
    }
}

/// Expects a PUBLISH next and completes its QoS flow from the subscriber's side (for QoS 2 the
/// PUBREL must be the next packet).
///
/// # Panics
/// Another packet comes.
pub async fn receive_publish(client: &mut Client) -> Publish {
    let publish = match client.recv().await {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, _) => {}
        (QoS::AtLeastOnce, Some(id)) => client.send(&Packet::PubAck(PubResponse::new(id))),
        (QoS::ExactlyOnce, Some(id)) => {
            client.send(&Packet::PubRec(PubResponse::new(id)));
            match client.recv().await {
                Packet::PubRel(rel) => assert_eq!(rel.packet_id, id),
                other => panic!("expected PUBREL, got {other:?}"),
            }
            client.send(&Packet::PubComp(PubResponse::new(id)));
        }
        other => panic!("QoS without packet id: {other:?}"),
    }
    publish
}

/// Expands the listed cases of the kit's module `$group` as `#[test]`s on `$start`, in a module
/// of the same name (so that test names read `mqtt::connect_connack_and_ping`).
#[doc(hidden)]
#[macro_export]
macro_rules! cases {
    ($start:ident, $group:ident, [$($case:ident),* $(,)?]) => {
        /// The kit's shared cases of this group, on this runtime.
        mod $group {
            $(
                #[test]
                fn $case() {
                    $crate::run($crate::$group::$case(super::$start));
                }
            )*
        }
    };
}

/// Every MQTT case of [`mqtt`] as a `#[test]` on the runtime `$start` (a [`Start`] function).
#[macro_export]
macro_rules! mqtt_cases {
    ($start:ident) => {
        $crate::cases!(
            $start,
            mqtt,
            [
                local_addrs_reports_the_real_port,
                connect_connack_and_ping,
                publish_qos_0_1_2_between_two_clients,
                two_shards_handoff_and_cross_shard_delivery,
                packets_pipelined_behind_connect_survive_the_handoff,
                packets_written_separately_after_connect_keep_their_order_across_the_handoff,
                many_clients_on_many_shards_all_receive,
                large_payload_crosses_many_reads_both_ways,
                keep_alive_timeout_closes,
                malformed_packet_closes,
                shutdown_closes_connections_and_joins,
                a_flood_of_publishes_arrives_whole_and_in_order,
            ]
        );
    };
}

/// Every MQTT-SN case of [`sn`] as a `#[test]` on the runtime `$start`, which must serve
/// MQTT-SN on `sn_listeners`.
#[macro_export]
macro_rules! sn_cases {
    ($start:ident) => {
        $crate::cases!(
            $start,
            sn,
            [
                sn_clients_connect_register_publish_and_subscribe_over_udp,
                a_second_connect_from_the_same_address_keeps_the_route,
            ]
        );
    };
}

/// Every authentication case of [`auth`] as a `#[test]` on the runtime `$start`.
#[macro_export]
macro_rules! auth_cases {
    ($start:ident) => {
        $crate::cases!(
            $start,
            auth,
            [
                the_authenticator_decides_who_connects_at_once_or_later,
                an_authenticator_that_cannot_decide_or_forgets_refuses,
            ]
        );
    };
}

/// The byte-stream layer cases (docs/adr/0015) as `#[test]`s on the runtime `$start`: every
/// MQTT case of [`mqtt`] through a listener with the identity layer, and the cases of
/// [`layers`] (which set their own layers), in a module `layered`.
#[macro_export]
macro_rules! layer_cases {
    ($start:ident) => {
        /// The kit's cases through byte-stream layers, on this runtime.
        mod layered {
            /// The runtime, every MQTT listener through the identity layer.
            fn identity(config: $crate::BrokerConfig) -> $crate::Broker {
                super::$start($crate::layers::identity(config))
            }

            /// The runtime as the case configures it.
            fn configured(config: $crate::BrokerConfig) -> $crate::Broker {
                super::$start(config)
            }

            $crate::mqtt_cases!(identity);
            $crate::layers_cases!(configured);
        }
    };
}

/// The cases of [`layers`] as `#[test]`s on `$start` (which they configure themselves), in
/// a module `layers`; part of [`layer_cases`].
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip] // one case a line, as the other groups' (`every_case_is_expanded_by_its_macro`)
macro_rules! layers_cases {
    ($start:ident) => {
        $crate::cases!(
            $start,
            layers,
            [
                mqtt_through_layers_that_change_every_byte,
            ]
        );
    };
}

/// The WebSocket cases as `#[test]`s on the runtime `$start`: every MQTT case of [`mqtt`]
/// through a `ws://` listener (its clients' bytes framed by a [`ws::Bridge`]), and the cases
/// of [`ws`], in a module `websocket`.
#[macro_export]
macro_rules! ws_cases {
    ($start:ident) => {
        /// The kit's cases over WebSocket, on this runtime.
        mod websocket {
            /// The runtime with WebSocket listeners, reached through a bridge.
            fn bridged(config: $crate::BrokerConfig) -> $crate::Broker {
                $crate::ws::through_bridge(super::$start, config)
            }

            /// The runtime as the case configures it.
            fn configured(config: $crate::BrokerConfig) -> $crate::Broker {
                super::$start(config)
            }

            $crate::mqtt_cases!(bridged);
            $crate::ws_only_cases!(configured);
        }
    };
}

/// The cases of [`ws`] as `#[test]`s on `$start`; part of [`ws_cases`].
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip] // one case a line, as the other groups' (`every_case_is_expanded_by_its_macro`)
macro_rules! ws_only_cases {
    ($start:ident) => {
        $crate::cases!(
            $start,
            ws,
            [
                http_requests_that_are_not_an_mqtt_upgrade_are_answered_and_closed,
                frames_split_pinged_and_a_text_frame_closes,
                a_delivery_comes_in_one_frame,
                a_trusted_proxys_forwarded_address_reaches_authentication,
            ]
        );
    };
}

/// All of [`mqtt_cases`], [`sn_cases`] and [`auth_cases`], for a runtime that serves all.
#[macro_export]
macro_rules! all_cases {
    ($start:ident) => {
        $crate::mqtt_cases!($start);
        $crate::sn_cases!($start);
        $crate::auth_cases!($start);
    };
}

#[cfg(test)]
mod tests {
    /// A case written in a group's module but left out of its macro would never run anywhere:
    /// every `pub async fn` of a group taking a `start: Start` must be named in the macro (the
    /// helpers the runtimes share take a started `Broker`).
    #[test]
    fn every_case_is_expanded_by_its_macro() {
        let lib = include_str!("lib.rs");
        for (group, source) in [
            ("mqtt", include_str!("mqtt.rs")),
            ("sn", include_str!("sn.rs")),
            ("auth", include_str!("auth.rs")),
            ("layers", include_str!("layers.rs")),
            ("ws", include_str!("ws.rs")),
        ] {
            let cases: Vec<&str> = source
                .split("\npub async fn ")
                .skip(1)
                .filter(|rest| rest.split('{').next().unwrap().contains("start: Start"))
                .map(|rest| rest.split('(').next().unwrap())
                .collect();
            assert!(!cases.is_empty(), "{group}: no cases found");
            for case in cases {
                assert!(lib.contains(&format!("            {case},\n")), "{group}::{case}");
            }
        }
    }
}
