//! Byte buffers that cross the boundary without copies.
//!
//! - [`MusqrattBuf`]: a receive buffer. The host reads from its socket straight into it and
//!   hands it to the engine ([`crate::musqratt_engine_input_buf`]), which keeps it: decoded
//!   payloads are slices of it, as with every Rust runtime (the engine contract's "bytes in as
//!   read").
//! - [`MusqrattBytes`]: bytes of an action kept past the next call on the engine
//!   ([`crate::musqratt_engine_take_bytes`]), for a host that writes them later, on another
//!   thread. A reference to the engine's buffer, not a copy.

use alloc::boxed::Box;

use bytes::{Bytes, BytesMut};

/// A receive buffer of fixed capacity, owned by the host until it gives it to the engine.
pub struct MusqrattBuf {
    pub(crate) bytes: BytesMut,
}

/// Bytes of an action the host keeps: read-only, freed with [`musqratt_bytes_free`]. Any
/// thread may read or free it; the engine need not be locked.
pub struct MusqrattBytes {
    pub(crate) bytes: Bytes,
}

/// A new receive buffer of `capacity` bytes (zeroed), or NULL for a capacity of 0.
///
/// Give it to [`crate::musqratt_engine_input_buf`] (which takes it) or free it with
/// [`musqratt_buf_free`].
#[unsafe(no_mangle)]
pub extern "C" fn musqratt_buf_new(capacity: usize) -> *mut MusqrattBuf {
    if capacity == 0 {
        return core::ptr::null_mut();
    }
    Box::into_raw(Box::new(MusqrattBuf { bytes: BytesMut::zeroed(capacity) }))
}

/// Where to write into `buf`: [`musqratt_buf_capacity`] bytes. NULL for a NULL `buf`.
///
/// # Safety
/// `buf` is NULL or a live buffer from [`musqratt_buf_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_buf_data(buf: *mut MusqrattBuf) -> *mut u8 {
    // SAFETY: the caller's contract.
    match unsafe { buf.as_mut() } {
        Some(buf) => buf.bytes.as_mut_ptr(),
        None => core::ptr::null_mut(),
    }
}

/// How many bytes `buf` holds; 0 for a NULL `buf`.
///
/// # Safety
/// `buf` is NULL or a live buffer from [`musqratt_buf_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_buf_capacity(buf: *const MusqrattBuf) -> usize {
    // SAFETY: the caller's contract.
    unsafe { buf.as_ref() }.map_or(0, |buf| buf.bytes.len())
}

/// Frees a buffer the engine was not given. NULL is ignored.
///
/// # Safety
/// `buf` is NULL or a live buffer from [`musqratt_buf_new`], not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_buf_free(buf: *mut MusqrattBuf) {
    if !buf.is_null() {
        // SAFETY: the caller's contract: it came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(buf) });
    }
}

/// The bytes; NULL for a NULL `bytes`. Valid until [`musqratt_bytes_free`].
///
/// # Safety
/// `bytes` is NULL or a live handle from [`crate::musqratt_engine_take_bytes`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_bytes_data(bytes: *const MusqrattBytes) -> *const u8 {
    // SAFETY: the caller's contract.
    unsafe { bytes.as_ref() }.map_or(core::ptr::null(), |bytes| bytes.bytes.as_ptr())
}

/// How many bytes; 0 for a NULL `bytes`.
///
/// # Safety
/// `bytes` is NULL or a live handle from [`crate::musqratt_engine_take_bytes`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_bytes_len(bytes: *const MusqrattBytes) -> usize {
    // SAFETY: the caller's contract.
    unsafe { bytes.as_ref() }.map_or(0, |bytes| bytes.bytes.len())
}

/// Lets the bytes go. NULL is ignored.
///
/// # Safety
/// `bytes` is NULL or a live handle from [`crate::musqratt_engine_take_bytes`], not used
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_bytes_free(bytes: *mut MusqrattBytes) {
    if !bytes.is_null() {
        // SAFETY: the caller's contract: it came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(bytes) });
    }
}
