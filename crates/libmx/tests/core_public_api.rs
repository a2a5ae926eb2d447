//! Drive two protocol cores through their public API only, with a minimal
//! lossless in-memory backend: the order of calls a shell uses, and proof
//! that everything it needs is exported.

use libmx::core::{Completion, Config, Core, EndpointAddr, MsgBuf, RecvQueue, ReqId, Status, Time};
use mx_proto::msg::command::{Command, RawSeg};
use mx_proto::msg::event::{Event, PullStatus, RecvHdr};
use mx_proto::msg::{CmdSlot, EvtSlot, Source, QUEUE_SLOT_SIZE};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A buffer whose segments carry a fake address: buffer id in the high
/// half, offset in the low half (the backend finds the bytes by id).
#[derive(Clone)]
struct Buf {
    id: u32,
    data: Arc<Mutex<Vec<u8>>>,
}

impl MsgBuf for Buf {
    fn len(&self) -> u32 {
        self.data.lock().unwrap().len() as u32
    }
    fn read_at(&self, off: u32, out: &mut [u8]) {
        let d = self.data.lock().unwrap();
        out.copy_from_slice(&d[off as usize..off as usize + out.len()]);
    }
    fn write_at(&mut self, off: u32, data: &[u8]) {
        let mut d = self.data.lock().unwrap();
        d[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    fn segments(&self, out: &mut Vec<(u64, u32)>) {
        if self.len() > 0 {
            out.push((u64::from(self.id) << 32, self.len()));
        }
    }
}

struct Slots(Vec<Vec<u8>>);

impl RecvQueue for Slots {
    fn slot_len(&self, idx: u16) -> usize {
        self.0.slot_len(idx)
    }
    fn read(&self, idx: u16, off: usize, out: &mut [u8]) -> bool {
        self.0.read(idx, off, out)
    }
}

struct Node {
    core: Core<Buf>,
    sendq: Slots,
    recvq: Slots,
    regions: HashMap<u8, Vec<RawSeg>>,
    done: Vec<Completion<Buf>>,
}

struct World {
    nodes: Vec<Node>,
    mem: HashMap<u32, Arc<Mutex<Vec<u8>>>>,
    /// (destination node, event slot, payload for a receive-queue slot)
    events: VecDeque<(usize, EvtSlot, Option<Vec<u8>>)>,
    now: Time,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            nodes: Vec::new(),
            mem: HashMap::new(),
            events: VecDeque::new(),
            now: 0,
        };
        for peer in 0..2u16 {
            let cfg = Config::new(0, peer, 0x100 + u64::from(peer), 0xA0 + u32::from(peer), 7);
            let (sq, rq) = (cfg.sendq_slots, cfg.recvq_slots);
            w.nodes.push(Node {
                core: Core::new(cfg).unwrap(),
                sendq: Slots(vec![vec![0; QUEUE_SLOT_SIZE]; usize::from(sq)]),
                recvq: Slots(vec![vec![0; QUEUE_SLOT_SIZE]; usize::from(rq)]),
                regions: HashMap::new(),
                done: Vec::new(),
            });
        }
        w
    }

    fn buf(&mut self, data: Vec<u8>) -> Buf {
        let id = self.mem.len() as u32 + 1;
        let data = Arc::new(Mutex::new(data));
        self.mem.insert(id, data.clone());
        Buf { id, data }
    }

    fn region_bytes(&self, segs: &[RawSeg]) -> Vec<(u32, usize)> {
        segs.iter()
            .map(|s| ((s.addr() >> 32) as u32, s.len() as usize))
            .collect()
    }

    fn post(&mut self, to: usize, ev: &Event<'_>, payload: Option<Vec<u8>>) {
        let mut slot = EvtSlot::default();
        ev.emit(&mut slot).unwrap();
        self.events.push_back((to, slot, payload));
    }

