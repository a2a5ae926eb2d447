//! The honest guest: a frontend endpoint driven by raw commands, streams
//! of messages out and byte-exact checks of the streams coming in.
//!
//! Commands on stdin (each answered with `MXACK`):
//!
//! | line | what |
//! |---|---|
//! | `send <ep> <session> <tag> <count\|inf> <all\|medium>` | start a stream to endpoint `ep` |
//! | `recv <ep> <tag> <count\|inf> <all\|medium>` | expect a stream from endpoint `ep` |
//! | `stop <tag>` | end an unbounded send stream (an end marker carries its count) |
//! | `killed <ep> <session>` | the sender `ep` was killed: accept a truncated stream, then probe `ep` until the backend NACKs ENDPT_CLOSED |
//! | `finish` | exit once every stream and probe is complete |
//!
//! Finish receivers before their senders: tiny and small sends have no
//! completion, and the backend drops the commands an endpoint has not
//! consumed yet when it closes, so a sender that exits right after posting
//! may take its last messages (an end marker) with it.
//!
//! Output: `MXREADY <ep> <session> <self_peer> <frag_max> <medium_max>`,
//! `MXRECV <tag> <n>` every 16 messages, `MXNACKED <ep>`, and at exit
//! `MXDONE recv=<tag>:<n>,.. sent=<tag>:<n>,.. nacks=<n> errors=<n> other=<n>`.

use super::{pattern, Sched, DEADLINE_ENV, END_FLAG, EP_ENV, PROBE_FLAG};
use frontend::{Doorbell, EndpointChannel, Frontend};
use mx_proto::channel::ChannelError;
use mx_proto::msg::command::{MediumFrag, SendHdr};
use mx_proto::msg::control::{ChannelSizes, ANY_ENDPOINT};
use mx_proto::msg::{Command, Dest, Event, Seq, SMALL_INLINE_MAX, TINY_INLINE_MAX};
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One received piece of a message: a whole tiny or small message, or one
/// medium fragment.
#[derive(Debug)]
pub struct Frag {
    /// Sending endpoint.
    pub src: u8,
    /// Match info.
    pub match_info: u64,
    /// Lib seqnum.
    pub seqnum: u16,
    /// Total message length.
    pub msg_length: usize,
    /// Fragment index (0 for tiny and small).
    pub frag_seqnum: u8,
    /// Byte offset of this piece in the message.
    pub offset: usize,
    /// The bytes.
    pub data: Vec<u8>,
}

/// An open endpoint and its event handling.
pub struct Node {
    /// The attachment (kept for the life of the endpoint).
    _fe: Frontend<LocalGuest>,
    /// The endpoint.
    pub ep: EndpointChannel<LocalGuest>,
    bell: Doorbell<LocalGuest>,
    /// This host's peer index.
    pub self_peer: u16,
    /// Largest fragment.
    pub frag_max: usize,
    /// Largest medium message.
    pub medium_max: usize,
    free: Vec<u16>,
    nslots: usize,
    /// NACKs received: (endpoint, nack type).
    pub nacks: Vec<(u8, u8)>,
    /// Command errors received: (command kind, code).
    pub errors: Vec<(u8, u8)>,
    /// Other events (connect requests and replies from strangers...).
    pub other: u64,
}

