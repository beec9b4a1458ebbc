//! One task per socket, on its shard's `LocalSet`: reads into the engine, writes what it sends.
//!
//! The task is a hand-written future of two words (the shard and the connection number): the
//! socket, the queue of bytes to write and the task's waker live in the connection's
//! [`Slot`](crate::shard::Slot) in the shard. A connection costs its tokio task until it
//! hibernates (`hibernate`: then it has none), and tokio lays a task out on 128-byte boundaries
//! (header, scheduler, future, trailer): with this future the task is one 128-byte block. The `async fn` it replaces (a `select!` over the socket's
//! readiness and two `Notify`s, the socket, the shard's `Rc`s, a per-connection `Arc<Notify>`)
//! made a 768-byte task plus a 48-byte `Notify` per connection: measured with heaptrack, 10,000
//! idle connections, the largest per-connection cost of the broker.

use core::pin::Pin;
use core::sync::atomic::Ordering;
use core::task::{Context, Poll};
use core::time::Duration;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use musqratt_engine::{ConnectionId, Input};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::sync::Arc;

use crate::shard::{Mail, Shard, ShardLock, Slot, Stream};

/// Chunks handed to one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;
/// How long a closed connection still reads and discards what the peer sends, so that the
/// kernel does not answer unread data with a reset that could destroy our last packets.
const LINGER: Duration = Duration::from_millis(500);

/// How a connection's task ends.
enum End {
    /// The engine asked for the close: it has forgotten the connection.
    Closed,
    /// The peer closed or the socket failed: the engine must be told.
    Lost,
    /// Moved to another shard.
    HandedOff,
    /// Silent since the last sweep and asked to hibernate: the socket goes to the shard's
    /// epoll set and the task ends (`hibernate`).
    Hibernate,
    /// The socket is not this task's any more (it hibernated): nothing to do.
    Gone,
}

/// What the task last saw of its slot before waiting: if it changed before the waker was back
/// in the slot, nobody could wake the task for it.
#[derive(Default, PartialEq, Eq)]
struct Seen {
    queued: bool,
    close: bool,
    handoff: bool,
}

impl Seen {
    fn of(slot: &Slot) -> Self {
        Self { queued: !slot.queue.is_empty(), close: slot.close, handoff: slot.handoff.is_some() }
    }
}

/// The task of one connection (its socket is in the shard's [`Slot`]).
pub(crate) struct Connection {
    shard: Arc<ShardLock>,
    conn: ConnectionId,
}

impl Connection {
    pub(crate) fn new(shard: Arc<ShardLock>, conn: ConnectionId) -> Self {
        Self { shard, conn }
    }

