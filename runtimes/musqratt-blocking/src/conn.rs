//! One connection: a reader thread and a writer thread, and the route that tells them which
//! shard's engine thread they report to.

use std::io;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use bytes::{Bytes, BytesMut};
use musqratt_engine::{ConnectionId, Input};

use crate::inbox::Inboxes;
use crate::shard::ShardInput;
use crate::transport::{CHUNK, Transport};

/// Stack of a connection thread: they hold a 2 KiB buffer and little else.
const CONN_STACK: usize = 128 * 1024;

/// Bytes a reader may have sent to its shard and the shard not yet handled. Beyond it the reader
/// waits (on a condition variable) before reading more, so TCP pushes back on a client that
/// publishes faster than its shard works, and the shard channels stay bounded.
pub const READ_CREDIT: usize = 64 * 1024;

/// What the engine thread tells a connection's writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Write these bytes after the ones before.
    Data(Bytes),
    /// Write everything before, then shut the connection down.
    Close,
}

/// Which shard a connection belongs to. Its reader and writer take the lock for each message
/// they send, and an engine thread handing the connection over takes it while it moves the
/// connection (see `Shard::handoff`): so every message sent before the move is in the old
/// shard's channel and every message after it is in the new shard's, after `Adopt`.
#[derive(Debug)]
pub(crate) struct Route {
    shard: Mutex<usize>,
    shards: Arc<Inboxes>,
    /// Bytes read and not yet handled by the shard (see [`READ_CREDIT`]).
    unhandled: Mutex<usize>,
    handled: Condvar,
}

impl Route {
    pub(crate) fn new(shard: usize, shards: Arc<Inboxes>) -> Self {
        let unhandled = Mutex::new(0);
        Self { shard: Mutex::new(shard), shards, unhandled, handled: Condvar::new() }
    }

    /// Sends to the connection's current shard; false when that shard has stopped.
    pub(crate) fn send(&self, input: Input) -> bool {
        self.send_to_shard(ShardInput::Engine(input))
    }

    fn send_to_shard(&self, input: ShardInput) -> bool {
        let shard = self.lock();
        self.shards[*shard].send(input).is_ok()
    }

    /// Sends bytes read from the connection, then waits while more than [`READ_CREDIT`] bytes
    /// are unhandled, or while the connection's shard has more than
    /// [`FORWARD_CREDIT`](crate::FORWARD_CREDIT) messages unhandled by other shards. False when
    /// the shard has stopped.
    pub(crate) fn send_read(self: &Arc<Self>, conn: ConnectionId, bytes: BytesMut) -> bool {
        let len = bytes.len();
        *self.unhandled.lock().unwrap_or_else(PoisonError::into_inner) += len;
        let credit = ReadCredit { route: Arc::clone(self), len };
        if !self.send_to_shard(ShardInput::Read { conn, bytes, credit }) {
            return false;
        }
        let mut unhandled = self.unhandled.lock().unwrap_or_else(PoisonError::into_inner);
        while *unhandled > READ_CREDIT {
            unhandled = self.handled.wait(unhandled).unwrap_or_else(PoisonError::into_inner);
        }
        drop(unhandled);
        let shard = *self.lock();
        self.shards.wait_for_forward_credit(shard);
        true
    }

    /// Holds the route still, for moving the connection.
    pub(crate) fn lock(&self) -> MutexGuard<'_, usize> {
        self.shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes of a read on their way to the shard: dropping it, handled or not, gives the credit back.
#[derive(Debug)]
pub(crate) struct ReadCredit {
    route: Arc<Route>,
    len: usize,
}

impl Drop for ReadCredit {
    fn drop(&mut self) {
        let mut unhandled = self.route.unhandled.lock().unwrap_or_else(PoisonError::into_inner);
        let before = *unhandled;
        *unhandled = before.saturating_sub(self.len);
        if before > READ_CREDIT && *unhandled <= READ_CREDIT {
            self.route.handled.notify_all();
        }
    }
}

/// What an engine thread keeps of a connection it owns.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) writer: Sender<WriterMsg>,
    pub(crate) route: Arc<Route>,
}

