//! Peer channels: two endpoints of one host talking through memory of
//! their own, with the backend out of the data path.
//!
//! The backend stays the authority (it checks who may talk, bounds how many
//! channels an endpoint has, and hands the memory over), but once a channel
//! is up the bytes of a message go from one library straight to the other.
//! One shared region per pair of endpoints, laid out with the same control
//! page as an endpoint's channel ([`crate::ring`]), holds four rings:
//!
//! | ring | direction | slot | what |
//! |---|---|---|---|
//! | 0 [`RING_A_TO_B`] | creator -> acceptor | [`CmdSlot`] (192 B) | messages; tiny and small payloads inline |
//! | 1 [`RING_B_TO_A`] | acceptor -> creator | [`CmdSlot`] | messages |
//! | 2 [`DATA_A_TO_B`] | creator -> acceptor | [`QueueSlot`] (8 KiB) | medium fragments, named by slot in a message |
//! | 3 [`DATA_B_TO_A`] | acceptor -> creator | [`QueueSlot`] | medium fragments |
//!
//! A message is the [`Command`] the sender's protocol core wrote for the
//! backend, unchanged except that a medium fragment names the data slot it
//! sits in: the receiver turns it into the event the backend would have
//! delivered ([`crate::msg::arrival`]), with the source the channel is bound
//! to, never one the message claims.
//!
//! Each data ring is a FIFO whose indices are its credits, like an
//! endpoint's receive queue: the sender claims slots in order and names each
//! in the message it pushes; the receiver releases them in the same order.
//! A message naming another slot than the next one is a lying peer: the
//! receiver drops the channel (and only that channel).
//!
//! Everything is copied: messages leave the ring as whole slot copies and
//! are parsed afterwards, fragments are copied out with volatile reads.

use crate::channel::{ChannelError, QueueSlot};
use crate::msg::{CmdSlot, QUEUE_SLOT_SIZE};
use crate::platform::{OutOfBounds, SharedMem, PAGE_SIZE};
use crate::ring::{Consumer, ControlPage, Direction, Layout, Notify, Producer, PushError, Side};

/// Messages from the channel's creator to its acceptor.
pub const RING_A_TO_B: usize = 0;
/// Messages from the acceptor to the creator.
pub const RING_B_TO_A: usize = 1;
/// Medium fragments from the creator to the acceptor.
pub const DATA_A_TO_B: usize = 2;
/// Medium fragments from the acceptor to the creator.
pub const DATA_B_TO_A: usize = 3;

/// Most message slots per direction a backend lets a channel have.
pub const MAX_MSG_SLOTS: u32 = 4096;
/// Most data slots per direction.
pub const MAX_DATA_SLOTS: u32 = 512;

/// Slot counts of one peer channel, each direction alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSizes {
    /// Message slots per direction (power of two).
    pub msg_slots: u32,
    /// Medium-fragment slots per direction (power of two).
    pub data_slots: u32,
}

impl Default for PeerSizes {
    /// 256 messages and 32 fragments (256 KiB) each way: about 0.6 MiB per
    /// pair. 32 fragments hold eight default-size (32 KiB) medium messages
    /// in flight, more than a ping-pong or an 8-deep stream needs.
    fn default() -> Self {
        PeerSizes {
            msg_slots: 256,
            data_slots: 32,
        }
    }
}

impl PeerSizes {
    /// The layout of a channel of these sizes.
    ///
    /// # Errors
    /// A count that is zero, not a power of two, or above the limits.
    pub fn layout(&self) -> Result<Layout, ChannelError> {
        if self.msg_slots > MAX_MSG_SLOTS {
            return Err(ChannelError::BadSlot(self.msg_slots));
        }
        if self.data_slots > MAX_DATA_SLOTS {
            return Err(ChannelError::BadSlot(self.data_slots));
        }
        let msg = size_of::<CmdSlot>() as u32;
        let data = QUEUE_SLOT_SIZE as u32;
        let mut l = Layout::new();
        l.add_ring(Direction::FrontToBack, msg, self.msg_slots)?;
        l.add_ring(Direction::BackToFront, msg, self.msg_slots)?;
        l.add_ring(Direction::FrontToBack, data, self.data_slots)?;
        l.add_ring(Direction::BackToFront, data, self.data_slots)?;
        Ok(l)
    }

