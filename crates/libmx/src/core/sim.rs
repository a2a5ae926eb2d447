//! A Pair-style test harness: several cores, a simulated backend that turns
//! each core's commands into its peers' events, and a seeded lossy wire
//! (drop, duplicate, reorder) on virtual time.
//!
//! Commands go through their real byte encoding (`emit` by the core,
//! `parse` here); small and medium payloads travel through real send and
//! receive queue slots; rendezvous data is copied by the "pull engine"
//! between the two buffers' registered regions. Buffers are [`SimBuf`]s:
//! shared byte vectors that the harness finds again from the addresses in
//! the registered segments, so no unsafe code is needed.

use super::{
    BulkPool, Completion, Config, Core, EndpointAddr, MsgBuf, PoolRange, RecvQueue, ReqId, Time,
};
use mx_proto::msg::arrival::arrival;
use mx_proto::msg::command::RawSeg;
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{CmdSlot, Command, Event, EvtSlot, Source, QUEUE_SLOT_SIZE};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// splitmix64: a tiny seeded PRNG.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `p` (0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A message buffer shared between a test and the simulated backend.
#[derive(Debug, Clone)]
pub(crate) struct SimBuf {
    id: u32,
    data: Rc<RefCell<Vec<u8>>>,
    /// Length of each segment reported for registration.
    seg: u32,
}

impl SimBuf {
    pub fn bytes(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }
}

impl MsgBuf for SimBuf {
    fn len(&self) -> u32 {
        self.data.borrow().len() as u32
    }
    fn read_at(&self, off: u32, out: &mut [u8]) {
        let d = self.data.borrow();
        out.copy_from_slice(&d[off as usize..off as usize + out.len()]);
    }
    fn write_at(&mut self, off: u32, data: &[u8]) {
        let mut d = self.data.borrow_mut();
        d[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    fn segments(&self, out: &mut Vec<(u64, u32)>) {
        let len = self.len();
        let mut off = 0;
        while off < len {
            let l = self.seg.min(len - off);
            out.push(((u64::from(self.id) << 32) | u64::from(off), l));
            off += l;
        }
    }
    // Chunks cut at the reported segment boundaries, as a scattered
    // application buffer's would be, so the core's offset arithmetic across
    // chunks is exercised.
    fn chunks(&self, off: u32, n: u32, f: &mut dyn FnMut(u32, &[u8])) {
        let d = self.data.borrow();
        for (o, k) in self.seg_pieces(off, n) {
            f(o, &d[o as usize..][..k as usize]);
        }
    }
    fn chunks_mut(&mut self, off: u32, n: u32, f: &mut dyn FnMut(u32, &mut [u8])) {
        let mut d = self.data.borrow_mut();
        for (o, k) in self.seg_pieces(off, n) {
            f(o, &mut d[o as usize..][..k as usize]);
        }
    }
}

impl SimBuf {
    /// `(offset, length)` pieces of `[off, off + n)` cut at segment ends.
    fn seg_pieces(&self, off: u32, n: u32) -> Vec<(u32, u32)> {
        let seg = self.seg.max(1);
        let (mut o, end) = (off, off + n);
        let mut v = Vec::new();
        while o < end {
            let k = (seg - o % seg).min(end - o);
            v.push((o, k));
            o += k;
        }
        v
    }
}

/// Why a pull has no bytes to copy (yet).
enum NoSource {
    /// The sender is still registering that part of its window: hold it.
    NotYet,
    /// The pull fails with this status, reported after this delay.
    Fail(PullStatus, Time),
}

/// A node's staging pool: what the Xen platform's granted pool is to a
/// guest.
#[derive(Clone)]
struct SimPool {
    mem: Arc<Mutex<Vec<u8>>>,
    alloc: Arc<Mutex<crate::staging::RangeAlloc>>,
}

impl BulkPool for SimPool {
    fn capacity(&self) -> u32 {
        self.alloc.lock().unwrap().size() as u32
    }
    fn reserve(&mut self, len: u32) -> Option<Vec<PoolRange>> {
        let pieces = self
            .alloc
            .lock()
            .unwrap()
            .alloc_scatter(u64::from(len), super::STAGE_PIECES_MAX)?;
        Some(
            pieces
                .into_iter()
                .map(|(offset, n)| PoolRange {
                    offset,
                    len: n as u32,
                })
                .collect(),
        )
    }
    fn release(&mut self, range: PoolRange) {
        assert!(
            self.alloc
                .lock()
                .unwrap()
                .release(range.offset, u64::from(range.len)),
            "released a range twice or never reserved"
        );
    }
    fn write_at(&mut self, range: PoolRange, at: u32, src: &[u8]) -> bool {
        let Some(o) = sim_pool_offset(range, at, src.len()) else {
            return false;
        };
        self.mem.lock().unwrap()[o..o + src.len()].copy_from_slice(src);
        true
    }
    fn read_at(&self, range: PoolRange, at: u32, dst: &mut [u8]) -> bool {
        let Some(o) = sim_pool_offset(range, at, dst.len()) else {
            return false;
        };
        dst.copy_from_slice(&self.mem.lock().unwrap()[o..o + dst.len()]);
        true
    }
}

/// Where `n` bytes at `at` of `range` start in a [`SimPool`], when they fit
/// the range.
fn sim_pool_offset(range: PoolRange, at: u32, n: usize) -> Option<usize> {
    let end = usize::try_from(at).ok()?.checked_add(n)?;
    (end <= range.len as usize).then(|| range.offset as usize + at as usize)
}

/// Send or receive queue of a simulated channel.
#[derive(Debug)]
pub(crate) struct SimQueue(Vec<Vec<u8>>);

impl SimQueue {
    pub(crate) fn new(n: u16) -> Self {
        SimQueue((0..n).map(|_| vec![0xa5; QUEUE_SLOT_SIZE]).collect())
    }
}

impl SimQueue {
    /// What a shell does with what `poll_command` said: copy a medium
    /// fragment's bytes into the slot its command names.
    pub(crate) fn fill<B: MsgBuf>(&mut self, core: &mut Core<B>, em: super::Emitted) {
        if let Some(f) = em.frag {
            let dst = &mut self.0[usize::from(f.sendq_slot)];
            let ok = core.copy_frag(&f, &mut |off, bytes| {
                dst[off..off + bytes.len()].copy_from_slice(bytes);
                true
            });
            assert!(ok, "a fragment just emitted can be copied");
        }
    }
}

impl RecvQueue for SimQueue {
    fn slot_len(&self, idx: u16) -> usize {
        self.0.slot_len(idx)
    }
    fn read(&self, idx: u16, off: usize, out: &mut [u8]) -> bool {
        self.0.read(idx, off, out)
    }
}

/// Wire behaviour between nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireCfg {
    /// One-way latency (µs).
    pub latency: Time,
    /// Probability a packet is dropped.
    pub drop: f64,
    /// Probability a packet is duplicated.
    pub dup: f64,
    /// Probability a packet is delayed by up to `jitter` (reordering).
    pub reorder: f64,
    /// Largest extra delay of a reordered packet (µs).
    pub jitter: Time,
}

impl Default for WireCfg {
    fn default() -> Self {
        WireCfg {
            latency: 5,
            drop: 0.0,
            dup: 0.0,
            reorder: 0.0,
            jitter: 200,
        }
    }
}

impl WireCfg {
    pub fn lossy(drop: f64, dup: f64, reorder: f64) -> Self {
        WireCfg {
            drop,
            dup,
            reorder,
            ..WireCfg::default()
        }
    }
}

/// What travels on the simulated wire (or between backend and guest).
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// An event carried whole in its slot bytes.
    Evt(EvtSlot),
    /// A small message or a medium fragment: the sender's command and its
    /// payload, which the receiver's backend puts in a recvq slot; the
    /// event is its [`arrival`] there.
    Slotted {
        src: Source,
        cmd: CmdSlot,
        data: Vec<u8>,
    },
}

