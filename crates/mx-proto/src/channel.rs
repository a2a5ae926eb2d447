//! The channel of one endpoint: the shared region a guest offers when it
//! opens an endpoint, and the two typed ends of it.
//!
//! The region holds the control page and four rings (see [`crate::ring`] for
//! the control page layout and the index protocol):
//!
//! | ring | direction | slot | what |
//! |---|---|---|---|
//! | 0 [`RING_CMD`] | guest -> backend | [`CmdSlot`] (192 B) | commands; tiny and small payloads inline |
//! | 1 [`RING_EVT`] | backend -> guest | [`EvtSlot`] (64 B) | events; tiny payloads inline |
//! | 2 [`RING_SENDQ`] | guest -> backend | [`QueueSlot`] (8 KiB) | the send queue: medium fragments the guest wrote, named by slot in a command |
//! | 3 [`RING_RECVQ`] | backend -> guest | [`QueueSlot`] (8 KiB) | the receive queue: small and medium payloads the backend wrote, named by slot in an event |
//!
//! The send queue is a pool, not a FIFO: the guest picks any free slot, names
//! it in a command, and gets it back with an
//! [`Event::SendMediumDone`](crate::msg::Event). Its index
//! block is unused.
//!
//! The receive queue is a FIFO whose indices are its credits: the backend
//! claims slots in order (`prod`) and names each in the event it posts; the
//! guest releases them in the same order (`cons`) as it consumes those
//! events. The backend writes a slot only when `prod - cons < size`, so it
//! never overwrites a payload the guest has not read, and the guest checks
//! that each event names exactly the slot it expects next (a backend that
//! lies is declared broken, netfront's rule).
//!
//! Everything here copies: commands and events are copied out of their
//! slots whole before they are parsed, payloads are copied with volatile
//! accesses; nothing hands out a reference into shared memory.

use crate::msg::control::ChannelSizes;
use crate::msg::{CmdSlot, Command, Event, EvtSlot, MsgError, QUEUE_SLOT_SIZE};
use crate::platform::{OutOfBounds, SharedMem};
use crate::ring::{
    Consumer, ControlPage, Direction, Layout, LayoutError, Notify, Producer, PushError, RingError,
    Side,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Ring number of the command ring.
pub const RING_CMD: usize = 0;
/// Ring number of the event ring.
pub const RING_EVT: usize = 1;
/// Ring number of the send queue.
pub const RING_SENDQ: usize = 2;
/// Ring number of the receive queue.
pub const RING_RECVQ: usize = 3;
/// Most send- or receive-queue slots (slot indices travel as u16).
pub const MAX_QUEUE_SLOTS: u32 = 4096;

/// One send- or receive-queue slot.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QueueSlot(pub [u8; QUEUE_SLOT_SIZE]);

/// Why a channel could not be set up or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// The sizes or the region do not make a valid layout.
    Layout(LayoutError),
    /// The peer corrupted a ring index.
    Ring(RingError),
    /// A slot index out of range.
    BadSlot(u32),
    /// The backend named a receive-queue slot out of order.
    RecvqOrder {
        /// The slot the guest expected next.
        expected: u32,
        /// The slot the event named.
        got: u32,
    },
    /// A payload range outside its slot.
    OutOfBounds,
    /// A message did not parse or emit.
    Msg(MsgError),
    /// The ring is full.
    Full,
}

impl From<LayoutError> for ChannelError {
    fn from(e: LayoutError) -> Self {
        ChannelError::Layout(e)
    }
}
impl From<RingError> for ChannelError {
    fn from(e: RingError) -> Self {
        ChannelError::Ring(e)
    }
}
impl From<OutOfBounds> for ChannelError {
    fn from(_: OutOfBounds) -> Self {
        ChannelError::OutOfBounds
    }
}
impl From<MsgError> for ChannelError {
    fn from(e: MsgError) -> Self {
        ChannelError::Msg(e)
    }
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}
impl std::error::Error for ChannelError {}

/// The layout of a channel with these sizes.
///
/// # Errors
/// If a size is not a power of two or the queues exceed [`MAX_QUEUE_SLOTS`].
pub fn layout(sizes: &ChannelSizes) -> Result<Layout, ChannelError> {
    for n in [sizes.sendq_slots, sizes.recvq_slots] {
        if n > MAX_QUEUE_SLOTS {
            return Err(ChannelError::BadSlot(n));
        }
    }
    let mut l = Layout::new();
    l.add_ring(
        Direction::FrontToBack,
        size_of::<CmdSlot>() as u32,
        sizes.cmd_slots,
    )?;
    l.add_ring(
        Direction::BackToFront,
        size_of::<EvtSlot>() as u32,
        sizes.evt_slots,
    )?;
    l.add_ring(
        Direction::FrontToBack,
        QUEUE_SLOT_SIZE as u32,
        sizes.sendq_slots,
    )?;
    l.add_ring(
        Direction::BackToFront,
        QUEUE_SLOT_SIZE as u32,
        sizes.recvq_slots,
    )?;
    Ok(l)
}

