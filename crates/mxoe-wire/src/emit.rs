//! Encoders: write a [`Frame`] into the caller's buffer, whole or header only.

use zerocopy::network_endian::{U16, U32};
use zerocopy::IntoBytes;

use crate::error::EmitError;
use crate::headers::{
    ConnectReplyHeader, ConnectRequestHeader, EthHead, HostQueryHeader, HostReplyHeader,
    MediumHeaderMx, MediumHeaderOmx, MsgHeader, NackLibHeader, NackMcpHeader, NotifyHeader,
    PullHeaderMx, PullHeaderOmx, PullReplyHeader, RndvHeader, TrucHeader,
};
use crate::packet::{
    check_medium, check_pull, check_pull_reply, check_small, check_tiny, Frame, MediumFrag, Packet,
    Pull,
};
use crate::profile::WireProfile;
use crate::types::{LibSeqnum, MatchInfo, PacketType, SessionId};
use crate::{
    CONNECT_DATA_LEN, ETHERTYPE, ETH_ZLEN, HEAD_LEN, RNDV_DATA_LEN, TRUC_ACK, TRUC_ACK_LEN,
};

/// Sixty zero bytes, to send after a header-only frame's payload when the
/// frame is shorter than [`ETH_ZLEN`] (see [`pad_len`]).
pub static ZERO_PAD: [u8; ETH_ZLEN] = [0; ETH_ZLEN];

/// Zero bytes to append to a frame of `frame_len` bytes to reach the
/// Ethernet minimum of 60.
pub const fn pad_len(frame_len: usize) -> usize {
    ETH_ZLEN.saturating_sub(frame_len)
}

/// Encodes `frame` into `buf`: head, type header, payload, then zeros up to
/// 60 bytes. Writes exactly [`Packet::buffer_len`] bytes and returns that
/// length; bytes after it are left alone. Does not allocate.
///
/// # Errors
///
/// [`EmitError::Invalid`] if a receiver would reject the packet (the same
/// value rules as [`decode`](crate::decode), so what is written decodes back
/// to `frame`), [`EmitError::FieldOverflow`] if a value does not fit this
/// profile's layout, [`EmitError::BufferTooSmall`] if `buf` is shorter than
/// the frame. Nothing useful is written on error.
pub fn emit(profile: &WireProfile, frame: &Frame<'_>, buf: &mut [u8]) -> Result<usize, EmitError> {
    let payload = frame.packet.payload();
    validate(profile, &frame.packet, payload.len())?;
    let total = frame.packet.buffer_len(profile);
    let available = buf.len();
    let out = buf.get_mut(..total).ok_or(EmitError::BufferTooSmall {
        needed: total,
        available,
    })?;
    let header_len = write_header(profile, frame, payload.len(), out)?;
    let (body, pad) = out[header_len..].split_at_mut(payload.len());
    body.copy_from_slice(payload);
    pad.fill(0);
    Ok(total)
}

/// Encodes only the head and the type header of `frame`, as if followed by
/// a payload of `payload_len` bytes that the caller sends from elsewhere
/// (an iovec pointing at a shared-memory slot, say), and returns the header
/// length ([`Packet::header_len`]).
///
/// The packet's own payload slice is not read: build it with `&[]`. The
/// caller then sends `buf[..n]`, the payload, and [`pad_len`]`(n +
/// payload_len)` bytes of [`ZERO_PAD`]. For types without a separate
/// payload (everything but RAW, TINY, SMALL, MEDIUM, PULL_REPLY)
/// `payload_len` must be 0 and the result is the whole unpadded frame.
///
/// # Errors
///
/// As [`emit`], with the checks applied to `payload_len`, plus
/// [`EmitError::UnexpectedPayload`] for a payload on a type that has none.
pub fn emit_header(
    profile: &WireProfile,
    frame: &Frame<'_>,
    payload_len: usize,
    buf: &mut [u8],
) -> Result<usize, EmitError> {
    if !frame.packet.has_payload() && payload_len != 0 {
        return Err(EmitError::UnexpectedPayload(payload_len));
    }
    validate(profile, &frame.packet, payload_len)?;
    let needed = frame.packet.header_len(profile);
    let available = buf.len();
    let out = buf
        .get_mut(..needed)
        .ok_or(EmitError::BufferTooSmall { needed, available })?;
    write_header(profile, frame, payload_len, out)
}

