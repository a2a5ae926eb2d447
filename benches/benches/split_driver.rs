//! The split driver on the local platform, measured next to plain
//! shared-memory rings on the same machine in the same run.
//!
//! ```text
//! cargo bench -p mx-benches --bench split_driver
//! ```
//!
//! What it measures (see `docs/perf-split-driver.md` for the method and
//! the numbers):
//!
//! 1. baselines: an `mx_proto::ring` ping-pong of 64-byte slots between two
//!    processes over a memfd, direct (A <-> B) and through a relay process
//!    (A <-> R <-> B, the floor of any split driver); the same rings
//!    streaming 8 KiB slots in place (claim/write, skip/read, and a
//!    `copy_shared` in the relay: the copies the backend's medium path
//!    does);
//! 2. one-way latency (half round trip) of an 8-byte tiny message guest ->
//!    backend -> guest, for every backend idle policy (`spin`, `yield`,
//!    `block`) and guest wait policy (`spin`, `yield`, `block` through
//!    `prepare_to_sleep` + `Doorbell::wait`), plus a `--spin-us` sweep;
//! 3. medium-message bandwidth (32 KiB and max-medium messages streamed
//!    with the whole send queue in flight);
//! 4. the backend's CPU use over 5 s with 4 attached, idle guests.
//!
//! Every process is this binary re-run with `--child <role> ...`; the
//! backend runs the library's service loop (`Backend::run`, what
//! `mx-backend` runs), or the binary named by `$MX_BACKEND_BIN`.
//! Configurations that collapse (more spinners than cores) are cut after a
//! few seconds and reported with the iterations they managed.

use mx_benches::machine::{loadavg, Machine};
use mx_benches::procs::{
    child_cmd, cpu_ticks, fmt_cpu, run_backend, BackendProc, CpuWindow, Guest,
};
use mx_benches::shm::{
    area, claim_wait, layout, map, memfd, pop_wait, push_now, skip_wait, stuck, Shm, Small, Wait,
};
use mx_benches::split::{
    linger, open, pong, read_peer, split_pingpong, Clock, END_MATCH, ITERS, STALL,
};
use mx_proto::channel::QueueSlot;
use mx_proto::msg::command::MediumFrag;
use mx_proto::msg::{Command, Event, QUEUE_SLOT_SIZE};
use mx_proto::platform::{copy_shared, SharedMem};
use mx_proto::ring::{ControlPage, Layout, Side};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes streamed per bandwidth configuration.
const STREAM_BYTES: usize = 192 << 20;
/// Marker in the first word of a ping slot: stop.
const STOP: u64 = u64::MAX;

/// Child: the far end of a shm baseline. `relay == false`: the backend
/// side of rings 0/1; `true`: the frontend side of rings 1/2 (the relay
/// sits between).
fn shm_echo(fd: i32, big: bool, relay: bool, w: Wait, chunks: usize) {
    // SAFETY: the descriptor was inherited for this purpose and nothing
    // else in this process uses it.
    let file = unsafe { File::from_raw_fd(fd) };
    let l = layout(big);
    let shm = map(&file, l.region_len());
    let side = if relay { Side::Frontend } else { Side::Backend };
    let page = ControlPage::attach(shm.clone(), &l, side).expect("attach");
    let (rx_ring, tx_ring) = if relay { (1, 2) } else { (0, 1) };
    if !big {
        let mut rx = page.consumer::<Small>(rx_ring).unwrap();
        let mut tx = page.producer::<Small>(tx_ring).unwrap();
        loop {
            let v = pop_wait(&mut rx, w);
            let _ = rx.release();
            push_now(&mut tx, &v, w);
            if v[0] == STOP {
                return;
            }
        }
    }
    let mut rx = page.consumer::<QueueSlot>(rx_ring).unwrap();
    let mut tx = page.producer::<QueueSlot>(tx_ring).unwrap();
    let at = area(&l, rx_ring);
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..chunks {
        let pos = skip_wait(&mut rx, w);
        let off = (i * QUEUE_SLOT_SIZE) % buf.len();
        SharedMem::read_at(
            &*shm,
            at + pos * QUEUE_SLOT_SIZE,
            &mut buf[off..off + QUEUE_SLOT_SIZE],
        )
        .unwrap();
        let _ = rx.release();
    }
    // The acknowledgement: one slot back.
    let _ = claim_wait(&mut tx, w);
    let _ = tx.publish();
}

