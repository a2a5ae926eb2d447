//! Raw on-wire layouts: one `#[repr(C)]` zerocopy struct per header.
//!
//! All multi-byte fields are big-endian. Every field is naturally aligned in
//! the reference, so these structs have no implicit padding and their sizes
//! and field offsets are exactly the specification's (checked below and in
//! the tests). The structs are views, not validated values: any byte
//! pattern is a valid struct. Use [`decode`](crate::decode) for checked,
//! typed packets.
//!
//! Type headers start at frame offset [`HEAD_LEN`](crate::HEAD_LEN) (16);
//! offsets in the field docs are from there. Fields named `pad*`, and
//! `src_generation` and `checksum`, are never read and are written as zero.

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Derives shared by every header struct.
macro_rules! wire_struct {
    ($(#[$meta:meta])* $name:ident, $len:expr, { $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )* }) => {
        $(#[$meta])*
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        #[repr(C)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Length of this header in bytes.
            pub const LEN: usize = $len;
        }

        const _: () = assert!(core::mem::size_of::<$name>() == $len);
    };
}

wire_struct! {
    /// The 16-byte head every frame starts with (frame offsets).
    EthHead, 16, {
        /// @0: destination MAC.
        dst_mac: [u8; 6],
        /// @6: source MAC.
        src_mac: [u8; 6],
        /// @12: 0x86DF.
        ethertype: U16,
        /// @14: the receiver's peer index for the sender (0xFFFF unknown).
        dst_src_peer_index: U16,
    }
}

wire_struct! {
    /// MSG header of TINY and SMALL (and the first 24 bytes of RNDV).
    MsgHeader, 24, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: never set by the reference; zero.
        src_generation: u8,
        /// @4: payload length (8 in RNDV).
        length: U16,
        /// @6: CRC-16 in debug builds only; zero.
        checksum: U16,
        /// @8: library sequence number.
        lib_seqnum: U16,
        /// @10: piggybacked ack.
        lib_piggyack: U16,
        /// @12: match info, high 32 bits.
        match_a: U32,
        /// @16: match info, low 32 bits.
        match_b: U32,
        /// @20: destination endpoint's session id.
        session: U32,
    }
}

wire_struct! {
    /// RNDV header: a MSG header with `length` 8, then the rendezvous data.
    RndvHeader, 32, {
        /// @0..24: MSG header.
        msg: MsgHeader,
        /// @24: total message length.
        msg_length: U32,
        /// @28: sender's RDMA window id.
        pulled_rdma_id: u8,
        /// @29: window use counter.
        pulled_rdma_seqnum: u8,
        /// @30: offset in the window (Open-MX sends 0).
        pulled_rdma_offset: U16,
    }
}

wire_struct! {
    /// MEDIUM fragment header, `mx` profile.
    MediumHeaderMx, 32, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: total message length (16 bits in this profile).
        length: U16,
        /// @6: zero.
        pad0: U16,
        /// @8: library sequence number.
        lib_seqnum: U16,
        /// @10: piggybacked ack.
        lib_piggyack: U16,
        /// @12: match info, high 32 bits.
        match_a: U32,
        /// @16: match info, low 32 bits.
        match_b: U32,
        /// @20: destination endpoint's session id.
        session: U32,
        /// @24: this fragment's payload length.
        frag_length: U16,
        /// @26: fragment number.
        frag_seqnum: u8,
        /// @27: log2 of the fragment size (12).
        frag_pipeline: u8,
        /// @28: zero.
        checksum: U16,
        /// @30: zero.
        pad1: U16,
    }
}

wire_struct! {
    /// MEDIUM fragment header, `open-mx` profile.
    MediumHeaderOmx, 32, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: total message length (32 bits in this profile).
        length: U32,
        /// @8: library sequence number.
        lib_seqnum: U16,
        /// @10: piggybacked ack.
        lib_piggyack: U16,
        /// @12: match info, high 32 bits.
        match_a: U32,
        /// @16: match info, low 32 bits.
        match_b: U32,
        /// @20: destination endpoint's session id.
        session: U32,
        /// @24: this fragment's payload length.
        frag_length: U16,
        /// @26: fragment number.
        frag_seqnum: u8,
        /// @27: zero.
        pad0: u8,
        /// @28: zero.
        checksum: U16,
        /// @30: zero.
        pad1: U16,
    }
}

