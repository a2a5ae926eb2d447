//! The one measurement method every transport goes through: ping-pong
//! (one-way latency = half the round trip, and ping-pong bandwidth) and
//! streaming, driven by the client; the server follows control messages
//! sent through the transport itself, so both sides always agree on sizes
//! and counts.
//!
//! Per size: a fixed warm-up, then as many timed round trips as fit the
//! plan's time budget (estimated from the warm-up, between a minimum and a
//! maximum count), each timed alone; then one untimed round trip of a known
//! pattern checks the bytes. Streaming: one warm-up trial, then timed
//! trials of `count` messages sent back to back (each transport keeps a
//! window of messages in flight), timed from the first send to the
//! receiver's acknowledgement.

use crate::record::{summarize, Record};
use std::time::{Duration, Instant};

/// Message sizes of the comparison (bytes).
pub const SIZES: [usize; 9] = [0, 8, 64, 1024, 4096, 32768, 65536, 1 << 20, 4 << 20];

/// The largest size.
pub const MAX_SIZE: usize = 4 << 20;

/// Control message: `[op, size, count]`.
pub type Ctl = [u64; 3];

/// Ping-pong phase: `count` echoes of `size`.
pub const OP_PINGPONG: u64 = 1;
/// Streaming phase: receive `count` messages of `size`, then acknowledge.
pub const OP_STREAM: u64 = 2;
/// Acknowledgement of a streaming phase.
pub const OP_ACK: u64 = 3;
/// The end: the server acknowledges and leaves.
pub const OP_END: u64 = 4;

/// How much to measure: `full` (the published figures) or `quick` (a few
/// seconds in all: checks that everything runs, numbers are rough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The quick plan.
    pub quick: bool,
}

/// Environment variable through which children learn the plan.
pub const PLAN_ENV: &str = "MXB_PLAN";

impl Plan {
    /// The plan named by `$MXB_PLAN` (`quick`, else full).
    pub fn from_env() -> Plan {
        Plan {
            quick: std::env::var(PLAN_ENV).is_ok_and(|v| v == "quick"),
        }
    }

    /// Untimed round trips before the timed ones.
    pub fn warmup(&self, size: usize) -> usize {
        match (self.quick, size) {
            (true, s) if s <= 65536 => 5,
            (true, _) => 1,
            (false, s) if s <= 4096 => 300,
            (false, s) if s <= 65536 => 50,
            (false, s) if s <= 1 << 20 => 8,
            (false, _) => 4,
        }
    }

    /// Fewest and most timed round trips.
    pub fn iter_bounds(&self, size: usize) -> (usize, usize) {
        match (self.quick, size) {
            (true, s) if s <= 65536 => (5, 50),
            (true, _) => (2, 3),
            (false, s) if s <= 4096 => (100, 20_000),
            (false, s) if s <= 65536 => (50, 5_000),
            (false, s) if s <= 1 << 20 => (20, 500),
            (false, _) => (10, 150),
        }
    }

    /// Time budget of the timed round trips of one size.
    pub fn latency_budget(&self) -> Duration {
        if self.quick {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(150)
        }
    }

    /// Longest warm-up of one size.
    pub fn warmup_max(&self) -> Duration {
        if self.quick {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        }
    }

    /// Timed streaming trials per size.
    pub fn stream_trials(&self) -> usize {
        if self.quick {
            1
        } else {
            3
        }
    }

    /// Target length of one streaming trial.
    pub fn stream_budget(&self) -> Duration {
        if self.quick {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        }
    }

    /// Most messages of one streaming trial.
    pub fn stream_max(&self) -> usize {
        if self.quick {
            200
        } else {
            200_000
        }
    }
}

/// Messages a streaming sender keeps in flight (and a receiver keeps
/// posted): up to 64 (as osu_bw), at most 16 MiB.
pub fn window(size: usize) -> usize {
    (16 << 20) / size.max(1)
}

/// [`window`] bounded to 1..=64.
pub fn window_len(size: usize) -> usize {
    window(size).clamp(1, 64)
}

/// Byte `i` of the check pattern for `salt`.
pub fn pattern_byte(i: usize, salt: u8) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(salt)
}

/// Fill `b` with the check pattern.
pub fn fill_pattern(b: &mut [u8], salt: u8) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = pattern_byte(i, salt);
    }
}

/// Whether `b` holds the check pattern.
pub fn is_pattern(b: &[u8], salt: u8) -> bool {
    b.iter()
        .enumerate()
        .all(|(i, &x)| x == pattern_byte(i, salt))
}

