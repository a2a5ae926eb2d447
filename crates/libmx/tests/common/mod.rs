//! Set-up shared by the libmx integration tests that run endpoints on
//! embedded backends: scratch directories, a backend of one's own or
//! several on the simulated wire, endpoints, connected pairs, the size
//! classes and the byte-checked exchange.

// Each test file uses its own part of the helpers.
#![allow(dead_code)]

use backend::nic::sim::Hub;
use backend::{spawn_local, spawn_local_with_nic, BackendConfig, EmbeddedBackend};
use libmx::core::{EndpointAddr, Status};
use libmx::endpoint::{Endpoint, OpenOptions};
use mx_proto::msg::control::PeerInfo;
use mx_proto::platform::local::LocalTarget;
use mxoe_wire::WireProfile;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The endpoints of these tests: owned buffers.
pub type Ep = Endpoint<Vec<u8>>;

/// How long one step (a connect, a wait) may take before the test fails.
pub const T: Option<Duration> = Some(Duration::from_secs(20));

/// `len` bytes that differ with `salt`, so a message delivered to the
/// wrong receive or with shifted bytes does not compare equal.
pub fn pattern(len: usize, salt: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) ^ salt.wrapping_mul(0x9e37)) as u8)
        .collect()
}

/// Every size class and its edges for a board whose fragments carry
/// `frag_max` bytes: empty, tiny (32), small (128), medium (one fragment,
/// several, the 32 KiB medium limit), then a large one and `large`.
pub fn size_classes(frag_max: usize, large: &[usize]) -> Vec<usize> {
    let fm = frag_max;
    let mut v = vec![
        0,
        1,
        32,
        33,
        128,
        129,
        fm - 1,
        fm,
        fm + 1,
        32768,
        32769,
        300_000,
    ];
    v.extend_from_slice(large);
    v
}

/// A fresh directory `mx-<tag>-<pid>` under the temporary directory.
pub fn test_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Options of endpoint `id` with `key`, the rest default.
pub fn opts(id: u8, key: u32) -> OpenOptions {
    OpenOptions {
        endpoint: Some(id),
        key,
        ..OpenOptions::default()
    }
}

/// An endpoint of the backend listening at `socket`.
pub fn open_at(socket: &Path, opts: &OpenOptions) -> Ep {
    Endpoint::open(Some(&LocalTarget::new(socket)), opts).unwrap()
}

/// A backend of its own (no wire side) in a directory of its own, which
/// goes with it.
pub struct Host {
    /// The backend.
    pub be: EmbeddedBackend,
    /// Its directory (socket inside).
    pub dir: PathBuf,
}

impl Host {
    /// A backend with `cfg` in [`test_dir`]`(tag)`.
    pub fn new(tag: &str, cfg: BackendConfig) -> Host {
        let dir = test_dir(tag);
        let be = spawn_local(cfg, dir.join("backend.sock")).unwrap();
        Host { be, dir }
    }

    /// An endpoint of this backend.
    pub fn open(&self, opts: &OpenOptions) -> Ep {
        open_at(self.be.socket(), opts)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `a` and `b` (endpoints of one host) connected both ways: `a`'s address
/// of `b`, `b`'s of `a`.
pub fn connect_pair(a: &Ep, b: &Ep, key: u32, t: Option<Duration>) -> (EndpointAddr, EndpointAddr) {
    let nic = a.frontend().board().nic_id;
    let ida = a.with_core(|c| c.config().endpoint);
    let idb = b.with_core(|c| c.config().endpoint);
    (
        a.connect(nic, idb, key, t).unwrap(),
        b.connect(nic, ida, key, t).unwrap(),
    )
}

/// One message `from` -> `to` of `len` bytes with match `tag`, checked
/// byte for byte, both sides successful, each within [`T`].
pub fn exchange(from: &Ep, to: &Ep, dest: EndpointAddr, len: usize, tag: u64) {
    exchange_within(from, to, dest, len, tag, T)
}

/// [`exchange`] with `data` as the message and `t` as the bound.
pub fn exchange_data(
    from: &Ep,
    to: &Ep,
    dest: EndpointAddr,
    data: &[u8],
    tag: u64,
    t: Option<Duration>,
) {
    let len = data.len();
    let r = to.irecv(vec![0; len], tag, u64::MAX, 0).unwrap();
    let s = from.isend(dest, data.to_vec(), tag, 0, false).unwrap();
    let got = to.wait(r, t).unwrap().expect("receive completes");
    assert_eq!(got.status, Status::Success, "len {len}");
    assert_eq!(got.xfer_length as usize, len);
    assert!(
        got.buf.as_deref() == Some(data),
        "bytes differ at len {len}"
    );
    let Some(sent) = from.wait(s, t).unwrap() else {
        eprintln!("from stats {:?}", from.with_core(|c| *c.stats()));
        eprintln!("to stats {:?}", to.with_core(|c| *c.stats()));
        panic!("send of len {len} never completes");
    };
    assert_eq!(sent.status, Status::Success, "send of len {len}");
}

/// [`exchange`] within `t`.
pub fn exchange_within(
    from: &Ep,
    to: &Ep,
    dest: EndpointAddr,
    len: usize,
    tag: u64,
    t: Option<Duration>,
) {
    exchange_data(from, to, dest, &pattern(len, tag), tag, t)
}

// ------------------------------------------------ the simulated wire ---

/// The NIC address of simulated host `n`.
pub fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0x4d, 0x58, n]
}

/// Backend `name` (hostname `<name>:0`, socket `dir/<name>.sock`) with
/// `cfg` and `profile`, its NIC [`mac`]`(n)` on `hub`.
pub fn start_on(
    hub: &Hub,
    dir: &Path,
    name: &str,
    n: u8,
    profile: WireProfile,
    mut cfg: BackendConfig,
) -> EmbeddedBackend {
    cfg.hostname = format!("{name}:0");
    cfg.set_profile(profile);
    let nic = hub.attach(mac(n), profile.frame_budget());
    spawn_local_with_nic(cfg, dir.join(format!("{name}.sock")), Box::new(nic)).unwrap()
}

/// NIC counter `label` of `be`.
pub fn nic(be: &EmbeddedBackend, label: &str) -> u64 {
    be.nic_counters()
        .unwrap()
        .by_label(label)
        .unwrap_or_else(|| panic!("no counter {label:?}"))
}

/// The peer `hostname` once `ep`'s backend knows it (discovery: mapper
/// announcement, then HOST_QUERY/HOST_REPLY), within `within`.
pub fn wait_peer(ep: &Ep, hostname: &str, within: Duration) -> PeerInfo {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(p) = ep.frontend().peer_by_hostname(hostname) {
            return p;
        }
        assert!(Instant::now() < deadline, "{hostname} never discovered");
        std::thread::sleep(Duration::from_millis(5));
    }
}
