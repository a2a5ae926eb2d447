//! The intra-node shortcut: a command of one endpoint of this host to
//! another (or to itself, `MX_DISABLE_SELF`) becomes the destination's
//! event directly (written into its event ring and receive queue, no frame
//! built). What event a message becomes is
//! [`mx_proto::msg::arrival::arrival`], the same function the peer
//! channels and the wire's receive path use.
//!
//! [`crate::command::handle_command`] routes here once it knows the
//! destination is local; every function checks room for everything it
//! will write before writing anything ([`Outcome::Blocked`] otherwise).

use crate::counters::Counter;
use crate::endpoint::{Endpoint, Outcome};
use crate::endpoints::Endpoints;
use crate::window::{self, PullEnv};
use mx_proto::msg::arrival::arrival;
use mx_proto::msg::command::{CommandKind, MediumFrag, Pull};
use mx_proto::msg::event::{CommandErrorCode, DirectSegs, NackKind, PullStatus, DIRECT_SEGS_MAX};
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

/// The destination check: the NACK type a command to local endpoint
/// `dst_id` naming `session` gets (out of range, closed, wrong session),
/// or `None` if it may arrive.
pub fn refused<H: HostPlatform>(
    eps: &Endpoints<H>,
    dst_id: usize,
    session: Option<u32>,
) -> Option<NackKind> {
    if dst_id >= eps.len() {
        return Some(NackKind::BadEndpoint);
    }
    match eps.session_of(dst_id) {
        None => Some(NackKind::EndpointClosed),
        Some(s) if session.is_some_and(|want| want != s) => Some(NackKind::BadSession),
        Some(_) => None,
    }
}

/// Answer a refused command of `src_id` (see [`refused`]): a failed
/// `PullDone` for a pull, a NACK event for what can be NACKed, nothing
/// for an ack (spec: TRUC never causes a NACK). The drop is counted once,
/// when the command is done with (a NACK waiting for room in the source's
/// event ring is retried).
pub fn nack<H: HostPlatform>(
    eps: &mut Endpoints<H>,
    src_id: usize,
    dest: Dest,
    self_peer: u16,
    nt: NackKind,
    cmd: &Command<'_>,
) -> Outcome {
    let Some(src) = eps.get_mut(src_id) else {
        return Outcome::Done;
    };
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
        if !src.event_room(1) {
            return Outcome::Blocked;
        }
        count_drop(src);
        src.post(&Event::PullDone {
            cookie: p.cookie,
            status,
            transferred: 0,
        });
        return Outcome::Done;
    }
    let Some(seqnum) = nackable(cmd) else {
        count_drop(src);
        return Outcome::Done;
    };
    if !src.event_room(1) {
        return Outcome::Blocked;
    }
    count_drop(src);
    src.counters.bump(Counter::NacksSent);
    src.post(&Event::RecvNackLib {
        src: Source {
            peer: self_peer,
            endpoint: dest.endpoint,
        },
        nack_type: nt,
        lib_seqnum: seqnum,
    });
    Outcome::Done
}

/// A message that is one event at the destination `dst_id` (plus a
/// receive-queue slot for a small message): tiny, small, rendezvous,
/// notify, connect request or reply, liback. `src` is the source the
/// destination sees. `first_try`: not a retry after back-pressure (what
/// is counted per command is counted then).
pub fn message<H: HostPlatform>(
    eps: &mut Endpoints<H>,
    src_id: usize,
    dst_id: usize,
    src: Source,
    cmd: &Command<'_>,
    first_try: bool,
) -> Outcome {
    let needs_slot = matches!(cmd, Command::Small { .. });
    let Some(d) = eps.get_mut(dst_id) else {
        return Outcome::Done;
    };
    if !d.event_room(1) || (needs_slot && !d.recvq_room()) {
        // Nothing is dropped yet (the command waits; `give_up` counts
        // the drop if it comes to that), and a wait is counted once,
        // not at every retry.
        if first_try {
            if let Some(s) = eps.get_mut(src_id) {
                s.counters.bump(Counter::BackPressured);
            }
        }
        return Outcome::Blocked;
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
    let mut slot = 0;
    if let Command::Small { data, .. } = cmd {
        let Ok(s) = d.chan.recvq_claim() else {
            return Outcome::Blocked;
        };
        if d.chan.recvq_write(s, data).is_err() {
            d.counters.bump(Counter::DropRecvqFull);
        }
        slot = s;
    }
    if let Some(ev) = arrival(src, cmd, slot) {
        d.post(&ev);
    }
    d.counters.add(Counter::BytesReceived, bytes as u64);
    if let Some(s) = eps.get_mut(src_id) {
        s.counters.bump(sent_counter);
        s.counters.add(Counter::BytesSent, bytes as u64);
    }
    Outcome::Done
}

/// A command of `src_id` to local endpoint `dst_id` is blocked: give up on
/// it if that endpoint keeps its event ring or receive queue full and the
/// command has `waited`
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
    eps: &mut Endpoints<H>,
    src_id: usize,
    dst_id: usize,
    cmd: &Command<'_>,
    waited: Duration,
    stalled_wait: Duration,
) -> bool {
    let Some((s, d)) = eps.pair_mut(src_id, dst_id) else {
        return false;
    };
    if !s.event_room(1) {
        return false;
    }
    if d.event_room(1) && d.recvq_room() {
        d.stalled = false;
        return false;
    }
    let connect = matches!(cmd, Command::ConnectRequest(_) | Command::ConnectReply(_));
    if !connect && !d.stalled && waited < stalled_wait {
        return false;
    }
    if !connect {
        d.stalled = true;
    }
    if let Command::MediumFrag(m) = cmd {
        if u32::from(m.sendq_slot) < s.chan.sendq_slots() {
            s.post(&Event::SendMediumDone {
                sendq_slot: m.sendq_slot,
            });
        }
    }
    // One drop, one count on each side: the sender's "destination
    // stalled", the destination's for whichever of its rings was full.
    s.counters.bump(Counter::DropStalledDest);
    let full = if d.event_room(1) {
        Counter::DropRecvqFull
    } else {
        Counter::DropEventRingFull
    };
    d.counters.bump(full);
    true
}

