//! Unit tests: FIFO behaviour, wrap-around, batching, notification
//! decisions, a peer writing garbage, and the control page layout.

use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering as StdOrdering};
use std::sync::Arc;

use proptest::prelude::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::layout::{offset, MAGIC, VERSION};
use super::*;

/// A 64-byte slot, the size of commands and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Item {
    seq: u64,
    data: [u64; 7],
}

fn item(seq: u64) -> Item {
    Item {
        seq,
        data: core::array::from_fn(|i| seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64),
    }
}

type Region = Arc<HeapRegion>;

struct Pair {
    region: Region,
    tx: Producer<Item, Region>,
    rx: Consumer<Item, Region>,
}

/// Ring 0: frontend -> backend, `count` slots, all indices at `start`.
/// Ring 1 (unused by the rings under test) follows as a canary area.
fn pair_at(count: u32, start: u32) -> Pair {
    let mut layout = Layout::new();
    let ring = layout.add_ring(Direction::FrontToBack, 64, count).unwrap();
    layout.add_ring(Direction::BackToFront, 64, 64).unwrap();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    if start != 0 {
        poke(&region, index_off(ring, offset::PROD), start);
        poke(&region, index_off(ring, offset::CONS), start);
        poke(
            &region,
            index_off(ring, offset::PROD_EVENT),
            start.wrapping_add(1),
        );
        poke(&region, index_off(ring, offset::CONS_EVENT), start);
    }
    let tx = front.producer::<Item>(ring).unwrap();
    let rx = back.consumer::<Item>(ring).unwrap();
    Pair { region, tx, rx }
}

fn pair(count: u32) -> Pair {
    pair_at(count, 0)
}

fn index_off(ring: usize, field: usize) -> usize {
    offset::INDEX_BLOCK + ring * offset::INDEX_BLOCK_SIZE + field
}

fn word(region: &HeapRegion, off: usize) -> &StdAtomicU32 {
    assert!(off + 4 <= region.len() && off.is_multiple_of(4));
    // SAFETY: in bounds and aligned (checked above, region page-aligned);
    // the region lives as long as the returned reference and is only ever
    // accessed atomically.
    unsafe { StdAtomicU32::from_ptr(region.as_ptr().add(off).cast()) }
}

/// Plays the peer: writes a little-endian word into shared memory.
fn poke(region: &HeapRegion, off: usize, value: u32) {
    word(region, off).store(value.to_le(), StdOrdering::SeqCst);
}

fn peek(region: &HeapRegion, off: usize) -> u32 {
    u32::from_le(word(region, off).load(StdOrdering::SeqCst))
}

fn bytes(region: &HeapRegion, off: usize, len: usize) -> Vec<u8> {
    (off..off + len)
        .step_by(4)
        .flat_map(|o| peek(region, o).to_le_bytes())
        .collect()
}

impl Pair {
    /// Moves everything published to the consumer side and checks it.
    fn drain_expect(&mut self, mut next: u64) -> u64 {
        while let Some(got) = self.rx.pop().unwrap() {
            assert_eq!(got, item(next));
            next += 1;
        }
        next
    }
}

#[test]
fn fifo_full_and_empty() {
    let mut p = pair(4);
    assert_eq!(p.rx.pop(), Ok(None));
    assert_eq!(p.tx.free_slots(), Ok(4));
    for i in 0..4 {
        p.tx.push(&item(i)).unwrap();
    }
    assert_eq!(p.tx.push(&item(4)), Err(PushError::Full));
    // Not visible before publish.
    assert_eq!(p.rx.pop(), Ok(None));
    let _ = p.tx.publish();
    assert_eq!(p.rx.available(), Ok(4));
    assert_eq!(p.drain_expect(0), 4);
    // Popped but not released: still full for the producer.
    assert_eq!(p.tx.push(&item(4)), Err(PushError::Full));
    assert_eq!(p.rx.unreleased(), 4);
    let _ = p.rx.release();
    assert_eq!(p.tx.free_slots(), Ok(4));
    p.tx.push(&item(4)).unwrap();
    let _ = p.tx.publish();
    assert_eq!(p.drain_expect(4), 5);
}

#[test]
fn wraps_across_u32_max() {
    for start in [
        u32::MAX - 2,
        u32::MAX,
        u32::MAX - 37,
        1 << 31,
        (1 << 31) - 3,
    ] {
        let mut p = pair_at(8, start);
        let mut sent = 0u64;
        let mut next = 0u64;
        for round in 0..50u64 {
            let burst = (round % 9) as usize;
            let batch: Vec<Item> = (sent..sent + burst as u64).map(item).collect();
            let n = p.tx.push_batch(&batch).unwrap();
            sent += n as u64;
            let _ = p.tx.publish();
            next = p.drain_expect(next);
            let _ = p.rx.release();
        }
        assert_eq!(next, sent);
        assert!(sent > 100, "start {start:#x}: moved only {sent}");
        let expect = start.wrapping_add(sent as u32);
        assert_eq!(peek(&p.region, index_off(0, offset::PROD)), expect);
        assert_eq!(peek(&p.region, index_off(0, offset::CONS)), expect);
    }
}

