//! MQTT 3.1, 3.1.1 and 5.0 control packets (§2, §3) and their incremental codec.
//!
//! One set of packet types serves all three versions: fields a version lacks (properties, most
//! reason codes) are empty or Success there, and the version is given to every encode and
//! decode call, as it is fixed for a connection by its CONNECT.

mod codec;
mod connect;
mod disconnect;
pub mod properties;
mod publish;
mod reason;
mod subscribe;

use alloc::boxed::Box;
use bytes::{BufMut, Bytes, BytesMut};

pub use codec::Decoder;
pub use connect::{ConnAck, Connect, LastWill};
pub use disconnect::{Auth, Disconnect};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, SubscriptionIds, UnsubscribeProperties, UserProperties,
    WillProperties,
};
pub use publish::{PubResponse, Publish};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use crate::error::{DecodeError, EncodeError};
use crate::types::ProtocolVersion;
use crate::wire::{MAX_VARINT, varint_len, write_varint};

/// The control packet types of the fixed header (§2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgment.
    ConnAck = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: publish acknowledgment (QoS 1).
    PubAck = 4,
    /// 5: publish received (QoS 2, part 1).
    PubRec = 5,
    /// 6: publish release (QoS 2, part 2).
    PubRel = 6,
    /// 7: publish complete (QoS 2, part 3).
    PubComp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgment.
    SubAck = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgment.
    UnsubAck = 11,
    /// 12: ping request.
    PingReq = 12,
    /// 13: ping response.
    PingResp = 13,
    /// 14: disconnect notification.
    Disconnect = 14,
    /// 15: authentication exchange (MQTT 5.0 only).
    Auth = 15,
}

impl PacketType {
    /// The packet type of a fixed header's first byte; `None` for the reserved type 0.
    #[must_use]
    pub const fn from_header(byte: u8) -> Option<Self> {
        Some(match byte >> 4 {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The flag bits the fixed header must carry (§2.1.3): 0b0010 for PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE, 0 for the others; PUBLISH's flags carry DUP, QoS and RETAIN instead.
    const fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

/// An MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet {
    /// CONNECT (§3.1). Boxed, as CONNACK is: they are the largest packets and the rarest, and a
    /// `Packet` the size of a PUBLISH moves faster on the publish path.
    Connect(Box<Connect>),
    /// CONNACK (§3.2).
    ConnAck(Box<ConnAck>),
    /// PUBLISH (§3.3).
    Publish(Publish),
    /// PUBACK (§3.4).
    PubAck(PubResponse),
    /// PUBREC (§3.5).
    PubRec(PubResponse),
    /// PUBREL (§3.6).
    PubRel(PubResponse),
    /// PUBCOMP (§3.7).
    PubComp(PubResponse),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe),
    /// SUBACK (§3.9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (§3.11).
    UnsubAck(UnsubAck),
    /// PINGREQ (§3.12).
    PingReq,
    /// PINGRESP (§3.13).
    PingResp,
    /// DISCONNECT (§3.14).
    Disconnect(Disconnect),
    /// AUTH (§3.15), MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The type of this packet.
    #[must_use]
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes the body of one packet whose fixed header has been read: `header` is its first
    /// byte and `body` exactly Remaining Length bytes. Use [`Decoder`] to read from a stream.
    ///
    /// # Errors
    /// The first rule of the specification the bytes break.
    #[inline]
    pub fn decode(version: ProtocolVersion, header: u8, body: Bytes) -> Result<Self, DecodeError> {
        let kind = PacketType::from_header(header).ok_or(DecodeError::ReservedPacketType(0))?;
        let flags = header & 0x0F;
        if let Some(required) = kind.required_flags()
            && flags != required
        {
            return Err(DecodeError::InvalidHeaderFlags(kind as u8)); // MQTT-2.1.3-1
        }
        Ok(match kind {
            PacketType::Connect => Self::Connect(Box::new(Connect::decode(body)?)),
            PacketType::ConnAck => Self::ConnAck(Box::new(ConnAck::decode(version, body)?)),
            PacketType::Publish => Self::Publish(Publish::decode(version, flags, body)?),
            PacketType::PubAck => Self::PubAck(PubResponse::decode(version, kind, body)?),
            PacketType::PubRec => Self::PubRec(PubResponse::decode(version, kind, body)?),
            PacketType::PubRel => Self::PubRel(PubResponse::decode(version, kind, body)?),
            PacketType::PubComp => Self::PubComp(PubResponse::decode(version, kind, body)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(version, body)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(version, body)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(version, body)?),
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(version, body)?),
            PacketType::PingReq => ensure_consumed(&body).map(|()| Self::PingReq)?,
            PacketType::PingResp => ensure_consumed(&body).map(|()| Self::PingResp)?,
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(version, body)?),
            PacketType::Auth if version.is_v5() => Self::Auth(Auth::decode(body)?),
            PacketType::Auth => return Err(DecodeError::ReservedPacketType(15)),
        })
    }

