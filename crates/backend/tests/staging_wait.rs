//! A same-host pull of a window its sender is still registering block by
//! block (a staged large send): the backend holds the pull until the block
//! is registered, and gives up after `WireTiming::staging_wait`, so that a
//! sender that never registers the rest cannot hold the puller's commands
//! back for ever. Two raw endpoints of one backend, driven by hand.

use frontend::Doorbell;
use mx_proto::msg::command::{Pull, RawSeg, RegionRegister};
use mx_proto::msg::event::PullStatus;
use mx_proto::msg::{Command, Dest, Event, RdmaRef};
use mx_proto::platform::local::LocalGuest;
use std::time::{Duration, Instant};

mod pull_pair;
use pull_pair::{consumed, post, Ep, PullPair};

const WAIT: Duration = Duration::from_millis(400);
const BLOCK: usize = 64 * 1024;

/// The next `PullDone` of `ep`, and when it came.
fn pull_done(ep: &mut Ep, bell: &Doorbell<LocalGuest>) -> (PullStatus, u32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(slot) = ep.next_event().unwrap() {
            let ev = Event::parse(&slot).unwrap();
            ep.release_events().unwrap();
            if let Event::PullDone {
                status,
                transferred,
                ..
            } = ev
            {
                return (status, transferred, Instant::now());
            }
            continue;
        }
        assert!(Instant::now() < deadline, "no PullDone within 10 s");
        if ep.prepare_to_sleep().unwrap() {
            let _ = bell.wait(Some(Duration::from_millis(10)));
        }
    }
}

/// Register a chunk and wait until the backend consumed it: the backend
/// keeps no order between two endpoints' rings (its service loop shares
/// each pass fairly among guest principals), and a library only pulls
/// after the rendezvous that follows the registration on the sender's own
/// ring, so the test must not post its pull before.
fn register(ep: &mut Ep, id: u8, first: bool, last: bool, base: u16, seg: &[u8]) {
    let segs = [RawSeg::new(seg.as_ptr() as u64, seg.len() as u32)];
    post(
        ep,
        &Command::RegionRegister(RegionRegister::new(id, first, last, base, &segs)),
    );
    consumed(ep);
}

#[test]
fn a_pull_waits_for_its_block_and_gives_up_after_the_staging_wait() {
    let PullPair {
        dir,
        be,
        fe_s: _fe_s,
        fe_p: _fe_p,
        mut sender,
        sbell: _sbell,
        mut puller,
        pbell,
        me,
    } = PullPair::new("staging-wait", WAIT);

    // The sender's window: two blocks, of which only the first is
    // registered for now; the puller's region takes both.
    let data: Vec<u8> = (0..2 * BLOCK).map(|i| (i * 7 + i / 251) as u8).collect();
    let (b0, b1) = data.split_at(BLOCK);
    let sink = vec![0u8; 2 * BLOCK];
    register(&mut sender, 9, true, false, 0, b0);
    register(&mut puller, 4, true, true, 0, &sink);
    let session = sender.session();
    let pull = move |cookie, window: u8, offset: usize, length: usize| {
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
                seqnum: 0,
                offset: offset as u32,
            },
            direct: false,
        })
    };

    // The registered block is served at once.
    post(&mut puller, &pull(1, 9, 0, BLOCK));
    let (st, n, _) = pull_done(&mut puller, &pbell);
    assert_eq!((st, n), (PullStatus::Success, BLOCK as u32));

    // The second block waits until the sender registers it.
    post(&mut puller, &pull(2, 9, BLOCK, BLOCK));
    std::thread::sleep(WAIT / 4);
    assert!(puller.next_event().unwrap().is_none(), "answered too early");
    register(&mut sender, 9, false, true, 1, b1);
    let (st, n, _) = pull_done(&mut puller, &pbell);
    assert_eq!((st, n), (PullStatus::Success, BLOCK as u32));
    // The backend wrote into `sink` with process_vm_writev.
    assert_eq!(sink, data, "both blocks arrived byte for byte");

    // A sender that never registers the rest: the pull fails after the
    // staging wait, and the puller's later commands run again.
    register(&mut sender, 10, true, false, 0, b0);
    let start = Instant::now();
    post(&mut puller, &pull(3, 10, BLOCK, BLOCK));
    let (st, n, at) = pull_done(&mut puller, &pbell);
    assert_eq!((st, n), (PullStatus::BadRdmaWindow, 0));
    let waited = at - start;
    assert!(
        waited >= WAIT,
        "gave up after {waited:?}, before the staging wait"
    );
    post(&mut puller, &pull(4, 9, 0, BLOCK));
    assert_eq!(pull_done(&mut puller, &pbell).0, PullStatus::Success);
    drop(be);
    let _ = std::fs::remove_dir_all(&dir);
}
