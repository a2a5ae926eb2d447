//! The backend's network interface seam: raw MXoE frames in and out.
//!
//! Implementations: [`af_packet`] (our AF_PACKET layer: a socket bound to
//! EtherType 0x86DF on one interface or bridge, a `TPACKET_V2` receive
//! ring by default, `TPACKET_V3` as an option ([`af_packet::RingVersion`]),
//! batched sends) and [`sim`] (an in-memory wire between backends in one
//! process, with seeded loss, duplication and reordering, for tests). AF_XDP
//! can follow behind the same trait.
//!
//! Frames are whole Ethernet frames without FCS (what `mxoe_wire::decode`
//! takes and `mxoe_wire::emit` produces). Sends are queued and leave at the
//! next [`Nic::flush`] (one system call for a batch); a payload may be read
//! straight from guest-shared memory ([`Payload::Shared`]) so that medium
//! fragments leave without a copy into a backend buffer.

use mx_proto::platform::SharedMem;
use std::io;
use std::os::fd::BorrowedFd;

pub mod af_packet;
pub mod sim;
mod sys;

/// The payload part of a frame being sent.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// No payload.
    None,
    /// Bytes the backend owns.
    Bytes(&'a [u8]),
    /// `len` bytes at `offset` of guest-shared memory (a send-queue slot).
    /// The implementation copies them out (or lets the kernel read them)
    /// before [`Nic::send`] returns or at the latest before
    /// [`Nic::flush`] returns; the range has been bounds-checked by the
    /// caller and is checked again by the implementation.
    Shared {
        /// The mapping.
        mem: &'a dyn SharedMem,
        /// Offset in the mapping.
        offset: usize,
        /// Length.
        len: usize,
    },
}

impl Payload<'_> {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::None => 0,
            Payload::Bytes(b) => b.len(),
            Payload::Shared { len, .. } => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters every NIC keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames handed to the kernel (or the simulated wire).
    pub tx_frames: u64,
    /// Frames received and handed to the backend.
    pub rx_frames: u64,
    /// Frames the kernel reported dropped on our receive ring.
    pub rx_kernel_drops: u64,
    /// Sends that failed (ring or socket buffer full after retries).
    pub tx_errors: u64,
}

/// A network interface carrying MXoE frames.
pub trait Nic: Send {
    /// The interface's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The interface's MTU (the largest frame payload after the 14-byte
    /// Ethernet header).
    fn mtu(&self) -> u32;

    /// A descriptor that becomes readable when frames arrive, for the
    /// backend's poller (`None` when the implementation has none).
    fn poll_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Hand up to `max` received frames, in arrival order, to `f`, without
    /// blocking; returns how many. Each slice is valid only during its call.
    ///
    /// # Errors
    /// An OS error on the socket.
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize>;

    /// Queue one frame: `header` (Ethernet head plus MXoE header) followed
    /// by `payload`, zero-padded to 60 bytes. Leaves at the next
    /// [`flush`](Self::flush) or when the batch is full.
    ///
    /// # Errors
    /// `InvalidInput` if the frame exceeds the MTU or a shared range is out
    /// of bounds; an OS error if an implicit flush fails.
    fn send(&mut self, header: &[u8], payload: Payload<'_>) -> io::Result<()>;

    /// Send every queued frame (one system call per batch).
    ///
    /// # Errors
    /// An OS error; frames that could not be sent are dropped and counted
    /// (the MX protocol retransmits).
    fn flush(&mut self) -> io::Result<()>;

    /// The NIC's counters.
    fn stats(&self) -> NicStats;
}
