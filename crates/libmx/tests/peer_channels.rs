//! Peer channels between two libmx endpoints of one host, through an
//! embedded backend on the local platform: they come up on their own,
//! carry every size class byte-exact in MX order, keep the backend out of
//! the data path, and fall back to the backend when refused or gone.

mod common;

use backend::BackendConfig;
use common::{exchange, pattern, size_classes, Host, T};
use libmx::core::{EndpointAddr, Status};
use libmx::endpoint::{Endpoint, OpenOptions};
use mx_proto::msg::control::COUNTER_LABELS;
use mx_proto::platform::local::LocalTarget;
use std::time::{Duration, Instant};

const KEY: u32 = 0x5150;

fn host(name: &str, cfg: BackendConfig) -> Host {
    Host::new(&format!("peerch-{name}"), cfg)
}

fn open(h: &Host, id: u8, peer_channels: bool) -> Endpoint<Vec<u8>> {
    h.open(&OpenOptions {
        peer_channels,
        ..common::opts(id, KEY)
    })
}

fn connect_pair(a: &Endpoint<Vec<u8>>, b: &Endpoint<Vec<u8>>) -> (EndpointAddr, EndpointAddr) {
    common::connect_pair(a, b, KEY, T)
}

/// Ping-pong until the channel carries traffic both ways (it comes up
/// after the first messages, which cross the backend).
fn warm_up(a: &Endpoint<Vec<u8>>, b: &Endpoint<Vec<u8>>, ab: EndpointAddr, ba: EndpointAddr) {
    let t0 = Instant::now();
    let mut i = 0;
    while a.peer_channels_up() == 0 || b.peer_channels_up() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no channel came up");
        exchange(a, b, ab, 8, 1_000_000 + i);
        exchange(b, a, ba, 8, 2_000_000 + i);
        i += 1;
    }
}

fn backend_counter(ep: &Endpoint<Vec<u8>>, label: &str) -> u64 {
    let id = ep.with_core(|c| c.config().endpoint);
    let i = COUNTER_LABELS.iter().position(|&l| l == label).unwrap();
    ep.frontend().counters(id).unwrap()[i]
}

#[test]
fn every_size_class_both_ways_with_the_backend_out_of_the_data_path() {
    let h = host("sizes", BackendConfig::new());
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let (ab, ba) = connect_pair(&a, &b);
    warm_up(&a, &b, ab, ba);
    let tiny_before = backend_counter(&a, "tiny sent") + backend_counter(&b, "tiny sent");
    let medium_before =
        backend_counter(&a, "medium frags sent") + backend_counter(&b, "medium frags sent");
    let both = |label: &str| backend_counter(&a, label) + backend_counter(&b, label);
    let large_before = [
        both("rndv sent"),
        both("pulls done"),
        both("pulls copied by the puller"),
    ];
    let sent_before = a.peer_stats().sent + b.peer_stats().sent;
    let sizes = size_classes(8192, &[4 << 20]);
    for (i, &len) in sizes.iter().enumerate() {
        exchange(&a, &b, ab, len, 0x1000 + i as u64);
        exchange(&b, &a, ba, len, 0x2000 + i as u64);
    }
    // Tiny, small and medium messages no longer reach the backend.
    assert_eq!(
        backend_counter(&a, "tiny sent") + backend_counter(&b, "tiny sent"),
        tiny_before,
        "tiny messages crossed the backend"
    );
    assert_eq!(
        backend_counter(&a, "medium frags sent") + backend_counter(&b, "medium frags sent"),
        medium_before,
        "medium fragments crossed the backend"
    );
    // Large ones neither: the rendezvous and the pull take the channel,
    // the receiver copies from the sender's process with its grant.
    assert_eq!(
        [
            both("rndv sent"),
            both("pulls done"),
            both("pulls copied by the puller")
        ],
        large_before,
        "a rendezvous or a pull crossed the backend"
    );
    let (sa, sb) = (a.peer_stats(), b.peer_stats());
    assert!(sa.sent + sb.sent > sent_before + 2 * sizes.len() as u64);
    assert!(sa.received > 0 && sb.received > 0);
    assert_eq!((sa.lies, sb.lies), (0, 0));
    assert_eq!((sa.up, sb.up), (1, 1), "one channel per pair, both ends");
}

