//! Command handling: what the backend does with one validated command of an
//! endpoint. Intra-node destinations are served by the shortcut (straight
//! into the destination endpoint's event ring and receive queue, no frame
//! built); remote peers go to the NIC layer, and so do intra-node commands
//! from or to an endpoint opened with `MX_DISABLE_SHMEM` (the wire layer
//! loops their frames back, see [`crate::wire::loopback`]).
//!
//! Every handler first checks that everything it will write has room (the
//! destination's event ring and receive queue, the source's event ring for a
//! completion or a NACK) and only then writes, so a command either happens
//! whole or not at all. "No room" is [`Outcome::Blocked`]: the caller keeps
//! the command and retries it later, which back-pressures the sender instead
//! of dropping a local message.

use crate::counters::Counter;
use crate::endpoint::{event_room, recvq_room, Endpoint};
use crate::peers::PeerTable;
use crate::wire::Wire;
use mx_proto::msg::command::{CommandKind, MediumFrag, Pull};
use mx_proto::msg::event::{
    CommandErrorCode, DirectSegs, NackKind, PullStatus, RecvHdr, DIRECT_SEGS_MAX,
};
use mx_proto::msg::{Command, Dest, Event, Source};
use mx_proto::platform::{CopyFault, GuestMemory, HostPlatform};
use std::time::{Duration, Instant};

/// NACK types of the wire protocol (spec section 3), as bytes: the values
/// of [`NackKind`], which the channel carries.
pub mod nack {
    use mx_proto::msg::event::NackKind;
    /// The endpoint id is out of range.
    pub const BAD_ENDPT: u8 = NackKind::BadEndpoint as u8;
    /// The endpoint is not open.
    pub const ENDPT_CLOSED: u8 = NackKind::EndpointClosed as u8;
    /// The session id does not match.
    pub const BAD_SESSION: u8 = NackKind::BadSession as u8;
}

/// Result of handling one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (delivered, NACKed, or rejected with an error event).
    Done,
    /// Not enough room at the destination or for our own completion: retry later.
    Blocked,
}

/// The environment a command is handled in.
pub struct Ctx<'a, H: HostPlatform> {
    /// Peer index of this host.
    pub self_peer: u16,
    /// The peer table (whether a peer index names this host, remote MACs).
    pub peers: &'a PeerTable,
    /// The wire side, when the board has a NIC.
    pub net: Option<&'a mut Wire<H>>,
    /// Time of this pass.
    pub now: Instant,
    /// Largest medium fragment of the profile.
    pub frag_max: u32,
    /// Largest medium message of the profile.
    pub medium_max: u32,
    /// Bounce buffer for bulk copies between two guests.
    pub bounce: &'a mut Vec<u8>,
    /// Scratch for region resolution.
    pub segs: &'a mut Vec<(u64, usize)>,
    /// Builds a platform region reference from a guest address range.
    pub region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
    /// Since when the command being handled has been blocked (a retry).
    pub blocked_since: Option<Instant>,
    /// How long a same-host pull waits for its block to be registered
    /// ([`WireTiming::staging_wait`](crate::WireTiming::staging_wait)).
    pub staging_wait: Duration,
}

/// Post an event the caller has checked room for.
fn post<H: HostPlatform>(ep: &mut Endpoint<H>, ev: &Event<'_>) {
    if ep.chan.push_event(ev).is_ok() {
        ep.counters.bump(Counter::EventsPosted);
        ep.dirty = true;
    } else {
        // Room was checked; a failure means the guest corrupted its ring.
        ep.counters.bump(Counter::DropEventRingFull);
    }
}

fn reject<H: HostPlatform>(
    src: &mut Endpoint<H>,
    kind: CommandKind,
    code: CommandErrorCode,
) -> Outcome {
    // Counted once, when it is answered: a retry after back-pressure is
    // the same command.
    if !event_room::<H>(&mut src.chan, 1) {
        return Outcome::Blocked;
    }
    src.counters.bump(Counter::CmdsBadRef);
    post(
        src,
        &Event::CommandError {
            cmd_kind: kind as u8,
            code,
        },
    );
    Outcome::Done
}

