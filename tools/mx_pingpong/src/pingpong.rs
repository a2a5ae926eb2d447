//! The two roles: the receiver (echoes pings) and the sender (times round
//! trips and prints the table).

use crate::params::{self, Params, LIST_MATCH, PARAMS_LEN, PARAM_MATCH, PING_BASE, PONG_BASE};
use crate::{mac, Cli};
use libmx::core::{Completion, EndpointAddr, ReqId, RequestError, Return, Status};
use libmx::endpoint::{Endpoint, OpenOptions};
use mx_proto::platform::local::LocalTarget;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// An endpoint with owned buffers.
pub type Ep = Endpoint<Vec<u8>>;

/// Errors are messages for the user.
pub type Res<T> = Result<T, String>;

/// Longest wait for one request inside a run before the peer is declared
/// gone.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting side checks that the backend is still there.
const ALIVE_CHECK: Duration = Duration::from_secs(1);

/// The header of the table.
pub const HEADER: &str = "   Length   Latency(us)    Bandwidth(MB/s)";

/// One row of the table (`%9d   %9.3f       %8.3f`).
pub fn row(len: u32, latency_us: f64, bandwidth_mbs: f64) -> String {
    format!("{len:9}   {latency_us:9.3}       {bandwidth_mbs:8.3}")
}

/// In a child of `--demo`: exit as soon as standard input closes, which
/// happens when the parent exits for any reason.
pub fn exit_when_stdin_closes() {
    let _ = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            eprintln!("mx_pingpong: parent gone, exiting");
            std::process::exit(3);
        });
}

/// Open an endpoint, with errors that say what to do.
pub fn open(socket: &Path, endpoint: Option<u8>, key: u32) -> Res<Ep> {
    let target = LocalTarget::new(socket);
    let opts = OpenOptions {
        endpoint,
        key,
        ..OpenOptions::default()
    };
    Ep::open(Some(&target), &opts).map_err(|e| match e {
        Return::NoDev => format!(
            "cannot reach the MX backend at {} ({}). Start one with\n  \
             mx-backend --socket {0}\n(from the source tree: cargo run --release -p backend \
             --bin mx-backend -- --socket {0}),\nthen pass --socket or set {}; \
             or try `mx_pingpong --demo`, which starts its own",
            socket.display(),
            std::fs::metadata(socket).map_or("no such socket", |_| "nobody answers"),
            mx_proto::platform::local::SOCKET_ENV,
        ),
        Return::Busy => format!(
            "endpoint {} is busy (another receiver running? pick another with -e)",
            endpoint.map_or("?".into(), |e| e.to_string())
        ),
        Return::BadEndpointId => format!(
            "endpoint {} is out of the backend's range",
            endpoint.map_or("?".into(), |e| e.to_string())
        ),
        Return::NoResources => "no free endpoint on the board".into(),
        e => format!("cannot open an endpoint: {e}"),
    })
}

/// Refuse `-n`/`-b` that do not name the backend's board.
fn check_board(ep: &Ep, cli: &Cli) -> Res<()> {
    let b = ep.frontend().board();
    if let Some(n) = cli.board.filter(|&n| n != b.board) {
        return Err(format!(
            "board {n} not found (this backend has board {})",
            b.board
        ));
    }
    if let Some(n) = cli.nic_id.filter(|&n| n != b.nic_id) {
        return Err(format!(
            "NIC id {} not found (this backend's board is {})",
            mac(n),
            mac(b.nic_id)
        ));
    }
    Ok(())
}

/// Whether the backend still answers on the control path.
fn backend_alive(ep: &Ep) -> Res<()> {
    match ep.frontend().peer_by_index(0) {
        Err(frontend::FrontendError::Io(e)) => Err(format!("lost the MX backend: {e}")),
        _ => Ok(()),
    }
}

/// Completes requests by polling (`mx_test`) or blocking (`mx_wait`).
pub struct Io<'a> {
    ep: &'a Ep,
    block: bool,
}

