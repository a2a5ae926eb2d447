//! ELF symbol versions of the reference library.
//!
//! Binaries linked against the reference `libmyriexpress` record versioned
//! references for a few symbols (table [`VERSIONED_SYMBOLS`]); the dynamic
//! loader refuses to start them unless our library defines those symbols
//! with the same versions. Every other symbol is unversioned.
//!
//! How: rustc always hands the linker its own *anonymous* version script for
//! a cdylib (`{ global: <exports>; local: *; }`). GNU ld cannot combine that
//! with named version nodes at all, and lld keeps the anonymous assignment
//! (our `mx.map` listing only produces "attempt to reassign" warnings). So
//! `mx.map` (passed by `build.rs`, which also makes the cdylib link with
//! lld) only *defines* the version nodes, and each versioned symbol renames
//! itself with an assembler directive `.symver sym, sym@@@VER`, emitted by
//! `mx_symbol_version!`.
//!
//! The directive must be in the SAME module as the `#[no_mangle]` definition
//! (so both land in the same codegen unit; elsewhere the directive silently
//! turns into an undefined versioned reference and the symbol stays
//! unversioned). Invoke it only for symbols that exist: a directive naming a
//! missing symbol breaks the link of the test executables.
//! `tests/c_abi.rs` checks the result on the built library.

/// `(symbol, version)` pairs of the reference library.
pub const VERSIONED_SYMBOLS: &[(&str, &str)] = &[
    ("mx_open_endpoint", "MX_0.9"),
    ("mx_decompose_endpoint_addr", "MX_0.9"),
    ("mx_get_info", "MX_0.91"),
    ("mx_test", "MX_0.91"),
    ("mx_wait", "MX_0.91"),
    ("mx_iprobe", "MX_0.91"),
    ("mx__init_api", "MX_0.92"),
];

/// Give the `#[no_mangle]` function `$sym` (defined in the invoking module)
/// the default ELF version `$ver`:
/// `mx_symbol_version!("mx_test", "MX_0.91");`
/// Must match [`VERSIONED_SYMBOLS`] and the nodes of `mx.map`.
macro_rules! mx_symbol_version {
    ($sym:literal, $ver:literal) => {
        #[cfg(all(mx_symver, not(miri)))]
        ::core::arch::global_asm!(concat!(".symver ", $sym, ", ", $sym, "@@@", $ver));
    };
}
pub(crate) use mx_symbol_version;
