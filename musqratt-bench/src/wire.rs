//! The few MQTT 3.1.1 packets the load generator sends, encoded by hand into reused buffers (no
//! allocation per message), and the payload layout every scenario shares. Incoming packets are
//! decoded with `musqratt-proto`'s [`Decoder`]. The connections that carry them, over every
//! transport, are in `transport.rs`.

use bytes::{BufMut, BytesMut};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::Decoder;

/// Bytes at the start of every payload: sequence number (u64 LE), send time in nanoseconds since
/// the run's start (u64 LE), publisher index (u32 LE). The rest is padding.
pub(crate) const HEADER_LEN: usize = 20;

/// Keep alive of the scenario connections, seconds: long, not 0 (rumqttd refuses 0).
pub(crate) const KEEP_ALIVE: u16 = 600;

/// PUBACK, PUBREC, PUBREL and PUBCOMP first bytes.
pub(crate) const PUBACK: u8 = 0x40;
pub(crate) const PUBREC: u8 = 0x50;
pub(crate) const PUBREL: u8 = 0x62;
pub(crate) const PUBCOMP: u8 = 0x70;

/// The decoder for what a 3.1.1 client receives.
pub(crate) fn decoder() -> Decoder {
    Decoder::with_version(ProtocolVersion::V3_1_1, 1 << 24)
}

fn put_varint(buf: &mut BytesMut, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if n == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

/// Who the bench's clients log in as: the broker URL's `user:password@` (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl Login {
    /// The credentials of `mqtt://user:password@host:port` (percent-decoding is not done:
    /// bench credentials are plain).
    pub(crate) fn from_url(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        let Some((userinfo, _)) = authority.rsplit_once('@') else { return Self::default() };
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password.to_owned())),
            None => (userinfo, None),
        };
        Self { user: Some(user.to_owned()), password }
    }

    /// Client `i` of a run spread over `users` numbered users (`user0`, `user1`, ...), all
    /// with the same password; `users` 0 keeps the one user.
    pub(crate) fn numbered(&self, i: usize, users: usize) -> Self {
        match (&self.user, users) {
            (Some(user), n) if n > 0 => {
                Self { user: Some(format!("{user}{}", i % n)), ..self.clone() }
            }
            _ => self.clone(),
        }
    }
}

/// CONNECT, MQTT 3.1.1, clean session, with the login's user name and password if any.
pub(crate) fn connect(buf: &mut BytesMut, client_id: &str, keep_alive: u16, login: &Login) {
    connect_session(buf, client_id, keep_alive, login, true);
}

/// CONNECT, MQTT 3.1.1, with Clean Session as `clean` says (0: the broker keeps the session,
/// its subscriptions and its QoS 1/2 messages, while the client is away).
pub(crate) fn connect_session(
    buf: &mut BytesMut,
    client_id: &str,
    keep_alive: u16,
    login: &Login,
    clean: bool,
) {
    let user = login.user.as_deref();
    let password = login.password.as_deref().filter(|_| user.is_some());
    let extra = user.map_or(0, |u| 2 + u.len()) + password.map_or(0, |p| 2 + p.len());
    buf.put_u8(0x10);
    put_varint(buf, 10 + 2 + client_id.len() + extra);
    put_str(buf, "MQTT");
    buf.put_u8(4);
    buf.put_u8(
        u8::from(clean) << 1
            | if user.is_some() { 0x80 } else { 0 }
            | if password.is_some() { 0x40 } else { 0 },
    );
    buf.put_u16(keep_alive);
    put_str(buf, client_id);
    for field in [user, password].into_iter().flatten() {
        put_str(buf, field);
    }
}

/// SUBSCRIBE with one filter.
pub(crate) fn subscribe(buf: &mut BytesMut, packet_id: u16, filter: &str, qos: u8) {
    buf.put_u8(0x82);
    put_varint(buf, 2 + 2 + filter.len() + 1);
    buf.put_u16(packet_id);
    put_str(buf, filter);
    buf.put_u8(qos);
}

/// SUBSCRIBE (MQTT 3.1.1) with several filters, each at `qos`.
pub(crate) fn subscribe_many(buf: &mut BytesMut, packet_id: u16, filters: &[String], qos: u8) {
    buf.put_u8(0x82);
    put_varint(buf, 2 + filters.iter().map(|f| 2 + f.len() + 1).sum::<usize>());
    buf.put_u16(packet_id);
    for filter in filters {
        put_str(buf, filter);
        buf.put_u8(qos);
    }
}

