//! The guest side of an MX split-driver channel.
//!
//! A [`Frontend`] is a process's (or a guest kernel's) attachment to its
//! backend: it says hello, learns the board, opens and closes endpoints and
//! answers look-ups over the platform's control path. An open endpoint is an
//! [`EndpointChannel`] (the rings and queues; `&mut` access, the caller
//! serialises it, typically under the MX library's endpoint lock) plus a
//! [`Doorbell`] (the event channel; shared by every thread that blocks or
//! wakes). The frontend knows nothing of MX matching: it moves commands and
//! events.
//!
//! A board's raw endpoint (the MX raw API of fabric mappers) is a
//! [`RawChannel`]: the same channel machinery, opened with
//! [`Frontend::open_raw`], carrying the raw family of messages
//! ([`mx_proto::msg::raw_endpoint`]).
//!
//! The frontend distrusts its backend the way netfront does: every event is
//! copied out and parsed before use, receive-queue slots are checked against
//! the order the backend must use, and a backend that breaks the protocol
//! marks the endpoint broken.

#![deny(unsafe_code)]

use mx_proto::channel::{ChannelError, GuestChannel};
use mx_proto::msg::control::{
    BoardInfo, ChannelSizes, ControlError, ControlReply, ControlRequest, OpenFlags, PeerInfo,
    CONTROL_VERSION,
};
use mx_proto::msg::raw_endpoint::RawCommand;
use mx_proto::msg::{CmdSlot, Command, EvtSlot};
use mx_proto::peer::{PeerChannel, PeerSizes};
use mx_proto::platform::{
    BackendLink, EventChannel, GuestPlatform, PeerBell, Resource, SharedMem, WaitOutcome, Wakeup,
    MAX_CONTROL_MSG, PAGE_SIZE,
};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a control request may take before the backend is considered gone.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a frontend operation failed.
#[derive(Debug)]
pub enum FrontendError {
    /// The platform failed (no backend, backend gone, OS error).
    Io(io::Error),
    /// The backend refused the request.
    Refused(ControlError),
    /// The backend's reply made no sense.
    Protocol(&'static str),
    /// The channel is broken (the backend corrupted shared state).
    Channel(ChannelError),
}

impl std::fmt::Display for FrontendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrontendError::Io(e) => write!(f, "backend unreachable: {e}"),
            FrontendError::Refused(e) => write!(f, "backend refused: {e}"),
            FrontendError::Protocol(s) => write!(f, "backend protocol error: {s}"),
            FrontendError::Channel(e) => write!(f, "channel broken: {e}"),
        }
    }
}

impl std::error::Error for FrontendError {}

impl From<io::Error> for FrontendError {
    fn from(e: io::Error) -> Self {
        FrontendError::Io(e)
    }
}
impl From<ChannelError> for FrontendError {
    fn from(e: ChannelError) -> Self {
        FrontendError::Channel(e)
    }
}

struct Link<G: GuestPlatform> {
    link: G::Link,
    /// Serialises request/reply pairs from several threads.
    lock: Mutex<()>,
}

/// An attachment to a backend.
pub struct Frontend<G: GuestPlatform> {
    link: Arc<Link<G>>,
    board: BoardInfo,
}

impl<G: GuestPlatform> Frontend<G> {
    /// Attach to the backend at `target` and say hello.
    ///
    /// # Errors
    /// If no backend is there, or it speaks another control version.
    pub fn attach(target: &G::Target) -> Result<Self, FrontendError> {
        let link = Arc::new(Link::<G> {
            link: G::attach(target, CONTROL_TIMEOUT)?,
            lock: Mutex::new(()),
        });
        let reply = call::<G>(
            &link,
            &ControlRequest::Hello {
                version: CONTROL_VERSION,
            },
            &[],
        )?;
        match reply {
            ControlReply::Hello(board) => Ok(Frontend { link, board }),
            _ => Err(FrontendError::Protocol("unexpected reply to hello")),
        }
    }

    /// The memory large messages must be staged in, when the platform
    /// cannot let the backend reach the application's buffers (see
    /// [`BackendLink::bulk_pool`]).
    pub fn bulk_pool(&self) -> Option<Arc<dyn mx_proto::platform::SharedMem>> {
        self.link.link.bulk_pool()
    }

