//! Small domain types, each holding its protocol rule in one place.

use core::fmt;

use crate::error::HostnameError;
use crate::{HOSTNAME_MAX, PULL_MAGIC_XOR};

/// Defines a `u8` code enum whose unknown values survive as `Unknown(u8)`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this crate does not define (kept as received).
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

code_enum! {
    /// The packet type byte at frame offset 16.
    ///
    /// `Unknown` is only produced for values with no name below; building
    /// `Unknown(37)` by hand gives a value unequal to `Tiny` that still
    /// converts back to 37.
    PacketType {
        /// 0: dropped.
        None = 0,
        /// 1: mapper traffic, handed whole to the raw endpoint.
        Raw = 1,
        /// 2: dropped.
        MfmNicReply = 2,
        /// 3: asks a peer for its hostname.
        HostQuery = 3,
        /// 4: carries a hostname.
        HostReply = 4,
        /// 32: dropped.
        EtherUnicast = 32,
        /// 33: dropped.
        EtherMulticast = 33,
        /// 34: dropped.
        EtherNative = 34,
        /// 35: library control ("liback").
        Truc = 35,
        /// 36: connect request or reply.
        Connect = 36,
        /// 37: message of at most 32 bytes.
        Tiny = 37,
        /// 38: message of at most 128 bytes.
        Small = 38,
        /// 39: one fragment of a medium message.
        Medium = 39,
        /// 40: rendezvous of a large message.
        Rndv = 40,
        /// 41: pull request (one block).
        Pull = 41,
        /// 42: one frame of pulled data.
        PullReply = 42,
        /// 43: end of a large transfer.
        Notify = 43,
        /// 44: negative ack from the library.
        NackLib = 44,
        /// 45: negative ack of a PULL.
        NackMcp = 45,
    }
}

code_enum! {
    /// The `nack_type` of NACK_LIB and NACK_MCP.
    NackType {
        /// 0: no error.
        None = 0,
        /// 1: destination endpoint out of range.
        BadEndpt = 1,
        /// 2: destination endpoint not open or closing.
        EndptClosed = 2,
        /// 3: session id mismatch.
        BadSession = 3,
        /// 4: PULL names an unknown RDMA window.
        BadRdmaWin = 4,
    }
}

code_enum! {
    /// The status code of a connect reply. Replies with unknown codes are ignored.
    ConnectStatus {
        /// 0: connected.
        Success = 0,
        /// 11: the application key did not match.
        BadKey = 11,
    }
}

/// An endpoint index on a board (the wire's u8 endpoint fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EndpointId(pub u8);

/// A 32-bit endpoint session id, drawn at random when an endpoint opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub u32);

/// 64-bit match information, carried as `match_a` (high 32 bits) then `match_b` (low 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MatchInfo(pub u64);

impl MatchInfo {
    /// From the two wire words.
    pub const fn from_parts(match_a: u32, match_b: u32) -> Self {
        Self(((match_a as u64) << 32) | match_b as u64)
    }

    /// The high 32 bits (`match_a`).
    pub const fn match_a(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The low 32 bits (`match_b`).
    pub const fn match_b(self) -> u32 {
        self.0 as u32
    }
}

/// A peer table index, as carried in the head and in CONNECT / HOST_* headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerIndex(pub u16);

impl PeerIndex {
    /// The index meaning "I do not know you yet".
    pub const UNKNOWN: PeerIndex = PeerIndex(0xFFFF);

    /// A peer index.
    pub const fn new(index: u16) -> Self {
        Self(index)
    }

    /// True for [`PeerIndex::UNKNOWN`].
    pub const fn is_unknown(self) -> bool {
        self.0 == Self::UNKNOWN.0
    }

    /// The index, or `None` when unknown.
    pub const fn get(self) -> Option<u16> {
        if self.is_unknown() {
            None
        } else {
            Some(self.0)
        }
    }
}

impl Default for PeerIndex {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

/// A board address: the 48-bit MAC in a u64, MAC byte 0 in bits 40-47,
/// byte 5 in bits 0-7. The top 16 bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NicId(u64);

impl NicId {
    /// A board address, or `None` if `raw` has bits above bit 47.
    pub const fn new(raw: u64) -> Option<Self> {
        if raw >> 48 == 0 {
            Some(Self(raw))
        } else {
            None
        }
    }

    /// From a MAC address.
    pub const fn from_mac(mac: [u8; 6]) -> Self {
        let mut v = 0u64;
        let mut i = 0;
        while i < 6 {
            v = (v << 8) | mac[i] as u64;
            i += 1;
        }
        Self(v)
    }

