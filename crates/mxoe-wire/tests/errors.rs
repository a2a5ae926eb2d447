//! One test per decode and emit error: frames are built valid, then the
//! field at the specification's offset is broken.

use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::packet::{
    ConnectRequest, HostReply, MediumFrag, Msg, Notify, Pull, PullReply, Rndv, Truc,
};
use mxoe_wire::{
    decode, emit, emit_header, DecodeError, EmitError, EndpointId, Frame, Head, Hostname,
    LibSeqnum, MatchInfo, NicId, Packet, PacketType, PeerIndex, PullHandle, PullMagic, SessionId,
    WireProfile,
};

const MX: WireProfile = WireProfile::MX;
const OMX9000: WireProfile = WireProfile::OPEN_MX_9000;
const OMX1500: WireProfile = WireProfile::OPEN_MX_1500;

const HEAD: Head = Head {
    dst: [2, 0, 0, 0, 0, 1],
    src: [2, 0, 0, 0, 0, 2],
    peer_index: PeerIndex(1),
};

fn msg(payload: &[u8]) -> Msg<'_> {
    Msg {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(1),
        lib_piggyack: LibSeqnum(0),
        match_info: MatchInfo(7),
        session: SessionId(9),
        payload,
    }
}

fn medium(msg_length: u32, frag_seqnum: u8, payload: &[u8]) -> MediumFrag<'_> {
    MediumFrag {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(1),
        lib_piggyack: LibSeqnum(0),
        match_info: MatchInfo(7),
        session: SessionId(9),
        msg_length,
        frag_seqnum,
        payload,
    }
}

fn pull(first_frame_offset: u32, block_length: u32) -> Pull {
    Pull {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        session: SessionId(3),
        total_length: 1 << 20,
        pulled_rdma_id: 4,
        pulled_rdma_seqnum: 23,
        pulled_rdma_offset: 0,
        src_pull_handle: PullHandle::new(1, 0x23).unwrap(),
        src_magic: PullMagic::for_endpoint(EndpointId(2)),
        first_frame_offset,
        block_length,
        frame_index: 0,
    }
}

/// Encodes a valid packet (the buffer is exactly the frame).
fn bytes(profile: &WireProfile, packet: Packet<'_>) -> Vec<u8> {
    let frame = Frame { head: HEAD, packet };
    let mut buf = vec![0xa5; packet.buffer_len(profile)];
    emit(profile, &frame, &mut buf).unwrap();
    buf
}

fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn truncated_head_type_and_header() {
    let tiny = bytes(&MX, Packet::Tiny(msg(b"abc")));
    for profile in [MX, OMX9000] {
        assert_eq!(
            decode(&profile, &[]),
            Err(DecodeError::Truncated {
                needed: 16,
                available: 0
            })
        );
        assert_eq!(
            decode(&profile, &tiny[..15]),
            Err(DecodeError::Truncated {
                needed: 16,
                available: 15
            })
        );
        assert_eq!(
            decode(&profile, &tiny[..16]),
            Err(DecodeError::Truncated {
                needed: 17,
                available: 16
            })
        );
        assert_eq!(
            decode(&profile, &tiny[..39]),
            Err(DecodeError::Truncated {
                needed: 40,
                available: 39
            })
        );
    }
    // The open-mx PULL header is longer than the mx one.
    let p = bytes(&MX, Packet::Pull(pull(0, 100)));
    assert!(decode(&MX, &p[..48]).is_ok());
    assert_eq!(
        decode(&OMX9000, &p[..48]),
        Err(DecodeError::Truncated {
            needed: 60,
            available: 48
        })
    );
}

#[test]
fn bad_ethertype() {
    let mut f = bytes(&MX, Packet::Tiny(msg(b"")));
    set16(&mut f, 12, 0x0800);
    assert_eq!(decode(&MX, &f), Err(DecodeError::BadEtherType(0x0800)));
}

