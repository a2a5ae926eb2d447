//! Matching state: the posted receives and the unexpected messages, one
//! queue of each per context id, and the unexpected-message handler.
//! Below it, the matching operations on [`Core`]: a new message (in
//! matching order) meets a posted receive, the handler, or the unexpected
//! queue; a posted receive takes an unexpected message.

use super::recv::{fill_buf, Data};
use super::state::{Kind, Partial, RecvPhase, Request, UnexpBody, UnexpState, User};
use super::types::{EndpointAddr, Probe, ReqId, UnexpAction, UnexpInfo};
use super::{slot_req, Core, HandlerCtx, MsgBuf, UnexpHandler};
use mx_proto::msg::RdmaRef;
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
    /// Buffers of unexpected eager messages already taken, kept for the
    /// next ones: a message that arrives before its receive (every reply
    /// of a ping-pong whose receive is posted after the send completes)
    /// needs no allocation.
    spare_eager: Vec<Vec<u8>>,
}

/// Most buffers of taken unexpected messages kept for reuse.
const SPARE_EAGER_MAX: usize = 16;
/// Largest such buffer kept (a medium message of the default size).
const SPARE_EAGER_BYTES: usize = 32 * 1024;

impl<B: MsgBuf> Matching<B> {
    /// Empty queues for `nctx` contexts.
    pub(crate) fn new(nctx: usize) -> Self {
        Matching {
            posted: (0..nctx).map(|_| VecDeque::new()).collect(),
            unexp: (0..nctx).map(|_| VecDeque::new()).collect(),
            handler: None,
            spare_eager: Vec::new(),
        }
    }

    /// Storage for an unexpected message: a kept buffer if there is one.
    fn eager_buf(&mut self) -> Vec<u8> {
        self.spare_eager.pop().unwrap_or_default()
    }