    /// Pages ([`PAGE_SIZE`]) of the region a channel of these sizes needs.
    ///
    /// # Errors
    /// As [`layout`](Self::layout).
    pub fn pages(&self) -> Result<usize, ChannelError> {
        Ok(self.layout()?.region_len().div_ceil(PAGE_SIZE))
    }
}

/// Which end of a channel a process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that asked for the channel and laid out its memory.
    Creator,
    /// The end that accepted it.
    Acceptor,
}

/// One end of a peer channel: the rings it sends on and receives from.
pub struct PeerChannel<R> {
    region: R,
    tx: Producer<CmdSlot, R>,
    rx: Consumer<CmdSlot, R>,
    txd: Producer<QueueSlot, R>,
    rxd: Consumer<QueueSlot, R>,
    txd_area: (usize, u32),
    rxd_area: (usize, u32),
}

impl<R> core::fmt::Debug for PeerChannel<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerChannel")
            .field("data_slots", &self.txd_area.1)
            .finish_non_exhaustive()
    }
}

/// A data slot of a channel, claimed for writing ([`PeerChannel::claim_data`])
/// or taken for reading ([`PeerChannel::open_data`]): which slot, where its
/// bytes are, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSlot {
    slot: u16,
    off: usize,
    len: usize,
}

impl DataSlot {
    /// The slot index a message names.
    pub fn slot(&self) -> u16 {
        self.slot
    }
    /// The fragment's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the fragment is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn data_offset(area: (usize, u32), slot: u32, len: usize) -> Result<usize, ChannelError> {
    if slot >= area.1 {
        return Err(ChannelError::BadSlot(slot));
    }
    if len > QUEUE_SLOT_SIZE {
        return Err(ChannelError::OutOfBounds);
    }
    Ok(area.0 + slot as usize * QUEUE_SLOT_SIZE)
}

impl<R: SharedMem + Clone> PeerChannel<R> {
    /// Lay out a fresh channel in `region` (zeroed, header written) and take
    /// the creator's end.
    ///
    /// # Errors
    /// Invalid sizes, or a region too small for them.
    pub fn create(region: R, sizes: &PeerSizes) -> Result<Self, ChannelError> {
        let l = sizes.layout()?;
        let page = ControlPage::init(region.clone(), &l, Side::Frontend)?;
        Self::ends(region, &page, &l, Role::Creator)
    }

    /// Check the header the creator wrote against `sizes` (what the backend
    /// said the channel has) and take the acceptor's end.
    ///
    /// # Errors
    /// If the header does not describe exactly these sizes.
    pub fn attach(region: R, sizes: &PeerSizes) -> Result<Self, ChannelError> {
        let l = sizes.layout()?;
        let page = ControlPage::attach(region.clone(), &l, Side::Backend)?;
        Self::ends(region, &page, &l, Role::Acceptor)
    }

    fn ends(
        region: R,
        page: &ControlPage<R>,
        l: &Layout,
        role: Role,
    ) -> Result<Self, ChannelError> {
        let area = |ring: usize| {
            let spec = l.rings[ring].expect("peer layouts have all four rings");
            (spec.area_offset as usize, spec.slot_count)
        };
        let (tx, rx, txd, rxd) = match role {
            Role::Creator => (RING_A_TO_B, RING_B_TO_A, DATA_A_TO_B, DATA_B_TO_A),
            Role::Acceptor => (RING_B_TO_A, RING_A_TO_B, DATA_B_TO_A, DATA_A_TO_B),
        };
        Ok(PeerChannel {
            tx: page.producer(tx)?,
            rx: page.consumer(rx)?,
            txd: page.producer(txd)?,
            rxd: page.consumer(rxd)?,
            txd_area: area(txd),
            rxd_area: area(rxd),
            region,
        })
    }