/// The lib seqnum a NACK of this command reports, if the command can be
/// NACKed (acks and pulls cannot; a connect reports 0).
fn nackable(cmd: &Command<'_>) -> Option<u16> {
    Some(match cmd {
        Command::Tiny { hdr, .. } | Command::Small { hdr, .. } => hdr.seq.seqnum,
        Command::MediumFrag(m) => m.hdr.seq.seqnum,
        Command::Rndv(r) => r.hdr.seq.seqnum,
        Command::Notify(n) => n.seq.seqnum,
        Command::ConnectRequest(_) | Command::ConnectReply(_) => 0,
        _ => return None,
    })
}

fn dest_of(cmd: &Command<'_>) -> Option<(Dest, Option<u32>)> {
    Some(match cmd {
        Command::Tiny { hdr, .. } | Command::Small { hdr, .. } => (hdr.dest, Some(hdr.session)),
        Command::MediumFrag(m) => (m.hdr.dest, Some(m.hdr.session)),
        Command::Rndv(r) => (r.hdr.dest, Some(r.hdr.session)),
        Command::Notify(n) => (n.dest, Some(n.session)),
        Command::Liback(l) => (l.dest, Some(l.session)),
        Command::Pull(p) => (p.dest, Some(p.session)),
        Command::ConnectRequest(c) => (c.dest, None),
        Command::ConnectReply(c) => (c.dest, None),
        Command::RegionRegister(_)
        | Command::RegionDeregister { .. }
        | Command::RegionWindow(_)
        | Command::RegionStage(_) => return None,
    })
}

