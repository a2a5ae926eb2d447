//! In-process smoke test of the split driver: an embedded backend, two
//! frontends, tiny/small/medium messages between them, byte-checked.

use backend::{spawn_local, BackendConfig};
use frontend::{Doorbell, EndpointChannel, Frontend};
use mx_proto::msg::command::{MediumFrag, SendHdr};
use mx_proto::msg::control::{ChannelSizes, OpenFlags, COUNTER_LABELS, NIC_COUNTER_LABELS};
use mx_proto::msg::{Command, Dest, Event, Seq};
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::time::{Duration, Instant};

type Ep = EndpointChannel<LocalGuest>;

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Wait for the next event, copying its payload out (and releasing its
/// receive-queue slot). Returns (kind-specific summary, payload).
fn next(ep: &mut Ep, bell: &Doorbell<LocalGuest>) -> (String, Vec<u8>, u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(slot) = ep.next_event().unwrap() {
            let ev = Event::parse(&slot).unwrap();
            let out = match ev {
                Event::RecvTiny { data, .. } => ("tiny".into(), data.to_vec(), 0),
                Event::RecvSmall {
                    length, recvq_slot, ..
                } => {
                    let mut b = vec![0; length as usize];
                    ep.recvq_read(recvq_slot, 0, &mut b).unwrap();
                    ep.recvq_release(recvq_slot).unwrap();
                    ("small".into(), b, 0)
                }
                Event::RecvMediumFrag {
                    frag_length,
                    recvq_slot,
                    msg_length,
                    ..
                } => {
                    let mut b = vec![0; frag_length as usize];
                    ep.recvq_read(recvq_slot, 0, &mut b).unwrap();
                    ep.recvq_release(recvq_slot).unwrap();
                    ("medium".into(), b, msg_length)
                }
                Event::SendMediumDone { sendq_slot } => ("done".into(), vec![], sendq_slot.into()),
                Event::RecvNackLib { nack_type, .. } => {
                    ("nack".into(), vec![], u32::from(nack_type as u8))
                }
                other => (format!("{other:?}"), vec![], 0),
            };
            ep.release_events().unwrap();
            return out;
        }
        assert!(Instant::now() < deadline, "no event within 10 s");
        if ep.prepare_to_sleep().unwrap() {
            bell.wait(Some(Duration::from_millis(100))).unwrap();
        }
    }
}

#[test]
fn tiny_small_medium_between_two_frontends() {
    exchange("shortcut", OpenFlags::empty());
}

/// The same exchange with the sender opened with `DISABLE_SHMEM`: every
/// command becomes an MXoE frame that the backend loops back to its own
/// receive path (no NIC here), with the same events at both ends, the
/// NACKs included.
#[test]
fn the_same_through_the_network_path_on_the_loopback() {
    let c = exchange("loopback", OpenFlags::DISABLE_SHMEM);
    let get = |label: &str| c[NIC_COUNTER_LABELS.iter().position(|l| *l == label).unwrap()];
    assert_eq!(get("rx tiny"), 5, "3 tiny, 2 NACKed: {c:?}");
    assert_eq!(get("rx small"), 2);
    assert_eq!(get("rx medium"), 3);
    assert_eq!(get("tx nack lib"), 2);
    assert_eq!(get("rx nack lib"), 2);
    assert_eq!(get("loopback frames"), 5 + 2 + 3 + 2);
    assert_eq!(get("rx frames"), get("loopback frames"));
    assert_eq!(get("drop: bad session (nacked)"), 1);
    assert_eq!(get("drop: endpoint closed (nacked)"), 1);
}

