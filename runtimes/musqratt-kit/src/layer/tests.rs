//! The stack on its own: layers composed twice round-trip MQTT packets split at every byte
//! boundary, answers on read go down through the layers below, the engine's byte count comes
//! back right, and the identity layer moves chunks without copying them.

use super::*;

/// Frames of at most `max` bytes: `[kind, len, payload..]`, kind 0 data, 1 ping (answered
/// with a pong, kind 2, from the read path), 2 pong (ignored), 3 close. Keeps half frames.
#[derive(Debug)]
struct Frames {
    max: u8,
    pending: BytesMut,
}

impl Frames {
    fn new(max: u8) -> Self {
        Self { max, pending: BytesMut::new() }
    }
}

impl StreamLayer for Frames {
    fn name(&self) -> &'static str {
        "frames"
    }

    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        self.pending.extend_from_slice(&bytes);
        while self.pending.len() >= 2 {
            let (kind, len) = (self.pending[0], usize::from(self.pending[1]));
            if len > usize::from(self.max) || kind > 3 {
                return Err(LayerError::TooLarge);
            }
            if self.pending.len() < 2 + len {
                break;
            }
            let mut frame = self.pending.split_to(2 + len);
            let payload = frame.split_off(2);
            match kind {
                0 if !payload.is_empty() => up.push(payload),
                1 => down.push(Bytes::from_static(&[2, 0])),
                3 => return Err(LayerError::PeerClosed),
                _ => {}
            }
        }
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        for chunk in bytes.chunks(usize::from(self.max)) {
            down.push(Bytes::from(vec![0, u8::try_from(chunk.len()).unwrap()]));
            down.push(bytes.slice_ref(chunk));
        }
        Ok(())
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        down.push(Bytes::from_static(&[3, 0]));
    }
}

/// XOR under frames under XOR under frames: each kind twice, with different keys and sizes.
fn stack() -> Stack {
    Stack::new(
        vec![
            Box::new(Xor(0x5a)),
            Box::new(Frames::new(7)),
            Box::new(Xor(0xc3)),
            Box::new(Frames::new(5)),
        ],
        None,
    )
}

/// A CONNECT, a SUBSCRIBE, a QoS 1 PUBLISH and a PINGREQ of MQTT 3.1.1, back to back.
fn packets() -> Vec<u8> {
    let mut bytes =
        vec![0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 4, b'c', b'l', b'i', b'1'];
    bytes.extend_from_slice(&[0x82, 0x08, 0, 1, 0, 3, b'a', b'/', b'b', 1]);
    bytes.extend_from_slice(&[
        0x32, 0x0c, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'e', b'l', b'l', b'o',
    ]);
    bytes.extend_from_slice(&[0xc0, 0x00]);
    bytes
}

/// What `stack` makes of `plain` for the socket.
fn encode(stack: &mut Stack, plain: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    stack.write(Bytes::copy_from_slice(plain), |chunk| wire.extend_from_slice(&chunk)).unwrap();
    wire
}

/// Feeds `wire` to `stack` in the given pieces; returns what came up and what went back down.
fn decode(stack: &mut Stack, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut from = 0;
    for &to in cuts.iter().chain([&wire.len()]) {
        let piece = BytesMut::from(&wire[from..to]);
        if let Some(bytes) =
            stack.read(piece, |chunk| down.extend_from_slice(&chunk)).into_result().unwrap()
        {
            up.extend_from_slice(&bytes);
        }
        from = to;
    }
    (up, down)
}

#[test]
fn packets_split_at_every_byte_boundary_come_through() {
    let plain = packets();
    let wire = encode(&mut stack(), &plain);
    assert_ne!(wire, plain);
    for cut in 0..=wire.len() {
        let (up, down) = decode(&mut stack(), &wire, &[cut]);
        assert_eq!(up, plain, "cut at {cut}");
        assert!(down.is_empty());
    }
    // And one byte at a time.
    let cuts: Vec<usize> = (1..wire.len()).collect();
    assert_eq!(decode(&mut stack(), &wire, &cuts).0, plain);
}

#[test]
fn both_directions_through_two_stacks() {
    // The client's stack is the same: every layer here is its own inverse.
    let (mut server, mut client) = (stack(), stack());
    let plain = packets();
    let to_server = encode(&mut client, &plain);
    assert_eq!(decode(&mut server, &to_server, &[3, 10]).0, plain);
    let reply = [0x20, 0x02, 0x00, 0x00, 0x90, 0x03, 0x00, 0x01, 0x01];
    let to_client = encode(&mut server, &reply);
    assert_eq!(decode(&mut client, &to_client, &[1]).0, reply);
}

