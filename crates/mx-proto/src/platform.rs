//! The `Platform` seam: what a split driver needs from a hypervisor.
//!
//! A split driver has two roles. The **guest** side (the frontend: in a VM,
//! or locally an application process) offers shared pages and event
//! channels to its backend. The **host** side (the backend daemon: in Dom0,
//! or locally a daemon process) maps those pages, binds those channels,
//! learns who the guest is from the platform (never from the guest), and may
//! copy bulk data to and from the guest's memory.
//!
//! Code above this module is generic over the traits here and never forks on
//! `cfg`: the top of a program picks the implementation at run time, e.g.
//! `run::<LocalPlatform>()` or, later, `run::<XenPlatform>()`.
//!
//! | need | trait | [`local`] | xen (later) |
//! |---|---|---|---|
//! | pages offered by a guest | [`SharedMem`] via [`BackendLink::alloc_pages`] | memfd, sealed, `mmap(MAP_SHARED)` | `/dev/xen/gntalloc` grant refs |
//! | pages mapped by the host | [`SharedMem`] via [`ReceivedResources::take_pages`] | `mmap` of the received memfd | `/dev/xen/gntdev` |
//! | event channel | [`EventChannel`] | two eventfds (one per direction) | `/dev/xen/evtchn` port |
//! | rendezvous | [`GuestPlatform::attach`], [`HostPlatform::listen`] | Unix `SOCK_SEQPACKET` socket, `SCM_RIGHTS` | xenstore `device/mx/<n>/` + XenbusState |
//! | guest identity | [`GuestConn::guest_id`] | `SO_PEERCRED` | domid |
//! | bulk copy | [`GuestMemory`] | `process_vm_readv`/`writev` | a pre-granted pool |
//!
//! Platform-independent pieces shared by both implementations (all Linux):
//! [`Poller`] (epoll with `u64` tokens) and [`Wakeup`] (an eventfd that
//! interrupts a blocked wait from another thread).
//!
//! # How resources travel with a control request
//!
//! A control request is a byte message of at most [`MAX_CONTROL_MSG`]
//! bytes, plus an ordered list of at most [`MAX_RESOURCES`] resources
//! ([`Resource::Pages`] or [`Resource::Event`]). The message bytes name
//! resources by their *slot* (index in that list), which is
//! platform-neutral; the platform moves the actual resources (local: file
//! descriptors by `SCM_RIGHTS`; Xen: grant refs and ports written after the
//! bytes). The host receives the bytes and a [`ReceivedResources`] from
//! which it *takes* the slots the message says it needs, stating how many
//! pages it expects, so nothing is mapped unless the backend asked for it.
//! Slots not taken are released when the resources are dropped.
//!
//! # Safety rules the implementations keep
//!
//! - Shared memory is never exposed as `&[u8]`/`&mut [u8]`: the peer may
//!   write it at any time. Copy in and out with [`SharedMem::read_at`] /
//!   [`SharedMem::write_at`] (bounds-checked, volatile), or build atomics on
//!   [`SharedRegion::as_ptr`](crate::ring::SharedRegion::as_ptr) (the ring does).
//! - The host never blocks on a guest: every host-side operation is
//!   non-blocking or bounded by a timeout.
//! - All libc calls live in one private `sys` module; `unsafe` is denied
//!   elsewhere (the `unsafe impl SharedMem` promises excepted).

#![deny(unsafe_code)]

use std::fmt::{self, Debug, Display};
use std::hash::Hash;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

pub mod auto;
pub mod local;
mod poll;
mod sys;

pub use sys::Mapping as SharedMapping;

/// A monotonic clock in microseconds with a resolution of a few
/// milliseconds (the kernel's tick), cheap enough to read on every poll:
/// for timers measured in milliseconds (acks, retransmissions), never for
/// measuring latency.
pub fn coarse_micros() -> u64 {
    sys::coarse_micros()
}
pub mod xen;

pub use poll::{Events, Interest, PollEvent, Poller, Wakeup};

/// The unit of sharing: 4 KiB, the Xen grant size. Page counts in this
/// module are in these units whatever the host's MMU page size is.
pub const PAGE_SIZE: usize = 4096;

/// Largest control message body, in bytes, in either direction.
pub const MAX_CONTROL_MSG: usize = 4096;

