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
use mx_proto::msg::command::MediumFrag;
use mx_proto::msg::control::ControlError;
use mx_proto::msg::{CmdSlot, Command, Source};
use mx_proto::peer::{DataSlot, PeerChannel, PeerSizes};
use mx_proto::platform::{BellState, PeerBell, SharedMem};
use std::sync::Arc;

/// Wait this long before offering a channel to the same endpoint again
/// after an offer failed or a channel went down (µs).
const RETRY_US: Time = 1_000_000;
/// An offer not accepted within this long is withdrawn (µs).
const PENDING_US: Time = 10_000_000;
/// Most messages taken from one channel per progress pass, so that one
/// busy peer cannot starve the backend's events or the other peers.
const POP_BATCH: usize = 256;

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
    /// because the channel was full.
    pub overflow: u64,
    /// Messages dropped because the peer lied (malformed, wrong
    /// destination, out-of-order slot); each drops its channel too.
    pub lies: u64,
    /// Fragment bytes copied into data slots (from the user's buffers).
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
}

/// The peer channels of one endpoint.
pub(crate) struct Peers {
    enabled: bool,
    me: u8,
    session: u32,
    self_peer: u16,
    slots: Vec<Slot>,
    /// Endpoints a channel was wanted for, and when we last tried.
    tried: Vec<(u8, Time)>,
    /// Endpoints a send wanted a channel to since the last maintenance.
    wanted: Vec<(u8, u32)>,
    /// Offers to accept (or decline) at the next maintenance.
    offers: Vec<(u32, Source, u32, PeerSizes)>,
    stats: PeerStats,
}

/// Where a command that may take a peer channel goes: the messages of the
/// MX library protocol between two endpoints, as `(peer, endpoint,
/// session, data)` (`data`: a message that asks for a channel). Connects
/// stay with the backend (it knows which endpoints exist), and pulls and
/// regions are requests to the backend itself.
fn channel_dest(cmd: &Command<'_>) -> Option<(u16, u8, u32, bool)> {
    let (dest, session, data) = match cmd {
        Command::Tiny { hdr, .. } | Command::Small { hdr, .. } => (hdr.dest, hdr.session, true),
        Command::MediumFrag(m) => (m.hdr.dest, m.hdr.session, true),
        Command::Rndv(r) => (r.hdr.dest, r.hdr.session, true),
        Command::Notify(n) => (n.dest, n.session, false),
        Command::Liback(l) => (l.dest, l.session, false),
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
            me,
            session,
            self_peer,
            slots: Vec::new(),
            tried: Vec::new(),
            wanted: Vec::new(),
            offers: Vec::new(),
            stats: PeerStats::default(),
        }
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
    /// the core straight from the user's buffer into a data slot. True if
    /// it left that way; false if it must go to the backend.
    pub(crate) fn try_send<B: MsgBuf>(
        &mut self,
        core: &mut Core<B>,
        slot: &CmdSlot,
        frag: Option<&FragRef>,
    ) -> bool {
        if !self.enabled {
            return false;
        }
        // A retransmission from a slot the core kept goes to the backend,
        // which reads that slot: the user's buffer may be back with the
        // application.
        if frag.is_some_and(|f| !f.needs_fill()) {
            return false;
        }
        let Ok(cmd) = Command::parse(slot) else {
            return false;
        };
        let cmd = &cmd;
        let Some((peer, ep, session, data_msg)) = channel_dest(cmd) else {
            return false;
        };
        if peer != self.self_peer || ep == self.me {
            return false;
        }
        let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.ep == ep && s.session == session && !s.dead)
        else {
            if data_msg && !self.wanted.contains(&(ep, session)) {
                self.wanted.push((ep, session));
            }
            return false;
        };
        // A rendezvous names a window the receiver's pull will ask the
        // backend for: it follows the window's registration through the
        // backend's command ring, so the backend knows the window before
        // any pull of it (the notify that ends it may take the channel).
        if !s.up || matches!(cmd, Command::Rndv(_)) {
            return false;
        }
        let medium = matches!(cmd, Command::MediumFrag(_));
        match s.chan.has_room(medium) {
            Ok(true) => {}
            Ok(false) => {
                self.stats.overflow += 1;
                return false;
            }
            Err(_) => {
                s.dead = true;
                return false;
            }
        }
        let pushed = if let (Command::MediumFrag(m), Some(f)) = (cmd, frag) {
            s.chan.claim_data(f.len as usize).and_then(|d| {
                let mut n = 0u64;
                let chan = &s.chan;
                let copied = core.copy_frag(f, &mut |off, bytes| {
                    n += bytes.len() as u64;
                    chan.write_data(&d, off, bytes).is_ok()
                });
                self.stats.data_out_bytes += n;
                if !copied {
                    return Err(mx_proto::channel::ChannelError::OutOfBounds);
                }
                let mut out = CmdSlot::default();
                Command::MediumFrag(MediumFrag {
                    sendq_slot: d.slot(),
                    ..*m
                })
                .emit(&mut out)?;
                s.chan.push(&out)
            })
        } else if matches!(cmd, Command::MediumFrag(_)) {
            return false;
        } else {
            s.chan.push(slot)
        };
        if pushed.is_err() {
            // Room was checked: the peer broke an index.
            s.dead = true;
            return false;
        }
        s.pushed = true;
        self.stats.sent += 1;
        true
    }

    /// Make what was pushed visible, ringing peers that sleep.
    pub(crate) fn flush(&mut self) {
        for s in &mut self.slots {
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
            moved |= self.receive_one(i, core, now);
        }
        moved
    }

    fn receive_one<B: MsgBuf>(&mut self, i: usize, core: &mut Core<B>, now: Time) -> bool {
        let (me, session, self_peer) = (self.me, self.session, self.self_peer);
        let Peers { slots, stats, .. } = self;
        let s = &mut slots[i];
        let src = Source {
            peer: self_peer,
            endpoint: s.ep,
        };
        let mut moved = false;
        for _ in 0..POP_BATCH {
            let raw = match s.chan.pop() {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(_) => {
                    s.dead = true;
                    break;
                }
            };
            moved = true;
            // Something arrived: the other end has the channel.
            if !s.up {
                s.up = true;
                stats.up += 1;
            }
            let ok = match Command::parse(&raw) {
                Ok(cmd) => deliver(core, now, src, (me, session), &cmd, &mut s.chan, stats),
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
        if moved {
            // The sender never waits for room (a full channel sends through
            // the backend), so releasing needs no ring.
            let _ = s.chan.release();
        }
        moved
    }

    /// An offer event from the backend, handled at the next maintenance.
    pub(crate) fn offered(&mut self, channel: u32, src: Source, session: u32, sizes: PeerSizes) {
        // Bounded: a backend cannot make us queue more offers than
        // endpoints could exist.
        if self.offers.len() < 256 {
            self.offers.push((channel, src, session, sizes));
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
        for (channel, src, session, sizes) in std::mem::take(&mut self.offers) {
            let taken = self.slots.iter().any(|s| s.ep == src.endpoint && !s.dead);
            if !self.enabled || taken || src.peer != self.self_peer || src.endpoint == self.me {
                let _ = frontend.close_peer(self.me, channel);
                continue;
            }
            match frontend.accept_peer(self.me, channel, sizes) {
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

/// Check one message popped from a channel and hand it to the core as the
/// event the backend would have posted. False if the peer lied.
fn deliver<B: MsgBuf>(
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
    use mx_proto::msg::{Dest, Seq};
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
