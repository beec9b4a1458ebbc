//! MQTT over WebSocket (`ws://`, the kit's `layer::ws`) on real sockets: every MQTT case of
//! [`crate::mqtt`] through a WebSocket listener, its clients' bytes framed by a [`Bridge`]
//! (plain TCP in, RFC 6455 frames out, through the kit's client layer), and the cases of this
//! module, which speak HTTP and frames themselves. [`crate::ws_cases`] runs them.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use musqratt_kit::layer::ws::{WsClient, WsSettings};
use musqratt_kit::{Auth, AuthReply, Authenticator, Layers, Stack};

use crate::layers::with_layers;
use musqratt_proto::ProtocolVersion::V5;

use crate::{
    Broker, BrokerConfig, Start, config, connect, launch, publish, receive_publish, subscribe,
};

/// `config` with a `ws://` listener at `/mqtt` on every MQTT listener.
#[must_use]
pub fn ws(config: BrokerConfig) -> BrokerConfig {
    with_layers(config, &Layers::ws(WsSettings::default()))
}

/// A runtime started with WebSocket listeners and reached through a [`Bridge`]: the MQTT cases
/// run unchanged, their clients' bytes framed on the way.
pub fn through_bridge(start: Start, config: BrokerConfig) -> Broker {
    let broker = start(ws(config));
    let bridges: Vec<Bridge> =
        broker.local_addrs().iter().map(|addr| Bridge::start(*addr)).collect();
    let addrs = bridges.iter().map(|b| b.addr).collect();
    Broker::new(addrs, Vec::new(), move || {
        drop(bridges);
        broker.shutdown();
    })
}

/// Accepts plain TCP connections and carries each to a WebSocket listener: what a client
/// writes goes out as masked binary frames after an upgrade request, what the broker sends
/// comes back unframed; a close on either side closes the other.
pub struct Bridge {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Bridge {
    /// A bridge on a free port of 127.0.0.1 to the WebSocket listener at `to` (path `/mqtt`).
    ///
    /// # Panics
    /// No port can be bound.
    #[must_use]
    pub fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(client) = client {
                    std::thread::spawn(move || carry(client, to));
                }
            }
        });
        Self { addr, stop }
    }

    /// Where clients connect.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One client's connection through the bridge: a thread each way, the stack shared.
fn carry(client: TcpStream, to: SocketAddr) {
    let Ok(broker) = TcpStream::connect(to) else { return };
    let _ = broker.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let stack = Arc::new(Mutex::new(Stack::new(
        vec![Box::new(WsClient::new(to.to_string(), "/mqtt"))],
        None,
    )));
    let (Ok(mut client_in), Ok(mut broker_out)) = (client.try_clone(), broker.try_clone()) else {
        return;
    };
    let up_stack = stack.clone();
    let upstream = std::thread::spawn(move || {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match client_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut stack = up_stack.lock().unwrap();
            let mut out = Vec::new();
            if stack.write(Bytes::copy_from_slice(&buf[..n]), |c| out.push(c)).is_err() {
                break;
            }
            if out.iter().any(|chunk| broker_out.write_all(chunk).is_err()) {
                break;
            }
        }
        let _ = broker_out.shutdown(Shutdown::Write);
    });
    // What the client layer answers itself (a pong, a close) goes back to the broker.
    let mut answers = broker.try_clone().ok();
    let (mut broker_in, mut client_out) = (broker, client);
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match broker_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut stack = stack.lock().unwrap();
        let mut back = Vec::new();
        let read = stack.read(BytesMut::from(&buf[..n]), |c| back.push(c));
        for chunk in back {
            if let Some(out) = answers.as_mut() {
                let _ = out.write_all(&chunk);
            }
        }
        if let Some(bytes) = read.data
            && client_out.write_all(&bytes).is_err()
        {
            break;
        }
        if read.end.is_some() {
            break;
        }
    }
    let _ = client_out.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

/// Sends `request` to a WebSocket listener and returns everything it answers until it closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

