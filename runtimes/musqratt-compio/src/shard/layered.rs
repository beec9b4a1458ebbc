//! A layered connection's reads and write reports: through its byte-stream layers (the
//! runtime kit's `Stack`, in its `Slot`). A plain connection's reads never come here.

use bytes::BytesMut;
use musqratt_engine::{ConnectionId, Input};

use super::{Core, State};

impl Core {
    /// Bytes read from a layered connection: through its layers, then to the engine; what the
    /// layers answer at once (a handshake, a pong) is queued for the socket first. A layer
    /// that fails (or the peer closing it) loses the connection.
    pub(crate) fn data_layered(&mut self, conn: ConnectionId, bytes: BytesMut) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let Some(stack) = slot.stack.as_mut() else { return };
        let queue = &mut slot.queue;
        let was_empty = queue.is_empty();
        let read = stack.read(bytes, |chunk| queue.push(chunk));
        if was_empty && !slot.queue.is_empty() {
            self.queued(conn);
        }
        // What came before an end (a DISCONNECT before a close frame) is the engine's first.
        match read.data {
            Some(bytes) => self.input(Input::Data { conn, bytes }),
            None => self.dispatch(),
        }
        if let Some(error) = read.end {
            tracing::debug!(shard = %self.id, %conn, %error, "connection lost");
            self.layers_ended(conn);
        }
    }

    /// A connection's layers ended the stream: the engine forgets it, and the writer sends
    /// what the layers answered last (an HTTP error, a close frame) before closing the socket,
    /// as after `Action::Close`.
    fn layers_ended(&mut self, conn: ConnectionId) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        if slot.state != State::Open {
            return;
        }
        slot.state = State::Closing;
        self.wake_writer(conn);
        self.input(Input::Closed { conn });
    }

    /// `socket` bytes of a layered connection's queue were written: tells the engine how many
    /// of its own that completes (a plain connection's writer reports its bytes as they are).
    pub(crate) fn written(&mut self, conn: ConnectionId, socket: usize) {
        let bytes = match self.slots.get_mut(&conn).and_then(|slot| slot.stack.as_mut()) {
            Some(stack) => stack.written(socket),
            None => socket,
        };
        if bytes > 0 {
            self.input(Input::Written { conn, bytes });
        }
    }

    /// A connection's queue went from empty to not: written at the end of the step by the
    /// thread running it when it can be (see `act`), by the writer task otherwise.
    fn queued(&mut self, conn: ConnectionId) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        if !slot.writing && slot.direct.is_some() {
            self.direct.push(conn);
        } else if !self.foreign {
            slot.writer.notify();
        }
    }
}
