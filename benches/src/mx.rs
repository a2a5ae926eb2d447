//! Our stack as an application sees it: libmx endpoints (the Rust API)
//! attached to a backend, two processes exchanging MX messages.

use crate::pingpong::{ctl_bytes, ctl_from, fill_pattern, is_pattern, window_len, Ctl, Transport};
use libmx::core::{Completion, EndpointAddr, MsgBuf, ReqId, Status};
use libmx::endpoint::{Endpoint, OpenOptions};
use mx_proto::platform::local::LocalTarget;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Endpoint key of every benchmark endpoint.
pub const KEY: u32 = 0x4d58_b0b0;
/// Match info of data messages.
pub const M_DATA: u64 = 0x10;
/// Match info of control messages.
pub const M_CTL: u64 = 0x20;
/// Any single completion taking longer than this is a failure.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How a process waits for its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MxMode {
    /// `test` in a loop, `spin_loop` between calls (`mx_test` polling).
    PollSpin,
    /// `test` in a loop, `sched_yield` between calls.
    PollYield,
    /// `wait` (`mx_wait`): spins `MX_SPIN_US` (default 100 us), then blocks.
    Wait,
    /// `wait` with no spin: blocks at once.
    WaitBlock,
}

impl MxMode {
    /// Parse a mode name ([`MxMode::name`]).
    ///
    /// # Panics
    /// On an unknown name.
    pub fn parse(s: &str) -> MxMode {
        match s {
            "poll-spin" => MxMode::PollSpin,
            "poll-yield" => MxMode::PollYield,
            "wait" => MxMode::Wait,
            "wait-block" => MxMode::WaitBlock,
            _ => panic!("bad mx mode {s}"),
        }
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            MxMode::PollSpin => "poll-spin",
            MxMode::PollYield => "poll-yield",
            MxMode::Wait => "wait",
            MxMode::WaitBlock => "wait-block",
        }
    }
}

/// Open endpoint `id` on the backend at `socket`.
///
/// # Panics
/// If the backend refuses.
pub fn open(socket: &Path, id: u8, mode: MxMode) -> Endpoint<Buf> {
    let mut o = OpenOptions {
        endpoint: Some(id),
        key: KEY,
        ..OpenOptions::default()
    };
    if mode == MxMode::WaitBlock {
        o.spin = Duration::ZERO;
    }
    // The socket file exists from bind() on; until listen() an attach is
    // refused (NoDev): retry for a while.
    let t0 = Instant::now();
    loop {
        match Endpoint::<Buf>::open(Some(&LocalTarget::new(socket)), &o) {
            Ok(ep) => return ep,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open endpoint {id}: {e:?}"),
        }
    }
}

/// Connect to endpoint `peer` of board `nic_id`, retrying while it is not
/// open yet (for up to 30 s).
///
/// # Panics
/// If it never succeeds.
pub fn connect(ep: &Endpoint<Buf>, nic_id: u64, peer: u8) -> EndpointAddr {
    let t0 = Instant::now();
    loop {
        match ep.connect(nic_id, peer, KEY, Some(Duration::from_millis(500))) {
            Ok(a) => return a,
            Err(e) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "connect to endpoint {peer}: {e:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A message buffer of the harness: one the request owns, or one send
/// buffer shared by every send of a streaming window.
#[derive(Debug, Clone)]
pub enum Buf {
    /// Owned by the request (receives, ping-pong, control messages).
    Own(Vec<u8>),
    /// Shared by sends in flight. MX only reads a send buffer; a receive
    /// into one would write into a private copy (`Arc::make_mut`), which
    /// the harness never does.
    Shared(Arc<Vec<u8>>),
}

impl Buf {
    /// The bytes as an owned vector (a shared buffer is copied).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Buf::Own(v) => v,
            Buf::Shared(a) => Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()),
        }
    }

    fn bytes(&self) -> &Vec<u8> {
        match self {
            Buf::Own(v) => v,
            Buf::Shared(a) => a,
        }
    }

    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Buf::Own(v) => v,
            Buf::Shared(a) => Arc::make_mut(a),
        }
    }
}

