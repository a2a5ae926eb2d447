//! The control path: attach, endpoint open/close, look-ups and counters.
//!
//! Control messages are rare (once per endpoint or per connect), so they use
//! a plain length-checked little-endian encoding: a `u32` kind followed by
//! the kind's fields in declaration order. The platform's rendezvous carries
//! the bytes together with the resources a request hands over (the
//! endpoint's shared pages and its event channel).

use super::MsgError;
use bitflags::bitflags;

/// Version of the control protocol; a backend refuses other versions.
pub const CONTROL_VERSION: u32 = 1;
/// Largest encoded control message.
pub const CONTROL_MAX: usize = 1024;
/// Longest hostname including its NUL (MX_MAX_HOSTNAME_LEN).
pub const HOSTNAME_MAX: usize = 80;
/// Endpoint id meaning "any free endpoint" (MX_ANY_ENDPOINT).
pub const ANY_ENDPOINT: u32 = 0xffff_ffff;

/// Labels of the per-endpoint counters, in the order of
/// [`ControlReply::Counters`] values.
pub const COUNTER_LABELS: &[&str] = &[
    "cmds processed",
    "cmds malformed",
    "cmds bad slot or peer",
    "tiny sent",
    "small sent",
    "medium frags sent",
    "rndv sent",
    "notify sent",
    "connect sent",
    "liback sent",
    "pulls done",
    "bytes sent",
    "events posted",
    "bytes received",
    "recv dropped: event ring full",
    "recv dropped: recvq full",
    "recv dropped: bad session",
    "recv dropped: endpoint closed",
    "nacks sent",
    "sends back-pressured",
    "frames sent to the wire",
    "frames received from the wire",
    "nacks received",
    "pulls failed",
    "pull requests resent",
    "pulls copied by the puller",
    "sends dropped: destination stalled",
    "window blocks asked to stage",
    "window stage answers refused",
];

/// Labels of the per-NIC counters of a board, in the order of the
/// [`ControlReply::Counters`] values answering [`ControlRequest::NicCounters`]
/// (empty when the board has no NIC and no endpoint ever asked for
/// [`OpenFlags::DISABLE_SHMEM`]).
///
/// Frames an endpoint of this host sends to another one through the
/// network path (`MX_DISABLE_SHMEM`) are encoded and decoded like any
/// other, so they count in `rx frames`, `tx frames` and the per-type
/// counters; `loopback frames` counts how many of those never left the
/// host.
pub const NIC_COUNTER_LABELS: &[&str] = &[
    "rx frames",
    "tx frames",
    "tx errors",
    "rx raw",
    "rx host query",
    "rx host reply",
    "rx truc",
    "rx connect",
    "rx tiny",
    "rx small",
    "rx medium",
    "rx rndv",
    "rx pull",
    "rx pull reply",
    "rx notify",
    "rx nack lib",
    "rx nack mcp",
    "tx raw",
    "tx host query",
    "tx host reply",
    "tx truc",
    "tx connect",
    "tx tiny",
    "tx small",
    "tx medium",
    "tx rndv",
    "tx pull",
    "tx pull reply",
    "tx notify",
    "tx nack lib",
    "tx nack mcp",
    "drop: truncated",
    "drop: bad ethertype",
    "drop: unknown type",
    "drop: unsupported type",
    "drop: length beyond frame",
    "drop: bad field value",
    "drop: not for us",
    "drop: own frame",
    "drop: unknown sender",
    "drop: bad endpoint (nacked)",
    "drop: endpoint closed (nacked)",
    "drop: bad session (nacked)",
    "drop: truc to bad endpoint or session",
    "drop: event ring full",
    "drop: recvq full",
    "drop: connect reply with unknown status",
    "drop: pull unknown window (nacked)",
    "drop: pull out of bounds",
    "drop: pull reply stray",
    "drop: pull reply duplicate",
    "drop: nack for nothing",
    "drop: bad mapper frame",
    "drop: host query refused",
    "drop: host reply refused",
    "pulls started",
    "pulls done",
    "pulls failed",
    "pull requests resent",
    "pull reply bytes received",
    "peers discovered",
    "peer restarts seen",
    "loopback frames",
    "loopback pulls held for a window being registered",
    "drop: announcement, too many unanswered hosts from its source",
    "drop: announcement, too many unanswered hosts",
    "unanswered hosts evicted for a newer announcement",
    "unanswered hosts forgotten",
    "host query windows (1 s) cut short by the rate limit",
    "drop: host reply, too many discovered peers",
    "drop: host reply, too many discovered peers from its announcer",
];

