//! MusQraTT, an MQTT broker for the edge: MQTT 3.1, 3.1.1 and 5.0 on a sans-IO engine with
//! thread-per-core runtimes.
//!
//! This facade re-exports the pieces and picks the runtime with a feature:
//! - [`proto`]: the codecs;
//! - [`engine`]: the broker state machine, for embedders with their own event loop;
//! - [`runtime`] (feature `tokio`, the default): the thread-per-core tokio runtime, whose
//!   [`Broker`] runs a whole broker in-process;
//! - [`config`]: the configuration file of the `musqratt` binary;
//! - [`http`]: the `[http]` admin listener (`/metrics`, `/healthz`, `/api/v1/stats`);
//! - [`passwd`]: `musqratt passwd`, password files Mosquitto also reads.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")] {
//! let config = musqratt::config::FileConfig::parse("listeners = [\"mqtt://127.0.0.1:0\"]")?;
//! let broker = musqratt::Broker::start(config.broker_config()?)?;
//! println!("listening on {}", broker.local_addr());
//! broker.shutdown()?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod dashboard;
pub mod http;
pub mod passwd;
pub mod top;

pub use musqratt_engine as engine;
pub use musqratt_proto as proto;
#[cfg(feature = "tokio")]
pub use musqratt_tokio as runtime;
#[cfg(feature = "tokio")]
pub use musqratt_tokio::{Broker, BrokerConfig, ShutdownHandle};
