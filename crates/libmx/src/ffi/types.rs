//! `#[repr(C)]` mirrors of every public type of `myriexpress.h`,
//! `mx_extensions.h`, `mx_io.h` and `mx_raw.h`, plus the numeric constants.
//!
//! C enumerations are 4 bytes wide; a C caller may pass any value in them
//! (e.g. `mx_strerror(1000)`), so they are mirrored as `#[repr(transparent)]`
//! newtypes over `u32` with associated constants instead of Rust enums
//! (an out-of-range Rust enum value would be undefined behaviour).
//!
//! The layouts are checked at compile time for LP64 (x86-64, aarch64, ...)
//! and for i386, and again from C by `tests/c/layout.c`.

use core::ffi::{c_char, c_int, c_void};
use core::mem::{align_of, offset_of, size_of};

/// `MX_API`: the API level of the header; `mx_init()` passes it to
/// [`mx__init_api`](super::init::mx__init_api).
pub const MX_API: c_int = 0x301;
/// `MX_MAX_STR_LEN`: length of the strings returned by `mx_get_info`.
pub const MX_MAX_STR_LEN: usize = 128;
/// `MX_ANY_NIC`: open an endpoint on any board.
pub const MX_ANY_NIC: u32 = 0xffff_ffff;
/// `MX_ANY_ENDPOINT`: open any free endpoint id.
pub const MX_ANY_ENDPOINT: u32 = 0xffff_ffff;
/// `MX_INFINITE`: timeout value meaning "wait forever".
pub const MX_INFINITE: u32 = 0;
/// `MX_MATCH_MASK_NONE`: a receive mask comparing every bit.
pub const MX_MATCH_MASK_NONE: u64 = !0;
/// `MX_CONTEXT_ID_BITS_MAX`: widest context id.
pub const MX_CONTEXT_ID_BITS_MAX: u32 = 16;
/// `MX_MAX_SEGMENTS`: most segments in one send or receive.
pub const MX_MAX_SEGMENTS: u32 = 256;
/// `MX_MAX_HOSTNAME_LEN`: buffer size `mx_nic_id_to_hostname` writes into.
pub const MX_MAX_HOSTNAME_LEN: usize = 80;
/// `MX_SIZEOF_ADDR`: size of [`MxEndpointAddr`].
pub const MX_SIZEOF_ADDR: usize = 16;
/// `MX__INVALID_HANDLE`: an invalid [`MxEndptHandle`].
pub const MX_INVALID_HANDLE: MxEndptHandle = -1;
/// `MX_RAW_NO_EVENT`: `mx_raw_next_event` timed out.
pub const MX_RAW_NO_EVENT: MxRawStatus = 0;
/// `MX_RAW_SEND_COMPLETE`: a raw send finished (its context is returned).
pub const MX_RAW_SEND_COMPLETE: MxRawStatus = 1;
/// `MX_RAW_RECV_COMPLETE`: a raw frame was received.
pub const MX_RAW_RECV_COMPLETE: MxRawStatus = 2;

/// `mx_endpoint_t`: pointer to an open endpoint; what it points to is
/// private to the library.
pub type MxEndpointPtr = *mut c_void;
/// `mx_request_t`: pointer to an outstanding request; private to the library.
pub type MxRequestPtr = *mut c_void;
/// `mx_raw_endpoint_t`: pointer to a raw endpoint; private to the library.
pub type MxRawEndpointPtr = *mut c_void;
/// `mx_endpt_handle_t` (`int`): a board handle from `mx_open_board`.
pub type MxEndptHandle = c_int;
/// `mx_raw_status_t` (`int`): kind of event from `mx_raw_next_event`.
pub type MxRawStatus = c_int;

macro_rules! c_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )* }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
        pub struct $name(pub u32);

        impl $name {
            $( $(#[$vmeta])* pub const $variant: Self = Self($value); )*

            /// Every named value, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
        }
    };
}

