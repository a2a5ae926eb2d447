//! What users would pick instead on one host: TCP (loopback, or across a
//! veth pair) and Unix-domain stream sockets, `TCP_NODELAY`, default buffer
//! sizes; receive either blocking in `read` or busy-polling a non-blocking
//! socket.

use crate::pingpong::{ctl_bytes, ctl_from, fill_pattern, is_pattern, Ctl, Transport, MAX_SIZE};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// A stream socket both sides read and write with exact lengths.
pub struct SockConn<S> {
    s: S,
    busy: bool,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
}

fn send_all<S: Write>(s: &mut S, mut b: &[u8], busy: bool) {
    while !b.is_empty() {
        match s.write(b) {
            Ok(0) => panic!("socket closed"),
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if busy {
                    std::hint::spin_loop();
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("send: {e}"),
        }
    }
}

fn recv_all<S: Read>(s: &mut S, mut b: &mut [u8], busy: bool) {
    while !b.is_empty() {
        match s.read(b) {
            Ok(0) => panic!("socket closed"),
            Ok(n) => b = &mut b[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if busy {
                    std::hint::spin_loop();
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

impl<S: Read + Write> SockConn<S> {
    fn new(s: S, busy: bool) -> Self {
        SockConn {
            s,
            busy,
            sbuf: vec![1; MAX_SIZE],
            rbuf: vec![0; MAX_SIZE],
        }
    }
}

impl<S: Read + Write> Transport for SockConn<S> {
    fn min_size(&self) -> usize {
        1 // a byte stream carries no empty message
    }

    fn send_ctl(&mut self, c: Ctl) {
        send_all(&mut self.s, &ctl_bytes(c), self.busy);
    }

    fn recv_ctl(&mut self) -> Ctl {
        let mut b = [0u8; 24];
        recv_all(&mut self.s, &mut b, self.busy);
        ctl_from(&b)
    }

    fn fill(&mut self, size: usize, salt: u8) {
        fill_pattern(&mut self.sbuf[..size], salt);
    }

    fn check(&mut self, size: usize, salt: u8) -> bool {
        is_pattern(&self.rbuf[..size], salt)
    }

    fn round_trip(&mut self, size: usize) {
        send_all(&mut self.s, &self.sbuf[..size], self.busy);
        recv_all(&mut self.s, &mut self.rbuf[..size], self.busy);
    }

    fn echo(&mut self, size: usize) {
        recv_all(&mut self.s, &mut self.rbuf[..size], self.busy);
        send_all(&mut self.s, &self.rbuf[..size], self.busy);
    }

    fn stream_out(&mut self, size: usize, count: usize) {
        for _ in 0..count {
            send_all(&mut self.s, &self.sbuf[..size], self.busy);
        }
    }

    fn stream_in(&mut self, size: usize, count: usize) {
        let mut left = size * count;
        while left > 0 {
            let n = left.min(self.rbuf.len());
            recv_all(&mut self.s, &mut self.rbuf[..n], self.busy);
            left -= n;
        }
    }
}

/// Receive variant: `blocking` or `busy-poll`.
fn busy(mode: &str) -> bool {
    match mode {
        "blocking" => false,
        "busy-poll" => true,
        _ => panic!("bad socket mode {mode}"),
    }
}

/// Child role `sock-server tcp|unix ADDR MODE`: bind, print `READY <addr>`,
/// accept one connection and serve it.
///
/// # Panics
/// On socket errors.
pub fn server(kind: &str, addr: &str, mode: &str) {
    let busy = busy(mode);
    match kind {
        "tcp" => {
            let l = TcpListener::bind(addr).expect("bind");
            println!("READY {}", l.local_addr().expect("local addr"));
            let (s, _) = l.accept().expect("accept");
            s.set_nodelay(true).expect("TCP_NODELAY");
            s.set_nonblocking(busy).expect("non-blocking");
            crate::pingpong::serve(&mut SockConn::new(s, busy));
        }
        "unix" => {
            let _ = std::fs::remove_file(addr);
            let l = UnixListener::bind(addr).expect("bind");
            println!("READY {addr}");
            let (s, _) = l.accept().expect("accept");
            let _ = std::fs::remove_file(addr);
            s.set_nonblocking(busy).expect("non-blocking");
            crate::pingpong::serve(&mut SockConn::new(s, busy));
        }
        _ => panic!("bad socket kind {kind}"),
    }
}

fn retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(20), "connect: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Child role `sock-client tcp|unix ADDR MODE TRANSPORT`: connect and
/// measure; records on stdout.
///
/// # Panics
/// On socket errors.
pub fn client(kind: &str, addr: &str, mode: &str, o: &crate::pingpong::ClientOpts) {
    let busy = busy(mode);
    let mut out = |r: crate::record::Record| r.emit();
    match kind {
        "tcp" => {
            let s = retry(|| TcpStream::connect(addr));
            s.set_nodelay(true).expect("TCP_NODELAY");
            s.set_nonblocking(busy).expect("non-blocking");
            crate::pingpong::run_client(&mut SockConn::new(s, busy), o, &mut out);
        }
        "unix" => {
            let s = retry(|| UnixStream::connect(addr));
            s.set_nonblocking(busy).expect("non-blocking");
            crate::pingpong::run_client(&mut SockConn::new(s, busy), o, &mut out);
        }
        _ => panic!("bad socket kind {kind}"),
    }
}
