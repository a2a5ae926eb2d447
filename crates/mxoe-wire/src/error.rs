//! Error types. Small, `Copy`, no allocation.

use core::fmt;

use crate::types::PacketType;

/// Why a frame was rejected by [`decode`](crate::decode).
///
/// Every variant is a reason to drop the frame (and count it); none is a
/// reason to panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The frame ends before the head or the fixed header of its type.
    Truncated {
        /// Bytes the head plus fixed header need.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The EtherType is not 0x86DF.
    BadEtherType(u16),
    /// A packet type this protocol does not define.
    UnknownType(u8),
    /// A defined packet type that Open-MX drops (NONE, MFM_NIC_REPLY, ETHER_*).
    UnsupportedType(PacketType),
    /// A declared length (payload, fragment, hostname) runs past the end of the frame.
    LengthBeyondFrame {
        /// Frame length the declared length requires.
        declared: usize,
        /// Bytes present.
        available: usize,
    },
    /// A TINY declares more than 32 bytes.
    TinyTooLong(usize),
    /// A SMALL declares more than 128 bytes.
    SmallTooLong(usize),
    /// The MSG `length` of a RNDV is not 8.
    RndvLength(u16),
    /// A MEDIUM declares a message longer than the profile's max medium.
    MediumTooLong {
        /// Declared message length.
        len: u32,
        /// The profile's max medium.
        max: u32,
    },
    /// A MEDIUM fragment is longer than the profile's fragment max.
    FragTooLong {
        /// Declared fragment length.
        len: usize,
        /// The profile's fragment max.
        max: u32,
    },
    /// A MEDIUM `frag_seqnum` is not below the profile's fragments per message.
    FragSeqnumOutOfRange {
        /// Declared fragment number.
        seqnum: u8,
        /// The profile's fragments per message.
        max: u32,
    },
    /// An mx MEDIUM's `frag_pipeline` is not 12 (log2 of 4096).
    FragPipeline(u8),
    /// A MEDIUM fragment's length is not what its message length and
    /// fragment number imply (all fragments are full but the last), or the
    /// message has no fragment with that number.
    FragMismatch {
        /// Declared fragment number.
        seqnum: u8,
        /// Declared fragment length.
        len: usize,
        /// Declared message length.
        msg_len: u32,
    },
    /// A PULL_REPLY frame is longer than the profile's pull reply length.
    PullReplyTooLong {
        /// Declared frame length.
        len: usize,
        /// The profile's pull reply length.
        max: u32,
    },
    /// A PULL's `first_frame_offset` is not below the pull reply length.
    PullFrameOffset {
        /// Declared first frame offset.
        offset: u32,
        /// The profile's pull reply length.
        max: u32,
    },
    /// A PULL asks for more than one block (more replies than a block holds).
    PullBlockTooLarge {
        /// `first_frame_offset + block_length`.
        end: u64,
        /// The profile's block length.
        max: u32,
    },
    /// A TRUC's `length` is not 16.
    TrucLength(u8),
    /// A TRUC's data type is not 0x55 (ack).
    TrucType(u8),
    /// A CONNECT's `length` is not 16.
    ConnectLength(u8),
    /// A HOST_REPLY hostname length (NUL included) is below 2 or above 80.
    HostnameLength(u8),
    /// A HOST_REPLY hostname's last byte is not NUL.
    HostnameNotTerminated,
    /// A HOST_REPLY hostname has a NUL before its end.
    HostnameInteriorNul,
    /// A mapper frame is not a RAW packet.
    NotMapper(PacketType),
    /// A mapper frame's board address does not fit in 48 bits.
    BadNicId {
        /// The `nic_id_hi` field (only its low 16 bits may be set).
        hi: u32,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "frame too short: need {needed} bytes, have {available}")
            }
            Self::BadEtherType(t) => write!(f, "wrong EtherType {t:#06x}"),
            Self::UnknownType(t) => write!(f, "unknown packet type {t}"),
            Self::UnsupportedType(t) => write!(f, "unsupported packet type {t:?}"),
            Self::LengthBeyondFrame {
                declared,
                available,
            } => write!(
                f,
                "declared length needs {declared} bytes, frame has {available}"
            ),
            Self::TinyTooLong(n) => write!(f, "TINY of {n} bytes (max 32)"),
            Self::SmallTooLong(n) => write!(f, "SMALL of {n} bytes (max 128)"),
            Self::RndvLength(n) => write!(f, "RNDV with MSG length {n} (must be 8)"),
            Self::MediumTooLong { len, max } => {
                write!(f, "MEDIUM message of {len} bytes (max {max})")
            }
            Self::FragTooLong { len, max } => {
                write!(f, "MEDIUM fragment of {len} bytes (max {max})")
            }
            Self::FragSeqnumOutOfRange { seqnum, max } => {
                write!(f, "MEDIUM fragment number {seqnum} (must be below {max})")
            }
            Self::FragPipeline(p) => write!(f, "mx frag_pipeline {p} (must be 12)"),
            Self::FragMismatch {
                seqnum,
                len,
                msg_len,
            } => write!(
                f,
                "fragment {seqnum} of {len} bytes does not fit a {msg_len}-byte message"
            ),
            Self::PullReplyTooLong { len, max } => {
                write!(f, "PULL_REPLY of {len} bytes (max {max})")
            }
            Self::PullFrameOffset { offset, max } => {
                write!(f, "PULL first_frame_offset {offset} (must be below {max})")
            }
            Self::PullBlockTooLarge { end, max } => {
                write!(f, "PULL block ends at {end} (block length {max})")
            }
            Self::TrucLength(n) => write!(f, "TRUC length {n} (must be 16)"),
            Self::TrucType(t) => write!(f, "TRUC data type {t:#04x} (must be 0x55)"),
            Self::ConnectLength(n) => write!(f, "CONNECT length {n} (must be 16)"),
            Self::HostnameLength(n) => write!(f, "hostname length {n} (must be 2..=80)"),
            Self::HostnameNotTerminated => f.write_str("hostname not NUL-terminated"),
            Self::HostnameInteriorNul => f.write_str("hostname contains a NUL"),
            Self::NotMapper(t) => write!(f, "not a mapper frame (type {t:?})"),
            Self::BadNicId { hi } => write!(f, "nic_id_hi {hi:#x} exceeds 48 bits"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why an encoder refused to write a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// The caller's buffer is shorter than the frame (or header) to write.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A value does not fit the narrower field of this profile's layout
    /// (e.g. an mx PULL's 16-bit `pulled_rdma_offset`).
    FieldOverflow {
        /// The field's name as in the specification.
        field: &'static str,
        /// The value that did not fit.
        value: u64,
    },
    /// Header-only encoding was given a payload length for a packet type
    /// that carries no separate payload.
    UnexpectedPayload(usize),
    /// The packet would be rejected by a receiver, for this reason (the
    /// encoder runs the decoder's value checks, so whatever it writes decodes
    /// back to the same packet).
    Invalid(DecodeError),
}

