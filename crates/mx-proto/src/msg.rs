//! The messages of a split-driver channel.
//!
//! Three families, each with a fixed, compiler-independent byte layout
//! (little-endian fields, explicit offsets, no implicit padding) so that a
//! guest and a backend built by different compilers can share them:
//!
//! - [`command`]: guest -> backend, one per slot of the command ring
//!   ([`CMD_SLOT_SIZE`] bytes). Tiny and small payloads travel inline.
//! - [`event`]: backend -> guest, one per slot of the event ring
//!   ([`EVT_SLOT_SIZE`] bytes). Tiny payloads travel inline; small and medium
//!   payloads sit in receive-queue slots the event names.
//! - [`control`]: the slow path (attach, endpoint open/close, peer look-ups,
//!   counters), carried by the platform's rendezvous, not by the rings.
//! - [`raw`]: the commands and events of a board's raw endpoint (kinds
//!   20..=29, a family of their own that endpoint channels refuse).
//!
//! Every family follows the same discipline (smoltcp's Packet/Repr split):
//! a raw slot is plain bytes; `parse` copies nothing, checks every field and
//! returns a typed value or a [`MsgError`]; `emit` writes a typed value into a
//! slot. The backend parses only slots it has already copied out of shared
//! memory, so a guest cannot change a command between check and use.

/// A `#[repr(u8)]` enum of wire values and its checked `from_u8`.
macro_rules! u8_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $val:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $val, )*
        }

        impl $name {
            /// The value named by a raw byte, if any.
            pub fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $( $val => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

/// A ring slot: `$size` raw bytes as they sit in shared memory, zeroed by
/// default, shown by its kind byte.
macro_rules! ring_slot {
    ($(#[$meta:meta])* $name:ident, $size:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
        #[repr(C)]
        pub struct $name(pub [u8; $size]);

        impl Default for $name {
            fn default() -> Self {
                $name([0; $size])
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "(kind {})"), self.0[0])
            }
        }
    };
}

pub mod arrival;
pub mod command;
pub mod control;
pub mod event;
pub mod raw_endpoint;

pub use command::{CmdSlot, Command, CMD_SLOT_SIZE};
pub use event::{Event, EvtSlot, EVT_SLOT_SIZE};

/// Largest payload carried inline in a tiny command or event.
pub const TINY_INLINE_MAX: usize = 32;
/// Largest payload carried inline in a small command.
pub const SMALL_INLINE_MAX: usize = 128;
/// Size of one send-queue or receive-queue slot: the largest medium fragment
/// of any wire profile.
pub const QUEUE_SLOT_SIZE: usize = 8192;

/// Why a slot or control message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgError {
    /// The kind byte names no message of this family.
    UnknownKind(u8),
    /// A length field exceeds what the message kind allows.
    BadLength {
        /// The kind byte of the rejected message.
        kind: u8,
        /// The length it declared.
        len: u32,
    },
    /// A field holds a value outside its range (named by the string).
    BadField(&'static str),
    /// The message is shorter than its kind requires.
    Truncated,
}

impl core::fmt::Display for MsgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MsgError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            MsgError::BadLength { kind, len } => {
                write!(f, "length {len} not allowed for message kind {kind}")
            }
            MsgError::BadField(name) => write!(f, "field {name} out of range"),
            MsgError::Truncated => write!(f, "message truncated"),
        }
    }
}

impl std::error::Error for MsgError {}

/// Where a guest's data message goes: a peer of the backend's peer table
/// (the local host is a peer too) and an endpoint on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest {
    /// Index into the backend's peer table.
    pub peer: u16,
    /// Endpoint id on that peer.
    pub endpoint: u8,
}

/// Where a received message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// Index of the sending host in the backend's peer table.
    pub peer: u16,
    /// The sending endpoint.
    pub endpoint: u8,
}

/// The library's sequencing fields of one data message (MX lib seqnums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq {
    /// This message's lib seqnum (14-bit count, 2-bit session).
    pub seqnum: u16,
    /// Piggybacked ack: the oldest seqnum not yet fully received from the peer.
    pub piggyack: u16,
}

/// An RDMA window reference of a rendezvous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdmaRef {
    /// Window id (0..=255) in the sender's endpoint.
    pub id: u8,
    /// Per-window use counter.
    pub seqnum: u8,
    /// Offset of the message in the window.
    pub offset: u32,
}