wire_struct! {
    /// PULL request header, `mx` profile.
    PullHeaderMx, 32, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint (the sender of the large message).
        dst_endpoint: u8,
        /// @2: source endpoint (the puller).
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: destination endpoint's session id (the puller's back session).
        session: U32,
        /// @8: bytes to pull in all.
        total_length: U32,
        /// @12: RDMA window id.
        pulled_rdma_id: u8,
        /// @13: RDMA window use counter.
        pulled_rdma_seqnum: u8,
        /// @14: offset in the window.
        pulled_rdma_offset: U16,
        /// @16: the puller's handle.
        src_pull_handle: U32,
        /// @20: the puller's magic.
        src_magic: U32,
        /// @24: offset of the data in the block's first reply frame.
        first_frame_offset: U16,
        /// @26: bytes of this block.
        block_length: U16,
        /// @28: number of the block's first reply frame.
        frame_index: U32,
    }
}

wire_struct! {
    /// PULL request header, `open-mx` profile.
    PullHeaderOmx, 44, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint (the sender of the large message).
        dst_endpoint: u8,
        /// @2: source endpoint (the puller).
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: destination endpoint's session id (the puller's back session).
        session: U32,
        /// @8: bytes to pull in all.
        total_length: U32,
        /// @12: RDMA window id.
        pulled_rdma_id: U32,
        /// @16: RDMA window use counter.
        pulled_rdma_seqnum: u8,
        /// @17: zero.
        pad: [u8; 3],
        /// @20: offset in the window.
        pulled_rdma_offset: U32,
        /// @24: the puller's handle.
        src_pull_handle: U32,
        /// @28: the puller's magic.
        src_magic: U32,
        /// @32: offset of the data in the block's first reply frame.
        first_frame_offset: U32,
        /// @36: bytes of this block.
        block_length: U32,
        /// @40: number of the block's first reply frame.
        frame_index: U32,
    }
}

wire_struct! {
    /// PULL_REPLY header (both profiles); payload at frame offset 32.
    PullReplyHeader, 16, {
        /// @0: packet type.
        ptype: u8,
        /// @1: frame number mod 256.
        frame_seqnum: u8,
        /// @2: payload length.
        frame_length: U16,
        /// @4: offset of the payload in the message.
        msg_offset: U32,
        /// @8: the puller's handle, echoed.
        dst_pull_handle: U32,
        /// @12: the puller's magic, echoed.
        dst_magic: U32,
    }
}

wire_struct! {
    /// NOTIFY header.
    NotifyHeader, 24, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint (the sender of the large message).
        dst_endpoint: u8,
        /// @2: source endpoint (the puller).
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: destination endpoint's session id (back session).
        session: U32,
        /// @8: bytes transferred (0 on error).
        total_length: U32,
        /// @12: the RNDV's RDMA window id.
        pulled_rdma_id: u8,
        /// @13: the RNDV's RDMA window use counter.
        pulled_rdma_seqnum: u8,
        /// @14: zero.
        pad0: U16,
        /// @16: zero.
        pad1: U16,
        /// @18: library sequence number.
        lib_seqnum: U16,
        /// @20: piggybacked ack.
        lib_piggyack: U16,
        /// @22: zero.
        pad2: U16,
    }
}

wire_struct! {
    /// TRUC header with its ack data (`length` 16, type 0x55).
    TrucHeader, 28, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: data length (16).
        length: u8,
        /// @5: zero.
        pad0: [u8; 3],
        /// @8: destination endpoint's session id (back session).
        session: U32,
        /// @12: data type (0x55 = ack).
        ack_type: u8,
        /// @13: zero.
        pad1: u8,
        /// @14: the ack value.
        lib_seqnum: U16,
        /// @16: the acked partner's session id (back session).
        session_id: U32,
        /// @20: per-partner ack counter.
        acknum: U32,
        /// @24: the ack value again.
        send_seq: U16,
        /// @26: resent flag (0).
        resent: u8,
        /// @27: zero.
        pad2: u8,
    }
}

wire_struct! {
    /// CONNECT request header.
    ConnectRequestHeader, 32, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: data length (16).
        length: u8,
        /// @5: zero.
        pad0: [u8; 3],
        /// @8: always 0.
        lib_seqnum: U16,
        /// @10: the sender's peer index for the destination.
        src_dst_peer_index: U16,
        /// @12: zero.
        pad1: U32,
        /// @16: the sender's session id.
        src_session_id: U32,
        /// @20: the application key.
        app_key: U32,
        /// @24: seqnum the sender expects from the destination next.
        target_recv_seqnum_start: U16,
        /// @26: 0.
        is_reply: u8,
        /// @27: per-partner connect counter.
        connect_seqnum: u8,
        /// @28: zero.
        pad2: U32,
    }
}

