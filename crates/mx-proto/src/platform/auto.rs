//! The `auto` platform: [`local`](super::local) or [`xen`],
//! chosen at run time, behind one set of types.
//!
//! Every associated type is an enum with a `Local` and a `Xen` variant that
//! forwards to the chosen implementation, so code generic over the platform
//! traits (the frontend, the backend, libmx) runs on either without a
//! compile-time fork. The choice is made once per attachment
//! ([`GuestPlatform::attach`]) or listener ([`HostPlatform::listen`]):
//!
//! | `$MX_PLATFORM` | guest (frontend) | host (backend) |
//! |---|---|---|
//! | `local` | local | local |
//! | `xen` | xen | xen |
//! | unset or `auto` | xen if [`xen::available`] and this is not the control domain (Dom0's own processes are local guests of the Dom0 backend), else local | xen if [`xen::available`], else local |
//!
//! The host's choice can also be forced in [`AutoHostConfig::platform`]
//! (`mx-backend --platform`).
//!
//! # Targets and regions
//!
//! The guest's [`Target`](GuestPlatform::Target) is a [`LocalTarget`]: the
//! socket path when the choice is local; on Xen the device slot and pool
//! size come from [`XenTarget::default`] (`$MX_XEN_DEVICE`,
//! `$MX_XEN_POOL_PAGES`). The bulk-copy [`Region`](GuestMemory::Region) is
//! a platform-neutral `(addr, len)` pair, a [`GuestRange`]: an address in
//! the guest process on local, an offset in the guest's pool on Xen, so the
//! backend builds regions the same way on both.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::local::{
    GuestRange, LocalConn, LocalGuest, LocalHost, LocalHostConfig, LocalLink, LocalListener,
    LocalResources, LocalTarget, MappedPages, MemfdPages, PeerCred, ProcessMemory, SocketChannel,
};
use super::xen::{
    self, GrantedPages, MappedGrants, XenConn, XenEvent, XenGuest, XenGuestId, XenHost,
    XenHostConfig, XenLink, XenListener, XenMemory, XenResources, XenTarget,
};
use super::{
    BackendLink, EventChannel, GuestConn, GuestListener, GuestMemory, GuestPlatform, HostPlatform,
    Incoming, Platform, ReceivedResources, Resource, ResourceKind, WaitOutcome, Wakeup,
    MAX_RESOURCES,
};
use crate::ring::SharedRegion;

/// Environment variable forcing the platform: `local`, `xen` or `auto`.
pub const PLATFORM_ENV: &str = "MX_PLATFORM";

/// Which platform to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// Decide from what the machine has.
    #[default]
    Auto,
    /// The local platform.
    Local,
    /// The Xen platform.
    Xen,
}

impl Choice {
    /// Parses `local`, `xen` or `auto` (case-insensitive).
    ///
    /// # Errors
    /// `InvalidInput` for anything else.
    pub fn parse(s: &str) -> io::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Choice::Auto),
            "local" => Ok(Choice::Local),
            "xen" => Ok(Choice::Xen),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{PLATFORM_ENV}={other}: expected local, xen or auto"),
            )),
        }
    }

    /// `$MX_PLATFORM`, or [`Choice::Auto`] if unset.
    ///
    /// # Errors
    /// `InvalidInput` if it is set to something else.
    pub fn from_env() -> io::Result<Self> {
        match std::env::var(PLATFORM_ENV) {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(Choice::Auto),
        }
    }

    /// The concrete choice for a guest (frontend).
    pub fn resolve_guest(self) -> Choice {
        match self {
            Choice::Auto if xen::available() && !xen::is_control_domain() => Choice::Xen,
            Choice::Auto => Choice::Local,
            c => c,
        }
    }

    /// The concrete choice for a host (backend).
    pub fn resolve_host(self) -> Choice {
        match self {
            Choice::Auto if xen::available() => Choice::Xen,
            Choice::Auto => Choice::Local,
            c => c,
        }
    }
}