    /// Allocate `pages` pages the backend can read and write at their own
    /// addresses on the local platform (used to stage large messages on
    /// purpose there, to exercise the staging path).
    ///
    /// # Errors
    /// An OS error.
    pub fn alloc_pages(&self, pages: usize) -> Result<G::Pages, FrontendError> {
        Ok(self.link.link.alloc_pages(pages)?)
    }

    /// The backend's board.
    pub fn board(&self) -> &BoardInfo {
        &self.board
    }

    /// Open an endpoint (`endpoint` or [`ANY_ENDPOINT`](mx_proto::msg::control::ANY_ENDPOINT))
    /// with channel `sizes`.
    ///
    /// # Errors
    /// [`FrontendError::Refused`] with `Busy`, `BadEndpoint`, `NoResources`...
    pub fn open_endpoint(
        &self,
        endpoint: u32,
        sizes: ChannelSizes,
    ) -> Result<(EndpointChannel<G>, Doorbell<G>), FrontendError> {
        self.open_endpoint_with(endpoint, sizes, OpenFlags::empty())
    }

    /// [`open_endpoint`](Self::open_endpoint) asking the backend for
    /// `flags` (e.g. [`OpenFlags::DISABLE_SHMEM`]).
    ///
    /// # Errors
    /// As [`open_endpoint`](Self::open_endpoint); a backend that does not
    /// know a flag refuses the request (`Malformed`) rather than ignore it.
    pub fn open_endpoint_with(
        &self,
        endpoint: u32,
        sizes: ChannelSizes,
        flags: OpenFlags,
    ) -> Result<(EndpointChannel<G>, Doorbell<G>), FrontendError> {
        let req = ControlRequest::OpenEndpoint {
            board: 0,
            endpoint,
            sizes,
            flags,
        };
        let (chan, event, reply) = self.open_channel(&req, &sizes)?;
        let (id, session) = match reply {
            ControlReply::Opened { endpoint, session } => (endpoint, session),
            _ => return Err(FrontendError::Protocol("unexpected reply to open")),
        };
        self.channel(chan, event, Closer::Endpoint(id), id, session)
    }

    /// Open board `board`'s raw endpoint with channel `sizes` (the MX raw
    /// API; at most one per board, and only for guests the backend's
    /// policy admits).
    ///
    /// # Errors
    /// [`FrontendError::Refused`] with `NotPermitted`, `Busy` (already
    /// open), `BoardUnknown`, `BadResources` (sizes).
    pub fn open_raw(
        &self,
        board: u32,
        sizes: ChannelSizes,
    ) -> Result<(RawChannel<G>, Doorbell<G>), FrontendError> {
        let (chan, event, reply) =
            self.open_channel(&ControlRequest::OpenRaw { board, sizes }, &sizes)?;
        let max_frame = match reply {
            ControlReply::RawOpened { max_frame } => max_frame,
            _ => return Err(FrontendError::Protocol("unexpected reply to raw open")),
        };
        let (inner, bell) = self.channel(chan, event, Closer::Raw(board), 0, 0)?;
        Ok((
            RawChannel {
                inner,
                board,
                max_frame,
            },
            bell,
        ))
    }

    /// Offer a channel of `sizes` to the backend with request `req` (the
    /// pages and the event channel travel with it, in that order).
    #[allow(clippy::type_complexity)]
    fn open_channel(
        &self,
        req: &ControlRequest,
        sizes: &ChannelSizes,
    ) -> Result<(GuestChannel<Arc<G::Pages>>, Arc<G::Event>, ControlReply), FrontendError> {
        let len = GuestChannel::<Arc<G::Pages>>::region_len(sizes)?;
        let pages = Arc::new(self.link.link.alloc_pages(len / PAGE_SIZE)?);
        let chan = GuestChannel::create(pages.clone(), sizes)?;
        let event = Arc::new(self.link.link.alloc_event()?);
        let reply = call::<G>(
            &self.link,
            req,
            &[Resource::Pages(&*pages), Resource::Event(&*event)],
        )?;
        Ok((chan, event, reply))
    }