    /// The backend: turn one command of node `i` into events.
    fn backend(&mut self, i: usize, slot: &CmdSlot) {
        let src = Source {
            peer: i as u16,
            endpoint: 0,
        };
        let hdr = |h: &mx_proto::msg::command::SendHdr| RecvHdr {
            src,
            seq: h.seq,
            match_info: h.match_info,
        };
        match Command::parse(slot).unwrap() {
            Command::Tiny { hdr: h, data } => {
                let to = usize::from(h.dest.peer);
                self.post(to, &Event::RecvTiny { hdr: hdr(&h), data }, None);
            }
            Command::Small { hdr: h, data } => {
                let to = usize::from(h.dest.peer);
                let ev = Event::RecvSmall {
                    hdr: hdr(&h),
                    length: data.len() as u8,
                    recvq_slot: 0,
                };
                self.post(to, &ev, Some(data.to_vec()));
            }
            Command::MediumFrag(m) => {
                let data = self.nodes[i].sendq.0[usize::from(m.sendq_slot)]
                    [..usize::from(m.frag_length)]
                    .to_vec();
                let done = Event::SendMediumDone {
                    sendq_slot: m.sendq_slot,
                };
                self.post(i, &done, None);
                let ev = Event::RecvMediumFrag {
                    hdr: hdr(&m.hdr),
                    msg_length: m.msg_length,
                    frag_seqnum: m.frag_seqnum,
                    frag_length: m.frag_length,
                    recvq_slot: 0,
                };
                self.post(usize::from(m.hdr.dest.peer), &ev, Some(data));
            }
            Command::Rndv(r) => {
                let ev = Event::RecvRndv {
                    hdr: hdr(&r.hdr),
                    msg_length: r.msg_length,
                    rdma: r.rdma,
                };
                self.post(usize::from(r.hdr.dest.peer), &ev, None);
            }
            Command::Notify(n) => {
                let ev = Event::RecvNotify {
                    src,
                    seq: n.seq,
                    total_length: n.total_length,
                    rdma_id: n.rdma_id,
                    rdma_seqnum: n.rdma_seqnum,
                };
                self.post(usize::from(n.dest.peer), &ev, None);
            }
            Command::ConnectRequest(c) => {
                let ev = Event::RecvConnectRequest {
                    src,
                    src_session: c.src_session,
                    app_key: c.app_key,
                    target_recv_seqnum_start: c.target_recv_seqnum_start,
                    connect_seqnum: c.connect_seqnum,
                };
                self.post(usize::from(c.dest.peer), &ev, None);
            }
            Command::ConnectReply(c) => {
                let ev = Event::RecvConnectReply {
                    src,
                    src_session: c.src_session,
                    target_session: c.target_session,
                    target_recv_seqnum_start: c.target_recv_seqnum_start,
                    connect_seqnum: c.connect_seqnum,
                    status: c.status,
                };
                self.post(usize::from(c.dest.peer), &ev, None);
            }
            Command::Liback(l) => {
                let ev = Event::RecvLiback {
                    src,
                    lib_seqnum: l.lib_seqnum,
                    send_seq: l.send_seq,
                    acknum: l.acknum,
                };
                self.post(usize::from(l.dest.peer), &ev, None);
            }
            Command::Pull(p) => {
                // single-segment regions in this test
                let remote = &self.nodes[usize::from(p.dest.peer)].regions[&p.remote.id];
                let local = &self.nodes[i].regions[&p.local_region];
                let (rid, _) = self.region_bytes(remote)[0];
                let (lid, _) = self.region_bytes(local)[0];
                let n = p.length as usize;
                let bytes = self.mem[&rid].lock().unwrap()[..n].to_vec();
                self.mem[&lid].lock().unwrap()[..n].copy_from_slice(&bytes);
                let ev = Event::PullDone {
                    cookie: p.cookie,
                    status: PullStatus::Success,
                    transferred: p.length,
                };
                self.post(i, &ev, None);
            }
            Command::RegionRegister(r) => {
                let segs = self.nodes[i].regions.entry(r.region_id).or_default();
                if r.first {
                    segs.clear();
                }
                segs.extend_from_slice(r.segs());
            }
            Command::RegionDeregister { region_id } => {
                self.nodes[i].regions.remove(&region_id);
            }
            // Nothing is staged here (no bulk pool), so there is no window.
            c @ (Command::RegionWindow(_) | Command::RegionStage(_)) => {
                panic!("a staging window without a pool: {c:?}")
            }
            c @ (Command::PeerHello(_) | Command::PullGrant(_)) => {
                panic!("the core wrote a peer channel's own message: {c:?}")
            }
        }
    }

