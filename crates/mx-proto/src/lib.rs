//! Split-driver contract.
pub mod msg;
pub mod platform;
pub mod ring;
