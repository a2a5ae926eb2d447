//! Channel messages: emit then parse is identity; parsing junk never panics.

use mx_proto::msg::command::{
    ConnectReply, ConnectRequest, Liback, MediumFrag, Notify, PeerHello, Pull, PullGrant, RawSeg,
    RegionRegister, RegionStage, RegionWindow, Rndv, SendHdr, REGION_SEGS_PER_CMD,
};
use mx_proto::msg::control::{
    BoardInfo, ChannelSizes, ControlError, ControlReply, ControlRequest, OpenFlags, PeerInfo,
};
use mx_proto::msg::event::{CommandErrorCode, DirectSegs, NackKind, PullStatus};
use mx_proto::msg::{CmdSlot, Command, Dest, Event, EvtSlot, RdmaRef, Seq, Source};
use proptest::prelude::*;

fn dest() -> impl Strategy<Value = Dest> {
    (any::<u16>(), any::<u8>()).prop_map(|(peer, endpoint)| Dest { peer, endpoint })
}
fn source() -> impl Strategy<Value = Source> {
    (any::<u16>(), any::<u8>()).prop_map(|(peer, endpoint)| Source { peer, endpoint })
}
fn seq() -> impl Strategy<Value = Seq> {
    (any::<u16>(), any::<u16>()).prop_map(|(seqnum, piggyack)| Seq { seqnum, piggyack })
}
fn rdma() -> impl Strategy<Value = RdmaRef> {
    (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(id, seqnum, offset)| RdmaRef {
        id,
        seqnum,
        offset,
    })
}
fn send_hdr() -> impl Strategy<Value = SendHdr> {
    (dest(), any::<u32>(), seq(), any::<u64>()).prop_map(|(dest, session, seq, match_info)| {
        SendHdr {
            dest,
            session,
            seq,
            match_info,
        }
    })
}

fn check_cmd(c: &Command<'_>) {
    let mut slot = CmdSlot([0xa5; 192]);
    c.emit(&mut slot).unwrap();
    let back = Command::parse(&slot).unwrap();
    assert_eq!(&back, c);
    // A ring may copy only the bytes the command says it uses: the rest
    // is zero, so a prefix copy parses to the same command.
    let used = Command::used_len(&slot.0);
    assert!(
        slot.0[used..].iter().all(|&b| b == 0),
        "{c:?} uses more than {used} bytes"
    );
    let mut prefix = CmdSlot([0; 192]);
    prefix.0[..used].copy_from_slice(&slot.0[..used]);
    assert_eq!(&Command::parse(&prefix).unwrap(), c);
}

