//! The raw API (`mx_raw.h`), used by fabric mappers, on the engine of
//! [`crate::raw_endpoint`].
//!
//! - A raw frame is a whole Ethernet frame without FCS, destination MAC
//!   first (what Open-MX's raw interface sends and delivers): `mx_raw_send`
//!   sends `buf` as the frame, `mx_raw_next_event` copies a received one
//!   into `buf`. Frames must be 17 bytes (MXoE head and packet type) to the
//!   board's largest frame (interface MTU + 14, at most 8192), EtherType
//!   0x86DF and packet type RAW (1), else `MX_BAD_PARAM_VAL`; the backend
//!   forces the board's MAC as the source.
//! - `mx_raw_send` queues the frame and returns; exactly one
//!   `MX_RAW_SEND_COMPLETE` event with its context follows, whatever
//!   became of the frame (sent, or dropped by a board without a NIC).
//! - `mx_raw_next_event` waits up to `timeout_ms` (0 = do not wait, as in
//!   Open-MX; this is not `MX_INFINITE`): `MX_RAW_NO_EVENT`, a send
//!   completion (`*context` set), or a received frame (`*recv_bytes` in:
//!   the capacity of `recv_buffer`, out: the bytes copied, at most the
//!   capacity: a longer frame is truncated; `*incoming_port` 0).
//! - Ethernet has no source routes: frames go by MAC. The routes a mapper
//!   sets are checked and kept per peer, `mx_raw_clear_routes` drops a
//!   port's, `mx_raw_remove_peer` all of a peer's; the NIC reply info is
//!   copied and kept ([`super::raw_routes`]); nothing reads them on the
//!   wire. `mx_raw_num_ports` is 1, `mx_raw_line_speed` is
//!   `MX_SPEED_OPEN_MX` (as `mx_get_info`).
//! - `mx_raw_set_hostname` renames the board (what HOST_REPLY answers and
//!   `mx_hostname_to_nic_id` finds); `mx_raw_set_peer_name` names a peer,
//!   adding it to the backend's peer table if unknown. Names are 1 to 79
//!   bytes of UTF-8 (`MX_MAX_HOSTNAME_LEN` with its NUL), else
//!   `MX_BAD_HOSTNAME_ARGS`.
//! - `mx_raw_handle` returns the board number, the handle `mx_open_board`
//!   gives (`mx__get_mapper_state` takes it); `MX__INVALID_HANDLE` for
//!   anything that is not an open raw endpoint.
//!
//! At most one raw endpoint per board (`MX_BUSY` while anybody has it
//! open); the backend admits only privileged guests by default
//! (`MX_NO_PERM`, see `docs/C-ABI.md`). Handles are checked like
//! endpoints' (see [`super::handle`]): `mx_raw_endpoint_t` is the address
//! of the library's state, looked up in a table of open raw endpoints and
//! never dereferenced as given, so a closed or garbage handle gives
//! `MX_BAD_ENDPOINT`. Failures go through the raw endpoint's error handler
//! (`MX_PARAM_ERROR_HANDLER` at open), else the process-wide one.

use core::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::core::Return;
use crate::raw_endpoint::{RawEndpoint, RawNext};

use super::common::put;
use super::error::{current_handler, error, error_with};
use super::guard::{ffi_guard, ffi_guard_or};
use super::init::check_initialized;
use super::raw_routes::{Route, RouteError, RouteTable, REPLY_INFO_MAX, ROUTE_MAX};
use super::types::{
    MxEndptHandle, MxErrorHandler, MxHostType, MxLineSpeed, MxParam, MxRawEndpointPtr, MxRawStatus,
    MxReturn, MX_INVALID_HANDLE, MX_RAW_NO_EVENT, MX_RAW_RECV_COMPLETE, MX_RAW_SEND_COMPLETE,
};

/// How long `mx_raw_close_endpoint` waits for the backend to take the
/// sends already posted.
pub const RAW_CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Longest hostname, without its NUL (`MX_MAX_HOSTNAME_LEN` - 1).
const HOSTNAME_MAX: usize = 79;

