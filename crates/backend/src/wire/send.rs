//! Commands to remote peers become frames, and so do commands between two
//! endpoints of this host when one of them asked for the network path
//! (`MX_DISABLE_SHMEM`): those frames are addressed to our own MAC and
//! the NIC seam keeps them on the loopback ([`super::loopback`]).
//!
//! The head is addressed to the peer's MAC, from ours, with the peer's
//! index for us if we learned it ([`PeerIndex::UNKNOWN`] otherwise). The
//! type header is filled from the command's fields; TINY and SMALL data
//! follow from the (private) command copy, a MEDIUM fragment straight from
//! the guest's send-queue slot ([`Payload::Shared`], no copy in the
//! backend), after which the slot is handed back with `SendMediumDone`.
//! The frames leave at the end of the pass (one NIC flush per pass), and
//! the events are published after that flush.
//!
//! A frame the NIC refuses is counted and forgotten: the library
//! retransmits. A command whose fields do not encode (a fragment that
//! disagrees with the profile, a window offset too large for the `mx`
//! header) is answered with `CommandError`.

use super::{count_sent, send_encoded, RegionOf, Wire};
use crate::counters::{Counter, NicCounter};
use crate::endpoint::{Endpoint, Outcome};
use crate::endpoints::Endpoints;
use crate::nic::Payload;
use crate::peers::PeerTable;
use crate::pull::PullSpec;
use mx_proto::msg::command::{Pull, SendHdr};
use mx_proto::msg::event::{CommandErrorCode, PullStatus};
use mx_proto::msg::{Command, Dest, Event, QUEUE_SLOT_SIZE};
use mx_proto::platform::HostPlatform;
use mxoe_wire::packet::{ConnectReply, ConnectRequest, MediumFrag, Msg, Notify, Rndv, Truc};
use mxoe_wire::{
    ConnectStatus, EndpointId, Frame, LibSeqnum, MatchInfo, Packet, PeerIndex, SessionId,
};
use std::time::Instant;

/// What sending a command needs besides the endpoints (lent by the pass).
pub struct SendEnv<'a, H: HostPlatform> {
    /// The wire side.
    pub wire: &'a mut Wire<H>,
    /// The peer table (MACs, reverse indexes, whether a peer is us).
    pub peers: &'a PeerTable,
    /// Time of this pass.
    pub now: Instant,
    /// Scratch for region resolution.
    pub segs: &'a mut Vec<(u64, usize)>,
}

fn msg<'p>(src: u8, h: &SendHdr, payload: &'p [u8]) -> Msg<'p> {
    Msg {
        dst_endpoint: EndpointId(h.dest.endpoint),
        src_endpoint: EndpointId(src),
        lib_seqnum: LibSeqnum(h.seq.seqnum),
        lib_piggyack: LibSeqnum(h.seq.piggyack),
        match_info: MatchInfo(h.match_info),
        session: SessionId(h.session),
        payload,
    }
}

