//! `mx-xen-selftest`: the Xen platform on real Xen, both sides.
//!
//! ```text
//! mx-xen-selftest host  [GUESTS [TIMEOUT_S]]     # in Dom0
//! mx-xen-selftest guest [ITERS [STREAM_S]]       # in each domU
//! ```
//!
//! The host listens (creating the `mx` device slots of every domain),
//! accepts the frontends, and serves them like a tiny backend: a `hello`
//! control round trip; an `open` request with a channel's pages and event
//! channel (mapped with gntdev, bound interdomain); command/event traffic
//! through [`mx_proto::channel`] with medium payloads in the send and
//! receive queues; a check of the guest's bulk-copy pool through
//! `XenMemory`; and a grant copy (`IOCTL_GNTDEV_GRANT_COPY`) of pages
//! offered in a request. Every guest checks every byte it gets back. The
//! host exits after `GUESTS` guests attached and all went away (closed, or
//! destroyed), printing its resource counters, which must be back to zero.
//!
//! Log lines start with `HOST:` or `GUEST:`; the last line is `HOST DONE
//! ok=<n> failed=<n>` or `GUEST RESULT OK|FAIL ...`.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mx_proto::channel::{GuestChannel, HostChannel};
use mx_proto::msg::control::ChannelSizes;
use mx_proto::msg::event::RecvHdr;
use mx_proto::msg::{command::SendHdr, Command, Dest, Event, Seq, Source, QUEUE_SLOT_SIZE};
use mx_proto::platform::xen::{
    stats, GrantCopier, MappedGrants, XenConn, XenEvent, XenGuest, XenHost, XenHostConfig,
    XenRegion, XenResources, XenTarget,
};
use mx_proto::platform::xen::{xenstore::NO_TX, Xenstore};
use mx_proto::platform::{
    BackendLink, EventChannel, Events, GuestConn, GuestListener, GuestMemory, GuestPlatform,
    HostPlatform, Incoming, Interest, Poller, ReceivedResources, Resource, SharedMem, WaitOutcome,
    MAX_CONTROL_MSG, PAGE_SIZE,
};

const T: Duration = Duration::from_secs(60);

fn sizes() -> ChannelSizes {
    ChannelSizes {
        cmd_slots: 64,
        evt_slots: 64,
        sendq_slots: 8,
        recvq_slots: 8,
    }
}

/// The payload of iteration `i`: 8 KiB that differ per iteration.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn reply_of(data: &[u8]) -> Vec<u8> {
    data.iter().rev().map(|b| b ^ 0x5a).collect()
}

// ------------------------------------------------------------------- host ---

struct Ep {
    chan: HostChannel<Arc<MappedGrants>>,
    event: XenEvent,
    commands: u64,
}

struct Guest {
    conn: XenConn,
    ep: Option<Ep>,
    polled: bool,
    ok: bool,
}

