//! Received frames: decode, check, post the arrival event, or NACK.
//!
//! Order of the checks for one frame (each failure is counted per NIC
//! under its reason, never a panic):
//!
//! 1. [`mxoe_wire::decode`] under our profile: malformed, truncated,
//!    oversized-for-its-type, unknown types are dropped.
//! 2. Frames from our own MAC, and frames addressed to neither our MAC nor
//!    broadcast, are dropped; except on the loopback ([`Rx::looped`]),
//!    whose frames must be from our MAC to our MAC and come from the local
//!    peer.
//! 3. RAW (mapper), HOST_QUERY and HOST_REPLY go to discovery; RAW frames
//!    are also copied whole to the board's raw endpoint (dropped and
//!    counted when none is open or it is full).
//! 4. The sender must be a known peer ([`PeerTable::sender`]: the head's
//!    peer index if it names the source MAC, else the source MAC); data
//!    packets never add peers.
//! 5. Per type, the destination endpoint is checked ([`verdict`]): out of
//!    range → NACK BAD_ENDPT, not open → ENDPT_CLOSED, session mismatch →
//!    BAD_SESSION, as NACK_LIB (NACK_MCP for a PULL). TRUC never NACKs.
//! 6. A valid packet becomes the command its sender wrote
//!    ([`command_of`]), and that the event the intra-node path would post
//!    ([`mx_proto::msg::arrival::arrival`]), if
//!    the endpoint's event ring (and receive queue for SMALL and MEDIUM)
//!    has room; otherwise it is dropped and counted (the library
//!    retransmits): the NIC is never blocked for one guest.

use super::{RawRx, Tx, WireState};
use crate::counters::{Counter, NicCounter, NicCounters};
use crate::endpoints::Endpoints;
use crate::peers::PeerTable;
use crate::pull::Reject;
use crate::region::Ask;
use mx_proto::msg::arrival::{arrival, destination};
use mx_proto::msg::command::{self, Command, SendHdr};
use mx_proto::msg::event::{NackKind, PullStatus};
use mx_proto::msg::{Dest, Event, RdmaRef, Seq, Source};
use mx_proto::platform::{GuestMemory, HostPlatform};
use mxoe_wire::packet::{NackLib, NackMcp, Pull};
use mxoe_wire::pull::{reply_frame, PullBlock};
use mxoe_wire::{
    decode, ConnectStatus, DecodeError, EndpointId, Head, LibSeqnum, NackType, Packet, PeerIndex,
    BROADCAST_MAC,
};
use std::time::Instant;

/// Most looped-back PULLs held at once (more are dropped; their puller
/// asks again).
const HELD_MAX: usize = 4096;

/// A looped-back PULL of a window its (same-host) sender is still
/// registering, kept to be answered once the registration completes.
#[derive(Debug, Clone, Copy)]
pub struct HeldPull {
    /// When the PULL arrived.
    pub since: Instant,
    /// The puller's peer (this host).
    pub peer: u16,
    /// The request.
    pub pull: Pull,
}

/// The drop counter of a decode error.
pub fn decode_drop(e: &DecodeError) -> NicCounter {
    match e {
        DecodeError::Truncated { .. } => NicCounter::DropTruncated,
        DecodeError::BadEtherType(_) => NicCounter::DropBadEtherType,
        DecodeError::UnknownType(_) => NicCounter::DropUnknownType,
        DecodeError::UnsupportedType(_) | DecodeError::NotMapper(_) => {
            NicCounter::DropUnsupportedType
        }
        DecodeError::LengthBeyondFrame { .. } => NicCounter::DropLengthBeyondFrame,
        _ => NicCounter::DropBadValue,
    }
}

/// The counter of a received packet type.
pub fn rx_counter(p: &Packet<'_>) -> NicCounter {
    use NicCounter::*;
    match p {
        Packet::Raw(_) => RxRaw,
        Packet::HostQuery(_) => RxHostQuery,
        Packet::HostReply(_) => RxHostReply,
        Packet::Truc(_) => RxTruc,
        Packet::ConnectRequest(_) | Packet::ConnectReply(_) => RxConnect,
        Packet::Tiny(_) => RxTiny,
        Packet::Small(_) => RxSmall,
        Packet::Medium(_) => RxMedium,
        Packet::Rndv(_) => RxRndv,
        Packet::Pull(_) => RxPull,
        Packet::PullReply(_) => RxPullReply,
        Packet::Notify(_) => RxNotify,
        Packet::NackLib(_) => RxNackLib,
        Packet::NackMcp(_) => RxNackMcp,
    }
}

/// The destination check of spec section 9, on a table of `n` endpoint
/// ids where `session_of(i)` is the session of open endpoint `i`: the
/// endpoint index, or the NACK type to answer with. `session` is `None`
/// for packets that carry none (CONNECT).
pub fn verdict(
    n: usize,
    dst: EndpointId,
    session: Option<u32>,
    session_of: impl Fn(usize) -> Option<u32>,
) -> Result<usize, NackType> {
    let i = usize::from(dst.0);
    if i >= n {
        return Err(NackType::BadEndpt);
    }
    let Some(s) = session_of(i) else {
        return Err(NackType::EndptClosed);
    };
    if session.is_some_and(|want| want != s) {
        return Err(NackType::BadSession);
    }
    Ok(i)
}

