//! MusQraTT on io_uring, thread per core: one [compio] runtime and one
//! [`musqratt_engine::Engine`] per shard, each on its own OS thread.
//!
//! ```no_run
//! let mut config = musqratt_compio::BrokerConfig::default(); // 127.0.0.1:1883
//! config.threads = 2;
//! let broker = musqratt_compio::start(config)?;
//! println!("listening on {:?}, io_uring: {}", broker.local_addrs(), broker.uses_io_uring());
//! broker.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Threads and tasks
//!
//! Every shard thread runs a compio runtime (io_uring, or epoll through compio's `polling`
//! driver where io_uring is unavailable or refused). Its engine, with everything a step of it
//! touches (each connection's queue and state, the links to other shards, the inbox receiver),
//! is the shard's core, behind a mutex: the shard's thread locks it for every input, and another
//! shard's thread may lock it (`try_lock` only) to run one step in person (below). The compio
//! sockets, listeners and tasks never leave the thread. On it run:
//!
//! - one **accept task** per listener: every shard has its own `SO_REUSEPORT` listener on each
//!   address, so the kernel spreads connections over the shards;
//! - per connection, a **reader task** reading into one owned `BytesMut` that is handed to the
//!   kernel and given back by each read (the bytes read are split off for `Input::Data`; the
//!   allocation is reclaimed once the engine has dropped them), and a **writer task** writing
//!   the connection's queued `Bytes` with one vectored write per batch and reporting
//!   `Input::Written`;
//! - one **timer task** sleeping until the engine's `poll_timeout()`, re-armed when an input
//!   moves the deadline earlier;
//! - one **inbox task** taking messages from the shard's bounded FIFO channel (`ToShard`
//!   messages, adopted connections, shutdown) under the lock, one **forwarder task** per other
//!   shard that feeds that shard's channel when it is full, keeping the order, and one
//!   **errand task** that wakes the writers other threads' steps left work to.
//!
//! Every input is followed, before the lock is released, by draining `poll_action`, so actions
//! are carried out in the order the engine gave them.
//!
//! **Between shards, in person** (docs/adr/0012): an `Action::ToShard` whose target shard is
//! idle (its lock free, nothing in its inbox, nothing of ours waiting for it) is not mailed: the
//! sending thread runs the step there itself and writes the deliveries with a non-blocking send
//! on a duplicate of each socket's descriptor, when that connection's writer has no write in
//! flight. What the socket does not take is left to the writer task; the owning thread is woken
//! only for that, for a close, a sooner timer deadline or a full link. So a message between idle
//! shards wakes one broker thread, as one within a shard does. [`Broker::stats`] counts
//! these steps and writes.
//!
//! A connection accepted on a shard that does not own its client identifier (ADR 1) is moved
//! after CONNECT: its file descriptor is duplicated into a `std::net::TcpStream` (safe std
//! conversions), sent to the owner shard with the bytes the engine handed back, adopted there
//! (`Input::Adopted`), and the old shard's descriptor is dropped.

mod conn;
mod notify;
mod shard;

use core::net::SocketAddr;
use core::time::Duration;
use std::io;
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::{self, JoinHandle};

use musqratt_engine::ShardId;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

pub use crate::conn::READ_BUFFER;
pub use crate::shard::MetricsSource;
use crate::shard::{Counters, Directory, ShardMsg};
use musqratt_kit::Clock;
pub use musqratt_kit::{AllowAnonymous, Auth, AuthError, AuthReply, Authenticator, BrokerConfig};

/// How long [`Broker::shutdown`] waits for the shard threads.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Capacity of each shard's inbox channel (messages from other shards and adopted
/// connections). A sender finding it full keeps its messages in order in a local queue.
pub const SHARD_CHANNEL_CAPACITY: usize = 1024;

/// Which compio driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Driver {
    /// io_uring if the kernel offers every operation the broker needs, otherwise epoll (compio's
    /// `polling` driver). What [`start`] uses.
    #[default]
    Auto,
    /// io_uring or nothing: starting fails where the kernel does not offer it.
    IoUring,
    /// epoll readiness through compio's `polling` driver, as on kernels without io_uring.
    Poll,
}

