//! Benchmark processes: every role is the running bench binary re-run with
//! `--child <role> ...`; a backend daemon (the library's service loop in a
//! child process, or an `mx-backend` binary); CPU accounting from `/proc`.

use backend::{Backend, BackendConfig, IdlePolicy};
use mx_proto::platform::local::{LocalHost, LocalHostConfig};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Proc, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::shm::STUCK;

/// This binary re-run as `--child <args...>`, stdin closed.
///
/// # Panics
/// If the running executable cannot be found.
pub fn child_cmd(args: &[&str]) -> Proc {
    let mut c = Proc::new(std::env::current_exe().expect("own path"));
    c.arg("--child").args(args).stdin(Stdio::null());
    c
}

/// A child process whose stdout lines are read by a thread, with a pipe to
/// its stdin: the guests of the benches print `READY ...` and read their
/// peer from stdin. Killed on drop.
pub struct Guest {
    /// The process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Guest {
    /// Spawn this binary as `--child <args>`.
    pub fn spawn(args: &[&str]) -> Guest {
        Guest::spawn_cmd(child_cmd(args))
    }

    /// Spawn `cmd` with piped stdin and stdout.
    ///
    /// # Panics
    /// If the process cannot be started.
    pub fn spawn_cmd(mut cmd: Proc) -> Guest {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn guest");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Guest {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child printed, or `None` after `limit` or when it
    /// closed its stdout.
    pub fn line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Every line printed so far (without waiting).
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Wait for `READY <ep> <session>`.
    ///
    /// # Panics
    /// If the child prints something else or nothing within 20 s.
    pub fn ready(&self) -> (u8, u32) {
        let l = self
            .line(Duration::from_secs(20))
            .expect("guest never became ready");
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[0], "READY", "{l}");
        (f[1].parse().unwrap(), f[2].parse().unwrap())
    }

