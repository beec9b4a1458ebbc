//! A connection: its state shared by the shard, its reader task and its writer task.

use core::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use musqratt_engine::{ConnectionId, Input, ShardId};

use crate::notify::Notify;
use crate::shard::Shard;
use crate::shutdown_socket;

/// Size of a connection's read buffer. Each read fills what is free of it; the bytes read are
/// split off for the engine, and the allocation is reused once the engine has dropped them.
pub const READ_BUFFER: usize = 16 * 1024;

/// A read needs at least this much room, or the buffer is reserved back to [`READ_BUFFER`].
const MIN_READ: usize = 2 * 1024;

/// Most chunks in one vectored write (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 512;

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

pub(crate) struct Conn {
    pub(crate) id: ConnectionId,
    stream: TcpStream,
    /// `Action::Send` chunks not yet given to a write.
    queue: RefCell<Vec<Bytes>>,
    state: Cell<State>,
    handoff: RefCell<Option<(ShardId, BytesMut)>>,
    /// Wakes the writer: something queued, or the state changed.
    writer: Notify,
}

impl Conn {
    pub(crate) fn new(id: ConnectionId, stream: TcpStream) -> Self {
        Self {
            id,
            stream,
            queue: RefCell::new(Vec::new()),
            state: Cell::new(State::Open),
            handoff: RefCell::new(None),
            writer: Notify::default(),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// `Action::Send`: queue behind what was sent before.
    pub(crate) fn push(&self, bytes: Bytes) {
        if self.state.get() == State::Open {
            self.queue.borrow_mut().push(bytes);
            self.writer.notify();
        }
    }

    /// `Action::Close`: flush, then shut down.
    pub(crate) fn close(&self) {
        if self.state.get() == State::Open {
            self.state.set(State::Closing);
            self.writer.notify();
        }
    }

    /// `Action::Handoff`: the reader sends the socket to `to` once the engine call returns.
    pub(crate) fn hand_off(&self, to: ShardId, bytes: BytesMut) {
        if self.state.get() == State::Open {
            self.state.set(State::HandedOff);
            *self.handoff.borrow_mut() = Some((to, bytes));
            self.writer.notify();
        }
    }

    pub(crate) fn set_gone(&self) {
        self.state.set(State::Gone);
        self.writer.notify();
    }

    pub(crate) fn take_handoff(&self) -> Option<(ShardId, BytesMut)> {
        self.handoff.borrow_mut().take()
    }
}

/// Counts the task out of the shard's live tasks however it ends.
struct TaskGuard(Rc<Shard>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.task_done();
    }
}

/// Reads into one owned buffer, handed to the kernel and given back by each read, and feeds
/// the engine; moves the socket when the engine hands the connection over.
pub(crate) async fn reader(shard: Rc<Shard>, conn: Rc<Conn>) {
    let _guard = TaskGuard(Rc::clone(&shard));
    let mut stream = conn.stream.clone();
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    loop {
        if conn.state() != State::Open {
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
                tracing::debug!(conn = %conn.id, "peer closed");
                shard.lost(&conn);
                break;
            }
            Ok(n) => {
                let bytes = buf.split_to(n);
                match conn.state() {
                    State::Open => shard.input(Input::Data { conn: conn.id, bytes }),
                    State::HandedOff => {
                        // Not expected (handoffs come from our own Data), but keep the bytes.
                        if let Some((_, handed)) = &mut *conn.handoff.borrow_mut() {
                            handed.extend_from_slice(&bytes);
                        }
                    }
                    State::Closing | State::Gone => break,
                }
                if conn.state() == State::HandedOff {
                    shard.move_conn(&conn, stream);
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(conn = %conn.id, %error, "read failed");
                shard.lost(&conn);
                shutdown_socket(&stream);
                break;
            }
        }
    }
}

/// Writes the queued chunks with one vectored write per batch and reports them written; after
/// `Close`, flushes and shuts the socket down (which also ends the reader's pending read).
pub(crate) async fn writer(shard: Rc<Shard>, conn: Rc<Conn>) {
    let _guard = TaskGuard(Rc::clone(&shard));
    let mut stream = conn.stream.clone();
    // Two vectors alternate between the queue and the write: no allocation per write.
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        {
            let mut queue = conn.queue.borrow_mut();
            if queue.len() <= MAX_IOVECS {
                core::mem::swap(&mut *queue, &mut batch);
            } else {
                batch.extend(queue.drain(..MAX_IOVECS));
            }
        }
        if batch.is_empty() {
            match conn.state() {
                State::Open => {
                    conn.writer.wait().await;
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
        match result {
            Ok(()) => {
                if conn.state() == State::Open {
                    shard.input(Input::Written { conn: conn.id, bytes: len });
                }
            }
            Err(error) => {
                tracing::debug!(conn = %conn.id, %error, "write failed");
                conn.queue.borrow_mut().clear();
                shard.lost(&conn);
                shutdown_socket(&stream);
                break;
            }
        }
    }
}