/// A stream far deeper than the channel (64 medium messages of 32 KiB in
/// flight: 512 fragments against 32 data slots), the receiver in another
/// thread blocking in `wait`: the sender holds fragments back until the
/// receiver releases room (its release rings the sender's doorbell when
/// the sender sleeps), so no fragment crosses the backend and every byte
/// arrives in order.
#[test]
fn a_stream_deeper_than_the_channel_waits_for_room_not_the_backend() {
    let h = host("deep", BackendConfig::new());
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let (ab, ba) = connect_pair(&a, &b);
    warm_up(&a, &b, ab, ba);
    let medium_before =
        backend_counter(&a, "medium frags sent") + backend_counter(&b, "medium frags sent");
    let (n, len, depth) = (400usize, 32 * 1024, 64usize);
    // The receiver takes nothing while the first window goes out: the
    // channel fills for certain, and what does not fit is held.
    b.disable_progression(false);
    let mut inflight: std::collections::VecDeque<_> = (0..depth)
        .map(|i| {
            a.isend(ab, pattern(len, i as u64), i as u64, 0, false)
                .unwrap()
        })
        .collect();
    let held = a.peer_stats().held;
    b.reenable_progression();
    let rx = {
        let b = b.clone();
        std::thread::spawn(move || {
            let post = |i: usize| (i, b.irecv(vec![0; len], i as u64, u64::MAX, 0).unwrap());
            let mut posted: std::collections::VecDeque<_> = (0..depth).map(post).collect();
            let mut next = posted.len();
            while let Some((i, r)) = posted.pop_front() {
                let got = b.wait(r, T).unwrap().expect("receive completes");
                assert_eq!(got.status, Status::Success);
                assert!(
                    got.buf.as_deref() == Some(&pattern(len, i as u64)[..]),
                    "message {i}"
                );
                if next < n {
                    posted.push_back(post(next));
                    next += 1;
                }
            }
        })
    };
    for i in depth..n {
        let s = inflight.pop_front().unwrap();
        let done = a.wait(s, T).unwrap().expect("send completes");
        assert_eq!(done.status, Status::Success);
        inflight.push_back(
            a.isend(ab, pattern(len, i as u64), i as u64, 0, false)
                .unwrap(),
        );
    }
    for s in inflight {
        let done = a.wait(s, T).unwrap().expect("send completes");
        assert_eq!(done.status, Status::Success);
    }
    rx.join().unwrap();
    let st = a.peer_stats();
    assert_eq!(
        backend_counter(&a, "medium frags sent") + backend_counter(&b, "medium frags sent"),
        medium_before,
        "medium fragments crossed the backend ({st:?})"
    );
    assert_eq!(st.overflow, 0);
    assert!(
        held > 0,
        "the first window did not fill the channel: {st:?}"
    );
}

/// Both sides stream at once from the first message on, while the channel
/// comes up underneath: each side receives the other's messages in the
/// order they were sent (MX order per pair), every byte right.
#[test]
fn crossing_streams_keep_mx_order_across_the_switch() {
    let h = host("cross", BackendConfig::new());
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let (ab, ba) = connect_pair(&a, &b);
    let n = 600usize;
    let len_of = |i: usize| [8usize, 100, 5000, 20000, 70000][i % 5];
    let run = |me: Endpoint<Vec<u8>>, dest: EndpointAddr, salt: u64| {
        std::thread::spawn(move || {
            // Every receive matches every message: the i-th posted must get
            // the peer's i-th send.
            let recvs: Vec<_> = (0..n)
                .map(|_| me.irecv(vec![0; 70000], 0, 0, 0).unwrap())
                .collect();
            let sends: Vec<_> = (0..n)
                .map(|i| {
                    me.isend(
                        dest,
                        pattern(len_of(i), salt + i as u64),
                        i as u64,
                        0,
                        false,
                    )
                    .unwrap()
                })
                .collect();
            let peer_salt = if salt == 0 { 1 << 32 } else { 0 };
            for (i, r) in recvs.into_iter().enumerate() {
                let got = me.wait(r, T).unwrap().expect("receive completes");
                assert_eq!(got.status, Status::Success);
                assert_eq!(got.match_info, i as u64, "message {i} out of order");
                let want = pattern(len_of(i), peer_salt + i as u64);
                assert_eq!(&got.buf.as_deref().unwrap()[..want.len()], &want[..]);
            }
            for s in sends {
                assert_eq!(me.wait(s, T).unwrap().unwrap().status, Status::Success);
            }
            me
        })
    };
    let ta = run(a, ab, 0);
    let tb = run(b, ba, 1 << 32);
    let a = ta.join().unwrap();
    let b = tb.join().unwrap();
    assert!(
        a.peer_stats().sent > 0 && b.peer_stats().sent > 0,
        "the channel carried part of it"
    );
}

