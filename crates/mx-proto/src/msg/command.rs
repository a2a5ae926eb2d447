//! Commands: guest -> backend, one per command-ring slot.
//!
//! Layout of a slot ([`CMD_SLOT_SIZE`] bytes, little-endian): byte 0 is the
//! kind ([`CommandKind`]), the rest is the kind's body at the offsets of the
//! `Raw*` structs below. Data sends share [`RawSendHdr`] (24 bytes):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 1 | kind |
//! | 1 | 1 | destination endpoint |
//! | 2 | 2 | destination peer index |
//! | 4 | 4 | destination session id |
//! | 8 | 2 | lib seqnum |
//! | 10 | 2 | piggybacked ack |
//! | 12 | 4 | message length |
//! | 16 | 8 | match info |
//!
//! Tiny and small payloads follow at offset 24.

use super::event::{DirectSegs, DIRECT_SEGS_MAX};
use super::{Dest, MsgError, RdmaRef, Seq, SMALL_INLINE_MAX, TINY_INLINE_MAX};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of one command-ring slot in bytes.
pub const CMD_SLOT_SIZE: usize = 192;
/// Most segments one [`RegionRegister`] command carries; longer segment
/// lists take several commands.
pub const REGION_SEGS_PER_CMD: usize = 11;
/// Most segments of one registered region (MX_MAX_SEGMENTS).
pub const REGION_MAX_SEGS: usize = 256;

ring_slot!(
    /// One command-ring slot: raw bytes as they sit in shared memory.
    CmdSlot,
    CMD_SLOT_SIZE
);

u8_enum! {
    /// The kind byte of a command.
    pub enum CommandKind {
        /// [`Command::Tiny`].
        Tiny = 1,
        /// [`Command::Small`].
        Small = 2,
        /// [`Command::MediumFrag`].
        MediumFrag = 3,
        /// [`Command::Rndv`].
        Rndv = 4,
        /// [`Command::Notify`].
        Notify = 5,
        /// [`Command::ConnectRequest`].
        ConnectRequest = 6,
        /// [`Command::ConnectReply`].
        ConnectReply = 7,
        /// [`Command::Liback`].
        Liback = 8,
        /// [`Command::Pull`].
        Pull = 9,
        /// [`Command::RegionRegister`].
        RegionRegister = 10,
        /// [`Command::RegionDeregister`].
        RegionDeregister = 11,
        /// [`Command::RegionWindow`] (numbered apart from the base set).
        RegionWindow = 40,
        /// [`Command::RegionStage`].
        RegionStage = 41,
        /// [`Command::PeerHello`] (peer channels only).
        PeerHello = 42,
        /// [`Command::PullGrant`] (peer channels only).
        PullGrant = 43,
    }
}

