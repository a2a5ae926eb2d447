//! Backend configuration: everything the daemon's CLI sets, with defaults a
//! newcomer can run with.

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
}