/// A library with peer channels off declines the offer; a backend that
/// allows none refuses it: either way everything still flows, through the
/// backend.
#[test]
fn refused_channels_leave_traffic_on_the_backend() {
    let h = host("off", BackendConfig::new());
    let a = open(&h, 1, true);
    let b = open(&h, 2, false);
    let (ab, ba) = connect_pair(&a, &b);
    for i in 0..50 {
        exchange(&a, &b, ab, 64, i);
        exchange(&b, &a, ba, 20000, 100 + i);
    }
    assert_eq!(a.peer_channels_up() + b.peer_channels_up(), 0);
    assert_eq!(a.peer_stats().sent + b.peer_stats().sent, 0);

    let mut cfg = BackendConfig::new();
    cfg.peer_channels_per_endpoint = 0;
    let h = host("limit", cfg);
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let (ab, ba) = connect_pair(&a, &b);
    for i in 0..50 {
        exchange(&a, &b, ab, 64, i);
        exchange(&b, &a, ba, 64, 100 + i);
    }
    assert_eq!(a.peer_channels_up() + b.peer_channels_up(), 0);
    assert!(a.peer_stats().refused + b.peer_stats().refused > 0);
}

/// Many peers at once: one endpoint talks to five others, each through a
/// channel of its own, blocking waits (`spin` 0) on every side.
#[test]
fn many_peers_blocking() {
    let h = host("many", BackendConfig::new());
    let open_blocking = |id| {
        h.open(&OpenOptions {
            spin: Duration::ZERO,
            ..common::opts(id, KEY)
        })
    };
    let hub = open_blocking(1);
    let others: Vec<_> = (2..7).map(open_blocking).collect();
    let mut handles = Vec::new();
    for o in others {
        let (to_o, to_hub) = connect_pair(&hub, &o);
        let o2 = o.clone();
        handles.push((
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let r = o2.irecv(vec![0; 256], i, u64::MAX, 0).unwrap();
                    let got = o2.wait(r, T).unwrap().unwrap();
                    assert_eq!(got.buf.as_deref().unwrap(), &pattern(256, i)[..]);
                    let s = o2.isend(to_hub, pattern(64, i), i, 0, false).unwrap();
                    o2.wait(s, T).unwrap().unwrap();
                }
                o2
            }),
            to_o,
        ));
    }
    for i in 0..200u64 {
        for (_, to_o) in &handles {
            let s = hub.isend(*to_o, pattern(256, i), i, 0, false).unwrap();
            hub.wait(s, T).unwrap().unwrap();
        }
        for _ in &handles {
            let r = hub.irecv(vec![0; 64], i, u64::MAX, 0).unwrap();
            let got = hub.wait(r, T).unwrap().unwrap();
            assert_eq!(got.buf.as_deref().unwrap(), &pattern(64, i)[..]);
        }
    }
    let mut others = Vec::new();
    for (t, _) in handles {
        others.push(t.join().unwrap());
    }
    assert_eq!(hub.peer_channels_up(), 5);
    assert!(others.iter().all(|o| o.peer_channels_up() == 1));
}