fn host(guests: usize, timeout: Duration) -> io::Result<bool> {
    let cfg = XenHostConfig {
        slots: 2,
        ..XenHostConfig::default()
    };
    let listener = XenHost::listen(&cfg)?;
    let poll = Poller::new()?;
    poll.add(listener.as_fd(), 0, Interest::READABLE)?;
    let mut events = Events::with_capacity(32);
    let mut live: HashMap<u64, Guest> = HashMap::new();
    let mut next = 1u64;
    let (mut seen, mut ok, mut failed) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + timeout;
    println!("HOST: listening; counters {:?}", stats::snapshot());
    while seen < guests || !live.is_empty() {
        if Instant::now() > deadline {
            println!("HOST: timeout with {} guests live", live.len());
            return Ok(false);
        }
        poll.wait(&mut events, Some(Duration::from_millis(100)))?;
        while let Some(conn) = listener.accept()? {
            let key = next;
            next += 1;
            seen += 1;
            poll.add(conn.as_fd(), key << 1, Interest::READABLE)?;
            println!("HOST: accepted {}", conn.guest_id());
            live.insert(
                key,
                Guest {
                    conn,
                    ep: None,
                    polled: false,
                    ok: false,
                },
            );
        }
        let keys: Vec<u64> = live.keys().copied().collect();
        for key in keys {
            let g = live.get_mut(&key).expect("key from the map");
            let closed = match serve_control(g) {
                Ok(c) => c,
                Err(e) => {
                    println!("HOST: {} broke the protocol: {e}", g.conn.guest_id());
                    true
                }
            };
            if !closed {
                if let (Some(ep), false) = (&g.ep, g.polled) {
                    poll.add(ep.event.as_fd(), (key << 1) | 1, Interest::READABLE)?;
                    g.polled = true;
                }
                if let Err(e) = serve_ring(g) {
                    println!("HOST: ring of {} broken: {e}", g.conn.guest_id());
                }
                continue;
            }
            let g = live.remove(&key).expect("key from the map");
            let _ = poll.delete(g.conn.as_fd());
            if let Some(ep) = &g.ep {
                let _ = poll.delete(ep.event.as_fd());
            }
            let cmds = g.ep.as_ref().map_or(0, |e| e.commands);
            println!(
                "HOST: {} detached after {cmds} commands (checks {})",
                g.conn.guest_id(),
                if g.ok { "passed" } else { "incomplete" }
            );
            if g.ok {
                ok += 1;
            } else {
                failed += 1;
            }
            drop(g);
            println!(
                "HOST: counters after release (granted, mapped, ports) = {:?}",
                stats::snapshot()
            );
        }
    }
    drop(listener);
    let (g, m, p) = stats::snapshot();
    let clean = m == 0 && p == 0 && g == 0;
    println!(
        "HOST: final counters granted={g} mapped={m} ports={p} ({})",
        if clean { "all released" } else { "LEAK" }
    );
    println!("HOST DONE ok={ok} failed={failed}");
    Ok(clean)
}

/// Serves pending control requests; true if the guest is gone.
fn serve_control(g: &mut Guest) -> io::Result<bool> {
    let mut buf = vec![0u8; MAX_CONTROL_MSG];
    loop {
        let (len, mut res) = match g.conn.recv(&mut buf)? {
            Incoming::Request { len, resources } => (len, resources),
            Incoming::Empty => return Ok(false),
            Incoming::Closed => return Ok(true),
        };
        let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
        let words: Vec<&str> = msg.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["hello"] => format!("hello {}", g.conn.guest_id()),
            ["open"] => match open(g, &mut res) {
                Ok(pages) => format!("opened {pages}"),
                Err(e) => format!("error {e}"),
            },
            ["pool", off, len] => {
                match check_pool(g, off.parse().unwrap_or(0), len.parse().unwrap_or(0)) {
                    Ok(()) => "pool ok".to_string(),
                    Err(e) => format!("error {e}"),
                }
            }
            ["gcopy", pages] => match grant_copy(g, &mut res, pages.parse().unwrap_or(0)) {
                Ok(()) => "gcopy ok".to_string(),
                Err(e) => format!("error {e}"),
            },
            ["done"] => {
                g.ok = true;
                "bye".to_string()
            }
            _ => "error unknown request".to_string(),
        };
        g.conn.send(reply.as_bytes())?;
    }
}

fn open(g: &mut Guest, res: &mut XenResources) -> io::Result<usize> {
    let len = HostChannel::<Arc<MappedGrants>>::region_len(&sizes())
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let pages = res.take_pages(0, len / PAGE_SIZE)?;
    let event = res.take_event(1)?;
    let chan = HostChannel::attach(Arc::new(pages), &sizes())
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    println!(
        "HOST: {} opened a channel of {} pages, port {}",
        g.conn.guest_id(),
        len / PAGE_SIZE,
        event.port()
    );
    g.ep = Some(Ep {
        chan,
        event,
        commands: 0,
    });
    Ok(len / PAGE_SIZE)
}

