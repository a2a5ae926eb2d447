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
//!    other; the backend forgets the pair (and frees the slot against
//!    the limit) and posts `PeerClosed` on the other endpoint's event
//!    ring, which is how the survivor learns where the doorbell cannot
//!    hang up (Xen event channels).
//!
//! On Xen the hand-over is numbers: the offering guest first asks which
//! domain the other endpoint lives in (`PeerDomain`: a grant names its
//! grantee), grants the pages to it with gntalloc and allocates an unbound
//! port for it. The broker checks that the hand-over's granting domain
//! (from the offering guest's device path) is the offering endpoint's and
//! that its grantee is the accepting endpoint's ([`check_domains`]), and
//! forwards the numbers; it never maps the pages (they are not granted to
//! Dom0).

use crate::endpoints::Endpoints;
use mx_proto::msg::control::ControlError;
use mx_proto::msg::{Event, Source};
use mx_proto::peer::PeerSizes;
use mx_proto::platform::{EventChannel, GuestMemory, HostPlatform, PeerGrant, ReceivedResources};
use std::time::{Duration, Instant};
use tracing::{debug, info};

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

/// What the broker needs to know of an open endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpInfo {
    /// Endpoint id.
    pub id: u8,
    /// Slab key of the owning guest.
    pub guest: usize,
    /// Session id.
    pub session: u32,
    /// Opened with `MX_DISABLE_SHMEM`.
    pub no_shmem: bool,
    /// The owning guest's domain, where the platform names guests by
    /// domain ([`GuestConn::peer_domain`](mx_proto::platform::GuestConn::peer_domain)).
    pub domain: Option<u32>,
}

/// Who owns a guest, for limits and domains: its principal and domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// Index of the guest's principal.
    pub principal: Option<usize>,
    /// The guest's domain, if the platform names one.
    pub domain: Option<u32>,
}

fn info<H: HostPlatform>(
    eps: &Endpoints<H>,
    ep: u8,
    owner: &impl Fn(usize) -> Owner,
) -> Option<EpInfo> {
    eps.get(usize::from(ep)).map(|e| EpInfo {
        id: e.id,
        guest: e.guest,
        session: e.session,
        no_shmem: e.no_shmem,
        domain: owner(e.guest).domain,
    })
}

/// The pages of a channel of `sizes`, within the broker's bound.
///
/// # Errors
/// `BadResources` for sizes that do not lay out, `NoResources` above
/// [`MAX_PAGES`].
pub fn channel_pages(sizes: &PeerSizes) -> Result<usize, ControlError> {
    let pages = sizes.pages().map_err(|_| ControlError::BadResources)?;
    if pages > MAX_PAGES {
        return Err(ControlError::NoResources);
    }
    Ok(pages)
}

/// The hand-over's domains (`(granter, grantee)`, where the platform names
/// them) against the two endpoints' domains: the pages and the port must
/// come from the offering endpoint's domain and be meant for the
/// accepting endpoint's (a guest that granted to some third domain, or an
/// endpoint reopened by another domain since `PeerDomain`, is refused
/// here rather than failing in the acceptor).
///
/// # Errors
/// `BadResources` on any mismatch, or a hand-over without domains where
/// the endpoints have them (and the other way round).
pub fn check_domains(
    grant: Option<(u32, u32)>,
    from: &EpInfo,
    to: &EpInfo,
) -> Result<(), ControlError> {
    match grant {
        None if from.domain.is_none() && to.domain.is_none() => Ok(()),
        Some((g, e)) if Some(g) == from.domain && Some(e) == to.domain => Ok(()),
        _ => Err(ControlError::BadResources),
    }
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
    /// `PeerClosed` notices posted to the other end of a channel that went.
    pub notices: u64,
}

/// Every peer channel of one backend, offered or up.
pub struct PeerBroker {
    next: u32,
    offers: Vec<(u32, Offer)>,
    links: Vec<(u32, Link)>,
    per_endpoint: usize,
    per_principal: usize,
    counters: PeerCounters,
    /// `PeerClosed` notices that found their endpoint's event ring full:
    /// `((endpoint, session), channel)`, retried by
    /// [`flush_notices`](PeerBroker::flush_notices).
    notices: Vec<((u8, u32), u32)>,
}

/// A channel or offer the broker forgot: its name, the offering endpoint
/// and the one it was offered to, each as `(endpoint, session)`.
type Gone = (u32, (u8, u32), (u8, u32));

