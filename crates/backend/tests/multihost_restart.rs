//! A backend restart between real processes in network namespaces: host 1's
//! `mx-backend` is SIGKILLed (its guest with it) and started again while a
//! guest on host 0 stays alive. That guest's synchronous sends fail with
//! "endpoint closed" (the new backend has no endpoint open yet), then with
//! "bad session" (the endpoint reopened with a new session); after
//! reconnecting, messages flow both ways again, byte-exact.
//!
//! The guests are `netns/c/guest.c` (gcc, `libmyriexpress.so`), driven one
//! command per line. Needs root and `ip` (else `SKIP: ...`), gcc, and the
//! workspace's binaries in `target/<profile>/`.

#[path = "../../libmx/tests/common/cbuild.rs"]
mod cbuild;
#[path = "netns/hosts.rs"]
mod hosts;
mod netns;

use cbuild::{CScratch, LINK_NAMES, PROGRAM_FLAGS};

use hosts::{Backend, BackendOpts, Profile, Scratch};
use netns::Net;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Builds `netns/c/guest.c` against our headers, `mxt.h` and the cdylib of
/// this build (as `libmyriexpress.so` in `dir/lib`).
fn build_guest(dir: &Path) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("SKIP: gcc is missing");
        return None;
    }
    let c = CScratch::with_lib(
        dir.to_path_buf(),
        &hosts::artifact("liblibmx.so"),
        LINK_NAMES,
    );
    let mxt = cbuild::libmx_dir().join("tests/c");
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/c/guest.c");
    let exe = dir.join("guest");
    let flags = [PROGRAM_FLAGS, &["-I", mxt.to_str().expect("UTF-8 path")]].concat();
    c.gcc(&flags, &guest, &exe);
    Some(exe)
}

/// A running guest: commands in, one answer line each out.
struct Guest {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Guest {
    fn start(name: &'static str, exe: &Path, dir: &Path, b: &Backend) -> Guest {
        let mut child = Command::new(exe)
            .env("LD_LIBRARY_PATH", dir.join("lib"))
            .env("MX_BACKEND_SOCKET", &b.sock)
            .env_remove("MX_ERRORS_ARE_FATAL")
            .env_remove("MX_DISABLE_SELF")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn guest");
        let stdin = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Guest {
            name,
            child,
            stdin,
            lines,
        }
    }

    /// Sends a command without waiting for its answer.
    fn post(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("guest stdin");
        self.stdin.flush().expect("guest stdin");
    }

    /// The answer to the last command (30 s at most).
    fn answer(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("guest {}: no answer ({e})", self.name))
    }

