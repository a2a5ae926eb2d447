//! The backend's endpoint table: endpoint ids `0..max_endpoints`, each
//! open or free.
//!
//! Every id in it comes from a guest (a command's destination, a frame's
//! endpoint field, a control request), so every access is checked: an id
//! out of range or not open is `None`, never a panic.

use crate::endpoint::Endpoint;
use mx_proto::platform::HostPlatform;

/// The endpoints of one board, by id.
pub struct Endpoints<H: HostPlatform> {
    slots: Vec<Option<Endpoint<H>>>,
}

impl<H: HostPlatform> Endpoints<H> {
    /// A table of `n` ids, all free.
    pub fn new(n: usize) -> Self {
        let mut slots = Vec::new();
        slots.resize_with(n, || None);
        Endpoints { slots }
    }

    /// The number of endpoint ids (open or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table has no ids at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Endpoint `id`, if open.
    pub fn get(&self, id: usize) -> Option<&Endpoint<H>> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    /// Endpoint `id` mutably, if open.
    pub fn get_mut(&mut self, id: usize) -> Option<&mut Endpoint<H>> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    /// Whether endpoint `id` is open.
    pub fn is_open(&self, id: usize) -> bool {
        self.get(id).is_some()
    }

    /// The session of endpoint `id`, if open.
    pub fn session_of(&self, id: usize) -> Option<u32> {
        self.get(id).map(|e| e.session)
    }

    /// Two distinct open endpoints mutably, in the order asked; `None` when
    /// `a == b` or either is out of range or not open (a guest names any
    /// endpoint id it likes).
    pub fn pair_mut(&mut self, a: usize, b: usize) -> Option<(&mut Endpoint<H>, &mut Endpoint<H>)> {
        pair_mut(&mut self.slots, a, b)
    }

    /// The lowest free id.
    pub fn first_free(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Whether `id` is in range and free.
    pub fn is_free(&self, id: usize) -> bool {
        self.slots.get(id).is_some_and(Option::is_none)
    }

    /// Put `ep` at its id; false (and `ep` dropped) if that id is out of
    /// range or taken.
    pub fn insert(&mut self, ep: Endpoint<H>) -> bool {
        match self.slots.get_mut(usize::from(ep.id)) {
            Some(slot @ None) => {
                *slot = Some(ep);
                true
            }
            _ => false,
        }
    }

    /// Close endpoint `id`: take it out of the table.
    pub fn take(&mut self, id: usize) -> Option<Endpoint<H>> {
        self.slots.get_mut(id).and_then(Option::take)
    }

    /// The open endpoints.
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint<H>> {
        self.slots.iter().flatten()
    }

    /// The open endpoints, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Endpoint<H>> {
        self.slots.iter_mut().flatten()
    }
}

/// Two distinct occupied entries of `v` mutably, in the order asked.
fn pair_mut<T>(v: &mut [Option<T>], a: usize, b: usize) -> Option<(&mut T, &mut T)> {
    if a == b || a.max(b) >= v.len() {
        return None;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let (left, right) = v.split_at_mut(hi);
    let (x, y) = (left[lo].as_mut()?, right[0].as_mut()?);
    Some(if a < b { (x, y) } else { (y, x) })
}

#[cfg(test)]
mod tests {
    use super::pair_mut;

    #[test]
    fn pairs_are_two_distinct_open_entries_in_the_order_asked() {
        let mut v = vec![Some(10), None, Some(30), Some(40)];
        let (x, y) = pair_mut(&mut v, 3, 0).expect("both open");
        assert_eq!((*x, *y), (40, 10));
        *x += 1;
        assert_eq!(v[3], Some(41));
        assert!(pair_mut(&mut v, 2, 2).is_none(), "one endpoint is no pair");
        assert!(pair_mut(&mut v, 0, 1).is_none(), "a closed one");
        // Ids a guest names freely: beyond the table is no pair, no panic.
        assert!(pair_mut(&mut v, 0, 255).is_none());
        assert!(pair_mut(&mut v, 255, 3).is_none());
        assert!(pair_mut::<u8>(&mut [], 0, 1).is_none());
    }
}
