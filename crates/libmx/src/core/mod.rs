//! The sans-IO protocol core of libmx: all MX semantics of one endpoint
//! (partners, connect handshake, seqnums, acks, retransmission, matching,
//! rendezvous), with no sockets, threads, clocks or OS randomness.
//!
//! The core speaks to the backend only through channel messages: it emits
//! [`Command`](mx_proto::msg::Command)s and consumes
//! [`Event`]s. Time is passed in by the caller
//! ([`Time`], microseconds); randomness comes from [`Config::seed`].
//!
//! # Using a [`Core`]
//!
//! The shell (the C ABI or the safe Rust API) owns the loop:
//!
//! 1. Create it with [`Core::new`] from a [`Config`] (see
//!    [`Config::from_board`]).
//! 2. Application calls: [`Core::connect`], [`Core::isend`],
//!    [`Core::issend`], [`Core::irecv`], [`Core::cancel`], [`Core::forget`],
//!    [`Core::iprobe`], [`Core::disconnect`], [`Core::set_request_timeout`],
//!    [`Core::set_unexp_handler`], ...
//! 3. Inputs: every event read from the event ring goes to
//!    [`Core::handle_event`] (with the receive queue, whose slot may be
//!    released as soon as the call returns); when the time given by
//!    [`Core::poll_timeout`] has passed, call [`Core::handle_timeout`].
//! 4. Outputs, after any of the above: call [`Core::poll_command`] until it
//!    returns `None`, pushing each filled slot to the command ring; when
//!    it says the command is a medium fragment ([`Emitted::frag`]), copy
//!    the fragment's bytes with [`Core::copy_frag`] straight from the
//!    user's buffer into the send-queue slot it names (or a peer channel's
//!    data slot) first; then collect
//!    finished requests with [`Core::poll_completion`], [`Core::test`],
//!    [`Core::test_any`] or [`Core::peek`]; then re-arm the timer from
//!    [`Core::poll_timeout`].
//!
//! `poll_command` returning `None` while a medium send waits for a free
//! send-queue slot is normal: the slot frees on
//! [`Event::SendMediumDone`].
//!
//! # Who owns what
//!
//! [`Core`] keeps the requests, the completion queue, the configuration
//! and the counters, and coordinates five parts, each a type in its own
//! file with its methods, followed there by the `Core` operations that
//! centre on it (they span parts, so they stay on `Core`):
//!
//! - `partners.rs` (`Partners`): the partner table, sessions and seqnums
//!   of each partner, reset notices; the connect handshake's events and a
//!   partner's reset.
//! - `matching.rs` (`Matching`): posted receives, unexpected messages, the
//!   handler; where a new message goes.
//! - `large.rs` (`Large`): region ids, windows, pulls in flight, the bulk
//!   pool; the rendezvous on both sides (window, staging, pull, notify).
//! - `emission.rs` (`Emission`): the control, data and stage queues and
//!   the send-queue slots (`sendq.rs`); writing each entry as a command.
//! - `timers.rs` (`Timers`): resend and ack timers; the timeout operation.
//!
//! `send.rs` and `recv.rs` hold the rest of the two operations: posting a
//! send and its end, and each event kind's receive (sequencing, acks).
//!
//! The traits the shell implements: [`MsgBuf`] (the application's message
//! buffers), [`RecvQueue`] (copy-shaped: the core copies a payload once,
//! straight into its destination), and optionally [`UnexpHandler`].
//!
//! # Decisions where the specs are silent
//!
//! - Eager sends complete before their ack ("zombies", at most
//!   [`Config::zombie_max`]): tiny and small ones once emitted (their bytes
//!   are copied into the request at post time), medium ones once every
//!   fragment was written to the send queue: the bytes are out of the
//!   user's buffer then, in send-queue slots the message keeps until its
//!   ack, and retransmissions post the same slots again without copying. A
//!   medium message takes all its slots at once when it starts (so no two
//!   half-sent messages can hold the queue between them); one with more
//!   fragments than the queue has slots, or sent while the zombie limit is
//!   reached, keeps none and completes on its ack (retransmissions copy
//!   from the user's buffer again). Past the limit they complete on their
//!   ack.
//! - A successful connect reply also sets the partner's back session when
//!   it has none, so acks and notifies reach a partner that never connects
//!   back; a connect request with a wrong key changes no partner state.
//! - A rendezvous completed by its notify stays in the unacked queue (and is
//!   retransmitted, harmlessly) until an ack covers it: the receiver re-acks
//!   only a duplicate exactly one behind, so the sender must keep
//!   retransmitting everything unacked.
//! - Large sends hold at most 224 of the 256 region ids at once; the rest
//!   stay for pulls, so two endpoints full of large sends to each other can
//!   still pull. Waiting sends keep their order per partner.
//! - Sending to a partner that was reset (resend limit, new instance) fails
//!   at once with ENDPOINT_UNREACHABLE until it is connected again. An
//!   address naming no partner is refused ([`SendError::UnknownAddr`]).
//! - A request timeout of 0 (MX_INFINITE) means no resend limit.
//! - At most 4096 early packets are kept per partner; more are dropped
//!   (the sender retransmits them).
//! - `CommandError` events are only counted: the backend cannot say which
//!   command it refused.

