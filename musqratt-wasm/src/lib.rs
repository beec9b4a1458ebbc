//! The dashboard page's MQTT client codec: `musqratt-proto` built for `wasm32-unknown-unknown`
//! (docs/adr/0020-dashboard-wasm.md). The browser's WebSocket moves the bytes and a page script
//! of about a hundred lines keeps the session; every MQTT packet the page sends is encoded, and
//! every packet it receives decoded, by the broker's own codec.
//!
//! The interface is plain exported functions of numbers, no bindings generator: the page
//! writes its arguments (a client id, a topic and payload, received bytes) into this module's
//! input buffer ([`input`] gives its address), calls a function, and reads the result from the
//! output buffer ([`output`]). Both buffers are `Vec`s this module owns: Rust code only ever
//! reads and writes them as slices, so there is no `unsafe` block here; the exports' unmangled
//! names are the only reason for the `unsafe_code` allowance.
//!
//! MQTT 5.0 only: the page is a new client and has no reason to speak an older version.
#![allow(unsafe_code)] // `#[unsafe(no_mangle)]` on the exports; no `unsafe` block.

use core::cell::RefCell;

use bytes::{Bytes, BytesMut};
use musqratt_proto::mqtt::{
    Connect, Decoder, Packet, PubResponse, Publish, Subscribe, SubscriptionOptions,
};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};

/// The largest packet the page accepts from the broker (the dashboard shows messages; a
/// broker sending more is refused, not buffered).
const MAX_PACKET: u32 = 1 << 20;

/// What the page receives, as [`next`] returns it.
const NEED_MORE: i32 = 0;
const ERROR: i32 = -1;

struct State {
    input: Vec<u8>,
    output: Vec<u8>,
    stream: BytesMut,
    decoder: Decoder,
    /// Of the last packet [`next`] returned: packet id, QoS, retain, reason code, topic length.
    last: (u16, u8, bool, u8, usize),
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        input: Vec::new(),
        output: Vec::new(),
        stream: BytesMut::new(),
        decoder: Decoder::with_version(ProtocolVersion::V5, MAX_PACKET),
        last: (0, 0, false, 0, 0),
    });
}

/// Makes the input buffer `len` bytes long and returns its address in the module's memory,
/// where the page writes the arguments of its next call.
#[unsafe(no_mangle)]
pub extern "C" fn input(len: u32) -> u32 {
    STATE.with_borrow_mut(|s| {
        s.input.resize(len as usize, 0);
        s.input.as_mut_ptr() as usize as u32
    })
}

/// The address of the output buffer, where the last call put its bytes.
#[unsafe(no_mangle)]
pub extern "C" fn output() -> u32 {
    STATE.with_borrow_mut(|s| s.output.as_mut_ptr() as usize as u32)
}

/// Encodes `packet` into the output buffer; its length, or -1 if it cannot be encoded.
fn encode(packet: &Packet) -> i32 {
    STATE.with_borrow_mut(|s| {
        let mut buf = BytesMut::new();
        match packet.encode(ProtocolVersion::V5, &mut buf) {
            Ok(()) => {
                s.output.clear();
                s.output.extend_from_slice(&buf);
                i32::try_from(buf.len()).unwrap_or(ERROR)
            }
            Err(_) => ERROR,
        }
    })
}

/// The input buffer's bytes `from..from + len` as text (lossy: the page sends UTF-8).
fn text(from: usize, len: usize) -> String {
    STATE.with_borrow(|s| {
        let end = (from + len).min(s.input.len());
        String::from_utf8_lossy(&s.input[from.min(end)..end]).into_owned()
    })
}

fn qos(level: u32) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// CONNECT with the client id in the input buffer (its first `id_len` bytes), Clean Start and
/// this Keep Alive; returns the packet's length in the output buffer.
#[unsafe(no_mangle)]
pub extern "C" fn connect(id_len: u32, keep_alive: u32) -> i32 {
    let mut connect = Connect::new(ProtocolVersion::V5, text(0, id_len as usize));
    connect.keep_alive = u16::try_from(keep_alive).unwrap_or(u16::MAX);
    encode(&Packet::Connect(Box::new(connect)))
}

