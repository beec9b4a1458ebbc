//! `no_std` builds linked from C (`panic-abort`): a panic stops the program through the host's
//! `abort()`, the one thing every C library has. Nothing unwinds into C frames.

unsafe extern "C" {
    fn abort() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: `abort` takes nothing and does not return.
    unsafe { abort() }
}