impl<'a> Io<'a> {
    /// Complete by blocking when `block`, else by polling.
    pub fn new(ep: &'a Ep, block: bool) -> Self {
        Io { ep, block }
    }

    /// Wait for `req` (at most `timeout`, `None`: forever) and require
    /// success; `what` names it in errors.
    pub fn finish(
        &self,
        req: ReqId,
        timeout: Option<Duration>,
        what: &dyn Fn() -> String,
    ) -> Res<Completion<Vec<u8>>> {
        let c = if self.block {
            self.wait(req, timeout, what)?
        } else {
            self.poll(req, timeout, what)?
        };
        if c.status != Status::Success {
            return Err(format!("{} ended with status {}", what(), c.status));
        }
        Ok(c)
    }

    fn wait(
        &self,
        req: ReqId,
        timeout: Option<Duration>,
        what: &dyn Fn() -> String,
    ) -> Res<Completion<Vec<u8>>> {
        let start = Instant::now();
        loop {
            let slice = Some(ALIVE_CHECK);
            match self.ep.wait(req, slice) {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e}", what())),
            }
            backend_alive(self.ep)?;
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(timed_out(what, start));
            }
        }
    }

    fn poll(
        &self,
        req: ReqId,
        timeout: Option<Duration>,
        what: &dyn Fn() -> String,
    ) -> Res<Completion<Vec<u8>>> {
        let start = Instant::now();
        let mut next_check = ALIVE_CHECK;
        let mut spins = 0u32;
        loop {
            match self.test(req) {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e}", what())),
            }
            spins = spins.wrapping_add(1);
            if spins & 1023 == 0 {
                let t = start.elapsed();
                if t >= next_check {
                    backend_alive(self.ep)?;
                    next_check = t + ALIVE_CHECK;
                }
                if timeout.is_some_and(|lim| t >= lim) {
                    return Err(timed_out(what, start));
                }
            }
            // Other processes (the peer, the backend) need the CPU too on a
            // machine with few cores.
            std::thread::yield_now();
        }
    }

    /// `mx_test`: make progress, then take `req` if it is done.
    /// (`with_core` alone would look before it makes progress, and see a
    /// completion one poll late.)
    fn test(&self, req: ReqId) -> Result<Option<Completion<Vec<u8>>>, RequestError> {
        self.ep
            .wait_for(Some(Duration::ZERO), |c| c.test(req).transpose())
            .transpose()
    }
}

fn timed_out(what: &dyn Fn() -> String, start: Instant) -> String {
    format!(
        "{} did not complete in {:.0} s (peer gone?)",
        what(),
        start.elapsed().as_secs_f64()
    )
}

/// Let the peer know what we received, then give the endpoint a moment to
/// drain before it is closed.
pub fn close(ep: Ep) {
    ep.with_core(|c| c.flush_acks());
    let _ = ep.wait_for(Some(Duration::from_millis(500)), |c| {
        c.is_quiescent().then_some(())
    });
    drop(ep);
}

/// A buffer of `len` bytes, reusing `pool`.
fn take_buf(pool: &mut Vec<Vec<u8>>, len: u32) -> Vec<u8> {
    let mut b = pool.pop().unwrap_or_default();
    b.resize(len as usize, 0);
    b
}

// ---------------------------------------------------------------- receiver

/// `mx_pingpong` without `-d`.
pub fn receiver_main(cli: &Cli) -> Res<()> {
    let eid = cli.endpoint.unwrap_or(1);
    let ep = open(&cli.socket_path(), Some(eid), cli.key)?;
    check_board(&ep, cli)?;
    crate::say!(
        "Starting pingpong receiver on {}, endpoint={eid}",
        ep.frontend().board().hostname
    )?;
    loop {
        match serve_one(&ep, cli.block, cli.key) {
            Ok(()) => {}
            Err(e) if cli.serve => eprintln!("mx_pingpong: run failed: {e}"),
            Err(e) => {
                close(ep);
                return Err(e);
            }
        }
        if !cli.serve {
            break;
        }
    }
    close(ep);
    Ok(())
}

