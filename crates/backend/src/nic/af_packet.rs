//! Our AF_PACKET NIC: MXoE frames on a real (or veth, or bridge) interface.
//!
//! One `AF_PACKET`/`SOCK_RAW` socket, bound to EtherType 0x86DF and one
//! interface index, so the kernel hands it only MXoE frames of that
//! interface:
//!
//! - **Receive**: a memory-mapped `PACKET_RX_RING` (`TPACKET_V2` frames by
//!   default, `TPACKET_V3` blocks as an option), walked without a system
//!   call: a block (or frame) whose status word has `TP_STATUS_USER` is
//!   ours (Acquire load), its frames are handed to the callback in place,
//!   and it is handed back by storing `TP_STATUS_KERNEL` (Release store).
//!   Frames we sent ourselves (`PACKET_OUTGOING`, if the kernel loops them
//!   back to us) are skipped; `PACKET_IGNORE_OUTGOING` asks it not to.
//!   Kernel drops (ring full) come from `PACKET_STATISTICS`.
//! - **Send**: [`Nic::send`] queues a frame as up to three iovecs (the
//!   header copied into a per-slot buffer, the payload, zero padding to 60
//!   bytes); [`Nic::flush`] sends the whole queue with one `sendmmsg(2)`.
//!   A [`Payload::Shared`] payload is not copied: its iovec points into the
//!   guest-shared mapping (after a bounds check) and the kernel copies it
//!   during `flush`, which is why the trait asks the caller to keep the
//!   mapping alive until then. A [`Payload::Bytes`] payload is copied into
//!   the slot (its borrow ends when `send` returns). `PACKET_QDISC_BYPASS`
//!   skips the qdisc layer (as Open-MX's driver does); partial sends and
//!   `EAGAIN`/`ENOBUFS` are retried a bounded number of times, then the
//!   remaining frames are dropped and counted (MX retransmits).
//!
//! # Which interface to bind: the bridge
//!
//! On a Xen host the physical NIC is enslaved to a bridge (`xenbr0`). The
//! bridge's receive handler takes every frame of its ports before
//! protocol-specific packet sockets see them, so a socket bound to 0x86DF
//! on the *port* (`eth0`) receives nothing. Bind the **bridge**: frames for
//! the bridge's MAC (which, unless set, is one of its ports') are delivered
//! locally on it, and frames sent on it are switched out of the right port.
//! `tests/nic_af_packet.rs` checks both facts.
//!
//! # Ring geometry
//!
//! [`PacketOpts`] sets it. The default is `TPACKET_V2` in 8 blocks of
//! 4 MiB (32 MiB of kernel memory per NIC): one slot of `MTU + 110` bytes
//! rounded up to 16 per frame, 459 slots per block at MTU 9000 (3672 in
//! all), 2595 at MTU 1500; each frame is handed over as soon as it lands.
//! `TPACKET_V3` (same blocks, 1 ms retire timeout) packs frames of any
//! size back to back, but a block reaches user space only when it is full
//! or its retire timer fires, so at low rates every frame waits up to the
//! timeout: measured on veth, a ping-pong costs ~500 us one way with V3
//! against ~6 us with V2, for a similar streaming rate. MX is a latency
//! protocol, hence V2 (`docs/NIC.md` has the numbers).

#![deny(unsafe_code)]

use super::sys::{self, Gather, MmsgBatch};
use super::{Nic, NicStats, Payload};
use mx_proto::platform::SharedMapping as RingMap;
use mxoe_wire::profile::{ProfileKind, WireProfile};
use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The MXoE EtherType.
pub const ETHERTYPE_MXOE: u16 = 0x86DF;
/// Ethernet header length.
const ETH_HLEN: usize = 14;
/// Shortest Ethernet frame without FCS; shorter frames are zero-padded.
pub const ETH_ZLEN: usize = 60;
/// `ARPHRD_ETHER`: the hardware type of an Ethernet interface.
const ARPHRD_ETHER: u16 = 1;
/// Largest send batch (frames per `sendmmsg`).
pub const MAX_TX_BATCH: usize = 256;
/// Zero bytes the padding iovec points at (read only, by the kernel).
static PAD: [u8; ETH_ZLEN] = [0; ETH_ZLEN];

