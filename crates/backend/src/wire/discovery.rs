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
//! own MAC and coming from a known peer or an announced candidate.
//!
//! Bounds, because announcements are unauthenticated broadcasts anyone on
//! the segment can forge (spec section 6 has none; see docs/DESIGN.md, "On
//! the wire"):
//! - An announced address is only a *candidate* (no peer index) until it
//!   answers a HOST_QUERY with our magic; then it enters the peer table,
//!   where indices are never reused. At most
//!   [`WireTiming::max_candidates`] candidates in all and
//!   [`WireTiming::candidates_per_source`] per source MAC; a candidate is
//!   forgotten after [`WireTiming::host_query_tries`] unanswered queries,
//!   and when the set is full a newcomer evicts the oldest candidate that
//!   has had a query and half an interval to answer it.
//! - At most [`WireTiming::query_rate`] HOST_QUERYs a second, candidates
//!   and known peers together; the rest wait (counted).
//! - At most [`WireTiming::discovered_per_source`] peers are learned
//!   from the announcements of one source MAC, and at most
//!   [`WireTiming::max_discovered`] from the wire in all; static peers (peers file, a mapper's names) are not counted
//!   and never displaced.

use super::Tx;
use crate::config::WireTiming;
use crate::counters::{NicCounter, NicCounters};
use crate::peers::PeerTable;
use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::{NicId, PeerIndex, HOST_QUERY_MAGIC};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An announced host that has not answered a HOST_QUERY yet.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Source MAC of its announcement (the per-source bound's key).
    src: [u8; 6],
    serial: u32,
    /// Queries left; forgotten when none are and the last one went unanswered.
    tries_left: u32,
    /// When the next query (or, with no tries left, the end) is due.
    due: Instant,
    /// When the first query was sent (`None`: not yet).
    first_query: Option<Instant>,
}

