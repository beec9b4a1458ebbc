//! The shards' inboxes, and the credit that bounds what shards send each other.
//!
//! Each shard has one mailbox: a queue under a mutex, and a condition variable its engine thread
//! waits on (a CompositeOS port has no poll either, so one blocking wait is all a thread waits
//! on). A thread that finds a shard busy (its lock taken) leaves its input there; whoever holds
//! the shard's lock next (its engine thread, or a connection thread stepping the shard itself)
//! takes the mail out first, under the lock, so inputs from one sender are handled in the order
//! sent whether they went by mail or in person.
//!
//! What a connection's reader puts there is bounded by [`READ_CREDIT`](crate::READ_CREDIT); what
//! one shard mails another (a PUBLISH for the subscribers there, `Action::ToShard`) is bounded
//! here: each shard counts the messages it mailed that their receivers have not handled yet, and
//! beyond [`FORWARD_CREDIT`] the readers of its connections wait before reading more. A
//! publisher on one shard then goes at the pace at which the other shards take its messages, as
//! TCP pushes back on it, instead of a receiving shard's queue growing without bound (measured
//! before: 0.5 GB of broker memory and most of a QoS 1 4 → 2 run lost at the subscribers' queue
//! bounds, docs/BENCHMARKS.md). A message handled in person (the receiving shard was idle) is
//! handled at once and takes no credit.
//!
//! Only connection readers wait on this credit, never a thread holding a shard's lock, so shards
//! cannot wait on each other in a cycle.

use core::ops::Deref;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};

use musqratt_engine::{Input, Instant};

use crate::shard::{Clock, Shard, ShardInput};

/// Messages one shard may have mailed to other shards and they not yet handled before the
/// readers of its connections wait: the tokio runtime's congestion limit, for the same reason.
pub const FORWARD_CREDIT: usize = 4096;

/// One shard: its state (engine, connections) behind a lock held for one step at a time, and
/// its mailbox.
#[derive(Debug)]
pub(crate) struct ShardCell {
    state: Mutex<Shard>,
    pub(crate) mailbox: Mailbox,
}

impl ShardCell {
    pub(crate) fn new(shard: Shard) -> Self {
        Self { state: Mutex::new(shard), mailbox: Mailbox::default() }
    }

    /// The shard's state, waiting for it (the engine thread only).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shard> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard's state if no other thread is stepping it (and this one is not either).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Shard>> {
        match self.state.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// A shard's queue of inputs that found it busy, and what its engine thread waits for.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    mail: Mutex<Mail>,
    ready: Condvar,
    wakeups: AtomicU64,
}

#[derive(Debug, Default)]
struct Mail {
    queue: VecDeque<ShardInput>,
    /// When the engine thread wakes up to fire the engine's timers, if it has any.
    deadline: Option<Instant>,
    /// The engine thread is waiting on `ready` (so a push must wake it).
    sleeping: bool,
    /// A thread is stepping the shard and will look at the mail before it lets it go.
    stepping: bool,
    /// The broker is stopping: the engine thread shuts the shard down.
    stop: bool,
    /// The shard has stopped: nothing more is taken.
    closed: bool,
}