/// A packet in flight.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub from: usize,
    pub to: usize,
    /// The destination session the packet names (checked on arrival).
    pub session: Option<u32>,
    /// Lib seqnum to NACK with when refused (0 for a connect).
    pub nack_seq: Option<u16>,
    pub payload: Payload,
}

impl Packet {
    /// The event kind byte (for targeted losses).
    pub fn kind(&self) -> u8 {
        match &self.payload {
            Payload::Evt(s) => s.0[0],
            Payload::Slotted { cmd, .. } => match Command::parse(cmd) {
                Ok(Command::Small { .. }) => mx_proto::msg::event::EventKind::RecvSmall as u8,
                _ => mx_proto::msg::event::EventKind::RecvMediumFrag as u8,
            },
        }
    }
}

/// A drop filter: return true to lose the packet.
pub(crate) type Filter = Box<dyn FnMut(&Packet) -> bool>;

#[derive(Debug, Default)]
struct RegionBuild {
    segs: Vec<RawSeg>,
    complete: bool,
    window: Option<SimWindow>,
}

/// A staging window as the backend keeps it: which message block each
/// slot holds, or is being refilled with.
#[derive(Debug)]
struct SimWindow {
    msg_len: u32,
    block: u32,
    gen: u8,
    holds: Vec<Option<u32>>,
    staging: Vec<Option<u32>>,
    /// Pass of the last read of each slot (eviction picks the oldest).
    used: Vec<u64>,
}

/// One simulated endpoint: a core, its channel, its backend-side state.
pub(crate) struct Node {
    pub core: Core<SimBuf>,
    pub peer: u16,
    pub ep: u8,
    pub session: u32,
    /// The endpoint is open (else NACK ENDPT_CLOSED).
    pub alive: bool,
    /// The host is gone: packets to it vanish, nothing answers.
    pub vanished: bool,
    sendq: SimQueue,
    recvq: SimQueue,
    regions: HashMap<u8, RegionBuild>,
    /// The node's staging pool, when it has one: its region segments are
    /// then offsets in it.
    pool: Option<SimPool>,
    /// Completions collected by the harness.
    pub completions: Vec<Completion<SimBuf>>,
    /// Commands emitted.
    pub commands: u64,
    /// Commands the backend refused (would be `CommandError`).
    pub bad_commands: u64,
}

