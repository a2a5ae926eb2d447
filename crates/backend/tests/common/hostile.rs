//! The hostile guest: works below the frontend (raw pages, raw control
//! requests) so that it can write anything anywhere in its own channel.
//!
//! It attaches twice (two guests as far as the backend knows) and opens one
//! endpoint on each:
//!
//! 1. endpoint A posts random well-formed-but-wrong commands and raw garbage
//!    commands, and drains its events (`MXCOUNTERS1 <values>` after);
//! 2. the same while also scribbling random bytes over everything of its
//!    channel except the four ring indices: control page header, event
//!    words, padding, all four slot areas (`MXCOUNTERS2 <values>` after);
//! 3. endpoint B corrupts only its event ring's and receive queue's `cons`
//!    (what the backend, as their producer, reads) and keeps posting valid
//!    sends to itself, which need room in those rings;
//! 4. endpoint A scribbles everything, indices included.
//!
//! The backend is notified all along. Output: `MXREADY <epA> <sessionA>
//! <epB> <sessionB> <seed>`, the counters lines, and
//! `MXHOSTILE b_detached=<bool> b_ms=<ms> a_detached=<bool> a_ms=<ms>`
//! where "detached" means the backend closed the endpoint (its control
//! link is gone, or the endpoint is unknown).

use super::{Rng, HOSTILE_MS_ENV};
use mx_proto::channel::{layout, GuestChannel, RING_CMD, RING_EVT, RING_RECVQ, RING_SENDQ};
use mx_proto::msg::command::{
    ConnectReply, ConnectRequest, Liback, MediumFrag, Notify, Pull, RawSeg, RegionRegister, Rndv,
    SendHdr,
};
use mx_proto::msg::control::{
    BoardInfo, ChannelSizes, ControlError, ControlReply, ControlRequest, ANY_ENDPOINT,
    CONTROL_VERSION,
};
use mx_proto::msg::{Command, Dest, Event, RdmaRef, Seq, CMD_SLOT_SIZE};
use mx_proto::platform::local::{LocalGuest, LocalLink, LocalTarget, MemfdPages, SocketChannel};
use mx_proto::platform::{
    BackendLink, EventChannel, GuestPlatform, Resource, SharedMem, MAX_CONTROL_MSG, PAGE_SIZE,
};
use mx_proto::ring::layout::offset;
use mx_proto::ring::Layout;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: ChannelSizes = ChannelSizes {
    cmd_slots: 64,
    evt_slots: 64,
    sendq_slots: 16,
    recvq_slots: 16,
};

