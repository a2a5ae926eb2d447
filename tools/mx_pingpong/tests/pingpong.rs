//! mx_pingpong as a user runs it: a receiver process and a sender process
//! against an embedded backend, the output format, exit codes, errors, and
//! the one-command demo.

mod common;

use common::{lengths, parse_table, serial, Fixture, Proc};

/// Every size-class boundary: tiny (<= 32), small (<= 128), medium
/// (<= 8192 per fragment, <= 32768 eager), rendezvous above.
const CLASS_BOUNDARIES: [u32; 11] = [0, 1, 32, 33, 128, 129, 8192, 8193, 32768, 32769, 1 << 20];

fn receiver_line(p: &mut Proc, host: &str, eid: u8) {
    assert_eq!(
        p.line(),
        format!("Starting pingpong receiver on {host}, endpoint={eid}")
    );
}

#[test]
fn verified_across_every_size_class() {
    let _s = serial();
    let fx = Fixture::new("classes");
    let (_, host) = fx.board();
    let list = fx.dir.join("lengths");
    let text: Vec<String> = CLASS_BOUNDARIES.iter().map(u32::to_string).collect();
    std::fs::write(&list, text.join("\n") + "\n").unwrap();

    let mut rx = fx.pingpong(&["-e", "2"]);
    receiver_line(&mut rx, &host, 2);
    let tx = fx.pingpong(&[
        "-d",
        &host,
        "-r",
        "2",
        "-L",
        list.to_str().unwrap(),
        "-V",
        "-N",
        "20",
        "-W",
        "2",
    ]);
    let out = tx.finish();
    assert!(out.status.success(), "sender: {out:?}");
    let t = parse_table(&out.stdout);
    assert_eq!(t.host, host);
    assert_eq!(t.iterations, 20);
    assert_eq!(lengths(&t), CLASS_BOUNDARIES);
    let r = rx.finish();
    assert!(r.status.success(), "receiver: {r:?}");
}

#[test]
fn generated_lengths_issend_blocking_by_nic_id() {
    let _s = serial();
    let fx = Fixture::new("issend");
    let (nic, host) = fx.board();
    let mut rx = fx.pingpong(&["-e", "3", "-w"]);
    receiver_line(&mut rx, &host, 3);
    let out = fx
        .pingpong(&[
            "-d",
            &format!("{nic:#x}"),
            "-r",
            "3",
            "-S",
            "0",
            "-E",
            "70000",
            "-M",
            "4",
            "-R",
            "-w",
            "-V",
            "-N",
            "10",
            "-W",
            "1",
        ])
        .finish();
    assert!(out.status.success(), "sender: {out:?}");
    let t = parse_table(&out.stdout);
    assert_eq!(
        lengths(&t),
        [0, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536]
    );
    assert!(rx.finish().status.success());
}

#[test]
fn default_run_and_arithmetic_steps() {
    let _s = serial();
    let fx = Fixture::new("default");
    let (_, host) = fx.board();
    let mut rx = fx.pingpong(&[]);
    receiver_line(&mut rx, &host, 1);
    // Defaults: -S 0 -E 128 -I 1 -N 1000; a shorter run with -I 9.
    let out = fx
        .pingpong(&["-d", host.trim_end_matches(":0"), "-I", "9", "-N", "200"])
        .finish();
    assert!(out.status.success(), "sender: {out:?}");
    let t = parse_table(&out.stdout);
    assert_eq!(t.iterations, 200);
    assert_eq!(lengths(&t), (0..128).step_by(9).collect::<Vec<u32>>());
    assert!(rx.finish().status.success());
}

