//! A board's raw endpoint as the library sees it: the engine under the
//! MX raw API (`mx_raw.h`), which fabric mappers use.
//!
//! A raw endpoint sends and receives whole Ethernet frames (destination
//! MAC first, no FCS), as Open-MX's raw interface does. It talks to the
//! backend over a [`RawChannel`]: a frame to send is written into a free
//! send-queue slot and named in a [`RawCommand::Send`]; the backend answers
//! every send with a [`RawEvent::SendDone`] naming the slot, which frees it
//! and becomes the application's send-complete event (with the context the
//! library kept for that slot: nothing the backend says is turned into a
//! pointer). Received frames arrive in receive-queue slots.
//!
//! Events are handed to the application in the order the backend posted
//! them. When a send finds every slot busy, the library drains the event
//! ring into a local queue (completions, and received frames copied out,
//! at most [`LOCAL_FRAMES_MAX`]; more are dropped and counted) until a
//! completion frees a slot; [`RawEndpoint::next_event`] serves that queue
//! first.
//!
//! The backend is distrusted: an event that does not parse, a completion
//! of a slot with no send outstanding, or a receive-queue slot out of
//! order marks the raw endpoint broken (every later call fails with
//! `NicDead`).

use crate::core::Return;
use crate::endpoint::{frontend_error, Guest};
use frontend::{Doorbell, Frontend, RawChannel};
use mx_proto::msg::control::ChannelSizes;
use mx_proto::msg::raw_endpoint::{RawCommand, RawEvent};
use mx_proto::platform::local::LocalTarget;
use mxoe_wire::{PacketType, ETHERTYPE, HEAD_LEN};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Channel sizes of a raw endpoint: 32 sends in flight, 64 received frames
/// waiting (Open-MX keeps 32), and an event ring that holds a completion
/// for every slot of both queues at once, so a completion always finds room.
pub const RAW_SIZES: ChannelSizes = ChannelSizes {
    cmd_slots: 32,
    evt_slots: 128,
    sendq_slots: 32,
    recvq_slots: 64,
};

// The event ring holds an event for every slot of both queues at once (a
// completion always finds room), and every send in flight has its command
// slot.
const _: () = assert!(RAW_SIZES.evt_slots >= RAW_SIZES.sendq_slots + RAW_SIZES.recvq_slots);
const _: () = assert!(RAW_SIZES.cmd_slots >= RAW_SIZES.sendq_slots);

/// Most received frames the library keeps for the application while a
/// send waits for a free slot; later ones are dropped (and counted).
pub const LOCAL_FRAMES_MAX: usize = 1024;

/// How long a send waits for a free send-queue slot (the backend completes
/// sends as it takes them, so only a stuck backend makes this expire).
pub const SEND_SLOT_WAIT: Duration = Duration::from_secs(5);

/// Shortest frame: the MXoE head (16 bytes) and the packet type.
pub const FRAME_MIN: usize = HEAD_LEN + 1;

/// The next event of a raw endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawNext {
    /// Nothing happened before the timeout.
    Nothing,
    /// A send finished; its context.
    SendComplete(u64),
    /// A whole frame arrived.
    Received(Vec<u8>),
}

/// Why a frame cannot be sent (the backend applies the same rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than [`FRAME_MIN`] or longer than the board's largest frame.
    Length,
    /// Not EtherType 0x86DF.
    EtherType,
    /// Not a RAW packet (the type byte at offset 16 is not 1).
    NotRaw,
}