    /// Room for one more message (and, with `data`, one more fragment).
    /// Refreshes the peer's index only when the cached one says full.
    ///
    /// # Errors
    /// If the peer corrupted an index.
    pub fn has_room(&mut self, data: bool) -> Result<bool, ChannelError> {
        Ok(self.tx.has_room(1)? && (!data || self.txd.has_room(1)?))
    }

    /// Push a message with no fragment (visible at the next
    /// [`publish`](Self::publish)).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the peer is behind.
    pub fn push(&mut self, slot: &CmdSlot) -> Result<(), ChannelError> {
        // Only the bytes the message uses: a tiny one is one cache line.
        let len = crate::msg::Command::used_len(&slot.0);
        self.tx.push_prefix(slot, len).map_err(push_error)
    }

    /// Claim the next data slot and copy `data` into it; the caller names
    /// the returned slot in the message it pushes next.
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the peer has not released enough slots.
    pub fn put_data(&mut self, data: &[u8]) -> Result<u16, ChannelError> {
        let d = self.claim_data(data.len())?;
        self.write_data(&d, 0, data)?;
        Ok(d.slot)
    }

    /// Claim the next data slot for a fragment of `len` bytes, to be filled
    /// with [`write_data`](Self::write_data) piece by piece (straight from
    /// the segments of a user's buffer); the caller names
    /// [`DataSlot::slot`] in the message it pushes next.
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the peer has not released enough slots,
    /// [`ChannelError::OutOfBounds`] for more than a slot holds.
    pub fn claim_data(&mut self, len: usize) -> Result<DataSlot, ChannelError> {
        if len > QUEUE_SLOT_SIZE {
            return Err(ChannelError::OutOfBounds);
        }
        let pos = self.txd.claim().map_err(push_error)?;
        let off = data_offset(self.txd_area, pos, len)?;
        Ok(DataSlot {
            slot: pos as u16,
            off,
            len,
        })
    }

    /// Copy `data` to offset `at` of a data slot claimed with
    /// [`claim_data`](Self::claim_data).
    ///
    /// # Errors
    /// [`ChannelError::OutOfBounds`] beyond the claimed length.
    pub fn write_data(&self, d: &DataSlot, at: usize, data: &[u8]) -> Result<(), ChannelError> {
        if at.checked_add(data.len()).is_none_or(|end| end > d.len) {
            return Err(ChannelError::OutOfBounds);
        }
        self.region
            .write_at(d.off + at, data)
            .map_err(|_: OutOfBounds| ChannelError::OutOfBounds)
    }

    /// Make pushed messages and fragments visible; whether the peer asked to
    /// be told.
    pub fn publish(&mut self) -> Notify {
        // Fragments first: a message must never name a slot the peer
        // cannot see yet (the message ring's Release store orders both).
        let _ = self.txd.publish();
        self.tx.publish()
    }

    /// Copy the next message out of the ring.
    ///
    /// # Errors
    /// If the peer corrupted the ring's indices.
    pub fn pop(&mut self) -> Result<Option<CmdSlot>, ChannelError> {
        Ok(self.rx.pop_prefix(crate::msg::Command::used_len)?)
    }

    /// [`pop`](Self::pop) into `out`: true if a message was copied there.
    ///
    /// # Errors
    /// If the peer corrupted the ring's indices.
    #[inline]
    pub fn pop_into(&mut self, out: &mut CmdSlot) -> Result<bool, ChannelError> {
        Ok(self
            .rx
            .pop_prefix_into(out, crate::msg::Command::used_len)?)
    }

    /// Whether a message is ready to [`pop`](Self::pop): what a poll of an
    /// idle channel costs (one load of the peer's index, no copy).
    ///
    /// # Errors
    /// A ring error if the peer corrupted the ring's indices.
    #[inline]
    pub fn ready(&mut self) -> Result<bool, ChannelError> {
        Ok(self.rx.ready()?)
    }

    /// Copy fragment `slot` (which must be the next one in order) out into
    /// `out` and release it.
    ///
    /// # Errors
    /// [`ChannelError::RecvqOrder`] if the peer named slots out of order, a
    /// ring error if it named a slot it never published.
    pub fn take_data(&mut self, slot: u16, out: &mut [u8]) -> Result<(), ChannelError> {
        let d = self.open_data(slot, out.len())?;
        self.read_data(&d, 0, out)
    }

