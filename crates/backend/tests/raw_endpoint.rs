//! The board's raw endpoint (the MX raw API) through real backends on the
//! in-memory wire: two backends exchange raw frames between their raw
//! endpoints, an "evil" port on the same hub injects crafted frames and
//! watches what leaves, and a guest drives the raw channel by hand to send
//! what the library would refuse. Checks the frames (whole Ethernet
//! frames, source MAC forced), the send completions, the refusals and
//! drops with their counters, the open policy (one per board, owner-only
//! board requests, `RawAccess::Nobody`), renaming the board and its peers,
//! discovery next to an open raw endpoint, and a board without a NIC.

use backend::counters::{NicCounter, RawCounter};
use backend::nic::sim::{Faults, Hub, SimNic};
use backend::nic::Nic;
use backend::{spawn_local, spawn_local_with_nic, BackendConfig, EmbeddedBackend, RawAccess};
use frontend::{Frontend, FrontendError};
use mx_proto::msg::control::ControlError;
use mx_proto::msg::raw_endpoint::{RawCommand, RawSendStatus, RAW_CMD_SEND};
use mx_proto::msg::CmdSlot;
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::packet::HostQuery;
use mxoe_wire::{decode, emit, Frame, Head, NicId, Packet, PeerIndex, WireProfile};
use raw_guest::{body, raw_frame, sizes, Got, RawGuest};
use std::time::{Duration, Instant};

mod raw_guest;

const A_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0xbb, 2];
const EVIL_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 6];
const MTU: u32 = 1500;

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mx-raw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(name: &str) -> BackendConfig {
    let mut cfg = BackendConfig::new();
    cfg.hostname = name.into();
    cfg.set_profile(WireProfile::open_mx(MTU).unwrap());
    cfg.discovery = false;
    cfg
}

fn backend(hub: &Hub, dir: &std::path::Path, name: &str, mac: [u8; 6]) -> EmbeddedBackend {
    backend_with(hub, dir, config(name), mac)
}

fn backend_with(
    hub: &Hub,
    dir: &std::path::Path,
    cfg: BackendConfig,
    mac: [u8; 6],
) -> EmbeddedBackend {
    let sock = dir.join(format!("{}.sock", cfg.hostname.replace(':', "-")));
    spawn_local_with_nic(cfg, sock, Box::new(hub.attach(mac, MTU))).unwrap()
}

fn attach(be: &EmbeddedBackend) -> Frontend<LocalGuest> {
    Frontend::<LocalGuest>::attach(&LocalTarget::new(be.socket())).unwrap()
}

