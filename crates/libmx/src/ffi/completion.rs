//! Completion: `mx_test`, `mx_wait`, `mx_test_any`, `mx_wait_any`,
//! `mx_ipeek`, `mx_peek`, `mx_iprobe`, `mx_probe`, `mx_ibuffered`,
//! `mx_context`.
//!
//! Rules common to all of them:
//! - the status is written only when the call returns `MX_SUCCESS` with a
//!   non-zero result (a NULL status pointer is accepted and not written);
//! - a completed request with an error status is reported to the
//!   endpoint's error handler (see [`report_status`]) after the status was
//!   written, and the call still returns `MX_SUCCESS`;
//! - the blocking forms return `MX_SUCCESS` with result 0 on timeout, on
//!   `mx_wakeup` and when another thread closes the endpoint; when the
//!   backend went away they fail with `MX_NIC_DEAD` instead of returning 0
//!   forever;
//! - the polling forms (`mx_test`, `mx_test_any`, `mx_ipeek`,
//!   `mx_iprobe`) yield the CPU once a thread's polls have been empty for
//!   a while ([`super::poll_policy`], `MX_POLL_YIELD`).

use core::ffi::c_void;

use crate::core::{Completion, Core, Probe, ReqId, Return};

use super::common::{get_ep, not_in_handler, put, report_status, status_of, timeout_ms};
use super::error::error;
use super::guard::ffi_guard;
use super::handle::{self, split_req, EpShared};
use super::init::check_initialized;
use super::poll_policy::after_poll;
use super::segbuf::SegBuf;
use super::symver::mx_symbol_version;
use super::types::{MxEndpointPtr, MxRequestPtr, MxReturn, MxStatus, MxStatusCode};
use super::xfer::req_of;

/// Write a completion out to the caller: status, result, `*request = NULL`,
/// then the error handler for an error status.
///
/// # Safety
/// `status` NULL or writable; `result` writable; `request` NULL or
/// writable.
unsafe fn write_out_completion(
    shared: &EpShared,
    func: &str,
    st: Option<MxStatus>,
    status: *mut MxStatus,
    result: *mut u32,
    request: *mut MxRequestPtr,
) -> MxReturn {
    match st {
        Some(st) => {
            // SAFETY: per the contract.
            unsafe {
                if !status.is_null() {
                    put(status, st);
                }
                if !request.is_null() {
                    put(request, core::ptr::null_mut());
                }
                put(result, 1);
            }
            report_status(shared, func, &st);
        }
        // SAFETY: per the contract.
        None => unsafe { put(result, 0) },
    }
    MxReturn::SUCCESS
}

fn take(shared: &EpShared, c: &mut Core<SegBuf>, done: Completion<SegBuf>) -> MxStatus {
    status_of(shared, c, &done)
}

fn probe_status(shared: &EpShared, c: &Core<SegBuf>, p: Probe) -> MxStatus {
    MxStatus {
        code: MxStatusCode::SUCCESS,
        source: shared.pack_addr_in(c, p.source),
        match_info: p.match_info,
        msg_length: p.msg_length,
        xfer_length: p.msg_length,
        context: core::ptr::null_mut(),
    }
}

/// After a blocking wait gave nothing: `MX_NIC_DEAD` if the backend went
/// away, else result 0.
///
/// # Safety
/// `result` writable.
unsafe fn nothing(shared: &EpShared, func: &str, result: *mut u32) -> MxReturn {
    if shared.ep.is_broken() {
        return shared.fail(
            MxReturn::NIC_DEAD,
            &format!("{func}: the backend went away"),
        );
    }
    // SAFETY: per the contract.
    unsafe { put(result, 0) };
    MxReturn::SUCCESS
}

/// The answer of a blocking call ([`block`]): the status handed out
/// ([`write_out_completion`]), nothing yet ([`nothing`]: timeout or wakeup), or the
/// core's refusal (through the error handler, with `refused`'s message).
///
/// # Safety
/// As [`write_out_completion`] and [`nothing`].
unsafe fn answer(
    shared: &EpShared,
    func: &str,
    got: Result<Option<MxStatus>, crate::core::Return>,
    (status, result, request): (*mut MxStatus, *mut u32, *mut MxRequestPtr),
    refused: impl FnOnce() -> String,
) -> MxReturn {
    match got {
        // SAFETY: per the contract.
        Ok(Some(st)) => unsafe {
            write_out_completion(shared, func, Some(st), status, result, request)
        },
        // SAFETY: per the contract.
        Ok(None) => unsafe { nothing(shared, func, result) },
        Err(e) => shared.fail(MxReturn::of(e), &refused()),
    }
}

