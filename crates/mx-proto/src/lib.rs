//! Split-driver contract.
