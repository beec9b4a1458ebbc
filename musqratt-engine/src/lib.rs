//! The MusQraTT broker as a sans-IO state machine: packets and clock ticks in, actions out.
//!
//! An [`Engine`] owns connections and sessions and knows nothing of sockets, threads or clocks.
//! A runtime (tokio, io_uring, blocking sockets, or your own event loop) feeds it what happened
//! with [`Engine::handle_input`] and the current time, then carries out what it asks:
//!
//! ```
//! use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant};
//! use musqratt_engine::bytes::BytesMut;
//!
//! let mut engine = Engine::new(Config::default());
//! let now = Instant::from_micros(0);
//! let conn = ConnectionId(1);
//! engine.handle_input(now, Input::Accepted { conn });
//! // An MQTT 3.1.1 CONNECT with client id "a", as read from the socket.
//! let bytes = BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a"[..]);
//! engine.handle_input(now, Input::Data { conn, bytes });
//! let mut written = Vec::new();
//! while let Some(action) = engine.poll_action() {
//!     match action {
//!         Action::Send { conn, bytes } => written.push((conn, bytes)), // write to the socket
//!         Action::Close { .. } => {}                                    // close after writing
//!         _ => {}                                                       // events, auth, ...
//!     }
//! }
//! assert_eq!(&written[0].1[..], b"\x20\x02\x00\x00"); // CONNACK, accepted
//! // Then sleep until the next deadline (or the next input) and fire it.
//! if let Some(deadline) = engine.poll_timeout() {
//!     engine.handle_timeout(deadline);
//! }
//! ```
//!
//! # What a runtime must do
//!
//! The engine is correct only if the runtime around it keeps these rules (docs/RUNTIMES.md
//! says more, with the reasons):
//!
//! 1. **One thread at a time per engine.** An engine is one shard; shards talk only through
//!    [`Action::ToShard`] and [`Input::FromShard`], which must arrive FIFO per pair of shards
//!    (MQTT's ordering across shards rests on it). Never block a shard on a full link: queue in
//!    order. A runtime may run a shard's step on another shard's thread under a lock held for
//!    that step (docs/adr/0010-cross-shard-step-in-person.md).
//! 2. **Time is an input.** Pass a monotonic `now` with every call; after each batch of inputs
//!    call [`Engine::poll_timeout`] (the deadline moves) and [`Engine::handle_timeout`] when it
//!    comes.
//! 3. **Drain after every input.** Call [`Engine::poll_action`] until `None` before waiting
//!    again and carry the actions out in the order given. Consecutive [`Action::Send`]s of a
//!    connection belong together (header, then shared payload): write them with one vectored
//!    write, and report what was written with [`Input::Written`], which is how the engine tells
//!    a slow reader from a fast one.
//! 4. **Bytes in as read.** [`Input::Data`] takes the `BytesMut` just read; decoded payloads are
//!    slices of it.
//! 5. **Closed is closed.** Feed [`Input::Closed`] when a read or write fails or the peer closes;
//!    an [`Action::Close`]d connection is already forgotten.
//! 6. **Connection ids** are unique for the life of the broker and below 2^63 (MQTT-SN peers use
//!    the upper half); a connection moved by [`Action::Handoff`] keeps its id on the new shard.
//! 7. **Answer [`Action::Authenticate`]** with [`Input::AuthDecision`], at once or later; the
//!    engine serves the other connections meanwhile.
//! 8. **Stop with [`Input::Shutdown`]**, then flush what it sends.
//!
//! Rules the engine keeps (docs/DESIGN.md, "The engine contract"):
//! - it never reads a clock: time is an input, so the same inputs give the same outputs, byte
//!   for byte, which the transcript tests rely on;
//! - protocol violations never escape as errors: they become the right reason code and a
//!   [`Action::Close`];
//! - memory per connection and per session is bounded by [`Config`].
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acl;
mod backlog;
mod close;
mod config;
mod connect;
mod connection;
mod deliver;
mod engine;
mod ids;
mod io;
mod metrics;
mod persist;
mod publish;
mod retained;
mod route_sync;
pub mod router;
mod routing;
mod session;
mod shards;
mod sn;
mod store;
mod store_full;
mod store_queue;
mod store_sync;
mod store_will;
mod subscribe;
mod subscribers;
mod sys;
mod time;
mod timers;

pub use bytes;
pub use config::{BacklogConfig, Config};
pub use engine::Engine;
pub use ids::{ConnectionId, PeerId, ShardId};
pub use io::{Action, AuthDecision, AuthRequest, DropReason, Event, Input, ShardMessage};
pub use metrics::{Dropped, Histogram, LATENCY_BUCKETS, Metrics};
pub use musqratt_proto as proto;
pub use shards::owner_of;
pub use sn::peers::PeerTable;
pub use sn::wireless_node;
pub use store::{
    Record, RestoreError, StoredDelivery, StoredMessage, StoredSession, StoredSubscription,
    StoredWill,
};
pub use sys::{ClientInfo, ClientProtocol};
pub use time::Instant;