macro_rules! ep_or_return {
    ($ep:expr, $func:expr) => {
        match get_ep($ep, $func) {
            Ok(s) => s,
            Err(e) => return e,
        }
    };
}

macro_rules! check_result_ptr {
    ($shared:expr, $result:expr, $func:expr) => {
        if $result.is_null() {
            return $shared.fail(
                MxReturn::BAD_PARAM_VAL,
                concat!($func, ": NULL result pointer"),
            );
        }
        if let Err(e) = not_in_handler(&$shared, $func) {
            return e;
        }
    };
}

/// `mx_test(endpoint, *request, *status, *result)`: result 1 and the
/// request released (`*request = NULL`) when it finished, else 0.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_test(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_test", || {
        let shared = ep_or_return!(endpoint, "mx_test");
        // SAFETY: forwarded contract.
        let id = match unsafe { req_of(&shared, "mx_test", request) } {
            Ok(id) => id,
            Err(e) => return e,
        };
        check_result_ptr!(shared, result, "mx_test");
        let r = shared
            .ep
            .poll_with(|c| c.test(id).map(|o| o.map(|done| take(&shared, c, done))));
        after_poll(!matches!(r, Ok(None)), shared.ep.needs_backend());
        match r {
            // SAFETY: forwarded contract.
            Ok(st) => unsafe {
                write_out_completion(&shared, "mx_test", st, status, result, request)
            },
            Err(e) => shared.fail(MxReturn::of(e), "mx_test: unknown request"),
        }
    })
}
mx_symbol_version!("mx_test", "MX_0.91");

/// Block until `pick` finds something, the timeout passes, `mx_wakeup`, or
/// the endpoint is closed. `Err` carries a core refusal.
fn block<R>(
    shared: &EpShared,
    timeout: u32,
    mut pick: impl FnMut(&mut Core<SegBuf>) -> Result<Option<R>, crate::core::Return>,
) -> Result<Option<R>, crate::core::Return> {
    let mut err = None;
    let r = shared.ep.wait_for(timeout_ms(timeout), |c| {
        if shared.is_closed() {
            return Some(None);
        }
        match pick(c) {
            Ok(Some(r)) => Some(Some(r)),
            Ok(None) => None,
            Err(e) => {
                err = Some(e);
                Some(None)
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(r.flatten()),
    }
}

/// `mx_wait(endpoint, *request, timeout_ms, *status, *result)`: like
/// `mx_test`, blocking up to `timeout_ms` (`MX_INFINITE`: forever).
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_wait(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
    timeout: u32,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_wait", || {
        let shared = ep_or_return!(endpoint, "mx_wait");
        // SAFETY: forwarded contract.
        let id = match unsafe { req_of(&shared, "mx_wait", request) } {
            Ok(id) => id,
            Err(e) => return e,
        };
        check_result_ptr!(shared, result, "mx_wait");
        let got = block(&shared, timeout, |c| {
            c.test(id)
                .map(|o| o.map(|done| take(&shared, c, done)))
                .map_err(Return::from)
        });
        // SAFETY: forwarded contract.
        unsafe {
            answer(&shared, "mx_wait", got, (status, result, request), || {
                "mx_wait: unknown request".into()
            })
        }
    })
}
mx_symbol_version!("mx_wait", "MX_0.91");

fn check_mask(shared: &EpShared, func: &str, match_info: u64, mask: u64) -> Result<(), MxReturn> {
    if match_info & !mask != 0 {
        return Err(shared.fail(
            MxReturn::BAD_MATCH_MASK,
            &format!("{func}: match {match_info:#x} has bits outside mask {mask:#x}"),
        ));
    }
    Ok(())
}

/// `mx_test_any(endpoint, match, mask, *status, *result)`: take the first
/// finished receive or iconnect (completion order) with
/// `(status.match_info & mask) == match`.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_test_any(
    endpoint: MxEndpointPtr,
    match_info: u64,
    match_mask: u64,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_test_any", || {
        let shared = ep_or_return!(endpoint, "mx_test_any");
        check_result_ptr!(shared, result, "mx_test_any");
        if let Err(e) = check_mask(&shared, "mx_test_any", match_info, match_mask) {
            return e;
        }
        let r = shared.ep.poll_with(|c| {
            c.test_any(match_info, match_mask)
                .map(|o| o.map(|done| take(&shared, c, done)))
                .map_err(Return::from)
        });
        after_poll(!matches!(r, Ok(None)), shared.ep.needs_backend());
        match r {
            // SAFETY: forwarded contract.
            Ok(st) => unsafe {
                write_out_completion(
                    &shared,
                    "mx_test_any",
                    st,
                    status,
                    result,
                    core::ptr::null_mut(),
                )
            },
            Err(e) => shared.fail(MxReturn::of(e), "mx_test_any: refused"),
        }
    })
}

