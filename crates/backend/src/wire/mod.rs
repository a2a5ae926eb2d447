//! The backend on the wire: MXoE frames to and from remote peers through a
//! [`Nic`] (spec `mxoe-wire.md`; what we do and decided is in
//! `docs/WIRE.md`).
//!
//! - [`send`]: guest commands whose destination is a remote peer become
//!   frames (TINY/SMALL inline, MEDIUM straight from the send-queue slot,
//!   RNDV, NOTIFY, CONNECT, TRUC), and `Pull` commands start pulls.
//! - [`recv`]: received frames are decoded, checked (NACK rules of spec
//!   section 9) and become the same events the intra-node path posts;
//!   PULL requests are answered from the sender guest's memory, PULL_REPLY
//!   frames go straight into the puller's region.
//! - [`crate::pull`]: the puller's state machine; [`discovery`]:
//!   mapper announcements and host queries.
//! - [`loopback`]: frames to our own MAC (the network path between two
//!   endpoints of this host, for `MX_DISABLE_SHMEM`) never reach the NIC;
//!   they are fed back to [`recv`] in the same pass.
//!
//! A pass of the service loop runs commands first (their frames queue in
//! the NIC), then [`service`]: receive batches (each followed by the
//! replies it caused, [`Tx`]), timers, pull completions, one NIC flush.
//! Events are published after that flush, so a guest never sees
//! `SendMediumDone` for a slot the NIC may still read.

pub mod discovery;
pub mod loopback;
pub mod recv;
pub mod send;

use crate::config::WireTiming;
use crate::counters::{Counter, NicCounter, NicCounters, RawCounters};
use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use crate::nic::{Nic, Payload};
use crate::peers::PeerTable;
use crate::pull::{self, PullTable, PullTiming};
use crate::raw_endpoint::RawEndpoint;
use discovery::Discovery;
use loopback::{Loopback, Port};
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::Event;
use mx_proto::platform::{GuestMemory, HostPlatform};
use mxoe_wire::mapper::{MapperAnnounce, MAPPER_FRAME_LEN};
use mxoe_wire::packet::{HostQuery, HostReply, NackLib, NackMcp, Pull, PullReply};
use mxoe_wire::pull::{reply_frame, PullBlock};
use mxoe_wire::{emit_header, Frame, Head, Hostname, NicId, Packet, PeerIndex, WireProfile};
use std::sync::Arc;
use std::time::Instant;
use tracing::debug;

/// A guest region reference of host platform `H`.
pub type RegionOf<H> = <<H as HostPlatform>::Memory as GuestMemory>::Region;

/// Frames taken from the NIC per batch.
const RX_BATCH: usize = 64;
/// Batches per pass (then the loop serves the command rings again).
const RX_ROUNDS: usize = 8;
/// Looped-back frames handled per pass (the rest wait for the next pass,
/// which comes at once: the pass reports work).
const LOOP_MAX: usize = RX_ROUNDS * RX_BATCH;

/// A frame to send that the receive path decided on (it cannot send while
/// the NIC is lending it received frames), or a pull request.
#[derive(Debug, Clone, Copy)]
pub enum Tx {
    /// A PULL request.
    Pull(pull::Request),
    /// Answer a PULL of `peer` from endpoint `ep`'s window.
    PullReplies {
        /// The puller's host.
        peer: u16,
        /// Our endpoint (the window's owner).
        ep: u8,
        /// The request.
        pull: Pull,
    },
    /// A NACK_LIB.
    NackLib {
        /// To whom.
        peer: u16,
        /// The packet.
        nack: NackLib,
    },
    /// A NACK_MCP.
    NackMcp {
        /// To whom.
        peer: u16,
        /// The packet.
        nack: NackMcp,
    },
    /// Ask `peer` for its hostname.
    HostQuery {
        /// To whom.
        peer: u16,
    },
    /// Answer a HOST_QUERY of `peer`.
    HostReply {
        /// To whom.
        peer: u16,
        /// The query's magic.
        magic: u32,
    },
    /// Ask an announced host that has no peer index yet for its hostname.
    HostQueryTo {
        /// Its MAC.
        mac: [u8; 6],
    },
    /// Answer a HOST_QUERY of an announced host that has no peer index yet.
    HostReplyTo {
        /// Its MAC.
        mac: [u8; 6],
        /// The query's magic.
        magic: u32,
    },
    /// Broadcast a mapper announcement.
    Announce,
}

