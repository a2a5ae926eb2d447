//! Lib seqnum arithmetic: a 14-bit count and a 2-bit session number in a
//! `u16`; counts compare modulo 16384.

/// Mask of the count bits.
pub(crate) const SEQNUM_MASK: u16 = 0x3FFF;
/// Mask of the session-number bits.
pub(crate) const SESNUM_MASK: u16 = 0xC000;
/// One session number step.
pub(crate) const SESNUM_ONE: u16 = 0x4000;
/// Farthest ahead of the next expected seqnum that an early packet is kept.
pub(crate) const EARLY_OFFSET_MAX: u16 = 255;

/// `(a - b) mod 16384`: how far `a` is ahead of `b` (counts only).
pub(crate) fn diff(a: u16, b: u16) -> u16 {
    a.wrapping_sub(b) & SEQNUM_MASK
}

/// `x + n` on the count, keeping the session number.
pub(crate) fn add(x: u16, n: u16) -> u16 {
    (x & SESNUM_MASK) | (x.wrapping_add(n) & SEQNUM_MASK)
}

/// The session number bits of `x`.
pub(crate) fn sesnum(x: u16) -> u16 {
    x & SESNUM_MASK
}

/// Reset the count to 1, keeping the session number.
pub(crate) fn reset(x: u16) -> u16 {
    (x & SESNUM_MASK) | 1
}

/// The ack validity rule: with `new = ack - next_acked` and
/// `missing = next_send - next_acked`, an ack is valid iff
/// `0 < new <= missing`. Returns `new` when valid.
pub(crate) fn ack_advance(ack: u16, next_acked: u16, next_send: u16) -> Option<u16> {
    let new = diff(ack, next_acked);
    let missing = diff(next_send, next_acked);
    (new > 0 && new <= missing).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_wraps_on_14_bits() {
        assert_eq!(diff(5, 3), 2);
        assert_eq!(diff(3, 5), 0x3FFE);
        assert_eq!(diff(0, 0x3FFF), 1);
        // the session bits never matter
        assert_eq!(diff(0x4000 | 7, 0x8000 | 2), 5);
        assert_eq!(diff(0xC000, 0x3FFF), 1);
    }

    #[test]
    fn add_keeps_sesnum() {
        assert_eq!(add(0x4000 | 0x3FFF, 1), 0x4000);
        assert_eq!(add(0xC000 | 0x3FFE, 3), 0xC000 | 1);
        assert_eq!(add(7, 0), 7);
        assert_eq!(sesnum(add(0x8000 | 0x3FFF, 100)), 0x8000);
    }

    #[test]
    fn reset_sets_count_one() {
        assert_eq!(reset(0x4000 | 1234), 0x4001);
        assert_eq!(reset(0), 1);
        assert_eq!(reset(0xFFFF), 0xC001);
    }

    #[test]
    fn ack_validity_rule() {
        // nothing outstanding: no ack can be valid
        assert_eq!(ack_advance(10, 10, 10), None);
        // 0 < new <= missing
        assert_eq!(ack_advance(11, 10, 15), Some(1));
        assert_eq!(ack_advance(15, 10, 15), Some(5));
        assert_eq!(ack_advance(16, 10, 15), None);
        assert_eq!(ack_advance(10, 10, 15), None);
        // an old ack (behind) looks like a huge advance: refused
        assert_eq!(ack_advance(9, 10, 15), None);
        // across the wrap
        assert_eq!(ack_advance(2, 0x3FFE, 5), Some(4));
        assert_eq!(ack_advance(0x3FFF, 0x3FFE, 5), Some(1));
    }

    #[test]
    fn early_window() {
        let next = 0x3FF0;
        assert!(diff(add(next, 255), next) <= EARLY_OFFSET_MAX);
        assert!(diff(add(next, 256), next) > EARLY_OFFSET_MAX);
        // one behind is far "ahead" in modular terms
        assert_eq!(diff(next.wrapping_sub(1), next), 0x3FFF);
    }
}
