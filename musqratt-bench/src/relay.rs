//! The `floor` relay: a trivial TCP relay in place of a broker. It answers CONNECT with a
//! CONNACK and SUBSCRIBE with a SUBACK (granted QoS 0) and then copies every byte a publisher
//! sends to every subscriber, one blocking thread per connection: no parsing, no routing, no
//! queues. Latency through it is the physical floor of one extra TCP hop on this machine, and
//! the generator's rate through it is the generator's own ceiling.
//!
//! With a TLS layer (`relay --tls-cert --tls-key`) it terminates TLS as a broker's `mqtts://`
//! listener does, with the same layer: each connection's records are decrypted, and what is
//! copied is encrypted again for each subscriber. Latency through it is the floor of a TLS hop:
//! what any broker's TLS latency should be compared with.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use bytes::{Buf as _, BytesMut};
use musqratt_kit::Layers;

use crate::transport::SyncWriter;

/// A running relay; stops accepting when dropped (open connections end with their peers).
pub(crate) struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Starts a relay on `addr` (port 0: a free port), its connections through `layers` if
    /// given (TLS).
    pub(crate) fn start(addr: SocketAddr, layers: Option<Layers>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let subscribers: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let flag = Arc::clone(&stop);
        thread::Builder::new().name("relay-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let stack = layers.as_ref().zip(stream.peer_addr().ok()).map(|(l, p)| l.stack(p));
                let Ok(clone) = stream.try_clone() else { continue };
                let conn = Conn { stream, writer: SyncWriter::new(clone, stack) };
                let subscribers = Arc::clone(&subscribers);
                let _ = thread::Builder::new()
                    .name("relay-conn".into())
                    .spawn(move || serve(conn, &subscribers));
            }
        })?;
        Ok(Self { addr, stop })
    }

    /// The relay's address.
    pub(crate) const fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One relay connection: its socket and, on a TLS relay, its stack, shared by the thread that
/// reads it and the publishers' threads that write to it (the bench client's [`SyncWriter`]:
/// records reach the socket in the order they were encrypted).
struct Conn {
    stream: TcpStream,
    writer: SyncWriter,
}

impl Conn {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Self { stream: self.stream.try_clone()?, writer: self.writer.try_clone()? })
    }

    /// Reads what is available, decrypted, onto `plain`: `false` at the end of the stream.
    fn read(&mut self, chunk: &mut [u8], plain: &mut BytesMut) -> io::Result<bool> {
        self.writer.read(&self.stream, chunk, plain)
    }

    /// Writes `bytes`, encrypted on a TLS relay.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }
}

/// Reads one whole packet from `conn` (through `plain`, which keeps what follows it): its raw
/// bytes.
fn read_packet(conn: &mut Conn, plain: &mut BytesMut) -> io::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = packet_len(plain) {
            if plain.len() >= len {
                let packet = plain[..len].to_vec();
                plain.advance(len);
                return Ok(packet);
            }
        }
        if !conn.read(&mut chunk, plain)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The length of the packet at the start of `bytes`, once its fixed header is there.
fn packet_len(bytes: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (i, byte) in bytes.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(1 + i + 1 + remaining);
        }
    }
    None
}

fn serve(mut conn: Conn, subscribers: &Mutex<Vec<Conn>>) -> io::Result<()> {
    conn.stream.set_nodelay(true)?;
    let mut plain = BytesMut::new();
    let connect = read_packet(&mut conn, &mut plain)?;
    if connect[0] != 0x10 {
        return Ok(());
    }
    conn.write_all(&[0x20, 2, 0, 0])?;
    let first = read_packet(&mut conn, &mut plain)?;
    if first[0] == 0x82 {
        // SUBSCRIBE: the packet id follows the one-byte remaining length for small packets.
        let id_at = 1 + first[1..].iter().take_while(|b| **b & 0x80 != 0).count() + 1;
        let ack = [0x90, 3, first[id_at], first[id_at + 1], 0];
        conn.write_all(&ack)?;
        subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(conn.try_clone()?);
        // Discard whatever the subscriber sends until it leaves.
        let mut sink = [0u8; 4096];
        while conn.read(&mut sink, &mut plain).unwrap_or(false) {
            plain.clear();
        }
        let me = conn.stream.peer_addr().ok();
        subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.stream.peer_addr().ok() != me);
        return Ok(());
    }
    let mut targets: Vec<Conn> = subscribers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|s| s.try_clone().ok())
        .collect();
    let forward = |targets: &mut Vec<Conn>, bytes: &[u8]| {
        targets.retain_mut(|t| t.write_all(bytes).is_ok());
    };
    forward(&mut targets, &first);
    forward(&mut targets, &plain);
    plain.clear();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !conn.read(&mut buf, &mut plain)? {
            return Ok(());
        }
        forward(&mut targets, &plain);
        plain.clear();
    }
}