/// Reads the guest's pool region, checks it, writes the reply after it.
fn check_pool(g: &Guest, off: u64, len: u64) -> io::Result<()> {
    let mem = g.conn.memory();
    let mut got = vec![0u8; len as usize];
    mem.read(&[XenRegion::new(off, len)], 0, &mut got)?;
    if got != pattern(off, len as usize) {
        return Err(io::Error::other("pool bytes differ"));
    }
    // Two segments, to exercise the walk: the reply lands right after.
    let half = len / 2;
    mem.write(
        &[
            XenRegion::new(off + len, half),
            XenRegion::new(off + len + half, len - half),
        ],
        0,
        &reply_of(&got),
    )?;
    // Out of the pool: an error, not a crash.
    if mem
        .read(&[XenRegion::new(mem_len(g) as u64, 1)], 0, &mut [0u8; 1])
        .is_ok()
    {
        return Err(io::Error::other("read past the pool succeeded"));
    }
    println!(
        "HOST: {} pool checked: {len} bytes at {off}",
        g.conn.guest_id()
    );
    Ok(())
}

fn mem_len(g: &Guest) -> usize {
    g.conn.memory().pool_len()
}

/// Grant-copies the pages offered in slot 0 without mapping them.
fn grant_copy(g: &Guest, res: &mut XenResources, pages: usize) -> io::Result<()> {
    let refs = res
        .refs(0)
        .ok_or_else(|| io::Error::other("no pages in slot 0"))?
        .to_vec();
    if refs.len() != pages {
        return Err(io::Error::other("page count mismatch"));
    }
    let copier = GrantCopier::new()?;
    let len = pages * PAGE_SIZE - 200;
    let mut got = vec![0u8; len];
    copier.read(g.conn.guest_id().domid, &refs, 100, &mut got)?;
    if got != pattern(7, len) {
        return Err(io::Error::other("grant-copied bytes differ"));
    }
    copier.write(g.conn.guest_id().domid, &refs, 100, &reply_of(&got))?;
    println!(
        "HOST: {} grant copy of {len} bytes over {pages} pages checked",
        g.conn.guest_id()
    );
    Ok(())
}

/// Answers every command: checks the send-queue payload, writes the reply
/// into a receive-queue slot, posts an event naming it.
fn serve_ring(g: &mut Guest) -> io::Result<()> {
    let Some(ep) = g.ep.as_mut() else {
        return Ok(());
    };
    let bad =
        |e: &dyn std::fmt::Debug| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}"));
    loop {
        ep.event.consume()?;
        let mut worked = false;
        while ep.chan.recvq_space().map_err(|e| bad(&e))? > 0
            && ep.chan.event_space().map_err(|e| bad(&e))? > 0
        {
            let Some(slot) = ep.chan.pop_command().map_err(|e| bad(&e))? else {
                break;
            };
            worked = true;
            ep.commands += 1;
            let Ok(Command::Tiny { hdr, data }) = Command::parse(&slot) else {
                return Err(io::Error::other("unexpected command"));
            };
            let i = hdr.match_info;
            if data != i.to_le_bytes() {
                return Err(io::Error::other("tiny payload differs"));
            }
            let sq = (i % u64::from(ep.chan.sendq_slots())) as u16;
            let mut payload = vec![0u8; QUEUE_SLOT_SIZE];
            ep.chan.sendq_read(sq, &mut payload).map_err(|e| bad(&e))?;
            if payload != pattern(i, QUEUE_SLOT_SIZE) {
                return Err(io::Error::other(format!("send-queue bytes of {i} differ")));
            }
            let rq = ep.chan.recvq_claim().map_err(|e| bad(&e))?;
            ep.chan
                .recvq_write(rq, &reply_of(&payload))
                .map_err(|e| bad(&e))?;
            let ev = Event::RecvMediumFrag {
                hdr: RecvHdr {
                    src: Source {
                        peer: 0,
                        endpoint: 0,
                    },
                    seq: Seq {
                        seqnum: 0,
                        piggyack: 0,
                    },
                    match_info: i,
                },
                msg_length: QUEUE_SLOT_SIZE as u32,
                frag_seqnum: 0,
                frag_length: QUEUE_SLOT_SIZE as u16,
                recvq_slot: rq,
            };
            ep.chan.push_event(&ev).map_err(|e| bad(&e))?;
        }
        if worked {
            let _ = ep.chan.release_commands();
            if ep.chan.publish().is_needed() {
                ep.event.notify()?;
            }
            continue;
        }
        if ep.chan.prepare_to_sleep().map_err(|e| bad(&e))? {
            return Ok(());
        }
    }
}

