//! The machine's limits for moving a message between processes through
//! shared memory: `mx_proto::ring` rings of 8 KiB slots in a memfd, the
//! payload copied in and out with `memcpy` (a trusted peer: no volatile
//! copies), doorbells on eventfds.
//!
//! - **direct**: two processes, A <-> B (rings 0 and 1): one copy in, one
//!   copy out, one hand-off: what any shared-memory transport (Open MPI's
//!   `vader`) must at least do.
//! - **relay**: three processes, A <-> R <-> B (rings 0 -> R -> 1 and
//!   2 -> R -> 3), R copying slot to slot: the least any split driver with
//!   a process in the middle (our backend) can cost.
//!
//! A message is an 8-byte length then the payload, over as many slots as it
//! takes; every slot is published as soon as it is written, so large
//! messages pipeline through the relay. Waits: spin, yield, or block on the
//! process's eventfd after arming the ring (`prepare_to_sleep`,
//! `prepare_to_wait_for_space`): the peer kicks only when the ring says so.

use crate::pingpong::{ctl_bytes, ctl_from, fill_pattern, is_pattern, Ctl, Transport, MAX_SIZE};
use crate::shm::{eventfd, kick, layout, map, memfd, sleep_on, Shm, Wait};
use mx_proto::channel::QueueSlot;
use mx_proto::msg::QUEUE_SLOT_SIZE;
use mx_proto::ring::{Consumer, ControlPage, Layout, Producer, Side};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const SLOT: usize = QUEUE_SLOT_SIZE;
const HDR: usize = 8;

/// The shared memory and doorbells of one run, made by the harness before
/// it starts the processes (which inherit the descriptors).
pub struct ShmSetup {
    file: File,
    shm: Arc<Shm>,
    flag_off: usize,
    /// Doorbells of A, B and R.
    pub efd: [i32; 3],
    _page: ControlPage<Arc<Shm>>,
}

impl ShmSetup {
    /// Lay out fresh rings.
    ///
    /// # Panics
    /// If the kernel refuses memory or descriptors.
    pub fn new() -> ShmSetup {
        let l = layout(true);
        let flag_off = l.region_len();
        let file = memfd(flag_off + 4096);
        let shm = map(&file, flag_off + 4096);
        let page = ControlPage::init(shm.clone(), &l, Side::Frontend).expect("init rings");
        ShmSetup {
            file,
            shm,
            flag_off,
            efd: [eventfd(), eventfd(), eventfd()],
            _page: page,
        }
    }

    /// The arguments that tell a child where everything is:
    /// `FD EFD_A EFD_B EFD_R`.
    pub fn args(&self) -> Vec<String> {
        let mut v = vec![self.file.as_raw_fd().to_string()];
        v.extend(self.efd.iter().map(ToString::to_string));
        v
    }

    /// Tell the relay to leave.
    pub fn stop_relay(&self) {
        done_flag(&self.shm, self.flag_off).store(1, Ordering::Release);
        kick(self.efd[2]);
    }
}

impl Default for ShmSetup {
    fn default() -> Self {
        ShmSetup::new()
    }
}

impl Drop for ShmSetup {
    fn drop(&mut self) {
        for &fd in &self.efd {
            // SAFETY: closing descriptors this value created and owns.
            unsafe { libc::close(fd) };
        }
    }
}

fn done_flag(shm: &Shm, off: usize) -> &AtomicU64 {
    // SAFETY: `off` is the page after the rings, inside the mapping and
    // 8-aligned; the mapping lives as long as the borrow of `shm`, and the
    // word is only ever accessed atomically by every process.
    unsafe { &*shm.base().add(off).cast::<AtomicU64>() }
}

/// What a child was told by [`ShmSetup::args`].
struct Attached {
    shm: Arc<Shm>,
    l: Layout,
    efd: [i32; 3],
    flag_off: usize,
    _file: File,
}