/// Largest number of resources attached to one control request.
pub const MAX_RESOURCES: usize = 16;

/// A platform: a matching pair of guest and host sides.
///
/// Code that runs both sides (tests, an embedded backend, demos) is generic
/// over `P: Platform`; a frontend needs only [`GuestPlatform`], a backend
/// only [`HostPlatform`].
pub trait Platform: Send + Sync + 'static {
    /// Short name for logs and `mx_info` ("local", "xen").
    const NAME: &'static str;
    /// The guest (frontend) side.
    type Guest: GuestPlatform;
    /// The host (backend) side.
    type Host: HostPlatform;
}

// ------------------------------------------------------------- shared mem ---

/// A bounds violation on a [`SharedMem`] copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Requested offset.
    pub offset: usize,
    /// Requested length.
    pub len: usize,
    /// Size of the shared region.
    pub size: usize,
}

impl Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "range {}+{} outside shared region of {} bytes",
            self.offset, self.len, self.size
        )
    }
}

impl std::error::Error for OutOfBounds {}

impl From<OutOfBounds> for io::Error {
    fn from(e: OutOfBounds) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// A contiguous range of memory shared with the other side: pages a guest
/// offered, or the host's mapping of them.
///
/// The memory may be written by the peer at any moment, so this trait never
/// hands out a Rust reference into it: copy with [`read_at`](Self::read_at)
/// and [`write_at`](Self::write_at), or build atomics on
/// [`as_ptr`](crate::ring::SharedRegion::as_ptr) (the ring does). Dropping the owner unmaps the
/// memory (and, on the guest side, stops offering it).
///
/// # Safety
/// Implementors promise that `as_ptr() .. as_ptr() + len()` is mapped,
/// readable and writable, page-aligned, and stays so for as long as the
/// value lives (accesses through `&self` are therefore always in range), and
/// that `len()` never changes. The default methods rely on it.
///
/// It is the ring's [`SharedRegion`](crate::ring::SharedRegion) (which
/// gives `as_ptr`/`len`) plus the bounds-checked copies below, for every
/// region that may cross threads: implement `SharedRegion` and this comes
/// with it. Bytes a ring uses are accessed only by the ring's atomics,
/// never by `read_at`/`write_at`.
#[allow(unsafe_code)]
pub unsafe trait SharedMem: crate::ring::SharedRegion + Send + Sync {
    /// Length in [`PAGE_SIZE`] pages.
    fn pages(&self) -> usize {
        self.len() / PAGE_SIZE
    }

    /// Checks that `offset .. offset + len` lies inside the region.
    ///
    /// # Errors
    /// [`OutOfBounds`] if it does not (including on overflow).
    fn check_range(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        let size = self.len();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(OutOfBounds { offset, len, size }),
        }
    }

    /// Copies `dst.len()` bytes at `offset` out of shared memory.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range is outside the region; nothing is copied.
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check_range(offset, dst.len())?;
        // SAFETY: the range is inside the mapping (checked above), which the
        // trait contract keeps mapped while `self` lives.
        #[allow(unsafe_code)]
        unsafe {
            sys::copy_from_shared(self.as_ptr().add(offset), dst)
        };
        Ok(())
    }

    /// Copies `src` into shared memory at `offset`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range is outside the region; nothing is copied.
    fn write_at(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.check_range(offset, src.len())?;
        // SAFETY: the range is inside the mapping (checked above), which the
        // trait contract keeps mapped and writable while `self` lives.
        #[allow(unsafe_code)]
        unsafe {
            sys::copy_to_shared(self.as_ptr().add(offset), src)
        };
        Ok(())
    }

    /// Fills `len` bytes at `offset` with `byte`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range is outside the region; nothing is written.
    fn fill_at(&self, offset: usize, len: usize, byte: u8) -> Result<(), OutOfBounds> {
        self.check_range(offset, len)?;
        // SAFETY: the range is inside the mapping (checked above), which the
        // trait contract keeps mapped and writable while `self` lives.
        #[allow(unsafe_code)]
        unsafe {
            sys::fill_shared(self.as_ptr().add(offset), len, byte)
        };
        Ok(())
    }
}

/// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`, both
/// shared memory (the backend's intra-node medium path: a sender's
/// send-queue slot straight into a receiver's receive-queue slot).
///
/// # Errors
/// [`OutOfBounds`] if either range is outside its region, or if the two
/// ranges overlap within one region; nothing is copied.
pub fn copy_shared<S: SharedMem + ?Sized, D: SharedMem + ?Sized>(
    src: &S,
    src_off: usize,
    dst: &D,
    dst_off: usize,
    len: usize,
) -> Result<(), OutOfBounds> {
    src.check_range(src_off, len)?;
    dst.check_range(dst_off, len)?;
    let (s, d) = (
        src.as_ptr() as usize + src_off,
        dst.as_ptr() as usize + dst_off,
    );
    if len > 0 && s < d + len && d < s + len {
        return Err(OutOfBounds {
            offset: dst_off,
            len,
            size: dst.len(),
        });
    }
    // SAFETY: both ranges are inside their mappings (checked above), which
    // the SharedMem contract keeps mapped while the borrows live, and they do
    // not overlap (checked above).
    #[allow(unsafe_code)]
    unsafe {
        sys::copy_shared_to_shared(src.as_ptr().add(src_off), dst.as_ptr().add(dst_off), len)
    };
    Ok(())
}

// SAFETY: `SharedMem` adds no promise beyond `SharedRegion`'s (a fixed,
// page-aligned pointer to `len()` mapped read-write bytes for the value's
// lifetime); its methods are bounds-checked copies built on those.
#[allow(unsafe_code)]
unsafe impl<T: crate::ring::SharedRegion + Send + Sync + ?Sized> SharedMem for T {}

// ---------------------------------------------------------- event channel ---

/// Most extra descriptors one [`EventChannel::wait_with`] watches.
pub const WAIT_EXTRA_MAX: usize = 64;

/// Why [`EventChannel::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The peer notified (one or more notifications, coalesced).
    Notified,
    /// A [`Wakeup`] from this process interrupted the wait.
    Interrupted,
    /// The timeout passed with neither.
    TimedOut,
}

/// One end of a bidirectional event channel: notify the peer, learn that the
/// peer notified us.
///
/// Notifications coalesce: several `notify` calls before the peer consumes
/// them are seen as one. They carry no data; the receiver re-checks its
/// rings. [`AsFd`] gives the descriptor that becomes readable when the peer
/// notifies, to register with a [`Poller`]; after the poller reports it,
/// call [`consume`](Self::consume) (on Xen this also unmasks the port).
pub trait EventChannel: AsFd + Send + Sync {
    /// Signals the peer. Never blocks; allocation-free.
    ///
    /// # Errors
    /// An OS error if the channel is broken (e.g. the peer's end is invalid).
    fn notify(&self) -> io::Result<()>;

    /// Clears pending notifications from the peer without blocking.
    /// Returns `true` if there were any.
    ///
    /// # Errors
    /// An OS error if the channel is broken.
    fn consume(&self) -> io::Result<bool>;

    /// Blocks until the peer notifies, a [`Wakeup`] from
    /// [`wakeup`](Self::wakeup) fires, or `timeout` passes (`None` = no
    /// limit). Consumes what it reports. If both a notification and a wakeup
    /// are pending, reports `Notified` and leaves the wakeup for the next call.
    ///
    /// # Errors
    /// An OS error if the channel is broken.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome>;