#[test]
fn full_across_the_wrap() {
    let mut p = pair_at(4, u32::MAX - 1);
    for i in 0..4 {
        p.tx.push(&item(i)).unwrap();
    }
    assert_eq!(p.tx.push(&item(9)), Err(PushError::Full));
    let _ = p.tx.publish();
    assert_eq!(peek(&p.region, index_off(0, offset::PROD)), 2);
    assert_eq!(p.rx.available(), Ok(4));
    assert_eq!(p.drain_expect(0), 4);
}

#[test]
fn batches() {
    let mut p = pair(8);
    let items: Vec<Item> = (0..10).map(item).collect();
    assert_eq!(p.tx.push_batch(&items), Ok(8));
    assert_eq!(p.tx.unpublished(), 8);
    assert_eq!(p.tx.push_batch(&items[8..]), Ok(0));
    let _ = p.tx.publish();
    let mut out = [item(0); 5];
    assert_eq!(p.rx.pop_batch(&mut out), Ok(5));
    assert_eq!(out.to_vec(), items[..5].to_vec());
    assert_eq!(p.rx.pop_batch(&mut out), Ok(3));
    assert_eq!(out[..3].to_vec(), items[5..8].to_vec());
    assert_eq!(p.rx.pop_batch(&mut out), Ok(0));
    let _ = p.rx.release();
    assert_eq!(p.tx.push_batch(&items[8..]), Ok(2));
    let _ = p.tx.publish();
    assert_eq!(p.rx.pop_batch(&mut out), Ok(2));
    assert_eq!(out[..2].to_vec(), items[8..].to_vec());
}

#[test]
fn slot_bytes_are_the_value_bytes() {
    let mut p = pair(4);
    let mut layout = Layout::new();
    layout.add_ring(Direction::FrontToBack, 64, 4).unwrap();
    let area = layout.rings[0].unwrap().area_offset as usize;
    for i in 0..6 {
        p.tx.push(&item(100 + i)).unwrap();
        let _ = p.tx.publish();
        let slot = (i as usize) % 4;
        assert_eq!(
            bytes(&p.region, area + 64 * slot, 64),
            item(100 + i).as_bytes()
        );
        assert_eq!(p.rx.pop(), Ok(Some(item(100 + i))));
        let _ = p.rx.release();
    }
}

#[test]
fn cached_index_is_reloaded_only_when_needed() {
    let mut p = pair(4);
    assert_eq!(p.tx.free_slots(), Ok(4));
    // The consumer scribbles an impossible `cons`: the producer does not
    // notice while its cached copy says there is room...
    poke(&p.region, index_off(0, offset::CONS), 1000);
    for i in 0..4 {
        p.tx.push(&item(i)).unwrap();
    }
    // ...and does as soon as it has to reload.
    assert!(matches!(
        p.tx.push(&item(4)),
        Err(PushError::Ring(RingError::Corrupt {
            index: PeerIndex::Cons,
            observed: 1000,
            ..
        }))
    ));
}

#[test]
fn polling_consumer_is_never_kicked() {
    let mut p = pair(16);
    // The consumer starts out waiting (prod_event = 1): one kick.
    p.tx.push(&item(0)).unwrap();
    assert_eq!(p.tx.publish(), Notify::Yes);
    let mut next = p.drain_expect(0);
    let _ = p.rx.release();
    // From now on it only polls: never kicked, whatever the batch size.
    for round in 0..1000u64 {
        for _ in 0..=(round % 16) {
            p.tx.push(&item(next)).unwrap();
            next += 1;
        }
        assert_eq!(p.tx.publish(), Notify::No, "round {round}");
        let _ = p.drain_expect(next - 1 - round % 16);
        assert_eq!(p.rx.release(), Notify::No);
    }
}

#[test]
fn sleeping_consumer_is_kicked_once_per_sleep() {
    let mut p = pair(16);
    let mut sent = 0;
    let mut next = 0;
    for _ in 0..5 {
        assert_eq!(p.rx.prepare_to_sleep(), Ok(true));
        let cons = peek(&p.region, index_off(0, offset::CONS));
        assert_eq!(
            peek(&p.region, index_off(0, offset::PROD_EVENT)),
            cons.wrapping_add(1)
        );
        // A batch of three: one kick.
        for _ in 0..3 {
            p.tx.push(&item(sent)).unwrap();
            sent += 1;
        }
        assert_eq!(p.tx.publish(), Notify::Yes);
        // Nothing new: no kick. More items while it is awake: no kick.
        assert_eq!(p.tx.publish(), Notify::No);
        p.tx.push(&item(sent)).unwrap();
        sent += 1;
        assert_eq!(p.tx.publish(), Notify::No);
        next = p.drain_expect(next);
        let _ = p.rx.release();
    }
    assert_eq!(next, sent);
}

