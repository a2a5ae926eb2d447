//! The backend's service loop, the data plane: drain the endpoints'
//! command rings, hand each command to [`command::handle_command`],
//! publish events, sleep when idle. Control requests and new guests wake
//! the same loop and are answered by [`crate::control`].
//!
//! # The loop
//!
//! A pass takes up to `cmd_batch` commands from every guest principal (a
//! uid or a domain, [`GuestConn::principal`](mx_proto::platform::GuestConn::principal)),
//! shared among its endpoints
//! (round robin, so one busy user cannot starve the others however many
//! endpoints it opens), then publishes the
//! events of every endpoint that got some and notifies only the guests that
//! asked to be woken (their `prod_event`). When passes find work the loop
//! goes on at once; when they stop finding work it keeps polling for the
//! configured spin window (yielding the CPU between polls under
//! [`IdlePolicy::Yield`]), then arms every command ring's `prod_event`,
//! re-checks (the lost-wake-up guard) and sleeps in epoll on the guests'
//! event channels and control sockets. An idle backend therefore uses no CPU.
//! A command blocked by back-pressure (its destination's event ring or
//! receive queue is full) is retried every pass while the loop spins, then
//! every millisecond (`PENDING_POLL`): guests free room without notifying,
//! and a guest that never drains must not make the backend spin. A guest
//! whose event ring or receive queue index is corrupt is detached. A
//! command blocked on another endpoint of this host that stays full is
//! dropped and counted after `WireTiming::stalled_wait`
//! ([`command::give_up`]); connects never wait.
//!
//! With a NIC ([`Backend::new_with_nic`]) a pass also serves the wire
//! ([`crate::wire::service`]): received frames, the replies they cause,
//! pull and discovery timers, pull completions, and one NIC flush, before
//! the events are published. The NIC's descriptor joins the poller, and
//! the idle sleep ends at the earliest wire timer.
//!
//! The board's raw endpoint ([`crate::raw_endpoint`]), when open, is served in the
//! same pass: its sends after the endpoints' commands (their frames leave
//! with the same NIC flush), its received frames by the wire's receive
//! path, its events published with everybody else's.

use crate::command::{self, Ctx};
use crate::config::IdlePolicy;
use crate::counters::Counter;
use crate::daemon::{
    Backend, TOKEN_ENDPOINT, TOKEN_GUEST, TOKEN_LISTENER, TOKEN_NIC, TOKEN_RAW, TOKEN_STOP,
};
use crate::endpoint::Outcome;
use crate::raw_endpoint::RawTx;
use mx_proto::msg::{CmdSlot, Command};
use mx_proto::platform::{EventChannel, HostPlatform, Interest};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often commands blocked by back-pressure are retried once the loop
/// has gone idle: a guest frees event-ring and receive-queue room without
/// notifying, so the loop polls for it instead of spinning on it.
const PENDING_POLL: Duration = Duration::from_millis(1);

/// How often a NIC without a pollable descriptor is polled when idle.
const NIC_POLL: Duration = Duration::from_millis(1);

/// What [`Backend::arm_all`] found.
enum Armed {
    /// Every command ring is armed: sleep until notified.
    Idle,
    /// Commands wait for room at a destination: sleep briefly.
    Pending,
    /// A command arrived while arming: go on at once.
    Work,
}

impl<H: HostPlatform> Backend<H> {
    /// The earliest time the loop must wake up for the wire side.
    fn wire_deadline(&self) -> Option<Duration> {
        let w = self.wire.as_ref()?;
        let mut d =
            w.st.timer_at
                .map(|t| t.saturating_duration_since(Instant::now()));
        if self.nic_needs_polling {
            d = Some(d.map_or(NIC_POLL, |d| d.min(NIC_POLL)));
        }
        if !w.st.held.is_empty() {
            // A looped-back PULL waits for its sender to register the rest
            // of its window, which comes as a command: look again soon.
            d = Some(d.map_or(PENDING_POLL, |d| d.min(PENDING_POLL)));
        }
        if w.st.pulls.iter().any(|t| t.peek_done().is_some()) {
            // A PullDone waits for room in an event ring, which the guest
            // frees without notifying: look again soon.
            d = Some(d.map_or(PENDING_POLL, |d| d.min(PENDING_POLL)));
        }
        d
    }

