//! The one formatter of engine events (`Action::Event`) for every runtime.

use core::time::Duration;

use musqratt_engine::{Event, ShardId};

/// The shortest interval between two log lines about dropped messages.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Logs a shard's engine events through `tracing`. A slow subscriber can drop thousands of
/// messages a second: the first drop after a quiet [`DROP_LOG_INTERVAL`] is logged with its
/// client, the following ones are counted and reported by [`EventLog::report_drops`] (a
/// runtime's timer calls it) or, failing that, with the next drop that is logged.
#[derive(Debug)]
pub struct EventLog {
    shard: ShardId,
    unlogged_drops: u64,
    last_drop_logged: Option<std::time::Instant>,
}

impl EventLog {
    /// The log of one shard.
    #[must_use]
    pub fn new(shard: ShardId) -> Self {
        Self { shard, unlogged_drops: 0, last_drop_logged: None }
    }

    /// Logs one event.
    pub fn log(&mut self, event: &Event) {
        let shard = self.shard.0;
        match event {
            Event::Connected { conn, client_id, session_present } => {
                tracing::info!(shard, %conn, client_id = &**client_id, session_present, "connected");
            }
            Event::Disconnected { conn, reason } => {
                let reason = reason.name().unwrap_or("unknown");
                tracing::info!(shard, %conn, reason, "disconnected");
            }
            Event::MessageDropped { client_id, reason } => {
                if self.last_drop_logged.is_none_or(|last| last.elapsed() >= DROP_LOG_INTERVAL) {
                    self.last_drop_logged = Some(std::time::Instant::now());
                    // The count since the last line, for runtimes that do not call
                    // `report_drops` on a timer.
                    let unlogged_before = core::mem::take(&mut self.unlogged_drops);
                    tracing::warn!(
                        shard,
                        client_id = &**client_id,
                        ?reason,
                        unlogged_before,
                        "message dropped"
                    );
                } else {
                    self.unlogged_drops += 1;
                }
            }
            other => tracing::debug!(shard, ?other, "event"),
        }
    }

    /// Logs how many drops were counted but not logged one by one since the last report; a
    /// runtime calls it every [`DROP_LOG_INTERVAL`]. Returns that number.
    pub fn report_drops(&mut self) -> u64 {
        let dropped = core::mem::take(&mut self.unlogged_drops);
        if dropped > 0 {
            tracing::warn!(shard = self.shard.0, dropped, "more messages dropped");
        }
        dropped
    }
}
