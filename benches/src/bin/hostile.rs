//! `hostile`: an honest pair's latency through the real `mx-backend`,
//! alone and under each of issue 14's attacks (hostile guests of another
//! user, uid 65534). Not a test: it measures and prints, nothing is
//! asserted (docs/PERFORMANCE.md, "Under attack").
//!
//! ```text
//! cargo build -p backend -p mx_pingpong
//! cargo test -p backend --test hostile_local --no-run    # the attackers
//! cargo run -p mx-benches --bin hostile -- [--backend BIN] [--attackers BIN]
//!     [--pingpong BIN] [--only NAME,..] [--reps N] [--nice N]
//! ```
//!
//! Per scenario: a fresh backend; the attack starts and says it is under
//! way; then (1) a libmx ping-pong of 8 B and 32 KiB between endpoints 31
//! and 30 in `mx_wait` mode, one-way latency per round trip (median and
//! p99; the echo's bytes checked once per size), and (2) `mx_pingpong -V`
//! between endpoints 29 and 28 (every byte of every message verified; its
//! mean per length). Same-host peer channels are off (`MX_PEER_CHANNELS=0`):
//! with them the pair's messages bypass the backend, which is what the
//! attacks aim at.
//!
//! `--nice 19` runs the attackers at the lowest CPU priority: on a host
//! with fewer cores than busy processes the kernel's scheduler otherwise
//! decides the honest pair's latency, not the backend's service loop.
//!
//! The attackers are the roles of the backend's `hostile_local` test
//! binary (`crates/backend/tests/common/hostile.rs`), run as its
//! `guest_child` test, so that the bench and the tests share one
//! implementation of each attack.

use mx_benches::harness;
use mx_benches::mx;
use mx_benches::pingpong::{run_client, serve, ClientOpts, Plan};
use mx_benches::procs::{BackendOpts, BackendProc, Guest};
use mx_benches::record::Record;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The unprivileged user the attackers run as.
const NOBODY: u32 = 65534;
const SIZES: [usize; 2] = [8, 32768];

struct Cli {
    backend: PathBuf,
    attackers: PathBuf,
    pingpong: PathBuf,
    only: Vec<String>,
    reps: usize,
    /// Niceness of the attackers (0: as an attacker would run).
    nice: i32,
}

fn newest(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(prefix) && !n.ends_with(".d")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn parse() -> Cli {
    let root = harness::workspace_root();
    let dbg = root.join("target/debug");
    let mut c = Cli {
        backend: dbg.join("mx-backend"),
        attackers: newest(&dbg.join("deps"), "hostile_local-").unwrap_or_default(),
        pingpong: dbg.join("mx_pingpong"),
        only: Vec::new(),
        reps: 1,
        nice: 0,
    };
    let mut a = std::env::args().skip(1);
    while let Some(x) = a.next() {
        let mut val = || a.next().unwrap_or_else(|| panic!("{x} needs a value"));
        match x.as_str() {
            "--backend" => c.backend = val().into(),
            "--attackers" => c.attackers = val().into(),
            "--pingpong" => c.pingpong = val().into(),
            "--only" => c.only = val().split(',').map(str::to_string).collect(),
            "--reps" => c.reps = val().parse().expect("reps"),
            "--nice" => c.nice = val().parse().expect("niceness"),
            other => panic!("unknown argument {other}"),
        }
    }
    for (what, p) in [
        ("backend", &c.backend),
        ("attackers", &c.attackers),
        ("pingpong", &c.pingpong),
    ] {
        assert!(
            p.is_file(),
            "{what} {} is missing (see the usage in the source)",
            p.display()
        );
    }
    c
}

/// An attacker role: (role, environment, how many processes, the line
/// that says it is under way).
type Role = (
    &'static str,
    &'static [(&'static str, &'static str)],
    usize,
    &'static str,
);

/// One attack: how to start its processes once the backend is up.
struct Attack {
    name: &'static str,
    what: &'static str,
    /// Backend arguments beside the usual ones.
    backend_args: &'static [&'static str],
    /// `RLIMIT_NOFILE` of the backend.
    nofile: Option<u64>,
    /// (role, environment, how many processes, line that says it is under way)
    procs: &'static [Role],
}

const HOLD: (&str, &str) = ("MX_SPLIT_HOSTILE_MS", "600000");

