//! Grant tables: pages a guest grants ([`GrantedPages`], `/dev/xen/gntalloc`)
//! and the host's mapping of them ([`MappedGrants`], `/dev/xen/gntdev`),
//! plus the hypervisor-side copy ([`GrantCopier`], `IOCTL_GNTDEV_GRANT_COPY`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::stats;
use super::sys::{self, DevMapping, GrantCopySegment, GrantForeign};
use crate::platform::PAGE_SIZE;
use crate::ring::SharedRegion;

/// A Xen domain id.
pub type DomId = u16;

/// A grant reference.
pub type GrantRef = u32;

/// Byte length of `count` pages, or `InvalidInput` for 0 or too many.
fn byte_len(count: usize) -> io::Result<usize> {
    if count == 0 || count > sys::MAX_GRANT_BATCH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad page count",
        ));
    }
    Ok(count * PAGE_SIZE)
}

/// Pages this domain allocated and grants, writable, to one other domain
/// (a frontend's rings, queues and pool).
///
/// The kernel zeroes them on allocation. Dropping unmaps this side's view
/// and stops granting them; a peer that still maps them keeps them until it
/// unmaps (the page is freed only then), so dropping is always safe.
#[derive(Debug)]
pub struct GrantedPages {
    map: DevMapping,
    fd: OwnedFd,
    index: u64,
    refs: Vec<GrantRef>,
    to: DomId,
}

impl GrantedPages {
    /// Allocates `count` zeroed pages granted to domain `to`.
    ///
    /// # Errors
    /// `InvalidInput` for 0 pages; an OS error from the device (`ENOSPC`
    /// when `xen-gntalloc`'s `limit` is reached, see docs/XEN.md).
    pub fn new(to: DomId, count: usize) -> io::Result<Self> {
        let len = byte_len(count)?;
        let fd = sys::open_dev(sys::DEV_GNTALLOC, false)?;
        let (index, refs) = sys::gntalloc_alloc(fd.as_fd(), to, count)?;
        let map = match DevMapping::map(fd.as_fd(), index, len) {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::gntalloc_dealloc(fd.as_fd(), index, count);
                return Err(e);
            }
        };
        stats::add(&stats::GRANTED_PAGES, count);
        Ok(GrantedPages {
            map,
            fd,
            index,
            refs,
            to,
        })
    }

    /// The grant references, one per page, in page order.
    pub fn refs(&self) -> &[GrantRef] {
        &self.refs
    }

    /// The domain the pages are granted to.
    pub fn granted_to(&self) -> DomId {
        self.to
    }

    /// Start of this side's mapping (inherent, so that having both
    /// [`SharedMem`](crate::platform::SharedMem) and [`SharedRegion`] in scope is not ambiguous).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a page set has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}

impl Drop for GrantedPages {
    fn drop(&mut self) {
        let _ = sys::gntalloc_dealloc(self.fd.as_fd(), self.index, self.refs.len());
        stats::sub(&stats::GRANTED_PAGES, self.refs.len());
        // `map` then `fd` are dropped after this: munmap, then close.
    }
}

// SAFETY: as above; the pointer is fixed by mmap (page-aligned, 4096) and
// does not move with the value.
#[allow(unsafe_code)]
unsafe impl SharedRegion for GrantedPages {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The host's mapping of pages a guest granted (one gntdev batch, mapped
/// contiguously). Unmapped on drop, which also lets a dying guest's memory
/// be freed.
#[derive(Debug)]
pub struct MappedGrants {
    map: DevMapping,
    fd: OwnedFd,
    index: u64,
    count: usize,
    from: DomId,
}

impl MappedGrants {
    /// Maps the pages `refs` that domain `from` granted us, read-write.
    ///
    /// # Errors
    /// `InvalidInput` for an empty or oversized list; an OS error if the
    /// hypervisor refuses (a reference that is not granted to us, read-only,
    /// or not a grant at all: the caller should treat it as `InvalidData`).
    pub fn map(from: DomId, refs: &[GrantRef]) -> io::Result<Self> {
        let len = byte_len(refs.len())?;
        let fd = sys::open_dev(sys::DEV_GNTDEV, false)?;
        let index = sys::gntdev_map(fd.as_fd(), from, refs)?;
        let map = match DevMapping::map(fd.as_fd(), index, len) {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::gntdev_unmap(fd.as_fd(), index, refs.len());
                return Err(e);
            }
        };
        stats::add(&stats::MAPPED_PAGES, refs.len());
        Ok(MappedGrants {
            map,
            fd,
            index,
            count: refs.len(),
            from,
        })
    }

    /// The granting domain.
    pub fn domid(&self) -> DomId {
        self.from
    }