/// Child: the relay between A (rings 0 and 3) and B (rings 1 and 2).
fn shm_relay(fd: i32, big: bool, w: Wait) {
    // SAFETY: as in `shm_echo`.
    let file = unsafe { File::from_raw_fd(fd) };
    let l = layout(big);
    let shm = map(&file, l.region_len());
    let page = ControlPage::attach(shm.clone(), &l, Side::Backend).expect("attach");
    let t0 = Instant::now();
    if !big {
        let mut ins = [
            page.consumer::<Small>(0).unwrap(),
            page.consumer::<Small>(2).unwrap(),
        ];
        let mut outs = [
            page.producer::<Small>(1).unwrap(),
            page.producer::<Small>(3).unwrap(),
        ];
        loop {
            let mut moved = false;
            for d in 0..2 {
                if let Some(v) = ins[d].pop().unwrap() {
                    let _ = ins[d].release();
                    push_now(&mut outs[d], &v, w);
                    moved = true;
                    if d == 1 && v[0] == STOP {
                        return;
                    }
                }
            }
            if !moved {
                w.relax();
                stuck(t0, "relay traffic");
            }
        }
    }
    let mut ins = [
        page.consumer::<QueueSlot>(0).unwrap(),
        page.consumer::<QueueSlot>(2).unwrap(),
    ];
    let mut outs = [
        page.producer::<QueueSlot>(1).unwrap(),
        page.producer::<QueueSlot>(3).unwrap(),
    ];
    let (ia, oa) = ([area(&l, 0), area(&l, 2)], [area(&l, 1), area(&l, 3)]);
    loop {
        let mut moved = false;
        for d in 0..2 {
            if outs[d].free_slots().unwrap() == 0 {
                continue;
            }
            let Some(p) = ins[d].skip().unwrap() else {
                continue;
            };
            let q = outs[d].claim().expect("room was checked") as usize;
            copy_shared(
                &*shm,
                ia[d] + p as usize * QUEUE_SLOT_SIZE,
                &*shm,
                oa[d] + q * QUEUE_SLOT_SIZE,
                QUEUE_SLOT_SIZE,
            )
            .unwrap();
            let _ = outs[d].publish();
            let _ = ins[d].release();
            moved = true;
            if d == 1 {
                return; // the acknowledgement went through: done
            }
        }
        if !moved {
            w.relax();
            stuck(t0, "relay traffic");
        }
    }
}

struct ShmRun {
    _file: File,
    shm: Arc<Shm>,
    l: Layout,
    /// A's side, initialised before any child attaches.
    page: ControlPage<Arc<Shm>>,
    children: Vec<Child>,
}

fn shm_start(big: bool, relay: bool, guest: Wait, relay_w: Wait, chunks: usize) -> ShmRun {
    let l = layout(big);
    let file = memfd(l.region_len());
    let shm = map(&file, l.region_len());
    let page = ControlPage::init(shm.clone(), &l, Side::Frontend).expect("init");
    let fd = file.as_raw_fd().to_string();
    let kind = if big { "big" } else { "small" };
    let mut children = vec![child_cmd(&[
        "shm-echo",
        &fd,
        kind,
        if relay { "relay" } else { "direct" },
        guest.name(),
        &chunks.to_string(),
    ])
    .stdout(Stdio::null())
    .spawn()
    .expect("spawn")];
    if relay {
        children.push(
            child_cmd(&["shm-relay", &fd, kind, relay_w.name()])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn"),
        );
    }
    ShmRun {
        _file: file,
        shm,
        l,
        page,
        children,
    }
}

fn shm_finish(mut run: ShmRun) {
    for c in &mut run.children {
        let st = c.wait().expect("wait child");
        assert!(st.success(), "shm child failed: {st}");
    }
    drop(run);
}

/// Ping-pong of 64-byte slots; returns round trips in ns.
fn shm_pingpong(relay: bool, guest: Wait, relay_w: Wait) -> Vec<u64> {
    let run = shm_start(false, relay, guest, relay_w, 0);
    let page = &run.page;
    let mut tx = page.producer::<Small>(0).unwrap();
    let mut rx = page.consumer::<Small>(if relay { 3 } else { 1 }).unwrap();
    let mut rtt = Vec::with_capacity(ITERS);
    let mut clock = Clock::new();
    for i in 0.. {
        let Some(measured) = clock.next(i, rtt.len()) else {
            break;
        };
        let t = Instant::now();
        push_now(&mut tx, &[i as u64; 8], guest);
        let v = pop_wait(&mut rx, guest);
        let _ = rx.release();
        let dt = t.elapsed().as_nanos() as u64;
        assert_eq!(v[0], i as u64);
        if measured {
            rtt.push(dt);
        }
    }
    push_now(&mut tx, &[STOP; 8], guest);
    let _ = pop_wait(&mut rx, guest);
    let _ = rx.release();
    shm_finish(run);
    rtt
}

