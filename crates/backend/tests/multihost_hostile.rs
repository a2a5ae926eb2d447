//! Bad input from the wire, between real `mx-backend` processes in network
//! namespaces: a raw AF_PACKET socket in a third host sends malformed,
//! truncated, oversized, wrong-session, wrong-endpoint and random frames at
//! host 0's backend while `mx_pingpong -V` runs between hosts 0 and 1. The
//! backend stays up, counts every kind (its NIC counters, logged at
//! SIGTERM), and the real traffic completes byte-exact.
//!
//! Needs root and `ip` (else `SKIP: ...`) and the workspace's binaries in
//! `target/<profile>/` (`cargo build --workspace --all-targets`).

#[path = "netns/hosts.rs"]
mod hosts;
mod netns;

use backend::nic::af_packet::{PacketNic, PacketOpts};
use backend::nic::{Nic, Payload};
use hosts::{counter, pingpong, Backend, BackendOpts, Profile, Scratch};
use netns::Net;
use std::time::{Duration, Instant};

fn head(buf: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], peer_index: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&0x86DFu16.to_be_bytes());
    buf.extend_from_slice(&peer_index.to_be_bytes());
}

/// A TINY frame to endpoint `dst_ep` with `session` and `len` bytes.
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
fn hostile_frames_while_pingpong_runs() {
    let Some(net) = Net::new(3, 9000) else {
        return;
    };
    let dir = Scratch::new("hostile");
    // The static peers name all three hosts: host 2 is a known peer, so
    // its frames reach the destination checks (and their NACKs).
    let opts = BackendOpts::new(Profile::OpenMx(9000));
    let mut b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);
    let target = net.host(0).mac;
    let evil_mac = net.host(2).mac;
    let stranger = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    let mut evil = net
        .run_in(2, || PacketNic::open("eth0", &PacketOpts::default()))
        .expect("raw socket in host 2");

    // Real traffic: host 0 receives, host 1 sends, every byte checked.
    let mut rx = pingpong(&b0.sock, &["-e", "1", "-w"], Duration::from_secs(60));
    rx.wait_line("Starting pingpong receiver");
    let tx = pingpong(
        &b1.sock,
        &[
            "-d", "h0:0", "-r", "1", "-V", "-S", "0", "-E", "4194305", "-M", "2", "-N", "20", "-W",
            "2", "-w",
        ],
        Duration::from_secs(60),
    );

    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut send = |f: &[u8]| {
        evil.send(f, Payload::None).expect("send");
        evil.flush().expect("flush");
    };
    let t0 = Instant::now();
    for i in 0..3000 {
        // Random frames (up to the MTU), half of them MXoE-typed.
        let len = 14 + (next() % 9000) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        f[..6].copy_from_slice(if i % 3 == 0 { &[0xff; 6] } else { &target });
        f[6..12].copy_from_slice(&evil_mac);
        if i % 2 == 0 {
            f[12..14].copy_from_slice(&0x86DFu16.to_be_bytes());
            f[16] = (next() % 48) as u8;
        }
        send(&f);
        if i % 300 == 0 {
            // Unknown sender; truncated; a length beyond the frame;
            // oversized TINY; wrong session; closed endpoint; endpoint
            // out of range.
            send(&tiny(target, stranger, 1, 0xdead, 4));
            send(&tiny(target, evil_mac, 1, 0, 4)[..30]);
            let mut lie = tiny(target, evil_mac, 1, 0, 30);
            lie.truncate(60);
            send(&lie);
            send(&tiny(target, evil_mac, 1, 0, 33));
            send(&tiny(target, evil_mac, 1, 0xdead, 4));
            send(&tiny(target, evil_mac, 9, 0, 4));
            send(&tiny(target, evil_mac, 250, 0, 4));
        }
    }
    eprintln!("3000 random + 70 crafted frames in {:?}", t0.elapsed());
    let out = tx.finish();
    assert!(out.status.success(), "sender: {out:?}\n{}", b0.log_text());
    assert!(out.stdout.contains("  4194304 "), "{}", out.stdout);
    let r = rx.finish();
    assert!(r.status.success(), "receiver: {r:?}");
    assert!(b0.running(), "backend 0 died: {}", b0.log_text());

    let c = b0.stop_counters();
    eprintln!("host 0 counters: {c:?}");
    // No "drop: truncated" here: Ethernet pads every frame to 60 bytes,
    // so a header cut short arrives zero-padded (counted as a length
    // beyond the frame or a bad field); the unit tests cover truncation.
    for l in [
        "drop: unknown type",
        "drop: length beyond frame",
        "drop: bad field value",
        "drop: unknown sender",
        "drop: bad session (nacked)",
        "drop: endpoint closed (nacked)",
        "drop: bad endpoint (nacked)",
    ] {
        assert!(counter(&c, l) > 0, "counter {l:?} is 0: {c:?}");
    }
    assert!(counter(&c, "tx nack lib") >= 30, "{c:?}");
}
