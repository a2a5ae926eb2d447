//! Typed, validated packets (the "Repr" layer), and the value rules that the
//! decoder and the encoders share.
//!
//! A [`Frame`] is a [`Head`] plus a [`Packet`]. Payload-carrying packets
//! borrow their payload from the frame they were decoded from (or from the
//! caller's data when encoding); everything else is a small `Copy` value.
//!
//! Fields the reference sender never initialises (pads, `src_generation`,
//! `checksum`, the head peer index of PULL_REPLY and HOST_*) have no place
//! here: the decoder ignores them and the encoders write zeros.

use crate::error::DecodeError;
use crate::profile::WireProfile;
use crate::types::{
    ConnectStatus, EndpointId, Hostname, LibSeqnum, MatchInfo, NackType, PacketType, PeerIndex,
    PullHandle, PullMagic, SessionId,
};
use crate::{ETH_ZLEN, HEAD_LEN, SMALL_MAX, TINY_MAX};

pub use crate::decode::decode;
pub use crate::emit::{emit, emit_header, pad_len, ZERO_PAD};

/// The 16-byte head of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// `dst_src_peer_index`: the receiver's peer index for the sender
    /// ([`PeerIndex::UNKNOWN`] when not known). Written as 0 for PULL_REPLY,
    /// HOST_QUERY and HOST_REPLY (see [`Packet::uses_head_peer_index`]).
    pub peer_index: PeerIndex,
}

/// A whole frame: head and packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The head.
    pub head: Head,
    /// The packet after it.
    pub packet: Packet<'a>,
}

/// Every packet type Open-MX handles, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// RAW (1): mapper traffic, opaque here (see [`crate::mapper`]).
    Raw(Raw<'a>),
    /// HOST_QUERY (3).
    HostQuery(HostQuery),
    /// HOST_REPLY (4).
    HostReply(HostReply),
    /// TRUC (35) carrying a library ack.
    Truc(Truc),
    /// CONNECT (36) request (`is_reply` 0).
    ConnectRequest(ConnectRequest),
    /// CONNECT (36) reply (`is_reply` non-zero).
    ConnectReply(ConnectReply),
    /// TINY (37): at most 32 bytes.
    Tiny(Msg<'a>),
    /// SMALL (38): at most 128 bytes.
    Small(Msg<'a>),
    /// MEDIUM (39): one fragment.
    Medium(MediumFrag<'a>),
    /// RNDV (40).
    Rndv(Rndv),
    /// PULL (41).
    Pull(Pull),
    /// PULL_REPLY (42).
    PullReply(PullReply<'a>),
    /// NOTIFY (43).
    Notify(Notify),
    /// NACK_LIB (44).
    NackLib(NackLib),
    /// NACK_MCP (45).
    NackMcp(NackMcp),
}

/// A RAW packet: everything after the type byte, padding included, as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a> {
    /// Bytes from frame offset 17 to the end of the frame.
    pub data: &'a [u8],
}

/// HOST_QUERY: "what is your hostname?".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostQuery {
    /// The sender's peer index for the destination.
    pub src_dst_peer_index: PeerIndex,
    /// Query magic (initially [`HOST_QUERY_MAGIC`](crate::HOST_QUERY_MAGIC)).
    pub magic: u32,
}

/// HOST_REPLY: the answer to a HOST_QUERY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostReply {
    /// The sender's peer index for the destination.
    pub src_dst_peer_index: PeerIndex,
    /// The query's magic, echoed.
    pub magic: u32,
    /// The interface hostname (sent NUL-terminated after the header).
    pub hostname: Hostname,
}

/// TRUC carrying a library ack (data type 0x55).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Truc {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// Destination endpoint's session id (header @8; the back session).
    pub session: SessionId,
    /// The ack value (ack data @14).
    pub lib_seqnum: LibSeqnum,
    /// The partner's session id (ack data @16; the back session).
    pub session_id: SessionId,
    /// Per-partner ack counter; acks whose acknum is not newer are ignored.
    pub acknum: u32,
    /// The ack value again (ack data @24).
    pub send_seq: LibSeqnum,
    /// Resent flag (the reference sends 0).
    pub resent: u8,
}

