//! Endpoints: `mx_open_endpoint`, `mx_close_endpoint`, `mx_wakeup`,
//! progression control, `mx_progress`, `mx_set_request_timeout` and
//! `mx_register_unexp_handler`.

use core::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::{Endpoint, OpenOptions};

use super::common::{get, get_ep, in_handler, not_in_handler, put, CUnexp};
use super::error::{current_handler, error_with};
use super::guard::ffi_guard;
use super::handle::{self, EpShared};
use super::init::check_initialized;
use super::segbuf::SegBuf;
use super::symver::mx_symbol_version;
use super::types::{
    MxEndpointPtr, MxErrorHandler, MxParam, MxParamKey, MxRequestPtr, MxReturn, MxUnexpHandler,
    MX_ANY_ENDPOINT, MX_ANY_NIC, MX_CONTEXT_ID_BITS_MAX,
};

/// How long `mx_close_endpoint` keeps making progress so that the backend
/// consumes what was posted and the partners ack what we sent.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// What the parameter list of `mx_open_endpoint` (or
/// `mx_raw_open_endpoint`) asked for.
#[derive(Default)]
pub(crate) struct Params {
    pub(crate) handler: Option<MxErrorHandler>,
    pub(crate) context_id: Option<(u8, u8)>,
}

/// Parse `params[..count]`.
///
/// # Safety
/// `params` must be NULL or point to `count` readable `mx_param_t`.
pub(crate) unsafe fn parse_params(
    params: *const MxParam,
    count: u32,
) -> Result<Params, (MxReturn, String)> {
    let mut out = Params::default();
    if count == 0 {
        return Ok(out);
    }
    if params.is_null() {
        return Err((
            MxReturn::BAD_PARAM_LIST,
            format!("{count} parameters but a NULL list"),
        ));
    }
    for i in 0..count as usize {
        // SAFETY: `i < count`, readable per the contract.
        let p = unsafe { get(params.add(i)) };
        match p.key {
            MxParamKey::ERROR_HANDLER => {
                // SAFETY: the key says `error_handler` is the member set; an
                // `Option<fn>` accepts NULL and any non-NULL pointer.
                out.handler = Some(unsafe { p.val.error_handler });
            }
            MxParamKey::UNEXP_QUEUE_MAX => {}
            MxParamKey::CONTEXT_ID => {
                // SAFETY: the key says `context_id` is the member set; two
                // plain bytes.
                let c = unsafe { p.val.context_id };
                if u32::from(c.bits) > MX_CONTEXT_ID_BITS_MAX
                    || u32::from(c.bits) + u32::from(c.shift) > 64
                {
                    return Err((
                        MxReturn::BAD_PARAM_VAL,
                        format!(
                            "context id of {} bits at shift {} (at most {MX_CONTEXT_ID_BITS_MAX} \
                             bits, bits + shift <= 64)",
                            c.bits, c.shift
                        ),
                    ));
                }
                out.context_id = Some((c.bits, c.shift));
            }
            k => {
                return Err((
                    MxReturn::BAD_PARAM_NAME,
                    format!("unknown parameter key {}", k.0),
                ))
            }
        }
    }
    Ok(out)
}

