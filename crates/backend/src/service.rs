//! The backend's service loop: accept guests, answer their control
//! requests, drain their command rings, deliver, publish events, sleep when
//! idle.
//!
//! # The loop
//!
//! A pass takes up to `cmd_batch` commands from every guest principal (a
//! uid or a domain, [`GuestConn::principal`]), shared among its endpoints
//! (round robin, so one busy user cannot starve the others however many
//! endpoints it opens), then publishes the
//! events of every endpoint that got some and notifies only the guests that
//! asked to be woken (their `prod_event`). When passes find work the loop
//! goes on at once; when they stop finding work it keeps polling for the
//! configured spin window (yielding the CPU between polls under
//! [`IdlePolicy::Yield`]), then arms every command ring's `prod_event`,
//! re-checks (the lost-wake-up guard) and sleeps in epoll on the guests'
//! event channels and control sockets. An idle backend therefore uses no CPU.
//! A command blocked by back-pressure (its destination's event ring or
//! receive queue is full) is retried every pass while the loop spins, then
//! every millisecond (`PENDING_POLL`): guests free room without notifying,
//! and a guest that never drains must not make the backend spin. A guest
//! whose event ring or receive queue index is corrupt is detached. A
//! command blocked on another endpoint of this host that stays full is
//! dropped and counted after `WireTiming::stalled_wait`
//! ([`deliver::give_up`]); connects never wait.
//!
//! With a NIC ([`Backend::new_with_nic`]) a pass also serves the wire
//! ([`crate::wire::service`]): received frames, the replies they cause,
//! pull and discovery timers, pull completions, and one NIC flush, before
//! the events are published. The NIC's descriptor joins the poller, and
//! the idle sleep ends at the earliest wire timer.
//!
//! The board's raw endpoint ([`crate::raw`]), when open, is served in the
//! same pass: its sends after the endpoints' commands (their frames leave
//! with the same NIC flush), its received frames by the wire's receive
//! path, its events published with everybody else's.

use crate::config::{BackendConfig, IdlePolicy, RawAccess};
use crate::counters::{Counter, NicCounters, RawCounter, RawCounters};
use crate::deliver::{self, Ctx, Outcome};
use crate::endpoint::Endpoint;
use crate::nic::Nic;
use crate::peer_channels::PeerBroker;
use crate::peers::PeerTable;
use crate::raw::{RawEndpoint, RawTx};
use crate::wire::Wire;
use mx_proto::channel::RING_SENDQ;
use mx_proto::channel::{HostChannel, MAX_QUEUE_SLOTS};
use mx_proto::msg::control::{
    BoardInfo, ChannelSizes, ControlError, ControlReply, ControlRequest, OpenFlags, ANY_ENDPOINT,
    CONTROL_VERSION,
};
use mx_proto::msg::{CmdSlot, Command};
use mx_proto::platform::EventChannel;
use mx_proto::platform::{
    Events, GuestConn, GuestListener, GuestMemory, HostPlatform, Incoming, Interest, Poller,
    ReceivedResources, Wakeup, MAX_CONTROL_MSG, PAGE_SIZE,
};
use slab::Slab;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const TOKEN_LISTENER: u64 = 0;
const TOKEN_STOP: u64 = 1;
const TOKEN_NIC: u64 = 2;
const TOKEN_RAW: u64 = 3;
const TOKEN_GUEST: u64 = 1 << 32;
const TOKEN_ENDPOINT: u64 = 2 << 32;

/// Size of the bounce buffer for intra-node pulls: large enough to amortise
/// the two system calls per chunk, small enough to stay in L2 so the second
/// copy reads from cache.
const BOUNCE: usize = 256 * 1024;

/// How often commands blocked by back-pressure are retried once the loop
/// has gone idle: a guest frees event-ring and receive-queue room without
/// notifying, so the loop polls for it instead of spinning on it.
const PENDING_POLL: Duration = Duration::from_millis(1);

/// How often a NIC without a pollable descriptor is polled when idle.
const NIC_POLL: Duration = Duration::from_millis(1);

/// What [`Backend::arm_all`] found.
enum Armed {
    /// Every command ring is armed: sleep until notified.
    Idle,
    /// Commands wait for room at a destination: sleep briefly.
    Pending,
    /// A command arrived while arming: go on at once.
    Work,
}

struct Guest<H: HostPlatform> {
    conn: H::Conn,
    memory: H::Memory,
    endpoints: Vec<u8>,
    /// Index in [`Backend::principals`].
    principal: usize,
    /// Shared memory mapped for this guest's channels, in bytes.
    mapped: u64,
}

/// What the peer broker needs of guest `g`: its principal and domain.
fn owner<H: HostPlatform>(guests: &Slab<Guest<H>>, g: usize) -> crate::peer_channels::Owner {
    guests
        .get(g)
        .map_or_else(Default::default, |g| crate::peer_channels::Owner {
            // Privileged guests are outside the per-principal limits.
            principal: (!g.conn.is_privileged()).then_some(g.principal),
            domain: g.conn.peer_domain(),
        })
}

/// One line per closed endpoint with what crossed the backend for it: how
/// much of its traffic peer channels kept out of the backend shows here.
fn log_closed<H: HostPlatform>(ep: &Endpoint<H>, broker: &PeerBroker, why: &str) {
    let c = &ep.counters;
    let p = broker.counters();
    info!(
        endpoint = ep.id,
        tiny = c.get(Counter::TinySent),
        small = c.get(Counter::SmallSent),
        medium = c.get(Counter::MediumFragsSent),
        rndv = c.get(Counter::RndvSent),
        notify = c.get(Counter::NotifySent),
        liback = c.get(Counter::LibackSent),
        peer_offered = p.offered,
        peer_accepted = p.accepted,
        peer_notices = p.notices,
        "endpoint {why}: commands through the backend"
    );
}

/// Whoever the platform holds accountable for some guests
/// ([`GuestConn::principal`]): limits and the service loop's fair shares
/// are per principal, so that many processes of one user count as one.
struct Principal {
    id: u64,
    attachments: u32,
    /// Its open endpoints, in the order the service loop serves them.
    endpoints: Vec<u8>,
    /// Shared memory mapped for its channels, in bytes.
    mapped: u64,
    /// Where the next pass starts among `endpoints`.
    cursor: usize,
}

/// A warning that may repeat at a guest's will: logged at most once per
/// [`RATE_LIMIT`], with the number of repeats it stood for.
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

/// Interval of a [`RateLimited`] warning.
const RATE_LIMIT: Duration = Duration::from_secs(10);

