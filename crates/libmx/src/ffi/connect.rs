//! Connections and addresses: `mx_connect`, `mx_iconnect`,
//! `mx_disconnect`, `mx_decompose_endpoint_addr(2)`,
//! `mx_get_endpoint_addr`, `mx_set/get_endpoint_addr_context`.

use core::ffi::c_void;
use std::sync::Arc;

use crate::core::{EndpointAddr, PartnerInfo};
use crate::endpoint::frontend_error;

use super::common::{get_ep, in_handler, not_in_handler, put, timeout_ms, with_handler_ctx};
use super::error::error;
use super::guard::ffi_guard;
use super::handle::{self, pack_addr, split_addr, EpShared};
use super::init::check_initialized;
use super::symver::mx_symbol_version;
use super::types::{MxEndpointAddr, MxEndpointPtr, MxRequestPtr, MxReturn};

fn endpoint_id(shared: &EpShared, func: &str, eid: u32) -> Result<u8, MxReturn> {
    u8::try_from(eid).map_err(|_| {
        shared.fail(
            MxReturn::BAD_ENDPOINT_ID,
            &format!("{func}: no endpoint id {eid}"),
        )
    })
}

/// `mx_connect(endpoint, nic_id, endpoint_id, key, timeout_ms, *addr)`:
/// connect and wait up to `timeout_ms` (`MX_INFINITE`: forever). Unknown
/// NIC: `MX_NIC_NOT_FOUND`; wrong key: `MX_BAD_CONNECTION_KEY`; no such
/// endpoint id: `MX_BAD_ENDPOINT_ID`; closed endpoint: `MX_CONNECTION_FAILED`;
/// timeout or `mx_wakeup`: `MX_TIMEOUT`. Connecting to oneself succeeds at
/// once.
///
/// # Safety
/// `addr` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_connect(
    endpoint: MxEndpointPtr,
    nic_id: u64,
    endpoint_id_: u32,
    key: u32,
    timeout: u32,
    addr: *mut MxEndpointAddr,
) -> MxReturn {
    ffi_guard("mx_connect", || {
        let shared = match get_ep(endpoint, "mx_connect") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if addr.is_null() {
            return shared.fail(MxReturn::BAD_ADDR_LIST, "mx_connect: NULL address pointer");
        }
        if let Err(e) = not_in_handler(&shared, "mx_connect") {
            return e;
        }
        let eid = match endpoint_id(&shared, "mx_connect", endpoint_id_) {
            Ok(e) => e,
            Err(e) => return e,
        };
        match shared.ep.connect(nic_id, eid, key, timeout_ms(timeout)) {
            Ok(a) => {
                // SAFETY: checked non-NULL, writable per the contract.
                unsafe { put(addr, pack_addr(shared.slot, Some(eid), a)) };
                MxReturn::SUCCESS
            }
            Err(r) => shared.fail(
                MxReturn::of(r),
                &format!("mx_connect: to endpoint {endpoint_id_} of NIC {nic_id:#014x}"),
            ),
        }
    })
}

/// `mx_iconnect(endpoint, nic_id, endpoint_id, key, match, context,
/// *request)`: start connecting; the request completes (test, wait,
/// test_any, wait_any, peek) with the new address as `status.source` and
/// the given match and context, and can be cancelled while unanswered.
///
/// # Safety
/// `request` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_iconnect(
    endpoint: MxEndpointPtr,
    nic_id: u64,
    endpoint_id_: u32,
    key: u32,
    match_info: u64,
    context: *mut c_void,
    request: *mut MxRequestPtr,
) -> MxReturn {
    ffi_guard("mx_iconnect", || {
        let shared = match get_ep(endpoint, "mx_iconnect") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if request.is_null() {
            return shared.fail(MxReturn::BAD_REQUEST, "mx_iconnect: NULL request pointer");
        }
        if let Err(e) = not_in_handler(&shared, "mx_iconnect") {
            return e;
        }
        let eid = match endpoint_id(&shared, "mx_iconnect", endpoint_id_) {
            Ok(e) => e,
            Err(e) => return e,
        };
        let peer = match shared.ep.frontend().peer_by_nic_id(nic_id) {
            Ok(p) => p,
            Err(e) => {
                return shared.fail(
                    MxReturn(frontend_error(&e) as u32),
                    &format!("mx_iconnect: NIC {nic_id:#014x}"),
                )
            }
        };
        let ctx = context as usize as u64;
        let id = shared
            .ep
            .with_core(|c| c.connect(peer.index, eid, nic_id, key, match_info, ctx));
        match shared.req_handle(id) {
            Some(h) => {
                // SAFETY: checked non-NULL.
                unsafe { put(request, h) };
                MxReturn::SUCCESS
            }
            None => {
                let _ = shared.ep.with_core(|c| c.cancel(id));
                shared.fail(MxReturn::NO_RESOURCES, "mx_iconnect: too many requests")
            }
        }
    })
}

