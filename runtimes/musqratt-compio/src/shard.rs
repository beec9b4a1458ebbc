//! A shard thread: one compio runtime, one [`Engine`], its listeners, connections, timer and
//! links to the other shards.
//!
//! The engine and everything a step of it touches ([`Core`]) sit behind the shard's lock
//! ([`ShardLock`]), so that another shard's thread can run a step of this shard in person
//! (docs/adr/0012). What only the shard's own thread can use (the compio sockets, listeners
//! and tasks) stays outside, in [`Shard`].

use core::cell::{Cell, RefCell};
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};

use async_channel::{Receiver, Sender};
use bytes::{Buf, Bytes, BytesMut};
use compio::driver::{DriverType, ProactorBuilder};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::{Runtime, RuntimeBuilder};
use futures_util::future::{Either, select};
use musqratt_engine::{Action, Config, ConnectionId, Engine, Input, Instant, ShardId};
use socket2::SockRef;

use musqratt_kit::{
    AcceptErrors, Auth, Clock, Decisions, EventLog, Layers, Stack, configure_accepted,
};

use crate::conn::{self, MAX_IOVECS, State};
use crate::notify::Notify;
use crate::{Driver, shutdown_socket};

mod layered;
mod mail;
mod persist;
mod sys;

pub(crate) use mail::{Directory, ShardMsg};
use mail::{Link, forward_loop, inbox};
pub use musqratt_kit::MetricsSource;
pub(crate) use sys::CompioShards;

/// The broker's counters, shared by every shard.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) direct_steps: AtomicU64,
    pub(crate) direct_writes: AtomicU64,
    pub(crate) owner_wakes: AtomicU64,
}

/// What a shard thread starts from.
pub(crate) struct ShardSetup {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) auth: Auth,
    pub(crate) rx: Receiver<ShardMsg>,
    pub(crate) senders: Vec<Sender<ShardMsg>>,
    pub(crate) directory: Directory,
    pub(crate) counters: Arc<Counters>,
    pub(crate) listeners: Vec<std::net::TcpListener>,
    /// Each listener's byte-stream layers (`None`: plain TCP), in the order of `listeners`.
    pub(crate) layers: Vec<Option<Layers>>,
    /// The store and what to restore from it, with `[persistence]`.
    pub(crate) durable: Option<musqratt_store::Durable>,
    pub(crate) driver: Driver,
    /// Told `Ok(io_uring?)` once the runtime and listeners are up, or why not.
    pub(crate) ready: mpsc::Sender<io::Result<bool>>,
    /// With `sys_interval`, shard 0 publishes the `$SYS` tree read from here.
    pub(crate) sys: Option<(core::time::Duration, MetricsSource)>,
}

fn build_runtime(driver: Driver, shards: usize) -> io::Result<Runtime> {
    let mut proactor = ProactorBuilder::new();
    match driver {
        Driver::Auto => {}
        Driver::IoUring => {
            proactor.driver_type(DriverType::IoUring);
        }
        Driver::Poll => {
            proactor.driver_type(DriverType::Poll);
        }
    }
    // Other threads wake only this shard's fixed tasks (inbox, errands, timer, one forwarder
    // per other shard), each holding at most one slot of the queue of cross-thread wakes: with
    // room for all of them, a waking thread never waits for this one (which could be waiting
    // for the waker's lock).
    RuntimeBuilder::new()
        .with_proactor(proactor)
        .sync_queue_size(64usize.max(shards.saturating_add(16)))
        .build()
}

