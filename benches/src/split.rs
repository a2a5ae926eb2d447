//! The split driver without libmx: guests that post raw channel commands
//! (tiny messages) to the backend and read its events, waiting by a
//! [`Wait`] policy. The `split_driver` bench measures the backend with it;
//! `compare` uses it to separate the library's cost from the split
//! driver's.

use crate::procs::{BackendProc, CpuWindow, Guest};
use crate::shm::{stuck, Wait, STUCK};
use frontend::{Doorbell, EndpointChannel, Frontend};
use mx_proto::msg::command::SendHdr;
use mx_proto::msg::control::{ChannelSizes, ANY_ENDPOINT};
use mx_proto::msg::{Command, Dest, Event, EvtSlot, Seq};
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::path::Path;
use std::time::{Duration, Instant};

/// Round trips measured per latency configuration (after the warm-up).
pub const ITERS: usize = 10_000;
/// Warm-up round trips.
pub const WARMUP: usize = 1_000;
/// A latency configuration is cut after this long (collapsed configs).
pub const MAX_RUN: Duration = Duration::from_secs(3);
/// The warm-up is cut after this long.
pub const MAX_WARMUP: Duration = Duration::from_millis(300);

/// Whether round trip `i` (counted from 0, warm-up included) should run,
/// given when the warm-up and the measurement started; the measurement
/// starts when this first returns `Some(true)`.
pub struct Clock {
    start: Instant,
    measuring: Option<Instant>,
}

impl Clock {
    /// Start now.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            measuring: None,
        }
    }
    /// `None`: stop; `Some(measured)`: run round trip `i`.
    pub fn next(&mut self, i: usize, done: usize) -> Option<bool> {
        match self.measuring {
            None if i < WARMUP && self.start.elapsed() < MAX_WARMUP => Some(false),
            None => {
                self.measuring = Some(Instant::now());
                Some(true)
            }
            Some(t) => (done < ITERS && t.elapsed() < MAX_RUN).then_some(true),
        }
    }
}
impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A split-driver round trip longer than this cuts its case ("stalled").
pub const STALL: Duration = Duration::from_secs(5);
/// Match info of the last message of a stream or ping-pong.
pub const END_MATCH: u64 = u64::MAX;
/// A guest endpoint channel.
pub type Ep = EndpointChannel<LocalGuest>;
/// A guest doorbell.
pub type Bell = Doorbell<LocalGuest>;

/// A guest endpoint speaking raw channel commands (no libmx).
pub struct Node {
    _fe: Frontend<LocalGuest>,
    /// The endpoint's channel.
    pub ep: Ep,
    /// Its doorbell.
    pub bell: Bell,
    /// Our own peer index (the board's `self_peer`).
    pub peer: u16,
    /// Largest medium fragment.
    pub frag_max: usize,
}

/// Attach to the backend at `socket` and open an endpoint.
///
/// # Panics
/// If the backend refuses.
pub fn open(socket: &Path) -> Node {
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(socket)).expect("attach");
    let (ep, bell) = fe
        .open_endpoint(ANY_ENDPOINT, ChannelSizes::default())
        .expect("open endpoint");
    Node {
        peer: fe.board().self_peer,
        frag_max: fe.board().frag_max as usize,
        _fe: fe,
        ep,
        bell,
    }
}

/// Stay attached until the parent closes our stdin: a command posted just
/// before the endpoint closes may be dropped unprocessed (the backend
/// closes on hang-up without draining the ring), and tiny sends have no
/// completion to wait for.
pub fn linger() {
    let mut l = String::new();
    while std::io::stdin().read_line(&mut l).is_ok_and(|n| n > 0) {}
}

/// Read `PEER <ep> <session>` from stdin.
///
/// # Panics
/// On anything else.
pub fn read_peer() -> (u8, u32) {
    let mut l = String::new();
    std::io::stdin().read_line(&mut l).expect("stdin");
    let f: Vec<&str> = l.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"PEER"), "{l}");
    (f[1].parse().unwrap(), f[2].parse().unwrap())
}

impl Node {
    /// A send header to endpoint `ep` of our own board.
    pub fn hdr(&self, ep: u8, session: u32, seq: u16, match_info: u64) -> SendHdr {
        SendHdr {
            dest: Dest {
                peer: self.peer,
                endpoint: ep,
            },
            session,
            seq: Seq {
                seqnum: seq,
                piggyack: 0,
            },
            match_info,
        }
    }

