//! The receive operation: each event kind checked and dispatched,
//! sequencing (expected, partial, early, obsolete), acks and NACKs from
//! the partner, fragments written into their target, receive completion,
//! self delivery. Where a new message goes is in `matching.rs`, pulls and
//! notifies in `large.rs`, the connect handshake in `partners.rs`.

use super::matching::Incoming;
use super::seq;
use super::state::{DoneInfo, Early, Kind, OwnedMsg, RecvPhase, Request, UnexpBody};
use super::{Core, EndpointAddr, MsgBuf, RecvQueue, ReqId, ReqType, Status, Time, EARLY_MAX};
use mx_proto::msg::event::NackKind;
use mx_proto::msg::{Event, RdmaRef, Seq, Source};

/// A payload: private bytes (an inline tiny payload, an early or
/// unexpected message's storage) or a receive-queue slot, read once,
/// straight into wherever it goes.
#[derive(Clone, Copy)]
pub(super) enum Data<'a> {
    Bytes(&'a [u8]),
    Slot {
        q: &'a dyn RecvQueue,
        idx: u16,
        len: u32,
    },
}

impl Data<'_> {
    pub(super) fn len(&self) -> u32 {
        match self {
            Data::Bytes(b) => b.len() as u32,
            Data::Slot { len, .. } => *len,
        }
    }

    /// Copy bytes `off..off + out.len()` into `out`.
    pub(super) fn read(&self, off: u32, out: &mut [u8]) -> bool {
        match self {
            Data::Bytes(b) => {
                let o = off as usize;
                match o.checked_add(out.len()).and_then(|end| b.get(o..end)) {
                    Some(src) => {
                        out.copy_from_slice(src);
                        true
                    }
                    None => false,
                }
            }
            Data::Slot { q, idx, len } => {
                u64::from(off) + out.len() as u64 <= u64::from(*len)
                    && q.read(*idx, off as usize, out)
            }
        }
    }

    pub(super) fn to_vec(self) -> Vec<u8> {
        self.into_vec(Vec::new())
    }

    /// The bytes in `v` (emptied first; its allocation is reused).
    pub(super) fn into_vec(self, mut v: Vec<u8>) -> Vec<u8> {
        v.clear();
        match self {
            Data::Bytes(b) => v.extend_from_slice(b),
            Data::Slot { len, .. } => {
                v.resize(len as usize, 0);
                let _ = self.read(0, &mut v);
            }
        }
        v
    }
}

/// A seqnum'd message, borrowed from the event, the receive queue, or an
/// early packet.
#[derive(Clone, Copy)]
enum Msg<'a> {
    Whole {
        match_info: u64,
        data: Data<'a>,
    },
    Frag {
        match_info: u64,
        msg_length: u32,
        frag_seqnum: u8,
        data: Data<'a>,
    },
    Rndv {
        match_info: u64,
        msg_length: u32,
        rdma: RdmaRef,
    },
    Notify {
        total_length: u32,
        rdma_id: u8,
        rdma_seqnum: u8,
    },
}

impl Msg<'_> {
    fn into_owned(self) -> OwnedMsg {
        match self {
            Msg::Whole { match_info, data } => OwnedMsg::Whole {
                match_info,
                data: data.to_vec(),
            },
            Msg::Frag {
                match_info,
                msg_length,
                frag_seqnum,
                data,
            } => OwnedMsg::Frag {
                match_info,
                msg_length,
                frag_seqnum,
                data: data.to_vec(),
            },
            Msg::Rndv {
                match_info,
                msg_length,
                rdma,
            } => OwnedMsg::Rndv {
                match_info,
                msg_length,
                rdma,
            },
            Msg::Notify {
                total_length,
                rdma_id,
                rdma_seqnum,
            } => OwnedMsg::Notify {
                total_length,
                rdma_id,
                rdma_seqnum,
            },
        }
    }
    fn frag(&self) -> u8 {
        match self {
            Msg::Frag { frag_seqnum, .. } => *frag_seqnum,
            _ => 0,
        }
    }
}