/// The copies alone: one process writes each 8 KiB chunk into a slot of
/// shared memory and reads it back out (what the two ends of a queue do),
/// no second core involved; bytes per second.
fn copy_only(bytes: usize) -> f64 {
    let l = layout(true);
    let file = memfd(l.region_len());
    let shm = map(&file, l.region_len());
    let at = area(&l, 0);
    let src: Vec<u8> = (0..256 * 1024).map(|i| i as u8).collect();
    let mut dst = vec![0u8; 256 * 1024];
    let chunks = bytes / QUEUE_SLOT_SIZE;
    let t = Instant::now();
    for i in 0..chunks {
        let slot = at + (i % 64) * QUEUE_SLOT_SIZE;
        let off = (i * QUEUE_SLOT_SIZE) % src.len();
        SharedMem::write_at(&*shm, slot, &src[off..off + QUEUE_SLOT_SIZE]).unwrap();
        SharedMem::read_at(&*shm, slot, &mut dst[off..off + QUEUE_SLOT_SIZE]).unwrap();
    }
    (chunks * QUEUE_SLOT_SIZE) as f64 / t.elapsed().as_secs_f64()
}

/// Stream `bytes` through 8 KiB queue slots; returns bytes per second.
fn shm_stream(relay: bool, guest: Wait, relay_w: Wait, bytes: usize) -> f64 {
    let chunks = bytes / QUEUE_SLOT_SIZE;
    let run = shm_start(true, relay, guest, relay_w, chunks);
    let page = &run.page;
    let mut tx = page.producer::<QueueSlot>(0).unwrap();
    let mut rx = page
        .consumer::<QueueSlot>(if relay { 3 } else { 1 })
        .unwrap();
    let at = area(&run.l, 0);
    let src: Vec<u8> = (0..256 * 1024).map(|i| i as u8).collect();
    let t = Instant::now();
    for i in 0..chunks {
        let pos = claim_wait(&mut tx, guest);
        let off = (i * QUEUE_SLOT_SIZE) % src.len();
        SharedMem::write_at(
            &*run.shm,
            at + pos * QUEUE_SLOT_SIZE,
            &src[off..off + QUEUE_SLOT_SIZE],
        )
        .unwrap();
        let _ = tx.publish();
    }
    let _ = skip_wait(&mut rx, guest);
    let secs = t.elapsed().as_secs_f64();
    let _ = rx.release();
    shm_finish(run);
    (chunks * QUEUE_SLOT_SIZE) as f64 / secs
}

/// Child: receive `count` medium messages of `size`, copying every
/// fragment out, then send one tiny back.
fn sink(socket: &Path, w: Wait, size: usize, count: usize) {
    let mut n = open(socket);
    println!("READY {} {}", n.ep.id(), n.ep.session());
    let (ep, session) = read_peer();
    let mut buf = vec![0u8; size];
    let (mut got, mut msgs) = (0usize, 0usize);
    while msgs < count {
        let slot = n.next(w);
        match Event::parse(&slot).expect("event") {
            Event::RecvMediumFrag {
                frag_seqnum,
                frag_length,
                recvq_slot,
                ..
            } => {
                let off = usize::from(frag_seqnum) * n.frag_max;
                let len = usize::from(frag_length);
                n.ep.recvq_read(recvq_slot, 0, &mut buf[off..off + len])
                    .unwrap();
                n.ep.recvq_release(recvq_slot).unwrap();
                got += len;
                if got == size {
                    got = 0;
                    msgs += 1;
                }
            }
            other => panic!("sink got {other:?}"),
        }
        n.ep.release_events().unwrap();
    }
    n.tiny(ep, session, 0, END_MATCH, &[]);
    linger();
}