/// Check a frame before it goes to the backend.
///
/// # Errors
/// The first rule the frame breaks.
pub fn check_frame(frame: &[u8], max_frame: usize) -> Result<(), FrameError> {
    if frame.len() < FRAME_MIN || frame.len() > max_frame {
        return Err(FrameError::Length);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE {
        return Err(FrameError::EtherType);
    }
    if PacketType::from(frame[HEAD_LEN]) != PacketType::Raw {
        return Err(FrameError::NotRaw);
    }
    Ok(())
}

#[derive(Debug)]
enum Local {
    Sent(u64),
    Frame(Vec<u8>),
}

struct State {
    ch: RawChannel<Guest>,
    /// Context of the send outstanding in each send-queue slot.
    ctx: Vec<Option<u64>>,
    free: Vec<u16>,
    /// Events taken out of the ring while a send waited for a slot.
    local: VecDeque<Local>,
    local_frames: usize,
    /// Received frames dropped because the local queue was full.
    dropped: u64,
    broken: bool,
    /// A thread sleeps on the doorbell (the others on the condvar).
    sleeper: bool,
}

impl State {
    /// Take one event out of the ring.
    fn pop(&mut self) -> Result<Option<Local>, Return> {
        if self.broken {
            return Err(Return::NicDead);
        }
        let r = self.pop_inner();
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn pop_inner(&mut self) -> Result<Option<Local>, Return> {
        let Some(slot) = self.ch.next_event().map_err(|_| Return::NicDead)? else {
            return Ok(None);
        };
        let ev = RawEvent::parse(&slot).map_err(|_| Return::NicDead)?;
        let out = match ev {
            RawEvent::SendDone { sendq_slot, .. } => {
                let ctx = self
                    .ctx
                    .get_mut(usize::from(sendq_slot))
                    .and_then(Option::take)
                    .ok_or(Return::NicDead)?;
                self.free.push(sendq_slot);
                Local::Sent(ctx)
            }
            RawEvent::Recv { recvq_slot, length } => {
                let mut f = vec![0; length as usize];
                self.ch
                    .recvq_read(recvq_slot, 0, &mut f)
                    .map_err(|_| Return::NicDead)?;
                self.ch
                    .recvq_release(recvq_slot)
                    .map_err(|_| Return::NicDead)?;
                Local::Frame(f)
            }
        };
        self.ch.release_events().map_err(|_| Return::NicDead)?;
        Ok(Some(out))
    }

    /// The next event for the application, without blocking.
    fn next(&mut self) -> Result<Option<Local>, Return> {
        if let Some(l) = self.local.pop_front() {
            if matches!(l, Local::Frame(_)) {
                self.local_frames -= 1;
            }
            return Ok(Some(l));
        }
        self.pop()
    }

    /// Move events into the local queue until a send-queue slot is free.
    fn drain_for_slot(&mut self) -> Result<(), Return> {
        while self.free.is_empty() {
            match self.pop()? {
                None => return Ok(()),
                Some(Local::Frame(_)) if self.local_frames >= LOCAL_FRAMES_MAX => {
                    self.dropped += 1;
                }
                Some(l) => {
                    if matches!(l, Local::Frame(_)) {
                        self.local_frames += 1;
                    }
                    self.local.push_back(l);
                }
            }
        }
        Ok(())
    }
}

/// A board's open raw endpoint. Every method may be called from any thread.
pub struct RawEndpoint {
    state: Mutex<State>,
    cond: Condvar,
    doorbell: Doorbell<Guest>,
    frontend: Frontend<Guest>,
    board: u32,
    max_frame: usize,
    cmd_slots: u32,
    /// Set by [`RawEndpoint::interrupt`]: waits give up.
    interrupted: AtomicBool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RawEndpoint {
    /// Attach to the backend at `target` (or the default socket) and open
    /// board `board`'s raw endpoint.
    ///
    /// # Errors
    /// `NoDev` without a backend, `BoardUnknown`, `Busy` when it is open
    /// (by anybody), `NoPerm` when the backend's policy refuses us.
    pub fn open(target: Option<&LocalTarget>, board: u32) -> Result<Self, Return> {
        let default = LocalTarget::default();
        let frontend = Frontend::<Guest>::attach(target.unwrap_or(&default))
            .map_err(|e| frontend_error(&e))?;
        let (ch, doorbell) = frontend
            .open_raw(board, RAW_SIZES)
            .map_err(|e| frontend_error(&e))?;
        let slots = ch.sendq_slots() as usize;
        let max_frame = ch.max_frame() as usize;
        Ok(RawEndpoint {
            state: Mutex::new(State {
                ch,
                ctx: vec![None; slots],
                free: (0..slots as u16).rev().collect(),
                local: VecDeque::new(),
                local_frames: 0,
                dropped: 0,
                broken: false,
                sleeper: false,
            }),
            cond: Condvar::new(),
            doorbell,
            frontend,
            board,
            max_frame,
            cmd_slots: RAW_SIZES.cmd_slots,
            interrupted: AtomicBool::new(false),
        })
    }

    /// The board.
    pub fn board(&self) -> u32 {
        self.board
    }

    /// Longest frame the board sends or delivers.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The board's address (its MAC in a u64).
    pub fn nic_id(&self) -> u64 {
        self.frontend.board().nic_id
    }

    /// Received frames dropped because the application did not read them
    /// while sends waited for slots.
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }

    /// End every wait in progress (they fail with `BadEndpoint`), for good:
    /// the raw endpoint is being closed.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
        let _ = self.doorbell.wake();
        // Under the lock, so a waiter between its check and its wait cannot
        // miss it.
        drop(lock(&self.state));
        self.cond.notify_all();
    }

    /// Run `f` under the lock until it returns `Some`, blocking on the
    /// doorbell (one thread) or the condition variable (the others) in
    /// between, until `deadline`. `None` at the deadline.
    fn wait_until<R>(
        &self,
        deadline: Instant,
        mut f: impl FnMut(&mut State) -> Result<Option<R>, Return>,
    ) -> Result<Option<R>, Return> {
        loop {
            let mut st = lock(&self.state);
            if self.interrupted.load(Ordering::Acquire) {
                return Err(Return::BadEndpoint);
            }
            if let Some(r) = f(&mut st)? {
                return Ok(Some(r));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Wake up now and then even without an event: a lost
            // notification must cost latency, never a hang.
            let sleep = (deadline - now).min(Duration::from_millis(100));
            if st.sleeper {
                let (g, _) = self
                    .cond
                    .wait_timeout(st, sleep)
                    .unwrap_or_else(|p| p.into_inner());
                drop(g);
                continue;
            }
            match st.ch.prepare_to_sleep() {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    st.broken = true;
                    return Err(Return::NicDead);
                }
            }
            st.sleeper = true;
            drop(st);
            let _ = self.doorbell.wait(Some(sleep));
            lock(&self.state).sleeper = false;
            self.cond.notify_all();
        }
    }

    /// Send `frame` (a whole Ethernet frame) as is; a
    /// [`RawNext::SendComplete`] with `context` follows, whatever becomes
    /// of the frame. Waits for a free send-queue slot if all are busy.
    ///
    /// # Errors
    /// `BadParamVal` for a frame [`check_frame`] refuses, `NoResources` if
    /// no slot frees up within [`SEND_SLOT_WAIT`], `NicDead` if the
    /// backend broke the channel.
    pub fn send(&self, frame: &[u8], context: u64) -> Result<(), Return> {
        check_frame(frame, self.max_frame).map_err(|_| Return::BadParamVal)?;
        let deadline = Instant::now() + SEND_SLOT_WAIT;
        let posted = self.wait_until(deadline, |st| {
            st.drain_for_slot()?;
            let Some(slot) = st.free.pop() else {
                return Ok(None);
            };
            let posted = st
                .ch
                .sendq_write(slot, frame)
                .map_err(|_| Return::NicDead)
                .and_then(|()| {
                    st.ch
                        .post(&RawCommand::Send {
                            sendq_slot: slot,
                            length: frame.len() as u32,
                        })
                        .map_err(|_| Return::NoResources)
                });
            match posted {
                Ok(()) => {
                    st.ctx[usize::from(slot)] = Some(context);
                    st.ch.flush().map_err(|_| Return::NicDead)?;
                    Ok(Some(()))
                }
                Err(e) => {
                    st.free.push(slot);
                    Err(e)
                }
            }
        })?;
        posted.ok_or(Return::NoResources)
    }

    /// The next event, waiting up to `timeout` (zero: do not wait).
    ///
    /// # Errors
    /// `NicDead` if the backend broke the channel.
    pub fn next_event(&self, timeout: Duration) -> Result<RawNext, Return> {
        let got = self.wait_until(Instant::now() + timeout, |st| st.next())?;
        Ok(match got {
            None => RawNext::Nothing,
            Some(Local::Sent(c)) => RawNext::SendComplete(c),
            Some(Local::Frame(f)) => RawNext::Received(f),
        })
    }

    /// Set the board's hostname (what HOST_REPLY answers).
    ///
    /// # Errors
    /// `BadHostnameArgs` for a name the backend refuses, `NoPerm`,
    /// `NoDev` if the backend is gone.
    pub fn set_hostname(&self, name: &str) -> Result<(), Return> {
        self.frontend
            .set_hostname(self.board, name)
            .map_err(|e| naming_error(&e))
    }

    /// Name peer `nic_id` (added to the board's peer table if unknown).
    ///
    /// # Errors
    /// As [`set_hostname`](Self::set_hostname); `NoResources` when the peer
    /// table is full.
    pub fn set_peer_name(&self, nic_id: u64, name: &str) -> Result<(), Return> {
        self.frontend
            .set_peer_name(self.board, nic_id, name)
            .map_err(|e| naming_error(&e))
    }

    /// Close: let the backend take every posted send (for at most
    /// `linger`: the backend drops what it did not take when the raw
    /// endpoint closes), then close it.
    ///
    /// # Errors
    /// `NoDev` if the backend cannot be reached.
    pub fn close(self, linger: Duration) -> Result<(), Return> {
        let deadline = Instant::now() + linger;
        loop {
            let drained = {
                let mut st = lock(&self.state);
                st.broken || st.ch.command_space().map_or(true, |n| n >= self.cmd_slots)
            };
            if drained || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        st.ch.close().map_err(|e| frontend_error(&e))
    }
}

fn naming_error(e: &frontend::FrontendError) -> Return {
    use mx_proto::msg::control::ControlError;
    match e {
        frontend::FrontendError::Refused(ControlError::Malformed) => Return::BadHostnameArgs,
        _ => frontend_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_like_the_backend_does() {
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&0x86DFu16.to_be_bytes());
        f[16] = 1;
        assert_eq!(check_frame(&f, 1514), Ok(()));
        assert_eq!(check_frame(&f[..17], 1514), Ok(()));
        assert_eq!(check_frame(&f[..16], 1514), Err(FrameError::Length));
        assert_eq!(check_frame(&f, 63), Err(FrameError::Length));
        f[16] = 38;
        assert_eq!(check_frame(&f, 1514), Err(FrameError::NotRaw));
        f[16] = 1;
        f[13] = 0;
        assert_eq!(check_frame(&f, 1514), Err(FrameError::EtherType));
    }
}
