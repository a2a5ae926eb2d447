//! Real `mx-backend` processes in network namespaces, one per host, talking
//! MXoE over veth through a switch: `mx_pingpong -V` over every size class
//! in both wire profiles, our C ping-pong (gcc, `libmyriexpress.so`) across
//! hosts, hostname resolution by discovery.
//!
//! Needs root and `ip` (else every test prints `SKIP: ...` and passes), the
//! workspace's binaries in `target/<profile>/` (`cargo build --workspace
//! --all-targets`, as CI does) and gcc for the C program.

#[path = "../../libmx/tests/common/cbuild.rs"]
mod cbuild;
#[path = "netns/hosts.rs"]
mod hosts;
mod netns;

use cbuild::{CScratch, LINK_NAMES, PROGRAM_FLAGS};

use hosts::{board_field, info, pingpong, pingpong_env, Backend, BackendOpts, Profile, Scratch};
use netns::Net;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests take turns: a 2-core machine runs one pair of hosts well.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every message length of a sweep: powers of two from 0 to 8 MiB plus
/// each class boundary (tiny 32, small 128, one fragment, the rendezvous
/// threshold, the medium maximum), both sides of it.
fn sweep(frag_max: u32, medium_max: u32) -> Vec<u32> {
    let mut v = vec![0u32];
    v.extend((0..=23).map(|k| 1u32 << k));
    for b in [32, 128, frag_max, 32768, medium_max] {
        v.extend([b - 1, b, b + 1]);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Lengths of a sender's table (rows after the header).
fn table_lengths(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("   Length"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `mx_pingpong -V` from host 0 to host 1 over `lengths` (receiver on
/// endpoint `eid`); both must succeed and every length must be reported.
fn verified_run(b0: &Backend, b1: &Backend, dest: &str, eid: u8, lengths: &[u32], limit: Duration) {
    let dir = b0.sock.parent().expect("scratch");
    let list = dir.join(format!("lengths-{eid}"));
    let text: Vec<String> = lengths.iter().map(u32::to_string).collect();
    std::fs::write(&list, text.join("\n") + "\n").expect("lengths file");
    let e = eid.to_string();
    let mut rx = pingpong(&b1.sock, &["-e", &e, "-w"], limit);
    rx.wait_line("Starting pingpong receiver");
    let tx = pingpong(
        &b0.sock,
        &[
            "-d",
            dest,
            "-r",
            &e,
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
    assert!(
        out.status.success(),
        "sender: {out:?}\nbackend 0: {}\nbackend 1: {}",
        b0.log_text(),
        b1.log_text()
    );
    assert_eq!(table_lengths(&out.stdout), lengths, "{}", out.stdout);
    let r = rx.finish();
    assert!(r.status.success(), "receiver: {r:?}");
}

/// Two hosts with a backend each, then the full verified sweep by
/// hostname and a short one by NIC id.
fn every_size_class(profile: Profile) {
    let _s = serial();
    let Some(net) = Net::new(2, profile.link_mtu()) else {
        return;
    };
    let t0 = Instant::now();
    let dir = Scratch::new(&format!(
        "classes-{}-{}",
        profile.name(),
        profile.link_mtu()
    ));
    let opts = BackendOpts::new(profile);
    let b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);
    let i0 = info(&b0.sock, &[]);
    assert!(i0.status.success(), "{i0:?}");
    assert_eq!(board_field(&i0.stdout, "hostname"), "h0:0");
    assert!(
        board_field(&i0.stdout, "profile").starts_with(profile.name()),
        "{}",
        i0.stdout
    );
    // The peers file named the other host: it is known by hostname.
    assert!(i0.stdout.contains("h1:0"), "{}", i0.stdout);
    let frag: u32 = board_field(&i0.stdout, "frag max").parse().expect("frag");
    let medium: u32 = board_field(&i0.stdout, "medium max")
        .parse()
        .expect("medium");
    let lengths = sweep(frag, medium);
    verified_run(&b0, &b1, "h1:0", 1, &lengths, Duration::from_secs(60));
    // By NIC id (the MAC of host 1) and the other way round.
    let nic1 = format!("{:#x}", mac_u64(&net.host(1).mac));
    verified_run(
        &b0,
        &b1,
        &nic1,
        2,
        &[0, 33, 129, frag + 1, 100_000],
        Duration::from_secs(20),
    );
    verified_run(
        &b1,
        &b0,
        "h0:0",
        3,
        &[0, 33, frag + 1, 1 << 20],
        Duration::from_secs(20),
    );
    eprintln!(
        "{} MTU {}: {} lengths in {:?}",
        profile.name(),
        profile.link_mtu(),
        lengths.len(),
        t0.elapsed()
    );
}

/// Large messages staged through a pool of a stock Xen guest's size
/// (`MX_STAGE_LARGE=256`: 1 MiB, a window of two 256 KiB blocks) on both
/// hosts, across the wire: 4 and 16 MiB, byte-checked (`-V`) both ways,
/// with wire PULLs of blocks that must be staged first.
#[test]
fn sends_larger_than_the_pool_across_hosts() {
    for profile in [Profile::OpenMx(9000), Profile::OpenMx(1500)] {
        window_across_hosts(profile);
    }
}

fn window_across_hosts(profile: Profile) {
    let _s = serial();
    let Some(net) = Net::new(2, profile.link_mtu()) else {
        return;
    };
    let dir = Scratch::new(&format!("window-{}", profile.name()));
    let opts = BackendOpts::new(profile);
    let b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);
    let env = [("MX_STAGE_LARGE", "256")];
    let limit = Duration::from_secs(120);
    let list = dir.0.join("lengths-window");
    std::fs::write(&list, "524289\n4194304\n16777216\n").expect("lengths file");
    let mut rx = pingpong_env(&b1.sock, &["-e", "1", "-w"], &env, limit);
    rx.wait_line("Starting pingpong receiver");
    let tx = pingpong_env(
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
            "2",
            "-W",
            "1",
            "-w",
        ],
        &env,
        limit,
    );
    let out = tx.finish();
    assert!(
        out.status.success(),
        "sender: {out:?}\nbackend 0: {}\nbackend 1: {}",
        b0.log_text(),
        b1.log_text()
    );
    assert_eq!(
        table_lengths(&out.stdout),
        [524_289, 4 << 20, 16 << 20],
        "{}",
        out.stdout
    );
    let r = rx.finish();
    assert!(r.status.success(), "receiver: {r:?}");
}

fn mac_u64(mac: &[u8; 6]) -> u64 {
    mac.iter().fold(0, |a, b| (a << 8) | u64::from(*b))
}

#[test]
fn pingpong_every_size_class_open_mx_9000() {
    every_size_class(Profile::OpenMx(9000));
}

#[test]
fn pingpong_every_size_class_mx() {
    every_size_class(Profile::Mx);
}

#[test]
fn pingpong_every_size_class_open_mx_1500() {
    every_size_class(Profile::OpenMx(1500));
}

/// Without a peers file the mapper finds the other host and a host query
/// learns its name: `h1:0` resolves within the first announcements.
#[test]
fn discovery_resolves_hostnames() {
    let _s = serial();
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let dir = Scratch::new("discovery");
    let mut opts = BackendOpts::new(Profile::OpenMx(9000));
    opts.static_peers = false;
    let b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = info(&b0.sock, &[]).stdout;
        let b = info(&b1.sock, &[]).stdout;
        if a.contains("h1:0") && b.contains("h0:0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not discovered in 15 s:\n{a}\n{b}\n{}\n{}",
            b0.log_text(),
            b1.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    verified_run(
        &b0,
        &b1,
        "h1:0",
        1,
        &[0, 32, 129, 9000, 40_000],
        Duration::from_secs(20),
    );
}

/// Compile `crates/libmx/tests/c/<name>.c` against our headers and the
/// cdylib of this build (installed as `libmyriexpress.so` in `dir/lib`),
/// with `netns/c/remote_board.h` force-included (the programs check that
/// their destination is board 0, true only on one host).
fn build_c(name: &str, dir: &Path) -> Option<std::path::PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("SKIP: gcc is missing");
        return None;
    }
    let c = CScratch::with_lib(
        dir.to_path_buf(),
        &hosts::artifact("liblibmx.so"),
        LINK_NAMES,
    );
    let board_h = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/c/remote_board.h");
    let flags = [
        PROGRAM_FLAGS,
        &["-include", board_h.to_str().expect("UTF-8 path")],
    ]
    .concat();
    let exe = c.build(name, &flags);
    Some(exe)
}

/// Our C ping-pong (every size class to 4 MiB, byte-verified both ways,
/// the sender resolving `h1:0`) between processes on two hosts.
#[test]
fn c_pingpong_across_hosts() {
    let _s = serial();
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let dir = Scratch::new("c-pingpong");
    let Some(exe) = build_c("pingpong", &dir.0) else {
        return;
    };
    let opts = BackendOpts::new(Profile::OpenMx(9000));
    let b0 = Backend::start(&net, 0, &opts, &dir.0);
    let b1 = Backend::start(&net, 1, &opts, &dir.0);
    let cmd = |b: &Backend, args: &[&str]| {
        let mut c = Command::new(&exe);
        c.args(args)
            .env("LD_LIBRARY_PATH", dir.0.join("lib"))
            .env("MX_BACKEND_SOCKET", &b.sock)
            .env_remove("MX_ERRORS_ARE_FATAL")
            .env_remove("MX_DISABLE_SELF");
        c
    };
    let limit = Duration::from_secs(60);
    for (eid, mode) in [("1", "wait"), ("2", "test")] {
        let mut rx = hosts::Proc::spawn(cmd(&b1, &["recv", eid]), limit);
        rx.wait_line("ready");
        let tx = hosts::Proc::spawn(cmd(&b0, &["send", "h1:0", eid, mode]), limit).finish();
        assert!(
            tx.status.success() && tx.stdout.contains("pingpong-send: ok"),
            "sender: {tx:?}\n{}\n{}",
            b0.log_text(),
            b1.log_text()
        );
        assert!(tx.stdout.contains("  4194304 "), "{}", tx.stdout);
        let r = rx.finish();
        assert!(
            r.status.success() && r.stdout.contains("pingpong-recv: ok"),
            "receiver: {r:?}"
        );
    }
}