    /// An unexpected message's storage, taken: kept for the next one
    /// unless enough are kept or it is large.
    fn keep_eager_buf(&mut self, v: Vec<u8>) {
        if self.spare_eager.len() < SPARE_EAGER_MAX && v.capacity() <= SPARE_EAGER_BYTES {
            self.spare_eager.push(v);
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

/// How a new message reaches the matching code.
#[derive(Clone, Copy)]
pub(crate) enum Incoming<'a> {
    Whole(Data<'a>),
    Frag { frag_seqnum: u8, data: Data<'a> },
    Rndv(RdmaRef),
    SelfLarge(ReqId),
}

// ----------------------------------------------------------------
// The matching operations (span requests, partners, large transfers)
// ----------------------------------------------------------------

impl<B: MsgBuf> Core<B> {
    pub(super) fn call_handler(&mut self, info: &UnexpInfo<'_>) -> UnexpAction {
        let Some(mut h) = self.matching.handler.take() else {
            return UnexpAction::Continue;
        };
        let act = h.unexpected(info, &mut HandlerCtx { core: self });
        if self.matching.handler.is_none() {
            self.matching.handler = Some(h);
        }
        act
    }

    /// A new message (in matching order) from partner `p`.
    pub(super) fn new_message(
        &mut self,
        p: usize,
        s: u16,
        match_info: u64,
        msg_length: u32,
        inc: Incoming<'_>,
    ) {
        let source = self.partners.addr_of(p);
        let ctx = self.ctx_of(match_info);
        let mut target = self.matching.take_posted(&self.reqs, ctx, match_info);
        if target.is_none() && self.matching.handler.is_some() {
            // The handler is given a slice: a payload still in a queue slot
            // is copied out for it (and read again wherever it goes next).
            let data = match inc {
                Incoming::Whole(d) if msg_length <= self.cfg.frag_max => Some(d.to_vec()),
                Incoming::Frag { data, .. } if data.len() == msg_length => Some(data.to_vec()),
                _ => None,
            };
            let info = UnexpInfo {
                source,
                match_info,
                msg_length,
                data: data.as_deref(),
            };
            match self.call_handler(&info) {
                UnexpAction::Continue => {
                    target = self.matching.take_posted(&self.reqs, ctx, match_info)
                }
                UnexpAction::Finished => {
                    self.discard_message(p, s, match_info, msg_length, inc);
                    return;
                }
            }
        }
        match target {
            Some(r) => self.start_matched_recv(r, p, s, source, match_info, msg_length, inc),
            None => {
                self.stats.unexpected += 1;
                let body = match inc {
                    Incoming::Whole(d) => UnexpBody::Eager {
                        data: d.into_vec(self.matching.eager_buf()),
                        complete: true,
                    },
                    Incoming::Frag { .. } => UnexpBody::Eager {
                        data: vec![0; msg_length as usize],
                        complete: false,
                    },
                    Incoming::Rndv(rdma) => UnexpBody::Rndv { rdma },
                    Incoming::SelfLarge(send) => UnexpBody::SelfLarge { send },
                };
                let u = self.new_req(
                    Kind::Unexp(UnexpState {
                        partner: p,
                        source,
                        match_info,
                        msg_length,
                        ctx,
                        body,
                    }),
                    0,
                    None,
                    User::Released,
                );
                self.matching.unexp[ctx].push_back(u);
                if let Incoming::Frag { frag_seqnum, data } = inc {
                    self.partners[p].partials.push(Partial {
                        seq: s,
                        msg_length,
                        match_info,
                        frags: 0,
                        got: 0,
                        target: Some(u),
                    });
                    self.apply_frag(p, s, match_info, msg_length, frag_seqnum, data);
                }
            }
        }
    }

    /// The unexpected handler said FINISHED: drop the message.
    pub(super) fn discard_message(
        &mut self,
        p: usize,
        s: u16,
        match_info: u64,
        msg_length: u32,
        inc: Incoming<'_>,
    ) {
        match inc {
            Incoming::Whole(_) => {}
            Incoming::Frag { frag_seqnum, data } => {
                self.partners[p].partials.push(Partial {
                    seq: s,
                    msg_length,
                    match_info,
                    frags: 0,
                    got: 0,
                    target: None,
                });
                self.apply_frag(p, s, match_info, msg_length, frag_seqnum, data);
            }
            Incoming::Rndv(rdma) => {
                let pid = self.partners.pid(p);
                self.queue_notify(pid, 0, rdma);
            }
            Incoming::SelfLarge(send) => {
                self.finish_large_send(send, 0);
            }
        }
    }

    /// Start receive `r` on the new message that matched it: copy a whole
    /// message in and complete, open a partial message for fragments,
    /// start the pull of a rendezvous, copy a large self send.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_matched_recv(
        &mut self,
        r: ReqId,
        p: usize,
        s: u16,
        source: EndpointAddr,
        match_info: u64,
        msg_length: u32,
        inc: Incoming<'_>,
    ) {
        match inc {
            Incoming::Whole(d) => {
                let n = msg_length.min(self.buf_len(r));
                if let Some(b) = self.req_mut(r).and_then(|x| x.buf.as_mut()) {
                    let bounced = fill_buf(b, 0, n, d);
                    self.stats.bounce_bytes += bounced;
                }
                self.complete_recv(r, source, match_info, msg_length, n);
            }
            Incoming::Frag { frag_seqnum, data } => {
                if let Some(Request {
                    kind: Kind::Recv(rs),
                    ..
                }) = self.req_mut(r)
                {
                    rs.phase = RecvPhase::Partial;
                }
                self.partners[p].partials.push(Partial {
                    seq: s,
                    msg_length,
                    match_info,
                    frags: 0,
                    got: 0,
                    target: Some(r),
                });
                self.apply_frag(p, s, match_info, msg_length, frag_seqnum, data);
            }
            Incoming::Rndv(rdma) => {
                self.start_large_recv(r, p, source, match_info, msg_length, rdma)
            }
            Incoming::SelfLarge(send) => self.self_copy(send, r),
        }
    }

    /// A posted receive takes an unexpected message.
    pub(super) fn consume_unexp(&mut self, r: ReqId, u: ReqId) {
        let Some(ur) = self.req(u) else { return };
        let Kind::Unexp(_) = &ur.kind else { return };
        let ur = self.reqs.remove(u.index as usize);
        let Kind::Unexp(us) = ur.kind else { return };
        match us.body {
            UnexpBody::Eager { data, complete } => {
                let n = us.msg_length.min(self.buf_len(r));
                if let Some(b) = self.req_mut(r).and_then(|x| x.buf.as_mut()) {
                    b.write_at(0, &data[..n as usize]);
                }
                self.matching.keep_eager_buf(data);
                if complete {
                    self.complete_recv(r, us.source, us.match_info, us.msg_length, n);
                } else {
                    if let Some(Request {
                        kind: Kind::Recv(rs),
                        ..
                    }) = self.req_mut(r)
                    {
                        rs.phase = RecvPhase::Partial;
                    }
                    if let Some(pr) = self.partners.get_mut(us.partner) {
                        for part in &mut pr.partials {
                            if part.target == Some(u) {
                                part.target = Some(r);
                            }
                        }
                    }
                }
            }
            UnexpBody::Rndv { rdma } => {
                self.start_large_recv(r, us.partner, us.source, us.match_info, us.msg_length, rdma);
            }
            UnexpBody::SelfLarge { send } => self.self_copy(send, r),
        }
    }

    /// Free an unexpected message (already out of its queue).
    pub(super) fn drop_unexp(&mut self, u: ReqId) {
        if let Some(Kind::Unexp(us)) = self.req(u).map(|r| &r.kind) {
            let ctx = us.ctx;
            self.matching.unexp[ctx].retain(|&x| x != u);
            self.reqs.remove(u.index as usize);
        }
    }
}