/// An HTTP request that is not an upgrade gets 426, one at another path 404, each before the
/// connection closes; a plain MQTT client at the WebSocket port is closed by the CONNECT
/// timeout; and through all of it a WebSocket client is served.
pub async fn http_requests_that_are_not_an_mqtt_upgrade_are_answered_and_closed(start: Start) {
    let mut config = config(1);
    config.engine.connect_timeout = Duration::from_millis(500);
    let broker = launch(start, ws(config));
    let bridge = Bridge::start(broker.addr());
    let mut sub = connect(bridge.addr(), "ws-sub", V5).await;
    subscribe(&mut sub, "ws/t", musqratt_proto::QoS::AtMostOnce).await;
    let addr = broker.addr();
    let answers = tokio::task::spawn_blocking(move || {
        let plain = exchange(addr, b"GET /mqtt HTTP/1.1\r\nHost: b\r\n\r\n").unwrap();
        let other = exchange(addr, UPGRADE.replace("/mqtt", "/x").as_bytes()).unwrap();
        // A plain MQTT CONNECT never ends an HTTP head: the CONNECT timeout closes it.
        let started = Instant::now();
        let mqtt = exchange(addr, b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03abc").unwrap();
        (plain, other, mqtt, started.elapsed())
    })
    .await
    .unwrap();
    let (plain, other, mqtt, waited) = answers;
    assert!(plain.starts_with(b"HTTP/1.1 426 "), "{}", String::from_utf8_lossy(&plain));
    assert!(String::from_utf8_lossy(&plain).contains("Sec-WebSocket-Version: 13"));
    assert!(other.starts_with(b"HTTP/1.1 404 "), "{}", String::from_utf8_lossy(&other));
    assert!(mqtt.is_empty(), "{mqtt:?}");
    assert!(waited < Duration::from_secs(4), "the CONNECT timeout closes it: {waited:?}");
    let mut publisher = connect(bridge.addr(), "ws-pub", V5).await;
    publish(&mut publisher, "ws/t", b"still served", musqratt_proto::QoS::AtMostOnce, 0).await;
    assert_eq!(&receive_publish(&mut sub).await.payload[..], b"still served");
    drop(bridge);
    broker.shutdown();
}

/// Frames by hand on a real socket: an upgrade with the first MQTT bytes in the same segment,
/// a CONNECT split over two frames with a ping between, the pong back, then a text frame
/// closes the connection with status 1003 (MQTT-6.0.0-1).
pub async fn frames_split_pinged_and_a_text_frame_closes(start: Start) {
    let broker = launch(start, ws(config(1)));
    let addr = broker.addr();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let connect = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01w";
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend(client_frame(0x02, false, &connect[..5]));
        bytes.extend(client_frame(0x09, true, b"hi"));
        bytes.extend(client_frame(0x00, true, &connect[5..]));
        stream.write_all(&bytes).unwrap();
        let answer = read_until(&mut stream, |got| {
            got.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|start| got.len() >= start + 4 + 10)
        });
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(answer.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&answer));
        let frames = &answer[head_end..];
        // The pong (its payload echoed) and the CONNACK in a binary frame, both unmasked.
        assert_eq!(&frames[..4], b"\x8a\x02hi");
        assert_eq!(frames[4], 0x82);
        assert_eq!((frames[6], frames[9]), (0x20, 0), "a CONNACK, success");
        stream.write_all(&client_frame(0x01, true, b"{}")).unwrap();
        let rest = read_until(&mut stream, |_| false);
        assert!(rest.ends_with(&[0x88, 2, 0x03, 0xeb]), "close 1003: {rest:?}");
    })
    .await
    .unwrap();
    broker.shutdown();
}

/// Records the client address each authentication saw, and lets everyone in.
struct PeerRecorder(Arc<Mutex<Vec<Option<SocketAddr>>>>);

impl Authenticator for PeerRecorder {
    fn authenticate(&self, _: &musqratt_engine::AuthRequest, reply: AuthReply) {
        self.0.lock().unwrap().push(reply.peer());
        reply.answer(Ok(musqratt_engine::AuthDecision::Accept));
    }
}

