//! A C program that waits the way an MPI progress engine does
//! (`benches/c/mx_mpi_poll.c`: `mx_test` or `mx_ipeek` in a tight loop, no
//! yield), built here with gcc against our `myriexpress.h` and the
//! `libmyriexpress.so` of this build, run as a receiver and a sender
//! through one backend. It shows what MPI programs and classic MX programs
//! see, as opposed to our own tools, which yield between polls.

use crate::harness::{collect, server_done, workspace_root, CaseResult, Ctx};
use crate::pingpong::PLAN_ENV;
use crate::procs::{Guest, TickWindow};
use crate::record::Record;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Transport name of the program's figures.
pub const TRANSPORT: &str = "mx-c-mpipoll";

/// The ways the program polls, as its command line names them, and the
/// mode of their figures.
pub const POLLS: [(&str, &str); 2] = [("test", "busy mx_test"), ("ipeek", "busy mx_ipeek")];

/// The program, built, and the directory its library names live in.
#[derive(Debug, Clone)]
pub struct CProg {
    /// The executable.
    pub exe: PathBuf,
    /// Holds `libmyriexpress.so` and `.so.0` (links to the cdylib):
    /// `LD_LIBRARY_PATH` for the program.
    pub lib_dir: PathBuf,
}

/// The cdylib of this build (`liblibmx.so` in the profile directory of
/// the running executable, or of its `deps/` parent), built first with
/// cargo when `build`.
pub fn cdylib(build: bool) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-q", "-p", "libmx", "--lib"]);
        if dir.ends_with("release") {
            c.arg("--release");
        }
        c.current_dir(workspace_root());
        let _ = c.status();
    }
    let so = dir.join("liblibmx.so");
    so.exists().then_some(so)
}

/// Compile `benches/c/mx_mpi_poll.c` into `out` against our headers and
/// `so` (installed there under the `libmyriexpress` names).
///
/// # Errors
/// gcc missing or failing (its message).
pub fn build(so: &Path, out: &Path) -> Result<CProg, String> {
    let lib_dir = out.join("lib");
    std::fs::create_dir_all(&lib_dir).map_err(|e| format!("{}: {e}", lib_dir.display()))?;
    for name in ["libmyriexpress.so", "libmyriexpress.so.0"] {
        let link = lib_dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(so, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    let root = workspace_root();
    let exe = out.join("mx_mpi_poll");
    let o = Command::new("gcc")
        .args(["-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("crates/libmx/include"))
        .arg(root.join("benches/c/mx_mpi_poll.c"))
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lmyriexpress", "-o"])
        .arg(&exe)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "gcc mx_mpi_poll.c failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(CProg { exe, lib_dir })
}

fn command(p: &CProg, sock: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(&p.exe);
    c.args(args)
        .env("LD_LIBRARY_PATH", &p.lib_dir)
        .env("MX_BACKEND_SOCKET", sock)
        .env(
            PLAN_ENV,
            std::env::var(PLAN_ENV).unwrap_or_else(|_| "full".into()),
        );
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Receiver and sender of the program through a backend of `ctx`
/// (`--idle yield`), polling by `poll` (`test` or `ipeek`, see [`POLLS`]);
/// `env` is given to both (e.g. `MX_POLL_YIELD=0` to measure without the
/// library's cooperative polling). Figures: latency and ping-pong
/// bandwidth 0 B .. 4 MiB, streaming 64 KiB .. 4 MiB, the backend's CPU.
pub fn run(ctx: &Ctx, p: &CProg, poll: &str, mode: &str, env: &[(&str, &str)]) -> CaseResult {
    let be = ctx.backend_yield();
    let cpu = TickWindow::start(be.pid());
    let mut rx = Guest::spawn_cmd(command(p, &be.socket, &["recv", "2", poll], env));
    let l = rx
        .line(Duration::from_secs(20))
        .ok_or("the receiver did not start")?;
    let nic = l
        .strip_prefix("READY ")
        .ok_or_else(|| format!("the receiver said {l}"))?
        .to_string();
    let mut tx = Guest::spawn_cmd(command(
        p,
        &be.socket,
        &["send", &nic, "2", poll, TRANSPORT, mode],
        env,
    ));
    let mut recs = collect(&mut tx, ctx.limit())?;
    let (pct, _) = cpu.percent();
    server_done(&mut rx)?;
    if recs.is_empty() {
        return Err("the sender reported nothing".into());
    }
    recs.push(
        Record::new(TRANSPORT, mode, None, "backend_cpu", pct, None, "%")
            .with_note("backend --idle yield, over the whole ping-pong and streaming run"),
    );
    Ok(recs)
}
