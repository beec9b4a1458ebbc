//! MusQraTT on blocking sockets and threads only: the stand-in for CompositeOS, whose netmgr
//! offers blocking RPC sockets (bind, listen, accept; read and write through 2 KiB shared-memory
//! buffers), one connection per thread, and no poll, select or epoll.
//!
//! ```no_run
//! let mut config = musqratt_blocking::BrokerConfig::default(); // 127.0.0.1:1883
//! config.threads = 2;
//! let broker = musqratt_blocking::start(config)?;
//! println!("listening on {:?}", broker.local_addrs());
//! broker.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Threads
//!
//! One wake-up per message (docs/adr/0011): the thread that read the bytes runs the engine step
//! and writes the replies and deliveries itself.
//!
//! - each shard's state (its [`musqratt_engine::Engine`] and connections) is behind a lock held
//!   for one step: an input, the mail before it, the timers due, every action carried out;
//! - per connection, one **reader thread** blocks in a read of at most 2 KiB and steps its
//!   shard with the bytes itself when no other thread is stepping it (`try_lock`); if one is,
//!   it leaves them in the shard's mailbox, which the stepping thread takes out before letting
//!   the shard go. It waits while more than [`READ_CREDIT`] bytes of it are unhandled, or while
//!   its shard has more than [`FORWARD_CREDIT`] messages unhandled by others, so TCP pushes back
//!   on a client that floods;
//! - a step's sends are written by the stepping thread with [`Transport::try_write`] (never
//!   waiting); what the socket does not take at once goes to the connection's **writer thread**,
//!   which writes it in pieces of at most 2 KiB and reports it written, and the stepping threads
//!   do not write to that socket until the writer has caught up (order);
//! - a message for another shard (`Action::ToShard`) is handled in person by the stepping thread
//!   when that shard is idle (`try_lock`, its mail first: FIFO per pair of shards), mailed
//!   otherwise; no thread waits for a shard's lock while holding another's;
//! - one **engine thread** per shard waits on its mailbox (a condition variable, with the
//!   engine's next deadline as timeout: the only timed wait anywhere, not a socket timeout) and
//!   steps the shard for timers, accepted and handed-over connections, and mail no step took;
//! - one **accept thread** per listener blocks in accept and gives connections to the shards in
//!   turn (with the kit's socket options, and its pause and single log line when descriptors
//!   run out).
//!
//! [`Broker::stats`] counts which of these paths were taken.
//!
//! A connection handed to another shard after CONNECT (ADR 1) keeps its threads: only the shard
//! they report to changes, under a lock that keeps its bytes in order (see `Route`).
//!
//! The sockets come from a [`Transport`]: [`StdTransport`] over `std::net` here, a netmgr client
//! on CompositeOS (the trait's documentation maps one onto the other).
//!
//! A listener with byte-stream layers (`BrokerConfig::listener_layers`) gives each connection
//! a stack (the runtime kit's `Stack`), kept with the shard's handle of the connection: the
//! stepping thread passes reads and sends through it; a plain listener's connections have none.
//!
//! MQTT-SN over UDP (`BrokerConfig::sn_listeners`): one reader thread per UDP socket numbers source
//! addresses as peers and mails each datagram to the shard that took its peer (or the peer's
//! default shard); the stepping threads answer with `send_to` on the shared socket (`std::net`
//! directly: netmgr's `udp_bind`/`recvfrom`/`sendto` map onto it one to one).

mod conn;
mod inbox;
mod shard;
mod store;
mod sys;
mod transport;
mod udp;

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use std::thread::{self, JoinHandle};

use musqratt_engine::{ConnectionId, Engine, ShardId};
use musqratt_kit::{AcceptErrors, Layers};

pub use transport::{CHUNK, StdTransport, Transport};

pub use crate::conn::READ_CREDIT;
use crate::conn::Route;
pub use crate::inbox::FORWARD_CREDIT;
use crate::inbox::Inboxes;
use crate::shard::{Clock, Shard, ShardInput};
use musqratt_kit::Decisions;
pub use musqratt_kit::MetricsSource;
pub use musqratt_kit::{AllowAnonymous, Auth, AuthError, AuthReply, Authenticator, BrokerConfig};