/// Stream `count` messages of `size` to a sink; bytes per second, and the
/// CPU use of backend, source and sink.
fn split_stream(idle: &str, w: Wait, size: usize) -> (f64, Vec<f64>) {
    let count = STREAM_BYTES / size;
    let be = BackendProc::start(idle, 200);
    let sock = be.socket.to_str().unwrap().to_string();
    let mut me = open(&be.socket);
    let mut g = Guest::spawn(&[
        "sink",
        &sock,
        w.name(),
        &size.to_string(),
        &count.to_string(),
    ]);
    let (ep, session) = g.ready();
    g.peer(me.ep.id(), me.ep.session());
    let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let nslots = me.ep.sendq_slots() as u16;
    let mut free: Vec<u16> = (0..nslots).collect();
    let nfrags = size.div_ceil(me.frag_max);
    let cpu = CpuWindow::start(&[be.pid(), std::process::id(), g.child.id()]);
    let t = Instant::now();
    let mut sent = 0;
    let mut acked = false;
    while !acked {
        while sent < count && free.len() >= nfrags {
            if (me.ep.command_space().unwrap() as usize) < nfrags {
                break;
            }
            let hdr = me.hdr(ep, session, sent as u16, sent as u64);
            for (i, chunk) in src.chunks(me.frag_max).enumerate() {
                let slot = free.pop().unwrap();
                me.ep.sendq_write(slot, chunk).unwrap();
                me.ep
                    .post(&Command::MediumFrag(MediumFrag {
                        hdr,
                        msg_length: size as u32,
                        frag_seqnum: i as u8,
                        frag_length: chunk.len() as u16,
                        sendq_slot: slot,
                    }))
                    .unwrap();
            }
            sent += 1;
        }
        me.ep.flush().unwrap();
        let slot = me.next(w);
        match Event::parse(&slot).expect("event") {
            Event::SendMediumDone { sendq_slot } => free.push(sendq_slot),
            Event::RecvTiny { hdr, .. } if hdr.match_info == END_MATCH => acked = true,
            other => panic!("source got {other:?}"),
        }
        // Take every completion already there before posting again.
        while let Some(slot) = me.ep.next_event().unwrap() {
            match Event::parse(&slot).expect("event") {
                Event::SendMediumDone { sendq_slot } => free.push(sendq_slot),
                Event::RecvTiny { hdr, .. } if hdr.match_info == END_MATCH => acked = true,
                other => panic!("source got {other:?}"),
            }
        }
        me.ep.release_events().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let c = cpu.percent();
    assert_eq!(sent, count);
    g.finish();
    drop(me);
    drop(be);
    ((count * size) as f64 / secs, c)
}

/// Child: open an endpoint and sit on it until stdin closes.
fn idle_guest(socket: &Path) {
    let n = open(socket);
    println!("READY {} {}", n.ep.id(), n.ep.session());
    linger();
    drop(n);
}

/// Backend CPU (% of one core) over `secs` with 4 idle guests, for each
/// idle policy at once.
fn idle_cpu(secs: u64) -> Vec<(String, f64)> {
    let policies = ["spin", "yield", "block"];
    let bes: Vec<BackendProc> = policies
        .iter()
        .map(|p| BackendProc::start(p, 200))
        .collect();
    let mut guests = Vec::new();
    for be in &bes {
        for _ in 0..4 {
            guests.push(Guest::spawn(&["idle", be.socket.to_str().unwrap()]));
        }
    }
    for g in &guests {
        let _ = g.ready();
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before: Vec<u64> = bes.iter().map(|b| cpu_ticks(b.pid())).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t.elapsed().as_secs_f64();
    let out = bes
        .iter()
        .zip(before)
        .zip(policies)
        .map(|((b, t0), p)| {
            let used = (cpu_ticks(b.pid()) - t0) as f64 / hz;
            (p.to_string(), 100.0 * used / wall)
        })
        .collect();
    for g in guests {
        g.finish();
    }
    out
}

// ------------------------------------------------------------ report ---

struct Lat {
    median: f64,
    p99: f64,
    n: usize,
    stalled: bool,
}

/// Half round trips in microseconds.
fn half(mut rtt: Vec<u64>, stalled: bool) -> Lat {
    if rtt.is_empty() {
        rtt.push(u64::MAX);
    }
    rtt.sort_unstable();
    let at = |q: f64| rtt[((rtt.len() - 1) as f64 * q).round() as usize] as f64 / 2000.0;
    Lat {
        median: at(0.5),
        p99: at(0.99),
        n: rtt.len(),
        stalled,
    }
}

struct Table(Vec<Vec<String>>);

impl Table {
    fn row(&mut self, cells: Vec<String>) {
        let mut line = format!("  {:<66}", cells[0]);
        for c in &cells[1..] {
            line.push_str(&format!(" {c:>10}"));
        }
        println!("{line}");
        self.0.push(cells);
    }
    fn lat(&mut self, what: String, l: &Lat, direct: f64, relay: f64, cpu: Option<&[f64]>) {
        let note = if l.stalled {
            format!(" (stalled > {STALL:?} after {} round trips)", l.n)
        } else if l.n < ITERS {
            format!(" (cut: {} round trips)", l.n)
        } else {
            String::new()
        };
        let mut cells = vec![
            format!("{what}{note}"),
            format!("{:.2}", l.median),
            format!("{:.2}", l.p99),
            format!("{:.1}x", l.median / direct),
            format!("{:.2}x", l.median / relay),
        ];
        if let Some(c) = cpu {
            cells.push(fmt_cpu(c));
        }
        self.row(cells);
    }
    fn print(&self, title: &str, head: &[&str]) {
        println!("\n### {title}\n");
        println!("| {} |", head.join(" | "));
        println!("|---{}|", "|---:".repeat(head.len() - 1));
        for r in &self.0 {
            println!("| {} |", r.join(" | "));
        }
    }
}

fn machine() {
    let m = Machine::probe();
    let l = loadavg();
    println!(
        "machine: {} cores, {}, Linux {}, load average {:.2} {:.2} {:.2}",
        m.nproc, m.cpu, m.kernel, l[0], l[1], l[2]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let a: Vec<&str> = args[2..].iter().map(String::as_str).collect();
        match a.as_slice() {
            ["backend", sock, idle, spin] => run_backend(sock, idle, spin, None),
            ["pong", sock, w] => pong(Path::new(sock), Wait::parse(w)),
            ["sink", sock, w, size, count] => sink(
                Path::new(sock),
                Wait::parse(w),
                size.parse().unwrap(),
                count.parse().unwrap(),
            ),
            ["idle", sock] => idle_guest(Path::new(sock)),
            ["shm-echo", fd, kind, topo, w, chunks] => shm_echo(
                fd.parse().unwrap(),
                *kind == "big",
                *topo == "relay",
                Wait::parse(w),
                chunks.parse().unwrap(),
            ),
            ["shm-relay", fd, kind, w] => {
                shm_relay(fd.parse().unwrap(), *kind == "big", Wait::parse(w))
            }
            _ => panic!("bad child arguments {a:?}"),
        }
        return;
    }
    if let Ok(case) = std::env::var("MX_BENCH_CASE") {
        // One split-driver latency case, e.g. `spin:200:spin` (backend idle
        // policy, spin window in us, guest policy), for investigations.
        let f: Vec<&str> = case.split(':').collect();
        let (rtt, stalled, cpu) = split_pingpong(f[0], f[1].parse().unwrap(), Wait::parse(f[2]));
        let l = half(rtt, stalled);
        println!(
            "{case}: median {:.2} us, p99 {:.2} us, {} round trips, stalled {stalled}, CPU % {}",
            l.median,
            l.p99,
            l.n,
            fmt_cpu(&cpu)
        );
        return;
    }
    if let Ok(case) = std::env::var("MX_BENCH_STREAM") {
        // One bandwidth case, e.g. `yield:block:32768` (backend idle
        // policy, guest policy, message size).
        let f: Vec<&str> = case.split(':').collect();
        let (r, cpu) = split_stream(f[0], Wait::parse(f[1]), f[2].parse().unwrap());
        println!("{case}: {:.0} MB/s, CPU % {}", r / 1e6, fmt_cpu(&cpu));
        return;
    }
    let t_all = Instant::now();
    machine();
    let (spin, yld, block) = (Wait::Spin, Wait::Yield, Wait::Block);

    println!("\n1. shared-memory ring baselines, 64-byte slots, half round trip (us)");
    let mut base = Table(Vec::new());
    let direct = half(shm_pingpong(false, spin, spin), false);
    let d2 = half(shm_pingpong(false, yld, yld), false);
    let mut relay_best = f64::MAX;
    let mut relays = Vec::new();
    for (g, r) in [(yld, yld), (yld, spin), (spin, yld), (spin, spin)] {
        let l = half(shm_pingpong(true, g, r), false);
        if l.n == ITERS {
            relay_best = relay_best.min(l.median);
        }
        relays.push((
            format!(
                "shm relay A<->R<->B, guests {}, relay {}",
                g.name(),
                r.name()
            ),
            l,
        ));
    }
    base.lat(
        "shm ring A<->B, spin".into(),
        &direct,
        direct.median,
        relay_best,
        None,
    );
    base.lat(
        "shm ring A<->B, yield".into(),
        &d2,
        direct.median,
        relay_best,
        None,
    );
    for (what, l) in &relays {
        base.lat(what.clone(), l, direct.median, relay_best, None);
    }

    println!("\n2. split driver: 8-byte tiny, guest -> backend -> guest, half round trip (us); CPU % backend/ping/pong");
    let mut split = Table(Vec::new());
    let mut best: Option<(String, f64)> = None;
    let mut cases: Vec<(&str, u64, Wait)> = Vec::new();
    for idle in ["spin", "yield", "block"] {
        for w in [spin, yld, block] {
            cases.push((idle, 200, w));
        }
    }
    cases.push(("yield", 20, block));
    cases.push(("yield", 2000, block));
    for (idle, spin_us, w) in cases {
        let (rtt, stalled, cpu) = split_pingpong(idle, spin_us, w);
        let l = half(rtt, stalled);
        let what = if spin_us == 200 {
            format!("backend --idle {idle}, guests {}", w.name())
        } else {
            format!(
                "backend --idle {idle} --spin-us {spin_us}, guests {}",
                w.name()
            )
        };
        if l.n == ITERS && !l.stalled && best.as_ref().is_none_or(|b| l.median < b.1) {
            best = Some((what.clone(), l.median));
        }
        split.lat(what, &l, direct.median, relay_best, Some(&cpu));
    }

    println!("\n3. medium bandwidth (MB/s; ratio = this / baseline); CPU % backend/source/sink");
    let mut bw = Table(Vec::new());
    let mb = |b: f64| b / 1e6;
    let copy = copy_only(STREAM_BYTES);
    let sd = shm_stream(false, spin, spin, STREAM_BYTES);
    let sdy = shm_stream(false, yld, yld, STREAM_BYTES);
    let sr = shm_stream(true, yld, yld, STREAM_BYTES);
    let srs = shm_stream(true, yld, spin, STREAM_BYTES);
    let relay_bw = sr.max(srs);
    for (what, v) in [
        (
            "copies only, one process (write_at + read_at per 8 KiB)",
            copy,
        ),
        ("shm queue A->B, 8 KiB slots, spin", sd),
        ("shm queue A->B, 8 KiB slots, yield", sdy),
        ("shm queue A->R->B, 8 KiB slots, yield", sr),
        (
            "shm queue A->R->B, 8 KiB slots, guests yield, relay spin",
            srs,
        ),
    ] {
        bw.row(vec![
            what.into(),
            format!("{:.0}", mb(v)),
            format!("{:.2}x", v / sd),
            format!("{:.2}x", v / relay_bw),
            "-".into(),
        ]);
    }
    for size in [32 * 1024, 256 * 1024] {
        for (idle, w) in [
            ("yield", yld),
            ("yield", block),
            ("spin", block),
            ("block", block),
            ("block", spin),
        ] {
            let (r, cpu) = split_stream(idle, w, size);
            bw.row(vec![
                format!(
                    "split {} KiB messages, backend {idle}, guests {}",
                    size / 1024,
                    w.name()
                ),
                format!("{:.0}", mb(r)),
                format!("{:.2}x", r / sd),
                format!("{:.2}x", r / relay_bw),
                fmt_cpu(&cpu),
            ]);
        }
    }

    println!("\n4. backend CPU with 4 idle guests (5 s)");
    let mut idle = Table(Vec::new());
    for (p, pct) in idle_cpu(5) {
        idle.row(vec![
            format!("backend --idle {p} --spin-us 200"),
            format!("{pct:.2}%"),
        ]);
    }

    println!("\n## Summary (markdown)\n");
    machine();
    base.print(
        "shared-memory baselines, 64-byte slots (half round trip, us)",
        &["what", "median", "p99", "/ shm direct", "/ best relay"],
    );
    split.print(
        "split driver, 8-byte tiny (half round trip, us)",
        &[
            "what",
            "median",
            "p99",
            "/ shm direct",
            "/ best relay",
            "CPU % be/ping/pong",
        ],
    );
    bw.print(
        "medium bandwidth (MB/s)",
        &[
            "what",
            "MB/s",
            "/ shm direct",
            "/ best shm relay",
            "CPU % be/src/sink",
        ],
    );
    idle.print("backend CPU, 4 attached idle guests, 5 s", &["what", "CPU"]);
    if let Some((what, m)) = best {
        println!("\nbest latency: {what}: {m:.2} us");
    }
    println!("total time: {:.0} s", t_all.elapsed().as_secs_f64());
}
