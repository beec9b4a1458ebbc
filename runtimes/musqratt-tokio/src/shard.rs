//! One shard: a thread, a `current_thread` runtime, a `LocalSet`, and the engine they drive.

use core::sync::atomic::Ordering;
use core::task::Waker;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

use bytes::BytesMut;
use musqratt_engine::{Config, ConnectionId, Engine, Input, Instant, ShardId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};

use musqratt_kit::{
    AcceptErrors, Auth, Clock, DROP_LOG_INTERVAL, Decisions, EventLog, Layers, Stack,
    configure_accepted,
};

use crate::Counters;
use crate::connection;
use crate::udp::SnSockets;

mod actions;
mod layered;
mod mail;
mod queue;
mod sys;

pub(crate) use mail::{Directory, Mail, links};
use mail::{Link, deferred_wakes, forward, receive};
pub use musqratt_kit::MetricsSource;
use queue::Spare;
pub(crate) use queue::WriteQueue;
pub(crate) use sys::TokioShards;

/// Messages in flight on one link between two shards before the sender waits.
const LINK_CAPACITY: usize = 4096;
/// Messages a shard may hold for full links before its connections stop reading.
const CONGESTION_LIMIT: usize = 4096;
/// The shard's read buffer: the most one read takes from a socket. Not larger: with 64 KiB
/// reads a publisher's task moved 8 MiB per coop budget before yielding, more than the
/// 4 MiB a subscriber may have unwritten, and the QoS 0 1→1 bench lost messages.
const READ_SCRATCH: usize = 8 * 1024;
/// How long a stopping shard waits for its connections to flush.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

/// A shard's state behind its lock. The shard's own thread takes it for every task's turn;
/// another shard's thread takes it, with `try_lock` only, to run one step of this shard in
/// person instead of waking this thread (docs/adr/0010). Never held across an `.await`.
pub(crate) struct ShardLock(Mutex<Shard>);

