//! Several backends in one process, each with its own socket and libmx
//! endpoints, joined by the simulated wire (`backend::nic::sim::Hub`):
//! discovery, connect, every size class in every wire profile, a lossy
//! wire, hostile frames, and a peer host restarting.

mod common;

use backend::nic::sim::{Faults, Hub};
use backend::nic::{Nic, Payload};
use backend::{BackendConfig, EmbeddedBackend, WireTiming};
use common::{exchange, mac, nic, pattern, size_classes, Ep, T};
use libmx::core::{EndpointAddr, Return, Status};
use mxoe_wire::WireProfile;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEY: u32 = 0x5eed_0001;

fn test_dir(tag: &str) -> PathBuf {
    common::test_dir(&format!("mh-{tag}"))
}

/// Timers shortened for tests: pulls re-requested every 100 ms, discovery
/// bursts 100 ms apart, host queries every 100 ms.
fn fast(pull_timeout: Duration) -> WireTiming {
    WireTiming {
        pull_resend: Duration::from_millis(100),
        pull_timeout,
        announce_burst: Duration::from_millis(100),
        host_query: Duration::from_millis(100),
        ..WireTiming::default()
    }
}

fn start(
    hub: &Hub,
    dir: &Path,
    name: &str,
    n: u8,
    profile: WireProfile,
    t: WireTiming,
) -> EmbeddedBackend {
    let mut cfg = BackendConfig::new();
    cfg.wire = t;
    common::start_on(hub, dir, name, n, profile, cfg)
}

fn open(be: &EmbeddedBackend, id: u8) -> Ep {
    common::open_at(be.socket(), &common::opts(id, KEY))
}

/// Wait until `ep`'s backend knows the peer `hostname`, a remote one with
/// `nic_id`.
fn wait_peer(ep: &Ep, hostname: &str, nic_id: u64) {
    let p = common::wait_peer(ep, hostname, Duration::from_secs(15));
    assert_eq!(p.nic_id, nic_id);
    assert!(!p.local);
}

/// Hosts `alpha` (NIC 1) and `beta` (NIC 2) on `hub` with `profile` and
/// timers `t`, endpoint 1 open on alpha and 2 on beta.
fn alpha_beta(
    hub: &Hub,
    dir: &Path,
    profile: WireProfile,
    t: WireTiming,
) -> (EmbeddedBackend, EmbeddedBackend, Ep, Ep) {
    let ha = start(hub, dir, "alpha", 1, profile, t);
    let hb = start(hub, dir, "beta", 2, profile, t);
    let (a, b) = (open(&ha, 1), open(&hb, 2));
    (ha, hb, a, b)
}

/// Until alpha's and beta's backends know each other.
fn meet(a: &Ep, ha: &EmbeddedBackend, b: &Ep, hb: &EmbeddedBackend) {
    wait_peer(a, "beta:0", hb.nic_id());
    wait_peer(b, "alpha:0", ha.nic_id());
}

