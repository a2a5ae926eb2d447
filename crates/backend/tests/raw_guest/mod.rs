//! A guest on a board's raw endpoint, driving the raw channel by hand as
//! the library does (tests send what the library would refuse), and the
//! test frames. Shared by the raw-endpoint tests with `mod raw_guest;`.

#![allow(dead_code)]

use frontend::{Doorbell, Frontend, RawChannel};
use mx_proto::msg::control::ChannelSizes;
use mx_proto::msg::raw_endpoint::{RawCommand, RawEvent, RawSendStatus};
use mx_proto::platform::local::LocalGuest;
use std::time::{Duration, Instant};

/// Small channel sizes, so floods fill the receive queue quickly.
pub fn sizes() -> ChannelSizes {
    ChannelSizes {
        cmd_slots: 32,
        evt_slots: 64,
        sendq_slots: 16,
        recvq_slots: 8,
    }
}

/// A raw frame: `dst`, a junk source MAC (the backend must replace it),
/// EtherType 0x86DF, peer index 0, type RAW, then `body`.
pub fn raw_frame(dst: [u8; 6], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(17 + body.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x0e, 0xad, 0xbe, 0xef, 0, 1]);
    f.extend_from_slice(&0x86DFu16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.push(1);
    f.extend_from_slice(body);
    f
}

/// A test body of `len` bytes with pattern `salt`.
pub fn body(len: usize, salt: u8) -> Vec<u8> {
    // Bytes 32..40 of the frame (15..23 of the body) stay zero: discovery
    // reads a RAW frame of 64 bytes or more as a mapper announcement, and
    // nic_id 0 makes sure ours are refused there, never taken as peers.
    (0..len)
        .map(|i| {
            if (15..23).contains(&i) {
                0
            } else {
                (i as u8).wrapping_mul(29).wrapping_add(salt)
            }
        })
        .collect()
}

/// A guest on a raw endpoint, driving the channel as the library does.
pub struct RawGuest {
    /// The channel.
    pub ch: RawChannel<LocalGuest>,
    /// Its doorbell.
    pub bell: Doorbell<LocalGuest>,
    /// Free send-queue slots.
    pub free: Vec<u16>,
}

/// An event with the received frame, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A send completed (its slot, what became of it).
    Done(u16, RawSendStatus),
    /// A frame arrived.
    Frame(Vec<u8>),
}

impl RawGuest {
    /// Open board 0's raw endpoint.
    pub fn open(fe: &Frontend<LocalGuest>) -> RawGuest {
        let (ch, bell) = fe.open_raw(0, sizes()).unwrap();
        let free = (0..ch.sendq_slots() as u16).rev().collect();
        RawGuest { ch, bell, free }
    }

    /// Post the send of `frame`; returns its send-queue slot.
    pub fn send(&mut self, frame: &[u8]) -> u16 {
        let slot = self.free.pop().expect("a free send-queue slot");
        self.ch.sendq_write(slot, frame).unwrap();
        self.post(&RawCommand::Send {
            sendq_slot: slot,
            length: frame.len() as u32,
        });
        slot
    }

    /// Post a command and flush.
    pub fn post(&mut self, cmd: &RawCommand) {
        self.ch.post(cmd).unwrap();
        self.ch.flush().unwrap();
    }

    /// The next event within 5 s.
    pub fn next(&mut self) -> Got {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(g) = self.poll() {
                return g;
            }
            assert!(Instant::now() < deadline, "no raw event within 5 s");
            if self.ch.prepare_to_sleep().unwrap() {
                let _ = self.bell.wait(Some(Duration::from_millis(20)));
            }
        }
    }

    /// The next event, if one is there.
    pub fn poll(&mut self) -> Option<Got> {
        let slot = self.ch.next_event().unwrap()?;
        let got = match RawEvent::parse(&slot).unwrap() {
            RawEvent::SendDone { sendq_slot, status } => {
                self.free.push(sendq_slot);
                Got::Done(sendq_slot, status)
            }
            RawEvent::Recv { recvq_slot, length } => {
                let mut f = vec![0; length as usize];
                self.ch.recvq_read(recvq_slot, 0, &mut f).unwrap();
                self.ch.recvq_release(recvq_slot).unwrap();
                Got::Frame(f)
            }
        };
        self.ch.release_events().unwrap();
        Some(got)
    }

    /// Fails if an event arrives within `wait`.
    pub fn no_event(&mut self, wait: Duration) {
        std::thread::sleep(wait);
        if let Some(g) = self.poll() {
            panic!("unexpected raw event {g:?}");
        }
    }
}