/// Header shared by the data sends (tiny, small, medium fragment, rendezvous).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct RawSendHdr {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    seqnum: U16,
    piggyack: U16,
    length: U32,
    match_info: U64,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawMedium {
    hdr: RawSendHdr,
    frag_seqnum: u8,
    _pad0: u8,
    frag_length: U16,
    sendq_slot: U16,
    _pad1: U16,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawRndv {
    hdr: RawSendHdr,
    rdma_id: u8,
    rdma_seqnum: u8,
    _pad0: U16,
    rdma_offset: U32,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawNotify {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    seqnum: U16,
    piggyack: U16,
    total_length: U32,
    rdma_id: u8,
    rdma_seqnum: u8,
    _pad: U16,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawConnect {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    src_session: U32,
    /// app key (request) or target session (reply)
    key_or_target: U32,
    target_recv_seqnum_start: U16,
    connect_seqnum: u8,
    status: u8,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawLiback {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    lib_seqnum: U16,
    send_seq: U16,
    acknum: U32,
    resent: u8,
    _pad: [u8; 3],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawHello {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    flags: u8,
    _pad: [u8; 3],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawGrant {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    cookie: U32,
    nsegs: u8,
    _pad: [u8; 3],
    segs: [RawSeg; DIRECT_SEGS_MAX],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawPull {
    kind: u8,
    dst_ep: u8,
    peer: U16,
    session: U32,
    length: U32,
    cookie: U32,
    local_region: u8,
    remote_rdma_id: u8,
    remote_rdma_seqnum: u8,
    flags: u8,
    local_offset: U32,
    remote_offset: U32,
}

/// One segment of a registered region as it travels in a command.
#[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct RawSeg {
    addr: U64,
    len: U32,
    _pad: U32,
}

impl RawSeg {
    /// A segment of `len` bytes at guest address `addr`.
    pub fn new(addr: u64, len: u32) -> Self {
        RawSeg {
            addr: addr.into(),
            len: len.into(),
            _pad: 0.into(),
        }
    }
    /// Guest address of the segment (a virtual address on the local
    /// platform, an offset in the granted pool on Xen).
    pub fn addr(&self) -> u64 {
        self.addr.get()
    }
    /// Length of the segment in bytes.
    pub fn len(&self) -> u32 {
        self.len.get()
    }
    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawRegion {
    kind: u8,
    region_id: u8,
    nsegs: u8,
    flags: u8,
    seg_base: U16,
    _pad: U16,
    segs: [RawSeg; REGION_SEGS_PER_CMD],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawWindow {
    kind: u8,
    region_id: u8,
    gen: u8,
    _pad: u8,
    /// RegionWindow: block size; RegionStage: slot (low 16 bits).
    a: U32,
    /// RegionWindow: message length; RegionStage: block index.
    b: U32,
}

const _: () = {
    assert!(core::mem::size_of::<RawWindow>() == 12);
    assert!(core::mem::size_of::<RawSendHdr>() == 24);
    assert!(core::mem::size_of::<RawMedium>() == 32);
    assert!(core::mem::size_of::<RawRndv>() == 32);
    assert!(core::mem::size_of::<RawNotify>() == 20);
    assert!(core::mem::size_of::<RawConnect>() == 16);
    assert!(core::mem::size_of::<RawLiback>() == 20);
    assert!(core::mem::size_of::<RawPull>() == 28);
    assert!(core::mem::size_of::<RawHello>() == 12);
    assert!(core::mem::size_of::<RawGrant>() <= CMD_SLOT_SIZE);
    assert!(core::mem::size_of::<RawRegion>() <= CMD_SLOT_SIZE);
    assert!(24 + SMALL_INLINE_MAX <= CMD_SLOT_SIZE);
};

/// Fields common to the data sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendHdr {
    /// Destination peer and endpoint.
    pub dest: Dest,
    /// The destination endpoint's session id.
    pub session: u32,
    /// Lib seqnum and piggybacked ack.
    pub seq: Seq,
    /// 64-bit match info.
    pub match_info: u64,
}

/// A medium message fragment waiting in a send-queue slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediumFrag {
    /// Common send fields.
    pub hdr: SendHdr,
    /// Total length of the message.
    pub msg_length: u32,
    /// Index of this fragment in the message.
    pub frag_seqnum: u8,
    /// Bytes of this fragment.
    pub frag_length: u16,
    /// The send-queue slot holding the fragment's bytes.
    pub sendq_slot: u16,
}

/// A rendezvous announcing a large message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rndv {
    /// Common send fields.
    pub hdr: SendHdr,
    /// Length of the large message.
    pub msg_length: u32,
    /// The sender's RDMA window.
    pub rdma: RdmaRef,
}

/// The puller's notification that a large transfer finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    /// The large message's sender.
    pub dest: Dest,
    /// The sender endpoint's session id (our back session).
    pub session: u32,
    /// Lib seqnum and piggybacked ack.
    pub seq: Seq,
    /// Bytes transferred (0 on error).
    pub total_length: u32,
    /// The sender's window id.
    pub rdma_id: u8,
    /// The sender's window use counter.
    pub rdma_seqnum: u8,
}

/// A connect request (handshake step one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The endpoint connected to.
    pub dest: Dest,
    /// The requester's own session id.
    pub src_session: u32,
    /// The key the target endpoint must have.
    pub app_key: u32,
    /// The seqnum the requester expects next from the target.
    pub target_recv_seqnum_start: u16,
    /// Per-partner connect attempt counter.
    pub connect_seqnum: u8,
}

/// A connect reply (handshake step two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply {
    /// The requester.
    pub dest: Dest,
    /// The requester's session id, echoed.
    pub src_session: u32,
    /// The replier's own session id.
    pub target_session: u32,
    /// The seqnum the replier expects next from the requester.
    pub target_recv_seqnum_start: u16,
    /// The request's connect seqnum, echoed.
    pub connect_seqnum: u8,
    /// 0 success, 11 bad key.
    pub status: u8,
}

/// An explicit library ack (TRUC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liback {
    /// The partner acked.
    pub dest: Dest,
    /// The partner's session id (our back session).
    pub session: u32,
    /// The ack value: oldest seqnum not yet fully received.
    pub lib_seqnum: u16,
    /// Same as `lib_seqnum` for MX compatibility.
    pub send_seq: u16,
    /// Per-partner ack counter, from 1.
    pub acknum: u32,
    /// Resend flag (0).
    pub resent: u8,
}

/// Ask the backend to pull a large message into one of our regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pull {
    /// The large message's sender.
    pub dest: Dest,
    /// The sender endpoint's session id (our back session).
    pub session: u32,
    /// Bytes to pull.
    pub length: u32,
    /// Returned in the matching pull-done event.
    pub cookie: u32,
    /// Our registered region receiving the data.
    pub local_region: u8,
    /// Offset in our region.
    pub local_offset: u32,
    /// The sender's window.
    pub remote: RdmaRef,
    /// We can copy the bytes ourselves if the backend authorises it
    /// ([`Event::PullDirect`](super::event::Event::PullDirect)).
    pub direct: bool,
}

