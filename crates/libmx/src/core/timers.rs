//! The timer table: retransmissions in send order, delayed acks in
//! schedule order, and the next deadline of each kind; and the timeout
//! operation on [`Core`] (resends, the resend limit, delayed acks), which
//! reads the requests and partners the entries name.

use super::state::{AckState, Ctrl, Kind, PartnerId, Timer, TIMER_COUNT};
use super::types::{ReqId, Time};
use super::{slot_req, Core, MsgBuf};
use std::collections::VecDeque;

/// The timers of one core.
pub(crate) struct Timers {
    /// Seqnum'd messages and connects by last send time (stale entries
    /// are skipped when met).
    pub(crate) resend_q: VecDeque<(ReqId, Time)>,
    /// Partners with a delayed ack, by due time.
    pub(crate) ack_q: VecDeque<(PartnerId, Time)>,
    /// Next deadline per [`super::state::Timer`].
    pub(crate) at: [Option<Time>; TIMER_COUNT],
}

impl Timers {
    /// No timer set.
    pub(crate) fn new() -> Self {
        Timers {
            resend_q: VecDeque::new(),
            ack_q: VecDeque::new(),
            at: [None; TIMER_COUNT],
        }
    }

    /// The earliest deadline, if any.
    #[inline]
    pub(crate) fn next(&self) -> Option<Time> {
        self.at.iter().flatten().copied().min()
    }

    /// No deadline is set.
    pub(crate) fn is_idle(&self) -> bool {
        self.at.iter().all(Option::is_none)
    }

    /// `rid` was sent at `now`: resend it a resend delay later unless it
    /// is acked (or answered) by then.
    #[inline]
    pub(crate) fn sent(&mut self, rid: ReqId, now: Time) {
        self.resend_q.push_back((rid, now));
    }

    /// Send partner `pid` an ack at `t` unless one goes out before.
    #[inline]
    pub(crate) fn delay_ack(&mut self, pid: PartnerId, t: Time) {
        self.ack_q.push_back((pid, t));
    }

    /// The oldest send whose resend is due at `now`, taken off the table.
    pub(crate) fn pop_resend_due(&mut self, now: Time, delay: Time) -> Option<(ReqId, Time)> {
        let &(rid, t) = self.resend_q.front()?;
        if t.saturating_add(delay) > now {
            return None;
        }
        self.resend_q.pop_front();
        Some((rid, t))
    }

    /// The oldest delayed ack due at `now`, taken off the table.
    pub(crate) fn pop_ack_due(&mut self, now: Time) -> Option<(PartnerId, Time)> {
        let &(pid, t) = self.ack_q.front()?;
        if t > now {
            return None;
        }
        self.ack_q.pop_front();
        Some((pid, t))
    }

    /// Drop the entries at the head that are no longer live (so that the
    /// deadlines are those of live entries), then set the deadlines.
    pub(crate) fn rearm(
        &mut self,
        resend_delay: Time,
        resend_live: impl Fn(ReqId, Time) -> bool,
        ack_live: impl Fn(PartnerId, Time) -> bool,
    ) {
        while let Some(&(rid, t)) = self.resend_q.front() {
            if resend_live(rid, t) {
                break;
            }
            self.resend_q.pop_front();
        }
        while let Some(&(pid, t)) = self.ack_q.front() {
            if ack_live(pid, t) {
                break;
            }
            self.ack_q.pop_front();
        }
        self.at[Timer::Resend as usize] = self
            .resend_q
            .front()
            .map(|&(_, t)| t.saturating_add(resend_delay));
        self.at[Timer::Ack as usize] = self.ack_q.front().map(|&(_, t)| t);
    }
}

// ----------------------------------------------------------------
// The timeout operation (spans requests, partners and emission)
// ----------------------------------------------------------------

impl<B: MsgBuf> Core<B> {
    /// Run the timers due at `now`: resend what was not acked in time (or
    /// give up on its partner at the resend limit), send delayed acks.
    pub(super) fn run_timers(&mut self, now: Time) {
        while let Some((rid, t)) = self.timers.pop_resend_due(now, self.cfg.resend_delay) {
            if !self.req(rid).is_some_and(|r| r.resend_pending(t)) {
                continue;
            }
            let Some(r) = self.req_mut(rid) else { continue };
            let (partner, is_connect, kept) = match &r.kind {
                Kind::Send(s) => (s.partner, false, !s.slots.is_empty()),
                Kind::Notify(n) => (n.partner, false, false),
                Kind::Connect(c) => (c.partner, true, false),
                _ => continue,
            };
            let Some(tx) = r.tx_mut() else { continue };
            if tx.queued {
                continue;
            }
            if tx.sends >= tx.sends_max {
                self.partner_failed(partner);
                continue;
            }
            tx.queued = true;
            self.stats.resends += 1;
            if is_connect {
                self.emission.ctrl_q.push_back(Ctrl::Connect(rid));
            } else {
                self.emission.queue_resend(rid, kept);
            }
        }
        while let Some((pid, t)) = self.timers.pop_ack_due(now) {
            let Some(p) = self.partners.idx(pid) else {
                continue;
            };
            let pr = &mut self.partners[p];
            if pr.ack == AckState::Delayed(t) {
                pr.ack = AckState::Queued;
                self.emission.queue_ack(pid, false);
            }
        }
    }

    /// After receiving from a partner: ack now, later, or not at all.
    pub(super) fn schedule_ack(&mut self, now: Time, p: usize) {
        let pid = self.partners.pid(p);
        let thr = self.cfg.ack_threshold;
        let delay = self.cfg.ack_delay;
        let pr = &mut self.partners[p];
        let unacked = pr.unacked_recv();
        if unacked == 0 || pr.ack == AckState::Queued {
            return;
        }
        if unacked >= thr {
            pr.ack = AckState::Queued;
            self.emission.queue_ack(pid, false);
        } else if pr.ack == AckState::None {
            let t = now.saturating_add(delay);
            pr.ack = AckState::Delayed(t);
            self.timers.delay_ack(pid, t);
        }
    }

    /// Drop the timer entries that became stale, re-arm the deadlines.
    pub(super) fn refresh_timers(&mut self) {
        let (reqs, partners) = (&self.reqs, &self.partners);
        self.timers.rearm(
            self.cfg.resend_delay,
            |rid, t| slot_req(reqs, rid).is_some_and(|r| r.resend_pending(t)),
            |pid, t| {
                partners
                    .idx(pid)
                    .is_some_and(|p| partners[p].ack == AckState::Delayed(t))
            },
        );
    }
}
