//! The `floor` relay: a trivial TCP relay in place of a broker. It answers CONNECT with a
//! CONNACK and SUBSCRIBE with a SUBACK (granted QoS 0) and then copies every byte a publisher
//! sends to every subscriber, one blocking thread per connection: no parsing, no routing, no
//! queues. Latency through it is the physical floor of one extra TCP hop on this machine, and
//! the generator's rate through it is the generator's own ceiling.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// A running relay; stops accepting when dropped (open connections end with their peers).
pub(crate) struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Starts a relay on `addr` (port 0: a free port).
    pub(crate) fn start(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let subscribers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let flag = Arc::clone(&stop);
        thread::Builder::new().name("relay-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let subscribers = Arc::clone(&subscribers);
                let _ = thread::Builder::new()
                    .name("relay-conn".into())
                    .spawn(move || serve(stream, &subscribers));
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

/// Reads one whole packet: its raw bytes.
fn read_packet(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut packet = vec![0u8; 1];
    stream.read_exact(&mut packet)?;
    let mut remaining = 0usize;
    for shift in 0..4 {
        let mut byte = [0u8];
        stream.read_exact(&mut byte)?;
        packet.push(byte[0]);
        remaining |= usize::from(byte[0] & 0x7f) << (7 * shift);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + remaining, 0);
    stream.read_exact(&mut packet[start..])?;
    Ok(packet)
}

fn serve(mut stream: TcpStream, subscribers: &Mutex<Vec<TcpStream>>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let connect = read_packet(&mut stream)?;
    if connect[0] != 0x10 {
        return Ok(());
    }
    stream.write_all(&[0x20, 2, 0, 0])?;
    let first = read_packet(&mut stream)?;
    if first[0] == 0x82 {
        // SUBSCRIBE: the packet id follows the one-byte remaining length for small packets.
        let id_at = 1 + first[1..].iter().take_while(|b| **b & 0x80 != 0).count() + 1;
        let ack = [0x90, 3, first[id_at], first[id_at + 1], 0];
        stream.write_all(&ack)?;
        subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(stream.try_clone()?);
        // Discard whatever the subscriber sends until it leaves.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).unwrap_or(0) > 0 {}
        let me = stream.peer_addr().ok();
        subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.peer_addr().ok() != me);
        return Ok(());
    }
    let mut targets: Vec<TcpStream> = subscribers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|s| s.try_clone().ok())
        .collect();
    let forward = |targets: &mut Vec<TcpStream>, bytes: &[u8]| {
        targets.retain_mut(|t| t.write_all(bytes).is_ok());
    };
    forward(&mut targets, &first);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        forward(&mut targets, &buf[..n]);
    }
}
