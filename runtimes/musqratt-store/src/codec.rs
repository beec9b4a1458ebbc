//! The bytes of a stored value, format version 1 (docs/PERSISTENCE.md). A message is kept as
//! an MQTT 5.0 PUBLISH (the specification is its format: topic, flags, every property), after
//! its expiry as wall-clock microseconds. Decoding never panics: bad bytes are a [`Corrupt`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use musqratt_engine::proto::bytestring::ByteString;
use musqratt_engine::proto::mqtt::RetainHandling;
use musqratt_engine::proto::mqtt::{Packet, Publish, SubscriptionIds, SubscriptionOptions};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{Instant, StoredMessage, StoredSession, StoredSubscription, StoredWill};

/// A stored value that does not decode: which part, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {0}")]
pub struct Corrupt(pub &'static str);

/// Engine time to and from the wall clock: a message's expiry must mean the same instant after
/// a restart, when the engine's epoch is another (§3.3.2.3.3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeBase {
    /// Microseconds since the Unix epoch at the engine's `Instant::ZERO`.
    pub(crate) epoch_unix_micros: u64,
}

impl TimeBase {
    fn to_wall(self, at: Instant) -> u64 {
        self.epoch_unix_micros.saturating_add(at.as_micros()).max(1)
    }

    /// A wall-clock time before the epoch is the epoch: already expired at any `now`.
    fn to_engine(self, wall: u64) -> Instant {
        Instant::from_micros(wall.saturating_sub(self.epoch_unix_micros))
    }
}

pub(crate) fn encode_message(time: TimeBase, message: &StoredMessage, out: &mut BytesMut) {
    out.put_u64(message.expires_at().map_or(0, |at| time.to_wall(at)));
    let mut publish = Publish::new(message.topic().clone(), message.payload().clone());
    publish.qos = message.qos();
    publish.retain = message.retain();
    publish.packet_id = (message.qos() != QoS::AtMostOnce).then_some(PacketId::MIN);
    publish.properties = message.properties();
    // A message the engine accepted fits MQTT 5.0's limits; one that does not is stored
    // without its bytes and found corrupt at load rather than failing the whole batch.
    let _ = Packet::Publish(publish).encode(ProtocolVersion::V5, out);
}

pub(crate) fn decode_message(time: TimeBase, mut value: &[u8]) -> Result<StoredMessage, Corrupt> {
    if value.len() < 10 {
        return Err(Corrupt("message"));
    }
    let expires = value.get_u64();
    let header = value.get_u8();
    let mut length: usize = 0;
    for shift in 0..4 {
        let byte = *value.first().ok_or(Corrupt("message length"))?;
        value.advance(1);
        length |= usize::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            break;
        }
    }
    if value.len() != length {
        return Err(Corrupt("message length"));
    }
    let body = Bytes::copy_from_slice(value);
    let Ok(Packet::Publish(publish)) = Packet::decode(ProtocolVersion::V5, header, body) else {
        return Err(Corrupt("message PUBLISH"));
    };
    let expires_at = (expires != 0).then(|| time.to_engine(expires));
    Ok(StoredMessage::new(
        publish.topic,
        publish.payload,
        publish.qos,
        publish.retain,
        publish.properties,
        expires_at,
    ))
}

/// A will: its delay, when it is due (wall-clock microseconds; 0: its client was connected),
/// its Message Expiry Interval (a flag byte, then the seconds), then the message.
pub(crate) fn encode_will(time: TimeBase, will: &StoredWill, out: &mut BytesMut) {
    out.put_u32(will.delay);
    out.put_u64(will.due_at.map_or(0, |at| time.to_wall(at)));
    out.put_u8(u8::from(will.expiry_interval.is_some()));
    out.put_u32(will.expiry_interval.unwrap_or(0));
    encode_message(time, &will.message, out);
}

