//! A board's raw endpoint: the MX raw API (`mx_raw.h`) that fabric
//! mappers use, served by the backend.
//!
//! At most one per board, opened by a guest the backend's
//! [`RawAccess`](crate::config::RawAccess) policy admits, over a channel
//! like an endpoint's (same pages, rings and queues) that carries the
//! [`mx_proto::msg::raw_endpoint`] family.
//!
//! - **Send.** A [`RawCommand::Send`] names a send-queue slot. The frame is
//!   copied out of shared memory first (the guest could rewrite it while
//!   we look), then validated on the copy: length within
//!   [`HEAD_MIN`]..=`max_frame`, EtherType 0x86DF, packet type RAW (1),
//!   so a raw endpoint can feed peer mappers but never forge MX traffic of
//!   other endpoints; the source MAC is overwritten with the board's own,
//!   so no frame leaves with another host's address. A valid frame goes to
//!   the NIC as is; without a NIC it goes nowhere. Every send is answered
//!   with [`RawEvent::SendDone`] naming its slot, whatever became of it
//!   (the MX raw API completes every send); a command naming a slot the
//!   channel does not have cannot be answered and is only counted.
//! - **Receive.** Every RAW frame the NIC delivers to this board (after
//!   the receive path's own checks) is copied whole into the next
//!   receive-queue slot and announced with [`RawEvent::Recv`], in addition
//!   to the backend's own discovery. No endpoint, no room in its queue or
//!   event ring, or a frame longer than `max_frame`: dropped and counted,
//!   never blocking the NIC.
//! - **Back-pressure.** A send whose completion has no room in the event
//!   ring waits (kept aside, retried before newer commands) instead of
//!   being dropped, as on an endpoint.

use crate::counters::{NicCounter, NicCounters, RawCounter, RawCounters};
use crate::endpoint::Chan;
use crate::nic::{Nic, Payload};
use mx_proto::msg::raw_endpoint::{RawCommand, RawEvent, RawSendStatus, RAW_FRAME_MAX};
use mx_proto::msg::CmdSlot;
use mx_proto::platform::HostPlatform;
use mx_proto::ring::RingError;
use mxoe_wire::{PacketType, ETHERTYPE, HEAD_LEN};
use tracing::debug;

/// Shortest raw frame: the MXoE head and the packet type byte.
pub const HEAD_MIN: usize = HEAD_LEN + 1;

/// Longest raw frame of a board whose interface has MTU `mtu`: one
/// Ethernet frame without FCS, capped by the queue slot that carries it.
pub fn max_frame(mtu: u32) -> usize {
    (mtu as usize).saturating_add(14).min(RAW_FRAME_MAX)
}

/// Why a frame handed over by a raw endpoint is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than [`HEAD_MIN`] or longer than the board's `max_frame`.
    Length,
    /// Not EtherType 0x86DF.
    EtherType,
    /// Not a RAW packet (type byte at offset 16).
    NotRaw,
}

impl Refusal {
    fn counter(self) -> RawCounter {
        match self {
            Refusal::Length => RawCounter::RefusedLength,
            Refusal::EtherType => RawCounter::RefusedEtherType,
            Refusal::NotRaw => RawCounter::RefusedNotRaw,
        }
    }
}

/// Check a frame copied out of a raw endpoint's send queue and stamp the
/// board's MAC as its source.
///
/// # Errors
/// The first rule the frame breaks.
pub fn check_frame(frame: &mut [u8], max_frame: usize, mac: [u8; 6]) -> Result<(), Refusal> {
    if frame.len() < HEAD_MIN || frame.len() > max_frame {
        return Err(Refusal::Length);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE {
        return Err(Refusal::EtherType);
    }
    if PacketType::from(frame[HEAD_LEN]) != PacketType::Raw {
        return Err(Refusal::NotRaw);
    }
    frame[6..12].copy_from_slice(&mac);
    Ok(())
}

/// The board's raw endpoint.
pub struct RawEndpoint<H: HostPlatform> {
    /// Slab key of the owning guest.
    pub guest: usize,
    /// The shared rings and queues.
    pub chan: Chan<H>,
    /// The event channel to the guest.
    pub event: H::Event,
    /// Longest frame sent or received.
    pub max_frame: usize,
    /// A send copied out of the ring whose completion found no room in the
    /// event ring: retried before any newer command (nothing is sent twice:
    /// the frame is only sent once room for its completion is there).
    pub pending: Option<CmdSlot>,
    /// Events or receive-queue slots were produced since the last publish.
    pub dirty: bool,
    /// The frame being checked (never a reference into shared memory).
    buf: Vec<u8>,
}

/// What a raw send reaches: the NIC and its counters, or nothing.
pub struct RawTx<'a> {
    /// The board's NIC and its counters, if it has one.
    pub nic: Option<(&'a mut dyn Nic, &'a NicCounters)>,
    /// The board's MAC (stamped as every frame's source).
    pub mac: [u8; 6],
}

impl<H: HostPlatform> RawEndpoint<H> {
    /// A raw endpoint of guest `guest` on channel `chan`.
    pub fn new(guest: usize, chan: Chan<H>, event: H::Event, max_frame: usize) -> Self {
        RawEndpoint {
            guest,
            chan,
            event,
            max_frame,
            pending: None,
            dirty: false,
            buf: vec![0; RAW_FRAME_MAX],
        }
    }

