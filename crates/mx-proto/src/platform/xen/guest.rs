//! The guest side: attach to the backend through xenbus, then talk over the
//! control ring.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::control::{self, CtlSlot, FrameKind, ResDesc, REQ_SLOTS, RING_REQ, RING_RSP};
use super::xenbus::{self, End, XenbusState};
use super::xenstore::{Xenstore, NO_TX};
use super::{DomId, GrantedPages, MappedGrants, XenBell, XenEvent, XenGuest, XenPeerGrant};
use crate::platform::{
    BackendLink, EventChannel, PeerEnd, PeerOffer, PeerRemote, Resource, PAGE_SIZE,
};
use crate::ring::{Consumer, ControlPage, Producer, Side};

/// Environment variable naming the device slot to use (default: the first
/// free one).
pub const DEVICE_ENV: &str = "MX_XEN_DEVICE";
/// Environment variable with the bulk-copy pool size in pages.
pub const POOL_PAGES_ENV: &str = "MX_XEN_POOL_PAGES";
/// Environment variable naming the directory of the slot lock files.
pub const LOCK_DIR_ENV: &str = "MX_XEN_LOCK_DIR";

/// Smallest default pool: 256 pages (1 MiB), what fits beside one endpoint
/// in gntalloc's stock limit of 1024 grants per domain.
pub const DEFAULT_POOL_PAGES: usize = 256;
/// Largest default pool: 2048 pages (8 MiB).
pub const MAX_DEFAULT_POOL_PAGES: usize = 2048;
/// Where gntalloc publishes its per-domain grant limit.
const GNTALLOC_LIMIT: &str = "/sys/module/xen_gntalloc/parameters/limit";

/// The pool size when `$MX_XEN_POOL_PAGES` does not say: an eighth of
/// gntalloc's grant limit (the domain's grants are shared by every
/// endpoint's rings and pools), between [`DEFAULT_POOL_PAGES`] and
/// [`MAX_DEFAULT_POOL_PAGES`]. A large message must fit in the pool, so a
/// deployment that raised the limit as docs/XEN.md says gets 8 MiB.
pub fn default_pool_pages(gntalloc_limit: Option<usize>) -> usize {
    gntalloc_limit.map_or(DEFAULT_POOL_PAGES, |l| {
        (l / 8).clamp(DEFAULT_POOL_PAGES, MAX_DEFAULT_POOL_PAGES)
    })
}

/// How long announcing the pool may wait for room on the control ring.
const POOL_ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

/// How long a detaching guest waits for the backend to unmap.
const DETACH_WAIT: Duration = Duration::from_secs(2);

/// Where a Xen guest finds its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenTarget {
    /// The `device/mx/<n>` slot, or `None` for the first free one.
    pub device: Option<u32>,
    /// Pages of the bulk-copy pool, granted when an endpoint first needs it
    /// (0: none).
    pub pool_pages: usize,
}

impl Default for XenTarget {
    /// `$MX_XEN_DEVICE` (else any free slot), `$MX_XEN_POOL_PAGES` (else
    /// `default_pool_pages` of gntalloc's limit).
    fn default() -> Self {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        XenTarget {
            device: env(DEVICE_ENV).map(|v| v as u32),
            pool_pages: env(POOL_PAGES_ENV).map_or_else(
                || {
                    let limit = std::fs::read_to_string(GNTALLOC_LIMIT)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                    default_pool_pages(limit)
                },
                |v| v as usize,
            ),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn other(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, msg)
}

/// Waits until `pred(state at path)` decides, watching `path`.
fn wait_state<T>(
    xs: &Xenstore,
    path: &str,
    deadline: Instant,
    mut pred: impl FnMut(Option<XenbusState>) -> Option<io::Result<T>>,
) -> io::Result<T> {
    xs.watch(path, path)?;
    let out = loop {
        if let Some(r) = pred(xenbus::read_state(xs, path)?) {
            break r;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting on {path}"),
            ));
        }
        let _ = xs.next_watch(left.min(Duration::from_millis(500)))?;
    };
    let _ = xs.unwatch(path, path);
    out
}

