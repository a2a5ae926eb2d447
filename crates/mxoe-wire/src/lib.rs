//! The MXoE / Open-MX Ethernet wire format (EtherType 0x86DF).
//!
//! Pure byte work: no I/O, no allocation, `no_std`. Every fact here comes
//! from the project's wire specification (`shared/spec/mxoe-wire.md`).
//!
//! # Layers
//!
//! - [`profile`]: the two wire profiles (`mx` and `open-mx` with an MTU) and
//!   every size derived from them. Both sides of a link must use the same
//!   profile; nothing on the wire says which one is in use.
//! - [`headers`]: one `#[repr(C)]` zerocopy struct per on-wire header, with
//!   big-endian field types. These are raw views: any byte pattern is a
//!   valid value, nothing is checked.
//! - [`packet`]: the validated, typed form ([`Packet`], [`Frame`]), the one
//!   decoder ([`decode`]) and the encoders ([`emit`], [`emit_header`]).
//! - [`types`]: small domain types that hold the protocol's rules (lib
//!   sequence numbers, pull handles, match info, board addresses, ...).
//! - [`pull`]: block and frame arithmetic of the LARGE (pull) protocol.
//! - [`mapper`]: the 64-byte mapper announcement carried in RAW frames.
//! - [`crc`]: the CRC-16 used by debug builds of the reference.
//!
//! # Decoding
//!
//! ```
//! use mxoe_wire::{decode, emit, Frame, Head, Packet, PeerIndex, WireProfile};
//! use mxoe_wire::packet::HostQuery;
//!
//! let profile = WireProfile::OPEN_MX_9000;
//! let frame = Frame {
//!     head: Head { dst: [2, 0, 0, 0, 0, 1], src: [2, 0, 0, 0, 0, 2], peer_index: PeerIndex::UNKNOWN },
//!     packet: Packet::HostQuery(HostQuery { src_dst_peer_index: PeerIndex::new(7), magic: 0x1305_2008 }),
//! };
//! let mut buf = [0u8; 64];
//! let n = emit(&profile, &frame, &mut buf).unwrap();
//! assert_eq!(n, 60); // padded to ETH_ZLEN
//! let back = decode(&profile, &buf[..n]).unwrap();
//! assert_eq!(back.packet, frame.packet);
//! ```
//!
//! # Decisions beyond the specification's letter
//!
//! - Open-MX MTUs are accepted from 1280 to 65535 (see
//!   [`WireProfile::OPEN_MX_MIN_MTU`] for why).
//! - Besides the drops the specification names (TINY > 32, SMALL > 128,
//!   fragment longer than the profile allows, declared length past the end
//!   of the frame), the decoder rejects values that no conforming sender
//!   produces and that would make a receiver misbehave: a MEDIUM fragment
//!   whose length is not exactly what `msg_length` and `frag_seqnum` imply
//!   (all fragments full but the last) or whose message exceeds the max
//!   medium; an mx `frag_pipeline` other than 12; a RNDV whose MSG length
//!   is not 8; TRUC and CONNECT lengths other than 16; a TRUC type other
//!   than 0x55; a PULL whose `first_frame_offset` is not below the pull
//!   reply length or that asks for more than one block; a hostname that is
//!   empty, longer than 80 bytes with its NUL, not NUL-terminated or with
//!   a NUL inside.
//! - A CONNECT with any non-zero `is_reply` is a reply (the reference tests
//!   it as a C truth value); it is re-encoded as 1.
//! - Unknown NACK types and connect statuses survive as `Unknown(u8)`;
//!   pull handles, magics, sessions and endpoints are not judged here (that
//!   needs endpoint state).
//! - Pads, `src_generation`, `checksum` and the head peer index of
//!   PULL_REPLY / HOST_QUERY / HOST_REPLY are ignored on receive and
//!   written as zero.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod crc;
mod decode;
mod emit;
pub mod error;
pub mod headers;
pub mod mapper;
pub mod packet;
pub mod profile;
pub mod pull;
pub mod types;

pub use error::{DecodeError, EmitError, ProfileError};
pub use packet::{decode, emit, emit_header, pad_len, Frame, Head, Packet, ZERO_PAD};
pub use profile::{ProfileKind, SizeClass, WireProfile};
pub use types::{
    ConnectStatus, EndpointId, Hostname, LibSeqnum, MatchInfo, NackType, NicId, PacketType,
    PeerIndex, PullHandle, PullMagic, SessionId,
};

/// The EtherType of every MXoE frame.
pub const ETHERTYPE: u16 = 0x86DF;
/// Minimum Ethernet frame length without FCS; shorter frames are padded with zeros.
pub const ETH_ZLEN: usize = 60;
/// Length of the head every frame starts with: dst MAC, src MAC, EtherType, peer index.
pub const HEAD_LEN: usize = 16;
/// Largest payload of a TINY message.
pub const TINY_MAX: usize = 32;
/// Largest payload of a SMALL message.
pub const SMALL_MAX: usize = 128;
/// Default rendezvous threshold: messages longer than this use the LARGE path
/// (before clamping to the profile, see [`WireProfile::clamp_rndv_threshold`]).
pub const RNDV_THRESHOLD_DEFAULT: u32 = 32768;
/// Initial magic of a HOST_QUERY (incremented when a node clears its peer names).
pub const HOST_QUERY_MAGIC: u32 = 0x1305_2008;
/// Longest hostname on the wire, including its terminating NUL.
pub const HOSTNAME_MAX: usize = 80;
/// TRUC data subtype of a library ack.
pub const TRUC_ACK: u8 = 0x55;
/// Length of the TRUC ack data (the TRUC header's `length` field).
pub const TRUC_ACK_LEN: u8 = 16;
/// Length of the CONNECT data (the CONNECT header's `length` field).
pub const CONNECT_DATA_LEN: u8 = 16;
/// Length of the rendezvous data after the MSG header (the RNDV's MSG `length` field).
pub const RNDV_DATA_LEN: u16 = 8;
/// Value XORed with an endpoint index to form a pull magic, both directions.
pub const PULL_MAGIC_XOR: u32 = 0x2107_1980;
/// Pull blocks a puller keeps in flight.
pub const PULL_BLOCKS_IN_FLIGHT: u32 = 4;
/// The broadcast MAC address (mapper announcements go there).
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
