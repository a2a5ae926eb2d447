//! Peer channels in the library: messages to another endpoint of this host
//! go straight into memory the two libraries share ([`mx_proto::peer`]),
//! with the backend out of the data path.
//!
//! The protocol core does not know: it writes the same commands as ever,
//! and the shell (crate::endpoint) offers each one here first. A command to
//! a partner whose channel is up leaves through the channel; anything else
//! (no channel yet, a full channel, a connect, a pull, a region, and a
//! rendezvous, which must follow its window's registration to the backend)
//! goes to the backend as before. The receiving library turns what it pops into the
//! event the backend would have posted ([`mx_proto::msg::arrival`]), with
//! the source the channel is bound to, and feeds its core.
//!
//! **Order across the switch.** The core orders every partner's messages by
//! seqnum and keeps early ones (up to 4096) until the gap before them is
//! filled, so a message that overtakes an older one still crossing the
//! backend waits for it, and a message that falls back to the backend
//! because the channel is full is merged in order too. Nothing here keeps
//! its own sequence: the hand-over is the core's ordinary reordering.
//!
//! **Set-up.** The first data message to a same-host partner makes the
//! library offer a channel (at most once a second per partner while offers
//! fail); the other library accepts the backend's offer event and rings the
//! doorbell, which tells us it is up. Both may offer at once: the backend
//! takes the first and refuses the second (`Busy`), whose sender accepts
//! the first's offer instead.
//!
//! **Faults.** Everything popped is a copy, parsed and checked (kind,
//! destination endpoint and session, the data slot's order and bounds)
//! before it reaches the core; a channel that lies once is dropped, and the
//! core's retransmission brings what it lost through the backend. A peer
//! that dies or closes its endpoint hangs the doorbell up, or, where a
//! doorbell cannot hang up (a Xen event channel), the backend posts
//! `PeerClosed`: whatever it had sent is still read, then the channel is
//! dropped.

use crate::core::{Core, FragRef, MsgBuf, NoRecvQueue, RecvQueue, SlotBytes, Time};
use crate::endpoint::Guest;
use frontend::{Frontend, FrontendError, PeerLink};
use mx_proto::msg::arrival::arrival;
use mx_proto::msg::command::{MediumFrag, PeerHello, Pull, PullGrant};
use mx_proto::msg::control::ControlError;
use mx_proto::msg::event::{DirectSegs, DIRECT_SEGS_MAX};
use mx_proto::msg::Dest;
use mx_proto::msg::{CmdSlot, Command, Source, QUEUE_SLOT_SIZE};
use mx_proto::peer::{DataSlot, PeerChannel, PeerSizes};
use mx_proto::platform::{BellState, PeerBell, SharedMem};
use mx_proto::region::RegionTable;
use std::sync::Arc;

/// Wait this long before offering a channel to the same endpoint again
/// after an offer failed or a channel went down (µs).
const RETRY_US: Time = 1_000_000;
/// An offer not accepted within this long is withdrawn (µs).
const PENDING_US: Time = 10_000_000;
/// Most messages taken from one channel per progress pass, so that one
/// busy peer cannot starve the backend's events or the other peers.
const POP_BATCH: usize = 256;
/// Most messages held back for room in one full channel; past it, messages
/// to that partner go through the backend until the channel drains.
const HOLD_MSGS: usize = 512;
/// Most medium fragments among them (4 KiB each: 1 MiB per channel).
const HOLD_FRAGS: usize = 256;

/// What the peer channels of an endpoint counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Channels that came up (offered by us and accepted, or accepted by us).
    pub up: u64,
    /// Channels dropped (hang-up, lie, lapse).
    pub down: u64,
    /// Offers that failed (refused, busy, unsupported).
    pub refused: u64,
    /// Messages sent through a channel.
    pub sent: u64,
    /// Messages received through a channel.
    pub received: u64,
    /// Messages to a partner with a channel that went through the backend
    /// because the channel was full and its hold queue too.
    pub overflow: u64,
    /// Messages held back for room in a full channel (they left through it
    /// later, in order).
    pub held: u64,
    /// Messages dropped because the peer lied (malformed, wrong
    /// destination, out-of-order slot); each drops its channel too.
    pub lies: u64,
    /// Fragment bytes copied out of the user's buffers for a channel (into
    /// a data slot, or into the buffer of a message held for room).
    pub data_out_bytes: u64,
    /// Fragment bytes copied out of data slots (into their destinations).
    pub data_in_bytes: u64,
}

struct Slot {
    ep: u8,
    session: u32,
    channel: u32,
    chan: PeerChannel<Arc<dyn SharedMem>>,
    bell: Arc<dyn PeerBell>,
    /// The other end accepted (it rang, or something arrived).
    up: bool,
    /// When the offer was made (pending slots lapse).
    since: Time,
    /// Pushed since the last publish.
    pushed: bool,
    /// Hung up or lied: read what is left, then forget.
    dead: bool,
    /// The backend said the other end is gone (`PeerClosed`): treated as
    /// a hang-up at the next maintenance.
    closed: bool,
    /// Messages that found the channel full, oldest first: they wait for
    /// the peer to release room rather than crossing the backend.
    held: std::collections::VecDeque<Held>,
    /// Fragments among `held`.
    held_frags: usize,
    /// The other library's process id (the backend vouches for it; 0
    /// where no library may read another's memory).
    peer_pid: u32,
    /// We may read the other process (the kernel let us open its memory):
    /// what our hello says.
    we_read: bool,
    /// Our hello (with `we_read`) is in the channel.
    hello_sent: bool,
    /// The other end's hello said it reads us: our rendezvous may take the
    /// channel, and it pulls them with our grants.
    they_read: bool,
    /// By rdma id, the rdma seqnum of the other end's rendezvous that came
    /// through this channel and was not notified yet: its pull must take
    /// the channel too (the backend may not know that window yet).
    rndv_in: Box<[Option<u8>; 256]>,
}

/// What became of a command offered to a peer channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Not taken: it goes to the backend.
    No,
    /// Pushed into the channel (a fragment's send-queue slot is free).
    Now,
    /// Held back for room: a fragment keeps its send-queue slot until it
    /// leaves ([`Peers::take_freed`]), which bounds what is held by the
    /// core's own queue.
    Held,
}

/// A message waiting for room, with its fragment's bytes if it is one.
struct Held {
    slot: CmdSlot,
    frag: Option<(Box<[u8]>, usize)>,
}

