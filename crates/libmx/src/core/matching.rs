//! Matching state: the posted receives and the unexpected messages, one
//! queue of each per context id, and the unexpected-message handler.

use super::types::ReqId;
use super::{MsgBuf, UnexpHandler};
use std::collections::VecDeque;

/// The matching queues of one core.
pub(crate) struct Matching<B: MsgBuf> {
    /// Posted receives per context, in post order.
    pub(crate) posted: Vec<VecDeque<ReqId>>,
    /// Unexpected messages per context, in arrival order.
    pub(crate) unexp: Vec<VecDeque<ReqId>>,
    /// `mx_register_unexp_handler`'s hook, if any.
    pub(crate) handler: Option<Box<dyn UnexpHandler<B> + Send>>,
}

impl<B: MsgBuf> Matching<B> {
    /// Empty queues for `nctx` contexts.
    pub(crate) fn new(nctx: usize) -> Self {
        Matching {
            posted: (0..nctx).map(|_| VecDeque::new()).collect(),
            unexp: (0..nctx).map(|_| VecDeque::new()).collect(),
            handler: None,
        }
    }
}
