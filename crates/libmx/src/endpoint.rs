//! The shell around the protocol core: one MX endpoint with its channel to
//! the backend, its progress engine and its blocking waits.
//!
//! The core ([`crate::core::Core`]) holds every MX rule and never blocks;
//! this module owns the loop the core asks for: copy events out of the
//! event ring into the core, run its timers, push its commands into the
//! command ring, and block on the endpoint's doorbell when there is nothing
//! to do. One mutex guards the core and the rings; no thread holds it while
//! blocked. One waiting thread at a time sleeps on the doorbell (the event
//! channel); the others sleep on a condition variable that the doorbell
//! sleeper signals when it wakes, so every waiter re-checks its condition
//! after every event. [`Endpoint::wakeup`] ends every current wait.
//!
//! Waits spin briefly before they block: on this kind of machine a
//! cross-core wake-up costs 20-30 µs while a message round trip through the
//! backend costs a few, so sleeping at once would multiply small-message
//! latency. The spin window is `MX_SPIN_US` (default 100 µs; 0 blocks at
//! once).

use crate::core::{
    Completion, Config, Core, FragRef, MsgBuf, NoRecvQueue, PartnerReset, RecvError, RecvQueue,
    Rejected, ReqId, ResetReason, Return, SendError, Time,
};
use crate::env::MxEnv;
use crate::peers::Taken;
use crate::staging::StagingPool;
use frontend::{Doorbell, EndpointChannel, Frontend, FrontendError};
use mx_proto::msg::control::{BoardInfo, ChannelSizes, ControlError, OpenFlags};
use mx_proto::msg::event::{PullStatus, DIRECT_SEGS_MAX};
use mx_proto::msg::{CmdSlot, Event, QUEUE_SLOT_SIZE};
use mx_proto::platform::local::{GuestRange, ProcessMemory};
use mx_proto::platform::{auto::AutoGuest, coarse_micros, local::LocalTarget, GuestMemory};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Period of the background progression thread.
pub const PROGRESSION_TICK: Duration = Duration::from_millis(2);

/// The guest platform the library runs on.
pub type Guest = AutoGuest;

/// How an endpoint is opened. [`Default`] reads the MX environment
/// variables ([`MxEnv`]).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Endpoint id, or `None` for any free one.
    pub endpoint: Option<u8>,
    /// Key incoming connects must present.
    pub key: u32,
    /// Channel sizes.
    pub sizes: ChannelSizes,
    /// Context id (bits, shift), if any.
    pub context_id: Option<(u8, u8)>,
    /// Spin this long in waits before blocking (`MX_SPIN_US`).
    pub spin: Duration,
    /// Send to ourselves through the backend (`MX_DISABLE_SELF`).
    pub disable_self: bool,
    /// Stage large messages through a private pool of this many pages even
    /// where the backend could reach our buffers (`MX_STAGE_LARGE`; 0: only
    /// where the platform requires it, i.e. on Xen). See [`crate::staging`].
    pub stage_pages: usize,
    /// Copy large messages ourselves, straight from the sender process,
    /// when the backend allows it (`MX_DIRECT_PULL`, default on; 0 makes the
    /// backend copy, as on Xen). See [`Core::handle_pull_direct`].
    pub direct_pull: bool,
    /// Traffic with the other endpoints of this host takes the network
    /// path instead of the backend's intra-node shortcut
    /// (`MX_DISABLE_SHMEM`).
    pub disable_shmem: bool,
    /// Eager sends may complete before their ack (`MX_ZOMBIE_SEND`,
    /// default true).
    pub zombie_send: bool,
    /// Acknowledge every received message at once (`MX_IMM_ACK`).
    pub imm_ack: bool,
    /// Resend limit per message (`MX_MAX_RETRIES`; `None`: the core's).
    pub max_retries: Option<u32>,
    /// Report open, close and partner resets on stderr (`MX_VERBOSE`).
    pub verbose: bool,
    /// Talk to the other endpoints of this host through peer channels
    /// (`MX_PEER_CHANNELS`, default on; never with `MX_DISABLE_SHMEM`).
    pub peer_channels: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::from_env(&MxEnv::read())
    }
}

impl OpenOptions {
    /// Defaults for what the environment does not set, and what `env` says.
    pub fn from_env(env: &MxEnv) -> Self {
        OpenOptions {
            endpoint: None,
            key: 0,
            sizes: ChannelSizes::default(),
            context_id: None,
            spin: Duration::from_micros(env.spin_us),
            disable_self: env.disable_self,
            stage_pages: env.stage_pages,
            direct_pull: env.direct_pull,
            disable_shmem: env.disable_shmem,
            zombie_send: env.zombie_send,
            imm_ack: env.imm_ack,
            max_retries: env.max_retries,
            verbose: env.verbose,
            peer_channels: env.peer_channels,
        }
    }