/// Most notices kept for endpoints whose event ring is full.
const MAX_NOTICES: usize = 1024;

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
            notices: Vec::new(),
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

    /// The checks every request about a pair makes: the broker is on,
    /// `a` is the caller's open endpoint, `b` another open endpoint of this
    /// host, neither asked for `MX_DISABLE_SHMEM`, and the pair has no
    /// channel or offer yet.
    ///
    /// # Errors
    /// `Unsupported`, `NotOwner`, `BadEndpoint`, `Busy`.
    pub fn check_pair(
        &self,
        guest: usize,
        a: Option<EpInfo>,
        b: Option<EpInfo>,
    ) -> Result<(EpInfo, EpInfo), ControlError> {
        if self.per_endpoint == 0 {
            return Err(ControlError::Unsupported);
        }
        let a = match a {
            Some(a) if a.guest == guest => a,
            _ => return Err(ControlError::NotOwner),
        };
        let b = match b {
            Some(b) if b.id != a.id => b,
            _ => return Err(ControlError::BadEndpoint),
        };
        if a.no_shmem || b.no_shmem {
            return Err(ControlError::Unsupported);
        }
        if self.pair_taken((a.id, a.session), (b.id, b.session)) {
            return Err(ControlError::Busy);
        }
        Ok((a, b))
    }

    /// `PeerDomain` from guest `guest`: the domain endpoint `to` lives in,
    /// after the checks of `PeerOpen` on the pair.
    ///
    /// # Errors
    /// As [`check_pair`](Self::check_pair); `Unsupported` where the
    /// platform names no domains.
    pub fn domain<H: HostPlatform>(
        &mut self,
        eps: &Endpoints<H>,
        guest: usize,
        from: u8,
        to: u8,
        owner: impl Fn(usize) -> Owner,
    ) -> Result<u32, ControlError> {
        self.expire(Instant::now());
        let (_, b) = self.check_pair(guest, info(eps, from, &owner), info(eps, to, &owner))?;
        b.domain.ok_or(ControlError::Unsupported)
    }

    /// `PeerOpen` from guest `guest`: check, keep the hand-over, offer the
    /// channel to `to`. Returns the channel's name.
    ///
    /// # Errors
    /// `NotOwner`, `BadEndpoint`, `Unsupported` (a `MX_DISABLE_SHMEM`
    /// endpoint, or the broker is off), `Busy` (the pair has a channel or
    /// an offer already, or `to`'s event ring is full), `NoResources` (a
    /// limit), `BadResources` (the hand-over, or its domains).
    pub fn open<H: HostPlatform>(
        &mut self,
        eps: &mut Endpoints<H>,
        req: PeerRequest,
        owner: impl Fn(usize) -> Owner,
        res: &mut H::Resources,
    ) -> Result<u32, ControlError> {
        let r = self.check_and_offer(eps, req, owner, res);
        if r.is_err() {
            self.counters.refused += 1;
        }
        r
    }

    fn check_and_offer<H: HostPlatform>(
        &mut self,
        eps: &mut Endpoints<H>,
        req: PeerRequest,
        owner: impl Fn(usize) -> Owner,
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
        let (ai, bi) = self.check_pair(guest, info(eps, from, &owner), info(eps, to, &owner))?;
        let (a, b) = ((ai.id, ai.session), (bi.id, bi.session));
        if self.count(a.0, a.1) >= self.per_endpoint || self.count(b.0, b.1) >= self.per_endpoint {
            return Err(ControlError::NoResources);
        }
        // Per principal: both sides' owners, so that one user cannot fill
        // another's quota by offering to it.
        let principal = |ep: u8| info(eps, ep, &owner).and_then(|e| owner(e.guest).principal);
        for side in [a.0, b.0] {
            let p = principal(side);
            if p.is_some() && self.count_where(|ep| principal(ep) == p) >= self.per_principal {
                return Err(ControlError::NoResources);
            }
        }
        let pages = channel_pages(&sizes)?;
        let grant = res.take_peer(pages).map_err(|e| {
            debug!(endpoint = from, "peer channel hand-over refused: {e}");
            ControlError::BadResources
        })?;
        if let Err(e) = check_domains(grant.domains(), &ai, &bi) {
            debug!(endpoint = from, domains = ?grant.domains(), ends = ?(ai.domain, bi.domain), "peer channel between the wrong domains");
            return Err(e);
        }
        let channel = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let pid = eps
            .get(usize::from(from))
            .and_then(|e| e.memory.direct_pid())
            .unwrap_or(0);
        let Some(dest) = eps.get_mut(usize::from(to)) else {
            return Err(ControlError::BadEndpoint);
        };
        let offer = Event::PeerOffer {
            channel,
            src: Source {
                peer: self_peer,
                endpoint: from,
            },
            session: a.1,
            sizes,
            pid,
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
        eps: &Endpoints<H>,
        guest: usize,
        ep: u8,
        channel: u32,
    ) -> Result<PeerGrant, ControlError> {
        self.expire(Instant::now());
        let me = match eps.get(usize::from(ep)) {
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
        let from_alive = eps.session_of(usize::from(o.from)) == Some(o.from_session);
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
        info!(channel, from = o.from, to = ep, "peer channel accepted");
        Ok(o.grant)
    }

    /// `PeerClose` from the guest owning endpoint `ep`: decline or withdraw
    /// an offer, or forget a channel that is up; the other end gets
    /// `PeerClosed`.
    ///
    /// # Errors
    /// `NotOwner` if `ep` is not the guest's, `BadEndpoint` if `ep` is not
    /// part of `channel`.
    pub fn close<H: HostPlatform>(
        &mut self,
        eps: &mut Endpoints<H>,
        guest: usize,
        ep: u8,
        channel: u32,
    ) -> Result<(), ControlError> {
        let me = match eps.get(usize::from(ep)) {
            Some(e) if e.guest == guest => (e.id, e.session),
            _ => return Err(ControlError::NotOwner),
        };
        let gone = self.forget(|c, a, b| c == channel && (a == me || b == me));
        if gone.is_empty() {
            return Err(ControlError::BadEndpoint);
        }
        for (c, a, b) in gone {
            self.notice(eps, if a == me { b } else { a }, c);
        }
        Ok(())
    }

    /// Endpoint `ep` (of session `session`) closed or its guest went: drop
    /// its offers and channels, and tell the other end of each
    /// (`PeerClosed`: on Xen nothing else would).
    pub fn endpoint_closed<H: HostPlatform>(
        &mut self,
        eps: &mut Endpoints<H>,
        ep: u8,
        session: u32,
    ) {
        let me = (ep, session);
        for (c, a, b) in self.forget(|_, a, b| a == me || b == me) {
            self.notice(eps, if a == me { b } else { a }, c);
        }
    }

    /// Removes every offer and channel `(channel, a, b)` for which `pick`
    /// holds and returns them (`a` offered, `b` was offered to).
    fn forget(&mut self, pick: impl Fn(u32, (u8, u32), (u8, u32)) -> bool) -> Vec<Gone> {
        let mut gone = Vec::new();
        self.offers.retain(|(c, o)| {
            let (a, b) = ((o.from, o.from_session), (o.to, o.to_session));
            let hit = pick(*c, a, b);
            if hit {
                gone.push((*c, a, b));
            }
            !hit
        });
        self.counters.dropped += gone.len() as u64;
        self.links.retain(|(c, l)| {
            let hit = pick(*c, l.a, l.b);
            if hit {
                gone.push((*c, l.a, l.b));
            }
            !hit
        });
        gone
    }

    /// Posts `PeerClosed { channel }` to endpoint `to` if it is still the
    /// same session; a full event ring keeps the notice for
    /// [`flush_notices`](Self::flush_notices).
    fn notice<H: HostPlatform>(&mut self, eps: &mut Endpoints<H>, to: (u8, u32), channel: u32) {
        match post_closed(eps, to, channel) {
            Posted::Yes => {
                self.counters.notices += 1;
                info!(
                    channel,
                    endpoint = to.0,
                    "peer channel closed: other end told"
                );
            }
            Posted::Gone => {}
            Posted::Full if self.notices.len() < MAX_NOTICES => {
                self.notices.push((to, channel));
            }
            Posted::Full => debug!(channel, endpoint = to.0, "peer channel notice lost"),
        }
    }

    /// Retries the notices that found a full event ring.
    pub fn flush_notices<H: HostPlatform>(&mut self, eps: &mut Endpoints<H>) {
        if self.notices.is_empty() {
            return;
        }
        let mut posted = 0;
        self.notices
            .retain(|&(to, channel)| match post_closed(eps, to, channel) {
                Posted::Yes => {
                    posted += 1;
                    false
                }
                Posted::Gone => false,
                Posted::Full => true,
            });
        self.counters.notices += posted;
    }

    /// Notices waiting for room in an event ring.
    pub fn notices_pending(&self) -> usize {
        self.notices.len()
    }

    /// Offers waiting for acceptance and channels up.
    pub fn len(&self) -> (usize, usize) {
        (self.offers.len(), self.links.len())
    }
}

enum Posted {
    Yes,
    /// The endpoint closed or was reopened: nobody to tell.
    Gone,
    Full,
}

fn post_closed<H: HostPlatform>(
    eps: &mut Endpoints<H>,
    (ep, session): (u8, u32),
    channel: u32,
) -> Posted {
    let Some(dest) = eps
        .get_mut(usize::from(ep))
        .filter(|e| e.session == session)
    else {
        return Posted::Gone;
    };
    if dest
        .chan
        .push_event(&Event::PeerClosed { channel })
        .is_err()
    {
        return Posted::Full;
    }
    if dest.chan.publish().is_needed() {
        let _ = dest.event.notify();
    }
    Posted::Yes
}

#[cfg(test)]
mod tests {
    //! The checks that need no platform: who may ask, which domains a Xen
    //! hand-over may name, how large a channel may be. (The rest runs with
    //! real guests in tests/split_processes.rs and, on Xen, in the test bed.)
    use super::*;

    fn ep(id: u8, guest: usize, domain: Option<u32>) -> EpInfo {
        EpInfo {
            id,
            guest,
            session: 100 + u32::from(id),
            no_shmem: false,
            domain,
        }
    }

    #[test]
    fn only_the_owner_asks_and_only_about_an_open_other_endpoint() {
        let b = PeerBroker::new(4, 8);
        let (a, c) = (ep(1, 10, Some(3)), ep(2, 20, Some(4)));
        assert_eq!(b.check_pair(10, Some(a), Some(c)), Ok((a, c)));
        assert_eq!(
            b.check_pair(20, Some(a), Some(c)),
            Err(ControlError::NotOwner),
            "someone else's endpoint"
        );
        assert_eq!(b.check_pair(10, None, Some(c)), Err(ControlError::NotOwner));
        assert_eq!(
            b.check_pair(10, Some(a), None),
            Err(ControlError::BadEndpoint),
            "an unknown endpoint"
        );
        assert_eq!(
            b.check_pair(10, Some(a), Some(a)),
            Err(ControlError::BadEndpoint),
            "itself"
        );
        let flagged = EpInfo {
            no_shmem: true,
            ..c
        };
        assert_eq!(
            b.check_pair(10, Some(a), Some(flagged)),
            Err(ControlError::Unsupported)
        );
        let off = PeerBroker::new(0, 8);
        assert_eq!(
            off.check_pair(10, Some(a), Some(c)),
            Err(ControlError::Unsupported)
        );
    }

    #[test]
    fn a_xen_hand_over_must_come_from_the_offerer_and_be_meant_for_the_acceptor() {
        let (a, b) = (ep(1, 10, Some(3)), ep(2, 20, Some(4)));
        assert_eq!(check_domains(Some((3, 4)), &a, &b), Ok(()));
        for wrong in [(3, 5), (5, 4), (4, 3), (3, 3), (0, 4)] {
            assert_eq!(
                check_domains(Some(wrong), &a, &b),
                Err(ControlError::BadResources),
                "{wrong:?}"
            );
        }
        assert_eq!(
            check_domains(None, &a, &b),
            Err(ControlError::BadResources),
            "a hand-over without domains between domains"
        );
        let (la, lb) = (ep(1, 10, None), ep(2, 20, None));
        assert_eq!(check_domains(None, &la, &lb), Ok(()), "local");
        assert_eq!(
            check_domains(Some((3, 4)), &la, &lb),
            Err(ControlError::BadResources)
        );
        // Two endpoints of one domain: granted to itself.
        let same = ep(2, 20, Some(3));
        assert_eq!(check_domains(Some((3, 3)), &a, &same), Ok(()));
    }

    #[test]
    fn a_channel_larger_than_the_bound_is_refused() {
        let ok = PeerSizes::default();
        assert!(channel_pages(&ok).unwrap() <= MAX_PAGES);
        // The largest sizes a channel may have lay out in more pages than
        // the broker lets one guest pin.
        let huge = PeerSizes {
            msg_slots: mx_proto::peer::MAX_MSG_SLOTS,
            data_slots: mx_proto::peer::MAX_DATA_SLOTS,
        };
        assert_eq!(channel_pages(&huge), Err(ControlError::NoResources));
        let broken = PeerSizes {
            msg_slots: 3,
            data_slots: 0,
        };
        assert_eq!(channel_pages(&broken), Err(ControlError::BadResources));
    }
}
