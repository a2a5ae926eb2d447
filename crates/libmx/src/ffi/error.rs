//! Error handlers: `mx_set_error_handler`, the exported handler objects
//! `MX_ERRORS_ARE_FATAL` / `MX_ERRORS_RETURN`, and [`error`], the helper
//! every failing entry point reports through.
//!
//! Rules (from the MX ABI facts):
//! - Every failure goes through the current handler, and what the handler
//!   returns is what the failing call returns.
//! - Before `mx_init` the handler is the fatal one (prints and exits).
//! - `mx_init` installs the default: fatal, or "return the code" when the
//!   environment has `MX_ERRORS_ARE_FATAL=0`. A handler the application set
//!   before `mx_init` is kept (MPI stacks set `MX_ERRORS_RETURN` first).
//! - The fatal handler prints `"<msg>: <mx_strerror(code)>"` on stderr and
//!   exits the process with status 1.
//! - Installing a NULL handler is accepted and behaves like
//!   `MX_ERRORS_RETURN`.

use core::ffi::{c_char, CStr};
use std::ffi::CString;
use std::io::Write;
use std::sync::Mutex;

use super::guard::ffi_guard_or;
use super::strings::strerror;
use super::types::{MxErrorHandler, MxReturn};

/// The function behind `MX_ERRORS_ARE_FATAL`.
unsafe extern "C" fn errors_are_fatal(msg: *mut c_char, ret: MxReturn) -> MxReturn {
    let text = if msg.is_null() {
        String::new()
    } else {
        // SAFETY: the handler contract gives a NUL-terminated string (our
        // `error_with` always does); NULL was excluded above.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    };
    let reason = strerror(ret).to_string_lossy();
    let mut stderr = std::io::stderr().lock();
    // Nothing sensible to do if stderr is gone: we exit anyway.
    let _ = writeln!(stderr, "{text}: {reason}");
    let _ = stderr.flush();
    drop(stderr);
    std::process::exit(1)
}

/// The function behind `MX_ERRORS_RETURN`.
unsafe extern "C" fn errors_return(_msg: *mut c_char, ret: MxReturn) -> MxReturn {
    ret
}

/// `const mx_error_handler_t MX_ERRORS_ARE_FATAL`: print and exit.
#[no_mangle]
pub static MX_ERRORS_ARE_FATAL: MxErrorHandler = Some(errors_are_fatal);

/// `const mx_error_handler_t MX_ERRORS_RETURN`: return the error code.
#[no_mangle]
pub static MX_ERRORS_RETURN: MxErrorHandler = Some(errors_return);

struct HandlerState {
    handler: MxErrorHandler,
    /// The application installed `handler` itself (so init keeps it).
    user_set: bool,
}

static STATE: Mutex<HandlerState> = Mutex::new(HandlerState {
    handler: Some(errors_are_fatal),
    user_set: false,
});

fn state() -> std::sync::MutexGuard<'static, HandlerState> {
    // A panic while holding this tiny lock cannot leave it inconsistent.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process-wide handler currently installed.
pub fn current_handler() -> MxErrorHandler {
    state().handler
}

/// Install the default handler at `mx_init` time, unless the application
/// already chose one: fatal, or return-the-code with `MX_ERRORS_ARE_FATAL=0`.
pub(crate) fn install_default_handler() {
    let fatal = std::env::var_os("MX_ERRORS_ARE_FATAL").is_none_or(|v| v != "0");
    let mut st = state();
    if !st.user_set {
        st.handler = if fatal {
            MX_ERRORS_ARE_FATAL
        } else {
            MX_ERRORS_RETURN
        };
    }
}

/// Report `ret` with description `msg` through the process-wide handler and
/// return what the handler returns. `MxReturn::SUCCESS` is returned as is.
///
/// This is THE way for entry points to fail:
/// `return error(MxReturn::BAD_ENDPOINT, "mx_isend: NULL endpoint");`
pub fn error(ret: MxReturn, msg: &str) -> MxReturn {
    if ret == MxReturn::SUCCESS {
        return ret;
    }
    error_with(current_handler(), ret, msg)
}

/// Like [`error`], but through an explicit handler (e.g. the one an
/// endpoint got with `MX_PARAM_ERROR_HANDLER`). A `None` handler returns
/// `ret` unchanged.
pub fn error_with(handler: MxErrorHandler, ret: MxReturn, msg: &str) -> MxReturn {
    let Some(handler) = handler else {
        return ret;
    };
    // The handler takes a mutable C string; give it a private copy.
    let mut bytes: Vec<u8> = msg.bytes().filter(|&b| b != 0).collect();
    bytes.push(0);
    let c = CString::from_vec_with_nul(bytes).unwrap_or_default();
    let raw = c.into_raw();
    // SAFETY: `handler` is a C function pointer of the documented
    // `mx_error_handler_t` type given to us by the application (or one of
    // ours); `raw` is a valid NUL-terminated buffer that outlives the call.
    let out = unsafe { handler(raw, ret) };
    // SAFETY: `raw` came from `CString::into_raw` just above.
    drop(unsafe { CString::from_raw(raw) });
    out
}

/// `mx_error_handler_t mx_set_error_handler(mx_error_handler_t handler)`:
/// install `handler` process-wide and return the previous one.
///
/// # Safety
/// `handler` must be NULL or a function with the `mx_error_handler_t`
/// signature that stays valid while installed.
#[no_mangle]
pub unsafe extern "C" fn mx_set_error_handler(handler: MxErrorHandler) -> MxErrorHandler {
    ffi_guard_or(None, || {
        let mut st = state();
        st.user_set = true;
        core::mem::replace(&mut st.handler, handler)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn plus_one(msg: *mut c_char, ret: MxReturn) -> MxReturn {
        // SAFETY: error_with passes a valid C string.
        let m = unsafe { CStr::from_ptr(msg) };
        assert_eq!(m.to_bytes(), b"hello");
        MxReturn(ret.0 + 1)
    }

    #[test]
    fn error_with_uses_the_handler_return_value() {
        assert_eq!(
            error_with(Some(plus_one), MxReturn::FAILURE, "hel\0lo"),
            MxReturn::ALREADY_INITIALIZED
        );
        assert_eq!(
            error_with(None, MxReturn::BUSY, "x"),
            MxReturn::BUSY,
            "NULL handler returns the code"
        );
        assert_eq!(
            error_with(MX_ERRORS_RETURN, MxReturn::TIMEOUT, "x"),
            MxReturn::TIMEOUT
        );
    }
}
