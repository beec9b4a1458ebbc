//! One task per socket, on its shard's `LocalSet`: reads into the engine, writes what it sends.

use core::cell::RefCell;
use core::sync::atomic::Ordering;
use core::time::Duration;
use std::io::{self, IoSlice};
use std::rc::Rc;

use bytes::{Buf, BytesMut};
use musqratt_engine::{ConnectionId, Input};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::Notify;

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

pub(crate) async fn run(
    shard: Rc<RefCell<Shard>>,
    conn: ConnectionId,
    stream: TcpStream,
    wake: Rc<Notify>,
) {
    let (end, stream) = serve(&shard, conn, stream, &wake).await;
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

/// Serves the connection until it ends; returns the socket when it is still good.
async fn serve(
    shard: &Rc<RefCell<Shard>>,
    conn: ConnectionId,
    stream: TcpStream,
    wake: &Notify,
) -> (End, Option<TcpStream>) {
    let mut did_io = false;
    loop {
        // What to do now, decided without waiting.
        let (want_write, close, handoff, congested, uncongested) = {
            let state = shard.borrow();
            let Some(slot) = state.conns.get(&conn) else { return (End::Closed, None) };
            (
                !slot.queue.is_empty(),
                slot.close,
                slot.handoff.is_some(),
                state.congested(),
                state.uncongested.clone(),
            )
        };
        if !want_write && close {
            return (End::Closed, Some(stream));
        }
        if !want_write && handoff {
            return (End::HandedOff, Some(stream));
        }
        // Stop reading once the engine is done with the connection, and while the links to
        // other shards are full (backpressure on publishers).
        let reading = !close && !handoff && !congested;
        let interest = match (reading, want_write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        tokio::select! {
            () = wake.notified() => {}
            () = uncongested.notified(), if congested => {}
            ready = ready(&stream, interest), if interest.is_some() => {
                let Ok(ready) = ready else { return (End::Lost, None) };
                if reading && (ready.is_readable() || ready.is_read_closed()) {
                    // Read into the shard's scratch buffer and hand the engine an exact-size
                    // copy. A per-connection buffer with room reserved for the next read kept
                    // an 8 KiB allocation alive per idle connection (the engine's emptied
                    // `read_buf` shares it): most of the 5.8 KB RSS per idle connection
                    // measured by `conns`. The copy is one small allocation and memcpy per read.
                    let mut state = shard.borrow_mut();
                    let state = &mut *state;
                    match stream.try_read(&mut state.read_scratch) {
                        Ok(0) => return (End::Lost, None),
                        Ok(n) => {
                            let bytes = BytesMut::from(&state.read_scratch[..n]);
                            state.input(Input::Data { conn, bytes });
                            did_io = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return (End::Lost, None),
                    }
                }
                if want_write && (ready.is_writable() || ready.is_write_closed()) {
                    if flush(shard, conn, &stream).is_err() {
                        return (End::Lost, None);
                    }
                    did_io = true;
                }
            }
        }
        // Fairness: `TcpStream::ready`, `try_read_buf` and `try_write_vectored` do not take
        // part in tokio's cooperative budget, so a publisher whose socket is never drained
        // (a QoS 0 flood) would loop here forever in one poll and starve every other task of
        // the shard, its subscribers' writers included (measured: 0 deliveries in the QoS 0
        // 1→1 throughput bench, every message dropped as SlowReader). Spending one unit of
        // budget per read or flush makes the task yield after tokio's budget (128) is used up.
        if core::mem::take(&mut did_io) {
            tokio::task::coop::consume_budget().await;
        }
    }
}

async fn ready(stream: &TcpStream, interest: Option<Interest>) -> io::Result<tokio::io::Ready> {
    match interest {
        Some(interest) => stream.ready(interest).await,
        None => core::future::pending().await,
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