    /// Start of the mapping (inherent, see [`GrantedPages::as_ptr`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}

impl Drop for MappedGrants {
    fn drop(&mut self) {
        // Release the batch first; the grants are unmapped when `map` is
        // dropped just after (munmap), and the file closed last.
        let _ = sys::gntdev_unmap(self.fd.as_fd(), self.index, self.count);
        stats::sub(&stats::MAPPED_PAGES, self.count);
    }
}

// SAFETY: as above; the pointer is fixed by mmap and page-aligned.
#[allow(unsafe_code)]
unsafe impl SharedRegion for MappedGrants {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Copies between local buffers and pages another domain granted, done by
/// the hypervisor (`IOCTL_GNTDEV_GRANT_COPY`), without mapping them.
///
/// One descriptor serves any number of copies. Each copy is split into
/// per-page segments; a reference the guest did not grant us fails the
/// copy with `EFAULT`-like status and the call returns `InvalidData`.
#[derive(Debug)]
pub struct GrantCopier {
    fd: OwnedFd,
}

impl GrantCopier {
    /// Opens `/dev/xen/gntdev` for copies.
    ///
    /// # Errors
    /// An OS error if the device is missing.
    pub fn new() -> io::Result<Self> {
        Ok(GrantCopier {
            fd: sys::open_dev(sys::DEV_GNTDEV, false)?,
        })
    }

    /// Splits `len` bytes starting `offset` bytes into the pages `refs`
    /// into `(ref, page offset, length, buffer offset)` pieces.
    fn pieces(
        refs: &[GrantRef],
        offset: usize,
        len: usize,
    ) -> io::Result<Vec<(GrantRef, u16, u16, usize)>> {
        match offset.checked_add(len) {
            Some(end) if end <= refs.len() * PAGE_SIZE => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "grant copy outside the pages",
                ))
            }
        }
        let mut out = Vec::new();
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(len - done);
            out.push((refs[at / PAGE_SIZE], in_page as u16, n as u16, done));
            done += n;
        }
        Ok(out)
    }

    fn run(&self, segs: &mut [GrantCopySegment]) -> io::Result<()> {
        for chunk in segs.chunks_mut(64) {
            // SAFETY: every local address in `segs` was built by
            // `read`/`write` from a live buffer covering its segment.
            #[allow(unsafe_code)]
            unsafe {
                sys::gntdev_grant_copy(self.fd.as_fd(), chunk)?
            };
            if let Some(bad) = chunk.iter().find(|s| s.status() != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("grant copy failed with status {}", bad.status()),
                ));
            }
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes starting `offset` bytes into the pages
    /// `refs` of domain `from` into `dst`.
    ///
    /// # Errors
    /// `InvalidInput` if the range is outside the pages; `InvalidData` if
    /// the hypervisor refused a reference; an OS error from the device.
    pub fn read(
        &self,
        from: DomId,
        refs: &[GrantRef],
        offset: usize,
        dst: &mut [u8],
    ) -> io::Result<()> {
        let base = dst.as_mut_ptr();
        let mut segs: Vec<GrantCopySegment> = Self::pieces(refs, offset, dst.len())?
            .into_iter()
            .map(|(gref, off, n, at)| {
                GrantCopySegment::from_grant(
                    GrantForeign {
                        gref,
                        offset: off,
                        domid: from,
                    },
                    base.wrapping_add(at),
                    n,
                )
            })
            .collect();
        self.run(&mut segs)
    }

    /// Copies `src` into the pages `refs` of domain `to`, starting `offset`
    /// bytes into them.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn write(&self, to: DomId, refs: &[GrantRef], offset: usize, src: &[u8]) -> io::Result<()> {
        let base = src.as_ptr();
        let mut segs: Vec<GrantCopySegment> = Self::pieces(refs, offset, src.len())?
            .into_iter()
            .map(|(gref, off, n, at)| {
                GrantCopySegment::to_grant(
                    base.wrapping_add(at),
                    GrantForeign {
                        gref,
                        offset: off,
                        domid: to,
                    },
                    n,
                )
            })
            .collect();
        self.run(&mut segs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_split_at_page_boundaries() {
        let refs = [10, 11, 12];
        let p = GrantCopier::pieces(&refs, 4000, 5000).unwrap();
        assert_eq!(
            p,
            vec![(10, 4000, 96, 0), (11, 0, 4096, 96), (12, 0, 808, 4192)]
        );
        assert!(GrantCopier::pieces(&refs, 3 * 4096 - 1, 2).is_err());
        assert!(GrantCopier::pieces(&refs, usize::MAX, 2).is_err());
        assert!(GrantCopier::pieces(&refs, 0, 0).unwrap().is_empty());
    }

    #[test]
    fn no_xen_no_pages() {
        if std::path::Path::new(sys::DEV_GNTALLOC).exists() {
            return; // a real Xen guest: covered by mx-xen-selftest
        }
        assert!(GrantedPages::new(0, 1).is_err());
        assert!(MappedGrants::map(1, &[8]).is_err());
        assert!(GrantedPages::new(0, 0).is_err());
    }
}
