//! The one decoder: frame bytes in, a validated [`Frame`] out.

use core::mem::size_of;

use zerocopy::FromBytes;

use crate::error::DecodeError;
use crate::headers::{
    ConnectReplyHeader, ConnectRequestHeader, EthHead, HostQueryHeader, HostReplyHeader,
    MediumHeaderMx, MediumHeaderOmx, MsgHeader, NackLibHeader, NackMcpHeader, NotifyHeader,
    PullHeaderMx, PullHeaderOmx, PullReplyHeader, RndvHeader, TrucHeader,
};
use crate::packet::{
    check_medium, check_pull, check_pull_reply, check_small, check_tiny, ConnectReply,
    ConnectRequest, Frame, Head, HostQuery, HostReply, MediumFrag, Msg, NackLib, NackMcp, Notify,
    Packet, Pull, PullReply, Raw, Rndv, Truc,
};
use crate::profile::WireProfile;
use crate::types::{
    ConnectStatus, EndpointId, Hostname, LibSeqnum, MatchInfo, NackType, PacketType, PeerIndex,
    PullHandle, PullMagic, SessionId,
};
use crate::{CONNECT_DATA_LEN, ETHERTYPE, HEAD_LEN, RNDV_DATA_LEN, TRUC_ACK, TRUC_ACK_LEN};

/// Decodes one received frame (Ethernet header onwards, no FCS; trailing
/// padding is fine) under `profile`.
///
/// Payloads in the result borrow from `frame`. Never panics, whatever the
/// bytes: every header is copied out of the frame before its values are
/// checked, and every length is checked against the bytes present.
///
/// # Errors
///
/// A [`DecodeError`] naming the first problem found: frame too short,
/// wrong EtherType, unknown or unsupported packet type, a declared length
/// larger than the frame, or a value the protocol forbids (TINY > 32,
/// SMALL > 128, MEDIUM fragment too long or out of range, bad hostname,
/// bad TRUC or CONNECT length, ...).
pub fn decode<'a>(profile: &WireProfile, frame: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
    let (eth, _) = EthHead::read_from_prefix(frame).map_err(|_| DecodeError::Truncated {
        needed: HEAD_LEN,
        available: frame.len(),
    })?;
    if eth.ethertype.get() != ETHERTYPE {
        return Err(DecodeError::BadEtherType(eth.ethertype.get()));
    }
    let head = Head {
        dst: eth.dst_mac,
        src: eth.src_mac,
        peer_index: PeerIndex(eth.dst_src_peer_index.get()),
    };
    let Some(&ptype) = frame.get(HEAD_LEN) else {
        return Err(DecodeError::Truncated {
            needed: HEAD_LEN + 1,
            available: frame.len(),
        });
    };
    let packet = match PacketType::from(ptype) {
        PacketType::Raw => Packet::Raw(Raw {
            data: frame.get(HEAD_LEN + 1..).unwrap_or_default(),
        }),
        PacketType::HostQuery => Packet::HostQuery(host_query(frame)?),
        PacketType::HostReply => Packet::HostReply(host_reply(frame)?),
        PacketType::Truc => Packet::Truc(truc(frame)?),
        PacketType::Connect => connect(frame)?,
        PacketType::Tiny => {
            let (m, len) = msg(frame)?;
            check_tiny(len)?;
            Packet::Tiny(m.with_payload(payload(frame, HEAD_LEN + MsgHeader::LEN, len)?))
        }
        PacketType::Small => {
            let (m, len) = msg(frame)?;
            check_small(len)?;
            Packet::Small(m.with_payload(payload(frame, HEAD_LEN + MsgHeader::LEN, len)?))
        }
        PacketType::Medium => Packet::Medium(medium(profile, frame)?),
        PacketType::Rndv => Packet::Rndv(rndv(frame)?),
        PacketType::Pull => Packet::Pull(pull(profile, frame)?),
        PacketType::PullReply => Packet::PullReply(pull_reply(profile, frame)?),
        PacketType::Notify => Packet::Notify(notify(frame)?),
        PacketType::NackLib => Packet::NackLib(nack_lib(frame)?),
        PacketType::NackMcp => Packet::NackMcp(nack_mcp(frame)?),
        PacketType::Unknown(t) => return Err(DecodeError::UnknownType(t)),
        t @ (PacketType::None
        | PacketType::MfmNicReply
        | PacketType::EtherUnicast
        | PacketType::EtherMulticast
        | PacketType::EtherNative) => return Err(DecodeError::UnsupportedType(t)),
    };
    Ok(Frame { head, packet })
}