/// Everything the wire side keeps but the NIC itself.
pub struct WireState<H: HostPlatform> {
    /// The wire profile (both sides must use the same).
    pub profile: WireProfile,
    /// Our MAC.
    pub mac: [u8; 6],
    /// Our hostname as HOST_REPLY carries it.
    pub hostname: Hostname,
    /// NIC counters (shared with handles on other threads).
    pub counters: Arc<NicCounters>,
    /// The pulls of each endpoint id.
    pub pulls: Vec<PullTable<RegionOf<H>>>,
    /// Timing.
    pub timing: WireTiming,
    /// The pull engine's timing.
    pub pull_timing: PullTiming,
    /// Mapper and host query state.
    pub disc: Discovery,
    /// Frames decided, not sent yet.
    pub tx: Vec<Tx>,
    /// Pull requests produced by the pull engine.
    pub reqs: Vec<pull::Request>,
    /// Looped-back PULLs waiting for their window's registration.
    pub held: Vec<recv::HeldPull>,
    /// When the timers (pulls, discovery) next need a look.
    pub timer_at: Option<Instant>,
    /// Builds a platform region reference from a guest address range.
    pub region_of: fn(u64, usize) -> RegionOf<H>,
    hdr: [u8; 128],
    block: Vec<u8>,
    segs: Vec<(u64, usize)>,
}

/// The NIC and the wire state of a backend.
pub struct Wire<H: HostPlatform> {
    /// The interface.
    pub nic: Box<dyn Nic>,
    /// Frames to ourselves (`MX_DISABLE_SHMEM` traffic on this host).
    pub lo: Loopback,
    /// The board has no NIC: `nic` is a [`loopback::NoNic`], there only
    /// for the network path between our own endpoints. What needs a real
    /// interface (raw sends, its MTU) must look at this.
    pub loopback_only: bool,
    /// Everything else.
    pub st: WireState<H>,
}

impl<H: HostPlatform> Wire<H> {
    /// The wire side of a board with `max_endpoints` endpoint ids.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nic: Box<dyn Nic>,
        profile: WireProfile,
        hostname: &str,
        max_endpoints: u8,
        timing: WireTiming,
        discovery: bool,
        serial: u32,
        region_of: fn(u64, usize) -> RegionOf<H>,
        now: Instant,
    ) -> Self {
        let mac = nic.mac();
        // Hostnames longer than the wire allows are cut (at a char boundary).
        let mut name = hostname;
        while name.len() >= mxoe_wire::HOSTNAME_MAX {
            let mut cut = mxoe_wire::HOSTNAME_MAX - 1;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = &name[..cut];
        }
        let hostname = Hostname::new(name.as_bytes())
            .or_else(|_| Hostname::new(b"localhost"))
            .expect("a constant hostname is valid");
        Wire {
            nic,
            lo: Loopback::new(mac, profile.frame_budget() as usize),
            loopback_only: false,
            st: WireState {
                profile,
                mac,
                hostname,
                counters: Arc::new(NicCounters::default()),
                pulls: (0..max_endpoints)
                    .map(|ep| PullTable::new(profile, ep))
                    .collect(),
                pull_timing: PullTiming {
                    resend: timing.pull_resend,
                    timeout: timing.pull_timeout,
                },
                timing,
                disc: Discovery::new(discovery, serial, timing.burst_count, now),
                tx: Vec::new(),
                reqs: Vec::new(),
                held: Vec::new(),
                timer_at: Some(now),
                region_of,
                hdr: [0; 128],
                block: Vec::new(),
                segs: Vec::new(),
            },
        }
    }

    /// Our board address.
    pub fn nic_id(&self) -> u64 {
        NicId::from_mac(self.st.mac).raw()
    }

    /// The NIC seam the wire code sends through: the device, with frames
    /// to ourselves diverted to the loopback.
    pub fn port(&mut self) -> (Port<'_>, &mut WireState<H>) {
        let Wire { nic, lo, st, .. } = self;
        (
            Port {
                nic: nic.as_mut(),
                lo,
            },
            st,
        )
    }
}

