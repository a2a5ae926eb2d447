//! Information and naming: `mx_get_info`, `mx_hostname_to_nic_id`,
//! `mx_nic_id_to_hostname`, `mx_board_number_to_nic_id`,
//! `mx_nic_id_to_board_number`, `mx__get_mapper_state`.
//!
//! The backend has one board, board 0. Calls without an endpoint use a
//! process-wide attachment to the backend (`$MX_BACKEND_SOCKET`, made on
//! first use, re-made if the backend restarted, dropped by `mx_finalize`).
//! Without a reachable backend the NIC count is 0 and look-ups fail with
//! `MX_NO_DEV`.

use core::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex};

use frontend::{Frontend, FrontendError};
use mx_proto::msg::control::{BoardInfo, PeerInfo, COUNTER_LABELS};
use mx_proto::platform::local::LocalTarget;

use crate::core::DEFAULT_RNDV_THRESHOLD;
use crate::endpoint::{frontend_error, Guest};

use super::common::{get, get_ep, put};
use super::error::error;
use super::guard::ffi_guard;
use super::handle::EpShared;
use super::init::check_initialized;
use super::symver::mx_symbol_version;
use super::types::{
    MxEndpointPtr, MxEndptHandle, MxGetInfoKey, MxLineSpeed, MxMapperState, MxNetType, MxReturn,
    MX_MAX_HOSTNAME_LEN, MX_MAX_STR_LEN,
};

static GLOBAL: Mutex<Option<Arc<Frontend<Guest>>>> = Mutex::new(None);

fn global_slot() -> std::sync::MutexGuard<'static, Option<Arc<Frontend<Guest>>>> {
    GLOBAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drop the process-wide attachment (`mx_finalize`).
pub(crate) fn drop_global() {
    global_slot().take();
}

fn global() -> Result<Arc<Frontend<Guest>>, FrontendError> {
    let mut g = global_slot();
    if let Some(f) = g.as_ref() {
        return Ok(f.clone());
    }
    let f = Arc::new(Frontend::<Guest>::attach(&LocalTarget::default())?);
    *g = Some(f.clone());
    Ok(f)
}

/// Run `f` on the endpoint's frontend, or the process-wide one (attached
/// again once if the backend went away since).
fn with_frontend<R>(
    ep: Option<&EpShared>,
    f: impl Fn(&Frontend<Guest>) -> Result<R, FrontendError>,
) -> Result<R, FrontendError> {
    if let Some(ep) = ep {
        return f(ep.ep.frontend());
    }
    match f(&*global()?) {
        Err(FrontendError::Io(_)) => {
            drop_global();
            f(&*global()?)
        }
        r => r,
    }
}

fn board(ep: Option<&EpShared>) -> Result<BoardInfo, FrontendError> {
    with_frontend(ep, |f| Ok(f.board().clone()))
}

/// A failure through the endpoint's handler, else the process-wide one.
fn fail(ep: Option<&EpShared>, ret: MxReturn, msg: &str) -> MxReturn {
    match ep {
        Some(e) => e.fail(ret, msg),
        None => error(ret, msg),
    }
}

fn fe_fail(ep: Option<&EpShared>, e: &FrontendError, msg: &str) -> MxReturn {
    fail(
        ep,
        MxReturn(frontend_error(e) as u32),
        &format!("{msg}: {e}"),
    )
}

/// Write `s` as a NUL-terminated string of at most `cap` bytes (truncated).
///
/// # Safety
/// `out` valid for `cap` bytes of writes, `cap > 0`.
unsafe fn put_str(out: *mut u8, cap: usize, s: &str) {
    let n = s.len().min(cap - 1);
    // SAFETY: `n + 1 <= cap` bytes, writable per the contract.
    unsafe {
        core::ptr::copy_nonoverlapping(s.as_ptr(), out, n);
        out.add(n).write(0);
    }
}