/// Copies the type header `T` out of the frame (it starts at offset 16).
fn header<T: FromBytes>(frame: &[u8]) -> Result<T, DecodeError> {
    frame
        .get(HEAD_LEN..)
        .and_then(|rest| T::read_from_prefix(rest).ok())
        .map(|(h, _)| h)
        .ok_or(DecodeError::Truncated {
            needed: HEAD_LEN + size_of::<T>(),
            available: frame.len(),
        })
}

/// `len` bytes at frame offset `start`, or the error saying they are not all there.
fn payload(frame: &[u8], start: usize, len: usize) -> Result<&[u8], DecodeError> {
    let end = start.saturating_add(len);
    frame.get(start..end).ok_or(DecodeError::LengthBeyondFrame {
        declared: end,
        available: frame.len(),
    })
}

/// TINY/SMALL fields before their payload is known.
struct MsgFields {
    dst_endpoint: EndpointId,
    src_endpoint: EndpointId,
    lib_seqnum: LibSeqnum,
    lib_piggyack: LibSeqnum,
    match_info: MatchInfo,
    session: SessionId,
}

impl MsgFields {
    fn from_header(h: &MsgHeader) -> Self {
        Self {
            dst_endpoint: EndpointId(h.dst_endpoint),
            src_endpoint: EndpointId(h.src_endpoint),
            lib_seqnum: LibSeqnum(h.lib_seqnum.get()),
            lib_piggyack: LibSeqnum(h.lib_piggyack.get()),
            match_info: MatchInfo::from_parts(h.match_a.get(), h.match_b.get()),
            session: SessionId(h.session.get()),
        }
    }

    fn with_payload(self, payload: &[u8]) -> Msg<'_> {
        Msg {
            dst_endpoint: self.dst_endpoint,
            src_endpoint: self.src_endpoint,
            lib_seqnum: self.lib_seqnum,
            lib_piggyack: self.lib_piggyack,
            match_info: self.match_info,
            session: self.session,
            payload,
        }
    }
}

fn msg(frame: &[u8]) -> Result<(MsgFields, usize), DecodeError> {
    let h: MsgHeader = header(frame)?;
    Ok((MsgFields::from_header(&h), usize::from(h.length.get())))
}

fn rndv(frame: &[u8]) -> Result<Rndv, DecodeError> {
    let h: RndvHeader = header(frame)?;
    if h.msg.length.get() != RNDV_DATA_LEN {
        return Err(DecodeError::RndvLength(h.msg.length.get()));
    }
    let m = MsgFields::from_header(&h.msg);
    Ok(Rndv {
        dst_endpoint: m.dst_endpoint,
        src_endpoint: m.src_endpoint,
        lib_seqnum: m.lib_seqnum,
        lib_piggyack: m.lib_piggyack,
        match_info: m.match_info,
        session: m.session,
        msg_length: h.msg_length.get(),
        pulled_rdma_id: h.pulled_rdma_id,
        pulled_rdma_seqnum: h.pulled_rdma_seqnum,
        pulled_rdma_offset: h.pulled_rdma_offset.get(),
    })
}

fn medium<'a>(profile: &WireProfile, frame: &'a [u8]) -> Result<MediumFrag<'a>, DecodeError> {
    // Both layouts are 32 bytes and differ only in @4..8 and @27.
    let h: MediumHeaderOmx = header(frame)?;
    let msg_length = match profile.frag_pipeline() {
        Some(pipeline) => {
            let mx: MediumHeaderMx = header(frame)?;
            if mx.frag_pipeline != pipeline {
                return Err(DecodeError::FragPipeline(mx.frag_pipeline));
            }
            u32::from(mx.length.get())
        }
        None => h.length.get(),
    };
    let frag_len = usize::from(h.frag_length.get());
    check_medium(profile, msg_length, h.frag_seqnum, frag_len)?;
    Ok(MediumFrag {
        dst_endpoint: EndpointId(h.dst_endpoint),
        src_endpoint: EndpointId(h.src_endpoint),
        lib_seqnum: LibSeqnum(h.lib_seqnum.get()),
        lib_piggyack: LibSeqnum(h.lib_piggyack.get()),
        match_info: MatchInfo::from_parts(h.match_a.get(), h.match_b.get()),
        session: SessionId(h.session.get()),
        msg_length,
        frag_seqnum: h.frag_seqnum,
        payload: payload(frame, HEAD_LEN + MediumHeaderOmx::LEN, frag_len)?,
    })
}

