//! The AF_PACKET NIC between network namespaces: every frame size and
//! payload kind byte for byte, padding, the EtherType filter, a windowed
//! load of 200k frames without loss, MTU checks per profile, and binding a
//! bridge. Skips (passing) only without root or `ip`; see `netns/mod.rs`.

mod netns;

use backend::nic::af_packet::{PacketNic, PacketOpts, RingVersion, ETHERTYPE_MXOE, ETH_ZLEN};
use backend::nic::{Nic, Payload};
use mx_proto::platform::local::MemfdPages;
use mx_proto::platform::SharedMem;
use mxoe_wire::WireProfile;
use netns::{Net, HOST_BRIDGE, HOST_IF};
use std::time::{Duration, Instant};

/// Test frame header: Ethernet head, MXoE peer index, kind, sequence.
const HDR: usize = 24;

fn header(dst: [u8; 6], src: [u8; 6], ethertype: u16, kind: u8, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HDR);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&src);
    h.extend_from_slice(&ethertype.to_be_bytes());
    h.extend_from_slice(&[0xff, 0xff, kind, 0, 0, 0]);
    h.extend_from_slice(&seq.to_be_bytes());
    h
}

fn seq_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[20..24].try_into().unwrap())
}

fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(131).wrapping_add(salt) as u8)
        .collect()
}

fn opts(ring: RingVersion) -> PacketOpts {
    PacketOpts {
        ring,
        // Smaller than the daemon's default: tests open several at once.
        block_size: 1 << 20,
        block_count: 8,
        ..PacketOpts::default()
    }
}

/// Opens a NIC on host `i`'s NIC interface.
fn nic(net: &Net, i: usize, ring: RingVersion) -> PacketNic {
    let h = net.host(i);
    PacketNic::open_in_netns(&h.ns, h.nic_iface(), &opts(ring)).expect("open PacketNic")
}

/// Receives until `n` frames came or `timeout` passed.
fn recv_n(nic: &mut PacketNic, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        nic.wait_readable(Some(left.min(Duration::from_millis(20))))
            .unwrap();
        nic.recv_batch(n - got.len(), &mut |f| got.push(f.to_vec()))
            .unwrap();
    }
    got
}

/// Whatever arrives within `quiet`.
fn drain(nic: &mut PacketNic, quiet: Duration) -> Vec<Vec<u8>> {
    recv_n(nic, usize::MAX, quiet)
}

#[test]
fn harness_namespaces_exist_then_vanish_even_on_panic() {
    let Some(net) = Net::builder().hosts(3).mtu(4144).build() else {
        return;
    };
    let names: Vec<String> = net
        .hosts()
        .iter()
        .map(|h| h.ns.clone())
        .chain([net.switch_ns().to_owned()])
        .collect();
    for n in &names {
        assert!(std::path::Path::new("/run/netns").join(n).exists(), "{n}");
    }
    // A process in a host namespace sees that host's interface and MTU.
    let out = net
        .command(1, "ip")
        .args(["-o", "link", "show", HOST_IF])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("mtu 4144"), "{text}");
    assert!(text.contains(&netns::mac_str(&net.host(1).mac)), "{text}");
    // A closure in a host namespace opens the host's eth0.
    let mac = net.run_in(2, || {
        PacketNic::open(HOST_IF, &opts(RingVersion::V2))
            .unwrap()
            .mac()
    });
    assert_eq!(mac, net.host(2).mac);
    drop(net);
    for n in &names {
        assert!(!std::path::Path::new("/run/netns").join(n).exists(), "{n}");
    }

    let mut kept = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = Net::new(2, 1500).unwrap();
        kept.push(net.host(0).ns.clone());
        kept.push(net.switch_ns().to_owned());
        panic!("intentional panic: the harness must still clean up");
    }));
    assert!(r.is_err());
    assert_eq!(kept.len(), 2);
    for n in &kept {
        assert!(!std::path::Path::new("/run/netns").join(n).exists(), "{n}");
    }
}

