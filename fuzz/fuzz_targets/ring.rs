//! Fuzzes the ring index validation: a producer and a consumer of one
//! 8-slot ring live in this process, and the input is a script of steps,
//! some of which overwrite the index words in shared memory as a hostile
//! peer would. Nothing may panic; an index outside its legal window must
//! surface as a `RingError` (and stay one), never as more slots than the
//! ring holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mx_proto::ring::{Consumer, Producer, INDEX_BLOCK_SIZE};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const SLOTS: u32 = 8;

#[repr(C, align(64))]
struct Shared {
    index: [AtomicU32; INDEX_BLOCK_SIZE / 4],
    slots: [AtomicU64; SLOTS as usize],
}

fuzz_target!(|data: &[u8]| {
    let shared = Box::new(Shared {
        index: std::array::from_fn(|_| AtomicU32::new(0)),
        slots: std::array::from_fn(|_| AtomicU64::new(0)),
    });
    let block = NonNull::from(&shared.index).cast::<u8>();
    let slots = NonNull::from(&shared.slots).cast::<u8>();
    // SAFETY: `shared` is 64-byte aligned, outlives both ends (dropped at
    // the end of this closure, after them) and is touched only atomically;
    // there is one producer and one consumer.
    let mut p = unsafe { Producer::<u64>::from_raw(block, slots, SLOTS) };
    // SAFETY: as above.
    let mut c = unsafe { Consumer::<u64>::from_raw(block, slots, SLOTS) };
    let mut next = 0u64;
    for step in data.chunks(5) {
        let op = step[0];
        let mut v = [0u8; 4];
        v[..step.len() - 1].copy_from_slice(&step[1..]);
        let v = u32::from_le_bytes(v);
        match op % 10 {
            // A hostile peer writes one of the four index words.
            0..=3 => shared.index[usize::from(op % 4) * 16].store(v, Ordering::Relaxed),
            4 => {
                if p.push(&next).is_ok() {
                    next += 1;
                }
            }
            5 => {
                let _ = p.publish();
            }
            6 => {
                if let Ok(n) = p.free_slots() {
                    assert!(n <= SLOTS, "free {n} of {SLOTS}");
                }
            }
            7 => {
                if let Ok(n) = c.available() {
                    assert!(n <= SLOTS, "available {n} of {SLOTS}");
                }
            }
            8 => {
                let _ = c.pop();
            }
            _ => {
                let _ = c.release();
                let _ = c.prepare_to_sleep();
                // Its contract: publish first (a debug assertion checks it).
                let _ = p.publish();
                let _ = p.prepare_to_wait_for_space();
            }
        }
        // Once broken, always broken.
        let (pe, ce) = (p.error(), c.error());
        if pe.is_some() {
            assert!(p.free_slots().is_err());
            assert_eq!(p.error(), pe);
        }
        if ce.is_some() {
            assert!(c.available().is_err());
            assert_eq!(c.error(), ce);
        }
    }
});
