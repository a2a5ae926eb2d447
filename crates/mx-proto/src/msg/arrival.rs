//! What a command becomes at the endpoint it is addressed to.
//!
//! One host-local message crosses either the backend's intra-node shortcut
//! or a peer channel ([`crate::peer`]); both must hand the destination's
//! library exactly the event the other would have. This is the one place
//! that says how: a pure function of the command and of the source the
//! carrier vouches for (never one the command claims).

use super::command::Command;
use super::event::{Event, RecvHdr};
use super::{Dest, Source};

/// Where `cmd` arrives and the session it names there (`None` for the
/// connect request and reply, which carry none); `None` for the commands
/// that address the backend itself (region registrations and stage
/// answers) and for the peer channel's own messages (hello, pull grants).
/// A pull is addressed to the endpoint whose window it reads.
pub fn destination(cmd: &Command<'_>) -> Option<(Dest, Option<u32>)> {
    Some(match cmd {
        Command::Tiny { hdr, .. } | Command::Small { hdr, .. } => (hdr.dest, Some(hdr.session)),
        Command::MediumFrag(m) => (m.hdr.dest, Some(m.hdr.session)),
        Command::Rndv(r) => (r.hdr.dest, Some(r.hdr.session)),
        Command::Notify(n) => (n.dest, Some(n.session)),
        Command::Liback(l) => (l.dest, Some(l.session)),
        Command::Pull(p) => (p.dest, Some(p.session)),
        Command::ConnectRequest(c) => (c.dest, None),
        Command::ConnectReply(c) => (c.dest, None),
        Command::RegionRegister(_)
        | Command::RegionDeregister { .. }
        | Command::RegionWindow(_)
        | Command::RegionStage(_)
        | Command::PeerHello(_)
        | Command::PullGrant(_) => return None,
    })
}

/// The event `cmd` becomes at its destination, coming from `src`.
/// `payload_slot` is the destination's slot that holds the payload of a
/// small message or medium fragment (receive-queue slot or peer data slot).
///
/// `None` for the commands that address the backend itself (pulls and
/// region registrations) and for the peer channel's own messages (hello,
/// pull grants): they never arrive as an event.
pub fn arrival<'a>(src: Source, cmd: &Command<'a>, payload_slot: u16) -> Option<Event<'a>> {
    let recv = |h: &super::command::SendHdr| RecvHdr {
        src,
        seq: h.seq,
        match_info: h.match_info,
    };
    Some(match *cmd {
        Command::Tiny { hdr, data } => Event::RecvTiny {
            hdr: recv(&hdr),
            data,
        },
        Command::Small { hdr, data } => Event::RecvSmall {
            hdr: recv(&hdr),
            // Small payloads are at most SMALL_INLINE_MAX (128) bytes.
            length: data.len() as u8,
            recvq_slot: payload_slot,
        },
        Command::MediumFrag(m) => Event::RecvMediumFrag {
            hdr: recv(&m.hdr),
            msg_length: m.msg_length,
            frag_seqnum: m.frag_seqnum,
            frag_length: m.frag_length,
            recvq_slot: payload_slot,
        },
        Command::Rndv(r) => Event::RecvRndv {
            hdr: recv(&r.hdr),
            msg_length: r.msg_length,
            rdma: r.rdma,
        },
        Command::Notify(n) => Event::RecvNotify {
            src,
            seq: n.seq,
            total_length: n.total_length,
            rdma_id: n.rdma_id,
            rdma_seqnum: n.rdma_seqnum,
        },
        Command::ConnectRequest(c) => Event::RecvConnectRequest {
            src,
            src_session: c.src_session,
            app_key: c.app_key,
            target_recv_seqnum_start: c.target_recv_seqnum_start,
            connect_seqnum: c.connect_seqnum,
        },
        Command::ConnectReply(c) => Event::RecvConnectReply {
            src,
            src_session: c.src_session,
            target_session: c.target_session,
            target_recv_seqnum_start: c.target_recv_seqnum_start,
            connect_seqnum: c.connect_seqnum,
            status: c.status,
        },
        Command::Liback(l) => Event::RecvLiback {
            src,
            lib_seqnum: l.lib_seqnum,
            send_seq: l.send_seq,
            acknum: l.acknum,
        },
        Command::Pull(_)
        | Command::RegionRegister(_)
        | Command::RegionDeregister { .. }
        | Command::RegionWindow(_)
        | Command::RegionStage(_)
        | Command::PeerHello(_)
        | Command::PullGrant(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::command::{MediumFrag, SendHdr};
    use crate::msg::{Dest, Seq};

    fn hdr() -> SendHdr {
        SendHdr {
            dest: Dest {
                peer: 3,
                endpoint: 2,
            },
            session: 9,
            seq: Seq {
                seqnum: 5,
                piggyack: 4,
            },
            match_info: 0xabc,
        }
    }

    #[test]
    fn the_carrier_names_the_source_and_the_payload_slot() {
        let hdr = hdr();
        let src = Source {
            peer: 0,
            endpoint: 7,
        };
        let frag = Command::MediumFrag(MediumFrag {
            hdr,
            msg_length: 20000,
            frag_seqnum: 1,
            frag_length: 8192,
            sendq_slot: 99,
        });
        assert_eq!(
            arrival(src, &frag, 12),
            Some(Event::RecvMediumFrag {
                hdr: RecvHdr {
                    src,
                    seq: hdr.seq,
                    match_info: 0xabc
                },
                msg_length: 20000,
                frag_seqnum: 1,
                frag_length: 8192,
                recvq_slot: 12,
            })
        );
        let small = Command::Small {
            hdr,
            data: &[1, 2, 3],
        };
        assert!(matches!(
            arrival(src, &small, 4),
            Some(Event::RecvSmall { length: 3, recvq_slot: 4, hdr: RecvHdr { src: s, .. } }) if s == src
        ));
        assert_eq!(
            arrival(src, &Command::RegionDeregister { region_id: 1 }, 0),
            None
        );
    }

    #[test]
    fn destination_names_the_endpoint_and_its_session() {
        let hdr = hdr();
        let tiny = Command::Tiny { hdr, data: &[] };
        assert_eq!(destination(&tiny), Some((hdr.dest, Some(9))));
        let connect = Command::ConnectRequest(crate::msg::command::ConnectRequest {
            dest: hdr.dest,
            src_session: 1,
            app_key: 2,
            target_recv_seqnum_start: 3,
            connect_seqnum: 4,
        });
        assert_eq!(destination(&connect), Some((hdr.dest, None)));
        assert_eq!(
            destination(&Command::RegionDeregister { region_id: 1 }),
            None
        );
    }
}