#[test]
fn prepare_to_sleep_sees_items_that_raced_in() {
    let mut p = pair(8);
    let _ = p.rx.prepare_to_sleep();
    p.tx.push(&item(0)).unwrap();
    let _ = p.tx.publish();
    p.drain_expect(0);
    let _ = p.rx.release();
    // The consumer found the ring empty (cached), then the producer
    // published without kicking (the consumer had not re-armed)...
    assert_eq!(p.rx.pop(), Ok(None));
    p.tx.push(&item(1)).unwrap();
    assert_eq!(p.tx.publish(), Notify::No);
    // ...so the final check must refuse to sleep.
    assert_eq!(p.rx.prepare_to_sleep(), Ok(false));
    assert_eq!(p.drain_expect(1), 2);
}

#[test]
fn kicked_across_the_wrap() {
    let mut p = pair_at(8, u32::MAX);
    assert_eq!(p.rx.prepare_to_sleep(), Ok(true));
    assert_eq!(peek(&p.region, index_off(0, offset::PROD_EVENT)), 0);
    p.tx.push(&item(0)).unwrap();
    assert_eq!(p.tx.publish(), Notify::Yes);
}

#[test]
fn producer_waiting_for_space_is_kicked_once() {
    let mut p = pair(4);
    assert_eq!(p.tx.prepare_to_wait_for_space(), Ok(false));
    for i in 0..4 {
        p.tx.push(&item(i)).unwrap();
    }
    let _ = p.tx.publish();
    // A consumer that releases while the producer is not waiting: no kick.
    assert_eq!(p.rx.pop(), Ok(Some(item(0))));
    assert_eq!(p.rx.release(), Notify::No);
    p.tx.push(&item(4)).unwrap();
    let _ = p.tx.publish();
    assert_eq!(p.tx.prepare_to_wait_for_space(), Ok(true));
    // cons_event = prod - size + 1: one slot is enough.
    assert_eq!(peek(&p.region, index_off(0, offset::CONS_EVENT)), 5 - 4 + 1);
    assert_eq!(p.rx.pop(), Ok(Some(item(1))));
    assert_eq!(p.rx.release(), Notify::Yes);
    assert_eq!(p.rx.pop(), Ok(Some(item(2))));
    assert_eq!(p.rx.release(), Notify::No);
    assert_eq!(p.tx.prepare_to_wait_for_space(), Ok(false));
}

#[test]
fn wait_for_space_sees_a_release_that_raced_in() {
    let mut p = pair(2);
    p.tx.push(&item(0)).unwrap();
    p.tx.push(&item(1)).unwrap();
    let _ = p.tx.publish();
    assert_eq!(p.tx.push(&item(2)), Err(PushError::Full));
    assert_eq!(p.rx.pop(), Ok(Some(item(0))));
    assert_eq!(p.rx.release(), Notify::No);
    assert_eq!(p.tx.prepare_to_wait_for_space(), Ok(false));
}

fn assert_corrupt<T: fmt::Debug>(r: Result<T, RingError>, which: PeerIndex) {
    match r {
        Err(RingError::Corrupt { index, .. }) if index == which => {}
        other => panic!("expected corrupt {which:?}, got {other:?}"),
    }
}

#[test]
fn prod_beyond_ring_size_is_corrupt_and_sticky() {
    let mut p = pair(8);
    poke(&p.region, index_off(0, offset::PROD), 9);
    assert_corrupt(p.rx.pop(), PeerIndex::Prod);
    // Latched, even after the peer puts a sane value back.
    poke(&p.region, index_off(0, offset::PROD), 0);
    assert_corrupt(p.rx.pop(), PeerIndex::Prod);
    assert_corrupt(p.rx.available(), PeerIndex::Prod);
    assert_corrupt(p.rx.prepare_to_sleep(), PeerIndex::Prod);
    let mut out = [item(0); 2];
    assert_corrupt(p.rx.pop_batch(&mut out), PeerIndex::Prod);
    assert!(p.rx.error().is_some());
}

