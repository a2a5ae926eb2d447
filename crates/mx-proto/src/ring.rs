//! Single-producer single-consumer rings in memory shared with an untrusted
//! peer.
//!
//! A ring moves fixed-size plain-old-data slots (`T:` [`Slot`]) one way
//! between two parties that share memory: two processes sharing a memfd
//! mapping, or two VMs sharing Xen grant mappings. The two sides may be
//! built by different compilers, so everything they share has a fixed,
//! documented byte layout: see [`layout`] for the control page (magic,
//! version, features, ring descriptors and the index blocks) and its table.
//!
//! # Shape
//!
//! Each ring has a power-of-two number of slots and four free-running `u32`
//! words in its index block, each on its own 64-byte cache line:
//!
//! | word | written by | meaning |
//! |---|---|---|
//! | `prod` | producer | number of slots ever published |
//! | `prod_event` | consumer | "kick me when `prod` moves past this" |
//! | `cons` | consumer | number of slots ever released back to the producer |
//! | `cons_event` | producer | "kick me when `cons` moves past this" |
//!
//! Slot `i` lives at `i & (size - 1)`. Indices wrap at 2^32; all comparisons
//! are differences computed with wrapping arithmetic, so `prod - cons` is the
//! number of occupied slots even across the wrap. Each side keeps its own
//! cursor privately and only *stores* its shared word; it never trusts a
//! value read back from shared memory for its own position.
//!
//! # Untrusted peer
//!
//! Every time a side reloads the peer's index it checks that the new value
//! lies in the only window the protocol allows (`cons <= prod <= cons +
//! size`, and the peer's index never moves backwards). A violation yields
//! [`RingError::Corrupt`], which stays latched (every later push, pop or
//! check of that ring end fails with it): the caller should declare the
//! peer broken and tear the channel down. Nothing the peer writes can
//! make this side panic, read or write outside the slot area, or hand out a
//! reference into shared memory: [`Consumer::pop`] copies the slot into a
//! local `T` (validate that copy, never the shared bytes: the XSA-155
//! double-fetch lesson), and [`Producer::push`] stores a local `T` whole and
//! never reads the slot back.
//!
//! All shared memory is accessed through atomic operations (slots as
//! relaxed `AtomicU64` words, indices as `AtomicU32`), so a peer scribbling
//! concurrently is at worst a protocol error, never a data race in the
//! Rust sense. Slot types must therefore be a non-zero multiple of 8 bytes;
//! this is checked at compile time.
//!
//! # Memory ordering
//!
//! * Producer: store the slot words (relaxed), then store `prod` with
//!   **Release**. Consumer: load `prod` with **Acquire**, then load the slot
//!   words (relaxed). The release/acquire pair makes the slot stores happen
//!   before the slot loads, so the consumer sees the complete slot.
//! * Consumer: load the slot words, then store `cons` with **Release**.
//!   Producer: load `cons` with **Acquire** before overwriting. This orders
//!   the consumer's reads before the producer's next writes to the same
//!   slot, so a slot is never overwritten while it is still being copied.
//! * Notification (see below) is a store-then-load on each side (Dekker's
//!   pattern); release/acquire cannot order a store before a later load, so
//!   both sides put a **SeqCst fence** between them.
//!
//! # Notification (Xen `io/ring.h` event indices)
//!
//! Producers batch: [`Producer::push`] many times, then
//! [`Producer::publish`] once; `publish` stores `prod`, fences, and returns
//! [`Notify::Yes`] only if the consumer's `prod_event` lies in the range of
//! indices just published, i.e. the consumer asked to be woken for one of
//! them. A consumer that is busy polling never moves `prod_event`, so it is
//! never kicked.
//!
//! Before blocking, a consumer calls [`Consumer::prepare_to_sleep`]: it sets
//! `prod_event = cons + 1`, fences, and looks at `prod` once more. If
//! something arrived it must not sleep; otherwise any later `publish` is
//! guaranteed to see the new `prod_event` and notify (the lost-wakeup
//! guard: with SeqCst fences on both sides, at least one side sees the
//! other's store). The same protocol runs the other way for a producer
//! that waits for space ([`Producer::prepare_to_wait_for_space`],
//! `cons_event`, and the notification returned by [`Consumer::release`]).
//!
//! Spurious notifications are harmless (a woken side re-checks); missing
//! ones are the bug this protocol rules out. A peer that writes garbage into
//! its event word only changes whether it is itself woken.
//!
//! # Model checking
//!
//! The engine is written against a small atomics shim (`ring::sync`) that
//! switches to [loom](https://docs.rs/loom) under `--cfg loom`. The loom
//! tests (data visibility through a 2-slot ring with wrap-around, and the
//! lost-wakeup guard in both directions) run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target-loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p mx-proto --release --lib ring::loom
//! ```
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mx_proto::ring::{ControlPage, Direction, HeapRegion, Layout, Side, Notify};
//!
//! let mut layout = Layout::new();
//! let cmd = layout.add_ring(Direction::FrontToBack, 64, 256).unwrap();
//! let region = Arc::new(HeapRegion::new(layout.region_len()));
//!
//! let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
//! let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
//! let mut tx = front.producer::<[u64; 8]>(cmd).unwrap();
//! let mut rx = back.consumer::<[u64; 8]>(cmd).unwrap();
//!
//! // The backend has nothing to do: it arms its event and may sleep.
//! assert_eq!(rx.prepare_to_sleep(), Ok(true));
//! tx.push(&[7; 8]).unwrap();
//! tx.push(&[8; 8]).unwrap();
//! assert_eq!(tx.publish(), Notify::Yes); // one kick for the batch
//! assert_eq!(rx.pop(), Ok(Some([7; 8])));
//! assert_eq!(rx.pop(), Ok(Some([8; 8])));
//! assert_eq!(rx.pop(), Ok(None));
//! rx.release();
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use self::sync::{fence, AtomicU32, AtomicU64, Ordering};