    /// Write one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let s = self.stdin.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        writeln!(s, "{line}")?;
        s.flush()
    }

    /// Tell the child its peer: `PEER <ep> <session>`.
    pub fn peer(&mut self, ep: u8, session: u32) {
        self.send_line(&format!("PEER {ep} {session}"))
            .expect("write to guest");
    }

    /// Close stdin and wait up to `limit` for the child to exit.
    ///
    /// # Errors
    /// When it does not exit in time (it is killed then).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        drop(self.stdin.take());
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(st);
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("did not finish within {limit:?}; killed"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Close stdin and wait for a successful exit.
    ///
    /// # Panics
    /// If the child fails or does not finish within [`STUCK`].
    pub fn finish(mut self) {
        match self.wait_exit(STUCK) {
            Ok(st) => assert!(st.success(), "guest failed: {st}"),
            Err(e) => panic!("guest {e}"),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start a backend.
#[derive(Debug, Clone)]
pub struct BackendOpts {
    /// `--idle` policy: spin, yield or block.
    pub idle: String,
    /// `--spin-us`.
    pub spin_us: u64,
    /// `--max-endpoints`.
    pub max_endpoints: u8,
    /// An `mx-backend` binary to run; `None`: the library's service loop in
    /// a child process (what `mx-backend` runs after parsing its flags).
    pub bin: Option<PathBuf>,
    /// Run the binary in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// More arguments for the binary (`--iface`, `--peers`, ...).
    pub extra: Vec<String>,
}

impl BackendOpts {
    /// Policy `idle`, spin window `spin_us`, 32 endpoints, the binary named
    /// by `$MX_BACKEND_BIN` if set.
    pub fn new(idle: &str, spin_us: u64) -> BackendOpts {
        BackendOpts {
            idle: idle.to_string(),
            spin_us,
            max_endpoints: 32,
            bin: std::env::var_os("MX_BACKEND_BIN").map(PathBuf::from),
            netns: None,
            extra: Vec::new(),
        }
    }
}

/// A backend process listening in a fresh temp dir; killed on drop.
pub struct BackendProc {
    child: Child,
    /// The rendezvous socket.
    pub socket: PathBuf,
    dir: PathBuf,
}

impl BackendProc {
    /// Start a backend with policy `idle` and spin window `spin_us`.
    pub fn start(idle: &str, spin_us: u64) -> BackendProc {
        BackendProc::start_with(&BackendOpts::new(idle, spin_us))
    }

    /// Start a backend as `o` says and wait for its socket.
    ///
    /// # Panics
    /// If it cannot be started or its socket does not appear.
    pub fn start_with(o: &BackendOpts) -> BackendProc {
        BackendProc::try_start_with(o).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`BackendProc::start_with`].
    ///
    /// # Errors
    /// If it cannot be started, exits, or its socket does not appear.
    pub fn try_start_with(o: &BackendOpts) -> Result<BackendProc, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mx-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let socket = dir.join("be.sock");
        let sock = socket.to_str().ok_or("non-UTF-8 temp dir")?;
        let spin = o.spin_us.to_string();
        let max = o.max_endpoints.to_string();
        let child = match &o.bin {
            Some(bin) => {
                let mut c = match &o.netns {
                    Some(ns) => {
                        let mut c = Proc::new("ip");
                        c.args(["netns", "exec", ns]).arg(bin);
                        c
                    }
                    None => Proc::new(bin),
                };
                c.args(["--socket", sock, "--idle", &o.idle, "--spin-us", &spin])
                    .args(["--max-endpoints", &max, "--log", "warn"])
                    .args(&o.extra)
                    .stdin(Stdio::null())
                    .spawn()
            }
            None if o.max_endpoints == 32 => child_cmd(&["backend", sock, &o.idle, &spin]).spawn(),
            None => child_cmd(&["backend", sock, &o.idle, &spin, &max]).spawn(),
        }
        .map_err(|e| format!("spawn backend: {e}"))?;
        let mut be = BackendProc { child, socket, dir };
        let t0 = Instant::now();
        while !be.socket.exists() {
            if let Some(st) = be.exited() {
                return Err(format!("the backend exited ({st})"));
            }
            if t0.elapsed() > STUCK {
                return Err("the backend socket never appeared".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(be)
    }

    /// The backend's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the backend has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its temp dir (the socket's directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BackendProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Child role `backend SOCKET IDLE SPIN_US [MAX_ENDPOINTS]`: the library's
/// service loop, as `mx-backend` runs it.
///
/// # Panics
/// On bad arguments or when the socket cannot be bound.
pub fn run_backend(socket: &str, idle: &str, spin_us: &str, max_endpoints: Option<&str>) {
    let mut cfg = BackendConfig::new();
    cfg.idle = match idle {
        "spin" => IdlePolicy::Spin,
        "yield" => IdlePolicy::Yield,
        "block" => IdlePolicy::Block,
        _ => panic!("bad idle policy {idle}"),
    };
    cfg.spin = Duration::from_micros(spin_us.parse().expect("spin-us"));
    if let Some(m) = max_endpoints {
        cfg.max_endpoints = m.parse().expect("max endpoints");
    }
    let mut be =
        Backend::<LocalHost>::new(cfg, &LocalHostConfig::new(socket), backend::local_region)
            .expect("backend listen");
    be.run().expect("backend loop");
}

/// Nanoseconds process `pid`'s main thread has run
/// (`/proc/<pid>/schedstat`; 0 if gone).
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU use of some processes' main threads over a window, in % of one core
/// each.
pub struct CpuWindow {
    pids: Vec<u32>,
    start: Vec<u64>,
    t: Instant,
}

impl CpuWindow {
    /// Start the window now.
    pub fn start(pids: &[u32]) -> CpuWindow {
        CpuWindow {
            start: pids.iter().map(|&p| cpu_ns(p)).collect(),
            pids: pids.to_vec(),
            t: Instant::now(),
        }
    }

    /// % of one core each process used since the start.
    pub fn percent(&self) -> Vec<f64> {
        let wall = self.t.elapsed().as_nanos() as f64;
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(&p, &s0)| 100.0 * cpu_ns(p).saturating_sub(s0) as f64 / wall)
            .collect()
    }
}

/// `a/b/c` of rounded percentages.
pub fn fmt_cpu(v: &[f64]) -> String {
    v.iter()
        .map(|p| format!("{p:.0}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// utime + stime of process `pid`, all threads, in clock ticks
/// (`/proc/<pid>/stat` fields 14 and 15); `None` if it is gone.
pub fn try_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// As [`try_cpu_ticks`].
///
/// # Panics
/// If the process is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    try_cpu_ticks(pid).expect("proc stat")
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU of one process (all threads, `/proc/<pid>/stat`) over a window, in
/// % of one core.
pub struct TickWindow {
    pid: u32,
    t0: u64,
    start: Instant,
}

impl TickWindow {
    /// Start the window now.
    pub fn start(pid: u32) -> TickWindow {
        TickWindow {
            pid,
            t0: try_cpu_ticks(pid).unwrap_or(0),
            start: Instant::now(),
        }
    }

    /// % of one core used since the start, and the window's length.
    pub fn percent(&self) -> (f64, Duration) {
        let wall = self.start.elapsed();
        let used = try_cpu_ticks(self.pid)
            .unwrap_or(self.t0)
            .saturating_sub(self.t0);
        (
            100.0 * used as f64 / ticks_per_sec() / wall.as_secs_f64(),
            wall,
        )
    }
}

/// Whether `p` is an executable file.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