/// Receive-ring layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingVersion {
    /// `TPACKET_V3`: variable-size frames packed into blocks; a block is
    /// handed over when full or when its retire timer fires.
    V3,
    /// `TPACKET_V2`: one fixed slot per frame, handed over at once.
    V2,
}

/// Options of [`PacketNic::open`].
#[derive(Debug, Clone)]
pub struct PacketOpts {
    /// Ring layout.
    pub ring: RingVersion,
    /// Bytes per ring block (a multiple of the page size).
    pub block_size: u32,
    /// Number of ring blocks.
    pub block_count: u32,
    /// `TPACKET_V3` block-retire timeout, in milliseconds (at least 1).
    pub retire_timeout_ms: u32,
    /// `SO_SNDBUF`/`SO_RCVBUF` wanted (`*BUFFORCE` is tried first, which
    /// needs `CAP_NET_ADMIN`; without it the kernel caps at `wmem_max`).
    pub socket_buffer: usize,
    /// Frames queued before [`Nic::send`] flushes implicitly (1..=[`MAX_TX_BATCH`]).
    pub tx_batch: usize,
    /// Retries of a send that failed with `EAGAIN`/`ENOBUFS` before the
    /// rest of the batch is dropped.
    pub tx_retries: u32,
    /// Set `PACKET_QDISC_BYPASS` (hand frames straight to the driver).
    pub qdisc_bypass: bool,
}

impl Default for PacketOpts {
    fn default() -> Self {
        PacketOpts {
            ring: RingVersion::V2,
            block_size: 4 << 20,
            block_count: 8,
            retire_timeout_ms: 1,
            socket_buffer: 8 << 20,
            tx_batch: 64,
            tx_retries: 32,
            qdisc_bypass: true,
        }
    }
}

/// One queued frame: header (and copied `Bytes` payload) in `buf`, an
/// optional zero-copy payload range, zero padding.
struct TxSlot {
    buf: Vec<u8>,
    shared: Option<(usize, usize)>,
    pad: usize,
}

/// A NIC on an `AF_PACKET` socket with a memory-mapped receive ring.
///
/// [`Send`] but not `Sync`: one thread (the backend's loop) drives it.
pub struct PacketNic {
    fd: OwnedFd,
    iface: String,
    ifindex: i32,
    mac: [u8; 6],
    mtu: u32,
    ring: ring::RxRing,
    slots: Vec<TxSlot>,
    queued: usize,
    gathers: Vec<Gather>,
    batch: MmsgBatch,
    tx_retries: u32,
    qdisc_bypass: bool,
    stats: NicStats,
    /// Kernel drops accumulated from `PACKET_STATISTICS` (reset on read).
    kernel_drops: Cell<u64>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Adds the interface name to an OS error.
fn ctx(e: io::Error, what: &str, iface: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} on {iface}: {e}"))
}