fn attach(args: &[&str]) -> Attached {
    let n = |i: usize| -> i32 { args[i].parse().expect("descriptor") };
    // SAFETY: the descriptor was inherited for this purpose and nothing
    // else in this process uses it.
    let file = unsafe { File::from_raw_fd(n(0)) };
    let l = layout(true);
    let flag_off = l.region_len();
    let shm = map(&file, flag_off + 4096);
    Attached {
        shm,
        l,
        efd: [n(1), n(2), n(3)],
        flag_off,
        _file: file,
    }
}

fn slot_ptr(shm: &Shm, area: usize, pos: u32) -> *mut u8 {
    // SAFETY: `area + pos * SLOT` is a slot of a ring inside the mapping
    // (the ring gives positions below its slot count).
    unsafe { shm.base().add(area + pos as usize * SLOT) }
}

/// Sending end of a ring.
struct Tx {
    ring: Producer<QueueSlot, Arc<Shm>>,
    area: usize,
    shm: Arc<Shm>,
}

/// Receiving end of a ring.
struct Rx {
    ring: Consumer<QueueSlot, Arc<Shm>>,
    area: usize,
    shm: Arc<Shm>,
}

/// How a process waits and whom it kicks.
#[derive(Clone, Copy)]
struct Bell {
    wait: Wait,
    me: i32,
    peer: i32,
}

impl Bell {
    fn relax(&self) {
        match self.wait {
            Wait::Spin => std::hint::spin_loop(),
            _ => std::thread::yield_now(),
        }
    }
}

impl Tx {
    fn claim(&mut self, b: &Bell) -> u32 {
        let t0 = Instant::now();
        loop {
            if let Ok(p) = self.ring.claim() {
                return p;
            }
            match b.wait {
                Wait::Block => {
                    if self.ring.prepare_to_wait_for_space().expect("ring") {
                        sleep_on(b.me);
                    }
                }
                _ => b.relax(),
            }
            crate::shm::stuck(t0, "ring space");
        }
    }

    fn publish(&mut self, b: &Bell) {
        if self.ring.publish().is_needed() {
            kick(b.peer);
        }
    }

    /// One message: header, then the payload over as many slots as needed.
    fn put(&mut self, b: &Bell, data: &[u8]) {
        let mut off = 0;
        let mut first = true;
        while first || off < data.len() {
            let p = self.claim(b);
            let slot = slot_ptr(&self.shm, self.area, p);
            let hdr = if first { HDR } else { 0 };
            let n = (SLOT - hdr).min(data.len() - off);
            // SAFETY: the slot was claimed (the consumer does not read it
            // until it is published) and lies inside the mapping; `hdr + n`
            // is at most `SLOT`; `data[off..off + n]` is in bounds.
            unsafe {
                if first {
                    slot.cast::<u64>().write_unaligned(data.len() as u64);
                }
                std::ptr::copy_nonoverlapping(data.as_ptr().add(off), slot.add(hdr), n);
            }
            off += n;
            first = false;
            self.publish(b);
        }
    }
}

impl Rx {
    fn next(&mut self, b: &Bell) -> u32 {
        let t0 = Instant::now();
        loop {
            if let Some(p) = self.ring.skip().expect("ring") {
                return p;
            }
            match b.wait {
                Wait::Block => {
                    if self.ring.prepare_to_sleep().expect("ring") {
                        sleep_on(b.me);
                    }
                }
                _ => b.relax(),
            }
            crate::shm::stuck(t0, "a message");
        }
    }

    fn release(&mut self, b: &Bell) {
        if self.ring.release().is_needed() {
            kick(b.peer);
        }
    }