#[test]
fn prod_exactly_full_is_fine_one_more_is_not() {
    let mut p = pair_at(8, u32::MAX - 3);
    poke(
        &p.region,
        index_off(0, offset::PROD),
        (u32::MAX - 3).wrapping_add(8),
    );
    assert_eq!(p.rx.available(), Ok(8));
    // Popped but not released: the producer may not go past released + 8.
    let mut out = [item(0); 8];
    assert_eq!(p.rx.pop_batch(&mut out), Ok(8));
    poke(
        &p.region,
        index_off(0, offset::PROD),
        (u32::MAX - 3).wrapping_add(9),
    );
    assert_corrupt(p.rx.pop(), PeerIndex::Prod);
}

#[test]
fn prod_moving_backwards_is_corrupt() {
    let mut p = pair(8);
    for i in 0..3 {
        p.tx.push(&item(i)).unwrap();
    }
    let _ = p.tx.publish();
    assert_eq!(p.rx.available(), Ok(3));
    poke(&p.region, index_off(0, offset::PROD), 1);
    // The three validated items are still delivered...
    assert_eq!(p.drain_expect_ok(0), 3);
    // ...then the reload notices.
    assert_corrupt(p.rx.pop(), PeerIndex::Prod);
}

impl Pair {
    fn drain_expect_ok(&mut self, mut next: u64) -> u64 {
        while self.rx.available_cached() > 0 {
            assert_eq!(self.rx.pop(), Ok(Some(item(next))));
            next += 1;
        }
        next
    }
}

#[test]
fn cons_ahead_of_prod_is_corrupt() {
    let mut p = pair(8);
    p.tx.push(&item(0)).unwrap();
    let _ = p.tx.publish();
    poke(&p.region, index_off(0, offset::CONS), 2);
    assert_corrupt(p.tx.free_slots(), PeerIndex::Cons);
    assert!(matches!(p.tx.push(&item(1)), Err(PushError::Ring(_))));
    assert_corrupt(p.tx.prepare_to_wait_for_space(), PeerIndex::Cons);
    assert_corrupt(p.tx.push_batch(&[item(1)]), PeerIndex::Cons);
}

#[test]
fn cons_past_published_is_corrupt() {
    let mut p = pair(8);
    for i in 0..3 {
        p.tx.push(&item(i)).unwrap();
    }
    let _ = p.tx.publish();
    p.tx.push(&item(3)).unwrap(); // pushed, not published
    poke(&p.region, index_off(0, offset::CONS), 4);
    assert_corrupt(p.tx.free_slots(), PeerIndex::Cons);
}

#[test]
fn cons_moving_backwards_is_corrupt() {
    let mut p = pair(8);
    for i in 0..4 {
        p.tx.push(&item(i)).unwrap();
    }
    let _ = p.tx.publish();
    p.drain_expect(0);
    let _ = p.rx.release();
    assert_eq!(p.tx.free_slots(), Ok(8));
    poke(&p.region, index_off(0, offset::CONS), 2);
    assert_corrupt(p.tx.free_slots(), PeerIndex::Cons);
}

#[test]
fn garbage_event_words_only_change_notifications() {
    let mut p = pair(8);
    for (i, junk) in [0u32, 1, 7, u32::MAX, 0x8000_0000, 0xa5a5_a5a5]
        .into_iter()
        .enumerate()
    {
        poke(&p.region, index_off(0, offset::PROD_EVENT), junk);
        poke(&p.region, index_off(0, offset::CONS_EVENT), junk);
        p.tx.push(&item(i as u64)).unwrap();
        let _ = p.tx.publish();
        assert_eq!(p.rx.pop(), Ok(Some(item(i as u64))));
        let _ = p.rx.release();
    }
}

