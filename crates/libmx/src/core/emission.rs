//! What the core has to send: control commands first, then seqnum'd data
//! in order, then staging blocks; and the send-queue slots medium
//! fragments go through. Below the queues, the emission operation on
//! [`Core`] ([`Core::poll_command`]): each queue entry written as one
//! command, from the requests, partners and regions it names.

use super::sendq::SendSlots;
use super::state::{AckState, Class, Ctrl, Kind, PartnerId, RecvPhase, Request};
use super::types::{Emitted, FragRef, ReqId};
use super::{slot_req, Core, MsgBuf, Time};
use mx_proto::msg::command::{
    ConnectRequest, Liback, MediumFrag, Notify, Pull, RegionRegister, RegionStage, RegionWindow,
    Rndv, SendHdr, REGION_SEGS_PER_CMD,
};
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{CmdSlot, Command, Dest, RdmaRef, Seq};
use std::collections::VecDeque;

/// The output queues of one core.
pub(crate) struct Emission {
    /// Connects, acks, region and pull commands, ahead of data.
    pub(crate) ctrl_q: VecDeque<Ctrl>,
    /// Sends and notifies with a seqnum, in emission order.
    pub(crate) data_q: VecDeque<ReqId>,
    /// Blocks of progressively staged sends still to copy and register
    /// (after the data queue: the rendezvous goes out first).
    pub(crate) stage_q: VecDeque<Ctrl>,
    /// Who holds each send-queue slot.
    pub(crate) sendq: SendSlots,
}

impl Emission {
    /// Empty queues over a send queue of `sendq_slots` slots.
    pub(crate) fn new(sendq_slots: u16) -> Self {
        Emission {
            ctrl_q: VecDeque::new(),
            data_q: VecDeque::new(),
            stage_q: VecDeque::new(),
            sendq: SendSlots::new(sendq_slots),
        }
    }

    /// Nothing waits to be emitted.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.ctrl_q.is_empty() && self.data_q.is_empty() && self.stage_q.is_empty()
    }

    /// Queue an explicit ack to partner `pid` (`force`: even if nothing
    /// is unacked, to answer a duplicate).
    #[inline]
    pub(crate) fn queue_ack(&mut self, pid: PartnerId, force: bool) {
        self.ctrl_q.push_back(Ctrl::Liback {
            partner: pid,
            force,
        });
    }

    /// Queue a resend of `rid`: at the head of the data queue when it
    /// keeps its send-queue slots (it needs no new slot, and the message
    /// waiting for slots at the head may be waiting for the ack of this
    /// very one), else at the tail.
    #[inline]
    pub(crate) fn queue_resend(&mut self, rid: ReqId, keeps_slots: bool) {
        if keeps_slots {
            self.data_q.push_front(rid);
        } else {
            self.data_q.push_back(rid);
        }
    }
}

/// What emitting the head of the data queue did.
enum Emit {
    /// A command was written; `finished` when the message is fully out;
    /// `frag` for a medium fragment.
    Wrote {
        finished: bool,
        frag: Option<FragRef>,
    },
    /// Waiting for a send-queue slot.
    Blocked,
    /// The entry is no longer needed.
    Stale,
}

// ----------------------------------------------------------------
// The emission operation (spans requests, partners, regions, timers)
// ----------------------------------------------------------------

impl<B: MsgBuf> Core<B> {
    pub(super) fn next_command(&mut self, now: Time, out: &mut CmdSlot) -> Option<Emitted> {
        const PLAIN: Emitted = Emitted { frag: None };
        loop {
            if let Some(c) = self.emission.ctrl_q.pop_front() {
                if self.emit_ctrl(now, c, out) {
                    return Some(PLAIN);
                }
                continue;
            }
            let Some(&rid) = self.emission.data_q.front() else {
                return self.emit_stage(now, out).then_some(PLAIN);
            };
            match self.emit_data(now, rid, out) {
                Emit::Wrote { finished, frag } => {
                    if finished {
                        self.emission.data_q.pop_front();
                    }
                    return Some(Emitted { frag });
                }
                Emit::Blocked => {
                    if let Some(e) = self.emit_resend_behind(now, out) {
                        return Some(e);
                    }
                    // Staging blocks need no send-queue slot.
                    return self.emit_stage(now, out).then_some(PLAIN);
                }
                Emit::Stale => {
                    self.emission.data_q.pop_front();
                    if let Some(tx) = self.req_mut(rid).and_then(Request::tx_mut) {
                        tx.queued = false;
                    }
                }
            }
        }
    }

