//! The thin unsafe edge of the NIC layer: every libc call the AF_PACKET NIC
//! makes lives here.
//!
//! Each wrapper is a few lines, names the system call it makes, returns
//! [`io::Result`] and hands out OS resources as owned types ([`OwnedFd`];
//! the ring's mapping is mx-proto's
//! [`SharedMapping`](mx_proto::platform::SharedMapping)) that release them
//! on drop. The only other `unsafe` of the NIC layer is the receive-ring
//! walker in `packet.rs`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Converts a `-1`-on-error libc return value into an [`io::Result`].
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`.
///
/// Protocol 0: the socket receives nothing until [`bind_packet`] names the
/// EtherType and the interface, so no frame of another interface can slip
/// in while the ring is being set up.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: the kernel just returned `fd` to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` naming `iface`, or `InvalidInput` if the name cannot be one.
fn ifreq(iface: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data (a name and a union of integers,
    // addresses and a pointer); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{iface:?} is not a valid interface name"),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// `ioctl(request)` with an `ifreq` for `iface`; returns the filled request.
fn ifreq_ioctl(fd: BorrowedFd<'_>, iface: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let mut req = ifreq(iface)?;
    // SAFETY: `req` is a valid, writable ifreq for the duration of the call;
    // the SIOCGIF* requests used here only fill its union.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req) })?;
    Ok(req)
}

/// `ioctl(SIOCGIFINDEX)`: the interface index of `iface`.
pub(super) fn if_index(fd: BorrowedFd<'_>, iface: &str) -> io::Result<i32> {
    let req = ifreq_ioctl(fd, iface, libc::SIOCGIFINDEX)?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote `ifru_ifindex`.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex })
}