/// Send a command of endpoint `src_id` whose destination `dest` is a
/// remote peer, or a local one reached through the network path.
pub fn command<H: HostPlatform>(
    env: &mut SendEnv<'_, H>,
    eps: &mut Endpoints<H>,
    src_id: usize,
    cmd: &Command<'_>,
    dest: Dest,
) -> Outcome {
    let kind = cmd.kind();
    let Some(e) = eps.get_mut(src_id) else {
        return Outcome::Done;
    };
    // A local destination (the network path between two of our
    // endpoints) gets a head from us to us, which the port loops back.
    let Some(head) = super::head_for(env.peers, env.wire.st.mac, dest.peer) else {
        return e.reject(kind, CommandErrorCode::BadPeer);
    };
    if let Command::Pull(p) = cmd {
        return start_pull(env, eps, src_id, p, dest);
    }
    let Some(e) = eps.get_mut(src_id) else {
        return Outcome::Done;
    };
    let (mut port, st) = env.wire.port();
    let nic = &mut port;
    let src = src_id as u8;
    let (packet, payload, counter): (Packet<'_>, Payload<'_>, Counter) = match cmd {
        Command::Tiny { hdr, data } => (
            Packet::Tiny(msg(src, hdr, &[])),
            Payload::Bytes(data),
            Counter::TinySent,
        ),
        Command::Small { hdr, data } => (
            Packet::Small(msg(src, hdr, &[])),
            Payload::Bytes(data),
            Counter::SmallSent,
        ),
        Command::MediumFrag(m) => {
            let len = usize::from(m.frag_length);
            if u32::from(m.sendq_slot) >= e.chan.sendq_slots() || len > QUEUE_SLOT_SIZE {
                return e.reject(kind, CommandErrorCode::BadSendqSlot);
            }
            // Room for SendMediumDone first: the command happens whole or not at all.
            if !e.event_room(1) {
                e.counters.bump(Counter::BackPressured);
                return Outcome::Blocked;
            }
            let frame = Frame {
                head,
                packet: Packet::Medium(MediumFrag {
                    dst_endpoint: EndpointId(m.hdr.dest.endpoint),
                    src_endpoint: EndpointId(src),
                    lib_seqnum: LibSeqnum(m.hdr.seq.seqnum),
                    lib_piggyack: LibSeqnum(m.hdr.seq.piggyack),
                    match_info: MatchInfo(m.hdr.match_info),
                    session: SessionId(m.hdr.session),
                    msg_length: m.msg_length,
                    frag_seqnum: m.frag_seqnum,
                    payload: &[],
                }),
            };
            let mut hdr = [0u8; 64];
            let Ok(n) = mxoe_wire::emit_header(&st.profile, &frame, len, &mut hdr) else {
                // A fragment the profile forbids (length, seqnum, total).
                return e.reject(kind, CommandErrorCode::BadLength);
            };
            let payload = Payload::Shared {
                mem: &*e.pages,
                offset: e.sendq_off + usize::from(m.sendq_slot) * QUEUE_SLOT_SIZE,
                len,
            };
            if send_encoded(nic, &st.counters, &hdr[..n], &frame.packet, payload) {
                count_sent(e, Counter::MediumFragsSent, len);
            }
            // The NIC copied the slot (or does so by its flush, which comes
            // before this event is published): the slot is free again.
            e.post(&Event::SendMediumDone {
                sendq_slot: m.sendq_slot,
            });
            return Outcome::Done;
        }
        Command::Rndv(r) => {
            let Ok(offset) = u16::try_from(r.rdma.offset) else {
                return e.reject(kind, CommandErrorCode::BadLength);
            };
            let h = &r.hdr;
            (
                Packet::Rndv(Rndv {
                    dst_endpoint: EndpointId(h.dest.endpoint),
                    src_endpoint: EndpointId(src),
                    lib_seqnum: LibSeqnum(h.seq.seqnum),
                    lib_piggyack: LibSeqnum(h.seq.piggyack),
                    match_info: MatchInfo(h.match_info),
                    session: SessionId(h.session),
                    msg_length: r.msg_length,
                    pulled_rdma_id: r.rdma.id,
                    pulled_rdma_seqnum: r.rdma.seqnum,
                    pulled_rdma_offset: offset,
                }),
                Payload::None,
                Counter::RndvSent,
            )
        }
        Command::Notify(n) => (
            Packet::Notify(Notify {
                dst_endpoint: EndpointId(n.dest.endpoint),
                src_endpoint: EndpointId(src),
                session: SessionId(n.session),
                total_length: n.total_length,
                pulled_rdma_id: n.rdma_id,
                pulled_rdma_seqnum: n.rdma_seqnum,
                lib_seqnum: LibSeqnum(n.seq.seqnum),
                lib_piggyack: LibSeqnum(n.seq.piggyack),
            }),
            Payload::None,
            Counter::NotifySent,
        ),
        Command::ConnectRequest(c) => (
            Packet::ConnectRequest(ConnectRequest {
                dst_endpoint: EndpointId(c.dest.endpoint),
                src_endpoint: EndpointId(src),
                src_dst_peer_index: PeerIndex::new(dest.peer),
                src_session_id: SessionId(c.src_session),
                app_key: c.app_key,
                target_recv_seqnum_start: LibSeqnum(c.target_recv_seqnum_start),
                connect_seqnum: c.connect_seqnum,
            }),
            Payload::None,
            Counter::ConnectSent,
        ),
        Command::ConnectReply(c) => (
            Packet::ConnectReply(ConnectReply {
                dst_endpoint: EndpointId(c.dest.endpoint),
                src_endpoint: EndpointId(src),
                src_dst_peer_index: PeerIndex::new(dest.peer),
                src_session_id: SessionId(c.src_session),
                target_session_id: SessionId(c.target_session),
                target_recv_seqnum_start: LibSeqnum(c.target_recv_seqnum_start),
                connect_seqnum: c.connect_seqnum,
                status: ConnectStatus::from(c.status),
            }),
            Payload::None,
            Counter::ConnectSent,
        ),
        Command::Liback(l) => (
            Packet::Truc(Truc {
                dst_endpoint: EndpointId(l.dest.endpoint),
                src_endpoint: EndpointId(src),
                session: SessionId(l.session),
                lib_seqnum: LibSeqnum(l.lib_seqnum),
                session_id: SessionId(l.session),
                acknum: l.acknum,
                send_seq: LibSeqnum(l.send_seq),
                resent: l.resent,
            }),
            Payload::None,
            Counter::LibackSent,
        ),
        Command::Pull(_)
        | Command::RegionRegister(_)
        | Command::RegionDeregister { .. }
        | Command::RegionWindow(_)
        | Command::RegionStage(_)
        | Command::PeerHello(_)
        | Command::PullGrant(_) => return Outcome::Done,
    };
    let frame = Frame { head, packet };
    let bytes = payload.len();
    let mut hdr = [0u8; 64];
    let Ok(n) = mxoe_wire::emit_header(&st.profile, &frame, bytes, &mut hdr) else {
        return e.reject(kind, CommandErrorCode::BadLength);
    };
    if send_encoded(nic, &st.counters, &hdr[..n], &frame.packet, payload) {
        count_sent(e, counter, bytes);
    }
    Outcome::Done
}

