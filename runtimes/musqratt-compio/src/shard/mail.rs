//! What travels between shards, and how: a bounded FIFO channel per shard, or, when the
//! receiving shard is idle, a step run in person by the sending thread (docs/adr/0012).

use core::sync::atomic::Ordering;
use core::task::Poll;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, OnceLock, Weak};

use async_channel::{Sender, TrySendError};
use bytes::BytesMut;
use futures_util::Stream;
use musqratt_engine::{ConnectionId, Input, ShardId, ShardMessage};
use musqratt_kit::{Stack, take_in_person_turn};

use super::{Core, Shard, ShardLock};
use crate::notify::Notify;

/// What a shard's inbox channel carries. One bounded channel per shard; every sender keeps its
/// own messages in order (see [`Link`]), which keeps MQTT's ordering between shards.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// `Action::ToShard` of another shard, for `Input::FromShard`.
    FromShard { from: ShardId, message: ShardMessage },
    /// A connection another shard handed over (`Action::Handoff`), for `Input::Adopted`, with
    /// its byte-stream layers if its listener has some.
    Adopt {
        conn: ConnectionId,
        stream: std::net::TcpStream,
        bytes: BytesMut,
        stack: Option<Box<Stack>>,
    },
    /// Shut down: `Input::Shutdown`, flush, close, end the thread by `deadline`.
    Shutdown { deadline: std::time::Instant },
}

/// Every shard's lock, filled in by each shard thread as it starts: where a shard finds another
/// to run a step of it in person. Weak: a shard that has ended is not kept alive by its peers.
pub(crate) type Directory = Arc<[OnceLock<Weak<ShardLock>>]>;

/// Messages from other shards fed between two writes of their deliveries (see `inbox_batch`).
pub(super) const MAIL_BATCH: usize = 64;

/// The sending end of the link to one other shard: its bounded channel, and the messages that
/// found it full, in order, for the forwarder task.
pub(super) struct Link {
    pub(super) tx: Sender<ShardMsg>,
    pub(super) backlog: VecDeque<ShardMsg>,
    /// Messages in `backlog` or being sent by the forwarder: while any, new ones queue behind.
    pub(super) pending: usize,
    pub(super) wake: Arc<Notify>,
}

impl Core {
    /// Sends a shard message to another shard, after everything sent to it before.
    ///
    /// When nothing older from this shard is waiting for that shard (here or in its inbox) and
    /// its lock is free, the message is not mailed at all: this thread takes that shard's lock
    /// and runs the step there in person, writing its deliveries to the sockets itself. Waking
    /// the other shard's thread (a halted core, on an idle machine) costs more than the whole
    /// relay within a shard; this way a message between shards wakes one broker thread, as one
    /// within a shard does (docs/adr/0012). A step run in person mails what it sends on.
    pub(super) fn send_to(&mut self, to: ShardId, message: ShardMessage) {
        let from = self.id;
        let index = usize::from(to.0);
        let Some(link) = self.links.get(index) else {
            tracing::warn!(shard = %self.id, %to, "message for a shard that does not exist");
            return;
        };
        let message = if link.pending == 0 && !self.foreign {
            match self.directory.get(index).and_then(OnceLock::get) {
                Some(peer) => match in_person(peer, from, message) {
                    Ok(()) => return,
                    Err(message) => message,
                },
                None => message,
            }
        } else {
            message
        };
        self.mail(to, ShardMsg::FromShard { from, message });
    }

