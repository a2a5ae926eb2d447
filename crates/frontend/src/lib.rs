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
//! The frontend distrusts its backend the way netfront does: every event is
//! copied out and parsed before use, receive-queue slots are checked against
//! the order the backend must use, and a backend that breaks the protocol
//! marks the endpoint broken.

use mx_proto::channel::{ChannelError, GuestChannel};
use mx_proto::msg::control::{
    BoardInfo, ChannelSizes, ControlError, ControlReply, ControlRequest, PeerInfo, CONTROL_VERSION,
};
use mx_proto::msg::{Command, EvtSlot};
use mx_proto::platform::{
    BackendLink, EventChannel, GuestPlatform, Resource, WaitOutcome, Wakeup, MAX_CONTROL_MSG,
    PAGE_SIZE,
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
    /// [`BackendLink::bulk_pool`](mx_proto::platform::BackendLink::bulk_pool)).
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
        let len = GuestChannel::<Arc<G::Pages>>::region_len(&sizes)?;
        let pages = Arc::new(self.link.link.alloc_pages(len / PAGE_SIZE)?);
        let chan = GuestChannel::create(pages.clone(), &sizes)?;
        let event = Arc::new(self.link.link.alloc_event()?);
        let reply = call::<G>(
            &self.link,
            &ControlRequest::OpenEndpoint {
                board: 0,
                endpoint,
                sizes,
            },
            &[Resource::Pages(&*pages), Resource::Event(&*event)],
        )?;
        let (id, session) = match reply {
            ControlReply::Opened { endpoint, session } => (endpoint, session),
            _ => return Err(FrontendError::Protocol("unexpected reply to open")),
        };
        let wakeup = Arc::new(event.wakeup()?);
        Ok((
            EndpointChannel {
                id,
                session,
                chan,
                event: event.clone(),
                link: self.link.clone(),
                closed: false,
            },
            Doorbell { event, wakeup },
        ))
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

/// The rings and queues of one open endpoint. Not shared: the owner
/// serialises access (the MX library holds it under its endpoint lock).
pub struct EndpointChannel<G: GuestPlatform> {
    id: u8,
    session: u32,
    chan: GuestChannel<Arc<G::Pages>>,
    event: Arc<G::Event>,
    link: Arc<Link<G>>,
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

    /// Close the endpoint (the backend unmaps its pages and NACKs later
    /// traffic to it).
    ///
    /// # Errors
    /// If the backend cannot be reached or refuses.
    pub fn close(mut self) -> Result<(), FrontendError> {
        self.closed = true;
        match call::<G>(
            &self.link,
            &ControlRequest::CloseEndpoint { endpoint: self.id },
            &[],
        )? {
            ControlReply::Closed => Ok(()),
            _ => Err(FrontendError::Protocol("unexpected reply to close")),
        }
    }
}

impl<G: GuestPlatform> Drop for EndpointChannel<G> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = call::<G>(
                &self.link,
                &ControlRequest::CloseEndpoint { endpoint: self.id },
                &[],
            );
        }
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

    /// Interrupt one blocked [`wait`](Self::wait) (the current one or the next).
    ///
    /// # Errors
    /// If the wake-up descriptor is broken.
    pub fn wake(&self) -> io::Result<()> {
        self.wakeup.wake()
    }
}