/// Labels of a board's raw-endpoint counters, in the order of the
/// [`ControlReply::Counters`] values answering [`ControlRequest::RawCounters`]
/// (kept whether or not the board has a NIC).
pub const RAW_COUNTER_LABELS: &[&str] = &[
    "raw opens",
    "raw opens refused: not permitted",
    "raw opens refused: busy",
    "raw frames sent",
    "raw frames sent without a NIC",
    "raw send refused: malformed command",
    "raw send refused: bad send-queue slot",
    "raw send refused: bad length",
    "raw send refused: not EtherType 0x86DF",
    "raw send refused: not a RAW packet",
    "raw send failed: NIC error",
    "raw frames received",
    "raw drop: no raw endpoint",
    "raw drop: raw endpoint full",
    "raw drop: frame too large",
];

/// Sizes of an endpoint's channel, chosen by the guest at open time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSizes {
    /// Slots in the command ring (power of two).
    pub cmd_slots: u32,
    /// Slots in the event ring (power of two).
    pub evt_slots: u32,
    /// Slots in the send queue.
    pub sendq_slots: u32,
    /// Slots in the receive queue.
    pub recvq_slots: u32,
}

impl Default for ChannelSizes {
    fn default() -> Self {
        ChannelSizes {
            cmd_slots: 256,
            evt_slots: 1024,
            sendq_slots: 128,
            recvq_slots: 128,
        }
    }
}

bitflags! {
    /// What an endpoint asks of the backend at open
    /// ([`ControlRequest::OpenEndpoint`]'s `flags`).
    ///
    /// On the control path the flags are an optional trailing `u32`: a
    /// request without them is the version-1 encoding (no flags), so a
    /// library that asks for nothing new still talks to an older backend,
    /// and a newer backend still accepts an older library. Unknown bits
    /// are refused by the decoder (an older backend answers `Malformed`
    /// to a flag it cannot honour instead of ignoring it).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct OpenFlags: u32 {
        /// `MX_DISABLE_SHMEM`: traffic between this endpoint and other
        /// endpoints of the same host goes through the network path (MXoE
        /// frames encoded, looped back and decoded by the backend's wire
        /// code) instead of the intra-node shortcut.
        const DISABLE_SHMEM = 1 << 0;
    }
}

/// Information about the backend's board (its one interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardInfo {
    /// Board number (0).
    pub board: u32,
    /// The board's 48-bit address.
    pub nic_id: u64,
    /// The board's hostname, e.g. `node1:0`.
    pub hostname: String,
    /// Index of this host in the backend's peer table.
    pub self_peer: u16,
    /// Most endpoints per board.
    pub max_endpoints: u32,
    /// Wire profile: 0 = mx, 1 = open-mx.
    pub profile: u8,
    /// Interface MTU the profile uses.
    pub mtu: u32,
    /// Largest medium fragment.
    pub frag_max: u32,
    /// Largest medium message.
    pub medium_max: u32,
}

/// A peer of the backend's peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Index in the peer table.
    pub index: u16,
    /// The peer's 48-bit address.
    pub nic_id: u64,
    /// Its hostname (empty when not known yet).
    pub hostname: String,
    /// True when the peer is this host (the intra-node shortcut applies).
    pub local: bool,
}