    /// One message into `buf`; its length.
    fn get(&mut self, b: &Bell, buf: &mut [u8]) -> usize {
        let p = self.next(b);
        let slot = slot_ptr(&self.shm, self.area, p);
        // SAFETY: the slot was published to us and lies in the mapping.
        let len = unsafe { slot.cast::<u64>().read_unaligned() } as usize;
        assert!(len <= buf.len(), "message of {len} bytes");
        let mut n = (SLOT - HDR).min(len);
        // SAFETY: as above; `HDR + n <= SLOT`, `n <= buf.len()`.
        unsafe { std::ptr::copy_nonoverlapping(slot.add(HDR), buf.as_mut_ptr(), n) };
        self.release(b);
        let mut off = n;
        while off < len {
            let p = self.next(b);
            let slot = slot_ptr(&self.shm, self.area, p);
            n = SLOT.min(len - off);
            // SAFETY: as above; `off + n <= len <= buf.len()`.
            unsafe { std::ptr::copy_nonoverlapping(slot, buf.as_mut_ptr().add(off), n) };
            self.release(b);
            off += n;
        }
        len
    }
}

/// A or B of a direct or relayed pair.
pub struct ShmConn {
    tx: Tx,
    rx: Rx,
    bell: Bell,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    rlen: usize,
    _at: Attached,
}

impl ShmConn {
    /// Attach as `a` (the client) or b, `relay` or direct.
    fn attach(args: &[&str], a: bool, relay: bool, wait: Wait) -> ShmConn {
        let at = attach(args);
        let (side, tx, rx) = match (a, relay) {
            (true, false) => (Side::Frontend, 0, 1),
            (true, true) => (Side::Frontend, 0, 3),
            (false, false) => (Side::Backend, 1, 0),
            (false, true) => (Side::Frontend, 2, 1),
        };
        let page = ControlPage::attach(at.shm.clone(), &at.l, side).expect("attach");
        let me = if a { at.efd[0] } else { at.efd[1] };
        let peer = match (a, relay) {
            (_, true) => at.efd[2],
            (true, false) => at.efd[1],
            (false, false) => at.efd[0],
        };
        ShmConn {
            tx: Tx {
                ring: page.producer(tx).expect("producer"),
                area: crate::shm::area(&at.l, tx),
                shm: at.shm.clone(),
            },
            rx: Rx {
                ring: page.consumer(rx).expect("consumer"),
                area: crate::shm::area(&at.l, rx),
                shm: at.shm.clone(),
            },
            bell: Bell { wait, me, peer },
            sbuf: vec![1; MAX_SIZE],
            rbuf: vec![0; MAX_SIZE],
            rlen: 0,
            _at: at,
        }
    }
}

impl Transport for ShmConn {
    fn send_ctl(&mut self, c: Ctl) {
        self.tx.put(&self.bell, &ctl_bytes(c));
    }

    fn recv_ctl(&mut self) -> Ctl {
        let mut b = [0u8; 24];
        let n = self.rx.get(&self.bell, &mut b);
        assert_eq!(n, 24, "control message");
        ctl_from(&b)
    }

    fn fill(&mut self, size: usize, salt: u8) {
        fill_pattern(&mut self.sbuf[..size], salt);
    }

    fn check(&mut self, size: usize, salt: u8) -> bool {
        self.rlen == size && is_pattern(&self.rbuf[..size], salt)
    }

    fn round_trip(&mut self, size: usize) {
        self.tx.put(&self.bell, &self.sbuf[..size]);
        self.rlen = self.rx.get(&self.bell, &mut self.rbuf);
    }

    fn echo(&mut self, _size: usize) {
        let n = self.rx.get(&self.bell, &mut self.rbuf);
        self.tx.put(&self.bell, &self.rbuf[..n]);
    }

    fn stream_out(&mut self, size: usize, count: usize) {
        for _ in 0..count {
            self.tx.put(&self.bell, &self.sbuf[..size]);
        }
    }

    fn stream_in(&mut self, _size: usize, count: usize) {
        for _ in 0..count {
            self.rx.get(&self.bell, &mut self.rbuf);
        }
    }
}