proptest! {
    #[test]
    fn tiny_small_roundtrip(h in send_hdr(), data in proptest::collection::vec(any::<u8>(), 0..=128)) {
        if data.len() <= 32 {
            check_cmd(&Command::Tiny { hdr: h, data: &data });
        }
        check_cmd(&Command::Small { hdr: h, data: &data });
    }

    #[test]
    fn other_commands_roundtrip(
        h in send_hdr(), d in dest(), s in seq(), r in rdma(),
        a in any::<u32>(), b in any::<u32>(), c in any::<u16>(), e in any::<u8>(), f in any::<u8>(),
        frag in 0u16..=8192, slot in any::<u16>(),
    ) {
        check_cmd(&Command::MediumFrag(MediumFrag {
            hdr: h, msg_length: u32::from(frag).max(a), frag_seqnum: e, frag_length: frag, sendq_slot: slot,
        }));
        check_cmd(&Command::Rndv(Rndv { hdr: h, msg_length: a, rdma: r }));
        check_cmd(&Command::Notify(Notify {
            dest: d, session: a, seq: s, total_length: b, rdma_id: e, rdma_seqnum: f,
        }));
        check_cmd(&Command::ConnectRequest(ConnectRequest {
            dest: d, src_session: a, app_key: b, target_recv_seqnum_start: c, connect_seqnum: e,
        }));
        check_cmd(&Command::ConnectReply(ConnectReply {
            dest: d, src_session: a, target_session: b, target_recv_seqnum_start: c,
            connect_seqnum: e, status: f,
        }));
        check_cmd(&Command::Liback(Liback {
            dest: d, session: a, lib_seqnum: c, send_seq: c, acknum: b, resent: 0,
        }));
        check_cmd(&Command::Pull(Pull {
            dest: d, session: a, length: b, cookie: a ^ b, local_region: e,
            local_offset: b, remote: r, direct: false,
        }));
        check_cmd(&Command::Pull(Pull {
            dest: d, session: a, length: b, cookie: a ^ b, local_region: e,
            local_offset: b, remote: r, direct: true,
        }));
        check_cmd(&Command::RegionDeregister { region_id: f });
        check_cmd(&Command::RegionWindow(RegionWindow { region_id: e, gen: f, block: a, msg_len: b }));
        check_cmd(&Command::RegionStage(RegionStage { region_id: f, gen: e, slot: (a >> 16) as u16, block: b }));
        check_cmd(&Command::PeerHello(PeerHello { dest: d, session: a, direct: e & 1 == 1 }));
        let pieces = [(u64::from(a) << 12, b), (u64::from(b), a), (7, c.into())];
        for n in 0..=pieces.len() {
            check_cmd(&Command::PullGrant(PullGrant {
                dest: d, session: a, cookie: b, segs: DirectSegs::new(&pieces[..n]).unwrap(),
            }));
        }
    }

    #[test]
    fn region_chunks_roundtrip(segs in proptest::collection::vec((any::<u64>(), any::<u32>()), 0..=256)) {
        let raw: Vec<RawSeg> = segs.iter().map(|&(a, l)| RawSeg::new(a, l)).collect();
        let chunks: Vec<RegionRegister> = RegionRegister::chunks(7, &raw).collect();
        prop_assert!(chunks.first().unwrap().first);
        prop_assert!(chunks.last().unwrap().last);
        let mut rebuilt = Vec::new();
        for ch in &chunks {
            prop_assert!(ch.segs().len() <= REGION_SEGS_PER_CMD);
            prop_assert_eq!(usize::from(ch.seg_base), rebuilt.len());
            check_cmd(&Command::RegionRegister(*ch));
            rebuilt.extend(ch.segs().iter().map(|s| (s.addr(), s.len())));
        }
        prop_assert_eq!(rebuilt, segs);
    }

    #[test]
    fn events_roundtrip(
        src in source(), s in seq(), m in any::<u64>(), r in rdma(),
        a in any::<u32>(), b in any::<u32>(), c in any::<u16>(), e in any::<u8>(), f in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..=32), frag in 0u16..=8192,
    ) {
        let hdr = mx_proto::msg::event::RecvHdr { src, seq: s, match_info: m };
        let evs = [
            Event::RecvTiny { hdr, data: &data },
            Event::RecvSmall { hdr, length: (a % 129) as u8, recvq_slot: c },
            Event::RecvMediumFrag { hdr, msg_length: u32::from(frag).max(b), frag_seqnum: e, frag_length: frag, recvq_slot: c },
            Event::RecvRndv { hdr, msg_length: a, rdma: r },
            Event::RecvNotify { src, seq: s, total_length: a, rdma_id: e, rdma_seqnum: f },
            Event::RecvConnectRequest { src, src_session: a, app_key: b, target_recv_seqnum_start: c, connect_seqnum: e },
            Event::RecvConnectReply { src, src_session: a, target_session: b, target_recv_seqnum_start: c, connect_seqnum: e, status: f },
            Event::RecvLiback { src, lib_seqnum: c, send_seq: c, acknum: a },
            Event::RecvNackLib { src, nack_type: NackKind::from_u8(1 + e % 3).unwrap(), lib_seqnum: c },
            Event::SendMediumDone { sendq_slot: c },
            Event::PullDone { cookie: a, status: PullStatus::BadRdmaWindow, transferred: b },
            Event::CommandError { cmd_kind: e, code: CommandErrorCode::from_u8(1 + f % 5).unwrap() },
            Event::StageNeeded { region_id: e, gen: f, slot: c, block: a },
            Event::PeerClosed { channel: a },
            Event::PullDirect { cookie: a, pid: b, segs: DirectSegs::new(&[]).unwrap() },
            Event::PullDirect {
                cookie: a,
                pid: b,
                segs: DirectSegs::new(&[(u64::from(a) << 20, b), (7, 0), (u64::MAX, u32::MAX)]).unwrap(),
            },
        ];
        for ev in &evs {
            let mut slot = EvtSlot([0xa5; 64]);
            ev.emit(&mut slot).unwrap();
            prop_assert_eq!(&Event::parse(&slot).unwrap(), ev);
        }
    }

    #[test]
    fn junk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 192)) {
        let mut slot = CmdSlot([0; 192]);
        slot.0.copy_from_slice(&bytes);
        let _ = Command::parse(&slot);
        let mut ev = EvtSlot([0; 64]);
        ev.0.copy_from_slice(&bytes[..64]);
        let _ = Event::parse(&ev);
        let _ = ControlRequest::decode(&bytes);
        let _ = ControlReply::decode(&bytes);
        for n in 0..bytes.len().min(40) {
            let _ = ControlRequest::decode(&bytes[..n]);
            let _ = ControlReply::decode(&bytes[..n]);
        }
    }
}

