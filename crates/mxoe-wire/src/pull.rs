//! Block and frame arithmetic of the LARGE protocol (spec section 11).
//!
//! With `R` the pull reply length, `F` the replies per block and `B = R*F`
//! the block length of the profile, a pull of `L` bytes from an RDMA window
//! at `rdma_offset` is split into blocks:
//!
//! - the first block starts at `first_frame_offset = rdma_offset % R` inside
//!   its first reply frame and holds `min(B - first_frame_offset, L)` bytes;
//! - later blocks start at offset 0 and hold `min(B, remaining)` bytes;
//! - each block is numbered by `frame_index`, the count of reply frames
//!   requested before it, and needs `ceil((first_frame_offset +
//!   block_length) / R)` (at most `F`) reply frames.
//!
//! Pure functions only; the puller's and replier's state lives elsewhere.

use crate::profile::WireProfile;

/// One PULL request's block description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PullBlock {
    /// Offset of the data in the block's first reply frame.
    pub first_frame_offset: u32,
    /// Bytes of the block.
    pub block_length: u32,
    /// Number of the block's first reply frame.
    pub frame_index: u32,
}

impl PullBlock {
    /// Reply frames this block needs: `ceil((first_frame_offset + block_length) / R)`.
    pub const fn frames(&self, profile: &WireProfile) -> u32 {
        block_frames(profile, self.first_frame_offset, self.block_length)
    }
}

/// Reply frames of a block: `ceil((first_frame_offset + block_length) / R)`
/// (computed without overflow; saturates at `u32::MAX`).
pub const fn block_frames(
    profile: &WireProfile,
    first_frame_offset: u32,
    block_length: u32,
) -> u32 {
    let end = first_frame_offset as u64 + block_length as u64;
    let n = end.div_ceil(profile.pull_reply_len() as u64);
    if n > u32::MAX as u64 {
        u32::MAX
    } else {
        n as u32
    }
}

/// The first block of a pull of `length` bytes from `rdma_offset`
/// (`length` 0 gives an empty block; such a pull is skipped entirely).
pub const fn first_block(profile: &WireProfile, rdma_offset: u32, length: u32) -> PullBlock {
    let first_frame_offset = rdma_offset % profile.pull_reply_len();
    let room = profile.block_len() - first_frame_offset;
    PullBlock {
        first_frame_offset,
        block_length: if length < room { length } else { room },
        frame_index: 0,
    }
}

/// All the blocks of a pull, in order (none for `length` 0).
pub const fn blocks(profile: &WireProfile, rdma_offset: u32, length: u32) -> PullBlocks {
    PullBlocks {
        profile: *profile,
        rdma_offset,
        remaining: length,
        frame_index: 0,
    }
}

/// Iterator over the blocks of a pull; see [`blocks`].
#[derive(Clone, Debug)]
pub struct PullBlocks {
    profile: WireProfile,
    rdma_offset: u32,
    remaining: u32,
    frame_index: u32,
}

impl Iterator for PullBlocks {
    type Item = PullBlock;

    fn next(&mut self) -> Option<PullBlock> {
        if self.remaining == 0 {
            return None;
        }
        let block = if self.frame_index == 0 {
            first_block(&self.profile, self.rdma_offset, self.remaining)
        } else {
            PullBlock {
                first_frame_offset: 0,
                block_length: self.remaining.min(self.profile.block_len()),
                frame_index: self.frame_index,
            }
        };
        self.remaining -= block.block_length;
        self.frame_index = self.frame_index.saturating_add(block.frames(&self.profile));
        Some(block)
    }
}

/// One PULL_REPLY frame of a block, as the replier sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyFrame {
    /// `(frame_index + i) mod 256`.
    pub frame_seqnum: u8,
    /// Offset of the frame's data in the message.
    pub msg_offset: u32,
    /// Bytes of data in the frame.
    pub frame_length: u32,
}

/// Reply frame `i` of `block`, for a window whose data starts at
/// `rdma_offset`: `msg_offset` starts at `frame_index*R - rdma_offset%R +
/// first_frame_offset` and grows by each frame's length; the first frame
/// carries `R - first_frame_offset` bytes, later ones `R`, the last what
/// remains. `None` if the block has no frame `i`, or if the block is
/// inconsistent with the window (its offsets would leave the u32 range).
pub const fn reply_frame(
    profile: &WireProfile,
    block: &PullBlock,
    rdma_offset: u32,
    i: u32,
) -> Option<ReplyFrame> {
    let r = profile.pull_reply_len() as u64;
    let ffo = block.first_frame_offset as u64;
    if i >= block.frames(profile) || ffo >= r {
        return None;
    }
    // Bytes of the block carried by frames 0..i.
    let before = if i == 0 { 0 } else { i as u64 * r - ffo };
    let cap = if i == 0 { r - ffo } else { r };
    let left = block.block_length as u64 - before;
    let frame_length = if left < cap { left } else { cap };
    let start = block.frame_index as u64 * r + ffo;
    let skew = rdma_offset as u64 % r;
    if start < skew {
        return None;
    }
    let msg_offset = start - skew + before;
    if msg_offset > u32::MAX as u64 {
        return None;
    }
    Some(ReplyFrame {
        frame_seqnum: (block.frame_index as u64 + i as u64) as u8,
        msg_offset: msg_offset as u32,
        frame_length: frame_length as u32,
    })
}