c_enum! {
    /// `mx_return_t` (`enum mx_return_code`): result of every MX call.
    MxReturn {
        /// `MX_SUCCESS`
        SUCCESS = 0,
        /// `MX_BAD_BAD_BAD`
        BAD_BAD_BAD = 1,
        /// `MX_FAILURE`
        FAILURE = 2,
        /// `MX_ALREADY_INITIALIZED`
        ALREADY_INITIALIZED = 3,
        /// `MX_NOT_INITIALIZED`
        NOT_INITIALIZED = 4,
        /// `MX_NO_DEV`
        NO_DEV = 5,
        /// `MX_NO_DRIVER`
        NO_DRIVER = 6,
        /// `MX_NO_PERM`
        NO_PERM = 7,
        /// `MX_BOARD_UNKNOWN`
        BOARD_UNKNOWN = 8,
        /// `MX_BAD_ENDPOINT`
        BAD_ENDPOINT = 9,
        /// `MX_BAD_SEG_LIST`
        BAD_SEG_LIST = 10,
        /// `MX_BAD_SEG_MEM`
        BAD_SEG_MEM = 11,
        /// `MX_BAD_SEG_CNT`
        BAD_SEG_CNT = 12,
        /// `MX_BAD_REQUEST`
        BAD_REQUEST = 13,
        /// `MX_BAD_MATCH_MASK`
        BAD_MATCH_MASK = 14,
        /// `MX_NO_RESOURCES`
        NO_RESOURCES = 15,
        /// `MX_BAD_ADDR_LIST`
        BAD_ADDR_LIST = 16,
        /// `MX_BAD_ADDR_COUNT`
        BAD_ADDR_COUNT = 17,
        /// `MX_BAD_ROOT`
        BAD_ROOT = 18,
        /// `MX_NOT_COMPLETED`
        NOT_COMPLETED = 19,
        /// `MX_BUSY`
        BUSY = 20,
        /// `MX_BAD_INFO_KEY`
        BAD_INFO_KEY = 21,
        /// `MX_BAD_INFO_VAL`
        BAD_INFO_VAL = 22,
        /// `MX_BAD_NIC`
        BAD_NIC = 23,
        /// `MX_BAD_PARAM_LIST`
        BAD_PARAM_LIST = 24,
        /// `MX_BAD_PARAM_NAME`
        BAD_PARAM_NAME = 25,
        /// `MX_BAD_PARAM_VAL`
        BAD_PARAM_VAL = 26,
        /// `MX_BAD_HOSTNAME_ARGS`
        BAD_HOSTNAME_ARGS = 27,
        /// `MX_HOST_NOT_FOUND`
        HOST_NOT_FOUND = 28,
        /// `MX_REQUEST_PENDING`
        REQUEST_PENDING = 29,
        /// `MX_TIMEOUT`
        TIMEOUT = 30,
        /// `MX_NO_MATCH`
        NO_MATCH = 31,
        /// `MX_BAD_ENDPOINT_ID`
        BAD_ENDPOINT_ID = 32,
        /// `MX_CONNECTION_FAILED`
        CONNECTION_FAILED = 33,
        /// `MX_BAD_CONNECTION_KEY`
        BAD_CONNECTION_KEY = 34,
        /// `MX_BAD_INFO_LENGTH`
        BAD_INFO_LENGTH = 35,
        /// `MX_NIC_NOT_FOUND`
        NIC_NOT_FOUND = 36,
        /// `MX_BAD_KERNEL_VERSION`
        BAD_KERNEL_VERSION = 37,
        /// `MX_BAD_LIB_VERSION`
        BAD_LIB_VERSION = 38,
        /// `MX_NIC_DEAD`
        NIC_DEAD = 39,
        /// `MX_CANCEL_NOT_SUPPORTED`
        CANCEL_NOT_SUPPORTED = 40,
        /// `MX_CLOSE_IN_HANDLER`
        CLOSE_IN_HANDLER = 41,
        /// `MX_BAD_MATCHING_FOR_CONTEXT_ID_MASK`
        BAD_MATCHING_FOR_CONTEXT_ID_MASK = 42,
        /// `MX_NOT_SUPPORTED_WITH_CONTEXT_ID`
        NOT_SUPPORTED_WITH_CONTEXT_ID = 43,
    }
}

