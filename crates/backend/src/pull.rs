//! The puller's side of the LARGE protocol (spec section 11), per endpoint.
//!
//! Sans-IO: every entry point takes `now`; outgoing PULL requests are
//! appended to a caller's vector ([`Request`]), finished pulls queue up as
//! [`Completion`]s the caller turns into `PullDone` events when the guest's
//! event ring has room. The replier's side is stateless and lives in the
//! wire layer.
//!
//! # One pull
//!
//! A pull of `L` bytes is cut into blocks ([`mxoe_wire::pull::blocks`]);
//! at most [`PULL_BLOCKS_IN_FLIGHT`] are requested at a time (the window).
//! Each block keeps a bitmap of the reply frames it got (at most 32), so
//! duplicates are ignored. When the first block of the window is complete
//! the window slides: complete blocks leave from the front and new ones are
//! requested. When a later block completes while an earlier one is still
//! incomplete, the earlier one is re-requested at once, once per resend
//! period (a lost reply frame costs a round trip, not a timeout). Every
//! `resend` period, every incomplete block of the window is requested
//! again. A pull fails with [`PullStatus::Unreachable`] when no new reply
//! frame arrived for `timeout` (decision: the timeout counts from the last
//! progress, so a long transfer over a slow network does not fail while it
//! moves).
//!
//! # Handles
//!
//! A pull is named on the wire by a [`PullHandle`] (slot index in bits
//! 22-31, generation in bits 0-21, starting at 0x23 and bumped each time
//! the slot is freed) and the endpoint's [`PullMagic`]; a reply or NACK_MCP
//! naming a freed slot or an older generation is stray and dropped. The
//! table outlives the endpoint's openings, so generations keep growing
//! across a close and a re-open of the same endpoint id.

use mx_proto::msg::event::PullStatus;
use mxoe_wire::packet::Pull;
use mxoe_wire::pull::{block_frames, blocks, locate_reply, reply_frame, PullBlock, PullBlocks};
use mxoe_wire::{EndpointId, PullHandle, PullMagic, SessionId, WireProfile, PULL_BLOCKS_IN_FLIGHT};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the puller asked for (from the guest's `Pull` command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSpec {
    /// Returned in the `PullDone` event.
    pub cookie: u32,
    /// The sender's host (peer index).
    pub peer: u16,
    /// The sender's endpoint.
    pub remote_ep: u8,
    /// The sender endpoint's session (our back session).
    pub session: u32,
    /// The sender's window.
    pub rdma_id: u8,
    /// The window's use counter (not checked by the replier).
    pub rdma_seqnum: u8,
    /// Offset of the message in the window.
    pub rdma_offset: u32,
    /// Bytes to pull.
    pub length: u32,
}

/// A PULL request to send to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The peer to send it to.
    pub peer: u16,
    /// The packet.
    pub pull: Pull,
}

/// A finished pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The guest's cookie.
    pub cookie: u32,
    /// How it ended.
    pub status: PullStatus,
    /// Bytes transferred (0 unless successful).
    pub transferred: u32,
}

/// Timing of the pull engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullTiming {
    /// Re-request incomplete blocks this often.
    pub resend: Duration,
    /// Fail after this long without a new reply frame.
    pub timeout: Duration,
}

/// Why a reply frame was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No live pull has this handle, the frame comes from another host, or
    /// it matches no frame of the window (stray or lying reply).
    Stray,
    /// That frame was already received.
    Duplicate,
}

/// An accepted reply frame: write its data at `msg_offset` of the pull's
/// local region segments ([`PullTable::segs`]), then call
/// [`PullTable::received`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    slot: u16,
    block: usize,
    off: u32,
    len: u32,
}

impl Accepted {
    /// The pull slot (for [`PullTable::segs`] and [`PullTable::fail`]).
    pub fn slot(&self) -> u16 {
        self.slot
    }
}

#[derive(Debug, Clone, Copy)]
struct Block {
    geo: PullBlock,
    frames: u32,
    got: u32,
    /// Re-requested early (a later block completed first) since the last
    /// periodic resend.
    fast_retried: bool,
}

impl Block {
    fn complete(&self) -> bool {
        self.got.count_ones() == self.frames
    }
}

#[derive(Debug)]
struct Active<R> {
    spec: PullSpec,
    handle: PullHandle,
    segs: Vec<R>,
    window: VecDeque<Block>,
    rest: PullBlocks,
    deadline: Instant,
    next_resend: Instant,
}

#[derive(Debug)]
struct Slot<R> {
    generation: u32,
    pull: Option<Active<R>>,
}

