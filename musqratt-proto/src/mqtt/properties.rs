//! MQTT 5.0 properties (§2.2.2): one struct per packet (or will), so that a property a packet may
//! not carry cannot be set, and decoding enforces the same per-packet allow-list (§2.2.2.2 table).
//!
//! The structs are generated from one table each by `properties!`, which writes the decoder
//! (duplicate and allow-list checks), the length computation and the encoder from the same list.

use alloc::vec::Vec;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use smallvec::SmallVec;

use crate::error::{DecodeError, EncodeError};
use crate::types::QoS;
use crate::wire::{
    MAX_VARINT, binary_len, read_binary, read_string, read_u8, read_u16, read_u32, read_varint,
    varint_len, write_binary, write_varint,
};

/// User Properties (0x26): name-value pairs kept in the order they were sent, duplicates allowed
/// (MQTT-3.3.2-18 asks a broker to forward them unchanged and in order).
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// The Subscription Identifiers a broker puts on a PUBLISH (§3.3.2.3.8): one per matching
/// subscription that had one. Inline for the usual one.
pub type SubscriptionIds = SmallVec<[u32; 1]>;

/// Every property identifier §2.2.2.2 defines; the decoder tells "not allowed here" (Protocol
/// Error) from "unknown" (Malformed Packet) with it.
const KNOWN_IDS: [u32; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];
const USER_PROPERTY: u32 = 0x26;
const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;

/// How one property's value is read, measured and written. One implementation per data type of
/// §2.2.2.2, plus the range checks the specification sets on some properties.
pub(crate) trait PropertyKind {
    type Value;
    fn read(buf: &mut Bytes, id: u8) -> Result<Self::Value, DecodeError>;
    fn len(value: &Self::Value) -> Result<usize, EncodeError>;
    fn write(value: &Self::Value, dst: &mut BytesMut);
}

/// A byte that must be 0 or 1 (Payload Format Indicator, Request Problem Information, Retain
/// Available, ...): any other value is a Protocol Error.
pub(crate) struct Flag;
/// Maximum QoS (0x24): 0 or 1 (§3.2.2.3.4).
pub(crate) struct MaxQoS;
/// A Two Byte Integer.
pub(crate) struct U16;
/// A Two Byte Integer that may not be 0 (Receive Maximum, MQTT-3.1.2-? §3.1.2.11.3).
pub(crate) struct NonZeroU16;
/// A Four Byte Integer.
pub(crate) struct U32;
/// A Four Byte Integer that may not be 0 (Maximum Packet Size, §3.1.2.11.4).
pub(crate) struct NonZeroU32;
/// A Variable Byte Integer from 1 to 268,435,455 (Subscription Identifier, §3.8.2.1.2).
pub(crate) struct SubscriptionId;
/// A UTF-8 Encoded String.
pub(crate) struct Str;
/// Binary Data.
pub(crate) struct Bin;

