//! Helpers of the integration tests: an embedded backend on a temporary
//! socket, child processes with deadlines, and a parser of the table.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Every child gets at most this long.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// Process-heavy tests take turns: a 2-core machine runs one pair of
/// busy-polling processes well, several badly.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// An embedded backend on a socket in a fresh temporary directory.
pub struct Fixture {
    pub dir: PathBuf,
    pub sock: PathBuf,
    backend: Option<backend::EmbeddedBackend>,
}

impl Fixture {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mx_pingpong-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("backend.sock");
        let backend = backend::spawn_local(backend::BackendConfig::new(), &sock).unwrap();
        Fixture {
            dir,
            sock,
            backend: Some(backend),
        }
    }

    /// The board's NIC id and hostname.
    pub fn board(&self) -> (u64, String) {
        let fe = frontend::Frontend::<mx_proto::platform::local::LocalGuest>::attach(
            &mx_proto::platform::local::LocalTarget::new(&self.sock),
        )
        .unwrap();
        (fe.board().nic_id, fe.board().hostname.clone())
    }

    /// `mx_pingpong ARGS --socket SOCK`, started.
    pub fn pingpong(&self, args: &[&str]) -> Proc {
        Proc::spawn(env!("CARGO_BIN_EXE_mx_pingpong"), args, Some(&self.sock))
    }

    /// `mx_info ARGS --socket SOCK`, run to the end.
    pub fn info(&self, args: &[&str]) -> Output {
        Proc::spawn(env!("CARGO_BIN_EXE_mx_info"), args, Some(&self.sock)).finish()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.backend.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A child process, killed on drop; its stdout arrives line by line.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    started: Instant,
    deadline: Duration,
}

impl Proc {
    pub fn spawn(exe: &str, args: &[&str], sock: Option<&Path>) -> Proc {
        let mut cmd = Command::new(exe);
        cmd.args(args).env_remove("MX_BACKEND_SOCKET");
        if let Some(s) = sock {
            cmd.arg("--socket").arg(s);
        }
        Proc::spawn_cmd(cmd, DEADLINE)
    }

    /// Run `cmd` with its stdout read line by line and its stderr kept,
    /// killed if it runs past `deadline`.
    pub fn spawn_cmd(mut cmd: Command, deadline: Duration) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
            deadline,
        }
    }

    /// The next stdout line, within the deadline.
    pub fn line(&mut self) -> String {
        let left = self.deadline.saturating_sub(self.started.elapsed());
        match self.lines.recv_timeout(left) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(_) => {
                let _ = self.child.kill();
                panic!("no output line in time; so far: {:?}", self.seen)
            }
        }
    }

    /// Read lines until one contains `marker`, within the deadline.
    pub fn wait_line(&mut self, marker: &str) {
        while !self.seen.iter().any(|l| l.contains(marker)) {
            self.line();
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the exit (killing it past the deadline) and collect output.
    pub fn finish(mut self) -> Output {
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if self.started.elapsed() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "child still running after {:?}; stdout so far {:?}, stderr {:?}",
                    self.deadline, self.seen, err
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        // The stdout reader ends at EOF once the process is gone.
        let mut out = std::mem::take(&mut self.seen);
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(l);
        }
        Output {
            status,
            stdout: out.join("\n"),
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The sender's table.
#[derive(Debug)]
pub struct Table {
    pub host: String,
    pub iterations: u32,
    pub rows: Vec<(u32, f64, f64)>,
}

pub const HEADER: &str = "   Length   Latency(us)    Bandwidth(MB/s)";

/// Parse a sender's stdout without regexes: `Starting pingpong send to
/// host H`, `Verifying results` with -V, `Running N iterations.`, optional notes in parentheses, the
/// header, then rows exactly as `%9d   %9.3f       %8.3f` prints them,
/// lengths increasing.
pub fn parse_table(stdout: &str) -> Table {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Starting pingpong send to host "));
    let host = lines
        .next()
        .unwrap_or_else(|| panic!("no start line in {stdout:?}"))
        .trim_start_matches("Starting pingpong send to host ")
        .to_string();
    // The classic tool says so when -V is on.
    let mut lines = lines.skip_while(|l| *l == "Verifying results");
    let running = lines.next().expect("Running line");
    let iterations = running
        .strip_prefix("Running ")
        .and_then(|r| r.strip_suffix(" iterations."))
        .unwrap_or_else(|| panic!("bad Running line {running:?}"))
        .parse()
        .expect("iterations");
    let mut lines = lines.skip_while(|l| l.starts_with('('));
    assert_eq!(lines.next(), Some(HEADER), "header in {stdout:?}");
    let mut rows: Vec<(u32, f64, f64)> = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 3, "row {l:?}");
        let len: u32 = f[0].parse().unwrap_or_else(|_| panic!("length in {l:?}"));
        let lat: f64 = f[1].parse().unwrap_or_else(|_| panic!("latency in {l:?}"));
        let bw: f64 = f[2]
            .parse()
            .unwrap_or_else(|_| panic!("bandwidth in {l:?}"));
        // Same text as C's "%9d   %9.3f       %8.3f" would print.
        let again = format!("{len:9}   {:>9}       {:>8}", f[1], f[2]);
        assert_eq!(l, again, "row format");
        for v in [f[1], f[2]] {
            let dec = v
                .split('.')
                .nth(1)
                .unwrap_or_else(|| panic!("{v:?} has no decimals"));
            assert_eq!(dec.len(), 3, "three decimals in {l:?}");
        }
        assert!(lat > 0.0 && lat.is_finite(), "latency {l:?}");
        assert!(bw >= 0.0 && bw.is_finite(), "bandwidth {l:?}");
        if len == 0 {
            assert_eq!(bw, 0.0);
        }
        if let Some(&(prev, _, _)) = rows.last() {
            assert!(len > prev, "lengths increase: {prev} then {len}");
        }
        rows.push((len, lat, bw));
    }
    Table {
        host,
        iterations,
        rows,
    }
}

pub fn lengths(t: &Table) -> Vec<u32> {
    t.rows.iter().map(|r| r.0).collect()
}
