//! Property tests: every valid packet of every type, in every profile,
//! survives encode then decode; no input makes the decoder panic; whatever
//! the decoder accepts, the encoder writes back and it decodes the same.

use mxoe_wire::packet::{
    ConnectReply, ConnectRequest, HostQuery, HostReply, MediumFrag, Msg, NackLib, NackMcp, Notify,
    Pull, PullReply, Raw, Rndv, Truc,
};
use mxoe_wire::{
    decode, emit, emit_header, pad_len, ConnectStatus, EndpointId, Frame, Head, Hostname,
    LibSeqnum, MatchInfo, NackType, Packet, PeerIndex, PullHandle, PullMagic, SessionId,
    WireProfile, ETHERTYPE, ZERO_PAD,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// A generated packet: payload-carrying variants hold an empty slice in
/// `packet` and their bytes in `payload` (see [`attach`]).
#[derive(Clone, Debug)]
struct Case {
    profile: WireProfile,
    head: Head,
    packet: Packet<'static>,
    payload: Vec<u8>,
}

impl Case {
    fn frame(&self) -> Frame<'_> {
        Frame {
            head: self.head,
            packet: attach(self.packet, &self.payload),
        }
    }
}

/// Puts `data` into the payload slot of `packet` (no-op for other types).
fn attach<'a>(packet: Packet<'static>, data: &'a [u8]) -> Packet<'a> {
    match packet {
        Packet::Raw(_) => Packet::Raw(Raw { data }),
        Packet::Tiny(m) => Packet::Tiny(Msg { payload: data, ..m }),
        Packet::Small(m) => Packet::Small(Msg { payload: data, ..m }),
        Packet::Medium(m) => Packet::Medium(MediumFrag { payload: data, ..m }),
        Packet::PullReply(r) => Packet::PullReply(PullReply { payload: data, ..r }),
        other => other,
    }
}

fn profiles() -> impl Strategy<Value = WireProfile> {
    prop_oneof![
        Just(WireProfile::MX),
        Just(WireProfile::OPEN_MX_9000),
        Just(WireProfile::OPEN_MX_1500),
        (WireProfile::OPEN_MX_MIN_MTU..=WireProfile::OPEN_MX_MAX_MTU)
            .prop_map(|mtu| WireProfile::open_mx(mtu).unwrap()),
    ]
}

fn heads() -> impl Strategy<Value = Head> {
    (any::<[u8; 6]>(), any::<[u8; 6]>(), any::<u16>()).prop_map(|(dst, src, p)| Head {
        dst,
        src,
        peer_index: PeerIndex(p),
    })
}

fn ep() -> impl Strategy<Value = EndpointId> {
    any::<u8>().prop_map(EndpointId)
}

fn seq() -> impl Strategy<Value = LibSeqnum> {
    any::<u16>().prop_map(LibSeqnum)
}

fn sid() -> impl Strategy<Value = SessionId> {
    any::<u32>().prop_map(SessionId)
}

fn handle() -> impl Strategy<Value = PullHandle> {
    any::<u32>().prop_map(PullHandle::from_raw)
}

fn magic() -> impl Strategy<Value = PullMagic> {
    any::<u32>().prop_map(PullMagic::from_raw)
}

fn nack_type() -> impl Strategy<Value = NackType> {
    any::<u8>().prop_map(NackType::from)
}

prop_compose! {
    fn msg_fields()(
        dst in ep(), src in ep(), s in seq(), a in seq(), m in any::<u64>(), ses in sid()
    ) -> Msg<'static> {
        Msg {
            dst_endpoint: dst,
            src_endpoint: src,
            lib_seqnum: s,
            lib_piggyack: a,
            match_info: MatchInfo(m),
            session: ses,
            payload: &[],
        }
    }
}

