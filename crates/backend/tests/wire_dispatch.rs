//! The backend's wire side against a hand-driven peer: a backend with a
//! simulated NIC, a raw frontend endpoint on it, and an "evil" port on the
//! same hub that sends crafted frames and reads what the backend answers.
//! Checks the receive dispatch (events and their fields), the NACK rules,
//! the send path's frames, the stateless replier, the pull engine against
//! a fake replier (loss, NACK_MCP, silence), host queries and the
//! peers file.

use backend::nic::sim::{Faults, Hub, SimNic};
use backend::nic::{Nic, Payload};
use backend::{spawn_local_with_nic, BackendConfig, EmbeddedBackend, WireTiming};
use frontend::{Doorbell, EndpointChannel, Frontend};
use mx_proto::msg::command::{
    MediumFrag as CmdMedium, Pull as CmdPull, RawSeg, RegionRegister, SendHdr,
};
use mx_proto::msg::control::ChannelSizes;
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{Command, Dest, Event, RdmaRef, Seq};
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use mxoe_wire::packet::{ConnectRequest, HostQuery, MediumFrag, Msg, Pull, PullReply, Truc};
use mxoe_wire::pull::{blocks, reply_frame, PullBlock};
use mxoe_wire::{
    decode, emit, EndpointId, Frame, Head, LibSeqnum, MatchInfo, NackType, Packet, PeerIndex,
    PullHandle, PullMagic, SessionId, WireProfile,
};
use std::time::{Duration, Instant};

type Ep = EndpointChannel<LocalGuest>;

const B_MAC: [u8; 6] = [2, 0, 0, 0, 0xbb, 2];
const EVIL_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 6];
const STRANGER: [u8; 6] = [2, 0, 0, 0, 0x55, 9];
const EP: u8 = 3;
const EVIL_EP: u8 = 7;

struct World {
    profile: WireProfile,
    hub: Hub,
    evil: SimNic,
    be: EmbeddedBackend,
    _fe: Frontend<LocalGuest>,
    ep: Ep,
    bell: Doorbell<LocalGuest>,
    session: u32,
    evil_idx: u16,
    dir: std::path::PathBuf,
}

