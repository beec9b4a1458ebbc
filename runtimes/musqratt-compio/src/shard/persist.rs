//! `[persistence]` on the io-uring runtime (docs/PERSISTENCE.md): the store crate's
//! [`musqratt_store::Durable`] and [`musqratt_store::Steps`], as on the other runtimes.

use super::Core;

impl Core {
    /// Restores the engine from the store before the shard's first connection, then writes
    /// each batch's records before its other actions (the acknowledgement rule, ADR 17), and
    /// announces the restored subscriptions to the other shards.
    pub(super) fn restore(&mut self, durable: &musqratt_store::Durable) {
        durable.restore(&mut self.engine, self.clock.now());
        self.steps = durable.steps();
        self.dispatch();
    }
}
