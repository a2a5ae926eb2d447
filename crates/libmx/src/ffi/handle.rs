//! What the opaque C handles are: open endpoints (`mx_endpoint_t`), request
//! handles (`mx_request_t`) and the partner handle inside an
//! `mx_endpoint_addr_t`.
//!
//! # Endpoints
//!
//! An open endpoint is an [`EpShared`] in an `Arc`; `mx_endpoint_t` is the
//! address of that allocation. It is never dereferenced as given: every
//! entry point looks the value up in the process-wide table of open
//! endpoints (at most [`MAX_SLOTS`]), so a stale or garbage handle gets
//! `MX_BAD_ENDPOINT` instead of a crash, and a thread still using an
//! endpoint that another thread closes keeps a valid reference until its
//! call returns.
//!
//! # Requests and addresses carry the endpoint's slot
//!
//! `mx_context(request)`, `mx_decompose_endpoint_addr(addr)` and the address
//! contexts take no endpoint, so request and partner handles name their
//! endpoint's slot in the table (1..=255, never 0):
//!
//! | bits  | `mx_request_t` value   | partner handle (address bytes 0..8) |
//! |-------|------------------------|-------------------------------------|
//! | 0-23  | core request index     | core partner index                  |
//! | 24-31 | endpoint slot (1..255) | endpoint slot (1..255)              |
//! | 32-63 | request generation     | partner generation                  |
//!
//! A request handle is therefore never NULL; a stale one (taken, freed,
//! or from a closed endpoint) is refused by the generation check of the
//! core with `MX_BAD_REQUEST`.

use core::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::core::{Core, EndpointAddr, ReqId};
use crate::endpoint::Endpoint;

use super::addr::AddrParts;
use super::error::{current_handler, error_with};
use super::segbuf::SegBuf;
use super::types::{MxEndpointAddr, MxEndpointPtr, MxErrorHandler, MxRequestPtr, MxReturn};

/// Most endpoints a process may have open at once.
pub const MAX_SLOTS: usize = 255;
/// Largest core index (request or partner) a handle can carry.
pub const MAX_INDEX: u32 = (1 << 24) - 1;

/// One open endpoint as the C ABI sees it.
pub struct EpShared {
    /// The endpoint (shell + core).
    pub ep: Endpoint<SegBuf>,
    /// Slot in the table, 1..=255 (what handles carry).
    pub slot: u8,
    /// `MX_PARAM_ERROR_HANDLER`, if given at open.
    pub handler: Option<MxErrorHandler>,
    /// Set by `mx_close_endpoint`: waits in progress give up.
    pub closed: AtomicBool,
}

impl EpShared {
    /// Report a failure through the endpoint's handler (the one given at
    /// open, else the process-wide one) and return what it returns.
    pub fn fail(&self, ret: MxReturn, msg: &str) -> MxReturn {
        if ret == MxReturn::SUCCESS {
            return ret;
        }
        error_with(self.handler.unwrap_or_else(current_handler), ret, msg)
    }

    /// Whether `mx_close_endpoint` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The C handle of this endpoint.
    pub fn as_ptr(self: &Arc<Self>) -> MxEndpointPtr {
        Arc::as_ptr(self).cast_mut().cast()
    }

    /// Encode a request of this endpoint.
    pub fn req_handle(&self, id: ReqId) -> Option<MxRequestPtr> {
        (id.index <= MAX_INDEX).then(|| {
            let v = u64::from(id.index) | (u64::from(self.slot) << 24) | (u64::from(id.gen) << 32);
            v as usize as MxRequestPtr
        })
    }

    /// Decode a request handle of this endpoint (`None`: NULL, garbage or
    /// another endpoint's).
    pub fn req_id(&self, req: MxRequestPtr) -> Option<ReqId> {
        let (slot, id) = split_req(req)?;
        (slot == self.slot).then_some(id)
    }

    /// Pack a core address of this endpoint, with the remote endpoint id
    /// looked up in `core` (0 for a partner that is gone).
    pub fn pack_addr_in(&self, core: &Core<SegBuf>, a: EndpointAddr) -> MxEndpointAddr {
        pack_addr(self.slot, core.partner_info(a).map(|p| p.endpoint), a)
    }

    /// Unpack an address of this endpoint (`None`: another endpoint's).
    pub fn unpack_addr(&self, addr: &MxEndpointAddr) -> Option<EndpointAddr> {
        let (slot, a) = split_addr(addr)?;
        (slot == self.slot).then_some(a)
    }
}

