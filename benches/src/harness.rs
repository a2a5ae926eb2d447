//! The side-by-side comparison: every case the `compare` binary runs, each
//! as processes it starts, watches and collects records from.

use crate::pingpong::{ClientOpts, Plan, PLAN_ENV, SIZES};
use crate::procs::{child_cmd, is_executable, BackendOpts, BackendProc, Guest, TickWindow};
use crate::record::Record;
use crate::shm::Wait;
use crate::shmlimit::ShmSetup;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::time::{Duration, Instant};

/// A case failed: why.
pub type CaseResult = Result<Vec<Record>, String>;

/// What the cases share.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// How much to measure.
    pub plan: Plan,
    /// The `mx-backend` binary, if found; otherwise the library loop.
    pub backend_bin: Option<PathBuf>,
}

impl Ctx {
    /// Longest a single case may take.
    pub fn limit(&self) -> Duration {
        if self.plan.quick {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(150)
        }
    }

    fn backend(&self, idle: &str, max_endpoints: u8) -> BackendProc {
        BackendProc::start_with(&BackendOpts {
            idle: idle.into(),
            spin_us: 200,
            max_endpoints,
            bin: self.backend_bin.clone(),
            netns: None,
            extra: Vec::new(),
        })
    }
}

/// Client options a child builds from its arguments.
pub fn client_opts(transport: &str, mode: &str) -> ClientOpts {
    ClientOpts {
        transport: transport.into(),
        mode: mode.into(),
        sizes: SIZES.to_vec(),
        stream: true,
        plan: Plan::from_env(),
    }
}

/// Read `client`'s records until it exits, for at most `limit`.
pub fn collect(client: &mut Guest, limit: Duration) -> CaseResult {
    let t0 = Instant::now();
    let mut recs = Vec::new();
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        match client.line(left) {
            Some(l) => recs.extend(Record::parse(&l)),
            None if t0.elapsed() >= limit => {
                let _ = client.child.kill();
                return Err(format!("timed out after {limit:?}"));
            }
            None => break,
        }
    }
    let st = client.wait_exit(Duration::from_secs(10))?;
    if !st.success() {
        return Err(format!("client failed ({st})"));
    }
    Ok(recs)
}

/// Wait for a server child to exit successfully.
///
/// # Errors
/// When it fails or hangs.
pub fn server_done(s: &mut Guest) -> Result<(), String> {
    let st = s.wait_exit(Duration::from_secs(10))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("server failed ({st})"))
    }
}

/// Ours, intra-node: two guest processes through one backend (`--idle
/// yield`, the default), waiting by `mode` (see [`crate::mx::MxMode`]);
/// plus the backend's CPU over the run.
pub fn mx_local(ctx: &Ctx, mode: &str) -> CaseResult {
    let be = ctx.backend("yield", 32);
    let sock = be.socket.to_str().expect("utf-8").to_string();
    let cpu = TickWindow::start(be.pid());
    let mut pong = Guest::spawn(&["mx-pong", &sock, mode, "2", "1"]);
    let mut ping = Guest::spawn(&["mx-ping", &sock, mode, "1", "2", "mx-local"]);
    let mut recs = collect(&mut ping, ctx.limit())?;
    let (pct, _) = cpu.percent();
    server_done(&mut pong)?;
    recs.push(
        Record::new("mx-local", mode, None, "backend_cpu", pct, None, "%")
            .with_note("backend --idle yield, over the whole ping-pong and streaming run"),
    );
    Ok(recs)
}

/// Ours without libmx: raw channel commands (8-byte tiny messages) from
/// guest to guest through the backend (`--idle yield`), waiting by `w`
/// (the `split_driver` bench's ping-pong): what the split driver costs
/// before the MX library adds its own.
pub fn mx_channel(w: Wait) -> CaseResult {
    let (rtt, stalled, cpu) = crate::split::split_pingpong("yield", 200, w);
    if rtt.is_empty() {
        return Err("no round trip completed".into());
    }
    let mut half: Vec<f64> = rtt.iter().map(|&n| n as f64 / 2000.0).collect();
    let s = crate::record::summarize(&mut half);
    let mode = format!("guests {}", w.name());
    let mut r = Record::new(
        "mx-channel",
        &mode,
        Some(8),
        "latency",
        s.median,
        Some(s.p99),
        "us",
    )
    .with_n(s.n)
    .with_note(format!(
        "CPU % backend/ping/pong {}",
        crate::procs::fmt_cpu(&cpu)
    ));
    if stalled {
        r.note = Some(format!(
            "{}; cut: a round trip stalled",
            r.note.unwrap_or_default()
        ));
    }
    Ok(vec![r])
}