/// One step of a random schedule in which the peer may scribble.
#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    Publish,
    Pop(usize),
    Release,
    Sleep,
    WaitForSpace,
    /// Write `value` into index word `field` (0..4) of the ring.
    Scribble(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..12).prop_map(Op::Push),
        Just(Op::Publish),
        (0usize..12).prop_map(Op::Pop),
        Just(Op::Release),
        Just(Op::Sleep),
        Just(Op::WaitForSpace),
        (
            0usize..4,
            prop_oneof![
                any::<u32>(),
                0u32..20,
                (0u32..20).prop_map(|v| v.wrapping_sub(10))
            ]
        )
            .prop_map(|(f, v)| Op::Scribble(f, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Whatever the peer writes into the index words, in any order with any
    /// operation: no panic, counts stay within the ring, the canary ring's
    /// slot area is never touched, and until the first scribble the items
    /// arrive exactly in order.
    #[test]
    fn garbage_indices_never_panic(start in any::<u32>(), ops in proptest::collection::vec(op(), 1..200)) {
        let mut p = pair_at(8, start);
        let mut layout = Layout::new();
        layout.add_ring(Direction::FrontToBack, 64, 8).unwrap();
        layout.add_ring(Direction::BackToFront, 64, 64).unwrap();
        let canary_area = layout.rings[1].unwrap().area_offset as usize;
        let (mut sent, mut next, mut scribbled) = (0u64, 0u64, false);
        for op in ops {
            match op {
                Op::Push(n) => {
                    let batch: Vec<Item> = (sent..sent + n as u64).map(item).collect();
                    if let Ok(k) = p.tx.push_batch(&batch) {
                        sent += k as u64;
                    }
                }
                Op::Publish => { let _ = p.tx.publish(); }
                Op::Pop(n) => {
                    let mut out = vec![item(0); n];
                    if let Ok(k) = p.rx.pop_batch(&mut out) {
                        for got in &out[..k] {
                            if !scribbled {
                                prop_assert_eq!(*got, item(next));
                            }
                            next += 1;
                        }
                    }
                }
                Op::Release => { let _ = p.rx.release(); }
                Op::Sleep => {
                    if p.rx.unreleased() == 0 {
                        let _ = p.rx.prepare_to_sleep();
                    }
                }
                Op::WaitForSpace => {
                    if p.tx.unpublished() == 0 {
                        let _ = p.tx.prepare_to_wait_for_space();
                    }
                }
                Op::Scribble(field, value) => {
                    scribbled = true;
                    poke(&p.region, index_off(0, field * 0x40), value);
                }
            }
            if let Ok(free) = p.tx.free_slots() {
                prop_assert!(free <= 8);
            }
            if let Ok(avail) = p.rx.available() {
                prop_assert!(avail <= 8);
            }
        }
        prop_assert!(bytes(&p.region, canary_area, 64 * 64).iter().all(|&b| b == 0));
    }
}

// ---- control page ----

fn two_ring_layout() -> Layout {
    let mut layout = Layout::new();
    assert_eq!(layout.add_ring(Direction::FrontToBack, 64, 256), Ok(0));
    assert_eq!(layout.add_ring(Direction::BackToFront, 64, 512), Ok(1));
    layout
}

#[test]
fn control_page_byte_layout_is_fixed() {
    let layout = two_ring_layout();
    assert_eq!(layout.region_len(), 4096 + 64 * 256 + 64 * 512);
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();

    let page = bytes(&region, 0, CONTROL_PAGE_SIZE);
    assert_eq!(&page[0..4], b"MXR1");
    assert_eq!(MAGIC, 0x3152_584d);
    let le = |off: usize| u32::from_le_bytes(page[off..off + 4].try_into().unwrap());
    assert_eq!(le(0x004), VERSION);
    assert_eq!(le(0x004), 1);
    assert_eq!(le(0x008), Features::EVENT_IDX.bits());
    assert_eq!(
        [le(0x040), le(0x044), le(0x048), le(0x04c)],
        [1, 64, 256, 0x1000]
    );
    assert_eq!(
        [le(0x050), le(0x054), le(0x058), le(0x05c)],
        [2, 64, 512, 0x5000]
    );
    // prod_event = 1 for both used rings; every other byte zero.
    let mut expect_nonzero = vec![0x000, 0x004, 0x008, 0x040, 0x044, 0x048, 0x04c];
    expect_nonzero.extend([0x050, 0x054, 0x058, 0x05c, 0x140, 0x240]);
    assert_eq!(le(0x140), 1);
    assert_eq!(le(0x240), 1);
    for off in (0..CONTROL_PAGE_SIZE).step_by(4) {
        if !expect_nonzero.contains(&off) {
            assert_eq!(le(off), 0, "offset {off:#x}");
        }
    }

    // The index words sit where the table says, in little-endian.
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    let mut cmd = front.producer::<Item>(0).unwrap();
    let mut cmd_rx = back.consumer::<Item>(0).unwrap();
    let mut evt = back.producer::<Item>(1).unwrap();
    let mut evt_rx = front.consumer::<Item>(1).unwrap();
    for i in 0..3 {
        cmd.push(&item(i)).unwrap();
    }
    let _ = cmd.publish();
    evt.push(&item(9)).unwrap();
    let _ = evt.publish();
    assert_eq!(bytes(&region, 0x100, 4), [3, 0, 0, 0]);
    assert_eq!(bytes(&region, 0x200, 4), [1, 0, 0, 0]);
    assert_eq!(bytes(&region, 0x1000, 64), item(0).as_bytes());
    assert_eq!(bytes(&region, 0x1040, 64), item(1).as_bytes());
    assert_eq!(bytes(&region, 0x5000, 64), item(9).as_bytes());
    let mut out = [item(0); 3];
    assert_eq!(cmd_rx.pop_batch(&mut out), Ok(3));
    let _ = cmd_rx.release();
    assert_eq!(peek(&region, 0x180), 3);
    assert_eq!(cmd_rx.prepare_to_sleep(), Ok(true));
    assert_eq!(peek(&region, 0x140), 4);
    assert_eq!(evt_rx.pop(), Ok(Some(item(9))));
    let _ = evt_rx.release();
    assert_eq!(peek(&region, 0x280), 1);
    for _ in 0..512 {
        evt.push(&item(1)).unwrap();
    }
    let _ = evt.publish();
    assert_eq!(evt.prepare_to_wait_for_space(), Ok(true));
    assert_eq!(peek(&region, 0x2c0), 513u32.wrapping_sub(512) + 1);
}

#[test]
fn init_zeroes_stale_memory() {
    let layout = two_ring_layout();
    let region = Arc::new(HeapRegion::new(layout.region_len() + 4096));
    for off in (0..region.len()).step_by(4) {
        poke(&region, off, 0xa5a5_a5a5);
    }
    let _front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let all = bytes(&region, 0, layout.region_len());
    let header = [0x000..0x00c, 0x040..0x060, 0x140..0x144, 0x240..0x244];
    for (off, b) in all.iter().enumerate() {
        if *b != 0 {
            assert!(
                header.iter().any(|r| r.contains(&off)),
                "stale byte at {off:#x}"
            );
        }
    }
    // Memory past the layout is not the control page's business.
    assert_eq!(peek(&region, layout.region_len()), 0xa5a5_a5a5);
}

#[test]
fn attach_validates_the_header() {
    let layout = two_ring_layout();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let attach = |expected: &Layout| {
        ControlPage::attach(region.clone(), expected, Side::Backend).map(|_| ())
    };

    // Never initialized.
    assert_eq!(attach(&layout), Err(LayoutError::BadMagic { found: 0 }));
    ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    assert_eq!(attach(&layout), Ok(()));

    poke(&region, offset::VERSION, 2);
    assert_eq!(
        attach(&layout),
        Err(LayoutError::UnsupportedVersion { found: 2 })
    );
    poke(&region, offset::VERSION, 1);

    // An unknown feature bit, then one the caller knows about.
    poke(&region, offset::FEATURES, 0x1_0001);
    assert_eq!(
        attach(&layout),
        Err(LayoutError::UnknownFeatures { bits: 0x1_0000 })
    );
    let mut knows = layout;
    knows.features |= Features::from_bits_retain(0x1_0000);
    assert_eq!(attach(&knows), Ok(()));
    poke(&region, offset::FEATURES, 0);
    assert_eq!(
        attach(&layout),
        Err(LayoutError::MissingFeatures { bits: 1 })
    );
    poke(&region, offset::FEATURES, 1);

    // A descriptor that differs from what the backend expects.
    poke(
        &region,
        offset::RING_DESC + offset::DESC_SLOT_COUNT,
        1 << 20,
    );
    assert_eq!(
        attach(&layout),
        Err(LayoutError::RingMismatch {
            ring: 0,
            found: [1, 64, 1 << 20, 0x1000]
        })
    );
    poke(&region, offset::RING_DESC + offset::DESC_SLOT_COUNT, 256);
    poke(&region, offset::RING_DESC + 2 * offset::RING_DESC_SIZE, 7);
    assert_eq!(
        attach(&layout),
        Err(LayoutError::RingMismatch {
            ring: 2,
            found: [7, 0, 0, 0]
        })
    );
    poke(&region, offset::RING_DESC + 2 * offset::RING_DESC_SIZE, 0);

    poke(&region, offset::MAGIC, 0x3152_584e);
    assert_eq!(
        attach(&layout),
        Err(LayoutError::BadMagic { found: 0x3152_584e })
    );
    poke(&region, offset::MAGIC, MAGIC);
    assert_eq!(attach(&layout), Ok(()));

    // A header rewritten after attach changes nothing on this side.
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    poke(
        &region,
        offset::RING_DESC + offset::DESC_SLOT_COUNT,
        1 << 30,
    );
    assert_eq!(back.ring(0).unwrap().slot_count, 256);
    assert_eq!(back.consumer::<Item>(0).unwrap().capacity(), 256);
}

#[test]
fn region_must_fit_and_be_aligned() {
    let layout = two_ring_layout();
    let small = HeapRegion::new(layout.region_len() - 4096);
    assert_eq!(
        ControlPage::init(&small, &layout, Side::Frontend).map(|_| ()),
        Err(LayoutError::RegionTooSmall {
            need: layout.region_len(),
            have: layout.region_len() - 4096
        })
    );

    struct Shifted(HeapRegion);
    // SAFETY: forwards to a valid region, 64 bytes in (deliberately not
    // page-aligned, which `init` must refuse before touching anything).
    unsafe impl SharedRegion for Shifted {
        fn as_ptr(&self) -> *mut u8 {
            // SAFETY: 64 < len.
            unsafe { self.0.as_ptr().add(64) }
        }
        fn len(&self) -> usize {
            self.0.len() - 64
        }
    }
    let shifted = Shifted(HeapRegion::new(layout.region_len() + 4096));
    assert_eq!(
        ControlPage::init(&shifted, &layout, Side::Frontend).map(|_| ()),
        Err(LayoutError::Misaligned)
    );
}

#[test]
fn layout_validation() {
    let mut layout = Layout::new();
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 64, 3),
        Err(LayoutError::BadSlotCount { ring: 0, count: 3 })
    );
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 64, 0),
        Err(LayoutError::BadSlotCount { ring: 0, count: 0 })
    );
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 12, 4),
        Err(LayoutError::BadSlotSize { ring: 0, size: 12 })
    );
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 0, 4),
        Err(LayoutError::BadSlotSize { ring: 0, size: 0 })
    );
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 4096, 1 << 20),
        Err(LayoutError::AreaTooLarge { ring: 0 })
    );
    for _ in 0..MAX_RINGS {
        layout.add_ring(Direction::FrontToBack, 8, 1).unwrap();
    }
    assert_eq!(layout.region_len(), 5 * 4096);
    assert_eq!(layout.validate(), Ok(()));
    assert_eq!(
        layout.add_ring(Direction::FrontToBack, 8, 1),
        Err(LayoutError::TooManyRings)
    );

    let spec = |area_offset| RingSpec {
        direction: Direction::BackToFront,
        slot_size: 64,
        slot_count: 128,
        area_offset,
    };
    let mut bad = Layout::new();
    bad.rings[0] = Some(spec(0));
    assert_eq!(
        bad.validate(),
        Err(LayoutError::BadAreaOffset { ring: 0, offset: 0 })
    );
    bad.rings[0] = Some(spec(0x1800));
    assert_eq!(
        bad.validate(),
        Err(LayoutError::BadAreaOffset {
            ring: 0,
            offset: 0x1800
        })
    );
    bad.rings[0] = Some(spec(0x1000));
    bad.rings[2] = Some(spec(0x2000)); // ring 0's area is 0x1000..0x3000
    assert_eq!(
        bad.validate(),
        Err(LayoutError::AreasOverlap { ring: 2, other: 0 })
    );
    bad.rings[2] = Some(spec(0x3000));
    assert_eq!(bad.validate(), Ok(()));
    let region = HeapRegion::new(bad.region_len());
    assert!(ControlPage::init(&region, &bad, Side::Backend).is_ok());
}

