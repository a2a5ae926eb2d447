//! Our mx_pingpong against the classic C mx_pingpong's protocol, both
//! ways: `crates/libmx/tests/c/classic_pingpong.c` (our own C program that
//! speaks the classic wire protocol: the 108-byte parameter struct, the
//! receiver connecting back to the address in it, `N + W + 2` pings and
//! `N + W + 1` pongs per length) is compiled with gcc against our headers,
//! linked against the libmx cdylib built for this test run, and run
//! against our Rust receiver and sender on an embedded backend. Needs gcc.

#[path = "../../../crates/libmx/tests/common/cbuild.rs"]
mod cbuild;
mod common;

use cbuild::{CScratch, LINK_NAMES, PROGRAM_FLAGS};
use common::{lengths, parse_table, serial, Fixture, Output, Proc};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

/// The C program, built into the fixture's directory, and the library
/// directory it runs on.
fn build(fx: &Fixture) -> (PathBuf, CScratch) {
    let c = CScratch::within(fx.dir.clone(), LINK_NAMES);
    let exe = c.build("classic_pingpong", PROGRAM_FLAGS);
    (exe, c)
}

/// The C program in role `args`, through the fixture's backend.
fn spawn_c(exe: &Path, lib: &CScratch, fx: &Fixture, args: &[&str]) -> Proc {
    let mut cmd = lib.command(exe);
    cmd.args(args).env("MX_BACKEND_SOCKET", &fx.sock);
    Proc::spawn_cmd(cmd, DEADLINE)
}

/// Pings and pongs of a run: per length, `N + W + 2` and `N + W + 1`.
fn schedule(lengths: usize, n: u64, w: u64) -> (u64, u64) {
    let l = lengths as u64;
    (l * (n + w + 2), l * (n + w + 1))
}

/// Our sender's flags, the parameter line the classic receiver prints,
/// the lengths, N and W.
type SenderRun = (&'static [&'static str], &'static str, Vec<u32>, u64, u64);

/// The classic sender's start, end, inc, mult, N, W, flags and how many
/// lengths that makes.
type ClassicSenderRun = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    &'static str,
    usize,
);

fn assert_sender_ok(out: &Output) {
    assert!(
        out.status.success(),
        "our sender failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// The classic receiver's role against our sender: the parameters it
/// reads are what our sender's flags mean, the address in them is our
/// sender's, and the message counts are the classic schedule.
#[test]
fn our_sender_pairs_with_a_classic_receiver() {
    let _s = serial();
    let fx = Fixture::new("classic-rx");
    let (_, host) = fx.board();
    let (exe, lib) = build(&fx);
    let runs: [SenderRun; 3] = [
        (
            &["-S", "0", "-E", "70000", "-M", "4", "-N", "20", "-W", "3", "-V"],
            "params: start 0 end 70000 inc 0 mult 4.000000 warmup 3 iter 20 verify 1 wait 0 rndv 0",
            vec![0, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
            20,
            3,
        ),
        (
            &["-S", "1", "-E", "200", "-I", "33", "-N", "5", "-W", "1", "-w", "-R", "-V"],
            "params: start 1 end 200 inc 33 mult 1.000000 warmup 1 iter 5 verify 1 wait 1 rndv 1",
            vec![1, 34, 67, 100, 133, 166, 199],
            5,
            1,
        ),
        (
            &["-E", "300000", "-M", "1.5", "-S", "100000", "-N", "3", "-W", "0"],
            "params: start 100000 end 300000 inc 0 mult 1.500000 warmup 0 iter 3 verify 0 wait 0 rndv 0",
            vec![100_000, 150_000, 225_000],
            3,
            0,
        ),
    ];
    for (i, (args, params, want, n, w)) in runs.iter().enumerate() {
        let eid = (10 + i).to_string();
        let mut rx = spawn_c(&exe, &lib, &fx, &["recv", &eid]);
        rx.wait_line("ready");
        let mut all = vec!["-d", host.as_str(), "-r", eid.as_str()];
        all.extend_from_slice(args);
        let out = fx.pingpong(&all).finish();
        assert_sender_ok(&out);
        assert_eq!(&lengths(&parse_table(&out.stdout)), want, "{args:?}");
        let Output {
            status,
            stdout,
            stderr,
        } = rx.finish();
        assert!(
            status.success(),
            "classic receiver ({args:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.lines().any(|l| l == *params),
            "{params:?} in {stdout}"
        );
        let (pings, pongs) = schedule(want.len(), *n, *w);
        let done = format!(
            "classic-recv: ok ({} lengths, {pings} pings, {pongs} pongs)",
            want.len()
        );
        assert!(stdout.contains(&done), "{done:?} in {stdout}");
    }
}

/// The classic sender's role against our receiver: it reads the classic
/// struct, connects back to the address in it, follows the sender's
/// -w/-R/-V, and answers exactly the classic schedule.
#[test]
fn our_receiver_pairs_with_a_classic_sender() {
    let _s = serial();
    let fx = Fixture::new("classic-tx");
    let (_, host) = fx.board();
    let (exe, lib) = build(&fx);
    let runs: [ClassicSenderRun; 3] = [
        ("0", "70000", "0", "4", 20, 3, "V", 10),
        ("1", "200", "33", "1", 5, 1, "VwR", 7),
        ("100000", "300000", "0", "1.5", 3, 0, "w", 3),
    ];
    for (i, (start, end, inc, mult, n, w, flags, count)) in runs.iter().enumerate() {
        let eid = (20 + i).to_string();
        let rx = fx.pingpong(&["-e", &eid]);
        let mut rx = rx;
        assert_eq!(
            rx.line(),
            format!("Starting pingpong receiver on {host}, endpoint={eid}")
        );
        let (ns, ws) = (n.to_string(), w.to_string());
        let tx = spawn_c(
            &exe,
            &lib,
            &fx,
            &["send", &host, &eid, start, end, inc, mult, &ns, &ws, flags],
        );
        let Output {
            status,
            stdout,
            stderr,
        } = tx.finish();
        assert!(
            status.success(),
            "classic sender ({flags}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let (pings, pongs) = schedule(*count, *n, *w);
        let done = format!("classic-send: ok ({count} lengths, {pings} pings, {pongs} pongs)");
        assert!(stdout.contains(&done), "{done:?} in {stdout}");
        let r = rx.finish();
        assert!(r.status.success(), "our receiver: {r:?}");
        if flags.contains('V') {
            assert!(r.stdout.contains("Verifying results"), "{}", r.stdout);
        }
    }
}
