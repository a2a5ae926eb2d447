//! [`SegBuf`]: the core's [`MsgBuf`] over an application's `mx_segment_t`
//! list.
//!
//! The MX contract: the memory of every segment stays valid (and, for a
//! receive, writable) from the post until the request completes, and the
//! application does not touch it meanwhile. The segment list itself may be
//! reused at once, so it is copied at post time. Nothing else is copied:
//! the core reads and writes the application's memory directly, and large
//! messages hand the segment addresses to the backend for region
//! registration.

use core::ffi::c_void;

use crate::core::MsgBuf;

use super::types::{MxReturn, MxSegment, MX_MAX_SEGMENTS};

/// One segment: start address and length.
#[derive(Clone, Copy, Debug)]
struct Seg {
    ptr: *mut u8,
    len: u32,
}

#[derive(Debug)]
enum Segs {
    /// The usual case, without an allocation (a zero-length message is one
    /// empty segment).
    One(Seg),
    Many(Box<[Seg]>),
}

/// A message buffer made of the application's segments.
#[derive(Debug)]
pub struct SegBuf {
    segs: Segs,
    len: u32,
}

// SAFETY: a SegBuf only holds addresses of application memory that the MX
// contract reserves to the library until the request completes; the core
// accesses it under the endpoint lock, from whichever thread holds it, which
// is what MX allows (the application may complete a request from any
// thread).
unsafe impl Send for SegBuf {}

impl SegBuf {
    /// Copy and check an `mx_segment_t` list.
    ///
    /// Errors: more than [`MX_MAX_SEGMENTS`] -> `MX_BAD_SEG_CNT`; a NULL list
    /// with `count > 0` or a total length above 4 GiB - 1 -> `MX_BAD_SEG_LIST`;
    /// a NULL segment pointer with a non-zero length -> `MX_BAD_SEG_MEM`.
    ///
    /// # Safety
    /// `list` must be NULL or point to `count` readable `mx_segment_t`; each
    /// segment's memory must stay valid for reads (sends) or writes
    /// (receives) of its length until the request completes.
    pub unsafe fn from_raw(list: *const MxSegment, count: u32) -> Result<SegBuf, MxReturn> {
        if count > MX_MAX_SEGMENTS {
            return Err(MxReturn::BAD_SEG_CNT);
        }
        if count == 0 {
            return Ok(SegBuf::empty());
        }
        if list.is_null() {
            return Err(MxReturn::BAD_SEG_LIST);
        }
        // SAFETY: non-NULL, `count` entries readable per the contract.
        let raw = unsafe { core::slice::from_raw_parts(list, count as usize) };
        let mut total: u64 = 0;
        for s in raw {
            if s.segment_ptr.is_null() && s.segment_length > 0 {
                return Err(MxReturn::BAD_SEG_MEM);
            }
            total += u64::from(s.segment_length);
        }
        let len = u32::try_from(total).map_err(|_| MxReturn::BAD_SEG_LIST)?;
        let conv = |s: &MxSegment| Seg {
            ptr: s.segment_ptr.cast::<u8>(),
            len: s.segment_length,
        };
        let segs = if raw.len() == 1 {
            Segs::One(conv(&raw[0]))
        } else {
            Segs::Many(raw.iter().map(conv).collect())
        };
        Ok(SegBuf { segs, len })
    }

    /// A zero-length buffer.
    pub fn empty() -> SegBuf {
        SegBuf {
            segs: Segs::One(Seg {
                ptr: core::ptr::null_mut(),
                len: 0,
            }),
            len: 0,
        }
    }

    /// A buffer over one contiguous range (tests, the Rust side).
    ///
    /// # Safety
    /// As [`SegBuf::from_raw`] for the one segment `(ptr, len)`.
    pub unsafe fn from_ptr(ptr: *mut c_void, len: u32) -> SegBuf {
        SegBuf {
            segs: Segs::One(Seg {
                ptr: ptr.cast(),
                len,
            }),
            len,
        }
    }

    fn list(&self) -> &[Seg] {
        match &self.segs {
            Segs::One(s) => core::slice::from_ref(s),
            Segs::Many(v) => v,
        }
    }

