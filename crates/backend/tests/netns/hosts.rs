//! Real `mx-backend` processes in the hosts of a [`Net`](super::Net), and
//! the programs that talk to them (`mx_pingpong`, `mx_info`, C programs
//! built against `libmyriexpress.so`), each with a deadline and killed on
//! drop.
//!
//! The tools are found next to the test's target directory
//! (`target/<profile>/`): `cargo build --workspace --all-targets` (what CI
//! and `scripts/test.sh` run first) puts them there.

#![allow(dead_code)]

use crate::netns::{mac_str, Net};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `target/<profile>/`, the directory of the workspace's binaries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps")
        .to_path_buf()
}

/// A workspace binary or library in `target/<profile>/`.
pub fn artifact(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first (as CI does)",
        p.display()
    );
    p
}

/// Wire profile of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Myricom MX (MTU at least 4144).
    Mx,
    /// Open-MX with the given MTU.
    OpenMx(u32),
}

impl Profile {
    /// `--profile` value.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Mx => "mx",
            Profile::OpenMx(_) => "open-mx",
        }
    }

    /// The links' MTU.
    pub fn link_mtu(self) -> u32 {
        match self {
            Profile::Mx => 4144,
            Profile::OpenMx(m) => m,
        }
    }
}

/// Hostname the backend of host `i` announces.
pub fn hostname(i: usize) -> String {
    format!("h{i}:0")
}

/// One `mx-backend` process in a host namespace.
pub struct Backend {
    child: Option<Child>,
    /// Its socket.
    pub sock: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    args: Vec<String>,
    ns: String,
}

/// Options of the backends of a run.
#[derive(Debug, Clone)]
pub struct BackendOpts {
    /// Wire profile.
    pub profile: Profile,
    /// Write a static peers file of every host and pass `--no-discovery`.
    pub static_peers: bool,
    /// `--pull-timeout-s`.
    pub pull_timeout_s: u64,
}

impl BackendOpts {
    /// Static peers, discovery off, 30 s pull timeout.
    pub fn new(profile: Profile) -> Self {
        BackendOpts {
            profile,
            static_peers: true,
            pull_timeout_s: 30,
        }
    }
}

