//! The control plane: guests attach and detach, open and close endpoints
//! and the raw endpoint, set up peer channels, name the board, read
//! counters. One request at a time from a guest's control connection,
//! answered at once; it works on the endpoint table and the rest of what
//! [`Backend`] owns, within each principal's limits.

use crate::config::RawAccess;
use crate::counters::{Counter, RawCounter};
use crate::daemon::{
    next_random, Backend, Guest, Principal, ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, TOKEN_ENDPOINT,
    TOKEN_GUEST, TOKEN_RAW,
};
use crate::endpoint::Endpoint;
use crate::peer_channels::PeerBroker;
use crate::raw_endpoint::RawEndpoint;
use crate::wire::Wire;
use mx_proto::channel::RING_SENDQ;
use mx_proto::channel::{HostChannel, MAX_QUEUE_SLOTS};
use mx_proto::msg::control::{
    ChannelSizes, ControlError, ControlReply, ControlRequest, OpenFlags, ANY_ENDPOINT,
    CONTROL_VERSION,
};
use mx_proto::platform::{
    GuestConn, GuestListener, GuestMemory, HostPlatform, Incoming, Interest, ReceivedResources,
    PAGE_SIZE,
};
use slab::Slab;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often the guests are asked whether they went away unseen.
const GONE_EVERY: Duration = Duration::from_secs(2);

/// What the peer broker needs of guest `g`: its principal and domain.
fn owner<H: HostPlatform>(guests: &Slab<Guest<H>>, g: usize) -> crate::peer_channels::Owner {
    guests
        .get(g)
        .map_or_else(Default::default, |g| crate::peer_channels::Owner {
            // Privileged guests are outside the per-principal limits.
            principal: (!g.conn.is_privileged()).then_some(g.principal),
            domain: g.conn.peer_domain(),
        })
}

/// One line per closed endpoint with what crossed the backend for it: how
/// much of its traffic peer channels kept out of the backend shows here.
fn log_closed<H: HostPlatform>(ep: &Endpoint<H>, broker: &PeerBroker, why: &str) {
    let c = &ep.counters;
    let p = broker.counters();
    info!(
        endpoint = ep.id,
        tiny = c.get(Counter::TinySent),
        small = c.get(Counter::SmallSent),
        medium = c.get(Counter::MediumFragsSent),
        rndv = c.get(Counter::RndvSent),
        notify = c.get(Counter::NotifySent),
        liback = c.get(Counter::LibackSent),
        peer_offered = p.offered,
        peer_accepted = p.accepted,
        peer_notices = p.notices,
        "endpoint {why}: commands through the backend"
    );
}

/// What [`Backend::attach_channel`] set up from an open request.
struct Attached<H: HostPlatform> {
    chan: crate::endpoint::Chan<H>,
    pages: Arc<H::Pages>,
    event: H::Event,
    sendq_off: usize,
}

