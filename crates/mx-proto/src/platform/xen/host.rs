//! The host side: watch xenstore for `mx` devices, connect the frontends
//! that publish their control ring, serve their control frames, and clean
//! up when they close or their domain dies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::control::{self, CtlSlot, FrameKind, ResDesc, RING_REQ, RING_RSP, RSP_SLOTS};
use super::sys::{PortStatus, Privcmd};
use super::xenbus::{self, End, XenbusState};
use super::xenstore::{Xenstore, NO_TX};
use super::{stats, DomId, GrantRef, MappedGrants, XenEvent, XenHost, XenPeerGrant};
use crate::platform::{
    copy_shared, CopyFault, EventChannel, GuestConn, GuestListener, GuestMemory, Incoming,
    Interest, PeerGrant, PeerRemote, Poller, ReceivedResources, ResourceKind, SharedMem, Wakeup,
    MAX_CONTROL_MSG,
};
use crate::ring::{Consumer, ControlPage, Producer, Side};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// How a Xen backend listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenHostConfig {
    /// Create `device/mx/<n>` and `backend/mx/<domid>/<n>` for every domain
    /// (watching `@introduceDomain`); off when a toolstack script does it.
    pub create_devices: bool,
    /// Device slots (attached guest processes) per domain.
    pub slots: u32,
    /// Largest bulk-copy pool a guest may offer, in pages.
    pub max_pool_pages: usize,
}

impl Default for XenHostConfig {
    /// Create 32 slots per domain (each process's endpoint attaches on its
    /// own: a guest running many MPI ranks needs as many); pools up to
    /// 16384 pages (64 MiB).
    fn default() -> Self {
        XenHostConfig {
            create_devices: true,
            slots: 32,
            max_pool_pages: 16384,
        }
    }
}

/// Who a Xen guest is: its domain (from the xenstore path the backend
/// owns) and the device slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XenGuestId {
    /// The guest's domain id.
    pub domid: DomId,
    /// The `mx/<n>` device slot.
    pub device: u32,
}

impl fmt::Display for XenGuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domid {} (mx/{})", self.domid, self.device)
    }
}

/// What the listener and a connection share.
#[derive(Debug)]
struct ConnShared {
    /// The listener saw the frontend close or the domain die.
    closed: AtomicBool,
    /// The backend dropped the connection.
    dropped: AtomicBool,
    /// Makes the connection's descriptor readable when `closed` is set.
    signal: Wakeup,
    /// `EVTCHNOP_status` failed once (said once, not every sweep).
    status_failed: AtomicBool,
}

/// One tracked device.
#[derive(Debug)]
struct Dev {
    fe: String,
    be: String,
    conn: Option<Arc<ConnShared>>,
}

#[derive(Debug, Default)]
struct ListenState {
    devices: HashMap<(DomId, u32), Dev>,
    domains: HashSet<DomId>,
    ready: VecDeque<XenConn>,
}

const TOKEN_INTRO: &str = "intro";
const TOKEN_RELEASE: &str = "release";
const TOKEN_BACKEND: &str = "backend";

/// A Xen backend's listener: a xenstore connection watching for devices.
///
/// Its descriptor is readable when xenstore has news (a device appeared or
/// changed state, a domain came or went); [`accept`](GuestListener::accept)
/// processes all of it and returns the frontends that finished the
/// handshake.
pub struct XenListener {
    watch: Xenstore,
    xs: Arc<Xenstore>,
    cfg: XenHostConfig,
    me: DomId,
    base: String,
    state: Mutex<ListenState>,
    /// Asks Xen whether a frontend's event channel is still bound
    /// ([`GuestConn::gone`]); `None` where privcmd cannot be opened.
    privcmd: Option<Arc<Mutex<Privcmd>>>,
}

impl fmt::Debug for XenListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenListener")
            .field("base", &self.base)
            .finish()
    }
}

