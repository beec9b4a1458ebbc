//! MusQraTT on tokio, thread per core.
//!
//! [`Broker::start`] runs one OS thread per shard. Each thread has its own `current_thread`
//! tokio runtime and `LocalSet`, and one [`Engine`](musqratt_engine::Engine) behind a lock held
//! for one step at a time. Every shard listens on every address with `SO_REUSEPORT`, so the
//! kernel spreads new connections over the shards; a connection whose client identifier
//! belongs to another shard is handed over there (the socket moves, the engine says where).
//! Shards talk over bounded FIFO channels; when the receiving shard is idle (its lock free, no
//! older mail), the sending thread runs the receiving step itself and writes its deliveries to
//! the sockets, so the message costs one thread wake-up, not two (docs/adr/0010).
//!
//! ```no_run
//! use musqratt_tokio::{Broker, BrokerConfig};
//!
//! let mut config = BrokerConfig::default();
//! config.listeners = vec!["127.0.0.1:0".parse().unwrap()];
//! config.threads = 2;
//! let broker = Broker::start(config).expect("listening");
//! println!("MQTT on {}", broker.local_addr());
//! broker.shutdown().unwrap(); // DISCONNECT 0x8B to MQTT 5.0 clients, flush, join the threads
//! ```

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

mod connection;
mod hibernate;
mod listen;
mod shard;
mod udp;

pub use musqratt_engine as engine;
pub use musqratt_kit::{
    AllowAnonymous, Auth, AuthError, AuthReply, Authenticator, BrokerConfig,
    DEFAULT_HIBERNATE_AFTER,
};
pub use shard::MetricsSource;

/// Starts a broker with `config` (the runtime kit's, the same as every runtime's): the same as
/// [`Broker::start`], under the name every runtime's crate gives it (docs/RUNTIMES.md).
///
/// # Errors
/// As [`Broker::start`].
pub fn start(config: BrokerConfig) -> io::Result<Broker> {
    Broker::start(config)
}

/// Counters shared by all shards, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) handoffs: AtomicU64,
    pub(crate) hibernations: AtomicU64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) direct_steps: AtomicU64,
    pub(crate) direct_writes: AtomicU64,
    /// Set when a shard thread panicked (the broker then stops).
    pub(crate) failed: AtomicBool,
}

/// A snapshot of the broker's counters ([`Broker::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// TCP connections accepted, on all shards.
    pub accepted: u64,
    /// Connections moved to the shard owning their client identifier.
    pub handoffs: u64,
    /// Times a connection went into hibernation ([`BrokerConfig::hibernate_after`]).
    pub hibernations: u64,
    /// Times a hibernating connection woke: its peer sent, or the broker had something for it.
    pub wakeups: u64,
    /// Messages between shards handled by the sending shard's thread, in person, instead of
    /// waking the receiving shard's thread (docs/adr/0010).
    pub direct_steps: u64,
    /// Deliveries written whole to the socket at the end of the step that queued them (by
    /// whichever thread ran it), without waking the connection's task.
    pub direct_writes: u64,
}