/// Pack a core address of the endpoint in `slot` into an
/// `mx_endpoint_addr_t` (`endpoint`: the remote endpoint id, if known).
pub fn pack_addr(slot: u8, endpoint: Option<u8>, a: EndpointAddr) -> MxEndpointAddr {
    let handle =
        u64::from(a.partner & MAX_INDEX) | (u64::from(slot) << 24) | (u64::from(a.gen) << 32);
    MxEndpointAddr::pack(AddrParts {
        partner: handle,
        endpoint_id: endpoint.map_or(0, u32::from),
        session: a.session,
    })
}

/// Split a request handle into (slot, core id).
pub fn split_req(req: MxRequestPtr) -> Option<(u8, ReqId)> {
    let v = req as usize as u64;
    let slot = ((v >> 24) & 0xff) as u8;
    (slot != 0).then_some((
        slot,
        ReqId {
            index: (v as u32) & MAX_INDEX,
            gen: (v >> 32) as u32,
        },
    ))
}

/// Split an address into (slot, core address).
pub fn split_addr(addr: &MxEndpointAddr) -> Option<(u8, EndpointAddr)> {
    let p = addr.unpack();
    let slot = ((p.partner >> 24) & 0xff) as u8;
    (slot != 0).then_some((
        slot,
        EndpointAddr {
            partner: (p.partner as u32) & MAX_INDEX,
            gen: (p.partner >> 32) as u32,
            session: p.session,
        },
    ))
}

/// The table of open endpoints, indexed by slot - 1.
static TABLE: RwLock<Vec<Option<Arc<EpShared>>>> = RwLock::new(Vec::new());

fn table_read() -> std::sync::RwLockReadGuard<'static, Vec<Option<Arc<EpShared>>>> {
    TABLE.read().unwrap_or_else(|p| p.into_inner())
}

fn table_write() -> std::sync::RwLockWriteGuard<'static, Vec<Option<Arc<EpShared>>>> {
    TABLE.write().unwrap_or_else(|p| p.into_inner())
}

/// Register a new endpoint built by `make(slot)`; `None` when every slot is
/// taken.
pub fn register(make: impl FnOnce(u8) -> EpShared) -> Option<Arc<EpShared>> {
    let mut t = table_write();
    let idx = match t.iter().position(Option::is_none) {
        Some(i) => i,
        None if t.len() < MAX_SLOTS => {
            t.push(None);
            t.len() - 1
        }
        None => return None,
    };
    let ep = Arc::new(make((idx + 1) as u8));
    t[idx] = Some(ep.clone());
    Some(ep)
}

/// Remove an endpoint from the table (its slot may be reused at once;
/// handles of the old endpoint fail the generation checks of the new one).
pub fn unregister(ep: &Arc<EpShared>) {
    let mut t = table_write();
    if let Some(e) = t.get_mut(usize::from(ep.slot) - 1) {
        if e.as_ref().is_some_and(|x| Arc::ptr_eq(x, ep)) {
            *e = None;
        }
    }
}

/// Every open endpoint (for `mx_finalize`).
pub fn all() -> Vec<Arc<EpShared>> {
    table_read().iter().flatten().cloned().collect()
}

/// The open endpoint behind a C handle.
pub fn lookup(ptr: MxEndpointPtr) -> Option<Arc<EpShared>> {
    if ptr.is_null() {
        return None;
    }
    let want = ptr as *const c_void;
    table_read()
        .iter()
        .flatten()
        .find(|e| Arc::as_ptr(e).cast::<c_void>() == want)
        .cloned()
}

/// The open endpoint in `slot` (1..=255).
pub fn by_slot(slot: u8) -> Option<Arc<EpShared>> {
    if slot == 0 {
        return None;
    }
    table_read().get(usize::from(slot) - 1).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_partner_handles_round_trip() {
        let id = ReqId {
            index: 0x12_3456,
            gen: 0xdead_beef,
        };
        let v = u64::from(id.index) | (7u64 << 24) | (u64::from(id.gen) << 32);
        let (slot, back) = split_req(v as usize as MxRequestPtr).unwrap();
        assert_eq!((slot, back), (7, id));
        assert!(split_req(core::ptr::null_mut()).is_none());
        let a = EndpointAddr {
            partner: 3,
            gen: 9,
            session: 0x5555,
        };
        let packed = MxEndpointAddr::pack(AddrParts {
            partner: 3 | (200u64 << 24) | (9u64 << 32),
            endpoint_id: 4,
            session: 0x5555,
        });
        assert_eq!(split_addr(&packed), Some((200, a)));
        assert!(split_addr(&MxEndpointAddr::default()).is_none());
    }
}