impl Mailbox {
    fn mail(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves `input` for whoever steps the shard next: the thread stepping it now, if any,
    /// which looks at the mail again before it lets the shard go; its engine thread, woken for
    /// it, otherwise. False when the shard has stopped.
    pub(crate) fn push(&self, input: ShardInput) -> bool {
        let mut mail = self.mail();
        if mail.closed {
            return false;
        }
        mail.queue.push_back(input);
        if !mail.stepping {
            self.wake(&mut mail);
        }
        true
    }

    fn wake(&self, mail: &mut Mail) {
        if mail.sleeping {
            mail.sleeping = false;
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.ready.notify_one();
        }
    }

    /// A step begins (under the shard's lock): the mail so far, oldest first. Until
    /// [`Mailbox::finish`] lets it go, mail is left for this step, without waking the engine
    /// thread.
    pub(crate) fn begin(&self) -> VecDeque<ShardInput> {
        let mut mail = self.mail();
        mail.stepping = true;
        core::mem::take(&mut mail.queue)
    }

    /// Everything mailed so far, oldest first (under the shard's lock, within a step).
    pub(crate) fn take(&self) -> VecDeque<ShardInput> {
        core::mem::take(&mut self.mail().queue)
    }

    /// The step ends (still under the shard's lock), unless mail came meanwhile and it may go
    /// on (`more`): then that mail is returned, for the step. Otherwise the engine's next
    /// deadline is noted; the engine thread is woken when it is sooner than the one it waits
    /// for, or when mail is left for it.
    pub(crate) fn finish(
        &self,
        deadline: Option<Instant>,
        engine_thread: bool,
        more: bool,
    ) -> Option<VecDeque<ShardInput>> {
        let mut mail = self.mail();
        if !mail.queue.is_empty() {
            if more {
                return Some(core::mem::take(&mut mail.queue));
            }
            self.wake(&mut mail);
        }
        mail.stepping = false;
        let sooner = match (deadline, mail.deadline) {
            (Some(new), Some(old)) => new < old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if engine_thread || sooner {
            mail.deadline = deadline;
        }
        if sooner {
            self.wake(&mut mail);
        }
        None
    }

    /// Engine wake-ups so far: for mail no step was there to take, or a sooner deadline.
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// The engine thread waits (not holding the shard's lock) until there is mail, its deadline
    /// has come, or the broker stops. True when it stops.
    pub(crate) fn wait(&self, clock: Clock) -> bool {
        let mut mail = self.mail();
        loop {
            if mail.stop {
                return true;
            }
            if !mail.queue.is_empty() {
                return false;
            }
            let now = clock.now();
            let wait = match mail.deadline {
                Some(deadline) if deadline <= now => return false,
                Some(deadline) => Some(deadline.saturating_duration_since(now)),
                None => None,
            };
            mail.sleeping = true;
            // The only timed wait of the runtime: a condition variable, not a socket.
            mail = match wait {
                Some(wait) => {
                    self.ready.wait_timeout(mail, wait).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.ready.wait(mail).unwrap_or_else(PoisonError::into_inner),
            };
            mail.sleeping = false;
        }
    }

    /// Asks the engine thread to shut the shard down.
    pub(crate) fn stop(&self) {
        let mut mail = self.mail();
        mail.stop = true;
        self.ready.notify_all();
    }

    /// The shard has stopped: refuses further mail and gives back what is left (dropping it
    /// returns its credits and ends the writers of connections handed over to us).
    pub(crate) fn close(&self) -> VecDeque<ShardInput> {
        let mut mail = self.mail();
        mail.closed = true;
        core::mem::take(&mut mail.queue)
    }
}

/// What the broker's threads did, for [`crate::Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) direct_steps: AtomicU64,
    pub(crate) peer_steps: AtomicU64,
    pub(crate) mailed: AtomicU64,
    pub(crate) direct_writes: AtomicU64,
    pub(crate) writer_sends: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every shard, in shard order, what each shard has mailed others unhandled, and the counters.
#[derive(Debug)]
pub(crate) struct Inboxes {
    cells: Vec<ShardCell>,
    forwarded: Vec<Forwarded>,
    pub(crate) clock: Clock,
    pub(crate) counters: Counters,
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
    pub(crate) fn new(shards: Vec<Shard>, clock: Clock) -> Arc<Self> {
        let forwarded = shards.iter().map(|_| Forwarded::default()).collect();
        let cells = shards.into_iter().map(ShardCell::new).collect();
        Arc::new(Self { cells, forwarded, clock, counters: Counters::default() })
    }

    /// Mails `input` to shard `to`. False when it has stopped.
    pub(crate) fn mail(&self, to: usize, input: ShardInput) -> bool {
        let Some(cell) = self.cells.get(to) else { return false };
        Counters::add(&self.counters.mailed);
        cell.mailbox.push(input)
    }

    /// Shard `from` mails `input` (an `Input::FromShard`) to shard `to`, counted against `from`
    /// until `to` has handled it. False when `to` has stopped.
    pub(crate) fn forward(self: &Arc<Self>, from: usize, to: usize, input: Input) -> bool {
        let Some(forwarded) = self.forwarded.get(from) else { return false };
        *forwarded.lock() += 1;
        let credit = ForwardCredit { inboxes: Arc::clone(self), from };
        self.mail(to, ShardInput::Forwarded { input, credit })
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
    type Target = [ShardCell];

    fn deref(&self) -> &Self::Target {
        &self.cells
    }
}

/// A forwarded message on its way: dropping it, handled or not (a stopped shard drops its
/// mail), gives the sending shard's credit back.
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

    /// A shard whose mail to others is more than FORWARD_CREDIT ahead of the shard receiving
    /// it stops its readers until that shard handles (or drops) one.
    #[test]
    fn readers_wait_while_their_shard_is_ahead_of_the_others() {
        let inboxes = crate::shard::tests::two_shards();
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
        let mut mail = inboxes[1].mailbox.take();
        drop(mail.pop_front()); // shard 1 handles one message
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        thread.join().unwrap();
        drop(mail); // a stopped shard's mail gives every credit back
        assert_eq!(*inboxes.forwarded[0].lock(), 0);
    }

    /// The engine thread sleeps until mail comes, a sooner deadline is set, or the broker stops.
    #[test]
    fn the_engine_thread_wakes_for_mail_sooner_deadlines_and_stop() {
        let inboxes = crate::shard::tests::two_shards();
        let clock = inboxes.clock;
        let waiter = Arc::clone(&inboxes);
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            for _ in 0..3 {
                let stopped = waiter[0].mailbox.wait(clock);
                // As a step of the engine thread.
                drop(waiter[0].mailbox.begin());
                assert!(waiter[0].mailbox.finish(None, true, true).is_none());
                tx.send(stopped).unwrap();
            }
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "nothing to do: asleep");
        assert!(inboxes.mail(0, ShardInput::Engine(Input::Closed { conn: ConnectionId(1) })));
        assert!(!rx.recv_timeout(Duration::from_secs(5)).unwrap());
        let soon = clock.now().saturating_add(Duration::from_millis(20));
        assert!(inboxes[0].mailbox.finish(Some(soon), false, true).is_none());
        assert!(!rx.recv_timeout(Duration::from_secs(5)).unwrap());
        inboxes[0].mailbox.stop();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        thread.join().unwrap();
    }
}
