//! The thin unsafe edge of the Xen platform: the Linux uapi devices
//! `/dev/xen/gntalloc`, `/dev/xen/gntdev` and `/dev/xen/evtchn`, and one
//! hypercall through `/dev/xen/privcmd` (the status of an event channel).
//!
//! Each ioctl is one typed wrapper that names it and carries one `// SAFETY:`
//! line. The argument structures are `#[repr(C)]` copies of the uapi headers
//! (`include/uapi/xen/{gntalloc,gntdev,evtchn}.h`); their sizes are checked
//! at compile time because the size is part of the ioctl number. Variable
//! length arguments (`gref_ids[1]`, `refs[1]`) are built in an 8-byte-aligned
//! buffer: the fixed header, then `count` entries.
//!
//! Mappings of device memory are owned ([`DevMapping`]) and unmapped on drop.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

/// `/dev/xen/gntalloc`: grant pages of this domain to another.
pub(crate) const DEV_GNTALLOC: &str = "/dev/xen/gntalloc";
/// `/dev/xen/gntdev`: map pages another domain granted to us.
pub(crate) const DEV_GNTDEV: &str = "/dev/xen/gntdev";
/// `/dev/xen/evtchn`: event channels.
pub(crate) const DEV_EVTCHN: &str = "/dev/xen/evtchn";
/// `/dev/xen/privcmd`: hypercalls from user space (Dom0's toolstack uses it).
pub(crate) const DEV_PRIVCMD: &str = "/dev/xen/privcmd";
/// `/dev/xen/hypercall`: pages safe to hand to a hypercall (Linux 4.18+).
pub(crate) const DEV_HYPERCALL: &str = "/dev/xen/hypercall";

/// `_IOC(_IOC_NONE, ty, nr, size)` as Linux encodes it on x86 and arm
/// (direction bits 30-31 are 0 for `_IOC_NONE`; size in bits 16-29).
const fn ioc_none(ty: u8, nr: u8, size: usize) -> libc::Ioctl {
    (((size as u32) << 16) | ((ty as u32) << 8) | nr as u32) as libc::Ioctl
}

// ------------------------------------------------------------ uapi structs ---

