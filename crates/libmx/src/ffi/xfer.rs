//! Posting and withdrawing: `mx_isend`, `mx_issend`, `mx_irecv`,
//! `mx_cancel`, `mx_forget`.

use core::ffi::c_void;

use crate::core::{MsgBuf, ReqId};

use super::common::{get, get_ep, not_in_handler, put, with_handler_ctx};
use super::guard::ffi_guard;
use super::handle::EpShared;
use super::segbuf::SegBuf;
use super::types::{MxEndpointAddr, MxEndpointPtr, MxRequestPtr, MxReturn, MxSegment};

/// Hand a new request to the application; a core index too large for a
/// handle (16 M live requests) is withdrawn and refused.
///
/// # Safety
/// `request` non-NULL and writable.
unsafe fn hand_out(
    shared: &EpShared,
    func: &str,
    id: ReqId,
    request: *mut MxRequestPtr,
) -> MxReturn {
    match shared.req_handle(id) {
        Some(h) => {
            // SAFETY: per the contract.
            unsafe { put(request, h) };
            MxReturn::SUCCESS
        }
        None => {
            shared.ep.with_core(|c| {
                if c.cancel(id).is_err() {
                    let _ = c.forget(id);
                }
            });
            shared.fail(
                MxReturn::NO_RESOURCES,
                &format!("{func}: too many outstanding requests"),
            )
        }
    }
}

/// The request named by `*request` on `shared`, or the error to return.
///
/// # Safety
/// `request` NULL or readable.
pub(crate) unsafe fn req_of(
    shared: &EpShared,
    func: &str,
    request: *const MxRequestPtr,
) -> Result<ReqId, MxReturn> {
    if request.is_null() {
        return Err(shared.fail(
            MxReturn::BAD_REQUEST,
            &format!("{func}: NULL request pointer"),
        ));
    }
    // SAFETY: non-NULL, readable per the contract.
    let r = unsafe { get(request) };
    shared.req_id(r).ok_or_else(|| {
        shared.fail(
            MxReturn::BAD_REQUEST,
            &format!("{func}: not a request of this endpoint"),
        )
    })
}

/// The body of `mx_isend` and `mx_issend` (`synchronous`).
///
/// # Safety
/// `segments` must be NULL or point to `count` readable `mx_segment_t`
/// whose memory stays readable until the send completes, and `request`
/// must be NULL or writable, as `mx_isend` requires of its caller.
#[allow(clippy::too_many_arguments)]
unsafe fn send(
    func: &str,
    synchronous: bool,
    endpoint: MxEndpointPtr,
    segments: *mut MxSegment,
    count: u32,
    dest: MxEndpointAddr,
    match_info: u64,
    context: *mut c_void,
    request: *mut MxRequestPtr,
) -> MxReturn {
    let shared = match get_ep(endpoint, func) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if request.is_null() {
        return shared.fail(
            MxReturn::BAD_REQUEST,
            &format!("{func}: NULL request pointer"),
        );
    }
    if let Err(e) = not_in_handler(&shared, func) {
        return e;
    }
    // SAFETY: forwarded contract (segments valid until completion).
    let buf = match unsafe { SegBuf::from_raw(segments, count) } {
        Ok(b) => b,
        Err(e) => return shared.fail(e, &format!("{func}: bad segment list ({count} segments)")),
    };
    let Some(dest) = shared.unpack_addr(&dest) else {
        return shared.fail(
            MxReturn::BAD_ADDR_LIST,
            &format!("{func}: not an address of this endpoint"),
        );
    };
    let len = buf.len();
    match shared
        .ep
        .isend(dest, buf, match_info, context as usize as u64, synchronous)
    {
        // SAFETY: checked non-NULL above.
        Ok(id) => unsafe { hand_out(&shared, func, id, request) },
        Err(rej) => shared.fail(
            MxReturn::of(rej.error),
            &format!("{func}: send of {len} bytes refused"),
        ),
    }
}

/// `mx_isend(endpoint, segments, count, dest, match, context, *request)`:
/// post a send (eager up to the rendezvous threshold, else rendezvous).
/// The segments' memory must stay valid until the request completes.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_isend(
    endpoint: MxEndpointPtr,
    segments_list: *mut MxSegment,
    segments_count: u32,
    dest_endpoint: MxEndpointAddr,
    match_info: u64,
    context: *mut c_void,
    request: *mut MxRequestPtr,
) -> MxReturn {
    ffi_guard("mx_isend", || {
        // SAFETY: forwarded contract.
        unsafe {
            send(
                "mx_isend",
                false,
                endpoint,
                segments_list,
                segments_count,
                dest_endpoint,
                match_info,
                context,
                request,
            )
        }
    })
}

/// `mx_issend(...)`: a synchronous send, complete only once the receiver
/// matched it and took the data (even for 0 bytes).
///
/// # Safety
/// As [`mx_isend`].
#[no_mangle]
pub unsafe extern "C" fn mx_issend(
    endpoint: MxEndpointPtr,
    segments_list: *mut MxSegment,
    segments_count: u32,
    dest_endpoint: MxEndpointAddr,
    match_info: u64,
    context: *mut c_void,
    request: *mut MxRequestPtr,
) -> MxReturn {
    ffi_guard("mx_issend", || {
        // SAFETY: forwarded contract.
        unsafe {
            send(
                "mx_issend",
                true,
                endpoint,
                segments_list,
                segments_count,
                dest_endpoint,
                match_info,
                context,
                request,
            )
        }
    })
}