/// The pulls of one endpoint.
#[derive(Debug)]
pub struct PullTable<R> {
    profile: WireProfile,
    ep: u8,
    slots: Vec<Slot<R>>,
    free: Vec<u16>,
    active: usize,
    done: VecDeque<Completion>,
    resent: u64,
}

impl<R: Copy> PullTable<R> {
    /// The table of endpoint `ep` under `profile`.
    pub fn new(profile: WireProfile, ep: u8) -> Self {
        PullTable {
            profile,
            ep,
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            done: VecDeque::new(),
            resent: 0,
        }
    }

    /// Number of live pulls.
    pub fn active(&self) -> usize {
        self.active
    }

    /// PULL requests sent again so far (periodic and early re-requests).
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Start a pull of `spec.length > 0` bytes into the local region
    /// segments `segs` (covering exactly the pulled bytes); the first
    /// requests go to `out`. `None` when all 1024 handles are in use.
    pub fn start(
        &mut self,
        now: Instant,
        t: &PullTiming,
        spec: PullSpec,
        segs: Vec<R>,
        out: &mut Vec<Request>,
    ) -> Option<PullHandle> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.slots.len() < usize::from(PullHandle::SLOTS) => {
                self.slots.push(Slot {
                    generation: PullHandle::INITIAL_GENERATION,
                    pull: None,
                });
                (self.slots.len() - 1) as u16
            }
            None => return None,
        };
        let s = &mut self.slots[usize::from(slot)];
        let handle = PullHandle::new(slot, s.generation)?;
        let mut a = Active {
            spec,
            handle,
            segs,
            window: VecDeque::with_capacity(PULL_BLOCKS_IN_FLIGHT as usize),
            rest: blocks(&self.profile, spec.rdma_offset, spec.length),
            deadline: now + t.timeout,
            next_resend: now + t.resend,
        };
        fill_window(&self.profile, self.ep, &mut a, out);
        s.pull = Some(a);
        self.active += 1;
        Some(handle)
    }

    fn live(&self, handle: PullHandle) -> Option<&Active<R>> {
        let s = self.slots.get(usize::from(handle.slot()))?;
        if s.generation != handle.generation() {
            return None;
        }
        s.pull.as_ref()
    }

    /// The peer a live pull reads from.
    pub fn peer_of(&self, handle: PullHandle) -> Option<u16> {
        self.live(handle).map(|a| a.spec.peer)
    }

    /// Check a PULL_REPLY from `peer` against the pull it names.
    ///
    /// # Errors
    /// [`Reject::Stray`] or [`Reject::Duplicate`].
    pub fn accept(
        &self,
        handle: PullHandle,
        peer: u16,
        frame_seqnum: u8,
        msg_offset: u32,
        len: usize,
    ) -> Result<Accepted, Reject> {
        let a = self.live(handle).ok_or(Reject::Stray)?;
        if a.spec.peer != peer {
            return Err(Reject::Stray);
        }
        for (bi, b) in a.window.iter().enumerate() {
            let Some(off) = locate_reply(
                &self.profile,
                b.geo.frame_index,
                b.frames,
                frame_seqnum,
                msg_offset,
            ) else {
                continue;
            };
            // The frame must be exactly the one the replier owes us there.
            let want =
                reply_frame(&self.profile, &b.geo, a.spec.rdma_offset, off).ok_or(Reject::Stray)?;
            if want.msg_offset != msg_offset || want.frame_length as usize != len {
                return Err(Reject::Stray);
            }
            if b.got & (1 << off) != 0 {
                return Err(Reject::Duplicate);
            }
            return Ok(Accepted {
                slot: handle.slot(),
                block: bi,
                off,
                len: want.frame_length,
            });
        }
        Err(Reject::Stray)
    }

    /// The local region segments of the pull in `slot` (the data of a
    /// frame goes at its `msg_offset` in their concatenation).
    pub fn segs(&self, slot: u16) -> &[R] {
        self.slots
            .get(usize::from(slot))
            .and_then(|s| s.pull.as_ref())
            .map_or(&[], |a| &a.segs)
    }

    /// The frame `acc` was written: mark it, slide the window, request what
    /// is due, and complete the pull when every byte is in. Returns the
    /// bytes newly received.
    pub fn received(
        &mut self,
        now: Instant,
        t: &PullTiming,
        acc: Accepted,
        out: &mut Vec<Request>,
    ) -> u32 {
        let (profile, ep) = (self.profile, self.ep);
        let Some(a) = self
            .slots
            .get_mut(usize::from(acc.slot))
            .and_then(|s| s.pull.as_mut())
        else {
            return 0;
        };
        let Some(b) = a.window.get_mut(acc.block) else {
            return 0;
        };
        if b.got & (1 << acc.off) != 0 {
            return 0;
        }
        b.got |= 1 << acc.off;
        a.deadline = now + t.timeout;
        if b.complete() {
            if acc.block == 0 {
                while a.window.front().is_some_and(Block::complete) {
                    a.window.pop_front();
                }
                fill_window(&profile, ep, a, out);
            } else {
                // A later block finished first: the earlier incomplete ones
                // probably lost a frame. Ask again, once per resend period.
                let mut again = Vec::new();
                for e in a.window.iter_mut().take(acc.block) {
                    if !e.complete() && !e.fast_retried {
                        e.fast_retried = true;
                        again.push(e.geo);
                    }
                }
                for geo in &again {
                    out.push(request(ep, a, geo));
                }
                self.resent += again.len() as u64;
            }
        }
        if a.window.is_empty() {
            let cookie = a.spec.cookie;
            let transferred = a.spec.length;
            self.free_slot(acc.slot);
            self.done.push_back(Completion {
                cookie,
                status: PullStatus::Success,
                transferred,
            });
        }
        acc.len
    }

    /// End the pull in `slot` with `status` (e.g. the local region could
    /// not be written).
    pub fn fail(&mut self, slot: u16, status: PullStatus) {
        let Some(cookie) = self
            .slots
            .get(usize::from(slot))
            .and_then(|s| s.pull.as_ref())
            .map(|a| a.spec.cookie)
        else {
            return;
        };
        self.free_slot(slot);
        self.done.push_back(Completion {
            cookie,
            status,
            transferred: 0,
        });
    }

    /// A NACK_MCP from `peer` for `handle`: fail the pull with `status`.
    /// False if no live pull of that peer has this handle.
    pub fn nack(&mut self, handle: PullHandle, peer: u16, status: PullStatus) -> bool {
        if self.live(handle).is_none_or(|a| a.spec.peer != peer) {
            return false;
        }
        self.fail(handle.slot(), status);
        true
    }

    /// Timers: fail pulls without progress for the timeout, re-request the
    /// incomplete blocks of the others every resend period.
    pub fn poll(&mut self, now: Instant, t: &PullTiming, out: &mut Vec<Request>) {
        if self.active == 0 {
            return;
        }
        let ep = self.ep;
        let mut failed = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(a) = s.pull.as_mut() else { continue };
            if now >= a.deadline {
                failed.push(i as u16);
                continue;
            }
            if now >= a.next_resend {
                a.next_resend = now + t.resend;
                for b in a.window.iter_mut() {
                    b.fast_retried = false;
                }
                for b in a.window.iter().filter(|b| !b.complete()) {
                    out.push(request(ep, a, &b.geo));
                    self.resent += 1;
                }
            }
        }
        for slot in failed {
            self.fail(slot, PullStatus::Unreachable);
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_timer(&self) -> Option<Instant> {
        if self.active == 0 {
            return None;
        }
        self.slots
            .iter()
            .filter_map(|s| s.pull.as_ref())
            .map(|a| a.deadline.min(a.next_resend))
            .min()
    }

    /// The oldest finished pull, if any (leave it with
    /// [`pop_done`](Self::pop_done) once its event is posted).
    pub fn peek_done(&self) -> Option<Completion> {
        self.done.front().copied()
    }

    /// Take the oldest finished pull.
    pub fn pop_done(&mut self) -> Option<Completion> {
        self.done.pop_front()
    }

    /// The endpoint closed: drop every pull and completion (later replies
    /// are stray: the generations move on).
    pub fn abort_all(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].pull.is_some() {
                self.free_slot(i as u16);
            }
        }
        self.done.clear();
    }

    fn free_slot(&mut self, slot: u16) {
        let s = &mut self.slots[usize::from(slot)];
        if s.pull.take().is_some() {
            s.generation = PullHandle::next_generation(s.generation);
            self.free.push(slot);
            self.active -= 1;
        }
    }
}

