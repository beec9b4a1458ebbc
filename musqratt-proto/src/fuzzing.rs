//! The properties the fuzz targets check, shared by the libFuzzer targets in `fuzz/` and by the
//! `fuzz_corpus` test that replays the committed corpus without libFuzzer. Not a public API:
//! enabled by the `fuzzing` feature only.
//!
//! Every input is a selector byte followed by a byte stream (see [`Input`]); the committed seeds
//! follow the same layout, so one corpus serves every MQTT target.

use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::mqtt::{Decoder, Packet};
use crate::types::ProtocolVersion;

/// The Maximum Packet Size of the decoders under test, unless the selector asks for a small one.
pub const MAX_PACKET_SIZE: u32 = 1 << 20;
/// The small Maximum Packet Size that exercises [`DecodeError::PacketTooLarge`].
pub const SMALL_MAX_PACKET_SIZE: u32 = 64;

/// Which decoder reads the stream: bits 0-1 of the selector byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// 0: a server's decoder, [`Decoder::new`]: the first packet must be CONNECT, which fixes the
    /// version of the rest of the stream.
    Server,
    /// 1, 2, 3: a client's decoder, [`Decoder::with_version`] 3.1.1, 5.0 or 3.1.
    Client(ProtocolVersion),
}

/// A fuzz input taken apart: `selector` byte, then `stream`.
///
/// - bits 0-1: [`Side`];
/// - bits 2-5: chunk size for incremental decoding, 0 for the whole stream at once;
/// - bit 6: the small Maximum Packet Size ([`SMALL_MAX_PACKET_SIZE`]).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The decoder.
    pub side: Side,
    /// How many bytes are handed to the decoder at a time; 0 for all of them.
    pub chunk: usize,
    /// The decoder's Maximum Packet Size.
    pub max_packet_size: u32,
    /// The bytes to decode.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` into selector and stream; `None` when it is empty.
    #[must_use]
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&selector, stream) = data.split_first()?;
        let side = match selector & 0x03 {
            0 => Side::Server,
            1 => Side::Client(ProtocolVersion::V3_1_1),
            2 => Side::Client(ProtocolVersion::V5),
            _ => Side::Client(ProtocolVersion::V3_1),
        };
        let max_packet_size =
            if selector & 0x40 != 0 { SMALL_MAX_PACKET_SIZE } else { MAX_PACKET_SIZE };
        Some(Self { side, chunk: usize::from((selector >> 2) & 0x0F), max_packet_size, stream })
    }

    /// The selector byte that [`Input::parse`] reads as this side, chunk size 0 and the large
    /// maximum: what the seed corpus is written with.
    #[must_use]
    pub fn selector(side: Side) -> u8 {
        match side {
            Side::Server => 0,
            Side::Client(ProtocolVersion::V3_1_1) => 1,
            Side::Client(ProtocolVersion::V5) => 2,
            Side::Client(_) => 3,
        }
    }

    fn decoder(&self) -> Decoder {
        match self.side {
            Side::Server => Decoder::new(self.max_packet_size),
            Side::Client(version) => Decoder::with_version(version, self.max_packet_size),
        }
    }
}

/// What decoding a stream gave: the packets with the version they were decoded in, then the
/// error that stopped it (if any) and the bytes left over.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The packets, in order, each with the connection's version after it was decoded and the
    /// number of bytes it took.
    pub packets: Vec<(ProtocolVersion, Packet, usize)>,
    /// The error that ended the stream.
    pub error: Option<DecodeError>,
    /// Bytes not consumed (an incomplete packet), when there was no error.
    pub rest: usize,
}

fn drain(decoder: &mut Decoder, buf: &mut BytesMut, out: &mut Decoded) -> bool {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a decoded packet consumed no bytes");
                let version = decoder.version().expect("a decoded packet fixes the version");
                out.packets.push((version, packet, before - buf.len()));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return true;
            }
            Err(error) => {
                out.error = Some(error);
                return false;
            }
        }
    }
}

/// Decodes `input`'s stream as its selector says; also checks that a decoder never accepts a
/// packet over its maximum and that decoding is the same whatever the chunking.
#[must_use]
pub fn decode_stream(input: &Input<'_>) -> Decoded {
    let mut decoder = input.decoder();
    let mut out = Decoded { packets: Vec::new(), error: None, rest: 0 };
    let mut buf = BytesMut::new();
    let chunk = if input.chunk == 0 { input.stream.len().max(1) } else { input.chunk };
    for piece in input.stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        if !drain(&mut decoder, &mut buf, &mut out) {
            return out;
        }
    }
    out.rest = buf.len();
    out
}