/// Handle one command of endpoint `src_id`. `eps` is the endpoint table
/// indexed by endpoint id.
pub fn handle<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    src_id: usize,
    cmd: &Command<'_>,
) -> Outcome {
    let kind = cmd.kind();
    // Commands that touch only the source endpoint.
    match cmd {
        Command::RegionRegister(r) => {
            let Some(src) = eps[src_id].as_mut() else {
                return Outcome::Done;
            };
            return match src.regions.register(r) {
                Ok(()) => Outcome::Done,
                Err(_) => reject(src, kind, CommandErrorCode::BadRegion),
            };
        }
        Command::RegionDeregister { region_id } => {
            if let Some(src) = eps[src_id].as_mut() {
                src.regions.deregister(*region_id);
            }
            return Outcome::Done;
        }
        Command::RegionWindow(w) => {
            let Some(src) = eps[src_id].as_mut() else {
                return Outcome::Done;
            };
            return match src.regions.set_window(w) {
                Ok(()) => Outcome::Done,
                Err(_) => reject(src, kind, CommandErrorCode::BadRegion),
            };
        }
        Command::RegionStage(st) => {
            let Some(src) = eps[src_id].as_mut() else {
                return Outcome::Done;
            };
            if src.regions.staged(st, ctx.now) {
                crate::window::resume(ctx, eps, src_id);
            } else {
                src.counters.bump(Counter::DropStageBad);
            }
            return Outcome::Done;
        }
        _ => {}
    }
    let Some((dest, session)) = dest_of(cmd) else {
        return Outcome::Done;
    };
    if !ctx.peers.is_local(dest.peer) {
        // Remote peers are served by the NIC layer; without one, the peer
        // index is not one this backend can reach.
        if ctx.net.is_some() {
            return crate::wire::send::command(ctx, eps, src_id, cmd, dest);
        }
        let Some(src) = eps[src_id].as_mut() else {
            return Outcome::Done;
        };
        return reject(src, kind, CommandErrorCode::BadPeer);
    }
    // MX_DISABLE_SHMEM: the network path between two endpoints of this
    // host when either asked for it (both directions of a pair then take
    // the same path, and a large message's data too: the puller's PULL is
    // addressed to the sender's endpoint). `net` exists whenever an
    // endpoint has the flag (open creates it).
    if ctx.net.is_some() && network_path(eps, src_id, dest.endpoint) {
        return crate::wire::send::command(ctx, eps, src_id, cmd, dest);
    }
    let dst_id = dest.endpoint as usize;
    let src_source = Source {
        peer: ctx.self_peer,
        endpoint: src_id as u8,
    };

    // Destination checks: out of range, closed, wrong session -> NACK.
    let nack_type = if dst_id >= eps.len() {
        Some(NackKind::BadEndpoint)
    } else {
        match eps[dst_id].as_ref() {
            None => Some(NackKind::EndpointClosed),
            Some(d) if session.is_some_and(|s| s != d.session) => Some(NackKind::BadSession),
            Some(_) => None,
        }
    };
    if let Some(nt) = nack_type {
        let src = eps[src_id].as_mut().expect("source endpoint is open");
        // A NACK that waits for room in the source's event ring is
        // retried: count the drop once, when the command is done with.
        let count_drop = |src: &mut Endpoint<H>| match nt {
            NackKind::EndpointClosed => src.counters.bump(Counter::DropEndpointClosed),
            NackKind::BadSession => src.counters.bump(Counter::DropBadSession),
            NackKind::BadEndpoint => src.counters.bump(Counter::CmdsBadRef),
        };
        if let Command::Pull(p) = cmd {
            let status = match nt {
                NackKind::BadEndpoint => PullStatus::BadEndpoint,
                NackKind::EndpointClosed => PullStatus::EndpointClosed,
                NackKind::BadSession => PullStatus::BadSession,
            };
            if !event_room::<H>(&mut src.chan, 1) {
                return Outcome::Blocked;
            }
            count_drop(src);
            post(
                src,
                &Event::PullDone {
                    cookie: p.cookie,
                    status,
                    transferred: 0,
                },
            );
            return Outcome::Done;
        }
        // Acks to a bad destination are dropped silently (spec: TRUC never
        // causes a NACK).
        let Some(seqnum) = nackable(cmd) else {
            count_drop(src);
            return Outcome::Done;
        };
        if !event_room::<H>(&mut src.chan, 1) {
            return Outcome::Blocked;
        }
        count_drop(src);
        src.counters.bump(Counter::NacksSent);
        post(
            src,
            &Event::RecvNackLib {
                src: Source {
                    peer: ctx.self_peer,
                    endpoint: dest.endpoint,
                },
                nack_type: nt,
                lib_seqnum: seqnum,
            },
        );
        return Outcome::Done;
    }

    if let Command::Pull(p) = cmd {
        return pull(ctx, eps, src_id, dst_id, p);
    }
    if let Command::MediumFrag(m) = cmd {
        return medium(ctx, eps, src_id, dst_id, src_source, m);
    }

    // Everything else is one event at the destination (plus a receive-queue
    // slot for a small message).
    let needs_slot = matches!(cmd, Command::Small { .. });
    {
        let d = eps[dst_id].as_mut().expect("checked open");
        if !event_room::<H>(&mut d.chan, 1) || (needs_slot && !recvq_room::<H>(&mut d.chan)) {
            // Nothing is dropped yet (the command waits; `give_up` counts
            // the drop if it comes to that), and a wait is counted once,
            // not at every retry.
            if first_try(ctx) {
                eps[src_id]
                    .as_mut()
                    .expect("source endpoint is open")
                    .counters
                    .bump(Counter::BackPressured);
            }
            return Outcome::Blocked;
        }
    }
    let (sent_counter, bytes) = match cmd {
        Command::Tiny { data, .. } => (Counter::TinySent, data.len()),
        Command::Small { data, .. } => (Counter::SmallSent, data.len()),
        Command::Rndv(_) => (Counter::RndvSent, 0),
        Command::Notify(_) => (Counter::NotifySent, 0),
        Command::ConnectRequest(_) | Command::ConnectReply(_) => (Counter::ConnectSent, 0),
        Command::Liback(_) => (Counter::LibackSent, 0),
        _ => (Counter::CmdsProcessed, 0),
    };
    let d = eps[dst_id].as_mut().expect("checked open");
    let recv = |h: &mx_proto::msg::command::SendHdr| RecvHdr {
        src: src_source,
        seq: h.seq,
        match_info: h.match_info,
    };
    match cmd {
        Command::Tiny { hdr, data } => post(
            d,
            &Event::RecvTiny {
                hdr: recv(hdr),
                data,
            },
        ),
        Command::Small { hdr, data } => {
            let Ok(slot) = d.chan.recvq_claim() else {
                return Outcome::Blocked;
            };
            if d.chan.recvq_write(slot, data).is_err() {
                d.counters.bump(Counter::DropRecvqFull);
            }
            post(
                d,
                &Event::RecvSmall {
                    hdr: recv(hdr),
                    length: data.len() as u8,
                    recvq_slot: slot,
                },
            );
        }
        Command::Rndv(r) => post(
            d,
            &Event::RecvRndv {
                hdr: recv(&r.hdr),
                msg_length: r.msg_length,
                rdma: r.rdma,
            },
        ),
        Command::Notify(n) => post(
            d,
            &Event::RecvNotify {
                src: src_source,
                seq: n.seq,
                total_length: n.total_length,
                rdma_id: n.rdma_id,
                rdma_seqnum: n.rdma_seqnum,
            },
        ),
        Command::ConnectRequest(c) => post(
            d,
            &Event::RecvConnectRequest {
                src: src_source,
                src_session: c.src_session,
                app_key: c.app_key,
                target_recv_seqnum_start: c.target_recv_seqnum_start,
                connect_seqnum: c.connect_seqnum,
            },
        ),
        Command::ConnectReply(c) => post(
            d,
            &Event::RecvConnectReply {
                src: src_source,
                src_session: c.src_session,
                target_session: c.target_session,
                target_recv_seqnum_start: c.target_recv_seqnum_start,
                connect_seqnum: c.connect_seqnum,
                status: c.status,
            },
        ),
        Command::Liback(l) => post(
            d,
            &Event::RecvLiback {
                src: src_source,
                lib_seqnum: l.lib_seqnum,
                send_seq: l.send_seq,
                acknum: l.acknum,
            },
        ),
        _ => {}
    }
    d.counters.add(Counter::BytesReceived, bytes as u64);
    let s = eps[src_id].as_mut().expect("source endpoint is open");
    s.counters.bump(sent_counter);
    s.counters.add(Counter::BytesSent, bytes as u64);
    Outcome::Done
}