/// Child role `shm-a FD EFD_A EFD_B EFD_R direct|relay WAIT`: the client.
pub fn client(args: &[&str], relay: bool, wait: Wait, o: &crate::pingpong::ClientOpts) {
    let mut c = ShmConn::attach(args, true, relay, wait);
    crate::pingpong::run_client(&mut c, o, &mut |r| r.emit());
}

/// Child role `shm-b FD EFD_A EFD_B EFD_R direct|relay WAIT`: the server.
pub fn server(args: &[&str], relay: bool, wait: Wait) {
    let mut c = ShmConn::attach(args, false, relay, wait);
    crate::pingpong::serve(&mut c);
}

/// Child role `shm-relay FD EFD_A EFD_B EFD_R WAIT`: forward A -> B on
/// rings 0 -> 1 and B -> A on rings 2 -> 3 until told to stop.
pub fn relay(args: &[&str], wait: Wait) {
    let at = attach(args);
    let page = ControlPage::attach(at.shm.clone(), &at.l, Side::Backend).expect("attach");
    let mut ins = [
        page.consumer::<QueueSlot>(0).expect("ring 0"),
        page.consumer::<QueueSlot>(2).expect("ring 2"),
    ];
    let mut outs = [
        page.producer::<QueueSlot>(1).expect("ring 1"),
        page.producer::<QueueSlot>(3).expect("ring 3"),
    ];
    let in_area = [crate::shm::area(&at.l, 0), crate::shm::area(&at.l, 2)];
    let out_area = [crate::shm::area(&at.l, 1), crate::shm::area(&at.l, 3)];
    // Whom to kick: the producer of each input, the consumer of each output.
    let in_peer = [at.efd[0], at.efd[1]];
    let out_peer = [at.efd[1], at.efd[0]];
    let me = at.efd[2];
    // Payload bytes of the current message still to come, per direction.
    let mut remaining = [0usize; 2];
    let done = done_flag(&at.shm, at.flag_off);
    loop {
        let mut moved = false;
        for d in 0..2 {
            for _ in 0..64 {
                if outs[d].free_slots().expect("ring") == 0 {
                    break;
                }
                let Some(p) = ins[d].skip().expect("ring") else {
                    break;
                };
                let q = outs[d].claim().expect("room was checked");
                let src = slot_ptr(&at.shm, in_area[d], p);
                let dst = slot_ptr(&at.shm, out_area[d], q);
                let used = if remaining[d] == 0 {
                    // SAFETY: a published slot of the input ring.
                    let len = unsafe { src.cast::<u64>().read_unaligned() } as usize;
                    let n = (SLOT - HDR).min(len);
                    remaining[d] = len - n;
                    HDR + n
                } else {
                    let n = SLOT.min(remaining[d]);
                    remaining[d] -= n;
                    n
                };
                // SAFETY: both slots are ours (published input, claimed
                // output), in different rings of the mapping; `used <= SLOT`.
                unsafe { std::ptr::copy_nonoverlapping(src, dst, used) };
                if outs[d].publish().is_needed() {
                    kick(out_peer[d]);
                }
                if ins[d].release().is_needed() {
                    kick(in_peer[d]);
                }
                moved = true;
            }
        }
        if moved {
            continue;
        }
        if done.load(Ordering::Acquire) != 0 {
            return;
        }
        match wait {
            Wait::Spin => std::hint::spin_loop(),
            Wait::Yield => std::thread::yield_now(),
            Wait::Block => {
                let mut may_sleep = true;
                for d in 0..2 {
                    let empty = ins[d].prepare_to_sleep().expect("ring");
                    if !empty {
                        let full = outs[d].free_slots().expect("ring") == 0
                            && outs[d].prepare_to_wait_for_space().expect("ring");
                        may_sleep &= full;
                    }
                }
                if may_sleep && done.load(Ordering::Acquire) == 0 {
                    sleep_on(me);
                }
            }
        }
    }
}
