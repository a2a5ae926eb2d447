//! Registered regions of an endpoint: RDMA windows for large messages, as
//! the backend keeps them and as a library keeps its own for the peers it
//! answers pulls for over a peer channel.
//!
//! A guest registers a region as a list of segments in its own memory
//! (virtual addresses on the local platform), possibly over several
//! commands. The table validates the chunks' order and the total length,
//! and resolves a byte range of a region into guest segments for the bulk
//! copy.

use crate::msg::command::{Pull, RegionRegister, RegionStage, RegionWindow, REGION_MAX_SEGS};
use std::time::{Duration, Instant};

/// Number of region ids per endpoint (a u8 on the wire).
pub const REGIONS: usize = 256;

/// Smallest block of a staging window: a page, so that slots stay aligned.
pub const WINDOW_BLOCK_MIN: u32 = 4096;
/// Largest block of a staging window.
pub const WINDOW_BLOCK_MAX: u32 = 16 << 20;
/// Fewest slots of a staging window: a wire PULL block may straddle two
/// message blocks, and both must be held at once to answer it.
pub const WINDOW_SLOTS_MIN: usize = 2;
/// Most slots of a staging window.
pub const WINDOW_SLOTS_MAX: usize = 64;
/// Most same-host pulls parked on one endpoint's windows (more are failed
/// at once; the library never has that many in flight).
pub const PARKED_MAX: usize = 1024;

#[derive(Debug, Default, Clone)]
struct Region {
    segs: Vec<(u64, u32)>,
    len: u64,
    complete: bool,
    /// Set when the registered bytes are a staging window over a longer
    /// message ([`RegionTable::set_window`]).
    window: Option<Box<Window>>,
}

/// A staging window: the registered bytes are slots of `block` bytes, each
/// holding one block of a message of `msg_len` bytes, or being refilled by
/// the guest.
#[derive(Debug, Clone)]
struct Window {
    msg_len: u64,
    block: u64,
    gen: u8,
    slots: Vec<SlotState>,
    /// Counts reads, for [`SlotState::Holds::used`].
    tick: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// The slot holds message block `block`; `used` orders the slots by
    /// their last read (eviction takes the oldest); `pinned` is the pass
    /// of the last wire read, not evicted in that pass (a PULL_REPLY
    /// queued in a pass is read from the slot at the pass's flush).
    Holds {
        block: u32,
        used: u64,
        pinned: Option<Instant>,
    },
    /// The guest was asked at `since` to copy `block` into the slot; it is
    /// not read until the guest says it did.
    Staging { block: u32, since: Instant },
}

/// What [`RegionTable::ask`] did about a block no slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Post `StageNeeded { slot, gen, .. }` to the guest: the slot is now
    /// being refilled.
    Post {
        /// The slot to fill.
        slot: u16,
        /// The window's use counter.
        gen: u8,
    },
    /// Already asked (and not for too long): wait for the answer.
    Waiting,
    /// Every slot is being refilled or read in this pass: ask again later.
    NoSlot,
}

/// A same-host pull of a window block not held: parked on the sender's
/// table until the guest stages it ([`RegionTable::park`]).
#[derive(Debug, Clone, Copy)]
pub struct Parked {
    /// The puller endpoint.
    pub puller: u8,
    /// The puller's session when it asked (a reopened endpoint is another).
    pub puller_session: u32,
    /// The pull command, as the puller sent it.
    pub pull: Pull,
    /// Bytes copied so far (from the start of the pull).
    pub done: u32,
    /// Last progress: the pull fails after `staging_wait` without any.
    pub since: Instant,
}

/// Why a registration or a look-up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// A chunk came out of order (its seg_base is not the next index).
    OutOfOrder,
    /// More than [`REGION_MAX_SEGS`] segments.
    TooManySegments,
    /// The region is not (completely) registered.
    NotRegistered,
    /// The byte range exceeds the region.
    OutOfBounds,
    /// A segment's address range wraps around.
    BadSegment,
    /// The region is still being registered and the range goes beyond
    /// what is registered so far: ask again later.
    NotYet,
    /// The range is in a staging window and a block of it is in no slot
    /// now: ask the guest to stage it.
    NotResident,
    /// A `RegionWindow` that does not make a window of the region.
    BadWindow,
}

