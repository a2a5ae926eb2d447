//! Real `mx-backend` processes in two network namespaces joined by a lossy
//! switch made in user space ([`netns::lossy`]: 5% loss, 2% duplication,
//! some reordering, seeded): `mx_pingpong -V` over every size class to
//! 1 MiB completes byte-exact, large messages through the library's
//! retransmission and re-pulls.
//!
//! Needs root and `ip` (else `SKIP: ...`) and the workspace's binaries in
//! `target/<profile>/` (`cargo build --workspace --all-targets`).

#[path = "netns/hosts.rs"]
mod hosts;
mod netns;

use hosts::{pingpong, Backend, BackendOpts, Profile, Scratch};
use netns::lossy::{LossConfig, LossySwitch};
use netns::Net;
use std::time::{Duration, Instant};

/// Lengths of a sender's table (rows after the header).
fn table_lengths(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("   Length"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn pingpong_verified_through_lossy_switch() {
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let t0 = Instant::now();
    let dir = Scratch::new("lossy");
    let switch = LossySwitch::start(&net, LossConfig::lossy(0x5eed_1055_d00d_f00d));
    let opts = BackendOpts::new(Profile::OpenMx(9000));
    let b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);

    let lengths: [u32; 11] = [
        0,
        32,
        33,
        128,
        129,
        8192,
        8193,
        32768,
        32769,
        262_144,
        1 << 20,
    ];
    let list = dir.0.join("lengths");
    let text: Vec<String> = lengths.iter().map(u32::to_string).collect();
    std::fs::write(&list, text.join("\n") + "\n").expect("lengths file");
    let limit = Duration::from_secs(50);
    let mut rx = pingpong(&b1.sock, &["-e", "1", "-w"], limit);
    rx.wait_line("Starting pingpong receiver");
    let tx = pingpong(
        &b0.sock,
        &[
            "-d",
            "h1:0",
            "-r",
            "1",
            "-L",
            list.to_str().expect("utf-8 path"),
            "-V",
            "-N",
            "3",
            "-W",
            "1",
            "-w",
        ],
        limit,
    );
    let out = tx.finish();
    let counts = switch.counts();
    assert!(
        out.status.success(),
        "sender: {out:?}\nswitch: {counts:?}\nbackend 0: {}\nbackend 1: {}",
        b0.log_text(),
        b1.log_text()
    );
    assert_eq!(table_lengths(&out.stdout), lengths, "{}", out.stdout);
    let r = rx.finish();
    assert!(r.status.success(), "receiver: {r:?}");

    let counts = switch.stop();
    eprintln!(
        "{}\nlossy switch: {counts:?} in {:?}",
        out.stdout,
        t0.elapsed()
    );
    assert!(counts.dropped > 0, "{counts:?}");
    assert!(counts.duplicated > 0, "{counts:?}");
    assert!(counts.reordered > 0, "{counts:?}");
    assert!(counts.forwarded > 0, "{counts:?}");
}