/// Mapper and host-query state of a board.
#[derive(Debug)]
pub struct Discovery {
    enabled: bool,
    serial: u32,
    burst_left: u32,
    next_announce: Option<Instant>,
    magic: u32,
    candidates: HashMap<u64, Candidate>,
    per_source: HashMap<[u8; 6], usize>,
    /// Peers learned so far per source MAC of their announcement (one
    /// entry per learned peer at most, so bounded by `max_discovered`).
    learned_per_source: HashMap<[u8; 6], usize>,
    /// HOST_QUERYs still allowed in the current one-second window.
    tokens: u32,
    window_end: Option<Instant>,
    /// A query waited for the next window.
    deferred: bool,
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
            candidates: HashMap::new(),
            per_source: HashMap::new(),
            learned_per_source: HashMap::new(),
            tokens: 0,
            window_end: None,
            deferred: false,
        }
    }

    /// Number of candidates (announced, not answered yet).
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Whether `nic_id` is a candidate (its HOST_QUERYs are answered).
    pub fn is_candidate(&self, nic_id: u64) -> bool {
        self.candidates.contains_key(&nic_id)
    }

    fn forget(&mut self, nic_id: u64) -> Option<Candidate> {
        let c = self.candidates.remove(&nic_id)?;
        if let Some(n) = self.per_source.get_mut(&c.src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.src);
            }
        }
        Some(c)
    }

    /// Take one HOST_QUERY from the rate budget (a window that runs out
    /// while queries are due is counted once).
    fn take_token(&mut self, t: &WireTiming, c: &NicCounters, now: Instant) -> bool {
        if self.window_end.is_none_or(|end| end <= now) {
            self.tokens = t.query_rate;
            self.window_end = Some(now + Duration::from_secs(1));
            self.deferred = false;
        }
        if self.tokens == 0 {
            if !self.deferred {
                self.deferred = true;
                c.bump(NicCounter::QueriesDeferred);
            }
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// A HOST_REPLY from `mac`, which is not in the peer table, echoing
    /// our magic with `hostname` and its index for us: a candidate that
    /// answered becomes a peer (unless too many are known). True if it
    /// was a candidate.
    #[allow(clippy::too_many_arguments)]
    pub fn on_reply(
        &mut self,
        t: &WireTiming,
        c: &NicCounters,
        peers: &mut PeerTable,
        now: Instant,
        mac: [u8; 6],
        hostname: &str,
        theirs: PeerIndex,
    ) -> bool {
        let nic_id = NicId::from_mac(mac).raw();
        let Some(cand) = self.forget(nic_id) else {
            return false;
        };
        // One source announcing many addresses that all answer (it sees
        // our queries to them and replies as each) would otherwise fill
        // every discovered slot.
        let learned = self.learned_per_source.get(&cand.src).copied().unwrap_or(0);
        if learned >= t.discovered_per_source {
            c.bump(NicCounter::DropDiscoveredPerSource);
            return true;
        }
        let Some(i) = peers.add_discovered(nic_id, hostname, t.max_discovered) else {
            c.bump(NicCounter::DropDiscoveredFull);
            return true;
        };
        *self.learned_per_source.entry(cand.src).or_insert(0) += 1;
        c.bump(NicCounter::PeersDiscovered);
        peers.note_serial(i, cand.serial);
        peers.set_reverse(i, theirs);
        // Our queries so far carried no index for it: one more teaches it
        // ours (its reply ends the querying).
        peers.set_query(i, Some(now));
        true
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
    pub fn poll(
        &mut self,
        t: &WireTiming,
        c: &NicCounters,
        now: Instant,
        peers: &mut PeerTable,
        tx: &mut Vec<Tx>,
    ) {
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
        // Nothing more can be sent before the window ends: skip the scans
        // (this runs on every received announcement).
        if self.deferred && self.window_end.is_some_and(|end| end > now) {
            return;
        }
        let due: Vec<u16> = peers.queries_due(now).collect();
        for peer in due {
            if !self.take_token(t, c, now) {
                break;
            }
            tx.push(Tx::HostQuery { peer });
            peers.query_sent(peer, now + t.host_query);
        }
        let mut due: Vec<(Instant, u64)> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.due <= now)
            .map(|(&n, c)| (c.due, n))
            .collect();
        due.sort_unstable();
        for (_, nic_id) in due {
            let Some(cand) = self.candidates.get(&nic_id).copied() else {
                continue;
            };
            if cand.tries_left == 0 {
                self.forget(nic_id);
                c.bump(NicCounter::CandidatesExpired);
                continue;
            }
            if !self.take_token(t, c, now) {
                break;
            }
            let Some(mac) = NicId::new(nic_id).map(NicId::to_mac) else {
                self.forget(nic_id);
                continue;
            };
            tx.push(Tx::HostQueryTo { mac });
            if let Some(e) = self.candidates.get_mut(&nic_id) {
                e.tries_left -= 1;
                e.due = now + t.host_query;
                e.first_query.get_or_insert(now);
            }
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_timer(&self, peers: &PeerTable) -> Option<Instant> {
        let cand = self.candidates.values().map(|c| c.due).min();
        let window = self.window_end.filter(|_| self.deferred);
        [self.next_announce, peers.next_query(), cand, window]
            .into_iter()
            .flatten()
            .min()
    }

    /// Make room for a candidate announced from `src`; false if there is none.
    fn admit(&mut self, t: &WireTiming, c: &NicCounters, src: [u8; 6], now: Instant) -> bool {
        if self.per_source.get(&src).copied().unwrap_or(0) >= t.candidates_per_source {
            c.bump(NicCounter::DropMapperPerSource);
            return false;
        }
        if self.candidates.len() < t.max_candidates {
            return true;
        }
        // Full: the oldest candidate that was queried and had half an
        // interval to answer gives way (a real host answers in a round
        // trip); if none did, the newcomer is refused.
        let grace = t.host_query / 2;
        let victim = self
            .candidates
            .iter()
            .filter_map(|(&n, c)| c.first_query.map(|f| (f, n)))
            .filter(|&(f, _)| f + grace <= now)
            .min();
        match victim {
            Some((_, n)) => {
                self.forget(n);
                c.bump(NicCounter::CandidatesEvicted);
                true
            }
            None => {
                c.bump(NicCounter::DropMapperFull);
                false
            }
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
            None if self.candidates.contains_key(&nic_id) => {
                if let Some(cand) = self.candidates.get_mut(&nic_id) {
                    cand.serial = a.serial;
                }
            }
            None => {
                if !self.admit(t, c, a.src, now) {
                    return;
                }
                self.candidates.insert(
                    nic_id,
                    Candidate {
                        src: a.src,
                        serial: a.serial,
                        tries_left: t.host_query_tries.max(1),
                        due: now,
                        first_query: None,
                    },
                );
                *self.per_source.entry(a.src).or_default() += 1;
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
            d.poll(&t, &c, now, &mut peers, &mut tx);
            sent.extend(tx.drain(..).map(|_| now - t0));
            now = d.next_timer(&peers).unwrap();
        }
        let secs: Vec<u64> = sent.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 3, 4, 5, 6, 7, 187, 367]);
        // A new host: a candidate without an index, queried at once, burst
        // restarted.
        let b = [2, 0, 0, 0, 0, 2];
        d.on_announce(&t, &c, &mut peers, 0x0200_0000_0001, now, &announce(b, 7));
        assert_eq!(c.get(NicCounter::PeersDiscovered), 0);
        assert!(peers.index_of_mac(b).is_none());
        assert!(d.is_candidate(NicId::from_mac(b).raw()));
        assert_eq!(d.next_timer(&peers), Some(now));
        d.poll(&t, &c, now, &mut peers, &mut tx);
        assert!(matches!(tx[..], [Tx::Announce, Tx::HostQueryTo { mac }] if mac == b));
        tx.clear();
        // Re-queried every 5 s until answered.
        let later = now + Duration::from_secs(5);
        d.poll(&t, &c, later, &mut peers, &mut tx);
        assert!(tx.iter().any(|x| matches!(x, Tx::HostQueryTo { .. })));
        tx.clear();
        // Its reply makes it a peer, which is queried once more (to learn
        // our index, since the queries so far carried none).
        let theirs = mxoe_wire::PeerIndex(3);
        assert!(d.on_reply(&t, &c, &mut peers, later, b, "b:0", theirs));
        assert_eq!(c.get(NicCounter::PeersDiscovered), 1);
        let i = peers.by_hostname("b:0").unwrap().index;
        assert_eq!(peers.reverse(i), theirs);
        assert_eq!(d.candidates(), 0);
        d.poll(&t, &c, later, &mut peers, &mut tx);
        assert!(matches!(tx[..], [Tx::HostQuery { peer }] if peer == i));
        tx.clear();
        // A reply from a stranger is no candidate's.
        assert!(!d.on_reply(&t, &c, &mut peers, later, [2, 0, 0, 0, 0, 9], "x:0", theirs));
        // The same serial again is no news; a new serial is a restart.
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
        d.poll(
            &t,
            &NicCounters::default(),
            Instant::now(),
            &mut peers,
            &mut tx,
        );
        assert!(tx.is_empty());
        assert_eq!(d.next_timer(&peers), None);
    }

    /// A forged flood: one source announcing many addresses, then many
    /// sources; the candidate set stays bounded, unanswered candidates go
    /// away, queries stay within the rate, and afterwards a real host is
    /// admitted and a static peer is untouched.
    #[test]
    fn forged_announcements_are_bounded_and_age_out() {
        let t = WireTiming::default();
        let c = NicCounters::default();
        let our = 0x0200_0000_0001;
        let t0 = Instant::now();
        let mut d = Discovery::new(true, 42, t.burst_count, t0);
        let mut peers = PeerTable::with_self(our, "a:0");
        let stat = peers.add(0x0200_0000_0005, "static:0", false).unwrap();
        let mut tx = Vec::new();
        let evil = [2, 0x66, 0, 0, 0, 1];
        let forged = |n: u32, src: [u8; 6]| {
            let mut f = announce(src, n);
            // the announced address is bytes 18..24 of the frame (after
            // the head, the RAW type byte and the mapper prefix): spoof it
            let m = MapperAnnounce::decode(&f).unwrap();
            let mut mac = m.nic_id.to_mac();
            mac[2..6].copy_from_slice(&(0x1000_0000 + n).to_be_bytes());
            MapperAnnounce {
                src,
                nic_id: NicId::from_mac(mac),
                serial: n,
            }
            .emit(&mut f)
            .unwrap();
            f
        };
        for n in 0..10_000 {
            d.on_announce(&t, &c, &mut peers, our, t0, &forged(n, evil));
        }
        assert_eq!(d.candidates(), t.candidates_per_source);
        assert_eq!(
            c.get(NicCounter::DropMapperPerSource),
            10_000 - t.candidates_per_source as u64
        );
        // Spoofed sources: the total bound holds; nothing was queried yet,
        // so nothing can be evicted.
        for n in 0..10_000u32 {
            let mut src = [2, 0x77, 0, 0, 0, 0];
            src[2..6].copy_from_slice(&n.to_be_bytes());
            d.on_announce(&t, &c, &mut peers, our, t0, &forged(20_000 + n, src));
        }
        assert_eq!(d.candidates(), t.max_candidates);
        assert!(c.get(NicCounter::DropMapperFull) > 0);
        assert_eq!(peers.len(), 2, "no forged host got an index");
        // Queries: at most query_rate per second, whatever is due.
        let mut now = t0;
        let mut per_second = Vec::new();
        while now < t0 + Duration::from_secs(40) {
            d.poll(&t, &c, now, &mut peers, &mut tx);
            let q = tx
                .iter()
                .filter(|x| matches!(x, Tx::HostQuery { .. } | Tx::HostQueryTo { .. }))
                .count();
            per_second.push(q);
            tx.clear();
            now += Duration::from_secs(1);
        }
        assert!(per_second.iter().all(|&q| q <= t.query_rate as usize));
        assert!(c.get(NicCounter::QueriesDeferred) > 0);
        // Nobody answered: all forgotten after their tries.
        assert_eq!(d.candidates(), 0);
        assert_eq!(
            c.get(NicCounter::CandidatesExpired),
            t.max_candidates as u64
        );
        let sent: usize = per_second.iter().sum();
        assert_eq!(sent, t.max_candidates * t.host_query_tries as usize);
        // A real host now: admitted, answers, becomes a peer.
        let real = [2, 0, 0, 0, 0, 0x22];
        d.on_announce(&t, &c, &mut peers, our, now, &announce(real, 1));
        d.poll(&t, &c, now, &mut peers, &mut tx);
        assert!(tx
            .iter()
            .any(|x| matches!(x, Tx::HostQueryTo { mac } if *mac == real)));
        assert!(d.on_reply(&t, &c, &mut peers, now, real, "real:0", PeerIndex(1)));
        assert!(peers.by_hostname("real:0").is_some());
        assert_eq!(peers.by_hostname("static:0").unwrap().index, stat);
    }

    /// When the set is full, a newcomer displaces a candidate that was
    /// queried and had time to answer, not one still waiting.
    #[test]
    fn a_full_set_evicts_only_stale_candidates() {
        let t = WireTiming {
            max_candidates: 2,
            ..WireTiming::default()
        };
        let c = NicCounters::default();
        let our = 0x0200_0000_0001;
        let t0 = Instant::now();
        let mut d = Discovery::new(false, 42, t.burst_count, t0);
        let mut peers = PeerTable::with_self(our, "a:0");
        let mut tx = Vec::new();
        let a = |n: u8| announce([2, 0, 0, 0, 1, n], 1);
        d.on_announce(&t, &c, &mut peers, our, t0, &a(1));
        d.on_announce(&t, &c, &mut peers, our, t0, &a(2));
        d.on_announce(&t, &c, &mut peers, our, t0, &a(3));
        assert_eq!(c.get(NicCounter::DropMapperFull), 1, "none queried yet");
        d.poll(&t, &c, t0, &mut peers, &mut tx);
        d.on_announce(&t, &c, &mut peers, our, t0, &a(3));
        assert_eq!(c.get(NicCounter::DropMapperFull), 2, "queried just now");
        let later = t0 + t.host_query / 2;
        d.on_announce(&t, &c, &mut peers, our, later, &a(3));
        assert_eq!(c.get(NicCounter::CandidatesEvicted), 1);
        assert!(d.is_candidate(NicId::from_mac([2, 0, 0, 0, 1, 3]).raw()));
        assert_eq!(d.candidates(), 2);
    }

    /// The known-peer table's discovered part is bounded too; static
    /// peers are not counted.
    #[test]
    fn discovered_peers_are_bounded() {
        let t = WireTiming {
            max_discovered: 1,
            ..WireTiming::default()
        };
        let c = NicCounters::default();
        let our = 0x0200_0000_0001;
        let now = Instant::now();
        let mut d = Discovery::new(false, 42, t.burst_count, now);
        let mut peers = PeerTable::with_self(our, "a:0");
        peers.add(0x0200_0000_0009, "static:0", false);
        for n in [2u8, 3] {
            let mac = [2, 0, 0, 0, 0, n];
            d.on_announce(&t, &c, &mut peers, our, now, &announce(mac, 1));
            assert!(d.on_reply(
                &t,
                &c,
                &mut peers,
                now,
                mac,
                &format!("h{n}:0"),
                PeerIndex(1)
            ));
        }
        assert!(peers.by_hostname("h2:0").is_some());
        assert!(peers.by_hostname("h3:0").is_none());
        assert_eq!(c.get(NicCounter::DropDiscoveredFull), 1);
        assert_eq!(peers.discovered(), 1);
    }

    /// A source that announces many addresses and answers the queries to
    /// each gets `discovered_per_source` peers, not the whole table; a
    /// host announcing itself is one source of its own.
    #[test]
    fn discovered_peers_are_bounded_per_source() {
        let t = WireTiming::default();
        let c = NicCounters::default();
        let our = 0x0200_0000_0001;
        let now = Instant::now();
        let mut d = Discovery::new(false, 42, t.burst_count, now);
        let mut peers = PeerTable::with_self(our, "a:0");
        let evil = [2, 0x66, 0, 0, 0, 1];
        let mut learned = 0;
        for n in 0..100u32 {
            let mut mac = [2, 0x66, 0, 0, 0, 0];
            mac[2..6].copy_from_slice(&(0x1000_0000 + n).to_be_bytes());
            let f = MapperAnnounce {
                src: evil,
                nic_id: NicId::from_mac(mac),
                serial: n,
            };
            let mut frame = announce(evil, n);
            f.emit(&mut frame).unwrap();
            d.on_announce(&t, &c, &mut peers, our, now, &frame);
            // It answers for each identity (the candidate set admits 4 at
            // a time; each answer frees a slot).
            if d.on_reply(
                &t,
                &c,
                &mut peers,
                now,
                mac,
                &format!("f{n}:0"),
                PeerIndex(1),
            ) && peers.index_of_mac(mac).is_some()
            {
                learned += 1;
            }
        }
        assert_eq!(learned, t.discovered_per_source);
        assert_eq!(peers.discovered(), t.discovered_per_source);
        assert_eq!(
            c.get(NicCounter::DropDiscoveredPerSource),
            100 - t.discovered_per_source as u64
        );
        // An honest host announcing itself is still learned.
        let real = [2, 0, 0, 0, 0, 0x22];
        d.on_announce(&t, &c, &mut peers, our, now, &announce(real, 1));
        assert!(d.on_reply(&t, &c, &mut peers, now, real, "real:0", PeerIndex(1)));
        assert!(peers.by_hostname("real:0").is_some());
    }
}