/// `mx_wait_any(endpoint, timeout_ms, match, mask, *status, *result)`:
/// `mx_test_any`, blocking up to `timeout_ms`.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_wait_any(
    endpoint: MxEndpointPtr,
    timeout: u32,
    match_info: u64,
    match_mask: u64,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_wait_any", || {
        let shared = ep_or_return!(endpoint, "mx_wait_any");
        check_result_ptr!(shared, result, "mx_wait_any");
        if let Err(e) = check_mask(&shared, "mx_wait_any", match_info, match_mask) {
            return e;
        }
        let got = block(&shared, timeout, |c| {
            c.test_any(match_info, match_mask)
                .map(|o| o.map(|done| take(&shared, c, done)))
                .map_err(Return::from)
        });
        // SAFETY: forwarded contract.
        unsafe {
            answer(
                &shared,
                "mx_wait_any",
                got,
                (status, result, core::ptr::null_mut()),
                || "mx_wait_any: refused".into(),
            )
        }
    })
}

/// Hand out a peeked request.
///
/// # Safety
/// `request` and `result` writable.
unsafe fn peeked(
    shared: &EpShared,
    func: &str,
    id: Option<ReqId>,
    request: *mut MxRequestPtr,
    result: *mut u32,
) -> MxReturn {
    match id.map(|id| shared.req_handle(id)) {
        Some(Some(h)) => {
            // SAFETY: per the contract.
            unsafe {
                put(request, h);
                put(result, 1);
            }
            MxReturn::SUCCESS
        }
        Some(None) => shared.fail(MxReturn::BAD_BAD_BAD, &format!("{func}: request index")),
        // SAFETY: per the contract.
        None => unsafe { nothing(shared, func, result) },
    }
}

/// `mx_ipeek(endpoint, *request, *result)`: the first finished request
/// (any kind), not completed: `*request` set and result 1, else 0.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_ipeek(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_ipeek", || {
        let shared = ep_or_return!(endpoint, "mx_ipeek");
        if request.is_null() {
            return shared.fail(MxReturn::BAD_REQUEST, "mx_ipeek: NULL request pointer");
        }
        check_result_ptr!(shared, result, "mx_ipeek");
        let id = shared.ep.poll_with(|c| c.peek());
        after_poll(id.is_some(), shared.ep.needs_backend());
        // SAFETY: forwarded contract.
        unsafe { peeked(&shared, "mx_ipeek", id, request, result) }
    })
}

/// `mx_peek(endpoint, timeout_ms, *request, *result)`: `mx_ipeek`,
/// blocking up to `timeout_ms`.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_peek(
    endpoint: MxEndpointPtr,
    timeout: u32,
    request: *mut MxRequestPtr,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_peek", || {
        let shared = ep_or_return!(endpoint, "mx_peek");
        if request.is_null() {
            return shared.fail(MxReturn::BAD_REQUEST, "mx_peek: NULL request pointer");
        }
        check_result_ptr!(shared, result, "mx_peek");
        let id = block(&shared, timeout, |c| Ok(c.peek())).unwrap_or(None);
        // SAFETY: forwarded contract.
        unsafe { peeked(&shared, "mx_peek", id, request, result) }
    })
}