/// The peer channels of one endpoint.
pub(crate) struct Peers {
    enabled: bool,
    /// Our registered regions are in our own memory and we pull directly:
    /// large messages may take our channels (see [`Peers::set_direct`]).
    direct: bool,
    me: u8,
    session: u32,
    self_peer: u16,
    slots: Vec<Slot>,
    /// Endpoints a channel was wanted for, and when we last tried.
    tried: Vec<(u8, Time)>,
    /// Endpoints a send wanted a channel to since the last maintenance.
    wanted: Vec<(u8, u32)>,
    /// Offers to accept (or decline) at the next maintenance, with the
    /// offerer's pid.
    offers: Vec<(u32, Source, u32, PeerSizes, u32)>,
    /// Fragment buffers of held messages that left, kept for the next.
    spare: Vec<Box<[u8]>>,
    /// The core's send-queue slots of held fragments that left since the
    /// shell last asked ([`Peers::take_freed`]).
    freed: Vec<u16>,
    /// Our own registered regions, as we register them with the backend:
    /// what we answer the pulls of our rendezvous through a channel from.
    own: RegionTable,
    /// Scratch of [`RegionTable::resolve`].
    segs: Vec<(u64, usize)>,
    /// Grants that arrived: `(cookie, sender pid, pieces)`, for the shell
    /// to copy ([`Peers::take_pulls`]).
    grants: Vec<(u32, u32, DirectSegs)>,
    /// Pulls of rendezvous that came through a channel which cannot be
    /// served (the channel cannot take them): failed, by cookie.
    failed: Vec<u32>,
    stats: PeerStats,
}

/// Where a command that may take a peer channel goes: the messages of the
/// MX library protocol between two endpoints, as `(peer, endpoint,
/// session, data)` (`data`: a message that asks for a channel). Connects
/// stay with the backend (it knows which endpoints exist), and regions are
/// requests to the backend itself; a pull takes the channel only under the
/// rules of [`Peers::try_send`].
fn channel_dest(cmd: &Command<'_>) -> Option<(u16, u8, u32, bool)> {
    let (dest, session, data) = match cmd {
        Command::Tiny { hdr, .. } | Command::Small { hdr, .. } => (hdr.dest, hdr.session, true),
        Command::MediumFrag(m) => (m.hdr.dest, m.hdr.session, true),
        Command::Rndv(r) => (r.hdr.dest, r.hdr.session, true),
        Command::Notify(n) => (n.dest, n.session, false),
        Command::Liback(l) => (l.dest, l.session, false),
        Command::Pull(p) => (p.dest, p.session, false),
        Command::PeerHello(h) => (h.dest, h.session, false),
        Command::PullGrant(g) => (g.dest, g.session, false),
        _ => return None,
    };
    Some((dest.peer, dest.endpoint, session, data))
}

/// A fragment taken from a channel's data slot, as the core reads it: each
/// read is one copy from the shared slot into its destination.
struct DataOf<'a> {
    chan: &'a PeerChannel<Arc<dyn SharedMem>>,
    data: DataSlot,
    copied: std::cell::Cell<u64>,
    failed: std::cell::Cell<bool>,
}

impl RecvQueue for DataOf<'_> {
    fn slot_len(&self, _idx: u16) -> usize {
        self.data.len()
    }
    fn read(&self, _idx: u16, off: usize, out: &mut [u8]) -> bool {
        let ok = self.chan.read_data(&self.data, off, out).is_ok();
        if ok {
            self.copied.set(self.copied.get() + out.len() as u64);
        } else {
            self.failed.set(true);
        }
        ok
    }
}

impl Peers {
    /// Peer channels of endpoint `me` (session `session`) on a host whose
    /// index in the peer table is `self_peer`; `enabled` false never
    /// offers and declines every offer.
    pub(crate) fn new(enabled: bool, me: u8, session: u32, self_peer: u16) -> Self {
        Peers {
            enabled,
            direct: false,
            me,
            session,
            self_peer,
            slots: Vec::new(),
            tried: Vec::new(),
            wanted: Vec::new(),
            offers: Vec::new(),
            spare: Vec::new(),
            freed: Vec::new(),
            own: RegionTable::default(),
            segs: Vec::new(),
            grants: Vec::new(),
            failed: Vec::new(),
            stats: PeerStats::default(),
        }
    }

    /// Whether large messages may take our channels: our regions are
    /// segments of our own memory (no staging pool) and our pulls are
    /// direct. Off by default (the tests' simulated peers, Xen).
    pub(crate) fn set_direct(&mut self, direct: bool) {
        self.direct = direct;
    }

    /// The counters.
    pub(crate) fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Channels up.
    pub(crate) fn up(&self) -> usize {
        self.slots.iter().filter(|s| s.up && !s.dead).count()
    }

    /// Offer the command the core just wrote into `slot` to the channel
    /// of its partner; a medium fragment's bytes (`frag`) are copied with
    /// the core straight from the user's buffer into a data slot (or, when
    /// the channel is full, into the buffer of the held message, while the
    /// request still has the user's buffer). [`Taken::No`]: it must go to
    /// the backend.
    pub(crate) fn try_send<B: MsgBuf>(
        &mut self,
        core: &mut Core<B>,
        slot: &CmdSlot,
        frag: Option<&FragRef>,
    ) -> Taken {
        // A retransmission from a slot the core kept goes to the backend,
        // which reads that slot: the user's buffer may be back with the
        // application.
        if frag.is_some_and(|f| !f.needs_fill()) {
            return Taken::No;
        }
        let Ok(cmd) = Command::parse(slot) else {
            return Taken::No;
        };
        match frag {
            Some(frag) => self.offer(&cmd, slot, Some(&mut FromCore { core, frag })),
            None => self.offer(&cmd, slot, None),
        }
    }

