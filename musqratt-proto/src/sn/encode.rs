//! Encoding one [`Message`] into one datagram.

use bytes::{BufMut, BytesMut};

use super::error::SnEncodeError;
use super::message::{Message, PROTOCOL_ID, PublishTopic, SubscribeTopic, WillTopic};
use super::types::{Flags, MsgId, SnQoS, TopicId, TopicIdType};

/// The largest total length the one-octet Length field holds (§5.2.1).
const MAX_SHORT_LENGTH: usize = 255;
/// The largest total length the three-octet Length field holds (§5.2.1).
const MAX_LONG_LENGTH: usize = u16::MAX as usize;
/// The largest wireless node id whose encapsulation header still fits its one-octet Length
/// (§5.5): 255 less Length, MsgType and Ctrl.
const MAX_WIRELESS_NODE_ID: usize = MAX_SHORT_LENGTH - 3;

/// The number of octets after the MsgType, validating what the wire format cannot express.
fn body_len(message: &Message) -> Result<usize, SnEncodeError> {
    Ok(match message {
        Message::WillTopicReq | Message::WillMsgReq | Message::PingResp => 0,
        Message::Advertise(_) => 3,
        Message::SearchGw(_) | Message::ConnAck(_) => 1,
        Message::WillTopicResp(_) | Message::WillMsgResp(_) => 1,
        Message::GwInfo(m) => match &m.gw_add {
            Some(add) if add.is_empty() => return Err(SnEncodeError::EmptyOptionalField),
            Some(add) => 1 + add.len(),
            None => 1,
        },
        Message::Connect(m) => 4 + m.client_id.len(),
        Message::WillTopic(m) | Message::WillTopicUpd(m) => {
            m.as_ref().map_or(0, |will| 1 + will.topic.len())
        }
        Message::WillMsg(msg) | Message::WillMsgUpd(msg) => msg.len(),
        Message::Register(m) => 4 + m.topic_name.len(),
        Message::RegAck(_) | Message::PubAck(_) => 5,
        Message::Publish(m) => 5 + m.data.len(),
        Message::PubComp(_) | Message::PubRec(_) | Message::PubRel(_) | Message::UnsubAck(_) => 2,
        Message::Subscribe(m) => 3 + subscribe_topic_len(&m.topic),
        Message::Unsubscribe(m) => 3 + subscribe_topic_len(&m.topic),
        Message::SubAck(_) => 6,
        Message::PingReq(client_id) => match client_id {
            Some(id) if id.is_empty() => return Err(SnEncodeError::EmptyOptionalField),
            Some(id) => id.len(),
            None => 0,
        },
        Message::Disconnect(duration) => duration.map_or(0, |_| 2),
        // Not reached: `encoded_len` handles the encapsulation header itself.
        Message::Encapsulated(_) => return Err(SnEncodeError::NestedEncapsulation),
    })
}

fn subscribe_topic_len(topic: &SubscribeTopic) -> usize {
    match topic {
        SubscribeTopic::Name(name) => name.len(),
        SubscribeTopic::Predefined(_) | SubscribeTopic::Short(_) => 2,
    }
}

/// The size of the Length field for a message of `body_len` octets after the MsgType, and the
/// total length: the one-octet form whenever the total fits in it (§5.2.1).
fn header(body_len: usize) -> Result<(usize, usize), SnEncodeError> {
    // A `Bytes` is never near `usize::MAX`, but saturating keeps the arithmetic panic-free.
    let short_total = body_len.saturating_add(2);
    if short_total <= MAX_SHORT_LENGTH {
        return Ok((1, short_total));
    }
    let long_total = body_len.saturating_add(4);
    if long_total > MAX_LONG_LENGTH {
        return Err(SnEncodeError::TooLong(long_total));
    }
    Ok((3, long_total))
}

/// The number of octets [`encode`] writes for `message`.
///
/// # Errors
/// As [`encode`].
pub fn encoded_len(message: &Message) -> Result<usize, SnEncodeError> {
    match message {
        Message::Encapsulated(m) => {
            if m.radius > 0b11 {
                return Err(SnEncodeError::InvalidRadius(m.radius));
            }
            if m.wireless_node_id.len() > MAX_WIRELESS_NODE_ID {
                return Err(SnEncodeError::WirelessNodeIdTooLong);
            }
            if matches!(*m.message, Message::Encapsulated(_)) {
                return Err(SnEncodeError::NestedEncapsulation);
            }
            let inner = header(body_len(&m.message)?)?.1;
            Ok(3 + m.wireless_node_id.len() + inner)
        }
        _ => Ok(header(body_len(message)?)?.1),
    }
}