/// One open raw endpoint as the C ABI sees it.
pub struct RawShared {
    /// The engine (taken out at close).
    ep: RwLock<Option<RawEndpoint>>,
    /// The board.
    board: u32,
    /// `MX_PARAM_ERROR_HANDLER`, if given at open.
    handler: Option<MxErrorHandler>,
    /// Set by `mx_raw_close_endpoint`.
    closed: AtomicBool,
    /// Routes and NIC reply info the mapper gave (kept, not used on the
    /// wire: see [`super::raw_routes`]).
    routes: Mutex<RouteTable>,
}

impl RawShared {
    /// Report a failure through the raw endpoint's handler (else the
    /// process-wide one) and return what it returns.
    fn fail(&self, ret: MxReturn, msg: &str) -> MxReturn {
        error_with(self.handler.unwrap_or_else(current_handler), ret, msg)
    }

    /// Run `f` on the engine; `MX_BAD_ENDPOINT` once closed.
    fn with<R>(&self, func: &str, f: impl FnOnce(&RawEndpoint) -> R) -> Result<R, MxReturn> {
        let g = self.ep.read().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(ep) if !self.closed.load(Ordering::Acquire) => Ok(f(ep)),
            _ => Err(self.fail(
                MxReturn::BAD_ENDPOINT,
                &format!("{func}: the raw endpoint is closed"),
            )),
        }
    }
}

/// The table of open raw endpoints.
static TABLE: RwLock<Vec<Arc<RawShared>>> = RwLock::new(Vec::new());

fn table() -> std::sync::RwLockReadGuard<'static, Vec<Arc<RawShared>>> {
    TABLE.read().unwrap_or_else(|p| p.into_inner())
}

fn table_mut() -> std::sync::RwLockWriteGuard<'static, Vec<Arc<RawShared>>> {
    TABLE.write().unwrap_or_else(|p| p.into_inner())
}

/// The open raw endpoint behind a C handle (compared by address, never
/// dereferenced).
fn lookup(ptr: MxRawEndpointPtr) -> Option<Arc<RawShared>> {
    if ptr.is_null() {
        return None;
    }
    let want = ptr.cast_const();
    table()
        .iter()
        .find(|e| Arc::as_ptr(e).cast::<c_void>() == want)
        .filter(|e| !e.closed.load(Ordering::Acquire))
        .cloned()
}

/// The open raw endpoint behind `ptr`, or the error to return:
/// `MX_NOT_INITIALIZED` before `mx_init`, `MX_BAD_ENDPOINT` for NULL,
/// closed or unknown handles (through the process-wide handler).
fn get_raw(ptr: MxRawEndpointPtr, func: &str) -> Result<Arc<RawShared>, MxReturn> {
    check_initialized(func)?;
    lookup(ptr).ok_or_else(|| {
        error(
            MxReturn::BAD_ENDPOINT,
            &format!("{func}: not an open raw endpoint"),
        )
    })
}

fn mx(r: Return) -> MxReturn {
    MxReturn::of(r)
}

/// Close every raw endpoint still open (`mx_finalize`).
pub fn close_all() {
    let all: Vec<Arc<RawShared>> = table_mut().drain(..).collect();
    for r in all {
        // A backend that is gone cannot be told; the endpoint is gone
        // from our side either way.
        let _ = close(&r);
    }
}

fn close(r: &RawShared) -> Result<(), Return> {
    r.closed.store(true, Ordering::Release);
    // End the waits of other threads (they hold the read lock), then wait
    // for their calls to return.
    if let Some(ep) = r.ep.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        ep.interrupt();
    }
    let ep = r.ep.write().unwrap_or_else(|p| p.into_inner()).take();
    match ep {
        Some(ep) => ep.close(RAW_CLOSE_LINGER),
        None => Ok(()),
    }
}