    /// [`Peers::try_send`] of command `cmd` (encoded in `slot`) whose
    /// fragment bytes, if it is a medium fragment, come from `frag`.
    fn offer(
        &mut self,
        cmd: &Command<'_>,
        slot: &CmdSlot,
        mut frag: Option<&mut dyn FragSource>,
    ) -> Taken {
        if !self.enabled {
            return Taken::No;
        }
        // Our registrations still go to the backend; we keep a copy to
        // answer the pulls that come through a channel.
        match cmd {
            Command::RegionRegister(r) => {
                let _ = self.own.register(r);
                return Taken::No;
            }
            Command::RegionDeregister { region_id } => {
                self.own.deregister(*region_id);
                return Taken::No;
            }
            Command::RegionWindow(w) => {
                let _ = self.own.set_window(w);
                return Taken::No;
            }
            _ => {}
        }
        let Some((peer, ep, session, data_msg)) = channel_dest(cmd) else {
            return Taken::No;
        };
        if peer != self.self_peer || ep == self.me {
            return Taken::No;
        }
        let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.ep == ep && s.session == session && !s.dead)
        else {
            if data_msg && !self.wanted.contains(&(ep, session)) {
                self.wanted.push((ep, session));
            }
            return Taken::No;
        };
        if !s.up {
            return Taken::No;
        }
        match cmd {
            // A rendezvous takes the channel only to a peer that pulls it
            // itself, with our grant: a window it could not pull directly
            // must be pulled through the backend, and then it must follow
            // its registration through the backend's command ring.
            Command::Rndv(r) => {
                let direct = s.they_read
                    && self.direct
                    && !self.own.is_window(r.rdma.id)
                    && self
                        .own
                        .resolve(
                            r.rdma.id,
                            u64::from(r.rdma.offset),
                            u64::from(r.msg_length),
                            &mut self.segs,
                        )
                        .is_ok()
                    && self.segs.len() <= DIRECT_SEGS_MAX;
                if !direct {
                    return Taken::No;
                }
            }
            // Our pull of a rendezvous that came through the channel goes
            // back through it (the backend may not know the window yet);
            // other pulls go to the backend.
            Command::Pull(p) => {
                let came_here = s.rndv_in[usize::from(p.remote.id)] == Some(p.remote.seqnum);
                if !came_here {
                    return Taken::No;
                }
                if !(p.direct && s.we_read) {
                    // Our direct copy failed after all (the core asks
                    // again without it): this one fails, and our new hello
                    // tells the peer to send its rendezvous through the
                    // backend from now on.
                    s.we_read = false;
                    s.hello_sent = false;
                    s.rndv_in[usize::from(p.remote.id)] = None;
                    self.failed.push(p.cookie);
                    return Taken::Now;
                }
            }
            Command::Notify(n) if s.rndv_in[usize::from(n.rdma_id)] == Some(n.rdma_seqnum) => {
                s.rndv_in[usize::from(n.rdma_id)] = None;
            }
            _ => {}
        }
        let medium = matches!(cmd, Command::MediumFrag(_));
        if !medium {
            // Only a fragment has bytes besides its command.
            frag = None;
        }
        if let Command::MediumFrag(m) = cmd {
            // No bytes (or not as many as it says): the backend's path.
            if frag
                .as_deref()
                .is_none_or(|src| src.len() != usize::from(m.frag_length))
            {
                return Taken::No;
            }
        }
        // Older held messages go first; this one goes now only if they all
        // left and there is room.
        if drain_held(s, &mut self.spare, &mut self.freed).is_err() {
            return Taken::No;
        }
        if s.held.is_empty() {
            match s.chan.has_room(medium) {
                Ok(true) => {
                    let pushed = match frag.as_deref_mut() {
                        Some(src) => push_frag(&mut s.chan, slot, src, &mut self.stats),
                        None => push_now(&mut s.chan, slot, None),
                    };
                    if pushed.is_err() {
                        // Room was checked: the peer broke an index (or the
                        // user's buffer is gone).
                        s.dead = true;
                        return Taken::No;
                    }
                    s.pushed = true;
                    self.stats.sent += 1;
                    return Taken::Now;
                }
                Ok(false) => {}
                Err(_) => {
                    s.dead = true;
                    return Taken::No;
                }
            }
        }
        // Full: hold it back for room, within bounds (a peer that stops
        // reading must not make us buffer without end).
        if s.held.len() >= HOLD_MSGS || (medium && s.held_frags >= HOLD_FRAGS) {
            self.stats.overflow += 1;
            return Taken::No;
        }
        // A held fragment's bytes are copied now, while its request still
        // has the user's buffer; it keeps its send-queue slot until it
        // leaves.
        let frag = match frag {
            Some(src) => {
                let mut buf = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| vec![0; QUEUE_SLOT_SIZE].into_boxed_slice());
                let len = src.len();
                if len > buf.len() || !copy_into(src, &mut buf[..len]) {
                    self.spare.push(buf);
                    return Taken::No;
                }
                self.stats.data_out_bytes += len as u64;
                s.held_frags += 1;
                Some((buf, len))
            }
            None => None,
        };
        s.held.push_back(Held { slot: *slot, frag });
        self.stats.held += 1;
        self.stats.sent += 1;
        Taken::Held
    }

    /// The core's send-queue slots of held fragments that left since the
    /// last call (each to be completed with `SendMediumDone`).
    pub(crate) fn take_freed(&mut self) -> impl Iterator<Item = u16> + '_ {
        self.freed.drain(..)
    }

    /// The pulls the channels answered or failed since the last call:
    /// grants `(cookie, sender pid, pieces)` to copy, and cookies of pulls
    /// that cannot be served.
    pub(crate) fn take_pulls(
        &mut self,
    ) -> (
        std::vec::Drain<'_, (u32, u32, DirectSegs)>,
        std::vec::Drain<'_, u32>,
    ) {
        // Drained, not taken: the buffers are kept for the next pulls (no
        // allocation per large message).
        (self.grants.drain(..), self.failed.drain(..))
    }

    /// Whether pulls wait in [`Peers::take_pulls`].
    pub(crate) fn has_pulls(&self) -> bool {
        !self.grants.is_empty() || !self.failed.is_empty()
    }

    /// Make what was pushed visible, ringing peers that sleep.
    pub(crate) fn flush(&mut self) {
        for s in &mut self.slots {
            if s.up && !s.hello_sent && !s.dead {
                let hello = Command::PeerHello(PeerHello {
                    dest: Dest {
                        peer: self.self_peer,
                        endpoint: s.ep,
                    },
                    session: s.session,
                    direct: s.we_read && self.direct,
                });
                send_or_hold(s, &hello, &mut self.spare, &mut self.freed);
                s.hello_sent = true;
            }
            if !s.held.is_empty() && !s.dead {
                let _ = drain_held(s, &mut self.spare, &mut self.freed);
            }
            if s.pushed {
                s.pushed = false;
                if s.chan.publish().is_needed() && s.bell.ring().is_err() {
                    s.dead = true;
                }
            }
        }
    }

    /// Feed the core what arrived on every channel. True if anything did.
    pub(crate) fn receive<B: MsgBuf>(&mut self, core: &mut Core<B>, now: Time) -> bool {
        let mut moved = false;
        for i in 0..self.slots.len() {
            // An idle channel costs one load of the peer's index.
            match self.slots[i].chan.ready() {
                Ok(true) => moved |= self.receive_one(i, core, now),
                Ok(false) => {}
                Err(_) => self.slots[i].dead = true,
            }
        }
        moved
    }

    fn receive_one<B: MsgBuf>(&mut self, i: usize, core: &mut Core<B>, now: Time) -> bool {
        let (me, session, self_peer) = (self.me, self.session, self.self_peer);
        let direct = self.direct;
        let Peers {
            slots,
            stats,
            own,
            segs,
            grants,
            spare,
            freed,
            ..
        } = self;
        let s = &mut slots[i];
        let src = Source {
            peer: self_peer,
            endpoint: s.ep,
        };
        let mut moved = false;
        let mut raw = CmdSlot::default();
        for _ in 0..POP_BATCH {
            match s.chan.pop_into(&mut raw) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    s.dead = true;
                    break;
                }
            }
            moved = true;
            // Something arrived: the other end has the channel.
            if !s.up {
                s.up = true;
                stats.up += 1;
            }
            let ok = match Command::parse(&raw) {
                Ok(cmd) if !addressed(&cmd, me, session) => false,
                // The channel's own messages.
                Ok(Command::PeerHello(h)) => {
                    s.they_read = h.direct;
                    true
                }
                Ok(Command::PullGrant(g)) => {
                    // Whatever the pieces, they are read from the process
                    // the backend vouched for, and only as far as the pull
                    // asked: a lying grant garbles its own message only.
                    grants.push((g.cookie, s.peer_pid, g.segs));
                    true
                }
                Ok(Command::Pull(p)) => {
                    let own = direct.then_some(&*own);
                    serve_pull(s, own, segs, &p, src, spare, freed)
                }
                Ok(cmd) => {
                    let ok = hand_to_core(core, now, src, (me, session), &cmd, &mut s.chan, stats);
                    if let (true, Command::Rndv(r)) = (ok, cmd) {
                        s.rndv_in[usize::from(r.rdma.id)] = Some(r.rdma.seqnum);
                    }
                    ok
                }
                Err(_) => false,
            };
            if ok {
                stats.received += 1;
            } else {
                stats.lies += 1;
                s.dead = true;
                break;
            }
        }
        // A sender holding messages back for room sleeps on the doorbell
        // until we release: ring it when it asked.
        if moved && s.chan.release().is_needed() && s.bell.ring().is_err() {
            s.dead = true;
        }
        moved
    }

    /// An offer event from the backend, handled at the next maintenance.
    pub(crate) fn offered(
        &mut self,
        channel: u32,
        src: Source,
        session: u32,
        sizes: PeerSizes,
        pid: u32,
    ) {
        // Bounded: a backend cannot make us queue more offers than
        // endpoints could exist.
        if self.offers.len() < 256 {
            self.offers.push((channel, src, session, sizes, pid));
        }
    }

    /// The backend's notice that channel `channel`'s other end is gone
    /// (unknown channels: already dropped, ignored).
    pub(crate) fn closed(&mut self, channel: u32) {
        for s in self.slots.iter_mut().filter(|s| s.channel == channel) {
            s.closed = true;
        }
        // An offer still queued for it is declined rather than accepted.
        self.offers.retain(|o| o.0 != channel);
    }

    /// The control-path work: accept or decline offers, make the offers
    /// sends asked for, see which pending offers were accepted, and drop
    /// dead channels. `bells`: also look for hang-ups of channels that are
    /// up (a syscall per channel; the background thread does it).
    pub(crate) fn maintain<B: MsgBuf>(
        &mut self,
        frontend: &Frontend<Guest>,
        core: &mut Core<B>,
        now: Time,
        bells: bool,
    ) {
        for (channel, src, session, sizes, pid) in std::mem::take(&mut self.offers) {
            let taken = self.slots.iter().any(|s| s.ep == src.endpoint && !s.dead);
            if !self.enabled || taken || src.peer != self.self_peer || src.endpoint == self.me {
                let _ = frontend.close_peer(self.me, channel);
                continue;
            }
            match frontend.accept_peer(self.me, channel, sizes, pid) {
                Ok(link) => {
                    self.add(link, src.endpoint, session, now, true);
                }
                Err(_) => self.stats.refused += 1,
            }
        }
        for (ep, session) in std::mem::take(&mut self.wanted) {
            let recent = self
                .tried
                .iter()
                .any(|&(e, t)| e == ep && now.saturating_sub(t) < RETRY_US);
            if recent || self.slots.iter().any(|s| s.ep == ep && !s.dead) {
                continue;
            }
            self.tried.retain(|&(e, _)| e != ep);
            self.tried.push((ep, now));
            match frontend.offer_peer(self.me, ep, PeerSizes::default()) {
                Ok(link) => self.add(link, ep, session, now, false),
                Err(FrontendError::Refused(ControlError::Unsupported)) => {
                    // The platform or the backend has none: stop asking.
                    self.stats.refused += 1;
                    self.enabled = false;
                }
                Err(_) => self.stats.refused += 1,
            }
        }
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.closed && !s.dead {
                s.dead = true;
                // What it sent before it went is still good.
                self.receive_one(i, core, now);
                continue;
            }
            if s.dead || (s.up && !bells) {
                continue;
            }
            match s.bell.drain() {
                Ok(BellState::Rung) => {
                    if !s.up {
                        s.up = true;
                        self.stats.up += 1;
                    }
                }
                Ok(BellState::Quiet) => {}
                Ok(BellState::HungUp) | Err(_) => {
                    s.dead = true;
                    // What it sent before it went is still good.
                    self.receive_one(i, core, now);
                }
            }
            let s = &mut self.slots[i];
            if !s.up && now.saturating_sub(s.since) > PENDING_US {
                s.dead = true;
            }
        }
        self.reap(frontend, now);
    }

    fn add(&mut self, link: PeerLink, ep: u8, session: u32, now: Time, up: bool) {
        let PeerLink {
            channel,
            chan,
            bell,
            peer_pid,
        } = link;
        self.slots.push(Slot {
            ep,
            session,
            channel,
            chan,
            bell: Arc::from(bell),
            up,
            since: now,
            pushed: false,
            dead: false,
            closed: false,
            held: std::collections::VecDeque::new(),
            held_frags: 0,
            peer_pid,
            we_read: peer_pid != 0 && can_read(peer_pid),
            hello_sent: false,
            they_read: false,
            rndv_in: Box::new([None; 256]),
        });
        if up {
            self.stats.up += 1;
        }
    }

    fn reap(&mut self, frontend: &Frontend<Guest>, now: Time) {
        let me = self.me;
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].dead {
                let s = self.slots.swap_remove(i);
                self.stats.down += 1;
                // The backend forgets the pair (it frees our count against
                // its limit); it may already have (the peer closed).
                let _ = frontend.close_peer(me, s.channel);
                self.tried.retain(|&(e, _)| e != s.ep);
                self.tried.push((s.ep, now));
            } else {
                i += 1;
            }
        }
    }

    /// Before sleeping: clear the doorbells and arm every channel. False if
    /// something arrived meanwhile or a channel went down (make progress
    /// first).
    pub(crate) fn prepare_to_sleep(&mut self) -> bool {
        let mut sleep = true;
        let stats = &mut self.stats;
        for s in &mut self.slots {
            if s.dead || s.closed {
                return false;
            }
            match s.bell.drain() {
                Ok(BellState::Quiet) => {}
                Ok(BellState::Rung) => {
                    if !s.up {
                        s.up = true;
                        stats.up += 1;
                        sleep = false;
                    }
                }
                Ok(BellState::HungUp) | Err(_) => {
                    s.dead = true;
                    return false;
                }
            }
            match s.chan.prepare_to_sleep() {
                Ok(true) => {}
                Ok(false) => sleep = false,
                Err(_) => {
                    s.dead = true;
                    return false;
                }
            }
            if let Some(h) = s.held.front() {
                // Held messages wait for the peer's release to ring us.
                match s.chan.prepare_to_wait_for_space(h.frag.is_some()) {
                    Ok(true) => {}
                    Ok(false) => sleep = false,
                    Err(_) => {
                        s.dead = true;
                        return false;
                    }
                }
            }
        }
        sleep
    }

    /// The doorbells to wait on besides the backend's.
    pub(crate) fn bells(&self) -> Vec<Arc<dyn PeerBell>> {
        self.slots.iter().map(|s| s.bell.clone()).collect()
    }

    /// Whether any channel needs the control path (offers, wants, dead or
    /// pending channels).
    pub(crate) fn needs_maintenance(&self) -> bool {
        !self.offers.is_empty()
            || !self.wanted.is_empty()
            || self.slots.iter().any(|s| s.dead || s.closed || !s.up)
    }
}