/// Appends `message` to `dst` as one datagram, with the one-octet Length form when the message is
/// shorter than 256 octets and the three-octet form otherwise (§5.2.1).
///
/// The encoder trusts the strings it is given: a topic name with wildcards in REGISTER is written
/// as is, and [`super::decode`] would reject it.
///
/// # Errors
/// [`SnEncodeError`] when the message does not fit the wire format; `dst` is then unchanged.
pub fn encode(message: &Message, dst: &mut BytesMut) -> Result<(), SnEncodeError> {
    let total = encoded_len(message)?;
    dst.reserve(total);
    if let Message::Encapsulated(m) = message {
        // Checked by `encoded_len`: the header is at most 255 octets and radius fits two bits.
        dst.put_u8((3 + m.wireless_node_id.len()) as u8);
        dst.put_u8(message.msg_type().as_u8());
        dst.put_u8(m.radius);
        dst.put_slice(&m.wireless_node_id);
        write_message(&m.message, dst)
    } else {
        write_message(message, dst)
    }
}

fn write_message(message: &Message, dst: &mut BytesMut) -> Result<(), SnEncodeError> {
    let (len_size, total) = header(body_len(message)?)?;
    // `header` bounds `total` by 255 for the short form and by 65,535 for the long one.
    if len_size == 1 {
        dst.put_u8(total as u8);
    } else {
        dst.put_u8(0x01);
        dst.put_u16(total as u16);
    }
    dst.put_u8(message.msg_type().as_u8());
    write_body(message, dst);
    Ok(())
}

fn flags(qos: SnQoS, topic_id_type: TopicIdType) -> Flags {
    Flags { qos, topic_id_type, ..Flags::default() }
}

fn put_msg_id(dst: &mut BytesMut, msg_id: MsgId) {
    dst.put_u16(msg_id.0);
}

fn put_topic_id(dst: &mut BytesMut, topic_id: TopicId) {
    dst.put_u16(topic_id.0);
}

fn write_will_topic(will: Option<&WillTopic>, dst: &mut BytesMut) {
    if let Some(will) = will {
        let flags = Flags { retain: will.retain, ..flags(will.qos.into(), TopicIdType::Normal) };
        dst.put_u8(flags.to_byte());
        dst.put_slice(will.topic.as_bytes());
    }
}

fn subscribe_topic_type(topic: &SubscribeTopic) -> TopicIdType {
    match topic {
        SubscribeTopic::Name(_) => TopicIdType::Normal,
        SubscribeTopic::Predefined(_) => TopicIdType::Predefined,
        SubscribeTopic::Short(_) => TopicIdType::Short,
    }
}

fn write_subscribe_topic(topic: &SubscribeTopic, dst: &mut BytesMut) {
    match topic {
        SubscribeTopic::Name(name) => dst.put_slice(name.as_bytes()),
        SubscribeTopic::Predefined(id) => put_topic_id(dst, *id),
        SubscribeTopic::Short(short) => dst.put_slice(short),
    }
}

