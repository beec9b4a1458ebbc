//! MQTT-SN 1.2 over UDP, natively: a second protocol front-end of the same engine (ADR 5).
//!
//! An MQTT-SN client is an ordinary [`crate::connection::Connection`] whose `sn` field holds the
//! state MQTT-SN adds (its UDP peer, its topic registry, the will exchange, sleep,
//! retransmission). Its session is an ordinary [`crate::session::Session`] keyed by its client
//! id on the owner shard, so subscriptions, the inflight window, the session queue, retained
//! messages, wills and message expiry are the MQTT code paths. Three seams reach this module:
//! inbound datagrams ([`Engine::handle_datagram`]), outbound PUBLISH
//! ([`Engine::sn_send_publish`], with the topic registered first when needed) and the packets
//! the MQTT paths send, translated to their MQTT-SN form ([`Engine::sn_send_packet_at`]).
//!
//! The state MQTT-SN adds ([`state`]: the engine-wide `SnFront`, the per-connection `SnConn`)
//! and the datagram encoding ([`wire`]) are leaf modules that do not know the `Engine`; the
//! steps that work on it are `inbound` and `outbound` (docs/adr/0014-engine-layers.md).
//!
//! Section numbers are those of "MQTT For Sensor Networks (MQTT-SN) Protocol Specification
//! Version 1.2".
//!
//! [`Engine::handle_datagram`]: crate::Engine::handle_datagram
//! [`Engine::sn_send_publish`]: crate::Engine::sn_send_publish
//! [`Engine::sn_send_packet_at`]: crate::Engine::sn_send_packet_at

mod inbound;
mod outbound;
pub(crate) mod peers;
pub(crate) mod state;
mod wire;

pub use wire::wireless_node;
