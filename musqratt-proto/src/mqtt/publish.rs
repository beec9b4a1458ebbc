//! PUBLISH (§3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-3.7).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::properties::{AckProperties, PublishProperties};
use super::{PacketType, ReasonCode, ensure_consumed};
use crate::error::{DecodeError, EncodeError};
use crate::topic::{TopicError, validate_topic_name};
use crate::types::{PacketId, ProtocolVersion, QoS};
use crate::wire::{binary_len, read_binary, read_u8, read_u16, varint_len, write_varint};

/// PUBLISH: an application message (§3.3).
///
/// Topic and payload are [`Bytes`] slices of the buffer the packet was decoded from, so that
/// forwarding a message to many subscribers clones reference counts, never the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery (§3.3.1.1). Always false at QoS 0 (MQTT-3.3.1-2).
    pub dup: bool,
    /// The QoS of this delivery (§3.3.1.2).
    pub qos: QoS,
    /// RETAIN (§3.3.1.3).
    pub retain: bool,
    /// The Topic Name; empty only in 5.0 when a Topic Alias stands for it (§3.3.2.1).
    pub topic: ByteString,
    /// The Packet Identifier, present exactly when `qos` is 1 or 2 (§3.3.2.2).
    pub packet_id: Option<PacketId>,
    /// The Application Message.
    pub payload: Bytes,
    /// MQTT 5.0 properties.
    pub properties: PublishProperties,
}

