//! Golden frames: byte sequences written by hand from the specification's
//! offsets (never produced by the encoder), decoded field by field and
//! re-encoded byte for byte, in every profile where they apply.

use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::packet::{
    ConnectReply, ConnectRequest, HostQuery, HostReply, MediumFrag, Msg, NackLib, NackMcp, Notify,
    Pull, PullReply, Raw, Rndv, Truc,
};
use mxoe_wire::{
    decode, emit, emit_header, pad_len, ConnectStatus, DecodeError, EndpointId, Frame, Head,
    Hostname, LibSeqnum, MatchInfo, NackType, NicId, Packet, PeerIndex, PullHandle, PullMagic,
    SessionId, WireProfile, ZERO_PAD,
};

const MX: WireProfile = WireProfile::MX;
const OMX9000: WireProfile = WireProfile::OPEN_MX_9000;
const OMX1500: WireProfile = WireProfile::OPEN_MX_1500;
const ALL: [WireProfile; 3] = [MX, OMX9000, OMX1500];

const DST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const SRC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Head with peer index 7 (as written in the frames below).
const HEAD: Head = Head {
    dst: DST,
    src: SRC,
    peer_index: PeerIndex(7),
};
/// Head of the types whose peer index is never set (written as 0).
const HEAD0: Head = Head {
    dst: DST,
    src: SRC,
    peer_index: PeerIndex(0),
};

/// Handle slot 2, generation 0x23: 2 << 22 | 0x23.
const HANDLE: u32 = 0x0080_0023;
/// Magic of endpoint 5: 5 ^ 0x21071980.
const MAGIC: u32 = 0x2107_1985;

/// Decodes `golden` under `profile`, compares with `expected`, re-encodes
/// into a junk-filled buffer and compares bytes; then checks that the
/// header-only encoder writes the same header.
fn check(profile: WireProfile, golden: &[u8], expected: &Frame<'_>) {
    assert!(golden.len() >= 60, "golden frames include their padding");
    let got = decode(&profile, golden).unwrap_or_else(|e| panic!("{profile:?}: {e}"));
    assert_eq!(&got, expected, "{profile:?}");

    let mut buf = [0xa5u8; 9100];
    let n = emit(&profile, expected, &mut buf).unwrap();
    assert_eq!(n, golden.len());
    assert_eq!(n, expected.packet.buffer_len(&profile));
    assert_eq!(&buf[..n], golden, "{profile:?}");
    assert!(buf[n..].iter().all(|&b| b == 0xa5), "wrote past the frame");

    // Header only: the payload goes separately, then the padding.
    let payload = expected.packet.payload();
    let mut hdr = [0xa5u8; 128];
    let h = emit_header(&profile, expected, payload.len(), &mut hdr).unwrap();
    assert_eq!(h, expected.packet.header_len(&profile));
    assert!(hdr[h..].iter().all(|&b| b == 0xa5));
    let mut joined = hdr[..h].to_vec();
    joined.extend_from_slice(payload);
    joined.extend_from_slice(&ZERO_PAD[..pad_len(h + payload.len())]);
    assert_eq!(joined, golden);
}

#[rustfmt::skip]
const TINY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF,                         // @12 EtherType
    0x00, 0x07,                         // @14 dst_src_peer_index 7
    0x25, 0x01, 0x02, 0x00,             // @16 TINY, dst_ep 1, src_ep 2, src_generation
    0x00, 0x05, 0x00, 0x00,             // @20 length 5, checksum
    0x40, 0x11, 0x40, 0x0A,             // @24 lib_seqnum 0x4011, lib_piggyack 0x400a
    0x12, 0x34, 0x56, 0x78,             // @28 match_a
    0x9A, 0xBC, 0xDE, 0xF0,             // @32 match_b
    0xDE, 0xAD, 0xBE, 0xEF,             // @36 session
    b'h', b'e', b'l', b'l', b'o',       // @40 payload
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @45 padding to 60
];

fn tiny_expected(payload: &[u8]) -> Msg<'_> {
    Msg {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(0x4011),
        lib_piggyack: LibSeqnum(0x400A),
        match_info: MatchInfo(0x1234_5678_9ABC_DEF0),
        session: SessionId(0xDEAD_BEEF),
        payload,
    }
}