/// Starts a broker with `config` (the runtime kit's, the same as every runtime's): its
/// listeners, `threads` shards, engine settings and authenticator, on io_uring where the
/// kernel offers it and on epoll otherwise ([`Driver::Auto`]).
///
/// # Errors
/// MQTT-SN addresses are given (this runtime serves MQTT over TCP only), a listener could not
/// be bound, a thread could not start or its compio runtime could not be built.
pub fn start(config: BrokerConfig) -> io::Result<Broker> {
    start_with(config, Driver::Auto)
}

/// [`start`] on a chosen compio [`Driver`].
///
/// # Errors
/// As [`start`]; with [`Driver::IoUring`], also when io_uring is unavailable.
pub fn start_with(config: BrokerConfig, driver: Driver) -> io::Result<Broker> {
    if !config.sn_listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the io-uring runtime does not serve MQTT-SN: use the tokio or blocking runtime",
        ));
    }
    let shards = config.shard_count();
    let (engine, listen, auth) = (&config.engine, &config.listeners, &config.auth);
    let shard_count = u16::try_from(shards)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "shards must be 1..=65535"))?;
    // Bind every shard's listener first: a taken port fails before any thread starts. The first
    // shard's socket picks the port when 0 is asked for; the others join it with SO_REUSEPORT.
    let mut local_addrs = Vec::with_capacity(listen.len());
    let mut per_shard: Vec<Vec<std::net::TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    for &addr in listen {
        let mut bound = addr;
        for listeners in &mut per_shard {
            let listener = bind_reuseport(bound)?;
            bound = listener.local_addr()?;
            listeners.push(listener);
        }
        local_addrs.push(bound);
    }

    let layers: Vec<_> = listen.iter().map(|addr| config.layers_of(*addr)).collect();
    let clock = Clock::new();
    let durable = match &config.persistence {
        Some(settings) => Some(musqratt_store::Durable::open(settings, clock.now())?),
        None => None,
    };
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| async_channel::bounded(SHARD_CHANNEL_CAPACITY)).unzip();
    let directory: Directory = (0..shards).map(|_| OnceLock::new()).collect();
    let counters = Arc::new(Counters::default());
    let metrics = MetricsSource::new(Arc::new(shard::CompioShards(Arc::clone(&directory))), clock);
    let mut handle = Broker {
        metrics: metrics.clone(),
        local_addrs,
        io_uring: true,
        counters: Arc::clone(&counters),
        senders: senders.clone(),
        threads: Vec::with_capacity(shards),
        stopped: false,
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    for (index, (rx, listeners)) in receivers.into_iter().zip(per_shard).enumerate() {
        let mut engine = engine.clone();
        engine.shard = ShardId(u16::try_from(index).unwrap_or(u16::MAX));
        engine.shard_count = shard_count;
        engine.persistence = durable.is_some();
        let setup = shard::ShardSetup {
            config: engine,
            clock,
            auth: auth.clone(),
            rx,
            senders: senders.clone(),
            directory: Arc::clone(&directory),
            counters: Arc::clone(&counters),
            listeners,
            layers: layers.clone(),
            durable: durable.clone(),
            driver,
            ready: ready_tx.clone(),
            sys: config.sys_interval.map(|every| (every, metrics.clone())),
        };
        let thread = thread::Builder::new().name(format!("mqtt-shard-{index}"));
        let spawned = thread.spawn(move || shard::run(setup));
        match spawned {
            Ok(join) => handle.threads.push(join),
            Err(e) => {
                handle.stop();
                return Err(e);
            }
        }
    }
    drop(ready_tx);
    // Each thread reports whether its runtime started, and on which driver.
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(io_uring)) => handle.io_uring &= io_uring,
            Ok(Err(e)) => {
                handle.stop();
                return Err(e);
            }
            Err(_) => {
                handle.stop();
                return Err(io::Error::other("a shard thread ended before starting"));
            }
        }
    }
    for addr in &handle.local_addrs {
        tracing::info!(%addr, shards, io_uring = handle.io_uring,
            "listening (MQTT over TCP, compio runtime)");
    }
    Ok(handle)
}

