//! The `libmyriexpress` C ABI: what programs built against the MX 0x301
//! `myriexpress.h` call (our headers are in `crates/libmx/include/`).
//!
//! The engine-backed entry points run on [`crate::endpoint::Endpoint`]
//! over [`segbuf::SegBuf`] (the application's segments):
//! - [`handle`]: what `mx_endpoint_t`, `mx_request_t` and the partner
//!   handle of an address are (see there for the encodings);
//! - [`endpoint_api`]: open/close, wakeup, progression, request timeouts,
//!   the unexpected handler; [`xfer`]: isend/issend/irecv/cancel/forget;
//!   [`completion`]: test/wait/test_any/wait_any/peek/probe/ibuffered/
//!   context ([`poll_policy`]: what their polling forms do after an
//!   empty poll); [`connect`]: connections and addresses; [`info`]:
//!   `mx_get_info` and naming; [`raw`]: the raw API (fabric mappers);
//! - [`common`]: shared helpers and the unexpected-handler bridge.
//!
//! The parts that need no protocol engine:
//! - [`types`]: `#[repr(C)]` mirrors of every public type, with
//!   compile-time layout checks, and the numeric constants;
//! - [`mod@error`]: the error-handler machinery and [`error()`], through which
//!   every failing entry point reports;
//! - [`guard`]: [`ffi_guard`] / [`ffi_guard_or`], which keep panics from
//!   crossing the C boundary;
//! - [`init`]: `mx__init_api` / `mx_finalize` and [`is_initialized`];
//! - [`strings`]: `mx_strerror` / `mx_strstatus`;
//! - [`addr`]: how an `mx_endpoint_addr_t` is packed;
//! - [`obsolete`]: obsolete entry points and MPI-probed internals;
//! - [`symver`]: the ELF symbol versions of the reference library.
//!
//! # Conventions for entry points
//!
//! - Signature: `#[no_mangle] pub unsafe extern "C" fn mx_xxx(..) -> MxReturn`
//!   (`unsafe` whenever it dereferences a pointer argument, with a
//!   `# Safety` section), body wrapped in `ffi_guard("mx_xxx", || ..)`.
//! - Failures: `return error(MxReturn::X, "mx_xxx: what went wrong")` -- the
//!   handler decides (fatal by default) and its return value is returned.
//! - Symbols of [`symver::VERSIONED_SYMBOLS`] also need
//!   `mx_symbol_version!("mx_xxx", "MX_0.9x")` in the same module.
//! - NULL pointers, closest MX code:
//!
//! | NULL argument                                   | code                  |
//! |-------------------------------------------------|-----------------------|
//! | endpoint (`mx_endpoint_t`, raw endpoint)        | `MX_BAD_ENDPOINT`     |
//! | request pointer / `*request`                    | `MX_BAD_REQUEST`      |
//! | segment list with count > 0                     | `MX_BAD_SEG_LIST`     |
//! | params with count > 0                           | `MX_BAD_PARAM_LIST`   |
//! | `mx_get_info` out buffer                        | `MX_BAD_INFO_VAL`     |
//! | hostname (`mx_hostname_to_nic_id`, ...)         | `MX_BAD_HOSTNAME_ARGS`|
//! | address out-pointer (`mx_connect`, ...)         | `MX_BAD_ADDR_LIST`    |
//! | any other out-pointer (result, status, nic_id,  | `MX_BAD_PARAM_VAL`    |
//! | endpoint id, context, board handle, ...)        |                       |

pub mod addr;
pub mod common;
pub mod completion;
pub mod connect;
mod core_errors;
pub mod endpoint_api;
pub mod error;
pub mod guard;
pub mod handle;
pub mod info;
pub mod init;
pub mod obsolete;
pub mod poll_policy;
pub mod raw_api;
pub mod raw_routes;
pub mod segbuf;
pub mod strings;
pub mod symver;
pub mod types;
pub mod xfer;

pub use error::{error, error_with, mx_set_error_handler, MX_ERRORS_ARE_FATAL, MX_ERRORS_RETURN};
pub use guard::{ffi_guard, ffi_guard_or};
pub use init::{check_initialized, is_initialized};
pub use types::*;