/// Starts a graceful shutdown from anywhere (a signal handler, another thread).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Asks every shard to stop: listeners close, MQTT 5.0 clients get DISCONNECT 0x8B Server
    /// shutting down, queued bytes are flushed (for at most a few seconds), threads end.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }

    /// Completes once the broker is stopping: asked to by a handle, or because a shard failed.
    pub async fn stopping(&self) {
        let mut stopping = self.0.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

/// A running broker: its shard threads and the addresses they listen on.
#[derive(Debug)]
pub struct Broker {
    local_addrs: Vec<SocketAddr>,
    sn_local_addrs: Vec<SocketAddr>,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    metrics: MetricsSource,
}

impl Broker {
    /// Binds every listener on every shard and starts the shard threads. Returns once all shards
    /// are accepting connections.
    ///
    /// # Errors
    /// An address cannot be bound (in use, not local, no permission) or a thread or runtime
    /// cannot be created.
    pub fn start(config: BrokerConfig) -> io::Result<Self> {
        let shards = config.shard_count();
        if config.listeners.is_empty() && config.sn_listeners.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on"));
        }
        let (listeners, local_addrs) = listen::bind_all(&config.listeners, shards)?;
        let (sn_sockets, sn_local_addrs) =
            udp::bind_all(&config.sn_listeners, shards, config.sn_broadcast.is_some())?;
        let sn_shared = Arc::new(udp::SnShared::new(config.sn_broadcast));
        let (tx, _) = watch::channel(false);
        let shutdown = ShutdownHandle(Arc::new(tx));
        let counters = Arc::new(Counters::default());
        let links = shard::links(shards);
        let metrics =
            MetricsSource::new(Arc::new(shard::TokioShards(links.directory.clone())), links.clock);
        let mut broker = Self {
            local_addrs,
            sn_local_addrs,
            shutdown: shutdown.clone(),
            threads: Vec::new(),
            counters,
            metrics,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let durable = match &config.persistence {
            Some(settings) => Some(musqratt_store::Durable::open(settings, links.clock.now())?),
            None => None,
        };
        let layers: Vec<_> = config.listeners.iter().map(|addr| config.layers_of(*addr)).collect();
        let per_shard = listeners.into_iter().zip(sn_sockets).zip(links.mailboxes).enumerate();
        for (index, ((listeners, sn_sockets), mailbox)) in per_shard {
            let mut engine = config.engine.clone();
            engine.persistence = durable.is_some();
            engine.shard = musqratt_engine::ShardId(index as u16);
            engine.shard_count = shards as u16;
            let context = shard::Context {
                engine,
                hibernate_after: config.hibernate_after,
                listeners,
                layers: layers.clone(),
                sn_sockets,
                sn_shared: sn_shared.clone(),
                mailbox,
                peers: links.senders.clone(),
                directory: links.directory.clone(),
                shutdown: shutdown.clone(),
                counters: broker.counters.clone(),
                clock: links.clock,
                auth: config.auth.clone(),
                durable: durable.clone(),
                ready: ready_tx.clone(),
                sys: config.sys_interval.map(|every| (every, broker.metrics.clone())),
            };
            let thread = std::thread::Builder::new()
                .name(format!("musqratt-shard-{index}"))
                .spawn(move || shard::run(context));
            match thread {
                Ok(handle) => broker.threads.push(handle),
                Err(error) => {
                    let _ = broker.stop();
                    return Err(error);
                }
            }
        }
        drop(ready_tx);
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    let _ = broker.stop();
                    return Err(error);
                }
                Err(_) => {
                    let _ = broker.stop();
                    return Err(io::Error::other("a shard thread ended while starting"));
                }
            }
        }
        tracing::info!(addrs = ?broker.local_addrs, sn = ?broker.sn_local_addrs, shards, "broker started");
        Ok(broker)
    }

    /// The address of the first listener (the one to connect to in tests).
    ///
    /// # Panics
    /// The broker listens on MQTT-SN only.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// The MQTT-SN (UDP) addresses, in the order configured, with the ports picked for 0.
    #[must_use]
    pub fn sn_local_addrs(&self) -> &[SocketAddr] {
        &self.sn_local_addrs
    }

    /// The addresses of all listeners, in the order configured, with the ports picked for 0.
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Shards (threads) running.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.threads.len()
    }

    /// A handle that stops this broker from elsewhere.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            handoffs: self.counters.handoffs.load(Ordering::Relaxed),
            hibernations: self.counters.hibernations.load(Ordering::Relaxed),
            wakeups: self.counters.wakeups.load(Ordering::Relaxed),
            direct_steps: self.counters.direct_steps.load(Ordering::Relaxed),
            direct_writes: self.counters.direct_writes.load(Ordering::Relaxed),
        }
    }

    /// The broker's numbers now, every shard's merged (docs/OBSERVABILITY.md). Blocks on each
    /// shard's lock in turn: do not call it from inside a broker callback.
    #[must_use]
    pub fn metrics(&self) -> musqratt_engine::Metrics {
        self.metrics.metrics()
    }

    /// What reads [`Broker::metrics`] from another thread (an HTTP listener).
    #[must_use]
    pub fn metrics_source(&self) -> MetricsSource {
        self.metrics.clone()
    }

    /// Stops gracefully (see [`ShutdownHandle::shutdown`]) and waits for every shard thread.
    /// Blocks: from async code call it on a blocking thread.
    ///
    /// # Errors
    /// A shard thread panicked while the broker ran (the others were then stopped).
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    /// Waits, blocking, until a [`ShutdownHandle`] has stopped the broker.
    ///
    /// # Errors
    /// A shard thread panicked (which stops the broker).
    pub fn wait(mut self) -> io::Result<()> {
        self.join()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.shutdown.shutdown();
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if self.counters.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("a shard thread panicked: the broker stopped"));
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