fn write_body(message: &Message, dst: &mut BytesMut) {
    match message {
        Message::WillTopicReq | Message::WillMsgReq | Message::PingResp => {}
        Message::Advertise(m) => {
            dst.put_u8(m.gw_id);
            dst.put_u16(m.duration);
        }
        Message::SearchGw(m) => dst.put_u8(m.radius),
        Message::GwInfo(m) => {
            dst.put_u8(m.gw_id);
            if let Some(add) = &m.gw_add {
                dst.put_slice(add);
            }
        }
        Message::Connect(m) => {
            let flags = Flags { will: m.will, clean_session: m.clean_session, ..Flags::default() };
            dst.put_u8(flags.to_byte());
            dst.put_u8(PROTOCOL_ID);
            dst.put_u16(m.duration);
            dst.put_slice(m.client_id.as_bytes());
        }
        Message::ConnAck(code) | Message::WillTopicResp(code) | Message::WillMsgResp(code) => {
            dst.put_u8(code.as_u8());
        }
        Message::WillTopic(will) | Message::WillTopicUpd(will) => {
            write_will_topic(will.as_ref(), dst);
        }
        Message::WillMsg(msg) | Message::WillMsgUpd(msg) => dst.put_slice(msg),
        Message::Register(m) => {
            put_topic_id(dst, m.topic_id);
            put_msg_id(dst, m.msg_id);
            dst.put_slice(m.topic_name.as_bytes());
        }
        Message::RegAck(m) => {
            put_topic_id(dst, m.topic_id);
            put_msg_id(dst, m.msg_id);
            dst.put_u8(m.return_code.as_u8());
        }
        Message::Publish(m) => {
            let (topic_id_type, topic) = match m.topic {
                PublishTopic::Normal(id) => (TopicIdType::Normal, id.0.to_be_bytes()),
                PublishTopic::Predefined(id) => (TopicIdType::Predefined, id.0.to_be_bytes()),
                PublishTopic::Short(short) => (TopicIdType::Short, short),
            };
            let flags = Flags { dup: m.dup, retain: m.retain, ..flags(m.qos, topic_id_type) };
            dst.put_u8(flags.to_byte());
            dst.put_slice(&topic);
            put_msg_id(dst, m.msg_id);
            dst.put_slice(&m.data);
        }
        Message::PubAck(m) => {
            put_topic_id(dst, m.topic_id);
            put_msg_id(dst, m.msg_id);
            dst.put_u8(m.return_code.as_u8());
        }
        Message::PubComp(id)
        | Message::PubRec(id)
        | Message::PubRel(id)
        | Message::UnsubAck(id) => {
            put_msg_id(dst, *id);
        }
        Message::Subscribe(m) => {
            let flags = Flags { dup: m.dup, ..flags(m.qos.into(), subscribe_topic_type(&m.topic)) };
            dst.put_u8(flags.to_byte());
            put_msg_id(dst, m.msg_id);
            write_subscribe_topic(&m.topic, dst);
        }
        Message::SubAck(m) => {
            dst.put_u8(flags(m.qos.into(), TopicIdType::Normal).to_byte());
            put_topic_id(dst, m.topic_id);
            put_msg_id(dst, m.msg_id);
            dst.put_u8(m.return_code.as_u8());
        }
        Message::Unsubscribe(m) => {
            dst.put_u8(flags(SnQoS::AtMostOnce, subscribe_topic_type(&m.topic)).to_byte());
            put_msg_id(dst, m.msg_id);
            write_subscribe_topic(&m.topic, dst);
        }
        Message::PingReq(client_id) => {
            if let Some(id) = client_id {
                dst.put_slice(id.as_bytes());
            }
        }
        Message::Disconnect(duration) => {
            if let Some(duration) = duration {
                dst.put_u16(*duration);
            }
        }
        // `encode` writes the encapsulation header and never passes one here.
        Message::Encapsulated(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_picks_the_shortest_length_form() {
        // A body of 253 octets after the MsgType makes 255 in all: the one-octet form still fits.
        assert_eq!(header(0), Ok((1, 2)));
        assert_eq!(header(253), Ok((1, 255)));
        // One more octet needs the three-octet form, two octets longer.
        assert_eq!(header(254), Ok((3, 258)));
        assert_eq!(header(65_531), Ok((3, 65_535)));
        assert_eq!(header(65_532), Err(SnEncodeError::TooLong(65_536)));
        assert_eq!(header(usize::MAX), Err(SnEncodeError::TooLong(usize::MAX)));
    }

    #[test]
    fn encapsulation_header_limit() {
        use alloc::boxed::Box;
        use alloc::vec;

        use super::super::message::Encapsulated;

        let encapsulated = |node_len| {
            Message::Encapsulated(Encapsulated {
                radius: 3,
                wireless_node_id: vec![0; node_len].into(),
                message: Box::new(Message::PingResp),
            })
        };
        // 3 + 252 = 255 octets of header, then the two octets of PINGRESP.
        assert_eq!(encoded_len(&encapsulated(252)), Ok(257));
        assert_eq!(encoded_len(&encapsulated(253)), Err(SnEncodeError::WirelessNodeIdTooLong));
        let mut dst = BytesMut::new();
        encode(&encapsulated(0), &mut dst).unwrap();
        assert_eq!(&dst[..], &[0x03, 0xFE, 0x03, 0x02, 0x17]);
    }
}