/// Request blocks until the window is full or the pull has no more.
fn fill_window<R>(profile: &WireProfile, ep: u8, a: &mut Active<R>, out: &mut Vec<Request>) {
    while a.window.len() < PULL_BLOCKS_IN_FLIGHT as usize {
        let Some(geo) = a.rest.next() else { break };
        let b = Block {
            geo,
            frames: block_frames(profile, geo.first_frame_offset, geo.block_length),
            got: 0,
            fast_retried: false,
        };
        out.push(request(ep, a, &b.geo));
        a.window.push_back(b);
    }
}

fn request<R>(ep: u8, a: &Active<R>, geo: &PullBlock) -> Request {
    Request {
        peer: a.spec.peer,
        pull: Pull {
            dst_endpoint: EndpointId(a.spec.remote_ep),
            src_endpoint: EndpointId(ep),
            session: SessionId(a.spec.session),
            total_length: a.spec.length,
            pulled_rdma_id: u32::from(a.spec.rdma_id),
            pulled_rdma_seqnum: a.spec.rdma_seqnum,
            pulled_rdma_offset: a.spec.rdma_offset,
            src_pull_handle: a.handle,
            src_magic: PullMagic::for_endpoint(EndpointId(ep)),
            first_frame_offset: geo.first_frame_offset,
            block_length: geo.block_length,
            frame_index: geo.frame_index,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake replier: the frames a stateless replier sends for one PULL
    /// (spec section 11.5), as (frame_seqnum, msg_offset, data).
    fn replies(p: &WireProfile, req: &Pull, msg: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let geo = PullBlock {
            first_frame_offset: req.first_frame_offset,
            block_length: req.block_length,
            frame_index: req.frame_index,
        };
        (0..geo.frames(p))
            .map(|i| {
                let f = reply_frame(p, &geo, req.pulled_rdma_offset, i).unwrap();
                let o = f.msg_offset as usize;
                (
                    f.frame_seqnum,
                    f.msg_offset,
                    msg[o..o + f.frame_length as usize].to_vec(),
                )
            })
            .collect()
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    const T: PullTiming = PullTiming {
        resend: Duration::from_millis(1000),
        timeout: Duration::from_secs(10),
    };

    fn spec(len: u32, rdma_offset: u32) -> PullSpec {
        PullSpec {
            cookie: 77,
            peer: 3,
            remote_ep: 5,
            session: 0xabcd,
            rdma_id: 9,
            rdma_seqnum: 23,
            rdma_offset,
            length: len,
        }
    }

    /// Drive one pull against the fake replier on a wire that loses,
    /// duplicates and reorders reply frames (and loses requests), with
    /// virtual time. Returns (received bytes, completion, virtual ms).
    fn drive(
        p: WireProfile,
        len: u32,
        rdma_offset: u32,
        loss: u64,
        seed: u64,
    ) -> (Vec<u8>, Completion, u64, u64) {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut t = PullTable::<()>::new(p, 2);
        let t0 = Instant::now();
        let mut now = t0;
        let mut out = Vec::new();
        let h = t
            .start(now, &T, spec(len, rdma_offset), vec![], &mut out)
            .unwrap();
        assert_eq!(h.generation(), PullHandle::INITIAL_GENERATION);
        let mut got = vec![0u8; len as usize];
        let mut s = seed | 1;
        let mut ms = 0u64;
        loop {
            let mut frames = Vec::new();
            for r in out.drain(..) {
                assert_eq!(r.peer, 3);
                assert_eq!(r.pull.src_magic, PullMagic::for_endpoint(EndpointId(2)));
                assert_eq!(r.pull.total_length, len);
                if rng(&mut s) % 100 < loss {
                    continue; // request lost
                }
                for f in replies(&p, &r.pull, &msg) {
                    let roll = rng(&mut s) % 100;
                    if roll < loss {
                        continue;
                    }
                    if roll < loss + 3 {
                        frames.push(f.clone()); // duplicated
                    }
                    frames.push(f);
                }
            }
            // reorder (on a faulty wire): a few random swaps
            for _ in 0..(frames.len() / 4) * usize::from(loss > 0) {
                let (i, j) = (
                    rng(&mut s) as usize % frames.len(),
                    rng(&mut s) as usize % frames.len(),
                );
                frames.swap(i, j);
            }
            for (seq, off, data) in frames {
                match t.accept(h, 3, seq, off, data.len()) {
                    Ok(acc) => {
                        got[off as usize..off as usize + data.len()].copy_from_slice(&data);
                        t.received(now, &T, acc, &mut out);
                    }
                    Err(Reject::Duplicate | Reject::Stray) => {}
                }
            }
            if let Some(c) = t.pop_done() {
                return (got, c, ms, t.resent());
            }
            if out.is_empty() {
                ms += 100;
                now = t0 + Duration::from_millis(ms);
                t.poll(now, &T, &mut out);
            }
            assert!(ms < 600_000, "pull never finished");
        }
    }

    #[test]
    fn clean_pulls_complete_without_resends() {
        for p in [
            WireProfile::MX,
            WireProfile::OPEN_MX_9000,
            WireProfile::OPEN_MX_1500,
        ] {
            for (len, off) in [
                (1u32, 0u32),
                (4096, 0),
                (32769, 0),
                (300_000, 0),
                (1 << 20, 100),
            ] {
                let (got, c, ms, resent) = drive(p, len, off, 0, 1);
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
                assert!(got == msg, "{p:?} {len}");
                assert_eq!(c.status, PullStatus::Success);
                assert_eq!((c.transferred, c.cookie), (len, 77));
                assert_eq!((ms, resent), (0, 0));
            }
        }
    }

    #[test]
    fn lossy_pulls_complete_through_retransmission() {
        for seed in 1..6 {
            for p in [WireProfile::MX, WireProfile::OPEN_MX_1500] {
                let len = 3 << 20;
                let (got, c, _ms, resent) = drive(p, len, 0, 5, seed);
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
                assert!(got == msg, "{p:?} seed {seed}");
                assert_eq!(c.status, PullStatus::Success);
                assert!(resent > 0);
            }
        }
    }

    #[test]
    fn strays_duplicates_and_generations() {
        let p = WireProfile::MX;
        let mut t = PullTable::<()>::new(p, 0);
        let now = Instant::now();
        let mut out = Vec::new();
        let h = t
            .start(now, &T, spec(100_000, 0), vec![], &mut out)
            .unwrap();
        assert_eq!(out.len(), 4, "four blocks in flight");
        assert_eq!(out[1].pull.frame_index, 8);
        assert_eq!(out[3].pull.block_length, 100_000 - 3 * 32768);
        // wrong peer, wrong offset, wrong length, frame outside the window
        assert_eq!(t.accept(h, 4, 0, 0, 4096), Err(Reject::Stray));
        assert_eq!(t.accept(h, 3, 0, 4096, 4096), Err(Reject::Stray));
        assert_eq!(t.accept(h, 3, 0, 0, 4000), Err(Reject::Stray));
        assert_eq!(t.accept(h, 3, 30, 30 * 4096, 4096), Err(Reject::Stray));
        let stale = PullHandle::new(h.slot(), h.generation() + 1).unwrap();
        assert_eq!(t.accept(stale, 3, 0, 0, 4096), Err(Reject::Stray));
        let acc = t.accept(h, 3, 0, 0, 4096).unwrap();
        assert_eq!(t.received(now, &T, acc, &mut out), 4096);
        assert_eq!(t.accept(h, 3, 0, 0, 4096), Err(Reject::Duplicate));
        // NACK_MCP from the wrong peer is ignored; from the right one fails it.
        assert!(!t.nack(h, 9, PullStatus::BadRdmaWindow));
        assert!(t.nack(h, 3, PullStatus::BadRdmaWindow));
        assert_eq!(
            t.pop_done(),
            Some(Completion {
                cookie: 77,
                status: PullStatus::BadRdmaWindow,
                transferred: 0
            })
        );
        assert_eq!(t.accept(h, 3, 1, 4096, 4096), Err(Reject::Stray));
        // The slot is reused with the next generation.
        let h2 = t.start(now, &T, spec(10, 0), vec![], &mut out).unwrap();
        assert_eq!(h2.slot(), h.slot());
        assert_eq!(h2.generation(), h.generation() + 1);
        t.abort_all();
        assert_eq!(t.active(), 0);
        assert!(t.pop_done().is_none());
    }

    #[test]
    fn silent_replier_times_out() {
        let p = WireProfile::OPEN_MX_9000;
        let t_short = PullTiming {
            resend: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
        };
        let mut t = PullTable::<()>::new(p, 1);
        let t0 = Instant::now();
        let mut out = Vec::new();
        t.start(t0, &t_short, spec(1 << 20, 0), vec![], &mut out)
            .unwrap();
        assert_eq!(out.len(), 4);
        out.clear();
        let mut resends = 0;
        for ms in (50..=1000).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            assert!(t.next_timer().is_some());
            t.poll(now, &t_short, &mut out);
            resends += out.len();
            out.clear();
            if t.peek_done().is_some() {
                break;
            }
        }
        assert_eq!(resends, 9 * 4, "every 100 ms until the timeout");
        let c = t.pop_done().unwrap();
        assert_eq!(c.status, PullStatus::Unreachable);
        assert_eq!(t.active(), 0);
        assert_eq!(t.next_timer(), None);
    }

    #[test]
    fn handles_run_out_at_1024() {
        let mut t = PullTable::<()>::new(WireProfile::MX, 0);
        let now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..1024 {
            assert!(t.start(now, &T, spec(1, 0), vec![], &mut out).is_some());
        }
        assert!(t.start(now, &T, spec(1, 0), vec![], &mut out).is_none());
    }
}
