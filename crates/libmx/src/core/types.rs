//! Public value types of the core: status and return codes, handles,
//! completions, configuration, and the traits the shell implements.

use mx_proto::msg::command::RawSeg;
use mx_proto::msg::control::{BoardInfo, ChannelSizes};

/// Virtual or real time in microseconds. The core never reads a clock: every
/// entry point that needs the time takes it as an argument.
pub type Time = u64;

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $val:expr, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name { $( $(#[$vmeta])* $variant = $val, )* }

        impl $name {
            /// The value with this discriminant, if any.
            pub fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $( $val => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

code_enum! {
    /// `mx_status_code_t`: how a request ended (exact MX discriminants).
    pub enum Status {
        /// MX_STATUS_SUCCESS.
        Success = 0,
        /// MX_STATUS_PENDING.
        Pending = 1,
        /// MX_STATUS_BUFFERED.
        Buffered = 2,
        /// MX_STATUS_REJECTED.
        Rejected = 3,
        /// MX_STATUS_TIMEOUT.
        Timeout = 4,
        /// MX_STATUS_TRUNCATED.
        Truncated = 5,
        /// MX_STATUS_CANCELLED.
        Cancelled = 6,
        /// MX_STATUS_ENDPOINT_UNKNOWN.
        EndpointUnknown = 7,
        /// MX_STATUS_ENDPOINT_CLOSED.
        EndpointClosed = 8,
        /// MX_STATUS_ENDPOINT_UNREACHABLE.
        EndpointUnreachable = 9,
        /// MX_STATUS_BAD_SESSION.
        BadSession = 10,
        /// MX_STATUS_BAD_KEY.
        BadKey = 11,
        /// MX_STATUS_BAD_ENDPOINT.
        BadEndpoint = 12,
        /// MX_STATUS_BAD_RDMAWIN.
        BadRdmawin = 13,
        /// MX_STATUS_ABORTED.
        Aborted = 14,
        /// MX_STATUS_EVENTQ_FULL.
        EventqFull = 15,
        /// MX_STATUS_NO_RESOURCES.
        NoResources = 16,
    }
}

code_enum! {
    /// `mx_return_t`: the return value of API calls (exact MX discriminants).
    pub enum Return {
        /// MX_SUCCESS.
        Success = 0,
        /// MX_BAD_BAD_BAD.
        BadBadBad = 1,
        /// MX_FAILURE.
        Failure = 2,
        /// MX_ALREADY_INITIALIZED.
        AlreadyInitialized = 3,
        /// MX_NOT_INITIALIZED.
        NotInitialized = 4,
        /// MX_NO_DEV.
        NoDev = 5,
        /// MX_NO_DRIVER.
        NoDriver = 6,
        /// MX_NO_PERM.
        NoPerm = 7,
        /// MX_BOARD_UNKNOWN.
        BoardUnknown = 8,
        /// MX_BAD_ENDPOINT.
        BadEndpoint = 9,
        /// MX_BAD_SEG_LIST.
        BadSegList = 10,
        /// MX_BAD_SEG_MEM.
        BadSegMem = 11,
        /// MX_BAD_SEG_CNT.
        BadSegCnt = 12,
        /// MX_BAD_REQUEST.
        BadRequest = 13,
        /// MX_BAD_MATCH_MASK.
        BadMatchMask = 14,
        /// MX_NO_RESOURCES.
        NoResources = 15,
        /// MX_BAD_ADDR_LIST.
        BadAddrList = 16,
        /// MX_BAD_ADDR_COUNT.
        BadAddrCount = 17,
        /// MX_BAD_ROOT.
        BadRoot = 18,
        /// MX_NOT_COMPLETED.
        NotCompleted = 19,
        /// MX_BUSY.
        Busy = 20,
        /// MX_BAD_INFO_KEY.
        BadInfoKey = 21,
        /// MX_BAD_INFO_VAL.
        BadInfoVal = 22,
        /// MX_BAD_NIC.
        BadNic = 23,
        /// MX_BAD_PARAM_LIST.
        BadParamList = 24,
        /// MX_BAD_PARAM_NAME.
        BadParamName = 25,
        /// MX_BAD_PARAM_VAL.
        BadParamVal = 26,
        /// MX_BAD_HOSTNAME_ARGS.
        BadHostnameArgs = 27,
        /// MX_HOST_NOT_FOUND.
        HostNotFound = 28,
        /// MX_REQUEST_PENDING.
        RequestPending = 29,
        /// MX_TIMEOUT.
        Timeout = 30,
        /// MX_NO_MATCH.
        NoMatch = 31,
        /// MX_BAD_ENDPOINT_ID.
        BadEndpointId = 32,
        /// MX_CONNECTION_FAILED.
        ConnectionFailed = 33,
        /// MX_BAD_CONNECTION_KEY.
        BadConnectionKey = 34,
        /// MX_BAD_INFO_LENGTH.
        BadInfoLength = 35,
        /// MX_NIC_NOT_FOUND.
        NicNotFound = 36,
        /// MX_BAD_KERNEL_VERSION.
        BadKernelVersion = 37,
        /// MX_BAD_LIB_VERSION.
        BadLibVersion = 38,
        /// MX_NIC_DEAD.
        NicDead = 39,
        /// MX_CANCEL_NOT_SUPPORTED.
        CancelNotSupported = 40,
        /// MX_CLOSE_IN_HANDLER.
        CloseInHandler = 41,
        /// MX_BAD_MATCHING_FOR_CONTEXT_ID_MASK.
        BadMatchingForContextIdMask = 42,
        /// MX_NOT_SUPPORTED_WITH_CONTEXT_ID.
        NotSupportedWithContextId = 43,
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl core::fmt::Display for Return {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Return {}

/// Handle of a request: slab index plus a generation, so that a stale
/// handle is refused instead of naming a reused slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

impl ReqId {
    /// Pack into 64 bits (index in the low half), e.g. for a C handle.
    pub fn to_u64(self) -> u64 {
        u64::from(self.index) | (u64::from(self.gen) << 32)
    }
    /// Unpack a value made by [`ReqId::to_u64`].
    pub fn from_u64(v: u64) -> Self {
        ReqId {
            index: v as u32,
            gen: (v >> 32) as u32,
        }
    }
}

/// An endpoint address (`mx_endpoint_addr_t`): a partner handle of this
/// core plus the partner's session id.
///
/// Byte layout of [`EndpointAddr::to_bytes`] (16 bytes, little-endian):
/// partner index @0 (u32), partner generation @4 (u32), zero @8 (u32),
/// session id @12 (u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EndpointAddr {
    /// Index in this core's partner table.
    pub partner: u32,
    /// Generation of that partner slot.
    pub gen: u32,
    /// The partner endpoint's session id as known when the address was made.
    pub session: u32,
}

impl EndpointAddr {
    /// The 16 opaque bytes of an `mx_endpoint_addr_t`.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.partner.to_le_bytes());
        b[4..8].copy_from_slice(&self.gen.to_le_bytes());
        b[12..16].copy_from_slice(&self.session.to_le_bytes());
        b
    }
    /// Read back bytes made by [`EndpointAddr::to_bytes`].
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        EndpointAddr {
            partner: w(0),
            gen: w(4),
            session: w(12),
        }
    }
}

/// What a partner is, for `mx_decompose_endpoint_addr` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerInfo {
    /// Index of its host in the backend's peer table.
    pub peer: u16,
    /// Its endpoint id.
    pub endpoint: u8,
    /// Its board address, when known (given to `connect`, or set by the
    /// shell with [`crate::core::Core::set_partner_nic_id`]).
    pub nic_id: Option<u64>,
    /// The address context (`mx_set_endpoint_addr_context`), 0 initially.
    pub context: u64,
    /// Whether this partner is our own endpoint.
    pub is_self: bool,
}

/// Which API call made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    /// `isend` / `issend`.
    Send,
    /// `irecv`.
    Recv,
    /// `iconnect`.
    Connect,
}

/// A finished request, as `mx_test` reports it (`mx_status_t` plus the
/// buffer handed back).
#[derive(Debug)]
pub struct Completion<B> {
    /// The request.
    pub req: ReqId,
    /// What kind of request it was.
    pub kind: ReqType,
    /// How it ended.
    pub status: Status,
    /// The peer (destination of a send, sender of a receive, new address
    /// of a connect).
    pub source: EndpointAddr,
    /// Match info of the message (or the one given to `iconnect`).
    pub match_info: u64,
    /// Length of the message as sent.
    pub msg_length: u32,
    /// Bytes actually transferred.
    pub xfer_length: u32,
    /// The request's context value.
    pub context: u64,
    /// The buffer given to the send or receive, handed back.
    pub buf: Option<B>,
}

/// What `iprobe` reports for an unexpected message (nothing consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The sender.
    pub source: EndpointAddr,
    /// The message's match info.
    pub match_info: u64,
    /// The message's length (also its `xfer_length` for a probe).
    pub msg_length: u32,
}

/// Result of [`crate::core::Core::cancel`].
#[derive(Debug)]
pub enum CancelResult<B> {
    /// Cancelled and freed (MX result 1); a receive's buffer comes back.
    Cancelled(Option<B>),
    /// Too late: already matched or answered (MX result 0).
    NotCancelled,
}

impl<B> CancelResult<B> {
    /// The MX `result` value: 1 when cancelled.
    pub fn as_result(&self) -> u32 {
        match self {
            CancelResult::Cancelled(_) => 1,
            CancelResult::NotCancelled => 0,
        }
    }
}

/// A refused post: the error (a [`super::SendError`] or
/// [`super::RecvError`]) and the buffer, handed back.
pub struct Rejected<B, E> {
    /// Why.
    pub error: E,
    /// The buffer that was passed in.
    pub buf: B,
}

impl<B, E: core::fmt::Debug> core::fmt::Debug for Rejected<B, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<B, E: core::fmt::Display> core::fmt::Display for Rejected<B, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "post refused: {}", self.error)
    }
}

