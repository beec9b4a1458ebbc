//! A wake-up flag for one waiting task, which may be set from any thread.

use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Poll, Waker};
use std::sync::{Mutex, PoisonError};

/// Set by whoever has something for the task; the task's [`Notify::wait`] returns once it is
/// set, and clears it. Notifications before the wait are not lost.
///
/// Another shard's thread sets only the few of these that belong to a shard's fixed tasks (the
/// timer, the errand task, the forwarders): each task takes at most one slot of the compio
/// runtime's queue of cross-thread wakes, which is sized for them (see `shard::run`).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) async fn wait(&self) {
        core::future::poll_fn(|cx| {
            if self.set.swap(false, Ordering::Acquire) {
                return Poll::Ready(());
            }
            {
                let mut waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
                match &mut *waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
            }
            // A notification between the first look and the waker being stored found no
            // waker to wake: look again.
            if self.set.swap(false, Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }
}
