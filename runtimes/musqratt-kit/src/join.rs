//! Sends to a layered connection joined: the engine sends a PUBLISH as two chunks, its header
//! and its payload (the payload shared with the message, docs/ARCHITECTURE.md), and a layer
//! frames each chunk it is given. Over TLS that made two records per message (22 bytes and an
//! AEAD operation each, and two records for the client to open), over WebSocket two frames.
//! Consecutive sends to one layered connection are joined here into one write through its
//! layers: a copy of the chunks, bounded by [`JOIN_AT_MOST`], which is what the layer would
//! have copied into its records anyway. Plain connections keep their chunks as they are
//! (vectored writes, no copy).

use bytes::BytesMut;
use musqratt_engine::{Action, ConnectionId};

/// The most bytes joined into one write: a TLS record's plaintext (RFC 8446 §5.1). Larger
/// chunks gain nothing from joining (the layer splits them into records anyway) and would be
/// copied for nothing.
pub const JOIN_AT_MOST: usize = 16 * 1024;

/// The engine's actions, with consecutive sends to one layered connection joined (see the
/// module). Holds at most one action between calls: the first that could not be joined, given
/// next.
#[derive(Debug, Default)]
pub struct SendJoiner {
    held: Option<Action>,
}

impl SendJoiner {
    /// A joiner holding nothing.
    #[must_use]
    pub const fn new() -> Self {
        Self { held: None }
    }

    /// The next action: the one held, or the next of `poll` (the engine's `poll_action`, or
    /// the store's `Steps`); a send to a connection `layered` says has layers comes with the
    /// sends that follow it to the same connection joined to it, up to [`JOIN_AT_MOST`] bytes.
    /// `None` once `poll` has nothing and nothing is held.
    pub fn next(
        &mut self,
        mut poll: impl FnMut() -> Option<Action>,
        layered: impl Fn(ConnectionId) -> bool,
    ) -> Option<Action> {
        let first = self.held.take().or_else(&mut poll)?;
        let Action::Send { conn, bytes } = first else { return Some(first) };
        if bytes.len() >= JOIN_AT_MOST || !layered(conn) {
            return Some(Action::Send { conn, bytes });
        }
        let mut joined: Option<BytesMut> = None;
        loop {
            match poll() {
                Some(Action::Send { conn: next, bytes: more })
                    if next == conn
                        && joined.as_ref().map_or(bytes.len(), BytesMut::len) + more.len()
                            <= JOIN_AT_MOST =>
                {
                    let buf = joined.get_or_insert_with(|| {
                        let mut buf = BytesMut::with_capacity(bytes.len() + more.len());
                        buf.extend_from_slice(&bytes);
                        buf
                    });
                    buf.extend_from_slice(&more);
                }
                other => {
                    self.held = other;
                    break;
                }
            }
        }
        let bytes = joined.map_or(bytes, BytesMut::freeze);
        Some(Action::Send { conn, bytes })
    }

    /// Whether an action is held (the runtime must call [`SendJoiner::next`] again before its
    /// step ends).
    #[must_use]
    pub const fn holds(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;

    fn send(conn: u64, bytes: &'static [u8]) -> Action {
        Action::Send { conn: ConnectionId(conn), bytes: Bytes::from_static(bytes) }
    }

    fn drain(actions: Vec<Action>, layered: &[u64]) -> Vec<Action> {
        let mut queue: VecDeque<Action> = actions.into();
        let mut joiner = SendJoiner::new();
        let mut out = Vec::new();
        while let Some(action) = joiner.next(|| queue.pop_front(), |conn| layered.contains(&conn.0))
        {
            out.push(action);
        }
        assert!(!joiner.holds());
        out
    }

    fn sends(actions: &[Action]) -> Vec<(u64, Vec<u8>)> {
        actions
            .iter()
            .map(|action| match action {
                Action::Send { conn, bytes } => (conn.0, bytes.to_vec()),
                other => panic!("not a send: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn consecutive_sends_to_a_layered_connection_are_joined_in_order() {
        let out = drain(
            vec![send(1, b"h1"), send(1, b"p1"), send(2, b"h2"), send(2, b"p2"), send(1, b"x")],
            &[1],
        );
        assert_eq!(
            sends(&out),
            [(1, b"h1p1".to_vec()), (2, b"h2".to_vec()), (2, b"p2".to_vec()), (1, b"x".to_vec())]
        );
    }

    #[test]
    fn another_action_ends_a_join_and_comes_next() {
        let close = Action::Close { conn: ConnectionId(1) };
        let out = drain(vec![send(1, b"a"), send(1, b"b"), close, send(1, b"c")], &[1]);
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], Action::Send { bytes, .. } if &bytes[..] == b"ab"));
        assert!(matches!(out[1], Action::Close { conn: ConnectionId(1) }));
        assert!(matches!(&out[2], Action::Send { bytes, .. } if &bytes[..] == b"c"));
    }

    #[test]
    fn large_chunks_are_not_copied() {
        let big = Bytes::from(vec![7u8; JOIN_AT_MOST]);
        let mut queue: VecDeque<Action> = vec![
            send(1, b"header"),
            Action::Send { conn: ConnectionId(1), bytes: big.clone() },
            Action::Send { conn: ConnectionId(1), bytes: big.clone() },
        ]
        .into();
        let mut joiner = SendJoiner::new();
        let mut lens = Vec::new();
        while let Some(Action::Send { bytes, .. }) = joiner.next(|| queue.pop_front(), |_| true) {
            lens.push(bytes.len());
            // The large chunk goes as it was: the same buffer, not a copy.
            if bytes.len() == JOIN_AT_MOST {
                assert_eq!(bytes.as_ptr(), big.as_ptr());
            }
        }
        assert_eq!(lens, [6, JOIN_AT_MOST, JOIN_AT_MOST]);
    }
}