/// `struct ioctl_gntalloc_alloc_gref` without its `gref_ids[1]` tail.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntallocAllocHead {
    domid: u16,
    flags: u16,
    count: u32,
    index: u64,
}

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntallocDealloc {
    index: u64,
    count: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` without its `refs[1]` tail.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntdevMapHead {
    count: u32,
    pad: u32,
    index: u64,
}

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntdevGrantRef {
    domid: u32,
    gref: u32,
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GntdevUnmap {
    index: u64,
    count: u32,
    pad: u32,
}

/// The foreign half of `gntdev_grant_copy_segment`'s union.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GrantForeign {
    /// Grant reference.
    pub(crate) gref: u32,
    /// Byte offset in the granted page.
    pub(crate) offset: u16,
    /// Granting domain.
    pub(crate) domid: u16,
}

/// `gntdev_grant_copy_segment.{source,dest}`: a local address or a grant.
#[repr(C)]
#[derive(Clone, Copy)]
union GrantPtr {
    virt: *mut libc::c_void,
    foreign: GrantForeign,
}

/// `struct gntdev_grant_copy_segment`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GrantCopySegment {
    source: GrantPtr,
    dest: GrantPtr,
    len: u16,
    flags: u16,
    status: i16,
}

/// `GNTCOPY_source_gref`: the source is a grant.
const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the destination is a grant.
const GNTCOPY_DEST_GREF: u16 = 1 << 1;

impl GrantCopySegment {
    /// Copy `len` bytes from a foreign grant into local memory at `dst`.
    /// The pointer is only handed to the kernel by [`gntdev_grant_copy`],
    /// whose contract says it must be valid.
    pub(crate) fn from_grant(src: GrantForeign, dst: *mut u8, len: u16) -> Self {
        GrantCopySegment {
            source: GrantPtr { foreign: src },
            dest: GrantPtr { virt: dst.cast() },
            len,
            flags: GNTCOPY_SOURCE_GREF,
            status: 0,
        }
    }

    /// Copy `len` bytes from local memory at `src` into a foreign grant.
    pub(crate) fn to_grant(src: *const u8, dst: GrantForeign, len: u16) -> Self {
        GrantCopySegment {
            source: GrantPtr {
                virt: src as *mut libc::c_void,
            },
            dest: GrantPtr { foreign: dst },
            len,
            flags: GNTCOPY_DEST_GREF,
            status: 0,
        }
    }

    /// The hypervisor's `GNTST_*` status after the copy (0 is success).
    pub(crate) fn status(&self) -> i16 {
        self.status
    }
}

/// `struct ioctl_gntdev_grant_copy`.
#[repr(C)]
struct GntdevGrantCopy {
    count: libc::c_uint,
    segments: *mut GrantCopySegment,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
struct EvtchnBindInterdomain {
    remote_domain: libc::c_uint,
    remote_port: libc::c_uint,
}

/// `struct ioctl_evtchn_bind_unbound_port`, `_unbind` and `_notify`: one port or domain.
#[repr(C)]
struct EvtchnOne {
    value: libc::c_uint,
}

// The sizes are part of the ioctl numbers: keep them equal to the C ones.
/// `struct privcmd_hypercall` (`include/uapi/xen/privcmd.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `struct evtchn_status` (Xen's `public/event_channel.h`), with its
/// union as the interdomain member (the largest; the unbound member's
/// domain id sits at the same place).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EvtchnStatusArg {
    dom: u16,
    _pad: u16,
    port: u32,
    status: u32,
    vcpu: u32,
    remote_dom: u16,
    _pad2: u16,
    remote_port: u32,
}

const _: () = assert!(size_of::<PrivcmdHypercall>() == 48);
const _: () = assert!(size_of::<EvtchnStatusArg>() == 24);
const _: () = assert!(size_of::<GntallocAllocHead>() + 8 == 24);
const _: () = assert!(size_of::<GntallocDealloc>() == 16);
const _: () = assert!(size_of::<GntdevMapHead>() + size_of::<GntdevGrantRef>() == 24);
const _: () = assert!(size_of::<GntdevUnmap>() == 16);
const _: () = assert!(size_of::<GrantCopySegment>() == 24);
const _: () = assert!(size_of::<GntdevGrantCopy>() == 16);
const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 8);
const _: () = assert!(size_of::<EvtchnOne>() == 4);

const IOCTL_GNTALLOC_ALLOC_GREF: libc::Ioctl = ioc_none(b'G', 5, 24);
const IOCTL_GNTALLOC_DEALLOC_GREF: libc::Ioctl = ioc_none(b'G', 6, 16);
const IOCTL_GNTDEV_MAP_GRANT_REF: libc::Ioctl = ioc_none(b'G', 0, 24);
const IOCTL_GNTDEV_UNMAP_GRANT_REF: libc::Ioctl = ioc_none(b'G', 1, 16);
const IOCTL_GNTDEV_GRANT_COPY: libc::Ioctl = ioc_none(b'G', 8, 16);
const IOCTL_EVTCHN_BIND_INTERDOMAIN: libc::Ioctl = ioc_none(b'E', 1, 8);
const IOCTL_EVTCHN_BIND_UNBOUND_PORT: libc::Ioctl = ioc_none(b'E', 2, 4);
const IOCTL_EVTCHN_UNBIND: libc::Ioctl = ioc_none(b'E', 3, 4);
const IOCTL_EVTCHN_NOTIFY: libc::Ioctl = ioc_none(b'E', 4, 4);
const IOCTL_PRIVCMD_HYPERCALL: libc::Ioctl = ioc_none(b'P', 0, 48);

/// `__HYPERVISOR_event_channel_op`.
const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `EVTCHNOP_status`.
const EVTCHNOP_STATUS: u64 = 5;
/// `DOMID_SELF`.
const DOMID_SELF: u16 = 0x7ff0;