/// `Pull` from a remote sender: check our region, then hand the pull to
/// the endpoint's pull engine (its first requests leave this pass).
fn start_pull<H: HostPlatform>(
    env: &mut SendEnv<'_, H>,
    eps: &mut Endpoints<H>,
    src_id: usize,
    p: &Pull,
    dest: Dest,
) -> Outcome {
    let Some(e) = eps.get_mut(src_id) else {
        return Outcome::Done;
    };
    let st = &mut env.wire.st;
    if !e.event_room(1) {
        // Every outcome below may need the ring for PullDone.
        e.counters.bump(Counter::BackPressured);
        return Outcome::Blocked;
    }
    let done = |e: &mut Endpoint<H>, status: PullStatus| {
        if status == PullStatus::Success {
            e.counters.bump(Counter::PullsDone);
        } else {
            e.counters.bump(Counter::PullsFailed);
        }
        e.post(&Event::PullDone {
            cookie: p.cookie,
            status,
            transferred: 0,
        });
        Outcome::Done
    };
    if p.length == 0 {
        return done(e, PullStatus::Success);
    }
    if e.regions
        .resolve(
            p.local_region,
            u64::from(p.local_offset),
            u64::from(p.length),
            env.segs,
        )
        .is_err()
    {
        return done(e, PullStatus::BadLocalRegion);
    }
    if st.profile.is_mx() && p.remote.offset > u32::from(u16::MAX) {
        return done(e, PullStatus::BadRdmaWindow);
    }
    let region_of = st.region_of;
    let segs: Vec<RegionOf<H>> = env.segs.iter().map(|&(a, l)| region_of(a, l)).collect();
    let spec = PullSpec {
        cookie: p.cookie,
        peer: dest.peer,
        remote_ep: dest.endpoint,
        session: p.session,
        rdma_id: p.remote.id,
        rdma_seqnum: p.remote.seqnum,
        rdma_offset: p.remote.offset,
        length: p.length,
    };
    let Some(table) = st.pulls.get_mut(src_id) else {
        return Outcome::Done;
    };
    if table
        .start(env.now, &st.pull_timing, spec, segs, &mut st.reqs)
        .is_none()
    {
        // All 1024 handles busy: retry the command later.
        e.counters.bump(Counter::BackPressured);
        return Outcome::Blocked;
    }
    st.counters.bump(NicCounter::PullsStarted);
    st.take_requests();
    let at = env.now + st.pull_timing.resend;
    st.timer_by(at);
    Outcome::Done
}