/// `mx_disconnect(endpoint, addr)`: drop the partner's state; its pending
/// requests fail and every copy of the address becomes invalid.
#[no_mangle]
pub extern "C" fn mx_disconnect(endpoint: MxEndpointPtr, addr: MxEndpointAddr) -> MxReturn {
    ffi_guard("mx_disconnect", || {
        let shared = match get_ep(endpoint, "mx_disconnect") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if let Err(e) = not_in_handler(&shared, "mx_disconnect") {
            return e;
        }
        let Some(a) = shared.unpack_addr(&addr) else {
            return shared.fail(
                MxReturn::BAD_ADDR_LIST,
                "mx_disconnect: not an address of this endpoint",
            );
        };
        match shared.ep.with_core(|c| c.disconnect(a)) {
            Ok(()) => MxReturn::SUCCESS,
            Err(r) => shared.fail(MxReturn::of(r), "mx_disconnect: unknown address"),
        }
    })
}

/// The endpoint an address belongs to and what it names (also from inside
/// that endpoint's unexpected handler).
fn resolve(
    func: &str,
    addr: &MxEndpointAddr,
) -> Result<(Arc<EpShared>, EndpointAddr, PartnerInfo), MxReturn> {
    check_initialized(func)?;
    let bad = || {
        error(
            MxReturn::BAD_ADDR_LIST,
            &format!("{func}: not a valid address"),
        )
    };
    let (slot, a) = split_addr(addr).ok_or_else(bad)?;
    let shared = handle::by_slot(slot).ok_or_else(bad)?;
    let info = match with_handler_ctx(slot, (), |h, ()| h.partner_info(a)) {
        Ok(i) => i,
        Err(()) => shared.ep.with_core(|c| c.partner_info(a)),
    };
    match info {
        Some(i) => Ok((shared, a, i)),
        None => Err(shared.fail(
            MxReturn::BAD_ADDR_LIST,
            &format!("{func}: address of a partner that is gone"),
        )),
    }
}

/// The body of `mx_decompose_endpoint_addr` and its `2` variant (which
/// also asks for the session).
///
/// # Safety
/// `nic_id`, `endpoint_id` and `session` must each be NULL or writable
/// (NULL `nic_id` or `endpoint_id` is refused; NULL `session` is skipped).
unsafe fn decompose(
    func: &str,
    addr: MxEndpointAddr,
    nic_id: *mut u64,
    endpoint_id: *mut u32,
    session: *mut u32,
) -> MxReturn {
    if let Err(e) = check_initialized(func) {
        return e;
    }
    if nic_id.is_null() || endpoint_id.is_null() {
        return error(
            MxReturn::BAD_PARAM_VAL,
            &format!("{func}: NULL out pointer"),
        );
    }
    let (shared, a, info) = match resolve(func, &addr) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let nic = match info.nic_id {
        Some(n) => n,
        // A partner that connected to us first: ask the backend once.
        None => match shared.ep.frontend().peer_by_index(info.peer) {
            Ok(p) => {
                if !in_handler(shared.slot) {
                    let _ = shared.ep.with_core(|c| c.set_partner_nic_id(a, p.nic_id));
                }
                p.nic_id
            }
            Err(e) => {
                return shared.fail(
                    MxReturn(frontend_error(&e) as u32),
                    &format!("{func}: peer {} unknown to the backend", info.peer),
                )
            }
        },
    };
    // SAFETY: checked non-NULL, writable per the contract.
    unsafe {
        put(nic_id, nic);
        put(endpoint_id, u32::from(info.endpoint));
        if !session.is_null() {
            put(session, addr.session());
        }
    }
    MxReturn::SUCCESS
}

