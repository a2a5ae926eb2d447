//! Rendezvous and control path of the local platform: a Unix
//! `SOCK_SEQPACKET` socket, resources as `SCM_RIGHTS`, identity from
//! `SO_PEERCRED`.
//!
//! # Wire format (local only)
//!
//! Each control message is one datagram: a fixed [`HEADER_LEN`]-byte
//! header, then the body (at most [`MAX_CONTROL_MSG`] bytes).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, [`VERSION`] |
//! | 1 | 1 | number of resources `n` (≤ [`MAX_RESOURCES`]; 0 from the host) |
//! | 2 | 16 | resource kinds, one byte per slot: 1 pages, 2 event; unused bytes 0 |
//!
//! The attached descriptors follow the slots in order: one memfd per pages
//! slot, the host's end of a doorbell socket pair per event slot (see
//! [`SocketChannel`]). Version 2 replaced version 1's two eventfds per
//! event slot, which a guest could make the host block on.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    LocalBell, LocalGuest, LocalHost, MappedPages, MemfdPages, ProcessMemory, SocketChannel,
};
use crate::platform::sys;
use crate::platform::{
    BackendLink, GuestConn, GuestListener, Incoming, PeerEnd, PeerGrant, PeerOffer, PeerRemote,
    ReceivedResources, Resource, ResourceKind, MAX_CONTROL_MSG, MAX_RESOURCES,
};

/// The backend socket path when nothing else is configured.
pub const DEFAULT_SOCKET_PATH: &str = "/run/mx-backend.sock";

/// Environment variable that overrides [`DEFAULT_SOCKET_PATH`] in the
/// `Default` of [`LocalTarget`] and [`LocalHostConfig`].
pub const SOCKET_ENV: &str = "MX_BACKEND_SOCKET";

/// Version byte of the local control header.
const VERSION: u8 = 2;
/// Length of the local control header.
const HEADER_LEN: usize = 2 + MAX_RESOURCES;
const KIND_PAGES: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_BELL: u8 = 3;

fn default_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH), PathBuf::from)
}

fn invalid_data(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Waits until `fd` reports one of `events` or `deadline` passes.
fn wait_fd(fd: BorrowedFd<'_>, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events,
            revents: 0,
        }];
        match sys::ppoll(&mut p, Some(left)) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ------------------------------------------------------------------ guest ---

/// Where a local guest finds its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    /// Path of the backend's socket.
    pub path: PathBuf,
}

impl LocalTarget {
    /// A target at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalTarget { path: path.into() }
    }
}

impl Default for LocalTarget {
    /// `$MX_BACKEND_SOCKET`, or [`DEFAULT_SOCKET_PATH`].
    fn default() -> Self {
        LocalTarget {
            path: default_path(),
        }
    }
}

/// A local guest's attachment to its backend (a connected socket).
#[derive(Debug)]
pub struct LocalLink {
    sock: OwnedFd,
}

