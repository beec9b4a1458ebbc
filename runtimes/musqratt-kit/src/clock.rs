//! The engine's clock (docs/RUNTIMES.md, contract item 2: time is an input).

use musqratt_engine::Instant;

/// The broker's clock: microseconds since it started, one epoch shared by every shard so that
/// deadlines mean the same on all of them.
#[derive(Debug, Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Clock {
    /// A clock starting now.
    #[must_use]
    pub fn new() -> Self {
        Self(std::time::Instant::now())
    }

    /// The engine's `now`.
    #[must_use]
    pub fn now(self) -> Instant {
        Instant::from_micros(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// When the engine's instant `at` falls, on the system's monotonic clock (for a timer).
    #[must_use]
    pub fn deadline(self, at: Instant) -> Option<std::time::Instant> {
        self.0.checked_add(core::time::Duration::from_micros(at.as_micros()))
    }

    /// The system instant the clock counts from.
    #[must_use]
    pub fn epoch(self) -> std::time::Instant {
        self.0
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn deadline_is_the_inverse_of_now() {
        let clock = Clock::new();
        let now = clock.now();
        let back = clock.deadline(now).expect("in range");
        assert!(back <= std::time::Instant::now());
        assert!(back >= clock.epoch());
    }
}