/// Push one message (and its fragment's bytes, written into the next data
/// slot it is then made to name) into a channel with room.
fn push_now(
    chan: &mut PeerChannel<Arc<dyn SharedMem>>,
    slot: &CmdSlot,
    frag: Option<&[u8]>,
) -> Result<(), Broken> {
    let Some(bytes) = frag else {
        return chan.push(slot).map_err(|_| Broken);
    };
    let Ok(Command::MediumFrag(m)) = Command::parse(slot) else {
        return Err(Broken);
    };
    let data_slot = chan.put_data(bytes).map_err(|_| Broken)?;
    let mut out = CmdSlot::default();
    Command::MediumFrag(MediumFrag {
        sendq_slot: data_slot,
        ..m
    })
    .emit(&mut out)
    .map_err(|_| Broken)?;
    chan.push(&out).map_err(|_| Broken)
}

/// A channel whose indices the peer broke (room was checked first).
struct Broken;

/// Where the bytes of a medium fragment offered to a channel come from.
trait FragSource {
    /// The fragment's length in bytes.
    fn len(&self) -> usize;
    /// `sink(offset in the fragment, bytes)` once per piece, in order;
    /// false if a `sink` call or the source failed.
    fn copy(&mut self, sink: &mut dyn FnMut(usize, &[u8]) -> bool) -> bool;
}