fn setup(profile: WireProfile, tag: &str) -> World {
    let dir = std::env::temp_dir().join(format!("mx-wire-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let peers = dir.join("peers");
    std::fs::write(
        &peers,
        "# static peers\n02:00:00:00:ee:06 evil:0\n02:00:00:00:bb:02 beta:0 # ourselves: skipped\n",
    )
    .unwrap();
    let hub = Hub::new(Faults::default());
    let evil = hub.attach(EVIL_MAC, 9000);
    let mut cfg = BackendConfig::new();
    cfg.hostname = "beta:0".into();
    cfg.set_profile(profile);
    cfg.discovery = false;
    cfg.peers_file = Some(peers);
    cfg.wire = WireTiming {
        pull_resend: Duration::from_millis(150),
        pull_timeout: Duration::from_millis(800),
        ..WireTiming::default()
    };
    let be =
        spawn_local_with_nic(cfg, dir.join("b.sock"), Box::new(hub.attach(B_MAC, 9000))).unwrap();
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(be.socket())).unwrap();
    let (ep, bell) = fe
        .open_endpoint(u32::from(EP), ChannelSizes::default())
        .unwrap();
    let session = ep.session();
    let evil_idx = fe.peer_by_hostname("evil:0").unwrap().index;
    assert_eq!(fe.board().nic_id, 0x0200_0000_bb02);
    World {
        profile,
        hub,
        evil,
        be,
        _fe: fe,
        ep,
        bell,
        session,
        evil_idx,
        dir,
    }
}

impl World {
    fn head(&self, peer_index: u16) -> Head {
        Head {
            dst: B_MAC,
            src: EVIL_MAC,
            peer_index: PeerIndex(peer_index),
        }
    }

    fn send(&mut self, packet: Packet<'_>) {
        self.send_from(self.head(0xffff), packet);
    }

    fn send_from(&mut self, head: Head, packet: Packet<'_>) {
        let mut buf = vec![0u8; 10_000];
        let n = emit(&self.profile, &Frame { head, packet }, &mut buf).unwrap();
        self.hub.inject(&buf[..n]);
    }

    /// Frames the backend sent to evil within `wait`.
    fn frames(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            self.evil
                .recv_batch(256, &mut |f| {
                    // Only what the backend sent (injected broadcasts reach evil too).
                    if f.get(6..12) == Some(&B_MAC[..]) {
                        out.push(f.to_vec())
                    }
                })
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        out
    }

    /// Wait for frames until `done` says enough (or 5 s).
    fn frames_until(&mut self, mut done: impl FnMut(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while !done(&out) {
            assert!(
                Instant::now() < deadline,
                "frames missing ({} so far)",
                out.len()
            );
            self.evil
                .recv_batch(256, &mut |f| {
                    // Only what the backend sent (injected broadcasts reach evil too).
                    if f.get(6..12) == Some(&B_MAC[..]) {
                        out.push(f.to_vec())
                    }
                })
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        out
    }

    /// The next event of the endpoint, with its receive-queue payload.
    fn event<R>(&mut self, f: impl FnOnce(&Event<'_>, &[u8]) -> R) -> R {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(slot) = self.ep.next_event().unwrap() {
                let ev = Event::parse(&slot).unwrap();
                let mut data = Vec::new();
                if let Event::RecvSmall {
                    recvq_slot, length, ..
                } = ev
                {
                    data = vec![0; usize::from(length)];
                    self.ep.recvq_read(recvq_slot, 0, &mut data).unwrap();
                    self.ep.recvq_release(recvq_slot).unwrap();
                }
                if let Event::RecvMediumFrag {
                    recvq_slot,
                    frag_length,
                    ..
                } = ev
                {
                    data = vec![0; usize::from(frag_length)];
                    self.ep.recvq_read(recvq_slot, 0, &mut data).unwrap();
                    self.ep.recvq_release(recvq_slot).unwrap();
                }
                let r = f(&ev, &data);
                self.ep.release_events().unwrap();
                return r;
            }
            assert!(Instant::now() < deadline, "no event within 5 s");
            if self.ep.prepare_to_sleep().unwrap() {
                let _ = self.bell.wait(Some(Duration::from_millis(20)));
            }
        }
    }

    fn no_event(&mut self, wait: Duration) {
        std::thread::sleep(wait);
        if let Some(slot) = self.ep.next_event().unwrap() {
            panic!("unexpected event {:?}", Event::parse(&slot));
        }
    }

    fn post(&mut self, cmd: &Command<'_>) {
        self.ep.post(cmd).unwrap();
        self.ep.flush().unwrap();
    }

    fn nic(&self, label: &str) -> u64 {
        self.be.nic_counters().unwrap().by_label(label).unwrap()
    }

    fn msg<'a>(&self, dst: u8, session: u32, seq: u16, payload: &'a [u8]) -> Msg<'a> {
        Msg {
            dst_endpoint: EndpointId(dst),
            src_endpoint: EndpointId(EVIL_EP),
            lib_seqnum: LibSeqnum(seq),
            lib_piggyack: LibSeqnum(0x4321),
            match_info: MatchInfo(0x1122_3344_5566_7788),
            session: SessionId(session),
            payload,
        }
    }

    fn register(&mut self, id: u8, buf: &[u8]) {
        let segs = [RawSeg::new(buf.as_ptr() as u64, buf.len() as u32)];
        for c in RegionRegister::chunks(id, &segs) {
            self.post(&Command::RegionRegister(c));
        }
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect()
}

fn decoded<'a>(p: &WireProfile, f: &'a [u8]) -> Frame<'a> {
    decode(p, f).unwrap()
}