fn pull(profile: &WireProfile, frame: &[u8]) -> Result<Pull, DecodeError> {
    let p = if profile.is_mx() {
        let h: PullHeaderMx = header(frame)?;
        Pull {
            dst_endpoint: EndpointId(h.dst_endpoint),
            src_endpoint: EndpointId(h.src_endpoint),
            session: SessionId(h.session.get()),
            total_length: h.total_length.get(),
            pulled_rdma_id: u32::from(h.pulled_rdma_id),
            pulled_rdma_seqnum: h.pulled_rdma_seqnum,
            pulled_rdma_offset: u32::from(h.pulled_rdma_offset.get()),
            src_pull_handle: PullHandle::from_raw(h.src_pull_handle.get()),
            src_magic: PullMagic::from_raw(h.src_magic.get()),
            first_frame_offset: u32::from(h.first_frame_offset.get()),
            block_length: u32::from(h.block_length.get()),
            frame_index: h.frame_index.get(),
        }
    } else {
        let h: PullHeaderOmx = header(frame)?;
        Pull {
            dst_endpoint: EndpointId(h.dst_endpoint),
            src_endpoint: EndpointId(h.src_endpoint),
            session: SessionId(h.session.get()),
            total_length: h.total_length.get(),
            pulled_rdma_id: h.pulled_rdma_id.get(),
            pulled_rdma_seqnum: h.pulled_rdma_seqnum,
            pulled_rdma_offset: h.pulled_rdma_offset.get(),
            src_pull_handle: PullHandle::from_raw(h.src_pull_handle.get()),
            src_magic: PullMagic::from_raw(h.src_magic.get()),
            first_frame_offset: h.first_frame_offset.get(),
            block_length: h.block_length.get(),
            frame_index: h.frame_index.get(),
        }
    };
    check_pull(profile, p.first_frame_offset, p.block_length)?;
    Ok(p)
}

fn pull_reply<'a>(profile: &WireProfile, frame: &'a [u8]) -> Result<PullReply<'a>, DecodeError> {
    let h: PullReplyHeader = header(frame)?;
    let len = usize::from(h.frame_length.get());
    check_pull_reply(profile, len)?;
    Ok(PullReply {
        frame_seqnum: h.frame_seqnum,
        msg_offset: h.msg_offset.get(),
        dst_pull_handle: PullHandle::from_raw(h.dst_pull_handle.get()),
        dst_magic: PullMagic::from_raw(h.dst_magic.get()),
        payload: payload(frame, HEAD_LEN + PullReplyHeader::LEN, len)?,
    })
}

fn notify(frame: &[u8]) -> Result<Notify, DecodeError> {
    let h: NotifyHeader = header(frame)?;
    Ok(Notify {
        dst_endpoint: EndpointId(h.dst_endpoint),
        src_endpoint: EndpointId(h.src_endpoint),
        session: SessionId(h.session.get()),
        total_length: h.total_length.get(),
        pulled_rdma_id: h.pulled_rdma_id,
        pulled_rdma_seqnum: h.pulled_rdma_seqnum,
        lib_seqnum: LibSeqnum(h.lib_seqnum.get()),
        lib_piggyack: LibSeqnum(h.lib_piggyack.get()),
    })
}

