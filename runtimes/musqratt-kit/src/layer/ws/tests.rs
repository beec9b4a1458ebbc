use bytes::{Bytes, BytesMut};
use quickcheck::{QuickCheck, TestResult};

use super::frame::{self, BINARY, CLOSE, CONTINUATION, Event, FrameReader, PING, TEXT};
use super::handshake::{self, Answer};
use super::{WsClient, WsServer, WsSettings};
use crate::layer::{LayerError, Stack, StreamLayer};

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\nOrigin: https://app.example\r\n\
    X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n\r\n";

fn server(settings: WsSettings) -> WsServer {
    WsServer::new(settings.into())
}

/// Reads `bytes` through `layer`: (up, down, result).
fn feed(layer: &mut impl StreamLayer, bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Result<(), LayerError>) {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let result = layer.read(BytesMut::from(bytes), &mut up, &mut down);
    (up.concat(), down.concat(), result)
}

fn status(response: &[u8]) -> &str {
    core::str::from_utf8(&response[9..12]).unwrap()
}

/// A client frame: final, masked with `mask`.
fn masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    frame::frame(opcode, payload, Some(mask)).to_vec()
}

fn fragment(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut bytes = masked(opcode, payload, mask);
    if !fin {
        bytes[0] &= 0x7f;
    }
    bytes
}