/// [`Pull::direct`] in the command's flags byte.
const PULL_DIRECT: u8 = 1;

/// The first message each end of a peer channel sends: what it can do
/// with the other end's memory. Never sent to the backend (which refuses
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHello {
    /// The other end.
    pub dest: Dest,
    /// The other end's session id.
    pub session: u32,
    /// We can read the other process's memory (`process_vm_readv`: the
    /// kernel let us open it): it may send us rendezvous through the
    /// channel, and we pull them ourselves with its [`PullGrant`]s.
    pub direct: bool,
}

/// A large message's sender answering a direct pull that came through a
/// peer channel, from its own region table: where the bytes are in its
/// process. No pieces: it cannot serve that pull directly (the puller
/// then pulls through the backend, or fails the pull if the rendezvous
/// came through the channel). Never sent to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullGrant {
    /// The puller.
    pub dest: Dest,
    /// The puller's session id.
    pub session: u32,
    /// The pull's cookie.
    pub cookie: u32,
    /// The bytes, in message order.
    pub segs: DirectSegs,
}

/// Register (part of) the segment list of a region.
#[derive(Debug, Clone, Copy)]
pub struct RegionRegister {
    /// Region id (0..=255).
    pub region_id: u8,
    /// True on the first command of a registration (replaces the region).
    pub first: bool,
    /// True on the last command of a registration (the region becomes usable).
    pub last: bool,
    /// Index in the region's segment list of `segs[0]`.
    pub seg_base: u16,
    nsegs: u8,
    segs: [RawSeg; REGION_SEGS_PER_CMD],
}

impl RegionRegister {
    /// A registration chunk; `segs` longer than [`REGION_SEGS_PER_CMD`] is
    /// cut (callers split lists with [`RegionRegister::chunks`]).
    pub fn new(region_id: u8, first: bool, last: bool, seg_base: u16, segs: &[RawSeg]) -> Self {
        let n = segs.len().min(REGION_SEGS_PER_CMD);
        let mut arr = [RawSeg::default(); REGION_SEGS_PER_CMD];
        arr[..n].copy_from_slice(&segs[..n]);
        RegionRegister {
            region_id,
            first,
            last,
            seg_base,
            nsegs: n as u8,
            segs: arr,
        }
    }

    /// Split a full segment list into registration commands, in order.
    pub fn chunks(region_id: u8, segs: &[RawSeg]) -> impl Iterator<Item = RegionRegister> + '_ {
        let nchunks = segs.len().div_ceil(REGION_SEGS_PER_CMD).max(1);
        (0..nchunks).map(move |i| {
            let lo = i * REGION_SEGS_PER_CMD;
            let hi = (lo + REGION_SEGS_PER_CMD).min(segs.len());
            RegionRegister::new(
                region_id,
                i == 0,
                i + 1 == nchunks,
                lo as u16,
                &segs[lo..hi],
            )
        })
    }

    /// The segments this command carries.
    pub fn segs(&self) -> &[RawSeg] {
        &self.segs[..self.nsegs as usize]
    }
}