impl ShardLock {
    /// Waits for the lock. A panic while it was held stops the broker (`PanicGuard`): the state
    /// is taken as it is for what remains of the shutdown.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shard> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if nobody holds it.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Shard>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// Everything a shard thread starts with.
pub(crate) struct Context {
    pub(crate) engine: Config,
    /// [`BrokerConfig::hibernate_after`](crate::BrokerConfig::hibernate_after).
    pub(crate) hibernate_after: Option<Duration>,
    pub(crate) listeners: Vec<StdListener>,
    /// Each listener's byte-stream layers (`None`: plain TCP), in the order of `listeners`.
    pub(crate) layers: Vec<Option<Layers>>,
    /// This shard's MQTT-SN sockets, one per address, and what all shards share of them.
    pub(crate) sn_sockets: Vec<std::net::UdpSocket>,
    pub(crate) sn_shared: Arc<crate::udp::SnShared>,
    pub(crate) mailbox: mpsc::Receiver<Mail>,
    pub(crate) peers: Vec<mpsc::Sender<Mail>>,
    pub(crate) directory: Directory,
    pub(crate) shutdown: crate::ShutdownHandle,
    pub(crate) counters: Arc<Counters>,
    pub(crate) clock: Clock,
    pub(crate) auth: Auth,
    /// The store and what to restore from it, with `[persistence]`.
    pub(crate) durable: Option<musqratt_store::Durable>,
    pub(crate) ready: std::sync::mpsc::Sender<io::Result<()>>,
    /// With `sys_interval`, shard 0 publishes the `$SYS` tree read from here.
    pub(crate) sys: Option<(Duration, MetricsSource)>,
}

/// The runtime's side of a connection: its socket, what the engine asked for and the task has
/// not done yet, and how to wake the task. Here rather than in the task's future, which stays
/// two words (see `connection`): the map's slack costs less than tokio's 128-byte steps.
pub(crate) struct Slot {
    pub(crate) stream: Stream,
    /// Chunks to write, in order ([`Action::Send`]).
    pub(crate) queue: WriteQueue,
    /// [`Action::Handoff`] came: move the socket there with these bytes (boxed: rare, and 40
    /// bytes inline in every slot).
    pub(crate) handoff: Option<Box<(ShardId, BytesMut)>>,
    /// The task's waker, woken when any of the above changes; taken while the task runs.
    pub(crate) waker: Option<Waker>,
    /// [`Action::Close`] came: close once the queue is written.
    pub(crate) close: bool,
    /// The connection is in `Shard::parked`, waiting for the links to have room.
    pub(crate) parked: bool,
    /// The task read or wrote since the last hibernation sweep.
    pub(crate) active: bool,
    /// The last sweep found the connection silent: its task hibernates it unless it has
    /// something to do.
    pub(crate) hibernate: bool,
    /// The connection's bytes pass through byte-stream layers, its [`Stack`] in
    /// `Shard::stacks`. A flag here (in the slot's padding) rather than the stack: a plain
    /// connection's slot does not grow, and its path tests one bool.
    pub(crate) layered: bool,
}

/// A connection's socket: served by its task, or hibernating without one (see `hibernate`).
pub(crate) enum Stream {
    /// Registered with tokio and read and written by the connection's task.
    Awake(TcpStream),
    /// In the shard's epoll set only, with no task: woken by the peer or by the broker.
    Hibernating(std::net::TcpStream),
    /// Between the two, within one borrow of the shard: never seen by a task.
    Moving,
}

/// A shard's state, shared by its tasks (and, a step at a time, by other shards' threads) as
/// `Arc<ShardLock>`.
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    engine: Engine,
    /// Mail from other shards. Taken only by whoever holds the lock, so that a step run in
    /// person by another shard can tell whether older mail is still waiting (FIFO per link).
    mailbox: mpsc::Receiver<Mail>,
    /// See [`Directory`].
    directory: Directory,
    /// Set while another shard's thread runs a step of this shard: what needs this shard's own
    /// thread (a task to spawn) is left in `deferred`.
    foreign: bool,
    /// Connections whose queue went from empty to not empty in this step: written by the
    /// stepping thread at its end ([`Shard::write_direct`]), their task woken only for what
    /// the socket does not take.
    direct: Vec<ConnectionId>,
    /// Set while a batch of mail is fed: `direct` is written once the batch is in.
    batching: bool,
    /// Connections to wake on this shard's own thread (hibernating ones, woken by a foreign
    /// step), and the signal for the task that does it.
    deferred: Vec<ConnectionId>,
    deferred_wake: Arc<Notify>,
    clock: Clock,
    /// Who may connect (`Action::Authenticate`), and where its late answers wait, signalling
    /// `decided`.
    auth: Auth,
    decisions: Decisions,
    decided: Arc<Notify>,
    /// Boxed: a hash map's buckets are sized by powers of two, so an 80-byte slot inline cost
    /// ~145 B per connection; an 8-byte box in the bucket and the slot in an exact 80-byte
    /// allocation measured 32 B less per idle connection (docs/BENCHMARKS.md, change 10).
    pub(crate) conns: HashMap<ConnectionId, Box<Slot>>,
    /// The byte-stream layers of the connections whose listener has some (`Slot::layered`):
    /// removed with the slot, moved with the socket on a handoff, kept while it hibernates.
    pub(crate) stacks: HashMap<ConnectionId, Box<Stack>>,
    next_conn: u64,
    links: Vec<Option<Link>>,
    /// Mail held in `pending` over all links.
    pending: usize,
    /// Connections that stopped reading while links were full, woken when `pending` falls
    /// back to 0.
    pub(crate) parked: Vec<ConnectionId>,
    /// See [`SPARE_QUEUES`].
    spare_queues: Spare,
    /// Signalled when `pending` falls back to 0: the MQTT-SN readers wait on it.
    pub(crate) uncongested: Arc<Notify>,
    /// Signalled when the engine's next deadline changed.
    timer: Arc<Notify>,
    armed: Option<Instant>,
    /// Signalled when a connection's task ends.
    pub(crate) conn_ended: Arc<Notify>,
    pub(crate) shutting_down: bool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) guard: PanicGuard,
    /// Where the shard's connections read, one at a time (see `connection::serve`).
    pub(crate) read_scratch: Box<[u8]>,
    /// MQTT-SN over UDP, when configured.
    pub(crate) udp: Option<Arc<SnSockets>>,
    /// Engine events to the log.
    events: EventLog,
    /// Where hibernating connections wait, when hibernation is on.
    pub(crate) hibernation: Option<crate::hibernate::Hibernation>,
    /// Connections whose socket was lost while waking, for the engine (see `drain`).
    pub(crate) lost: Vec<ConnectionId>,
    /// The shard itself, for the tasks of connections woken from hibernation.
    pub(crate) me: Weak<ShardLock>,
    /// The engine's actions, a batch's `Action::Store` records written (with `[persistence]`)
    /// before any other action of the batch is carried out (ADR 17).
    steps: musqratt_store::Steps,
    /// Joins consecutive sends to a layered connection (`musqratt_kit::SendJoiner`).
    joiner: musqratt_kit::SendJoiner,
}

