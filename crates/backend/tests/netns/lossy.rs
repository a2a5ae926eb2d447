//! A lossy switch for two hosts, made in user space (this kernel has no
//! `sch_netem`): in the switch namespace the ports `p0` and `p1` leave
//! `br0`, an AF_PACKET NIC opens on each (MXoE frames, EtherType 0x86DF,
//! only: all MX needs), and a forwarder thread moves frames `p0 -> p1` and
//! `p1 -> p0`, dropping, duplicating and reordering some of them with a
//! seeded generator. Reordering is a small hold-back: a frame is kept and
//! released right after the next one of its direction (or after
//! [`LossConfig::hold_max`] if none comes). The thread stops when the
//! [`LossySwitch`] is dropped.

#![allow(dead_code)]

use crate::netns::Net;
use backend::nic::af_packet::{PacketNic, PacketOpts};
use backend::nic::{Nic, Payload};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the forwarder does to frames, in parts per thousand.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    /// Seed of the generator (xorshift64; not 0).
    pub seed: u64,
    /// Frames dropped, per mille.
    pub loss_pm: u32,
    /// Frames sent twice, per mille.
    pub dup_pm: u32,
    /// Frames held back behind the next one, per mille.
    pub reorder_pm: u32,
    /// Longest a held frame waits for a next one.
    pub hold_max: Duration,
}

impl LossConfig {
    /// 5% loss, 2% duplication, 3% reordering.
    pub fn lossy(seed: u64) -> LossConfig {
        LossConfig {
            seed: seed | 1,
            loss_pm: 50,
            dup_pm: 20,
            reorder_pm: 30,
            hold_max: Duration::from_millis(5),
        }
    }
}

/// The forwarder's counters.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    send_errors: AtomicU64,
}

/// A snapshot of the forwarder's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossCounts {
    /// Frames read from either port.
    pub received: u64,
    /// Frames written to either port (duplicates included).
    pub forwarded: u64,
    /// Frames dropped on purpose.
    pub dropped: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames held back behind a later one.
    pub reordered: u64,
    /// Sends the NIC refused.
    pub send_errors: u64,
}

/// The forwarder between `p0` and `p1` of a two-host [`Net`]; stops (and
/// joins) on drop.
pub struct LossySwitch {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl LossySwitch {
    /// Detaches `p0` and `p1` from `br0` and starts forwarding between
    /// them with `cfg`. Panics if the NICs cannot be opened.
    pub fn start(net: &Net, cfg: LossConfig) -> LossySwitch {
        assert_eq!(net.hosts().len(), 2, "a lossy switch joins two hosts");
        let sw = net.switch_ns().to_owned();
        let mut nics = Vec::new();
        for h in net.hosts() {
            let port = h.switch_port.as_str();
            crate::netns::ip(&["-n", &sw, "link", "set", port, "nomaster"])
                .expect("detach the port from br0");
            let nic = PacketNic::open_in_netns(&sw, port, &PacketOpts::default())
                .unwrap_or_else(|e| panic!("AF_PACKET NIC on {port}: {e}"));
            nics.push(nic);
        }
        let b = nics.pop().expect("p1");
        let a = nics.pop().expect("p0");
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = {
            let stop = stop.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("lossy-switch".into())
                .spawn(move || forward(a, b, cfg, &stop, &counters))
                .expect("spawn the forwarder")
        };
        LossySwitch {
            stop,
            counters,
            thread: Some(thread),
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> LossCounts {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LossCounts {
            received: g(&c.received),
            forwarded: g(&c.forwarded),
            dropped: g(&c.dropped),
            duplicated: g(&c.duplicated),
            reordered: g(&c.reordered),
            send_errors: g(&c.send_errors),
        }
    }

    /// Stops the forwarder and returns its final counters.
    pub fn stop(mut self) -> LossCounts {
        self.halt();
        self.counts()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LossySwitch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One direction's hold-back slot.
#[derive(Default)]
struct Held {
    frame: Option<Vec<u8>>,
    since: Option<Instant>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `pm` per mille.
    fn chance(&mut self, pm: u32) -> bool {
        (self.next() % 1000) < u64::from(pm)
    }
}

fn send_one(nic: &mut PacketNic, frame: &[u8], c: &Counters) {
    let r = if frame.len() >= 14 {
        nic.send(frame, Payload::None)
    } else {
        Ok(())
    };
    match r {
        Ok(()) => {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Handles the frames `frames` read on one port, sending to `out`.
fn pass(
    frames: &mut Vec<Vec<u8>>,
    out: &mut PacketNic,
    held: &mut Held,
    cfg: &LossConfig,
    rng: &mut Rng,
    c: &Counters,
) {
    for f in frames.drain(..) {
        c.received.fetch_add(1, Ordering::Relaxed);
        if rng.chance(cfg.loss_pm) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if held.frame.is_none() && rng.chance(cfg.reorder_pm) {
            c.reordered.fetch_add(1, Ordering::Relaxed);
            held.frame = Some(f);
            held.since = Some(Instant::now());
            continue;
        }
        send_one(out, &f, c);
        if rng.chance(cfg.dup_pm) {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
            send_one(out, &f, c);
        }
        if let Some(h) = held.frame.take() {
            held.since = None;
            send_one(out, &h, c);
        }
    }
    // Nothing came after a held frame for too long: let it go.
    if held.since.is_some_and(|t| t.elapsed() >= cfg.hold_max) {
        if let Some(h) = held.frame.take() {
            send_one(out, &h, c);
        }
        held.since = None;
    }
    if out.flush().is_err() {
        c.send_errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn wait_either(a: RawFd, b: RawFd, ms: i32) {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfds for the whole call.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
}

fn forward(mut a: PacketNic, mut b: PacketNic, cfg: LossConfig, stop: &AtomicBool, c: &Counters) {
    let mut rng = Rng(cfg.seed | 1);
    let (fa, fb) = (
        a.poll_fd().expect("fd of p0").as_raw_fd(),
        b.poll_fd().expect("fd of p1").as_raw_fd(),
    );
    let mut held_ab = Held::default();
    let mut held_ba = Held::default();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut n = a
            .recv_batch(64, &mut |f| frames.push(f.to_vec()))
            .unwrap_or(0);
        pass(&mut frames, &mut b, &mut held_ab, &cfg, &mut rng, c);
        n += b
            .recv_batch(64, &mut |f| frames.push(f.to_vec()))
            .unwrap_or(0);
        pass(&mut frames, &mut a, &mut held_ba, &cfg, &mut rng, c);
        if n == 0 {
            // A held frame needs a timely release: wake up soon then.
            let ms = if held_ab.frame.is_some() || held_ba.frame.is_some() {
                1
            } else {
                20
            };
            wait_either(fa, fb, ms);
        }
    }
}