impl PartialEq for RegionRegister {
    fn eq(&self, o: &Self) -> bool {
        self.region_id == o.region_id
            && self.first == o.first
            && self.last == o.last
            && self.seg_base == o.seg_base
            && self.segs().as_bytes() == o.segs().as_bytes()
    }
}
impl Eq for RegionRegister {}

/// A validated command. Inline payloads borrow from the slot they were
/// parsed from (a private copy, never shared memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// A tiny message (at most 32 bytes), payload inline.
    Tiny {
        /// Common send fields.
        hdr: SendHdr,
        /// The payload.
        data: &'a [u8],
    },
    /// A small message (at most 128 bytes), payload inline.
    Small {
        /// Common send fields.
        hdr: SendHdr,
        /// The payload.
        data: &'a [u8],
    },
    /// One fragment of a medium message, payload in a send-queue slot.
    MediumFrag(MediumFrag),
    /// A rendezvous for a large message.
    Rndv(Rndv),
    /// A large-message completion notification.
    Notify(Notify),
    /// A connect request.
    ConnectRequest(ConnectRequest),
    /// A connect reply.
    ConnectReply(ConnectReply),
    /// An explicit ack.
    Liback(Liback),
    /// Pull a large message.
    Pull(Pull),
    /// Register a region (or part of its segment list).
    RegionRegister(RegionRegister),
    /// Forget a region.
    RegionDeregister {
        /// Region id.
        region_id: u8,
    },
    /// Turn a region just registered into a staging window over a longer
    /// message: the registered bytes are `len / block` slots of `block`
    /// bytes, slot `i` holding message block `i` to begin with; a pull of a
    /// block no slot holds asks the guest to stage it
    /// ([`Event::StageNeeded`](super::event::Event::StageNeeded)).
    RegionWindow(RegionWindow),
    /// The answer to `StageNeeded`: the guest copied message block `block`
    /// into window slot `slot`.
    RegionStage(RegionStage),
    /// Peer channels only: what one end can do with the other's memory.
    PeerHello(PeerHello),
    /// Peer channels only: where a direct pull's bytes are.
    PullGrant(PullGrant),
}

/// See [`Command::RegionWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionWindow {
    /// The region (registered completely just before).
    pub region_id: u8,
    /// The library's use counter of the region (its rdma seqnum), echoed in
    /// every `StageNeeded`, so that a late request for an earlier use of
    /// the id is recognised.
    pub gen: u8,
    /// Bytes per block and per slot.
    pub block: u32,
    /// Length of the whole message the window serves.
    pub msg_len: u32,
}

/// See [`Command::RegionStage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionStage {
    /// The region.
    pub region_id: u8,
    /// As in the `StageNeeded` answered.
    pub gen: u8,
    /// The window slot now holding the block.
    pub slot: u16,
    /// The message block (offset `block * block size`).
    pub block: u32,
}

fn send_hdr(r: &RawSendHdr) -> SendHdr {
    SendHdr {
        dest: Dest {
            peer: r.peer.get(),
            endpoint: r.dst_ep,
        },
        session: r.session.get(),
        seq: Seq {
            seqnum: r.seqnum.get(),
            piggyack: r.piggyack.get(),
        },
        match_info: r.match_info.get(),
    }
}

fn raw_send_hdr(kind: CommandKind, h: &SendHdr, length: u32) -> RawSendHdr {
    RawSendHdr {
        kind: kind as u8,
        dst_ep: h.dest.endpoint,
        peer: h.dest.peer.into(),
        session: h.session.into(),
        seqnum: h.seq.seqnum.into(),
        piggyack: h.seq.piggyack.into(),
        length: length.into(),
        match_info: h.match_info.into(),
    }
}

fn read<T: FromBytes + KnownLayout + Immutable>(b: &[u8]) -> T {
    // Every Raw* struct is at most CMD_SLOT_SIZE bytes (checked above), so
    // the prefix read cannot fail.
    match T::read_from_prefix(b) {
        Ok((v, _)) => v,
        Err(_) => unreachable!("raw command layouts fit in a slot"),
    }
}

