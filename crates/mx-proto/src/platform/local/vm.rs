//! Bulk copies to and from a guest process: `process_vm_readv`/`writev`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::platform::sys::{self, RemoteSeg, VM_IOV_BATCH};
use crate::platform::GuestMemory;

/// A range of a guest process's virtual memory: what the guest names, the
/// host never dereferences it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestRange {
    /// Start address in the guest process.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

impl GuestRange {
    /// A range from its address and length.
    pub fn new(addr: u64, len: u64) -> Self {
        GuestRange { addr, len }
    }

    /// The range of a buffer of the calling process (guest side).
    pub fn of_slice(buf: &[u8]) -> Self {
        GuestRange {
            addr: buf.as_ptr() as u64,
            len: buf.len() as u64,
        }
    }
}

/// Bulk access to one guest process's memory, by pid, guarded by a pidfd
/// taken when the guest attached: once that process has exited every copy
/// fails with `ESRCH`, so a recycled pid is not written to by mistake.
/// Clones share the pidfd.
///
/// Needs ptrace access to the guest (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    pid: i32,
    pidfd: Arc<OwnedFd>,
}

impl ProcessMemory {
    /// Access to process `pid` (a guest from [`super::LocalConn`] gets
    /// this from the connection; this constructor is for embedded use and
    /// tests).
    ///
    /// # Errors
    /// `ESRCH` if there is no such process, or an OS error from `pidfd_open`.
    pub fn open(pid: i32) -> io::Result<Self> {
        Ok(ProcessMemory {
            pid,
            pidfd: Arc::new(sys::pidfd_open(pid)?),
        })
    }

    /// Access guarded by an existing pidfd of process `pid`.
    pub(crate) fn from_pidfd(pid: i32, pidfd: OwnedFd) -> Self {
        ProcessMemory {
            pid,
            pidfd: Arc::new(pidfd),
        }
    }

    /// The guest's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// True while the guest process has not exited.
    pub fn is_alive(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.pidfd.as_fd()),
            events: libc::POLLIN,
            revents: 0,
        }];
        // A pidfd becomes readable when the process exits.
        matches!(sys::ppoll(&mut fds, Some(Duration::ZERO)), Ok(0))
    }

    /// Runs `op(segments, local_offset, bytes)` over batches of at most
    /// [`VM_IOV_BATCH`] remote segments covering `len` bytes starting
    /// `offset` bytes into `segments`; every batch must transfer fully.
    fn transfer(
        &self,
        segments: &[GuestRange],
        offset: u64,
        len: usize,
        mut op: impl FnMut(&[RemoteSeg], usize, usize) -> io::Result<usize>,
    ) -> io::Result<()> {
        let total = Self::total_len(segments)?;
        match offset.checked_add(len as u64) {
            Some(end) if end <= total => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "copy range outside the guest segments",
                ))
            }
        }
        if len == 0 {
            return Ok(());
        }
        if !self.is_alive() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let mut batch = [RemoteSeg { addr: 0, len: 0 }; VM_IOV_BATCH];
        let mut nseg = 0;
        let mut batch_bytes = 0usize;
        let mut done = 0usize; // bytes of the local buffer handed to completed batches
        let mut skip = offset;
        for seg in segments {
            if skip >= seg.len {
                skip -= seg.len;
                continue;
            }
            let mut addr = seg
                .addr
                .checked_add(skip)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
            let mut avail = seg.len - skip;
            skip = 0;
            while avail > 0 && done + batch_bytes < len {
                let n = avail.min((len - done - batch_bytes) as u64) as usize;
                if addr.checked_add(n as u64).is_none() {
                    return Err(io::Error::from_raw_os_error(libc::EFAULT));
                }
                batch[nseg] = RemoteSeg { addr, len: n };
                nseg += 1;
                batch_bytes += n;
                addr += n as u64;
                avail -= n as u64;
                if nseg == VM_IOV_BATCH || done + batch_bytes == len {
                    let moved = op(&batch[..nseg], done, batch_bytes)?;
                    if moved != batch_bytes {
                        // process_vm_* stops at the first remote segment that faults.
                        return Err(io::Error::from_raw_os_error(libc::EFAULT));
                    }
                    done += batch_bytes;
                    batch_bytes = 0;
                    nseg = 0;
                }
            }
            if done == len {
                break;
            }
        }
        debug_assert_eq!(done, len);
        Ok(())
    }
}