/// Byte offset of the first slot of ring `ring` and its slot count.
fn area(l: &Layout, ring: usize) -> (usize, u32) {
    let spec = l.rings[ring].expect("channel layouts have all four rings");
    (spec.area_offset as usize, spec.slot_count)
}

fn slot_offset(
    area: (usize, u32),
    slot: u32,
    off: usize,
    len: usize,
) -> Result<usize, ChannelError> {
    if slot >= area.1 {
        return Err(ChannelError::BadSlot(slot));
    }
    if off.checked_add(len).is_none_or(|end| end > QUEUE_SLOT_SIZE) {
        return Err(ChannelError::OutOfBounds);
    }
    Ok(area.0 + slot as usize * QUEUE_SLOT_SIZE + off)
}

/// The backend's end of a channel.
pub struct HostChannel<R> {
    region: R,
    cmd: Consumer<CmdSlot, R>,
    evt: Producer<EvtSlot, R>,
    recvq: Producer<QueueSlot, R>,
    sendq_area: (usize, u32),
    recvq_area: (usize, u32),
}

impl<R: SharedMem + Clone> HostChannel<R> {
    /// Bytes of the region a channel with these sizes needs.
    ///
    /// # Errors
    /// As [`layout`].
    pub fn region_len(sizes: &ChannelSizes) -> Result<usize, ChannelError> {
        Ok(layout(sizes)?.region_len())
    }

    /// Validate the control page the guest wrote against `sizes` (what it
    /// asked for in its open request) and take the backend's ends.
    ///
    /// # Errors
    /// If the page does not match the sizes or the region is too small.
    pub fn attach(region: R, sizes: &ChannelSizes) -> Result<Self, ChannelError> {
        let l = layout(sizes)?;
        let page = ControlPage::attach(region.clone(), &l, Side::Backend)?;
        Ok(HostChannel {
            cmd: page.consumer(RING_CMD)?,
            evt: page.producer(RING_EVT)?,
            recvq: page.producer(RING_RECVQ)?,
            sendq_area: area(&l, RING_SENDQ),
            recvq_area: area(&l, RING_RECVQ),
            region,
        })
    }

    /// Copy the next command out of the ring.
    ///
    /// # Errors
    /// If the guest corrupted the ring's indices.
    #[inline]
    pub fn pop_command(&mut self) -> Result<Option<CmdSlot>, RingError> {
        self.cmd.pop()
    }

    /// Hand consumed command slots back to the guest.
    #[inline]
    pub fn release_commands(&mut self) -> Notify {
        self.cmd.release()
    }