fn receive_dispatch(w: &mut World) {
    let p = w.profile;
    let (evil_idx, session) = (w.evil_idx, w.session);
    // No discovery: nothing is announced.
    assert!(w.frames(Duration::from_millis(100)).is_empty());
    // TINY from a peer of the static file (head index unknown: found by MAC).
    let data = pattern(20, 1);
    w.send(Packet::Tiny(w.msg(EP, session, 0x4005, &data)));
    w.event(|ev, _| match ev {
        Event::RecvTiny { hdr, data: d } => {
            assert_eq!((hdr.src.peer, hdr.src.endpoint), (evil_idx, EVIL_EP));
            assert_eq!((hdr.seq.seqnum, hdr.seq.piggyack), (0x4005, 0x4321));
            assert_eq!(hdr.match_info, 0x1122_3344_5566_7788);
            assert_eq!(*d, &data[..]);
        }
        other => panic!("{other:?}"),
    });
    // SMALL, with the head's index naming evil.
    let data = pattern(100, 2);
    w.send_from(
        w.head(evil_idx),
        Packet::Small(w.msg(EP, session, 6, &data)),
    );
    w.event(|ev, got| {
        assert!(matches!(ev, Event::RecvSmall { length: 100, .. }));
        assert_eq!(got, &data[..]);
    });
    // MEDIUM: two fragments.
    let fm = p.frag_max() as usize;
    let msg = pattern(fm + 10, 3);
    for (i, chunk) in msg.chunks(fm).enumerate() {
        w.send(Packet::Medium(MediumFrag {
            dst_endpoint: EndpointId(EP),
            src_endpoint: EndpointId(EVIL_EP),
            lib_seqnum: LibSeqnum(7),
            lib_piggyack: LibSeqnum(0),
            match_info: MatchInfo(5),
            session: SessionId(session),
            msg_length: msg.len() as u32,
            frag_seqnum: i as u8,
            payload: chunk,
        }));
        w.event(|ev, got| match ev {
            Event::RecvMediumFrag {
                msg_length,
                frag_seqnum,
                ..
            } => {
                assert_eq!(
                    (*msg_length as usize, *frag_seqnum as usize),
                    (msg.len(), i)
                );
                assert_eq!(got, chunk);
            }
            other => panic!("{other:?}"),
        });
    }
    // TRUC: wrong session dropped silently, right one an ack event.
    let truc = |s: u32| {
        Packet::Truc(Truc {
            dst_endpoint: EndpointId(EP),
            src_endpoint: EndpointId(EVIL_EP),
            session: SessionId(s),
            lib_seqnum: LibSeqnum(9),
            session_id: SessionId(s),
            acknum: 3,
            send_seq: LibSeqnum(9),
            resent: 0,
        })
    };
    w.send(truc(session ^ 1));
    assert!(
        w.frames(Duration::from_millis(60)).is_empty(),
        "TRUC never NACKs"
    );
    w.no_event(Duration::ZERO);
    assert_eq!(w.nic("drop: truc to bad endpoint or session"), 1);
    w.send(truc(session));
    w.event(|ev, _| {
        assert!(matches!(
            ev,
            Event::RecvLiback {
                lib_seqnum: 9,
                acknum: 3,
                ..
            }
        ));
    });
    // Unknown senders are dropped (data packets never add peers).
    let mut stranger = w.head(0xffff);
    stranger.src = STRANGER;
    w.send_from(stranger, Packet::Tiny(w.msg(EP, session, 1, &[1])));
    w.no_event(Duration::from_millis(50));
    assert_eq!(w.nic("drop: unknown sender"), 1);
}