/// PUBLISH: the input buffer holds the topic (`topic_len` bytes) then the payload
/// (`payload_len`). `packet_id` is used at QoS 1 and 2 (and must then be non-zero).
#[unsafe(no_mangle)]
pub extern "C" fn publish(
    topic_len: u32,
    payload_len: u32,
    level: u32,
    packet_id: u32,
    retain: u32,
) -> i32 {
    let topic = text(0, topic_len as usize);
    let payload = STATE.with_borrow(|s| {
        let start = (topic_len as usize).min(s.input.len());
        let end = (start + payload_len as usize).min(s.input.len());
        Bytes::copy_from_slice(&s.input[start..end])
    });
    let mut publish = Publish::new(topic.into(), payload);
    publish.qos = qos(level);
    publish.retain = retain != 0;
    if publish.qos != QoS::AtMostOnce {
        let Some(id) = u16::try_from(packet_id).ok().and_then(PacketId::new) else {
            return ERROR;
        };
        publish.packet_id = Some(id);
    }
    encode(&Packet::Publish(publish))
}

/// SUBSCRIBE to the filter in the input buffer (`filter_len` bytes) at this maximum QoS.
#[unsafe(no_mangle)]
pub extern "C" fn subscribe(filter_len: u32, level: u32, packet_id: u32) -> i32 {
    let Some(packet_id) = u16::try_from(packet_id).ok().and_then(PacketId::new) else {
        return ERROR;
    };
    let filter = text(0, filter_len as usize);
    let subscribe = Subscribe {
        packet_id,
        filters: vec![(filter.into(), SubscriptionOptions::with_qos(qos(level)))],
        properties: Default::default(),
    };
    encode(&Packet::Subscribe(subscribe))
}

/// PUBACK of a QoS 1 message received.
#[unsafe(no_mangle)]
pub extern "C" fn puback(packet_id: u32) -> i32 {
    match u16::try_from(packet_id).ok().and_then(PacketId::new) {
        Some(id) => encode(&Packet::PubAck(PubResponse::new(id))),
        None => ERROR,
    }
}

/// PINGREQ, to keep the connection alive.
#[unsafe(no_mangle)]
pub extern "C" fn pingreq() -> i32 {
    encode(&Packet::PingReq)
}

/// Appends the input buffer's first `len` bytes (what the WebSocket delivered) to the stream
/// [`next`] decodes.
#[unsafe(no_mangle)]
pub extern "C" fn feed(len: u32) {
    STATE.with_borrow_mut(|s| {
        let len = (len as usize).min(s.input.len());
        let State { input, stream, .. } = s;
        stream.extend_from_slice(&input[..len]);
    });
}

/// Decodes the next packet of the stream: its type (MQTT's packet type number, 1 to 15),
/// 0 when more bytes are needed, -1 when the stream is broken (close the connection). A
/// PUBLISH leaves its topic then its payload in the output buffer ([`topic_len`],
/// [`output_len`]) and its fields in [`packet_id`], [`qos_of`], [`retained`]; CONNACK and
/// SUBACK their (first) reason code in [`reason`].
#[unsafe(no_mangle)]
pub extern "C" fn next() -> i32 {
    STATE.with_borrow_mut(|s| {
        let packet = match s.decoder.decode(&mut s.stream) {
            Ok(Some(packet)) => packet,
            Ok(None) => return NEED_MORE,
            Err(_) => return ERROR,
        };
        s.output.clear();
        s.last = (0, 0, false, 0, 0);
        match &packet {
            Packet::Publish(p) => {
                s.output.extend_from_slice(p.topic.as_bytes());
                s.output.extend_from_slice(&p.payload);
                let id = p.packet_id.map_or(0, PacketId::get);
                s.last = (id, p.qos as u8, p.retain, 0, p.topic.len());
            }
            Packet::ConnAck(c) => s.last.3 = c.reason_code.0,
            Packet::SubAck(a) => {
                s.last.0 = a.packet_id.get();
                s.last.3 = a.reason_codes.first().map_or(0x80, |c| c.0);
            }
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubComp(r) => {
                s.last.0 = r.packet_id.get();
                s.last.3 = r.reason_code.0;
            }
            _ => {}
        }
        i32::from(packet.packet_type() as u8)
    })
}