/// This binary in network namespace `ns` (or here).
fn child_in(ns: Option<&str>, args: &[&str]) -> Proc {
    match ns {
        None => child_cmd(args),
        Some(ns) => {
            let mut c = Proc::new("ip");
            c.args(["netns", "exec", ns])
                .arg(std::env::current_exe().expect("own path"))
                .arg("--child")
                .args(args);
            c
        }
    }
}

/// TCP or Unix-domain stream sockets; `mode` `blocking` or `busy-poll`;
/// server in namespace `ns.1`, client in `ns.0` when given.
pub fn sockets(
    transport: &str,
    kind: &str,
    addr: &str,
    mode: &str,
    ns: Option<(&str, &str)>,
) -> CaseResult {
    let mut srv = Guest::spawn_cmd(child_in(
        ns.map(|n| n.1),
        &["sock-server", kind, addr, mode],
    ));
    let l = srv
        .line(Duration::from_secs(20))
        .ok_or("server did not start")?;
    let bound = l
        .strip_prefix("READY ")
        .ok_or_else(|| format!("server said {l}"))?
        .to_string();
    let mut cli = Guest::spawn_cmd(child_in(
        ns.map(|n| n.0),
        &["sock-client", kind, &bound, mode, transport],
    ));
    let recs = collect(&mut cli, Duration::from_secs(150))?;
    server_done(&mut srv)?;
    Ok(recs)
}

/// The shared-memory limits: two processes (direct) or three (relay).
pub fn shm(relay: bool, guests: Wait, relay_wait: Wait) -> CaseResult {
    let setup = ShmSetup::new();
    let a = setup.args();
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let topo = if relay { "relay" } else { "direct" };
    let (transport, mode) = if relay {
        (
            "shm-relay",
            format!("guests {}, relay {}", guests.name(), relay_wait.name()),
        )
    } else {
        ("shm-ring", guests.name().to_string())
    };
    let mut r = relay.then(|| {
        let mut v = vec!["shm-relay"];
        v.extend(&args);
        v.push(relay_wait.name());
        Guest::spawn(&v)
    });
    let mut bv = vec!["shm-b"];
    bv.extend(&args);
    bv.extend([topo, guests.name()]);
    let mut b = Guest::spawn(&bv);
    let mut av = vec!["shm-a"];
    av.extend(&args);
    av.extend([topo, guests.name(), transport, &mode]);
    let mut cli = Guest::spawn(&av);
    let res = collect(&mut cli, Duration::from_secs(150));
    let b_done = server_done(&mut b);
    setup.stop_relay();
    if let Some(r) = r.as_mut() {
        server_done(r)?;
    }
    let recs = res?;
    b_done?;
    Ok(recs)
}

/// The backend's CPU with `guests` endpoints open and no traffic.
pub fn backend_idle(ctx: &Ctx, guests: usize) -> CaseResult {
    let be = ctx.backend("yield", 32);
    let sock = be.socket.to_str().expect("utf-8").to_string();
    let gs: Vec<Guest> = (0..guests)
        .map(|i| Guest::spawn(&["mx-idle", &sock, &(i + 1).to_string()]))
        .collect();
    for g in &gs {
        let _ = g.ready();
    }
    std::thread::sleep(Duration::from_millis(300));
    let w = TickWindow::start(be.pid());
    std::thread::sleep(if ctx.plan.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    });
    let (pct, wall) = w.percent();
    for mut g in gs {
        let _ = g.wait_exit(Duration::from_secs(5));
    }
    Ok(vec![Record::new(
        "mx-local",
        "idle",
        None,
        "backend_cpu",
        pct,
        None,
        "%",
    )
    .with_note(format!(
        "backend --idle yield, {guests} endpoints open, no traffic, {:.1} s",
        wall.as_secs_f64()
    ))])
}