    fn channel(
        &self,
        chan: GuestChannel<Arc<G::Pages>>,
        event: Arc<G::Event>,
        closer: Closer,
        id: u8,
        session: u32,
    ) -> Result<(EndpointChannel<G>, Doorbell<G>), FrontendError> {
        let wakeup = match event.wakeup() {
            Ok(w) => Arc::new(w),
            Err(e) => {
                // The backend has the channel open: give it back.
                let _ = call::<G>(&self.link, &closer.request(), &[]);
                return Err(e.into());
            }
        };
        Ok((
            EndpointChannel {
                id,
                session,
                chan,
                event: event.clone(),
                link: self.link.clone(),
                closer,
                closed: false,
            },
            Doorbell { event, wakeup },
        ))
    }

    /// Set board `board`'s hostname (what HOST_REPLY answers and peer
    /// look-ups find). Only the owner of the board's raw endpoint may.
    ///
    /// # Errors
    /// `Refused(NotPermitted)` without the raw endpoint,
    /// `Refused(Malformed)` for an empty name.
    pub fn set_hostname(&self, board: u32, hostname: &str) -> Result<(), FrontendError> {
        done_reply(call::<G>(
            &self.link,
            &ControlRequest::SetHostname {
                board,
                hostname: hostname.to_string(),
            },
            &[],
        )?)
    }

    /// Name the peer `nic_id` in board `board`'s peer table (added if
    /// unknown). Only the owner of the board's raw endpoint may.
    ///
    /// # Errors
    /// `Refused(NotPermitted)` without the raw endpoint,
    /// `Refused(Malformed)` for a bad address or name,
    /// `Refused(NoResources)` when the table is full.
    pub fn set_peer_name(
        &self,
        board: u32,
        nic_id: u64,
        hostname: &str,
    ) -> Result<(), FrontendError> {
        done_reply(call::<G>(
            &self.link,
            &ControlRequest::SetPeerName {
                board,
                nic_id,
                hostname: hostname.to_string(),
            },
            &[],
        )?)
    }

    /// Board `board`'s raw-endpoint counters, in
    /// [`RAW_COUNTER_LABELS`](mx_proto::msg::control::RAW_COUNTER_LABELS)
    /// order.
    ///
    /// # Errors
    /// `Refused(BoardUnknown)` for a board other than 0.
    pub fn raw_counters(&self, board: u32) -> Result<Vec<u64>, FrontendError> {
        match call::<G>(&self.link, &ControlRequest::RawCounters { board }, &[])? {
            ControlReply::Counters(v) => Ok(v),
            _ => Err(FrontendError::Protocol("unexpected reply to raw counters")),
        }
    }

    /// Look a peer up by address.
    ///
    /// # Errors
    /// `Refused(PeerNotFound)` if the backend does not know it.
    pub fn peer_by_nic_id(&self, nic_id: u64) -> Result<PeerInfo, FrontendError> {
        peer_reply(call::<G>(
            &self.link,
            &ControlRequest::PeerByNicId { nic_id },
            &[],
        )?)
    }

    /// Look a peer up by exact hostname.
    ///
    /// # Errors
    /// `Refused(PeerNotFound)` if the backend does not know it.
    pub fn peer_by_hostname(&self, hostname: &str) -> Result<PeerInfo, FrontendError> {
        peer_reply(call::<G>(
            &self.link,
            &ControlRequest::PeerByHostname {
                hostname: hostname.to_string(),
            },
            &[],
        )?)
    }

    /// Look a peer up by index.
    ///
    /// # Errors
    /// `Refused(PeerNotFound)` if there is no such index.
    pub fn peer_by_index(&self, index: u16) -> Result<PeerInfo, FrontendError> {
        peer_reply(call::<G>(
            &self.link,
            &ControlRequest::PeerByIndex { index },
            &[],
        )?)
    }

    /// An endpoint's counters, in
    /// [`COUNTER_LABELS`](mx_proto::msg::control::COUNTER_LABELS) order.
    ///
    /// # Errors
    /// `Refused(BadEndpoint)` if it is not open.
    pub fn counters(&self, endpoint: u8) -> Result<Vec<u64>, FrontendError> {
        match call::<G>(&self.link, &ControlRequest::Counters { endpoint }, &[])? {
            ControlReply::Counters(v) => Ok(v),
            _ => Err(FrontendError::Protocol("unexpected reply to counters")),
        }
    }
}