/// The NACK_LIB answering a packet from `src_ep` to `dst_ep` with seqnum
/// `lib_seqnum` (0 for a CONNECT) whose head was `head` (spec section 4:
/// the fields are seen from the nacking side).
pub fn nack_lib(
    head: &Head,
    dst_ep: EndpointId,
    src_ep: EndpointId,
    lib_seqnum: LibSeqnum,
    nack_type: NackType,
) -> NackLib {
    NackLib {
        src_endpoint: dst_ep,
        dst_endpoint: src_ep,
        nack_type,
        dst_src_peer_index: head.peer_index,
        lib_seqnum,
    }
}

/// The NACK_MCP answering a PULL.
pub fn nack_mcp(p: &Pull, nack_type: NackType) -> NackMcp {
    NackMcp {
        src_endpoint: p.dst_endpoint,
        nack_type,
        src_pull_handle: p.src_pull_handle,
        src_magic: p.src_magic,
    }
}

/// The pull status a NACK_MCP type fails a pull with.
pub fn nack_status(t: NackType) -> PullStatus {
    match t {
        NackType::BadEndpt => PullStatus::BadEndpoint,
        NackType::EndptClosed => PullStatus::EndpointClosed,
        NackType::BadSession => PullStatus::BadSession,
        NackType::BadRdmaWin => PullStatus::BadRdmaWindow,
        NackType::None | NackType::Unknown(_) => PullStatus::Unreachable,
    }
}

fn nack_drop(t: NackType) -> NicCounter {
    match t {
        NackType::BadEndpt => NicCounter::DropBadEndpoint,
        NackType::EndptClosed => NicCounter::DropEndpointClosed,
        _ => NicCounter::DropBadSession,
    }
}

/// Whether a PULL asks for bytes inside its message: every reply frame of
/// the block must exist and end within `total_length`, and the message
/// within the window of `window_len` bytes.
pub fn pull_in_bounds(profile: &mxoe_wire::WireProfile, p: &Pull, window_len: u64) -> bool {
    if u64::from(p.pulled_rdma_offset) + u64::from(p.total_length) > window_len {
        return false;
    }
    let geo = PullBlock {
        first_frame_offset: p.first_frame_offset,
        block_length: p.block_length,
        frame_index: p.frame_index,
    };
    let n = geo.frames(profile);
    if n == 0 || n > profile.replies_per_block() {
        return false;
    }
    let first = reply_frame(profile, &geo, p.pulled_rdma_offset, 0);
    let last = reply_frame(profile, &geo, p.pulled_rdma_offset, n - 1);
    match (first, last) {
        (Some(_), Some(l)) => {
            u64::from(l.msg_offset) + u64::from(l.frame_length) <= u64::from(p.total_length)
        }
        _ => false,
    }
}

/// The peer index a rebuilt command names as its destination: the
/// sender's index for this host, which frames do not carry. Nothing on the
/// receive side reads it ([`arrival`] looks at the source the carrier
/// vouches for, never at the destination).
const DEST_PEER_UNCARRIED: u16 = 0;

/// The sender's send-queue slot of a medium fragment, which frames do not
/// carry (the receiver's copy lands in a receive-queue slot of its own).
const SENDQ_SLOT_UNCARRIED: u16 = 0;