/// The length of what the last call left in the output buffer.
#[unsafe(no_mangle)]
pub extern "C" fn output_len() -> u32 {
    STATE.with_borrow(|s| u32::try_from(s.output.len()).unwrap_or(0))
}

/// The last PUBLISH's topic length (the payload follows it in the output buffer).
#[unsafe(no_mangle)]
pub extern "C" fn topic_len() -> u32 {
    STATE.with_borrow(|s| u32::try_from(s.last.4).unwrap_or(0))
}

/// The last packet's packet identifier (0: none).
#[unsafe(no_mangle)]
pub extern "C" fn packet_id() -> u32 {
    STATE.with_borrow(|s| u32::from(s.last.0))
}

/// The last PUBLISH's QoS.
#[unsafe(no_mangle)]
pub extern "C" fn qos_of() -> u32 {
    STATE.with_borrow(|s| u32::from(s.last.1))
}

/// Whether the last PUBLISH had RETAIN set (a retained message sent on subscribe).
#[unsafe(no_mangle)]
pub extern "C" fn retained() -> u32 {
    STATE.with_borrow(|s| u32::from(s.last.2))
}

/// The last CONNACK's, SUBACK's (first) or acknowledgement's reason code.
#[unsafe(no_mangle)]
pub extern "C" fn reason() -> u32 {
    STATE.with_borrow(|s| u32::from(s.last.3))
}

/// Forgets a broken or closed connection's bytes, for the next connection.
#[unsafe(no_mangle)]
pub extern "C" fn reset() {
    STATE.with_borrow_mut(|s| {
        s.stream.clear();
        s.decoder = Decoder::with_version(ProtocolVersion::V5, MAX_PACKET);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(bytes: &[u8]) {
        input(bytes.len() as u32);
        STATE.with_borrow_mut(|s| s.input.copy_from_slice(bytes));
    }

    fn out() -> Vec<u8> {
        STATE.with_borrow(|s| s.output.clone())
    }

    /// What the page sends, decoded by the broker's decoder; what the broker sends, decoded
    /// here: a round trip through the same codec the exports wrap.
    #[test]
    fn encodes_what_a_server_decodes_and_decodes_what_it_sends() {
        put(b"dash");
        let len = connect(4, 30);
        assert!(len > 0);
        let mut server = Decoder::new(MAX_PACKET);
        let mut wire = BytesMut::from(&out()[..]);
        let Some(Packet::Connect(c)) = server.decode(&mut wire).unwrap() else { panic!() };
        assert_eq!((&*c.client_id, c.keep_alive, c.protocol), ("dash", 30, ProtocolVersion::V5));

        put(b"a/bhello");
        assert!(publish(3, 5, 1, 7, 1) > 0);
        let mut wire = BytesMut::from(&out()[..]);
        let Some(Packet::Publish(p)) = server.decode(&mut wire).unwrap() else { panic!() };
        assert_eq!((&*p.topic, &p.payload[..], p.retain), ("a/b", &b"hello"[..], true));
        assert_eq!(publish(3, 5, 1, 0, 0), ERROR, "QoS 1 needs a packet id");

        // The broker's PUBLISH, split across two WebSocket messages.
        let mut sent = BytesMut::new();
        let mut publish = Publish::new("t/x".into(), Bytes::from_static(b"payload"));
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = PacketId::new(9);
        Packet::Publish(publish).encode(ProtocolVersion::V5, &mut sent).unwrap();
        put(&sent[..4]);
        feed(4);
        assert_eq!(next(), NEED_MORE);
        put(&sent[4..]);
        feed((sent.len() - 4) as u32);
        assert_eq!(next(), 3);
        assert_eq!((topic_len(), packet_id(), qos_of(), retained()), (3, 9, 1, 0));
        assert_eq!(out(), b"t/xpayload");
        assert_eq!(next(), NEED_MORE);

        // Garbage breaks the stream.
        put(&[0x00, 0x00]); // packet type 0 is reserved
        feed(2);
        assert_eq!(next(), ERROR);
        reset();
        assert_eq!(next(), NEED_MORE);
    }
}
