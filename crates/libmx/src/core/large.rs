//! Large-message state: region ids and their windows, the rendezvous
//! sequence numbers, the pulls in flight and who waits for a region id, and
//! the staging pool with what staged sends hold of it. Below it, the
//! rendezvous operations on [`Core`], which span requests, partners and
//! emission: a large send's window and staging, a large receive's pull,
//! the notify that ends both.

use super::emission::Emission;
use super::small_hash::SmallMap;
use super::state::{Ctrl, Kind, LargeRecv, PullBlock, RecvPhase, Region, RegionUse, Request};
use super::types::raw_segs;
use super::types::{BulkPool, MsgBuf, PoolRange, ReqId};
use super::{
    slot_req, slot_req_mut, Core, EndpointAddr, Status, PULL_BLOCKS_IN_FLIGHT, RDMA_SEQNUM_START,
    REGION_IDS, SEND_WINDOWS_MAX,
};
use mx_proto::msg::command::{RawSeg, RegionRegister, REGION_SEGS_PER_CMD};
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{Command, RdmaRef};
use slab::Slab;
use std::collections::VecDeque;

/// Most slots of a send's staging window: enough for the pulls in flight
/// of one receiver ([`PULL_BLOCKS_IN_FLIGHT`]).
pub(crate) const WINDOW_SLOTS_MAX: u32 = PULL_BLOCKS_IN_FLIGHT as u32;

/// The slots of a window over a message of `len` bytes in a pool of `cap`
/// bytes with blocks of `block` bytes: as many blocks as fit in the send
/// half of the pool, at most [`WINDOW_SLOTS_MAX`], at least 2 (a wire PULL
/// block may straddle two message blocks); `None` when 2 do not fit or
/// the message is not longer than the window.
pub(crate) fn window_slots(cap: u32, block: u32, len: u32) -> Option<u16> {
    if block == 0 || !block.is_multiple_of(4096) {
        return None;
    }
    let n = (cap / 2 / block).min(WINDOW_SLOTS_MAX);
    (n >= 2 && u64::from(len) > u64::from(n) * u64::from(block)).then_some(n as u16)
}

/// Which way [`Large::copy_staged`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staging {
    /// From the buffer into the pool.
    In,
    /// From the pool into the buffer.
    Out,
}

/// Regions, pulls and the staging pool of one core.
pub(crate) struct Large {
    /// Region by id: a send window or a pull's landing region.
    pub(crate) regions: Vec<Option<Region>>,
    pub(crate) region_free: VecDeque<u8>,
    /// Region ids held by send windows (at most `SEND_WINDOWS_MAX`).
    pub(crate) send_windows: usize,
    /// Next rdma seqnum of each region id.
    pub(crate) rdma_seq: [u8; REGION_IDS],
    /// Partners with large sends waiting for a region id, in order.
    pub(crate) region_wait_partners: VecDeque<usize>,
    /// Receives waiting for a region id (or pool room) to pull into.
    pub(crate) pull_waiters: VecDeque<ReqId>,
    /// Pull blocks in flight, by cookie.
    pub(crate) pulls: SmallMap<u32, PullBlock>,
    pub(crate) next_cookie: u32,
    /// Where large messages are staged, when the backend cannot reach the
    /// application's buffers (see [`BulkPool`]).
    pub(crate) pool: Option<Box<dyn BulkPool>>,
    /// Pool bytes held by staged sends: at most half the pool, so that
    /// pulls always find room once other pulls finish (sends release only
    /// when the peer's pull completes; if they could fill the pool, two
    /// endpoints sending large messages to each other would deadlock).
    pub(crate) staged_sends: u64,
}

impl Large {
    /// Every region id free, cookies from `first_cookie`.
    pub(crate) fn new(first_cookie: u32) -> Self {
        Large {
            regions: (0..REGION_IDS).map(|_| None).collect(),
            region_free: (0..=255u8).collect(),
            send_windows: 0,
            rdma_seq: [RDMA_SEQNUM_START; REGION_IDS],
            region_wait_partners: VecDeque::new(),
            pull_waiters: VecDeque::new(),
            pulls: SmallMap::default(),
            next_cookie: first_cookie,
            pool: None,
            staged_sends: 0,
        }
    }