impl Publish {
    /// A QoS 0 message without properties.
    #[must_use]
    pub fn new(topic: ByteString, payload: Bytes) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            payload,
            properties: PublishProperties::default(),
        }
    }

    #[inline]
    pub(crate) fn decode(
        version: ProtocolVersion,
        flags: u8,
        mut body: Bytes,
    ) -> Result<Self, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?; // MQTT-3.3.1-4
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0); // MQTT-3.3.1-2
        }
        let topic = read_binary(&mut body)?;
        // The checks of `read_string` and `validate_topic_name`, in the same order, with one
        // branch-free pass for U+0000 and the wildcards instead of two.
        let found = scan_topic(&topic);
        if found & 1 != 0 {
            return Err(DecodeError::NullCharacter); // MQTT-1.5.4-2
        }
        let topic = ByteString::try_from(topic).map_err(|_| DecodeError::InvalidUtf8)?;
        // An empty topic is valid only in 5.0, where a Topic Alias must then supply it; the
        // session that knows the aliases checks that (MQTT-3.3.2-1, §3.3.2.3.4).
        if topic.is_empty() && !version.is_v5() {
            return Err(DecodeError::InvalidTopicName(TopicError::Empty)); // MQTT-4.7.3-1
        }
        if found & 2 != 0 {
            return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName)); // MQTT-3.3.2-2
        }
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(PacketId::new(read_u16(&mut body)?).ok_or(DecodeError::ZeroPacketId)?)
        };
        let properties = if version.is_v5() {
            let properties = PublishProperties::decode(&mut body)?;
            if let Some(response_topic) = &properties.response_topic {
                // MQTT-3.3.2-14: no wildcards (a responder publishes to it); -13: a valid
                // UTF-8 string, which `Str` properties already are; empty is no topic name.
                validate_topic_name(response_topic).map_err(DecodeError::InvalidResponseTopic)?;
            }
            properties
        } else {
            PublishProperties::default()
        };
        Ok(Self {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            payload: body,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.qos.bits() << 1) | u8::from(self.retain)
    }

    /// Properties' encoded size (without their Property Length) and the size of the whole body
    /// (variable header and payload). Empty properties, the usual case, cost one test.
    #[inline]
    pub(crate) fn lens(&self, version: ProtocolVersion) -> Result<(usize, usize), EncodeError> {
        // The packet id goes with QoS 1 and 2 only (MQTT-2.2.1-2, §3.3.2.2).
        let id_len = match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => 0,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => 2,
            _ => return Err(EncodeError::NotRepresentable),
        };
        let props = match version.is_v5() && !self.properties.is_empty() {
            true => self.properties.body_len()?,
            false => 0,
        };
        let mut len = binary_len(self.topic.as_bytes())? + id_len + self.payload.len();
        if version.is_v5() {
            len += match props {
                0 => 1,
                _ => super::properties_encoded_len(props)?,
            };
        }
        Ok((props, len))
    }

    /// The size of the whole encoded packet.
    ///
    /// # Errors
    /// As [`Publish::encode_header`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let (_, body) = self.lens(version)?;
        super::packet_len(body)
    }

    /// Writes the fixed header, topic, packet identifier and properties: everything but the
    /// payload, which the caller sends after it unchanged (a vectored write of header and the
    /// shared payload [`Bytes`]). Returns the size of the whole packet, payload included.
    ///
    /// # Errors
    /// A field over 65,535 bytes, a packet over the Remaining Length limit, or a packet id that
    /// does not go with the QoS.
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        self.write(version, dst, false)
    }

    /// Writes the whole packet, payload included.
    ///
    /// # Errors
    /// As [`Publish::encode_header`].
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.write(version, dst, true).map(drop)
    }

    /// The encoder behind `encode` and `encode_header`. The lengths are computed once and the
    /// space reserved once; the short fields of the usual packets (Remaining Length under
    /// 16,384, no properties) go out as one constant-size copy before the topic and one after
    /// it, each a few moves, instead of an append with its own capacity checks per field.
    #[inline(always)]
    fn write(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
        with_payload: bool,
    ) -> Result<usize, EncodeError> {
        let (props, body) = self.lens(version)?;
        let remaining = super::checked_varint(body)?;
        let total = 1 + varint_len(remaining) + body;
        // A new buffer gets the packet in one allocation. One in use is not reserved for up
        // front (that test and its live values cost 10 instructions a packet, measured): each
        // append below checks its own room and grows the buffer by amortised doubling.
        if dst.capacity() == 0 {
            dst.reserve(if with_payload { total } else { total - self.payload.len() });
        }

        let first = (PacketType::Publish as u8) << 4 | self.flags();
        let topic = self.topic.as_bytes();
        // `lens` checked that the topic's length fits in two bytes.
        let [hi, lo] = (topic.len() as u16).to_be_bytes();
        if remaining < 0x80 {
            dst.extend_from_slice(&[first, remaining as u8, hi, lo]);
        } else if remaining < 0x4000 {
            dst.extend_from_slice(&[first, remaining as u8 | 0x80, (remaining >> 7) as u8, hi, lo]);
        } else {
            dst.put_u8(first);
            write_varint(dst, remaining);
            dst.extend_from_slice(&[hi, lo]);
        }
        dst.extend_from_slice(topic);

        let id = self.packet_id.map(|id| id.get().to_be_bytes());
        match (id, version.is_v5() && props == 0) {
            // The Property Length 0 of empty 5.0 properties goes with the packet id.
            (Some([a, b]), true) => dst.extend_from_slice(&[a, b, 0]),
            (None, true) => dst.extend_from_slice(&[0]),
            (Some(id), false) => dst.extend_from_slice(&id),
            (None, false) => {}
        }
        if version.is_v5() && props != 0 {
            // `lens` checked that the properties' size is a Variable Byte Integer.
            write_varint(dst, props as u32);
            self.properties.encode_fields(dst);
        }
        if with_payload {
            dst.extend_from_slice(&self.payload);
        }
        Ok(total)
    }
}

