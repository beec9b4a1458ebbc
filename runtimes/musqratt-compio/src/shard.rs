//! A shard thread: one compio runtime, one [`Engine`], its listeners, connections, timer and
//! links to the other shards.

use core::cell::{Cell, RefCell};
use core::pin::pin;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::mpsc;

use async_channel::{Receiver, Sender, TrySendError};
use bytes::BytesMut;
use compio::driver::{DriverType, ProactorBuilder};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::{Runtime, RuntimeBuilder};
use futures_util::future::{Either, select};
use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{
    Action, AuthDecision, Config, ConnectionId, Engine, Event, Input, Instant, ShardId,
    ShardMessage,
};

use crate::conn::{self, Conn, State};
use crate::notify::Notify;
use crate::{Driver, shutdown_socket};

/// What a shard's inbox channel carries. One bounded channel per shard; every sender keeps its
/// own messages in order (see [`Link`]), which keeps MQTT's ordering between shards.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// `Action::ToShard` of another shard, for `Input::FromShard`.
    FromShard { from: ShardId, message: ShardMessage },
    /// A connection another shard handed over (`Action::Handoff`), for `Input::Adopted`.
    Adopt { conn: ConnectionId, stream: std::net::TcpStream, bytes: BytesMut },
    /// Shut down: `Input::Shutdown`, flush, close, end the thread by `deadline`.
    Shutdown { deadline: std::time::Instant },
}

/// The broker's clock: microseconds since it started, shared by every shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(std::time::Instant);

impl Clock {
    pub(crate) fn new() -> Self {
        Self(std::time::Instant::now())
    }

    fn now(self) -> Instant {
        Instant::from_micros(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The wall-clock instant of an engine deadline.
    fn at(self, deadline: Instant) -> std::time::Instant {
        self.0 + Duration::from_micros(deadline.as_micros())
    }
}

/// What a shard thread starts from.
pub(crate) struct ShardSetup {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) rx: Receiver<ShardMsg>,
    pub(crate) senders: Vec<Sender<ShardMsg>>,
    pub(crate) listeners: Vec<std::net::TcpListener>,
    pub(crate) driver: Driver,
    /// Told `Ok(io_uring?)` once the runtime and listeners are up, or why not.
    pub(crate) ready: mpsc::Sender<io::Result<bool>>,
}

fn build_runtime(driver: Driver) -> io::Result<Runtime> {
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
    RuntimeBuilder::new().with_proactor(proactor).build()
}

/// The shard thread's body: runs until `Shutdown` arrives (or every sender is gone).
pub(crate) fn run(setup: ShardSetup) {
    let ShardSetup { config, clock, rx, senders, listeners, driver, ready } = setup;
    let runtime = match build_runtime(driver) {
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
        let shard = Rc::new(Shard::new(config, clock, senders, listeners));
        shard.start_tasks();
        let _ = ready.send(Ok(io_uring));
        loop {
            match rx.recv().await {
                Ok(ShardMsg::FromShard { from, message }) => {
                    shard.input(Input::FromShard { from, message });
                }
                Ok(ShardMsg::Adopt { conn, stream, bytes }) => shard.adopt(conn, stream, bytes),
                Ok(ShardMsg::Shutdown { deadline }) => {
                    shard.shutdown(deadline).await;
                    break;
                }
                Err(_) => {
                    let deadline = std::time::Instant::now() + crate::SHUTDOWN_GRACE;
                    shard.shutdown(deadline).await;
                    break;
                }
            }
        }
    });
    // Dropping the runtime drops the tasks still parked (accept loops, timer, forwarders).
    drop(runtime);
    tracing::debug!(shard = %id, "shard thread stopped");
}

/// The sending end of the link to one other shard: its bounded channel, and the messages that
/// found it full, in order, for the forwarder task.
struct Link {
    tx: Sender<ShardMsg>,
    backlog: RefCell<VecDeque<ShardMsg>>,
    /// Messages in `backlog` or being sent by the forwarder: while any, new ones queue behind.
    pending: Cell<usize>,
    wake: Notify,
}

/// One shard, owned by its thread (`Rc`, never sent).
pub(crate) struct Shard {
    id: ShardId,
    engine: RefCell<Engine>,
    clock: Clock,
    conns: RefCell<HashMap<ConnectionId, Rc<Conn>>>,
    /// Connection numbers are `n × shards + shard`: unique across the broker without sharing.
    next_conn: Cell<u64>,
    shard_count: u64,
    links: Vec<Link>,
    listeners: RefCell<Vec<TcpListener>>,
    /// Wakes the timer task when the engine's deadline moved earlier than the one it sleeps to.
    timer: Notify,
    armed: Cell<Option<Instant>>,
    stopping: Cell<bool>,
    /// Connection tasks (reader and writer) still running, and a wake-up when none is.
    live_tasks: Cell<usize>,
    idle: Notify,
}

