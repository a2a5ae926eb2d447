//! Large-message state: region ids and their windows, the rendezvous
//! sequence numbers, the pulls in flight and who waits for a region id, and
//! the staging pool with what staged sends hold of it.

use super::emission::Emission;
use super::state::{Ctrl, PullBlock, Region, RegionUse, Request};
use super::types::{BulkPool, MsgBuf, PoolRange, ReqId};
use super::{slot_req_mut, PULL_BLOCKS_IN_FLIGHT, RDMA_SEQNUM_START, REGION_IDS, SEND_WINDOWS_MAX};
use mx_proto::msg::command::RawSeg;
use slab::Slab;
use std::collections::{HashMap, VecDeque};

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
    pub(crate) pulls: HashMap<u32, PullBlock>,
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
            pulls: HashMap::new(),
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