    /// Arm the command ring before sleeping: true if the backend may sleep.
    ///
    /// # Errors
    /// If the guest corrupted the ring's indices.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, RingError> {
        // The backend never waits for command-ring space (it only consumes),
        // so the release needs no notification.
        let _ = self.cmd.release();
        self.cmd.prepare_to_sleep()
    }

    /// Free event slots.
    ///
    /// # Errors
    /// If the guest corrupted the ring's indices.
    #[inline]
    pub fn event_space(&mut self) -> Result<u32, RingError> {
        self.evt.free_slots()
    }

    /// Whether at least `n` event slots are free, reading the guest's index
    /// only when the cached one says there are fewer (the room check of the
    /// hot path; [`event_space`](Self::event_space) always reads it).
    ///
    /// # Errors
    /// If the guest corrupted the ring's indices.
    #[inline]
    pub fn event_room(&mut self, n: u32) -> Result<bool, RingError> {
        self.evt.has_room(n)
    }

    /// Post an event (visible at the next [`publish`](Self::publish)).
    ///
    /// # Errors
    /// [`PushError::Full`] when the guest has not consumed enough events.
    #[inline]
    pub fn push_event(&mut self, ev: &Event<'_>) -> Result<(), PushError> {
        let mut slot = EvtSlot::default();
        // Event values built by the backend always fit their slot.
        let _ = ev.emit(&mut slot);
        self.evt.push(&slot)
    }

    /// Post an already encoded event slot (the raw family's events are not
    /// [`Event`]s); visible at the next [`publish`](Self::publish).
    ///
    /// # Errors
    /// [`PushError::Full`] when the guest has not consumed enough events.
    #[inline]
    pub fn push_event_slot(&mut self, slot: &EvtSlot) -> Result<(), PushError> {
        self.evt.push(slot)
    }

    /// Free receive-queue slots.
    ///
    /// # Errors
    /// If the guest corrupted the queue's indices.
    #[inline]
    pub fn recvq_space(&mut self) -> Result<u32, RingError> {
        self.recvq.free_slots()
    }

    /// Whether at least `n` receive-queue slots are free (see
    /// [`event_room`](Self::event_room)).
    ///
    /// # Errors
    /// If the guest corrupted the queue's indices.
    #[inline]
    pub fn recvq_room(&mut self, n: u32) -> Result<bool, RingError> {
        self.recvq.has_room(n)
    }

    /// Claim the next receive-queue slot; fill it with
    /// [`recvq_write`](Self::recvq_write) or
    /// [`copy_sendq_to`](Self::copy_sendq_to) and name it in an event.
    ///
    /// # Errors
    /// [`PushError::Full`] when the guest has not released enough slots.
    #[inline]
    pub fn recvq_claim(&mut self) -> Result<u16, PushError> {
        let pos = self.recvq.claim()?;
        Ok(pos as u16)
    }

    /// Write a payload into a claimed receive-queue slot.
    ///
    /// # Errors
    /// If the slot or length is out of range.
    pub fn recvq_write(&self, slot: u16, data: &[u8]) -> Result<(), ChannelError> {
        let off = slot_offset(self.recvq_area, slot.into(), 0, data.len())?;
        Ok(self.region.write_at(off, data)?)
    }

    /// Number of send-queue slots.
    pub fn sendq_slots(&self) -> u32 {
        self.sendq_area.1
    }

    /// Read `out.len()` bytes of send-queue slot `slot` (for the NIC path).
    ///
    /// # Errors
    /// If the slot or length is out of range.
    pub fn sendq_read(&self, slot: u16, out: &mut [u8]) -> Result<(), ChannelError> {
        let off = slot_offset(self.sendq_area, slot.into(), 0, out.len())?;
        Ok(self.region.read_at(off, out)?)
    }

    /// Copy `len` bytes of our send-queue slot straight into receive-queue
    /// slot `dst_slot` of `dst` (possibly `self`): the intra-node medium
    /// path, one copy.
    ///
    /// # Errors
    /// If a slot or the length is out of range.
    pub fn copy_sendq_to<S: SharedMem>(
        &self,
        slot: u16,
        len: usize,
        dst: &HostChannel<S>,
        dst_slot: u16,
    ) -> Result<(), ChannelError> {
        let src_off = slot_offset(self.sendq_area, slot.into(), 0, len)?;
        let dst_off = slot_offset(dst.recvq_area, dst_slot.into(), 0, len)?;
        Ok(crate::platform::copy_shared(
            &self.region,
            src_off,
            &dst.region,
            dst_off,
            len,
        )?)
    }

    /// Make posted events and written receive-queue slots visible; true if
    /// the guest asked to be woken.
    #[inline]
    pub fn publish(&mut self) -> Notify {
        // Receive-queue slots first: an event must never name a slot the
        // guest cannot see yet (the event ring's Release store orders both).
        let _ = self.recvq.publish();
        self.evt.publish()
    }
}

/// The guest's end of a channel.
pub struct GuestChannel<R> {
    region: R,
    cmd: Producer<CmdSlot, R>,
    evt: Consumer<EvtSlot, R>,
    recvq: Consumer<QueueSlot, R>,
    sendq_area: (usize, u32),
    recvq_area: (usize, u32),
}

impl<R: SharedMem + Clone> GuestChannel<R> {
    /// Bytes of the region a channel with these sizes needs.
    ///
    /// # Errors
    /// As [`layout`].
    pub fn region_len(sizes: &ChannelSizes) -> Result<usize, ChannelError> {
        Ok(layout(sizes)?.region_len())
    }

    /// Lay out a fresh channel in `region` (zeroed, header written) and take
    /// the guest's ends.
    ///
    /// # Errors
    /// If the sizes are invalid or the region too small.
    pub fn create(region: R, sizes: &ChannelSizes) -> Result<Self, ChannelError> {
        let l = layout(sizes)?;
        let page = ControlPage::init(region.clone(), &l, Side::Frontend)?;
        Ok(GuestChannel {
            cmd: page.producer(RING_CMD)?,
            evt: page.consumer(RING_EVT)?,
            recvq: page.consumer(RING_RECVQ)?,
            sendq_area: area(&l, RING_SENDQ),
            recvq_area: area(&l, RING_RECVQ),
            region,
        })
    }

    /// Write a command into the next slot (visible at the next
    /// [`publish_commands`](Self::publish_commands)).
    ///
    /// # Errors
    /// [`PushError::Full`] when the backend is behind; a message error if
    /// the command does not fit its slot.
    pub fn push_command(&mut self, cmd: &Command<'_>) -> Result<(), ChannelError> {
        let mut slot = CmdSlot::default();
        cmd.emit(&mut slot)?;
        self.cmd.push(&slot).map_err(|e| match e {
            PushError::Full => ChannelError::Full,
            PushError::Ring(r) => ChannelError::Ring(r),
        })
    }