    /// Handle up to `batch` commands. True if any command was handled.
    ///
    /// # Errors
    /// The guest corrupted its command ring (it is broken: detach it).
    pub fn serve(
        &mut self,
        tx: &mut RawTx<'_>,
        c: &RawCounters,
        batch: u32,
    ) -> Result<bool, RingError> {
        let mut worked = false;
        for _ in 0..batch {
            let slot = match self.pending.take() {
                Some(s) => s,
                None => match self.chan.pop_command()? {
                    Some(s) => s,
                    None => break,
                },
            };
            let (sendq_slot, length) = match RawCommand::parse(&slot) {
                Ok(RawCommand::Send { sendq_slot, length }) => (sendq_slot, length as usize),
                Err(e) => {
                    debug!("raw command refused: {e}");
                    c.bump(RawCounter::RefusedMalformed);
                    worked = true;
                    continue;
                }
            };
            if u32::from(sendq_slot) >= self.chan.sendq_slots() {
                // No slot to name in a completion: only a broken library
                // does this, and it can only hurt itself.
                c.bump(RawCounter::RefusedBadSlot);
                worked = true;
                continue;
            }
            if !self.chan.event_room(1).unwrap_or(false) {
                // The completion must not be lost: wait for the guest to
                // drain its event ring, keeping the order of its sends.
                self.pending = Some(slot);
                break;
            }
            worked = true;
            let status = self.send_one(tx, c, sendq_slot, length);
            let done = RawEvent::SendDone { sendq_slot, status };
            self.push(&done);
        }
        if self.chan.release_commands().is_needed() {
            use mx_proto::platform::EventChannel;
            let _ = self.event.notify();
        }
        Ok(worked)
    }

    fn send_one(
        &mut self,
        tx: &mut RawTx<'_>,
        c: &RawCounters,
        sendq_slot: u16,
        length: usize,
    ) -> RawSendStatus {
        // Copy, then validate, then act: the check runs on our copy.
        let frame = &mut self.buf[..length.min(RAW_FRAME_MAX)];
        if length > self.max_frame || length < HEAD_MIN {
            c.bump(RawCounter::RefusedLength);
            return RawSendStatus::Refused;
        }
        if self.chan.sendq_read(sendq_slot, frame).is_err() {
            c.bump(RawCounter::RefusedBadSlot);
            return RawSendStatus::Refused;
        }
        if let Err(r) = check_frame(frame, self.max_frame, tx.mac) {
            c.bump(r.counter());
            return RawSendStatus::Refused;
        }
        match tx.nic.as_mut() {
            None => {
                c.bump(RawCounter::SentWithoutNic);
                RawSendStatus::NoNic
            }
            Some((nic, nc)) => match nic.send(frame, Payload::None) {
                Ok(()) => {
                    nc.bump(NicCounter::TxFrames);
                    nc.bump(NicCounter::TxRaw);
                    c.bump(RawCounter::Sent);
                    RawSendStatus::Sent
                }
                Err(e) => {
                    debug!("raw frame refused by the NIC: {e}");
                    nc.bump(NicCounter::TxErrors);
                    c.bump(RawCounter::NicError);
                    RawSendStatus::NicError
                }
            },
        }
    }

    fn push(&mut self, ev: &RawEvent) {
        let mut slot = mx_proto::msg::EvtSlot::default();
        // Events the backend builds always fit their slot.
        let _ = ev.emit(&mut slot);
        if self.chan.push_event_slot(&slot).is_ok() {
            self.dirty = true;
        }
    }

    /// A received RAW frame (whole, from its destination MAC): copy it into
    /// the next receive-queue slot and announce it, or drop and count.
    pub fn receive_frame(&mut self, frame: &[u8], c: &RawCounters) {
        if frame.len() > self.max_frame {
            c.bump(RawCounter::DropTooLarge);
            return;
        }
        if !self.chan.event_room(1).unwrap_or(false) || !self.chan.recvq_room(1).unwrap_or(false) {
            c.bump(RawCounter::DropFull);
            return;
        }
        let Ok(slot) = self.chan.recvq_claim() else {
            c.bump(RawCounter::DropFull);
            return;
        };
        if self.chan.recvq_write(slot, frame).is_err() {
            c.bump(RawCounter::DropTooLarge);
            return;
        }
        self.push(&RawEvent::Recv {
            recvq_slot: slot,
            length: frame.len() as u32,
        });
        c.bump(RawCounter::Received);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
        f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        if let Some(t) = f.get_mut(16) {
            *t = 1;
        }
        f
    }

    #[test]
    fn frames_are_checked_and_stamped_with_our_mac() {
        let mac = [2, 0, 0, 0, 0, 1];
        let mut f = frame(64);
        assert_eq!(check_frame(&mut f, 1514, mac), Ok(()));
        assert_eq!(&f[6..12], &mac, "source MAC forced to the board's");
        assert_eq!(&f[..6], &[0xff; 6], "destination untouched");
        assert_eq!(check_frame(&mut frame(16), 1514, mac), Err(Refusal::Length));
        assert_eq!(check_frame(&mut frame(17), 1514, mac), Ok(()));
        assert_eq!(check_frame(&mut frame(1514), 1514, mac), Ok(()));
        assert_eq!(
            check_frame(&mut frame(1515), 1514, mac),
            Err(Refusal::Length)
        );
        let mut f = frame(64);
        f[12] = 0x08;
        assert_eq!(check_frame(&mut f, 1514, mac), Err(Refusal::EtherType));
        assert_eq!(
            &f[6..12],
            &[2, 9, 9, 9, 9, 9],
            "a refused frame is not stamped"
        );
        let mut f = frame(64);
        f[16] = 37; // TINY: a raw endpoint cannot forge MX messages
        assert_eq!(check_frame(&mut f, 1514, mac), Err(Refusal::NotRaw));
    }

    #[test]
    fn max_frame_is_the_mtu_plus_the_ethernet_header_capped_by_a_slot() {
        assert_eq!(max_frame(1500), 1514);
        assert_eq!(max_frame(4144), 4158);
        assert_eq!(max_frame(9000), RAW_FRAME_MAX);
    }
}