    /// Visit the pieces of `[off, off + n)` as (segment, offset in it,
    /// length, offset in the range).
    fn for_range(&self, off: u32, n: usize, mut f: impl FnMut(Seg, usize, usize, usize)) {
        let mut skip = off as usize;
        let mut done = 0usize;
        for &s in self.list() {
            if done == n {
                break;
            }
            let slen = s.len as usize;
            if skip >= slen {
                skip -= slen;
                continue;
            }
            let k = (slen - skip).min(n - done);
            f(s, skip, k, done);
            done += k;
            skip = 0;
        }
        debug_assert_eq!(done, n, "access beyond the buffer");
    }
}

impl MsgBuf for SegBuf {
    fn len(&self) -> u32 {
        self.len
    }

    fn read_at(&self, off: u32, out: &mut [u8]) {
        let n = out.len();
        self.for_range(off, n, |s, at, k, dst| {
            // SAFETY: `at + k <= s.len` (for_range), the segment is readable
            // per the MX contract (from_raw), and `out` is a distinct Rust
            // buffer of `n >= dst + k` bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(s.ptr.add(at), out.as_mut_ptr().add(dst), k);
            }
        });
    }

    fn write_at(&mut self, off: u32, data: &[u8]) {
        let n = data.len();
        self.for_range(off, n, |s, at, k, src| {
            // SAFETY: `at + k <= s.len` (for_range), the segment of a
            // receive is writable and reserved to us until completion per
            // the MX contract, and `data` is a distinct Rust buffer.
            unsafe {
                core::ptr::copy_nonoverlapping(data.as_ptr().add(src), s.ptr.add(at), k);
            }
        });
    }

    fn fill_range_in_place(
        &mut self,
        off: u32,
        len: u32,
        f: &mut dyn FnMut(u32, &mut [u8]) -> bool,
    ) -> bool {
        let start = off.min(self.len);
        let n = len.min(self.len - start) as usize;
        let mut ok = true;
        self.for_range(start, n, |s, at, k, rel| {
            if ok {
                // SAFETY: `at + k <= s.len` (for_range); the segment of a
                // receive is writable and reserved to us until completion
                // per the MX contract, and only this one slice over it lives
                // during the call.
                let bytes = unsafe { core::slice::from_raw_parts_mut(s.ptr.add(at), k) };
                ok = f(rel as u32, bytes);
            }
        });
        ok
    }

    fn read_in_place(&self, off: u32, len: u32, f: &mut dyn FnMut(u32, &[u8]) -> bool) -> bool {
        if u64::from(off) + u64::from(len) > u64::from(self.len) {
            return false;
        }
        let mut ok = true;
        self.for_range(off, len as usize, |s, at, k, rel| {
            if ok {
                // SAFETY: `at + k <= s.len` (for_range); the segment of a
                // send is readable and the application may not write it
                // until the send completes, per the MX contract (the core
                // reads it only before then), and the slice lives only
                // during the call.
                let bytes = unsafe { core::slice::from_raw_parts(s.ptr.add(at), k) };
                ok = f(rel as u32, bytes);
            }
        });
        ok
    }

    fn chunks(&self, off: u32, n: u32, f: &mut dyn FnMut(u32, &[u8])) {
        self.for_range(off, n as usize, |s, at, k, done| {
            // SAFETY: `at + k <= s.len` (for_range); the segment is readable
            // per the MX contract (from_raw), and the application does not
            // write it while the request is ours, so a shared slice over it
            // is sound for the call.
            let bytes = unsafe { core::slice::from_raw_parts(s.ptr.add(at), k) };
            f(off + done as u32, bytes);
        });
    }

    fn chunks_mut(&mut self, off: u32, n: u32, f: &mut dyn FnMut(u32, &mut [u8])) {
        self.for_range(off, n as usize, |s, at, k, done| {
            // SAFETY: `at + k <= s.len` (for_range); the segment of a
            // receive is writable and reserved to us until completion per
            // the MX contract, and only this one slice over it lives during
            // the call.
            let bytes = unsafe { core::slice::from_raw_parts_mut(s.ptr.add(at), k) };
            f(off + done as u32, bytes);
        });
    }

    fn segments(&self, out: &mut Vec<(u64, u32)>) {
        out.extend(
            self.list()
                .iter()
                .filter(|s| s.len > 0)
                .map(|s| (s.ptr as usize as u64, s.len)),
        );
    }

    fn segment_count(&self) -> usize {
        self.list().iter().filter(|s| s.len > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_gather_across_segments() {
        let mut a = [0u8; 3];
        let mut b = [0u8; 0];
        let mut c = [0u8; 5];
        let list = [
            MxSegment {
                segment_ptr: a.as_mut_ptr().cast(),
                segment_length: 3,
            },
            MxSegment {
                segment_ptr: b.as_mut_ptr().cast(),
                segment_length: 0,
            },
            MxSegment {
                segment_ptr: c.as_mut_ptr().cast(),
                segment_length: 5,
            },
        ];
        // SAFETY: the arrays outlive the buffer.
        let mut buf = unsafe { SegBuf::from_raw(list.as_ptr(), 3) }.unwrap();
        assert_eq!(buf.len(), 8);
        assert_eq!(buf.segment_count(), 2);
        buf.write_at(0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut out = [0u8; 4];
        buf.read_at(2, &mut out);
        assert_eq!(out, [3, 4, 5, 6]);
        let mut v = Vec::new();
        buf.segments(&mut v);
        assert_eq!(v.len(), 2);
        drop(buf);
        assert_eq!(a, [1, 2, 3]);
        assert_eq!(c, [4, 5, 6, 7, 8]);
        // in place, over the first 6 bytes, in message order
        // SAFETY: the arrays outlive the buffer.
        let mut buf = unsafe { SegBuf::from_raw(list.as_ptr(), 3) }.unwrap();
        let mut seen = Vec::new();
        assert!(buf.fill_in_place(6, &mut |off, bytes| {
            seen.push((off, bytes.len()));
            bytes.fill(9);
            true
        }));
        assert_eq!(seen, [(0, 3), (3, 3)]);
        assert!(!buf.fill_in_place(8, &mut |_, _| false));
        drop(buf);
        assert_eq!((a, c), ([9, 9, 9], [9, 9, 9, 7, 8]));
        // lent per segment (the empty one skipped), in message order
        // SAFETY: the arrays outlive the buffer.
        let mut buf = unsafe { SegBuf::from_raw(list.as_ptr(), 3) }.unwrap();
        let mut seen = Vec::new();
        buf.chunks(1, 5, &mut |off, bytes| seen.push((off, bytes.to_vec())));
        assert_eq!(seen, [(1, vec![9, 9]), (3, vec![9, 9, 9])]);
        let mut seen = Vec::new();
        buf.chunks_mut(2, 4, &mut |off, bytes| {
            seen.push((off, bytes.len()));
            bytes.fill(off as u8 + 10);
        });
        assert_eq!(seen, [(2, 1), (3, 3)]);
        drop(buf);
        assert_eq!((a, c), ([9, 9, 12], [13, 13, 13, 7, 8]));
    }

    #[test]
    fn bad_lists() {
        // SAFETY: NULL lists are checked before any access.
        unsafe {
            assert_eq!(
                SegBuf::from_raw(core::ptr::null(), 1).unwrap_err(),
                MxReturn::BAD_SEG_LIST
            );
            assert_eq!(
                SegBuf::from_raw(core::ptr::null(), 257).unwrap_err(),
                MxReturn::BAD_SEG_CNT
            );
            assert_eq!(SegBuf::from_raw(core::ptr::null(), 0).unwrap().len(), 0);
        }
        let list = [MxSegment {
            segment_ptr: core::ptr::null_mut(),
            segment_length: 4,
        }];
        // SAFETY: the list is a valid array; the NULL segment is refused.
        let r = unsafe { SegBuf::from_raw(list.as_ptr(), 1) };
        assert_eq!(r.unwrap_err(), MxReturn::BAD_SEG_MEM);
    }
}