/// A medium fragment from `src_id` to `dst_id` (possibly the same
/// endpoint: a send to itself through the backend, `MX_DISABLE_SELF`):
/// copied from the source's send-queue slot into a receive-queue slot of
/// the destination, which gets the arrival event, and the source its
/// `SendMediumDone`. `(frag_max, medium_max)` are the profile's limits.
pub fn medium<H: HostPlatform>(
    eps: &mut Endpoints<H>,
    (src_id, dst_id): (usize, usize),
    src: Source,
    m: &MediumFrag,
    (frag_max, medium_max): (u32, u32),
    first_try: bool,
) -> Outcome {
    let frags_max = medium_max.div_ceil(frag_max.max(1));
    {
        let Some(s) = eps.get_mut(src_id) else {
            return Outcome::Done;
        };
        let bad_slot = u32::from(m.sendq_slot) >= s.chan.sendq_slots();
        let bad = bad_slot
            || u32::from(m.frag_length) > frag_max
            || m.msg_length > medium_max
            || u32::from(m.frag_seqnum) >= frags_max;
        if bad {
            let code = if bad_slot {
                CommandErrorCode::BadSendqSlot
            } else {
                CommandErrorCode::BadLength
            };
            return s.reject(CommandKind::MediumFrag, code);
        }
    }
    let cmd = Command::MediumFrag(*m);
    let done_ev = Event::SendMediumDone {
        sendq_slot: m.sendq_slot,
    };
    let len = usize::from(m.frag_length);
    match eps.pair_mut(src_id, dst_id) {
        Some((s, d)) => {
            if !d.event_room(1) || !d.recvq_room() || !s.event_room(1) {
                if first_try {
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
            if let Some(ev) = arrival(src, &cmd, slot) {
                d.post(&ev);
            }
            d.counters.add(Counter::BytesReceived, len as u64);
            s.post(&done_ev);
            s.counters.bump(Counter::MediumFragsSent);
            s.counters.add(Counter::BytesSent, len as u64);
        }
        None => {
            // A send to our own endpoint through the backend (MX_DISABLE_SELF).
            let Some(e) = eps.get_mut(src_id).filter(|_| src_id == dst_id) else {
                return Outcome::Done;
            };
            if !e.event_room(2) || !e.recvq_room() {
                if first_try {
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
            if let Some(ev) = arrival(src, &cmd, slot) {
                e.post(&ev);
            }
            e.post(&done_ev);
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
///
/// `waited`: how long this command has been retried (a pull of a block
/// still being registered waits up to `staging_wait`).
pub fn pull<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    puller: usize,
    sender: usize,
    p: &Pull,
    waited: Duration,
) -> Outcome {
    let Some(e) = eps.get_mut(puller) else {
        return Outcome::Done;
    };
    if !e.event_room(1) {
        return Outcome::Blocked;
    }
    // The sender is still staging this block into its pool: wait for it,
    // but not for ever (a sender that never registers the rest must not
    // hold this puller's commands back): then the pull fails.
    if waited < ctx.staging_wait
        && eps.get(sender).is_some_and(|s| {
            s.regions
                .pending(p.remote.id, u64::from(p.remote.offset), u64::from(p.length))
        })
    {
        return Outcome::Blocked;
    }
    // A staging window: copied as its blocks are staged, parked meanwhile
    // (never direct: a slot's bytes change when it is refilled).
    if eps
        .get(sender)
        .is_some_and(|s| s.regions.is_window(p.remote.id))
    {
        window::start(ctx, eps, puller, sender, p);
        return Outcome::Done;
    }
    if p.direct {
        if let Some(ev) = direct_pull(ctx, eps, sender, p) {
            if let Some(e) = eps.get_mut(puller) {
                e.counters.bump(Counter::PullsDirect);
                e.post(&ev);
            }
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
    let Some(e) = eps.get_mut(puller) else {
        return Outcome::Done;
    };
    if status == PullStatus::Success {
        e.counters.bump(Counter::PullsDone);
        e.counters.add(Counter::BytesReceived, u64::from(p.length));
    } else {
        e.counters.bump(Counter::CmdsBadRef);
    }
    e.post(&Event::PullDone {
        cookie: p.cookie,
        status,
        transferred,
    });
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
    ctx: &mut PullEnv<'_, H>,
    eps: &Endpoints<H>,
    sender: usize,
    p: &Pull,
) -> Option<Event<'static>> {
    let s = eps.get(sender)?;
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
    ctx: &mut PullEnv<'_, H>,
    eps: &Endpoints<H>,
    puller: usize,
    sender: usize,
    p: &Pull,
) -> PullStatus {
    let len = u64::from(p.length);
    let region_of = ctx.region_of;
    let mut src_segs = Vec::new();
    {
        let Some(s) = eps.get(sender) else {
            return PullStatus::EndpointClosed;
        };
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
        let Some(d) = eps.get(puller) else {
            return PullStatus::EndpointClosed;
        };
        if d.regions
            .resolve(p.local_region, u64::from(p.local_offset), len, ctx.segs)
            .is_err()
        {
            return PullStatus::BadLocalRegion;
        }
        dst_segs.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
    }
    let (Some(s), Some(d)) = (eps.get(sender), eps.get(puller)) else {
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