fn sizes_over_the_wire(profile: WireProfile, tag: &str) {
    let dir = test_dir(tag);
    let hub = Hub::new(Faults::default());
    let (ha, hb, a, b) = alpha_beta(&hub, &dir, profile, fast(Duration::from_secs(30)));
    assert_eq!(ha.nic_id(), 0x0200_004d_5801);
    let board = a.frontend().board();
    assert_eq!(board.frag_max, profile.frag_max());
    assert_eq!(board.medium_max, profile.max_medium());
    assert_eq!(board.nic_id, ha.nic_id());
    meet(&a, &ha, &b, &hb);
    let a_to_b = a.connect(hb.nic_id(), 2, KEY, T).unwrap();
    let b_to_a = b.connect(ha.nic_id(), 1, KEY, T).unwrap();
    assert_eq!(
        a.connect(hb.nic_id(), 2, KEY + 1, T),
        Err(Return::BadConnectionKey)
    );
    // A connect to an endpoint id out of range is NACKed BAD_ENDPT.
    assert_eq!(
        a.connect(hb.nic_id(), 200, KEY, T),
        Err(Return::BadEndpointId)
    );
    // ... and to a closed one ENDPT_CLOSED.
    assert!(a.connect(hb.nic_id(), 7, KEY, T).is_err());

    let sizes = size_classes(profile.frag_max() as usize, &[1 << 20, 8 << 20]);
    for (i, &len) in sizes.iter().enumerate() {
        exchange(&a, &b, a_to_b, len, 0x100 + i as u64);
        exchange(&b, &a, b_to_a, len, 0x200 + i as u64);
    }
    // A synchronous send of 0 bytes takes the LARGE path and completes.
    let r = b.irecv(Vec::new(), 7, u64::MAX, 0).unwrap();
    let s = a.isend(a_to_b, Vec::new(), 7, 0, true).unwrap();
    assert_eq!(b.wait(r, T).unwrap().unwrap().status, Status::Success);
    assert_eq!(a.wait(s, T).unwrap().unwrap().status, Status::Success);
    // Truncation: a 100 KB message into a 50 KB buffer.
    let data = pattern(100_000, 3);
    let r = b.irecv(vec![0; 50_000], 8, u64::MAX, 0).unwrap();
    let s = a.isend(a_to_b, data.clone(), 8, 0, false).unwrap();
    let got = b.wait(r, T).unwrap().unwrap();
    assert_eq!(got.status, Status::Truncated);
    assert_eq!(got.xfer_length, 50_000);
    assert!(got.buf.as_deref() == Some(&data[..50_000]));
    let sent = a.wait(s, T).unwrap().unwrap();
    assert_eq!(sent.xfer_length, 50_000);

    // The traffic went over the wire, and a clean wire drops nothing.
    for be in [&ha, &hb] {
        assert!(nic(be, "rx pull reply") > 0);
        assert!(nic(be, "tx medium") > 0);
        assert_eq!(nic(be, "drop: unknown sender"), 0);
        // Late replies to a re-requested block are stray once the pull is
        // done; on a clean wire that happens only when a re-request timer
        // fired (a loaded machine).
        assert!(nic(be, "drop: pull reply stray") == 0 || nic(be, "pull requests resent") > 0);
        assert_eq!(nic(be, "drop: event ring full"), 0);
        assert_eq!(nic(be, "tx errors"), 0);
        assert_eq!(nic(be, "pulls failed"), 0);
    }
    let counters = a.frontend().counters(1).unwrap();
    let label = |l: &str| {
        let i = mx_proto::msg::control::COUNTER_LABELS
            .iter()
            .position(|x| *x == l)
            .unwrap();
        counters[i]
    };
    assert!(label("frames sent to the wire") > 0);
    assert!(label("frames received from the wire") > 0);
    assert!(label("pulls done") >= 4);
    drop((a, b));
    drop((ha, hb));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_size_class_mx_profile() {
    sizes_over_the_wire(WireProfile::MX, "mx");
}

#[test]
fn every_size_class_open_mx_9000() {
    sizes_over_the_wire(WireProfile::OPEN_MX_9000, "omx9000");
}

#[test]
fn every_size_class_open_mx_1500() {
    sizes_over_the_wire(WireProfile::OPEN_MX_1500, "omx1500");
}

/// A stream of `n` messages of mixed sizes `from` -> `to`, received with
/// match-any receives posted ahead: the i-th receive must get message i
/// (order per pair), byte-exact; nothing more arrives (exactly once).
fn stream(
    from: Ep,
    to: Ep,
    dest: EndpointAddr,
    n: usize,
    salt: u64,
) -> std::thread::JoinHandle<()> {
    const SIZES: [usize; 9] = [0, 17, 100, 3000, 9000, 20_000, 32_768, 200_000, 1_200_000];
    let len = move |i: usize| SIZES[(i * 7 + salt as usize) % SIZES.len()];
    let sender = {
        let from = from.clone();
        std::thread::spawn(move || {
            let reqs: Vec<_> = (0..n)
                .map(|i| {
                    from.isend(dest, pattern(len(i), salt + i as u64), i as u64, 0, false)
                        .unwrap()
                })
                .collect();
            for r in reqs {
                let done = from.wait(r, Some(Duration::from_secs(60))).unwrap();
                assert_eq!(done.expect("send completes").status, Status::Success);
            }
        })
    };
    std::thread::spawn(move || {
        let max = SIZES.iter().copied().max().unwrap();
        let mut posted = std::collections::VecDeque::new();
        let mut next_post = 0;
        for i in 0..n {
            while next_post < n && next_post < i + 6 {
                posted.push_back(to.irecv(vec![0; max], 0, 0, 0).unwrap());
                next_post += 1;
            }
            let r = posted.pop_front().unwrap();
            let got = to
                .wait(r, Some(Duration::from_secs(60)))
                .unwrap()
                .expect("receive completes");
            assert_eq!(got.status, Status::Success);
            assert_eq!(got.match_info, i as u64, "message {i} out of order");
            let want = pattern(len(i), salt + i as u64);
            assert_eq!(got.xfer_length as usize, want.len());
            assert!(
                got.buf.as_deref().map(|b| &b[..want.len()]) == Some(&want[..]),
                "message {i} garbled"
            );
        }
        // Exactly once: no duplicate shows up afterwards.
        let extra = to.irecv(vec![0; 16], 0, 0, 0).unwrap();
        assert!(to
            .wait(extra, Some(Duration::from_millis(1500)))
            .unwrap()
            .is_none());
        let _ = to.with_core(|c| c.cancel(extra));
        sender.join().unwrap();
    })
}

#[test]
fn lossy_wire_delivers_exactly_once_in_order() {
    let dir = test_dir("lossy");
    let hub = Hub::new(Faults::default());
    let p = WireProfile::OPEN_MX_9000;
    let (ha, hb, a, b) = alpha_beta(&hub, &dir, p, fast(Duration::from_secs(30)));
    hub.set_faults(Faults {
        loss_ppm: 50_000,
        dup_ppm: 20_000,
        reorder_ppm: 30_000,
        seed: std::env::var("MX_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0xfa17),
    });
    // Discovery and connect themselves run on the lossy wire.
    meet(&a, &ha, &b, &hb);
    let a_to_b = a.connect(hb.nic_id(), 2, KEY, T).unwrap();
    let b_to_a = b.connect(ha.nic_id(), 1, KEY, T).unwrap();
    let start = Instant::now();
    let t1 = stream(a.clone(), b.clone(), a_to_b, 36, 1);
    let t2 = stream(b.clone(), a.clone(), b_to_a, 36, 5);
    t1.join().unwrap();
    t2.join().unwrap();
    eprintln!("lossy streams took {:?}", start.elapsed());
    // Large messages went through pull retransmission; duplicates were ignored.
    let resent = nic(&ha, "pull requests resent") + nic(&hb, "pull requests resent");
    assert!(resent > 0, "no pull retransmission on a lossy wire?");
    let dups = nic(&ha, "drop: pull reply duplicate") + nic(&hb, "drop: pull reply duplicate");
    eprintln!("pull resends {resent}, duplicate replies {dups}");
    assert_eq!(nic(&ha, "pulls failed") + nic(&hb, "pulls failed"), 0);
    drop((a, b));
    drop((ha, hb));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_hosts_all_pairs() {
    let dir = test_dir("three");
    let hub = Hub::new(Faults::default());
    let p = WireProfile::OPEN_MX_9000;
    let hosts: Vec<_> = ["h0", "h1", "h2"]
        .iter()
        .enumerate()
        .map(|(i, n)| start(&hub, &dir, n, i as u8 + 1, p, fast(Duration::from_secs(30))))
        .collect();
    let eps: Vec<Ep> = hosts.iter().map(|h| open(h, 3)).collect();
    for (i, e) in eps.iter().enumerate() {
        for (j, h) in hosts.iter().enumerate() {
            if i != j {
                wait_peer(e, &format!("h{j}:0"), h.nic_id());
            }
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            if i == j {
                continue;
            }
            let dest = eps[i].connect(hosts[j].nic_id(), 3, KEY, T).unwrap();
            for (k, len) in [5usize, 5000, 100_000].into_iter().enumerate() {
                exchange(
                    &eps[i],
                    &eps[j],
                    dest,
                    len,
                    (i * 10 + j) as u64 * 100 + k as u64,
                );
            }
        }
    }
    drop(eps);
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Frame builders for the hostile wire.
fn head(buf: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], peer_index: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&0x86DFu16.to_be_bytes());
    buf.extend_from_slice(&peer_index.to_be_bytes());
}

fn tiny(dst: [u8; 6], src: [u8; 6], dst_ep: u8, session: u32, len: u16) -> Vec<u8> {
    let mut f = Vec::new();
    head(&mut f, dst, src, 0xffff);
    f.extend_from_slice(&[37, dst_ep, 0, 0]);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0; 14]); // checksum, seqnum, piggyack, match
    f.extend_from_slice(&session.to_be_bytes());
    f.extend_from_slice(&vec![0xab; usize::from(len)]);
    f.resize(f.len().max(60), 0);
    f
}

