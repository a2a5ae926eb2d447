//! Entry points that need no engine: the obsolete MX calls (always
//! `MX_FAILURE` through the error handler) and the internal symbols MPI
//! builds probe for (`mx_open_board`, `mx__regcache_clean`).

use core::ffi::{c_int, c_void};

use super::error::error;
use super::guard::ffi_guard;
use super::types::{
    MxEndpointAddr, MxEndpointPtr, MxEndptHandle, MxMatchingCallback, MxRequestPtr, MxReturn,
};

fn obsolete(func: &str) -> MxReturn {
    ffi_guard(func, || {
        error(
            MxReturn::FAILURE,
            &format!("{func}: obsolete MX entry point, not supported"),
        )
    })
}

/// Obsolete `mx_register_unexp_callback(ep, cb, ctx)`: always `MX_FAILURE`
/// (use `mx_register_unexp_handler`).
#[no_mangle]
pub extern "C" fn mx_register_unexp_callback(
    _endpoint: MxEndpointPtr,
    _callback: MxMatchingCallback,
    _context: *mut c_void,
) -> MxReturn {
    obsolete("mx_register_unexp_callback")
}

/// Obsolete `mx_iput(ep, local, len, dest, remote, ctx, req*)`: always
/// `MX_FAILURE`.
#[no_mangle]
pub extern "C" fn mx_iput(
    _endpoint: MxEndpointPtr,
    _local_addr: *mut c_void,
    _length: u32,
    _dest: MxEndpointAddr,
    _remote_addr: u64,
    _context: *mut c_void,
    _request: *mut MxRequestPtr,
) -> MxReturn {
    obsolete("mx_iput")
}

/// Obsolete `mx_iget(ep, local, len, dest, remote, ctx, req*)`: always
/// `MX_FAILURE`.
#[no_mangle]
pub extern "C" fn mx_iget(
    _endpoint: MxEndpointPtr,
    _local_addr: *mut c_void,
    _length: u32,
    _dest: MxEndpointAddr,
    _remote_addr: u64,
    _context: *mut c_void,
    _request: *mut MxRequestPtr,
) -> MxReturn {
    obsolete("mx_iget")
}

/// Obsolete `mx_buffered(ep, req*, timeout, result*)`: always `MX_FAILURE`
/// (use `mx_ibuffered`).
#[no_mangle]
pub extern "C" fn mx_buffered(
    _endpoint: MxEndpointPtr,
    _request: *mut MxRequestPtr,
    _timeout: u32,
    _result: *mut u32,
) -> MxReturn {
    obsolete("mx_buffered")
}

/// `mx_open_board(int board, mx_endpt_handle_t *handle)`: probed by MPI
/// builds. Succeeds and stores the board number itself as the handle (what
/// `mx__get_mapper_state` gets back). NULL `handle` -> `MX_BAD_PARAM_VAL`,
/// negative board -> `MX_BOARD_UNKNOWN`.
///
/// # Safety
/// `handle` must be NULL or point to writable `mx_endpt_handle_t` storage.
#[no_mangle]
pub unsafe extern "C" fn mx_open_board(board: c_int, handle: *mut MxEndptHandle) -> MxReturn {
    ffi_guard("mx_open_board", || {
        if handle.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx_open_board: NULL handle pointer",
            );
        }
        if board < 0 {
            return error(
                MxReturn::BOARD_UNKNOWN,
                &format!("mx_open_board: no board {board}"),
            );
        }
        // SAFETY: non-NULL (checked) and writable per the contract.
        unsafe { handle.write(board) };
        MxReturn::SUCCESS
    })
}

/// `int mx__regcache_clean(void *ptr, size_t size)`: we keep no
/// registration cache the application must flush; returns 0.
#[no_mangle]
pub extern "C" fn mx__regcache_clean(_ptr: *mut c_void, _size: usize) -> c_int {
    0
}
