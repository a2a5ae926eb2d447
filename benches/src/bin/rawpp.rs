//! rawpp: the raw AF_PACKET baseline with our own NIC layer
//! (`backend::nic::af_packet::PacketNic`): ping-pong one-way latency by payload
//! size and windowed streaming bandwidth between two network namespaces
//! joined by a veth pair. It is what the MX stack over MXoE can at best
//! reach on this wire; compare with `shared/baselines/rawpp.c`.
//!
//! ```text
//! rawpp [--out FILE] [--ring v3|v2|both] [--wait poll|spin] [--iters N]
//!       [--mtu N] [--sizes a,b,..] [--stream-frames N]
//! ```
//!
//! Needs root (namespaces, raw sockets). Frames: 14-byte Ethernet head +
//! 2-byte MXoE peer index + 4-byte type + 4-byte sequence (24 bytes), then
//! `size` payload bytes read zero-copy from a shared memfd
//! (`Payload::Shared`), padded to 60. One-way latency = round trip / 2,
//! median and p99 after a warm-up of a tenth of the iterations. Streaming:
//! bursts of 64 frames, at most 512 in flight, the server acking with its
//! cumulative count in whole bursts (at most one ack per receive batch). Results go to stdout as a table and, with
//! `--out`, as JSON lines.

use backend::nic::af_packet::{PacketNic, PacketOpts, RingVersion, ETHERTYPE_MXOE};
use backend::nic::{Nic, Payload};
use mx_proto::platform::local::MemfdPages;
use mx_proto::platform::SharedMem;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HDR: usize = 24;
const T_PING: u32 = 1;
const T_PONG: u32 = 2;
const T_DATA: u32 = 3;
const T_ACK: u32 = 4;
const T_RESET: u32 = 5;
const T_END: u32 = 6;
const BURST: u32 = 64;
const WINDOW: u32 = 512;
const NS_PREFIX: &str = "x2mb";

#[derive(Clone)]
struct Args {
    out: Option<String>,
    rings: Vec<RingVersion>,
    spin: bool,
    iters: usize,
    mtu: u32,
    sizes: Option<Vec<usize>>,
    stream_frames: u32,
}

fn usage() -> ! {
    eprintln!(
        "usage: rawpp [--out FILE] [--ring v3|v2|both] [--wait poll|spin] [--iters N] \
         [--mtu N] [--sizes a,b,..] [--stream-frames N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        out: None,
        rings: vec![RingVersion::V2, RingVersion::V3],
        spin: false,
        iters: 2000,
        mtu: 9000,
        sizes: None,
        stream_frames: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--out" => a.out = Some(v()),
            "--ring" => {
                a.rings = match v().as_str() {
                    "v2" => vec![RingVersion::V2],
                    "v3" => vec![RingVersion::V3],
                    "both" => vec![RingVersion::V2, RingVersion::V3],
                    _ => usage(),
                }
            }
            "--wait" => {
                a.spin = match v().as_str() {
                    "spin" => true,
                    "poll" => false,
                    _ => usage(),
                }
            }
            "--iters" => a.iters = v().parse().unwrap_or_else(|_| usage()),
            "--mtu" => a.mtu = v().parse().unwrap_or_else(|_| usage()),
            "--stream-frames" => a.stream_frames = v().parse().unwrap_or_else(|_| usage()),
            "--sizes" => {
                a.sizes = Some(
                    v().split(',')
                        .map(|s| s.parse().unwrap_or_else(|_| usage()))
                        .collect(),
                )
            }
            _ => usage(),
        }
    }
    a.iters = a.iters.max(10);
    a
}