impl RateLimited {
    /// `Some(repeats since the last one logged)` if this one may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < RATE_LIMIT)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// First and longest pause of the listener after the process ran out of
/// descriptors (`EMFILE`, `ENFILE`): accepting again at once would only
/// fail again, and the listener stays readable, so the loop would spin.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A handle that stops a running [`Backend`] from another thread.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake: Arc<Wakeup>,
}

impl StopHandle {
    /// Ask the loop to exit; it returns from [`Backend::run`] promptly.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        let _ = self.wake.wake();
    }
}

/// The backend of one host.
pub struct Backend<H: HostPlatform> {
    cfg: BackendConfig,
    listener: H::Listener,
    poller: Poller,
    events: Events,
    guests: Slab<Guest<H>>,
    endpoints: Vec<Option<Endpoint<H>>>,
    peers: PeerTable,
    self_peer: u16,
    stop: Arc<AtomicBool>,
    stop_wake: Arc<Wakeup>,
    bounce: Vec<u8>,
    segs: Vec<(u64, usize)>,
    ctl_buf: Vec<u8>,
    rng: u64,
    region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
    wire: Option<Wire<H>>,
    /// The NIC has no descriptor to sleep on: poll it.
    nic_needs_polling: bool,
    /// The board's raw endpoint, if a guest opened it.
    raw: Option<RawEndpoint<H>>,
    /// Its counters (kept across opens).
    raw_counters: Arc<RawCounters>,
    /// Peer channels offered and up.
    peer_channels: PeerBroker,
    /// The peer channel the control reply being sent hands over.
    peer_grant_out: Option<mx_proto::platform::PeerGrant>,
    /// Guest principals that ever attached a guest.
    principals: Vec<Principal>,
    /// Shared memory mapped for the raw endpoint's channel.
    raw_mapped: u64,
    /// The listener is out of the poller until then (descriptors ran out).
    accept_paused: Option<Instant>,
    /// The next pause of the listener.
    accept_backoff: Duration,
    /// Warnings a guest can cause at will.
    warn_accept: RateLimited,
    warn_limit: RateLimited,
}

/// What [`Backend::attach_channel`] set up from an open request.
struct Attached<H: HostPlatform> {
    chan: crate::endpoint::Chan<H>,
    pages: Arc<H::Pages>,
    event: H::Event,
    sendq_off: usize,
}