impl XenListener {
    /// Connects to xenstore, watches `backend/mx`, `@introduceDomain` and
    /// `@releaseDomain`, and creates the device directories of the domains
    /// already running (if configured to).
    ///
    /// # Errors
    /// An OS error if xenstore cannot be reached (not in a Xen domain).
    pub fn listen(cfg: &XenHostConfig) -> io::Result<Self> {
        let xs = Arc::new(Xenstore::open()?);
        let watch = Xenstore::open()?;
        let me: DomId = xs
            .read_opt(NO_TX, "domid")?
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let base = format!("{}/backend/{}", xs.domain_path(me)?, xenbus::DEVICE_TYPE);
        let privcmd = match Privcmd::open() {
            Ok(p) => Some(Arc::new(Mutex::new(p))),
            Err(e) => {
                warn!("cannot open privcmd ({e}): a guest process that exits without detaching keeps its endpoints until its domain goes");
                None
            }
        };
        let l = XenListener {
            watch,
            xs,
            cfg: cfg.clone(),
            me,
            base,
            state: Mutex::new(ListenState::default()),
            privcmd,
        };
        l.watch.watch("@introduceDomain", TOKEN_INTRO)?;
        l.watch.watch("@releaseDomain", TOKEN_RELEASE)?;
        l.watch.watch(&l.base, TOKEN_BACKEND)?;
        info!(base = %l.base, domid = me, create_devices = cfg.create_devices, slots = cfg.slots, "xen backend listening");
        Ok(l)
    }

    /// The backend's own domain.
    pub fn domid(&self) -> DomId {
        self.me
    }

    fn handle(&self, st: &mut ListenState, token: &str, path: &str) {
        match token {
            TOKEN_INTRO => self.scan_domains(st),
            TOKEN_RELEASE => self.reap_domains(st),
            TOKEN_BACKEND => {
                let rest = path.strip_prefix(&self.base).unwrap_or("");
                let mut parts = rest.trim_start_matches('/').split('/');
                match (
                    parts.next().and_then(|d| d.parse::<DomId>().ok()),
                    parts.next().and_then(|n| n.parse::<u32>().ok()),
                ) {
                    (Some(d), Some(n)) => self.evaluate(st, d, n),
                    _ => self.scan_devices(st),
                }
            }
            t => {
                let mut p = t.split(':');
                if let (Some("fe"), Some(d), Some(n)) = (p.next(), p.next(), p.next()) {
                    if let (Ok(d), Ok(n)) = (d.parse(), n.parse()) {
                        self.evaluate(st, d, n);
                    }
                }
            }
        }
    }

    /// Creates the devices of domains not seen yet.
    fn scan_domains(&self, st: &mut ListenState) {
        let Ok(doms) = self.xs.directory(NO_TX, "/local/domain") else {
            return;
        };
        for d in doms.iter().filter_map(|d| d.parse::<DomId>().ok()) {
            if d == self.me || !st.domains.insert(d) {
                continue;
            }
            if self.cfg.create_devices {
                match xenbus::create_devices(&self.xs, self.me, d, self.cfg.slots) {
                    Ok(0) => {}
                    Ok(k) => info!(domid = d, devices = k, "created mx device slots"),
                    Err(e) => warn!(domid = d, "cannot create mx devices: {e}"),
                }
            }
        }
        self.scan_devices(st);
    }

    /// Tracks every device under `backend/mx`.
    fn scan_devices(&self, st: &mut ListenState) {
        let Ok(doms) = self.xs.directory(NO_TX, &self.base) else {
            return;
        };
        for d in doms.iter().filter_map(|d| d.parse::<DomId>().ok()) {
            let Ok(devs) = self.xs.directory(NO_TX, &format!("{}/{d}", self.base)) else {
                continue;
            };
            for n in devs.iter().filter_map(|n| n.parse::<u32>().ok()) {
                self.evaluate(st, d, n);
            }
        }
    }

    /// Domains xenstored forgot are dead: close their connections and
    /// remove their backend directories.
    fn reap_domains(&self, st: &mut ListenState) {
        let mut doms: HashSet<DomId> = st.domains.clone();
        doms.extend(st.devices.keys().map(|k| k.0));
        for d in doms {
            if self.xs.is_domain_introduced(d).unwrap_or(true) {
                continue;
            }
            let keys: Vec<_> = st.devices.keys().filter(|k| k.0 == d).copied().collect();
            for k in keys {
                if let Some(dev) = st.devices.remove(&k) {
                    let _ = self.watch.unwatch(&dev.fe, &format!("fe:{}:{}", k.0, k.1));
                    if let Some(c) = dev.conn {
                        c.closed.store(true, Ordering::Release);
                        let _ = c.signal.wake();
                    }
                }
            }
            let _ = self.xs.rm(NO_TX, &format!("{}/{d}", self.base));
            st.domains.remove(&d);
            let (g, m, p) = stats::snapshot();
            info!(
                domid = d,
                mapped_pages = m,
                bound_ports = p,
                granted_pages = g,
                "domain gone: mx devices removed"
            );
        }
    }

    /// Moves device `(d, n)` along the backend's state machine.
    fn evaluate(&self, st: &mut ListenState, d: DomId, n: u32) {
        if let Err(e) = self.evaluate_inner(st, d, n) {
            debug!(domid = d, device = n, "device evaluation: {e}");
        }
    }

