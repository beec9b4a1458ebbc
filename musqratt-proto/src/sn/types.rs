//! The small fields MQTT-SN messages share: message types, the Flags octet, topic and message
//! identifiers and return codes (MQTT-SN 1.2 §5.3).

use core::fmt;

use crate::QoS;

use super::SnDecodeError;

/// The MsgType octet (§5.3.2, Table 3). Values not listed are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum MsgType {
    /// ADVERTISE: a gateway announces itself (§5.4.1).
    Advertise = 0x00,
    /// SEARCHGW: a client looks for a gateway (§5.4.2).
    SearchGw = 0x01,
    /// GWINFO: the answer to SEARCHGW (§5.4.3).
    GwInfo = 0x02,
    /// CONNECT (§5.4.4).
    Connect = 0x04,
    /// CONNACK (§5.4.5).
    ConnAck = 0x05,
    /// WILLTOPICREQ (§5.4.6).
    WillTopicReq = 0x06,
    /// WILLTOPIC (§5.4.7).
    WillTopic = 0x07,
    /// WILLMSGREQ (§5.4.8).
    WillMsgReq = 0x08,
    /// WILLMSG (§5.4.9).
    WillMsg = 0x09,
    /// REGISTER (§5.4.10).
    Register = 0x0A,
    /// REGACK (§5.4.11).
    RegAck = 0x0B,
    /// PUBLISH (§5.4.12).
    Publish = 0x0C,
    /// PUBACK (§5.4.13).
    PubAck = 0x0D,
    /// PUBCOMP (§5.4.14).
    PubComp = 0x0E,
    /// PUBREC (§5.4.14).
    PubRec = 0x0F,
    /// PUBREL (§5.4.14).
    PubRel = 0x10,
    /// SUBSCRIBE (§5.4.15).
    Subscribe = 0x12,
    /// SUBACK (§5.4.16).
    SubAck = 0x13,
    /// UNSUBSCRIBE (§5.4.17).
    Unsubscribe = 0x14,
    /// UNSUBACK (§5.4.18).
    UnsubAck = 0x15,
    /// PINGREQ (§5.4.19).
    PingReq = 0x16,
    /// PINGRESP (§5.4.20).
    PingResp = 0x17,
    /// DISCONNECT (§5.4.21).
    Disconnect = 0x18,
    /// WILLTOPICUPD (§5.4.22).
    WillTopicUpd = 0x1A,
    /// WILLTOPICRESP (§5.4.23).
    WillTopicResp = 0x1B,
    /// WILLMSGUPD (§5.4.24).
    WillMsgUpd = 0x1C,
    /// WILLMSGRESP (§5.4.25).
    WillMsgResp = 0x1D,
    /// Encapsulated message of a forwarder (§5.5).
    Encapsulated = 0xFE,
}

impl MsgType {
    /// The message type for a MsgType octet; `None` for the reserved values (§5.3.2).
    #[must_use]
    pub const fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x00 => Self::Advertise,
            0x01 => Self::SearchGw,
            0x02 => Self::GwInfo,
            0x04 => Self::Connect,
            0x05 => Self::ConnAck,
            0x06 => Self::WillTopicReq,
            0x07 => Self::WillTopic,
            0x08 => Self::WillMsgReq,
            0x09 => Self::WillMsg,
            0x0A => Self::Register,
            0x0B => Self::RegAck,
            0x0C => Self::Publish,
            0x0D => Self::PubAck,
            0x0E => Self::PubComp,
            0x0F => Self::PubRec,
            0x10 => Self::PubRel,
            0x12 => Self::Subscribe,
            0x13 => Self::SubAck,
            0x14 => Self::Unsubscribe,
            0x15 => Self::UnsubAck,
            0x16 => Self::PingReq,
            0x17 => Self::PingResp,
            0x18 => Self::Disconnect,
            0x1A => Self::WillTopicUpd,
            0x1B => Self::WillTopicResp,
            0x1C => Self::WillMsgUpd,
            0x1D => Self::WillMsgResp,
            0xFE => Self::Encapsulated,
            _ => return None,
        })
    }

    /// The MsgType octet.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The QoS field of the Flags octet (§5.3.4), which unlike MQTT has a fourth value: 0b11 is