#[test]
fn the_accept_key_is_rfc_6455s_example() {
    // RFC 6455 §1.3: this key must be answered with this value.
    assert_eq!(handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn an_upgrade_is_answered_101_with_the_mqtt_subprotocol() {
    let mut ws = server(WsSettings::default());
    // The request in two pieces, the first frame right behind it in the second.
    let request = UPGRADE.as_bytes();
    let (up, down, result) = feed(&mut ws, &request[..40]);
    assert_eq!((up.len(), down.len(), result), (0, 0, Ok(())));
    let mut rest = request[40..].to_vec();
    rest.extend(masked(BINARY, b"\x10\x00", [1, 2, 3, 4]));
    let (up, down, result) = feed(&mut ws, &rest);
    assert_eq!(result, Ok(()));
    let response = String::from_utf8(down).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    // MQTT-6.0.0-4: the subprotocol selected is "mqtt".
    assert!(response.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{response}");
    assert_eq!(up, b"\x10\x00");
    // X-Forwarded-For is not believed unless configured.
    let mut peer = crate::layer::PeerIdentity::default();
    ws.identify(&mut peer);
    assert_eq!(peer.forwarded_for, None);
}

#[test]
fn old_clients_get_mqttv3_1_and_a_trusted_proxy_names_the_client() {
    let settings = WsSettings { trust_forwarded_for: true, ..WsSettings::default() };
    let mut ws = server(settings);
    let request = UPGRADE.replace("Protocol: mqtt", "Protocol: mqttv3.1");
    let (_, down, result) = feed(&mut ws, request.as_bytes());
    assert_eq!(result, Ok(()));
    assert!(String::from_utf8(down).unwrap().contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    let mut peer = crate::layer::PeerIdentity::default();
    ws.identify(&mut peer);
    assert_eq!(peer.forwarded_for, Some("203.0.113.9".parse().unwrap()));
}

#[test]
fn requests_that_are_not_an_mqtt_upgrade_get_the_http_error_that_says_why() {
    let cases: [(&str, String, &str); 8] = [
        ("not an upgrade", "GET /mqtt HTTP/1.1\r\nHost: b\r\n\r\n".into(), "426"),
        ("another path", UPGRADE.replace("GET /mqtt ", "GET /other "), "404"),
        ("a POST", UPGRADE.replace("GET ", "POST "), "405"),
        ("version 8", UPGRADE.replace("Version: 13", "Version: 8"), "426"),
        ("no key", UPGRADE.replace("Sec-WebSocket-Key", "X-Key"), "400"),
        ("another subprotocol", UPGRADE.replace("Protocol: mqtt", "Protocol: chat"), "400"),
        ("not HTTP", "\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\r\n\r\n".into(), "400"),
        ("a foreign origin", UPGRADE.replace("https://app.example", "https://evil.example"), "403"),
    ];
    for (what, request, code) in cases {
        let settings = WsSettings {
            allowed_origins: vec!["https://app.example".into()],
            ..WsSettings::default()
        };
        let mut ws = server(settings);
        let (up, down, result) = feed(&mut ws, request.as_bytes());
        assert_eq!(result, Err(LayerError::Handshake), "{what}");
        assert_eq!(status(&down), code, "{what}: {}", String::from_utf8_lossy(&down));
        assert!(up.is_empty(), "{what}");
        // Nothing more goes out, nothing more is read.
        let mut out = Vec::new();
        ws.write(Bytes::from_static(b"\x20\x02\x00\x00"), &mut out).unwrap();
        assert!(out.is_empty(), "{what}");
    }
}

#[test]
fn a_request_head_without_end_is_refused_not_buffered() {
    let mut ws = server(WsSettings::default());
    let mut result = Ok(());
    let mut answer = Vec::new();
    for _ in 0..100 {
        let (_, down, r) = feed(&mut ws, &[b'a'; 200]);
        answer.extend(down);
        result = r;
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(LayerError::TooLarge));
    assert_eq!(status(&answer), "431");
}

fn open_server() -> WsServer {
    let mut ws = server(WsSettings::default());
    let (_, _, result) = feed(&mut ws, UPGRADE.as_bytes());
    assert_eq!(result, Ok(()));
    ws
}

#[test]
fn packets_split_across_frames_and_frames_holding_several_packets_reach_the_engine() {
    // MQTT-6.0.0-2: the receiver must not assume packets are aligned on frame boundaries.
    let mut ws = open_server();
    let two_pingreqs = b"\xc0\x00\xc0\x00";
    let mut bytes = masked(BINARY, two_pingreqs, [9, 8, 7, 6]);
    // A fragmented message: one CONNACK-sized packet over three frames, a ping among them.
    bytes.extend(fragment(BINARY, false, b"\x30", [1, 1, 1, 1]));
    bytes.extend(masked(PING, b"hi", [2, 2, 2, 2]));
    bytes.extend(fragment(CONTINUATION, false, b"\x03\x00", [3, 3, 3, 3]));
    bytes.extend(fragment(CONTINUATION, true, b"\x01t", [4, 4, 4, 4]));
    let (up, down, result) = feed(&mut ws, &bytes);
    assert_eq!(result, Ok(()));
    assert_eq!(up, b"\xc0\x00\xc0\x00\x30\x03\x00\x01t");
    // The ping answered with a pong carrying its payload, unmasked (§5.5.2, §5.1).
    assert_eq!(down, [0x8a, 2, b'h', b'i']);
}

#[test]
fn frames_that_break_rfc_6455_close_with_1002_and_text_with_1003() {
    let unmasked = frame::frame(BINARY, b"\xc0\x00", None).to_vec();
    let mut reserved = masked(BINARY, b"\xc0\x00", [1, 2, 3, 4]);
    reserved[0] |= 0x40;
    let long_ping = masked(PING, &[0; 126], [1, 2, 3, 4]);
    let split_ping = fragment(PING, false, b"a", [1, 2, 3, 4]);
    let orphan = masked(CONTINUATION, b"\xc0\x00", [1, 2, 3, 4]);
    let mut interleaved = fragment(BINARY, false, b"\xc0", [1, 2, 3, 4]);
    interleaved.extend(masked(BINARY, b"\x00", [1, 2, 3, 4]));
    let mut opcode_3 = masked(BINARY, b"", [1, 2, 3, 4]);
    opcode_3[0] = 0x83;
    let cases = [
        ("an unmasked client frame (§5.1)", unmasked, 1002),
        ("a reserved bit (§5.2)", reserved, 1002),
        ("a 126-byte ping (§5.5)", long_ping, 1002),
        ("a fragmented ping (§5.5)", split_ping, 1002),
        ("a continuation of nothing (§5.4)", orphan, 1002),
        ("a message inside a message (§5.4)", interleaved, 1002),
        ("a reserved opcode (§5.2)", opcode_3, 1002),
        ("a text frame (MQTT-6.0.0-1)", masked(TEXT, b"hello", [1, 2, 3, 4]), 1003),
    ];
    for (what, bytes, code) in cases {
        let mut ws = open_server();
        let (_, down, result) = feed(&mut ws, &bytes);
        assert!(result.is_err(), "{what}");
        assert_eq!(down[..2], [0x88, 2], "{what}: a close frame");
        assert_eq!(u16::from_be_bytes([down[2], down[3]]), code, "{what}");
    }
}

#[test]
fn the_closing_handshake_is_answered_and_then_nothing_is_sent() {
    let mut ws = open_server();
    let (_, down, result) = feed(&mut ws, &masked(CLOSE, &1001u16.to_be_bytes(), [5, 6, 7, 8]));
    assert_eq!(result, Err(LayerError::PeerClosed));
    assert_eq!(down, [0x88, 2, 0x03, 0xe9], "the peer's code echoed (§5.5.1)");
    let mut out = Vec::new();
    ws.write(Bytes::from_static(b"\xd0\x00"), &mut out).unwrap();
    ws.close(&mut out);
    assert!(out.is_empty());
}

#[test]
fn the_engines_bytes_go_out_as_binary_frames_small_ones_in_one_chunk_large_ones_uncopied() {
    let mut ws = open_server();
    let mut out = Vec::new();
    ws.write(Bytes::from_static(b"\x20\x02\x00\x00"), &mut out).unwrap();
    assert_eq!(out, [Bytes::from_static(b"\x82\x04\x20\x02\x00\x00")]);
    out.clear();
    let large = Bytes::from(vec![7u8; 70_000]);
    ws.write(large.clone(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0][..], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    assert_eq!(out[1].as_ptr(), large.as_ptr(), "the payload is not copied");
    out.clear();
    ws.close(&mut out);
    assert_eq!(out, [Bytes::from_static(&[0x88, 2, 0x03, 0xe8])]);
}

#[test]
fn unmasking_eight_bytes_at_a_time_is_the_bytewise_xor_from_any_phase() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for phase in 0..4 {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut fast = plain.clone();
            frame::unmask(&mut fast, mask, phase);
            let slow: Vec<u8> =
                plain.iter().enumerate().map(|(i, b)| b ^ mask[(phase + i) % 4]).collect();
            assert_eq!(fast, slow, "phase {phase}, {len} bytes");
        }
    }
}

/// Property: whatever the frame sizes and however the stream is cut into reads, the payload
/// bytes reach the engine whole and in order, and pings are all answered.
#[test]
fn any_framing_and_any_cut_of_the_stream_deliver_the_same_bytes() {
    fn property(payloads: Vec<Vec<u8>>, cuts: Vec<u16>, masks: Vec<u32>) -> TestResult {
        if payloads.is_empty() {
            return TestResult::discard();
        }
        let mut stream = Vec::new();
        let mut pings = 0;
        for (i, payload) in payloads.iter().enumerate() {
            let mask = masks.get(i).copied().unwrap_or(0x0102_0304).to_be_bytes();
            // Every third payload fragmented in two, with a ping between the pieces.
            if i % 3 == 2 && payload.len() > 1 {
                let (a, b) = payload.split_at(payload.len() / 2);
                stream.extend(fragment(BINARY, false, a, mask));
                stream.extend(masked(PING, b"p", mask));
                stream.extend(fragment(CONTINUATION, true, b, mask));
                pings += 1;
            } else {
                stream.extend(masked(BINARY, payload, mask));
            }
        }
        let mut reader = FrameReader::new(true);
        let (mut got, mut ponged) = (Vec::new(), 0);
        let mut rest = &stream[..];
        for cut in cuts.iter().chain(core::iter::once(&u16::MAX)) {
            let take = (usize::from(*cut) % 300).min(rest.len());
            let (piece, tail) = rest.split_at(if tail_only(*cut) { rest.len() } else { take });
            rest = tail;
            let result = reader.read(BytesMut::from(piece), &mut |event| {
                match event {
                    Event::Data(bytes) => got.extend_from_slice(&bytes),
                    Event::Ping(_) => ponged += 1,
                    Event::Close(_) => {}
                }
                Ok(())
            });
            if result.is_err() {
                return TestResult::failed();
            }
        }
        TestResult::from_bool(got == payloads.concat() && ponged == pings && rest.is_empty())
    }
    fn tail_only(cut: u16) -> bool {
        cut == u16::MAX
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(property as fn(Vec<Vec<u8>>, Vec<u16>, Vec<u32>) -> TestResult);
}

#[test]
fn a_client_stack_and_a_server_stack_talk_through_every_cut() {
    // Client and server layers as a runtime drives them, through `Stack`: the client's first
    // write sends the upgrade, its CONNECT is held until the 101 comes, then flows framed.
    let mut client = Stack::new(vec![Box::new(WsClient::new("broker", "/mqtt"))], None);
    let mut server = Stack::new(vec![Box::new(WsServer::new(WsSettings::default().into()))], None);
    let connect = Bytes::from_static(b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00");
    let mut wire = Vec::new();
    client.write(connect.clone(), |chunk| wire.extend_from_slice(&chunk)).unwrap();
    // The request goes byte by byte: the server waits for the whole head.
    let mut answer = Vec::new();
    let mut engine = Vec::new();
    for byte in &wire {
        if let Some(bytes) = server
            .read(BytesMut::from(&[*byte][..]), |c| answer.extend_from_slice(&c))
            .into_result()
            .unwrap()
        {
            engine.extend_from_slice(&bytes);
        }
    }
    assert!(engine.is_empty(), "the CONNECT waits for the 101");
    let mut back = Vec::new();
    let got = client
        .read(BytesMut::from(&answer[..]), |c| back.extend_from_slice(&c))
        .into_result()
        .unwrap();
    assert_eq!(got, None);
    // The 101 released the held CONNECT, masked.
    assert_eq!(back[0], 0x82);
    assert_ne!(back[1] & 0x80, 0);
    let got = server.read(BytesMut::from(&back[..]), drop).into_result().unwrap().unwrap();
    assert_eq!(got, connect);
    // The server's answer, framed, through the client.
    let mut framed = Vec::new();
    server
        .write(Bytes::from_static(b"\x20\x03\x00\x00\x00"), |c| framed.extend_from_slice(&c))
        .unwrap();
    let got = client.read(BytesMut::from(&framed[..]), drop).into_result().unwrap().unwrap();
    assert_eq!(&got[..], b"\x20\x03\x00\x00\x00");
    // The engine's bytes are counted back as the engine's, not the frames' (the 101 counts
    // for none).
    assert_eq!(server.written(answer.len()), 0);
    assert_eq!(server.written(framed.len()), 5);
}

#[test]
fn a_refused_upgrade_fails_the_client() {
    let mut client = WsClient::new("broker", "/mqtt");
    let mut out = Vec::new();
    client.write(Bytes::from_static(b"\xc0\x00"), &mut out).unwrap();
    let answer = handshake::refusal(404, "Not Found", "", "no");
    let (_, _, result) = feed(&mut client, &answer);
    assert_eq!(result, Err(LayerError::Handshake));
    assert!(matches!(
        handshake::answer(b"GET / HTTP/1.1\r\n\r\n", &WsSettings::default()),
        Answer::Refuse(_)
    ));
}