/// A NUL-terminated hostname of at most 79 bytes, read without going past
/// its NUL or the 80th byte.
///
/// # Safety
/// `p` must be NULL or point to a string readable up to its NUL or its
/// 80th byte, whichever comes first.
unsafe fn hostname_arg(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut bytes = Vec::with_capacity(HOSTNAME_MAX);
    for i in 0..=HOSTNAME_MAX {
        // SAFETY: per the contract, bytes up to the NUL (at most the 80th)
        // are readable; the loop stops at the NUL.
        let b = unsafe { p.add(i).read() } as u8;
        if b == 0 {
            return (!bytes.is_empty())
                .then(|| String::from_utf8(bytes).ok())
                .flatten();
        }
        bytes.push(b);
    }
    None
}

/// `mx_raw_open_endpoint(board, params, count, *endpoint)`: open board
/// `board`'s raw endpoint.
///
/// `MX_BOARD_UNKNOWN` for a board the backend does not have, `MX_BUSY`
/// while it is open (by anyone), `MX_NO_PERM` when the backend's raw-access
/// policy refuses this process, `MX_NO_DEV` without a backend. Parameters
/// as `mx_open_endpoint` (`MX_PARAM_ERROR_HANDLER` is the raw endpoint's
/// handler; the others are accepted and have no effect here).
///
/// # Safety
/// `params_array` NULL or `params_count` readable entries; `endpoint`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_open_endpoint(
    board_number: u32,
    params_array: *mut MxParam,
    params_count: u32,
    endpoint: *mut MxRawEndpointPtr,
) -> MxReturn {
    ffi_guard("mx_raw_open_endpoint", || {
        if let Err(e) = check_initialized("mx_raw_open_endpoint") {
            return e;
        }
        // SAFETY: forwarded contract.
        let params = match unsafe { super::endpoint_api::parse_params(params_array, params_count) }
        {
            Ok(p) => p,
            Err((ret, msg)) => return error(ret, &format!("mx_raw_open_endpoint: {msg}")),
        };
        let handler = params.handler;
        let fail = |ret: MxReturn, msg: &str| {
            error_with(
                handler.unwrap_or_else(current_handler),
                ret,
                &format!("mx_raw_open_endpoint: board {board_number}: {msg}"),
            )
        };
        if endpoint.is_null() {
            return fail(MxReturn::BAD_PARAM_VAL, "NULL endpoint pointer");
        }
        let ep = match RawEndpoint::open(None, board_number) {
            Ok(ep) => ep,
            Err(r) => {
                let why = match r {
                    Return::Busy => "the raw endpoint is already open",
                    Return::NoPerm => "the backend does not allow this process raw access",
                    Return::BoardUnknown => "no such board",
                    Return::NoDev => "no backend",
                    _ => "the backend refused",
                };
                return fail(mx(r), why);
            }
        };
        let shared = Arc::new(RawShared {
            ep: RwLock::new(Some(ep)),
            board: board_number,
            handler,
            closed: AtomicBool::new(false),
            routes: Mutex::new(RouteTable::default()),
        });
        let ptr: MxRawEndpointPtr = Arc::as_ptr(&shared).cast_mut().cast();
        table_mut().push(shared);
        // SAFETY: non-NULL (checked) and writable per the contract.
        unsafe { put(endpoint, ptr) };
        MxReturn::SUCCESS
    })
}

/// `mx_raw_close_endpoint(endpoint)`: close (after the backend took the
/// sends already posted, for at most half a second). `MX_BAD_ENDPOINT` for
/// anything that is not an open raw endpoint.
#[no_mangle]
pub extern "C" fn mx_raw_close_endpoint(endpoint: MxRawEndpointPtr) -> MxReturn {
    ffi_guard("mx_raw_close_endpoint", || {
        let r = match get_raw(endpoint, "mx_raw_close_endpoint") {
            Ok(r) => r,
            Err(e) => return e,
        };
        table_mut().retain(|x| !Arc::ptr_eq(x, &r));
        match close(&r) {
            Ok(()) => MxReturn::SUCCESS,
            Err(e) => r.fail(mx(e), "mx_raw_close_endpoint: the backend did not answer"),
        }
    })
}