mod emission;
mod error;
mod large;
mod matching;
mod partners;
mod recv;
mod send;
mod sendq;
mod seq;
mod small_hash;
mod state;
mod timers;
mod types;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use error::{
    AddrError, BufferedError, CancelError, ConfigError, MaskError, RecvError, RequestError,
    SendError,
};
pub use types::{
    BulkPool, CancelResult, Completion, Config, Emitted, EndpointAddr, FragRef, MsgBuf,
    NoRecvQueue, PartnerInfo, PartnerReset, PoolRange, Probe, RecvQueue, Rejected, ReqId, ReqType,
    ResetReason, Return, SlotBytes, Stats, Status, Time, UnexpAction, UnexpInfo,
    DEFAULT_PULL_BLOCK, DEFAULT_RESEND_LIMIT, DEFAULT_RNDV_THRESHOLD, MAX_MEDIUM_FRAGS,
    STAGE_PIECES_MAX,
};

use mx_proto::msg::command::REGION_MAX_SEGS;
use mx_proto::msg::{CmdSlot, Event};
use slab::Slab;
use state::{Ctrl, DoneInfo, Kind, Partner, PartnerId, RecvPhase, RecvState, Request, User};
use std::collections::VecDeque;

/// Region ids a core has (RDMA window ids 0..=255).
const REGION_IDS: usize = 256;
/// Block pulls of one receive in flight at once.
pub(crate) const PULL_BLOCKS_IN_FLIGHT: u8 = 4;

/// Region ids large sends may hold at once; the rest stay for pulls, so
/// that two endpoints full of large sends to each other can still pull.
const SEND_WINDOWS_MAX: usize = 224;
/// First rdma seqnum of every window.
const RDMA_SEQNUM_START: u8 = 23;
/// Most early packets kept per partner.
const EARLY_MAX: usize = 4096;

/// The application's hook for messages that match no posted receive
/// (`mx_register_unexp_handler`).
///
/// Called during [`Core::handle_event`] (or a self send) before the message
/// is queued as unexpected. The handler may post receives through the
/// [`HandlerCtx`]; the core matches again when it returns
/// [`UnexpAction::Continue`].
pub trait UnexpHandler<B: MsgBuf> {
    /// Decide what to do with one unexpected message.
    fn unexpected(&mut self, info: &UnexpInfo<'_>, ctx: &mut HandlerCtx<'_, B>) -> UnexpAction;
}

/// What an [`UnexpHandler`] may do while it runs: post receives.
pub struct HandlerCtx<'c, B: MsgBuf> {
    core: &'c mut Core<B>,
}

impl<B: MsgBuf> HandlerCtx<'_, B> {
    /// Post a receive, as [`Core::irecv`].
    ///
    /// # Errors
    /// As [`Core::irecv`].
    pub fn irecv(
        &mut self,
        buf: B,
        match_info: u64,
        mask: u64,
        context: u64,
    ) -> Result<ReqId, Rejected<B, RecvError>> {
        self.core.irecv(buf, match_info, mask, context)
    }

    /// The core's configuration.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }

    /// What an address names, as [`Core::partner_info`] (the C ABI needs
    /// the endpoint id to hand the message's source to the handler).
    pub fn partner_info(&self, addr: EndpointAddr) -> Option<PartnerInfo> {
        self.core.partner_info(addr)
    }
}