impl Shard {
    fn new(
        config: Config,
        clock: Clock,
        senders: Vec<Sender<ShardMsg>>,
        listeners: Vec<TcpListener>,
    ) -> Self {
        let id = config.shard;
        let shard_count = u64::from(config.shard_count);
        let links = senders
            .into_iter()
            .map(|tx| Link {
                tx,
                backlog: RefCell::new(VecDeque::new()),
                pending: Cell::new(0),
                wake: Notify::default(),
            })
            .collect();
        Self {
            id,
            engine: RefCell::new(Engine::new(config)),
            clock,
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            shard_count,
            links,
            listeners: RefCell::new(listeners),
            timer: Notify::default(),
            armed: Cell::new(None),
            stopping: Cell::new(false),
            live_tasks: Cell::new(0),
            idle: Notify::default(),
        }
    }

    fn start_tasks(self: &Rc<Self>) {
        for listener in self.listeners.borrow().iter() {
            compio::runtime::spawn(accept_loop(Rc::clone(self), listener.clone())).detach();
        }
        compio::runtime::spawn(timer_loop(Rc::clone(self))).detach();
        for to in 0..self.links.len() {
            if to != usize::from(self.id.0) {
                compio::runtime::spawn(forward_loop(Rc::clone(self), to)).detach();
            }
        }
    }

    /// Feeds one input to the engine and carries out everything it asks.
    pub(crate) fn input(&self, input: Input) {
        let now = self.clock.now();
        self.engine.borrow_mut().handle_input(now, input);
        self.dispatch();
    }