    /// The head of the data queue waits for send-queue slots: let a
    /// retransmission queued behind it go first. The slots it waits for may
    /// be held by messages the receiver cannot ack before that
    /// retransmission arrives (acks are cumulative).
    fn emit_resend_behind(&mut self, now: Time, out: &mut CmdSlot) -> Option<Emitted> {
        let mut i = 1;
        while i < self.emission.data_q.len() {
            let rid = self.emission.data_q[i];
            let resend = self
                .req(rid)
                .and_then(|r| match &r.kind {
                    Kind::Send(s) => Some(s.tx.sends),
                    Kind::Notify(n) => Some(n.tx.sends),
                    _ => None,
                })
                .is_some_and(|sends| sends > 0);
            if !resend {
                i += 1;
                continue;
            }
            match self.emit_data(now, rid, out) {
                Emit::Wrote { finished, frag } => {
                    if finished {
                        self.emission.data_q.remove(i);
                    }
                    return Some(Emitted { frag });
                }
                Emit::Blocked => i += 1,
                Emit::Stale => {
                    self.emission.data_q.remove(i);
                    if let Some(tx) = self.req_mut(rid).and_then(Request::tx_mut) {
                        tx.queued = false;
                    }
                }
            }
        }
        None
    }

    /// The next block of a progressively staged send, if any.
    fn emit_stage(&mut self, now: Time, out: &mut CmdSlot) -> bool {
        while let Some(c) = self.emission.stage_q.pop_front() {
            if self.emit_ctrl(now, c, out) {
                return true;
            }
        }
        false
    }