    /// Serves the connection until it ends. Returns `Pending` only when neither the socket nor
    /// the slot has anything to do, with the task's waker left in the slot and in the socket's
    /// registration (and the connection in the shard's parked list while links are full).
    fn serve(&self, cx: &mut Context<'_>) -> Poll<End> {
        // Out of the slot while this poll runs: what the engine queues for this connection from
        // inside this poll is seen by the loop below without waking the task again.
        let waker = match self.shard.lock().conns.get_mut(&self.conn) {
            Some(slot) => slot.waker.take(),
            None => return Poll::Ready(End::Closed),
        };
        let mut seen = Seen::default();
        let end = self.serve_loop(cx, &mut seen);
        if end.is_pending() {
            let mut state = self.shard.lock();
            if let Some(slot) = state.conns.get_mut(&self.conn) {
                slot.waker = match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => Some(waker),
                    _ => Some(cx.waker().clone()),
                };
                // Another shard's thread may have queued bytes (or a close) between the last
                // look and now, while the waker was out of the slot: look again.
                if seen != Seen::of(slot) {
                    cx.waker().wake_by_ref();
                }
            }
        }
        end
    }

    fn serve_loop(&self, cx: &mut Context<'_>, seen: &mut Seen) -> Poll<End> {
        let conn = self.conn;
        loop {
            let mut state = self.shard.lock();
            let state = &mut *state;
            let congested = state.congested();
            let Some(slot) = state.conns.get_mut(&conn) else { return Poll::Ready(End::Closed) };
            let handoff = slot.handoff.is_some();
            if slot.queue.is_empty() && slot.close {
                return Poll::Ready(End::Closed);
            }
            if slot.queue.is_empty() && handoff {
                return Poll::Ready(End::HandedOff);
            }
            // Stop reading once the engine is done with the connection, and while the links to
            // other shards are full (backpressure on publishers): `forward` wakes the parked
            // connections when the links have room again.
            let done = slot.close || handoff;
            if congested && !done && !slot.parked {
                slot.parked = true;
                state.parked.push(conn);
            }
            let mut progress = false;
            // `poll_read_ready` and `poll_write_ready` spend one unit of tokio's cooperative
            // budget each time they report readiness, and return `Pending` (waking the task)
            // once it is spent: a publisher whose socket always has data yields after 128
            // reads instead of starving the other tasks of its shard (measured when nothing
            // spent the budget: 0 deliveries in the QoS 0 1→1 throughput bench, every message
            // dropped as `SlowReader`).
            let layered = slot.layered;
            let Stream::Awake(stream) = &slot.stream else { return Poll::Ready(End::Gone) };
            if !done && !congested {
                match stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        // Read into the shard's scratch buffer and hand the engine an
                        // exact-size copy: a per-connection buffer with room for the next read
                        // kept an 8 KiB allocation alive per idle connection.
                        match stream.try_read(&mut state.read_scratch) {
                            Ok(0) => return Poll::Ready(End::Lost),
                            Ok(n) => {
                                let bytes = BytesMut::from(&state.read_scratch[..n]);
                                if layered {
                                    // Through the connection's layers (a failed one: lost).
                                    if !state.data_layered(conn, bytes) {
                                        let _ = flush(state, conn);
                                        return Poll::Ready(End::Lost);
                                    }
                                } else {
                                    state.input(Input::Data { conn, bytes });
                                }
                            }
                            // The readiness was stale and is now cleared: polled again below.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => return Poll::Ready(End::Lost),
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Lost),
                    Poll::Pending => {}
                }
            }
            // The read may have queued bytes (or closed, or handed off): look at the slot again.
            let Some(slot) = state.conns.get_mut(&conn) else { return Poll::Ready(End::Closed) };
            let Stream::Awake(stream) = &slot.stream else { return Poll::Ready(End::Gone) };
            if !slot.queue.is_empty() {
                match stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if flush(state, conn).is_err() {
                            return Poll::Ready(End::Lost);
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Lost),
                    Poll::Pending => {}
                }
            }
            let Some(slot) = state.conns.get_mut(&conn) else { return Poll::Ready(End::Closed) };
            if progress {
                slot.active = true;
                slot.hibernate = false;
                continue;
            }
            // Nothing to read, nothing to write: hibernate if the sweep asked and nothing has
            // come since (`Shard::wake` gives the connection a task again when something does).
            if slot.hibernate && slot.queue.is_empty() && !slot.close && !handoff && !slot.parked {
                return Poll::Ready(End::Hibernate);
            }
            *seen = Seen::of(slot);
            return Poll::Pending;
        }
    }

    /// Forgets the slot and does what the end asks: linger, tell the engine, or hand the socket
    /// to another shard; or keeps the slot and hibernates the socket.
    fn finish(&self, end: End) {
        let mut state = self.shard.lock();
        let conn = self.conn;
        let slot = match end {
            End::Hibernate | End::Gone => None,
            _ => state.conns.remove(&conn).map(|slot| *slot),
        };
        let stack = match end {
            End::Hibernate | End::Gone => None,
            _ => state.stacks.remove(&conn),
        };
        match (end, slot) {
            (End::Hibernate, _) => crate::hibernate::hibernate(&mut state, conn),
            (End::Gone, _) => {}
            (End::Closed, Some(Slot { stream: Stream::Awake(stream), .. })) => {
                drop(state);
                // A task of its own: only closing connections need `linger`'s state (a 1 KiB
                // sink buffer, the socket, a timer).
                crate::shard::spawn(&self.shard, linger(stream));
                state = self.shard.lock();
            }
            (End::Closed, _) => {}
            (End::Lost, _) => state.input(Input::Closed { conn }),
            (End::HandedOff, slot) => {
                if let Some(Slot {
                    stream: Stream::Awake(stream), handoff: Some(handoff), ..
                }) = slot
                {
                    let (to, bytes) = *handoff;
                    match stream.into_std() {
                        Ok(stream) => {
                            state.counters.handoffs.fetch_add(1, Ordering::Relaxed);
                            state.send_mail(to, Mail::Handoff { conn, stream, bytes, stack });
                        }
                        Err(error) => {
                            tracing::warn!(%conn, %error, "handoff failed: connection lost");
                        }
                    }
                }
            }
        }
        state.conn_ended.notify_waiters();
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let end = core::task::ready!(self.serve(cx));
        self.finish(end);
        Poll::Ready(())
    }
}

impl Drop for Connection {
    /// A task that panics leaves the engine in an unknown state: stop the broker (tokio drops
    /// the future of a task that panicked while unwinding, and would otherwise let the shard
    /// run on without it). Done here rather than with a guard in the future: 16 bytes more per
    /// task would take it past 128 bytes.
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(state) = self.shard.try_lock() {
                state.guard.trip();
            }
        }
    }
}

/// Writes as much of the connection's queue as the socket takes, vectored, reporting each write
/// to the engine (which may queue more: a session's backlog waiting for room).
fn flush(state: &mut Shard, conn: ConnectionId) -> io::Result<()> {
    loop {
        let Some(slot) = state.conns.get_mut(&conn) else { return Ok(()) };
        if slot.queue.is_empty() {
            state.recycle_queue(conn);
            return Ok(());
        }
        let mut iovecs = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (iovec, chunk) in iovecs.iter_mut().zip(slot.queue.iter()) {
            *iovec = IoSlice::new(chunk);
            count += 1;
        }
        let Stream::Awake(stream) = &slot.stream else { return Ok(()) };
        let written = match stream.try_write_vectored(&iovecs[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        slot.queue.consume(written);
        let layered = slot.layered;
        state.written(conn, written, layered);
    }
}

/// Closes the write side, then reads and discards until the peer closes too or [`LINGER`]
/// passes.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    /// The connection's task future is two words; tokio's task around it then fits one
    /// 128-byte block (see the module documentation).
    #[test]
    fn connection_future_is_two_words() {
        assert_eq!(size_of::<super::Connection>(), 16);
    }
}
