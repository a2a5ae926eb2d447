//! What the backend does with one validated command of an endpoint.
//!
//! [`handle_command`] serves the commands that touch only their own
//! endpoint (region registrations, windows, stage answers) and routes the
//! others: to [`crate::shortcut`] when the destination is an endpoint of
//! this host (straight into its event ring and receive queue, no frame
//! built), to [`crate::wire::send`] when it is a remote peer, or a local
//! endpoint when either side opened with `MX_DISABLE_SHMEM` (the wire layer
//! loops those frames back, see [`crate::wire::loopback`]).
//!
//! Every handler first checks that everything it will write has room (the
//! destination's event ring and receive queue, the source's event ring for a
//! completion or a NACK) and only then writes, so a command either happens
//! whole or not at all. "No room" is [`Outcome::Blocked`]: the caller keeps
//! the command and retries it later, which back-pressures the sender instead
//! of dropping a local message.

use crate::counters::Counter;
use crate::endpoint::Outcome;
use crate::endpoints::Endpoints;
use crate::peers::PeerTable;
use crate::shortcut;
use crate::window::{self, PullEnv};
use crate::wire::send::SendEnv;
use crate::wire::Wire;
use mx_proto::msg::arrival::destination;
use mx_proto::msg::event::CommandErrorCode;
use mx_proto::msg::{Command, Dest, Source};
use mx_proto::platform::HostPlatform;
use std::time::{Duration, Instant};

/// The environment a command is handled in (lent by the pass).
pub struct Ctx<'a, H: HostPlatform> {
    /// Peer index of this host.
    pub self_peer: u16,
    /// The peer table (whether a peer index names this host, remote MACs).
    pub peers: &'a PeerTable,
    /// The wire side, when the board has a NIC.
    pub net: Option<&'a mut Wire<H>>,
    /// Largest medium fragment of the profile.
    pub frag_max: u32,
    /// Largest medium message of the profile.
    pub medium_max: u32,
    /// Since when the command being handled has been blocked (a retry).
    pub blocked_since: Option<Instant>,
    /// The time, and what same-host pull copies need.
    pub env: PullEnv<'a, H>,
}

impl<H: HostPlatform> Ctx<'_, H> {
    /// How long the command being handled has waited (zero on its first
    /// try).
    fn waited(&self) -> Duration {
        self.blocked_since.map_or(Duration::ZERO, |t| {
            self.env.now.saturating_duration_since(t)
        })
    }
}