fn case(
    packet: impl Strategy<Value = Packet<'static>>,
    payload: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = Case> {
    (profiles(), heads(), packet, payload).prop_map(|(profile, head, packet, payload)| Case {
        profile,
        head,
        packet,
        payload,
    })
}

fn tiny() -> impl Strategy<Value = Case> {
    case(
        msg_fields().prop_map(Packet::Tiny),
        vec(any::<u8>(), 0..=32),
    )
}

fn small() -> impl Strategy<Value = Case> {
    case(
        msg_fields().prop_map(Packet::Small),
        vec(any::<u8>(), 0..=128),
    )
}

fn medium() -> impl Strategy<Value = Case> {
    (profiles(), heads(), msg_fields())
        .prop_flat_map(|(profile, head, m)| (Just((profile, head, m)), 0..=profile.max_medium()))
        .prop_flat_map(|(ctx, msg_length)| {
            let frags = ctx.0.frag_count(msg_length) as u8;
            (Just((ctx, msg_length)), 0..frags)
        })
        .prop_flat_map(|(((profile, head, m), msg_length), frag_seqnum)| {
            let len = profile.frag_len(msg_length, frag_seqnum).unwrap() as usize;
            vec(any::<u8>(), len).prop_map(move |payload| Case {
                profile,
                head,
                packet: Packet::Medium(MediumFrag {
                    dst_endpoint: m.dst_endpoint,
                    src_endpoint: m.src_endpoint,
                    lib_seqnum: m.lib_seqnum,
                    lib_piggyack: m.lib_piggyack,
                    match_info: m.match_info,
                    session: m.session,
                    msg_length,
                    frag_seqnum,
                    payload: &[],
                }),
                payload,
            })
        })
}

fn rndv() -> impl Strategy<Value = Case> {
    let p = (
        msg_fields(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
    )
        .prop_map(|(m, len, id, s, off)| {
            Packet::Rndv(Rndv {
                dst_endpoint: m.dst_endpoint,
                src_endpoint: m.src_endpoint,
                lib_seqnum: m.lib_seqnum,
                lib_piggyack: m.lib_piggyack,
                match_info: m.match_info,
                session: m.session,
                msg_length: len,
                pulled_rdma_id: id,
                pulled_rdma_seqnum: s,
                pulled_rdma_offset: off,
            })
        });
    case(p, Just(vec![]))
}

fn pull() -> impl Strategy<Value = Case> {
    (profiles(), heads())
        .prop_flat_map(|(profile, head)| (Just((profile, head)), 0..profile.pull_reply_len()))
        .prop_flat_map(|((profile, head), ffo)| {
            let fields = (
                (ep(), ep(), sid(), any::<u32>()),
                (any::<u32>(), any::<u8>(), any::<u32>()),
                (handle(), magic(), any::<u32>()),
            );
            (
                Just((profile, head, ffo)),
                0..=profile.block_len() - ffo,
                fields,
            )
        })
        .prop_map(|((profile, head, ffo), block_length, (a, b, c))| {
            let (id, offset) = if profile.is_mx() {
                (b.0 & 0xFF, b.2 & 0xFFFF)
            } else {
                (b.0, b.2)
            };
            Case {
                profile,
                head,
                packet: Packet::Pull(Pull {
                    dst_endpoint: a.0,
                    src_endpoint: a.1,
                    session: a.2,
                    total_length: a.3,
                    pulled_rdma_id: id,
                    pulled_rdma_seqnum: b.1,
                    pulled_rdma_offset: offset,
                    src_pull_handle: c.0,
                    src_magic: c.1,
                    first_frame_offset: ffo,
                    block_length,
                    frame_index: c.2,
                }),
                payload: vec![],
            }
        })
}

fn pull_reply() -> impl Strategy<Value = Case> {
    (
        profiles(),
        heads(),
        any::<u8>(),
        any::<u32>(),
        handle(),
        magic(),
    )
        .prop_flat_map(|(profile, head, s, off, h, m)| {
            let max = profile.pull_reply_len() as usize;
            vec(any::<u8>(), 0..=max).prop_map(move |payload| Case {
                profile,
                head,
                packet: Packet::PullReply(PullReply {
                    frame_seqnum: s,
                    msg_offset: off,
                    dst_pull_handle: h,
                    dst_magic: m,
                    payload: &[],
                }),
                payload,
            })
        })
}

fn notify() -> impl Strategy<Value = Case> {
    let p = (
        ep(),
        ep(),
        sid(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        seq(),
        seq(),
    )
        .prop_map(|(d, s, ses, len, id, rs, q, a)| {
            Packet::Notify(Notify {
                dst_endpoint: d,
                src_endpoint: s,
                session: ses,
                total_length: len,
                pulled_rdma_id: id,
                pulled_rdma_seqnum: rs,
                lib_seqnum: q,
                lib_piggyack: a,
            })
        });
    case(p, Just(vec![]))
}

fn truc() -> impl Strategy<Value = Case> {
    let p = (
        ep(),
        ep(),
        sid(),
        seq(),
        sid(),
        any::<u32>(),
        seq(),
        any::<u8>(),
    )
        .prop_map(|(d, s, ses, q, sid2, n, ss, r)| {
            Packet::Truc(Truc {
                dst_endpoint: d,
                src_endpoint: s,
                session: ses,
                lib_seqnum: q,
                session_id: sid2,
                acknum: n,
                send_seq: ss,
                resent: r,
            })
        });
    case(p, Just(vec![]))
}

fn connect() -> impl Strategy<Value = Case> {
    let req = (
        ep(),
        ep(),
        any::<u16>(),
        sid(),
        any::<u32>(),
        seq(),
        any::<u8>(),
    )
        .prop_map(|(d, s, pi, ses, key, start, cs)| {
            Packet::ConnectRequest(ConnectRequest {
                dst_endpoint: d,
                src_endpoint: s,
                src_dst_peer_index: PeerIndex(pi),
                src_session_id: ses,
                app_key: key,
                target_recv_seqnum_start: start,
                connect_seqnum: cs,
            })
        });
    let rep = (
        (ep(), ep(), any::<u16>()),
        (sid(), sid(), seq(), any::<u8>(), any::<u8>()),
    )
        .prop_map(|((d, s, pi), (ses, tses, start, cs, st))| {
            Packet::ConnectReply(ConnectReply {
                dst_endpoint: d,
                src_endpoint: s,
                src_dst_peer_index: PeerIndex(pi),
                src_session_id: ses,
                target_session_id: tses,
                target_recv_seqnum_start: start,
                connect_seqnum: cs,
                status: ConnectStatus::from(st),
            })
        });
    case(prop_oneof![req, rep], Just(vec![]))
}

fn nacks() -> impl Strategy<Value = Case> {
    let lib = (ep(), ep(), nack_type(), any::<u16>(), seq()).prop_map(|(s, d, t, pi, q)| {
        Packet::NackLib(NackLib {
            src_endpoint: s,
            dst_endpoint: d,
            nack_type: t,
            dst_src_peer_index: PeerIndex(pi),
            lib_seqnum: q,
        })
    });
    let mcp = (ep(), nack_type(), handle(), magic()).prop_map(|(s, t, h, m)| {
        Packet::NackMcp(NackMcp {
            src_endpoint: s,
            nack_type: t,
            src_pull_handle: h,
            src_magic: m,
        })
    });
    case(prop_oneof![lib, mcp], Just(vec![]))
}

fn host() -> impl Strategy<Value = Case> {
    let q = (any::<u16>(), any::<u32>()).prop_map(|(pi, m)| {
        Packet::HostQuery(HostQuery {
            src_dst_peer_index: PeerIndex(pi),
            magic: m,
        })
    });
    let r = (any::<u16>(), any::<u32>(), vec(1u8..=255, 1..=79)).prop_map(|(pi, m, name)| {
        Packet::HostReply(HostReply {
            src_dst_peer_index: PeerIndex(pi),
            magic: m,
            hostname: Hostname::new(&name).unwrap(),
        })
    });
    case(prop_oneof![q, r], Just(vec![]))
}

/// RAW of at least 43 bytes after the type byte (so no padding is added).
fn raw() -> impl Strategy<Value = Case> {
    case(
        Just(Packet::Raw(Raw { data: &[] })),
        vec(any::<u8>(), 43..300),
    )
}

fn any_case() -> impl Strategy<Value = Case> {
    prop_oneof![
        tiny(),
        small(),
        medium(),
        rndv(),
        pull(),
        pull_reply(),
        notify(),
        truc(),
        connect(),
        nacks(),
        host(),
        raw(),
    ]
}

/// What decoding an encoded `frame` gives back: the same, except that the
/// head peer index of PULL_REPLY and HOST_* is written as 0.
fn expected<'a>(frame: &Frame<'a>) -> Frame<'a> {
    let mut f = *frame;
    if !f.packet.uses_head_peer_index() {
        f.head.peer_index = PeerIndex(0);
    }
    f
}

/// Encode (whole and header-only) then decode, checking every invariant.
fn round_trip(case: &Case) -> Result<(), TestCaseError> {
    let profile = &case.profile;
    let frame = case.frame();
    let len = frame.packet.buffer_len(profile);
    prop_assert!(len >= 60);
    prop_assert!(len <= profile.frame_budget() as usize || matches!(frame.packet, Packet::Raw(_)));

    let mut buf = vec![0xa5u8; len + 16];
    let n = emit(profile, &frame, &mut buf).expect("valid packet must encode");
    prop_assert_eq!(n, len);
    prop_assert!(buf[n..].iter().all(|&b| b == 0xa5), "wrote past the frame");
    let back = decode(profile, &buf[..n]).expect("encoded packet must decode");
    prop_assert_eq!(back, expected(&frame));

    let payload = frame.packet.payload();
    let h = frame.packet.header_len(profile);
    let mut hdr = vec![0xa5u8; h + 4];
    prop_assert_eq!(emit_header(profile, &frame, payload.len(), &mut hdr), Ok(h));
    prop_assert_eq!(&hdr[..h], &buf[..h]);
    prop_assert!(hdr[h..].iter().all(|&b| b == 0xa5));
    let padding = pad_len(h + payload.len());
    prop_assert_eq!(&buf[h + payload.len()..n], &ZERO_PAD[..padding]);
    Ok(())
}

/// If `bytes` decode, the result must re-encode and decode to itself.
fn accepted_round_trips(profile: &WireProfile, bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(frame) = decode(profile, bytes) {
        let mut buf = vec![0u8; frame.packet.buffer_len(profile)];
        let n = emit(profile, &frame, &mut buf).expect("decoded packet must encode");
        let again = decode(profile, &buf[..n]).expect("re-encoded packet must decode");
        match (again.packet, frame.packet) {
            // RAW keeps whatever followed the type byte, padding included.
            (Packet::Raw(a), Packet::Raw(b)) => prop_assert!(a.data.starts_with(b.data)),
            _ => prop_assert_eq!(again, expected(&frame)),
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn tiny_round_trips(c in tiny()) { round_trip(&c)?; }

    #[test]
    fn small_round_trips(c in small()) { round_trip(&c)?; }

    #[test]
    fn medium_round_trips(c in medium()) { round_trip(&c)?; }

    #[test]
    fn rndv_round_trips(c in rndv()) { round_trip(&c)?; }

    #[test]
    fn pull_round_trips(c in pull()) { round_trip(&c)?; }

    #[test]
    fn pull_reply_round_trips(c in pull_reply()) { round_trip(&c)?; }

    #[test]
    fn notify_round_trips(c in notify()) { round_trip(&c)?; }

    #[test]
    fn truc_round_trips(c in truc()) { round_trip(&c)?; }

    #[test]
    fn connect_round_trips(c in connect()) { round_trip(&c)?; }

    #[test]
    fn nack_round_trips(c in nacks()) { round_trip(&c)?; }

    #[test]
    fn host_round_trips(c in host()) { round_trip(&c)?; }

    #[test]
    fn raw_round_trips(c in raw()) { round_trip(&c)?; }

    #[test]
    fn short_raw_is_padded(profile in profiles(), head in heads(), data in vec(any::<u8>(), 0..43)) {
        let frame = Frame { head, packet: Packet::Raw(Raw { data: &data }) };
        let mut buf = [0xa5u8; 60];
        prop_assert_eq!(emit(&profile, &frame, &mut buf), Ok(60));
        let back = decode(&profile, &buf).unwrap();
        let Packet::Raw(r) = back.packet else { panic!("not raw") };
        prop_assert_eq!(&r.data[..data.len()], &data[..]);
        prop_assert!(r.data[data.len()..].iter().all(|&b| b == 0));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Arbitrary bytes: never a panic (debug build, so no overflow either).
    #[test]
    fn decode_never_panics(profile in profiles(), bytes in vec(any::<u8>(), 0..300)) {
        let _ = decode(&profile, &bytes);
        accepted_round_trips(&profile, &bytes)?;
    }

    /// Arbitrary bytes behind a valid head and each type byte, so every
    /// type's checks are reached.
    #[test]
    fn decode_never_panics_behind_valid_head(
        profile in profiles(),
        head in heads(),
        ptype in prop_oneof![select((0u8..=45).collect::<Vec<_>>()), any::<u8>()],
        tail in vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = Vec::with_capacity(17 + tail.len());
        bytes.extend_from_slice(&head.dst);
        bytes.extend_from_slice(&head.src);
        bytes.extend_from_slice(&ETHERTYPE.to_be_bytes());
        bytes.extend_from_slice(&head.peer_index.0.to_be_bytes());
        bytes.push(ptype);
        bytes.extend_from_slice(&tail);
        accepted_round_trips(&profile, &bytes)?;
    }

    /// Valid frames with bytes changed and the end cut: never a panic, and
    /// what still decodes round-trips.
    #[test]
    fn decode_survives_mutated_frames(
        c in any_case(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        other in profiles(),
    ) {
        let frame = c.frame();
        let mut buf = vec![0u8; frame.packet.buffer_len(&c.profile)];
        emit(&c.profile, &frame, &mut buf).unwrap();
        for (i, v) in edits {
            // Leave the head's EtherType alone half of the time.
            let at = i.index(buf.len());
            if !(12..14).contains(&at) || v & 1 == 0 {
                buf[at] = v;
            }
        }
        let len = if cut.index(4) == 0 { cut.index(buf.len() + 1) } else { buf.len() };
        accepted_round_trips(&c.profile, &buf[..len])?;
        // And the same bytes read under another profile.
        accepted_round_trips(&other, &buf[..len])?;
    }
}