/// The peer closes its endpoint while we still send to it: the channel is
/// dropped, our sends to it end with an error status instead of hanging,
/// and our traffic with another peer keeps flowing.
#[test]
fn a_peer_that_goes_away_fails_our_sends_and_spares_the_others() {
    let h = host("gone", BackendConfig::new());
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let c = open(&h, 3, true);
    let (ab, ba) = connect_pair(&a, &b);
    let (ac, ca) = connect_pair(&a, &c);
    warm_up(&a, &b, ab, ba);
    warm_up(&a, &c, ac, ca);
    assert_eq!(a.peer_channels_up(), 2);
    drop(b);
    let t0 = Instant::now();
    // Synchronous sends into the void (eager ones may complete before
    // their ack, as MX allows): each ends, and not with success (the
    // backend NACKs ENDPT_CLOSED once the channel is gone).
    let mut failed = 0;
    for i in 0..20 {
        let s = a.isend(ab, pattern(100, i), i, 0, true).unwrap();
        let done = a.wait(s, Some(Duration::from_secs(30))).unwrap();
        if done.is_some_and(|d| d.status != Status::Success) {
            failed += 1;
        }
        // Meanwhile the other peer is served as ever.
        exchange(&a, &c, ac, 1000, 500 + i);
    }
    assert!(failed > 0, "sends to a closed peer must fail");
    assert!(t0.elapsed() < Duration::from_secs(60));
    let t0 = Instant::now();
    while a.peer_channels_up() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the dead channel lingers"
        );
        a.progress();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(a.peer_stats().down >= 1);
}

/// The child side of [`a_peer_killed_mid_stream_is_cleaned_up`]: run only
/// when that test re-executes this binary with the backend's socket.
#[test]
fn child_streams_until_killed() {
    let Ok(sock) = std::env::var("MX_PEERCH_CHILD_SOCK") else {
        return;
    };
    let target = LocalTarget::new(sock);
    let me = Endpoint::<Vec<u8>>::open(
        Some(&target),
        &OpenOptions {
            endpoint: Some(3),
            key: KEY,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let nic = me.frontend().board().nic_id;
    let to = me.connect(nic, 1, KEY, T).unwrap();
    let t0 = Instant::now();
    let mut i = 0u64;
    // Bounded: the parent kills us long before.
    while t0.elapsed() < Duration::from_secs(60) {
        let s = me.isend(to, pattern(3000, i), i, 0, false).unwrap();
        let _ = me.wait(s, T);
        i += 1;
    }
}

/// A peer process SIGKILLed while it streams to us through a channel: the
/// channel is dropped (its doorbell hangs up), our synchronous sends to it
/// fail instead of hanging, and our traffic with another peer goes on.
#[test]
fn a_peer_killed_mid_stream_is_cleaned_up() {
    let h = host("kill", BackendConfig::new());
    let a = open(&h, 1, true);
    let c = open(&h, 2, true);
    let (ac, ca) = connect_pair(&a, &c);
    warm_up(&a, &c, ac, ca);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_streams_until_killed", "--nocapture"])
        .env("MX_PEERCH_CHILD_SOCK", h.be.socket())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Take the child's stream (mask 0: any message) until its channel is up.
    let t0 = Instant::now();
    let mut got = 0;
    while a.peer_channels_up() < 2 || got < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no stream from the child"
        );
        let r = a.irecv(vec![0; 3000], 0, 0, 0).unwrap();
        if let Some(done) = a.wait(r, T).unwrap() {
            assert_eq!(done.status, Status::Success);
            got += 1;
        }
    }
    let nic = a.frontend().board().nic_id;
    let to_child = a.connect(nic, 3, KEY, T).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    while a.peer_channels_up() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the dead channel lingers"
        );
        a.progress();
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = a.isend(to_child, pattern(10, 1), 1, 0, true).unwrap();
    let done = a.wait(s, Some(Duration::from_secs(30))).unwrap();
    assert!(
        done.is_some_and(|d| d.status != Status::Success),
        "a send to a killed peer must fail"
    );
    // Tags the child never used: its unexpected messages stay unmatched.
    exchange(&a, &c, ac, 20000, 1 << 40);
    exchange(&c, &a, ca, 20000, (1 << 40) + 1);
}