/// The value rules a receiver applies, for a payload of `payload_len` bytes.
fn validate(
    profile: &WireProfile,
    packet: &Packet<'_>,
    payload_len: usize,
) -> Result<(), EmitError> {
    match packet {
        Packet::Tiny(_) => check_tiny(payload_len)?,
        Packet::Small(_) => check_small(payload_len)?,
        Packet::Medium(m) => check_medium(profile, m.msg_length, m.frag_seqnum, payload_len)?,
        Packet::Pull(p) => check_pull(profile, p.first_frame_offset, p.block_length)?,
        Packet::PullReply(_) => check_pull_reply(profile, payload_len)?,
        _ => {}
    }
    Ok(())
}

/// A value that must fit in 8 bits.
fn fit8(field: &'static str, value: u32) -> Result<u8, EmitError> {
    u8::try_from(value).map_err(|_| EmitError::FieldOverflow {
        field,
        value: value.into(),
    })
}

/// A value that must fit in 16 bits.
fn fit16(field: &'static str, value: usize) -> Result<u16, EmitError> {
    u16::try_from(value).map_err(|_| EmitError::FieldOverflow {
        field,
        value: value as u64,
    })
}

/// Writes a zerocopy header at the start of `dst`.
fn put<T: IntoBytes + zerocopy::Immutable>(header: &T, dst: &mut [u8]) -> Result<(), EmitError> {
    let needed = core::mem::size_of::<T>();
    header
        .write_to_prefix(dst)
        .map_err(|_| EmitError::BufferTooSmall {
            needed,
            available: dst.len(),
        })
}

/// The MSG header shared by TINY, SMALL and RNDV.
#[allow(clippy::too_many_arguments)]
fn msg_header(
    ptype: PacketType,
    dst_endpoint: u8,
    src_endpoint: u8,
    length: u16,
    lib_seqnum: LibSeqnum,
    lib_piggyack: LibSeqnum,
    match_info: MatchInfo,
    session: SessionId,
) -> MsgHeader {
    MsgHeader {
        ptype: ptype.into(),
        dst_endpoint,
        src_endpoint,
        length: U16::new(length),
        lib_seqnum: U16::new(lib_seqnum.raw()),
        lib_piggyack: U16::new(lib_piggyack.raw()),
        match_a: U32::new(match_info.match_a()),
        match_b: U32::new(match_info.match_b()),
        session: U32::new(session.0),
        ..Default::default()
    }
}