/// Counter values of the board: the sum over every open endpoint of the
/// backend (its counters are per endpoint), saturated to 32 bits.
fn board_counters(ep: Option<&EpShared>, max_endpoints: u32) -> Result<Vec<u32>, FrontendError> {
    with_frontend(ep, |f| {
        let mut sum = vec![0u64; COUNTER_LABELS.len()];
        for id in 0..max_endpoints.min(256) {
            match f.counters(id as u8) {
                Ok(v) => {
                    for (s, x) in sum.iter_mut().zip(v) {
                        *s = s.saturating_add(x);
                    }
                }
                Err(FrontendError::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sum
            .into_iter()
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
            .collect())
    })
}

/// `mx_get_info(endpoint_or_NULL, key, in, in_len, out, out_len)`.
///
/// | key | out |
/// |-----|-----|
/// | `MX_NIC_COUNT` | u32: 1 with a reachable backend, else 0 |
/// | `MX_NIC_IDS` | u64 × (count + 1), 0-terminated (`out_len >= 8 * (count + 1)`) |
/// | `MX_MAX_NATIVE_ENDPOINTS` | u32: the board's endpoint count |
/// | `MX_NATIVE_REQUESTS` | u32: `UINT32_MAX` (no fixed limit) |
/// | `MX_COUNTERS_COUNT` | u32 |
/// | `MX_COUNTERS_LABELS` | count × 128-byte strings |
/// | `MX_COUNTERS_VALUES` | u32 × count (board totals) |
/// | `MX_PRODUCT_CODE`, `MX_PART_NUMBER`, `MX_SERIAL_NUMBER` | string (at most `out_len` bytes with the NUL) |
/// | `MX_PORT_COUNT` | u32: 1 |
/// | `MX_PIO_SEND_MAX` | u32: 128 |
/// | `MX_COPY_SEND_MAX` | u32: the rendezvous threshold |
/// | `MX_NUMA_NODE` | u32: 0 |
/// | `MX_NET_TYPE` | u32: `MX_NET_ETHER` |
/// | `MX_LINE_SPEED` | u32: `MX_SPEED_OPEN_MX` |
///
/// For per-board keys `in` may hold a u32 board number (must be 0, else
/// `MX_BOARD_UNKNOWN`). NULL `out`: `MX_BAD_INFO_VAL`; `out_len` too
/// small: `MX_BAD_INFO_LENGTH`; other keys: `MX_BAD_INFO_KEY`.
///
/// # Safety
/// `in_val` NULL or `in_len` readable bytes; `out_val` NULL or `out_len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_get_info(
    endpoint: MxEndpointPtr,
    key: MxGetInfoKey,
    in_val: *mut c_void,
    in_len: u32,
    out_val: *mut c_void,
    out_len: u32,
) -> MxReturn {
    ffi_guard("mx_get_info", || {
        if let Err(e) = check_initialized("mx_get_info") {
            return e;
        }
        let shared = if endpoint.is_null() {
            None
        } else {
            match get_ep(endpoint, "mx_get_info") {
                Ok(s) => Some(s),
                Err(e) => return e,
            }
        };
        let ep = shared.as_deref();
        if out_val.is_null() {
            return fail(ep, MxReturn::BAD_INFO_VAL, "mx_get_info: NULL output");
        }
        if !in_val.is_null() && in_len >= 4 {
            // SAFETY: at least 4 readable bytes per the contract.
            let b = unsafe { get(in_val.cast::<u32>()) };
            let per_board = !matches!(key, MxGetInfoKey::NIC_COUNT | MxGetInfoKey::NIC_IDS);
            if per_board && b != 0 {
                return fail(
                    ep,
                    MxReturn::BOARD_UNKNOWN,
                    &format!("mx_get_info: no board {b}"),
                );
            }
        }
        let out = out_val.cast::<u8>();
        let cap = out_len as usize;
        let need = |n: usize| -> Result<(), MxReturn> {
            if cap < n {
                Err(fail(
                    ep,
                    MxReturn::BAD_INFO_LENGTH,
                    &format!("mx_get_info: key {} needs {n} bytes, got {cap}", key.0),
                ))
            } else {
                Ok(())
            }
        };
        let put_u32 = |v: u32| -> MxReturn {
            if let Err(e) = need(4) {
                return e;
            }
            // SAFETY: 4 writable bytes (checked against out_len).
            unsafe { put(out.cast::<u32>(), v) };
            MxReturn::SUCCESS
        };
        let put_string = |s: &str| -> MxReturn {
            if let Err(e) = need(1) {
                return e;
            }
            // SAFETY: `cap >= 1` writable bytes.
            unsafe { put_str(out, cap.min(MX_MAX_STR_LEN), s) };
            MxReturn::SUCCESS
        };
        let board_or = |what: &str| board(ep).map_err(|e| fe_fail(ep, &e, what));
        match key {
            MxGetInfoKey::NIC_COUNT => put_u32(u32::from(board(ep).is_ok())),
            MxGetInfoKey::NIC_IDS => {
                let ids: Vec<u64> = board(ep).map(|b| b.nic_id).into_iter().collect();
                if let Err(e) = need(8 * (ids.len() + 1)) {
                    return e;
                }
                for (i, id) in ids.iter().chain(&[0]).enumerate() {
                    // SAFETY: `8 * (len + 1)` writable bytes (checked).
                    unsafe { put(out.cast::<u64>().add(i), *id) };
                }
                MxReturn::SUCCESS
            }
            MxGetInfoKey::MAX_NATIVE_ENDPOINTS => match board_or("mx_get_info") {
                Ok(b) => put_u32(b.max_endpoints),
                Err(e) => e,
            },
            MxGetInfoKey::NATIVE_REQUESTS => put_u32(u32::MAX),
            MxGetInfoKey::COUNTERS_COUNT => put_u32(COUNTER_LABELS.len() as u32),
            MxGetInfoKey::COUNTERS_LABELS => {
                if let Err(e) = need(MX_MAX_STR_LEN * COUNTER_LABELS.len()) {
                    return e;
                }
                for (i, l) in COUNTER_LABELS.iter().enumerate() {
                    // SAFETY: 128 bytes per label, checked above.
                    unsafe { put_str(out.add(i * MX_MAX_STR_LEN), MX_MAX_STR_LEN, l) };
                }
                MxReturn::SUCCESS
            }
            MxGetInfoKey::COUNTERS_VALUES => {
                if let Err(e) = need(4 * COUNTER_LABELS.len()) {
                    return e;
                }
                let b = match board_or("mx_get_info") {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                match board_counters(ep, b.max_endpoints) {
                    Ok(v) => {
                        for (i, x) in v.iter().take(COUNTER_LABELS.len()).enumerate() {
                            // SAFETY: 4 bytes per counter, checked above.
                            unsafe { put(out.cast::<u32>().add(i), *x) };
                        }
                        MxReturn::SUCCESS
                    }
                    Err(e) => fe_fail(ep, &e, "mx_get_info: counters"),
                }
            }
            MxGetInfoKey::PRODUCT_CODE => put_string("Xen2MX"),
            MxGetInfoKey::PART_NUMBER => match board_or("mx_get_info") {
                Ok(b) => put_string(if b.profile == 0 {
                    "Xen2MX-mx"
                } else {
                    "Xen2MX-open-mx"
                }),
                Err(e) => e,
            },
            MxGetInfoKey::SERIAL_NUMBER => match board_or("mx_get_info") {
                Ok(b) => put_string(&format!("{:012x}", b.nic_id)),
                Err(e) => e,
            },
            MxGetInfoKey::PORT_COUNT => put_u32(1),
            MxGetInfoKey::PIO_SEND_MAX => put_u32(128),
            MxGetInfoKey::COPY_SEND_MAX => {
                let t = match ep {
                    Some(e) if !super::common::in_handler(e.slot) => {
                        e.ep.with_core(|c| c.rndv_threshold())
                    }
                    _ => DEFAULT_RNDV_THRESHOLD,
                };
                put_u32(t)
            }
            MxGetInfoKey::NUMA_NODE => put_u32(0),
            MxGetInfoKey::NET_TYPE => put_u32(MxNetType::ETHER.0),
            MxGetInfoKey::LINE_SPEED => put_u32(MxLineSpeed::SPEED_OPEN_MX.0),
            k => fail(
                ep,
                MxReturn::BAD_INFO_KEY,
                &format!("mx_get_info: unknown key {}", k.0),
            ),
        }
    })
}
mx_symbol_version!("mx_get_info", "MX_0.91");

fn peer_by_hostname(name: &str) -> Result<PeerInfo, FrontendError> {
    with_frontend(None, |f| match f.peer_by_hostname(name) {
        Err(FrontendError::Refused(_)) if !name.contains(':') => {
            f.peer_by_hostname(&format!("{name}:0"))
        }
        r => r,
    })
}

/// `mx_hostname_to_nic_id(hostname, *nic_id)`: exact board name
/// (`host:0`), or a bare host name meaning its board 0. Unknown:
/// `MX_HOST_NOT_FOUND`.
///
/// # Safety
/// `hostname` NULL or a C string; `nic_id` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_hostname_to_nic_id(
    hostname: *mut c_char,
    nic_id: *mut u64,
) -> MxReturn {
    ffi_guard("mx_hostname_to_nic_id", || {
        if let Err(e) = check_initialized("mx_hostname_to_nic_id") {
            return e;
        }
        if hostname.is_null() || nic_id.is_null() {
            return error(
                MxReturn::BAD_HOSTNAME_ARGS,
                "mx_hostname_to_nic_id: NULL argument",
            );
        }
        // SAFETY: a NUL-terminated string per the contract.
        let name = unsafe { CStr::from_ptr(hostname) }.to_string_lossy();
        match peer_by_hostname(&name) {
            Ok(p) => {
                // SAFETY: checked non-NULL.
                unsafe { put(nic_id, p.nic_id) };
                MxReturn::SUCCESS
            }
            Err(FrontendError::Refused(_)) => error(
                MxReturn::HOST_NOT_FOUND,
                &format!("mx_hostname_to_nic_id: host {name:?} not found"),
            ),
            Err(e) => fe_fail(None, &e, "mx_hostname_to_nic_id"),
        }
    })
}

/// `mx_nic_id_to_hostname(nic_id, hostname)`: writes at most
/// `MX_MAX_HOSTNAME_LEN` bytes with the NUL. Unknown: `MX_NIC_NOT_FOUND`.
///
/// # Safety
/// `hostname` NULL or `MX_MAX_HOSTNAME_LEN` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_nic_id_to_hostname(nic_id: u64, hostname: *mut c_char) -> MxReturn {
    ffi_guard("mx_nic_id_to_hostname", || {
        if let Err(e) = check_initialized("mx_nic_id_to_hostname") {
            return e;
        }
        if hostname.is_null() {
            return error(
                MxReturn::BAD_HOSTNAME_ARGS,
                "mx_nic_id_to_hostname: NULL hostname buffer",
            );
        }
        match with_frontend(None, |f| f.peer_by_nic_id(nic_id)) {
            Ok(p) => {
                // SAFETY: MX_MAX_HOSTNAME_LEN writable bytes per the contract.
                unsafe { put_str(hostname.cast(), MX_MAX_HOSTNAME_LEN, &p.hostname) };
                MxReturn::SUCCESS
            }
            Err(FrontendError::Refused(_)) => error(
                MxReturn::NIC_NOT_FOUND,
                &format!("mx_nic_id_to_hostname: NIC {nic_id:#014x} not found"),
            ),
            Err(e) => fe_fail(None, &e, "mx_nic_id_to_hostname"),
        }
    })
}

