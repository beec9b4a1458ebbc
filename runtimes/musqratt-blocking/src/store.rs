//! `[persistence]` on this runtime: the store crate's [`Durable`] and [`Steps`], shared with
//! the other runtimes, with the `persistence` feature; without it, a stand-in that only passes
//! the engine's actions through (and a start with `[persistence]` is refused).

#[cfg(feature = "persistence")]
pub(crate) use musqratt_store::{Durable, Steps};

#[cfg(not(feature = "persistence"))]
pub(crate) use none::{Durable, Steps};

#[cfg(not(feature = "persistence"))]
mod none {
    use std::io;

    use musqratt_engine::{Action, Engine, Instant};
    use musqratt_kit::Persistence;

    /// No store can be opened without the feature.
    #[derive(Debug, Clone)]
    pub(crate) enum Durable {}

    impl Durable {
        pub(crate) fn open(_: &Persistence, _: Instant) -> io::Result<Self> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "[persistence]: this build of the blocking runtime has no store (feature \
                 `persistence` of musqratt-blocking)",
            ))
        }

        pub(crate) fn restore(&self, _: &mut Engine, _: Instant) {
            match *self {}
        }

        pub(crate) fn steps(&self) -> Steps {
            match *self {}
        }
    }

    /// The engine's actions as they come.
    #[derive(Debug, Default)]
    pub(crate) struct Steps;

    impl Steps {
        #[inline]
        pub(crate) fn poll_action(&mut self, engine: &mut Engine) -> Option<Action> {
            engine.poll_action()
        }
    }
}