    /// The backend-side requests of these options.
    pub fn open_flags(&self) -> OpenFlags {
        if self.disable_shmem {
            OpenFlags::DISABLE_SHMEM
        } else {
            OpenFlags::empty()
        }
    }

    /// Apply the protocol options to a core configuration: the zombie
    /// limit, the ack policy, the resend limit, self sends, reset notices.
    pub fn tune(&self, cfg: &mut Config) {
        cfg.disable_self = self.disable_self;
        if !self.zombie_send {
            cfg.zombie_max = 0;
        }
        if self.imm_ack {
            cfg.ack_threshold = 1;
        }
        if let Some(n) = self.max_retries {
            cfg.resend_limit = n;
        }
        cfg.report_resets = self.verbose;
    }
}

/// Print what was wrong with the MX environment variables, once per
/// process (every endpoint reads them, the user needs to hear it once).
fn warn_env_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for w in MxEnv::read().warnings {
            eprintln!("MX: {w}");
        }
    });
}

/// The platform the library attaches through (`MX_PLATFORM`, else what
/// the machine has), for `MX_VERBOSE`.
fn platform_name() -> &'static str {
    use mx_proto::platform::auto::Choice;
    match Choice::from_env().map(Choice::resolve_guest) {
        Ok(Choice::Xen) => "xen",
        _ => "local",
    }
}

