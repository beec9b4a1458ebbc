//! The MusQraTT engine as a C library (`include/musqratt.h`): the sans-IO contract of
//! [`musqratt_engine::Engine`] behind opaque handles, for hosts that are not Rust programs —
//! a CompositeOS component, a firmware written in C, any event loop.
//!
//! ```c
//! MusqrattEngine *engine = musqratt_engine_new(NULL);          // default configuration
//! musqratt_engine_open(engine, now_us(), 1);                   // connection 1 accepted
//! musqratt_engine_input(engine, now_us(), 1, bytes, n);        // what was read from it
//! MusqrattAction action;
//! while (musqratt_engine_poll_action(engine, &action) == MUSQRATT_STATUS_OK) {
//!     if (action.kind == MUSQRATT_ACTION_KIND_SEND) write_all(fd_of(action.conn), action.data, action.len);
//!     if (action.kind == MUSQRATT_ACTION_KIND_CLOSE) close_after_writing(action.conn);
//! }
//! uint64_t deadline;
//! if (musqratt_engine_poll_timeout(engine, &deadline) == MUSQRATT_STATUS_OK) arm_timer(deadline);
//! musqratt_engine_free(engine);
//! ```
//!
//! The design (docs/adr/0019-ffi.md; docs/PORTING.md is the host's guide):
//! - **Opaque handles, no global state.** Every function takes the [`MusqrattEngine`] it works
//!   on; two engines in one process share nothing. An engine is single-owner: one thread at a
//!   time (the C host holds a mutex for each step).
//! - **Time is an argument**, microseconds on a monotonic clock from an epoch the host picks.
//! - **Bytes without copies where the contract allows.** An action's `data` is borrowed from the
//!   engine until the next call on that engine; [`musqratt_engine_take_bytes`] keeps it longer
//!   (a reference count, not a copy: a PUBLISH payload sent to a hundred subscribers is one
//!   buffer). Input is read straight into a [`MusqrattBuf`] the engine then owns
//!   ([`musqratt_engine_input_buf`]); [`musqratt_engine_input`] copies, for hosts that read into
//!   their own buffers.
//! - **No panic crosses the boundary.** With the `std` feature (the default) each entry point
//!   catches a panic, reports [`MusqrattStatus::ErrPanic`] and poisons the engine (every later
//!   call reports [`MusqrattStatus::ErrPoisoned`]: its state is not trusted). Without `std` the
//!   crate is `no_std` + `alloc` and a panic aborts, by design (the `panic-abort` feature calls
//!   the host's `abort()`); so does an allocation failure, in both.
//! - **Allocation** is Rust's global allocator: the system's with `std`, the host's
//!   `malloc`/`realloc`/`free` with `c-allocator`, or whatever a Rust bare-metal host installs.
#![cfg_attr(not(feature = "std"), no_std)]
// The C boundary is raw pointers; every `unsafe` block says why it holds. The codec and the
// engine underneath stay `forbid(unsafe_code)`.
#![allow(unsafe_code)]

extern crate alloc;

mod api;
mod buffers;
#[cfg(feature = "c-allocator")]
mod c_alloc;
mod guard;
#[cfg(all(feature = "panic-abort", not(feature = "std")))]
mod panic;
#[cfg(test)]
mod tests;

pub use api::*;
pub use buffers::{
    MusqrattBuf, MusqrattBytes, musqratt_buf_capacity, musqratt_buf_data, musqratt_buf_free,
    musqratt_buf_new, musqratt_bytes_data, musqratt_bytes_free, musqratt_bytes_len,
};

/// What a call did. Negative values are errors; an error leaves the engine as it was, except
/// [`MusqrattStatus::ErrPanic`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MusqrattStatus {
    /// Done.
    Ok = 0,
    /// Nothing to report: no action waiting ([`musqratt_engine_poll_action`]) or no deadline
    /// ([`musqratt_engine_poll_timeout`]).
    None = 1,
    /// A required pointer was NULL.
    ErrNull = -1,
    /// An argument is out of range: a connection id of 2^63 or more (the upper half is the
    /// engine's, for MQTT-SN peers), a length beyond a buffer's capacity, a configuration value
    /// the engine cannot take.
    ErrInvalid = -2,
    /// The engine panicked during this call (a bug): it is poisoned, free it.
    ErrPanic = -3,
    /// An earlier call panicked; the engine refuses further work. Free it.
    ErrPoisoned = -4,
}
