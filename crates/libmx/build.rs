//! Link settings of the `libmyriexpress` cdylib (only the cdylib: the rlib
//! and the test executables are linked normally).
//!
//! - soname `libmyriexpress.so.0` (the install script adds the
//!   `libmyriexpress.so` and `libopen-mx.so.0` names as symlinks);
//! - `mx.map` defines the version nodes `MX_0.0`, `MX_0.9`, `MX_0.91`,
//!   `MX_0.92` of the reference library, `--undefined-version` lets it
//!   mention entry points that do not exist yet;
//! - the link uses lld: rustc always adds its own anonymous version script
//!   for a cdylib, which GNU ld refuses to combine with named version nodes
//!   ("anonymous version tag cannot be combined with other version tags"),
//!   while lld accepts both. rustc's self-contained `rust-lld` is used when
//!   present (the default linker of x86_64-unknown-linux-gnu since 1.90),
//!   else a system `ld.lld`; without either the library is built without
//!   symbol versions (cfg `mx_symver` off) and a warning is printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=mx.map");
    println!("cargo::rustc-check-cfg=cfg(mx_symver)");

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }

    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmyriexpress.so.0");

    let Some(lld) = find_lld() else {
        println!(
            "cargo:warning=no lld linker found: libmyriexpress.so is built WITHOUT the \
             MX_0.9/MX_0.91/MX_0.92 symbol versions (binaries linked against the reference \
             library will not load)"
        );
        return;
    };
    if let Some(dir) = lld {
        println!("cargo:rustc-cdylib-link-arg=-B{}", dir.display());
    }
    println!("cargo:rustc-cdylib-link-arg=-fuse-ld=lld");

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let map = manifest.join("mx.map");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined-version");
    println!("cargo:rustc-cfg=mx_symver");
}

/// `Some(Some(dir))`: rustc's self-contained `gcc-ld` directory (pass `-B`);
/// `Some(None)`: `ld.lld` is on the PATH; `None`: no lld.
fn find_lld() -> Option<Option<PathBuf>> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let host = std::env::var("HOST").unwrap_or_default();
    if let Ok(out) = Command::new(&rustc).args(["--print", "sysroot"]).output() {
        if out.status.success() {
            let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let dir = Path::new(&sysroot)
                .join("lib/rustlib")
                .join(&host)
                .join("bin/gcc-ld");
            if dir.join("ld.lld").exists() {
                return Some(Some(dir));
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .any(|p| p.join("ld.lld").exists())
        .then_some(None)
}