/// `mx_raw_send(endpoint, port, route, route_length, buf, length,
/// context)`: send the `length` bytes at `buf` as one whole Ethernet frame
/// from port 0 (the only one); `route` is ignored (no source routes on
/// Ethernet). An `MX_RAW_SEND_COMPLETE` event with `context` follows.
/// `MX_BAD_PARAM_VAL` for another port, a NULL `buf` or a frame the raw
/// API refuses (see the module docs), `MX_NO_RESOURCES` if the backend
/// stopped taking sends, `MX_NIC_DEAD` if it broke the channel.
///
/// # Safety
/// `buf` NULL or `length` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_send(
    endpoint: MxRawEndpointPtr,
    physical_port: u32,
    _route_pointer: *mut c_void,
    _route_length: u32,
    send_buffer: *mut c_void,
    buffer_length: u32,
    context: *mut c_void,
) -> MxReturn {
    ffi_guard("mx_raw_send", || {
        let r = match get_raw(endpoint, "mx_raw_send") {
            Ok(r) => r,
            Err(e) => return e,
        };
        if physical_port != 0 {
            return r.fail(
                MxReturn::BAD_PARAM_VAL,
                &format!("mx_raw_send: no port {physical_port} (the board has one, port 0)"),
            );
        }
        if send_buffer.is_null() {
            return r.fail(MxReturn::BAD_PARAM_VAL, "mx_raw_send: NULL frame");
        }
        // SAFETY: non-NULL and `buffer_length` readable bytes per the
        // contract; the slice lives only during this call.
        let frame = unsafe {
            core::slice::from_raw_parts(send_buffer.cast::<u8>(), buffer_length as usize)
        };
        let sent = r.with("mx_raw_send", |ep| {
            if let Err(why) = crate::raw_endpoint::check_frame(frame, ep.max_frame()) {
                return Err((
                    Return::BadParamVal,
                    format!(
                        "mx_raw_send: frame of {buffer_length} bytes refused ({why:?}; frames are \
                         {}..={} bytes, EtherType 0x86DF, packet type RAW)",
                        crate::raw_endpoint::FRAME_MIN,
                        ep.max_frame()
                    ),
                ));
            }
            ep.send(frame, context as usize as u64)
                .map_err(|e| (e, "mx_raw_send: the frame could not be queued".to_string()))
        });
        match sent {
            Ok(Ok(())) => MxReturn::SUCCESS,
            Ok(Err((e, msg))) => r.fail(mx(e), &msg),
            Err(e) => e,
        }
    })
}

