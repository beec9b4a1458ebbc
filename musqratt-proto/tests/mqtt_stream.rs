//! Incremental decoding: a stream of many packets split at every possible boundary, fed byte by
//! byte or in arbitrary chunks, decodes to the same packets as the whole stream, with `Ok(None)`
//! until each packet is complete.

mod common;

use musqratt_proto::ProtocolVersion;
use musqratt_proto::bytes::BytesMut;
use musqratt_proto::mqtt::{Decoder, Packet, Publish};
use quickcheck::{Arbitrary, Gen, QuickCheck};

/// A connection's bytes: the packets, where each one ends in the stream, and the stream.
struct Stream {
    version: ProtocolVersion,
    packets: Vec<Packet>,
    ends: Vec<usize>,
    bytes: Vec<u8>,
    /// Whether the stream starts with the CONNECT, for a server's decoder.
    server: bool,
}

impl Stream {
    fn new(version: ProtocolVersion, packets: Vec<Packet>) -> Self {
        let server = matches!(packets.first(), Some(Packet::Connect(_)));
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for packet in &packets {
            bytes.extend_from_slice(&common::encode(version, packet));
            ends.push(bytes.len());
        }
        Self { version, packets, ends, bytes, server }
    }

    fn decoder(&self) -> Decoder {
        if self.server {
            Decoder::new(1 << 24)
        } else {
            Decoder::with_version(self.version, 1 << 24)
        }
    }
}

/// Every packet type of `v` once or more (sizes kept small), after a CONNECT of that version when
/// `server`.
fn varied_stream(v: ProtocolVersion, seed: u64, server: bool) -> Stream {
    let mut g = Gen::from_size_and_seed(30, seed);
    let mut packets = Vec::new();
    if server {
        packets.push(Packet::Connect(Box::new(common::connect(&mut g, v))));
    }
    let kinds = if v.is_v5() { &common::KINDS[1..] } else { &common::KINDS[1..14] };
    for round in 0..3 {
        for &kind in kinds {
            let packet = loop {
                let packet = common::packet(&mut g, v, kind);
                if common::encode(v, &packet).len() <= 200 {
                    break packet;
                }
            };
            packets.push(packet);
        }
        // A PUBLISH with a two-byte Remaining Length in each round.
        let payload = vec![round as u8; 300 + round];
        packets.push(Packet::Publish(Publish::new("big/one".into(), payload.into())));
    }
    Stream::new(v, packets)
}

fn streams() -> Vec<Stream> {
    let mut all = Vec::new();
    for (i, v) in common::VERSIONS.into_iter().enumerate() {
        all.push(varied_stream(v, 7 + i as u64, true));
        all.push(varied_stream(v, 70 + i as u64, false));
    }
    all
}

/// Decodes every whole packet in `buf`.
fn drain(decoder: &mut Decoder, buf: &mut BytesMut, out: &mut Vec<Packet>) {
    while let Some(packet) = decoder.decode(buf).expect("a valid stream decodes") {
        out.push(packet);
    }
}

#[test]
fn whole_stream_decodes_to_its_packets() {
    for stream in streams() {
        let mut decoder = stream.decoder();
        let mut buf = BytesMut::from(&stream.bytes[..]);
        let mut out = Vec::new();
        drain(&mut decoder, &mut buf, &mut out);
        assert!(buf.is_empty());
        assert_eq!(out, stream.packets);
        assert_eq!(decoder.version(), Some(stream.version));
    }
}

#[test]
fn stream_split_at_every_boundary() {
    for stream in streams() {
        for split in 0..=stream.bytes.len() {
            let mut decoder = stream.decoder();
            let mut buf = BytesMut::from(&stream.bytes[..split]);
            let mut out = Vec::new();
            drain(&mut decoder, &mut buf, &mut out);
            // Exactly the packets that end within the prefix are out.
            let complete = stream.ends.iter().take_while(|&&end| end <= split).count();
            assert_eq!(out.len(), complete, "{} split at {split}", stream.version);
            buf.extend_from_slice(&stream.bytes[split..]);
            drain(&mut decoder, &mut buf, &mut out);
            assert!(buf.is_empty());
            assert_eq!(out, stream.packets, "{} split at {split}", stream.version);
        }
    }
}