    /// [`wait`](Self::wait), also ending when one of `extra` (at most
    /// [`WAIT_EXTRA_MAX`]; peer-channel doorbells) becomes readable or
    /// hangs up, which reports `Notified` without consuming anything of
    /// theirs: one wait for the backend and for the peers.
    ///
    /// # Errors
    /// An OS error if a descriptor is broken; `InvalidInput` for too many.
    fn wait_with(
        &self,
        extra: &[std::os::fd::BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> io::Result<WaitOutcome> {
        use std::os::fd::AsRawFd;
        if extra.is_empty() {
            return self.wait(timeout);
        }
        if extra.len() > WAIT_EXTRA_MAX {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let wake = self.wakeup()?;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let pfd = |fd: std::os::fd::BorrowedFd<'_>| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            let mut fds = [pfd(self.as_fd()); WAIT_EXTRA_MAX + 2];
            fds[1] = pfd(wake.as_fd());
            for (f, e) in fds[2..].iter_mut().zip(extra) {
                *f = pfd(*e);
            }
            let fds = &mut fds[..2 + extra.len()];
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            match sys::ppoll(fds, left) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(io::Error::other("event channel descriptor in error"));
            }
            if fds[0].revents & libc::POLLIN != 0 && self.consume()? {
                return Ok(WaitOutcome::Notified);
            }
            if fds[1].revents & libc::POLLIN != 0 && wake.consume()? {
                return Ok(WaitOutcome::Interrupted);
            }
            if fds[2..].iter().any(|f| f.revents != 0) {
                return Ok(WaitOutcome::Notified);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(WaitOutcome::TimedOut);
            }
        }
    }

    /// A handle that interrupts [`wait`](Self::wait) on this channel from
    /// another thread of this process (MX's `mx_wakeup`). Each
    /// [`Wakeup::wake`] ends one wait (the current one, or the next).
    ///
    /// # Errors
    /// An OS error if the wakeup descriptor cannot be created.
    fn wakeup(&self) -> io::Result<Wakeup>;
}

// ------------------------------------------------------------- rendezvous ---

/// What [`PeerBell::drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BellState {
    /// Nobody rang.
    Quiet,
    /// The peer rang (once or more, coalesced).
    Rung,
    /// The peer's end is gone (it closed the channel or died).
    HungUp,
}

/// The doorbell of a peer channel ([`crate::peer`]): ring the other guest,
/// learn that it rang or went away. Whatever the peer does with its own end,
/// no call here blocks. [`AsFd`] is readable when the peer rang or hung up.
pub trait PeerBell: AsFd + Send + Sync + Debug {
    /// Rings the peer. Never blocks.
    ///
    /// # Errors
    /// `BrokenPipe`-like errors once the peer is gone.
    fn ring(&self) -> io::Result<()>;

    /// Clears pending rings without blocking and says what it found.
    ///
    /// # Errors
    /// An OS error if the doorbell is unusable.
    fn drain(&self) -> io::Result<BellState>;
}

/// One guest's end of a peer channel: the shared memory and its doorbell.
pub struct PeerEnd {
    /// The channel's memory.
    pub mem: std::sync::Arc<dyn SharedMem>,
    /// Our end of the doorbell.
    pub bell: Box<dyn PeerBell>,
}

impl Debug for PeerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerEnd")
            .field("pages", &self.mem.pages())
            .field("bell", &self.bell)
            .finish()
    }
}

/// What a guest hands over, through its backend, to the other end of a
/// peer channel it creates (local: the memfd and the other doorbell end;
/// Xen: grant references and a port, as numbers).
#[derive(Debug)]
pub enum PeerRemote {
    /// Local platform descriptors.
    Local {
        /// The channel's memfd.
        pages: std::os::fd::OwnedFd,
        /// The other end of the doorbell.
        bell: local::LocalBell,
    },
    /// Xen: pages granted to the other domain and an unbound port for it.
    Xen(xen::XenPeerGrant),
}

/// A peer channel a guest created: its own end, and what goes to the other.
#[derive(Debug)]
pub struct PeerOffer {
    /// Our end (lay the channel out in it before offering).
    pub end: PeerEnd,
    /// What the other end gets.
    pub remote: PeerRemote,
}

/// A peer channel's hand-over as the backend holds it between the offer
/// and the acceptance: checked, not mapped, forwarded as it came.
#[derive(Debug)]
pub struct PeerGrant(pub(crate) PeerRemote);

impl PeerGrant {
    /// `(granting domain, grantee domain)` where the platform's hand-over
    /// names domains (Xen: the granter from the offering guest's device
    /// path, the grantee as the guest says it granted); `None` on local.
    /// The backend checks both against the endpoints' domains.
    pub fn domains(&self) -> Option<(u32, u32)> {
        match &self.0 {
            PeerRemote::Local { .. } => None,
            PeerRemote::Xen(g) => Some((u32::from(g.from), u32::from(g.to))),
        }
    }
}

fn peer_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "peer channels are not available on this platform",
    )
}

/// Kind of a resource attached to a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A set of shared pages.
    Pages,
    /// The doorbell end of a peer channel ([`PeerBell`]).
    Bell,
    /// An event channel.
    Event,
}