impl PropertyKind for Flag {
    type Value = bool;
    fn read(buf: &mut Bytes, id: u8) -> Result<bool, DecodeError> {
        match read_u8(buf)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn len(_: &bool) -> Result<usize, EncodeError> {
        Ok(1)
    }
    fn write(value: &bool, dst: &mut BytesMut) {
        dst.put_u8(u8::from(*value));
    }
}

impl PropertyKind for MaxQoS {
    type Value = QoS;
    fn read(buf: &mut Bytes, id: u8) -> Result<QoS, DecodeError> {
        match read_u8(buf)? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn len(value: &QoS) -> Result<usize, EncodeError> {
        // §3.2.2.3.4: Maximum QoS is 0 or 1; a server supporting QoS 2 leaves it out.
        if *value == QoS::ExactlyOnce { Err(EncodeError::NotRepresentable) } else { Ok(1) }
    }
    fn write(value: &QoS, dst: &mut BytesMut) {
        dst.put_u8(value.bits());
    }
}

impl PropertyKind for U16 {
    type Value = u16;
    fn read(buf: &mut Bytes, _: u8) -> Result<u16, DecodeError> {
        read_u16(buf)
    }
    fn len(_: &u16) -> Result<usize, EncodeError> {
        Ok(2)
    }
    fn write(value: &u16, dst: &mut BytesMut) {
        dst.put_u16(*value);
    }
}

impl PropertyKind for NonZeroU16 {
    type Value = u16;
    fn read(buf: &mut Bytes, id: u8) -> Result<u16, DecodeError> {
        match read_u16(buf)? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(_: &u16) -> Result<usize, EncodeError> {
        Ok(2)
    }
    fn write(value: &u16, dst: &mut BytesMut) {
        dst.put_u16(*value);
    }
}

impl PropertyKind for U32 {
    type Value = u32;
    fn read(buf: &mut Bytes, _: u8) -> Result<u32, DecodeError> {
        read_u32(buf)
    }
    fn len(_: &u32) -> Result<usize, EncodeError> {
        Ok(4)
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        dst.put_u32(*value);
    }
}

impl PropertyKind for NonZeroU32 {
    type Value = u32;
    fn read(buf: &mut Bytes, id: u8) -> Result<u32, DecodeError> {
        match read_u32(buf)? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(_: &u32) -> Result<usize, EncodeError> {
        Ok(4)
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        dst.put_u32(*value);
    }
}

impl PropertyKind for SubscriptionId {
    type Value = u32;
    fn read(buf: &mut Bytes, id: u8) -> Result<u32, DecodeError> {
        match read_varint(buf)? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(value: &u32) -> Result<usize, EncodeError> {
        if *value == 0 || *value > MAX_VARINT {
            return Err(EncodeError::NotRepresentable);
        }
        Ok(varint_len(*value))
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        write_varint(dst, *value);
    }
}

impl PropertyKind for Str {
    type Value = ByteString;
    fn read(buf: &mut Bytes, _: u8) -> Result<ByteString, DecodeError> {
        read_string(buf)
    }
    fn len(value: &ByteString) -> Result<usize, EncodeError> {
        binary_len(value.as_bytes())
    }
    fn write(value: &ByteString, dst: &mut BytesMut) {
        write_binary(dst, value.as_bytes());
    }
}

impl PropertyKind for Bin {
    type Value = Bytes;
    fn read(buf: &mut Bytes, _: u8) -> Result<Bytes, DecodeError> {
        read_binary(buf)
    }
    fn len(value: &Bytes) -> Result<usize, EncodeError> {
        binary_len(value)
    }
    fn write(value: &Bytes, dst: &mut BytesMut) {
        write_binary(dst, value);
    }
}

/// Reads the Property Length and returns the property bytes as their own slice.
fn split_properties(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = read_varint(buf)? as usize;
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.split_to(len))
}

/// The error for a property identifier this packet has no field for.
fn unexpected(id: u32) -> DecodeError {
    match u8::try_from(id) {
        Ok(byte) if KNOWN_IDS.contains(&id) => DecodeError::PropertyNotAllowed(byte),
        _ => DecodeError::UnknownProperty(u8::try_from(id).unwrap_or(u8::MAX)),
    }
}

fn user_properties_len(pairs: &UserProperties) -> Result<usize, EncodeError> {
    pairs.iter().try_fold(0, |sum, (name, value)| {
        Ok(sum + 1 + binary_len(name.as_bytes())? + binary_len(value.as_bytes())?)
    })
}

macro_rules! properties {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty as $kind:ident = $id:literal, )*
        }
        $( repeated $many:ident; )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: Option<$ty>, )*
            $(
                /// Subscription Identifiers (0x0B), one per matching subscription that has one
                /// (§3.3.4, MQTT-3.3.4-3).
                pub $many: SubscriptionIds,
            )?
            /// User Properties (0x26), in order.
            pub user_properties: UserProperties,
        }

        impl $name {
            /// Reads the Property Length and the properties it covers (§2.2.2.1).
            #[inline]
            pub(crate) fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
                // Most packets carry no properties: one length byte of 0.
                if buf.first() == Some(&0) {
                    buf.advance(1);
                    return Ok(Self::default());
                }
                let mut props = split_properties(buf)?;
                let mut this = Self::default();
                while !props.is_empty() {
                    let id = read_varint(&mut props)?;
                    match id {
                        $(
                            $id => {
                                if this.$field.is_some() {
                                    return Err(DecodeError::DuplicateProperty($id));
                                }
                                this.$field = Some(<$kind as PropertyKind>::read(&mut props, $id)?);
                            }
                        )*
                        $(
                            SUBSCRIPTION_IDENTIFIER => {
                                let value = SubscriptionId::read(&mut props, 0x0B)?;
                                this.$many.push(value);
                            }
                        )?
                        USER_PROPERTY => {
                            let name = read_string(&mut props)?;
                            let value = read_string(&mut props)?;
                            this.user_properties.push((name, value));
                        }
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(this)
            }

            /// The size of the properties, without the Property Length in front of them.
            #[inline(never)]
            pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
                #[allow(unused_mut)]
                let mut len = user_properties_len(&self.user_properties)?;
                $(
                    if let Some(value) = &self.$field {
                        len += 1 + <$kind as PropertyKind>::len(value)?;
                    }
                )*
                $(
                    for value in &self.$many {
                        len += 1 + SubscriptionId::len(value)?;
                    }
                )?
                Ok(len)
            }