#[test]
fn ring_ends_are_checked_against_side_and_type() {
    let layout = two_ring_layout();
    let region = HeapRegion::new(layout.region_len());
    let front = ControlPage::init(&region, &layout, Side::Frontend).unwrap();
    assert_eq!(
        front.consumer::<Item>(0).map(|_| ()),
        Err(LayoutError::WrongSide {
            ring: 0,
            side: Side::Frontend
        })
    );
    assert_eq!(
        front.producer::<Item>(1).map(|_| ()),
        Err(LayoutError::WrongSide {
            ring: 1,
            side: Side::Frontend
        })
    );
    assert_eq!(
        front.producer::<[u64; 4]>(0).map(|_| ()),
        Err(LayoutError::SlotSizeMismatch {
            ring: 0,
            layout: 64,
            slot_type: 32
        })
    );
    assert_eq!(
        front.producer::<Item>(2).map(|_| ()),
        Err(LayoutError::NoSuchRing { ring: 2 })
    );
    assert_eq!(
        front.producer::<Item>(99).map(|_| ()),
        Err(LayoutError::NoSuchRing { ring: 99 })
    );
    assert_eq!(front.features(), Features::EVENT_IDX);
    assert_eq!(front.side(), Side::Frontend);
    assert!(front.producer::<Item>(0).is_ok());
    assert!(front.consumer::<Item>(1).is_ok());
}

