//! MQTT-SN over UDP (docs/MQTT-SN.md, "Runtime contract"): one reader thread per UDP socket
//! numbers each source address as a [`PeerId`] and sends each datagram to the shard that took
//! its peer ([`Action::HandoffPeer`](musqratt_engine::Action::HandoffPeer)), or to the peer's
//! default shard (`peer % shards`) until one does. Engine threads send datagrams themselves
//! with `send_to` on the shared socket.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::mpsc::Sender;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use musqratt_engine::{Input, PeerId, ShardId};

use crate::shard::ShardInput;

/// IPv6 peers numbered at most (IPv4 peers need no table: their number is their address). When
/// full, peers without a route are forgotten: a forgotten peer that still has a connection on
/// its default shard gets a new number, looks unknown to the engine, is told DISCONNECT and
/// connects again.
const MAX_TABLE_PEERS: usize = 65_536;

/// Peer numbers with this bit come from the IPv6 table; the others encode socket, IPv4 address
/// and port.
const TABLE_BIT: u64 = 1 << 62;

/// How often a blocked reader looks at the stop flag: the socket's receive timeout
/// (`SO_RCVTIMEO`, no poll).
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The UDP sockets and the peer table every thread shares.
#[derive(Debug)]
pub(crate) struct Udp {
    pub(crate) sockets: Vec<UdpSocket>,
    table: Mutex<PeerTable>,
}

#[derive(Debug, Default)]
struct PeerTable {
    /// IPv6 peers only.
    by_addr: HashMap<(usize, SocketAddr), PeerId>,
    addrs: HashMap<PeerId, (usize, SocketAddr)>,
    /// (peer, wireless node) → the shard that took it.
    routes: HashMap<(PeerId, Bytes), ShardId>,
    next: u64,
}

impl Udp {
    pub(crate) fn bind(addrs: &[SocketAddr]) -> std::io::Result<Self> {
        if addrs.len() >= 1 << 14 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "too many UDP sockets",
            ));
        }
        let mut sockets = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let socket = UdpSocket::bind(addr)?;
            socket.set_read_timeout(Some(STOP_CHECK))?;
            sockets.push(socket);
        }
        Ok(Self { sockets, table: Mutex::new(PeerTable::default()) })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader of socket `index`, until `stopping`.
    pub(crate) fn read_loop(
        &self,
        index: usize,
        shards: &[Sender<ShardInput>],
        stopping: &AtomicBool,
    ) {
        let socket = &self.sockets[index];
        let mut buf = vec![0u8; 65_535];
        while !stopping.load(Ordering::SeqCst) {
            let (len, addr) = match socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, "UDP receive failed");
                    continue;
                }
            };
            // The one allocation per datagram: its payload.
            let bytes = Bytes::copy_from_slice(&buf[..len]);
            let node = musqratt_engine::wireless_node(&bytes);
            let (peer, shard) = {
                let mut table = self.table();
                let peer = table.peer_of(index, addr);
                let default = ShardId(u16::try_from(peer.0 % shards.len() as u64).unwrap_or(0));
                (peer, table.routes.get(&(peer, node)).copied().unwrap_or(default))
            };
            if let Some(tx) = shards.get(usize::from(shard.0)) {
                let _ = tx.send(ShardInput::Engine(Input::Datagram { peer, bytes }));
            }
        }
    }

    pub(crate) fn send(&self, peer: PeerId, bytes: &[u8]) {
        let found = match decode_v4(peer) {
            Some(found) => Some(found),
            None => self.table().addrs.get(&peer).copied(),
        };
        let Some((index, addr)) = found else { return };
        let Some(socket) = self.sockets.get(index) else { return };
        if let Err(error) = socket.send_to(bytes, addr) {
            tracing::debug!(%error, %addr, "UDP send failed");
        }
    }

    pub(crate) fn route(&self, peer: PeerId, node: Bytes, to: ShardId) {
        self.table().routes.insert((peer, node), to);
    }

    pub(crate) fn release(&self, peer: PeerId, node: &Bytes) {
        self.table().routes.remove(&(peer, node.clone()));
    }
}

impl PeerTable {
    /// The number of a source address: computed for IPv4, from the table for IPv6.
    fn peer_of(&mut self, index: usize, addr: SocketAddr) -> PeerId {
        match addr {
            SocketAddr::V4(v4) => PeerId(
                (index as u64) << 48 | u64::from(u32::from(*v4.ip())) << 16 | u64::from(v4.port()),
            ),
            SocketAddr::V6(_) => {
                if let Some(peer) = self.by_addr.get(&(index, addr)) {
                    return *peer;
                }
                if self.by_addr.len() >= MAX_TABLE_PEERS {
                    let routes = &self.routes;
                    self.addrs.retain(|peer, _| routes.keys().any(|(p, _)| p == peer));
                    let addrs = &self.addrs;
                    self.by_addr.retain(|_, peer| addrs.contains_key(peer));
                }
                self.next += 1;
                let peer = PeerId(TABLE_BIT | (self.next & (TABLE_BIT - 1)));
                self.by_addr.insert((index, addr), peer);
                self.addrs.insert(peer, (index, addr));
                peer
            }
        }
    }
}

/// The socket and IPv4 address a computed peer number stands for.
fn decode_v4(peer: PeerId) -> Option<(usize, SocketAddr)> {
    if peer.0 & TABLE_BIT != 0 {
        return None;
    }
    let index = usize::try_from(peer.0 >> 48).ok()?;
    let ip = core::net::Ipv4Addr::from(u32::try_from((peer.0 >> 16) & 0xFFFF_FFFF).ok()?);
    let port = u16::try_from(peer.0 & 0xFFFF).ok()?;
    Some((index, SocketAddr::from((ip, port))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_peers_are_their_address_and_ipv6_peers_are_numbered() {
        let mut table = PeerTable::default();
        let v4: SocketAddr = "192.0.2.7:47001".parse().unwrap();
        let peer = table.peer_of(3, v4);
        assert!(peer.0 < TABLE_BIT);
        assert_eq!(decode_v4(peer), Some((3, v4)));
        assert!(table.by_addr.is_empty(), "no table entry for IPv4");
        let v6: SocketAddr = "[2001:db8::1]:1884".parse().unwrap();
        let peer6 = table.peer_of(0, v6);
        assert_eq!(table.peer_of(0, v6), peer6);
        assert_eq!(decode_v4(peer6), None);
        assert_eq!(table.addrs.get(&peer6), Some(&(0, v6)));
    }
}