/// Frames on the wire from `mac`, seen by `port`, within `wait`.
fn frames_from(port: &mut SimNic, mac: [u8; 6], wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        port.recv_batch(256, &mut |f| {
            if f.get(6..12) == Some(&mac[..]) {
                out.push(f.to_vec());
            }
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

fn raw(be: &EmbeddedBackend, c: RawCounter) -> u64 {
    be.raw_counters().get(c)
}

/// Wait (at most 5 s) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn refused(r: Result<impl Sized, FrontendError>) -> ControlError {
    match r {
        Err(FrontendError::Refused(e)) => e,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got success"),
    }
}

#[test]
fn raw_frames_between_the_raw_endpoints_of_two_backends() {
    let dir = scratch("pair");
    let hub = Hub::new(Faults::default());
    let mut evil = hub.attach(EVIL_MAC, MTU);
    let a = backend(&hub, &dir, "alpha:0", A_MAC);
    let b = backend(&hub, &dir, "beta:0", B_MAC);
    let (fa, fb) = (attach(&a), attach(&b));
    let mut ra = RawGuest::open(&fa);
    let mut rb = RawGuest::open(&fb);
    assert_eq!(ra.ch.max_frame(), MTU + 14);

    // Unicast A -> B, every length class a mapper uses (shorter than the
    // Ethernet minimum, one announcement, the largest frame).
    for (i, len) in [17usize, 40, 64, 200, (MTU + 14) as usize]
        .iter()
        .enumerate()
    {
        let f = raw_frame(B_MAC, &body(len - 17, i as u8));
        let slot = ra.send(&f);
        assert_eq!(ra.next(), Got::Done(slot, RawSendStatus::Sent));
        let Got::Frame(got) = rb.next() else {
            panic!("B got no frame");
        };
        // The whole Ethernet frame, from the destination MAC, with our
        // source MAC in place of the junk one; short frames arrive padded
        // to the Ethernet minimum (60 bytes without FCS).
        let mut want = f.clone();
        want[6..12].copy_from_slice(&A_MAC);
        if want.len() < 60 {
            want.resize(60, 0);
        }
        assert_eq!(got, want, "frame of {len} bytes");
    }
    // Broadcast B -> everyone: A's raw endpoint gets it, and so does the
    // wire (evil sees exactly the frames B sent).
    let f = raw_frame([0xff; 6], &body(100, 9));
    let slot = rb.send(&f);
    assert_eq!(rb.next(), Got::Done(slot, RawSendStatus::Sent));
    let Got::Frame(got) = ra.next() else {
        panic!("A got no frame");
    };
    assert_eq!(&got[6..12], &B_MAC);
    assert_eq!(&got[12..], &f[12..]);
    let seen = frames_from(&mut evil, B_MAC, Duration::from_millis(50));
    assert_eq!(seen.len(), 1, "one broadcast from B on the wire");
    assert!(frames_from(&mut evil, A_MAC, Duration::from_millis(10)).is_empty());
    // Nothing else arrived anywhere.
    ra.no_event(Duration::from_millis(30));
    rb.no_event(Duration::from_millis(0));

    assert_eq!(raw(&a, RawCounter::Sent), 5);
    assert_eq!(raw(&a, RawCounter::Received), 1);
    assert_eq!(raw(&b, RawCounter::Sent), 1);
    assert_eq!(raw(&b, RawCounter::Received), 5);
    assert_eq!(a.nic_counters().unwrap().get(NicCounter::TxRaw), 5);
    assert_eq!(b.nic_counters().unwrap().get(NicCounter::RxRaw), 5);
    // The frames were refused as mapper announcements (nic_id 0): no
    // bogus peers.
    assert_eq!(refused(fa.peer_by_index(1)), ControlError::PeerNotFound);
    // The counters travel over the control path too.
    let v = fb.raw_counters(0).unwrap();
    assert_eq!(v[RawCounter::Received as usize], 5);
    assert_eq!(refused(fb.raw_counters(1)), ControlError::BoardUnknown);

    // Closed: frames for it are dropped and counted, a new open works.
    ra.ch.close().unwrap();
    let slot = rb.send(&raw_frame(A_MAC, &body(50, 3)));
    assert_eq!(rb.next(), Got::Done(slot, RawSendStatus::Sent));
    eventually("the drop at A", || raw(&a, RawCounter::DropNoEndpoint) == 1);
    let mut ra = RawGuest::open(&fa);
    let slot = rb.send(&raw_frame(A_MAC, &body(50, 4)));
    assert_eq!(rb.next(), Got::Done(slot, RawSendStatus::Sent));
    assert!(matches!(ra.next(), Got::Frame(f) if f[17..67] == body(50, 4)[..]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_sends_and_floods_are_refused_and_counted() {
    let dir = scratch("hostile");
    let hub = Hub::new(Faults::default());
    let mut evil = hub.attach(EVIL_MAC, 9000);
    let a = backend(&hub, &dir, "alpha:0", A_MAC);
    let fa = attach(&a);
    let mut ra = RawGuest::open(&fa);
    let max = ra.ch.max_frame() as usize;

    // Frames the library would refuse, sent by hand: each is refused by
    // the backend, completes with `Refused`, and never reaches the wire.
    let good = raw_frame(EVIL_MAC, &body(60, 1));
    let mut not_mxoe = good.clone();
    not_mxoe[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut tiny = good.clone();
    tiny[16] = 37; // an MX TINY: raw endpoints cannot forge MX traffic
    let short = good[..16].to_vec();
    let long = raw_frame(EVIL_MAC, &body(max - 17 + 1, 2));
    let cases: [(&[u8], RawCounter); 4] = [
        (&not_mxoe, RawCounter::RefusedEtherType),
        (&tiny, RawCounter::RefusedNotRaw),
        (&short, RawCounter::RefusedLength),
        (&long, RawCounter::RefusedLength),
    ];
    for (f, counter) in cases {
        let before = raw(&a, counter);
        let slot = ra.send(f);
        assert_eq!(ra.next(), Got::Done(slot, RawSendStatus::Refused));
        assert_eq!(raw(&a, counter), before + 1, "{counter:?}");
    }
    // A length beyond a queue slot does not even parse; a slot the channel
    // does not have cannot be read; a kind of the endpoint family is not a
    // raw command. None of them is answered (there is no slot to name).
    let mut bogus = CmdSlot::default();
    bogus.0[0] = RAW_CMD_SEND;
    bogus.0[4..8].copy_from_slice(&100_000u32.to_le_bytes());
    ra.ch.post_slot(&bogus).unwrap();
    ra.post(&RawCommand::Send {
        sendq_slot: 16 + 5,
        length: 64,
    });
    let mut endpoint_kind = CmdSlot::default();
    endpoint_kind.0[0] = 1; // a TINY command
    ra.ch.post_slot(&endpoint_kind).unwrap();
    ra.ch.flush().unwrap();
    eventually("the refusals", || {
        raw(&a, RawCounter::RefusedMalformed) == 2 && raw(&a, RawCounter::RefusedBadSlot) == 1
    });
    ra.no_event(Duration::from_millis(30));
    assert!(
        frames_from(&mut evil, A_MAC, Duration::from_millis(30)).is_empty(),
        "no refused frame left"
    );
    // The channel still works after all that.
    let slot = ra.send(&good);
    assert_eq!(ra.next(), Got::Done(slot, RawSendStatus::Sent));
    let seen = frames_from(&mut evil, A_MAC, Duration::from_millis(30));
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0][6..12], &A_MAC, "source MAC forced");
    assert_eq!(&seen[0][12..], &good[12..]);

    // Received frames longer than the board's frames are dropped.
    hub.inject(&raw_frame(A_MAC, &body(max, 5)));
    eventually("the too-large drop", || {
        raw(&a, RawCounter::DropTooLarge) == 1
    });
    // A flood the guest does not read: the receive queue (8 slots) fills,
    // the rest is dropped and counted, nothing blocks.
    for i in 0..20u8 {
        hub.inject(&raw_frame(A_MAC, &body(30, i)));
    }
    eventually("the flood", || {
        raw(&a, RawCounter::Received) + raw(&a, RawCounter::DropFull) == 20
    });
    assert_eq!(raw(&a, RawCounter::Received), 8);
    assert_eq!(raw(&a, RawCounter::DropFull), 12);
    for i in 0..8u8 {
        match ra.next() {
            Got::Frame(f) => assert_eq!(&f[17..47], &body(30, i)[..], "frame {i} in order"),
            other => panic!("{other:?}"),
        }
    }
    // Room again: delivered.
    hub.inject(&raw_frame(A_MAC, &body(30, 99)));
    assert!(matches!(ra.next(), Got::Frame(f) if f[17..47] == body(30, 99)[..]));

    // Discovery goes on next to the raw endpoint: an announcement of a
    // new board is handed to the raw endpoint AND learned (once the board
    // answers our HOST_QUERY: an announcement alone gives no peer index).
    let mut ann = [0u8; 64];
    MapperAnnounce {
        src: EVIL_MAC,
        nic_id: NicId::from_mac(EVIL_MAC),
        serial: 77,
    }
    .emit(&mut ann)
    .unwrap();
    hub.inject(&ann);
    assert_eq!(ra.next(), Got::Frame(ann.to_vec()));
    let profile = WireProfile::open_mx(MTU).unwrap();
    eventually("the discovered peer", || {
        let mut queries = Vec::new();
        evil.recv_batch(64, &mut |f| {
            if let Ok(Frame {
                packet: Packet::HostQuery(q),
                head,
            }) = decode(&profile, f)
            {
                queries.push((head.src, q.magic));
            }
        })
        .unwrap();
        for (dst, magic) in queries {
            let reply = Frame {
                head: Head {
                    dst,
                    src: EVIL_MAC,
                    peer_index: PeerIndex::UNKNOWN,
                },
                packet: Packet::HostReply(mxoe_wire::packet::HostReply {
                    src_dst_peer_index: PeerIndex::UNKNOWN,
                    magic,
                    hostname: mxoe_wire::Hostname::new(b"evil:0").unwrap(),
                }),
            };
            let mut buf = vec![0u8; reply.packet.buffer_len(&profile)];
            let n = emit(&profile, &reply, &mut buf).unwrap();
            evil.send(&buf[..n], backend::nic::Payload::None).unwrap();
            evil.flush().unwrap();
        }
        fa.peer_by_nic_id(NicId::from_mac(EVIL_MAC).raw()).is_ok()
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_raw_endpoint_per_board_and_its_owner_names_the_board() {
    let dir = scratch("policy");
    let hub = Hub::new(Faults::default());
    let mut evil = hub.attach(EVIL_MAC, MTU);
    let peers = dir.join("peers");
    std::fs::write(&peers, "02:00:00:00:ee:06 evil:0\n").unwrap();
    let mut cfg = config("alpha:0");
    cfg.peers_file = Some(peers);
    let a = backend_with(&hub, &dir, cfg, A_MAC);
    let owner = attach(&a);
    let other = attach(&a);
    let ra = RawGuest::open(&owner);
    assert_eq!(refused(owner.open_raw(0, sizes())), ControlError::Busy);
    assert_eq!(refused(other.open_raw(0, sizes())), ControlError::Busy);
    assert_eq!(
        refused(other.open_raw(1, sizes())),
        ControlError::BoardUnknown
    );
    assert_eq!(raw(&a, RawCounter::OpenBusy), 2);

    // Board requests are the owner's.
    assert_eq!(
        refused(other.set_hostname(0, "thief:0")),
        ControlError::NotPermitted
    );
    assert_eq!(
        refused(other.set_peer_name(0, 0x0200_0000_0777, "x:0")),
        ControlError::NotPermitted
    );
    owner.set_hostname(0, "renamed:0").unwrap();
    assert_eq!(other.peer_by_hostname("renamed:0").unwrap().index, 0);
    assert!(other.peer_by_hostname("alpha:0").is_err());
    // HOST_REPLY carries the new name.
    let head = Head {
        dst: A_MAC,
        src: EVIL_MAC,
        peer_index: PeerIndex(0xffff),
    };
    let mut buf = [0u8; 128];
    let n = emit(
        &WireProfile::open_mx(MTU).unwrap(),
        &Frame {
            head,
            packet: Packet::HostQuery(HostQuery {
                src_dst_peer_index: PeerIndex(3),
                magic: 0x1305_2008,
            }),
        },
        &mut buf,
    )
    .unwrap();
    hub.inject(&buf[..n]);
    let replies = frames_from(&mut evil, A_MAC, Duration::from_millis(100));
    let names: Vec<String> = replies
        .iter()
        .filter_map(|f| match decode(&WireProfile::open_mx(MTU).unwrap(), f) {
            Ok(Frame {
                packet: Packet::HostReply(r),
                ..
            }) => r.hostname.as_str().map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["renamed:0"]);
    // Peers: renamed when known, added when not, our own left alone.
    owner
        .set_peer_name(0, NicId::from_mac(EVIL_MAC).raw(), "mallory:0")
        .unwrap();
    assert_eq!(
        other.peer_by_hostname("mallory:0").unwrap().nic_id,
        NicId::from_mac(EVIL_MAC).raw()
    );
    owner.set_peer_name(0, 0x0200_0000_0777, "far:0").unwrap();
    let far = other.peer_by_hostname("far:0").unwrap();
    assert_eq!((far.nic_id, far.local), (0x0200_0000_0777, false));
    owner
        .set_peer_name(0, NicId::from_mac(A_MAC).raw(), "not-me:0")
        .unwrap();
    assert!(other.peer_by_hostname("not-me:0").is_err());
    for (nic, name) in [
        (0, "zero:0"),
        (1 << 48, "wide:0"),
        (0x0100_0000_0001, "multicast:0"),
        (0x0200_0000_0778, ""),
    ] {
        assert_eq!(
            refused(owner.set_peer_name(0, nic, name)),
            ControlError::Malformed,
            "{nic:#x} {name:?}"
        );
    }
    assert_eq!(refused(owner.set_hostname(0, "")), ControlError::Malformed);
    assert_eq!(
        refused(owner.set_hostname(2, "x:0")),
        ControlError::BoardUnknown
    );

    // Once the owner closes, the other guest may open.
    ra.ch.close().unwrap();
    let rb = RawGuest::open(&other);
    // A guest that goes away without closing frees the raw endpoint.
    drop(rb);
    drop(other);
    eventually("the detach", || owner.open_raw(0, sizes()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raw_access_none_refuses_everybody() {
    let dir = scratch("none");
    let hub = Hub::new(Faults::default());
    let mut cfg = config("alpha:0");
    cfg.raw_access = RawAccess::Nobody;
    let a = backend_with(&hub, &dir, cfg, A_MAC);
    let fe = attach(&a);
    assert_eq!(refused(fe.open_raw(0, sizes())), ControlError::NotPermitted);
    assert_eq!(
        refused(fe.set_hostname(0, "x:0")),
        ControlError::NotPermitted
    );
    assert_eq!(raw(&a, RawCounter::OpenNotPermitted), 1);
    assert_eq!(raw(&a, RawCounter::Opens), 0);
    // Frames for the board are counted as having no raw endpoint.
    hub.inject(&raw_frame(A_MAC, &body(30, 0)));
    eventually("the drop", || raw(&a, RawCounter::DropNoEndpoint) == 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_board_without_a_nic_completes_sends_that_go_nowhere() {
    without_a_nic(false);
}

/// An endpoint opened with `DISABLE_SHMEM` gives a board without a NIC a
/// wire side that only loops frames back: that is still no interface for
/// raw frames.
#[test]
fn a_loopback_only_wire_side_is_no_nic_for_raw_sends() {
    without_a_nic(true);
}

fn without_a_nic(loopback: bool) {
    let dir = scratch(if loopback { "nonic-lo" } else { "nonic" });
    let mut cfg = BackendConfig::new();
    cfg.hostname = "lonely:0".into();
    let be = spawn_local(cfg, dir.join("b.sock")).unwrap();
    let fe = attach(&be);
    let _shm = loopback.then(|| {
        let ep = fe
            .open_endpoint_with(
                mx_proto::msg::control::ANY_ENDPOINT,
                Default::default(),
                mx_proto::msg::control::OpenFlags::DISABLE_SHMEM,
            )
            .unwrap();
        assert!(!fe.nic_counters(0).unwrap().is_empty(), "wire side made");
        ep
    });
    let mut r = RawGuest::open(&fe);
    assert_eq!(
        r.ch.max_frame(),
        8192,
        "the 9000-byte profile, capped by a slot"
    );
    for i in 0..3u8 {
        let slot = r.send(&raw_frame([0xff; 6], &body(47, i)));
        assert_eq!(r.next(), Got::Done(slot, RawSendStatus::NoNic));
    }
    assert_eq!(raw(&be, RawCounter::SentWithoutNic), 3);
    assert_eq!(raw(&be, RawCounter::Sent), 0);
    r.no_event(Duration::from_millis(20));
    // The board can still be renamed (look-ups by name see it).
    fe.set_hostname(0, "mapped:0").unwrap();
    assert_eq!(fe.peer_by_hostname("mapped:0").unwrap().index, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
