//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (§3.8-3.11).

use alloc::vec::Vec;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::properties::{AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::{PacketType, ReasonCode, properties_or_default};
use crate::error::{DecodeError, EncodeError};
use crate::topic::{split_shared, validate_topic_filter};
use crate::types::{PacketId, ProtocolVersion, QoS};
use crate::wire::{binary_len, read_string, read_u8, read_u16, write_binary};

/// When the retained messages of a new subscription are sent (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist before.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// The Subscription Options byte (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the server may deliver on this subscription.
    pub qos: QoS,
    /// No Local: do not deliver the client's own publications back to it (5.0).
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag of the publication (5.0).
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with this maximum QoS and the defaults of 3.1.1 for the rest.
    #[must_use]
    pub fn with_qos(qos: QoS) -> Self {
        Self { qos, ..Self::default() }
    }

    fn decode(version: ProtocolVersion, byte: u8) -> Result<Self, DecodeError> {
        // 3.1.1 reserves bits 2-7 (MQTT-3.8.3-4 of 3.1.1); 5.0 reserves bits 6-7 (MQTT-3.8.3-5)
        // and Retain Handling 3.
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions);
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidSubscriptionOptions),
        };
        Ok(Self {
            qos: QoS::from_bits(byte & 0x03).ok_or(DecodeError::InvalidQoS)?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos.bits();
        if version.is_v5() {
            byte |= (u8::from(self.no_local) << 2)
                | (u8::from(self.retain_as_published) << 3)
                | ((self.retain_handling as u8) << 4);
        }
        byte
    }
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// Topic filters with their options, at least one (MQTT-3.8.3-3).
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// MQTT 5.0 properties.
    pub properties: SubscribeProperties,
}

/// SUBACK (§3.9): one reason code per filter of the SUBSCRIBE, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Granted QoS (0x00-0x02) or a failure per filter. 3.1.1 has only the granted QoS codes and
    /// 0x80; other failures are encoded as 0x80.
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5.0 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// Topic filters, at least one (MQTT-3.10.3-2).
    pub filters: Vec<ByteString>,
    /// MQTT 5.0 properties.
    pub properties: UnsubscribeProperties,
}

/// UNSUBACK (§3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// One reason code per filter (5.0); empty for 3.1.1, whose UNSUBACK has none.
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5.0 properties.
    pub properties: AckProperties,
}

fn read_packet_id(body: &mut Bytes) -> Result<PacketId, DecodeError> {
    PacketId::new(read_u16(body)?).ok_or(DecodeError::ZeroPacketId) // MQTT-2.2.1-3
}

fn read_filter(body: &mut Bytes) -> Result<ByteString, DecodeError> {
    let filter = read_string(body)?;
    validate_topic_filter(&filter).map_err(DecodeError::InvalidTopicFilter)?;
    Ok(filter)
}

fn read_reason_codes(
    packet: PacketType,
    version: ProtocolVersion,
    body: Bytes,
) -> Result<Vec<ReasonCode>, DecodeError> {
    body.iter()
        .map(|&code| {
            let reason = ReasonCode(code);
            let allowed = if version.is_v5() {
                reason.allowed_in(packet)
            } else {
                matches!(code, 0x00..=0x02 | 0x80) // §3.9.3 of 3.1.1
            };
            if allowed { Ok(reason) } else { Err(DecodeError::InvalidReasonCode(code)) }
        })
        .collect()
}

impl Subscribe {
    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut body)?;
        let properties = properties_or_default(version, &mut body, SubscribeProperties::decode)?;
        let mut filters = Vec::new();
        while !body.is_empty() {
            let filter = read_filter(&mut body)?;
            let options = SubscriptionOptions::decode(version, read_u8(&mut body)?)?;
            if options.no_local && split_shared(&filter).is_some() {
                return Err(DecodeError::NoLocalOnSharedSubscription); // MQTT-3.8.3-4
            }
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscribe); // MQTT-3.8.3-3
        }
        Ok(Self { packet_id, filters, properties })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len()?;
        }
        for (filter, _) in &self.filters {
            len += binary_len(filter.as_bytes())? + 1;
        }
        Ok(len)
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.body_len()?, dst);
        }
        for (filter, options) in &self.filters {
            write_binary(dst, filter.as_bytes());
            dst.put_u8(options.encode(version));
        }
        Ok(())
    }
}

impl SubAck {
    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut body)?;
        let properties = properties_or_default(version, &mut body, AckProperties::decode)?;
        let reason_codes = read_reason_codes(PacketType::SubAck, version, body)?;
        Ok(Self { packet_id, reason_codes, properties })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let props = if version.is_v5() { self.properties.encoded_len()? } else { 0 };
        Ok(2 + props + self.reason_codes.len())
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.body_len()?, dst);
        }
        for code in &self.reason_codes {
            let wire = if version.is_v5() || code.0 <= 0x02 { code.0 } else { 0x80 };
            dst.put_u8(wire);
        }
        Ok(())
    }
}

impl Unsubscribe {
    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut body)?;
        let properties = properties_or_default(version, &mut body, UnsubscribeProperties::decode)?;
        let mut filters = Vec::new();
        while !body.is_empty() {
            filters.push(read_filter(&mut body)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe); // MQTT-3.10.3-2
        }
        Ok(Self { packet_id, filters, properties })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len()?;
        }
        for filter in &self.filters {
            len += binary_len(filter.as_bytes())?;
        }
        Ok(len)
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.body_len()?, dst);
        }
        for filter in &self.filters {
            write_binary(dst, filter.as_bytes());
        }
        Ok(())
    }
}

impl UnsubAck {
    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut body)?;
        if !version.is_v5() {
            super::ensure_consumed(&body)?;
            return Ok(Self {
                packet_id,
                reason_codes: Vec::new(),
                properties: AckProperties::default(),
            });
        }
        let properties = AckProperties::decode(&mut body)?;
        let reason_codes = read_reason_codes(PacketType::UnsubAck, version, body)?;
        Ok(Self { packet_id, reason_codes, properties })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        Ok(2 + self.properties.encoded_len()? + self.reason_codes.len())
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(self.properties.body_len()?, dst);
            for code in &self.reason_codes {
                dst.put_u8(code.0);
            }
        }
        Ok(())
    }
}