    fn evaluate_inner(&self, st: &mut ListenState, d: DomId, n: u32) -> io::Result<()> {
        let be = format!("{}/{d}/{n}", self.base);
        let be_state_path = format!("{be}/state");
        let Some(be_state) = xenbus::read_state(&self.xs, &be_state_path)? else {
            // Our directory is gone (removed by a toolstack): forget it.
            if let Some(dev) = st.devices.remove(&(d, n)) {
                let _ = self.watch.unwatch(&dev.fe, &format!("fe:{d}:{n}"));
                if let Some(c) = dev.conn {
                    c.closed.store(true, Ordering::Release);
                    let _ = c.signal.wake();
                }
            }
            return Ok(());
        };
        if !st.devices.contains_key(&(d, n)) {
            let fe = self.xs.read(NO_TX, &format!("{be}/frontend"))?;
            if !fe.starts_with(&format!("/local/domain/{d}/")) {
                return Err(invalid(format!("{be}/frontend points outside domain {d}")));
            }
            self.watch.watch(&fe, &format!("fe:{d}:{n}"))?;
            st.domains.insert(d);
            st.devices.insert(
                (d, n),
                Dev {
                    fe,
                    be: be.clone(),
                    conn: None,
                },
            );
        }
        let dev = st.devices.get_mut(&(d, n)).expect("inserted above");
        let fe_state = match xenbus::read_state(&self.xs, &format!("{}/state", dev.fe)) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Some(XenbusState::Closing),
            Err(e) => return Err(e),
        };
        if let Some(c) = &dev.conn {
            if !c.dropped.load(Ordering::Acquire) {
                // Live: the frontend leaving Connected closes it.
                if !matches!(
                    fe_state,
                    Some(XenbusState::Connected | XenbusState::Initialised)
                ) {
                    c.closed.store(true, Ordering::Release);
                    let _ = c.signal.wake();
                }
                return Ok(());
            }
            dev.conn = None;
        }
        let to = |s: XenbusState| {
            xenbus::switch_state(&self.xs, End::Backend, &be_state_path, be_state, s)
        };
        match fe_state {
            None => {} // the domain is going away; @releaseDomain cleans up
            Some(XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown)
                if be_state != XenbusState::InitWait =>
            {
                let _ = self.xs.rm(NO_TX, &format!("{be}/error"));
                to(XenbusState::InitWait)?;
            }
            Some(XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown) => {}
            Some(XenbusState::Initialised) if be_state == XenbusState::InitWait => {
                match self.connect(d, n, &dev.fe, &be) {
                    Ok(conn) => {
                        dev.conn = Some(conn.shared.clone());
                        to(XenbusState::Connected)?;
                        info!(guest = %conn.id, port = conn.event.port(), "xen frontend connected");
                        st.ready.push_back(conn);
                    }
                    Err(e) => {
                        warn!(domid = d, device = n, "refusing frontend: {e}");
                        let _ = self.xs.write(NO_TX, &format!("{be}/error"), &e.to_string());
                        to(XenbusState::Closed)?;
                    }
                }
            }
            // Connected without a connection of ours (we restarted), or
            // Closing: tell the frontend we are not serving it.
            Some(_) if be_state != XenbusState::Closed => to(XenbusState::Closed)?,
            Some(_) => {}
        }
        Ok(())
    }

    /// Maps the control ring the frontend published and binds its port.
    fn connect(&self, d: DomId, n: u32, fe: &str, be: &str) -> io::Result<XenConn> {
        let read_num = |key: &str| -> io::Result<u32> {
            self.xs
                .read(NO_TX, &format!("{fe}/{key}"))?
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad {key}")))
        };
        let pages = read_num("num-ring-pages")? as usize;
        if pages != control::region_pages() {
            return Err(invalid(format!(
                "{pages} control pages, expected {}",
                control::region_pages()
            )));
        }
        let refs = (0..pages)
            .map(|i| read_num(&format!("ring-ref{i}")))
            .collect::<io::Result<Vec<GrantRef>>>()?;
        let port = read_num("event-channel")?;
        let ctrl = Arc::new(
            MappedGrants::map(d, &refs)
                .map_err(|e| invalid(format!("cannot map the control ring: {e}")))?,
        );
        let page = ControlPage::attach(ctrl.clone(), &control::layout(), Side::Backend)
            .map_err(|e| invalid(format!("bad control page: {e:?}")))?;
        let req = page
            .consumer::<CtlSlot>(RING_REQ)
            .map_err(|e| invalid(format!("{e:?}")))?;
        let rsp = page
            .producer::<CtlSlot>(RING_RSP)
            .map_err(|e| invalid(format!("{e:?}")))?;
        let event = XenEvent::bind_interdomain(d, port)
            .map_err(|e| invalid(format!("cannot bind port {port}: {e}")))?;
        let shared = Arc::new(ConnShared {
            closed: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            signal: Wakeup::new()?,
            status_failed: AtomicBool::new(false),
        });
        if let Some(p) = &self.privcmd {
            match lock(p).port_status(event.port()) {
                Ok(st) => {
                    debug!(domid = d, device = n, port = event.port(), status = ?st, "event channel bound")
                }
                Err(e) => warn!(
                    domid = d,
                    "cannot ask Xen for an event channel's status: {e}"
                ),
            }
        }
        let poll = Poller::new()?;
        poll.add(event.as_fd(), 0, Interest::READABLE)?;
        poll.add(shared.signal.as_fd(), 1, Interest::READABLE)?;
        Ok(XenConn {
            id: XenGuestId {
                domid: d,
                device: n,
            },
            req: Mutex::new(req),
            rsp: Mutex::new(rsp),
            event,
            poll,
            shared,
            memory: XenMemory::new(d),
            xs: self.xs.clone(),
            be: be.to_string(),
            max_pool_pages: self.cfg.max_pool_pages,
            privcmd: self.privcmd.clone(),
        })
    }
}