pub(crate) fn decode_will(
    time: TimeBase,
    client_id: ByteString,
    mut value: &[u8],
) -> Result<StoredWill, Corrupt> {
    if value.len() < 17 {
        return Err(Corrupt("will"));
    }
    let delay = value.get_u32();
    let due = value.get_u64();
    let has_expiry = value.get_u8();
    let expiry = value.get_u32();
    let expiry_interval = match has_expiry {
        0 => None,
        1 => Some(expiry),
        _ => return Err(Corrupt("will expiry")),
    };
    let message = decode_message(time, value)?;
    let due_at = (due != 0).then(|| time.to_engine(due));
    Ok(StoredWill::new(client_id, message, expiry_interval, delay, due_at))
}

fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos.bits()
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

fn options_from(byte: u8) -> Result<SubscriptionOptions, Corrupt> {
    let mut options =
        SubscriptionOptions::with_qos(QoS::from_bits(byte & 3).ok_or(Corrupt("options"))?);
    options.no_local = byte & 4 != 0;
    options.retain_as_published = byte & 8 != 0;
    options.retain_handling = match byte >> 4 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(Corrupt("options")),
    };
    Ok(options)
}

/// A session: its expiry interval, its subscriptions, then when it expires (wall-clock
/// microseconds; 0: connected when stored, or never expiring).
pub(crate) fn encode_session(time: TimeBase, session: &StoredSession, out: &mut BytesMut) {
    let (expiry, subs) = (session.expiry_interval, &session.subscriptions);
    out.put_u32(expiry);
    out.put_u32(u32::try_from(subs.len()).unwrap_or(u32::MAX));
    for sub in subs {
        out.put_u16(u16::try_from(sub.filter.len()).unwrap_or(u16::MAX));
        out.put_slice(sub.filter.as_bytes());
        out.put_u8(options_byte(sub.options));
        out.put_u32(sub.id.unwrap_or(0));
    }
    out.put_u64(session.expires_at.map_or(0, |at| time.to_wall(at)));
}

/// The session record of `client_id`. One written before the expiry was stored (no last 8
/// bytes) is taken as connected when stored.
pub(crate) fn decode_session(
    time: TimeBase,
    client_id: ByteString,
    mut value: &[u8],
) -> Result<StoredSession, Corrupt> {
    let short = Corrupt("session");
    if value.len() < 8 {
        return Err(short);
    }
    let expiry = value.get_u32();
    let count = value.get_u32();
    let mut subs = Vec::new();
    for _ in 0..count {
        if value.len() < 2 {
            return Err(short);
        }
        let len = usize::from(value.get_u16());
        if value.len() < len + 5 {
            return Err(short);
        }
        let filter = core::str::from_utf8(&value[..len]).map_err(|_| Corrupt("filter"))?;
        let filter = filter.into();
        value.advance(len);
        let options = options_from(value.get_u8())?;
        let id = Some(value.get_u32()).filter(|id| *id != 0);
        subs.push(StoredSubscription::new(filter, options, id));
    }
    let expires_at = match value.len() {
        0 => None,
        8 => Some(value.get_u64()).filter(|wall| *wall != 0).map(|wall| time.to_engine(wall)),
        _ => return Err(short),
    };
    if expiry == 0 {
        return Err(Corrupt("session expiry interval 0"));
    }
    Ok(StoredSession::new(client_id, expiry, subs).expiring_at(expires_at))
}

/// A queued delivery: QoS, RETAIN, Subscription Identifiers, then the message.
pub(crate) fn encode_delivery(
    time: TimeBase,
    qos: QoS,
    retain: bool,
    ids: &[u32],
    message: &StoredMessage,
    out: &mut BytesMut,
) {
    out.put_u8(qos.bits());
    out.put_u8(u8::from(retain));
    let ids = &ids[..ids.len().min(255)];
    out.put_u8(u8::try_from(ids.len()).unwrap_or(u8::MAX));
    for id in ids {
        out.put_u32(*id);
    }
    encode_message(time, message, out);
}

pub(crate) type Delivery = (QoS, bool, SubscriptionIds, StoredMessage);