/// Wait for one sender's parameters, connect back (with our own key, as
/// the classic receiver does), echo its run. The sender's `-w` decides how
/// both sides complete requests (`block` adds ours).
fn serve_one(ep: &Ep, block: bool, key: u32) -> Res<()> {
    // Parameters may wait forever: the receiver is a server.
    let r = ep
        .irecv(vec![0; PARAMS_LEN], PARAM_MATCH, u64::MAX, 0)
        .map_err(|e| format!("cannot post a receive: {e}"))?;
    let c = Io::new(ep, true).finish(r, None, &|| "parameter receive".into())?;
    let bytes = c.buf.unwrap_or_default();
    let p = Params::decode(&bytes[..(c.xfer_length as usize).min(bytes.len())])?;
    let io = Io::new(ep, block || p.block);
    let list = if p.list_count > 0 {
        let r = ep
            .irecv(vec![0; 4 * p.list_count as usize], LIST_MATCH, u64::MAX, 0)
            .map_err(|e| format!("cannot post a receive: {e}"))?;
        let c = io.finish(r, Some(RUN_TIMEOUT), &|| "length list receive".into())?;
        Some(params::decode_list(
            &c.buf.unwrap_or_default()[..c.xfer_length as usize],
            p.list_count,
        )?)
    } else {
        None
    };
    if p.verify {
        crate::say!("Verifying results")?;
    }
    let back = ep
        .connect(p.nic_id, p.endpoint as u8, key, Some(CONNECT_TIMEOUT))
        .map_err(|e| {
            format!(
                "cannot connect back to {} endpoint {}: {e}",
                mac(p.nic_id),
                p.endpoint
            )
        })?;
    let lengths: Box<dyn Iterator<Item = u32>> = match list {
        Some(l) => Box::new(l.into_iter()),
        None => Box::new(p.generated_lengths()),
    };
    let mut echo = Echo {
        ep,
        io: &io,
        p: &p,
        back,
        posted: VecDeque::new(),
        next_ping: 0,
        next_pong: 0,
        pool: Vec::new(),
    };
    let r = lengths.into_iter().try_for_each(|len| echo.length(len));
    // Withdraw what an aborted run left posted, so it cannot catch a
    // later run's pings.
    for (req, _, _) in echo.posted.drain(..) {
        let _ = ep.with_core(|c| c.cancel(req));
    }
    r
}

/// The receiver's side of a run, the classic schedule: per length of `M`
/// loop iterations (warm-ups included), two ping receives posted ahead;
/// each ping is answered by a pong from its buffer and replaced by a new
/// receive; the two closing pings are answered by one pong. So `M + 2`
/// pings and `M + 1` pongs per length, match infos counting on across
/// lengths.
struct Echo<'a, 'b> {
    ep: &'a Ep,
    io: &'a Io<'b>,
    p: &'a Params,
    back: EndpointAddr,
    /// Posted ping receives: (request, k, length).
    posted: VecDeque<(ReqId, u64, u32)>,
    /// Ping number of the next receive to post.
    next_ping: u64,
    /// Pong number of the next send.
    next_pong: u64,
    pool: Vec<Vec<u8>>,
}

impl Echo<'_, '_> {
    fn post(&mut self, len: u32) -> Res<()> {
        let k = self.next_ping;
        let b = take_buf(&mut self.pool, len);
        let r = self
            .ep
            .irecv(b, PING_BASE + k, u64::MAX, 0)
            .map_err(|e| format!("cannot post ping receive {k}: {e}"))?;
        self.posted.push_back((r, k, len));
        self.next_ping += 1;
        Ok(())
    }