pub mod layout;
mod region;
mod sync;

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub use self::layout::{
    ControlPage, Direction, Features, Layout, LayoutError, RingSpec, Side, CONTROL_PAGE_SIZE,
    MAX_RINGS,
};
pub use self::region::{HeapRegion, SharedRegion, REGION_ALIGN};

/// Largest slot count a ring may have (2^31), so that `prod - cons` can
/// always tell "full" from "corrupt".
pub const MAX_SLOTS: u32 = 1 << 31;

/// A plain-old-data type that can travel in a ring slot.
///
/// Any byte pattern is a valid value (`FromBytes`), every value is plain
/// bytes (`IntoBytes`, `Immutable`), and its size is known. Blanket
/// implemented; additionally `size_of::<T>()` must be a non-zero multiple
/// of 8, which the ring constructors check at compile time.
///
/// ```compile_fail
/// # use core::ptr::NonNull;
/// # use mx_proto::ring::{HeapRegion, Producer, SharedRegion};
/// // 12 bytes: not a whole number of 8-byte words, rejected at build time.
/// let region = HeapRegion::new(8192);
/// let base = NonNull::new(region.as_ptr()).unwrap();
/// // SAFETY: (never runs) the block and 4 slots are inside `region`.
/// let _tx = unsafe { Producer::<[u8; 12]>::from_raw(base, base.add(4096), 4) };
/// ```
pub trait Slot: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {}
impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Sized> Slot for T {}

/// Compile-time facts about a slot type.
struct SlotShape<T>(PhantomData<T>);

impl<T> SlotShape<T> {
    /// Number of 8-byte words in one slot; evaluating it rejects slot types
    /// that are empty or not a multiple of 8 bytes.
    const WORDS: usize = {
        assert!(
            size_of::<T>() != 0 && size_of::<T>().is_multiple_of(8),
            "ring slot types must be a non-zero multiple of 8 bytes"
        );
        size_of::<T>() / 8
    };
}

/// Whether the peer must be sent a notification (an event-channel kick,
/// an eventfd write, a futex wake).
#[must_use = "a required notification that is not sent is a lost wakeup"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// The peer is not waiting for what was just made visible.
    No,
    /// The peer asked to be woken for what was just made visible.
    Yes,
}

impl Notify {
    /// `true` for [`Notify::Yes`].
    #[inline]
    pub fn is_needed(self) -> bool {
        self == Notify::Yes
    }

    /// ring.h's test: notify iff the peer's event index `event` lies in
    /// `(old, new]`, computed in wrapping arithmetic.
    #[inline]
    fn crossed(old: u32, new: u32, event: u32) -> Notify {
        if new.wrapping_sub(event) < new.wrapping_sub(old) {
            Notify::Yes
        } else {
            Notify::No
        }
    }
}

impl From<Notify> for bool {
    fn from(n: Notify) -> bool {
        n.is_needed()
    }
}