/// `mx_irecv(endpoint, segments, count, match, mask, context, *request)`:
/// post a receive; the unexpected queue is searched first. `match & ~mask`
/// must be 0 (`MX_BAD_MATCH_MASK`); with context ids the mask must cover
/// the context bits (`MX_BAD_MATCHING_FOR_CONTEXT_ID_MASK`). Also works
/// inside the endpoint's unexpected handler.
///
/// # Safety
/// The MX contract on every pointer argument.
#[no_mangle]
pub unsafe extern "C" fn mx_irecv(
    endpoint: MxEndpointPtr,
    segments_list: *mut MxSegment,
    segments_count: u32,
    match_info: u64,
    match_mask: u64,
    context: *mut c_void,
    request: *mut MxRequestPtr,
) -> MxReturn {
    ffi_guard("mx_irecv", || {
        let shared = match get_ep(endpoint, "mx_irecv") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if request.is_null() {
            return shared.fail(MxReturn::BAD_REQUEST, "mx_irecv: NULL request pointer");
        }
        // SAFETY: forwarded contract (segments valid until completion).
        let buf = match unsafe { SegBuf::from_raw(segments_list, segments_count) } {
            Ok(b) => b,
            Err(e) => {
                return shared.fail(
                    e,
                    &format!("mx_irecv: bad segment list ({segments_count} segments)"),
                )
            }
        };
        let ctx = context as usize as u64;
        let r = match with_handler_ctx(shared.slot, buf, |h, buf| {
            h.irecv(buf, match_info, match_mask, ctx)
        }) {
            Ok(r) => r,
            Err(buf) => shared.ep.irecv(buf, match_info, match_mask, ctx),
        };
        match r {
            // SAFETY: checked non-NULL above.
            Ok(id) => unsafe { hand_out(&shared, "mx_irecv", id, request) },
            Err(rej) => shared.fail(
                MxReturn::of(rej.error),
                &format!("mx_irecv: match {match_info:#x} mask {match_mask:#x} refused"),
            ),
        }
    })
}

/// `mx_cancel(endpoint, *request, *result)`: withdraw an unmatched receive
/// or an unanswered `mx_iconnect` (result 1, the request is freed and
/// `*request` set to NULL, as Open-MX); too late (matched, answered,
/// finished): result 0; a send: `MX_BAD_REQUEST` (MX and Open-MX cannot
/// cancel sends; the request stays valid).
///
/// # Safety
/// `request` and `result` NULL or valid (readable and writable).
#[no_mangle]
pub unsafe extern "C" fn mx_cancel(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
    result: *mut u32,
) -> MxReturn {
    ffi_guard("mx_cancel", || {
        let shared = match get_ep(endpoint, "mx_cancel") {
            Ok(s) => s,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let id = match unsafe { req_of(&shared, "mx_cancel", request) } {
            Ok(id) => id,
            Err(e) => return e,
        };
        if result.is_null() {
            return shared.fail(MxReturn::BAD_PARAM_VAL, "mx_cancel: NULL result pointer");
        }
        if let Err(e) = not_in_handler(&shared, "mx_cancel") {
            return e;
        }
        match shared.ep.with_core(|c| c.cancel(id).map(|r| r.as_result())) {
            Ok(n) => {
                // SAFETY: checked non-NULL; `request` was read above, so
                // it is valid for writes too per the contract.
                unsafe {
                    put(result, n);
                    if n == 1 {
                        put(request, core::ptr::null_mut());
                    }
                }
                MxReturn::SUCCESS
            }
            Err(r) => shared.fail(
                MxReturn::of(r),
                "mx_cancel: not a receive or connect of this endpoint",
            ),
        }
    })
}

/// `mx_forget(endpoint, *request)`: the request is freed once it completes
/// and never reported (a completion error is not reported either);
/// `*request` is set to NULL, as Open-MX does.
///
/// # Safety
/// `request` NULL or readable and writable.
#[no_mangle]
pub unsafe extern "C" fn mx_forget(
    endpoint: MxEndpointPtr,
    request: *mut MxRequestPtr,
) -> MxReturn {
    ffi_guard("mx_forget", || {
        let shared = match get_ep(endpoint, "mx_forget") {
            Ok(s) => s,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let id = match unsafe { req_of(&shared, "mx_forget", request) } {
            Ok(id) => id,
            Err(e) => return e,
        };
        if let Err(e) = not_in_handler(&shared, "mx_forget") {
            return e;
        }
        match shared.ep.with_core(|c| c.forget(id)) {
            Ok(()) => {
                // SAFETY: `request` was read above and is writable per the
                // contract.
                unsafe { put(request, core::ptr::null_mut()) };
                MxReturn::SUCCESS
            }
            Err(r) => shared.fail(MxReturn::of(r), "mx_forget: unknown request"),
        }
    })
}
