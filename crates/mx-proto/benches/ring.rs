//! Ring micro-benchmarks: single-thread push+pop of a 64-byte slot,
//! batched push/pop, and a ping-pong round trip between two spinning
//! threads over two rings.
//!
//! `cargo bench -p mx-proto --bench ring -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mx_proto::ring::{Consumer, ControlPage, Direction, HeapRegion, Layout, Producer, Side};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A 64-byte slot, the size of commands and events.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Slot([u64; 8]);

type Region = Arc<HeapRegion>;

/// (ping tx, ping rx, pong tx, pong rx).
type Ends = (
    Producer<Slot, Region>,
    Consumer<Slot, Region>,
    Producer<Slot, Region>,
    Consumer<Slot, Region>,
);

/// Ring 0 frontend -> backend (ping) and ring 1 backend -> frontend
/// (pong), `count` slots each.
fn rings(count: u32) -> Ends {
    let mut layout = Layout::new();
    let ping = layout.add_ring(Direction::FrontToBack, 64, count).unwrap();
    let pong = layout.add_ring(Direction::BackToFront, 64, count).unwrap();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let back = ControlPage::attach(region, &layout, Side::Backend).unwrap();
    (
        front.producer(ping).unwrap(),
        back.consumer(ping).unwrap(),
        back.producer(pong).unwrap(),
        front.consumer(pong).unwrap(),
    )
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));

    let (mut tx, mut rx, _, _) = rings(256);
    let item = Slot([7; 8]);
    // Publish and release once every 32 items, as a batching caller would,
    // with the consumer kept 64 items behind so that it always finds a
    // validated item in its cache: the per-item cost is the two slot copies
    // plus the amortized index traffic. (The state lives outside the
    // closure, which criterion calls several times.)
    assert_eq!(tx.push_batch(&[item; 64]).unwrap(), 64);
    let _ = tx.publish();
    let mut n = 0u32;
    g.bench_function("push_pop_64B", |b| {
        b.iter(|| {
            tx.push(black_box(&item)).unwrap();
            n = n.wrapping_add(1);
            if n.is_multiple_of(32) {
                let _ = tx.publish();
            }
            black_box(rx.pop().unwrap().expect("consumer kept behind"));
            if n.is_multiple_of(32) {
                let _ = rx.release();
            }
        })
    });

    let (mut tx, mut rx, _, _) = rings(256);
    g.bench_function("push_publish_pop_release_64B", |b| {
        // The full protocol per item: two Release stores, two Acquire
        // loads and two SeqCst fences.
        b.iter(|| {
            tx.push(black_box(&item)).unwrap();
            let _ = black_box(tx.publish());
            black_box(rx.pop().unwrap());
            let _ = black_box(rx.release());
        })
    });

    let (mut tx, mut rx, _, _) = rings(256);
    let batch = [item; 32];
    let mut out = [Slot([0; 8]); 32];
    g.throughput(Throughput::Elements(32));
    g.bench_function("batch32_push_pop_64B", |b| {
        b.iter(|| {
            assert_eq!(tx.push_batch(black_box(&batch)).unwrap(), 32);
            let _ = black_box(tx.publish());
            assert_eq!(rx.pop_batch(&mut out).unwrap(), 32);
            let _ = black_box(rx.release());
            black_box(&out);
        })
    });
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let (mut ping_tx, mut ping_rx, mut pong_tx, mut pong_rx) = rings(256);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // The echo side spins on the ping ring and answers on the pong ring.
    let echo = thread::spawn(move || {
        let mut idle = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            match ping_rx.pop().unwrap() {
                Some(v) => {
                    idle = 0;
                    let _ = ping_rx.release();
                    pong_tx.push(&v).unwrap();
                    let _ = pong_tx.publish();
                }
                None => {
                    idle += 1;
                    if idle > 10_000 {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    });
    g.bench_function("round_trip_2_threads_64B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                ping_tx.push(&Slot([i; 8])).unwrap();
                let _ = ping_tx.publish();
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut spins = 0u32;
                loop {
                    if let Some(v) = pong_rx.pop().unwrap() {
                        assert_eq!(v.0[0], i);
                        let _ = pong_rx.release();
                        break;
                    }
                    spins += 1;
                    if spins.is_multiple_of(4096) {
                        assert!(Instant::now() < deadline, "echo thread stuck");
                        thread::yield_now();
                    }
                    std::hint::spin_loop();
                }
            }
            start.elapsed()
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
}

criterion_group!(benches, single_thread, round_trip);
criterion_main!(benches);
