//! Encode and decode cost per packet: a TINY, a full MEDIUM fragment and a
//! full PULL_REPLY, in the `mx` and `open-mx` 9000 profiles.

use std::hint::black_box;

use criterion::{criterion_main, Criterion, Throughput};
use mxoe_wire::packet::{MediumFrag, Msg, PullReply};
use mxoe_wire::{
    decode, emit, emit_header, EndpointId, Frame, Head, LibSeqnum, MatchInfo, Packet, PeerIndex,
    PullHandle, PullMagic, SessionId, WireProfile,
};

fn head() -> Head {
    Head {
        dst: [0x02, 0, 0, 0, 0, 0x01],
        src: [0x02, 0, 0, 0, 0, 0x02],
        peer_index: PeerIndex::new(3),
    }
}

fn frames<'a>(profile: &WireProfile, data: &'a [u8]) -> [(&'static str, Frame<'a>); 3] {
    let tiny = Packet::Tiny(Msg {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(0x4001),
        lib_piggyack: LibSeqnum(0x4000),
        match_info: MatchInfo(0x1234_5678_9abc_def0),
        session: SessionId(0xdead_beef),
        payload: &data[..32],
    });
    let frag = profile.frag_max() as usize;
    let medium = Packet::Medium(MediumFrag {
        dst_endpoint: EndpointId(1),
        src_endpoint: EndpointId(2),
        lib_seqnum: LibSeqnum(0x4001),
        lib_piggyack: LibSeqnum(0x4000),
        match_info: MatchInfo(0x1234_5678_9abc_def0),
        session: SessionId(0xdead_beef),
        msg_length: profile.max_medium(),
        frag_seqnum: 1,
        payload: &data[..frag],
    });
    let reply = Packet::PullReply(PullReply {
        frame_seqnum: 9,
        msg_offset: 9 * profile.pull_reply_len(),
        dst_pull_handle: PullHandle::new(5, PullHandle::INITIAL_GENERATION).unwrap(),
        dst_magic: PullMagic::for_endpoint(EndpointId(2)),
        payload: &data[..profile.pull_reply_len() as usize],
    });
    [
        (
            "tiny",
            Frame {
                head: head(),
                packet: tiny,
            },
        ),
        (
            "medium",
            Frame {
                head: head(),
                packet: medium,
            },
        ),
        (
            "pull_reply",
            Frame {
                head: head(),
                packet: reply,
            },
        ),
    ]
}

fn codec(c: &mut Criterion) {
    let data = vec![0x5a_u8; 9000];
    for (pname, profile) in [
        ("mx", WireProfile::MX),
        ("omx9000", WireProfile::OPEN_MX_9000),
    ] {
        let mut group = c.benchmark_group(format!("codec/{pname}"));
        group.throughput(Throughput::Elements(1));
        for (name, frame) in frames(&profile, &data) {
            let mut buf = vec![0u8; 9000];
            let n = emit(&profile, &frame, &mut buf).unwrap();
            group.bench_function(format!("emit/{name}"), |b| {
                b.iter(|| emit(black_box(&profile), black_box(&frame), black_box(&mut buf)))
            });
            let mut hdr = [0u8; 64];
            let len = frame.packet.payload().len();
            group.bench_function(format!("emit_header/{name}"), |b| {
                b.iter(|| {
                    emit_header(
                        black_box(&profile),
                        black_box(&frame),
                        black_box(len),
                        black_box(&mut hdr),
                    )
                })
            });
            let wire = buf[..n].to_vec();
            group.bench_function(format!("decode/{name}"), |b| {
                b.iter(|| decode(black_box(&profile), black_box(&wire)))
            });
        }
        group.finish();
    }
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::codec);
}
criterion_main!(group::benches);