impl<G: GuestPlatform> Frontend<G> {
    /// The board's NIC counters, in
    /// [`NIC_COUNTER_LABELS`](mx_proto::msg::control::NIC_COUNTER_LABELS)
    /// order (empty when the backend has no NIC).
    ///
    /// # Errors
    /// `Refused(BoardUnknown)` for a board other than 0.
    pub fn nic_counters(&self, board: u32) -> Result<Vec<u64>, FrontendError> {
        match call::<G>(&self.link, &ControlRequest::NicCounters { board }, &[])? {
            ControlReply::Counters(v) => Ok(v),
            _ => Err(FrontendError::Protocol("unexpected reply to NIC counters")),
        }
    }
}

fn done_reply(r: ControlReply) -> Result<(), FrontendError> {
    match r {
        ControlReply::Done => Ok(()),
        _ => Err(FrontendError::Protocol(
            "unexpected reply to a board request",
        )),
    }
}

/// Our end of a peer channel ([`mx_proto::peer`]) to another endpoint of
/// this host: the rings and the doorbell.
pub struct PeerLink {
    /// The backend's name for the channel.
    pub channel: u32,
    /// The rings.
    pub chan: PeerChannel<Arc<dyn SharedMem>>,
    /// Our end of the doorbell.
    pub bell: Box<dyn PeerBell>,
    /// The other library's process id, as the backend vouches for it,
    /// where one library may read another's memory (local); 0 elsewhere.
    pub peer_pid: u32,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl<G: GuestPlatform> Frontend<G> {
    /// Create a peer channel from our endpoint `endpoint` to endpoint
    /// `peer_endpoint` of this host, lay it out and offer it. It is up once
    /// the other end rings its doorbell; a hang-up (or, where doorbells do
    /// not hang up, the backend's `PeerClosed`) means it was declined.
    ///
    /// # Errors
    /// `Refused(Unsupported)` where the platform or the backend has no peer
    /// channels, `Refused(Busy)` if the pair has one or an offer already,
    /// `Refused(NoResources)` at a limit.
    pub fn offer_peer(
        &self,
        endpoint: u8,
        peer_endpoint: u8,
        sizes: PeerSizes,
    ) -> Result<PeerLink, FrontendError> {
        let pages = sizes.pages()?;
        // Where a grant names its grantee (Xen), the backend says which
        // domain the other endpoint is in before anything is granted.
        let domain = if self.link.link.peer_needs_domain() {
            match call::<G>(
                &self.link,
                &ControlRequest::PeerDomain {
                    endpoint,
                    peer_endpoint,
                },
                &[],
            )? {
                ControlReply::PeerDomain { domain } => Some(domain),
                _ => return Err(FrontendError::Protocol("unexpected reply to a peer domain")),
            }
        } else {
            None
        };
        let offer = match self.link.link.peer_create_for(pages, domain) {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return Err(FrontendError::Refused(ControlError::Unsupported))
            }
            Err(e) => return Err(e.into()),
        };
        let chan = PeerChannel::create(offer.end.mem.clone(), &sizes)?;
        let req = ControlRequest::PeerOpen {
            endpoint,
            peer_endpoint,
            sizes,
        };
        let _guard = self.link.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; MAX_CONTROL_MSG];
        let n = self
            .link
            .link
            .peer_offer(&offer, &req.encode(), &mut buf, CONTROL_TIMEOUT)?;
        match ControlReply::decode(&buf[..n]) {
            Ok(ControlReply::PeerPending { channel, pid }) => Ok(PeerLink {
                channel,
                chan,
                bell: offer.end.bell,
                peer_pid: pid,
            }),
            Ok(ControlReply::Error(e)) => Err(FrontendError::Refused(e)),
            _ => Err(FrontendError::Protocol("unexpected reply to a peer offer")),
        }
    }

    /// Accept channel `channel` offered to our endpoint `endpoint` with
    /// `sizes` and `peer_pid` (what the offer said), check its memory and
    /// ring the other end to say it is up.
    ///
    /// # Errors
    /// `Refused(BadEndpoint)` if the offer lapsed or its sender is gone;
    /// a channel error if the memory is not laid out as the offer said.
    pub fn accept_peer(
        &self,
        endpoint: u8,
        channel: u32,
        sizes: PeerSizes,
        peer_pid: u32,
    ) -> Result<PeerLink, FrontendError> {
        let pages = sizes.pages()?;
        let req = ControlRequest::PeerAccept { endpoint, channel };
        let (n, end, buf) = {
            let _guard = self.link.lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut buf = vec![0u8; MAX_CONTROL_MSG];
            let (n, end) =
                match self
                    .link
                    .link
                    .peer_accept(pages, &req.encode(), &mut buf, CONTROL_TIMEOUT)
                {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        return Err(FrontendError::Refused(ControlError::Unsupported))
                    }
                    Err(e) => return Err(e.into()),
                };
            (n, end, buf)
        };
        match (ControlReply::decode(&buf[..n]), end) {
            (Ok(ControlReply::Done), Some(end)) => {
                let chan = PeerChannel::attach(end.mem, &sizes)?;
                end.bell.ring()?;
                Ok(PeerLink {
                    channel,
                    chan,
                    bell: end.bell,
                    peer_pid,
                })
            }
            (Ok(ControlReply::Error(e)), None) => Err(FrontendError::Refused(e)),
            _ => Err(FrontendError::Protocol("unexpected reply to a peer accept")),
        }
    }

    /// Decline an offered channel, or tell the backend we dropped one.
    ///
    /// # Errors
    /// If the backend cannot be reached or does not know the channel.
    pub fn close_peer(&self, endpoint: u8, channel: u32) -> Result<(), FrontendError> {
        match call::<G>(
            &self.link,
            &ControlRequest::PeerClose { endpoint, channel },
            &[],
        )? {
            ControlReply::Done => Ok(()),
            _ => Err(FrontendError::Protocol("unexpected reply to a peer close")),
        }
    }
}

