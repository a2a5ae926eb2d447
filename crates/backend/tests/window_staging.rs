//! Same-host pulls from a staging window (a large send larger than its
//! pool room), through the real backend, with the sender's library played
//! by hand: the backend asks for each block a pull reaches (`StageNeeded`),
//! the sender copies it into the slot named and answers (`RegionStage`);
//! one pull longer than the window is copied as blocks come. Answers that
//! match no request are ignored and counted; a sender that never answers
//! fails only the pull of its window, after `staging_wait`, while the
//! puller's other commands go on.

use frontend::{Doorbell, Frontend};
use mx_proto::msg::command::{Pull, RawSeg, RegionRegister, RegionStage, RegionWindow};
use mx_proto::msg::control::COUNTER_LABELS;
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{Command, Dest, Event, RdmaRef};
use mx_proto::platform::local::LocalGuest;
use std::time::{Duration, Instant};

mod pull_pair;
use pull_pair::{consumed, post, Ep, PullPair};

const WAIT: Duration = Duration::from_millis(400);
const BLOCK: usize = 64 * 1024;
const SLOTS: usize = 2;
const BLOCKS: usize = 7;

fn next_event(ep: &mut Ep, bell: &Doorbell<LocalGuest>, limit: Duration) -> Option<Event<'static>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(slot) = ep.next_event().unwrap() {
            ep.release_events().unwrap();
            let ev = Event::parse(&slot).unwrap();
            // Only owned variants come back from here.
            return Some(match ev {
                Event::PullDone {
                    cookie,
                    status,
                    transferred,
                } => Event::PullDone {
                    cookie,
                    status,
                    transferred,
                },
                Event::StageNeeded {
                    region_id,
                    gen,
                    slot,
                    block,
                } => Event::StageNeeded {
                    region_id,
                    gen,
                    slot,
                    block,
                },
                other => panic!("unexpected event {other:?}"),
            });
        }
        if Instant::now() >= deadline {
            return None;
        }
        if ep.prepare_to_sleep().unwrap() {
            let _ = bell.wait(Some(Duration::from_millis(5)));
        }
    }
}

fn counter(fe: &Frontend<LocalGuest>, id: u8, label: &str) -> u64 {
    let i = COUNTER_LABELS.iter().position(|l| *l == label).unwrap();
    fe.counters(id).unwrap()[i]
}

