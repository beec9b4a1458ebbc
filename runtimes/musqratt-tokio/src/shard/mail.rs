//! What travels between shards, and how: bounded FIFO channels, or, when the receiving shard is
//! idle, a step run in person by the sending thread (docs/adr/0010).

use core::sync::atomic::Ordering;
use core::task::Poll;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use musqratt_engine::{ConnectionId, Input, PeerId, ShardId, ShardMessage};
use musqratt_kit::{Clock, Stack, take_in_person_turn};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use super::{LINK_CAPACITY, Shard, ShardLock, start_connection};

/// What travels between shards.
#[derive(Debug)]
pub(crate) enum Mail {
    /// [`Action::ToShard`], delivered as [`Input::FromShard`].
    Message { from: ShardId, message: ShardMessage },
    /// [`Action::Handoff`]: the socket itself, nonblocking, what was read from it, and its
    /// byte-stream layers if its listener has some (their state goes with the socket).
    Handoff {
        conn: ConnectionId,
        stream: std::net::TcpStream,
        bytes: BytesMut,
        stack: Option<Box<Stack>>,
    },
    /// An MQTT-SN datagram for the shard that took its peer ([`Action::HandoffPeer`]), or read
    /// by another shard's socket.
    Datagram { peer: PeerId, bytes: Bytes },
}

/// The channels between every pair of shards: one receiver per shard, whose sender every other
/// shard clones (tokio's channel keeps each sender's messages in order: FIFO per link).
pub(crate) struct Links {
    pub(crate) mailboxes: Vec<mpsc::Receiver<Mail>>,
    pub(crate) senders: Vec<mpsc::Sender<Mail>>,
    pub(crate) clock: Clock,
    pub(crate) directory: Directory,
}

/// Every shard's state, filled in by each shard thread as it starts: where a shard finds another
/// to run a step of it in person (see [`Shard::send_mail`], docs/adr/0010). Weak: a shard that
/// has ended is not kept alive by its peers.
pub(crate) type Directory = Arc<[OnceLock<Weak<ShardLock>>]>;

pub(crate) fn links(shards: usize) -> Links {
    let (senders, mailboxes) = (0..shards).map(|_| mpsc::channel(LINK_CAPACITY)).unzip();
    let directory = (0..shards).map(|_| OnceLock::new()).collect();
    Links { mailboxes, senders, clock: Clock::new(), directory }
}

/// An outgoing link to another shard.
pub(super) struct Link {
    pub(super) tx: mpsc::Sender<Mail>,
    /// Mail waiting for room in the channel, sent in order by the link's forwarder task.
    pub(super) pending: VecDeque<Mail>,
    pub(super) wake: Arc<Notify>,
}

impl Shard {
    /// Runs one step of this shard for mail from another shard, on that shard's thread, which
    /// holds this shard's lock (see [`Shard::send_mail`]).
    pub(super) fn step_in_person(&mut self, from: ShardId, message: ShardMessage) {
        self.foreign = true;
        self.counters.direct_steps.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        self.engine.handle_input(now, Input::FromShard { from, message });
        self.drain();
        self.foreign = false;
    }

    /// Sends mail to another shard, after everything sent to it before.
    ///
    /// A shard message, when nothing older is waiting for that shard and its thread is not
    /// busy, is not mailed at all: this thread takes the other shard's lock and runs the step
    /// there in person, writing its deliveries to the sockets itself. On an idle machine waking
    /// the other shard's thread (a halted core) cost more than the whole relay through a
    /// single-threaded broker; this way a message between shards wakes one broker thread, as
    /// one within a shard does (docs/adr/0010).
    pub(crate) fn send_mail(&mut self, to: ShardId, mail: Mail) {
        let Some(Some(link)) = self.links.get_mut(usize::from(to.0)) else {
            tracing::error!(shard = self.id.0, to = to.0, "mail for an unknown shard dropped");
            return;
        };
        let mail = match mail {
            Mail::Message { from, message } if link.pending.is_empty() && !self.foreign => {
                match self.directory.get(usize::from(to.0)).and_then(OnceLock::get) {
                    Some(peer) => match in_person(peer, from, message) {
                        Ok(()) => return,
                        Err(message) => Mail::Message { from, message },
                    },
                    None => Mail::Message { from, message },
                }
            }
            other => other,
        };
        let Some(Some(link)) = self.links.get_mut(usize::from(to.0)) else { return };
        if link.pending.is_empty() {
            match link.tx.try_send(mail) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(mail)) => {
                    link.pending.push_back(mail);
                    link.wake.notify_one();
                }
                // The other shard has stopped (shutdown): nothing to deliver to.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else {
            link.pending.push_back(mail);
        }
        self.pending += 1;
    }
}