    /// Complete the oldest ping receive and check it.
    fn ping(&mut self) -> Res<Vec<u8>> {
        let (req, k, len) = self.posted.pop_front().ok_or("no ping receive posted")?;
        let c = self.io.finish(req, Some(RUN_TIMEOUT), &|| {
            format!("ping {k} receive ({len} bytes)")
        })?;
        if c.xfer_length != len {
            return Err(format!(
                "ping {k}: {} bytes received, expected {len}",
                c.xfer_length
            ));
        }
        let buf = c.buf.unwrap_or_default();
        // Only our sender's data has a pattern we know.
        if let Some(seed) = self.p.seed.filter(|_| self.p.verify) {
            if let Some((i, got, want)) = params::check(&buf, seed, k) {
                return Err(format!(
                    "data mismatch in ping {k} ({len} bytes) at byte {i}: got {got:#04x}, expected {want:#04x}"
                ));
            }
        }
        Ok(buf)
    }

    /// Send a pong from `buf` and wait for it.
    fn pong(&mut self, buf: Vec<u8>) -> Res<()> {
        let k = self.next_pong;
        let s = self
            .ep
            .isend(self.back, buf, PONG_BASE + k, 0, self.p.issend)
            .map_err(|e| format!("cannot send pong {k}: {e}"))?;
        self.next_pong += 1;
        let c = self
            .io
            .finish(s, Some(RUN_TIMEOUT), &|| format!("pong {k} send"))?;
        self.pool.extend(c.buf);
        Ok(())
    }

    fn length(&mut self, len: u32) -> Res<()> {
        self.post(len)?;
        self.post(len)?;
        for _ in 0..self.p.messages_for(len) {
            let buf = self.ping()?;
            self.pong(buf)?;
            self.post(len)?;
        }
        let first = self.ping()?;
        self.pool.push(first);
        let last = self.ping()?;
        self.pong(last)
    }
}

// ------------------------------------------------------------------ sender

/// What a sender run needs besides the endpoint.
pub struct Plan {
    /// As the user named the destination.
    pub dest: String,
    /// Its endpoint id.
    pub remote_endpoint: u8,
    /// Key of the receiver's endpoint.
    pub key: u32,
    /// The parameters (sender fields are filled in by [`send_run`]).
    pub params: Params,
    /// Explicit lengths (`-L`).
    pub list: Option<Vec<u32>>,
}

impl Plan {
    /// The plan of `cli` (its -S/-E/-I/-M/-L/-N/-W/-V/-R/-w/-f/--budget);
    /// `demo` changes the defaults to 0 .. 4 MiB doubling, 256 MiB budget.
    pub fn from_cli(cli: &Cli, dest: String, demo: bool) -> Res<Self> {
        let list = match &cli.lengths_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                Some(
                    params::parse_length_file(&text)
                        .map_err(|e| format!("{}: {e}", f.display()))?,
                )
            }
            None => None,
        };
        // -M overrides -I (the classic tool's rule): geometric steps are
        // an increment of 0 on the wire.
        let (incr, mult) = match (cli.mult, cli.incr) {
            (Some(m), _) => (0, m),
            (None, None) if demo => (0, 2.0),
            (None, i) => (i.unwrap_or(1), 1.0),
        };
        let end = cli.end.unwrap_or(if demo { (4 << 20) + 1 } else { 128 });
        let budget = cli.budget.unwrap_or(if demo { 256 } else { 0 });
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let params = Params {
            nic_id: 0,
            endpoint: 0,
            iterations: cli.iterations,
            warmup: cli.warmup,
            start: cli.start.unwrap_or(0),
            end,
            incr,
            mult,
            verify: cli.verify,
            block: cli.block,
            issend: cli.issend,
            seed: cli.verify.then_some(seed),
            budget: u64::from(budget) << 20,
            list_count: list.as_ref().map_or(0, |l| l.len() as u32),
        };
        params.validate()?;
        // Step lengths with what the receiver reads back.
        let params = Params {
            mult: Params::wire_mult(params.mult),
            ..params
        };
        Ok(Plan {
            dest,
            remote_endpoint: cli.remote_endpoint,
            key: cli.key,
            params,
            list,
        })
    }
}