#[test]
fn stream_byte_by_byte() {
    for stream in streams() {
        let mut decoder = stream.decoder();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut next_end = stream.ends.iter().peekable();
        for (i, &byte) in stream.bytes.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let decoded = decoder.decode(&mut buf).expect("a valid stream decodes");
            if next_end.next_if_eq(&&(i + 1)).is_some() {
                let packet = decoded.expect("a packet ends at this byte");
                assert_eq!(packet, stream.packets[out.len()]);
                out.push(packet);
                assert!(buf.is_empty(), "the packet takes exactly its bytes");
            } else {
                assert_eq!(decoded, None, "{}: no packet ends at byte {i}", stream.version);
            }
            // Asking again changes nothing.
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
        assert_eq!(out, stream.packets);
    }
}

/// The version a server's decoder learns from CONNECT applies to the packets after it: the same
/// bytes are a valid 3.1.1 PUBACK and an invalid 5.0 one.
#[test]
fn version_comes_from_connect() {
    let connect = |v| {
        let mut g = Gen::from_size_and_seed(10, 1);
        Packet::Connect(Box::new(common::connect(&mut g, v)))
    };
    // PUBACK with a reason byte 0x92, not allowed in 5.0 and trailing in 3.1.1.
    let puback = [0x40, 0x03, 0x00, 0x01, 0x92];
    for (v, expected) in [
        (ProtocolVersion::V3_1_1, musqratt_proto::DecodeError::TrailingBytes),
        (ProtocolVersion::V5, musqratt_proto::DecodeError::InvalidReasonCode(0x92)),
    ] {
        let mut buf = BytesMut::from(&common::encode(v, &connect(v))[..]);
        buf.extend_from_slice(&puback);
        let mut decoder = Decoder::new(1024);
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
        assert_eq!(decoder.version(), Some(v));
        assert_eq!(decoder.decode(&mut buf), Err(expected));
    }
}

/// Packets of one version, sent as chunks of arbitrary sizes.
#[derive(Debug, Clone)]
struct Chunked {
    version: ProtocolVersion,
    packets: Vec<Packet>,
    chunks: Vec<usize>,
}

impl Arbitrary for Chunked {
    fn arbitrary(g: &mut Gen) -> Self {
        let version = *g.choose(&common::VERSIONS).expect("x");
        let mut packets = vec![Packet::Connect(Box::new(common::connect(g, version)))];
        for _ in 0..common::below(g, 12) {
            packets.push(common::any_after_connect(g, version));
        }
        let chunks = (0..common::below(g, 40)).map(|_| 1 + common::below(g, 64) as usize).collect();
        Self { version, packets, chunks }
    }
}

#[test]
fn arbitrary_chunks_decode_to_the_same_packets() {
    fn prop(c: Chunked) -> bool {
        let stream = Stream::new(c.version, c.packets);
        let mut decoder = stream.decoder();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = &stream.bytes[..];
        for chunk in c.chunks.iter().copied().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(chunk.min(rest.len()));
            buf.extend_from_slice(now);
            rest = later;
            drain(&mut decoder, &mut buf, &mut out);
            let sent = stream.bytes.len() - rest.len();
            assert_eq!(out.len(), stream.ends.iter().take_while(|&&end| end <= sent).count());
        }
        buf.extend_from_slice(rest);
        drain(&mut decoder, &mut buf, &mut out);
        out == stream.packets && buf.is_empty()
    }
    QuickCheck::new().tests(300).quickcheck(prop as fn(Chunked) -> bool);
}

/// A PUBLISH's payload is a slice of the read buffer, not a copy.
#[test]
fn decoded_payload_shares_the_read_buffer() {
    let publish = Publish::new("t".into(), vec![7u8; 64].into());
    let bytes = common::encode(ProtocolVersion::V3_1_1, &Packet::Publish(publish));
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let mut decoder = Decoder::with_version(ProtocolVersion::V3_1_1, 1024);
    let Some(Packet::Publish(decoded)) = decoder.decode(&mut buf).expect("decodes") else {
        panic!("not a PUBLISH");
    };
    let payload = decoded.payload.as_ptr() as usize;
    assert!(payload > start && payload < start + bytes.len(), "payload points into the buffer");
}

/// `decode_frame` gives each packet with exactly its bytes as received, fixed header included,
/// and the same packets as `decode`, for server and client decoders of every version.
#[test]
fn decode_frame_gives_each_packet_with_its_bytes() {
    for stream in streams() {
        let mut decoder = stream.decoder();
        let mut buf = BytesMut::from(&stream.bytes[..]);
        let mut start = 0;
        for (packet, &end) in stream.packets.iter().zip(&stream.ends) {
            let (decoded, frame) =
                decoder.decode_frame(&mut buf).expect("valid").expect("a whole packet");
            assert_eq!(&decoded, packet);
            assert_eq!(&frame[..], &stream.bytes[start..end], "{:?}", packet.packet_type());
            start = end;
        }
        assert_eq!(decoder.decode_frame(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
}