/// The shard thread's body: runs until `Shutdown` arrives (or every sender is gone).
pub(crate) fn run(setup: ShardSetup) {
    let ShardSetup {
        config,
        clock,
        auth,
        rx,
        senders,
        directory,
        counters,
        listeners,
        layers,
        durable,
        driver,
        ready,
        sys,
    } = setup;
    let runtime = match build_runtime(driver, senders.len()) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let io_uring = runtime.driver_type().is_iouring();
    let id = config.shard;
    tracing::debug!(shard = %id, driver = ?runtime.driver_type(), "shard thread started");
    runtime.block_on(async move {
        let listeners = match listeners.into_iter().map(TcpListener::from_std).collect() {
            Ok(listeners) => listeners,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let shard = Rc::new(Shard::new(
            config, clock, auth, rx, senders, directory, counters, listeners, layers,
        ));
        if let Some(durable) = &durable {
            shard.lock().restore(durable);
        }
        shard.start_tasks();
        if let Some((every, source)) = sys.filter(|_| id.0 == 0) {
            compio::runtime::spawn(sys::publish(Rc::clone(&shard), source, every)).detach();
        }
        let _ = ready.send(Ok(io_uring));
        let deadline = inbox(&shard).await;
        shard.shutdown(deadline).await;
    });
    // Dropping the runtime drops the tasks still parked (accept loops, timer, forwarders).
    drop(runtime);
    tracing::debug!(shard = %id, "shard thread stopped");
}

/// A shard's [`Core`] behind its lock. The shard's own thread takes it for every input;
/// another shard's thread takes it, with `try_lock` only, to run one step of this shard in
/// person instead of waking this thread (see [`Core::send_to`]). Never held across an
/// `.await`, nor while waiting for anything.
pub(crate) struct ShardLock(Mutex<Core>);

impl ShardLock {
    /// Waits for the lock (held by another thread only for one step). A panic while it was
    /// held leaves the state as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, Core>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// A connection as a step of the engine sees it: what is queued for its socket and where it is
/// in its life. Its compio socket belongs to its reader and writer tasks, on the shard's thread.
pub(crate) struct Slot {
    /// `Action::Send` chunks not yet given to a write.
    pub(crate) queue: Vec<Bytes>,
    /// The writer task has a write in flight: nothing else may write to the socket.
    pub(crate) writing: bool,
    pub(crate) state: State,
    pub(crate) handoff: Option<(ShardId, BytesMut)>,
    /// Wakes the writer task: something queued, or the state changed. Set by the shard's own
    /// thread only (another thread's step asks the errand task, see [`Core::wake_writer`]).
    pub(crate) writer: Arc<Notify>,
    /// A second descriptor of the socket, for the non-blocking writes of steps run by another
    /// shard's thread; `None` if it could not be had (such writes are then left to the task).
    direct: Option<std::net::TcpStream>,
    /// Connection tasks (reader, writer) still running: the slot goes when both have ended.
    pub(crate) tasks: u8,
    /// The connection's byte-stream layers, when its listener has some (`None`: plain TCP,
    /// whose path tests this and nothing more). `queue` holds their output, socket bytes.
    pub(crate) stack: Option<Box<Stack>>,
}

/// Everything a step of the shard's engine touches: `Send`, behind [`ShardLock`].
pub(crate) struct Core {
    id: ShardId,
    engine: Engine,
    clock: Clock,
    /// Who may connect (`Action::Authenticate`), and where its late answers wait for the
    /// `decisions_loop` task.
    auth: Auth,
    decisions: Decisions,
    events: EventLog,
    pub(crate) slots: HashMap<ConnectionId, Slot>,
    links: Vec<Link>,
    /// The shard's inbox. Mail is taken off it only under the lock, and a step is run in
    /// person only when it is empty: what another shard mailed earlier goes first.
    mailbox: Pin<Box<Receiver<ShardMsg>>>,
    directory: Directory,
    counters: Arc<Counters>,
    /// The deadline the timer task sleeps to, and its wake-up for a sooner one.
    armed: Option<Instant>,
    timer: Arc<Notify>,
    stopping: bool,
    /// A step run by another shard's thread is under way.
    foreign: bool,
    /// Connections whose queue went from empty to not in this step: written by the stepping thread.
    direct: Vec<ConnectionId>,
    /// Set while a batch of mail is fed: `direct` is written once the batch is in.
    batching: bool,
    /// Writers to wake on the shard's own thread, for such steps, by the errand task.
    deferred: Vec<ConnectionId>,
    errand: Arc<Notify>,
    /// The engine's actions, a batch's records written first with `[persistence]` (ADR 17).
    steps: musqratt_store::Steps,
    /// Joins consecutive sends to a layered connection (`musqratt_kit::SendJoiner`).
    joiner: musqratt_kit::SendJoiner,
}

impl Core {
    /// Feeds one input to the engine and carries out everything it asks.
    pub(crate) fn input(&mut self, input: Input) {
        let now = self.clock.now();
        self.engine.handle_input(now, input);
        self.dispatch();
    }

    /// Carries out every action the engine has, in order (and, in a step run by another
    /// shard's thread, the writes it can make at once), then tells the timer task of a sooner
    /// deadline.
    fn dispatch(&mut self) {
        loop {
            loop {
                let slots = &self.slots;
                let Some(action) = self.joiner.next(
                    || self.steps.poll_action(&mut self.engine),
                    |conn| slots.get(&conn).is_some_and(|slot| slot.stack.is_some()),
                ) else {
                    break;
                };
                self.act(action);
            }
            // A write reports `Input::Written`, which may bring more actions.
            if self.batching {
                break;
            }
            let Some(conn) = self.direct.pop() else { break };
            self.write_direct(conn);
        }
        // Told only of a sooner deadline: one that moved later is found when the old one
        // fires, so that a step run by another thread wakes nothing here.
        let next = self.engine.poll_timeout();
        let sooner = match (next, self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sooner {
            self.armed = next;
            if self.foreign {
                self.counters.owner_wakes.fetch_add(1, Ordering::Relaxed);
            }
            self.timer.notify();
        }
        if self.foreign && !self.deferred.is_empty() {
            self.counters.owner_wakes.fetch_add(1, Ordering::Relaxed);
            self.errand.notify();
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Send { conn, bytes } => {
                let foreign = self.foreign;
                let Some(slot) = self.slots.get_mut(&conn) else { return };
                if slot.state != State::Open {
                    return;
                }
                let was_empty = slot.queue.is_empty();
                match slot.stack.as_mut() {
                    None => slot.queue.push(bytes),
                    Some(stack) => {
                        let queue = &mut slot.queue;
                        if let Err(error) = stack.write(bytes, |chunk| queue.push(chunk)) {
                            tracing::debug!(shard = %self.id, %conn, %error, "connection lost");
                            slot.state = State::Gone;
                            self.wake_writer(conn);
                            let now = self.clock.now();
                            self.engine.handle_input(now, Input::Closed { conn });
                            return;
                        }
                        if slot.queue.is_empty() {
                            return; // held by a layer for now
                        }
                    }
                }
                if was_empty && !slot.writing && slot.direct.is_some() {
                    // Written at the end of the step by the thread running it, with one
                    // non-blocking send: from another shard's thread without waking this
                    // one, and on this thread without a round through the writer task and
                    // the ring before the delivery leaves.
                    self.direct.push(conn);
                } else if !foreign {
                    slot.writer.notify();
                }
                // Otherwise the writer task already has it coming: its write in flight ends,
                // or it was woken for the older chunks.
            }
            Action::Close { conn } => {
                if let Some(slot) = self.slots.get_mut(&conn)
                    && slot.state == State::Open
                {
                    // The layers' last bytes (close_notify, a close frame) go out last.
                    if let Some(stack) = slot.stack.as_mut() {
                        let queue = &mut slot.queue;
                        stack.close(|chunk| queue.push(chunk));
                    }
                    slot.state = State::Closing;
                    self.wake_writer(conn);
                }
            }
            Action::Handoff { conn, to, bytes } => {
                if let Some(slot) = self.slots.get_mut(&conn)
                    && slot.state == State::Open
                {
                    tracing::debug!(shard = %self.id, %conn, %to, "handing connection over");
                    slot.state = State::HandedOff;
                    slot.handoff = Some((to, bytes));
                    self.wake_writer(conn);
                }
            }
            Action::ToShard { to, message } => self.send_to(to, message),
            Action::Authenticate { conn, request } => {
                let slot = self.slots.get(&conn);
                let socket = slot.and_then(|slot| slot.direct.as_ref());
                let socket = socket.and_then(|stream| stream.peer_addr().ok());
                let stack = slot.and_then(|slot| slot.stack.as_deref());
                let decision = self.auth.ask_for(conn, socket, stack, request, &self.decisions);
                if let Some(decision) = decision {
                    let now = self.clock.now();
                    self.engine.handle_input(now, Input::AuthDecision { conn, decision });
                }
            }
            Action::Event(event) => self.events.log(&event),
            other => tracing::warn!(shard = %self.id, ?other, "unknown engine action ignored"),
        }
    }

    /// Wakes a connection's writer task, from the shard's own thread directly, from another
    /// shard's thread through the errand task (which that thread wakes once per step).
    pub(crate) fn wake_writer(&mut self, conn: ConnectionId) {
        if self.foreign {
            self.deferred.push(conn);
        } else if let Some(slot) = self.slots.get(&conn) {
            slot.writer.notify();
        }
    }

    /// At the end of the step that queued it, on whichever thread runs the step: writes what is
    /// queued for `conn` to its socket with a non-blocking send, so that a delivery from another
    /// shard's thread needs no wake-up of this shard's thread, and one on this thread leaves
    /// before the next read rather than through the writer task's ring submission. What the socket does not take now (or a failure, which the writer task then meets and
    /// reports) is left to the writer task, woken for it. Only while no write of the task is in
    /// flight, so the bytes keep their order; every byte written is reported to the engine.
    fn write_direct(&mut self, conn: ConnectionId) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        if slot.state != State::Open || slot.writing || slot.queue.is_empty() {
            return;
        }
        let written = match &slot.direct {
            Some(stream) => send_now(stream, &slot.queue),
            None => Ok(0),
        };
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                tracing::debug!(shard = %self.id, %conn, %error, "direct write failed");
                0
            }
        };
        consume(&mut slot.queue, written);
        let written = match slot.stack.as_mut() {
            Some(stack) => stack.written(written),
            None => written,
        };
        if slot.queue.is_empty() {
            self.counters.direct_writes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.wake_writer(conn);
        }
        if written > 0 {
            let now = self.clock.now();
            self.engine.handle_input(now, Input::Written { conn, bytes: written });
        }
    }

    /// The peer closed the connection or an I/O on it failed: tell the engine, unless the
    /// engine had already closed it or handed it over.
    pub(crate) fn lost(&mut self, conn: ConnectionId) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        if slot.state != State::Open {
            return;
        }
        slot.state = State::Gone;
        slot.writer.notify();
        self.input(Input::Closed { conn });
    }

    /// A connection task ended; the slot goes with the last one.
    pub(crate) fn task_ended(&mut self, conn: ConnectionId) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.tasks = slot.tasks.saturating_sub(1);
            if slot.tasks == 0 {
                self.slots.remove(&conn);
            }
        }
    }
}