/// A fragment the core just emitted: its bytes are still in the user's
/// buffer ([`Core::copy_frag`]).
struct FromCore<'a, B: MsgBuf> {
    core: &'a mut Core<B>,
    frag: &'a FragRef,
}

impl<B: MsgBuf> FragSource for FromCore<'_, B> {
    fn len(&self) -> usize {
        self.frag.len as usize
    }
    fn copy(&mut self, sink: &mut dyn FnMut(usize, &[u8]) -> bool) -> bool {
        self.core.copy_frag(self.frag, sink)
    }
}

impl FragSource for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn copy(&mut self, sink: &mut dyn FnMut(usize, &[u8]) -> bool) -> bool {
        sink(0, self)
    }
}

/// Copy all of `src` into `out` (exactly its length).
fn copy_into(src: &mut dyn FragSource, out: &mut [u8]) -> bool {
    let mut filled = 0usize;
    let ok = src.copy(
        &mut |off, bytes| match out.get_mut(off..off + bytes.len()) {
            Some(d) => {
                d.copy_from_slice(bytes);
                filled += bytes.len();
                true
            }
            None => false,
        },
    );
    ok && filled == out.len()
}

/// Push one medium fragment into a channel with room, its bytes copied
/// once from `src` straight into the data slot it is then made to name.
fn push_frag(
    chan: &mut PeerChannel<Arc<dyn SharedMem>>,
    slot: &CmdSlot,
    src: &mut dyn FragSource,
    stats: &mut PeerStats,
) -> Result<(), Broken> {
    let Ok(Command::MediumFrag(m)) = Command::parse(slot) else {
        return Err(Broken);
    };
    let d = chan.claim_data(src.len()).map_err(|_| Broken)?;
    let mut n = 0u64;
    let copied = {
        let chan = &*chan;
        src.copy(&mut |off, bytes| {
            n += bytes.len() as u64;
            chan.write_data(&d, off, bytes).is_ok()
        })
    };
    stats.data_out_bytes += n;
    if !copied {
        return Err(Broken);
    }
    let mut out = CmdSlot::default();
    Command::MediumFrag(MediumFrag {
        sendq_slot: d.slot(),
        ..m
    })
    .emit(&mut out)
    .map_err(|_| Broken)?;
    chan.push(&out).map_err(|_| Broken)
}

/// Whether a message popped from a channel is addressed to us (endpoint
/// and session).
fn addressed(cmd: &Command<'_>, me: u8, session: u32) -> bool {
    channel_dest(cmd).is_some_and(|(_, ep, to_session, _)| ep == me && to_session == session)
}

/// Send one message of the channel's own now, or hold it for room; a peer
/// that makes us hold more than [`HOLD_MSGS`] of them without reading is
/// dropped.
fn send_or_hold(s: &mut Slot, cmd: &Command<'_>, spare: &mut Vec<Box<[u8]>>, freed: &mut Vec<u16>) {
    let mut slot = CmdSlot::default();
    if cmd.emit(&mut slot).is_err() || drain_held(s, spare, freed).is_err() {
        s.dead = true;
        return;
    }
    if s.held.is_empty() {
        match s.chan.has_room(false) {
            Ok(true) => {
                if push_now(&mut s.chan, &slot, None).is_err() {
                    s.dead = true;
                }
                s.pushed = true;
                return;
            }
            Ok(false) => {}
            Err(_) => {
                s.dead = true;
                return;
            }
        }
    }
    if s.held.len() >= HOLD_MSGS {
        s.dead = true;
        return;
    }
    s.held.push_back(Held { slot, frag: None });
}

