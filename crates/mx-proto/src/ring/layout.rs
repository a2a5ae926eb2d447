//! The control page: the versioned, compiler-independent layout that both
//! sides of a channel agree on.
//!
//! A channel's shared region starts with one 4096-byte control page; the
//! slot areas of its rings follow in later pages. Every field is a
//! little-endian `u32` at a fixed offset. Fields that change while the
//! channel runs (the index words) each have a 64-byte cache line of their
//! own so that the two sides never write the same line.
//!
//! "Initializer" is the side that calls [`ControlPage::init`] (normally the
//! frontend, which allocates and offers the pages); the other side
//! validates with [`ControlPage::attach`]. `n` is the ring number, `0 <= n <
//! 4`.
//!
//! | offset | size | writer | meaning |
//! |---|---|---|---|
//! | `0x000` | 4 | initializer | magic `0x3152_584d` (the bytes `"MXR1"`), written last |
//! | `0x004` | 4 | initializer | layout version, `1` |
//! | `0x008` | 4 | initializer | feature bits ([`Features`]) |
//! | `0x00c` | 52 | — | reserved, zero |
//! | `0x040 + 16n` | 4 | initializer | ring `n` direction: `0` unused, `1` frontend→backend, `2` backend→frontend ([`Direction`]) |
//! | `0x044 + 16n` | 4 | initializer | ring `n` slot size in bytes (non-zero multiple of 8) |
//! | `0x048 + 16n` | 4 | initializer | ring `n` slot count (power of two, at most 2^31) |
//! | `0x04c + 16n` | 4 | initializer | ring `n` slot area offset in bytes from the start of the control page (multiple of 4096, at least 4096; area end at most 2^32) |
//! | `0x080` | 128 | — | reserved, zero |
//! | `0x100 + 0x100n` | 4 | ring `n` producer | `prod`: items published (free-running) |
//! | `0x104 + 0x100n` | 60 | — | reserved, zero (cache-line padding) |
//! | `0x140 + 0x100n` | 4 | ring `n` consumer | `prod_event`: notify the consumer when `prod` passes this |
//! | `0x180 + 0x100n` | 4 | ring `n` consumer | `cons`: items released (free-running) |
//! | `0x1c0 + 0x100n` | 4 | ring `n` producer | `cons_event`: notify the producer when `cons` passes this |
//! | `0x500` | 2816 | — | reserved, zero |
//!
//! Unused rings have an all-zero descriptor and index block. By convention
//! ring 0 is the command ring (frontend→backend) and ring 1 the event ring
//! (backend→frontend); rings 2 and 3 are free for later use.
//!
//! [`ControlPage::init`] zeroes the control page and every slot area (so
//! nothing from before leaks), writes the header, sets every used ring's
//! `prod_event` to 1 (the consumer starts out waiting, as in Xen's
//! `SHARED_RING_INIT`) and stores the magic last, with Release ordering.
//! [`ControlPage::attach`] checks magic, version, features and every ring
//! descriptor against what the caller expects, and from then on uses only
//! its own validated copy of the header: a peer that rewrites the header
//! later changes nothing on this side. The index words are never trusted;
//! the rings re-validate them on every load.
//!
//! A layout change that an old reader could misread bumps the version;
//! optional additions are announced with a feature bit. Bits 0-15 of the
//! feature word belong to the ring layer ([`Features`]); bits 16-31 are
//! reserved for the message layer above it, which passes the ones it
//! understands in the expected [`Layout`].

use core::fmt;
use core::ptr::NonNull;

use bitflags::bitflags;

use super::region::{SharedRegion, REGION_ALIGN};
use super::sync::{AtomicU32, AtomicU64, Ordering};
use super::{
    check_slot_count, Consumer, IndexWord, Indices, Producer, Slot, SlotArea, INDEX_BLOCK_SIZE,
    MAX_SLOTS,
};

/// Size of the control page in bytes.
pub const CONTROL_PAGE_SIZE: usize = 4096;

/// The magic number at offset 0: the bytes `"MXR1"`, read as a
/// little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"MXR1");

