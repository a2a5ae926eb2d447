//! MX programs of our own (`tests/c/*.c`, classic-MX style) compiled with
//! gcc against our headers, linked against the cdylib of this test run
//! (`liblibmx.so` next to the test executable, installed under the
//! `libmyriexpress.so` names), and run as separate processes against a
//! backend embedded in this test process (`backend::spawn_local`; the
//! programs find it through `MX_BACKEND_SOCKET`). Every program has its own
//! watchdog (`alarm`) and every run a deadline here. Needs gcc. The raw
//! API test runs two such backends with NICs on the in-memory wire
//! (`backend::nic::sim`), one program on each.

#[path = "common/cbuild.rs"]
mod cbuild;

use backend::counters::RawCounter;
use backend::nic::sim::{Faults, Hub};
use backend::{spawn_local, spawn_local_with_nic, BackendConfig, EmbeddedBackend};
use cbuild::{CScratch, LINK_NAMES, PROGRAM_FLAGS};
use mx_proto::msg::control::NIC_COUNTER_LABELS;
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// A test's scratch directory, its library names and its backend.
struct Env {
    c: CScratch,
    sock: PathBuf,
    hostname: String,
    backend: EmbeddedBackend,
}

impl Env {
    fn new(test: &str) -> Env {
        Env::make(test, BackendConfig::new(), |cfg, sock| {
            spawn_local(cfg, sock)
        })
    }

    /// A backend whose board is a NIC with address `mac` on `hub`
    /// (MTU 1500, the open-mx 1500 profile, no discovery).
    fn on_wire(test: &str, hub: &Hub, mac: [u8; 6], hostname: &str) -> Env {
        let mut cfg = BackendConfig::new();
        cfg.hostname = hostname.into();
        cfg.set_profile(mxoe_wire::WireProfile::OPEN_MX_1500);
        cfg.discovery = false;
        let nic = Box::new(hub.attach(mac, 1500));
        Env::make(test, cfg, move |cfg, sock| {
            spawn_local_with_nic(cfg, sock, nic)
        })
    }

    /// A backend with a NIC alone on a simulated wire (open-mx 9000).
    fn with_nic(test: &str) -> Env {
        let hub = Hub::new(Faults::default());
        let nic = Box::new(hub.attach([0x02, 0x5e, 0x11, 0, 0, 0x01], 9000));
        Env::make(test, BackendConfig::new(), move |cfg, sock| {
            spawn_local_with_nic(cfg, sock, nic)
        })
    }

    fn make(
        test: &str,
        cfg: BackendConfig,
        spawn: impl FnOnce(BackendConfig, &Path) -> std::io::Result<EmbeddedBackend>,
    ) -> Env {
        let c = CScratch::fresh(Path::new(TMP).join("c_programs").join(test), LINK_NAMES);
        // Unix socket paths are short: keep the socket in /tmp.
        let sock = std::env::temp_dir().join(format!("mxc-{}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let hostname = cfg.hostname.clone();
        let backend = spawn(cfg, &sock).expect("embedded backend");
        Env {
            c,
            sock,
            hostname,
            backend,
        }
    }

    /// Compile `tests/c/<name>.c`.
    fn build(&self, name: &str) -> PathBuf {
        self.c.build(name, PROGRAM_FLAGS)
    }

    fn command(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = self.c.command(exe);
        cmd.args(args).env("MX_BACKEND_SOCKET", &self.sock);
        for var in libmx::env::VARIABLES {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start a program; its stdout lines arrive on a channel.
    fn start(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = self
            .command(exe, args, env)
            .spawn()
            .expect("spawn test program");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let (etx, err) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            let _ = etx.send(s);
        });
        Proc {
            name: format!("{} {}", exe.display(), args.join(" ")),
            child,
            lines: rx,
            out: Vec::new(),
            err,
        }
    }

    /// The board's NIC counters by label, read through the control path
    /// as `mx_info` does (empty: the board has no wire side).
    fn nic_counters(&self) -> std::collections::HashMap<&'static str, u64> {
        let fe = frontend::Frontend::<LocalGuest>::attach(&LocalTarget::new(&self.sock))
            .expect("attach to the backend");
        let values = fe.nic_counters(0).expect("NIC counters");
        NIC_COUNTER_LABELS.iter().copied().zip(values).collect()
    }

    /// Run a program to its end (within `deadline`).
    fn run(&self, exe: &Path, args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Done {
        self.start(exe, args, env).finish(deadline)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
    }
}

struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    out: Vec<String>,
    /// The whole stderr, once the pipe closes.
    err: mpsc::Receiver<String>,
}

/// A finished program.
struct Done {
    name: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Done {
    fn assert_ok(&self, marker: &str) -> &Self {
        eprintln!("--- {}:\n{}", self.name, self.stdout);
        assert!(
            self.code == Some(0) && self.stdout.contains(marker),
            "{} failed (exit {:?}, want {marker:?}):\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Proc {
    /// Wait for a stdout line containing `marker`.
    fn wait_line(&mut self, marker: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.out.push(l.clone());
                    if l.contains(marker) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let d = self.collect();
                    panic!(
                        "{}: no {marker:?} line (exit {:?}):\nstdout:\n{}\nstderr:\n{}",
                        d.name, d.code, d.stdout, d.stderr
                    );
                }
            }
        }
    }