/// The puller's check of an arriving reply against a block it requested
/// (`frame_index`, `frames` reply frames): the frame's position `off =
/// (frame_seqnum - frame_index) mod 256` must be below `frames`, and
/// `ceil(msg_offset / R)` must equal `frame_index + off`. Returns `off`.
pub const fn locate_reply(
    profile: &WireProfile,
    frame_index: u32,
    frames: u32,
    frame_seqnum: u8,
    msg_offset: u32,
) -> Option<u32> {
    let off = frame_seqnum.wrapping_sub(frame_index as u8) as u32;
    if off >= frames {
        return None;
    }
    let expected = msg_offset.div_ceil(profile.pull_reply_len()) as u64;
    if expected == frame_index as u64 + off as u64 {
        Some(off)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn all_frames(p: &WireProfile, rdma_offset: u32, len: u32) -> Vec<ReplyFrame> {
        let mut out = Vec::new();
        for b in blocks(p, rdma_offset, len) {
            assert!(b.frames(p) <= p.replies_per_block());
            for i in 0..b.frames(p) {
                let f = reply_frame(p, &b, rdma_offset, i).unwrap();
                assert_eq!(
                    locate_reply(p, b.frame_index, b.frames(p), f.frame_seqnum, f.msg_offset),
                    Some(i)
                );
                out.push(f);
            }
            assert_eq!(reply_frame(p, &b, rdma_offset, b.frames(p)), None);
        }
        out
    }

    #[test]
    fn mx_aligned_pull() {
        let p = WireProfile::MX;
        let bs: Vec<_> = blocks(&p, 0, 100_000).collect();
        assert_eq!(bs.len(), 4);
        assert_eq!(
            bs[0],
            PullBlock {
                first_frame_offset: 0,
                block_length: 32768,
                frame_index: 0
            }
        );
        assert_eq!(bs[1].frame_index, 8);
        assert_eq!(bs[3].block_length, 100_000 - 3 * 32768);
        assert_eq!(bs[3].frames(&p), 1);
        let frames = all_frames(&p, 0, 100_000);
        assert_eq!(frames.len(), 25);
        assert_eq!(frames[9].msg_offset, 9 * 4096);
        assert_eq!(frames[24].frame_length, 100_000 - 24 * 4096);
    }

    #[test]
    fn unaligned_window_covers_every_byte_once() {
        for p in [
            WireProfile::MX,
            WireProfile::OPEN_MX_9000,
            WireProfile::OPEN_MX_1500,
        ] {
            for (off, len) in [
                (0, 1),
                (1, 1),
                (100, 5000),
                (4095, 300_000),
                (9000, 1 << 20),
            ] {
                let frames = all_frames(&p, off, len);
                let mut next = 0u32;
                for (k, f) in frames.iter().enumerate() {
                    assert_eq!(f.msg_offset, next);
                    assert_eq!(f.frame_seqnum, k as u8);
                    assert!(f.frame_length <= p.pull_reply_len());
                    assert!(f.frame_length > 0);
                    next += f.frame_length;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn first_block_is_shortened_by_its_offset() {
        let p = WireProfile::OPEN_MX_9000;
        let b = first_block(&p, 8968 + 10, 1 << 20);
        assert_eq!(b.first_frame_offset, 10);
        assert_eq!(b.block_length, p.block_len() - 10);
        assert_eq!(b.frames(&p), 32);
        let f0 = reply_frame(&p, &b, 8978, 0).unwrap();
        assert_eq!((f0.msg_offset, f0.frame_length), (0, 8958));
        let f1 = reply_frame(&p, &b, 8978, 1).unwrap();
        assert_eq!((f1.msg_offset, f1.frame_length), (8958, 8968));
    }

    #[test]
    fn zero_length_pull_has_no_blocks() {
        assert_eq!(blocks(&WireProfile::MX, 5, 0).count(), 0);
    }

    #[test]
    fn locate_reply_rejects_strays() {
        let p = WireProfile::MX;
        // Block at frame 300 (seqnum 44), 8 frames.
        assert_eq!(locate_reply(&p, 300, 8, 44, 300 * 4096), Some(0));
        assert_eq!(locate_reply(&p, 300, 8, 51, 307 * 4096), Some(7));
        assert_eq!(locate_reply(&p, 300, 8, 52, 308 * 4096), None); // beyond the block
        assert_eq!(locate_reply(&p, 300, 8, 45, 300 * 4096), None); // offset disagrees
        assert_eq!(locate_reply(&p, 300, 8, 43, 299 * 4096), None); // before the block
    }

    #[test]
    fn inconsistent_blocks_give_none() {
        let p = WireProfile::MX;
        let b = PullBlock {
            first_frame_offset: 0,
            block_length: 4096,
            frame_index: 0,
        };
        // Window offset 5 but the block claims offset 0 at frame 0: negative offset.
        assert_eq!(reply_frame(&p, &b, 5, 0), None);
        let huge = PullBlock {
            first_frame_offset: 0,
            block_length: 4096,
            frame_index: u32::MAX,
        };
        assert_eq!(reply_frame(&p, &huge, 0, 0), None);
    }
}
