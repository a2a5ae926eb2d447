//! The loopback of the network path (`MX_DISABLE_SHMEM`).
//!
//! An endpoint opened with [`OpenFlags::DISABLE_SHMEM`] wants its traffic
//! with the other endpoints of this host to take the network path, not the
//! intra-node shortcut. The backend then encodes real MXoE frames with the
//! same code that feeds the NIC ([`super::send`], [`super::flush_tx`], the
//! pull replier), and every frame addressed to our own MAC is kept here
//! instead of reaching the NIC: a NIC would not hand it back (a frame to
//! ourselves never comes back from the switch), and the whole point is to
//! run our own receive path on it. [`super::service`] feeds the queued
//! frames to [`super::recv::Rx`] as if they had arrived from the NIC with
//! our own MAC as the source.
//!
//! The boundary is the [`Nic`] seam: everything above it (encoding, the
//! decoder and its checks, NACKs, the pull engine's PULL / PULL_REPLY
//! exchange and its retransmission, NOTIFY, TRUC) runs unchanged; only the
//! device is skipped. [`Port`] is that seam with the loopback in it, and
//! [`NoNic`] the device of a board without a NIC (the local platform's
//! default), so the network path exists there too.
//!
//! Frames are copied once into a recycled buffer at send time (a medium
//! fragment's send-queue slot may be reused as soon as `SendMediumDone` is
//! published), then decoded from it. This path is a debugging and testing
//! aid, so it favours fidelity over speed; the normal intra-node path never
//! touches it.
//!
//! [`OpenFlags::DISABLE_SHMEM`]: mx_proto::msg::control::OpenFlags::DISABLE_SHMEM

use crate::nic::{Nic, NicStats, Payload};
use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;

/// Shortest Ethernet frame (ETH_ZLEN, no FCS): shorter frames are padded.
const ETH_ZLEN: usize = 60;

/// Frame buffers kept for reuse once the queue drains: enough for the
/// frames of a few pull blocks without holding megabytes forever.
const SPARE_MAX: usize = 64;

/// Frames addressed to ourselves, in send order.
#[derive(Debug)]
pub struct Loopback {
    mac: [u8; 6],
    frame_max: usize,
    queue: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl Loopback {
    /// A loopback for the board with MAC `mac`, refusing frames longer
    /// than `frame_max` bytes (the wire profile's frame budget), as a NIC
    /// refuses frames beyond its MTU.
    pub fn new(mac: [u8; 6], frame_max: usize) -> Self {
        Loopback {
            mac,
            frame_max: frame_max.max(ETH_ZLEN),
            queue: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Our MAC: frames with it as their destination stay here.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether a frame with this head is ours to loop back.
    #[inline]
    pub fn is_for_us(&self, header: &[u8]) -> bool {
        header.get(..6) == Some(&self.mac[..])
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queue a copy of `header` followed by `payload`, zero-padded to 60
    /// bytes (what a NIC puts on the wire).
    ///
    /// # Errors
    /// `InvalidInput` if the frame exceeds the frame budget or a shared
    /// range is out of bounds (nothing is queued then).
    pub fn push(&mut self, header: &[u8], payload: Payload<'_>) -> io::Result<()> {
        let len = header.len() + payload.len();
        if len > self.frame_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame exceeds the wire profile's frame budget",
            ));
        }
        let mut frame = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.frame_max));
        frame.clear();
        frame.extend_from_slice(header);
        match payload {
            Payload::None => {}
            Payload::Bytes(b) => frame.extend_from_slice(b),
            Payload::Shared { mem, offset, len } => {
                let start = frame.len();
                frame.resize(start + len, 0);
                if let Err(e) = mem.read_at(offset, &mut frame[start..]) {
                    self.recycle(frame);
                    return Err(io::Error::from(e));
                }
            }
        }
        if frame.len() < ETH_ZLEN {
            frame.resize(ETH_ZLEN, 0);
        }
        self.queue.push_back(frame);
        Ok(())
    }

    /// Hand the oldest frame to `f`; false when none is queued.
    pub fn pop_with(&mut self, f: impl FnOnce(&[u8])) -> bool {
        let Some(frame) = self.queue.pop_front() else {
            return false;
        };
        f(&frame);
        self.recycle(frame);
        true
    }

    /// Forget every queued frame (the backend is stopping).
    pub fn clear(&mut self) {
        while let Some(f) = self.queue.pop_front() {
            self.recycle(f);
        }
    }

    fn recycle(&mut self, frame: Vec<u8>) {
        if self.spare.len() < SPARE_MAX {
            self.spare.push(frame);
        }
    }
}