/// A board address as a MAC, `02:ab:...`.
fn mac_string(nic_id: u64) -> String {
    let b = nic_id.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// The `MX_VERBOSE` line of an endpoint open.
pub fn verbose_open_line(
    board: &BoardInfo,
    endpoint: u8,
    session: u32,
    platform: &str,
    disable_shmem: bool,
) -> String {
    format!(
        "MX: endpoint {endpoint} opened on board {} ({}, nic {}), platform {platform}, session {session:#010x}{}",
        board.board,
        board.hostname,
        mac_string(board.nic_id),
        if disable_shmem {
            ", same-host traffic through the network path (MX_DISABLE_SHMEM)"
        } else {
            ""
        }
    )
}

/// The `MX_VERBOSE` line of an endpoint close.
pub fn verbose_close_line(board: &BoardInfo, endpoint: u8, platform: &str) -> String {
    format!(
        "MX: endpoint {endpoint} closed on board {} ({}), platform {platform}",
        board.board, board.hostname
    )
}

/// The `MX_VERBOSE` line of a partner reset seen by endpoint `endpoint`.
pub fn verbose_reset_line(endpoint: u8, r: &PartnerReset) -> String {
    let who = r
        .nic_id
        .map_or_else(|| format!("peer #{}", r.peer), mac_string);
    let why = match r.reason {
        ResetReason::Unreachable => "unreachable (resend limit reached)",
        ResetReason::Restarted => "a new instance connected (new session)",
    };
    format!(
        "MX: endpoint {endpoint}: partner {who} endpoint {} reset: {why}",
        r.endpoint
    )
}

/// Map a frontend failure to the MX return code a caller expects.
pub fn frontend_error(e: &FrontendError) -> Return {
    match e {
        FrontendError::Io(_) => Return::NoDev,
        FrontendError::Refused(ControlError::Busy) => Return::Busy,
        FrontendError::Refused(ControlError::BadEndpoint) => Return::BadEndpointId,
        FrontendError::Refused(ControlError::BoardUnknown) => Return::BoardUnknown,
        FrontendError::Refused(ControlError::NoResources) => Return::NoResources,
        FrontendError::Refused(ControlError::PeerNotFound) => Return::NicNotFound,
        FrontendError::Refused(ControlError::NotPermitted) => Return::NoPerm,
        FrontendError::Refused(_) | FrontendError::Protocol(_) | FrontendError::Channel(_) => {
            Return::Failure
        }
    }
}

/// The pool large messages are staged in: the platform's, or private pages
/// when `stage_pages` asks for staging anyway (their addresses are what the
/// backend reads then).
fn staging_pool(
    frontend: &Frontend<Guest>,
    stage_pages: usize,
) -> Result<Option<StagingPool>, Return> {
    if let Some(mem) = frontend.bulk_pool() {
        return Ok(Some(StagingPool::new(mem, 0)));
    }
    if stage_pages == 0 {
        return Ok(None);
    }
    let pages = frontend
        .alloc_pages(stage_pages)
        .map_err(|_| Return::NoResources)?;
    let mem: Arc<dyn mx_proto::platform::SharedMem> = Arc::new(pages);
    let base = mem.as_ptr() as u64;
    Ok(Some(StagingPool::new(mem, base)))
}

struct State<B: MsgBuf> {
    core: Core<B>,
    chan: EndpointChannel<Guest>,
    /// Payload bytes copied in and out of the channel's queues.
    copies: CopyStats,
    /// Kept fragments that left through a peer channel, to copy into their
    /// send-queue slots once the channels are published (reused buffer).
    deferred: Vec<FragRef>,
    /// A thread is blocked on the doorbell.
    sleeper: bool,
    /// The channel broke (the backend corrupted shared state or went away).
    broken: bool,
    /// The last sender process a direct pull read from.
    direct_src: Option<ProcessMemory>,
    /// Slots of the command ring (all free once the backend consumed
    /// everything we posted).
    cmd_slots: u32,
    /// Channels to the other endpoints of this host.
    peers: crate::peers::Peers,
}

struct Inner<B: MsgBuf> {
    state: Mutex<State<B>>,
    cond: Condvar,
    doorbell: Doorbell<Guest>,
    wake_gen: AtomicU64,
    /// [`coarse_micros`] at open: the core's clock counts from here.
    epoch: u64,
    spin: Duration,
    frontend: Frontend<Guest>,
    /// Microseconds since `epoch` of the last progress by any thread.
    last_progress: AtomicU64,
    /// `mx_disable_progression` is on: the background thread pauses and
    /// no pass takes incoming events (they wait in the rings, so no
    /// unexpected handler runs) until it is reenabled.
    progression_disabled: AtomicBool,
    /// `MX_VERBOSE`: say on stderr when the endpoint closes.
    verbose: bool,
    /// After the last poll: no peer channel up, or commands of ours the
    /// backend has not consumed (a spinning poller should let it run).
    needs_backend: std::sync::atomic::AtomicBool,
}

impl<B: MsgBuf> Inner<B> {
    /// The core's time: microseconds since open on the kernel's coarse
    /// clock. The core's timers are milliseconds (delayed acks, resends),
    /// and a poll that reads the precise clock spends most of an empty
    /// pass doing so.
    fn now(&self) -> Time {
        coarse_micros().saturating_sub(self.epoch)
    }
}

impl<B: MsgBuf> Drop for Inner<B> {
    fn drop(&mut self) {
        if self.verbose {
            let id = lock(&self.state).chan.id();
            eprintln!(
                "{}",
                verbose_close_line(self.frontend.board(), id, platform_name())
            );
        }
    }
}

/// An open MX endpoint. Cloning gives another handle to the same endpoint;
/// every method may be called from any thread.
pub struct Endpoint<B: MsgBuf> {
    inner: Arc<Inner<B>>,
}

impl<B: MsgBuf> Clone for Endpoint<B> {
    fn clone(&self) -> Self {
        Endpoint {
            inner: self.inner.clone(),
        }
    }
}

/// Payload bytes an endpoint copied, per place (the count is behaviour,
/// not timing: a medium message's bytes are copied once per side, see
/// docs/DESIGN.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Copied into send-queue slots (from the user's buffers).
    pub sendq_bytes: u64,
    /// Copied out of receive-queue slots (into their destinations).
    pub recvq_bytes: u64,
    /// Copied into peer channels' data slots.
    pub peer_out_bytes: u64,
    /// Copied out of peer channels' data slots.
    pub peer_in_bytes: u64,
    /// Copied a second time through a bounce buffer (a [`MsgBuf`] that
    /// cannot be read or filled in place; the core's
    /// [`Stats::bounce_bytes`](crate::core::Stats::bounce_bytes)).
    pub bounce_bytes: u64,
}

/// The receive queue of the backend channel, as the core reads it: each
/// read is one copy from the shared slot into its destination.
struct RecvqOf<'a> {
    chan: &'a EndpointChannel<Guest>,
    copied: std::cell::Cell<u64>,
    failed: std::cell::Cell<bool>,
}