impl PacketNic {
    /// Opens `iface` (an Ethernet interface or a bridge, see the module
    /// docs) in the caller's network namespace.
    ///
    /// # Errors
    /// `InvalidInput` for bad options or a non-Ethernet interface; the OS
    /// error of the failing step otherwise (`EPERM` without
    /// `CAP_NET_RAW`, `ENODEV` for an unknown interface), with the
    /// interface named in the message.
    pub fn open(iface: &str, opts: &PacketOpts) -> io::Result<PacketNic> {
        if opts.tx_batch == 0 || opts.tx_batch > MAX_TX_BATCH {
            return Err(invalid(format!(
                "tx_batch must be 1..={MAX_TX_BATCH}, not {}",
                opts.tx_batch
            )));
        }
        if opts.block_size == 0 || opts.block_size & 4095 != 0 || opts.block_count == 0 {
            return Err(invalid(format!(
                "ring blocks must be a positive multiple of 4096 bytes, not {} x {}",
                opts.block_count, opts.block_size
            )));
        }
        let fd = sys::packet_socket().map_err(|e| ctx(e, "socket(AF_PACKET)", iface))?;
        let ifindex =
            sys::if_index(fd.as_fd(), iface).map_err(|e| ctx(e, "SIOCGIFINDEX", iface))?;
        let mtu = sys::if_mtu(fd.as_fd(), iface).map_err(|e| ctx(e, "SIOCGIFMTU", iface))?;
        let (hatype, mac) =
            sys::if_hwaddr(fd.as_fd(), iface).map_err(|e| ctx(e, "SIOCGIFHWADDR", iface))?;
        if hatype != ARPHRD_ETHER {
            return Err(invalid(format!(
                "interface {iface} is not Ethernet (hardware type {hatype})"
            )));
        }
        let version = match opts.ring {
            RingVersion::V2 => 1,
            RingVersion::V3 => 2,
        };
        sys::set_int_opt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, version)
            .map_err(|e| ctx(e, "PACKET_VERSION", iface))?;
        let frame_size = ring::frame_size(opts.ring, mtu);
        if frame_size > opts.block_size {
            return Err(invalid(format!(
                "ring block of {} bytes cannot hold a frame of MTU {mtu}",
                opts.block_size
            )));
        }
        let per_block = opts.block_size / frame_size;
        let req = libc::tpacket_req3 {
            tp_block_size: opts.block_size,
            tp_block_nr: opts.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: per_block * opts.block_count,
            tp_retire_blk_tov: opts.retire_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::set_rx_ring(fd.as_fd(), &req).map_err(|e| ctx(e, "PACKET_RX_RING", iface))?;
        let map_len = opts.block_size as usize * opts.block_count as usize;
        let map =
            RingMap::map_shared(fd.as_fd(), map_len).map_err(|e| ctx(e, "mmap(ring)", iface))?;
        let ring = ring::RxRing::new(
            map,
            opts.ring,
            opts.block_size as usize,
            opts.block_count as usize,
            frame_size as usize,
        );
        let qdisc_bypass = opts.qdisc_bypass
            && sys::set_int_opt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1).is_ok();
        // Linux >= 4.20; older kernels loop our own frames back to taps,
        // which the ring walker skips by packet type anyway.
        let _ = sys::set_int_opt(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        );
        let buf = libc::c_int::try_from(opts.socket_buffer).unwrap_or(libc::c_int::MAX);
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if sys::set_int_opt(fd.as_fd(), libc::SOL_SOCKET, force, buf).is_err() {
                sys::set_int_opt(fd.as_fd(), libc::SOL_SOCKET, plain, buf)
                    .map_err(|e| ctx(e, "SO_SNDBUF/SO_RCVBUF", iface))?;
            }
        }
        sys::bind_packet(fd.as_fd(), ETHERTYPE_MXOE, ifindex)
            .map_err(|e| ctx(e, "bind(AF_PACKET)", iface))?;
        let frame_max = mtu as usize + ETH_HLEN;
        let slots = (0..opts.tx_batch)
            .map(|_| TxSlot {
                buf: Vec::with_capacity(frame_max),
                shared: None,
                pad: 0,
            })
            .collect();
        Ok(PacketNic {
            fd,
            iface: iface.to_owned(),
            ifindex,
            mac,
            mtu,
            ring,
            slots,
            queued: 0,
            gathers: Vec::with_capacity(opts.tx_batch),
            batch: MmsgBatch::new(opts.tx_batch),
            tx_retries: opts.tx_retries,
            qdisc_bypass,
            stats: NicStats::default(),
            kernel_drops: Cell::new(0),
        })
    }

    /// Opens `iface` of another network namespace (`netns`: a name under
    /// `/run/netns/`, as `ip netns` makes, or a path such as
    /// `/proc/PID/ns/net`). The socket stays in that namespace for its
    /// life; the calling thread does not move (see [`run_in_netns`]).
    ///
    /// # Errors
    /// As [`open`](Self::open), or entering the namespace failed.
    pub fn open_in_netns(netns: &str, iface: &str, opts: &PacketOpts) -> io::Result<PacketNic> {
        run_in_netns(netns, || PacketNic::open(iface, opts))?
    }

    /// The interface name given to [`open`](Self::open).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Whether `PACKET_QDISC_BYPASS` is in effect.
    pub fn qdisc_bypass(&self) -> bool {
        self.qdisc_bypass
    }

    /// The receive ring's layout.
    pub fn ring_version(&self) -> RingVersion {
        self.ring.version()
    }

    /// Bytes of kernel memory the receive ring maps.
    pub fn ring_bytes(&self) -> usize {
        self.ring.bytes()
    }

    /// Frames queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Checks that the interface can carry a profile needing an MTU of
    /// `mtu_needed` (the profile's frame budget: 4144 for `mx`, 9000 for
    /// the default `open-mx`). The backend calls it at start.
    ///
    /// # Errors
    /// A message naming the interface, both MTUs and the fix.
    pub fn check_profile(&self, mtu_needed: u32) -> Result<(), String> {
        self.check_mtu("wire", mtu_needed)
    }

    /// [`check_profile`](Self::check_profile) for a [`WireProfile`], naming
    /// it: "interface eth0 has MTU 1500 but the mx profile needs 4144 ...".
    ///
    /// # Errors
    /// As [`check_profile`](Self::check_profile).
    pub fn check_wire_profile(&self, profile: &WireProfile) -> Result<(), String> {
        let name = match profile.kind() {
            ProfileKind::Mx => "mx".to_owned(),
            ProfileKind::OpenMx { mtu } => format!("open-mx {mtu}"),
        };
        self.check_mtu(&name, profile.frame_budget())
    }

    fn check_mtu(&self, name: &str, needed: u32) -> Result<(), String> {
        if self.mtu >= needed {
            return Ok(());
        }
        Err(format!(
            "interface {} has MTU {} but the {name} profile needs {needed} \
             (raise it: `ip link set dev {} mtu {needed}`; behind a bridge, \
             raise the bridge and every port)",
            self.iface, self.mtu, self.iface
        ))
    }

    /// Waits until the receive ring has something for us or `timeout`
    /// passes (`None` = forever); `Ok(false)` on timeout. For tests and
    /// simple loops; the backend polls [`Nic::poll_fd`] with its others.
    ///
    /// # Errors
    /// An OS error from `poll(2)`.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.ring.ready() {
            return Ok(true);
        }
        sys::poll_one(self.fd.as_fd(), libc::POLLIN, timeout)
    }

    /// Reads the kernel's drop counter (which resets on read) into ours.
    fn refresh_kernel_drops(&self) {
        if let Ok((_, drops)) = sys::packet_stats(self.fd.as_fd()) {
            self.kernel_drops
                .set(self.kernel_drops.get() + u64::from(drops));
        }
    }

    /// Sends `slots[..queued]`, retrying transient failures; see [`Nic::flush`].
    fn send_queued(&mut self) -> io::Result<()> {
        let total = self.queued;
        self.gathers.clear();
        for s in &self.slots[..total] {
            let mut g = Gather::default();
            g.parts[0] = (s.buf.as_ptr() as usize, s.buf.len());
            g.n = 1;
            if let Some(range) = s.shared {
                g.parts[g.n] = range;
                g.n += 1;
            }
            if s.pad > 0 {
                g.parts[g.n] = (PAD.as_ptr() as usize, s.pad);
                g.n += 1;
            }
            self.gathers.push(g);
        }
        let mut start = 0;
        let mut retries = 0;
        let mut last_err = None;
        while start < total {
            match self
                .batch
                .send(self.fd.as_fd(), &self.gathers[start..total])
            {
                Ok(n) => {
                    self.stats.tx_frames += n as u64;
                    start += n.max(1).min(total - start);
                    if n == 0 {
                        // Not expected from the kernel; count rather than spin.
                        self.stats.tx_errors += 1;
                    }
                }
                Err(e) if is_transient(&e) && retries < self.tx_retries => {
                    retries += 1;
                    if e.kind() == io::ErrorKind::WouldBlock {
                        // Socket send buffer full: wait (briefly) for room.
                        let _ = sys::poll_one(
                            self.fd.as_fd(),
                            libc::POLLOUT,
                            Some(Duration::from_millis(1)),
                        );
                    } else {
                        std::thread::yield_now();
                    }
                }
                Err(e) if is_transient(&e) || is_fatal(&e) => {
                    // Out of retries, or the interface is gone: drop the rest.
                    self.stats.tx_errors += (total - start) as u64;
                    last_err = Some(ctx(e, "sendmmsg", &self.iface));
                    break;
                }
                Err(e) => {
                    // This frame is bad (e.g. EMSGSIZE): drop it, go on.
                    self.stats.tx_errors += 1;
                    start += 1;
                    last_err = Some(ctx(e, "sendmmsg", &self.iface));
                }
            }
        }
        self.queued = 0;
        for s in &mut self.slots[..total] {
            s.shared = None;
        }
        last_err.map_or(Ok(()), Err)
    }
}

