//! Event channels of the local platform: a doorbell socket pair.
//!
//! # Why not eventfds
//!
//! A descriptor passed with `SCM_RIGHTS` shares its open file description
//! with the sender, so a guest can clear `O_NONBLOCK` on anything it hands
//! the backend, and an eventfd has no per-call non-blocking write (its
//! `pwritev2(RWF_NOWAIT)` is `EOPNOTSUPP`): a guest that saturated the
//! host→guest counter and cleared the flag made the backend's next notify
//! block for ever. A Unix socket takes `MSG_DONTWAIT` on every `send` and
//! `recv`, a flag of the call that nothing the guest does to the file
//! description can change. So both directions of a channel are one
//! connected `SOCK_SEQPACKET` pair: notifying sends a one-byte datagram,
//! consuming takes every queued datagram in one `recvmmsg`. A full send
//! buffer means the peer has unread doorbells, so the peer will wake
//! anyway: that notify is already delivered. Notifications coalesce at the
//! consumer (one drain takes them all), as an eventfd's counter did.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::platform::sys;
use crate::platform::{EventChannel, WaitOutcome, Wakeup};

/// Drain batches one [`EventChannel::consume`] takes at most.
const CONSUME_ROUNDS: usize = 8;

/// One end of a local event channel: one end of a connected
/// `SOCK_SEQPACKET` pair.
///
/// The guest creates the pair ([`new_guest`](Self::new_guest)), keeps one
/// end and sends the other to the host, which checks it
/// ([`from_guest_fd`](Self::from_guest_fd)). Each side's end is readable
/// when the other side notified; each side's sends and receives carry
/// `MSG_DONTWAIT`, so neither can be made to block by the other.
#[derive(Debug)]
pub struct SocketChannel {
    sock: OwnedFd,
    /// The end the guest sends to its host (guest ends only, until sent:
    /// then the guest closes its copy, so that the host closing its end is
    /// a hang-up the guest sees).
    peer: Mutex<Option<OwnedFd>>,
    wake: OnceLock<Wakeup>,
}

impl SocketChannel {
    /// A guest end with a fresh socket pair.
    ///
    /// # Errors
    /// An OS error from `socketpair`.
    pub fn new_guest() -> io::Result<Self> {
        let (guest, host) = sys::seqpacket_pair()?;
        Ok(SocketChannel {
            sock: guest,
            peer: Mutex::new(Some(host)),
            wake: OnceLock::new(),
        })
    }

    /// Both ends in one process (embedded use and tests): `(guest, host)`.
    ///
    /// # Errors
    /// An OS error from `socketpair` or `dup`.
    pub fn pair() -> io::Result<(Self, Self)> {
        let guest = Self::new_guest()?;
        let host = Self::from_guest_fd(guest.host_end()?)?;
        guest.host_end_sent();
        Ok((guest, host))
    }

    /// A duplicate of the descriptor a guest end sends to its host.
    ///
    /// # Errors
    /// `InvalidInput` on a host end or once sent; an OS error from `dup`.
    pub(crate) fn host_end(&self) -> io::Result<OwnedFd> {
        let peer = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        peer.as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host end to send"))?
            .try_clone()
    }

    /// The host end was sent: close the guest's copy.
    pub(crate) fn host_end_sent(&self) {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The host end, from the descriptor a guest sent, after checking that
    /// it is a connected Unix `SOCK_SEQPACKET` socket (not a listener).
    ///
    /// # Errors
    /// `InvalidData` if the descriptor is unsuitable.
    pub fn from_guest_fd(sock: OwnedFd) -> io::Result<Self> {
        let bad = |why: &'static str| io::Error::new(io::ErrorKind::InvalidData, why);
        let (domain, ty, listening) = sys::socket_kind(sock.as_fd())
            .map_err(|_| bad("event channel descriptor is not a socket"))?;
        if domain != libc::AF_UNIX || ty != libc::SOCK_SEQPACKET || listening {
            return Err(bad(
                "event channel is not a connected unix seqpacket socket",
            ));
        }
        Ok(SocketChannel {
            sock,
            peer: Mutex::new(None),
            wake: OnceLock::new(),
        })
    }

    fn wake_handle(&self) -> io::Result<&Wakeup> {
        if let Some(w) = self.wake.get() {
            return Ok(w);
        }
        // A racing initialiser may win; ours is then dropped.
        let _ = self.wake.set(Wakeup::new()?);
        Ok(self.wake.get().expect("wakeup initialised above"))
    }
}

impl AsFd for SocketChannel {
    /// The descriptor that becomes readable when the peer notifies (or
    /// hangs up when the peer closed its end).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl EventChannel for SocketChannel {
    fn notify(&self) -> io::Result<()> {
        match sys::doorbell_ring(self.sock.as_fd()) {
            // The peer has unread doorbells: it will wake anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.notify(),
            other => other,
        }
    }

