//! When a shard's thread may run another shard's step in person (docs/adr/0010).
//!
//! Running an idle shard's step on the thread that has the message spares waking that shard's
//! thread, which is what a message costs most on a quiet machine. Under sustained load it is
//! the wrong trade: the sending thread does both shards' work while the other core sleeps, and
//! a step that delivers to many subscribers writes to every one of their sockets (a QoS 0
//! fan-out to 50 subscribers fell from 2.7 M to 0.3 M deliveries/s). So a thread spends at most
//! [`IN_PERSON_SHARE`] of each [`IN_PERSON_WINDOW`] in other shards' steps; past that it mails,
//! and the other shard's thread wakes and shares the work. A latency-bound stream of 10,000
//! messages a second between two shards needs about a tenth of that.

use core::cell::Cell;
use core::time::Duration;
use std::time::Instant;

/// The time a thread may spend in other shards' steps per [`IN_PERSON_WINDOW`].
pub const IN_PERSON_SHARE: Duration = Duration::from_micros(200);
/// See [`IN_PERSON_SHARE`].
pub const IN_PERSON_WINDOW: Duration = Duration::from_millis(1);

std::thread_local! {
    /// When this thread's current window started, and the time it spent in person in it.
    static WINDOW: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Permission to run one step of another shard in person; the time until it is dropped counts
/// against this thread's share.
#[derive(Debug)]
#[must_use = "the step is timed until the turn is dropped"]
pub struct InPersonTurn {
    start: Instant,
}

/// A turn if this thread has share left in its current window.
pub fn take_in_person_turn() -> Option<InPersonTurn> {
    let now = Instant::now();
    WINDOW.with(|window| {
        let (start, spent) = match window.get() {
            Some((start, spent)) if now.duration_since(start) < IN_PERSON_WINDOW => (start, spent),
            _ => (now, Duration::ZERO),
        };
        window.set(Some((start, spent)));
        (spent < IN_PERSON_SHARE).then_some(InPersonTurn { start: now })
    })
}

impl Drop for InPersonTurn {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        WINDOW.with(|window| {
            if let Some((start, spent)) = window.get() {
                window.set(Some((start, spent + took)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_spends_a_share_of_each_window_in_person_then_mails() {
        std::thread::spawn(|| {
            let first = take_in_person_turn().expect("a fresh window");
            std::thread::sleep(IN_PERSON_SHARE); // a long step
            drop(first);
            // Within the same window (unless this machine stalled past it, and the call opened
            // a new one): no share left.
            let window_start = || WINDOW.with(|w| w.get().unwrap().0);
            let before = window_start();
            let turn = take_in_person_turn();
            if window_start() == before {
                assert!(turn.is_none(), "share spent");
            }
            drop(turn);
            std::thread::sleep(IN_PERSON_WINDOW);
            assert!(take_in_person_turn().is_some(), "a new window");
        })
        .join()
        .unwrap();
    }
}
