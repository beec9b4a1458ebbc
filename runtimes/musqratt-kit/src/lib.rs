//! The runtime kit: what every MusQraTT runtime (tokio, io-uring, blocking) does the same way
//! around the engine, whatever moves its bytes (docs/adr/0013-runtime-kit.md).
//!
//! - [`Authenticator`] and [`Auth`]: the one answer to `Action::Authenticate`, fail closed;
//! - [`Clock`]: the engine's time, microseconds since the broker started;
//! - [`EventLog`]: the one formatter of engine events, with the slow-subscriber drop log
//!   limited to one line a second;
//! - [`BrokerConfig`]: what a broker runs with, the same for every runtime;
//! - [`configure_accepted`] and [`AcceptErrors`]: socket options of an accepted connection,
//!   and what a failed accept means (said once per shortage of descriptors);
//! - [`StreamLayer`], [`Stack`] and [`Layers`]: the sans-IO byte-stream layers (TLS, WebSocket
//!   framing; today the [`Identity`] layer and, with the `tls` feature, `layer::tls`) between a
//!   connection's socket and the engine, written once for every runtime
//!   (docs/adr/0015-byte-stream-layers.md);
//! - [`metrics`]: the engines' merged numbers as `$SYS` topics, Prometheus text and JSON
//!   (docs/adr/0018-metrics.md), and [`MetricsSource`], which reads them (and the connected
//!   clients) from any runtime's shards ([`Shards`]);
//! - [`take_in_person_turn`]: whether a thread may run another shard's step itself (ADR 10);
//! - [`SendJoiner`]: consecutive sends to a layered connection joined into one write (one TLS
//!   record, one WebSocket frame per PUBLISH instead of one per chunk).
//!
//! Nothing here reads, writes or starts a thread: a runtime owns those.

mod accept;
mod auth;
mod clock;
mod config;
mod event;
mod in_person;
mod join;
pub mod layer;
pub mod metrics;
mod source;

pub use accept::{AcceptErrors, SHORTAGE_LOG_INTERVAL, configure_accepted};
pub use auth::{AllowAnonymous, Auth, AuthError, AuthReply, Authenticator, Decisions};
pub use clock::Clock;
pub use config::{BrokerConfig, DEFAULT_HIBERNATE_AFTER, FsyncPolicy, Persistence};
pub use event::{DROP_LOG_INTERVAL, EventLog};
pub use in_person::{IN_PERSON_SHARE, IN_PERSON_WINDOW, InPersonTurn, take_in_person_turn};
pub use join::{JOIN_AT_MOST, SendJoiner};
pub use layer::{Identity, LayerError, Layers, PeerIdentity, Stack, StackError, StreamLayer};
pub use musqratt_engine as engine;
pub use source::{Client, ClientsPage, MAX_PAGE_LIMIT, MetricsSource, Order, PeerOf, Shards};