#[test]
fn golden_tiny() {
    let m = tiny_expected(b"hello");
    assert_eq!(m.match_info.match_a(), 0x1234_5678);
    assert_eq!(m.lib_seqnum.session(), 1);
    assert_eq!(m.lib_seqnum.count(), 0x11);
    for p in ALL {
        check(
            p,
            &TINY,
            &Frame {
                head: HEAD,
                packet: Packet::Tiny(m),
            },
        );
    }
}

#[rustfmt::skip]
const SMALL: [u8; 80] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x26, 0x01, 0x02, 0x00,             // @16 SMALL, dst_ep 1, src_ep 2, src_generation
    0x00, 0x28, 0x00, 0x00,             // @20 length 40, checksum
    0x40, 0x11, 0x40, 0x0A,             // @24 lib_seqnum, lib_piggyack
    0x12, 0x34, 0x56, 0x78,             // @28 match_a
    0x9A, 0xBC, 0xDE, 0xF0,             // @32 match_b
    0xDE, 0xAD, 0xBE, 0xEF,             // @36 session
    // @40 payload: 40 bytes 0x00..=0x27, frame is 80 bytes, no padding
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
    0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13,
    0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D,
    0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
];

#[test]
fn golden_small() {
    let payload: Vec<u8> = (0..40).collect();
    for p in ALL {
        let packet = Packet::Small(tiny_expected(&payload));
        check(p, &SMALL, &Frame { head: HEAD, packet });
    }
}

#[rustfmt::skip]
const MEDIUM_MX: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x27, 0x03, 0x04, 0x00,             // @16 MEDIUM, dst_ep 3, src_ep 4, src_generation
    0x10, 0x04, 0x00, 0x00,             // @20 length u16 4100, pad
    0x80, 0x05, 0x80, 0x02,             // @24 lib_seqnum 0x8005, lib_piggyack 0x8002
    0x00, 0x00, 0x00, 0x01,             // @28 match_a
    0x00, 0x00, 0x00, 0x02,             // @32 match_b
    0x01, 0x02, 0x03, 0x04,             // @36 session
    0x00, 0x04, 0x01, 0x0C,             // @40 frag_length 4, frag_seqnum 1, frag_pipeline 12
    0x00, 0x00, 0x00, 0x00,             // @44 checksum, pad
    0xCA, 0xFE, 0xBA, 0xBE,             // @48 payload: the last 4 bytes of 4100
    0, 0, 0, 0, 0, 0, 0, 0,             // @52 padding to 60
];

fn medium_expected(msg_length: u32, payload: &[u8]) -> MediumFrag<'_> {
    MediumFrag {
        dst_endpoint: EndpointId(3),
        src_endpoint: EndpointId(4),
        lib_seqnum: LibSeqnum(0x8005),
        lib_piggyack: LibSeqnum(0x8002),
        match_info: MatchInfo(0x0000_0001_0000_0002),
        session: SessionId(0x0102_0304),
        msg_length,
        frag_seqnum: 1,
        payload,
    }
}

#[test]
fn golden_medium_mx() {
    let m = medium_expected(4100, &[0xCA, 0xFE, 0xBA, 0xBE]);
    assert_eq!(MX.frag_offset(m.frag_seqnum), 4096);
    check(
        MX,
        &MEDIUM_MX,
        &Frame {
            head: HEAD,
            packet: Packet::Medium(m),
        },
    );
    // Read with the open-mx layout, @4..8 is the u32 0x10040000: too long.
    assert_eq!(
        decode(&OMX9000, &MEDIUM_MX),
        Err(DecodeError::MediumTooLong {
            len: 0x1004_0000,
            max: 262_144
        })
    );
}

#[rustfmt::skip]
const MEDIUM_OMX9000: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x27, 0x03, 0x04, 0x00,             // @16 MEDIUM, dst_ep 3, src_ep 4, src_generation
    0x00, 0x00, 0x20, 0x08,             // @20 length u32 8200
    0x80, 0x05, 0x80, 0x02,             // @24 lib_seqnum, lib_piggyack
    0x00, 0x00, 0x00, 0x01,             // @28 match_a
    0x00, 0x00, 0x00, 0x02,             // @32 match_b
    0x01, 0x02, 0x03, 0x04,             // @36 session
    0x00, 0x08, 0x01, 0x00,             // @40 frag_length 8, frag_seqnum 1, pad
    0x00, 0x00, 0x00, 0x00,             // @44 checksum, pad
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // @48 payload: bytes 8192..8200
    0, 0, 0, 0,                         // @56 padding to 60
];

