//! The one way into an engine from C: a NULL check, the poison check, and (with `std`) a
//! panic caught before it reaches the caller, whose frames know nothing of Rust unwinding.

use crate::MusqrattStatus;
use crate::api::MusqrattEngine;

/// Runs `step` on the engine behind `engine`.
///
/// # Safety
/// `engine` is NULL or a pointer from `musqratt_engine_new` not yet freed, used by no other
/// thread during the call.
pub(crate) unsafe fn with_engine(
    engine: *mut MusqrattEngine,
    step: impl FnOnce(&mut MusqrattEngine) -> MusqrattStatus,
) -> MusqrattStatus {
    // SAFETY: the caller's contract: NULL or a live, exclusively used handle.
    let Some(handle) = (unsafe { engine.as_mut() }) else {
        return MusqrattStatus::ErrNull;
    };
    if handle.poisoned {
        return MusqrattStatus::ErrPoisoned;
    }
    caught(handle, step)
}

/// With `std`: a panic becomes [`MusqrattStatus::ErrPanic`] and poisons the engine, whose state
/// a half-done step may have left inconsistent.
#[cfg(feature = "std")]
fn caught(
    handle: &mut MusqrattEngine,
    step: impl FnOnce(&mut MusqrattEngine) -> MusqrattStatus,
) -> MusqrattStatus {
    match std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| step(&mut *handle))) {
        Ok(status) => status,
        Err(_) => {
            handle.poisoned = true;
            MusqrattStatus::ErrPanic
        }
    }
}

/// Without `std` there is no unwinding to catch: the panic handler aborts (`panic-abort`, or
/// the host's own), and an `extern "C"` function aborts rather than unwind in any case.
#[cfg(not(feature = "std"))]
fn caught(
    handle: &mut MusqrattEngine,
    step: impl FnOnce(&mut MusqrattEngine) -> MusqrattStatus,
) -> MusqrattStatus {
    step(handle)
}