/// Runs a shard message's step on `peer` from this thread if its lock is free and it has no
/// older mail waiting (which must go first: FIFO per link); gives the message back otherwise.
pub(super) fn in_person(
    peer: &Weak<ShardLock>,
    from: ShardId,
    message: ShardMessage,
) -> Result<(), ShardMessage> {
    // Timed against this thread's share of work done in person (see `take_in_person_turn`).
    let Some(_turn) = take_in_person_turn() else { return Err(message) };
    let Some(peer) = peer.upgrade() else { return Err(message) };
    let Some(mut state) = peer.try_lock() else { return Err(message) };
    if !state.mailbox.is_empty() || state.shutting_down {
        return Err(message);
    }
    state.step_in_person(from, message);
    Ok(())
}

/// Feeds what other shards send. The mail is taken off the channel under the shard's lock (see
/// [`Shard::mailbox`]).
///
/// The deliveries of a batch of mail are written once the batch is in (`Shard::batching`): a
/// message a step, they would otherwise cost a write per message and subscriber.
pub(super) async fn receive(shard: Arc<ShardLock>) {
    core::future::poll_fn(|cx| {
        let mut state = shard.lock();
        state.batching = true;
        let poll = loop {
            match state.mailbox.poll_recv(cx) {
                Poll::Ready(Some(mail)) => take_mail(&shard, &mut state, mail),
                Poll::Ready(None) => break Poll::Ready(()),
                Poll::Pending => break Poll::Pending,
            }
        };
        state.batching = false;
        state.drain();
        poll
    })
    .await;
}

pub(super) fn take_mail(shard: &Arc<ShardLock>, state: &mut Shard, mail: Mail) {
    match mail {
        Mail::Message { from, message } => state.input(Input::FromShard { from, message }),
        Mail::Datagram { peer, bytes } => state.input(Input::Datagram { peer, bytes }),
        Mail::Handoff { conn, stream, bytes, stack } => {
            if state.shutting_down {
                return; // dropping the socket closes it
            }
            match TcpStream::from_std(stream) {
                Ok(stream) => start_connection(shard, state, stream, Some((conn, bytes)), stack),
                Err(error) => tracing::warn!(%conn, %error, "handed-over socket lost"),
            }
        }
    }
}

/// Wakes, on the shard's own thread, the connections that steps run by other shards' threads
/// could not wake themselves (see [`Shard::deferred`]).
pub(super) async fn deferred_wakes(shard: Arc<ShardLock>) {
    let signal = shard.lock().deferred_wake.clone();
    loop {
        signal.notified().await;
        let mut state = shard.lock();
        for conn in core::mem::take(&mut state.deferred) {
            state.wake(conn);
        }
        state.drain();
    }
}

/// Sends, in order, the mail that did not fit a link's channel when it was sent.
pub(super) async fn forward(
    shard: Arc<ShardLock>,
    to: usize,
    wake: Arc<Notify>,
    tx: mpsc::Sender<Mail>,
) {
    loop {
        wake.notified().await;
        loop {
            // Room first, then the oldest mail: nothing overtakes it meanwhile, since mail is
            // only sent directly while `pending` is empty.
            let Ok(permit) = tx.reserve().await else {
                let mut state = shard.lock();
                let dropped = state.links[to].as_mut().map_or(0, |l| l.pending.drain(..).count());
                state.pending -= dropped;
                break;
            };
            let mut state = shard.lock();
            let Some(mail) = state.links[to].as_mut().and_then(|l| l.pending.pop_front()) else {
                break;
            };
            permit.send(mail);
            state.pending -= 1;
        }
        let mut state = shard.lock();
        if state.pending == 0 {
            state.unpark();
            state.uncongested.notify_waiters();
        }
    }
}