            /// The size of the properties with their Property Length.
            #[allow(dead_code, reason = "PUBLISH computes its lengths once through body_len")]
            pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
                let body = self.body_len()?;
                let encoded = u32::try_from(body).ok().filter(|&len| len <= MAX_VARINT);
                let Some(encoded) = encoded else {
                    return Err(EncodeError::PacketTooLarge { size: body, max: MAX_VARINT as usize });
                };
                Ok(varint_len(encoded) + body)
            }

            /// Writes the Property Length and the properties; `body_len` is what
            /// [`Self::body_len`] returned.
            #[inline]
            #[allow(dead_code, reason = "PUBLISH writes its Property Length with its packet id")]
            pub(crate) fn encode(&self, body_len: usize, dst: &mut BytesMut) {
                write_varint(dst, body_len as u32);
                if body_len != 0 {
                    self.encode_fields(dst);
                }
            }

            /// Writes the properties without their Property Length. Out of line: most
            /// packets have none, and their encoder stays small without this.
            #[inline(never)]
            pub(crate) fn encode_fields(&self, dst: &mut BytesMut) {
                $(
                    if let Some(value) = &self.$field {
                        dst.put_u8($id);
                        <$kind as PropertyKind>::write(value, dst);
                    }
                )*
                $(
                    for value in &self.$many {
                        dst.put_u8(0x0B);
                        SubscriptionId::write(value, dst);
                    }
                )?
                for (name, value) in &self.user_properties {
                    dst.put_u8(0x26);
                    write_binary(dst, name.as_bytes());
                    write_binary(dst, value.as_bytes());
                }
            }

            /// Whether no property is set, so a packet may use its short form.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.user_properties.is_empty()
                    $( && self.$field.is_none() )*
                    $( && self.$many.is_empty() )?
            }
        }
    };
}

properties! {
    /// Properties of CONNECT (§3.1.2.11).
    ConnectProperties {
        /// Session Expiry Interval (0x11) in seconds; absent means 0.
        session_expiry_interval: u32 as U32 = 0x11,
        /// Receive Maximum (0x21): QoS 1 and 2 publications the client processes at once.
        receive_maximum: u16 as NonZeroU16 = 0x21,
        /// Maximum Packet Size (0x27) the client accepts (MQTT-3.1.2-24).
        maximum_packet_size: u32 as NonZeroU32 = 0x27,
        /// Topic Alias Maximum (0x22) the client accepts.
        topic_alias_maximum: u16 as U16 = 0x22,
        /// Request Response Information (0x19).
        request_response_information: bool as Flag = 0x19,
        /// Request Problem Information (0x17).
        request_problem_information: bool as Flag = 0x17,
        /// Authentication Method (0x15) for enhanced authentication (§4.12).
        authentication_method: ByteString as Str = 0x15,
        /// Authentication Data (0x16).
        authentication_data: Bytes as Bin = 0x16,
    }
}

properties! {
    /// Properties of the Will Message in CONNECT's payload (§3.1.3.2).
    WillProperties {
        /// Will Delay Interval (0x18) in seconds.
        will_delay_interval: u32 as U32 = 0x18,
        /// Payload Format Indicator (0x01): true for UTF-8 character data.
        payload_format_indicator: bool as Flag = 0x01,
        /// Message Expiry Interval (0x02) in seconds.
        message_expiry_interval: u32 as U32 = 0x02,
        /// Content Type (0x03).
        content_type: ByteString as Str = 0x03,
        /// Response Topic (0x08).
        response_topic: ByteString as Str = 0x08,
        /// Correlation Data (0x09).
        correlation_data: Bytes as Bin = 0x09,
    }
}

