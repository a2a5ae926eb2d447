//! Internal state: requests, receive bookkeeping, regions and the
//! command queue entries.

use super::types::{EndpointAddr, ReqId, ReqType, Status, Time};
use mx_proto::msg::command::{ConnectReply, RawSeg};
use mx_proto::msg::{RdmaRef, SMALL_INLINE_MAX};

pub(crate) use super::partners::{AckState, Early, Partial, Partner};

/// Handle of a partner slot with its generation (for references that may
/// outlive the partner: timers, pulls, queued acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartnerId {
    pub idx: usize,
    pub gen: u32,
}

/// How the application holds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum User {
    /// Handed out, not finished.
    Active,
    /// Finished, waiting in the done queue.
    Done,
    /// Not held (taken, forgotten, or internal).
    Released,
}

/// The status of a finished request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DoneInfo {
    pub kind: ReqType,
    pub status: Status,
    pub source: EndpointAddr,
    pub match_info: u64,
    pub msg_length: u32,
    pub xfer_length: u32,
}

/// Transmission bookkeeping of a seqnum'd message or a connect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tx {
    /// Lib seqnum, once assigned.
    pub seqnum: Option<u16>,
    /// Acked by the partner.
    pub acked: bool,
    /// Sitting in the data (or control) queue.
    pub queued: bool,
    /// Time of the last complete transmission.
    pub last_send: Option<Time>,
    /// Complete transmissions so far.
    pub sends: u32,
    /// Transmissions allowed before the partner is declared unreachable.
    pub sends_max: u32,
}

impl Tx {
    pub fn new(sends_max: u32) -> Self {
        Tx {
            seqnum: None,
            acked: false,
            queued: false,
            last_send: None,
            sends: 0,
            sends_max,
        }
    }
}

/// Size class of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Tiny,
    Small,
    Medium,
    Large,
}

#[derive(Debug)]
pub(crate) struct SendState {
    pub partner: usize,
    pub dest: EndpointAddr,
    pub class: Class,
    pub len: u32,
    pub match_info: u64,
    /// Copy of a tiny or small payload.
    pub inline: [u8; SMALL_INLINE_MAX],
    /// Medium: the send-queue slots (one per fragment) the message keeps
    /// until its ack, so that it may complete before (its bytes are out of
    /// the user's buffer) and retransmissions copy nothing; empty when it
    /// keeps none (completes on its ack, resends copy from the buffer).
    pub slots: Vec<u16>,
    pub tx: Tx,
    /// Completed towards the application.
    pub completed: bool,
    /// Completed before its ack (counted in the zombies).
    pub zombie: bool,
    /// Medium: next fragment to write in the current transmission.
    pub next_frag: u8,
    /// Medium: fragment count.
    pub nfrags: u8,
    /// Medium: every fragment written to the send queue at least once.
    pub written_once: bool,
    /// Large: reserved window id and its rdma seqnum (released on notify).
    pub region: Option<(u8, u8)>,
    /// Large: the window reference the rendezvous announces (kept after
    /// the window is released, for retransmissions until acked).
    pub rndv: Option<RdmaRef>,
}

#[derive(Debug)]
pub(crate) enum RecvPhase {
    /// In a posted queue.
    Posted,
    /// Matched a medium message being received (a partial).
    Partial,
    /// Matched a rendezvous; waiting for a region id.
    NeedRegion(LargeRecv),
    /// Region registered, pull issued.
    Pulling(LargeRecv),
    /// Finished.
    Finished,
}

/// A rendezvous being pulled into a receive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LargeRecv {
    pub partner: PartnerId,
    pub source: EndpointAddr,
    pub msg_match: u64,
    pub msg_length: u32,
    pub length: u32,
    pub rdma: RdmaRef,
    pub region: u8,
    /// Next message byte to ask for.
    pub next: u32,
    /// Bytes pulled so far.
    pub got: u32,
    /// How the first failed block ended; no new block is asked for then.
    pub failed: Option<mx_proto::msg::event::PullStatus>,
    /// Size of the region pulled into: the whole message, or for a staged
    /// pull a ring of a few blocks that blocks reuse once copied out.
    pub ring: u32,
    /// Ring slots (blocks of the ring) holding a block in flight: one bit
    /// per block pull in flight (an unstaged pull has one slot).
    pub busy: u8,
}

/// One block of a pull, named by its cookie.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullBlock {
    pub rid: ReqId,
    /// Offset of the block in the message.
    pub off: u32,
    /// Offset of the block in our region (the same, or a ring slot).
    pub at: u32,
    pub len: u32,
}

#[derive(Debug)]
pub(crate) struct RecvState {
    pub match_info: u64,
    pub mask: u64,
    pub ctx: usize,
    pub phase: RecvPhase,
}

#[derive(Debug)]
pub(crate) struct ConnectState {
    pub partner: usize,
    pub key: u32,
    pub match_info: u64,
    pub connect_seqnum: u8,
    pub tx: Tx,
    pub answered: bool,
}