/// Errors worth retrying: buffer or device queue full, interrupted.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
    )
}

/// Errors that no frame of the batch would escape.
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV | libc::EBADF)
    )
}

impl Nic for PacketNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let seen = self.ring.next_batch(max, f);
        self.stats.rx_frames += seen.frames as u64;
        if seen.truncated > 0 {
            self.kernel_drops
                .set(self.kernel_drops.get() + seen.truncated);
        }
        if seen.losing {
            self.refresh_kernel_drops();
        }
        Ok(seen.frames)
    }

    fn send(&mut self, header: &[u8], payload: Payload<'_>) -> io::Result<()> {
        let len = header
            .len()
            .checked_add(payload.len())
            .filter(|&l| l <= self.mtu as usize + ETH_HLEN)
            .ok_or_else(|| {
                invalid(format!(
                    "frame of {}+{} bytes exceeds MTU {} of {}",
                    header.len(),
                    payload.len(),
                    self.mtu,
                    self.iface
                ))
            })?;
        if header.len() < ETH_HLEN {
            return Err(invalid(format!(
                "frame header of {} bytes is shorter than an Ethernet header",
                header.len()
            )));
        }
        let shared = match payload {
            Payload::Shared { mem, offset, len } => {
                mem.check_range(offset, len).map_err(io::Error::from)?;
                // An address for the kernel to read during flush; never
                // dereferenced here (see `sys::sendmmsg`).
                (len > 0).then(|| ((mem.as_ptr() as usize).wrapping_add(offset), len))
            }
            _ => None,
        };
        if self.queued == self.slots.len() {
            self.send_queued()?;
        }
        let slot = &mut self.slots[self.queued];
        slot.buf.clear();
        slot.buf.extend_from_slice(header);
        if let Payload::Bytes(b) = payload {
            slot.buf.extend_from_slice(b);
        }
        slot.shared = shared;
        slot.pad = ETH_ZLEN.saturating_sub(len);
        self.queued += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        self.send_queued()
    }

    fn stats(&self) -> NicStats {
        self.refresh_kernel_drops();
        NicStats {
            rx_kernel_drops: self.kernel_drops.get(),
            ..self.stats
        }
    }
}