/// The layout version described here.
pub const VERSION: u32 = 1;

/// How many ring index blocks the control page has room for.
pub const MAX_RINGS: usize = 4;

/// Byte offsets of the control page fields (see the module table).
pub mod offset {
    use super::super::Indices;

    /// Magic number.
    pub const MAGIC: usize = 0x000;
    /// Layout version.
    pub const VERSION: usize = 0x004;
    /// Feature bits.
    pub const FEATURES: usize = 0x008;
    /// First ring descriptor; ring `n`'s is at `RING_DESC + n * RING_DESC_SIZE`.
    pub const RING_DESC: usize = 0x040;
    /// Size of one ring descriptor.
    pub const RING_DESC_SIZE: usize = 16;
    /// Within a descriptor: direction.
    pub const DESC_DIRECTION: usize = 0x0;
    /// Within a descriptor: slot size in bytes.
    pub const DESC_SLOT_SIZE: usize = 0x4;
    /// Within a descriptor: slot count.
    pub const DESC_SLOT_COUNT: usize = 0x8;
    /// Within a descriptor: slot area offset.
    pub const DESC_AREA_OFFSET: usize = 0xc;
    /// First index block; ring `n`'s is at `INDEX_BLOCK + n * INDEX_BLOCK_SIZE`.
    pub const INDEX_BLOCK: usize = 0x100;
    /// Size of one index block.
    pub const INDEX_BLOCK_SIZE: usize = super::super::INDEX_BLOCK_SIZE;
    /// Within an index block: `prod`.
    pub const PROD: usize = Indices::PROD;
    /// Within an index block: `prod_event`.
    pub const PROD_EVENT: usize = Indices::PROD_EVENT;
    /// Within an index block: `cons`.
    pub const CONS: usize = Indices::CONS;
    /// Within an index block: `cons_event`.
    pub const CONS_EVENT: usize = Indices::CONS_EVENT;
}

bitflags! {
    /// Feature bits of the control page (offset `0x008`).
    ///
    /// Bits 0-15 are defined here; bits 16-31 belong to the message layer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Features: u32 {
        /// Both sides use the `prod_event` / `cons_event` words to suppress
        /// notifications (Xen's event indices). Every version-1 writer sets
        /// it; a peer without it would have to be notified on every publish,
        /// which this implementation does not do.
        const EVENT_IDX = 1 << 0;
    }
}

/// Which way a ring carries items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Direction {
    /// Guest to Dom0: the frontend produces (the command ring).
    FrontToBack = 1,
    /// Dom0 to guest: the backend produces (the event ring).
    BackToFront = 2,
}

impl Direction {
    /// The side that produces on such a ring.
    pub fn producer(self) -> Side {
        match self {
            Direction::FrontToBack => Side::Frontend,
            Direction::BackToFront => Side::Backend,
        }
    }

    /// The side that consumes from such a ring.
    pub fn consumer(self) -> Side {
        match self {
            Direction::FrontToBack => Side::Backend,
            Direction::BackToFront => Side::Frontend,
        }
    }
}

/// The two ends of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The guest (or, on the `local` platform, the client process).
    Frontend,
    /// The Dom0 daemon.
    Backend,
}

/// What the control page says about one ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingSpec {
    /// Which way items flow.
    pub direction: Direction,
    /// Bytes per slot; must equal `size_of::<T>()` of the slot type.
    pub slot_size: u32,
    /// Number of slots, a power of two.
    pub slot_count: u32,
    /// Offset of the slot area from the start of the control page.
    pub area_offset: u32,
}

impl RingSpec {
    /// Bytes of the slot area.
    pub fn area_len(&self) -> u64 {
        u64::from(self.slot_size) * u64::from(self.slot_count)
    }

    /// One past the last byte of the slot area, from the control page start.
    fn area_end(&self) -> u64 {
        u64::from(self.area_offset) + self.area_len()
    }

    fn encode(spec: Option<RingSpec>) -> [u32; 4] {
        match spec {
            None => [0; 4],
            Some(s) => [s.direction as u32, s.slot_size, s.slot_count, s.area_offset],
        }
    }

