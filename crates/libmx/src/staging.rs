//! Staging large messages in memory the backend can reach.
//!
//! On Xen, user space cannot grant an arbitrary existing page, so the backend
//! cannot pull from or into the application's own buffers: each attachment
//! grants a pool once ([`BackendLink::bulk_pool`]), the backend maps it once,
//! and the core ([`crate::core::BulkPool`]) copies a large send into it
//! before the rendezvous goes out and a large receive out of it when the
//! pull completes. [`StagingPool`] is that pool with a small allocator.
//!
//! On the local platform the backend copies straight from and to the
//! application's buffers, so nothing is staged, unless `MX_STAGE_LARGE` asks
//! for it (the same code path as Xen, through private pages whose addresses
//! the backend reads like any buffer's: it keeps the path tested in CI).
//!
//! The backend may write the pool at any moment, so no Rust slice over it
//! ever exists here: the core copies in and out through
//! [`SharedMem::read_at`] / [`SharedMem::write_at`] (volatile), one copy per
//! byte staged, straight from or into the application's buffer.
//!
//! [`BackendLink::bulk_pool`]: mx_proto::platform::BackendLink::bulk_pool

use crate::core::{BulkPool, PoolRange, STAGE_PIECES_MAX};
use mx_proto::platform::SharedMem;
use std::sync::Arc;

/// Allocation granule: ranges start on a page boundary, which keeps copies
/// aligned and lets the backend copy page by page.
pub const GRANULE: u64 = 4096;

/// A first-fit allocator of byte ranges in `[0, size)`, in [`GRANULE`]
/// units, with coalescing of free neighbours.
///
/// A pool serves the few large messages in flight on one endpoint (tens at
/// most), so a sorted vector of free ranges is simpler and faster than a
/// tree.
#[derive(Debug, Clone)]
pub struct RangeAlloc {
    size: u64,
    /// Free ranges `(offset, len)`, sorted by offset, never adjacent.
    free: Vec<(u64, u64)>,
}

impl RangeAlloc {
    /// An allocator over `size` bytes (rounded down to the granule).
    pub fn new(size: u64) -> Self {
        let size = size / GRANULE * GRANULE;
        RangeAlloc {
            size,
            free: if size > 0 { vec![(0, size)] } else { vec![] },
        }
    }

    /// Total bytes managed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes free now.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|&(_, l)| l).sum()
    }

    /// Reserve `len` bytes (rounded up to the granule): the offset, or
    /// `None` when no free range is large enough.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let want = len.max(1).checked_next_multiple_of(GRANULE)?;
        let i = self.free.iter().position(|&(_, l)| l >= want)?;
        let (off, l) = self.free[i];
        if l == want {
            self.free.remove(i);
        } else {
            self.free[i] = (off + want, l - want);
        }
        Some(off)
    }

    /// Reserve `len` bytes in at most `max_pieces` ranges: one range when a
    /// free range is large enough, else pieces of the free ranges in
    /// address order. Returns `(offset, bytes)` pieces whose bytes sum to
    /// `len` (each is released with [`release`](Self::release) and its own
    /// byte count), or `None` (nothing taken) when the free bytes are too
    /// few or too scattered.
    ///
    /// Pieces are what make "half the pool is free" mean "a message of half
    /// the pool fits": a single range would need that much contiguous room.
    pub fn alloc_scatter(&mut self, len: u64, max_pieces: usize) -> Option<Vec<(u64, u64)>> {
        if let Some(off) = self.alloc(len) {
            return Some(vec![(off, len)]);
        }
        let want = len.checked_next_multiple_of(GRANULE)?;
        let mut got = 0u64;
        let mut n = 0usize;
        for &(_, l) in &self.free {
            if got >= want || n == max_pieces {
                break;
            }
            got += l.min(want - got);
            n += 1;
        }
        if got < want {
            return None;
        }
        let mut pieces = Vec::with_capacity(n);
        let mut left = len;
        while left > 0 {
            let (off, l) = self.free[0];
            let take = l.min(left.next_multiple_of(GRANULE));
            let used = take.min(left);
            if take == l {
                self.free.remove(0);
            } else {
                self.free[0] = (off + take, l - take);
            }
            pieces.push((off, used));
            left -= used;
        }
        Some(pieces)
    }

    /// Give back `len` bytes at `offset` (as returned by [`alloc`](Self::alloc)
    /// for the same `len`). A range that is not wholly allocated is ignored
    /// (returns `false`): a double free never corrupts the free list.
    pub fn release(&mut self, offset: u64, len: u64) -> bool {
        let Some(len) = len.max(1).checked_next_multiple_of(GRANULE) else {
            return false;
        };
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        if !offset.is_multiple_of(GRANULE) || end > self.size {
            return false;
        }
        let i = self.free.partition_point(|&(o, _)| o < offset);
        let overlaps_prev = i > 0 && {
            let (o, l) = self.free[i - 1];
            o + l > offset
        };
        let overlaps_next = i < self.free.len() && self.free[i].0 < end;
        if overlaps_prev || overlaps_next {
            return false;
        }
        let joins_prev = i > 0 && {
            let (o, l) = self.free[i - 1];
            o + l == offset
        };
        let joins_next = i < self.free.len() && self.free[i].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                let next = self.free.remove(i);
                self.free[i - 1].1 += len + next.1;
            }
            (true, false) => self.free[i - 1].1 += len,
            (false, true) => self.free[i] = (offset, len + self.free[i].1),
            (false, false) => self.free.insert(i, (offset, len)),
        }
        true
    }
}