impl LocalLink {
    /// Connects to the backend at `target`, retrying while its backlog is
    /// full, for at most `timeout`.
    ///
    /// # Errors
    /// `NotFound` if there is no socket, `ConnectionRefused` if no backend
    /// listens on it, `TimedOut`, or another OS error.
    pub fn connect(target: &LocalTarget, timeout: Duration) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        loop {
            let sock = sys::seqpacket_socket()?;
            match sys::connect(sock.as_fd(), &target.path) {
                Ok(()) => return Ok(LocalLink { sock }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::from(io::ErrorKind::TimedOut))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A link over an already connected `SOCK_SEQPACKET` socket (see
    /// [`LocalConn::pair`]).
    pub(crate) fn from_socket(sock: OwnedFd) -> Self {
        LocalLink { sock }
    }
}

impl AsFd for LocalLink {
    /// The socket: readable when the backend sent something, hung up when
    /// the backend went away.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl BackendLink<LocalGuest> for LocalLink {
    fn alloc_pages(&self, count: usize) -> io::Result<MemfdPages> {
        MemfdPages::new(count)
    }

    fn alloc_event(&self) -> io::Result<SocketChannel> {
        SocketChannel::new_guest()
    }

    fn send(
        &self,
        msg: &[u8],
        resources: &[Resource<'_, MemfdPages, SocketChannel>],
        timeout: Duration,
    ) -> io::Result<()> {
        if msg.len() > MAX_CONTROL_MSG || resources.len() > MAX_RESOURCES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control message or resource list too long",
            ));
        }
        let mut kinds = [0u8; MAX_RESOURCES];
        let mut host_ends = Vec::new();
        for (i, r) in resources.iter().enumerate() {
            kinds[i] = match r {
                Resource::Pages(_) => KIND_PAGES,
                Resource::Event(e) => {
                    host_ends.push(e.host_end()?);
                    KIND_EVENT
                }
            };
        }
        let mut ends = host_ends.iter();
        let fds: Vec<BorrowedFd<'_>> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::Pages(p) => Some(p.as_fd()),
                Resource::Event(_) => ends.next().map(AsFd::as_fd),
            })
            .collect();
        self.send_parts(msg, &kinds[..resources.len()], &fds, timeout)?;
        // The host has its ends now: the guest keeps none, so a host that
        // closes one is a hang-up the guest sees.
        for r in resources {
            if let Resource::Event(e) = r {
                e.host_end_sent();
            }
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let (len, fds) = self.recv_parts(buf, timeout)?;
        if !fds.is_empty() {
            return Err(invalid_data("unexpected descriptors from backend"));
        }
        Ok(len)
    }

    fn peer_create(&self, pages: usize) -> io::Result<PeerOffer> {
        let mem = std::sync::Arc::new(MemfdPages::new(pages)?);
        let remote_pages = mem.as_fd().try_clone_to_owned()?;
        let (ours, theirs) = LocalBell::pair()?;
        Ok(PeerOffer {
            end: PeerEnd {
                mem,
                bell: Box::new(ours),
            },
            remote: PeerRemote::Local {
                pages: remote_pages,
                bell: theirs,
            },
        })
    }

    fn peer_offer(
        &self,
        offer: &PeerOffer,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        let PeerRemote::Local { pages, bell } = &offer.remote else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a local peer channel",
            ));
        };
        self.send_parts(
            msg,
            &[KIND_PAGES, KIND_BELL],
            &[pages.as_fd(), bell.as_fd()],
            timeout,
        )?;
        self.recv(reply, timeout)
    }

    fn peer_accept(
        &self,
        pages: usize,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<(usize, Option<PeerEnd>)> {
        self.send_parts(msg, &[], &[], timeout)?;
        let (len, fds) = self.recv_parts(reply, timeout)?;
        let mut fds = fds.into_iter();
        let end = match (fds.next(), fds.next()) {
            (None, _) => None,
            (Some(mem), Some(bell)) => Some(PeerEnd {
                mem: std::sync::Arc::new(MappedPages::map(mem, pages)?),
                bell: Box::new(LocalBell::from_fd(bell)?),
            }),
            (Some(_), None) => return Err(invalid_data("half a peer channel from backend")),
        };
        Ok((len, end))
    }
}

