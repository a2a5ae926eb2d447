//! Wire profiles and every size derived from them.
//!
//! Two profiles exist and are never negotiated: both sides must be built or
//! configured alike.
//!
//! | profile | frame budget | frag max | frags/msg | max medium | pull reply | replies/block | block |
//! |---|---|---|---|---|---|---|---|
//! | `mx` | 4144 | 4096 | 8 | 32768 | 4096 | 8 | 32768 |
//! | `open-mx` 9000 | 9000 | 8192 | 32 | 262144 | 8968 | 32 | 286976 |
//! | `open-mx` 1500 | 1500 | 1452 | 32 | 46464 | 1468 | 32 | 46976 |
//!
//! All sizes come from the methods of [`WireProfile`]; nothing else in the
//! crate hard-codes them.

use crate::error::ProfileError;
use crate::{RNDV_THRESHOLD_DEFAULT, SMALL_MAX, TINY_MAX};

/// Which profile, with its parameter. Returned by [`WireProfile::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// MXoE compatibility (Myricom MX in Ethernet mode, Open-MX `--enable-mx-wire`).
    Mx,
    /// Native Open-MX with the given MTU (the frame budget, `--with-mtu`).
    OpenMx {
        /// The MTU: the largest frame in bytes, Ethernet header included, FCS excluded.
        mtu: u32,
    },
}

/// A validated wire profile. Cheap to copy; all derived sizes are computed on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireProfile {
    kind: ProfileKind,
}

/// Frame budget of the `mx` profile.
const MX_FRAME_BUDGET: u32 = 4144;
/// Medium fragment and pull reply length of the `mx` profile.
const MX_FRAG: u32 = 4096;
/// log2 of [`MX_FRAG`], carried in the mx MEDIUM header.
const MX_FRAG_PIPELINE: u8 = 12;
/// Medium fragments per message and pull replies per block, `mx`.
const MX_FRAGS: u32 = 8;
/// Medium fragments per message and pull replies per block, `open-mx`.
const OMX_FRAGS: u32 = 32;
/// Bytes of a MEDIUM frame before the payload (head + header), both profiles.
const MEDIUM_OVERHEAD: u32 = 48;
/// Bytes of a PULL_REPLY frame before the payload (head + header).
const PULL_REPLY_OVERHEAD: u32 = 32;

impl WireProfile {
    /// The MXoE compatibility profile.
    pub const MX: WireProfile = WireProfile {
        kind: ProfileKind::Mx,
    };
    /// Open-MX with its default MTU of 9000.
    pub const OPEN_MX_9000: WireProfile = WireProfile {
        kind: ProfileKind::OpenMx { mtu: 9000 },
    };
    /// Open-MX built `--with-mtu=1500`.
    pub const OPEN_MX_1500: WireProfile = WireProfile {
        kind: ProfileKind::OpenMx { mtu: 1500 },
    };

    /// Smallest accepted Open-MX MTU.
    ///
    /// Chosen as 1280, the smallest link MTU any IPv6-capable Ethernet or
    /// overlay (VXLAN 1450, PPPoE 1492) guarantees. At that size every
    /// derived length is still meaningful: a medium fragment (1232) holds
    /// many SMALL messages, and 32 of them (39424) still exceed the default
    /// rendezvous threshold, so the default never has to be clamped. Below
    /// about 176 bytes a SMALL frame would not even fit.
    pub const OPEN_MX_MIN_MTU: u32 = 1280;
    /// Largest accepted Open-MX MTU: the pull reply length (MTU - 32) must
    /// fit the 16-bit `frame_length` field; 65535 keeps it well inside.
    pub const OPEN_MX_MAX_MTU: u32 = 65535;

    /// The `mx` profile (same as [`WireProfile::MX`]).
    pub const fn mx() -> Self {
        Self::MX
    }

    /// An `open-mx` profile with the given MTU.
    ///
    /// # Errors
    ///
    /// [`ProfileError::MtuTooSmall`] below [`Self::OPEN_MX_MIN_MTU`],
    /// [`ProfileError::MtuTooLarge`] above [`Self::OPEN_MX_MAX_MTU`].
    pub const fn open_mx(mtu: u32) -> Result<Self, ProfileError> {
        if mtu < Self::OPEN_MX_MIN_MTU {
            Err(ProfileError::MtuTooSmall {
                mtu,
                min: Self::OPEN_MX_MIN_MTU,
            })
        } else if mtu > Self::OPEN_MX_MAX_MTU {
            Err(ProfileError::MtuTooLarge {
                mtu,
                max: Self::OPEN_MX_MAX_MTU,
            })
        } else {
            Ok(WireProfile {
                kind: ProfileKind::OpenMx { mtu },
            })
        }
    }

