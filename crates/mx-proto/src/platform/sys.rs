//! The thin unsafe edge of the platform layer: every libc call and every raw
//! access to shared memory lives here.
//!
//! Each wrapper is a few lines, names the system call it makes, returns
//! [`io::Result`] and hands out OS resources as owned types ([`OwnedFd`],
//! [`Mapping`]) that release them on drop. Nothing above this module needs
//! `unsafe`, except the `unsafe impl SharedMem` promises (see
//! [`super::SharedMem`]).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Converts a `-1`-on-error libc return value into an [`io::Result`].
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Converts a `-1`-on-error `ssize_t` return value into an [`io::Result`].
fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Wraps a freshly returned file descriptor.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned `fd` to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A timeout as milliseconds for poll-style calls: `None` is -1 (forever);
/// any non-zero duration rounds up so a sub-millisecond wait does not spin.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

// ----------------------------------------------------------------- clock ---

/// Microseconds of `CLOCK_MONOTONIC_COARSE`: the tick the kernel last
/// counted (a few milliseconds' resolution), read from the vDSO without
/// touching the time-stamp counter: about 5 ns here where the precise
/// clock takes 40 in a VM.
pub(crate) fn coarse_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id exists on
    // every Linux since 2.6.32 (a failure leaves `ts` zero: time stands
    // still, which the callers' timers tolerate).
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

// ---------------------------------------------------------------- memory ---

/// `memfd_create(2)` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`.
pub(crate) fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })
}

/// `ftruncate(2)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a borrowed, open descriptor.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// `fcntl(F_ADD_SEALS)`.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor; no pointers.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// `fcntl(F_GET_SEALS)`; fails with `EINVAL` on anything but a memfd/shmem file.
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: plain syscall on a borrowed, open descriptor; no pointers.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// `fcntl(F_GETFL)`: the file status flags (`O_NONBLOCK`, access mode...).
#[cfg(test)]
pub(crate) fn get_status_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: plain syscall on a borrowed, open descriptor; no pointers.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(F_SETFL)`: sets the file status flags (tests use it to play a
/// hostile peer that clears `O_NONBLOCK`).
#[cfg(test)]
pub(crate) fn set_status_flags(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor; no pointers.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

/// `fstat(2)`: returns `(st_mode, st_size)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<(u32, u64)> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right type for the kernel to fill.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok((st.st_mode, u64::try_from(st.st_size).unwrap_or(0)))
}

/// An owned `MAP_SHARED`, read-write mapping of a file (a memfd, a packet
/// socket's ring); unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, not tied to a thread; every
// access through it goes through raw, volatile copies or atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` exposes only a raw pointer and its length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(2)` of the first `len` bytes of `fd`, `PROT_READ | PROT_WRITE`, `MAP_SHARED`.
    ///
    /// # Errors
    /// `InvalidInput` for `len` 0, or the OS error of `mmap`.
    pub fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL); it aliases
        // no Rust object, and `len`/`fd` are checked by the kernel.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Mapping { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes (never 0).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and still own;
        // nothing can use it after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The widest volatile access the copies use: 16-byte SSE2 vectors on
/// x86_64 (always present there), as fast as `memcpy` where 8-byte words
/// ran at a third of it; 8-byte words elsewhere. A volatile access of this
/// type is one load or store instruction, never split nor merged.
#[cfg(target_arch = "x86_64")]
type Wide = core::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Wide = u64;

/// Bytes per [`Wide`] access.
const WIDE: usize = size_of::<Wide>();

/// Copies `dst.len()` bytes from shared memory at `src` into `dst` with
/// volatile loads ([`Wide`] at a time once `src` is aligned, four per loop
/// turn), so the compiler neither elides nor repeats a read of memory the
/// peer may change at any time.
///
/// # Safety
/// `src .. src + dst.len()` must be valid, mapped, readable memory for the
/// whole call (it may be concurrently written by another party).
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let out = dst.as_mut_ptr();
    let mut i = 0;
    while i < n && !(src as usize + i).is_multiple_of(WIDE) {
        // SAFETY: i < n, in range by the caller's contract.
        dst[i] = unsafe { ptr::read_volatile(src.add(i)) };
        i += 1;
    }
    while i + 4 * WIDE <= n {
        // SAFETY: `i + 4 * WIDE <= n`: in range of both sides (the caller's
        // contract for `src`, `dst`'s length for `out`); `src + i` is
        // `WIDE`-aligned by the loop above, `out` is written unaligned.
        unsafe {
            let p = src.add(i).cast::<Wide>();
            let (a, b) = (ptr::read_volatile(p), ptr::read_volatile(p.add(1)));
            let (c, d) = (ptr::read_volatile(p.add(2)), ptr::read_volatile(p.add(3)));
            let q = out.add(i).cast::<Wide>();
            q.write_unaligned(a);
            q.add(1).write_unaligned(b);
            q.add(2).write_unaligned(c);
            q.add(3).write_unaligned(d);
        }
        i += 4 * WIDE;
    }
    while i + WIDE <= n {
        // SAFETY: as above, one access.
        unsafe {
            let v = ptr::read_volatile(src.add(i).cast::<Wide>());
            out.add(i).cast::<Wide>().write_unaligned(v);
        }
        i += WIDE;
    }
    while i < n {
        // SAFETY: i < n, in range by the caller's contract.
        dst[i] = unsafe { ptr::read_volatile(src.add(i)) };
        i += 1;
    }
}

