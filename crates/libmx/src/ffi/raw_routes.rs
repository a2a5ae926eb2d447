//! What a mapper tells its raw endpoint about the fabric and that frames on
//! Ethernet do not need: the source routes it computed per peer
//! (`mx_raw_set_route`, `mx_raw_set_route_mag`, `mx_raw_clear_routes`,
//! `mx_raw_remove_peer`) and the board's NIC reply info
//! (`mx_raw_set_nic_reply_info`).
//!
//! Frames go by MAC address, so nothing reads these back on the wire; they
//! are kept, bounded and copied, so that the calls do what they say (a
//! removed peer has no routes left, the reply info is the last one given)
//! and bad arguments are refused instead of silently ignored.

use std::collections::BTreeMap;

/// Longest source route accepted: a Myrinet route is one byte per switch
/// hop, and MX's mapper never built routes longer than a few dozen hops.
pub const ROUTE_MAX: usize = 64;

/// Most peers with routes kept at once (the backend's peer table is far
/// smaller; a mapper that goes past this is broken).
pub const PEERS_MAX: usize = 4096;

/// Routes kept per peer (one per (input port, output port, magic id)
/// choice; MX kept 8 alternatives per port).
pub const ROUTES_PER_PEER_MAX: usize = 16;

/// Largest NIC reply info kept.
pub const REPLY_INFO_MAX: usize = 4096;

/// Why a route or reply info was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The route or blob is longer than its bound, or missing with a length.
    BadValue,
    /// Not a unicast 48-bit NIC id.
    BadNic,
    /// The table is full.
    Full,
}

/// One source route to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Port the reply comes in on.
    pub input_port: u32,
    /// Port the frame leaves by.
    pub output_port: u32,
    /// Host type (`mx_host_type_t`).
    pub host_type: u32,
    /// `mx_raw_set_route_mag`'s magic id (0 from `mx_raw_set_route`).
    pub mag_id: u32,
    /// The route bytes.
    pub hops: Vec<u8>,
}

/// Routes per peer and the NIC reply info of one raw endpoint.
#[derive(Debug, Default)]
pub struct RouteTable {
    peers: BTreeMap<u64, Vec<Route>>,
    reply_info: Vec<u8>,
}

/// A NIC id a route can name: 48 bits, not 0, not multicast (what
/// `mx_raw_set_peer_name` accepts too).
fn unicast(nic_id: u64) -> bool {
    nic_id != 0 && nic_id >> 48 == 0 && (nic_id >> 40) & 1 == 0
}

impl RouteTable {
    /// Keep `route` to `nic_id`, replacing one with the same ports and magic
    /// id.
    ///
    /// # Errors
    /// [`RouteError::BadNic`], [`RouteError::BadValue`] (route longer than
    /// [`ROUTE_MAX`]), [`RouteError::Full`] (more than [`PEERS_MAX`] peers
    /// or [`ROUTES_PER_PEER_MAX`] routes to one peer).
    pub fn set(&mut self, nic_id: u64, route: Route) -> Result<(), RouteError> {
        if !unicast(nic_id) {
            return Err(RouteError::BadNic);
        }
        if route.hops.len() > ROUTE_MAX {
            return Err(RouteError::BadValue);
        }
        if !self.peers.contains_key(&nic_id) && self.peers.len() >= PEERS_MAX {
            return Err(RouteError::Full);
        }
        let routes = self.peers.entry(nic_id).or_default();
        let same = |r: &Route| {
            r.input_port == route.input_port
                && r.output_port == route.output_port
                && r.mag_id == route.mag_id
        };
        if let Some(r) = routes.iter_mut().find(|r| same(r)) {
            *r = route;
        } else if routes.len() >= ROUTES_PER_PEER_MAX {
            return Err(RouteError::Full);
        } else {
            routes.push(route);
        }
        Ok(())
    }

    /// Drop the routes to `nic_id` that leave by `port` (what
    /// `mx_raw_clear_routes` does before a mapper sets new ones); the peer
    /// goes when it has none left. Nothing to clear is not an error.
    pub fn clear(&mut self, nic_id: u64, port: u32) {
        if let Some(routes) = self.peers.get_mut(&nic_id) {
            routes.retain(|r| r.output_port != port);
            if routes.is_empty() {
                self.peers.remove(&nic_id);
            }
        }
    }

    /// Drop every route to `nic_id`; whether it had any.
    pub fn remove_peer(&mut self, nic_id: u64) -> bool {
        self.peers.remove(&nic_id).is_some()
    }

    /// The routes kept to `nic_id`.
    pub fn routes(&self, nic_id: u64) -> &[Route] {
        self.peers.get(&nic_id).map_or(&[], Vec::as_slice)
    }