/// Bit 0: `topic` holds U+0000; bit 1: it holds `+` or `#`. The bytes are taken 16 at a time
/// into a fixed-size block, which the compiler turns into a few vector compares; a plain fold
/// over the slice stays one byte per step (about 10 instructions per topic byte, measured).
#[inline]
fn scan_topic(topic: &[u8]) -> u8 {
    /// `+` (0x2B) and `#` (0x23) differ only in bit 3.
    fn flags(byte: u8) -> u8 {
        u8::from(byte == 0) | (u8::from(byte & !0x08 == b'#') << 1)
    }
    fn block(bytes: &[u8; 16]) -> u8 {
        bytes.iter().fold(0, |found, &byte| found | flags(byte))
    }
    let mut blocks = topic.chunks_exact(16);
    let mut found = 0;
    for bytes in &mut blocks {
        found |= block(bytes.try_into().unwrap_or(&[0; 16]));
    }
    // The last bytes, padded with a byte that sets no flag: one more block instead of a
    // byte-at-a-time loop.
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut last = [b'a'; 16];
        last[..rest.len()].copy_from_slice(rest);
        found |= block(&last);
    }
    found
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: the same layout for all four (§3.4-3.7); which one it is
/// is the [`super::Packet`] variant that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    /// The Packet Identifier of the PUBLISH (or PUBREL) being answered.
    pub packet_id: PacketId,
    /// The reason code (5.0); always Success for older versions.
    pub reason_code: ReasonCode,
    /// MQTT 5.0 properties.
    pub properties: AckProperties,
}

impl PubResponse {
    /// A successful response without properties.
    #[must_use]
    pub fn new(packet_id: PacketId) -> Self {
        Self { packet_id, reason_code: ReasonCode::SUCCESS, properties: AckProperties::default() }
    }

    pub(crate) fn decode(
        version: ProtocolVersion,
        packet: PacketType,
        mut body: Bytes,
    ) -> Result<Self, DecodeError> {
        let packet_id = PacketId::new(read_u16(&mut body)?).ok_or(DecodeError::ZeroPacketId)?;
        let mut this = Self::new(packet_id);
        // 5.0: the reason code and properties may be omitted (§3.4.2.1: Remaining Length 2
        // means Success and no properties; 3 means no properties).
        if version.is_v5() && !body.is_empty() {
            let code = read_u8(&mut body)?;
            this.reason_code = ReasonCode(code);
            if !this.reason_code.allowed_in(packet) {
                return Err(DecodeError::InvalidReasonCode(code));
            }
            if !body.is_empty() {
                this.properties = AckProperties::decode(&mut body)?;
            }
        }
        ensure_consumed(&body)?;
        Ok(this)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(match self.short_form(version) {
            true => 2,
            false => 3 + self.properties.encoded_len()?,
        })
    }

    fn short_form(&self, version: ProtocolVersion) -> bool {
        !version.is_v5() || (self.reason_code == ReasonCode::SUCCESS && self.properties.is_empty())
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        dst.put_u16(self.packet_id.get());
        if !self.short_form(version) {
            dst.put_u8(self.reason_code.0);
            self.properties.encode(self.properties.body_len()?, dst);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::scan_topic;

    /// The plain definition `scan_topic` must agree with.
    fn naive(topic: &[u8]) -> u8 {
        u8::from(topic.contains(&0))
            | (u8::from(topic.iter().any(|&b| b == b'+' || b == b'#')) << 1)
    }

    #[test]
    fn scan_topic_finds_nul_and_wildcards_at_every_position() {
        // Lengths across the 16-byte blocks and the padded remainder; each special byte, and
        // the bytes one bit away from them, at every position.
        for len in 0..=50 {
            let plain = vec![b'a'; len];
            assert_eq!(scan_topic(&plain), 0, "{len}");
            for at in 0..len {
                for byte in [0, b'+', b'#', b'*', b'\'', b'+' ^ 0x80, 0x80, 0xFF, 0x08, 0x01] {
                    let mut topic = plain.clone();
                    topic[at] = byte;
                    assert_eq!(scan_topic(&topic), naive(&topic), "len {len} at {at} byte {byte}");
                }
                let mut both = plain.clone();
                both[at] = 0;
                both[len - 1 - at] = b'#';
                assert_eq!(scan_topic(&both), naive(&both), "len {len} at {at}");
            }
        }
    }
}