impl<'a> Command<'a> {
    /// Parse and validate a slot the caller owns (already copied out of
    /// shared memory).
    ///
    /// # Errors
    /// [`MsgError`] when the kind is unknown or a field is out of range.
    pub fn parse(slot: &'a CmdSlot) -> Result<Self, MsgError> {
        let b = &slot.0[..];
        let kind = CommandKind::from_u8(b[0]).ok_or(MsgError::UnknownKind(b[0]))?;
        Ok(match kind {
            CommandKind::Tiny | CommandKind::Small => {
                let r: RawSendHdr = read(b);
                let len = r.length.get();
                let max = if kind == CommandKind::Tiny {
                    TINY_INLINE_MAX
                } else {
                    SMALL_INLINE_MAX
                };
                if len as usize > max {
                    return Err(MsgError::BadLength { kind: b[0], len });
                }
                let data = &b[24..24 + len as usize];
                let hdr = send_hdr(&r);
                if kind == CommandKind::Tiny {
                    Command::Tiny { hdr, data }
                } else {
                    Command::Small { hdr, data }
                }
            }
            CommandKind::MediumFrag => {
                let r: RawMedium = read(b);
                let frag_length = r.frag_length.get();
                let msg_length = r.hdr.length.get();
                if frag_length as usize > super::QUEUE_SLOT_SIZE
                    || u32::from(frag_length) > msg_length
                {
                    return Err(MsgError::BadLength {
                        kind: b[0],
                        len: frag_length.into(),
                    });
                }
                Command::MediumFrag(MediumFrag {
                    hdr: send_hdr(&r.hdr),
                    msg_length,
                    frag_seqnum: r.frag_seqnum,
                    frag_length,
                    sendq_slot: r.sendq_slot.get(),
                })
            }
            CommandKind::Rndv => {
                let r: RawRndv = read(b);
                Command::Rndv(Rndv {
                    hdr: send_hdr(&r.hdr),
                    msg_length: r.hdr.length.get(),
                    rdma: RdmaRef {
                        id: r.rdma_id,
                        seqnum: r.rdma_seqnum,
                        offset: r.rdma_offset.get(),
                    },
                })
            }
            CommandKind::Notify => {
                let r: RawNotify = read(b);
                Command::Notify(Notify {
                    dest: Dest {
                        peer: r.peer.get(),
                        endpoint: r.dst_ep,
                    },
                    session: r.session.get(),
                    seq: Seq {
                        seqnum: r.seqnum.get(),
                        piggyack: r.piggyack.get(),
                    },
                    total_length: r.total_length.get(),
                    rdma_id: r.rdma_id,
                    rdma_seqnum: r.rdma_seqnum,
                })
            }
            CommandKind::ConnectRequest | CommandKind::ConnectReply => {
                let r: RawConnect = read(b);
                let dest = Dest {
                    peer: r.peer.get(),
                    endpoint: r.dst_ep,
                };
                if kind == CommandKind::ConnectRequest {
                    Command::ConnectRequest(ConnectRequest {
                        dest,
                        src_session: r.src_session.get(),
                        app_key: r.key_or_target.get(),
                        target_recv_seqnum_start: r.target_recv_seqnum_start.get(),
                        connect_seqnum: r.connect_seqnum,
                    })
                } else {
                    Command::ConnectReply(ConnectReply {
                        dest,
                        src_session: r.src_session.get(),
                        target_session: r.key_or_target.get(),
                        target_recv_seqnum_start: r.target_recv_seqnum_start.get(),
                        connect_seqnum: r.connect_seqnum,
                        status: r.status,
                    })
                }
            }
            CommandKind::Liback => {
                let r: RawLiback = read(b);
                Command::Liback(Liback {
                    dest: Dest {
                        peer: r.peer.get(),
                        endpoint: r.dst_ep,
                    },
                    session: r.session.get(),
                    lib_seqnum: r.lib_seqnum.get(),
                    send_seq: r.send_seq.get(),
                    acknum: r.acknum.get(),
                    resent: r.resent,
                })
            }
            CommandKind::Pull => {
                let r: RawPull = read(b);
                Command::Pull(Pull {
                    dest: Dest {
                        peer: r.peer.get(),
                        endpoint: r.dst_ep,
                    },
                    session: r.session.get(),
                    length: r.length.get(),
                    cookie: r.cookie.get(),
                    local_region: r.local_region,
                    local_offset: r.local_offset.get(),
                    remote: RdmaRef {
                        id: r.remote_rdma_id,
                        seqnum: r.remote_rdma_seqnum,
                        offset: r.remote_offset.get(),
                    },
                    direct: r.flags & PULL_DIRECT != 0,
                })
            }
            CommandKind::RegionRegister => {
                let r: RawRegion = read(b);
                if r.nsegs as usize > REGION_SEGS_PER_CMD {
                    return Err(MsgError::BadField("nsegs"));
                }
                if r.flags & !0b11 != 0 {
                    return Err(MsgError::BadField("region flags"));
                }
                if usize::from(r.seg_base.get()) + usize::from(r.nsegs) > REGION_MAX_SEGS {
                    return Err(MsgError::BadField("seg_base"));
                }
                Command::RegionRegister(RegionRegister {
                    region_id: r.region_id,
                    first: r.flags & 1 != 0,
                    last: r.flags & 2 != 0,
                    seg_base: r.seg_base.get(),
                    nsegs: r.nsegs,
                    segs: r.segs,
                })
            }
            CommandKind::RegionDeregister => Command::RegionDeregister { region_id: b[1] },
            CommandKind::RegionWindow => {
                let r: RawWindow = read(b);
                Command::RegionWindow(RegionWindow {
                    region_id: r.region_id,
                    gen: r.gen,
                    block: r.a.get(),
                    msg_len: r.b.get(),
                })
            }
            CommandKind::RegionStage => {
                let r: RawWindow = read(b);
                let slot = u16::try_from(r.a.get()).map_err(|_| MsgError::BadField("slot"))?;
                Command::RegionStage(RegionStage {
                    region_id: r.region_id,
                    gen: r.gen,
                    slot,
                    block: r.b.get(),
                })
            }
            CommandKind::PeerHello => {
                let r: RawHello = read(b);
                Command::PeerHello(PeerHello {
                    dest: Dest {
                        peer: r.peer.get(),
                        endpoint: r.dst_ep,
                    },
                    session: r.session.get(),
                    direct: r.flags & PULL_DIRECT != 0,
                })
            }
            CommandKind::PullGrant => {
                let r: RawGrant = read(b);
                let n = usize::from(r.nsegs);
                if n > DIRECT_SEGS_MAX {
                    return Err(MsgError::BadField("pull grant segment count"));
                }
                let mut pieces = [(0u64, 0u32); DIRECT_SEGS_MAX];
                for (p, s) in pieces.iter_mut().zip(&r.segs[..n]) {
                    *p = (s.addr(), s.len());
                }
                Command::PullGrant(PullGrant {
                    dest: Dest {
                        peer: r.peer.get(),
                        endpoint: r.dst_ep,
                    },
                    session: r.session.get(),
                    cookie: r.cookie.get(),
                    segs: DirectSegs::new(&pieces[..n]).expect("checked count"),
                })
            }
        })
    }