#[test]
fn a_pull_longer_than_the_window_is_served_as_the_sender_stages() {
    let PullPair {
        dir,
        be,
        fe_s,
        fe_p: _fe_p,
        mut sender,
        sbell,
        mut puller,
        pbell,
        me,
    } = PullPair::new("window", WAIT);
    let len = BLOCKS * BLOCK - 1000;
    let msg: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // The window's slots, holding blocks 0 and 1 to begin with.
    let mut slots = vec![0u8; SLOTS * BLOCK];
    slots.copy_from_slice(&msg[..SLOTS * BLOCK]);
    let open_window = |ep: &mut Ep, id: u8, gen: u8, slots: &[u8]| {
        let segs = [RawSeg::new(slots.as_ptr() as u64, slots.len() as u32)];
        post(
            ep,
            &Command::RegionRegister(RegionRegister::new(id, true, true, 0, &segs)),
        );
        post(
            ep,
            &Command::RegionWindow(RegionWindow {
                region_id: id,
                gen,
                block: BLOCK as u32,
                msg_len: len as u32,
            }),
        );
        consumed(ep);
    };
    open_window(&mut sender, 9, 5, &slots);
    let sink = vec![0u8; len];
    let segs = [RawSeg::new(sink.as_ptr() as u64, len as u32)];
    post(
        &mut puller,
        &Command::RegionRegister(RegionRegister::new(4, true, true, 0, &segs)),
    );
    consumed(&mut puller);
    let session = sender.session();
    let pull = move |cookie, window: u8, gen: u8, offset: usize, length: usize| {
        Command::Pull(Pull {
            dest: Dest {
                peer: me,
                endpoint: 1,
            },
            session,
            length: length as u32,
            cookie,
            local_region: 4,
            local_offset: offset as u32,
            remote: RdmaRef {
                id: window,
                seqnum: gen,
                offset: offset as u32,
            },
            direct: true,
        })
    };

    // One pull of the whole message: the sender answers every request,
    // after a lie or two.
    post(&mut puller, &pull(1, 9, 5, 0, len));
    let mut asked = 0;
    let mut lies = 0;
    loop {
        if let Some(ev) = next_event(&mut puller, &pbell, Duration::from_millis(1)) {
            let Event::PullDone {
                cookie,
                status,
                transferred,
            } = ev
            else {
                panic!("{ev:?}")
            };
            assert_eq!((cookie, status), (1, PullStatus::Success));
            assert_eq!(transferred as usize, len);
            break;
        }
        let Some(ev) = next_event(&mut sender, &sbell, Duration::from_millis(50)) else {
            continue;
        };
        let Event::StageNeeded {
            region_id,
            gen,
            slot,
            block,
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!((region_id, gen), (9, 5));
        assert!(usize::from(slot) < SLOTS && (block as usize) < BLOCKS);
        asked += 1;
        if lies < 2 {
            // The wrong block, then the wrong slot: ignored.
            let (s, b) = if lies == 0 {
                (slot, block + 1)
            } else {
                ((slot + 1) % SLOTS as u16, block)
            };
            lies += 1;
            post(
                &mut sender,
                &Command::RegionStage(RegionStage {
                    region_id,
                    gen,
                    slot: s,
                    block: b,
                }),
            );
        }
        let at = block as usize * BLOCK;
        let n = BLOCK.min(len - at);
        let dst = usize::from(slot) * BLOCK;
        slots[dst..dst + n].copy_from_slice(&msg[at..at + n]);
        post(
            &mut sender,
            &Command::RegionStage(RegionStage {
                region_id,
                gen,
                slot,
                block,
            }),
        );
    }
    assert!(sink == msg, "every block arrived byte for byte");
    assert_eq!(asked, BLOCKS - SLOTS, "each later block asked for once");
    assert_eq!(
        counter(&fe_s, 1, "window blocks asked to stage"),
        asked as u64
    );
    assert_eq!(
        counter(&fe_s, 1, "window stage answers refused"),
        lies as u64
    );

    // A pull of a block already held is served without asking.
    post(&mut puller, &pull(2, 9, 5, (BLOCKS - 1) * BLOCK, 100));
    let ev = next_event(&mut puller, &pbell, Duration::from_secs(5));
    assert!(matches!(
        ev,
        Some(Event::PullDone {
            cookie: 2,
            status: PullStatus::Success,
            ..
        })
    ));

    // A sender that never answers: its window's pull fails after the
    // staging wait; meanwhile the puller's other commands go on (a pull of
    // a block still held, block 1: block 2 was asked into the slot of block
    // 0, read longest ago, is served at once).
    let slots2 = slots.clone();
    open_window(&mut sender, 10, 6, &slots2);
    let start = Instant::now();
    post(&mut puller, &pull(3, 10, 6, 0, len));
    post(&mut puller, &pull(4, 10, 6, BLOCK, 10));
    let ev = next_event(&mut puller, &pbell, Duration::from_secs(5));
    assert!(
        matches!(
            ev,
            Some(Event::PullDone {
                cookie: 4,
                status: PullStatus::Success,
                ..
            })
        ),
        "{ev:?}"
    );
    assert!(
        start.elapsed() < WAIT,
        "the parked pull held the next one back"
    );
    let ev = next_event(&mut puller, &pbell, Duration::from_secs(5));
    assert!(
        matches!(
            ev,
            Some(Event::PullDone {
                cookie: 3,
                status: PullStatus::Unreachable,
                transferred: 0,
            })
        ),
        "{ev:?}"
    );
    assert!(start.elapsed() >= WAIT, "gave up before the staging wait");
    // A pull naming an older use of the id fails at once.
    post(&mut puller, &pull(5, 10, 5, 0, 10));
    let ev = next_event(&mut puller, &pbell, Duration::from_secs(5));
    assert!(
        matches!(
            ev,
            Some(Event::PullDone {
                cookie: 5,
                status: PullStatus::BadRdmaWindow,
                ..
            })
        ),
        "{ev:?}"
    );
    drop(be);
    let _ = std::fs::remove_dir_all(&dir);
}