/// A request on the control path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// First message of a connection.
    Hello {
        /// [`CONTROL_VERSION`].
        version: u32,
    },
    /// Open an endpoint; the request hands over one page set (the channel)
    /// and one event channel.
    OpenEndpoint {
        /// Board number.
        board: u32,
        /// Endpoint id or [`ANY_ENDPOINT`].
        endpoint: u32,
        /// Channel sizes (they fix the page layout).
        sizes: ChannelSizes,
        /// What the endpoint asks for (empty: the version-1 request).
        flags: OpenFlags,
    },
    /// Close one of our endpoints.
    CloseEndpoint {
        /// Endpoint id.
        endpoint: u8,
    },
    /// Look a peer up by address.
    PeerByNicId {
        /// The 48-bit address.
        nic_id: u64,
    },
    /// Look a peer up by hostname (exact match).
    PeerByHostname {
        /// The hostname.
        hostname: String,
    },
    /// Look a peer up by its index.
    PeerByIndex {
        /// Peer table index.
        index: u16,
    },
    /// Describe a board.
    Board {
        /// Board number.
        board: u32,
    },
    /// Read an endpoint's counters.
    Counters {
        /// Endpoint id.
        endpoint: u8,
    },
    /// Read a board's NIC counters ([`NIC_COUNTER_LABELS`] order).
    NicCounters {
        /// Board number.
        board: u32,
    },
    /// Open the board's raw endpoint (at most one per board; only for a
    /// guest the backend's raw-access policy admits). Hands over one page
    /// set and one event channel, as [`ControlRequest::OpenEndpoint`]
    /// does; the channel carries the [`raw_endpoint`](super::raw_endpoint) family.
    OpenRaw {
        /// Board number.
        board: u32,
        /// Channel sizes (they fix the page layout).
        sizes: ChannelSizes,
    },
    /// Close the board's raw endpoint (only its owner may).
    CloseRaw {
        /// Board number.
        board: u32,
    },
    /// Set the board's hostname, the one HOST_REPLY carries (only the
    /// owner of the board's raw endpoint may).
    SetHostname {
        /// Board number.
        board: u32,
        /// The new name (1..[`HOSTNAME_MAX`] bytes, no NUL).
        hostname: String,
    },
    /// Name a peer, adding it if unknown (only the owner of the board's
    /// raw endpoint may).
    SetPeerName {
        /// Board number.
        board: u32,
        /// The peer's 48-bit address.
        nic_id: u64,
        /// Its hostname (1..[`HOSTNAME_MAX`] bytes, no NUL).
        hostname: String,
    },
    /// Read a board's raw-endpoint counters ([`RAW_COUNTER_LABELS`] order).
    RawCounters {
        /// Board number.
        board: u32,
    },
    /// Offer a peer channel ([`crate::peer`]) from our endpoint `endpoint`
    /// to endpoint `peer_endpoint` of this host. Hands over the channel's
    /// memory, laid out for `sizes`, and the other end's doorbell; the
    /// backend answers [`ControlReply::PeerPending`] and offers the channel
    /// to the other endpoint.
    PeerOpen {
        /// Our endpoint.
        endpoint: u8,
        /// The endpoint of this host we want a channel with.
        peer_endpoint: u8,
        /// The channel's sizes.
        sizes: crate::peer::PeerSizes,
    },
    /// Accept channel `channel` offered to our endpoint `endpoint`; the
    /// reply ([`ControlReply::Done`]) carries its memory and our doorbell.
    PeerAccept {
        /// Our endpoint.
        endpoint: u8,
        /// The channel, as the offer named it.
        channel: u32,
    },
    /// Decline an offered channel, or withdraw one we offered.
    PeerClose {
        /// Our endpoint.
        endpoint: u8,
        /// The channel.
        channel: u32,
    },
    /// Which domain endpoint `peer_endpoint` of this host lives in, for a
    /// peer channel from our endpoint `endpoint` (Xen: a grant names its
    /// grantee, so the offering guest asks before it grants). The same
    /// checks as `PeerOpen` on the pair; answered by
    /// [`ControlReply::PeerDomain`], or `Unsupported` where the platform
    /// does not name guests by domain.
    PeerDomain {
        /// Our endpoint.
        endpoint: u8,
        /// The endpoint of this host we want a channel with.
        peer_endpoint: u8,
    },
}

/// Why a control request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ControlError {
    /// The request did not parse or named an unknown kind.
    Malformed = 1,
    /// Control protocol version mismatch.
    BadVersion = 2,
    /// No such board.
    BoardUnknown = 3,
    /// The endpoint id is in use.
    Busy = 4,
    /// The endpoint id is out of range.
    BadEndpoint = 5,
    /// No free endpoint.
    NoResources = 6,
    /// The resources handed over do not match the request.
    BadResources = 7,
    /// No such peer.
    PeerNotFound = 8,
    /// The endpoint is not ours.
    NotOwner = 9,
    /// The backend's policy refuses this guest the request (raw access).
    NotPermitted = 40,
    /// The backend cannot do what the request asks for (e.g. an open
    /// flag its configuration rules out).
    Unsupported = 50,
}

