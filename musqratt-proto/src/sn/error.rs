//! Why a datagram is not a valid MQTT-SN 1.2 message, or a message cannot be encoded.

use crate::topic::TopicError;

/// Why a datagram is not a valid MQTT-SN message. Each variant cites the section of the MQTT-SN
/// 1.2 specification it enforces; a gateway drops such a datagram (UDP has no error channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SnDecodeError {
    /// The datagram ends inside the Length field, before the MsgType, or inside a field the
    /// message type requires (§5.2, §5.4).
    #[error("datagram shorter than its fields")]
    Truncated,
    /// The Length field does not equal the datagram's size (§5.2.1: it "specifies the total number
    /// of octets contained in the message"), or an encapsulation header is shorter than its three
    /// fixed octets or longer than the datagram (§5.5).
    #[error("length field does not match the datagram")]
    LengthMismatch,
    /// Octets are left after the last field of a fixed-size message (§5.4).
    #[error("datagram longer than its fields")]
    TrailingBytes,
    /// The MsgType is one of the reserved values (§5.3.2, Table 3).
    #[error("unknown message type 0x{0:02X}")]
    UnknownMessageType(u8),
    /// The TopicIdType of PUBLISH, SUBSCRIBE or UNSUBSCRIBE is the reserved 0b11 (§5.3.4).
    #[error("reserved topic id type")]
    InvalidTopicIdType,
    /// QoS -1 (0b11) in a message other than PUBLISH: SUBSCRIBE, SUBACK, WILLTOPIC and
    /// WILLTOPICUPD carry QoS 0 to 2 (§5.3.4, §6.8).
    #[error("QoS -1 is not allowed in this message")]
    InvalidQoS,
    /// A ClientId, topic name or will topic is not well-formed UTF-8 (§5.3.3, §5.3.12; MQTT
    /// strings, which the gateway hands to the broker).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A ClientId, topic name or will topic contains U+0000, which MQTT forbids in strings
    /// (MQTT-1.5.4-2), so the gateway could not hand it to the broker.
    #[error("string contains U+0000")]
    NullCharacter,
    /// The ReturnCode is one of the reserved values 0x04 to 0xFF (§5.3.10).
    #[error("reserved return code 0x{0:02X}")]
    InvalidReturnCode(u8),
    /// The ProtocolId of CONNECT is not 0x01 (§5.3.8).
    #[error("unsupported protocol id 0x{0:02X}")]
    UnsupportedProtocolId(u8),
    /// The topic name of REGISTER, WILLTOPIC or WILLTOPICUPD is not a valid topic name (§5.3.12,
    /// MQTT-4.7.3-1, MQTT-3.3.2-2).
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// The topic name of SUBSCRIBE or UNSUBSCRIBE is not a valid topic filter (§5.4.15, MQTT
    /// §4.7.1).
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A predefined topic id or short topic name field of SUBSCRIBE or UNSUBSCRIBE is not exactly
    /// two octets (§5.3.11, §5.4.15).
    #[error("topic id field is not two octets")]
    InvalidTopicIdLength,
    /// An encapsulated message carries another encapsulation (§5.5: the forwarder encapsulates
    /// "the MQTT-SN message" of a client). Rejecting it also bounds decoding depth.
    #[error("nested encapsulation")]
    NestedEncapsulation,
    /// The encapsulation header uses the three-octet Length form; §5.5 defines its Length as
    /// "1-octet long".
    #[error("encapsulation header with a three-octet length")]
    EncapsulationLongLength,
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SnEncodeError {
    /// The message is longer than 65,535 octets, the most the three-octet Length field can
    /// express (§5.2.1).
    #[error("message of {0} octets exceeds 65535")]
    TooLong(usize),
    /// The encapsulation header is longer than the 255 octets its one-octet Length allows (§5.5),
    /// that is the wireless node id is longer than 252 octets.
    #[error("wireless node id longer than 252 octets")]
    WirelessNodeIdTooLong,
    /// The encapsulation radius is above 3: it has two bits (§5.5).
    #[error("radius {0} does not fit in two bits")]
    InvalidRadius(u8),
    /// An encapsulated message is itself an encapsulation, which [`super::decode`] rejects
    /// (§5.5).
    #[error("nested encapsulation")]
    NestedEncapsulation,
    /// An optional field is `Some` but empty, which would decode as absent: the GwAdd of GWINFO
    /// (§5.4.3) or the ClientId of PINGREQ (§5.4.19).
    #[error("optional field present but empty")]
    EmptyOptionalField,
}