/// The protocol state of one MX endpoint. See the [module docs](self) for
/// the order of calls.
pub struct Core<B: MsgBuf> {
    cfg: Config,
    rndv_threshold: u32,
    resend_limit: u32,
    /// Every request: the application's, unexpected messages, notifies.
    reqs: Slab<Request<B>>,
    next_gen: u32,
    /// Finished requests the application has not taken, in order.
    done: VecDeque<ReqId>,
    /// Eager sends completed before their ack.
    zombies: u32,
    stats: Stats,
    partners: partners::Partners,
    matching: matching::Matching<B>,
    large: large::Large,
    emission: emission::Emission,
    timers: timers::Timers,
}

impl<B: MsgBuf> core::fmt::Debug for Core<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("endpoint", &self.cfg.endpoint)
            .field("requests", &self.reqs.len())
            .field("partners", &self.partners.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<B: MsgBuf> Core<B> {
    // ----------------------------------------------------------------
    // Construction and getters
    // ----------------------------------------------------------------

    /// A core for one open endpoint.
    ///
    /// # Errors
    /// [`ConfigError`] when [`Config::validate`] refuses `cfg`.
    pub fn new(cfg: Config) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let nctx = cfg.context_id.map_or(1, |(bits, _)| 1usize << bits);
        let rndv_threshold = cfg.rndv_threshold.clamp(128, cfg.medium_max);
        let mut me = Partner::new(1, cfg.self_peer, cfg.endpoint, Some(cfg.nic_id));
        me.is_self = true;
        me.true_session = Some(cfg.session);
        me.back_session = Some(cfg.session);
        me.send_ready = true;
        let seed = cfg.seed;
        Ok(Core {
            rndv_threshold,
            resend_limit: cfg.resend_limit.max(1),
            reqs: Slab::new(),
            next_gen: (seed as u32) | 1,
            done: VecDeque::new(),
            zombies: 0,
            stats: Stats::default(),
            partners: partners::Partners::new(me, cfg.self_peer, cfg.endpoint),
            matching: matching::Matching::new(nctx),
            large: large::Large::new((seed >> 32) as u32),
            emission: emission::Emission::new(cfg.sendq_slots),
            timers: timers::Timers::new(),
            cfg,
        })
    }

    /// Stage large messages through `pool` from now on (set it before the
    /// first large send or receive).
    pub fn set_bulk_pool(&mut self, pool: Box<dyn BulkPool>) {
        self.large.pool = Some(pool);
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Our own address (`mx_get_endpoint_addr`).
    pub fn local_addr(&self) -> EndpointAddr {
        self.partners.addr_of(self.partners.self_idx)
    }

    /// The current rendezvous threshold.
    pub fn rndv_threshold(&self) -> u32 {
        self.rndv_threshold
    }

    /// Set the rendezvous threshold (clamped to `[128, medium_max]`).
    pub fn set_rndv_threshold(&mut self, bytes: u32) {
        self.rndv_threshold = bytes.clamp(128, self.cfg.medium_max);
    }

    /// What an address names, if it is still valid.
    pub fn partner_info(&self, addr: EndpointAddr) -> Option<PartnerInfo> {
        let p = self.partners.resolve(addr)?;
        Some(self.partners.info(p))
    }

    /// Record a partner's board address (the shell learns it from the
    /// control path when a partner connected to us first).
    ///
    /// # Errors
    /// [`AddrError`] for an unknown address.
    pub fn set_partner_nic_id(&mut self, addr: EndpointAddr, nic_id: u64) -> Result<(), AddrError> {
        let p = self.partners.resolve(addr).ok_or(AddrError::Unknown)?;
        self.partners[p].nic_id = Some(nic_id);
        Ok(())
    }

    /// Set the address context (`mx_set_endpoint_addr_context`).
    ///
    /// # Errors
    /// [`AddrError`] for an unknown address.
    pub fn set_addr_context(&mut self, addr: EndpointAddr, context: u64) -> Result<(), AddrError> {
        let p = self.partners.resolve(addr).ok_or(AddrError::Unknown)?;
        self.partners[p].context = context;
        Ok(())
    }

    /// Number of live request slots (user requests, zombies, unexpected
    /// messages and internal notifies).
    pub fn live_requests(&self) -> usize {
        self.reqs.len()
    }

    /// Eager sends completed before their ack and not acked yet.
    pub fn zombies(&self) -> u32 {
        self.zombies
    }

    /// The oldest partner reset not taken yet (kept only with
    /// [`Config::report_resets`], at most 64; every reset is counted in
    /// [`Stats::partner_resets`]).
    pub fn take_partner_reset(&mut self) -> Option<PartnerReset> {
        self.partners.take_reset()
    }

    /// Whether the core has nothing left to do: no command to emit, no
    /// message waiting for an ack, no pull or rendezvous in flight.
    pub fn is_quiescent(&self) -> bool {
        self.emission.is_empty() && self.timers.is_idle() && self.large.is_idle()
    }

    // ----------------------------------------------------------------
    // Application commands
    // ----------------------------------------------------------------

    /// Start connecting to endpoint `endpoint` on the peer with index `peer`
    /// in the backend's table (board address `nic_id`), presenting `key`
    /// (`mx_iconnect`). The request completes with the new address as its
    /// status source. Connecting to ourselves completes at once.
    ///
    /// It cannot fail: an unknown peer or endpoint fails the request
    /// (its status), not the call.
    pub fn connect(
        &mut self,
        peer: u16,
        endpoint: u8,
        nic_id: u64,
        key: u32,
        match_info: u64,
        context: u64,
    ) -> ReqId {
        let p = self.partners.partner_for(peer, endpoint, Some(nic_id));
        let connect_seqnum = self.partners[p].connect_seqnum;
        let rid = self.new_req(
            Kind::Connect(state::ConnectState {
                partner: p,
                key,
                match_info,
                connect_seqnum,
                tx: state::Tx::new(self.resend_limit),
                answered: false,
            }),
            context,
            None,
            User::Active,
        );
        if self.partners[p].is_self {
            let addr = self.partners.addr_of(p);
            self.complete_connect(rid, Status::Success, addr);
        } else {
            let pr = &mut self.partners[p];
            pr.connect_seqnum = pr.connect_seqnum.wrapping_add(1);
            pr.connects.push_back(rid);
            if let Some(tx) = self.req_mut(rid).and_then(Request::tx_mut) {
                tx.queued = true;
            }
            self.emission.ctrl_q.push_back(Ctrl::Connect(rid));
        }
        self.finish();
        rid
    }

    /// Drop all state of a partner (`mx_disconnect`): its pending requests
    /// fail with ENDPOINT_UNREACHABLE and the address becomes invalid.
    ///
    /// # Errors
    /// [`AddrError`] for an unknown address.
    pub fn disconnect(&mut self, addr: EndpointAddr) -> Result<(), AddrError> {
        let p = self.partners.resolve(addr).ok_or(AddrError::Unknown)?;
        if self.partners[p].is_self {
            return Ok(());
        }
        self.cleanup_partner(p, Status::EndpointUnreachable, true);
        self.partners.remove(p);
        self.large.unwait_window(p);
        self.finish();
        Ok(())
    }

    /// Post an eager-or-rendezvous send (`mx_isend`).
    ///
    /// # Errors
    /// [`SendError::UnknownAddr`] for an unknown address,
    /// [`SendError::TooManySegments`] for more than 256 segments.
    pub fn isend(
        &mut self,
        dest: EndpointAddr,
        buf: B,
        match_info: u64,
        context: u64,
    ) -> Result<ReqId, Rejected<B, SendError>> {
        let r = self.post_send(dest, buf, match_info, context, false);
        self.finish();
        r
    }

    /// Post a synchronous send (`mx_issend`): always the rendezvous path,
    /// completes once the receiver matched and pulled.
    ///
    /// # Errors
    /// As [`Core::isend`].
    pub fn issend(
        &mut self,
        dest: EndpointAddr,
        buf: B,
        match_info: u64,
        context: u64,
    ) -> Result<ReqId, Rejected<B, SendError>> {
        let r = self.post_send(dest, buf, match_info, context, true);
        self.finish();
        r
    }

    /// Post a receive (`mx_irecv`): the unexpected queue is scanned first,
    /// in arrival order.
    ///
    /// # Errors
    /// [`RecvError::MatchOutsideMask`] when `match_info & !mask != 0`,
    /// [`RecvError::ContextIdMasked`] when the mask does not cover the
    /// context id bits, [`RecvError::TooManySegments`] for more than 256
    /// segments.
    pub fn irecv(
        &mut self,
        buf: B,
        match_info: u64,
        mask: u64,
        context: u64,
    ) -> Result<ReqId, Rejected<B, RecvError>> {
        if let Err(e) = self.check_mask(match_info, mask) {
            return Err(Rejected {
                error: e.into(),
                buf,
            });
        }
        if buf.segment_count() > REGION_MAX_SEGS {
            return Err(Rejected {
                error: RecvError::TooManySegments,
                buf,
            });
        }
        let ctx = self.ctx_of(match_info);
        let rid = self.new_req(
            Kind::Recv(RecvState {
                match_info,
                mask,
                ctx,
                phase: RecvPhase::Posted,
            }),
            context,
            Some(buf),
            User::Active,
        );
        match self.matching.take_unexp(&self.reqs, ctx, match_info, mask) {
            Some(u) => self.consume_unexp(rid, u),
            None => self.matching.posted[ctx].push_back(rid),
        }
        self.finish();
        Ok(rid)
    }

    /// Cancel a request (`mx_cancel`): unmatched receives and unanswered
    /// connects are cancelled and freed; matched or finished requests are
    /// not cancelled.
    ///
    /// # Errors
    /// [`CancelError::Send`] for a send (MX and Open-MX cannot cancel
    /// sends), [`CancelError::UnknownRequest`] for an unknown request.
    pub fn cancel(&mut self, req: ReqId) -> Result<CancelResult<B>, CancelError> {
        let r = self.user_req(req).ok_or(CancelError::UnknownRequest)?;
        let done = r.user == User::Done;
        let res = match &r.kind {
            Kind::Send(_) => return Err(CancelError::Send),
            Kind::Recv(rs) if !done && matches!(rs.phase, RecvPhase::Posted) => {
                let ctx = rs.ctx;
                self.matching.posted[ctx].retain(|&x| x != req);
                let r = self.reqs.remove(req.index as usize);
                CancelResult::Cancelled(r.buf)
            }
            Kind::Connect(c) if !done && !c.answered => {
                let p = c.partner;
                if let Some(pr) = self.partners.get_mut(p) {
                    pr.connects.retain(|&x| x != req);
                }
                self.reqs.remove(req.index as usize);
                CancelResult::Cancelled(None)
            }
            _ => CancelResult::NotCancelled,
        };
        self.finish();
        Ok(res)
    }

    /// Free a request when it completes, without reporting it
    /// (`mx_forget`).
    ///
    /// # Errors
    /// [`RequestError`] for an unknown request.
    pub fn forget(&mut self, req: ReqId) -> Result<(), RequestError> {
        let r = self.user_req(req).ok_or(RequestError::Unknown)?;
        if r.user == User::Done {
            self.done.retain(|&x| x != req);
        }
        let r = self.req_mut(req).expect("checked above");
        match r.user {
            User::Done => r.user = User::Released,
            _ => r.forget = true,
        }
        self.try_free(req);
        self.finish();
        Ok(())
    }

    /// Set the request timeout (`mx_set_request_timeout`): for one request,
    /// or (with `None`) the endpoint default used by later requests. The
    /// timeout becomes a resend limit, `(ms*2+1023)/1024`; 0 means no limit.
    ///
    /// # Errors
    /// [`RequestError`] for an unknown request.
    pub fn set_request_timeout(&mut self, req: Option<ReqId>, ms: u32) -> Result<(), RequestError> {
        let n = Config::resends_for_timeout(ms);
        match req {
            None => self.resend_limit = n,
            Some(id) => {
                self.user_req(id).ok_or(RequestError::Unknown)?;
                if let Some(tx) = self.req_mut(id).and_then(Request::tx_mut) {
                    tx.sends_max = n;
                }
            }
        }
        Ok(())
    }

    /// Register (or with `None`, remove) the unexpected-message handler.
    pub fn set_unexp_handler(&mut self, handler: Option<Box<dyn UnexpHandler<B> + Send>>) {
        self.matching.handler = handler;
    }

    /// Whether an eager send's buffer may be reused (`mx_ibuffered`): true
    /// for tiny and small sends, for medium sends once written to the send
    /// queue; false for rendezvous sends.
    ///
    /// # Errors
    /// [`BufferedError`] for anything but a send.
    pub fn ibuffered(&self, req: ReqId) -> Result<bool, BufferedError> {
        match &self
            .user_req(req)
            .ok_or(BufferedError::UnknownRequest)?
            .kind
        {
            Kind::Send(s) => Ok(match s.class {
                state::Class::Tiny | state::Class::Small => true,
                state::Class::Medium => s.written_once || s.completed,
                state::Class::Large => false,
            }),
            _ => Err(BufferedError::NotASend),
        }
    }

    /// Look for an unexpected message matching `(match_info, mask)` without
    /// consuming it (`mx_iprobe`).
    ///
    /// # Errors
    /// As the mask checks of [`Core::irecv`].
    pub fn iprobe(&self, match_info: u64, mask: u64) -> Result<Option<Probe>, MaskError> {
        self.check_mask(match_info, mask)?;
        let ctx = self.ctx_of(match_info);
        Ok(self.matching.probe(&self.reqs, ctx, match_info, mask))
    }

    /// Queue an explicit ack to every partner with unacked messages (call
    /// before closing the endpoint, then drain [`Core::poll_command`]).
    pub fn flush_acks(&mut self) {
        let ids: Vec<usize> = self.partners.iter().map(|(i, _)| i).collect();
        for p in ids {
            let pr = &mut self.partners[p];
            if pr.unacked_recv() > 0
                && pr.back_session.is_some()
                && pr.ack != state::AckState::Queued
            {
                pr.ack = state::AckState::Queued;
                let pid = PartnerId {
                    idx: p,
                    gen: pr.gen,
                };
                self.emission.queue_ack(pid, false);
            }
        }
        self.finish();
    }

    // ----------------------------------------------------------------
    // Completions
    // ----------------------------------------------------------------

    /// Take the oldest finished request.
    pub fn poll_completion(&mut self) -> Option<Completion<B>> {
        let rid = *self.done.front()?;
        Some(self.take_completion(rid))
    }

    /// Take `req` if it finished (`mx_test`); `Ok(None)` while pending.
    ///
    /// # Errors
    /// [`RequestError`] for an unknown or already taken request.
    pub fn test(&mut self, req: ReqId) -> Result<Option<Completion<B>>, RequestError> {
        let r = self.user_req(req).ok_or(RequestError::Unknown)?;
        Ok((r.user == User::Done).then(|| self.take_completion(req)))
    }

    /// The context value of a request the application still holds
    /// (`mx_context`).
    ///
    /// # Errors
    /// [`RequestError`] for an unknown or already taken request.
    pub fn context(&self, req: ReqId) -> Result<u64, RequestError> {
        Ok(self.user_req(req).ok_or(RequestError::Unknown)?.context)
    }

    /// Whether `req` finished, without taking it.
    ///
    /// # Errors
    /// [`RequestError`] for an unknown or already taken request.
    pub fn is_done(&self, req: ReqId) -> Result<bool, RequestError> {
        Ok(self.user_req(req).ok_or(RequestError::Unknown)?.user == User::Done)
    }

    /// Take the first finished receive or connect (completion order) whose
    /// match info satisfies `(match_info & mask) == match` (`mx_test_any`).
    ///
    /// # Errors
    /// [`MaskError::MatchOutsideMask`] when `match_info & !mask != 0`.
    pub fn test_any(
        &mut self,
        match_info: u64,
        mask: u64,
    ) -> Result<Option<Completion<B>>, MaskError> {
        if match_info & !mask != 0 {
            return Err(MaskError::MatchOutsideMask);
        }
        let found = self.done.iter().copied().find(|&id| {
            self.req(id)
                .and_then(|r| r.done)
                .is_some_and(|d| d.match_info & mask == match_info)
        });
        Ok(found.map(|id| self.take_completion(id)))
    }

    /// The first finished request, not taken (`mx_ipeek`).
    pub fn peek(&self) -> Option<ReqId> {
        self.done.front().copied()
    }

    // ----------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------

    /// Process one event from the backend. Small and medium payloads are
    /// copied out of `recvq` during the call, once, straight into their
    /// destination. Events that lie (bad slot, impossible fragment, unknown
    /// cookie) are dropped and counted.
    pub fn handle_event(&mut self, now: Time, ev: &Event<'_>, recvq: &dyn RecvQueue) {
        self.dispatch_event(now, ev, recvq);
        self.finish();
    }

    /// The backend let us copy pull `cookie` ourselves
    /// ([`Event::PullDirect`]): `copy(buffer, len)` moves the first `len`
    /// bytes of the message into the receive buffer and says whether it
    /// worked. On success the pull completes as if the backend had done it;
    /// on failure direct pulls are turned off ([`Config::direct_pull`]) and
    /// the pull goes to the backend again.
    pub fn handle_pull_direct(&mut self, cookie: u32, copy: impl FnOnce(&mut B, u32) -> bool) {
        self.pull_direct(cookie, copy);
        self.finish();
    }

    /// Run the timers that expired at `now`: retransmissions (and the
    /// resend limit) and delayed acks.
    pub fn handle_timeout(&mut self, now: Time) {
        self.run_timers(now);
        self.finish();
    }

    // ----------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------

    /// Write the next command into `out` and say what it is; `None` when
    /// there is nothing to send now. A medium fragment's bytes are not in
    /// the command: [`Emitted::frag`] names its send-queue slot, and
    /// [`Core::copy_frag`] copies them from the user's buffer.
    pub fn poll_command(&mut self, now: Time, out: &mut CmdSlot) -> Option<Emitted> {
        let r = self.next_command(now, out);
        self.finish();
        r
    }

    /// Copy the bytes of fragment `frag`, just returned by
    /// [`Core::poll_command`], straight from the user's buffer:
    /// `sink(offset in the fragment, bytes)` once per piece of the buffer's
    /// memory, in order (one call with the whole fragment where the buffer
    /// cannot be read in place, through a bounce buffer, counted in
    /// [`Stats::bounce_bytes`]). Call it while the request still holds the
    /// user's buffer: before its completion is taken (`poll_completion`,
    /// `test`, ...) and before any event or timeout that could ack or fail
    /// the message (a `SendMediumDone` cannot); the shell does it before it
    /// handles the next event.
    /// True if every `sink` call returned true (at once for a fragment
    /// whose slot already holds its bytes); false also if the request is
    /// gone.
    pub fn copy_frag(
        &mut self,
        frag: &FragRef,
        sink: &mut dyn FnMut(usize, &[u8]) -> bool,
    ) -> bool {
        let Some((rid, off)) = frag.src else {
            return true;
        };
        let Some(b) = self.req(rid).and_then(|r| r.buf.as_ref()) else {
            return false;
        };
        let (mut called, mut ok) = (false, true);
        let whole = b.read_in_place(off, frag.len, &mut |o, bytes| {
            called = true;
            ok = sink(o as usize, bytes);
            ok
        });
        if called {
            return whole && ok;
        }
        let mut bounce = vec![0u8; frag.len as usize];
        b.read_at(off, &mut bounce);
        self.stats.bounce_bytes += u64::from(frag.len);
        sink(0, &bounce)
    }

    /// Whether [`Core::poll_command`] may have something to write: false
    /// means it certainly has not (a polling shell skips the call).
    pub fn has_output(&self) -> bool {
        !self.emission.is_empty()
    }

    /// When [`Core::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    // ----------------------------------------------------------------
    // Internal helpers shared by the submodules
    // ----------------------------------------------------------------

    fn req(&self, id: ReqId) -> Option<&Request<B>> {
        slot_req(&self.reqs, id)
    }

    fn req_mut(&mut self, id: ReqId) -> Option<&mut Request<B>> {
        slot_req_mut(&mut self.reqs, id)
    }

    /// The length of a request's buffer (0 without one).
    fn buf_len(&self, rid: ReqId) -> u32 {
        self.req(rid)
            .and_then(|r| r.buf.as_ref())
            .map_or(0, MsgBuf::len)
    }

    /// A request the application may still name.
    fn user_req(&self, id: ReqId) -> Option<&Request<B>> {
        self.req(id).filter(|r| r.user != User::Released)
    }

    fn new_req(&mut self, kind: Kind, context: u64, buf: Option<B>, user: User) -> ReqId {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let index = self.reqs.insert(Request {
            gen,
            context,
            user,
            forget: false,
            internal: true,
            done: None,
            buf,
            kind,
        }) as u32;
        ReqId { index, gen }
    }

    /// Free a request nobody references any more.
    fn try_free(&mut self, id: ReqId) {
        if let Some(r) = self.req(id) {
            if r.user == User::Released && !r.internal {
                self.reqs.remove(id.index as usize);
            }
        }
    }

    /// Record a request's completion and queue it for the application.
    fn complete(&mut self, id: ReqId, info: DoneInfo) {
        let Some(r) = self.req_mut(id) else { return };
        if r.done.is_some() {
            return;
        }
        r.done = Some(info);
        if r.user == User::Active {
            if r.forget {
                r.user = User::Released;
            } else {
                r.user = User::Done;
                self.done.push_back(id);
            }
        }
        self.try_free(id);
    }

    fn take_completion(&mut self, id: ReqId) -> Completion<B> {
        if self.done.front() == Some(&id) {
            self.done.pop_front();
        } else {
            self.done.retain(|&x| x != id);
        }
        let r = self.req_mut(id).expect("done requests are live");
        r.user = User::Released;
        let d = r.done.expect("done requests have a status");
        let c = Completion {
            req: id,
            kind: d.kind,
            status: d.status,
            source: d.source,
            match_info: d.match_info,
            msg_length: d.msg_length,
            xfer_length: d.xfer_length,
            context: r.context,
            buf: r.buf.take(),
        };
        self.try_free(id);
        c
    }

    fn ctx_of(&self, match_info: u64) -> usize {
        match self.cfg.context_id {
            None | Some((0, _)) => 0,
            Some((bits, shift)) => {
                let m = (1u64 << bits) - 1;
                (match_info.checked_shr(u32::from(shift)).unwrap_or(0) & m) as usize
            }
        }
    }

    fn check_mask(&self, match_info: u64, mask: u64) -> Result<(), MaskError> {
        if match_info & !mask != 0 {
            return Err(MaskError::MatchOutsideMask);
        }
        if let Some((bits, shift)) = self.cfg.context_id {
            if bits > 0 {
                let m = (1u64 << bits) - 1;
                if mask.checked_shr(u32::from(shift)).unwrap_or(0) & m != m {
                    return Err(MaskError::ContextIdMasked);
                }
            }
        }
        Ok(())
    }

    /// End of every public mutating call: serve resource waiters, re-arm
    /// the timers.
    fn finish(&mut self) {
        self.serve_region_waiters();
        self.refresh_timers();
    }
}

/// A request by handle, borrowing only the slab (lets callers use other
/// fields of the core at the same time).
fn slot_req<B>(reqs: &Slab<Request<B>>, id: ReqId) -> Option<&Request<B>> {
    reqs.get(id.index as usize).filter(|r| r.gen == id.gen)
}

/// Mutable form of [`slot_req`].
fn slot_req_mut<B>(reqs: &mut Slab<Request<B>>, id: ReqId) -> Option<&mut Request<B>> {
    reqs.get_mut(id.index as usize).filter(|r| r.gen == id.gen)
}
