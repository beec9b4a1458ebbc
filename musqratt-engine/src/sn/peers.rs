//! The runtime side of MQTT-SN addressing, shared by every runtime: numbering UDP source
//! addresses as [`PeerId`]s and remembering which shard took a peer ([`Action::HandoffPeer`]).
//!
//! It holds no socket and reads no clock; a runtime keeps one table for all its shards (behind
//! whatever lock it uses) and asks it, per datagram, for the peer number and the shard to hand
//! the datagram to.
//!
//! [`Action::HandoffPeer`]: crate::Action::HandoffPeer

use alloc::collections::BTreeMap;
use core::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::ids::{PeerId, ShardId};

/// IPv6 peers numbered at most (IPv4 peers need no table: their number is their address). When
/// full, peers without a route are forgotten: a forgotten peer that still has a connection on
/// its default shard gets a new number, looks unknown to the engine, is told DISCONNECT and
/// connects again.
const MAX_TABLE_PEERS: usize = 65_536;

/// Peer numbers with this bit come from the IPv6 table; the others encode socket, IPv4 address
/// and port.
const TABLE_BIT: u64 = 1 << 62;

/// Peer numbers and routes of one broker's UDP sockets.
#[derive(Debug, Default)]
pub struct PeerTable {
    /// IPv6 peers only.
    by_addr: BTreeMap<(usize, SocketAddr), PeerId>,
    addrs: BTreeMap<PeerId, (usize, SocketAddr)>,
    /// (peer, wireless node) → the shard that took it.
    routes: BTreeMap<(PeerId, Bytes), ShardId>,
    next: u64,
}

impl PeerTable {
    /// UDP sockets a table can number peers of (the socket index takes 14 bits of a peer
    /// number).
    pub const MAX_SOCKETS: usize = 1 << 14;

    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of `addr` as seen on socket `socket` (`socket` < [`Self::MAX_SOCKETS`]): computed
    /// for IPv4, from the table for IPv6.
    pub fn peer_of(&mut self, socket: usize, addr: SocketAddr) -> PeerId {
        match addr {
            SocketAddr::V4(v4) => PeerId(
                (socket as u64 & (Self::MAX_SOCKETS as u64 - 1)) << 48
                    | u64::from(u32::from(*v4.ip())) << 16
                    | u64::from(v4.port()),
            ),
            SocketAddr::V6(_) => {
                if let Some(peer) = self.by_addr.get(&(socket, addr)) {
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
                self.by_addr.insert((socket, addr), peer);
                self.addrs.insert(peer, (socket, addr));
                peer
            }
        }
    }

    /// The socket and address a peer number stands for, to send it a datagram.
    #[must_use]
    pub fn addr_of(&self, peer: PeerId) -> Option<(usize, SocketAddr)> {
        if peer.0 & TABLE_BIT == 0 {
            let socket = usize::try_from(peer.0 >> 48).ok()?;
            let ip = Ipv4Addr::from(u32::try_from((peer.0 >> 16) & 0xFFFF_FFFF).ok()?);
            let port = u16::try_from(peer.0 & 0xFFFF).ok()?;
            return Some((socket, SocketAddr::from((ip, port))));
        }
        self.addrs.get(&peer).copied()
    }

    /// The shard a datagram of `peer` from wireless node `node` ([`crate::wireless_node`]) goes
    /// to: the one that took it, else the peer's default shard of `shards`.
    #[must_use]
    pub fn shard_for(&self, peer: PeerId, node: &Bytes, shards: u16) -> ShardId {
        if !self.routes.is_empty()
            && let Some(shard) = self.routes.get(&(peer, node.clone()))
        {
            return *shard;
        }
        ShardId(u16::try_from(peer.0 % u64::from(shards.max(1))).unwrap_or(0))
    }

    /// [`Action::HandoffPeer`](crate::Action::HandoffPeer): later datagrams of this peer and
    /// node go to `to`.
    pub fn route(&mut self, peer: PeerId, node: Bytes, to: ShardId) {
        self.routes.insert((peer, node), to);
    }

    /// [`Action::ReleasePeer`](crate::Action::ReleasePeer) from shard `from`: the peer's
    /// datagrams may go to any shard again. A route that points elsewhere stays: the peer was
    /// handed on to another shard since (a CONNECT for a client id owned there), and a late
    /// release from its former shard must not take the new one's datagrams away.
    pub fn release(&mut self, peer: PeerId, node: &Bytes, from: ShardId) {
        let key = (peer, node.clone());
        if self.routes.get(&key) == Some(&from) {
            self.routes.remove(&key);
        }
    }
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
        assert_eq!(table.addr_of(peer), Some((3, v4)));
        assert!(table.by_addr.is_empty(), "no table entry for IPv4");
        let v6: SocketAddr = "[2001:db8::1]:1884".parse().unwrap();
        let peer6 = table.peer_of(0, v6);
        assert_eq!(table.peer_of(0, v6), peer6);
        assert_ne!(peer6.0 & TABLE_BIT, 0);
        assert_eq!(table.addr_of(peer6), Some((0, v6)));
    }

    #[test]
    fn routes_override_the_default_shard_until_released() {
        let mut table = PeerTable::default();
        let peer = table.peer_of(0, "192.0.2.7:47001".parse().unwrap());
        let default = table.shard_for(peer, &Bytes::new(), 3);
        assert_eq!(default, ShardId((peer.0 % 3) as u16));
        let other = ShardId((default.0 + 1) % 3);
        table.route(peer, Bytes::new(), other);
        assert_eq!(table.shard_for(peer, &Bytes::new(), 3), other);
        // Another wireless node behind the same forwarder keeps its own route.
        assert_eq!(table.shard_for(peer, &Bytes::from_static(b"n1"), 3), default);
        // A late release from a shard the peer has left keeps the newer route.
        table.release(peer, &Bytes::new(), default);
        assert_eq!(table.shard_for(peer, &Bytes::new(), 3), other);
        table.release(peer, &Bytes::new(), other);
        assert_eq!(table.shard_for(peer, &Bytes::new(), 3), default);
    }
}
