//! Time as the engine sees it: a number the runtime hands in, never read from a clock.

use core::time::Duration;

/// A point in time, in microseconds since an epoch the runtime picks (usually its start).
///
/// The engine never reads a clock (docs/DESIGN.md, "The engine contract"): every input comes with the
/// time, which makes the engine deterministic and lets the simulator run on a virtual clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(0);

    /// The instant `micros` microseconds after the epoch.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating far in the future instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// How long after `earlier` this is; zero if it is not after.
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + seconds`, the unit of every MQTT interval.
    #[must_use]
    pub fn plus_secs(self, seconds: u32) -> Self {
        self.saturating_add(Duration::from_secs(u64::from(seconds)))
    }
}