#[test]
fn oversized_inline_lengths_rejected() {
    let mut slot = CmdSlot::default();
    slot.0[0] = 1; // tiny
    slot.0[12..16].copy_from_slice(&33u32.to_le_bytes());
    assert!(Command::parse(&slot).is_err());
    slot.0[0] = 2; // small
    slot.0[12..16].copy_from_slice(&129u32.to_le_bytes());
    assert!(Command::parse(&slot).is_err());
    slot.0[0] = 200;
    assert!(Command::parse(&slot).is_err());
    let mut ev = EvtSlot::default();
    ev.0[0] = 1;
    ev.0[16..20].copy_from_slice(&33u32.to_le_bytes());
    assert!(Event::parse(&ev).is_err());
}

/// The open flags are an optional trailing word: the version-1 request
/// (no flags) is unchanged and still accepted, flags round-trip, unknown
/// bits and a short flags word are refused.
#[test]
fn open_flags_extend_the_open_request_compatibly() {
    let sizes = ChannelSizes::default();
    let plain = ControlRequest::OpenEndpoint {
        board: 0,
        endpoint: 5,
        sizes,
        flags: OpenFlags::empty(),
    };
    // The version-1 encoding, written out by hand: kind, board, endpoint,
    // four sizes.
    let mut v1 = Vec::new();
    for x in [2u32, 0, 5, 256, 1024, 128, 128] {
        v1.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(
        plain.encode(),
        v1,
        "no flags: the old bytes, for old backends"
    );
    assert_eq!(ControlRequest::decode(&v1).unwrap(), plain);
    // An explicit zero word means no flags too.
    let mut zero = v1.clone();
    zero.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(ControlRequest::decode(&zero).unwrap(), plain);
    let shm = ControlRequest::OpenEndpoint {
        board: 0,
        endpoint: 5,
        sizes,
        flags: OpenFlags::DISABLE_SHMEM,
    };
    let b = shm.encode();
    assert_eq!(b.len(), v1.len() + 4);
    assert_eq!(&b[v1.len()..], &1u32.to_le_bytes());
    assert_eq!(ControlRequest::decode(&b).unwrap(), shm);
    // Bits nobody defined yet, a truncated word, a word too many: refused.
    let mut unknown = v1.clone();
    unknown.extend_from_slice(&0x8000_0001u32.to_le_bytes());
    assert_eq!(
        ControlRequest::decode(&unknown),
        Err(mx_proto::msg::MsgError::BadField("open flags"))
    );
    assert!(ControlRequest::decode(&b[..b.len() - 1]).is_err());
    let mut long = b.clone();
    long.extend_from_slice(&[0; 4]);
    assert!(ControlRequest::decode(&long).is_err());
}

#[test]
fn control_roundtrip() {
    let board = BoardInfo {
        board: 0,
        nic_id: 0x0200_0000_0001,
        hostname: "node1:0".into(),
        self_peer: 0,
        max_endpoints: 32,
        profile: 1,
        mtu: 9000,
        frag_max: 8192,
        medium_max: 262_144,
    };
    let reqs = [
        ControlRequest::Hello { version: 1 },
        ControlRequest::OpenEndpoint {
            board: 0,
            endpoint: 0xffff_ffff,
            sizes: ChannelSizes::default(),
            flags: OpenFlags::empty(),
        },
        ControlRequest::OpenEndpoint {
            board: 0,
            endpoint: 3,
            sizes: ChannelSizes::default(),
            flags: OpenFlags::DISABLE_SHMEM,
        },
        ControlRequest::CloseEndpoint { endpoint: 3 },
        ControlRequest::PeerByNicId { nic_id: 42 },
        ControlRequest::PeerByHostname {
            hostname: "node2:0".into(),
        },
        ControlRequest::PeerByIndex { index: 9 },
        ControlRequest::Board { board: 0 },
        ControlRequest::Counters { endpoint: 1 },
        ControlRequest::PeerDomain {
            endpoint: 1,
            peer_endpoint: 4,
        },
    ];
    for r in &reqs {
        assert_eq!(&ControlRequest::decode(&r.encode()).unwrap(), r);
    }
    let reps = [
        ControlReply::Error(ControlError::Busy),
        ControlReply::Hello(board.clone()),
        ControlReply::Opened {
            endpoint: 2,
            session: 0xdead_beef,
        },
        ControlReply::Closed,
        ControlReply::Peer(PeerInfo {
            index: 1,
            nic_id: 7,
            hostname: String::new(),
            local: false,
        }),
        ControlReply::Board(board),
        ControlReply::Counters(vec![1, 2, 3]),
        ControlReply::PeerDomain { domain: 7 },
    ];
    for r in &reps {
        assert_eq!(&ControlReply::decode(&r.encode()).unwrap(), r);
    }
    // trailing bytes and truncation are errors
    let mut b = reqs[0].encode();
    b.push(0);
    assert!(ControlRequest::decode(&b).is_err());
    assert!(ControlRequest::decode(&b[..3]).is_err());
}

#[test]
fn direct_pull_refuses_more_pieces_than_fit() {
    assert!(DirectSegs::new(&[(1, 1); 4]).is_none());
    let ev = Event::PullDirect {
        cookie: 1,
        pid: 2,
        segs: DirectSegs::new(&[(1, 1)]).unwrap(),
    };
    let mut slot = EvtSlot([0; 64]);
    ev.emit(&mut slot).unwrap();
    slot.0[1] = 4; // a segment count that does not fit
    assert!(Event::parse(&slot).is_err());
}

#[test]
fn raw_control_roundtrip() {
    let reqs = [
        ControlRequest::OpenRaw {
            board: 0,
            sizes: ChannelSizes {
                cmd_slots: 32,
                evt_slots: 128,
                sendq_slots: 32,
                recvq_slots: 64,
            },
        },
        ControlRequest::CloseRaw { board: 0 },
        ControlRequest::SetHostname {
            board: 0,
            hostname: "mapper-named:0".into(),
        },
        ControlRequest::SetPeerName {
            board: 0,
            nic_id: 0x0200_0000_0002,
            hostname: "node2:0".into(),
        },
        ControlRequest::RawCounters { board: 1 },
    ];
    for r in &reqs {
        assert_eq!(&ControlRequest::decode(&r.encode()).unwrap(), r);
    }
    let reps = [
        ControlReply::RawOpened { max_frame: 9014 },
        ControlReply::Done,
        ControlReply::Error(ControlError::NotPermitted),
    ];
    for r in &reps {
        assert_eq!(&ControlReply::decode(&r.encode()).unwrap(), r);
    }
    // A hostname with a NUL or longer than the MX limit does not decode.
    let mut b = ControlRequest::SetHostname {
        board: 0,
        hostname: "ab".into(),
    }
    .encode();
    let n = b.len();
    b[n - 1] = 0;
    assert!(ControlRequest::decode(&b).is_err());
    let mut long = 42u32.to_le_bytes().to_vec();
    long.extend_from_slice(&0u32.to_le_bytes());
    long.push(80);
    long.extend_from_slice(&[b'a'; 80]);
    assert!(ControlRequest::decode(&long).is_err());
}

proptest! {
    #[test]
    fn raw_junk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 192)) {
        use mx_proto::msg::raw_endpoint::{RawCommand, RawEvent};
        let mut slot = CmdSlot([0; 192]);
        slot.0.copy_from_slice(&bytes);
        if let Ok(c) = RawCommand::parse(&slot) {
            let mut again = CmdSlot::default();
            c.emit(&mut again).unwrap();
            prop_assert_eq!(RawCommand::parse(&again), Ok(c));
        }
        let mut ev = EvtSlot([0; 64]);
        ev.0.copy_from_slice(&bytes[..64]);
        if let Ok(e) = RawEvent::parse(&ev) {
            let mut again = EvtSlot::default();
            e.emit(&mut again).unwrap();
            prop_assert_eq!(RawEvent::parse(&again), Ok(e));
        }
    }
}

