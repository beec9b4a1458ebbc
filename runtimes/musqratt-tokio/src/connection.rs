//! One task per socket, on its shard's `LocalSet`: reads into the engine, writes what it sends.

use core::cell::RefCell;
use core::sync::atomic::Ordering;
use core::time::Duration;
use std::io::{self, IoSlice};
use std::rc::Rc;

use bytes::{Buf, BytesMut};
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use musqratt_engine::{ConnectionId, Input};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::shard::{Mail, Shard};

/// Chunks handed to one vectored write.
const MAX_IOVECS: usize = 64;
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
}

pub(crate) async fn run(shard: Rc<RefCell<Shard>>, conn: ConnectionId, stream: TcpStream) {
    let (end, stream) = Serve { shard: &shard, conn, stream: Some(stream) }.await;
    let stream = match (&end, stream) {
        (End::Closed, Some(stream)) => {
            // Boxed: `linger`'s state (a 1 KiB sink buffer, the stream, a timer) would otherwise
            // be part of every connection task's future, alive for the connection's whole life;
            // only closing connections need it. heaptrack of 5000 idle connections showed the
            // task (this future) as the largest per-connection allocation.
            Box::pin(linger(stream)).await;
            None
        }
        (_, stream) => stream,
    };
    let mut state = shard.borrow_mut();
    let slot = state.conns.remove(&conn);
    match end {
        End::Lost => state.input(Input::Closed { conn }),
        End::HandedOff => {
            if let (Some(stream), Some((to, bytes))) = (stream, slot.and_then(|s| s.handoff)) {
                match stream.into_std() {
                    Ok(stream) => {
                        state.counters.handoffs.fetch_add(1, Ordering::Relaxed);
                        state.send_mail(to, Mail::Handoff { conn, stream, bytes });
                    }
                    Err(error) => tracing::warn!(%conn, %error, "handoff failed: connection lost"),
                }
            }
        }
        End::Closed => {}
    }
    state.conn_ended.notify_waiters();
}

/// Serves the connection until it ends; yields the socket when it is still good.
///
/// Written by hand rather than as a loop over `select!`: it waits on the socket's readiness
/// (`poll_read_ready` / `poll_write_ready`, no future to keep) and on its [`Slot`]'s waker,
/// which the shard wakes when the engine gives the connection something to do. A `select!` over
/// a `Notify` per connection, the congestion `Notify` and a readiness future made every idle
/// connection's task 648 bytes larger, plus the `Notify` itself.
///
/// [`Slot`]: crate::shard::Slot
struct Serve<'a> {
    shard: &'a Rc<RefCell<Shard>>,
    conn: ConnectionId,
    stream: Option<TcpStream>,
}

impl Future for Serve<'_> {
    type Output = (End, Option<TcpStream>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_ref() else { return Poll::Ready((End::Lost, None)) };
        loop {
            // What to do now, decided without waiting; and where to be woken.
            let (want_write, close, handoff, congested) = {
                let mut state = this.shard.borrow_mut();
                let congested = state.congested();
                let Some(slot) = state.conns.get_mut(&this.conn) else {
                    return Poll::Ready((End::Closed, None));
                };
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                let now = (!slot.queue.is_empty(), slot.close, slot.handoff.is_some(), congested);
                let waiters = &mut state.congestion_waiters;
                if congested && !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                now
            };
            if !want_write && close {
                return Poll::Ready((End::Closed, this.stream.take()));
            }
            if !want_write && handoff {
                return Poll::Ready((End::HandedOff, this.stream.take()));
            }
            // Stop reading once the engine is done with the connection, and while the links to
            // other shards are full (backpressure on publishers).
            let reading = !close && !handoff && !congested;
            let mut again = false;
            if reading {
                match stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        // Fairness: readiness and `try_read` are outside tokio's cooperative
                        // budget, so a publisher whose socket is never drained (a QoS 0 flood)
                        // would loop here forever and starve every other task of the shard,
                        // its subscribers' writers included (measured: 0 deliveries in the QoS 0
                        // 1→1 throughput bench). One unit of budget per read or flush makes the
                        // task yield once tokio's budget (128) is spent.
                        let coop = ready!(tokio::task::coop::poll_proceed(cx));
                        match read(this.shard, this.conn, stream) {
                            Ok(true) => coop.made_progress(),
                            Ok(false) => {} // readiness cleared: polled again below
                            Err(()) => return Poll::Ready((End::Lost, None)),
                        }
                        again = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready((End::Lost, None)),
                    Poll::Pending => {}
                }
            }
            if want_write {
                match stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let coop = ready!(tokio::task::coop::poll_proceed(cx));
                        if flush(this.shard, this.conn, stream).is_err() {
                            return Poll::Ready((End::Lost, None));
                        }
                        coop.made_progress();
                        again = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready((End::Lost, None)),
                    Poll::Pending => {}
                }
            }
            if !again {
                return Poll::Pending;
            }
        }
    }
}

/// Reads once into the shard's scratch buffer and hands the engine an exact-size copy. A
/// per-connection buffer with room reserved for the next read kept an 8 KiB allocation alive
/// per idle connection (the engine's emptied `read_buf` shares it): most of the 5.8 KB RSS per
/// idle connection measured by `conns`. The copy is one small allocation and memcpy per read.
/// `Ok(false)`: nothing to read after all; `Err`: the peer closed or the socket failed.
fn read(shard: &Rc<RefCell<Shard>>, conn: ConnectionId, stream: &TcpStream) -> Result<bool, ()> {
    let mut state = shard.borrow_mut();
    let state = &mut *state;
    match stream.try_read(&mut state.read_scratch) {
        Ok(0) => Err(()),
        Ok(n) => {
            let bytes = BytesMut::from(&state.read_scratch[..n]);
            state.input(Input::Data { conn, bytes });
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(_) => Err(()),
    }
}

/// Writes as much of the connection's queue as the socket takes, vectored, reporting each write
/// to the engine (which may queue more: a session's backlog waiting for room).
fn flush(shard: &Rc<RefCell<Shard>>, conn: ConnectionId, stream: &TcpStream) -> io::Result<()> {
    loop {
        let mut state = shard.borrow_mut();
        let Some(slot) = state.conns.get_mut(&conn) else { return Ok(()) };
        if slot.queue.is_empty() {
            return Ok(());
        }
        let mut iovecs = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (iovec, chunk) in iovecs.iter_mut().zip(slot.queue.iter()) {
            *iovec = IoSlice::new(chunk);
            count += 1;
        }
        let written = match stream.try_write_vectored(&iovecs[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut left = written;
        while let Some(front) = slot.queue.front_mut() {
            if front.len() <= left {
                left -= front.len();
                slot.queue.pop_front();
            } else {
                front.advance(left);
                break;
            }
        }
        state.input(Input::Written { conn, bytes: written });
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