impl<B, E: core::fmt::Debug + core::fmt::Display> std::error::Error for Rejected<B, E> {}

/// A message about to be queued as unexpected (`mx_unexp_handler_t`'s
/// arguments).
#[derive(Debug, Clone, Copy)]
pub struct UnexpInfo<'a> {
    /// The sender.
    pub source: EndpointAddr,
    /// Its match info.
    pub match_info: u64,
    /// Its length.
    pub msg_length: u32,
    /// The whole payload for tiny, small and single-fragment medium messages.
    pub data: Option<&'a [u8]>,
}

/// What the unexpected handler decided (`mx_unexp_handler_action_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum UnexpAction {
    /// MX_RECV_CONTINUE: match again (the handler may have posted a
    /// receive), else queue as unexpected.
    Continue = 0,
    /// MX_RECV_FINISHED: drop the message (a rendezvous gets a zero-length
    /// notify, so its sender sees TRUNCATED).
    Finished = 1,
}

/// A message buffer the core reads (sends) or fills (receives).
///
/// The C ABI implements it over an `mx_segment_t` list, the Rust API over
/// owned bytes. Offsets are message offsets; callers never ask beyond
/// `len()`.
pub trait MsgBuf {
    /// Total length in bytes.
    fn len(&self) -> u32;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `out.len()` bytes starting at `off` into `out`.
    fn read_at(&self, off: u32, out: &mut [u8]);
    /// Copy `data` into the buffer at `off`.
    fn write_at(&mut self, off: u32, data: &[u8]);
    /// Push the (guest address, length) of every segment onto `out`, for
    /// region registration. Lengths sum to `len()`.
    fn segments(&self, out: &mut Vec<(u64, u32)>);
    /// Run `f(message offset, bytes)` over the buffer's own memory, in
    /// order, for the first `len` bytes, stopping when `f` returns false;
    /// returns whether every call returned true. Lets a shell fill a
    /// receive buffer in place (one copy).
    fn fill_in_place(&mut self, len: u32, f: &mut dyn FnMut(u32, &mut [u8]) -> bool) -> bool {
        self.fill_range_in_place(0, len, f)
    }
    /// Run `f(offset from off, bytes)` over the buffer's own memory for
    /// bytes `off..off + len` (clipped to the buffer), in order, stopping
    /// when `f` returns false; returns whether every call returned true.
    /// Lets the core copy a payload straight from a queue slot into the
    /// buffer. The default says it cannot (the core then copies through a
    /// bounce buffer and [`write_at`](Self::write_at), counted in
    /// [`Stats::bounce_bytes`]).
    fn fill_range_in_place(
        &mut self,
        off: u32,
        len: u32,
        f: &mut dyn FnMut(u32, &mut [u8]) -> bool,
    ) -> bool {
        let _ = (off, len, f);
        false
    }
    /// Run `f(offset from off, bytes)` over the buffer's own memory for
    /// bytes `off..off + len`, in order, stopping when `f` returns false;
    /// returns whether every call returned true. Lets a shell copy a
    /// fragment straight from the user's buffer into a queue slot. The
    /// default says it cannot (then through a bounce buffer and
    /// [`read_at`](Self::read_at), counted in [`Stats::bounce_bytes`]).
    fn read_in_place(&self, off: u32, len: u32, f: &mut dyn FnMut(u32, &[u8]) -> bool) -> bool {
        let _ = (off, len, f);
        false
    }
    /// Run `f(message offset, bytes)` over `[off, off + n)` of the
    /// buffer's own memory, in order, in as few pieces as it has segments:
    /// lets the core copy a message into shared memory without a bounce
    /// buffer. The default goes through one (an extra copy): implementors
    /// that own their bytes override it.
    fn chunks(&self, off: u32, n: u32, f: &mut dyn FnMut(u32, &[u8])) {
        let mut tmp = vec![0u8; n as usize];
        self.read_at(off, &mut tmp);
        f(off, &tmp);
    }
    /// Run `f(message offset, bytes)` over `[off, off + n)` of the
    /// buffer's own memory, in order, for `f` to fill: lets the core copy
    /// out of shared memory without a bounce buffer. The default goes
    /// through one (an extra copy): implementors that own their bytes
    /// override it.
    fn chunks_mut(&mut self, off: u32, n: u32, f: &mut dyn FnMut(u32, &mut [u8])) {
        let mut tmp = vec![0u8; n as usize];
        f(off, &mut tmp);
        self.write_at(off, &tmp);
    }
    /// Number of segments (at most 256 are accepted).
    fn segment_count(&self) -> usize {
        let mut v = Vec::new();
        self.segments(&mut v);
        v.len()
    }
}

