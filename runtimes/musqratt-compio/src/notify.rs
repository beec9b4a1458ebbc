//! A wake-up flag for one waiting task on the same thread.

use core::cell::{Cell, RefCell};
use core::task::{Poll, Waker};

/// Set by whoever has something for the task; the task's [`Notify::wait`] returns once it is
/// set, and clears it. Notifications before the wait are not lost.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub(crate) async fn wait(&self) {
        core::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                let mut waker = self.waker.borrow_mut();
                match &mut *waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
        .await;
    }
}