/// `GNTALLOC_FLAG_WRITABLE`.
const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// Largest number of pages one grant ioctl handles here (the argument
/// buffer stays below 1 MiB; gntdev's own default limit is 65536).
pub(crate) const MAX_GRANT_BATCH: usize = 1 << 16;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// ----------------------------------------------------------------- devices ---

/// `open(2)` of a device, `O_RDWR | O_CLOEXEC`, plus `O_NONBLOCK` if asked.
pub(crate) fn open_dev(path: &str, nonblock: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags) })?;
    // SAFETY: the kernel just returned `fd` and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A header plus `count` entries, in an 8-byte-aligned buffer.
struct ArgBuf {
    words: Vec<u64>,
}

impl ArgBuf {
    fn new<H: Copy, E: Copy>(head: H, entries: &[E]) -> Self {
        let bytes = size_of::<H>() + entries.len().max(1) * size_of::<E>();
        let mut words = vec![0u64; bytes.div_ceil(8)];
        let p = words.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer holds `bytes` bytes, 8-aligned; H and E are
        // plain `repr(C)` data whose alignment is at most 8; the head fills
        // the first size_of::<H>() bytes and the entries follow it.
        unsafe {
            p.cast::<H>().write(head);
            let e = p.add(size_of::<H>()).cast::<E>();
            for (i, v) in entries.iter().enumerate() {
                e.add(i).write_unaligned(*v);
            }
        }
        ArgBuf { words }
    }

    fn ptr(&mut self) -> *mut libc::c_void {
        self.words.as_mut_ptr().cast()
    }

    fn head<H: Copy>(&self) -> H {
        // SAFETY: built by `new` with a head of type H at offset 0.
        unsafe { self.words.as_ptr().cast::<H>().read() }
    }

    fn entry<H, E: Copy>(&self, i: usize) -> E {
        // SAFETY: `new` sized the buffer for at least `i + 1` entries after
        // the head (callers pass indices below the count they built with).
        unsafe {
            self.words
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<H>() + i * size_of::<E>())
                .cast::<E>()
                .read_unaligned()
        }
    }
}

/// `IOCTL_GNTALLOC_ALLOC_GREF`: grants `count` fresh zeroed pages to
/// `domid`, writable; returns the mmap offset and the grant references.
pub(crate) fn gntalloc_alloc(
    fd: BorrowedFd<'_>,
    domid: u16,
    count: usize,
) -> io::Result<(u64, Vec<u32>)> {
    if count == 0 || count > MAX_GRANT_BATCH {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let head = GntallocAllocHead {
        domid,
        flags: GNTALLOC_FLAG_WRITABLE,
        count: count as u32,
        index: 0,
    };
    let mut buf = ArgBuf::new(head, &vec![0u32; count]);
    // SAFETY: `buf` holds the header and `count` gref slots the kernel fills.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_GNTALLOC_ALLOC_GREF, buf.ptr()) })?;
    let index = buf.head::<GntallocAllocHead>().index;
    let refs = (0..count)
        .map(|i| buf.entry::<GntallocAllocHead, u32>(i))
        .collect();
    Ok((index, refs))
}

/// `IOCTL_GNTALLOC_DEALLOC_GREF`: stops granting the pages at `index`
/// (each is freed once the grantee has unmapped it).
pub(crate) fn gntalloc_dealloc(fd: BorrowedFd<'_>, index: u64, count: usize) -> io::Result<()> {
    let mut op = GntallocDealloc {
        index,
        count: count as u32,
    };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_GNTALLOC_DEALLOC_GREF, &mut op) }).map(drop)
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF`: registers `refs` of `domid` for mapping;
/// returns the mmap offset of the batch.
pub(crate) fn gntdev_map(fd: BorrowedFd<'_>, domid: u16, refs: &[u32]) -> io::Result<u64> {
    if refs.is_empty() || refs.len() > MAX_GRANT_BATCH {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let entries: Vec<GntdevGrantRef> = refs
        .iter()
        .map(|&gref| GntdevGrantRef {
            domid: u32::from(domid),
            gref,
        })
        .collect();
    let head = GntdevMapHead {
        count: refs.len() as u32,
        pad: 0,
        index: 0,
    };
    let mut buf = ArgBuf::new(head, &entries);
    // SAFETY: `buf` holds the header and `count` grant refs the kernel reads.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, buf.ptr()) })?;
    Ok(buf.head::<GntdevMapHead>().index)
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`: forgets the batch at `index` (its
/// grants are unmapped when the last mapping of it goes).
pub(crate) fn gntdev_unmap(fd: BorrowedFd<'_>, index: u64, count: usize) -> io::Result<()> {
    let mut op = GntdevUnmap {
        index,
        count: count as u32,
        pad: 0,
    };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut op) }).map(drop)
}