fn as_msg(m: &OwnedMsg) -> Msg<'_> {
    match m {
        OwnedMsg::Whole { match_info, data } => Msg::Whole {
            match_info: *match_info,
            data: Data::Bytes(data),
        },
        OwnedMsg::Frag {
            match_info,
            msg_length,
            frag_seqnum,
            data,
        } => Msg::Frag {
            match_info: *match_info,
            msg_length: *msg_length,
            frag_seqnum: *frag_seqnum,
            data: Data::Bytes(data),
        },
        OwnedMsg::Rndv {
            match_info,
            msg_length,
            rdma,
        } => Msg::Rndv {
            match_info: *match_info,
            msg_length: *msg_length,
            rdma: *rdma,
        },
        OwnedMsg::Notify {
            total_length,
            rdma_id,
            rdma_seqnum,
        } => Msg::Notify {
            total_length: *total_length,
            rdma_id: *rdma_id,
            rdma_seqnum: *rdma_seqnum,
        },
    }
}

/// Copy `n` bytes of `data` into `b` at message offset `off`: straight into
/// the buffer's memory where it allows it, else through a bounce buffer.
/// Returns the bytes bounced.
pub(super) fn fill_buf<B: MsgBuf>(b: &mut B, off: u32, n: u32, data: Data<'_>) -> u64 {
    if b.fill_range_in_place(off, n, &mut |o, dst| data.read(o, dst)) {
        return 0;
    }
    let mut bounce = vec![0u8; n as usize];
    if !data.read(0, &mut bounce) {
        return 0;
    }
    b.write_at(off, &bounce);
    u64::from(n)
}

impl<B: MsgBuf> Core<B> {
    pub(super) fn dispatch_event(&mut self, now: Time, ev: &Event<'_>, recvq: &dyn RecvQueue) {
        match *ev {
            Event::RecvTiny { hdr, data } => self.recv_data(
                now,
                hdr.src,
                hdr.seq,
                Msg::Whole {
                    match_info: hdr.match_info,
                    data: Data::Bytes(data),
                },
            ),
            Event::RecvSmall {
                hdr,
                length,
                recvq_slot,
            } => match self.slot_bytes(recvq, recvq_slot, usize::from(length)) {
                Some(data) => self.recv_data(
                    now,
                    hdr.src,
                    hdr.seq,
                    Msg::Whole {
                        match_info: hdr.match_info,
                        data,
                    },
                ),
                None => self.stats.drop_bad_event += 1,
            },
            Event::RecvMediumFrag {
                hdr,
                msg_length,
                frag_seqnum,
                frag_length,
                recvq_slot,
            } => {
                if !self.frag_geometry_ok(msg_length, frag_seqnum, frag_length) {
                    self.stats.drop_bad_event += 1;
                    return;
                }
                match self.slot_bytes(recvq, recvq_slot, usize::from(frag_length)) {
                    Some(data) => self.recv_data(
                        now,
                        hdr.src,
                        hdr.seq,
                        Msg::Frag {
                            match_info: hdr.match_info,
                            msg_length,
                            frag_seqnum,
                            data,
                        },
                    ),
                    None => self.stats.drop_bad_event += 1,
                }
            }
            Event::RecvRndv {
                hdr,
                msg_length,
                rdma,
            } => self.recv_data(
                now,
                hdr.src,
                hdr.seq,
                Msg::Rndv {
                    match_info: hdr.match_info,
                    msg_length,
                    rdma,
                },
            ),
            Event::RecvNotify {
                src,
                seq,
                total_length,
                rdma_id,
                rdma_seqnum,
            } => self.recv_data(
                now,
                src,
                seq,
                Msg::Notify {
                    total_length,
                    rdma_id,
                    rdma_seqnum,
                },
            ),
            Event::RecvConnectRequest {
                src,
                src_session,
                app_key,
                target_recv_seqnum_start,
                connect_seqnum,
            } => self.recv_connect_request(
                src,
                src_session,
                app_key,
                target_recv_seqnum_start,
                connect_seqnum,
            ),
            Event::RecvConnectReply {
                src,
                src_session,
                target_session,
                target_recv_seqnum_start,
                connect_seqnum,
                status,
            } => self.recv_connect_reply(
                src,
                src_session,
                target_session,
                target_recv_seqnum_start,
                connect_seqnum,
                status,
            ),
            Event::RecvLiback {
                src,
                lib_seqnum,
                acknum,
                ..
            } => self.recv_liback(src, lib_seqnum, acknum),
            Event::RecvNackLib {
                src,
                nack_type,
                lib_seqnum,
            } => self.recv_nack(src, nack_type, lib_seqnum),
            Event::SendMediumDone { sendq_slot } => {
                if !self.emission.sendq.done(sendq_slot) {
                    self.stats.drop_bad_event += 1;
                }
            }
            Event::PullDone {
                cookie,
                status,
                transferred,
            } => self.pull_block_done(cookie, status, transferred),
            // Nobody to copy for us here: the backend will.
            Event::PullDirect { cookie, .. } => self.pull_direct(cookie, |_, _| false),
            Event::CommandError { .. } => self.stats.command_errors += 1,
            // Peer-channel offers are the shell's business (crate::peers).
            Event::PeerOffer { .. } | Event::PeerClosed { .. } => {}
            Event::StageNeeded {
                region_id,
                gen,
                slot,
                block,
            } => self.stage_needed(region_id, gen, slot, block),
        }
    }

