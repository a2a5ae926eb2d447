//! The backend's part in peer channels ([`mx_proto::peer`]): it decides who
//! may have one, bounds how many, and hands the memory over; it never
//! touches the bytes that flow through them.
//!
//! 1. Endpoint A asks (`PeerOpen`) with the channel's memory and the other
//!    end of its doorbell. The backend checks that A is the caller's, that
//!    B is an open endpoint of this host, that neither opened with
//!    `MX_DISABLE_SHMEM`, that no channel or offer exists for the pair and
//!    that both are under their limit; it checks the hand-over (a sealed
//!    memfd of exactly the layout's size, a seqpacket socket) without
//!    mapping it, keeps it, and posts `PeerOffer` on B's event ring.
//! 2. B accepts (`PeerAccept`): the reply carries the memory and the
//!    doorbell end, and the backend keeps no copy. B rings the doorbell,
//!    which tells A the channel is up. Or B declines (`PeerClose`), or the
//!    offer lapses ([`OFFER_TTL`]), or either endpoint closes: the backend
//!    drops its copy of B's doorbell end, and A sees the hang-up.
//! 3. From then on the channel lives in the two guests. When either one
//!    closes the endpoint or dies, the kernel hangs the doorbell up for the
//!    other; the backend only forgets the pair (and frees the slot against
//!    the limit).

use crate::endpoint::Endpoint;
use mx_proto::msg::control::ControlError;
use mx_proto::msg::{Event, Source};
use mx_proto::peer::PeerSizes;
use mx_proto::platform::{EventChannel, HostPlatform, PeerGrant, ReceivedResources};
use std::time::{Duration, Instant};
use tracing::debug;

/// Channels one endpoint may have (offered, accepted or up), by default:
/// enough for a channel to every other endpoint of a 32-endpoint board.
pub const DEFAULT_PER_ENDPOINT: usize = 32;

/// How long an offer waits for its acceptance.
pub const OFFER_TTL: Duration = Duration::from_secs(10);

/// Largest channel the backend lets a guest set up, in pages (the default
/// sizes need about 150).
pub const MAX_PAGES: usize = 2048;

struct Offer {
    from: u8,
    from_session: u32,
    to: u8,
    to_session: u32,
    grant: PeerGrant,
    since: Instant,
}

#[derive(Clone, Copy)]
struct Link {
    a: (u8, u32),
    b: (u8, u32),
}

impl Link {
    fn has(&self, ep: u8, session: u32) -> bool {
        self.a == (ep, session) || self.b == (ep, session)
    }
}

/// A `PeerOpen` as the broker checks it.
#[derive(Debug, Clone, Copy)]
pub struct PeerRequest {
    /// Slab key of the asking guest.
    pub guest: usize,
    /// Its endpoint.
    pub from: u8,
    /// The endpoint of this host it wants a channel with.
    pub to: u8,
    /// The channel's sizes.
    pub sizes: PeerSizes,
    /// This host's index in the peer table (the offer's source).
    pub self_peer: u16,
}

/// What the broker has counted since the backend started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerCounters {
    /// Offers posted.
    pub offered: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Requests refused (bad endpoint, limit, busy pair, bad hand-over).
    pub refused: u64,
    /// Offers declined, withdrawn, lapsed or dropped by a close.
    pub dropped: u64,
}

/// Every peer channel of one backend, offered or up.
pub struct PeerBroker {
    next: u32,
    offers: Vec<(u32, Offer)>,
    links: Vec<(u32, Link)>,
    per_endpoint: usize,
    per_principal: usize,
    counters: PeerCounters,
}

