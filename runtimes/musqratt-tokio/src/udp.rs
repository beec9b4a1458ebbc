//! MQTT-SN 1.2 over UDP (docs/MQTT-SN.md): every shard binds every MQTT-SN address with
//! `SO_REUSEPORT`, so the kernel spreads peers over the shards by their source address and keeps
//! each peer on one socket. A shard's reader numbers the sender as a [`PeerId`] and hands the
//! datagram to the shard that took that peer ([`Action::HandoffPeer`]), or to the peer's default
//! shard, in person or by mail. Every shard sends through its own socket bound to the same
//! address, so replies come from the port the client talks to.
//!
//! One allocation per received datagram, its payload (`Bytes::copy_from_slice` of exactly its
//! length out of the reader's reusable buffer); sending writes the engine's `Bytes` as they are.
//!
//! [`Action::HandoffPeer`]: musqratt_engine::Action::HandoffPeer

use core::net::SocketAddr;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use musqratt_engine::{Input, PeerId, PeerTable, ShardId};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::shard::{Mail, ShardLock};

/// The largest datagram read: a UDP payload's limit, so nothing is ever truncated (an MQTT-SN
/// message longer than the engine accepts is refused by its decoder, not cut here).
const MAX_DATAGRAM: usize = 65_535;

/// What every shard shares: the peer numbers and routes, and where ADVERTISE goes.
#[derive(Debug, Default)]
pub(crate) struct SnShared {
    table: Mutex<PeerTable>,
    /// Where [`Action::SnBroadcast`](musqratt_engine::Action::SnBroadcast) datagrams are sent;
    /// none: they are dropped.
    pub(crate) broadcast: Option<SocketAddr>,
}

impl SnShared {
    pub(crate) fn new(broadcast: Option<SocketAddr>) -> Self {
        Self { table: Mutex::new(PeerTable::new()), broadcast }
    }

    fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One shard's MQTT-SN sockets (one per configured address, in order) and the shared table.
#[derive(Debug)]
pub(crate) struct SnSockets {
    /// Read through tokio, which wakes the reader.
    sockets: Vec<UdpSocket>,
    /// The same sockets (duplicated descriptors, non-blocking) to send through: a send is one
    /// `sendto` that never waits, and it must not depend on tokio's readiness, which knows
    /// nothing until the reactor's first turn (the first ADVERTISE, due at start, was refused
    /// with `WouldBlock`).
    senders: Vec<std::net::UdpSocket>,
    shared: Arc<SnShared>,
}

impl SnSockets {
    /// Registers this shard's sockets with its runtime.
    pub(crate) fn new(
        sockets: Vec<std::net::UdpSocket>,
        shared: Arc<SnShared>,
    ) -> io::Result<Self> {
        let senders =
            sockets.iter().map(std::net::UdpSocket::try_clone).collect::<io::Result<_>>()?;
        let sockets = sockets.into_iter().map(UdpSocket::from_std).collect::<io::Result<_>>()?;
        Ok(Self { sockets, senders, shared })
    }

    pub(crate) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// [`Action::SendDatagram`](musqratt_engine::Action::SendDatagram). Never waits: a datagram
    /// the socket cannot take now is dropped, as the network may drop it anyway (the engine
    /// retransmits what needs an acknowledgement, MQTT-SN §6.13).
    pub(crate) fn send(&self, peer: PeerId, bytes: &[u8]) {
        let Some((index, addr)) = self.shared.table().addr_of(peer) else { return };
        self.send_to(index, addr, bytes);
    }

    /// [`Action::SnBroadcast`](musqratt_engine::Action::SnBroadcast): to the configured
    /// broadcast address from the first socket, or nowhere.
    pub(crate) fn broadcast(&self, bytes: &[u8]) {
        if let Some(addr) = self.shared.broadcast {
            self.send_to(0, addr, bytes);
        }
    }

    fn send_to(&self, index: usize, addr: SocketAddr, bytes: &[u8]) {
        let Some(socket) = self.senders.get(index) else { return };
        if let Err(error) = socket.send_to(bytes, addr) {
            tracing::debug!(%error, %addr, "MQTT-SN datagram not sent");
        }
    }

    /// [`Action::HandoffPeer`](musqratt_engine::Action::HandoffPeer): later datagrams of the
    /// peer (and wireless node) go to `to`.
    pub(crate) fn route(&self, peer: PeerId, node: Bytes, to: ShardId) {
        self.shared.table().route(peer, node, to);
    }

    /// [`Action::ReleasePeer`](musqratt_engine::Action::ReleasePeer).
    pub(crate) fn release(&self, peer: PeerId, node: &Bytes, from: ShardId) {
        self.shared.table().release(peer, node, from);
    }
}

/// Binds every MQTT-SN address once per shard. Returns each shard's sockets and the bound
/// addresses (port 0 resolved once, for all shards).
pub(crate) fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
    broadcast: bool,
) -> io::Result<(Vec<Vec<std::net::UdpSocket>>, Vec<SocketAddr>)> {
    if addrs.len() > PeerTable::MAX_SOCKETS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many MQTT-SN addresses"));
    }
    let mut per_shard: Vec<Vec<std::net::UdpSocket>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let annotate =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on udp {addr}: {e}"));
        if addr.port() != 0 {
            // Without this, `SO_REUSEPORT` would let a second broker share the port.
            std::net::UdpSocket::bind(addr).map_err(annotate)?;
        }
        let first = bind(*addr, broadcast).map_err(annotate)?;
        let local = first.local_addr()?;
        bound.push(local);
        for sockets in per_shard.iter_mut().skip(1) {
            sockets.push(bind(local, broadcast).map_err(annotate)?);
        }
        per_shard[0].push(first);
    }
    Ok((per_shard, bound))
}

fn bind(addr: SocketAddr, broadcast: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    ))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if broadcast {
        socket.set_broadcast(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Reads the shard's socket `index` until the shard stops.
pub(crate) async fn read(shard: Arc<ShardLock>, sockets: Arc<SnSockets>, index: usize) {
    let mut buf = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
    let Some(socket) = sockets.sockets.get(index) else { return };
    loop {
        let congested = {
            let state = shard.lock();
            state.congested().then(|| state.uncongested.clone())
        };
        if let Some(uncongested) = congested {
            // Links to other shards are full: leave datagrams to the kernel (which drops what
            // overflows its buffer, as UDP may) until they drain.
            uncongested.notified().await;
            continue;
        }
        let (len, addr) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors of earlier sends surface here on some systems: not fatal.
                tracing::debug!(%error, "MQTT-SN receive failed");
                continue;
            }
        };
        let bytes = Bytes::copy_from_slice(&buf[..len]);
        let node = musqratt_engine::wireless_node(&bytes);
        {
            let mut state = shard.lock();
            let shards = state.shard_count();
            let (peer, to) = {
                let mut table = sockets.shared.table();
                let peer = table.peer_of(index, addr);
                (peer, table.shard_for(peer, &node, shards))
            };
            if to == state.id {
                state.input(Input::Datagram { peer, bytes });
            } else {
                state.send_mail(to, Mail::Datagram { peer, bytes });
            }
        }
        // A flood on one socket must not starve the shard's other tasks.
        tokio::task::coop::consume_budget().await;
    }
}
