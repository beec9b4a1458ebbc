//! What a reader (the HTTP listener, the `$SYS` task, a test) asks of a running broker: its
//! merged [`Metrics`] and its connected clients, gathered one shard at a time
//! (docs/adr/0018-metrics.md). Written once for every runtime: a runtime only says how to
//! reach its shards ([`Shards`]).

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;
use std::sync::Arc;

use musqratt_engine::{ClientInfo, ConnectionId, Engine, Metrics, PeerTable};

use crate::Clock;
use crate::metrics::Maximum;

/// A connection's peer address, as the runtime that owns its socket knows it.
pub type PeerOf<'a> = &'a dyn Fn(ConnectionId) -> Option<SocketAddr>;

/// How a runtime reaches its shards for a reader.
pub trait Shards: Send + Sync + 'static {
    /// How many shards there are.
    fn count(&self) -> usize;

    /// Calls `visit` with each running shard's engine and the peer addresses of its
    /// connections, holding that shard (its lock) only during the call and never two at once.
    /// Never called from inside a step (a blocking lock on a peer while holding one's own
    /// could deadlock, ADR 10).
    fn each(&self, visit: &mut dyn FnMut(&Engine, PeerOf<'_>));
}

/// One connected client, copied out of its shard (`GET /api/v1/clients`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its Client Identifier.
    pub client_id: String,
    /// The User Name of its CONNECT.
    pub username: Option<String>,
    /// Where it connects from, when the runtime knows.
    pub peer: Option<SocketAddr>,
    /// "3.1", "3.1.1", "5.0" or "MQTT-SN 1.2".
    pub protocol: &'static str,
    /// How long ago its CONNECT was accepted.
    pub connected_for: Duration,
    /// Messages waiting in its session's queue.
    pub queued: usize,
}

/// A page of [`MetricsSource::clients`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientsPage {
    /// Clients connected to the whole broker.
    pub total: usize,
    /// The page asked for, from 1.
    pub page: usize,
    /// Clients per page.
    pub limit: usize,
    /// This page's clients, in the order of their identifiers.
    pub clients: Vec<Client>,
}

/// The largest page: a request cannot make the broker copy more clients than this plus the
/// ones before the page (which it must look at to know where the page starts).
pub const MAX_PAGE_LIMIT: usize = 1000;

/// Reads the broker's merged [`Metrics`] and its clients from any thread.
#[derive(Clone)]
pub struct MetricsSource {
    shards: Arc<dyn Shards>,
    maximum: Arc<Maximum>,
    clock: Clock,
}

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSource").field("shards", &self.shards.count()).finish()
    }
}

impl MetricsSource {
    /// A source reading `shards`, whose engines run on `clock`.
    pub fn new(shards: Arc<dyn Shards>, clock: Clock) -> Self {
        Self { shards, maximum: Arc::new(Maximum::default()), clock }
    }

    /// Every shard's numbers, merged. Locks one shard at a time; not from inside a step.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let mut merged = Metrics::default();
        self.shards.each(&mut |engine, _| merged.merge(&engine.metrics()));
        self.maximum.refine(&mut merged);
        merged
    }

    /// Time since the broker started (the engines' clock).
    #[must_use]
    pub fn uptime(&self) -> Duration {
        Duration::from_micros(self.clock.now().as_micros())
    }

    /// Page `page` (from 1) of the connected clients, `limit` a page (at most
    /// [`MAX_PAGE_LIMIT`]), in `order`. Each shard gives its first `page × limit` in that
    /// order (by id the engine keeps them sorted; by queue length the shard picks them by
    /// number before copying any name), so the copy is bounded by the page, not by the number
    /// of clients; their count is taken on the way.
    #[must_use]
    pub fn clients(&self, page: usize, limit: usize, order: Order) -> ClientsPage {
        let (page, limit) = (page.max(1), limit.clamp(1, MAX_PAGE_LIMIT));
        let wanted = page.saturating_mul(limit);
        let now = self.clock.now();
        let (mut total, mut clients) = (0, Vec::new());
        self.shards.each(&mut |engine, peer_of| match order {
            Order::ClientId => {
                for (index, info) in engine.clients().enumerate() {
                    total += 1;
                    if index < wanted {
                        clients.push(copy(&info, peer_of, now));
                    }
                }
            }
            Order::Queued => {
                let mut longest: Vec<(usize, usize)> =
                    engine.clients().enumerate().map(|(i, info)| (info.queued, i)).collect();
                total += longest.len();
                longest.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                longest.truncate(wanted);
                let mut chosen: Vec<usize> = longest.into_iter().map(|(_, i)| i).collect();
                chosen.sort_unstable();
                let mut chosen = chosen.into_iter().peekable();
                for (index, info) in engine.clients().enumerate() {
                    if chosen.peek() == Some(&index) {
                        chosen.next();
                        clients.push(copy(&info, peer_of, now));
                    }
                }
            }
        });
        match order {
            Order::ClientId => clients.sort_by(|a, b| a.client_id.cmp(&b.client_id)),
            Order::Queued => clients.sort_by(|a, b| {
                b.queued.cmp(&a.queued).then_with(|| a.client_id.cmp(&b.client_id))
            }),
        }
        let clients = clients.into_iter().skip(wanted - limit).take(limit).collect();
        ClientsPage { total, page, limit, clients }
    }
}

/// The order of [`MetricsSource::clients`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By Client Identifier.
    #[default]
    ClientId,
    /// Longest queue first (then by Client Identifier): `musqratt top`'s table.
    Queued,
}

fn copy(info: &ClientInfo<'_>, peer_of: PeerOf<'_>, now: musqratt_engine::Instant) -> Client {
    // An MQTT-SN peer number of an IPv4 address is the address; others need the runtime's
    // table, and are shown without one.
    let peer = match info.sn_peer {
        Some(peer) => PeerTable::new().addr_of(peer).map(|(_, addr)| addr),
        None => peer_of(info.conn),
    };
    Client {
        client_id: info.client_id.to_owned(),
        username: info.username.map(str::to_owned),
        peer,
        protocol: info.protocol.name(),
        connected_for: Duration::from_micros(
            now.as_micros().saturating_sub(info.connected_since.as_micros()),
        ),
        queued: info.queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No shards: nothing to list, and a page past the end is empty rather than an error.
    struct None0;
    impl Shards for None0 {
        fn count(&self) -> usize {
            0
        }
        fn each(&self, _: &mut dyn FnMut(&Engine, PeerOf<'_>)) {}
    }

    #[test]
    fn an_empty_broker_has_an_empty_page() {
        let source = MetricsSource::new(Arc::new(None0), Clock::new());
        let page = source.clients(3, 0, Order::ClientId);
        assert_eq!((page.total, page.page, page.limit, page.clients.len()), (0, 3, 1, 0));
        assert_eq!(source.clients(1, usize::MAX, Order::Queued).limit, MAX_PAGE_LIMIT);
        assert_eq!(source.metrics().clients_connected, 0);
    }
}
