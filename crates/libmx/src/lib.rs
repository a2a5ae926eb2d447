//! libmx: MX semantics (Open-MX compatible) for applications in guests.
//!
//! - [`core`]: the sans-IO protocol core (partners, connect, seqnums, acks,
//!   retransmission, matching, rendezvous), tested on a simulated lossy wire.
//! - [`endpoint`]: the shell that runs a core against the backend through the
//!   frontend: progress, blocking waits, wake-ups, background progression.
//! - [`mod@env`]: the MX environment variables (`MX_DISABLE_SHMEM`,
//!   `MX_ZOMBIE_SEND`, `MX_IMM_ACK`, ...).
//! - [`peers`]: peer channels, the backend out of the data path between
//!   endpoints of one host.
//! - [`raw`]: a board's raw endpoint (the MX raw API of fabric mappers).
//! - [`ffi`]: the C ABI of `libmyriexpress.so` (MX API 0x301).

// Unsafe code only at the edge: the C ABI (the staging pool is copied
// through mx-proto's checked volatile copies, without unsafe of its own).
#![deny(unsafe_code)]
pub mod core;
pub mod endpoint;
pub mod env;
#[allow(unsafe_code)]
pub mod ffi;
pub mod peers;
pub mod raw_endpoint;
pub mod staging;