c_enum! {
    /// `mx_status_code_t` (`enum mx_status_code`): outcome of a request.
    MxStatusCode {
        /// `MX_STATUS_SUCCESS`
        SUCCESS = 0,
        /// `MX_STATUS_PENDING`
        PENDING = 1,
        /// `MX_STATUS_BUFFERED`
        BUFFERED = 2,
        /// `MX_STATUS_REJECTED`
        REJECTED = 3,
        /// `MX_STATUS_TIMEOUT`
        TIMEOUT = 4,
        /// `MX_STATUS_TRUNCATED`
        TRUNCATED = 5,
        /// `MX_STATUS_CANCELLED`
        CANCELLED = 6,
        /// `MX_STATUS_ENDPOINT_UNKNOWN`
        ENDPOINT_UNKNOWN = 7,
        /// `MX_STATUS_ENDPOINT_CLOSED`
        ENDPOINT_CLOSED = 8,
        /// `MX_STATUS_ENDPOINT_UNREACHABLE`
        ENDPOINT_UNREACHABLE = 9,
        /// `MX_STATUS_BAD_SESSION`
        BAD_SESSION = 10,
        /// `MX_STATUS_BAD_KEY`
        BAD_KEY = 11,
        /// `MX_STATUS_BAD_ENDPOINT`
        BAD_ENDPOINT = 12,
        /// `MX_STATUS_BAD_RDMAWIN`
        BAD_RDMAWIN = 13,
        /// `MX_STATUS_ABORTED`
        ABORTED = 14,
        /// `MX_STATUS_EVENTQ_FULL`
        EVENTQ_FULL = 15,
        /// `MX_STATUS_NO_RESOURCES`
        NO_RESOURCES = 16,
    }
}

c_enum! {
    /// `mx_param_key_t` (`enum mx_param_key`): key of an [`MxParam`].
    MxParamKey {
        /// `MX_PARAM_ERROR_HANDLER`: `val.error_handler` is the endpoint's handler.
        ERROR_HANDLER = 0,
        /// `MX_PARAM_UNEXP_QUEUE_MAX`: accepted and ignored.
        UNEXP_QUEUE_MAX = 1,
        /// `MX_PARAM_CONTEXT_ID`: `val.context_id` describes the context id bits.
        CONTEXT_ID = 2,
    }
}

c_enum! {
    /// `mx_get_info_key_t` (`enum mx_get_info_key`): what `mx_get_info` returns.
    MxGetInfoKey {
        /// `MX_NIC_COUNT` (u32)
        NIC_COUNT = 1,
        /// `MX_NIC_IDS` (u64 array, 0-terminated)
        NIC_IDS = 2,
        /// `MX_MAX_NATIVE_ENDPOINTS` (u32)
        MAX_NATIVE_ENDPOINTS = 3,
        /// `MX_NATIVE_REQUESTS` (u32)
        NATIVE_REQUESTS = 4,
        /// `MX_COUNTERS_COUNT` (u32)
        COUNTERS_COUNT = 5,
        /// `MX_COUNTERS_LABELS` (array of 128-byte strings)
        COUNTERS_LABELS = 6,
        /// `MX_COUNTERS_VALUES` (u32 array)
        COUNTERS_VALUES = 7,
        /// `MX_PRODUCT_CODE` (string)
        PRODUCT_CODE = 8,
        /// `MX_PART_NUMBER` (string)
        PART_NUMBER = 9,
        /// `MX_SERIAL_NUMBER` (string)
        SERIAL_NUMBER = 10,
        /// `MX_PORT_COUNT` (u32)
        PORT_COUNT = 11,
        /// `MX_PIO_SEND_MAX` (u32)
        PIO_SEND_MAX = 12,
        /// `MX_COPY_SEND_MAX` (u32)
        COPY_SEND_MAX = 13,
        /// `MX_NUMA_NODE` (u32)
        NUMA_NODE = 14,
        /// `MX_NET_TYPE` (u32, an [`MxNetType`])
        NET_TYPE = 15,
        /// `MX_LINE_SPEED` (u32, an [`MxLineSpeed`])
        LINE_SPEED = 16,
    }
}

c_enum! {
    /// `mx_line_speed_t` (`enum mx_line_speed`).
    MxLineSpeed {
        /// `MX_SPEED_2G`
        SPEED_2G = 0,
        /// `MX_SPEED_10G`
        SPEED_10G = 1,
        /// `MX_SPEED_OPEN_MX`
        SPEED_OPEN_MX = 2,
    }
}