/// A ping read by the upper frames layer is answered with a pong that goes down through the
/// XOR and frames layers under it, and nothing comes up.
#[test]
fn an_answer_on_read_goes_down_through_the_layers_below() {
    let (mut server, mut client) = (stack(), stack());
    // The client's top layer writes a ping frame: built by hand, passed down its lower layers.
    let mut ping = Vec::new();
    let mut scratch = [Vec::new(), Vec::new()];
    let ping_frame = Bytes::from_static(&[1, 0]);
    client
        .pass_down(&mut scratch, 3, ping_frame, 0, &mut |c: Bytes| ping.extend_from_slice(&c))
        .unwrap();
    let (up, pong) = decode(&mut server, &ping, &[]);
    assert!(up.is_empty());
    assert!(!pong.is_empty());
    // The client's stack reads the pong and swallows it.
    let (up, down) = decode(&mut client, &pong, &[]);
    assert!(up.is_empty() && down.is_empty());
    // The pong was layer bytes: reporting them written completes no engine bytes.
    assert_eq!(server.written(pong.len()), 0);
}

#[test]
fn written_maps_socket_bytes_back_to_the_engines() {
    let mut server = stack();
    let first = encode(&mut server, &[1; 12]).len();
    let second = encode(&mut server, &[2; 30]).len();
    assert!(first > 12 && second > 30);
    assert_eq!(server.written(first - 1), 0, "a batch counts once whole");
    assert_eq!(server.written(1), 12);
    assert_eq!(server.written(second / 2), 0);
    assert_eq!(server.written(second - second / 2), 30);
    assert_eq!(server.written(0), 0);
}

#[test]
fn close_sends_the_last_bytes_top_down_and_drops_later_writes() {
    let mut server = stack();
    let mut wire = Vec::new();
    server.close(|chunk| wire.extend_from_slice(&chunk));
    let closed = Err(StackError { layer: "frames", error: LayerError::PeerClosed });
    // The upper frames layer's close frame, through the layers below it (framed and XORed
    // twice, more than 2 bytes), then the lower one's (2 bytes, XORed once).
    let (upper, lower) = wire.split_at(wire.len() - 2);
    assert!(upper.len() > 2);
    assert_eq!(stack().read(BytesMut::from(upper), |_| {}).into_result(), closed);
    assert_eq!(stack().read(BytesMut::from(lower), |_| {}).into_result(), closed);
    assert!(encode(&mut server, b"late").is_empty());
}

#[test]
fn a_layer_error_names_the_layer() {
    let mut server = stack();
    // Frames say 9 bytes, more than the lower frames layer's 7; XOR first with its key.
    let mut wire = BytesMut::from(&[0u8, 9][..]);
    Xor(0x5a).apply(&mut wire);
    let error = server.read(wire, |_| {}).into_result().unwrap_err();
    assert_eq!(error, StackError { layer: "frames", error: LayerError::TooLarge });
}

/// The identity layer hands the chunks on as they are: the same memory up and down.
#[test]
fn identity_moves_chunks_without_copying() {
    let mut stack = Layers::identity().stack("127.0.0.1:1".parse().unwrap());
    let read = BytesMut::from(&packets()[..]);
    let at = read.as_ptr();
    let up = stack.read(read, |_| panic!("nothing to answer")).into_result().unwrap().unwrap();
    assert_eq!(up.as_ptr(), at);
    let payload = Bytes::from(packets());
    let mut out = Vec::new();
    stack.write(payload.clone(), |chunk| out.push(chunk)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ptr(), payload.as_ptr());
    assert_eq!(stack.written(payload.len()), payload.len());
    assert_eq!(stack.identity().addr, Some("127.0.0.1:1".parse().unwrap()));
}

/// Issue 15: what the layers proved reaches the authenticator; a vouched-for user name
/// replaces the CONNECT's and its password, a CN alone (no `identity_as_username`) only adds
/// `cert_cn`, and a connection the layers know nothing of is asked about as the engine made it.
#[test]
fn identity_fills_the_auth_request() {
    let connect = AuthRequest {
        client_id: "c".into(),
        username: Some("claimed".into()),
        password: Some(Bytes::from_static(b"secret")),
        method: None,
        data: None,
        protocol: musqratt_engine::proto::ProtocolVersion::V5,
        cert_cn: None,
        username_verified: false,
    };
    let mut request = connect.clone();
    PeerIdentity::default().fill(&mut request);
    assert_eq!(request, connect);

    let mut named =
        PeerIdentity { certificate_cn: Some("sensor-7".into()), ..PeerIdentity::default() };
    let mut request = connect.clone();
    named.fill(&mut request);
    assert_eq!(request, AuthRequest { cert_cn: Some("sensor-7".into()), ..connect.clone() });

    named.username = Some("sensor-7".into());
    let mut request = connect.clone();
    named.fill(&mut request);
    let expected = AuthRequest {
        username: Some("sensor-7".into()),
        password: None,
        cert_cn: Some("sensor-7".into()),
        username_verified: true,
        ..connect
    };
    assert_eq!(request, expected);
}
