//! A layered connection's reads and write reports: through its byte-stream layers (the
//! runtime kit's `Stack`, in `Shard::stacks`). A plain connection never comes here.

use bytes::BytesMut;
use musqratt_engine::{ConnectionId, Input};

use super::Shard;

impl Shard {
    /// Bytes read from a layered connection: through its layers, then to the engine; what the
    /// layers answer at once (a handshake, a pong) is queued for the socket first. False when a
    /// layer failed or the peer closed it: the connection is lost once what the layers
    /// answered last (an HTTP error, a close frame) is written, if the socket takes it now.
    pub(crate) fn data_layered(&mut self, conn: ConnectionId, bytes: BytesMut) -> bool {
        let (Some(stack), Some(slot)) = (self.stacks.get_mut(&conn), self.conns.get_mut(&conn))
        else {
            return false;
        };
        let was_empty = slot.queue.is_empty();
        let spare = &mut self.spare_queues;
        let read = stack.read(bytes, |chunk| slot.queue.push_back(chunk, spare));
        if was_empty && !slot.queue.is_empty() {
            self.direct.push(conn);
        }
        // What came before an end (a DISCONNECT before a close frame) is the engine's first.
        match read.data {
            Some(bytes) => self.input(Input::Data { conn, bytes }),
            None => self.drain(),
        }
        if let Some(error) = read.end {
            tracing::debug!(shard = self.id.0, %conn, %error, "connection lost");
            return false;
        }
        true
    }

    /// `socket` bytes of a connection's queue were written: tells the engine how many of its
    /// own that was (the same number, unless the connection is layered).
    pub(crate) fn written(&mut self, conn: ConnectionId, socket: usize, layered: bool) {
        let bytes = if layered {
            self.stacks.get_mut(&conn).map_or(0, |stack| stack.written(socket))
        } else {
            socket
        };
        if bytes > 0 {
            self.input(Input::Written { conn, bytes });
        }
    }
}