/// Answer a direct pull of one of our rendezvous that came through the
/// channel: where its bytes are in our process, from our own region table
/// (no pieces when we cannot say, or when `own` is `None`: our regions are
/// not in our own memory; the puller fails that pull). True unless the peer
/// lied.
fn serve_pull(
    s: &mut Slot,
    own: Option<&RegionTable>,
    segs: &mut Vec<(u64, usize)>,
    p: &Pull,
    src: Source,
    spare: &mut Vec<Box<[u8]>>,
    freed: &mut Vec<u16>,
) -> bool {
    if !p.direct {
        // We never send those through a channel.
        return false;
    }
    let mut pieces = [(0u64, 0u32); DIRECT_SEGS_MAX];
    let resolved = own.map(|own| {
        own.resolve(
            p.remote.id,
            u64::from(p.remote.offset),
            u64::from(p.length),
            segs,
        )
        .is_ok()
            && !own.is_window(p.remote.id)
    });
    let n = match resolved {
        Some(true) if segs.len() <= DIRECT_SEGS_MAX => {
            for (d, &(addr, len)) in pieces.iter_mut().zip(segs.iter()) {
                // A piece of a region longer than 4 GiB cannot be named.
                let Ok(len) = u32::try_from(len) else {
                    return false;
                };
                *d = (addr, len);
            }
            segs.len()
        }
        _ => 0,
    };
    let grant = Command::PullGrant(PullGrant {
        dest: Dest {
            peer: src.peer,
            endpoint: src.endpoint,
        },
        session: s.session,
        cookie: p.cookie,
        segs: DirectSegs::new(&pieces[..n]).expect("at most DIRECT_SEGS_MAX"),
    });
    send_or_hold(s, &grant, spare, freed);
    true
}

/// Whether we may read process `pid`'s memory: the kernel checks the same
/// rights for opening its `mem` file as for `process_vm_readv`.
fn can_read(pid: u32) -> bool {
    std::fs::File::open(format!("/proc/{pid}/mem")).is_ok()
}

/// Push held messages, oldest first, while the channel has room. `Err` if
/// the peer broke an index (the channel is marked dead).
fn drain_held(
    s: &mut Slot,
    spare: &mut Vec<Box<[u8]>>,
    freed: &mut Vec<u16>,
) -> Result<(), Broken> {
    while let Some(h) = s.held.front() {
        match s.chan.has_room(h.frag.is_some()) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(_) => {
                s.dead = true;
                return Err(Broken);
            }
        }
        let frag = h.frag.as_ref().map(|(b, n)| &b[..*n]);
        if push_now(&mut s.chan, &h.slot, frag).is_err() {
            s.dead = true;
            return Err(Broken);
        }
        s.pushed = true;
        let h = s.held.pop_front().expect("front exists");
        if let Some((buf, _)) = h.frag {
            s.held_frags -= 1;
            spare.push(buf);
            if let Ok(Command::MediumFrag(m)) = Command::parse(&h.slot) {
                freed.push(m.sendq_slot);
            }
        }
    }
    Ok(())
}