/// The `mqtt_decode` target: decodes arbitrary bytes with the decoder the selector names, and
/// panics if the outcome depends on how the stream was chunked, or if a decoded packet cannot
/// be encoded again, encodes to another size than [`Packet::encoded_len`] says, or encodes to
/// more bytes than it was decoded from (see [`omitted_property_length`] for the one exception).
pub fn check_decode(data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    let decoded = decode_stream(&input);
    if input.chunk != 0 {
        let whole = decode_stream(&Input { chunk: 0, ..input });
        assert_eq!(decoded, whole, "chunked decoding differs from decoding at once");
    }
    let mut buf = BytesMut::new();
    for (version, packet, size) in &decoded.packets {
        buf.clear();
        let len = packet.encoded_len(*version).expect("a decoded packet has an encoded length");
        packet.encode(*version, &mut buf).expect("a decoded packet encodes");
        assert_eq!(buf.len(), len, "encoded_len disagrees with encode for {packet:?}");
        let slack = usize::from(omitted_property_length(*version, packet));
        assert!(len <= *size + slack, "{packet:?} took {size} bytes and encodes to {len}");
    }
}

/// 5.0 lets a PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT or AUTH with a reason code but no
/// properties leave out the Property Length (§3.4.2.2.1, §3.14.2.2.1, §3.15.2.2.1); the encoder
/// always writes it, so such a packet re-encodes one byte longer than it may have arrived.
#[must_use]
pub fn omitted_property_length(version: ProtocolVersion, packet: &Packet) -> bool {
    version.is_v5()
        && match packet {
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.properties.is_empty()
            }
            Packet::Disconnect(p) => p.properties.is_empty(),
            Packet::Auth(p) => p.properties.is_empty(),
            _ => false,
        }
}

/// Encodes `packet`, decodes the result with a fresh decoder of `version`, and checks that it
/// gives back the same packet, consuming every byte, and that encoding that again gives the same
/// bytes. Returns the encoding.
///
/// # Panics
/// On any difference: that is the bug the `mqtt_roundtrip` target looks for.
pub fn roundtrip_packet(version: ProtocolVersion, packet: &Packet) -> BytesMut {
    let mut first = BytesMut::new();
    packet
        .encode(version, &mut first)
        .unwrap_or_else(|e| panic!("decoded packet does not encode ({e:?}): {packet:?}"));
    // A CONNECT is read by a server's decoder, every other packet by one of the version.
    let mut decoder = match packet {
        Packet::Connect(_) => Decoder::new(u32::MAX),
        _ => Decoder::with_version(version, u32::MAX),
    };
    let mut buf = first.clone();
    let again = match decoder.decode(&mut buf) {
        Ok(Some(again)) => again,
        other => panic!("re-encoding of {packet:?} does not decode: {other:?}\n{first:02X?}"),
    };
    assert!(buf.is_empty(), "re-encoding of {packet:?} has {} trailing bytes", buf.len());
    assert_eq!(&again, packet, "decode(encode(p)) != p\n{first:02X?}");
    let mut second = BytesMut::new();
    again.encode(version, &mut second).expect("the packet encoded once");
    assert_eq!(first, second, "encoding is not stable for {packet:?}");
    first
}

/// The `mqtt_roundtrip` target: every packet decoded from the stream must survive
/// [`roundtrip_packet`].
pub fn check_roundtrip(data: &[u8]) {
    let Some(input) = Input::parse(data) else { return };
    for (version, packet, _) in decode_stream(&input).packets {
        roundtrip_packet(version, &packet);
    }
}

/// The `sn_roundtrip` target: a datagram that decodes as MQTT-SN must encode to a datagram of the
/// announced length that decodes to the same message, and encode the same way again.
pub fn check_sn_roundtrip(data: &[u8]) {
    let Ok(message) = crate::sn::decode(Bytes::copy_from_slice(data)) else { return };
    let mut first = BytesMut::new();
    crate::sn::encode(&message, &mut first).expect("a decoded MQTT-SN message encodes");
    assert_eq!(crate::sn::encoded_len(&message), Ok(first.len()), "encoded_len of {message:?}");
    let again = crate::sn::decode(first.clone().freeze()).expect("re-encoded message decodes");
    assert_eq!(again, message, "decode(encode(m)) != m\n{first:02X?}");
    let mut second = BytesMut::new();
    crate::sn::encode(&again, &mut second).expect("the message encoded once");
    assert_eq!(first, second, "encoding is not stable for {message:?}");
}