/// A command of `src_id` came back [`Outcome::Blocked`]: give up on it if
/// what blocks it is another endpoint of this host that keeps its event
/// ring or receive queue full, and it has waited
/// [`WireTiming::stalled_wait`](crate::WireTiming::stalled_wait) (or that
/// endpoint was already found stalled, or the command is a connect request
/// or reply, which never waits: the requester retries). Dropped and
/// counted, as a frame lost on the wire would be (the library
/// retransmits); a medium fragment's send-queue slot is handed back with
/// its completion. Returns true if the command is done with.
///
/// Not for pulls (their wait has its own bound, `staging_wait`) nor for a
/// source whose own event ring is full (that is its own back-pressure).
pub fn give_up<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    src_id: usize,
    cmd: &Command<'_>,
    stalled_wait: Duration,
) -> bool {
    if matches!(cmd, Command::Pull(_)) {
        return false;
    }
    let Some((dest, _)) = dest_of(cmd) else {
        return false;
    };
    if !ctx.peers.is_local(dest.peer) {
        return false;
    }
    let Some((s, d)) = pair(eps, src_id, usize::from(dest.endpoint)) else {
        return false;
    };
    if !event_room::<H>(&mut s.chan, 1) {
        return false;
    }
    if event_room::<H>(&mut d.chan, 1) && recvq_room::<H>(&mut d.chan) {
        d.stalled = false;
        return false;
    }
    let connect = matches!(cmd, Command::ConnectRequest(_) | Command::ConnectReply(_));
    let waited = ctx
        .blocked_since
        .map_or(Duration::ZERO, |t| ctx.now.saturating_duration_since(t));
    if !connect && !d.stalled && waited < stalled_wait {
        return false;
    }
    if !connect {
        d.stalled = true;
    }
    if let Command::MediumFrag(m) = cmd {
        if u32::from(m.sendq_slot) < s.chan.sendq_slots() {
            post(
                s,
                &Event::SendMediumDone {
                    sendq_slot: m.sendq_slot,
                },
            );
        }
    }
    // One drop, one count on each side: the sender's "destination
    // stalled", the destination's for whichever of its rings was full.
    s.counters.bump(Counter::DropStalledDest);
    d.counters.bump(if event_room::<H>(&mut d.chan, 1) {
        Counter::DropRecvqFull
    } else {
        Counter::DropEventRingFull
    });
    true
}

/// Whether this is a command's first attempt (not a retry after
/// back-pressure): what is counted per command is counted then.
#[inline]
fn first_try<H: HostPlatform>(ctx: &Ctx<'_, H>) -> bool {
    ctx.blocked_since.is_none()
}

/// Whether a command of `src` to local endpoint `dst` takes the network
/// path: either side opened with `MX_DISABLE_SHMEM`.
#[inline]
fn network_path<H: HostPlatform>(eps: &[Option<Endpoint<H>>], src: usize, dst: u8) -> bool {
    let flagged = |i: usize| {
        eps.get(i)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.no_shmem)
    };
    flagged(src) || flagged(usize::from(dst))
}