impl<H: HostPlatform> Backend<H> {
    pub(crate) fn accept_all(&mut self) {
        if self.accept_paused.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok(Some(conn)) => {
                    self.accept_backoff = ACCEPT_BACKOFF_MIN;
                    self.admit(conn);
                }
                Ok(None) => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    let now = Instant::now();
                    if let Some(n) = self.warn_accept.allow(now) {
                        warn!(
                            "accept: {e}; not accepting for {:?} ({n} more since the last warning)",
                            self.accept_backoff
                        );
                    }
                    self.pause_accepting(now);
                    break;
                }
                Err(e) => {
                    if let Some(n) = self.warn_accept.allow(Instant::now()) {
                        warn!("accept: {e} ({n} more since the last warning)");
                    }
                    break;
                }
            }
        }
    }

    /// Take the listener out of the poller for the current back-off, and
    /// double the next one.
    pub(crate) fn pause_accepting(&mut self, now: Instant) {
        let _ = self.poller.delete(self.listener.as_fd());
        self.accept_paused = Some(now + self.accept_backoff);
        self.accept_backoff = (self.accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
    }

    /// A freshly accepted guest: attach it within its principal's limits,
    /// or tell it why not and let it go.
    fn admit(&mut self, conn: H::Conn) {
        let id = conn.principal();
        let p = self.principals.iter().position(|p| p.id == id);
        let held = p.map_or(0, |i| self.principals[i].attachments);
        let refused = if held >= self.cfg.limits.attachments && !conn.is_privileged() {
            Some("attachments per user")
        } else if self.guests.len() >= self.cfg.limits.total_attachments as usize {
            Some("attachments")
        } else {
            None
        };
        if let Some(limit) = refused {
            if let Some(n) = self.warn_limit.allow(Instant::now()) {
                warn!(guest = %conn.guest_id(), limit, "guest refused at a limit ({n} more since the last warning)");
            }
            // Its first request reads this as the answer; dropping the
            // connection closes it.
            let _ = conn.send(&ControlReply::Error(ControlError::NoResources).encode());
            return;
        }
        let memory = conn.memory();
        let entry = self.guests.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poller
            .add(conn.as_fd(), TOKEN_GUEST | key as u64, Interest::READABLE)
        {
            warn!("cannot poll guest connection: {e}");
            return;
        }
        let principal = match p {
            Some(i) => i,
            None => {
                self.principals.push(Principal {
                    id,
                    attachments: 0,
                    endpoints: Vec::new(),
                    mapped: 0,
                    cursor: 0,
                });
                self.principals.len() - 1
            }
        };
        self.principals[principal].attachments += 1;
        info!(guest = %conn.guest_id(), "guest attached");
        entry.insert(Guest {
            conn,
            memory,
            endpoints: Vec::new(),
            principal,
            mapped: 0,
        });
    }

    pub(crate) fn serve_control(&mut self, key: usize, hangup: bool) {
        loop {
            let Some(g) = self.guests.get(key) else {
                return;
            };
            let mut buf = std::mem::take(&mut self.ctl_buf);
            let incoming = g.conn.recv(&mut buf);
            let outcome = match incoming {
                Ok(Incoming::Request { len, resources }) => {
                    let reply = self.control(key, &buf[..len], resources);
                    let grant = self.peer_grant_out.take();
                    if let Some(g) = self.guests.get(key) {
                        let sent = match grant {
                            Some(grant) => g.conn.send_peer(&reply.encode(), grant),
                            None => g.conn.send(&reply.encode()),
                        };
                        if let Err(e) = sent {
                            warn!(guest = %g.conn.guest_id(), "control reply failed: {e}; detaching");
                            self.ctl_buf = buf;
                            self.detach(key);
                            return;
                        }
                    }
                    true
                }
                Ok(Incoming::Empty) => false,
                Ok(Incoming::Closed) => {
                    self.ctl_buf = buf;
                    self.detach(key);
                    return;
                }
                Err(e) => {
                    warn!("guest broke the control protocol: {e}; detaching");
                    self.ctl_buf = buf;
                    self.detach(key);
                    return;
                }
            };
            self.ctl_buf = buf;
            if !outcome {
                break;
            }
        }
        if hangup {
            self.detach(key);
        }
    }

    fn control(&mut self, key: usize, msg: &[u8], mut res: H::Resources) -> ControlReply {
        let req = match ControlRequest::decode(msg) {
            Ok(r) => r,
            Err(e) => {
                debug!("malformed control request: {e}");
                return ControlReply::Error(ControlError::Malformed);
            }
        };
        match req {
            ControlRequest::Hello { version } => {
                if version != CONTROL_VERSION {
                    ControlReply::Error(ControlError::BadVersion)
                } else {
                    ControlReply::Hello(self.board_info())
                }
            }
            ControlRequest::Board { board } => {
                if board != 0 {
                    ControlReply::Error(ControlError::BoardUnknown)
                } else {
                    ControlReply::Board(self.board_info())
                }
            }
            ControlRequest::OpenEndpoint {
                board,
                endpoint,
                sizes,
                flags,
            } => match self.open(key, board, endpoint, sizes, flags, &mut res) {
                Ok((endpoint, session)) => ControlReply::Opened { endpoint, session },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::CloseEndpoint { endpoint } => {
                let owned = self
                    .endpoints
                    .get(endpoint as usize)
                    .is_some_and(|e| e.guest == key);
                if !owned {
                    ControlReply::Error(ControlError::NotOwner)
                } else {
                    self.close(endpoint);
                    ControlReply::Closed
                }
            }
            ControlRequest::PeerByNicId { nic_id } => self.peers.by_nic_id(nic_id).map_or(
                ControlReply::Error(ControlError::PeerNotFound),
                ControlReply::Peer,
            ),
            ControlRequest::PeerByHostname { hostname } => {
                self.peers.by_hostname(&hostname).map_or(
                    ControlReply::Error(ControlError::PeerNotFound),
                    ControlReply::Peer,
                )
            }
            ControlRequest::PeerByIndex { index } => self.peers.info(index).map_or(
                ControlReply::Error(ControlError::PeerNotFound),
                ControlReply::Peer,
            ),
            ControlRequest::NicCounters { board } => match (&self.wire, board) {
                (_, b) if b != 0 => ControlReply::Error(ControlError::BoardUnknown),
                (Some(w), _) => ControlReply::Counters(w.st.counters.values()),
                (None, _) => ControlReply::Counters(Vec::new()),
            },
            ControlRequest::Counters { endpoint } => match self.endpoints.get(endpoint as usize) {
                Some(e) if self.may_inspect(key, e.guest) => {
                    ControlReply::Counters(e.counters.values().to_vec())
                }
                Some(_) => ControlReply::Error(ControlError::NotOwner),
                None => ControlReply::Error(ControlError::BadEndpoint),
            },
            ControlRequest::OpenRaw { board, sizes } => {
                match self.open_raw(key, board, sizes, &mut res) {
                    Ok(max_frame) => ControlReply::RawOpened { max_frame },
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::CloseRaw { board } => match self.raw_owner(key, board) {
                Ok(()) => {
                    self.close_raw();
                    ControlReply::Closed
                }
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::SetHostname { board, hostname } => {
                match self
                    .raw_owner(key, board)
                    .and_then(|()| self.set_hostname(&hostname))
                {
                    Ok(()) => ControlReply::Done,
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::SetPeerName {
                board,
                nic_id,
                hostname,
            } => match self
                .raw_owner(key, board)
                .and_then(|()| self.set_peer_name(nic_id, &hostname))
            {
                Ok(()) => ControlReply::Done,
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerOpen {
                endpoint,
                peer_endpoint,
                sizes,
            } => match self.peer_channels.open(
                &mut self.endpoints,
                crate::peer_channels::PeerRequest {
                    guest: key,
                    from: endpoint,
                    to: peer_endpoint,
                    sizes,
                    self_peer: self.self_peer,
                },
                |g| owner(&self.guests, g),
                &mut res,
            ) {
                Ok(channel) => ControlReply::PeerPending {
                    channel,
                    // Whom the offerer's direct pulls over the channel read.
                    pid: self
                        .endpoints
                        .get(usize::from(peer_endpoint))
                        .and_then(|e| e.memory.direct_pid())
                        .unwrap_or(0),
                },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerDomain {
                endpoint,
                peer_endpoint,
            } => match self.peer_channels.domain(
                &self.endpoints,
                key,
                endpoint,
                peer_endpoint,
                |g| owner(&self.guests, g),
            ) {
                Ok(domain) => ControlReply::PeerDomain { domain },
                Err(e) => ControlReply::Error(e),
            },
            ControlRequest::PeerAccept { endpoint, channel } => {
                match self
                    .peer_channels
                    .accept(&self.endpoints, key, endpoint, channel)
                {
                    Ok(grant) => {
                        self.peer_grant_out = Some(grant);
                        ControlReply::Done
                    }
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::PeerClose { endpoint, channel } => {
                match self
                    .peer_channels
                    .close(&mut self.endpoints, key, endpoint, channel)
                {
                    Ok(()) => ControlReply::Done,
                    Err(e) => ControlReply::Error(e),
                }
            }
            ControlRequest::RawCounters { board } => {
                if board != 0 {
                    ControlReply::Error(ControlError::BoardUnknown)
                } else {
                    ControlReply::Counters(self.raw_counters.values())
                }
            }
        }
    }

    /// Whether guest `key` may read what guest `owner` holds (an
    /// endpoint's counters): its own principal's, or anyone's for a
    /// privileged guest (the backend's administrator). Processes of one
    /// uid can inspect each other anyway (ptrace, /proc); other users'
    /// traffic figures are theirs.
    fn may_inspect(&self, key: usize, owner: usize) -> bool {
        let (Some(g), Some(o)) = (self.guests.get(key), self.guests.get(owner)) else {
            return false;
        };
        g.principal == o.principal || g.conn.is_privileged()
    }

    /// Whether the per-principal limits apply to guest `key`: not to a
    /// privileged guest (root, or the backend's own user), who can
    /// restart the backend with any limits anyway; every root process of
    /// a host would otherwise share one quota. The totals (attachments in
    /// all, the board's endpoints) still hold.
    fn limited(&self, key: usize) -> bool {
        self.guests.get(key).is_none_or(|g| !g.conn.is_privileged())
    }

    /// Whether guest `key` may open the raw endpoint, by the configured
    /// policy and the platform's word on the guest.
    fn raw_permitted(&self, key: usize) -> bool {
        match self.cfg.raw_access {
            RawAccess::Any => true,
            RawAccess::Nobody => false,
            RawAccess::Privileged => self.guests.get(key).is_some_and(|g| g.conn.is_privileged()),
        }
    }

    /// `Ok` if guest `key` owns board `board`'s raw endpoint: the
    /// privileged board requests (close it, name the board and its peers)
    /// are its owner's.
    fn raw_owner(&self, key: usize, board: u32) -> Result<(), ControlError> {
        if board != 0 {
            return Err(ControlError::BoardUnknown);
        }
        match &self.raw {
            Some(r) if r.guest == key => Ok(()),
            _ => Err(ControlError::NotPermitted),
        }
    }

    fn open_raw(
        &mut self,
        key: usize,
        board: u32,
        sizes: ChannelSizes,
        res: &mut H::Resources,
    ) -> Result<u32, ControlError> {
        if board != 0 {
            return Err(ControlError::BoardUnknown);
        }
        if !self.raw_permitted(key) {
            self.raw_counters.bump(RawCounter::OpenNotPermitted);
            if let Some(g) = self.guests.get(key) {
                warn!(guest = %g.conn.guest_id(), policy = ?self.cfg.raw_access, "raw endpoint refused");
            }
            return Err(ControlError::NotPermitted);
        }
        if self.raw.is_some() {
            self.raw_counters.bump(RawCounter::OpenBusy);
            return Err(ControlError::Busy);
        }
        let a = self.attach_channel(key, &sizes, res, TOKEN_RAW)?;
        let mtu = self
            .wire
            .as_ref()
            .filter(|w| !w.loopback_only)
            .map_or(self.cfg.mtu, |w| w.nic.mtu());
        let max_frame = crate::raw_endpoint::max_frame(mtu);
        self.raw_mapped = mx_proto::ring::SharedRegion::len(&*a.pages) as u64;
        self.raw = Some(RawEndpoint::new(key, a.chan, a.event, max_frame));
        self.raw_counters.bump(RawCounter::Opens);
        if let Some(g) = self.guests.get(key) {
            info!(guest = %g.conn.guest_id(), max_frame, "raw endpoint opened");
        }
        Ok(max_frame as u32)
    }

    fn close_raw(&mut self) {
        if let Some(raw) = self.raw.take() {
            let _ = self.poller.delete(raw.event.as_fd());
            let bytes = std::mem::take(&mut self.raw_mapped);
            self.account(raw.guest, -(bytes as i64));
            debug!("raw endpoint closed");
            // Dropping it unmaps the guest's pages and unbinds its channel.
        }
    }

    /// Rename the board: what HOST_REPLY answers and peer look-ups find.
    fn set_hostname(&mut self, name: &str) -> Result<(), ControlError> {
        let wire_name =
            mxoe_wire::Hostname::new(name.as_bytes()).map_err(|_| ControlError::Malformed)?;
        if let Some(w) = self.wire.as_mut() {
            w.st.hostname = wire_name;
        }
        self.peers.set_hostname(self.self_peer, name);
        info!(old = %self.cfg.hostname, new = %name, "board renamed by its raw endpoint");
        self.cfg.hostname = name.to_string();
        Ok(())
    }

    /// Name a peer (adding it when unknown), as a mapper that computed the
    /// fabric's map does. Our own address is left alone (the board's name
    /// is `set_hostname`'s).
    fn set_peer_name(&mut self, nic_id: u64, name: &str) -> Result<(), ControlError> {
        let valid =
            mxoe_wire::NicId::new(nic_id).is_some_and(|n| nic_id != 0 && n.to_mac()[0] & 1 == 0);
        if !valid || mxoe_wire::Hostname::new(name.as_bytes()).is_err() {
            return Err(ControlError::Malformed);
        }
        if nic_id == self.cfg.nic_id {
            return Ok(());
        }
        match self.peers.index_of(nic_id) {
            Some(i) => {
                self.peers.set_hostname(i, name);
                self.peers.set_query(i, None);
            }
            None => {
                self.peers
                    .add(nic_id, name, false)
                    .ok_or(ControlError::NoResources)?;
            }
        }
        Ok(())
    }

    fn check_sizes(&self, s: &ChannelSizes) -> Result<(), ControlError> {
        let ring_ok = |n: u32| n.is_power_of_two() && n <= self.cfg.max_ring_slots;
        let queue_ok =
            |n: u32| n.is_power_of_two() && n <= self.cfg.max_queue_slots && n <= MAX_QUEUE_SLOTS;
        if ring_ok(s.cmd_slots)
            && ring_ok(s.evt_slots)
            && queue_ok(s.sendq_slots)
            && queue_ok(s.recvq_slots)
        {
            Ok(())
        } else {
            Err(ControlError::BadResources)
        }
    }

    /// Map the channel an open request hands over (page set in slot 0,
    /// event channel in slot 1), check its control page against `sizes`,
    /// and poll its event channel under `token`. Shared by endpoints and
    /// the raw endpoint.
    fn attach_channel(
        &mut self,
        key: usize,
        sizes: &ChannelSizes,
        res: &mut H::Resources,
        token: u64,
    ) -> Result<Attached<H>, ControlError> {
        if !self.guests.contains(key) {
            return Err(ControlError::NotOwner);
        }
        self.check_sizes(sizes)?;
        let layout = mx_proto::channel::layout(sizes).map_err(|_| ControlError::BadResources)?;
        let layout_len = layout.region_len();
        let sendq_off = layout.rings[RING_SENDQ]
            .map(|r| r.area_offset as usize)
            .ok_or(ControlError::BadResources)?;
        let principal = self.guests.get(key).map_or(0, |g| g.principal);
        let mapped = self.principals.get(principal).map_or(0, |p| p.mapped);
        if mapped.saturating_add(layout_len as u64) > self.cfg.limits.memory && self.limited(key) {
            self.limit_refused(key, "shared memory per user");
            return Err(ControlError::NoResources);
        }
        let pages = res
            .take_pages(0, layout_len / PAGE_SIZE)
            .map_err(|_| ControlError::BadResources)?;
        let event = res.take_event(1).map_err(|_| ControlError::BadResources)?;
        let pages = Arc::new(pages);
        let chan = HostChannel::attach(pages.clone(), sizes).map_err(|e| {
            debug!("guest channel refused: {e:?}");
            ControlError::BadResources
        })?;
        self.poller
            .add(event.as_fd(), token, Interest::READABLE)
            .map_err(|_| ControlError::NoResources)?;
        self.account(key, layout_len as i64);
        Ok(Attached {
            chan,
            pages,
            event,
            sendq_off,
        })
    }

    /// Add (or, negative, release) `bytes` of shared memory mapped for
    /// guest `key` and its principal.
    fn account(&mut self, key: usize, bytes: i64) {
        if let Some(g) = self.guests.get_mut(key) {
            g.mapped = g.mapped.saturating_add_signed(bytes);
            if let Some(p) = self.principals.get_mut(g.principal) {
                p.mapped = p.mapped.saturating_add_signed(bytes);
            }
        }
    }

    /// A request of guest `key` hit a per-principal limit: log it (rate
    /// limited: a guest can ask again at will).
    fn limit_refused(&mut self, key: usize, limit: &'static str) {
        if let Some(n) = self.warn_limit.allow(Instant::now()) {
            if let Some(g) = self.guests.get(key) {
                warn!(guest = %g.conn.guest_id(), limit, "request refused at a limit ({n} more since the last warning)");
            }
        }
    }

    /// Give a board without a NIC its wire side, on a device that only
    /// loops frames back ([`NoNic`](crate::wire::loopback::NoNic)): the
    /// network path between two endpoints of this host
    /// (`MX_DISABLE_SHMEM`) needs the encoder, the decoder and the pull
    /// engine, not a NIC. Made on the first endpoint that asks, so a board
    /// nobody asks it of keeps its passes free of wire work.
    fn ensure_wire(&mut self) -> Result<(), ControlError> {
        if self.wire.is_some() {
            return Ok(());
        }
        let profile = self.cfg.wire_profile();
        if profile.frag_max() != self.cfg.frag_max || profile.max_medium() != self.cfg.medium_max {
            // Libraries fragment by the board's sizes; frames of another
            // size would not encode.
            warn!(
                frag_max = self.cfg.frag_max,
                medium_max = self.cfg.medium_max,
                "the board's sizes are not its wire profile's: no network path for MX_DISABLE_SHMEM"
            );
            return Err(ControlError::Unsupported);
        }
        let mac = mxoe_wire::NicId::new(self.cfg.nic_id)
            .ok_or(ControlError::Unsupported)?
            .to_mac();
        let nic = crate::wire::loopback::NoNic::new(mac, profile.frame_budget());
        let serial = next_random(&mut self.rng);
        let mut w = Wire::new(
            Box::new(nic),
            profile,
            &self.cfg.hostname,
            self.cfg.max_endpoints,
            self.cfg.wire,
            false,
            serial,
            self.region_of,
            Instant::now(),
        );
        w.loopback_only = true;
        self.wire = Some(w);
        info!("no NIC: the network path runs on the loopback (MX_DISABLE_SHMEM)");
        Ok(())
    }

    fn open(
        &mut self,
        key: usize,
        board: u32,
        endpoint: u32,
        sizes: ChannelSizes,
        flags: OpenFlags,
        res: &mut H::Resources,
    ) -> Result<(u8, u32), ControlError> {
        if board != 0 && board != 0xffff_ffff {
            return Err(ControlError::BoardUnknown);
        }
        self.check_sizes(&sizes)?;
        let principal = self
            .guests
            .get(key)
            .map(|g| g.principal)
            .ok_or(ControlError::NotOwner)?;
        let held = self
            .principals
            .get(principal)
            .map_or(0, |p| p.endpoints.len());
        if held >= self.cfg.limits.endpoints as usize && self.limited(key) {
            self.limit_refused(key, "endpoints per user");
            return Err(ControlError::NoResources);
        }
        let no_shmem = flags.contains(OpenFlags::DISABLE_SHMEM);
        if no_shmem {
            self.ensure_wire()?;
        }
        let id = if endpoint == ANY_ENDPOINT {
            self.endpoints
                .first_free()
                .ok_or(ControlError::NoResources)?
        } else {
            let id = endpoint as usize;
            if id >= self.endpoints.len() {
                return Err(ControlError::BadEndpoint);
            }
            if self.endpoints.is_open(id) {
                return Err(ControlError::Busy);
            }
            id
        };
        let memory = self
            .guests
            .get(key)
            .map(|g| g.memory.clone())
            .ok_or(ControlError::NotOwner)?;
        let Attached {
            chan,
            pages,
            event,
            sendq_off,
        } = self.attach_channel(key, &sizes, res, TOKEN_ENDPOINT | id as u64)?;
        let session = next_random(&mut self.rng);
        self.endpoints.insert(Endpoint {
            id: id as u8,
            guest: key,
            session,
            chan,
            pages,
            sendq_off,
            event,
            memory,
            regions: Default::default(),
            counters: Default::default(),
            pending: None,
            blocked_since: None,
            dirty: false,
            no_shmem,
            stalled: false,
        });
        // `id` was checked free above, and nothing ran since.
        if let Some(p) = self.principals.get_mut(principal) {
            p.endpoints.push(id as u8);
        }
        if let Some(g) = self.guests.get_mut(key) {
            g.endpoints.push(id as u8);
            info!(guest = %g.conn.guest_id(), endpoint = id, no_shmem, "endpoint opened");
        }
        Ok((id as u8, session))
    }

    pub(crate) fn close(&mut self, id: u8) {
        self.abort_pulls(id);
        if let Some(ep) = self.endpoints.take(usize::from(id)) {
            let _ = self.poller.delete(ep.event.as_fd());
            self.peer_channels
                .endpoint_closed(&mut self.endpoints, id, ep.session);
            log_closed(&ep, &self.peer_channels, "closed");
            self.account(
                ep.guest,
                -(mx_proto::ring::SharedRegion::len(&*ep.pages) as i64),
            );
            if let Some(g) = self.guests.get_mut(ep.guest) {
                g.endpoints.retain(|&e| e != id);
                if let Some(p) = self.principals.get_mut(g.principal) {
                    p.endpoints.retain(|&e| e != id);
                }
            }
            debug!(endpoint = id, "endpoint closed");
            // Dropping `ep` unmaps the guest's pages and unbinds its channel.
        }
    }

    /// Detach the guests whose platform says they went away without a
    /// hang-up (a Xen guest process that exited without closing: only its
    /// event channel says so). At most once per [`GONE_EVERY`]: one query
    /// per guest.
    pub(crate) fn sweep_gone(&mut self) {
        if self.gone_checked.elapsed() < GONE_EVERY {
            return;
        }
        self.gone_checked = Instant::now();
        let gone: Vec<usize> = self
            .guests
            .iter()
            .filter(|(_, g)| g.conn.gone())
            .map(|(k, _)| k)
            .collect();
        for key in gone {
            if let Some(g) = self.guests.get(key) {
                info!(guest = %g.conn.guest_id(), "guest gone without detaching (its event channel is unbound)");
            }
            self.detach(key);
        }
    }

    /// A guest went away: close its endpoints (their peers get
    /// ENDPT_CLOSED NACKs from now on) and forget it.
    pub(crate) fn detach(&mut self, key: usize) {
        let Some(g) = self.guests.try_remove(key) else {
            return;
        };
        let _ = self.poller.delete(g.conn.as_fd());
        info!(guest = %g.conn.guest_id(), endpoints = g.endpoints.len(), "guest detached");
        // Entries stay (indices in `guests` name them); one with nothing
        // attached costs a pass nothing.
        if let Some(p) = self.principals.get_mut(g.principal) {
            p.attachments = p.attachments.saturating_sub(1);
            p.mapped = p.mapped.saturating_sub(g.mapped);
            p.endpoints.retain(|e| !g.endpoints.contains(e));
        }
        if self.raw.as_ref().is_some_and(|r| r.guest == key) {
            self.close_raw();
        }
        for id in g.endpoints {
            self.abort_pulls(id);
            if let Some(ep) = self.endpoints.take(usize::from(id)) {
                let _ = self.poller.delete(ep.event.as_fd());
                self.peer_channels
                    .endpoint_closed(&mut self.endpoints, id, ep.session);
                log_closed(&ep, &self.peer_channels, "closed: guest gone");
            }
        }
    }

    /// An endpoint closes: its pulls end without completions.
    fn abort_pulls(&mut self, id: u8) {
        if let Some(t) = self
            .wire
            .as_mut()
            .and_then(|w| w.st.pulls.get_mut(usize::from(id)))
        {
            t.abort_all();
        }
    }
}