    /// Which profile this is.
    pub const fn kind(&self) -> ProfileKind {
        self.kind
    }

    /// True for the `mx` profile (whose MEDIUM and PULL layouts differ).
    pub const fn is_mx(&self) -> bool {
        matches!(self.kind, ProfileKind::Mx)
    }

    /// The largest frame this profile produces, head included, FCS excluded.
    pub const fn frame_budget(&self) -> u32 {
        match self.kind {
            ProfileKind::Mx => MX_FRAME_BUDGET,
            ProfileKind::OpenMx { mtu } => mtu,
        }
    }

    /// The interface MTU the reference requires for this profile (it asks
    /// for the frame budget itself, conservatively).
    pub const fn required_mtu(&self) -> u32 {
        self.frame_budget()
    }

    /// Largest payload of one MEDIUM fragment.
    ///
    /// `open-mx`: MTU-48 if that is at most 4096, else 8192 if a full
    /// 8192-byte fragment frame fits, else 4096.
    pub const fn frag_max(&self) -> u32 {
        match self.kind {
            ProfileKind::Mx => MX_FRAG,
            ProfileKind::OpenMx { mtu } => {
                let native = mtu - MEDIUM_OVERHEAD;
                if native <= 4096 {
                    native
                } else if 8192 + MEDIUM_OVERHEAD <= mtu {
                    8192
                } else {
                    4096
                }
            }
        }
    }

    /// The `frag_pipeline` byte of the mx MEDIUM header (log2 of the
    /// fragment size, 12); `None` for `open-mx`, whose header has a pad there.
    pub const fn frag_pipeline(&self) -> Option<u8> {
        match self.kind {
            ProfileKind::Mx => Some(MX_FRAG_PIPELINE),
            ProfileKind::OpenMx { .. } => None,
        }
    }

    /// Most fragments one MEDIUM message may have.
    pub const fn frags_per_msg(&self) -> u32 {
        match self.kind {
            ProfileKind::Mx => MX_FRAGS,
            ProfileKind::OpenMx { .. } => OMX_FRAGS,
        }
    }

    /// Longest MEDIUM message: `frag_max * frags_per_msg`.
    pub const fn max_medium(&self) -> u32 {
        self.frag_max() * self.frags_per_msg()
    }

    /// Payload length of a full PULL_REPLY frame (`R`).
    pub const fn pull_reply_len(&self) -> u32 {
        match self.kind {
            ProfileKind::Mx => MX_FRAG,
            ProfileKind::OpenMx { mtu } => mtu - PULL_REPLY_OVERHEAD,
        }
    }

    /// PULL_REPLY frames per pull block (`F`).
    pub const fn replies_per_block(&self) -> u32 {
        match self.kind {
            ProfileKind::Mx => MX_FRAGS,
            ProfileKind::OpenMx { .. } => OMX_FRAGS,
        }
    }

    /// Bytes of one full pull block: `pull_reply_len * replies_per_block` (`B`).
    pub const fn block_len(&self) -> u32 {
        self.pull_reply_len() * self.replies_per_block()
    }

    /// Length of the PULL header (32 for `mx`, 44 for `open-mx`).
    pub const fn pull_header_len(&self) -> usize {
        match self.kind {
            ProfileKind::Mx => 32,
            ProfileKind::OpenMx { .. } => 44,
        }
    }

    /// Receiver offset of MEDIUM fragment `frag_seqnum` in its message:
    /// `frag_seqnum << 12` for `mx`, `frag_seqnum * frag_max` for `open-mx`.
    pub const fn frag_offset(&self, frag_seqnum: u8) -> u32 {
        match self.kind {
            ProfileKind::Mx => (frag_seqnum as u32) << MX_FRAG_PIPELINE,
            ProfileKind::OpenMx { .. } => frag_seqnum as u32 * self.frag_max(),
        }
    }

