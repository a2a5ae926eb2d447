//! Same-host pulls from a staging window ([`RegionTable::set_window`]).
//!
//! A library that stages a large send through a bounded pool registers a
//! window of a few block-sized slots over the message; a pull of a block no
//! slot holds is parked on the sender's region table, the sender is asked
//! to stage the block (`StageNeeded`), and the pull goes on when it answers
//! (`RegionStage`). A pull is copied block by block as blocks become held,
//! so it may be longer than the window. Parked pulls never hold the
//! puller's command ring back: two endpoints pulling from each other's
//! windows must each see the other's stage answers.
//!
//! Nothing the sender says is trusted: its answer is checked against the
//! request outstanding for that slot ([`RegionTable::staged`]); a sender
//! that never answers costs only the pulls of its own windows, failed with
//! `Unreachable` after [`PullEnv::staging_wait`] without progress.
//!
//! [`RegionTable::set_window`]: crate::region::RegionTable::set_window
//! [`RegionTable::staged`]: crate::region::RegionTable::staged

use crate::counters::Counter;
use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use crate::region::{Ask, Parked};
use mx_proto::msg::command::Pull;
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::Event;
use mx_proto::platform::{CopyFault, GuestMemory, HostPlatform};
use std::time::{Duration, Instant};

/// What a same-host pull copy needs besides the two endpoints (lent by the
/// pass).
pub struct PullEnv<'a, H: HostPlatform> {
    /// Time of this pass.
    pub now: Instant,
    /// How long a same-host pull waits for its block to be registered
    /// ([`WireTiming::staging_wait`](crate::WireTiming::staging_wait)).
    pub staging_wait: Duration,
    /// Builds a platform region reference from a guest address range.
    pub region_of: fn(u64, usize) -> <H::Memory as GuestMemory>::Region,
    /// Bounce buffer for bulk copies between two guests.
    pub bounce: &'a mut Vec<u8>,
    /// Scratch for region resolution.
    pub segs: &'a mut Vec<(u64, usize)>,
}

/// What one attempt at a parked pull came to.
enum Step {
    /// Every byte copied, or the pull failed: post this `PullDone`.
    Finish(PullStatus),
    /// A block is not held yet: keep it parked.
    Wait,
}

/// A same-host pull of `puller` from the window `p.remote.id` of `sender`:
/// copy what is held now, and park the rest (asking the sender to stage the
/// next block). The caller checked the puller's event ring has room.
pub fn start<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    puller: usize,
    sender: usize,
    p: &Pull,
) {
    let Some(puller_session) = eps.session_of(puller) else {
        return;
    };
    let mut parked = Parked {
        puller: puller as u8,
        puller_session,
        pull: *p,
        done: 0,
        since: ctx.now,
    };
    match attempt(ctx, eps, sender, &mut parked) {
        Step::Finish(status) => finish(eps, &parked, status),
        Step::Wait => {
            let parked_ok = eps.get_mut(sender).is_some_and(|s| s.regions.park(parked));
            if !parked_ok {
                finish(eps, &parked, PullStatus::Unreachable);
            }
        }
    }
}

/// Go on with the pulls parked on `sender`'s windows: after its stage
/// answers, and once a pass for the timeouts and for requests that found
/// no room or no slot before.
pub fn resume<H: HostPlatform>(ctx: &mut PullEnv<'_, H>, eps: &mut Endpoints<H>, sender: usize) {
    let Some(s) = eps.get_mut(sender) else {
        return;
    };
    if !s.regions.has_parked() {
        return;
    }
    let parked = s.regions.take_parked();
    let mut keep = Vec::new();
    for mut pp in parked {
        let puller = usize::from(pp.puller);
        if eps.session_of(puller) != Some(pp.puller_session) {
            // The puller closed: nobody waits for this pull.
            continue;
        }
        if eps.get_mut(puller).is_none_or(|e| !e.event_room(1)) {
            // No room for its PullDone now; the rest waits too.
            keep.push(pp);
            continue;
        }
        match attempt(ctx, eps, sender, &mut pp) {
            Step::Finish(status) => finish(eps, &pp, status),
            Step::Wait => keep.push(pp),
        }
    }
    if let Some(s) = eps.get_mut(sender) {
        for pp in keep {
            // Cannot overflow: these came out of the same table.
            let _ = s.regions.park(pp);
        }
    }
}

/// Copy the held blocks of a parked pull from where it stands; ask for the
/// first block not held.
fn attempt<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    sender: usize,
    pp: &mut Parked,
) -> Step {
    let p = pp.pull;
    let id = p.remote.id;
    loop {
        if pp.done >= p.length {
            return Step::Finish(PullStatus::Success);
        }
        let Some(s) = eps.get(sender) else {
            return Step::Finish(PullStatus::EndpointClosed);
        };
        if s.regions.window_gen(id) != Some(p.remote.seqnum) {
            // Released or registered anew for another message.
            return Step::Finish(PullStatus::BadRdmaWindow);
        }
        let off = u64::from(p.remote.offset) + u64::from(pp.done);
        let left = u64::from(p.length - pp.done);
        let want = match (s.regions.missing(id, off, left), s.regions.window_block(id)) {
            (None, _) => left,
            // The blocks before the first missing one are held.
            (Some(b), Some(block)) if u64::from(b) * block > off => u64::from(b) * block - off,
            (Some(b), _) => return ask(ctx, eps, sender, pp, b),
        };
        match copy(ctx, eps, sender, pp, off, want) {
            Ok(()) => {
                pp.done += want as u32;
                pp.since = ctx.now;
                read_ahead(ctx, eps, sender, id, off + want - 1);
            }
            Err(status) => return Step::Finish(status),
        }
    }
}