fn peer_reply(r: ControlReply) -> Result<PeerInfo, FrontendError> {
    match r {
        ControlReply::Peer(p) => Ok(p),
        _ => Err(FrontendError::Protocol(
            "unexpected reply to a peer look-up",
        )),
    }
}

fn call<G: GuestPlatform>(
    link: &Link<G>,
    req: &ControlRequest,
    res: &[Resource<'_, G::Pages, G::Event>],
) -> Result<ControlReply, FrontendError> {
    let _guard = link.lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = vec![0u8; MAX_CONTROL_MSG];
    let n = link
        .link
        .call(&req.encode(), res, &mut buf, CONTROL_TIMEOUT)?;
    match ControlReply::decode(&buf[..n]) {
        Ok(ControlReply::Error(e)) => Err(FrontendError::Refused(e)),
        Ok(r) => Ok(r),
        Err(_) => Err(FrontendError::Protocol("malformed control reply")),
    }
}

/// What closes a channel at the backend.
#[derive(Debug, Clone, Copy)]
enum Closer {
    /// An endpoint, by id.
    Endpoint(u8),
    /// A board's raw endpoint.
    Raw(u32),
}

impl Closer {
    fn request(self) -> ControlRequest {
        match self {
            Closer::Endpoint(endpoint) => ControlRequest::CloseEndpoint { endpoint },
            Closer::Raw(board) => ControlRequest::CloseRaw { board },
        }
    }
}

/// The rings and queues of one open endpoint. Not shared: the owner
/// serialises access (the MX library holds it under its endpoint lock).
pub struct EndpointChannel<G: GuestPlatform> {
    id: u8,
    session: u32,
    chan: GuestChannel<Arc<G::Pages>>,
    event: Arc<G::Event>,
    link: Arc<Link<G>>,
    closer: Closer,
    closed: bool,
}

impl<G: GuestPlatform> EndpointChannel<G> {
    /// The endpoint id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The endpoint's session id (given by the backend).
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Queue a command; it reaches the backend at the next [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the command ring is full (flush, let the
    /// backend catch up, retry), or a broken channel.
    #[inline]
    pub fn post(&mut self, cmd: &Command<'_>) -> Result<(), ChannelError> {
        self.chan.push_command(cmd)
    }

    /// Queue an already-encoded command slot (as the MX protocol core
    /// produces them).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the command ring is full.
    #[inline]
    pub fn post_slot(&mut self, slot: &mx_proto::msg::CmdSlot) -> Result<(), ChannelError> {
        self.chan.push_slot(slot)
    }

    /// Free command slots.
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    pub fn command_space(&mut self) -> Result<u32, ChannelError> {
        Ok(self.chan.command_space()?)
    }

    /// Make queued commands visible and kick the backend if it is asleep.
    ///
    /// # Errors
    /// If the event channel is broken.
    #[inline]
    pub fn flush(&mut self) -> io::Result<()> {
        if self.chan.publish_commands().is_needed() {
            self.event.notify()?;
        }
        Ok(())
    }

    /// Copy the next event out of the event ring.
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<EvtSlot>, ChannelError> {
        Ok(self.chan.pop_event()?)
    }

    /// Whether an event is waiting (no copy): the poll of an idle ring.
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    #[inline]
    pub fn event_ready(&mut self) -> Result<bool, ChannelError> {
        Ok(self.chan.event_ready()?)
    }

    /// Copy bytes of a receive-queue slot named by the current event.
    ///
    /// # Errors
    /// If the slot or range is out of bounds.
    #[inline]
    pub fn recvq_read(&self, slot: u16, off: usize, out: &mut [u8]) -> Result<(), ChannelError> {
        self.chan.recvq_read(slot, off, out)
    }

    /// Release the receive-queue slot named by the event just consumed.
    ///
    /// # Errors
    /// If the backend named slots out of order (it is broken).
    #[inline]
    pub fn recvq_release(&mut self, slot: u16) -> Result<(), ChannelError> {
        self.chan.recvq_release(slot)
    }

    /// Hand consumed events and receive-queue slots back to the backend.
    ///
    /// # Errors
    /// If the event channel is broken.
    #[inline]
    pub fn release_events(&mut self) -> io::Result<()> {
        if self.chan.release_events().is_needed() {
            self.event.notify()?;
        }
        Ok(())
    }

    /// Arm the event ring for a notification: true if the caller may now
    /// block on the [`Doorbell`] (nothing arrived meanwhile).
    ///
    /// # Errors
    /// If the backend corrupted the ring or the event channel broke.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, FrontendError> {
        self.release_events()?;
        Ok(self.chan.prepare_to_sleep().map_err(ChannelError::from)?)
    }

    /// Send-queue slots.
    pub fn sendq_slots(&self) -> u32 {
        self.chan.sendq_slots()
    }

    /// Receive-queue slots.
    pub fn recvq_slots(&self) -> u32 {
        self.chan.recvq_slots()
    }

    /// Write a medium fragment into send-queue slot `slot`.
    ///
    /// # Errors
    /// If the slot or length is out of bounds.
    #[inline]
    pub fn sendq_write(&self, slot: u16, data: &[u8]) -> Result<(), ChannelError> {
        self.chan.sendq_write(slot, data)
    }

    /// Write `data` at offset `at` of send-queue slot `slot` (a fragment
    /// filled piece by piece from the user's buffer).
    ///
    /// # Errors
    /// If the slot or range is out of bounds.
    #[inline]
    pub fn sendq_write_at(&self, slot: u16, at: usize, data: &[u8]) -> Result<(), ChannelError> {
        self.chan.sendq_write_at(slot, at, data)
    }

    /// Close the endpoint (the backend unmaps its pages and NACKs later
    /// traffic to it).
    ///
    /// # Errors
    /// If the backend cannot be reached or refuses.
    pub fn close(mut self) -> Result<(), FrontendError> {
        self.closed = true;
        match call::<G>(&self.link, &self.closer.request(), &[])? {
            ControlReply::Closed => Ok(()),
            _ => Err(FrontendError::Protocol("unexpected reply to close")),
        }
    }
}

impl<G: GuestPlatform> Drop for EndpointChannel<G> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = call::<G>(&self.link, &self.closer.request(), &[]);
        }
    }
}

