//! Per-endpoint counters, in the order of
//! [`mx_proto::msg::control::COUNTER_LABELS`].

use mx_proto::msg::control::COUNTER_LABELS;

/// One counter of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum Counter {
    CmdsProcessed,
    CmdsMalformed,
    CmdsBadRef,
    TinySent,
    SmallSent,
    MediumFragsSent,
    RndvSent,
    NotifySent,
    ConnectSent,
    LibackSent,
    PullsDone,
    BytesSent,
    EventsPosted,
    BytesReceived,
    DropEventRingFull,
    DropRecvqFull,
    DropBadSession,
    DropEndpointClosed,
    NacksSent,
    BackPressured,
}

const N: usize = Counter::BackPressured as usize + 1;
const _: () = assert!(N == COUNTER_LABELS.len());

/// The counters of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct Counters([u64; N]);

impl Counters {
    /// Add one.
    #[inline]
    pub fn bump(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }
    /// Add `n`.
    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }
    /// Read one.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
    /// All values, in label order.
    pub fn values(&self) -> &[u64] {
        &self.0
    }
}
