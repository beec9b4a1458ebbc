//! MQTT-SN datagrams as bytes: the forwarder's encapsulation (§5.5), topic id fields, QoS.

use alloc::boxed::Box;

use bytes::{Bytes, BytesMut};
use musqratt_proto::QoS;
use musqratt_proto::bytestring::ByteString;
use musqratt_proto::sn::{self, Encapsulated, Message as SnMessage, PublishTopic, SnQoS};

/// The wireless node id of a forwarder-encapsulated datagram (§5.5), empty for a direct one:
/// with the peer, the key a runtime routes MQTT-SN datagrams by after
/// [`Action::HandoffPeer`](crate::Action::HandoffPeer). A zero-copy slice of `datagram`.
#[must_use]
pub fn wireless_node(datagram: &Bytes) -> Bytes {
    // Encapsulation: Length (1 octet), MsgType 0xFE, Ctrl, Wireless Node Id (Length - 3 octets).
    match datagram.get(..2) {
        Some([len, 0xFE]) if usize::from(*len) >= 3 && usize::from(*len) <= datagram.len() => {
            datagram.slice(3..usize::from(*len))
        }
        _ => Bytes::new(),
    }
}

/// The topic id field of an outbound PUBLISH.
pub(super) fn topic_id_of(topic: PublishTopic) -> u16 {
    match topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id.0,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
    }
}

pub(super) fn sn_qos(qos: QoS) -> SnQoS {
    match qos {
        QoS::AtMostOnce => SnQoS::AtMostOnce,
        QoS::AtLeastOnce => SnQoS::AtLeastOnce,
        QoS::ExactlyOnce => SnQoS::ExactlyOnce,
    }
}

/// One datagram: the message, inside the forwarder's encapsulation when there is one (§5.5).
pub(super) fn encode(node: Option<&(u8, Bytes)>, message: &SnMessage) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    let result = match node {
        Some((radius, node)) => {
            let encapsulated = SnMessage::Encapsulated(Encapsulated {
                radius: *radius,
                wireless_node_id: node.clone(),
                message: Box::new(message.clone()),
            });
            sn::encode(&encapsulated, &mut buf)
        }
        None => sn::encode(message, &mut buf),
    };
    result.ok().map(|()| buf.freeze())
}

/// A short topic name (two characters, TopicIdType 0b10, §5.3.4), when it is UTF-8.
pub(super) fn short_name(name: [u8; 2]) -> Option<ByteString> {
    let text = core::str::from_utf8(&name).ok()?;
    Some(ByteString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireless_node_is_the_encapsulation_node_id_or_empty() {
        // §5.5: Length 6, MsgType 0xFE, Ctrl, Wireless Node Id "abc", then the message.
        let datagram = Bytes::from_static(b"\x06\xfe\x00abc\x02\x18");
        assert_eq!(&wireless_node(&datagram)[..], b"abc");
        assert!(wireless_node(&Bytes::from_static(b"\x02\x18")).is_empty());
        assert!(wireless_node(&Bytes::from_static(b"\x09\xfe\x00ab")).is_empty());
        assert!(wireless_node(&Bytes::new()).is_empty());
    }
}