/// The harness.
pub(crate) struct Sim {
    pub now: Time,
    pub nodes: Vec<Node>,
    pub wire: WireCfg,
    rng: Rng,
    mem: HashMap<u32, Rc<RefCell<Vec<u8>>>>,
    next_buf: u32,
    seg_size: u32,
    flight: Vec<(Time, u64, Packet)>,
    local: VecDeque<(Time, usize, EvtSlot)>,
    pkt_seq: u64,
    filter: Option<Filter>,
    /// Packets put on the wire, dropped, duplicated.
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Pulls fail with this status instead of copying, when set.
    pub pull_fail: Option<PullStatus>,
    /// Answer pulls that offer it with [`Event::PullDirect`]; the puller's
    /// copy then succeeds (`Some(true)`) or fails (`Some(false)`, as when
    /// the kernel refuses `process_vm_readv`).
    pub direct: Option<bool>,
    /// The bytes of each direct pull, by (puller, cookie).
    direct_data: HashMap<(usize, u32), Vec<u8>>,
    /// Pulls of bytes their sender has not registered yet (it stages
    /// block by block): retried at the given time, as the backend holds a
    /// blocked command.
    deferred: VecDeque<(Time, usize, CmdSlot)>,
    /// Pulls held that way.
    pub pulls_held: u64,
    /// Bytes of window pulls copied so far, by (puller, cookie): a pull of
    /// a window is copied block by block as the sender stages them.
    partial: HashMap<(usize, u32), Vec<u8>>,
    /// `StageNeeded` events sent.
    pub stage_requests: u64,
    /// Window blocks "lost" on a lossy wire: read again, and evicted
    /// first, so that they are staged again.
    pub window_losses: u64,
    /// `RegionStage` answers that matched no request.
    pub bad_stages: u64,
    use_tick: u64,
    /// Commands taken from each node per step (unbounded when `None`):
    /// small values interleave the nodes finely.
    pub cmd_batch: Option<usize>,
    /// Microseconds each step takes (0: steps are free).
    pub step_cost: Time,
}

impl Sim {
    pub fn new(seed: u64, wire: WireCfg) -> Self {
        Sim {
            now: 1_000,
            nodes: Vec::new(),
            wire,
            rng: Rng::new(seed),
            mem: HashMap::new(),
            next_buf: 1,
            seg_size: u32::MAX,
            flight: Vec::new(),
            local: VecDeque::new(),
            pkt_seq: 0,
            filter: None,
            sent: 0,
            dropped: 0,
            duplicated: 0,
            pull_fail: None,
            direct: None,
            direct_data: HashMap::new(),
            deferred: VecDeque::new(),
            pulls_held: 0,
            partial: HashMap::new(),
            stage_requests: 0,
            window_losses: 0,
            bad_stages: 0,
            use_tick: 0,
            cmd_batch: None,
            step_cost: 0,
        }
    }

    /// A small-queue configuration good for tests: 1 KiB fragments, 8 KiB
    /// medium max, rendezvous above 4 KiB.
    pub fn test_config(peer: u16, ep: u8, session: u32) -> Config {
        let mut c = Config::new(
            ep,
            peer,
            0x0002_c900_0000 + u64::from(peer),
            session,
            0x1234,
        );
        c.frag_max = 1024;
        c.medium_max = 8 * 1024;
        c.rndv_threshold = 4096;
        c.sendq_slots = 16;
        c.recvq_slots = 16;
        c.seed = u64::from(session);
        // small blocks: staged pulls of the tests' sizes take several
        c.pull_block = 4096;
        c
    }

    /// Add a node on its own host; `tweak` adjusts the configuration.
    pub fn add_node(&mut self, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.nodes.len();
        let peer = i as u16;
        self.add_node_at(peer, 1, tweak)
    }

    /// Add a node with the given peer index and endpoint id.
    pub fn add_node_at(&mut self, peer: u16, ep: u8, tweak: impl FnOnce(&mut Config)) -> usize {
        let session = (self.rng.next_u64() as u32) | 1;
        let mut cfg = Sim::test_config(peer, ep, session);
        tweak(&mut cfg);
        let (sq, rq) = (cfg.sendq_slots, cfg.recvq_slots);
        let core = Core::new(cfg).expect("valid test config");
        self.nodes.push(Node {
            core,
            peer,
            ep,
            session,
            alive: true,
            vanished: false,
            sendq: SimQueue::new(sq),
            recvq: SimQueue::new(rq),
            regions: HashMap::new(),
            pool: None,
            completions: Vec::new(),
            commands: 0,
            bad_commands: 0,
        });
        self.nodes.len() - 1
    }

    /// Give node `n` a staging pool of `bytes` (what a Xen guest has): its
    /// large messages are staged there and its regions name pool offsets.
    pub fn add_pool(&mut self, n: usize, bytes: usize) {
        let pool = SimPool {
            mem: Arc::new(Mutex::new(vec![0xee; bytes])),
            alloc: Arc::new(Mutex::new(crate::staging::RangeAlloc::new(bytes as u64))),
        };
        self.nodes[n].pool = Some(pool.clone());
        self.nodes[n].core.set_bulk_pool(Box::new(pool));
    }

    /// Bytes of node `n`'s pool free now, and its size.
    pub fn pool_free(&self, n: usize) -> Option<(u64, u64)> {
        let p = self.nodes[n].pool.as_ref()?;
        let a = p.alloc.lock().unwrap();
        Some((a.free_bytes(), a.size()))
    }

    /// Report buffers as segments of at most `n` bytes (to exercise
    /// multi-command region registration).
    pub fn set_segment_size(&mut self, n: u32) {
        self.seg_size = n.max(1);
    }

