//! libmx.
pub mod ffi;
