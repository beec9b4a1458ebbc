//! What every runtime does with a store, the same way (tokio, io-uring, blocking): open it from
//! `[persistence]` and read it once at start, restore each shard's engine from what it read,
//! and carry out a step's actions only after the step's records are written.

use core::time::Duration;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use musqratt_engine::{Action, Engine, Instant, Record};
use musqratt_kit::{FsyncPolicy, Persistence};

use crate::{Fsync, Store, epoch_of};

/// The open store and the state read from it, shared by the shards while they start.
#[derive(Debug, Clone)]
pub struct Durable {
    store: Store,
    restore: Arc<Vec<Record>>,
    path: PathBuf,
}

impl Durable {
    /// Opens the store of `[persistence]` and reads it; `now` is the runtime clock's time (its
    /// epoch is the engine's `Instant::ZERO`). What does not decode is logged and skipped.
    ///
    /// # Errors
    /// The store cannot be used (another broker holds it, another format version, not a
    /// database): the message names the file.
    pub fn open(settings: &Persistence, now: Instant) -> io::Result<Self> {
        let fsync = match settings.fsync {
            FsyncPolicy::Never => Fsync::Never,
            FsyncPolicy::Interval(every) => Fsync::Interval(every),
            _ => Fsync::Always,
        };
        let path = settings.path.clone();
        let store = Store::open(&path, fsync, epoch_of(now)).map_err(io::Error::other)?;
        let loaded = store.load(settings.max_ram_per_session).map_err(io::Error::other)?;
        for (what, corrupt) in &loaded.corrupt {
            tracing::warn!(path = %path.display(), what, %corrupt, "persistence: record skipped");
        }
        tracing::info!(path = %path.display(), records = loaded.records.len(), "persistence: store read");
        Ok(Self { store, restore: Arc::new(loaded.records), path })
    }

    /// Restores a shard's engine before its first connection (each shard takes what it owns,
    /// [`Engine::restore`]). A record the engine refuses is logged and skipped. Then carry out
    /// the engine's actions: restored subscriptions are announced to the other shards.
    pub fn restore(&self, engine: &mut Engine, now: Instant) {
        for record in self.restore.iter() {
            if let Err(error) = engine.restore(now, record.clone()) {
                let shard = engine.config().shard.0;
                tracing::warn!(shard, %error, path = %self.path.display(), "persistence: record not restored");
            }
        }
    }

    /// A shard's writer of its steps' records.
    #[must_use]
    pub fn steps(&self) -> Steps {
        Steps::new(Some(self.store.clone()))
    }
}

/// Takes a shard's actions from its engine, writing the records of each batch in one
/// transaction before handing out any other action of the batch: the acknowledgement rule
/// (docs/adr/0017-persistence-store.md). A PUBACK is queued ahead of the records of the
/// message it acknowledges; a shard message answering a `StoreSync` releases a PUBACK on
/// another shard; neither may leave before those records are written. A batch is everything
/// the engine had queued when the previous batch was done; what carrying it out adds (a
/// write reported, an authentication answered at once) is the next batch.
///
/// Without a store, [`Steps::poll_action`] is the engine's own: nothing is held or copied.
#[derive(Debug, Default)]
pub struct Steps {
    store: Option<Store>,
    batch: VecDeque<Action>,
    records: Vec<Record>,
    /// `Action::LoadQueue`s of the batch, answered once its records are written.
    loads: Vec<(musqratt_engine::proto::bytestring::ByteString, u64, usize)>,
}

impl Steps {
    /// Writes to `store`, or, with `None`, passes actions through.
    #[must_use]
    pub fn new(store: Option<Store>) -> Self {
        Self { store, batch: VecDeque::new(), records: Vec::new(), loads: Vec::new() }
    }

    /// The next action to carry out, until `None` (then the engine has nothing queued).
    pub fn poll_action(&mut self, engine: &mut Engine) -> Option<Action> {
        let Some(store) = &self.store else { return engine.poll_action() };
        if self.batch.is_empty() {
            while let Some(action) = engine.poll_action() {
                match action {
                    Action::Store(record) => self.records.push(record),
                    Action::LoadQueue { client_id, after, max } => {
                        self.loads.push((client_id, after, max));
                    }
                    other => self.batch.push_back(other),
                }
            }
            if !self.records.is_empty() {
                write_until_done(store, &self.records, engine.config().shard.0);
                self.records.clear();
            }
            // The tail of a queue, read after this batch's records are written (they may be
            // part of it); what the engine does with it is the next batch.
            for (client_id, after, max) in self.loads.drain(..) {
                match store.load_queue(&client_id, after, max) {
                    Ok(read) => {
                        let complete = read.len() < max;
                        engine.queue_loaded(&client_id, read, complete);
                    }
                    // Asked again at its next connection (the engine forgets the request when
                    // the connection ends), not in a loop.
                    Err(error) => {
                        tracing::error!(%error, client_id = %client_id, "persistence: queue not read");
                    }
                }
            }
            // For the inputs that follow: while the store cannot write, the engine refuses
            // new messages that would need a write (docs/PERSISTENCE.md, "A full disk").
            let full = store.is_full();
            if full != engine.store_full() {
                engine.set_store_full(full);
            }
        }
        self.batch.pop_front()
    }
}

/// The first wait before a failed write is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two tries of a failed write.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Writes a batch's records, trying again until the store takes them (docs/PERSISTENCE.md,
/// "A full disk"). The last resort: a write that failed for want of space was already tried
/// again with the reserve's space ([`Store::write`]); this is what is left when even that
/// failed, or the failure is not about space. A write that fails (disk full, I/O error) is rolled back whole, so
/// nothing of it is kept and nothing acknowledged before is touched. The batch's actions wait
/// meanwhile: a PUBACK or PUBREC (§3.4, §3.5) for a message in the failed write, or the
/// answer to another shard's `StoreSync` that would release one there, must not leave before
/// its message is stored (the acknowledgement rule), and dropping the records would lose a
/// message the broker was about to acknowledge. So the shard stops until the write succeeds:
/// its clients get no acknowledgement (MQTT 3.1.1 has no way to refuse a PUBLISH, and an
/// MQTT 5.0 0x97 Quota exceeded would need the message taken back from the subscribers it
/// was already routed to), and service resumes by itself once there is space again. The
/// records are idempotent (replace or delete by key), so trying them again is safe.
fn write_until_done(store: &Store, records: &[Record], shard: u16) {
    let mut wait = RETRY_FIRST;
    let mut failures: u32 = 0;
    loop {
        match store.write(records) {
            Ok(()) if failures == 0 => return,
            Ok(()) => {
                tracing::warn!(shard, failures, "persistence: write succeeded, the shard resumes");
                return;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                // Logged at the 1st failure, then the 2nd, 4th, 8th...: said at once, without
                // flooding the log while the disk stays full.
                if failures.is_power_of_two() {
                    tracing::error!(
                        shard,
                        failures,
                        %error,
                        "persistence: write failed; the shard holds its acknowledgements and \
                         tries again"
                    );
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