impl LocalLink {
    /// One control message with resources of the given kinds (their
    /// descriptors in `fds`, in order).
    fn send_parts(
        &self,
        msg: &[u8],
        kinds: &[u8],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> io::Result<()> {
        if msg.len() > MAX_CONTROL_MSG || kinds.len() > MAX_RESOURCES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control message or resource list too long",
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        head[0] = VERSION;
        head[1] = kinds.len() as u8;
        head[2..2 + kinds.len()].copy_from_slice(kinds);
        let deadline = Instant::now() + timeout;
        loop {
            match sys::send_with_fds(self.sock.as_fd(), &[&head, msg], fds) {
                Ok(n) if n == HEADER_LEN + msg.len() => return Ok(()),
                Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.sock.as_fd(), libc::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One message from the backend: its length, and the descriptors of a
    /// peer channel if the header announces exactly one (pages, bell).
    fn recv_parts(&self, buf: &mut [u8], timeout: Duration) -> io::Result<(usize, Vec<OwnedFd>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut head = [0u8; HEADER_LEN];
            match sys::recv_with_fds(self.sock.as_fd(), &mut head, buf) {
                Ok(r) if r.len == 0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(r) => {
                    if r.truncated || r.ctruncated {
                        return Err(invalid_data("oversized control message from backend"));
                    }
                    if r.len < HEADER_LEN || head[0] != VERSION {
                        return Err(invalid_data("malformed control header from backend"));
                    }
                    let peer = [2, KIND_PAGES, KIND_BELL];
                    let plain = head[1..].iter().all(|&b| b == 0) && r.fds.is_empty();
                    let granted =
                        head[1..4] == peer && head[4..].iter().all(|&b| b == 0) && r.fds.len() == 2;
                    if !plain && !granted {
                        return Err(invalid_data("unexpected resources from backend"));
                    }
                    return Ok((r.len - HEADER_LEN, r.fds));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.sock.as_fd(), libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

// ------------------------------------------------------------------- host ---

/// How a local backend listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHostConfig {
    /// Path of the socket to create.
    pub path: PathBuf,
    /// Permission bits given to the socket file (`None`: leave the umask's).
    pub mode: Option<u32>,
}

impl LocalHostConfig {
    /// Listen at `path`, mode 0666.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalHostConfig {
            path: path.into(),
            mode: Some(0o666),
        }
    }
}

impl Default for LocalHostConfig {
    /// `$MX_BACKEND_SOCKET` or [`DEFAULT_SOCKET_PATH`], mode 0666.
    fn default() -> Self {
        LocalHostConfig::new(default_path())
    }
}

/// Who a local guest is: the credentials of the process that connected,
/// as reported by the kernel (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl PeerCred {
    /// The credentials this process would present when it attaches
    /// (pid, effective uid and gid).
    pub fn of_current_process() -> Self {
        PeerCred {
            pid: std::process::id() as i32,
            uid: sys::geteuid(),
            gid: sys::getegid(),
        }
    }
}

impl fmt::Display for PeerCred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (uid {}, gid {})", self.pid, self.uid, self.gid)
    }
}

/// A local backend's listening socket. Non-blocking. Removes its socket
/// file on drop (if it is still the one it created).
#[derive(Debug)]
pub struct LocalListener {
    sock: OwnedFd,
    path: PathBuf,
    ino: (u64, u64),
}

impl LocalListener {
    /// Creates the socket at `config.path`. A stale socket file (no one
    /// listening) is replaced; a live one is `AddrInUse` (the probe that
    /// found it alive shows up at that backend as a guest that attached and
    /// left at once).
    ///
    /// # Errors
    /// `AddrInUse`, or an OS error from `socket`/`bind`/`listen`/`chmod`.
    pub fn bind(config: &LocalHostConfig) -> io::Result<Self> {
        // The socket file must only ever name a socket that is already
        // listening: bind(2) creates the file before listen(2), and a guest
        // connecting in between is refused. So bind and listen under a
        // temporary name beside it, then rename(2) it into place atomically.
        let path = &config.path;
        if std::fs::symlink_metadata(path).is_ok() && !is_stale(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a live backend", path.display()),
            ));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}~", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let sock = sys::seqpacket_socket()?;
        let placed = sys::bind_listen(sock.as_fd(), &tmp, 128)
            .and_then(|()| match config.mode {
                Some(mode) => sys::chmod(&tmp, mode),
                None => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let md = std::fs::metadata(path)?;
        Ok(LocalListener {
            sock,
            path: path.clone(),
            ino: (md.dev(), md.ino()),
        })
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identifies the peer of a freshly accepted socket.
    fn identify(sock: OwnedFd) -> io::Result<LocalConn> {
        let (pid, uid, gid) = sys::peer_cred(sock.as_fd())?;
        let pidfd = match sys::peer_pidfd(sock.as_fd()) {
            Ok(fd) => fd,
            Err(e)
                if e.raw_os_error() == Some(libc::ENOPROTOOPT)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                // Older kernel: open by pid, then make sure the peer was
                // still connected after, so the pid was not recycled.
                let fd = sys::pidfd_open(pid)?;
                let mut p = [libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&sock),
                    events: libc::POLLRDHUP,
                    revents: 0,
                }];
                if sys::ppoll(&mut p, Some(Duration::ZERO))? != 0 {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                fd
            }
            Err(e) => return Err(e),
        };
        let cred = PeerCred { pid, uid, gid };
        Ok(LocalConn {
            sock,
            cred,
            memory: ProcessMemory::from_pidfd(pid, pidfd),
        })
    }
}

/// True if `path` is a socket file nobody listens on.
fn is_stale(path: &Path) -> bool {
    let is_sock = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_sock {
        return false;
    }
    let Ok(probe) = sys::seqpacket_socket() else {
        return false;
    };
    matches!(sys::connect(probe.as_fd(), path), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

impl Drop for LocalListener {
    fn drop(&mut self) {
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl AsFd for LocalListener {
    /// The listening socket: readable when a guest is waiting to be accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl GuestListener<LocalHost> for LocalListener {
    fn accept(&self) -> io::Result<Option<LocalConn>> {
        loop {
            let sock = match sys::accept(self.sock.as_fd()) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The guest gave up before we accepted it.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => return Err(e),
            };
            match Self::identify(sock) {
                Ok(conn) => return Ok(Some(conn)),
                // Out of descriptors (the pidfd): the caller must back off,
                // not take the next guest at once. This one is closed.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
                    ) =>
                {
                    return Err(e)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refusing a guest whose identity cannot be established");
                    continue;
                }
            }
        }
    }
}

/// A local backend's connection to one guest. Non-blocking.
#[derive(Debug)]
pub struct LocalConn {
    sock: OwnedFd,
    cred: PeerCred,
    memory: ProcessMemory,
}

impl LocalConn {
    /// A connected guest link and host connection in one process, without a
    /// socket file (embedded use and tests). The guest is this process.
    ///
    /// # Errors
    /// An OS error from `socketpair` or the identity look-up.
    pub fn pair() -> io::Result<(LocalLink, LocalConn)> {
        let (g, h) = sys::seqpacket_pair()?;
        Ok((LocalLink::from_socket(g), LocalListener::identify(h)?))
    }
}

impl AsFd for LocalConn {
    /// The socket: readable when the guest sent a request or went away.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl GuestConn<LocalHost> for LocalConn {
    fn guest_id(&self) -> PeerCred {
        self.cred
    }

    /// A local guest's exit hangs up its socket, which the backend polls.
    fn gone(&self) -> bool {
        false
    }

    fn principal(&self) -> u64 {
        u64::from(self.cred.uid)
    }

    fn is_privileged(&self) -> bool {
        // SO_PEERCRED's uid, never what the guest says: root, or whoever
        // runs the backend (a backend run by a user trusts that user).
        self.cred.uid == 0 || self.cred.uid == sys::geteuid()
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Incoming<LocalResources>> {
        let mut head = [0u8; HEADER_LEN];
        let r = loop {
            match sys::recv_with_fds(self.sock.as_fd(), &mut head, buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Incoming::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(Incoming::Closed)
                }
                Err(e) => return Err(e),
            }
        };
        if r.len == 0 {
            return Ok(Incoming::Closed);
        }
        // From here on, any descriptors that came are dropped (closed) on error.
        if r.truncated || r.ctruncated {
            return Err(invalid_data("oversized control message"));
        }
        if r.len < HEADER_LEN || head[0] != VERSION {
            return Err(invalid_data("malformed control header"));
        }
        let n = head[1] as usize;
        if n > MAX_RESOURCES || head[2 + n..].iter().any(|&b| b != 0) {
            return Err(invalid_data("bad resource count"));
        }
        let mut want = 0;
        for &k in &head[2..2 + n] {
            want += match k {
                KIND_PAGES | KIND_EVENT | KIND_BELL => 1,
                _ => return Err(invalid_data("unknown resource kind")),
            };
        }
        if r.fds.len() != want {
            return Err(invalid_data("descriptors do not match the resource kinds"));
        }
        let mut fds = r.fds.into_iter();
        let mut slots = Vec::with_capacity(n);
        for &k in &head[2..2 + n] {
            // Counts were checked just above, so `next` cannot run dry.
            let mut next = || fds.next().ok_or_else(|| invalid_data("missing descriptor"));
            slots.push(Some(match k {
                KIND_PAGES => Slot::Pages(next()?),
                KIND_BELL => Slot::Bell(next()?),
                _ => Slot::Event(next()?),
            }));
        }
        Ok(Incoming::Request {
            len: r.len - HEADER_LEN,
            resources: LocalResources { slots },
        })
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        if msg.len() > MAX_CONTROL_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control message too long",
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        head[0] = VERSION;
        loop {
            match sys::send_with_fds(self.sock.as_fd(), &[&head, msg], &[]) {
                Ok(n) if n == HEADER_LEN + msg.len() => return Ok(()),
                Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn memory(&self) -> ProcessMemory {
        self.memory.clone()
    }

    fn send_peer(&self, msg: &[u8], grant: PeerGrant) -> io::Result<()> {
        if msg.len() > MAX_CONTROL_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control message too long",
            ));
        }
        let PeerGrant(PeerRemote::Local { pages, bell }) = grant else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a local peer channel",
            ));
        };
        let bell = bell.into_fd();
        let mut head = [0u8; HEADER_LEN];
        head[0] = VERSION;
        head[1] = 2;
        head[2] = KIND_PAGES;
        head[3] = KIND_BELL;
        loop {
            match sys::send_with_fds(
                self.sock.as_fd(),
                &[&head, msg],
                &[pages.as_fd(), bell.as_fd()],
            ) {
                Ok(n) if n == HEADER_LEN + msg.len() => return Ok(()),
                Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One received resource slot.
#[derive(Debug)]
enum Slot {
    Pages(OwnedFd),
    Event(OwnedFd),
    Bell(OwnedFd),
}

/// Resources received with one local request: descriptors not yet mapped
/// or checked. Untaken ones are closed on drop.
#[derive(Debug)]
pub struct LocalResources {
    slots: Vec<Option<Slot>>,
}

impl LocalResources {
    fn take(&mut self, slot: usize, kind: ResourceKind) -> io::Result<Slot> {
        let cell = self
            .slots
            .get_mut(slot)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such resource slot"))?;
        let matches = match cell {
            Some(Slot::Pages(_)) => kind == ResourceKind::Pages,
            Some(Slot::Event(..)) => kind == ResourceKind::Event,
            Some(Slot::Bell(_)) => kind == ResourceKind::Bell,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "resource slot already taken",
                ))
            }
        };
        if !matches {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "resource slot has another kind",
            ));
        }
        Ok(cell.take().expect("slot checked to be full"))
    }
}