    /// Peers with at least one route.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Keep a copy of `blob` as the NIC reply info (empty clears it).
    ///
    /// # Errors
    /// [`RouteError::BadValue`] above [`REPLY_INFO_MAX`] bytes (the one
    /// kept before is left as it was).
    pub fn set_reply_info(&mut self, blob: &[u8]) -> Result<(), RouteError> {
        if blob.len() > REPLY_INFO_MAX {
            return Err(RouteError::BadValue);
        }
        self.reply_info.clear();
        self.reply_info.extend_from_slice(blob);
        Ok(())
    }

    /// The NIC reply info last given.
    pub fn reply_info(&self) -> &[u8] {
        &self.reply_info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(out: u32, mag: u32, hops: &[u8]) -> Route {
        Route {
            input_port: 0,
            output_port: out,
            host_type: 3,
            mag_id: mag,
            hops: hops.to_vec(),
        }
    }

    const A: u64 = 0x0002_c9aa_bb01;
    const B: u64 = 0x0002_c9aa_bb02;

    #[test]
    fn set_replaces_same_ports_and_magic_and_keeps_others() {
        let mut t = RouteTable::default();
        t.set(A, route(0, 0, &[0x80, 0x81])).unwrap();
        t.set(A, route(0, 0, &[0x82])).unwrap();
        t.set(A, route(0, 7, &[0x83])).unwrap();
        t.set(B, route(0, 0, &[])).unwrap();
        assert_eq!(t.routes(A).len(), 2);
        assert_eq!(t.routes(A)[0].hops, [0x82]);
        assert_eq!(t.routes(A)[1].mag_id, 7);
        assert_eq!(t.peer_count(), 2);
    }

    #[test]
    fn clear_drops_one_port_and_remove_peer_drops_all() {
        let mut t = RouteTable::default();
        t.set(A, route(0, 0, &[1])).unwrap();
        t.set(A, route(1, 0, &[2])).unwrap();
        t.set(B, route(0, 0, &[3])).unwrap();
        t.clear(A, 1);
        assert_eq!(t.routes(A).len(), 1);
        t.clear(A, 5);
        t.clear(0x1234, 0);
        assert_eq!(t.routes(A).len(), 1);
        assert!(t.remove_peer(A));
        assert!(t.routes(A).is_empty());
        assert!(!t.remove_peer(A));
        assert_eq!(t.routes(B)[0].hops, [3]);
        t.clear(B, 0);
        assert_eq!(t.peer_count(), 0);
    }

    #[test]
    fn bad_routes_are_refused_and_the_table_is_bounded() {
        let mut t = RouteTable::default();
        for bad in [0, 1 << 48, 0x0100_0000_0001] {
            assert_eq!(
                t.set(bad, route(0, 0, &[1])),
                Err(RouteError::BadNic),
                "{bad:#x}"
            );
        }
        assert_eq!(
            t.set(A, route(0, 0, &[0; ROUTE_MAX + 1])),
            Err(RouteError::BadValue)
        );
        t.set(A, route(0, 0, &[0; ROUTE_MAX])).unwrap();
        for mag in 1..ROUTES_PER_PEER_MAX as u32 {
            t.set(A, route(0, mag, &[])).unwrap();
        }
        assert_eq!(t.set(A, route(0, 999, &[])), Err(RouteError::Full));
        // Replacing one still works when full.
        t.set(A, route(0, 3, &[9])).unwrap();
        for i in 1..PEERS_MAX as u64 {
            t.set(A + 2 * i, route(0, 0, &[])).unwrap();
        }
        assert_eq!(t.peer_count(), PEERS_MAX);
        assert_eq!(
            t.set(0x0002_0000_0000, route(0, 0, &[])),
            Err(RouteError::Full)
        );
        t.set(A + 2, route(0, 0, &[4])).unwrap();
    }

    #[test]
    fn reply_info_is_copied_bounded_and_cleared() {
        let mut t = RouteTable::default();
        assert!(t.reply_info().is_empty());
        t.set_reply_info(b"mapper 1").unwrap();
        assert_eq!(t.reply_info(), b"mapper 1");
        assert_eq!(
            t.set_reply_info(&[7; REPLY_INFO_MAX + 1]),
            Err(RouteError::BadValue)
        );
        assert_eq!(t.reply_info(), b"mapper 1");
        t.set_reply_info(&[7; REPLY_INFO_MAX]).unwrap();
        assert_eq!(t.reply_info().len(), REPLY_INFO_MAX);
        t.set_reply_info(&[]).unwrap();
        assert!(t.reply_info().is_empty());
    }
}