    /// Take fragment `slot` (which must be the next one in order) of `len`
    /// bytes, to be read with [`read_data`](Self::read_data) straight into
    /// its destination; it stays ours (the peer cannot reuse it) until the
    /// next [`release`](Self::release).
    ///
    /// # Errors
    /// [`ChannelError::RecvqOrder`] if the peer named slots out of order, a
    /// ring error if it named a slot it never published,
    /// [`ChannelError::OutOfBounds`] for more than a slot holds.
    pub fn open_data(&mut self, slot: u16, len: usize) -> Result<DataSlot, ChannelError> {
        let expected = (self.rxd.position() & (self.rxd_area.1 - 1)) as u16;
        if slot != expected {
            return Err(ChannelError::RecvqOrder {
                expected: expected.into(),
                got: slot.into(),
            });
        }
        if len > QUEUE_SLOT_SIZE {
            return Err(ChannelError::OutOfBounds);
        }
        // Skipping first checks that the slot was published.
        let Some(pos) = self.rxd.skip()? else {
            return Err(ChannelError::BadSlot(slot.into()));
        };
        let off = data_offset(self.rxd_area, pos, len)?;
        Ok(DataSlot { slot, off, len })
    }

    /// Copy `out.len()` bytes from offset `at` of a fragment taken with
    /// [`open_data`](Self::open_data).
    ///
    /// # Errors
    /// [`ChannelError::OutOfBounds`] beyond the fragment's length.
    pub fn read_data(&self, d: &DataSlot, at: usize, out: &mut [u8]) -> Result<(), ChannelError> {
        if at.checked_add(out.len()).is_none_or(|end| end > d.len) {
            return Err(ChannelError::OutOfBounds);
        }
        self.region
            .read_at(d.off + at, out)
            .map_err(|_: OutOfBounds| ChannelError::OutOfBounds)
    }

    /// Hand consumed messages and fragments back; whether the peer asked to
    /// be told (it waits for room).
    pub fn release(&mut self) -> Notify {
        let a = self.rxd.release();
        let b = self.rx.release();
        if a.is_needed() || b.is_needed() {
            Notify::Yes
        } else {
            Notify::No
        }
    }

    /// Arm the receive ring before sleeping: true if we may sleep (nothing
    /// arrived meanwhile).
    ///
    /// # Errors
    /// If the peer corrupted the ring's indices.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, ChannelError> {
        Ok(self.rx.prepare_to_sleep()?)
    }

    /// Arm the send side before sleeping with messages held back for room
    /// (`data`: a fragment slot is needed too): true if we may sleep (still
    /// full; the peer's next release rings us), false if room appeared.
    /// Call after [`publish`](Self::publish).
    ///
    /// # Errors
    /// If the peer corrupted an index.
    pub fn prepare_to_wait_for_space(&mut self, data: bool) -> Result<bool, ChannelError> {
        if self.tx.prepare_to_wait_for_space()? {
            return Ok(true);
        }
        Ok(data && self.txd.prepare_to_wait_for_space()?)
    }

    /// Messages waiting to be popped.
    ///
    /// # Errors
    /// If the peer corrupted the ring's indices.
    pub fn pending(&mut self) -> Result<u32, ChannelError> {
        Ok(self.rx.available()?)
    }
}

