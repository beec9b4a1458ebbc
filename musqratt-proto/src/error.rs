//! Why a packet could not be decoded or encoded. Small `Copy` enums, so that a broker can match on
//! them and answer with the reason code each one maps to, without allocating.

use crate::mqtt::ReasonCode;
use crate::topic::TopicError;

/// Why bytes received from a peer are not a valid MQTT packet.
///
/// Each variant names the normative statement it enforces; [`DecodeError::reason_code`] gives the
/// reason code an MQTT 5.0 receiver sends in its DISCONNECT (or CONNACK) before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than the receiver's Maximum Packet Size (MQTT-3.1.2-24, §3.2.2.3.6).
    /// Checked from the fixed header, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// The size of the whole packet the fixed header announced.
        size: u32,
        /// The receiver's limit.
        max: u32,
    },
    /// A Variable Byte Integer used more than four bytes or more bytes than needed (MQTT-1.5.5-1).
    #[error("malformed variable byte integer")]
    MalformedVarInt,
    /// Packet type 0 is reserved, and so is 15 (AUTH) before MQTT 5.0 (§2.1.2).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The first packet of a connection is not CONNECT (MQTT-3.1.0-1), so its version is unknown.
    #[error("first packet is not CONNECT")]
    FirstPacketNotConnect,
    /// The No Local option is set on a shared subscription (MQTT-3.8.3-4).
    #[error("No Local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// The flag bits of the fixed header are not those the packet type requires (MQTT-2.1.3-1).
    #[error("invalid fixed header flags for packet type {0}")]
    InvalidHeaderFlags(u8),
    /// A field ran past the end of the packet as its Remaining Length delimits it (§1.5, §2.1.4).
    #[error("packet shorter than its fields")]
    Truncated,
    /// Bytes were left after the last field of a packet (§2.1.4).
    #[error("packet longer than its fields")]
    TrailingBytes,
    /// A UTF-8 Encoded String is not well-formed UTF-8 or encodes a surrogate (MQTT-1.5.4-1).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A UTF-8 Encoded String contains U+0000 (MQTT-1.5.4-2).
    #[error("string contains U+0000")]
    NullCharacter,
    /// The protocol name of CONNECT is neither `MQTT` nor `MQIsdp` (MQTT-3.1.2-1).
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// The protocol level of CONNECT is not 3, 4 or 5, or does not go with the name (MQTT-3.1.2-2).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// The reserved bit of the CONNECT flags is set (MQTT-3.1.2-3).
    #[error("reserved connect flag set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3 (MQTT-3.1.2-11, -13, -14,
    /// -15).
    #[error("inconsistent will flags")]
    InvalidWillFlags,
    /// MQTT 3.1.1 forbids a password without a user name (MQTT-3.1.2-22).
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// A QoS field holds 3 (MQTT-3.3.1-4, MQTT-3-8.3-4).
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// A QoS 0 PUBLISH has the DUP flag set (MQTT-3.3.1-2).
    #[error("DUP set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// A topic name is not valid (MQTT-3.3.2-2, MQTT-4.7.3-1, MQTT-4.7.0-1).
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A Response Topic is not a valid topic name: empty or holding a wildcard (MQTT-3.3.2-13,
    /// MQTT-3.3.2-14, and the same property of a Will Message, §3.1.3.2.6). A Protocol Error
    /// rather than Topic Name invalid: the packet's own topic is fine, a property breaks a rule.
    #[error("invalid response topic: {0}")]
    InvalidResponseTopic(TopicError),
    /// A topic filter is not valid (MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.8.2-1, MQTT-4.8.2-2).
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A packet that needs a Packet Identifier carries 0 (MQTT-2.2.1-3).
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A SUBSCRIBE carries no subscription (MQTT-3.8.3-3).
    #[error("SUBSCRIBE without a topic filter")]
    EmptySubscribe,
    /// An UNSUBSCRIBE carries no topic filter (MQTT-3.10.3-2).
    #[error("UNSUBSCRIBE without a topic filter")]
    EmptyUnsubscribe,
    /// Reserved bits of the subscription options are set, or Retain Handling is 3 (MQTT-3.8.3-5,
    /// §3.8.3.1).
    #[error("invalid subscription options")]
    InvalidSubscriptionOptions,
    /// A property other than User Property (or Subscription Identifier in PUBLISH) appears twice
    /// (§2.2.2.2: "It is a Protocol Error to include ... more than once").
    #[error("property 0x{0:02X} appears more than once")]
    DuplicateProperty(u8),
    /// A property that this packet may not carry (§2.2.2.2 table).
    #[error("property 0x{0:02X} is not allowed in this packet")]
    PropertyNotAllowed(u8),
    /// A property identifier the specification does not define (§2.2.2.2).
    #[error("unknown property 0x{0:02X}")]
    UnknownProperty(u8),
    /// A property holds a value the specification forbids: 0 for Receive Maximum, Maximum Packet
    /// Size or Subscription Identifier, a byte other than 0 or 1 for a boolean (§3.1.2.11, §3.2.2.3).
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// A reason code that this packet may not carry (§2.4 and each packet's table).
    #[error("reason code 0x{0:02X} is not allowed in this packet")]
    InvalidReasonCode(u8),
    /// A reserved CONNACK flag bit is set (MQTT-3.2.2-1).
    #[error("reserved CONNACK flags set")]
    InvalidConnAckFlags,
}

impl DecodeError {
    /// The reason code an MQTT 5.0 receiver closes the connection with for this error (§4.13:
    /// "Malformed Packet" for bytes that do not follow the format, "Protocol Error" for a valid
    /// format used against the rules).
    #[must_use]
    pub const fn reason_code(self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::UnsupportedProtocolLevel(_) | Self::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            Self::InvalidTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            Self::DuplicateProperty(_)
            | Self::PropertyNotAllowed(_)
            | Self::InvalidPropertyValue(_)
            | Self::InvalidReasonCode(_)
            | Self::InvalidResponseTopic(_)
            | Self::FirstPacketNotConnect
            | Self::NoLocalOnSharedSubscription => ReasonCode::PROTOCOL_ERROR,
            Self::MalformedVarInt
            | Self::ReservedPacketType(_)
            | Self::InvalidHeaderFlags(_)
            | Self::Truncated
            | Self::TrailingBytes
            | Self::InvalidUtf8
            | Self::NullCharacter
            | Self::ConnectReservedFlag
            | Self::InvalidWillFlags
            | Self::PasswordWithoutUsername
            | Self::InvalidQoS
            | Self::DupOnQoS0
            | Self::InvalidTopicFilter(_)
            | Self::ZeroPacketId
            | Self::EmptySubscribe
            | Self::EmptyUnsubscribe
            | Self::InvalidSubscriptionOptions
            | Self::UnknownProperty(_)
            | Self::InvalidConnAckFlags => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded: it does not fit the wire format or the peer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet exceeds the peer's Maximum Packet Size or the 268,435,455-byte Remaining Length
    /// limit (§2.1.4, MQTT-3.1.2-24).
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// The size the encoded packet would have.
        size: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// A string or binary field is longer than 65,535 bytes (§1.5.4, §1.5.6).
    #[error("field longer than 65535 bytes")]
    FieldTooLong,
    /// A value cannot be expressed in this protocol version or exceeds its field (for example a
    /// Subscription Identifier above 268,435,455 or a reason code 3.1.1 has no form for).
    #[error("value not representable in this protocol version")]
    NotRepresentable,
}