impl ControlError {
    fn from_u32(v: u32) -> Option<Self> {
        use ControlError::*;
        Some(match v {
            1 => Malformed,
            2 => BadVersion,
            3 => BoardUnknown,
            4 => Busy,
            5 => BadEndpoint,
            6 => NoResources,
            7 => BadResources,
            8 => PeerNotFound,
            9 => NotOwner,
            40 => NotPermitted,
            50 => Unsupported,
            _ => return None,
        })
    }
}

impl core::fmt::Display for ControlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for ControlError {}

/// The reply to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// The request failed.
    Error(ControlError),
    /// Reply to `Hello`: the backend's board.
    Hello(BoardInfo),
    /// Reply to `OpenEndpoint`.
    Opened {
        /// The endpoint id given.
        endpoint: u8,
        /// Its random session id.
        session: u32,
    },
    /// Reply to `CloseEndpoint`.
    Closed,
    /// Reply to the peer look-ups.
    Peer(PeerInfo),
    /// Reply to `Board`.
    Board(BoardInfo),
    /// Reply to `Counters`: values in [`COUNTER_LABELS`] order.
    Counters(Vec<u64>),
    /// Reply to `OpenRaw`.
    RawOpened {
        /// Longest frame the raw endpoint may send or will receive.
        max_frame: u32,
    },
    /// A request without a result succeeded (`CloseRaw`, `SetHostname`,
    /// `SetPeerName`, `PeerAccept`, `PeerClose`).
    Done,
    /// A peer channel was offered: the backend's name for it. The other
    /// endpoint rings the channel's doorbell once it accepted (and hangs up
    /// if it declines or the offer lapses).
    PeerPending {
        /// The channel.
        channel: u32,
        /// The other endpoint's process id where the platform lets one
        /// library read another's memory (local), else 0: whom a direct
        /// pull over the channel reads from, vouched for by the backend.
        pid: u32,
    },
    /// Reply to `PeerDomain`: the other endpoint's domain.
    PeerDomain {
        /// Its domain id, as the platform knows it.
        domain: u32,
    },
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(HOSTNAME_MAX - 1)];
        self.u8(b.len() as u8);
        self.0.extend_from_slice(b);
        self
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], MsgError> {
        if self.0.len() < N {
            return Err(MsgError::Truncated);
        }
        let (a, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(a);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, MsgError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, MsgError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, MsgError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, MsgError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn str(&mut self) -> Result<String, MsgError> {
        let n = self.u8()? as usize;
        if n >= HOSTNAME_MAX || self.0.len() < n {
            return Err(MsgError::BadField("hostname length"));
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        if a.contains(&0) {
            return Err(MsgError::BadField("hostname NUL"));
        }
        String::from_utf8(a.to_vec()).map_err(|_| MsgError::BadField("hostname utf-8"))
    }
    fn done(&self) -> Result<(), MsgError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(MsgError::BadField("trailing bytes"))
        }
    }
}

