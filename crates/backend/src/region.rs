//! Registered regions of an endpoint: RDMA windows for large messages.
//!
//! A guest registers a region as a list of segments in its own memory
//! (virtual addresses on the local platform), possibly over several
//! commands. The table validates the chunks' order and the total length,
//! and resolves a byte range of a region into guest segments for the bulk
//! copy.

use mx_proto::msg::command::{RegionRegister, REGION_MAX_SEGS};

/// Number of region ids per endpoint (a u8 on the wire).
pub const REGIONS: usize = 256;

#[derive(Debug, Default, Clone)]
struct Region {
    segs: Vec<(u64, u32)>,
    len: u64,
    complete: bool,
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
}

/// The regions of one endpoint.
#[derive(Debug)]
pub struct RegionTable {
    regions: Vec<Region>,
}

impl Default for RegionTable {
    fn default() -> Self {
        RegionTable {
            regions: vec![Region::default(); REGIONS],
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

    /// Total length of a registered region.
    pub fn len(&self, id: u8) -> Option<u64> {
        let r = &self.regions[id as usize];
        r.complete.then_some(r.len)
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
        if offset.checked_add(len).is_none_or(|end| end > r.len) {
            // Within a registration in progress, the registered prefix is
            // usable and the rest is not there yet.
            return Err(if r.complete {
                RegionError::OutOfBounds
            } else {
                RegionError::NotYet
            });
        }
        let (mut skip, mut want) = (offset, len);
        for &(addr, slen) in &r.segs {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mx_proto::msg::command::RawSeg;

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
}