/// What the broker's threads did since it started (see the crate documentation, "Threads"):
/// how many inputs were handled by the thread that had them and how many by mail, and how many
/// sends were written by the stepping thread and how many by writer threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Inputs (bytes read, writes reported, closes) a connection's reader or writer thread
    /// handled itself, stepping its shard, because no other thread was stepping it.
    pub direct_steps: u64,
    /// Messages between shards (`Action::ToShard`) handled in person by the sending shard's
    /// stepping thread, the receiving shard being idle.
    pub peer_steps: u64,
    /// Inputs left in a shard's mailbox, for whichever thread steps it next (its engine thread,
    /// woken for them, or the next stepping thread): the shard was busy, or the input was an
    /// accepted or handed-over connection, or a datagram.
    pub mailed: u64,
    /// Times an engine thread was woken: for mail that no stepping thread was there to take
    /// (the broker's second wake-up per message, which the direct path avoids), or for a sooner
    /// timer. Not counted: its waking for timers that came due.
    pub engine_wakeups: u64,
    /// Sends written whole to their socket by the thread that ran the step.
    pub direct_writes: u64,
    /// Sends (or what was left of them) given to a connection's writer thread: the socket did
    /// not take them at once, the writer had older bytes queued, or the transport has no
    /// non-blocking write.
    pub writer_sends: u64,
}

impl Stats {
    fn of(shards: &Inboxes) -> Self {
        let counters = &shards.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Self {
            engine_wakeups: shards.iter().map(|shard| shard.mailbox.wakeups()).sum(),
            direct_steps: get(&counters.direct_steps),
            peer_steps: get(&counters.peer_steps),
            mailed: get(&counters.mailed),
            direct_writes: get(&counters.direct_writes),
            writer_sends: get(&counters.writer_sends),
        }
    }
}

/// How long [`Broker::shutdown`] waits for the broker's threads.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Starts a broker with `config` (the runtime kit's, the same as every runtime's): its MQTT
/// listeners (and their byte-stream layers), MQTT-SN addresses (docs/MQTT-SN.md: SN clients
/// share the topic space, retained messages and sessions with the MQTT clients), `threads`
/// shards, engine settings and authenticator, over [`StdTransport`]. `hibernate_after` and
/// `sn_broadcast` do not apply here.
///
/// # Errors
/// More than 65,535 shards, a listener or UDP socket could not be bound, or a thread could not
/// start.
pub fn start(config: BrokerConfig) -> io::Result<Broker> {
    start_with::<StdTransport>(config)
}

