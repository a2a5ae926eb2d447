//! A C program that drives MX the way an MPI progress engine does
//! (`benches/c/mx_mpi_poll.c`: busy-polls `mx_test` or `mx_ipeek`, never
//! blocks, never yields), built with `cc` against our installed headers and
//! `libmyriexpress.so`, two processes through one backend.
//!
//! It stands in for "MPI over MX" in every run: building Open MPI 1.8.8 with
//! its MX MTL takes about 16 minutes on this machine, too long for the
//! harness's default path.

use crate::harness::{workspace_root, CaseResult, Ctx};
use crate::procs::{BackendOpts, BackendProc, Guest, TickWindow};
use crate::record::Record;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::OnceLock;
use std::time::Duration;

/// The installed library and the built program.
#[derive(Debug, Clone)]
pub struct CProg {
    /// `<prefix>/lib` of the installed library.
    pub lib: PathBuf,
    /// The `mx_mpi_poll` executable.
    pub exe: PathBuf,
}

fn run(cmd: &mut Proc, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// Install the library (release, `scripts/install-lib.sh`) into
/// `<target>/mx` and build the program there; once per run.
///
/// # Errors
/// When the library cannot be built or no C compiler is found.
pub fn prepare() -> Result<CProg, String> {
    static ONCE: OnceLock<Result<CProg, String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let root = workspace_root();
        let prefix = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("mx");
        run(
            Proc::new("bash")
                .arg(root.join("scripts/install-lib.sh"))
                .arg("--prefix")
                .arg(&prefix)
                .current_dir(&root),
            "scripts/install-lib.sh",
        )?;
        let exe = prefix.join("bench").join("mx_mpi_poll");
        std::fs::create_dir_all(exe.parent().expect("has a parent"))
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        run(
            Proc::new(&cc)
                .args(["-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror"])
                .arg(format!("-I{}", prefix.join("include").display()))
                .arg(root.join("benches/c/mx_mpi_poll.c"))
                .arg(format!("-L{}", prefix.join("lib").display()))
                .arg("-lmyriexpress")
                .arg("-o")
                .arg(&exe),
            &format!("{cc} mx_mpi_poll.c"),
        )?;
        Ok(CProg {
            lib: prefix.join("lib"),
            exe,
        })
    })
    .clone()
}

fn command(p: &CProg, socket: &Path, args: &[&str]) -> Proc {
    let mut c = Proc::new(&p.exe);
    c.args(args)
        .env("MX_BACKEND_SOCKET", socket)
        .env("LD_LIBRARY_PATH", &p.lib);
    c
}

/// One run of the program through a fresh backend (`--idle yield`), polling
/// by `poll` (`test` or `ipeek`), with peer channels as the library's
/// default has them; plus the backend's CPU over the run.
///
/// # Errors
/// When the program cannot be built, does not start or fails.
pub fn mx_mpi_poll(ctx: &Ctx, poll: &str) -> CaseResult {
    let p = prepare()?;
    let be = BackendProc::try_start_with(&BackendOpts {
        idle: "yield".into(),
        spin_us: 200,
        max_endpoints: 32,
        bin: ctx.backend_bin.clone(),
        netns: None,
        extra: Vec::new(),
    })?;
    let cpu = TickWindow::start(be.pid());
    let mut recv = Guest::spawn_cmd(command(&p, &be.socket, &["recv", "1", poll]));
    let line = recv
        .line(Duration::from_secs(20))
        .ok_or("the receiver printed nothing")?;
    let nic = match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["READY", nic] => nic.to_string(),
        _ => return Err(format!("the receiver said {line:?}")),
    };
    let mode = format!("busy-poll {poll}");
    let mut send = Guest::spawn_cmd(command(
        &p,
        &be.socket,
        &["send", &nic, "1", poll, "mx-cprog", &mode],
    ));
    let mut recs = crate::harness::collect(&mut send, ctx.limit())?;
    let (pct, _) = cpu.percent();
    crate::harness::server_done(&mut recv)?;
    if recs.is_empty() {
        return Err("the sender printed no figure".into());
    }
    recs.push(
        Record::new("mx-cprog", &mode, None, "backend_cpu", pct, None, "%")
            .with_note("backend --idle yield, over the whole run"),
    );
    Ok(recs)
}
