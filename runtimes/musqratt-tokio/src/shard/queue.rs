//! A connection's write queue, and the emptied ones kept for reuse.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Emptied write queues kept for reuse: a connection that writes takes one and gives it back
/// when its queue drains, so that idle connections hold none and busy ones do not allocate.
pub(crate) const SPARE_QUEUES: usize = 1024;

/// A connection's chunks to write: a boxed `VecDeque` while there is something to write, nothing
/// (8 bytes in the slot instead of a 32-byte `VecDeque` and its buffer) while there is not.
#[derive(Default)]
#[allow(clippy::box_collection)]
pub(crate) struct WriteQueue(Option<Box<VecDeque<Bytes>>>);

/// Emptied queues, see [`SPARE_QUEUES`].
pub(crate) type Spare = Vec<Box<VecDeque<Bytes>>>;

impl WriteQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|queue| queue.is_empty())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.0.iter().flat_map(|queue| queue.iter())
    }

    /// Takes `written` bytes off the front: the chunks written whole, and the start of the
    /// next.
    pub(crate) fn consume(&mut self, mut written: usize) {
        while let Some(front) = self.front_mut() {
            if front.len() <= written {
                written -= front.len();
                self.pop_front();
            } else {
                front.advance(written);
                break;
            }
        }
    }

    fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.0.as_mut()?.front_mut()
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        self.0.as_mut()?.pop_front()
    }

    pub(crate) fn push_back(&mut self, bytes: Bytes, spare: &mut Spare) {
        self.0.get_or_insert_with(|| spare.pop().unwrap_or_default()).push_back(bytes);
    }

    /// Gives an emptied queue back to `spare`.
    pub(crate) fn recycle(&mut self, spare: &mut Spare) {
        if self.is_empty()
            && let Some(queue) = self.0.take()
            && spare.len() < SPARE_QUEUES
        {
            spare.push(queue);
        }
    }
}