/// CONNECT request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectRequest {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// The sender's peer index for the destination.
    pub src_dst_peer_index: PeerIndex,
    /// The sender's session id.
    pub src_session_id: SessionId,
    /// The application key to check.
    pub app_key: u32,
    /// The seqnum the sender expects from the destination next.
    pub target_recv_seqnum_start: LibSeqnum,
    /// Per-partner connect counter.
    pub connect_seqnum: u8,
}

/// CONNECT reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectReply {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// The sender's peer index for the destination.
    pub src_dst_peer_index: PeerIndex,
    /// The requester's session id, echoed.
    pub src_session_id: SessionId,
    /// The replier's session id.
    pub target_session_id: SessionId,
    /// The seqnum the replier expects from the requester next.
    pub target_recv_seqnum_start: LibSeqnum,
    /// The request's connect counter, echoed.
    pub connect_seqnum: u8,
    /// Outcome (`Unknown` values survive; the receiver ignores such replies).
    pub status: ConnectStatus,
}

/// TINY or SMALL message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msg<'a> {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// Library sequence number.
    pub lib_seqnum: LibSeqnum,
    /// Piggybacked ack.
    pub lib_piggyack: LibSeqnum,
    /// Match information.
    pub match_info: MatchInfo,
    /// Destination endpoint's session id.
    pub session: SessionId,
    /// The message (at frame offset 40; its length is the `length` field).
    pub payload: &'a [u8],
}

/// One MEDIUM fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MediumFrag<'a> {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// Library sequence number (the same for all fragments of a message).
    pub lib_seqnum: LibSeqnum,
    /// Piggybacked ack.
    pub lib_piggyack: LibSeqnum,
    /// Match information.
    pub match_info: MatchInfo,
    /// Destination endpoint's session id.
    pub session: SessionId,
    /// Total message length.
    pub msg_length: u32,
    /// Fragment number; its data goes at
    /// [`WireProfile::frag_offset`] in the message.
    pub frag_seqnum: u8,
    /// The fragment's data (at frame offset 48; its length is `frag_length`).
    pub payload: &'a [u8],
}

/// RNDV: announces a large message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rndv {
    /// Destination endpoint.
    pub dst_endpoint: EndpointId,
    /// Source endpoint.
    pub src_endpoint: EndpointId,
    /// Library sequence number.
    pub lib_seqnum: LibSeqnum,
    /// Piggybacked ack.
    pub lib_piggyack: LibSeqnum,
    /// Match information.
    pub match_info: MatchInfo,
    /// Destination endpoint's session id.
    pub session: SessionId,
    /// Total message length.
    pub msg_length: u32,
    /// The sender's RDMA window id.
    pub pulled_rdma_id: u8,
    /// The window's use counter.
    pub pulled_rdma_seqnum: u8,
    /// Offset in the window (Open-MX sends 0).
    pub pulled_rdma_offset: u16,
}

/// PULL: asks the sender of a large message for one block.
///
/// Fields are as wide as the `open-mx` layout; encoding for `mx` refuses
/// values its narrower fields cannot hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pull {
    /// Destination endpoint (the sender of the large message).
    pub dst_endpoint: EndpointId,
    /// Source endpoint (the puller).
    pub src_endpoint: EndpointId,
    /// Destination endpoint's session id (the puller's back session).
    pub session: SessionId,
    /// Bytes to pull in all.
    pub total_length: u32,
    /// RDMA window id (8 bits in `mx`).
    pub pulled_rdma_id: u32,
    /// RDMA window use counter (not checked by the replier).
    pub pulled_rdma_seqnum: u8,
    /// Offset in the window (16 bits in `mx`).
    pub pulled_rdma_offset: u32,
    /// The puller's handle, echoed in replies.
    pub src_pull_handle: PullHandle,
    /// The puller's magic, echoed in replies.
    pub src_magic: PullMagic,
    /// Offset of the data in the block's first reply frame (below the pull reply length).
    pub first_frame_offset: u32,
    /// Bytes of this block (`first_frame_offset + block_length` at most the block length).
    pub block_length: u32,
    /// Number of the block's first reply frame.
    pub frame_index: u32,
}