/// The auto platform: [`AutoGuest`] and [`AutoHost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoPlatform;

impl Platform for AutoPlatform {
    const NAME: &'static str = "auto";
    type Guest = AutoGuest;
    type Host = AutoHost;
}

fn mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "resource of another platform than the link",
    )
}

// ------------------------------------------------------------ shared mem ---

macro_rules! pages_enum {
    ($(#[$m:meta])* $name:ident, $local:ty, $xen:ty) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            /// Local pages.
            Local($local),
            /// Xen pages.
            Xen($xen),
        }

        impl $name {
            /// Start of the mapping.
            pub fn as_ptr(&self) -> *mut u8 {
                match self {
                    $name::Local(p) => p.as_ptr(),
                    $name::Xen(p) => p.as_ptr(),
                }
            }

            /// Length in bytes.
            pub fn len(&self) -> usize {
                match self {
                    $name::Local(p) => p.len(),
                    $name::Xen(p) => p.len(),
                }
            }

            /// Never true.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        // SAFETY: forwards to the variant, which keeps the promise for as
        // long as it lives (it lives as long as `self`, and its pointer does
        // not move with the enum).
        #[allow(unsafe_code)]
        unsafe impl SharedRegion for $name {
            fn as_ptr(&self) -> *mut u8 {
                $name::as_ptr(self)
            }
            fn len(&self) -> usize {
                $name::len(self)
            }
        }
    };
}

pages_enum!(
    /// Pages a guest offers: a memfd or grants.
    AutoGuestPages,
    MemfdPages,
    GrantedPages
);
pages_enum!(
    /// The host's mapping of a guest's pages.
    AutoHostPages,
    MappedPages,
    MappedGrants
);

// ---------------------------------------------------------- event channel ---

/// One end of an event channel (either side).
#[derive(Debug)]
pub enum AutoEvent {
    /// A doorbell socket pair.
    Local(SocketChannel),
    /// A Xen port.
    Xen(XenEvent),
}

impl AsFd for AutoEvent {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AutoEvent::Local(e) => e.as_fd(),
            AutoEvent::Xen(e) => e.as_fd(),
        }
    }
}

impl EventChannel for AutoEvent {
    fn notify(&self) -> io::Result<()> {
        match self {
            AutoEvent::Local(e) => e.notify(),
            AutoEvent::Xen(e) => e.notify(),
        }
    }
    fn consume(&self) -> io::Result<bool> {
        match self {
            AutoEvent::Local(e) => e.consume(),
            AutoEvent::Xen(e) => e.consume(),
        }
    }
    fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        match self {
            AutoEvent::Local(e) => e.wait(timeout),
            AutoEvent::Xen(e) => e.wait(timeout),
        }
    }
    fn wakeup(&self) -> io::Result<Wakeup> {
        match self {
            AutoEvent::Local(e) => e.wakeup(),
            AutoEvent::Xen(e) => e.wakeup(),
        }
    }
}

// ------------------------------------------------------------------ guest ---

/// The guest side of the auto platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoGuest;

impl AutoGuest {
    /// Attaches with an explicit choice (tests and tools).
    ///
    /// # Errors
    /// As the chosen platform's `attach`.
    pub fn attach_with(
        choice: Choice,
        target: &LocalTarget,
        timeout: Duration,
    ) -> io::Result<AutoLink> {
        match choice.resolve_guest() {
            Choice::Xen => Ok(AutoLink::Xen(Box::new(XenGuest::attach(
                &XenTarget::default(),
                timeout,
            )?))),
            _ => Ok(AutoLink::Local(LocalGuest::attach(target, timeout)?)),
        }
    }
}

impl GuestPlatform for AutoGuest {
    type Target = LocalTarget;
    type Pages = AutoGuestPages;
    type Event = AutoEvent;
    type Link = AutoLink;

    /// `$MX_PLATFORM` decides (see the module docs).
    fn attach(target: &LocalTarget, timeout: Duration) -> io::Result<AutoLink> {
        Self::attach_with(Choice::from_env()?, target, timeout)
    }
}