/// Check one message popped from a channel and hand it to the core as the
/// event the backend would have posted. False if the peer lied.
fn hand_to_core<B: MsgBuf>(
    core: &mut Core<B>,
    now: Time,
    src: Source,
    (me, session): (u8, u32),
    cmd: &Command<'_>,
    chan: &mut PeerChannel<Arc<dyn SharedMem>>,
    stats: &mut PeerStats,
) -> bool {
    let Some((_, ep, to_session, _)) = channel_dest(cmd) else {
        return false;
    };
    if ep != me || to_session != session {
        return false;
    }
    let Some(ev) = arrival(src, cmd, 0) else {
        return false;
    };
    // The payload of a small message is inline (already a private copy),
    // a fragment's in its data slot: order and bounds checked first, then
    // the core copies it once, straight into its destination.
    match cmd {
        Command::MediumFrag(m) => {
            let Ok(data) = chan.open_data(m.sendq_slot, usize::from(m.frag_length)) else {
                return false;
            };
            let q = DataOf {
                chan,
                data,
                copied: std::cell::Cell::new(0),
                failed: std::cell::Cell::new(false),
            };
            core.handle_event(now, &ev, &q);
            stats.data_in_bytes += q.copied.get();
            !q.failed.get()
        }
        Command::Small { data, .. } => {
            core.handle_event(now, &ev, &SlotBytes(data));
            true
        }
        _ => {
            core.handle_event(now, &ev, &NoRecvQueue);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    //! A lying peer, simulated: we hold the creator's end of a channel and
    //! write into it what a hostile or broken library could.
    use super::*;
    use crate::core::Config;
    use mx_proto::msg::command::SendHdr;
    use mx_proto::msg::command::{RawSeg, RegionRegister, Rndv};
    use mx_proto::msg::{Dest, RdmaRef, Seq};
    use mx_proto::platform::local::{LocalBell, MemfdPages};
    use mx_proto::ring::layout::offset;

    const ME: u8 = 2;
    const SESSION: u32 = 0x77;
    const LIAR: u8 = 5;

    struct Rig {
        peers: Peers,
        core: Core<Vec<u8>>,
        liar: PeerChannel<Arc<dyn SharedMem>>,
        mem: Arc<dyn SharedMem>,
        _liar_bell: LocalBell,
    }

    fn rig() -> Rig {
        let sizes = PeerSizes {
            msg_slots: 8,
            data_slots: 4,
        };
        let mem: Arc<dyn SharedMem> = Arc::new(MemfdPages::new(sizes.pages().unwrap()).unwrap());
        let liar = PeerChannel::create(mem.clone(), &sizes).unwrap();
        let ours = PeerChannel::attach(mem.clone(), &sizes).unwrap();
        let (bell, liar_bell) = LocalBell::pair().unwrap();
        let mut peers = Peers::new(true, ME, SESSION, 0);
        peers.add(
            PeerLink {
                channel: 1,
                chan: ours,
                bell: Box::new(bell),
                peer_pid: 0,
            },
            LIAR,
            0x99,
            0,
            true,
        );
        Rig {
            peers,
            core: Core::new(Config::new(ME, 0, 0x1, SESSION, 1)).unwrap(),
            liar,
            mem,
            _liar_bell: liar_bell,
        }
    }

    fn hdr(endpoint: u8, session: u32) -> SendHdr {
        SendHdr {
            dest: Dest { peer: 0, endpoint },
            session,
            seq: Seq {
                seqnum: 1,
                piggyack: 0,
            },
            match_info: 3,
        }
    }

    fn send(r: &mut Rig, cmd: &Command<'_>) {
        let mut slot = CmdSlot::default();
        cmd.emit(&mut slot).unwrap();
        r.liar.push(&slot).unwrap();
        let _ = r.liar.publish();
    }

    fn alive(r: &Rig) -> bool {
        r.peers.slots.iter().any(|s| !s.dead)
    }

    #[test]
    fn a_well_formed_message_is_taken() {
        let mut r = rig();
        send(
            &mut r,
            &Command::Tiny {
                hdr: hdr(ME, SESSION),
                data: b"hi",
            },
        );
        assert!(r.peers.receive(&mut r.core, 0));
        assert_eq!((r.peers.stats().received, r.peers.stats().lies), (1, 0));
        assert!(alive(&r));
    }

    #[test]
    fn a_message_for_another_endpoint_or_session_is_a_lie() {
        for (ep, session) in [(ME + 1, SESSION), (ME, SESSION + 1)] {
            let mut r = rig();
            send(
                &mut r,
                &Command::Tiny {
                    hdr: hdr(ep, session),
                    data: b"x",
                },
            );
            r.peers.receive(&mut r.core, 0);
            assert_eq!(r.peers.stats().lies, 1);
            assert!(!alive(&r), "a lying channel is dropped");
        }
    }

    #[test]
    fn backend_requests_and_garbage_are_lies() {
        let mut r = rig();
        send(&mut r, &Command::RegionDeregister { region_id: 1 });
        r.peers.receive(&mut r.core, 0);
        assert_eq!(r.peers.stats().lies, 1);

        let mut r = rig();
        let mut junk = CmdSlot::default();
        junk.0.fill(0xee);
        r.liar.push(&junk).unwrap();
        let _ = r.liar.publish();
        r.peers.receive(&mut r.core, 0);
        assert_eq!(r.peers.stats().lies, 1);
        assert!(!alive(&r));
    }

    #[test]
    fn a_fragment_that_names_the_wrong_slot_or_none_is_a_lie() {
        let frag = |slot| {
            Command::MediumFrag(MediumFrag {
                hdr: hdr(ME, SESSION),
                msg_length: 9000,
                frag_seqnum: 0,
                frag_length: 8192,
                sendq_slot: slot,
            })
        };
        // Names a data slot it never filled.
        let mut r = rig();
        send(&mut r, &frag(0));
        r.peers.receive(&mut r.core, 0);
        assert_eq!(r.peers.stats().lies, 1);
        // Fills slot 0 and names slot 1.
        let mut r = rig();
        r.liar.put_data(&[7; 8192]).unwrap();
        send(&mut r, &frag(1));
        r.peers.receive(&mut r.core, 0);
        assert_eq!(r.peers.stats().lies, 1);
        // The honest version passes.
        let mut r = rig();
        let slot = r.liar.put_data(&[7; 8192]).unwrap();
        send(&mut r, &frag(slot));
        r.peers.receive(&mut r.core, 0);
        assert_eq!((r.peers.stats().received, r.peers.stats().lies), (1, 0));
    }

    #[test]
    fn impossible_ring_indices_drop_the_channel_without_reading_out_of_it() {
        let mut r = rig();
        // The creator's message ring is ring 0: claim 1000 messages in a
        // ring of 8.
        let prod = offset::INDEX_BLOCK + offset::PROD;
        r.mem.write_at(prod, &1000u32.to_le_bytes()).unwrap();
        assert!(!r.peers.receive(&mut r.core, 0));
        assert!(!alive(&r));
        assert!(
            !r.peers.prepare_to_sleep(),
            "a dead channel is reaped first"
        );
    }

    #[test]
    fn the_backends_notice_drops_the_channel_after_reading_what_came() {
        let mut r = rig();
        send(
            &mut r,
            &Command::Tiny {
                hdr: hdr(ME, SESSION),
                data: b"last",
            },
        );
        r.peers.closed(99); // another channel: nothing happens
        assert!(!r.peers.needs_maintenance());
        assert!(alive(&r));
        r.peers.closed(1);
        assert!(r.peers.needs_maintenance());
        assert!(
            !r.peers.prepare_to_sleep(),
            "a closed channel is reaped first"
        );
        // What maintenance does with it, without a frontend to tell.
        let i = r.peers.slots.iter().position(|s| s.closed).unwrap();
        r.peers.slots[i].dead = true;
        r.peers.receive_one(i, &mut r.core, 0);
        assert_eq!(
            r.peers.stats().received,
            1,
            "the message sent before it went"
        );
        assert!(!alive(&r));
    }

    /// What the liar (here an honest peer) pops, as (seqnum, fragment
    /// bytes' first byte).
    fn drain_liar(r: &mut Rig, sizes_data: bool) -> Vec<(u16, Option<u8>)> {
        let mut got = Vec::new();
        while let Some(raw) = r.liar.pop().unwrap() {
            match Command::parse(&raw).unwrap() {
                Command::Tiny { hdr, .. } => got.push((hdr.seq.seqnum, None)),
                Command::PeerHello(h) => assert!(!h.direct, "no pid, no direct pulls"),
                Command::MediumFrag(m) => {
                    assert!(sizes_data);
                    let mut b = vec![0; usize::from(m.frag_length)];
                    r.liar.take_data(m.sendq_slot, &mut b).unwrap();
                    got.push((m.hdr.seq.seqnum, Some(b[0])));
                }
                c => panic!("unexpected {c:?}"),
            }
        }
        let _ = r.liar.release();
        got
    }

    #[test]
    fn a_full_channel_holds_messages_back_in_order_instead_of_the_backend() {
        let mut r = rig();
        let to_liar = |seqnum: u16| SendHdr {
            seq: Seq {
                seqnum,
                piggyack: 0,
            },
            ..hdr(LIAR, 0x99)
        };
        // 8 message slots and 4 data slots: 12 tinies and 6 fragments,
        // interleaved, all taken by the channel.
        let mut frag = [0u8; 4096];
        for seq in 0..18u16 {
            let cmd = if seq % 3 == 2 {
                frag[0] = seq as u8;
                Command::MediumFrag(MediumFrag {
                    hdr: to_liar(seq),
                    msg_length: 4096,
                    frag_seqnum: 0,
                    frag_length: 4096,
                    sendq_slot: 0,
                })
            } else {
                Command::Tiny {
                    hdr: to_liar(seq),
                    data: b"t",
                }
            };
            let mut slot = CmdSlot::default();
            cmd.emit(&mut slot).unwrap();
            assert_ne!(
                r.peers.offer(&cmd, &slot, Some(&mut &frag[..])),
                Taken::No,
                "message {seq}"
            );
        }
        r.peers.flush();
        let st = r.peers.stats();
        assert_eq!((st.sent, st.overflow), (18, 0));
        assert!(st.held > 0);
        // The peer reads; each flush sends what now fits, oldest first.
        let mut got = Vec::new();
        for _ in 0..10 {
            got.extend(drain_liar(&mut r, true));
            r.peers.flush();
        }
        let want: Vec<_> = (0..18u16)
            .map(|s| (s, (s % 3 == 2).then_some(s as u8)))
            .collect();
        assert_eq!(got, want, "every message once, in order, bytes intact");
        assert!(alive(&r));
    }

    #[test]
    fn a_peer_that_never_reads_gets_a_bounded_hold_then_the_backend() {
        let mut r = rig();
        let mut n_true = 0;
        for seq in 0..(8 + HOLD_MSGS as u16 + 10) {
            let cmd = Command::Tiny {
                hdr: SendHdr {
                    seq: Seq {
                        seqnum: seq,
                        piggyack: 0,
                    },
                    ..hdr(LIAR, 0x99)
                },
                data: b"t",
            };
            let mut slot = CmdSlot::default();
            cmd.emit(&mut slot).unwrap();
            if r.peers.offer(&cmd, &slot, None) != Taken::No {
                n_true += 1;
            }
        }
        assert_eq!(n_true, 8 + HOLD_MSGS);
        assert_eq!(r.peers.stats().overflow, 10);
    }

    /// Offer `cmd` to our channels as the shell does.
    fn offer(r: &mut Rig, cmd: &Command<'_>) -> Taken {
        let mut slot = CmdSlot::default();
        cmd.emit(&mut slot).unwrap();
        r.peers.offer(cmd, &slot, None)
    }

    /// What the liar pops next (hellos skipped).
    fn liar_pops(r: &mut Rig) -> Vec<CmdSlot> {
        r.peers.flush();
        let mut out = Vec::new();
        while let Some(raw) = r.liar.pop().unwrap() {
            if !matches!(Command::parse(&raw), Ok(Command::PeerHello(_))) {
                out.push(raw);
            }
        }
        out
    }

    fn rndv_to_liar(id: u8, len: u32) -> Command<'static> {
        Command::Rndv(Rndv {
            hdr: hdr(LIAR, 0x99),
            msg_length: len,
            rdma: RdmaRef {
                id,
                seqnum: 1,
                offset: 0,
            },
        })
    }

    fn pull(dest: u8, session: u32, id: u8, seqnum: u8, direct: bool) -> Command<'static> {
        Command::Pull(Pull {
            dest: Dest {
                peer: 0,
                endpoint: dest,
            },
            session,
            length: 8192,
            cookie: 0xc0 + u32::from(id),
            local_region: 0,
            local_offset: 0,
            remote: RdmaRef {
                id,
                seqnum,
                offset: 0,
            },
            direct,
        })
    }

    #[test]
    fn our_rendezvous_take_the_channel_only_to_a_peer_that_reads_us() {
        let mut r = rig();
        r.peers.set_direct(true);
        // Region 3 in two pieces, region 4 in five (more than a grant names).
        let two = [RawSeg::new(0x1000, 4096), RawSeg::new(0x9000, 4096)];
        let five: Vec<_> = (0..5)
            .map(|i| RawSeg::new(0x10000 * (i + 1), 4096))
            .collect();
        for (id, segs) in [(3u8, &two[..]), (4, &five[..])] {
            for chunk in RegionRegister::chunks(id, segs) {
                assert_eq!(offer(&mut r, &Command::RegionRegister(chunk)), Taken::No);
            }
        }
        assert_eq!(
            offer(&mut r, &rndv_to_liar(3, 8192)),
            Taken::No,
            "no hello yet"
        );
        send(
            &mut r,
            &Command::PeerHello(PeerHello {
                dest: Dest {
                    peer: 0,
                    endpoint: ME,
                },
                session: SESSION,
                direct: true,
            }),
        );
        r.peers.receive(&mut r.core, 0);
        r.peers.set_direct(false);
        assert_eq!(
            offer(&mut r, &rndv_to_liar(3, 8192)),
            Taken::No,
            "a staging pool's regions are not in our memory"
        );
        r.peers.set_direct(true);
        assert_eq!(offer(&mut r, &rndv_to_liar(3, 8192)), Taken::Now);
        assert_eq!(
            offer(&mut r, &rndv_to_liar(4, 5 * 4096)),
            Taken::No,
            "five pieces"
        );
        assert_eq!(
            offer(&mut r, &rndv_to_liar(9, 10)),
            Taken::No,
            "never registered"
        );
        // The peer pulls region 3 through the channel: our grant names our
        // pieces; a pull of a region we do not have gets none.
        send(&mut r, &pull(ME, SESSION, 3, 1, true));
        send(&mut r, &pull(ME, SESSION, 9, 1, true));
        r.peers.receive(&mut r.core, 0);
        let grants: Vec<_> = liar_pops(&mut r)
            .iter()
            .filter_map(|raw| match Command::parse(raw) {
                Ok(Command::PullGrant(g)) => Some((g.cookie, g.segs.segs().to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(
            grants,
            vec![(0xc3, vec![(0x1000, 4096), (0x9000, 4096)]), (0xc9, vec![])]
        );
        // A pull that is not direct, or not ours, is a lie.
        send(&mut r, &pull(ME, SESSION, 3, 1, false));
        r.peers.receive(&mut r.core, 0);
        assert_eq!(r.peers.stats().lies, 1);
        assert!(!alive(&r));
    }

    #[test]
    fn a_pull_of_a_rendezvous_that_came_through_the_channel_never_goes_to_the_backend() {
        let mut r = rig();
        // The liar's rendezvous of window 7 (use 3) comes through the channel.
        send(
            &mut r,
            &Command::Rndv(Rndv {
                hdr: hdr(ME, SESSION),
                msg_length: 8192,
                rdma: RdmaRef {
                    id: 7,
                    seqnum: 3,
                    offset: 0,
                },
            }),
        );
        r.peers.receive(&mut r.core, 0);
        // A pull of another window goes to the backend as ever.
        assert_eq!(offer(&mut r, &pull(LIAR, 0x99, 8, 3, true)), Taken::No);
        // We cannot read the liar (no pid): the backend may not know window
        // 7 yet, so its pull fails here rather than there.
        assert_eq!(offer(&mut r, &pull(LIAR, 0x99, 7, 3, true)), Taken::Now);
        assert_eq!(r.peers.take_pulls().1.collect::<Vec<_>>(), vec![0xc7]);
        // Our hello told the liar we cannot read it.
        r.peers.flush();
        let mut hellos = Vec::new();
        while let Some(raw) = r.liar.pop().unwrap() {
            if let Ok(Command::PeerHello(h)) = Command::parse(&raw) {
                hellos.push(h.direct);
            }
        }
        assert_eq!(hellos, vec![false]);
    }

    #[test]
    fn a_full_ring_of_acks_is_taken_whole() {
        let mut r = rig();
        for _ in 0..8 {
            send(
                &mut r,
                &Command::Liback(mx_proto::msg::command::Liback {
                    dest: Dest {
                        peer: 0,
                        endpoint: ME,
                    },
                    session: SESSION,
                    lib_seqnum: 0,
                    send_seq: 0,
                    acknum: 1,
                    resent: 0,
                }),
            );
        }
        assert!(r.peers.receive(&mut r.core, 0));
        assert_eq!(r.peers.stats().received, 8);
        assert!(alive(&r));
    }
}