    fn validate(&self, ring: usize) -> Result<(), LayoutError> {
        if !self.slot_count.is_power_of_two() || self.slot_count > MAX_SLOTS {
            return Err(LayoutError::BadSlotCount {
                ring,
                count: self.slot_count,
            });
        }
        if self.slot_size == 0 || !self.slot_size.is_multiple_of(8) {
            return Err(LayoutError::BadSlotSize {
                ring,
                size: self.slot_size,
            });
        }
        let offset = self.area_offset as usize;
        if offset < CONTROL_PAGE_SIZE || !offset.is_multiple_of(REGION_ALIGN) {
            return Err(LayoutError::BadAreaOffset {
                ring,
                offset: self.area_offset,
            });
        }
        if self.area_end() > 1 << 32 {
            return Err(LayoutError::AreaTooLarge { ring });
        }
        Ok(())
    }
}

/// The shape of a channel's shared region: features and up to
/// [`MAX_RINGS`] rings. What [`ControlPage::init`] writes and what
/// [`ControlPage::attach`] expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Features the initializer announces / the attacher requires.
    pub features: Features,
    /// Ring `n`'s descriptor, `None` for an unused index block.
    pub rings: [Option<RingSpec>; MAX_RINGS],
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    /// No rings, features [`Features::EVENT_IDX`].
    pub fn new() -> Self {
        Layout {
            features: Features::EVENT_IDX,
            rings: [None; MAX_RINGS],
        }
    }

    /// Adds a ring in the first unused index block, with its slot area in
    /// the pages right after everything already laid out, and returns its
    /// ring number.
    ///
    /// # Errors
    ///
    /// [`LayoutError::TooManyRings`] if all blocks are used, or the error
    /// for an invalid slot size, slot count or area.
    pub fn add_ring(
        &mut self,
        direction: Direction,
        slot_size: u32,
        slot_count: u32,
    ) -> Result<usize, LayoutError> {
        let ring = self
            .rings
            .iter()
            .position(Option::is_none)
            .ok_or(LayoutError::TooManyRings)?;
        let area_offset =
            u32::try_from(self.region_len()).map_err(|_| LayoutError::AreaTooLarge { ring })?;
        let spec = RingSpec {
            direction,
            slot_size,
            slot_count,
            area_offset,
        };
        spec.validate(ring)?;
        self.rings[ring] = Some(spec);
        Ok(ring)
    }

    /// The smallest region (a whole number of pages) that holds the control
    /// page and every slot area.
    pub fn region_len(&self) -> usize {
        let end = self
            .rings
            .iter()
            .flatten()
            .map(RingSpec::area_end)
            .fold(CONTROL_PAGE_SIZE as u64, u64::max);
        (end as usize).next_multiple_of(REGION_ALIGN)
    }

    /// Checks every ring descriptor and that no two slot areas overlap.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), LayoutError> {
        for (ring, spec) in self.rings.iter().enumerate() {
            let Some(spec) = spec else { continue };
            spec.validate(ring)?;
            for (other, o) in self.rings.iter().enumerate().take(ring) {
                let Some(o) = o else { continue };
                if u64::from(spec.area_offset) < o.area_end()
                    && u64::from(o.area_offset) < spec.area_end()
                {
                    return Err(LayoutError::AreasOverlap { ring, other });
                }
            }
        }
        Ok(())
    }
}

