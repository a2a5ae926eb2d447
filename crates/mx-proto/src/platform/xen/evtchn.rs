//! Event channels: one `/dev/xen/evtchn` descriptor per bound port, so each
//! channel is its own pollable descriptor.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::grant::DomId;
use super::{stats, sys};
use crate::platform::{BellState, EventChannel, PeerBell, WaitOutcome, Wakeup};

/// One end of a Xen interdomain event channel.
///
/// The guest allocates an *unbound* port for its backend
/// ([`alloc_unbound`](Self::alloc_unbound)) and publishes its number; the
/// host binds the other end ([`bind_interdomain`](Self::bind_interdomain)).
/// The descriptor is non-blocking and becomes readable when the peer
/// notifies; the kernel masks the port until [`consume`](EventChannel::consume)
/// unmasks it. Dropping closes (unbinds) the port: the peer's end becomes
/// unbound and its notifications are dropped by the hypervisor.
#[derive(Debug)]
pub struct XenEvent {
    fd: OwnedFd,
    port: u32,
    remote: DomId,
    wake: OnceLock<Wakeup>,
}

impl XenEvent {
    /// A new port that domain `remote` may bind (guest side).
    ///
    /// # Errors
    /// An OS error from the device.
    pub fn alloc_unbound(remote: DomId) -> io::Result<Self> {
        let fd = sys::open_dev(sys::DEV_EVTCHN, true)?;
        let port = sys::evtchn_bind_unbound(fd.as_fd(), remote)?;
        stats::add(&stats::BOUND_PORTS, 1);
        Ok(XenEvent {
            fd,
            port,
            remote,
            wake: OnceLock::new(),
        })
    }

    /// Binds port `remote_port` of domain `remote` (host side).
    ///
    /// # Errors
    /// An OS error if the hypervisor refuses (the port is not an unbound
    /// port offered to us).
    pub fn bind_interdomain(remote: DomId, remote_port: u32) -> io::Result<Self> {
        let fd = sys::open_dev(sys::DEV_EVTCHN, true)?;
        let port = sys::evtchn_bind_interdomain(fd.as_fd(), remote, remote_port)?;
        stats::add(&stats::BOUND_PORTS, 1);
        Ok(XenEvent {
            fd,
            port,
            remote,
            wake: OnceLock::new(),
        })
    }

    /// The local port number (what a guest publishes).
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The domain at the other end.
    pub fn remote(&self) -> DomId {
        self.remote
    }

    fn wake_handle(&self) -> io::Result<&Wakeup> {
        if let Some(w) = self.wake.get() {
            return Ok(w);
        }
        let _ = self.wake.set(Wakeup::new()?);
        Ok(self.wake.get().expect("wakeup initialised above"))
    }
}

impl Drop for XenEvent {
    fn drop(&mut self) {
        let _ = sys::evtchn_unbind(self.fd.as_fd(), self.port);
        stats::sub(&stats::BOUND_PORTS, 1);
    }
}

impl AsFd for XenEvent {
    /// The evtchn descriptor: readable when the peer notified.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl EventChannel for XenEvent {
    fn notify(&self) -> io::Result<()> {
        sys::evtchn_notify(self.fd.as_fd(), self.port)
    }

    fn consume(&self) -> io::Result<bool> {
        let mut ports = [0u32; 8];
        let mut any = false;
        loop {
            let n = match sys::evtchn_read(self.fd.as_fd(), &mut ports) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(any);
            }
            any = true;
            // Only our port is bound on this descriptor; unmask it once.
            sys::evtchn_unmask(self.fd.as_fd(), &[self.port])?;
            if n < ports.len() {
                return Ok(true);
            }
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        let wake = self.wake_handle()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match crate::platform::sys::ppoll(&mut fds, left) {
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
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Ok(WaitOutcome::TimedOut);
                }
            }
        }
    }

    fn wakeup(&self) -> io::Result<Wakeup> {
        self.wake_handle().cloned()
    }
}

/// The doorbell of a peer channel between two domains: an interdomain
/// event channel, its own `/dev/xen/evtchn` descriptor (so it is one more
/// descriptor in the library's one wait, `EventChannel::wait_with`).
///
/// Ringing is `IOCTL_EVTCHN_NOTIFY`, draining reads and unmasks the port.
/// Notifications coalesce in the hypervisor's pending bit, so a peer cannot
/// flood us. An event channel does not hang up: when the other domain
/// closes its port or dies, ours reverts to unbound and notifications are
/// dropped silently, so [`PeerBell::drain`] never says
/// [`BellState::HungUp`]; the backend tells the survivor instead
/// (`Event::PeerClosed`).
#[derive(Debug)]
pub struct XenBell {
    ev: XenEvent,
}

impl XenBell {
    /// A doorbell over `ev` (an unbound port for the other domain, or the
    /// interdomain binding of its port).
    pub fn new(ev: XenEvent) -> Self {
        XenBell { ev }
    }

    /// The local port.
    pub fn port(&self) -> u32 {
        self.ev.port()
    }
}

impl AsFd for XenBell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ev.as_fd()
    }
}

impl PeerBell for XenBell {
    fn ring(&self) -> io::Result<()> {
        self.ev.notify()
    }

    fn drain(&self) -> io::Result<BellState> {
        Ok(if self.ev.consume()? {
            BellState::Rung
        } else {
            BellState::Quiet
        })
    }
}