/// [`start`] over any [`Transport`] (a netmgr client on CompositeOS). MQTT-SN, if configured,
/// uses `std::net` UDP sockets whatever the transport.
///
/// # Errors
/// As [`start`].
pub fn start_with<T: Transport>(config: BrokerConfig) -> io::Result<Broker> {
    let shards = config.shard_count();
    let layers: Vec<_> = config.listeners.iter().map(|addr| config.layers_of(*addr)).collect();
    let engine = config.engine.clone();
    let (listen, layers, udp_listen) =
        (&config.listeners[..], &layers[..], &config.sn_listeners[..]);
    let (auth, persistence) = (&config.auth, config.persistence.as_ref());
    let sys_interval = config.sys_interval;
    let shard_count = u16::try_from(shards)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "shards must be 1..=65535"))?;
    // Bind first: a taken port fails before any thread starts.
    let mut listeners = Vec::with_capacity(listen.len());
    let mut local_addrs = Vec::with_capacity(listen.len());
    for &addr in listen {
        let listener = T::bind(addr)?;
        local_addrs.push(T::local_addr(&listener)?);
        listeners.push(Arc::new(listener));
    }
    // MQTT-SN: bind the UDP sockets here and start their receiver threads (see crate docs).

    let udp =
        if udp_listen.is_empty() { None } else { Some(Arc::new(udp::Udp::bind(udp_listen)?)) };
    let mut sn_local_addrs = Vec::new();
    if let Some(udp) = &udp {
        for socket in &udp.sockets {
            sn_local_addrs.push(socket.local_addr()?);
        }
    }
    let clock = Clock::new();
    let durable = persistence.map(|p| store::Durable::open(p, clock.now())).transpose()?;
    let mut engines = Vec::with_capacity(shards);
    // Where a late authentication answer finds its shard (set once the shards exist).
    let inboxes: Arc<OnceLock<Weak<Inboxes>>> = Arc::new(OnceLock::new());
    for index in 0..shards {
        let mut config = engine.clone();
        config.shard = ShardId(u16::try_from(index).unwrap_or(u16::MAX));
        config.shard_count = shard_count;
        config.persistence = durable.is_some();
        let found = Arc::clone(&inboxes);
        let decisions = Decisions::new(move || {
            if let Some(inboxes) = found.get().and_then(Weak::upgrade) {
                inboxes.mail(index, ShardInput::Decided);
            }
        });
        let mut engine = Engine::new(config);
        let mut shard = match &durable {
            Some(durable) => {
                durable.restore(&mut engine, clock.now());
                Shard::new(engine).with_steps(durable.steps())
            }
            None => Shard::new(engine),
        };
        shard = shard.with_udp(udp.clone());
        engines.push(shard.with_auth(auth.clone(), decisions));
    }
    let senders = Inboxes::new(engines, clock);
    let _ = inboxes.set(Arc::downgrade(&senders));
    if durable.is_some() {
        // Before any thread runs: every shard routes the restored subscriptions before a
        // client can publish.
        for index in 0..shards {
            senders[index].lock().announce(&senders);
        }
    }
    let mut handle = Broker {
        local_addrs,
        sn_local_addrs,
        udp_readers: Vec::new(),
        stopping: Arc::new(AtomicBool::new(false)),
        unblock: Vec::new(),
        acceptors: Vec::new(),
        shards: Vec::new(),
        senders: Arc::clone(&senders),
        conn_threads: Arc::new(Mutex::new(Vec::new())),
        metrics: MetricsSource::new(
            Arc::new(sys::BlockingShards(Arc::clone(&senders))),
            senders.clock,
        ),
        sys: None,
    };
    if let Some(every) = sys_interval {
        let (source, stopping) = (handle.metrics.clone(), Arc::clone(&handle.stopping));
        let shards = Arc::clone(&handle.senders);
        let thread = thread::Builder::new().name("mqtt-sys".into());
        match thread.spawn(move || sys::run(&source, &shards, every, &stopping)) {
            Ok(join) => handle.sys = Some(join),
            Err(e) => {
                handle.stop();
                return Err(e);
            }
        }
    }
    for index in 0..shards {
        let shards = Arc::clone(&senders);
        let thread = thread::Builder::new().name(format!("mqtt-shard-{index}"));
        match thread.spawn(move || shard::run(&shards, index)) {
            Ok(join) => handle.shards.push(join),
            Err(e) => {
                handle.stop();
                return Err(e);
            }
        }
    }
    if let Some(udp) = &udp {
        for index in 0..udp.sockets.len() {
            let (udp, senders) = (Arc::clone(udp), Arc::clone(&senders));
            let stopping = Arc::clone(&handle.stopping);
            let thread = thread::Builder::new().name(format!("mqtt-sn-udp-{index}"));
            match thread.spawn(move || udp.read_loop(index, &senders, &stopping)) {
                Ok(join) => handle.udp_readers.push(join),
                Err(e) => {
                    handle.stop();
                    return Err(e);
                }
            }
            tracing::info!(addr = %handle.sn_local_addrs[index], shards, "listening (MQTT-SN over UDP)");
        }
    }
    let acceptor = Arc::new(Acceptor {
        next_conn: AtomicU64::new(1),
        next_shard: AtomicUsize::new(0),
        senders,
        stopping: Arc::clone(&handle.stopping),
        conn_threads: Arc::clone(&handle.conn_threads),
    });
    for (index, (listener, addr)) in
        listeners.into_iter().zip(handle.local_addrs.clone()).enumerate()
    {
        let unblock_listener = Arc::clone(&listener);
        handle.unblock.push(Box::new(move || T::unblock_accept(&unblock_listener)));
        let acceptor = Arc::clone(&acceptor);
        let layers = layers.get(index).cloned().flatten();
        let thread = thread::Builder::new().name(format!("mqtt-accept-{addr}"));
        match thread.spawn(move || acceptor.run::<T>(&listener, layers.as_ref())) {
            Ok(join) => handle.acceptors.push(join),
            Err(e) => {
                handle.stop();
                return Err(e);
            }
        }
        tracing::info!(%addr, shards, "listening (MQTT over TCP, blocking runtime)");
    }
    Ok(handle)
}

/// The former name of [`Broker`].
pub type BrokerHandle = Broker;

/// A running broker. Dropping it shuts it down as [`Broker::shutdown`] does.
pub struct Broker {
    local_addrs: Vec<SocketAddr>,
    sn_local_addrs: Vec<SocketAddr>,
    udp_readers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    unblock: Vec<Box<dyn Fn() -> io::Result<()> + Send + Sync>>,
    acceptors: Vec<JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
    senders: Arc<Inboxes>,
    conn_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    metrics: MetricsSource,
    /// The `$SYS` thread, with `sys_interval`.
    sys: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker").field("local_addrs", &self.local_addrs).finish()
    }
}