/// `mx_raw_next_event(endpoint, *incoming_port, *context, buf,
/// *recv_bytes, timeout_ms, *status)`: the next event, waiting up to
/// `timeout_ms` (0: do not wait). `*status` is `MX_RAW_NO_EVENT`,
/// `MX_RAW_SEND_COMPLETE` (`*context` set when `context` is not NULL) or
/// `MX_RAW_RECV_COMPLETE` (the frame copied into `buf`, truncated to the
/// capacity `*recv_bytes`, which becomes the bytes copied;
/// `*incoming_port` 0 when not NULL). `MX_BAD_PARAM_VAL` for a NULL
/// `status` or `recv_bytes`, or a NULL `buf` with a capacity.
///
/// # Safety
/// Every pointer NULL or valid: `incoming_port`, `context`, `status`
/// writable, `recv_bytes` readable and writable, `buf` writable for
/// `*recv_bytes` bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_next_event(
    endpoint: MxRawEndpointPtr,
    incoming_port: *mut u32,
    context: *mut *mut c_void,
    recv_buffer: *mut c_void,
    recv_bytes: *mut u32,
    timeout_ms: u32,
    status: *mut MxRawStatus,
) -> MxReturn {
    ffi_guard("mx_raw_next_event", || {
        let r = match get_raw(endpoint, "mx_raw_next_event") {
            Ok(r) => r,
            Err(e) => return e,
        };
        if status.is_null() || recv_bytes.is_null() {
            return r.fail(
                MxReturn::BAD_PARAM_VAL,
                "mx_raw_next_event: NULL status or recv_bytes pointer",
            );
        }
        // SAFETY: non-NULL (checked), readable per the contract.
        let cap = unsafe { super::common::get(recv_bytes) } as usize;
        if recv_buffer.is_null() && cap > 0 {
            return r.fail(
                MxReturn::BAD_PARAM_VAL,
                "mx_raw_next_event: NULL buffer with a capacity",
            );
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let next = match r.with("mx_raw_next_event", |ep| ep.next_event(timeout)) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return r.fail(
                    mx(e),
                    "mx_raw_next_event: the backend broke the raw channel",
                )
            }
            Err(e) => return e,
        };
        match next {
            // SAFETY: `status` non-NULL (checked), writable per the contract.
            RawNext::Nothing => unsafe { put(status, MX_RAW_NO_EVENT) },
            // SAFETY: `context` written only when non-NULL, `status`
            // non-NULL (checked); both writable per the contract.
            RawNext::SendComplete(ctx) => unsafe {
                if !context.is_null() {
                    put(context, ctx as usize as *mut c_void);
                }
                put(status, MX_RAW_SEND_COMPLETE);
            },
            // SAFETY: at most `cap` bytes go to `recv_buffer`, the capacity
            // the caller gave for it (non-NULL when `cap > 0`, checked);
            // `incoming_port` written only when non-NULL; `recv_bytes` and
            // `status` non-NULL (checked); all writable per the contract.
            // `frame` is our own allocation, so the ranges do not overlap.
            RawNext::Received(frame) => unsafe {
                let n = frame.len().min(cap);
                if n > 0 {
                    core::ptr::copy_nonoverlapping(frame.as_ptr(), recv_buffer.cast::<u8>(), n);
                }
                put(recv_bytes, n as u32);
                if !incoming_port.is_null() {
                    put(incoming_port, 0);
                }
                put(status, MX_RAW_RECV_COMPLETE);
            },
        }
        MxReturn::SUCCESS
    })
}

/// Entry points that only need an open raw endpoint: Ethernet has no
/// source routes, so the route calls are accepted and do nothing.
fn accept(endpoint: MxRawEndpointPtr, func: &str) -> MxReturn {
    ffi_guard(func, || match get_raw(endpoint, func) {
        Ok(_) => MxReturn::SUCCESS,
        Err(e) => e,
    })
}

/// `mx_raw_set_route_begin(endpoint)`: accepted (no routes on Ethernet).
#[no_mangle]
pub extern "C" fn mx_raw_set_route_begin(endpoint: MxRawEndpointPtr) -> MxReturn {
    accept(endpoint, "mx_raw_set_route_begin")
}

/// `mx_raw_set_route_end(endpoint)`: accepted (no routes on Ethernet).
#[no_mangle]
pub extern "C" fn mx_raw_set_route_end(endpoint: MxRawEndpointPtr) -> MxReturn {
    accept(endpoint, "mx_raw_set_route_end")
}

impl RawShared {
    fn routes(&self) -> std::sync::MutexGuard<'_, RouteTable> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The message for a refused route or reply info.
fn route_error(func: &str, nic_id: u64, e: RouteError) -> (MxReturn, String) {
    match e {
        RouteError::BadNic => (
            MxReturn::BAD_NIC,
            format!("{func}: {nic_id:#x} is not a unicast 48-bit NIC id"),
        ),
        RouteError::BadValue => (
            MxReturn::BAD_PARAM_VAL,
            format!("{func}: route NULL with a length, or longer than {ROUTE_MAX} bytes"),
        ),
        RouteError::Full => (
            MxReturn::NO_RESOURCES,
            format!("{func}: too many routes kept (peers or routes to {nic_id:#x})"),
        ),
    }
}

/// Copy `len` bytes from `p`, or `None` for NULL with a length, or a length
/// above `max` (checked before reading anything).
///
/// # Safety
/// `p` NULL or readable for `len` bytes when `len <= max`.
unsafe fn bytes_arg(p: *const c_void, len: u32, max: usize) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok().filter(|l| *l <= max)?;
    if len == 0 {
        return Some(Vec::new());
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL (checked), readable for `len` bytes per the contract.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec())
}