    fn emit_ctrl(&mut self, now: Time, c: Ctrl, out: &mut CmdSlot) -> bool {
        let cmd = match c {
            Ctrl::Connect(rid) => {
                let Some(r) = self.req(rid) else { return false };
                let Kind::Connect(cs) = &r.kind else {
                    return false;
                };
                if cs.answered || !r.internal {
                    return false;
                }
                let (p, key, connect_seqnum) = (cs.partner, cs.key, cs.connect_seqnum);
                let Some(pr) = self.partners.get(p) else {
                    return false;
                };
                let cmd = Command::ConnectRequest(ConnectRequest {
                    dest: Dest {
                        peer: pr.peer,
                        endpoint: pr.endpoint,
                    },
                    src_session: self.cfg.session,
                    app_key: key,
                    target_recv_seqnum_start: pr.next_match_recv_seq,
                    connect_seqnum,
                });
                if let Some(tx) = self.req_mut(rid).and_then(Request::tx_mut) {
                    tx.queued = false;
                    tx.last_send = Some(now);
                    tx.sends += 1;
                }
                self.timers.sent(rid, now);
                cmd
            }
            Ctrl::ConnectReply(r) => Command::ConnectReply(r),
            Ctrl::Liback { partner, force } => {
                let Some(p) = self.partners.idx(partner) else {
                    return false;
                };
                let pr = &mut self.partners[p];
                if pr.ack == AckState::Queued {
                    pr.ack = AckState::None;
                }
                let Some(session) = pr.back_session else {
                    return false;
                };
                if !force && pr.unacked_recv() == 0 {
                    return false;
                }
                pr.last_send_acknum = pr.last_send_acknum.wrapping_add(1);
                let ack = pr.next_frag_recv_seq;
                let cmd = Command::Liback(Liback {
                    dest: Dest {
                        peer: pr.peer,
                        endpoint: pr.endpoint,
                    },
                    session,
                    lib_seqnum: ack,
                    send_seq: ack,
                    acknum: pr.last_send_acknum,
                    resent: 0,
                });
                self.stats.acks_sent += 1;
                self.partners.note_ack_sent(p, ack);
                cmd
            }
            Ctrl::Register { region, chunk } => {
                let Some(reg) = &self.large.regions[usize::from(region)] else {
                    return false;
                };
                let n = reg.segs.len();
                let nchunks = n.div_ceil(REGION_SEGS_PER_CMD).max(1);
                let lo = usize::from(chunk) * REGION_SEGS_PER_CMD;
                if lo >= n.max(1) {
                    return false;
                }
                let hi = (lo + REGION_SEGS_PER_CMD).min(n);
                let last = usize::from(chunk) + 1 == nchunks;
                let rr =
                    RegionRegister::new(region, chunk == 0, last, lo as u16, &reg.segs[lo..hi]);
                if !last {
                    self.emission.ctrl_q.push_front(Ctrl::Register {
                        region,
                        chunk: chunk + 1,
                    });
                }
                Command::RegionRegister(rr)
            }
            Ctrl::Deregister(id) => Command::RegionDeregister { region_id: id },
            Ctrl::StageBlock { region, seq } => {
                let Some(cmd) = self.stage_next_block(region, seq) else {
                    return false;
                };
                cmd
            }
            Ctrl::Window { region, seq } => {
                let Some(reg) = &self.large.regions[usize::from(region)] else {
                    return false;
                };
                let Some(msg_len) = self
                    .req(reg.owner)
                    .and_then(|r| r.buf.as_ref())
                    .map(MsgBuf::len)
                else {
                    return false;
                };
                if reg.rdma_seqnum != seq || reg.window.is_none() {
                    return false;
                }
                Command::RegionWindow(RegionWindow {
                    region_id: region,
                    gen: seq,
                    block: self.cfg.pull_block,
                    msg_len,
                })
            }
            Ctrl::Stage {
                region,
                seq,
                slot,
                block,
            } => {
                let live = self.large.regions[usize::from(region)]
                    .as_ref()
                    .is_some_and(|r| r.rdma_seqnum == seq && r.window.is_some());
                if !live {
                    return false;
                }
                Command::RegionStage(RegionStage {
                    region_id: region,
                    gen: seq,
                    slot,
                    block,
                })
            }
            Ctrl::Pull(cookie) => {
                let Some(&b) = self.large.pulls.get(&cookie) else {
                    return false;
                };
                let Some(Request {
                    kind: Kind::Recv(rs),
                    ..
                }) = self.req(b.rid)
                else {
                    return false;
                };
                let RecvPhase::Pulling(l) = rs.phase else {
                    return false;
                };
                let session = self
                    .partners
                    .idx(l.partner)
                    .and_then(|p| self.partners[p].back_session.map(|s| (p, s)));
                let Some((p, session)) = session else {
                    // The sender is gone: the block cannot be asked for.
                    self.pull_block_done(cookie, PullStatus::Unreachable, 0);
                    return false;
                };
                Command::Pull(Pull {
                    dest: self.partners.dest(p),
                    session,
                    length: b.len,
                    cookie,
                    local_region: l.region,
                    local_offset: b.at,
                    remote: RdmaRef {
                        offset: l.rdma.offset.wrapping_add(b.off),
                        ..l.rdma
                    },
                    // A staged pull lands in the pool, not in the buffer.
                    direct: self.cfg.direct_pull && self.large.pool.is_none() && b.off == 0,
                })
            }
        };
        cmd.emit(out).is_ok()
    }

