//! The peer table: every host the backend can address, indexed by u16.
//! The local host is a peer too (the intra-node shortcut applies to it).
//!
//! Besides the address and hostname the control path serves, each remote
//! peer carries what the wire side learned about it (spec section 6): its
//! own index for us (the `dst_src_peer_index` our frames to it carry,
//! learned from its CONNECT and HOST_QUERY/HOST_REPLY), the serial of its
//! mapper, and whether a HOST_QUERY is due. Peers are never removed, so an
//! index stays valid for the life of the backend: a host learned from the
//! wire only gets an index once it has answered a HOST_QUERY (until then
//! it is a candidate of [`crate::wire::discovery`], which has no index), and the
//! number of such peers is bounded ([`PeerTable::add_discovered`]).

use mx_proto::msg::control::PeerInfo;
use mxoe_wire::{Head, NicId, PeerIndex};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::time::Instant;

/// Most peers (indices 0..MAX_PEERS; 0xFFFF means "unknown" on the wire).
pub const MAX_PEERS: usize = 0xfffe;

#[derive(Debug, Clone)]
struct Peer {
    nic_id: u64,
    hostname: String,
    local: bool,
    /// The peer's index for us (unknown until learned).
    reverse: PeerIndex,
    /// The serial of the peer's last mapper announcement.
    serial: Option<u32>,
    /// When to send the next HOST_QUERY (`None`: not needed).
    query_at: Option<Instant>,
    /// HOST_QUERYs left before we stop asking (a peer that went away).
    query_tries: u32,
}

/// HOST_QUERYs sent to a known peer before giving up (until its next
/// restart): at the default 5 s interval, half a minute.
pub const QUERY_TRIES: u32 = 6;

/// Peers by index, with look-ups by address and by hostname.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: Vec<Peer>,
    by_addr: HashMap<u64, u16>,
    /// Indices by hostname; several peers may claim a name, the lowest
    /// index (static peers come first) answers.
    by_name: HashMap<String, BTreeSet<u16>>,
    discovered: usize,
}

/// How a received frame's sender was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// By the head's peer index, which names the frame's source MAC.
    ByIndex(u16),
    /// By the source MAC (the head's index was unknown, out of range or
    /// named another peer).
    ByMac(u16),
}

impl Sender {
    /// The sender's index in our table.
    pub fn index(self) -> u16 {
        match self {
            Sender::ByIndex(i) | Sender::ByMac(i) => i,
        }
    }
}

impl PeerTable {
    /// A table holding only this host.
    pub fn with_self(nic_id: u64, hostname: &str) -> Self {
        let mut t = PeerTable::default();
        t.add(nic_id, hostname, true);
        t
    }

    /// Add a peer (or update its hostname); returns its index, or `None`
    /// when the table is full.
    pub fn add(&mut self, nic_id: u64, hostname: &str, local: bool) -> Option<u16> {
        self.insert(nic_id, hostname, local, false)
    }

    /// Add a peer learned from the wire (it answered a HOST_QUERY), unless
    /// `max` such peers are known already; returns its index (an existing
    /// peer's when the address is known).
    pub fn add_discovered(&mut self, nic_id: u64, hostname: &str, max: usize) -> Option<u16> {
        if self.index_of(nic_id).is_none() && self.discovered >= max {
            return None;
        }
        self.insert(nic_id, hostname, false, true)
    }

    /// Number of peers learned from the wire.
    pub fn discovered(&self) -> usize {
        self.discovered
    }

    fn insert(&mut self, nic_id: u64, hostname: &str, local: bool, disc: bool) -> Option<u16> {
        if let Some(i) = self.index_of(nic_id) {
            if !hostname.is_empty() {
                self.set_hostname(i, hostname);
            }
            return Some(i);
        }
        if self.peers.len() >= MAX_PEERS {
            return None;
        }
        let i = self.peers.len() as u16;
        self.by_addr.insert(nic_id, i);
        self.peers.push(Peer {
            nic_id,
            hostname: String::new(),
            local,
            reverse: PeerIndex::UNKNOWN,
            serial: None,
            query_at: None,
            query_tries: 0,
        });
        self.discovered += usize::from(disc);
        self.set_hostname(i, hostname);
        Some(i)
    }

    /// Index of the peer with this address.
    pub fn index_of(&self, nic_id: u64) -> Option<u16> {
        self.by_addr.get(&nic_id).copied()
    }

    /// Index of the peer with this MAC.
    pub fn index_of_mac(&self, mac: [u8; 6]) -> Option<u16> {
        self.index_of(NicId::from_mac(mac).raw())
    }

    /// Whether `index` names this host.
    pub fn is_local(&self, index: u16) -> bool {
        self.peers.get(index as usize).is_some_and(|p| p.local)
    }

    /// The MAC of remote peer `index` (`None` for unknown or local peers).
    pub fn mac_of(&self, index: u16) -> Option<[u8; 6]> {
        let p = self.peers.get(index as usize)?;
        if p.local {
            return None;
        }
        NicId::new(p.nic_id).map(NicId::to_mac)
    }