#[test]
fn unknown_and_unsupported_types() {
    let mut f = bytes(&MX, Packet::Tiny(msg(b"")));
    for t in [5u8, 31, 46, 0xFF] {
        f[16] = t;
        assert_eq!(decode(&MX, &f), Err(DecodeError::UnknownType(t)));
    }
    for (t, pt) in [
        (0u8, PacketType::None),
        (2, PacketType::MfmNicReply),
        (32, PacketType::EtherUnicast),
        (33, PacketType::EtherMulticast),
        (34, PacketType::EtherNative),
    ] {
        f[16] = t;
        assert_eq!(decode(&OMX9000, &f), Err(DecodeError::UnsupportedType(pt)));
    }
}

#[test]
fn declared_length_beyond_frame() {
    let tiny = bytes(&MX, Packet::Tiny(msg(b"hello")));
    // Unpadded 45-byte frame cut to 44: the payload is not all there.
    assert_eq!(
        decode(&MX, &tiny[..44]),
        Err(DecodeError::LengthBeyondFrame {
            declared: 45,
            available: 44
        })
    );
    let mut small = bytes(&MX, Packet::Small(msg(&[1; 100])));
    set16(&mut small, 20, 128);
    assert_eq!(
        decode(&MX, &small),
        Err(DecodeError::LengthBeyondFrame {
            declared: 168,
            available: 140
        })
    );
    let m = bytes(&OMX9000, Packet::Medium(medium(1000, 0, &[0; 1000])));
    assert_eq!(
        decode(&OMX9000, &m[..1047]),
        Err(DecodeError::LengthBeyondFrame {
            declared: 1048,
            available: 1047
        })
    );
    let r = PullReply {
        frame_seqnum: 0,
        msg_offset: 0,
        dst_pull_handle: PullHandle::from_raw(0),
        dst_magic: PullMagic::from_raw(0),
        payload: &[9; 100],
    };
    let r = bytes(&MX, Packet::PullReply(r));
    assert_eq!(
        decode(&MX, &r[..131]),
        Err(DecodeError::LengthBeyondFrame {
            declared: 132,
            available: 131
        })
    );
}

#[test]
fn tiny_and_small_limits() {
    let mut tiny = bytes(&MX, Packet::Tiny(msg(&[0; 32])));
    tiny.push(0);
    set16(&mut tiny, 20, 33);
    assert_eq!(decode(&MX, &tiny), Err(DecodeError::TinyTooLong(33)));
    let mut small = bytes(&MX, Packet::Small(msg(&[0; 128])));
    small.push(0);
    set16(&mut small, 20, 129);
    assert_eq!(decode(&MX, &small), Err(DecodeError::SmallTooLong(129)));
    // A SMALL may be short.
    assert!(decode(&MX, &bytes(&MX, Packet::Small(msg(b"x")))).is_ok());
}

#[test]
fn rndv_length() {
    let r = Rndv {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(1),
        lib_piggyack: LibSeqnum(0),
        match_info: MatchInfo(0),
        session: SessionId(0),
        msg_length: 100_000,
        pulled_rdma_id: 0,
        pulled_rdma_seqnum: 0,
        pulled_rdma_offset: 0,
    };
    let mut f = bytes(&MX, Packet::Rndv(r));
    set16(&mut f, 20, 9);
    assert_eq!(decode(&MX, &f), Err(DecodeError::RndvLength(9)));
}