    fn emit_data(&mut self, now: Time, rid: ReqId, out: &mut CmdSlot) -> Emit {
        let Some(r) = slot_req(&self.reqs, rid) else {
            return Emit::Stale;
        };
        if !r.internal {
            return Emit::Stale;
        }
        let (p, seqnum) = match &r.kind {
            Kind::Send(s) if !s.tx.acked => match s.tx.seqnum {
                Some(n) => (s.partner, n),
                None => return Emit::Stale,
            },
            Kind::Notify(n) if !n.tx.acked => match n.tx.seqnum {
                Some(s) => (n.partner, s),
                None => return Emit::Stale,
            },
            _ => return Emit::Stale,
        };
        let Some(pr) = self.partners.get(p) else {
            return Emit::Stale;
        };
        if !pr.send_ready {
            return Emit::Stale;
        }
        let dest = Dest {
            peer: pr.peer,
            endpoint: pr.endpoint,
        };
        let piggyack = pr.next_frag_recv_seq;
        let seq = Seq { seqnum, piggyack };
        let (true_session, back_session) = (pr.true_session, pr.back_session);
        let frag_max = self.cfg.frag_max;
        let mut finished = true;
        let mut emitted = None;
        let mut taken = None;
        match &r.kind {
            Kind::Send(s) => {
                let Some(session) = true_session else {
                    return Emit::Stale;
                };
                let hdr = SendHdr {
                    dest,
                    session,
                    seq,
                    match_info: s.match_info,
                };
                let res = match s.class {
                    Class::Tiny => Command::Tiny {
                        hdr,
                        data: &s.inline[..s.len as usize],
                    }
                    .emit(out),
                    Class::Small => Command::Small {
                        hdr,
                        data: &s.inline[..s.len as usize],
                    }
                    .emit(out),
                    Class::Large => {
                        let Some(rdma) = s.rndv else {
                            return Emit::Stale;
                        };
                        Command::Rndv(Rndv {
                            hdr,
                            msg_length: s.len,
                            rdma,
                        })
                        .emit(out)
                    }
                    Class::Medium => {
                        let frag = s.next_frag;
                        let off = u32::from(frag) * frag_max;
                        let flen = frag_max.min(s.len - off);
                        let kept = !s.slots.is_empty();
                        let slot = if let Some(&x) = s.slots.get(usize::from(frag)) {
                            x
                        } else if frag == 0 && !s.written_once && self.keeps_slots(s.nfrags) {
                            // All at once: a message that started can always
                            // finish, whatever the others hold. One slot is
                            // never kept, so a message that keeps none (a
                            // retransmission among them) always gets one.
                            let Some(v) = self.emission.sendq.keep(usize::from(s.nfrags)) else {
                                return Emit::Blocked;
                            };
                            let first = v[0];
                            taken = Some(v);
                            first
                        } else {
                            let Some(x) = self.emission.sendq.take() else {
                                return Emit::Blocked;
                            };
                            x
                        };
                        self.emission.sendq.post(slot);
                        emitted = Some(FragRef {
                            sendq_slot: slot,
                            len: flen,
                            retained: kept || taken.is_some(),
                            // A kept slot written once holds the bytes.
                            src: (!(kept && s.written_once)).then_some((rid, off)),
                        });
                        finished = frag + 1 == s.nfrags;
                        Command::MediumFrag(MediumFrag {
                            hdr,
                            msg_length: s.len,
                            frag_seqnum: frag,
                            frag_length: flen as u16,
                            sendq_slot: slot,
                        })
                        .emit(out)
                    }
                };
                if res.is_err() {
                    return Emit::Stale;
                }
            }
            Kind::Notify(n) => {
                let Some(session) = back_session.or(true_session) else {
                    return Emit::Stale;
                };
                let res = Command::Notify(Notify {
                    dest,
                    session,
                    seq,
                    total_length: n.total_length,
                    rdma_id: n.rdma_id,
                    rdma_seqnum: n.rdma_seqnum,
                })
                .emit(out);
                if res.is_err() {
                    return Emit::Stale;
                }
            }
            _ => return Emit::Stale,
        }
        self.partners.note_ack_sent(p, piggyack);
        let r = self.req_mut(rid).expect("checked above");
        if let Kind::Send(s) = &mut r.kind {
            if let Some(v) = taken {
                s.slots = v;
            }
            if s.class == Class::Medium {
                if finished {
                    s.next_frag = 0;
                    s.written_once = true;
                } else {
                    s.next_frag += 1;
                }
            }
        }
        if finished {
            if let Some(tx) = r.tx_mut() {
                tx.queued = false;
                tx.last_send = Some(now);
                tx.sends += 1;
            }
            self.timers.sent(rid, now);
            self.maybe_complete_eager(rid);
        }
        Emit::Wrote {
            finished,
            frag: emitted,
        }
    }

    /// Whether a medium message of `nfrags` fragments starting now keeps
    /// its slots until its ack (so that it may complete before): only if it
    /// may become a zombie and could ever get all its slots at once, one
    /// slot always left over (see `emit_data`).
    fn keeps_slots(&self, nfrags: u8) -> bool {
        self.zombies < self.cfg.zombie_max && u16::from(nfrags) < self.cfg.sendq_slots
    }
}