impl PeerBroker {
    /// A broker allowing `per_endpoint` channels to each endpoint (0 turns
    /// peer channels off) and `per_principal` to the endpoints of one guest
    /// principal together.
    pub fn new(per_endpoint: usize, per_principal: usize) -> Self {
        PeerBroker {
            next: 1,
            offers: Vec::new(),
            links: Vec::new(),
            per_endpoint,
            per_principal,
            counters: PeerCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> PeerCounters {
        self.counters
    }

    /// Channels (offered or up) endpoint `ep` of session `session` is part of.
    fn count(&self, ep: u8, session: u32) -> usize {
        self.offers
            .iter()
            .filter(|(_, o)| {
                (o.from, o.from_session) == (ep, session) || (o.to, o.to_session) == (ep, session)
            })
            .count()
            + self
                .links
                .iter()
                .filter(|(_, l)| l.has(ep, session))
                .count()
    }

    /// Channels (offered or up) with an endpoint on either side for which
    /// `mine` holds.
    fn count_where(&self, mine: impl Fn(u8) -> bool) -> usize {
        self.offers
            .iter()
            .filter(|(_, o)| mine(o.from) || mine(o.to))
            .count()
            + self
                .links
                .iter()
                .filter(|(_, l)| mine(l.a.0) || mine(l.b.0))
                .count()
    }

    fn pair_taken(&self, a: (u8, u32), b: (u8, u32)) -> bool {
        let same = |x: (u8, u32), y: (u8, u32)| (x == a && y == b) || (x == b && y == a);
        self.offers
            .iter()
            .any(|(_, o)| same((o.from, o.from_session), (o.to, o.to_session)))
            || self.links.iter().any(|(_, l)| same(l.a, l.b))
    }

    fn expire(&mut self, now: Instant) {
        let before = self.offers.len();
        self.offers
            .retain(|(_, o)| now.saturating_duration_since(o.since) < OFFER_TTL);
        self.counters.dropped += (before - self.offers.len()) as u64;
    }

    /// `PeerOpen` from guest `guest`: check, keep the hand-over, offer the
    /// channel to `to`. Returns the channel's name.
    ///
    /// # Errors
    /// `NotOwner`, `BadEndpoint`, `Unsupported` (a `MX_DISABLE_SHMEM`
    /// endpoint, or the broker is off), `Busy` (the pair has a channel or
    /// an offer already, or `to`'s event ring is full), `NoResources` (a
    /// limit), `BadResources` (the hand-over).
    pub fn open<H: HostPlatform>(
        &mut self,
        eps: &mut [Option<Endpoint<H>>],
        req: PeerRequest,
        principal_of: impl Fn(usize) -> Option<usize>,
        res: &mut H::Resources,
    ) -> Result<u32, ControlError> {
        let r = self.check_and_offer(eps, req, principal_of, res);
        if r.is_err() {
            self.counters.refused += 1;
        }
        r
    }

    fn check_and_offer<H: HostPlatform>(
        &mut self,
        eps: &mut [Option<Endpoint<H>>],
        req: PeerRequest,
        principal_of: impl Fn(usize) -> Option<usize>,
        res: &mut H::Resources,
    ) -> Result<u32, ControlError> {
        let PeerRequest {
            guest,
            from,
            to,
            sizes,
            self_peer,
        } = req;
        let now = Instant::now();
        self.expire(now);
        if self.per_endpoint == 0 {
            return Err(ControlError::Unsupported);
        }
        let a = match eps.get(usize::from(from)).and_then(Option::as_ref) {
            Some(e) if e.guest == guest => (e.id, e.session, e.no_shmem),
            _ => return Err(ControlError::NotOwner),
        };
        if from == to {
            return Err(ControlError::BadEndpoint);
        }
        let b = match eps.get(usize::from(to)).and_then(Option::as_ref) {
            Some(e) => (e.id, e.session, e.no_shmem),
            None => return Err(ControlError::BadEndpoint),
        };
        if a.2 || b.2 {
            return Err(ControlError::Unsupported);
        }
        let (a, b) = ((a.0, a.1), (b.0, b.1));
        if self.pair_taken(a, b) {
            return Err(ControlError::Busy);
        }
        if self.count(a.0, a.1) >= self.per_endpoint || self.count(b.0, b.1) >= self.per_endpoint {
            return Err(ControlError::NoResources);
        }
        // Per principal: both sides' owners, so that one user cannot fill
        // another's quota by offering to it.
        let owner = |ep: u8| {
            eps.get(usize::from(ep))
                .and_then(Option::as_ref)
                .and_then(|e| principal_of(e.guest))
        };
        for side in [a.0, b.0] {
            let p = owner(side);
            if p.is_some() && self.count_where(|ep| owner(ep) == p) >= self.per_principal {
                return Err(ControlError::NoResources);
            }
        }
        let pages = sizes.pages().map_err(|_| ControlError::BadResources)?;
        if pages > MAX_PAGES {
            return Err(ControlError::NoResources);
        }
        let grant = res.take_peer(pages).map_err(|e| {
            debug!(endpoint = from, "peer channel hand-over refused: {e}");
            ControlError::BadResources
        })?;
        let channel = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let dest = eps[usize::from(to)].as_mut().expect("checked open");
        let offer = Event::PeerOffer {
            channel,
            src: Source {
                peer: self_peer,
                endpoint: from,
            },
            session: a.1,
            sizes,
        };
        // Never wait for the destination: a full event ring refuses the
        // offer, and the requester keeps talking through the backend.
        if dest.chan.push_event(&offer).is_err() {
            return Err(ControlError::Busy);
        }
        if dest.chan.publish().is_needed() {
            let _ = dest.event.notify();
        }
        self.offers.push((
            channel,
            Offer {
                from: a.0,
                from_session: a.1,
                to: b.0,
                to_session: b.1,
                grant,
                since: now,
            },
        ));
        self.counters.offered += 1;
        debug!(channel, from, to, "peer channel offered");
        Ok(channel)
    }

    /// `PeerAccept` from guest `guest` for its endpoint `ep`: the
    /// hand-over to send with the reply.
    ///
    /// # Errors
    /// `NotOwner` if `ep` is not the guest's, `BadEndpoint` if no such
    /// offer was made to it (or it lapsed, or either side reopened).
    pub fn accept<H: HostPlatform>(
        &mut self,
        eps: &[Option<Endpoint<H>>],
        guest: usize,
        ep: u8,
        channel: u32,
    ) -> Result<PeerGrant, ControlError> {
        self.expire(Instant::now());
        let me = match eps.get(usize::from(ep)).and_then(Option::as_ref) {
            Some(e) if e.guest == guest => (e.id, e.session),
            _ => return Err(ControlError::NotOwner),
        };
        let Some(i) = self
            .offers
            .iter()
            .position(|(c, o)| *c == channel && (o.to, o.to_session) == me)
        else {
            return Err(ControlError::BadEndpoint);
        };
        let (_, o) = self.offers.swap_remove(i);
        let from_alive = eps
            .get(usize::from(o.from))
            .and_then(Option::as_ref)
            .is_some_and(|e| e.session == o.from_session);
        if !from_alive {
            self.counters.dropped += 1;
            return Err(ControlError::BadEndpoint);
        }
        self.links.push((
            channel,
            Link {
                a: (o.from, o.from_session),
                b: me,
            },
        ));
        self.counters.accepted += 1;
        debug!(channel, from = o.from, to = ep, "peer channel accepted");
        Ok(o.grant)
    }

    /// `PeerClose` from the guest owning endpoint `ep`: decline or withdraw
    /// an offer, or forget a channel that is up.
    ///
    /// # Errors
    /// `NotOwner` if `ep` is not the guest's, `BadEndpoint` if `ep` is not
    /// part of `channel`.
    pub fn close<H: HostPlatform>(
        &mut self,
        eps: &[Option<Endpoint<H>>],
        guest: usize,
        ep: u8,
        channel: u32,
    ) -> Result<(), ControlError> {
        let me = match eps.get(usize::from(ep)).and_then(Option::as_ref) {
            Some(e) if e.guest == guest => (e.id, e.session),
            _ => return Err(ControlError::NotOwner),
        };
        let before = (self.offers.len(), self.links.len());
        self.offers.retain(|(c, o)| {
            !(*c == channel && ((o.from, o.from_session) == me || (o.to, o.to_session) == me))
        });
        self.links
            .retain(|(c, l)| !(*c == channel && l.has(me.0, me.1)));
        let dropped = before.0 - self.offers.len();
        self.counters.dropped += dropped as u64;
        if (self.offers.len(), self.links.len()) == before {
            return Err(ControlError::BadEndpoint);
        }
        Ok(())
    }

    /// Endpoint `ep` (of session `session`) closed: drop its offers (the
    /// other side sees its doorbell hang up) and forget its channels.
    pub fn endpoint_closed(&mut self, ep: u8, session: u32) {
        let before = self.offers.len();
        self.offers.retain(|(_, o)| {
            (o.from, o.from_session) != (ep, session) && (o.to, o.to_session) != (ep, session)
        });
        self.counters.dropped += (before - self.offers.len()) as u64;
        self.links.retain(|(_, l)| !l.has(ep, session));
    }

    /// Offers waiting for acceptance and channels up.
    pub fn len(&self) -> (usize, usize) {
        (self.offers.len(), self.links.len())
    }
}