/// The regions of one endpoint.
#[derive(Debug)]
pub struct RegionTable {
    regions: Vec<Region>,
    /// Same-host pulls waiting for a block of one of these windows.
    parked: Vec<Parked>,
}

impl Default for RegionTable {
    fn default() -> Self {
        RegionTable {
            regions: vec![Region::default(); REGIONS],
            parked: Vec::new(),
        }
    }
}

impl RegionTable {
    /// Apply one registration command.
    ///
    /// # Errors
    /// [`RegionError`] when chunks come out of order or exceed the limits;
    /// the region is then left unregistered.
    pub fn register(&mut self, r: &RegionRegister) -> Result<(), RegionError> {
        let reg = &mut self.regions[r.region_id as usize];
        if r.first {
            reg.segs.clear();
            reg.len = 0;
            reg.complete = false;
            reg.window = None;
        } else if reg.complete {
            // a continuation of a finished registration: protocol error
            *reg = Region::default();
            return Err(RegionError::OutOfOrder);
        }
        if r.seg_base as usize != reg.segs.len() {
            *reg = Region::default();
            return Err(RegionError::OutOfOrder);
        }
        if reg.segs.len() + r.segs().len() > REGION_MAX_SEGS {
            *reg = Region::default();
            return Err(RegionError::TooManySegments);
        }
        for s in r.segs() {
            if s.addr().checked_add(u64::from(s.len())).is_none() {
                *reg = Region::default();
                return Err(RegionError::BadSegment);
            }
            if !s.is_empty() {
                reg.segs.push((s.addr(), s.len()));
                reg.len += u64::from(s.len());
            }
        }
        reg.complete = r.last;
        Ok(())
    }

    /// Forget a region.
    pub fn deregister(&mut self, id: u8) {
        self.regions[id as usize] = Region::default();
    }

    /// Whether `len` bytes from `offset` of region `id` lie beyond what a
    /// registration still in progress covers so far. A library staging a
    /// large send block by block registers each block as it is copied, so a
    /// same-host pull of a later block waits for it ([`RegionError::NotYet`]).
    pub fn pending(&self, id: u8, offset: u64, len: u64) -> bool {
        let r = &self.regions[id as usize];
        !r.complete && !r.segs.is_empty() && offset.checked_add(len).is_none_or(|end| end > r.len)
    }

    /// Whether region `id` is being registered: some of its segments are
    /// known, the last chunk has not come yet.
    pub fn in_progress(&self, id: u8) -> bool {
        let r = &self.regions[id as usize];
        !r.complete && !r.segs.is_empty()
    }

    /// Total length of a registered region (a window's: its message's).
    pub fn len(&self, id: u8) -> Option<u64> {
        let r = &self.regions[id as usize];
        match &r.window {
            Some(w) => Some(w.msg_len),
            None => r.complete.then_some(r.len),
        }
    }

    /// The guest segments covering `len` bytes from `offset` of region `id`,
    /// appended to `out` (cleared first). A region still being registered
    /// resolves within its registered prefix.
    ///
    /// # Errors
    /// [`RegionError::NotRegistered`], [`RegionError::OutOfBounds`] or
    /// [`RegionError::NotYet`].
    pub fn resolve(
        &self,
        id: u8,
        offset: u64,
        len: u64,
        out: &mut Vec<(u64, usize)>,
    ) -> Result<(), RegionError> {
        out.clear();
        let r = &self.regions[id as usize];
        if !r.complete && r.segs.is_empty() {
            return Err(RegionError::NotRegistered);
        }
        if let Some(w) = &r.window {
            return resolve_window(r, w, offset, len, out);
        }
        if offset.checked_add(len).is_none_or(|end| end > r.len) {
            // Within a registration in progress, the registered prefix is
            // usable and the rest is not there yet.
            return Err(if r.complete {
                RegionError::OutOfBounds
            } else {
                RegionError::NotYet
            });
        }
        walk(&r.segs, offset, len, out);
        Ok(())
    }