#[test]
fn receiver_keeps_serving_with_s() {
    let _s = serial();
    let fx = Fixture::new("serve");
    let (_, host) = fx.board();
    let mut rx = fx.pingpong(&["-s", "-e", "4", "-w"]);
    receiver_line(&mut rx, &host, 4);
    for _ in 0..3 {
        let out = fx
            .pingpong(&[
                "-d", &host, "-r", "4", "-E", "40", "-M", "2", "-N", "20", "-V",
            ])
            .finish();
        assert!(out.status.success(), "sender: {out:?}");
        assert_eq!(lengths(&parse_table(&out.stdout)), [0, 1, 2, 4, 8, 16, 32]);
    }
    assert!(rx.running(), "a -s receiver keeps running");
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let fx = Fixture::new("errors");
    let (_, host) = fx.board();
    let run = |args: &[&str]| {
        let out = fx.pingpong(args).finish();
        assert!(!out.status.success(), "{args:?} should fail: {out:?}");
        out.stderr
    };
    // No receiver at that endpoint.
    let e = run(&["-d", &host, "-r", "9", "-N", "1"]);
    assert!(e.contains("cannot connect"), "{e}");
    // Unknown host.
    let e = run(&["-d", "nosuchhost:0"]);
    assert!(e.contains("nosuchhost:0 not found"), "{e}");
    // Bad options.
    let e = run(&["-d", &host, "-E", "0x40000001"]);
    assert!(e.contains("1 GiB"), "{e}");
    let e = run(&["-d", &host, "-M", "0"]);
    assert!(e.contains("multiplier"), "{e}");
    let e = run(&["-d", &host, "-N", "0"]);
    assert!(e.contains("iterations"), "{e}");
    let e = run(&["-b", "3"]);
    assert!(e.contains("board 3 not found"), "{e}");
    // Wrong key.
    let _s = serial();
    let mut rx = fx.pingpong(&["-e", "5", "-f", "0x1111"]);
    receiver_line(&mut rx, &host, 5);
    let e = run(&["-d", &host, "-r", "5", "-f", "0x2222"]);
    assert!(e.contains("BadConnectionKey"), "{e}");
    // The same endpoint twice.
    let e = run(&["-e", "5"]);
    assert!(e.contains("busy"), "{e}");
}

#[test]
fn no_backend_says_how_to_start_one() {
    let sock = std::env::temp_dir().join(format!("mx_pingpong-none-{}.sock", std::process::id()));
    let out = Proc::spawn(env!("CARGO_BIN_EXE_mx_pingpong"), &[], Some(&sock)).finish();
    assert!(!out.status.success());
    assert!(out.stderr.contains("mx-backend --socket"), "{}", out.stderr);
    let out = Proc::spawn(env!("CARGO_BIN_EXE_mx_info"), &[], Some(&sock)).finish();
    assert!(!out.status.success());
    assert!(out.stderr.contains("mx-backend --socket"), "{}", out.stderr);
}

#[test]
fn demo_completes() {
    let _s = serial();
    let out = Proc::spawn(
        env!("CARGO_BIN_EXE_mx_pingpong"),
        &["--demo", "-E", "262145", "-N", "100", "-V"],
        None,
    )
    .finish();
    assert!(out.status.success(), "demo: {out:?}");
    assert!(
        out.stdout.starts_with("Starting pingpong receiver on "),
        "{}",
        out.stdout
    );
    let t = parse_table(&out.stdout);
    let want: Vec<u32> = std::iter::once(0).chain((0..=18).map(|s| 1 << s)).collect();
    assert_eq!(lengths(&t), want);
}

#[test]
fn mx_info_shows_board_peers_and_counters() {
    let fx = Fixture::new("info");
    let (nic, host) = fx.board();
    let out = fx.info(&[]);
    assert!(out.status.success(), "{out:?}");
    let b = nic.to_be_bytes();
    let mac = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    );
    for want in [
        format!("  nic id         {mac}"),
        format!("  hostname       {host}"),
        "  profile        open-mx (1)".to_string(),
        "  MTU            9000".to_string(),
        "  max endpoints  32".to_string(),
        format!("      0  {mac}  {host}  (this host)"),
        "Endpoints open: none".to_string(),
        "NIC: none (local platform only)".to_string(),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == want),
            "{want:?} in {}",
            out.stdout
        );
    }
    // An open endpoint's counters, labelled.
    let ep = libmx::endpoint::Endpoint::<Vec<u8>>::open(
        Some(&mx_proto::platform::local::LocalTarget::new(&fx.sock)),
        &libmx::endpoint::OpenOptions {
            endpoint: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    let out = fx.info(&["-e", "7"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("Endpoint 7 counters:"));
    assert!(
        out.stdout.lines().any(|l| l == "Endpoints open: 7"),
        "{}",
        out.stdout
    );
    for label in mx_proto::msg::control::COUNTER_LABELS {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(label)),
            "{label} in {}",
            out.stdout
        );
    }
    drop(ep);
    let out = fx.info(&["-e", "8"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("endpoint 8 is not open"),
        "{}",
        out.stderr
    );
}