impl Shard {
    /// The engine's time: microseconds since the broker started.
    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Feeds one input and carries out what the engine asks.
    pub(crate) fn input(&mut self, input: Input) {
        let now = self.now();
        self.engine.handle_input(now, input);
        self.drain();
    }

    fn timeout(&mut self) {
        let now = self.now();
        self.engine.handle_timeout(now);
        self.drain();
    }

    /// Shards of the broker.
    pub(crate) fn shard_count(&self) -> u16 {
        self.engine.config().shard_count
    }

    /// Whether connections should stop reading until links to other shards have room.
    pub(crate) fn congested(&self) -> bool {
        self.pending > CONGESTION_LIMIT
    }

    /// Takes the emptied write queue of a connection for reuse (see [`SPARE_QUEUES`]).
    pub(crate) fn recycle_queue(&mut self, conn: ConnectionId) {
        if let Some(slot) = self.conns.get_mut(&conn) {
            slot.queue.recycle(&mut self.spare_queues);
        }
    }

    /// Wakes the connections parked while the links were full.
    fn unpark(&mut self) {
        for conn in core::mem::take(&mut self.parked) {
            if let Some(slot) = self.conns.get_mut(&conn) {
                slot.parked = false;
                self.wake(conn);
            }
        }
    }

    /// Wakes a connection's task, or, for a hibernating connection, gives it one again.
    pub(crate) fn wake(&mut self, conn: ConnectionId) {
        let Some(slot) = self.conns.get_mut(&conn) else { return };
        match &slot.stream {
            Stream::Awake(_) => {
                if let Some(waker) = &slot.waker {
                    waker.wake_by_ref();
                }
            }
            // A task can only be spawned on the shard's own thread.
            Stream::Hibernating(_) if self.foreign => self.deferred.push(conn),
            Stream::Hibernating(_) => crate::hibernate::wake(self, conn),
            Stream::Moving => {}
        }
    }

    fn new_conn_id(&mut self) -> ConnectionId {
        self.next_conn += 1;
        ConnectionId(self.next_conn << 16 | u64::from(self.id.0))
    }

    /// Carries out the engine's actions, and tells it of connections lost on the way.
    pub(crate) fn drain(&mut self) {
        loop {
            self.drain_actions();
            if let Some(conn) = self.lost.pop() {
                let now = self.now();
                self.engine.handle_input(now, Input::Closed { conn });
            } else if !self.batching
                && let Some(conn) = self.direct.pop()
            {
                self.write_direct(conn);
            } else {
                break;
            }
        }
        // The timer task is told only of a sooner deadline: one that moved later (or went)
        // is found when the old one fires, and a step run by another shard's thread then
        // wakes nothing here.
        let next = self.engine.poll_timeout();
        if next != self.armed {
            let sooner = match (next, self.armed) {
                (Some(next), Some(armed)) => next < armed,
                (next, _) => next.is_some(),
            };
            self.armed = next;
            if sooner {
                self.timer.notify_one();
            }
        }
        if self.foreign && !self.deferred.is_empty() {
            self.deferred_wake.notify_one();
        }
    }