    /// Carries out every action the engine has, in order, then re-arms the timer if the
    /// deadline moved earlier.
    fn dispatch(&self) {
        loop {
            let action = self.engine.borrow_mut().poll_action();
            let Some(action) = action else { break };
            match action {
                Action::Send { conn, bytes } => {
                    if let Some(c) = self.conns.borrow().get(&conn) {
                        c.push(bytes);
                    }
                }
                Action::Close { conn } => {
                    let removed = self.conns.borrow_mut().remove(&conn);
                    if let Some(c) = removed {
                        c.close();
                    }
                }
                Action::Handoff { conn, to, bytes } => {
                    let removed = self.conns.borrow_mut().remove(&conn);
                    if let Some(c) = removed {
                        tracing::debug!(shard = %self.id, %conn, %to, "handing connection over");
                        c.hand_off(to, bytes);
                    }
                }
                Action::ToShard { to, message } => {
                    self.send_to(to, ShardMsg::FromShard { from: self.id, message });
                }
                Action::Authenticate { conn, request } => {
                    // No authenticator is plugged into this runtime yet: fail closed.
                    tracing::warn!(%conn, client_id = %request.client_id,
                        "authentication requested but no authenticator configured: refusing");
                    let decision = AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED);
                    let now = self.clock.now();
                    self.engine
                        .borrow_mut()
                        .handle_input(now, Input::AuthDecision { conn, decision });
                }
                Action::Event(event) => log_event(self.id, &event),
                other => tracing::warn!(shard = %self.id, ?other, "unknown engine action ignored"),
            }
        }
        let next = self.engine.borrow().poll_timeout();
        match (self.armed.get(), next) {
            (_, None) => {}
            (Some(armed), Some(next)) if next >= armed => {}
            _ => self.timer.notify(),
        }
    }

    /// Sends to another shard over its bounded channel, in order: straight in when nothing is
    /// waiting and there is room, otherwise behind the messages the forwarder still holds.
    fn send_to(&self, to: ShardId, msg: ShardMsg) {
        let Some(link) = self.links.get(usize::from(to.0)) else {
            tracing::warn!(shard = %self.id, %to, "message for a shard that does not exist");
            return;
        };
        let msg = if link.pending.get() == 0 {
            match link.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(msg)) => msg,
                // The other shard has stopped (shutdown).
                Err(TrySendError::Closed(_)) => return,
            }
        } else {
            msg
        };
        link.backlog.borrow_mut().push_back(msg);
        link.pending.set(link.pending.get() + 1);
        link.wake.notify();
    }

    /// A connection accepted by one of this shard's listeners.
    fn accepted(self: &Rc<Self>, stream: TcpStream, peer: core::net::SocketAddr) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY refused");
        }
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        let conn = ConnectionId(n * self.shard_count + u64::from(self.id.0));
        tracing::debug!(shard = %self.id, %conn, %peer, "accepted");
        self.register(conn, stream);
        self.input(Input::Accepted { conn });
    }

    /// A connection handed over by another shard.
    fn adopt(self: &Rc<Self>, conn: ConnectionId, stream: std::net::TcpStream, bytes: BytesMut) {
        if self.stopping.get() {
            return; // dropping the stream closes it
        }
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(shard = %self.id, %conn, %error, "could not adopt connection");
                return;
            }
        };
        tracing::debug!(shard = %self.id, %conn, "adopted connection");
        self.register(conn, stream);
        self.input(Input::Adopted { conn, bytes });
    }

    fn register(self: &Rc<Self>, id: ConnectionId, stream: TcpStream) {
        let conn = Rc::new(Conn::new(id, stream));
        self.conns.borrow_mut().insert(id, Rc::clone(&conn));
        self.live_tasks.set(self.live_tasks.get() + 2);
        compio::runtime::spawn(conn::reader(Rc::clone(self), Rc::clone(&conn))).detach();
        compio::runtime::spawn(conn::writer(Rc::clone(self), conn)).detach();
    }

    /// A connection task ended.
    pub(crate) fn task_done(&self) {
        let live = self.live_tasks.get().saturating_sub(1);
        self.live_tasks.set(live);
        if live == 0 {
            self.idle.notify();
        }
    }

    /// The peer closed the connection or an I/O on it failed: tell the engine, unless the
    /// engine had already closed it or handed it over.
    pub(crate) fn lost(&self, conn: &Conn) {
        if conn.state() != State::Open {
            return;
        }
        conn.set_gone();
        self.conns.borrow_mut().remove(&conn.id);
        self.input(Input::Closed { conn: conn.id });
    }

    /// Sends a connection the engine handed over to its new shard. `stream` is the reader's,
    /// the last handle here that matters: the writer's ends with its task.
    pub(crate) fn move_conn(&self, conn: &Conn, stream: TcpStream) {
        let Some((to, bytes)) = conn.take_handoff() else { return };
        // A second descriptor for the same socket, through safe std conversions; this
        // runtime's descriptor closes when its last handle drops, the socket stays open.
        let std_stream =
            std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned().map(std::net::TcpStream::from);
        drop(stream);
        match std_stream {
            Ok(stream) => self.send_to(to, ShardMsg::Adopt { conn: conn.id, stream, bytes }),
            Err(error) => {
                // The engine has forgotten it: nothing else to tell.
                tracing::warn!(shard = %self.id, conn = %conn.id, %error, "handoff failed");
            }
        }
    }

    /// `Input::Shutdown`, then close whatever is left and wait for the connection tasks to
    /// flush and end, until `deadline`.
    async fn shutdown(&self, deadline: std::time::Instant) {
        self.stopping.set(true);
        for listener in self.listeners.borrow_mut().drain(..) {
            shutdown_socket(&listener);
        }
        self.input(Input::Shutdown);
        let left: Vec<_> = self.conns.borrow_mut().drain().map(|(_, c)| c).collect();
        for conn in left {
            conn.close();
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

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        if shard.stopping.get() {
            if let Ok((stream, _)) = &accepted {
                shutdown_socket(stream);
            }
            return;
        }
        match accepted {
            Ok((stream, peer)) => shard.accepted(stream, peer),
            Err(error) => {
                tracing::warn!(shard = %shard.id, %error, "accept failed");
                // Out of descriptors and the like: let some connections end first.
                compio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sleeps until the engine's next deadline and fires it; woken early when an input moved the
/// deadline earlier.
async fn timer_loop(shard: Rc<Shard>) {
    loop {
        let next = shard.engine.borrow().poll_timeout();
        shard.armed.set(next);
        match next {
            None => shard.timer.wait().await,
            Some(deadline) => {
                let sleep = pin!(compio::time::sleep_until(shard.clock.at(deadline)));
                let rearm = pin!(shard.timer.wait());
                if let Either::Left(_) = select(sleep, rearm).await {
                    let now = shard.clock.now();
                    shard.engine.borrow_mut().handle_timeout(now);
                    shard.dispatch();
                }
            }
        }
    }
}

/// Feeds the messages that found shard `to`'s channel full, in order, waiting for room.
async fn forward_loop(shard: Rc<Shard>, to: usize) {
    let link = &shard.links[to];
    loop {
        let next = link.backlog.borrow_mut().pop_front();
        match next {
            Some(msg) => {
                // An error means that shard has stopped: the message is dropped.
                let _ = link.tx.send(msg).await;
                link.pending.set(link.pending.get().saturating_sub(1));
            }
            None => link.wake.wait().await,
        }
    }
}

fn log_event(shard: ShardId, event: &Event) {
    match event {
        Event::Connected { conn, client_id, session_present } => {
            tracing::info!(%shard, %conn, %client_id, session_present, "client connected");
        }
        Event::Disconnected { conn, reason } => {
            tracing::info!(%shard, %conn, reason = reason.0, "client disconnected");
        }
        Event::MessageDropped { client_id, reason } => {
            tracing::debug!(%shard, %client_id, ?reason, "message dropped");
        }
        other => tracing::debug!(%shard, ?other, "event"),
    }
}