    /// Make region `id`, registered completely just before, a staging
    /// window over a message of `w.msg_len` bytes: its registered bytes
    /// are `len / block` slots, slot `i` holding message block `i`.
    ///
    /// # Errors
    /// [`RegionError::BadWindow`] when the region is not completely
    /// registered, already a window, or the sizes do not make a window
    /// (block not a multiple of a page in `[4 KiB, 16 MiB]`, registered
    /// length not a whole number of 2 to 64 blocks, message not longer
    /// than the slots). The region is then left unregistered.
    pub fn set_window(&mut self, w: &RegionWindow) -> Result<(), RegionError> {
        let r = &mut self.regions[usize::from(w.region_id)];
        let block = u64::from(w.block);
        let ok = r.complete
            && r.window.is_none()
            && (WINDOW_BLOCK_MIN..=WINDOW_BLOCK_MAX).contains(&w.block)
            && w.block.is_multiple_of(WINDOW_BLOCK_MIN)
            && r.len.is_multiple_of(block)
            && (WINDOW_SLOTS_MIN..=WINDOW_SLOTS_MAX).contains(&((r.len / block) as usize))
            && u64::from(w.msg_len) > r.len;
        if !ok {
            *r = Region::default();
            return Err(RegionError::BadWindow);
        }
        let n = (r.len / block) as u32;
        r.window = Some(Box::new(Window {
            msg_len: u64::from(w.msg_len),
            block,
            gen: w.gen,
            tick: 0,
            slots: (0..n)
                .map(|block| SlotState::Holds {
                    block,
                    used: 0,
                    pinned: None,
                })
                .collect(),
        }));
        Ok(())
    }

    /// The block size of window `id`, if it is one.
    pub fn window_block(&self, id: u8) -> Option<u64> {
        self.regions[usize::from(id)]
            .window
            .as_ref()
            .map(|w| w.block)
    }

    /// Whether region `id` is a staging window.
    pub fn is_window(&self, id: u8) -> bool {
        self.regions[usize::from(id)].window.is_some()
    }

    /// The first message block of `len` bytes from `offset` of window `id`
    /// that no slot holds (`None`: all held, or not a window).
    pub fn missing(&self, id: u8, offset: u64, len: u64) -> Option<u32> {
        let w = self.regions[usize::from(id)].window.as_ref()?;
        blocks_of(w, offset, len).find(|&b| slot_of(w, b).is_none())
    }

    /// Note that the blocks of `len` bytes from `offset` of window `id`
    /// were read now; with `pin`, they are read again at this pass's flush
    /// (a queued PULL_REPLY) and are not evicted before the pass of `now`
    /// is over.
    pub fn touch(&mut self, id: u8, offset: u64, len: u64, now: Instant, pin: bool) {
        let Some(w) = self.regions[usize::from(id)].window.as_mut() else {
            return;
        };
        let wanted: Vec<u32> = blocks_of(w, offset, len).collect();
        w.tick += 1;
        let tick = w.tick;
        for s in &mut w.slots {
            if let SlotState::Holds {
                block,
                used,
                pinned,
            } = s
            {
                if wanted.contains(block) {
                    *used = tick;
                    if pin {
                        *pinned = Some(now);
                    }
                }
            }
        }
    }