/// The file of a network namespace: `/run/netns/NAME` for a bare name (as
/// `ip netns add NAME` makes), else the path as given.
pub fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        Path::new("/run/netns").join(netns)
    }
}

/// Runs `f` on a new thread that first enters the network namespace
/// `netns` (see [`netns_path`]) and returns its result; sockets `f` opens
/// stay in that namespace. `setns(2)` moves only the calling thread, which
/// is why a fresh thread does it (and then ends). A panic in `f` resumes
/// in the caller.
///
/// # Errors
/// Opening the namespace file or `setns` (needs `CAP_SYS_ADMIN`) failed.
pub fn run_in_netns<R: Send>(netns: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let path = netns_path(netns);
    let ns = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            sys::setns_net(&ns)
                .map_err(|e| io::Error::new(e.kind(), format!("setns({}): {e}", path.display())))?;
            Ok(f())
        });
        match t.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The receive-ring walker: the only `unsafe` of this module. It reads the
/// ring the kernel fills, through the mapping in [`RingMap`].
#[allow(unsafe_code)]
mod ring {
    use super::RingVersion;
    use mx_proto::platform::SharedMapping as RingMap;
    use std::mem::{offset_of, size_of};
    use std::ptr;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// `TPACKET_ALIGN`.
    const fn align16(x: usize) -> usize {
        (x + 15) & !15
    }