/// `mx_open_endpoint(board, endpoint_id, key, params, count, *endpoint)`.
///
/// `board` is 0 or `MX_ANY_NIC` (the backend has one board), else
/// `MX_BOARD_UNKNOWN`; `endpoint_id` an id or `MX_ANY_ENDPOINT` (first free
/// wins); a taken id gives `MX_BUSY`, an id the board does not have
/// `MX_BAD_ENDPOINT_ID`, no reachable backend `MX_NO_DEV`. Parameters:
/// `MX_PARAM_ERROR_HANDLER` (this endpoint's handler, also used for this
/// call's own failures once parsed), `MX_PARAM_UNEXP_QUEUE_MAX` (ignored),
/// `MX_PARAM_CONTEXT_ID` (bits <= 16, bits + shift <= 64, else
/// `MX_BAD_PARAM_VAL`). The MX environment variables (`MX_DISABLE_SELF`,
/// `MX_DISABLE_SHMEM`, `MX_ZOMBIE_SEND`, `MX_IMM_ACK`, `MX_MAX_RETRIES`,
/// `MX_VERBOSE`, ...) are read here, through
/// [`OpenOptions::default`](crate::endpoint::OpenOptions) (see
/// `crate::env` and docs/C-ABI.md).
///
/// # Safety
/// `params` NULL or `count` readable entries; `endpoint` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_open_endpoint(
    board_number: u32,
    endpoint_id: u32,
    endpoint_key: u32,
    params_array: *mut MxParam,
    params_count: u32,
    endpoint: *mut MxEndpointPtr,
) -> MxReturn {
    ffi_guard("mx_open_endpoint", || {
        if let Err(e) = check_initialized("mx_open_endpoint") {
            return e;
        }
        // SAFETY: forwarded contract.
        let params = match unsafe { parse_params(params_array, params_count) } {
            Ok(p) => p,
            Err((ret, msg)) => return super::error(ret, &format!("mx_open_endpoint: {msg}")),
        };
        let handler = params.handler;
        let fail = |ret: MxReturn, msg: &str| {
            error_with(
                handler.unwrap_or_else(current_handler),
                ret,
                &format!("mx_open_endpoint: {msg}"),
            )
        };
        if endpoint.is_null() {
            return fail(MxReturn::BAD_PARAM_VAL, "NULL endpoint pointer");
        }
        if board_number != 0 && board_number != MX_ANY_NIC {
            return fail(MxReturn::BOARD_UNKNOWN, &format!("no board {board_number}"));
        }
        let id = if endpoint_id == MX_ANY_ENDPOINT {
            None
        } else {
            match u8::try_from(endpoint_id) {
                Ok(id) => Some(id),
                Err(_) => {
                    return fail(
                        MxReturn::BAD_ENDPOINT_ID,
                        &format!("no endpoint id {endpoint_id}"),
                    )
                }
            }
        };
        let opts = OpenOptions {
            endpoint: id,
            key: endpoint_key,
            context_id: params.context_id,
            ..OpenOptions::default()
        };
        let ep = match Endpoint::<SegBuf>::open(None, &opts) {
            Ok(ep) => ep,
            Err(r) => {
                return fail(
                    MxReturn::of(r),
                    &format!("cannot open endpoint {endpoint_id:#x} of board {board_number:#x}"),
                )
            }
        };
        let Some(shared) = handle::register(|slot| EpShared {
            ep,
            slot,
            handler,
            closed: Default::default(),
        }) else {
            return fail(MxReturn::NO_RESOURCES, "too many open endpoints");
        };
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { put(endpoint, shared.as_ptr()) };
        MxReturn::SUCCESS
    })
}
mx_symbol_version!("mx_open_endpoint", "MX_0.9");

/// Close `shared`: end its waits, flush, forget it.
pub(crate) fn close(shared: &Arc<EpShared>) {
    shared.closed.store(true, Ordering::Release);
    handle::unregister(shared);
    shared.ep.shutdown(CLOSE_LINGER);
}

/// `mx_close_endpoint(endpoint)`: every thread blocked on the endpoint
/// returns (as after `mx_wakeup`), explicit acks go out, the backend gets
/// up to [`CLOSE_LINGER`] to consume what was posted, then the endpoint is
/// closed; its handles, requests and addresses become invalid. Inside the
/// endpoint's unexpected handler: `MX_CLOSE_IN_HANDLER`.
#[no_mangle]
pub extern "C" fn mx_close_endpoint(endpoint: MxEndpointPtr) -> MxReturn {
    ffi_guard("mx_close_endpoint", || {
        let shared = match get_ep(endpoint, "mx_close_endpoint") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if in_handler(shared.slot) {
            return shared.fail(
                MxReturn::CLOSE_IN_HANDLER,
                "mx_close_endpoint: called from the endpoint's unexpected handler",
            );
        }
        close(&shared);
        MxReturn::SUCCESS
    })
}

/// `mx_wakeup(endpoint)`: every thread blocked in `mx_wait`,
/// `mx_wait_any`, `mx_peek`, `mx_probe` or `mx_connect` on the endpoint
/// returns now (result 0; `mx_connect` with `MX_TIMEOUT`).
#[no_mangle]
pub extern "C" fn mx_wakeup(endpoint: MxEndpointPtr) -> MxReturn {
    ffi_guard("mx_wakeup", || {
        let shared = match get_ep(endpoint, "mx_wakeup") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if in_handler(shared.slot) {
            shared.ep.wakeup_locked();
        } else {
            shared.ep.wakeup();
        }
        MxReturn::SUCCESS
    })
}