#[test]
fn medium_errors() {
    // Fragment longer than the profile's max.
    let mut f = bytes(&MX, Packet::Medium(medium(4096, 0, &[0; 4096])));
    f.push(0);
    set16(&mut f, 40, 4097);
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::FragTooLong {
            len: 4097,
            max: 4096
        })
    );

    // Fragment number beyond fragments per message (mx: 8).
    let mut f = bytes(&MX, Packet::Medium(medium(32768, 7, &[0; 4096])));
    f[42] = 8;
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::FragSeqnumOutOfRange { seqnum: 8, max: 8 })
    );
    let mut f = bytes(&OMX9000, Packet::Medium(medium(100, 0, &[0; 100])));
    f[42] = 32;
    assert_eq!(
        decode(&OMX9000, &f),
        Err(DecodeError::FragSeqnumOutOfRange {
            seqnum: 32,
            max: 32
        })
    );

    // mx pipeline must be 12.
    let mut f = bytes(&MX, Packet::Medium(medium(100, 0, &[0; 100])));
    f[43] = 11;
    assert_eq!(decode(&MX, &f), Err(DecodeError::FragPipeline(11)));

    // Message longer than the max medium.
    let mut f = bytes(&OMX9000, Packet::Medium(medium(100, 0, &[0; 100])));
    set32(&mut f, 20, 262_145);
    assert_eq!(
        decode(&OMX9000, &f),
        Err(DecodeError::MediumTooLong {
            len: 262_145,
            max: 262_144
        })
    );

    // A short fragment that is not the last one.
    let mut f = bytes(&OMX1500, Packet::Medium(medium(2000, 0, &[0; 1452])));
    set32(&mut f, 20, 3000);
    set16(&mut f, 40, 1000);
    assert_eq!(
        decode(&OMX1500, &f),
        Err(DecodeError::FragMismatch {
            seqnum: 0,
            len: 1000,
            msg_len: 3000
        })
    );
    // A fragment past the message's last one.
    let mut f = bytes(&MX, Packet::Medium(medium(5000, 1, &[0; 904])));
    f[42] = 2;
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::FragMismatch {
            seqnum: 2,
            len: 904,
            msg_len: 5000
        })
    );
}

#[test]
fn pull_errors() {
    let mut f = bytes(&MX, Packet::Pull(pull(0, 100)));
    set16(&mut f, 40, 4096); // first_frame_offset
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::PullFrameOffset {
            offset: 4096,
            max: 4096
        })
    );

    let mut f = bytes(&MX, Packet::Pull(pull(1, 100)));
    set16(&mut f, 42, 32768); // block_length: 1 + 32768 needs 9 frames
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::PullBlockTooLarge {
            end: 32769,
            max: 32768
        })
    );

    let mut f = bytes(&OMX9000, Packet::Pull(pull(0, 100)));
    set32(&mut f, 52, u32::MAX); // block_length: no overflow in the check
    assert_eq!(
        decode(&OMX9000, &f),
        Err(DecodeError::PullBlockTooLarge {
            end: u64::from(u32::MAX),
            max: 286_976
        })
    );
}

#[test]
fn pull_reply_too_long() {
    let data = vec![0u8; 1469];
    let r = PullReply {
        frame_seqnum: 0,
        msg_offset: 0,
        dst_pull_handle: PullHandle::from_raw(0),
        dst_magic: PullMagic::from_raw(0),
        payload: &data,
    };
    let f = bytes(&OMX9000, Packet::PullReply(r));
    assert!(decode(&OMX9000, &f).is_ok());
    assert_eq!(
        decode(&OMX1500, &f),
        Err(DecodeError::PullReplyTooLong {
            len: 1469,
            max: 1468
        })
    );
    assert_eq!(decode(&MX, &f).map(|_| ()), Ok(()));
    let big = vec![0u8; 4097];
    let r = PullReply { payload: &big, ..r };
    let f = bytes(&OMX9000, Packet::PullReply(r));
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::PullReplyTooLong {
            len: 4097,
            max: 4096
        })
    );
}

#[test]
fn truc_errors() {
    let t = Truc {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        session: SessionId(3),
        lib_seqnum: LibSeqnum(4),
        session_id: SessionId(3),
        acknum: 1,
        send_seq: LibSeqnum(4),
        resent: 0,
    };
    let good = bytes(&MX, Packet::Truc(t));
    let mut f = good.clone();
    f[20] = 15;
    assert_eq!(decode(&MX, &f), Err(DecodeError::TrucLength(15)));
    let mut f = good;
    f[28] = 0x54;
    assert_eq!(decode(&MX, &f), Err(DecodeError::TrucType(0x54)));
}

#[test]
fn connect_length() {
    let c = ConnectRequest {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        src_dst_peer_index: PeerIndex(3),
        src_session_id: SessionId(4),
        app_key: 5,
        target_recv_seqnum_start: LibSeqnum(1),
        connect_seqnum: 6,
    };
    let mut f = bytes(&MX, Packet::ConnectRequest(c));
    f[20] = 17;
    assert_eq!(decode(&MX, &f), Err(DecodeError::ConnectLength(17)));
}