    /// A free region id; a send window (`window`) counts against the
    /// windows' own limit.
    pub(crate) fn alloc_region(&mut self, window: bool) -> Option<u8> {
        if window && self.send_windows >= SEND_WINDOWS_MAX {
            return None;
        }
        let id = self.region_free.pop_front()?;
        if window {
            self.send_windows += 1;
        }
        Some(id)
    }

    /// Give back an id [`Large::alloc_region`] handed out but that was not
    /// used.
    pub(crate) fn unalloc_region(&mut self, id: u8, window: bool) {
        if window {
            self.send_windows -= 1;
        }
        self.region_free.push_front(id);
    }

    /// No pull in flight, no send window open.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.pulls.is_empty() && self.send_windows == 0
    }

    /// Partner `p` has a large send waiting for a region id (or pool
    /// room); it is served in turn.
    pub(crate) fn wait_window(&mut self, p: usize) {
        if !self.region_wait_partners.contains(&p) {
            self.region_wait_partners.push_back(p);
        }
    }

    /// Partner `p` no longer waits (it was reset or disconnected).
    pub(crate) fn unwait_window(&mut self, p: usize) {
        self.region_wait_partners.retain(|&x| x != p);
    }

    /// Receive `rid` waits for a region id (or pool room) to pull into.
    pub(crate) fn wait_region(&mut self, rid: ReqId) {
        if !self.pull_waiters.contains(&rid) {
            self.pull_waiters.push_back(rid);
        }
    }

    /// Whether a region id is free for a waiting large send.
    #[inline]
    pub(crate) fn window_free(&self) -> bool {
        !self.region_free.is_empty() && self.send_windows < SEND_WINDOWS_MAX
    }

    /// The cookie of the next pull block.
    #[inline]
    pub(crate) fn new_cookie(&mut self) -> u32 {
        let c = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1);
        c
    }

    /// The slots of the window a send of `len` bytes would be staged
    /// through (blocks of `block` bytes), when it is larger than the send
    /// half of the pool and a window fits there.
    pub(crate) fn window_slots(&self, len: u32, block: u32) -> Option<u16> {
        let pool = self.pool.as_ref()?;
        let cap = pool.capacity();
        if len <= cap / 2 {
            return None;
        }
        window_slots(cap, block, len)
    }

    /// Reserve pool room for a pull of `len` bytes, when there is a pool.
    /// `None`: no room now; `Some` empty: no pool.
    pub(crate) fn stage_recv(&mut self, len: u32) -> Option<Vec<PoolRange>> {
        match self.pool.as_mut() {
            None => Some(Vec::new()),
            Some(pool) => pool.reserve(len),
        }
    }

    /// Forget a region: deregister it at the backend (through `out`), free
    /// its id and its staging ranges.
    pub(crate) fn release_region(&mut self, id: u8, out: &mut Emission) {
        if let Some(r) = self.regions[usize::from(id)].take() {
            if !r.segs.is_empty() {
                out.ctrl_q.push_back(Ctrl::Deregister(id));
            }
            if r.usage == RegionUse::Window {
                self.send_windows -= 1;
            }
            self.unstage(&r.staged, r.usage == RegionUse::Window);
            self.region_free.push_back(id);
        }
    }

    /// Give staging ranges back to the pool (a send's leave its budget).
    pub(crate) fn unstage(&mut self, ranges: &[PoolRange], send: bool) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        for &r in ranges {
            pool.release(r);
            if send {
                self.staged_sends -= u64::from(r.len);
            }
        }
    }

    /// Copy `n` bytes between offset `at` of region `id`'s staging ranges and
    /// message offset `off` of its owner's buffer (in `reqs`): into the pool
    /// (a send being staged) or out of it (a block a pull brought). Nothing
    /// when the region is not staged. Returns the bytes copied.
    pub(crate) fn copy_staged<B: MsgBuf>(
        &mut self,
        reqs: &mut Slab<Request<B>>,
        id: u8,
        at: u32,
        off: u32,
        n: u32,
        dir: Staging,
    ) -> u64 {
        let Some(reg) = &self.regions[usize::from(id)] else {
            return 0;
        };
        let (Some(pool), Some(r)) = (self.pool.as_mut(), slot_req_mut(reqs, reg.owner)) else {
            return 0;
        };
        let Some(buf) = r.buf.as_mut() else { return 0 };
        let n = n.min(buf.len().saturating_sub(off));
        let end = at.saturating_add(n);
        let mut copied = 0u64;
        let mut base = 0u32; // region offset of the current range
        for &range in &reg.staged {
            let (lo, hi) = (at.max(base), end.min(base + range.len));
            if lo < hi {
                let (a, msg) = (lo - base, off + (lo - at));
                match dir {
                    Staging::In => buf.chunks(msg, hi - lo, &mut |o, bytes| {
                        let ok = pool.write_at(range, a + (o - msg), bytes);
                        debug_assert!(ok, "inside the staged range");
                    }),
                    Staging::Out => buf.chunks_mut(msg, hi - lo, &mut |o, bytes| {
                        let ok = pool.read_at(range, a + (o - msg), bytes);
                        debug_assert!(ok, "inside the staged range");
                    }),
                }
                copied += u64::from(hi - lo);
            }
            base += range.len;
            if base >= end {
                break;
            }
        }
        copied
    }
}

