//! The send operation: posting a send (class, self send, refusal), seqnum
//! assignment and throttling per partner, notifies, and how a send ends
//! (eager completion, ack, failure). Writing commands is in
//! `emission.rs`, large sends' windows and staging in `large.rs`, resends
//! in `timers.rs`.

use super::seq;
use super::state::{Class, DoneInfo, Kind, PartnerId, Request, SendState, Tx, User};
use super::{
    slot_req, slot_req_mut, Core, EndpointAddr, MsgBuf, Rejected, ReqId, ReqType, SendError, Status,
};
use mx_proto::msg::command::REGION_MAX_SEGS;
use mx_proto::msg::{RdmaRef, SMALL_INLINE_MAX, TINY_INLINE_MAX};

impl<B: MsgBuf> Core<B> {
    pub(super) fn post_send(
        &mut self,
        dest: EndpointAddr,
        buf: B,
        match_info: u64,
        context: u64,
        sync: bool,
    ) -> Result<ReqId, Rejected<B, SendError>> {
        let Some(p) = self.partners.resolve(dest) else {
            return Err(Rejected {
                error: SendError::UnknownAddr,
                buf,
            });
        };
        let len = buf.len();
        let class = if sync || len > self.rndv_threshold {
            Class::Large
        } else if len as usize <= TINY_INLINE_MAX {
            Class::Tiny
        } else if len as usize <= SMALL_INLINE_MAX {
            Class::Small
        } else {
            Class::Medium
        };
        if class == Class::Large && buf.segment_count() > REGION_MAX_SEGS {
            return Err(Rejected {
                error: SendError::TooManySegments,
                buf,
            });
        }
        let mut inline = [0u8; SMALL_INLINE_MAX];
        if matches!(class, Class::Tiny | Class::Small) {
            buf.read_at(0, &mut inline[..len as usize]);
        }
        let nfrags = if class == Class::Medium {
            len.div_ceil(self.cfg.frag_max) as u8
        } else {
            0
        };
        let addr = self.partners.addr_of(p);
        let rid = self.new_req(
            Kind::Send(SendState {
                partner: p,
                dest: addr,
                class,
                len,
                match_info,
                inline,
                slots: Vec::new(),
                tx: Tx::new(self.resend_limit),
                completed: false,
                zombie: false,
                next_frag: 0,
                nfrags,
                written_once: false,
                region: None,
                rndv: None,
            }),
            context,
            Some(buf),
            User::Active,
        );
        if self.partners[p].is_self && !self.cfg.disable_self {
            self.self_send(rid);
        } else if !self.partners[p].send_ready {
            self.fail_tx(rid, Status::EndpointUnreachable);
        } else if class == Class::Large
            && self
                .large
                .pool
                .as_ref()
                .is_some_and(|b| len > b.capacity() / 2)
            && self.large.window_slots(len, self.cfg.pull_block).is_none()
        {
            // It could never be staged, not even through a window.
            self.fail_tx(rid, Status::NoResources);
        } else {
            self.partners[p].need_seq.push_back(rid);
            self.pump_partner(p);
        }
        Ok(rid)
    }

    /// Give seqnums to the partner's waiting messages, in order, while the
    /// throttle and the region ids allow.
    pub(super) fn pump_partner(&mut self, p: usize) {
        loop {
            let Some(pr) = self.partners.get(p) else {
                return;
            };
            let Some(&rid) = pr.need_seq.front() else {
                return;
            };
            if !pr.send_ready || pr.unacked_send() >= self.cfg.throttle {
                return;
            }
            let needs_window = matches!(
                self.req(rid).map(|r| &r.kind),
                Some(Kind::Send(s)) if s.class == Class::Large && s.rndv.is_none()
            );
            if needs_window {
                let staged = match self.large.alloc_region(true) {
                    Some(id) => self.stage_send(rid).map(|st| (id, st)).ok_or(Some(id)),
                    None => Err(None),
                };
                match staged {
                    Ok((id, st)) => self.open_send_window(rid, id, st),
                    Err(id) => {
                        // No region id, or no pool space yet: wait for a
                        // release (ours, or another endpoint's in the pool).
                        if let Some(id) = id {
                            self.large.unalloc_region(id, true);
                        }
                        self.large.wait_window(p);
                        return;
                    }
                }
            }
            let pr = &mut self.partners[p];
            pr.need_seq.pop_front();
            let s = pr.next_send_seq;
            pr.next_send_seq = seq::add(s, 1);
            pr.non_acked.push_back(rid);
            if let Some(tx) = self.req_mut(rid).and_then(Request::tx_mut) {
                tx.seqnum = Some(s);
                tx.queued = true;
            }
            self.emission.data_q.push_back(rid);
        }
    }

