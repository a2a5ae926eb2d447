//! A xenstore client speaking the wire protocol (`xen/io/xs_wire.h`) over
//! `/dev/xen/xenbus` (guests and Dom0) or xenstored's Unix socket (Dom0).
//!
//! Every message is a 16-byte little-endian header `{type, req_id, tx_id,
//! len}` and `len` (at most 4096) bytes of payload: NUL-separated strings.
//! One request is outstanding at a time per connection (a mutex serialises
//! them); watch events (`XS_WATCH_EVENT`) that arrive meanwhile are queued
//! and handed out by [`Xenstore::next_watch`]. Errors come back as
//! `XS_ERROR` with an errno name ("ENOENT", "EAGAIN"...), mapped to
//! [`io::Error`]s with that errno.
//!
//! No `unsafe` here: the transports are a [`File`] and a [`UnixStream`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::grant::DomId;

/// The xenbus device (works in every domain with xenbus).
pub const XENBUS_DEV: &str = "/dev/xen/xenbus";
/// xenstored's socket paths, tried in order in Dom0 (`$XENSTORED_PATH` first).
pub const XENSTORED_SOCKETS: [&str; 3] = [
    "/run/xenstored/socket",
    "/var/run/xenstored/socket",
    "/run/xen/xenstored/socket",
];

/// Largest payload of one message (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
const HEADER: usize = 16;

/// How long one request may wait for xenstored.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Message types of `xs_wire.h` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// List a directory.
    Directory = 1,
    /// Read a value.
    Read = 2,
    /// Register a watch.
    Watch = 4,
    /// Remove a watch.
    Unwatch = 5,
    /// Start a transaction.
    TransactionStart = 6,
    /// Commit or abort a transaction.
    TransactionEnd = 7,
    /// The home path of a domain.
    GetDomainPath = 10,
    /// Write a value.
    Write = 11,
    /// Create a directory.
    Mkdir = 12,
    /// Remove a node and its children.
    Rm = 13,
    /// Set permissions.
    SetPerms = 14,
    /// A watch fired (from xenstored).
    WatchEvent = 15,
    /// An error reply (from xenstored).
    Error = 16,
    /// Is a domain known to xenstored?
    IsDomainIntroduced = 17,
}

/// A transaction id (0: none).
pub type Tx = u32;

/// No transaction.
pub const NO_TX: Tx = 0;

/// One permission entry of `XS_SET_PERMS`: the first entry names the owner
/// and what everybody else may do; later entries grant one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// No access (`n`).
    None(DomId),
    /// Read (`r`).
    Read(DomId),
    /// Write (`w`).
    Write(DomId),
    /// Read and write (`b`).
    Both(DomId),
}

impl Perm {
    fn encode(self) -> String {
        match self {
            Perm::None(d) => format!("n{d}"),
            Perm::Read(d) => format!("r{d}"),
            Perm::Write(d) => format!("w{d}"),
            Perm::Both(d) => format!("b{d}"),
        }
    }
}

/// A fired watch: the path that changed and the watch's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed (or the special `@introduceDomain` /
    /// `@releaseDomain`).
    pub path: String,
    /// The token given at registration.
    pub token: String,
}

/// One parsed message.
#[derive(Debug)]
struct Msg {
    ty: u32,
    payload: Vec<u8>,
}

enum Transport {
    Dev(File),
    Sock(UnixStream),
}

impl Transport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Dev(f) => (&*f).read(buf),
            Transport::Sock(s) => (&*s).read(buf),
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Dev(f) => (&*f).write(buf),
            Transport::Sock(s) => (&*s).write(buf),
        }
    }
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Dev(f) => f.as_fd(),
            Transport::Sock(s) => s.as_fd(),
        }
    }
}

#[derive(Default)]
struct State {
    rx: Vec<u8>,
    watches: VecDeque<WatchEvent>,
    req_id: u32,
}

/// A connection to xenstore.
pub struct Xenstore {
    io: Transport,
    state: Mutex<State>,
    name: &'static str,
}

impl std::fmt::Debug for Xenstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xenstore({})", self.name)
    }
}