/// One non-blocking send of the queued chunks (at most [`MAX_IOVECS`]).
fn send_now(stream: &std::net::TcpStream, queue: &[Bytes]) -> io::Result<usize> {
    let socket = SockRef::from(stream);
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let result = if let [chunk] = queue {
        socket.send_with_flags(chunk, flags)
    } else {
        let iovecs: Vec<IoSlice<'_>> =
            queue.iter().take(MAX_IOVECS).map(|chunk| IoSlice::new(chunk)).collect();
        socket.send_vectored_with_flags(&iovecs, flags)
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Drops the first `written` bytes of the queue.
fn consume(queue: &mut Vec<Bytes>, mut written: usize) {
    let whole = queue
        .iter()
        .take_while(|chunk| {
            if chunk.len() <= written {
                written -= chunk.len();
                true
            } else {
                false
            }
        })
        .count();
    queue.drain(..whole);
    if written > 0
        && let Some(front) = queue.first_mut()
    {
        front.advance(written);
    }
}

/// One shard, owned by its thread (`Rc`, never sent): its [`Core`] behind the lock, and what
/// only this thread uses.
pub(crate) struct Shard {
    id: ShardId,
    core: Arc<ShardLock>,
    clock: Clock,
    /// Connection numbers are `n × shards + shard`: unique across the broker without sharing.
    next_conn: Cell<u64>,
    shard_count: u64,
    listeners: RefCell<Vec<TcpListener>>,
    /// Each listener's byte-stream layers, in the order of `listeners`.
    layers: Vec<Option<Layers>>,
    timer: Arc<Notify>,
    errand: Arc<Notify>,
    /// Signalled when the authenticator answered late (see `decisions_loop`).
    decided: Arc<Notify>,
    /// Connection tasks (reader and writer) still running, and a wake-up when none is.
    live_tasks: Cell<usize>,
    idle: Notify,
}

impl Shard {
    #[allow(clippy::too_many_arguments)] // one per piece of a shard's setup
    fn new(
        config: Config,
        clock: Clock,
        auth: Auth,
        rx: Receiver<ShardMsg>,
        senders: Vec<Sender<ShardMsg>>,
        directory: Directory,
        counters: Arc<Counters>,
        listeners: Vec<TcpListener>,
        layers: Vec<Option<Layers>>,
    ) -> Self {
        let id = config.shard;
        let shard_count = u64::from(config.shard_count);
        let links = senders
            .into_iter()
            .map(|tx| Link {
                tx,
                backlog: VecDeque::new(),
                pending: 0,
                wake: Arc::new(Notify::default()),
            })
            .collect();
        let timer = Arc::new(Notify::default());
        let errand = Arc::new(Notify::default());
        let decided = Arc::new(Notify::default());
        let decided_signal = Arc::clone(&decided);
        let core = Arc::new(ShardLock(Mutex::new(Core {
            id,
            engine: Engine::new(config),
            clock,
            auth,
            decisions: Decisions::new(move || decided_signal.notify()),
            events: EventLog::new(id),
            slots: HashMap::new(),
            links,
            mailbox: Box::pin(rx),
            directory: directory.clone(),
            counters,
            armed: None,
            timer: Arc::clone(&timer),
            stopping: false,
            foreign: false,
            direct: Vec::new(),
            batching: false,
            deferred: Vec::new(),
            errand: Arc::clone(&errand),
            steps: musqratt_store::Steps::default(),
            joiner: musqratt_kit::SendJoiner::new(),
        })));
        if let Some(entry) = directory.get(usize::from(id.0)) {
            let _ = entry.set(Arc::downgrade(&core));
        }
        Self {
            id,
            core,
            clock,
            next_conn: Cell::new(0),
            shard_count,
            listeners: RefCell::new(listeners),
            layers,
            timer,
            errand,
            decided,
            live_tasks: Cell::new(0),
            idle: Notify::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock()
    }

    fn start_tasks(self: &Rc<Self>) {
        for (index, listener) in self.listeners.borrow().iter().enumerate() {
            let layers = self.layers.get(index).cloned().flatten();
            compio::runtime::spawn(accept_loop(Rc::clone(self), listener.clone(), layers)).detach();
        }
        compio::runtime::spawn(timer_loop(Rc::clone(self))).detach();
        compio::runtime::spawn(errand_loop(Rc::clone(self))).detach();
        compio::runtime::spawn(decisions_loop(Rc::clone(self))).detach();
        let links = self.lock().links.len();
        for to in 0..links {
            if to != usize::from(self.id.0) {
                compio::runtime::spawn(forward_loop(Rc::clone(self), to)).detach();
            }
        }
    }

    /// A connection accepted by one of this shard's listeners.
    fn accepted(
        self: &Rc<Self>,
        stream: TcpStream,
        peer: core::net::SocketAddr,
        layers: Option<&Layers>,
    ) {
        configure_accepted(&stream);
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        let conn = ConnectionId(n * self.shard_count + u64::from(self.id.0));
        tracing::debug!(shard = %self.id, %conn, %peer, "accepted");
        let direct = duplicate(&stream);
        let stack = layers.map(|layers| Box::new(layers.stack(peer)));
        let mut core = self.lock();
        self.register(&mut core, conn, stream, direct, stack);
        core.input(Input::Accepted { conn });
    }

    /// A connection handed over by another shard (taken off the inbox under the lock, so
    /// that what its shard sent after it comes after it).
    fn adopt(
        self: &Rc<Self>,
        core: &mut Core,
        conn: ConnectionId,
        stream: std::net::TcpStream,
        bytes: BytesMut,
        stack: Option<Box<Stack>>,
    ) {
        if core.stopping {
            return; // dropping the stream closes it
        }
        let direct = stream.try_clone().ok();
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(shard = %self.id, %conn, %error, "could not adopt connection");
                return;
            }
        };
        tracing::debug!(shard = %self.id, %conn, "adopted connection");
        self.register(core, conn, stream, direct, stack);
        core.input(Input::Adopted { conn, bytes });
    }

    fn register(
        self: &Rc<Self>,
        core: &mut Core,
        id: ConnectionId,
        stream: TcpStream,
        direct: Option<std::net::TcpStream>,
        stack: Option<Box<Stack>>,
    ) {
        let writer = Arc::new(Notify::default());
        let slot = Slot {
            queue: Vec::new(),
            writing: false,
            state: State::Open,
            handoff: None,
            writer: Arc::clone(&writer),
            direct,
            tasks: 2,
            stack,
        };
        core.slots.insert(id, slot);
        self.live_tasks.set(self.live_tasks.get() + 2);
        compio::runtime::spawn(conn::reader(Rc::clone(self), id, stream.clone())).detach();
        compio::runtime::spawn(conn::writer(Rc::clone(self), id, stream, writer)).detach();
    }

    /// A connection task ended.
    pub(crate) fn task_done(&self, conn: ConnectionId) {
        self.lock().task_ended(conn);
        let live = self.live_tasks.get().saturating_sub(1);
        self.live_tasks.set(live);
        if live == 0 {
            self.idle.notify();
        }
    }

    /// Sends a connection the engine handed over to its new shard. `stream` is the reader's,
    /// the last handle here that matters: the writer's ends with its task.
    pub(crate) fn move_conn(&self, conn: ConnectionId, stream: TcpStream) {
        let mut core = self.lock();
        let Some((to, bytes, stack)) = core
            .slots
            .get_mut(&conn)
            .and_then(|slot| Some((slot.handoff.take()?, slot.stack.take())))
            .map(|((to, bytes), stack)| (to, bytes, stack))
        else {
            return;
        };
        // A second descriptor for the same socket, through safe std conversions; this
        // runtime's descriptors close when their last handles drop, the socket stays open.
        let std_stream = duplicate(&stream);
        drop(stream);
        match std_stream {
            Some(stream) => core.mail(to, ShardMsg::Adopt { conn, stream, bytes, stack }),
            None => {
                // The engine has forgotten it: nothing else to tell.
                tracing::warn!(shard = %self.id, %conn, "handoff failed: no descriptor");
            }
        }
    }

    /// `Input::Shutdown`, then close whatever is left and wait for the connection tasks to
    /// flush and end, until `deadline`.
    async fn shutdown(&self, deadline: std::time::Instant) {
        for listener in self.listeners.borrow_mut().drain(..) {
            shutdown_socket(&listener);
        }
        {
            let mut core = self.lock();
            core.stopping = true;
            core.input(Input::Shutdown);
            let left: Vec<_> = core.slots.keys().copied().collect();
            for conn in left {
                if let Some(slot) = core.slots.get_mut(&conn)
                    && slot.state == State::Open
                {
                    slot.state = State::Closing;
                    slot.writer.notify();
                }
            }
        }
        let wait = async {
            while self.live_tasks.get() > 0 {
                self.idle.wait().await;
            }
        };
        let grace = deadline.saturating_duration_since(std::time::Instant::now());
        if compio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(shard = %self.id, tasks = self.live_tasks.get(),
                "connection tasks still running after the grace");
        }
    }
}