/// `mx_raw_set_route` and `mx_raw_set_route_mag`.
///
/// # Safety
/// `route` NULL or readable for `route_length` bytes.
#[allow(clippy::too_many_arguments)]
unsafe fn set_route(
    func: &str,
    endpoint: MxRawEndpointPtr,
    destination_id: u64,
    route: *const c_void,
    route_length: u32,
    input_port: u32,
    output_port: u32,
    host_type: MxHostType,
    mag_id: u32,
) -> MxReturn {
    ffi_guard(func, || {
        let r = match get_raw(endpoint, func) {
            Ok(r) => r,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let Some(hops) = (unsafe { bytes_arg(route, route_length, ROUTE_MAX) }) else {
            let (ret, msg) = route_error(func, destination_id, RouteError::BadValue);
            return r.fail(ret, &msg);
        };
        let route = Route {
            input_port,
            output_port,
            host_type: host_type.0,
            mag_id,
            hops,
        };
        let res = r.routes().set(destination_id, route);
        match res {
            Ok(()) => MxReturn::SUCCESS,
            Err(e) => {
                let (ret, msg) = route_error(func, destination_id, e);
                r.fail(ret, &msg)
            }
        }
    })
}

/// `mx_raw_set_route(...)`: keep a source route to `destination_id`
/// (replacing the one with the same ports). Frames go by MAC, so it is
/// never put on the wire. `MX_BAD_NIC` for an id that is not unicast 48-bit,
/// `MX_BAD_PARAM_VAL` for a NULL route with a length or one longer than 64
/// bytes, `MX_NO_RESOURCES` past 16 routes to a peer or 4096 peers.
///
/// # Safety
/// `route` NULL or readable for `route_length` bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_set_route(
    endpoint: MxRawEndpointPtr,
    destination_id: u64,
    route: *mut c_void,
    route_length: u32,
    input_port: u32,
    output_port: u32,
    host_type: MxHostType,
) -> MxReturn {
    // SAFETY: forwarded contract.
    unsafe {
        set_route(
            "mx_raw_set_route",
            endpoint,
            destination_id,
            route,
            route_length,
            input_port,
            output_port,
            host_type,
            0,
        )
    }
}

/// `mx_raw_set_route_mag(...)`: as `mx_raw_set_route`, the route kept per
/// ports and magic id.
///
/// # Safety
/// `route` NULL or readable for `route_length` bytes.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn mx_raw_set_route_mag(
    endpoint: MxRawEndpointPtr,
    destination_id: u64,
    route: *mut c_void,
    route_length: u32,
    input_port: u32,
    output_port: u32,
    host_type: MxHostType,
    mag_id: u32,
) -> MxReturn {
    // SAFETY: forwarded contract.
    unsafe {
        set_route(
            "mx_raw_set_route_mag",
            endpoint,
            destination_id,
            route,
            route_length,
            input_port,
            output_port,
            host_type,
            mag_id,
        )
    }
}

/// `mx_raw_clear_routes(endpoint, destination_id, port)`: drop the routes
/// to `destination_id` that leave by `port` (none kept is not an error).
#[no_mangle]
pub extern "C" fn mx_raw_clear_routes(
    endpoint: MxRawEndpointPtr,
    destination_id: u64,
    port: u32,
) -> MxReturn {
    ffi_guard("mx_raw_clear_routes", || {
        match get_raw(endpoint, "mx_raw_clear_routes") {
            Ok(r) => {
                r.routes().clear(destination_id, port);
                MxReturn::SUCCESS
            }
            Err(e) => e,
        }
    })
}