/// Maps an `XS_ERROR` payload to an [`io::Error`].
fn xs_error(payload: &[u8]) -> io::Error {
    let name = String::from_utf8_lossy(payload.split(|&b| b == 0).next().unwrap_or(&[]));
    let errno = match &*name {
        "EINVAL" => libc::EINVAL,
        "EACCES" => libc::EACCES,
        "EEXIST" => libc::EEXIST,
        "EISDIR" => libc::EISDIR,
        "ENOENT" => libc::ENOENT,
        "ENOMEM" => libc::ENOMEM,
        "ENOSPC" => libc::ENOSPC,
        "EIO" => libc::EIO,
        "ENOTEMPTY" => libc::ENOTEMPTY,
        "ENOSYS" => libc::ENOSYS,
        "EROFS" => libc::EROFS,
        "EBUSY" => libc::EBUSY,
        "EAGAIN" => libc::EAGAIN,
        "EISCONN" => libc::EISCONN,
        "E2BIG" => libc::E2BIG,
        "EPERM" => libc::EPERM,
        "EQUOTA" => libc::EDQUOT,
        _ => return io::Error::other(format!("xenstore error {name}")),
    };
    io::Error::from_raw_os_error(errno)
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Splits a NUL-separated payload into strings (a trailing NUL ends the last).
pub fn split_strings(payload: &[u8]) -> Vec<String> {
    let p = payload.strip_suffix(&[0]).unwrap_or(payload);
    if p.is_empty() {
        return Vec::new();
    }
    p.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Encodes one message: header then the parts.
fn encode(ty: u32, req_id: u32, tx: Tx, parts: &[&[u8]]) -> io::Result<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > PAYLOAD_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "xenstore payload too long",
        ));
    }
    let mut m = Vec::with_capacity(HEADER + len);
    for w in [ty, req_id, tx, len as u32] {
        m.extend_from_slice(&w.to_le_bytes());
    }
    for p in parts {
        m.extend_from_slice(p);
    }
    Ok(m)
}

