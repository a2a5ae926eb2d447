//! Events: backend -> guest, one per event-ring slot.
//!
//! Layout of a slot ([`EVT_SLOT_SIZE`] bytes, little-endian): byte 0 is the
//! kind ([`EventKind`]). Received data messages share `RawRecvHdr`
//! (20 bytes):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 1 | kind |
//! | 1 | 1 | source endpoint |
//! | 2 | 2 | source peer index |
//! | 4 | 2 | lib seqnum |
//! | 6 | 2 | piggybacked ack |
//! | 8 | 8 | match info |
//! | 16 | 4 | message length |
//!
//! A tiny payload follows at offset 24. The guest distrusts events too
//! (netfront's rule): slot indices are range-checked by the consumer that
//! knows the queue sizes, lengths here.

use super::{MsgError, RdmaRef, Seq, Source, TINY_INLINE_MAX};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of one event-ring slot in bytes.
pub const EVT_SLOT_SIZE: usize = 64;

ring_slot!(
    /// One event-ring slot: raw bytes as they sit in shared memory.
    EvtSlot,
    EVT_SLOT_SIZE
);

u8_enum! {
    /// The kind byte of an event.
    pub enum EventKind {
        /// [`Event::RecvTiny`].
        RecvTiny = 1,
        /// [`Event::RecvSmall`].
        RecvSmall = 2,
        /// [`Event::RecvMediumFrag`].
        RecvMediumFrag = 3,
        /// [`Event::RecvRndv`].
        RecvRndv = 4,
        /// [`Event::RecvNotify`].
        RecvNotify = 5,
        /// [`Event::RecvConnectRequest`].
        RecvConnectRequest = 6,
        /// [`Event::RecvConnectReply`].
        RecvConnectReply = 7,
        /// [`Event::RecvLiback`].
        RecvLiback = 8,
        /// [`Event::RecvNackLib`].
        RecvNackLib = 9,
        /// [`Event::SendMediumDone`].
        SendMediumDone = 10,
        /// [`Event::PullDone`].
        PullDone = 11,
        /// [`Event::CommandError`].
        CommandError = 12,
        /// [`Event::PullDirect`].
        PullDirect = 13,
        /// [`Event::PeerOffer`].
        PeerOffer = 14,
        /// [`Event::StageNeeded`] (numbered apart from the base set).
        StageNeeded = 40,
        /// [`Event::PeerClosed`].
        PeerClosed = 15,
    }
}

