//! Unit tests of the core, mostly over the simulated backend with a
//! lossless wire (the lossy runs live in `prop_tests`).

use super::sim::{Sim, SimBuf, WireCfg};
use super::*;
use mx_proto::msg::event::RecvHdr;
use mx_proto::msg::{Seq, Source};

const STEPS: usize = 200_000;

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn pair() -> (Sim, usize, usize, EndpointAddr, EndpointAddr) {
    let mut sim = Sim::new(7, WireCfg::default());
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|_| {});
    let (ab, ba) = sim.connect_pair(a, b);
    (sim, a, b, ab, ba)
}

fn done(sim: &Sim, n: usize, r: ReqId) -> &Completion<SimBuf> {
    sim.completion(n, r)
        .unwrap_or_else(|| panic!("request {r:?} of node {n} did not complete"))
}

// ------------------------------------------------------------------
// Codes and handles
// ------------------------------------------------------------------

#[test]
fn status_and_return_discriminants_are_mx() {
    assert_eq!(Status::Success as u32, 0);
    assert_eq!(Status::Truncated as u32, 5);
    assert_eq!(Status::EndpointUnreachable as u32, 9);
    assert_eq!(Status::BadKey as u32, 11);
    assert_eq!(Status::NoResources as u32, 16);
    for v in 0..=16 {
        assert_eq!(Status::from_u32(v).map(|s| s as u32), Some(v));
    }
    assert_eq!(Status::from_u32(17), None);
    assert_eq!(Return::BadRequest as u32, 13);
    assert_eq!(Return::BadMatchMask as u32, 14);
    assert_eq!(Return::Timeout as u32, 30);
    assert_eq!(Return::BadConnectionKey as u32, 34);
    assert_eq!(Return::BadMatchingForContextIdMask as u32, 42);
    for v in 0..=43 {
        assert_eq!(Return::from_u32(v).map(|s| s as u32), Some(v));
    }
    assert_eq!(Return::from_u32(44), None);
}

#[test]
fn endpoint_addr_bytes_round_trip() {
    let a = EndpointAddr {
        partner: 0x0102_0304,
        gen: 0x0a0b_0c0d,
        session: 0xdead_beef,
    };
    let b = a.to_bytes();
    assert_eq!(&b[12..16], &0xdead_beefu32.to_le_bytes());
    assert_eq!(&b[8..12], &[0; 4]);
    assert_eq!(EndpointAddr::from_bytes(b), a);
    let r = ReqId { index: 5, gen: 9 };
    assert_eq!(ReqId::from_u64(r.to_u64()), r);
}

#[test]
fn request_timeout_to_resends() {
    assert_eq!(Config::resends_for_timeout(1000), 2);
    assert_eq!(Config::resends_for_timeout(1), 1);
    assert_eq!(Config::resends_for_timeout(512_000), 1000);
    assert_eq!(Config::resends_for_timeout(0), u32::MAX);
}

#[test]
fn config_validation_and_threshold_clamp() {
    let mut c = Config::new(1, 0, 0, 1, 1);
    assert!(c.validate().is_ok());
    c.frag_max = 0;
    assert_eq!(c.validate(), Err(ConfigError::BadSize));
    let mut c = Config::new(1, 0, 0, 1, 1);
    c.context_id = Some((17, 0));
    assert!(Core::<Vec<u8>>::new(c).is_err());
    let mut c = Config::new(1, 0, 0, 1, 1);
    c.rndv_threshold = 1;
    let mut core = Core::<Vec<u8>>::new(c).expect("valid");
    assert_eq!(core.rndv_threshold(), 128);
    core.set_rndv_threshold(u32::MAX);
    assert_eq!(core.rndv_threshold(), 32 * 8192);
}

// ------------------------------------------------------------------
// Connect
// ------------------------------------------------------------------

#[test]
fn connect_then_tiny_both_ways() {
    let (mut sim, a, b, ab, ba) = pair();
    let rb = sim.zbuf(32);
    let r = sim.core(b).irecv(rb, 0x42, !0, 7).expect("irecv");
    let sb = sim.buf(b"hello".to_vec());
    let s = sim.core(a).isend(ab, sb, 0x42, 8).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    let c = done(&sim, b, r);
    assert_eq!(c.status, Status::Success);
    assert_eq!((c.msg_length, c.xfer_length, c.context), (5, 5, 7));
    assert_eq!(c.match_info, 0x42);
    assert_eq!(c.source, ba, "source of a receive is the sender's address");
    assert_eq!(&c.buf.as_ref().expect("buf").bytes()[..5], b"hello");
    let c = done(&sim, a, s);
    assert_eq!(
        (c.status, c.kind, c.context),
        (Status::Success, ReqType::Send, 8)
    );
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
    assert_eq!(sim.core(a).zombies(), 0);
}

#[test]
fn connect_with_bad_key_fails() {
    let mut sim = Sim::new(1, WireCfg::default());
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|c| c.app_key = 99);
    let (peer, ep) = (sim.nodes[b].peer, sim.nodes[b].ep);
    let r = sim.core(a).connect(peer, ep, 0, 98, 0x77, 3);
    sim.drive_bounded(STEPS).expect("quiesce");
    let c = done(&sim, a, r);
    assert_eq!(
        (c.status, c.kind, c.match_info, c.context),
        (Status::BadKey, ReqType::Connect, 0x77, 3)
    );
    // b did not accept a partner that presented the wrong key: a cannot send
    let addr = c.source;
    let s = sim.buf(vec![1; 8]);
    let s = sim.core(a).isend(addr, s, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
}

#[test]
fn connect_to_self_completes_at_once() {
    let mut c = Config::new(3, 9, 0xabc, 0x5555, 1);
    c.seed = 1;
    let mut core = Core::<Vec<u8>>::new(c).expect("core");
    let r = core.connect(9, 3, 0xabc, 1, 0x10, 4);
    let done = core.test(r).expect("valid").expect("done at once");
    assert_eq!(done.status, Status::Success);
    assert_eq!(done.source, core.local_addr());
    assert_eq!(done.source.session, 0x5555);
    let info = core.partner_info(done.source).expect("self partner");
    assert!(info.is_self);
    assert_eq!((info.peer, info.endpoint, info.nic_id), (9, 3, Some(0xabc)));
    let mut slot = CmdSlot::default();
    assert!(core.poll_command(0, &mut slot).is_none());
}

#[test]
fn incoming_connect_gives_an_address_usable_to_reply() {
    let mut sim = Sim::new(3, WireCfg::default());
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    let r = sim.zbuf(16);
    let r = sim.core(b).irecv(r, 1, !0, 0).expect("irecv");
    let s = sim.buf(vec![9; 16]);
    sim.core(a).isend(ab, s, 1, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    let src = done(&sim, b, r).source;
    // b never called connect, but it may answer the partner that connected
    let info = sim.core(b).partner_info(src).expect("partner");
    assert_eq!(
        info.nic_id, None,
        "learned from the wire: the shell fills nic_id"
    );
    sim.core(b).set_partner_nic_id(src, 0x1234).expect("known");
    assert_eq!(
        sim.core(b).partner_info(src).expect("p").nic_id,
        Some(0x1234)
    );
    let rr = sim.zbuf(16);
    let rr = sim.core(a).irecv(rr, 2, !0, 0).expect("irecv");
    let s = sim.buf(vec![8; 16]);
    sim.core(b).isend(src, s, 2, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, rr).status, Status::Success);
}

#[test]
fn lost_connect_reply_is_retried() {
    let mut sim = Sim::new(5, WireCfg::default());
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|_| {});
    let mut lost = 0;
    sim.set_filter(move |p| {
        if p.kind() == mx_proto::msg::event::EventKind::RecvConnectReply as u8 && lost < 2 {
            lost += 1;
            return true;
        }
        false
    });
    let t0 = sim.now;
    sim.connect(a, b);
    assert!(sim.now - t0 >= 1_000_000, "two resends of ~0.5 s each");
    assert!(sim.core(a).stats().resends >= 2);
    sim.clear_filter();
}

// ------------------------------------------------------------------
// Size classes
// ------------------------------------------------------------------