#[test]
fn golden_medium_open_mx_9000() {
    let m = medium_expected(8200, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(OMX9000.frag_offset(m.frag_seqnum), 8192);
    check(
        OMX9000,
        &MEDIUM_OMX9000,
        &Frame {
            head: HEAD,
            packet: Packet::Medium(m),
        },
    );
    // With 1452-byte fragments, fragment 1 of 8200 bytes is full, not 8 bytes.
    assert_eq!(
        decode(&OMX1500, &MEDIUM_OMX9000),
        Err(DecodeError::FragMismatch {
            seqnum: 1,
            len: 8,
            msg_len: 8200
        })
    );
    // The mx layout reads length u16 0 and frag_pipeline 0.
    assert_eq!(
        decode(&MX, &MEDIUM_OMX9000),
        Err(DecodeError::FragPipeline(0))
    );
}

#[rustfmt::skip]
const MEDIUM_OMX1500: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x27, 0x03, 0x04, 0x00,             // @16 MEDIUM, dst_ep 3, src_ep 4, src_generation
    0x00, 0x00, 0x05, 0xB4,             // @20 length u32 1460
    0x80, 0x05, 0x80, 0x02,             // @24 lib_seqnum, lib_piggyack
    0x00, 0x00, 0x00, 0x01,             // @28 match_a
    0x00, 0x00, 0x00, 0x02,             // @32 match_b
    0x01, 0x02, 0x03, 0x04,             // @36 session
    0x00, 0x08, 0x01, 0x00,             // @40 frag_length 8, frag_seqnum 1, pad
    0x00, 0x00, 0x00, 0x00,             // @44 checksum, pad
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // @48 payload: bytes 1452..1460
    0, 0, 0, 0,                         // @56 padding to 60
];

#[test]
fn golden_medium_open_mx_1500() {
    let m = medium_expected(1460, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(OMX1500.frag_offset(m.frag_seqnum), 1452);
    check(
        OMX1500,
        &MEDIUM_OMX1500,
        &Frame {
            head: HEAD,
            packet: Packet::Medium(m),
        },
    );
    // With 8192-byte fragments a 1460-byte message has only fragment 0.
    assert_eq!(
        decode(&OMX9000, &MEDIUM_OMX1500),
        Err(DecodeError::FragMismatch {
            seqnum: 1,
            len: 8,
            msg_len: 1460
        })
    );
}

#[rustfmt::skip]
const RNDV: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x28, 0x05, 0x06, 0x00,             // @16 RNDV, dst_ep 5, src_ep 6, src_generation
    0x00, 0x08, 0x00, 0x00,             // @20 length 8, checksum
    0x00, 0x2A, 0x00, 0x29,             // @24 lib_seqnum 42, lib_piggyack 41
    0xFF, 0xFF, 0x00, 0x00,             // @28 match_a
    0x00, 0x00, 0xFF, 0xFF,             // @32 match_b
    0xCA, 0xFE, 0xF0, 0x0D,             // @36 session
    0x00, 0x10, 0x00, 0x00,             // @40 msg_length 1 MiB
    0x07, 0x17, 0x00, 0x00,             // @44 rdma id 7, rdma seqnum 23, rdma offset 0
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @48 padding to 60
];

#[test]
fn golden_rndv() {
    let r = Rndv {
        dst_endpoint: EndpointId(5),
        src_endpoint: EndpointId(6),
        lib_seqnum: LibSeqnum(42),
        lib_piggyack: LibSeqnum(41),
        match_info: MatchInfo(0xFFFF_0000_0000_FFFF),
        session: SessionId(0xCAFE_F00D),
        msg_length: 1 << 20,
        pulled_rdma_id: 7,
        pulled_rdma_seqnum: 23,
        pulled_rdma_offset: 0,
    };
    for p in ALL {
        check(
            p,
            &RNDV,
            &Frame {
                head: HEAD,
                packet: Packet::Rndv(r),
            },
        );
    }
}

