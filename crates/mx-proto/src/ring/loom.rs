//! Loom model checks of the ring's memory ordering and of the
//! notification protocol.
//!
//! Run with (a separate target directory keeps the `--cfg loom` build
//! apart from the normal one):
//!
//! ```text
//! CARGO_TARGET_DIR=target-loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p mx-proto --release --lib ring::loom
//! ```
//!
//! The production engine (`Producer`, `Consumer`, `SlotArea`, the index
//! words) runs unchanged; only its atomics come from loom, through
//! `ring::sync`. The index block and the slots live in a loom-owned
//! `Shared` instead of a control page, because loom's atomics are
//! bookkeeping objects that cannot be overlaid on raw memory. Slots are
//! relaxed 8-byte atomic words exactly as in production, so a missing
//! Release/Acquire shows up as loom letting the consumer read an old or
//! half-written slot; a missing SeqCst fence shows up as a consumer that
//! sleeps and is never notified (a deadlock or a failed assertion).
//!
//! Checked by mutation when these tests were written: removing any one of
//! the four SeqCst fences (`publish`, `prepare_to_sleep`, `release`,
//! `prepare_to_wait_for_space`) fails a lost-wakeup test, and a Relaxed
//! store of `prod` fails the data tests. One blind spot: loom does not
//! explore load buffering, so weakening the producer's Acquire load of
//! `cons` (which keeps it from overwriting a slot the consumer is still
//! copying) is *not* caught here; that ordering rests on the argument in
//! the parent module's docs.

use core::ptr::NonNull;

use ::loom::sync::atomic::AtomicBool;
use ::loom::sync::{Arc, Notify as Wakeup};
use ::loom::thread;

use super::sync::{AtomicU32, AtomicU64, Ordering};
use super::{Consumer, IndexWord, Indices, Notify, Producer, PushError, SlotArea};

/// A two-word slot, so that a torn copy would be visible.
type Item = [u64; 2];

fn item(i: u64) -> Item {
    [i, !i]
}

/// One ring's index block and slot area, owned by the model.
struct Shared {
    /// prod, prod_event, cons, cons_event.
    words: [AtomicU32; 4],
    slots: Vec<AtomicU64>,
}