/// `ioctl(SIOCGIFMTU)`: the MTU of `iface`.
pub(super) fn if_mtu(fd: BorrowedFd<'_>, iface: &str) -> io::Result<u32> {
    let req = ifreq_ioctl(fd, iface, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `ioctl(SIOCGIFHWADDR)`: `(ARPHRD_* type, first 6 address bytes)` of `iface`.
pub(super) fn if_hwaddr(fd: BorrowedFd<'_>, iface: &str) -> io::Result<(u16, [u8; 6])> {
    let req = ifreq_ioctl(fd, iface, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote `ifru_hwaddr`.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok((sa.sa_family, mac))
}

/// `bind(2)` of a packet socket to EtherType `ethertype` (host order; stored
/// big-endian as the kernel wants) on interface `ifindex`.
pub(super) fn bind_packet(fd: BorrowedFd<'_>, ethertype: u16, ifindex: i32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ethertype.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: `addr` is a valid sockaddr_ll of the length passed.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `setsockopt(2)` of a plain-old-data option value.
///
/// # Safety
/// `T` must be the option's C type (plain old data, no pointers the kernel
/// would follow).
unsafe fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a readable `T` of the length passed; the caller
    // promises `T` is what the kernel expects for this option.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `setsockopt(level, name)` of an `int` option.
pub(super) fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: every option passed here is an `int` option.
    unsafe { setsockopt(fd, level, name, &value) }
}

/// `setsockopt(SOL_PACKET, PACKET_RX_RING)` with a `tpacket_req3` (the
/// `tpacket_req` prefix of it is what `TPACKET_V2` reads).
pub(super) fn set_rx_ring(fd: BorrowedFd<'_>, req: &libc::tpacket_req3) -> io::Result<()> {
    // SAFETY: PACKET_RX_RING takes a tpacket_req3 (V3) or its tpacket_req
    // prefix (V1/V2; the kernel reads only what the version needs).
    unsafe { setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, req) }
}

/// `getsockopt(SOL_PACKET, PACKET_STATISTICS)`: `(packets, drops)` since the
/// last call (the kernel resets the counters on read).
pub(super) fn packet_stats(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut st = MaybeUninit::<libc::tpacket_stats_v3>::zeroed();
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st`/`len` are a writable tpacket_stats_v3 and its size; the
    // kernel writes at most `len` bytes (a tpacket_stats prefix before V3).
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zero-initialised, then (partly) written by the kernel: every
    // field is an initialised integer.
    let st = unsafe { st.assume_init() };
    Ok((st.tp_packets, st.tp_drops))
}

/// `sendmmsg(2)` with `MSG_DONTWAIT`: sends the messages in order, returns
/// how many left (fewer than `msgs.len()` when one failed; an error only if
/// the first failed).
///
/// `msgs` carries raw pointers (iovec arrays and the bytes they name) that
/// the caller built; the kernel only *reads* through them, with
/// `copy_from_user`, so a stale or wild pointer fails the message with
/// `EFAULT` (or sends whatever bytes are mapped there) and cannot corrupt
/// this process. Keeping them valid is a correctness duty of the caller.
pub(super) fn sendmmsg(fd: BorrowedFd<'_>, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let n = msgs.len().min(libc::c_uint::MAX as usize) as libc::c_uint;
    // SAFETY: `msgs` is a writable array of `n` mmsghdrs (the kernel writes
    // their `msg_len`); every pointer inside is only read by the kernel with
    // fault-checked user copies (see above).
    let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n, libc::MSG_DONTWAIT) };
    cvt(r).map(|r| r as usize)
}

/// `poll(2)` on one descriptor for `events`; `Ok(true)` if it became ready
/// (or reported an error condition) within `timeout` (`None` = forever).
pub(super) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let ms = match timeout {
        None => -1,
        Some(d) => d
            .as_nanos()
            .div_ceil(1_000_000)
            .min(libc::c_int::MAX as u128) as libc::c_int,
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable pollfd.
    match cvt(unsafe { libc::poll(&mut p, 1, ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `setns(fd, CLONE_NEWNET)`: moves the *calling thread* into the network
/// namespace `ns` (a `/run/netns/NAME` or `/proc/PID/ns/net` file).
pub(super) fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor; affects only this thread.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// One frame of a [`MmsgBatch`]: up to three byte ranges sent back to back
/// (header, payload, padding), as `(address, length)` pairs.
///
/// Addresses are integers so that the queue holding them stays `Send`; they
/// are turned back into pointers only for the kernel (see [`sendmmsg`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Gather {
    /// The ranges; only the first `n` count.
    pub(super) parts: [(usize, usize); 3],
    /// How many ranges are used.
    pub(super) n: usize,
}

/// The `iovec`/`mmsghdr` arrays of one `sendmmsg(2)`, kept to avoid an
/// allocation per flush; rebuilt from [`Gather`]s at every send.
pub(super) struct MmsgBatch {
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the arrays hold raw pointers only between their rebuild and the
// system call inside `send`, which runs on the owning thread; between calls
// they are dead values that nothing dereferences.
unsafe impl Send for MmsgBatch {}

impl MmsgBatch {
    /// Arrays for up to `cap` frames.
    pub(super) fn new(cap: usize) -> Self {
        MmsgBatch {
            iov: Vec::with_capacity(cap * 3),
            msgs: Vec::with_capacity(cap),
        }
    }

    /// [`sendmmsg`] of `frames`; returns how many left.
    pub(super) fn send(&mut self, fd: BorrowedFd<'_>, frames: &[Gather]) -> io::Result<usize> {
        self.iov.clear();
        for f in frames {
            for &(addr, len) in &f.parts[..f.n] {
                self.iov.push(libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: len,
                });
            }
        }
        self.msgs.clear();
        let mut at = 0;
        for f in frames {
            // SAFETY: msghdr/mmsghdr are plain old data; all-zero is valid
            // (no name, no control, no flags).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = self.iov[at..].as_mut_ptr();
            m.msg_hdr.msg_iovlen = f.n as _;
            at += f.n;
            self.msgs.push(m);
        }
        sendmmsg(fd, &mut self.msgs)
    }
}