// ---------------------------------------------------------------- netns ---

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair (`eth0` in each); deleted on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new(mtu: u32) -> Result<Pair, String> {
        // Namespaces of earlier runs whose process is gone.
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let mut parts = name.split('-');
                if parts.next() == Some(NS_PREFIX) {
                    if let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) {
                        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                            let _ = ip(&["netns", "del", &name]);
                        }
                    }
                }
            }
        }
        let pid = std::process::id();
        let p = Pair {
            a: format!("{NS_PREFIX}-{pid}-a"),
            b: format!("{NS_PREFIX}-{pid}-b"),
        };
        let m = mtu.to_string();
        ip(&["netns", "add", &p.a])?;
        ip(&["netns", "add", &p.b])?;
        ip(&[
            "-n",
            &p.a,
            "link",
            "add",
            "eth0",
            "mtu",
            &m,
            "address",
            "02:58:32:bb:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &p.b,
            "mtu",
            &m,
            "address",
            "02:58:32:bb:00:02",
        ])?;
        for ns in [&p.a, &p.b] {
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        // Frames vanish until link-watch has activated the links.
        let deadline = Instant::now() + Duration::from_secs(10);
        for ns in [&p.a, &p.b] {
            loop {
                let o = Command::new("ip")
                    .args(["-n", ns, "-o", "link", "show", "eth0"])
                    .output()
                    .map_err(|e| e.to_string())?;
                if String::from_utf8_lossy(&o.stdout).contains(" state UP ") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("eth0 of {ns} not up"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(p)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

// --------------------------------------------------------------- frames ---

fn header(dst: [u8; 6], src: [u8; 6], ty: u32, seq: u32) -> [u8; HDR] {
    let mut h = [0u8; HDR];
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ETHERTYPE_MXOE.to_be_bytes());
    h[14..16].copy_from_slice(&[0xff, 0xff]);
    h[16..20].copy_from_slice(&ty.to_be_bytes());
    h[20..24].copy_from_slice(&seq.to_be_bytes());
    h
}

fn ty_seq(f: &[u8]) -> (u32, u32) {
    if f.len() < HDR {
        return (0, 0);
    }
    (
        u32::from_be_bytes(f[16..20].try_into().unwrap_or_default()),
        u32::from_be_bytes(f[20..24].try_into().unwrap_or_default()),
    )
}

/// Waits for the ring to have something (poll), or just returns (spin).
fn wait(nic: &PacketNic, spin: bool, timeout: Duration) {
    if !spin {
        let _ = nic.wait_readable(Some(timeout));
    }
}

/// The echo/sink side, until T_END or `stop`.
fn server(mut nic: PacketNic, spin: bool, stop: &AtomicBool) -> backend::nic::NicStats {
    let me = nic.mac();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut count = 0u32;
    let mut acked = 0u32;
    let mut peer = [0xffu8; 6];
    while !stop.load(Ordering::Relaxed) {
        wait(&nic, spin, Duration::from_millis(50));
        let mut n = 0;
        let _ = nic.recv_batch(256, &mut |f| {
            if frames.len() <= n {
                frames.push(Vec::with_capacity(16384));
            }
            frames[n].clear();
            frames[n].extend_from_slice(f);
            n += 1;
        });
        for f in &mut frames[..n] {
            let (ty, _) = ty_seq(f);
            peer.copy_from_slice(&f[6..12]);
            match ty {
                T_PING => {
                    f.copy_within(6..12, 0);
                    f[6..12].copy_from_slice(&me);
                    f[16..20].copy_from_slice(&T_PONG.to_be_bytes());
                    let _ = nic.send(f, Payload::None);
                }
                T_DATA => count += 1,
                T_RESET => {
                    count = 0;
                    acked = 0;
                }
                T_END => return nic.stats(),
                _ => {}
            }
        }
        // Cumulative acks in whole bursts (the client sends whole bursts),
        // at most one per receive batch.
        let whole = count / BURST * BURST;
        if whole > acked {
            let _ = nic.send(&header(peer, me, T_ACK, whole), Payload::None);
            acked = whole;
        }
        let _ = nic.flush();
    }
    nic.stats()
}

struct Lat {
    size: usize,
    lost: usize,
    min: f64,
    median: f64,
    p99: f64,
}

fn latency(nic: &mut PacketNic, peer: [u8; 6], mem: &MemfdPages, size: usize, a: &Args) -> Lat {
    let me = nic.mac();
    let warm = a.iters / 10 + 5;
    let mut one_way = Vec::with_capacity(a.iters);
    let mut lost = 0;
    for k in 0..warm + a.iters {
        let seq = k as u32 + 1;
        let t0 = Instant::now();
        nic.send(
            &header(peer, me, T_PING, seq),
            Payload::Shared {
                mem,
                offset: 0,
                len: size,
            },
        )
        .expect("send");
        nic.flush().expect("flush");
        let deadline = t0 + Duration::from_secs(1);
        let mut done = false;
        while !done {
            if Instant::now() > deadline {
                lost += 1;
                break;
            }
            wait(nic, a.spin, Duration::from_millis(100));
            let _ = nic.recv_batch(16, &mut |f| {
                done |= ty_seq(f) == (T_PONG, seq);
            });
        }
        if done && k >= warm {
            one_way.push(t0.elapsed().as_secs_f64() * 1e6 / 2.0);
        }
    }
    one_way.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        one_way
            .get(((one_way.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Lat {
        size,
        lost,
        min: pick(0.0),
        median: pick(0.5),
        p99: pick(0.99),
    }
}

struct Stream {
    size: usize,
    sent: u32,
    acked: u32,
    secs: f64,
    stalled: bool,
}

fn stream(nic: &mut PacketNic, peer: [u8; 6], mem: &MemfdPages, size: usize, a: &Args) -> Stream {
    let me = nic.mac();
    let total = a.stream_frames;
    nic.send(&header(peer, me, T_RESET, 0), Payload::None)
        .expect("send");
    nic.flush().expect("flush");
    let t0 = Instant::now();
    let (mut sent, mut acked) = (0u32, 0u32);
    let mut progress = Instant::now();
    let mut stalled = false;
    let goal = total.div_ceil(BURST) * BURST;
    while acked < goal {
        while sent < goal && sent - acked + BURST <= WINDOW {
            for _ in 0..BURST {
                nic.send(
                    &header(peer, me, T_DATA, sent),
                    Payload::Shared {
                        mem,
                        offset: 0,
                        len: size,
                    },
                )
                .expect("send");
                sent += 1;
            }
            let _ = nic.flush();
        }
        wait(nic, a.spin, Duration::from_millis(10));
        let before = acked;
        let _ = nic.recv_batch(64, &mut |f| {
            if let (T_ACK, n) = ty_seq(f) {
                acked = acked.max(n);
            }
        });
        if acked > before {
            progress = Instant::now();
        } else if progress.elapsed() > Duration::from_secs(1) {
            stalled = true;
            break;
        }
    }
    Stream {
        size,
        sent,
        acked,
        secs: t0.elapsed().as_secs_f64(),
        stalled,
    }
}

fn ring_name(r: RingVersion) -> &'static str {
    match r {
        RingVersion::V2 => "v2",
        RingVersion::V3 => "v3",
    }
}

fn main() {
    let a = parse_args();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        eprintln!("rawpp: needs root (network namespaces, raw sockets)");
        std::process::exit(2);
    }
    let pair = Pair::new(a.mtu).unwrap_or_else(|e| {
        eprintln!("rawpp: setting up namespaces: {e}");
        std::process::exit(1);
    });
    let max = a.mtu as usize + 14 - HDR;
    let sizes: Vec<usize> = a
        .sizes
        .clone()
        .unwrap_or_else(|| vec![0, 8, 64, 1024, 4096, 8192, max])
        .into_iter()
        .filter(|&s| s <= max)
        .collect();
    let mem = MemfdPages::new(max.div_ceil(4096)).expect("memfd");
    let fill: Vec<u8> = (0..mem.len()).map(|i| i as u8).collect();
    mem.write_at(0, &fill).expect("fill");
    let mut out = a.out.as_ref().map(|p| {
        std::fs::File::create(p).unwrap_or_else(|e| {
            eprintln!("rawpp: {p}: {e}");
            std::process::exit(1);
        })
    });
    let wait_name = if a.spin { "spin" } else { "poll" };

    for &ring in &a.rings {
        let opts = PacketOpts {
            ring,
            ..PacketOpts::default()
        };
        let mut client = PacketNic::open_in_netns(&pair.a, "eth0", &opts).expect("open client NIC");
        let srv = PacketNic::open_in_netns(&pair.b, "eth0", &opts).expect("open server NIC");
        let peer = srv.mac();
        let stop = AtomicBool::new(false);
        let rn = ring_name(ring);
        std::thread::scope(|s| {
            let st = &stop;
            let h = s.spawn(move || server(srv, a.spin, st));
            println!(
                "\nrawpp ring={rn} wait={wait_name} mtu={} iters={} (ring {} MiB, qdisc bypass {})",
                a.mtu,
                a.iters,
                client.ring_bytes() >> 20,
                client.qdisc_bypass()
            );
            println!(
                "{:>6} {:>6} {:>10} {:>10} {:>10} {:>5}",
                "size", "frame", "min_us", "median_us", "p99_us", "lost"
            );
            for &size in &sizes {
                let l = latency(&mut client, peer, &mem, size, &a);
                let frame = (HDR + l.size).max(60);
                println!(
                    "{:>6} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>5}",
                    l.size, frame, l.min, l.median, l.p99, l.lost
                );
                if let Some(f) = out.as_mut() {
                    let _ = writeln!(
                        f,
                        "{{\"bench\":\"rawpp\",\"kind\":\"latency\",\"ring\":\"{rn}\",\"wait\":\"{wait_name}\",\
                         \"mtu\":{},\"size\":{},\"frame\":{frame},\"iters\":{},\"lost\":{},\
                         \"min_us\":{:.3},\"median_us\":{:.3},\"p99_us\":{:.3}}}",
                        a.mtu, l.size, a.iters, l.lost, l.min, l.median, l.p99
                    );
                }
            }
            println!(
                "{:>6} {:>6} {:>10} {:>10} {:>10} {:>8}",
                "size", "frame", "frames", "frames/s", "MB/s", "stalled"
            );
            for &size in sizes.iter().filter(|&&s| s >= 64) {
                let r = stream(&mut client, peer, &mem, size, &a);
                let fps = f64::from(r.acked) / r.secs;
                let mbps = fps * r.size as f64 / 1e6;
                let frame = HDR + r.size;
                println!(
                    "{:>6} {:>6} {:>10} {:>10.0} {:>10.1} {:>8}",
                    r.size, frame, r.acked, fps, mbps, r.stalled
                );
                if let Some(f) = out.as_mut() {
                    let _ = writeln!(
                        f,
                        "{{\"bench\":\"rawpp\",\"kind\":\"stream\",\"ring\":\"{rn}\",\"wait\":\"{wait_name}\",\
                         \"mtu\":{},\"size\":{},\"frame\":{frame},\"sent\":{},\"acked\":{},\"secs\":{:.4},\
                         \"frames_per_s\":{fps:.0},\"mb_per_s\":{mbps:.1},\"stalled\":{}}}",
                        a.mtu, r.size, r.sent, r.acked, r.secs, r.stalled
                    );
                }
            }
            let stats = client.stats();
            println!(
                "client: tx {} rx {} tx_errors {} rx_kernel_drops {}",
                stats.tx_frames, stats.rx_frames, stats.tx_errors, stats.rx_kernel_drops
            );
            for _ in 0..3 {
                let _ = client.send(&header(peer, client.mac(), T_END, 0), Payload::None);
            }
            let _ = client.flush();
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            if let Ok(st) = h.join() {
                println!(
                    "server: tx {} rx {} tx_errors {} rx_kernel_drops {}",
                    st.tx_frames, st.rx_frames, st.tx_errors, st.rx_kernel_drops
                );
            }
        });
    }
    drop(pair);
}
