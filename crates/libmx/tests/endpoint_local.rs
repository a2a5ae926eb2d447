//! Two libmx endpoints through an embedded backend on the local platform:
//! connect, then messages of every size class, byte-checked, both ways.

mod common;

use backend::BackendConfig;
use common::{connect_pair, exchange_data, exchange_within, pattern, size_classes, Host};
use libmx::core::Status;
use libmx::endpoint::OpenOptions;
use std::time::Duration;

#[test]
fn every_size_class_both_ways() {
    every_size_class(0);
}

/// The Xen path (large messages staged through a pool the backend reaches)
/// on the local platform, through the real backend.
#[test]
fn every_size_class_staged_through_a_pool() {
    every_size_class(2100);
}

fn every_size_class(stage_pages: usize) {
    let h = Host::new(&format!("libmx-ep-{stage_pages}"), BackendConfig::new());
    let key = 0x12345;
    let open = |id| {
        h.open(&OpenOptions {
            stage_pages,
            ..common::opts(id, key)
        })
    };
    let a = open(1);
    let b = open(2);
    let nic = a.frontend().board().nic_id;
    let t = Some(Duration::from_secs(10));
    let (a_to_b, b_to_a) = connect_pair(&a, &b, key, t);
    assert_eq!(
        a.connect(nic, 2, key + 1, t),
        Err(libmx::core::Return::BadConnectionKey)
    );

    let sizes = size_classes(8192, &[4 << 20]);
    for (i, &len) in sizes.iter().enumerate() {
        for (from, to, dest) in [(&a, &b, a_to_b), (&b, &a, b_to_a)] {
            let data = pattern(len, i as u64 * 7 + len as u64);
            exchange_data(from, to, dest, &data, 0x1000 + i as u64, t);
        }
    }
    let large: u64 = sizes
        .iter()
        .filter(|&&l| l > 32768)
        .map(|&l| l as u64)
        .sum();
    for ep in [&a, &b] {
        let staged = ep.with_core(|c| c.stats().bytes_staged);
        let want = if stage_pages > 0 { 2 * large } else { 0 };
        assert_eq!(staged, want, "each large message staged in and out once");
        // Unstaged, each large receive is copied by the receiver itself,
        // straight from the sender process (both are ours: ptrace allowed).
        let (direct, failed) =
            ep.with_core(|c| (c.stats().pulls_direct, c.stats().pulls_direct_failed));
        let large_recvs = sizes.iter().filter(|&&l| l > 32768).count() as u64;
        let want = if stage_pages > 0 { 0 } else { large_recvs };
        assert_eq!((direct, failed), (want, 0), "direct pulls");
    }
    // A synchronous send of 0 bytes completes once matched.
    let r = b.irecv(Vec::new(), 7, u64::MAX, 0).unwrap();
    let s = a.isend(a_to_b, Vec::new(), 7, 0, true).unwrap();
    assert_eq!(b.wait(r, t).unwrap().unwrap().status, Status::Success);
    assert_eq!(a.wait(s, t).unwrap().unwrap().status, Status::Success);
    // wakeup ends a blocked wait with no result.
    let r = b.irecv(vec![0; 4], 99, u64::MAX, 0).unwrap();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait(r, None));
    std::thread::sleep(Duration::from_millis(100));
    b.wakeup();
    assert!(waiter.join().unwrap().unwrap().is_none());
}

