//! MQTT 3.1, 3.1.1 and 5.0 and MQTT-SN 1.2 codecs for brokers and clients.
//!
//! - **Incremental**: [`mqtt::Decoder::decode`] takes the bytes received so far and answers
//!   `Ok(None)` until a whole packet is there; the Maximum Packet Size is checked from the fixed
//!   header, before the body is buffered.
//! - **Zero-copy**: a decoded PUBLISH's topic and payload are [`bytes::Bytes`] slices of the read
//!   buffer, and [`mqtt::Publish::encode_header`] writes only the small per-recipient header so a
//!   broker hands header and shared payload to one vectored write.
//! - **Strict**: every rule of the specifications a receiver must enforce is a typed
//!   [`DecodeError`] naming its normative statement, mapped to the reason code to answer with.
//! - **`no_std` + `alloc`**: no allocation beyond the packet structures, no clock, no I/O.
//!
//! ```
//! use musqratt_proto::bytes::BytesMut;
//! use musqratt_proto::mqtt::{Decoder, Packet};
//! use musqratt_proto::ProtocolVersion;
//!
//! // A server's decoder: the first packet must be CONNECT, which fixes the version.
//! let mut decoder = Decoder::new(1024 * 1024);
//! let mut buf = BytesMut::from(&b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test\xc0"[..]);
//! let Some(Packet::Connect(connect)) = decoder.decode(&mut buf)? else { panic!("a CONNECT") };
//! assert_eq!(&*connect.client_id, "test");
//! assert_eq!(decoder.version(), Some(ProtocolVersion::V3_1_1));
//! // The next packet (PINGREQ) is only partly there: the decoder waits for more bytes.
//! assert_eq!(decoder.decode(&mut buf)?, None);
//! buf.extend_from_slice(b"\x00");
//! assert_eq!(decoder.decode(&mut buf)?, Some(Packet::PingReq));
//! # Ok::<(), musqratt_proto::DecodeError>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod mqtt;
pub mod sn;
pub mod topic;
mod types;
pub(crate) mod wire;

pub use bytes;
pub use bytestring;
pub use error::{DecodeError, EncodeError};
pub use types::{PacketId, ProtocolVersion, QoS};
