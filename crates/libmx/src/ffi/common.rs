//! Helpers shared by the engine-backed entry points: endpoint look-up,
//! timeouts, out-pointers, status conversion, completion errors, and the
//! bridge to the application's unexpected-message handler.

use core::cell::Cell;
use core::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::{Completion, Core, HandlerCtx, UnexpAction, UnexpHandler, UnexpInfo};

use super::error::error;
use super::handle::{lookup, pack_addr, EpShared};
use super::init::check_initialized;
use super::segbuf::SegBuf;
use super::strings::strstatus;
use super::types::{
    MxEndpointAddr, MxEndpointPtr, MxReturn, MxStatus, MxStatusCode, MxUnexpHandlerAction,
};

/// The open endpoint behind `ptr`, or the error to return (through the
/// process-wide handler): `MX_NOT_INITIALIZED` before `mx_init`,
/// `MX_BAD_ENDPOINT` for NULL, closed or unknown handles.
pub fn get_ep(ptr: MxEndpointPtr, func: &str) -> Result<Arc<EpShared>, MxReturn> {
    check_initialized(func)?;
    match lookup(ptr) {
        Some(ep) if !ep.is_closed() => Ok(ep),
        _ => Err(error(
            MxReturn::BAD_ENDPOINT,
            &format!("{func}: not an open endpoint"),
        )),
    }
}

/// An MX timeout in milliseconds: `MX_INFINITE` (0) is forever.
pub fn timeout_ms(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// Store `v` through an out-pointer the caller checked for NULL.
///
/// # Safety
/// `p` must be non-NULL and valid for a (possibly unaligned) write of `T`.
pub unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: per the contract.
    unsafe { p.write_unaligned(v) }
}

/// Read an in-pointer the caller checked for NULL.
///
/// # Safety
/// `p` must be non-NULL and valid for a (possibly unaligned) read of `T`.
pub unsafe fn get<T: Copy>(p: *const T) -> T {
    // SAFETY: per the contract.
    unsafe { p.read_unaligned() }
}

/// The `mx_status_t` of a finished request (taken under the endpoint lock:
/// the source's endpoint id is looked up in the core).
pub fn status_of(ep: &EpShared, core: &Core<SegBuf>, c: &Completion<SegBuf>) -> MxStatus {
    MxStatus {
        code: MxStatusCode(c.status as u32),
        source: ep.pack_addr_in(core, c.source),
        match_info: c.match_info,
        msg_length: c.msg_length,
        xfer_length: c.xfer_length,
        context: c.context as usize as *mut c_void,
    }
}

/// A request completed with an error status (NACK, timeout, truncation,
/// refused connect): tell the endpoint's error handler. The status itself
/// is reported unchanged and the handler's return value is ignored (the
/// call that reported the completion succeeded); with the fatal default
/// the process ends here.
pub fn report_status(ep: &EpShared, func: &str, st: &MxStatus) {
    if st.code == MxStatusCode::SUCCESS {
        return;
    }
    let code = if st.code == MxStatusCode::TIMEOUT {
        MxReturn::TIMEOUT
    } else {
        MxReturn::FAILURE
    };
    let what = strstatus(st.code).to_string_lossy();
    let _ = ep.fail(
        code,
        &format!(
            "{func}: request completed with status {} ({what}), match {:#x}, length {}/{}",
            st.code.0, st.match_info, st.xfer_length, st.msg_length
        ),
    );
}

thread_local! {
    /// While this thread runs an unexpected-message handler: the endpoint's
    /// slot and its `HandlerCtx` (the endpoint lock is held by this thread
    /// then, so calls on that endpoint must go through the context).
    static IN_HANDLER: Cell<Option<(u8, *mut c_void)>> = const { Cell::new(None) };
}

/// Unexpected handlers running now, in all threads. Every entry point asks
/// whether its thread is inside one; this count answers "no" without the
/// thread-local lookup (a `__tls_get_addr` call in a shared library) while
/// no handler runs anywhere. Relaxed is enough: a thread inside a handler
/// made its own increment, and sees it.
static HANDLERS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Whether this thread is inside the unexpected handler of the endpoint in
/// `slot`.
#[inline]
pub fn in_handler(slot: u8) -> bool {
    HANDLERS_RUNNING.load(Ordering::Relaxed) != 0
        && IN_HANDLER.with(|h| h.get().is_some_and(|(s, _)| s == slot))
}

