//! `mx_pingpong --demo`: a backend on a temporary socket in this process,
//! the receiver in a child process (this program again), the sender here.

use crate::pingpong::{self, Plan, Res};
use crate::Cli;
use mx_proto::platform::local::SOCKET_ENV;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the receiver may take to start, and to exit after the run.
const CHILD_TIMEOUT: Duration = Duration::from_secs(15);

/// Removes the temporary directory on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps the child on drop unless it already exited.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Reaper {
    /// Wait for the child to exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Res<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(st)) => return Ok(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    return Err(format!(
                        "the receiver process did not exit within {} s",
                        timeout.as_secs()
                    ))
                }
                Err(e) => return Err(format!("cannot wait for the receiver process: {e}")),
            }
        }
    }
}

/// Run the demo.
pub fn run(cli: &Cli) -> Res<()> {
    if cli.dest.is_some() {
        return Err("--demo runs both sides; drop -d".into());
    }
    let dir = std::env::temp_dir().join(format!("mx_pingpong-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = TempDir(dir);
    let sock = dir.0.join("backend.sock");
    let _ = std::fs::remove_file(&sock);
    let backend = backend::spawn_local(backend::BackendConfig::new(), &sock).map_err(|e| {
        format!(
            "cannot start the embedded backend at {}: {e}",
            sock.display()
        )
    })?;

    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--socket")
        .arg(&sock)
        .args([
            "-e",
            &cli.remote_endpoint.to_string(),
            "-f",
            &format!("{:#x}", cli.key),
            "--die-with-parent",
        ])
        .env(SOCKET_ENV, &sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if cli.block {
        cmd.arg("-w");
    }
    let mut child = Reaper(
        cmd.spawn()
            .map_err(|e| format!("cannot start the receiver process: {e}"))?,
    );
    // The child's lines, as they come.
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.0.stdout.take().ok_or("no pipe to the receiver")?;
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(CHILD_TIMEOUT)
        .map_err(|_| match child.0.try_wait() {
            Ok(Some(st)) => format!("the receiver process failed to start ({st})"),
            _ => "the receiver process did not start in time".into(),
        })?;
    crate::say!("{first}")?;

    let r = (|| {
        let ep = pingpong::open(&sock, None, cli.key)?;
        let host = ep.frontend().board().hostname.clone();
        let plan = Plan::from_cli(cli, host, true)?;
        let r = pingpong::send_run(&ep, &plan);
        pingpong::close(ep);
        r
    })();
    let st = match r {
        Ok(()) => child.wait(CHILD_TIMEOUT)?,
        Err(e) => return Err(e),
    };
    // The sender already said it verifies; the receiver's own note would
    // land after the table.
    for line in rx.try_iter().filter(|l| l != "Verifying results") {
        crate::say!("{line}")?;
    }
    drop(child);
    drop(backend);
    if !st.success() {
        return Err(format!("the receiver process failed ({st})"));
    }
    Ok(())
}
