//! Shared helpers of the split-driver process tests: the real `mx-backend`
//! as a child process, guest processes (this test binary re-run in a
//! role), and the message schedule and byte patterns both sides agree on.
//!
//! Parent and guests talk over the guests' stdin/stdout in lines: the
//! parent writes commands, a guest answers with lines that start with `MX`
//! (everything else on its stdout is the test harness talking).

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

pub mod guest;
pub mod hostile;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable selecting a guest role; the child test is a no-op
/// without it.
pub const ROLE_ENV: &str = "MX_SPLIT_ROLE";
/// Environment variable carrying the backend socket path to a guest.
pub const SOCKET_ENV: &str = "MX_SPLIT_SOCKET";
/// Environment variable: the endpoint id a node guest opens (default: any).
pub const EP_ENV: &str = "MX_SPLIT_EP";
/// Environment variable: a guest's overall deadline in seconds.
pub const DEADLINE_ENV: &str = "MX_SPLIT_DEADLINE_S";
/// Environment variable: how long the hostile guest misbehaves, in ms.
pub const HOSTILE_MS_ENV: &str = "MX_SPLIT_HOSTILE_MS";

/// Backend options for tests whose honest pair is a pair of raw
/// [`guest`] nodes: those check every message in order and, unlike libmx,
/// never retransmit, so the backend must not give up on a command to a
/// receiver that is only slow (descheduled on a loaded host) before the
/// test ends. `WireTiming::stalled_wait`'s 100 ms default drops such a
/// command (the library's retransmission recovers it); a node cannot, and
/// failed with a gap in its stream (the frag of a maximal medium message
/// waiting for receive-queue room).
pub const RAW_PAIR_ARGS: &[&str] = &["--stalled-wait-ms", "60000"];

/// Name of the child test that runs the guest roles.
pub const CHILD_TEST: &str = "guest_child";

/// How long the parent waits for any one line from a guest.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// Bit of the match info that marks the end-of-stream message.
pub const END_FLAG: u64 = 1 << 63;
/// Bit of the match info that marks a probe (no stream).
pub const PROBE_FLAG: u64 = 1 << 62;

/// Which sizes a stream cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sched {
    /// Every size class boundary: 0, 1, 32, 33, 128, 129, frag - 1, frag,
    /// frag + 1, max medium.
    All,
    /// Medium sizes only (129 .. max medium).
    Medium,
}

impl Sched {
    /// Parse `all` or `medium`.
    pub fn parse(s: &str) -> Sched {
        match s {
            "all" => Sched::All,
            "medium" => Sched::Medium,
            other => panic!("unknown schedule {other}"),
        }
    }

    /// The size of message `index` of a stream.
    pub fn size(self, index: u64, frag_max: usize, medium_max: usize) -> usize {
        let all = [
            0,
            1,
            32,
            33,
            128,
            129,
            frag_max - 1,
            frag_max,
            frag_max + 1,
            medium_max,
        ];
        let list: &[usize] = match self {
            Sched::All => &all,
            Sched::Medium => &all[5..],
        };
        list[(index % list.len() as u64) as usize]
    }
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The deterministic content of message `seq` of size `size` of stream
/// `tag`: distinct for every (sender, size, seq).
pub fn pattern(tag: u32, size: usize, seq: u64) -> Vec<u8> {
    let mut x = (u64::from(tag) << 48) ^ ((size as u64) << 24) ^ seq;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&splitmix(&mut x).to_le_bytes());
    }
    v.truncate(size);
    v
}

/// A small xorshift generator for the hostile guest.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the pid (printed by the user for replay).
    pub fn from_entropy() -> (Rng, u64) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let seed = t ^ (u64::from(std::process::id()) << 40) | 1;
        (Rng(seed), seed)
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        splitmix(&mut self.0)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Fill a buffer.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let w = self.next().to_le_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "mx-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real `mx-backend` binary, listening in a temp dir; killed on drop.
pub struct BackendProc {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl BackendProc {
    /// Start `mx-backend --socket <tmp> --log warn` plus `args`, and wait
    /// for its socket.
    pub fn start(args: &[&str]) -> BackendProc {
        Self::start_with(args, None)
    }