/// Takes one complete message off the front of `rx`, if there is one.
fn parse_one(rx: &mut Vec<u8>) -> io::Result<Option<Msg>> {
    if rx.len() < HEADER {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes(rx[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (ty, len) = (word(0), word(3) as usize);
    if len > PAYLOAD_MAX {
        return Err(invalid("oversized xenstore message"));
    }
    if rx.len() < HEADER + len {
        return Ok(None);
    }
    let payload = rx[HEADER..HEADER + len].to_vec();
    rx.drain(..HEADER + len);
    Ok(Some(Msg { ty, payload }))
}

fn c(path: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(path.len() + 1);
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    v
}

impl Xenstore {
    /// Opens `/dev/xen/xenbus`.
    ///
    /// # Errors
    /// An OS error if the device is missing (not a Xen domain, or the
    /// `xenfs`/xenbus driver is not there).
    pub fn open_xenbus() -> io::Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(XENBUS_DEV)?;
        Ok(Xenstore {
            io: Transport::Dev(f),
            state: Mutex::new(State::default()),
            name: "xenbus",
        })
    }

    /// Connects to xenstored's Unix socket at `path`.
    ///
    /// # Errors
    /// An OS error from `connect`.
    pub fn open_socket(path: &str) -> io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_nonblocking(true)?;
        Ok(Xenstore {
            io: Transport::Sock(s),
            state: Mutex::new(State::default()),
            name: "socket",
        })
    }

    /// xenstored's socket if one answers (`$XENSTORED_PATH`, then the usual
    /// paths), else `/dev/xen/xenbus`.
    ///
    /// # Errors
    /// If neither works.
    pub fn open() -> io::Result<Self> {
        let env = std::env::var("XENSTORED_PATH").ok();
        for p in env.iter().map(String::as_str).chain(XENSTORED_SOCKETS) {
            if let Ok(x) = Self::open_socket(p) {
                return Ok(x);
            }
        }
        Self::open_xenbus()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what is available into `st.rx`; waits up to `deadline` for
    /// something if `block`. Returns false on timeout.
    fn fill(&self, st: &mut State, deadline: Option<Instant>) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        loop {
            match self.io.read(&mut buf) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    st.rx.extend_from_slice(&buf[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let Some(d) = deadline else { return Ok(false) };
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.poll(libc::POLLIN, left)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn poll(&self, events: libc::c_short, timeout: Duration) -> io::Result<()> {
        let mut p = [libc::pollfd {
            fd: self.io.fd().as_raw_fd(),
            events,
            revents: 0,
        }];
        match crate::platform::sys::ppoll(&mut p, Some(timeout)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write_all(&self, mut m: &[u8], deadline: Instant) -> io::Result<()> {
        while !m.is_empty() {
            match self.io.write(m) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => m = &m[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::from(io::ErrorKind::TimedOut));
                    }
                    self.poll(libc::POLLOUT, left)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends one request and waits for its reply payload.
    ///
    /// # Errors
    /// The errno xenstored answered, `TimedOut`, or `InvalidData` on a
    /// malformed or mismatched reply.
    pub fn request(&self, op: Op, tx: Tx, parts: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        st.req_id = st.req_id.wrapping_add(1);
        let m = encode(op as u32, st.req_id, tx, parts)?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        self.write_all(&m, deadline)?;
        loop {
            while let Some(msg) = parse_one(&mut st.rx)? {
                if msg.ty == Op::WatchEvent as u32 {
                    let mut s = split_strings(&msg.payload).into_iter();
                    if let (Some(path), Some(token)) = (s.next(), s.next()) {
                        st.watches.push_back(WatchEvent { path, token });
                    }
                    continue;
                }
                if msg.ty == Op::Error as u32 {
                    return Err(xs_error(&msg.payload));
                }
                if msg.ty != op as u32 {
                    return Err(invalid("xenstore reply of another type"));
                }
                return Ok(msg.payload);
            }
            if !self.fill(&mut st, Some(deadline))? {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
        }
    }

    /// The next fired watch, waiting at most `timeout` (`Duration::ZERO`:
    /// only what is already there).
    ///
    /// # Errors
    /// An OS error on the connection, `InvalidData` on garbage.
    pub fn next_watch(&self, timeout: Duration) -> io::Result<Option<WatchEvent>> {
        let mut st = self.lock();
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(msg) = parse_one(&mut st.rx)? {
                if msg.ty == Op::WatchEvent as u32 {
                    let mut s = split_strings(&msg.payload).into_iter();
                    if let (Some(path), Some(token)) = (s.next(), s.next()) {
                        st.watches.push_back(WatchEvent { path, token });
                    }
                }
                // Anything else is a stray reply to a request that timed out.
            }
            if let Some(w) = st.watches.pop_front() {
                return Ok(Some(w));
            }
            if !self.fill(&mut st, Some(deadline))? {
                return Ok(None);
            }
        }
    }

    /// Reads `path`.
    ///
    /// # Errors
    /// `NotFound` if there is no such node, or as [`request`](Self::request).
    pub fn read(&self, tx: Tx, path: &str) -> io::Result<String> {
        let v = self.request(Op::Read, tx, &[&c(path)])?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// Reads `path`, `None` if it does not exist.
    ///
    /// # Errors
    /// As [`request`](Self::request), except `NotFound`.
    pub fn read_opt(&self, tx: Tx, path: &str) -> io::Result<Option<String>> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `value` at `path` (creating it and missing parents).
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn write(&self, tx: Tx, path: &str, value: &str) -> io::Result<()> {
        self.request(Op::Write, tx, &[&c(path), value.as_bytes()])
            .map(drop)
    }

    /// Creates the directory `path`.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn mkdir(&self, tx: Tx, path: &str) -> io::Result<()> {
        self.request(Op::Mkdir, tx, &[&c(path)]).map(drop)
    }

    /// Removes `path` and everything below it (`Ok` if it was not there).
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn rm(&self, tx: Tx, path: &str) -> io::Result<()> {
        match self.request(Op::Rm, tx, &[&c(path)]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the permissions of `path`.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn set_perms(&self, tx: Tx, path: &str, perms: &[Perm]) -> io::Result<()> {
        let mut parts = vec![c(path)];
        parts.extend(perms.iter().map(|p| c(&p.encode())));
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.request(Op::SetPerms, tx, &refs).map(drop)
    }

    /// The children of `path`.
    ///
    /// # Errors
    /// `NotFound` if there is no such node, or as [`request`](Self::request).
    pub fn directory(&self, tx: Tx, path: &str) -> io::Result<Vec<String>> {
        Ok(split_strings(&self.request(
            Op::Directory,
            tx,
            &[&c(path)],
        )?))
    }

    /// Registers a watch on `path` (xenstored fires it once at once).
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn watch(&self, path: &str, token: &str) -> io::Result<()> {
        self.request(Op::Watch, NO_TX, &[&c(path), &c(token)])
            .map(drop)
    }

    /// Removes a watch.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn unwatch(&self, path: &str, token: &str) -> io::Result<()> {
        self.request(Op::Unwatch, NO_TX, &[&c(path), &c(token)])
            .map(drop)
    }

    /// The home path of domain `domid` (`/local/domain/<domid>`).
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn domain_path(&self, domid: DomId) -> io::Result<String> {
        let v = self.request(Op::GetDomainPath, NO_TX, &[&c(&domid.to_string())])?;
        split_strings(&v)
            .into_iter()
            .next()
            .ok_or_else(|| invalid("empty domain path"))
    }

    /// Whether xenstored still knows domain `domid` (false once it died).
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn is_domain_introduced(&self, domid: DomId) -> io::Result<bool> {
        let v = self.request(Op::IsDomainIntroduced, NO_TX, &[&c(&domid.to_string())])?;
        Ok(v.first() == Some(&b'T'))
    }

    /// Runs `f` in a transaction, retrying the whole of it while the commit
    /// fails with `EAGAIN` (another writer touched the same nodes), at most
    /// 64 times.
    ///
    /// # Errors
    /// What `f` returned (the transaction is then aborted), or as
    /// [`request`](Self::request).
    pub fn transaction<T>(&self, mut f: impl FnMut(Tx) -> io::Result<T>) -> io::Result<T> {
        for _ in 0..64 {
            let v = self.request(Op::TransactionStart, NO_TX, &[b"\0"])?;
            let tx: Tx = split_strings(&v)
                .first()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("bad transaction id"))?;
            match f(tx) {
                Ok(out) => match self.request(Op::TransactionEnd, tx, &[b"T\0"]) {
                    Ok(_) => return Ok(out),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.request(Op::TransactionEnd, tx, &[b"F\0"]);
                    if e.raw_os_error() == Some(libc::EAGAIN) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(io::Error::from_raw_os_error(libc::EAGAIN))
    }
}

impl AsFd for Xenstore {
    /// Readable when xenstored sent something (a watch event, here).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_parse() {
        let m = encode(Op::Write as u32, 7, 3, &[b"a/b\0", b"xyz"]).unwrap();
        assert_eq!(m.len(), 16 + 7);
        assert_eq!(&m[0..4], &11u32.to_le_bytes());
        assert_eq!(&m[4..8], &7u32.to_le_bytes());
        assert_eq!(&m[8..12], &3u32.to_le_bytes());
        assert_eq!(&m[12..16], &7u32.to_le_bytes());
        let mut rx = m.clone();
        rx.extend_from_slice(&m[..10]); // a partial second message
        let msg = parse_one(&mut rx).unwrap().unwrap();
        assert_eq!(msg.ty, 11);
        assert_eq!(msg.payload, b"a/b\0xyz");
        assert!(parse_one(&mut rx).unwrap().is_none());
        assert_eq!(rx.len(), 10);
        let mut big = encode(2, 0, 0, &[]).unwrap();
        big[12..16].copy_from_slice(&5000u32.to_le_bytes());
        assert!(parse_one(&mut big).is_err());
        assert!(encode(2, 0, 0, &[&[0u8; PAYLOAD_MAX + 1]]).is_err());
    }

    #[test]
    fn strings_errors_and_perms() {
        assert_eq!(split_strings(b"0\x001\x0012\x00"), ["0", "1", "12"]);
        assert_eq!(split_strings(b""), Vec::<String>::new());
        assert_eq!(split_strings(b"x"), ["x"]);
        assert_eq!(xs_error(b"ENOENT\0").kind(), io::ErrorKind::NotFound);
        assert_eq!(xs_error(b"EAGAIN\0").raw_os_error(), Some(libc::EAGAIN));
        assert_eq!(Perm::None(5).encode(), "n5");
        assert_eq!(Perm::Read(0).encode(), "r0");
        assert_eq!(Perm::Both(3).encode(), "b3");
    }

    /// A fake xenstored on a socketpair: watch events interleaved with
    /// replies are queued, errors map to errnos.
    #[test]
    fn client_over_a_fake_daemon() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let xs = Xenstore {
            io: Transport::Sock(a),
            state: Mutex::new(State::default()),
            name: "test",
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let daemon = std::thread::spawn(move || {
            let mut b = b;
            let mut rx = Vec::new();
            let mut buf = [0u8; 4096];
            let mut served = 0;
            while served < 3 {
                let n = b.read(&mut buf).unwrap();
                rx.extend_from_slice(&buf[..n]);
                while let Some(m) = parse_one(&mut rx).unwrap() {
                    served += 1;
                    let reply = match m.ty {
                        2 if m.payload.starts_with(b"missing") => {
                            encode(16, 0, 0, &[b"ENOENT\0"]).unwrap()
                        }
                        2 => {
                            let mut r = encode(15, 0, 0, &[b"some/path\0tok\0"]).unwrap();
                            r.extend(encode(2, 0, 0, &[b"value"]).unwrap());
                            r
                        }
                        6 => encode(6, 0, 0, &[b"42\0"]).unwrap(),
                        _ => encode(16, 0, 0, &[b"EINVAL\0"]).unwrap(),
                    };
                    b.write_all(&reply).unwrap();
                }
            }
            let _ = done_rx.recv();
        });
        assert_eq!(xs.read(NO_TX, "a").unwrap(), "value");
        assert_eq!(
            xs.read(NO_TX, "missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let v = xs.request(Op::TransactionStart, NO_TX, &[b"\0"]).unwrap();
        assert_eq!(split_strings(&v), ["42"]);
        assert_eq!(
            xs.next_watch(Duration::ZERO).unwrap(),
            Some(WatchEvent {
                path: "some/path".into(),
                token: "tok".into()
            })
        );
        assert_eq!(xs.next_watch(Duration::from_millis(5)).unwrap(), None);
        done_tx.send(()).unwrap();
        daemon.join().unwrap();
    }
}