/// `mx_board_number_to_nic_id(board, *nic_id)`: board 0 only.
///
/// # Safety
/// `nic_id` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_board_number_to_nic_id(
    board_number: u32,
    nic_id: *mut u64,
) -> MxReturn {
    ffi_guard("mx_board_number_to_nic_id", || {
        if let Err(e) = check_initialized("mx_board_number_to_nic_id") {
            return e;
        }
        if nic_id.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx_board_number_to_nic_id: NULL nic_id pointer",
            );
        }
        if board_number != 0 {
            return error(
                MxReturn::BOARD_UNKNOWN,
                &format!("mx_board_number_to_nic_id: no board {board_number}"),
            );
        }
        match board(None) {
            Ok(b) => {
                // SAFETY: checked non-NULL.
                unsafe { put(nic_id, b.nic_id) };
                MxReturn::SUCCESS
            }
            Err(e) => fe_fail(None, &e, "mx_board_number_to_nic_id"),
        }
    })
}

/// `mx_nic_id_to_board_number(nic_id, *board)`: 0 for the local board,
/// `MX_NIC_NOT_FOUND` for any other NIC (remote boards have no local
/// number).
///
/// # Safety
/// `board_number` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_nic_id_to_board_number(
    nic_id: u64,
    board_number: *mut u32,
) -> MxReturn {
    ffi_guard("mx_nic_id_to_board_number", || {
        if let Err(e) = check_initialized("mx_nic_id_to_board_number") {
            return e;
        }
        if board_number.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx_nic_id_to_board_number: NULL board pointer",
            );
        }
        match board(None) {
            Ok(b) if b.nic_id == nic_id => {
                // SAFETY: checked non-NULL.
                unsafe { put(board_number, b.board) };
                MxReturn::SUCCESS
            }
            Ok(_) => error(
                MxReturn::NIC_NOT_FOUND,
                &format!("mx_nic_id_to_board_number: NIC {nic_id:#014x} is not a local board"),
            ),
            Err(e) => fe_fail(None, &e, "mx_nic_id_to_board_number"),
        }
    })
}