#[test]
fn hostile_frames_are_dropped_and_counted() {
    let dir = test_dir("hostile");
    let hub = Hub::new(Faults::default());
    let p = WireProfile::OPEN_MX_9000;
    let (ha, hb, a, b) = alpha_beta(&hub, &dir, p, fast(Duration::from_secs(30)));
    meet(&a, &ha, &b, &hb);
    let a_to_b = a.connect(hb.nic_id(), 2, KEY, T).unwrap();
    // Real traffic runs while the garbage flies.
    let traffic = stream(a.clone(), b.clone(), a_to_b, 30, 9);

    let evil_mac = mac(66);
    let mut evil = hub.attach(evil_mac, 9000);
    let b_mac = mac(2);
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Random frames: random lengths and bytes, half of them MXoE-typed.
    for i in 0..3000 {
        let len = (next() % 12_000) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if f.len() >= 17 {
            f[..6].copy_from_slice(if i % 3 == 0 { &[0xff; 6] } else { &b_mac });
            if i % 2 == 0 {
                f[12..14].copy_from_slice(&0x86DFu16.to_be_bytes());
                f[16] = (next() % 48) as u8;
            }
        }
        hub.inject(&f);
    }
    // Unknown sender (evil is not a peer yet): dropped, never NACKed.
    hub.inject(&tiny(b_mac, evil_mac, 2, 0xdead, 4));
    // Truncated: a TINY cut inside its header; a TINY claiming more than present.
    hub.inject(&tiny(b_mac, evil_mac, 2, 0, 4)[..30]);
    let mut lie = tiny(b_mac, evil_mac, 2, 0, 30);
    lie.truncate(60);
    hub.inject(&lie);
    // Oversized: a TINY of 33 bytes, a 70 KB frame.
    hub.inject(&tiny(b_mac, evil_mac, 2, 0, 33));
    let mut huge = tiny(b_mac, evil_mac, 2, 0, 4);
    huge.resize(70_000, 0x55);
    hub.inject(&huge);

    // Evil announces itself and answers beta's HOST_QUERY: now a known
    // peer of beta (an announcement alone gives no peer index).
    let mut ann = Vec::new();
    head(&mut ann, [0xff; 6], evil_mac, 0);
    ann.push(1);
    ann.resize(32, 0);
    ann.extend_from_slice(&0x0200u32.to_be_bytes());
    ann.extend_from_slice(&u32::from_be_bytes([0, 0x4d, 0x58, 66]).to_be_bytes());
    ann.extend_from_slice(&77u32.to_be_bytes());
    ann.resize(64, 0);
    evil.send(&ann, Payload::None).unwrap();
    evil.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.frontend().peer_by_nic_id(0x0200_004d_5842).is_err() {
        assert!(Instant::now() < deadline, "evil never discovered");
        let mut queries = Vec::new();
        evil.recv_batch(64, &mut |f| {
            if let Ok(mxoe_wire::Frame {
                packet: mxoe_wire::Packet::HostQuery(q),
                head,
            }) = mxoe_wire::decode(&p, f)
            {
                queries.push((head.src, q.magic));
            }
        })
        .unwrap();
        for (dst, magic) in queries {
            let reply = mxoe_wire::Frame {
                head: mxoe_wire::Head {
                    dst,
                    src: evil_mac,
                    peer_index: mxoe_wire::PeerIndex::UNKNOWN,
                },
                packet: mxoe_wire::Packet::HostReply(mxoe_wire::packet::HostReply {
                    src_dst_peer_index: mxoe_wire::PeerIndex::UNKNOWN,
                    magic,
                    hostname: mxoe_wire::Hostname::new(b"evil:0").unwrap(),
                }),
            };
            let mut buf = vec![0u8; reply.packet.buffer_len(&p)];
            let n = mxoe_wire::emit(&p, &reply, &mut buf).unwrap();
            evil.send(&buf[..n], Payload::None).unwrap();
            evil.flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Wrong session, closed endpoint, endpoint out of range: NACK_LIB each.
    hub.inject(&tiny(b_mac, evil_mac, 2, 0xdead, 4));
    hub.inject(&tiny(b_mac, evil_mac, 9, 0, 4));
    hub.inject(&tiny(b_mac, evil_mac, 250, 0, 4));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut nacks = Vec::new();
    while nacks.len() < 3 {
        evil.recv_batch(64, &mut |f| {
            if f.len() >= 32 && f[6..12] == b_mac && f[16] == 44 {
                nacks.push((f[17], f[19])); // (targeted endpoint, nack type)
            }
        })
        .unwrap();
        assert!(Instant::now() < deadline, "NACKs missing: {nacks:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    nacks.sort();
    assert_eq!(nacks, vec![(2, 3), (9, 2), (250, 1)]);

    traffic.join().unwrap();
    let hb_c = |l| nic(&hb, l);
    for l in [
        "drop: truncated",
        "drop: unknown type",
        "drop: length beyond frame",
        "drop: bad field value",
        "drop: unknown sender",
        "drop: bad session (nacked)",
        "drop: endpoint closed (nacked)",
        "drop: bad endpoint (nacked)",
    ] {
        assert!(hb_c(l) > 0, "counter {l:?} is 0");
    }
    eprintln!(
        "beta counters: {:?}",
        mx_proto::msg::control::NIC_COUNTER_LABELS
            .iter()
            .zip(hb.nic_counters().unwrap().values())
            .filter(|(_, v)| *v > 0)
            .collect::<Vec<_>>()
    );
    // The backends are still up and serving.
    exchange(&a, &b, a_to_b, 50_000, 4242);
    drop((a, b, evil));
    drop((ha, hb));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn peer_restart_errors_then_reconnect() {
    let dir = test_dir("restart");
    let hub = Hub::new(Faults::default());
    let p = WireProfile::OPEN_MX_9000;
    let t = fast(Duration::from_secs(2));
    let (ha, hb, a, b) = alpha_beta(&hub, &dir, p, t);
    meet(&a, &ha, &b, &hb);
    let a_to_b = a.connect(hb.nic_id(), 2, KEY, T).unwrap();
    let b_to_a = b.connect(ha.nic_id(), 1, KEY, T).unwrap();
    exchange(&a, &b, a_to_b, 1000, 1);
    exchange(&b, &a, b_to_a, 1000, 2);

    // beta announces a large message, alpha has not posted the receive:
    // the rendezvous waits in alpha's unexpected queue.
    let big = pattern(2 << 20, 3);
    let _pending = b.isend(b_to_a, big, 3, 0, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.with_core(|c| c.iprobe(3, u64::MAX)).unwrap().is_none() {
        assert!(Instant::now() < deadline, "rendezvous never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    // beta's host goes away.
    drop(b);
    drop(hb);
    // Pulling from a dead host fails after the pull timeout.
    let r = a.irecv(vec![0; 2 << 20], 3, u64::MAX, 0).unwrap();
    let got = a.wait(r, T).unwrap().expect("the pull gives up");
    assert_eq!(got.status, Status::EndpointUnreachable);
    assert!(nic(&ha, "pulls failed") >= 1);

    // beta comes back (same MAC, new backend), no endpoint open yet: a
    // synchronous send to the old address is NACKed ENDPT_CLOSED.
    let hb = start(&hub, &dir, "beta", 2, p, t);
    let deadline = Instant::now() + Duration::from_secs(5);
    while nic(&ha, "peer restarts seen") == 0 {
        assert!(Instant::now() < deadline, "restart not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = a.isend(a_to_b, pattern(100, 4), 4, 0, true).unwrap();
    let done = a.wait(s, T).unwrap().expect("send fails");
    assert_eq!(done.status, Status::EndpointClosed);
    // The endpoint reopens with a new session: BAD_SESSION.
    let b = open(&hb, 2);
    let s = a.isend(a_to_b, pattern(100, 5), 5, 0, true).unwrap();
    let done = a.wait(s, T).unwrap().expect("send fails");
    assert_eq!(done.status, Status::BadSession);
    // Reconnecting gives working addresses both ways. The survivor connects
    // first: the new instance adopts the receive seqnum alpha announced, and
    // alpha keeps expecting it when the reply reveals the new instance
    // (`libmx::core`, connect reply; the other order is the core's test).
    wait_peer(&b, "alpha:0", ha.nic_id());
    let a_to_b = a.connect(hb.nic_id(), 2, KEY, T).unwrap();
    let b_to_a = b.connect(ha.nic_id(), 1, KEY, T).unwrap();
    exchange(&a, &b, a_to_b, 300_000, 6);
    exchange(&b, &a, b_to_a, 300_000, 7);
    exchange(&a, &b, a_to_b, 10, 8);
    drop((a, b));
    drop((ha, hb));
    let _ = std::fs::remove_dir_all(&dir);
}