const ATTACKS: &[Attack] = &[
    Attack {
        name: "alone",
        what: "no attack",
        backend_args: &[],
        nofile: None,
        procs: &[],
    },
    Attack {
        name: "doorbell",
        what:
            "doorbell-block attempt (host end held, O_NONBLOCK cleared, buffer filled, never read)",
        backend_args: &[],
        nofile: None,
        procs: &[("doorbell", &[HOLD], 1, "MXREADY")],
    },
    Attack {
        name: "stall",
        what: "never-draining event ring + wrong-key connects to the pair's receiver (endpoint 30)",
        backend_args: &[],
        nofile: None,
        procs: &[("stall", &[HOLD, ("MX_STALL_EP", "30")], 1, "MXREADY")],
    },
    Attack {
        name: "busy4",
        what: "one user, 4 busy endpoints with full command rings",
        backend_args: &[],
        nofile: None,
        procs: &[("busy", &[HOLD], 4, "MXREADY")],
    },
    Attack {
        name: "flood",
        what: "connection flood: 300 connections of one user",
        backend_args: &[],
        nofile: None,
        procs: &[("flood", &[("MX_FLOOD_N", "300")], 1, "MXFLOOD")],
    },
    Attack {
        name: "fdex",
        what: "descriptor exhaustion: backend RLIMIT_NOFILE 64, 100 connections",
        backend_args: &["--max-guests-per-user", "1000"],
        nofile: Some(64),
        procs: &[("flood", &[("MX_FLOOD_N", "100")], 1, "MXFLOOD")],
    },
    Attack {
        name: "punch",
        what: "hole punching over the attacker's channel memfd while it sends",
        backend_args: &[],
        nofile: None,
        procs: &[("punch", &[HOLD], 1, "MXREADY")],
    },
];

fn attacker(cli: &Cli, socket: &Path, role: &str, env: &[(&str, &str)]) -> Guest {
    let mut c = Command::new(&cli.attackers);
    c.args(["--exact", "guest_child", "--nocapture", "--test-threads=1"])
        .env("MX_SPLIT_ROLE", role)
        .env("MX_SPLIT_SOCKET", socket)
        .stderr(Stdio::null())
        .uid(NOBODY)
        .gid(NOBODY);
    let nice = cli.nice;
    if nice != 0 {
        // SAFETY: setpriority is async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Guest::spawn_cmd(c)
}

fn wait_line(g: &Guest, prefix: &str, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(l) = g.line(limit.saturating_sub(t0.elapsed())) {
            // The test harness may print "test guest_child ... " first.
            if let Some(i) = l.find(prefix) {
                return Some(l[i..].to_string());
            }
        }
    }
    None
}

/// What one scenario measured.
struct Outcome {
    lat: Vec<(usize, f64, f64)>,
    verified: Result<Vec<(usize, f64)>, String>,
    note: String,
}