    /// Number of MEDIUM fragments of a message of `msg_len` bytes:
    /// `ceil(msg_len / frag_max)`, and at least 1 (an empty message still
    /// takes one frame). It may exceed [`Self::frags_per_msg`]; check
    /// `msg_len <= max_medium()` first.
    pub const fn frag_count(&self, msg_len: u32) -> u32 {
        let f = self.frag_max();
        if msg_len == 0 {
            1
        } else {
            msg_len.div_ceil(f)
        }
    }

    /// Payload length of fragment `frag_seqnum` of a `msg_len`-byte message
    /// (all fragments are full but the last), or `None` if the message has
    /// no such fragment or is longer than [`Self::max_medium`].
    pub const fn frag_len(&self, msg_len: u32, frag_seqnum: u8) -> Option<u32> {
        if msg_len > self.max_medium() || frag_seqnum as u32 >= self.frag_count(msg_len) {
            return None;
        }
        let rest = msg_len - self.frag_offset(frag_seqnum);
        let f = self.frag_max();
        Some(if rest < f { rest } else { f })
    }

    /// Clamps a requested rendezvous threshold to `[SMALL_MAX, max_medium]`.
    pub const fn clamp_rndv_threshold(&self, threshold: u32) -> u32 {
        let max = self.max_medium();
        if threshold < SMALL_MAX as u32 {
            SMALL_MAX as u32
        } else if threshold > max {
            max
        } else {
            threshold
        }
    }

    /// The default rendezvous threshold (32768), clamped to this profile.
    pub const fn default_rndv_threshold(&self) -> u32 {
        self.clamp_rndv_threshold(RNDV_THRESHOLD_DEFAULT)
    }

    /// Size class of a `len`-byte send with the given (already clamped)
    /// rendezvous threshold. `issend` ignores this and always goes LARGE.
    pub const fn size_class(&self, len: u32, rndv_threshold: u32) -> SizeClass {
        if len <= TINY_MAX as u32 {
            SizeClass::Tiny
        } else if len <= SMALL_MAX as u32 {
            SizeClass::Small
        } else if len <= rndv_threshold && len <= self.max_medium() {
            SizeClass::Medium
        } else {
            SizeClass::Large
        }
    }
}

impl Default for WireProfile {
    /// The Open-MX default build: `open-mx` with MTU 9000.
    fn default() -> Self {
        Self::OPEN_MX_9000
    }
}