impl AsFd for XenListener {
    /// The watch connection: readable when xenstore has news.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.watch.as_fd()
    }
}

impl GuestListener<XenHost> for XenListener {
    fn accept(&self) -> io::Result<Option<XenConn>> {
        let mut st = lock(&self.state);
        while let Some(ev) = self.watch.next_watch(Duration::ZERO)? {
            self.handle(&mut st, &ev.token, &ev.path);
        }
        Ok(st.ready.pop_front())
    }
}

impl Drop for XenListener {
    /// Tells every frontend the backend is gone (state Closed).
    fn drop(&mut self) {
        let st = lock(&self.state);
        for dev in st.devices.values() {
            let path = format!("{}/state", dev.be);
            let _ = self.xs.write(NO_TX, &path, XenbusState::Closed.as_str());
        }
    }
}

/// The host's connection to one frontend: its control ring and port.
///
/// Its descriptor (an epoll set of the port and a close signal) is readable
/// when the guest sent a frame or the listener saw the guest go. Dropping it
/// unmaps the control ring and the pool, unbinds the port and moves the
/// device to Closed.
pub struct XenConn {
    id: XenGuestId,
    req: Mutex<Consumer<CtlSlot, Arc<MappedGrants>>>,
    rsp: Mutex<Producer<CtlSlot, Arc<MappedGrants>>>,
    event: XenEvent,
    poll: Poller,
    shared: Arc<ConnShared>,
    memory: XenMemory,
    xs: Arc<Xenstore>,
    be: String,
    max_pool_pages: usize,
    privcmd: Option<Arc<Mutex<Privcmd>>>,
}

impl fmt::Debug for XenConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenConn").field("id", &self.id).finish()
    }
}

impl AsFd for XenConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}

impl GuestConn<XenHost> for XenConn {
    fn guest_id(&self) -> XenGuestId {
        self.id
    }

    fn principal(&self) -> u64 {
        (1 << 32) | u64::from(self.id.domid)
    }