pub(crate) fn decode_delivery(time: TimeBase, mut value: &[u8]) -> Result<Delivery, Corrupt> {
    if value.len() < 3 {
        return Err(Corrupt("delivery"));
    }
    let qos = QoS::from_bits(value.get_u8()).ok_or(Corrupt("delivery QoS"))?;
    let retain = value.get_u8() != 0;
    let count = usize::from(value.get_u8());
    if value.len() < count * 4 {
        return Err(Corrupt("delivery"));
    }
    let ids = (0..count).map(|_| value.get_u32()).collect();
    Ok((qos, retain, ids, decode_message(time, value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: TimeBase = TimeBase { epoch_unix_micros: 1_700_000_000_000_000 };

    #[test]
    fn a_message_round_trips_with_its_expiry() {
        let mut properties = musqratt_engine::proto::mqtt::PublishProperties::default();
        properties.content_type = Some("text/plain".into());
        let message = StoredMessage::new(
            "a/b".into(),
            Bytes::from_static(b"hello"),
            QoS::AtLeastOnce,
            true,
            properties,
            Some(Instant::from_micros(5_000_000)),
        );
        let mut out = BytesMut::new();
        encode_message(TIME, &message, &mut out);
        assert_eq!(decode_message(TIME, &out), Ok(message.clone()));
        // One second later, the same wall-clock expiry is one second nearer.
        let later = TimeBase { epoch_unix_micros: TIME.epoch_unix_micros + 1_000_000 };
        let back = decode_message(later, &out).unwrap();
        assert_eq!(back.expires_at(), Some(Instant::from_micros(4_000_000)));
    }

    /// §3.1.2.11.2: a disconnected session's expiry is an instant on the wall clock, so after
    /// a restart (another epoch) it is as near as the time passed says.
    #[test]
    fn a_session_round_trips_with_its_expiry() {
        let sub = StoredSubscription::new("a/+".into(), SubscriptionOptions::default(), None);
        let session = StoredSession::new("client".into(), 3600, vec![sub])
            .expiring_at(Some(Instant::from_micros(10_000_000)));
        let mut out = BytesMut::new();
        encode_session(TIME, &session, &mut out);
        assert_eq!(decode_session(TIME, "client".into(), &out), Ok(session.clone()));
        let later = TimeBase { epoch_unix_micros: TIME.epoch_unix_micros + 4_000_000 };
        let back = decode_session(later, "client".into(), &out).unwrap();
        assert_eq!(back.expires_at, Some(Instant::from_micros(6_000_000)));
        // Connected when stored: no expiry instant.
        let mut out = BytesMut::new();
        encode_session(TIME, &session.clone().expiring_at(None), &mut out);
        assert_eq!(decode_session(later, "client".into(), &out).unwrap().expires_at, None);
    }

    #[test]
    fn bad_bytes_are_corrupt_not_a_panic() {
        let mut out = BytesMut::new();
        let sub = StoredSubscription::new("x/#".into(), SubscriptionOptions::default(), Some(3));
        let session = StoredSession::new("c".into(), 60, vec![sub])
            .expiring_at(Some(Instant::from_micros(1)));
        encode_session(TIME, &session, &mut out);
        assert!(decode_session(TIME, "c".into(), &out).is_ok());
        for cut in 0..out.len() {
            // Without its last 8 bytes it is a record written before expiries were stored.
            let decoded = decode_session(TIME, "c".into(), &out[..cut]);
            assert_eq!(decoded.is_ok(), cut == out.len() - 8, "cut at {cut}");
        }
        let message = StoredMessage::new(
            "t".into(),
            Bytes::from_static(b"p"),
            QoS::AtMostOnce,
            false,
            Default::default(),
            None,
        );
        let mut out = BytesMut::new();
        encode_delivery(TIME, QoS::AtLeastOnce, false, &[1, 2], &message, &mut out);
        assert!(decode_delivery(TIME, &out).is_ok());
        for cut in 0..out.len() {
            assert!(decode_delivery(TIME, &out[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_delivery(TIME, &[9, 0, 0, 0]).is_err());
    }
}
