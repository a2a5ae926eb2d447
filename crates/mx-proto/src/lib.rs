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
pub mod channel;
pub mod msg;
pub mod peer;
pub mod platform;
pub mod region;
pub mod ring;