/// `IOCTL_GNTDEV_GRANT_COPY`: the hypervisor copies every segment; each
/// segment's [`status`](GrantCopySegment::status) tells how it went.
///
/// # Safety
/// Every local address in `segs` must be valid for its segment's length:
/// readable for a local source, writable for a local destination.
pub(crate) unsafe fn gntdev_grant_copy(
    fd: BorrowedFd<'_>,
    segs: &mut [GrantCopySegment],
) -> io::Result<()> {
    let mut op = GntdevGrantCopy {
        count: segs.len() as libc::c_uint,
        segments: segs.as_mut_ptr(),
    };
    // SAFETY: `op` names `segs`, writable (statuses); local addresses are
    // valid by this function's contract.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_GNTDEV_GRANT_COPY, &mut op) }).map(drop)
}

/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: a new port that `remote_domain` may bind.
pub(crate) fn evtchn_bind_unbound(fd: BorrowedFd<'_>, remote_domain: u16) -> io::Result<u32> {
    let mut op = EvtchnOne {
        value: remote_domain.into(),
    };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_EVTCHN_BIND_UNBOUND_PORT, &mut op) })
        .map(|p| p as u32)
}

/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: binds the other end of `remote_port`
/// of `remote_domain`; returns the local port.
pub(crate) fn evtchn_bind_interdomain(
    fd: BorrowedFd<'_>,
    remote_domain: u16,
    remote_port: u32,
) -> io::Result<u32> {
    let mut op = EvtchnBindInterdomain {
        remote_domain: remote_domain.into(),
        remote_port,
    };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut op) })
        .map(|p| p as u32)
}

/// `IOCTL_EVTCHN_NOTIFY`: signals the remote end of local `port`.
pub(crate) fn evtchn_notify(fd: BorrowedFd<'_>, port: u32) -> io::Result<()> {
    let mut op = EvtchnOne { value: port };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_EVTCHN_NOTIFY, &mut op) }).map(drop)
}

/// `IOCTL_EVTCHN_UNBIND`: closes local `port`.
pub(crate) fn evtchn_unbind(fd: BorrowedFd<'_>, port: u32) -> io::Result<()> {
    let mut op = EvtchnOne { value: port };
    // SAFETY: `op` is a valid argument structure for this ioctl.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_EVTCHN_UNBIND, &mut op) }).map(drop)
}

/// `read(2)` of pending ports from an evtchn descriptor (non-blocking:
/// `WouldBlock` when none is pending). Returns how many were filled.
pub(crate) fn evtchn_read(fd: BorrowedFd<'_>, ports: &mut [u32]) -> io::Result<usize> {
    // SAFETY: `ports` is writable for its whole length in bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            ports.as_mut_ptr().cast(),
            std::mem::size_of_val(ports),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize / size_of::<u32>())
}

