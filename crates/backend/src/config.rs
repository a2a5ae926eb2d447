//! Backend configuration: everything the daemon's CLI sets, with defaults a
//! newcomer can run with.

use mxoe_wire::WireProfile;
use std::path::PathBuf;
use std::time::Duration;

/// How the service loop waits when it has nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll without yielding for the spin window, then sleep.
    Spin,
    /// Poll and `sched_yield()` between polls for the spin window, then
    /// sleep. Best measured policy when more runnable processes than cores
    /// (see docs/PERFORMANCE.md).
    Yield,
    /// Sleep on the event channels as soon as a pass finds no work.
    Block,
}

/// Who may open a board's raw endpoint (the MX raw API: send and receive
/// whole frames, name the board and its peers). A mapper on the raw
/// endpoint can put any RAW frame on the fabric and rename hosts, so it is
/// an administrator's tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawAccess {
    /// Guests the platform says are privileged
    /// ([`GuestConn::is_privileged`](mx_proto::platform::GuestConn::is_privileged):
    /// on the local platform uid 0 or the backend's own uid; never a Xen
    /// guest). The default.
    Privileged,
    /// Any guest (`--raw-access any`, e.g. a mapper in a trusted Xen guest).
    Any,
    /// Nobody (`--raw-access none`).
    Nobody,
}

/// Configuration of one backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The board's hostname (`<nodename>:<board>` by default).
    pub hostname: String,
    /// The board's 48-bit address; on the local platform without a NIC a
    /// locally administered address derived from the hostname.
    pub nic_id: u64,
    /// Most endpoints per board (MX endpoint ids 0..max).
    pub max_endpoints: u8,
    /// Wire profile: 0 = `mx`, 1 = `open-mx`.
    pub profile: u8,
    /// Interface MTU of the profile.
    pub mtu: u32,
    /// Largest medium fragment (a profile-derived size).
    pub frag_max: u32,
    /// Largest medium message (a profile-derived size).
    pub medium_max: u32,
    /// Most slots a guest may ask for in a command or event ring.
    pub max_ring_slots: u32,
    /// Most send- or receive-queue slots a guest may ask for.
    pub max_queue_slots: u32,
    /// Commands taken from one endpoint per pass (fairness between guests).
    pub cmd_batch: u32,
    /// What to do when a pass finds no work.
    pub idle: IdlePolicy,
    /// How long to keep polling after the last work before sleeping.
    pub spin: Duration,
    /// Static peers file (`MAC hostname` per line, `#` comments), read at
    /// start when the board has a NIC.
    pub peers_file: Option<PathBuf>,
    /// Announce ourselves and learn peers with mapper broadcasts and host
    /// queries (spec section 6). Only with a NIC.
    pub discovery: bool,
    /// Timing of the wire side (pull retransmission, discovery).
    pub wire: WireTiming,
    /// Who may open the board's raw endpoint.
    pub raw_access: RawAccess,
    /// Peer channels (offered or up) one endpoint may have; 0 turns them
    /// off (traffic between the endpoints of this host then always
    /// crosses the backend).
    pub peer_channels_per_endpoint: usize,
    /// What one guest principal (a uid on the local platform, a domain on
    /// Xen) may hold.
    pub limits: GuestLimits,
}

/// Limits per guest principal: whoever the platform says is accountable
/// for a guest (local: the uid from `SO_PEERCRED`; Xen: the domain id), so
/// that many processes of one user count as one. Defaults leave room for
/// others on a default board of 32 endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Attached guests (control connections) of one principal (64): each
    /// costs the backend two descriptors.
    pub attachments: u32,
    /// Attached guests of all principals together (1024).
    pub total_attachments: u32,
    /// Open endpoints of one principal (24: three quarters of a default
    /// board, so one user can run a 24-rank job and others keep 8).
    pub endpoints: u32,
    /// Shared memory mapped for one principal's channels, in bytes
    /// (256 MiB: about 120 default endpoints, 15 of the largest).
    pub memory: u64,
    /// Peer channels (offered or up) the endpoints of one principal may
    /// have together (64).
    pub peer_channels: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            attachments: 64,
            total_attachments: 1024,
            endpoints: 24,
            memory: 256 << 20,
            peer_channels: 64,
        }
    }
}

