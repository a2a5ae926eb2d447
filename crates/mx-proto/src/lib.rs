//! Split-driver contract.
pub mod msg;
pub mod ring;
