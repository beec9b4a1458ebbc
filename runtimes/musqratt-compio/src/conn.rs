//! A connection's two tasks, on its shard's thread: the reader and the writer. What a step of
//! the engine needs of the connection is in its [`Slot`](crate::shard::Slot), behind the
//! shard's lock.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use musqratt_engine::{ConnectionId, Input};

use crate::notify::Notify;
use crate::shard::Shard;
use crate::shutdown_socket;

/// Size of a connection's read buffer. Each read fills what is free of it; the bytes read are
/// split off for the engine, and the allocation is reused once the engine has dropped them.
pub const READ_BUFFER: usize = 16 * 1024;

/// A read needs at least this much room, or the buffer is reserved back to [`READ_BUFFER`].
const MIN_READ: usize = 2 * 1024;

/// Most chunks in one vectored write (Linux's `IOV_MAX` is 1024).
pub(crate) const MAX_IOVECS: usize = 512;

/// Where a connection is in its life, as the runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The engine knows it.
    Open,
    /// The engine closed it: flush what is queued, then shut the socket down.
    Closing,
    /// The engine handed it to another shard: the reader moves the socket there.
    HandedOff,
    /// The peer closed it or an I/O failed; the engine was told.
    Gone,
}

/// Counts the task out of the shard's live tasks (and the connection's slot) however it ends.
struct TaskGuard(Rc<Shard>, ConnectionId);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.task_done(self.1);
    }
}

/// Reads into one owned buffer, handed to the kernel and given back by each read, and feeds
/// the engine; moves the socket when the engine hands the connection over.
pub(crate) async fn reader(shard: Rc<Shard>, conn: ConnectionId, mut stream: TcpStream) {
    let _guard = TaskGuard(Rc::clone(&shard), conn);
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    loop {
        if state(&shard, conn) != State::Open {
            break;
        }
        if buf.capacity() < MIN_READ {
            // Takes the allocation back when the engine holds no part of it any more.
            buf.reserve(READ_BUFFER);
        }
        let BufResult(result, returned) = stream.read(buf).await;
        buf = returned;
        match result {
            Ok(0) => {
                tracing::debug!(%conn, "peer closed");
                shard.lock().lost(conn);
                break;
            }
            Ok(n) => {
                let bytes = buf.split_to(n);
                let state = {
                    let mut core = shard.lock();
                    let (before, layered) = core
                        .slots
                        .get(&conn)
                        .map_or((State::Gone, false), |slot| (slot.state, slot.stack.is_some()));
                    match before {
                        State::Open if layered => core.data_layered(conn, bytes),
                        State::Open => core.input(Input::Data { conn, bytes }),
                        State::HandedOff => {
                            // Not expected (handoffs come from our own Data): keep the bytes,
                            // decoded by the connection's layers if it has some (an answer
                            // they would send now is dropped: the connection is moving).
                            if let Some(slot) = core.slots.get_mut(&conn) {
                                let bytes = match slot.stack.as_mut() {
                                    Some(stack) => stack.read(bytes, drop).data,
                                    None => Some(bytes),
                                };
                                if let (Some((_, handed)), Some(bytes)) =
                                    (slot.handoff.as_mut(), bytes)
                                {
                                    handed.extend_from_slice(&bytes);
                                }
                            }
                        }
                        State::Closing | State::Gone => {}
                    }
                    core.slots.get(&conn).map_or(State::Gone, |slot| slot.state)
                };
                match state {
                    State::Open => {}
                    State::HandedOff => {
                        shard.move_conn(conn, stream);
                        return;
                    }
                    State::Closing | State::Gone => break,
                }
            }
            Err(error) => {
                tracing::debug!(%conn, %error, "read failed");
                shard.lock().lost(conn);
                shutdown_socket(&stream);
                break;
            }
        }
    }
}

fn state(shard: &Shard, conn: ConnectionId) -> State {
    shard.lock().slots.get(&conn).map_or(State::Gone, |slot| slot.state)
}

/// Writes the queued chunks with one vectored write per batch and reports them written; after
/// `Close`, flushes and shuts the socket down (which also ends the reader's pending read).
/// While a write is in flight the slot says so, and no other thread writes to the socket.
pub(crate) async fn writer(
    shard: Rc<Shard>,
    conn: ConnectionId,
    mut stream: TcpStream,
    wake: Arc<Notify>,
) {
    let _guard = TaskGuard(Rc::clone(&shard), conn);
    // Two vectors alternate between the queue and the write: no allocation per write.
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        let state = {
            let mut core = shard.lock();
            let Some(slot) = core.slots.get_mut(&conn) else { break };
            if slot.queue.len() <= MAX_IOVECS {
                core::mem::swap(&mut slot.queue, &mut batch);
            } else {
                batch.extend(slot.queue.drain(..MAX_IOVECS));
            }
            slot.writing = !batch.is_empty();
            slot.state
        };
        if batch.is_empty() {
            match state {
                State::Open => {
                    wake.wait().await;
                    continue;
                }
                State::Closing | State::Gone => {
                    shutdown_socket(&stream);
                    break;
                }
                State::HandedOff => break,
            }
        }
        let len: usize = batch.iter().map(Bytes::len).sum();
        let BufResult(result, mut returned) = stream.write_vectored_all(batch).await;
        returned.clear();
        batch = returned;
        let mut core = shard.lock();
        let (state, layered) = match core.slots.get_mut(&conn) {
            Some(slot) => {
                slot.writing = false;
                (slot.state, slot.stack.is_some())
            }
            None => (State::Gone, false),
        };
        match result {
            Ok(()) => match state {
                State::Open if layered => core.written(conn, len),
                State::Open => core.input(Input::Written { conn, bytes: len }),
                _ => {}
            },
            Err(error) => {
                tracing::debug!(%conn, %error, "write failed");
                if let Some(slot) = core.slots.get_mut(&conn) {
                    slot.queue.clear();
                }
                core.lost(conn);
                drop(core);
                shutdown_socket(&stream);
                break;
            }
        }
    }
}