    fn is_privileged(&self) -> bool {
        // A domain's root is not Dom0's administrator: a guest never gets
        // privileged access by platform identity (the backend's policy may
        // still admit it explicitly).
        false
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Incoming<XenResources>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(Incoming::Closed);
        }
        self.event.consume()?;
        let mut req = lock(&self.req);
        loop {
            let Some(raw) = control::pop_frame(&mut req)? else {
                if req.prepare_to_sleep().map_err(|e| invalid(e.to_string()))? {
                    return Ok(Incoming::Empty);
                }
                continue;
            };
            let _ = req.release();
            let frame = control::decode(&raw)?;
            match frame.kind {
                FrameKind::Pool => {
                    let Some(ResDesc::Pages(refs)) = frame.res.first() else {
                        return Err(invalid("malformed pool frame"));
                    };
                    if refs.len() > self.max_pool_pages {
                        return Err(invalid(format!(
                            "pool of {} pages exceeds the limit of {}",
                            refs.len(),
                            self.max_pool_pages
                        )));
                    }
                    let pool = MappedGrants::map(self.id.domid, refs)
                        .map_err(|e| invalid(format!("cannot map the pool: {e}")))?;
                    info!(guest = %self.id, pages = refs.len(), "pool mapped");
                    self.memory.install(pool);
                }
                FrameKind::Data => {
                    if frame.body.len() > buf.len() {
                        return Err(invalid("control message larger than the buffer"));
                    }
                    buf[..frame.body.len()].copy_from_slice(&frame.body);
                    return Ok(Incoming::Request {
                        len: frame.body.len(),
                        resources: XenResources {
                            domid: self.id.domid,
                            peer_to: None,
                            slots: frame.res.into_iter().map(Some).collect(),
                        },
                    });
                }
                FrameKind::Peer => {
                    let Some(p) = frame.peer() else {
                        return Err(invalid("malformed peer frame"));
                    };
                    if p.msg.len() > buf.len() {
                        return Err(invalid("control message larger than the buffer"));
                    }
                    buf[..p.msg.len()].copy_from_slice(p.msg);
                    let (len, peer_to) = (p.msg.len(), p.domid);
                    return Ok(Incoming::Request {
                        len,
                        resources: XenResources {
                            domid: self.id.domid,
                            peer_to: Some(peer_to),
                            slots: frame.res.into_iter().map(Some).collect(),
                        },
                    });
                }
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        if msg.len() > MAX_CONTROL_MSG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control message too long",
            ));
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        let frame = control::encode(FrameKind::Data, msg, &[], RSP_SLOTS)?;
        if control::push_frame(&mut lock(&self.rsp), &frame)?.is_needed() {
            self.event.notify()?;
        }
        Ok(())
    }

    fn memory(&self) -> XenMemory {
        self.memory.clone()
    }

    /// The guest process bound its port to ours; when it exits, its
    /// descriptor's ports are closed and ours reverts to unbound, which is
    /// all the hypervisor says (no notification, no error on notify).
    fn gone(&self) -> bool {
        let Some(p) = &self.privcmd else {
            return false;
        };
        match lock(p).port_status(self.event.port()) {
            Ok(PortStatus::Interdomain { dom, .. }) => dom != self.id.domid,
            Ok(st) => {
                info!(guest = %self.id, port = self.event.port(), status = ?st, "the guest's end of the event channel is gone");
                true
            }
            Err(e) => {
                if !self.shared.status_failed.swap(true, Ordering::Relaxed) {
                    warn!(guest = %self.id, "cannot ask Xen for the event channel's status: {e}");
                }
                false
            }
        }
    }

    fn peer_domain(&self) -> Option<u32> {
        Some(u32::from(self.id.domid))
    }

    /// The acceptance's reply as a peer frame naming the granting domain:
    /// the numbers go to the acceptor, which maps and binds them itself.
    fn send_peer(&self, msg: &[u8], grant: PeerGrant) -> io::Result<()> {
        let PeerGrant(PeerRemote::Xen(g)) = grant else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a Xen peer channel",
            ));
        };
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        let frame = control::encode_peer(g.from, msg, &g.refs, g.port, RSP_SLOTS)?;
        if control::push_frame(&mut lock(&self.rsp), &frame)?.is_needed() {
            self.event.notify()?;
        }
        Ok(())
    }
}

impl Drop for XenConn {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.memory.revoke();
        // Closed, unless our directory is already gone (domain reaped).
        let path = format!("{}/state", self.be);
        let _ = self.xs.transaction(|tx| {
            if self.xs.read_opt(tx, &path)?.is_some() {
                self.xs.write(tx, &path, XenbusState::Closed.as_str())?;
            }
            Ok(())
        });
        let (g, m, p) = stats::snapshot();
        info!(guest = %self.id, mapped_pages = m, bound_ports = p, granted_pages = g, "xen frontend released (counts before this connection's own ring and port go)");
    }
}

/// Resources received with one request: grant references and ports, not
/// yet mapped or bound. Nothing to release for slots not taken.
#[derive(Debug)]
pub struct XenResources {
    domid: DomId,
    /// A peer frame's grantee (what the guest says it granted to).
    peer_to: Option<DomId>,
    slots: Vec<Option<ResDesc>>,
}

impl XenResources {
    /// The grant references of pages slot `slot`, without taking it (to
    /// grant-copy them instead of mapping them); `None` if it is not a
    /// pages slot or was taken.
    pub fn refs(&self, slot: usize) -> Option<&[GrantRef]> {
        match self.slots.get(slot)? {
            Some(ResDesc::Pages(r)) => Some(r),
            _ => None,
        }
    }