/// `mx_raw_remove_peer(endpoint, destination_id)`: drop every route kept
/// to `destination_id` (a peer without routes is not an error; Open-MX
/// aborts here). The backend's peer table keeps the peer's name and
/// address: nothing on Ethernet needs the routes, and the backend learns
/// and forgets peers by itself.
#[no_mangle]
pub extern "C" fn mx_raw_remove_peer(endpoint: MxRawEndpointPtr, destination_id: u64) -> MxReturn {
    ffi_guard("mx_raw_remove_peer", || {
        match get_raw(endpoint, "mx_raw_remove_peer") {
            Ok(r) => {
                r.routes().remove_peer(destination_id);
                MxReturn::SUCCESS
            }
            Err(e) => e,
        }
    })
}

/// `mx_raw_set_nic_reply_info(endpoint, blob, size)`: keep a copy of the
/// blob MX's mapper has the NIC put in its replies (`size` 0 clears it;
/// Open-MX does nothing with it, neither do our frames). `MX_BAD_PARAM_VAL`
/// for NULL with a size or more than 4096 bytes.
///
/// # Safety
/// `blob` NULL or readable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_set_nic_reply_info(
    endpoint: MxRawEndpointPtr,
    blob: *mut c_void,
    size: u32,
) -> MxReturn {
    ffi_guard("mx_raw_set_nic_reply_info", || {
        let r = match get_raw(endpoint, "mx_raw_set_nic_reply_info") {
            Ok(r) => r,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let Some(info) = (unsafe { bytes_arg(blob, size, REPLY_INFO_MAX) }) else {
            return r.fail(
                MxReturn::BAD_PARAM_VAL,
                &format!(
                    "mx_raw_set_nic_reply_info: blob NULL with a size, or more than {REPLY_INFO_MAX} bytes"
                ),
            );
        };
        let res = r.routes().set_reply_info(&info);
        match res {
            Ok(()) => MxReturn::SUCCESS,
            Err(_) => r.fail(
                MxReturn::BAD_PARAM_VAL,
                "mx_raw_set_nic_reply_info: blob too large",
            ),
        }
    })
}

/// `mx_raw_set_map_version(...)`: accepted; the backend keeps its own
/// peer table (see `mx_raw_set_peer_name`) and `mx__get_mapper_state`
/// reports the board as mapped.
#[no_mangle]
pub extern "C" fn mx_raw_set_map_version(
    endpoint: MxRawEndpointPtr,
    _physical_port: u32,
    _mapper_id: u64,
    _map_version: u32,
    _num_nodes: u32,
    _mapping_complete: u32,
) -> MxReturn {
    accept(endpoint, "mx_raw_set_map_version")
}

/// `mx_raw_num_ports(endpoint, *n)`: 1. `MX_BAD_PARAM_VAL` for NULL `n`.
///
/// # Safety
/// `num_ports` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_num_ports(
    endpoint: MxRawEndpointPtr,
    num_ports: *mut u32,
) -> MxReturn {
    ffi_guard("mx_raw_num_ports", || {
        let r = match get_raw(endpoint, "mx_raw_num_ports") {
            Ok(r) => r,
            Err(e) => return e,
        };
        if num_ports.is_null() {
            return r.fail(MxReturn::BAD_PARAM_VAL, "mx_raw_num_ports: NULL pointer");
        }
        // SAFETY: non-NULL (checked), writable per the contract.
        unsafe { put(num_ports, 1) };
        MxReturn::SUCCESS
    })
}

/// `mx_raw_line_speed(endpoint, *speed)`: `MX_SPEED_OPEN_MX` (what
/// `mx_get_info(MX_LINE_SPEED)` says). `MX_BAD_PARAM_VAL` for NULL.
///
/// # Safety
/// `speed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_line_speed(
    endpoint: MxRawEndpointPtr,
    speed: *mut MxLineSpeed,
) -> MxReturn {
    ffi_guard("mx_raw_line_speed", || {
        let r = match get_raw(endpoint, "mx_raw_line_speed") {
            Ok(r) => r,
            Err(e) => return e,
        };
        if speed.is_null() {
            return r.fail(MxReturn::BAD_PARAM_VAL, "mx_raw_line_speed: NULL pointer");
        }
        // SAFETY: non-NULL (checked), writable per the contract.
        unsafe { put(speed, MxLineSpeed::SPEED_OPEN_MX) };
        MxReturn::SUCCESS
    })
}

