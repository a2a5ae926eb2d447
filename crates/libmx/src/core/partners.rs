//! The partner table: every endpoint this one talks to (and itself), by
//! handle and by `(peer, endpoint)`, with the generation that makes stale
//! addresses fail, and the reset notices kept for `MX_VERBOSE`; each
//! partner's sessions, seqnums, unacked and waiting messages, partial and
//! early receives, and its session rules (connect, restart, reset).
//! Below them, the partner operations on [`Core`], which span every
//! part: the connect handshake's two events, and a partner's reset
//! (failing everything in flight to it).

use super::seq;
use super::small_hash::SmallMap;
use super::state::{Ctrl, DoneInfo, Kind, OwnedMsg, PartnerId, RecvPhase, RegionUse, Request};
use super::types::{
    EndpointAddr, PartnerInfo, PartnerReset, ReqId, ReqType, ResetReason, Stats, Time,
};
use super::{Core, MsgBuf, Status, REGION_IDS};
use mx_proto::msg::command::ConnectReply;
use mx_proto::msg::{Dest, Source};
use slab::Slab;
use std::collections::VecDeque;

/// Most partner-reset notices kept until the shell takes them; older ones
/// are dropped (they are only for a human reading stderr).
const RESETS_MAX: usize = 64;

/// A medium message being received fragment by fragment.
#[derive(Debug)]
pub(crate) struct Partial {
    pub seq: u16,
    pub msg_length: u32,
    pub match_info: u64,
    pub frags: u64,
    pub got: u32,
    /// The matched receive or unexpected message; `None` when discarded by
    /// the unexpected handler.
    pub target: Option<ReqId>,
}

#[derive(Debug)]
pub(crate) struct Early {
    pub seq: u16,
    pub msg: OwnedMsg,
}

/// Ack state towards a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckState {
    None,
    Delayed(Time),
    Queued,
}

#[derive(Debug)]
pub(crate) struct Partner {
    pub gen: u32,
    pub peer: u16,
    pub endpoint: u8,
    pub nic_id: Option<u64>,
    pub context: u64,
    pub is_self: bool,
    pub true_session: Option<u32>,
    pub back_session: Option<u32>,
    pub send_ready: bool,
    pub next_send_seq: u16,
    pub next_acked_send_seq: u16,
    pub next_match_recv_seq: u16,
    pub next_frag_recv_seq: u16,
    pub last_acked_recv_seq: u16,
    pub connect_seqnum: u8,
    pub last_send_acknum: u32,
    pub last_recv_acknum: u32,
    /// Sent, unacked messages in seqnum order.
    pub non_acked: VecDeque<ReqId>,
    /// Messages waiting for a seqnum (throttle, region id), in post order.
    pub need_seq: VecDeque<ReqId>,
    /// Unanswered connects, oldest first.
    pub connects: VecDeque<ReqId>,
    pub partials: Vec<Partial>,
    pub early: Vec<Early>,
    pub ack: AckState,
}

impl Partner {
    pub(crate) fn new(gen: u32, peer: u16, endpoint: u8, nic_id: Option<u64>) -> Self {
        let start = seq::reset(0);
        Partner {
            gen,
            peer,
            endpoint,
            nic_id,
            context: 0,
            is_self: false,
            true_session: None,
            back_session: None,
            send_ready: false,
            next_send_seq: start,
            next_acked_send_seq: start,
            next_match_recv_seq: start,
            next_frag_recv_seq: start,
            last_acked_recv_seq: start,
            connect_seqnum: 0,
            last_send_acknum: 0,
            last_recv_acknum: 0,
            non_acked: VecDeque::new(),
            need_seq: VecDeque::new(),
            connects: VecDeque::new(),
            partials: Vec::new(),
            early: Vec::new(),
            ack: AckState::None,
        }
    }

    /// The ack value: oldest seqnum not fully received.
    pub(crate) fn recompute_next_frag(&mut self) {
        self.next_frag_recv_seq = self
            .partials
            .first()
            .map_or(self.next_match_recv_seq, |p| p.seq);
    }

    /// Messages received but not acked yet.
    pub(crate) fn unacked_recv(&self) -> u16 {
        seq::diff(self.next_frag_recv_seq, self.last_acked_recv_seq)
    }

    /// Messages sent but not acked yet.
    pub(crate) fn unacked_send(&self) -> u16 {
        seq::diff(self.next_send_seq, self.next_acked_send_seq)
    }
}

/// The partners of one core.
pub(crate) struct Partners {
    slab: Slab<Partner>,
    /// Generation given to the next partner created.
    gen: u32,
    /// Entry of each `(peer, endpoint)`: how events find their partner.
    pub(crate) by_dest: SmallMap<(u16, u8), usize>,
    /// Our own endpoint's entry.
    pub(crate) self_idx: usize,
    /// Reset notices not taken yet (kept only with `report_resets`).
    pub(crate) resets: VecDeque<PartnerReset>,
}

