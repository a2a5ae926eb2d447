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
//! `Unreachable` after [`Ctx::staging_wait`] without progress.
//!
//! [`RegionTable::set_window`]: crate::region::RegionTable::set_window
//! [`RegionTable::staged`]: crate::region::RegionTable::staged

use crate::counters::Counter;
use crate::deliver::Ctx;
use crate::endpoint::Endpoint;
use crate::region::{Ask, Parked};
use mx_proto::msg::command::Pull;
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::Event;
use mx_proto::platform::{CopyFault, GuestMemory, HostPlatform};
use std::time::Instant;

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
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    puller: usize,
    sender: usize,
    p: &Pull,
) {
    let Some(puller_session) = eps[puller].as_ref().map(|e| e.session) else {
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
            let s = eps[sender].as_mut().expect("sender is open");
            if !s.regions.park(parked) {
                finish(eps, &parked, PullStatus::Unreachable);
            }
        }
    }
}

/// Go on with the pulls parked on `sender`'s windows: after its stage
/// answers, and once a pass for the timeouts and for requests that found
/// no room or no slot before.
pub fn resume<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    sender: usize,
) {
    let Some(s) = eps.get_mut(sender).and_then(Option::as_mut) else {
        return;
    };
    if !s.regions.has_parked() {
        return;
    }
    let parked = s.regions.take_parked();
    let mut keep = Vec::new();
    for mut pp in parked {
        let puller = usize::from(pp.puller);
        let alive = eps
            .get(puller)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.session == pp.puller_session);
        if !alive {
            // The puller closed: nobody waits for this pull.
            continue;
        }
        if eps[puller]
            .as_mut()
            .is_none_or(|e| !e.chan.event_room(1).unwrap_or(false))
        {
            // No room for its PullDone now; the rest waits too.
            keep.push(pp);
            continue;
        }
        match attempt(ctx, eps, sender, &mut pp) {
            Step::Finish(status) => finish(eps, &pp, status),
            Step::Wait => keep.push(pp),
        }
    }
    if let Some(s) = eps[sender].as_mut() {
        for pp in keep {
            // Cannot overflow: these came out of the same table.
            let _ = s.regions.park(pp);
        }
    }
}

/// Copy the held blocks of a parked pull from where it stands; ask for the
/// first block not held.
fn attempt<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    sender: usize,
    pp: &mut Parked,
) -> Step {
    let p = pp.pull;
    let id = p.remote.id;
    loop {
        if pp.done >= p.length {
            return Step::Finish(PullStatus::Success);
        }
        let Some(s) = eps[sender].as_ref() else {
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
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    sender: usize,
    id: u8,
    last: u64,
) {
    if let Some(s) = eps[sender].as_mut() {
        ask_read_ahead(s, id, last, ctx.now);
    }
}

/// Read-ahead on window `id` of `s` (same-host pulls and wire PULLs): ask
/// for the block after message offset `last` if a slot behind it can take
/// it and the event ring has room; otherwise nothing (a miss asks later).
pub fn ask_read_ahead<H: HostPlatform>(s: &mut Endpoint<H>, id: u8, last: u64, now: Instant) {
    if !s.chan.event_room(1).unwrap_or(false) {
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
    if s.chan.push_event(&ev).is_ok() {
        s.counters.bump(Counter::EventsPosted);
        s.counters.bump(Counter::WindowStages);
        s.dirty = true;
    }
}

fn ask<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
    sender: usize,
    pp: &Parked,
    block: u32,
) -> Step {
    if ctx.now.saturating_duration_since(pp.since) >= ctx.staging_wait {
        return Step::Finish(PullStatus::Unreachable);
    }
    let s = eps[sender].as_mut().expect("checked by the caller");
    if !s.chan.event_room(1).unwrap_or(false) {
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
    ctx: &mut Ctx<'_, H>,
    eps: &mut [Option<Endpoint<H>>],
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
        let s = eps[sender].as_mut().ok_or(PullStatus::EndpointClosed)?;
        if s.regions.resolve(p.remote.id, off, len, ctx.segs).is_err() {
            return Err(PullStatus::BadRdmaWindow);
        }
        src.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
        s.regions.touch(p.remote.id, off, len, ctx.now, false);
    }
    let mut dst = Vec::new();
    {
        let d = eps[puller].as_ref().ok_or(PullStatus::EndpointClosed)?;
        let at = u64::from(p.local_offset) + u64::from(pp.done);
        if d.regions
            .resolve(p.local_region, at, len, ctx.segs)
            .is_err()
        {
            return Err(PullStatus::BadLocalRegion);
        }
        dst.extend(ctx.segs.iter().map(|&(a, l)| region_of(a, l)));
    }
    let (Some(s), Some(d)) = (eps[sender].as_ref(), eps[puller].as_ref()) else {
        return Err(PullStatus::EndpointClosed);
    };
    match s.memory.copy_to(&src, &d.memory, &dst, len, ctx.bounce) {
        Ok(()) => Ok(()),
        Err(CopyFault::Source(_)) => Err(PullStatus::Unreachable),
        Err(CopyFault::Destination(_)) => Err(PullStatus::BadLocalRegion),
    }
}

fn finish<H: HostPlatform>(eps: &mut [Option<Endpoint<H>>], pp: &Parked, status: PullStatus) {
    let Some(e) = eps
        .get_mut(usize::from(pp.puller))
        .and_then(Option::as_mut)
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
    if e.chan.push_event(&ev).is_ok() {
        e.counters.bump(Counter::EventsPosted);
        e.dirty = true;
    } else {
        e.counters.bump(Counter::DropEventRingFull);
    }
}