/// `mx_raw_set_hostname(endpoint, hostname)`: rename the board (HOST_REPLY
/// answers with it, `mx_hostname_to_nic_id` finds it).
/// `MX_BAD_HOSTNAME_ARGS` for NULL, empty, longer than 79 bytes or not
/// UTF-8.
///
/// # Safety
/// `hostname` NULL or a string readable up to its NUL or 80th byte.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_set_hostname(
    endpoint: MxRawEndpointPtr,
    hostname: *mut c_char,
) -> MxReturn {
    ffi_guard("mx_raw_set_hostname", || {
        let r = match get_raw(endpoint, "mx_raw_set_hostname") {
            Ok(r) => r,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let Some(name) = (unsafe { hostname_arg(hostname) }) else {
            return r.fail(
                MxReturn::BAD_HOSTNAME_ARGS,
                "mx_raw_set_hostname: hostname NULL, empty, longer than 79 bytes or not UTF-8",
            );
        };
        match r.with("mx_raw_set_hostname", |ep| ep.set_hostname(&name)) {
            Ok(Ok(())) => MxReturn::SUCCESS,
            Ok(Err(e)) => r.fail(
                mx(e),
                &format!("mx_raw_set_hostname: {name:?} refused by the backend"),
            ),
            Err(e) => e,
        }
    })
}

/// `mx_raw_set_peer_name(endpoint, nic_id, hostname)`: name the board
/// `nic_id` in the backend's peer table (added if unknown; our own board
/// is left alone: `mx_raw_set_hostname` names it). `MX_BAD_HOSTNAME_ARGS`
/// for a bad name or address, `MX_NO_RESOURCES` when the table is full.
///
/// # Safety
/// `hostname` NULL or a string readable up to its NUL or 80th byte.
#[no_mangle]
pub unsafe extern "C" fn mx_raw_set_peer_name(
    endpoint: MxRawEndpointPtr,
    nic_id: u64,
    hostname: *mut c_char,
) -> MxReturn {
    ffi_guard("mx_raw_set_peer_name", || {
        let r = match get_raw(endpoint, "mx_raw_set_peer_name") {
            Ok(r) => r,
            Err(e) => return e,
        };
        // SAFETY: forwarded contract.
        let Some(name) = (unsafe { hostname_arg(hostname) }) else {
            return r.fail(
                MxReturn::BAD_HOSTNAME_ARGS,
                "mx_raw_set_peer_name: hostname NULL, empty, longer than 79 bytes or not UTF-8",
            );
        };
        match r.with("mx_raw_set_peer_name", |ep| ep.set_peer_name(nic_id, &name)) {
            Ok(Ok(())) => MxReturn::SUCCESS,
            Ok(Err(e)) => r.fail(
                mx(e),
                &format!("mx_raw_set_peer_name: {nic_id:#014x} {name:?} refused by the backend"),
            ),
            Err(e) => e,
        }
    })
}

/// `mx_endpt_handle_t mx_raw_handle(endpoint)`: the board number (the
/// handle `mx_open_board` gives), or `MX__INVALID_HANDLE` for anything
/// that is not an open raw endpoint (no error handler: it returns no
/// `mx_return_t`).
#[no_mangle]
pub extern "C" fn mx_raw_handle(endpoint: MxRawEndpointPtr) -> MxEndptHandle {
    ffi_guard_or(MX_INVALID_HANDLE, || {
        lookup(endpoint)
            .and_then(|r| c_int::try_from(r.board).ok())
            .unwrap_or(MX_INVALID_HANDLE)
    })
}
