//! One connection: a reader thread and a writer thread, the route that tells them which shard
//! they report to, and what a shard keeps of it (a writer for its sends).

use core::sync::atomic::{AtomicUsize, Ordering};
use std::io;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use bytes::{Bytes, BytesMut};
use musqratt_engine::{ConnectionId, Input};
use musqratt_kit::Stack;

use crate::inbox::{Counters, Inboxes, ShardCell};
use crate::shard::{ShardInput, Stepper};
use crate::transport::{CHUNK, Transport};

/// Stack of a connection thread: they hold a 2 KiB buffer and little else.
const CONN_STACK: usize = 128 * 1024;

/// Bytes a reader may have sent to its shard and the shard not yet handled. Beyond it the reader
/// waits (on a condition variable) before reading more, so TCP pushes back on a client that
/// publishes faster than its shard works, and the shard channels stay bounded.
pub const READ_CREDIT: usize = 64 * 1024;

/// What a stepping thread tells a connection's writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Write these bytes after the ones before.
    Data(Bytes),
    /// Write everything before, then shut the connection down.
    Close,
}

/// Which shard a connection belongs to. A handoff changes it under its lock, holding the old
/// shard's lock too (see `Shard::handoff`). The reader and writer mail the shard with the route
/// locked, so every input mailed before the move is in the old shard's mailbox (and moves with
/// the connection) and every input after it goes to the new shard, after `Adopt`. They step a
/// shard in person only holding that shard's lock and having seen the route still point at it,
/// so no handoff can happen meanwhile.
pub(crate) struct Route {
    shard: Mutex<usize>,
    shards: Arc<Inboxes>,
    /// Bytes read and not yet handled by the shard (see [`READ_CREDIT`]).
    unhandled: Mutex<usize>,
    handled: Condvar,
    /// The connection's bytes pass through byte-stream layers (its `ConnHandle::stack`): its
    /// reads and writes are marked so, and a plain connection's shard looks for no stack.
    layered: bool,
}

impl core::fmt::Debug for Route {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let shard = self.shard.try_lock().map(|shard| *shard).ok();
        f.debug_struct("Route").field("shard", &shard).finish_non_exhaustive()
    }
}

impl Route {
    pub(crate) fn new(shard: usize, shards: Arc<Inboxes>) -> Self {
        let unhandled = Mutex::new(0);
        Self {
            shard: Mutex::new(shard),
            shards,
            unhandled,
            handled: Condvar::new(),
            layered: false,
        }
    }

    /// The same, for a connection whose bytes pass through byte-stream layers.
    pub(crate) fn layered(mut self) -> Self {
        self.layered = true;
        self
    }

    /// Tells the shard that the writer thread wrote `bytes` of the connection's queue.
    fn send_written(&self, conn: ConnectionId, bytes: usize) -> bool {
        if self.layered {
            self.submit(ShardInput::LayeredWritten { conn, bytes })
        } else {
            self.send(Input::Written { conn, bytes })
        }
    }

    /// Gives `input` to the connection's current shard; false when that shard has stopped.
    pub(crate) fn send(&self, input: Input) -> bool {
        self.submit(ShardInput::Engine(input))
    }

    /// Steps the connection's shard with `input` on this thread when no other thread is stepping
    /// it (after the shard's older mail), or mails `input` to it otherwise.
    fn submit(&self, input: ShardInput) -> bool {
        let shard = *self.lock();
        if let Some(mut state) = self.shards.get(shard).and_then(ShardCell::try_lock) {
            // Holding the shard's lock, the route cannot move away from it.
            if *self.lock() == shard {
                if state.stopped() {
                    return false;
                }
                Counters::add(&self.shards.counters.direct_steps);
                state.step(&self.shards, Some(input), Stepper::Connection);
                return true;
            }
        }
        // Busy (or just moved): mail it, with the route held still.
        let shard = self.lock();
        self.shards.mail(*shard, input)
    }

