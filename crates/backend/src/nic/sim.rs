//! An in-memory wire for tests: NICs in one process connected through a
//! shared hub, with seeded loss, duplication and reordering.
//!
//! Each NIC has a pollable descriptor (an eventfd signalled when its queue
//! goes from empty to non-empty), so a backend on the hub sleeps like one
//! on a real interface. Dropping a NIC detaches it (frames to it are lost,
//! as on a cable pulled out); [`Hub::inject`] puts arbitrary bytes on the
//! wire (tests of malformed frames).

use super::{Nic, NicStats, Payload};
use mx_proto::platform::Wakeup;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

/// Fault injection of a simulated wire, in parts per million per frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Drop a frame.
    pub loss_ppm: u32,
    /// Deliver a frame twice.
    pub dup_ppm: u32,
    /// Hold a frame back behind the next one.
    pub reorder_ppm: u32,
    /// Seed of the fault generator.
    pub seed: u64,
}

struct Port {
    mac: [u8; 6],
    queue: VecDeque<Vec<u8>>,
    wake: Wakeup,
    /// The wake-up is pending (set when the queue became non-empty,
    /// cleared when the NIC drained it).
    signalled: bool,
    attached: bool,
}

impl Port {
    fn push(&mut self, frame: Vec<u8>) {
        if !self.attached {
            return;
        }
        self.queue.push_back(frame);
        if !self.signalled {
            self.signalled = true;
            let _ = self.wake.wake();
        }
    }
}

#[derive(Default)]
struct HubState {
    ports: Vec<Port>,
    held: Option<(usize, Vec<u8>)>,
    rng: u64,
    faults: Faults,
}

impl HubState {
    /// Ports a frame to `dst` from port `from` reaches.
    fn targets(&self, from: Option<usize>, dst: [u8; 6]) -> Vec<usize> {
        self.ports
            .iter()
            .enumerate()
            .filter(|(i, p)| Some(*i) != from && p.attached && (dst == [0xff; 6] || p.mac == dst))
            .map(|(i, _)| i)
            .collect()
    }
}

/// The wire all [`SimNic`]s of a test share (a switch: unicast by
/// destination MAC, broadcast to every other port).
#[derive(Clone, Default)]
pub struct Hub(Arc<Mutex<HubState>>);

impl Hub {
    /// A hub with these faults.
    pub fn new(faults: Faults) -> Self {
        let hub = Hub::default();
        {
            let mut st = hub.0.lock().unwrap_or_else(|p| p.into_inner());
            st.faults = faults;
            st.rng = faults.seed | 1;
        }
        hub
    }

    /// Change the faults from now on (the fault generator keeps its state).
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.faults = faults;
    }

    /// Put `frame` on the wire as is (no MTU check, no padding, no
    /// faults): delivered to the port with its destination MAC (bytes
    /// 0..6), or to every port when that is broadcast or the frame is
    /// shorter than 6 bytes.
    pub fn inject(&self, frame: &[u8]) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let dst: [u8; 6] = frame
            .get(..6)
            .and_then(|d| d.try_into().ok())
            .unwrap_or([0xff; 6]);
        for t in st.targets(None, dst) {
            st.ports[t].push(frame.to_vec());
        }
    }

    /// A new NIC on this hub.
    ///
    /// # Panics
    /// If the eventfd cannot be created.
    pub fn attach(&self, mac: [u8; 6], mtu: u32) -> SimNic {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let wake = Wakeup::new().expect("eventfd");
        st.ports.push(Port {
            mac,
            queue: VecDeque::new(),
            wake: wake.clone(),
            signalled: false,
            attached: true,
        });
        SimNic {
            wake,
            hub: self.clone(),
            port: st.ports.len() - 1,
            mac,
            mtu,
            queued: Vec::new(),
            stats: NicStats::default(),
        }
    }
}

fn chance(rng: &mut u64, ppm: u32) -> bool {
    // xorshift64*
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let v = rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (v % 1_000_000) < u64::from(ppm)
}

/// A NIC on a [`Hub`].
pub struct SimNic {
    wake: Wakeup,
    hub: Hub,
    port: usize,
    mac: [u8; 6],
    mtu: u32,
    queued: Vec<Vec<u8>>,
    stats: NicStats,
}