/// The rings and queues of a board's raw endpoint: an endpoint's channel
/// carrying the raw family ([`RawCommand`] out, `RawEvent`s in). Frames
/// go out through send-queue slots and come in through receive-queue
/// slots, one frame per slot. Not shared: the owner serialises access.
pub struct RawChannel<G: GuestPlatform> {
    inner: EndpointChannel<G>,
    board: u32,
    max_frame: u32,
}

impl<G: GuestPlatform> RawChannel<G> {
    /// The board.
    pub fn board(&self) -> u32 {
        self.board
    }

    /// Longest frame the backend sends or delivers (it refuses longer
    /// sends and drops longer received frames).
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Queue a raw command; it reaches the backend at the next
    /// [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the command ring is full, a message
    /// error for a command that does not encode, or a broken channel.
    pub fn post(&mut self, cmd: &RawCommand) -> Result<(), ChannelError> {
        let mut slot = CmdSlot::default();
        cmd.emit(&mut slot)?;
        self.inner.post_slot(&slot)
    }

    /// Queue an already-encoded command slot as is (tests use it to send
    /// what [`post`](Self::post) would not encode).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the command ring is full.
    pub fn post_slot(&mut self, slot: &CmdSlot) -> Result<(), ChannelError> {
        self.inner.post_slot(slot)
    }

