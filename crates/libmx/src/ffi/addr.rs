//! How the library packs an `mx_endpoint_addr_t` (16 opaque bytes that the
//! application copies and passes by value).
//!
//! | bytes  | content                                                     |
//! |--------|-------------------------------------------------------------|
//! | 0..8   | partner handle (`u64`, opaque to this module; the engine's  |
//! |        | index + generation of the partner entry)                    |
//! | 8..12  | remote endpoint id (`u32`)                                  |
//! | 12..16 | session id of the remote endpoint (`u32`)                   |
//!
//! All fields are in native byte order (the address never leaves the host).
//! The NIC id is not stored: `mx_decompose_endpoint_addr` looks it up through
//! the partner, as does the per-partner address context. Every copy of an
//! address names the same partner because the handle is the same.

use super::types::MxEndpointAddr;

/// The fields packed into an [`MxEndpointAddr`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct AddrParts {
    /// Opaque partner handle chosen by the engine.
    pub partner: u64,
    /// Remote endpoint id.
    pub endpoint_id: u32,
    /// Remote session id.
    pub session: u32,
}

impl MxEndpointAddr {
    /// Pack `parts` into an address.
    pub fn pack(parts: AddrParts) -> Self {
        let mut hi = [0u8; 8];
        hi[..4].copy_from_slice(&parts.endpoint_id.to_ne_bytes());
        hi[4..].copy_from_slice(&parts.session.to_ne_bytes());
        MxEndpointAddr {
            stuff: [parts.partner, u64::from_ne_bytes(hi)],
        }
    }

    /// Unpack the fields.
    pub fn unpack(&self) -> AddrParts {
        let hi = self.stuff[1].to_ne_bytes();
        AddrParts {
            partner: self.stuff[0],
            endpoint_id: u32::from_ne_bytes([hi[0], hi[1], hi[2], hi[3]]),
            session: u32::from_ne_bytes([hi[4], hi[5], hi[6], hi[7]]),
        }
    }

    /// Bytes 0..8: the partner handle.
    pub fn partner(&self) -> u64 {
        self.unpack().partner
    }

    /// Bytes 8..12: the remote endpoint id.
    pub fn endpoint_id(&self) -> u32 {
        self.unpack().endpoint_id
    }

    /// Bytes 12..16: the remote session id.
    pub fn session(&self) -> u32 {
        self.unpack().session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_roundtrip_and_byte_positions() {
        let p = AddrParts {
            partner: 0x0102_0304_0506_0708,
            endpoint_id: 0x1122_3344,
            session: 0xaabb_ccdd,
        };
        let a = MxEndpointAddr::pack(p);
        assert_eq!(a.unpack(), p);
        assert_eq!(a.partner(), p.partner);
        assert_eq!(a.endpoint_id(), p.endpoint_id);
        assert_eq!(a.session(), p.session);
        // SAFETY: MxEndpointAddr is 16 bytes of plain integers.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(a) };
        assert_eq!(bytes[0..8], p.partner.to_ne_bytes());
        assert_eq!(bytes[8..12], p.endpoint_id.to_ne_bytes());
        assert_eq!(bytes[12..16], p.session.to_ne_bytes());
    }
}