impl MsgBuf for Vec<u8> {
    fn len(&self) -> u32 {
        Vec::len(self) as u32
    }
    fn read_at(&self, off: u32, out: &mut [u8]) {
        let o = off as usize;
        out.copy_from_slice(&self[o..o + out.len()]);
    }
    fn write_at(&mut self, off: u32, data: &[u8]) {
        let o = off as usize;
        self[o..o + data.len()].copy_from_slice(data);
    }
    fn segments(&self, out: &mut Vec<(u64, u32)>) {
        if !Vec::is_empty(self) {
            out.push((self.as_ptr() as usize as u64, Vec::len(self) as u32));
        }
    }
    fn segment_count(&self) -> usize {
        usize::from(!Vec::is_empty(self))
    }
    fn fill_range_in_place(
        &mut self,
        off: u32,
        len: u32,
        f: &mut dyn FnMut(u32, &mut [u8]) -> bool,
    ) -> bool {
        let start = (off as usize).min(Vec::len(self));
        let end = start.saturating_add(len as usize).min(Vec::len(self));
        f(0, &mut self[start..end])
    }
    fn read_in_place(&self, off: u32, len: u32, f: &mut dyn FnMut(u32, &[u8]) -> bool) -> bool {
        let start = off as usize;
        match start
            .checked_add(len as usize)
            .and_then(|end| self.get(start..end))
        {
            Some(bytes) => f(0, bytes),
            None => false,
        }
    }
    fn chunks(&self, off: u32, n: u32, f: &mut dyn FnMut(u32, &[u8])) {
        let o = off as usize;
        f(off, &self[o..o + n as usize]);
    }
    fn chunks_mut(&mut self, off: u32, n: u32, f: &mut dyn FnMut(u32, &mut [u8])) {
        let o = off as usize;
        f(off, &mut self[o..o + n as usize]);
    }
}