/// Which of the peer's indices broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerIndex {
    /// The producer index, as seen by a consumer.
    Prod,
    /// The consumer index, as seen by a producer.
    Cons,
}

/// An error that means the peer is broken.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's index was outside the window `[low, high]` (wrapping) it
    /// may legally occupy: it moved backwards, claimed more than the ring
    /// holds, or claimed to have consumed what was never published. The
    /// ring stays in this state; declare the peer broken.
    Corrupt {
        /// The index that was read.
        index: PeerIndex,
        /// The value read from shared memory.
        observed: u32,
        /// Lowest legal value.
        low: u32,
        /// Highest legal value (wrapping: the window may straddle 2^32).
        high: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Corrupt {
                index,
                observed,
                low,
                high,
            } => write!(
                f,
                "peer corrupted the ring: {index:?} index {observed:#x} outside [{low:#x}, {high:#x}]"
            ),
        }
    }
}

impl std::error::Error for RingError {}

/// Why a [`Producer::push`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Every slot holds an item the consumer has not released yet.
    Full,
    /// The peer broke the protocol (see [`RingError`]).
    Ring(RingError),
}

impl From<RingError> for PushError {
    fn from(e: RingError) -> Self {
        PushError::Ring(e)
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("ring full"),
            PushError::Ring(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PushError {}

/// One little-endian `u32` index word in shared memory.
#[derive(Clone, Copy)]
struct IndexWord(NonNull<AtomicU32>);

impl IndexWord {
    #[inline]
    fn load(self, order: Ordering) -> u32 {
        // SAFETY: the ring constructors' contracts keep every index word
        // valid and aligned while the ring exists; shared access to an
        // atomic is always allowed.
        u32::from_le(unsafe { self.0.as_ref() }.load(order))
    }

    #[inline]
    fn store(self, value: u32, order: Ordering) {
        // SAFETY: as in `load`.
        unsafe { self.0.as_ref() }.store(value.to_le(), order);
    }
}

/// The four words of one ring's index block.
#[derive(Clone, Copy)]
struct Indices {
    prod: IndexWord,
    prod_event: IndexWord,
    cons: IndexWord,
    cons_event: IndexWord,
}

impl Indices {
    /// Byte offsets of the words inside an index block (one cache line each).
    const PROD: usize = 0x00;
    const PROD_EVENT: usize = 0x40;
    const CONS: usize = 0x80;
    const CONS_EVENT: usize = 0xc0;

    /// # Safety
    ///
    /// `block` must be 4-byte aligned and valid for atomic access to
    /// `INDEX_BLOCK_SIZE` bytes for as long as the result is used.
    unsafe fn from_block(block: NonNull<u8>) -> Self {
        if cfg!(loom) {
            panic!("raw shared memory cannot be model-checked: loom atomics are not plain words");
        }
        // SAFETY: every offset is inside the block the caller vouches for.
        let word = |off: usize| IndexWord(unsafe { block.add(off) }.cast::<AtomicU32>());
        Indices {
            prod: word(Self::PROD),
            prod_event: word(Self::PROD_EVENT),
            cons: word(Self::CONS),
            cons_event: word(Self::CONS_EVENT),
        }
    }
}

/// Size in bytes of one ring's index block: four 64-byte cache lines.
pub const INDEX_BLOCK_SIZE: usize = 256;

/// The slot array of one ring, seen as 8-byte atomic words.
#[derive(Clone, Copy)]
struct SlotArea {
    base: NonNull<AtomicU64>,
    mask: u32,
}

impl SlotArea {
    /// Copies slot `index & mask` out of shared memory into a local `T`.
    fn read<T: Slot>(&self, index: u32) -> T {
        let words = SlotShape::<T>::WORDS;
        let first = (index & self.mask) as usize * words;
        let mut out = T::new_zeroed();
        for (i, chunk) in out.as_mut_bytes().chunks_exact_mut(8).enumerate() {
            // SAFETY: `first + i < (mask + 1) * words`, the number of words
            // in the area the constructor's contract guarantees.
            let word = unsafe { self.base.add(first + i).as_ref() }.load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// Copies words `from..to` of slot `index & mask` into the same words
    /// of `out` (`to` at most the slot's words).
    fn read_words<T: Slot>(&self, index: u32, out: &mut T, from: usize, to: usize) {
        let words = SlotShape::<T>::WORDS;
        let first = (index & self.mask) as usize * words;
        let to = to.min(words);
        let bytes = out.as_mut_bytes();
        for i in from..to {
            // SAFETY: `first + i < (mask + 1) * words`, as in `read`.
            let word = unsafe { self.base.add(first + i).as_ref() }.load(Ordering::Relaxed);
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_ne_bytes());
        }
    }

    /// Stores a local `T` whole into slot `index & mask`.
    fn write<T: Slot>(&self, index: u32, value: &T) {
        self.write_words(index, value, SlotShape::<T>::WORDS);
    }

    /// Stores the first `n` words of a local `T` into slot `index & mask`.
    fn write_words<T: Slot>(&self, index: u32, value: &T, n: usize) {
        let words = SlotShape::<T>::WORDS;
        let first = (index & self.mask) as usize * words;
        for (i, chunk) in value.as_bytes().chunks_exact(8).take(n).enumerate() {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
            // SAFETY: as in `read`.
            unsafe { self.base.add(first + i).as_ref() }.store(word, Ordering::Relaxed);
        }
    }
}

/// Checks that `count` is a usable slot count.
fn check_slot_count(count: u32) {
    assert!(
        count.is_power_of_two() && count <= MAX_SLOTS,
        "slot count {count} is not a power of two <= 2^31"
    );
}

/// The producing end of a ring.
///
/// Write with [`push`](Self::push) / [`push_batch`](Self::push_batch), make
/// the items visible with [`publish`](Self::publish) and send the
/// notification it asks for. When the ring is full and you want to block,
/// call [`prepare_to_wait_for_space`](Self::prepare_to_wait_for_space).
///
/// `K` keeps the shared memory alive (the region handle for rings made by
/// [`ControlPage`], `()` for [`from_raw`](Self::from_raw)).
pub struct Producer<T, K = ()> {
    idx: Indices,
    slots: SlotArea,
    size: u32,
    /// Next index to write (private cursor).
    prod: u32,
    /// Last value stored to the shared `prod`.
    published: u32,
    /// Last validated value of the consumer's `cons`.
    cached_cons: u32,
    broken: Option<RingError>,
    _keep: K,
    _slot: PhantomData<fn(&T)>,
}

// SAFETY: the producer owns no thread-bound state; it reaches shared memory
// only through atomics, and `K` (which keeps that memory alive) is `Send`.
unsafe impl<T: Send, K: Send> Send for Producer<T, K> {}

/// The consuming end of a ring.
///
/// Read with [`pop`](Self::pop) / [`pop_batch`](Self::pop_batch), hand the
/// slots back with [`release`](Self::release) (once per batch) and send the
/// notification it asks for. Before blocking, call
/// [`prepare_to_sleep`](Self::prepare_to_sleep).
pub struct Consumer<T, K = ()> {
    idx: Indices,
    slots: SlotArea,
    size: u32,
    /// Next index to read (private cursor).
    cons: u32,
    /// Last value stored to the shared `cons`.
    released: u32,
    /// Last validated value of the producer's `prod`.
    cached_prod: u32,
    broken: Option<RingError>,
    _keep: K,
    _slot: PhantomData<fn() -> T>,
}

// SAFETY: as for `Producer`.
unsafe impl<T: Send, K: Send> Send for Consumer<T, K> {}

impl<T: Slot> Producer<T> {
    /// Builds a producer over raw shared memory.
    ///
    /// `index_block` is the ring's 256-byte index block (see [`layout`]),
    /// `slots` the first of `slot_count` slots of `size_of::<T>()` bytes.
    /// The producer starts at the `prod` value currently in the block.
    ///
    /// # Safety
    ///
    /// For as long as the producer exists: `index_block` is 64-byte aligned
    /// and valid for atomic reads and writes of [`INDEX_BLOCK_SIZE`] bytes;
    /// `slots` is 8-byte aligned and valid for atomic reads and writes of
    /// `slot_count * size_of::<T>()` bytes; code in this process accesses
    /// that memory only atomically (another process or VM may do anything).
    /// There is only one producer for the ring in this process.
    ///
    /// # Panics
    ///
    /// If `slot_count` is not a power of two no greater than [`MAX_SLOTS`].
    pub unsafe fn from_raw(index_block: NonNull<u8>, slots: NonNull<u8>, slot_count: u32) -> Self {
        check_slot_count(slot_count);
        // SAFETY: forwarded from this function's contract.
        let idx = unsafe { Indices::from_block(index_block) };
        let area = SlotArea {
            base: slots.cast(),
            mask: slot_count - 1,
        };
        Self::from_parts(idx, area, ())
    }
}

impl<T: Slot, K> Producer<T, K> {
    /// Assembles a producer; the parts must satisfy `from_raw`'s contract.
    fn from_parts(idx: Indices, slots: SlotArea, keep: K) -> Self {
        let _ = SlotShape::<T>::WORDS;
        let size = slots.mask.wrapping_add(1);
        // Our own index: nobody else should have written it, and whatever
        // value is there, every later check is relative to it.
        let prod = idx.prod.load(Ordering::Relaxed);
        Producer {
            idx,
            slots,
            size,
            prod,
            published: prod,
            // Assume the ring is full until the first refresh validates the
            // consumer's real index: the conservative guess.
            cached_cons: prod.wrapping_sub(size),
            broken: None,
            _keep: keep,
            _slot: PhantomData,
        }
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.size
    }

    /// Items pushed but not yet published.
    pub fn unpublished(&self) -> u32 {
        self.prod.wrapping_sub(self.published)
    }

    /// The error that broke the ring, if any.
    pub fn error(&self) -> Option<RingError> {
        self.broken
    }

    /// Free slots according to the cached consumer index (no shared access).
    fn free_cached(&self) -> u32 {
        self.size - self.prod.wrapping_sub(self.cached_cons)
    }

    /// Reloads the consumer's index and validates it.
    ///
    /// The consumer can only have released what was published, and never
    /// goes backwards, so the legal window is `[cached_cons, published]`.
    fn refresh(&mut self) -> Result<(), RingError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        // Acquire: pairs with the consumer's Release store of `cons`, so its
        // copies out of the released slots happen before we overwrite them.
        let cons = self.idx.cons.load(Ordering::Acquire);
        if cons.wrapping_sub(self.cached_cons) > self.published.wrapping_sub(self.cached_cons) {
            let e = RingError::Corrupt {
                index: PeerIndex::Cons,
                observed: cons,
                low: self.cached_cons,
                high: self.published,
            };
            self.broken = Some(e);
            return Err(e);
        }
        self.cached_cons = cons;
        Ok(())
    }

    /// Number of free slots, reloading the consumer's index.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the consumer's index is corrupt (now or before).
    pub fn free_slots(&mut self) -> Result<u32, RingError> {
        self.refresh()?;
        Ok(self.free_cached())
    }

    /// Whether at least `n` slots are free. Unlike
    /// [`free_slots`](Self::free_slots) it reloads the consumer's index only
    /// when the cached copy says there are fewer: a room check per message
    /// costs no shared-memory access while the ring has room.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the consumer's index is corrupt (now or before).
    #[inline]
    pub fn has_room(&mut self, n: u32) -> Result<bool, RingError> {
        if self.free_cached() < n || self.broken.is_some() {
            self.refresh()?;
        }
        Ok(self.free_cached() >= n)
    }

    /// Writes `value` into the next slot. It becomes visible to the consumer
    /// at the next [`publish`](Self::publish).
    ///
    /// The consumer's index is reloaded only when the cached copy says the
    /// ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if no slot is free; [`PushError::Ring`] if the
    /// consumer's index is corrupt.
    pub fn push(&mut self, value: &T) -> Result<(), PushError> {
        if self.free_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.free_cached() == 0 {
                return Err(PushError::Full);
            }
        }
        self.slots.write(self.prod, value);
        self.prod = self.prod.wrapping_add(1);
        Ok(())
    }

    /// [`push`](Self::push) of only the first `len` bytes of `value` (rounded
    /// up to 8): for slots whose tail is unused, so that a short message
    /// touches one cache line of shared memory rather than the whole slot.
    /// The consumer reads it with [`Consumer::pop_prefix`].
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn push_prefix(&mut self, value: &T, len: usize) -> Result<(), PushError> {
        if self.free_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.free_cached() == 0 {
                return Err(PushError::Full);
            }
        }
        self.slots.write_words(self.prod, value, len.div_ceil(8));
        self.prod = self.prod.wrapping_add(1);
        Ok(())
    }

    /// Writes as many of `values` as fit, in order, and returns how many.
    /// They become visible at the next [`publish`](Self::publish).
    ///
    /// # Errors
    ///
    /// [`RingError`] if the consumer's index is corrupt (nothing is written).
    pub fn push_batch(&mut self, values: &[T]) -> Result<usize, RingError> {
        if (self.free_cached() as usize) < values.len() || self.broken.is_some() {
            self.refresh()?;
        }
        let n = values.len().min(self.free_cached() as usize);
        for value in &values[..n] {
            self.slots.write(self.prod, value);
            self.prod = self.prod.wrapping_add(1);
        }
        Ok(n)
    }

    /// Makes every pushed item visible to the consumer and says whether the
    /// consumer must be notified (ring.h's
    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    ///
    /// Returns [`Notify::No`] without touching shared memory if nothing was
    /// pushed since the last publish.
    pub fn publish(&mut self) -> Notify {
        let old = self.published;
        let new = self.prod;
        if old == new {
            return Notify::No;
        }
        // Release: the relaxed slot stores above happen before any consumer
        // load that reads this value of `prod` with Acquire.
        self.idx.prod.store(new, Ordering::Release);
        self.published = new;
        // Store `prod`, then load `prod_event`: a store followed by a load of
        // another location, which only SeqCst fences keep in order. The
        // consumer does the mirror image (store `prod_event`, SeqCst fence,
        // load `prod`) in `prepare_to_sleep`. Whichever fence comes first in
        // the single total order of SeqCst fences, the side after it sees
        // the other's store: either the consumer sees the new `prod` and
        // does not sleep, or we see its `prod_event` and notify. Without the
        // fence both loads could return stale values and the consumer would
        // sleep on a non-empty ring (a lost wakeup).
        fence(Ordering::SeqCst);
        // Relaxed: only the value matters, no data is read on its strength.
        let event = self.idx.prod_event.load(Ordering::Relaxed);
        Notify::crossed(old, new, event)
    }

    /// Call when the ring is full and you want to block until space frees
    /// up. Asks the consumer to notify when it releases a slot, then checks
    /// again for space (the lost-wakeup guard). Returns `Ok(true)` if you
    /// may block until notified, `Ok(false)` if there is space already.
    ///
    /// [`publish`](Self::publish) first (and send its notification):
    /// blocking with unpublished items can deadlock with a consumer that is
    /// waiting for them.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the consumer's index is corrupt.
    pub fn prepare_to_wait_for_space(&mut self) -> Result<bool, RingError> {
        debug_assert_eq!(
            self.prod, self.published,
            "publish before waiting for space"
        );
        if self.free_cached() > 0 && self.broken.is_none() {
            return Ok(false);
        }
        self.refresh()?;
        if self.free_cached() > 0 {
            return Ok(false);
        }
        // One slot frees up when `cons` reaches `prod - size + 1`.
        let want = self.prod.wrapping_sub(self.size).wrapping_add(1);
        self.idx.cons_event.store(want, Ordering::Relaxed);
        // Store `cons_event`, then load `cons`: the mirror image of the
        // consumer's `release` (store `cons`, SeqCst fence, load
        // `cons_event`); see `publish` for why the fence is required.
        fence(Ordering::SeqCst);
        self.refresh()?;
        Ok(self.free_cached() == 0)
    }
}

impl<T: Slot> Consumer<T> {
    /// Builds a consumer over raw shared memory. It starts at the `cons`
    /// value currently in the block.
    ///
    /// # Safety
    ///
    /// As for [`Producer::from_raw`], with "only one consumer for the ring
    /// in this process".
    ///
    /// # Panics
    ///
    /// If `slot_count` is not a power of two no greater than [`MAX_SLOTS`].
    pub unsafe fn from_raw(index_block: NonNull<u8>, slots: NonNull<u8>, slot_count: u32) -> Self {
        check_slot_count(slot_count);
        // SAFETY: forwarded from this function's contract.
        let idx = unsafe { Indices::from_block(index_block) };
        let area = SlotArea {
            base: slots.cast(),
            mask: slot_count - 1,
        };
        Self::from_parts(idx, area, ())
    }
}

impl<T: Slot, K> Consumer<T, K> {
    /// Assembles a consumer; the parts must satisfy `from_raw`'s contract.
    fn from_parts(idx: Indices, slots: SlotArea, keep: K) -> Self {
        let _ = SlotShape::<T>::WORDS;
        let size = slots.mask.wrapping_add(1);
        let cons = idx.cons.load(Ordering::Relaxed);
        Consumer {
            idx,
            slots,
            size,
            cons,
            released: cons,
            // "Empty" until the first refresh: the conservative guess.
            cached_prod: cons,
            broken: None,
            _keep: keep,
            _slot: PhantomData,
        }
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.size
    }