/// PULL_REPLY: one frame of pulled data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PullReply<'a> {
    /// Frame number mod 256.
    pub frame_seqnum: u8,
    /// Offset of the data in the message.
    pub msg_offset: u32,
    /// The puller's handle.
    pub dst_pull_handle: PullHandle,
    /// The puller's magic.
    pub dst_magic: PullMagic,
    /// The data (at frame offset 32; its length is `frame_length`).
    pub payload: &'a [u8],
}

/// NOTIFY: the puller is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Destination endpoint (the sender of the large message).
    pub dst_endpoint: EndpointId,
    /// Source endpoint (the puller).
    pub src_endpoint: EndpointId,
    /// Destination endpoint's session id (back session).
    pub session: SessionId,
    /// Bytes transferred (0 on error).
    pub total_length: u32,
    /// The RNDV's RDMA window id.
    pub pulled_rdma_id: u8,
    /// The RNDV's window use counter.
    pub pulled_rdma_seqnum: u8,
    /// Library sequence number.
    pub lib_seqnum: LibSeqnum,
    /// Piggybacked ack.
    pub lib_piggyack: LibSeqnum,
}

/// NACK_LIB: a library packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NackLib {
    /// The endpoint the nacked packet targeted.
    pub src_endpoint: EndpointId,
    /// The nacked packet's source endpoint.
    pub dst_endpoint: EndpointId,
    /// Why.
    pub nack_type: NackType,
    /// The nacked packet's head peer index (may be unknown).
    pub dst_src_peer_index: PeerIndex,
    /// The nacked packet's seqnum (0 for a CONNECT).
    pub lib_seqnum: LibSeqnum,
}

/// NACK_MCP: a PULL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NackMcp {
    /// The endpoint the PULL targeted.
    pub src_endpoint: EndpointId,
    /// Why.
    pub nack_type: NackType,
    /// The PULL's handle.
    pub src_pull_handle: PullHandle,
    /// The PULL's magic.
    pub src_magic: PullMagic,
}

impl Packet<'_> {
    /// The packet type byte written at frame offset 16.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Raw(_) => PacketType::Raw,
            Self::HostQuery(_) => PacketType::HostQuery,
            Self::HostReply(_) => PacketType::HostReply,
            Self::Truc(_) => PacketType::Truc,
            Self::ConnectRequest(_) | Self::ConnectReply(_) => PacketType::Connect,
            Self::Tiny(_) => PacketType::Tiny,
            Self::Small(_) => PacketType::Small,
            Self::Medium(_) => PacketType::Medium,
            Self::Rndv(_) => PacketType::Rndv,
            Self::Pull(_) => PacketType::Pull,
            Self::PullReply(_) => PacketType::PullReply,
            Self::Notify(_) => PacketType::Notify,
            Self::NackLib(_) => PacketType::NackLib,
            Self::NackMcp(_) => PacketType::NackMcp,
        }
    }

    /// The separately carried payload: TINY/SMALL message, MEDIUM fragment,
    /// PULL_REPLY data, RAW bytes; empty for every other type.
    pub const fn payload(&self) -> &[u8] {
        match self {
            Self::Raw(r) => r.data,
            Self::Tiny(m) | Self::Small(m) => m.payload,
            Self::Medium(m) => m.payload,
            Self::PullReply(r) => r.payload,
            _ => &[],
        }
    }

    /// True for the types whose payload [`emit_header`] leaves to the caller.
    pub const fn has_payload(&self) -> bool {
        matches!(
            self,
            Self::Raw(_) | Self::Tiny(_) | Self::Small(_) | Self::Medium(_) | Self::PullReply(_)
        )
    }

    /// False for PULL_REPLY, HOST_QUERY and HOST_REPLY, whose head peer
    /// index the reference never sets (written as 0, ignored on receive).
    pub const fn uses_head_peer_index(&self) -> bool {
        !matches!(
            self,
            Self::PullReply(_) | Self::HostQuery(_) | Self::HostReply(_)
        )
    }

    /// Bytes from the frame start to the payload: the head plus the type
    /// header (for HOST_REPLY this includes the hostname, which is not a
    /// separate payload).
    pub const fn header_len(&self, profile: &WireProfile) -> usize {
        HEAD_LEN
            + match self {
                Self::Raw(_) => 1,
                Self::HostQuery(_) => 16,
                Self::HostReply(h) => 16 + h.hostname.wire_len(),
                Self::Truc(_) => 28,
                Self::ConnectRequest(_) | Self::ConnectReply(_) => 32,
                Self::Tiny(_) | Self::Small(_) => 24,
                Self::Medium(_) | Self::Rndv(_) => 32,
                Self::Pull(_) => profile.pull_header_len(),
                Self::PullReply(_) => 16,
                Self::Notify(_) => 24,
                Self::NackLib(_) | Self::NackMcp(_) => 16,
            }
    }

    /// Frame length before padding: header plus payload.
    pub const fn frame_len(&self, profile: &WireProfile) -> usize {
        self.header_len(profile) + self.payload().len()
    }

    /// Bytes [`emit`] writes: the frame length padded to 60.
    pub const fn buffer_len(&self, profile: &WireProfile) -> usize {
        let n = self.frame_len(profile);
        if n < ETH_ZLEN {
            ETH_ZLEN
        } else {
            n
        }
    }
}

