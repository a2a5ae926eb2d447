//! What the core has to send: control commands first, then seqnum'd data
//! in order, then staging blocks; and the send-queue slots medium
//! fragments go through.

use super::sendq::SendSlots;
use super::state::Ctrl;
use super::types::ReqId;
use std::collections::VecDeque;

/// The output queues of one core.
pub(crate) struct Emission {
    /// Connects, acks, region and pull commands, ahead of data.
    pub(crate) ctrl_q: VecDeque<Ctrl>,
    /// Sends and notifies with a seqnum, in emission order.
    pub(crate) data_q: VecDeque<ReqId>,
    /// Blocks of progressively staged sends still to copy and register
    /// (after the data queue: the rendezvous goes out first).
    pub(crate) stage_q: VecDeque<Ctrl>,
    /// Who holds each send-queue slot.
    pub(crate) sendq: SendSlots,
}

impl Emission {
    /// Empty queues over a send queue of `sendq_slots` slots.
    pub(crate) fn new(sendq_slots: u16) -> Self {
        Emission {
            ctrl_q: VecDeque::new(),
            data_q: VecDeque::new(),
            stage_q: VecDeque::new(),
            sendq: SendSlots::new(sendq_slots),
        }
    }
}