    /// The next event, waiting by policy `w`.
    pub fn next(&mut self, w: Wait) -> EvtSlot {
        self.next_within(w, STUCK)
            .unwrap_or_else(|| panic!("stuck waiting for an event"))
    }

    /// The next event, or `None` after `limit`.
    pub fn next_within(&mut self, w: Wait, limit: Duration) -> Option<EvtSlot> {
        let t0 = Instant::now();
        let mut n = 0u32;
        loop {
            if let Some(e) = self.ep.next_event().expect("event ring") {
                return Some(e);
            }
            match w {
                Wait::Spin => std::hint::spin_loop(),
                Wait::Yield => std::thread::yield_now(),
                Wait::Block => {
                    if self.ep.prepare_to_sleep().expect("arm") {
                        self.bell
                            .wait(Some(Duration::from_millis(100)))
                            .expect("doorbell");
                    }
                }
            }
            n = n.wrapping_add(1);
            if (n.is_multiple_of(1024) || w == Wait::Block) && t0.elapsed() > limit {
                return None;
            }
        }
    }

    /// Post a tiny message and flush.
    pub fn tiny(&mut self, ep: u8, session: u32, seq: u16, match_info: u64, data: &[u8]) {
        let hdr = self.hdr(ep, session, seq, match_info);
        let t0 = Instant::now();
        while self.ep.post(&Command::Tiny { hdr, data }).is_err() {
            self.ep.flush().unwrap();
            std::thread::yield_now();
            stuck(t0, "command ring space");
        }
        self.ep.flush().unwrap();
    }
}

/// Child role `pong SOCKET WAIT`: echo every tiny back until the end
/// marker.
pub fn pong(socket: &Path, w: Wait) {
    let mut n = open(socket);
    println!("READY {} {}", n.ep.id(), n.ep.session());
    let (ep, session) = read_peer();
    loop {
        let slot = n.next(w);
        let (seq, m, data) = match Event::parse(&slot).expect("event") {
            Event::RecvTiny { hdr, data } => {
                let mut d = [0u8; 32];
                d[..data.len()].copy_from_slice(data);
                (hdr.seq.seqnum, hdr.match_info, (d, data.len()))
            }
            other => panic!("pong got {other:?}"),
        };
        n.ep.release_events().unwrap();
        n.tiny(ep, session, seq, m, &data.0[..data.1]);
        if m == END_MATCH {
            linger();
            return;
        }
    }
}

/// Round trips (ns) of an 8-byte tiny through the backend, whether one of
/// them stalled for more than [`STALL`] (the case was then cut), and the
/// CPU use of backend, ping and pong while measuring.
pub fn split_pingpong(idle: &str, spin_us: u64, w: Wait) -> (Vec<u64>, bool, Vec<f64>) {
    let be = BackendProc::start(idle, spin_us);
    let sock = be.socket.to_str().unwrap().to_string();
    let mut me = open(&be.socket);
    let mut g = Guest::spawn(&["pong", &sock, w.name()]);
    let (ep, session) = g.ready();
    g.peer(me.ep.id(), me.ep.session());
    let mut rtt = Vec::with_capacity(ITERS);
    let mut clock = Clock::new();
    let pids = [be.pid(), std::process::id(), g.child.id()];
    let mut cpu: Option<CpuWindow> = None;
    for i in 0.. {
        let Some(measured) = clock.next(i, rtt.len()) else {
            break;
        };
        if measured && cpu.is_none() {
            cpu = Some(CpuWindow::start(&pids));
        }
        let t = Instant::now();
        me.tiny(ep, session, i as u16, i as u64, &(i as u64).to_le_bytes());
        let Some(slot) = me.next_within(w, STALL) else {
            // Starved (more spinners than cores on a busy machine): cut.
            let c = cpu.map(|c| c.percent()).unwrap_or_default();
            return (rtt, true, c);
        };
        let dt = t.elapsed().as_nanos() as u64;
        match Event::parse(&slot).expect("event") {
            Event::RecvTiny { hdr, data } => {
                assert_eq!(hdr.match_info, i as u64);
                assert_eq!(data, (i as u64).to_le_bytes());
            }
            other => panic!("ping got {other:?}"),
        }
        me.ep.release_events().unwrap();
        if measured {
            rtt.push(dt);
        }
    }
    let c = cpu.map(|c| c.percent()).unwrap_or_default();
    me.tiny(ep, session, 0, END_MATCH, &[]);
    let _ = me.next(w);
    me.ep.release_events().unwrap();
    g.finish();
    drop(me);
    drop(be);
    (rtt, false, c)
}
