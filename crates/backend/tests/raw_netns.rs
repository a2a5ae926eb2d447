//! The raw endpoint on real interfaces: two backends embedded in this
//! process, each on the AF_PACKET NIC of its own network namespace (veth
//! through a switch), with discovery on. Their raw endpoints exchange
//! whole frames byte for byte (the kernel path: padding to 60 bytes, the
//! largest frame of the MTU), and each raw endpoint sees the other
//! backend's mapper announcements while discovery goes on learning the
//! peer and its hostname. Skips (passing) only without root or `ip`; see
//! `netns/mod.rs`.

mod netns;
mod raw_guest;

use backend::counters::RawCounter;
use backend::nic::af_packet::{PacketNic, PacketOpts};
use backend::{spawn_local_with_nic, BackendConfig, EmbeddedBackend, WireTiming};
use frontend::Frontend;
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::{NicId, WireProfile};
use netns::Net;
use raw_guest::{body, raw_frame, Got, RawGuest};
use std::time::{Duration, Instant};

const MTU: u32 = 1500;

fn start(net: &Net, i: usize, dir: &std::path::Path) -> EmbeddedBackend {
    let h = net.host(i);
    let opts = PacketOpts {
        // Smaller than the daemon's default: two NICs in one test.
        block_size: 1 << 20,
        block_count: 8,
        ..PacketOpts::default()
    };
    let nic = PacketNic::open_in_netns(&h.ns, h.nic_iface(), &opts).expect("open PacketNic");
    let mut cfg = BackendConfig::new();
    cfg.hostname = format!("h{i}:0");
    cfg.set_profile(WireProfile::open_mx(MTU).unwrap());
    cfg.discovery = true;
    cfg.wire = WireTiming {
        announce_burst: Duration::from_millis(100),
        host_query: Duration::from_millis(200),
        ..WireTiming::default()
    };
    spawn_local_with_nic(cfg, dir.join(format!("h{i}.sock")), Box::new(nic)).expect("backend")
}

/// The next frame that is not a mapper announcement; announcements seen
/// meanwhile are collected.
fn next_frame(g: &mut RawGuest, announcements: &mut Vec<MapperAnnounce>) -> Vec<u8> {
    loop {
        match g.next() {
            Got::Frame(f) => match MapperAnnounce::decode(&f) {
                Ok(a) if a.nic_id.raw() != 0 => announcements.push(a),
                _ => return f,
            },
            Got::Done(..) => panic!("a completion where a frame was expected"),
        }
    }
}

#[test]
fn raw_frames_over_veth_next_to_discovery() {
    let Some(net) = Net::new(2, MTU) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mx-raw-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (b0, b1) = (start(&net, 0, &dir), start(&net, 1, &dir));
    let f0 = Frontend::<LocalGuest>::attach(&LocalTarget::new(b0.socket())).unwrap();
    let f1 = Frontend::<LocalGuest>::attach(&LocalTarget::new(b1.socket())).unwrap();
    let (mut r0, mut r1) = (RawGuest::open(&f0), RawGuest::open(&f1));
    assert_eq!(r0.ch.max_frame(), MTU + 14);
    let (mac0, mac1) = (net.host(0).mac, net.host(1).mac);
    assert_eq!(b0.nic_id(), NicId::from_mac(mac0).raw());
    let mut seen1 = Vec::new();
    let mut seen0 = Vec::new();

    for (i, len) in [17usize, 60, 61, 500, (MTU + 14) as usize]
        .into_iter()
        .enumerate()
    {
        let f = raw_frame(mac1, &body(len - 17, i as u8));
        let slot = r0.send(&f);
        // Our announcements may come in before the completion.
        let done = loop {
            match r0.next() {
                Got::Done(s, st) => break (s, st),
                Got::Frame(a) => seen0.push(MapperAnnounce::decode(&a).expect("an announcement")),
            }
        };
        assert_eq!(
            done,
            (slot, mx_proto::msg::raw_endpoint::RawSendStatus::Sent)
        );
        let got = next_frame(&mut r1, &mut seen1);
        let mut want = f.clone();
        want[6..12].copy_from_slice(&mac0);
        if want.len() < 60 {
            want.resize(60, 0);
        }
        assert_eq!(got, want, "frame of {len} bytes over veth");
    }
    // And back, broadcast.
    let f = raw_frame([0xff; 6], &body(200, 77));
    let slot = r1.send(&f);
    let done = loop {
        match r1.next() {
            Got::Done(s, _) => break s,
            Got::Frame(a) => seen1.push(MapperAnnounce::decode(&a).expect("an announcement")),
        }
    };
    assert_eq!(done, slot);
    let got = next_frame(&mut r0, &mut seen0);
    assert_eq!(&got[6..12], &mac1);
    assert_eq!(&got[12..], &f[12..]);

    // The backends' own discovery went on: each raw endpoint sees the
    // other's announcements, and each backend learns the other with its
    // hostname (host query and reply).
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen1.is_empty() || seen0.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no announcement reached a raw endpoint"
        );
        for (g, seen) in [(&mut r0, &mut seen0), (&mut r1, &mut seen1)] {
            if let Some(Got::Frame(a)) = g.poll() {
                seen.push(MapperAnnounce::decode(&a).expect("an announcement"));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen1.iter().all(|a| a.nic_id == NicId::from_mac(mac0)));
    assert!(seen0.iter().all(|a| a.nic_id == NicId::from_mac(mac1)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while f0.peer_by_hostname("h1:0").is_err() || f1.peer_by_hostname("h0:0").is_err() {
        assert!(
            Instant::now() < deadline,
            "discovery did not name the peers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b0.raw_counters().get(RawCounter::Sent), 5);
    // Our five frames and every announcement h1's raw endpoint showed us.
    assert!(b1.raw_counters().get(RawCounter::Received) >= 5 + seen1.len() as u64);
    drop((r0, r1));
    drop((b0, b1));
    let _ = std::fs::remove_dir_all(&dir);
}