/// `MX_DISABLE_SHMEM` asked by one endpoint only: its traffic with another
/// endpoint of the host takes the network path in both directions (the
/// other side's replies and its pulls of large messages too), while two
/// endpoints that did not ask keep the intra-node shortcut.
#[test]
fn disable_shmem_on_one_side_covers_both_directions_only_for_that_pair() {
    use mx_proto::msg::control::{COUNTER_LABELS, NIC_COUNTER_LABELS};
    let h = Host::new("libmx-noshm", BackendConfig::new());
    let key = 0x777;
    let open = |id, disable_shmem| {
        h.open(&OpenOptions {
            disable_shmem,
            ..common::opts(id, key)
        })
    };
    let b = open(2, false);
    let c = open(3, false);
    let fe = b.frontend();
    assert!(
        fe.nic_counters(0).unwrap().is_empty(),
        "no wire side before anyone asks for it"
    );
    let a = open(1, true);
    let t = Some(Duration::from_secs(10));
    let (a_b, b_a) = connect_pair(&a, &b, key, t);
    let (b_c, c_b) = connect_pair(&b, &c, key, t);
    let ep_counter = |id: u8, label: &str| {
        let i = COUNTER_LABELS.iter().position(|l| *l == label).unwrap();
        fe.counters(id).unwrap()[i]
    };
    let nic_counter = |label: &str| {
        let i = NIC_COUNTER_LABELS.iter().position(|l| *l == label).unwrap();
        fe.nic_counters(0).unwrap()[i]
    };
    let exchange = |from, to, dest, len: usize, m: u64| exchange_within(from, to, dest, len, m, t);
    let sizes = [0usize, 32, 33, 128, 129, 8192, 8193, 32768, 32769, 1 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        exchange(&a, &b, a_b, len, 0x100 + i as u64);
        exchange(&b, &a, b_a, len, 0x200 + i as u64);
    }
    let b_wire = ep_counter(2, "frames sent to the wire");
    assert!(ep_counter(1, "frames sent to the wire") > 0);
    assert!(b_wire > 0, "b's replies to a took the network path");
    assert!(ep_counter(1, "frames received from the wire") > 0);
    assert!(nic_counter("rx pull reply") > 0, "both directions' pulls");
    let looped = nic_counter("loopback frames");
    assert!(looped > 0);
    // b and c never asked: the shortcut, not a single frame.
    for (i, &len) in sizes.iter().enumerate() {
        exchange(&b, &c, b_c, len, 0x300 + i as u64);
        exchange(&c, &b, c_b, len, 0x400 + i as u64);
    }
    // Acks to a may still be on their way; nothing of b<->c is.
    assert_eq!(ep_counter(3, "frames sent to the wire"), 0);
    assert_eq!(ep_counter(3, "frames received from the wire"), 0);
    assert!(ep_counter(3, "medium frags sent") > 0);
}

/// Sends many times larger than a stock Xen pool (256 pages, 1 MiB: a
/// window of two 256 KiB blocks in its send half), staged through a
/// window the backend asks the sender to refill, through the intra-node
/// shortcut and through the network path (`MX_DISABLE_SHMEM`), one way
/// at a time and crossing.
#[test]
fn sends_larger_than_the_pool_go_through_a_window() {
    use mx_proto::msg::control::COUNTER_LABELS;
    for disable_shmem in [false, true] {
        let h = Host::new(
            &format!("libmx-window-{disable_shmem}"),
            BackendConfig::new(),
        );
        let key = 0x5151;
        let open = |id| {
            h.open(&OpenOptions {
                stage_pages: 256,
                disable_shmem,
                ..common::opts(id, key)
            })
        };
        let a = open(1);
        let b = open(2);
        let t = Some(Duration::from_secs(30));
        let (a_b, b_a) = connect_pair(&a, &b, key, t);
        for (i, len) in [4usize << 20, 16 << 20, (512 << 10) + 1]
            .into_iter()
            .enumerate()
        {
            for (from, to, dest) in [(&a, &b, a_b), (&b, &a, b_a)] {
                let m = 0x10 + i as u64;
                let data = pattern(len, m * 3 + len as u64);
                exchange_data(from, to, dest, &data, m, t);
            }
        }
        // Crossing: both send 4 MiB to each other before either waits.
        let len = 4 << 20;
        let (da, db) = (pattern(len, 0xa), pattern(len, 0xb));
        let ra = a.irecv(vec![0; len], 0x77, u64::MAX, 0).unwrap();
        let rb = b.irecv(vec![0; len], 0x77, u64::MAX, 0).unwrap();
        let sa = a.isend(a_b, da.clone(), 0x77, 0, false).unwrap();
        let sb = b.isend(b_a, db.clone(), 0x77, 0, false).unwrap();
        let got_b = b.wait(rb, t).unwrap().expect("b receives");
        let got_a = a.wait(ra, t).unwrap().expect("a receives");
        assert!(got_b.buf.as_deref() == Some(&da[..]), "a to b crossing");
        assert!(got_a.buf.as_deref() == Some(&db[..]), "b to a crossing");
        assert_eq!(a.wait(sa, t).unwrap().unwrap().status, Status::Success);
        assert_eq!(b.wait(sb, t).unwrap().unwrap().status, Status::Success);
        let asked = COUNTER_LABELS
            .iter()
            .position(|l| *l == "window blocks asked to stage")
            .unwrap();
        let refused = COUNTER_LABELS
            .iter()
            .position(|l| *l == "window stage answers refused")
            .unwrap();
        for (id, ep) in [(1u8, &a), (2, &b)] {
            let c = a.frontend().counters(id).unwrap();
            let staged = ep.with_core(|c| c.stats().window_stages);
            assert!(c[asked] > 0, "endpoint {id}: blocks asked");
            assert_eq!(staged, c[asked], "endpoint {id}: every request answered");
            assert_eq!(c[refused], 0, "endpoint {id}");
        }
    }
}
