//! The split-driver contract of Xen2MX-rs: what a guest frontend and a Dom0
//! backend share, and nothing else.
//!
//! - [`ring`]: the single-producer single-consumer shared-memory ring and
//!   the versioned control page (Xen `ring.h` notification protocol).
//! - [`msg`]: the commands, events and control requests of a channel, with
//!   fixed little-endian layouts.
//! - [`channel`]: one endpoint's channel: four rings in one shared region
//!   (commands, events, send queue, receive queue) and its two typed ends.
//! - [`platform`]: the seam to the hypervisor (shared pages, event channels,
//!   rendezvous, bulk copies) and its `local` implementation.

// Unsafe code only at the edges: the ring's atomics over shared memory and
// the platform's system calls and volatile copies (platform.rs keeps its
// own deny and allows only its `sys` modules and `unsafe impl` promises).
#![deny(unsafe_code)]

pub mod channel;
pub mod msg;
pub mod peer;
pub mod platform;
pub mod region;
#[allow(unsafe_code)]
pub mod ring;
