//! Event channels of the local platform: one eventfd per direction.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::platform::sys;
use crate::platform::{EventChannel, WaitOutcome, Wakeup};

/// One end of a local event channel.
///
/// Two eventfds: the end's `rx` becomes readable when the peer notifies,
/// `tx` is what the end writes to notify the peer. The guest creates both
/// ([`pair`](Self::pair) for the guest end), sends them to the host, and the
/// host's end is the same two descriptors with the roles swapped. The
/// counter of a non-semaphore eventfd sums increments, so notifications
/// coalesce until the receiver reads them.
#[derive(Debug)]
pub struct EventFdChannel {
    rx: OwnedFd,
    tx: OwnedFd,
    wake: OnceLock<Wakeup>,
}

impl EventFdChannel {
    /// A guest end with fresh eventfds.
    ///
    /// # Errors
    /// An OS error from `eventfd`.
    pub fn new_guest() -> io::Result<Self> {
        let to_host = sys::eventfd(false)?;
        let to_guest = sys::eventfd(false)?;
        Ok(EventFdChannel {
            rx: to_guest,
            tx: to_host,
            wake: OnceLock::new(),
        })
    }

    /// Both ends in one process (embedded use and tests): `(guest, host)`.
    ///
    /// # Errors
    /// An OS error from `eventfd` or `dup`.
    pub fn pair() -> io::Result<(Self, Self)> {
        let guest = Self::new_guest()?;
        let (to_host, to_guest) = guest.descriptors();
        let host = Self::from_guest_fds(
            to_host.try_clone_to_owned()?,
            to_guest.try_clone_to_owned()?,
        )?;
        Ok((guest, host))
    }

    /// The guest end's descriptors as sent to the host, in wire order:
    /// `(guest→host, host→guest)`.
    pub(crate) fn descriptors(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.tx.as_fd(), self.rx.as_fd())
    }

    /// The host end, from the two descriptors a guest sent, after checking
    /// that both are eventfds in non-blocking mode.
    ///
    /// # Errors
    /// `InvalidData` if either descriptor is unsuitable.
    pub fn from_guest_fds(to_host: OwnedFd, to_guest: OwnedFd) -> io::Result<Self> {
        check_eventfd(to_host.as_fd())?;
        check_eventfd(to_guest.as_fd())?;
        Ok(EventFdChannel {
            rx: to_host,
            tx: to_guest,
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

/// Checks that `fd` is an eventfd whose file description is non-blocking.
fn check_eventfd(fd: BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let bad = |why: &'static str| io::Error::new(io::ErrorKind::InvalidData, why);
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| bad("cannot identify event channel descriptor"))?;
    if link.as_os_str() != "anon_inode:[eventfd]" {
        return Err(bad("event channel descriptor is not an eventfd"));
    }
    if sys::get_status_flags(fd)? & libc::O_NONBLOCK == 0 {
        return Err(bad("event channel eventfd is not non-blocking"));
    }
    Ok(())
}

impl AsFd for EventFdChannel {
    /// The descriptor that becomes readable when the peer notifies.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl EventChannel for EventFdChannel {
    fn notify(&self) -> io::Result<()> {
        match sys::eventfd_write(self.tx.as_fd(), 1) {
            // Counter saturated: the peer has a notification pending anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    fn consume(&self) -> io::Result<bool> {
        match sys::eventfd_read(self.rx.as_fd()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        let wake = self.wake_handle()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&self.rx),
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
            // Another thread may consume first; then keep waiting.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LONG: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn notify_wait_both_ways() {
        let (g, h) = EventFdChannel::pair().unwrap();
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
        let (g, _h) = EventFdChannel::pair().unwrap();
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
        let (g, h) = EventFdChannel::pair().unwrap();
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
        let (g, h) = EventFdChannel::pair().unwrap();
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

    #[test]
    fn consume_does_not_block_when_the_peer_clears_nonblock() {
        let (g, h) = EventFdChannel::pair().unwrap();
        let (to_host, _) = g.descriptors();
        let fl = sys::get_status_flags(to_host).unwrap();
        sys::set_status_flags(to_host, fl & !libc::O_NONBLOCK).unwrap();
        let h = Arc::new(h);
        let h2 = Arc::clone(&h);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(h2.consume().unwrap()).unwrap());
        let got = rx.recv_timeout(Duration::from_secs(5));
        if got.is_err() {
            g.notify().unwrap(); // unblock the thread before failing
        }
        assert_eq!(got, Ok(false), "consume blocked on an empty eventfd");
    }

    #[test]
    fn host_end_checks_descriptors() {
        let g = EventFdChannel::new_guest().unwrap();
        let (a, b) = g.descriptors();
        assert!(EventFdChannel::from_guest_fds(
            a.try_clone_to_owned().unwrap(),
            b.try_clone_to_owned().unwrap()
        )
        .is_ok());
        let not_ev = sys::memfd_create("x").unwrap();
        let e =
            EventFdChannel::from_guest_fds(not_ev, b.try_clone_to_owned().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
