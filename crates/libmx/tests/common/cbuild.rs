//! Building C programs against our headers and the libmx cdylib of this
//! test run, and running them on it.
//!
//! One copy for every test that compiles C: libmx's `c_abi.rs` and
//! `c_programs.rs` (`mod cbuild;` through `#[path]`), mx_pingpong's
//! `classic.rs` and the backend's netns tests, which include this file the
//! same way.

// Each including test uses its own part of the helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The names programs link with (`-lmyriexpress`) and load
/// (`libmyriexpress.so.0`, the soname).
pub const LINK_NAMES: &[&str] = &["libmyriexpress.so", "libmyriexpress.so.0"];

/// The warnings and options every MX test program of ours is built with
/// (threads included: several use them).
pub const PROGRAM_FLAGS: &[&str] = &[
    "-std=gnu99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-O1",
    "-pthread",
];

/// The libmx crate's directory (headers in `include/`, C sources in
/// `tests/c/`), found above the including crate's manifest directory.
pub fn libmx_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("crates/libmx"))
        .find(|d| d.join("include/myriexpress.h").is_file())
        .unwrap_or_else(|| panic!("no crates/libmx above {}", manifest.display()))
}

/// Our C headers.
pub fn include_dir() -> PathBuf {
    libmx_dir().join("include")
}

/// `crates/libmx/tests/c/<name>`.
pub fn c_source(name: &str) -> PathBuf {
    libmx_dir().join("tests/c").join(name)
}

/// The cdylib cargo built for this test run (`liblibmx.so` next to the
/// test executable or one directory up).
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("exe dir");
    [
        deps.join("liblibmx.so"),
        deps.parent().expect("profile dir").join("liblibmx.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| {
        panic!(
            "liblibmx.so not found next to {} (run `cargo build -p libmx` first)",
            exe.display()
        )
    })
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails the test, with the process's status and output, unless it
/// succeeded.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A directory for built programs, with `lib/` holding the cdylib under
/// the names they link with.
pub struct CScratch {
    /// Where programs are built.
    pub dir: PathBuf,
    /// The library directory (`-L` and `LD_LIBRARY_PATH`).
    pub lib: PathBuf,
}

impl CScratch {
    /// `dir` emptied first, then set up as [`CScratch::within`] does.
    pub fn fresh(dir: PathBuf, names: &[&str]) -> CScratch {
        let _ = std::fs::remove_dir_all(&dir);
        CScratch::within(dir, names)
    }

    /// `dir/lib` created in `dir` (kept as it is) with the cdylib under
    /// each of `names`.
    pub fn within(dir: PathBuf, names: &[&str]) -> CScratch {
        CScratch::with_lib(dir, &cdylib(), names)
    }

    /// As [`CScratch::within`] with the library `so` (for tests of crates
    /// that do not build the cdylib themselves and find it elsewhere).
    pub fn with_lib(dir: PathBuf, so: &Path, names: &[&str]) -> CScratch {
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).expect("mkdir scratch");
        for name in names {
            std::os::unix::fs::symlink(so, lib.join(name)).expect("symlink");
        }
        CScratch { dir, lib }
    }

    /// Compile and link `src` into `exe` with gcc and `flags`, against our
    /// headers and `-lmyriexpress` from [`lib`](Self::lib); fails the test
    /// with gcc's output if it does not build.
    pub fn gcc(&self, flags: &[&str], src: &Path, exe: &Path) {
        let out = Command::new("gcc")
            .args(flags)
            .arg("-I")
            .arg(include_dir())
            .arg(src)
            .arg("-L")
            .arg(&self.lib)
            .args(["-lmyriexpress", "-o"])
            .arg(exe)
            .output()
            .expect("run gcc");
        assert_ok(&out, &format!("gcc {}", src.display()));
    }

    /// `tests/c/<name>.c` built into `dir/<name>` with `flags`.
    pub fn build(&self, name: &str, flags: &[&str]) -> PathBuf {
        let exe = self.dir.join(name);
        self.gcc(flags, &c_source(&format!("{name}.c")), &exe);
        exe
    }

    /// A command running `exe` on our library, without the caller's
    /// `MX_ERRORS_ARE_FATAL`.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env("LD_LIBRARY_PATH", &self.lib)
            .env_remove("MX_ERRORS_ARE_FATAL");
        cmd
    }
}