/// PUBLISH whose payload is [`HEADER_LEN`] header bytes followed by zero padding up to
/// `payload_len` (at least the header).
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish(
    buf: &mut BytesMut,
    topic: &str,
    qos: u8,
    packet_id: u16,
    seq: u64,
    sent_ns: u64,
    publisher: u32,
    payload_len: usize,
) {
    let payload_len = payload_len.max(HEADER_LEN);
    buf.put_u8(0x30 | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_varint(buf, 2 + topic.len() + id_len + payload_len);
    put_str(buf, topic);
    if qos > 0 {
        buf.put_u16(packet_id);
    }
    buf.put_u64_le(seq);
    buf.put_u64_le(sent_ns);
    buf.put_u32_le(publisher);
    buf.put_bytes(0, payload_len - HEADER_LEN);
}

/// Offset of the send time in an encoded PUBLISH made by [`publish`] (for stamping just before
/// the write).
pub(crate) fn sent_ns_offset(topic: &str, qos: u8, payload_len: usize) -> usize {
    let remaining = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload_len.max(HEADER_LEN);
    let varint = match remaining {
        0..128 => 1,
        128..16_384 => 2,
        16_384..2_097_152 => 3,
        _ => 4,
    };
    1 + varint + 2 + topic.len() + if qos > 0 { 2 } else { 0 } + 8
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`kind` is the first byte).
pub(crate) fn ack(buf: &mut BytesMut, kind: u8, packet_id: u16) {
    buf.put_u8(kind);
    buf.put_u8(2);
    buf.put_u16(packet_id);
}

/// The payload header: (sequence, send time, publisher).
pub(crate) fn parse_header(payload: &[u8]) -> Option<(u64, u64, u32)> {
    let header = payload.get(..HEADER_LEN)?;
    let seq = u64::from_le_bytes(header[0..8].try_into().ok()?);
    let sent = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let publisher = u32::from_le_bytes(header[16..20].try_into().ok()?);
    Some((seq, sent, publisher))
}

/// A client id no other run of this process uses.
pub(crate) fn client_id(role: &str, index: usize) -> String {
    use core::sync::atomic::{AtomicU32, Ordering};
    static RUN: AtomicU32 = AtomicU32::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    format!("mqb-{}-{run}-{role}{index}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use musqratt_proto::mqtt::Packet;

    #[test]
    fn login_from_the_url_goes_into_connect() {
        assert_eq!(Login::from_url("mqtt://127.0.0.1:1883"), Login::default());
        let login = Login::from_url("mqtt://u:p:w@127.0.0.1:1883");
        assert_eq!((login.user.as_deref(), login.password.as_deref()), (Some("u"), Some("p:w")));
        let numbered = login.numbered(7, 5);
        assert_eq!(numbered.user.as_deref(), Some("u2"));
        let mut buf = BytesMut::new();
        connect(&mut buf, "c", 30, &numbered);
        let Some(Packet::Connect(connect)) = decoder().decode(&mut buf).unwrap() else {
            panic!("not a CONNECT");
        };
        assert_eq!(connect.username.as_deref(), Some("u2"));
        assert_eq!(connect.password.as_deref(), Some(&b"p:w"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn publish_round_trips_through_the_proto_decoder() {
        for (qos, len) in [(0, 64), (1, 20), (2, 300), (0, 20_000)] {
            let mut buf = BytesMut::new();
            publish(&mut buf, "a/b", qos, 7, 42, 99, 3, len);
            let offset = sent_ns_offset("a/b", qos, len);
            assert_eq!(&buf[offset..offset + 8], &99u64.to_le_bytes());
            let mut decoder = decoder();
            match decoder.decode(&mut buf).unwrap() {
                Some(Packet::Publish(p)) => {
                    assert_eq!(&*p.topic, "a/b");
                    assert_eq!(p.payload.len(), len);
                    assert_eq!(parse_header(&p.payload), Some((42, 99, 3)));
                    assert_eq!(p.packet_id.map(|id| id.get()), (qos > 0).then_some(7));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