    /// Mails to another shard over its bounded channel, in order: straight in when nothing is
    /// waiting and there is room, otherwise behind the messages the forwarder still holds.
    pub(crate) fn mail(&mut self, to: ShardId, msg: ShardMsg) {
        let foreign = self.foreign;
        let Some(link) = self.links.get_mut(usize::from(to.0)) else {
            tracing::warn!(shard = %self.id, %to, "message for a shard that does not exist");
            return;
        };
        let msg = if link.pending == 0 {
            match link.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(msg)) => msg,
                // The other shard has stopped (shutdown).
                Err(TrySendError::Closed(_)) => return,
            }
        } else {
            msg
        };
        link.backlog.push_back(msg);
        link.pending += 1;
        if foreign {
            self.counters.owner_wakes.fetch_add(1, Ordering::Relaxed);
        }
        link.wake.notify();
    }

    /// Runs one step of this shard for a message from another shard, on that shard's thread,
    /// which holds this shard's lock.
    fn step_in_person(&mut self, from: ShardId, message: ShardMessage) {
        self.foreign = true;
        self.counters.direct_steps.fetch_add(1, Ordering::Relaxed);
        self.input(Input::FromShard { from, message });
        self.foreign = false;
    }
}

/// Runs a shard message's step on `peer` from this thread if its lock is free, it is not
/// stopping and it has no mail waiting (which must go first: FIFO per link); gives the message
/// back otherwise.
pub(super) fn in_person(
    peer: &Weak<ShardLock>,
    from: ShardId,
    message: ShardMessage,
) -> Result<(), ShardMessage> {
    // Timed against this thread's share of work done in person (see `take_in_person_turn`).
    let Some(_turn) = take_in_person_turn() else { return Err(message) };
    let Some(peer) = peer.upgrade() else { return Err(message) };
    let Some(mut core) = peer.try_lock() else { return Err(message) };
    if core.stopping || !core.mailbox.is_empty() {
        return Err(message);
    }
    core.step_in_person(from, message);
    Ok(())
}

/// Takes the shard's mail, under the lock, until `Shutdown` (or every sender is gone); returns
/// the shutdown deadline.
pub(super) async fn inbox(shard: &Rc<Shard>) -> std::time::Instant {
    core::future::poll_fn(|cx| {
        let mut guard = shard.lock();
        let core = &mut *guard;
        // The deliveries of a batch of mail are written once the batch is in: a message a
        // step, they would otherwise cost a write per message and subscriber.
        core.batching = true;
        let poll = inbox_batch(shard, core, cx);
        core.batching = false;
        core.dispatch();
        poll
    })
    .await
}

/// Feeds the mail that is in; the deliveries are written every [`MAIL_BATCH`] messages and
/// when the inbox is empty (by the caller), so that a steady stream of mail cannot hold them
/// back.
pub(super) fn inbox_batch(
    shard: &Rc<Shard>,
    core: &mut Core,
    cx: &mut core::task::Context<'_>,
) -> Poll<std::time::Instant> {
    let mut fed = 0;
    loop {
        fed += 1;
        if fed % MAIL_BATCH == 0 {
            core.batching = false;
            core.dispatch();
            core.batching = true;
        }
        match core.mailbox.as_mut().poll_next(cx) {
            Poll::Ready(Some(ShardMsg::FromShard { from, message })) => {
                core.input(Input::FromShard { from, message });
            }
            Poll::Ready(Some(ShardMsg::Adopt { conn, stream, bytes, stack })) => {
                shard.adopt(core, conn, stream, bytes, stack);
            }
            Poll::Ready(Some(ShardMsg::Shutdown { deadline })) => {
                // Set under the lock: no step runs in person here from now on.
                core.stopping = true;
                return Poll::Ready(deadline);
            }
            Poll::Ready(None) => {
                core.stopping = true;
                return Poll::Ready(std::time::Instant::now() + crate::SHUTDOWN_GRACE);
            }
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Feeds the messages that found shard `to`'s channel full, in order, waiting for room.
pub(super) async fn forward_loop(shard: Rc<Shard>, to: usize) {
    let (tx, wake) = {
        let core = shard.lock();
        (core.links[to].tx.clone(), Arc::clone(&core.links[to].wake))
    };
    loop {
        let next = shard.lock().links[to].backlog.pop_front();
        match next {
            Some(msg) => {
                // An error means that shard has stopped: the message is dropped.
                let _ = tx.send(msg).await;
                let mut core = shard.lock();
                core.links[to].pending = core.links[to].pending.saturating_sub(1);
            }
            None => wake.wait().await,
        }
    }
}