    /// Queue a NOTIFY (seqnum'd, retransmitted until acked) to a partner.
    pub(super) fn queue_notify(&mut self, pid: PartnerId, total_length: u32, rdma: RdmaRef) {
        let Some(p) = self.partners.idx(pid) else {
            return;
        };
        if !self.partners[p].send_ready {
            return;
        }
        let rid = self.new_req(
            Kind::Notify(super::state::NotifyState {
                partner: p,
                total_length,
                rdma_id: rdma.id,
                rdma_seqnum: rdma.seqnum,
                tx: Tx::new(self.resend_limit),
            }),
            0,
            None,
            User::Released,
        );
        // A notify goes ahead of the messages still waiting for a seqnum
        // (behind the notifies already there): it is not a message the
        // peer matches, so MX order is kept, and a large send waiting for
        // a region id or pool room must not hold back the notify that
        // frees the peer's (both sides waiting so would deadlock).
        let pr = &mut self.partners[p];
        let at = pr
            .need_seq
            .iter()
            .position(|&q| {
                !matches!(
                    slot_req(&self.reqs, q).map(|r| &r.kind),
                    Some(Kind::Notify(_))
                )
            })
            .unwrap_or(pr.need_seq.len());
        pr.need_seq.insert(at, rid);
        self.pump_partner(p);
    }

    // ----------------------------------------------------------------
    // Completion helpers
    // ----------------------------------------------------------------

    pub(super) fn complete_send(&mut self, rid: ReqId, status: Status, xfer: u32) {
        let Some(Request {
            kind: Kind::Send(s),
            ..
        }) = self.req_mut(rid)
        else {
            return;
        };
        if s.completed {
            return;
        }
        s.completed = true;
        let info = DoneInfo {
            kind: ReqType::Send,
            status,
            source: s.dest,
            match_info: s.match_info,
            msg_length: s.len,
            xfer_length: xfer,
        };
        self.complete(rid, info);
    }

    /// An eager send may complete once its data is safe: written once to
    /// the queue and acked, or kept as a zombie (private copy) before its
    /// ack.
    pub(super) fn maybe_complete_eager(&mut self, rid: ReqId) {
        let zombie_ok = self.zombies < self.cfg.zombie_max;
        let Some(r) = slot_req_mut(&mut self.reqs, rid) else {
            return;
        };
        let Kind::Send(s) = &mut r.kind else { return };
        if s.completed {
            return;
        }
        let ready = match s.class {
            Class::Tiny | Class::Small => s.tx.sends >= 1,
            Class::Medium => s.written_once,
            Class::Large => false,
        };
        if !ready {
            return;
        }
        if !s.tx.acked {
            if !zombie_ok {
                return;
            }
            // A medium message's bytes must be out of the user's buffer,
            // in the slots it keeps, before the buffer goes back.
            if s.class == Class::Medium && s.slots.is_empty() {
                return;
            }
            s.zombie = true;
            self.zombies += 1;
        }
        let len = s.len;
        self.complete_send(rid, Status::Success, len);
    }

    /// A seqnum'd message was acked.
    pub(super) fn on_acked(&mut self, rid: ReqId) {
        let Some(r) = slot_req_mut(&mut self.reqs, rid) else {
            return;
        };
        match &mut r.kind {
            Kind::Send(s) => {
                s.tx.acked = true;
                if s.zombie {
                    s.zombie = false;
                    self.zombies -= 1;
                }
                let slots = std::mem::take(&mut s.slots);
                if s.class == Class::Large {
                    if s.completed {
                        r.internal = false;
                    }
                } else {
                    r.internal = false;
                    let len = s.len;
                    self.emission.sendq.release(slots);
                    self.complete_send(rid, Status::Success, len);
                }
            }
            Kind::Notify(n) => {
                n.tx.acked = true;
                r.internal = false;
            }
            _ => {}
        }
        self.try_free(rid);
    }

    /// A send or notify failed (NACK, resend limit, partner cleanup).
    pub(super) fn fail_tx(&mut self, rid: ReqId, status: Status) {
        let Some(r) = slot_req_mut(&mut self.reqs, rid) else {
            return;
        };
        r.internal = false;
        let mut region = None;
        let mut slots = Vec::new();
        if let Kind::Send(s) = &mut r.kind {
            s.tx.acked = true;
            if s.zombie {
                s.zombie = false;
                self.zombies -= 1;
            }
            region = s.region.take().map(|(id, _)| id);
            slots = std::mem::take(&mut s.slots);
        }
        self.emission.sendq.release(slots);
        if let Some(id) = region {
            self.large.release_region(id, &mut self.emission);
        }
        self.complete_send(rid, status, 0);
        self.try_free(rid);
    }
}
