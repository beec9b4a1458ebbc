//! A layered connection's reads and write reports: through its byte-stream layers (the
//! runtime kit's `Stack`, in its `Slot`). A plain connection's reads never come here.

use bytes::BytesMut;
use musqratt_engine::{ConnectionId, Input};

use super::Core;

impl Core {
    /// Bytes read from a layered connection: through its layers, then to the engine; what the
    /// layers answer at once (a handshake, a pong) is queued for the socket first. A layer
    /// that fails (or the peer closing it) loses the connection.
    pub(crate) fn data_layered(&mut self, conn: ConnectionId, bytes: BytesMut) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let Some(stack) = slot.stack.as_mut() else { return };
        let queue = &mut slot.queue;
        let was_empty = queue.is_empty();
        let decoded = stack.read(bytes, |chunk| queue.push(chunk));
        if was_empty && !slot.queue.is_empty() {
            self.queued(conn);
        }
        match decoded {
            Ok(Some(bytes)) => self.input(Input::Data { conn, bytes }),
            Ok(None) => self.dispatch(),
            Err(error) => {
                tracing::debug!(shard = %self.id, %conn, %error, "connection lost");
                self.lost(conn);
            }
        }
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