/// A TCP listener with SO_REUSEADDR and SO_REUSEPORT, listening.
fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Counters of a running broker ([`Broker::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages between shards handled by the sending shard's thread, which ran the receiving
    /// shard's step in person instead of waking its thread (docs/adr/0012).
    pub direct_steps: u64,
    /// Deliveries written whole to the socket at the end of the step that queued them, by the
    /// thread that ran it (this shard's or, in person, another's), without the writer task.
    pub direct_writes: u64,
    /// Times such a step had to wake the receiving shard's thread after all: a write the socket
    /// did not take whole, a connection to close, a sooner timer deadline, a full link.
    pub owner_wakes: u64,
}

/// The former name of [`Broker`].
pub type BrokerHandle = Broker;

/// A running broker. Dropping it shuts it down as [`Broker::shutdown`] does.
pub struct Broker {
    local_addrs: Vec<SocketAddr>,
    io_uring: bool,
    counters: Arc<Counters>,
    senders: Vec<async_channel::Sender<ShardMsg>>,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
    metrics: MetricsSource,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addrs", &self.local_addrs)
            .field("io_uring", &self.io_uring)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// The broker's numbers now, every shard's merged (docs/OBSERVABILITY.md). Blocks on each
    /// shard's lock in turn.
    #[must_use]
    pub fn metrics(&self) -> musqratt_engine::Metrics {
        self.metrics.metrics()
    }

    /// What reads [`Broker::metrics`] from another thread (an HTTP listener).
    #[must_use]
    pub fn metrics_source(&self) -> MetricsSource {
        self.metrics.clone()
    }

    /// The addresses the broker listens on, in the order configured, with the real port where
    /// port 0 was asked for.
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The MQTT-SN addresses: none, this runtime serves MQTT over TCP only (the same accessor
    /// as the other runtimes').
    #[must_use]
    pub fn sn_local_addrs(&self) -> &[SocketAddr] {
        &[]
    }

    /// Whether every shard runs on io_uring (`false`: at least one fell back to epoll).
    #[must_use]
    pub fn uses_io_uring(&self) -> bool {
        self.io_uring
    }

    /// The broker's counters so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        use core::sync::atomic::Ordering::Relaxed;
        Stats {
            direct_steps: self.counters.direct_steps.load(Relaxed),
            direct_writes: self.counters.direct_writes.load(Relaxed),
            owner_wakes: self.counters.owner_wakes.load(Relaxed),
        }
    }

    /// Stops accepting, feeds `Input::Shutdown` to every engine (MQTT 5.0 clients get
    /// DISCONNECT 0x8B Server shutting down), flushes and closes every connection, and waits up
    /// to [`SHUTDOWN_GRACE`] for the shard threads to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if core::mem::replace(&mut self.stopped, true) {
            return;
        }
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        for tx in &self.senders {
            // A closed channel means the shard thread has already ended.
            let _ = tx.send_blocking(ShardMsg::Shutdown { deadline });
        }
        self.senders.clear();
        join_until(core::mem::take(&mut self.threads), deadline);
        tracing::info!("broker stopped");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Joins the threads that end before `deadline` (plus a little for the runtime to drop);
/// the others are left running, with a warning.
fn join_until(threads: Vec<JoinHandle<()>>, deadline: std::time::Instant) {
    let deadline = deadline + Duration::from_millis(200);
    let mut threads = threads;
    loop {
        let (done, running): (Vec<_>, Vec<_>) =
            threads.into_iter().partition(JoinHandle::is_finished);
        for join in done {
            if join.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
        threads = running;
        if threads.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(count = threads.len(), "shard threads still running after the grace");
            return;
        }
        // std has no join with a timeout.
        thread::sleep(Duration::from_millis(5));
    }
}

/// Shuts a socket down both ways (a plain syscall on the close path): pending reads end with
/// end of stream, and the peer sees FIN after everything already written.
fn shutdown_socket(fd: &impl std::os::fd::AsFd) {
    let _ = SockRef::from(fd).shutdown(std::net::Shutdown::Both);
}