/// `mx_iprobe(endpoint, match, mask, *status, *result)`: look for an
/// unexpected message without taking it (status: source, match,
/// msg_length = xfer_length).
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_iprobe(
    endpoint: MxEndpointPtr,
    match_info: u64,
    match_mask: u64,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_iprobe", || {
        let shared = ep_or_return!(endpoint, "mx_iprobe");
        check_result_ptr!(shared, result, "mx_iprobe");
        let r = shared.ep.poll_with(|c| {
            c.iprobe(match_info, match_mask)
                .map(|o| o.map(|p| probe_status(&shared, c, p)))
                .map_err(Return::from)
        });
        after_poll(!matches!(r, Ok(None)), shared.ep.needs_backend());
        match r {
            // SAFETY: forwarded contract.
            Ok(st) => unsafe {
                write_out_completion(
                    &shared,
                    "mx_iprobe",
                    st,
                    status,
                    result,
                    core::ptr::null_mut(),
                )
            },
            Err(e) => shared.fail(
                MxReturn::of(e),
                &format!("mx_iprobe: match {match_info:#x} mask {match_mask:#x} refused"),
            ),
        }
    })
}
mx_symbol_version!("mx_iprobe", "MX_0.91");

/// `mx_probe(endpoint, timeout_ms, match, mask, *status, *result)`:
/// `mx_iprobe`, blocking up to `timeout_ms`.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_probe(
    endpoint: MxEndpointPtr,
    timeout: u32,
    match_info: u64,
    match_mask: u64,
    status: *mut MxStatus,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_probe", || {
        let shared = ep_or_return!(endpoint, "mx_probe");
        check_result_ptr!(shared, result, "mx_probe");
        let got = block(&shared, timeout, |c| {
            c.iprobe(match_info, match_mask)
                .map(|o| o.map(|p| probe_status(&shared, c, p)))
                .map_err(Return::from)
        });
        // SAFETY: forwarded contract.
        unsafe {
            answer(
                &shared,
                "mx_probe",
                got,
                (status, result, core::ptr::null_mut()),
                || format!("mx_probe: match {match_info:#x} mask {match_mask:#x} refused"),
            )
        }
    })
}

/// `mx_ibuffered(endpoint, *request, *result)`: 1 when an eager send's
/// buffer may be reused (tiny/small at once, medium once copied out), 0
/// for rendezvous sends; other requests: `MX_BAD_REQUEST`.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_ibuffered(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_ibuffered", || {
        let shared = ep_or_return!(endpoint, "mx_ibuffered");
        // SAFETY: forwarded contract.
        let id = match unsafe { req_of(&shared, "mx_ibuffered", request) } {
            Ok(id) => id,
            Err(e) => return e,
        };
        check_result_ptr!(shared, result, "mx_ibuffered");
        match shared.ep.poll_with(|c| c.ibuffered(id)) {
            Ok(b) => {
                // SAFETY: checked non-NULL.
                unsafe { put(result, u32::from(b)) };
                MxReturn::SUCCESS
            }
            Err(e) => shared.fail(MxReturn::of(e), "mx_ibuffered: not a send request"),
        }
    })
}

/// `mx_context(*request, **context)`: the context given when the request
/// was posted (the request names its endpoint, see [`super::handle`]).
///
/// # Safety
/// `request` NULL or readable; `context` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_context(
    request: *mut MxRequestPtr,
    context: *mut *mut c_void,
) -> MxReturn {
    ffi_guard("mx_context", || {
        if let Err(e) = check_initialized("mx_context") {
            return e;
        }
        if request.is_null() {
            return error(MxReturn::BAD_REQUEST, "mx_context: NULL request pointer");
        }
        if context.is_null() {
            return error(MxReturn::BAD_PARAM_VAL, "mx_context: NULL context pointer");
        }
        // SAFETY: checked non-NULL, readable per the contract.
        let req = unsafe { super::common::get(request) };
        let Some((slot, id)) = split_req(req) else {
            return error(MxReturn::BAD_REQUEST, "mx_context: not a request");
        };
        let Some(shared) = handle::by_slot(slot) else {
            return error(
                MxReturn::BAD_REQUEST,
                "mx_context: request of a closed endpoint",
            );
        };
        if let Err(e) = not_in_handler(&shared, "mx_context") {
            return e;
        }
        let r = shared.ep.with_core(|c| c.context(id));
        match r {
            Ok(v) => {
                // SAFETY: checked non-NULL.
                unsafe { put(context, v as usize as *mut c_void) };
                MxReturn::SUCCESS
            }
            Err(e) => shared.fail(MxReturn::of(e), "mx_context: unknown request"),
        }
    })
}
