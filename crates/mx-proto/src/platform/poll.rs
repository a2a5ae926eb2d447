//! Waiting on many descriptors at once ([`Poller`], epoll) and interrupting
//! a blocked wait from another thread ([`Wakeup`], an eventfd).
//!
//! Both are platform-independent: the local platform's eventfds and
//! sockets, and Xen's `/dev/xen/evtchn` and xenbus descriptors, are all
//! pollable file descriptors.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bitflags::bitflags;

use super::sys;

bitflags! {
    /// Which readiness a [`Poller`] registration reports. Hang-up and error
    /// are always reported.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Interest: u32 {
        /// Readable (data, a notification, a pending connection, or EOF).
        const READABLE = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        /// Writable.
        const WRITABLE = libc::EPOLLOUT as u32;
    }
}

/// One readiness report from [`Poller::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollEvent {
    /// The token given at registration.
    pub token: u64,
    /// Readable (or the peer shut down its writing side).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// Hung up (for a connection: the peer is gone).
    pub hangup: bool,
    /// An error condition is pending on the descriptor.
    pub error: bool,
}

/// A caller-owned buffer of readiness reports, allocated once and reused
/// by every [`Poller::wait`] (no allocation per wait).
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Events {
    /// A buffer for up to `capacity` reports per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// Number of reports filled by the last wait.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the last wait reported nothing (timed out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The reports of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = PollEvent> + '_ {
        (0..self.len).filter_map(|i| self.get(i))
    }

    /// Report `i` of the last wait (a copy, so the caller may act on it
    /// while the `Events` is borrowed mutably again, without collecting).
    pub fn get(&self, i: usize) -> Option<PollEvent> {
        let e = self.buf[..self.len].get(i)?;
        let ev = e.events;
        Some(PollEvent {
            token: e.u64,
            readable: ev & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32) != 0,
            writable: ev & libc::EPOLLOUT as u32 != 0,
            hangup: ev & (libc::EPOLLHUP as u32 | libc::EPOLLRDHUP as u32) != 0,
            error: ev & libc::EPOLLERR as u32 != 0,
        })
    }
}

/// Level-triggered epoll over registered descriptors, each with a `u64`
/// token chosen by the caller.
///
/// **Deregister before dropping.** epoll tracks the open file description,
/// not the descriptor number: a host-side event channel or page descriptor
/// shares its description with the guest, so closing the host's descriptor
/// without [`delete`](Self::delete) leaves the registration alive (it keeps
/// reporting the old token while the guest holds its end). Call `delete`
/// before dropping a registered resource, and put a generation in tokens so
/// a stale report is recognised and ignored.
#[derive(Debug)]
pub struct Poller {
    epfd: OwnedFd,
}

impl Poller {
    /// A new, empty poller.
    ///
    /// # Errors
    /// An OS error from `epoll_create1`.
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            epfd: sys::epoll_create()?,
        })
    }

    /// Registers `fd` with `token` for `interest`.
    ///
    /// # Errors
    /// `AlreadyExists` if `fd` is registered, or an OS error.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        sys::epoll_ctl(
            self.epfd.as_fd(),
            libc::EPOLL_CTL_ADD,
            fd,
            interest.bits(),
            token,
        )
    }

    /// Changes the token or interest of a registered `fd`.
    ///
    /// # Errors
    /// `NotFound` if `fd` is not registered, or an OS error.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        sys::epoll_ctl(
            self.epfd.as_fd(),
            libc::EPOLL_CTL_MOD,
            fd,
            interest.bits(),
            token,
        )
    }

    /// Removes the registration of `fd`.
    ///
    /// # Errors
    /// `NotFound` if `fd` is not registered, or an OS error.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        sys::epoll_ctl(self.epfd.as_fd(), libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits until at least one registered descriptor is ready or `timeout`
    /// passes (`None` = no limit), filling `events`. Returns the number of
    /// reports (0 on timeout). A signal interrupting the wait also returns 0.
    ///
    /// # Errors
    /// An OS error from `epoll_wait`.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.len = 0;
        let n = match sys::epoll_wait(self.epfd.as_fd(), &mut events.buf, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        events.len = n;
        Ok(n)
    }
}

