//! Open MPI next to us: the `mpi_pp` bin (rsmpi, cargo feature `mpi`, not
//! in the default build) run by `mpirun -np 2` over the shared-memory
//! (`vader`) and TCP transports. Installing Open MPI and libclang (for the
//! bindings) with apt-get, and building the bin, happen here when asked.

use crate::harness::{workspace_root, CaseResult};
use crate::pingpong::{Plan, PLAN_ENV};
use crate::record::Record;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A built `mpi_pp` and the Open MPI it runs on.
#[derive(Debug, Clone)]
pub struct MpiSetup {
    /// The bin.
    pub bin: PathBuf,
    /// `mpirun --version`, first line.
    pub version: String,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn have_libclang() -> bool {
    Command::new("sh")
        .args([
            "-c",
            "ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*/libclang*.so* 2>/dev/null | grep -q .",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn run_logged(log: &mut String, what: &str, c: &mut Command) -> Result<(), String> {
    let t = Instant::now();
    let o = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    log.push_str(&format!(
        "$ {what} ({:.0} s, {})\n{}{}\n",
        t.elapsed().as_secs_f64(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ));
    if o.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        Err(format!(
            "{what} failed ({}): {}",
            o.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// Install what is missing (apt-get, as root), then build `mpi_pp`; the
/// commands' output goes to `log`.
///
/// # Errors
/// What failed, for the results.
pub fn prepare(log: &Path) -> Result<MpiSetup, String> {
    let mut text = String::new();
    let res = prepare_inner(&mut text);
    if let Some(d) = log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(log, &text);
    res
}

fn prepare_inner(log: &mut String) -> Result<MpiSetup, String> {
    if !(have("mpirun") && have("mpicc") && have_libclang()) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("Open MPI or libclang missing and not root: cannot apt-get install".into());
        }
        run_logged(
            log,
            "apt-get update",
            Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        run_logged(
            log,
            "apt-get install libopenmpi-dev openmpi-bin libclang-dev",
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args([
                    "libopenmpi-dev",
                    "openmpi-bin",
                    "libclang-dev",
                    "pkg-config",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no target dir")?.to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args([
        "build",
        "-p",
        "mx-benches",
        "--features",
        "mpi",
        "--bin",
        "mpi_pp",
    ])
    .current_dir(workspace_root());
    if dir.ends_with("release") {
        c.arg("--release");
    }
    run_logged(
        log,
        "cargo build -p mx-benches --features mpi --bin mpi_pp",
        &mut c,
    )?;
    let bin = dir.join("mpi_pp");
    if !crate::procs::is_executable(&bin) {
        return Err(format!("{} was not built", bin.display()));
    }
    let version = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    Ok(MpiSetup { bin, version })
}

/// Run `mpi_pp` over `btl` (`vader` or `tcp`), two ranks, Open MPI's
/// default binding (one core each).
pub fn run(m: &MpiSetup, btl: &str, plan: Plan) -> CaseResult {
    let transport = format!("openmpi-{btl}");
    let mode = format!("btl self,{btl}");
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .args([
            "--mca",
            "pml",
            "ob1",
            "--mca",
            "btl",
            &format!("self,{btl}"),
        ]);
    if btl == "tcp" {
        c.args(["--mca", "btl_tcp_if_include", "lo"]);
    }
    c.arg(&m.bin)
        .args([&transport, &mode])
        .env(PLAN_ENV, if plan.quick { "quick" } else { "full" })
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().map_err(|e| format!("mpirun: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(o) => o.map_err(|e| e.to_string())?,
        Err(_) => {
            // SAFETY: signalling the mpirun we started (by its pid).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return Err("mpirun timed out".into());
        }
    };
    let recs: Vec<Record> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(Record::parse)
        .collect();
    if !o.status.success() || recs.is_empty() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(4)
            .collect();
        return Err(format!(
            "mpirun failed ({}): {}",
            o.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(recs)
}
