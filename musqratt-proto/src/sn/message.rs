//! The MQTT-SN 1.2 messages (§5.4 and §5.5), one struct per message that carries fields.
//!
//! Topic names, client ids, payloads and addresses are [`Bytes`] or [`ByteString`] slices of the
//! received datagram: decoding copies nothing.

use alloc::boxed::Box;

use bytes::Bytes;
use bytestring::ByteString;

use super::types::{MsgId, MsgType, ReturnCode, SnQoS, TopicId};
use crate::QoS;

/// One MQTT-SN message, as carried by one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// ADVERTISE (§5.4.1).
    Advertise(Advertise),
    /// SEARCHGW (§5.4.2).
    SearchGw(SearchGw),
    /// GWINFO (§5.4.3).
    GwInfo(GwInfo),
    /// CONNECT (§5.4.4).
    Connect(Connect),
    /// CONNACK (§5.4.5).
    ConnAck(ReturnCode),
    /// WILLTOPICREQ (§5.4.6): the gateway asks for the will topic.
    WillTopicReq,
    /// WILLTOPIC (§5.4.7). `None` is the empty form, "without Flags and WillTopic field (i.e. it
    /// is exactly 2 octets long)", which a client sends to delete its will (§5.4.7, §6.4).
    WillTopic(Option<WillTopic>),
    /// WILLMSGREQ (§5.4.8): the gateway asks for the will message.
    WillMsgReq,
    /// WILLMSG (§5.4.9): the will message.
    WillMsg(Bytes),
    /// REGISTER (§5.4.10).
    Register(Register),
    /// REGACK (§5.4.11).
    RegAck(RegAck),
    /// PUBLISH (§5.4.12).
    Publish(Publish),
    /// PUBACK (§5.4.13).
    PubAck(PubAck),
    /// PUBCOMP (§5.4.14).
    PubComp(MsgId),
    /// PUBREC (§5.4.14).
    PubRec(MsgId),
    /// PUBREL (§5.4.14).
    PubRel(MsgId),
    /// SUBSCRIBE (§5.4.15).
    Subscribe(Subscribe),
    /// SUBACK (§5.4.16).
    SubAck(SubAck),
    /// UNSUBSCRIBE (§5.4.17).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (§5.4.18).
    UnsubAck(MsgId),
    /// PINGREQ (§5.4.19), with the client id of a sleeping client that wakes up to fetch its
    /// buffered messages, `None` otherwise.
    PingReq(Option<ByteString>),
    /// PINGRESP (§5.4.20).
    PingResp,
    /// DISCONNECT (§5.4.21), with the sleep duration in seconds of a client going to sleep
    /// (§6.14), `None` for a plain disconnect.
    Disconnect(Option<u16>),
    /// WILLTOPICUPD (§5.4.22). `None` is the empty form, which deletes the will.
    WillTopicUpd(Option<WillTopic>),
    /// WILLTOPICRESP (§5.4.23).
    WillTopicResp(ReturnCode),
    /// WILLMSGUPD (§5.4.24): the new will message.
    WillMsgUpd(Bytes),
    /// WILLMSGRESP (§5.4.25).
    WillMsgResp(ReturnCode),
    /// A message relayed by a forwarder (§5.5).
    Encapsulated(Encapsulated),
}

impl Message {
    /// The MsgType octet this message is sent with.
    #[must_use]
    pub const fn msg_type(&self) -> MsgType {
        match self {
            Self::Advertise(_) => MsgType::Advertise,
            Self::SearchGw(_) => MsgType::SearchGw,
            Self::GwInfo(_) => MsgType::GwInfo,
            Self::Connect(_) => MsgType::Connect,
            Self::ConnAck(_) => MsgType::ConnAck,
            Self::WillTopicReq => MsgType::WillTopicReq,
            Self::WillTopic(_) => MsgType::WillTopic,
            Self::WillMsgReq => MsgType::WillMsgReq,
            Self::WillMsg(_) => MsgType::WillMsg,
            Self::Register(_) => MsgType::Register,
            Self::RegAck(_) => MsgType::RegAck,
            Self::Publish(_) => MsgType::Publish,
            Self::PubAck(_) => MsgType::PubAck,
            Self::PubComp(_) => MsgType::PubComp,
            Self::PubRec(_) => MsgType::PubRec,
            Self::PubRel(_) => MsgType::PubRel,
            Self::Subscribe(_) => MsgType::Subscribe,
            Self::SubAck(_) => MsgType::SubAck,
            Self::Unsubscribe(_) => MsgType::Unsubscribe,
            Self::UnsubAck(_) => MsgType::UnsubAck,
            Self::PingReq(_) => MsgType::PingReq,
            Self::PingResp => MsgType::PingResp,
            Self::Disconnect(_) => MsgType::Disconnect,
            Self::WillTopicUpd(_) => MsgType::WillTopicUpd,
            Self::WillTopicResp(_) => MsgType::WillTopicResp,
            Self::WillMsgUpd(_) => MsgType::WillMsgUpd,
            Self::WillMsgResp(_) => MsgType::WillMsgResp,
            Self::Encapsulated(_) => MsgType::Encapsulated,
        }
    }
}

/// ADVERTISE (§5.4.1): a gateway's periodic broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Advertise {
    /// The gateway's id.
    pub gw_id: u8,
    /// Seconds until the gateway's next ADVERTISE.
    pub duration: u16,
}