/// Header shared by received data messages.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawRecvHdr {
    kind: u8,
    src_ep: u8,
    peer: U16,
    seqnum: U16,
    piggyack: U16,
    match_info: U64,
    length: U32,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawRecvData {
    hdr: RawRecvHdr,
    /// small/medium: receive-queue slot; rndv: rdma id and seqnum
    a: U16,
    /// medium: frag seqnum in the low byte
    b: U16,
    /// medium: frag length; rndv/notify: rdma offset (low 16 bits unused)
    c: U32,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawConnect {
    kind: u8,
    src_ep: u8,
    peer: U16,
    src_session: U32,
    key_or_target: U32,
    target_recv_seqnum_start: U16,
    connect_seqnum: u8,
    status: u8,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawLiback {
    kind: u8,
    src_ep: u8,
    peer: U16,
    lib_seqnum: U16,
    send_seq: U16,
    acknum: U32,
    resent: u8,
    _pad: [u8; 3],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawNack {
    kind: u8,
    peer_ep: u8,
    peer: U16,
    nack_type: u8,
    _pad: u8,
    lib_seqnum: U16,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawDone {
    kind: u8,
    status: u8,
    slot: U16,
    cookie: U32,
    transferred: U32,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawStage {
    kind: u8,
    region_id: u8,
    gen: u8,
    _pad: u8,
    slot: U16,
    _pad1: U16,
    block: U32,
}

/// A peer-channel offer.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawPeer {
    kind: u8,
    src_ep: u8,
    peer: U16,
    channel: U32,
    session: U32,
    msg_slots: U16,
    data_slots: U16,
    pid: U32,
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawDirect {
    kind: u8,
    nsegs: u8,
    _pad: U16,
    cookie: U32,
    pid: U32,
    _pad2: U32,
    segs: [RawDirectSeg; DIRECT_SEGS_MAX],
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawDirectSeg {
    addr: U64,
    len: U32,
    _pad: U32,
}

/// Most segments of the sender's window a [`Event::PullDirect`] names (what
/// fits in one event slot); a window in more pieces is copied by the
/// backend.
pub const DIRECT_SEGS_MAX: usize = 3;

/// The sender's bytes of a pull the puller copies itself: up to
/// [`DIRECT_SEGS_MAX`] `(address, length)` pieces in the sender process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectSegs {
    segs: [(u64, u32); DIRECT_SEGS_MAX],
    n: u8,
}

impl DirectSegs {
    /// The pieces, or `None` when there are more than [`DIRECT_SEGS_MAX`].
    pub fn new(pieces: &[(u64, u32)]) -> Option<Self> {
        let mut d = DirectSegs::default();
        d.segs.get_mut(..pieces.len())?.copy_from_slice(pieces);
        d.n = pieces.len() as u8;
        Some(d)
    }

    /// The pieces, in message order.
    pub fn segs(&self) -> &[(u64, u32)] {
        &self.segs[..usize::from(self.n)]
    }
}

const _: () = {
    assert!(core::mem::size_of::<RawDirect>() == EVT_SLOT_SIZE);
    assert!(core::mem::size_of::<RawRecvHdr>() == 20);
    assert!(core::mem::size_of::<RawRecvData>() == 28);
    assert!(24 + TINY_INLINE_MAX <= EVT_SLOT_SIZE);
    assert!(core::mem::size_of::<RawConnect>() == 16);
    assert!(core::mem::size_of::<RawLiback>() == 16);
    assert!(core::mem::size_of::<RawNack>() == 8);
    assert!(core::mem::size_of::<RawDone>() == 12);
    assert!(core::mem::size_of::<RawPeer>() == 20);
};

/// Fields common to received data messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvHdr {
    /// Sender.
    pub src: Source,
    /// Lib seqnum and piggybacked ack.
    pub seq: Seq,
    /// 64-bit match info.
    pub match_info: u64,
}

u8_enum! {
    /// Status of a completed pull.
    pub enum PullStatus {
        /// All requested bytes arrived.
        Success = 0,
        /// The sender's host or endpoint stopped answering (timeout).
        Unreachable = 1,
        /// The sender's endpoint is closed.
        EndpointClosed = 2,
        /// The sender's endpoint id is invalid.
        BadEndpoint = 3,
        /// The session did not match.
        BadSession = 4,
        /// The sender's window id is unknown.
        BadRdmaWindow = 5,
        /// Our own region is unknown or too small.
        BadLocalRegion = 6,
    }
}

/// A validated event. Inline payloads borrow from the slot they were parsed
/// from (a private copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A tiny message, payload inline.
    RecvTiny {
        /// Common receive fields.
        hdr: RecvHdr,
        /// The payload (at most 32 bytes).
        data: &'a [u8],
    },
    /// A small message in a receive-queue slot.
    RecvSmall {
        /// Common receive fields.
        hdr: RecvHdr,
        /// Message length (at most 128).
        length: u8,
        /// Receive-queue slot with the bytes.
        recvq_slot: u16,
    },
    /// A medium fragment in a receive-queue slot.
    RecvMediumFrag {
        /// Common receive fields.
        hdr: RecvHdr,
        /// Total message length.
        msg_length: u32,
        /// Fragment index.
        frag_seqnum: u8,
        /// Fragment bytes.
        frag_length: u16,
        /// Receive-queue slot with the bytes.
        recvq_slot: u16,
    },
    /// A rendezvous for a large message.
    RecvRndv {
        /// Common receive fields.
        hdr: RecvHdr,
        /// Large message length.
        msg_length: u32,
        /// The sender's window.
        rdma: RdmaRef,
    },
    /// A puller's notification that our large send was transferred.
    RecvNotify {
        /// Sender of the notify (the puller) and its seqnum/ack.
        src: Source,
        /// Lib seqnum and piggybacked ack.
        seq: Seq,
        /// Bytes transferred.
        total_length: u32,
        /// Our window id.
        rdma_id: u8,
        /// Our window use counter.
        rdma_seqnum: u8,
    },
    /// A connect request from a peer (already key-agnostic; the library checks the key).
    RecvConnectRequest {
        /// The requester.
        src: Source,
        /// Its session id.
        src_session: u32,
        /// The key it presented.
        app_key: u32,
        /// The seqnum it expects from us next.
        target_recv_seqnum_start: u16,
        /// Its connect attempt counter.
        connect_seqnum: u8,
    },
    /// A connect reply.
    RecvConnectReply {
        /// The replier.
        src: Source,
        /// Our session id, echoed.
        src_session: u32,
        /// The replier's session id.
        target_session: u32,
        /// The seqnum the replier expects from us next.
        target_recv_seqnum_start: u16,
        /// Our connect seqnum, echoed.
        connect_seqnum: u8,
        /// 0 success, 11 bad key.
        status: u8,
    },
    /// An explicit ack.
    RecvLiback {
        /// The acking partner.
        src: Source,
        /// Ack value.
        lib_seqnum: u16,
        /// Same as lib_seqnum.
        send_seq: u16,
        /// Ack counter.
        acknum: u32,
    },
    /// A negative ack of one of our sends.
    RecvNackLib {
        /// The partner whose endpoint refused.
        src: Source,
        /// Why it refused.
        nack_type: NackKind,
        /// The refused message's seqnum (0 for a connect).
        lib_seqnum: u16,
    },
    /// A send-queue slot is free again.
    SendMediumDone {
        /// The slot.
        sendq_slot: u16,
    },
    /// A pull finished.
    PullDone {
        /// The cookie of the pull command.
        cookie: u32,
        /// How it ended.
        status: PullStatus,
        /// Bytes written into our region.
        transferred: u32,
    },
    /// The backend authorises us to copy a pull's bytes ourselves, straight
    /// from the sender process (local platform, `process_vm_readv`): one
    /// copy instead of its two. We answer nothing; if the copy fails we
    /// send the pull again without asking for this.
    PullDirect {
        /// The cookie of the pull command.
        cookie: u32,
        /// The sender's process id.
        pid: u32,
        /// Where the pulled bytes are in the sender process.
        segs: DirectSegs,
    },
    /// Another endpoint of this host offers us a peer channel
    /// ([`crate::peer`]): accept it with the control request
    /// `PeerAccept`, or decline it with `PeerClose`.
    PeerOffer {
        /// The backend's name for the channel.
        channel: u32,
        /// The offering endpoint (its peer index is this host's).
        src: Source,
        /// The offering endpoint's session id.
        session: u32,
        /// The channel's sizes.
        sizes: crate::peer::PeerSizes,
        /// The offering endpoint's process id where one library may read
        /// another's memory (local), else 0 (as in `PeerPending`).
        pid: u32,
    },
    /// A pull needs message block `block` of our staging window `region_id`
    /// ([`Command::RegionWindow`](super::command::Command::RegionWindow)):
    /// copy it into window slot `slot` and answer with
    /// [`Command::RegionStage`](super::command::Command::RegionStage). The
    /// backend reads that slot again only after the answer.
    StageNeeded {
        /// Our window.
        region_id: u8,
        /// The window's use counter given at `RegionWindow`.
        gen: u8,
        /// The slot to fill.
        slot: u16,
        /// The message block to copy into it.
        block: u32,
    },
    /// The other end of peer channel `channel` is gone (it closed the
    /// channel or its endpoint, or its guest died): drop our end. Where the
    /// doorbell cannot hang up (Xen event channels), this is how the
    /// survivor learns; elsewhere it only says sooner what the hang-up says.
    PeerClosed {
        /// The backend's name for the channel.
        channel: u32,
    },
    /// The backend rejected one of our commands.
    CommandError {
        /// The command's kind byte (as sent: a malformed command's may name
        /// no kind).
        cmd_kind: u8,
        /// Why.
        code: CommandErrorCode,
    },
}

u8_enum! {
    /// Why the backend rejected a command (carried by [`Event::CommandError`]).
    pub enum CommandErrorCode {
        /// The command did not parse.
        Malformed = 1,
        /// It named a send-queue slot the endpoint does not have.
        BadSendqSlot = 2,
        /// It named a peer index the backend does not know.
        BadPeer = 3,
        /// It names a region that is not (fully) registered.
        BadRegion = 4,
        /// The length does not fit the profile.
        BadLength = 5,
    }
}

u8_enum! {
    /// Why a destination refused one of our messages (carried by
    /// [`Event::RecvNackLib`]); the values are the wire's NACK types.
    pub enum NackKind {
        /// The destination endpoint id is out of range.
        BadEndpoint = 1,
        /// The destination endpoint is not open.
        EndpointClosed = 2,
        /// The destination endpoint is another instance (session mismatch).
        BadSession = 3,
    }
}

fn src(peer: U16, ep: u8) -> Source {
    Source {
        peer: peer.get(),
        endpoint: ep,
    }
}

fn read<T: FromBytes + KnownLayout + Immutable>(b: &[u8]) -> T {
    match T::read_from_prefix(b) {
        Ok((v, _)) => v,
        Err(_) => unreachable!("raw event layouts fit in a slot"),
    }
}

fn raw_recv(kind: EventKind, h: &RecvHdr, length: u32) -> RawRecvHdr {
    RawRecvHdr {
        kind: kind as u8,
        src_ep: h.src.endpoint,
        peer: h.src.peer.into(),
        seqnum: h.seq.seqnum.into(),
        piggyack: h.seq.piggyack.into(),
        match_info: h.match_info.into(),
        length: length.into(),
    }
}

impl<'a> Event<'a> {
    /// The receive-queue slot whose payload this event carries (small
    /// messages and medium fragments): the consumer reads it during the
    /// event and releases it after. The one place that says which events
    /// carry a slot.
    pub fn recvq_slot(&self) -> Option<u16> {
        match self {
            Event::RecvSmall { recvq_slot, .. } | Event::RecvMediumFrag { recvq_slot, .. } => {
                Some(*recvq_slot)
            }
            _ => None,
        }
    }

    /// Parse and validate a slot the caller owns (already copied out of
    /// shared memory).
    ///
    /// # Errors
    /// [`MsgError`] when the kind is unknown or a field is out of range.
    pub fn parse(slot: &'a EvtSlot) -> Result<Self, MsgError> {
        let b = &slot.0[..];
        let kind = EventKind::from_u8(b[0]).ok_or(MsgError::UnknownKind(b[0]))?;
        let recv_hdr = |r: &RawRecvHdr| RecvHdr {
            src: src(r.peer, r.src_ep),
            seq: Seq {
                seqnum: r.seqnum.get(),
                piggyack: r.piggyack.get(),
            },
            match_info: r.match_info.get(),
        };
        Ok(match kind {
            EventKind::RecvTiny => {
                let r: RawRecvHdr = read(b);
                let len = r.length.get();
                if len as usize > TINY_INLINE_MAX {
                    return Err(MsgError::BadLength { kind: b[0], len });
                }
                Event::RecvTiny {
                    hdr: recv_hdr(&r),
                    data: &b[24..24 + len as usize],
                }
            }
            EventKind::RecvSmall => {
                let r: RawRecvData = read(b);
                let len = r.hdr.length.get();
                if len as usize > super::SMALL_INLINE_MAX {
                    return Err(MsgError::BadLength { kind: b[0], len });
                }
                Event::RecvSmall {
                    hdr: recv_hdr(&r.hdr),
                    length: len as u8,
                    recvq_slot: r.a.get(),
                }
            }
            EventKind::RecvMediumFrag => {
                let r: RawRecvData = read(b);
                let frag_length = r.c.get();
                let msg_length = r.hdr.length.get();
                if frag_length as usize > super::QUEUE_SLOT_SIZE || frag_length > msg_length {
                    return Err(MsgError::BadLength {
                        kind: b[0],
                        len: frag_length,
                    });
                }
                Event::RecvMediumFrag {
                    hdr: recv_hdr(&r.hdr),
                    msg_length,
                    frag_seqnum: r.b.get() as u8,
                    frag_length: frag_length as u16,
                    recvq_slot: r.a.get(),
                }
            }
            EventKind::RecvRndv => {
                let r: RawRecvData = read(b);
                let [id, seqnum] = r.a.get().to_le_bytes();
                Event::RecvRndv {
                    hdr: recv_hdr(&r.hdr),
                    msg_length: r.hdr.length.get(),
                    rdma: RdmaRef {
                        id,
                        seqnum,
                        offset: r.c.get(),
                    },
                }
            }
            EventKind::RecvNotify => {
                let r: RawRecvData = read(b);
                let [rdma_id, rdma_seqnum] = r.a.get().to_le_bytes();
                Event::RecvNotify {
                    src: src(r.hdr.peer, r.hdr.src_ep),
                    seq: Seq {
                        seqnum: r.hdr.seqnum.get(),
                        piggyack: r.hdr.piggyack.get(),
                    },
                    total_length: r.hdr.length.get(),
                    rdma_id,
                    rdma_seqnum,
                }
            }
            EventKind::RecvConnectRequest => {
                let r: RawConnect = read(b);
                Event::RecvConnectRequest {
                    src: src(r.peer, r.src_ep),
                    src_session: r.src_session.get(),
                    app_key: r.key_or_target.get(),
                    target_recv_seqnum_start: r.target_recv_seqnum_start.get(),
                    connect_seqnum: r.connect_seqnum,
                }
            }
            EventKind::RecvConnectReply => {
                let r: RawConnect = read(b);
                Event::RecvConnectReply {
                    src: src(r.peer, r.src_ep),
                    src_session: r.src_session.get(),
                    target_session: r.key_or_target.get(),
                    target_recv_seqnum_start: r.target_recv_seqnum_start.get(),
                    connect_seqnum: r.connect_seqnum,
                    status: r.status,
                }
            }
            EventKind::RecvLiback => {
                let r: RawLiback = read(b);
                Event::RecvLiback {
                    src: src(r.peer, r.src_ep),
                    lib_seqnum: r.lib_seqnum.get(),
                    send_seq: r.send_seq.get(),
                    acknum: r.acknum.get(),
                }
            }
            EventKind::RecvNackLib => {
                let r: RawNack = read(b);
                Event::RecvNackLib {
                    src: src(r.peer, r.peer_ep),
                    nack_type: NackKind::from_u8(r.nack_type)
                        .ok_or(MsgError::BadField("nack_type"))?,
                    lib_seqnum: r.lib_seqnum.get(),
                }
            }
            EventKind::SendMediumDone => {
                let r: RawDone = read(b);
                Event::SendMediumDone {
                    sendq_slot: r.slot.get(),
                }
            }
            EventKind::PullDone => {
                let r: RawDone = read(b);
                Event::PullDone {
                    cookie: r.cookie.get(),
                    status: PullStatus::from_u8(r.status)
                        .ok_or(MsgError::BadField("pull status"))?,
                    transferred: r.transferred.get(),
                }
            }
            EventKind::StageNeeded => {
                let r: RawStage = read(b);
                Event::StageNeeded {
                    region_id: r.region_id,
                    gen: r.gen,
                    slot: r.slot.get(),
                    block: r.block.get(),
                }
            }
            EventKind::CommandError => Event::CommandError {
                cmd_kind: b[1],
                code: CommandErrorCode::from_u8(b[2]).ok_or(MsgError::BadField("command error"))?,
            },
            EventKind::PeerClosed => Event::PeerClosed {
                channel: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            },
            EventKind::PeerOffer => {
                let r: RawPeer = read(b);
                Event::PeerOffer {
                    channel: r.channel.get(),
                    src: src(r.peer, r.src_ep),
                    session: r.session.get(),
                    sizes: crate::peer::PeerSizes {
                        msg_slots: r.msg_slots.get().into(),
                        data_slots: r.data_slots.get().into(),
                    },
                    pid: r.pid.get(),
                }
            }

            EventKind::PullDirect => {
                let r: RawDirect = read(b);
                let n = usize::from(r.nsegs);
                if n > DIRECT_SEGS_MAX {
                    return Err(MsgError::BadField("direct pull segment count"));
                }
                let mut pieces = [(0u64, 0u32); DIRECT_SEGS_MAX];
                for (p, s) in pieces.iter_mut().zip(&r.segs[..n]) {
                    *p = (s.addr.get(), s.len.get());
                }
                Event::PullDirect {
                    cookie: r.cookie.get(),
                    pid: r.pid.get(),
                    segs: DirectSegs {
                        segs: pieces,
                        n: r.nsegs,
                    },
                }
            }
        })
    }

    /// Write this event into `slot` (whole-slot store: unused bytes zeroed).
    ///
    /// # Errors
    /// [`MsgError::BadLength`] if a tiny payload exceeds 32 bytes.
    pub fn emit(&self, slot: &mut EvtSlot) -> Result<(), MsgError> {
        slot.0.fill(0);
        let b = &mut slot.0[..];
        fn put<T: IntoBytes + Immutable>(b: &mut [u8], v: &T) {
            let s = v.as_bytes();
            b[..s.len()].copy_from_slice(s);
        }
        let data = |kind, hdr: &RecvHdr, length: u32, a: u16, bb: u16, c: u32| RawRecvData {
            hdr: raw_recv(kind, hdr, length),
            a: a.into(),
            b: bb.into(),
            c: c.into(),
        };
        match self {
            Event::RecvTiny { hdr, data } => {
                if data.len() > TINY_INLINE_MAX {
                    return Err(MsgError::BadLength {
                        kind: EventKind::RecvTiny as u8,
                        len: data.len() as u32,
                    });
                }
                put(b, &raw_recv(EventKind::RecvTiny, hdr, data.len() as u32));
                b[24..24 + data.len()].copy_from_slice(data);
            }
            Event::RecvSmall {
                hdr,
                length,
                recvq_slot,
            } => put(
                b,
                &data(
                    EventKind::RecvSmall,
                    hdr,
                    (*length).into(),
                    *recvq_slot,
                    0,
                    0,
                ),
            ),
            Event::RecvMediumFrag {
                hdr,
                msg_length,
                frag_seqnum,
                frag_length,
                recvq_slot,
            } => put(
                b,
                &data(
                    EventKind::RecvMediumFrag,
                    hdr,
                    *msg_length,
                    *recvq_slot,
                    (*frag_seqnum).into(),
                    (*frag_length).into(),
                ),
            ),
            Event::RecvRndv {
                hdr,
                msg_length,
                rdma,
            } => put(
                b,
                &data(
                    EventKind::RecvRndv,
                    hdr,
                    *msg_length,
                    u16::from_le_bytes([rdma.id, rdma.seqnum]),
                    0,
                    rdma.offset,
                ),
            ),
            Event::RecvNotify {
                src,
                seq,
                total_length,
                rdma_id,
                rdma_seqnum,
            } => {
                let hdr = RecvHdr {
                    src: *src,
                    seq: *seq,
                    match_info: 0,
                };
                put(
                    b,
                    &data(
                        EventKind::RecvNotify,
                        &hdr,
                        *total_length,
                        u16::from_le_bytes([*rdma_id, *rdma_seqnum]),
                        0,
                        0,
                    ),
                )
            }
            Event::RecvConnectRequest {
                src,
                src_session,
                app_key,
                target_recv_seqnum_start,
                connect_seqnum,
            } => put(
                b,
                &RawConnect {
                    kind: EventKind::RecvConnectRequest as u8,
                    src_ep: src.endpoint,
                    peer: src.peer.into(),
                    src_session: (*src_session).into(),
                    key_or_target: (*app_key).into(),
                    target_recv_seqnum_start: (*target_recv_seqnum_start).into(),
                    connect_seqnum: *connect_seqnum,
                    status: 0,
                },
            ),
            Event::RecvConnectReply {
                src,
                src_session,
                target_session,
                target_recv_seqnum_start,
                connect_seqnum,
                status,
            } => put(
                b,
                &RawConnect {
                    kind: EventKind::RecvConnectReply as u8,
                    src_ep: src.endpoint,
                    peer: src.peer.into(),
                    src_session: (*src_session).into(),
                    key_or_target: (*target_session).into(),
                    target_recv_seqnum_start: (*target_recv_seqnum_start).into(),
                    connect_seqnum: *connect_seqnum,
                    status: *status,
                },
            ),
            Event::RecvLiback {
                src,
                lib_seqnum,
                send_seq,
                acknum,
            } => put(
                b,
                &RawLiback {
                    kind: EventKind::RecvLiback as u8,
                    src_ep: src.endpoint,
                    peer: src.peer.into(),
                    lib_seqnum: (*lib_seqnum).into(),
                    send_seq: (*send_seq).into(),
                    acknum: (*acknum).into(),
                    resent: 0,
                    _pad: [0; 3],
                },
            ),
            Event::RecvNackLib {
                src,
                nack_type,
                lib_seqnum,
            } => put(
                b,
                &RawNack {
                    kind: EventKind::RecvNackLib as u8,
                    peer_ep: src.endpoint,
                    peer: src.peer.into(),
                    nack_type: *nack_type as u8,
                    _pad: 0,
                    lib_seqnum: (*lib_seqnum).into(),
                },
            ),
            Event::SendMediumDone { sendq_slot } => put(
                b,
                &RawDone {
                    kind: EventKind::SendMediumDone as u8,
                    status: 0,
                    slot: (*sendq_slot).into(),
                    cookie: 0.into(),
                    transferred: 0.into(),
                },
            ),
            Event::PullDone {
                cookie,
                status,
                transferred,
            } => put(
                b,
                &RawDone {
                    kind: EventKind::PullDone as u8,
                    status: *status as u8,
                    slot: 0.into(),
                    cookie: (*cookie).into(),
                    transferred: (*transferred).into(),
                },
            ),
            Event::PullDirect { cookie, pid, segs } => {
                let mut raw = [RawDirectSeg {
                    addr: 0.into(),
                    len: 0.into(),
                    _pad: 0.into(),
                }; DIRECT_SEGS_MAX];
                for (r, &(addr, len)) in raw.iter_mut().zip(segs.segs()) {
                    r.addr = addr.into();
                    r.len = len.into();
                }
                put(
                    b,
                    &RawDirect {
                        kind: EventKind::PullDirect as u8,
                        nsegs: segs.n,
                        _pad: 0.into(),
                        cookie: (*cookie).into(),
                        pid: (*pid).into(),
                        _pad2: 0.into(),
                        segs: raw,
                    },
                )
            }
            Event::PeerOffer {
                channel,
                src,
                session,
                sizes,
                pid,
            } => put(
                b,
                &RawPeer {
                    kind: EventKind::PeerOffer as u8,
                    src_ep: src.endpoint,
                    peer: src.peer.into(),
                    channel: (*channel).into(),
                    session: (*session).into(),
                    msg_slots: u16::try_from(sizes.msg_slots)
                        .map_err(|_| MsgError::BadField("peer channel sizes"))?
                        .into(),
                    data_slots: u16::try_from(sizes.data_slots)
                        .map_err(|_| MsgError::BadField("peer channel sizes"))?
                        .into(),
                    pid: (*pid).into(),
                },
            ),
            Event::StageNeeded {
                region_id,
                gen,
                slot,
                block,
            } => put(
                b,
                &RawStage {
                    kind: EventKind::StageNeeded as u8,
                    region_id: *region_id,
                    gen: *gen,
                    _pad: 0,
                    slot: (*slot).into(),
                    _pad1: 0.into(),
                    block: (*block).into(),
                },
            ),
            Event::PeerClosed { channel } => {
                b[0] = EventKind::PeerClosed as u8;
                b[4..8].copy_from_slice(&channel.to_le_bytes());
            }
            Event::CommandError { cmd_kind, code } => {
                b[0] = EventKind::CommandError as u8;
                b[1] = *cmd_kind;
                b[2] = *code as u8;
            }
        }
        Ok(())
    }
}