/// `mx_disable_progression(endpoint)`: as Open-MX, no progress takes
/// incoming events from now on (no unexpected handler runs, on any
/// thread; completions wait too) until `mx_reenable_progression`; sends
/// still go out. Waits for a handler running on another thread to return.
/// Does not nest.
#[no_mangle]
pub extern "C" fn mx_disable_progression(endpoint: MxEndpointPtr) -> MxReturn {
    ffi_guard("mx_disable_progression", || {
        match get_ep(endpoint, "mx_disable_progression") {
            Ok(s) => s.ep.disable_progression(in_handler(s.slot)),
            Err(e) => return e,
        }
        MxReturn::SUCCESS
    })
}

/// `mx_reenable_progression(endpoint)`: undo `mx_disable_progression`.
#[no_mangle]
pub extern "C" fn mx_reenable_progression(endpoint: MxEndpointPtr) -> MxReturn {
    ffi_guard("mx_reenable_progression", || {
        match get_ep(endpoint, "mx_reenable_progression") {
            Ok(s) => s.ep.reenable_progression(),
            Err(e) => return e,
        }
        MxReturn::SUCCESS
    })
}

/// `mx_progress(endpoint)`: make progress once without blocking (a no-op
/// inside the endpoint's unexpected handler, where progression is off).
#[no_mangle]
pub extern "C" fn mx_progress(endpoint: MxEndpointPtr) -> MxReturn {
    ffi_guard("mx_progress", || {
        let shared = match get_ep(endpoint, "mx_progress") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if !in_handler(shared.slot) {
            shared.ep.progress();
        }
        MxReturn::SUCCESS
    })
}

/// `mx_set_request_timeout(endpoint, request_or_NULL, ms)`: the resend
/// limit and pull timeout of one request, or with NULL the endpoint's
/// default for later requests (0 = no limit).
#[no_mangle]
pub extern "C" fn mx_set_request_timeout(
    endpoint: MxEndpointPtr,
    request: MxRequestPtr,
    milli_seconds: u32,
) -> MxReturn {
    ffi_guard("mx_set_request_timeout", || {
        let shared = match get_ep(endpoint, "mx_set_request_timeout") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if let Err(e) = not_in_handler(&shared, "mx_set_request_timeout") {
            return e;
        }
        let req = if request.is_null() {
            None
        } else {
            match shared.req_id(request) {
                Some(id) => Some(id),
                None => {
                    return shared.fail(
                        MxReturn::BAD_REQUEST,
                        "mx_set_request_timeout: not a request of this endpoint",
                    )
                }
            }
        };
        match shared
            .ep
            .with_core(|c| c.set_request_timeout(req, milli_seconds))
        {
            Ok(()) => MxReturn::SUCCESS,
            Err(r) => shared.fail(
                MxReturn::of(r),
                "mx_set_request_timeout: unknown or finished request",
            ),
        }
    })
}

/// `mx_register_unexp_handler(endpoint, handler, context)`: call `handler`
/// for each message that matches no posted receive, before it is queued
/// as unexpected (NULL removes it). It runs with the endpoint locked, from
/// whichever thread makes progress (possibly the background progression
/// thread). Inside it, on this endpoint: `mx_irecv` posts a receive the
/// message may match on `MX_RECV_CONTINUE`; `mx_decompose_endpoint_addr`,
/// `mx_get_endpoint_addr_context`, `mx_progress` (no-op), `mx_wakeup` and
/// the progression calls work; `mx_close_endpoint` fails with
/// `MX_CLOSE_IN_HANDLER`; anything else fails with `MX_FAILURE`.
/// `data_if_available` is read-only.
#[no_mangle]
pub extern "C" fn mx_register_unexp_handler(
    endpoint: MxEndpointPtr,
    handler: MxUnexpHandler,
    context: *mut c_void,
) -> MxReturn {
    ffi_guard("mx_register_unexp_handler", || {
        let shared = match get_ep(endpoint, "mx_register_unexp_handler") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if let Err(e) = not_in_handler(&shared, "mx_register_unexp_handler") {
            return e;
        }
        let slot = shared.slot;
        shared.ep.with_core(|c| {
            c.set_unexp_handler(handler.map(|func| {
                Box::new(CUnexp {
                    func,
                    ctx: context,
                    slot,
                }) as Box<_>
            }));
        });
        MxReturn::SUCCESS
    })
}

/// Close every open endpoint (`mx_finalize`).
pub(crate) fn close_all() {
    for ep in handle::all() {
        close(&ep);
    }
}
