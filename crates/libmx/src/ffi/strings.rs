//! `mx_strerror` and `mx_strstatus`: static, NUL-terminated descriptions of
//! every return and status code (unknown codes get a generic text).

use core::ffi::{c_char, CStr};

use super::types::{MxReturn, MxStatusCode};

/// Description of a return code (a static string; never fails).
pub fn strerror(ret: MxReturn) -> &'static CStr {
    match ret {
        MxReturn::SUCCESS => c"Success",
        MxReturn::BAD_BAD_BAD => c"Internal library error",
        MxReturn::FAILURE => c"Failure",
        MxReturn::ALREADY_INITIALIZED => c"Library already initialized",
        MxReturn::NOT_INITIALIZED => c"Library not initialized",
        MxReturn::NO_DEV => c"No device",
        MxReturn::NO_DRIVER => c"No driver (is the Xen2MX backend running?)",
        MxReturn::NO_PERM => c"Permission denied",
        MxReturn::BOARD_UNKNOWN => c"Unknown board number",
        MxReturn::BAD_ENDPOINT => c"Invalid endpoint",
        MxReturn::BAD_SEG_LIST => c"Invalid segment list",
        MxReturn::BAD_SEG_MEM => c"Invalid segment memory",
        MxReturn::BAD_SEG_CNT => c"Too many segments",
        MxReturn::BAD_REQUEST => c"Invalid request",
        MxReturn::BAD_MATCH_MASK => c"Match information has bits outside the mask",
        MxReturn::NO_RESOURCES => c"Out of resources",
        MxReturn::BAD_ADDR_LIST => c"Invalid address list",
        MxReturn::BAD_ADDR_COUNT => c"Invalid address count",
        MxReturn::BAD_ROOT => c"Invalid root index",
        MxReturn::NOT_COMPLETED => c"Operations still pending",
        MxReturn::BUSY => c"Resource busy",
        MxReturn::BAD_INFO_KEY => c"Unknown information key",
        MxReturn::BAD_INFO_VAL => c"Invalid information buffer",
        MxReturn::BAD_NIC => c"Invalid NIC id",
        MxReturn::BAD_PARAM_LIST => c"Invalid parameter list",
        MxReturn::BAD_PARAM_NAME => c"Unknown parameter key",
        MxReturn::BAD_PARAM_VAL => c"Invalid parameter value",
        MxReturn::BAD_HOSTNAME_ARGS => c"Invalid hostname arguments",
        MxReturn::HOST_NOT_FOUND => c"Host not found",
        MxReturn::REQUEST_PENDING => c"Request still pending",
        MxReturn::TIMEOUT => c"Timed out",
        MxReturn::NO_MATCH => c"No matching message",
        MxReturn::BAD_ENDPOINT_ID => c"Endpoint id out of range",
        MxReturn::CONNECTION_FAILED => c"Connection failed (no such endpoint open)",
        MxReturn::BAD_CONNECTION_KEY => c"Connection refused (bad key)",
        MxReturn::BAD_INFO_LENGTH => c"Information buffer too small",
        MxReturn::NIC_NOT_FOUND => c"NIC not found in the peer table",
        MxReturn::BAD_KERNEL_VERSION => c"Incompatible driver or backend version",
        MxReturn::BAD_LIB_VERSION => c"Application built for another MX API version",
        MxReturn::NIC_DEAD => c"NIC is dead",
        MxReturn::CANCEL_NOT_SUPPORTED => c"Cancel not supported for this request",
        MxReturn::CLOSE_IN_HANDLER => c"Endpoint closed from inside a handler",
        MxReturn::BAD_MATCHING_FOR_CONTEXT_ID_MASK => {
            c"Receive mask does not cover the context id bits"
        }
        MxReturn::NOT_SUPPORTED_WITH_CONTEXT_ID => c"Not supported with context ids",
        _ => c"Unknown error code",
    }
}

/// Description of a status code (a static string; never fails).
pub fn strstatus(code: MxStatusCode) -> &'static CStr {
    match code {
        MxStatusCode::SUCCESS => c"Success",
        MxStatusCode::PENDING => c"Pending",
        MxStatusCode::BUFFERED => c"Buffered",
        MxStatusCode::REJECTED => c"Rejected",
        MxStatusCode::TIMEOUT => c"Timed out",
        MxStatusCode::TRUNCATED => c"Message truncated",
        MxStatusCode::CANCELLED => c"Cancelled",
        MxStatusCode::ENDPOINT_UNKNOWN => c"Remote endpoint unknown",
        MxStatusCode::ENDPOINT_CLOSED => c"Remote endpoint closed",
        MxStatusCode::ENDPOINT_UNREACHABLE => c"Remote endpoint unreachable",
        MxStatusCode::BAD_SESSION => c"Bad session (peer restarted?)",
        MxStatusCode::BAD_KEY => c"Bad connection key",
        MxStatusCode::BAD_ENDPOINT => c"Bad remote endpoint id",
        MxStatusCode::BAD_RDMAWIN => c"Bad RDMA window",
        MxStatusCode::ABORTED => c"Aborted by the peer",
        MxStatusCode::EVENTQ_FULL => c"Event queue full",
        MxStatusCode::NO_RESOURCES => c"Out of resources",
        _ => c"Unknown status code",
    }
}

/// `const char *mx_strerror(mx_return_t)`: never NULL.
#[no_mangle]
pub extern "C" fn mx_strerror(ret: MxReturn) -> *const c_char {
    strerror(ret).as_ptr()
}

/// `const char *mx_strstatus(mx_status_code_t)`: never NULL.
#[no_mangle]
pub extern "C" fn mx_strstatus(code: MxStatusCode) -> *const c_char {
    strstatus(code).as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_has_a_distinct_description() {
        let errs: HashSet<_> = MxReturn::ALL.iter().map(|&r| strerror(r)).collect();
        assert_eq!(errs.len(), MxReturn::ALL.len());
        assert!(!errs.contains(strerror(MxReturn(1000))));
        let sts: HashSet<_> = MxStatusCode::ALL.iter().map(|&s| strstatus(s)).collect();
        assert_eq!(sts.len(), MxStatusCode::ALL.len());
        assert!(!sts.contains(strstatus(MxStatusCode(u32::MAX))));
    }
}
