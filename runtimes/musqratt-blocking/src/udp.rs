//! MQTT-SN over UDP (docs/MQTT-SN.md, "Runtime contract"): one reader thread per UDP socket
//! numbers each source address as a [`PeerId`] and sends each datagram to the shard that took
//! its peer ([`Action::HandoffPeer`](musqratt_engine::Action::HandoffPeer)), or to the peer's
//! default shard (`peer % shards`) until one does. Engine threads send datagrams themselves
//! with `send_to` on the shared socket.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::net::UdpSocket;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use musqratt_engine::{Input, PeerId, PeerTable, ShardId};

use crate::inbox::Inboxes;
use crate::shard::ShardInput;

/// How often a blocked reader looks at the stop flag: the socket's receive timeout
/// (`SO_RCVTIMEO`, no poll).
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The UDP sockets and the peer table every thread shares.
#[derive(Debug)]
pub(crate) struct Udp {
    pub(crate) sockets: Vec<UdpSocket>,
    table: Mutex<PeerTable>,
}

impl Udp {
    pub(crate) fn bind(addrs: &[SocketAddr]) -> std::io::Result<Self> {
        if addrs.len() > PeerTable::MAX_SOCKETS {
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
    pub(crate) fn read_loop(&self, index: usize, shards: &Inboxes, stopping: &AtomicBool) {
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
            let count = u16::try_from(shards.len()).unwrap_or(u16::MAX);
            let (peer, shard) = {
                let mut table = self.table();
                let peer = table.peer_of(index, addr);
                (peer, table.shard_for(peer, &node, count))
            };
            shards.mail(usize::from(shard.0), ShardInput::Engine(Input::Datagram { peer, bytes }));
        }
    }

    pub(crate) fn send(&self, peer: PeerId, bytes: &[u8]) {
        let Some((index, addr)) = self.table().addr_of(peer) else { return };
        let Some(socket) = self.sockets.get(index) else { return };
        if let Err(error) = socket.send_to(bytes, addr) {
            tracing::debug!(%error, %addr, "UDP send failed");
        }
    }

    pub(crate) fn route(&self, peer: PeerId, node: Bytes, to: ShardId) {
        self.table().route(peer, node, to);
    }

    pub(crate) fn release(&self, peer: PeerId, node: &Bytes, from: ShardId) {
        self.table().release(peer, node, from);
    }
}