/// `write(2)` of ports to an evtchn descriptor: unmasks them.
pub(crate) fn evtchn_unmask(fd: BorrowedFd<'_>, ports: &[u32]) -> io::Result<()> {
    // SAFETY: `ports` is readable for its whole length in bytes.
    let n = unsafe {
        libc::write(
            fd.as_raw_fd(),
            ports.as_ptr().cast(),
            std::mem::size_of_val(ports),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------- privcmd ---

/// What Xen says of one of our event-channel ports (`EVTCHNSTAT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortStatus {
    /// Not in use (`EVTCHNSTAT_closed`).
    Closed,
    /// Waiting for domain `remote` to bind it: an interdomain channel whose
    /// other end was closed reverts to this (`EVTCHNSTAT_unbound`).
    Unbound { remote: u16 },
    /// Connected to `port` of domain `dom` (`EVTCHNSTAT_interdomain`).
    Interdomain { dom: u16, port: u32 },
    /// Bound to an IRQ or IPI (`EVTCHNSTAT_pirq`, `_virq`, `_ipi`).
    Other(u32),
}

/// `/dev/xen/privcmd` with a page to pass hypercall arguments in: from
/// `/dev/xen/hypercall` where the kernel has it (the pages it guarantees a
/// hypercall can read on every kind of Dom0), else a locked anonymous page
/// (enough for a PV Dom0, which the hypervisor reads through the caller's
/// own page tables).
#[derive(Debug)]
pub(crate) struct Privcmd {
    fd: OwnedFd,
    buf: DevMapping,
}

impl Privcmd {
    /// Opens the devices (Dom0 only: elsewhere `/dev/xen/privcmd` is
    /// absent or refuses the hypercall).
    pub(crate) fn open() -> io::Result<Self> {
        let fd = open_dev(DEV_PRIVCMD, false)?;
        let page = 4096;
        let buf = match open_dev(DEV_HYPERCALL, false) {
            // The mapping keeps the pages; the descriptor may go.
            Ok(hfd) => DevMapping::map(hfd.as_fd(), 0, page)?,
            Err(_) => DevMapping::anon_locked(page)?,
        };
        Ok(Privcmd { fd, buf })
    }

    /// `EVTCHNOP_status` of our own `port`.
    pub(crate) fn port_status(&self, port: u32) -> io::Result<PortStatus> {
        let arg = self.buf.as_ptr().cast::<EvtchnStatusArg>();
        // SAFETY: the buffer is a page of ours, page-aligned (so aligned for
        // the struct) and longer than it; nothing else writes it while we
        // hold `&self` in this call.
        unsafe {
            arg.write_volatile(EvtchnStatusArg {
                dom: DOMID_SELF,
                port,
                ..Default::default()
            })
        };
        let mut call = PrivcmdHypercall {
            op: HYPERVISOR_EVENT_CHANNEL_OP,
            arg: [EVTCHNOP_STATUS, arg as u64, 0, 0, 0],
        };
        // SAFETY: `call` is a valid argument structure; its pointer argument
        // names our buffer, which outlives the call; the hypervisor writes
        // only the struct's OUT fields.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut call) })?;
        // SAFETY: as for the write; the hypercall returned.
        let st = unsafe { arg.read_volatile() };
        Ok(match st.status {
            0 => PortStatus::Closed,
            1 => PortStatus::Unbound {
                remote: st.remote_dom,
            },
            2 => PortStatus::Interdomain {
                dom: st.remote_dom,
                port: st.remote_port,
            },
            other => PortStatus::Other(other),
        })
    }
}

// ---------------------------------------------------------------- mappings ---

/// An owned `MAP_SHARED`, read-write mapping of device memory (granted or
/// grant-mapped pages); unmapped on drop.
#[derive(Debug)]
pub(crate) struct DevMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, not tied to a thread; every
// access through it goes through raw, volatile copies or atomics.
unsafe impl Send for DevMapping {}
// SAFETY: as above; `&DevMapping` exposes only a raw pointer and its length.
unsafe impl Sync for DevMapping {}

impl DevMapping {
    /// `mmap(2)` of `len` bytes of `fd` at `offset`, read-write, shared.
    pub(crate) fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL); it aliases
        // no Rust object; `fd`, `len` and `off` are checked by the kernel.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(DevMapping { ptr, len })
    }

    /// A private anonymous mapping of `len` bytes, locked in memory.
    pub(crate) fn anon_locked(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel; it aliases
        // no Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(DevMapping { ptr, len })
    }

    /// Start of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for DevMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and still own;
        // nothing can use it after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