impl ReceivedResources<LocalHost> for LocalResources {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn kind(&self, slot: usize) -> Option<ResourceKind> {
        match self.slots.get(slot)? {
            Some(Slot::Pages(_)) => Some(ResourceKind::Pages),
            Some(Slot::Event(..)) => Some(ResourceKind::Event),
            Some(Slot::Bell(_)) => Some(ResourceKind::Bell),
            None => None,
        }
    }

    fn take_pages(&mut self, slot: usize, expected_pages: usize) -> io::Result<MappedPages> {
        match self.take(slot, ResourceKind::Pages)? {
            Slot::Pages(fd) => MappedPages::map(fd, expected_pages),
            _ => unreachable!("kind checked by take"),
        }
    }

    fn take_event(&mut self, slot: usize) -> io::Result<SocketChannel> {
        match self.take(slot, ResourceKind::Event)? {
            Slot::Event(fd) => SocketChannel::from_guest_fd(fd),
            _ => unreachable!("kind checked by take"),
        }
    }

    fn take_peer(&mut self, pages: usize) -> io::Result<PeerGrant> {
        let Slot::Pages(mem) = self.take(0, ResourceKind::Pages)? else {
            unreachable!("kind checked by take")
        };
        let Slot::Bell(bell) = self.take(1, ResourceKind::Bell)? else {
            unreachable!("kind checked by take")
        };
        // The same checks as for a channel we map ourselves (a sealed memfd
        // of exactly this size); the mapping itself is not kept.
        drop(MappedPages::map(mem.try_clone()?, pages)?);
        Ok(PeerGrant(PeerRemote::Local {
            pages: mem,
            bell: LocalBell::from_fd(bell)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{EventChannel, GuestMemory, SharedMem, WaitOutcome, PAGE_SIZE};

    const T: Duration = Duration::from_secs(10);

    fn recv_now(conn: &LocalConn, buf: &mut [u8]) -> Incoming<LocalResources> {
        let deadline = Instant::now() + T;
        loop {
            match conn.recv(buf).unwrap() {
                Incoming::Empty if Instant::now() < deadline => {
                    wait_fd(conn.as_fd(), libc::POLLIN, deadline).unwrap();
                }
                other => return other,
            }
        }
    }

    #[test]
    fn a_peer_channel_travels_from_one_guest_through_the_host_to_another() {
        use crate::platform::BellState;
        let (link_a, conn_a) = LocalConn::pair().unwrap();
        let (link_b, conn_b) = LocalConn::pair().unwrap();
        let a = std::thread::spawn(move || {
            let offer = link_a.peer_create(2).unwrap();
            offer.end.mem.write_at(PAGE_SIZE + 3, b"from a").unwrap();
            let mut reply = [0u8; MAX_CONTROL_MSG];
            let n = link_a.peer_offer(&offer, b"offer", &mut reply, T).unwrap();
            assert_eq!(&reply[..n], b"pending");
            offer.end
        });
        let mut buf = [0u8; MAX_CONTROL_MSG];
        let Incoming::Request { len, mut resources } = recv_now(&conn_a, &mut buf) else {
            panic!("no offer")
        };
        assert_eq!(&buf[..len], b"offer");
        let grant = resources.take_peer(2).unwrap();
        conn_a.send(b"pending").unwrap();
        let end_a = a.join().unwrap();

        let b = std::thread::spawn(move || {
            let mut reply = [0u8; MAX_CONTROL_MSG];
            let (n, end) = link_b.peer_accept(2, b"accept", &mut reply, T).unwrap();
            assert_eq!(&reply[..n], b"granted");
            let end = end.expect("a granted channel");
            let mut got = [0u8; 6];
            end.mem.read_at(PAGE_SIZE + 3, &mut got).unwrap();
            assert_eq!(&got, b"from a");
            end.bell.ring().unwrap();
            // A refusal carries no descriptors.
            let (n, none) = link_b.peer_accept(2, b"accept", &mut reply, T).unwrap();
            assert_eq!(&reply[..n], b"no");
            assert!(none.is_none());
            end
        });
        let Incoming::Request { len, .. } = recv_now(&conn_b, &mut buf) else {
            panic!("no accept")
        };
        assert_eq!(&buf[..len], b"accept");
        conn_b.send_peer(b"granted", grant).unwrap();
        let Incoming::Request { .. } = recv_now(&conn_b, &mut buf) else {
            panic!("no second accept")
        };
        conn_b.send(b"no").unwrap();
        let end_b = b.join().unwrap();
        // The two ends share the bell, and the backend kept no copy of it:
        // when B's end goes, A sees the hang-up.
        let t0 = Instant::now();
        while end_a.bell.drain().unwrap() != BellState::Rung {
            assert!(t0.elapsed() < T);
        }
        drop(end_b);
        assert_eq!(end_a.bell.drain().unwrap(), BellState::HungUp);
    }

    #[test]
    fn the_host_refuses_a_peer_hand_over_that_is_not_one() {
        let (link, conn) = LocalConn::pair().unwrap();
        let pages = link.alloc_pages(2).unwrap();
        let ev = link.alloc_event().unwrap();
        link.send(b"x", &[Resource::Pages(&pages), Resource::Event(&ev)], T)
            .unwrap();
        let mut buf = [0u8; MAX_CONTROL_MSG];
        let Incoming::Request { mut resources, .. } = recv_now(&conn, &mut buf) else {
            panic!("no request")
        };
        assert!(resources.take_peer(2).is_err(), "an eventfd is not a bell");
        let offer = link.peer_create(2).unwrap();
        let mut reply = [0u8; 8];
        let guest = std::thread::spawn(move || {
            let _ = link.peer_offer(&offer, b"y", &mut reply, T);
        });
        let Incoming::Request { mut resources, .. } = recv_now(&conn, &mut buf) else {
            panic!("no offer")
        };
        assert!(resources.take_peer(3).is_err(), "wrong page count");
        conn.send(b"n").unwrap();
        guest.join().unwrap();
    }

    #[test]
    fn request_with_resources_over_a_socketpair_between_threads() {
        let (link, conn) = LocalConn::pair().unwrap();
        assert_eq!(conn.guest_id(), PeerCred::of_current_process());
        assert!(
            conn.is_privileged(),
            "a guest with the backend's own uid is privileged"
        );
        let guest = std::thread::spawn(move || {
            let a = link.alloc_pages(1).unwrap();
            let b = link.alloc_pages(3).unwrap();
            let ev = link.alloc_event().unwrap();
            a.write_at(0, b"page set a").unwrap();
            b.write_at(3 * PAGE_SIZE - 5, b"end-b").unwrap();
            let mut reply = [0u8; MAX_CONTROL_MSG];
            let n = link
                .call(
                    b"open",
                    &[
                        Resource::Pages(&a),
                        Resource::Event(&ev),
                        Resource::Pages(&b),
                    ],
                    &mut reply,
                    T,
                )
                .unwrap();
            assert_eq!(&reply[..n], b"opened");
            assert_eq!(ev.wait(Some(T)).unwrap(), WaitOutcome::Notified);
            let mut got = [0u8; 4];
            a.read_at(100, &mut got).unwrap();
            assert_eq!(&got, b"host");
            ev.notify().unwrap();
            // keep resources alive until the host has seen the notify
            let _ = link.recv(&mut reply, T);
        });
        let mut buf = [0u8; MAX_CONTROL_MSG];
        let Incoming::Request { len, mut resources } = recv_now(&conn, &mut buf) else {
            panic!("no request")
        };
        assert_eq!(&buf[..len], b"open");
        assert_eq!(resources.len(), 3);
        assert_eq!(resources.kind(1), Some(ResourceKind::Event));
        assert!(resources.take_event(0).is_err(), "slot 0 is pages");
        assert!(resources.take_pages(9, 1).is_err());
        let a = resources.take_pages(0, 1).unwrap();
        assert!(resources.take_pages(0, 1).is_err(), "taken twice");
        assert_eq!(
            resources.take_pages(2, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidData,
            "wrong size"
        );
        let ev = resources.take_event(1).unwrap();
        let mut s = [0u8; 10];
        a.read_at(0, &mut s).unwrap();
        assert_eq!(&s, b"page set a");
        conn.send(b"opened").unwrap();
        a.write_at(100, b"host").unwrap();
        ev.notify().unwrap();
        assert_eq!(ev.wait(Some(T)).unwrap(), WaitOutcome::Notified);
        conn.send(b"bye").unwrap();
        guest.join().unwrap();
        assert!(matches!(recv_now(&conn, &mut buf), Incoming::Closed));
        // process memory of this guest (ourselves)
        let data = [5u8; 32];
        let mut out = [0u8; 32];
        conn.memory()
            .read(&[super::super::GuestRange::of_slice(&data)], 0, &mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn host_rejects_protocol_violations() {
        // too many descriptors for the declared kinds
        let (link, conn) = LocalConn::pair().unwrap();
        let p = MemfdPages::new(1).unwrap();
        let mut head = [0u8; HEADER_LEN];
        head[0] = VERSION;
        head[1] = 1;
        head[2] = KIND_EVENT; // claims an event, sends two descriptors
        sys::send_with_fds(link.as_fd(), &[&head, b"x"], &[p.as_fd(), p.as_fd()]).unwrap();
        let mut buf = [0u8; MAX_CONTROL_MSG];
        assert_eq!(
            conn.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // a bad version
        head = [0u8; HEADER_LEN];
        head[0] = 9;
        sys::send_with_fds(link.as_fd(), &[&head], &[]).unwrap();
        assert_eq!(
            conn.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // an oversized body
        let big = vec![0u8; MAX_CONTROL_MSG + 1];
        head[0] = VERSION;
        sys::send_with_fds(link.as_fd(), &[&head, &big], &[]).unwrap();
        assert_eq!(
            conn.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(matches!(conn.recv(&mut buf).unwrap(), Incoming::Empty));
        // the guest API refuses oversize too
        assert!(link.send(&big, &[], T).is_err());
        // a reply nobody reads does not block the host
        let mut sent = 0;
        loop {
            match conn.send(&[0u8; 1024]) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
            assert!(sent < 100_000);
        }
    }

    #[test]
    fn listener_accepts_and_cleans_up_its_socket() {
        let path = std::env::temp_dir().join(format!("mx-plat-unit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cfg = LocalHostConfig::new(&path);
        let l = LocalListener::bind(&cfg).unwrap();
        assert!(l.accept().unwrap().is_none());
        let link = LocalLink::connect(&LocalTarget::new(&path), T).unwrap();
        let conn = l.accept().unwrap().expect("pending guest");
        assert_eq!(conn.guest_id().pid, std::process::id() as i32);
        link.send(b"hi", &[], T).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(
            recv_now(&conn, &mut buf),
            Incoming::Request { len: 2, .. }
        ));
        let mut rb = [0u8; 16];
        assert_eq!(
            link.recv(&mut rb, Duration::from_millis(10))
                .unwrap_err()
                .kind(),
            io::ErrorKind::TimedOut
        );
        drop(conn);
        assert_eq!(
            link.recv(&mut rb, T).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        // a live listener is not replaced (its probe shows up as a guest that left)
        assert_eq!(
            LocalListener::bind(&cfg).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let probe = l.accept().unwrap().expect("the probe");
        assert!(matches!(recv_now(&probe, &mut buf), Incoming::Closed));
        drop(l);
        assert!(!path.exists());
        let e = LocalLink::connect(&LocalTarget::new(&path), T).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // a stale socket file (its listener died without cleaning up) is replaced
        let stale = sys::seqpacket_socket().unwrap();
        sys::bind_listen(stale.as_fd(), &path, 1).unwrap();
        drop(stale);
        assert!(path.exists());
        let l = LocalListener::bind(&cfg).unwrap();
        LocalLink::connect(&LocalTarget::new(&path), T).unwrap();
        assert!(l.accept().unwrap().is_some());
        drop(l);
        assert!(!path.exists());
    }
}