/// A scratch directory under /tmp (Unix socket paths are short), removed
/// on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after the test.
    pub fn new(test: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("x2mh-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Backend {
    /// Starts the backend of host `i` (bound to its NIC interface) and
    /// waits until it serves its socket.
    pub fn start(net: &Net, i: usize, opts: &BackendOpts, dir: &Path) -> Backend {
        let h = net.host(i);
        let sock = dir.join(format!("h{i}.sock"));
        let log = dir.join(format!("h{i}.log"));
        let mut args: Vec<String> = vec![
            "--iface".into(),
            h.nic_iface().into(),
            "--profile".into(),
            opts.profile.name().into(),
            "--hostname".into(),
            hostname(i),
            "--socket".into(),
            sock.display().to_string(),
            "--pull-timeout-s".into(),
            opts.pull_timeout_s.to_string(),
        ];
        if let Profile::OpenMx(m) = opts.profile {
            args.extend(["--mtu".into(), m.to_string()]);
        }
        if opts.static_peers {
            let peers = dir.join(format!("h{i}.peers"));
            let text: String = net
                .hosts()
                .iter()
                .enumerate()
                .map(|(k, o)| format!("{} {}\n", mac_str(&o.mac), hostname(k)))
                .collect();
            std::fs::write(&peers, text).expect("peers file");
            args.extend([
                "--peers".into(),
                peers.display().to_string(),
                "--no-discovery".into(),
            ]);
        }
        let mut b = Backend {
            child: None,
            sock,
            log,
            args,
            ns: h.ns.clone(),
        };
        b.spawn(net);
        b
    }

    fn spawn(&mut self, net: &Net) {
        let _ = std::fs::remove_file(&self.sock);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("backend log");
        // `ip netns exec` execs the program: the child is the backend.
        let child = net
            .command_in(&self.ns, env!("CARGO_BIN_EXE_mx-backend"))
            .args(&self.args)
            .env_remove("MX_BACKEND_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mx-backend");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mx-backend exited at start ({st}): {}", self.log_text());
            }
            if self.sock.exists() && info(&self.sock, &[]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mx-backend not serving after 15 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL (no clean-up, as a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same arguments (after [`kill`](Self::kill)).
    pub fn restart(&mut self, net: &Net) {
        self.kill();
        self.spawn(net);
    }

    /// Stops it with SIGTERM (it logs its NIC counters) and returns the
    /// `name=value` pairs of its last "NIC counters" log line.
    pub fn stop_counters(&mut self) -> Vec<(String, u64)> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let log = self.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("NIC counters"))
            .unwrap_or_else(|| panic!("no NIC counters in the log: {log}"));
        parse_counters(line)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `counters=a=1, b c=2 stats=...` (tracing's field format) as pairs.
fn parse_counters(line: &str) -> Vec<(String, u64)> {
    let line = strip_ansi(line);
    let line = line.as_str();
    let start = line.find("counters=").map_or(line.len(), |p| p + 9);
    let rest = &line[start..];
    let end = rest.find(" stats=").unwrap_or(rest.len());
    rest[..end]
        .split(", ")
        .filter_map(|kv| {
            let (k, v) = kv.rsplit_once('=')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `s` without ANSI escape sequences (the log may be coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ends with a letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Value of counter `label` (0 if absent: only non-zero ones are logged).
pub fn counter(c: &[(String, u64)], label: &str) -> u64 {
    c.iter().find(|(k, _)| k == label).map_or(0, |(_, v)| *v)
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// A child process with a deadline, killed on drop; stdout line by line.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    deadline: Instant,
    what: String,
}

impl Proc {
    /// Spawns `cmd` (stdio set here) with `limit` to finish.
    pub fn spawn(mut cmd: Command, limit: Duration) -> Proc {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
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
            deadline: Instant::now() + limit,
            what,
        }
    }

    /// Waits for a stdout line containing `marker`.
    pub fn wait_line(&mut self, marker: &str) -> String {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(marker) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "{}: no line with {marker:?}; stdout {:?}, stderr {:?}",
                        self.what, self.seen, err
                    );
                }
            }
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit (killing it past the deadline: a panic).
    pub fn finish(mut self) -> Output {
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "{} still running at its deadline; stdout {:?}, stderr {:?}",
                    self.what, self.seen, err
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
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

/// `mx_info ARGS --socket SOCK`, run to the end (the socket is a file:
/// no namespace needed).
pub fn info(sock: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(artifact("mx_info"));
    c.args(args).arg("--socket").arg(sock);
    Proc::spawn(c, Duration::from_secs(10)).finish()
}

/// `mx_pingpong ARGS --socket SOCK`, started, with `limit` to finish.
pub fn pingpong(sock: &Path, args: &[&str], limit: Duration) -> Proc {
    let mut c = Command::new(artifact("mx_pingpong"));
    c.args(args)
        .arg("--socket")
        .arg(sock)
        .env_remove("MX_BACKEND_SOCKET");
    Proc::spawn(c, limit)
}

/// [`pingpong`] with extra environment variables (e.g. `MX_STAGE_LARGE`).
pub fn pingpong_env(sock: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Proc {
    let mut c = Command::new(artifact("mx_pingpong"));
    c.args(args)
        .arg("--socket")
        .arg(sock)
        .env_remove("MX_BACKEND_SOCKET")
        .envs(env.iter().copied());
    Proc::spawn(c, limit)
}

/// A board field of `mx_info` (`  frag max       8192` → "8192").
pub fn board_field(info_out: &str, field: &str) -> String {
    info_out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(field).map(str::trim))
        .unwrap_or_else(|| panic!("no {field:?} in {info_out}"))
        .to_string()
}
