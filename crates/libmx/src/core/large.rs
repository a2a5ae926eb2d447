//! Large-message state: region ids and their windows, the rendezvous
//! sequence numbers, the pulls in flight and who waits for a region id, and
//! the staging pool with what staged sends hold of it.

use super::state::{PullBlock, Region};
use super::types::{BulkPool, ReqId};
use super::{RDMA_SEQNUM_START, REGION_IDS};
use std::collections::{HashMap, VecDeque};

/// Regions, pulls and the staging pool of one core.
pub(crate) struct Large {
    /// Region by id: a send window or a pull's landing region.
    pub(crate) regions: Vec<Option<Region>>,
    pub(crate) region_free: VecDeque<u8>,
    /// Region ids held by send windows (at most `SEND_WINDOWS_MAX`).
    pub(crate) send_windows: usize,
    /// Next rdma seqnum of each region id.
    pub(crate) rdma_seq: [u8; REGION_IDS],
    /// Partners with large sends waiting for a region id, in order.
    pub(crate) region_wait_partners: VecDeque<usize>,
    /// Receives waiting for a region id (or pool room) to pull into.
    pub(crate) pull_waiters: VecDeque<ReqId>,
    /// Pull blocks in flight, by cookie.
    pub(crate) pulls: HashMap<u32, PullBlock>,
    pub(crate) next_cookie: u32,
    /// Where large messages are staged, when the backend cannot reach the
    /// application's buffers (see [`BulkPool`]).
    pub(crate) pool: Option<Box<dyn BulkPool>>,
    /// Pool bytes held by staged sends: at most half the pool, so that
    /// pulls always find room once other pulls finish (sends release only
    /// when the peer's pull completes; if they could fill the pool, two
    /// endpoints sending large messages to each other would deadlock).
    pub(crate) staged_sends: u64,
}

impl Large {
    /// Every region id free, cookies from `first_cookie`.
    pub(crate) fn new(first_cookie: u32) -> Self {
        Large {
            regions: (0..REGION_IDS).map(|_| None).collect(),
            region_free: (0..=255u8).collect(),
            send_windows: 0,
            rdma_seq: [RDMA_SEQNUM_START; REGION_IDS],
            region_wait_partners: VecDeque::new(),
            pull_waiters: VecDeque::new(),
            pulls: HashMap::new(),
            next_cookie: first_cookie,
            pool: None,
            staged_sends: 0,
        }
    }
}