/// Copies `src` into shared memory at `dst` with volatile stores ([`Wide`]
/// at a time once `dst` is aligned, four per loop turn).
///
/// # Safety
/// `dst .. dst + src.len()` must be valid, mapped, writable memory for the
/// whole call (it may be concurrently accessed by another party).
pub(crate) unsafe fn copy_to_shared(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let from = src.as_ptr();
    let mut i = 0;
    while i < n && !(dst as usize + i).is_multiple_of(WIDE) {
        // SAFETY: i < n, in range by the caller's contract.
        unsafe { ptr::write_volatile(dst.add(i), src[i]) };
        i += 1;
    }
    while i + 4 * WIDE <= n {
        // SAFETY: `i + 4 * WIDE <= n`: in range of both sides (`src`'s
        // length, the caller's contract for `dst`); `dst + i` is
        // `WIDE`-aligned by the loop above, `from` is read unaligned.
        unsafe {
            let p = from.add(i).cast::<Wide>();
            let (a, b) = (p.read_unaligned(), p.add(1).read_unaligned());
            let (c, d) = (p.add(2).read_unaligned(), p.add(3).read_unaligned());
            let q = dst.add(i).cast::<Wide>();
            ptr::write_volatile(q, a);
            ptr::write_volatile(q.add(1), b);
            ptr::write_volatile(q.add(2), c);
            ptr::write_volatile(q.add(3), d);
        }
        i += 4 * WIDE;
    }
    while i + WIDE <= n {
        // SAFETY: as above, one access.
        unsafe {
            let v = from.add(i).cast::<Wide>().read_unaligned();
            ptr::write_volatile(dst.add(i).cast::<Wide>(), v);
        }
        i += WIDE;
    }
    while i < n {
        // SAFETY: i < n, in range by the caller's contract.
        unsafe { ptr::write_volatile(dst.add(i), src[i]) };
        i += 1;
    }
}

/// Copies `len` bytes from shared memory at `src` to shared memory at `dst`
/// (two different mappings, or disjoint ranges of one) with volatile
/// accesses, through a small stack buffer: both sides may be written by
/// their peers at any time.
///
/// # Safety
/// `src .. src + len` must be valid readable memory and `dst .. dst + len`
/// valid writable memory for the whole call, and the ranges must not overlap.
pub(crate) unsafe fn copy_shared_to_shared(src: *const u8, dst: *mut u8, len: usize) {
    let mut buf = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        // SAFETY: done + n <= len: in range by the caller's contract.
        unsafe {
            copy_from_shared(src.add(done), &mut buf[..n]);
            copy_to_shared(dst.add(done), &buf[..n]);
        }
        done += n;
    }
}

/// Fills `len` bytes of shared memory at `dst` with `byte`, volatile stores.
///
/// # Safety
/// `dst .. dst + len` must be valid, mapped, writable memory for the whole call.
pub(crate) unsafe fn fill_shared(dst: *mut u8, len: usize, byte: u8) {
    let chunk = [byte; 64];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        // SAFETY: done + n <= len, in range by the caller's contract.
        unsafe { copy_to_shared(dst.add(done), &chunk[..n]) };
        done += n;
    }
}

// --------------------------------------------------------------- eventfd ---

/// `eventfd(2)` with `EFD_CLOEXEC | EFD_NONBLOCK` (plus `EFD_SEMAPHORE` if asked).
pub(crate) fn eventfd(semaphore: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::EFD_CLOEXEC | libc::EFD_NONBLOCK;
    if semaphore {
        flags |= libc::EFD_SEMAPHORE;
    }
    // SAFETY: plain syscall, no pointers.
    owned(unsafe { libc::eventfd(0, flags) })
}