    fn take(&mut self, slot: usize, kind: ResourceKind) -> io::Result<ResDesc> {
        let cell = self
            .slots
            .get_mut(slot)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such resource slot"))?;
        let ok = match cell {
            Some(ResDesc::Pages(_)) => kind == ResourceKind::Pages,
            Some(ResDesc::Event(_)) => kind == ResourceKind::Event,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "resource slot already taken",
                ))
            }
        };
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "resource slot has another kind",
            ));
        }
        Ok(cell.take().expect("slot checked to be full"))
    }
}

impl ReceivedResources<XenHost> for XenResources {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn kind(&self, slot: usize) -> Option<ResourceKind> {
        match self.slots.get(slot)? {
            Some(ResDesc::Pages(_)) => Some(ResourceKind::Pages),
            Some(ResDesc::Event(_)) => Some(ResourceKind::Event),
            None => None,
        }
    }

    fn take_pages(&mut self, slot: usize, expected_pages: usize) -> io::Result<MappedGrants> {
        match self.take(slot, ResourceKind::Pages)? {
            ResDesc::Pages(refs) => {
                if refs.len() != expected_pages {
                    return Err(invalid(format!(
                        "{} pages offered, {expected_pages} expected",
                        refs.len()
                    )));
                }
                MappedGrants::map(self.domid, &refs)
                    .map_err(|e| invalid(format!("cannot map the guest's pages: {e}")))
            }
            ResDesc::Event(_) => unreachable!("kind checked by take"),
        }
    }

    fn take_event(&mut self, slot: usize) -> io::Result<XenEvent> {
        match self.take(slot, ResourceKind::Event)? {
            ResDesc::Event(port) => XenEvent::bind_interdomain(self.domid, port)
                .map_err(|e| invalid(format!("cannot bind the guest's port {port}: {e}"))),
            ResDesc::Pages(_) => unreachable!("kind checked by take"),
        }
    }

    /// A peer frame's hand-over: slot 0 the pages (exactly `pages`
    /// references), slot 1 the port. Nothing is mapped or bound here (the
    /// pages are granted to the other guest, not to us); the granting
    /// domain is the sender's, from its device path.
    fn take_peer(&mut self, pages: usize) -> io::Result<PeerGrant> {
        let to = self
            .peer_to
            .ok_or_else(|| invalid("a peer channel needs a peer frame"))?;
        if self.slots.len() != 2 {
            return Err(invalid("a peer channel is two resources"));
        }
        let ResDesc::Pages(refs) = self.take(0, ResourceKind::Pages)? else {
            unreachable!("kind checked by take")
        };
        let ResDesc::Event(port) = self.take(1, ResourceKind::Event)? else {
            unreachable!("kind checked by take")
        };
        if refs.len() != pages {
            return Err(invalid(format!(
                "{} pages offered, {pages} expected",
                refs.len()
            )));
        }
        Ok(PeerGrant(PeerRemote::Xen(XenPeerGrant {
            from: self.domid,
            to,
            refs,
            port,
        })))
    }
}

// --------------------------------------------------------------- bulk copy ---

/// A reference to guest memory on Xen: `len` bytes at `offset` in the
/// guest's bulk-copy pool (what the guest wrote into its
/// [`XenLink::pool`](super::XenLink::pool)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XenRegion {
    /// Byte offset in the pool.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl XenRegion {
    /// A region from its offset and length.
    pub fn new(offset: u64, len: u64) -> Self {
        XenRegion { offset, len }
    }
}

/// Something that names `(offset, len)` in a pool: a [`XenRegion`], or the
/// platform-neutral range the `auto` platform uses.
pub(crate) trait Span: Copy {
    fn span(&self) -> (u64, u64);
}

impl Span for XenRegion {
    fn span(&self) -> (u64, u64) {
        (self.offset, self.len)
    }
}

impl Span for crate::platform::local::GuestRange {
    fn span(&self) -> (u64, u64) {
        (self.addr, self.len)
    }
}

/// Bulk access to one guest's pool, mapped once when the guest attached.
/// Clones share it. After the guest detached every copy fails with `ESRCH`
/// (and the pool is unmapped, so a dying domain's memory can be freed);
/// before it offered a pool, with `EFAULT`.
#[derive(Debug, Clone)]
pub struct XenMemory {
    domid: DomId,
    pool: Arc<RwLock<Option<Arc<MappedGrants>>>>,
    revoked: Arc<AtomicBool>,
}

impl XenMemory {
    fn new(domid: DomId) -> Self {
        XenMemory {
            domid,
            pool: Arc::new(RwLock::new(None)),
            revoked: Arc::new(AtomicBool::new(false)),
        }
    }