/// The command a received message packet stands for: what its sender's
/// library wrote (the inverse of [`super::send::command`], but for the
/// destination's peer and the sender's send-queue slot, which frames do
/// not carry). `None` for the packets that are not messages to an
/// endpoint (pulls, NACKs, discovery). A CONNECT_REPLY of an unknown
/// status is the caller's to refuse.
pub fn command_of<'a>(packet: &Packet<'a>) -> Option<Command<'a>> {
    let dest = |ep: EndpointId| Dest {
        peer: DEST_PEER_UNCARRIED,
        endpoint: ep.0,
    };
    let send_hdr =
        |ep: EndpointId, session: u32, seqnum: u16, piggyack: u16, match_info: u64| SendHdr {
            dest: dest(ep),
            session,
            seq: Seq { seqnum, piggyack },
            match_info,
        };
    let hdr = |m: &mxoe_wire::packet::Msg<'_>| {
        send_hdr(
            m.dst_endpoint,
            m.session.0,
            m.lib_seqnum.raw(),
            m.lib_piggyack.raw(),
            m.match_info.0,
        )
    };
    Some(match *packet {
        Packet::Tiny(m) => Command::Tiny {
            hdr: hdr(&m),
            data: m.payload,
        },
        Packet::Small(m) => Command::Small {
            hdr: hdr(&m),
            data: m.payload,
        },
        Packet::Medium(m) => Command::MediumFrag(command::MediumFrag {
            hdr: send_hdr(
                m.dst_endpoint,
                m.session.0,
                m.lib_seqnum.raw(),
                m.lib_piggyack.raw(),
                m.match_info.0,
            ),
            msg_length: m.msg_length,
            frag_seqnum: m.frag_seqnum,
            // The decoder bounds the payload by the profile's fragment size.
            frag_length: m.payload.len() as u16,
            sendq_slot: SENDQ_SLOT_UNCARRIED,
        }),
        Packet::Rndv(r) => Command::Rndv(command::Rndv {
            hdr: send_hdr(
                r.dst_endpoint,
                r.session.0,
                r.lib_seqnum.raw(),
                r.lib_piggyack.raw(),
                r.match_info.0,
            ),
            msg_length: r.msg_length,
            rdma: RdmaRef {
                id: r.pulled_rdma_id,
                seqnum: r.pulled_rdma_seqnum,
                offset: u32::from(r.pulled_rdma_offset),
            },
        }),
        Packet::Notify(n) => Command::Notify(command::Notify {
            dest: dest(n.dst_endpoint),
            session: n.session.0,
            seq: Seq {
                seqnum: n.lib_seqnum.raw(),
                piggyack: n.lib_piggyack.raw(),
            },
            total_length: n.total_length,
            rdma_id: n.pulled_rdma_id,
            rdma_seqnum: n.pulled_rdma_seqnum,
        }),
        Packet::ConnectRequest(c) => Command::ConnectRequest(command::ConnectRequest {
            dest: dest(c.dst_endpoint),
            src_session: c.src_session_id.0,
            app_key: c.app_key,
            target_recv_seqnum_start: c.target_recv_seqnum_start.raw(),
            connect_seqnum: c.connect_seqnum,
        }),
        Packet::ConnectReply(c) => Command::ConnectReply(command::ConnectReply {
            dest: dest(c.dst_endpoint),
            src_session: c.src_session_id.0,
            target_session: c.target_session_id.0,
            target_recv_seqnum_start: c.target_recv_seqnum_start.raw(),
            connect_seqnum: c.connect_seqnum,
            status: u8::from(c.status),
        }),
        Packet::Truc(t) => Command::Liback(command::Liback {
            dest: dest(t.dst_endpoint),
            session: t.session.0,
            lib_seqnum: t.lib_seqnum.raw(),
            send_seq: t.send_seq.raw(),
            acknum: t.acknum,
            resent: t.resent,
        }),
        Packet::Raw(_)
        | Packet::HostQuery(_)
        | Packet::HostReply(_)
        | Packet::Pull(_)
        | Packet::PullReply(_)
        | Packet::NackLib(_)
        | Packet::NackMcp(_) => return None,
    })
}

/// What a pass lends the receive path.
pub struct Rx<'a, H: HostPlatform> {
    /// Wire state.
    pub st: &'a mut WireState<H>,
    /// Peers (discovery and reverse indexes update it).
    pub peers: &'a mut PeerTable,
    /// Endpoints by id.
    pub eps: &'a mut Endpoints<H>,
    /// The board's raw endpoint.
    pub raw: RawRx<'a, H>,
    /// Time of this pass.
    pub now: Instant,
    /// The frames come from our own loopback (the network path between
    /// two endpoints of this host), not from the NIC.
    pub looped: bool,
}