impl<H: HostPlatform> WireState<H> {
    /// Look at the timers no later than `at`.
    pub fn timer_by(&mut self, at: Instant) {
        self.timer_at = Some(self.timer_at.map_or(at, |t| t.min(at)));
    }

    /// Move the pull engine's requests to the transmit queue.
    pub fn take_requests(&mut self) {
        self.tx.extend(self.reqs.drain(..).map(Tx::Pull));
    }
}

/// The counter of a sent packet type.
pub fn tx_counter(p: &Packet<'_>) -> NicCounter {
    use NicCounter::*;
    match p {
        Packet::Raw(_) => TxRaw,
        Packet::HostQuery(_) => TxHostQuery,
        Packet::HostReply(_) => TxHostReply,
        Packet::Truc(_) => TxTruc,
        Packet::ConnectRequest(_) | Packet::ConnectReply(_) => TxConnect,
        Packet::Tiny(_) => TxTiny,
        Packet::Small(_) => TxSmall,
        Packet::Medium(_) => TxMedium,
        Packet::Rndv(_) => TxRndv,
        Packet::Pull(_) => TxPull,
        Packet::PullReply(_) => TxPullReply,
        Packet::Notify(_) => TxNotify,
        Packet::NackLib(_) => TxNackLib,
        Packet::NackMcp(_) => TxNackMcp,
    }
}

/// Encode `frame`'s header (the packet's own payload slice is ignored) and
/// queue it on the NIC followed by `payload`. False (and counted) if the
/// header does not encode or the NIC refuses the frame.
pub fn emit_send(
    nic: &mut dyn Nic,
    profile: &WireProfile,
    counters: &NicCounters,
    buf: &mut [u8],
    frame: &Frame<'_>,
    payload: Payload<'_>,
) -> bool {
    let n = match emit_header(profile, frame, payload.len(), buf) {
        Ok(n) => n,
        Err(e) => {
            debug!("frame not encodable: {e:?}");
            counters.bump(NicCounter::TxErrors);
            return false;
        }
    };
    send_encoded(nic, counters, &buf[..n], &frame.packet, payload)
}

/// Queue an already encoded header (of `packet`) and its payload on the
/// NIC, counting the outcome.
pub fn send_encoded(
    nic: &mut dyn Nic,
    counters: &NicCounters,
    header: &[u8],
    packet: &Packet<'_>,
    payload: Payload<'_>,
) -> bool {
    match nic.send(header, payload) {
        Ok(()) => {
            counters.bump(NicCounter::TxFrames);
            counters.bump(tx_counter(packet));
            true
        }
        Err(e) => {
            debug!("nic send: {e}");
            counters.bump(NicCounter::TxErrors);
            false
        }
    }
}

/// The head of a frame to peer `peer`, if we know its address. A frame to
/// this host (a local peer: the network path between two of our endpoints)
/// goes from our MAC to our MAC, with our index for ourselves; the
/// [`Port`] keeps it on the loopback.
pub fn head_for(peers: &PeerTable, mac: [u8; 6], peer: u16) -> Option<Head> {
    if peers.is_local(peer) {
        return Some(Head {
            dst: mac,
            src: mac,
            peer_index: PeerIndex::new(peer),
        });
    }
    Some(Head {
        dst: peers.mac_of(peer)?,
        src: mac,
        peer_index: peers.reverse(peer),
    })
}