#[test]
fn hostname_errors() {
    let r = HostReply {
        src_dst_peer_index: PeerIndex(1),
        magic: 2,
        hostname: Hostname::try_from("abcdef").unwrap(),
    };
    let good = bytes(&MX, Packet::HostReply(r));
    for len in [0u8, 1, 81, 255] {
        let mut f = good.clone();
        f[17] = len;
        assert_eq!(decode(&MX, &f), Err(DecodeError::HostnameLength(len)));
    }
    let mut f = good.clone();
    f[17] = 6; // "abcdef" without its NUL
    assert_eq!(decode(&MX, &f), Err(DecodeError::HostnameNotTerminated));
    let mut f = good.clone();
    f[34] = 0; // "ab\0def\0"
    assert_eq!(decode(&MX, &f), Err(DecodeError::HostnameInteriorNul));
    let mut f = good.clone();
    f[17] = 80; // runs past the 60-byte frame
    assert_eq!(
        decode(&MX, &f),
        Err(DecodeError::LengthBeyondFrame {
            declared: 112,
            available: 60
        })
    );
    // Longest name: 79 bytes + NUL.
    let long = Hostname::new(&[b'n'; 79]).unwrap();
    let f = bytes(
        &MX,
        Packet::HostReply(HostReply {
            hostname: long,
            ..r
        }),
    );
    assert_eq!(f.len(), 112);
    assert!(decode(&MX, &f).is_ok());
}

#[test]
fn mapper_errors() {
    let m = MapperAnnounce {
        src: [2, 0, 0, 0, 0, 9],
        nic_id: NicId::from_mac([2, 0, 0, 0, 0, 9]),
        serial: 1,
    };
    let mut good = [0u8; 64];
    m.emit(&mut good).unwrap();
    assert_eq!(MapperAnnounce::decode(&good), Ok(m));
    assert_eq!(
        MapperAnnounce::decode(&good[..63]),
        Err(DecodeError::Truncated {
            needed: 64,
            available: 63
        })
    );
    assert_eq!(
        MapperAnnounce::decode(&good[..3]),
        Err(DecodeError::Truncated {
            needed: 16,
            available: 3
        })
    );
    let mut f = good;
    f[16] = 37;
    assert_eq!(
        MapperAnnounce::decode(&f),
        Err(DecodeError::NotMapper(PacketType::Tiny))
    );
    let mut f = good;
    set32(&mut f, 32, 0x0001_0000);
    assert_eq!(
        MapperAnnounce::decode(&f),
        Err(DecodeError::BadNicId { hi: 0x0001_0000 })
    );
    let mut f = good;
    set16(&mut f, 12, 0x0806);
    assert_eq!(
        MapperAnnounce::decode(&f),
        Err(DecodeError::BadEtherType(0x0806))
    );
    assert_eq!(
        m.emit(&mut [0u8; 63]),
        Err(EmitError::BufferTooSmall {
            needed: 64,
            available: 63
        })
    );
}