    /// Offset of the `sockaddr_ll` after a frame header of `hdr` bytes.
    const fn sll_offset(hdr: usize) -> usize {
        align16(hdr)
    }

    /// Offset of `sll_pkttype` inside `sockaddr_ll`.
    const PKTTYPE: usize = offset_of!(libc::sockaddr_ll, sll_pkttype);
    /// Block status word inside a `tpacket_block_desc` (version 1 header).
    const BLK_STATUS: usize =
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
    /// Packet count of a block.
    const BLK_NUM_PKTS: usize =
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
    /// Offset of a block's first packet.
    const BLK_FIRST: usize = offset_of!(libc::tpacket_block_desc, hdr)
        + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
    /// `tpacket3_hdr` size and `sockaddr_ll` offset.
    const V3_HDR: usize = size_of::<libc::tpacket3_hdr>();
    const V3_SLL: usize = sll_offset(V3_HDR);
    /// `tpacket2_hdr` size and `sockaddr_ll` offset.
    const V2_HDR: usize = size_of::<libc::tpacket2_hdr>();
    const V2_SLL: usize = sll_offset(V2_HDR);

    /// Ring frame size for `mtu`: the kernel puts the MAC header at
    /// `align16(hdrlen + 16) - 14` (`hdrlen` = frame header + sockaddr_ll),
    /// then the frame of up to `mtu + 14` bytes; 16 bytes of slack.
    pub(super) fn frame_size(v: RingVersion, mtu: u32) -> u32 {
        let hdr = match v {
            RingVersion::V3 => V3_SLL,
            RingVersion::V2 => V2_SLL,
        } + size_of::<libc::sockaddr_ll>();
        let need = align16(hdr + 16) + 16 + mtu as usize + 14;
        u32::try_from(align16(need)).unwrap_or(u32::MAX)
    }

    /// What one walk saw.
    #[derive(Default)]
    pub(super) struct Seen {
        /// Frames handed to the callback.
        pub(super) frames: usize,
        /// The kernel flagged drops (`TP_STATUS_LOSING`).
        pub(super) losing: bool,
        /// Frames skipped because the ring slot truncated them.
        pub(super) truncated: u64,
    }

    /// A mapped receive ring and our position in it.
    pub(super) struct RxRing {
        map: RingMap,
        version: RingVersion,
        block_size: usize,
        block_nr: usize,
        frame_size: usize,
        frames_per_block: usize,
        /// V3: current block; V2: current frame.
        cur: usize,
        /// V3: `(packets left, offset of the next one)` in the current
        /// block while it is ours.
        open: Option<(u32, usize)>,
    }

