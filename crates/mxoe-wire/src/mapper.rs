//! Mapper (omxoed-style) announcements: 64-byte RAW frames broadcast so
//! that nodes learn each other's MAC addresses.
//!
//! Layout (frame offsets): head with dst ff:ff:ff:ff:ff:ff and peer index 0,
//! packet type 1 @16, zeros @17..32, `nic_id_hi` u32 @32, `nic_id_lo` u32
//! @36, `serial` u32 @40 (random per mapper run), zeros @44..64.

use core::time::Duration;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

use crate::error::{DecodeError, EmitError};
use crate::headers::{EthHead, MapperFrameLayout};
use crate::types::{NicId, PacketType};
use crate::{BROADCAST_MAC, ETHERTYPE, HEAD_LEN};

/// Length of a mapper frame.
pub const MAPPER_FRAME_LEN: usize = MapperFrameLayout::LEN;
/// Announcements in a burst (at start, and when a new peer or serial appears).
pub const BURST_COUNT: u32 = 8;
/// Interval between the announcements of a burst.
pub const BURST_INTERVAL: Duration = Duration::from_secs(1);
/// Interval between announcements after a burst.
pub const STEADY_INTERVAL: Duration = Duration::from_secs(180);

/// One mapper announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapperAnnounce {
    /// Source MAC of the frame.
    pub src: [u8; 6],
    /// The announced board address.
    pub nic_id: NicId,
    /// Random per mapper run; a new serial means the mapper restarted.
    pub serial: u32,
}

impl MapperAnnounce {
    /// Parses a received mapper frame (at least 64 bytes).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] under 64 bytes, [`DecodeError::BadEtherType`],
    /// [`DecodeError::NotMapper`] if the type is not RAW,
    /// [`DecodeError::BadNicId`] if the address has more than 48 bits.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let (eth, _) = EthHead::read_from_prefix(frame).map_err(|_| DecodeError::Truncated {
            needed: HEAD_LEN,
            available: frame.len(),
        })?;
        if eth.ethertype.get() != ETHERTYPE {
            return Err(DecodeError::BadEtherType(eth.ethertype.get()));
        }
        let (m, _) =
            MapperFrameLayout::read_from_prefix(frame).map_err(|_| DecodeError::Truncated {
                needed: MAPPER_FRAME_LEN,
                available: frame.len(),
            })?;
        let ptype = PacketType::from(m.ptype);
        if ptype != PacketType::Raw {
            return Err(DecodeError::NotMapper(ptype));
        }
        let hi = m.nic_id_hi.get();
        let nic_id = NicId::new((u64::from(hi) << 32) | u64::from(m.nic_id_lo.get()))
            .ok_or(DecodeError::BadNicId { hi })?;
        Ok(Self {
            src: m.head.src_mac,
            nic_id,
            serial: m.serial.get(),
        })
    }

    /// Writes the 64-byte broadcast frame into `buf` and returns 64.
    ///
    /// # Errors
    ///
    /// [`EmitError::BufferTooSmall`] if `buf` is shorter than 64 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let raw = self.nic_id.raw();
        let frame = MapperFrameLayout {
            head: EthHead {
                dst_mac: BROADCAST_MAC,
                src_mac: self.src,
                ethertype: U16::new(ETHERTYPE),
                dst_src_peer_index: U16::ZERO,
            },
            ptype: PacketType::Raw.into(),
            nic_id_hi: U32::new((raw >> 32) as u32),
            nic_id_lo: U32::new(raw as u32),
            serial: U32::new(self.serial),
            ..Default::default()
        };
        frame
            .write_to_prefix(buf)
            .map_err(|_| EmitError::BufferTooSmall {
                needed: MAPPER_FRAME_LEN,
                available: buf.len(),
            })?;
        Ok(MAPPER_FRAME_LEN)
    }
}
