//! Hibernation: a connection silent for a while gives up its task and its tokio I/O
//! registration, and its socket waits in an epoll set of the shard's own (docs/adr/0009).
//!
//! Why: of the ~1,230 bytes an idle connection cost, 384 were tokio's, a task (128) and a
//! `ScheduledIo` (256), whatever this crate does with them; an entry in an epoll set is kernel
//! memory, and the socket itself is a file descriptor. The engine's state of the connection
//! stays as it was: a hibernating client is connected, its keep alive runs, messages for it
//! arrive. Whatever needs the socket wakes it: the peer sending (or closing), or the engine
//! writing to it, closing it or handing it to another shard ([`Shard::wake`]). Waking costs two
//! `epoll_ctl` calls and a task; a connection silent for the configured time is expected to
//! stay so for longer (a sensor publishing once a minute).
//!
//! A sweep every `after` marks the connections that did nothing since the sweep before; their
//! task hibernates them when it next finds nothing to read or write. A connection therefore
//! hibernates after between once and twice `after` of silence.

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::io;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use musqratt_engine::ConnectionId;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

use crate::connection::Connection;
use std::sync::Arc;

use crate::shard::{Shard, ShardLock, Stream};

/// Readiness events taken from the epoll set per call.
const EVENTS: usize = 256;

/// A shard's hibernation: where its hibernating sockets are registered, and after how long.
pub(crate) struct Hibernation {
    registry: Registry,
    after: Duration,
}

impl Hibernation {
    /// The shard's side, and the epoll set that [`run`] waits on.
    pub(crate) fn new(after: Duration) -> io::Result<(Self, Poll)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok((Self { registry, after }, poll))
    }
}

/// Hibernates a connection whose task is ending with nothing to do (`End::Hibernate`): the
/// socket leaves tokio for the shard's epoll set. A socket that fails on the way is lost.
pub(crate) fn hibernate(state: &mut Shard, conn: ConnectionId) {
    let Some(slot) = state.conns.get_mut(&conn) else { return };
    let Some(hibernation) = &state.hibernation else {
        // Hibernation stopped (see `run`) after the sweep asked: the connection goes on awake,
        // with a task again.
        slot.hibernate = false;
        if let Some(shard) = state.me.upgrade() {
            tokio::task::spawn_local(Connection::new(shard, conn));
        }
        return;
    };
    let stream = match core::mem::replace(&mut slot.stream, Stream::Moving) {
        Stream::Awake(stream) => stream,
        other => {
            slot.stream = other;
            return;
        }
    };
    slot.waker = None;
    slot.hibernate = false;
    let registered = stream.into_std().and_then(|stream| {
        let token = usize::try_from(conn.0).map_err(io::Error::other)?;
        let fd = stream.as_raw_fd();
        hibernation.registry.register(&mut SourceFd(&fd), Token(token), Interest::READABLE)?;
        Ok(stream)
    });
    match registered {
        Ok(stream) => {
            slot.stream = Stream::Hibernating(stream);
            state.counters.hibernations.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(shard = state.id.0, %conn, "hibernating");
        }
        Err(error) => {
            tracing::debug!(%conn, %error, "hibernation failed: connection lost");
            state.conns.remove(&conn);
            state.stacks.remove(&conn);
            state.lost.push(conn);
            state.drain();
        }
    }
}

/// Gives a hibernating connection its tokio registration and a task again ([`Shard::wake`]).
/// A socket that fails on the way is lost: left in `Shard::lost` for `Shard::drain`.
pub(crate) fn wake(state: &mut Shard, conn: ConnectionId) {
    let Some(slot) = state.conns.get_mut(&conn) else { return };
    let stream = match core::mem::replace(&mut slot.stream, Stream::Moving) {
        Stream::Hibernating(stream) => stream,
        other => {
            slot.stream = other;
            return;
        }
    };
    if let Some(hibernation) = &state.hibernation {
        let fd = stream.as_raw_fd();
        if let Err(error) = hibernation.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!(%conn, %error, "hibernating socket not deregistered");
        }
    }
    match (TcpStream::from_std(stream), state.me.upgrade()) {
        (Ok(stream), Some(shard)) => {
            slot.stream = Stream::Awake(stream);
            slot.active = true;
            state.counters.wakeups.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(shard = state.id.0, %conn, "woken");
            // Not `shard::spawn`: see `start_connection`.
            tokio::task::spawn_local(Connection::new(shard, conn));
        }
        (Err(error), _) => {
            tracing::debug!(%conn, %error, "waking failed: connection lost");
            state.conns.remove(&conn);
            state.stacks.remove(&conn);
            state.lost.push(conn);
        }
        // The shard is going away: nothing left to serve the connection.
        (Ok(_), None) => {
            state.conns.remove(&conn);
            state.stacks.remove(&conn);
        }
    }
}

/// Marks the connections silent since the last sweep, and asks their tasks to hibernate them.
fn sweep(state: &mut Shard) {
    if state.shutting_down {
        return;
    }
    for slot in state.conns.values_mut() {
        if core::mem::take(&mut slot.active) || slot.hibernate {
            continue;
        }
        if let (Stream::Awake(_), Some(waker)) = (&slot.stream, &slot.waker) {
            slot.hibernate = true;
            waker.wake_by_ref();
        }
    }
}

/// The shard's hibernation task: sweeps, and wakes the connections whose socket is readable
/// (data, a close or an error).
pub(crate) async fn run(shard: Arc<ShardLock>, poll: Poll) {
    let Some(after) = shard.lock().hibernation.as_ref().map(|h| h.after) else { return };
    // SAFETY: `Poll` owns its epoll descriptor (closed only when the `Poll` is dropped, which
    // the `AsyncFd` owning it does first thing after deregistering) and `as_raw_fd` always
    // returns that one descriptor: what `register_with_interest` asks of its caller.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
    let failed = match registered.map_err(io::Error::from) {
        Ok(mut poll) => {
            let mut events = Events::with_capacity(EVENTS);
            let mut sweeps = tokio::time::interval(after);
            sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sweeps.tick() => sweep(&mut shard.lock()),
                    ready = poll.readable_mut() => {
                        let woken = ready.and_then(|mut guard| {
                            wake_ready(&shard, guard.get_inner_mut(), &mut events)?;
                            guard.clear_ready();
                            Ok(())
                        });
                        if let Err(error) = woken {
                            break error;
                        }
                    }
                }
            }
        }
        Err(error) => error,
    };
    // Without its epoll set the shard cannot hibernate: every hibernating connection wakes and
    // none hibernates any more.
    tracing::error!(shard = shard.lock().id.0, %failed, "hibernation stopped");
    let mut state = shard.lock();
    let hibernating: Vec<ConnectionId> = state
        .conns
        .iter()
        .filter(|(_, slot)| matches!(slot.stream, Stream::Hibernating(_)))
        .map(|(conn, _)| *conn)
        .collect();
    for conn in hibernating {
        wake(&mut state, conn);
    }
    for slot in state.conns.values_mut() {
        slot.hibernate = false;
    }
    state.hibernation = None;
    state.drain();
}

/// Wakes the connections of every event in the epoll set, until there is none.
fn wake_ready(shard: &ShardLock, poll: &mut Poll, events: &mut Events) -> io::Result<()> {
    loop {
        match poll.poll(events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut state = shard.lock();
        for event in events.iter() {
            let Ok(conn) = u64::try_from(event.token().0) else { continue };
            let conn = ConnectionId(conn);
            state.wake(conn);
        }
        state.drain();
    }
}