/// The in-guest lock of one slot, held while a process uses it.
fn try_lock_slot(n: u32) -> io::Result<Option<File>> {
    let dir = std::env::var_os(LOCK_DIR_ENV).map_or_else(|| PathBuf::from("/run/lock"), Into::into);
    let dir = if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    };
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("mx-xen-{n}.lock")))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// A Xen guest's attachment to its backend: one `device/mx/<n>` slot, its
/// control ring and event channel, and its bulk-copy pool.
pub struct XenLink {
    xs: Xenstore,
    fe: String,
    be: String,
    backend_id: DomId,
    /// Our own domain (from xenstore's `domid`).
    domid: DomId,
    device: u32,
    req: Mutex<Producer<CtlSlot, Arc<GrantedPages>>>,
    rsp: Mutex<Consumer<CtlSlot, Arc<GrantedPages>>>,
    event: XenEvent,
    /// Pages of the pool to grant on first use (0: none).
    pool_pages: usize,
    /// The pool, granted and announced the first time something asks
    /// ([`XenLink::pool`], `bulk_pool`): an attachment that only looks
    /// peers up never costs a pool's grants.
    pool: OnceLock<Option<Arc<GrantedPages>>>,
    broken: AtomicBool,
    _slot_lock: File,
}

impl std::fmt::Debug for XenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenLink")
            .field("frontend", &self.fe)
            .field("backend", &self.be)
            .field("port", &self.event.port())
            .finish()
    }
}

