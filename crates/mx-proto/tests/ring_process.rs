//! Two processes sharing a memfd mapping: the parent lays out a channel
//! (frontend), re-runs this test binary as a child (backend) with the memfd
//! inherited, and both exchange a million checksummed items each way.
//! A second child plays a corrupt peer that scribbles over the indices.
//!
//! The child role is chosen by the `MX_RING_CHILD` environment variable
//! (`echo` or `scribble`) and the memfd number by `MX_RING_FD`; without
//! them the `child` test does nothing.
#![cfg(not(loom))]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use mx_proto::ring::layout::offset;
use mx_proto::ring::{ControlPage, Direction, Layout, PeerIndex, RingError, SharedRegion, Side};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A 64-byte message whose last word checksums the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Msg {
    seq: u64,
    payload: [u64; 6],
    check: u64,
}

/// `salt` tells the two directions apart.
fn msg(seq: u64, salt: u64) -> Msg {
    let mut x = (seq ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let payload = core::array::from_fn(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    });
    let mut m = Msg {
        seq,
        payload,
        check: 0,
    };
    m.check = checksum(&m);
    m
}

fn checksum(m: &Msg) -> u64 {
    m.payload
        .iter()
        .fold(m.seq ^ 0xcbf2_9ce4_8422_2325, |h, w| {
            (h ^ w).wrapping_mul(0x100_0000_01b3)
        })
}

const N: u64 = 1_000_000;
const TO_CHILD: u64 = 0x1111;
const TO_PARENT: u64 = 0x2222;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Ring 0 parent -> child, ring 1 child -> parent.
fn layout() -> Layout {
    let mut layout = Layout::new();
    layout.add_ring(Direction::FrontToBack, 64, 1024).unwrap();
    layout.add_ring(Direction::BackToFront, 64, 1024).unwrap();
    layout
}

/// A `MAP_SHARED` mapping of a memfd.
struct Shm(MmapRaw);

// SAFETY: the mapping is page-aligned, fixed until drop, `len()` bytes
// long, and the tests reach it only through the rings (atomics).
unsafe impl SharedRegion for Shm {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

fn map(file: &File, len: usize) -> Shm {
    Shm(MmapOptions::new().len(len).map_raw(file).expect("mmap"))
}

/// A memfd without CLOEXEC, so that the child inherits it.
fn memfd(len: usize) -> File {
    // SAFETY: plain syscall with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"mx-ring-test".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len as u64).unwrap();
    file
}

fn spawn_child(role: &str, file: &File) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("MX_RING_CHILD", role)
        .env("MX_RING_FD", file.as_raw_fd().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn wait_child(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes `N` items with salt `send_salt` on `tx_ring` while taking `N`
/// items with salt `recv_salt` from `rx_ring`, polling both (spin, then
/// yield), until both are done or the timeout hits.
fn exchange(
    page: &ControlPage<&Shm>,
    tx_ring: usize,
    rx_ring: usize,
    send_salt: u64,
    recv_salt: u64,
) {
    let mut tx = page.producer::<Msg>(tx_ring).unwrap();
    let mut rx = page.consumer::<Msg>(rx_ring).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut batch = [msg(0, 0); 32];
    let mut idle = 0u32;
    while sent < N || received < N {
        let mut progress = false;
        if sent < N {
            let k = (N - sent).min(32) as usize;
            for (i, m) in batch[..k].iter_mut().enumerate() {
                *m = msg(sent + i as u64, send_salt);
            }
            let n = tx.push_batch(&batch[..k]).unwrap();
            if n > 0 {
                sent += n as u64;
                let _ = tx.publish();
                progress = true;
            }
        }
        let n = rx.pop_batch(&mut batch).unwrap();
        for m in &batch[..n] {
            assert_eq!(m.seq, received, "out of order");
            assert_eq!(*m, msg(received, recv_salt), "wrong content at {received}");
            received += 1;
        }
        if n > 0 {
            let _ = rx.release();
            progress = true;
        }
        if progress {
            idle = 0;
        } else {
            idle += 1;
            if idle.is_multiple_of(64) {
                assert!(
                    Instant::now() < deadline,
                    "timed out: sent {sent}, received {received}"
                );
            }
            if idle < 16 {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

#[test]
fn two_processes_exchange_a_million_each_way() {
    let layout = layout();
    let file = memfd(layout.region_len());
    let shm = map(&file, layout.region_len());
    let page = ControlPage::init(&shm, &layout, Side::Frontend).unwrap();
    let child = spawn_child("echo", &file);
    exchange(&page, 0, 1, TO_CHILD, TO_PARENT);
    wait_child(child);
}

#[test]
fn corrupt_peer_process_is_detected() {
    let layout = layout();
    let file = memfd(layout.region_len());
    let shm = map(&file, layout.region_len());
    let page = ControlPage::init(&shm, &layout, Side::Frontend).unwrap();
    let mut rx = page.consumer::<Msg>(1).unwrap();
    let child = spawn_child("scribble", &file);
    wait_child(child);
    match rx.pop() {
        Err(RingError::Corrupt {
            index: PeerIndex::Prod,
            observed,
            ..
        }) => assert_eq!(observed, 5000),
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// The child side; a no-op unless started by one of the tests above.
#[test]
fn child() {
    let Ok(role) = std::env::var("MX_RING_CHILD") else {
        return;
    };
    let fd: i32 = std::env::var("MX_RING_FD").unwrap().parse().unwrap();
    // SAFETY: the fd was inherited from the parent for this purpose and
    // nothing else in this process uses it.
    let file = unsafe { File::from_raw_fd(fd) };
    let layout = layout();
    let shm = map(&file, layout.region_len());
    let page = ControlPage::attach(&shm, &layout, Side::Backend).unwrap();
    match role.as_str() {
        "echo" => exchange(&page, 1, 0, TO_PARENT, TO_CHILD),
        "scribble" => {
            // A broken backend: publishes far more than the ring holds.
            let prod = offset::INDEX_BLOCK + offset::INDEX_BLOCK_SIZE + offset::PROD;
            // SAFETY: inside the mapped control page, 4-aligned, accessed
            // atomically.
            let word =
                unsafe { std::sync::atomic::AtomicU32::from_ptr(shm.as_ptr().add(prod).cast()) };
            word.store(5000u32.to_le(), std::sync::atomic::Ordering::Release);
        }
        other => panic!("unknown child role {other}"),
    }
}