    /// How many leading bytes of a command slot its content uses (the rest
    /// is zero when [`emit`](Self::emit)ted), from the slot's first bytes
    /// (`head`: at least 24): what a ring needs to copy. An unknown kind
    /// says the whole slot, and parses to an error afterwards.
    pub fn used_len(head: &[u8]) -> usize {
        let Some(&k) = head.first() else {
            return CMD_SLOT_SIZE;
        };
        let Some(kind) = CommandKind::from_u8(k) else {
            return CMD_SLOT_SIZE;
        };
        let n = match kind {
            CommandKind::Tiny | CommandKind::Small => match head.get(..24) {
                Some(h) => {
                    let r: RawSendHdr = read(h);
                    24 + (r.length.get() as usize).min(SMALL_INLINE_MAX)
                }
                None => CMD_SLOT_SIZE,
            },
            CommandKind::MediumFrag => size_of::<RawMedium>(),
            CommandKind::Rndv => size_of::<RawRndv>(),
            CommandKind::Notify => size_of::<RawNotify>(),
            CommandKind::ConnectRequest | CommandKind::ConnectReply => size_of::<RawConnect>(),
            CommandKind::Liback => size_of::<RawLiback>(),
            CommandKind::Pull => size_of::<RawPull>(),
            CommandKind::RegionRegister => size_of::<RawRegion>(),
            CommandKind::RegionDeregister => 2,
            CommandKind::RegionWindow | CommandKind::RegionStage => size_of::<RawWindow>(),
            CommandKind::PeerHello => size_of::<RawHello>(),
            CommandKind::PullGrant => size_of::<RawGrant>(),
        };
        n.min(CMD_SLOT_SIZE)
    }