/// How a message of a given length travels (spec section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeClass {
    /// One TINY frame (<= 32 bytes).
    Tiny,
    /// One SMALL frame (<= 128 bytes).
    Small,
    /// MEDIUM fragments (<= rendezvous threshold).
    Medium,
    /// RNDV, then PULL / PULL_REPLY, then NOTIFY.
    Large,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table_mx() {
        let p = WireProfile::MX;
        assert!(p.is_mx());
        assert_eq!(p.frame_budget(), 4144);
        assert_eq!(p.required_mtu(), 4144);
        assert_eq!(p.frag_max(), 4096);
        assert_eq!(p.frag_pipeline(), Some(12));
        assert_eq!(p.frags_per_msg(), 8);
        assert_eq!(p.max_medium(), 32 * 1024);
        assert_eq!(p.pull_reply_len(), 4096);
        assert_eq!(p.replies_per_block(), 8);
        assert_eq!(p.block_len(), 32768);
        assert_eq!(p.pull_header_len(), 32);
        assert_eq!(p.default_rndv_threshold(), 32768);
    }

    #[test]
    fn spec_table_open_mx_9000() {
        let p = WireProfile::open_mx(9000).unwrap();
        assert_eq!(p, WireProfile::OPEN_MX_9000);
        assert_eq!(p, WireProfile::default());
        assert_eq!(p.kind(), ProfileKind::OpenMx { mtu: 9000 });
        assert_eq!(p.required_mtu(), 9000);
        assert_eq!(p.frag_max(), 8192);
        assert_eq!(p.frag_pipeline(), None);
        assert_eq!(p.frags_per_msg(), 32);
        assert_eq!(p.max_medium(), 256 * 1024);
        assert_eq!(p.pull_reply_len(), 8968);
        assert_eq!(p.replies_per_block(), 32);
        assert_eq!(p.block_len(), 286_976);
        assert_eq!(p.pull_header_len(), 44);
        assert_eq!(p.default_rndv_threshold(), 32768);
    }

    #[test]
    fn spec_table_open_mx_1500() {
        let p = WireProfile::open_mx(1500).unwrap();
        assert_eq!(p, WireProfile::OPEN_MX_1500);
        assert_eq!(p.required_mtu(), 1500);
        assert_eq!(p.frag_max(), 1452);
        assert_eq!(p.frags_per_msg(), 32);
        assert_eq!(p.max_medium(), 1452 * 32);
        assert_eq!(p.pull_reply_len(), 1468);
        assert_eq!(p.replies_per_block(), 32);
        assert_eq!(p.block_len(), 1468 * 32);
    }

    #[test]
    fn native_frag_rule_edges() {
        let f = |mtu| WireProfile::open_mx(mtu).unwrap().frag_max();
        assert_eq!(f(4144), 4096); // MTU-48 == 4096
        assert_eq!(f(4145), 4096); // too small for 8192, falls back to 4096
        assert_eq!(f(8239), 4096);
        assert_eq!(f(8240), 8192); // 8192 + 48 fits exactly
        assert_eq!(f(65535), 8192);
        assert_eq!(f(1280), 1232);
    }

    #[test]
    fn mtu_bounds() {
        assert_eq!(
            WireProfile::open_mx(1279),
            Err(ProfileError::MtuTooSmall {
                mtu: 1279,
                min: 1280
            })
        );
        assert!(WireProfile::open_mx(0).is_err());
        assert!(WireProfile::open_mx(65536).is_err());
        assert!(WireProfile::open_mx(u32::MAX).is_err());
        assert!(WireProfile::open_mx(65535).is_ok());
    }

    #[test]
    fn every_valid_mtu_has_sane_sizes() {
        for mtu in WireProfile::OPEN_MX_MIN_MTU..=WireProfile::OPEN_MX_MAX_MTU {
            let p = WireProfile::open_mx(mtu).unwrap();
            assert!(p.frag_max() + 48 <= mtu);
            assert!(p.pull_reply_len() + 32 <= mtu);
            assert!(p.pull_reply_len() <= u32::from(u16::MAX));
            assert!(p.max_medium() >= RNDV_THRESHOLD_DEFAULT);
            assert_eq!(p.default_rndv_threshold(), RNDV_THRESHOLD_DEFAULT);
        }
    }

    #[test]
    fn frag_offsets_and_counts() {
        let mx = WireProfile::MX;
        assert_eq!(mx.frag_offset(3), 3 << 12);
        let o = WireProfile::OPEN_MX_1500;
        assert_eq!(o.frag_offset(3), 3 * 1452);
        assert_eq!(o.frag_count(0), 1);
        assert_eq!(o.frag_count(1452), 1);
        assert_eq!(o.frag_count(1453), 2);
        assert_eq!(o.frag_len(1453, 0), Some(1452));
        assert_eq!(o.frag_len(1453, 1), Some(1));
        assert_eq!(o.frag_len(1453, 2), None);
        assert_eq!(o.frag_len(o.max_medium() + 1, 0), None);
        assert_eq!(mx.frag_count(32768), 8);
        assert_eq!(mx.frag_len(32768, 7), Some(4096));
        assert_eq!(mx.frag_len(0, 0), Some(0));
    }

    #[test]
    fn rndv_clamp_and_size_classes() {
        let mx = WireProfile::MX;
        assert_eq!(mx.clamp_rndv_threshold(0), 128);
        assert_eq!(mx.clamp_rndv_threshold(1 << 20), 32768);
        assert_eq!(mx.clamp_rndv_threshold(5000), 5000);
        let t = mx.default_rndv_threshold();
        assert_eq!(mx.size_class(0, t), SizeClass::Tiny);
        assert_eq!(mx.size_class(32, t), SizeClass::Tiny);
        assert_eq!(mx.size_class(33, t), SizeClass::Small);
        assert_eq!(mx.size_class(128, t), SizeClass::Small);
        assert_eq!(mx.size_class(129, t), SizeClass::Medium);
        assert_eq!(mx.size_class(32768, t), SizeClass::Medium);
        assert_eq!(mx.size_class(32769, t), SizeClass::Large);
    }
}