    /// The shell's loop: outputs, then inputs, then timers, until idle.
    fn run(&mut self) {
        for _ in 0..100_000 {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                let mut slot = CmdSlot::default();
                loop {
                    let n = &mut self.nodes[i];
                    let Some(em) = n.core.poll_command(self.now, &mut slot) else {
                        break;
                    };
                    if let Some(f) = em.frag {
                        let dst = &mut n.sendq.0[usize::from(f.sendq_slot)];
                        assert!(n.core.copy_frag(&f, &mut |off, bytes| {
                            dst[off..off + bytes.len()].copy_from_slice(bytes);
                            true
                        }));
                    }
                    busy = true;
                    self.backend(i, &slot);
                }
            }
            while let Some((to, slot, payload)) = self.events.pop_front() {
                busy = true;
                let n = &mut self.nodes[to];
                if let Some(p) = &payload {
                    n.recvq.0[0][..p.len()].copy_from_slice(p);
                }
                let ev = Event::parse(&slot).unwrap();
                n.core.handle_event(self.now, &ev, &n.recvq);
            }
            for n in &mut self.nodes {
                while let Some(c) = n.core.poll_completion() {
                    n.done.push(c);
                }
            }
            if !busy {
                let next = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.core.poll_timeout())
                    .min();
                match next {
                    Some(t) => {
                        self.now = self.now.max(t);
                        for n in &mut self.nodes {
                            n.core.handle_timeout(self.now);
                        }
                    }
                    None => return,
                }
            }
        }
        panic!("no quiescence");
    }

    fn connect(&mut self, a: usize, b: usize) -> EndpointAddr {
        let req = self.nodes[a]
            .core
            .connect(b as u16, 0, 0x100 + b as u64, 7, 0, 0);
        self.run();
        let c = self.take(a, req);
        assert_eq!(c.status, Status::Success);
        c.source
    }

    fn take(&mut self, n: usize, req: ReqId) -> Completion<Buf> {
        let i = self.nodes[n]
            .done
            .iter()
            .position(|c| c.req == req)
            .expect("completed");
        self.nodes[n].done.remove(i)
    }
}

#[test]
fn two_cores_exchange_every_size_class_through_the_public_api() {
    let mut w = World::new();
    let ab = w.connect(0, 1);
    let info = w.nodes[0].core.partner_info(ab).unwrap();
    assert_eq!((info.peer, info.endpoint, info.nic_id), (1, 0, Some(0x101)));
    for (k, len) in [0usize, 20, 100, 20_000, 100_000].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + k) as u8).collect();
        let rb = w.buf(vec![0; len]);
        let r = w.nodes[1].core.irecv(rb, k as u64, !0, 0).unwrap();
        let sb = w.buf(data.clone());
        let s = w.nodes[0].core.isend(ab, sb, k as u64, 0).unwrap();
        w.run();
        let rc = w.take(1, r);
        assert_eq!(rc.status, Status::Success);
        assert_eq!(*rc.buf.unwrap().data.lock().unwrap(), data, "len {len}");
        assert_eq!(w.take(0, s).status, Status::Success);
    }
    assert!(w.nodes[0].core.is_quiescent() && w.nodes[1].core.is_quiescent());
    // the address is 16 opaque bytes for the C ABI
    assert_eq!(EndpointAddr::from_bytes(ab.to_bytes()), ab);
}