/// A guest resource attached, by reference, to a control request. The guest
/// keeps it; the host gets its own mapping or binding.
#[derive(Debug)]
pub enum Resource<'a, P, E> {
    /// Shared pages to be mapped by the host.
    Pages(&'a P),
    /// An event channel to be bound by the host.
    Event(&'a E),
}

impl<P, E> Clone for Resource<'_, P, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, E> Copy for Resource<'_, P, E> {}

impl<P, E> Resource<'_, P, E> {
    /// The kind of this resource.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Pages(_) => ResourceKind::Pages,
            Resource::Event(_) => ResourceKind::Event,
        }
    }
}

/// The guest side of a platform: how a frontend reaches its backend.
pub trait GuestPlatform: Sized + Send + Sync + 'static {
    /// Where the backend is (local: a socket path; Xen: a device index).
    /// `Default` is the platform's standard location.
    type Target: Clone + Debug + Default + Send + Sync;
    /// Pages the guest allocated and offers to the backend.
    type Pages: SharedMem + Debug;
    /// The guest end of an event channel.
    type Event: EventChannel + Debug;
    /// An attached link to one backend.
    type Link: BackendLink<Self>;

    /// Finds the backend at `target` and attaches to it (local: connect;
    /// Xen: the xenbus handshake), waiting at most `timeout`.
    ///
    /// # Errors
    /// `NotFound`/`ConnectionRefused` if no backend is there, `TimedOut`,
    /// or another OS error.
    fn attach(target: &Self::Target, timeout: Duration) -> io::Result<Self::Link>;
}

/// A guest's attachment to its backend: the factory for resources that can
/// be offered to that backend, and the control path to it.
///
/// The control path is a sequence of messages each way, not hot. `send` and
/// `recv` are individually thread-safe; callers that pair requests with
/// replies from several threads must serialise them (or match by an id in
/// the message).
pub trait BackendLink<G: GuestPlatform>: AsFd + Send + Sync + Debug {
    /// Allocates `count` zeroed pages that can be offered to this backend.
    ///
    /// # Errors
    /// `InvalidInput` for 0 pages, or an OS error (out of memory, grants).
    fn alloc_pages(&self, count: usize) -> io::Result<G::Pages>;

    /// Memory this link granted the backend once, for large messages, when
    /// the backend cannot reach the application's own memory: region
    /// segments the guest registers are then byte offsets in it. `None`
    /// (the default, and the local platform) means region segments are the
    /// application's own addresses and need no staging.
    ///
    /// User space on Xen cannot grant arbitrary existing pages, so the Xen
    /// link grants a pool at attach time and returns it here.
    fn bulk_pool(&self) -> Option<std::sync::Arc<dyn SharedMem>> {
        None
    }

    /// Creates the memory (`pages` pages) and doorbell of a peer channel
    /// for another guest of this host. `Unsupported` where the platform has
    /// none (the library then keeps talking through the backend).
    ///
    /// # Errors
    /// `Unsupported`, or an OS error.
    fn peer_create(&self, pages: usize) -> io::Result<PeerOffer> {
        let _ = pages;
        Err(peer_unsupported())
    }

    /// Whether [`peer_create_for`](Self::peer_create_for) needs the other
    /// endpoint's domain (Xen: a grant names its grantee), which the
    /// backend tells (`PeerDomain`). False by default and on local.
    fn peer_needs_domain(&self) -> bool {
        false
    }

    /// [`peer_create`](Self::peer_create) for a channel to an endpoint of
    /// domain `domain` (what the backend said; `None` where the platform
    /// does not need it). The default ignores the domain.
    ///
    /// # Errors
    /// As [`peer_create`](Self::peer_create); `InvalidInput` if the
    /// platform needs a domain and none was given.
    fn peer_create_for(&self, pages: usize, domain: Option<u32>) -> io::Result<PeerOffer> {
        let _ = domain;
        self.peer_create(pages)
    }

    /// Sends control request `msg` with the remote half of `offer`, and
    /// receives the reply into `reply`. Returns the reply's length.
    ///
    /// # Errors
    /// As [`call`](Self::call); `Unsupported` where there are no peer channels.
    fn peer_offer(
        &self,
        offer: &PeerOffer,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        let _ = (offer, msg, reply, timeout);
        Err(peer_unsupported())
    }