// ------------------------------------------------------------------ guest ---

fn guest(iters: u64, stream: Duration) -> io::Result<String> {
    let t0 = Instant::now();
    let link = XenGuest::attach(&XenTarget::default(), T)?;
    println!(
        "GUEST: attached to device mx/{} of backend domain {} in {:.2} s",
        link.device(),
        link.backend_id(),
        t0.elapsed().as_secs_f64()
    );
    let mut buf = vec![0u8; MAX_CONTROL_MSG];
    let call = |msg: &str, res: &[Resource<'_, _, _>], buf: &mut [u8]| -> io::Result<String> {
        let n = link.call(msg.as_bytes(), res, buf, T)?;
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if r.starts_with("error") {
            return Err(io::Error::other(format!("{msg}: {r}")));
        }
        Ok(r)
    };
    println!("GUEST: {}", call("hello", &[], &mut buf)?);

    // A channel of several pages, offered by slot with its event channel.
    let len = GuestChannel::<Arc<mx_proto::platform::xen::GrantedPages>>::region_len(&sizes())
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let pages = Arc::new(link.alloc_pages(len / PAGE_SIZE)?);
    let event = link.alloc_event()?;
    let mut chan = GuestChannel::create(pages.clone(), &sizes())
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let r = call(
        "open",
        &[Resource::Pages(&*pages), Resource::Event(&event)],
        &mut buf,
    )?;
    println!("GUEST: {r} (port {})", event.port());

    // The bulk-copy pool, through XenMemory on the host.
    let pool = link
        .pool()
        .ok_or_else(|| io::Error::other("no pool (MX_XEN_POOL_PAGES=0?)"))?;
    let (off, plen) = (12_345u64, 100_000usize);
    pool.write_at(off as usize, &pattern(off, plen))?;
    println!(
        "GUEST: {}",
        call(&format!("pool {off} {plen}"), &[], &mut buf)?
    );
    let mut back = vec![0u8; plen];
    pool.read_at(off as usize + plen, &mut back)?;
    if back != reply_of(&pattern(off, plen)) {
        return Err(io::Error::other("pool reply differs"));
    }

    // Grant copy by the hypervisor, pages not mapped by the host.
    let gp = link.alloc_pages(3)?;
    let glen = 3 * PAGE_SIZE - 200;
    gp.write_at(100, &pattern(7, glen))?;
    println!(
        "GUEST: {}",
        call("gcopy 3", &[Resource::Pages(&gp)], &mut buf)?
    );
    let mut back = vec![0u8; glen];
    gp.read_at(100, &mut back)?;
    if back != reply_of(&pattern(7, glen)) {
        return Err(io::Error::other("grant-copy reply differs"));
    }

    // Ring traffic: commands with send-queue payloads, events with
    // receive-queue payloads, every byte checked.
    let t1 = Instant::now();
    let mut i = 0u64;
    let mut announced = false;
    let stop = Xenstore::open_xenbus()?;
    while i < iters || t1.elapsed() < stream {
        round_trip(&mut chan, &event, i)?;
        i += 1;
        if i == iters && !announced {
            announced = true;
            println!(
                "GUEST: {iters} ring round trips of {QUEUE_SLOT_SIZE} B each way checked in {:.2} s",
                t1.elapsed().as_secs_f64()
            );
            // Tell dom0 the checks passed (the destroy test waits for it).
            let _ = std::process::Command::new("xenstore-write")
                .args(["data/phase1", "OK"])
                .status();
        }
        if i.is_multiple_of(100) && i > iters {
            // Dom0 says when to stop (after it destroyed the other guest).
            if stop.read_opt(NO_TX, "data/stop")?.is_some() {
                println!("GUEST: told to stop after {i} round trips");
                break;
            }
        }
    }
    println!("GUEST: {}", call("done", &[], &mut buf)?);
    Ok(format!(
        "{i} round trips, pool and grant copy checked in {:.2} s",
        t0.elapsed().as_secs_f64()
    ))
}

