//! The raw family: commands and events of a board's raw endpoint (the MX
//! raw API, `mx_raw.h`, used by fabric mappers).
//!
//! A raw endpoint is a channel like an endpoint's (same control page, same
//! four rings, same slot sizes), opened with
//! [`ControlRequest::OpenRaw`](super::control::ControlRequest::OpenRaw).
//! Its slots carry kinds 20..=29 only, which no other channel accepts
//! ([`Command::parse`](super::Command::parse) and
//! [`Event::parse`](super::Event::parse) refuse them as unknown), so a
//! slot of one family on the other channel is counted as malformed, never
//! acted on.
//!
//! A frame is a whole Ethernet frame without FCS: destination MAC at
//! offset 0, source MAC at 6, EtherType at 12, then the MXoE head and body
//! (what Open-MX's raw interface hands its mapper). Frames travel in the
//! send and receive queues, one per [`QUEUE_SLOT_SIZE`] slot, so they are
//! at most that long.
//!
//! Command slot layout (little-endian):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 1 | kind (20 = send) |
//! | 1 | 1 | zero |
//! | 2 | 2 | send-queue slot holding the frame |
//! | 4 | 4 | frame length |
//!
//! Event slot layout:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 1 | kind (20 = frame received, 21 = send done) |
//! | 1 | 1 | send done: [`RawSendStatus`] |
//! | 2 | 2 | the receive-queue slot (received) or send-queue slot (done) |
//! | 4 | 4 | received: frame length |

use super::{CmdSlot, EvtSlot, MsgError, QUEUE_SLOT_SIZE};

/// Kind byte of [`RawCommand::Send`].
pub const RAW_CMD_SEND: u8 = 20;
/// Kind byte of [`RawEvent::Recv`].
pub const RAW_EVT_RECV: u8 = 20;
/// Kind byte of [`RawEvent::SendDone`].
pub const RAW_EVT_SEND_DONE: u8 = 21;
/// Largest raw frame a channel can carry (one queue slot).
pub const RAW_FRAME_MAX: usize = QUEUE_SLOT_SIZE;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A validated command of a raw endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCommand {
    /// Send the frame in a send-queue slot; the backend answers with
    /// [`RawEvent::SendDone`] naming the same slot.
    Send {
        /// The send-queue slot holding the frame.
        sendq_slot: u16,
        /// Frame length in bytes (at most [`RAW_FRAME_MAX`]).
        length: u32,
    },
}

impl RawCommand {
    /// Parse and validate a slot the caller owns (already copied out of
    /// shared memory).
    ///
    /// # Errors
    /// [`MsgError::UnknownKind`] for a kind outside the raw family,
    /// [`MsgError::BadLength`] for a frame longer than a queue slot,
    /// [`MsgError::BadField`] for a non-zero reserved byte.
    pub fn parse(slot: &CmdSlot) -> Result<Self, MsgError> {
        let b = &slot.0;
        match b[0] {
            RAW_CMD_SEND => {
                if b[1] != 0 {
                    return Err(MsgError::BadField("raw send reserved byte"));
                }
                let length = u32_at(b, 4);
                if length as usize > RAW_FRAME_MAX {
                    return Err(MsgError::BadLength {
                        kind: b[0],
                        len: length,
                    });
                }
                Ok(RawCommand::Send {
                    sendq_slot: u16_at(b, 2),
                    length,
                })
            }
            k => Err(MsgError::UnknownKind(k)),
        }
    }

    /// Write this command into `slot` (whole-slot store: unused bytes zeroed).
    ///
    /// # Errors
    /// [`MsgError::BadLength`] for a frame longer than a queue slot.
    pub fn emit(&self, slot: &mut CmdSlot) -> Result<(), MsgError> {
        slot.0.fill(0);
        match *self {
            RawCommand::Send { sendq_slot, length } => {
                if length as usize > RAW_FRAME_MAX {
                    return Err(MsgError::BadLength {
                        kind: RAW_CMD_SEND,
                        len: length,
                    });
                }
                slot.0[0] = RAW_CMD_SEND;
                slot.0[2..4].copy_from_slice(&sendq_slot.to_le_bytes());
                slot.0[4..8].copy_from_slice(&length.to_le_bytes());
            }
        }
        Ok(())
    }
}

u8_enum! {
    /// What became of a raw send (informational: the MX raw API has no
    /// per-send status, every send completes).
    pub enum RawSendStatus {
        /// Handed to the NIC.
        Sent = 0,
        /// The board has no NIC: the frame went nowhere.
        NoNic = 1,
        /// The frame was refused (length, EtherType or packet type).
        Refused = 2,
        /// The NIC refused the frame or failed.
        NicError = 3,
    }
}

/// A validated event of a raw endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEvent {
    /// A frame arrived; its bytes are in a receive-queue slot (released in
    /// order, as on an endpoint's channel).
    Recv {
        /// The receive-queue slot.
        recvq_slot: u16,
        /// Frame length (at most [`RAW_FRAME_MAX`]).
        length: u32,
    },
    /// The backend is done with a send-queue slot.
    SendDone {
        /// The slot of the [`RawCommand::Send`].
        sendq_slot: u16,
        /// What became of the frame.
        status: RawSendStatus,
    },
}