/// Two distinct endpoints mutably, or `None` when `a == b` or either is
/// out of range (a guest names any endpoint id it likes).
fn pair<T>(v: &mut [Option<T>], a: usize, b: usize) -> Option<(&mut T, &mut T)> {
    if a == b || a.max(b) >= v.len() {
        return None;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let (left, right) = v.split_at_mut(hi);
    let (x, y) = (left[lo].as_mut()?, right[0].as_mut()?);
    Some(if a < b { (x, y) } else { (y, x) })
}

fn medium<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    src_id: usize,
    dst_id: usize,
    src_source: Source,
    m: &MediumFrag,
) -> Outcome {
    let frags_max = ctx.medium_max.div_ceil(ctx.frag_max.max(1));
    {
        let s = eps[src_id].as_mut().expect("source endpoint is open");
        let bad = u32::from(m.sendq_slot) >= s.chan.sendq_slots()
            || u32::from(m.frag_length) > ctx.frag_max
            || m.msg_length > ctx.medium_max
            || u32::from(m.frag_seqnum) >= frags_max;
        if bad {
            let code = if u32::from(m.sendq_slot) >= s.chan.sendq_slots() {
                CommandErrorCode::BadSendqSlot
            } else {
                CommandErrorCode::BadLength
            };
            return reject(s, CommandKind::MediumFrag, code);
        }
    }
    let recv_ev = |slot: u16| Event::RecvMediumFrag {
        hdr: RecvHdr {
            src: src_source,
            seq: m.hdr.seq,
            match_info: m.hdr.match_info,
        },
        msg_length: m.msg_length,
        frag_seqnum: m.frag_seqnum,
        frag_length: m.frag_length,
        recvq_slot: slot,
    };
    let done_ev = Event::SendMediumDone {
        sendq_slot: m.sendq_slot,
    };
    let len = usize::from(m.frag_length);
    match pair(eps, src_id, dst_id) {
        Some((s, d)) => {
            if !event_room::<H>(&mut d.chan, 1)
                || !recvq_room::<H>(&mut d.chan)
                || !event_room::<H>(&mut s.chan, 1)
            {
                if first_try(ctx) {
                    s.counters.bump(Counter::BackPressured);
                }
                return Outcome::Blocked;
            }
            let Ok(slot) = d.chan.recvq_claim() else {
                return Outcome::Blocked;
            };
            if s.chan
                .copy_sendq_to(m.sendq_slot, len, &d.chan, slot)
                .is_err()
            {
                s.counters.bump(Counter::CmdsBadRef);
            }
            post(d, &recv_ev(slot));
            d.counters.add(Counter::BytesReceived, len as u64);
            post(s, &done_ev);
            s.counters.bump(Counter::MediumFragsSent);
            s.counters.add(Counter::BytesSent, len as u64);
        }
        None => {
            // A send to our own endpoint through the backend (MX_DISABLE_SELF).
            let e = eps[src_id].as_mut().expect("source endpoint is open");
            if !event_room::<H>(&mut e.chan, 2) || !recvq_room::<H>(&mut e.chan) {
                if first_try(ctx) {
                    e.counters.bump(Counter::BackPressured);
                }
                return Outcome::Blocked;
            }
            let Ok(slot) = e.chan.recvq_claim() else {
                return Outcome::Blocked;
            };
            if e.chan
                .copy_sendq_to(m.sendq_slot, len, &e.chan, slot)
                .is_err()
            {
                e.counters.bump(Counter::CmdsBadRef);
            }
            post(e, &recv_ev(slot));
            post(e, &done_ev);
            e.counters.bump(Counter::MediumFragsSent);
            e.counters.add(Counter::BytesSent, len as u64);
            e.counters.add(Counter::BytesReceived, len as u64);
        }
    }
    Outcome::Done
}