    /// Block `block` of window `id` is needed and no slot holds it: pick
    /// the slot least recently read (not one pinned in this pass, nor one
    /// being refilled unless its guest has not answered for `wait`) and
    /// mark it as being refilled with `block`. The caller posts the
    /// `StageNeeded` when told to (it checked there is room for it).
    pub fn ask(&mut self, id: u8, block: u32, now: Instant, wait: Duration) -> Ask {
        let Some(w) = self.regions[usize::from(id)].window.as_mut() else {
            return Ask::NoSlot;
        };
        if u64::from(block) * w.block >= w.msg_len {
            return Ask::NoSlot;
        }
        let stale = |since: Instant| now.saturating_duration_since(since) >= wait;
        if w.slots.iter().any(
            |s| matches!(*s, SlotState::Staging { block: b, since } if b == block && !stale(since)),
        ) {
            return Ask::Waiting;
        }
        // Oldest first; a request never answered before any held block.
        let pick = w
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match *s {
                SlotState::Holds { used, pinned, .. } if pinned != Some(now) => {
                    Some((i, Some(used)))
                }
                SlotState::Staging { since, .. } if stale(since) => Some((i, None)),
                _ => None,
            })
            .min_by_key(|&(_, used)| used);
        let Some((i, _)) = pick else {
            return Ask::NoSlot;
        };
        w.slots[i] = SlotState::Staging { block, since: now };
        Ask::Post {
            slot: i as u16,
            gen: w.gen,
        }
    }

    /// Read-ahead after a read of window `id` ended at message byte
    /// `last`: when that is the last byte of its block (a reader in order
    /// is done with the block), ask for the next block that no slot holds
    /// or awaits (at most a window's length ahead) in a slot holding a
    /// block at or behind it, read longest ago and not pinned in this pass.
    /// A sequential puller then finds each next block staged while it
    /// reads the current one. Never needed for correctness: an evicted
    /// block read again (a lost reply) is asked for again.
    /// `Some((slot, gen, block))` when the caller is to post that
    /// `StageNeeded`.
    pub fn prefetch(&mut self, id: u8, last: u64, now: Instant) -> Option<(u16, u8, u32)> {
        let w = self.regions[usize::from(id)].window.as_mut()?;
        if !(last + 1).is_multiple_of(w.block) || last >= w.msg_len {
            return None;
        }
        let served = u32::try_from(last / w.block).ok()?;
        let w = self.regions[usize::from(id)].window.as_mut()?;
        let nblocks = w.msg_len.div_ceil(w.block);
        let busy = |w: &Window, b: u32| {
            w.slots.iter().any(|s| match *s {
                SlotState::Holds { block, .. } | SlotState::Staging { block, .. } => block == b,
            })
        };
        let mut next = u64::from(served) + 1;
        while next < nblocks && busy(w, next as u32) {
            next += 1;
        }
        if next >= nblocks || next > u64::from(served) + w.slots.len() as u64 {
            return None;
        }
        let (i, _) = w
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match *s {
                SlotState::Holds {
                    block,
                    used,
                    pinned,
                } if block <= served && pinned != Some(now) => Some((i, used)),
                _ => None,
            })
            .min_by_key(|&(_, used)| used)?;
        let block = next as u32;
        w.slots[i] = SlotState::Staging { block, since: now };
        Some((i as u16, w.gen, block))
    }

    /// The guest's answer to a `StageNeeded`: true if it answers the
    /// request outstanding for that slot (the slot holds the block now);
    /// false (nothing changes) for any other: wrong region, generation,
    /// slot or block, or a slot not being refilled.
    pub fn staged(&mut self, st: &RegionStage, now: Instant) -> bool {
        let Some(w) = self.regions[usize::from(st.region_id)].window.as_mut() else {
            return false;
        };
        if w.gen != st.gen {
            return false;
        }
        match w.slots.get_mut(usize::from(st.slot)) {
            Some(s @ SlotState::Staging { .. }) if matches!(*s, SlotState::Staging { block, .. } if block == st.block) =>
            {
                // Kept for the pass that serves the pulls waiting for it.
                w.tick += 1;
                *s = SlotState::Holds {
                    block: st.block,
                    used: w.tick,
                    pinned: Some(now),
                };
                true
            }
            _ => false,
        }
    }

    /// Park a same-host pull on these windows; false (not parked) when
    /// [`PARKED_MAX`] are parked already.
    pub fn park(&mut self, p: Parked) -> bool {
        if self.parked.len() >= PARKED_MAX {
            return false;
        }
        self.parked.push(p);
        true
    }

    /// Whether pulls are parked here.
    pub fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Take every parked pull (the caller parks again those still waiting).
    pub fn take_parked(&mut self) -> Vec<Parked> {
        std::mem::take(&mut self.parked)
    }

    /// The use counter of window `id`, if it is one (a parked pull of an
    /// earlier use of the id no longer has its window).
    pub fn window_gen(&self, id: u8) -> Option<u8> {
        self.regions[usize::from(id)].window.as_ref().map(|w| w.gen)
    }
}