#[test]
fn raw_constructors_work_without_a_control_page() {
    let region = HeapRegion::new(2 * 4096);
    let base = NonNull::new(region.as_ptr()).unwrap();
    // SAFETY: the block (first 256 bytes) and the slot area (second page,
    // 16 slots of 8 bytes) are inside `region`, which outlives both ends
    // and is only accessed atomically; one producer and one consumer.
    let (mut tx, mut rx) = unsafe {
        (
            Producer::<u64>::from_raw(base, base.add(4096), 16),
            Consumer::<u64>::from_raw(base, base.add(4096), 16),
        )
    };
    for i in 0..40u64 {
        tx.push(&i).unwrap();
        let _ = tx.publish();
        assert_eq!(rx.pop(), Ok(Some(i)));
        let _ = rx.release();
    }
    assert_eq!(peek(&region, 0), 40);
    assert_eq!(peek(&region, 0x80), 40);
    assert!(format!("{tx:?} {rx:?}").contains("prod: 40"));
}

#[test]
#[should_panic(expected = "power of two")]
fn raw_constructor_rejects_bad_count() {
    let region = HeapRegion::new(2 * 4096);
    let base = NonNull::new(region.as_ptr()).unwrap();
    // SAFETY: as above; the constructor panics before using the memory.
    let _ = unsafe { Producer::<u64>::from_raw(base, base.add(4096), 12) };
}

