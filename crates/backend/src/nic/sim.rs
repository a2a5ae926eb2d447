//! An in-memory wire for tests: NICs in one process connected through a
//! shared hub, with seeded loss, duplication and reordering.

use super::{Nic, NicStats, Payload};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
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

#[derive(Default)]
struct HubState {
    ports: Vec<([u8; 6], VecDeque<Vec<u8>>)>,
    held: Option<(usize, Vec<u8>)>,
    rng: u64,
    faults: Faults,
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

    /// A new NIC on this hub.
    pub fn attach(&self, mac: [u8; 6], mtu: u32) -> SimNic {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.ports.push((mac, VecDeque::new()));
        SimNic {
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

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let frame = {
                let mut st = self.hub.0.lock().unwrap_or_else(|p| p.into_inner());
                st.ports[self.port].1.pop_front()
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
            let targets: Vec<usize> = st
                .ports
                .iter()
                .enumerate()
                .filter(|(i, (mac, _))| *i != self.port && (dst == [0xff; 6] || *mac == dst))
                .map(|(i, _)| i)
                .collect();
            for t in targets {
                for _ in 0..copies {
                    if chance(&mut st.rng, faults.reorder_ppm) && st.held.is_none() {
                        st.held = Some((t, frame.clone()));
                        continue;
                    }
                    st.ports[t].1.push_back(frame.clone());
                    if let Some((ht, held)) = st.held.take() {
                        st.ports[ht].1.push_back(held);
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