/// Default [`Config::pull_block`]: 256 KiB, enough to amortise a command
/// and an event per block, small enough that copying a block out of the
/// pool overlaps the transfer of the next ones.
pub const DEFAULT_PULL_BLOCK: u32 = 256 * 1024;

/// Most ranges one staged message may be cut into (each is one segment of
/// its registered region).
pub const STAGE_PIECES_MAX: usize = 64;

/// A byte range of a [`BulkPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRange {
    /// Byte offset in the pool (what the backend's region segments name).
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Memory the backend can reach, where large messages are staged when it
/// cannot reach the application's own buffers.
///
/// On Xen, user space cannot grant arbitrary existing pages, so each
/// attachment grants one pool at attach time and the backend maps it once;
/// a large send is copied into the pool before its rendezvous goes out, and
/// a large receive is pulled into the pool and copied out at completion.
/// On the local platform there is no pool: the backend copies straight
/// from and to the application's buffers.
///
/// Staged sends together hold at most half the pool: the other half is
/// always there for pulls, which finish on their own, so large messages
/// crossing in both directions cannot deadlock. A send larger than half
/// the pool goes through a window of a few blocks the backend asks us to
/// refill (`StageNeeded`); only where two blocks do not fit in half the
/// pool does it fail with `NO_RESOURCES`.
pub trait BulkPool: Send {
    /// The size of the pool (what [`BulkPool::reserve`] could give at most).
    fn capacity(&self) -> u32;
    /// Reserve `len` bytes (more than 0) as one or more ranges (in message
    /// order, lengths summing to `len`, at most [`STAGE_PIECES_MAX`]), or
    /// `None` while the pool is too full: the caller retries after a
    /// release.
    fn reserve(&mut self, len: u32) -> Option<Vec<PoolRange>>;
    /// Give a reserved range back.
    fn release(&mut self, range: PoolRange);
    /// Copy `src` into a range reserved by this pool, at byte `at` of the
    /// range. Returns false, copying nothing, when `at + src.len()` passes
    /// the range's end. The pool is memory the backend maps, so it is only
    /// ever copied into and out of, never lent as a slice; the caller does
    /// so while the backend is not using the range (before it is
    /// registered, or a window slot the backend asked to be refilled).
    fn write_at(&mut self, range: PoolRange, at: u32, src: &[u8]) -> bool;
    /// Copy `dst.len()` bytes out of a range reserved by this pool, from
    /// byte `at` of the range (after the pull that filled it completed).
    /// Returns false, copying nothing, when that passes the range's end.
    fn read_at(&self, range: PoolRange, at: u32, dst: &mut [u8]) -> bool;
}