impl ControlRequest {
    /// Encode into a fresh buffer (at most [`CONTROL_MAX`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        match self {
            ControlRequest::Hello { version } => w.u32(1).u32(*version),
            ControlRequest::OpenEndpoint {
                board,
                endpoint,
                sizes,
                flags,
            } => {
                w.u32(2)
                    .u32(*board)
                    .u32(*endpoint)
                    .u32(sizes.cmd_slots)
                    .u32(sizes.evt_slots)
                    .u32(sizes.sendq_slots)
                    .u32(sizes.recvq_slots);
                // Only when set: without flags the request stays what an
                // older backend accepts.
                if !flags.is_empty() {
                    w.u32(flags.bits());
                }
                &mut w
            }
            ControlRequest::CloseEndpoint { endpoint } => w.u32(3).u8(*endpoint),
            ControlRequest::PeerByNicId { nic_id } => w.u32(4).u64(*nic_id),
            ControlRequest::PeerByHostname { hostname } => w.u32(5).str(hostname),
            ControlRequest::PeerByIndex { index } => w.u32(6).u16(*index),
            ControlRequest::Board { board } => w.u32(7).u32(*board),
            ControlRequest::Counters { endpoint } => w.u32(8).u8(*endpoint),
            ControlRequest::NicCounters { board } => w.u32(9).u32(*board),
            ControlRequest::OpenRaw { board, sizes } => w
                .u32(40)
                .u32(*board)
                .u32(sizes.cmd_slots)
                .u32(sizes.evt_slots)
                .u32(sizes.sendq_slots)
                .u32(sizes.recvq_slots),
            ControlRequest::CloseRaw { board } => w.u32(41).u32(*board),
            ControlRequest::SetHostname { board, hostname } => w.u32(42).u32(*board).str(hostname),
            ControlRequest::SetPeerName {
                board,
                nic_id,
                hostname,
            } => w.u32(43).u32(*board).u64(*nic_id).str(hostname),
            ControlRequest::RawCounters { board } => w.u32(44).u32(*board),
            ControlRequest::PeerOpen {
                endpoint,
                peer_endpoint,
                sizes,
            } => w
                .u32(60)
                .u8(*endpoint)
                .u8(*peer_endpoint)
                .u32(sizes.msg_slots)
                .u32(sizes.data_slots),
            ControlRequest::PeerAccept { endpoint, channel } => {
                w.u32(61).u8(*endpoint).u32(*channel)
            }
            ControlRequest::PeerClose { endpoint, channel } => {
                w.u32(62).u8(*endpoint).u32(*channel)
            }
            ControlRequest::PeerDomain {
                endpoint,
                peer_endpoint,
            } => w.u32(63).u8(*endpoint).u8(*peer_endpoint),
        };
        w.0
    }

    /// Decode and validate a request.
    ///
    /// # Errors
    /// [`MsgError`] for unknown kinds, short or over-long messages and bad fields.
    pub fn decode(b: &[u8]) -> Result<Self, MsgError> {
        if b.len() > CONTROL_MAX {
            return Err(MsgError::BadField("control message too long"));
        }
        let mut r = Reader(b);
        let kind = r.u32()?;
        let req = match kind {
            1 => ControlRequest::Hello { version: r.u32()? },
            2 => ControlRequest::OpenEndpoint {
                board: r.u32()?,
                endpoint: r.u32()?,
                sizes: ChannelSizes {
                    cmd_slots: r.u32()?,
                    evt_slots: r.u32()?,
                    sendq_slots: r.u32()?,
                    recvq_slots: r.u32()?,
                },
                flags: if r.0.is_empty() {
                    OpenFlags::empty()
                } else {
                    OpenFlags::from_bits(r.u32()?).ok_or(MsgError::BadField("open flags"))?
                },
            },
            3 => ControlRequest::CloseEndpoint { endpoint: r.u8()? },
            4 => ControlRequest::PeerByNicId { nic_id: r.u64()? },
            5 => ControlRequest::PeerByHostname { hostname: r.str()? },
            6 => ControlRequest::PeerByIndex { index: r.u16()? },
            7 => ControlRequest::Board { board: r.u32()? },
            8 => ControlRequest::Counters { endpoint: r.u8()? },
            9 => ControlRequest::NicCounters { board: r.u32()? },
            40 => ControlRequest::OpenRaw {
                board: r.u32()?,
                sizes: ChannelSizes {
                    cmd_slots: r.u32()?,
                    evt_slots: r.u32()?,
                    sendq_slots: r.u32()?,
                    recvq_slots: r.u32()?,
                },
            },
            41 => ControlRequest::CloseRaw { board: r.u32()? },
            42 => ControlRequest::SetHostname {
                board: r.u32()?,
                hostname: r.str()?,
            },
            43 => ControlRequest::SetPeerName {
                board: r.u32()?,
                nic_id: r.u64()?,
                hostname: r.str()?,
            },
            44 => ControlRequest::RawCounters { board: r.u32()? },
            60 => ControlRequest::PeerOpen {
                endpoint: r.u8()?,
                peer_endpoint: r.u8()?,
                sizes: crate::peer::PeerSizes {
                    msg_slots: r.u32()?,
                    data_slots: r.u32()?,
                },
            },
            61 => ControlRequest::PeerAccept {
                endpoint: r.u8()?,
                channel: r.u32()?,
            },
            62 => ControlRequest::PeerClose {
                endpoint: r.u8()?,
                channel: r.u32()?,
            },
            63 => ControlRequest::PeerDomain {
                endpoint: r.u8()?,
                peer_endpoint: r.u8()?,
            },
            k => return Err(MsgError::UnknownKind(k.min(255) as u8)),
        };
        r.done()?;
        Ok(req)
    }
}