/// Starts the reader and writer threads of a freshly accepted connection. `register` is called
/// with the connection's handle before the reader starts, so that the shard knows the connection
/// before its first bytes arrive.
pub(crate) fn spawn<T: Transport>(
    conn: ConnectionId,
    stream: T::Stream,
    route: Arc<Route>,
    writer: (Sender<WriterMsg>, Receiver<WriterMsg>),
    register: impl FnOnce(ConnHandle) -> bool,
) -> io::Result<[thread::JoinHandle<()>; 2]> {
    let write_half = T::try_clone(&stream)?;
    let (tx, rx) = writer;
    if !register(ConnHandle { writer: tx, route: Arc::clone(&route) }) {
        T::shutdown(&stream);
        return Err(io::Error::other("broker is shutting down"));
    }
    let writer_route = Arc::clone(&route);
    let writer = thread::Builder::new()
        .name(format!("mqtt-w-{conn}"))
        .stack_size(CONN_STACK)
        .spawn(move || write_loop::<T>(conn, write_half, &rx, &writer_route))?;
    let reader_route = Arc::clone(&route);
    let reader = thread::Builder::new()
        .name(format!("mqtt-r-{conn}"))
        .stack_size(CONN_STACK)
        .spawn(move || read_loop::<T>(conn, stream, &reader_route));
    match reader {
        Ok(reader) => Ok([reader, writer]),
        Err(e) => {
            // The writer exits when the shard drops the connection after this `Closed`.
            route.send(Input::Closed { conn });
            Err(e)
        }
    }
}

/// Reads at most 2 KiB at a time and hands it to the shard, until the end of the stream.
fn read_loop<T: Transport>(conn: ConnectionId, mut stream: T::Stream, route: &Arc<Route>) {
    let mut buf = [0u8; CHUNK];
    loop {
        match T::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let bytes = BytesMut::from(&buf[..n]);
                if !route.send_read(conn, bytes) {
                    break;
                }
            }
            Err(error) => {
                tracing::debug!(%conn, %error, "read failed");
                break;
            }
        }
    }
    route.send(Input::Closed { conn });
    T::shutdown(&stream);
}

/// Writes what the engine sends, coalescing queued chunks into writes of up to 2 KiB, and reports
/// each batch written. Ends on `Close` (after writing what came before it) or when the shard
/// forgets the connection, and then shuts the socket down, which also ends the reader.
fn write_loop<T: Transport>(
    conn: ConnectionId,
    mut stream: T::Stream,
    rx: &Receiver<WriterMsg>,
    route: &Route,
) {
    let mut batch = Vec::with_capacity(CHUNK);
    let mut closing = false;
    'outer: while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Data(bytes) => batch.extend_from_slice(&bytes),
                WriterMsg::Close => closing = true,
            }
            if closing || batch.len() >= CHUNK {
                break;
            }
            next = rx.try_recv().ok();
        }
        let written = batch.len();
        for chunk in batch.chunks(CHUNK) {
            if let Err(error) = write_all::<T>(&mut stream, chunk) {
                tracing::debug!(%conn, %error, "write failed");
                break 'outer;
            }
        }
        batch.clear();
        if closing {
            break;
        }
        if written > 0 && !route.send(Input::Written { conn, bytes: written }) {
            break;
        }
    }
    T::shutdown(&stream);
}

fn write_all<T: Transport>(stream: &mut T::Stream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match T::write(stream, bytes)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::sync::mpsc;

    use super::*;

    /// A reader more than READ_CREDIT ahead of its shard waits until the shard handles (or
    /// drops) what it sent.
    #[test]
    fn reader_waits_for_credit() {
        let (tx, rx) = mpsc::channel();
        let route = Arc::new(Route::new(0, Inboxes::new(vec![tx])));
        let reader = Arc::clone(&route);
        let (done_tx, done_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            for _ in 0..2 {
                let bytes = BytesMut::from(&[0u8; READ_CREDIT][..]);
                assert!(reader.send_read(ConnectionId(1), bytes));
                done_tx.send(()).unwrap();
            }
        });
        done_rx.recv().unwrap(); // exactly at the limit: no wait
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        // Over the limit now: the reader waits.
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(second);
        thread.join().unwrap();
        assert_eq!(*route.unhandled.lock().unwrap(), 0);
    }
}
