//! Dynamic discovery of peers (spec section 6), the omxoed way.
//!
//! - Every backend with a NIC broadcasts mapper announcements (RAW frames
//!   carrying its board address and a random serial per run): a burst of 8,
//!   one second apart, then one every 180 seconds. A burst restarts when a
//!   new peer or a new serial of a known peer appears, so that a node that
//!   just came up learns everybody within a second.
//! - A new address is added to the peer table without a hostname, and a
//!   HOST_QUERY is unicast to it every 5 seconds until its HOST_REPLY
//!   (which must echo our query magic) gives the name. Queries and replies
//!   carry the sender's index for the receiver, which is how each side
//!   learns the `dst_src_peer_index` to put on its frames.
//! - A known peer announcing a new serial restarted: the index it had for
//!   us is forgotten and it is queried again (which teaches it ours).
//!
//! Queries are answered (in the receive path) only when addressed to our
//! own MAC and coming from a known peer.

use crate::config::WireTiming;
use crate::counters::{NicCounter, NicCounters};
use crate::peers::PeerTable;
use crate::wire::Tx;
use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::HOST_QUERY_MAGIC;
use std::time::Instant;

/// Mapper and host-query state of a board.
#[derive(Debug)]
pub struct Discovery {
    enabled: bool,
    serial: u32,
    burst_left: u32,
    next_announce: Option<Instant>,
    magic: u32,
}

impl Discovery {
    /// Discovery with our mapper `serial`; the first burst starts at `now`
    /// when `enabled`.
    pub fn new(enabled: bool, serial: u32, burst_count: u32, now: Instant) -> Self {
        Discovery {
            enabled,
            serial,
            burst_left: burst_count,
            next_announce: enabled.then_some(now),
            magic: HOST_QUERY_MAGIC,
        }
    }

    /// Our mapper serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The magic our HOST_QUERY frames carry (replies must echo it).
    pub fn magic(&self) -> u32 {
        self.magic
    }

    fn restart_burst(&mut self, t: &WireTiming, now: Instant) {
        if self.enabled {
            self.burst_left = t.burst_count;
            self.next_announce = Some(now);
        }
    }

    /// Send what is due at `now`: an announcement, host queries.
    pub fn poll(&mut self, t: &WireTiming, now: Instant, peers: &mut PeerTable, tx: &mut Vec<Tx>) {
        if self.next_announce.is_some_and(|at| at <= now) {
            tx.push(Tx::Announce);
            self.burst_left = self.burst_left.saturating_sub(1);
            let wait = if self.burst_left > 0 {
                t.announce_burst
            } else {
                t.announce_steady
            };
            self.next_announce = Some(now + wait);
        }
        let due: Vec<u16> = peers.queries_due(now).collect();
        for peer in due {
            tx.push(Tx::HostQuery { peer });
            peers.set_query(peer, Some(now + t.host_query));
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_timer(&self, peers: &PeerTable) -> Option<Instant> {
        match (self.next_announce, peers.next_query()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A received RAW frame: learn the announced board.
    pub fn on_announce(
        &mut self,
        t: &WireTiming,
        c: &NicCounters,
        peers: &mut PeerTable,
        our_nic_id: u64,
        now: Instant,
        frame: &[u8],
    ) {
        let Ok(a) = MapperAnnounce::decode(frame) else {
            c.bump(NicCounter::DropBadMapper);
            return;
        };
        let nic_id = a.nic_id.raw();
        if nic_id == our_nic_id
            || nic_id == 0
            || nic_id == 0xffff_ffff_ffff
            || a.nic_id.to_mac()[0] & 1 != 0
        {
            c.bump(NicCounter::DropBadMapper);
            return;
        }
        match peers.index_of(nic_id) {
            None => {
                let Some(i) = peers.add(nic_id, "", false) else {
                    return; // table full
                };
                c.bump(NicCounter::PeersDiscovered);
                peers.note_serial(i, a.serial);
                peers.set_query(i, Some(now));
                self.restart_burst(t, now);
            }
            Some(i) if peers.is_local(i) => {}
            Some(i) => {
                if peers.note_serial(i, a.serial) {
                    c.bump(NicCounter::PeerRestarts);
                    peers.forget_reverse(i);
                    peers.set_query(i, Some(now));
                    self.restart_burst(t, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxoe_wire::NicId;
    use std::time::Duration;

    fn announce(mac: [u8; 6], serial: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        MapperAnnounce {
            src: mac,
            nic_id: NicId::from_mac(mac),
            serial,
        }
        .emit(&mut b)
        .unwrap();
        b
    }

    #[test]
    fn burst_then_steady_and_restart_on_news() {
        let t = WireTiming::default();
        let c = NicCounters::default();
        let t0 = Instant::now();
        let mut d = Discovery::new(true, 42, t.burst_count, t0);
        let mut peers = PeerTable::with_self(0x0200_0000_0001, "a:0");
        let mut tx = Vec::new();
        let mut sent = vec![];
        let mut now = t0;
        for _ in 0..10 {
            d.poll(&t, now, &mut peers, &mut tx);
            sent.extend(tx.drain(..).map(|_| now - t0));
            now = d.next_timer(&peers).unwrap();
        }
        let secs: Vec<u64> = sent.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 3, 4, 5, 6, 7, 187, 367]);
        // A new peer: added unnamed, queried at once, burst restarted.
        let b = [2, 0, 0, 0, 0, 2];
        d.on_announce(&t, &c, &mut peers, 0x0200_0000_0001, now, &announce(b, 7));
        assert_eq!(c.get(NicCounter::PeersDiscovered), 1);
        let i = peers.index_of_mac(b).unwrap();
        assert_eq!(peers.info(i).unwrap().hostname, "");
        assert_eq!(d.next_timer(&peers), Some(now));
        d.poll(&t, now, &mut peers, &mut tx);
        assert!(matches!(tx[..], [Tx::Announce, Tx::HostQuery { peer }] if peer == i));
        tx.clear();
        // Re-queried every 5 s until answered.
        let later = now + Duration::from_secs(5);
        d.poll(&t, later, &mut peers, &mut tx);
        assert!(tx.iter().any(|x| matches!(x, Tx::HostQuery { .. })));
        tx.clear();
        // The same serial again is no news; a new serial is a restart.
        peers.set_reverse(i, mxoe_wire::PeerIndex(3));
        d.on_announce(&t, &c, &mut peers, 0x0200_0000_0001, later, &announce(b, 7));
        assert_eq!(c.get(NicCounter::PeerRestarts), 0);
        d.on_announce(&t, &c, &mut peers, 0x0200_0000_0001, later, &announce(b, 8));
        assert_eq!(c.get(NicCounter::PeerRestarts), 1);
        assert!(peers.reverse(i).is_unknown());
        // Our own announcement and junk are refused.
        d.on_announce(
            &t,
            &c,
            &mut peers,
            0x0200_0000_0001,
            later,
            &announce([2, 0, 0, 0, 0, 1], 1),
        );
        d.on_announce(&t, &c, &mut peers, 0x0200_0000_0001, later, &[0u8; 20]);
        assert_eq!(c.get(NicCounter::DropBadMapper), 2);
        assert_eq!(peers.len(), 2);
    }

    #[test]
    fn disabled_discovery_never_announces() {
        let t = WireTiming::default();
        let mut d = Discovery::new(false, 1, t.burst_count, Instant::now());
        let mut peers = PeerTable::with_self(1, "a:0");
        let mut tx = Vec::new();
        d.poll(&t, Instant::now(), &mut peers, &mut tx);
        assert!(tx.is_empty());
        assert_eq!(d.next_timer(&peers), None);
    }
}