fn round_trip(
    chan: &mut GuestChannel<Arc<mx_proto::platform::xen::GrantedPages>>,
    event: &XenEvent,
    i: u64,
) -> io::Result<()> {
    let bad = |e: &dyn std::fmt::Debug| io::Error::other(format!("{e:?}"));
    let sq = (i % u64::from(chan.sendq_slots())) as u16;
    chan.sendq_write(sq, &pattern(i, QUEUE_SLOT_SIZE))
        .map_err(|e| bad(&e))?;
    let data = i.to_le_bytes();
    let cmd = Command::Tiny {
        hdr: SendHdr {
            dest: Dest {
                peer: 0,
                endpoint: 0,
            },
            session: 0,
            seq: Seq {
                seqnum: 0,
                piggyack: 0,
            },
            match_info: i,
        },
        data: &data,
    };
    chan.push_command(&cmd).map_err(|e| bad(&e))?;
    if chan.publish_commands().is_needed() {
        event.notify()?;
    }
    let deadline = Instant::now() + T;
    loop {
        if let Some(slot) = chan.pop_event().map_err(|e| bad(&e))? {
            let Ok(Event::RecvMediumFrag {
                hdr, recvq_slot, ..
            }) = Event::parse(&slot)
            else {
                return Err(io::Error::other("unexpected event"));
            };
            if hdr.match_info != i {
                return Err(io::Error::other("event for another iteration"));
            }
            let mut got = vec![0u8; QUEUE_SLOT_SIZE];
            chan.recvq_read(recvq_slot, 0, &mut got)
                .map_err(|e| bad(&e))?;
            if got != reply_of(&pattern(i, QUEUE_SLOT_SIZE)) {
                return Err(io::Error::other(format!(
                    "receive-queue bytes of {i} differ"
                )));
            }
            chan.recvq_release(recvq_slot).map_err(|e| bad(&e))?;
            if chan.release_events().is_needed() {
                event.notify()?;
            }
            return Ok(());
        }
        if chan.prepare_to_sleep().map_err(|e| bad(&e))? {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            if event.wait(Some(left))? == WaitOutcome::TimedOut {
                return Err(io::Error::other(format!("no event for iteration {i}")));
            }
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("host") => match host(num(1, 2) as usize, Duration::from_secs(num(2, 300))) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                println!("HOST: error {e}");
                ExitCode::from(1)
            }
        },
        Some("guest") => match guest(num(1, 200), Duration::from_secs(num(2, 0))) {
            Ok(r) => {
                println!("GUEST RESULT OK {r}");
                let _ = std::process::Command::new("xenstore-write")
                    .args(["data/result", &format!("OK {r}")])
                    .status();
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("GUEST RESULT FAIL {e}");
                let _ = std::process::Command::new("xenstore-write")
                    .args(["data/result", &format!("FAIL {e}")])
                    .status();
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!(
                "usage: mx-xen-selftest host [GUESTS [TIMEOUT_S]] | guest [ITERS [STREAM_S]]"
            );
            ExitCode::from(2)
        }
    }
}
