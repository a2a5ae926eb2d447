//! One open endpoint as the backend sees it: its channel, owner, session,
//! regions and counters.

use crate::counters::Counters;
use crate::region::RegionTable;
use mx_proto::channel::HostChannel;
use mx_proto::msg::CmdSlot;
use mx_proto::platform::HostPlatform;
use std::sync::Arc;

/// The channel type of an endpoint on host platform `H`.
pub type Chan<H> = HostChannel<Arc<<H as HostPlatform>::Pages>>;

/// An open endpoint.
pub struct Endpoint<H: HostPlatform> {
    /// Endpoint id (0..max_endpoints).
    pub id: u8,
    /// Slab key of the owning guest.
    pub guest: usize,
    /// Random session id given at open.
    pub session: u32,
    /// The shared rings and queues.
    pub chan: Chan<H>,
    /// The mapping the channel lives in (the NIC reads medium fragments
    /// straight from its send-queue slots).
    pub pages: Arc<H::Pages>,
    /// Offset of send-queue slot 0 in `pages`.
    pub sendq_off: usize,
    /// The event channel to the guest.
    pub event: H::Event,
    /// Bulk access to the owning guest's memory.
    pub memory: H::Memory,
    /// Registered RDMA windows.
    pub regions: RegionTable,
    /// Counters.
    pub counters: Counters,
    /// A command copied out of the ring that could not complete yet because
    /// its destination had no room (back-pressure): retried before any
    /// newer command of this endpoint, so order is kept.
    pub pending: Option<CmdSlot>,
    /// Since when `pending` has been retried.
    pub blocked_since: Option<std::time::Instant>,
    /// Events or receive-queue slots were produced since the last publish.
    pub dirty: bool,
    /// Opened with `MX_DISABLE_SHMEM`: its traffic with the endpoints of
    /// this host takes the network path (encoded, looped back, decoded),
    /// in both directions, instead of the intra-node shortcut.
    pub no_shmem: bool,
    /// A command addressed to this endpoint was given up on because its
    /// event ring or receive queue stayed full
    /// ([`WireTiming::stalled_wait`](crate::WireTiming::stalled_wait)):
    /// later ones that find it full are dropped at once, until one finds
    /// room.
    pub stalled: bool,
}

/// Whether `ch` has room for `n` more events. A ring the guest broke has
/// none (its endpoint is closed at the next check). The guest's index is
/// read only when the cached one says the ring is short.
pub fn event_room<H: HostPlatform>(ch: &mut Chan<H>, n: u32) -> bool {
    ch.event_room(n).unwrap_or(false)
}

/// Whether `ch` has a free receive-queue slot (see [`event_room`]).
pub fn recvq_room<H: HostPlatform>(ch: &mut Chan<H>) -> bool {
    ch.recvq_room(1).unwrap_or(false)
}