    /// Reap the program and gather its output. A descendant that kept the
    /// pipes open (it should not) costs at most a few seconds, never a
    /// hang.
    fn collect(&mut self) -> Done {
        let status = self.child.wait().expect("wait");
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(3)) {
            self.out.push(l);
        }
        let stderr = self
            .err
            .recv_timeout(Duration::from_secs(3))
            .unwrap_or_else(|_| "<stderr still open: a descendant holds it>".into());
        Done {
            name: self.name.clone(),
            code: status.code(),
            stdout: self.out.join("\n"),
            stderr,
        }
    }

    /// Wait for the end (killed after `deadline`).
    fn finish(mut self, deadline: Duration) -> Done {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.collect();
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let d = self.collect();
                panic!(
                    "{} timed out after {deadline:?}:\nstdout:\n{}\nstderr:\n{}",
                    d.name, d.stdout, d.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

const T: Duration = Duration::from_secs(60);

/// A receiver on endpoint `eid` and a sender to it: both must pass.
fn pair(
    env: &Env,
    prog: &str,
    eid: &str,
    send_args: &[&str],
    env_vars: &[(&str, &str)],
) -> (Done, Done) {
    let exe = env.build(prog);
    let mut recv = env.start(&exe, &["recv", eid], env_vars);
    recv.wait_line("ready", T);
    let mut args = vec!["send", env.hostname.as_str(), eid];
    args.extend_from_slice(send_args);
    let send = env.run(&exe, &args, env_vars, T);
    let recv = recv.finish(T);
    (recv, send)
}

#[test]
fn pingpong_every_size_class_two_processes() {
    let env = Env::new("pingpong");
    for (i, mode) in ["wait", "test", "sync"].iter().enumerate() {
        let eid = (1 + i).to_string();
        let (r, s) = pair(&env, "pingpong", &eid, &[mode], &[]);
        r.assert_ok("pingpong-recv: ok");
        s.assert_ok("pingpong-send: ok");
        assert!(s.stdout.contains("  4194304 "), "{}", s.stdout);
    }
    // The Xen path: large messages staged through a pool the backend reads,
    // whole (8 MiB pool) and, above 512 KiB, through a window (1 MiB pool,
    // a stock Xen guest's).
    for (eid, pages) in [("4", "2100"), ("5", "256")] {
        let (r, s) = pair(
            &env,
            "pingpong",
            eid,
            &["wait"],
            &[("MX_STAGE_LARGE", pages)],
        );
        r.assert_ok("pingpong-recv: ok");
        s.assert_ok("pingpong-send: ok");
        assert!(s.stdout.contains("  4194304 "), "{}", s.stdout);
    }
}

/// `MX_DISABLE_SHMEM=1`: the same ping-pong over every size class (0 B to
/// 4 MiB, both ways, byte-verified), and the counters prove every message
/// went through the wire encoder and decoder on the backend's loopback
/// (large ones through PULL / PULL_REPLY and NOTIFY): on a board without a
/// NIC and on one with a NIC; with large messages staged through a pool
/// (the Xen path, whose same-host sender registers block by block), the
/// flag on both sides and on the receiver only.
#[test]
fn pingpong_disable_shmem_takes_the_network_path() {
    let shm = ("MX_DISABLE_SHMEM", "1");
    let stage = ("MX_STAGE_LARGE", "2100");
    type Vars<'a> = &'a [(&'a str, &'a str)];
    // (test name, with a NIC, receiver's variables, sender's variables)
    let cases: [(&str, bool, Vars, Vars); 4] = [
        ("pingpong_noshm", false, &[shm], &[shm]),
        ("pingpong_noshm_nic", true, &[shm], &[shm]),
        ("pingpong_noshm_staged", false, &[shm, stage], &[shm, stage]),
        ("pingpong_noshm_recv_only", false, &[shm, stage], &[stage]),
    ];
    for (name, nic, recv_vars, send_vars) in cases {
        let env = if nic {
            Env::with_nic(name)
        } else {
            Env::new(name)
        };
        let before = env.nic_counters();
        if nic {
            assert_eq!(before["loopback frames"], 0);
        } else {
            // The normal intra-node path never builds the wire side.
            assert!(before.is_empty(), "{before:?}");
        }
        let exe = env.build("pingpong");
        let mut recv = env.start(&exe, &["recv", "1"], recv_vars);
        recv.wait_line("ready", T);
        let s = env.run(
            &exe,
            &["send", env.hostname.as_str(), "1", "wait"],
            send_vars,
            T,
        );
        let r = recv.finish(T);
        r.assert_ok("pingpong-recv: ok");
        s.assert_ok("pingpong-send: ok");
        assert!(s.stdout.contains("  4194304 "), "{name}: {}", s.stdout);
        let c = env.nic_counters();
        let looped = c["loopback frames"];
        // 35 sizes x 2..8 iterations x 2 directions, fragments and pull
        // replies: thousands of frames.
        assert!(looped > 2000, "{name}: loopback frames {looped}: {c:?}");
        for kind in [
            "connect",
            "tiny",
            "small",
            "medium",
            "rndv",
            "pull",
            "pull reply",
            "notify",
            "truc",
        ] {
            assert!(
                c[format!("rx {kind}").as_str()] > 0 && c[format!("tx {kind}").as_str()] > 0,
                "{name}: no {kind} frame went through the wire path: {c:?}"
            );
        }
        assert!(c["pulls done"] >= 2 * 4, "{name}: {c:?}");
        assert_eq!(c["pulls failed"], 0, "{name}: {c:?}");
        assert_eq!(c["pull requests resent"], 0, "{name}: {c:?}");
        assert_eq!(c["drop: own frame"], 0, "{name}: {c:?}");
        assert_eq!(c["drop: unknown sender"], 0, "{name}: {c:?}");
        // Nothing came from a NIC: every received frame was looped back.
        assert_eq!(c["rx frames"], looped, "{name}: {c:?}");
        assert_eq!(c["tx errors"], 0, "{name}: {c:?}");
    }
}

#[test]
fn stream_with_eight_in_flight() {
    let env = Env::new("stream");
    for (i, (len, count)) in [("8192", "400"), ("100000", "60"), ("0", "200")]
        .iter()
        .enumerate()
    {
        let eid = (1 + i).to_string();
        let (r, s) = pair(&env, "stream", &eid, &[len, count], &[]);
        r.assert_ok("stream-recv: ok");
        s.assert_ok("stream-send: ok");
        assert!(s.stdout.contains(&format!("Total: {len} ")), "{}", s.stdout);
    }
}

#[test]
fn msg_loop_random_sizes_parallel_self() {
    let env = Env::new("msg_loop");
    let exe = env.build("msg_loop");
    for (vars, args) in [
        (&[][..], &["2", "300000", "11"][..]),
        (&[("MX_DISABLE_SELF", "1")][..], &["2", "300000", "11"][..]),
        (
            &[("MX_DISABLE_SELF", "1")][..],
            &["1", "100000", "11", "sync"][..],
        ),
        (&[][..], &["1", "100000", "11", "sync"][..]),
        // staged through a 1 MiB pool: 11 messages of up to 300 kB wait
        // for room in it
        (
            &[("MX_DISABLE_SELF", "1"), ("MX_STAGE_LARGE", "256")][..],
            &["2", "300000", "11", "sync"][..],
        ),
        // the same pool, messages of up to 3 MiB: most go through a
        // window of two 256 KiB slots the backend asks to refill
        (
            &[("MX_DISABLE_SELF", "1"), ("MX_STAGE_LARGE", "256")][..],
            &["2", "3000000", "11"][..],
        ),
    ] {
        let d = env.run(&exe, args, vars, T);
        d.assert_ok("msg_loop: ok");
        assert!(!d.stdout.contains(" 0 rounds"), "{}", d.stdout);
    }
}

#[test]
fn wait_any_with_context_id() {
    let env = Env::new("wait_any");
    let (r, s) = pair(&env, "wait_any", "3", &[], &[]);
    r.assert_ok("wait_any-recv: ok");
    s.assert_ok("wait_any-send: ok");
    assert!(
        r.stdout.contains("wait_any: got 131072 bytes"),
        "{}",
        r.stdout
    );
}

/// `MX_VERBOSE=1`: a line on stderr when the endpoint opens (board,
/// hostname, platform) and when it closes; a value that is not a number is
/// reported and ignored. Without it the library says nothing.
#[test]
fn mx_verbose_reports_open_and_close() {
    let env = Env::new("verbose");
    let exe = env.build("wakeup");
    let d = env.run(&exe, &[], &[("MX_VERBOSE", "1"), ("MX_RCACHE", "maybe")], T);
    d.assert_ok("wakeup: ok");
    let opened = format!("opened on board 0 ({}, nic ", env.hostname);
    for want in [
        "MX: endpoint ",
        opened.as_str(),
        "platform local",
        "closed on board 0",
        "MX: ignoring MX_RCACHE=\"maybe\"",
    ] {
        assert!(
            d.stderr.contains(want),
            "no {want:?} in stderr:\n{}",
            d.stderr
        );
    }
    assert_eq!(d.stderr.matches("MX: ignoring").count(), 1, "{}", d.stderr);
    let quiet = env.run(&exe, &[], &[], T);
    quiet.assert_ok("wakeup: ok");
    assert!(!quiet.stderr.contains("MX: "), "{}", quiet.stderr);
}

#[test]
fn wakeup_releases_twelve_blocked_threads() {
    let env = Env::new("wakeup");
    let exe = env.build("wakeup");
    env.run(&exe, &[], &[], T).assert_ok("wakeup: ok");
}

#[test]
fn unexpected_handler_data_finished_and_irecv_inside() {
    let env = Env::new("unexp");
    let (r, s) = pair(&env, "unexp", "4", &[], &[]);
    r.assert_ok("unexp-recv: ok");
    s.assert_ok("unexp-send: ok");
}

#[test]
fn truncated_receives_and_sends() {
    let env = Env::new("truncate");
    let (r, s) = pair(&env, "truncate", "2", &[], &[]);
    r.assert_ok("truncate-recv: ok");
    s.assert_ok("truncate-send: ok");
    // With the default (fatal) handler a truncated receive ends the process.
    let exe = env.build("truncate");
    let mut recv = env.start(&exe, &["recv-fatal", "3"], &[]);
    recv.wait_line("ready", T);
    env.run(&exe, &["send-one", &env.hostname, "3"], &[], T)
        .assert_ok("truncate-send: ok");
    let r = recv.finish(T);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("survived"), "{}", r.stdout);
    assert!(
        r.stderr.contains("Message truncated"),
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn segment_vectors_tiny_to_large() {
    let env = Env::new("vectors");
    let (r, s) = pair(&env, "vectors", "6", &[], &[]);
    r.assert_ok("vectors-recv: ok");
    s.assert_ok("vectors-send: ok");
    assert!(
        r.stdout.contains("vector of 3357814 bytes: ok"),
        "{}",
        r.stdout
    );
}

#[test]
fn api_cancel_connect_errors_info_and_requests() {
    let env = Env::new("api");
    let exe = env.build("api");
    env.run(&exe, &[], &[], T).assert_ok("api: ok");
}

/// The semantics audit (docs/C-ABI.md): ipeek/peek, forget, cancel of
/// every request kind, context, ibuffered, masked probes and test_any over
/// sends and receives, address contexts, the unexpected handler and
/// disabled progression; through the backend and through the library's
/// self path, with and without peer channels.
#[test]
fn semantics_match_mx_and_open_mx() {
    let env = Env::new("semantics");
    let exe = env.build("semantics");
    for vars in [
        &[][..],
        &[("MX_PEER_CHANNELS", "0")][..],
        &[("MX_DISABLE_SHMEM", "1")][..],
    ] {
        let d = env.run(&exe, &[], vars, T);
        d.assert_ok("semantics: ok");
        assert_eq!(
            d.stdout
                .lines()
                .filter(|l| l.starts_with("checked: "))
                .count(),
            9,
            "{vars:?}: {}",
            d.stdout
        );
    }
}

#[test]
fn threads_share_wait_any_and_open_close_concurrently() {
    let env = Env::new("multithread");
    let exe = env.build("multithread");
    env.run(&exe, &[], &[], T).assert_ok("multithread: ok");
}

#[test]
fn raw_api_between_two_hosts_on_a_wire() {
    let hub = Hub::new(Faults::default());
    let a_mac = [2, 0, 0, 0, 0x7a, 1];
    let b_mac = [2, 0, 0, 0, 0x7b, 2];
    let a = Env::on_wire("raw_a", &hub, a_mac, "rawa:0");
    let b = Env::on_wire("raw_b", &hub, b_mac, "rawb:0");
    let exe = a.build("raw");
    // 5 lengths, 1 truncated, 40 in flight.
    let mut echo = b.start(&exe, &["echo", "46"], &[]);
    echo.wait_line("ready", T);
    let b_nic = b.backend.nic_id();
    a.run(&exe, &["ping", &format!("{b_nic:x}")], &[], T)
        .assert_ok("raw-ping: ok");
    echo.finish(T).assert_ok("raw-echo: ok (46 frames)");
    let (ra, rb) = (a.backend.raw_counters(), b.backend.raw_counters());
    for (r, who) in [(ra, "ping"), (rb, "echo")] {
        assert_eq!(r.get(RawCounter::Sent), 46, "{who}");
        assert_eq!(r.get(RawCounter::Received), 46, "{who}");
        // The library refused the bad frames before the backend saw them.
        for c in [
            RawCounter::RefusedLength,
            RawCounter::RefusedEtherType,
            RawCounter::RefusedNotRaw,
            RawCounter::RefusedMalformed,
            RawCounter::DropFull,
        ] {
            assert_eq!(r.get(c), 0, "{who}: {c:?}");
        }
    }
    // Opened, busy once, reopened after close (then closed by mx_finalize).
    assert_eq!(ra.get(RawCounter::Opens), 2);
    assert_eq!(ra.get(RawCounter::OpenBusy), 1);
}
