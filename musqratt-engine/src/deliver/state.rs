//! What outbound delivery keeps between steps and lends within one: a message being routed,
//! shared only once something keeps it, and the buffers PUBLISH headers are encoded into. The
//! steps that deliver are in `deliver/mod.rs`; this module knows nothing of the `Engine`
//! (docs/adr/0014-engine-layers.md).

use alloc::sync::Arc;
use core::ops::Deref;

use bytes::{Bytes, BytesMut};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::Publish;

use crate::session::{Delivery, Message};

/// A message being routed: owned until something has to keep it (a session queue, an inflight
/// window, the retained store, the backlog, another shard), then shared behind an [`Arc`]. A
/// message every subscriber takes at once (QoS 0 to connections with room) is never shared,
/// which saves the `Arc`'s allocation.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the owned message is the allocation this type avoids; it lives for one route"
)]
pub(crate) enum Routed {
    Owned(Message),
    Shared(Arc<Message>),
}

impl Routed {
    /// The message behind an [`Arc`], moved there the first time (the payload is not copied).
    pub(crate) fn share(&mut self) -> Arc<Message> {
        let shared = match self {
            Routed::Shared(message) => return Arc::clone(message),
            Routed::Owned(message) => Arc::new(core::mem::take(message)),
        };
        *self = Routed::Shared(Arc::clone(&shared));
        shared
    }
}

impl Deref for Routed {
    type Target = Message;

    fn deref(&self) -> &Message {
        match self {
            Routed::Owned(message) => message,
            Routed::Shared(message) => message,
        }
    }
}

/// The message of a delivery: a shared one, or one being routed that is shared only when the
/// delivery has to be kept.
pub(crate) trait Keep: Deref<Target = Message> {
    /// The message as a delivery keeps it.
    fn keep(self) -> Arc<Message>;
}

impl Keep for Arc<Message> {
    fn keep(self) -> Arc<Message> {
        self
    }
}

/// A message being routed, lent to one delivery: shared if the delivery is kept.
#[derive(Debug)]
pub(crate) struct Lent<'a>(pub(crate) &'a mut Routed);

impl Deref for Lent<'_> {
    type Target = Message;

    fn deref(&self) -> &Message {
        self.0
    }
}

impl Keep for Lent<'_> {
    fn keep(self) -> Arc<Message> {
        self.0.share()
    }
}

impl<M: Keep> Delivery<M> {
    /// The delivery as a queue or inflight window keeps it.
    pub(crate) fn kept(self) -> Delivery {
        let Delivery { message, qos, retain, subscription_ids, stored } = self;
        Delivery { message: message.keep(), qos, retain, subscription_ids, stored }
    }
}

/// Where PUBLISH headers are encoded, and the headers that can be sent again.
///
/// A header is encoded into a reused buffer, then sent as:
/// - the message's own header as received, when it is the same bytes (QoS 0 between clients of
///   one version, no alias, no subscription identifier, no expiry): that part of the read
///   buffer, which the payload shares, so no allocation;
/// - the header two deliveries in a row needed, when it is the same bytes again (every
///   subscriber of a message that was received in another form, say at QoS 1 or from a client
///   of another version): shared, so no allocation after the second;
/// - otherwise a copy at its exact length: one allocation (a fresh `BytesMut` per header cost
///   three: its allocation, the encoder's `reserve`, sized for the whole packet, growing it, and
///   `freeze` boxing a shared buffer because its length is not its capacity).
///
/// Only exact-length headers are kept, so no delivery pins more memory than its own bytes.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    /// The header being encoded; allocates only when a header outgrows it.
    scratch: BytesMut,
    /// The bytes of the header copied out last.
    previous: BytesMut,
    /// A header that two deliveries in a row needed, shared by the deliveries that need it
    /// since.
    repeated: Bytes,
}

impl Headers {
    /// The header of `publish` in `version`, as bytes to send (see [`Headers`]); `wire` is the
    /// message's header as received. `None` when the header cannot be encoded.
    pub(crate) fn encode(
        &mut self,
        publish: &Publish,
        version: ProtocolVersion,
        wire: &Bytes,
    ) -> Option<Bytes> {
        self.scratch.clear();
        publish.encode_header(version, &mut self.scratch).ok()?;
        Some(self.take(wire))
    }

    /// The header in `scratch` as bytes to send (see [`Headers`]). A header is never empty, so
    /// the empty `wire` of a message not received as a PUBLISH matches none.
    fn take(&mut self, wire: &Bytes) -> Bytes {
        if wire[..] == self.scratch[..] {
            return wire.clone();
        }
        if self.repeated[..] == self.scratch[..] {
            return self.repeated.clone();
        }
        let header = Bytes::copy_from_slice(&self.scratch);
        if self.previous[..] == self.scratch[..] {
            // The clone shares the copy: one more allocation, then none while it repeats.
            self.repeated = header.clone();
        } else {
            core::mem::swap(&mut self.previous, &mut self.scratch);
        }
        header
    }
}