    /// [`start`](Self::start) with `RLIMIT_NOFILE` set to `nofile` in the
    /// backend (to run it out of descriptors).
    pub fn start_with(args: &[&str], nofile: Option<u64>) -> BackendProc {
        let dir = TempDir::new("split");
        let socket = dir.path().join("be.sock");
        let log = dir.path().join("backend.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mx-backend"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; the closure touches
            // nothing else between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("--socket")
            .arg(&socket)
            .args(["--log", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("backend log"))
            .spawn()
            .expect("spawn mx-backend");
        let mut be = BackendProc {
            child,
            socket,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !be.socket.exists() {
            assert!(be.alive(), "mx-backend exited early: {}", be.log());
            assert!(
                Instant::now() < deadline,
                "mx-backend socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        be
    }

    /// SIGTERM, then wait up to `limit` for the exit; whether it exited.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        // SAFETY: plain syscall; the pid is our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// CPU time (user + system) the process used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which ends at the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 (1-based), 11 and 12 here.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// The socket guests attach to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the backend logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BackendProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failed test says what the backend saw (its log goes with
            // its temporary directory).
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("mx-backend log (last 40 lines):\n{}", tail.join("\n"));
        }
    }
}

/// A guest process: this test binary re-run as [`CHILD_TEST`] in a role.
/// Killed on drop.
pub struct GuestProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl GuestProc {
    /// Start a guest in `role` attached to the backend at `socket`.
    pub fn spawn(name: &str, role: &str, socket: &Path, env: &[(&str, String)]) -> GuestProc {
        Self::spawn_as(name, role, socket, env, None)
    }

    /// [`spawn`](Self::spawn) as user `uid` (and its group) if given.
    pub fn spawn_as(
        name: &str,
        role: &str,
        socket: &Path,
        env: &[(&str, String)],
        uid: Option<u32>,
    ) -> GuestProc {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(SOCKET_ENV, socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn guest");
        let stdout = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prints "test guest_child ... " without a
                // newline before the role's first line.
                let start = if line.starts_with("MX") {
                    Some(0)
                } else {
                    line.find(" MX").map(|i| i + 1)
                };
                if let Some(i) = start {
                    if tx.send(line[i..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        GuestProc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn diag(&self) -> String {
        // Give the stderr reader a moment to collect a panic message.
        std::thread::sleep(Duration::from_millis(100));
        let e = self.stderr.lock().unwrap();
        let s = String::from_utf8_lossy(&e);
        let tail: String = s
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("guest {} (pid {}) stderr:\n{tail}", self.name, self.pid())
    }

    /// Write one command line.
    pub fn send(&mut self, line: &str) {
        let ok = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{line}").and_then(|()| s.flush()).is_ok())
            .unwrap_or(false);
        if !ok {
            panic!("cannot write to {}: {}", self.name, self.diag());
        }
    }

    /// Write a command and wait for its `MXACK`.
    pub fn cmd(&mut self, line: &str) {
        self.send(line);
        self.expect("MXACK");
    }

    /// Wait for a line starting with `prefix` (other lines are skipped);
    /// returns its fields after the prefix.
    pub fn expect(&mut self, prefix: &str) -> Vec<String> {
        self.expect_where(prefix, |_| true)
    }

    /// Wait for a line starting with `prefix` whose fields satisfy `pred`.
    pub fn expect_where(&mut self, prefix: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let mut it = line.split_whitespace();
                    if it.next() == Some(prefix) {
                        let fields: Vec<String> = it.map(str::to_string).collect();
                        if pred(&fields) {
                            return fields;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {prefix} line from {} within {LINE_TIMEOUT:?}: {}",
                        self.name,
                        self.diag()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{} exited before sending {prefix}: {}",
                        self.name,
                        self.diag()
                    )
                }
            }
        }
    }

    /// Wait (bounded) for the guest to exit successfully; returns the `MX`
    /// lines it printed after the last one consumed.
    pub fn wait_ok(&mut self, timeout: Duration) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "{} failed ({status}): {}",
                        self.name,
                        self.diag()
                    );
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    panic!(
                        "{} did not finish in {timeout:?}: {}",
                        self.name,
                        self.diag()
                    );
                }
            }
        }
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(l);
        }
        out
    }

    /// SIGKILL the guest and reap it.
    pub fn kill9(&mut self) {
        // std's kill() is SIGKILL on Unix.
        self.child.kill().expect("kill guest");
        let status = self.child.wait().expect("reap guest");
        assert!(!status.success());
    }
}

impl Drop for GuestProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of a guest's `MXREADY` line.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Endpoint id.
    pub ep: u8,
    /// Session id.
    pub session: u32,
}

impl Ready {
    /// Wait for `MXREADY <ep> <session> ...` from `g`.
    pub fn of(g: &mut GuestProc) -> Ready {
        let f = g.expect("MXREADY");
        Ready {
            ep: f[0].parse().unwrap(),
            session: f[1].parse().unwrap(),
        }
    }
}

/// The value of `key=value` among the fields of a line.
pub fn field<'a>(fields: &'a [String], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Find the fields of the first line starting with `prefix` in `lines`.
pub fn find_line(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(prefix)).then(|| it.map(str::to_string).collect())
        })
        .unwrap_or_else(|| panic!("no {prefix} line in {lines:?}"))
}