    /// Gives bytes read from the connection to the shard, then waits while more than
    /// [`READ_CREDIT`] bytes are unhandled, or while the connection's shard has more than
    /// [`FORWARD_CREDIT`](crate::FORWARD_CREDIT) messages unhandled by other shards. False when
    /// the shard has stopped.
    pub(crate) fn send_read(self: &Arc<Self>, conn: ConnectionId, bytes: BytesMut) -> bool {
        let len = bytes.len();
        *self.unhandled.lock().unwrap_or_else(PoisonError::into_inner) += len;
        let credit = ReadCredit { route: Arc::clone(self), len };
        let layered = self.layered;
        if !self.submit(ShardInput::Read { conn, bytes, credit, layered }) {
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

/// Writes without blocking to a connection's socket: [`Transport::try_write`] on a handle of
/// its own.
type DirectWrite = Box<dyn FnMut(&[u8]) -> io::Result<usize> + Send>;

/// What a shard keeps of a connection it owns.
pub(crate) struct ConnHandle {
    pub(crate) writer: Sender<WriterMsg>,
    pub(crate) route: Arc<Route>,
    /// Sends given to the writer thread and not yet written by it: while there are any, the
    /// stepping thread does not write directly (the bytes would overtake them).
    queued: Arc<AtomicUsize>,
    direct: DirectWrite,
    /// The connection's byte-stream layers, when its listener has some (`None`: plain TCP).
    /// Sends pass through it before [`ConnHandle::send`], reads before the engine.
    pub(crate) stack: Option<Box<Stack>>,
    /// Where the client connects from, for authentication (set at accept; the transport's
    /// stream may not be a socket that could say).
    pub(crate) peer: Option<core::net::SocketAddr>,
}

impl core::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("route", &self.route)
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ConnHandle {
    /// A handle whose writes all go through `writer` (the engine's unit tests).
    #[cfg(test)]
    pub(crate) fn queued_only(writer: Sender<WriterMsg>, route: Arc<Route>) -> Self {
        let direct: DirectWrite = Box::new(|_| Err(io::ErrorKind::WouldBlock.into()));
        Self { writer, route, queued: Arc::default(), direct, stack: None, peer: None }
    }

    /// Writes `bytes` to the socket from the stepping thread as far as it takes them without
    /// blocking, when the writer thread has nothing queued; the rest goes to the writer thread.
    /// Returns how many bytes were written here (for `Input::Written`; the writer thread
    /// reports its own).
    pub(crate) fn send(&mut self, mut bytes: Bytes, counters: &Counters) -> usize {
        let mut written = 0;
        if self.queued.load(Ordering::Acquire) == 0 {
            while !bytes.is_empty() {
                let chunk = &bytes[..bytes.len().min(CHUNK)];
                match (self.direct)(chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        written += n;
                        bytes = bytes.slice(n..);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Full (or failed: then the writer fails too and shuts the socket down).
                    Err(_) => break,
                }
            }
            if bytes.is_empty() {
                Counters::add(&counters.direct_writes);
                return written;
            }
        }
        Counters::add(&counters.writer_sends);
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.writer.send(WriterMsg::Data(bytes)).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        written
    }

    /// Has the writer thread write what it has, then shut the connection down.
    pub(crate) fn close(self) {
        let _ = self.writer.send(WriterMsg::Close);
    }
}

/// Starts the reader and writer threads of a freshly accepted connection. `register` is called
/// with the connection's handle before the reader starts, so that the shard knows the connection
/// before its first bytes arrive.
pub(crate) fn spawn<T: Transport>(
    conn: ConnectionId,
    stream: T::Stream,
    route: Arc<Route>,
    writer: (Sender<WriterMsg>, Receiver<WriterMsg>),
    stack: Option<Box<Stack>>,
    register: impl FnOnce(ConnHandle) -> bool,
) -> io::Result<[thread::JoinHandle<()>; 2]> {
    let write_half = T::try_clone(&stream)?;
    let mut direct_half = T::try_clone(&stream)?;
    let direct: DirectWrite = Box::new(move |bytes| T::try_write(&mut direct_half, bytes));
    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = writer;
    let handle = ConnHandle {
        writer: tx,
        route: Arc::clone(&route),
        queued: Arc::clone(&queued),
        direct,
        stack,
        peer: None,
    };
    if !register(handle) {
        T::shutdown(&stream);
        return Err(io::Error::other("broker is shutting down"));
    }
    let writer_route = Arc::clone(&route);
    let writer = thread::Builder::new()
        .name(format!("mqtt-w-{conn}"))
        .stack_size(CONN_STACK)
        .spawn(move || write_loop::<T>(conn, write_half, &rx, &writer_route, &queued))?;
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

/// Writes what the stepping threads could not write at once, coalescing queued chunks into
/// writes of up to 2 KiB, and reports each batch written. Ends on `Close` (after writing what
/// came before it) or when the shard forgets the connection, and then shuts the socket down,
/// which also ends the reader.
fn write_loop<T: Transport>(
    conn: ConnectionId,
    mut stream: T::Stream,
    rx: &Receiver<WriterMsg>,
    route: &Route,
    queued: &AtomicUsize,
) {
    let mut batch = Vec::with_capacity(CHUNK);
    let mut closing = false;
    'outer: while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut sends = 0;
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Data(bytes) => {
                    batch.extend_from_slice(&bytes);
                    sends += 1;
                }
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
        // Written: the stepping threads may write directly again once this is 0.
        queued.fetch_sub(sends, Ordering::AcqRel);
        if closing {
            break;
        }
        if written > 0 && !route.send_written(conn, written) {
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
    use std::collections::VecDeque;
    use std::sync::mpsc;

    use super::*;

    /// A reader more than READ_CREDIT ahead of its shard (busy: its bytes are mailed) waits
    /// until the shard handles (or drops) what it sent.
    #[test]
    fn reader_waits_for_credit() {
        let shards = crate::shard::tests::two_shards();
        let busy = shards[0].lock();
        let route = Arc::new(Route::new(0, Arc::clone(&shards)));
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
        let mut mail = VecDeque::new();
        while mail.len() < 2 {
            mail.extend(shards[0].mailbox.take());
            thread::yield_now();
        }
        // Over the limit now: the reader waits.
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(mail.pop_front());
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(mail);
        thread.join().unwrap();
        drop(busy);
        assert_eq!(*route.unhandled.lock().unwrap(), 0);
    }
}
