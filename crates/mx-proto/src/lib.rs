//! Split-driver contract.
pub mod msg;