fn push_error(e: PushError) -> ChannelError {
    match e {
        PushError::Full => ChannelError::Full,
        PushError::Ring(r) => ChannelError::Ring(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::command::SendHdr;
    use crate::msg::Dest;
    use crate::msg::{Command, Seq};
    use crate::platform::local::MemfdPages;
    use std::sync::Arc;

    fn pair(sizes: &PeerSizes) -> (PeerChannel<Arc<MemfdPages>>, PeerChannel<Arc<MemfdPages>>) {
        let mem = Arc::new(MemfdPages::new(sizes.pages().unwrap()).unwrap());
        let a = PeerChannel::create(mem.clone(), sizes).unwrap();
        let b = PeerChannel::attach(mem, sizes).unwrap();
        (a, b)
    }

    fn tiny(seq: u16, data: &[u8]) -> CmdSlot {
        let mut slot = CmdSlot::default();
        Command::Tiny {
            hdr: SendHdr {
                dest: Dest {
                    peer: 0,
                    endpoint: 1,
                },
                session: 7,
                seq: Seq {
                    seqnum: seq,
                    piggyack: 0,
                },
                match_info: 42,
            },
            data,
        }
        .emit(&mut slot)
        .unwrap();
        slot
    }

    #[test]
    fn messages_and_fragments_flow_both_ways_in_order() {
        let sizes = PeerSizes {
            msg_slots: 8,
            data_slots: 4,
        };
        let (mut a, mut b) = pair(&sizes);
        for round in 0..20u16 {
            let (tx, rx) = if round % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let frag = vec![round as u8; 1000 + usize::from(round)];
            let slot = tx.put_data(&frag).unwrap();
            tx.push(&tiny(round, b"hello")).unwrap();
            let _ = tx.publish();
            let got = rx.pop().unwrap().unwrap();
            assert!(matches!(Command::parse(&got).unwrap(),
                Command::Tiny { hdr, data } if hdr.seq.seqnum == round && data == b"hello"));
            let mut out = vec![0; frag.len()];
            rx.take_data(slot, &mut out).unwrap();
            assert_eq!(out, frag);
            let _ = rx.release();
        }
    }

    #[test]
    fn a_full_channel_says_so_and_recovers() {
        let sizes = PeerSizes {
            msg_slots: 4,
            data_slots: 2,
        };
        let (mut a, mut b) = pair(&sizes);
        for i in 0..4 {
            assert!(a.has_room(false).unwrap());
            a.push(&tiny(i, b"")).unwrap();
        }
        assert!(!a.has_room(false).unwrap());
        assert_eq!(a.push(&tiny(9, b"")), Err(ChannelError::Full));
        a.put_data(b"x").unwrap();
        a.put_data(b"y").unwrap();
        assert!(!a.has_room(true).unwrap());
        let _ = a.publish();
        while b.pop().unwrap().is_some() {}
        let mut one = [0u8; 1];
        b.take_data(0, &mut one).unwrap();
        let _ = b.release();
        assert!(a.has_room(true).unwrap());
    }

    #[test]
    fn a_lying_sender_is_caught() {
        let sizes = PeerSizes {
            msg_slots: 4,
            data_slots: 4,
        };
        let (mut a, mut b) = pair(&sizes);
        // Names a slot that was never published.
        let mut out = [0u8; 8];
        assert!(b.take_data(0, &mut out).is_err());
        a.put_data(&[1; 8]).unwrap();
        let _ = a.publish();
        // Out of order.
        assert!(matches!(
            b.take_data(1, &mut out),
            Err(ChannelError::RecvqOrder {
                expected: 0,
                got: 1
            })
        ));
        // Oversized read.
        let mut big = vec![0u8; QUEUE_SLOT_SIZE + 1];
        assert_eq!(b.take_data(0, &mut big), Err(ChannelError::OutOfBounds));
        b.take_data(0, &mut out).unwrap();
        assert_eq!(out, [1; 8]);
    }

    #[test]
    fn an_acceptor_refuses_a_region_of_other_sizes() {
        let sizes = PeerSizes {
            msg_slots: 8,
            data_slots: 4,
        };
        let mem = Arc::new(MemfdPages::new(sizes.pages().unwrap()).unwrap());
        let _a = PeerChannel::create(mem.clone(), &sizes).unwrap();
        let other = PeerSizes {
            msg_slots: 16,
            data_slots: 4,
        };
        assert!(PeerChannel::attach(mem.clone(), &other).is_err());
        // An endpoint channel's region is not a peer channel either.
        let fresh = Arc::new(MemfdPages::new(sizes.pages().unwrap()).unwrap());
        assert!(PeerChannel::attach(fresh, &sizes).is_err());
        assert!(PeerSizes {
            msg_slots: 3,
            data_slots: 4
        }
        .layout()
        .is_err());
        assert!(PeerSizes {
            msg_slots: 8,
            data_slots: 1024
        }
        .layout()
        .is_err());
    }
}