fn one_message(len: usize, recv_len: usize) -> (Completion<SimBuf>, Completion<SimBuf>, Vec<u8>) {
    let (mut sim, a, b, ab, _) = pair();
    let data = pattern(len, len as u8);
    let rb = sim.zbuf(recv_len);
    let r = sim.core(b).irecv(rb, 5, !0, 0).expect("irecv");
    let sb = sim.buf(data.clone());
    let s = sim.core(a).isend(ab, sb, 5, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(sim.core(a).is_quiescent(), "a idle after {len}");
    assert!(sim.core(b).is_quiescent(), "b idle after {len}");
    assert_eq!(sim.nodes[a].bad_commands + sim.nodes[b].bad_commands, 0);
    let rc = sim.nodes[b]
        .completions
        .iter()
        .position(|c| c.req == r)
        .expect("recv done");
    let sc = sim.nodes[a]
        .completions
        .iter()
        .position(|c| c.req == s)
        .expect("send done");
    let rc = sim.nodes[b].completions.swap_remove(rc);
    let sc = sim.nodes[a].completions.swap_remove(sc);
    (sc, rc, data)
}

#[test]
fn every_size_class_is_byte_exact() {
    for len in [
        0, 1, 32, 33, 128, 129, 1023, 1024, 1025, 4096, 4097, 10_000, 100_000,
    ] {
        let (sc, rc, data) = one_message(len, len);
        assert_eq!(sc.status, Status::Success, "send {len}");
        assert_eq!(rc.status, Status::Success, "recv {len}");
        assert_eq!((rc.msg_length, rc.xfer_length), (len as u32, len as u32));
        assert_eq!(sc.xfer_length, len as u32);
        assert_eq!(rc.buf.expect("buf").bytes(), data, "bytes of {len}");
    }
}

#[test]
fn truncation_receiver_always_sender_only_for_rendezvous() {
    for len in [10usize, 120, 3000, 20_000] {
        let half = len / 2;
        let (sc, rc, data) = one_message(len, half);
        assert_eq!(rc.status, Status::Truncated, "recv {len}");
        assert_eq!((rc.msg_length, rc.xfer_length), (len as u32, half as u32));
        assert_eq!(rc.buf.expect("buf").bytes(), data[..half].to_vec());
        if len > 4096 {
            assert_eq!(sc.status, Status::Truncated, "large send {len}");
            assert_eq!(sc.xfer_length, half as u32);
        } else {
            assert_eq!(sc.status, Status::Success, "eager send {len}");
            assert_eq!(sc.xfer_length, len as u32);
        }
    }
}

#[test]
fn large_with_many_segments_registers_in_chunks() {
    let (mut sim, a, b, ab, _) = pair();
    sim.set_segment_size(100); // 50_000 bytes -> 500 segments: too many
    let big = sim.buf(vec![1; 50_000]);
    let err = sim
        .core(a)
        .isend(ab, big, 0, 0)
        .expect_err("too many segments");
    assert_eq!(err.error, SendError::TooManySegments);
    sim.set_segment_size(256); // 50_000 / 256 -> 196 segments: 18 commands
    let data = pattern(50_000, 3);
    let rb = sim.zbuf(50_000);
    let r = sim.core(b).irecv(rb, 0, 0, 0).expect("irecv");
    let sb = sim.buf(data.clone());
    let s = sim.core(a).isend(ab, sb, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::Success);
    let c = done(&sim, b, r);
    assert_eq!(c.buf.as_ref().expect("buf").bytes(), data);
    assert_eq!(sim.nodes[a].bad_commands + sim.nodes[b].bad_commands, 0);
}

#[test]
fn medium_waits_for_send_queue_slots() {
    let mut sim = Sim::new(11, WireCfg::default());
    let a = sim.add_node(|c| c.sendq_slots = 2);
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    let mut reqs = Vec::new();
    for i in 0..5u64 {
        let rb = sim.zbuf(4000);
        reqs.push(sim.core(b).irecv(rb, i, !0, 0).expect("irecv"));
        let sb = sim.buf(pattern(4000, i as u8));
        sim.core(a).isend(ab, sb, i, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (i, r) in reqs.into_iter().enumerate() {
        let c = done(&sim, b, r);
        assert_eq!(c.buf.as_ref().expect("buf").bytes(), pattern(4000, i as u8));
    }
}

#[test]
fn zombie_medium_completes_early_and_resends_from_its_kept_slots() {
    let (mut sim, a, b, ab, _) = pair();
    // Every fragment of the first transmission is lost.
    let mut lost = 0;
    sim.set_filter(move |p| {
        if p.kind() == mx_proto::msg::event::EventKind::RecvMediumFrag as u8 && lost < 3 {
            lost += 1;
            return true;
        }
        false
    });
    let data = pattern(3000, 9);
    let sb = sim.buf(data.clone());
    let mut app = sb.clone();
    let s = sim.core(a).isend(ab, sb, 1, 0).expect("isend");
    sim.drive_until(STEPS, |sim| sim.completion(a, s).is_some())
        .expect("send completes");
    assert_eq!(done(&sim, a, s).status, Status::Success);
    assert_eq!(sim.core(a).zombies(), 1, "completed before its ack");
    // The application reuses its buffer at once: the retransmission must
    // come from the send-queue slots the message kept, not from it.
    app.write_at(0, &[0xee; 3000]);
    let r = {
        let rb = sim.zbuf(3000);
        sim.core(b).irecv(rb, 1, !0, 0).expect("irecv")
    };
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(sim.core(a).stats().resends >= 1);
    assert_eq!(
        done(&sim, b, r).buf.as_ref().expect("buf").bytes(),
        data,
        "the resent bytes are the message's"
    );
    assert_eq!(sim.core(a).zombies(), 0, "acked at last");
    assert!(sim.core(a).is_quiescent());
}

#[test]
fn medium_with_more_frags_than_the_queue_completes_on_its_ack() {
    let mut sim = Sim::new(12, WireCfg::default());
    // 4 fragments, 4 slots: it cannot keep all of them and one spare.
    let a = sim.add_node(|c| c.sendq_slots = 4);
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    let r = {
        let rb = sim.zbuf(4000);
        sim.core(b).irecv(rb, 3, !0, 0).expect("irecv")
    };
    let sb = sim.buf(pattern(4000, 3));
    let s = sim.core(a).isend(ab, sb, 3, 0).expect("isend");
    sim.drive_until(STEPS, |sim| sim.completion(a, s).is_some())
        .expect("send completes");
    assert_eq!(sim.core(a).zombies(), 0, "not completed before its ack");
    assert!(
        sim.completion(b, r).is_some(),
        "the receive completed before the send"
    );
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(
        done(&sim, b, r).buf.as_ref().expect("buf").bytes(),
        pattern(4000, 3)
    );
}

// ------------------------------------------------------------------
// Matching
// ------------------------------------------------------------------

#[test]
fn bad_match_mask_is_refused() {
    let mut core = Core::<Vec<u8>>::new(Config::new(1, 0, 0, 1, 1)).expect("core");
    let e = core.irecv(vec![], 0x10, 0x01, 0).expect_err("bad mask");
    assert_eq!(e.error, RecvError::MatchOutsideMask);
    assert_eq!(core.iprobe(0x10, 0x01), Err(MaskError::MatchOutsideMask));
    assert!(matches!(
        core.test_any(3, 1),
        Err(MaskError::MatchOutsideMask)
    ));
}

#[test]
fn first_posted_matching_receive_wins_and_masks_apply() {
    let (mut sim, a, b, ab, _) = pair();
    // r1 matches only 0x1_xx, r2 anything, r3 anything
    let r1 = sim.zbuf(8);
    let r1 = sim.core(b).irecv(r1, 0x100, 0xF00, 1).expect("r1");
    let r2 = sim.zbuf(8);
    let r2 = sim.core(b).irecv(r2, 0, 0, 2).expect("r2");
    let r3 = sim.zbuf(8);
    let r3 = sim.core(b).irecv(r3, 0, 0, 3).expect("r3");
    for m in [0x205u64, 0x1AB] {
        let s = sim.buf(m.to_le_bytes().to_vec());
        sim.core(a).isend(ab, s, m, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(
        done(&sim, b, r2).match_info,
        0x205,
        "first posted matching receive"
    );
    assert_eq!(done(&sim, b, r1).match_info, 0x1AB);
    assert!(sim.completion(b, r3).is_none());
    assert_eq!(sim.core(b).cancel(r3).expect("cancel").as_result(), 1);
}

#[test]
fn unexpected_queue_is_scanned_in_arrival_order() {
    let (mut sim, a, b, ab, _) = pair();
    for (i, (m, len)) in [(1u64, 10usize), (2, 200), (1, 3000), (1, 9000), (2, 5)]
        .into_iter()
        .enumerate()
    {
        let s = sim.buf(pattern(len, i as u8));
        sim.core(a)
            .isend(ab, s, m | ((i as u64) << 8), 0)
            .expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(sim.core(b).stats().unexpected, 5);
    // probes see them in order, without consuming
    let p = sim.core(b).iprobe(1, 0xFF).expect("ok").expect("found");
    assert_eq!((p.match_info, p.msg_length), (1, 10));
    let p2 = sim.core(b).iprobe(1, 0xFF).expect("ok").expect("found");
    assert_eq!(p, p2);
    let mut got = Vec::new();
    for _ in 0..3 {
        let rb = sim.zbuf(10_000);
        let r = sim.core(b).irecv(rb, 1, 0xFF, 0).expect("irecv");
        sim.drive_bounded(STEPS).expect("quiesce");
        let c = done(&sim, b, r);
        got.push((c.match_info >> 8, c.msg_length));
        let len = c.msg_length as usize;
        assert_eq!(
            c.buf.as_ref().expect("buf").bytes()[..len],
            pattern(len, (c.match_info >> 8) as u8)[..]
        );
    }
    assert_eq!(got, vec![(0, 10), (2, 3000), (3, 9000)]);
    assert_eq!(
        sim.core(b)
            .iprobe(2, 0xFF)
            .expect("ok")
            .map(|p| p.msg_length),
        Some(200)
    );
    assert_eq!(sim.core(b).iprobe(3, 0xFF).expect("ok"), None);
}

#[test]
fn order_is_kept_across_size_classes() {
    let (mut sim, a, b, ab, _) = pair();
    let lens = [5000usize, 3, 2000, 100, 0, 7000, 40];
    let mut recvs = Vec::new();
    for _ in &lens {
        let rb = sim.zbuf(8000);
        recvs.push(sim.core(b).irecv(rb, 9, !0, 0).expect("irecv"));
    }
    for (i, &len) in lens.iter().enumerate() {
        let s = sim.buf(pattern(len, i as u8));
        sim.core(a).isend(ab, s, 9, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (i, (&len, r)) in lens.iter().zip(recvs).enumerate() {
        let c = done(&sim, b, r);
        assert_eq!(c.msg_length as usize, len, "message {i} matched in order");
        assert_eq!(
            c.buf.as_ref().expect("buf").bytes()[..len],
            pattern(len, i as u8)[..]
        );
    }
}

#[test]
fn context_ids_keep_queues_apart() {
    let mut sim = Sim::new(2, WireCfg::default());
    let a = sim.add_node(|c| c.context_id = Some((2, 40)));
    let b = sim.add_node(|c| c.context_id = Some((2, 40)));
    let (ab, _) = sim.connect_pair(a, b);
    let ctx = |c: u64| c << 40;
    // a mask that does not cover the context bits is refused
    let empty = SimBufHelper::empty(&mut sim);
    let e = sim.core(b).irecv(empty, 0, 0xFF, 0).expect_err("mask");
    assert_eq!(e.error, RecvError::ContextIdMasked);
    for c in [1u64, 2, 1] {
        let s = sim.buf(vec![c as u8; 4]);
        sim.core(a).isend(ab, s, ctx(c) | 7, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    let m = ctx(3) | 0xFF;
    assert!(sim.core(b).iprobe(ctx(2) | 7, m).expect("ok").is_some());
    assert!(sim.core(b).iprobe(ctx(3) | 7, m).expect("ok").is_none());
    let rb = sim.zbuf(4);
    let r = sim.core(b).irecv(rb, ctx(2) | 7, m, 0).expect("irecv");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(
        done(&sim, b, r).buf.as_ref().expect("b").bytes(),
        vec![2; 4]
    );
}

struct SimBufHelper;
impl SimBufHelper {
    fn empty(sim: &mut Sim) -> SimBuf {
        sim.zbuf(0)
    }
}

// ------------------------------------------------------------------
// Requests: cancel, forget, test_any, peek, ibuffered
// ------------------------------------------------------------------

#[test]
fn cancel_semantics() {
    let mut sim = Sim::new(4, WireCfg::default());
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    // unmatched receive: cancelled, buffer back
    let rb = sim.buf(vec![3; 4]);
    let r = sim.core(b).irecv(rb, 1, !0, 0).expect("irecv");
    match sim.core(b).cancel(r).expect("ok") {
        CancelResult::Cancelled(Some(buf)) => assert_eq!(buf.bytes(), vec![3; 4]),
        other => panic!("not cancelled: {other:?}"),
    }
    assert_eq!(
        sim.core(b).test(r).err(),
        Some(RequestError::Unknown),
        "freed"
    );
    // matched receive: too late
    let rb = sim.zbuf(4);
    let r = sim.core(b).irecv(rb, 2, !0, 0).expect("irecv");
    let s = sim.buf(vec![1; 4]);
    let s = sim.core(a).isend(ab, s, 2, 0).expect("isend");
    assert_eq!(
        sim.core(a).cancel(s).err(),
        Some(CancelError::Send),
        "sends cannot be cancelled (MX, Open-MX: MX_BAD_REQUEST)"
    );
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(sim.completion(b, r).is_some());
    // an unanswered connect to a vanished peer: cancelled
    let c = sim.add_node(|_| {});
    sim.nodes[c].vanished = true;
    let (peer, ep) = (sim.nodes[c].peer, sim.nodes[c].ep);
    let k = sim.core(a).connect(peer, ep, 0, 0x1234, 0, 0);
    sim.step();
    assert_eq!(sim.core(a).cancel(k).expect("ok").as_result(), 1);
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(
        sim.completion(a, k).is_none(),
        "cancelled connects never complete"
    );
    // a matched-in-progress large receive cannot be cancelled
    let rb = sim.zbuf(10_000);
    let r = sim.core(b).irecv(rb, 3, !0, 0).expect("irecv");
    let s = sim.buf(vec![5; 10_000]);
    sim.core(a).isend(ab, s, 3, 0).expect("isend");
    sim.drive_until(STEPS, |s| {
        s.nodes[b].core.stats().unexpected == 0 && s.nodes[b].commands > 2
    })
    .expect("run");
    let res = sim.core(b).cancel(r).expect("ok");
    sim.drive_bounded(STEPS).expect("quiesce");
    if res.as_result() == 0 {
        assert_eq!(done(&sim, b, r).status, Status::Success);
    }
}

#[test]
fn forget_test_any_and_peek() {
    let mut core = Core::<Vec<u8>>::new(Config::new(1, 0, 0, 77, 1)).expect("core");
    let me = core.local_addr();
    let r1 = core.irecv(vec![0; 4], 0x10, 0xF0, 1).expect("r1");
    let r2 = core.irecv(vec![0; 4], 0x20, 0xF0, 2).expect("r2");
    let s1 = core.isend(me, vec![1; 4], 0x21, 3).expect("s1");
    let s2 = core.isend(me, vec![2; 4], 0x11, 4).expect("s2");
    // self sends complete at once, in completion order: s1, r2, s2, r1
    assert_eq!(core.peek(), Some(s1));
    // Every kind qualifies, sends too (MX and Open-MX walk the whole done
    // queue; MPICH's nemesis netmod counts its sends only this way): the
    // first finished request under the mask is s2 (0x11), then r1.
    let c = core.test_any(0x10, 0xF0).expect("ok").expect("s2 done");
    assert_eq!((c.req, c.kind, c.match_info), (s2, ReqType::Send, 0x11));
    let c = core.test_any(0x10, 0xF0).expect("ok").expect("r1 done");
    assert_eq!((c.req, c.buf.expect("buf")), (r1, vec![2; 4]));
    assert!(core.test_any(0x30, 0xF0).expect("ok").is_none());
    assert_eq!(
        core.test(s2).err(),
        Some(RequestError::Unknown),
        "taken once"
    );
    assert!(core.forget(s2).is_err(), "a taken request is gone");
    assert_eq!(core.poll_completion().map(|c| c.req), Some(s1));
    assert_eq!(core.poll_completion().map(|c| c.req), Some(r2));
    assert!(core.poll_completion().is_none());
    // forget before completion: never reported
    let r3 = core.irecv(vec![0; 1], 0, 0, 0).expect("r3");
    core.forget(r3).expect("forget");
    core.isend(me, vec![9], 5, 0).expect("s3");
    let got: Vec<_> = std::iter::from_fn(|| core.poll_completion())
        .map(|c| c.kind)
        .collect();
    assert_eq!(got, vec![ReqType::Send]);
    assert_eq!(core.live_requests(), 0);
}

#[test]
fn ibuffered_per_class() {
    let (mut sim, a, _b, ab, _) = pair();
    let t = sim.buf(vec![1; 10]);
    let t = sim.core(a).isend(ab, t, 0, 0).expect("tiny");
    assert_eq!(sim.core(a).ibuffered(t), Ok(true));
    let m = sim.buf(vec![1; 3000]);
    let m = sim.core(a).isend(ab, m, 0, 0).expect("medium");
    assert_eq!(sim.core(a).ibuffered(m), Ok(false));
    let l = sim.buf(vec![1; 30_000]);
    let l = sim.core(a).isend(ab, l, 0, 0).expect("large");
    assert_eq!(sim.core(a).ibuffered(l), Ok(false));
    sim.step();
    // the medium was written to the send queue: completed early (zombie)
    assert_eq!(done(&sim, a, m).status, Status::Success);
    assert!(sim.completion(a, l).is_none());
    assert_eq!(sim.core(a).ibuffered(l), Ok(false));
    let r = sim.zbuf(1);
    let r = sim.core(a).irecv(r, 0, 0, 0).expect("recv");
    assert_eq!(sim.core(a).ibuffered(r), Err(BufferedError::NotASend));
}

// ------------------------------------------------------------------
// issend, self sends
// ------------------------------------------------------------------

#[test]
fn issend_of_zero_bytes_completes_only_when_matched() {
    let (mut sim, a, b, ab, _) = pair();
    let s = sim.zbuf(0);
    let s = sim.core(a).issend(ab, s, 0x99, 0).expect("issend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(
        sim.completion(a, s).is_none(),
        "synchronous: waits for the receiver"
    );
    assert_eq!(
        sim.core(b)
            .iprobe(0x99, !0)
            .expect("ok")
            .map(|p| p.msg_length),
        Some(0)
    );
    let r = sim.zbuf(0);
    let r = sim.core(b).irecv(r, 0x99, !0, 0).expect("irecv");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, b, r).status, Status::Success);
    let c = done(&sim, a, s);
    assert_eq!((c.status, c.xfer_length), (Status::Success, 0));
    assert!(sim.core(a).is_quiescent());
}

#[test]
fn self_sends_all_classes_inside_the_core() {
    let mut core = Core::<Vec<u8>>::new(Config::new(1, 0, 0, 77, 1)).expect("core");
    let me = core.local_addr();
    for (i, len) in [0usize, 20, 100, 5000, 100_000].into_iter().enumerate() {
        let data = pattern(len, i as u8);
        // posted first
        let r = core.irecv(vec![0; len], 1, !0, 0).expect("irecv");
        let s = core.isend(me, data.clone(), 1, 0).expect("isend");
        let rc = core.test(r).expect("ok").expect("done");
        assert_eq!(
            (rc.status, rc.buf.expect("buf")),
            (Status::Success, data.clone())
        );
        assert_eq!(
            core.test(s).expect("ok").expect("done").status,
            Status::Success
        );
        // unexpected first, truncated
        let s = core.isend(me, data.clone(), 2, 0).expect("isend");
        let half = len / 2;
        let r = core.irecv(vec![0; half], 2, !0, 0).expect("irecv");
        let rc = core.test(r).expect("ok").expect("done");
        let trunc = if half < len {
            Status::Truncated
        } else {
            Status::Success
        };
        assert_eq!(rc.status, trunc);
        assert_eq!(rc.buf.expect("buf"), data[..half].to_vec());
        let sc = core.test(s).expect("ok").expect("done");
        let large = len > core.rndv_threshold() as usize;
        assert_eq!(
            sc.status,
            if large { trunc } else { Status::Success },
            "len {len}"
        );
    }
    // issend to self: pending until a receive is posted
    let s = core.issend(me, vec![1, 2, 3], 3, 0).expect("issend");
    assert!(core.test(s).expect("ok").is_none());
    let r = core.irecv(vec![0; 3], 3, !0, 0).expect("irecv");
    assert_eq!(
        core.test(r).expect("ok").expect("done").buf,
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        core.test(s).expect("ok").expect("done").status,
        Status::Success
    );
    let mut slot = CmdSlot::default();
    assert!(
        core.poll_command(0, &mut slot).is_none(),
        "self sends never touch the backend"
    );
}

#[test]
fn self_sends_through_the_backend_when_disabled() {
    let mut sim = Sim::new(9, WireCfg::lossy(0.1, 0.1, 0.2));
    let a = sim.add_node(|c| c.disable_self = true);
    let me = sim.core(a).local_addr();
    let (peer, ep) = (sim.nodes[a].peer, sim.nodes[a].ep);
    let k = sim.core(a).connect(peer, ep, 0, 0x1234, 0, 0);
    assert_eq!(
        sim.core(a).test(k).expect("ok").expect("at once").source,
        me
    );
    let mut pending = Vec::new();
    for (i, len) in [7usize, 300, 3000, 20_000].into_iter().enumerate() {
        let r = sim.zbuf(len);
        let r = sim.core(a).irecv(r, i as u64, !0, 0).expect("irecv");
        let s = sim.buf(pattern(len, i as u8));
        let s = sim.core(a).isend(me, s, i as u64, 0).expect("isend");
        pending.push((len, i, r, s));
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (len, i, r, s) in pending {
        assert_eq!(
            done(&sim, a, r).buf.as_ref().expect("b").bytes(),
            pattern(len, i as u8)
        );
        assert_eq!(done(&sim, a, s).status, Status::Success);
    }
    assert!(sim.nodes[a].commands > 4, "went through the backend");
}

// ------------------------------------------------------------------
// Unexpected handler
// ------------------------------------------------------------------

/// What the recording handler saw: (match, length, data).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, u32, Option<Vec<u8>>)>>>;

struct Recorder {
    seen: Seen,
    finish: bool,
    post_len: Option<usize>,
}

impl UnexpHandler<SimBuf> for Recorder {
    fn unexpected(
        &mut self,
        info: &UnexpInfo<'_>,
        ctx: &mut HandlerCtx<'_, SimBuf>,
    ) -> UnexpAction {
        self.seen.lock().expect("lock").push((
            info.match_info,
            info.msg_length,
            info.data.map(<[u8]>::to_vec),
        ));
        if let Some(len) = self.post_len {
            // the handler may post a receive; CONTINUE then matches it
            let b = SimBuf::test_new(len);
            ctx.irecv(b, info.match_info, !0, 0xAB)
                .map_err(|e| e.error)
                .expect("post");
        }
        if self.finish {
            UnexpAction::Finished
        } else {
            UnexpAction::Continue
        }
    }
}

impl SimBuf {
    fn test_new(len: usize) -> SimBuf {
        let mut s = Sim::new(0, WireCfg::default());
        s.zbuf(len)
    }
}

#[test]
fn unexpected_handler_sees_data_and_can_finish() {
    let (mut sim, a, b, ab, _) = pair();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    sim.core(b).set_unexp_handler(Some(Box::new(Recorder {
        seen: seen.clone(),
        finish: true,
        post_len: None,
    })));
    let mut sends = Vec::new();
    for (i, len) in [0usize, 16, 100, 1000, 3000, 10_000]
        .into_iter()
        .enumerate()
    {
        let s = sim.buf(pattern(len, i as u8));
        sends.push((len, sim.core(a).isend(ab, s, i as u64, 0).expect("isend")));
    }
    let s = sim.buf(vec![1; 10]);
    let sync = sim.core(a).issend(ab, s, 77, 0).expect("issend");
    sim.drive_bounded(STEPS).expect("quiesce");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 7);
    for (i, (len, _)) in sends.iter().enumerate() {
        let (m, l, d) = &seen[i];
        assert_eq!((*m, *l as usize), (i as u64, *len));
        // data for tiny, small and single-fragment medium messages
        if *len <= 1024 {
            assert_eq!(
                d.as_deref(),
                Some(&pattern(*len, i as u8)[..]),
                "data of {len}"
            );
        } else {
            assert!(d.is_none(), "no data for {len}");
        }
    }
    // everything dropped; the rendezvous senders see TRUNCATED
    assert_eq!(sim.core(b).stats().unexpected, 0);
    for (len, s) in sends {
        let c = done(&sim, a, s);
        if len > 4096 {
            assert_eq!((c.status, c.xfer_length), (Status::Truncated, 0));
        } else {
            assert_eq!(c.status, Status::Success);
        }
    }
    assert_eq!(done(&sim, a, sync).status, Status::Truncated);
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

#[test]
fn unexpected_handler_posting_a_receive_then_continue() {
    let (mut sim, a, b, ab, _) = pair();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    sim.core(b).set_unexp_handler(Some(Box::new(Recorder {
        seen: seen.clone(),
        finish: false,
        post_len: Some(20_000),
    })));
    for (i, len) in [5usize, 3000, 20_000].into_iter().enumerate() {
        let s = sim.buf(pattern(len, i as u8));
        sim.core(a).isend(ab, s, i as u64, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(seen.lock().expect("lock").len(), 3);
    assert_eq!(
        sim.core(b).stats().unexpected,
        0,
        "all matched the handler's receives"
    );
    let got: Vec<_> = sim.nodes[b]
        .completions
        .iter()
        .filter(|c| c.kind == ReqType::Recv)
        .map(|c| (c.context, c.msg_length))
        .collect();
    assert_eq!(got, vec![(0xAB, 5), (0xAB, 3000), (0xAB, 20_000)]);
}

// ------------------------------------------------------------------
// Acks, NACKs, resend limit, distrust
// ------------------------------------------------------------------

#[test]
fn explicit_ack_after_threshold_and_delay() {
    let (mut sim, a, b, ab, _) = pair();
    // 3 messages: below the threshold, acked after ~1/64 s
    let t0 = sim.now;
    for i in 0..3 {
        let s = sim.buf(vec![i; 8]);
        sim.core(a).isend(ab, s, 0, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(sim.core(b).stats().acks_sent, 1);
    assert!(sim.now - t0 >= 15_000, "delayed ack");
    assert_eq!(sim.core(a).zombies(), 0);
    // 4 messages: acked at once
    let t1 = sim.now;
    for i in 0..4 {
        let s = sim.buf(vec![i; 8]);
        sim.core(a).isend(ab, s, 0, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(sim.core(b).stats().acks_sent, 2);
    assert!(sim.now - t1 < 1_000, "immediate ack");
    assert_eq!(sim.core(a).stats().resends, 0);
}

#[test]
fn lost_acks_are_recovered_by_resend_and_immediate_reack() {
    let (mut sim, a, b, ab, _) = pair();
    let mut lost = 0;
    sim.set_filter(move |p| {
        if p.kind() == mx_proto::msg::event::EventKind::RecvLiback as u8 && lost < 1 {
            lost += 1;
            return true;
        }
        false
    });
    let s = sim.buf(vec![1; 8]);
    sim.core(a).isend(ab, s, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(sim.core(a).stats().resends, 1);
    assert_eq!(
        sim.core(b).stats().drop_obsolete,
        1,
        "the resend is a duplicate"
    );
    assert_eq!(
        sim.core(b).stats().acks_sent,
        2,
        "one behind: acked at once"
    );
    assert!(sim.core(a).is_quiescent());
}

#[test]
fn nack_endpoint_closed_fails_the_send() {
    let (mut sim, a, b, ab, _) = pair();
    sim.nodes[b].alive = false;
    let s1 = sim.buf(vec![1; 8]);
    let s1 = sim.core(a).isend(ab, s1, 0, 0).expect("isend");
    let s2 = sim.buf(vec![1; 20_000]);
    let s2 = sim.core(a).isend(ab, s2, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    // the tiny one completed early (zombie); the large one sees the NACK
    assert_eq!(done(&sim, a, s1).status, Status::Success);
    assert_eq!(done(&sim, a, s2).status, Status::EndpointClosed);
    assert_eq!(sim.core(a).zombies(), 0);
    assert!(sim.core(a).stats().nacks >= 2);
    // a connect to a closed endpoint fails too
    let (peer, ep) = (sim.nodes[b].peer, sim.nodes[b].ep);
    let k = sim.core(a).connect(peer, ep, 0, 0x1234, 0, 0);
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, k).status, Status::EndpointClosed);
}

#[test]
fn bad_session_nack() {
    let (mut sim, a, b, ab, _) = pair();
    sim.nodes[b].session ^= 0xFFFF; // b re-opened with a new session
    let s = sim.buf(vec![1; 20_000]);
    let s = sim.core(a).issend(ab, s, 0, 0).expect("issend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::BadSession);
}

#[test]
fn vanished_peer_hits_resend_limit() {
    let (mut sim, a, b, ab, _) = pair();
    sim.core(a).set_request_timeout(None, 3000).expect("ok"); // 6 sends
    let r = sim.zbuf(8);
    let r = sim.core(a).irecv(r, 0, 0, 0).expect("irecv");
    sim.nodes[b].vanished = true;
    let mut sends = Vec::new();
    for len in [8usize, 200, 3000, 30_000] {
        let s = sim.buf(vec![1; len]);
        sends.push(sim.core(a).isend(ab, s, 0, 0).expect("isend"));
    }
    let t0 = sim.now;
    sim.drive_bounded(STEPS).expect("quiesce");
    let t = sim.now - t0;
    assert!(
        (2_500_000..=4_000_000).contains(&t),
        "failed after ~3 s, got {t}"
    );
    assert_eq!(sim.core(a).stats().partners_failed, 1);
    // eager sends completed early (zombies); the large one fails
    assert_eq!(done(&sim, a, sends[3]).status, Status::EndpointUnreachable);
    assert_eq!(sim.core(a).zombies(), 0);
    assert!(
        sim.completion(a, r).is_none(),
        "receives are not tied to a partner"
    );
    assert!(sim.core(a).is_quiescent());
    // the partner is reset: sending again fails at once until reconnected
    let s = sim.buf(vec![1; 8]);
    let s = sim.core(a).isend(ab, s, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
}

#[test]
fn resend_limit_without_zombies_fails_every_send() {
    let mut sim = Sim::new(8, WireCfg::default());
    let a = sim.add_node(|c| {
        c.zombie_max = 0;
        c.resend_limit = 3;
    });
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    sim.nodes[b].vanished = true;
    let mut sends = Vec::new();
    for len in [0usize, 8, 200, 3000, 30_000] {
        let s = sim.buf(vec![1; len]);
        sends.push(sim.core(a).isend(ab, s, 0, 0).expect("isend"));
    }
    let (peer, ep) = (sim.nodes[b].peer, sim.nodes[b].ep);
    let k = sim.core(a).connect(peer, ep, 0, 0x1234, 0, 0);
    sim.drive_bounded(STEPS).expect("quiesce");
    for s in sends {
        assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
    }
    assert_eq!(done(&sim, a, k).status, Status::EndpointUnreachable);
}

#[test]
fn per_request_timeout_overrides_the_default() {
    let (mut sim, a, b, ab, _) = pair();
    sim.nodes[b].vanished = true;
    let s = sim.buf(vec![1; 30_000]);
    let s = sim.core(a).isend(ab, s, 0, 0).expect("isend");
    sim.core(a).set_request_timeout(Some(s), 1000).expect("ok");
    let t0 = sim.now;
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
    assert!(sim.now - t0 <= 1_100_000);
}

#[test]
fn lying_events_are_dropped_and_counted() {
    let (mut sim, _a, b, _, _) = pair();
    let src = Source {
        peer: sim.nodes[0].peer,
        endpoint: sim.nodes[0].ep,
    };
    let hdr = RecvHdr {
        src,
        seq: Seq {
            seqnum: 1,
            piggyack: 1,
        },
        match_info: 0,
    };
    let core = &mut sim.nodes[b].core;
    let before = core.stats().drop_bad_event;
    let evs = [
        Event::RecvSmall {
            hdr,
            length: 10,
            recvq_slot: 999,
        },
        Event::RecvMediumFrag {
            hdr,
            msg_length: 3000,
            frag_seqnum: 5,
            frag_length: 1024,
            recvq_slot: 0,
        },
        Event::RecvMediumFrag {
            hdr,
            msg_length: 3000,
            frag_seqnum: 0,
            frag_length: 100,
            recvq_slot: 0,
        },
        Event::RecvMediumFrag {
            hdr,
            msg_length: 1 << 30,
            frag_seqnum: 0,
            frag_length: 1024,
            recvq_slot: 0,
        },
        Event::SendMediumDone { sendq_slot: 3 },
        Event::SendMediumDone { sendq_slot: 60_000 },
        Event::PullDone {
            cookie: 12345,
            status: mx_proto::msg::event::PullStatus::Success,
            transferred: 1,
        },
    ];
    for ev in &evs {
        core.handle_event(0, ev, &NoRecvQueue);
    }
    // a short receive-queue slot
    struct Short;
    impl RecvQueue for Short {
        fn slot_len(&self, _: u16) -> usize {
            3
        }
        fn read(&self, _: u16, _: usize, _: &mut [u8]) -> bool {
            unreachable!("the core checks the length first")
        }
    }
    core.handle_event(
        0,
        &Event::RecvSmall {
            hdr,
            length: 10,
            recvq_slot: 0,
        },
        &Short,
    );
    assert_eq!(core.stats().drop_bad_event - before, evs.len() as u64 + 1);
    // unknown partners
    let mut other = hdr;
    other.src.peer = 4000;
    core.handle_event(
        0,
        &Event::RecvTiny {
            hdr: other,
            data: b"x",
        },
        &NoRecvQueue,
    );
    assert_eq!(core.stats().drop_unknown_partner, 1);
}

#[test]
fn throttle_holds_sends_until_acked() {
    let mut sim = Sim::new(12, WireCfg::default());
    let a = sim.add_node(|c| c.throttle = 3);
    let b = sim.add_node(|_| {});
    let ab = sim.connect(a, b);
    let mut recvs = Vec::new();
    for i in 0..10u8 {
        let r = sim.zbuf(1);
        recvs.push(sim.core(b).irecv(r, 0, 0, 0).expect("irecv"));
        let s = sim.buf(vec![i]);
        sim.core(a).isend(ab, s, 0, 0).expect("isend");
    }
    // only 3 can be on the wire before an ack
    sim.step();
    assert_eq!(sim.nodes[a].commands, 3 + 1, "3 tinies (plus the connect)");
    sim.drive_bounded(STEPS).expect("quiesce");
    for (i, r) in recvs.into_iter().enumerate() {
        assert_eq!(
            done(&sim, b, r).buf.as_ref().expect("b").bytes(),
            vec![i as u8]
        );
    }
}

#[test]
fn disconnect_drops_partner_state() {
    let (mut sim, a, b, ab, _) = pair();
    let s = sim.buf(vec![1; 30_000]);
    let s = sim.core(a).isend(ab, s, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert!(sim.completion(a, s).is_none(), "waits for a receive at b");
    sim.core(a).disconnect(ab).expect("disconnect");
    sim.step();
    assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
    assert!(sim.core(a).partner_info(ab).is_none());
    assert_eq!(sim.core(a).disconnect(ab), Err(AddrError::Unknown));
    let ab2 = sim.connect(a, b);
    assert_ne!(ab2, ab);
    let r = sim.zbuf(8);
    let r = sim.core(b).irecv(r, 1, !0, 0).expect("irecv");
    let s = sim.buf(vec![2; 8]);
    sim.core(a).isend(ab2, s, 1, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(
        done(&sim, b, r).buf.as_ref().expect("b").bytes(),
        vec![2; 8]
    );
}

#[test]
fn pull_failure_fails_receive_and_notifies_sender() {
    let (mut sim, a, b, ab, _) = pair();
    sim.pull_fail = Some(mx_proto::msg::event::PullStatus::BadRdmaWindow);
    let r = sim.zbuf(30_000);
    let r = sim.core(b).irecv(r, 0, 0, 0).expect("irecv");
    let s = sim.buf(vec![1; 30_000]);
    let s = sim.core(a).isend(ab, s, 0, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, b, r).status, Status::BadRdmawin);
    let c = done(&sim, a, s);
    assert_eq!((c.status, c.xfer_length), (Status::Truncated, 0));
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

#[test]
fn many_large_sends_share_region_ids() {
    let (mut sim, a, b, ab, _) = pair();
    let n = 300; // more than the 224 send windows
    let mut recvs = Vec::new();
    for i in 0..n {
        let s = sim.buf(pattern(5000, i as u8));
        sim.core(a).isend(ab, s, i as u64, 0).expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for i in 0..n {
        let r = sim.zbuf(5000);
        recvs.push(sim.core(b).irecv(r, i as u64, !0, 0).expect("irecv"));
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (i, r) in recvs.into_iter().enumerate() {
        assert_eq!(
            done(&sim, b, r).buf.as_ref().expect("b").bytes(),
            pattern(5000, i as u8)
        );
    }
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

#[test]
fn core_is_send_for_the_threaded_shell() {
    fn assert_send<T: Send>() {}
    assert_send::<Core<Vec<u8>>>();
    assert_send::<Completion<Vec<u8>>>();
}

#[test]
fn peer_restart_with_new_session_is_a_new_partner_instance() {
    let (mut sim, a, b, ab, _) = pair();
    // traffic both ways, then a large send from a that b never receives
    let s = sim.buf(vec![1; 3000]);
    sim.core(a).isend(ab, s, 1, 0).expect("isend");
    let stuck = sim.buf(vec![2; 30_000]);
    let stuck = sim.core(a).isend(ab, stuck, 2, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    // b's process restarts: new core, new session, same endpoint
    let new_session = sim.nodes[b].session ^ 0x00ff_ff00;
    let mut cfg = Sim::test_config(sim.nodes[b].peer, sim.nodes[b].ep, new_session);
    cfg.seed = 99;
    sim.nodes[b].core = Core::new(cfg).expect("core");
    sim.nodes[b].session = new_session;
    // the new b connects to a: a drops the old instance's state
    let ba = sim.connect(b, a);
    assert_eq!(done(&sim, a, stuck).status, Status::EndpointUnreachable);
    // a reconnects to the new instance and both directions work
    let ab2 = sim.connect(a, b);
    assert_eq!(ab2.session, new_session);
    let r = sim.zbuf(5000);
    let r = sim.core(b).irecv(r, 3, !0, 0).expect("irecv");
    let s = sim.buf(pattern(5000, 3));
    sim.core(a).isend(ab2, s, 3, 0).expect("isend");
    let r2 = sim.zbuf(100);
    let r2 = sim.core(a).irecv(r2, 4, !0, 0).expect("irecv");
    let s = sim.buf(pattern(100, 4));
    sim.core(b).isend(ba, s, 4, 0).expect("isend");
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(
        done(&sim, b, r).buf.as_ref().expect("b").bytes(),
        pattern(5000, 3)
    );
    assert_eq!(
        done(&sim, a, r2).buf.as_ref().expect("b").bytes(),
        pattern(100, 4)
    );
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

/// A partner restarts (new core, new session, same endpoint) after traffic
/// both ways; then the two reconnect, the restarted side first or the
/// survivor first, and messages flow both ways, in order, byte-exact.
fn restart_then_reconnect(survivor_first: bool) {
    let (mut sim, a, b, ab, ba) = pair();
    // Traffic both ways, so that both sides' seqnums are past their start.
    for i in 0..5u8 {
        let r = sim.zbuf(100);
        sim.core(a)
            .irecv(r, 100 + u64::from(i), !0, 0)
            .expect("irecv");
        let s = sim.buf(pattern(100, i));
        sim.core(b)
            .isend(ba, s, 100 + u64::from(i), 0)
            .expect("isend");
        let s = sim.buf(pattern(50, i));
        sim.core(a)
            .isend(ab, s, 200 + u64::from(i), 0)
            .expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    let new_session = sim.nodes[b].session ^ 0x00ff_ff00;
    let mut cfg = Sim::test_config(sim.nodes[b].peer, sim.nodes[b].ep, new_session);
    cfg.seed = 99;
    sim.nodes[b].core = Core::new(cfg).expect("core");
    sim.nodes[b].session = new_session;
    let (ab2, ba2) = if survivor_first {
        let ab2 = sim.connect(a, b);
        (ab2, sim.connect(b, a))
    } else {
        let ba2 = sim.connect(b, a);
        (sim.connect(a, b), ba2)
    };
    assert_eq!(ab2.session, new_session);
    let mut checks = Vec::new();
    for i in 0..6u8 {
        let len = [0usize, 20, 100, 5000, 40_000, 9000][usize::from(i)];
        let r = sim.zbuf(len);
        let r = sim
            .core(a)
            .irecv(r, 10 + u64::from(i), !0, 0)
            .expect("irecv");
        checks.push((a, r, pattern(len, i)));
        let s = sim.buf(pattern(len, i));
        sim.core(b)
            .isend(ba2, s, 10 + u64::from(i), 0)
            .expect("isend");
        let r = sim.zbuf(len);
        let r = sim
            .core(b)
            .irecv(r, 30 + u64::from(i), !0, 0)
            .expect("irecv");
        checks.push((b, r, pattern(len, i ^ 0x55)));
        let s = sim.buf(pattern(len, i ^ 0x55));
        sim.core(a)
            .isend(ab2, s, 30 + u64::from(i), 0)
            .expect("isend");
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (n, r, want) in checks {
        let c = done(&sim, n, r);
        assert_eq!(c.status, Status::Success, "node {n}");
        assert_eq!(c.buf.as_ref().expect("buf").bytes(), want, "node {n}");
    }
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

#[test]
fn restart_reconnect_restarted_side_first() {
    restart_then_reconnect(false);
}

#[test]
fn restart_reconnect_survivor_first() {
    restart_then_reconnect(true);
}

#[test]
fn flush_acks_at_close_acks_everything() {
    let (mut sim, a, b, ab, _) = pair();
    let s = sim.buf(vec![1; 8]);
    sim.core(a).isend(ab, s, 0, 0).expect("isend");
    // deliver the message but stop before the delayed ack fires
    sim.drive_until(STEPS, |s| s.nodes[b].core.stats().unexpected == 1)
        .expect("delivered");
    assert_eq!(sim.core(b).stats().acks_sent, 0);
    sim.core(b).flush_acks();
    sim.step();
    assert_eq!(sim.core(b).stats().acks_sent, 1);
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(sim.core(b).stats().acks_sent, 1, "nothing left to ack");
    assert!(sim.core(a).is_quiescent());
}

// ------------------------------------------------------------------
// Staging through a bulk pool (the Xen path)
// ------------------------------------------------------------------

const POOL: usize = 128 * 1024;

fn post_recv(
    sim: &mut Sim,
    n: usize,
    len: usize,
    m: u64,
    mask: u64,
    ctx: u64,
) -> Result<ReqId, Rejected<SimBuf, RecvError>> {
    let q = sim.zbuf(len);
    sim.core(n).irecv(q, m, mask, ctx)
}

fn post_send(
    sim: &mut Sim,
    n: usize,
    to: EndpointAddr,
    data: Vec<u8>,
    m: u64,
) -> Result<ReqId, Rejected<SimBuf, SendError>> {
    let q = sim.buf(data);
    sim.core(n).isend(to, q, m, 0)
}

#[test]
fn large_messages_are_staged_through_the_pools() {
    // both staged, only the sender, only the receiver
    for (pool_a, pool_b) in [(true, true), (true, false), (false, true)] {
        let (mut sim, a, b, ab, _) = pair();
        if pool_a {
            sim.add_pool(a, POOL);
        }
        if pool_b {
            sim.add_pool(b, POOL);
        }
        for (i, len) in [32_769usize, 40_000, POOL / 2].into_iter().enumerate() {
            let data = pattern(len, i as u8);
            let r = post_recv(&mut sim, b, len + 100, 0, 0, 0).unwrap();
            let s = post_send(&mut sim, a, ab, data.clone(), 0).unwrap();
            sim.drive_bounded(STEPS).expect("quiesce");
            assert_eq!(done(&sim, a, s).status, Status::Success, "{len}");
            let c = done(&sim, b, r);
            assert_eq!((c.status, c.xfer_length), (Status::Success, len as u32));
            assert_eq!(&c.buf.as_ref().unwrap().bytes()[..len], &data[..], "{len}");
        }
        for (n, has) in [(a, pool_a), (b, pool_b)] {
            let staged = sim.core(n).stats().bytes_staged;
            assert_eq!(staged > 0, has, "node {n} staged {staged} bytes");
            if let Some((free, size)) = sim.pool_free(n) {
                assert_eq!(free, size, "node {n}: every range was released");
            }
        }
    }
}

#[test]
fn staged_sends_wait_for_pool_room_and_keep_their_order() {
    let (mut sim, a, b, ab, _) = pair();
    sim.add_pool(a, POOL);
    sim.add_pool(b, POOL);
    let len = 40_000; // one staged send at a time fits in half the pool
    let mut recvs = Vec::new();
    let mut sends = Vec::new();
    for i in 0..5u8 {
        sends.push(post_send(&mut sim, a, ab, pattern(len, i), 7).unwrap());
    }
    for _ in 0..5 {
        recvs.push(post_recv(&mut sim, b, len, 7, !0, 0).unwrap());
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (i, (s, r)) in sends.into_iter().zip(recvs).enumerate() {
        assert_eq!(done(&sim, a, s).status, Status::Success);
        let c = done(&sim, b, r);
        assert_eq!(
            c.buf.as_ref().unwrap().bytes(),
            pattern(len, i as u8),
            "message {i}"
        );
    }
    assert_eq!(sim.pool_free(a), Some((POOL as u64, POOL as u64)));
    assert_eq!(sim.pool_free(b), Some((POOL as u64, POOL as u64)));
    assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
}

#[test]
fn messages_larger_than_the_pool_fail_cleanly() {
    // a send that can never be staged, not even through a window of two
    // blocks (4 KiB each here, half the pool is 6 KiB), fails at once
    let (mut sim, a, _b, ab, _) = pair();
    sim.add_pool(a, 12 * 1024);
    let s = post_send(&mut sim, a, ab, vec![1; 6 * 1024 + 1], 1).unwrap();
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::NoResources);
    // a truncating receive stages only what it takes
    let (mut sim, a, b, ab, _) = {
        let (mut sim, a, b, ab, ba) = pair();
        sim.add_pool(b, POOL);
        (sim, a, b, ab, ba)
    };
    let r = post_recv(&mut sim, b, 1000, 2, !0, 0).unwrap();
    let s = post_send(&mut sim, a, ab, pattern(3 * POOL, 9), 2).unwrap();
    sim.drive_bounded(STEPS).expect("quiesce");
    let c = done(&sim, b, r);
    assert_eq!((c.status, c.xfer_length), (Status::Truncated, 1000));
    assert_eq!(
        c.buf.as_ref().unwrap().bytes(),
        pattern(3 * POOL, 9)[..1000]
    );
    assert_eq!(done(&sim, a, s).status, Status::Truncated);
    assert_eq!(sim.pool_free(b), Some((POOL as u64, POOL as u64)));
}

/// Bytes that differ from block to block (a pattern of period 256 would
/// not see a block delivered in the wrong place).
fn aperiodic(len: usize, salt: u8) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ salt)
        .collect()
}

#[test]
fn sends_larger_than_the_pool_go_through_a_window() {
    // 8x the sender's pool: a window of 4 slots of 4 KiB in its send half,
    // refilled whenever the backend asks; the receiver with a pool (pulls
    // block by block) and without (one pull of the whole message, copied
    // as its blocks are staged). On the lossy wire blocks are read again
    // after their slot went to another block: staged again.
    for wire in [WireCfg::default(), WireCfg::lossy(0.05, 0.05, 0.1)] {
        for pool_b in [false, true] {
            let lossy = wire.drop > 0.0;
            let mut sim = Sim::new(11, wire);
            let a = sim.add_node(|_| {});
            let b = sim.add_node(|_| {});
            let (ab, _) = sim.connect_pair(a, b);
            sim.add_pool(a, POOL);
            if pool_b {
                sim.add_pool(b, POOL);
            }
            for (i, len) in [8 * POOL, 5 * POOL + 12_345, POOL / 2 + 1]
                .into_iter()
                .enumerate()
            {
                let data = aperiodic(len, i as u8);
                let r = post_recv(&mut sim, b, len, 1, !0, 0).unwrap();
                let s = post_send(&mut sim, a, ab, data.clone(), 1).unwrap();
                sim.drive_bounded(STEPS).expect("quiesce");
                assert_eq!(done(&sim, a, s).status, Status::Success, "{len}");
                let c = done(&sim, b, r);
                assert_eq!((c.status, c.xfer_length), (Status::Success, len as u32));
                assert!(c.buf.as_ref().unwrap().bytes() == data, "{len} byte-exact");
            }
            let blocks = (8 * POOL / 4096) as u64;
            assert!(
                sim.stage_requests >= blocks - 4,
                "{} stage requests",
                sim.stage_requests
            );
            let asked = sim.stage_requests;
            assert_eq!(sim.core(a).stats().window_stages, asked);
            assert_eq!(sim.bad_stages, 0);
            if lossy {
                assert!(sim.window_losses > 0, "no block was lost");
            }
            assert_eq!(sim.pool_free(a), Some((POOL as u64, POOL as u64)));
            assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
        }
    }
}

/// Staged copies follow the application's segments: buffers of 5000-byte
/// segments (neither the pool's 4 KiB ranges nor its blocks line up with
/// them) staged whole, through a window, and pulled into a pool or
/// straight into scattered receives, byte-exact.
#[test]
fn staged_copies_cross_segment_boundaries() {
    for pool_b in [false, true] {
        let mut sim = Sim::new(13, WireCfg::default());
        let a = sim.add_node(|_| {});
        let b = sim.add_node(|_| {});
        let (ab, _) = sim.connect_pair(a, b);
        sim.set_segment_size(5000);
        sim.add_pool(a, POOL);
        if pool_b {
            sim.add_pool(b, POOL);
        }
        for (i, len) in [40_000usize, POOL / 2, 3 * POOL + 777]
            .into_iter()
            .enumerate()
        {
            let data = aperiodic(len, i as u8);
            let r = post_recv(&mut sim, b, len, 1, !0, 0).unwrap();
            let s = post_send(&mut sim, a, ab, data.clone(), 1).unwrap();
            sim.drive_bounded(STEPS).expect("quiesce");
            assert_eq!(done(&sim, a, s).status, Status::Success, "{len}");
            let c = done(&sim, b, r);
            assert_eq!((c.status, c.xfer_length), (Status::Success, len as u32));
            assert!(c.buf.as_ref().unwrap().bytes() == data, "{len} byte-exact");
        }
        assert!(
            sim.core(a).stats().window_stages > 0,
            "the largest went through a window"
        );
        assert_eq!(sim.core(b).stats().bytes_staged > 0, pool_b);
        assert_eq!(sim.pool_free(a), Some((POOL as u64, POOL as u64)));
    }
}

#[test]
fn crossing_sends_larger_than_the_pools() {
    // Both sides send 8x their pool to each other at once, several times:
    // windows and pulls share each pool without waiting for each other.
    let mut sim = Sim::new(5, WireCfg::lossy(0.02, 0.02, 0.1));
    let a = sim.add_node(|_| {});
    let b = sim.add_node(|_| {});
    let (ab, ba) = sim.connect_pair(a, b);
    sim.add_pool(a, POOL);
    sim.add_pool(b, POOL);
    let mut reqs = Vec::new();
    for i in 0..3u8 {
        let len = 8 * POOL - 1000 * usize::from(i);
        for (from, to, addr, salt) in [(a, b, ab, i), (b, a, ba, 100 + i)] {
            let r = post_recv(&mut sim, to, len, 9, !0, 0).unwrap();
            let s = post_send(&mut sim, from, addr, aperiodic(len, salt), 9).unwrap();
            reqs.push((from, s, to, r, aperiodic(len, salt)));
        }
    }
    sim.drive_bounded(4 * STEPS).expect("quiesce");
    for (from, s, to, r, data) in reqs {
        assert_eq!(done(&sim, from, s).status, Status::Success);
        let c = done(&sim, to, r);
        assert!(c.buf.as_ref().unwrap().bytes() == data, "byte-exact");
    }
    assert_eq!(sim.pool_free(a), Some((POOL as u64, POOL as u64)));
    assert_eq!(sim.pool_free(b), Some((POOL as u64, POOL as u64)));
}

#[test]
fn a_lying_stage_request_is_dropped() {
    // The backend asks for blocks of windows we do not have, slots out of
    // range, blocks beyond the message, an old generation: nothing is
    // copied nor answered, each is counted.
    let (mut sim, a, _b, ab, _) = pair();
    sim.add_pool(a, POOL);
    let data = aperiodic(4 * POOL, 1);
    let s = post_send(&mut sim, a, ab, data, 1).unwrap();
    let before = sim.core(a).stats().drop_bad_event;
    let lies = [
        (200u8, 0u8, 0u16, 1u32), // a region we never opened
        (0, 0, 4, 1),             // slot beyond the window's 4
        (0, 0, 0, 1 << 20),       // block beyond the message
        (0, 77, 0, 1),            // another generation
    ];
    let now = sim.now;
    for (region_id, gen, slot, block) in lies {
        let ev = mx_proto::msg::Event::StageNeeded {
            region_id,
            gen,
            slot,
            block,
        };
        sim.core(a)
            .handle_event(now, &ev, &crate::core::NoRecvQueue);
    }
    assert_eq!(sim.core(a).stats().drop_bad_event, before + 4);
    assert_eq!(sim.core(a).stats().window_stages, 0);
    let _ = s;
}

#[test]
fn a_receive_of_any_size_pulls_through_a_ring_in_the_pool() {
    // The receiver's pool is a fraction of the message: blocks land in a
    // ring of a few blocks, each copied out before its slot is reused.
    for wire in [WireCfg::default(), WireCfg::lossy(0.05, 0.05, 0.1)] {
        let mut sim = Sim::new(3, wire);
        let a = sim.add_node(|_| {});
        let b = sim.add_node(|_| {});
        let (ab, _) = sim.connect_pair(a, b);
        sim.add_pool(b, 32 * 1024); // a ring of 4 blocks of 4 KiB
        for (i, len) in [4 * POOL, 40_000, 16 * 1024 + 1].into_iter().enumerate() {
            let r = post_recv(&mut sim, b, len, 1, !0, 0).unwrap();
            let s = post_send(&mut sim, a, ab, pattern(len, i as u8), 1).unwrap();
            sim.drive_bounded(STEPS).expect("quiesce");
            let c = done(&sim, b, r);
            assert_eq!((c.status, c.xfer_length), (Status::Success, len as u32));
            assert_eq!(
                c.buf.as_ref().unwrap().bytes(),
                pattern(len, i as u8),
                "{len}"
            );
            assert_eq!(done(&sim, a, s).status, Status::Success);
        }
        assert_eq!(sim.pool_free(b), Some((32 * 1024, 32 * 1024)));
    }
}

#[test]
fn crossing_large_sends_do_not_deadlock_on_the_pools() {
    // Sends first on both sides: if staged sends could fill a pool, no
    // pull would ever find room.
    // Sizes vary so that the pools fragment: a pull must be able to use
    // scattered room.
    let (mut sim, a, b, ab, ba) = pair();
    sim.add_pool(a, POOL);
    sim.add_pool(b, POOL);
    let len = |i: u8| 33_000 + 7_000 * usize::from(i % 5);
    let mut sends = Vec::new();
    for i in 0..8u8 {
        sends.push((
            a,
            post_send(&mut sim, a, ab, pattern(len(i), i), 3).unwrap(),
        ));
        sends.push((
            b,
            post_send(&mut sim, b, ba, pattern(len(i + 1), 100 + i), 3).unwrap(),
        ));
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    let mut recvs = Vec::new();
    for i in 0..8u8 {
        recvs.push((
            b,
            len(i),
            i,
            post_recv(&mut sim, b, 70_000, 3, !0, 0).unwrap(),
        ));
        recvs.push((
            a,
            len(i + 1),
            100 + i,
            post_recv(&mut sim, a, 70_000, 3, !0, 0).unwrap(),
        ));
    }
    sim.drive_bounded(STEPS).expect("quiesce");
    for (n, l, salt, r) in recvs {
        let c = done(&sim, n, r);
        assert_eq!(c.xfer_length as usize, l);
        assert_eq!(c.buf.as_ref().unwrap().bytes()[..l], pattern(l, salt)[..]);
    }
    for (n, s) in sends {
        assert_eq!(done(&sim, n, s).status, Status::Success);
    }
    assert_eq!(sim.pool_free(a), Some((POOL as u64, POOL as u64)));
}

// ------------------------------------------------------------------
// Direct pulls (the receiver copies from the sender itself)
// ------------------------------------------------------------------

#[test]
fn direct_pulls_copy_in_the_receiver_and_fall_back_once_refused() {
    for works in [true, false] {
        let mut sim = Sim::new(5, WireCfg::default());
        let a = sim.add_node(|c| c.direct_pull = true);
        let b = sim.add_node(|c| c.direct_pull = true);
        let (ab, _) = sim.connect_pair(a, b);
        sim.direct = Some(works);
        for i in 0..3u8 {
            let len = 20_000 + 1000 * usize::from(i);
            let r = post_recv(&mut sim, b, len, 5, !0, 0).unwrap();
            let s = post_send(&mut sim, a, ab, pattern(len, i), 5).unwrap();
            sim.drive_bounded(STEPS).expect("quiesce");
            let c = done(&sim, b, r);
            assert_eq!((c.status, c.xfer_length), (Status::Success, len as u32));
            assert_eq!(c.buf.as_ref().unwrap().bytes(), pattern(len, i));
            assert_eq!(done(&sim, a, s).status, Status::Success);
        }
        let st = *sim.core(b).stats();
        if works {
            assert_eq!((st.pulls_direct, st.pulls_direct_failed), (3, 0));
        } else {
            // the first refusal turns direct pulls off: the backend copies
            assert_eq!((st.pulls_direct, st.pulls_direct_failed), (0, 1));
            assert!(!sim.core(b).config().direct_pull);
        }
        assert!(sim.core(a).is_quiescent() && sim.core(b).is_quiescent());
    }
}

#[test]
fn same_host_staged_sends_are_pulled_while_still_being_staged() {
    // Two endpoints of one host: the sender copies and registers block by
    // block after its rendezvous, and the backend holds pulls of blocks
    // not registered yet.
    for batch in [Some(1), None] {
        let mut sim = Sim::new(21, WireCfg::default());
        sim.cmd_batch = batch;
        // a sender that stages a block per 10 µs, slower than the pulls
        sim.step_cost = if batch.is_some() { 10 } else { 0 };
        let a = sim.add_node_at(0, 1, |_| {});
        let b = sim.add_node_at(0, 2, |_| {});
        sim.add_pool(a, 4 * POOL);
        sim.add_pool(b, 4 * POOL);
        let (ab, ba) = sim.connect_pair(a, b);
        for (i, len) in [4096usize + 1, 65_536, 2 * POOL - 1]
            .into_iter()
            .enumerate()
        {
            let r = post_recv(&mut sim, b, len, 9, !0, 0).unwrap();
            let s = post_send(&mut sim, a, ab, pattern(len, i as u8), 9).unwrap();
            let r2 = post_recv(&mut sim, a, len, 9, !0, 0).unwrap();
            let s2 = post_send(&mut sim, b, ba, pattern(len, 50 + i as u8), 9).unwrap();
            sim.drive_bounded(STEPS).expect("quiesce");
            assert_eq!(
                done(&sim, b, r).buf.as_ref().unwrap().bytes(),
                pattern(len, i as u8)
            );
            assert_eq!(
                done(&sim, a, r2).buf.as_ref().unwrap().bytes(),
                pattern(len, 50 + i as u8)
            );
            assert_eq!(done(&sim, a, s).status, Status::Success);
            assert_eq!(done(&sim, b, s2).status, Status::Success);
        }
        for n in [a, b] {
            assert_eq!(sim.pool_free(n), Some((4 * POOL as u64, 4 * POOL as u64)));
            assert!(sim.core(n).is_quiescent());
        }
        if batch.is_some() {
            assert!(sim.pulls_held > 0, "no pull ever waited for its block");
        }
    }
}

// ------------------------------------------------------------------
// The MX environment variables, from the variable to the behaviour
// ------------------------------------------------------------------

/// The core configuration tweak that `vars` (MX environment variables)
/// make, through the same path as an endpoint open.
fn env_tweak(vars: &[(&str, &str)]) -> impl FnOnce(&mut Config) {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = crate::env::MxEnv::parse(move |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    });
    assert!(env.warnings.is_empty(), "{:?}", env.warnings);
    let opts = crate::endpoint::OpenOptions::from_env(&env);
    move |c: &mut Config| opts.tune(c)
}

const LIBACK: u8 = mx_proto::msg::event::EventKind::RecvLiback as u8;

#[test]
fn mx_zombie_send_0_holds_eager_sends_until_their_ack() {
    for zombie_send in ["1", "0"] {
        let mut sim = Sim::new(21, WireCfg::default());
        let a = sim.add_node(env_tweak(&[("MX_ZOMBIE_SEND", zombie_send)]));
        let b = sim.add_node(|_| {});
        if zombie_send == "0" {
            assert_eq!(sim.core(a).config().zombie_max, 0);
        }
        let ab = sim.connect(a, b);
        // b's explicit acks are lost (and b never sends a to piggyback one).
        sim.set_filter(|p| p.kind() == LIBACK);
        let mut sends = Vec::new();
        let mut recvs = Vec::new();
        for (i, len) in [8usize, 100, 3000].into_iter().enumerate() {
            let r = sim.zbuf(len);
            recvs.push(sim.core(b).irecv(r, i as u64, !0, 0).expect("irecv"));
            let s = sim.buf(pattern(len, i as u8));
            sends.push(sim.core(a).isend(ab, s, i as u64, 0).expect("isend"));
        }
        // Everything delivered, then 0.2 s (many ack delays, before the
        // first retransmission at 0.5 s) without an ack getting through.
        sim.drive_until(STEPS, |s| {
            recvs.iter().all(|&r| s.completion(b, r).is_some())
        })
        .expect("delivered");
        let until = sim.now + 200_000;
        sim.drive_until(STEPS, |s| s.now >= until).expect("time");
        assert!(sim.core(b).stats().acks_sent > 0, "acks were sent and lost");
        let early = sends
            .iter()
            .filter(|&&s| sim.completion(a, s).is_some())
            .count();
        if zombie_send == "1" {
            assert_eq!(early, 3, "zombies complete before their ack");
            assert_eq!(sim.core(a).zombies(), 3);
        } else {
            assert_eq!(early, 0, "MX_ZOMBIE_SEND=0: nothing completes unacked");
            assert_eq!(sim.core(a).zombies(), 0);
        }
        // Acks get through again (b re-acks the retransmission): done.
        sim.clear_filter();
        sim.drive_bounded(STEPS).expect("quiesce");
        for s in sends {
            assert_eq!(done(&sim, a, s).status, Status::Success);
        }
        assert_eq!(sim.core(a).zombies(), 0);
    }
}

#[test]
fn mx_imm_ack_acks_every_message_at_once() {
    for imm in ["0", "1"] {
        let mut sim = Sim::new(22, WireCfg::default());
        let a = sim.add_node(|_| {});
        let b = sim.add_node(env_tweak(&[("MX_IMM_ACK", imm)]));
        let ab = sim.connect(a, b);
        let acks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let seen = acks.clone();
        sim.set_filter(move |p| {
            if p.kind() == LIBACK && p.from == b {
                seen.set(seen.get() + 1);
            }
            false
        });
        for i in 0..3u64 {
            let r = sim.zbuf(8);
            let r = sim.core(b).irecv(r, i, !0, 0).expect("irecv");
            let s = sim.buf(vec![i as u8; 8]);
            sim.core(a).isend(ab, s, i, 0).expect("isend");
            sim.drive_until(STEPS, |s| s.completion(b, r).is_some())
                .expect("delivered");
            let before = acks.get();
            // One more round at the same instant: b emits what it decided.
            sim.step();
            let at_once = acks.get() - before;
            if imm == "1" {
                assert_eq!(at_once, 1, "message {i}: acked at once");
            } else {
                assert_eq!(at_once, 0, "message {i}: the ack waits (~1/64 s)");
            }
            sim.drive_bounded(STEPS).expect("quiesce");
        }
        let sent = sim.core(b).stats().acks_sent;
        if imm == "1" {
            assert_eq!(sent, 3, "one explicit ack per message");
        } else {
            assert!(sent >= 1, "the delayed ack still comes");
        }
        assert!(sim.core(a).is_quiescent());
    }
}

#[test]
fn mx_max_retries_bounds_the_resends() {
    let mut sim = Sim::new(23, WireCfg::default());
    let a = sim.add_node(env_tweak(&[("MX_MAX_RETRIES", "3")]));
    let b = sim.add_node(|_| {});
    assert_eq!(sim.core(a).config().resend_limit, 3);
    let ab = sim.connect(a, b);
    sim.nodes[b].vanished = true;
    let s = sim.buf(vec![1; 30_000]);
    let s = sim.core(a).isend(ab, s, 0, 0).expect("isend");
    let t0 = sim.now;
    sim.drive_bounded(STEPS).expect("quiesce");
    assert_eq!(done(&sim, a, s).status, Status::EndpointUnreachable);
    // 3 sends, 0.5 s apart: given up after ~1.5 s, not the default's
    // 1000 sends (~500 s).
    let t = sim.now - t0;
    assert!((1_000_000..=2_000_000).contains(&t), "gave up after {t} µs");
    assert_eq!(sim.core(a).stats().partners_failed, 1);
}

#[test]
fn mx_verbose_keeps_a_notice_per_partner_reset() {
    for verbose in ["0", "1"] {
        let mut sim = Sim::new(24, WireCfg::default());
        let a = sim.add_node(env_tweak(&[
            ("MX_VERBOSE", verbose),
            ("MX_MAX_RETRIES", "2"),
        ]));
        let b = sim.add_node(|_| {});
        let (peer, ep) = (sim.nodes[b].peer, sim.nodes[b].ep);
        let nic = sim.core(b).config().nic_id;
        let ab = sim.connect(a, b);
        // b goes away: the resend limit resets the partner.
        sim.nodes[b].vanished = true;
        let s = sim.buf(vec![1; 8]);
        sim.core(a).isend(ab, s, 0, 0).expect("isend");
        sim.drive_bounded(STEPS).expect("quiesce");
        // b comes back as a new instance and connects: another reset.
        sim.nodes[b].vanished = false;
        let new_session = sim.nodes[b].session ^ 0x0f0f_0f00;
        let mut cfg = Sim::test_config(peer, ep, new_session);
        cfg.seed = 5;
        sim.nodes[b].core = Core::new(cfg).expect("core");
        sim.nodes[b].session = new_session;
        sim.connect(a, b);
        sim.connect(b, a);
        // The first connect of the new instance after the reset is not a
        // restart (a forgot the old session); reconnecting b once more is.
        let new_session2 = new_session ^ 0x3300;
        let mut cfg = Sim::test_config(peer, ep, new_session2);
        cfg.seed = 6;
        sim.nodes[b].core = Core::new(cfg).expect("core");
        sim.nodes[b].session = new_session2;
        sim.connect(b, a);
        assert_eq!(sim.core(a).stats().partner_resets, 2);
        let notices: Vec<PartnerReset> =
            std::iter::from_fn(|| sim.core(a).take_partner_reset()).collect();
        if verbose == "0" {
            assert!(notices.is_empty(), "counted, not kept: {notices:?}");
            continue;
        }
        let want = |reason| PartnerReset {
            peer,
            endpoint: ep,
            nic_id: Some(nic),
            reason,
        };
        assert_eq!(
            notices,
            vec![want(ResetReason::Unreachable), want(ResetReason::Restarted)]
        );
        let line = crate::endpoint::verbose_reset_line(1, &notices[0]);
        assert!(
            line.contains("endpoint 1: partner 00:02:c9:00:00:01 endpoint 1 reset: unreachable"),
            "{line}"
        );
    }
}

/// An unexpected message's storage is reused by the next one: a shorter
/// message after a longer one must not carry the longer one's tail, and
/// each must keep its own bytes while both wait.
#[test]
fn reused_unexpected_storage_keeps_each_messages_own_bytes() {
    let (mut sim, a, b, ab, _) = pair();
    for round in 0..3u8 {
        for (i, len) in [(0u64, 9000usize), (1, 40), (2, 3)] {
            let s = sim.buf(pattern(len, round * 3 + i as u8));
            sim.core(a).isend(ab, s, i, 0).expect("isend");
        }
        sim.drive_bounded(STEPS).expect("quiesce");
        for (i, len) in [(2u64, 3usize), (0, 9000), (1, 40)] {
            let rb = sim.zbuf(10_000);
            let r = sim.core(b).irecv(rb, i, !0, 0).expect("irecv");
            sim.drive_bounded(STEPS).expect("quiesce");
            let c = done(&sim, b, r);
            assert_eq!(c.msg_length as usize, len);
            let bytes = c.buf.as_ref().expect("buf").bytes();
            assert_eq!(bytes[..len], pattern(len, round * 3 + i as u8)[..]);
            assert!(
                bytes[len..].iter().all(|&x| x == 0),
                "nothing past the message"
            );
        }
    }
    assert_eq!(sim.core(b).stats().unexpected, 9);
}