fn nack_rules(w: &mut World) {
    let (evil_idx, session) = (w.evil_idx, w.session);
    let p = w.profile;
    // Wrong session, closed endpoint, out of range: one NACK_LIB each with
    // the fields of spec section 4.
    w.send_from(
        w.head(evil_idx),
        Packet::Tiny(w.msg(EP, session ^ 0x10, 0x4011, &[1])),
    );
    w.send(Packet::Tiny(w.msg(5, session, 0x4012, &[1])));
    w.send(Packet::Tiny(w.msg(200, session, 0x4013, &[1])));
    let frames = w.frames_until(|f| f.len() >= 3);
    let mut nacks: Vec<_> = frames
        .iter()
        .map(|f| {
            let fr = decoded(&p, f);
            assert_eq!(fr.head.src, B_MAC);
            assert_eq!(fr.head.dst, EVIL_MAC);
            match fr.packet {
                Packet::NackLib(n) => (
                    n.src_endpoint.0,
                    n.dst_endpoint.0,
                    n.nack_type,
                    n.dst_src_peer_index,
                    n.lib_seqnum.raw(),
                ),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    nacks.sort_by_key(|n| n.4);
    assert_eq!(
        nacks,
        vec![
            (
                EP,
                EVIL_EP,
                NackType::BadSession,
                PeerIndex(evil_idx),
                0x4011
            ),
            (
                5,
                EVIL_EP,
                NackType::EndptClosed,
                PeerIndex::UNKNOWN,
                0x4012
            ),
            (200, EVIL_EP, NackType::BadEndpt, PeerIndex::UNKNOWN, 0x4013),
        ]
    );
    w.no_event(Duration::ZERO);
    // A CONNECT to a closed endpoint is NACKed with lib_seqnum 0.
    w.send(Packet::ConnectRequest(ConnectRequest {
        dst_endpoint: EndpointId(6),
        src_endpoint: EndpointId(EVIL_EP),
        src_dst_peer_index: PeerIndex(0),
        src_session_id: SessionId(77),
        app_key: 1,
        target_recv_seqnum_start: LibSeqnum(1),
        connect_seqnum: 1,
    }));
    let f = w.frames_until(|f| !f.is_empty());
    assert!(matches!(
        decoded(&p, &f[0]).packet,
        Packet::NackLib(n) if n.nack_type == NackType::EndptClosed && n.lib_seqnum == LibSeqnum(0)
    ));
    // A NACK_LIB from evil reaches the endpoint it names.
    w.send(Packet::NackLib(mxoe_wire::packet::NackLib {
        src_endpoint: EndpointId(EVIL_EP),
        dst_endpoint: EndpointId(EP),
        nack_type: NackType::EndptClosed,
        dst_src_peer_index: PeerIndex::UNKNOWN,
        lib_seqnum: LibSeqnum(0x4444),
    }));
    w.event(|ev, _| {
        assert!(matches!(
            ev,
            Event::RecvNackLib { src, nack_type: mx_proto::msg::event::NackKind::EndpointClosed, lib_seqnum: 0x4444 }
                if src.peer == evil_idx && src.endpoint == EVIL_EP
        ));
    });
    // One of a kind no library message can have (a PULL's) is dropped and
    // counted, not posted.
    let bad_values = w.nic("drop: bad field value");
    w.send(Packet::NackLib(mxoe_wire::packet::NackLib {
        src_endpoint: EndpointId(EVIL_EP),
        dst_endpoint: EndpointId(EP),
        nack_type: NackType::BadRdmaWin,
        dst_src_peer_index: PeerIndex::UNKNOWN,
        lib_seqnum: LibSeqnum(0x4445),
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.nic("drop: bad field value") == bad_values {
        assert!(Instant::now() < deadline, "the NACK was not counted");
        std::thread::sleep(Duration::from_millis(1));
    }
    w.no_event(Duration::ZERO);
}

fn send_path(w: &mut World) {
    let p = w.profile;
    let (evil_idx, session) = (w.evil_idx, w.session);
    // A CONNECT request teaches the backend evil's index for it (42) ...
    w.send(Packet::ConnectRequest(ConnectRequest {
        dst_endpoint: EndpointId(EP),
        src_endpoint: EndpointId(EVIL_EP),
        src_dst_peer_index: PeerIndex(42),
        src_session_id: SessionId(0xe5e5),
        app_key: 99,
        target_recv_seqnum_start: LibSeqnum(0x4001),
        connect_seqnum: 4,
    }));
    w.event(|ev, _| {
        assert!(matches!(
            ev,
            Event::RecvConnectRequest {
                src_session: 0xe5e5,
                app_key: 99,
                target_recv_seqnum_start: 0x4001,
                connect_seqnum: 4,
                ..
            }
        ));
    });
    // ... which our frames to evil then carry in their head.
    let dest = Dest {
        peer: evil_idx,
        endpoint: EVIL_EP,
    };
    let hdr = SendHdr {
        dest,
        session: 0xe5e5,
        seq: Seq {
            seqnum: 0x4002,
            piggyack: 0x4003,
        },
        match_info: 0xabcd,
    };
    let data = pattern(30, 9);
    w.post(&Command::Tiny { hdr, data: &data });
    let f = w.frames_until(|f| !f.is_empty());
    let fr = decoded(&p, &f[0]);
    assert_eq!(fr.head.peer_index, PeerIndex(42));
    assert_eq!((fr.head.dst, fr.head.src), (EVIL_MAC, B_MAC));
    assert_eq!(
        fr.packet,
        Packet::Tiny(Msg {
            dst_endpoint: EndpointId(EVIL_EP),
            src_endpoint: EndpointId(EP),
            lib_seqnum: LibSeqnum(0x4002),
            lib_piggyack: LibSeqnum(0x4003),
            match_info: MatchInfo(0xabcd),
            session: SessionId(0xe5e5),
            payload: &data,
        })
    );
    // A medium fragment leaves from the send-queue slot; the slot comes back.
    let fm = p.frag_max() as usize;
    let msg = pattern(fm + 5, 10);
    w.ep.sendq_write(3, &msg[fm..]).unwrap();
    w.post(&Command::MediumFrag(CmdMedium {
        hdr,
        msg_length: msg.len() as u32,
        frag_seqnum: 1,
        frag_length: 5,
        sendq_slot: 3,
    }));
    let f = w.frames_until(|f| !f.is_empty());
    match decoded(&p, &f[0]).packet {
        Packet::Medium(m) => {
            assert_eq!(m.payload, &msg[fm..]);
            assert_eq!((m.frag_seqnum, m.msg_length as usize), (1, msg.len()));
        }
        other => panic!("{other:?}"),
    }
    w.event(|ev, _| assert!(matches!(ev, Event::SendMediumDone { sendq_slot: 3 })));
    // A fragment that disagrees with the profile is refused.
    w.post(&Command::MediumFrag(CmdMedium {
        hdr,
        msg_length: msg.len() as u32,
        frag_seqnum: 0,
        frag_length: 5,
        sendq_slot: 3,
    }));
    w.event(|ev, _| assert!(matches!(ev, Event::CommandError { .. })));
    // A command to a peer index nobody has.
    w.post(&Command::Tiny {
        hdr: SendHdr {
            dest: Dest {
                peer: 999,
                endpoint: 1,
            },
            ..hdr
        },
        data: &data,
    });
    w.event(|ev, _| assert!(matches!(ev, Event::CommandError { .. })));
    let _ = session;
}

fn replier(w: &mut World) {
    let p = w.profile;
    let session = w.session;
    let window = pattern(300_000, 11);
    w.register(4, &window);
    let handle = PullHandle::new(17, 0x99).unwrap();
    let magic = PullMagic::for_endpoint(EndpointId(EVIL_EP));
    let pull = |dst: u8, sess: u32, id: u32, total: u32, b: PullBlock| {
        Packet::Pull(Pull {
            dst_endpoint: EndpointId(dst),
            src_endpoint: EndpointId(EVIL_EP),
            session: SessionId(sess),
            total_length: total,
            pulled_rdma_id: id,
            pulled_rdma_seqnum: 23,
            pulled_rdma_offset: 0,
            src_pull_handle: handle,
            src_magic: magic,
            first_frame_offset: b.first_frame_offset,
            block_length: b.block_length,
            frame_index: b.frame_index,
        })
    };
    // Every block of a 300 KB window, each answered with its frames.
    let mut got = vec![0u8; window.len()];
    for b in blocks(&p, 0, window.len() as u32) {
        w.send(pull(EP, session, 4, window.len() as u32, b));
        let n = b.frames(&p) as usize;
        let frames = w.frames_until(|f| f.len() >= n);
        assert_eq!(frames.len(), n);
        for (i, f) in frames.iter().enumerate() {
            match decoded(&p, f).packet {
                Packet::PullReply(r) => {
                    let want = reply_frame(&p, &b, 0, i as u32).unwrap();
                    assert_eq!(
                        (r.frame_seqnum, r.msg_offset),
                        (want.frame_seqnum, want.msg_offset)
                    );
                    assert_eq!((r.dst_pull_handle, r.dst_magic), (handle, magic));
                    let o = r.msg_offset as usize;
                    got[o..o + r.payload.len()].copy_from_slice(r.payload);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(got == window, "pulled bytes differ");
    // NACK_MCP: unknown window, wrong session, closed and bad endpoint.
    let b0 = blocks(&p, 0, 1000).next().unwrap();
    for (dst, sess, id, want) in [
        (EP, session, 9, NackType::BadRdmaWin),
        (EP, session ^ 1, 4, NackType::BadSession),
        (6, session, 4, NackType::EndptClosed),
        (100, session, 4, NackType::BadEndpt),
    ] {
        w.send(pull(dst, sess, id, 1000, b0));
        let f = w.frames_until(|f| !f.is_empty());
        match decoded(&p, &f[0]).packet {
            Packet::NackMcp(n) => {
                assert_eq!(n.nack_type, want);
                assert_eq!((n.src_pull_handle, n.src_magic), (handle, magic));
                assert_eq!(n.src_endpoint, EndpointId(dst));
            }
            other => panic!("{other:?}"),
        }
    }
    // Bounds errors are dropped without a NACK.
    w.send(pull(EP, session, 4, window.len() as u32 + 1, b0));
    assert!(w.frames(Duration::from_millis(60)).is_empty());
    assert_eq!(w.nic("drop: pull out of bounds"), 1);
}

fn puller(w: &mut World) {
    let p = w.profile;
    let evil_idx = w.evil_idx;
    let len = 200_000usize;
    let remote = pattern(len, 12);
    let local = vec![0u8; len];
    w.register(5, &local);
    let start_pull = |w: &mut World, cookie: u32| {
        w.post(&Command::Pull(CmdPull {
            dest: Dest {
                peer: evil_idx,
                endpoint: EVIL_EP,
            },
            session: 0xe5e5,
            length: len as u32,
            cookie,
            local_region: 5,
            local_offset: 0,
            remote: RdmaRef {
                id: 2,
                seqnum: 23,
                offset: 0,
            },
            direct: false,
        }));
    };
    // The fake replier loses frame 1 of the first block: the later blocks
    // complete, the first is re-requested at once, then completes.
    start_pull(w, 41);
    let mut dropped = false;
    let t0 = Instant::now();
    let mut requests = 0;
    let done = loop {
        let frames = w.frames(Duration::from_millis(10));
        for f in &frames {
            let Packet::Pull(req) = decoded(&p, f).packet else {
                panic!("not a pull");
            };
            requests += 1;
            assert_eq!(req.dst_endpoint, EndpointId(EVIL_EP));
            assert_eq!(req.src_endpoint, EndpointId(EP));
            assert_eq!(req.session, SessionId(0xe5e5));
            assert_eq!(req.src_magic, PullMagic::for_endpoint(EndpointId(EP)));
            assert_eq!(req.total_length, len as u32);
            let b = PullBlock {
                first_frame_offset: req.first_frame_offset,
                block_length: req.block_length,
                frame_index: req.frame_index,
            };
            for i in 0..b.frames(&p) {
                if req.frame_index == 0 && i == 1 && !dropped {
                    dropped = true;
                    continue;
                }
                let rf = reply_frame(&p, &b, 0, i).unwrap();
                let o = rf.msg_offset as usize;
                let head = Head {
                    dst: B_MAC,
                    src: EVIL_MAC,
                    peer_index: PeerIndex(0),
                };
                w.send_from(
                    head,
                    Packet::PullReply(PullReply {
                        frame_seqnum: rf.frame_seqnum,
                        msg_offset: rf.msg_offset,
                        dst_pull_handle: req.src_pull_handle,
                        dst_magic: req.src_magic,
                        payload: &remote[o..o + rf.frame_length as usize],
                    }),
                );
            }
        }
        if let Some(slot) = w.ep.next_event().unwrap() {
            let ev = Event::parse(&slot).unwrap();
            let r = match ev {
                Event::PullDone {
                    cookie,
                    status,
                    transferred,
                } => (cookie, status, transferred),
                other => panic!("{other:?}"),
            };
            w.ep.release_events().unwrap();
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "pull never completed"
        );
    };
    assert_eq!(done, (41, PullStatus::Success, len as u32));
    assert!(local == remote, "pulled bytes differ");
    let nblocks = blocks(&p, 0, len as u32).count();
    assert!(
        requests > nblocks,
        "the incomplete block was requested again"
    );
    // NACK_MCP from the replier fails the pull with the mapped status.
    start_pull(w, 42);
    let f = w.frames_until(|f| !f.is_empty());
    let Packet::Pull(req) = decoded(&p, &f[0]).packet else {
        panic!("not a pull")
    };
    w.send(Packet::NackMcp(mxoe_wire::packet::NackMcp {
        src_endpoint: EndpointId(EVIL_EP),
        nack_type: NackType::BadRdmaWin,
        src_pull_handle: req.src_pull_handle,
        src_magic: req.src_magic,
    }));
    let got = loop {
        let done = w.event(|ev, _| match ev {
            Event::PullDone { cookie, status, .. } => Some((*cookie, *status)),
            _ => None,
        });
        if let Some(d) = done {
            break d;
        }
    };
    assert_eq!(got, (42, PullStatus::BadRdmaWindow));
    // A stale reply for the finished handle is stray.
    let stray_before = w.nic("drop: pull reply stray");
    w.send_from(
        w.head(0),
        Packet::PullReply(PullReply {
            frame_seqnum: 0,
            msg_offset: 0,
            dst_pull_handle: req.src_pull_handle,
            dst_magic: req.src_magic,
            payload: &remote[..100],
        }),
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(w.nic("drop: pull reply stray"), stray_before + 1);
    // A silent replier: re-requests every 150 ms, failure after 800 ms.
    let _ = w.frames(Duration::from_millis(20));
    start_pull(w, 43);
    let t0 = Instant::now();
    let got = loop {
        let done = w.event(|ev, _| match ev {
            Event::PullDone { cookie, status, .. } => Some((*cookie, *status)),
            _ => None,
        });
        if let Some(d) = done {
            break d;
        }
    };
    let took = t0.elapsed();
    assert_eq!(got, (43, PullStatus::Unreachable));
    assert!(took >= Duration::from_millis(700), "gave up after {took:?}");
    let reqs = w.frames(Duration::from_millis(10)).len();
    let blocks_in_flight = nblocks.min(4);
    assert!(reqs >= blocks_in_flight * 3, "only {reqs} requests");
    assert!(w.nic("pull requests resent") > 0);
    assert!(w.nic("pulls failed") >= 2);
}

fn host_queries(w: &mut World) {
    let p = w.profile;
    let evil_idx = w.evil_idx;
    let q = Packet::HostQuery(HostQuery {
        src_dst_peer_index: PeerIndex(7),
        magic: 0x1305_2009,
    });
    // Broadcast queries and queries from strangers are not answered.
    let mut bcast = w.head(0);
    bcast.dst = [0xff; 6];
    w.send_from(bcast, q);
    let mut stranger = w.head(0);
    stranger.src = STRANGER;
    w.send_from(stranger, q);
    assert!(w.frames(Duration::from_millis(60)).is_empty());
    assert_eq!(w.nic("drop: host query refused"), 2);
    // A unicast query from a known peer gets our hostname.
    w.send(q);
    let f = w.frames_until(|f| !f.is_empty());
    match decoded(&p, &f[0]).packet {
        Packet::HostReply(r) => {
            assert_eq!(r.magic, 0x1305_2009);
            assert_eq!(r.hostname.as_str(), Some("beta:0"));
            assert_eq!(r.src_dst_peer_index, PeerIndex(evil_idx));
        }
        other => panic!("{other:?}"),
    }
}

fn full_rings_drop(w: &mut World) {
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(w.be.socket())).unwrap();
    let sizes = ChannelSizes {
        cmd_slots: 16,
        evt_slots: 16,
        sendq_slots: 4,
        recvq_slots: 4,
    };
    let (ep2, _bell2) = fe.open_endpoint(9, sizes).unwrap();
    let s2 = ep2.session();
    for i in 0..40u16 {
        let data = [i as u8; 40];
        let mut m = w.msg(9, s2, i, &data);
        if i % 2 == 0 {
            m.payload = &data[..8];
            w.send(Packet::Tiny(m));
        } else {
            w.send(Packet::Small(m));
        }
    }
    // The NIC keeps serving the other endpoint meanwhile.
    let session = w.session;
    w.send(Packet::Tiny(w.msg(EP, session, 1, &[7])));
    w.event(|ev, _| assert!(matches!(ev, Event::RecvTiny { .. })));
    let drops = w.nic("drop: event ring full") + w.nic("drop: recvq full");
    assert!(drops >= 40 - 16, "only {drops} drops");
    assert!(w.nic("drop: recvq full") > 0);
    drop(ep2);
}

fn run(profile: WireProfile, tag: &str) {
    let mut w = setup(profile, tag);
    receive_dispatch(&mut w);
    nack_rules(&mut w);
    send_path(&mut w);
    replier(&mut w);
    puller(&mut w);
    host_queries(&mut w);
    full_rings_drop(&mut w);
    let _ = std::fs::remove_dir_all(&w.dir);
    let _ = w.evil.send(&[0u8; 60], Payload::None);
}

#[test]
fn wire_dispatch_open_mx_9000() {
    run(WireProfile::OPEN_MX_9000, "omx");
}

#[test]
fn wire_dispatch_mx() {
    run(WireProfile::MX, "mx");
}