impl Node {
    /// Attach to the backend at `socket` and open `endpoint`.
    pub fn open(socket: &Path, endpoint: u32) -> Node {
        let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(socket)).expect("attach");
        let (ep, bell) = fe
            .open_endpoint(endpoint, ChannelSizes::default())
            .expect("open endpoint");
        let b = fe.board().clone();
        let nslots = ep.sendq_slots() as usize;
        Node {
            self_peer: b.self_peer,
            frag_max: b.frag_max as usize,
            medium_max: b.medium_max as usize,
            free: (0..nslots as u16).rev().collect(),
            nslots,
            _fe: fe,
            ep,
            bell,
            nacks: Vec::new(),
            errors: Vec::new(),
            other: 0,
        }
    }

    /// Send-queue slots not yet given back by the backend.
    pub fn in_flight(&self) -> usize {
        self.nslots - self.free.len()
    }

    /// Post one message whole (all its fragments) or nothing; false when
    /// the command ring or the send queue has no room for it now.
    pub fn try_send(
        &mut self,
        dest_ep: u8,
        session: u32,
        seqnum: u16,
        match_info: u64,
        data: &[u8],
    ) -> bool {
        let hdr = SendHdr {
            dest: Dest {
                peer: self.self_peer,
                endpoint: dest_ep,
            },
            session,
            seq: Seq {
                seqnum,
                piggyack: 0,
            },
            match_info,
        };
        let cmd = if data.len() <= TINY_INLINE_MAX {
            Command::Tiny { hdr, data }
        } else if data.len() <= SMALL_INLINE_MAX {
            Command::Small { hdr, data }
        } else {
            let nfrags = data.len().div_ceil(self.frag_max);
            let space = self.ep.command_space().expect("command ring") as usize;
            if self.free.len() < nfrags || space < nfrags {
                return false;
            }
            for (i, chunk) in data.chunks(self.frag_max).enumerate() {
                let slot = self.free.pop().expect("counted");
                self.ep.sendq_write(slot, chunk).expect("sendq write");
                self.ep
                    .post(&Command::MediumFrag(MediumFrag {
                        hdr,
                        msg_length: data.len() as u32,
                        frag_seqnum: i as u8,
                        frag_length: chunk.len() as u16,
                        sendq_slot: slot,
                    }))
                    .expect("room was checked");
            }
            return true;
        };
        match self.ep.post(&cmd) {
            Ok(()) => true,
            Err(ChannelError::Full) => false,
            Err(e) => panic!("post: {e}"),
        }
    }

    /// Make posted commands visible (and kick the backend if it sleeps).
    pub fn flush(&mut self) {
        self.ep.flush().expect("flush");
    }

    /// Take every pending event; data pieces go to `out`. True if any.
    pub fn poll(&mut self, out: &mut Vec<Frag>) -> bool {
        let mut any = false;
        while let Some(slot) = self.ep.next_event().expect("event ring") {
            any = true;
            let ev = Event::parse(&slot).expect("backend sent a malformed event");
            match ev {
                Event::RecvTiny { hdr, data } => {
                    assert_eq!(hdr.src.peer, self.self_peer);
                    out.push(Frag {
                        src: hdr.src.endpoint,
                        match_info: hdr.match_info,
                        seqnum: hdr.seq.seqnum,
                        msg_length: data.len(),
                        frag_seqnum: 0,
                        offset: 0,
                        data: data.to_vec(),
                    });
                }
                Event::RecvSmall {
                    hdr,
                    length,
                    recvq_slot,
                } => {
                    let mut data = vec![0; length as usize];
                    self.ep.recvq_read(recvq_slot, 0, &mut data).expect("recvq");
                    self.ep.recvq_release(recvq_slot).expect("recvq order");
                    out.push(Frag {
                        src: hdr.src.endpoint,
                        match_info: hdr.match_info,
                        seqnum: hdr.seq.seqnum,
                        msg_length: data.len(),
                        frag_seqnum: 0,
                        offset: 0,
                        data,
                    });
                }
                Event::RecvMediumFrag {
                    hdr,
                    msg_length,
                    frag_seqnum,
                    frag_length,
                    recvq_slot,
                } => {
                    let mut data = vec![0; frag_length as usize];
                    self.ep.recvq_read(recvq_slot, 0, &mut data).expect("recvq");
                    self.ep.recvq_release(recvq_slot).expect("recvq order");
                    out.push(Frag {
                        src: hdr.src.endpoint,
                        match_info: hdr.match_info,
                        seqnum: hdr.seq.seqnum,
                        msg_length: msg_length as usize,
                        frag_seqnum,
                        offset: usize::from(frag_seqnum) * self.frag_max,
                        data,
                    });
                }
                Event::SendMediumDone { sendq_slot } => {
                    assert!(
                        (sendq_slot as usize) < self.nslots && !self.free.contains(&sendq_slot),
                        "backend returned send-queue slot {sendq_slot} twice or out of range"
                    );
                    self.free.push(sendq_slot);
                }
                Event::RecvNackLib { src, nack_type, .. } => {
                    self.nacks.push((src.endpoint, nack_type as u8))
                }
                Event::CommandError { cmd_kind, code } => self.errors.push((cmd_kind, code as u8)),
                _ => self.other += 1,
            }
        }
        if any {
            self.ep.release_events().expect("release events");
        }
        any
    }

    /// Nothing to do: arm the event ring and block briefly (commands-ring
    /// space is not notified, hence the short timeout).
    pub fn idle(&mut self) {
        if self.ep.prepare_to_sleep().expect("prepare to sleep") {
            self.bell
                .wait(Some(Duration::from_millis(2)))
                .expect("doorbell");
        }
    }
}

/// An outgoing stream.
pub struct SendStream {
    dest: u8,
    session: u32,
    tag: u32,
    count: Option<u64>,
    sched: Sched,
    sent: u64,
    stop: bool,
    end_sent: bool,
    next: Option<Vec<u8>>,
}

impl SendStream {
    fn done(&self) -> bool {
        match self.count {
            Some(c) => self.sent >= c,
            None => self.end_sent,
        }
    }

