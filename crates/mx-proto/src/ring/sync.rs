//! The atomics the ring is built from, switchable for the loom model checker.
//!
//! Normal builds use `core::sync::atomic`. Under `--cfg loom` the same names
//! come from `loom`, whose atomics record every load, store and fence so that
//! `loom::model` can enumerate the interleavings and weak-memory outcomes the
//! C++20/Rust memory model allows. Only the ring engine (the `Producer` and
//! `Consumer` of the parent module) goes through this shim; code that
//! reinterprets raw shared memory as atomics (the control page and the raw
//! constructors) still compiles under loom, so that code built on it
//! type-checks, but panics if run: loom's atomics are bookkeeping objects,
//! not plain 4- or 8-byte cells.

#[cfg(loom)]
pub(crate) use ::loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
