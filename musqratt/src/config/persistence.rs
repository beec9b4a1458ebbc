//! The `[persistence]` table (docs/PERSISTENCE.md, docs/CONFIG.md): where durable state is
//! kept and when it is synced. Absent `path`: in memory only, as without the table.

use core::time::Duration;
use std::path::PathBuf;

use musqratt_engine::Config;
use serde::Deserialize;

/// `fsync = "never" | "interval" | "always"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncSetting {
    /// Written to the OS only: survives `kill -9`, not a power loss.
    Never,
    /// Synced every `fsync_interval_ms` (the default).
    #[default]
    Interval,
    /// Synced before the acknowledgements that depend on each write.
    Always,
}

table! {
    /// The `[persistence]` table.
    pub struct PersistenceSection from engine {
        /// The store's file (created if absent); absent: nothing is kept across a restart.
        path: Option<PathBuf> = None => |_, _| {};
        /// When writes are synced to disk.
        fsync: FsyncSetting = FsyncSetting::Interval => |_, _| {};
        /// Milliseconds between syncs with `fsync = "interval"`.
        fsync_interval_ms: u64 = 1000 => |_, _| {};
        /// Queued messages of a durable session kept in memory; the rest stays in the store
        /// and is read as the queue drains.
        max_ram_per_session: usize = engine.max_ram_per_session => |v, c| c.max_ram_per_session = (*v).max(1);
    }
}

impl PersistenceSection {
    /// The runtime's settings; `None` without `path`.
    #[must_use]
    pub fn settings(&self) -> Option<musqratt_kit::Persistence> {
        let path = self.path.clone()?;
        let fsync = match self.fsync {
            FsyncSetting::Never => musqratt_kit::FsyncPolicy::Never,
            FsyncSetting::Interval => musqratt_kit::FsyncPolicy::Interval(Duration::from_millis(
                self.fsync_interval_ms.max(1),
            )),
            FsyncSetting::Always => musqratt_kit::FsyncPolicy::Always,
        };
        let settings = musqratt_kit::Persistence::new(path, fsync);
        Some(settings.with_max_ram_per_session(self.max_ram_per_session))
    }
}