/// `pairs` sender/receiver pairs streaming messages of `size` at once
/// through one backend for `secs`: the sum of their bandwidths, and the
/// backend's CPU.
pub fn aggregate(ctx: &Ctx, pairs: usize, size: usize, secs: f64) -> CaseResult {
    let be = ctx.backend("yield", (2 * pairs + 2).clamp(32, 255) as u8);
    let sock = be.socket.to_str().expect("utf-8").to_string();
    let sz = size.to_string();
    let mut recv = Vec::new();
    let mut send = Vec::new();
    for i in 0..pairs {
        let (s_id, r_id) = ((2 * i + 1).to_string(), (2 * i + 2).to_string());
        recv.push(Guest::spawn(&["agg-recv", &sock, &r_id, &s_id, &sz]));
        send.push(Guest::spawn(&[
            "agg-send",
            &sock,
            &s_id,
            &r_id,
            &sz,
            &secs.to_string(),
        ]));
    }
    for g in recv.iter().chain(&send) {
        let l = g
            .line(Duration::from_secs(60))
            .ok_or("a guest never became ready")?;
        if !l.starts_with("READY") {
            return Err(format!("a guest said {l}"));
        }
    }
    let cpu = TickWindow::start(be.pid());
    let busy = crate::machine::BusyWindow::start();
    for g in &mut send {
        g.send_line("GO").map_err(|e| e.to_string())?;
    }
    let mut total = 0.0;
    let mut per = Vec::new();
    for g in &mut send {
        let recs = collect(g, Duration::from_secs_f64(secs + 60.0))?;
        let r = recs
            .iter()
            .find(|r| r.metric == "pair_bw")
            .ok_or("a sender reported nothing")?;
        total += r.median.unwrap_or(0.0);
        per.push(r.median.unwrap_or(0.0));
    }
    let (pct, _) = cpu.percent();
    let all = busy.percent();
    for g in &mut recv {
        server_done(g)?;
    }
    let min = per.iter().copied().fold(f64::INFINITY, f64::min);
    let mode = format!("{pairs} pairs");
    let mut agg = Record::new(
        "mx-local",
        &mode,
        Some(size as u64),
        "aggregate_bw",
        total,
        None,
        "MB/s",
    )
    .with_note(format!(
        "{secs} s of streaming, mx_wait waits; slowest pair {min:.0} MB/s"
    ));
    agg.pairs = Some(pairs as u32);
    let mut cpu_r = Record::new(
        "mx-local",
        &mode,
        Some(size as u64),
        "backend_cpu",
        pct,
        None,
        "%",
    );
    cpu_r.pairs = Some(pairs as u32);
    let mut all_r = Record::new(
        "mx-local",
        &mode,
        Some(size as u64),
        "machine_cpu",
        all,
        None,
        "%",
    )
    .with_note("the whole machine (/proc/stat), % of one core; 200 % = both cores");
    all_r.pairs = Some(pairs as u32);
    Ok(vec![agg, cpu_r, all_r])
}

/// A sibling binary of this one (`target/<profile>/<name>`), built first
/// with cargo when `build` and cargo is at hand.
pub fn sibling_bin(name: &str, package: &str, features: &[&str], build: bool) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let path = dir.join(name);
    if build {
        let release = dir.ends_with("release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Proc::new(cargo);
        c.args(["build", "-q", "-p", package, "--bin", name]);
        if release {
            c.arg("--release");
        }
        if !features.is_empty() {
            c.args(["--features", &features.join(",")]);
        }
        c.current_dir(workspace_root());
        let _ = c.status();
    }
    is_executable(&path).then_some(path)
}

/// The workspace this harness was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// The environment children see.
pub fn export_plan(plan: Plan) {
    std::env::set_var(PLAN_ENV, if plan.quick { "quick" } else { "full" });
}