/// A second descriptor of a socket (safe std conversions), or `None` with a log line.
fn duplicate(stream: &impl std::os::fd::AsFd) -> Option<std::net::TcpStream> {
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(std::net::TcpStream::from(fd)),
        Err(error) => {
            tracing::warn!(%error, "could not duplicate a socket descriptor");
            None
        }
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, layers: Option<Layers>) {
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = listener.accept().await;
        if shard.lock().stopping {
            if let Ok((stream, _)) = &accepted {
                shutdown_socket(stream);
            }
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                errors.accepted();
                shard.accepted(stream, peer, layers.as_ref());
            }
            Err(error) => compio::time::sleep(errors.failed(&error)).await,
        }
    }
}

/// Sleeps until the engine's next deadline and fires it; woken early when an input moved the
/// deadline earlier.
async fn timer_loop(shard: Rc<Shard>) {
    loop {
        let next = {
            let mut core = shard.lock();
            let next = core.engine.poll_timeout();
            core.armed = next;
            next
        };
        match next {
            None => shard.timer.wait().await,
            Some(deadline) => {
                let at = shard.clock.deadline(deadline).unwrap_or_else(far_future);
                let sleep = pin!(compio::time::sleep_until(at));
                let rearm = pin!(shard.timer.wait());
                if let Either::Left(_) = select(sleep, rearm).await {
                    let mut core = shard.lock();
                    let now = shard.clock.now();
                    core.engine.handle_timeout(now);
                    core.dispatch();
                }
            }
        }
    }
}

/// A deadline too far to represent: a day from now is as good.
fn far_future() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(86_400)
}

/// Wakes, on the shard's own thread, the writers that steps run by other shards' threads left
/// work to (see [`Core::wake_writer`]).
async fn errand_loop(shard: Rc<Shard>) {
    loop {
        shard.errand.wait().await;
        let core = &mut *shard.lock();
        for conn in core.deferred.drain(..) {
            if let Some(slot) = core.slots.get(&conn) {
                slot.writer.notify();
            }
        }
    }
}

/// Feeds the authenticator's answers that came after `Action::Authenticate` was handled (see
/// [`musqratt_kit::Authenticator`]).
async fn decisions_loop(shard: Rc<Shard>) {
    loop {
        shard.decided.wait().await;
        let mut core = shard.lock();
        for (conn, decision) in core.decisions.take() {
            core.input(Input::AuthDecision { conn, decision });
        }
    }
}