wire_struct! {
    /// CONNECT reply header.
    ConnectReplyHeader, 32, {
        /// @0: packet type.
        ptype: u8,
        /// @1: destination endpoint.
        dst_endpoint: u8,
        /// @2: source endpoint.
        src_endpoint: u8,
        /// @3: zero.
        src_generation: u8,
        /// @4: data length (16).
        length: u8,
        /// @5: zero.
        pad0: [u8; 3],
        /// @8: always 0.
        lib_seqnum: U16,
        /// @10: the sender's peer index for the destination.
        src_dst_peer_index: U16,
        /// @12: zero.
        pad1: U32,
        /// @16: the requester's session id, echoed.
        src_session_id: U32,
        /// @20: the replier's session id.
        target_session_id: U32,
        /// @24: seqnum the replier expects from the requester next.
        target_recv_seqnum_start: U16,
        /// @26: 1.
        is_reply: u8,
        /// @27: the request's connect counter, echoed.
        connect_seqnum: u8,
        /// @28: connect status.
        connect_status_code: u8,
        /// @29: zero.
        pad2: [u8; 3],
    }
}

wire_struct! {
    /// NACK_LIB header.
    NackLibHeader, 16, {
        /// @0: packet type.
        ptype: u8,
        /// @1: the endpoint the nacked packet targeted.
        src_endpoint: u8,
        /// @2: zero.
        src_generation: u8,
        /// @3: why.
        nack_type: u8,
        /// @4: zero.
        pad0: U32,
        /// @8: zero.
        pad1: u8,
        /// @9: the nacked packet's source endpoint.
        dst_endpoint: u8,
        /// @10: the nacked packet's head peer index.
        dst_src_peer_index: U16,
        /// @12: the nacked packet's seqnum.
        lib_seqnum: U16,
        /// @14: zero.
        pad2: U16,
    }
}

wire_struct! {
    /// NACK_MCP header (answers a PULL).
    NackMcpHeader, 16, {
        /// @0: packet type.
        ptype: u8,
        /// @1: the endpoint the PULL targeted.
        src_endpoint: u8,
        /// @2: zero.
        src_generation: u8,
        /// @3: why.
        nack_type: u8,
        /// @4: zero.
        pad0: U32,
        /// @8: the PULL's handle.
        src_pull_handle: U32,
        /// @12: the PULL's magic.
        src_magic: U32,
    }
}

wire_struct! {
    /// HOST_QUERY header.
    HostQueryHeader, 16, {
        /// @0: packet type.
        ptype: u8,
        /// @1: zero.
        pad0: u8,
        /// @2: the sender's peer index for the destination.
        src_dst_peer_index: U16,
        /// @4: zero.
        pad1: U32,
        /// @8: query magic.
        magic: U32,
        /// @12: zero.
        pad2: U32,
    }
}

wire_struct! {
    /// HOST_REPLY header; the NUL-terminated hostname follows at frame offset 32.
    HostReplyHeader, 16, {
        /// @0: packet type.
        ptype: u8,
        /// @1: hostname length including NUL.
        length: u8,
        /// @2: the sender's peer index for the destination.
        src_dst_peer_index: U16,
        /// @4: zero.
        pad0: U32,
        /// @8: the query's magic, echoed.
        magic: U32,
        /// @12: zero.
        pad1: U32,
    }
}

