//! Persistence on the tokio runtime (docs/PERSISTENCE.md): the store opened and read once at
//! start, each shard's engine restored from it, and each step's records written before the
//! step's packets (the acknowledgement rule of docs/adr/0017-persistence-store.md).

use std::io;
use std::sync::Arc;

use musqratt_engine::{Engine, Instant, Record};
use musqratt_kit::{FsyncPolicy, Persistence};
use musqratt_store::{Fsync, Store};

use super::Shard;

/// The open store and the state read from it, shared by the shards while they start.
#[derive(Clone)]
pub(crate) struct Durable {
    pub(crate) store: Store,
    pub(crate) restore: Arc<Vec<Record>>,
}

/// Opens the store of `[persistence]` and reads it; `now` is the clock's time (its epoch is
/// the engine's `Instant::ZERO`). A store that cannot be used stops the start with an error
/// naming the file.
pub(crate) fn open(settings: &Persistence, now: Instant) -> io::Result<Durable> {
    let fsync = match settings.fsync {
        FsyncPolicy::Never => Fsync::Never,
        FsyncPolicy::Interval(every) => Fsync::Interval(every),
        _ => Fsync::Always,
    };
    let epoch = musqratt_store::epoch_of(now);
    let store = Store::open(&settings.path, fsync, epoch).map_err(io::Error::other)?;
    let loaded = store.load().map_err(io::Error::other)?;
    for (what, corrupt) in &loaded.corrupt {
        tracing::warn!(path = %settings.path.display(), what, %corrupt, "persistence: record skipped");
    }
    tracing::info!(path = %settings.path.display(), records = loaded.records.len(), "persistence: store read");
    Ok(Durable { store, restore: Arc::new(loaded.records) })
}

/// Restores a shard's engine before its first connection (each shard takes what it owns).
pub(crate) fn restore(engine: &mut Engine, durable: &Durable, now: Instant) {
    for record in durable.restore.iter() {
        if let Err(error) = engine.restore(now, record.clone()) {
            tracing::warn!(shard = engine.config().shard.0, %error, "persistence: record not restored");
        }
    }
}

impl Shard {
    /// Writes the records of the step, in one transaction, before any of the step's packets is
    /// written (the caller, `drain_actions`, runs before `write_direct`, and connection tasks
    /// write only under the shard's lock, which this step holds).
    pub(super) fn write_store(&mut self) {
        let Some(store) = &self.store else {
            self.records.clear();
            return;
        };
        if let Err(error) = store.write(&self.records) {
            // Issue 16 item 6 (refusing new QoS >= 1 messages while the disk is full) is not
            // done yet: the failure is logged and the step goes on.
            tracing::error!(shard = self.id.0, %error, "persistence: write failed");
        }
        self.records.clear();
    }
}