    /// Writes a connection's queue at the end of the step that filled it, from whichever thread
    /// runs the step: a delivery from another shard's thread reaches the socket without waking
    /// this shard's thread, and one on this thread goes out before the reading task's next
    /// read or acknowledgement. Whatever the socket does not take now (or a socket whose
    /// readiness tokio does not know yet) is left to the connection's task, woken for it.
    /// Safe against interleaving: the task writes only while holding the lock, which the
    /// stepping thread holds, and the queue was empty before this step, so nothing of it was
    /// partly written.
    fn write_direct(&mut self, conn: ConnectionId) {
        let Some(slot) = self.conns.get_mut(&conn) else { return };
        let Stream::Awake(stream) = &slot.stream else {
            self.wake(conn);
            return;
        };
        let mut iovecs = [io::IoSlice::new(&[]); crate::connection::MAX_IOVECS];
        let mut count = 0;
        for (iovec, chunk) in iovecs.iter_mut().zip(slot.queue.iter()) {
            *iovec = io::IoSlice::new(chunk);
            count += 1;
        }
        let written = match stream.try_write_vectored(&iovecs[..count]) {
            Ok(written) if written > 0 => written,
            // Not writable now, or failed: the task finds out and tells the engine.
            _ => {
                self.wake(conn);
                return;
            }
        };
        slot.queue.consume(written);
        slot.active = true;
        let layered = slot.layered;
        if slot.queue.is_empty() {
            slot.queue.recycle(&mut self.spare_queues);
            self.counters.direct_writes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.wake(conn);
        }
        // A plain connection looks for no stack.
        let written = match layered {
            true => self.stacks.get_mut(&conn).map_or(0, |stack| stack.written(written)),
            false => written,
        };
        if written > 0 {
            let now = self.now();
            self.engine.handle_input(now, Input::Written { conn, bytes: written });
        }
    }
}

/// Held by every task of a shard: a task that panics leaves the engine in an unknown state, so
/// the broker stops (tokio would otherwise let the shard run on without the task).
#[derive(Clone)]
pub(crate) struct PanicGuard {
    counters: Arc<Counters>,
    shutdown: crate::ShutdownHandle,
}

impl PanicGuard {
    /// Stops the broker if the thread is panicking (see `Drop`).
    pub(crate) fn trip(&self) {
        drop(self.clone());
    }
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("a shard task panicked: stopping the broker");
            self.counters.failed.store(true, Ordering::Relaxed);
            self.shutdown.shutdown();
        }
    }
}

/// Spawns a task of the shard on its `LocalSet`, guarded against panics.
pub(crate) fn spawn(shard: &Arc<ShardLock>, task: impl Future<Output = ()> + 'static) {
    let guard = shard.lock().guard.clone();
    tokio::task::spawn_local(async move {
        let _guard = guard;
        task.await;
    });
}

/// The body of a shard thread.
pub(crate) fn run(context: Context) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = context.ready.send(Err(error));
            return;
        }
    };
    let shutdown = context.shutdown.clone();
    let counters = context.counters.clone();
    let id = context.engine.shard.0;
    let local = tokio::task::LocalSet::new();
    let ran = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        local.block_on(&runtime, shard_main(context));
    }));
    if ran.is_err() {
        // One shard's clients cannot be served any more: stop the whole broker rather than
        // run on with a hole in it.
        tracing::error!(shard = id, "shard panicked: stopping the broker");
        counters.failed.store(true, Ordering::Relaxed);
        shutdown.shutdown();
    }
}