impl Shared {
    /// A ring of `count` slots with every index at `start`, the consumer
    /// not (yet) waiting.
    fn new(count: u32, start: u32) -> Arc<Self> {
        Arc::new(Shared {
            words: [
                AtomicU32::new(start.to_le()),
                AtomicU32::new(start.to_le()),
                AtomicU32::new(start.to_le()),
                AtomicU32::new(start.to_le()),
            ],
            slots: (0..count as usize * 2).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn parts(&self) -> (Indices, SlotArea) {
        let word = |i: usize| IndexWord(NonNull::from(&self.words[i]));
        let idx = Indices {
            prod: word(0),
            prod_event: word(1),
            cons: word(2),
            cons_event: word(3),
        };
        let area = SlotArea {
            base: NonNull::new(self.slots.as_ptr().cast_mut()).unwrap(),
            mask: (self.slots.len() / 2) as u32 - 1,
        };
        (idx, area)
    }

    fn producer(this: &Arc<Self>) -> Producer<Item, Arc<Self>> {
        let (idx, area) = this.parts();
        Producer::from_parts(idx, area, this.clone())
    }

    fn consumer(this: &Arc<Self>) -> Consumer<Item, Arc<Self>> {
        let (idx, area) = this.parts();
        Consumer::from_parts(idx, area, this.clone())
    }
}

/// Items cross a 2-slot ring (wrapping around it) complete and in order:
/// the Release store of `prod` / Acquire load pair publishes whole slots,
/// and the Release store of `cons` / Acquire load pair keeps the producer
/// from overwriting a slot still being copied.
#[test]
fn items_arrive_whole_and_in_order() {
    ::loom::model(|| {
        let shared = Shared::new(2, u32::MAX - 1);
        let mut tx = Shared::producer(&shared);
        let mut rx = Shared::consumer(&shared);
        let producer = thread::spawn(move || {
            for i in 1..=3 {
                loop {
                    match tx.push(&item(i)) {
                        Ok(()) => break,
                        Err(PushError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                let _ = tx.publish();
            }
        });
        for i in 1..=3 {
            loop {
                if let Some(got) = rx.pop().unwrap() {
                    assert_eq!(got, item(i));
                    let _ = rx.release();
                    break;
                }
                thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

/// The lost-wakeup guard, consumer side: a consumer that decides to sleep
/// after `prepare_to_sleep` is always notified by the producer's
/// `publish`, or else sees the item itself.
#[test]
fn sleeping_consumer_is_always_notified() {
    ::loom::model(|| {
        let shared = Shared::new(2, 7);
        let mut tx = Shared::producer(&shared);
        let mut rx = Shared::consumer(&shared);
        let kicked = Arc::new(AtomicBool::new(false));
        let kicked2 = kicked.clone();
        let producer = thread::spawn(move || {
            tx.push(&item(1)).unwrap();
            if tx.publish() == Notify::Yes {
                kicked2.store(true, Ordering::Relaxed);
            }
        });
        let slept = match rx.pop().unwrap() {
            Some(got) => {
                assert_eq!(got, item(1));
                None
            }
            None => Some(rx.prepare_to_sleep().unwrap()),
        };
        producer.join().unwrap();
        match slept {
            None => {}
            // Went to sleep: the producer must have kicked.
            Some(true) => {
                assert!(kicked.load(Ordering::Relaxed), "lost wakeup");
                assert_eq!(rx.pop().unwrap(), Some(item(1)));
            }
            // Refused to sleep: the item must be there now.
            Some(false) => assert_eq!(rx.pop().unwrap(), Some(item(1))),
        }
    });
}

/// The lost-wakeup guard, producer side: a producer that waits for space
/// after `prepare_to_wait_for_space` is always notified by the consumer's
/// `release`, or else sees the space itself.
#[test]
fn producer_waiting_for_space_is_always_notified() {
    ::loom::model(|| {
        let shared = Shared::new(2, 0);
        let mut tx = Shared::producer(&shared);
        let mut rx = Shared::consumer(&shared);
        tx.push(&item(1)).unwrap();
        tx.push(&item(2)).unwrap();
        let _ = tx.publish();
        let kicked = Arc::new(AtomicBool::new(false));
        let kicked2 = kicked.clone();
        let consumer = thread::spawn(move || {
            assert_eq!(rx.pop().unwrap(), Some(item(1)));
            if rx.release() == Notify::Yes {
                kicked2.store(true, Ordering::Relaxed);
            }
        });
        let waited = match tx.push(&item(3)) {
            Ok(()) => None,
            Err(PushError::Full) => Some(tx.prepare_to_wait_for_space().unwrap()),
            Err(e) => panic!("{e}"),
        };
        consumer.join().unwrap();
        match waited {
            None => {}
            Some(true) => {
                assert!(kicked.load(Ordering::Relaxed), "lost wakeup");
                tx.push(&item(3)).unwrap();
            }
            Some(false) => tx.push(&item(3)).unwrap(),
        }
    });
}

/// Both sides block for real (loom's `Notify` stands in for the event
/// channel and may wake spuriously): a producer pushing three items
/// through a 2-slot ring and a consumer taking them never deadlock, and
/// the items arrive in order. A lost wakeup on either side would leave a
/// thread blocked forever, which loom reports.
///
/// Explored with a preemption bound of 4 (about 10 s); unbounded, this model
/// takes many minutes. The other tests here are exhaustive.
#[test]
fn blocking_both_ways_never_deadlocks() {
    let mut builder = ::loom::model::Builder::new();
    builder.preemption_bound = Some(4);
    builder.check(|| {
        let shared = Shared::new(2, 0);
        let mut tx = Shared::producer(&shared);
        let mut rx = Shared::consumer(&shared);
        let data = Arc::new(Wakeup::new());
        let space = Arc::new(Wakeup::new());
        let (data2, space2) = (data.clone(), space.clone());
        let producer = thread::spawn(move || {
            for i in 1..=3 {
                loop {
                    match tx.push(&item(i)) {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            if tx.prepare_to_wait_for_space().unwrap() {
                                space2.wait();
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                if tx.publish() == Notify::Yes {
                    data2.notify();
                }
            }
        });
        let mut next = 1;
        while next <= 3 {
            match rx.pop().unwrap() {
                Some(got) => {
                    assert_eq!(got, item(next));
                    next += 1;
                    if rx.release() == Notify::Yes {
                        space.notify();
                    }
                }
                None => {
                    if rx.prepare_to_sleep().unwrap() {
                        data.wait();
                    }
                }
            }
        }
        producer.join().unwrap();
    });
}