    impl RxRing {
        pub(super) fn new(
            map: RingMap,
            version: RingVersion,
            block_size: usize,
            block_nr: usize,
            frame_size: usize,
        ) -> Self {
            debug_assert!(map.len() >= block_size * block_nr);
            RxRing {
                map,
                version,
                block_size,
                block_nr,
                frame_size,
                frames_per_block: block_size / frame_size,
                cur: 0,
                open: None,
            }
        }

        pub(super) fn version(&self) -> RingVersion {
            self.version
        }

        pub(super) fn bytes(&self) -> usize {
            self.map.len()
        }

        /// Offset in the mapping of the current block (V3) or frame (V2).
        fn cur_offset(&self) -> usize {
            match self.version {
                RingVersion::V3 => self.cur * self.block_size,
                RingVersion::V2 => {
                    (self.cur / self.frames_per_block) * self.block_size
                        + (self.cur % self.frames_per_block) * self.frame_size
                }
            }
        }

        /// The status word at `off` (block or frame start), as an atomic.
        fn status(&self, off: usize) -> &AtomicU32 {
            debug_assert!(off + 4 <= self.map.len() && off & 3 == 0);
            // SAFETY: `off` is a block or frame start (16-byte aligned in a
            // page-aligned mapping) plus a 4-aligned field offset, inside
            // the mapping, which lives as long as `self`; the kernel
            // accesses this word concurrently, which is why it is an atomic.
            unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(off).cast()) }
        }

        /// Reads a plain field of a header we own (after the Acquire load).
        fn read<T: Copy>(&self, off: usize) -> T {
            assert!(off + size_of::<T>() <= self.map.len());
            // SAFETY: in range (checked above); the header belongs to user
            // space until we store TP_STATUS_KERNEL, so the kernel does not
            // write it now; unaligned read, any bit pattern is valid for the
            // integer types used.
            unsafe { ptr::read_unaligned(self.map.as_ptr().add(off).cast::<T>()) }
        }

        /// Hands the frame at `off .. off + len` to `f`.
        fn hand_frame_to(&self, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
            assert!(off + len <= self.map.len());
            // SAFETY: in range (checked above); the block or frame holding it
            // is ours (status TP_STATUS_USER, read with Acquire) until we
            // store TP_STATUS_KERNEL, which happens after `f` returns: the
            // kernel does not write it meanwhile and no Rust code writes the
            // mapping, so a shared slice is sound for the call.
            let frame = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) };
            f(frame);
        }

        /// Whether the next block or frame is ours (a cheap check).
        pub(super) fn ready(&self) -> bool {
            self.open.is_some()
                || self
                    .status(self.cur_offset() + self.status_field())
                    .load(Ordering::Acquire)
                    & libc::TP_STATUS_USER
                    != 0
        }

        fn status_field(&self) -> usize {
            match self.version {
                RingVersion::V3 => BLK_STATUS,
                RingVersion::V2 => offset_of!(libc::tpacket2_hdr, tp_status),
            }
        }

        /// Hands up to `max` frames to `f`.
        pub(super) fn next_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Seen {
            match self.version {
                RingVersion::V3 => self.next_v3(max, f),
                RingVersion::V2 => self.next_v2(max, f),
            }
        }

        fn next_v3(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Seen {
            let mut seen = Seen::default();
            while seen.frames < max {
                let base = self.cur * self.block_size;
                let (left, off) = match self.open {
                    Some(o) => o,
                    None => {
                        let st = self.status(base + BLK_STATUS).load(Ordering::Acquire);
                        if st & libc::TP_STATUS_USER == 0 {
                            break;
                        }
                        seen.losing |= st & libc::TP_STATUS_LOSING != 0;
                        let n: u32 = self.read(base + BLK_NUM_PKTS);
                        let first: u32 = self.read(base + BLK_FIRST);
                        (n, first as usize)
                    }
                };
                // A packet header must fit in the block; otherwise (never
                // from a sane kernel) give the rest of the block up.
                if left == 0 || off + V3_SLL + size_of::<libc::sockaddr_ll>() > self.block_size {
                    self.release_block(base);
                    continue;
                }
                let h = base + off;
                let next: u32 = self.read(h + offset_of!(libc::tpacket3_hdr, tp_next_offset));
                let snap: u32 = self.read(h + offset_of!(libc::tpacket3_hdr, tp_snaplen));
                let len: u32 = self.read(h + offset_of!(libc::tpacket3_hdr, tp_len));
                let mac: u16 = self.read(h + offset_of!(libc::tpacket3_hdr, tp_mac));
                let pkttype: u8 = self.read(h + V3_SLL + PKTTYPE);
                let end = off + mac as usize + snap as usize;
                self.open = if left > 1 && next != 0 {
                    Some((left - 1, off + next as usize))
                } else {
                    Some((0, off))
                };
                if end > self.block_size {
                    self.release_block(base);
                    continue;
                }
                if snap != len {
                    seen.truncated += 1;
                } else if pkttype != libc::PACKET_OUTGOING {
                    seen.frames += 1;
                    self.hand_frame_to(h + mac as usize, snap as usize, f);
                }
            }
            // Give a fully read block back at once.
            if let Some((0, _)) = self.open {
                self.release_block(self.cur * self.block_size);
            }
            seen
        }

        /// Hands the current block back to the kernel and moves on.
        fn release_block(&mut self, base: usize) {
            self.status(base + BLK_STATUS)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.open = None;
            self.cur = (self.cur + 1) % self.block_nr;
        }

        fn next_v2(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> Seen {
            let mut seen = Seen::default();
            let frame_nr = self.frames_per_block * self.block_nr;
            let status_at = offset_of!(libc::tpacket2_hdr, tp_status);
            while seen.frames < max {
                let h = self.cur_offset();
                let st = self.status(h + status_at).load(Ordering::Acquire);
                if st & libc::TP_STATUS_USER == 0 {
                    break;
                }
                seen.losing |= st & libc::TP_STATUS_LOSING != 0;
                let snap: u32 = self.read(h + offset_of!(libc::tpacket2_hdr, tp_snaplen));
                let len: u32 = self.read(h + offset_of!(libc::tpacket2_hdr, tp_len));
                let mac: u16 = self.read(h + offset_of!(libc::tpacket2_hdr, tp_mac));
                let pkttype: u8 = self.read(h + V2_SLL + PKTTYPE);
                if mac as usize + snap as usize <= self.frame_size && snap == len {
                    if pkttype != libc::PACKET_OUTGOING {
                        seen.frames += 1;
                        self.hand_frame_to(h + mac as usize, snap as usize, f);
                    }
                } else {
                    seen.truncated += 1;
                }
                self.status(h + status_at)
                    .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.cur = (self.cur + 1) % frame_nr;
            }
            seen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_slots_hold_a_frame_of_the_mtu() {
        assert_eq!(ring::frame_size(RingVersion::V2, 9000), 9120);
        assert_eq!(ring::frame_size(RingVersion::V2, 1500), 1616);
        for mtu in [1500, 4144, 9000, 65535] {
            for v in [RingVersion::V2, RingVersion::V3] {
                let f = ring::frame_size(v, mtu);
                assert_eq!(f % 16, 0);
                // The kernel puts the MAC header at align16(hdrlen + 16) - 14
                // with hdrlen = 32 + 20 (V2) or 48 + 20 (V3).
                let mac = if v == RingVersion::V2 { 66 } else { 82 };
                assert!(f >= mac + mtu + 14);
            }
        }
        let o = PacketOpts::default();
        assert_eq!(o.ring, RingVersion::V2);
        assert_eq!(o.block_size / ring::frame_size(RingVersion::V2, 9000), 459);
    }
}