    /// Items popped but not yet released to the producer.
    pub fn unreleased(&self) -> u32 {
        self.cons.wrapping_sub(self.released)
    }

    /// The error that broke the ring, if any.
    pub fn error(&self) -> Option<RingError> {
        self.broken
    }

    /// Items available according to the cached producer index.
    fn available_cached(&self) -> u32 {
        self.cached_prod.wrapping_sub(self.cons)
    }

    /// Reloads the producer's index and validates it.
    ///
    /// The producer can fill at most up to what we released plus the ring
    /// size, and never goes backwards, so the legal window is
    /// `[cached_prod, released + size]`.
    fn refresh(&mut self) -> Result<(), RingError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        // Acquire: pairs with the producer's Release store of `prod`, so its
        // slot stores happen before our slot loads.
        let prod = self.idx.prod.load(Ordering::Acquire);
        let high = self.released.wrapping_add(self.size);
        if prod.wrapping_sub(self.cached_prod) > high.wrapping_sub(self.cached_prod) {
            let e = RingError::Corrupt {
                index: PeerIndex::Prod,
                observed: prod,
                low: self.cached_prod,
                high,
            };
            self.broken = Some(e);
            return Err(e);
        }
        self.cached_prod = prod;
        Ok(())
    }

    /// Number of items ready to pop, reloading the producer's index.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt (now or before).
    pub fn available(&mut self) -> Result<u32, RingError> {
        self.refresh()?;
        Ok(self.available_cached())
    }

