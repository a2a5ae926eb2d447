//! The timer table: retransmissions in send order, delayed acks in
//! schedule order, and the next deadline of each kind.

use super::state::{PartnerId, TIMER_COUNT};
use super::types::{ReqId, Time};
use std::collections::VecDeque;

/// The timers of one core.
pub(crate) struct Timers {
    /// Seqnum'd messages and connects by last send time (stale entries
    /// are skipped when met).
    pub(crate) resend_q: VecDeque<(ReqId, Time)>,
    /// Partners with a delayed ack, by due time.
    pub(crate) ack_q: VecDeque<(PartnerId, Time)>,
    /// Next deadline per [`super::state::Timer`].
    pub(crate) at: [Option<Time>; TIMER_COUNT],
}

impl Timers {
    /// No timer set.
    pub(crate) fn new() -> Self {
        Timers {
            resend_q: VecDeque::new(),
            ack_q: VecDeque::new(),
            at: [None; TIMER_COUNT],
        }
    }
}