impl RecvQueue for RecvqOf<'_> {
    fn slot_len(&self, idx: u16) -> usize {
        if u32::from(idx) < self.chan.recvq_slots() {
            QUEUE_SLOT_SIZE
        } else {
            0
        }
    }
    fn read(&self, idx: u16, off: usize, out: &mut [u8]) -> bool {
        let ok = self.chan.recvq_read(idx, off, out).is_ok();
        if ok {
            self.copied.set(self.copied.get() + out.len() as u64);
        } else {
            self.failed.set(true);
        }
        ok
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B: MsgBuf + Send + 'static> Endpoint<B> {
    /// Attach to the backend at `target` (or the default socket) and open
    /// an endpoint.
    ///
    /// # Errors
    /// `NoDev` without a backend, `Busy` when the id is taken, ...
    pub fn open(target: Option<&LocalTarget>, opts: &OpenOptions) -> Result<Self, Return> {
        let default = LocalTarget::default();
        let frontend = Frontend::<Guest>::attach(target.unwrap_or(&default))
            .map_err(|e| frontend_error(&e))?;
        let id = opts
            .endpoint
            .map_or(mx_proto::msg::control::ANY_ENDPOINT, u32::from);
        warn_env_once();
        // The pool first: on Xen it is granted and announced on the control
        // ring now, so the backend has mapped it before it answers the open
        // (control frames are handled in order) and before any region names it.
        let pool = staging_pool(&frontend, opts.stage_pages)?;
        let (chan, doorbell) = frontend
            .open_endpoint_with(id, opts.sizes, opts.open_flags())
            .map_err(|e| frontend_error(&e))?;
        let mut cfg = Config::from_board(
            frontend.board(),
            &opts.sizes,
            chan.id(),
            chan.session(),
            opts.key,
        );
        cfg.context_id = opts.context_id;
        opts.tune(&mut cfg);
        // Only offered where it can work: the core never offers it for a
        // staged pull, and a backend that cannot (Xen) copies itself.
        cfg.direct_pull = opts.direct_pull;
        cfg.seed = u64::from(chan.session()) ^ (u64::from(std::process::id()) << 32);
        let mut peers = crate::peers::Peers::new(
            opts.peer_channels && !opts.disable_shmem,
            chan.id(),
            chan.session(),
            frontend.board().self_peer,
        );
        // Large messages through a channel need our regions in our own
        // memory (no staging pool) and our pulls direct.
        peers.set_direct(cfg.direct_pull && pool.is_none());
        let mut core = Core::new(cfg)?;
        if let Some(pool) = pool {
            core.set_bulk_pool(Box::new(pool));
        }
        if opts.verbose {
            eprintln!(
                "{}",
                verbose_open_line(
                    frontend.board(),
                    chan.id(),
                    chan.session(),
                    platform_name(),
                    opts.disable_shmem
                )
            );
        }
        Ok(Endpoint {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    core,
                    chan,
                    copies: CopyStats::default(),
                    deferred: Vec::new(),
                    sleeper: false,
                    broken: false,
                    direct_src: None,
                    cmd_slots: opts.sizes.cmd_slots,
                    peers,
                }),
                cond: Condvar::new(),
                doorbell,
                wake_gen: AtomicU64::new(0),
                epoch: coarse_micros(),
                spin: opts.spin,
                frontend,
                last_progress: AtomicU64::new(0),
                progression_disabled: AtomicBool::new(false),
                verbose: opts.verbose,
                needs_backend: std::sync::atomic::AtomicBool::new(true),
            }),
        })
        .inspect(|ep| ep.start_progression())
    }

    /// Background progression: MX answers connects, acks and retransmits
    /// even while the application is not calling into the library. A thread
    /// per endpoint makes progress every [`PROGRESSION_TICK`] unless an
    /// application thread did so meanwhile; it does not arm the doorbell,
    /// so it costs the backend no notifications and polling applications no
    /// wake-ups. It exits when the endpoint is dropped.
    fn start_progression(&self) {
        let weak = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new()
            .name("mx-progress".into())
            .spawn(move || loop {
                std::thread::sleep(PROGRESSION_TICK);
                let Some(inner) = weak.upgrade() else { return };
                if inner.progression_disabled.load(Ordering::Acquire) {
                    continue;
                }
                let now = inner.now();
                let tick = PROGRESSION_TICK.as_micros() as Time;
                if now.saturating_sub(inner.last_progress.load(Ordering::Relaxed)) < tick {
                    continue;
                }
                let Ok(mut st) = inner.state.try_lock() else {
                    continue;
                };
                // The periodic pass also looks for peers that hung up.
                progress(&inner, &mut st, now, true);
                inner.last_progress.store(now, Ordering::Relaxed);
            });
    }

    /// `mx_disable_progression`: from now on no pass takes incoming events
    /// (so no unexpected handler runs, on any thread) and the background
    /// thread pauses; commands still go out. As Open-MX, it does not nest
    /// and waits for a handler running on another thread to return, unless
    /// `in_handler` (the caller is that handler: its thread holds the
    /// state).
    pub fn disable_progression(&self, in_handler: bool) {
        self.inner
            .progression_disabled
            .store(true, Ordering::Release);
        if !in_handler {
            drop(lock(&self.inner.state));
        }
    }

    /// `mx_reenable_progression`: undo [`disable_progression`](Self::disable_progression).
    pub fn reenable_progression(&self) {
        self.inner
            .progression_disabled
            .store(false, Ordering::Release);
    }

    /// The frontend (board information, peer look-ups, counters).
    pub fn frontend(&self) -> &Frontend<Guest> {
        &self.inner.frontend
    }

    fn now(&self) -> Time {
        self.inner.now()
    }

    /// Run `f` on the core, then let the endpoint make progress (events in,
    /// commands out).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core<B>) -> R) -> R {
        let mut st = lock(&self.inner.state);
        let r = f(&mut st.core);
        let now = self.now();
        progress(&self.inner, &mut st, now, false);
        self.inner.last_progress.store(now, Ordering::Relaxed);
        r
    }

    /// Make progress, run `f` on the core, then make progress again: what a
    /// polling call (`mx_test`, `mx_iprobe`, ...) needs to see events that
    /// arrived since the last call.
    pub fn poll_with<R>(&self, f: impl FnOnce(&mut Core<B>) -> R) -> R {
        let mut st = lock(&self.inner.state);
        let now = self.now();
        progress(&self.inner, &mut st, now, false);
        let r = f(&mut st.core);
        // What `f` queued goes out now (a test or probe queues nothing:
        // then a second pass would only look at empty rings again).
        if st.core.has_output() {
            progress(&self.inner, &mut st, now, false);
        }
        self.inner.last_progress.store(now, Ordering::Relaxed);
        let total = st.cmd_slots;
        let needs = st.peers.up() == 0 || st.chan.command_space().map_or(true, |n| n < total);
        self.inner.needs_backend.store(needs, Ordering::Relaxed);
        r
    }

    /// The payload bytes this endpoint copied, per place.
    pub fn copy_stats(&self) -> CopyStats {
        let st = lock(&self.inner.state);
        let p = st.peers.stats();
        CopyStats {
            peer_out_bytes: p.data_out_bytes,
            peer_in_bytes: p.data_in_bytes,
            bounce_bytes: st.core.stats().bounce_bytes,
            ..st.copies
        }
    }

    /// What this endpoint's peer channels counted.
    pub fn peer_stats(&self) -> crate::peers::PeerStats {
        lock(&self.inner.state).peers.stats()
    }

    /// Peer channels up (to other endpoints of this host).
    pub fn peer_channels_up(&self) -> usize {
        lock(&self.inner.state).peers.up()
    }

    /// Whether, after the last poll, this endpoint waits on the backend (no
    /// peer channel up, or commands of ours not consumed yet): what the
    /// polling entry points' yield policy asks (`ffi::poll_policy`).
    pub fn needs_backend(&self) -> bool {
        self.inner.needs_backend.load(Ordering::Relaxed)
    }

    /// Whether the channel to the backend broke (the backend went away or
    /// corrupted shared state): waits can never succeed any more.
    pub fn is_broken(&self) -> bool {
        lock(&self.inner.state).broken
    }

    /// Close gracefully: end every wait, queue explicit acks, then keep
    /// making progress until the backend consumed every posted command and
    /// the core is quiescent (everything we sent was acked), for at most
    /// `linger`. The backend drops unconsumed commands when the endpoint
    /// closes, so without this the last messages of a program that closes
    /// right after its sends completed would be lost. The endpoint itself
    /// closes when the last handle is dropped.
    pub fn shutdown(&self, linger: Duration) {
        // The acks the linger waits for are incoming events.
        self.reenable_progression();
        self.wakeup();
        self.with_core(|c| c.flush_acks());
        let deadline = Instant::now() + linger;
        loop {
            let done = {
                let mut st = lock(&self.inner.state);
                let now = self.now();
                progress(&self.inner, &mut st, now, false);
                let total = st.cmd_slots;
                let drained = st.chan.command_space().map_or(true, |n| n >= total);
                st.broken || (drained && st.core.is_quiescent())
            };
            if done || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Make progress once without blocking (`mx_progress`).
    pub fn progress(&self) {
        let mut st = lock(&self.inner.state);
        let now = self.now();
        progress(&self.inner, &mut st, now, false);
    }

    /// Post a send.
    ///
    /// # Errors
    /// The core's refusal, with the buffer handed back.
    pub fn isend(
        &self,
        dest: crate::core::EndpointAddr,
        buf: B,
        match_info: u64,
        context: u64,
        synchronous: bool,
    ) -> Result<ReqId, Rejected<B, SendError>> {
        self.with_core(|c| {
            if synchronous {
                c.issend(dest, buf, match_info, context)
            } else {
                c.isend(dest, buf, match_info, context)
            }
        })
    }

    /// Post a receive.
    ///
    /// # Errors
    /// The core's refusal, with the buffer handed back.
    pub fn irecv(
        &self,
        buf: B,
        match_info: u64,
        mask: u64,
        context: u64,
    ) -> Result<ReqId, Rejected<B, RecvError>> {
        self.with_core(|c| c.irecv(buf, match_info, mask, context))
    }

    /// Block until `done` returns `Some`, the timeout passes (`None`:
    /// forever) or [`wakeup`](Self::wakeup) is called. `done` runs under
    /// the endpoint lock after each round of progress.
    ///
    /// Returns `None` on timeout or wake-up.
    pub fn wait_for<R>(
        &self,
        timeout: Option<Duration>,
        mut done: impl FnMut(&mut Core<B>) -> Option<R>,
    ) -> Option<R> {
        let inner = &*self.inner;
        if timeout == Some(Duration::ZERO) {
            // A poll (`mx_test` and friends): one round, no clock but the
            // core's.
            let mut st = lock(&inner.state);
            let now = self.now();
            progress(inner, &mut st, now, false);
            inner.last_progress.store(now, Ordering::Relaxed);
            return done(&mut st.core);
        }
        let gen = inner.wake_gen.load(Ordering::Acquire);
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let spin_until = start + inner.spin;
        loop {
            let mut st = lock(&inner.state);
            let now = self.now();
            progress(inner, &mut st, now, false);
            inner.last_progress.store(now, Ordering::Relaxed);
            if let Some(r) = done(&mut st.core) {
                return Some(r);
            }
            if inner.wake_gen.load(Ordering::Acquire) != gen || st.broken {
                return None;
            }
            let t = Instant::now();
            if deadline.is_some_and(|d| t >= d) {
                return None;
            }
            if t < spin_until {
                drop(st);
                std::thread::yield_now();
                continue;
            }
            // Sleep until the next core timer, the deadline, or an event.
            let timer = st
                .core
                .poll_timeout()
                .map(|at| Duration::from_micros(at.saturating_sub(now)));
            let mut sleep = [timer, deadline.map(|d| d.saturating_duration_since(t))]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(Duration::from_secs(1));
            // Wake up now and then even without a timer: a lost
            // notification must cost latency, never a hang.
            sleep = sleep.min(Duration::from_millis(200));
            if st.sleeper {
                let (g, _) = inner
                    .cond
                    .wait_timeout(st, sleep)
                    .unwrap_or_else(|p| p.into_inner());
                drop(g);
                continue;
            }
            if !st.peers.prepare_to_sleep() {
                continue;
            }
            let armed = match st.chan.prepare_to_sleep() {
                Ok(armed) => armed,
                Err(_) => {
                    st.broken = true;
                    return None;
                }
            };
            if !armed {
                continue;
            }
            st.sleeper = true;
            let bells = st.peers.bells();
            drop(st);
            if bells.is_empty() {
                let _ = inner.doorbell.wait(Some(sleep));
            } else {
                let fds: Vec<_> = bells.iter().map(|b| b.as_fd()).collect();
                let _ = inner.doorbell.wait_with(&fds, Some(sleep));
            }
            let mut st = lock(&inner.state);
            st.sleeper = false;
            drop(st);
            inner.cond.notify_all();
        }
    }

    /// Wait for request `req` to finish and take it (`mx_wait`).
    ///
    /// # Errors
    /// `BadRequest` for an unknown request.
    pub fn wait(
        &self,
        req: ReqId,
        timeout: Option<Duration>,
    ) -> Result<Option<Completion<B>>, Return> {
        let mut err = None;
        let r = self.wait_for(timeout, |c| match c.test(req) {
            Ok(Some(done)) => Some(Some(done)),
            Ok(None) => None,
            Err(e) => {
                err = Some(e);
                Some(None)
            }
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(r.flatten()),
        }
    }

    /// End every wait currently blocked on this endpoint (`mx_wakeup`).
    pub fn wakeup(&self) {
        self.inner.wake_gen.fetch_add(1, Ordering::AcqRel);
        let _ = self.inner.doorbell.wake();
        // Take the lock so a waiter between its check and its wait cannot
        // miss the notification.
        drop(lock(&self.inner.state));
        self.inner.cond.notify_all();
    }

    /// [`wakeup`](Self::wakeup) for a thread that already holds the
    /// endpoint lock (an unexpected-message handler runs under it): no
    /// waiter can be between its check and its wait then, since that needs
    /// the lock too.
    pub fn wakeup_locked(&self) {
        self.inner.wake_gen.fetch_add(1, Ordering::AcqRel);
        let _ = self.inner.doorbell.wake();
        self.inner.cond.notify_all();
    }

    /// Connect to endpoint `endpoint` of the board `nic_id` with `key` and
    /// wait up to `timeout` (`mx_connect`).
    ///
    /// # Errors
    /// `NicNotFound` for an unknown board, `Timeout`, `BadConnectionKey`,
    /// `ConnectionFailed`, `BadEndpointId`.
    pub fn connect(
        &self,
        nic_id: u64,
        endpoint: u8,
        key: u32,
        timeout: Option<Duration>,
    ) -> Result<crate::core::EndpointAddr, Return> {
        let peer = self
            .inner
            .frontend
            .peer_by_nic_id(nic_id)
            .map_err(|e| frontend_error(&e))?;
        let req = self.with_core(|c| c.connect(peer.index, endpoint, nic_id, key, 0, 0));
        match self.wait(req, timeout)? {
            Some(done) => connect_status(&done).map(|()| done.source),
            None => {
                // Timed out or woken: withdraw the connect. Too late to
                // cancel (answered meanwhile): report the answer if it is
                // there, else have the core drop the request when it
                // completes, so it never shows up in test_any/peek.
                self.with_core(|c| match c.cancel(req) {
                    Ok(crate::core::CancelResult::NotCancelled) => match c.test(req) {
                        Ok(Some(done)) => connect_status(&done).map(|()| done.source),
                        _ => {
                            let _ = c.forget(req);
                            Err(Return::Timeout)
                        }
                    },
                    _ => Err(Return::Timeout),
                })
            }
        }
    }
}

/// The return code of a finished connect.
fn connect_status<B>(done: &Completion<B>) -> Result<(), Return> {
    use crate::core::Status;
    match done.status {
        Status::Success => Ok(()),
        Status::BadKey => Err(Return::BadConnectionKey),
        Status::BadEndpoint => Err(Return::BadEndpointId),
        Status::Timeout | Status::EndpointUnreachable => Err(Return::Timeout),
        _ => Err(Return::ConnectionFailed),
    }
}

/// A direct pull: read the sender's bytes straight into our receive buffer
/// with `process_vm_readv` (one copy). False if anything does not add up or
/// the kernel refuses (no ptrace rights over the sender, sender gone): the
/// core then hands the pull to the backend.
fn copy_direct<B: MsgBuf>(
    cache: &mut Option<ProcessMemory>,
    pid: u32,
    from: &[(u64, u32)],
    buf: &mut B,
    len: u32,
) -> bool {
    let mut remote = [GuestRange::new(0, 0); DIRECT_SEGS_MAX];
    for (r, &(addr, n)) in remote.iter_mut().zip(from) {
        *r = GuestRange::new(addr, u64::from(n));
    }
    let remote = &remote[..from.len()];
    if remote.iter().map(|r| r.len).sum::<u64>() != u64::from(len) {
        return false;
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // The cached sender (its pidfd) is kept while its pid comes back; a
    // read that fails may mean that process ended and the pid is another
    // one's now, so the second try opens it afresh.
    for fresh in [false, true] {
        if fresh || cache.as_ref().is_none_or(|m| m.pid() != pid) {
            *cache = ProcessMemory::open(pid).ok();
        }
        let Some(mem) = cache.as_ref() else {
            return false;
        };
        if buf.fill_in_place(len, &mut |off, bytes| {
            mem.read(remote, u64::from(off), bytes).is_ok()
        }) {
            return true;
        }
    }
    false
}

/// Events in (from the backend and the peers), timers, commands out (to
/// the peers where a channel is up, else to the backend), until nothing
/// moves; then the peer channels' control-path work. `bells`: also look
/// for peers that hung up (the background pass does).
fn progress<B: MsgBuf>(inner: &Inner<B>, st: &mut State<B>, now: Time, bells: bool) {
    let frontend = &inner.frontend;
    if st.broken {
        return;
    }
    let State {
        core,
        chan,
        copies,
        deferred,
        broken,
        direct_src,
        peers,
        ..
    } = st;
    let take_events = !inner.progression_disabled.load(Ordering::Acquire);
    loop {
        let mut moved = false;
        // Events in (they wait in the rings while progression is disabled).
        // An idle ring costs one load: no slot is copied to find it empty.
        let events = match chan.event_ready() {
            Ok(ready) => take_events && ready,
            Err(_) => {
                *broken = true;
                return;
            }
        };
        loop {
            if !events {
                break;
            }
            let slot = match chan.next_event() {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(_) => {
                    *broken = true;
                    return;
                }
            };
            moved = true;
            let Ok(ev) = Event::parse(&slot) else {
                continue; // a backend that sends garbage events: dropped
            };
            if let Event::PullDirect { cookie, pid, segs } = ev {
                core.handle_pull_direct(cookie, |buf, len| {
                    copy_direct(direct_src, pid, segs.segs(), buf, len)
                });
                continue;
            }
            if let Event::PeerOffer {
                channel,
                src,
                session,
                sizes,
                pid,
            } = ev
            {
                peers.offered(channel, src, session, sizes, pid);
                continue;
            }
            if let Event::PeerClosed { channel } = ev {
                peers.closed(channel);
                continue;
            }
            match ev.recvq_slot() {
                Some(idx) => {
                    // The core copies the payload out of the slot during
                    // the call, straight into its destination.
                    let q = RecvqOf {
                        chan,
                        copied: std::cell::Cell::new(0),
                        failed: std::cell::Cell::new(false),
                    };
                    core.handle_event(now, &ev, &q);
                    copies.recvq_bytes += q.copied.get();
                    if q.failed.get() || chan.recvq_release(idx).is_err() {
                        *broken = true;
                        return;
                    }
                }
                None => core.handle_event(now, &ev, &NoRecvQueue),
            }
        }
        if moved && chan.release_events().is_err() {
            *broken = true;
            return;
        }
        if take_events {
            moved |= peers.receive(core, now);
        }
        // Pulls the peer channels answered: copied as the backend's direct
        // pulls are; those that cannot be served fail.
        if peers.has_pulls() {
            moved = true;
            let (grants, failed) = peers.take_pulls();
            for (cookie, pid, segs) in grants {
                core.handle_pull_direct(cookie, |buf, len| {
                    copy_direct(direct_src, pid, segs.segs(), buf, len)
                });
            }
            for cookie in failed {
                core.handle_event(
                    now,
                    &Event::PullDone {
                        cookie,
                        status: PullStatus::BadRdmaWindow,
                        transferred: 0,
                    },
                    &NoRecvQueue,
                );
            }
        }
        // Timers.
        if core.poll_timeout().is_some_and(|at| at <= now) {
            core.handle_timeout(now);
        }
        // Partner resets (kept only under MX_VERBOSE).
        while let Some(r) = core.take_partner_reset() {
            eprintln!("{}", verbose_reset_line(core.config().endpoint, &r));
        }
        // Commands out, as many as the ring takes.
        let mut pushed = false;
        while core.has_output() && chan.command_space().unwrap_or(0) > 0 {
            let mut slot = CmdSlot::default();
            let Some(emitted) = core.poll_command(now, &mut slot) else {
                break;
            };
            let frag = emitted.frag;
            let taken = peers.try_send(core, &slot, frag.as_ref());
            if taken != Taken::No {
                moved = true;
                if let Some(f) = frag {
                    // A fragment pushed into the channel: the backend
                    // never sees this post of the slot. A held one keeps
                    // its slot until it leaves (`take_freed` below).
                    if taken == Taken::Now {
                        give_back(core, now, &f);
                    }
                    // A fragment the core keeps for retransmission goes
                    // into its send-queue slot too: after the channel is
                    // published, off the receiver's critical path (the
                    // buffer stays with the core until an event acks it).
                    if f.retained && f.needs_fill() {
                        deferred.push(f);
                    }
                }
                continue;
            }
            if let Some(f) = frag.filter(FragRef::needs_fill) {
                if !fill_sendq(core, chan, copies, &f) {
                    // Only a broken send queue refuses a slot the core
                    // named.
                    *broken = true;
                    return;
                }
            }
            if chan.post_slot(&slot).is_err() {
                *broken = true;
                return;
            }
            pushed = true;
        }
        peers.flush();
        for f in deferred.drain(..) {
            if !fill_sendq(core, chan, copies, &f) {
                // A kept slot must hold its bytes before anything can
                // resend it.
                *broken = true;
                return;
            }
        }
        // Held fragments that left the channel free their slots now.
        for sendq_slot in peers.take_freed() {
            moved = true;
            core.handle_event(now, &Event::SendMediumDone { sendq_slot }, &NoRecvQueue);
        }
        if pushed {
            moved = true;
            if chan.flush().is_err() {
                *broken = true;
                return;
            }
        }
        // Another pass only if this one left output it could not emit
        // before the end (a fragment's slot freed at the end, an ack queued
        // by an event): messages that arrive meanwhile wait for the next
        // poll, which costs one load per idle ring.
        if !moved || !core.has_output() {
            break;
        }
    }
    if bells || peers.needs_maintenance() {
        peers.maintain(frontend, core, now, bells);
    }
}

/// Copy fragment `f`'s bytes from the user's buffer straight into its
/// send-queue slot (one copy). False if that failed.
fn fill_sendq<B: MsgBuf>(
    core: &mut Core<B>,
    chan: &EndpointChannel<Guest>,
    copies: &mut CopyStats,
    f: &FragRef,
) -> bool {
    let mut n = 0u64;
    let ok = core.copy_frag(f, &mut |off, bytes| {
        n += bytes.len() as u64;
        chan.sendq_write_at(f.sendq_slot, off, bytes).is_ok()
    });
    copies.sendq_bytes += n;
    ok
}

/// The backend will not see this post of `f`'s slot (the fragment left
/// through a peer channel): the slot's post is over.
fn give_back<B: MsgBuf>(core: &mut Core<B>, now: Time, f: &FragRef) {
    core.handle_event(
        now,
        &Event::SendMediumDone {
            sendq_slot: f.sendq_slot,
        },
        &NoRecvQueue,
    );
}