/// Send every queued [`Tx`].
pub fn flush_tx<H: HostPlatform>(
    nic: &mut dyn Nic,
    st: &mut WireState<H>,
    peers: &PeerTable,
    eps: &Endpoints<H>,
) {
    let mut tx = std::mem::take(&mut st.tx);
    for t in tx.drain(..) {
        let peer = match t {
            Tx::Pull(r) => r.peer,
            Tx::PullReplies { peer, .. }
            | Tx::NackLib { peer, .. }
            | Tx::NackMcp { peer, .. }
            | Tx::HostQuery { peer }
            | Tx::HostReply { peer, .. } => peer,
            Tx::Announce => {
                let ann = MapperAnnounce {
                    src: st.mac,
                    nic_id: NicId::from_mac(st.mac),
                    serial: st.disc.serial(),
                };
                let mut b = [0u8; MAPPER_FRAME_LEN];
                if ann.emit(&mut b).is_ok() && nic.send(&b, Payload::None).is_ok() {
                    st.counters.bump(NicCounter::TxFrames);
                    st.counters.bump(NicCounter::TxRaw);
                } else {
                    st.counters.bump(NicCounter::TxErrors);
                }
                continue;
            }
            Tx::HostQueryTo { mac } | Tx::HostReplyTo { mac, .. } => {
                // No index: we have none for it, nor it for us.
                let head = Head {
                    dst: mac,
                    src: st.mac,
                    peer_index: PeerIndex::UNKNOWN,
                };
                let packet = match t {
                    Tx::HostReplyTo { magic, .. } => Packet::HostReply(HostReply {
                        src_dst_peer_index: PeerIndex::UNKNOWN,
                        magic,
                        hostname: st.hostname,
                    }),
                    _ => Packet::HostQuery(HostQuery {
                        src_dst_peer_index: PeerIndex::UNKNOWN,
                        magic: st.disc.magic(),
                    }),
                };
                emit_send(
                    nic,
                    &st.profile,
                    &st.counters,
                    &mut st.hdr,
                    &Frame { head, packet },
                    Payload::None,
                );
                continue;
            }
        };
        let Some(head) = head_for(peers, st.mac, peer) else {
            continue; // a peer we cannot address (never happens: peers stay)
        };
        let packet = match t {
            Tx::Pull(r) => Packet::Pull(r.pull),
            Tx::NackLib { nack, .. } => Packet::NackLib(nack),
            Tx::NackMcp { nack, .. } => Packet::NackMcp(nack),
            Tx::HostQuery { .. } => Packet::HostQuery(HostQuery {
                src_dst_peer_index: PeerIndex::new(peer),
                magic: st.disc.magic(),
            }),
            Tx::HostReply { magic, .. } => Packet::HostReply(HostReply {
                src_dst_peer_index: PeerIndex::new(peer),
                magic,
                hostname: st.hostname,
            }),
            Tx::PullReplies { ep, pull, .. } => {
                pull_replies(nic, st, head, eps, ep, &pull);
                continue;
            }
            Tx::Announce | Tx::HostQueryTo { .. } | Tx::HostReplyTo { .. } => continue,
        };
        emit_send(
            nic,
            &st.profile,
            &st.counters,
            &mut st.hdr,
            &Frame { head, packet },
            Payload::None,
        );
    }
    // Keep the allocation.
    st.tx = tx;
}

