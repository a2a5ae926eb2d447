//! MXoE wire format.
