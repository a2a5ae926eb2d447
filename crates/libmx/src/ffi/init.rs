//! `mx__init_api` (what the `mx_init()` macro calls) and `mx_finalize`.

use core::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{error, install_default_handler};
use super::guard::ffi_guard;
use super::symver::mx_symbol_version;
use super::types::{MxReturn, MX_API};

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Whether `mx_init` succeeded and `mx_finalize` was not called since.
/// Entry points needing the library report `MX_NOT_INITIALIZED` otherwise.
pub fn is_initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

/// `Err(error(MX_NOT_INITIALIZED, "<func>: ..."))` unless initialized;
/// `if let Err(e) = check_initialized("mx_open_endpoint") { return e; }`.
pub fn check_initialized(func: &str) -> Result<(), MxReturn> {
    if is_initialized() {
        Ok(())
    } else {
        Err(error(
            MxReturn::NOT_INITIALIZED,
            &format!("{func}: mx_init() was not called"),
        ))
    }
}

/// Whether an application built for API level `api` can use this library:
/// non-zero with the same major level (`api >> 8 == 3`).
pub fn api_compatible(api: c_int) -> bool {
    api != 0 && (api >> 8) == (MX_API >> 8)
}

/// `mx_return_t mx__init_api(int api)`: initialize the library.
///
/// A bad API level fails with `MX_BAD_LIB_VERSION` (through the error
/// handler: fatal unless the application installed another one first); a
/// second call returns `MX_ALREADY_INITIALIZED` directly, without the
/// handler, so stacks that initialize from several components keep working.
#[no_mangle]
pub extern "C" fn mx__init_api(api: c_int) -> MxReturn {
    ffi_guard("mx_init", || {
        if !api_compatible(api) {
            return error(
                MxReturn::BAD_LIB_VERSION,
                &format!(
                    "mx_init: application built for MX API {api:#x}, library provides {MX_API:#x}"
                ),
            );
        }
        if INITIALIZED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return MxReturn::ALREADY_INITIALIZED;
        }
        install_default_handler();
        MxReturn::SUCCESS
    })
}
mx_symbol_version!("mx__init_api", "MX_0.92");

/// `mx_return_t mx_finalize(void)`: shut the library down, closing every
/// endpoint still open. `MX_NOT_INITIALIZED` (through the handler) without
/// a prior `mx_init`.
#[no_mangle]
pub extern "C" fn mx_finalize() -> MxReturn {
    ffi_guard("mx_finalize", || {
        if !is_initialized() {
            return error(
                MxReturn::NOT_INITIALIZED,
                "mx_finalize: mx_init() was not called",
            );
        }
        if super::common::in_any_handler() {
            return error(
                MxReturn::CLOSE_IN_HANDLER,
                "mx_finalize: called from an unexpected handler",
            );
        }
        // Endpoints still open are closed (as mx_close_endpoint would).
        super::endpoint_api::close_all();
        super::raw_api::close_all();
        super::info::drop_global();
        if INITIALIZED
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return error(
                MxReturn::NOT_INITIALIZED,
                "mx_finalize: mx_init() was not called",
            );
        }
        MxReturn::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_levels() {
        assert!(api_compatible(0x301));
        assert!(api_compatible(0x300));
        assert!(api_compatible(0x3ff));
        assert!(!api_compatible(0));
        assert!(!api_compatible(0x200));
        assert!(!api_compatible(0x401));
        assert!(!api_compatible(-1));
        assert!(!api_compatible(3));
    }
}