/// `mx__get_mapper_state(handle, *state)` (handle from `mx_open_board`):
/// board 0 reports a configured network mapped by itself: mapper MAC =
/// the board's NIC id, map version 1, `num_hosts` = the backend's peer
/// table size, configured and routes valid.
///
/// # Safety
/// `state` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx__get_mapper_state(
    handle: MxEndptHandle,
    state: *mut MxMapperState,
) -> MxReturn {
    ffi_guard("mx__get_mapper_state", || {
        if state.is_null() {
            return error(
                MxReturn::BAD_PARAM_VAL,
                "mx__get_mapper_state: NULL state pointer",
            );
        }
        if handle != 0 {
            return error(
                MxReturn::BOARD_UNKNOWN,
                &format!("mx__get_mapper_state: no board behind handle {handle}"),
            );
        }
        let r = with_frontend(None, |f| {
            let mut hosts = 0u32;
            while hosts < 4096 && f.peer_by_index(hosts as u16).is_ok() {
                hosts += 1;
            }
            Ok((f.board().clone(), hosts.max(1)))
        });
        match r {
            Ok((b, hosts)) => {
                let mac = b.nic_id.to_be_bytes();
                let st = MxMapperState {
                    board_number: b.board,
                    mapper_mac: [mac[2], mac[3], mac[4], mac[5], mac[6], mac[7]],
                    iport: 0,
                    map_version: 1,
                    num_hosts: hosts,
                    network_configured: 1,
                    routes_valid: 1,
                    level: 0,
                    flags: 0,
                };
                // SAFETY: checked non-NULL.
                unsafe { put(state, st) };
                MxReturn::SUCCESS
            }
            Err(e) => fe_fail(None, &e, "mx__get_mapper_state"),
        }
    })
}
