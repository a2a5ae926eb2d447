//! Shared pages of the local platform: a sealed memfd.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::platform::sys::{self, Mapping};
use crate::platform::PAGE_SIZE;
use crate::ring::SharedRegion;

/// Byte length of `count` pages, or `InvalidInput` for 0 or overflow.
fn byte_len(count: usize) -> io::Result<usize> {
    match count.checked_mul(PAGE_SIZE) {
        Some(len) if count > 0 && len <= isize::MAX as usize => Ok(len),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad page count",
        )),
    }
}

/// Pages a guest allocated to offer to its backend: a memfd of `count`
/// zeroed pages, sealed so that it can never shrink, mapped shared.
///
/// Dropping it unmaps the guest's view and closes the memfd; a host that
/// mapped it keeps its own mapping until it drops its [`MappedPages`].
#[derive(Debug)]
pub struct MemfdPages {
    fd: OwnedFd,
    map: Mapping,
}

impl MemfdPages {
    /// Allocates `count` zeroed pages.
    ///
    /// # Errors
    /// `InvalidInput` for 0 pages or a size overflow; an OS error from
    /// `memfd_create`, `ftruncate`, `fcntl(F_ADD_SEALS)` or `mmap`.
    pub fn new(count: usize) -> io::Result<Self> {
        let len = byte_len(count)?;
        let fd = sys::memfd_create("mx-pages")?;
        sys::ftruncate(fd.as_fd(), len as u64)?;
        sys::add_seals(
            fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        let map = Mapping::map_shared(fd.as_fd(), len)?;
        Ok(MemfdPages { fd, map })
    }

    /// Start of the mapping (inherent, so that having both [`SharedMem`](crate::platform::SharedMem)
    /// and [`SharedRegion`] in scope is not ambiguous).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length in bytes, a multiple of [`PAGE_SIZE`].
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a page set has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}

impl AsFd for MemfdPages {
    /// The memfd, as sent to the host.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: the mapping does not move with its owner: the pointer is fixed,
// non-null and page-aligned (mmap, at least 4096); `len` bytes stay mapped
// read-write until drop and never change, and the memfd is sealed so the
// file cannot shrink under it. Keeping to atomic accesses while
// rings use the bytes is the ring code's side of the contract.
#[allow(unsafe_code)]
unsafe impl SharedRegion for MemfdPages {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The host's mapping of pages a guest offered. Unmapped on drop.
#[derive(Debug)]
pub struct MappedPages {
    map: Mapping,
}

impl MappedPages {
    /// Maps the memfd `fd` received from a guest, after checking that it is
    /// a memfd sealed against shrinking and against further sealing
    /// (`F_SEAL_SHRINK | F_SEAL_SEAL`) whose size is exactly
    /// `expected_pages` pages. The descriptor is closed once mapped.
    ///
    /// The guest can still punch holes in the file (`fallocate`) and so
    /// zero any page of the host's view at any time; the host's accesses
    /// never fault for that (a hole reads as zeros), and the ring code
    /// treats every byte it reads there as hostile.
    ///
    /// # Errors
    /// `InvalidInput` for a bad `expected_pages`; `InvalidData` if `fd` is
    /// not such a memfd; an OS error from `mmap`.
    pub fn map(fd: OwnedFd, expected_pages: usize) -> io::Result<Self> {
        let len = byte_len(expected_pages)?;
        let bad = |why: &'static str| io::Error::new(io::ErrorKind::InvalidData, why);
        let seals = sys::get_seals(fd.as_fd()).map_err(|_| bad("shared pages are not a memfd"))?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(bad("shared pages memfd is not sealed against shrinking"));
        }
        if seals & libc::F_SEAL_SEAL == 0 {
            // Otherwise seals could change under the mapping later.
            return Err(bad("shared pages memfd is not sealed against new seals"));
        }
        let (mode, size) = sys::fstat(fd.as_fd())?;
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(bad("shared pages are not a regular file"));
        }
        if size != len as u64 {
            return Err(bad("shared pages have the wrong size"));
        }
        let map = Mapping::map_shared(fd.as_fd(), len)?;
        Ok(MappedPages { map })
    }

    /// Start of the mapping (inherent, so that having both [`SharedMem`](crate::platform::SharedMem)
    /// and [`SharedRegion`] in scope is not ambiguous).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Length in bytes, a multiple of [`PAGE_SIZE`].
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a page set has at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}

// SAFETY: as for `MemfdPages`; the memfd was checked to be sealed against
// shrinking (and against new seals), so no access to the mapped range can
// fault with SIGBUS. The guest may still punch holes, which makes pages
// read as zeros: their contents are untrusted anyway, never their
// presence.
#[allow(unsafe_code)]
unsafe impl SharedRegion for MappedPages {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::SharedMem;