#[rustfmt::skip]
const PULL_MX: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x29, 0x06, 0x05, 0x00,             // @16 PULL, dst_ep 6, src_ep 5, src_generation
    0x11, 0x22, 0x33, 0x44,             // @20 session
    0x00, 0x10, 0x00, 0x00,             // @24 total_length 1 MiB
    0x07, 0x17, 0x00, 0x00,             // @28 rdma id 7 (u8), rdma seqnum 23, rdma offset 0 (u16)
    0x00, 0x80, 0x00, 0x23,             // @32 src_pull_handle: slot 2, generation 0x23
    0x21, 0x07, 0x19, 0x85,             // @36 src_magic: endpoint 5
    0x00, 0x00, 0x80, 0x00,             // @40 first_frame_offset 0 (u16), block_length 32768 (u16)
    0x00, 0x00, 0x00, 0x08,             // @44 frame_index 8
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @48 padding to 60
];

fn pull_expected(rdma_offset: u32, ffo: u32, block_length: u32, frame_index: u32) -> Pull {
    Pull {
        dst_endpoint: EndpointId(6),
        src_endpoint: EndpointId(5),
        session: SessionId(0x1122_3344),
        total_length: 1 << 20,
        pulled_rdma_id: 7,
        pulled_rdma_seqnum: 23,
        pulled_rdma_offset: rdma_offset,
        src_pull_handle: PullHandle::from_raw(HANDLE),
        src_magic: PullMagic::from_raw(MAGIC),
        first_frame_offset: ffo,
        block_length,
        frame_index,
    }
}

#[test]
fn golden_pull_mx() {
    let p = pull_expected(0, 0, 32768, 8);
    assert_eq!(p.src_pull_handle, PullHandle::new(2, 0x23).unwrap());
    assert_eq!(p.src_magic.endpoint(), Some(EndpointId(5)));
    check(
        MX,
        &PULL_MX,
        &Frame {
            head: HEAD,
            packet: Packet::Pull(p),
        },
    );
    // 48 bytes are too short for the 44-byte open-mx header... but the frame
    // is padded to 60, so it parses; its first_frame_offset (@48) is 0 and
    // block_length (@52) 0, pulled_rdma_id (@28) 0x07170000.
    let omx = decode(&OMX9000, &PULL_MX).unwrap();
    let Packet::Pull(q) = omx.packet else {
        panic!()
    };
    assert_eq!(q.pulled_rdma_id, 0x0717_0000);
}

#[rustfmt::skip]
const PULL_OMX9000: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x29, 0x06, 0x05, 0x00,             // @16 PULL, dst_ep 6, src_ep 5, src_generation
    0x11, 0x22, 0x33, 0x44,             // @20 session
    0x00, 0x10, 0x00, 0x00,             // @24 total_length 1 MiB
    0x00, 0x00, 0x00, 0x07,             // @28 rdma id 7 (u32)
    0x17, 0x00, 0x00, 0x00,             // @32 rdma seqnum 23, pad[3]
    0x00, 0x00, 0x00, 0x64,             // @36 rdma offset 100 (u32)
    0x00, 0x80, 0x00, 0x23,             // @40 src_pull_handle
    0x21, 0x07, 0x19, 0x85,             // @44 src_magic
    0x00, 0x00, 0x00, 0x64,             // @48 first_frame_offset 100 (u32)
    0x00, 0x04, 0x60, 0x9C,             // @52 block_length 286876 = 286976 - 100 (u32)
    0x00, 0x00, 0x00, 0x00,             // @56 frame_index 0; 60 bytes, no padding
];

#[test]
fn golden_pull_open_mx_9000() {
    let p = pull_expected(100, 100, 286_876, 0);
    check(
        OMX9000,
        &PULL_OMX9000,
        &Frame {
            head: HEAD,
            packet: Packet::Pull(p),
        },
    );
    assert_eq!(
        decode(&OMX1500, &PULL_OMX9000),
        Err(DecodeError::PullBlockTooLarge {
            end: 286_976,
            max: 46_976
        })
    );
}