    /// The peer's index for us, as learned ([`PeerIndex::UNKNOWN`] if not).
    pub fn reverse(&self, index: u16) -> PeerIndex {
        self.peers
            .get(index as usize)
            .map_or(PeerIndex::UNKNOWN, |p| p.reverse)
    }

    /// Learn the peer's index for us (ignored when `theirs` is unknown).
    pub fn set_reverse(&mut self, index: u16, theirs: PeerIndex) {
        if theirs.is_unknown() {
            return;
        }
        if let Some(p) = self.peers.get_mut(index as usize) {
            p.reverse = theirs;
        }
    }

    /// Who sent a frame: the head's peer index if it is in range and names
    /// the frame's source MAC, else the peer with the source MAC; `None`
    /// for unknown senders (and for our own address).
    pub fn sender(&self, head: &Head) -> Option<Sender> {
        let by_mac = || {
            self.index_of_mac(head.src)
                .filter(|&i| !self.is_local(i))
                .map(Sender::ByMac)
        };
        match head.peer_index.get() {
            Some(i) => match self.peers.get(i as usize) {
                Some(p) if !p.local && p.nic_id == NicId::from_mac(head.src).raw() => {
                    Some(Sender::ByIndex(i))
                }
                _ => by_mac(),
            },
            None => by_mac(),
        }
    }

    /// Record a mapper serial of `index`; true if it differs from the one
    /// seen before (the peer's mapper, hence probably its node, restarted).
    pub fn note_serial(&mut self, index: u16, serial: u32) -> bool {
        let Some(p) = self.peers.get_mut(index as usize) else {
            return false;
        };
        let changed = p.serial.is_some_and(|s| s != serial);
        p.serial = Some(serial);
        changed
    }

    /// Forget what the peer knew about us (it restarted): its index for us.
    pub fn forget_reverse(&mut self, index: u16) {
        if let Some(p) = self.peers.get_mut(index as usize) {
            p.reverse = PeerIndex::UNKNOWN;
        }
    }

    /// Schedule a HOST_QUERY to `index` at `at` (`None`: stop querying),
    /// with a fresh allowance of [`QUERY_TRIES`].
    pub fn set_query(&mut self, index: u16, at: Option<Instant>) {
        if let Some(p) = self.peers.get_mut(index as usize) {
            if !p.local {
                p.query_at = at;
                p.query_tries = QUERY_TRIES;
            }
        }
    }

    /// A HOST_QUERY to `index` was sent: the next one is due at `next`,
    /// unless the allowance is used up (then the peer is left alone until
    /// something, such as a restart, schedules it again).
    pub fn query_sent(&mut self, index: u16, next: Instant) {
        if let Some(p) = self.peers.get_mut(index as usize) {
            p.query_tries = p.query_tries.saturating_sub(1);
            p.query_at = (p.query_tries > 0).then_some(next);
        }
    }

    /// Peers whose HOST_QUERY is due at `now`.
    pub fn queries_due(&self, now: Instant) -> impl Iterator<Item = u16> + '_ {
        self.peers
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.query_at.is_some_and(|t| t <= now))
            .map(|(i, _)| i as u16)
    }

    /// The earliest scheduled HOST_QUERY.
    pub fn next_query(&self) -> Option<Instant> {
        self.peers.iter().filter_map(|p| p.query_at).min()
    }

    /// Set a peer's hostname.
    pub fn set_hostname(&mut self, index: u16, hostname: &str) {
        let Some(p) = self.peers.get_mut(index as usize) else {
            return;
        };
        if p.hostname == hostname {
            return;
        }
        let old = std::mem::replace(&mut p.hostname, hostname.to_string());
        if let Some(set) = self.by_name.get_mut(&old) {
            set.remove(&index);
            if set.is_empty() {
                self.by_name.remove(&old);
            }
        }
        if !hostname.is_empty() {
            self.by_name
                .entry(hostname.to_string())
                .or_default()
                .insert(index);
        }
    }

    /// Describe a peer by index.
    pub fn info(&self, index: u16) -> Option<PeerInfo> {
        self.peers.get(index as usize).map(|p| PeerInfo {
            index,
            nic_id: p.nic_id,
            hostname: p.hostname.clone(),
            local: p.local,
        })
    }

    /// Describe a peer by exact hostname.
    pub fn by_hostname(&self, hostname: &str) -> Option<PeerInfo> {
        if hostname.is_empty() {
            return None;
        }
        let i = *self.by_name.get(hostname)?.first()?;
        self.info(i)
    }

    /// Describe a peer by address.
    pub fn by_nic_id(&self, nic_id: u64) -> Option<PeerInfo> {
        self.info(self.index_of(nic_id)?)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// Parse a MAC address `aa:bb:cc:dd:ee:ff` (or with `-`) into a board address.
pub fn parse_mac(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(NicId::from_mac(mac).raw())
}

/// Parse a static peers file: one `MAC hostname` per line (the hostname
/// usually `<node>:<iface index>`), blank lines and `#` comments ignored.
///
/// # Errors
/// `InvalidData` naming the first bad line (bad MAC, missing hostname,
/// hostname longer than 79 bytes, extra fields).
pub fn parse_peers(text: &str) -> io::Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peers file line {}: {why}: {line:?}", n + 1),
            )
        };
        let mut f = line.split_whitespace();
        let mac = f.next().and_then(parse_mac).ok_or_else(|| bad("bad MAC"))?;
        let host = f.next().ok_or_else(|| bad("missing hostname"))?;
        if f.next().is_some() {
            return Err(bad("extra fields"));
        }
        if host.len() >= mxoe_wire::HOSTNAME_MAX {
            return Err(bad("hostname too long"));
        }
        out.push((mac, host.to_string()));
    }
    Ok(out)
}