/// The byte where two emissions of an event differ (the field that
/// differs between them).
fn field_offset(a: &Event<'_>, b: &Event<'_>) -> usize {
    let (mut sa, mut sb) = (EvtSlot::default(), EvtSlot::default());
    a.emit(&mut sa).unwrap();
    b.emit(&mut sb).unwrap();
    let diff: Vec<usize> = (0..sa.0.len()).filter(|&i| sa.0[i] != sb.0[i]).collect();
    assert_eq!(diff.len(), 1, "one byte differs");
    diff[0]
}

/// Every byte value of a NACK kind or a command error code either parses
/// to the typed value it names or is refused; none panics.
#[test]
fn unknown_nack_kinds_and_command_error_codes_are_refused() {
    let src = Source {
        peer: 3,
        endpoint: 4,
    };
    let nack = |k| Event::RecvNackLib {
        src,
        nack_type: k,
        lib_seqnum: 9,
    };
    let cerr = |c| Event::CommandError {
        cmd_kind: 7,
        code: c,
    };
    let cases: [(Event<'_>, usize); 2] = [
        (
            nack(NackKind::BadEndpoint),
            field_offset(&nack(NackKind::BadEndpoint), &nack(NackKind::BadSession)),
        ),
        (
            cerr(CommandErrorCode::Malformed),
            field_offset(
                &cerr(CommandErrorCode::Malformed),
                &cerr(CommandErrorCode::BadLength),
            ),
        ),
    ];
    for (ev, at) in cases {
        let mut slot = EvtSlot::default();
        ev.emit(&mut slot).unwrap();
        let mut known = 0;
        for v in 0..=255u8 {
            slot.0[at] = v;
            match Event::parse(&slot) {
                Ok(Event::RecvNackLib { nack_type, .. }) => {
                    assert_eq!(nack_type as u8, v);
                    known += 1;
                }
                Ok(Event::CommandError { code, .. }) => {
                    assert_eq!(code as u8, v);
                    known += 1;
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => {}
            }
        }
        assert!(known == 3 || known == 5, "{known} values named");
    }
}