wire_struct! {
    /// A whole 64-byte mapper announcement (RAW) frame, frame offsets.
    MapperFrameLayout, 64, {
        /// @0: head (dst broadcast, peer index 0).
        head: EthHead,
        /// @16: packet type (1, RAW).
        ptype: u8,
        /// @17: zero.
        pad0: [u8; 3],
        /// @20: zero.
        pad1: [u8; 12],
        /// @32: board address, high 32 bits.
        nic_id_hi: U32,
        /// @36: board address, low 32 bits.
        nic_id_lo: U32,
        /// @40: random per mapper run.
        serial: U32,
        /// @44: zero.
        pad2: [u8; 20],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(offset_of!(EthHead, ethertype), 12);
        assert_eq!(offset_of!(EthHead, dst_src_peer_index), 14);

        assert_eq!(offset_of!(MsgHeader, length), 4);
        assert_eq!(offset_of!(MsgHeader, checksum), 6);
        assert_eq!(offset_of!(MsgHeader, lib_seqnum), 8);
        assert_eq!(offset_of!(MsgHeader, lib_piggyack), 10);
        assert_eq!(offset_of!(MsgHeader, match_a), 12);
        assert_eq!(offset_of!(MsgHeader, match_b), 16);
        assert_eq!(offset_of!(MsgHeader, session), 20);

        assert_eq!(offset_of!(RndvHeader, msg_length), 24);
        assert_eq!(offset_of!(RndvHeader, pulled_rdma_id), 28);
        assert_eq!(offset_of!(RndvHeader, pulled_rdma_seqnum), 29);
        assert_eq!(offset_of!(RndvHeader, pulled_rdma_offset), 30);

        assert_eq!(offset_of!(MediumHeaderMx, length), 4);
        assert_eq!(offset_of!(MediumHeaderMx, pad0), 6);
        assert_eq!(offset_of!(MediumHeaderMx, lib_seqnum), 8);
        assert_eq!(offset_of!(MediumHeaderMx, session), 20);
        assert_eq!(offset_of!(MediumHeaderMx, frag_length), 24);
        assert_eq!(offset_of!(MediumHeaderMx, frag_seqnum), 26);
        assert_eq!(offset_of!(MediumHeaderMx, frag_pipeline), 27);
        assert_eq!(offset_of!(MediumHeaderMx, checksum), 28);
        assert_eq!(offset_of!(MediumHeaderMx, pad1), 30);

        assert_eq!(offset_of!(MediumHeaderOmx, length), 4);
        assert_eq!(offset_of!(MediumHeaderOmx, lib_seqnum), 8);
        assert_eq!(offset_of!(MediumHeaderOmx, match_a), 12);
        assert_eq!(offset_of!(MediumHeaderOmx, frag_length), 24);
        assert_eq!(offset_of!(MediumHeaderOmx, frag_seqnum), 26);
        assert_eq!(offset_of!(MediumHeaderOmx, pad0), 27);
        assert_eq!(offset_of!(MediumHeaderOmx, checksum), 28);

        assert_eq!(offset_of!(PullHeaderMx, session), 4);
        assert_eq!(offset_of!(PullHeaderMx, total_length), 8);
        assert_eq!(offset_of!(PullHeaderMx, pulled_rdma_id), 12);
        assert_eq!(offset_of!(PullHeaderMx, pulled_rdma_seqnum), 13);
        assert_eq!(offset_of!(PullHeaderMx, pulled_rdma_offset), 14);
        assert_eq!(offset_of!(PullHeaderMx, src_pull_handle), 16);
        assert_eq!(offset_of!(PullHeaderMx, src_magic), 20);
        assert_eq!(offset_of!(PullHeaderMx, first_frame_offset), 24);
        assert_eq!(offset_of!(PullHeaderMx, block_length), 26);
        assert_eq!(offset_of!(PullHeaderMx, frame_index), 28);

        assert_eq!(offset_of!(PullHeaderOmx, pulled_rdma_id), 12);
        assert_eq!(offset_of!(PullHeaderOmx, pulled_rdma_seqnum), 16);
        assert_eq!(offset_of!(PullHeaderOmx, pad), 17);
        assert_eq!(offset_of!(PullHeaderOmx, pulled_rdma_offset), 20);
        assert_eq!(offset_of!(PullHeaderOmx, src_pull_handle), 24);
        assert_eq!(offset_of!(PullHeaderOmx, src_magic), 28);
        assert_eq!(offset_of!(PullHeaderOmx, first_frame_offset), 32);
        assert_eq!(offset_of!(PullHeaderOmx, block_length), 36);
        assert_eq!(offset_of!(PullHeaderOmx, frame_index), 40);

        assert_eq!(offset_of!(PullReplyHeader, frame_seqnum), 1);
        assert_eq!(offset_of!(PullReplyHeader, frame_length), 2);
        assert_eq!(offset_of!(PullReplyHeader, msg_offset), 4);
        assert_eq!(offset_of!(PullReplyHeader, dst_pull_handle), 8);
        assert_eq!(offset_of!(PullReplyHeader, dst_magic), 12);

        assert_eq!(offset_of!(NotifyHeader, session), 4);
        assert_eq!(offset_of!(NotifyHeader, total_length), 8);
        assert_eq!(offset_of!(NotifyHeader, pulled_rdma_id), 12);
        assert_eq!(offset_of!(NotifyHeader, pulled_rdma_seqnum), 13);
        assert_eq!(offset_of!(NotifyHeader, pad0), 14);
        assert_eq!(offset_of!(NotifyHeader, pad1), 16);
        assert_eq!(offset_of!(NotifyHeader, lib_seqnum), 18);
        assert_eq!(offset_of!(NotifyHeader, lib_piggyack), 20);
        assert_eq!(offset_of!(NotifyHeader, pad2), 22);

        assert_eq!(offset_of!(TrucHeader, length), 4);
        assert_eq!(offset_of!(TrucHeader, pad0), 5);
        assert_eq!(offset_of!(TrucHeader, session), 8);
        assert_eq!(offset_of!(TrucHeader, ack_type), 12);
        assert_eq!(offset_of!(TrucHeader, lib_seqnum), 14);
        assert_eq!(offset_of!(TrucHeader, session_id), 16);
        assert_eq!(offset_of!(TrucHeader, acknum), 20);
        assert_eq!(offset_of!(TrucHeader, send_seq), 24);
        assert_eq!(offset_of!(TrucHeader, resent), 26);
        assert_eq!(offset_of!(TrucHeader, pad2), 27);

        assert_eq!(offset_of!(ConnectRequestHeader, length), 4);
        assert_eq!(offset_of!(ConnectRequestHeader, lib_seqnum), 8);
        assert_eq!(offset_of!(ConnectRequestHeader, src_dst_peer_index), 10);
        assert_eq!(offset_of!(ConnectRequestHeader, pad1), 12);
        assert_eq!(offset_of!(ConnectRequestHeader, src_session_id), 16);
        assert_eq!(offset_of!(ConnectRequestHeader, app_key), 20);
        assert_eq!(
            offset_of!(ConnectRequestHeader, target_recv_seqnum_start),
            24
        );
        assert_eq!(offset_of!(ConnectRequestHeader, is_reply), 26);
        assert_eq!(offset_of!(ConnectRequestHeader, connect_seqnum), 27);
        assert_eq!(offset_of!(ConnectRequestHeader, pad2), 28);

        assert_eq!(offset_of!(ConnectReplyHeader, target_session_id), 20);
        assert_eq!(offset_of!(ConnectReplyHeader, is_reply), 26);
        assert_eq!(offset_of!(ConnectReplyHeader, connect_seqnum), 27);
        assert_eq!(offset_of!(ConnectReplyHeader, connect_status_code), 28);
        assert_eq!(offset_of!(ConnectReplyHeader, pad2), 29);

        assert_eq!(offset_of!(NackLibHeader, nack_type), 3);
        assert_eq!(offset_of!(NackLibHeader, pad0), 4);
        assert_eq!(offset_of!(NackLibHeader, pad1), 8);
        assert_eq!(offset_of!(NackLibHeader, dst_endpoint), 9);
        assert_eq!(offset_of!(NackLibHeader, dst_src_peer_index), 10);
        assert_eq!(offset_of!(NackLibHeader, lib_seqnum), 12);
        assert_eq!(offset_of!(NackLibHeader, pad2), 14);

        assert_eq!(offset_of!(NackMcpHeader, nack_type), 3);
        assert_eq!(offset_of!(NackMcpHeader, src_pull_handle), 8);
        assert_eq!(offset_of!(NackMcpHeader, src_magic), 12);

        assert_eq!(offset_of!(HostQueryHeader, src_dst_peer_index), 2);
        assert_eq!(offset_of!(HostQueryHeader, magic), 8);
        assert_eq!(offset_of!(HostReplyHeader, length), 1);
        assert_eq!(offset_of!(HostReplyHeader, src_dst_peer_index), 2);
        assert_eq!(offset_of!(HostReplyHeader, magic), 8);

        assert_eq!(offset_of!(MapperFrameLayout, ptype), 16);
        assert_eq!(offset_of!(MapperFrameLayout, pad0), 17);
        assert_eq!(offset_of!(MapperFrameLayout, pad1), 20);
        assert_eq!(offset_of!(MapperFrameLayout, nic_id_hi), 32);
        assert_eq!(offset_of!(MapperFrameLayout, nic_id_lo), 36);
        assert_eq!(offset_of!(MapperFrameLayout, serial), 40);
        assert_eq!(offset_of!(MapperFrameLayout, pad2), 44);
    }

    #[test]
    fn views_read_big_endian() {
        let mut bytes = [0u8; 16];
        bytes[0] = 42;
        bytes[1] = 7;
        bytes[2..4].copy_from_slice(&[0x12, 0x34]);
        bytes[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let (h, rest) = PullReplyHeader::ref_from_prefix(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h.ptype, 42);
        assert_eq!(h.frame_seqnum, 7);
        assert_eq!(h.frame_length.get(), 0x1234);
        assert_eq!(h.msg_offset.get(), 0xdead_beef);
    }
}