/// Sends frames of every length class with each payload kind from host 0
/// to host 1 and checks each byte for byte, padding included.
fn every_size_and_payload_kind(ring: RingVersion) {
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let mut a = nic(&net, 0, ring);
    let mut b = nic(&net, 1, ring);
    assert_eq!(a.mac(), net.host(0).mac);
    assert_eq!(a.mtu(), 9000);
    assert_eq!(a.ring_version(), ring);
    assert!(a.qdisc_bypass());
    let (am, bm) = (a.mac(), b.mac());
    let pages = MemfdPages::new(4).unwrap();

    let mut expect = Vec::new();
    let mut seq = 0u32;
    let max = 9000 + 14;
    let lens = [
        HDR,
        HDR + 1,
        40,
        59,
        60,
        61,
        64,
        100,
        1000,
        1514,
        4096,
        4144,
        8192,
        9000,
        max - 1,
        max,
    ];
    for &len in &lens {
        for kind in 0..3u8 {
            seq += 1;
            let h = header(bm, am, ETHERTYPE_MXOE, kind, seq);
            let body = pattern(len - HDR, seq);
            match kind {
                // Header only: the whole frame as "header".
                0 => {
                    let mut whole = h.clone();
                    whole.extend_from_slice(&body);
                    a.send(&whole, Payload::None).unwrap();
                }
                1 => a.send(&h, Payload::Bytes(&body)).unwrap(),
                _ => {
                    let off = 1 + (seq as usize % 512);
                    pages.write_at(off, &body).unwrap();
                    a.send(
                        &h,
                        Payload::Shared {
                            mem: &pages,
                            offset: off,
                            len: body.len(),
                        },
                    )
                    .unwrap();
                    // Zero copy: the kernel reads the pages at flush.
                    a.flush().unwrap();
                }
            }
            let mut f = h;
            f.extend_from_slice(&body);
            f.resize(f.len().max(ETH_ZLEN), 0);
            expect.push(f);
        }
    }
    a.flush().unwrap();

    // Refused: over the MTU, under an Ethernet header, outside the pages.
    let h = header(bm, am, ETHERTYPE_MXOE, 9, 0);
    let e = a
        .send(&h, Payload::Bytes(&vec![0; max - HDR + 1]))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = a.send(&h[..13], Payload::None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = a
        .send(
            &h,
            Payload::Shared {
                mem: &pages,
                offset: pages.len() - 10,
                len: 11,
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(a.queued(), 0);

    let got = recv_n(&mut b, expect.len(), Duration::from_secs(5));
    assert_eq!(got.len(), expect.len(), "frames lost");
    for (g, e) in got.iter().zip(&expect) {
        assert_eq!(g.len(), e.len(), "length of frame {}", seq_of(e));
        assert!(g == e, "content of frame {} ({} B)", seq_of(e), e.len());
    }
    // Nothing else arrives, and the sender does not hear itself.
    assert!(drain(&mut b, Duration::from_millis(30)).is_empty());
    assert!(drain(&mut a, Duration::from_millis(5)).is_empty());
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.tx_frames, expect.len() as u64);
    assert_eq!(sa.tx_errors, 0);
    assert_eq!(sb.rx_frames, expect.len() as u64);
    assert_eq!(sb.rx_kernel_drops, 0);
}

#[test]
fn every_size_and_payload_kind_v3() {
    every_size_and_payload_kind(RingVersion::V3);
}

#[test]
fn every_size_and_payload_kind_v2() {
    every_size_and_payload_kind(RingVersion::V2);
}

#[test]
fn other_ethertypes_are_not_received() {
    let Some(net) = Net::new(2, 1500) else {
        return;
    };
    let mut a = nic(&net, 0, RingVersion::V3);
    let mut b = nic(&net, 1, RingVersion::V3);
    let (am, bm) = (a.mac(), b.mac());
    for (i, et) in [0x0800u16, 0x88b5, 0x86dd, 0x86de, 0x86e0]
        .into_iter()
        .enumerate()
    {
        a.send(&header(bm, am, et, 0, i as u32), Payload::None)
            .unwrap();
    }
    a.send(&header(bm, am, ETHERTYPE_MXOE, 0, 99), Payload::None)
        .unwrap();
    a.flush().unwrap();
    assert_eq!(a.stats().tx_frames, 6);
    let got = recv_n(&mut b, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(seq_of(&got[0]), 99);
    assert!(drain(&mut b, Duration::from_millis(30)).is_empty());
}

/// 200k frames from host 0 to host 1 with at most `WINDOW` in flight,
/// host 1 acking every 64 with its cumulative count: none may be lost.
fn windowed_load(ring: RingVersion, total: u32, len: usize) {
    const BURST: u32 = 64;
    const WINDOW: u32 = 512;
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let mut a = nic(&net, 0, ring);
    let mut b = nic(&net, 1, ring);
    let (am, bm) = (a.mac(), b.mac());
    let pages = MemfdPages::new(4).unwrap();
    let body = pattern(len - HDR, 7);
    pages.write_at(0, &body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);

    let last = body[len - HDR - 1];
    let (secs, acked) = std::thread::scope(|s| {
        let rx = s.spawn(move || {
            let mut count = 0u32;
            let mut acked = 0u32;
            let mut bad = 0u32;
            while count < total && Instant::now() < deadline {
                b.wait_readable(Some(Duration::from_millis(10))).unwrap();
                b.recv_batch(1024, &mut |f| {
                    if f.len() != len || seq_of(f) != count || f[len - 1] != last {
                        bad += 1;
                    }
                    count += 1;
                })
                .unwrap();
                if count - acked >= BURST || (count == total && acked < total) {
                    b.send(&header(am, bm, ETHERTYPE_MXOE, 1, count), Payload::None)
                        .unwrap();
                    b.flush().unwrap();
                    acked = count;
                }
            }
            (count, bad, b.stats())
        });

        let t0 = Instant::now();
        let mut sent = 0u32;
        let mut acked = 0u32;
        let mut last_progress = Instant::now();
        while acked < total && Instant::now() < deadline {
            while sent < total && sent - acked + BURST <= WINDOW {
                for _ in 0..BURST.min(total - sent) {
                    let h = header(bm, am, ETHERTYPE_MXOE, 2, sent);
                    let p = if sent & 1 == 0 {
                        Payload::Bytes(&body)
                    } else {
                        Payload::Shared {
                            mem: &pages,
                            offset: 0,
                            len: body.len(),
                        }
                    };
                    a.send(&h, p).unwrap();
                    sent += 1;
                }
                a.flush().unwrap();
            }
            a.wait_readable(Some(Duration::from_millis(5))).unwrap();
            let before = acked;
            a.recv_batch(64, &mut |f| acked = acked.max(seq_of(f)))
                .unwrap();
            if acked > before {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > Duration::from_secs(3) {
                break; // stalled: a frame or an ack was lost
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let (count, bad, bstats) = rx.join().unwrap();
        let astats = a.stats();
        println!(
            "load {ring:?}: {count}/{total} frames of {len} B in {secs:.3} s = {:.0} frames/s \
             ({:.1} MB/s); acked {acked}; tx errors {}; rx kernel drops {}",
            f64::from(count) / secs,
            f64::from(count) * len as f64 / secs / 1e6,
            astats.tx_errors,
            bstats.rx_kernel_drops
        );
        assert_eq!(bad, 0, "frames out of order or corrupt");
        assert_eq!(count, total, "frames lost");
        assert_eq!(astats.tx_frames, u64::from(total));
        assert_eq!(astats.tx_errors, 0);
        assert_eq!(bstats.rx_kernel_drops, 0);
        (secs, acked)
    });
    assert_eq!(acked, total);
    assert!(secs < 25.0);
}

#[test]
fn load_200k_frames_windowed_without_loss() {
    windowed_load(RingVersion::V3, 200_000, 1024);
}

#[test]
fn load_200k_frames_windowed_without_loss_v2() {
    windowed_load(RingVersion::V2, 200_000, 1024);
}

#[test]
fn mtu_checks_per_profile() {
    let Some(mut net) = Net::new(1, 1500) else {
        return;
    };
    let n = nic(&net, 0, RingVersion::V2);
    assert_eq!(n.mtu(), 1500);
    let e = n.check_wire_profile(&WireProfile::MX).unwrap_err();
    assert!(
        e.starts_with("interface eth0 has MTU 1500 but the mx profile needs 4144"),
        "{e}"
    );
    let e = n
        .check_wire_profile(&WireProfile::OPEN_MX_9000)
        .unwrap_err();
    assert!(e.contains("open-mx 9000 profile needs 9000"), "{e}");
    assert!(n.check_wire_profile(&WireProfile::OPEN_MX_1500).is_ok());
    assert!(n.check_profile(1500).is_ok());
    assert!(n.check_profile(1501).is_err());
    drop(n);
    net.set_mtu(0, 4144).unwrap();
    let n = nic(&net, 0, RingVersion::V2);
    assert!(n.check_wire_profile(&WireProfile::MX).is_ok());
    assert!(n.check_wire_profile(&WireProfile::OPEN_MX_9000).is_err());

    // A missing interface is an error naming it.
    let e = match PacketNic::open_in_netns(&net.host(0).ns, "nosuch0", &opts(RingVersion::V2)) {
        Err(e) => e,
        Ok(_) => panic!("opened a missing interface"),
    };
    assert!(e.to_string().contains("nosuch0"), "{e}");
}

#[test]
fn bind_the_bridge_not_its_port() {
    let Some(net) = Net::builder().hosts(2).mtu(9000).host_bridge(true).build() else {
        return;
    };
    let h0 = net.host(0);
    let mut port = PacketNic::open_in_netns(&h0.ns, HOST_IF, &opts(RingVersion::V2)).unwrap();
    let mut br = nic(&net, 0, RingVersion::V2);
    let mut other = nic(&net, 1, RingVersion::V2);
    assert_eq!(br.iface(), HOST_BRIDGE);
    assert_eq!(br.mac(), h0.mac);
    assert_eq!(br.mtu(), 9000);
    let (bm, om) = (br.mac(), other.mac());

    for i in 0..10 {
        other
            .send(
                &header(bm, om, ETHERTYPE_MXOE, 0, i),
                Payload::Bytes(&[1; 8000]),
            )
            .unwrap();
    }
    other.flush().unwrap();
    let got = recv_n(&mut br, 10, Duration::from_secs(5));
    assert_eq!(got.len(), 10, "the bridge socket receives");
    assert_eq!(got[9].len(), HDR + 8000);
    assert!(
        drain(&mut port, Duration::from_millis(30)).is_empty(),
        "a socket on a bridge port sees nothing"
    );

    br.send(&header(om, bm, ETHERTYPE_MXOE, 0, 77), Payload::None)
        .unwrap();
    br.flush().unwrap();
    let got = recv_n(&mut other, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "sending on the bridge reaches the wire");
    assert_eq!(seq_of(&got[0]), 77);
    assert!(drain(&mut port, Duration::from_millis(10)).is_empty());
}

#[test]
fn netem_applies_or_says_why_not() {
    match netns::netem_available() {
        Ok(()) => {
            let Some(net) = Net::new(2, 1500) else {
                return;
            };
            net.netem(0, &netns::Netem::LOSSY).unwrap();
            net.netem_to(1, &netns::Netem::LOSSY).unwrap();
            let mut a = nic(&net, 0, RingVersion::V2);
            let mut b = nic(&net, 1, RingVersion::V2);
            let (am, bm) = (a.mac(), b.mac());
            for i in 0..200 {
                a.send(&header(bm, am, ETHERTYPE_MXOE, 0, i), Payload::None)
                    .unwrap();
            }
            a.flush().unwrap();
            let got = drain(&mut b, Duration::from_millis(300));
            println!("netem: {} of 200 frames arrived", got.len());
            assert!(got.len() > 100 && got.len() < 260, "{}", got.len());
            net.clear_netem(0);
            net.clear_netem(1);
        }
        Err(netns::NetemError::Unavailable(why)) => {
            println!("SKIP netem: {why}");
        }
        Err(e) => panic!("{e}"),
    }
}