// ---- value rules shared by the decoder and the encoders ----

/// TINY: at most 32 bytes.
pub(crate) fn check_tiny(len: usize) -> Result<(), DecodeError> {
    if len > TINY_MAX {
        return Err(DecodeError::TinyTooLong(len));
    }
    Ok(())
}

/// SMALL: at most 128 bytes.
pub(crate) fn check_small(len: usize) -> Result<(), DecodeError> {
    if len > SMALL_MAX {
        return Err(DecodeError::SmallTooLong(len));
    }
    Ok(())
}

/// MEDIUM: fragment within the profile's limits and consistent with the
/// message length (every fragment full but the last).
pub(crate) fn check_medium(
    profile: &WireProfile,
    msg_len: u32,
    frag_seqnum: u8,
    frag_len: usize,
) -> Result<(), DecodeError> {
    let frag_max = profile.frag_max();
    if frag_len > frag_max as usize {
        return Err(DecodeError::FragTooLong {
            len: frag_len,
            max: frag_max,
        });
    }
    if u32::from(frag_seqnum) >= profile.frags_per_msg() {
        return Err(DecodeError::FragSeqnumOutOfRange {
            seqnum: frag_seqnum,
            max: profile.frags_per_msg(),
        });
    }
    if msg_len > profile.max_medium() {
        return Err(DecodeError::MediumTooLong {
            len: msg_len,
            max: profile.max_medium(),
        });
    }
    match profile.frag_len(msg_len, frag_seqnum) {
        Some(expected) if expected as usize == frag_len => Ok(()),
        _ => Err(DecodeError::FragMismatch {
            seqnum: frag_seqnum,
            len: frag_len,
            msg_len,
        }),
    }
}

/// PULL: the block starts inside the first reply frame and needs at most
/// `replies_per_block` frames.
pub(crate) fn check_pull(
    profile: &WireProfile,
    first_frame_offset: u32,
    block_length: u32,
) -> Result<(), DecodeError> {
    let r = profile.pull_reply_len();
    if first_frame_offset >= r {
        return Err(DecodeError::PullFrameOffset {
            offset: first_frame_offset,
            max: r,
        });
    }
    let end = u64::from(first_frame_offset) + u64::from(block_length);
    if end > u64::from(profile.block_len()) {
        return Err(DecodeError::PullBlockTooLarge {
            end,
            max: profile.block_len(),
        });
    }
    Ok(())
}

/// PULL_REPLY: at most one pull reply length of data.
pub(crate) fn check_pull_reply(profile: &WireProfile, len: usize) -> Result<(), DecodeError> {
    let max = profile.pull_reply_len();
    if len > max as usize {
        return Err(DecodeError::PullReplyTooLong { len, max });
    }
    Ok(())
}