    /// The MAC address.
    pub const fn to_mac(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// The 48-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NicId {
    /// As a MAC address: `00:60:dd:47:1a:2b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.to_mac();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl From<[u8; 6]> for NicId {
    fn from(mac: [u8; 6]) -> Self {
        Self::from_mac(mac)
    }
}

impl From<NicId> for [u8; 6] {
    fn from(id: NicId) -> Self {
        id.to_mac()
    }
}

/// A library sequence number: the low 14 bits count (mod 16384), the top 2
/// bits are a session number that changes when a partner is reset.
///
/// Comparisons wrap: `b` is `n` messages after `a` when
/// `(b - a) & 0x3FFF == n`. Ordering operators would be wrong here, so the
/// type has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LibSeqnum(pub u16);

impl LibSeqnum {
    /// Mask of the counting bits.
    pub const COUNT_MASK: u16 = 0x3FFF;
    /// Shift of the 2-bit session number.
    pub const SESSION_SHIFT: u32 = 14;

    /// A sequence number from its raw 16 bits.
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw 16 bits.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// The first sequence number of session number `session` (0..=3; higher
    /// bits are ignored): `session << 14 | 1`.
    pub const fn reset(session: u8) -> Self {
        Self::new(0).with_session(session).with_count(1)
    }

    /// The 14-bit count.
    pub const fn count(self) -> u16 {
        self.0 & Self::COUNT_MASK
    }

    /// The 2-bit session number (0..=3).
    pub const fn session(self) -> u8 {
        (self.0 >> Self::SESSION_SHIFT) as u8
    }

    /// The same count under session number `session` (taken mod 4).
    pub const fn with_session(self, session: u8) -> Self {
        Self(((session as u16 & 3) << Self::SESSION_SHIFT) | self.count())
    }

    /// The same session number with count `count` (taken mod 16384).
    pub const fn with_count(self, count: u16) -> Self {
        Self((self.0 & !Self::COUNT_MASK) | (count & Self::COUNT_MASK))
    }

    /// True when both carry the same session number.
    pub const fn same_session(self, other: Self) -> bool {
        self.session() == other.session()
    }

    /// `n` later, wrapping the count and keeping the session number.
    pub const fn add(self, n: u16) -> Self {
        self.with_count(self.count().wrapping_add(n))
    }

    /// The next sequence number (count + 1, session number kept).
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// How many counts `self` is after `earlier`: `(self - earlier) & 0x3FFF`.
    /// Session numbers are ignored.
    pub const fn distance_from(self, earlier: Self) -> u16 {
        self.0.wrapping_sub(earlier.0) & Self::COUNT_MASK
    }

    /// The ack rule: an ack `ack` received while `next_acked` is the oldest
    /// unacked send and `next_send` the next seqnum to use is valid iff
    /// `0 < (ack - next_acked) <= (next_send - next_acked)` (mod 16384);
    /// returns how many messages it newly acknowledges.
    pub const fn newly_acked(ack: Self, next_acked: Self, next_send: Self) -> Option<u16> {
        let new = ack.distance_from(next_acked);
        let missing = next_send.distance_from(next_acked);
        if new > 0 && new <= missing {
            Some(new)
        } else {
            None
        }
    }
}

/// A pull handle: slot index in bits 22-31 (0..=1023) and a generation in
/// bits 0-21 that is bumped each time the slot is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PullHandle(u32);

impl PullHandle {
    /// Shift of the slot index.
    pub const SLOT_SHIFT: u32 = 22;
    /// Number of slots (the slot index is below this).
    pub const SLOTS: u16 = 1024;
    /// Mask of the generation bits.
    pub const GENERATION_MASK: u32 = (1 << Self::SLOT_SHIFT) - 1;
    /// Generation of a slot's first use.
    pub const INITIAL_GENERATION: u32 = 0x23;

    /// A handle, or `None` if `slot >= 1024` or `generation` has bits above bit 21.
    pub const fn new(slot: u16, generation: u32) -> Option<Self> {
        if slot < Self::SLOTS && generation <= Self::GENERATION_MASK {
            Some(Self(((slot as u32) << Self::SLOT_SHIFT) | generation))
        } else {
            None
        }
    }

    /// From the wire's 32 bits (every value is some slot and generation).
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The wire's 32 bits.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The slot index (0..=1023).
    pub const fn slot(self) -> u16 {
        (self.0 >> Self::SLOT_SHIFT) as u16
    }

    /// The generation (0..=0x3F_FFFF).
    pub const fn generation(self) -> u32 {
        self.0 & Self::GENERATION_MASK
    }

    /// The generation after `generation` (wrapping within 22 bits).
    pub const fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & Self::GENERATION_MASK
    }