    /// Whether an item is ready to pop: the cheap test a poll loop makes
    /// before it pops (no copy, and the producer's index is reloaded only
    /// when the cached copy says the ring is empty).
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt (now or before).
    #[inline]
    pub fn ready(&mut self) -> Result<bool, RingError> {
        if self.available_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
        }
        Ok(self.available_cached() != 0)
    }

    /// Copies the next item out of the ring, or `Ok(None)` if it is empty.
    ///
    /// The slot is not handed back to the producer until
    /// [`release`](Self::release). The producer's index is reloaded only
    /// when the cached copy says the ring is empty.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt.
    pub fn pop(&mut self) -> Result<Option<T>, RingError> {
        if self.available_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.available_cached() == 0 {
                return Ok(None);
            }
        }
        let value = self.slots.read(self.cons);
        self.cons = self.cons.wrapping_add(1);
        Ok(Some(value))
    }

    /// [`pop`](Self::pop) of a slot written with
    /// [`Producer::push_prefix`]: copies the slot's first 64 bytes, asks
    /// `used` how many bytes of the slot its content says it uses, and
    /// copies only those; the rest of the returned value is zero. `used`
    /// sees a private copy, so a producer that lies can only make us copy
    /// more or less of its own slot.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt.
    pub fn pop_prefix(
        &mut self,
        used: impl FnOnce(&[u8]) -> usize,
    ) -> Result<Option<T>, RingError> {
        let mut value = T::new_zeroed();
        Ok(self.pop_prefix_into(&mut value, used)?.then_some(value))
    }

    /// [`pop_prefix`](Self::pop_prefix) into `out` (zeroed first, then the
    /// slot's used prefix copied in): true if an item was popped, and `out`
    /// is untouched if not. A poll loop keeps one `out` and moves no slot
    /// around by value.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt.
    pub fn pop_prefix_into(
        &mut self,
        out: &mut T,
        used: impl FnOnce(&[u8]) -> usize,
    ) -> Result<bool, RingError> {
        if self.available_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.available_cached() == 0 {
                return Ok(false);
            }
        }
        const HEAD_WORDS: usize = 8;
        out.as_mut_bytes().fill(0);
        self.slots.read_words(self.cons, out, 0, HEAD_WORDS);
        let words = used(out.as_bytes()).div_ceil(8);
        if words > HEAD_WORDS {
            self.slots.read_words(self.cons, out, HEAD_WORDS, words);
        }
        self.cons = self.cons.wrapping_add(1);
        Ok(true)
    }

    /// Copies up to `out.len()` items out of the ring into `out`, in order,
    /// and returns how many.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt (nothing is read).
    pub fn pop_batch(&mut self, out: &mut [T]) -> Result<usize, RingError> {
        if (self.available_cached() as usize) < out.len() || self.broken.is_some() {
            self.refresh()?;
        }
        let n = out.len().min(self.available_cached() as usize);
        for slot in &mut out[..n] {
            *slot = self.slots.read(self.cons);
            self.cons = self.cons.wrapping_add(1);
        }
        Ok(n)
    }

    /// Hands every popped slot back to the producer and says whether the
    /// producer must be notified (it is waiting for space that this
    /// release provides).
    ///
    /// Call once per batch of pops. Returns [`Notify::No`] without touching
    /// shared memory if nothing was popped since the last release.
    pub fn release(&mut self) -> Notify {
        let old = self.released;
        let new = self.cons;
        if old == new {
            return Notify::No;
        }
        // Release: our relaxed slot loads happen before any producer load
        // that reads this `cons` with Acquire, so it cannot overwrite a slot
        // we are still copying.
        self.idx.cons.store(new, Ordering::Release);
        self.released = new;
        // Store `cons`, then load `cons_event`: the mirror image of
        // `Producer::prepare_to_wait_for_space`; see `Producer::publish`
        // for why this SeqCst fence is what prevents a lost wakeup.
        fence(Ordering::SeqCst);
        let event = self.idx.cons_event.load(Ordering::Relaxed);
        Notify::crossed(old, new, event)
    }

    /// Call when the ring looks empty and you want to block. Asks the
    /// producer to notify on its next publish (`prod_event = cons + 1`),
    /// then checks once more for items (the lost-wakeup guard). Returns
    /// `Ok(true)` if you may block until notified, `Ok(false)` if items are
    /// waiting.
    ///
    /// [`release`](Self::release) first (and send its notification): a
    /// producer waiting for space you have not released would never wake.
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt.
    pub fn prepare_to_sleep(&mut self) -> Result<bool, RingError> {
        debug_assert_eq!(self.cons, self.released, "release before sleeping");
        if self.available_cached() > 0 && self.broken.is_none() {
            return Ok(false);
        }
        self.refresh()?;
        if self.available_cached() > 0 {
            return Ok(false);
        }
        self.idx
            .prod_event
            .store(self.cons.wrapping_add(1), Ordering::Relaxed);
        // Store `prod_event`, then load `prod`: the mirror image of
        // `Producer::publish`; see there for why this SeqCst fence is what
        // prevents a lost wakeup.
        fence(Ordering::SeqCst);
        self.refresh()?;
        Ok(self.available_cached() == 0)
    }
}

