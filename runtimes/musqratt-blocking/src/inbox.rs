//! The shards' inboxes, and the credit that bounds what shards send each other.
//!
//! Each engine thread has one unbounded `mpsc` channel (a CompositeOS port has no poll either, so
//! one blocking receive is all a thread waits on). What a connection's reader puts there is
//! bounded by [`READ_CREDIT`](crate::READ_CREDIT); what one shard sends another (a PUBLISH for the
//! subscribers there, `Action::ToShard`) is bounded here: each shard counts the messages it sent
//! that their receivers have not handled yet, and beyond [`FORWARD_CREDIT`] the readers of its
//! connections wait before reading more. A publisher on one shard then goes at the pace at which
//! the other shards take its messages, as TCP pushes back on it, instead of a receiving shard's
//! channel growing without bound (measured before: 0.5 GB of broker memory and most of a QoS 1
//! 4 → 2 run lost at the subscribers' queue bounds, docs/BENCHMARKS.md).
//!
//! Only connection readers wait on this credit, never an engine thread, so shards cannot wait on
//! each other in a cycle.

use core::ops::Deref;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use musqratt_engine::Input;

use crate::shard::ShardInput;

/// Messages one shard may have sent to other shards and they not yet handled before the readers
/// of its connections wait: the tokio runtime's congestion limit, for the same reason.
pub const FORWARD_CREDIT: usize = 4096;

/// Every shard's inbox, in shard order, and what each shard has forwarded unhandled.
#[derive(Debug)]
pub(crate) struct Inboxes {
    senders: Vec<Sender<ShardInput>>,
    forwarded: Vec<Forwarded>,
}

#[derive(Debug, Default)]
struct Forwarded {
    unhandled: Mutex<usize>,
    handled: Condvar,
}

impl Forwarded {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.unhandled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inboxes {
    pub(crate) fn new(senders: Vec<Sender<ShardInput>>) -> Arc<Self> {
        let forwarded = senders.iter().map(|_| Forwarded::default()).collect();
        Arc::new(Self { senders, forwarded })
    }

    /// Shard `from` sends `input` (an `Input::FromShard`) to shard `to`, counted against `from`
    /// until `to` has handled it. False when `to` has stopped.
    pub(crate) fn forward(self: &Arc<Self>, from: usize, to: usize, input: Input) -> bool {
        let (Some(tx), Some(forwarded)) = (self.senders.get(to), self.forwarded.get(from)) else {
            return false;
        };
        *forwarded.lock() += 1;
        let credit = ForwardCredit { inboxes: Arc::clone(self), from };
        tx.send(ShardInput::Forwarded { input, credit }).is_ok()
    }

    /// Waits while shard `shard` has more than [`FORWARD_CREDIT`] messages unhandled by others.
    pub(crate) fn wait_for_forward_credit(&self, shard: usize) {
        let Some(forwarded) = self.forwarded.get(shard) else { return };
        let mut unhandled = forwarded.lock();
        while *unhandled > FORWARD_CREDIT {
            unhandled = forwarded.handled.wait(unhandled).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Deref for Inboxes {
    type Target = [Sender<ShardInput>];

    fn deref(&self) -> &Self::Target {
        &self.senders
    }
}

/// A forwarded message on its way: dropping it, handled or not (a stopped shard drops its
/// channel), gives the sending shard's credit back.
#[derive(Debug)]
pub(crate) struct ForwardCredit {
    inboxes: Arc<Inboxes>,
    from: usize,
}

impl Drop for ForwardCredit {
    fn drop(&mut self) {
        let Some(forwarded) = self.inboxes.forwarded.get(self.from) else { return };
        let mut unhandled = forwarded.lock();
        let before = *unhandled;
        *unhandled = before.saturating_sub(1);
        if before > FORWARD_CREDIT && *unhandled <= FORWARD_CREDIT {
            forwarded.handled.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::sync::mpsc;
    use std::thread;

    use musqratt_engine::ConnectionId;

    use super::*;

    /// A shard whose forwards are more than FORWARD_CREDIT ahead of the shard receiving them
    /// stops its readers until that shard handles (or drops) one.
    #[test]
    fn readers_wait_while_their_shard_is_ahead_of_the_others() {
        let (tx0, _rx0) = mpsc::channel();
        let (tx1, rx1) = mpsc::channel();
        let inboxes = Inboxes::new(vec![tx0, tx1]);
        for _ in 0..=FORWARD_CREDIT {
            assert!(inboxes.forward(0, 1, Input::Closed { conn: ConnectionId(7) }));
        }
        // Shard 1's readers are not held by shard 0's backlog.
        inboxes.wait_for_forward_credit(1);
        let (done_tx, done_rx) = mpsc::channel();
        let reader = Arc::clone(&inboxes);
        let thread = thread::spawn(move || {
            reader.wait_for_forward_credit(0);
            done_tx.send(()).unwrap();
        });
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err(), "over the credit");
        drop(rx1.recv().unwrap()); // shard 1 handles one message
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        thread.join().unwrap();
        drop(rx1); // a stopped shard's channel gives every credit back
        assert_eq!(*inboxes.forwarded[0].lock(), 0);
    }
}