    /// The same slot with the next generation (what the slot's next user gets).
    pub const fn bumped(self) -> Self {
        Self((self.0 & !Self::GENERATION_MASK) | Self::next_generation(self.generation()))
    }
}

/// A pull magic: the puller's endpoint index XOR 0x21071980, sent in a PULL
/// (`src_magic`) and echoed in its replies (`dst_magic`) and NACK_MCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PullMagic(u32);

impl PullMagic {
    /// The magic of endpoint `ep`.
    pub const fn for_endpoint(ep: EndpointId) -> Self {
        Self(ep.0 as u32 ^ PULL_MAGIC_XOR)
    }

    /// From the wire's 32 bits.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The wire's 32 bits.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The endpoint it names, or `None` if `raw ^ 0x21071980` is above 255.
    pub const fn endpoint(self) -> Option<EndpointId> {
        let v = self.0 ^ PULL_MAGIC_XOR;
        if v <= u8::MAX as u32 {
            Some(EndpointId(v as u8))
        } else {
            None
        }
    }
}

/// Longest hostname without its NUL.
const HOSTNAME_CAP: usize = HOSTNAME_MAX - 1;

/// A peer's hostname: 1 to 79 bytes without NUL (at most 80 on the wire with
/// the terminating NUL). Stored inline, no allocation. Usually
/// `"<nodename>:<iface index>"`, compared byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hostname {
    len: u8,
    bytes: [u8; HOSTNAME_CAP],
}

impl Hostname {
    /// Validates a hostname given without its NUL.
    ///
    /// # Errors
    ///
    /// [`HostnameError`] if empty, longer than 79 bytes, or containing a NUL.
    pub fn new(name: &[u8]) -> Result<Self, HostnameError> {
        if name.is_empty() {
            return Err(HostnameError::Empty);
        }
        if name.len() > HOSTNAME_CAP {
            return Err(HostnameError::TooLong(name.len()));
        }
        if name.contains(&0) {
            return Err(HostnameError::InteriorNul);
        }
        let mut bytes = [0u8; HOSTNAME_CAP];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Self {
            // Fits: checked against HOSTNAME_CAP above.
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name, without NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The name as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// Bytes on the wire, NUL included (the HOST_REPLY `length` field).
    pub const fn wire_len(&self) -> usize {
        self.len as usize + 1
    }
}

impl TryFrom<&str> for Hostname {
    type Error = HostnameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s.as_bytes())
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hostname(\"{self}\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn packet_type_codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(PacketType::from(v)), v);
            assert_eq!(u8::from(NackType::from(v)), v);
            assert_eq!(u8::from(ConnectStatus::from(v)), v);
        }
        assert_eq!(PacketType::from(37), PacketType::Tiny);
        assert_eq!(PacketType::from(5), PacketType::Unknown(5));
        assert_eq!(PacketType::from(46), PacketType::Unknown(46));
        assert_eq!(NackType::from(4), NackType::BadRdmaWin);
        assert_eq!(ConnectStatus::from(11), ConnectStatus::BadKey);
        assert_eq!(ConnectStatus::from(1), ConnectStatus::Unknown(1));
    }

