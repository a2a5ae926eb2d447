//! CRC-16 as filled into `checksum` by debug builds of the reference:
//! polynomial 0x1021, initial value 0, MSB first, no final XOR (the
//! parameters known as CRC-16/XMODEM). Receivers must ignore the field and
//! this crate's encoders write 0; the function is here for tools and tests.

/// The generator polynomial.
pub const POLY: u16 = 0x1021;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Incremental CRC-16 state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crc16 {
    crc: u16,
}

impl Crc16 {
    /// A fresh state (initial value 0).
    pub const fn new() -> Self {
        Self { crc: 0 }
    }

    /// Feeds `data`.
    pub const fn update(mut self, data: &[u8]) -> Self {
        let mut i = 0;
        while i < data.len() {
            let idx = ((self.crc >> 8) as u8 ^ data[i]) as usize;
            self.crc = (self.crc << 8) ^ TABLE[idx];
            i += 1;
        }
        self
    }

    /// The checksum of everything fed so far.
    pub const fn finish(self) -> u16 {
        self.crc
    }
}

/// CRC-16 of `data` in one go.
pub const fn crc16(data: &[u8]) -> u16 {
    Crc16::new().update(data).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward bit-by-bit reference, for cross-checking the table.
    fn crc16_bitwise(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ POLY
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn known_vectors() {
        assert_eq!(crc16(b"123456789"), 0x31C3); // CRC-16/XMODEM check value
        assert_eq!(crc16(b""), 0);
        assert_eq!(crc16(b"A"), 0x58E5);
        assert_eq!(crc16(&[0]), 0);
        assert_eq!(crc16(&[0xff, 0xff]), 0x1D0F);
    }

    #[test]
    fn table_matches_bitwise_and_incremental() {
        let data: std::vec::Vec<u8> = (0..=255u8).chain(0..100).collect();
        assert_eq!(crc16(&data), crc16_bitwise(&data));
        let (a, b) = data.split_at(77);
        assert_eq!(Crc16::new().update(a).update(b).finish(), crc16(&data));
    }
}