/// One side of a two-party message transport.
pub trait Transport {
    /// Smallest message (a byte stream has no empty message: 1).
    fn min_size(&self) -> usize {
        0
    }
    /// Largest message.
    fn max_size(&self) -> usize {
        MAX_SIZE
    }
    /// Send a control message.
    fn send_ctl(&mut self, c: Ctl);
    /// Receive a control message.
    fn recv_ctl(&mut self) -> Ctl;
    /// Client: put the check pattern in the first `size` bytes of what the
    /// next round trip sends.
    fn fill(&mut self, size: usize, salt: u8);
    /// Client: whether the last round trip brought the pattern back.
    fn check(&mut self, size: usize, salt: u8) -> bool;
    /// Client: send `size` bytes, receive the echo.
    fn round_trip(&mut self, size: usize);
    /// Server: receive `size` bytes and send back what was received.
    fn echo(&mut self, size: usize);
    /// Client: send `count` messages of `size` back to back; returns when
    /// every send is complete locally.
    fn stream_out(&mut self, size: usize, count: usize);
    /// Server: receive `count` messages of `size`.
    fn stream_in(&mut self, size: usize, count: usize);
}

/// Serve the client until it says [`OP_END`].
///
/// # Panics
/// On an unknown control message.
pub fn serve<T: Transport + ?Sized>(t: &mut T) {
    loop {
        let [op, size, count] = t.recv_ctl();
        let (size, count) = (size as usize, count as usize);
        match op {
            OP_PINGPONG => {
                for _ in 0..count {
                    t.echo(size);
                }
            }
            OP_STREAM => {
                t.stream_in(size, count);
                t.send_ctl([OP_ACK, size as u64, count as u64]);
            }
            OP_END => {
                t.send_ctl([OP_ACK, 0, 0]);
                return;
            }
            _ => panic!("bad control message {op}"),
        }
    }
}

/// What a client measures.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// `transport` of the records.
    pub transport: String,
    /// `mode` of the records.
    pub mode: String,
    /// Sizes to measure (those outside the transport's range are skipped).
    pub sizes: Vec<usize>,
    /// Also stream (sizes > 0).
    pub stream: bool,
    /// The plan.
    pub plan: Plan,
}

fn ctl_ok(c: Ctl, size: usize, what: &str) {
    assert!(
        c[0] == OP_ACK && c[1] == size as u64,
        "bad acknowledgement {c:?} of {what}"
    );
}

/// Run the client side: measure, hand every record to `out`, then end the
/// server.
///
/// # Panics
/// When the transport fails or an echo differs from what was sent.
pub fn run_client<T: Transport + ?Sized>(t: &mut T, o: &ClientOpts, out: &mut dyn FnMut(Record)) {
    let plan = o.plan;
    let sizes: Vec<usize> = o
        .sizes
        .iter()
        .copied()
        .filter(|&s| s >= t.min_size() && s <= t.max_size())
        .collect();
    let mut pp_bw = std::collections::HashMap::new();
    for &size in &sizes {
        // Warm-up in chunks, at most `warmup_max` long (a configuration
        // that collapses to the scheduler tick must not eat the run), timed
        // as a whole for the estimate.
        let warm = plan.warmup(size);
        let t0 = Instant::now();
        let mut done = 0;
        while done < warm && (done == 0 || t0.elapsed() < plan.warmup_max()) {
            let k = (warm - done).min(25);
            t.send_ctl([OP_PINGPONG, size as u64, k as u64]);
            for _ in 0..k {
                t.round_trip(size);
            }
            done += k;
        }
        let est = t0.elapsed().as_secs_f64() / done as f64;
        let (lo, hi) = plan.iter_bounds(size);
        let n = ((plan.latency_budget().as_secs_f64() / est.max(1e-9)) as usize).clamp(lo, hi);
        t.send_ctl([OP_PINGPONG, size as u64, n as u64]);
        let mut half = Vec::with_capacity(n);
        for _ in 0..n {
            let a = Instant::now();
            t.round_trip(size);
            half.push(a.elapsed().as_nanos() as f64 / 2000.0);
        }
        // One round trip of a known pattern, untimed.
        t.send_ctl([OP_PINGPONG, size as u64, 1]);
        let salt = size as u8 ^ 0x5a;
        t.fill(size, salt);
        t.round_trip(size);
        assert!(t.check(size, salt), "echo of {size} bytes differs");
        let s = summarize(&mut half);
        out(Record::new(
            &o.transport,
            &o.mode,
            Some(size as u64),
            "latency",
            s.median,
            Some(s.p99),
            "us",
        )
        .with_n(s.n));
        if size > 0 {
            let bw = size as f64 / s.median;
            pp_bw.insert(size, bw);
            out(Record::new(
                &o.transport,
                &o.mode,
                Some(size as u64),
                "pingpong_bw",
                bw,
                Some(size as f64 / s.p99),
                "MB/s",
            )
            .with_n(s.n));
        }
    }
    if o.stream {
        for &size in sizes.iter().filter(|&&s| s > 0) {
            let stream_once = |t: &mut T, count: usize| -> f64 {
                t.send_ctl([OP_STREAM, size as u64, count as u64]);
                let a = Instant::now();
                t.stream_out(size, count);
                let c = t.recv_ctl();
                let secs = a.elapsed().as_secs_f64();
                ctl_ok(c, size, "a stream");
                secs
            };
            // Warm-up trial sized from the ping-pong bandwidth; every trial
            // sizes the next from its own time (at most 4x more), so one
            // slow trial costs one trial, not the rest.
            let bw = pp_bw.get(&size).copied().unwrap_or(100.0) * 1e6;
            let budget = plan.stream_budget().as_secs_f64();
            let w = window_len(size);
            let lo = w.clamp(4, 16);
            let mut count =
                ((budget / 2.0 * bw / size as f64) as usize).clamp(w.min(4), plan.stream_max());
            let mut secs = stream_once(t, count);
            let mut v = Vec::with_capacity(plan.stream_trials());
            let mut counts = Vec::with_capacity(plan.stream_trials());
            for _ in 0..plan.stream_trials() {
                let hi = (count * 4).min(plan.stream_max()).max(lo);
                count = ((count as f64 * budget / secs.max(1e-9)) as usize).clamp(lo, hi);
                secs = stream_once(t, count);
                v.push((size * count) as f64 / secs / 1e6);
                counts.push(count.to_string());
            }
            let count = counts.join("/");
            let s = summarize(&mut v);
            out(Record::new(
                &o.transport,
                &o.mode,
                Some(size as u64),
                "stream_bw",
                s.median,
                Some(s.min),
                "MB/s",
            )
            .with_n(s.n)
            .with_note(format!("{count} messages per trial, window {w}")));
        }
    }
    t.send_ctl([OP_END, 0, 0]);
    let c = t.recv_ctl();
    ctl_ok(c, 0, "the end");
}