    /// Serve until stopped.
    ///
    /// # Errors
    /// Only on a failure of the backend's own poller.
    pub fn run(&mut self) -> io::Result<()> {
        let mut last_work = Instant::now();
        let mut passes: u32 = 0;
        while !self.stop.load(Ordering::Acquire) {
            let worked = self.pass();
            passes = passes.wrapping_add(1);
            if worked {
                last_work = Instant::now();
                // Control requests and hang-ups must not wait for traffic to
                // stop: look at them every few dozen busy passes.
                if passes.is_multiple_of(64) {
                    self.poll_io(Some(Duration::ZERO))?;
                }
                continue;
            }
            let idle_for = last_work.elapsed();
            if self.cfg.idle != IdlePolicy::Block && idle_for < self.cfg.spin {
                if self.cfg.idle == IdlePolicy::Yield {
                    std::thread::yield_now();
                }
                if passes.is_multiple_of(64) {
                    self.poll_io(Some(Duration::ZERO))?;
                }
                continue;
            }
            let wire = self.wire_deadline();
            match self.arm_all() {
                Armed::Work => continue,
                Armed::Pending => {
                    let t = wire.map_or(PENDING_POLL, |w| w.min(PENDING_POLL));
                    self.poll_io(Some(t))?
                }
                Armed::Idle => {
                    self.poll_io(wire)?;
                    last_work = Instant::now();
                }
            }
        }
        info!("backend stopping");
        if let Some(w) = &self.wire {
            let nonzero: Vec<String> = mx_proto::msg::control::NIC_COUNTER_LABELS
                .iter()
                .zip(w.st.counters.values())
                .filter(|(_, v)| *v > 0)
                .map(|(l, v)| format!("{l}={v}"))
                .collect();
            info!(counters = %nonzero.join(", "), stats = ?w.nic.stats(), "NIC counters");
        }
        Ok(())
    }

    /// Arm every command ring for a wake-up.
    fn arm_all(&mut self) -> Armed {
        let mut armed = Armed::Idle;
        if let Some(raw) = self.raw.as_mut() {
            if raw.pending.is_some() {
                armed = Armed::Pending;
            } else if let Ok(false) = raw.chan.prepare_to_sleep() {
                return Armed::Work;
            }
        }
        for ep in self.endpoints.iter_mut() {
            if ep.pending.is_some() {
                // A blocked command waits for its destination to drain,
                // which the destination does not signal: poll again soon.
                // The commands queued behind it cannot run before it.
                if matches!(armed, Armed::Idle) {
                    armed = Armed::Pending;
                }
                continue;
            }
            match ep.chan.prepare_to_sleep() {
                Ok(true) => {}
                Ok(false) => return Armed::Work,
                Err(_) => {} // a broken ring is handled in the next pass
            }
        }
        armed
    }

    fn poll_io(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut timeout = timeout.or(Some(Duration::from_secs(1)));
        if let Some(until) = self.accept_paused {
            let now = Instant::now();
            if now >= until {
                self.accept_paused = None;
                match self
                    .poller
                    .add(self.listener.as_fd(), TOKEN_LISTENER, Interest::READABLE)
                {
                    Ok(()) => self.accept_all(),
                    Err(e) => {
                        warn!("cannot poll the listener again: {e}");
                        self.pause_accepting(now);
                    }
                }
            }
            if let Some(until) = self.accept_paused {
                let left = until.saturating_duration_since(Instant::now());
                timeout = timeout.map(|t| t.min(left));
            }
        }
        self.poller.wait(&mut self.events, timeout)?;
        // By index: each report is copied out, so handling it may borrow
        // `self` mutably, and the busy loop's periodic poll allocates nothing.
        for i in 0..self.events.len() {
            let Some(ev) = self.events.get(i) else { break };
            match ev.token {
                TOKEN_LISTENER => self.accept_all(),
                TOKEN_STOP => {
                    let _ = self.stop_wake.consume();
                }
                TOKEN_NIC => {} // the next pass drains the NIC
                TOKEN_RAW => {
                    if let Some(raw) = &self.raw {
                        let _ = raw.event.consume();
                    }
                }
                t if t & !0xffff_ffff == TOKEN_GUEST => {
                    self.serve_control((t & 0xffff_ffff) as usize, ev.hangup)
                }
                t if t & !0xffff_ffff == TOKEN_ENDPOINT => {
                    let id = (t & 0xffff_ffff) as usize;
                    if let Some(ep) = self.endpoints.get(id) {
                        // A guest that closed its end of the doorbell can
                        // never be woken again, and its hang-up would wake
                        // this loop for ever: close the endpoint.
                        if ev.hangup || ep.event.consume().is_err() {
                            warn!(
                                endpoint = id,
                                "endpoint's event channel hung up; closing it"
                            );
                            self.close(id as u8);
                        }
                    }
                }
                _ => {}
            }
        }
        self.sweep_gone();
        Ok(())
    }