/// The NIC seam as the wire code sends through it: frames to our own MAC
/// go to the [`Loopback`], every other frame to the device. Receiving,
/// flushing and the counters are the device's.
pub struct Port<'a> {
    /// The device.
    pub nic: &'a mut dyn Nic,
    /// Our own frames.
    pub lo: &'a mut Loopback,
}

impl Nic for Port<'_> {
    fn mac(&self) -> [u8; 6] {
        self.nic.mac()
    }

    fn mtu(&self) -> u32 {
        self.nic.mtu()
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.nic.poll_fd()
    }

    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        self.nic.recv_batch(max, f)
    }

    #[inline]
    fn send(&mut self, header: &[u8], payload: Payload<'_>) -> io::Result<()> {
        if self.lo.is_for_us(header) {
            self.lo.push(header, payload)
        } else {
            self.nic.send(header, payload)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.nic.flush()
    }

    fn stats(&self) -> NicStats {
        self.nic.stats()
    }
}

/// The device of a board without a NIC: nothing arrives, and a frame to
/// anyone but ourselves (which [`Port`] keeps) cannot leave. It lets such a
/// board run the network path for `MX_DISABLE_SHMEM` on the loopback.
#[derive(Debug)]
pub struct NoNic {
    mac: [u8; 6],
    mtu: u32,
}

impl NoNic {
    /// A device with the board's address and the profile's frame budget.
    pub fn new(mac: [u8; 6], mtu: u32) -> Self {
        NoNic { mac, mtu }
    }
}

impl Nic for NoNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn recv_batch(&mut self, _max: usize, _f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        Ok(0)
    }

    fn send(&mut self, _header: &[u8], _payload: Payload<'_>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this board has no NIC: only frames to ourselves are possible",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn stats(&self) -> NicStats {
        NicStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEM: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[derive(Default)]
    struct Recorder {
        sent: Vec<Vec<u8>>,
    }

    impl Nic for Recorder {
        fn mac(&self) -> [u8; 6] {
            US
        }
        fn mtu(&self) -> u32 {
            9000
        }
        fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
        fn recv_batch(&mut self, _: usize, _: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
            Ok(0)
        }
        fn send(&mut self, header: &[u8], _: Payload<'_>) -> io::Result<()> {
            self.sent.push(header.to_vec());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn stats(&self) -> NicStats {
            NicStats::default()
        }
    }

    fn head(dst: [u8; 6]) -> Vec<u8> {
        let mut h = vec![0u8; 16];
        h[..6].copy_from_slice(&dst);
        h[6..12].copy_from_slice(&US);
        h
    }

    #[test]
    fn frames_to_us_stay_others_reach_the_device() {
        let mut nic = Recorder::default();
        let mut lo = Loopback::new(US, 100);
        {
            let mut port = Port {
                nic: &mut nic,
                lo: &mut lo,
            };
            port.send(&head(US), Payload::Bytes(b"abc")).unwrap();
            port.send(&head(THEM), Payload::None).unwrap();
            port.send(&head(US), Payload::Bytes(&[7; 84])).unwrap();
            // Beyond the budget: refused like a NIC refuses its MTU.
            assert!(port.send(&head(US), Payload::Bytes(&[7; 85])).is_err());
        }
        assert_eq!(nic.sent.len(), 1);
        assert_eq!(&nic.sent[0][..6], &THEM);
        assert_eq!(lo.len(), 2);
        let mut got = Vec::new();
        while lo.pop_with(|f| got.push(f.to_vec())) {}
        assert_eq!(got[0].len(), 60, "padded to ETH_ZLEN");
        assert_eq!(&got[0][16..19], b"abc");
        assert!(got[0][19..].iter().all(|&b| b == 0));
        assert_eq!(got[1].len(), 100);
        assert!(lo.is_empty());
        // Buffers are recycled, not reallocated.
        assert_eq!(lo.spare.len(), 2);
        lo.push(&head(US), Payload::None).unwrap();
        assert_eq!(lo.spare.len(), 1);
        lo.clear();
        assert!(lo.is_empty());
    }

    #[test]
    fn no_nic_refuses_and_receives_nothing() {
        let mut n = NoNic::new(US, 9000);
        assert!(n.send(&head(THEM), Payload::None).is_err());
        assert_eq!(n.recv_batch(8, &mut |_| panic!("no frames")).unwrap(), 0);
        assert!(n.flush().is_ok());
        assert_eq!(n.mac(), US);
        assert!(n.poll_fd().is_none());
    }
}
