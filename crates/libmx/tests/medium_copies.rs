//! The medium path's copies, counted: each side of a medium message copies
//! its bytes once (the user's buffer straight into the send-queue slot,
//! the receive-queue slot straight into the receive buffer), through the
//! backend and through a peer channel, with no bounce buffer. The count is
//! behaviour (docs/DESIGN.md's copy table), not timing.

use backend::{spawn_local, BackendConfig, EmbeddedBackend};
use libmx::core::{EndpointAddr, Status};
use libmx::endpoint::{CopyStats, Endpoint, OpenOptions};
use mx_proto::platform::local::LocalTarget;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Option<Duration> = Some(Duration::from_secs(10));
const KEY: u32 = 0xc0de;
/// Medium sizes: one fragment, several, the largest below the rendezvous
/// threshold, and one that ends inside a fragment.
const SIZES: [usize; 4] = [200, 8192, 32768, 20_001];

struct Host {
    _be: EmbeddedBackend,
    dir: PathBuf,
    target: LocalTarget,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn host(name: &str) -> Host {
    let dir = std::env::temp_dir().join(format!("mx-copies-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("backend.sock");
    let be = spawn_local(BackendConfig::new(), &sock).unwrap();
    Host {
        _be: be,
        target: LocalTarget::new(&sock),
        dir,
    }
}

fn open(h: &Host, id: u8, peer_channels: bool) -> Endpoint<Vec<u8>> {
    Endpoint::<Vec<u8>>::open(
        Some(&h.target),
        &OpenOptions {
            endpoint: Some(id),
            key: KEY,
            peer_channels,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

fn connect_pair(a: &Endpoint<Vec<u8>>, b: &Endpoint<Vec<u8>>) -> (EndpointAddr, EndpointAddr) {
    let nic = a.frontend().board().nic_id;
    let ida = a.with_core(|c| c.config().endpoint);
    let idb = b.with_core(|c| c.config().endpoint);
    (
        a.connect(nic, idb, KEY, T).unwrap(),
        b.connect(nic, ida, KEY, T).unwrap(),
    )
}

fn pattern(len: usize, salt: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) ^ salt) as u8)
        .collect()
}

/// One message, checked byte for byte; both requests completed.
fn exchange(
    from: &Endpoint<Vec<u8>>,
    to: &Endpoint<Vec<u8>>,
    dest: EndpointAddr,
    len: usize,
    tag: u64,
) {
    let data = pattern(len, tag);
    let r = to.irecv(vec![0; len], tag, u64::MAX, 0).unwrap();
    let s = from.isend(dest, data.clone(), tag, 0, false).unwrap();
    let got = to.wait(r, T).unwrap().expect("receive completes");
    assert_eq!(got.status, Status::Success, "len {len}");
    assert!(
        got.buf.as_deref() == Some(&data[..]),
        "bytes differ, len {len}"
    );
    let sent = from.wait(s, T).unwrap().expect("send completes");
    assert_eq!(sent.status, Status::Success);
}

fn diff(after: CopyStats, before: CopyStats) -> CopyStats {
    CopyStats {
        sendq_bytes: after.sendq_bytes - before.sendq_bytes,
        recvq_bytes: after.recvq_bytes - before.recvq_bytes,
        peer_out_bytes: after.peer_out_bytes - before.peer_out_bytes,
        peer_in_bytes: after.peer_in_bytes - before.peer_in_bytes,
        bounce_bytes: after.bounce_bytes - before.bounce_bytes,
    }
}

#[test]
fn through_the_backend_each_side_copies_a_medium_byte_once() {
    let h = host("backend");
    let a = open(&h, 1, false);
    let b = open(&h, 2, false);
    let (ab, _) = connect_pair(&a, &b);
    let (a0, b0) = (a.copy_stats(), b.copy_stats());
    let mut total = 0u64;
    for (i, len) in SIZES.into_iter().enumerate() {
        exchange(&a, &b, ab, len, i as u64);
        total += len as u64;
    }
    let (sa, sb) = (diff(a.copy_stats(), a0), diff(b.copy_stats(), b0));
    assert_eq!(
        sa,
        CopyStats {
            sendq_bytes: total,
            ..CopyStats::default()
        },
        "sender: user's buffer -> send-queue slot, once"
    );
    assert_eq!(
        sb,
        CopyStats {
            recvq_bytes: total,
            ..CopyStats::default()
        },
        "receiver: receive-queue slot -> receive buffer, once"
    );
}

#[test]
fn through_a_peer_channel_the_bytes_skip_every_scratch_buffer() {
    let h = host("peer");
    let a = open(&h, 1, true);
    let b = open(&h, 2, true);
    let (ab, ba) = connect_pair(&a, &b);
    // Tiny messages until the channel is up both ways (they carry no
    // payload slot).
    let t0 = Instant::now();
    let mut i = 0;
    while a.peer_channels_up() == 0 || b.peer_channels_up() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no channel came up");
        exchange(&a, &b, ab, 8, 1_000 + i);
        exchange(&b, &a, ba, 8, 2_000 + i);
        i += 1;
    }
    let (a0, b0) = (a.copy_stats(), b.copy_stats());
    let sent0 = a.peer_stats().sent;
    let mut total = 0u64;
    for (i, len) in SIZES.into_iter().enumerate() {
        exchange(&a, &b, ab, len, i as u64);
        total += len as u64;
    }
    assert!(a.peer_stats().sent > sent0, "the channel carried them");
    let (sa, sb) = (diff(a.copy_stats(), a0), diff(b.copy_stats(), b0));
    // One message at a time never fills the channel: every fragment took
    // it. The send-queue copy is the one the message keeps for
    // retransmission, so it may complete before its ack.
    assert_eq!(
        sa,
        CopyStats {
            sendq_bytes: total,
            peer_out_bytes: total,
            ..CopyStats::default()
        },
        "sender: user's buffer -> data slot and -> kept send-queue slot"
    );
    assert_eq!(
        sb,
        CopyStats {
            peer_in_bytes: total,
            ..CopyStats::default()
        },
        "receiver: data slot -> receive buffer, once"
    );
}