    /// Sends control request `msg` (an acceptance) and receives the reply,
    /// with the channel's memory (which must be `pages` pages) and our
    /// doorbell end when the backend granted it.
    ///
    /// # Errors
    /// As [`call`](Self::call); `InvalidData` if what came is not a usable
    /// channel; `Unsupported` where there are no peer channels.
    fn peer_accept(
        &self,
        pages: usize,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<(usize, Option<PeerEnd>)> {
        let _ = (pages, msg, reply, timeout);
        Err(peer_unsupported())
    }

    /// Allocates an event channel whose other end this backend can bind.
    ///
    /// # Errors
    /// An OS error.
    fn alloc_event(&self) -> io::Result<G::Event>;

    /// Sends one control request: `msg` (at most [`MAX_CONTROL_MSG`] bytes)
    /// with `resources` in slot order (at most [`MAX_RESOURCES`]).
    /// Does not block beyond `timeout` if the backend is not reading.
    ///
    /// # Errors
    /// `InvalidInput` if a limit is exceeded, `TimedOut`, or
    /// `BrokenPipe`/`ConnectionReset` if the backend went away.
    fn send(
        &self,
        msg: &[u8],
        resources: &[Resource<'_, G::Pages, G::Event>],
        timeout: Duration,
    ) -> io::Result<()>;

    /// Receives one control message from the backend into `buf` (which
    /// should hold [`MAX_CONTROL_MSG`] bytes), waiting at most `timeout`.
    /// Returns its length.
    ///
    /// # Errors
    /// `TimedOut`, `UnexpectedEof` if the backend closed the link,
    /// `InvalidData` on a malformed message.
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// `send` then `recv`: one request/reply round trip.
    ///
    /// # Errors
    /// As [`send`](Self::send) and [`recv`](Self::recv).
    fn call(
        &self,
        msg: &[u8],
        resources: &[Resource<'_, G::Pages, G::Event>],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        self.send(msg, resources, timeout)?;
        self.recv(reply, timeout)
    }
}

/// The host side of a platform: what a backend daemon uses.
pub trait HostPlatform: Sized + Send + Sync + 'static {
    /// Where and how to listen (local: socket path and mode; Xen: the
    /// xenstore device type). `Default` is the standard location.
    type Config: Clone + Debug + Default + Send + Sync;
    /// Who a guest is, as the platform knows it (local: `SO_PEERCRED`;
    /// Xen: domid). Never taken from anything the guest says.
    type GuestId: Copy + Eq + Hash + Debug + Display + Send + Sync;
    /// The host's mapping of pages a guest offered.
    type Pages: SharedMem + Debug;
    /// The host end of a guest's event channel.
    type Event: EventChannel + Debug;
    /// Bulk access to one guest's memory.
    type Memory: GuestMemory + Clone + Debug;
    /// Resources attached to one received request, not yet mapped.
    type Resources: ReceivedResources<Self>;
    /// The control connection of one guest.
    type Conn: GuestConn<Self>;
    /// Accepts guests.
    type Listener: GuestListener<Self>;

    /// Starts listening for guests, as described by `config`.
    ///
    /// # Errors
    /// `AddrInUse` if another backend listens there, or an OS error.
    fn listen(config: &Self::Config) -> io::Result<Self::Listener>;
}

/// The host's listening endpoint. Non-blocking; register its descriptor
/// ([`AsFd`]) with a [`Poller`] and call [`accept`](Self::accept) when it
/// is readable.
pub trait GuestListener<H: HostPlatform>: AsFd + Send + Debug {
    /// Accepts one pending guest, or `Ok(None)` if none is pending.
    ///
    /// # Errors
    /// An OS error on the listener, or if the guest's identity cannot be
    /// established (such a guest is refused, not returned).
    fn accept(&self) -> io::Result<Option<H::Conn>>;
}

/// What [`GuestConn::recv`] found.
#[derive(Debug)]
pub enum Incoming<R> {
    /// A request: the first `len` bytes of the caller's buffer, and its
    /// resources.
    Request {
        /// Length of the message body in the caller's buffer.
        len: usize,
        /// The resources attached, by slot.
        resources: R,
    },
    /// Nothing pending now.
    Empty,
    /// The guest went away (process exit, domain destroyed, detach): clean
    /// up everything it owned.
    Closed,
}

/// The host's control connection to one guest. Non-blocking; register its
/// descriptor ([`AsFd`]) with a [`Poller`] and call [`recv`](Self::recv)
/// when it is readable or hung up.
pub trait GuestConn<H: HostPlatform>: AsFd + Send + Debug {
    /// The guest's identity, established by the platform at accept time.
    fn guest_id(&self) -> H::GuestId;

    /// Whether the platform vouches that this guest is as trusted as the
    /// backend's own administrator (local: the kernel reports uid 0 or the
    /// backend's own effective uid; Xen: never, a domain is another
    /// machine). Privileged operations (a board's raw endpoint) check it;
    /// like [`guest_id`](Self::guest_id) it never comes from what the
    /// guest says.
    fn is_privileged(&self) -> bool;

    /// Who is accountable for this guest, for per-guest limits and fair
    /// shares: many guests of one principal count as one (local: the uid
    /// the kernel reports; Xen: the domain id, tagged so that it never
    /// equals a uid). Never from what the guest says.
    fn principal(&self) -> u64;

    /// Receives one control request into `buf` (which should hold
    /// [`MAX_CONTROL_MSG`] bytes) without blocking.
    ///
    /// # Errors
    /// `InvalidData` if the guest broke the control protocol (oversized
    /// message, malformed resource header, too many resources): the backend
    /// should treat the guest as broken and disconnect it.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Incoming<H::Resources>>;

    /// Sends one reply or notice (at most [`MAX_CONTROL_MSG`] bytes) without
    /// blocking.
    ///
    /// # Errors
    /// `WouldBlock` if the guest is not reading its replies (treat it as
    /// broken), `BrokenPipe` if it went away, `InvalidInput` if too long.
    fn send(&self, msg: &[u8]) -> io::Result<()>;

    /// A handle for bulk copies to and from this guest's memory, usable
    /// from any thread for as long as the guest lives.
    fn memory(&self) -> H::Memory;

    /// Whether the guest went away without a hang-up its descriptor reports:
    /// where a process's exit closes nothing the host polls (Xen: the guest
    /// process's event channel reverts our port to unbound, silently), the
    /// backend asks every few seconds. False where the descriptor does hang
    /// up (local: the socket) and whenever the platform cannot tell. No
    /// default: a wrapper that forgot to forward it would hide every exit.
    fn gone(&self) -> bool;

    /// The domain this guest is, where the platform names guests by domain
    /// for peer channels (Xen: the domid of the device path); `None` by
    /// default and on local. Never from what the guest says.
    fn peer_domain(&self) -> Option<u32> {
        None
    }

    /// Sends reply `msg` with a peer channel another guest offered, to the
    /// guest that accepted it. Never blocks.
    ///
    /// # Errors
    /// As [`send`](Self::send); `Unsupported` where there are no peer channels.
    fn send_peer(&self, msg: &[u8], grant: PeerGrant) -> io::Result<()> {
        let _ = (msg, grant);
        Err(peer_unsupported())
    }
}

/// The resources attached to one received request, by slot. Each slot can
/// be taken once; slots not taken are released on drop.
pub trait ReceivedResources<H: HostPlatform>: Send + Debug {
    /// Number of slots.
    fn len(&self) -> usize;

    /// True if no resources were attached.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of slot `slot`, or `None` if out of range or already taken.
    fn kind(&self, slot: usize) -> Option<ResourceKind>;

    /// Maps the pages in `slot`, which must hold exactly `expected_pages`
    /// pages (the count the backend validated from the message).
    ///
    /// # Errors
    /// `InvalidInput` if the slot is out of range, taken, or not pages;
    /// `InvalidData` if the guest's pages do not match `expected_pages` or
    /// are not safely shareable; an OS error if mapping fails.
    fn take_pages(&mut self, slot: usize, expected_pages: usize) -> io::Result<H::Pages>;

    /// Binds the event channel in `slot`.
    ///
    /// # Errors
    /// `InvalidInput` if the slot is out of range, taken, or not an event
    /// channel; `InvalidData` if the guest's channel is not usable.
    fn take_event(&mut self, slot: usize) -> io::Result<H::Event>;

    /// Takes a peer channel's hand-over (slot 0: its pages, which must be
    /// exactly `pages` pages; slot 1: the other end's doorbell), checked
    /// but not mapped, to forward to the guest that accepts it.
    ///
    /// # Errors
    /// `InvalidInput`/`InvalidData` for missing or unsuitable resources;
    /// `Unsupported` where there are no peer channels.
    fn take_peer(&mut self, pages: usize) -> io::Result<PeerGrant> {
        let _ = pages;
        Err(peer_unsupported())
    }
}

// --------------------------------------------------------------- bulk copy ---

/// Bulk copies between the host and one guest's memory, for large messages.
///
/// A message is described by a list of guest [`Region`](Self::Region)s
/// (segments) and a byte offset into their concatenation. Copies are bounded
/// by the segments; an address the guest does not have mapped is an error,
/// never a crash.
pub trait GuestMemory: Send + Sync {
    /// A reference to guest memory (local: [`local::GuestRange`], an
    /// address and length in the guest process; Xen: a slot of the
    /// pre-granted pool).
    type Region: Copy + Eq + Debug + Send + Sync;

    /// Total length in bytes of `segments`.
    ///
    /// # Errors
    /// `InvalidInput` if the total overflows.
    fn total_len(segments: &[Self::Region]) -> io::Result<u64>;

    /// Fills `dst` from the guest bytes starting `offset` bytes into the
    /// concatenation of `segments`.
    ///
    /// # Errors
    /// `InvalidInput` if `offset + dst.len()` exceeds the segments (nothing
    /// is copied); a `Bad address` (`EFAULT`) error if guest memory is not
    /// mapped, in which case a prefix of the range may have been copied;
    /// `ESRCH` if the guest is gone.
    fn read(&self, segments: &[Self::Region], offset: u64, dst: &mut [u8]) -> io::Result<()>;

    /// Writes `src` into the guest bytes starting `offset` bytes into the
    /// concatenation of `segments`.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn write(&self, segments: &[Self::Region], offset: u64, src: &[u8]) -> io::Result<()>;

    /// The guest's process id, when a puller may copy from this guest
    /// itself (local: with `process_vm_readv`, which the kernel allows only
    /// to a process with ptrace rights over it); `None` where only the host
    /// reaches the guest's memory (Xen).
    fn direct_pid(&self) -> Option<u32> {
        None
    }

    /// Copies the first `len` bytes of `src` (this guest's segments) to the
    /// first `len` bytes of `dst` (segments of guest `to`, possibly this
    /// one): the same-host large-message copy. The default goes through
    /// `bounce` (read, then write: two copies); a platform whose host maps
    /// both guests' memory copies once, directly.
    ///
    /// # Errors
    /// [`CopyFault`] says which side failed (as [`read`](Self::read) and
    /// [`write`](Self::write) would); a prefix may have been copied.
    fn copy_to(
        &self,
        src: &[Self::Region],
        to: &Self,
        dst: &[Self::Region],
        len: u64,
        bounce: &mut [u8],
    ) -> Result<(), CopyFault> {
        copy_through(self, src, to, dst, len, bounce)
    }
}

/// [`GuestMemory::copy_to`] through a bounce buffer: read a chunk from
/// `from`, write it to `to`, until `len` bytes moved.
///
/// # Errors
/// As [`GuestMemory::copy_to`]; an empty `bounce` is an `InvalidInput`.
pub fn copy_through<M: GuestMemory + ?Sized>(
    from: &M,
    src: &[M::Region],
    to: &M,
    dst: &[M::Region],
    len: u64,
    bounce: &mut [u8],
) -> Result<(), CopyFault> {
    if bounce.is_empty() && len > 0 {
        return Err(CopyFault::Source(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no bounce buffer",
        )));
    }
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(bounce.len() as u64) as usize;
        let buf = &mut bounce[..n];
        from.read(src, off, buf).map_err(CopyFault::Source)?;
        to.write(dst, off, buf).map_err(CopyFault::Destination)?;
        off += n as u64;
    }
    Ok(())
}

/// Which side of a [`GuestMemory::copy_to`] failed.
#[derive(Debug)]
pub enum CopyFault {
    /// Reading the source guest's segments.
    Source(io::Error),
    /// Writing the destination guest's segments.
    Destination(io::Error),
}