    /// The kind of this command.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Tiny { .. } => CommandKind::Tiny,
            Command::Small { .. } => CommandKind::Small,
            Command::MediumFrag(_) => CommandKind::MediumFrag,
            Command::Rndv(_) => CommandKind::Rndv,
            Command::Notify(_) => CommandKind::Notify,
            Command::ConnectRequest(_) => CommandKind::ConnectRequest,
            Command::ConnectReply(_) => CommandKind::ConnectReply,
            Command::Liback(_) => CommandKind::Liback,
            Command::Pull(_) => CommandKind::Pull,
            Command::RegionRegister(_) => CommandKind::RegionRegister,
            Command::RegionDeregister { .. } => CommandKind::RegionDeregister,
            Command::RegionWindow(_) => CommandKind::RegionWindow,
            Command::RegionStage(_) => CommandKind::RegionStage,
            Command::PeerHello(_) => CommandKind::PeerHello,
            Command::PullGrant(_) => CommandKind::PullGrant,
        }
    }

    /// Write this command into `slot` (whole-slot store: unused bytes zeroed).
    ///
    /// # Errors
    /// [`MsgError::BadLength`] if an inline payload exceeds its class.
    pub fn emit(&self, slot: &mut CmdSlot) -> Result<(), MsgError> {
        slot.0.fill(0);
        let b = &mut slot.0[..];
        fn put<T: IntoBytes + Immutable>(b: &mut [u8], v: &T) {
            let s = v.as_bytes();
            b[..s.len()].copy_from_slice(s);
        }
        match self {
            Command::Tiny { hdr, data } | Command::Small { hdr, data } => {
                let kind = self.kind();
                let max = if kind == CommandKind::Tiny {
                    TINY_INLINE_MAX
                } else {
                    SMALL_INLINE_MAX
                };
                if data.len() > max {
                    return Err(MsgError::BadLength {
                        kind: kind as u8,
                        len: data.len() as u32,
                    });
                }
                put(b, &raw_send_hdr(kind, hdr, data.len() as u32));
                b[24..24 + data.len()].copy_from_slice(data);
            }
            Command::MediumFrag(m) => put(
                b,
                &RawMedium {
                    hdr: raw_send_hdr(CommandKind::MediumFrag, &m.hdr, m.msg_length),
                    frag_seqnum: m.frag_seqnum,
                    _pad0: 0,
                    frag_length: m.frag_length.into(),
                    sendq_slot: m.sendq_slot.into(),
                    _pad1: 0.into(),
                },
            ),
            Command::Rndv(r) => put(
                b,
                &RawRndv {
                    hdr: raw_send_hdr(CommandKind::Rndv, &r.hdr, r.msg_length),
                    rdma_id: r.rdma.id,
                    rdma_seqnum: r.rdma.seqnum,
                    _pad0: 0.into(),
                    rdma_offset: r.rdma.offset.into(),
                },
            ),
            Command::Notify(n) => put(
                b,
                &RawNotify {
                    kind: CommandKind::Notify as u8,
                    dst_ep: n.dest.endpoint,
                    peer: n.dest.peer.into(),
                    session: n.session.into(),
                    seqnum: n.seq.seqnum.into(),
                    piggyack: n.seq.piggyack.into(),
                    total_length: n.total_length.into(),
                    rdma_id: n.rdma_id,
                    rdma_seqnum: n.rdma_seqnum,
                    _pad: 0.into(),
                },
            ),
            Command::ConnectRequest(c) => put(
                b,
                &RawConnect {
                    kind: CommandKind::ConnectRequest as u8,
                    dst_ep: c.dest.endpoint,
                    peer: c.dest.peer.into(),
                    src_session: c.src_session.into(),
                    key_or_target: c.app_key.into(),
                    target_recv_seqnum_start: c.target_recv_seqnum_start.into(),
                    connect_seqnum: c.connect_seqnum,
                    status: 0,
                },
            ),
            Command::ConnectReply(c) => put(
                b,
                &RawConnect {
                    kind: CommandKind::ConnectReply as u8,
                    dst_ep: c.dest.endpoint,
                    peer: c.dest.peer.into(),
                    src_session: c.src_session.into(),
                    key_or_target: c.target_session.into(),
                    target_recv_seqnum_start: c.target_recv_seqnum_start.into(),
                    connect_seqnum: c.connect_seqnum,
                    status: c.status,
                },
            ),
            Command::Liback(l) => put(
                b,
                &RawLiback {
                    kind: CommandKind::Liback as u8,
                    dst_ep: l.dest.endpoint,
                    peer: l.dest.peer.into(),
                    session: l.session.into(),
                    lib_seqnum: l.lib_seqnum.into(),
                    send_seq: l.send_seq.into(),
                    acknum: l.acknum.into(),
                    resent: l.resent,
                    _pad: [0; 3],
                },
            ),
            Command::Pull(p) => put(
                b,
                &RawPull {
                    kind: CommandKind::Pull as u8,
                    dst_ep: p.dest.endpoint,
                    peer: p.dest.peer.into(),
                    session: p.session.into(),
                    length: p.length.into(),
                    cookie: p.cookie.into(),
                    local_region: p.local_region,
                    remote_rdma_id: p.remote.id,
                    remote_rdma_seqnum: p.remote.seqnum,
                    flags: if p.direct { PULL_DIRECT } else { 0 },
                    local_offset: p.local_offset.into(),
                    remote_offset: p.remote.offset.into(),
                },
            ),
            Command::RegionRegister(r) => put(
                b,
                &RawRegion {
                    kind: CommandKind::RegionRegister as u8,
                    region_id: r.region_id,
                    nsegs: r.nsegs,
                    flags: u8::from(r.first) | (u8::from(r.last) << 1),
                    seg_base: r.seg_base.into(),
                    _pad: 0.into(),
                    segs: r.segs,
                },
            ),
            Command::RegionDeregister { region_id } => {
                b[0] = CommandKind::RegionDeregister as u8;
                b[1] = *region_id;
            }
            Command::RegionWindow(w) => put(
                b,
                &RawWindow {
                    kind: CommandKind::RegionWindow as u8,
                    region_id: w.region_id,
                    gen: w.gen,
                    _pad: 0,
                    a: w.block.into(),
                    b: w.msg_len.into(),
                },
            ),
            Command::RegionStage(st) => put(
                b,
                &RawWindow {
                    kind: CommandKind::RegionStage as u8,
                    region_id: st.region_id,
                    gen: st.gen,
                    _pad: 0,
                    a: u32::from(st.slot).into(),
                    b: st.block.into(),
                },
            ),
            Command::PeerHello(h) => put(
                b,
                &RawHello {
                    kind: CommandKind::PeerHello as u8,
                    dst_ep: h.dest.endpoint,
                    peer: h.dest.peer.into(),
                    session: h.session.into(),
                    flags: if h.direct { PULL_DIRECT } else { 0 },
                    _pad: [0; 3],
                },
            ),
            Command::PullGrant(g) => {
                let mut segs = [RawSeg::default(); DIRECT_SEGS_MAX];
                for (d, &(addr, len)) in segs.iter_mut().zip(g.segs.segs()) {
                    *d = RawSeg::new(addr, len);
                }
                put(
                    b,
                    &RawGrant {
                        kind: CommandKind::PullGrant as u8,
                        dst_ep: g.dest.endpoint,
                        peer: g.dest.peer.into(),
                        session: g.session.into(),
                        cookie: g.cookie.into(),
                        nsegs: g.segs.segs().len() as u8,
                        _pad: [0; 3],
                        segs,
                    },
                )
            }
        }
        Ok(())
    }
}