    #[test]
    fn nic_id_mac_round_trip() {
        let mac = [0x00, 0x60, 0xdd, 0x47, 0x1a, 0x2b];
        let id = NicId::from_mac(mac);
        assert_eq!(id.raw(), 0x0060_dd47_1a2b);
        assert_eq!(id.to_mac(), mac);
        assert_eq!(id.to_string(), "00:60:dd:47:1a:2b");
        let id = NicId::from([0xff; 6]);
        assert_eq!(id.raw(), 0xffff_ffff_ffff);
        assert_eq!(<[u8; 6]>::from(id), [0xff; 6]);
        assert_eq!(NicId::new(1 << 48), None);
        assert_eq!(
            NicId::new(0x0102_0304_0506).unwrap().to_mac(),
            [1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn match_info_halves() {
        let m = MatchInfo(0x0123_4567_89ab_cdef);
        assert_eq!(m.match_a(), 0x0123_4567);
        assert_eq!(m.match_b(), 0x89ab_cdef);
        assert_eq!(MatchInfo::from_parts(m.match_a(), m.match_b()), m);
    }

    #[test]
    fn peer_index_unknown() {
        assert!(PeerIndex::UNKNOWN.is_unknown());
        assert_eq!(PeerIndex::default(), PeerIndex::UNKNOWN);
        assert_eq!(PeerIndex::UNKNOWN.get(), None);
        assert_eq!(PeerIndex::new(3).get(), Some(3));
    }

    #[test]
    fn lib_seqnum_fields_and_reset() {
        let s = LibSeqnum::reset(2);
        assert_eq!(s.raw(), 0x8001);
        assert_eq!(s.session(), 2);
        assert_eq!(s.count(), 1);
        assert_eq!(LibSeqnum::reset(7).raw(), 0xC001); // session mod 4
        assert_eq!(LibSeqnum(0x4005).with_session(3).raw(), 0xC005);
        assert!(LibSeqnum(0x4005).same_session(LibSeqnum(0x7fff)));
        assert!(!LibSeqnum(0x4005).same_session(LibSeqnum(0x8005)));
    }

    #[test]
    fn lib_seqnum_wraps_within_session() {
        let last = LibSeqnum(0x7FFF); // session 1, count 16383
        assert_eq!(last.next(), LibSeqnum(0x4000));
        assert_eq!(LibSeqnum(0xFFFF).next(), LibSeqnum(0xC000));
        assert_eq!(LibSeqnum(0x0000).add(16384), LibSeqnum(0x0000));
        assert_eq!(LibSeqnum(0x3FFE).add(5), LibSeqnum(0x0003));
    }

    #[test]
    fn lib_seqnum_wrapping_distance() {
        assert_eq!(LibSeqnum(5).distance_from(LibSeqnum(3)), 2);
        assert_eq!(LibSeqnum(3).distance_from(LibSeqnum(5)), 0x3FFE);
        assert_eq!(LibSeqnum(1).distance_from(LibSeqnum(0x3FFF)), 2);
        // The session bits do not count.
        assert_eq!(LibSeqnum(0x4001).distance_from(LibSeqnum(0x7FFF)), 2);
        assert_eq!(LibSeqnum(0x8000).distance_from(LibSeqnum(0x8000)), 0);
    }

    #[test]
    fn lib_seqnum_ack_rule() {
        let acked = LibSeqnum(0x3FFE);
        let next = LibSeqnum(0x0002); // 4 in flight across the wrap
        assert_eq!(LibSeqnum::newly_acked(LibSeqnum(0x3FFE), acked, next), None);
        assert_eq!(
            LibSeqnum::newly_acked(LibSeqnum(0x3FFF), acked, next),
            Some(1)
        );
        assert_eq!(
            LibSeqnum::newly_acked(LibSeqnum(0x0002), acked, next),
            Some(4)
        );
        assert_eq!(LibSeqnum::newly_acked(LibSeqnum(0x0003), acked, next), None);
        assert_eq!(LibSeqnum::newly_acked(LibSeqnum(0x3FFD), acked, next), None);
    }

    #[test]
    fn pull_handle_round_trip_and_bounds() {
        let h = PullHandle::new(1023, PullHandle::INITIAL_GENERATION).unwrap();
        assert_eq!(h.raw(), (1023 << 22) | 0x23);
        assert_eq!(h.slot(), 1023);
        assert_eq!(h.generation(), 0x23);
        assert_eq!(PullHandle::from_raw(h.raw()), h);
        assert_eq!(PullHandle::new(1024, 0), None);
        assert_eq!(PullHandle::new(0, 0x40_0000), None);
        let top = PullHandle::new(5, 0x3F_FFFF).unwrap();
        assert_eq!(top.bumped(), PullHandle::new(5, 0).unwrap());
        assert_eq!(h.bumped().generation(), 0x24);
        assert_eq!(h.bumped().slot(), 1023);
        let any = PullHandle::from_raw(u32::MAX);
        assert_eq!((any.slot(), any.generation()), (1023, 0x3F_FFFF));
    }

    #[test]
    fn pull_magic_both_ways() {
        let m = PullMagic::for_endpoint(EndpointId(3));
        assert_eq!(m.raw(), 0x2107_1983);
        assert_eq!(m.endpoint(), Some(EndpointId(3)));
        assert_eq!(PullMagic::from_raw(0x2107_1980 ^ 0x100).endpoint(), None);
        assert_eq!(PullMagic::from_raw(0).endpoint(), None);
    }

    #[test]
    fn hostname_rules() {
        let h = Hostname::try_from("node1:0").unwrap();
        assert_eq!(h.as_bytes(), b"node1:0");
        assert_eq!(h.as_str(), Some("node1:0"));
        assert_eq!(h.wire_len(), 8);
        assert_eq!(h.to_string(), "node1:0");
        assert_eq!(Hostname::new(b""), Err(HostnameError::Empty));
        assert_eq!(Hostname::new(b"a\0b"), Err(HostnameError::InteriorNul));
        assert!(Hostname::new(&[b'x'; 79]).is_ok());
        assert_eq!(Hostname::new(&[b'x'; 80]), Err(HostnameError::TooLong(80)));
        let odd = Hostname::new(b"a\xffb").unwrap();
        assert_eq!(odd.as_str(), None);
        assert_eq!(odd.to_string(), "a\\xffb");
    }
}