/// A guest's link: local or Xen.
#[derive(Debug)]
pub enum AutoLink {
    /// A Unix socket.
    Local(LocalLink),
    /// A xenbus device and its control ring.
    Xen(Box<XenLink>),
}

impl AsFd for AutoLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AutoLink::Local(l) => l.as_fd(),
            AutoLink::Xen(l) => l.as_fd(),
        }
    }
}

impl BackendLink<AutoGuest> for AutoLink {
    fn alloc_pages(&self, count: usize) -> io::Result<AutoGuestPages> {
        match self {
            AutoLink::Local(l) => l.alloc_pages(count).map(AutoGuestPages::Local),
            AutoLink::Xen(l) => l.alloc_pages(count).map(AutoGuestPages::Xen),
        }
    }

    fn peer_create(&self, pages: usize) -> io::Result<crate::platform::PeerOffer> {
        match self {
            AutoLink::Local(l) => l.peer_create(pages),
            AutoLink::Xen(l) => l.peer_create(pages),
        }
    }

    fn peer_needs_domain(&self) -> bool {
        match self {
            AutoLink::Local(l) => l.peer_needs_domain(),
            AutoLink::Xen(l) => l.peer_needs_domain(),
        }
    }

    fn peer_create_for(
        &self,
        pages: usize,
        domain: Option<u32>,
    ) -> io::Result<crate::platform::PeerOffer> {
        match self {
            AutoLink::Local(l) => l.peer_create_for(pages, domain),
            AutoLink::Xen(l) => l.peer_create_for(pages, domain),
        }
    }

    fn peer_offer(
        &self,
        offer: &crate::platform::PeerOffer,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        match self {
            AutoLink::Local(l) => l.peer_offer(offer, msg, reply, timeout),
            AutoLink::Xen(l) => l.peer_offer(offer, msg, reply, timeout),
        }
    }

    fn peer_accept(
        &self,
        pages: usize,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<(usize, Option<crate::platform::PeerEnd>)> {
        match self {
            AutoLink::Local(l) => l.peer_accept(pages, msg, reply, timeout),
            AutoLink::Xen(l) => l.peer_accept(pages, msg, reply, timeout),
        }
    }

    fn alloc_event(&self) -> io::Result<AutoEvent> {
        match self {
            AutoLink::Local(l) => l.alloc_event().map(AutoEvent::Local),
            AutoLink::Xen(l) => l.alloc_event().map(AutoEvent::Xen),
        }
    }

    fn bulk_pool(&self) -> Option<std::sync::Arc<dyn crate::platform::SharedMem>> {
        match self {
            AutoLink::Local(l) => l.bulk_pool(),
            AutoLink::Xen(l) => l.bulk_pool(),
        }
    }

    fn send(
        &self,
        msg: &[u8],
        resources: &[Resource<'_, AutoGuestPages, AutoEvent>],
        timeout: Duration,
    ) -> io::Result<()> {
        if resources.len() > MAX_RESOURCES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many resources",
            ));
        }
        match self {
            AutoLink::Local(l) => {
                let mut res = Vec::with_capacity(resources.len());
                for r in resources {
                    res.push(match r {
                        Resource::Pages(AutoGuestPages::Local(p)) => Resource::Pages(p),
                        Resource::Event(AutoEvent::Local(e)) => Resource::Event(e),
                        _ => return Err(mismatch()),
                    });
                }
                l.send(msg, &res, timeout)
            }
            AutoLink::Xen(l) => {
                let mut res = Vec::with_capacity(resources.len());
                for r in resources {
                    res.push(match r {
                        Resource::Pages(AutoGuestPages::Xen(p)) => Resource::Pages(p),
                        Resource::Event(AutoEvent::Xen(e)) => Resource::Event(e),
                        _ => return Err(mismatch()),
                    });
                }
                l.send(msg, &res, timeout)
            }
        }
    }

    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        match self {
            AutoLink::Local(l) => l.recv(buf, timeout),
            AutoLink::Xen(l) => l.recv(buf, timeout),
        }
    }
}