/// The replier (spec 11.5, stateless): read the block the PULL asks for
/// from endpoint `ep`'s window and send its PULL_REPLY frames. The checks
/// were made when the PULL arrived; the window is looked up again here.
fn pull_replies<H: HostPlatform>(
    nic: &mut dyn Nic,
    st: &mut WireState<H>,
    head: Head,
    eps: &Endpoints<H>,
    ep: u8,
    p: &Pull,
) {
    let Some(e) = eps.get(usize::from(ep)) else {
        return;
    };
    let geo = PullBlock {
        first_frame_offset: p.first_frame_offset,
        block_length: p.block_length,
        frame_index: p.frame_index,
    };
    let n = geo.frames(&st.profile);
    let (Some(first), Some(last)) = (
        reply_frame(&st.profile, &geo, p.pulled_rdma_offset, 0),
        n.checked_sub(1)
            .and_then(|l| reply_frame(&st.profile, &geo, p.pulled_rdma_offset, l)),
    ) else {
        return;
    };
    let start = u64::from(first.msg_offset);
    let len = u64::from(last.msg_offset) + u64::from(last.frame_length) - start;
    let rdma_id = p.pulled_rdma_id as u8;
    if e.regions
        .resolve(
            rdma_id,
            u64::from(p.pulled_rdma_offset) + start,
            len,
            &mut st.segs,
        )
        .is_err()
    {
        st.counters.bump(NicCounter::DropPullBounds);
        return;
    }
    let region_of = st.region_of;
    let segs: Vec<RegionOf<H>> = st.segs.iter().map(|&(a, l)| region_of(a, l)).collect();
    st.block.resize(len as usize, 0);
    if e.memory
        .read(&segs, 0, &mut st.block[..len as usize])
        .is_err()
    {
        st.counters.bump(NicCounter::DropPullBounds);
        return;
    }
    let WireState {
        profile,
        counters,
        hdr,
        block,
        ..
    } = st;
    for i in 0..n {
        let Some(f) = reply_frame(profile, &geo, p.pulled_rdma_offset, i) else {
            break;
        };
        let off = (u64::from(f.msg_offset) - start) as usize;
        let data = &block[off..off + f.frame_length as usize];
        let frame = Frame {
            head,
            packet: Packet::PullReply(PullReply {
                frame_seqnum: f.frame_seqnum,
                msg_offset: f.msg_offset,
                dst_pull_handle: p.src_pull_handle,
                dst_magic: p.src_magic,
                payload: &[],
            }),
        };
        emit_send(nic, profile, counters, hdr, &frame, Payload::Bytes(data));
    }
}

/// Post the finished pulls of every endpoint as `PullDone` events, as far
/// as the event rings have room (the rest wait for the next pass).
pub fn post_completions<H: HostPlatform>(st: &mut WireState<H>, eps: &mut Endpoints<H>) {
    for (i, table) in st.pulls.iter_mut().enumerate() {
        let Some(e) = eps.get_mut(i) else {
            continue;
        };
        while let Some(c) = table.peek_done() {
            if !e.event_room(1) {
                break;
            }
            let ev = Event::PullDone {
                cookie: c.cookie,
                status: c.status,
                transferred: c.transferred,
            };
            e.post(&ev);
            table.pop_done();
            if c.status == PullStatus::Success {
                e.counters.bump(Counter::PullsDone);
                e.counters
                    .add(Counter::BytesReceived, u64::from(c.transferred));
                st.counters.bump(NicCounter::PullsDone);
            } else {
                e.counters.bump(Counter::PullsFailed);
                st.counters.bump(NicCounter::PullsFailed);
            }
        }
    }
}

/// Run the timers if due: pull retransmission and timeouts, mapper
/// announcements and host queries.
fn timers<H: HostPlatform>(st: &mut WireState<H>, peers: &mut PeerTable, now: Instant) {
    if st.timer_at.is_some_and(|t| t > now) {
        return;
    }
    let mut next: Option<Instant> = None;
    for table in &mut st.pulls {
        if table.active() == 0 {
            continue;
        }
        let before = table.resent();
        table.poll(now, &st.pull_timing, &mut st.reqs);
        st.counters
            .add(NicCounter::PullResent, table.resent() - before);
        next = min_opt(next, table.next_timer());
    }
    st.take_requests();
    st.disc
        .poll(&st.timing, &st.counters, now, peers, &mut st.tx);
    next = min_opt(next, st.disc.next_timer(peers));
    st.timer_at = next;
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Where received RAW frames go besides discovery: the board's raw
/// endpoint, if open, and its counters.
pub struct RawRx<'a, H: HostPlatform> {
    /// The raw endpoint.
    pub ep: Option<&'a mut RawEndpoint<H>>,
    /// Its counters (drops are counted with no endpoint open too).
    pub counters: &'a RawCounters,
}

