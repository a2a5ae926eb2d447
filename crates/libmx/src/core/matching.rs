//! Matching state: the posted receives and the unexpected messages, one
//! queue of each per context id, and the unexpected-message handler.

use super::state::{Kind, Request};
use super::types::{Probe, ReqId};
use super::{slot_req, MsgBuf, UnexpHandler};
use slab::Slab;
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

    /// Take the oldest posted receive of context `ctx` that `match_info`
    /// satisfies (`reqs` holds the receives).
    pub(crate) fn take_posted(
        &mut self,
        reqs: &Slab<Request<B>>,
        ctx: usize,
        match_info: u64,
    ) -> Option<ReqId> {
        let i = self.posted[ctx].iter().position(|&r| {
            matches!(slot_req(reqs, r).map(|r| &r.kind), Some(Kind::Recv(rs)) if match_info & rs.mask == rs.match_info)
        })?;
        self.posted[ctx].remove(i)
    }

    /// Take the oldest unexpected message of context `ctx` that satisfies
    /// `(match_info, mask)`.
    pub(crate) fn take_unexp(
        &mut self,
        reqs: &Slab<Request<B>>,
        ctx: usize,
        match_info: u64,
        mask: u64,
    ) -> Option<ReqId> {
        let i = self.unexp[ctx].iter().position(|&u| {
            matches!(slot_req(reqs, u).map(|r| &r.kind), Some(Kind::Unexp(s)) if s.match_info & mask == match_info)
        })?;
        self.unexp[ctx].remove(i)
    }

    /// What [`Matching::take_unexp`] would take, left in place.
    pub(crate) fn probe(
        &self,
        reqs: &Slab<Request<B>>,
        ctx: usize,
        match_info: u64,
        mask: u64,
    ) -> Option<Probe> {
        self.unexp[ctx]
            .iter()
            .find_map(|&u| match slot_req(reqs, u).map(|r| &r.kind) {
                Some(Kind::Unexp(s)) if s.match_info & mask == match_info => Some(Probe {
                    source: s.source,
                    match_info: s.match_info,
                    msg_length: s.msg_length,
                }),
                _ => None,
            })
    }

    /// Take every unexpected message from partner `p` out of the queues.
    pub(crate) fn take_unexp_from(&mut self, reqs: &Slab<Request<B>>, p: usize) -> Vec<ReqId> {
        let mut taken = Vec::new();
        for q in &mut self.unexp {
            q.retain(|&u| {
                let from_p = matches!(reqs.get(u.index as usize).map(|r| &r.kind), Some(Kind::Unexp(s)) if s.partner == p);
                if from_p {
                    taken.push(u);
                }
                !from_p
            });
        }
        taken
    }
}