// ------------------------------------------------------------------- host ---

/// How an auto backend listens: the choice, and each platform's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoHostConfig {
    /// Which platform ([`Choice::Auto`]: Xen if the devices are there).
    pub platform: Choice,
    /// Settings if local.
    pub local: LocalHostConfig,
    /// Settings if Xen.
    pub xen: XenHostConfig,
}

impl Default for AutoHostConfig {
    /// `$MX_PLATFORM` (else auto) and each platform's defaults.
    fn default() -> Self {
        AutoHostConfig {
            platform: Choice::from_env().unwrap_or_default(),
            local: LocalHostConfig::default(),
            xen: XenHostConfig::default(),
        }
    }
}

/// The host side of the auto platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoHost;

impl HostPlatform for AutoHost {
    type Config = AutoHostConfig;
    type GuestId = AutoGuestId;
    type Pages = AutoHostPages;
    type Event = AutoEvent;
    type Memory = AutoMemory;
    type Resources = AutoResources;
    type Conn = AutoConn;
    type Listener = AutoListener;

    fn listen(config: &AutoHostConfig) -> io::Result<AutoListener> {
        match config.platform.resolve_host() {
            Choice::Xen => Ok(AutoListener::Xen(Box::new(XenHost::listen(&config.xen)?))),
            _ => Ok(AutoListener::Local(LocalHost::listen(&config.local)?)),
        }
    }
}

/// A guest's identity: a process or a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoGuestId {
    /// A local process.
    Local(PeerCred),
    /// A Xen domain's device.
    Xen(XenGuestId),
}

impl fmt::Display for AutoGuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutoGuestId::Local(c) => c.fmt(f),
            AutoGuestId::Xen(x) => x.fmt(f),
        }
    }
}

/// The listener of the chosen platform.
#[derive(Debug)]
pub enum AutoListener {
    /// A Unix socket.
    Local(LocalListener),
    /// xenstore watches.
    Xen(Box<XenListener>),
}

impl AutoListener {
    /// The platform this listener serves.
    pub fn choice(&self) -> Choice {
        match self {
            AutoListener::Local(_) => Choice::Local,
            AutoListener::Xen(_) => Choice::Xen,
        }
    }
}

impl AsFd for AutoListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AutoListener::Local(l) => l.as_fd(),
            AutoListener::Xen(l) => l.as_fd(),
        }
    }
}

impl GuestListener<AutoHost> for AutoListener {
    fn accept(&self) -> io::Result<Option<AutoConn>> {
        match self {
            AutoListener::Local(l) => Ok(l.accept()?.map(AutoConn::Local)),
            AutoListener::Xen(l) => Ok(l.accept()?.map(|c| AutoConn::Xen(Box::new(c)))),
        }
    }
}

/// A connection to one guest.
#[derive(Debug)]
pub enum AutoConn {
    /// A Unix socket.
    Local(LocalConn),
    /// A xenbus device's control ring.
    Xen(Box<XenConn>),
}

impl AsFd for AutoConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AutoConn::Local(c) => c.as_fd(),
            AutoConn::Xen(c) => c.as_fd(),
        }
    }
}

fn map_incoming<R>(i: Incoming<R>, f: impl FnOnce(R) -> AutoResources) -> Incoming<AutoResources> {
    match i {
        Incoming::Request { len, resources } => Incoming::Request {
            len,
            resources: f(resources),
        },
        Incoming::Empty => Incoming::Empty,
        Incoming::Closed => Incoming::Closed,
    }
}

impl GuestConn<AutoHost> for AutoConn {
    fn guest_id(&self) -> AutoGuestId {
        match self {
            AutoConn::Local(c) => AutoGuestId::Local(c.guest_id()),
            AutoConn::Xen(c) => AutoGuestId::Xen(c.guest_id()),
        }
    }