    pub fn set_filter(&mut self, f: impl FnMut(&Packet) -> bool + 'static) {
        self.filter = Some(Box::new(f));
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// A buffer holding `data`.
    pub fn buf(&mut self, data: Vec<u8>) -> SimBuf {
        let id = self.next_buf;
        self.next_buf += 1;
        let rc = Rc::new(RefCell::new(data));
        self.mem.insert(id, rc.clone());
        SimBuf {
            id,
            data: rc,
            seg: self.seg_size,
        }
    }

    /// A zeroed buffer of `len` bytes.
    pub fn zbuf(&mut self, len: usize) -> SimBuf {
        self.buf(vec![0; len])
    }

    pub fn core(&mut self, n: usize) -> &mut Core<SimBuf> {
        &mut self.nodes[n].core
    }

    /// Connect `a` to `b` (one way) and return the address.
    pub fn connect(&mut self, a: usize, b: usize) -> EndpointAddr {
        let (peer, ep) = (self.nodes[b].peer, self.nodes[b].ep);
        let key = self.nodes[b].core.config().app_key;
        let nic = self.nodes[b].core.config().nic_id;
        let req = self.nodes[a].core.connect(peer, ep, nic, key, 0, 0);
        self.drive_until(1_000_000, |s| s.completion(a, req).is_some())
            .expect("connect completes");
        let c = self.completion(a, req).expect("completed");
        assert_eq!(c.status, super::Status::Success, "connect status");
        c.source
    }

    /// Connect both ways; returns (address of b at a, address of a at b).
    pub fn connect_pair(&mut self, a: usize, b: usize) -> (EndpointAddr, EndpointAddr) {
        let ab = self.connect(a, b);
        let ba = self.connect(b, a);
        (ab, ba)
    }

    /// The collected completion of `req` on node `n`.
    pub fn completion(&self, n: usize, req: ReqId) -> Option<&Completion<SimBuf>> {
        self.nodes[n].completions.iter().find(|c| c.req == req)
    }

    fn node_by_dest(&self, peer: u16, ep: u8) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer == peer && n.ep == ep)
    }

    fn put_wire(&mut self, pkt: Packet) {
        if let Some(f) = &mut self.filter {
            if f(&pkt) {
                self.dropped += 1;
                return;
            }
        }
        if self.rng.chance(self.wire.drop) {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.wire.dup) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now + self.wire.latency;
            if self.rng.chance(self.wire.reorder) {
                at += self.rng.below(self.wire.jitter.max(1));
            }
            self.pkt_seq += 1;
            self.sent += 1;
            self.flight.push((at, self.pkt_seq, pkt.clone()));
        }
    }

    fn put_local(&mut self, to: usize, delay: Time, ev: &Event<'_>) {
        let mut slot = EvtSlot::default();
        ev.emit(&mut slot).expect("event fits");
        self.local.push_back((self.now + delay, to, slot));
    }

    fn src_of(&self, i: usize) -> Source {
        Source {
            peer: self.nodes[i].peer,
            endpoint: self.nodes[i].ep,
        }
    }

    fn evt(ev: &Event<'_>) -> Payload {
        let mut slot = EvtSlot::default();
        ev.emit(&mut slot).expect("event fits");
        Payload::Evt(slot)
    }

    /// The simulated backend: one command of node `i`.
    fn backend(&mut self, i: usize, slot: &CmdSlot) {
        let Ok(cmd) = Command::parse(slot) else {
            self.nodes[i].bad_commands += 1;
            return;
        };
        let src = self.src_of(i);
        let dest_of = |s: &Sim, peer, ep| s.node_by_dest(peer, ep);
        // What a message becomes at its destination (slots are filled in
        // on arrival for the slotted ones).
        let arrives =
            |cmd: &Command<'_>| Sim::evt(&arrival(src, cmd, 0).expect("a message command arrives"));
        match cmd {
            Command::Tiny { hdr, .. } => {
                let Some(j) = dest_of(self, hdr.dest.peer, hdr.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(hdr.session),
                    nack_seq: Some(hdr.seq.seqnum),
                    payload,
                });
            }
            Command::Small { hdr, data } => {
                let Some(j) = dest_of(self, hdr.dest.peer, hdr.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = Payload::Slotted {
                    src,
                    cmd: *slot,
                    data: data.to_vec(),
                };
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(hdr.session),
                    nack_seq: Some(hdr.seq.seqnum),
                    payload,
                });
            }
            Command::MediumFrag(m) => {
                let sq = usize::from(m.sendq_slot);
                if sq >= self.nodes[i].sendq.0.len() {
                    self.nodes[i].bad_commands += 1;
                    return;
                }
                let data = self.nodes[i].sendq.0[sq][..usize::from(m.frag_length)].to_vec();
                self.put_local(
                    i,
                    1,
                    &Event::SendMediumDone {
                        sendq_slot: m.sendq_slot,
                    },
                );
                let Some(j) = dest_of(self, m.hdr.dest.peer, m.hdr.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = Payload::Slotted {
                    src,
                    cmd: *slot,
                    data,
                };
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(m.hdr.session),
                    nack_seq: Some(m.hdr.seq.seqnum),
                    payload,
                });
            }
            Command::Rndv(r) => {
                let Some(j) = dest_of(self, r.hdr.dest.peer, r.hdr.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(r.hdr.session),
                    nack_seq: Some(r.hdr.seq.seqnum),
                    payload,
                });
            }
            Command::Notify(n) => {
                let Some(j) = dest_of(self, n.dest.peer, n.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(n.session),
                    nack_seq: Some(n.seq.seqnum),
                    payload,
                });
            }
            Command::ConnectRequest(c) => {
                let Some(j) = dest_of(self, c.dest.peer, c.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: None,
                    nack_seq: Some(0),
                    payload,
                });
            }
            Command::ConnectReply(c) => {
                let Some(j) = dest_of(self, c.dest.peer, c.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: None,
                    nack_seq: None,
                    payload,
                });
            }
            Command::Liback(l) => {
                let Some(j) = dest_of(self, l.dest.peer, l.dest.endpoint) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let payload = arrives(&cmd);
                self.put_wire(Packet {
                    from: i,
                    to: j,
                    session: Some(l.session),
                    nack_seq: None,
                    payload,
                });
            }
            Command::Pull(p) if p.direct && self.direct.is_some() => {
                let lat = 2 * self.wire.latency + 10;
                let ev = match self.pull_source(&p) {
                    Ok(data) => {
                        self.direct_data.insert((i, p.cookie), data);
                        Event::PullDirect {
                            cookie: p.cookie,
                            pid: 1,
                            segs: mx_proto::msg::event::DirectSegs::new(&[(0, p.length)])
                                .expect("one piece"),
                        }
                    }
                    Err(NoSource::NotYet) => return self.defer(i, &p),
                    Err(NoSource::Fail(status, delay)) => {
                        self.put_local(
                            i,
                            delay,
                            &Event::PullDone {
                                cookie: p.cookie,
                                status,
                                transferred: 0,
                            },
                        );
                        return;
                    }
                };
                self.put_local(i, lat, &ev);
            }
            Command::Pull(p) if self.window_of(&p).is_some() => {
                let Some(data) = self.window_pull(i, &p) else {
                    return;
                };
                let (status, transferred, delay) = self.write_pulled(i, &p, &data);
                self.put_local(
                    i,
                    delay,
                    &Event::PullDone {
                        cookie: p.cookie,
                        status,
                        transferred,
                    },
                );
            }
            Command::Pull(p) => {
                if matches!(self.pull_source(&p), Err(NoSource::NotYet)) {
                    return self.defer(i, &p);
                }
                let (status, transferred, delay) = self.do_pull(i, &p);
                self.put_local(
                    i,
                    delay,
                    &Event::PullDone {
                        cookie: p.cookie,
                        status,
                        transferred,
                    },
                );
            }
            Command::RegionRegister(r) => {
                let regions = &mut self.nodes[i].regions;
                if r.first {
                    regions.insert(r.region_id, RegionBuild::default());
                }
                let Some(b) = regions.get_mut(&r.region_id) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let base = usize::from(r.seg_base);
                if b.segs.len() != base {
                    self.nodes[i].bad_commands += 1;
                    return;
                }
                b.segs.extend_from_slice(r.segs());
                b.complete = r.last;
            }
            Command::RegionDeregister { region_id } => {
                if self.nodes[i].regions.remove(&region_id).is_none() {
                    self.nodes[i].bad_commands += 1;
                }
            }
            Command::RegionWindow(w) => {
                let Some(b) = self.nodes[i].regions.get_mut(&w.region_id) else {
                    self.nodes[i].bad_commands += 1;
                    return;
                };
                let len = Sim::region_len(&b.segs);
                let block = u64::from(w.block);
                if !b.complete
                    || b.window.is_some()
                    || block == 0
                    || !len.is_multiple_of(block)
                    || len / block < 2
                    || u64::from(w.msg_len) <= len
                {
                    self.nodes[i].bad_commands += 1;
                    return;
                }
                let n = (len / block) as u32;
                b.window = Some(SimWindow {
                    msg_len: w.msg_len,
                    block: w.block,
                    gen: w.gen,
                    holds: (0..n).map(Some).collect(),
                    staging: vec![None; n as usize],
                    used: vec![0; n as usize],
                });
            }
            Command::RegionStage(st) => {
                let w = self.nodes[i]
                    .regions
                    .get_mut(&st.region_id)
                    .and_then(|b| b.window.as_mut());
                let slot = usize::from(st.slot);
                match w {
                    Some(w)
                        if w.gen == st.gen
                            && w.staging.get(slot).copied().flatten() == Some(st.block) =>
                    {
                        w.staging[slot] = None;
                        w.holds[slot] = Some(st.block);
                    }
                    _ => self.bad_stages += 1,
                }
            }
            // A peer channel's own messages: the core never writes them.
            Command::PeerHello(_) | Command::PullGrant(_) => {}
        }
    }

    /// The sender node and region of a pull whose source is a staging
    /// window.
    fn window_of(&self, p: &mx_proto::msg::command::Pull) -> Option<usize> {
        let j = self.node_by_dest(p.dest.peer, p.dest.endpoint)?;
        let n = &self.nodes[j];
        let live = n.alive && !n.vanished && n.session == p.session;
        (live && n.regions.get(&p.remote.id)?.window.is_some()).then_some(j)
    }

    /// A pull from a staging window: copy the blocks the slots hold, in
    /// order; at the first one no slot holds, ask the sender to stage it
    /// (evicting the slot read longest ago) and hold the pull. On a lossy
    /// wire a block read is sometimes lost: the pull asks for it again and
    /// its slot is evicted, so the block must be staged again. `Some` with
    /// every byte once the pull is complete.
    fn window_pull(&mut self, i: usize, p: &mx_proto::msg::command::Pull) -> Option<Vec<u8>> {
        let j = self.window_of(p)?;
        let lat = 2 * self.wire.latency + 10;
        let mut acc = self.partial.remove(&(i, p.cookie)).unwrap_or_default();
        loop {
            let done = acc.len() as u32;
            if done >= p.length {
                return Some(acc);
            }
            let b = self.nodes[j].regions.get(&p.remote.id)?;
            let w = b.window.as_ref()?;
            if w.gen != p.remote.seqnum
                || u64::from(p.remote.offset) + u64::from(p.length) > u64::from(w.msg_len)
            {
                return Some(Vec::new()); // not this window's bytes: fails the write
            }
            let off = p.remote.offset + done;
            let blk = off / w.block;
            let (block, gen) = (w.block, w.gen);
            match w.holds.iter().position(|&h| h == Some(blk)) {
                Some(slot) => {
                    let n = (p.length - done).min((blk + 1) * block - off);
                    let segs = b.segs.clone();
                    let at = slot as u32 * block + off % block;
                    let data = self.read_region(j, &segs, at, n)?;
                    self.use_tick += 1;
                    let tick = self.use_tick;
                    let lost = self.wire.drop > 0.0 && self.rng.chance(self.wire.drop * 4.0);
                    let w = self.nodes[j]
                        .regions
                        .get_mut(&p.remote.id)?
                        .window
                        .as_mut()?;
                    if lost {
                        // Lost on the way: asked again, and meanwhile its
                        // slot went to another block.
                        self.window_losses += 1;
                        w.holds[slot] = None;
                        continue;
                    }
                    w.used[slot] = tick;
                    acc.extend_from_slice(&data);
                }
                None => {
                    let w = self.nodes[j]
                        .regions
                        .get_mut(&p.remote.id)?
                        .window
                        .as_mut()?;
                    if !w.staging.contains(&Some(blk)) {
                        let pick = (0..w.holds.len())
                            .filter(|&k| w.staging[k].is_none())
                            .min_by_key(|&k| (w.holds[k].is_some(), w.used[k]));
                        if let Some(k) = pick {
                            w.holds[k] = None;
                            w.staging[k] = Some(blk);
                            self.stage_requests += 1;
                            self.put_local(
                                j,
                                lat,
                                &Event::StageNeeded {
                                    region_id: p.remote.id,
                                    gen,
                                    slot: k as u16,
                                    block: blk,
                                },
                            );
                        }
                    }
                    self.partial.insert((i, p.cookie), acc);
                    self.defer(i, p);
                    return None;
                }
            }
        }
    }

    /// Write a window pull's bytes into the puller's region.
    fn write_pulled(
        &mut self,
        i: usize,
        p: &mx_proto::msg::command::Pull,
        data: &[u8],
    ) -> (PullStatus, u32, Time) {
        let lat = 2 * self.wire.latency + 10;
        if data.len() != p.length as usize {
            return (PullStatus::BadRdmaWindow, 0, lat);
        }
        let local = match self.nodes[i].regions.get(&p.local_region) {
            Some(r) if r.complete => r.segs.clone(),
            _ => return (PullStatus::BadLocalRegion, 0, lat),
        };
        if !self.write_region(i, &local, p.local_offset, data) {
            return (PullStatus::BadLocalRegion, 0, lat);
        }
        (PullStatus::Success, p.length, lat)
    }

    /// The pull engine: copy from the remote window into the local region.
    fn do_pull(&mut self, i: usize, p: &mx_proto::msg::command::Pull) -> (PullStatus, u32, Time) {
        let lat = 2 * self.wire.latency + 10;
        let data = match self.pull_source(p) {
            Ok(d) => d,
            Err(NoSource::Fail(status, delay)) => return (status, 0, delay),
            Err(NoSource::NotYet) => return (PullStatus::BadRdmaWindow, 0, lat),
        };
        let local = match self.nodes[i].regions.get(&p.local_region) {
            Some(r) if r.complete => r.segs.clone(),
            _ => return (PullStatus::BadLocalRegion, 0, lat),
        };
        if !self.write_region(i, &local, p.local_offset, &data) {
            return (PullStatus::BadLocalRegion, 0, lat);
        }
        (PullStatus::Success, p.length, lat)
    }

    /// The sender's bytes of a pull, or why not.
    fn pull_source(&self, p: &mx_proto::msg::command::Pull) -> Result<Vec<u8>, NoSource> {
        let lat = 2 * self.wire.latency + 10;
        let Some(j) = self.node_by_dest(p.dest.peer, p.dest.endpoint) else {
            return Err(NoSource::Fail(PullStatus::BadEndpoint, lat));
        };
        if self.nodes[j].vanished {
            return Err(NoSource::Fail(PullStatus::Unreachable, 2_000_000));
        }
        if !self.nodes[j].alive {
            return Err(NoSource::Fail(PullStatus::EndpointClosed, lat));
        }
        if self.nodes[j].session != p.session {
            return Err(NoSource::Fail(PullStatus::BadSession, lat));
        }
        if let Some(st) = self.pull_fail {
            return Err(NoSource::Fail(st, lat));
        }
        let (remote, complete) = match self.nodes[j].regions.get(&p.remote.id) {
            Some(r) if !r.segs.is_empty() || r.complete => (r.segs.clone(), r.complete),
            _ => return Err(NoSource::Fail(PullStatus::BadRdmaWindow, lat)),
        };
        let end = u64::from(p.remote.offset) + u64::from(p.length);
        if !complete && end > Sim::region_len(&remote) {
            return Err(NoSource::NotYet);
        }
        self.read_region(j, &remote, p.remote.offset, p.length)
            .ok_or(NoSource::Fail(PullStatus::BadRdmaWindow, lat))
    }

    /// Hold a pull whose bytes are not registered yet and retry it soon.
    fn defer(&mut self, i: usize, p: &mx_proto::msg::command::Pull) {
        let mut slot = CmdSlot::default();
        Command::Pull(*p)
            .emit(&mut slot)
            .expect("a pull fits a slot");
        self.deferred.push_back((self.now + 3, i, slot));
        self.pulls_held += 1;
    }

    fn region_len(segs: &[RawSeg]) -> u64 {
        segs.iter().map(|s| u64::from(s.len())).sum()
    }

    fn read_region(&self, node: usize, segs: &[RawSeg], off: u32, len: u32) -> Option<Vec<u8>> {
        if u64::from(off) + u64::from(len) > Sim::region_len(segs) {
            return None;
        }
        if let Some(pool) = &self.nodes[node].pool {
            let pool = pool.mem.lock().unwrap();
            let mut out = Vec::with_capacity(len as usize);
            let mut skip = u64::from(off);
            for s in segs {
                let sl = u64::from(s.len());
                if skip >= sl {
                    skip -= sl;
                    continue;
                }
                let n = ((sl - skip) as usize).min(len as usize - out.len());
                let base = (s.addr() + skip) as usize;
                out.extend_from_slice(pool.get(base..base + n)?);
                skip = 0;
            }
            return Some(out);
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut skip = u64::from(off);
        for s in segs {
            if out.len() == len as usize {
                break;
            }
            let sl = u64::from(s.len());
            if skip >= sl {
                skip -= sl;
                continue;
            }
            let buf = self.mem.get(&((s.addr() >> 32) as u32))?.borrow();
            let base = (s.addr() & 0xFFFF_FFFF) as usize + skip as usize;
            let n = ((sl - skip) as usize).min(len as usize - out.len());
            out.extend_from_slice(buf.get(base..base + n)?);
            skip = 0;
        }
        Some(out)
    }

    fn write_region(&self, node: usize, segs: &[RawSeg], off: u32, data: &[u8]) -> bool {
        if u64::from(off) + data.len() as u64 > Sim::region_len(segs) {
            return false;
        }
        if let Some(pool) = &self.nodes[node].pool {
            let mut pool = pool.mem.lock().unwrap();
            let mut done = 0usize;
            let mut skip = u64::from(off);
            for s in segs {
                let sl = u64::from(s.len());
                if skip >= sl {
                    skip -= sl;
                    continue;
                }
                let n = ((sl - skip) as usize).min(data.len() - done);
                let base = (s.addr() + skip) as usize;
                let Some(dst) = pool.get_mut(base..base + n) else {
                    return false;
                };
                dst.copy_from_slice(&data[done..done + n]);
                done += n;
                skip = 0;
            }
            return true;
        }
        let mut done = 0usize;
        let mut skip = u64::from(off);
        for s in segs {
            if done == data.len() {
                break;
            }
            let sl = u64::from(s.len());
            if skip >= sl {
                skip -= sl;
                continue;
            }
            let Some(buf) = self.mem.get(&((s.addr() >> 32) as u32)) else {
                return false;
            };
            let mut buf = buf.borrow_mut();
            let base = (s.addr() & 0xFFFF_FFFF) as usize + skip as usize;
            let n = ((sl - skip) as usize).min(data.len() - done);
            let Some(dst) = buf.get_mut(base..base + n) else {
                return false;
            };
            dst.copy_from_slice(&data[done..done + n]);
            done += n;
            skip = 0;
        }
        true
    }

    /// One packet arrives at its destination: refused (a NACK back) or
    /// turned into its event there (its [`arrival`]) and handed to the core.
    fn arrive(&mut self, pkt: Packet) {
        let to = pkt.to;
        if self.nodes[to].vanished {
            return;
        }
        let refuse = if !self.nodes[to].alive {
            Some(mx_proto::msg::event::NackKind::EndpointClosed)
        } else if pkt.session.is_some_and(|s| s != self.nodes[to].session) {
            Some(mx_proto::msg::event::NackKind::BadSession)
        } else {
            None
        };
        if let Some(nack_type) = refuse {
            if let Some(lib_seqnum) = pkt.nack_seq {
                let src = self.src_of(to);
                let payload = Sim::evt(&Event::RecvNackLib {
                    src,
                    nack_type,
                    lib_seqnum,
                });
                self.put_wire(Packet {
                    from: to,
                    to: pkt.from,
                    session: None,
                    nack_seq: None,
                    payload,
                });
            }
            return;
        }
        let now = self.now;
        match pkt.payload {
            Payload::Evt(slot) => {
                let ev = Event::parse(&slot).expect("sim events parse");
                let n = &mut self.nodes[to];
                n.core.handle_event(now, &ev, &n.recvq);
            }
            Payload::Slotted { src, cmd, data } => {
                let slot = self.fill_recvq(to, &data);
                let cmd = Command::parse(&cmd).expect("the sender's command parsed once");
                let ev = arrival(src, &cmd, slot).expect("a slotted message arrives");
                let n = &mut self.nodes[to];
                n.core.handle_event(now, &ev, &n.recvq);
            }
        }
    }

    fn fill_recvq(&mut self, to: usize, data: &[u8]) -> u16 {
        let nslots = self.nodes[to].recvq.0.len() as u64;
        let slot = self.rng.below(nslots) as u16;
        let s = &mut self.nodes[to].recvq.0[usize::from(slot)];
        s.fill(0x5a);
        s[..data.len()].copy_from_slice(data);
        slot
    }

    /// One round: emit all commands, deliver what is due, run due timers,
    /// collect completions. Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        // Fine interleaving: every batch of commands costs time.
        self.now += self.step_cost;
        let now = self.now;
        for i in 0..self.nodes.len() {
            let mut slot = CmdSlot::default();
            for _ in 0..self.cmd_batch.unwrap_or(usize::MAX) {
                let n = &mut self.nodes[i];
                if !n.alive || n.vanished {
                    break;
                }
                let Some(em) = n.core.poll_command(now, &mut slot) else {
                    break;
                };
                n.sendq.fill(&mut n.core, em);
                n.commands += 1;
                progress = true;
                self.backend(i, &slot);
            }
        }
        // Held pulls that are due, in order.
        let mut held = VecDeque::new();
        while let Some((at, i, slot)) = self.deferred.pop_front() {
            if at <= now && self.nodes[i].alive && !self.nodes[i].vanished {
                self.backend(i, &slot);
                progress = true;
            } else if at > now {
                held.push_back((at, i, slot));
            }
        }
        self.deferred.extend(held);
        // Due wire packets, in time order.
        self.flight
            .sort_by_key(|&(at, seq, _)| std::cmp::Reverse((at, seq)));
        while self.flight.last().is_some_and(|&(at, _, _)| at <= now) {
            let (_, _, pkt) = self.flight.pop().expect("checked");
            self.arrive(pkt);
            progress = true;
        }
        let mut rest = VecDeque::new();
        while let Some((at, to, slot)) = self.local.pop_front() {
            if at <= now {
                let ev = Event::parse(&slot).expect("sim events parse");
                let ok = self.direct == Some(true);
                let data = match ev {
                    Event::PullDirect { cookie, .. } => self.direct_data.remove(&(to, cookie)),
                    _ => None,
                };
                let n = &mut self.nodes[to];
                if !n.alive || n.vanished {
                } else if let Event::PullDirect { cookie, .. } = ev {
                    n.core.handle_pull_direct(cookie, |buf, len| match &data {
                        Some(d) if ok => {
                            buf.write_at(0, &d[..len as usize]);
                            true
                        }
                        _ => false,
                    });
                } else {
                    n.core.handle_event(now, &ev, &n.recvq);
                }
                progress = true;
            } else {
                rest.push_back((at, to, slot));
            }
        }
        self.local = rest;
        for n in &mut self.nodes {
            if !n.alive || n.vanished {
                continue;
            }
            if n.core.poll_timeout().is_some_and(|t| t <= now) {
                n.core.handle_timeout(now);
                progress = true;
            }
            while let Some(c) = n.core.poll_completion() {
                n.completions.push(c);
                progress = true;
            }
        }
        progress
    }

    /// Jump virtual time to the next thing to happen; false when nothing is
    /// scheduled.
    pub fn advance(&mut self) -> bool {
        let wire = self.flight.iter().map(|f| f.0).min();
        let local = self
            .local
            .iter()
            .map(|l| l.0)
            .chain(self.deferred.iter().map(|d| d.0))
            .min();
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive && !n.vanished)
            .filter_map(|n| n.core.poll_timeout())
            .min();
        let next = [wire, local, timers].into_iter().flatten().min();
        match next {
            Some(t) => {
                self.now = self.now.max(t);
                true
            }
            None => false,
        }
    }

    /// Run until nothing is left to do; `Err` after `max_steps` rounds
    /// (a livelock).
    pub fn drive_bounded(&mut self, max_steps: usize) -> Result<usize, String> {
        self.drive_until(max_steps, |_| false)
    }

    /// Run until `done` holds or nothing is left to do.
    pub fn drive_until(
        &mut self,
        max_steps: usize,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<usize, String> {
        for steps in 0..max_steps {
            if done(self) {
                return Ok(steps);
            }
            if !self.step() && !self.advance() {
                return Ok(steps);
            }
        }
        Err(format!(
            "no quiescence after {max_steps} steps at t={} µs ({} packets in flight)",
            self.now,
            self.flight.len()
        ))
    }
}

