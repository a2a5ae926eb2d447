//! Two guests of an embedded backend that talk raw channel commands: a
//! sender with a window and a puller, as the pull tests set them up.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use backend::{spawn_local, BackendConfig, EmbeddedBackend, WireTiming};
use frontend::{Doorbell, EndpointChannel, Frontend};
use mx_proto::msg::control::ChannelSizes;
use mx_proto::msg::Command;
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub type Ep = EndpointChannel<LocalGuest>;

/// The backend (staging wait `wait`), the sender's endpoint 1 and the
/// puller's endpoint 2, each in its own attachment.
pub struct PullPair {
    pub dir: PathBuf,
    pub be: EmbeddedBackend,
    pub fe_s: Frontend<LocalGuest>,
    pub fe_p: Frontend<LocalGuest>,
    pub sender: Ep,
    pub sbell: Doorbell<LocalGuest>,
    pub puller: Ep,
    pub pbell: Doorbell<LocalGuest>,
    /// This host's index in the peer table.
    pub me: u16,
}

impl PullPair {
    pub fn new(name: &str, wait: Duration) -> PullPair {
        let dir = std::env::temp_dir().join(format!("mx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = BackendConfig::new();
        cfg.wire = WireTiming {
            staging_wait: wait,
            ..WireTiming::default()
        };
        let be = spawn_local(cfg, dir.join("b.sock")).unwrap();
        let target = LocalTarget::new(be.socket());
        let fe_s = Frontend::<LocalGuest>::attach(&target).unwrap();
        let fe_p = Frontend::<LocalGuest>::attach(&target).unwrap();
        let (sender, sbell) = fe_s.open_endpoint(1, ChannelSizes::default()).unwrap();
        let (puller, pbell) = fe_p.open_endpoint(2, ChannelSizes::default()).unwrap();
        let me = fe_s.board().self_peer;
        PullPair {
            dir,
            be,
            fe_s,
            fe_p,
            sender,
            sbell,
            puller,
            pbell,
            me,
        }
    }
}

pub fn post(ep: &mut Ep, cmd: &Command<'_>) {
    ep.post(cmd).unwrap();
    ep.flush().unwrap();
}

/// Wait until the backend consumed every command of `ep`.
pub fn consumed(ep: &mut Ep) {
    let total = ChannelSizes::default().cmd_slots;
    let t0 = Instant::now();
    while ep.command_space().unwrap() < total {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "commands not consumed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
