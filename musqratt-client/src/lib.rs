//! A small async MQTT 3.1.1 / 5.0 client on tokio, built on `musqratt-proto`'s codec, and the
//! command-line tools of `musqratt`: [`pub_cmd`], [`sub_cmd`] and the interactive [`shell`].
//!
//! - [`Client`]: connect, subscribe, publish at QoS 0/1/2 with the acknowledgement flows done
//!   for you, receive acknowledged messages, keep alive with automatic PINGREQ, disconnect.
//! - [`RawConnection`]: one connection that sends any [`Packet`](musqratt_proto::mqtt::Packet)
//!   or raw bytes and receives packets with a time limit, for conformance tests.
//!
//! ```no_run
//! use musqratt_client::{Client, ConnectOptions};
//! use musqratt_proto::QoS;
//!
//! # async fn demo() -> Result<(), musqratt_client::ClientError> {
//! let (mut client, _connack) =
//!     Client::connect(ConnectOptions::new("demo").url("mqtt://127.0.0.1:1883")).await?;
//! client.subscribe("sensors/#", QoS::AtLeastOnce).await?;
//! client.publish("sensors/temp", "21.5", QoS::ExactlyOnce, false).await?;
//! if let Some(message) = client.next_message().await {
//!     println!("{} {:?}", message.topic, message.payload);
//! }
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```

mod cli;
mod client;
mod error;
mod options;
pub mod raw;
mod shell;
pub mod url;

pub use cli::{ConnArgs, PubArgs, SubArgs, pub_cmd, pub_cmd_with, sub_cmd, sub_cmd_with};
pub use client::Client;
pub use error::ClientError;
pub use options::ConnectOptions;
pub use raw::RawConnection;
pub use shell::{ShellArgs, shell, shell_with};

pub use musqratt_proto;