/// Why a control page could not be set up, attached or used.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The region is shorter than the layout needs.
    RegionTooSmall {
        /// Bytes the layout needs.
        need: usize,
        /// Bytes the region has.
        have: usize,
    },
    /// The region does not start on a 4096-byte boundary.
    Misaligned,
    /// All [`MAX_RINGS`] index blocks are in use.
    TooManyRings,
    /// The slot count is not a power of two no greater than 2^31.
    BadSlotCount {
        /// Ring number.
        ring: usize,
        /// The count.
        count: u32,
    },
    /// The slot size is zero or not a multiple of 8.
    BadSlotSize {
        /// Ring number.
        ring: usize,
        /// The size.
        size: u32,
    },
    /// The slot area is not page-aligned or overlaps the control page.
    BadAreaOffset {
        /// Ring number.
        ring: usize,
        /// The offset.
        offset: u32,
    },
    /// The slot area ends beyond 2^32 bytes.
    AreaTooLarge {
        /// Ring number.
        ring: usize,
    },
    /// Two slot areas overlap.
    AreasOverlap {
        /// Ring number.
        ring: usize,
        /// The ring it overlaps.
        other: usize,
    },
    /// The page does not start with [`MAGIC`].
    BadMagic {
        /// What was found.
        found: u32,
    },
    /// The page has a layout version other than [`VERSION`].
    UnsupportedVersion {
        /// What was found.
        found: u32,
    },
    /// The page announces features this side does not know.
    UnknownFeatures {
        /// The unknown bits.
        bits: u32,
    },
    /// The page lacks features this side requires.
    MissingFeatures {
        /// The missing bits.
        bits: u32,
    },
    /// A ring descriptor differs from the expected one.
    RingMismatch {
        /// Ring number.
        ring: usize,
        /// The descriptor found: direction, slot size, slot count, area offset.
        found: [u32; 4],
    },
    /// The ring number is out of range or the ring is unused.
    NoSuchRing {
        /// Ring number.
        ring: usize,
    },
    /// This side is not the producer (or consumer) of that ring.
    WrongSide {
        /// Ring number.
        ring: usize,
        /// This control page's side.
        side: Side,
    },
    /// The slot type's size differs from the ring's slot size.
    SlotSizeMismatch {
        /// Ring number.
        ring: usize,
        /// Slot size in the layout.
        layout: u32,
        /// `size_of` the slot type.
        slot_type: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::RegionTooSmall { need, have } => {
                write!(f, "region of {have} bytes, layout needs {need}")
            }
            LayoutError::Misaligned => f.write_str("region is not page-aligned"),
            LayoutError::TooManyRings => write!(f, "more than {MAX_RINGS} rings"),
            LayoutError::BadSlotCount { ring, count } => {
                write!(
                    f,
                    "ring {ring}: slot count {count} is not a power of two <= 2^31"
                )
            }
            LayoutError::BadSlotSize { ring, size } => {
                write!(
                    f,
                    "ring {ring}: slot size {size} is not a non-zero multiple of 8"
                )
            }
            LayoutError::BadAreaOffset { ring, offset } => write!(
                f,
                "ring {ring}: slot area offset {offset:#x} is not a page after the control page"
            ),
            LayoutError::AreaTooLarge { ring } => {
                write!(f, "ring {ring}: slot area ends beyond 4 GiB")
            }
            LayoutError::AreasOverlap { ring, other } => {
                write!(f, "ring {ring}: slot area overlaps ring {other}'s")
            }
            LayoutError::BadMagic { found } => write!(f, "bad magic {found:#010x}"),
            LayoutError::UnsupportedVersion { found } => {
                write!(f, "unsupported layout version {found}")
            }
            LayoutError::UnknownFeatures { bits } => write!(f, "unknown features {bits:#x}"),
            LayoutError::MissingFeatures { bits } => write!(f, "missing features {bits:#x}"),
            LayoutError::RingMismatch { ring, found } => {
                write!(f, "ring {ring}: unexpected descriptor {found:?}")
            }
            LayoutError::NoSuchRing { ring } => write!(f, "no ring {ring}"),
            LayoutError::WrongSide { ring, side } => {
                write!(f, "ring {ring}: wrong direction for the {side:?}")
            }
            LayoutError::SlotSizeMismatch {
                ring,
                layout,
                slot_type,
            } => write!(
                f,
                "ring {ring}: slot size {layout}, slot type has {slot_type} bytes"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// A validated view of the control page at the start of a shared region,
/// from one side's point of view; it hands out that side's ring ends.
///
/// It keeps its own copy of the header it wrote or validated and never
/// reads the header again.
pub struct ControlPage<R> {
    region: R,
    layout: Layout,
    side: Side,
}

impl<R: SharedRegion> ControlPage<R> {
    /// Lays out a fresh channel: zeroes the control page and the slot
    /// areas, writes the header for `layout` and stores the magic last.
    ///
    /// No other party may be using the region's rings yet.
    ///
    /// # Errors
    ///
    /// If `layout` is invalid or does not fit the region.
    pub fn init(region: R, layout: &Layout, side: Side) -> Result<Self, LayoutError> {
        let page = Self {
            region,
            layout: *layout,
            side,
        };
        page.check_region()?;
        for off in (0..CONTROL_PAGE_SIZE).step_by(8) {
            page.word64(off).store(0, Ordering::Relaxed);
        }
        for spec in layout.rings.iter().flatten() {
            let start = spec.area_offset as usize;
            for off in (start..start + spec.area_len() as usize).step_by(8) {
                page.word64(off).store(0, Ordering::Relaxed);
            }
        }
        page.word(offset::VERSION).store(VERSION, Ordering::Relaxed);
        page.word(offset::FEATURES)
            .store(layout.features.bits(), Ordering::Relaxed);
        for (ring, spec) in layout.rings.iter().enumerate() {
            let desc = offset::RING_DESC + ring * offset::RING_DESC_SIZE;
            for (i, value) in RingSpec::encode(*spec).into_iter().enumerate() {
                page.word(desc + 4 * i).store(value, Ordering::Relaxed);
            }
            if spec.is_some() {
                // The consumer starts out waiting: the first publish kicks.
                page.indices(ring).prod_event.store(1, Ordering::Relaxed);
            }
        }
        // Release: an attacher that reads the magic with Acquire sees the
        // whole header (handing the region over normally orders this too).
        page.word(offset::MAGIC).store(MAGIC, Ordering::Release);
        Ok(page)
    }

    /// Validates a control page written by the peer against what this
    /// side expects: magic, version, features (unknown bits or missing
    /// required ones are refused) and every ring descriptor, which must
    /// equal `expected`'s exactly.
    ///
    /// # Errors
    ///
    /// The first mismatch found, or an invalid `expected` layout.
    pub fn attach(region: R, expected: &Layout, side: Side) -> Result<Self, LayoutError> {
        let mut page = Self {
            region,
            layout: *expected,
            side,
        };
        page.check_region()?;
        let magic = page.word(offset::MAGIC).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(LayoutError::BadMagic { found: magic });
        }
        let version = page.word(offset::VERSION).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(LayoutError::UnsupportedVersion { found: version });
        }
        let found = Features::from_bits_retain(page.word(offset::FEATURES).load(Ordering::Relaxed));
        let unknown = found.difference(Features::all() | expected.features);
        if !unknown.is_empty() {
            return Err(LayoutError::UnknownFeatures {
                bits: unknown.bits(),
            });
        }
        let missing = expected.features.difference(found);
        if !missing.is_empty() {
            return Err(LayoutError::MissingFeatures {
                bits: missing.bits(),
            });
        }
        for (ring, spec) in expected.rings.iter().enumerate() {
            let desc = offset::RING_DESC + ring * offset::RING_DESC_SIZE;
            let mut found = [0; 4];
            for (i, value) in found.iter_mut().enumerate() {
                *value = page.word(desc + 4 * i).load(Ordering::Relaxed);
            }
            if found != RingSpec::encode(*spec) {
                return Err(LayoutError::RingMismatch { ring, found });
            }
        }
        page.layout.features = found;
        Ok(page)
    }

    /// The region this view lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// The validated layout (with the features the page announced).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The features the page announced.
    pub fn features(&self) -> Features {
        self.layout.features
    }

    /// The side this view was made for.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Ring `ring`'s descriptor, if it is in use.
    pub fn ring(&self, ring: usize) -> Option<RingSpec> {
        self.layout.rings.get(ring).copied().flatten()
    }

    /// This side's producer for ring `ring`, keeping a clone of the region
    /// handle (`Arc<Mapping>`, `&Mapping`, ...) alive.
    ///
    /// Make one producer per ring per side: a second one is not unsafe
    /// (all shared accesses are atomic) but corrupts the ring.
    ///
    /// # Errors
    ///
    /// If the ring is unused, this side does not produce on it, or the
    /// slot size differs from `size_of::<T>()`.
    pub fn producer<T: Slot>(&self, ring: usize) -> Result<Producer<T, R>, LayoutError>
    where
        R: Clone,
    {
        let spec = self.spec_for::<T>(ring, true)?;
        let idx = self.indices(ring);
        Ok(Producer::from_parts(
            idx,
            self.slots(&spec),
            self.region.clone(),
        ))
    }

    /// This side's consumer for ring `ring`; see [`producer`](Self::producer).
    ///
    /// # Errors
    ///
    /// As for [`producer`](Self::producer).
    pub fn consumer<T: Slot>(&self, ring: usize) -> Result<Consumer<T, R>, LayoutError>
    where
        R: Clone,
    {
        let spec = self.spec_for::<T>(ring, false)?;
        let idx = self.indices(ring);
        Ok(Consumer::from_parts(
            idx,
            self.slots(&spec),
            self.region.clone(),
        ))
    }

    fn spec_for<T: Slot>(&self, ring: usize, producing: bool) -> Result<RingSpec, LayoutError> {
        let spec = self.ring(ring).ok_or(LayoutError::NoSuchRing { ring })?;
        let side = if producing {
            spec.direction.producer()
        } else {
            spec.direction.consumer()
        };
        if side != self.side {
            return Err(LayoutError::WrongSide {
                ring,
                side: self.side,
            });
        }
        if spec.slot_size as usize != size_of::<T>() {
            return Err(LayoutError::SlotSizeMismatch {
                ring,
                layout: spec.slot_size,
                slot_type: size_of::<T>(),
            });
        }
        Ok(spec)
    }

    fn check_region(&self) -> Result<(), LayoutError> {
        if cfg!(loom) {
            panic!("the control page cannot be model-checked: loom atomics are not plain words");
        }
        self.layout.validate()?;
        let need = self.layout.region_len();
        let have = self.region.len();
        if have < need {
            return Err(LayoutError::RegionTooSmall { need, have });
        }
        if self.region.as_ptr().align_offset(REGION_ALIGN) != 0 {
            return Err(LayoutError::Misaligned);
        }
        Ok(())
    }

    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.region.as_ptr()).expect("SharedRegion::as_ptr returned null")
    }

    /// The little-endian `u32` at `off` in the control page.
    fn word(&self, off: usize) -> IndexWord {
        debug_assert!(off + 4 <= CONTROL_PAGE_SIZE && off.is_multiple_of(4));
        // SAFETY: `check_region` made sure the control page is inside the
        // region, which is page-aligned; `off` is 4-aligned inside the page.
        IndexWord(unsafe { self.base().add(off) }.cast::<AtomicU32>())
    }

    /// The 8-byte word at `off` in the region (for zeroing).
    fn word64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off + 8 <= self.region.len() && off.is_multiple_of(8));
        // SAFETY: callers pass 8-aligned offsets inside the control page or
        // a slot area, which `check_region` placed inside the region; the
        // region stays mapped while `self` lives and is only accessed
        // atomically (the `SharedRegion` contract).
        unsafe { self.base().add(off).cast::<AtomicU64>().as_ref() }
    }

    fn indices(&self, ring: usize) -> Indices {
        assert!(ring < MAX_RINGS);
        let off = offset::INDEX_BLOCK + ring * INDEX_BLOCK_SIZE;
        // SAFETY: the index block lies inside the control page (checked
        // inside the region), 64-byte aligned; the returned words are used
        // by rings that hold a clone of the region, or by `init` itself.
        unsafe { Indices::from_block(self.base().add(off)) }
    }

    fn slots(&self, spec: &RingSpec) -> SlotArea {
        check_slot_count(spec.slot_count);
        // SAFETY: `check_region` validated that the area lies inside the
        // region; its offset is page-aligned.
        let base = unsafe { self.base().add(spec.area_offset as usize) };
        SlotArea {
            base: base.cast(),
            mask: spec.slot_count - 1,
        }
    }
}

impl<R> fmt::Debug for ControlPage<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPage")
            .field("side", &self.side)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}