properties! {
    /// Properties of CONNACK (§3.2.2.3).
    ConnAckProperties {
        /// Session Expiry Interval (0x11) the server uses instead of the client's.
        session_expiry_interval: u32 as U32 = 0x11,
        /// Receive Maximum (0x21) of the server.
        receive_maximum: u16 as NonZeroU16 = 0x21,
        /// Maximum QoS (0x24) the server supports; absent means 2.
        maximum_qos: QoS as MaxQoS = 0x24,
        /// Retain Available (0x25); absent means true.
        retain_available: bool as Flag = 0x25,
        /// Maximum Packet Size (0x27) the server accepts.
        maximum_packet_size: u32 as NonZeroU32 = 0x27,
        /// Assigned Client Identifier (0x12) for a client that sent an empty one.
        assigned_client_identifier: ByteString as Str = 0x12,
        /// Topic Alias Maximum (0x22) the server accepts.
        topic_alias_maximum: u16 as U16 = 0x22,
        /// Reason String (0x1F).
        reason_string: ByteString as Str = 0x1F,
        /// Wildcard Subscription Available (0x28); absent means true.
        wildcard_subscription_available: bool as Flag = 0x28,
        /// Subscription Identifiers Available (0x29); absent means true.
        subscription_identifiers_available: bool as Flag = 0x29,
        /// Shared Subscription Available (0x2A); absent means true.
        shared_subscription_available: bool as Flag = 0x2A,
        /// Server Keep Alive (0x13) the client must use instead of its own.
        server_keep_alive: u16 as U16 = 0x13,
        /// Response Information (0x1A).
        response_information: ByteString as Str = 0x1A,
        /// Server Reference (0x1C): another server to use (§4.11).
        server_reference: ByteString as Str = 0x1C,
        /// Authentication Method (0x15).
        authentication_method: ByteString as Str = 0x15,
        /// Authentication Data (0x16).
        authentication_data: Bytes as Bin = 0x16,
    }
}

properties! {
    /// Properties of PUBLISH (§3.3.2.3).
    PublishProperties {
        /// Payload Format Indicator (0x01): true for UTF-8 character data.
        payload_format_indicator: bool as Flag = 0x01,
        /// Message Expiry Interval (0x02) in seconds; a broker forwards what remains of it.
        message_expiry_interval: u32 as U32 = 0x02,
        /// Topic Alias (0x23); 0 and values above the receiver's maximum are checked by the
        /// receiver's session (MQTT-3.3.2-8, -9, -10).
        topic_alias: u16 as U16 = 0x23,
        /// Response Topic (0x08).
        response_topic: ByteString as Str = 0x08,
        /// Correlation Data (0x09).
        correlation_data: Bytes as Bin = 0x09,
        /// Content Type (0x03).
        content_type: ByteString as Str = 0x03,
    }
    repeated subscription_identifiers;
}

properties! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK (§3.4.2.2 and the same
    /// sections of the others): a reason string and user properties.
    AckProperties {
        /// Reason String (0x1F).
        reason_string: ByteString as Str = 0x1F,
    }
}

properties! {
    /// Properties of SUBSCRIBE (§3.8.2.1).
    SubscribeProperties {
        /// Subscription Identifier (0x0B), 1 to 268,435,455.
        subscription_identifier: u32 as SubscriptionId = 0x0B,
    }
}

properties! {
    /// Properties of UNSUBSCRIBE (§3.10.2.1): user properties only.
    UnsubscribeProperties {}
}

properties! {
    /// Properties of DISCONNECT (§3.14.2.2).
    DisconnectProperties {
        /// Session Expiry Interval (0x11); a client may not raise it from 0 (MQTT-3.14.2-2).
        session_expiry_interval: u32 as U32 = 0x11,
        /// Reason String (0x1F).
        reason_string: ByteString as Str = 0x1F,
        /// Server Reference (0x1C).
        server_reference: ByteString as Str = 0x1C,
    }
}

properties! {
    /// Properties of AUTH (§3.15.2.2).
    AuthProperties {
        /// Authentication Method (0x15).
        authentication_method: ByteString as Str = 0x15,
        /// Authentication Data (0x16).
        authentication_data: Bytes as Bin = 0x16,
        /// Reason String (0x1F).
        reason_string: ByteString as Str = 0x1F,
    }
}