/// The segments of staging ranges, cut at every block boundary (blocks of
/// `block` bytes) of the message so that each block can be registered on
/// its own.
pub(crate) fn block_segs(staged: &[PoolRange], block: u32) -> Vec<RawSeg> {
    let block = block.max(1);
    let mut out = Vec::new();
    let mut msg_off = 0u32;
    for r in staged {
        let mut o = 0u32;
        while o < r.len {
            let n = (r.len - o).min(block - msg_off % block);
            out.push(RawSeg::new(r.offset + u64::from(o), n));
            o += n;
            msg_off += n;
        }
    }
    out
}

// ----------------------------------------------------------------
// The rendezvous operations (span requests, partners, emission)
// ----------------------------------------------------------------

impl<B: MsgBuf> Core<B> {
    // ----------------------------------------------------------------
    // The sender: window and staging
    // ----------------------------------------------------------------

    /// Copy a large send into the bulk pool, when there is one. `None`:
    /// the pool has no room now; `Some` empty: nothing to stage.
    pub(super) fn stage_send(&mut self, rid: ReqId) -> Option<Vec<PoolRange>> {
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
        let (len, progressive) = match window_slots(cap, self.cfg.pull_block, len) {
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
    pub(super) fn progressive(&self, rid: ReqId) -> bool {
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
    pub(super) fn region_segs(&self, rid: ReqId, staged: &[PoolRange]) -> Vec<RawSeg> {
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

    pub(super) fn open_send_window(&mut self, rid: ReqId, id: u8, staged: Vec<PoolRange>) {
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

    // ----------------------------------------------------------------
    // The receiver: the pull
    // ----------------------------------------------------------------

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
                self.large.wait_region(rid);
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

    pub(super) fn start_large_recv(
        &mut self,
        r: ReqId,
        p: usize,
        source: EndpointAddr,
        match_info: u64,
        msg_length: u32,
        rdma: RdmaRef,
    ) {
        let length = msg_length.min(self.buf_len(r));
        let pid = self.partners.pid(p);
        if length == 0 {
            self.complete_recv(r, source, match_info, msg_length, 0);
            self.queue_notify(pid, 0, rdma);
            return;
        }
        if let Some(Request {
            kind: Kind::Recv(rs),
            ..
        }) = self.req_mut(r)
        {
            rs.phase = RecvPhase::NeedRegion(LargeRecv {
                partner: pid,
                source,
                msg_match: match_info,
                msg_length,
                length,
                rdma,
                region: 0,
                next: 0,
                got: 0,
                failed: None,
                ring: 0,
                busy: 0,
            });
        }
        self.start_pull(r);
    }

    /// One block of a pull ended (its `PullDone`, or it could not be asked
    /// for): copy it out of the pool when staged, ask for the next blocks,
    /// and complete the receive once no block is in flight and either every
    /// byte arrived or a block failed.
    pub(super) fn pull_block_done(&mut self, cookie: u32, status: PullStatus, transferred: u32) {
        let Some(b) = self.large.pulls.remove(&cookie) else {
            self.stats.drop_bad_event += 1;
            return;
        };
        let Some(Request {
            kind: Kind::Recv(rs),
            ..
        }) = super::slot_req_mut(&mut self.reqs, b.rid)
        else {
            return;
        };
        let RecvPhase::Pulling(l) = &mut rs.phase else {
            return;
        };
        // The block's ring slot frees once it is copied out (just below).
        let slot = b.at / self.cfg.pull_block.max(1);
        l.busy &= !(1u8.checked_shl(slot).unwrap_or(0));
        let ok = status == PullStatus::Success && transferred == b.len;
        if ok {
            l.got += b.len;
        } else if l.failed.is_none() {
            l.failed = Some(if status == PullStatus::Success {
                PullStatus::BadLocalRegion // a short block: the backend lied
            } else {
                status
            });
        }
        let l = *l;
        if ok {
            self.stats.bytes_staged +=
                self.large
                    .copy_staged(&mut self.reqs, l.region, b.at, b.off, b.len, Staging::Out);
        }
        self.issue_pull_blocks(b.rid);
        let Some(Request {
            kind: Kind::Recv(rs),
            ..
        }) = self.req(b.rid)
        else {
            return;
        };
        let RecvPhase::Pulling(l) = rs.phase else {
            return;
        };
        if l.busy != 0 || (l.failed.is_none() && l.got < l.length) {
            return;
        }
        self.large.release_region(l.region, &mut self.emission);
        let xfer = match l.failed {
            None => {
                self.complete_recv(b.rid, l.source, l.msg_match, l.msg_length, l.got);
                l.got
            }
            Some(status) => {
                let st = match status {
                    PullStatus::Success | PullStatus::Unreachable => Status::EndpointUnreachable,
                    PullStatus::EndpointClosed => Status::EndpointClosed,
                    PullStatus::BadEndpoint => Status::BadEndpoint,
                    PullStatus::BadSession => Status::BadSession,
                    PullStatus::BadRdmaWindow => Status::BadRdmawin,
                    PullStatus::BadLocalRegion => Status::Aborted,
                };
                self.complete_recv_status(b.rid, l.source, l.msg_match, l.msg_length, 0, st);
                0
            }
        };
        self.queue_notify(l.partner, xfer, l.rdma);
    }

    pub(super) fn pull_direct(&mut self, cookie: u32, copy: impl FnOnce(&mut B, u32) -> bool) {
        let Some(&b) = self.large.pulls.get(&cookie) else {
            self.stats.drop_bad_event += 1;
            return;
        };
        let copied = b.off == 0
            && super::slot_req_mut(&mut self.reqs, b.rid)
                .and_then(|req| req.buf.as_mut())
                .is_some_and(|buf| copy(buf, b.len));
        if copied {
            self.stats.pulls_direct += 1;
            self.pull_block_done(cookie, PullStatus::Success, b.len);
        } else {
            self.stats.pulls_direct_failed += 1;
            self.cfg.direct_pull = false;
            self.emission.ctrl_q.push_back(Ctrl::Pull(cookie));
        }
    }

    /// The puller of one of our large sends says it is done.
    pub(super) fn recv_notify(
        &mut self,
        p: usize,
        total_length: u32,
        rdma_id: u8,
        rdma_seqnum: u8,
    ) {
        let owner = match &self.large.regions[usize::from(rdma_id)] {
            Some(reg) if reg.usage == RegionUse::Window && reg.rdma_seqnum == rdma_seqnum => {
                reg.owner
            }
            _ => {
                self.stats.drop_bad_event += 1;
                return;
            }
        };
        let mine =
            matches!(self.req(owner).map(|r| &r.kind), Some(Kind::Send(s)) if s.partner == p);
        if !mine {
            self.stats.drop_bad_event += 1;
            return;
        }
        self.finish_large_send(owner, total_length);
    }

    // ----------------------------------------------------------------
    // Both: waiting for a region id, the end of a large send
    // ----------------------------------------------------------------

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

    /// A large send is done (notified, or dropped by the receiver's
    /// handler): it sees TRUNCATED if fewer bytes than sent were taken.
    pub(super) fn finish_large_send(&mut self, send: ReqId, xfer: u32) {
        let Some(r) = self.req_mut(send) else { return };
        let Kind::Send(s) = &mut r.kind else { return };
        if s.completed {
            return;
        }
        let xfer = xfer.min(s.len);
        let status = if xfer < s.len {
            Status::Truncated
        } else {
            Status::Success
        };
        let region = s.region.take().map(|(id, _)| id);
        // A rendezvous not acked yet stays in the partner's unacked queue
        // (and is retransmitted, harmlessly) until an ack covers it: the
        // receiver re-acks only what is retransmitted.
        if s.tx.acked || s.tx.seqnum.is_none() {
            r.internal = false;
        }
        if let Some(id) = region {
            self.large.release_region(id, &mut self.emission);
        }
        self.complete_send(send, status, xfer);
        self.try_free(send);
    }
}