/// `mx_pingpong -d HOST`.
pub fn sender_main(cli: &Cli) -> Res<()> {
    let dest = cli.dest.clone().unwrap_or_default();
    let plan = Plan::from_cli(cli, dest, false)?;
    let ep = open(&cli.socket_path(), cli.endpoint, cli.key)?;
    check_board(&ep, cli)?;
    let r = send_run(&ep, &plan);
    close(ep);
    r
}

/// The NIC id `dest` names: `0x`-hex, a MAC address, or a hostname the
/// backend knows (`node1:0`; `node1` means board 0).
pub fn resolve(ep: &Ep, dest: &str) -> Res<u64> {
    if dest.starts_with("0x") || dest.starts_with("0X") || dest.matches(':').count() == 5 {
        return crate::parse_nic_id(dest);
    }
    let fe = ep.frontend();
    if let Ok(p) = fe.peer_by_hostname(dest) {
        return Ok(p.nic_id);
    }
    if !dest.contains(':') {
        if let Ok(p) = fe.peer_by_hostname(&format!("{dest}:0")) {
            return Ok(p.nic_id);
        }
    }
    let known: Vec<String> = (0..64u16)
        .map_while(|i| fe.peer_by_index(i).ok())
        .filter(|p| !p.hostname.is_empty())
        .map(|p| p.hostname)
        .collect();
    Err(format!(
        "host {dest} not found (the backend knows: {})",
        if known.is_empty() {
            "nobody".into()
        } else {
            known.join(", ")
        }
    ))
}