impl MsgBuf for Buf {
    fn len(&self) -> u32 {
        MsgBuf::len(self.bytes())
    }
    fn read_at(&self, off: u32, out: &mut [u8]) {
        self.bytes().read_at(off, out);
    }
    fn write_at(&mut self, off: u32, data: &[u8]) {
        self.bytes_mut().write_at(off, data);
    }
    fn segments(&self, out: &mut Vec<(u64, u32)>) {
        self.bytes().segments(out);
    }
    fn segment_count(&self) -> usize {
        self.bytes().segment_count()
    }
    fn fill_range_in_place(
        &mut self,
        off: u32,
        len: u32,
        f: &mut dyn FnMut(u32, &mut [u8]) -> bool,
    ) -> bool {
        self.bytes_mut().fill_range_in_place(off, len, f)
    }
    fn read_in_place(&self, off: u32, len: u32, f: &mut dyn FnMut(u32, &[u8]) -> bool) -> bool {
        self.bytes().read_in_place(off, len, f)
    }
    fn chunks(&self, off: u32, n: u32, f: &mut dyn FnMut(u32, &[u8])) {
        self.bytes().chunks(off, n, f);
    }
    fn chunks_mut(&mut self, off: u32, n: u32, f: &mut dyn FnMut(u32, &mut [u8])) {
        self.bytes_mut().chunks_mut(off, n, f);
    }
}

