//! The control path of the Xen platform: two rings in the pages the guest
//! grants at the handshake, carrying frames that hold one control message
//! and its resources (grant-reference lists and event-channel ports).
//!
//! # Control region
//!
//! A [`crate::ring`] control page with ring 0 (guest → host, [`REQ_SLOTS`]
//! slots) and ring 1 (host → guest, [`RSP_SLOTS`] slots) of 4096-byte slots:
//! 21 pages in all, notified through one event channel.
//!
//! # Frames
//!
//! A frame spans one or more consecutive slots and is published with one
//! producer-index store, so a consumer that sees its first slot sees all of
//! it. All fields little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, 1 |
//! | 1 | 1 | kind: 1 data (a control message for the layer above), 2 pool (platform-internal: the guest's bulk-copy pool), 3 peer (a control message with a peer channel's hand-over, see below) |
//! | 2 | 2 | number of resources `n` (≤ [`MAX_RESOURCES`]) |
//! | 4 | 4 | body length `b` (≤ [`MAX_CONTROL_MSG`]) |
//! | 8 | 4 | number of grant references `r` |
//! | 12 | 4 | number of slots the frame spans |
//! | 16 | 8n | resources in slot order: kind (u8: 1 pages, 2 event), 3 bytes zero, u32 value (pages: page count; event: the guest's port) |
//! | 16+8n | b | body |
//! | 16+8n+b | 4r | grant references of every pages resource, in slot order |
//!
//! The page counts must add up to `r`, and the frame must fit its slots.
//!
//! A **peer** frame carries a peer channel between two guests: exactly two
//! resources, the channel's pages (granted to the other guest, not to the
//! host) and an unbound port for the other guest, and a body that starts
//! with the other domain's id (u16, then 2 bytes zero) followed by the
//! control message. Guest → host, that domain is the grantee the guest
//! says it granted to; host → guest, it is the granting domain, as the host
//! knows it from the sender's device path.
//! The receiver copies the frame out of the ring whole, then validates the
//! copy; any violation is `InvalidData` (the peer is broken).

use std::io;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::platform::{MAX_CONTROL_MSG, MAX_RESOURCES, PAGE_SIZE};
use crate::ring::{Consumer, Direction, Layout, Notify, Producer, PushError, RingError};

/// Bytes per control slot.
pub const CTL_SLOT: usize = 4096;
/// Slots of the guest → host ring.
pub const REQ_SLOTS: u32 = 16;
/// Slots of the host → guest ring.
pub const RSP_SLOTS: u32 = 4;
/// Ring number of the request ring.
pub const RING_REQ: usize = 0;
/// Ring number of the reply ring.
pub const RING_RSP: usize = 1;

const VERSION: u8 = 1;
const HEADER: usize = 16;
const RES_LEN: usize = 8;
const RES_PAGES: u8 = 1;
const RES_EVENT: u8 = 2;

/// One control slot.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CtlSlot(pub [u8; CTL_SLOT]);

/// The layout of the control region.
pub fn layout() -> Layout {
    let mut l = Layout::new();
    l.add_ring(Direction::FrontToBack, CTL_SLOT as u32, REQ_SLOTS)
        .expect("static control layout");
    l.add_ring(Direction::BackToFront, CTL_SLOT as u32, RSP_SLOTS)
        .expect("static control layout");
    l
}

/// Pages of the control region.
pub fn region_pages() -> usize {
    layout().region_len() / PAGE_SIZE
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A control message for the layer above.
    Data = 1,
    /// The guest's bulk-copy pool (one pages resource, empty body).
    Pool = 2,
    /// A control message with a peer channel's hand-over (see the module
    /// docs); [`encode_peer`] and [`Frame::peer`].
    Peer = 3,
}

/// Bytes in front of the control message in a peer frame's body.
pub const PEER_PREFIX: usize = 4;

