//! Decoding one datagram into one [`Message`] (§5.2 header, §5.4 bodies, §5.5 encapsulation).
//!
//! Every read is bounds-checked through [`Reader`]; the only arithmetic on lengths is on values
//! already known to fit, so no input panics.

use alloc::boxed::Box;

use bytes::{Buf, Bytes};
use bytestring::ByteString;

use super::error::SnDecodeError;
use super::message::{
    Advertise, Connect, Encapsulated, GwInfo, Message, PROTOCOL_ID, PubAck, Publish, PublishTopic,
    RegAck, Register, SearchGw, SubAck, Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
use super::types::{Flags, MsgId, MsgType, ReturnCode, TopicId, TopicIdType};
use crate::QoS;
use crate::topic::{validate_topic_filter, validate_topic_name};

/// The bits of the Flags octet that hold the TopicIdType, masked out by messages that do not use
/// it so that their "not used" bits never fail decoding.
const TOPIC_ID_TYPE_MASK: u8 = 0b11;

/// A cursor over the body of a message.
struct Reader(Bytes);

impl Reader {
    fn u8(&mut self) -> Result<u8, SnDecodeError> {
        if self.0.is_empty() {
            return Err(SnDecodeError::Truncated);
        }
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, SnDecodeError> {
        if self.0.len() < 2 {
            return Err(SnDecodeError::Truncated);
        }
        Ok(self.0.get_u16())
    }

    fn two(&mut self) -> Result<[u8; 2], SnDecodeError> {
        self.u16().map(u16::to_be_bytes)
    }

    fn topic_id(&mut self) -> Result<TopicId, SnDecodeError> {
        self.u16().map(TopicId)
    }

    fn msg_id(&mut self) -> Result<MsgId, SnDecodeError> {
        self.u16().map(MsgId)
    }

    fn return_code(&mut self) -> Result<ReturnCode, SnDecodeError> {
        ReturnCode::from_u8(self.u8()?)
    }

    /// The rest of the message: variable-length fields run to its end (§5.4).
    fn rest(&mut self) -> Bytes {
        core::mem::take(&mut self.0)
    }

    /// The rest of the message as a string.
    fn rest_string(&mut self) -> Result<ByteString, SnDecodeError> {
        string(self.rest())
    }

    /// Fails unless the whole body was consumed.
    fn finish(self) -> Result<(), SnDecodeError> {
        if self.0.is_empty() { Ok(()) } else { Err(SnDecodeError::TrailingBytes) }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn string(bytes: Bytes) -> Result<ByteString, SnDecodeError> {
    if bytes.contains(&0) {
        return Err(SnDecodeError::NullCharacter);
    }
    ByteString::try_from(bytes).map_err(|_| SnDecodeError::InvalidUtf8)
}

/// The QoS of a message other than PUBLISH, which cannot be -1.
fn qos_0_to_2(flags: Flags) -> Result<QoS, SnDecodeError> {
    flags.qos.qos().ok_or(SnDecodeError::InvalidQoS)
}

/// The Length field (§5.2.1): the total length, the size of the field, and whether the
/// three-octet form was used.
fn read_length(datagram: &[u8]) -> Result<(usize, usize, bool), SnDecodeError> {
    match datagram {
        [] => Err(SnDecodeError::Truncated),
        [0x01, rest @ ..] => match rest {
            [hi, lo, ..] => Ok((usize::from(u16::from_be_bytes([*hi, *lo])), 3, true)),
            _ => Err(SnDecodeError::Truncated),
        },
        [len, ..] => Ok((usize::from(*len), 1, false)),
    }
}

/// Decodes one datagram as one MQTT-SN message.
///
/// The Length field must equal the datagram's size exactly (§5.2.1 gives "the total number of
/// octets contained in the message"; anything else is a corrupt or concatenated datagram). Both
/// Length forms are accepted: one octet (2 to 255), or 0x01 followed by two octets. The
/// three-octet form is accepted for lengths below 256 too, because §5.2.1 only says such messages
/// "may use the shorter 1-octet format". The exception is the encapsulation header of §5.5, whose
/// Length is one octet counting only the header; the encapsulated message that follows carries
/// its own Length and fills the rest of the datagram.
///
/// # Errors
/// The first rule of the specification the datagram breaks, as an [`SnDecodeError`].
pub fn decode(datagram: Bytes) -> Result<Message, SnDecodeError> {
    decode_inner(datagram, true)
}

fn decode_inner(mut datagram: Bytes, allow_encapsulation: bool) -> Result<Message, SnDecodeError> {
    let (len, len_size, long_form) = read_length(&datagram)?;
    let type_byte = *datagram.get(len_size).ok_or(SnDecodeError::Truncated)?;
    let msg_type =
        MsgType::from_u8(type_byte).ok_or(SnDecodeError::UnknownMessageType(type_byte))?;

    if msg_type == MsgType::Encapsulated {
        if !allow_encapsulation {
            return Err(SnDecodeError::NestedEncapsulation);
        }
        if long_form {
            return Err(SnDecodeError::EncapsulationLongLength);
        }
        // Length, MsgType and Ctrl are the three fixed octets of the header (§5.5).
        if len < 3 || len > datagram.len() {
            return Err(SnDecodeError::LengthMismatch);
        }
        let ctrl = *datagram.get(2).ok_or(SnDecodeError::Truncated)?;
        let mut header = datagram.split_to(len);
        header.advance(3);
        let message = decode_inner(datagram, false)?;
        return Ok(Message::Encapsulated(Encapsulated {
            radius: ctrl & 0b11,
            wireless_node_id: header,
            message: Box::new(message),
        }));
    }

    if len != datagram.len() {
        return Err(SnDecodeError::LengthMismatch);
    }
    // `len_size + 1 <= datagram.len()` was checked by reading the MsgType.
    datagram.advance(len_size + 1);
    decode_body(msg_type, Reader(datagram))
}

fn decode_body(msg_type: MsgType, mut r: Reader) -> Result<Message, SnDecodeError> {
    let message = match msg_type {
        MsgType::Advertise => Message::Advertise(Advertise { gw_id: r.u8()?, duration: r.u16()? }),
        MsgType::SearchGw => Message::SearchGw(SearchGw { radius: r.u8()? }),
        MsgType::GwInfo => {
            let gw_id = r.u8()?;
            let gw_add = r.rest();
            Message::GwInfo(GwInfo { gw_id, gw_add: (!gw_add.is_empty()).then_some(gw_add) })
        }
        MsgType::Connect => {
            let flags = Flags::from_byte(r.u8()? & !TOPIC_ID_TYPE_MASK)?;
            let protocol_id = r.u8()?;
            if protocol_id != PROTOCOL_ID {
                return Err(SnDecodeError::UnsupportedProtocolId(protocol_id));
            }
            let duration = r.u16()?;
            Message::Connect(Connect {
                will: flags.will,
                clean_session: flags.clean_session,
                duration,
                client_id: r.rest_string()?,
            })
        }
        MsgType::ConnAck => Message::ConnAck(r.return_code()?),
        MsgType::WillTopicReq => Message::WillTopicReq,
        MsgType::WillTopic => Message::WillTopic(will_topic(&mut r)?),
        MsgType::WillMsgReq => Message::WillMsgReq,
        MsgType::WillMsg => Message::WillMsg(r.rest()),
        MsgType::Register => {
            let topic_id = r.topic_id()?;
            let msg_id = r.msg_id()?;
            let topic_name = r.rest_string()?;
            validate_topic_name(&topic_name).map_err(SnDecodeError::InvalidTopicName)?;
            Message::Register(Register { topic_id, msg_id, topic_name })
        }
        MsgType::RegAck => Message::RegAck(RegAck {
            topic_id: r.topic_id()?,
            msg_id: r.msg_id()?,
            return_code: r.return_code()?,
        }),
        MsgType::Publish => {
            let flags = Flags::from_byte(r.u8()?)?;
            let topic = match flags.topic_id_type {
                TopicIdType::Normal => PublishTopic::Normal(r.topic_id()?),
                TopicIdType::Predefined => PublishTopic::Predefined(r.topic_id()?),
                TopicIdType::Short => PublishTopic::Short(r.two()?),
            };
            Message::Publish(Publish {
                dup: flags.dup,
                qos: flags.qos,
                retain: flags.retain,
                topic,
                msg_id: r.msg_id()?,
                data: r.rest(),
            })
        }
        MsgType::PubAck => Message::PubAck(PubAck {
            topic_id: r.topic_id()?,
            msg_id: r.msg_id()?,
            return_code: r.return_code()?,
        }),
        MsgType::PubComp => Message::PubComp(r.msg_id()?),
        MsgType::PubRec => Message::PubRec(r.msg_id()?),
        MsgType::PubRel => Message::PubRel(r.msg_id()?),
        MsgType::Subscribe => {
            let flags = Flags::from_byte(r.u8()?)?;
            let qos = qos_0_to_2(flags)?;
            let msg_id = r.msg_id()?;
            let topic = subscribe_topic(flags.topic_id_type, &mut r)?;
            Message::Subscribe(Subscribe { dup: flags.dup, qos, msg_id, topic })
        }
        MsgType::SubAck => {
            let flags = Flags::from_byte(r.u8()? & !TOPIC_ID_TYPE_MASK)?;
            Message::SubAck(SubAck {
                qos: qos_0_to_2(flags)?,
                topic_id: r.topic_id()?,
                msg_id: r.msg_id()?,
                return_code: r.return_code()?,
            })
        }
        MsgType::Unsubscribe => {
            let flags = Flags::from_byte(r.u8()?)?;
            let msg_id = r.msg_id()?;
            let topic = subscribe_topic(flags.topic_id_type, &mut r)?;
            Message::Unsubscribe(Unsubscribe { msg_id, topic })
        }
        MsgType::UnsubAck => Message::UnsubAck(r.msg_id()?),
        MsgType::PingReq => {
            if r.is_empty() {
                Message::PingReq(None)
            } else {
                Message::PingReq(Some(r.rest_string()?))
            }
        }
        MsgType::PingResp => Message::PingResp,
        MsgType::Disconnect => {
            if r.is_empty() {
                Message::Disconnect(None)
            } else {
                Message::Disconnect(Some(r.u16()?))
            }
        }
        MsgType::WillTopicUpd => Message::WillTopicUpd(will_topic(&mut r)?),
        MsgType::WillTopicResp => Message::WillTopicResp(r.return_code()?),
        MsgType::WillMsgUpd => Message::WillMsgUpd(r.rest()),
        MsgType::WillMsgResp => Message::WillMsgResp(r.return_code()?),
        // Handled with the header in `decode_inner`; unreachable here, but an error keeps the
        // decoder panic-free whatever changes around it.
        MsgType::Encapsulated => return Err(SnDecodeError::NestedEncapsulation),
    };
    r.finish()?;
    Ok(message)
}

/// WILLTOPIC and WILLTOPICUPD (§5.4.7, §5.4.22): empty, or Flags and a topic name.
fn will_topic(r: &mut Reader) -> Result<Option<WillTopic>, SnDecodeError> {
    if r.is_empty() {
        return Ok(None);
    }
    let flags = Flags::from_byte(r.u8()? & !TOPIC_ID_TYPE_MASK)?;
    let qos = qos_0_to_2(flags)?;
    let topic = r.rest_string()?;
    validate_topic_name(&topic).map_err(SnDecodeError::InvalidTopicName)?;
    Ok(Some(WillTopic { qos, retain: flags.retain, topic }))
}

/// The TopicName or TopicId field of SUBSCRIBE and UNSUBSCRIBE (§5.4.15, §5.4.17).
fn subscribe_topic(
    topic_id_type: TopicIdType,
    r: &mut Reader,
) -> Result<SubscribeTopic, SnDecodeError> {
    Ok(match topic_id_type {
        TopicIdType::Normal => {
            let filter = r.rest_string()?;
            validate_topic_filter(&filter).map_err(SnDecodeError::InvalidTopicFilter)?;
            SubscribeTopic::Name(filter)
        }
        TopicIdType::Predefined | TopicIdType::Short => {
            let rest = r.rest();
            let two: [u8; 2] =
                rest.as_ref().try_into().map_err(|_| SnDecodeError::InvalidTopicIdLength)?;
            if topic_id_type == TopicIdType::Short {
                SubscribeTopic::Short(two)
            } else {
                SubscribeTopic::Predefined(TopicId(u16::from_be_bytes(two)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms() {
        // §5.2.1: one octet, or 0x01 and two octets most significant first.
        assert_eq!(read_length(&[0x02, 0x17]), Ok((2, 1, false)));
        assert_eq!(read_length(&[0xFF]), Ok((255, 1, false)));
        assert_eq!(read_length(&[0x01, 0x01, 0x35]), Ok((0x0135, 3, true)));
        assert_eq!(read_length(&[0x01, 0xFF, 0xFF, 0x00]), Ok((65_535, 3, true)));
        assert_eq!(read_length(&[]), Err(SnDecodeError::Truncated));
        assert_eq!(read_length(&[0x01]), Err(SnDecodeError::Truncated));
        assert_eq!(read_length(&[0x01, 0x00]), Err(SnDecodeError::Truncated));
    }

    #[test]
    fn reader_bounds() {
        let mut r = Reader(Bytes::from_static(&[0x01, 0x02, 0x03]));
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(SnDecodeError::Truncated));
        assert_eq!(r.u8(), Ok(0x03));
        assert_eq!(r.u8(), Err(SnDecodeError::Truncated));
        assert!(r.is_empty());
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(Reader(Bytes::from_static(&[0])).finish(), Err(SnDecodeError::TrailingBytes));
    }

    #[test]
    fn strings_are_checked() {
        assert_eq!(string(Bytes::from_static("é/€".as_bytes())).as_deref(), Ok("é/€"));
        assert_eq!(string(Bytes::from_static(b"a\0")), Err(SnDecodeError::NullCharacter));
        // An encoded surrogate, U+D800, is not UTF-8.
        assert_eq!(string(Bytes::from_static(b"\xED\xA0\x80")), Err(SnDecodeError::InvalidUtf8));
    }

    #[test]
    fn disconnect_duration_is_all_or_nothing() {
        // §5.4.21: the Duration field is absent or two octets.
        let decode = |b: &'static [u8]| decode(Bytes::from_static(b));
        assert_eq!(decode(&[0x02, 0x18]), Ok(Message::Disconnect(None)));
        assert_eq!(decode(&[0x04, 0x18, 0x00, 0x05]), Ok(Message::Disconnect(Some(5))));
        assert_eq!(decode(&[0x03, 0x18, 0x00]), Err(SnDecodeError::Truncated));
        assert_eq!(decode(&[0x05, 0x18, 0, 0, 0]), Err(SnDecodeError::TrailingBytes));
    }
}