/// One endpoint's staging pool: memory the backend reaches through region
/// segments, and the allocator over it.
pub struct StagingPool {
    mem: Arc<dyn SharedMem>,
    /// What a region segment names for pool offset 0: 0 when segments are
    /// pool offsets (Xen), the pool's address when they are process
    /// addresses (local).
    seg_base: u64,
    alloc: RangeAlloc,
}

impl core::fmt::Debug for StagingPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StagingPool")
            .field("len", &self.mem.len())
            .field("seg_base", &self.seg_base)
            .field("alloc", &self.alloc)
            .finish()
    }
}

impl StagingPool {
    /// A pool over `mem`, whose byte 0 region segments call `seg_base`.
    pub fn new(mem: Arc<dyn SharedMem>, seg_base: u64) -> Self {
        let alloc = RangeAlloc::new(mem.len() as u64);
        StagingPool {
            mem,
            seg_base,
            alloc,
        }
    }
}

impl BulkPool for StagingPool {
    fn capacity(&self) -> u32 {
        u32::try_from(self.alloc.size()).unwrap_or(u32::MAX)
    }

    fn reserve(&mut self, len: u32) -> Option<Vec<PoolRange>> {
        let pieces = self.alloc.alloc_scatter(u64::from(len), STAGE_PIECES_MAX)?;
        Some(
            pieces
                .into_iter()
                .map(|(off, n)| PoolRange {
                    offset: self.seg_base + off,
                    len: n as u32,
                })
                .collect(),
        )
    }

    fn release(&mut self, range: PoolRange) {
        if let Some(off) = range.offset.checked_sub(self.seg_base) {
            let freed = self.alloc.release(off, u64::from(range.len));
            debug_assert!(freed, "released a range the pool did not hand out");
        }
    }

    fn write_at(&mut self, range: PoolRange, at: u32, src: &[u8]) -> bool {
        self.pool_offset(range, at, src.len())
            .is_some_and(|off| self.mem.write_at(off, src).is_ok())
    }

    fn read_at(&self, range: PoolRange, at: u32, dst: &mut [u8]) -> bool {
        self.pool_offset(range, at, dst.len())
            .is_some_and(|off| self.mem.read_at(off, dst).is_ok())
    }
}