fn put_board(w: &mut Writer, b: &BoardInfo) {
    w.u32(b.board)
        .u64(b.nic_id)
        .str(&b.hostname)
        .u16(b.self_peer)
        .u32(b.max_endpoints)
        .u8(b.profile)
        .u32(b.mtu)
        .u32(b.frag_max)
        .u32(b.medium_max);
}

fn get_board(r: &mut Reader<'_>) -> Result<BoardInfo, MsgError> {
    Ok(BoardInfo {
        board: r.u32()?,
        nic_id: r.u64()?,
        hostname: r.str()?,
        self_peer: r.u16()?,
        max_endpoints: r.u32()?,
        profile: r.u8()?,
        mtu: r.u32()?,
        frag_max: r.u32()?,
        medium_max: r.u32()?,
    })
}

impl ControlReply {
    /// Encode into a fresh buffer (at most [`CONTROL_MAX`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(128));
        match self {
            ControlReply::Error(e) => {
                w.u32(0).u32(*e as u32);
            }
            ControlReply::Hello(b) => {
                w.u32(1);
                put_board(&mut w, b);
            }
            ControlReply::Opened { endpoint, session } => {
                w.u32(2).u8(*endpoint).u32(*session);
            }
            ControlReply::Closed => {
                w.u32(3);
            }
            ControlReply::Peer(p) => {
                w.u32(4)
                    .u16(p.index)
                    .u64(p.nic_id)
                    .str(&p.hostname)
                    .u8(p.local.into());
            }
            ControlReply::Board(b) => {
                w.u32(5);
                put_board(&mut w, b);
            }
            ControlReply::Counters(v) => {
                let n = v.len().min((CONTROL_MAX - 8) / 8);
                w.u32(6).u32(n as u32);
                for x in &v[..n] {
                    w.u64(*x);
                }
            }
            ControlReply::RawOpened { max_frame } => {
                w.u32(40).u32(*max_frame);
            }
            ControlReply::Done => {
                w.u32(41);
            }
            ControlReply::PeerPending { channel, pid } => {
                w.u32(60).u32(*channel).u32(*pid);
            }
            ControlReply::PeerDomain { domain } => {
                w.u32(61).u32(*domain);
            }
        }
        w.0
    }

    /// Decode and validate a reply.
    ///
    /// # Errors
    /// [`MsgError`] for unknown kinds, short or over-long messages and bad fields.
    pub fn decode(b: &[u8]) -> Result<Self, MsgError> {
        if b.len() > CONTROL_MAX {
            return Err(MsgError::BadField("control message too long"));
        }
        let mut r = Reader(b);
        let kind = r.u32()?;
        let rep = match kind {
            0 => ControlReply::Error(
                ControlError::from_u32(r.u32()?).ok_or(MsgError::BadField("control error"))?,
            ),
            1 => ControlReply::Hello(get_board(&mut r)?),
            2 => ControlReply::Opened {
                endpoint: r.u8()?,
                session: r.u32()?,
            },
            3 => ControlReply::Closed,
            4 => ControlReply::Peer(PeerInfo {
                index: r.u16()?,
                nic_id: r.u64()?,
                hostname: r.str()?,
                local: r.u8()? != 0,
            }),
            5 => ControlReply::Board(get_board(&mut r)?),
            6 => {
                let n = r.u32()? as usize;
                if n > (CONTROL_MAX - 8) / 8 {
                    return Err(MsgError::BadField("counter count"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.u64()?);
                }
                ControlReply::Counters(v)
            }
            40 => ControlReply::RawOpened {
                max_frame: r.u32()?,
            },
            41 => ControlReply::Done,
            60 => ControlReply::PeerPending {
                channel: r.u32()?,
                pid: r.u32()?,
            },
            61 => ControlReply::PeerDomain { domain: r.u32()? },
            k => return Err(MsgError::UnknownKind(k.min(255) as u8)),
        };
        r.done()?;
        Ok(rep)
    }
}
