//! The send side: posting, seqnum assignment and throttling, regions,
//! command emission, retransmission and the resend limit, partner cleanup.

use super::large::{self, block_segs, Staging};
use super::seq;
use super::state::{
    Class, Ctrl, DoneInfo, Kind, LargeRecv, PartnerId, PullBlock, RecvPhase, Region, RegionUse,
    Request, SendState, Tx, User,
};
use super::types::{raw_segs, PoolRange};
use super::{
    slot_req, slot_req_mut, Core, EndpointAddr, MsgBuf, Rejected, ReqId, ReqType, ResetReason,
    SendError, Status, PULL_BLOCKS_IN_FLIGHT, REGION_IDS,
};
use mx_proto::msg::command::{RawSeg, RegionRegister, REGION_MAX_SEGS, REGION_SEGS_PER_CMD};
use mx_proto::msg::{Command, RdmaRef, SMALL_INLINE_MAX, TINY_INLINE_MAX};

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
                        if !self.large.region_wait_partners.contains(&p) {
                            self.large.region_wait_partners.push_back(p);
                        }
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

    /// Copy a large send into the bulk pool, when there is one. `None`:
    /// the pool has no room now; `Some` empty: nothing to stage.
    fn stage_send(&mut self, rid: ReqId) -> Option<Vec<PoolRange>> {
        let progressive = self.progressive(rid);
        let Some(pool) = self.large.pool.as_mut() else {
            return Some(Vec::new());
        };
        let Some(buf) = slot_req(&self.reqs, rid).and_then(|r| r.buf.as_ref()) else {
            return Some(Vec::new());
        };
        let len = buf.len();
        if len == 0 {
            return Some(Vec::new());
        }
        let cap = pool.capacity();
        // A message larger than the send half of the pool goes through a
        // window of a few blocks; the blocks first pulled are staged now.
        let (len, progressive) = match large::window_slots(cap, self.cfg.pull_block, len) {
            Some(n) if len > cap / 2 => (u32::from(n) * self.cfg.pull_block, false),
            _ => (len, progressive),
        };
        if self.large.staged_sends + u64::from(len) > u64::from(cap / 2) {
            return None;
        }
        let ranges = pool.reserve(len)?;
        self.large.staged_sends += u64::from(len);
        if !progressive {
            let mut off = 0u32;
            for &r in &ranges {
                buf.chunks(off, r.len, &mut |o, bytes| {
                    let copied = pool.write_at(r, o - off, bytes);
                    debug_assert!(copied, "a reserved range is as long as its share");
                });
                off += r.len;
            }
            self.stats.bytes_staged += u64::from(len);
        }
        Some(ranges)
    }

    /// Whether a staged send is copied into the pool block by block while
    /// the peer pulls (only to a peer on this host: the backend holds a
    /// same-host pull of bytes not registered yet until they are, while a
    /// wire pull would be re-requested only after a resend period).
    fn progressive(&self, rid: ReqId) -> bool {
        let Some(Kind::Send(s)) = self.req(rid).map(|r| &r.kind) else {
            return false;
        };
        s.len > self.cfg.pull_block
            && self
                .partners
                .get(s.partner)
                .is_some_and(|p| p.peer == self.cfg.self_peer)
    }

    /// The region segments of a request's buffer, or of its staging ranges.
    fn region_segs(&self, rid: ReqId, staged: &[PoolRange]) -> Vec<RawSeg> {
        if staged.is_empty() {
            self.req(rid)
                .and_then(|r| r.buf.as_ref())
                .map(raw_segs)
                .unwrap_or_default()
        } else {
            staged
                .iter()
                .map(|r| RawSeg::new(r.offset, r.len))
                .collect()
        }
    }

    fn open_send_window(&mut self, rid: ReqId, id: u8, staged: Vec<PoolRange>) {
        let rdma_seqnum = self.large.rdma_seq[usize::from(id)];
        self.large.rdma_seq[usize::from(id)] = rdma_seqnum.wrapping_add(1);
        let len = self
            .req(rid)
            .and_then(|r| r.buf.as_ref())
            .map_or(0, MsgBuf::len);
        let window = if staged.is_empty() {
            None
        } else {
            self.large.window_slots(len, self.cfg.pull_block)
        };
        let progressive = !staged.is_empty() && window.is_none() && self.progressive(rid);
        let segs = if progressive || window.is_some() {
            block_segs(&staged, self.cfg.pull_block)
        } else {
            self.region_segs(rid, &staged)
        };
        let Some(r) = self.req_mut(rid) else {
            self.large.unstage(&staged, true);
            return;
        };
        if let Kind::Send(s) = &mut r.kind {
            s.region = Some((id, rdma_seqnum));
            s.rndv = Some(RdmaRef {
                id,
                seqnum: rdma_seqnum,
                offset: 0,
            });
        }
        let register = !segs.is_empty();
        let nsegs = segs.len();
        self.large.regions[usize::from(id)] = Some(Region {
            owner: rid,
            rdma_seqnum,
            usage: RegionUse::Window,
            segs,
            staged,
            segs_registered: if progressive { 0 } else { nsegs },
            window,
        });
        if window.is_some() {
            self.emission.ctrl_q.push_back(Ctrl::Register {
                region: id,
                chunk: 0,
            });
            self.emission.ctrl_q.push_back(Ctrl::Window {
                region: id,
                seq: rdma_seqnum,
            });
        } else if progressive {
            // The first block before the rendezvous, the rest after it.
            self.emission.ctrl_q.push_back(Ctrl::StageBlock {
                region: id,
                seq: rdma_seqnum,
            });
        } else if register {
            self.emission.ctrl_q.push_back(Ctrl::Register {
                region: id,
                chunk: 0,
            });
        }
    }

    /// Copy the next block of a progressively staged send into the pool and
    /// build the command registering it (at most
    /// [`REGION_SEGS_PER_CMD`] segments, up to the next block boundary);
    /// queue the rest. `None` when the region is gone or done.
    pub(super) fn stage_next_block(&mut self, id: u8, seq: u8) -> Option<Command<'static>> {
        let block = self.cfg.pull_block.max(1);
        let reg = self.large.regions[usize::from(id)].as_ref()?;
        if reg.usage != RegionUse::Window || reg.rdma_seqnum != seq {
            return None;
        }
        let lo = reg.segs_registered;
        if lo >= reg.segs.len() {
            return None;
        }
        let start: u32 = reg.segs[..lo].iter().map(|s| s.len()).sum();
        let mut hi = lo;
        let mut end = start;
        while hi < reg.segs.len() && hi - lo < REGION_SEGS_PER_CMD {
            end += reg.segs[hi].len();
            hi += 1;
            if end.is_multiple_of(block) {
                break;
            }
        }
        let last = hi == reg.segs.len();
        let rr = RegionRegister::new(id, lo == 0, last, lo as u16, &reg.segs[lo..hi]);
        self.stats.bytes_staged +=
            self.large
                .copy_staged(&mut self.reqs, id, start, start, end - start, Staging::In);
        if let Some(reg) = self.large.regions[usize::from(id)].as_mut() {
            reg.segs_registered = hi;
        }
        if !last {
            self.emission
                .stage_q
                .push_back(Ctrl::StageBlock { region: id, seq });
        }
        Some(Command::RegionRegister(rr))
    }

    /// Register a receive buffer and issue its pull (or wait for an id).
    pub(super) fn start_pull(&mut self, rid: ReqId) {
        let Some(r) = self.req(rid) else { return };
        let Kind::Recv(rs) = &r.kind else { return };
        let RecvPhase::NeedRegion(l) = rs.phase else {
            return;
        };
        // A staged pull lands in a ring of a few blocks, reused as blocks
        // are copied out: any message size fits in the pool.
        let ring = match self.large.pool.as_ref() {
            None => l.length,
            Some(p) => {
                let block = self.cfg.pull_block.max(1);
                let blocks = (p.capacity() / 2 / block).clamp(0, u32::from(PULL_BLOCKS_IN_FLIGHT));
                if blocks == 0 {
                    // Not even one block fits: refuse (the sender sees
                    // TRUNCATED).
                    self.complete_recv_status(
                        rid,
                        l.source,
                        l.msg_match,
                        l.msg_length,
                        0,
                        Status::NoResources,
                    );
                    self.queue_notify(l.partner, 0, l.rdma);
                    return;
                }
                l.length.min(blocks * block)
            }
        };
        let staged = match self.large.alloc_region(false) {
            Some(id) => self
                .large
                .stage_recv(ring)
                .map(|st| (id, st))
                .ok_or(Some(id)),
            None => Err(None),
        };
        let (id, staged) = match staged {
            Ok(x) => x,
            Err(id) => {
                if let Some(id) = id {
                    self.large.unalloc_region(id, false);
                }
                if !self.large.pull_waiters.contains(&rid) {
                    self.large.pull_waiters.push_back(rid);
                }
                return;
            }
        };
        let segs = self.region_segs(rid, &staged);
        self.large.regions[usize::from(id)] = Some(Region {
            owner: rid,
            rdma_seqnum: 0,
            usage: RegionUse::Pull,
            segs_registered: segs.len(),
            segs,
            staged,
            window: None,
        });
        self.emission.ctrl_q.push_back(Ctrl::Register {
            region: id,
            chunk: 0,
        });
        if let Some(Request {
            kind: Kind::Recv(rs),
            ..
        }) = self.req_mut(rid)
        {
            rs.phase = RecvPhase::Pulling(LargeRecv {
                region: id,
                next: 0,
                got: 0,
                failed: None,
                ring,
                busy: 0,
                ..l
            });
        }
        self.issue_pull_blocks(rid);
    }

    /// Ask for the next blocks of a pull while fewer than
    /// [`PULL_BLOCKS_IN_FLIGHT`] are out. A staged pull goes in blocks of
    /// [`Config::pull_block`](super::Config::pull_block), so that the copy out of the pool overlaps the
    /// backend's transfer of the next block; an unstaged one in one block.
    pub(super) fn issue_pull_blocks(&mut self, rid: ReqId) {
        loop {
            let Some(Request {
                kind: Kind::Recv(rs),
                ..
            }) = slot_req_mut(&mut self.reqs, rid)
            else {
                return;
            };
            let RecvPhase::Pulling(l) = &mut rs.phase else {
                return;
            };
            if l.failed.is_some()
                || l.next >= l.length
                || l.busy.count_ones() >= u32::from(PULL_BLOCKS_IN_FLIGHT)
            {
                return;
            }
            let staged = self.large.regions[usize::from(l.region)]
                .as_ref()
                .is_some_and(|r| !r.staged.is_empty());
            let block = if staged {
                self.cfg.pull_block.max(1)
            } else {
                l.length
            };
            // Block k goes to ring slot k mod (ring / block); a slot still
            // holding a block in flight (blocks may finish out of order
            // across the wire) waits.
            let slot = (l.next / block) % (l.ring / block).max(1);
            if l.busy & (1 << slot) != 0 {
                return;
            }
            let len = (l.length - l.next).min(block);
            let cookie = self.large.new_cookie();
            self.large.pulls.insert(
                cookie,
                PullBlock {
                    rid,
                    off: l.next,
                    at: slot * block,
                    len,
                },
            );
            l.next += len;
            l.busy |= 1 << slot;
            self.emission.ctrl_q.push_back(Ctrl::Pull(cookie));
        }
    }

    /// The backend needs block `block` of our window `region` in slot
    /// `slot` (a pull reached it): copy it there from the send's buffer,
    /// which stays ours until the send completes, and say so. A request
    /// for a region that is no longer that window (the send ended, the id
    /// was reused) or out of its bounds is dropped and counted.
    pub(super) fn stage_needed(&mut self, region: u8, gen: u8, slot: u16, block: u32) {
        let bsize = self.cfg.pull_block;
        let ok = self.large.regions[usize::from(region)]
            .as_ref()
            .is_some_and(|r| {
                r.usage == RegionUse::Window
                    && r.rdma_seqnum == gen
                    && r.window.is_some_and(|n| slot < n)
                    && self
                        .req(r.owner)
                        .and_then(|q| q.buf.as_ref())
                        .is_some_and(|b| u64::from(block) * u64::from(bsize) < u64::from(b.len()))
            });
        if !ok {
            self.stats.drop_bad_event += 1;
            return;
        }
        self.stats.bytes_staged += self.large.copy_staged(
            &mut self.reqs,
            region,
            u32::from(slot) * bsize,
            block * bsize,
            bsize,
            Staging::In,
        );
        self.stats.window_stages += 1;
        self.emission.ctrl_q.push_back(Ctrl::Stage {
            region,
            seq: gen,
            slot,
            block,
        });
    }

    pub(super) fn serve_region_waiters(&mut self) {
        // Bounded: a waiter that still finds no room goes back in line.
        for _ in 0..self.large.pull_waiters.len() {
            if self.large.region_free.is_empty() {
                break;
            }
            let Some(rid) = self.large.pull_waiters.pop_front() else {
                break;
            };
            self.start_pull(rid);
        }
        let n = self.large.region_wait_partners.len();
        for _ in 0..n {
            if !self.large.window_free() {
                break;
            }
            let Some(p) = self.large.region_wait_partners.pop_front() else {
                break;
            };
            self.pump_partner(p);
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
        let mut dropped = Vec::new();
        for q in &mut self.matching.unexp {
            q.retain(|&u| {
                let from_p = matches!(self.reqs.get(u.index as usize).map(|r| &r.kind), Some(Kind::Unexp(s)) if s.partner == p);
                if from_p {
                    dropped.push(u);
                }
                !from_p
            });
        }
        for u in dropped {
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
        self.large.region_wait_partners.retain(|&x| x != p);
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
