//! The raw API (`mx_raw.h`), used by fabric mappers.
//!
//! **Not supported yet.** The backend has no raw endpoints (its control
//! protocol cannot open one, and there is no fabric to map on the local
//! platform: peers are configured in the backend), so:
//! - `mx_raw_open_endpoint` fails with `MX_NO_DEV` (through the error
//!   handler) and never returns an endpoint;
//! - every call taking a `mx_raw_endpoint_t` therefore fails with
//!   `MX_BAD_ENDPOINT` (through the error handler);
//! - `mx_raw_handle` returns `MX__INVALID_HANDLE`.
//!
//! The symbols exist so that mapper binaries load and fail cleanly.

use core::ffi::{c_char, c_void};

use super::error::error;
use super::guard::{ffi_guard, ffi_guard_or};
use super::init::check_initialized;
use super::types::{
    MxEndptHandle, MxHostType, MxLineSpeed, MxParam, MxRawEndpointPtr, MxRawStatus, MxReturn,
    MX_INVALID_HANDLE,
};

fn no_endpoint(func: &str) -> MxReturn {
    ffi_guard(func, || {
        if let Err(e) = check_initialized(func) {
            return e;
        }
        error(
            MxReturn::BAD_ENDPOINT,
            &format!("{func}: no raw endpoint can be open (raw endpoints are not supported)"),
        )
    })
}

/// `mx_raw_open_endpoint(board, params, count, *endpoint)`: always
/// `MX_NO_DEV` (the backend has no raw endpoints).
#[no_mangle]
pub extern "C" fn mx_raw_open_endpoint(
    board_number: u32,
    _params_array: *mut MxParam,
    _params_count: u32,
    _endpoint: *mut MxRawEndpointPtr,
) -> MxReturn {
    ffi_guard("mx_raw_open_endpoint", || {
        if let Err(e) = check_initialized("mx_raw_open_endpoint") {
            return e;
        }
        error(
            MxReturn::NO_DEV,
            &format!(
                "mx_raw_open_endpoint: board {board_number}: raw endpoints are not supported by \
                 the backend"
            ),
        )
    })
}

/// `mx_raw_close_endpoint(endpoint)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_close_endpoint(_endpoint: MxRawEndpointPtr) -> MxReturn {
    no_endpoint("mx_raw_close_endpoint")
}

/// `mx_raw_send(...)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_send(
    _endpoint: MxRawEndpointPtr,
    _physical_port: u32,
    _route_pointer: *mut c_void,
    _route_length: u32,
    _send_buffer: *mut c_void,
    _buffer_length: u32,
    _context: *mut c_void,
) -> MxReturn {
    no_endpoint("mx_raw_send")
}

/// `mx_raw_next_event(...)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_next_event(
    _endpoint: MxRawEndpointPtr,
    _incoming_port: *mut u32,
    _context: *mut *mut c_void,
    _recv_buffer: *mut c_void,
    _recv_bytes: *mut u32,
    _timeout_ms: u32,
    _status: *mut MxRawStatus,
) -> MxReturn {
    no_endpoint("mx_raw_next_event")
}

/// `mx_raw_set_route_begin(endpoint)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_route_begin(_endpoint: MxRawEndpointPtr) -> MxReturn {
    no_endpoint("mx_raw_set_route_begin")
}

/// `mx_raw_set_route_end(endpoint)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_route_end(_endpoint: MxRawEndpointPtr) -> MxReturn {
    no_endpoint("mx_raw_set_route_end")
}

/// `mx_raw_set_route(...)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_route(
    _endpoint: MxRawEndpointPtr,
    _destination_id: u64,
    _route: *mut c_void,
    _route_length: u32,
    _input_port: u32,
    _output_port: u32,
    _host_type: MxHostType,
) -> MxReturn {
    no_endpoint("mx_raw_set_route")
}

/// `mx_raw_set_route_mag(...)`: `MX_BAD_ENDPOINT`.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub extern "C" fn mx_raw_set_route_mag(
    _endpoint: MxRawEndpointPtr,
    _destination_id: u64,
    _route: *mut c_void,
    _route_length: u32,
    _input_port: u32,
    _output_port: u32,
    _host_type: MxHostType,
    _mag_id: u32,
) -> MxReturn {
    no_endpoint("mx_raw_set_route_mag")
}

/// `mx_raw_clear_routes(...)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_clear_routes(
    _endpoint: MxRawEndpointPtr,
    _destination_id: u64,
    _port: u32,
) -> MxReturn {
    no_endpoint("mx_raw_clear_routes")
}

/// `mx_raw_set_map_version(...)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_map_version(
    _endpoint: MxRawEndpointPtr,
    _physical_port: u32,
    _mapper_id: u64,
    _map_version: u32,
    _num_nodes: u32,
    _mapping_complete: u32,
) -> MxReturn {
    no_endpoint("mx_raw_set_map_version")
}

/// `mx_raw_num_ports(endpoint, *n)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_num_ports(_endpoint: MxRawEndpointPtr, _num_ports: *mut u32) -> MxReturn {
    no_endpoint("mx_raw_num_ports")
}

/// `mx_raw_line_speed(endpoint, *speed)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_line_speed(
    _endpoint: MxRawEndpointPtr,
    _speed: *mut MxLineSpeed,
) -> MxReturn {
    no_endpoint("mx_raw_line_speed")
}

/// `mx_raw_set_hostname(endpoint, hostname)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_hostname(
    _endpoint: MxRawEndpointPtr,
    _hostname: *mut c_char,
) -> MxReturn {
    no_endpoint("mx_raw_set_hostname")
}

/// `mx_raw_set_peer_name(endpoint, nic_id, hostname)`: `MX_BAD_ENDPOINT`.
#[no_mangle]
pub extern "C" fn mx_raw_set_peer_name(
    _endpoint: MxRawEndpointPtr,
    _nic_id: u64,
    _hostname: *mut c_char,
) -> MxReturn {
    no_endpoint("mx_raw_set_peer_name")
}

/// `mx_endpt_handle_t mx_raw_handle(endpoint)`: `MX__INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn mx_raw_handle(_endpoint: MxRawEndpointPtr) -> MxEndptHandle {
    ffi_guard_or(MX_INVALID_HANDLE, || MX_INVALID_HANDLE)
}