    /// Post the next message if possible; true on progress.
    fn step(&mut self, node: &mut Node) -> bool {
        if self.done() {
            return false;
        }
        if self.count.is_none() && self.stop {
            let m = END_FLAG | (u64::from(self.tag) << 32);
            let count = self.sent.to_le_bytes();
            if node.try_send(self.dest, self.session, self.sent as u16, m, &count) {
                self.end_sent = true;
                return true;
            }
            return false;
        }
        let size = self.sched.size(self.sent, node.frag_max, node.medium_max);
        let data = self
            .next
            .take()
            .unwrap_or_else(|| pattern(self.tag, size, self.sent));
        let m = (u64::from(self.tag) << 32) | (self.sent & 0xffff_ffff);
        if node.try_send(self.dest, self.session, self.sent as u16, m, &data) {
            self.sent += 1;
            true
        } else {
            self.next = Some(data);
            false
        }
    }
}

/// The message being received on a stream.
struct Current {
    size: usize,
    expected: Vec<u8>,
    got: usize,
    next_frag: u8,
}

/// An incoming stream, checked piece by piece.
pub struct RecvStream {
    tag: u32,
    count: Option<u64>,
    sched: Sched,
    received: u64,
    cur: Option<Current>,
    ended: bool,
    killed: bool,
}

impl RecvStream {
    fn done(&self) -> bool {
        self.killed
            || match self.count {
                Some(c) => self.received >= c,
                None => self.ended,
            }
    }

    /// Check one piece; true when it completed a message.
    fn on_frag(&mut self, f: &Frag, frag_max: usize, medium_max: usize) -> bool {
        let ctx = |what: &str| {
            format!(
                "stream {} from ep {}: {what} (message {}, match {:#x}, frag {}, offset {}, len {})",
                self.tag,
                f.src,
                self.received,
                f.match_info,
                f.frag_seqnum,
                f.offset,
                f.data.len()
            )
        };
        assert!(!self.ended, "{}", ctx("data after the end marker"));
        if f.match_info & END_FLAG != 0 {
            assert_eq!(f.match_info, END_FLAG | (u64::from(self.tag) << 32));
            assert!(
                self.count.is_none(),
                "{}",
                ctx("end marker on a bounded stream")
            );
            assert!(self.cur.is_none(), "{}", ctx("end marker inside a message"));
            let n = u64::from_le_bytes(f.data[..8].try_into().expect("8 bytes"));
            assert_eq!(n, self.received, "{}", ctx("end marker count"));
            self.ended = true;
            return false;
        }
        assert_eq!(
            f.match_info,
            (u64::from(self.tag) << 32) | (self.received & 0xffff_ffff),
            "{}",
            ctx("out of order or foreign message")
        );
        assert_eq!(f.seqnum, self.received as u16, "{}", ctx("seqnum"));
        let cur = self.cur.get_or_insert_with(|| {
            let size = self.sched.size(self.received, frag_max, medium_max);
            Current {
                size,
                expected: pattern(self.tag, size, self.received),
                got: 0,
                next_frag: 0,
            }
        });
        assert_eq!(f.msg_length, cur.size, "{}", ctx("message length"));
        assert_eq!(f.frag_seqnum, cur.next_frag, "{}", ctx("fragment order"));
        assert_eq!(f.offset, cur.got, "{}", ctx("fragment offset"));
        let want = &cur.expected[cur.got..(cur.got + f.data.len()).min(cur.size)];
        if f.data != want {
            let i = f.data.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{}",
                ctx(&format!(
                    "content differs at byte {:?} of the piece (expected {} bytes)",
                    i,
                    want.len()
                ))
            );
        }
        cur.got += f.data.len();
        cur.next_frag = cur.next_frag.wrapping_add(1);
        if cur.got == cur.size {
            self.cur = None;
            self.received += 1;
            true
        } else {
            false
        }
    }
}

fn parse_count(s: &str) -> Option<u64> {
    (s != "inf").then(|| s.parse().expect("count"))
}

/// A probe of a killed endpoint: send until it is NACKed ENDPT_CLOSED.
struct Probe {
    ep: u8,
    session: u32,
    last: Option<Instant>,
    done: bool,
}