impl From<DecodeError> for EmitError {
    fn from(e: DecodeError) -> Self {
        Self::Invalid(e)
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small: need {needed} bytes, have {available}")
            }
            Self::FieldOverflow { field, value } => {
                write!(f, "{value} does not fit field {field} of this profile")
            }
            Self::UnexpectedPayload(n) => {
                write!(f, "payload of {n} bytes for a type without payload")
            }
            Self::Invalid(e) => write!(f, "invalid packet: {e}"),
        }
    }
}

impl core::error::Error for EmitError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a wire profile was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileError {
    /// MTU below the smallest supported one.
    MtuTooSmall {
        /// Requested MTU.
        mtu: u32,
        /// Smallest accepted MTU.
        min: u32,
    },
    /// MTU above the largest supported one.
    MtuTooLarge {
        /// Requested MTU.
        mtu: u32,
        /// Largest accepted MTU.
        max: u32,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MtuTooSmall { mtu, min } => write!(f, "MTU {mtu} below minimum {min}"),
            Self::MtuTooLarge { mtu, max } => write!(f, "MTU {mtu} above maximum {max}"),
        }
    }
}

impl core::error::Error for ProfileError {}

/// Why a hostname was refused by [`Hostname::new`](crate::Hostname::new).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostnameError {
    /// The name is empty.
    Empty,
    /// The name plus its NUL exceeds 80 bytes.
    TooLong(usize),
    /// The name contains a NUL byte.
    InteriorNul,
}

impl fmt::Display for HostnameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty hostname"),
            Self::TooLong(n) => write!(f, "hostname of {n} bytes (max 79 plus NUL)"),
            Self::InteriorNul => f.write_str("hostname contains a NUL"),
        }
    }
}

impl core::error::Error for HostnameError {}