    /// Write an already-encoded command slot (visible at the next
    /// [`publish_commands`](Self::publish_commands)).
    ///
    /// # Errors
    /// [`ChannelError::Full`] when the backend is behind.
    pub fn push_slot(&mut self, slot: &CmdSlot) -> Result<(), ChannelError> {
        self.cmd.push(slot).map_err(|e| match e {
            PushError::Full => ChannelError::Full,
            PushError::Ring(r) => ChannelError::Ring(r),
        })
    }

    /// Free command slots.
    ///
    /// # Errors
    /// If the backend corrupted the ring's indices.
    pub fn command_space(&mut self) -> Result<u32, RingError> {
        self.cmd.free_slots()
    }

    /// Make pushed commands visible; true if the backend must be notified.
    #[inline]
    pub fn publish_commands(&mut self) -> Notify {
        self.cmd.publish()
    }

    /// Whether an event is ready to pop (no copy).
    ///
    /// # Errors
    /// If the backend corrupted the ring's indices.
    #[inline]
    pub fn event_ready(&mut self) -> Result<bool, RingError> {
        self.evt.ready()
    }

    /// Copy the next event out of the ring (not yet released).
    ///
    /// # Errors
    /// If the backend corrupted the ring's indices.
    #[inline]
    pub fn pop_event(&mut self) -> Result<Option<EvtSlot>, RingError> {
        self.evt.pop()
    }

    /// Hand consumed event slots (and released receive-queue slots) back to
    /// the backend. Returns whether the backend asked to be told.
    #[inline]
    pub fn release_events(&mut self) -> Notify {
        let a = self.recvq.release();
        let b = self.evt.release();
        if a.is_needed() || b.is_needed() {
            Notify::Yes
        } else {
            Notify::No
        }
    }

    /// Arm the event ring before sleeping: true if the guest may sleep.
    ///
    /// # Errors
    /// If the backend corrupted the ring's indices.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, RingError> {
        self.evt.prepare_to_sleep()
    }

    /// Number of send-queue slots.
    pub fn sendq_slots(&self) -> u32 {
        self.sendq_area.1
    }

    /// Number of receive-queue slots.
    pub fn recvq_slots(&self) -> u32 {
        self.recvq_area.1
    }

    /// Write a medium fragment's bytes into send-queue slot `slot`.
    ///
    /// # Errors
    /// If the slot or length is out of range.
    pub fn sendq_write(&self, slot: u16, data: &[u8]) -> Result<(), ChannelError> {
        let off = slot_offset(self.sendq_area, slot.into(), 0, data.len())?;
        Ok(self.region.write_at(off, data)?)
    }

    /// Write `data` at offset `at` of send-queue slot `slot`: a fragment
    /// filled piece by piece, straight from the segments of the user's
    /// buffer.
    ///
    /// # Errors
    /// If the slot or range is out of range.
    pub fn sendq_write_at(&self, slot: u16, at: usize, data: &[u8]) -> Result<(), ChannelError> {
        let off = slot_offset(self.sendq_area, slot.into(), at, data.len())?;
        Ok(self.region.write_at(off, data)?)
    }

    /// Copy `out.len()` bytes from offset `off` of receive-queue slot `slot`.
    ///
    /// # Errors
    /// If the slot or range is out of range.
    pub fn recvq_read(&self, slot: u16, off: usize, out: &mut [u8]) -> Result<(), ChannelError> {
        let at = slot_offset(self.recvq_area, slot.into(), off, out.len())?;
        Ok(self.region.read_at(at, out)?)
    }

    /// The receive-queue slot the next small or medium event must name.
    pub fn recvq_next(&self) -> u16 {
        (self.recvq.position() & (self.recvq_area.1 - 1)) as u16
    }

    /// Release the oldest receive-queue slot, which must be `slot` (the one
    /// the event being consumed named). Visible to the backend at the next
    /// [`release_events`](Self::release_events).
    ///
    /// # Errors
    /// [`ChannelError::RecvqOrder`] if the backend named slots out of order,
    /// or a ring error if it published a slot it does not have.
    pub fn recvq_release(&mut self, slot: u16) -> Result<(), ChannelError> {
        let expected = self.recvq_next();
        if slot != expected {
            return Err(ChannelError::RecvqOrder {
                expected: expected.into(),
                got: slot.into(),
            });
        }
        match self.recvq.skip()? {
            Some(_) => Ok(()),
            None => Err(ChannelError::BadSlot(slot.into())),
        }
    }
}
