//! The `xen` platform: guests are Xen domains, the host is the backend's
//! domain (Dom0), everything through the Linux user-space devices (no kernel
//! module of ours).
//!
//! | piece | how |
//! |---|---|
//! | pages | [`GrantedPages`]: `/dev/xen/gntalloc` grants to the backend domain; the host maps them as [`MappedGrants`] with `/dev/xen/gntdev` (one batch per page set, one contiguous mapping) |
//! | event channel | [`XenEvent`]: `/dev/xen/evtchn`, one descriptor per port; the guest allocates an unbound port, the host binds it interdomain |
//! | rendezvous | xenstore ([`Xenstore`], [`xenbus`]): device `mx/<n>` and the XenbusState handshake; then a control ring ([`control`]) in 21 granted pages |
//! | resources by slot | grant-reference lists and ports written into the control frame after the message (see [`control`]) |
//! | identity | [`XenGuestId`]: the domid in the xenstore path of the device, never what the guest says |
//! | bulk copy | [`XenMemory`]: the guest's pool, granted once per attachment and mapped once; a [`XenRegion`] is an offset and length in it |
//! | peer channels | the offering guest grants the channel to the other guest's domain (which the backend tells it) and allocates an unbound port for it; the refs and the port travel as numbers in a peer frame ([`XenPeerGrant`]); the acceptor maps them with gntdev and binds the port; the doorbell is a [`XenBell`]; the backend never maps them and posts `PeerClosed` when either side goes (event channels do not hang up) |
//!
//! # Who creates the device directories
//!
//! `xl` creates xenstore directories only for device types it knows. The
//! host's listener does it itself (like a toolstack hotplug step): it
//! watches `@introduceDomain` and, for every domain it has not seen, writes
//! `device/mx/<n>` and `backend/mx/<domid>/<n>` for `n` in
//! `0..`[`XenHostConfig::slots`] with the right owners and permissions
//! ([`xenbus::create_devices`]). A deployment that prefers its toolstack to
//! do this turns [`XenHostConfig::create_devices`] off and runs
//! `tools/xen-testbed/mx-xen-devices.sh <domid>` from its domain-creation
//! hook instead. One slot is one attached guest process (a frontend); a
//! guest process claims a free slot under an `flock` in the guest
//! (`$MX_XEN_LOCK_DIR`, default `/run/lock`), so a slot left in use by a
//! process that died is reclaimed by the next one.
//!
//! # Bulk copies (large messages)
//!
//! User space cannot grant arbitrary existing pages, so a guest grants a
//! pool of [`XenTarget::pool_pages`] pages once, when it attaches; the host
//! maps it once and keeps it until the guest detaches. A [`XenRegion`] is
//! `(offset, len)` in that pool. Copies on the intra-node large path: the
//! sending library copies the user buffer into the pool (1), the backend
//! copies the sender's pool into the receiver's pool (2, through its bounce
//! buffer today: 3), the receiving library copies out of its pool (4).
//! See docs/XEN.md for what the library still has to do to use it.
//!
//! # Counters
//!
//! [`stats`] counts granted pages, mapped pages and bound ports of this
//! process, so a backend (or a test) can check that a guest's resources were
//! released.

use std::time::Duration;

use super::Platform;

pub mod control;
mod evtchn;
mod grant;
mod guest;
mod host;
mod sys;
pub mod xenbus;
pub mod xenstore;

pub use evtchn::{XenBell, XenEvent};
pub use grant::{DomId, GrantCopier, GrantRef, GrantedPages, MappedGrants};
pub use guest::{XenLink, XenTarget, DEVICE_ENV, LOCK_DIR_ENV, POOL_PAGES_ENV};
pub use host::{
    XenConn, XenGuestId, XenHostConfig, XenListener, XenMemory, XenRegion, XenResources,
};
pub use xenstore::Xenstore;