impl StagingPool {
    /// Where `n` bytes at `at` of `range` start in the mapping, when they
    /// lie inside the range (the mapping's own bounds are checked by the
    /// copy).
    fn pool_offset(&self, range: PoolRange, at: u32, n: usize) -> Option<usize> {
        let start = range.offset.checked_sub(self.seg_base)?;
        let end = u64::from(at).checked_add(n as u64)?;
        if end > u64::from(range.len) {
            return None;
        }
        usize::try_from(start + u64::from(at)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alloc_release_coalesce() {
        let mut a = RangeAlloc::new(10 * GRANULE);
        let x = a.alloc(1).unwrap();
        let y = a.alloc(GRANULE + 1).unwrap();
        let z = a.alloc(3 * GRANULE).unwrap();
        assert_eq!((x, y, z), (0, GRANULE, 3 * GRANULE));
        assert_eq!(a.alloc(5 * GRANULE), None, "only 4 granules left");
        assert!(a.release(y, GRANULE + 1));
        assert!(!a.release(y, GRANULE + 1), "double free refused");
        assert!(!a.release(x + 1, 1), "unaligned refused");
        assert!(a.release(x, 1));
        assert_eq!(a.alloc(3 * GRANULE), Some(0), "the two freed ranges joined");
        assert!(a.release(0, 3 * GRANULE));
        assert!(a.release(z, 3 * GRANULE));
        assert_eq!(a.free_bytes(), 10 * GRANULE);
        assert_eq!(a.alloc(10 * GRANULE), Some(0), "everything joined again");
        assert!(!a.release(0, 11 * GRANULE), "beyond the end refused");
    }

    #[test]
    fn scatter_uses_scattered_room_and_gives_it_back() {
        let mut a = RangeAlloc::new(8 * GRANULE);
        let held: Vec<u64> = (0..4).map(|_| a.alloc(GRANULE).unwrap()).collect();
        assert!(a.release(held[0], GRANULE));
        assert!(a.release(held[2], GRANULE));
        // free: [0,1), [2,3), [4,8) granules; 6 granules in three pieces
        assert_eq!(
            a.alloc_scatter(5 * GRANULE, 8),
            Some(vec![
                (0, GRANULE),
                (2 * GRANULE, GRANULE),
                (4 * GRANULE, 3 * GRANULE)
            ])
        );
        assert_eq!(a.free_bytes(), GRANULE);
        assert_eq!(
            a.alloc_scatter(2 * GRANULE, 8),
            None,
            "too few bytes: nothing taken"
        );
        assert_eq!(a.free_bytes(), GRANULE);
        for (o, l) in [
            (0, GRANULE),
            (2 * GRANULE, GRANULE),
            (4 * GRANULE, 3 * GRANULE),
        ] {
            assert!(a.release(o, l));
        }
        // too scattered for the piece limit: nothing taken
        assert_eq!(a.alloc_scatter(5 * GRANULE + 1, 2), None);
        assert_eq!(
            a.alloc_scatter(100, 1),
            Some(vec![(0, 100)]),
            "contiguous first"
        );
    }

    /// Copies land where the range says, only inside it, and the offsets
    /// handed out are what region segments name (`seg_base` + pool offset).
    #[test]
    fn pool_copies_stay_inside_their_range() {
        let mem: Arc<dyn SharedMem> =
            Arc::new(mx_proto::platform::local::MemfdPages::new(4).unwrap());
        let base = 1 << 40;
        let mut pool = StagingPool::new(mem.clone(), base);
        assert_eq!(pool.capacity(), 4 * GRANULE as u32);
        let first = pool.reserve(100).unwrap();
        let second = pool.reserve(5000).unwrap();
        assert_eq!(
            first,
            [PoolRange {
                offset: base,
                len: 100
            }]
        );
        let (a, b) = (first[0], second[0]);
        assert_eq!(b.offset, base + GRANULE);

        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        assert!(pool.write_at(b, 0, &data[..3000]));
        assert!(pool.write_at(b, 3000, &data[3000..]));
        let mut back = vec![0u8; 5000];
        assert!(pool.read_at(b, 0, &mut back));
        assert_eq!(back, data);
        let mut raw = vec![0u8; 5000];
        mem.read_at(GRANULE as usize, &mut raw).unwrap();
        assert_eq!(raw, data, "the bytes sit at the range's pool offset");

        assert!(!pool.write_at(a, 1, &[1; 100]), "one byte past the range");
        assert!(!pool.read_at(a, u32::MAX, &mut [0; 2]), "offset overflow");
        let foreign = PoolRange {
            offset: base - 1,
            len: 1,
        };
        assert!(!pool.write_at(foreign, 0, &[1]), "below the pool");
        let past = PoolRange {
            offset: base + 4 * GRANULE,
            len: 1,
        };
        assert!(!pool.write_at(past, 0, &[1]), "beyond the mapping");
        let mut first_page = vec![0u8; GRANULE as usize];
        mem.read_at(0, &mut first_page).unwrap();
        assert!(
            first_page.iter().all(|&x| x == 0),
            "refused copies wrote nothing"
        );
    }

    proptest! {
        /// Scattered reservations never overlap and always cover the bytes
        /// asked for, whenever that many bytes are free in few enough pieces.
        #[test]
        fn scatter_never_overlaps(ops in proptest::collection::vec((any::<bool>(), 1u64..60_000), 1..200)) {
            let mut a = RangeAlloc::new(64 * GRANULE);
            let mut live: Vec<Vec<(u64, u64)>> = Vec::new();
            for (free, len) in ops {
                if free && !live.is_empty() {
                    for (o, l) in live.remove(len as usize % live.len()) {
                        prop_assert!(a.release(o, l));
                    }
                } else {
                    let before = a.free_bytes();
                    match a.alloc_scatter(len, 64) {
                        Some(p) => {
                            prop_assert_eq!(p.iter().map(|x| x.1).sum::<u64>(), len);
                            for &(o, l) in &p {
                                for q in live.iter().flatten() {
                                    prop_assert!(o + l <= q.0 || o >= q.0 + q.1, "overlap");
                                }
                            }
                            live.push(p);
                        }
                        None => {
                            prop_assert!(before < len.next_multiple_of(GRANULE) || a.free.len() > 64);
                            prop_assert_eq!(a.free_bytes(), before);
                        }
                    }
                }
            }
            for (o, l) in live.into_iter().flatten() {
                prop_assert!(a.release(o, l));
            }
            prop_assert_eq!(a.free_bytes(), a.size());
        }

        /// Live ranges never overlap, and freeing everything restores one
        /// free range.
        #[test]
        fn never_overlaps(ops in proptest::collection::vec((any::<bool>(), 1u64..40_000), 1..200)) {
            let mut a = RangeAlloc::new(64 * GRANULE);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (free, len) in ops {
                if free && !live.is_empty() {
                    let (o, l) = live.remove(len as usize % live.len());
                    prop_assert!(a.release(o, l));
                } else if let Some(o) = a.alloc(len) {
                    let end = o + len;
                    prop_assert!(end <= a.size());
                    for &(lo, ll) in &live {
                        prop_assert!(end <= lo || o >= lo + ll, "overlap");
                    }
                    live.push((o, len));
                }
            }
            for (o, l) in live.drain(..) {
                prop_assert!(a.release(o, l));
            }
            prop_assert_eq!(a.free_bytes(), a.size());
            prop_assert_eq!(a.alloc(a.size()), Some(0));
        }
    }
}
