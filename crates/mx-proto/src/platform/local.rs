//! The `local` platform: no hypervisor, a guest is a process.
//!
//! | piece | how |
//! |---|---|
//! | pages | [`MemfdPages`]: a memfd, sized, sealed against shrinking, `mmap(MAP_SHARED)`; the host maps the received descriptor as [`MappedPages`] |
//! | event channel | [`SocketChannel`]: a `SOCK_SEQPACKET` doorbell pair, both directions; every send and receive `MSG_DONTWAIT` |
//! | rendezvous | a Unix `SOCK_SEQPACKET` socket ([`DEFAULT_SOCKET_PATH`], or `$MX_BACKEND_SOCKET`); resources travel as `SCM_RIGHTS` |
//! | identity | [`PeerCred`] from `SO_PEERCRED`, plus a pidfd (`SO_PEERPIDFD`) |
//! | bulk copy | [`ProcessMemory`]: `process_vm_readv`/`writev` on [`GuestRange`]s |
//!
//! # Permissions
//!
//! `process_vm_readv`/`writev` need ptrace access to the guest process: the
//! backend must run as root (`CAP_SYS_PTRACE`) or as the same user as its
//! guests, with Yama's `ptrace_scope` at most 1 for the same-user case (a
//! backend that is not the guest's ancestor needs scope 0, or root). The
//! socket is created with mode 0666 by default so any user can attach; what
//! a guest can reach is decided by its credentials, which the kernel
//! reports, not by what it says.
//!
//! # Trust
//!
//! The host validates what it receives: pages must be a memfd of exactly
//! the expected size sealed with `F_SEAL_SHRINK` (the guest cannot
//! truncate it under the host's mapping and make the backend fault) and
//! `F_SEAL_SEAL` (no seal can be added later). Sealing does not stop the
//! guest from punching holes (`fallocate(PUNCH_HOLE)`): it can zero any
//! part of the host's view at any time, so nothing the host relies on
//! lives there unchecked (ring indices are re-checked at every refresh,
//! every slot is copied out before it is validated). An event channel must
//! be a connected Unix `SOCK_SEQPACKET` socket; the host sends and
//! receives on it with `MSG_DONTWAIT`, a flag of the call, so a guest that
//! clears `O_NONBLOCK` on the shared file description or never reads its
//! doorbells cannot make the host block ([`SocketChannel`]).

use std::time::Duration;

use super::Platform;

mod bell;
mod event;
mod pages;
mod rendezvous;
mod vm;

pub use bell::LocalBell;
pub use event::SocketChannel;
pub use pages::{MappedPages, MemfdPages};
pub use rendezvous::{
    LocalConn, LocalHostConfig, LocalLink, LocalListener, LocalResources, LocalTarget, PeerCred,
    DEFAULT_SOCKET_PATH, SOCKET_ENV,
};
pub use vm::{GuestRange, ProcessMemory};

/// The local platform: [`LocalGuest`] and [`LocalHost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalPlatform;

impl Platform for LocalPlatform {
    const NAME: &'static str = "local";
    type Guest = LocalGuest;
    type Host = LocalHost;
}

/// The guest side of the local platform (an application process).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalGuest;

impl super::GuestPlatform for LocalGuest {
    type Target = LocalTarget;
    type Pages = MemfdPages;
    type Event = SocketChannel;
    type Link = LocalLink;

    fn attach(target: &LocalTarget, timeout: Duration) -> std::io::Result<LocalLink> {
        LocalLink::connect(target, timeout)
    }
}

/// The host side of the local platform (the backend daemon process).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalHost;

impl super::HostPlatform for LocalHost {
    type Config = LocalHostConfig;
    type GuestId = PeerCred;
    type Pages = MappedPages;
    type Event = SocketChannel;
    type Memory = ProcessMemory;
    type Resources = LocalResources;
    type Conn = LocalConn;
    type Listener = LocalListener;

    fn listen(config: &LocalHostConfig) -> std::io::Result<LocalListener> {
        LocalListener::bind(config)
    }
}