    fn install(&self, pool: MappedGrants) {
        *self.pool.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(pool));
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        *self.pool.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The guest's domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Size of the guest's pool in bytes (0 without one).
    pub fn pool_len(&self) -> usize {
        self.pool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |p| p.len())
    }

    pub(crate) fn total<S: Span>(segments: &[S]) -> io::Result<u64> {
        segments
            .iter()
            .try_fold(0u64, |a, s| a.checked_add(s.span().1))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "segment lengths overflow"))
    }

    /// Runs `op(pool, pool_offset, buf_offset, n)` over `len` bytes starting
    /// `offset` bytes into the concatenation of `segments`.
    fn transfer<S: Span>(
        &self,
        segments: &[S],
        offset: u64,
        len: usize,
        op: impl FnMut(&MappedGrants, usize, usize, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let total = Self::total(segments)?;
        match offset.checked_add(len as u64) {
            Some(end) if end <= total => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "copy range outside the guest segments",
                ))
            }
        }
        if len == 0 {
            return Ok(());
        }
        let pool = self.mapped()?;
        Self::walk(&pool, segments, offset, len, op)
    }

    /// The guest's mapped pool (held by the caller for one copy, so that a
    /// concurrent revoke cannot unmap it mid-copy).
    fn mapped(&self) -> io::Result<Arc<MappedGrants>> {
        let guard = self.pool.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| {
            let errno = if self.revoked.load(Ordering::Acquire) {
                libc::ESRCH
            } else {
                libc::EFAULT
            };
            io::Error::from_raw_os_error(errno)
        })
    }

    /// The segment walk of [`transfer`](Self::transfer) over a pool the
    /// caller holds; `offset + len` is within the segments.
    fn walk<S: Span>(
        pool: &MappedGrants,
        segments: &[S],
        offset: u64,
        len: usize,
        mut op: impl FnMut(&MappedGrants, usize, usize, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut skip = offset;
        let mut done = 0usize;
        for s in segments {
            let (start, slen) = s.span();
            if skip >= slen {
                skip -= slen;
                continue;
            }
            let n = ((slen - skip) as u128).min((len - done) as u128) as usize;
            let at = start
                .checked_add(skip)
                .and_then(|a| usize::try_from(a).ok())
                .filter(|&a| pool.check_range(a, n).is_ok())
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
            op(pool, at, done, n)?;
            done += n;
            skip = 0;
            if done == len {
                break;
            }
        }
        Ok(())
    }

    /// [`GuestMemory::copy_to`] over any span type: one copy, straight
    /// from this guest's mapped pool into `to`'s.
    pub(crate) fn copy_spans_to<S: Span>(
        &self,
        src: &[S],
        to: &XenMemory,
        dst: &[S],
        len: u64,
    ) -> Result<(), CopyFault> {
        let fits = |segs: &[S]| match Self::total(segs) {
            Ok(t) if t >= len => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "copy range outside the guest segments",
            )),
            Err(e) => Err(e),
        };
        fits(src).map_err(CopyFault::Source)?;
        fits(dst).map_err(CopyFault::Destination)?;
        let len = usize::try_from(len)
            .map_err(|_| CopyFault::Source(io::Error::from(io::ErrorKind::InvalidInput)))?;
        if len == 0 {
            return Ok(());
        }
        let sp = self.mapped().map_err(CopyFault::Source)?;
        let dp = to.mapped().map_err(CopyFault::Destination)?;
        let mut dst_failed = false;
        Self::walk(&sp, src, 0, len, |spool, sat, done, n| {
            Self::walk(&dp, dst, done as u64, n, |dpool, dat, d2, m| {
                copy_shared(spool, sat + d2, dpool, dat, m).map_err(io::Error::from)
            })
            .inspect_err(|_| dst_failed = true)
        })
        .map_err(|e| {
            if dst_failed {
                CopyFault::Destination(e)
            } else {
                CopyFault::Source(e)
            }
        })
    }

    /// [`GuestMemory::read`] over any span type.
    pub(crate) fn read_spans<S: Span>(
        &self,
        segments: &[S],
        offset: u64,
        dst: &mut [u8],
    ) -> io::Result<()> {
        let len = dst.len();
        self.transfer(segments, offset, len, |pool, at, done, n| {
            pool.read_at(at, &mut dst[done..done + n])
                .map_err(io::Error::from)
        })
    }

    /// [`GuestMemory::write`] over any span type.
    pub(crate) fn write_spans<S: Span>(
        &self,
        segments: &[S],
        offset: u64,
        src: &[u8],
    ) -> io::Result<()> {
        self.transfer(segments, offset, src.len(), |pool, at, done, n| {
            pool.write_at(at, &src[done..done + n])
                .map_err(io::Error::from)
        })
    }
}