impl<T, K> fmt::Debug for Producer<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("size", &self.size)
            .field("prod", &self.prod)
            .field("published", &self.published)
            .field("cached_cons", &self.cached_cons)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<T, K> fmt::Debug for Consumer<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("size", &self.size)
            .field("cons", &self.cons)
            .field("released", &self.released)
            .field("cached_prod", &self.cached_prod)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// In-place use of a ring's slots, for queues whose payload is written and
/// read where it lies (the channel's receive queue: 8 KiB slots that would
/// otherwise be copied through the stack). The indices and their checks
/// are the ring's; the caller moves the bytes with the region's own
/// bounds-checked copies.
impl<T: Slot, K> Producer<T, K> {
    /// Reserves the next slot without writing it and returns its position
    /// (`0..slot_count`). Fill the slot before [`publish`](Self::publish).
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] if no slot is free; [`PushError::Ring`] if the
    /// consumer's index is corrupt.
    pub fn claim(&mut self) -> Result<u32, PushError> {
        if self.free_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.free_cached() == 0 {
                return Err(PushError::Full);
            }
        }
        let pos = self.prod & (self.size - 1);
        self.prod = self.prod.wrapping_add(1);
        Ok(pos)
    }
}

impl<T: Slot, K> Consumer<T, K> {
    /// Consumes the next item without copying it and returns its slot
    /// position (`0..slot_count`), or `Ok(None)` if the ring is empty.
    /// Read the slot before [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// [`RingError`] if the producer's index is corrupt.
    pub fn skip(&mut self) -> Result<Option<u32>, RingError> {
        if self.available_cached() == 0 || self.broken.is_some() {
            self.refresh()?;
            if self.available_cached() == 0 {
                return Ok(None);
            }
        }
        let pos = self.cons & (self.size - 1);
        self.cons = self.cons.wrapping_add(1);
        Ok(Some(pos))
    }

    /// The free-running index of the next item to consume.
    pub fn position(&self) -> u32 {
        self.cons
    }
}