    fn is_privileged(&self) -> bool {
        match self {
            AutoConn::Local(c) => c.is_privileged(),
            AutoConn::Xen(c) => c.is_privileged(),
        }
    }

    fn principal(&self) -> u64 {
        match self {
            AutoConn::Local(c) => c.principal(),
            AutoConn::Xen(c) => c.principal(),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Incoming<AutoResources>> {
        match self {
            AutoConn::Local(c) => Ok(map_incoming(c.recv(buf)?, AutoResources::Local)),
            AutoConn::Xen(c) => Ok(map_incoming(c.recv(buf)?, AutoResources::Xen)),
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        match self {
            AutoConn::Local(c) => c.send(msg),
            AutoConn::Xen(c) => c.send(msg),
        }
    }

    fn memory(&self) -> AutoMemory {
        match self {
            AutoConn::Local(c) => AutoMemory::Local(c.memory()),
            AutoConn::Xen(c) => AutoMemory::Xen(c.memory()),
        }
    }

    fn gone(&self) -> bool {
        match self {
            AutoConn::Local(c) => c.gone(),
            AutoConn::Xen(c) => c.gone(),
        }
    }

    fn peer_domain(&self) -> Option<u32> {
        match self {
            AutoConn::Local(c) => c.peer_domain(),
            AutoConn::Xen(c) => c.peer_domain(),
        }
    }

    fn send_peer(&self, msg: &[u8], grant: crate::platform::PeerGrant) -> io::Result<()> {
        match self {
            AutoConn::Local(c) => c.send_peer(msg, grant),
            AutoConn::Xen(c) => c.send_peer(msg, grant),
        }
    }
}

/// Resources received with one request.
#[derive(Debug)]
pub enum AutoResources {
    /// Descriptors.
    Local(LocalResources),
    /// Grant references and ports.
    Xen(XenResources),
}

impl ReceivedResources<AutoHost> for AutoResources {
    fn len(&self) -> usize {
        match self {
            AutoResources::Local(r) => r.len(),
            AutoResources::Xen(r) => r.len(),
        }
    }

    fn kind(&self, slot: usize) -> Option<ResourceKind> {
        match self {
            AutoResources::Local(r) => r.kind(slot),
            AutoResources::Xen(r) => r.kind(slot),
        }
    }

    fn take_pages(&mut self, slot: usize, expected_pages: usize) -> io::Result<AutoHostPages> {
        match self {
            AutoResources::Local(r) => r.take_pages(slot, expected_pages).map(AutoHostPages::Local),
            AutoResources::Xen(r) => r.take_pages(slot, expected_pages).map(AutoHostPages::Xen),
        }
    }

    fn take_event(&mut self, slot: usize) -> io::Result<AutoEvent> {
        match self {
            AutoResources::Local(r) => r.take_event(slot).map(AutoEvent::Local),
            AutoResources::Xen(r) => r.take_event(slot).map(AutoEvent::Xen),
        }
    }

    fn take_peer(&mut self, pages: usize) -> io::Result<crate::platform::PeerGrant> {
        match self {
            AutoResources::Local(r) => r.take_peer(pages),
            AutoResources::Xen(r) => r.take_peer(pages),
        }
    }
}

/// Bulk access to one guest's memory. Regions are neutral [`GuestRange`]s:
/// process addresses on local, pool offsets on Xen.
#[derive(Debug, Clone)]
pub enum AutoMemory {
    /// `process_vm_readv`/`writev`.
    Local(ProcessMemory),
    /// The guest's granted pool.
    Xen(XenMemory),
}

impl GuestMemory for AutoMemory {
    type Region = GuestRange;

    fn total_len(segments: &[GuestRange]) -> io::Result<u64> {
        ProcessMemory::total_len(segments)
    }

    fn read(&self, segments: &[GuestRange], offset: u64, dst: &mut [u8]) -> io::Result<()> {
        match self {
            AutoMemory::Local(m) => m.read(segments, offset, dst),
            AutoMemory::Xen(m) => m.read_spans(segments, offset, dst),
        }
    }

    fn write(&self, segments: &[GuestRange], offset: u64, src: &[u8]) -> io::Result<()> {
        match self {
            AutoMemory::Local(m) => m.write(segments, offset, src),
            AutoMemory::Xen(m) => m.write_spans(segments, offset, src),
        }
    }

    fn direct_pid(&self) -> Option<u32> {
        match self {
            AutoMemory::Local(m) => m.direct_pid(),
            AutoMemory::Xen(_) => None,
        }
    }

    fn copy_to(
        &self,
        src: &[GuestRange],
        to: &Self,
        dst: &[GuestRange],
        len: u64,
        bounce: &mut [u8],
    ) -> Result<(), crate::platform::CopyFault> {
        match (self, to) {
            (AutoMemory::Xen(a), AutoMemory::Xen(b)) => a.copy_spans_to(src, b, dst, len),
            (AutoMemory::Local(a), AutoMemory::Local(b)) => a.copy_to(src, b, dst, len, bounce),
            // One backend runs one platform, so this never happens; the
            // bounce copy would still be right.
            _ => crate::platform::copy_through(self, src, to, dst, len, bounce),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::local::LocalConn;
    use crate::platform::SharedMem;

    #[test]
    fn choices_parse_and_resolve() {
        assert_eq!(Choice::parse("LOCAL").unwrap(), Choice::Local);
        assert_eq!(Choice::parse(" xen\n").unwrap(), Choice::Xen);
        assert_eq!(Choice::parse("").unwrap(), Choice::Auto);
        assert!(Choice::parse("kvm").is_err());
        assert_eq!(Choice::Local.resolve_guest(), Choice::Local);
        assert_eq!(Choice::Xen.resolve_host(), Choice::Xen);
        if !xen::available() {
            assert_eq!(Choice::Auto.resolve_guest(), Choice::Local);
            assert_eq!(Choice::Auto.resolve_host(), Choice::Local);
        }
    }

    /// The auto types over a local socketpair: requests with resources,
    /// replies, bulk copies through neutral ranges.
    #[test]
    fn auto_types_forward_to_local() {
        let (link, conn) = LocalConn::pair().unwrap();
        let (link, conn) = (AutoLink::Local(link), AutoConn::Local(conn));
        assert!(matches!(conn.guest_id(), AutoGuestId::Local(_)));
        let pages = link.alloc_pages(2).unwrap();
        let ev = link.alloc_event().unwrap();
        pages.write_at(5, b"auto").unwrap();
        link.send(
            b"open",
            &[Resource::Pages(&pages), Resource::Event(&ev)],
            Duration::from_secs(5),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let mut res = loop {
            match conn.recv(&mut buf).unwrap() {
                Incoming::Request { len, resources } => {
                    assert_eq!(&buf[..len], b"open");
                    break resources;
                }
                Incoming::Empty => std::thread::sleep(Duration::from_millis(1)),
                Incoming::Closed => panic!("closed"),
            }
        };
        assert_eq!(res.len(), 2);
        assert_eq!(res.kind(1), Some(ResourceKind::Event));
        let hp = res.take_pages(0, 2).unwrap();
        let mut got = [0u8; 4];
        hp.read_at(5, &mut got).unwrap();
        assert_eq!(&got, b"auto");
        let hev = res.take_event(1).unwrap();
        hev.notify().unwrap();
        assert_eq!(
            ev.wait(Some(Duration::from_secs(5))).unwrap(),
            WaitOutcome::Notified
        );
        conn.send(b"ok").unwrap();
        assert_eq!(link.recv(&mut buf, Duration::from_secs(5)).unwrap(), 2);
        let data = [9u8; 16];
        let mut out = [0u8; 16];
        conn.memory()
            .read(&[GuestRange::of_slice(&data)], 0, &mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(
            AutoGuestId::Local(PeerCred::of_current_process()),
            conn.guest_id()
        );
    }
}