impl Broker {
    /// The addresses the broker listens on, in the order configured, with the real port where
    /// port 0 was asked for.
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The UDP addresses MQTT-SN is served on (the real ports when `:0` was asked for).
    #[must_use]
    pub fn sn_local_addrs(&self) -> &[SocketAddr] {
        &self.sn_local_addrs
    }

    /// What the broker's threads did so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats::of(&self.senders)
    }

    /// Stops accepting, closes every connection and waits up to [`SHUTDOWN_GRACE`] for every
    /// thread of the broker to end.
    ///
    /// MQTT 5.0 clients should get DISCONNECT 0x8B Server shutting down first, but the engine
    /// has no input asking for that yet: their connections are shut down without it.
    pub fn shutdown(mut self) {
        self.stop();
    }

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

    fn stop(&mut self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        for unblock in &self.unblock {
            if let Err(error) = unblock() {
                tracing::warn!(%error, "could not unblock an accept thread");
            }
        }
        join_until(core::mem::take(&mut self.acceptors), deadline, "accept");
        join_until(core::mem::take(&mut self.udp_readers), deadline, "UDP reader");
        join_until(self.sys.take().into_iter().collect(), deadline, "$SYS");
        for shard in self.senders.iter() {
            shard.mailbox.stop();
        }
        join_until(core::mem::take(&mut self.shards), deadline, "engine");
        let conns =
            core::mem::take(&mut *self.conn_threads.lock().unwrap_or_else(PoisonError::into_inner));
        join_until(conns, deadline, "connection");
        tracing::info!("broker stopped");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Joins the threads that end before `deadline`; the others are left running, with a warning.
fn join_until(threads: Vec<JoinHandle<()>>, deadline: std::time::Instant, what: &str) {
    let mut threads = threads;
    loop {
        let (done, running): (Vec<_>, Vec<_>) =
            threads.into_iter().partition(JoinHandle::is_finished);
        for join in done {
            let _ = join.join();
        }
        threads = running;
        if threads.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(count = threads.len(), what, "threads still running after the grace");
            return;
        }
        // Waiting for threads to end, not for sockets: std has no join with a timeout.
        thread::sleep(Duration::from_millis(5));
    }
}

/// What the accept threads share.
struct Acceptor {
    next_conn: AtomicU64,
    next_shard: AtomicUsize,
    senders: Arc<Inboxes>,
    stopping: Arc<AtomicBool>,
    conn_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Acceptor {
    /// Accepts until the broker stops, giving connections to the shards round robin, each
    /// with a stack of the listener's `layers` if it has some.
    fn run<T: Transport>(&self, listener: &T::Listener, layers: Option<&Layers>) {
        let mut errors = AcceptErrors::default();
        loop {
            let accepted = T::accept(listener);
            if self.stopping.load(Ordering::SeqCst) {
                if let Ok((stream, _)) = &accepted {
                    T::shutdown(stream);
                }
                return;
            }
            match accepted {
                Ok((stream, peer)) => {
                    errors.accepted();
                    self.admit::<T>(stream, peer, layers);
                }
                // Out of descriptors and the like: said once, and some connections may end.
                Err(error) => thread::sleep(errors.failed(&error)),
            }
        }
    }

    fn admit<T: Transport>(&self, stream: T::Stream, peer: SocketAddr, layers: Option<&Layers>) {
        let conn = ConnectionId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        tracing::debug!(%conn, %peer, shard, "accepted");
        let route = Route::new(shard, Arc::clone(&self.senders));
        let route = Arc::new(if layers.is_some() { route.layered() } else { route });
        let stack = layers.map(|layers| Box::new(layers.stack(peer)));
        let register = |mut handle: conn::ConnHandle| {
            handle.peer = Some(peer);
            self.senders.mail(shard, ShardInput::Accepted { conn, handle })
        };
        match conn::spawn::<T>(conn, stream, route, mpsc::channel(), stack, register) {
            Ok(threads) => {
                let mut all = self.conn_threads.lock().unwrap_or_else(PoisonError::into_inner);
                all.retain(|t| !t.is_finished());
                all.extend(threads);
            }
            Err(error) => tracing::warn!(%conn, %error, "could not start connection threads"),
        }
    }
}