/// The sender's side of a run (the classic schedule, see [`Echo`]).
struct Pinger<'a, 'b> {
    ep: &'a Ep,
    io: &'a Io<'b>,
    p: &'a Params,
    dest: EndpointAddr,
    /// Posted pong receives: (request, k).
    posted: VecDeque<(ReqId, u64)>,
    next_ping: u64,
    next_pong: u64,
    ping_buf: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl Pinger<'_, '_> {
    fn post(&mut self, len: u32) -> Res<()> {
        let k = self.next_pong;
        let b = take_buf(&mut self.pool, len);
        let r = self
            .ep
            .irecv(b, PONG_BASE + k, u64::MAX, 0)
            .map_err(|e| format!("cannot post pong receive {k}: {e}"))?;
        self.posted.push_back((r, k));
        self.next_pong += 1;
        Ok(())
    }

    /// Send ping `k` (the pattern of `k` when verifying) and wait for it.
    fn ping(&mut self, len: u32) -> Res<u64> {
        let k = self.next_ping;
        let mut b = std::mem::take(&mut self.ping_buf);
        b.resize(len as usize, 0);
        if let Some(seed) = self.p.seed.filter(|_| self.p.verify) {
            params::fill(&mut b, seed, k);
        }
        let s = self
            .ep
            .isend(self.dest, b, PING_BASE + k, 0, self.p.issend)
            .map_err(|e| format!("cannot send ping {k}: {e}"))?;
        self.next_ping += 1;
        let c = self.io.finish(s, Some(RUN_TIMEOUT), &|| {
            format!("ping {k} send ({len} bytes)")
        })?;
        self.ping_buf = c.buf.unwrap_or_default();
        Ok(k)
    }

    /// Complete the oldest pong receive; it must carry ping `echo` back
    /// (`None`: only its length is checked).
    fn pong(&mut self, len: u32, echo: Option<u64>) -> Res<()> {
        let (req, k) = self.posted.pop_front().ok_or("no pong receive posted")?;
        let c = self.io.finish(req, Some(RUN_TIMEOUT), &|| {
            format!("pong {k} receive ({len} bytes)")
        })?;
        if c.xfer_length != len {
            return Err(format!(
                "pong {k}: {} bytes received, expected {len}",
                c.xfer_length
            ));
        }
        let buf = c.buf.unwrap_or_default();
        if let (Some(seed), Some(ping)) = (self.p.seed.filter(|_| self.p.verify), echo) {
            if let Some((i, got, want)) = params::check(&buf, seed, ping) {
                return Err(format!(
                    "data mismatch in pong {k} ({len} bytes) at byte {i}: got {got:#04x}, expected {want:#04x}"
                ));
            }
        }
        self.pool.push(buf);
        Ok(())
    }

    /// One length: the timed loop, then the two closing pings and the last
    /// pong. Returns the microseconds of the timed iterations.
    fn length(&mut self, len: u32) -> Res<f64> {
        let warm = u64::from(self.p.warmup_for(len));
        self.post(len)?;
        let mut t0 = Instant::now();
        for i in 0..self.p.messages_for(len) {
            if i == warm {
                t0 = Instant::now();
            }
            // The pong receive of the next ping is posted before this
            // ping's pong is awaited (two posted, as the classic tool).
            let k = self.ping(len)?;
            self.post(len)?;
            self.pong(len, Some(k))?;
        }
        let usec = t0.elapsed().as_secs_f64() * 1e6;
        self.ping(len)?;
        self.ping(len)?;
        self.pong(len, None)?;
        Ok(usec)
    }
}

/// Connect, send the parameters, and time every length.
pub fn send_run(ep: &Ep, plan: &Plan) -> Res<()> {
    let nic = resolve(ep, &plan.dest)?;
    let dest = ep
        .connect(nic, plan.remote_endpoint, plan.key, Some(CONNECT_TIMEOUT))
        .map_err(|e| {
            let hint = match e {
                Return::ConnectionFailed | Return::BadEndpointId | Return::Timeout => {
                    "; is a receiver running there? (`mx_pingpong -e EID` on that host)"
                }
                Return::BadConnectionKey => "; both sides need the same -f key",
                _ => "",
            };
            format!(
                "cannot connect to {} endpoint {}: {e}{hint}",
                plan.dest, plan.remote_endpoint
            )
        })?;
    let board = ep.frontend().board();
    let mut p = plan.params.clone();
    p.nic_id = board.nic_id;
    p.endpoint = u32::from(ep.with_core(|c| c.config().endpoint));
    let io = Io::new(ep, p.block);
    let s = ep
        .isend(dest, p.encode()?, PARAM_MATCH, 0, false)
        .map_err(|e| format!("cannot send the parameters: {e}"))?;
    io.finish(s, Some(RUN_TIMEOUT), &|| "parameter send".into())?;
    if let Some(l) = &plan.list {
        let s = ep
            .isend(dest, params::encode_list(l), LIST_MATCH, 0, false)
            .map_err(|e| format!("cannot send the length list: {e}"))?;
        io.finish(s, Some(RUN_TIMEOUT), &|| "length list send".into())?;
    }

    crate::say!("Starting pingpong send to host {}", plan.dest)?;
    if p.verify {
        crate::say!("Verifying results")?;
    }
    crate::say!("Running {} iterations.", p.iterations)?;
    if p.budget > 0 {
        crate::say!(
            "(at most {} MiB each way per length: fewer iterations for long messages, at least {})",
            p.budget >> 20,
            p.iterations.min(params::MIN_BUDGET_ITERS)
        )?;
    }
    crate::say!("{HEADER}")?;
    let lengths: Box<dyn Iterator<Item = u32>> = match &plan.list {
        Some(l) => Box::new(l.iter().copied()),
        None => Box::new(p.generated_lengths()),
    };
    let mut pinger = Pinger {
        ep,
        io: &io,
        p: &p,
        dest,
        posted: VecDeque::new(),
        next_ping: 0,
        next_pong: 0,
        ping_buf: Vec::new(),
        pool: Vec::new(),
    };
    for len in lengths {
        let n = p.iterations_for(len);
        let usec = pinger.length(len)?.max(1e-3);
        let latency = usec / (2.0 * f64::from(n));
        let bandwidth = 2.0 * f64::from(n) * f64::from(len) / usec;
        crate::say!("{}", row(len, latency, bandwidth))?;
    }
    Ok(())
}