/// Intra-node pull: copy from the sender's window into the puller's region
/// ([`GuestMemory::copy_to`]: through a bounce buffer on local, where the
/// backend reaches each process with `process_vm_readv/writev`; directly
/// between the two mapped pools on Xen), then complete the pull.
fn pull<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    puller: usize,
    sender: usize,
    p: &Pull,
) -> Outcome {
    if !event_room::<H>(&mut eps[puller].as_mut().expect("puller is open").chan, 1) {
        return Outcome::Blocked;
    }
    // The sender is still staging this block into its pool: wait for it,
    // but not for ever (a sender that never registers the rest must not
    // hold this puller's commands back): then the pull fails.
    let waited = ctx
        .blocked_since
        .map_or(Duration::ZERO, |t| ctx.now.saturating_duration_since(t));
    if waited < ctx.staging_wait
        && eps[sender].as_ref().is_some_and(|s| {
            s.regions
                .pending(p.remote.id, u64::from(p.remote.offset), u64::from(p.length))
        })
    {
        return Outcome::Blocked;
    }
    // A staging window: copied as its blocks are staged, parked meanwhile
    // (never direct: a slot's bytes change when it is refilled).
    if eps[sender]
        .as_ref()
        .is_some_and(|s| s.regions.is_window(p.remote.id))
    {
        crate::window::start(ctx, eps, puller, sender, p);
        return Outcome::Done;
    }
    if p.direct {
        if let Some(ev) = direct_pull(ctx, eps, sender, p) {
            let e = eps[puller].as_mut().expect("puller is open");
            e.counters.bump(Counter::PullsDirect);
            post(e, &ev);
            return Outcome::Done;
        }
    }
    let started = Instant::now();
    let status = copy_pull(ctx, eps, puller, sender, p);
    let took = started.elapsed();
    if took > SLOW_COPY {
        // The loop serves nobody else meanwhile: worth knowing.
        tracing::warn!(
            bytes = p.length,
            ms = took.as_millis() as u64,
            ?status,
            "slow same-host pull copy"
        );
    }
    let transferred = if status == PullStatus::Success {
        p.length
    } else {
        0
    };
    let e = eps[puller].as_mut().expect("puller is open");
    if status == PullStatus::Success {
        e.counters.bump(Counter::PullsDone);
        e.counters.add(Counter::BytesReceived, u64::from(p.length));
    } else {
        e.counters.bump(Counter::CmdsBadRef);
    }
    post(
        e,
        &Event::PullDone {
            cookie: p.cookie,
            status,
            transferred,
        },
    );
    Outcome::Done
}

/// A same-host pull copy longer than this is logged.
const SLOW_COPY: Duration = Duration::from_millis(500);

/// The authorisation for the puller to copy the bytes itself, straight from
/// the sender process: only where the platform allows it (local) and the
/// range is in at most [`DIRECT_SEGS_MAX`] pieces. The puller learns the
/// sender's pid and the addresses of the range the sender exposed to it;
/// the kernel still checks the puller's ptrace rights over the sender, and a
/// puller that fails sends the pull again without `direct`.
fn direct_pull<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &[Option<Endpoint<H>>],
    sender: usize,
    p: &Pull,
) -> Option<Event<'static>> {
    let s = eps[sender].as_ref()?;
    let pid = s.memory.direct_pid()?;
    s.regions
        .resolve(
            p.remote.id,
            u64::from(p.remote.offset),
            u64::from(p.length),
            ctx.segs,
        )
        .ok()?;
    if ctx.segs.len() > DIRECT_SEGS_MAX {
        return None;
    }
    let mut pieces = [(0u64, 0u32); DIRECT_SEGS_MAX];
    for (d, &(addr, len)) in pieces.iter_mut().zip(ctx.segs.iter()) {
        *d = (addr, u32::try_from(len).ok()?);
    }
    Some(Event::PullDirect {
        cookie: p.cookie,
        pid,
        segs: DirectSegs::new(&pieces[..ctx.segs.len()])?,
    })
}

fn copy_pull<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    puller: usize,
    sender: usize,
    p: &Pull,
) -> PullStatus {
    let len = u64::from(p.length);
    let region_of = ctx.region_of;
    let mut src_segs = Vec::new();
    {
        let s = eps[sender].as_ref().expect("sender is open");
        if s.regions
            .resolve(p.remote.id, u64::from(p.remote.offset), len, ctx.segs)
            .is_err()
        {
            return PullStatus::BadRdmaWindow;
        }
        src_segs.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
    }
    let mut dst_segs = Vec::new();
    {
        let d = eps[puller].as_ref().expect("puller is open");
        if d.regions
            .resolve(p.local_region, u64::from(p.local_offset), len, ctx.segs)
            .is_err()
        {
            return PullStatus::BadLocalRegion;
        }
        dst_segs.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
    }
    let (Some(s), Some(d)) = (eps[sender].as_ref(), eps[puller].as_ref()) else {
        return PullStatus::EndpointClosed;
    };
    match s
        .memory
        .copy_to(&src_segs, &d.memory, &dst_segs, len, ctx.bounce)
    {
        Ok(()) => PullStatus::Success,
        Err(CopyFault::Source(_)) => PullStatus::Unreachable,
        Err(CopyFault::Destination(_)) => PullStatus::BadLocalRegion,
    }
}