/// With `trust_forwarded_for`, the authenticator sees the address of `X-Forwarded-For` (a
/// reverse proxy's word for the client's); without it, the socket's peer whatever the header
/// claims.
pub async fn a_trusted_proxys_forwarded_address_reaches_authentication(start: Start) {
    for trust in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut settings = WsSettings::default();
        settings.trust_forwarded_for = trust;
        let mut config = with_layers(config(1), &Layers::ws(settings));
        config.engine.authenticate = true;
        config.auth = Auth::new(PeerRecorder(seen.clone()));
        let broker = launch(start, config);
        let addr = broker.addr();
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let request =
                UPGRADE.replace("\r\n\r\n", "\r\nX-Forwarded-For: 203.0.113.7, 10.1.1.1\r\n\r\n");
            let mut bytes = request.into_bytes();
            bytes.extend(client_frame(
                0x02,
                true,
                b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01f",
            ));
            stream.write_all(&bytes).unwrap();
            // The 101, then the CONNACK's frame (more than a frame header after the head).
            let answer = read_until(&mut stream, |got| {
                let head = got.windows(4).position(|w| w == b"\r\n\r\n");
                head.is_some_and(|start| got.len() > start + 4 + 2)
            });
            let start = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            assert_eq!(answer.get(start + 4 + 2), Some(&0x20), "a CONNACK: {answer:?}");
            assert!(answer.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&answer));
        })
        .await
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        let expected = if trust { "203.0.113.7".parse().ok() } else { Some(addr.ip()) };
        assert_eq!(seen.len(), 1, "one authentication: {seen:?}");
        assert_eq!(seen[0].map(|peer| peer.ip()), expected, "trust_forwarded_for = {trust}");
        broker.shutdown();
    }
}

/// A PUBLISH delivered over WebSocket comes whole in one binary frame: the engine sends its
/// header and its payload as two chunks, which the runtime joins for a layered connection
/// (`musqratt_kit::SendJoiner`) rather than framing each (MQTT-6.0.0-2 allows either; one frame
/// is one frame for the client to open, and over TLS one record).
pub async fn a_delivery_comes_in_one_frame(start: Start) {
    let broker = launch(start, ws(config(1)));
    let addr = broker.addr();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Reads one whole unmasked server frame of fewer than 126 bytes, after `skip` bytes.
        let frame = |stream: &mut TcpStream, skip: usize| {
            let got = read_until(stream, |got| {
                got.len() >= skip + 2 && got.len() >= skip + 2 + usize::from(got[skip + 1])
            });
            got[skip..].to_vec()
        };
        let connect = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01w";
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend(client_frame(0x02, true, connect));
        stream.write_all(&bytes).unwrap();
        let head = read_until(&mut stream, |got| got.windows(4).any(|w| w == b"\r\n\r\n"));
        let head_end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut rest = head[head_end..].to_vec();
        if rest.len() < 2 || rest.len() < 2 + usize::from(rest[1]) {
            rest.extend(frame(&mut stream, 0));
        }
        assert_eq!((rest[0], rest[2]), (0x82, 0x20), "a CONNACK in a binary frame");
        // SUBSCRIBE t (5.0, QoS 0), then PUBLISH "hello" to t from the same client.
        stream.write_all(&client_frame(0x02, true, b"\x82\x07\x00\x01\x00\x00\x01t\x00")).unwrap();
        assert_eq!(frame(&mut stream, 0)[2], 0x90, "a SUBACK");
        let publish = b"\x30\x09\x00\x01t\x00hello";
        stream.write_all(&client_frame(0x02, true, publish)).unwrap();
        let delivery = frame(&mut stream, 0);
        assert_eq!(
            delivery[..2],
            [0x82, 11],
            "one binary frame of the whole PUBLISH: {delivery:?}"
        );
        assert_eq!(&delivery[2..], publish);
    })
    .await
    .unwrap();
    broker.shutdown();
}

/// A masked client frame (RFC 6455 §5.2).
fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    assert!(payload.len() < 126);
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until `done` says so or the peer closes.
fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !done(&got) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}