/// Read a static peers file (see [`parse_peers`]).
///
/// # Errors
/// I/O errors, or `InvalidData` for a bad line.
pub fn read_peers_file(path: &Path) -> io::Result<Vec<(u64, String)>> {
    parse_peers(&std::fs::read_to_string(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let mut t = PeerTable::with_self(0x0200_0000_0001, "a:0");
        let b = t.add(0x0200_0000_0002, "", false).unwrap();
        assert_eq!(b, 1);
        assert!(t.is_local(0));
        assert!(!t.is_local(1));
        assert!(!t.is_local(7));
        assert_eq!(t.by_hostname("a:0").unwrap().index, 0);
        assert!(t.by_hostname("b:0").is_none());
        assert!(
            t.by_hostname("").is_none(),
            "unnamed peers are not found by name"
        );
        assert_eq!(t.add(0x0200_0000_0002, "b:0", false), Some(1));
        assert_eq!(t.by_hostname("b:0").unwrap().nic_id, 0x0200_0000_0002);
        assert_eq!(t.by_nic_id(0x0200_0000_0001).unwrap().hostname, "a:0");
        assert!(t.info(9).is_none());
        assert_eq!(t.mac_of(1), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(t.mac_of(0), None, "the local host is not reached by MAC");
    }

    #[test]
    fn sender_by_index_then_mac() {
        let mut t = PeerTable::with_self(0x0200_0000_0001, "a:0");
        t.add(0x0200_0000_0002, "b:0", false);
        t.add(0x0200_0000_0003, "c:0", false);
        let head = |src: [u8; 6], idx: u16| Head {
            dst: [2, 0, 0, 0, 0, 1],
            src,
            peer_index: PeerIndex(idx),
        };
        let b = [2, 0, 0, 0, 0, 2];
        assert_eq!(t.sender(&head(b, 1)), Some(Sender::ByIndex(1)));
        assert_eq!(t.sender(&head(b, 0xffff)), Some(Sender::ByMac(1)));
        // An index naming another peer or out of range: the MAC decides.
        assert_eq!(t.sender(&head(b, 2)), Some(Sender::ByMac(1)));
        assert_eq!(t.sender(&head(b, 77)), Some(Sender::ByMac(1)));
        // Our own index or address, or an unknown MAC: nobody.
        assert_eq!(t.sender(&head([2, 0, 0, 0, 0, 1], 0)), None);
        assert_eq!(t.sender(&head([2, 0, 0, 0, 0, 9], 1)), None);
    }

    #[test]
    fn reverse_serial_query() {
        let mut t = PeerTable::with_self(0x0200_0000_0001, "a:0");
        let b = t.add(0x0200_0000_0002, "", false).unwrap();
        assert!(t.reverse(b).is_unknown());
        t.set_reverse(b, PeerIndex(5));
        t.set_reverse(b, PeerIndex::UNKNOWN);
        assert_eq!(t.reverse(b), PeerIndex(5));
        assert!(!t.note_serial(b, 10));
        assert!(!t.note_serial(b, 10));
        assert!(t.note_serial(b, 11));
        t.forget_reverse(b);
        assert!(t.reverse(b).is_unknown());
        let now = Instant::now();
        t.set_query(b, Some(now));
        t.set_query(0, Some(now)); // never query ourselves
        assert_eq!(t.queries_due(now).collect::<Vec<_>>(), vec![b]);
        assert_eq!(t.next_query(), Some(now));
        t.set_query(b, None);
        assert_eq!(t.next_query(), None);
    }

    #[test]
    fn peers_file() {
        let text =
            "# the fabric\n\n02:00:00:00:00:02 node2:0\n02-00-00-00-00-03   node3:0 # comment\n";
        let v = parse_peers(text).unwrap();
        assert_eq!(
            v,
            vec![
                (0x0200_0000_0002, "node2:0".to_string()),
                (0x0200_0000_0003, "node3:0".to_string())
            ]
        );
        assert!(parse_peers("02:00:00:00:00 x:0").is_err());
        assert!(parse_peers("02:00:00:00:00:zz x:0").is_err());
        assert!(parse_peers("02:00:00:00:00:01").is_err());
        assert!(parse_peers("02:00:00:00:00:01 a b").is_err());
        assert!(parse_peers(&format!("02:00:00:00:00:01 {}", "x".repeat(80))).is_err());
        assert_eq!(parse_mac("ff:ff:ff:ff:ff:ff"), Some(0xffff_ffff_ffff));
    }
}