    /// Slot `slot`'s first `len` bytes, if the slot exists and holds them.
    fn slot_bytes<'q>(&self, recvq: &'q dyn RecvQueue, slot: u16, len: usize) -> Option<Data<'q>> {
        if slot >= self.cfg.recvq_slots || recvq.slot_len(slot) < len {
            return None;
        }
        Some(Data::Slot {
            q: recvq,
            idx: slot,
            len: len as u32,
        })
    }

    fn frag_geometry_ok(&self, msg_length: u32, frag_seqnum: u8, frag_length: u16) -> bool {
        let fm = self.cfg.frag_max;
        let off = u64::from(frag_seqnum) * u64::from(fm);
        msg_length > 0
            && msg_length <= self.cfg.medium_max
            && off < u64::from(msg_length)
            && u64::from(frag_length) == u64::from(fm).min(u64::from(msg_length) - off)
    }

    // ----------------------------------------------------------------
    // Sequencing
    // ----------------------------------------------------------------

    fn recv_data(&mut self, now: Time, src: Source, sq: Seq, msg: Msg<'_>) {
        let Some(&p) = self.partners.by_dest.get(&(src.peer, src.endpoint)) else {
            self.stats.drop_unknown_partner += 1;
            return;
        };
        let pr = &self.partners[p];
        if seq::sesnum(sq.seqnum) != seq::sesnum(pr.next_match_recv_seq)
            || !pr.send_ready
            || seq::sesnum(sq.piggyack) != seq::sesnum(pr.next_send_seq)
        {
            self.stats.drop_bad_sesnum += 1;
            return;
        }
        self.apply_ack(p, sq.piggyack);
        let s = sq.seqnum;
        let pr = &self.partners[p];
        let off = seq::diff(s, pr.next_match_recv_seq);
        let partial = pr.partials.iter().any(|x| x.seq == s);
        if off == 0 {
            self.process_expected(p, s, msg);
            self.drain_early(p, s);
        } else if partial && matches!(msg, Msg::Frag { .. }) {
            self.apply_msg_frag(p, s, msg);
        } else if off <= seq::EARLY_OFFSET_MAX {
            let frag = msg.frag();
            let pr = &mut self.partners[p];
            if pr.early.iter().any(|e| e.seq == s && e.msg.frag() == frag) {
                self.stats.duplicates += 1;
            } else if pr.early.len() >= EARLY_MAX {
                self.stats.drop_too_early += 1;
            } else {
                pr.early.push(Early {
                    seq: s,
                    msg: msg.into_owned(),
                });
                self.stats.early_kept += 1;
            }
        } else {
            self.stats.drop_obsolete += 1;
            if off != 0 && seq::diff(self.partners[p].next_frag_recv_seq, s) == 1 {
                // Our ack was probably lost: ack at once.
                let pid = self.partners.pid(p);
                self.emission.queue_ack(pid, true);
            }
        }
        if let Some(pr) = self.partners.get_mut(p) {
            pr.recompute_next_frag();
            self.schedule_ack(now, p);
        }
    }

    /// Apply an ack value (piggybacked or explicit) to our sends.
    fn apply_ack(&mut self, p: usize, ack: u16) {
        let pr = &self.partners[p];
        if !pr.send_ready || seq::sesnum(ack) != seq::sesnum(pr.next_send_seq) {
            return;
        }
        let next_acked = pr.next_acked_send_seq;
        let Some(new) = seq::ack_advance(ack, next_acked, pr.next_send_seq) else {
            if seq::diff(ack, next_acked) != 0 {
                self.stats.bad_acks += 1;
            }
            return;
        };
        while let Some(&rid) = self.partners[p].non_acked.front() {
            let s = self
                .req_mut(rid)
                .and_then(Request::tx_mut)
                .and_then(|t| t.seqnum);
            match s {
                Some(s) if seq::diff(s, next_acked) < new => {
                    self.partners[p].non_acked.pop_front();
                    self.on_acked(rid);
                }
                Some(_) => break,
                None => {
                    self.partners[p].non_acked.pop_front();
                }
            }
        }
        self.partners[p].next_acked_send_seq = ack;
        self.pump_partner(p);
    }

    fn process_expected(&mut self, p: usize, s: u16, msg: Msg<'_>) {
        self.partners[p].next_match_recv_seq = seq::add(s, 1);
        match msg {
            Msg::Whole { match_info, data } => {
                self.new_message(p, s, match_info, data.len(), Incoming::Whole(data));
            }
            Msg::Frag {
                match_info,
                msg_length,
                frag_seqnum,
                data,
            } => self.new_message(
                p,
                s,
                match_info,
                msg_length,
                Incoming::Frag { frag_seqnum, data },
            ),
            Msg::Rndv {
                match_info,
                msg_length,
                rdma,
            } => self.new_message(p, s, match_info, msg_length, Incoming::Rndv(rdma)),
            Msg::Notify {
                total_length,
                rdma_id,
                rdma_seqnum,
            } => self.recv_notify(p, total_length, rdma_id, rdma_seqnum),
        }
        if let Some(pr) = self.partners.get_mut(p) {
            pr.recompute_next_frag();
        }
    }

    /// After the expected message `s`: feed its early fragments, then any
    /// early packets that became expected.
    fn drain_early(&mut self, p: usize, mut s: u16) {
        loop {
            let Some(pr) = self.partners.get_mut(p) else {
                return;
            };
            if pr.early.is_empty() {
                return;
            }
            while let Some(i) = self.partners[p].early.iter().position(|e| e.seq == s) {
                let e = self.partners[p].early.remove(i);
                if self.partners[p].partials.iter().any(|x| x.seq == s) {
                    self.apply_msg_frag(p, s, as_msg(&e.msg));
                } else {
                    self.stats.duplicates += 1;
                }
            }
            let nm = self.partners[p].next_match_recv_seq;
            let next = self.partners[p]
                .early
                .iter()
                .enumerate()
                .filter(|(_, e)| e.seq == nm)
                .min_by_key(|(_, e)| e.msg.frag())
                .map(|(i, _)| i);
            let Some(i) = next else { return };
            let e = self.partners[p].early.remove(i);
            self.process_expected(p, nm, as_msg(&e.msg));
            s = nm;
        }
    }

    fn apply_msg_frag(&mut self, p: usize, s: u16, msg: Msg<'_>) {
        if let Msg::Frag {
            match_info,
            msg_length,
            frag_seqnum,
            data,
        } = msg
        {
            self.apply_frag(p, s, match_info, msg_length, frag_seqnum, data);
        }
    }

    /// Add one fragment to the partial message `s` of partner `p`.
    pub(super) fn apply_frag(
        &mut self,
        p: usize,
        s: u16,
        match_info: u64,
        msg_length: u32,
        frag_seqnum: u8,
        data: Data<'_>,
    ) {
        let Some(i) = self.partners[p].partials.iter().position(|x| x.seq == s) else {
            return;
        };
        let part = &mut self.partners[p].partials[i];
        if part.msg_length != msg_length || part.match_info != match_info {
            self.stats.drop_bad_event += 1;
            return;
        }
        let bit = 1u64 << frag_seqnum;
        if part.frags & bit != 0 {
            self.stats.duplicates += 1;
            return;
        }
        part.frags |= bit;
        part.got += data.len();
        let target = part.target;
        let complete = part.got == part.msg_length;
        let off = u32::from(frag_seqnum) * self.cfg.frag_max;
        if let Some(t) = target {
            self.write_into(t, off, data);
        }
        if complete {
            let part = self.partners[p].partials.remove(i);
            self.partners[p].recompute_next_frag();
            if let Some(t) = part.target {
                let source = self.partners.addr_of(p);
                match self.req_mut(t).map(|r| &mut r.kind) {
                    Some(Kind::Recv(_)) => {
                        let blen = self.buf_len(t);
                        let xfer = msg_length.min(blen);
                        self.complete_recv(t, source, match_info, msg_length, xfer);
                    }
                    Some(Kind::Unexp(u)) => {
                        if let UnexpBody::Eager { complete, .. } = &mut u.body {
                            *complete = true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Copy fragment bytes into a receive (clipped to its buffer) or an
    /// unexpected message's storage.
    fn write_into(&mut self, t: ReqId, off: u32, data: Data<'_>) {
        let mut bounced = 0;
        let Some(r) = self.req_mut(t) else { return };
        match &mut r.kind {
            Kind::Recv(_) => {
                if let Some(b) = &mut r.buf {
                    let blen = b.len();
                    if off < blen {
                        let n = data.len().min(blen - off);
                        bounced = fill_buf(b, off, n, data);
                    }
                }
            }
            Kind::Unexp(u) => {
                if let UnexpBody::Eager { data: v, .. } = &mut u.body {
                    let o = off as usize;
                    if let Some(dst) = v.get_mut(o..o + data.len() as usize) {
                        let _ = data.read(0, dst);
                    }
                }
            }
            _ => {}
        }
        self.stats.bounce_bytes += bounced;
    }

    pub(super) fn complete_recv(
        &mut self,
        r: ReqId,
        source: EndpointAddr,
        match_info: u64,
        msg_length: u32,
        xfer: u32,
    ) {
        let status = if xfer < msg_length {
            Status::Truncated
        } else {
            Status::Success
        };
        self.complete_recv_status(r, source, match_info, msg_length, xfer, status);
    }

    pub(super) fn complete_recv_status(
        &mut self,
        r: ReqId,
        source: EndpointAddr,
        match_info: u64,
        msg_length: u32,
        xfer: u32,
        status: Status,
    ) {
        let Some(Request {
            kind: Kind::Recv(rs),
            internal,
            ..
        }) = self.req_mut(r)
        else {
            return;
        };
        rs.phase = RecvPhase::Finished;
        *internal = false;
        self.complete(
            r,
            DoneInfo {
                kind: ReqType::Recv,
                status,
                source,
                match_info,
                msg_length,
                xfer_length: xfer,
            },
        );
    }

    // ----------------------------------------------------------------
    // Self delivery (inside the core)
    // ----------------------------------------------------------------

    pub(super) fn self_send(&mut self, rid: ReqId) {
        let Some(Request {
            kind: Kind::Send(s),
            buf,
            ..
        }) = self.req(rid)
        else {
            return;
        };
        let (len, match_info, large) = (s.len, s.match_info, s.class == super::state::Class::Large);
        let p = self.partners.self_idx;
        if large {
            self.new_message(p, 0, match_info, len, Incoming::SelfLarge(rid));
        } else {
            let mut data = vec![0u8; len as usize];
            if let Some(b) = buf {
                b.read_at(0, &mut data);
            }
            if let Some(r) = self.req_mut(rid) {
                r.internal = false;
            }
            self.complete_send(rid, Status::Success, len);
            self.new_message(p, 0, match_info, len, Incoming::Whole(Data::Bytes(&data)));
        }
    }

    /// A large self send meets its receive: copy buffer to buffer.
    pub(super) fn self_copy(&mut self, send: ReqId, r: ReqId) {
        let Some(Request {
            kind: Kind::Send(s),
            ..
        }) = self.req(send)
        else {
            return;
        };
        let (len, match_info, source) = (s.len, s.match_info, s.dest);
        let sbuf = self.req_mut(send).and_then(|x| x.buf.take());
        let mut rbuf = self.req_mut(r).and_then(|x| x.buf.take());
        let n = len.min(rbuf.as_ref().map_or(0, MsgBuf::len));
        if let (Some(sb), Some(rb)) = (&sbuf, &mut rbuf) {
            let mut chunk = vec![0u8; (n as usize).min(64 * 1024)];
            let mut off = 0;
            while off < n {
                let k = (n - off).min(chunk.len() as u32);
                sb.read_at(off, &mut chunk[..k as usize]);
                rb.write_at(off, &chunk[..k as usize]);
                off += k;
            }
        }
        if let Some(x) = self.req_mut(send) {
            x.buf = sbuf;
        }
        if let Some(x) = self.req_mut(r) {
            x.buf = rbuf;
        }
        self.complete_recv(r, source, match_info, len, n);
        self.finish_large_send(send, n);
    }

    // ----------------------------------------------------------------
    // Acks, NACKs
    // ----------------------------------------------------------------

    fn recv_liback(&mut self, src: Source, lib_seqnum: u16, acknum: u32) {
        let Some(&p) = self.partners.by_dest.get(&(src.peer, src.endpoint)) else {
            self.stats.drop_unknown_partner += 1;
            return;
        };
        let pr = &mut self.partners[p];
        if (acknum.wrapping_sub(pr.last_recv_acknum) as i32) <= 0 {
            self.stats.stale_acks += 1;
            return;
        }
        pr.last_recv_acknum = acknum;
        self.apply_ack(p, lib_seqnum);
    }

    fn recv_nack(&mut self, src: Source, nack_type: NackKind, lib_seqnum: u16) {
        let Some(&p) = self.partners.by_dest.get(&(src.peer, src.endpoint)) else {
            self.stats.drop_unknown_partner += 1;
            return;
        };
        self.stats.nacks += 1;
        let status = match nack_type {
            NackKind::BadEndpoint => Status::BadEndpoint,
            NackKind::EndpointClosed => Status::EndpointClosed,
            NackKind::BadSession => Status::BadSession,
        };
        if lib_seqnum == 0 {
            if let Some(c) = self.partners[p].connects.pop_front() {
                let addr = self.partners.addr_of(p);
                self.complete_connect(c, status, addr);
                return;
            }
        }
        let found = self.partners[p].non_acked.iter().position(|&r| {
            self.req(r).is_some_and(|x| match &x.kind {
                Kind::Send(s) => s.tx.seqnum == Some(lib_seqnum),
                Kind::Notify(n) => n.tx.seqnum == Some(lib_seqnum),
                _ => false,
            })
        });
        if let Some(i) = found {
            let rid = self.partners[p]
                .non_acked
                .remove(i)
                .expect("index from position");
            self.fail_tx(rid, status);
        }
    }
}