    /// Free command slots.
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    pub fn command_space(&mut self) -> Result<u32, ChannelError> {
        self.inner.command_space()
    }

    /// Make queued commands visible and kick the backend if it is asleep.
    ///
    /// # Errors
    /// If the event channel is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Write a frame into send-queue slot `slot`.
    ///
    /// # Errors
    /// If the slot or length is out of bounds.
    pub fn sendq_write(&self, slot: u16, frame: &[u8]) -> Result<(), ChannelError> {
        self.inner.sendq_write(slot, frame)
    }

    /// Copy the next event out of the event ring (parse it with
    /// `RawEvent::parse`).
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    pub fn next_event(&mut self) -> Result<Option<EvtSlot>, ChannelError> {
        self.inner.next_event()
    }

    /// Whether an event is waiting (no copy).
    ///
    /// # Errors
    /// If the backend corrupted the ring.
    #[inline]
    pub fn event_ready(&mut self) -> Result<bool, ChannelError> {
        self.inner.event_ready()
    }

    /// Copy bytes of the receive-queue slot named by the current event.
    ///
    /// # Errors
    /// If the slot or range is out of bounds.
    pub fn recvq_read(&self, slot: u16, off: usize, out: &mut [u8]) -> Result<(), ChannelError> {
        self.inner.recvq_read(slot, off, out)
    }

    /// Release the receive-queue slot named by the event just consumed.
    ///
    /// # Errors
    /// If the backend named slots out of order (it is broken).
    pub fn recvq_release(&mut self, slot: u16) -> Result<(), ChannelError> {
        self.inner.recvq_release(slot)
    }

    /// Hand consumed events and receive-queue slots back to the backend.
    ///
    /// # Errors
    /// If the event channel is broken.
    pub fn release_events(&mut self) -> io::Result<()> {
        self.inner.release_events()
    }

    /// Arm the event ring for a notification: true if the caller may now
    /// block on the [`Doorbell`].
    ///
    /// # Errors
    /// If the backend corrupted the ring or the event channel broke.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, FrontendError> {
        self.inner.prepare_to_sleep()
    }

    /// Send-queue slots.
    pub fn sendq_slots(&self) -> u32 {
        self.inner.sendq_slots()
    }

    /// Receive-queue slots.
    pub fn recvq_slots(&self) -> u32 {
        self.inner.recvq_slots()
    }

    /// Close the raw endpoint (the backend unmaps its pages; later RAW
    /// frames are counted as having no endpoint).
    ///
    /// # Errors
    /// If the backend cannot be reached or refuses.
    pub fn close(self) -> Result<(), FrontendError> {
        self.inner.close()
    }
}

/// The event channel of an endpoint: any thread may block on it or wake
/// the blocked one.
pub struct Doorbell<G: GuestPlatform> {
    event: Arc<G::Event>,
    wakeup: Arc<Wakeup>,
}

impl<G: GuestPlatform> Clone for Doorbell<G> {
    fn clone(&self) -> Self {
        Doorbell {
            event: self.event.clone(),
            wakeup: self.wakeup.clone(),
        }
    }
}

impl<G: GuestPlatform> Doorbell<G> {
    /// Block until the backend notifies, [`wake`](Self::wake) is called, or
    /// the timeout passes. Arm the ring with
    /// [`EndpointChannel::prepare_to_sleep`] first.
    ///
    /// # Errors
    /// If the event channel is broken.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        self.event.wait(timeout)
    }

    /// [`wait`](Self::wait), also ending when one of `peers` (peer-channel
    /// doorbells) rings or hangs up: one wait for the backend and the peers.
    ///
    /// # Errors
    /// If a descriptor is broken.
    pub fn wait_with(
        &self,
        peers: &[std::os::fd::BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> io::Result<WaitOutcome> {
        self.event.wait_with(peers, timeout)
    }

    /// Interrupt one blocked [`wait`](Self::wait) (the current one or the next).
    ///
    /// # Errors
    /// If the wake-up descriptor is broken.
    pub fn wake(&self) -> io::Result<()> {
        self.wakeup.wake()
    }
}