/// The node role: open an endpoint, then obey stdin.
pub fn run_node(socket: &Path) {
    let endpoint = std::env::var(EP_ENV)
        .ok()
        .map_or(ANY_ENDPOINT, |s| s.parse().expect("endpoint id"));
    let secs: u64 = std::env::var(DEADLINE_ENV)
        .ok()
        .map_or(60, |s| s.parse().expect("deadline"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut node = Node::open(socket, endpoint);
    println!(
        "MXREADY {} {} {} {} {}",
        node.ep.id(),
        node.ep.session(),
        node.self_peer,
        node.frag_max,
        node.medium_max
    );
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut sends: Vec<SendStream> = Vec::new();
    let mut recvs: HashMap<u8, RecvStream> = HashMap::new();
    let mut probes: Vec<Probe> = Vec::new();
    let mut finish = false;
    let mut frags = Vec::new();
    loop {
        let state = |sends: &[SendStream], recvs: &HashMap<u8, RecvStream>, node: &Node| {
            format!(
                "sent {:?}, received {:?}, in flight {}, nacks {:?}, errors {:?}",
                sends.iter().map(|s| (s.tag, s.sent)).collect::<Vec<_>>(),
                recvs
                    .iter()
                    .map(|(e, r)| (*e, r.tag, r.received))
                    .collect::<Vec<_>>(),
                node.in_flight(),
                node.nacks,
                node.errors
            )
        };
        assert!(
            Instant::now() < deadline,
            "guest deadline passed: {}",
            state(&sends, &recvs, &node)
        );
        while let Ok(line) = rx.try_recv() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["send", ep, session, tag, count, sched] => sends.push(SendStream {
                    dest: ep.parse().unwrap(),
                    session: session.parse().unwrap(),
                    tag: tag.parse().unwrap(),
                    count: parse_count(count),
                    sched: Sched::parse(sched),
                    sent: 0,
                    stop: false,
                    end_sent: false,
                    next: None,
                }),
                ["recv", ep, tag, count, sched] => {
                    recvs.insert(
                        ep.parse().unwrap(),
                        RecvStream {
                            tag: tag.parse().unwrap(),
                            count: parse_count(count),
                            sched: Sched::parse(sched),
                            received: 0,
                            cur: None,
                            ended: false,
                            killed: false,
                        },
                    );
                }
                ["stop", tag] => {
                    let tag: u32 = tag.parse().unwrap();
                    sends
                        .iter_mut()
                        .filter(|s| s.tag == tag)
                        .for_each(|s| s.stop = true);
                }
                ["killed", ep, session] => {
                    let ep: u8 = ep.parse().unwrap();
                    if let Some(r) = recvs.get_mut(&ep) {
                        r.killed = true;
                    }
                    probes.push(Probe {
                        ep,
                        session: session.parse().unwrap(),
                        last: None,
                        done: false,
                    });
                }
                ["finish"] => finish = true,
                _ => panic!("unknown command {line:?}"),
            }
            println!("MXACK");
        }
        let mut progress = node.poll(&mut frags);
        for f in frags.drain(..) {
            if f.match_info & PROBE_FLAG != 0 {
                panic!("a probe came back to us: {f:?}");
            }
            let (fm, mm) = (node.frag_max, node.medium_max);
            let Some(r) = recvs.get_mut(&f.src) else {
                panic!("message from unexpected endpoint {}: {f:?}", f.src);
            };
            if r.on_frag(&f, fm, mm) && r.received % 16 == 0 {
                println!("MXRECV {} {}", r.tag, r.received);
            }
        }
        for s in &mut sends {
            for _ in 0..8 {
                if !s.step(&mut node) {
                    break;
                }
                progress = true;
            }
        }
        for p in probes.iter_mut().filter(|p| !p.done) {
            if node
                .nacks
                .iter()
                .any(|&(ep, t)| ep == p.ep && t == backend::shortcut::nack::ENDPT_CLOSED)
            {
                p.done = true;
                println!("MXNACKED {}", p.ep);
                continue;
            }
            if p.last
                .is_none_or(|t| t.elapsed() > Duration::from_millis(20))
                && node.try_send(p.ep, p.session, 0, PROBE_FLAG, b"probe")
            {
                p.last = Some(Instant::now());
                progress = true;
            }
        }
        node.flush();
        if finish
            && sends.iter().all(SendStream::done)
            && recvs.values().all(RecvStream::done)
            && probes.iter().all(|p| p.done)
            && node.in_flight() == 0
        {
            break;
        }
        if !progress {
            node.idle();
        }
    }
    let list = |v: Vec<(u32, u64)>| {
        v.iter()
            .map(|(t, n)| format!("{t}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "MXDONE recv={} sent={} nacks={} errors={} other={}",
        list(recvs.values().map(|r| (r.tag, r.received)).collect()),
        list(sends.iter().map(|s| (s.tag, s.sent)).collect()),
        node.nacks
            .iter()
            .filter(|(ep, _)| !probes.iter().any(|p| p.ep == *ep))
            .count(),
        node.errors.len(),
        node.other
    );
}