    /// The size of the variable header and payload (the Remaining Length).
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Self::Connect(p) => p.body_len(),
            Self::ConnAck(p) => p.body_len(version),
            Self::Publish(p) => p.lens(version).map(|(_, body)| body),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.body_len(version)
            }
            Self::Subscribe(p) => p.body_len(version),
            Self::SubAck(p) => p.body_len(version),
            Self::Unsubscribe(p) => p.body_len(version),
            Self::UnsubAck(p) => p.body_len(version),
            Self::PingReq | Self::PingResp => Ok(0),
            Self::Disconnect(p) => p.body_len(version),
            Self::Auth(_) if !version.is_v5() => Err(EncodeError::NotRepresentable),
            Self::Auth(p) => p.body_len(),
        }
    }

    /// The size of the whole encoded packet, to compare with a peer's Maximum Packet Size.
    ///
    /// # Errors
    /// As [`Packet::encode`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        packet_len(self.body_len(version)?)
    }

    /// Appends the encoded packet to `dst`. A CONNECT is encoded in its own `protocol` version.
    ///
    /// # Errors
    /// A field over 65,535 bytes, a packet over the Remaining Length limit, AUTH before 5.0, or a
    /// value the version cannot express.
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let kind = self.packet_type();
        let header = ((kind as u8) << 4) | kind.required_flags().unwrap_or(0);
        match self {
            Self::Publish(p) => return p.encode(version, dst),
            Self::Auth(_) if !version.is_v5() => return Err(EncodeError::NotRepresentable),
            _ => {}
        }
        let body = self.body_len(version)?;
        write_fixed_header(dst, header, body)?;
        match self {
            Self::Connect(p) => p.encode_body(dst),
            Self::ConnAck(p) => p.encode_body(version, dst),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.encode_body(version, dst)
            }
            Self::Subscribe(p) => p.encode_body(version, dst),
            Self::SubAck(p) => p.encode_body(version, dst),
            Self::Unsubscribe(p) => p.encode_body(version, dst),
            Self::UnsubAck(p) => p.encode_body(version, dst),
            Self::Disconnect(p) => p.encode_body(version, dst),
            Self::Auth(p) => p.encode_body(dst),
            Self::Publish(_) | Self::PingReq | Self::PingResp => Ok(()),
        }
    }
}

/// Fails with [`DecodeError::TrailingBytes`] unless the packet has been read to its end.
pub(crate) fn ensure_consumed(body: &Bytes) -> Result<(), DecodeError> {
    if body.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
}

/// Decodes 5.0 properties with `decode`, or gives the empty set for older versions.
pub(crate) fn properties_or_default<P: Default>(
    version: ProtocolVersion,
    body: &mut Bytes,
    decode: impl FnOnce(&mut Bytes) -> Result<P, DecodeError>,
) -> Result<P, DecodeError> {
    if version.is_v5() { decode(body) } else { Ok(P::default()) }
}

/// The size of a Property Length and the properties it counts.
pub(crate) fn properties_encoded_len(body: usize) -> Result<usize, EncodeError> {
    checked_varint(body).map(|len| varint_len(len) + body)
}

pub(crate) fn checked_varint(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_VARINT)
        .ok_or(EncodeError::PacketTooLarge { size: len, max: MAX_VARINT as usize })
}

/// The size of a whole packet whose Remaining Length is `body`.
pub(crate) fn packet_len(body: usize) -> Result<usize, EncodeError> {
    checked_varint(body).map(|len| 1 + varint_len(len) + body)
}

/// Writes the fixed header (§2.1) and returns the size of the whole packet.
pub(crate) fn write_fixed_header(
    dst: &mut BytesMut,
    header: u8,
    body: usize,
) -> Result<usize, EncodeError> {
    let len = checked_varint(body)?;
    dst.reserve(5 + body.min(4096));
    dst.put_u8(header);
    write_varint(dst, len);
    Ok(1 + varint_len(len) + body)
}