/// `mx_decompose_endpoint_addr(addr, *nic_id, *endpoint_id)`.
///
/// # Safety
/// Out pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_decompose_endpoint_addr(
    endpoint_addr: MxEndpointAddr,
    nic_id: *mut u64,
    endpoint_id_: *mut u32,
) -> MxReturn {
    ffi_guard("mx_decompose_endpoint_addr", || {
        // SAFETY: forwarded contract.
        unsafe {
            decompose(
                "mx_decompose_endpoint_addr",
                endpoint_addr,
                nic_id,
                endpoint_id_,
                core::ptr::null_mut(),
            )
        }
    })
}
mx_symbol_version!("mx_decompose_endpoint_addr", "MX_0.9");

/// `mx_decompose_endpoint_addr2(addr, *nic_id, *endpoint_id, *session)`:
/// also the remote endpoint's session id (address bytes 12..16).
///
/// # Safety
/// Out pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_decompose_endpoint_addr2(
    endpoint_addr: MxEndpointAddr,
    nic_id: *mut u64,
    endpoint_id_: *mut u32,
    session_id: *mut u32,
) -> MxReturn {
    ffi_guard("mx_decompose_endpoint_addr2", || {
        if session_id.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx_decompose_endpoint_addr2: NULL session pointer",
            );
        }
        // SAFETY: forwarded contract.
        unsafe {
            decompose(
                "mx_decompose_endpoint_addr2",
                endpoint_addr,
                nic_id,
                endpoint_id_,
                session_id,
            )
        }
    })
}

/// `mx_get_endpoint_addr(endpoint, *addr)`: our own address (sending to it
/// stays inside the library unless `MX_DISABLE_SELF` is set).
///
/// # Safety
/// `addr` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_get_endpoint_addr(
    endpoint: MxEndpointPtr,
    endpoint_addr: *mut MxEndpointAddr,
) -> MxReturn {
    ffi_guard("mx_get_endpoint_addr", || {
        let shared = match get_ep(endpoint, "mx_get_endpoint_addr") {
            Ok(s) => s,
            Err(e) => return e,
        };
        if endpoint_addr.is_null() {
            return shared.fail(
                MxReturn::BAD_ADDR_LIST,
                "mx_get_endpoint_addr: NULL address pointer",
            );
        }
        if let Err(e) = not_in_handler(&shared, "mx_get_endpoint_addr") {
            return e;
        }
        let a = shared
            .ep
            .with_core(|c| pack_addr(shared.slot, Some(c.config().endpoint), c.local_addr()));
        // SAFETY: checked non-NULL.
        unsafe { put(endpoint_addr, a) };
        MxReturn::SUCCESS
    })
}

/// `mx_set_endpoint_addr_context(addr, context)`: the partner's
/// application pointer (shared by every copy of the address).
#[no_mangle]
pub extern "C" fn mx_set_endpoint_addr_context(
    endpoint_addr: MxEndpointAddr,
    context: *mut c_void,
) -> MxReturn {
    ffi_guard("mx_set_endpoint_addr_context", || {
        let (shared, a, _) = match resolve("mx_set_endpoint_addr_context", &endpoint_addr) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Err(e) = not_in_handler(&shared, "mx_set_endpoint_addr_context") {
            return e;
        }
        match shared
            .ep
            .with_core(|c| c.set_addr_context(a, context as usize as u64))
        {
            Ok(()) => MxReturn::SUCCESS,
            Err(r) => shared.fail(
                MxReturn::of(r),
                "mx_set_endpoint_addr_context: unknown address",
            ),
        }
    })
}

/// `mx_get_endpoint_addr_context(addr, **context)`: NULL until set.
///
/// # Safety
/// `context` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_get_endpoint_addr_context(
    endpoint_addr: MxEndpointAddr,
    context: *mut *mut c_void,
) -> MxReturn {
    ffi_guard("mx_get_endpoint_addr_context", || {
        if context.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx_get_endpoint_addr_context: NULL context pointer",
            );
        }
        let (_, _, info) = match resolve("mx_get_endpoint_addr_context", &endpoint_addr) {
            Ok(x) => x,
            Err(e) => return e,
        };
        // SAFETY: checked non-NULL.
        unsafe { put(context, info.context as usize as *mut c_void) };
        MxReturn::SUCCESS
    })
}