fn truc(frame: &[u8]) -> Result<Truc, DecodeError> {
    let h: TrucHeader = header(frame)?;
    if h.length != TRUC_ACK_LEN {
        return Err(DecodeError::TrucLength(h.length));
    }
    if h.ack_type != TRUC_ACK {
        return Err(DecodeError::TrucType(h.ack_type));
    }
    Ok(Truc {
        dst_endpoint: EndpointId(h.dst_endpoint),
        src_endpoint: EndpointId(h.src_endpoint),
        session: SessionId(h.session.get()),
        lib_seqnum: LibSeqnum(h.lib_seqnum.get()),
        session_id: SessionId(h.session_id.get()),
        acknum: h.acknum.get(),
        send_seq: LibSeqnum(h.send_seq.get()),
        resent: h.resent,
    })
}

fn connect(frame: &[u8]) -> Result<Packet<'static>, DecodeError> {
    // Request and reply share the first 16 bytes and `is_reply` @26.
    let req: ConnectRequestHeader = header(frame)?;
    if req.length != CONNECT_DATA_LEN {
        return Err(DecodeError::ConnectLength(req.length));
    }
    if req.is_reply == 0 {
        return Ok(Packet::ConnectRequest(ConnectRequest {
            dst_endpoint: EndpointId(req.dst_endpoint),
            src_endpoint: EndpointId(req.src_endpoint),
            src_dst_peer_index: PeerIndex(req.src_dst_peer_index.get()),
            src_session_id: SessionId(req.src_session_id.get()),
            app_key: req.app_key.get(),
            target_recv_seqnum_start: LibSeqnum(req.target_recv_seqnum_start.get()),
            connect_seqnum: req.connect_seqnum,
        }));
    }
    let rep: ConnectReplyHeader = header(frame)?;
    Ok(Packet::ConnectReply(ConnectReply {
        dst_endpoint: EndpointId(rep.dst_endpoint),
        src_endpoint: EndpointId(rep.src_endpoint),
        src_dst_peer_index: PeerIndex(rep.src_dst_peer_index.get()),
        src_session_id: SessionId(rep.src_session_id.get()),
        target_session_id: SessionId(rep.target_session_id.get()),
        target_recv_seqnum_start: LibSeqnum(rep.target_recv_seqnum_start.get()),
        connect_seqnum: rep.connect_seqnum,
        status: ConnectStatus::from(rep.connect_status_code),
    }))
}

fn nack_lib(frame: &[u8]) -> Result<NackLib, DecodeError> {
    let h: NackLibHeader = header(frame)?;
    Ok(NackLib {
        src_endpoint: EndpointId(h.src_endpoint),
        dst_endpoint: EndpointId(h.dst_endpoint),
        nack_type: NackType::from(h.nack_type),
        dst_src_peer_index: PeerIndex(h.dst_src_peer_index.get()),
        lib_seqnum: LibSeqnum(h.lib_seqnum.get()),
    })
}

fn nack_mcp(frame: &[u8]) -> Result<NackMcp, DecodeError> {
    let h: NackMcpHeader = header(frame)?;
    Ok(NackMcp {
        src_endpoint: EndpointId(h.src_endpoint),
        nack_type: NackType::from(h.nack_type),
        src_pull_handle: PullHandle::from_raw(h.src_pull_handle.get()),
        src_magic: PullMagic::from_raw(h.src_magic.get()),
    })
}

fn host_query(frame: &[u8]) -> Result<HostQuery, DecodeError> {
    let h: HostQueryHeader = header(frame)?;
    Ok(HostQuery {
        src_dst_peer_index: PeerIndex(h.src_dst_peer_index.get()),
        magic: h.magic.get(),
    })
}

fn host_reply(frame: &[u8]) -> Result<HostReply, DecodeError> {
    let h: HostReplyHeader = header(frame)?;
    let len = usize::from(h.length);
    if !(2..=crate::HOSTNAME_MAX).contains(&len) {
        return Err(DecodeError::HostnameLength(h.length));
    }
    let bytes = payload(frame, HEAD_LEN + HostReplyHeader::LEN, len)?;
    let Some((&0, name)) = bytes.split_last() else {
        return Err(DecodeError::HostnameNotTerminated);
    };
    let hostname = Hostname::new(name).map_err(|e| match e {
        crate::error::HostnameError::InteriorNul => DecodeError::HostnameInteriorNul,
        _ => DecodeError::HostnameLength(h.length),
    })?;
    Ok(HostReply {
        src_dst_peer_index: PeerIndex(h.src_dst_peer_index.get()),
        magic: h.magic.get(),
        hostname,
    })
}
