//! The Dom0 backend of Xen2MX-rs: guests attach, open endpoints, and
//! exchange MX messages; the backend moves them between endpoints of the
//! same host (the intra-node shortcut) and, with a NIC, over MXoE.
//!
//! The daemon is `mx-backend`; tests and demos embed it with
//! [`spawn_local`] (no NIC: one host) or [`spawn_local_with_nic`] (MXoE
//! on a [`nic::Nic`], e.g. the in-memory [`nic::sim`] wire). It trusts nothing a guest writes: commands are copied
//! out of shared memory, then validated, then acted on; indices, lengths,
//! slots and regions are checked against what that guest owns (see
//! `docs/DESIGN.md`).

// Unsafe code lives only at the edges that need it (the AF_PACKET layer and
// its system calls, `nic::af_packet`, `nic::sys`), which allow it themselves.
#![deny(unsafe_code)]

pub mod command;
pub mod config;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod endpoint;
pub mod endpoints;
pub mod nic;
pub mod peer_channels;
pub mod peers;
pub mod pull;
pub mod raw_endpoint;
pub use mx_proto::region;
pub mod service;
pub mod shortcut;
pub mod window;
pub mod wire;

pub use config::{BackendConfig, GuestLimits, IdlePolicy, RawAccess, WireTiming};
pub use counters::{NicCounters, RawCounters};
pub use daemon::{Backend, StopHandle};

use mx_proto::platform::local::{GuestRange, LocalHost, LocalHostConfig};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The bulk-copy reference of the local platform: an address range of the
/// guest process.
pub fn local_region(addr: u64, len: usize) -> GuestRange {
    GuestRange::new(addr, len as u64)
}

/// A backend on the local platform running on a thread of this process;
/// stopped and joined on drop.
pub struct EmbeddedBackend {
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    socket: PathBuf,
    nic_id: u64,
    nic_counters: Option<Arc<NicCounters>>,
    raw_counters: Arc<RawCounters>,
}

impl EmbeddedBackend {
    /// The rendezvous socket guests attach to.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The board address (the NIC's MAC with a NIC).
    pub fn nic_id(&self) -> u64 {
        self.nic_id
    }

    /// The NIC counters, live (`None` without a NIC; a board without one
    /// that gained a wire side for `MX_DISABLE_SHMEM` reports its counters
    /// on the control path, `ControlRequest::NicCounters`).
    pub fn nic_counters(&self) -> Option<&NicCounters> {
        self.nic_counters.as_deref()
    }

    /// The raw-endpoint counters, live.
    pub fn raw_counters(&self) -> &RawCounters {
        &self.raw_counters
    }
}

impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start a local-platform backend listening at `socket` on a new thread.
///
/// # Errors
/// If the socket cannot be bound (e.g. another backend is listening there).
pub fn spawn_local(cfg: BackendConfig, socket: impl Into<PathBuf>) -> io::Result<EmbeddedBackend> {
    spawn(cfg, socket.into(), None)
}

/// Start a local-platform backend listening at `socket` that speaks MXoE
/// on `nic`, on a new thread.
///
/// # Errors
/// If the socket cannot be bound or the peers file cannot be read.
pub fn spawn_local_with_nic(
    cfg: BackendConfig,
    socket: impl Into<PathBuf>,
    nic: Box<dyn nic::Nic>,
) -> io::Result<EmbeddedBackend> {
    spawn(cfg, socket.into(), Some(nic))
}

fn spawn(
    cfg: BackendConfig,
    socket: PathBuf,
    nic: Option<Box<dyn nic::Nic>>,
) -> io::Result<EmbeddedBackend> {
    let mut backend = Backend::<LocalHost>::new_with_nic(
        cfg,
        &LocalHostConfig::new(socket.clone()),
        local_region,
        nic,
    )?;
    let nic_id = backend.board_info().nic_id;
    let nic_counters = backend.nic_counters();
    let raw_counters = backend.raw_counters();
    let stop = backend.stop_handle();
    let thread = std::thread::Builder::new()
        .name("mx-backend".into())
        .spawn(move || backend.run())?;
    Ok(EmbeddedBackend {
        stop,
        thread: Some(thread),
        socket,
        nic_id,
        nic_counters,
        raw_counters,
    })
}