async fn shard_main(context: Context) {
    let Context {
        engine,
        hibernate_after,
        listeners,
        layers,
        sn_sockets,
        sn_shared,
        mailbox,
        peers,
        directory,
        shutdown: stop,
        counters,
        clock,
        auth,
        durable,
        ready,
        sys,
    } = context;
    let mut shutdown = stop.0.subscribe();
    let id = engine.shard;
    let listeners: io::Result<Vec<TcpListener>> =
        listeners.into_iter().map(TcpListener::from_std).collect();
    let listeners = match listeners {
        Ok(listeners) => listeners,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let udp = if sn_sockets.is_empty() {
        None
    } else {
        match SnSockets::new(sn_sockets, sn_shared) {
            Ok(udp) => Some(Arc::new(udp)),
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        }
    };
    let links = peers
        .into_iter()
        .enumerate()
        .map(|(i, tx)| {
            (i != usize::from(id.0)).then(|| Link {
                tx,
                pending: VecDeque::new(),
                wake: Arc::new(Notify::new()),
            })
        })
        .collect();
    let mut engine = Engine::new(engine);
    if let Some(durable) = &durable {
        durable.restore(&mut engine, clock.now());
    }
    // A new engine may have a deadline already (MQTT-SN's first ADVERTISE is due at once): the
    // timer task starts armed with it instead of waiting for the first input.
    let armed = engine.poll_timeout();
    let (hibernation, hibernation_poll) =
        match hibernate_after.map(crate::hibernate::Hibernation::new).transpose() {
            Ok(Some((hibernation, poll))) => (Some(hibernation), Some(poll)),
            Ok(None) => (None, None),
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
    let decided = Arc::new(Notify::new());
    let decided_signal = decided.clone();
    let shard = Arc::new_cyclic(|me| {
        ShardLock(Mutex::new(Shard {
            id,
            engine,
            mailbox,
            directory: directory.clone(),
            foreign: false,
            direct: Vec::new(),
            batching: false,
            deferred: Vec::new(),
            deferred_wake: Arc::new(Notify::new()),
            clock,
            auth,
            decisions: Decisions::new(move || decided_signal.notify_one()),
            decided,
            conns: HashMap::new(),
            stacks: HashMap::new(),
            next_conn: 0,
            links,
            pending: 0,
            parked: Vec::new(),
            spare_queues: Vec::new(),
            uncongested: Arc::new(Notify::new()),
            timer: Arc::new(Notify::new()),
            armed,
            conn_ended: Arc::new(Notify::new()),
            shutting_down: false,
            guard: PanicGuard { counters: counters.clone(), shutdown: stop },
            counters,
            events: EventLog::new(id),
            read_scratch: vec![0; READ_SCRATCH].into_boxed_slice(),
            udp: udp.clone(),
            hibernation,
            lost: Vec::new(),
            me: me.clone(),
            steps: durable.map_or_else(musqratt_store::Steps::default, |d| d.steps()),
            joiner: musqratt_kit::SendJoiner::new(),
        }))
    });
    // Restored subscriptions are announced to the other shards like new ones.
    shard.lock().drain();
    if let Some(entry) = directory.get(usize::from(id.0)) {
        let _ = entry.set(Arc::downgrade(&shard));
    }
    let forwarders: Vec<(usize, Arc<Notify>, mpsc::Sender<Mail>)> = shard
        .lock()
        .links
        .iter()
        .enumerate()
        .filter_map(|(i, link)| link.as_ref().map(|l| (i, l.wake.clone(), l.tx.clone())))
        .collect();
    for (to, wake, tx) in forwarders {
        spawn(&shard, forward(shard.clone(), to, wake, tx));
    }
    spawn(&shard, timers(shard.clone()));
    if let Some(poll) = hibernation_poll {
        spawn(&shard, crate::hibernate::run(shard.clone(), poll));
    }
    spawn(&shard, report_drops(shard.clone()));
    if let Some((every, source)) = sys.filter(|_| id.0 == 0) {
        spawn(&shard, sys::publish(shard.clone(), source, every));
    }
    spawn(&shard, late_decisions(shard.clone()));
    spawn(&shard, receive(shard.clone()));
    spawn(&shard, deferred_wakes(shard.clone()));
    for (index, listener) in listeners.into_iter().enumerate() {
        let layers = layers.get(index).cloned().flatten();
        spawn(&shard, accept(shard.clone(), listener, layers, shutdown.clone()));
    }
    if let Some(udp) = udp {
        for index in 0..udp.len() {
            spawn(&shard, crate::udp::read(shard.clone(), udp.clone(), index));
        }
    }
    let _ = ready.send(Ok(()));

    // Until asked to stop (or the broker handle is gone).
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::debug!(shard = id.0, "shutting down");
    {
        let mut shard = shard.lock();
        shard.shutting_down = true;
        shard.input(Input::Shutdown);
    }
    let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, async {
        loop {
            let ended = shard.lock().conn_ended.clone();
            let notified = ended.notified();
            if shard.lock().conns.is_empty() {
                return;
            }
            notified.await;
        }
    })
    .await;
    if flushed.is_err() {
        let left = shard.lock().conns.len();
        tracing::warn!(shard = id.0, left, "connections still flushing at shutdown: dropped");
    }
}

/// Accepts connections until shutdown; gives each a stack of `layers` when the listener has
/// some.
async fn accept(
    shard: Arc<ShardLock>,
    listener: TcpListener,
    layers: Option<Layers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut errors = AcceptErrors::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shard.lock().shutting_down {
                        return;
                    }
                    configure_accepted(&stream);
                    errors.accepted();
                    shard.lock().counters.accepted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(shard = shard.lock().id.0, %peer, "accepted");
                    let stack = layers.as_ref().map(|layers| Box::new(layers.stack(peer)));
                    start_connection(&shard, &mut shard.lock(), stream, None, stack);
                }
                Err(error) => tokio::time::sleep(errors.failed(&error)).await,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Registers a connection, starts its task and tells the engine.
fn start_connection(
    shard: &Arc<ShardLock>,
    state: &mut Shard,
    stream: TcpStream,
    adopted: Option<(ConnectionId, BytesMut)>,
    stack: Option<Box<Stack>>,
) {
    let conn = match &adopted {
        Some((conn, _)) => *conn,
        None => state.new_conn_id(),
    };
    let slot = Slot {
        stream: Stream::Awake(stream),
        queue: WriteQueue::default(),
        handoff: None,
        waker: None,
        close: false,
        parked: false,
        active: true,
        hibernate: false,
        layered: stack.is_some(),
    };
    state.conns.insert(conn, Box::new(slot));
    if let Some(stack) = stack {
        state.stacks.insert(conn, stack);
    }
    // Not `spawn`: the task's panic guard is `Connection`'s `Drop`, which keeps the future at
    // two words.
    tokio::task::spawn_local(connection::Connection::new(shard.clone(), conn));
    match adopted {
        Some((conn, bytes)) => state.input(Input::Adopted { conn, bytes }),
        None => state.input(Input::Accepted { conn }),
    }
}

/// Calls the engine back when its next deadline comes.
async fn timers(shard: Arc<ShardLock>) {
    let (timer, clock) = {
        let state = shard.lock();
        (state.timer.clone(), state.clock)
    };
    loop {
        let armed = shard.lock().armed;
        let when = armed.and_then(|at| clock.deadline(at));
        match when {
            None => timer.notified().await,
            Some(when) => {
                tokio::select! {
                    () = tokio::time::sleep_until(when.into()) => shard.lock().timeout(),
                    () = timer.notified() => {}
                }
            }
        }
    }
}

/// Feeds the authenticator's answers that came after `Action::Authenticate` was handled (see
/// [`musqratt_kit::Authenticator`]).
async fn late_decisions(shard: Arc<ShardLock>) {
    let decided = shard.lock().decided.clone();
    loop {
        decided.notified().await;
        let mut state = shard.lock();
        for (conn, decision) in state.decisions.take() {
            state.input(Input::AuthDecision { conn, decision });
        }
    }
}

/// Logs, once per [`DROP_LOG_INTERVAL`], how many dropped messages were not logged one by one.
async fn report_drops(shard: Arc<ShardLock>) {
    let mut interval = tokio::time::interval(DROP_LOG_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shard.lock().events.report_drops();
    }
}

#[cfg(test)]
mod tests {
    /// A slot is in the shard's map for every connection, idle or not (with the map's slack).
    /// 72 bytes, or 80 when another crate of the build enables tokio's multi-thread scheduler
    /// (its runtime handle, in the `TcpStream`, grows by 8).
    #[test]
    fn slot_stays_small() {
        assert!(size_of::<super::Slot>() <= 80, "Slot: {}", size_of::<super::Slot>());
    }
}