/// Tiny, small and medium messages from a (opened with `flags`) to b, a
/// wrong session and a closed endpoint; the board's NIC counters after.
fn exchange(tag: &str, flags: OpenFlags) -> Vec<u64> {
    let dir = std::env::temp_dir().join(format!("mx-smoke-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("backend.sock");
    let _be = spawn_local(BackendConfig::new(), &sock).unwrap();
    let target = LocalTarget::new(&sock);
    let fa = Frontend::<LocalGuest>::attach(&target).unwrap();
    let fb = Frontend::<LocalGuest>::attach(&target).unwrap();
    let self_peer = fa.board().self_peer;
    let (mut a, bell_a) = fa
        .open_endpoint_with(1, ChannelSizes::default(), flags)
        .unwrap();
    let (mut b, bell_b) = fb.open_endpoint(2, ChannelSizes::default()).unwrap();
    assert!(matches!(
        fb.open_endpoint(2, ChannelSizes::default()),
        Err(frontend::FrontendError::Refused(
            mx_proto::msg::control::ControlError::Busy
        ))
    ));
    let (b_id, b_session) = (b.id(), b.session());
    let hdr = |seq: u16| SendHdr {
        dest: Dest {
            peer: self_peer,
            endpoint: b_id,
        },
        session: b_session,
        seq: Seq {
            seqnum: seq,
            piggyack: 0,
        },
        match_info: 0x1234,
    };
    for (i, len) in [0usize, 1, 32].into_iter().enumerate() {
        let data = pattern(len, i as u8);
        a.post(&Command::Tiny {
            hdr: hdr(i as u16),
            data: &data,
        })
        .unwrap();
        a.flush().unwrap();
        let (kind, got, _) = next(&mut b, &bell_b);
        assert_eq!((kind.as_str(), got), ("tiny", data));
    }
    for (i, len) in [33usize, 128].into_iter().enumerate() {
        let data = pattern(len, 7 + i as u8);
        a.post(&Command::Small {
            hdr: hdr(10 + i as u16),
            data: &data,
        })
        .unwrap();
        a.flush().unwrap();
        let (kind, got, _) = next(&mut b, &bell_b);
        assert_eq!((kind.as_str(), got), ("small", data));
    }
    // A medium message of 3 fragments (8192 + 8192 + 1).
    let msg = pattern(8192 * 2 + 1, 99);
    for (f, chunk) in msg.chunks(8192).enumerate() {
        a.sendq_write(f as u16, chunk).unwrap();
        a.post(&Command::MediumFrag(MediumFrag {
            hdr: hdr(20),
            msg_length: msg.len() as u32,
            frag_seqnum: f as u8,
            frag_length: chunk.len() as u16,
            sendq_slot: f as u16,
        }))
        .unwrap();
    }
    a.flush().unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let (kind, bytes, total) = next(&mut b, &bell_b);
        assert_eq!(kind, "medium");
        assert_eq!(total as usize, msg.len());
        got.extend(bytes);
    }
    assert_eq!(got, msg);
    let mut done = Vec::new();
    for _ in 0..3 {
        let (kind, _, slot) = next(&mut a, &bell_a);
        assert_eq!(kind, "done");
        done.push(slot);
    }
    done.sort();
    assert_eq!(done, vec![0, 1, 2]);
    // A wrong session is NACKed back to the sender (BAD_SESSION = 3).
    let mut bad = hdr(30);
    bad.session ^= 1;
    a.post(&Command::Tiny {
        hdr: bad,
        data: &[],
    })
    .unwrap();
    a.flush().unwrap();
    assert_eq!(next(&mut a, &bell_a).2, 3);
    // After the receiver closes, sends to it are NACKed ENDPT_CLOSED (2).
    b.close().unwrap();
    a.post(&Command::Tiny {
        hdr: hdr(31),
        data: &[],
    })
    .unwrap();
    a.flush().unwrap();
    assert_eq!(next(&mut a, &bell_a).2, 2);
    let counters = fa.counters(a.id()).unwrap();
    assert!(counters[0] >= 9, "commands processed: {counters:?}");
    let wire = counters[COUNTER_LABELS
        .iter()
        .position(|l| *l == "frames sent to the wire")
        .unwrap()];
    assert_eq!(wire > 0, !flags.is_empty(), "{counters:?}");
    let nic = fa.nic_counters(0).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    nic
}

/// A large send staged block by block (the library registers each block
/// as it copies it into its pool) pulled through the network path: the
/// PULL of a window whose registration is still in progress waits for the
/// rest, as a same-host pull on the shortcut does, instead of being
/// NACKed as an unknown window.
#[test]
fn network_path_pull_waits_for_a_window_being_registered() {
    use mx_proto::msg::command::{Pull, RawSeg, RegionRegister};
    use mx_proto::msg::event::PullStatus;
    use mx_proto::msg::RdmaRef;
    let dir = std::env::temp_dir().join(format!("mx-smoke-held-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("backend.sock");
    let _be = spawn_local(BackendConfig::new(), &sock).unwrap();
    let target = LocalTarget::new(&sock);
    let fa = Frontend::<LocalGuest>::attach(&target).unwrap();
    let fb = Frontend::<LocalGuest>::attach(&target).unwrap();
    let self_peer = fa.board().self_peer;
    let (mut a, _bell_a) = fa
        .open_endpoint_with(1, ChannelSizes::default(), OpenFlags::DISABLE_SHMEM)
        .unwrap();
    let (mut b, bell_b) = fb.open_endpoint(2, ChannelSizes::default()).unwrap();
    // Both guests are this process: regions are addresses of its buffers.
    let len = 300_000usize;
    let src = pattern(len, 42);
    let mut dst = vec![0u8; len];
    let half = len / 2;
    let seg = |p: *const u8, n: usize| RawSeg::new(p as u64, n as u32);
    // The sender registers the first half of window 5 only.
    a.post(&Command::RegionRegister(RegionRegister::new(
        5,
        true,
        false,
        0,
        &[seg(src.as_ptr(), half)],
    )))
    .unwrap();
    a.flush().unwrap();
    b.post(&Command::RegionRegister(RegionRegister::new(
        7,
        true,
        true,
        0,
        &[seg(dst.as_mut_ptr(), len)],
    )))
    .unwrap();
    b.post(&Command::Pull(Pull {
        dest: Dest {
            peer: self_peer,
            endpoint: a.id(),
        },
        session: a.session(),
        length: len as u32,
        cookie: 0x55,
        local_region: 7,
        local_offset: 0,
        remote: RdmaRef {
            id: 5,
            seqnum: 23,
            offset: 0,
        },
        direct: false,
    }))
    .unwrap();
    b.flush().unwrap();
    let pull_done = |b: &mut Ep, wait: Duration| -> Option<(PullStatus, u32)> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(slot) = b.next_event().unwrap() {
                if let Event::PullDone {
                    cookie: 0x55,
                    status,
                    transferred,
                } = Event::parse(&slot).unwrap()
                {
                    b.release_events().unwrap();
                    return Some((status, transferred));
                }
            }
            b.release_events().unwrap();
            if Instant::now() >= deadline {
                return None;
            }
            if b.prepare_to_sleep().unwrap() {
                bell_b.wait(Some(Duration::from_millis(10))).unwrap();
            }
        }
    };
    assert_eq!(
        pull_done(&mut b, Duration::from_millis(200)),
        None,
        "the pull waits for the window"
    );
    let nic = |label: &str| {
        let i = NIC_COUNTER_LABELS.iter().position(|l| *l == label).unwrap();
        fa.nic_counters(0).unwrap()[i]
    };
    assert_eq!(nic("drop: pull unknown window (nacked)"), 0);
    assert!(nic("rx pull") > 0, "the PULLs went through the wire path");
    assert_eq!(
        nic("loopback pulls held for a window being registered"),
        nic("rx pull")
    );
    // The rest of the window: the pull goes on and completes.
    a.post(&Command::RegionRegister(RegionRegister::new(
        5,
        false,
        true,
        1,
        &[seg(src[half..].as_ptr(), len - half)],
    )))
    .unwrap();
    a.flush().unwrap();
    assert_eq!(
        pull_done(&mut b, Duration::from_secs(10)),
        Some((PullStatus::Success, len as u32))
    );
    assert!(dst == src, "bytes differ");
    assert!(nic("rx pull reply") > 0);
    assert_eq!(nic("pull requests resent"), 0, "held, not lost");
    let _ = std::fs::remove_dir_all(&dir);
}
