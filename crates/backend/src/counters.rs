//! Counters: per endpoint, in the order of
//! [`mx_proto::msg::control::COUNTER_LABELS`], per NIC, in the order of
//! [`mx_proto::msg::control::NIC_COUNTER_LABELS`], and of the board's raw
//! endpoint, in the order of [`mx_proto::msg::control::RAW_COUNTER_LABELS`].

use mx_proto::msg::control::{COUNTER_LABELS, NIC_COUNTER_LABELS, RAW_COUNTER_LABELS};
use std::sync::atomic::{AtomicU64, Ordering};

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
    WireSent,
    WireReceived,
    NacksReceived,
    PullsFailed,
    PullResent,
    PullsDirect,
    /// A command given up on: its destination endpoint kept its event ring
    /// or receive queue full for longer than
    /// [`WireTiming::stalled_wait`](crate::WireTiming::stalled_wait), or a
    /// connect request or reply found it full (those never wait).
    DropStalledDest,
    /// `StageNeeded` events posted: a pull needed a window block no slot
    /// held.
    WindowStages,
    /// `RegionStage` answers that matched no outstanding request (late,
    /// repeated or lying), ignored.
    DropStageBad,
}

const N: usize = Counter::DropStageBad as usize + 1;
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

/// One counter of the NIC (the wire side of a board).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum NicCounter {
    RxFrames,
    TxFrames,
    TxErrors,
    // received, by packet type
    RxRaw,
    RxHostQuery,
    RxHostReply,
    RxTruc,
    RxConnect,
    RxTiny,
    RxSmall,
    RxMedium,
    RxRndv,
    RxPull,
    RxPullReply,
    RxNotify,
    RxNackLib,
    RxNackMcp,
    // sent, by packet type
    TxRaw,
    TxHostQuery,
    TxHostReply,
    TxTruc,
    TxConnect,
    TxTiny,
    TxSmall,
    TxMedium,
    TxRndv,
    TxPull,
    TxPullReply,
    TxNotify,
    TxNackLib,
    TxNackMcp,
    // drops, by reason
    DropTruncated,
    DropBadEtherType,
    DropUnknownType,
    DropUnsupportedType,
    DropLengthBeyondFrame,
    DropBadValue,
    DropNotForUs,
    DropOwnFrame,
    DropUnknownSender,
    DropBadEndpoint,
    DropEndpointClosed,
    DropBadSession,
    DropTrucRefused,
    DropEventRingFull,
    DropRecvqFull,
    DropConnectStatus,
    DropPullBadWindow,
    DropPullBounds,
    DropPullReplyStray,
    DropPullReplyDuplicate,
    DropNackForNothing,
    DropBadMapper,
    DropHostQueryRefused,
    DropHostReplyRefused,
    // pull engine
    PullsStarted,
    PullsDone,
    PullsFailed,
    PullResent,
    PullBytes,
    // discovery
    PeersDiscovered,
    PeerRestarts,
    // the loopback (MX_DISABLE_SHMEM traffic between endpoints of this host)
    LoopbackFrames,
    LoopbackPullsHeld,
    // discovery's bounds
    DropMapperPerSource,
    DropMapperFull,
    CandidatesEvicted,
    CandidatesExpired,
    QueriesDeferred,
    DropDiscoveredFull,
    DropDiscoveredPerSource,
}

const NN: usize = NicCounter::DropDiscoveredPerSource as usize + 1;
const _: () = assert!(NN == NIC_COUNTER_LABELS.len());

/// The counters of a NIC. Atomic so that a handle on another thread (tests,
/// a monitoring thread) can read them while the service loop runs; the
/// loop is their only writer, so relaxed adds suffice.
#[derive(Debug)]
pub struct NicCounters([AtomicU64; NN]);

impl Default for NicCounters {
    fn default() -> Self {
        NicCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl NicCounters {
    /// Add one.
    #[inline]
    pub fn bump(&self, c: NicCounter) {
        self.0[c as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    #[inline]
    pub fn add(&self, c: NicCounter, n: u64) {
        self.0[c as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// Read one.
    pub fn get(&self, c: NicCounter) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }
    /// All values, in label order.
    pub fn values(&self) -> Vec<u64> {
        self.0.iter().map(|v| v.load(Ordering::Relaxed)).collect()
    }
    /// The value of the counter labelled `label`, if there is one.
    pub fn by_label(&self, label: &str) -> Option<u64> {
        let i = NIC_COUNTER_LABELS.iter().position(|l| *l == label)?;
        Some(self.0[i].load(Ordering::Relaxed))
    }
}

/// One counter of a board's raw endpoint (kept whether or not one is open,
/// and whether or not the board has a NIC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum RawCounter {
    Opens,
    OpenNotPermitted,
    OpenBusy,
    Sent,
    SentWithoutNic,
    RefusedMalformed,
    RefusedBadSlot,
    RefusedLength,
    RefusedEtherType,
    RefusedNotRaw,
    NicError,
    Received,
    DropNoEndpoint,
    DropFull,
    DropTooLarge,
}

const NR: usize = RawCounter::DropTooLarge as usize + 1;
const _: () = assert!(NR == RAW_COUNTER_LABELS.len());

/// The raw-endpoint counters of a board: atomic for the same reason as
/// [`NicCounters`] (readers on other threads, one writer).
#[derive(Debug)]
pub struct RawCounters([AtomicU64; NR]);

impl Default for RawCounters {
    fn default() -> Self {
        RawCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl RawCounters {
    /// Add one.
    #[inline]
    pub fn bump(&self, c: RawCounter) {
        self.0[c as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// Read one.
    pub fn get(&self, c: RawCounter) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }
    /// All values, in label order.
    pub fn values(&self) -> Vec<u64> {
        self.0.iter().map(|v| v.load(Ordering::Relaxed)).collect()
    }
}