    #[test]
    fn pages_are_zeroed_shared_and_bounds_checked() {
        let g = MemfdPages::new(2).unwrap();
        assert_eq!(g.len(), 2 * PAGE_SIZE);
        assert_eq!(g.pages(), 2);
        assert_eq!(g.as_ptr() as usize % PAGE_SIZE, 0);
        let mut buf = [0xa5u8; 64];
        g.read_at(PAGE_SIZE * 2 - 64, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 64]);

        let h = MappedPages::map(g.as_fd().try_clone_to_owned().unwrap(), 2).unwrap();
        assert_ne!(h.as_ptr(), g.as_ptr());
        // unaligned offsets and lengths through every copy path
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        g.write_at(4093, &data).unwrap();
        let mut back = vec![0u8; 1000];
        h.read_at(4093, &mut back).unwrap();
        assert_eq!(back, data);
        h.fill_at(10, 3, 0x7f).unwrap();
        let mut b = [0u8; 5];
        g.read_at(9, &mut b).unwrap();
        assert_eq!(b, [0, 0x7f, 0x7f, 0x7f, 0]);

        let size = 2 * PAGE_SIZE;
        assert_eq!(
            g.write_at(size - 1, &[1, 2]),
            Err(crate::platform::OutOfBounds {
                offset: size - 1,
                len: 2,
                size
            })
        );
        assert!(h.read_at(size, &mut [0u8; 1]).is_err());
        assert!(h.read_at(usize::MAX, &mut [0u8; 2]).is_err());
        assert!(h.fill_at(1, usize::MAX, 0).is_err());
        assert!(h.read_at(size, &mut []).is_ok());

        // The guest cannot shrink the file under the host's mapping.
        assert!(sys::ftruncate(g.as_fd(), 0).is_err());
        assert!(sys::ftruncate(g.as_fd(), PAGE_SIZE as u64).is_err());
    }

    #[test]
    fn a_ring_in_guest_pages_is_seen_through_the_host_mapping() {
        use crate::ring::{ControlPage, Direction, Layout, Side};
        let mut layout = Layout::new();
        let cmd = layout.add_ring(Direction::FrontToBack, 64, 64).unwrap();
        let pages = layout.region_len().div_ceil(PAGE_SIZE);
        let g = MemfdPages::new(pages).unwrap();
        let h = MappedPages::map(g.as_fd().try_clone_to_owned().unwrap(), pages).unwrap();
        let front = ControlPage::init(&g, &layout, Side::Frontend).unwrap();
        let back = ControlPage::attach(&h, &layout, Side::Backend).unwrap();
        let mut tx = front.producer::<[u64; 8]>(cmd).unwrap();
        let mut rx = back.consumer::<[u64; 8]>(cmd).unwrap();
        tx.push(&[42; 8]).unwrap();
        let _ = tx.publish();
        assert_eq!(rx.pop(), Ok(Some([42; 8])));
    }

    /// A guest that punches holes zeroes the host's view, and nothing
    /// faults: the host reads zeros, and writes land again.
    #[test]
    fn punched_holes_read_as_zeros_in_the_host_view() {
        let g = MemfdPages::new(4).unwrap();
        let h = MappedPages::map(g.as_fd().try_clone_to_owned().unwrap(), 4).unwrap();
        let data = [0xa5u8; 3 * PAGE_SIZE];
        g.write_at(PAGE_SIZE / 2, &data).unwrap();
        sys::punch_hole(g.as_fd(), PAGE_SIZE as u64, 2 * PAGE_SIZE as u64).unwrap();
        let mut back = vec![0u8; 4 * PAGE_SIZE];
        h.read_at(0, &mut back).unwrap();
        assert!(back[PAGE_SIZE..3 * PAGE_SIZE].iter().all(|&b| b == 0));
        assert!(back[PAGE_SIZE / 2..PAGE_SIZE].iter().all(|&b| b == 0xa5));
        h.write_at(PAGE_SIZE + 7, b"again").unwrap();
        let mut w = [0u8; 5];
        g.read_at(PAGE_SIZE + 7, &mut w).unwrap();
        assert_eq!(&w, b"again");
    }

    #[test]
    fn host_rejects_unsuitable_memfds() {
        assert!(MemfdPages::new(0).is_err());
        let g = MemfdPages::new(1).unwrap();
        // wrong expected size
        let e = MappedPages::map(g.as_fd().try_clone_to_owned().unwrap(), 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // an unsealed memfd (could be truncated under the mapping)
        let raw = sys::memfd_create("unsealed").unwrap();
        sys::ftruncate(raw.as_fd(), PAGE_SIZE as u64).unwrap();
        let e = MappedPages::map(raw, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // sealed against shrinking, but seals could still be added later
        let open = sys::memfd_create("unsealed").unwrap();
        sys::ftruncate(open.as_fd(), PAGE_SIZE as u64).unwrap();
        sys::add_seals(open.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).unwrap();
        let e = MappedPages::map(open, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // not a memfd at all
        let ev = sys::eventfd(false).unwrap();
        assert_eq!(
            MappedPages::map(ev, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
