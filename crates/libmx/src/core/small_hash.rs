//! The hash of the core's small-key maps (partner by address, pull by
//! cookie).
//!
//! `std`'s default hasher (SipHash-1-3) resists collision attacks on
//! arbitrary keys and costs about 160 instructions per lookup here, which
//! the receive path of every message paid to find its partner. These keys
//! are small integers the core itself hands out (peer index, endpoint,
//! cookie) and the maps are bounded by the partner and pull limits, so a
//! multiply-rotate hash (the Fx hash of rustc) is enough: a few
//! instructions per lookup.

use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher for small integer keys.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SmallHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl SmallHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }
}

impl Hasher for SmallHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
}

/// A `HashMap` keyed by small integers the core hands out.
pub(crate) type SmallMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<SmallHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn h<T: Hash>(v: T) -> u64 {
        BuildHasherDefault::<SmallHasher>::default().hash_one(v)
    }

    #[test]
    fn distinct_small_keys_hash_apart_and_the_map_works() {
        let mut seen = std::collections::HashSet::new();
        for peer in 0u16..64 {
            for ep in 0u8..8 {
                assert!(seen.insert(h((peer, ep))), "collision at {peer}/{ep}");
            }
        }
        let mut m: SmallMap<(u16, u8), usize> = SmallMap::default();
        m.insert((3, 1), 7);
        m.insert((1, 3), 8);
        assert_eq!(m.get(&(3, 1)), Some(&7));
        assert_eq!(m.get(&(1, 3)), Some(&8));
        assert_eq!(m.remove(&(3, 1)), Some(7));
        assert_eq!(m.get(&(3, 1)), None);
    }
}