    /// `Ok(true)` if notifications were pending (all are taken);
    /// `UnexpectedEof` once the peer closed its end.
    fn consume(&self) -> io::Result<bool> {
        let mut any = false;
        // A peer that keeps ringing must not keep us here: at most
        // CONSUME_ROUNDS batches, then what is left wakes us again.
        for _ in 0..CONSUME_ROUNDS {
            match sys::doorbell_drain(self.sock.as_fd()) {
                Ok(n) if n == sys::DOORBELL_BATCH => any = true,
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(any)
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        let wake = self.wake_handle()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&wake.as_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match sys::ppoll(&mut fds, left) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(io::Error::other("event channel descriptor in error"));
            }
            // Another thread may consume first; then keep waiting. A peer
            // that closed its end shows as POLLHUP and an EOF from consume.
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 && self.consume()? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LONG: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn notify_wait_both_ways() {
        let (g, h) = SocketChannel::pair().unwrap();
        g.notify().unwrap();
        assert_eq!(h.wait(LONG).unwrap(), WaitOutcome::Notified);
        assert!(
            !g.consume().unwrap(),
            "a notification goes only to the peer"
        );
        h.notify().unwrap();
        assert_eq!(g.wait(LONG).unwrap(), WaitOutcome::Notified);
    }

    #[test]
    fn wait_times_out() {
        let (g, _h) = SocketChannel::pair().unwrap();
        let t0 = Instant::now();
        assert_eq!(
            g.wait(Some(Duration::from_millis(30))).unwrap(),
            WaitOutcome::TimedOut
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert_eq!(g.wait(Some(Duration::ZERO)).unwrap(), WaitOutcome::TimedOut);
    }

    #[test]
    fn notifications_coalesce() {
        let (g, h) = SocketChannel::pair().unwrap();
        for _ in 0..100 {
            g.notify().unwrap();
        }
        assert!(h.consume().unwrap());
        assert!(!h.consume().unwrap());
        for _ in 0..3 {
            g.notify().unwrap();
        }
        assert_eq!(h.wait(LONG).unwrap(), WaitOutcome::Notified);
        assert_eq!(
            h.wait(Some(Duration::from_millis(5))).unwrap(),
            WaitOutcome::TimedOut
        );
    }

    #[test]
    fn wakeup_interrupts_a_blocked_wait() {
        let (g, h) = SocketChannel::pair().unwrap();
        let g = Arc::new(g);
        let w = g.wakeup().unwrap();
        let g2 = Arc::clone(&g);
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            (g2.wait(LONG).unwrap(), t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        w.wake().unwrap();
        let (out, took) = t.join().unwrap();
        assert_eq!(out, WaitOutcome::Interrupted);
        assert!(took < Duration::from_secs(5));
        // one wake, one wait: nothing left over
        assert_eq!(
            g.wait(Some(Duration::from_millis(5))).unwrap(),
            WaitOutcome::TimedOut
        );
        // a pending notification wins and the wakeup waits for the next call
        w.wake().unwrap();
        h.notify().unwrap();
        assert_eq!(g.wait(LONG).unwrap(), WaitOutcome::Notified);
        assert_eq!(g.wait(LONG).unwrap(), WaitOutcome::Interrupted);
    }

    /// The attack of issue 14: the guest leaves every doorbell unread and
    /// clears `O_NONBLOCK` on both ends' file descriptions (it holds the
    /// host's as well, being the one that created it). Neither the host's
    /// notify nor its consume may block.
    #[test]
    fn host_never_blocks_when_the_guest_clears_nonblock_and_never_reads() {
        let g = SocketChannel::new_guest().unwrap();
        let host_copy = g.host_end().unwrap();
        let h = SocketChannel::from_guest_fd(g.host_end().unwrap()).unwrap();
        g.host_end_sent();
        for fd in [g.as_fd(), host_copy.as_fd()] {
            let fl = sys::get_status_flags(fd).unwrap();
            sys::set_status_flags(fd, fl & !libc::O_NONBLOCK).unwrap();
        }
        let h = Arc::new(h);
        let h2 = Arc::clone(&h);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Far more than a send buffer holds.
            let r: io::Result<()> = (0..100_000).try_for_each(|_| h2.notify());
            let c = h2.consume();
            tx.send((r.is_ok(), c.ok())).unwrap();
        });
        let got = rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            got,
            Ok((true, Some(false))),
            "the host blocked or failed on a guest that never reads"
        );
        // The guest still gets woken, and one consume takes everything.
        assert_eq!(g.wait(LONG).unwrap(), WaitOutcome::Notified);
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_busy_wakeup() {
        let (g, h) = SocketChannel::pair().unwrap();
        drop(h);
        let e = g.consume().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(g.wait(LONG).is_err());
    }

    #[test]
    fn host_end_checks_descriptors() {
        let g = SocketChannel::new_guest().unwrap();
        assert!(SocketChannel::from_guest_fd(g.host_end().unwrap()).is_ok());
        for not_ok in [
            sys::memfd_create("x").unwrap(),
            sys::eventfd(false).unwrap(),
        ] {
            let e = SocketChannel::from_guest_fd(not_ok).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // A listening socket is not a doorbell.
        let path = std::env::temp_dir().join(format!("mx-ev-unit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = sys::seqpacket_socket().unwrap();
        sys::bind_listen(l.as_fd(), &path, 1).unwrap();
        let _ = std::fs::remove_file(&path);
        let e = SocketChannel::from_guest_fd(l).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Nor is a stream socket.
        let mut fds = [0 as libc::c_int; 2];
        #[allow(unsafe_code)]
        // SAFETY: `fds` is a writable array of two ints.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        #[allow(unsafe_code)]
        // SAFETY: socketpair returned two fresh descriptors we now own.
        let (a, _b) = unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let e = SocketChannel::from_guest_fd(a).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