/// The message blocks covered by `len` bytes from `offset` of window `w`.
fn blocks_of(w: &Window, offset: u64, len: u64) -> impl Iterator<Item = u32> {
    let (lo, hi) = if len == 0 {
        (1, 0)
    } else {
        (offset / w.block, (offset + len - 1) / w.block)
    };
    (lo..=hi).map(|b| b as u32)
}

/// The slot holding message block `b`.
fn slot_of(w: &Window, b: u32) -> Option<usize> {
    w.slots
        .iter()
        .position(|s| matches!(*s, SlotState::Holds { block, .. } if block == b))
}

/// `len` bytes from message offset `offset` of window `w` over region `r`,
/// through the slots holding them.
fn resolve_window(
    r: &Region,
    w: &Window,
    offset: u64,
    len: u64,
    out: &mut Vec<(u64, usize)>,
) -> Result<(), RegionError> {
    if offset.checked_add(len).is_none_or(|end| end > w.msg_len) {
        return Err(RegionError::OutOfBounds);
    }
    let (mut off, end) = (offset, offset + len);
    while off < end {
        let b = off / w.block;
        let n = (end - off).min((b + 1) * w.block - off);
        let Some(slot) = slot_of(w, b as u32) else {
            out.clear();
            return Err(RegionError::NotResident);
        };
        walk(&r.segs, slot as u64 * w.block + off % w.block, n, out);
        off += n;
    }
    Ok(())
}