/// Writes head and type header into `out` (exactly `header_len` bytes or
/// more); values were validated by the caller. Returns the header length.
fn write_header(
    profile: &WireProfile,
    frame: &Frame<'_>,
    payload_len: usize,
    out: &mut [u8],
) -> Result<usize, EmitError> {
    let packet = &frame.packet;
    let peer_index = if packet.uses_head_peer_index() {
        frame.head.peer_index.0
    } else {
        0
    };
    let head = EthHead {
        dst_mac: frame.head.dst,
        src_mac: frame.head.src,
        ethertype: U16::new(ETHERTYPE),
        dst_src_peer_index: U16::new(peer_index),
    };
    put(&head, out)?;
    let ptype: u8 = packet.packet_type().into();
    let available = out.len();
    let dst = out.get_mut(HEAD_LEN..).ok_or(EmitError::BufferTooSmall {
        needed: HEAD_LEN,
        available,
    })?;
    match packet {
        Packet::Raw(_) => put(&ptype, dst)?,
        Packet::HostQuery(q) => put(
            &HostQueryHeader {
                ptype,
                src_dst_peer_index: U16::new(q.src_dst_peer_index.0),
                magic: U32::new(q.magic),
                ..Default::default()
            },
            dst,
        )?,
        Packet::HostReply(r) => {
            let name = r.hostname.as_bytes();
            put(
                &HostReplyHeader {
                    ptype,
                    length: fit8("length", r.hostname.wire_len() as u32)?,
                    src_dst_peer_index: U16::new(r.src_dst_peer_index.0),
                    magic: U32::new(r.magic),
                    ..Default::default()
                },
                dst,
            )?;
            let needed = HostReplyHeader::LEN + name.len() + 1;
            let available = dst.len();
            let tail = dst
                .get_mut(HostReplyHeader::LEN..needed)
                .ok_or(EmitError::BufferTooSmall { needed, available })?;
            let (text, nul) = tail.split_at_mut(name.len());
            text.copy_from_slice(name);
            nul.fill(0);
        }
        Packet::Truc(t) => put(
            &TrucHeader {
                ptype,
                dst_endpoint: t.dst_endpoint.0,
                src_endpoint: t.src_endpoint.0,
                length: TRUC_ACK_LEN,
                session: U32::new(t.session.0),
                ack_type: TRUC_ACK,
                lib_seqnum: U16::new(t.lib_seqnum.raw()),
                session_id: U32::new(t.session_id.0),
                acknum: U32::new(t.acknum),
                send_seq: U16::new(t.send_seq.raw()),
                resent: t.resent,
                ..Default::default()
            },
            dst,
        )?,
        Packet::ConnectRequest(c) => put(
            &ConnectRequestHeader {
                ptype,
                dst_endpoint: c.dst_endpoint.0,
                src_endpoint: c.src_endpoint.0,
                length: CONNECT_DATA_LEN,
                lib_seqnum: U16::ZERO,
                src_dst_peer_index: U16::new(c.src_dst_peer_index.0),
                src_session_id: U32::new(c.src_session_id.0),
                app_key: U32::new(c.app_key),
                target_recv_seqnum_start: U16::new(c.target_recv_seqnum_start.raw()),
                is_reply: 0,
                connect_seqnum: c.connect_seqnum,
                ..Default::default()
            },
            dst,
        )?,
        Packet::ConnectReply(c) => put(
            &ConnectReplyHeader {
                ptype,
                dst_endpoint: c.dst_endpoint.0,
                src_endpoint: c.src_endpoint.0,
                length: CONNECT_DATA_LEN,
                lib_seqnum: U16::ZERO,
                src_dst_peer_index: U16::new(c.src_dst_peer_index.0),
                src_session_id: U32::new(c.src_session_id.0),
                target_session_id: U32::new(c.target_session_id.0),
                target_recv_seqnum_start: U16::new(c.target_recv_seqnum_start.raw()),
                is_reply: 1,
                connect_seqnum: c.connect_seqnum,
                connect_status_code: c.status.into(),
                ..Default::default()
            },
            dst,
        )?,
        Packet::Tiny(m) | Packet::Small(m) => put(
            &msg_header(
                packet.packet_type(),
                m.dst_endpoint.0,
                m.src_endpoint.0,
                fit16("length", payload_len)?,
                m.lib_seqnum,
                m.lib_piggyack,
                m.match_info,
                m.session,
            ),
            dst,
        )?,
        Packet::Medium(m) => write_medium(profile, m, payload_len, dst)?,
        Packet::Rndv(r) => put(
            &RndvHeader {
                msg: msg_header(
                    PacketType::Rndv,
                    r.dst_endpoint.0,
                    r.src_endpoint.0,
                    RNDV_DATA_LEN,
                    r.lib_seqnum,
                    r.lib_piggyack,
                    r.match_info,
                    r.session,
                ),
                msg_length: U32::new(r.msg_length),
                pulled_rdma_id: r.pulled_rdma_id,
                pulled_rdma_seqnum: r.pulled_rdma_seqnum,
                pulled_rdma_offset: U16::new(r.pulled_rdma_offset),
            },
            dst,
        )?,
        Packet::Pull(p) => write_pull(profile, p, dst)?,
        Packet::PullReply(r) => put(
            &PullReplyHeader {
                ptype,
                frame_seqnum: r.frame_seqnum,
                frame_length: U16::new(fit16("frame_length", payload_len)?),
                msg_offset: U32::new(r.msg_offset),
                dst_pull_handle: U32::new(r.dst_pull_handle.raw()),
                dst_magic: U32::new(r.dst_magic.raw()),
            },
            dst,
        )?,
        Packet::Notify(n) => put(
            &NotifyHeader {
                ptype,
                dst_endpoint: n.dst_endpoint.0,
                src_endpoint: n.src_endpoint.0,
                session: U32::new(n.session.0),
                total_length: U32::new(n.total_length),
                pulled_rdma_id: n.pulled_rdma_id,
                pulled_rdma_seqnum: n.pulled_rdma_seqnum,
                lib_seqnum: U16::new(n.lib_seqnum.raw()),
                lib_piggyack: U16::new(n.lib_piggyack.raw()),
                ..Default::default()
            },
            dst,
        )?,
        Packet::NackLib(n) => put(
            &NackLibHeader {
                ptype,
                src_endpoint: n.src_endpoint.0,
                nack_type: n.nack_type.into(),
                dst_endpoint: n.dst_endpoint.0,
                dst_src_peer_index: U16::new(n.dst_src_peer_index.0),
                lib_seqnum: U16::new(n.lib_seqnum.raw()),
                ..Default::default()
            },
            dst,
        )?,
        Packet::NackMcp(n) => put(
            &NackMcpHeader {
                ptype,
                src_endpoint: n.src_endpoint.0,
                nack_type: n.nack_type.into(),
                src_pull_handle: U32::new(n.src_pull_handle.raw()),
                src_magic: U32::new(n.src_magic.raw()),
                ..Default::default()
            },
            dst,
        )?,
    }
    Ok(packet.header_len(profile))
}

