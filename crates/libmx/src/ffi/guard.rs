//! Keeping panics on the Rust side of the C boundary.
//!
//! Unwinding out of an `extern "C"` function aborts the process, so every
//! entry point that can panic runs its body inside [`ffi_guard`] (for
//! functions returning `mx_return_t`) or [`ffi_guard_or`] (anything else).
//!
//! The closures are wrapped in `AssertUnwindSafe`: after a panic the library
//! state is only reachable through `Mutex`es (poisoning is handled where they
//! are locked), and the caller just gets an error code.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::error;
use super::types::MxReturn;

/// Run the body of entry point `func`; a panic becomes
/// `error(MX_BAD_BAD_BAD, "<func>: internal error")` (through the handler).
///
/// ```ignore
/// #[no_mangle]
/// pub unsafe extern "C" fn mx_foo(ep: MxEndpointPtr) -> MxReturn {
///     ffi_guard("mx_foo", || { /* ... */ MxReturn::SUCCESS })
/// }
/// ```
pub fn ffi_guard<F: FnOnce() -> MxReturn>(func: &str, body: F) -> MxReturn {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(ret) => ret,
        Err(_) => ffi_guard_or(MxReturn::BAD_BAD_BAD, || {
            error(
                MxReturn::BAD_BAD_BAD,
                &format!("{func}: internal error (panic in the MX library)"),
            )
        }),
    }
}

/// Run `body`; a panic yields `fallback` instead (for entry points that do
/// not return `mx_return_t`, e.g. `mx_set_error_handler`, `mx_raw_handle`).
pub fn ffi_guard_or<T, F: FnOnce() -> T>(fallback: T, body: F) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_values() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = ffi_guard_or(7u32, || panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(r, 7);
        assert_eq!(ffi_guard("x", || MxReturn::BUSY), MxReturn::BUSY);
    }
}
