//! The errors of the client.

use core::time::Duration;
use std::sync::Arc;

use musqratt_proto::mqtt::ReasonCode;
use musqratt_proto::{DecodeError, EncodeError};

/// Why a client operation failed.
///
/// `Clone` so that the reason a connection ended can be reported to every pending operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address could not be understood.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A socket error (connecting, reading or writing).
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The server answered CONNECT with a failure reason code.
    #[error("connection refused by the server: {reason}{}", fmt_reason_string(.reason_string))]
    ConnectionRefused {
        /// The CONNACK reason code (3.1.1 return codes are mapped to their 5.0 equivalents).
        reason: ReasonCode,
        /// The Reason String property of a 5.0 CONNACK.
        reason_string: Option<String>,
    },
    /// The connection is closed: the peer closed it, or the client was disconnected.
    #[error("connection closed")]
    ConnectionClosed,
    /// The server ended the connection with a DISCONNECT packet (MQTT 5.0).
    #[error("disconnected by the server: {reason}{}", fmt_reason_string(.reason_string))]
    DisconnectedByServer {
        /// The DISCONNECT reason code.
        reason: ReasonCode,
        /// Its Reason String property.
        reason_string: Option<String>,
    },
    /// The server did not answer in time.
    #[error("timed out after {timeout:?} waiting for {waiting_for}")]
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
        /// How long.
        timeout: Duration,
    },
    /// No PINGRESP came within the keep alive interval: the connection was closed.
    #[error("no PINGRESP within the keep alive interval")]
    KeepAliveTimeout,
    /// The server sent bytes that are not a valid packet.
    #[error("invalid packet from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a field too long, a value the version cannot express).
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The server sent a valid packet the client did not expect at that point.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A topic name or filter is not valid.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused an operation with a failure reason code (SUBACK, UNSUBACK, PUBACK,
    /// PUBREC or PUBCOMP).
    #[error("{operation} refused by the server: {reason}{}", fmt_reason_string(.reason_string))]
    Refused {
        /// Which operation: "subscribe", "unsubscribe" or "publish".
        operation: &'static str,
        /// The failure reason code.
        reason: ReasonCode,
        /// The Reason String property (5.0).
        reason_string: Option<String>,
    },
}

fn fmt_reason_string(reason: &Option<String>) -> String {
    reason.as_ref().map(|text| format!(" ({text})")).unwrap_or_default()
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                Self::ConnectionClosed
            }
            _ => Self::Io(Arc::new(error)),
        }
    }
}