impl Nic for SimNic {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.wake.as_fd())
    }

    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let frame = {
                let mut st = self.hub.0.lock().unwrap_or_else(|p| p.into_inner());
                let port = &mut st.ports[self.port];
                let frame = port.queue.pop_front();
                if port.queue.is_empty() && port.signalled {
                    port.signalled = false;
                    let _ = port.wake.consume();
                }
                frame
            };
            let Some(frame) = frame else { break };
            f(&frame);
            n += 1;
        }
        self.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn send(&mut self, header: &[u8], payload: Payload<'_>) -> io::Result<()> {
        let len = header.len() + payload.len();
        if len > self.mtu as usize + 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame exceeds the MTU",
            ));
        }
        let mut frame = Vec::with_capacity(len.max(60));
        frame.extend_from_slice(header);
        match payload {
            Payload::None => {}
            Payload::Bytes(b) => frame.extend_from_slice(b),
            Payload::Shared { mem, offset, len } => {
                let start = frame.len();
                frame.resize(start + len, 0);
                mem.read_at(offset, &mut frame[start..])
                    .map_err(io::Error::from)?;
            }
        }
        if frame.len() < 60 {
            frame.resize(60, 0);
        }
        self.queued.push(frame);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut st = self.hub.0.lock().unwrap_or_else(|p| p.into_inner());
        let faults = st.faults;
        for frame in self.queued.drain(..) {
            self.stats.tx_frames += 1;
            if chance(&mut st.rng, faults.loss_ppm) {
                continue;
            }
            let copies = if chance(&mut st.rng, faults.dup_ppm) {
                2
            } else {
                1
            };
            let dst: [u8; 6] = frame[..6].try_into().unwrap_or([0xff; 6]);
            for t in st.targets(Some(self.port), dst) {
                for _ in 0..copies {
                    if chance(&mut st.rng, faults.reorder_ppm) && st.held.is_none() {
                        st.held = Some((t, frame.clone()));
                        continue;
                    }
                    st.ports[t].push(frame.clone());
                    if let Some((ht, held)) = st.held.take() {
                        st.ports[ht].push(held);
                    }
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> NicStats {
        self.stats
    }
}

impl Drop for SimNic {
    fn drop(&mut self) {
        let mut st = self.hub.0.lock().unwrap_or_else(|p| p.into_inner());
        let port = &mut st.ports[self.port];
        port.attached = false;
        port.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_broadcast_inject_and_detach() {
        let hub = Hub::new(Faults::default());
        let mut a = hub.attach([2, 0, 0, 0, 0, 1], 9000);
        let mut b = hub.attach([2, 0, 0, 0, 0, 2], 9000);
        let mut c = hub.attach([2, 0, 0, 0, 0, 3], 9000);
        let mut frame = vec![0u8; 20];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        a.send(&frame, Payload::Bytes(b"xyz")).unwrap();
        a.flush().unwrap();
        let mut got = Vec::new();
        b.recv_batch(8, &mut |f| got.push(f.to_vec())).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 60, "padded");
        assert_eq!(&got[0][20..23], b"xyz");
        assert_eq!(c.recv_batch(8, &mut |_| {}).unwrap(), 0);
        // The descriptor was signalled and is consumed by the drain.
        assert!(!b.wake.consume().unwrap());
        hub.inject(&[0xff; 3]);
        assert_eq!(
            a.recv_batch(8, &mut |f| assert_eq!(f, [0xff; 3])).unwrap(),
            1
        );
        assert_eq!(c.recv_batch(8, &mut |_| {}).unwrap(), 1);
        // Oversized frames are refused by send.
        assert!(a.send(&vec![0u8; 9015], Payload::None).is_err());
        drop(b);
        a.send(&frame, Payload::None).unwrap();
        a.flush().unwrap();
        let b2 = hub.attach([2, 0, 0, 0, 0, 2], 9000);
        let mut b2 = b2;
        assert_eq!(
            b2.recv_batch(8, &mut |_| {}).unwrap(),
            0,
            "lost while detached"
        );
    }
}