/// A medium fragment [`crate::core::Core::poll_command`] just wrote a
/// command for: which send-queue slot the command names, how long it is,
/// and whether its bytes must be copied in (from the user's buffer, with
/// [`crate::core::Core::copy_frag`]) or are there already (a
/// retransmission from a retained slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragRef {
    /// The send-queue slot the command names.
    pub sendq_slot: u16,
    /// The fragment's length in bytes.
    pub len: u32,
    /// The core keeps the slot's bytes until the message is acked (it may
    /// complete before: the bytes are out of the user's buffer), so the
    /// slot must be filled even when the fragment leaves another way.
    pub retained: bool,
    /// Where the bytes are in the user's buffer (request, message offset);
    /// `None`: the slot already holds them.
    pub(crate) src: Option<(ReqId, u32)>,
}

impl FragRef {
    /// Whether the bytes still have to be copied (from the user's buffer)
    /// before the command may be posted.
    pub fn needs_fill(&self) -> bool {
        self.src.is_some()
    }
}

/// What [`crate::core::Core::poll_command`] wrote besides the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// The command is a medium fragment: where its bytes go and come from.
    pub frag: Option<FragRef>,
}

/// The payload slots of an event, as seen by
/// [`crate::core::Core::handle_event`]: copy-shaped, so the shell never
/// hands out a slice over shared memory and the core copies each byte once,
/// straight into its destination (the receive buffer, or the unexpected
/// message's storage). The core reads during the call only, so the slot may
/// be released right after.
pub trait RecvQueue {
    /// How many bytes slot `idx` holds (an event claiming more is dropped).
    fn slot_len(&self, idx: u16) -> usize;
    /// Copy `out.len()` bytes from offset `off` of slot `idx` into `out`;
    /// false if that failed (the channel broke).
    fn read(&self, idx: u16, off: usize, out: &mut [u8]) -> bool;
}