/// `write(2)` of one 8-byte counter increment to an eventfd.
pub(crate) fn eventfd_write(fd: BorrowedFd<'_>, value: u64) -> io::Result<()> {
    let buf = value.to_ne_bytes();
    // SAFETY: `buf` is 8 readable bytes.
    let n = cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })?;
    if n == buf.len() {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::WriteZero))
    }
}

/// Set once `preadv2(RWF_NOWAIT)` turned out unsupported for eventfds.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Reads (and so resets, or decrements for a semaphore) an eventfd counter.
///
/// Uses `preadv2(.., RWF_NOWAIT)` so the read cannot block even if whoever
/// shares the file description cleared `O_NONBLOCK`; falls back to `read(2)`
/// on kernels without it. `WouldBlock` when the counter is zero.
pub(crate) fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let n = if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        // SAFETY: `buf` is 8 writable bytes.
        cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?
    } else {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: one iovec naming `buf`, 8 writable bytes; offset -1 = current position.
        let r = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
        match cvt_size(r) {
            Err(e)
                if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || e.raw_os_error() == Some(libc::ENOSYS) =>
            {
                NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                return eventfd_read(fd);
            }
            other => other?,
        }
    };
    if n == buf.len() {
        Ok(u64::from_ne_bytes(buf))
    } else {
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

// -------------------------------------------------------------- doorbells ---

/// `send(2)` of a one-byte doorbell datagram with `MSG_DONTWAIT |
/// MSG_NOSIGNAL`: the flags are this call's, so whoever else holds the
/// socket's file description cannot make it block (clearing `O_NONBLOCK`
/// changes nothing) nor raise `SIGPIPE`. `WouldBlock` when the peer has
/// left so many doorbells unread that the socket's send buffer is full.
pub(crate) fn doorbell_ring(fd: BorrowedFd<'_>) -> io::Result<()> {
    let b = [1u8];
    // SAFETY: `b` is one readable byte for the duration of the call.
    let n = cvt_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            b.as_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })?;
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::WriteZero))
    }
}

/// Doorbell datagrams taken by one [`doorbell_drain`] call at most.
pub(crate) const DOORBELL_BATCH: usize = 16;

/// `recvmmsg(2)` of up to [`DOORBELL_BATCH`] doorbell datagrams with
/// `MSG_DONTWAIT` (per call, as for [`doorbell_ring`]): one system call
/// whatever the number queued. Returns how many it took; `WouldBlock` when
/// none was queued, `UnexpectedEof` when the peer closed its end (or sent
/// an empty datagram, which reads the same).
pub(crate) fn doorbell_drain(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut bytes = [[0u8; 8]; DOORBELL_BATCH];
    let mut iov = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; DOORBELL_BATCH];
    // SAFETY: mmsghdr is plain old data; all-zero (no name, no iov, no control) is valid.
    let mut msgs: [libc::mmsghdr; DOORBELL_BATCH] = unsafe { std::mem::zeroed() };
    for ((m, v), b) in msgs.iter_mut().zip(iov.iter_mut()).zip(bytes.iter_mut()) {
        *v = libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        };
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs` holds DOORBELL_BATCH headers, each naming one live,
    // writable 8-byte iovec; no timeout pointer.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            DOORBELL_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    let n = cvt(r)? as usize;
    // End of stream reads as an empty message; ours are never empty (a
    // peer that sends empty ones only closes its own channel).
    if n == 0 || msgs[..n.min(DOORBELL_BATCH)].iter().any(|m| m.msg_len == 0) {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    Ok(n)
}

/// What [`socket_kind`] found: `(domain, type, listening)`.
pub(crate) fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32, bool)> {
    let get = |opt: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v`/`len` are a writable int buffer and its size.
        cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(v)
    };
    Ok((
        get(libc::SO_DOMAIN)?,
        get(libc::SO_TYPE)?,
        get(libc::SO_ACCEPTCONN)? != 0,
    ))
}

/// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: what a hostile
/// guest may do to a memfd it shared (tests play it).
#[cfg(test)]
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a borrowed, open descriptor; no pointers.
    cvt(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    })
    .map(drop)
}

// ------------------------------------------------------------ poll, epoll ---