#[derive(Debug)]
pub(crate) enum UnexpBody {
    /// Tiny, small or medium payload (maybe still arriving).
    Eager { data: Vec<u8>, complete: bool },
    /// A rendezvous waiting for a receive.
    Rndv { rdma: RdmaRef },
    /// A large (or synchronous) send to ourselves waiting for a receive.
    SelfLarge { send: ReqId },
}

#[derive(Debug)]
pub(crate) struct UnexpState {
    pub partner: usize,
    pub source: EndpointAddr,
    pub match_info: u64,
    pub msg_length: u32,
    pub ctx: usize,
    pub body: UnexpBody,
}

#[derive(Debug)]
pub(crate) struct NotifyState {
    pub partner: usize,
    pub total_length: u32,
    pub rdma_id: u8,
    pub rdma_seqnum: u8,
    pub tx: Tx,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Send(SendState),
    Recv(RecvState),
    Connect(ConnectState),
    Unexp(UnexpState),
    Notify(NotifyState),
}

#[derive(Debug)]
pub(crate) struct Request<B> {
    pub gen: u32,
    pub context: u64,
    pub user: User,
    pub forget: bool,
    /// The protocol still references it (unacked, awaiting notify, queued
    /// unexpected message, ...).
    pub internal: bool,
    pub done: Option<DoneInfo>,
    pub buf: Option<B>,
    pub kind: Kind,
}

impl<B> Request<B> {
    /// The seqnum'd transmission state, for sends and notifies.
    pub fn tx_mut(&mut self) -> Option<&mut Tx> {
        match &mut self.kind {
            Kind::Send(s) => Some(&mut s.tx),
            Kind::Notify(n) => Some(&mut n.tx),
            Kind::Connect(c) => Some(&mut c.tx),
            _ => None,
        }
    }
    /// Whether this request still waits for the resend of its send at
    /// `t` (not acked or answered, not sent again since, not released).
    pub fn resend_pending(&self, t: Time) -> bool {
        if !self.internal {
            return false;
        }
        match &self.kind {
            Kind::Send(s) => !s.tx.acked && s.tx.last_send == Some(t),
            Kind::Notify(n) => !n.tx.acked && n.tx.last_send == Some(t),
            Kind::Connect(c) => !c.answered && c.tx.last_send == Some(t),
            _ => false,
        }
    }
}

/// A message received ahead of its turn, owned.
#[derive(Debug)]
pub(crate) enum OwnedMsg {
    Whole {
        match_info: u64,
        data: Vec<u8>,
    },
    Frag {
        match_info: u64,
        msg_length: u32,
        frag_seqnum: u8,
        data: Vec<u8>,
    },
    Rndv {
        match_info: u64,
        msg_length: u32,
        rdma: RdmaRef,
    },
    Notify {
        total_length: u32,
        rdma_id: u8,
        rdma_seqnum: u8,
    },
}

impl OwnedMsg {
    pub fn frag(&self) -> u8 {
        match self {
            OwnedMsg::Frag { frag_seqnum, .. } => *frag_seqnum,
            _ => 0,
        }
    }
}

/// What a registered region is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegionUse {
    /// The window of a large send.
    Window,
    /// The target of a pull.
    Pull,
}

#[derive(Debug)]
pub(crate) struct Region {
    pub owner: ReqId,
    pub rdma_seqnum: u8,
    pub usage: RegionUse,
    pub segs: Vec<RawSeg>,
    /// The pool ranges the message is staged in, in message order (the
    /// segments name them); empty when it is not staged.
    pub staged: Vec<super::types::PoolRange>,
    /// A staged send copied into the pool and registered block by block
    /// while the peer already pulls: segments registered so far (all of
    /// them once done). Equal to `segs.len()` for every other region.
    pub segs_registered: usize,
    /// A send larger than its staging room: the region is a window of
    /// this many block-sized slots over the message, refilled when the
    /// backend asks (`StageNeeded`).
    pub window: Option<u16>,
}

/// A control command waiting in the command queue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ctrl {
    Connect(ReqId),
    ConnectReply(ConnectReply),
    Liback {
        partner: PartnerId,
        force: bool,
    },
    Register {
        region: u8,
        chunk: u16,
    },
    Deregister(u8),
    /// A block pull, by cookie.
    Pull(u32),
    /// Copy the next block of a progressively staged send into the pool
    /// and register it (region id, its rdma seqnum).
    StageBlock {
        region: u8,
        seq: u8,
    },
    /// Declare a registered region a staging window (after its last
    /// registration chunk).
    Window {
        region: u8,
        seq: u8,
    },
    /// Tell the backend a window slot holds the block it asked for.
    Stage {
        region: u8,
        seq: u8,
        slot: u16,
        block: u32,
    },
}

/// Timers of the core (one next deadline each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    Resend = 0,
    Ack = 1,
}

pub(crate) const TIMER_COUNT: usize = 2;