impl GuestMemory for ProcessMemory {
    type Region = GuestRange;

    fn total_len(segments: &[GuestRange]) -> io::Result<u64> {
        segments
            .iter()
            .try_fold(0u64, |acc, s| acc.checked_add(s.len))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "segment lengths overflow"))
    }

    fn read(&self, segments: &[GuestRange], offset: u64, dst: &mut [u8]) -> io::Result<()> {
        let pid = self.pid;
        self.transfer(segments, offset, dst.len(), |segs, at, n| {
            sys::process_vm_read(pid, segs, &mut dst[at..at + n])
        })
    }

    fn write(&self, segments: &[GuestRange], offset: u64, src: &[u8]) -> io::Result<()> {
        let pid = self.pid;
        self.transfer(segments, offset, src.len(), |segs, at, n| {
            sys::process_vm_write(pid, segs, &src[at..at + n])
        })
    }

    fn direct_pid(&self) -> Option<u32> {
        u32::try_from(self.pid).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ProcessMemory {
        ProcessMemory::open(std::process::id() as i32).unwrap()
    }

    #[test]
    fn read_and_write_own_memory() {
        let m = me();
        assert!(m.is_alive());
        let src: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let r = [GuestRange::of_slice(&src)];
        let mut dst = vec![0u8; 10_000];
        m.read(&r, 0, &mut dst).unwrap();
        assert_eq!(dst, src);
        let mut part = [0u8; 10];
        m.read(&r, 9_990, &mut part).unwrap();
        assert_eq!(part, src[9_990..]);

        let target = vec![0u8; 100];
        let t = [GuestRange::of_slice(&target)];
        m.write(&t, 50, &[9u8; 50]).unwrap();
        // SAFETY-free check: read back through the same syscall path.
        let mut back = [0u8; 100];
        m.read(&t, 0, &mut back).unwrap();
        assert_eq!(&back[..50], &[0u8; 50]);
        assert_eq!(&back[50..], &[9u8; 50]);
    }

    #[test]
    fn many_segments_are_batched() {
        let m = me();
        // 200 segments of 3 bytes (more than one batch), read at an offset.
        let bufs: Vec<[u8; 3]> = (0..200u8).map(|i| [i, i, i]).collect();
        let segs: Vec<GuestRange> = bufs.iter().map(|b| GuestRange::of_slice(b)).collect();
        assert_eq!(ProcessMemory::total_len(&segs).unwrap(), 600);
        let mut dst = vec![0u8; 590];
        m.read(&segs, 4, &mut dst).unwrap();
        let want: Vec<u8> = bufs.iter().flatten().copied().skip(4).take(590).collect();
        assert_eq!(dst, want);
        // and write across all of them
        let out: Vec<[u8; 3]> = vec![[0; 3]; 200];
        let osegs: Vec<GuestRange> = out.iter().map(|b| GuestRange::of_slice(b)).collect();
        let src: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        m.write(&osegs, 0, &src).unwrap();
        let mut back = vec![0u8; 600];
        m.read(&osegs, 0, &mut back).unwrap();
        assert_eq!(back, src);
    }

    #[test]
    fn bad_addresses_and_ranges_are_errors() {
        let m = me();
        let mut dst = [0u8; 16];
        let e = m.read(&[GuestRange::new(8, 16)], 0, &mut dst).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        let e = m
            .write(&[GuestRange::new(u64::MAX - 4, 16)], 0, &dst)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        // valid first segment, bad second: still an error, not a short copy
        let ok = [1u8; 8];
        let e = m
            .read(
                &[GuestRange::of_slice(&ok), GuestRange::new(16, 8)],
                0,
                &mut dst,
            )
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        // outside the segments
        let e = m
            .read(&[GuestRange::of_slice(&ok)], 1, &mut dst[..8])
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = m
            .read(
                &[GuestRange::new(0, u64::MAX), GuestRange::new(0, 2)],
                0,
                &mut dst,
            )
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // empty copy inside the range is fine
        m.read(&[GuestRange::of_slice(&ok)], 8, &mut []).unwrap();
    }
}
