//! The partner table: every endpoint this one talks to (and itself), by
//! handle and by `(peer, endpoint)`, with the generation that makes stale
//! addresses fail, and the reset notices kept for `MX_VERBOSE`; each
//! partner's sessions, seqnums, unacked and waiting messages, partial and
//! early receives, and its session rules (connect, restart, reset).

use super::seq;
use super::state::{OwnedMsg, PartnerId};
use super::types::{EndpointAddr, PartnerInfo, PartnerReset, ReqId, ResetReason, Stats, Time};
use mx_proto::msg::Dest;
use slab::Slab;
use std::collections::{HashMap, VecDeque};

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
    pub(crate) by_dest: HashMap<(u16, u8), usize>,
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
        let mut by_dest = HashMap::new();
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