fn next_random(state: &mut u64) -> u32 {
    // splitmix64: session ids need to differ between opens, not to be secret.
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

impl<H: HostPlatform> Backend<H> {
    /// Start listening for guests.
    ///
    /// `region_of` turns a guest address range from a region registration
    /// into the platform's bulk-copy reference.
    ///
    /// # Errors
    /// If the platform cannot listen (e.g. another backend holds the socket).
    pub fn new(
        cfg: BackendConfig,
        platform_cfg: &H::Config,
        region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
    ) -> io::Result<Self> {
        Self::new_with_nic(cfg, platform_cfg, region_of, None)
    }

    /// Start listening for guests, and speak MXoE on `nic` if given.
    ///
    /// With a NIC the board address is the NIC's MAC, the wire profile is
    /// `cfg`'s (`profile`, `mtu`; the board then reports that profile's
    /// sizes), the peers file is read and discovery starts.
    ///
    /// # Errors
    /// If the platform cannot listen, the peers file cannot be read, or
    /// the NIC's descriptor cannot be polled.
    pub fn new_with_nic(
        mut cfg: BackendConfig,
        platform_cfg: &H::Config,
        region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
        nic: Option<Box<dyn Nic>>,
    ) -> io::Result<Self> {
        let mut rng = seed();
        let now = Instant::now();
        let wire = nic.map(|nic| {
            let profile = cfg.wire_profile();
            cfg.set_profile(profile);
            if u64::from(nic.mtu()) + 14 < u64::from(profile.frame_budget()) {
                warn!(
                    nic_mtu = nic.mtu(),
                    needed = profile.frame_budget(),
                    "the NIC's MTU is smaller than the wire profile's frames"
                );
            }
            let w = Wire::new(
                nic,
                profile,
                &cfg.hostname,
                cfg.max_endpoints,
                cfg.wire,
                cfg.discovery,
                next_random(&mut rng),
                region_of,
                now,
            );
            cfg.nic_id = w.nic_id();
            w
        });
        let listener = H::listen(platform_cfg)?;
        let poller = Poller::new()?;
        poller.add(listener.as_fd(), TOKEN_LISTENER, Interest::READABLE)?;
        let stop_wake = Arc::new(Wakeup::new()?);
        poller.add(stop_wake.as_fd(), TOKEN_STOP, Interest::READABLE)?;
        let mut peers = PeerTable::with_self(cfg.nic_id, &cfg.hostname);
        let mut nic_needs_polling = false;
        if let Some(w) = &wire {
            match w.nic.poll_fd() {
                // The NIC outlives the poller (both belong to the
                // backend, the poller is dropped first), and epoll keeps
                // no reference beyond the registration.
                Some(fd) => poller.add(fd, TOKEN_NIC, Interest::READABLE)?,
                None => nic_needs_polling = true,
            }
            if let Some(path) = &cfg.peers_file {
                for (nic_id, host) in crate::peers::read_peers_file(path)? {
                    if nic_id != cfg.nic_id {
                        peers.add(nic_id, &host, false);
                    }
                }
                info!(peers = peers.len() - 1, file = %path.display(), "static peers");
            }
        } else if cfg.peers_file.is_some() {
            warn!("a peers file without a NIC is ignored");
        }
        let mut endpoints = Vec::new();
        endpoints.resize_with(cfg.max_endpoints as usize, || None);
        info!(hostname = %cfg.hostname, nic_id = format_args!("{:012x}", cfg.nic_id), nic = wire.is_some(), "backend listening");
        Ok(Backend {
            listener,
            poller,
            events: Events::with_capacity(64),
            guests: Slab::new(),
            endpoints,
            peers,
            self_peer: 0,
            stop: Arc::new(AtomicBool::new(false)),
            stop_wake,
            bounce: vec![0; BOUNCE],
            segs: Vec::with_capacity(256),
            ctl_buf: vec![0; MAX_CONTROL_MSG],
            rng,
            region_of,
            wire,
            nic_needs_polling,
            raw: None,
            raw_counters: Arc::new(RawCounters::default()),
            peer_channels: PeerBroker::new(
                cfg.peer_channels_per_endpoint,
                cfg.limits.peer_channels as usize,
            ),
            peer_grant_out: None,
            principals: Vec::new(),
            raw_mapped: 0,
            accept_paused: None,
            accept_backoff: ACCEPT_BACKOFF_MIN,
            warn_accept: RateLimited::default(),
            warn_limit: RateLimited::default(),
            cfg,
        })
    }

    /// The raw-endpoint counters, readable from any thread.
    pub fn raw_counters(&self) -> Arc<RawCounters> {
        self.raw_counters.clone()
    }

    /// The NIC counters (`None` without a NIC), readable from any thread.
    pub fn nic_counters(&self) -> Option<Arc<NicCounters>> {
        self.wire.as_ref().map(|w| w.st.counters.clone())
    }

    /// The earliest time the loop must wake up for the wire side.
    fn wire_deadline(&self) -> Option<Duration> {
        let w = self.wire.as_ref()?;
        let mut d =
            w.st.timer_at
                .map(|t| t.saturating_duration_since(Instant::now()));
        if self.nic_needs_polling {
            d = Some(d.map_or(NIC_POLL, |d| d.min(NIC_POLL)));
        }
        if !w.st.held.is_empty() {
            // A looped-back PULL waits for its sender to register the rest
            // of its window, which comes as a command: look again soon.
            d = Some(d.map_or(PENDING_POLL, |d| d.min(PENDING_POLL)));
        }
        if w.st.pulls.iter().any(|t| t.peek_done().is_some()) {
            // A PullDone waits for room in an event ring, which the guest
            // frees without notifying: look again soon.
            d = Some(d.map_or(PENDING_POLL, |d| d.min(PENDING_POLL)));
        }
        d
    }

    /// A handle to stop [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.stop.clone(),
            wake: self.stop_wake.clone(),
        }
    }

    /// The board this backend serves.
    pub fn board_info(&self) -> BoardInfo {
        BoardInfo {
            board: 0,
            nic_id: self.cfg.nic_id,
            hostname: self.cfg.hostname.clone(),
            self_peer: self.self_peer,
            max_endpoints: u32::from(self.cfg.max_endpoints),
            profile: self.cfg.profile,
            mtu: self.cfg.mtu,
            frag_max: self.cfg.frag_max,
            medium_max: self.cfg.medium_max,
        }
    }

    /// Number of attached guests.
    pub fn guest_count(&self) -> usize {
        self.guests.len()
    }

    /// Serve until stopped.
    ///
    /// # Errors
    /// Only on a failure of the backend's own poller.
    pub fn run(&mut self) -> io::Result<()> {
        let mut last_work = Instant::now();
        let mut passes: u32 = 0;
        while !self.stop.load(Ordering::Acquire) {
            let worked = self.pass();
            passes = passes.wrapping_add(1);
            if worked {
                last_work = Instant::now();
                // Control requests and hang-ups must not wait for traffic to
                // stop: look at them every few dozen busy passes.
                if passes.is_multiple_of(64) {
                    self.poll_io(Some(Duration::ZERO))?;
                }
                continue;
            }
            let idle_for = last_work.elapsed();
            if self.cfg.idle != IdlePolicy::Block && idle_for < self.cfg.spin {
                if self.cfg.idle == IdlePolicy::Yield {
                    std::thread::yield_now();
                }
                if passes.is_multiple_of(64) {
                    self.poll_io(Some(Duration::ZERO))?;
                }
                continue;
            }
            let wire = self.wire_deadline();
            match self.arm_all() {
                Armed::Work => continue,
                Armed::Pending => {
                    let t = wire.map_or(PENDING_POLL, |w| w.min(PENDING_POLL));
                    self.poll_io(Some(t))?
                }
                Armed::Idle => {
                    self.poll_io(wire)?;
                    last_work = Instant::now();
                }
            }
        }
        info!("backend stopping");
        if let Some(w) = &self.wire {
            let nonzero: Vec<String> = mx_proto::msg::control::NIC_COUNTER_LABELS
                .iter()
                .zip(w.st.counters.values())
                .filter(|(_, v)| *v > 0)
                .map(|(l, v)| format!("{l}={v}"))
                .collect();
            info!(counters = %nonzero.join(", "), stats = ?w.nic.stats(), "NIC counters");
        }
        Ok(())
    }

    /// Arm every command ring for a wake-up.
    fn arm_all(&mut self) -> Armed {
        let mut armed = Armed::Idle;
        if let Some(raw) = self.raw.as_mut() {
            if raw.pending.is_some() {
                armed = Armed::Pending;
            } else if let Ok(false) = raw.chan.prepare_to_sleep() {
                return Armed::Work;
            }
        }
        for ep in self.endpoints.iter_mut().flatten() {
            if ep.pending.is_some() {
                // A blocked command waits for its destination to drain,
                // which the destination does not signal: poll again soon.
                // The commands queued behind it cannot run before it.
                if matches!(armed, Armed::Idle) {
                    armed = Armed::Pending;
                }
                continue;
            }
            match ep.chan.prepare_to_sleep() {
                Ok(true) => {}
                Ok(false) => return Armed::Work,
                Err(_) => {} // a broken ring is handled in the next pass
            }
        }
        armed
    }

    fn poll_io(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut timeout = timeout.or(Some(Duration::from_secs(1)));
        if let Some(until) = self.accept_paused {
            let now = Instant::now();
            if now >= until {
                self.accept_paused = None;
                match self
                    .poller
                    .add(self.listener.as_fd(), TOKEN_LISTENER, Interest::READABLE)
                {
                    Ok(()) => self.accept_all(),
                    Err(e) => {
                        warn!("cannot poll the listener again: {e}");
                        self.pause_accepting(now);
                    }
                }
            }
            if let Some(until) = self.accept_paused {
                let left = until.saturating_duration_since(Instant::now());
                timeout = timeout.map(|t| t.min(left));
            }
        }
        self.poller.wait(&mut self.events, timeout)?;
        // By index: each report is copied out, so handling it may borrow
        // `self` mutably, and the busy loop's periodic poll allocates nothing.
        for i in 0..self.events.len() {
            let Some(ev) = self.events.get(i) else { break };
            match ev.token {
                TOKEN_LISTENER => self.accept_all(),
                TOKEN_STOP => {
                    let _ = self.stop_wake.consume();
                }
                TOKEN_NIC => {} // the next pass drains the NIC
                TOKEN_RAW => {
                    if let Some(raw) = &self.raw {
                        let _ = raw.event.consume();
                    }
                }
                t if t & !0xffff_ffff == TOKEN_GUEST => {
                    self.serve_control((t & 0xffff_ffff) as usize, ev.hangup)
                }
                t if t & !0xffff_ffff == TOKEN_ENDPOINT => {
                    let id = (t & 0xffff_ffff) as usize;
                    if let Some(Some(ep)) = self.endpoints.get(id) {
                        // A guest that closed its end of the doorbell can
                        // never be woken again, and its hang-up would wake
                        // this loop for ever: close the endpoint.
                        if ev.hangup || ep.event.consume().is_err() {
                            warn!(
                                endpoint = id,
                                "endpoint's event channel hung up; closing it"
                            );
                            self.close(id as u8);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn accept_all(&mut self) {
        if self.accept_paused.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok(Some(conn)) => {
                    self.accept_backoff = ACCEPT_BACKOFF_MIN;
                    self.admit(conn);
                }
                Ok(None) => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    let now = Instant::now();
                    if let Some(n) = self.warn_accept.allow(now) {
                        warn!(
                            "accept: {e}; not accepting for {:?} ({n} more since the last warning)",
                            self.accept_backoff
                        );
                    }
                    self.pause_accepting(now);
                    break;
                }
                Err(e) => {
                    if let Some(n) = self.warn_accept.allow(Instant::now()) {
                        warn!("accept: {e} ({n} more since the last warning)");
                    }
                    break;
                }
            }
        }
    }

    /// Take the listener out of the poller for the current back-off, and
    /// double the next one.
    fn pause_accepting(&mut self, now: Instant) {
        let _ = self.poller.delete(self.listener.as_fd());
        self.accept_paused = Some(now + self.accept_backoff);
        self.accept_backoff = (self.accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
    }

    /// A freshly accepted guest: attach it within its principal's limits,
    /// or tell it why not and let it go.
    fn admit(&mut self, conn: H::Conn) {
        let id = conn.principal();
        let p = self.principals.iter().position(|p| p.id == id);
        let held = p.map_or(0, |i| self.principals[i].attachments);
        let refused = if held >= self.cfg.limits.attachments && !conn.is_privileged() {
            Some("attachments per user")
        } else if self.guests.len() >= self.cfg.limits.total_attachments as usize {
            Some("attachments")
        } else {
            None
        };
        if let Some(limit) = refused {
            if let Some(n) = self.warn_limit.allow(Instant::now()) {
                warn!(guest = %conn.guest_id(), limit, "guest refused at a limit ({n} more since the last warning)");
            }
            // Its first request reads this as the answer; dropping the
            // connection closes it.
            let _ = conn.send(&ControlReply::Error(ControlError::NoResources).encode());
            return;
        }
        let memory = conn.memory();
        let entry = self.guests.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poller
            .add(conn.as_fd(), TOKEN_GUEST | key as u64, Interest::READABLE)
        {
            warn!("cannot poll guest connection: {e}");
            return;
        }
        let principal = match p {
            Some(i) => i,
            None => {
                self.principals.push(Principal {
                    id,
                    attachments: 0,
                    endpoints: Vec::new(),
                    mapped: 0,
                    cursor: 0,
                });
                self.principals.len() - 1
            }
        };
        self.principals[principal].attachments += 1;
        info!(guest = %conn.guest_id(), "guest attached");
        entry.insert(Guest {
            conn,
            memory,
            endpoints: Vec::new(),
            principal,
            mapped: 0,
        });
    }

    fn serve_control(&mut self, key: usize, hangup: bool) {
        loop {
            let Some(g) = self.guests.get(key) else {
                return;
            };
            let mut buf = std::mem::take(&mut self.ctl_buf);
            let incoming = g.conn.recv(&mut buf);
            let outcome = match incoming {
                Ok(Incoming::Request { len, resources }) => {
                    let reply = self.control(key, &buf[..len], resources);
                    let grant = self.peer_grant_out.take();
                    if let Some(g) = self.guests.get(key) {
                        let sent = match grant {
                            Some(grant) => g.conn.send_peer(&reply.encode(), grant),
                            None => g.conn.send(&reply.encode()),
                        };
                        if let Err(e) = sent {
                            warn!(guest = %g.conn.guest_id(), "control reply failed: {e}; detaching");
                            self.ctl_buf = buf;
                            self.detach(key);
                            return;
                        }
                    }
                    true
                }
                Ok(Incoming::Empty) => false,
                Ok(Incoming::Closed) => {
                    self.ctl_buf = buf;
                    self.detach(key);
                    return;
                }
                Err(e) => {
                    warn!("guest broke the control protocol: {e}; detaching");
                    self.ctl_buf = buf;
                    self.detach(key);
                    return;
                }
            };
            self.ctl_buf = buf;
            if !outcome {
                break;
            }
        }
        if hangup {
            self.detach(key);
        }
    }

    fn control(&mut self, key: usize, msg: &[u8], mut res: H::Resources) -> ControlReply {
        let req = match ControlRequest::decode(msg) {
            Ok(r) => r,
            Err(e) => {
                debug!("malformed control request: {e}");
                return ControlReply::Error(ControlError::Malformed);
            }
        };
        match req {
            ControlRequest::Hello { version } => {
                if version != CONTROL_VERSION {
                    ControlReply::Error(ControlError::BadVersion)
                } else {
                    ControlReply::Hello(self.board_info())
                }
            }
            ControlRequest::Board { board } => {
                if board != 0 {
                    ControlReply::Error(ControlError::BoardUnknown)
                } else {
                    ControlReply::Board(self.board_info())
                }
            }
            ControlRequest::OpenEndpoint {
                board,
                endpoint,
                sizes,
                flags,
            } => match self.open(key, board, endpoint, sizes, flags, &mut res) {
                Ok((endpoint, session)) => ControlReply::Opened { endpoint, session },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::CloseEndpoint { endpoint } => {
                let owned = self
                    .endpoints
                    .get(endpoint as usize)
                    .and_then(|e| e.as_ref())
                    .is_some_and(|e| e.guest == key);
                if !owned {
                    ControlReply::Error(ControlError::NotOwner)
                } else {
                    self.close(endpoint);
                    ControlReply::Closed
                }
            }
            ControlRequest::PeerByNicId { nic_id } => self.peers.by_nic_id(nic_id).map_or(
                ControlReply::Error(ControlError::PeerNotFound),
                ControlReply::Peer,
            ),
            ControlRequest::PeerByHostname { hostname } => {
                self.peers.by_hostname(&hostname).map_or(
                    ControlReply::Error(ControlError::PeerNotFound),
                    ControlReply::Peer,
                )
            }
            ControlRequest::PeerByIndex { index } => self.peers.info(index).map_or(
                ControlReply::Error(ControlError::PeerNotFound),
                ControlReply::Peer,
            ),
            ControlRequest::NicCounters { board } => match (&self.wire, board) {
                (_, b) if b != 0 => ControlReply::Error(ControlError::BoardUnknown),
                (Some(w), _) => ControlReply::Counters(w.st.counters.values()),
                (None, _) => ControlReply::Counters(Vec::new()),
            },
            ControlRequest::Counters { endpoint } => {
                match self
                    .endpoints
                    .get(endpoint as usize)
                    .and_then(|e| e.as_ref())
                {
                    Some(e) if self.may_inspect(key, e.guest) => {
                        ControlReply::Counters(e.counters.values().to_vec())
                    }
                    Some(_) => ControlReply::Error(ControlError::NotOwner),
                    None => ControlReply::Error(ControlError::BadEndpoint),
                }
            }
            ControlRequest::OpenRaw { board, sizes } => {
                match self.open_raw(key, board, sizes, &mut res) {
                    Ok(max_frame) => ControlReply::RawOpened { max_frame },
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::CloseRaw { board } => match self.raw_owner(key, board) {
                Ok(()) => {
                    self.close_raw();
                    ControlReply::Closed
                }
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::SetHostname { board, hostname } => {
                match self
                    .raw_owner(key, board)
                    .and_then(|()| self.set_hostname(&hostname))
                {
                    Ok(()) => ControlReply::Done,
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::SetPeerName {
                board,
                nic_id,
                hostname,
            } => match self
                .raw_owner(key, board)
                .and_then(|()| self.set_peer_name(nic_id, &hostname))
            {
                Ok(()) => ControlReply::Done,
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerOpen {
                endpoint,
                peer_endpoint,
                sizes,
            } => match self.peer_channels.open(
                &mut self.endpoints,
                crate::peer_channels::PeerRequest {
                    guest: key,
                    from: endpoint,
                    to: peer_endpoint,
                    sizes,
                    self_peer: self.self_peer,
                },
                |g| owner(&self.guests, g),
                &mut res,
            ) {
                Ok(channel) => ControlReply::PeerPending {
                    channel,
                    // Whom the offerer's direct pulls over the channel read.
                    pid: self
                        .endpoints
                        .get(usize::from(peer_endpoint))
                        .and_then(|e| e.as_ref())
                        .and_then(|e| e.memory.direct_pid())
                        .unwrap_or(0),
                },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerDomain {
                endpoint,
                peer_endpoint,
            } => match self.peer_channels.domain(
                &self.endpoints,
                key,
                endpoint,
                peer_endpoint,
                |g| owner(&self.guests, g),
            ) {
                Ok(domain) => ControlReply::PeerDomain { domain },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerAccept { endpoint, channel } => {
                match self
                    .peer_channels
                    .accept(&self.endpoints, key, endpoint, channel)
                {
                    Ok(grant) => {
                        self.peer_grant_out = Some(grant);
                        ControlReply::Done
                    }
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::PeerClose { endpoint, channel } => {
                match self
                    .peer_channels
                    .close(&mut self.endpoints, key, endpoint, channel)
                {
                    Ok(()) => ControlReply::Done,
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::RawCounters { board } => {
                if board != 0 {
                    ControlReply::Error(ControlError::BoardUnknown)
                } else {
                    ControlReply::Counters(self.raw_counters.values())
                }
            }
        }
    }

    /// Whether guest `key` may read what guest `owner` holds (an
    /// endpoint's counters): its own principal's, or anyone's for a
    /// privileged guest (the backend's administrator). Processes of one
    /// uid can inspect each other anyway (ptrace, /proc); other users'
    /// traffic figures are theirs.
    fn may_inspect(&self, key: usize, owner: usize) -> bool {
        let (Some(g), Some(o)) = (self.guests.get(key), self.guests.get(owner)) else {
            return false;
        };
        g.principal == o.principal || g.conn.is_privileged()
    }

    /// Whether the per-principal limits apply to guest `key`: not to a
    /// privileged guest (root, or the backend's own user), who can
    /// restart the backend with any limits anyway; every root process of
    /// a host would otherwise share one quota. The totals (attachments in
    /// all, the board's endpoints) still hold.
    fn limited(&self, key: usize) -> bool {
        self.guests.get(key).is_none_or(|g| !g.conn.is_privileged())
    }

    /// Whether guest `key` may open the raw endpoint, by the configured
    /// policy and the platform's word on the guest.
    fn raw_permitted(&self, key: usize) -> bool {
        match self.cfg.raw_access {
            RawAccess::Any => true,
            RawAccess::Nobody => false,
            RawAccess::Privileged => self.guests.get(key).is_some_and(|g| g.conn.is_privileged()),
        }
    }

    /// `Ok` if guest `key` owns board `board`'s raw endpoint: the
    /// privileged board requests (close it, name the board and its peers)
    /// are its owner's.
    fn raw_owner(&self, key: usize, board: u32) -> Result<(), ControlError> {
        if board != 0 {
            return Err(ControlError::BoardUnknown);
        }
        match &self.raw {
            Some(r) if r.guest == key => Ok(()),
            _ => Err(ControlError::NotPermitted),
        }
    }

    fn open_raw(
        &mut self,
        key: usize,
        board: u32,
        sizes: ChannelSizes,
        res: &mut H::Resources,
    ) -> Result<u32, ControlError> {
        if board != 0 {
            return Err(ControlError::BoardUnknown);
        }
        if !self.raw_permitted(key) {
            self.raw_counters.bump(RawCounter::OpenNotPermitted);
            if let Some(g) = self.guests.get(key) {
                warn!(guest = %g.conn.guest_id(), policy = ?self.cfg.raw_access, "raw endpoint refused");
            }
            return Err(ControlError::NotPermitted);
        }
        if self.raw.is_some() {
            self.raw_counters.bump(RawCounter::OpenBusy);
            return Err(ControlError::Busy);
        }
        let a = self.attach_channel(key, &sizes, res, TOKEN_RAW)?;
        let mtu = self
            .wire
            .as_ref()
            .filter(|w| !w.loopback_only)
            .map_or(self.cfg.mtu, |w| w.nic.mtu());
        let max_frame = crate::raw::max_frame(mtu);
        self.raw_mapped = mx_proto::ring::SharedRegion::len(&*a.pages) as u64;
        self.raw = Some(RawEndpoint::new(key, a.chan, a.event, max_frame));
        self.raw_counters.bump(RawCounter::Opens);
        if let Some(g) = self.guests.get(key) {
            info!(guest = %g.conn.guest_id(), max_frame, "raw endpoint opened");
        }
        Ok(max_frame as u32)
    }

    fn close_raw(&mut self) {
        if let Some(raw) = self.raw.take() {
            let _ = self.poller.delete(raw.event.as_fd());
            let bytes = std::mem::take(&mut self.raw_mapped);
            self.account(raw.guest, -(bytes as i64));
            debug!("raw endpoint closed");
            // Dropping it unmaps the guest's pages and unbinds its channel.
        }
    }

    /// Rename the board: what HOST_REPLY answers and peer look-ups find.
    fn set_hostname(&mut self, name: &str) -> Result<(), ControlError> {
        let wire_name =
            mxoe_wire::Hostname::new(name.as_bytes()).map_err(|_| ControlError::Malformed)?;
        if let Some(w) = self.wire.as_mut() {
            w.st.hostname = wire_name;
        }
        self.peers.set_hostname(self.self_peer, name);
        info!(old = %self.cfg.hostname, new = %name, "board renamed by its raw endpoint");
        self.cfg.hostname = name.to_string();
        Ok(())
    }

    /// Name a peer (adding it when unknown), as a mapper that computed the
    /// fabric's map does. Our own address is left alone (the board's name
    /// is `set_hostname`'s).
    fn set_peer_name(&mut self, nic_id: u64, name: &str) -> Result<(), ControlError> {
        let valid =
            mxoe_wire::NicId::new(nic_id).is_some_and(|n| nic_id != 0 && n.to_mac()[0] & 1 == 0);
        if !valid || mxoe_wire::Hostname::new(name.as_bytes()).is_err() {
            return Err(ControlError::Malformed);
        }
        if nic_id == self.cfg.nic_id {
            return Ok(());
        }
        match self.peers.index_of(nic_id) {
            Some(i) => {
                self.peers.set_hostname(i, name);
                self.peers.set_query(i, None);
            }
            None => {
                self.peers
                    .add(nic_id, name, false)
                    .ok_or(ControlError::NoResources)?;
            }
        }
        Ok(())
    }

    fn check_sizes(&self, s: &ChannelSizes) -> Result<(), ControlError> {
        let ring_ok = |n: u32| n.is_power_of_two() && n <= self.cfg.max_ring_slots;
        let queue_ok =
            |n: u32| n.is_power_of_two() && n <= self.cfg.max_queue_slots && n <= MAX_QUEUE_SLOTS;
        if ring_ok(s.cmd_slots)
            && ring_ok(s.evt_slots)
            && queue_ok(s.sendq_slots)
            && queue_ok(s.recvq_slots)
        {
            Ok(())
        } else {
            Err(ControlError::BadResources)
        }
    }

    /// Map the channel an open request hands over (page set in slot 0,
    /// event channel in slot 1), check its control page against `sizes`,
    /// and poll its event channel under `token`. Shared by endpoints and
    /// the raw endpoint.
    fn attach_channel(
        &mut self,
        key: usize,
        sizes: &ChannelSizes,
        res: &mut H::Resources,
        token: u64,
    ) -> Result<Attached<H>, ControlError> {
        if !self.guests.contains(key) {
            return Err(ControlError::NotOwner);
        }
        self.check_sizes(sizes)?;
        let layout = mx_proto::channel::layout(sizes).map_err(|_| ControlError::BadResources)?;
        let layout_len = layout.region_len();
        let sendq_off = layout.rings[RING_SENDQ]
            .map(|r| r.area_offset as usize)
            .ok_or(ControlError::BadResources)?;
        let principal = self.guests.get(key).map_or(0, |g| g.principal);
        let mapped = self.principals.get(principal).map_or(0, |p| p.mapped);
        if mapped.saturating_add(layout_len as u64) > self.cfg.limits.memory && self.limited(key) {
            self.limit_refused(key, "shared memory per user");
            return Err(ControlError::NoResources);
        }
        let pages = res
            .take_pages(0, layout_len / PAGE_SIZE)
            .map_err(|_| ControlError::BadResources)?;
        let event = res.take_event(1).map_err(|_| ControlError::BadResources)?;
        let pages = Arc::new(pages);
        let chan = HostChannel::attach(pages.clone(), sizes).map_err(|e| {
            debug!("guest channel refused: {e:?}");
            ControlError::BadResources
        })?;
        self.poller
            .add(event.as_fd(), token, Interest::READABLE)
            .map_err(|_| ControlError::NoResources)?;
        self.account(key, layout_len as i64);
        Ok(Attached {
            chan,
            pages,
            event,
            sendq_off,
        })
    }

    /// Add (or, negative, release) `bytes` of shared memory mapped for
    /// guest `key` and its principal.
    fn account(&mut self, key: usize, bytes: i64) {
        if let Some(g) = self.guests.get_mut(key) {
            g.mapped = g.mapped.saturating_add_signed(bytes);
            if let Some(p) = self.principals.get_mut(g.principal) {
                p.mapped = p.mapped.saturating_add_signed(bytes);
            }
        }
    }

    /// A request of guest `key` hit a per-principal limit: log it (rate
    /// limited: a guest can ask again at will).
    fn limit_refused(&mut self, key: usize, limit: &'static str) {
        if let Some(n) = self.warn_limit.allow(Instant::now()) {
            if let Some(g) = self.guests.get(key) {
                warn!(guest = %g.conn.guest_id(), limit, "request refused at a limit ({n} more since the last warning)");
            }
        }
    }

    /// Give a board without a NIC its wire side, on a device that only
    /// loops frames back ([`NoNic`](crate::wire::loopback::NoNic)): the
    /// network path between two endpoints of this host
    /// (`MX_DISABLE_SHMEM`) needs the encoder, the decoder and the pull
    /// engine, not a NIC. Made on the first endpoint that asks, so a board
    /// nobody asks it of keeps its passes free of wire work.
    fn ensure_wire(&mut self) -> Result<(), ControlError> {
        if self.wire.is_some() {
            return Ok(());
        }
        let profile = self.cfg.wire_profile();
        if profile.frag_max() != self.cfg.frag_max || profile.max_medium() != self.cfg.medium_max {
            // Libraries fragment by the board's sizes; frames of another
            // size would not encode.
            warn!(
                frag_max = self.cfg.frag_max,
                medium_max = self.cfg.medium_max,
                "the board's sizes are not its wire profile's: no network path for MX_DISABLE_SHMEM"
            );
            return Err(ControlError::Unsupported);
        }
        let mac = mxoe_wire::NicId::new(self.cfg.nic_id)
            .ok_or(ControlError::Unsupported)?
            .to_mac();
        let nic = crate::wire::loopback::NoNic::new(mac, profile.frame_budget());
        let serial = next_random(&mut self.rng);
        let mut w = Wire::new(
            Box::new(nic),
            profile,
            &self.cfg.hostname,
            self.cfg.max_endpoints,
            self.cfg.wire,
            false,
            serial,
            self.region_of,
            Instant::now(),
        );
        w.loopback_only = true;
        self.wire = Some(w);
        info!("no NIC: the network path runs on the loopback (MX_DISABLE_SHMEM)");
        Ok(())
    }

    fn open(
        &mut self,
        key: usize,
        board: u32,
        endpoint: u32,
        sizes: ChannelSizes,
        flags: OpenFlags,
        res: &mut H::Resources,
    ) -> Result<(u8, u32), ControlError> {
        if board != 0 && board != 0xffff_ffff {
            return Err(ControlError::BoardUnknown);
        }
        self.check_sizes(&sizes)?;
        let principal = self
            .guests
            .get(key)
            .map(|g| g.principal)
            .ok_or(ControlError::NotOwner)?;
        let held = self
            .principals
            .get(principal)
            .map_or(0, |p| p.endpoints.len());
        if held >= self.cfg.limits.endpoints as usize && self.limited(key) {
            self.limit_refused(key, "endpoints per user");
            return Err(ControlError::NoResources);
        }
        let no_shmem = flags.contains(OpenFlags::DISABLE_SHMEM);
        if no_shmem {
            self.ensure_wire()?;
        }
        let id = if endpoint == ANY_ENDPOINT {
            self.endpoints
                .iter()
                .position(Option::is_none)
                .ok_or(ControlError::NoResources)?
        } else {
            let id = endpoint as usize;
            match self.endpoints.get(id) {
                None => return Err(ControlError::BadEndpoint),
                Some(Some(_)) => return Err(ControlError::Busy),
                Some(None) => id,
            }
        };
        let memory = self
            .guests
            .get(key)
            .map(|g| g.memory.clone())
            .ok_or(ControlError::NotOwner)?;
        let Attached {
            chan,
            pages,
            event,
            sendq_off,
        } = self.attach_channel(key, &sizes, res, TOKEN_ENDPOINT | id as u64)?;
        let session = next_random(&mut self.rng);
        self.endpoints[id] = Some(Endpoint {
            id: id as u8,
            guest: key,
            session,
            chan,
            pages,
            sendq_off,
            event,
            memory,
            regions: Default::default(),
            counters: Default::default(),
            pending: None,
            blocked_since: None,
            dirty: false,
            no_shmem,
            stalled: false,
        });
        if let Some(p) = self.principals.get_mut(principal) {
            p.endpoints.push(id as u8);
        }
        if let Some(g) = self.guests.get_mut(key) {
            g.endpoints.push(id as u8);
            info!(guest = %g.conn.guest_id(), endpoint = id, no_shmem, "endpoint opened");
        }
        Ok((id as u8, session))
    }

    fn close(&mut self, id: u8) {
        self.abort_pulls(id);
        if let Some(ep) = self.endpoints.get_mut(id as usize).and_then(Option::take) {
            let _ = self.poller.delete(ep.event.as_fd());
            self.peer_channels
                .endpoint_closed(&mut self.endpoints, id, ep.session);
            log_closed(&ep, &self.peer_channels, "closed");
            self.account(
                ep.guest,
                -(mx_proto::ring::SharedRegion::len(&*ep.pages) as i64),
            );
            if let Some(g) = self.guests.get_mut(ep.guest) {
                g.endpoints.retain(|&e| e != id);
                if let Some(p) = self.principals.get_mut(g.principal) {
                    p.endpoints.retain(|&e| e != id);
                }
            }
            debug!(endpoint = id, "endpoint closed");
            // Dropping `ep` unmaps the guest's pages and unbinds its channel.
        }
    }

    /// A guest went away: close its endpoints (their peers get
    /// ENDPT_CLOSED NACKs from now on) and forget it.
    fn detach(&mut self, key: usize) {
        let Some(g) = self.guests.try_remove(key) else {
            return;
        };
        let _ = self.poller.delete(g.conn.as_fd());
        info!(guest = %g.conn.guest_id(), endpoints = g.endpoints.len(), "guest detached");
        // Entries stay (indices in `guests` name them); one with nothing
        // attached costs a pass nothing.
        if let Some(p) = self.principals.get_mut(g.principal) {
            p.attachments = p.attachments.saturating_sub(1);
            p.mapped = p.mapped.saturating_sub(g.mapped);
            p.endpoints.retain(|e| !g.endpoints.contains(e));
        }
        if self.raw.as_ref().is_some_and(|r| r.guest == key) {
            self.close_raw();
        }
        for id in g.endpoints {
            self.abort_pulls(id);
            if let Some(ep) = self.endpoints.get_mut(id as usize).and_then(Option::take) {
                let _ = self.poller.delete(ep.event.as_fd());
                self.peer_channels
                    .endpoint_closed(&mut self.endpoints, id, ep.session);
                log_closed(&ep, &self.peer_channels, "closed: guest gone");
            }
        }
    }

    /// An endpoint closes: its pulls end without completions.
    fn abort_pulls(&mut self, id: u8) {
        if let Some(t) = self
            .wire
            .as_mut()
            .and_then(|w| w.st.pulls.get_mut(usize::from(id)))
        {
            t.abort_all();
        }
    }

    /// One pass over every endpoint; true if any command was handled or
    /// any frame received.
    fn pass(&mut self) -> bool {
        let mut worked = false;
        if self.peer_channels.notices_pending() > 0 {
            self.peer_channels.flush_notices(&mut self.endpoints);
        }
        let now = Instant::now();
        let stalled_wait = self.cfg.wire.stalled_wait;
        let endpoints_ptr = &mut self.endpoints;
        let mut ctx = Ctx::<H> {
            self_peer: self.self_peer,
            peers: &self.peers,
            net: self.wire.as_mut(),
            now,
            frag_max: self.cfg.frag_max,
            medium_max: self.cfg.medium_max,
            bounce: &mut self.bounce,
            segs: &mut self.segs,
            region_of: self.region_of,
            blocked_since: None,
            staging_wait: self.cfg.wire.staging_wait,
        };
        let mut broken = Vec::new();
        let mut blocked = false;
        // Fair per principal, not per endpoint: each gets `cmd_batch`
        // commands per pass shared among its endpoints (starting at a
        // different one each pass), so a user with four busy endpoints
        // takes the share of a user with one. What an endpoint leaves
        // (it ran dry or is blocked) goes to its principal's others, in
        // further rounds: an idle endpoint must not halve a busy one's.
        for p in self.principals.iter_mut() {
            let k = p.endpoints.len();
            if k == 0 {
                continue;
            }
            let start = p.cursor % k;
            p.cursor = (start + 1) % k;
            let mut left = self.cfg.cmd_batch.max(1);
            // Endpoints done for this pass (dry, blocked, broken, closed);
            // a board has at most 256 endpoint ids.
            let mut done = [false; 256];
            let mut active = k as u32;
            // Each round ends with the budget spent or one more endpoint
            // done, so there are at most k + 1.
            while left > 0 && active > 0 {
                for (j, is_done) in done.iter_mut().enumerate().take(k) {
                    if left == 0 || active == 0 {
                        break;
                    }
                    if *is_done {
                        continue;
                    }
                    let id = usize::from(p.endpoints[(start + j) % k]);
                    if endpoints_ptr.get(id).is_none_or(Option::is_none) {
                        *is_done = true;
                        active -= 1;
                        continue;
                    }
                    let share = left.div_ceil(active);
                    let mut stopped = false;
                    for _ in 0..share {
                        left -= 1;
                        let ep = endpoints_ptr[id].as_mut().expect("checked");
                        let (slot, retry): (CmdSlot, bool) = match ep.pending.take() {
                            Some(s) => (s, true),
                            None => match ep.chan.pop_command() {
                                Ok(Some(s)) => (s, false),
                                Ok(None) => {
                                    left += 1;
                                    stopped = true;
                                    break;
                                }
                                Err(e) => {
                                    warn!(endpoint = id, "command ring corrupt: {e:?}");
                                    broken.push(ep.guest);
                                    left += 1;
                                    stopped = true;
                                    break;
                                }
                            },
                        };
                        // Retrying a blocked command is work only once it goes through.
                        worked |= !retry;
                        let cmd = match Command::parse(&slot) {
                            Ok(c) => c,
                            Err(_) => {
                                let ep = endpoints_ptr[id].as_mut().expect("checked");
                                ep.counters.bump(Counter::CmdsMalformed);
                                continue;
                            }
                        };
                        ctx.blocked_since = if retry {
                            endpoints_ptr[id].as_ref().and_then(|e| e.blocked_since)
                        } else {
                            None
                        };
                        match deliver::handle(&mut ctx, endpoints_ptr, id, &cmd) {
                            Outcome::Done => {
                                worked = true;
                                if let Some(ep) = endpoints_ptr[id].as_mut() {
                                    ep.counters.bump(Counter::CmdsProcessed);
                                    ep.blocked_since = None;
                                }
                            }
                            Outcome::Blocked => {
                                if deliver::give_up(&mut ctx, endpoints_ptr, id, &cmd, stalled_wait)
                                {
                                    worked = true;
                                    if let Some(ep) = endpoints_ptr[id].as_mut() {
                                        ep.blocked_since = None;
                                    }
                                    continue;
                                }
                                if let Some(ep) = endpoints_ptr[id].as_mut() {
                                    ep.pending = Some(slot);
                                    ep.blocked_since.get_or_insert(now);
                                }
                                blocked = true;
                                stopped = true;
                                break;
                            }
                        }
                    }
                    if stopped || endpoints_ptr[id].is_none() {
                        *is_done = true;
                        active -= 1;
                    }
                    if let Some(ep) = endpoints_ptr[id].as_mut() {
                        // A guest blocked on a full command ring asked to be told.
                        if ep.chan.release_commands().is_needed() {
                            let _ = ep.event.notify();
                        }
                    }
                }
            }
        }
        // Same-host pulls parked on staging windows: timeouts, and stage
        // requests that found no room or no free slot before.
        for id in 0..endpoints_ptr.len() {
            crate::window::resume(&mut ctx, endpoints_ptr, id);
        }
        // The raw endpoint's sends, queued on the NIC before its flush.
        if let Some(raw) = self.raw.as_mut() {
            let mac = match self.wire.as_ref() {
                Some(w) => w.st.mac,
                None => {
                    mxoe_wire::NicId::new(self.cfg.nic_id).map_or([0; 6], mxoe_wire::NicId::to_mac)
                }
            };
            // A loopback-only wire side (MX_DISABLE_SHMEM on a board
            // without a NIC) is no interface for raw frames.
            let mut tx = RawTx {
                nic: self
                    .wire
                    .as_mut()
                    .filter(|w| !w.loopback_only)
                    .map(|w| (w.nic.as_mut() as &mut dyn crate::nic::Nic, &*w.st.counters)),
                mac,
            };
            match raw.serve(&mut tx, &self.raw_counters, self.cfg.cmd_batch) {
                Ok(w) => worked |= w,
                Err(e) => {
                    warn!("raw endpoint's command ring corrupt: {e:?}");
                    broken.push(raw.guest);
                }
            }
        }
        // The wire: receive, answer, timers, pull completions, and the NIC
        // flush (before the publish below: a guest must not see
        // SendMediumDone while the NIC may still read its slot).
        if let Some(w) = self.wire.as_mut() {
            worked |= crate::wire::service(
                w,
                &mut self.peers,
                endpoints_ptr,
                crate::wire::RawRx {
                    ep: self.raw.as_mut(),
                    counters: &self.raw_counters,
                },
                now,
            );
        }
        // Publish: one index store and at most one notification per endpoint.
        for ep in endpoints_ptr.iter_mut().flatten() {
            if ep.dirty {
                ep.dirty = false;
                if ep.chan.publish().is_needed() {
                    let _ = ep.event.notify();
                }
            }
        }
        if let Some(raw) = self.raw.as_mut() {
            if raw.dirty {
                raw.dirty = false;
                if raw.chan.publish().is_needed() {
                    let _ = raw.event.notify();
                }
            }
            if raw.pending.is_some()
                && (raw.chan.event_space().is_err() || raw.chan.recvq_space().is_err())
            {
                warn!("raw endpoint's event ring or receive queue corrupt");
                broken.push(raw.guest);
            }
        }
        if blocked {
            // A command waits for room in an event ring or a receive queue.
            // If the guest owning that ring corrupted its index the room
            // never comes (the ring reports no space forever): such guests
            // are broken.
            for ep in endpoints_ptr.iter_mut().flatten() {
                if ep.chan.event_space().is_err() || ep.chan.recvq_space().is_err() {
                    warn!(endpoint = ep.id, "event ring or receive queue corrupt");
                    broken.push(ep.guest);
                }
            }
        }
        for key in broken {
            self.detach(key);
        }
        worked
    }
}