c_enum! {
    /// `enum mx_net_type`.
    MxNetType {
        /// `MX_NET_MYRI`
        MYRI = 0,
        /// `MX_NET_ETHER`
        ETHER = 1,
    }
}

c_enum! {
    /// `mx_unexp_handler_action_t`: what an unexpected handler asks for.
    MxUnexpHandlerAction {
        /// `MX_RECV_CONTINUE`: match again, else queue as unexpected.
        CONTINUE = 0,
        /// `MX_RECV_FINISHED`: drop the message.
        FINISHED = 1,
    }
}

c_enum! {
    /// `mx_host_type_t` (`mx_raw.h`): kind of host behind a raw route.
    MxHostType {
        /// `MX_HOST_GM`
        GM = 1,
        /// `MX_HOST_XM`
        XM = 2,
        /// `MX_HOST_MX`
        MX = 3,
        /// `MX_HOST_MXvM`
        MXVM = 4,
    }
}

/// `mx_error_handler_t`: `mx_return_t (*)(char *msg, mx_return_t ret)`;
/// `None` is a NULL pointer.
pub type MxErrorHandler = Option<unsafe extern "C" fn(*mut c_char, MxReturn) -> MxReturn>;

/// `mx_unexp_handler_t`: `(ctx, source, match, length, data_if_available)`;
/// `None` is a NULL pointer (no handler).
pub type MxUnexpHandler = Option<
    unsafe extern "C" fn(
        *mut c_void,
        MxEndpointAddr,
        u64,
        u32,
        *mut c_void,
    ) -> MxUnexpHandlerAction,
>;

/// `mx_matching_callback_t`: `void (*)(void *ctx, uint64_t match, int length)`
/// (only used by the obsolete `mx_register_unexp_callback`).
pub type MxMatchingCallback = Option<unsafe extern "C" fn(*mut c_void, u64, c_int)>;

/// `mx_endpoint_addr_t`: 16 opaque bytes, passed by value.
/// See [`super::addr`] for how the library packs it.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MxEndpointAddr {
    /// The raw content.
    pub stuff: [u64; 2],
}

/// `mx_segment_t`: one piece of a message buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MxSegment {
    /// Start of the piece.
    pub segment_ptr: *mut c_void,
    /// Length of the piece in bytes.
    pub segment_length: u32,
}

/// `mx_status_t`: completion information of a request.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MxStatus {
    /// Outcome.
    pub code: MxStatusCode,
    /// Sender (receives), or the new address (iconnect).
    pub source: MxEndpointAddr,
    /// Match information of the message.
    pub match_info: u64,
    /// Length the sender sent.
    pub msg_length: u32,
    /// Bytes actually transferred.
    pub xfer_length: u32,
    /// Context given when the request was posted.
    pub context: *mut c_void,
}

/// The `context_id` member of [`MxParamVal`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MxContextIdParam {
    /// Width of the context id in bits.
    pub bits: u8,
    /// Position of its lowest bit in the match information.
    pub shift: u8,
}

/// The value union of [`MxParam`].
#[repr(C)]
#[derive(Clone, Copy)]
pub union MxParamVal {
    /// For [`MxParamKey::ERROR_HANDLER`].
    pub error_handler: MxErrorHandler,
    /// For [`MxParamKey::UNEXP_QUEUE_MAX`].
    pub unexp_queue_max: u32,
    /// For [`MxParamKey::CONTEXT_ID`].
    pub context_id: MxContextIdParam,
}

/// `mx_param_t`: one optional parameter of `mx_open_endpoint`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MxParam {
    /// Which member of `val` is meaningful.
    pub key: MxParamKey,
    /// The value.
    pub val: MxParamVal,
}

/// `mx_mapper_state_t` (`mx_io.h`): mapper information of a board.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MxMapperState {
    /// Board number.
    pub board_number: u32,
    /// MAC address of the mapper.
    pub mapper_mac: [u8; 6],
    /// Input port.
    pub iport: u16,
    /// Map version.
    pub map_version: u32,
    /// Number of hosts in the map.
    pub num_hosts: u32,
    /// Non-zero once the network is configured.
    pub network_configured: u32,
    /// Non-zero once routes are valid.
    pub routes_valid: u32,
    /// Mapper level.
    pub level: u32,
    /// Flags.
    pub flags: u32,
}