impl XenLink {
    /// Claims a device slot and runs the frontend's side of the handshake.
    ///
    /// # Errors
    /// `NotFound` if this domain has no `mx` device (no backend created
    /// one), `TimedOut` if the backend does not answer, `ConnectionRefused`
    /// if it refused or every slot is in use, or an OS error.
    pub fn attach(target: &XenTarget, timeout: Duration) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let xs = Xenstore::open_xenbus()?;
        let domid: DomId = xs
            .read(NO_TX, "domid")?
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad domid"))?;
        let base = format!("{}/device/{}", xs.domain_path(domid)?, xenbus::DEVICE_TYPE);
        // The backend's helper may still be creating the slots.
        let mut slots: Vec<u32> = loop {
            match xs.directory(NO_TX, &base) {
                Ok(v) if !v.is_empty() => break v.iter().filter_map(|s| s.parse().ok()).collect(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no {base}: is mx-backend running in the backend domain?"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        slots.sort_unstable();
        if let Some(n) = target.device {
            slots.retain(|&s| s == n);
        }
        for n in slots {
            let Some(slot_lock) = try_lock_slot(n)? else {
                continue; // another process of this guest has it
            };
            match Self::attach_slot(&xs, &base, (domid, n), target, deadline, slot_lock) {
                Ok(Some(link)) => return Ok(link),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(other(format!("every {base}/<n> slot is in use")))
    }

    /// Tries slot `n`; `Ok(None)` if another guest process won it.
    fn attach_slot(
        xs: &Xenstore,
        base: &str,
        (domid, n): (DomId, u32),
        target: &XenTarget,
        deadline: Instant,
        slot_lock: File,
    ) -> io::Result<Option<Self>> {
        let fe = format!("{base}/{n}");
        let fe_state = format!("{fe}/state");
        let be = xs.read(NO_TX, &format!("{fe}/backend"))?;
        let be_state = format!("{be}/state");
        let backend_id: DomId = xs
            .read(NO_TX, &format!("{fe}/backend-id"))?
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad backend-id"))?;

        // We hold the slot's lock: a slot not Initialising/Closed was left
        // by a process that died. Walk it to Closed so the backend lets go.
        let cur = xenbus::read_state(xs, &fe_state)?.unwrap_or(XenbusState::Initialising);
        if !matches!(cur, XenbusState::Initialising | XenbusState::Closed) {
            xenbus::switch_state(xs, End::Frontend, &fe_state, cur, XenbusState::Closing)?;
            let _ = wait_state(xs, &be_state, Instant::now() + DETACH_WAIT, |s| {
                matches!(s, None | Some(XenbusState::Closed | XenbusState::InitWait))
                    .then_some(Ok(()))
            });
            xenbus::switch_state(
                xs,
                End::Frontend,
                &fe_state,
                XenbusState::Closing,
                XenbusState::Closed,
            )?;
        }

        // Our resources, granted to the backend's domain.
        let ctrl = Arc::new(GrantedPages::new(backend_id, control::region_pages())?);
        let page = ControlPage::init(ctrl.clone(), &control::layout(), Side::Frontend)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
        let req = page
            .producer::<CtlSlot>(RING_REQ)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let rsp = page
            .consumer::<CtlSlot>(RING_RSP)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let event = XenEvent::alloc_unbound(backend_id)?;

        // Wait for the backend, then publish and claim in one transaction.
        wait_state(xs, &be_state, deadline, |s| match s {
            Some(XenbusState::InitWait) => Some(Ok(())),
            _ => None,
        })?;
        let refs = ctrl.refs().to_vec();
        let claimed = xs.transaction(|tx| {
            let s = xs
                .read_opt(tx, &fe_state)?
                .and_then(|v| XenbusState::parse(&v));
            if !matches!(
                s,
                None | Some(XenbusState::Initialising | XenbusState::Closed)
            ) {
                return Ok(false);
            }
            xs.write(tx, &format!("{fe}/num-ring-pages"), &refs.len().to_string())?;
            for (i, r) in refs.iter().enumerate() {
                xs.write(tx, &format!("{fe}/ring-ref{i}"), &r.to_string())?;
            }
            xs.write(
                tx,
                &format!("{fe}/event-channel"),
                &event.port().to_string(),
            )?;
            if s == Some(XenbusState::Closed) {
                xs.write(tx, &fe_state, XenbusState::Initialising.as_str())?;
            }
            xs.write(tx, &fe_state, XenbusState::Initialised.as_str())?;
            Ok(true)
        })?;
        if !claimed {
            return Ok(None);
        }
        let connected = wait_state(xs, &be_state, deadline, |s| match s {
            Some(XenbusState::Connected) => Some(Ok(true)),
            Some(XenbusState::Closing | XenbusState::Closed) | None => Some(Ok(false)),
            _ => None,
        });
        if !matches!(connected, Ok(true)) {
            let why = xs
                .read_opt(NO_TX, &format!("{be}/error"))
                .ok()
                .flatten()
                .unwrap_or_else(|| "no reason given".into());
            let _ = xenbus::switch_state(
                xs,
                End::Frontend,
                &fe_state,
                XenbusState::Initialised,
                XenbusState::Closed,
            );
            return match connected {
                Err(e) => Err(e),
                _ => Err(other(format!("backend refused {fe}: {why}"))),
            };
        }
        xenbus::switch_state(
            xs,
            End::Frontend,
            &fe_state,
            XenbusState::Initialised,
            XenbusState::Connected,
        )?;
        let link = XenLink {
            // The link's own connection: it watches the backend's state for
            // the link's life, and its descriptor is polled in `wait`.
            xs: Xenstore::open_xenbus()?,
            fe,
            be,
            backend_id,
            domid,
            device: n,
            req: Mutex::new(req),
            rsp: Mutex::new(rsp),
            event,
            pool_pages: target.pool_pages,
            pool: OnceLock::new(),
            broken: AtomicBool::new(false),
            _slot_lock: slot_lock,
        };
        link.xs.watch(&be_state, "backend")?;
        tracing::info!(frontend = %link.fe, backend = %link.be, port = link.event.port(), "xen link connected");
        Ok(Some(link))
    }

    /// The device slot this link holds.
    pub fn device(&self) -> u32 {
        self.device
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> DomId {
        self.backend_id
    }

    /// Grant the pool and announce it to the backend (once).
    fn grant_pool(&self) -> Option<Arc<GrantedPages>> {
        if self.pool_pages == 0 {
            return None;
        }
        let announce = |p: &GrantedPages| -> io::Result<()> {
            let f = control::encode(
                FrameKind::Pool,
                b"",
                &[ResDesc::Pages(p.refs().to_vec())],
                REQ_SLOTS,
            )?;
            self.push(&f, Instant::now() + POOL_ANNOUNCE_WAIT)
        };
        match GrantedPages::new(self.backend_id, self.pool_pages) {
            Ok(p) => match announce(&p) {
                Ok(()) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(
                        pages = self.pool_pages,
                        "cannot announce the bulk pool: {e}"
                    );
                    None
                }
            },
            Err(e) => {
                tracing::warn!(
                    pages = self.pool_pages,
                    "cannot grant the bulk pool ({e}): large messages will fail; raise \
                     gntalloc's limit or lower MX_XEN_POOL_PAGES"
                );
                None
            }
        }
    }

    /// The bulk-copy pool (what a [`super::XenRegion`]
    /// offset indexes), if any.
    pub fn pool(&self) -> Option<&GrantedPages> {
        self.pool.get_or_init(|| self.grant_pool()).as_deref()
    }

    /// True once the backend left `Connected` (or its node vanished).
    fn backend_gone(&self) -> bool {
        if self.broken.load(Ordering::Acquire) {
            return true;
        }
        let mut fired = false;
        while let Ok(Some(_)) = self.xs.next_watch(Duration::ZERO) {
            fired = true;
        }
        if fired {
            let s = xenbus::read_state(&self.xs, &format!("{}/state", self.be));
            if !matches!(s, Ok(Some(XenbusState::Connected))) {
                self.broken.store(true, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Waits for the event channel or a xenstore watch, at most `left`.
    fn wait(&self, left: Duration) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.event.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.xs.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        match crate::platform::sys::ppoll(&mut fds, Some(left)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if fds[0].revents & libc::POLLIN != 0 {
            self.event.consume()?;
        }
        Ok(())
    }

    fn push(&self, frame: &[u8], deadline: Instant) -> io::Result<()> {
        loop {
            if self.backend_gone() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let r = control::push_frame(&mut lock(&self.req), frame);
            match r {
                Ok(n) => {
                    if n.is_needed() {
                        self.event.notify()?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::from(io::ErrorKind::TimedOut));
                    }
                    // The backend does not kick us for room: poll it.
                    self.wait(left.min(Duration::from_millis(5)))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl XenLink {
    /// Pops the next frame from the backend, waiting at most `timeout`.
    fn recv_frame(&self, timeout: Duration) -> io::Result<control::Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut rsp = lock(&self.rsp);
                if let Some(f) = control::pop_frame(&mut rsp)? {
                    let _ = rsp.release();
                    drop(rsp);
                    return control::decode(&f);
                }
                let may_sleep = rsp
                    .prepare_to_sleep()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if !may_sleep {
                    continue;
                }
            }
            if self.backend_gone() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            // Bounded slices: a notification consumed by a concurrent
            // `send` on another thread must not strand us.
            self.wait(left.min(Duration::from_millis(50)))?;
        }
    }

    /// Our own domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }
}

fn copy_body(body: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    if body.len() > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized control message from backend",
        ));
    }
    buf[..body.len()].copy_from_slice(body);
    Ok(body.len())
}

fn unexpected() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected control frame from backend",
    )
}

impl AsFd for XenLink {
    /// The control event channel: readable when the backend replied.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.event.as_fd()
    }
}

impl BackendLink<XenGuest> for XenLink {
    fn alloc_pages(&self, count: usize) -> io::Result<GrantedPages> {
        if count.checked_mul(PAGE_SIZE).is_none() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        GrantedPages::new(self.backend_id, count)
    }

    fn alloc_event(&self) -> io::Result<XenEvent> {
        XenEvent::alloc_unbound(self.backend_id)
    }

    fn bulk_pool(&self) -> Option<Arc<dyn crate::platform::SharedMem>> {
        self.pool
            .get_or_init(|| self.grant_pool())
            .clone()
            .map(|p| p as Arc<dyn crate::platform::SharedMem>)
    }

    fn send(
        &self,
        msg: &[u8],
        resources: &[Resource<'_, GrantedPages, XenEvent>],
        timeout: Duration,
    ) -> io::Result<()> {
        let mut res = Vec::with_capacity(resources.len());
        for r in resources {
            res.push(match r {
                Resource::Pages(p) if p.granted_to() == self.backend_id => {
                    ResDesc::Pages(p.refs().to_vec())
                }
                Resource::Event(e) if e.remote() == self.backend_id => ResDesc::Event(e.port()),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "resource not offered to this backend",
                    ))
                }
            });
        }
        let frame = control::encode(FrameKind::Data, msg, &res, REQ_SLOTS)?;
        self.push(&frame, Instant::now() + timeout)
    }

    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let frame = self.recv_frame(timeout)?;
        if frame.kind != FrameKind::Data || !frame.res.is_empty() {
            return Err(unexpected());
        }
        copy_body(&frame.body, buf)
    }