fn call(
    link: &LocalLink,
    req: &ControlRequest,
    res: &[Resource<'_, MemfdPages, SocketChannel>],
) -> io::Result<ControlReply> {
    let mut buf = vec![0u8; MAX_CONTROL_MSG];
    let n = link.call(&req.encode(), res, &mut buf, Duration::from_secs(10))?;
    ControlReply::decode(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One hostile endpoint with raw access to its pages.
struct Hostile {
    link: LocalLink,
    board: BoardInfo,
    pages: Arc<MemfdPages>,
    chan: GuestChannel<Arc<MemfdPages>>,
    event: SocketChannel,
    layout: Layout,
    ep: u8,
    session: u32,
    pushed: u32,
    /// A real buffer of ours, registered as region 1 (pulls use it).
    buf: Vec<u8>,
}

impl Hostile {
    /// Attach and open an endpoint exactly as `Frontend::open_endpoint`
    /// does, keeping the raw pages.
    fn open(socket: &Path) -> Hostile {
        Self::open_with(socket, |_, _| ()).0
    }

    /// [`open`](Self::open), calling `before` just before the open request
    /// goes out.
    fn open_with<T>(
        socket: &Path,
        before: impl FnOnce(&LocalLink, &SocketChannel) -> T,
    ) -> (Hostile, T) {
        Self::open_sized(socket, SIZES, before)
    }

    /// [`open_with`](Self::open_with) with rings of `sizes`.
    fn open_sized<T>(
        socket: &Path,
        sizes: ChannelSizes,
        before: impl FnOnce(&LocalLink, &SocketChannel) -> T,
    ) -> (Hostile, T) {
        let link =
            LocalGuest::attach(&LocalTarget::new(socket), Duration::from_secs(10)).expect("attach");
        let board = match call(
            &link,
            &ControlRequest::Hello {
                version: CONTROL_VERSION,
            },
            &[],
        )
        .expect("hello")
        {
            ControlReply::Hello(b) => b,
            other => panic!("hello: {other:?}"),
        };
        let layout = layout(&sizes).expect("layout");
        let len = layout.region_len();
        let pages = Arc::new(link.alloc_pages(len / PAGE_SIZE).expect("pages"));
        let chan = GuestChannel::create(pages.clone(), &sizes).expect("channel");
        let event = link.alloc_event().expect("event channel");
        let t = before(&link, &event);
        let reply = call(
            &link,
            &ControlRequest::OpenEndpoint {
                board: 0,
                endpoint: ANY_ENDPOINT,
                sizes,
                flags: Default::default(),
            },
            &[Resource::Pages(&*pages), Resource::Event(&event)],
        )
        .expect("open");
        let ControlReply::Opened { endpoint, session } = reply else {
            panic!("open: {reply:?}");
        };
        (
            Hostile {
                link,
                board,
                pages,
                chan,
                event,
                layout,
                ep: endpoint,
                session,
                pushed: 0,
                buf: vec![0x5a; 64 * 1024],
            },
            t,
        )
    }

    fn area(&self, ring: usize) -> (usize, usize) {
        let r = self.layout.rings[ring].expect("ring");
        (r.area_offset as usize, r.area_len() as usize)
    }

    fn index_word(ring: usize, word: usize) -> usize {
        offset::INDEX_BLOCK + ring * offset::INDEX_BLOCK_SIZE + word
    }

    fn write(&self, off: usize, bytes: &[u8]) {
        SharedMem::write_at(&*self.pages, off, bytes).expect("inside our pages");
    }

    /// Our own endpoint's counters, or `None` once the backend closed it.
    fn counters(&self) -> Option<Vec<u64>> {
        match call(
            &self.link,
            &ControlRequest::Counters { endpoint: self.ep },
            &[],
        ) {
            Ok(ControlReply::Counters(v)) => Some(v),
            Ok(ControlReply::Error(ControlError::BadEndpoint)) => None,
            Err(e) => {
                eprintln!("counters: control call failed: {e}");
                None
            }
            Ok(other) => panic!("counters: {other:?}"),
        }
    }

    fn push(&mut self, cmd: &Command<'_>) -> bool {
        if self.chan.push_command(cmd).is_ok() {
            self.pushed = self.pushed.wrapping_add(1);
            true
        } else {
            false
        }
    }

    /// Post a command slot of raw random bytes (a random kind byte, or a
    /// valid one followed by random fields).
    fn push_raw(&mut self, rng: &mut Rng) {
        let pos = self.pushed & (SIZES.cmd_slots - 1);
        if !self.push(&Command::RegionDeregister { region_id: 0 }) {
            return;
        }
        let mut slot = [0u8; CMD_SLOT_SIZE];
        rng.fill(&mut slot);
        if rng.below(2) == 0 {
            slot[0] = 1 + rng.below(11) as u8;
        }
        let (area, _) = self.area(RING_CMD);
        self.write(area + pos as usize * CMD_SLOT_SIZE, &slot);
    }

    fn hdr(&self, rng: &mut Rng, peer: u16, ep: u8, session: u32) -> SendHdr {
        SendHdr {
            dest: Dest { peer, endpoint: ep },
            session,
            seq: Seq {
                seqnum: rng.next() as u16,
                piggyack: rng.next() as u16,
            },
            match_info: rng.next(),
        }
    }

    /// Post a well-formed command that is wrong in some way (or, now and
    /// then, right: sends to ourselves and pulls from our own region).
    fn push_wrong(&mut self, rng: &mut Rng) {
        let me = self.board.self_peer;
        let any_ep = rng.below(40) as u8;
        let any_session = rng.next() as u32;
        let mut data = [0u8; 128];
        rng.fill(&mut data);
        let medium = |h: SendHdr, msg_length: u32, frag_seqnum: u8, frag_length: u16, slot: u16| {
            Command::MediumFrag(MediumFrag {
                hdr: h,
                msg_length,
                frag_seqnum,
                frag_length,
                sendq_slot: slot,
            })
        };
        let own = (self.ep, self.session);
        let cmd = match rng.below(14) {
            0 => {
                let peer = 1 + rng.below(u64::from(u16::MAX)) as u16;
                Command::Tiny {
                    hdr: self.hdr(rng, peer, any_ep, any_session),
                    data: &data[..rng.below(33) as usize],
                }
            }
            1 => Command::Small {
                hdr: self.hdr(rng, me, any_ep, any_session),
                data: &data[..33 + rng.below(96) as usize],
            },
            2 => medium(
                self.hdr(rng, me, own.0, own.1),
                8192,
                0,
                rng.below(8193) as u16,
                SIZES.sendq_slots as u16 + rng.below(60000) as u16,
            ),
            3 => medium(
                self.hdr(rng, me, own.0, own.1),
                (self.board.medium_max + 1).saturating_add(rng.next() as u32 % 1_000_000),
                0,
                rng.below(8193) as u16,
                rng.below(16) as u16,
            ),
            4 => medium(
                self.hdr(rng, me, own.0, own.1),
                self.board.medium_max,
                32 + rng.below(200) as u8,
                100,
                rng.below(16) as u16,
            ),
            5 => {
                let fl = 1 + rng.below(8192) as u16;
                medium(
                    self.hdr(rng, me, own.0, own.1),
                    u32::from(fl) + rng.below(4096) as u32,
                    0,
                    fl,
                    rng.below(16) as u16,
                )
            }
            6 => Command::Pull(Pull {
                dest: Dest {
                    peer: me,
                    endpoint: if rng.below(2) == 0 { own.0 } else { any_ep },
                },
                session: if rng.below(2) == 0 {
                    own.1
                } else {
                    any_session
                },
                length: if rng.below(2) == 0 {
                    rng.below(2 * self.buf.len() as u64) as u32
                } else {
                    rng.next() as u32
                },
                cookie: rng.next() as u32,
                local_region: rng.below(3) as u8,
                local_offset: rng.below(70_000) as u32,
                remote: RdmaRef {
                    id: rng.below(3) as u8,
                    seqnum: rng.next() as u8,
                    offset: rng.below(70_000) as u32,
                },
                direct: rng.below(2) == 0,
            }),
            7 => {
                let n = rng.below(12) as usize;
                let segs: Vec<RawSeg> = (0..n)
                    .map(|_| RawSeg::new(rng.next(), rng.next() as u32))
                    .collect();
                Command::RegionRegister(RegionRegister::new(
                    2 + rng.below(254) as u8,
                    rng.below(2) == 0,
                    rng.below(2) == 0,
                    rng.below(300) as u16,
                    &segs,
                ))
            }
            8 => {
                // (Re-)register our real buffer as region 1: pulls can succeed.
                let seg = RawSeg::new(self.buf.as_ptr() as u64, self.buf.len() as u32);
                Command::RegionRegister(RegionRegister::new(1, true, true, 0, &[seg]))
            }
            9 => Command::Rndv(Rndv {
                hdr: self.hdr(rng, me, any_ep, any_session),
                msg_length: rng.next() as u32,
                rdma: RdmaRef {
                    id: rng.next() as u8,
                    seqnum: rng.next() as u8,
                    offset: rng.next() as u32,
                },
            }),
            10 => Command::Notify(Notify {
                dest: Dest {
                    peer: me,
                    endpoint: any_ep,
                },
                session: any_session,
                seq: Seq {
                    seqnum: 1,
                    piggyack: 2,
                },
                total_length: rng.next() as u32,
                rdma_id: rng.next() as u8,
                rdma_seqnum: rng.next() as u8,
            }),
            11 => Command::Liback(Liback {
                dest: Dest {
                    peer: me,
                    endpoint: any_ep,
                },
                session: any_session,
                lib_seqnum: 7,
                send_seq: 7,
                acknum: rng.next() as u32,
                resent: rng.next() as u8,
            }),
            12 => {
                let dest = Dest {
                    peer: me,
                    endpoint: any_ep,
                };
                if rng.below(2) == 0 {
                    Command::ConnectRequest(ConnectRequest {
                        dest,
                        src_session: rng.next() as u32,
                        app_key: rng.next() as u32,
                        target_recv_seqnum_start: 0,
                        connect_seqnum: rng.next() as u8,
                    })
                } else {
                    Command::ConnectReply(ConnectReply {
                        dest,
                        src_session: rng.next() as u32,
                        target_session: rng.next() as u32,
                        target_recv_seqnum_start: 0,
                        connect_seqnum: rng.next() as u8,
                        status: rng.next() as u8,
                    })
                }
            }
            _ => Command::RegionDeregister {
                region_id: 2 + rng.below(254) as u8,
            },
        };
        self.push(&cmd);
    }

    /// Post a valid tiny to ourselves.
    fn push_self_tiny(&mut self, rng: &mut Rng) {
        let h = self.hdr(rng, self.board.self_peer, self.ep, self.session);
        self.push(&Command::Tiny { hdr: h, data: &[] });
    }

    /// Publish and notify, always.
    fn kick(&mut self) {
        let _ = self.chan.publish_commands();
        let _ = self.event.notify();
    }

    /// Consume events (sloppily: errors of our own broken channel are ignored).
    fn drain(&mut self) {
        for _ in 0..256 {
            let Ok(Some(slot)) = self.chan.pop_event() else {
                break;
            };
            match Event::parse(&slot) {
                Ok(Event::RecvSmall { recvq_slot, .. })
                | Ok(Event::RecvMediumFrag { recvq_slot, .. }) => {
                    let _ = self.chan.recvq_release(recvq_slot);
                }
                _ => {}
            }
        }
        let _ = self.chan.release_events();
    }

    /// Scribble random bytes somewhere in our channel; with
    /// `indices == false` the four index words of every ring are spared.
    fn scribble(&self, rng: &mut Rng, indices: bool) {
        let mut bytes = [0u8; 256];
        rng.fill(&mut bytes);
        match rng.below(6) {
            0 => {
                // The header: magic, version, features, ring descriptors.
                let off = rng.below(0x100) as usize;
                let n = 1 + rng.below((0x100 - off) as u64) as usize;
                self.write(off, &bytes[..n]);
            }
            1 => {
                let ring = rng.below(4) as usize;
                let word = match (indices, rng.below(4)) {
                    (true, 0) => offset::PROD,
                    (true, 1) => offset::CONS,
                    (_, 2) => offset::PROD_EVENT,
                    _ => offset::CONS_EVENT,
                };
                self.write(Self::index_word(ring, word), &bytes[..4]);
            }
            2 => {
                // Padding next to the index words.
                let ring = rng.below(4) as usize;
                let off = Self::index_word(ring, 4 + 0x40 * rng.below(4) as usize);
                self.write(off, &bytes[..60]);
            }
            ring => {
                let ring = match ring {
                    3 => RING_EVT,
                    4 => RING_SENDQ,
                    _ => {
                        if rng.below(2) == 0 {
                            RING_RECVQ
                        } else {
                            RING_CMD
                        }
                    }
                };
                let (start, len) = self.area(ring);
                let n = 1 + rng.below(256) as usize;
                let off = start + rng.below((len - n) as u64) as usize;
                self.write(off, &bytes[..n]);
            }
        }
    }
}

fn print_counters(tag: &str, v: Option<Vec<u64>>) {
    let v = v.unwrap_or_else(|| panic!("the backend closed the hostile endpoint during {tag}"));
    let s: Vec<String> = v.iter().map(u64::to_string).collect();
    println!("{tag} {}", s.join(" "));
}

/// Run `f` on `h` with notifications until the backend closes the
/// endpoint or `limit` passes; returns (closed, milliseconds).
fn until_detached(
    h: &mut Hostile,
    rng: &mut Rng,
    limit: Duration,
    mut f: impl FnMut(&mut Hostile, &mut Rng),
) -> (bool, u128) {
    let t0 = Instant::now();
    let mut i = 0u32;
    while t0.elapsed() < limit {
        f(h, rng);
        h.kick();
        h.drain();
        i += 1;
        if i.is_multiple_of(8) {
            std::thread::sleep(Duration::from_millis(2));
            if h.counters().is_none() {
                return (true, t0.elapsed().as_millis());
            }
        }
    }
    (false, t0.elapsed().as_millis())
}

/// The hostile role.
pub fn run_hostile(socket: &Path) {
    let total = Duration::from_millis(
        std::env::var(HOSTILE_MS_ENV)
            .ok()
            .map_or(3000, |s| s.parse().expect("ms")),
    );
    let (mut rng, seed) = Rng::from_entropy();
    let mut a = Hostile::open(socket);
    let mut b = Hostile::open(socket);
    println!(
        "MXREADY {} {} {} {} {seed}",
        a.ep, a.session, b.ep, b.session
    );
    let phase = total / 2;
    // 1: wrong and garbage commands.
    let t0 = Instant::now();
    let mut i = 0u32;
    while t0.elapsed() < phase {
        for _ in 0..16 {
            if rng.below(4) == 0 {
                a.push_raw(&mut rng);
            } else {
                a.push_wrong(&mut rng);
            }
        }
        a.kick();
        a.drain();
        i += 1;
        if i.is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    print_counters("MXCOUNTERS1", a.counters());
    // 2: the same plus scribbles that spare the ring indices.
    let t0 = Instant::now();
    while t0.elapsed() < phase {
        for _ in 0..16 {
            match rng.below(3) {
                0 => a.push_raw(&mut rng),
                1 => a.push_wrong(&mut rng),
                _ => a.scribble(&mut rng, false),
            }
        }
        a.kick();
        a.drain();
        i += 1;
        if i.is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    print_counters("MXCOUNTERS2", a.counters());
    // 3: B breaks the indices the backend reads as a producer (event ring
    // and receive queue `cons`) and keeps sending to itself.
    let (evt_cons, recvq_cons) = (
        Hostile::index_word(RING_EVT, offset::CONS),
        Hostile::index_word(RING_RECVQ, offset::CONS),
    );
    let (b_detached, b_ms) = until_detached(&mut b, &mut rng, Duration::from_secs(4), |h, rng| {
        let w = (rng.next() as u32 | 0x8000_0000).to_le_bytes();
        h.write(evt_cons, &w);
        h.write(recvq_cons, &w);
        h.push_self_tiny(rng);
        h.push_wrong(rng);
    });
    // 4: A scribbles everything.
    let (a_detached, a_ms) = until_detached(&mut a, &mut rng, Duration::from_secs(4), |h, rng| {
        for _ in 0..4 {
            h.scribble(rng, true);
        }
        h.push_wrong(rng);
        h.push_raw(rng);
    });
    println!("MXHOSTILE b_detached={b_detached} b_ms={b_ms} a_detached={a_detached} a_ms={a_ms}");
}

// ------------------------------------------------- issue 14's attacks ---

/// How long an attack role keeps at it (`HOSTILE_MS_ENV`, default 2 s).
fn attack_time() -> Duration {
    Duration::from_millis(
        std::env::var(HOSTILE_MS_ENV)
            .ok()
            .map_or(2000, |s| s.parse().expect("ms")),
    )
}

/// Stay alive (holding every resource) until the parent kills us.
fn hold() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Duplicates of every `SOCK_SEQPACKET` socket this process holds except
/// `keep_out`: taken before an open, they include the host's end of the
/// doorbell pair the open is about to hand over.
fn dup_seqpackets(keep_out: &[i32]) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if keep_out.contains(&fd) {
            continue;
        }
        let mut ty: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `ty`/`len` are a writable int and its size; a stale fd
        // number only makes the call fail.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut ty as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 || ty != libc::SOCK_SEQPACKET {
            continue;
        }
        // SAFETY: plain syscall; the result, if valid, is a fresh descriptor.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if d >= 0 {
            // SAFETY: `d` was just returned by the kernel and is ours alone.
            out.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(d) });
        }
    }
    out
}

