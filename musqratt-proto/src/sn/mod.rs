//! MQTT-SN 1.2: the datagram protocol of "MQTT For Sensor Networks (MQTT-SN) Protocol
//! Specification Version 1.2" (Stanford-Clark and Truong, 2013), message formats of §5.
//!
//! Each datagram carries exactly one message (or one forwarder encapsulation of one message), so
//! decoding is not incremental: [`decode`] takes the whole datagram and answers a [`Message`]
//! whose strings and payloads are zero-copy slices of it, or the [`SnDecodeError`] naming the rule
//! it breaks. [`encode`] writes one message with the shortest Length form.
//!
//! ```
//! use musqratt_proto::bytes::{Bytes, BytesMut};
//! use musqratt_proto::sn::{self, Message, MsgId};
//!
//! let mut buf = BytesMut::new();
//! sn::encode(&Message::PubRel(MsgId(7)), &mut buf).unwrap();
//! assert_eq!(&buf[..], &[0x04, 0x10, 0x00, 0x07]);
//! assert_eq!(sn::decode(buf.freeze()), Ok(Message::PubRel(MsgId(7))));
//! ```

mod decode;
mod encode;
mod error;
mod message;
mod types;

pub use decode::decode;
pub use encode::{encode, encoded_len};
pub use error::{SnDecodeError, SnEncodeError};
pub use message::{
    Advertise, Connect, Encapsulated, GwInfo, Message, PROTOCOL_ID, PubAck, Publish, PublishTopic,
    RegAck, Register, SearchGw, SubAck, Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
pub use types::{Flags, MsgId, MsgType, ReturnCode, SnQoS, TopicId, TopicIdType};