/// QoS -1, a PUBLISH sent without a connection to a predefined topic id or short topic name (§6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SnQoS {
    /// QoS 0, 0b00.
    #[default]
    AtMostOnce,
    /// QoS 1, 0b01.
    AtLeastOnce,
    /// QoS 2, 0b10.
    ExactlyOnce,
    /// QoS -1, 0b11: only PUBLISH may carry it (§6.8).
    MinusOne,
}

impl SnQoS {
    /// The two-bit wire value, 0 to 3.
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            Self::AtMostOnce => 0,
            Self::AtLeastOnce => 1,
            Self::ExactlyOnce => 2,
            Self::MinusOne => 3,
        }
    }

    /// The QoS for the two low bits of `bits`.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::AtMostOnce,
            1 => Self::AtLeastOnce,
            2 => Self::ExactlyOnce,
            _ => Self::MinusOne,
        }
    }

    /// The MQTT QoS this maps to; `None` for QoS -1, which MQTT has no form for.
    #[must_use]
    pub const fn qos(self) -> Option<QoS> {
        match self {
            Self::AtMostOnce => Some(QoS::AtMostOnce),
            Self::AtLeastOnce => Some(QoS::AtLeastOnce),
            Self::ExactlyOnce => Some(QoS::ExactlyOnce),
            Self::MinusOne => None,
        }
    }
}

impl From<QoS> for SnQoS {
    fn from(qos: QoS) -> Self {
        Self::from_bits(qos.bits())
    }
}

/// The TopicIdType field of the Flags octet (§5.3.4): what the topic field of PUBLISH, SUBSCRIBE
/// and UNSUBSCRIBE holds. The fourth value, 0b11, is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TopicIdType {
    /// 0b00: a topic id registered with REGISTER (PUBLISH) or a topic name (SUBSCRIBE,
    /// UNSUBSCRIBE).
    #[default]
    Normal,
    /// 0b01: a predefined topic id, known to client and gateway in advance.
    Predefined,
    /// 0b10: a short topic name of exactly two characters.
    Short,
}

impl TopicIdType {
    /// The two-bit wire value.
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            Self::Normal => 0b00,
            Self::Predefined => 0b01,
            Self::Short => 0b10,
        }
    }

    /// The type for the two low bits of `bits`.
    ///
    /// # Errors
    /// [`SnDecodeError::InvalidTopicIdType`] for the reserved value 0b11.
    pub const fn from_bits(bits: u8) -> Result<Self, SnDecodeError> {
        match bits & 0b11 {
            0b00 => Ok(Self::Normal),
            0b01 => Ok(Self::Predefined),
            0b10 => Ok(Self::Short),
            _ => Err(SnDecodeError::InvalidTopicIdType),
        }
    }
}

/// The Flags octet (§5.3.4), field by field. Each message uses only some of the fields;
/// the others are "not used" and written as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// Bit 7: the PUBLISH or SUBSCRIBE is a retransmission.
    pub dup: bool,
    /// Bits 6–5: the QoS, with 0b11 meaning QoS -1.
    pub qos: SnQoS,
    /// Bit 4: the PUBLISH or will is retained.
    pub retain: bool,
    /// Bit 3: CONNECT asks for will topic and will message.
    pub will: bool,
    /// Bit 2: CONNECT starts a clean session.
    pub clean_session: bool,
    /// Bits 1–0: what the topic field holds.
    pub topic_id_type: TopicIdType,
}

impl Flags {
    const DUP: u8 = 0b1000_0000;
    const RETAIN: u8 = 0b0001_0000;
    const WILL: u8 = 0b0000_1000;
    const CLEAN_SESSION: u8 = 0b0000_0100;