/// Clear `O_NONBLOCK` on `fd`'s open file description.
fn clear_nonblock(fd: i32) {
    // SAFETY: plain fcntl calls on a descriptor we hold; no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
}

/// Issue 14 item 1: the attack on the host's doorbell. Before opening, the
/// guest keeps a duplicate of the host's end of its event channel; then it
/// clears `O_NONBLOCK` on every description it shares with the backend,
/// fills the host end's send buffer, never reads its own doorbell, and
/// keeps asking to be woken while sending itself messages (each publish
/// makes the backend notify). `MXATTACKED` when done; then it holds.
pub fn run_doorbell(socket: &Path) {
    use std::os::fd::AsRawFd;
    // Open as usual, but keep the host end of the doorbell pair.
    let (mut h, dups) = Hostile::open_with(socket, |link, event| {
        dup_seqpackets(&[link.as_fd().as_raw_fd(), event.as_fd().as_raw_fd()])
    });
    clear_nonblock(h.event.as_fd().as_raw_fd());
    let mut filled = 0u64;
    for d in &dups {
        clear_nonblock(d.as_raw_fd());
        for _ in 0..1_000_000 {
            let b = [1u8];
            // SAFETY: one readable byte; MSG_DONTWAIT so we never block ourselves.
            let r = unsafe {
                libc::send(
                    d.as_raw_fd(),
                    b.as_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r != 1 {
                break;
            }
            filled += 1;
        }
    }
    println!(
        "MXREADY {} {} dups={} filled={filled}",
        h.ep,
        h.session,
        dups.len()
    );
    let (mut rng, _) = Rng::from_entropy();
    let t0 = Instant::now();
    while t0.elapsed() < attack_time() {
        for _ in 0..8 {
            h.push_self_tiny(&mut rng);
        }
        let _ = h.chan.publish_commands();
        let _ = h.chan.prepare_to_sleep();
        let _ = h.event.notify();
        // Consume events now and then (so sends keep flowing and the
        // backend keeps publishing and notifying), never the doorbell.
        if rng.below(4) == 0 {
            for _ in 0..64 {
                if !matches!(h.chan.pop_event(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = h.chan.release_events();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("MXATTACKED");
    hold();
}

/// Issue 14 item 2: keep our event ring full and send connect requests
/// with a wrong key to the victim endpoint (`MX_STALL_EP`, or all). `MXREADY` once
/// the ring is full; then it attacks for the attack time and holds.
pub fn run_stall_connect(socket: &Path) {
    let (mut rng, _) = Rng::from_entropy();
    let mut h = Hostile::open(socket);
    // Exactly one event ring's worth of messages to ourselves: the ring is
    // then full and nothing of ours waits in the backend.
    for _ in 0..SIZES.evt_slots {
        h.push_self_tiny(&mut rng);
    }
    h.kick();
    std::thread::sleep(Duration::from_millis(200));
    println!("MXREADY {} {}", h.ep, h.session);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < attack_time() {
        // One victim (`MX_STALL_EP`), or every endpoint but ours. A
        // request to a closed endpoint would be NACKed into our own full
        // ring and hold our own later commands back, so aim well.
        let victims: Vec<u8> = match std::env::var("MX_STALL_EP") {
            Ok(v) => vec![v.parse().expect("endpoint")],
            Err(_) => (0..32u8).filter(|&e| e != h.ep).collect(),
        };
        for &ep in &victims {
            let req = Command::ConnectRequest(ConnectRequest {
                dest: Dest {
                    peer: h.board.self_peer,
                    endpoint: ep,
                },
                src_session: h.session,
                app_key: 0xbad_bad,
                target_recv_seqnum_start: 0,
                connect_seqnum: rng.next() as u8,
            });
            if h.push(&req) {
                sent += 1;
            }
        }
        h.kick();
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("MXATTACKED sent={sent}");
    hold();
}

/// Issue 14 item 7: punch holes over the whole channel memfd again and
/// again while using it. `MXPUNCHED n=<holes>`; then it holds.
pub fn run_punch(socket: &Path) {
    use std::os::fd::AsRawFd;
    let (mut rng, _) = Rng::from_entropy();
    let mut h = Hostile::open(socket);
    println!("MXREADY {} {}", h.ep, h.session);
    let len = h.pages.len() as i64;
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < attack_time() {
        h.push_self_tiny(&mut rng);
        h.kick();
        let off = (rng.below(len as u64 / PAGE_SIZE as u64) * PAGE_SIZE as u64) as i64;
        let whole = rng.below(4) == 0;
        // SAFETY: plain syscall on our own memfd; no pointers.
        let r = unsafe {
            libc::fallocate(
                h.pages.as_fd().as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                if whole { 0 } else { off },
                if whole { len } else { PAGE_SIZE as i64 },
            )
        };
        assert_eq!(r, 0, "punch hole: {}", io::Error::last_os_error());
        n += 1;
        h.drain();
        std::thread::sleep(Duration::from_micros(300));
    }
    println!("MXPUNCHED n={n}");
    hold();
}

/// Issue 14 item 4: open `MX_FLOOD_N` connections, say hello on each, and
/// count the answers (`MXFLOOD ok=<n> refused=<n> silent=<n>`); then hold
/// them all.
pub fn run_flood(socket: &Path) {
    let n: usize = std::env::var("MX_FLOOD_N")
        .ok()
        .map_or(100, |s| s.parse().expect("count"));
    let mut links = Vec::new();
    for _ in 0..n {
        match LocalGuest::attach(&LocalTarget::new(socket), Duration::from_secs(2)) {
            Ok(l) => links.push(l),
            Err(_) => break,
        }
    }
    let hello = ControlRequest::Hello {
        version: CONTROL_VERSION,
    }
    .encode();
    for l in &links {
        let _ = l.send(&hello, &[], Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut ok, mut refused, mut silent) = (0, 0, 0);
    let mut buf = vec![0u8; MAX_CONTROL_MSG];
    for l in &links {
        let left = deadline.saturating_duration_since(Instant::now());
        match l.recv(&mut buf, left.max(Duration::from_millis(1))) {
            Ok(len) => match ControlReply::decode(&buf[..len]) {
                Ok(ControlReply::Hello(_)) => ok += 1,
                Ok(ControlReply::Error(ControlError::NoResources)) => refused += 1,
                other => panic!("flood: unexpected answer {other:?}"),
            },
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => refused += 1,
            Err(_) => silent += 1,
        }
    }
    println!(
        "MXFLOOD ok={ok} refused={refused} silent={silent} links={}",
        links.len()
    );
    hold();
}

/// Issue 14 item 3: open endpoints until refused (`MXHOG opened=<n>
/// error=<e>`); then hold them.
pub fn run_hog(socket: &Path) {
    let link =
        LocalGuest::attach(&LocalTarget::new(socket), Duration::from_secs(10)).expect("attach");
    let mut held = Vec::new();
    let err = loop {
        let layout = layout(&SIZES).expect("layout");
        let pages = Arc::new(
            link.alloc_pages(layout.region_len() / PAGE_SIZE)
                .expect("pages"),
        );
        let _chan = GuestChannel::create(pages.clone(), &SIZES).expect("channel");
        let event = link.alloc_event().expect("event channel");
        let r = call(
            &link,
            &ControlRequest::OpenEndpoint {
                board: 0,
                endpoint: ANY_ENDPOINT,
                sizes: SIZES,
                flags: Default::default(),
            },
            &[Resource::Pages(&*pages), Resource::Event(&event)],
        )
        .expect("open");
        match r {
            ControlReply::Opened { .. } => held.push((pages, event)),
            ControlReply::Error(e) => break format!("{e:?}"),
            other => panic!("open: {other:?}"),
        }
        assert!(held.len() <= 64, "no limit at all");
    };
    println!("MXHOG opened={} error={err}", held.len());
    hold();
}

/// Issue 14 item 3's load: keep the command ring full of messages to
/// ourselves and drain them, as fast as the backend takes them, for the
/// attack time (`MXREADY` first); then hold.
pub fn run_busy(socket: &Path) {
    let (mut rng, _) = Rng::from_entropy();
    let mut h = Hostile::open(socket);
    println!("MXREADY {} {}", h.ep, h.session);
    let t0 = Instant::now();
    while t0.elapsed() < attack_time() {
        while h.chan.command_space().unwrap_or(0) > 0 {
            h.push_self_tiny(&mut rng);
        }
        h.kick();
        h.drain();
        std::thread::yield_now();
    }
    println!("MXATTACKED");
    hold();
}

// ------------------------------------------- fair shares, by the order ---

/// Messages each endpoint of the fair-share probe sends (one command ring
/// full).
pub const PROBE_MSGS: u32 = 512;

/// The probe's rings: every message fits in the command ring at once, and
/// the receiver's event ring takes all five senders' messages without
/// draining (so nothing ever waits for room, and the order in which the
/// backend served the senders is exactly the order of the receiver's
/// events).
const PROBE_SIZES: ChannelSizes = ChannelSizes {
    cmd_slots: PROBE_MSGS,
    evt_slots: 4096,
    sendq_slots: 16,
    recvq_slots: 16,
};

/// The tag of a probe message: its sender in the top byte.
fn probe_tag(sender: u8, i: u32) -> u64 {
    (u64::from(sender) << 56) | u64::from(i)
}

/// Push [`PROBE_MSGS`] tiny messages to `to` into `h`'s command ring and
/// make them visible, without notifying the backend.
fn probe_fill(h: &mut Hostile, to: (u8, u32)) {
    for i in 0..PROBE_MSGS {
        let hdr = SendHdr {
            dest: Dest {
                peer: h.board.self_peer,
                endpoint: to.0,
            },
            session: to.1,
            seq: Seq {
                seqnum: i as u16,
                piggyack: 0,
            },
            match_info: probe_tag(h.ep, i),
        };
        assert!(h.push(&Command::Tiny { hdr, data: &[] }), "probe ring full");
    }
    let _ = h.chan.publish_commands();
}

/// The honest side of the fair-share probe, in the test process: a
/// receiver whose event ring records the order in which the backend served
/// every sender, and one sender of its own.
pub struct FairProbe {
    rx: Hostile,
    own: Hostile,
}

impl FairProbe {
    /// Attach twice and open the receiver and the sender.
    pub fn open(socket: &Path) -> FairProbe {
        let rx = Hostile::open_sized(socket, PROBE_SIZES, |_, _| ()).0;
        let own = Hostile::open_sized(socket, PROBE_SIZES, |_, _| ()).0;
        FairProbe { rx, own }
    }

    /// Where the other senders send: `<endpoint> <session>`.
    pub fn target(&self) -> String {
        format!("{} {}", self.rx.ep, self.rx.session)
    }

    /// Fill our sender's command ring, visible but not notified.
    pub fn fill_own(&mut self) {
        let to = (self.rx.ep, self.rx.session);
        probe_fill(&mut self.own, to);
    }

    /// Wake the backend: it serves every filled ring from now on.
    pub fn start(&mut self) {
        let _ = self.own.event.notify();
    }

    /// Wait (bounded) for `total` messages at the receiver; returns how
    /// many messages of other senders it got before our sender's last one,
    /// and how many it got in all.
    pub fn others_before_own_last(&mut self, total: u32, limit: Duration) -> (u32, u32) {
        let t0 = Instant::now();
        let (mut got, mut others, mut others_at_own_last) = (0u32, 0u32, None);
        while got < total && t0.elapsed() < limit {
            match self.rx.chan.pop_event() {
                Ok(Some(slot)) => {
                    let Ok(Event::RecvTiny { hdr, .. }) = Event::parse(&slot) else {
                        panic!("probe receiver: unexpected event {slot:?}");
                    };
                    got += 1;
                    if (hdr.match_info >> 56) as u8 == self.own.ep {
                        if hdr.match_info & 0xffff_ffff == u64::from(PROBE_MSGS - 1) {
                            others_at_own_last = Some(others);
                        }
                    } else {
                        others += 1;
                    }
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("probe receiver's event ring: {e:?}"),
            }
        }
        (others_at_own_last.unwrap_or(others), got)
    }
}

/// The busy side of the fair-share probe (one user, four endpoints):
/// `MXREADY` once open; on `fill <endpoint> <session>` from stdin it fills
/// each of its four command rings with [`PROBE_MSGS`] messages to that
/// endpoint, visible but not notified (`MXFILLED`); then it holds.
pub fn run_fill4(socket: &Path) {
    let mut eps: Vec<Hostile> = (0..4)
        .map(|_| Hostile::open_sized(socket, PROBE_SIZES, |_, _| ()).0)
        .collect();
    let ids: Vec<String> = eps.iter().map(|h| h.ep.to_string()).collect();
    println!("MXREADY {}", ids.join(" "));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"fill"), "fill4: {line:?}");
    let to = (
        f[1].parse().expect("endpoint"),
        f[2].parse().expect("session"),
    );
    for h in &mut eps {
        probe_fill(h, to);
    }
    println!("MXFILLED");
    hold();
}

// ------------------------------------------------ seals, item 7 ---

/// Issue 14 item 7: open an endpoint whose page set is a memfd sealed
/// against shrinking but not against new seals (the descriptor number the
/// library sends is swapped for such a memfd holding the same bytes).
/// `MXUNSEALED reply=<reply>`; then it holds.
pub fn run_unsealed(socket: &Path) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;
    let link =
        LocalGuest::attach(&LocalTarget::new(socket), Duration::from_secs(10)).expect("attach");
    let layout = layout(&SIZES).expect("layout");
    let len = layout.region_len();
    let pages = Arc::new(link.alloc_pages(len / PAGE_SIZE).expect("pages"));
    let _chan = GuestChannel::create(pages.clone(), &SIZES).expect("channel");
    let mut bytes = vec![0u8; len];
    SharedMem::read_at(&*pages, 0, &mut bytes).expect("our pages");
    // SAFETY: a NUL-terminated name and valid flags; the result, if
    // valid, is a fresh descriptor that we own.
    let fd = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by the kernel and is ours alone.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len as u64).expect("size");
    file.write_all_at(&bytes, 0).expect("contents");
    // SAFETY: plain fcntl/dup2 on descriptors we hold; the library's
    // descriptor number now names our memfd (its mapping is unaffected).
    unsafe {
        assert_eq!(
            libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK),
            0
        );
        assert!(libc::dup2(file.as_raw_fd(), pages.as_fd().as_raw_fd()) >= 0);
    }
    let event = link.alloc_event().expect("event channel");
    let r = call(
        &link,
        &ControlRequest::OpenEndpoint {
            board: 0,
            endpoint: ANY_ENDPOINT,
            sizes: SIZES,
            flags: Default::default(),
        },
        &[Resource::Pages(&*pages), Resource::Event(&event)],
    )
    .expect("open");
    let reply = match r {
        ControlReply::Opened { .. } => "Opened".to_string(),
        ControlReply::Error(e) => format!("{e:?}"),
        other => panic!("open: {other:?}"),
    };
    println!("MXUNSEALED reply={reply}");
    hold();
}

// ------------------------------------------- drops counted once ---

fn counter_of(v: &[u64], label: &str) -> u64 {
    let i = mx_proto::msg::control::COUNTER_LABELS
        .iter()
        .position(|l| *l == label)
        .expect("counter label");
    v[i]
}

/// Fill `h`'s event ring with messages to itself, and let the backend
/// post them all.
fn fill_own_events(h: &mut Hostile, rng: &mut Rng) {
    for _ in 0..SIZES.evt_slots {
        h.push_self_tiny(rng);
    }
    h.kick();
    wait_counter(h, "events posted", u64::from(SIZES.evt_slots));
}

/// Wait (bounded, 20 s) until `h`'s counter `label` reaches `n`.
fn wait_counter(h: &Hostile, label: &str, n: u64) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if h.counters().is_some_and(|c| counter_of(&c, label) >= n) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{label} never reached {n}");
}

/// Commands that wait and are then NACKed or dropped must be counted
/// once, however often the backend retried them. Two cases:
/// `MXDROPS1 closed=<n> nacks=<n> bad=<n>`: a send beyond the board's
/// endpoints and one to a closed endpoint whose NACKs wait for room in
/// our own full event ring (we drain it after a while); `MXDROPS2 stalled=<n> backpressured=<n> dest_dropped=<n>`: a
/// send to an endpoint that never drains, given up on after
/// `stalled_wait`. Then it holds.
pub fn run_drop_counts(socket: &Path) {
    let (mut rng, _) = Rng::from_entropy();
    let mut x = Hostile::open(socket);
    fill_own_events(&mut x, &mut rng);
    // Beyond the board's endpoints: its NACK waits too (the backend once
    // indexed its endpoint table with such an id while deciding whether
    // to give up, and panicked).
    let hdr = x.hdr(&mut rng, x.board.self_peer, 255, 0);
    assert!(x.push(&Command::Tiny { hdr, data: &[] }));
    let closed = (0..32u8).rev().find(|&e| e != x.ep).expect("an id");
    let hdr = x.hdr(&mut rng, x.board.self_peer, closed, 0);
    assert!(x.push(&Command::Tiny { hdr, data: &[] }));
    x.kick();
    // The backend retries the NACK every millisecond meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    x.drain();
    wait_counter(&x, "nacks sent", 2);
    // Room for more retries to be (wrongly) counted, had there been any.
    std::thread::sleep(Duration::from_millis(100));
    x.drain();
    let c = x.counters().expect("x's counters");
    println!(
        "MXDROPS1 closed={} nacks={} bad={}",
        counter_of(&c, "recv dropped: endpoint closed"),
        counter_of(&c, "nacks sent"),
        counter_of(&c, "cmds bad slot or peer")
    );
    let mut v = Hostile::open(socket);
    fill_own_events(&mut v, &mut rng);
    let mut s = Hostile::open(socket);
    let hdr = s.hdr(&mut rng, s.board.self_peer, v.ep, v.session);
    assert!(s.push(&Command::Tiny { hdr, data: &[] }));
    s.kick();
    // After `stalled_wait` (100 ms) the send is given up on; it was
    // retried every millisecond meanwhile.
    wait_counter(&s, "sends dropped: destination stalled", 1);
    std::thread::sleep(Duration::from_millis(100));
    let cs = s.counters().expect("s's counters");
    let cv = v.counters().expect("v's counters");
    println!(
        "MXDROPS2 stalled={} backpressured={} dest_dropped={}",
        counter_of(&cs, "sends dropped: destination stalled"),
        counter_of(&cs, "sends back-pressured"),
        counter_of(&cv, "recv dropped: event ring full"),
    );
    hold();
}

// ------------------------------------------- counters are the owner's ---

/// Open an endpoint, then read the counters of ours, of `MX_PEEK_EP`
/// (another user's) and of `MX_PEEK_FREE` (not open):
/// `MXPEEK ep=<ours> own=<ok|error> other=<..> free=<..>`; then hold.
pub fn run_peek(socket: &Path) {
    use frontend::{Frontend, FrontendError};
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(socket)).expect("attach");
    let (ep, _) = fe
        .open_endpoint(ANY_ENDPOINT, ChannelSizes::default())
        .expect("open");
    let env = |k: &str| -> u8 { std::env::var(k).expect(k).parse().expect("endpoint") };
    let show = |r: Result<Vec<u64>, FrontendError>| match r {
        Ok(_) => "ok".to_string(),
        Err(FrontendError::Refused(e)) => format!("{e:?}"),
        Err(e) => panic!("counters: {e}"),
    };
    println!(
        "MXPEEK ep={} own={} other={} free={}",
        ep.id(),
        show(fe.counters(ep.id())),
        show(fe.counters(env("MX_PEEK_EP"))),
        show(fe.counters(env("MX_PEEK_FREE"))),
    );
    hold();
}