impl AsFd for Poller {
    /// The epoll descriptor itself, readable when any registration is ready
    /// (so a poller can be nested in another event loop).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epfd.as_fd()
    }
}

/// Interrupts a blocked wait from another thread of the same process: MX's
/// `mx_wakeup`, or a daemon's shutdown request.
///
/// A counting eventfd (`EFD_SEMAPHORE`): each [`wake`](Self::wake) ends one
/// wait, the current one or the next. Clones share the same descriptor.
/// It is also an ordinary pollable descriptor, so a backend can register it
/// with its [`Poller`] and call [`consume`](Self::consume) when it fires.
#[derive(Debug, Clone)]
pub struct Wakeup {
    fd: Arc<OwnedFd>,
}

impl Wakeup {
    /// A new wakeup with nothing pending.
    ///
    /// # Errors
    /// An OS error from `eventfd`.
    pub fn new() -> io::Result<Self> {
        Ok(Wakeup {
            fd: Arc::new(sys::eventfd(true)?),
        })
    }

    /// Ends one current or future wait. Never blocks.
    ///
    /// # Errors
    /// An OS error from `write` (not for a saturated counter).
    pub fn wake(&self) -> io::Result<()> {
        match sys::eventfd_write(self.fd.as_fd(), 1) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Takes one pending wake without blocking; `true` if there was one.
    ///
    /// # Errors
    /// An OS error from `read`.
    pub fn consume(&self) -> io::Result<bool> {
        match sys::eventfd_read(self.fd.as_fd()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Wakeup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Option<Duration> = Some(Duration::from_secs(5));

    #[test]
    fn wakeup_counts_and_polls() {
        let w = Wakeup::new().unwrap();
        let p = Poller::new().unwrap();
        p.add(w.as_fd(), 7, Interest::READABLE).unwrap();
        let mut ev = Events::with_capacity(4);
        assert_eq!(p.wait(&mut ev, Some(Duration::from_millis(10))).unwrap(), 0);
        assert!(ev.is_empty());
        w.wake().unwrap();
        w.clone().wake().unwrap();
        assert_eq!(p.wait(&mut ev, T).unwrap(), 1);
        let e = ev.iter().next().unwrap();
        assert_eq!(e.token, 7);
        assert!(e.readable && !e.hangup);
        assert!(w.consume().unwrap());
        assert!(w.consume().unwrap());
        assert!(!w.consume().unwrap());
        assert_eq!(p.wait(&mut ev, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn poller_reports_the_right_tokens() {
        let ws: Vec<Wakeup> = (0..5).map(|_| Wakeup::new().unwrap()).collect();
        let p = Poller::new().unwrap();
        for (i, w) in ws.iter().enumerate() {
            p.add(w.as_fd(), 100 + i as u64, Interest::READABLE)
                .unwrap();
        }
        ws[1].wake().unwrap();
        ws[3].wake().unwrap();
        let mut ev = Events::with_capacity(8);
        p.wait(&mut ev, T).unwrap();
        let mut toks: Vec<u64> = ev.iter().map(|e| e.token).collect();
        toks.sort_unstable();
        assert_eq!(toks, [101, 103]);
        // modify and delete
        p.modify(ws[3].as_fd(), 999, Interest::READABLE).unwrap();
        p.delete(ws[1].as_fd()).unwrap();
        p.wait(&mut ev, T).unwrap();
        assert_eq!(ev.iter().map(|e| e.token).collect::<Vec<_>>(), [999]);
        assert!(p.add(ws[3].as_fd(), 1, Interest::READABLE).is_err());
        // a small buffer reports at most its capacity
        for w in &ws {
            w.wake().unwrap();
        }
        let mut small = Events::with_capacity(2);
        assert_eq!(p.wait(&mut small, T).unwrap(), 2);
    }
}