/// SEARCHGW (§5.4.2): a client's broadcast looking for a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SearchGw {
    /// The broadcast radius in hops.
    pub radius: u8,
}

/// GWINFO (§5.4.3): the answer to SEARCHGW, from a gateway or from a client that knows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GwInfo {
    /// The gateway's id.
    pub gw_id: u8,
    /// The gateway's address, present only when a client answers (§5.4.3: "only present if
    /// message is sent by a client"). `Some` holds at least one octet: an empty address is the
    /// absent one on the wire.
    pub gw_add: Option<Bytes>,
}

/// The ProtocolId octet of CONNECT (§5.3.8): "coded 0x01".
pub const PROTOCOL_ID: u8 = 0x01;

/// CONNECT (§5.4.4). Its ProtocolId is always [`PROTOCOL_ID`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The Will flag: the gateway asks for will topic and message before CONNACK.
    pub will: bool,
    /// The CleanSession flag.
    pub clean_session: bool,
    /// The keep-alive period in seconds (§5.3.7).
    pub duration: u16,
    /// The client id (§5.3.3). The specification says 1 to 23 characters; the codec checks only
    /// UTF-8 and leaves the length policy to the gateway.
    pub client_id: ByteString,
}

/// The non-empty form of WILLTOPIC and WILLTOPICUPD (§5.4.7, §5.4.22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillTopic {
    /// The will's QoS; QoS -1 has no meaning for a will and is rejected.
    pub qos: QoS,
    /// Whether the will is published retained.
    pub retain: bool,
    /// The will topic, a valid topic name.
    pub topic: ByteString,
}

/// REGISTER (§5.4.10): binds a topic name to a topic id, asked by a client (with topic id 0) or
/// announced by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The topic id: 0x0000 from a client, the assigned id from the gateway.
    pub topic_id: TopicId,
    /// Matches the REGACK.
    pub msg_id: MsgId,
    /// The topic name, a valid topic name (no wildcards).
    pub topic_name: ByteString,
}

/// REGACK (§5.4.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegAck {
    /// The assigned topic id.
    pub topic_id: TopicId,
    /// The id of the REGISTER this answers.
    pub msg_id: MsgId,
    /// Whether the registration was accepted.
    pub return_code: ReturnCode,
}

/// The topic of a PUBLISH or PUBACK as its TopicIdType says (§5.3.4, §5.3.11, §5.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishTopic {
    /// TopicIdType 0b00: an id assigned by REGISTER / REGACK.
    Normal(TopicId),
    /// TopicIdType 0b01: a predefined topic id.
    Predefined(TopicId),
    /// TopicIdType 0b10: a short topic name, two octets in the TopicId field.
    Short([u8; 2]),
}

/// PUBLISH (§5.4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The DUP flag: a retransmission.
    pub dup: bool,
    /// The QoS, including -1. §6.8 has a QoS -1 publisher use a predefined topic id or a short
    /// topic name; the codec accepts any topic kind and leaves that check to the gateway.
    pub qos: SnQoS,
    /// The Retain flag.
    pub retain: bool,
    /// The topic, whose kind is the TopicIdType of the Flags.
    pub topic: PublishTopic,
    /// The message id, 0x0000 for QoS 0 and -1.
    pub msg_id: MsgId,
    /// The published data, a slice of the datagram.
    pub data: Bytes,
}

/// PUBACK (§5.4.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PubAck {
    /// The topic id of the PUBLISH this answers.
    pub topic_id: TopicId,
    /// The message id of that PUBLISH.
    pub msg_id: MsgId,
    /// Accepted, or why the PUBLISH was rejected.
    pub return_code: ReturnCode,
}

/// The topic of a SUBSCRIBE or UNSUBSCRIBE as its TopicIdType says (§5.4.15, §5.4.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeTopic {
    /// TopicIdType 0b00: a topic filter, wildcards allowed.
    Name(ByteString),
    /// TopicIdType 0b01: a predefined topic id.
    Predefined(TopicId),
    /// TopicIdType 0b10: a short topic name of two octets.
    Short([u8; 2]),
}

/// SUBSCRIBE (§5.4.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The DUP flag: a retransmission.
    pub dup: bool,
    /// The requested QoS; QoS -1 cannot be subscribed to and is rejected.
    pub qos: QoS,
    /// Matches the SUBACK.
    pub msg_id: MsgId,
    /// What is subscribed to.
    pub topic: SubscribeTopic,
}

/// SUBACK (§5.4.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubAck {
    /// The granted QoS.
    pub qos: QoS,
    /// The topic id for a topic name without wildcards, 0x0000 otherwise.
    pub topic_id: TopicId,
    /// The id of the SUBSCRIBE this answers.
    pub msg_id: MsgId,
    /// Whether the subscription was accepted.
    pub return_code: ReturnCode,
}

/// UNSUBSCRIBE (§5.4.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Matches the UNSUBACK.
    pub msg_id: MsgId,
    /// What is unsubscribed from.
    pub topic: SubscribeTopic,
}

/// A message relayed between a forwarder and the gateway (§5.5): the forwarder prefixes the
/// client's message with its own header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated {
    /// The broadcast radius, bits 1–0 of the Ctrl octet (§5.5): 0 to 3. The other Ctrl bits
    /// are reserved, ignored when decoding and written as 0.
    pub radius: u8,
    /// The address of the wireless node that sent, or is to receive, the message.
    pub wireless_node_id: Bytes,
    /// The relayed message; never itself an encapsulation.
    pub message: Box<Message>,
}
