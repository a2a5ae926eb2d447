//! The local platform across real process boundaries.
//!
//! Guests run in child processes: the test binary re-executes itself with
//! [`ROLE_ENV`] set, running only [`child_entry`], which plays the named
//! guest role and exits. Every wait is bounded; children are killed on drop.

use std::env;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mx_proto::platform::local::{
    GuestRange, LocalConn, LocalGuest, LocalHost, LocalHostConfig, LocalListener, LocalPlatform,
    LocalTarget, PeerCred, SocketChannel,
};
use mx_proto::platform::{
    BackendLink, EventChannel, Events, GuestConn, GuestListener, GuestMemory, GuestPlatform,
    HostPlatform, Incoming, Interest, Platform, Poller, ReceivedResources, Resource, ResourceKind,
    SharedMem, WaitOutcome, MAX_CONTROL_MSG, PAGE_SIZE,
};

const ROLE_ENV: &str = "MX_PLATFORM_TEST_ROLE";
const SOCK_ENV: &str = "MX_PLATFORM_TEST_SOCK";
const T: Duration = Duration::from_secs(10);

// ------------------------------------------------------------- harness ---

/// A child process killed and reaped on drop.
struct Guest(Child);

impl Guest {
    fn spawn(role: &str, sock: &Path) -> Guest {
        let child = Command::new(env::current_exe().unwrap())
            .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(SOCK_ENV, sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Guest(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits for the child to exit by itself; its exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sock_path(name: &str) -> PathBuf {
    let p = env::temp_dir().join(format!("mx-plat-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits (bounded) for the next request on `conn`.
fn next_incoming(
    conn: &LocalConn,
    buf: &mut [u8],
) -> Incoming<<LocalHost as HostPlatform>::Resources> {
    let poller = Poller::new().unwrap();
    poller.add(conn.as_fd(), 0, Interest::READABLE).unwrap();
    let mut ev = Events::with_capacity(1);
    let deadline = Instant::now() + T;
    loop {
        match conn.recv(buf).unwrap() {
            Incoming::Empty => {
                assert!(Instant::now() < deadline, "no request from the guest");
                poller
                    .wait(&mut ev, Some(Duration::from_millis(100)))
                    .unwrap();
            }
            other => return other,
        }
    }
}

/// Waits (bounded) for a guest to attach to `l`.
fn accept(l: &LocalListener) -> LocalConn {
    let poller = Poller::new().unwrap();
    poller.add(l.as_fd(), 0, Interest::READABLE).unwrap();
    let mut ev = Events::with_capacity(1);
    let deadline = Instant::now() + T;
    loop {
        if let Some(c) = l.accept().unwrap() {
            return c;
        }
        assert!(Instant::now() < deadline, "no guest attached");
        poller
            .wait(&mut ev, Some(Duration::from_millis(100)))
            .unwrap();
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

// --------------------------------------------------------- child roles ---

/// Entry point of the child processes; a no-op in the normal test run.
#[test]
fn child_entry() {
    let Ok(role) = env::var(ROLE_ENV) else { return };
    let target = LocalTarget::new(env::var_os(SOCK_ENV).expect("socket path"));
    let result = match role.as_str() {
        "pages" => guest_pages(&target),
        "pages_refused" => match guest_pages(&target) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            other => other.and(Err(io::Error::other("expected the backend to hang up"))),
        },
        "attach" => guest_attach(&target),
        "vm" => guest_vm(&target),
        _ => Err(io::Error::other("unknown role")),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("guest role {role} failed: {e}");
            std::process::exit(1)
        }
    }
}

fn check(cond: bool, what: &str) -> io::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(io::Error::other(what.to_string()))
    }
}

/// Offers 2 pages with a pattern, then checks what the host wrote.
fn guest_pages(target: &LocalTarget) -> io::Result<()> {
    let link = LocalGuest::attach(target, T)?;
    let pages = link.alloc_pages(2)?;
    pages.write_at(0, b"written by the guest")?;
    pages.write_at(2 * PAGE_SIZE - 4, b"tail")?;
    let mut reply = [0u8; MAX_CONTROL_MSG];
    let n = link.call(b"map these", &[Resource::Pages(&pages)], &mut reply, T)?;
    check(&reply[..n] == b"done", "reply")?;
    let mut got = [0u8; 19];
    pages.read_at(PAGE_SIZE + 1, &mut got)?;
    check(
        &got == b"written by the host",
        "host bytes not visible in the guest",
    )
}

/// Attaches with 2 page sets and an event channel, exchanges one
/// notification each way, then blocks until killed.
fn guest_attach(target: &LocalTarget) -> io::Result<()> {
    let link = LocalGuest::attach(target, T)?;
    let a = link.alloc_pages(1)?;
    let b = link.alloc_pages(4)?;
    let ev = link.alloc_event()?;
    b.write_at(3 * PAGE_SIZE, b"set b")?;
    let mut reply = [0u8; MAX_CONTROL_MSG];
    let n = link.call(
        b"open",
        &[
            Resource::Pages(&a),
            Resource::Pages(&b),
            Resource::Event(&ev),
        ],
        &mut reply,
        T,
    )?;
    check(&reply[..n] == b"opened", "reply")?;
    check(
        ev.wait(Some(T))? == WaitOutcome::Notified,
        "no notification from the host",
    )?;
    let mut got = [0u8; 5];
    a.read_at(0, &mut got)?;
    check(&got == b"ready", "host did not write page set a")?;
    ev.notify()?;
    // Hold everything until the parent kills us.
    std::thread::sleep(Duration::from_secs(60));
    Err(io::Error::other("not killed"))
}

/// Names two of its buffers by address; the host reads one and writes the other.
fn guest_vm(target: &LocalTarget) -> io::Result<()> {
    let link = LocalGuest::attach(target, T)?;
    let src: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let dst = vec![0u8; 50_000];
    let mut msg = Vec::new();
    for r in [GuestRange::of_slice(&src), GuestRange::of_slice(&dst)] {
        msg.extend_from_slice(&r.addr.to_le_bytes());
        msg.extend_from_slice(&r.len.to_le_bytes());
    }
    let mut reply = [0u8; MAX_CONTROL_MSG];
    let n = link.call(&msg, &[], &mut reply, T)?;
    check(&reply[..n] == b"copied", "reply")?;
    // The host wrote into `dst` behind the compiler's back: read it volatile.
    let seen: Vec<u8> = (0..dst.len())
        .map(|i| {
            // SAFETY: `i` is in bounds of `dst`, which is alive and not borrowed mutably.
            unsafe { std::ptr::read_volatile(dst.as_ptr().add(i)) }
        })
        .collect();
    let want: Vec<u8> = (0..dst.len()).map(|i| (i % 13) as u8 + 1).collect();
    check(seen == want, "host write not visible")?;
    // stay alive until the host has also checked the error cases
    let _ = link.recv(&mut reply, T)?;
    Ok(())
}

// ---------------------------------------------------------------- tests ---

#[test]
fn memfd_pages_offered_in_one_process_are_mapped_in_another() {
    let path = sock_path("pages");
    let l = LocalHost::listen(&LocalHostConfig::new(&path)).unwrap();
    let mut guest = Guest::spawn("pages_refused", &path);
    let conn = accept(&l);
    let mut buf = [0u8; MAX_CONTROL_MSG];
    let Incoming::Request { len, mut resources } = next_incoming(&conn, &mut buf) else {
        panic!("no request")
    };
    assert_eq!(&buf[..len], b"map these");
    assert_eq!(resources.kind(0), Some(ResourceKind::Pages));
    assert_eq!(
        resources.take_pages(0, 1).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let mut resources2 = resources; // a failed take consumes the slot
    assert!(resources2.take_pages(0, 2).is_err());

    // Hang up on it; a new guest is mapped with the right size.
    drop(conn);
    assert_eq!(guest.wait(), 0, "the guest should see its backend go away");
    let mut guest = Guest::spawn("pages", &path);
    let conn = accept(&l);
    let Incoming::Request { mut resources, .. } = next_incoming(&conn, &mut buf) else {
        panic!("no request")
    };
    let pages = resources.take_pages(0, 2).unwrap();
    assert_eq!(pages.len(), 2 * PAGE_SIZE);
    let mut got = [0u8; 20];
    pages.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"written by the guest");
    let mut tail = [0u8; 4];
    pages.read_at(2 * PAGE_SIZE - 4, &mut tail).unwrap();
    assert_eq!(&tail, b"tail");
    // bounds-checked copies reject out-of-range offsets
    assert!(pages.read_at(2 * PAGE_SIZE - 3, &mut tail).is_err());
    assert!(pages.write_at(2 * PAGE_SIZE, b"x").is_err());
    assert!(pages.write_at(usize::MAX, b"x").is_err());
    pages
        .write_at(PAGE_SIZE + 1, b"written by the host")
        .unwrap();
    conn.send(b"done").unwrap();
    assert_eq!(guest.wait(), 0, "guest check failed");
    // The host's mapping outlives the guest process.
    pages.read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"written by the guest");
    drop(l);
    assert!(!path.exists());
}

#[test]
fn rendezvous_creds_resources_notify_and_hangup() {
    const LISTENER: u64 = 1;
    const CONN: u64 = 2;
    const CHANNEL: u64 = 3;
    let path = sock_path("attach");
    let l = LocalHost::listen(&LocalHostConfig::new(&path)).unwrap();
    let poller = Poller::new().unwrap();
    poller.add(l.as_fd(), LISTENER, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(8);
    let guest = Guest::spawn("attach", &path);

    // Wait for the guest on the poller, as a backend would.
    let deadline = Instant::now() + T;
    let mut conn = None;
    let mut channel: Option<SocketChannel> = None;
    let mut pages = Vec::new();
    let mut got_notify = false;
    let mut buf = [0u8; MAX_CONTROL_MSG];
    while !got_notify {
        assert!(Instant::now() < deadline, "guest exchange timed out");
        poller
            .wait(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for e in events.iter() {
            match e.token {
                LISTENER => {
                    while let Some(c) = l.accept().unwrap() {
                        let me = PeerCred::of_current_process();
                        assert_eq!(
                            c.guest_id(),
                            PeerCred {
                                pid: guest.pid(),
                                uid: me.uid,
                                gid: me.gid
                            }
                        );
                        poller.add(c.as_fd(), CONN, Interest::READABLE).unwrap();
                        conn = Some(c);
                    }
                }
                CONN => {
                    let c = conn.as_ref().unwrap();
                    let Incoming::Request { len, mut resources } = c.recv(&mut buf).unwrap() else {
                        continue;
                    };
                    assert_eq!(&buf[..len], b"open");
                    assert_eq!(resources.len(), 3);
                    let a = resources.take_pages(0, 1).unwrap();
                    let b = resources.take_pages(1, 4).unwrap();
                    let ch = resources.take_event(2).unwrap();
                    let mut s = [0u8; 5];
                    b.read_at(3 * PAGE_SIZE, &mut s).unwrap();
                    assert_eq!(&s, b"set b");
                    poller.add(ch.as_fd(), CHANNEL, Interest::READABLE).unwrap();
                    c.send(b"opened").unwrap();
                    a.write_at(0, b"ready").unwrap();
                    ch.notify().unwrap();
                    pages.push(a);
                    pages.push(b);
                    channel = Some(ch);
                }
                CHANNEL => {
                    assert!(channel.as_ref().unwrap().consume().unwrap());
                    got_notify = true;
                }
                t => panic!("unexpected token {t}"),
            }
        }
    }

    // Kill the guest: the backend must see the hangup on its connection.
    let pid = guest.pid();
    drop(guest); // SIGKILL + reap
    let c = conn.take().unwrap();
    let deadline = Instant::now() + T;
    let mut closed = false;
    while !closed {
        assert!(Instant::now() < deadline, "hangup not seen");
        poller
            .wait(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for e in events.iter() {
            if e.token == CONN {
                assert!(e.hangup || e.readable);
                closed = matches!(c.recv(&mut buf).unwrap(), Incoming::Closed);
            }
        }
    }
    // Bulk access to a dead guest fails cleanly.
    let mem = c.memory();
    assert_eq!(mem.pid(), pid);
    assert!(!mem.is_alive());
    let e = mem
        .read(&[GuestRange::new(0x1000, 8)], 0, &mut [0u8; 8])
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    // Clean up as a backend would: deregister first, then drop.
    let ch = channel.unwrap();
    poller.delete(ch.as_fd()).unwrap();
    poller.delete(c.as_fd()).unwrap();
    drop((ch, c, pages));
    drop(l);
    assert!(!path.exists());
}

#[test]
fn process_vm_copies_to_and_from_a_guest_process() {
    let path = sock_path("vm");
    let l = LocalHost::listen(&LocalHostConfig::new(&path)).unwrap();
    let mut guest = Guest::spawn("vm", &path);
    let conn = accept(&l);
    let mut buf = [0u8; MAX_CONTROL_MSG];
    let Incoming::Request { len, resources } = next_incoming(&conn, &mut buf) else {
        panic!("no request")
    };
    assert_eq!(len, 32);
    assert!(resources.is_empty());
    let src = GuestRange::new(u64_at(&buf, 0), u64_at(&buf, 8));
    let dst = GuestRange::new(u64_at(&buf, 16), u64_at(&buf, 24));
    let mem = conn.memory();
    assert_eq!(mem.pid(), guest.pid());

    // Read the whole source in pieces, and a window as several segments.
    let mut got = vec![0u8; src.len as usize];
    mem.read(&[src], 0, &mut got[..60_000]).unwrap();
    mem.read(&[src], 60_000, &mut got[60_000..]).unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let segs: Vec<GuestRange> = (0..100)
        .map(|i| GuestRange::new(src.addr + i * 1000, 1000))
        .collect();
    let mut window = vec![0u8; 5000];
    mem.read(&segs, 70_500, &mut window).unwrap();
    assert_eq!(window, got[70_500..75_500]);

    // A write that faults part-way may have written a prefix: do it first.
    let e = mem
        .write(
            &[dst, GuestRange::new(16, 64)],
            0,
            &vec![0u8; dst.len as usize + 64],
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT));

    // Write the destination.
    let pattern: Vec<u8> = (0..dst.len as usize).map(|i| (i % 13) as u8 + 1).collect();
    mem.write(&[dst], 0, &pattern).unwrap();

    // Errors: beyond the named range, and an address the guest has not mapped.
    let e = mem.read(&[src], src.len - 1, &mut [0u8; 2]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = mem
        .read(&[GuestRange::new(8, 64)], 0, &mut [0u8; 64])
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
    let e = mem
        .write(&[GuestRange::new(16, 64)], 0, &[0u8; 64])
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT));

    conn.send(b"copied").unwrap();
    conn.send(b"bye").unwrap();
    assert_eq!(guest.wait(), 0, "guest check failed");
}

#[test]
fn poller_reports_the_channels_that_fired() {
    let pairs: Vec<(SocketChannel, SocketChannel)> =
        (0..6).map(|_| SocketChannel::pair().unwrap()).collect();
    let poller = Poller::new().unwrap();
    for (i, (_, host)) in pairs.iter().enumerate() {
        poller
            .add(host.as_fd(), 1000 + i as u64, Interest::READABLE)
            .unwrap();
    }
    let mut events = Events::with_capacity(16);
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap(),
        0
    );
    for i in [0, 2, 5] {
        pairs[i].0.notify().unwrap();
        pairs[i].0.notify().unwrap(); // coalesces
    }
    poller.wait(&mut events, Some(T)).unwrap();
    let mut fired: Vec<u64> = events.iter().map(|e| e.token).collect();
    fired.sort_unstable();
    assert_eq!(fired, [1000, 1002, 1005]);
    for t in &fired {
        assert!(pairs[(*t - 1000) as usize].1.consume().unwrap());
    }
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap(),
        0
    );
    // host -> guest does not wake the host's poller
    pairs[3].1.notify().unwrap();
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap(),
        0
    );
    assert_eq!(pairs[3].0.wait(Some(T)).unwrap(), WaitOutcome::Notified);
}

// ---------------------------------------------- generic over the platform ---

/// A backend and a frontend written only against the traits, as the real
/// ones will be: one attach, one request with pages and a channel, one
/// notification each way.
fn generic_round_trip<P: Platform>(
    target: <P::Guest as GuestPlatform>::Target,
    config: <P::Host as HostPlatform>::Config,
) {
    let listener = P::Host::listen(&config).unwrap();
    let frontend = std::thread::spawn(move || {
        let link = P::Guest::attach(&target, T).unwrap();
        let pages = link.alloc_pages(1).unwrap();
        let ev = link.alloc_event().unwrap();
        pages.write_at(8, b"generic").unwrap();
        let mut reply = [0u8; MAX_CONTROL_MSG];
        let n = link
            .call(
                &[0, 1],
                &[Resource::Pages(&pages), Resource::Event(&ev)],
                &mut reply,
                T,
            )
            .unwrap();
        assert_eq!(&reply[..n], b"ok");
        assert_eq!(ev.wait(Some(T)).unwrap(), WaitOutcome::Notified);
        ev.notify().unwrap();
        let _ = link.recv(&mut reply, T);
    });
    let poller = Poller::new().unwrap();
    poller.add(listener.as_fd(), 0, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(4);
    let deadline = Instant::now() + T;
    let conn = loop {
        if let Some(c) = listener.accept().unwrap() {
            break c;
        }
        assert!(Instant::now() < deadline);
        poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
    };
    poller.add(conn.as_fd(), 1, Interest::READABLE).unwrap();
    let mut buf = [0u8; MAX_CONTROL_MSG];
    let (len, mut res) = loop {
        match conn.recv(&mut buf).unwrap() {
            Incoming::Request { len, resources } => break (len, resources),
            Incoming::Empty => {
                assert!(Instant::now() < deadline);
                poller
                    .wait(&mut events, Some(Duration::from_millis(100)))
                    .unwrap();
            }
            Incoming::Closed => panic!("guest left"),
        }
    };
    // The message names slots: [pages slot, event slot].
    let pages = res.take_pages(buf[0] as usize, 1).unwrap();
    let ch = res.take_event(buf[1] as usize).unwrap();
    assert_eq!(len, 2);
    let mut s = [0u8; 7];
    pages.read_at(8, &mut s).unwrap();
    assert_eq!(&s, b"generic");
    conn.send(b"ok").unwrap();
    ch.notify().unwrap();
    assert_eq!(ch.wait(Some(T)).unwrap(), WaitOutcome::Notified);
    conn.send(b"bye").unwrap();
    frontend.join().unwrap();
    poller.delete(conn.as_fd()).unwrap();
}

#[test]
fn code_generic_over_platform_runs_on_local() {
    let path = sock_path("generic");
    generic_round_trip::<LocalPlatform>(LocalTarget::new(&path), LocalHostConfig::new(&path));
    assert!(!path.exists());
    assert_eq!(LocalPlatform::NAME, "local");
}
