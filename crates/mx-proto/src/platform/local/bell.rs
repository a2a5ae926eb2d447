//! The doorbell of a peer channel on the local platform: one end each of a
//! `SOCK_SEQPACKET` socket pair.
//!
//! Not an eventfd: the two ends of an eventfd are one open file
//! description, so a peer holding it could clear `O_NONBLOCK` on it, drain
//! it between our poll and our read, or fill its counter, and make us
//! block. A socket pair gives each side a description of its own, every
//! call says `MSG_DONTWAIT` itself, and the kernel reports the other side's
//! death as a hang-up on ours, whatever the peer does.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::platform::{sys, BellState, PeerBell};

/// One end of a local peer channel's doorbell.
#[derive(Debug)]
pub struct LocalBell {
    sock: OwnedFd,
}

impl LocalBell {
    /// A connected pair: ours and the one to hand to the peer.
    ///
    /// # Errors
    /// An OS error from `socketpair`.
    pub fn pair() -> io::Result<(LocalBell, LocalBell)> {
        let (a, b) = sys::seqpacket_pair()?;
        Ok((LocalBell { sock: a }, LocalBell { sock: b }))
    }

    /// The end a peer (or the backend) handed over, after checking that it
    /// is a Unix `SOCK_SEQPACKET` socket.
    ///
    /// # Errors
    /// `InvalidData` for any other descriptor.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        match sys::socket_kind(fd.as_fd()) {
            Ok((libc::AF_UNIX, libc::SOCK_SEQPACKET, false)) => Ok(LocalBell { sock: fd }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "peer doorbell is not a unix seqpacket socket",
            )),
        }
    }

    /// The descriptor, to forward it.
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.sock
    }
}

impl AsFd for LocalBell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl PeerBell for LocalBell {
    fn ring(&self) -> io::Result<()> {
        match sys::doorbell_ring(self.sock.as_fd()) {
            // The peer has unread rings queued: it will look anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    fn drain(&self) -> io::Result<BellState> {
        // One batch: rings left over keep the descriptor readable, so a
        // peer that rings faster than we drain cannot keep us here.
        match sys::doorbell_drain(self.sock.as_fd()) {
            Ok(_) => Ok(BellState::Rung),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(BellState::Quiet),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(BellState::HungUp)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_coalesce_and_a_closed_peer_is_a_hang_up() {
        let (a, b) = LocalBell::pair().unwrap();
        assert_eq!(b.drain().unwrap(), BellState::Quiet);
        a.ring().unwrap();
        a.ring().unwrap();
        assert_eq!(b.drain().unwrap(), BellState::Rung);
        assert_eq!(b.drain().unwrap(), BellState::Quiet);
        drop(a);
        assert_eq!(b.drain().unwrap(), BellState::HungUp);
        assert!(b.ring().is_err());
    }

    #[test]
    fn a_peer_that_floods_or_blocks_its_end_cannot_block_ours() {
        let (a, b) = LocalBell::pair().unwrap();
        // The peer fills our queue: its rings stop failing loudly, ours still work.
        for _ in 0..100_000 {
            if a.ring().is_err() {
                break;
            }
        }
        a.ring().unwrap();
        // It makes its own end blocking: our calls say MSG_DONTWAIT themselves.
        let flags = sys::get_status_flags(a.as_fd()).unwrap();
        sys::set_status_flags(a.as_fd(), flags & !libc::O_NONBLOCK).unwrap();
        b.ring().unwrap();
        while b.drain().unwrap() == BellState::Rung {}
        assert_eq!(b.drain().unwrap(), BellState::Quiet);
    }

    #[test]
    fn only_a_seqpacket_socket_is_a_bell() {
        let ev = sys::eventfd(false).unwrap();
        assert!(LocalBell::from_fd(ev).is_err());
        let (x, _y) = sys::seqpacket_pair().unwrap();
        assert!(LocalBell::from_fd(x).is_ok());
    }
}