#[test]
fn errors_display() {
    let e = RingError::Corrupt {
        index: PeerIndex::Prod,
        observed: 9,
        low: 0,
        high: 8,
    };
    assert!(e.to_string().contains("Prod index 0x9"));
    assert_eq!(PushError::Full.to_string(), "ring full");
    assert!(LayoutError::BadMagic { found: 1 }
        .to_string()
        .contains("magic"));
    assert!(Notify::Yes.is_needed() && !bool::from(Notify::No));
}

/// A 192-byte slot, the size of commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Big {
    words: [u64; 24],
}

#[test]
fn prefix_pushes_and_pops_copy_only_the_bytes_in_use() {
    let mut layout = Layout::new();
    let ring = layout.add_ring(Direction::FrontToBack, 192, 1).unwrap();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    let mut tx = front.producer::<Big>(ring).unwrap();
    let mut rx = back.consumer::<Big>(ring).unwrap();
    let area = layout.rings[ring].unwrap().area_offset as usize;
    let full = Big {
        words: [0xaaaa_aaaa_aaaa_aaaa; 24],
    };
    tx.push(&full).unwrap();
    let _ = tx.publish();
    assert_eq!(rx.pop(), Ok(Some(full)));
    let _ = rx.release();
    // One slot: the next push reuses it. 13 bytes -> 2 words written.
    let mut short = Big { words: [0; 24] };
    short.words[0] = 1;
    short.words[1] = 2;
    tx.push_prefix(&short, 13).unwrap();
    let _ = tx.publish();
    assert_eq!(bytes(&region, area, 16), short.as_bytes()[..16]);
    assert!(
        bytes(&region, area + 16, 176).iter().all(|&b| b == 0xaa),
        "the unused tail was not written"
    );
    // The consumer reads what `used` says, the rest is zero.
    let mut seen = 0;
    let got = rx
        .pop_prefix(|head| {
            seen = head.len();
            100
        })
        .unwrap()
        .unwrap();
    assert_eq!(seen, 192, "used sees the whole value, zero past the head");
    assert_eq!(&got.words[..2], &[1, 2]);
    assert!(got.words[2..13].iter().all(|&w| w == 0xaaaa_aaaa_aaaa_aaaa));
    assert!(got.words[13..].iter().all(|&w| w == 0), "past `used`: zero");
    let _ = rx.release();
    assert_eq!(rx.pop_prefix(|_| 192), Ok(None));
}

#[test]
fn ready_says_what_a_pop_would_find_and_pop_into_overwrites_stale_bytes() {
    let mut layout = Layout::new();
    let ring = layout.add_ring(Direction::FrontToBack, 192, 2).unwrap();
    let region = Arc::new(HeapRegion::new(layout.region_len()));
    let front = ControlPage::init(region.clone(), &layout, Side::Frontend).unwrap();
    let back = ControlPage::attach(region.clone(), &layout, Side::Backend).unwrap();
    let mut tx = front.producer::<Big>(ring).unwrap();
    let mut rx = back.consumer::<Big>(ring).unwrap();
    assert_eq!(rx.ready(), Ok(false));
    let mut out = Big {
        words: [0x5555_5555_5555_5555; 24],
    };
    // Empty: `out` is left as it was.
    assert_eq!(rx.pop_prefix_into(&mut out, |_| 192), Ok(false));
    assert!(out.words.iter().all(|&w| w == 0x5555_5555_5555_5555));
    // Pushed but not published: still not ready.
    let mut v = Big { words: [0; 24] };
    v.words[0] = 7;
    tx.push(&v).unwrap();
    assert_eq!(rx.ready(), Ok(false));
    let _ = tx.publish();
    assert_eq!(rx.ready(), Ok(true));
    assert_eq!(rx.ready(), Ok(true), "asking again pops nothing");
    // The popped prefix, and zero past it: nothing of the old `out`.
    assert_eq!(rx.pop_prefix_into(&mut out, |_| 8), Ok(true));
    assert_eq!(out.words[0], 7);
    assert!(out.words[1..].iter().all(|&w| w == 0));
    assert_eq!(rx.ready(), Ok(false));
}