/// Handle one command of endpoint `src_id`.
pub fn handle_command<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut Endpoints<H>,
    src_id: usize,
    cmd: &Command<'_>,
) -> Outcome {
    let kind = cmd.kind();
    // Commands that touch only the source endpoint.
    match cmd {
        Command::RegionRegister(r) => {
            let Some(src) = eps.get_mut(src_id) else {
                return Outcome::Done;
            };
            return match src.regions.register(r) {
                Ok(()) => Outcome::Done,
                Err(_) => src.reject(kind, CommandErrorCode::BadRegion),
            };
        }
        Command::RegionDeregister { region_id } => {
            if let Some(src) = eps.get_mut(src_id) {
                src.regions.deregister(*region_id);
            }
            return Outcome::Done;
        }
        Command::RegionWindow(w) => {
            let Some(src) = eps.get_mut(src_id) else {
                return Outcome::Done;
            };
            return match src.regions.set_window(w) {
                Ok(()) => Outcome::Done,
                Err(_) => src.reject(kind, CommandErrorCode::BadRegion),
            };
        }
        Command::RegionStage(st) => {
            let Some(src) = eps.get_mut(src_id) else {
                return Outcome::Done;
            };
            if src.regions.staged(st, ctx.env.now) {
                window::resume(&mut ctx.env, eps, src_id);
            } else {
                src.counters.bump(Counter::DropStageBad);
            }
            return Outcome::Done;
        }
        Command::PeerHello(_) | Command::PullGrant(_) => {
            // Messages of a peer channel, never of a guest to us.
            return match eps.get_mut(src_id) {
                Some(src) => src.reject(kind, CommandErrorCode::Malformed),
                None => Outcome::Done,
            };
        }
        _ => {}
    }
    let Some((dest, session)) = destination(cmd) else {
        return Outcome::Done;
    };
    // Remote peers are served by the NIC layer; without one, the peer
    // index is not one this backend can reach. MX_DISABLE_SHMEM: the
    // network path between two endpoints of this host when either asked
    // for it (both directions of a pair then take the same path, and a
    // large message's data too: the puller's PULL is addressed to the
    // sender's endpoint). `net` exists whenever an endpoint has the flag
    // (open creates it).
    if !ctx.peers.is_local(dest.peer) || (ctx.net.is_some() && network_path(eps, src_id, dest)) {
        return to_wire(ctx, eps, src_id, cmd, dest);
    }
    let src = Source {
        peer: ctx.self_peer,
        endpoint: src_id as u8,
    };
    let dst_id = usize::from(dest.endpoint);
    if let Some(nack) = shortcut::refused(eps, dst_id, session) {
        return shortcut::nack(eps, src_id, dest, ctx.self_peer, nack, cmd);
    }
    let first_try = ctx.blocked_since.is_none();
    match cmd {
        Command::Pull(p) => {
            let waited = ctx.waited();
            shortcut::pull(&mut ctx.env, eps, src_id, dst_id, p, waited)
        }
        Command::MediumFrag(m) => shortcut::medium(
            eps,
            (src_id, dst_id),
            src,
            m,
            (ctx.frag_max, ctx.medium_max),
            first_try,
        ),
        _ => shortcut::message(eps, src_id, dst_id, src, cmd, first_try),
    }
}

/// A command for the wire side, if the board has one.
fn to_wire<H: HostPlatform>(
    ctx: &mut Ctx<'_, H>,
    eps: &mut Endpoints<H>,
    src_id: usize,
    cmd: &Command<'_>,
    dest: Dest,
) -> Outcome {
    let Some(wire) = ctx.net.as_deref_mut() else {
        return match eps.get_mut(src_id) {
            Some(src) => src.reject(cmd.kind(), CommandErrorCode::BadPeer),
            None => Outcome::Done,
        };
    };
    let mut env = SendEnv {
        wire,
        peers: ctx.peers,
        now: ctx.env.now,
        segs: &mut *ctx.env.segs,
    };
    crate::wire::send::command(&mut env, eps, src_id, cmd, dest)
}

/// Whether a command of `src` to local endpoint `dest` takes the network
/// path: either side opened with `MX_DISABLE_SHMEM`.
#[inline]
fn network_path<H: HostPlatform>(eps: &Endpoints<H>, src: usize, dest: Dest) -> bool {
    let flagged = |i: usize| eps.get(i).is_some_and(|e| e.no_shmem);
    flagged(src) || flagged(usize::from(dest.endpoint))
}

/// A command of `src_id` came back [`Outcome::Blocked`]: give up on it if
/// what blocks it is another endpoint of this host that keeps its event
/// ring or receive queue full (see [`shortcut::give_up`]). Returns true if
/// the command is done with.
pub fn give_up<H: HostPlatform>(
    ctx: &Ctx<'_, H>,
    eps: &mut Endpoints<H>,
    src_id: usize,
    cmd: &Command<'_>,
    stalled_wait: Duration,
) -> bool {
    if matches!(cmd, Command::Pull(_)) {
        return false;
    }
    let Some((dest, _)) = destination(cmd) else {
        return false;
    };
    if !ctx.peers.is_local(dest.peer) {
        return false;
    }
    shortcut::give_up(
        eps,
        src_id,
        usize::from(dest.endpoint),
        cmd,
        ctx.waited(),
        stalled_wait,
    )
}