/// Append the segments covering `len` bytes from `offset` of `segs`
/// (the caller checked the range lies within them).
fn walk(segs: &[(u64, u32)], offset: u64, len: u64, out: &mut Vec<(u64, usize)>) {
    let (mut skip, mut want) = (offset, len);
    for &(addr, slen) in segs {
        if want == 0 {
            break;
        }
        let slen = u64::from(slen);
        if skip >= slen {
            skip -= slen;
            continue;
        }
        let take = (slen - skip).min(want);
        out.push((addr + skip, take as usize));
        want -= take;
        skip = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::command::RawSeg;

    #[test]
    fn register_in_chunks_and_resolve() {
        let segs: Vec<RawSeg> = (0..30)
            .map(|i| RawSeg::new(0x1000 * (i + 1), 100))
            .collect();
        let mut t = RegionTable::default();
        for c in RegionRegister::chunks(5, &segs) {
            t.register(&c).unwrap();
        }
        assert_eq!(t.len(5), Some(3000));
        let mut out = Vec::new();
        t.resolve(5, 150, 100, &mut out).unwrap();
        assert_eq!(out, vec![(0x2000 + 50, 50), (0x3000, 50)]);
        assert_eq!(
            t.resolve(5, 2950, 51, &mut out),
            Err(RegionError::OutOfBounds)
        );
        assert_eq!(
            t.resolve(6, 0, 1, &mut out),
            Err(RegionError::NotRegistered)
        );
        t.deregister(5);
        assert_eq!(t.len(5), None);
    }

    #[test]
    fn out_of_order_chunks_rejected() {
        let segs: Vec<RawSeg> = (0..20).map(|i| RawSeg::new(i * 64, 64)).collect();
        let chunks: Vec<_> = RegionRegister::chunks(1, &segs).collect();
        let mut t = RegionTable::default();
        assert_eq!(t.register(&chunks[1]), Err(RegionError::OutOfOrder));
        t.register(&chunks[0]).unwrap();
        assert_eq!(t.len(1), None, "incomplete region has no length yet");
        let mut out = Vec::new();
        // its registered prefix (11 segments of 64 bytes) is usable already
        t.resolve(1, 0, 11 * 64, &mut out).unwrap();
        assert_eq!(
            t.resolve(1, 0, 11 * 64 + 1, &mut out),
            Err(RegionError::NotYet)
        );
        assert!(t.pending(1, 700, 10) && !t.pending(1, 0, 10));
        assert!(
            !t.pending(9, 0, 10),
            "an unregistered region is not pending"
        );
        t.register(&chunks[1]).unwrap();
        assert_eq!(t.len(1), Some(20 * 64));
        assert!(!t.pending(1, 700, 10));
        // a wrapping segment is refused
        let bad = RegionRegister::new(2, true, true, 0, &[RawSeg::new(u64::MAX - 5, 10)]);
        assert_eq!(t.register(&bad), Err(RegionError::BadSegment));
    }

    fn window_table(slots: u64, block: u32, msg_len: u32) -> RegionTable {
        let segs: Vec<RawSeg> = (0..slots)
            .map(|i| RawSeg::new(0x10_0000 * (i + 1), block))
            .collect();
        let mut t = RegionTable::default();
        for c in RegionRegister::chunks(3, &segs) {
            t.register(&c).unwrap();
        }
        t.set_window(&RegionWindow {
            region_id: 3,
            gen: 9,
            block,
            msg_len,
        })
        .unwrap();
        t
    }

    #[test]
    fn window_resolves_through_slots_and_asks_for_the_rest() {
        let b = 4096u32;
        let mut t = window_table(2, b, 10 * b + 5);
        assert_eq!(t.len(3), Some(u64::from(10 * b + 5)));
        let mut out = Vec::new();
        // blocks 0 and 1 are in slots 0 and 1 to begin with
        t.resolve(3, 4000, 200, &mut out).unwrap();
        assert_eq!(out, vec![(0x10_0000 + 4000, 96), (0x20_0000, 104)]);
        assert_eq!(t.missing(3, 0, u64::from(2 * b)), None);
        assert_eq!(t.missing(3, 100, u64::from(3 * b)), Some(2));
        assert_eq!(
            t.resolve(3, u64::from(2 * b), 1, &mut out),
            Err(RegionError::NotResident)
        );
        assert_eq!(
            t.resolve(3, u64::from(10 * b), 6, &mut out),
            Err(RegionError::OutOfBounds)
        );
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        // slot 0 read for the wire in this pass, slot 1 not: block 2 goes
        // to slot 1
        t.touch(3, 0, 1, t0, true);
        assert_eq!(t.ask(3, 2, t0, wait), Ask::Post { slot: 1, gen: 9 });
        assert_eq!(t.ask(3, 2, t0, wait), Ask::Waiting, "asked already");
        assert_eq!(t.ask(3, 3, t0, wait), Ask::NoSlot, "slot 0 read this pass");
        assert_eq!(t.ask(3, 11, t0, wait), Ask::NoSlot, "beyond the message");
        assert!(
            t.resolve(3, u64::from(b), 1, &mut out).is_err(),
            "block 1 was evicted when slot 1 was asked for"
        );
        // answers that do not match the request change nothing
        let st = |slot, block, gen| RegionStage {
            region_id: 3,
            gen,
            slot,
            block,
        };
        let t1 = t0 + Duration::from_millis(1);
        assert!(!t.staged(&st(1, 3, 9), t1), "wrong block");
        assert!(!t.staged(&st(0, 2, 9), t1), "slot not being refilled");
        assert!(!t.staged(&st(1, 2, 8), t1), "old generation");
        assert!(!t.staged(&st(7, 2, 9), t1), "no such slot");
        assert!(t.staged(&st(1, 2, 9), t1));
        assert!(!t.staged(&st(1, 2, 9), t1), "answered twice");
        t.resolve(3, u64::from(2 * b) + 1, 2, &mut out).unwrap();
        assert_eq!(out, vec![(0x20_0000 + 1, 2)]);
        // a guest that never answers: its slot is asked again after `wait`
        assert_eq!(t.ask(3, 5, t1, wait), Ask::Post { slot: 0, gen: 9 });
        assert_eq!(
            t.ask(3, 6, t1, wait),
            Ask::NoSlot,
            "slot 1 staged this pass"
        );
        assert_eq!(t.ask(3, 5, t1 + wait / 2, wait), Ask::Waiting);
        let late = t1 + wait;
        assert_eq!(t.ask(3, 5, late, wait), Ask::Post { slot: 0, gen: 9 });
        // a new registration of the id is no window any more
        t.register(&RegionRegister::new(
            3,
            true,
            true,
            0,
            &[RawSeg::new(0, 10)],
        ))
        .unwrap();
        assert!(!t.is_window(3));
        assert_eq!(t.window_gen(3), None);
    }

    #[test]
    fn read_ahead_refills_slots_behind_the_reader_only() {
        let b = 4096u32;
        let end = |k: u64| (k + 1) * u64::from(b) - 1;
        let mut t = window_table(2, b, 6 * b);
        let t0 = Instant::now();
        t.touch(3, 0, u64::from(b), t0, false);
        // a read that stops inside block 0: the reader is not done with it
        assert_eq!(t.prefetch(3, 100, t0), None);
        // block 0 served: block 2 goes to its slot, slot 1 (block 1) stays
        assert_eq!(t.prefetch(3, end(0), t0), Some((0, 9, 2)));
        // block 1 is ahead of the reader, block 2 awaited: nothing to evict
        assert_eq!(t.prefetch(3, end(0), t0), None);
        assert!(t.staged(
            &RegionStage {
                region_id: 3,
                gen: 9,
                slot: 0,
                block: 2
            },
            t0
        ));
        // block 1 served; block 2 (pinned: just staged) is ahead: block 3
        // goes to slot 1
        assert_eq!(t.prefetch(3, end(1), t0), Some((1, 9, 3)));
        // never beyond the message
        let mut t = window_table(2, b, 3 * b);
        assert_eq!(t.prefetch(3, end(0), t0), Some((0, 9, 2)));
        assert_eq!(t.prefetch(3, end(1), t0), None);
    }

    #[test]
    fn bad_windows_are_refused() {
        let segs = [RawSeg::new(0x1000, 8192), RawSeg::new(0x9000, 8192)];
        let w = |block, msg_len| RegionWindow {
            region_id: 1,
            gen: 0,
            block,
            msg_len,
        };
        for (bad, why) in [
            (w(4096, 100_000), "16 KiB is 4 blocks of 4 KiB: fine"),
            (w(8192, 16384), "message not longer than the slots"),
            (w(5000, 100_000), "block not a multiple of a page"),
            (w(16384, 100_000), "one slot only"),
            (w(12288, 100_000), "not whole blocks"),
        ] {
            let mut t = RegionTable::default();
            for c in RegionRegister::chunks(1, &segs) {
                t.register(&c).unwrap();
            }
            let ok = why.ends_with("fine");
            assert_eq!(t.set_window(&bad).is_ok(), ok, "{why}");
            if !ok {
                assert_eq!(t.len(1), None, "{why}: left unregistered");
            }
        }
        // not registered completely yet
        let mut t = RegionTable::default();
        t.register(&RegionRegister::new(1, true, false, 0, &segs))
            .unwrap();
        assert_eq!(t.set_window(&w(8192, 100_000)), Err(RegionError::BadWindow));
    }
}
