//! Decoding arbitrary bytes never panics, from the first byte of a connection or after a valid
//! CONNECT; and whatever does decode encodes back to a packet that decodes to itself.

mod common;

use musqratt_proto::ProtocolVersion;
use musqratt_proto::bytes::{Bytes, BytesMut};
use musqratt_proto::mqtt::{Decoder, Packet};
use quickcheck::{Arbitrary, Gen, QuickCheck};

const TESTS: u64 = 3000;

/// Whatever decoded from untrusted bytes is a packet the encoder can write, and that encoding
/// decodes to the same packet.
fn check_reencodes(v: ProtocolVersion, packet: &Packet) {
    let v = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => v,
    };
    let bytes = common::encode(v, packet);
    assert_eq!(packet.encoded_len(v), Ok(bytes.len()));
    let again = common::decode(v, &bytes).expect("re-encoded packet decodes");
    assert_eq!(again.as_ref(), Some(packet), "{}", common::hex(&bytes));
}

/// Feeds `bytes` to `decoder` until it wants more or fails.
fn drain(mut decoder: Decoder, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a packet consumes bytes");
                check_reencodes(decoder.version().expect("known after a packet"), &packet);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

#[test]
fn arbitrary_bytes_into_a_server_decoder() {
    fn prop(bytes: Vec<u8>, max: u16) -> bool {
        drain(Decoder::new(u32::from(max)), &bytes);
        drain(Decoder::new(u32::MAX), &bytes);
        true
    }
    QuickCheck::new().tests(TESTS).quickcheck(prop as fn(Vec<u8>, u16) -> bool);
}

#[test]
fn arbitrary_bytes_into_a_client_decoder_of_each_version() {
    fn prop(bytes: Vec<u8>) -> bool {
        for v in common::VERSIONS {
            drain(Decoder::with_version(v, u32::MAX), &bytes);
        }
        true
    }
    QuickCheck::new().tests(TESTS).quickcheck(prop as fn(Vec<u8>) -> bool);
}

#[test]
fn arbitrary_bodies_into_packet_decode() {
    fn prop(header: u8, body: Vec<u8>) -> bool {
        for v in common::VERSIONS {
            if let Ok(packet) = Packet::decode(v, header, Bytes::from(body.clone())) {
                check_reencodes(v, &packet);
            }
        }
        true
    }
    QuickCheck::new().tests(TESTS).quickcheck(prop as fn(u8, Vec<u8>) -> bool);
}

/// A valid CONNECT followed by arbitrary bytes that start with a plausible fixed header.
#[derive(Debug, Clone)]
struct AfterConnect {
    connect: Vec<u8>,
    rest: Vec<u8>,
}

impl Arbitrary for AfterConnect {
    fn arbitrary(g: &mut Gen) -> Self {
        let v = *g.choose(&common::VERSIONS).expect("x");
        let connect = common::encode(v, &Packet::Connect(Box::new(common::connect(g, v))));
        let mut rest = Vec::<u8>::arbitrary(g);
        if common::coin(g) {
            // A fixed header whose Remaining Length matches what follows, so the body is parsed.
            let header = u8::arbitrary(g);
            let body_len = rest.len().min(127);
            rest.truncate(body_len);
            rest.splice(0..0, [header, body_len as u8]);
        }
        Self { connect, rest }
    }
}

#[test]
fn arbitrary_bytes_after_a_valid_connect() {
    fn prop(case: AfterConnect) -> bool {
        let mut stream = case.connect.clone();
        stream.extend_from_slice(&case.rest);
        drain(Decoder::new(u32::MAX), &stream);
        true
    }
    QuickCheck::new().tests(TESTS).quickcheck(prop as fn(AfterConnect) -> bool);
}

/// A valid packet with a few bytes overwritten, cut short or extended: mostly near-valid input,
/// which reaches deeper into the decoder than random bytes.
#[derive(Debug, Clone)]
struct Mutated {
    version: ProtocolVersion,
    bytes: Vec<u8>,
}

impl Arbitrary for Mutated {
    fn arbitrary(g: &mut Gen) -> Self {
        let common::AnyPacket(version, packet) = common::AnyPacket::arbitrary(g);
        let mut bytes = common::encode(version, &packet);
        for _ in 0..1 + common::below(g, 3) {
            match common::below(g, 4) {
                0 if bytes.len() > 1 => {
                    let cut = 1 + common::below(g, bytes.len() as u32 - 1) as usize;
                    bytes.truncate(cut);
                }
                1 => bytes.push(u8::arbitrary(g)),
                _ => {
                    let at = common::below(g, bytes.len() as u32) as usize;
                    bytes[at] = u8::arbitrary(g);
                }
            }
        }
        Self { version, bytes }
    }
}

#[test]
fn mutated_valid_packets() {
    fn prop(case: Mutated) -> bool {
        drain(Decoder::with_version(case.version, u32::MAX), &case.bytes);
        drain(Decoder::new(u32::MAX), &case.bytes);
        // The body as the original Remaining Length may no longer delimit it.
        if case.bytes.len() > 2 {
            let _ =
                Packet::decode(case.version, case.bytes[0], Bytes::from(case.bytes[2..].to_vec()));
        }
        true
    }
    QuickCheck::new().tests(TESTS).quickcheck(prop as fn(Mutated) -> bool);
}