fn write_medium(
    profile: &WireProfile,
    m: &MediumFrag<'_>,
    frag_len: usize,
    dst: &mut [u8],
) -> Result<(), EmitError> {
    let ptype = PacketType::Medium.into();
    let frag_length = U16::new(fit16("frag_length", frag_len)?);
    let lib_seqnum = U16::new(m.lib_seqnum.raw());
    let lib_piggyack = U16::new(m.lib_piggyack.raw());
    let match_a = U32::new(m.match_info.match_a());
    let match_b = U32::new(m.match_info.match_b());
    let session = U32::new(m.session.0);
    match profile.frag_pipeline() {
        Some(frag_pipeline) => put(
            &MediumHeaderMx {
                ptype,
                dst_endpoint: m.dst_endpoint.0,
                src_endpoint: m.src_endpoint.0,
                length: U16::new(fit16("length", m.msg_length as usize)?),
                lib_seqnum,
                lib_piggyack,
                match_a,
                match_b,
                session,
                frag_length,
                frag_seqnum: m.frag_seqnum,
                frag_pipeline,
                ..Default::default()
            },
            dst,
        ),
        None => put(
            &MediumHeaderOmx {
                ptype,
                dst_endpoint: m.dst_endpoint.0,
                src_endpoint: m.src_endpoint.0,
                length: U32::new(m.msg_length),
                lib_seqnum,
                lib_piggyack,
                match_a,
                match_b,
                session,
                frag_length,
                frag_seqnum: m.frag_seqnum,
                ..Default::default()
            },
            dst,
        ),
    }
}

fn write_pull(profile: &WireProfile, p: &Pull, dst: &mut [u8]) -> Result<(), EmitError> {
    let ptype = PacketType::Pull.into();
    if profile.is_mx() {
        put(
            &PullHeaderMx {
                ptype,
                dst_endpoint: p.dst_endpoint.0,
                src_endpoint: p.src_endpoint.0,
                session: U32::new(p.session.0),
                total_length: U32::new(p.total_length),
                pulled_rdma_id: fit8("pulled_rdma_id", p.pulled_rdma_id)?,
                pulled_rdma_seqnum: p.pulled_rdma_seqnum,
                pulled_rdma_offset: U16::new(fit16(
                    "pulled_rdma_offset",
                    p.pulled_rdma_offset as usize,
                )?),
                src_pull_handle: U32::new(p.src_pull_handle.raw()),
                src_magic: U32::new(p.src_magic.raw()),
                first_frame_offset: U16::new(fit16(
                    "first_frame_offset",
                    p.first_frame_offset as usize,
                )?),
                block_length: U16::new(fit16("block_length", p.block_length as usize)?),
                frame_index: U32::new(p.frame_index),
                ..Default::default()
            },
            dst,
        )
    } else {
        put(
            &PullHeaderOmx {
                ptype,
                dst_endpoint: p.dst_endpoint.0,
                src_endpoint: p.src_endpoint.0,
                session: U32::new(p.session.0),
                total_length: U32::new(p.total_length),
                pulled_rdma_id: U32::new(p.pulled_rdma_id),
                pulled_rdma_seqnum: p.pulled_rdma_seqnum,
                pulled_rdma_offset: U32::new(p.pulled_rdma_offset),
                src_pull_handle: U32::new(p.src_pull_handle.raw()),
                src_magic: U32::new(p.src_magic.raw()),
                first_frame_offset: U32::new(p.first_frame_offset),
                block_length: U32::new(p.block_length),
                frame_index: U32::new(p.frame_index),
                ..Default::default()
            },
            dst,
        )
    }
}