// Every C enumeration is 4 bytes.
const _: () = {
    assert!(size_of::<MxReturn>() == 4);
    assert!(size_of::<MxStatusCode>() == 4);
    assert!(size_of::<MxParamKey>() == 4);
    assert!(size_of::<MxGetInfoKey>() == 4);
    assert!(size_of::<MxLineSpeed>() == 4);
    assert!(size_of::<MxNetType>() == 4);
    assert!(size_of::<MxUnexpHandlerAction>() == 4);
    assert!(size_of::<MxHostType>() == 4);
    assert!(size_of::<MxErrorHandler>() == size_of::<*const c_void>());
    assert!(size_of::<MxUnexpHandler>() == size_of::<*const c_void>());

    assert!(size_of::<MxEndpointAddr>() == MX_SIZEOF_ADDR);
    assert!(size_of::<MxContextIdParam>() == 2);

    assert!(size_of::<MxMapperState>() == 36);
    assert!(align_of::<MxMapperState>() == 4);
    assert!(offset_of!(MxMapperState, board_number) == 0);
    assert!(offset_of!(MxMapperState, mapper_mac) == 4);
    assert!(offset_of!(MxMapperState, iport) == 10);
    assert!(offset_of!(MxMapperState, map_version) == 12);
    assert!(offset_of!(MxMapperState, num_hosts) == 16);
    assert!(offset_of!(MxMapperState, network_configured) == 20);
    assert!(offset_of!(MxMapperState, routes_valid) == 24);
    assert!(offset_of!(MxMapperState, level) == 28);
    assert!(offset_of!(MxMapperState, flags) == 32);

    assert!(offset_of!(MxStatus, code) == 0);
    assert!(offset_of!(MxSegment, segment_ptr) == 0);
    assert!(offset_of!(MxParam, key) == 0);
};

// LP64 layouts (x86-64 and every other 64-bit target).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(align_of::<MxEndpointAddr>() == 8);

    assert!(size_of::<MxSegment>() == 16);
    assert!(offset_of!(MxSegment, segment_length) == 8);

    assert!(size_of::<MxStatus>() == 48);
    assert!(offset_of!(MxStatus, source) == 8);
    assert!(offset_of!(MxStatus, match_info) == 24);
    assert!(offset_of!(MxStatus, msg_length) == 32);
    assert!(offset_of!(MxStatus, xfer_length) == 36);
    assert!(offset_of!(MxStatus, context) == 40);

    assert!(size_of::<MxParamVal>() == 8);
    assert!(size_of::<MxParam>() == 16);
    assert!(offset_of!(MxParam, val) == 8);
};

// i386 layouts (u64 is 4-aligned inside structures).
#[cfg(target_arch = "x86")]
const _: () = {
    assert!(size_of::<MxSegment>() == 8);
    assert!(offset_of!(MxSegment, segment_length) == 4);

    assert!(size_of::<MxStatus>() == 40);
    assert!(offset_of!(MxStatus, source) == 4);
    assert!(offset_of!(MxStatus, match_info) == 20);
    assert!(offset_of!(MxStatus, msg_length) == 28);
    assert!(offset_of!(MxStatus, xfer_length) == 32);
    assert!(offset_of!(MxStatus, context) == 36);

    assert!(size_of::<MxParam>() == 8);
    assert!(offset_of!(MxParam, val) == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_tables_are_dense() {
        for (i, r) in MxReturn::ALL.iter().enumerate() {
            assert_eq!(r.0 as usize, i);
        }
        assert_eq!(MxReturn::ALL.len(), 44);
        for (i, s) in MxStatusCode::ALL.iter().enumerate() {
            assert_eq!(s.0 as usize, i);
        }
        assert_eq!(MxStatusCode::ALL.len(), 17);
        assert_eq!(MxGetInfoKey::ALL.len(), 16);
        assert_eq!(MxGetInfoKey::LINE_SPEED.0, 16);
    }
}