#[rustfmt::skip]
const PULL_OMX1500: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x29, 0x06, 0x05, 0x00,             // @16 PULL, dst_ep 6, src_ep 5, src_generation
    0x11, 0x22, 0x33, 0x44,             // @20 session
    0x00, 0x10, 0x00, 0x00,             // @24 total_length 1 MiB
    0x00, 0x00, 0x00, 0x07,             // @28 rdma id 7 (u32)
    0x17, 0x00, 0x00, 0x00,             // @32 rdma seqnum 23, pad[3]
    0x00, 0x00, 0x00, 0x64,             // @36 rdma offset 100 (u32)
    0x00, 0x80, 0x00, 0x23,             // @40 src_pull_handle
    0x21, 0x07, 0x19, 0x85,             // @44 src_magic
    0x00, 0x00, 0x00, 0x64,             // @48 first_frame_offset 100 (u32)
    0x00, 0x00, 0xB7, 0x1C,             // @52 block_length 46876 = 46976 - 100 (u32)
    0x00, 0x00, 0x00, 0x00,             // @56 frame_index 0
];

#[test]
fn golden_pull_open_mx_1500() {
    let p = pull_expected(100, 100, 46_876, 0);
    let frame = Frame {
        head: HEAD,
        packet: Packet::Pull(p),
    };
    check(OMX1500, &PULL_OMX1500, &frame);
    // The same block is a valid (partial) block under MTU 9000.
    check(OMX9000, &PULL_OMX1500, &frame);
    // First block of a 1 MiB pull from window offset 100, per the block math.
    let b = mxoe_wire::pull::first_block(&OMX1500, 100, 1 << 20);
    assert_eq!(
        (b.first_frame_offset, b.block_length, b.frame_index),
        (100, 46_876, 0)
    );
}

#[rustfmt::skip]
const PULL_REPLY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x00,             // @12 EtherType, peer index never set: 0
    0x2A, 0x03, 0x00, 0x10,             // @16 PULL_REPLY, frame_seqnum 3, frame_length 16
    0x00, 0x00, 0x30, 0x00,             // @20 msg_offset 12288
    0x00, 0x80, 0x00, 0x23,             // @24 dst_pull_handle
    0x21, 0x07, 0x19, 0x85,             // @28 dst_magic
    0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, // @32 payload
    0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @48 padding to 60
];

#[test]
fn golden_pull_reply() {
    let payload: Vec<u8> = (0xF0..=0xFF).collect();
    let r = PullReply {
        frame_seqnum: 3,
        msg_offset: 12288,
        dst_pull_handle: PullHandle::from_raw(HANDLE),
        dst_magic: PullMagic::from_raw(MAGIC),
        payload: &payload,
    };
    for p in ALL {
        check(
            p,
            &PULL_REPLY,
            &Frame {
                head: HEAD0,
                packet: Packet::PullReply(r),
            },
        );
    }
    // The head's peer index is ignored when writing a PULL_REPLY.
    let mut buf = [0xa5u8; 60];
    let f = Frame {
        head: HEAD,
        packet: Packet::PullReply(r),
    };
    emit(&MX, &f, &mut buf).unwrap();
    assert_eq!(buf, PULL_REPLY);
}

#[rustfmt::skip]
const NOTIFY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x2B, 0x05, 0x06, 0x00,             // @16 NOTIFY, dst_ep 5, src_ep 6, src_generation
    0xCA, 0xFE, 0xF0, 0x0D,             // @20 session
    0x00, 0x10, 0x00, 0x00,             // @24 total_length 1 MiB
    0x07, 0x17, 0x00, 0x00,             // @28 rdma id 7, rdma seqnum 23, pad
    0x00, 0x00, 0x00, 0x11,             // @32 pad, lib_seqnum 17
    0x00, 0x2B, 0x00, 0x00,             // @36 lib_piggyack 43, pad
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // @40 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_notify() {
    let n = Notify {
        dst_endpoint: EndpointId(5),
        src_endpoint: EndpointId(6),
        session: SessionId(0xCAFE_F00D),
        total_length: 1 << 20,
        pulled_rdma_id: 7,
        pulled_rdma_seqnum: 23,
        lib_seqnum: LibSeqnum(17),
        lib_piggyack: LibSeqnum(43),
    };
    for p in ALL {
        check(
            p,
            &NOTIFY,
            &Frame {
                head: HEAD,
                packet: Packet::Notify(n),
            },
        );
    }
}

