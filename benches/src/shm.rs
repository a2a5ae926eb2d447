//! Shared memory between benchmark processes: a memfd mapped `MAP_SHARED`,
//! laid out as `mx_proto::ring` rings, and the wait policies the benches
//! poll them with. Shared by the `split_driver` bench and the `compare`
//! harness.

use memmap2::{MmapOptions, MmapRaw};
use mx_proto::channel::QueueSlot;
use mx_proto::msg::QUEUE_SLOT_SIZE;
use mx_proto::ring::{Consumer, Direction, Layout, Producer, SharedRegion};
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Any single wait longer than this is a bug: give up.
pub const STUCK: Duration = Duration::from_secs(30);

/// A 64-byte slot (the size class of commands and events).
pub type Small = [u64; 8];

/// How a process waits for a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Busy-poll (`spin_loop`).
    Spin,
    /// Poll, `sched_yield` between polls.
    Yield,
    /// Sleep until notified (eventfd, doorbell).
    Block,
}

impl Wait {
    /// Parse `spin`, `yield` or `block`.
    ///
    /// # Panics
    /// On any other name.
    pub fn parse(s: &str) -> Wait {
        match s {
            "spin" => Wait::Spin,
            "yield" => Wait::Yield,
            "block" => Wait::Block,
            _ => panic!("bad wait policy {s}"),
        }
    }

    /// The policy's name, as [`Wait::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Yield => "yield",
            Wait::Block => "block",
        }
    }

    /// One empty poll of a ring that cannot block.
    pub fn relax(self) {
        match self {
            Wait::Spin => std::hint::spin_loop(),
            _ => std::thread::yield_now(),
        }
    }
}

/// A `MAP_SHARED` mapping of a memfd.
pub struct Shm(MmapRaw);

// SAFETY: the mapping is page-aligned, fixed until drop, `len()` bytes
// long, and the benches reach it only through the rings (atomics), the
// bounds-checked `SharedMem` copies, or raw copies into slots the ring
// protocol gave them, never through references.
unsafe impl SharedRegion for Shm {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl Shm {
    /// Base address of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.0.as_mut_ptr()
    }
}

/// A memfd without CLOEXEC (children inherit it) of `len` bytes.
///
/// # Panics
/// If the kernel refuses.
pub fn memfd(len: usize) -> File {
    // SAFETY: plain system call with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"mx-bench".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len as u64).expect("size memfd");
    file
}

/// Map `len` bytes of `file` shared.
///
/// # Panics
/// If the mapping fails.
pub fn map(file: &File, len: usize) -> Arc<Shm> {
    Arc::new(Shm(MmapOptions::new()
        .len(len)
        .map_raw(file)
        .expect("mmap")))
}

/// Four rings: 0 and 2 front -> back, 1 and 3 back -> front; 64-byte slots
/// (256 each) or 8 KiB queue slots (64 each) when `big`.
pub fn layout(big: bool) -> Layout {
    let (size, count) = if big {
        (QUEUE_SLOT_SIZE as u32, 64)
    } else {
        (64, 256)
    };
    let mut l = Layout::new();
    for dir in [
        Direction::FrontToBack,
        Direction::BackToFront,
        Direction::FrontToBack,
        Direction::BackToFront,
    ] {
        l.add_ring(dir, size, count).expect("layout");
    }
    l
}

/// Offset of ring `ring`'s slot area in the region.
pub fn area(l: &Layout, ring: usize) -> usize {
    l.rings[ring].expect("ring").area_offset as usize
}

/// Panic if a wait that started at `t0` has lasted longer than [`STUCK`].
pub fn stuck(t0: Instant, what: &str) {
    assert!(t0.elapsed() < STUCK, "stuck waiting for {what}");
}

/// Pop one slot, polling by `w` (spin or yield).
pub fn pop_wait<T: mx_proto::ring::Slot>(rx: &mut Consumer<T, Arc<Shm>>, w: Wait) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = rx.pop().expect("ring") {
            return v;
        }
        w.relax();
        stuck(t0, "a slot");
    }
}

/// Push one slot and publish it, polling by `w` while the ring is full.
pub fn push_now<T: mx_proto::ring::Slot>(tx: &mut Producer<T, Arc<Shm>>, v: &T, w: Wait) {
    let t0 = Instant::now();
    while tx.push(v).is_err() {
        w.relax();
        stuck(t0, "ring space");
    }
    let _ = tx.publish();
}

/// Take the next queue slot in place; its position.
pub fn skip_wait(rx: &mut Consumer<QueueSlot, Arc<Shm>>, w: Wait) -> usize {
    let t0 = Instant::now();
    loop {
        if let Some(p) = rx.skip().expect("ring") {
            return p as usize;
        }
        w.relax();
        stuck(t0, "a queue slot");
    }
}

/// Claim the next free queue slot in place; its position.
pub fn claim_wait(tx: &mut Producer<QueueSlot, Arc<Shm>>, w: Wait) -> usize {
    let t0 = Instant::now();
    loop {
        if let Ok(p) = tx.claim() {
            return p as usize;
        }
        w.relax();
        stuck(t0, "queue space");
    }
}

/// An eventfd without CLOEXEC (children inherit it): the doorbell of the
/// blocking shared-memory baselines.
///
/// # Panics
/// If the kernel refuses.
pub fn eventfd() -> i32 {
    // SAFETY: plain system call.
    let fd = unsafe { libc::eventfd(0, 0) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    fd
}

/// Ring doorbell `fd`.
pub fn kick(fd: i32) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor we own.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Sleep until doorbell `fd` rings (or a signal interrupts).
pub fn sleep_on(fd: i32) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from a descriptor we own.
    let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}
