//! What the machine can do at all: single-thread `memcpy` bandwidth and
//! the cross-core cache-line round trip (which also tells the hypervisor's
//! vCPU placement: on the project's VM it is bimodal, ~0.03 us "near" and
//! ~0.16 us "far", for a whole run).

use crate::pingpong::Plan;
use crate::record::{summarize, Record};
use crate::shm::{map, memfd, Shm};
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `memcpy` bandwidth for each size (distinct, pre-faulted source and
/// destination; MB/s = bytes copied per second, each byte read once and
/// written once).
pub fn memcpy_bw(plan: Plan, sizes: &[usize]) -> Vec<Record> {
    let (trials, min_time) = if plan.quick {
        (1, Duration::from_millis(2))
    } else {
        (5, Duration::from_millis(40))
    };
    sizes
        .iter()
        .map(|&size| {
            let src = vec![1u8; size];
            let mut dst = vec![2u8; size];
            dst.copy_from_slice(&src);
            let mut v: Vec<f64> = (0..trials)
                .map(|_| {
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < min_time {
                        for _ in 0..8 {
                            dst.copy_from_slice(black_box(&src));
                            black_box(&mut dst);
                        }
                        n += 8;
                    }
                    (size as u64 * n) as f64 / t.elapsed().as_secs_f64() / 1e6
                })
                .collect();
            let s = summarize(&mut v);
            Record::new(
                "memcpy",
                "1 thread",
                Some(size as u64),
                "copy_bw",
                s.median,
                Some(s.min),
                "MB/s",
            )
            .with_n(s.n)
        })
        .collect()
}

fn line(shm: &Shm) -> &AtomicU64 {
    // SAFETY: offset 0 of a page-aligned mapping that outlives the borrow;
    // only ever accessed atomically.
    unsafe { &*shm.base().cast::<AtomicU64>() }
}

/// Child role `cacheline FD ITERS`: answer every odd value with the next
/// even one.
pub fn cacheline_pong(fd: &str, iters: &str) {
    // SAFETY: the descriptor was inherited for this purpose.
    let file = unsafe { std::fs::File::from_raw_fd(fd.parse().expect("fd")) };
    let shm = map(&file, 4096);
    let l = line(&shm);
    let n: u64 = iters.parse().expect("iterations");
    let t0 = Instant::now();
    for k in 0..n {
        let want = 2 * k + 1;
        let mut spins = 0u32;
        while l.load(Ordering::Acquire) != want {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins == 0 && t0.elapsed() > Duration::from_secs(20) {
                return;
            }
        }
        l.store(want + 1, Ordering::Release);
    }
}

/// Two processes spinning on one cache line: half round trip (us), median
/// and p99 of batches of 64 round trips. Nothing is pinned: this is where the scheduler and the
/// hypervisor put the two processes.
pub fn cacheline_probe(iters: u64) -> Option<Record> {
    let file = memfd(4096);
    let shm = map(&file, 4096);
    let l = line(&shm);
    let warm = iters / 10 + 100;
    let total = warm + iters;
    let mut child = crate::procs::child_cmd(&[
        "cacheline",
        &file.as_raw_fd().to_string(),
        &total.to_string(),
    ])
    .spawn()
    .ok()?;
    // Timed in batches of 64 round trips (a clock read costs about as much
    // as a near round trip).
    const BATCH: u64 = 64;
    let mut half = Vec::with_capacity((iters / BATCH) as usize + 1);
    let t0 = Instant::now();
    let mut a = Instant::now();
    for k in 0..total {
        if k >= warm && (k - warm).is_multiple_of(BATCH) {
            if k > warm {
                half.push(a.elapsed().as_nanos() as f64 / 2000.0 / BATCH as f64);
            }
            a = Instant::now();
        }
        l.store(2 * k + 1, Ordering::Release);
        let mut spins = 0u32;
        while l.load(Ordering::Acquire) != 2 * k + 2 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins == 0 && t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let _ = child.wait();
    let s = summarize(&mut half);
    Some(
        Record::new(
            "machine",
            "2 processes spinning",
            None,
            "cacheline_half_rtt",
            s.median,
            Some(s.p99),
            "us",
        )
        .with_n(s.n),
    )
}