#[rustfmt::skip]
const TRUC: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x23, 0x02, 0x01, 0x00,             // @16 TRUC, dst_ep 2, src_ep 1, src_generation
    0x10, 0x00, 0x00, 0x00,             // @20 length 16, pad[3]
    0xDE, 0xAD, 0xBE, 0xEF,             // @24 session
    0x55, 0x00, 0x40, 0x12,             // @28 type ACK, pad, lib_seqnum 0x4012
    0xDE, 0xAD, 0xBE, 0xEF,             // @32 session_id
    0x00, 0x00, 0x00, 0x03,             // @36 acknum 3
    0x40, 0x12, 0x00, 0x00,             // @40 send_seq 0x4012, resent 0, pad
    0, 0, 0, 0, 0, 0, 0, 0,             // @44 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_truc() {
    let t = Truc {
        dst_endpoint: EndpointId(2),
        src_endpoint: EndpointId(1),
        session: SessionId(0xDEAD_BEEF),
        lib_seqnum: LibSeqnum(0x4012),
        session_id: SessionId(0xDEAD_BEEF),
        acknum: 3,
        send_seq: LibSeqnum(0x4012),
        resent: 0,
    };
    for p in ALL {
        check(
            p,
            &TRUC,
            &Frame {
                head: HEAD,
                packet: Packet::Truc(t),
            },
        );
    }
}

#[rustfmt::skip]
const CONNECT_REQUEST: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x24, 0x01, 0x02, 0x00,             // @16 CONNECT, dst_ep 1, src_ep 2, src_generation
    0x10, 0x00, 0x00, 0x00,             // @20 length 16, pad[3]
    0x00, 0x00, 0x00, 0x09,             // @24 lib_seqnum 0, src_dst_peer_index 9
    0x00, 0x00, 0x00, 0x00,             // @28 pad
    0x01, 0x02, 0x03, 0x04,             // @32 src_session_id
    0x00, 0x00, 0x12, 0x34,             // @36 app_key
    0x40, 0x01, 0x00, 0x05,             // @40 target_recv_seqnum_start 0x4001, is_reply 0, connect_seqnum 5
    0x00, 0x00, 0x00, 0x00,             // @44 pad
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @48 padding to 60
];

#[test]
fn golden_connect_request() {
    let c = ConnectRequest {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        src_dst_peer_index: PeerIndex(9),
        src_session_id: SessionId(0x0102_0304),
        app_key: 0x1234,
        target_recv_seqnum_start: LibSeqnum::reset(1),
        connect_seqnum: 5,
    };
    for p in ALL {
        check(
            p,
            &CONNECT_REQUEST,
            &Frame {
                head: HEAD,
                packet: Packet::ConnectRequest(c),
            },
        );
    }
}

#[rustfmt::skip]
const CONNECT_REPLY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x24, 0x02, 0x01, 0x00,             // @16 CONNECT, dst_ep 2, src_ep 1, src_generation
    0x10, 0x00, 0x00, 0x00,             // @20 length 16, pad[3]
    0x00, 0x00, 0x00, 0x0A,             // @24 lib_seqnum 0, src_dst_peer_index 10
    0x00, 0x00, 0x00, 0x00,             // @28 pad
    0x01, 0x02, 0x03, 0x04,             // @32 src_session_id (the requester's, echoed)
    0xDE, 0xAD, 0xBE, 0xEF,             // @36 target_session_id
    0xC0, 0x01, 0x01, 0x05,             // @40 target_recv_seqnum_start 0xc001, is_reply 1, connect_seqnum 5
    0x0B, 0x00, 0x00, 0x00,             // @44 status BAD_KEY, pad[3]
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @48 padding to 60
];

#[test]
fn golden_connect_reply() {
    let c = ConnectReply {
        dst_endpoint: EndpointId(2),
        src_endpoint: EndpointId(1),
        src_dst_peer_index: PeerIndex(10),
        src_session_id: SessionId(0x0102_0304),
        target_session_id: SessionId(0xDEAD_BEEF),
        target_recv_seqnum_start: LibSeqnum::reset(3),
        connect_seqnum: 5,
        status: ConnectStatus::BadKey,
    };
    for p in ALL {
        check(
            p,
            &CONNECT_REPLY,
            &Frame {
                head: HEAD,
                packet: Packet::ConnectReply(c),
            },
        );
    }
    // Unknown status codes survive.
    let mut other = CONNECT_REPLY;
    other[44] = 7;
    let f = decode(&MX, &other).unwrap();
    let Packet::ConnectReply(r) = f.packet else {
        panic!()
    };
    assert_eq!(r.status, ConnectStatus::Unknown(7));
}