fn mx_pingpong(cli: &Cli, socket: &Path) -> Result<Vec<(usize, f64)>, String> {
    let run = |args: &[&str]| {
        Command::new(&cli.pingpong)
            .args(args)
            .arg("--socket")
            .arg(socket)
            .env("MX_PEER_CHANNELS", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn mx_pingpong: {e}"))
    };
    let rx = run(&["-e", "28"])?;
    std::thread::sleep(Duration::from_millis(300));
    let tx = run(&[
        "-e", "29", "-d", "hx:0", "-r", "28", "-V", "-S", "8", "-E", "32769", "-M", "4096", "-N",
        "300",
    ])?;
    let out = tx.wait_with_output().map_err(|e| e.to_string())?;
    let _ = rx.wait_with_output();
    if !out.status.success() {
        return Err(format!(
            "mx_pingpong failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
        })
        .collect())
}

fn scenario(cli: &Cli, a: &Attack) -> Result<Outcome, String> {
    let mut extra: Vec<String> = vec!["--hostname".into(), "hx:0".into()];
    extra.extend(a.backend_args.iter().map(|s| s.to_string()));
    let mut o = BackendOpts::new("spin", 200);
    o.bin = Some(cli.backend.clone());
    o.extra = extra;
    let be = match a.nofile {
        None => BackendProc::try_start_with(&o)?,
        Some(n) => {
            // Descriptor limit: set on the running backend (prlimit(2)).
            let be = BackendProc::try_start_with(&o)?;
            let st = Command::new("prlimit")
                .arg(format!("--pid={}", be.pid()))
                .arg(format!("--nofile={n}:{n}"))
                .status()
                .map_err(|e| format!("prlimit: {e}"))?;
            if !st.success() {
                return Err("prlimit failed".into());
            }
            be
        }
    };
    let sock = be.socket.to_string_lossy().to_string();
    let me = std::env::current_exe().expect("own path");
    let child = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.arg("--child").args(args).env("MX_PEER_CHANNELS", "0");
        Guest::spawn_cmd(c)
    };
    // Both first (each connects to the other), before any attacker: the
    // descriptor exhaustion leaves no room for guests that come later.
    let pong = child(&["pong", &sock, "30", "31"]);
    let ping = child(&["ping", &sock, "31", "30"]);
    wait_line(&pong, "READY", Duration::from_secs(20)).ok_or("pong never ready")?;
    wait_line(&ping, "READY", Duration::from_secs(20)).ok_or("ping never ready")?;
    let mut held = Vec::new();
    let mut note = String::new();
    for (role, env, n, ready) in a.procs {
        for _ in 0..*n {
            let g = attacker(cli, &be.socket, role, env);
            let l = wait_line(&g, ready, Duration::from_secs(20))
                .ok_or_else(|| format!("attacker {role} never said {ready}"))?;
            if *ready == "MXFLOOD" {
                note = l.trim_start_matches("MXFLOOD ").to_string();
            }
            held.push(g);
        }
    }
    let mut ping = ping;
    ping.send_line("GO").map_err(|e| e.to_string())?;
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while lat.len() < SIZES.len() && t0.elapsed() < Duration::from_secs(120) {
        let Some(l) = ping.line(Duration::from_secs(120)) else {
            break;
        };
        if let Some(r) = Record::parse(&l) {
            if r.metric == "latency" {
                lat.push((
                    r.size.unwrap_or(0) as usize,
                    r.median.unwrap_or(f64::NAN),
                    r.p99.unwrap_or(f64::NAN),
                ));
            }
        }
    }
    if lat.len() < SIZES.len() {
        return Err(format!(
            "the ping-pong did not finish ({} of {} sizes)",
            lat.len(),
            SIZES.len()
        ));
    }
    let verified = if a.nofile.is_some() {
        Err("not run: no new guest can attach while the descriptors are exhausted".into())
    } else {
        mx_pingpong(cli, &be.socket)
    };
    drop(held);
    drop(pong);
    Ok(Outcome {
        lat,
        verified,
        note,
    })
}

fn child(args: &[String]) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["pong", socket, me, peer] => {
            let mut c = mx::conn(socket, "wait", me, peer, None);
            println!("READY 0 0");
            serve(&mut c);
            mx::linger(c.endpoint());
        }
        ["ping", socket, me, peer] => {
            let mut c = mx::conn(socket, "wait", me, peer, None);
            println!("READY 0 0");
            let mut l = String::new();
            std::io::stdin().read_line(&mut l).expect("GO");
            let o = ClientOpts {
                transport: "mx".into(),
                mode: "wait".into(),
                sizes: SIZES.to_vec(),
                stream: false,
                plan: Plan::from_env(),
            };
            run_client(&mut c, &o, &mut |r| r.emit());
        }
        other => panic!("unknown role {other:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    let cli = parse();
    println!("backend {}", cli.backend.display());
    println!("| scenario | 8 B median | 8 B p99 | 32 KiB median | 32 KiB p99 | mx_pingpong -V 8 B / 32 KiB (mean) | notes |");
    println!("|---|---|---|---|---|---|---|");
    for a in ATTACKS {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == a.name) {
            continue;
        }
        for _ in 0..cli.reps {
            match scenario(&cli, a) {
                Ok(o) => {
                    let l = |s: usize| {
                        o.lat
                            .iter()
                            .find(|x| x.0 == s)
                            .map_or(("-".into(), "-".into()), |x| {
                                (format!("{:.1}", x.1), format!("{:.1}", x.2))
                            })
                    };
                    let (m8, p8) = l(8);
                    let (m32, p32) = l(32768);
                    let v = match &o.verified {
                        Ok(v) => {
                            let g = |s: usize| {
                                v.iter()
                                    .find(|x| x.0 == s)
                                    .map_or("-".into(), |x| format!("{:.1}", x.1))
                            };
                            format!("{} / {} (verified)", g(8), g(32768))
                        }
                        Err(e) => e.clone(),
                    };
                    println!(
                        "| {} ({}) | {m8} | {p8} | {m32} | {p32} | {v} | {} |",
                        a.name, a.what, o.note
                    );
                }
                Err(e) => println!("| {} ({}) | failed: {e} | | | | | |", a.name, a.what),
            }
        }
    }
}