    /// Splits a Flags octet into its fields.
    ///
    /// # Errors
    /// [`SnDecodeError::InvalidTopicIdType`] when the TopicIdType bits hold the reserved 0b11; a
    /// message that does not use TopicIdType should mask them out first.
    pub const fn from_byte(byte: u8) -> Result<Self, SnDecodeError> {
        let topic_id_type = match TopicIdType::from_bits(byte) {
            Ok(t) => t,
            Err(e) => return Err(e),
        };
        Ok(Self {
            dup: byte & Self::DUP != 0,
            qos: SnQoS::from_bits(byte >> 5),
            retain: byte & Self::RETAIN != 0,
            will: byte & Self::WILL != 0,
            clean_session: byte & Self::CLEAN_SESSION != 0,
            topic_id_type,
        })
    }

    /// The Flags octet.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        (if self.dup { Self::DUP } else { 0 })
            | self.qos.bits() << 5
            | (if self.retain { Self::RETAIN } else { 0 })
            | (if self.will { Self::WILL } else { 0 })
            | (if self.clean_session { Self::CLEAN_SESSION } else { 0 })
            | self.topic_id_type.bits()
    }
}

/// A topic id (§5.3.11): a registered, predefined or (as two raw bytes) short topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub u16);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message id (§5.3.6), matching an acknowledgement to its request. Unlike MQTT's packet
/// identifier it may be 0: a QoS 0 or -1 PUBLISH carries 0x0000 (§5.4.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MsgId(pub u16);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The ReturnCode octet (§5.3.10). Values 0x04 to 0xFF are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum ReturnCode {
    /// 0x00: accepted.
    Accepted = 0x00,
    /// 0x01: rejected because of congestion; the client may retry later.
    Congestion = 0x01,
    /// 0x02: rejected because the topic id is not valid.
    InvalidTopicId = 0x02,
    /// 0x03: rejected because the feature is not supported.
    NotSupported = 0x03,
}

impl ReturnCode {
    /// The return code for a ReturnCode octet.
    ///
    /// # Errors
    /// [`SnDecodeError::InvalidReturnCode`] for the reserved values 0x04 to 0xFF.
    pub const fn from_u8(byte: u8) -> Result<Self, SnDecodeError> {
        match byte {
            0x00 => Ok(Self::Accepted),
            0x01 => Ok(Self::Congestion),
            0x02 => Ok(Self::InvalidTopicId),
            0x03 => Ok(Self::NotSupported),
            _ => Err(SnDecodeError::InvalidReturnCode(byte)),
        }
    }

    /// The ReturnCode octet.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_bits() {
        // §5.3.4: DUP bit 7, QoS bits 6-5, Retain bit 4, Will bit 3, CleanSession bit 2,
        // TopicIdType bits 1-0.
        let flags = Flags {
            dup: true,
            qos: SnQoS::MinusOne,
            retain: true,
            will: true,
            clean_session: true,
            topic_id_type: TopicIdType::Short,
        };
        assert_eq!(flags.to_byte(), 0b1111_1110);
        assert_eq!(Flags::from_byte(0b1111_1110), Ok(flags));
        assert_eq!(Flags::from_byte(0b0010_0001).map(|f| f.qos), Ok(SnQoS::AtLeastOnce));
        assert_eq!(Flags::from_byte(0b0100_0000).map(|f| f.qos), Ok(SnQoS::ExactlyOnce));
        assert_eq!(Flags::from_byte(0x03), Err(SnDecodeError::InvalidTopicIdType));
        for byte in 0..=u8::MAX {
            if let Ok(flags) = Flags::from_byte(byte) {
                assert_eq!(flags.to_byte(), byte);
            }
        }
    }

    #[test]
    fn msg_types_round_trip() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            if let Some(t) = MsgType::from_u8(byte) {
                assert_eq!(t.as_u8(), byte);
                known += 1;
            }
        }
        assert_eq!(known, 28);
        assert_eq!(MsgType::from_u8(0x03), None);
        assert_eq!(MsgType::from_u8(0x11), None);
        assert_eq!(MsgType::from_u8(0x19), None);
    }

    #[test]
    fn return_codes() {
        for byte in 0..=3 {
            assert_eq!(ReturnCode::from_u8(byte).map(ReturnCode::as_u8), Ok(byte));
        }
        assert_eq!(ReturnCode::from_u8(4), Err(SnDecodeError::InvalidReturnCode(4)));
    }
}