    /// Runs `cmd` and returns its answer.
    fn run(&mut self, cmd: &str) -> String {
        self.post(cmd);
        self.answer()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `a` sends `len` bytes (pattern `m`) to `b`, which receives them; the
/// answers if not both successful.
fn exchange(a: &mut Guest, b: &mut Guest, len: u32, m: u64) -> Result<(), String> {
    eprintln!("exchange {} -> {}: {len} bytes, match {m}", a.name, b.name);
    b.post(&format!("recv {len} {m}"));
    let s = a.run(&format!("send {len} {m} 0"));
    let r = b.answer();
    if s.starts_with("send 0 ") && r.starts_with("recv 0 ") && r.ends_with(&format!(" {len} ok")) {
        Ok(())
    } else {
        Err(format!("{} -> {} ({len} bytes): {s} / {r}", a.name, b.name))
    }
}

/// Waits (10 s at most) until backend `b` knows `host`.
fn discovered(b: &Backend, host: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !hosts::info(&b.sock, &[]).stdout.contains(host) {
        assert!(
            std::time::Instant::now() < deadline,
            "{host} not discovered: {}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host 1's backend and guest die and come back while host 0's guest
/// stays: endpoint closed, bad session, then a reconnect (host 0's guest
/// first if `survivor_first`) and messages both ways.
fn restart_then_reconnect(survivor_first: bool) {
    let Some(net) = Net::new(2, 9000) else {
        return;
    };
    let dir = Scratch::new(if survivor_first {
        "restart-sf"
    } else {
        "restart"
    });
    let Some(exe) = build_guest(&dir.0) else {
        return;
    };
    // Discovery on: the announcements of the new backend tell host 0's
    // backend that its peer restarted ("peer restarts seen").
    let mut opts = BackendOpts::new(Profile::OpenMx(9000));
    opts.static_peers = false;
    let mut b0 = Backend::start(&net, 0, &opts, &dir.0);
    let mut b1 = Backend::start(&net, 1, &opts, &dir.0);
    let logs = |b0: &Backend, b1: &Backend| format!("{}\n{}", b0.log_text(), b1.log_text());
    discovered(&b0, "h1:0");
    discovered(&b1, "h0:0");

    let mut a = Guest::start("a", &exe, &dir.0, &b0);
    let mut b = Guest::start("b", &exe, &dir.0, &b1);
    assert_eq!(a.run("open 1"), "open ok");
    assert_eq!(b.run("open 2"), "open ok");
    assert_eq!(a.run("connect h1:0 2"), "connect ok", "{}", logs(&b0, &b1));
    assert_eq!(b.run("connect h0:0 1"), "connect ok", "{}", logs(&b0, &b1));
    for (len, m) in [(1000, 1), (100_000, 2)] {
        let r = exchange(&mut a, &mut b, len, m);
        assert!(r.is_ok(), "{r:?}\n{}", logs(&b0, &b1));
        let r = exchange(&mut b, &mut a, len, m + 10);
        assert!(r.is_ok(), "{r:?}\n{}", logs(&b0, &b1));
    }

    // Host 1 crashes (SIGKILL): its guest and its backend are gone; the
    // backend comes back with the same MAC and hostname.
    drop(b);
    b1.kill();
    b1.restart(&net);
    discovered(&b1, "h0:0");
    // No endpoint open on the new backend: endpoint closed (NACK).
    let s = a.run("send 100 4 1");
    assert!(
        s.starts_with("send 8 "),
        "want endpoint closed: {s}\n{}",
        logs(&b0, &b1)
    );
    // The endpoint reopens with a new session: bad session (NACK).
    let mut b = Guest::start("b", &exe, &dir.0, &b1);
    assert_eq!(b.run("open 2"), "open ok");
    let s = a.run("send 100 5 1");
    assert!(
        s.starts_with("send 10 "),
        "want bad session: {s}\n{}",
        logs(&b0, &b1)
    );

    // Reconnecting gives working addresses both ways.
    if survivor_first {
        assert_eq!(a.run("connect h1:0 2"), "connect ok", "{}", logs(&b0, &b1));
        assert_eq!(b.run("connect h0:0 1"), "connect ok", "{}", logs(&b0, &b1));
    } else {
        assert_eq!(b.run("connect h0:0 1"), "connect ok", "{}", logs(&b0, &b1));
        assert_eq!(a.run("connect h1:0 2"), "connect ok", "{}", logs(&b0, &b1));
    }
    for (len, m) in [(10, 60), (300_000, 6), (10, 8)] {
        let r = exchange(&mut a, &mut b, len, m);
        assert!(r.is_ok(), "{r:?}\n{}", logs(&b0, &b1));
        let r = exchange(&mut b, &mut a, len, m + 10);
        if r.is_err() {
            let c0 = b0.stop_counters();
            panic!("{r:?}\nhost 0 counters {c0:?}\n{}", b1.log_text());
        }
    }
    assert_eq!(a.run("quit"), "bye");
    assert_eq!(b.run("quit"), "bye");
    let c0 = b0.stop_counters();
    eprintln!("host 0 counters: {c0:?}");
    assert!(hosts::counter(&c0, "peer restarts seen") >= 1, "{c0:?}");
    assert!(hosts::counter(&c0, "rx nack lib") >= 2, "{c0:?}");
}

/// The restarted host reconnects first, then the survivor.
#[test]
fn backend_restart_errors_then_reconnect() {
    restart_then_reconnect(false);
}

/// The survivor reconnects first: the new instance's own connect request
/// then arrives after the survivor already learned its session from the
/// reply, and must not reset the receive seqnum the survivor announced.
#[test]
fn backend_restart_survivor_reconnects_first() {
    restart_then_reconnect(true);
}
