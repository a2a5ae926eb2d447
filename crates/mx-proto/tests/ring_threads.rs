//! Real concurrency between two threads: millions of checksummed items in
//! order across the u32 wrap, and a run where both sides really sleep on
//! eventfds using the notification protocol (a lost wakeup would show up
//! as a poll timeout).
#![cfg(not(loom))]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mx_proto::ring::layout::offset;
use mx_proto::ring::{
    Consumer, ControlPage, Direction, HeapRegion, Layout, Notify, Producer, SharedRegion, Side,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A 64-byte message whose last word checksums the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Msg {
    seq: u64,
    payload: [u64; 6],
    check: u64,
}

fn msg(seq: u64) -> Msg {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
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

const TIMEOUT: Duration = Duration::from_secs(120);

type Region = Arc<HeapRegion>;

/// One frontend->backend ring of `count` 64-byte slots, all indices
/// starting at `start`.
fn ring(count: u32, start: u32) -> (Producer<Msg, Region>, Consumer<Msg, Region>) {
    let mut layout = Layout::new();
    let n = layout.add_ring(Direction::FrontToBack, 64, count).unwrap();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    let block = offset::INDEX_BLOCK + n * offset::INDEX_BLOCK_SIZE;
    for field in [offset::PROD, offset::CONS, offset::CONS_EVENT] {
        let off = block + field;
        // SAFETY: the word is inside the control page of a live,
        // page-aligned region and only ever accessed atomically; no ring
        // end exists yet.
        let word = unsafe { AtomicU32::from_ptr(region.as_ptr().add(off).cast()) };
        word.store(start.to_le(), Ordering::SeqCst);
    }
    (
        front.producer::<Msg>(n).unwrap(),
        back.consumer::<Msg>(n).unwrap(),
    )
}

/// Waits a little without burning the CPU the other side needs (2 cores
/// shared with other work), and fails instead of hanging.
fn backoff(spins: &mut u32, deadline: Instant, what: &str) {
    *spins += 1;
    if (*spins).is_multiple_of(64) {
        assert!(Instant::now() < deadline, "timed out: {what}");
    }
    if *spins < 16 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

#[test]
fn two_threads_move_millions_in_order_across_the_wrap() {
    const N: u64 = 3_000_000;
    let (mut tx, mut rx) = ring(256, u32::MAX - 1000);
    let deadline = Instant::now() + TIMEOUT;

    let producer = thread::spawn(move || {
        let mut batch = Vec::with_capacity(32);
        let mut seq = 0u64;
        let mut total = 0u64;
        let mut spins = 0;
        while seq < N {
            batch.clear();
            batch.extend((seq..N.min(seq + 32)).map(msg));
            let mut done = 0;
            while done < batch.len() {
                let n = tx.push_batch(&batch[done..]).unwrap();
                if n == 0 {
                    backoff(&mut spins, deadline, "producer waiting for space");
                    continue;
                }
                spins = 0;
                done += n;
                let _ = tx.publish();
            }
            total = batch.iter().fold(total, |t, m| t.wrapping_add(m.check));
            seq += batch.len() as u64;
        }
        total
    });

    let mut out = [msg(0); 48];
    let mut next = 0u64;
    let mut total = 0u64;
    let mut spins = 0;
    while next < N {
        let n = rx.pop_batch(&mut out).unwrap();
        if n == 0 {
            backoff(&mut spins, deadline, "consumer waiting for items");
            continue;
        }
        spins = 0;
        for m in &out[..n] {
            assert_eq!(m.seq, next, "out of order");
            assert_eq!(m.check, checksum(m), "corrupt payload at {next}");
            total = total.wrapping_add(m.check);
            next += 1;
        }
        let _ = rx.release();
    }
    assert_eq!(producer.join().unwrap(), total);
    assert_eq!(rx.available(), Ok(0));
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; a non-negative result is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn kick(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    assert_eq!(n, 8);
}

/// Sleeps on `fd` until kicked; returns false if `limit` passed first
/// (which, after the prepare_* check said "you may sleep", means a lost
/// wakeup). Drains the counter.
fn sleep_on(fd: &OwnedFd, limit: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
    assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
    let mut count = 0u64;
    // SAFETY: reads 8 bytes into a live u64 (EAGAIN if not readable).
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    r == 1
}

#[test]
fn two_threads_sleeping_on_eventfds_never_lose_a_wakeup() {
    const N: u64 = 200_000;
    const LIMIT: Duration = Duration::from_secs(5);
    let (mut tx, mut rx) = ring(64, 0);
    let data = Arc::new(eventfd());
    let space = Arc::new(eventfd());
    let (data2, space2) = (data.clone(), space.clone());
    let deadline = Instant::now() + TIMEOUT;

    let producer = thread::spawn(move || {
        let (mut prepares, mut sleeps, mut lost, mut kicks) = (0u64, 0u64, 0u64, 0u64);
        let mut seq = 0;
        // Bursts of varying size so that the ring is sometimes full,
        // sometimes empty.
        while seq < N {
            let burst = 1 + (seq * 7 % 97);
            let end = N.min(seq + burst);
            while seq < end {
                match tx.push(&msg(seq)) {
                    Ok(()) => seq += 1,
                    Err(mx_proto::ring::PushError::Full) => {
                        if tx.publish() == Notify::Yes {
                            kicks += 1;
                            kick(&data2);
                        }
                        prepares += 1;
                        if tx.prepare_to_wait_for_space().unwrap() {
                            sleeps += 1;
                            if !sleep_on(&space2, LIMIT) {
                                lost += 1;
                            }
                        }
                        assert!(Instant::now() < deadline, "producer timed out");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if tx.publish() == Notify::Yes {
                kicks += 1;
                kick(&data2);
            }
        }
        (prepares, sleeps, lost, kicks)
    });

    let (mut prepares, mut sleeps, mut lost, mut kicks) = (0u64, 0u64, 0u64, 0u64);
    let mut next = 0;
    while next < N {
        match rx.pop().unwrap() {
            Some(m) => {
                assert_eq!(m.seq, next);
                assert_eq!(m.check, checksum(&m));
                next += 1;
                // Release in batches of 8 (or when the ring drains below).
                if rx.unreleased() >= 8 && rx.release() == Notify::Yes {
                    kicks += 1;
                    kick(&space);
                }
            }
            None => {
                if rx.release() == Notify::Yes {
                    kicks += 1;
                    kick(&space);
                }
                prepares += 1;
                if rx.prepare_to_sleep().unwrap() {
                    sleeps += 1;
                    if !sleep_on(&data, LIMIT) {
                        lost += 1;
                    }
                }
                assert!(Instant::now() < deadline, "consumer timed out");
            }
        }
    }
    let (p_prepares, p_sleeps, p_lost, p_kicks) = producer.join().unwrap();
    eprintln!(
        "consumer slept {sleeps}x, kicked producer {kicks}x; producer slept {p_sleeps}x, kicked consumer {p_kicks}x"
    );
    assert_eq!((lost, p_lost), (0, 0), "lost wakeups");
    // Kicks only go to a side that armed its event index, at most one per
    // arming (plus the initial one: the consumer starts out waiting).
    assert!(
        p_kicks <= prepares + 1,
        "{p_kicks} kicks for {prepares} arms"
    );
    assert!(kicks <= p_prepares, "{kicks} kicks for {p_prepares} arms");
    assert!(p_kicks < N / 4, "batching: {p_kicks} kicks for {N} items");
}