#[rustfmt::skip]
const NACK_LIB: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x2C, 0x01, 0x00, 0x03,             // @16 NACK_LIB, src_ep 1, src_generation, BAD_SESSION
    0x00, 0x00, 0x00, 0x00,             // @20 pad
    0x00, 0x02, 0xFF, 0xFF,             // @24 pad, dst_ep 2, dst_src_peer_index unknown
    0x40, 0x11, 0x00, 0x00,             // @28 lib_seqnum 0x4011, pad
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @32 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_nack_lib() {
    let n = NackLib {
        src_endpoint: EndpointId(1),
        dst_endpoint: EndpointId(2),
        nack_type: NackType::BadSession,
        dst_src_peer_index: PeerIndex::UNKNOWN,
        lib_seqnum: LibSeqnum(0x4011),
    };
    for p in ALL {
        check(
            p,
            &NACK_LIB,
            &Frame {
                head: HEAD,
                packet: Packet::NackLib(n),
            },
        );
    }
}

#[rustfmt::skip]
const NACK_MCP: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x07,             // @12 EtherType, peer index 7
    0x2D, 0x06, 0x00, 0x04,             // @16 NACK_MCP, src_ep 6, src_generation, BAD_RDMAWIN
    0x00, 0x00, 0x00, 0x00,             // @20 pad
    0x00, 0x80, 0x00, 0x23,             // @24 src_pull_handle
    0x21, 0x07, 0x19, 0x85,             // @28 src_magic
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @32 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_nack_mcp() {
    let n = NackMcp {
        src_endpoint: EndpointId(6),
        nack_type: NackType::BadRdmaWin,
        src_pull_handle: PullHandle::from_raw(HANDLE),
        src_magic: PullMagic::from_raw(MAGIC),
    };
    for p in ALL {
        check(
            p,
            &NACK_MCP,
            &Frame {
                head: HEAD,
                packet: Packet::NackMcp(n),
            },
        );
    }
}

#[rustfmt::skip]
const HOST_QUERY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x00,             // @12 EtherType, peer index never set: 0
    0x03, 0x00, 0x00, 0x09,             // @16 HOST_QUERY, pad, src_dst_peer_index 9
    0x00, 0x00, 0x00, 0x00,             // @20 pad
    0x13, 0x05, 0x20, 0x08,             // @24 magic
    0x00, 0x00, 0x00, 0x00,             // @28 pad
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @32 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_host_query() {
    let q = HostQuery {
        src_dst_peer_index: PeerIndex(9),
        magic: mxoe_wire::HOST_QUERY_MAGIC,
    };
    for p in ALL {
        check(
            p,
            &HOST_QUERY,
            &Frame {
                head: HEAD0,
                packet: Packet::HostQuery(q),
            },
        );
    }
}

#[rustfmt::skip]
const HOST_REPLY: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // @0  dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x00,             // @12 EtherType, peer index never set: 0
    0x04, 0x08, 0x00, 0x09,             // @16 HOST_REPLY, length 8 (with NUL), src_dst_peer_index 9
    0x00, 0x00, 0x00, 0x00,             // @20 pad
    0x13, 0x05, 0x20, 0x08,             // @24 magic, echoed
    0x00, 0x00, 0x00, 0x00,             // @28 pad
    b'n', b'o', b'd', b'e', b'1', b':', b'0', 0x00, // @32 "node1:0\0"
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // @40 padding to 60
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_host_reply() {
    let r = HostReply {
        src_dst_peer_index: PeerIndex(9),
        magic: 0x1305_2008,
        hostname: Hostname::try_from("node1:0").unwrap(),
    };
    for p in ALL {
        check(
            p,
            &HOST_REPLY,
            &Frame {
                head: HEAD0,
                packet: Packet::HostReply(r),
            },
        );
    }
}

