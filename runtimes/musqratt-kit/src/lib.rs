//! The runtime kit: what every MusQraTT runtime (tokio, io-uring, blocking) does the same way
//! around the engine, whatever moves its bytes (docs/adr/0013-runtime-kit.md).
//!
//! - [`Authenticator`] and [`Auth`]: the one answer to `Action::Authenticate`, fail closed;
//! - [`Clock`]: the engine's time, microseconds since the broker started;
//! - [`EventLog`]: the one formatter of engine events, with the slow-subscriber drop log
//!   limited to one line a second;
//! - [`BrokerConfig`]: what a broker runs with, the same for every runtime.
//!
//! Nothing here does I/O or starts a thread: a runtime owns those.

mod auth;
mod clock;
mod config;
mod event;

pub use auth::{AllowAnonymous, Auth, AuthError, AuthReply, Authenticator, Decisions};
pub use clock::Clock;
pub use config::{BrokerConfig, DEFAULT_HIBERNATE_AFTER};
pub use event::{DROP_LOG_INTERVAL, EventLog};
pub use musqratt_engine as engine;
