//! libmx.
pub mod ffi;
pub mod core;