    fn peer_needs_domain(&self) -> bool {
        true
    }

    fn peer_create(&self, pages: usize) -> io::Result<PeerOffer> {
        self.peer_create_for(pages, None)
    }

    /// Grants `pages` zeroed pages to `domain` and allocates an unbound
    /// port for it: our end maps our own pages and keeps the port; the
    /// other end gets their numbers, through the backend.
    fn peer_create_for(&self, pages: usize, domain: Option<u32>) -> io::Result<PeerOffer> {
        let to = domain
            .and_then(|d| DomId::try_from(d).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a Xen peer channel needs the other endpoint's domain",
                )
            })?;
        let mem = Arc::new(GrantedPages::new(to, pages)?);
        let ev = XenEvent::alloc_unbound(to)?;
        let remote = XenPeerGrant {
            from: self.domid,
            to,
            refs: mem.refs().to_vec(),
            port: ev.port(),
        };
        Ok(PeerOffer {
            end: PeerEnd {
                mem,
                bell: Box::new(XenBell::new(ev)),
            },
            remote: PeerRemote::Xen(remote),
        })
    }

    fn peer_offer(
        &self,
        offer: &PeerOffer,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        let PeerRemote::Xen(g) = &offer.remote else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a Xen peer channel",
            ));
        };
        let frame = control::encode_peer(g.to, msg, &g.refs, g.port, REQ_SLOTS)?;
        self.push(&frame, Instant::now() + timeout)?;
        self.recv(reply, timeout)
    }

    /// Sends the acceptance; a reply that grants the channel names the
    /// granting domain (the backend's word), whose pages we map with
    /// gntdev and whose port we bind interdomain.
    fn peer_accept(
        &self,
        pages: usize,
        msg: &[u8],
        reply: &mut [u8],
        timeout: Duration,
    ) -> io::Result<(usize, Option<PeerEnd>)> {
        self.send(msg, &[], timeout)?;
        let frame = self.recv_frame(timeout)?;
        if frame.kind == FrameKind::Data && frame.res.is_empty() {
            return Ok((copy_body(&frame.body, reply)?, None));
        }
        let Some(p) = frame.peer() else {
            return Err(unexpected());
        };
        let n = copy_body(p.msg, reply)?;
        if p.refs.len() != pages {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer channel of {} pages, {pages} expected", p.refs.len()),
            ));
        }
        let mem = MappedGrants::map(p.domid, p.refs).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot map the peer channel of domain {}: {e}", p.domid),
            )
        })?;
        let ev = XenEvent::bind_interdomain(p.domid, p.port).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot bind port {} of domain {}: {e}", p.port, p.domid),
            )
        })?;
        Ok((
            n,
            Some(PeerEnd {
                mem: Arc::new(mem),
                bell: Box::new(XenBell::new(ev)),
            }),
        ))
    }
}

impl Drop for XenLink {
    /// Closing (5), wait for the backend to unmap (Closed), Closed (6);
    /// the grants and the port are released after (field drops).
    fn drop(&mut self) {
        let fe_state = format!("{}/state", self.fe);
        let be_state = format!("{}/state", self.be);
        let _ = xenbus::switch_state(
            &self.xs,
            End::Frontend,
            &fe_state,
            XenbusState::Connected,
            XenbusState::Closing,
        );
        let _ = wait_state(&self.xs, &be_state, Instant::now() + DETACH_WAIT, |s| {
            matches!(s, None | Some(XenbusState::Closed | XenbusState::InitWait)).then_some(Ok(()))
        });
        let _ = xenbus::switch_state(
            &self.xs,
            End::Frontend,
            &fe_state,
            XenbusState::Closing,
            XenbusState::Closed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_follows_the_grant_limit() {
        assert_eq!(default_pool_pages(None), DEFAULT_POOL_PAGES);
        assert_eq!(default_pool_pages(Some(1024)), DEFAULT_POOL_PAGES);
        assert_eq!(default_pool_pages(Some(8192)), 1024);
        assert_eq!(default_pool_pages(Some(65536)), MAX_DEFAULT_POOL_PAGES);
    }
}