/// Timing of the wire side. The defaults are the specification's; tests
/// shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTiming {
    /// The puller re-requests every incomplete block this often (1000 ms).
    pub pull_resend: Duration,
    /// A pull fails with `Unreachable` after this long without progress
    /// (about 500 s, the MX request timeout).
    pub pull_timeout: Duration,
    /// Interval of the mapper announcements of a burst (1 s).
    pub announce_burst: Duration,
    /// Interval of the mapper announcements after a burst (180 s).
    pub announce_steady: Duration,
    /// Announcements per burst (8).
    pub burst_count: u32,
    /// A peer without a hostname is queried this often (5 s).
    pub host_query: Duration,
    /// A same-host pull (shortcut or loopback) of a block its sender has
    /// not registered yet waits this long at most (10 s): a library stages
    /// a large send block by block, and one that never registers the rest
    /// must not hold the puller back for ever.
    pub staging_wait: Duration,
    /// A command of one endpoint blocked on another endpoint of this host
    /// whose event ring or receive queue stays full waits this long at
    /// most (100 ms), then is dropped and counted (the library's
    /// retransmission recovers it, as for a frame lost on the wire), and
    /// later commands to that endpoint are dropped at once until it has
    /// room again: a guest that never drains cannot hold up the commands
    /// queued behind one addressed to it.
    pub stalled_wait: Duration,
    /// Discovery's bounds (they live here so tests can shrink them like
    /// the timers): HOST_QUERYs to an announced host that never answers
    /// before it is forgotten (4: 20 s at the default interval).
    pub host_query_tries: u32,
    /// Most HOST_QUERYs sent per second, all peers together (64).
    pub query_rate: u32,
    /// Most announced hosts waiting for their HOST_REPLY (256).
    pub max_candidates: usize,
    /// Most of those announced from one source MAC (4).
    pub candidates_per_source: usize,
    /// Most peers learned from the wire (4096; static peers not counted).
    pub max_discovered: usize,
    /// Most of those learned from the announcements of one source MAC
    /// (4: a host announces itself; more from one source is a forger
    /// answering our queries for addresses it made up).
    pub discovered_per_source: usize,
}

impl Default for WireTiming {
    fn default() -> Self {
        WireTiming {
            pull_resend: Duration::from_millis(1000),
            pull_timeout: Duration::from_secs(500),
            announce_burst: mxoe_wire::mapper::BURST_INTERVAL,
            announce_steady: mxoe_wire::mapper::STEADY_INTERVAL,
            burst_count: mxoe_wire::mapper::BURST_COUNT,
            host_query: Duration::from_secs(5),
            staging_wait: Duration::from_secs(10),
            stalled_wait: Duration::from_millis(100),
            host_query_tries: 4,
            query_rate: 64,
            max_candidates: 256,
            candidates_per_source: 4,
            max_discovered: 4096,
            discovered_per_source: 4,
        }
    }
}

impl BackendConfig {
    /// Defaults: this node's name, board 0, the open-mx 9000 profile.
    pub fn new() -> Self {
        let node = nodename();
        let hostname = format!("{node}:0");
        BackendConfig {
            nic_id: local_nic_id(&hostname),
            hostname,
            max_endpoints: 32,
            profile: 1,
            mtu: 9000,
            frag_max: 8192,
            medium_max: 8192 * 32,
            max_ring_slots: 4096,
            max_queue_slots: 1024,
            cmd_batch: 32,
            idle: IdlePolicy::Yield,
            spin: Duration::from_micros(200),
            peers_file: None,
            discovery: true,
            wire: WireTiming::default(),
            raw_access: RawAccess::Privileged,
            peer_channels_per_endpoint: crate::peer_channels::DEFAULT_PER_ENDPOINT,
            limits: GuestLimits::default(),
        }
    }

    /// Use wire profile `p`: sets `profile`, `mtu`, `frag_max` and
    /// `medium_max` (what the board reports to guest libraries).
    pub fn set_profile(&mut self, p: WireProfile) {
        self.profile = u8::from(!p.is_mx());
        self.mtu = p.frame_budget();
        self.frag_max = p.frag_max();
        self.medium_max = p.max_medium();
    }

    /// The wire profile `profile` and `mtu` name (`open-mx` 9000 when the
    /// MTU is out of the profile's range).
    pub fn wire_profile(&self) -> WireProfile {
        if self.profile == 0 {
            WireProfile::MX
        } else {
            WireProfile::open_mx(self.mtu).unwrap_or(WireProfile::OPEN_MX_9000)
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// This machine's node name (uname), or "localhost".
pub fn nodename() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A locally administered unicast 48-bit address derived from a hostname,
/// for boards with no NIC (the local platform): stable across restarts,
/// distinct between hosts with distinct names.
pub fn local_nic_id(hostname: &str) -> u64 {
    // FNV-1a: stable and dependency-free; collisions only matter between
    // hosts of one test fabric, which have distinct names.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in hostname.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Byte 0 of the MAC is bits 40-47: set "locally administered", clear
    // "multicast".
    let mac0 = ((h >> 40) as u8 | 0x02) & !0x01;
    (u64::from(mac0) << 40) | (h & 0x00ff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nic_id_is_unicast_local_and_stable() {
        let a = local_nic_id("node1:0");
        assert_eq!(a, local_nic_id("node1:0"));
        assert_ne!(a, local_nic_id("node2:0"));
        let mac0 = (a >> 40) as u8;
        assert_eq!(mac0 & 0x03, 0x02);
        assert!(a < (1 << 48));
    }

    #[test]
    fn profiles_set_board_sizes() {
        let mut c = BackendConfig::new();
        assert_eq!(c.wire_profile(), WireProfile::OPEN_MX_9000);
        c.set_profile(WireProfile::MX);
        assert_eq!(
            (c.profile, c.mtu, c.frag_max, c.medium_max),
            (0, 4144, 4096, 32768)
        );
        assert_eq!(c.wire_profile(), WireProfile::MX);
        c.set_profile(WireProfile::OPEN_MX_1500);
        assert_eq!((c.profile, c.mtu, c.frag_max), (1, 1500, 1452));
        assert_eq!(c.wire_profile(), WireProfile::OPEN_MX_1500);
    }
}