/// A peer channel's hand-over between two domains, as numbers: the grant
/// references of the channel's pages (granted by `from` to `to`) and the
/// unbound port `from` allocated for `to`.
///
/// The guest fills `from` with its own domid and `to` with the domain the
/// backend told it; the backend replaces `from` with the domid of the
/// offering guest's device path (never what the guest says) and checks
/// `to` against the accepting endpoint's domain before forwarding. The
/// hypervisor enforces the rest: only `to` can map the references or bind
/// the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenPeerGrant {
    /// The granting domain.
    pub from: DomId,
    /// The grantee domain.
    pub to: DomId,
    /// Grant references, one per page, in page order.
    pub refs: Vec<GrantRef>,
    /// The unbound port `from` allocated for `to`.
    pub port: u32,
}

/// True if this kernel exposes the Xen user-space devices this platform
/// needs (`/dev/xen/evtchn` and `/proc/xen`).
pub fn available() -> bool {
    std::path::Path::new("/dev/xen/evtchn").exists() && std::path::Path::new("/proc/xen").exists()
}

/// True if this domain is the control domain (Dom0): `/proc/xen/capabilities`
/// says `control_d`.
pub fn is_control_domain() -> bool {
    std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|c| c.contains("control_d"))
}

/// Resource counters of this process (all platform objects alive now).
pub mod stats {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Pages this process grants (guest side).
    pub static GRANTED_PAGES: AtomicUsize = AtomicUsize::new(0);
    /// Foreign pages this process maps (host side).
    pub static MAPPED_PAGES: AtomicUsize = AtomicUsize::new(0);
    /// Event-channel ports this process has bound.
    pub static BOUND_PORTS: AtomicUsize = AtomicUsize::new(0);

    pub(crate) fn add(c: &AtomicUsize, n: usize) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(c: &AtomicUsize, n: usize) {
        c.fetch_sub(n, Ordering::Relaxed);
    }

    /// `(granted pages, mapped pages, bound ports)` now.
    pub fn snapshot() -> (usize, usize, usize) {
        (
            GRANTED_PAGES.load(Ordering::Relaxed),
            MAPPED_PAGES.load(Ordering::Relaxed),
            BOUND_PORTS.load(Ordering::Relaxed),
        )
    }
}

/// The Xen platform: [`XenGuest`] and [`XenHost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct XenPlatform;

impl Platform for XenPlatform {
    const NAME: &'static str = "xen";
    type Guest = XenGuest;
    type Host = XenHost;
}

/// The guest side of the Xen platform (a process in a domU).
#[derive(Debug, Clone, Copy, Default)]
pub struct XenGuest;

impl super::GuestPlatform for XenGuest {
    type Target = XenTarget;
    type Pages = GrantedPages;
    type Event = XenEvent;
    type Link = XenLink;

    fn attach(target: &XenTarget, timeout: Duration) -> std::io::Result<XenLink> {
        XenLink::attach(target, timeout)
    }
}

/// The host side of the Xen platform (the backend daemon in Dom0).
#[derive(Debug, Clone, Copy, Default)]
pub struct XenHost;

impl super::HostPlatform for XenHost {
    type Config = XenHostConfig;
    type GuestId = XenGuestId;
    type Pages = MappedGrants;
    type Event = XenEvent;
    type Memory = XenMemory;
    type Resources = XenResources;
    type Conn = XenConn;
    type Listener = XenListener;

    fn listen(config: &XenHostConfig) -> std::io::Result<XenListener> {
        XenListener::listen(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{GuestPlatform, HostPlatform};
    use std::time::Instant;

    /// Where there is no Xen (CI, laptops) both sides fail at once with an
    /// OS error instead of hanging; the real thing runs in tools/xen-testbed.
    #[test]
    fn without_xen_both_sides_fail_fast() {
        if available() {
            return;
        }
        let t = Instant::now();
        assert!(XenGuest::attach(&XenTarget::default(), Duration::from_secs(5)).is_err());
        assert!(XenHost::listen(&XenHostConfig::default()).is_err());
        assert!(XenEvent::alloc_unbound(0).is_err());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(!is_control_domain());
        assert_eq!(stats::snapshot(), (0, 0, 0));
    }
}