/// Slots held in local memory, one buffer each (tests and simulations).
impl RecvQueue for Vec<Vec<u8>> {
    fn slot_len(&self, idx: u16) -> usize {
        self.get(usize::from(idx)).map_or(0, Vec::len)
    }
    fn read(&self, idx: u16, off: usize, out: &mut [u8]) -> bool {
        match self
            .get(usize::from(idx))
            .and_then(|s| s.get(off..off.saturating_add(out.len())))
        {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// A receive queue with no slots (for events that carry no slot payload).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecvQueue;

impl RecvQueue for NoRecvQueue {
    fn slot_len(&self, _idx: u16) -> usize {
        0
    }
    fn read(&self, _idx: u16, _off: usize, _out: &mut [u8]) -> bool {
        false
    }
}

/// One slot's payload in private memory (an inline small payload, a test):
/// every index names it.
#[derive(Debug, Clone, Copy)]
pub struct SlotBytes<'a>(pub &'a [u8]);

impl RecvQueue for SlotBytes<'_> {
    fn slot_len(&self, _idx: u16) -> usize {
        self.0.len()
    }
    fn read(&self, _idx: u16, off: usize, out: &mut [u8]) -> bool {
        match off
            .checked_add(out.len())
            .and_then(|end| self.0.get(off..end))
        {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Tuning and identity of one core (one MX endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our endpoint id.
    pub endpoint: u8,
    /// Our host's index in the backend's peer table.
    pub self_peer: u16,
    /// Our board address.
    pub nic_id: u64,
    /// Our endpoint's session id (given by the backend at open).
    pub session: u32,
    /// Endpoint key that incoming connects must present.
    pub app_key: u32,
    /// Largest medium fragment (from the backend's board info).
    pub frag_max: u32,
    /// Largest medium message (from the backend's board info).
    pub medium_max: u32,
    /// Slots in the send queue.
    pub sendq_slots: u16,
    /// Slots in the receive queue.
    pub recvq_slots: u16,
    /// Messages longer than this use the rendezvous path (clamped to
    /// `[128, medium_max]`).
    pub rndv_threshold: u32,
    /// Send an explicit ack once this many messages are unacked (1: ack
    /// every message at once, `MX_IMM_ACK`).
    pub ack_threshold: u16,
    /// Otherwise ack after this delay (µs, ~1/64 s).
    pub ack_delay: Time,
    /// Retransmit unacked messages and connects after this delay (µs).
    pub resend_delay: Time,
    /// Sends of one message before its partner is declared unreachable.
    pub resend_limit: u32,
    /// Eager sends allowed to complete before their ack (0: every send
    /// completes only once acked, `MX_ZOMBIE_SEND=0`).
    pub zombie_max: u32,
    /// Stop sending new messages to a partner with this many unacked.
    pub throttle: u16,
    /// Send to ourselves through the backend (MX_DISABLE_SELF).
    pub disable_self: bool,
    /// Block size of a staged pull ([`DEFAULT_PULL_BLOCK`]): the backend
    /// moves block k+1 while we copy block k out of the pool.
    pub pull_block: u32,
    /// Offer to copy pulled bytes ourselves, straight from the sender
    /// ([`Core::handle_pull_direct`](super::Core::handle_pull_direct)); the
    /// shell sets it where the platform allows it (local). Turned off for
    /// good by the first copy that fails.
    pub direct_pull: bool,
    /// Keep a [`PartnerReset`] notice for every partner reset, for
    /// [`crate::core::Core::take_partner_reset`] (`MX_VERBOSE`); off, resets
    /// are only counted.
    pub report_resets: bool,
    /// Context ids: (bits, shift) of the match info, if enabled.
    pub context_id: Option<(u8, u8)>,
    /// Seed of the core's pseudo-random numbers.
    pub seed: u64,
}

/// Default rendezvous threshold.
pub const DEFAULT_RNDV_THRESHOLD: u32 = 32768;
/// Default resend limit.
pub const DEFAULT_RESEND_LIMIT: u32 = 1000;
/// Most frags of one medium message the core supports.
pub const MAX_MEDIUM_FRAGS: u32 = 64;

impl Config {
    /// A configuration with the MX defaults and the `open-mx` 9000 profile
    /// sizes (8192-byte fragments, 256 KiB medium max, 128-slot queues).
    pub fn new(endpoint: u8, self_peer: u16, nic_id: u64, session: u32, app_key: u32) -> Self {
        Config {
            endpoint,
            self_peer,
            nic_id,
            session,
            app_key,
            frag_max: 8192,
            medium_max: 32 * 8192,
            sendq_slots: 128,
            recvq_slots: 128,
            rndv_threshold: DEFAULT_RNDV_THRESHOLD,
            ack_threshold: 4,
            ack_delay: 1_000_000 / 64,
            resend_delay: 500_000,
            resend_limit: DEFAULT_RESEND_LIMIT,
            zombie_max: 512,
            throttle: 8191,
            disable_self: false,
            pull_block: DEFAULT_PULL_BLOCK,
            direct_pull: false,
            report_resets: false,
            context_id: None,
            seed: 0x5eed,
        }
    }

    /// A configuration from what the backend told us at attach and open.
    pub fn from_board(
        board: &BoardInfo,
        sizes: &ChannelSizes,
        endpoint: u8,
        session: u32,
        app_key: u32,
    ) -> Self {
        let mut c = Config::new(endpoint, board.self_peer, board.nic_id, session, app_key);
        c.frag_max = board.frag_max;
        c.medium_max = board.medium_max;
        c.sendq_slots = sizes.sendq_slots.min(u32::from(u16::MAX)) as u16;
        c.recvq_slots = sizes.recvq_slots.min(u32::from(u16::MAX)) as u16;
        c
    }

    /// Check the configuration; the core clamps the rendezvous threshold.
    ///
    /// # Errors
    /// [`ConfigError::BadSize`](super::ConfigError::BadSize) for sizes the
    /// core cannot work with.
    pub fn validate(&self) -> Result<(), super::ConfigError> {
        let frag_ok = self.frag_max > 0 && self.frag_max as usize <= mx_proto::msg::QUEUE_SLOT_SIZE;
        let frags = self.medium_max.div_ceil(self.frag_max.max(1));
        let ctx_ok = match self.context_id {
            None => true,
            Some((bits, shift)) => bits <= 16 && u32::from(bits) + u32::from(shift) <= 64,
        };
        if !frag_ok
            || self.medium_max < 128
            || frags > MAX_MEDIUM_FRAGS
            || self.sendq_slots == 0
            || self.recvq_slots == 0
            || self.throttle == 0
            || self.throttle > 0x3FFF / 2
            || !ctx_ok
        {
            return Err(super::ConfigError::BadSize);
        }
        Ok(())
    }

    /// The request timeout (ms) as a resend limit: `(ms*2+1023)/1024`, at
    /// least 1; 0 (MX_INFINITE) means no limit.
    pub fn resends_for_timeout(ms: u32) -> u32 {
        if ms == 0 {
            u32::MAX
        } else {
            (u64::from(ms) * 2)
                .div_ceil(1024)
                .clamp(1, u64::from(u32::MAX)) as u32
        }
    }
}

/// Why a partner's state was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The resend limit was reached: the partner is unreachable, its
    /// requests failed with ENDPOINT_UNREACHABLE.
    Unreachable,
    /// The partner connected (or answered a connect) with a new session:
    /// a new instance of that endpoint; the old one's requests failed.
    Restarted,
}

/// A partner reset, as [`crate::core::Core::take_partner_reset`] reports
/// it (with [`Config::report_resets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerReset {
    /// Its host's index in the backend's peer table.
    pub peer: u16,
    /// Its endpoint id.
    pub endpoint: u8,
    /// Its board address, when known.
    pub nic_id: Option<u64>,
    /// Why.
    pub reason: ResetReason,
}

/// Counters of what the core saw and did (for `mx_get_info` counters and
/// tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events dropped because they named an unknown partner.
    pub drop_unknown_partner: u64,
    /// Events dropped for a wrong session number or piggyack session.
    pub drop_bad_sesnum: u64,
    /// Events dropped because a slot index or length lied.
    pub drop_bad_event: u64,
    /// Obsolete (already received) messages dropped.
    pub drop_obsolete: u64,
    /// Messages too far ahead to keep, dropped.
    pub drop_too_early: u64,
    /// Early messages kept for later.
    pub early_kept: u64,
    /// Duplicate fragments or early packets ignored.
    pub duplicates: u64,
    /// Acks (explicit or piggybacked) that failed the validity rule.
    pub bad_acks: u64,
    /// Explicit acks ignored because their acknum was not newer.
    pub stale_acks: u64,
    /// Explicit acks sent.
    pub acks_sent: u64,
    /// Retransmissions queued.
    pub resends: u64,
    /// Partners declared unreachable after the resend limit.
    pub partners_failed: u64,
    /// Partners whose state was reset: declared unreachable, or found to
    /// be a new instance (its connect carried a new session).
    pub partner_resets: u64,
    /// NACKs received.
    pub nacks: u64,
    /// Command errors reported by the backend.
    pub command_errors: u64,
    /// Bytes copied into or out of the bulk pool (large messages staged).
    pub bytes_staged: u64,
    /// Window blocks staged again because the backend asked for them
    /// (sends larger than their pool room).
    pub window_stages: u64,
    /// Pulls we copied ourselves from the sender.
    pub pulls_direct: u64,
    /// Direct copies that failed (the pull was sent again, to the backend).
    pub pulls_direct_failed: u64,
    /// Unexpected messages queued.
    pub unexpected: u64,
    /// Payload bytes copied through a bounce buffer because a
    /// [`MsgBuf`] could not be read or filled in place (a second copy of
    /// those bytes; 0 for the library's own buffers).
    pub bounce_bytes: u64,
}

pub(crate) fn raw_segs<B: MsgBuf>(buf: &B) -> Vec<RawSeg> {
    let mut v = Vec::new();
    buf.segments(&mut v);
    v.into_iter()
        .filter(|&(_, l)| l > 0)
        .map(|(a, l)| RawSeg::new(a, l))
        .collect()
}