#[test]
fn emit_errors() {
    let tiny = Frame {
        head: HEAD,
        packet: Packet::Tiny(msg(b"abc")),
    };
    let mut buf = [0u8; 59];
    assert_eq!(
        emit(&MX, &tiny, &mut buf),
        Err(EmitError::BufferTooSmall {
            needed: 60,
            available: 59
        })
    );
    assert_eq!(
        emit_header(&MX, &tiny, 3, &mut buf[..39]),
        Err(EmitError::BufferTooSmall {
            needed: 40,
            available: 39
        })
    );
    let mut buf = [0u8; 9000];
    let big = Frame {
        head: HEAD,
        packet: Packet::Tiny(msg(&[0; 33])),
    };
    assert_eq!(
        emit(&MX, &big, &mut buf),
        Err(EmitError::Invalid(DecodeError::TinyTooLong(33)))
    );
    assert_eq!(
        emit_header(&MX, &tiny, 100_000, &mut buf),
        Err(EmitError::Invalid(DecodeError::TinyTooLong(100_000)))
    );
    let frag = Frame {
        head: HEAD,
        packet: Packet::Medium(medium(5000, 0, &[])),
    };
    assert_eq!(emit_header(&MX, &frag, 4096, &mut buf), Ok(48));
    assert_eq!(
        emit_header(&MX, &frag, 4000, &mut buf),
        Err(EmitError::Invalid(DecodeError::FragMismatch {
            seqnum: 0,
            len: 4000,
            msg_len: 5000
        }))
    );
    let n = Notify {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        session: SessionId(3),
        total_length: 0,
        pulled_rdma_id: 0,
        pulled_rdma_seqnum: 0,
        lib_seqnum: LibSeqnum(1),
        lib_piggyack: LibSeqnum(0),
    };
    let nf = Frame {
        head: HEAD,
        packet: Packet::Notify(n),
    };
    assert_eq!(
        emit_header(&MX, &nf, 4, &mut buf),
        Err(EmitError::UnexpectedPayload(4))
    );
    assert_eq!(emit_header(&MX, &nf, 0, &mut buf), Ok(40));

    // The narrower mx PULL fields.
    let p = Pull {
        pulled_rdma_id: 256,
        ..pull(0, 10)
    };
    let pf = Frame {
        head: HEAD,
        packet: Packet::Pull(p),
    };
    assert_eq!(
        emit(&MX, &pf, &mut buf),
        Err(EmitError::FieldOverflow {
            field: "pulled_rdma_id",
            value: 256
        })
    );
    assert!(emit(&OMX9000, &pf, &mut buf).is_ok());
    let p = Pull {
        pulled_rdma_offset: 65_536,
        ..pull(0, 10)
    };
    let pf = Frame {
        head: HEAD,
        packet: Packet::Pull(p),
    };
    assert_eq!(
        emit(&MX, &pf, &mut buf),
        Err(EmitError::FieldOverflow {
            field: "pulled_rdma_offset",
            value: 65_536
        })
    );
    let pf = Frame {
        head: HEAD,
        packet: Packet::Pull(pull(0, 32_769)),
    };
    assert_eq!(
        emit(&MX, &pf, &mut buf),
        Err(EmitError::Invalid(DecodeError::PullBlockTooLarge {
            end: 32_769,
            max: 32_768
        }))
    );
}

#[test]
fn errors_display() {
    use std::error::Error;
    let all = [
        DecodeError::Truncated {
            needed: 1,
            available: 0,
        },
        DecodeError::BadEtherType(1),
        DecodeError::UnknownType(5),
        DecodeError::UnsupportedType(PacketType::None),
        DecodeError::LengthBeyondFrame {
            declared: 1,
            available: 0,
        },
        DecodeError::TinyTooLong(33),
        DecodeError::SmallTooLong(129),
        DecodeError::RndvLength(0),
        DecodeError::MediumTooLong { len: 1, max: 0 },
        DecodeError::FragTooLong { len: 1, max: 0 },
        DecodeError::FragSeqnumOutOfRange { seqnum: 9, max: 8 },
        DecodeError::FragPipeline(0),
        DecodeError::FragMismatch {
            seqnum: 0,
            len: 0,
            msg_len: 0,
        },
        DecodeError::PullReplyTooLong { len: 1, max: 0 },
        DecodeError::PullFrameOffset { offset: 1, max: 0 },
        DecodeError::PullBlockTooLarge { end: 1, max: 0 },
        DecodeError::TrucLength(0),
        DecodeError::TrucType(0),
        DecodeError::ConnectLength(0),
        DecodeError::HostnameLength(0),
        DecodeError::HostnameNotTerminated,
        DecodeError::HostnameInteriorNul,
        DecodeError::NotMapper(PacketType::Tiny),
        DecodeError::BadNicId { hi: 1 << 16 },
    ];
    for e in all {
        assert!(!e.to_string().is_empty());
        let emit_err = EmitError::from(e);
        assert!(emit_err.to_string().contains(&e.to_string()));
        assert!(emit_err.source().is_some());
    }
    assert!(WireProfile::open_mx(1)
        .unwrap_err()
        .to_string()
        .contains("1280"));
    assert!(Hostname::new(b"")
        .unwrap_err()
        .to_string()
        .contains("empty"));
}
