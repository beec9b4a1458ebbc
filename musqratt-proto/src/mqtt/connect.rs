//! CONNECT (§3.1) and CONNACK (§3.2).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::properties::{ConnAckProperties, ConnectProperties, WillProperties};
use super::{ReasonCode, ensure_consumed};
use crate::error::{DecodeError, EncodeError};
use crate::topic::validate_topic_name;
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{binary_len, read_binary, read_string, read_u8, read_u16, write_binary};

/// CONNECT: the first packet a client sends (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version the client speaks, from the protocol name and level (§3.1.2.1, §3.1.2.2).
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) or Clean Session (3.1.1) (§3.1.2.4).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off (§3.1.2.10).
    pub keep_alive: u16,
    /// The Client Identifier, possibly empty (§3.1.3.1).
    pub client_id: ByteString,
    /// The Will Message, when the Will Flag is set (§3.1.2.5).
    pub will: Option<LastWill>,
    /// The User Name, when its flag is set (§3.1.3.5).
    pub username: Option<ByteString>,
    /// The Password, when its flag is set (§3.1.3.6).
    pub password: Option<Bytes>,
    /// MQTT 5.0 properties; empty for older versions.
    pub properties: ConnectProperties,
}

/// The Will Message of a CONNECT (§3.1.2.5, §3.1.3.2-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic: a topic name, no wildcards.
    pub topic: ByteString,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (5.0).
    pub properties: WillProperties,
}

/// CONNACK: the server's answer to CONNECT (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present (§3.2.2.1.1).
    pub session_present: bool,
    /// The Connect Reason Code; for 3.1/3.1.1 it is encoded as the nearest return code
    /// ([`ReasonCode::to_v3_connack`]).
    pub reason_code: ReasonCode,
    /// MQTT 5.0 properties.
    pub properties: ConnAckProperties,
}

const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

impl Connect {
    /// The plainest CONNECT of `protocol`: Clean Start, Keep Alive 0 (none), no will, no
    /// credentials, no properties. Set the public fields for anything else.
    #[must_use]
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<ByteString>) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 0,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    /// The version a CONNECT body (after the fixed header) announces through its protocol name
    /// and level (§3.1.2.1, §3.1.2.2), read without decoding the rest: `None` when they are
    /// missing or name no supported version. A server uses it to answer a CONNECT that failed to
    /// decode in the client's version: a 5.0 client can be told why with a CONNACK reason code
    /// (§4.13.1: "the Server MAY send a CONNACK with a Reason Code of 0x80 or greater").
    #[must_use]
    pub fn announced_version(body: &[u8]) -> Option<ProtocolVersion> {
        let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let name = body.get(2..2 + len)?;
        match (name, *body.get(2 + len)?) {
            (b"MQTT", 4) => Some(ProtocolVersion::V3_1_1),
            (b"MQTT", 5) => Some(ProtocolVersion::V5),
            (b"MQIsdp", 3) => Some(ProtocolVersion::V3_1),
            _ => None,
        }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, DecodeError> {
        let name = read_binary(&mut body)?;
        let level = read_u8(&mut body)?;
        // MQTT-3.1.2-1 (name) and MQTT-3.1.2-2 (level).
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(DecodeError::UnsupportedProtocolLevel(level));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = read_u8(&mut body)?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag); // MQTT-3.1.2-3
        }
        let will_qos = QoS::from_bits((flags >> 3) & 0x03).ok_or(DecodeError::InvalidWillFlags)?;
        let will_retain = flags & WILL_RETAIN != 0;
        if flags & WILL == 0 && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::InvalidWillFlags); // MQTT-3.1.2-11, -13, -15
        }
        if flags & PASSWORD != 0 && flags & USERNAME == 0 && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername); // MQTT-3.1.2-22 (3.1.1)
        }
        let keep_alive = read_u16(&mut body)?;
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(&mut body)?
        } else {
            ConnectProperties::default()
        };
        let client_id = read_string(&mut body)?;
        let will = if flags & WILL != 0 {
            let properties = if protocol.is_v5() {
                let properties = WillProperties::decode(&mut body)?;
                if let Some(response_topic) = &properties.response_topic {
                    // §3.1.3.2.6: the will's Response Topic becomes the published message's,
                    // which MQTT-3.3.2-14 forbids to hold wildcards.
                    validate_topic_name(response_topic)
                        .map_err(DecodeError::InvalidResponseTopic)?;
                }
                properties
            } else {
                WillProperties::default()
            };
            let topic = read_string(&mut body)?;
            validate_topic_name(&topic).map_err(DecodeError::InvalidTopicName)?;
            let payload = read_binary(&mut body)?;
            Some(LastWill { topic, payload, qos: will_qos, retain: will_retain, properties })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 { Some(read_string(&mut body)?) } else { None };
        let password = if flags & PASSWORD != 0 { Some(read_binary(&mut body)?) } else { None };
        ensure_consumed(&body)?;
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// The size of the variable header and payload; properties' lengths are returned too so they
    /// are computed once.
    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        // Checked here, before the fixed header is written and for `encoded_len` alike.
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(EncodeError::NotRepresentable); // MQTT-3.1.2-22
        }
        let mut len = binary_len(self.protocol.protocol_name().as_bytes())? + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len()?;
        }
        len += binary_len(self.client_id.as_bytes())?;
        if let Some(will) = &self.will {
            if v5 {
                len += will.properties.encoded_len()?;
            }
            len += binary_len(will.topic.as_bytes())? + binary_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += binary_len(username.as_bytes())?;
        }
        if let Some(password) = &self.password {
            len += binary_len(password)?;
        }
        Ok(len)
    }

    pub(crate) fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        write_binary(dst, self.protocol.protocol_name().as_bytes());
        dst.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos.bits() << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(self.properties.body_len()?, dst);
        }
        write_binary(dst, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode(will.properties.body_len()?, dst);
            }
            write_binary(dst, will.topic.as_bytes());
            write_binary(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            write_binary(dst, username.as_bytes());
        }
        if let Some(password) = &self.password {
            write_binary(dst, password);
        }
        Ok(())
    }
}

impl ConnAck {
    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let flags = read_u8(&mut body)?;
        // MQTT-3.2.2-1; MQTT 3.1 reserves the whole byte (Session Present came with 3.1.1).
        let reserved = if version == ProtocolVersion::V3_1 { 0xFF } else { 0xFE };
        if flags & reserved != 0 {
            return Err(DecodeError::InvalidConnAckFlags); // MQTT-3.2.2-1
        }
        let code = read_u8(&mut body)?;
        let (reason_code, properties) = if version.is_v5() {
            let reason = ReasonCode(code);
            if !reason.allowed_in(super::PacketType::ConnAck) {
                return Err(DecodeError::InvalidReasonCode(code));
            }
            (reason, ConnAckProperties::decode(&mut body)?)
        } else {
            let reason =
                ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode(code))?;
            (reason, ConnAckProperties::default())
        };
        ensure_consumed(&body)?;
        Ok(Self { session_present: flags & 0x01 != 0, reason_code, properties })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(2 + if version.is_v5() { self.properties.encoded_len()? } else { 0 })
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        // MQTT 3.1 reserves the whole acknowledge flags byte; Session Present came with 3.1.1.
        dst.put_u8(u8::from(self.session_present && version != ProtocolVersion::V3_1));
        if version.is_v5() {
            dst.put_u8(self.reason_code.0);
            self.properties.encode(self.properties.body_len()?, dst);
        } else {
            dst.put_u8(self.reason_code.to_v3_connack());
        }
        Ok(())
    }
}