/// A resource as it travels: grant references or a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResDesc {
    /// Pages, by grant reference.
    Pages(Vec<u32>),
    /// An unbound event-channel port of the guest.
    Event(u32),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The message body.
    pub body: Vec<u8>,
    /// The resources, by slot.
    pub res: Vec<ResDesc>,
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn too_long(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Encodes a frame, padded to whole slots; at most `max_slots` slots.
///
/// # Errors
/// `InvalidInput` if the body, the resource list or the whole frame is
/// too long.
pub fn encode(
    kind: FrameKind,
    body: &[u8],
    res: &[ResDesc],
    max_slots: u32,
) -> io::Result<Vec<u8>> {
    if body.len() > MAX_CONTROL_MSG {
        return Err(too_long("control message too long"));
    }
    if res.len() > MAX_RESOURCES {
        return Err(too_long("too many resources"));
    }
    let nrefs: usize = res
        .iter()
        .map(|r| match r {
            ResDesc::Pages(p) => p.len(),
            ResDesc::Event(_) => 0,
        })
        .sum();
    let total = HEADER + RES_LEN * res.len() + body.len() + 4 * nrefs;
    let slots = total.div_ceil(CTL_SLOT);
    if slots > max_slots as usize {
        return Err(too_long("control frame does not fit the ring"));
    }
    let mut f = vec![0u8; slots * CTL_SLOT];
    f[0] = VERSION;
    f[1] = kind as u8;
    f[2..4].copy_from_slice(&(res.len() as u16).to_le_bytes());
    f[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    f[8..12].copy_from_slice(&(nrefs as u32).to_le_bytes());
    f[12..16].copy_from_slice(&(slots as u32).to_le_bytes());
    let mut at = HEADER;
    for r in res {
        let (k, v) = match r {
            ResDesc::Pages(p) => (RES_PAGES, p.len() as u32),
            ResDesc::Event(port) => (RES_EVENT, *port),
        };
        f[at] = k;
        f[at + 4..at + 8].copy_from_slice(&v.to_le_bytes());
        at += RES_LEN;
    }
    f[at..at + body.len()].copy_from_slice(body);
    at += body.len();
    for r in res {
        if let ResDesc::Pages(p) = r {
            for g in p {
                f[at..at + 4].copy_from_slice(&g.to_le_bytes());
                at += 4;
            }
        }
    }
    Ok(f)
}

/// The number of slots a frame spans, from its first slot.
///
/// # Errors
/// `InvalidData` if the header is malformed or claims more than
/// `max_slots` slots.
pub fn frame_slots(first: &[u8], max_slots: u32) -> io::Result<usize> {
    if first.len() < HEADER || first[0] != VERSION {
        return Err(invalid("bad control frame header"));
    }
    let slots = u32_at(first, 12);
    if slots == 0 || slots > max_slots {
        return Err(invalid("bad control frame length"));
    }
    Ok(slots as usize)
}

/// Decodes and validates a frame copied out of the ring.
///
/// # Errors
/// `InvalidData` on any inconsistency.
pub fn decode(f: &[u8]) -> io::Result<Frame> {
    let slots = frame_slots(f, u32::MAX)?;
    if f.len() != slots * CTL_SLOT {
        return Err(invalid("control frame length mismatch"));
    }
    let kind = match f[1] {
        1 => FrameKind::Data,
        2 => FrameKind::Pool,
        3 => FrameKind::Peer,
        _ => return Err(invalid("unknown control frame kind")),
    };
    let n = u16::from_le_bytes([f[2], f[3]]) as usize;
    let body_len = u32_at(f, 4) as usize;
    let nrefs = u32_at(f, 8) as usize;
    if n > MAX_RESOURCES || body_len > MAX_CONTROL_MSG {
        return Err(invalid("control frame limits exceeded"));
    }
    let total = (nrefs as u64) * 4 + (HEADER + RES_LEN * n + body_len) as u64;
    if total > f.len() as u64 {
        return Err(invalid("control frame overruns its slots"));
    }
    let mut descs = Vec::with_capacity(n);
    let mut sum = 0usize;
    for i in 0..n {
        let at = HEADER + RES_LEN * i;
        if f[at + 1..at + 4] != [0, 0, 0] {
            return Err(invalid("bad resource descriptor"));
        }
        let v = u32_at(f, at + 4);
        match f[at] {
            RES_PAGES if v > 0 => {
                sum += v as usize;
                descs.push((RES_PAGES, v));
            }
            RES_EVENT => descs.push((RES_EVENT, v)),
            _ => return Err(invalid("bad resource descriptor")),
        }
    }
    if sum != nrefs {
        return Err(invalid("grant reference count mismatch"));
    }
    let body_at = HEADER + RES_LEN * n;
    let body = f[body_at..body_at + body_len].to_vec();
    let mut at = body_at + body_len;
    let mut res = Vec::with_capacity(n);
    for (k, v) in descs {
        if k == RES_PAGES {
            let refs = (0..v as usize).map(|i| u32_at(f, at + 4 * i)).collect();
            at += 4 * v as usize;
            res.push(ResDesc::Pages(refs));
        } else {
            res.push(ResDesc::Event(v));
        }
    }
    if kind == FrameKind::Pool
        && !(body.is_empty() && res.len() == 1 && matches!(res[0], ResDesc::Pages(_)))
    {
        return Err(invalid("malformed pool frame"));
    }
    if kind == FrameKind::Peer
        && !(body.len() >= PEER_PREFIX
            && body[2..PEER_PREFIX] == [0, 0]
            && matches!(res.as_slice(), [ResDesc::Pages(_), ResDesc::Event(_)]))
    {
        return Err(invalid("malformed peer frame"));
    }
    Ok(Frame { kind, body, res })
}

/// Encodes a peer frame: control message `msg` with the channel's pages
/// `refs` and port `port`, naming domain `domid` (see the module docs).
///
/// # Errors
/// `InvalidInput` if `msg` is longer than [`MAX_CONTROL_MSG`] less the
/// prefix, or the frame does not fit `max_slots`.
pub fn encode_peer(
    domid: u16,
    msg: &[u8],
    refs: &[u32],
    port: u32,
    max_slots: u32,
) -> io::Result<Vec<u8>> {
    if msg.len() + PEER_PREFIX > MAX_CONTROL_MSG {
        return Err(too_long("control message too long for a peer frame"));
    }
    let mut body = Vec::with_capacity(PEER_PREFIX + msg.len());
    body.extend_from_slice(&domid.to_le_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(msg);
    encode(
        FrameKind::Peer,
        &body,
        &[ResDesc::Pages(refs.to_vec()), ResDesc::Event(port)],
        max_slots,
    )
}

/// A peer channel's hand-over as a peer frame carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerParts<'a> {
    /// The other domain the frame names.
    pub domid: u16,
    /// The control message.
    pub msg: &'a [u8],
    /// The channel's grant references.
    pub refs: &'a [u32],
    /// The unbound port.
    pub port: u32,
}

impl Frame {
    /// The parts of a peer frame (`None` for other kinds); [`decode`]
    /// checked the shape.
    pub fn peer(&self) -> Option<PeerParts<'_>> {
        match (self.kind, self.res.as_slice()) {
            (FrameKind::Peer, [ResDesc::Pages(refs), ResDesc::Event(port)]) => Some(PeerParts {
                domid: u16::from_le_bytes([self.body[0], self.body[1]]),
                msg: &self.body[PEER_PREFIX..],
                refs,
                port: *port,
            }),
            _ => None,
        }
    }
}

fn ring_err(e: RingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Pushes an encoded frame (whole slots) and publishes it in one store.
///
/// # Errors
/// `WouldBlock` if the ring has not room for all of it now (nothing is
/// written); `InvalidData` if the peer corrupted the ring.
pub fn push_frame<K>(prod: &mut Producer<CtlSlot, K>, frame: &[u8]) -> io::Result<Notify> {
    let slots = frame.len() / CTL_SLOT;
    if prod.free_slots().map_err(ring_err)? < slots as u32 {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    let mut s = CtlSlot([0; CTL_SLOT]);
    for chunk in frame.chunks_exact(CTL_SLOT) {
        s.0.copy_from_slice(chunk);
        match prod.push(&s) {
            Ok(()) => {}
            Err(PushError::Full) => return Err(invalid("control ring lost its room")),
            Err(PushError::Ring(e)) => return Err(ring_err(e)),
        }
    }
    Ok(prod.publish())
}

/// Pops one whole frame (copied out), or `None` if the ring is empty.
///
/// # Errors
/// `InvalidData` if the peer corrupted the ring or published part of a frame.
pub fn pop_frame<K>(cons: &mut Consumer<CtlSlot, K>) -> io::Result<Option<Vec<u8>>> {
    let Some(first) = cons.pop().map_err(ring_err)? else {
        return Ok(None);
    };
    let slots = frame_slots(&first.0, cons.capacity())?;
    let mut f = Vec::with_capacity(slots * CTL_SLOT);
    f.extend_from_slice(&first.0);
    for _ in 1..slots {
        match cons.pop().map_err(ring_err)? {
            Some(s) => f.extend_from_slice(&s.0),
            None => return Err(invalid("control frame published in part")),
        }
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{ControlPage, HeapRegion, Side};
    use std::sync::Arc;

    #[test]
    fn frames_round_trip() {
        let res = vec![
            ResDesc::Pages(vec![8, 9, 10]),
            ResDesc::Event(17),
            ResDesc::Pages((100..1300).collect()),
        ];
        let body: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let f = encode(FrameKind::Data, &body, &res, REQ_SLOTS).unwrap();
        assert_eq!(f.len() % CTL_SLOT, 0);
        assert_eq!(frame_slots(&f, REQ_SLOTS).unwrap(), f.len() / CTL_SLOT);
        let d = decode(&f).unwrap();
        assert_eq!(d.kind, FrameKind::Data);
        assert_eq!(d.body, body);
        assert_eq!(d.res, res);
        let empty = encode(FrameKind::Data, b"", &[], RSP_SLOTS).unwrap();
        assert_eq!(empty.len(), CTL_SLOT);
        assert_eq!(decode(&empty).unwrap().body, b"");
        let pool = encode(FrameKind::Pool, b"", &[ResDesc::Pages(vec![1])], 1).unwrap();
        assert_eq!(decode(&pool).unwrap().kind, FrameKind::Pool);
    }

    #[test]
    fn limits_and_lies_are_refused() {
        assert!(encode(FrameKind::Data, &[0; MAX_CONTROL_MSG + 1], &[], 16).is_err());
        let many = vec![ResDesc::Event(1); MAX_RESOURCES + 1];
        assert!(encode(FrameKind::Data, b"", &many, 16).is_err());
        let huge = [ResDesc::Pages(vec![0; 20_000])];
        assert!(encode(FrameKind::Data, b"", &huge, REQ_SLOTS).is_err());

        let good = encode(FrameKind::Data, b"hi", &[ResDesc::Pages(vec![1, 2])], 16).unwrap();
        let corrupt = |at: usize, v: u8| {
            let mut f = good.clone();
            f[at] = v;
            decode(&f).map(drop)
        };
        assert!(corrupt(0, 2).is_err(), "version");
        assert!(corrupt(1, 9).is_err(), "kind");
        assert!(corrupt(2, 17).is_err(), "resource count");
        assert!(corrupt(8, 3).is_err(), "ref count");
        assert!(corrupt(12, 2).is_err(), "slot count");
        assert!(corrupt(16, 7).is_err(), "resource kind");
        assert!(corrupt(17, 1).is_err(), "reserved bytes");
        assert!(corrupt(20, 0).is_err(), "zero pages");
        let mut f = good.clone();
        f[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(decode(&f).is_err(), "body too long");
        let mut f = good.clone();
        f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        f[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&f).is_err(), "refs overrun");
        let bad_pool = encode(FrameKind::Pool, b"x", &[ResDesc::Pages(vec![1])], 1).unwrap();
        assert!(decode(&bad_pool).is_err());
    }

    #[test]
    fn peer_frames_carry_the_domain_and_nothing_else() {
        let refs: Vec<u32> = (7..157).collect();
        let f = encode_peer(9, b"open", &refs, 33, RSP_SLOTS).unwrap();
        let d = decode(&f).unwrap();
        let p = d.peer().unwrap();
        assert_eq!(
            (p.domid, p.msg, p.refs, p.port),
            (9, &b"open"[..], &refs[..], 33)
        );
        assert!(encode_peer(9, &[0; MAX_CONTROL_MSG - PEER_PREFIX + 1], &refs, 1, 16).is_err());
        // A data frame is not a peer frame, and a peer frame of the wrong
        // shape does not decode.
        let data = encode(FrameKind::Data, b"x", &[], 1).unwrap();
        assert!(decode(&data).unwrap().peer().is_none());
        let bad = |body: &[u8], res: &[ResDesc]| {
            decode(&encode(FrameKind::Peer, body, res, 4).unwrap()).is_err()
        };
        let two = [ResDesc::Pages(vec![1]), ResDesc::Event(2)];
        assert!(bad(&[1, 0], &two), "no room for the prefix");
        assert!(bad(&[1, 0, 1, 0], &two), "reserved prefix bytes");
        assert!(bad(&[1, 0, 0, 0], &two[..1]), "no port");
        assert!(
            bad(&[1, 0, 0, 0], &[ResDesc::Event(2), ResDesc::Pages(vec![1])]),
            "order"
        );
        assert!(!bad(&[1, 0, 0, 0], &two));
    }

    #[test]
    fn frames_cross_the_ring_whole() {
        let l = layout();
        assert_eq!(region_pages(), 21);
        let region = Arc::new(HeapRegion::new(l.region_len()));
        let front = ControlPage::init(region.clone(), &l, Side::Frontend).unwrap();
        let back = ControlPage::attach(region.clone(), &l, Side::Backend).unwrap();
        let mut tx = front.producer::<CtlSlot>(RING_REQ).unwrap();
        let mut rx = back.consumer::<CtlSlot>(RING_REQ).unwrap();
        let big = encode(
            FrameKind::Data,
            &[7; 4000],
            &[ResDesc::Pages((0..3000).collect())],
            REQ_SLOTS,
        )
        .unwrap();
        let slots = big.len() / CTL_SLOT;
        assert_eq!(slots, 4);
        for _ in 0..4 {
            let _ = push_frame(&mut tx, &big).unwrap();
        }
        // 16 of 16 slots used: the next one does not fit.
        assert_eq!(
            push_frame(&mut tx, &big).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for _ in 0..4 {
            let f = pop_frame(&mut rx).unwrap().unwrap();
            assert_eq!(decode(&f).unwrap().body, vec![7; 4000]);
        }
        let _ = rx.release();
        assert!(pop_frame(&mut rx).unwrap().is_none());
        let _ = push_frame(&mut tx, &big).unwrap();
        assert!(pop_frame(&mut rx).unwrap().is_some());
    }
}