/// The wire part of a pass: receive, answer, timers, looped-back frames,
/// completions, flush. True if frames were received or looped back, or
/// looped-back frames are still waiting.
pub fn service<H: HostPlatform>(
    w: &mut Wire<H>,
    peers: &mut PeerTable,
    eps: &mut Endpoints<H>,
    mut raw: RawRx<'_, H>,
    now: Instant,
) -> bool {
    let (mut port, st) = w.port();
    let mut worked = false;
    // Pull requests of this pass's commands.
    flush_tx(&mut port, st, peers, eps);
    for _ in 0..RX_ROUNDS {
        let mut rx = recv::Rx {
            st: &mut *st,
            peers: &mut *peers,
            eps: &mut *eps,
            raw: RawRx {
                ep: raw.ep.as_deref_mut(),
                counters: raw.counters,
            },
            now,
            looped: false,
        };
        let n = port
            .nic
            .recv_batch(RX_BATCH, &mut |f: &[u8]| rx.frame(f))
            .unwrap_or(0);
        if n > 0 {
            worked = true;
            st.take_requests();
            flush_tx(&mut port, st, peers, eps);
        }
        if n < RX_BATCH {
            break;
        }
    }
    timers(st, peers, now);
    flush_tx(&mut port, st, peers, eps);
    worked |= serve_loopback(&mut port, st, peers, eps, &mut raw, now);
    post_completions(st, eps);
    if let Err(e) = port.flush() {
        debug!("nic flush: {e}");
        st.counters.bump(NicCounter::TxErrors);
    }
    worked
}

/// Feed the frames we sent to ourselves to the receive path, one at a
/// time, sending what each one causes (a PULL's replies, a NACK, the next
/// PULL) right after it, so a whole exchange between two local endpoints
/// can complete within one pass. At most [`LOOP_MAX`] frames; true if any
/// was handled or some are left.
fn serve_loopback<H: HostPlatform>(
    port: &mut Port<'_>,
    st: &mut WireState<H>,
    peers: &mut PeerTable,
    eps: &mut Endpoints<H>,
    raw: &mut RawRx<'_, H>,
    now: Instant,
) -> bool {
    // PULLs held for a window being registered: this pass's commands may
    // have completed it.
    if !st.held.is_empty() {
        recv::Rx {
            st: &mut *st,
            peers: &mut *peers,
            eps: &mut *eps,
            raw: RawRx {
                ep: raw.ep.as_deref_mut(),
                counters: raw.counters,
            },
            now,
            looped: true,
        }
        .retry_held();
        flush_tx(port, st, peers, eps);
    }
    let mut n = 0;
    while n < LOOP_MAX {
        let mut rx = recv::Rx {
            st: &mut *st,
            peers: &mut *peers,
            eps: &mut *eps,
            // Looped frames are the wire code's MXoE frames, never RAW
            // ones (raw sends go to the device, not through the port).
            raw: RawRx {
                ep: raw.ep.as_deref_mut(),
                counters: raw.counters,
            },
            now,
            looped: true,
        };
        if !port.lo.pop_with(|f| rx.frame(f)) {
            break;
        }
        n += 1;
        st.counters.bump(NicCounter::LoopbackFrames);
        st.take_requests();
        flush_tx(port, st, peers, eps);
    }
    n > 0 || !port.lo.is_empty()
}

/// Attribute per-endpoint counters for a frame sent on behalf of endpoint `e`.
pub fn count_sent<H: HostPlatform>(e: &mut Endpoint<H>, c: Counter, bytes: usize) {
    e.counters.bump(c);
    e.counters.bump(Counter::WireSent);
    e.counters.add(Counter::BytesSent, bytes as u64);
}