#[rustfmt::skip]
const MAPPER: [u8; 64] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // @0  dst: broadcast
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // @6  src MAC
    0x86, 0xDF, 0x00, 0x00,             // @12 EtherType, peer index 0
    0x01, 0x00, 0x00, 0x00,             // @16 RAW, pad[3]
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // @20 pad[12]
    0x00, 0x00, 0x02, 0x00,             // @32 nic_id_hi
    0x00, 0x00, 0x00, 0x02,             // @36 nic_id_lo
    0x5E, 0xED, 0x12, 0x34,             // @40 serial
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // @44 pad[20]
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn golden_mapper_raw() {
    // As a mapper announcement.
    let m = MapperAnnounce::decode(&MAPPER).unwrap();
    assert_eq!(m.src, SRC);
    assert_eq!(m.nic_id, NicId::from_mac(SRC));
    assert_eq!(m.nic_id.raw(), 0x0200_0000_0002);
    assert_eq!(m.serial, 0x5EED_1234);
    let mut buf = [0xa5u8; 70];
    assert_eq!(m.emit(&mut buf), Ok(64));
    assert_eq!(buf[..64], MAPPER);
    assert!(buf[64..].iter().all(|&b| b == 0xa5));

    // As an opaque RAW packet through the generic decoder.
    let head = Head {
        dst: [0xFF; 6],
        src: SRC,
        peer_index: PeerIndex(0),
    };
    for p in ALL {
        let raw = Raw {
            data: &MAPPER[17..],
        };
        check(
            p,
            &MAPPER,
            &Frame {
                head,
                packet: Packet::Raw(raw),
            },
        );
    }
}

/// The seed corpus of the `decode` fuzz target, `fuzz/corpus/decode/`:
/// every golden frame above behind each selector byte of a fixed profile
/// (0 mx, 1 open-mx 9000, 2 open-mx 1500), and encoder-built jumbo frames
/// (a full 8 KiB medium fragment in open-mx 9000, RAW frames of 9000 and
/// 65030 bytes in open-mx at MTU 65030, selector 255) that libFuzzer's
/// mutations could not grow into by themselves. `MX_WRITE_FUZZ_CORPUS=1
/// cargo test -p mxoe-wire --test golden fuzz_seed_corpus` rewrites the
/// files; otherwise the test fails when the committed files differ.
#[test]
fn fuzz_seed_corpus_is_the_golden_frames() {
    let golden: [(&str, &[u8]); 19] = [
        ("tiny", &TINY),
        ("small", &SMALL),
        ("medium-mx", &MEDIUM_MX),
        ("medium-omx9000", &MEDIUM_OMX9000),
        ("medium-omx1500", &MEDIUM_OMX1500),
        ("rndv", &RNDV),
        ("pull-mx", &PULL_MX),
        ("pull-omx9000", &PULL_OMX9000),
        ("pull-omx1500", &PULL_OMX1500),
        ("pull-reply", &PULL_REPLY),
        ("notify", &NOTIFY),
        ("truc", &TRUC),
        ("connect-request", &CONNECT_REQUEST),
        ("connect-reply", &CONNECT_REPLY),
        ("nack-lib", &NACK_LIB),
        ("nack-mcp", &NACK_MCP),
        ("host-query", &HOST_QUERY),
        ("host-reply", &HOST_REPLY),
        ("mapper", &MAPPER),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, frame) in golden {
        for sel in 0u8..3 {
            let mut s = vec![sel];
            s.extend_from_slice(frame);
            seeds.push((format!("{name}-{sel}"), s));
        }
    }
    let mut jumbo = |name: &str, sel: u8, profile: WireProfile, packet: Packet<'_>| {
        let frame = Frame { head: HEAD, packet };
        let mut buf = vec![0u8; frame.packet.buffer_len(&profile)];
        let n = emit(&profile, &frame, &mut buf).unwrap();
        assert_eq!(decode(&profile, &buf[..n]).unwrap(), frame, "{name}");
        let mut s = vec![sel];
        s.extend_from_slice(&buf[..n]);
        seeds.push((name.to_string(), s));
    };
    let payload: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
    let frag = OMX9000.frag_max() as usize;
    jumbo(
        "jumbo-medium-omx9000",
        1,
        OMX9000,
        Packet::Medium(medium_expected(2 * frag as u32, &payload[..frag])),
    );
    let big = WireProfile::open_mx(1280 + 255 * 250).unwrap();
    for len in [9000 - 17, 65030 - 17] {
        jumbo(
            &format!("jumbo-raw-{}", len + 17),
            255,
            big,
            Packet::Raw(Raw {
                data: &payload[..len],
            }),
        );
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    if std::env::var_os("MX_WRITE_FUZZ_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let on_disk = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("fuzz seed {name}: {e} (regenerate: see this test's doc)"));
        assert!(
            on_disk == *bytes,
            "fuzz seed {name} differs from the golden frame"
        );
    }
}