/// `ppoll(2)` on `fds` with an optional timeout (`None` = forever).
/// Returns the number of ready entries; `EINTR` is returned to the caller.
pub(crate) fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds; `tsp` is null or
    // points at a live timespec; no signal mask.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tsp,
            ptr::null(),
        )
    };
    cvt(r).map(|r| r as usize)
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl(2)`: `op` on `fd` with `events` and the 64-bit `token`.
pub(crate) fn epoll_ctl(
    epfd: BorrowedFd<'_>,
    op: libc::c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) }).map(drop)
}

/// `epoll_wait(2)` into `events`; returns how many entries were filled.
pub(crate) fn epoll_wait(
    epfd: BorrowedFd<'_>,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `events` is a writable array of at least `max` entries.
    let r = unsafe {
        libc::epoll_wait(
            epfd.as_raw_fd(),
            events.as_mut_ptr(),
            max,
            timeout_ms(timeout),
        )
    };
    cvt(r).map(|r| r as usize)
}

// ----------------------------------------------------------- unix sockets ---

/// Builds a `sockaddr_un` for a filesystem path.
fn sockaddr_un(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unusable unix socket path",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// `socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK)`.
pub(crate) fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    owned(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK)`.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded and returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `bind(2)` then `listen(2)` on a filesystem path.
pub(crate) fn bind_listen(fd: BorrowedFd<'_>, path: &Path, backlog: i32) -> io::Result<()> {
    let (addr, len) = sockaddr_un(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` meaningful bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    // SAFETY: plain syscall on a borrowed, bound socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// `connect(2)` to a filesystem path (`EINPROGRESS` is not expected for AF_UNIX).
pub(crate) fn connect(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let (addr, len) = sockaddr_un(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` meaningful bytes.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })
    .map(drop)
}

/// `accept4(2)` with `SOCK_CLOEXEC | SOCK_NONBLOCK`; `WouldBlock` when none is pending.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address buffers are allowed (peer address not wanted).
    owned(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })
}

/// `getsockopt(SOL_SOCKET, SO_PEERCRED)`: `(pid, uid, gid)` of the peer at connect time.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred`/`len` are a writable ucred buffer and its size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// `SO_PEERPIDFD` (Linux 6.5+), where this architecture uses the generic value.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
))]
const SO_PEERPIDFD: libc::c_int = 77;

/// `getsockopt(SOL_SOCKET, SO_PEERPIDFD)`: a pidfd for the peer process,
/// race-free against pid reuse. `ENOPROTOOPT` on older kernels.
pub(crate) fn peer_pidfd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    {
        let mut pidfd: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `pidfd`/`len` are a writable int buffer and its size.
        cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERPIDFD,
                (&mut pidfd as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        owned(pidfd)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )))]
    {
        let _ = fd;
        Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT))
    }
}

/// `pidfd_open(2)`.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    owned(r as libc::c_int)
}

/// Maximum number of descriptors carried by one control message.
pub(crate) const MAX_FDS: usize = 32;

/// Control-message buffer for [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 256]);

/// `sendmsg(2)` of `iov` with `fds` attached as `SCM_RIGHTS`,
/// `MSG_DONTWAIT | MSG_NOSIGNAL` (never blocks, never raises SIGPIPE).
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    iov: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_FDS || iov.len() > 4 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; 4];
    for (v, s) in iovecs.iter_mut().zip(iov) {
        *v = libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        };
    }
    let mut cmsg = CmsgBuf([0; 256]);
    // SAFETY: a msghdr of zeros is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovecs.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if !fds.is_empty() {
        let payload = (fds.len() * size_of::<RawFd>()) as libc::c_uint;
        // SAFETY: CMSG_SPACE is pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        debug_assert!(space <= cmsg.0.len());
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes of aligned, zeroed
        // buffer, enough for one header with `payload` bytes of data.
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` points at live iovecs and control data built above.
    cvt_size(unsafe {
        libc::sendmsg(
            sock.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// What [`recv_with_fds`] received.
pub(crate) struct Received {
    /// Bytes written into the caller's buffer (0 = end of stream).
    pub(crate) len: usize,
    /// The message did not fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
    /// Some descriptors were dropped by the kernel (`MSG_CTRUNC`).
    pub(crate) ctruncated: bool,
    /// The descriptors that arrived, now owned by us.
    pub(crate) fds: Vec<OwnedFd>,
}

/// `recvmsg(2)` into two buffers (a fixed header, then the body) with
/// `MSG_DONTWAIT | MSG_CMSG_CLOEXEC`, taking ownership of every
/// `SCM_RIGHTS` descriptor that arrived (they close on drop whatever the
/// caller decides). `WouldBlock` when nothing is queued.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    head: &mut [u8],
    body: &mut [u8],
) -> io::Result<Received> {
    let mut iov = [
        libc::iovec {
            iov_base: head.as_mut_ptr().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        },
    ];
    let mut cmsg = CmsgBuf([0; 256]);
    // SAFETY: a msghdr of zeros is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len() as _;
    // SAFETY: `msg` names two writable iovecs over `head`/`body` and a writable control buffer.
    let len = cvt_size(unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    })?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg.msg_control`/`msg_controllen`; the CMSG_*
    // helpers walk only within it, and every SCM_RIGHTS entry carries
    // descriptors that are now ours to own.
    unsafe {
        let mut hdr = libc::CMSG_FIRSTHDR(&msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
                let bytes = ((*hdr).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            hdr = libc::CMSG_NXTHDR(&msg, hdr);
        }
    }
    Ok(Received {
        len,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        ctruncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        fds,
    })
}