    /// One pass over every endpoint; true if any command was handled or
    /// any frame received.
    fn pass(&mut self) -> bool {
        let mut worked = false;
        if self.peer_channels.notices_pending() > 0 {
            self.peer_channels.flush_notices(&mut self.endpoints);
        }
        let now = Instant::now();
        let stalled_wait = self.cfg.wire.stalled_wait;
        let endpoints_ptr = &mut self.endpoints;
        let mut ctx = Ctx::<H> {
            self_peer: self.self_peer,
            peers: &self.peers,
            net: self.wire.as_mut(),
            frag_max: self.cfg.frag_max,
            medium_max: self.cfg.medium_max,
            blocked_since: None,
            env: crate::window::PullEnv {
                now,
                staging_wait: self.cfg.wire.staging_wait,
                region_of: self.region_of,
                bounce: &mut self.bounce,
                segs: &mut self.segs,
            },
        };
        let mut broken = Vec::new();
        let mut blocked = false;
        // Fair per principal, not per endpoint: each gets `cmd_batch`
        // commands per pass shared among its endpoints (starting at a
        // different one each pass), so a user with four busy endpoints
        // takes the share of a user with one. What an endpoint leaves
        // (it ran dry or is blocked) goes to its principal's others, in
        // further rounds: an idle endpoint must not halve a busy one's.
        for p in self.principals.iter_mut() {
            let k = p.endpoints.len();
            if k == 0 {
                continue;
            }
            let start = p.cursor % k;
            p.cursor = (start + 1) % k;
            let mut left = self.cfg.cmd_batch.max(1);
            // Endpoints done for this pass (dry, blocked, broken, closed);
            // a board has at most 256 endpoint ids.
            let mut done = [false; 256];
            let mut active = k as u32;
            // Each round ends with the budget spent or one more endpoint
            // done, so there are at most k + 1.
            while left > 0 && active > 0 {
                for (j, is_done) in done.iter_mut().enumerate().take(k) {
                    if left == 0 || active == 0 {
                        break;
                    }
                    if *is_done {
                        continue;
                    }
                    let id = usize::from(p.endpoints[(start + j) % k]);
                    if !endpoints_ptr.is_open(id) {
                        *is_done = true;
                        active -= 1;
                        continue;
                    }
                    let share = left.div_ceil(active);
                    let mut stopped = false;
                    for _ in 0..share {
                        left -= 1;
                        let Some(ep) = endpoints_ptr.get_mut(id) else {
                            left += 1;
                            stopped = true;
                            break;
                        };
                        let (slot, retry): (CmdSlot, bool) = match ep.pending.take() {
                            Some(s) => (s, true),
                            None => match ep.chan.pop_command() {
                                Ok(Some(s)) => (s, false),
                                Ok(None) => {
                                    left += 1;
                                    stopped = true;
                                    break;
                                }
                                Err(e) => {
                                    warn!(endpoint = id, "command ring corrupt: {e:?}");
                                    broken.push(ep.guest);
                                    left += 1;
                                    stopped = true;
                                    break;
                                }
                            },
                        };
                        // Retrying a blocked command is work only once it goes through.
                        worked |= !retry;
                        let cmd = match Command::parse(&slot) {
                            Ok(c) => c,
                            Err(_) => {
                                if let Some(ep) = endpoints_ptr.get_mut(id) {
                                    ep.counters.bump(Counter::CmdsMalformed);
                                }
                                continue;
                            }
                        };
                        ctx.blocked_since = if retry {
                            endpoints_ptr.get(id).and_then(|e| e.blocked_since)
                        } else {
                            None
                        };
                        match command::handle_command(&mut ctx, endpoints_ptr, id, &cmd) {
                            Outcome::Done => {
                                worked = true;
                                if let Some(ep) = endpoints_ptr.get_mut(id) {
                                    ep.counters.bump(Counter::CmdsProcessed);
                                    ep.blocked_since = None;
                                }
                            }
                            Outcome::Blocked => {
                                if command::give_up(&ctx, endpoints_ptr, id, &cmd, stalled_wait) {
                                    worked = true;
                                    if let Some(ep) = endpoints_ptr.get_mut(id) {
                                        ep.blocked_since = None;
                                    }
                                    continue;
                                }
                                if let Some(ep) = endpoints_ptr.get_mut(id) {
                                    ep.pending = Some(slot);
                                    ep.blocked_since.get_or_insert(now);
                                }
                                blocked = true;
                                stopped = true;
                                break;
                            }
                        }
                    }
                    if stopped || !endpoints_ptr.is_open(id) {
                        *is_done = true;
                        active -= 1;
                    }
                    if let Some(ep) = endpoints_ptr.get_mut(id) {
                        // A guest blocked on a full command ring asked to be told.
                        if ep.chan.release_commands().is_needed() {
                            let _ = ep.event.notify();
                        }
                    }
                }
            }
        }
        // Same-host pulls parked on staging windows: timeouts, and stage
        // requests that found no room or no free slot before.
        for id in 0..endpoints_ptr.len() {
            crate::window::resume(&mut ctx.env, endpoints_ptr, id);
        }
        // The raw endpoint's sends, queued on the NIC before its flush.
        if let Some(raw) = self.raw.as_mut() {
            let mac = match self.wire.as_ref() {
                Some(w) => w.st.mac,
                None => {
                    mxoe_wire::NicId::new(self.cfg.nic_id).map_or([0; 6], mxoe_wire::NicId::to_mac)
                }
            };
            // A loopback-only wire side (MX_DISABLE_SHMEM on a board
            // without a NIC) is no interface for raw frames.
            let mut tx = RawTx {
                nic: self
                    .wire
                    .as_mut()
                    .filter(|w| !w.loopback_only)
                    .map(|w| (w.nic.as_mut() as &mut dyn crate::nic::Nic, &*w.st.counters)),
                mac,
            };
            match raw.serve(&mut tx, &self.raw_counters, self.cfg.cmd_batch) {
                Ok(w) => worked |= w,
                Err(e) => {
                    warn!("raw endpoint's command ring corrupt: {e:?}");
                    broken.push(raw.guest);
                }
            }
        }
        // The wire: receive, answer, timers, pull completions, and the NIC
        // flush (before the publish below: a guest must not see
        // SendMediumDone while the NIC may still read its slot).
        if let Some(w) = self.wire.as_mut() {
            worked |= crate::wire::service(
                w,
                &mut self.peers,
                endpoints_ptr,
                crate::wire::RawRx {
                    ep: self.raw.as_mut(),
                    counters: &self.raw_counters,
                },
                now,
            );
        }
        // Publish: one index store and at most one notification per endpoint.
        for ep in endpoints_ptr.iter_mut() {
            if ep.dirty {
                ep.dirty = false;
                if ep.chan.publish().is_needed() {
                    let _ = ep.event.notify();
                }
            }
        }
        if let Some(raw) = self.raw.as_mut() {
            if raw.dirty {
                raw.dirty = false;
                if raw.chan.publish().is_needed() {
                    let _ = raw.event.notify();
                }
            }
            if raw.pending.is_some()
                && (raw.chan.event_space().is_err() || raw.chan.recvq_space().is_err())
            {
                warn!("raw endpoint's event ring or receive queue corrupt");
                broken.push(raw.guest);
            }
        }
        if blocked {
            // A command waits for room in an event ring or a receive queue.
            // If the guest owning that ring corrupted its index the room
            // never comes (the ring reports no space forever): such guests
            // are broken.
            for ep in endpoints_ptr.iter_mut() {
                if ep.chan.event_space().is_err() || ep.chan.recvq_space().is_err() {
                    warn!(endpoint = ep.id, "event ring or receive queue corrupt");
                    broken.push(ep.guest);
                }
            }
        }
        for key in broken {
            self.detach(key);
        }
        worked
    }
}
