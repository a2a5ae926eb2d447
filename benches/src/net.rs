//! Two "hosts" on one machine: network namespaces joined by a veth pair
//! (MTU 9000), for TCP across the pair, the raw AF_PACKET limit (the
//! `rawpp` bin) and our stack over the wire once the backend has one.

use crate::harness::CaseResult;
use crate::record::Record;
use std::path::Path;
use std::process::{Command, Stdio};

/// Addresses of the two ends (they exist only inside the namespaces).
pub const ADDR_A: &str = "10.86.224.1";
/// See [`ADDR_A`].
pub const ADDR_B: &str = "10.86.224.2";
/// MTU of the pair.
pub const MTU: u32 = 9000;

/// A veth pair between namespaces `a` and `b`; deleted on drop.
pub struct Veth {
    /// Namespace of host A (the client).
    pub a: String,
    /// Namespace of host B (the server).
    pub b: String,
    /// Interface in `a`.
    pub if_a: String,
    /// Interface in `b`.
    pub if_b: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl Veth {
    /// Create the namespaces and the pair (needs root and `ip`).
    ///
    /// # Errors
    /// Why not.
    pub fn new() -> Result<Veth, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: network namespaces need it".into());
        }
        let id = std::process::id() % 100_000;
        let v = Veth {
            a: format!("mxb{id}a"),
            b: format!("mxb{id}b"),
            if_a: "mxbva".into(),
            if_b: "mxbvb".into(),
        };
        v.delete();
        let tmp = format!("mxb{id}t");
        let tmp2 = format!("mxb{id}u");
        let mtu = MTU.to_string();
        ip(&["netns", "add", &v.a])?;
        ip(&["netns", "add", &v.b])?;
        ip(&["link", "add", &tmp, "type", "veth", "peer", "name", &tmp2])?;
        ip(&["link", "set", &tmp, "netns", &v.a])?;
        ip(&["link", "set", &tmp2, "netns", &v.b])?;
        for (ns, from, to, addr) in [
            (&v.a, &tmp, &v.if_a, ADDR_A),
            (&v.b, &tmp2, &v.if_b, ADDR_B),
        ] {
            ip(&["-n", ns, "link", "set", from, "name", to])?;
            ip(&["-n", ns, "link", "set", to, "mtu", &mtu])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", to])?;
            ip(&["-n", ns, "link", "set", to, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(v)
    }

    fn delete(&self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }

    /// MAC address of `iface` in namespace `ns`.
    pub fn mac(ns: &str, iface: &str) -> Option<String> {
        let o = Command::new("ip")
            .args(["-n", ns, "-br", "link", "show", iface])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(2)
            .map(str::to_string)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        self.delete();
    }
}

/// TCP across the pair (blocking receive).
pub fn tcp_veth(v: &Veth, mode: &str) -> CaseResult {
    crate::harness::sockets(
        "tcp-veth",
        "tcp",
        &format!("{ADDR_B}:0"),
        mode,
        Some((&v.a, &v.b)),
    )
}

/// The raw AF_PACKET limit through the `rawpp` bin (our NIC layer, its own
/// namespace pair with the same MTU): its JSON lines become records.
pub fn rawpp(bin: Option<&Path>, wait: &str, quick: bool, out_dir: &Path) -> CaseResult {
    let Some(bin) = bin else {
        return Ok(vec![Record::unavailable(
            "raw-veth",
            "-",
            "the rawpp bin (benches/src/bin/rawpp.rs) is not built here",
        )]);
    };
    let file = out_dir.join(format!("rawpp-{}.jsonl", std::process::id()));
    let mut c = Command::new(bin);
    c.args(["--out", file.to_str().expect("utf-8"), "--ring", "v2"])
        .args(["--mtu", &MTU.to_string(), "--wait", wait]);
    if quick {
        c.args([
            "--iters",
            "50",
            "--stream-frames",
            "2000",
            "--sizes",
            "0,8,64",
        ]);
    } else {
        c.args(["--iters", "5000", "--stream-frames", "100000"]);
    }
    let o = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("rawpp: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "rawpp failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("rawpp output: {e}"))?;
    let _ = std::fs::remove_file(&file);
    let mut recs = Vec::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let size = v.get("size").and_then(serde_json::Value::as_u64);
        let mode = match v.get("wait").and_then(|x| x.as_str()) {
            Some("spin") => "busy-poll".to_string(),
            Some("poll") => "blocking (poll)".to_string(),
            w => format!("wait {}", w.unwrap_or("?")),
        };
        match v.get("kind").and_then(|x| x.as_str()) {
            Some("latency") => {
                if let Some(m) = f("median_us") {
                    let n = v
                        .get("iters")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    let mut r =
                        Record::new("raw-veth", &mode, size, "latency", m, f("p99_us"), "us");
                    r.n = n;
                    if let Some(lost) = f("lost").filter(|&x| x > 0.0) {
                        r.note = Some(format!("{lost} lost"));
                    }
                    recs.push(r);
                }
            }
            Some("stream") => {
                if let Some(m) = f("mb_per_s") {
                    let mut r = Record::new("raw-veth", &mode, size, "stream_bw", m, None, "MB/s")
                        .with_note(format!(
                            "frames of {} bytes, windowed, one frame per message",
                            f("frame").unwrap_or(0.0)
                        ));
                    r.n = v
                        .get("acked")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    recs.push(r);
                }
            }
            _ => {}
        }
    }
    if recs.is_empty() {
        return Err("rawpp printed no results".into());
    }
    Ok(recs)
}

/// Whether the backend binary has a wire path (`--iface`).
pub fn backend_has_iface(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--iface"))
}

/// Ours across the two hosts: one `mx-backend --iface` per namespace (a
/// peers file naming the other, MTU 9000), the ping guest attached to
/// host A's backend, the pong guest to host B's, waiting by `mode`.
pub fn mx_veth(v: &Veth, bin: &Path, mode: &str) -> CaseResult {
    let mac_a = Veth::mac(&v.a, &v.if_a).ok_or("no MAC for host A")?;
    let mac_b = Veth::mac(&v.b, &v.if_b).ok_or("no MAC for host B")?;
    let nic = |mac: &str| -> Result<String, String> {
        let hex: String = mac.split(':').collect();
        u64::from_str_radix(&hex, 16)
            .map(|n| format!("{n:x}"))
            .map_err(|e| format!("MAC {mac}: {e}"))
    };
    let (nic_a, nic_b) = (nic(&mac_a)?, nic(&mac_b)?);
    let dir = std::env::temp_dir().join(format!("mx-compare-veth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let start = |ns: &str, iface: &str, me: &str, peer_mac: &str, peer: &str| {
        let peers = dir.join(format!("{me}.peers"));
        std::fs::write(&peers, format!("{peer_mac} {peer}:0\n")).map_err(|e| e.to_string())?;
        crate::procs::BackendProc::try_start_with(&crate::procs::BackendOpts {
            idle: "yield".into(),
            spin_us: 200,
            max_endpoints: 32,
            bin: Some(bin.to_path_buf()),
            netns: Some(ns.into()),
            extra: vec![
                "--iface".into(),
                iface.into(),
                "--mtu".into(),
                MTU.to_string(),
                "--peers".into(),
                peers.to_string_lossy().into_owned(),
                "--hostname".into(),
                format!("{me}:0"),
            ],
        })
    };
    let be_a = start(&v.a, &v.if_a, "mxb-a", &mac_b, "mxb-b")?;
    let be_b = start(&v.b, &v.if_b, "mxb-b", &mac_a, "mxb-a")?;
    let sock_a = be_a.socket.to_string_lossy().into_owned();
    let sock_b = be_b.socket.to_string_lossy().into_owned();
    let cpu = crate::procs::TickWindow::start(be_a.pid());
    let mut pong = crate::procs::Guest::spawn(&["mx-pong", &sock_b, mode, "2", "1", &nic_a]);
    let mut ping =
        crate::procs::Guest::spawn(&["mx-ping", &sock_a, mode, "1", "2", "mx-veth", &nic_b]);
    let res = crate::harness::collect(&mut ping, std::time::Duration::from_secs(150));
    let (pct, _) = cpu.percent();
    let done = crate::harness::server_done(&mut pong);
    let _ = std::fs::remove_dir_all(&dir);
    let mut recs = res?;
    done?;
    recs.push(
        Record::new("mx-veth", mode, None, "backend_cpu", pct, None, "%")
            .with_note("host A's backend (--idle yield, --iface), over the whole run"),
    );
    Ok(recs)
}