/// `chmod(2)` of a path.
pub(crate) fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

// ------------------------------------------------------------- processes ---

/// `geteuid(2)`.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: always succeeds, no arguments.
    unsafe { libc::geteuid() }
}

/// `getegid(2)`.
pub(crate) fn getegid() -> u32 {
    // SAFETY: always succeeds, no arguments.
    unsafe { libc::getegid() }
}

/// Largest number of remote segments handed to one `process_vm_*` call.
pub(crate) const VM_IOV_BATCH: usize = 64;

/// One remote segment of a `process_vm_*` call: `(address, length)` in the
/// other process. Kept as integers: it is never dereferenced here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteSeg {
    pub(crate) addr: u64,
    pub(crate) len: usize,
}

/// Fills the remote iovec array from `segs`.
fn remote_iovecs(segs: &[RemoteSeg], out: &mut [libc::iovec; VM_IOV_BATCH]) -> io::Result<usize> {
    if segs.len() > VM_IOV_BATCH {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (o, s) in out.iter_mut().zip(segs) {
        let base =
            usize::try_from(s.addr).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
        *o = libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: s.len,
        };
    }
    Ok(segs.len())
}

/// `process_vm_readv(2)`: reads the remote segments `segs` of process `pid`
/// into `dst` (one local iovec). Returns bytes transferred (may be short).
pub(crate) fn process_vm_read(pid: i32, segs: &[RemoteSeg], dst: &mut [u8]) -> io::Result<usize> {
    let mut riov = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; VM_IOV_BATCH];
    let n = remote_iovecs(segs, &mut riov)?;
    let liov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    // SAFETY: the local iovec names `dst`, writable; remote iovecs are only
    // interpreted by the kernel in the other address space (faults -> EFAULT).
    cvt_size(unsafe { libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), n as libc::c_ulong, 0) })
}

/// `process_vm_writev(2)`: writes `src` (one local iovec) into the remote
/// segments `segs` of process `pid`. Returns bytes transferred (may be short).
pub(crate) fn process_vm_write(pid: i32, segs: &[RemoteSeg], src: &[u8]) -> io::Result<usize> {
    let mut riov = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; VM_IOV_BATCH];
    let n = remote_iovecs(segs, &mut riov)?;
    let liov = libc::iovec {
        iov_base: src.as_ptr() as *mut libc::c_void,
        iov_len: src.len(),
    };
    // SAFETY: the local iovec names `src`, only read by the kernel; remote
    // iovecs are interpreted in the other address space (faults -> EFAULT).
    cvt_size(unsafe {
        libc::process_vm_writev(pid, &liov, 1, riov.as_ptr(), n as libc::c_ulong, 0)
    })
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    /// Every head, body and tail combination of the wide copies: each
    /// alignment of the shared side against the private one, lengths
    /// around the 4-access loop, and nothing written outside the range.
    #[test]
    fn wide_copies_are_exact_at_every_alignment() {
        let src: Vec<u8> = (0..512u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in (0..=4 * WIDE + 3).chain([200, 255, 256, 257, 300]) {
            for shared_at in 0..WIDE + 1 {
                for private_at in 0..3 {
                    let mut shm = vec![0xeeu8; 600];
                    let data = &src[private_at..private_at + len];
                    // SAFETY: `shared_at + len <= 600`, a live local buffer.
                    unsafe { copy_to_shared(shm.as_mut_ptr().add(shared_at), data) };
                    assert_eq!(&shm[shared_at..shared_at + len], data, "{len} {shared_at}");
                    assert!(shm[..shared_at].iter().all(|&b| b == 0xee), "before");
                    assert!(shm[shared_at + len..].iter().all(|&b| b == 0xee), "after");
                    let mut back = vec![0x11u8; len + 2 * private_at];
                    let out = &mut back[private_at..private_at + len];
                    // SAFETY: as above.
                    unsafe { copy_from_shared(shm.as_ptr().add(shared_at), out) };
                    assert_eq!(
                        &back[private_at..private_at + len],
                        data,
                        "{len} {shared_at}"
                    );
                    assert!(back[..private_at].iter().all(|&b| b == 0x11));
                    assert!(back[private_at + len..].iter().all(|&b| b == 0x11));
                }
            }
        }
    }
}