/// Ask for the block after the one ending at message offset `last`, if a
/// slot behind it can take it ([`RegionTable::prefetch`]).
///
/// [`RegionTable::prefetch`]: crate::region::RegionTable::prefetch
fn read_ahead<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    sender: usize,
    id: u8,
    last: u64,
) {
    if let Some(s) = eps.get_mut(sender) {
        ask_read_ahead(s, id, last, ctx.now);
    }
}

/// Read-ahead on window `id` of `s` (same-host pulls and wire PULLs): ask
/// for the block after message offset `last` if a slot behind it can take
/// it and the event ring has room; otherwise nothing (a miss asks later).
pub fn ask_read_ahead<H: HostPlatform>(s: &mut Endpoint<H>, id: u8, last: u64, now: Instant) {
    if !s.event_room(1) {
        return;
    }
    if let Some((slot, gen, block)) = s.regions.prefetch(id, last, now) {
        post_stage_needed(s, id, gen, slot, block);
    }
}

/// Ask the sender to stage `block` of window `id` into `slot` (the caller
/// checked the event ring's room; a full ring drops the ask, which is
/// asked again on the next miss).
pub fn post_stage_needed<H: HostPlatform>(
    s: &mut Endpoint<H>,
    id: u8,
    gen: u8,
    slot: u16,
    block: u32,
) {
    let ev = Event::StageNeeded {
        region_id: id,
        gen,
        slot,
        block,
    };
    if s.post(&ev) {
        s.counters.bump(Counter::WindowStages);
    }
}

fn ask<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    sender: usize,
    pp: &Parked,
    block: u32,
) -> Step {
    if ctx.now.saturating_duration_since(pp.since) >= ctx.staging_wait {
        return Step::Finish(PullStatus::Unreachable);
    }
    let Some(s) = eps.get_mut(sender) else {
        return Step::Finish(PullStatus::EndpointClosed);
    };
    if !s.event_room(1) {
        // Asked again on the next pass.
        return Step::Wait;
    }
    let id = pp.pull.remote.id;
    if let Ask::Post { slot, gen } = s.regions.ask(id, block, ctx.now, ctx.staging_wait) {
        post_stage_needed(s, id, gen, slot, block);
    }
    Step::Wait
}

/// Copy `len` bytes from message offset `off` of the sender's window (all
/// held) to the puller's region at the pull's matching offset.
fn copy<H: HostPlatform>(
    ctx: &mut PullEnv<'_, H>,
    eps: &mut Endpoints<H>,
    sender: usize,
    pp: &Parked,
    off: u64,
    len: u64,
) -> Result<(), PullStatus> {
    let p = &pp.pull;
    let region_of = ctx.region_of;
    let puller = usize::from(pp.puller);
    let mut src = Vec::new();
    {
        let s = eps.get_mut(sender).ok_or(PullStatus::EndpointClosed)?;
        if s.regions.resolve(p.remote.id, off, len, ctx.segs).is_err() {
            return Err(PullStatus::BadRdmaWindow);
        }
        src.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
        s.regions.touch(p.remote.id, off, len, ctx.now, false);
    }
    let mut dst = Vec::new();
    {
        let d = eps.get(puller).ok_or(PullStatus::EndpointClosed)?;
        let at = u64::from(p.local_offset) + u64::from(pp.done);
        if d.regions
            .resolve(p.local_region, at, len, ctx.segs)
            .is_err()
        {
            return Err(PullStatus::BadLocalRegion);
        }
        dst.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
    }
    let (Some(s), Some(d)) = (eps.get(sender), eps.get(puller)) else {
        return Err(PullStatus::EndpointClosed);
    };
    match s.memory.copy_to(&src, &d.memory, &dst, len, ctx.bounce) {
        Ok(()) => Ok(()),
        Err(CopyFault::Source(_)) => Err(PullStatus::Unreachable),
        Err(CopyFault::Destination(_)) => Err(PullStatus::BadLocalRegion),
    }
}

fn finish<H: HostPlatform>(eps: &mut Endpoints<H>, pp: &Parked, status: PullStatus) {
    let Some(e) = eps
        .get_mut(usize::from(pp.puller))
        .filter(|e| e.session == pp.puller_session)
    else {
        return;
    };
    let transferred = if status == PullStatus::Success {
        e.counters.bump(Counter::PullsDone);
        e.counters
            .add(Counter::BytesReceived, u64::from(pp.pull.length));
        pp.pull.length
    } else {
        e.counters.bump(Counter::PullsFailed);
        0
    };
    let ev = Event::PullDone {
        cookie: pp.pull.cookie,
        status,
        transferred,
    };
    e.post(&ev);
}