impl RawEvent {
    /// Parse and validate a slot the caller owns (already copied out of
    /// shared memory).
    ///
    /// # Errors
    /// [`MsgError::UnknownKind`] outside the raw family, [`MsgError::BadLength`]
    /// for a frame longer than a queue slot, [`MsgError::BadField`] for an
    /// unknown send status.
    pub fn parse(slot: &EvtSlot) -> Result<Self, MsgError> {
        let b = &slot.0;
        match b[0] {
            RAW_EVT_RECV => {
                let length = u32_at(b, 4);
                if length as usize > RAW_FRAME_MAX {
                    return Err(MsgError::BadLength {
                        kind: b[0],
                        len: length,
                    });
                }
                Ok(RawEvent::Recv {
                    recvq_slot: u16_at(b, 2),
                    length,
                })
            }
            RAW_EVT_SEND_DONE => Ok(RawEvent::SendDone {
                sendq_slot: u16_at(b, 2),
                status: RawSendStatus::from_u8(b[1])
                    .ok_or(MsgError::BadField("raw send status"))?,
            }),
            k => Err(MsgError::UnknownKind(k)),
        }
    }

    /// Write this event into `slot` (whole-slot store: unused bytes zeroed).
    ///
    /// # Errors
    /// [`MsgError::BadLength`] for a frame longer than a queue slot.
    pub fn emit(&self, slot: &mut EvtSlot) -> Result<(), MsgError> {
        slot.0.fill(0);
        match *self {
            RawEvent::Recv { recvq_slot, length } => {
                if length as usize > RAW_FRAME_MAX {
                    return Err(MsgError::BadLength {
                        kind: RAW_EVT_RECV,
                        len: length,
                    });
                }
                slot.0[0] = RAW_EVT_RECV;
                slot.0[2..4].copy_from_slice(&recvq_slot.to_le_bytes());
                slot.0[4..8].copy_from_slice(&length.to_le_bytes());
            }
            RawEvent::SendDone { sendq_slot, status } => {
                slot.0[0] = RAW_EVT_SEND_DONE;
                slot.0[1] = status as u8;
                slot.0[2..4].copy_from_slice(&sendq_slot.to_le_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Command, Event};

    #[test]
    fn commands_round_trip_and_stay_out_of_the_endpoint_family() {
        for c in [
            RawCommand::Send {
                sendq_slot: 0,
                length: 0,
            },
            RawCommand::Send {
                sendq_slot: 0xbeef,
                length: RAW_FRAME_MAX as u32,
            },
        ] {
            let mut slot = CmdSlot([0xa5; 192]);
            c.emit(&mut slot).unwrap();
            assert_eq!(RawCommand::parse(&slot), Ok(c));
            assert_eq!(Command::parse(&slot), Err(MsgError::UnknownKind(20)));
        }
        let mut slot = CmdSlot::default();
        assert!(RawCommand::Send {
            sendq_slot: 1,
            length: RAW_FRAME_MAX as u32 + 1
        }
        .emit(&mut slot)
        .is_err());
        slot.0[0] = RAW_CMD_SEND;
        slot.0[4..8].copy_from_slice(&(RAW_FRAME_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(
            RawCommand::parse(&slot),
            Err(MsgError::BadLength { kind: 20, .. })
        ));
        slot.0[4..8].fill(0);
        slot.0[1] = 1;
        assert!(RawCommand::parse(&slot).is_err(), "reserved byte");
        // Endpoint commands are not raw commands.
        for k in 1..=19u8 {
            slot.0[0] = k;
            assert_eq!(RawCommand::parse(&slot), Err(MsgError::UnknownKind(k)));
        }
    }

    #[test]
    fn events_round_trip_and_stay_out_of_the_endpoint_family() {
        for e in [
            RawEvent::Recv {
                recvq_slot: 7,
                length: 60,
            },
            RawEvent::SendDone {
                sendq_slot: 3,
                status: RawSendStatus::Refused,
            },
            RawEvent::SendDone {
                sendq_slot: 0xffff,
                status: RawSendStatus::NoNic,
            },
        ] {
            let mut slot = EvtSlot([0xa5; 64]);
            e.emit(&mut slot).unwrap();
            assert_eq!(RawEvent::parse(&slot), Ok(e));
            assert!(matches!(
                Event::parse(&slot),
                Err(MsgError::UnknownKind(20 | 21))
            ));
        }
        let mut slot = EvtSlot::default();
        slot.0[0] = RAW_EVT_SEND_DONE;
        slot.0[1] = 9;
        assert_eq!(
            RawEvent::parse(&slot),
            Err(MsgError::BadField("raw send status"))
        );
        slot.0[0] = RAW_EVT_RECV;
        slot.0[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RawEvent::parse(&slot).is_err());
        slot.0[0] = 1;
        assert_eq!(RawEvent::parse(&slot), Err(MsgError::UnknownKind(1)));
    }
}