impl<H: HostPlatform> Rx<'_, H> {
    fn c(&self) -> &NicCounters {
        &self.st.counters
    }

    /// Handle one received frame.
    pub fn frame(&mut self, bytes: &[u8]) {
        self.c().bump(NicCounter::RxFrames);
        let f = match decode(&self.st.profile, bytes) {
            Ok(f) => f,
            Err(e) => {
                self.c().bump(decode_drop(&e));
                return;
            }
        };
        self.c().bump(rx_counter(&f.packet));
        let head = f.head;
        if self.looped {
            if head.src != self.st.mac || head.dst != self.st.mac {
                self.c().bump(NicCounter::DropNotForUs);
                return;
            }
        } else {
            if head.src == self.st.mac {
                self.c().bump(NicCounter::DropOwnFrame);
                return;
            }
            if head.dst != self.st.mac && head.dst != BROADCAST_MAC {
                self.c().bump(NicCounter::DropNotForUs);
                return;
            }
        }
        match f.packet {
            Packet::Raw(_) => {
                self.raw_endpoint(bytes);
                return self.mapper(bytes);
            }
            Packet::HostQuery(q) => return self.host_query(&head, q.src_dst_peer_index, q.magic),
            Packet::HostReply(r) => return self.host_reply(&head, &r),
            _ => {}
        }
        // The sender: a remote peer, or on the loopback this host itself
        // (a remote frame can never claim to be us: see above).
        let sender = if self.looped {
            self.peers
                .index_of_mac(head.src)
                .filter(|&i| self.peers.is_local(i))
        } else {
            self.peers.sender(&head).map(|s| s.index())
        };
        let Some(peer) = sender else {
            self.c().bump(NicCounter::DropUnknownSender);
            return;
        };
        match f.packet {
            Packet::Tiny(_)
            | Packet::Small(_)
            | Packet::Medium(_)
            | Packet::Rndv(_)
            | Packet::Notify(_)
            | Packet::ConnectRequest(_)
            | Packet::ConnectReply(_)
            | Packet::Truc(_) => self.message(&head, peer, &f.packet),
            Packet::NackLib(n) => {
                // Only the kinds a library acts on cross the channel (the
                // wire's others name no library message).
                let Some(kind) = NackKind::from_u8(u8::from(n.nack_type)) else {
                    self.st.counters.bump(NicCounter::DropBadValue);
                    return;
                };
                let i = usize::from(n.dst_endpoint.0);
                let Some(e) = self.eps.get_mut(i) else {
                    self.st.counters.bump(NicCounter::DropNackForNothing);
                    return;
                };
                if !e.event_room(1) {
                    e.counters.bump(Counter::DropEventRingFull);
                    self.st.counters.bump(NicCounter::DropEventRingFull);
                    return;
                }
                e.counters.bump(Counter::NacksReceived);
                e.post_received(&Event::RecvNackLib {
                    src: Source {
                        peer,
                        endpoint: n.src_endpoint.0,
                    },
                    nack_type: kind,
                    lib_seqnum: n.lib_seqnum.raw(),
                });
            }
            Packet::NackMcp(n) => {
                let ok = n.src_magic.endpoint().is_some_and(|ep| {
                    let i = usize::from(ep.0);
                    self.eps.is_open(i)
                        && self.st.pulls.get_mut(i).is_some_and(|t| {
                            t.nack(n.src_pull_handle, peer, nack_status(n.nack_type))
                        })
                });
                if !ok {
                    self.c().bump(NicCounter::DropNackForNothing);
                }
            }
            Packet::Pull(p) => self.pull(&head, peer, &p),
            Packet::PullReply(r) => {
                let Some(i) = r
                    .dst_magic
                    .endpoint()
                    .map(|ep| usize::from(ep.0))
                    .filter(|&i| self.eps.is_open(i))
                else {
                    self.c().bump(NicCounter::DropPullReplyStray);
                    return;
                };
                let st = &mut *self.st;
                let table = &mut st.pulls[i];
                match table.accept(
                    r.dst_pull_handle,
                    peer,
                    r.frame_seqnum,
                    r.msg_offset,
                    r.payload.len(),
                ) {
                    Err(Reject::Stray) => st.counters.bump(NicCounter::DropPullReplyStray),
                    Err(Reject::Duplicate) => st.counters.bump(NicCounter::DropPullReplyDuplicate),
                    Ok(acc) => {
                        let Some(e) = self.eps.get(i) else {
                            return;
                        };
                        if e.memory
                            .write(table.segs(acc.slot()), u64::from(r.msg_offset), r.payload)
                            .is_err()
                        {
                            table.fail(acc.slot(), PullStatus::BadLocalRegion);
                        } else {
                            let n = table.received(self.now, &st.pull_timing, acc, &mut st.reqs);
                            st.counters.add(NicCounter::PullBytes, u64::from(n));
                        }
                    }
                }
            }
            Packet::Raw(_) | Packet::HostQuery(_) | Packet::HostReply(_) => {}
        }
    }

    /// A message packet from `peer` (see [`command_of`]): admitted, then
    /// the event it becomes posted at its endpoint, with its payload in a
    /// receive-queue slot for SMALL and MEDIUM.
    fn message(&mut self, head: &Head, peer: u16, packet: &Packet<'_>) {
        let Some(cmd) = command_of(packet) else {
            return;
        };
        let (src_ep, nack_seq) = match *packet {
            Packet::Tiny(m) | Packet::Small(m) => (m.src_endpoint, Some(m.lib_seqnum)),
            Packet::Medium(m) => (m.src_endpoint, Some(m.lib_seqnum)),
            Packet::Rndv(r) => (r.src_endpoint, Some(r.lib_seqnum)),
            Packet::Notify(n) => (n.src_endpoint, Some(n.lib_seqnum)),
            Packet::ConnectRequest(c) => {
                self.peers.set_reverse(peer, c.src_dst_peer_index);
                (c.src_endpoint, Some(LibSeqnum(0)))
            }
            Packet::ConnectReply(c) => {
                self.peers.set_reverse(peer, c.src_dst_peer_index);
                if matches!(c.status, ConnectStatus::Unknown(_)) {
                    // Spec section 3: replies with other statuses are ignored.
                    self.c().bump(NicCounter::DropConnectStatus);
                    return;
                }
                (c.src_endpoint, Some(LibSeqnum(0)))
            }
            // TRUC never causes a NACK.
            Packet::Truc(t) => (t.src_endpoint, None),
            _ => return,
        };
        let Some((dst_ep, session)) = destination(&cmd) else {
            return;
        };
        let payload = match cmd {
            Command::Small { data, .. } => Some(data),
            Command::MediumFrag(_) => match *packet {
                Packet::Medium(m) => Some(m.payload),
                _ => None,
            },
            _ => None,
        };
        let Some(i) = self.admit(
            head,
            peer,
            EndpointId(dst_ep.endpoint),
            src_ep,
            session,
            nack_seq,
            payload.is_some(),
        ) else {
            return;
        };
        let Some(e) = self.eps.get_mut(i) else {
            return;
        };
        let mut slot = 0;
        if let Some(data) = payload {
            let Ok(s) = e.chan.recvq_claim() else {
                return;
            };
            let _ = e.chan.recvq_write(s, data);
            slot = s;
        }
        let src = Source {
            peer,
            endpoint: src_ep.0,
        };
        if let Some(ev) = arrival(src, &cmd, slot) {
            e.post_received(&ev);
        }
        let bytes = match cmd {
            Command::Tiny { data, .. } | Command::Small { data, .. } => data.len(),
            _ => payload.map_or(0, <[u8]>::len),
        };
        if bytes > 0 {
            e.counters.add(Counter::BytesReceived, bytes as u64);
        }
    }

    /// Destination checks and room for one packet; on failure the NACK is
    /// queued (when `nack_seq` says the packet can be NACKed) or the drop
    /// counted. Returns the endpoint index.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        head: &Head,
        peer: u16,
        dst: EndpointId,
        src: EndpointId,
        session: Option<u32>,
        nack_seq: Option<LibSeqnum>,
        needs_slot: bool,
    ) -> Option<usize> {
        let eps = &*self.eps;
        let v = verdict(eps.len(), dst, session, |i| eps.session_of(i));
        let i = match v {
            Ok(i) => i,
            Err(t) => {
                if t == NackType::BadSession {
                    if let Some(e) = self.eps.get_mut(usize::from(dst.0)) {
                        e.counters.bump(Counter::DropBadSession);
                    }
                }
                match nack_seq {
                    Some(seq) => {
                        self.st.counters.bump(nack_drop(t));
                        self.st.tx.push(Tx::NackLib {
                            peer,
                            nack: nack_lib(head, dst, src, seq, t),
                        });
                    }
                    None => self.st.counters.bump(NicCounter::DropTrucRefused),
                }
                return None;
            }
        };
        let e = self.eps.get_mut(i)?;
        if !e.event_room(1) {
            e.counters.bump(Counter::DropEventRingFull);
            self.st.counters.bump(NicCounter::DropEventRingFull);
            return None;
        }
        if needs_slot && !e.recvq_room() {
            e.counters.bump(Counter::DropRecvqFull);
            self.st.counters.bump(NicCounter::DropRecvqFull);
            return None;
        }
        Some(i)
    }

    /// A PULL for one of our endpoints' windows (the replier, stateless):
    /// check it, then queue the replies.
    fn pull(&mut self, _head: &Head, peer: u16, p: &Pull) {
        self.pull_since(peer, p, self.now);
    }

    /// Try the looped-back PULLs held for a window being registered again
    /// (see [`HeldPull`]): those whose window is complete now are answered,
    /// those that waited [`WireTiming::staging_wait`](crate::WireTiming::staging_wait) are refused like any PULL of an
    /// unknown window, the others stay held.
    pub fn retry_held(&mut self) {
        if self.st.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.st.held);
        for h in &held {
            self.pull_since(h.peer, &h.pull, h.since);
        }
    }

    /// [`Self::pull`] of a PULL that arrived at `since`.
    fn pull_since(&mut self, peer: u16, p: &Pull, since: Instant) {
        let eps = &*self.eps;
        let v = verdict(eps.len(), p.dst_endpoint, Some(p.session.0), |i| {
            eps.session_of(i)
        });
        let i = match v {
            Ok(i) => i,
            Err(t) => {
                self.st.counters.bump(nack_drop(t));
                self.st.tx.push(Tx::NackMcp {
                    peer,
                    nack: nack_mcp(p, t),
                });
                return;
            }
        };
        let Some(e) = self.eps.get(i) else {
            return;
        };
        let id = u8::try_from(p.pulled_rdma_id).ok();
        // A library stages a large send to a peer on its own host block by
        // block, registering each block as it copies it; over the network
        // path such a PULL may come before the last block. The shortcut
        // holds same-host pulls of a window being registered, so the
        // loopback does too (for as long), rather than refusing the window.
        if self.looped
            && self.now.saturating_duration_since(since) < self.st.timing.staging_wait
            && id.is_some_and(|id| e.regions.in_progress(id))
        {
            if self.st.held.len() < HELD_MAX {
                self.st.held.push(HeldPull {
                    since,
                    peer,
                    pull: *p,
                });
                if since == self.now {
                    self.st.counters.bump(NicCounter::LoopbackPullsHeld);
                }
            } else {
                // The puller asks again after its resend period.
                self.st.counters.bump(NicCounter::DropPullBounds);
            }
            return;
        }
        let window = id.and_then(|id| e.regions.len(id));
        let Some(window_len) = window else {
            self.st.counters.bump(NicCounter::DropPullBadWindow);
            self.st.tx.push(Tx::NackMcp {
                peer,
                nack: nack_mcp(p, NackType::BadRdmaWin),
            });
            return;
        };
        if !pull_in_bounds(&self.st.profile, p, window_len) {
            self.st.counters.bump(NicCounter::DropPullBounds);
            return;
        }
        if id.is_some_and(|id| e.regions.is_window(id)) && !self.window_held(i, peer, p, since) {
            return;
        }
        self.st.tx.push(Tx::PullReplies {
            peer,
            ep: i as u8,
            pull: *p,
        });
    }

    /// A PULL of endpoint `i`'s staging window: true when every block the
    /// PULL reads is held (they are kept for this pass, whose flush reads
    /// them). Otherwise the guest is asked to stage the first missing one
    /// and the PULL is held, for at most `staging_wait` since it came
    /// (then dropped: its puller asks again, or gives up on its own
    /// timeout); false.
    fn window_held(&mut self, i: usize, peer: u16, p: &Pull, since: Instant) -> bool {
        let geo = PullBlock {
            first_frame_offset: p.first_frame_offset,
            block_length: p.block_length,
            frame_index: p.frame_index,
        };
        let n = geo.frames(&self.st.profile);
        let (Some(first), Some(last)) = (
            reply_frame(&self.st.profile, &geo, p.pulled_rdma_offset, 0),
            n.checked_sub(1)
                .and_then(|l| reply_frame(&self.st.profile, &geo, p.pulled_rdma_offset, l)),
        ) else {
            return true; // pull_replies drops it
        };
        let start = u64::from(p.pulled_rdma_offset) + u64::from(first.msg_offset);
        let len =
            u64::from(last.msg_offset) + u64::from(last.frame_length) - u64::from(first.msg_offset);
        let id = p.pulled_rdma_id as u8;
        let now = self.now;
        let wait = self.st.timing.staging_wait;
        let Some(e) = self.eps.get_mut(i) else {
            return false;
        };
        let Some(block) = e.regions.missing(id, start, len) else {
            e.regions.touch(id, start, len, now, true);
            // Read-ahead, as on one host: the puller asks in order.
            crate::window::ask_read_ahead(e, id, start + len - 1, now);
            return true;
        };
        if now.saturating_duration_since(since) >= wait {
            self.st.counters.bump(NicCounter::DropPullBadWindow);
            return false;
        }
        if e.event_room(1) {
            if let Ask::Post { slot, gen } = e.regions.ask(id, block, now, wait) {
                crate::window::post_stage_needed(e, id, gen, slot, block);
            }
        }
        if self.st.held.len() < HELD_MAX {
            self.st.held.push(HeldPull {
                since,
                peer,
                pull: *p,
            });
        } else {
            self.st.counters.bump(NicCounter::DropPullBounds);
        }
        false
    }

    /// A RAW frame for the raw endpoint (a mapper): the whole frame, as
    /// Open-MX's raw interface hands it over.
    fn raw_endpoint(&mut self, bytes: &[u8]) {
        match self.raw.ep.as_deref_mut() {
            Some(ep) => ep.receive_frame(bytes, self.raw.counters),
            None => self
                .raw
                .counters
                .bump(crate::counters::RawCounter::DropNoEndpoint),
        }
    }

    fn mapper(&mut self, bytes: &[u8]) {
        let our = mxoe_wire::NicId::from_mac(self.st.mac).raw();
        let st = &mut *self.st;
        st.disc
            .on_announce(&st.timing, &st.counters, self.peers, our, self.now, bytes);
        st.timer_by(self.now);
    }

    fn host_query(&mut self, head: &Head, theirs: PeerIndex, magic: u32) {
        if head.dst != self.st.mac {
            self.c().bump(NicCounter::DropHostQueryRefused);
            return;
        }
        let Some(peer) = self
            .peers
            .index_of_mac(head.src)
            .filter(|&i| !self.peers.is_local(i))
        else {
            // An announced host we are still asking: answer it too (one
            // unicast reply per query, so no amplification), or the two
            // sides could wait for each other.
            if self
                .st
                .disc
                .is_candidate(mxoe_wire::NicId::from_mac(head.src).raw())
            {
                self.st.tx.push(Tx::HostReplyTo {
                    mac: head.src,
                    magic,
                });
            } else {
                self.c().bump(NicCounter::DropHostQueryRefused);
            }
            return;
        };
        self.peers.set_reverse(peer, theirs);
        self.st.tx.push(Tx::HostReply { peer, magic });
    }

    fn host_reply(&mut self, head: &Head, r: &mxoe_wire::packet::HostReply) {
        let peer = self
            .peers
            .index_of_mac(head.src)
            .filter(|&i| !self.peers.is_local(i));
        match peer {
            Some(peer) if head.dst == self.st.mac && r.magic == self.st.disc.magic() => {
                let name = String::from_utf8_lossy(r.hostname.as_bytes()).into_owned();
                self.peers.set_hostname(peer, &name);
                self.peers.set_query(peer, None);
                self.peers.set_reverse(peer, r.src_dst_peer_index);
            }
            None if head.dst == self.st.mac && r.magic == self.st.disc.magic() => {
                let name = String::from_utf8_lossy(r.hostname.as_bytes()).into_owned();
                let st = &mut *self.st;
                let known = st.disc.on_reply(
                    &st.timing,
                    &st.counters,
                    self.peers,
                    self.now,
                    head.src,
                    &name,
                    r.src_dst_peer_index,
                );
                if known {
                    st.timer_by(self.now);
                } else {
                    self.c().bump(NicCounter::DropHostReplyRefused);
                }
            }
            _ => self.c().bump(NicCounter::DropHostReplyRefused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mx_proto::msg::event::RecvHdr;
    use mxoe_wire::packet::{ConnectReply, MediumFrag, Msg, Rndv, Truc};
    use mxoe_wire::{MatchInfo, PullHandle, PullMagic, SessionId, WireProfile};

    /// The event a message packet becomes, through the sender's command
    /// rebuilt from it and the one arrival function.
    fn arrives<'a>(p: &Packet<'a>, slot: u16) -> Option<Event<'a>> {
        let src = Source {
            peer: 4,
            endpoint: 3,
        };
        arrival(src, &command_of(p)?, slot)
    }

    #[test]
    fn a_packet_arrives_as_the_event_its_fields_say() {
        let src = Source {
            peer: 4,
            endpoint: 3,
        };
        let seq = Seq {
            seqnum: 0x1005,
            piggyack: 0x0ffe,
        };
        let m = Msg {
            dst_endpoint: EndpointId(7),
            src_endpoint: EndpointId(3),
            lib_seqnum: LibSeqnum(seq.seqnum),
            lib_piggyack: LibSeqnum(seq.piggyack),
            match_info: MatchInfo(0x1122_3344_5566_7788),
            session: SessionId(0xabcd),
            payload: &[1, 2, 3, 4, 5, 6, 7, 8],
        };
        let hdr = RecvHdr {
            src,
            seq,
            match_info: 0x1122_3344_5566_7788,
        };
        assert_eq!(
            arrives(&Packet::Tiny(m), 0),
            Some(Event::RecvTiny {
                hdr,
                data: &[1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
        assert_eq!(
            arrives(&Packet::Small(m), 9),
            Some(Event::RecvSmall {
                hdr,
                length: 8,
                recvq_slot: 9
            })
        );
        let frag = MediumFrag {
            dst_endpoint: m.dst_endpoint,
            src_endpoint: m.src_endpoint,
            lib_seqnum: m.lib_seqnum,
            lib_piggyack: m.lib_piggyack,
            match_info: m.match_info,
            session: m.session,
            msg_length: 20_000,
            frag_seqnum: 2,
            payload: &[0; 100],
        };
        assert_eq!(
            arrives(&Packet::Medium(frag), 5),
            Some(Event::RecvMediumFrag {
                hdr,
                msg_length: 20_000,
                frag_seqnum: 2,
                frag_length: 100,
                recvq_slot: 5
            })
        );
        let rndv = Rndv {
            dst_endpoint: m.dst_endpoint,
            src_endpoint: m.src_endpoint,
            lib_seqnum: m.lib_seqnum,
            lib_piggyack: m.lib_piggyack,
            match_info: m.match_info,
            session: m.session,
            msg_length: 1 << 20,
            pulled_rdma_id: 6,
            pulled_rdma_seqnum: 9,
            pulled_rdma_offset: 0x4321,
        };
        assert_eq!(
            arrives(&Packet::Rndv(rndv), 0),
            Some(Event::RecvRndv {
                hdr,
                msg_length: 1 << 20,
                rdma: RdmaRef {
                    id: 6,
                    seqnum: 9,
                    offset: 0x4321
                }
            })
        );
        let truc = Truc {
            dst_endpoint: m.dst_endpoint,
            src_endpoint: m.src_endpoint,
            session: m.session,
            lib_seqnum: LibSeqnum(77),
            session_id: m.session,
            acknum: 12,
            send_seq: LibSeqnum(78),
            resent: 1,
        };
        assert_eq!(
            arrives(&Packet::Truc(truc), 0),
            Some(Event::RecvLiback {
                src,
                lib_seqnum: 77,
                send_seq: 78,
                acknum: 12
            })
        );
        let reply = ConnectReply {
            dst_endpoint: m.dst_endpoint,
            src_endpoint: m.src_endpoint,
            src_dst_peer_index: PeerIndex::new(2),
            src_session_id: SessionId(5),
            target_session_id: SessionId(6),
            target_recv_seqnum_start: LibSeqnum(7),
            connect_seqnum: 8,
            status: ConnectStatus::from(0),
        };
        assert_eq!(
            arrives(&Packet::ConnectReply(reply), 0),
            Some(Event::RecvConnectReply {
                src,
                src_session: 5,
                target_session: 6,
                target_recv_seqnum_start: 7,
                connect_seqnum: 8,
                status: 0
            })
        );
        // Where it arrives: the endpoint and session the packet names.
        let cmd = command_of(&Packet::Small(m)).expect("a message");
        let (dest, session) = destination(&cmd).expect("addressed");
        assert_eq!((dest.endpoint, session), (7, Some(0xabcd)));
        // Not messages: no command, no event.
        let nack = NackLib {
            src_endpoint: EndpointId(1),
            dst_endpoint: EndpointId(2),
            nack_type: NackType::BadSession,
            dst_src_peer_index: PeerIndex::new(0),
            lib_seqnum: LibSeqnum(3),
        };
        assert!(command_of(&Packet::NackLib(nack)).is_none());
    }

    #[test]
    fn verdict_follows_the_nack_table() {
        // endpoints 0..4; 1 open with session 7, 2 open with session 9
        let sess = |i: usize| match i {
            1 => Some(7),
            2 => Some(9),
            _ => None,
        };
        assert_eq!(verdict(4, EndpointId(1), Some(7), sess), Ok(1));
        assert_eq!(verdict(4, EndpointId(2), None, sess), Ok(2));
        assert_eq!(
            verdict(4, EndpointId(4), Some(7), sess),
            Err(NackType::BadEndpt)
        );
        assert_eq!(
            verdict(4, EndpointId(255), None, sess),
            Err(NackType::BadEndpt)
        );
        assert_eq!(
            verdict(4, EndpointId(0), Some(7), sess),
            Err(NackType::EndptClosed)
        );
        assert_eq!(
            verdict(4, EndpointId(3), None, sess),
            Err(NackType::EndptClosed)
        );
        assert_eq!(
            verdict(4, EndpointId(2), Some(7), sess),
            Err(NackType::BadSession)
        );
        // range is checked before the open state, the open state before the session
        assert_eq!(
            verdict(0, EndpointId(0), Some(1), |_| Some(1)),
            Err(NackType::BadEndpt)
        );
    }

    #[test]
    fn nacks_carry_the_fields_of_section_4() {
        let head = Head {
            dst: [2, 0, 0, 0, 0, 1],
            src: [2, 0, 0, 0, 0, 2],
            peer_index: PeerIndex(0x1234),
        };
        let n = nack_lib(
            &head,
            EndpointId(5),
            EndpointId(3),
            LibSeqnum(0x4007),
            NackType::BadSession,
        );
        assert_eq!(
            n.src_endpoint,
            EndpointId(5),
            "the endpoint the packet targeted"
        );
        assert_eq!(n.dst_endpoint, EndpointId(3), "the original sender");
        assert_eq!(
            n.dst_src_peer_index,
            PeerIndex(0x1234),
            "copied from the head"
        );
        assert_eq!(n.lib_seqnum, LibSeqnum(0x4007));
        let p = Pull {
            dst_endpoint: EndpointId(6),
            src_endpoint: EndpointId(1),
            session: SessionId(3),
            total_length: 10,
            pulled_rdma_id: 4,
            pulled_rdma_seqnum: 23,
            pulled_rdma_offset: 0,
            src_pull_handle: PullHandle::new(3, 0x23).unwrap(),
            src_magic: PullMagic::for_endpoint(EndpointId(1)),
            first_frame_offset: 0,
            block_length: 10,
            frame_index: 0,
        };
        let m = nack_mcp(&p, NackType::BadRdmaWin);
        assert_eq!(m.src_endpoint, EndpointId(6));
        assert_eq!(m.src_pull_handle, p.src_pull_handle);
        assert_eq!(m.src_magic, p.src_magic);
        assert_eq!(nack_status(NackType::BadRdmaWin), PullStatus::BadRdmaWindow);
        assert_eq!(
            nack_status(NackType::EndptClosed),
            PullStatus::EndpointClosed
        );
        assert_eq!(nack_status(NackType::BadEndpt), PullStatus::BadEndpoint);
        assert_eq!(nack_status(NackType::BadSession), PullStatus::BadSession);
        assert_eq!(nack_status(NackType::Unknown(9)), PullStatus::Unreachable);
    }

    #[test]
    fn pull_bounds() {
        let prof = WireProfile::MX;
        let mut p = Pull {
            dst_endpoint: EndpointId(0),
            src_endpoint: EndpointId(0),
            session: SessionId(0),
            total_length: 100_000,
            pulled_rdma_id: 0,
            pulled_rdma_seqnum: 0,
            pulled_rdma_offset: 0,
            src_pull_handle: PullHandle::from_raw(0),
            src_magic: PullMagic::from_raw(0),
            first_frame_offset: 0,
            block_length: 32768,
            frame_index: 8,
        };
        assert!(pull_in_bounds(&prof, &p, 100_000));
        assert!(
            !pull_in_bounds(&prof, &p, 99_999),
            "message beyond the window"
        );
        p.frame_index = 24; // 24*4096 + 32768 > 100_000
        assert!(
            !pull_in_bounds(&prof, &p, 100_000),
            "block beyond the message"
        );
        p.block_length = 100_000 - 24 * 4096;
        assert!(pull_in_bounds(&prof, &p, 100_000));
        p.block_length = 0;
        assert!(!pull_in_bounds(&prof, &p, 100_000), "empty block");
    }

    #[test]
    fn decode_errors_have_reasons() {
        let p = WireProfile::OPEN_MX_9000;
        let reason = |b: &[u8]| decode_drop(&decode(&p, b).unwrap_err());
        assert_eq!(reason(&[0u8; 10]), NicCounter::DropTruncated);
        let mut f = [0u8; 60];
        f[12] = 0x08;
        assert_eq!(reason(&f), NicCounter::DropBadEtherType);
        f[12..14].copy_from_slice(&0x86DFu16.to_be_bytes());
        f[16] = 200;
        assert_eq!(reason(&f), NicCounter::DropUnknownType);
        f[16] = 0;
        assert_eq!(reason(&f), NicCounter::DropUnsupportedType);
        f[16] = 37; // TINY claiming 32 bytes in a 60-byte frame (40 + 32 > 60)
        f[20..22].copy_from_slice(&32u16.to_be_bytes());
        assert_eq!(reason(&f), NicCounter::DropLengthBeyondFrame);
        f[20..22].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(reason(&f), NicCounter::DropBadValue);
    }
}