impl<B: MsgBuf> Core<B> {
    /// A readable dump of the protocol state, for failing tests.
    pub(crate) fn dump(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for (i, p) in self.partners.iter() {
            let _ = writeln!(
                s,
                "partner {i}: send {:#x} acked {:#x} match {:#x} frag {:#x} lastack {:#x} ready {} true {:?} back {:?} non_acked {:?} need_seq {:?} partials {:?} early {} ack {:?}",
                p.next_send_seq,
                p.next_acked_send_seq,
                p.next_match_recv_seq,
                p.next_frag_recv_seq,
                p.last_acked_recv_seq,
                p.send_ready,
                p.true_session,
                p.back_session,
                p.non_acked,
                p.need_seq,
                p.partials.iter().map(|x| (x.seq, x.got, x.msg_length)).collect::<Vec<_>>(),
                p.early.len(),
                p.ack
            );
        }
        for (i, r) in self.reqs.iter() {
            let kind = match &r.kind {
                super::state::Kind::Send(x) => format!(
                    "send {:?} len {} tx {:?} completed {} region {:?}",
                    x.class, x.len, x.tx, x.completed, x.region
                ),
                other => format!("{other:?}"),
            };
            let _ = writeln!(
                s,
                "req {i}: user {:?} internal {} done {:?} {kind}",
                r.user,
                r.internal,
                r.done.map(|d| d.status)
            );
        }
        let _ = writeln!(s, "stats {:?}", self.stats);
        let _ = writeln!(
            s,
            "ctrl {:?}\ndata {:?}\nresend {:?}\nack {:?}\nsendq {:?}\nregion waiters {:?} pulls {:?} windows {} pull waiters {:?} staged sends {}",
            self.emission.ctrl_q, self.emission.data_q, self.timers.resend_q, self.timers.ack_q, self.emission.sendq, self.large.region_wait_partners, self.large.pulls, self.large.send_windows, self.large.pull_waiters, self.large.staged_sends
        );
        s
    }
}