impl Partners {
    /// A table holding only ourselves (`me`, at `(peer, endpoint)`).
    pub(crate) fn new(me: Partner, peer: u16, endpoint: u8) -> Self {
        let mut slab = Slab::new();
        let self_idx = slab.insert(me);
        let mut by_dest = SmallMap::default();
        by_dest.insert((peer, endpoint), self_idx);
        Partners {
            slab,
            gen: 2,
            by_dest,
            self_idx,
            resets: VecDeque::new(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, p: usize) -> Option<&Partner> {
        self.slab.get(p)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, p: usize) -> Option<&mut Partner> {
        self.slab.get_mut(p)
    }

    pub(crate) fn iter(&self) -> slab::Iter<'_, Partner> {
        self.slab.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// The oldest reset notice not taken yet.
    pub(crate) fn take_reset(&mut self) -> Option<PartnerReset> {
        self.resets.pop_front()
    }

    /// The handle of entry `p` (index plus generation).
    #[inline]
    pub(crate) fn pid(&self, p: usize) -> PartnerId {
        PartnerId {
            idx: p,
            gen: self.slab[p].gen,
        }
    }

    /// The entry a handle names, if it is still that partner.
    #[inline]
    pub(crate) fn idx(&self, pid: PartnerId) -> Option<usize> {
        self.slab
            .get(pid.idx)
            .filter(|p| p.gen == pid.gen)
            .map(|_| pid.idx)
    }

    /// The entry an application address names, if it is still valid.
    #[inline]
    pub(crate) fn resolve(&self, addr: EndpointAddr) -> Option<usize> {
        let p = addr.partner as usize;
        self.slab.get(p).filter(|pr| pr.gen == addr.gen).map(|_| p)
    }

    /// The application address of entry `p`.
    #[inline]
    pub(crate) fn addr_of(&self, p: usize) -> EndpointAddr {
        let pr = &self.slab[p];
        EndpointAddr {
            partner: p as u32,
            gen: pr.gen,
            session: pr.true_session.or(pr.back_session).unwrap_or(0),
        }
    }

    /// Where commands to entry `p` go.
    #[inline]
    pub(crate) fn dest(&self, p: usize) -> Dest {
        let pr = &self.slab[p];
        Dest {
            peer: pr.peer,
            endpoint: pr.endpoint,
        }
    }

    /// What entry `p` names, for the application.
    pub(crate) fn info(&self, p: usize) -> PartnerInfo {
        let pr = &self.slab[p];
        PartnerInfo {
            peer: pr.peer,
            endpoint: pr.endpoint,
            nic_id: pr.nic_id,
            context: pr.context,
            is_self: pr.is_self,
        }
    }

    /// The partner for `(peer, endpoint)`, created if needed.
    pub(crate) fn partner_for(&mut self, peer: u16, endpoint: u8, nic_id: Option<u64>) -> usize {
        if let Some(&p) = self.by_dest.get(&(peer, endpoint)) {
            if nic_id.is_some() {
                self.slab[p].nic_id = nic_id;
            }
            return p;
        }
        let gen = self.gen;
        self.gen = self.gen.wrapping_add(1);
        let p = self.slab.insert(Partner::new(gen, peer, endpoint, nic_id));
        self.by_dest.insert((peer, endpoint), p);
        p
    }

    /// Forget entry `p` (its address becomes invalid).
    pub(crate) fn remove(&mut self, p: usize) {
        let pr = self.slab.remove(p);
        self.by_dest.remove(&(pr.peer, pr.endpoint));
    }

    /// Count a reset of partner `p` and, when `keep`, keep a notice of it
    /// (at most `RESETS_MAX`, the oldest dropped first).
    pub(crate) fn note_reset(
        &mut self,
        p: usize,
        reason: ResetReason,
        keep: bool,
        stats: &mut Stats,
    ) {
        stats.partner_resets += 1;
        if !keep {
            return;
        }
        if self.resets.len() >= RESETS_MAX {
            self.resets.pop_front();
        }
        let pr = &self.slab[p];
        self.resets.push_back(PartnerReset {
            peer: pr.peer,
            endpoint: pr.endpoint,
            nic_id: pr.nic_id,
            reason,
        });
    }

    /// We just told partner `p` `ack` (piggybacked or explicit).
    #[inline]
    pub(crate) fn note_ack_sent(&mut self, p: usize, ack: u16) {
        let pr = &mut self.slab[p];
        pr.last_acked_recv_seq = ack;
        if pr.unacked_recv() == 0 && matches!(pr.ack, AckState::Delayed(_)) {
            pr.ack = AckState::None;
        }
    }
}

impl core::ops::Index<usize> for Partners {
    type Output = Partner;
    #[inline]
    fn index(&self, p: usize) -> &Partner {
        &self.slab[p]
    }
}

impl core::ops::IndexMut<usize> for Partners {
    #[inline]
    fn index_mut(&mut self, p: usize) -> &mut Partner {
        &mut self.slab[p]
    }
}

/// The session rules of one partner.
impl Partner {
    /// Partner `self` restarted (a new instance connected): expect its
    /// messages from the start of our next receive session.
    pub(crate) fn restart_recv_seq(&mut self) {
        self.next_match_recv_seq = seq::reset(self.next_match_recv_seq);
        self.next_frag_recv_seq = self.next_match_recv_seq;
        self.last_acked_recv_seq = self.next_match_recv_seq;
    }

    /// The partner accepted us as `session` and expects our seqnums from
    /// `start` (a session seen before keeps its seqnums).
    pub(crate) fn open_send(&mut self, session: u32, start: u16) {
        if self.true_session != Some(session) {
            self.next_send_seq = start;
            self.next_acked_send_seq = start;
        }
        self.send_ready = true;
        self.true_session = Some(session);
    }

    /// Forget the sessions (our own endpoint stays connected) and restart
    /// every seqnum; with `bump`, in the next session number, so that
    /// stale packets are dropped.
    pub(crate) fn reset_sessions(&mut self, bump: bool) {
        if !self.is_self {
            self.true_session = None;
            self.back_session = None;
            self.send_ready = false;
        }
        let mut r = seq::reset(self.next_match_recv_seq);
        if bump {
            r = r.wrapping_add(seq::SESNUM_ONE);
        }
        if self.is_self {
            // Our own endpoint stays connected; both directions restart.
            self.next_send_seq = r;
            self.next_acked_send_seq = r;
        }
        self.next_match_recv_seq = r;
        self.next_frag_recv_seq = r;
        self.last_acked_recv_seq = r;
        self.connect_seqnum = 0;
        self.last_send_acknum = 0;
        self.last_recv_acknum = 0;
        self.ack = AckState::None;
    }
}

// ----------------------------------------------------------------
// The partner operations (span every part)
// ----------------------------------------------------------------

impl<B: MsgBuf> Core<B> {
    /// A connect request is answered (or failed): complete it with
    /// `status` and the partner's address.
    pub(super) fn complete_connect(&mut self, rid: ReqId, status: Status, source: EndpointAddr) {
        let Some(r) = self.req_mut(rid) else { return };
        let Kind::Connect(c) = &mut r.kind else {
            return;
        };
        c.answered = true;
        let info = DoneInfo {
            kind: ReqType::Connect,
            status,
            source,
            match_info: c.match_info,
            msg_length: 0,
            xfer_length: 0,
        };
        r.internal = false;
        self.complete(rid, info);
    }

    pub(super) fn recv_connect_request(
        &mut self,
        src: Source,
        src_session: u32,
        app_key: u32,
        start: u16,
        connect_seqnum: u8,
    ) {
        let p = self.partners.partner_for(src.peer, src.endpoint, None);
        let ok = app_key == self.cfg.app_key;
        if ok {
            let back = self.partners[p].back_session;
            if back != Some(src_session) {
                if back.is_some() {
                    // A new instance of this partner: forget the old one.
                    self.partners.note_reset(
                        p,
                        ResetReason::Restarted,
                        self.cfg.report_resets,
                        &mut self.stats,
                    );
                    self.cleanup_partner(p, Status::EndpointUnreachable, false);
                }
                self.partners[p].restart_recv_seq();
            }
            let pr = &mut self.partners[p];
            pr.open_send(src_session, start);
            pr.back_session = Some(src_session);
            self.pump_partner(p);
        }
        let pr = &self.partners[p];
        self.emission
            .ctrl_q
            .push_back(Ctrl::ConnectReply(ConnectReply {
                dest: Dest {
                    peer: src.peer,
                    endpoint: src.endpoint,
                },
                src_session,
                target_session: self.cfg.session,
                target_recv_seqnum_start: pr.next_match_recv_seq,
                connect_seqnum,
                status: if ok { 0 } else { 11 },
            }));
    }

    pub(super) fn recv_connect_reply(
        &mut self,
        src: Source,
        src_session: u32,
        target_session: u32,
        start: u16,
        connect_seqnum: u8,
        status: u8,
    ) {
        let Some(&p) = self.partners.by_dest.get(&(src.peer, src.endpoint)) else {
            self.stats.drop_unknown_partner += 1;
            return;
        };
        if src_session != self.cfg.session {
            return;
        }
        let st = match status {
            0 => Status::Success,
            11 => Status::BadKey,
            _ => return,
        };
        let found = self.partners[p].connects.iter().position(|&c| {
            matches!(self.req(c).map(|r| &r.kind), Some(Kind::Connect(cs)) if cs.connect_seqnum == connect_seqnum)
        });
        let Some(i) = found else { return };
        let rid = self.partners[p]
            .connects
            .remove(i)
            .expect("index from position");
        if st == Status::Success {
            let back = self.partners[p].back_session;
            if back.is_some() && back != Some(target_session) {
                // A new instance answered the request in which we announced
                // our receive seqnum (`target_recv_seqnum_start`); it
                // adopted that value as its send seqnum (spec section 7).
                // Forget the old instance, but keep expecting what we
                // announced (or what the new instance already sent in
                // order since): resetting here would leave its messages
                // "early" until the resend limit.
                let pr = &self.partners[p];
                let (next, acked) = (pr.next_match_recv_seq, pr.last_acked_recv_seq);
                self.partners.note_reset(
                    p,
                    ResetReason::Restarted,
                    self.cfg.report_resets,
                    &mut self.stats,
                );
                self.cleanup_partner(p, Status::EndpointUnreachable, false);
                let pr = &mut self.partners[p];
                pr.next_match_recv_seq = next;
                pr.next_frag_recv_seq = next;
                pr.last_acked_recv_seq = acked;
                // The old instance is gone: from now on the back session is
                // the new one's. Keeping the old value made the new
                // instance's own connect request look like yet another
                // instance, which reset the receive seqnum under what we
                // had just announced to it.
                pr.back_session = Some(target_session);
            }
            let pr = &mut self.partners[p];
            pr.open_send(target_session, start);
            // Acks and notifies towards this partner need its session even
            // if it never connects to us.
            pr.back_session.get_or_insert(target_session);
        }
        let addr = self.partners.addr_of(p);
        self.complete_connect(rid, st, addr);
        self.pump_partner(p);
    }

    /// Drop a partner's state: fail its requests with `status`, reset its
    /// sessions and seqnums; with `bump`, move to the next session number
    /// so that stale packets are dropped.
    pub(super) fn cleanup_partner(&mut self, p: usize, status: Status, bump: bool) {
        let pr = &mut self.partners[p];
        let non_acked = std::mem::take(&mut pr.non_acked);
        let need_seq = std::mem::take(&mut pr.need_seq);
        let connects = std::mem::take(&mut pr.connects);
        let partials = std::mem::take(&mut pr.partials);
        pr.early.clear();
        for rid in non_acked.into_iter().chain(need_seq) {
            self.fail_tx(rid, status);
        }
        let addr = self.partners.addr_of(p);
        for rid in connects {
            self.complete_connect(rid, status, addr);
        }
        for part in partials {
            let Some(t) = part.target else { continue };
            let is_recv = matches!(self.req(t).map(|r| &r.kind), Some(Kind::Recv(_)));
            if is_recv {
                let got = part.got;
                self.complete_recv_status(t, addr, part.match_info, part.msg_length, got, status);
            } else {
                self.drop_unexp(t);
            }
        }
        // Large sends whose rendezvous was acked, waiting for a notify.
        for id in 0..REGION_IDS {
            let owner = match &self.large.regions[id] {
                Some(r) if r.usage == RegionUse::Window => r.owner,
                _ => continue,
            };
            let mine =
                matches!(self.req(owner).map(|r| &r.kind), Some(Kind::Send(s)) if s.partner == p);
            if mine {
                self.fail_tx(owner, status);
            }
        }
        // Unexpected messages from this partner.
        for u in self.matching.take_unexp_from(&self.reqs, p) {
            self.drop_unexp(u);
        }
        // Receives waiting for a region to pull from this partner.
        let pid = self.partners.pid(p);
        let waiting: Vec<ReqId> = self
            .large
            .pull_waiters
            .iter()
            .copied()
            .filter(|&r| {
                matches!(self.req(r).map(|r| &r.kind), Some(Kind::Recv(rs)) if matches!(rs.phase, RecvPhase::NeedRegion(l) if l.partner == pid))
            })
            .collect();
        self.large.pull_waiters.retain(|r| !waiting.contains(r));
        for r in waiting {
            if let Some(Request {
                kind: Kind::Recv(rs),
                ..
            }) = self.req(r)
            {
                if let RecvPhase::NeedRegion(l) = rs.phase {
                    self.complete_recv_status(r, l.source, l.msg_match, l.msg_length, 0, status);
                }
            }
        }
        self.large.unwait_window(p);
        self.partners[p].reset_sessions(bump);
    }

    pub(super) fn partner_failed(&mut self, p: usize) {
        self.stats.partners_failed += 1;
        self.partners.note_reset(
            p,
            ResetReason::Unreachable,
            self.cfg.report_resets,
            &mut self.stats,
        );
        self.cleanup_partner(p, Status::EndpointUnreachable, true);
    }
}