impl GuestMemory for XenMemory {
    type Region = XenRegion;

    fn total_len(segments: &[XenRegion]) -> io::Result<u64> {
        Self::total(segments)
    }

    fn read(&self, segments: &[XenRegion], offset: u64, dst: &mut [u8]) -> io::Result<()> {
        self.read_spans(segments, offset, dst)
    }

    fn write(&self, segments: &[XenRegion], offset: u64, src: &[u8]) -> io::Result<()> {
        self.write_spans(segments, offset, src)
    }

    fn copy_to(
        &self,
        src: &[XenRegion],
        to: &Self,
        dst: &[XenRegion],
        len: u64,
        _bounce: &mut [u8],
    ) -> Result<(), CopyFault> {
        self.copy_spans_to(src, to, dst, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_without_a_pool_faults_and_after_revoke_is_gone() {
        let m = XenMemory::new(3);
        assert_eq!(m.domid(), 3);
        assert_eq!(m.pool_len(), 0);
        let mut b = [0u8; 4];
        let r = [XenRegion::new(0, 4)];
        assert_eq!(
            m.read(&r, 0, &mut b).unwrap_err().raw_os_error(),
            Some(libc::EFAULT)
        );
        assert_eq!(
            m.read(&r, 1, &mut b).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        m.read(&r, 4, &mut []).unwrap();
        m.revoke();
        assert_eq!(
            m.clone().write(&r, 0, &b).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
        assert!(
            XenMemory::total_len(&[XenRegion::new(0, u64::MAX), XenRegion::new(0, 1)]).is_err()
        );
    }

    #[test]
    fn pool_to_pool_copy_says_which_side_failed() {
        let (a, b) = (XenMemory::new(3), XenMemory::new(4));
        let r = [XenRegion::new(0, 8)];
        let short = [XenRegion::new(0, 4)];
        let side = |res: Result<(), CopyFault>| match res {
            Err(CopyFault::Source(e)) => ("source", e.kind(), e.raw_os_error()),
            Err(CopyFault::Destination(e)) => ("destination", e.kind(), e.raw_os_error()),
            Ok(()) => panic!("copied without pools"),
        };
        assert_eq!(
            side(a.copy_spans_to(&r, &b, &short, 8)).0,
            "destination",
            "a destination shorter than the copy"
        );
        assert_eq!(side(a.copy_spans_to(&short, &b, &r, 8)).0, "source");
        assert_eq!(side(a.copy_spans_to(&r, &b, &r, 8)).2, Some(libc::EFAULT));
        b.revoke();
        // the source has no pool yet: its fault comes first
        assert_eq!(side(a.copy_spans_to(&r, &b, &r, 8)).0, "source");
        a.copy_spans_to(&r, &b, &r, 0).expect("nothing to copy");
    }

    #[test]
    fn a_peer_hand_over_is_checked_without_mapping_and_names_the_sender() {
        let res = |peer_to, slots: Vec<ResDesc>| XenResources {
            domid: 3,
            peer_to,
            slots: slots.into_iter().map(Some).collect(),
        };
        let two = || vec![ResDesc::Pages(vec![10, 11, 12]), ResDesc::Event(40)];
        let g = res(Some(4), two()).take_peer(3).unwrap();
        // the granter is the sender's domain, whatever the guest wrote
        assert_eq!(g.domains(), Some((3, 4)));
        let PeerGrant(PeerRemote::Xen(x)) = g else {
            panic!("not a Xen grant")
        };
        assert_eq!((x.refs, x.port), (vec![10, 11, 12], 40));
        let refused = |mut r: XenResources, pages| r.take_peer(pages).unwrap_err().kind();
        assert_eq!(refused(res(Some(4), two()), 4), io::ErrorKind::InvalidData);
        assert_eq!(refused(res(None, two()), 3), io::ErrorKind::InvalidData);
        let mut three = two();
        three.push(ResDesc::Event(41));
        assert_eq!(refused(res(Some(4), three), 3), io::ErrorKind::InvalidData);
        let swapped = vec![ResDesc::Event(40), ResDesc::Pages(vec![1, 2, 3])];
        assert_eq!(
            refused(res(Some(4), swapped), 3),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn guest_ids_print() {
        let id = XenGuestId {
            domid: 5,
            device: 1,
        };
        assert_eq!(id.to_string(), "domid 5 (mx/1)");
    }
}
