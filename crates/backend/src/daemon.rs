//! The backend of one host: what it owns (the guests and their
//! principals, the endpoint table, the wire side, the raw endpoint, the
//! peer channels) and how it starts. The data plane, the service loop, is
//! in [`crate::service`]; the control plane (attach, open and close
//! endpoints, peer-channel set-up, counters) in [`crate::control`].

use crate::config::BackendConfig;
use crate::counters::{NicCounters, RawCounters};
use crate::endpoints::Endpoints;
use crate::nic::Nic;
use crate::peer_channels::PeerBroker;
use crate::peers::PeerTable;
use crate::raw_endpoint::RawEndpoint;
use crate::wire::Wire;
use mx_proto::msg::control::BoardInfo;
use mx_proto::platform::{
    Events, GuestMemory, HostPlatform, Interest, Poller, Wakeup, MAX_CONTROL_MSG,
};
use slab::Slab;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

// Poller tokens: what woke the loop (a guest's control connection or an
// endpoint's event channel carry their key or id in the low half).
pub(crate) const TOKEN_LISTENER: u64 = 0;
pub(crate) const TOKEN_STOP: u64 = 1;
pub(crate) const TOKEN_NIC: u64 = 2;
pub(crate) const TOKEN_RAW: u64 = 3;
pub(crate) const TOKEN_GUEST: u64 = 1 << 32;
pub(crate) const TOKEN_ENDPOINT: u64 = 2 << 32;

/// Size of the bounce buffer for intra-node pulls: large enough to amortise
/// the two system calls per chunk, small enough to stay in L2 so the second
/// copy reads from cache.
const BOUNCE: usize = 256 * 1024;

/// An attached guest: its control connection, access to its memory, and
/// the endpoints it opened.
pub(crate) struct Guest<H: HostPlatform> {
    pub(crate) conn: H::Conn,
    pub(crate) memory: H::Memory,
    pub(crate) endpoints: Vec<u8>,
    /// Index in [`Backend::principals`].
    pub(crate) principal: usize,
    /// Shared memory mapped for this guest's channels, in bytes.
    pub(crate) mapped: u64,
}

/// Whoever the platform holds accountable for some guests
/// ([`GuestConn::principal`](mx_proto::platform::GuestConn::principal)): limits and the service loop's fair shares
/// are per principal, so that many processes of one user count as one.
pub(crate) struct Principal {
    pub(crate) id: u64,
    pub(crate) attachments: u32,
    /// Its open endpoints, in the order the service loop serves them.
    pub(crate) endpoints: Vec<u8>,
    /// Shared memory mapped for its channels, in bytes.
    pub(crate) mapped: u64,
    /// Where the next pass starts among `endpoints`.
    pub(crate) cursor: usize,
}

/// A warning that may repeat at a guest's will: logged at most once per
/// [`RATE_LIMIT`], with the number of repeats it stood for.
#[derive(Default)]
pub(crate) struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

/// Interval of a [`RateLimited`] warning.
pub(crate) const RATE_LIMIT: Duration = Duration::from_secs(10);

impl RateLimited {
    /// `Some(repeats since the last one logged)` if this one may be logged.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
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
pub(crate) const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
    pub(crate) cfg: BackendConfig,
    pub(crate) listener: H::Listener,
    pub(crate) poller: Poller,
    pub(crate) events: Events,
    pub(crate) guests: Slab<Guest<H>>,
    pub(crate) endpoints: Endpoints<H>,
    pub(crate) peers: PeerTable,
    pub(crate) self_peer: u16,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stop_wake: Arc<Wakeup>,
    pub(crate) bounce: Vec<u8>,
    pub(crate) segs: Vec<(u64, usize)>,
    pub(crate) ctl_buf: Vec<u8>,
    pub(crate) rng: u64,
    pub(crate) region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
    pub(crate) wire: Option<Wire<H>>,
    /// The NIC has no descriptor to sleep on: poll it.
    pub(crate) nic_needs_polling: bool,
    /// The board's raw endpoint, if a guest opened it.
    pub(crate) raw: Option<RawEndpoint<H>>,
    /// Its counters (kept across opens).
    pub(crate) raw_counters: Arc<RawCounters>,
    /// Peer channels offered and up.
    pub(crate) peer_channels: PeerBroker,
    /// The peer channel the control reply being sent hands over.
    pub(crate) peer_grant_out: Option<mx_proto::platform::PeerGrant>,
    /// Guest principals that ever attached a guest.
    pub(crate) principals: Vec<Principal>,
    /// Shared memory mapped for the raw endpoint's channel.
    pub(crate) raw_mapped: u64,
    /// The listener is out of the poller until then (descriptors ran out).
    pub(crate) accept_paused: Option<Instant>,
    /// The next pause of the listener.
    pub(crate) accept_backoff: Duration,
    /// Warnings a guest can cause at will.
    pub(crate) warn_accept: RateLimited,
    pub(crate) warn_limit: RateLimited,
    /// When the guests were last asked whether they are gone
    /// ([`GuestConn::gone`](mx_proto::platform::GuestConn::gone)).
    pub(crate) gone_checked: Instant,
}

pub(crate) fn next_random(state: &mut u64) -> u32 {
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
        let endpoints = Endpoints::new(usize::from(cfg.max_endpoints));
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
            gone_checked: Instant::now(),
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
}