/// Encode a control message.
pub fn ctl_bytes(c: Ctl) -> [u8; 24] {
    let mut b = [0u8; 24];
    for (i, v) in c.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Decode a control message.
pub fn ctl_from(b: &[u8]) -> Ctl {
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("24 bytes"));
    [w(0), w(1), w(2)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Two threads over channels: the method itself, without a transport.
    struct Chan {
        tx: mpsc::Sender<Vec<u8>>,
        rx: mpsc::Receiver<Vec<u8>>,
        sbuf: Vec<u8>,
        rbuf: Vec<u8>,
    }

    impl Transport for Chan {
        fn send_ctl(&mut self, c: Ctl) {
            self.tx.send(ctl_bytes(c).to_vec()).unwrap();
        }
        fn recv_ctl(&mut self) -> Ctl {
            ctl_from(&self.rx.recv().unwrap())
        }
        fn fill(&mut self, size: usize, salt: u8) {
            fill_pattern(&mut self.sbuf[..size], salt);
        }
        fn check(&mut self, size: usize, salt: u8) -> bool {
            is_pattern(&self.rbuf[..size], salt)
        }
        fn round_trip(&mut self, size: usize) {
            self.tx.send(self.sbuf[..size].to_vec()).unwrap();
            let m = self.rx.recv().unwrap();
            self.rbuf[..size].copy_from_slice(&m);
        }
        fn echo(&mut self, _size: usize) {
            let m = self.rx.recv().unwrap();
            self.tx.send(m).unwrap();
        }
        fn stream_out(&mut self, size: usize, count: usize) {
            for _ in 0..count {
                self.tx.send(self.sbuf[..size].to_vec()).unwrap();
            }
        }
        fn stream_in(&mut self, _size: usize, count: usize) {
            for _ in 0..count {
                self.rx.recv().unwrap();
            }
        }
    }

    #[test]
    fn client_and_server_agree() {
        let (a_tx, b_rx) = mpsc::channel();
        let (b_tx, a_rx) = mpsc::channel();
        let mk = |tx, rx| Chan {
            tx,
            rx,
            sbuf: vec![0; 70000],
            rbuf: vec![0; 70000],
        };
        let mut server = mk(b_tx, b_rx);
        let h = std::thread::spawn(move || serve(&mut server));
        let mut client = mk(a_tx, a_rx);
        let mut recs = Vec::new();
        let o = ClientOpts {
            transport: "chan".into(),
            mode: "test".into(),
            sizes: vec![0, 8, 65536],
            stream: true,
            plan: Plan { quick: true },
        };
        run_client(&mut client, &o, &mut |r| recs.push(r));
        h.join().unwrap();
        let lat = recs.iter().filter(|r| r.metric == "latency").count();
        let st = recs.iter().filter(|r| r.metric == "stream_bw").count();
        assert_eq!((lat, st), (3, 2));
        assert!(recs.iter().all(|r| r.median.is_some_and(f64::is_finite)));
    }
}
