//! The peer table: every host the backend can address, indexed by u16.
//! The local host is a peer too (the intra-node shortcut applies to it).

use mx_proto::msg::control::PeerInfo;

/// Most peers (indices 0..MAX_PEERS; 0xFFFF means "unknown" on the wire).
pub const MAX_PEERS: usize = 0xfffe;

#[derive(Debug, Clone)]
struct Peer {
    nic_id: u64,
    hostname: String,
    local: bool,
}

/// Peers by index, with look-ups by address and by hostname.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: Vec<Peer>,
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
        if let Some(i) = self.index_of(nic_id) {
            if !hostname.is_empty() {
                self.peers[i as usize].hostname = hostname.to_string();
            }
            return Some(i);
        }
        if self.peers.len() >= MAX_PEERS {
            return None;
        }
        self.peers.push(Peer {
            nic_id,
            hostname: hostname.to_string(),
            local,
        });
        Some((self.peers.len() - 1) as u16)
    }

    /// Index of the peer with this address.
    pub fn index_of(&self, nic_id: u64) -> Option<u16> {
        self.peers
            .iter()
            .position(|p| p.nic_id == nic_id)
            .map(|i| i as u16)
    }

    /// Whether `index` names this host.
    pub fn is_local(&self, index: u16) -> bool {
        self.peers.get(index as usize).is_some_and(|p| p.local)
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
        let i = self.peers.iter().position(|p| p.hostname == hostname)?;
        self.info(i as u16)
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
        assert_eq!(t.add(0x0200_0000_0002, "b:0", false), Some(1));
        assert_eq!(t.by_hostname("b:0").unwrap().nic_id, 0x0200_0000_0002);
        assert_eq!(t.by_nic_id(0x0200_0000_0001).unwrap().hostname, "a:0");
        assert!(t.info(9).is_none());
    }
}