/// One side of an MX conversation between two endpoints.
pub struct MxConn {
    ep: Endpoint<Buf>,
    dest: EndpointAddr,
    mode: MxMode,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl MxConn {
    /// Open endpoint `me` on the backend at `socket` and connect to `peer`
    /// on the same board.
    pub fn local(socket: &Path, me: u8, peer: u8, mode: MxMode) -> MxConn {
        let ep = open(socket, me, mode);
        let nic = ep.frontend().board().nic_id;
        let dest = connect(&ep, nic, peer);
        MxConn::new(ep, dest, mode)
    }

    /// A conversation over an open endpoint with `dest`.
    pub fn new(ep: Endpoint<Buf>, dest: EndpointAddr, mode: MxMode) -> MxConn {
        MxConn {
            ep,
            dest,
            mode,
            sbuf: Vec::new(),
            rbuf: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint<Buf> {
        &self.ep
    }

    /// Wait for `req` by the mode; the completion.
    ///
    /// # Panics
    /// After [`TIMEOUT`], or when the request failed.
    pub fn finish(&self, req: ReqId) -> Completion<Buf> {
        let c = match self.mode {
            MxMode::PollSpin | MxMode::PollYield => {
                let t0 = Instant::now();
                let mut n = 0u32;
                loop {
                    // `poll_with`: progress, test, progress (what `mx_test`
                    // does); `with_core` would test before making progress
                    // and see every completion one poll late.
                    if let Some(c) = self.ep.poll_with(|c| c.test(req)).expect("test") {
                        break c;
                    }
                    if self.mode == MxMode::PollSpin {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                    n = n.wrapping_add(1);
                    if n.is_multiple_of(4096) {
                        assert!(t0.elapsed() < TIMEOUT, "request never completed");
                    }
                }
            }
            MxMode::Wait | MxMode::WaitBlock => self
                .ep
                .wait(req, Some(TIMEOUT))
                .expect("wait")
                .expect("request never completed"),
        };
        assert_eq!(c.status, Status::Success, "request failed");
        c
    }

    fn recv(&self, buf: Vec<u8>, m: u64) -> ReqId {
        self.ep.irecv(Buf::Own(buf), m, u64::MAX, 0).expect("irecv")
    }

    fn send(&self, buf: Vec<u8>, m: u64) -> ReqId {
        self.send_buf(Buf::Own(buf), m)
    }

    fn send_buf(&self, buf: Buf, m: u64) -> ReqId {
        self.ep.isend(self.dest, buf, m, 0, false).expect("isend")
    }

    /// Send `buf` with match `m` and wait for the completion; the buffer.
    pub fn send_wait(&self, buf: Vec<u8>, m: u64) -> Vec<u8> {
        let r = self.send(buf, m);
        self.finish(r).buf.map(Buf::into_vec).unwrap_or_default()
    }

    /// Receive into `buf` with match `m`; the buffer.
    pub fn recv_wait(&self, buf: Vec<u8>, m: u64) -> Vec<u8> {
        let r = self.recv(buf, m);
        self.finish(r).buf.map(Buf::into_vec).unwrap_or_default()
    }

    fn buffers(&mut self, size: usize, n: usize) {
        self.pool.truncate(n);
        while self.pool.len() < n {
            self.pool.push(Vec::new());
        }
        for b in &mut self.pool {
            b.resize(size, 0);
        }
    }

    /// Keep a window of sends in flight for `count` messages of `size`,
    /// every one of them from the same buffer: what osu_bw, the MPI side
    /// of the comparison (`mpi_pp`) and the C program do (MX reads a send
    /// buffer, so sends in flight may share it). With one buffer per send
    /// the window would read 16 MiB from memory where the others read one
    /// cached MiB (measured here: 4.4 against 10.5 GB/s at 1 MiB).
    pub fn send_stream(&mut self, size: usize, count: usize, w: usize) {
        let shared = Arc::new(vec![0u8; size]);
        let mut inflight = VecDeque::with_capacity(w);
        for _ in 0..count {
            if inflight.len() == w {
                let r = inflight.pop_front().expect("in flight");
                self.finish(r);
            }
            inflight.push_back(self.send_buf(Buf::Shared(shared.clone()), M_DATA));
        }
        while let Some(r) = inflight.pop_front() {
            self.finish(r);
        }
    }

    /// Keep a window of receives posted for `count` messages of `size`.
    pub fn recv_stream(&mut self, size: usize, count: usize, w: usize) {
        self.buffers(size, w);
        let mut posted = VecDeque::with_capacity(w);
        let mut n_posted = 0;
        while n_posted < count.min(w) {
            let b = self.pool.pop().expect("a free buffer");
            posted.push_back(self.recv(b, M_DATA));
            n_posted += 1;
        }
        while let Some(r) = posted.pop_front() {
            let b = self.finish(r).buf.map(Buf::into_vec).unwrap_or_default();
            if n_posted < count {
                posted.push_back(self.recv(b, M_DATA));
                n_posted += 1;
            } else {
                self.pool.push(b);
            }
        }
    }
}

impl Transport for MxConn {
    fn send_ctl(&mut self, c: Ctl) {
        let _ = self.send_wait(ctl_bytes(c).to_vec(), M_CTL);
    }

    fn recv_ctl(&mut self) -> Ctl {
        let b = self.recv_wait(vec![0; 24], M_CTL);
        ctl_from(&b)
    }

    fn fill(&mut self, size: usize, salt: u8) {
        self.sbuf.resize(size, 0);
        fill_pattern(&mut self.sbuf, salt);
    }

    fn check(&mut self, size: usize, salt: u8) -> bool {
        self.rbuf.len() == size && is_pattern(&self.rbuf, salt)
    }

    fn round_trip(&mut self, size: usize) {
        let mut r = std::mem::take(&mut self.rbuf);
        let mut s = std::mem::take(&mut self.sbuf);
        r.resize(size, 0);
        s.resize(size, 0);
        // The receive is posted before the send, as MX ping-pongs do.
        let rr = self.recv(r, M_DATA);
        let sr = self.send(s, M_DATA);
        self.sbuf = self.finish(sr).buf.map(Buf::into_vec).unwrap_or_default();
        self.rbuf = self.finish(rr).buf.map(Buf::into_vec).unwrap_or_default();
    }

    fn echo(&mut self, size: usize) {
        let mut r = std::mem::take(&mut self.rbuf);
        r.resize(size, 0);
        let got = self.recv_wait(r, M_DATA);
        self.rbuf = self.send_wait(got, M_DATA);
    }

    fn stream_out(&mut self, size: usize, count: usize) {
        self.send_stream(size, count, window_len(size));
    }

    fn stream_in(&mut self, size: usize, count: usize) {
        self.recv_stream(size, count, window_len(size));
    }
}

/// Let background progression push out what we sent last (the backend
/// drops commands still in the ring of an endpoint that closes).
pub fn linger(ep: &Endpoint<Buf>) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(100) {
        ep.progress();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn parse_nic(s: Option<&&str>) -> Option<u64> {
    s.map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex nic id"))
}

/// Open endpoint `me` in `mode` on the backend at `socket` and connect it
/// to endpoint `peer` of board `nic` (hex; default our own).
pub fn conn(socket: &str, mode: &str, me: &str, peer: &str, nic: Option<&&str>) -> MxConn {
    let mode = MxMode::parse(mode);
    let (me, peer): (u8, u8) = (me.parse().expect("id"), peer.parse().expect("id"));
    let ep = open(Path::new(socket), me, mode);
    let nic = parse_nic(nic).unwrap_or_else(|| ep.frontend().board().nic_id);
    let dest = connect(&ep, nic, peer);
    MxConn::new(ep, dest, mode)
}

/// Child role `mx-ping SOCKET MODE ME PEER TRANSPORT [NIC_ID]`: endpoint
/// `ME` measures against endpoint `PEER` (of board `NIC_ID`, hex; default
/// our own); records on stdout.
pub fn role_ping(a: &[&str]) {
    let [socket, mode, me, peer, transport, rest @ ..] = a else {
        panic!("mx-ping: bad arguments {a:?}");
    };
    let mut c = conn(socket, mode, me, peer, rest.first());
    let o = crate::pingpong::ClientOpts {
        transport: transport.to_string(),
        mode: mode.to_string(),
        sizes: crate::pingpong::SIZES.to_vec(),
        stream: true,
        plan: crate::pingpong::Plan::from_env(),
    };
    crate::pingpong::run_client(&mut c, &o, &mut |r| r.emit());
}

/// Child role `mx-pong SOCKET MODE ME PEER [NIC_ID]`: serve `mx-ping`.
pub fn role_pong(a: &[&str]) {
    let [socket, mode, me, peer, rest @ ..] = a else {
        panic!("mx-pong: bad arguments {a:?}");
    };
    let mut c = conn(socket, mode, me, peer, rest.first());
    crate::pingpong::serve(&mut c);
    linger(c.endpoint());
}

/// Child role `mx-idle SOCKET ID`: open an endpoint, say `READY 0 0`, sit
/// until stdin closes.
pub fn role_idle(socket: &str, id: &str) {
    let ep = open(Path::new(socket), id.parse().expect("id"), MxMode::Wait);
    println!("READY 0 0");
    let mut l = String::new();
    while std::io::stdin().read_line(&mut l).is_ok_and(|n| n > 0) {}
    drop(ep);
}

/// Child role `agg-send SOCKET ME PEER SIZE SECS`: connect, say `READY 0 0`,
/// wait for `GO` on stdin, stream messages of `SIZE` for `SECS` seconds
/// (`mx_wait` waits), then tell the receiver how many and wait for its
/// acknowledgement; prints one `pair_bw` record (MB/s from GO to the
/// acknowledgement).
pub fn role_agg_send(socket: &str, me: &str, peer: &str, size: &str, secs: &str) {
    let mut c = conn(socket, "wait", me, peer, None);
    let size: usize = size.parse().expect("size");
    let secs: f64 = secs.parse().expect("seconds");
    println!("READY 0 0");
    let mut l = String::new();
    let _ = std::io::stdin().read_line(&mut l);
    let w = window_len(size);
    c.buffers(size, w);
    let t0 = Instant::now();
    let mut inflight = VecDeque::with_capacity(w);
    let mut count = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        if inflight.len() == w {
            let r = inflight.pop_front().expect("in flight");
            let b = c.finish(r).buf.map(Buf::into_vec).unwrap_or_default();
            c.pool.push(b);
        }
        let b = c.pool.pop().expect("a free buffer");
        inflight.push_back(c.send(b, M_DATA));
        count += 1;
    }
    while let Some(r) = inflight.pop_front() {
        let b = c.finish(r).buf.map(Buf::into_vec).unwrap_or_default();
        c.pool.push(b);
    }
    c.send_ctl([crate::pingpong::OP_END, size as u64, count]);
    let ack = c.recv_ctl();
    let total = t0.elapsed().as_secs_f64();
    assert_eq!(ack[2], count, "receiver counted {} of {count}", ack[2]);
    crate::record::Record::new(
        "mx-local",
        "wait",
        Some(size as u64),
        "pair_bw",
        (count as usize * size) as f64 / total / 1e6,
        None,
        "MB/s",
    )
    .with_n(count as usize)
    .emit();
}

/// Child role `agg-recv SOCKET ME PEER SIZE`: keep a window of receives
/// posted until the sender says how many it sent, then acknowledge.
pub fn role_agg_recv(socket: &str, me: &str, peer: &str, size: &str) {
    let mut c = conn(socket, "wait", me, peer, None);
    let size: usize = size.parse().expect("size");
    println!("READY 0 0");
    let w = window_len(size);
    c.buffers(size, w);
    let mut posted: VecDeque<ReqId> = VecDeque::new();
    while let Some(b) = c.pool.pop() {
        posted.push_back(c.recv(b, M_DATA));
    }
    let mut ctl = Some(c.recv(vec![0; 24], M_CTL));
    let mut got = 0u64;
    let mut expect: Option<u64> = None;
    enum Ev {
        Data(Completion<Buf>),
        Ctl(Completion<Buf>),
    }
    while expect != Some(got) {
        let front = *posted.front().expect("a posted receive");
        let ctl_req = ctl;
        let ev =
            c.ep.wait_for(Some(TIMEOUT), |core| {
                if let Ok(Some(d)) = core.test(front) {
                    return Some(Ev::Data(d));
                }
                match ctl_req.map(|r| core.test(r)) {
                    Some(Ok(Some(k))) => Some(Ev::Ctl(k)),
                    _ => None,
                }
            })
            .expect("the sender went quiet");
        match ev {
            Ev::Data(d) => {
                posted.pop_front();
                got += 1;
                posted.push_back(c.recv(d.buf.map(Buf::into_vec).unwrap_or_default(), M_DATA));
            }
            Ev::Ctl(k) => {
                ctl = None;
                expect = Some(ctl_from(&k.buf.map(Buf::into_vec).unwrap_or_default())[2]);
            }
        }
    }
    c.send_ctl([crate::pingpong::OP_ACK, size as u64, got]);
    linger(c.endpoint());
}