/// Whether this thread runs any endpoint's unexpected handler.
#[inline]
pub fn in_any_handler() -> bool {
    HANDLERS_RUNNING.load(Ordering::Relaxed) != 0 && IN_HANDLER.with(|h| h.get().is_some())
}

/// Run `f(ctx, arg)` with the `HandlerCtx` of the handler this thread is
/// running for the endpoint in `slot`; `Err(arg)` when not inside it.
pub fn with_handler_ctx<T, R>(
    slot: u8,
    arg: T,
    f: impl FnOnce(&mut HandlerCtx<'_, SegBuf>, T) -> R,
) -> Result<R, T> {
    let Some((s, p)) = IN_HANDLER.with(Cell::get) else {
        return Err(arg);
    };
    if s != slot {
        return Err(arg);
    }
    // SAFETY: `p` was set by `CUnexp::unexpected` below from a live
    // `&mut HandlerCtx` on this very thread, and is cleared before that
    // borrow ends; this call is nested inside it (same thread, inside the
    // C handler), and nothing else uses the context meanwhile.
    let ctx = unsafe { &mut *p.cast::<HandlerCtx<'_, SegBuf>>() };
    Ok(f(ctx, arg))
}

/// `Err(..)` when this thread runs the unexpected handler of `ep`, where
/// only `mx_irecv` (and progression control) can be served: the endpoint
/// lock is held by the handler's caller.
pub fn not_in_handler(ep: &EpShared, func: &str) -> Result<(), MxReturn> {
    if in_handler(ep.slot) {
        Err(ep.fail(
            MxReturn::FAILURE,
            &format!("{func}: not allowed inside the endpoint's unexpected handler"),
        ))
    } else {
        Ok(())
    }
}

/// A zero-length message's `data_if_available` (non-NULL, never read).
static EMPTY: [u8; 1] = [0];

/// The C unexpected handler of an endpoint.
pub struct CUnexp {
    /// The application's function.
    pub func: unsafe extern "C" fn(
        *mut c_void,
        MxEndpointAddr,
        u64,
        u32,
        *mut c_void,
    ) -> MxUnexpHandlerAction,
    /// Its context argument.
    pub ctx: *mut c_void,
    /// The endpoint's slot.
    pub slot: u8,
}

// SAFETY: the handler is a C function and an opaque context pointer given
// by the application, which MX calls from whichever thread makes progress;
// we never dereference the context.
unsafe impl Send for CUnexp {}

impl UnexpHandler<SegBuf> for CUnexp {
    fn unexpected(
        &mut self,
        info: &UnexpInfo<'_>,
        hctx: &mut HandlerCtx<'_, SegBuf>,
    ) -> UnexpAction {
        let source = pack_addr(
            self.slot,
            hctx.partner_info(info.source).map(|p| p.endpoint),
            info.source,
        );
        let data = match info.data {
            Some([]) => EMPTY.as_ptr().cast_mut().cast::<c_void>(),
            Some(d) => d.as_ptr().cast_mut().cast::<c_void>(),
            None => core::ptr::null_mut(),
        };
        let me = (hctx as *mut HandlerCtx<'_, SegBuf>).cast::<c_void>();
        HANDLERS_RUNNING.fetch_add(1, Ordering::Relaxed);
        let prev = IN_HANDLER.with(|h| h.replace(Some((self.slot, me))));
        // SAFETY: the application registered `func` with the
        // `mx_unexp_handler_t` signature; `data` is NULL or points to
        // `msg_length` readable bytes for the duration of the call (the
        // handler must not write through it).
        let act = unsafe { (self.func)(self.ctx, source, info.match_info, info.msg_length, data) };
        IN_HANDLER.with(|h| h.set(prev));
        HANDLERS_RUNNING.fetch_sub(1, Ordering::Relaxed);
        if act == MxUnexpHandlerAction::FINISHED {
            UnexpAction::Finished
        } else {
            UnexpAction::Continue
        }
    }
}
