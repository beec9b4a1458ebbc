//! What a broker runs with, the same for every runtime.

use core::net::SocketAddr;
use core::time::Duration;

use musqratt_engine::Config;

use crate::auth::Auth;
use crate::layer::Layers;

/// The default of [`BrokerConfig::hibernate_after`].
pub const DEFAULT_HIBERNATE_AFTER: Duration = Duration::from_secs(5);

/// What a broker runs with: where it listens, how many shards, who may connect, and the
/// engine's settings (whose `shard` and `shard_count` each runtime sets per shard).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// TCP addresses to listen on for MQTT; port 0 picks a free port (the same for every
    /// shard). Default `127.0.0.1:1883`.
    pub listeners: Vec<SocketAddr>,
    /// UDP addresses to serve MQTT-SN 1.2 on (docs/MQTT-SN.md); none by default. Port 0 picks
    /// a free port.
    pub sn_listeners: Vec<SocketAddr>,
    /// Where MQTT-SN ADVERTISE datagrams go (`Config::sn_advertise_interval`), for example a
    /// subnet's broadcast address; none: not sent.
    pub sn_broadcast: Option<SocketAddr>,
    /// Shards, one thread each; 0 means one per core (the default).
    pub threads: usize,
    /// The engine's limits and capabilities.
    pub engine: Config,
    /// A connection silent for this long (between once and twice this) hibernates: its task and
    /// its I/O registration are freed until the peer sends or the broker has something for it
    /// (docs/adr/0009-hibernation.md; the tokio runtime). `None`: never. Default 5 s.
    pub hibernate_after: Option<Duration>,
    /// Who may connect; asked only when `engine.authenticate` is set. Default: everyone.
    pub auth: Auth,
    /// The byte-stream layers of the listeners that have some, by the address as written in
    /// `listeners` (docs/adr/0015-byte-stream-layers.md); a listener not named here is plain
    /// TCP, with no stack. Default: none. Today's only layer is the identity layer
    /// ([`Layers::identity`], `mqtt+identity://` in the binary's configuration), which
    /// measures the seam's cost; TLS and WebSocket come here.
    pub listener_layers: Vec<(SocketAddr, Layers)>,
    /// Where durable state is kept (docs/PERSISTENCE.md); `None` (the default): in memory only,
    /// lost at a restart, and the engine emits nothing for it.
    pub persistence: Option<Persistence>,
    /// How often shard 0 publishes the `$SYS` tree (docs/OBSERVABILITY.md,
    /// docs/adr/0018-metrics.md); `None` (the default here; the binary's `sys_interval_s`
    /// defaults to 10 s, as Mosquitto's): never.
    pub sys_interval: Option<Duration>,
}

/// The `[persistence]` settings: a store path and when writes are synced to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Persistence {
    /// The store's file.
    pub path: std::path::PathBuf,
    /// When writes reach the disk (every write reaches the OS before the acknowledgements
    /// that depend on it, whatever this says).
    pub fsync: FsyncPolicy,
    /// Queued messages of each durable session read at start (the engine's
    /// `max_ram_per_session`); the rest of a queue is read when it drains.
    pub max_ram_per_session: usize,
}

impl Persistence {
    /// A store at `path` synced as `fsync` says, 100 queued messages per session read at
    /// start (the engine's default `max_ram_per_session`).
    #[must_use]
    pub fn new(path: std::path::PathBuf, fsync: FsyncPolicy) -> Self {
        Self { path, fsync, max_ram_per_session: 100 }
    }

    /// With this many queued messages per session read at start (at least 1).
    #[must_use]
    pub fn with_max_ram_per_session(mut self, messages: usize) -> Self {
        self.max_ram_per_session = messages.max(1);
        self
    }
}

/// `fsync = "never" | "interval" | "always"` (docs/PERSISTENCE.md has the guarantee of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Survives `kill -9`, not a power loss.
    Never,
    /// Synced this often.
    Interval(Duration),
    /// Synced before every acknowledgement that depends on the write.
    Always,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listeners: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            sn_listeners: Vec::new(),
            sn_broadcast: None,
            threads: 0,
            engine: Config::default(),
            hibernate_after: Some(DEFAULT_HIBERNATE_AFTER),
            auth: Auth::default(),
            listener_layers: Vec::new(),
            persistence: None,
            sys_interval: None,
        }
    }
}

impl BrokerConfig {
    /// The layers of the listener configured at `addr` (as written in `listeners`), `None`
    /// for plain TCP.
    #[must_use]
    pub fn layers_of(&self, addr: SocketAddr) -> Option<Layers> {
        self.listener_layers.iter().find(|(at, _)| *at == addr).map(|(_, layers)| layers.clone())
    }

    /// Shards this configuration runs: `threads`, or the number of cores when it is 0.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(usize::from(u16::MAX))
    }
}
